//! `/metrics` is valid Prometheus text exposition, checked by Prometheus' own `promtool`.

use crate::support::helpers::*;
use crate::support::promtool::assert_promtool_clean;
use wxtoken::fake::Fault;

#[actix_web::test]
async fn metrics_pass_promtool_check_metrics() {
    let app = TestApp::builder().start().await;
    let old = app.shop_token().await;
    // Produce samples with every kind of label: an errcode reason, invalidation outcomes.
    app.fake.inject(Fault::Errcode(-1), 1);
    app.invalidate_shop(&old).await;
    app.invalidate_shop("stale-token").await;
    let text = app.metrics_text().await;
    assert!(text.contains("wxtoken_token_seconds_left{app=\"shop\"}"));
    assert!(text.contains("wxtoken_build_info{version="));
    assert!(text.contains("process_resident_memory_bytes"));

    assert_promtool_clean(&text);
}

#[actix_web::test]
async fn every_per_app_series_exists_from_startup() {
    let app = TestApp::builder().start().await;
    let text = app.metrics_text().await;
    for app_name in ["shop", "blog"] {
        for series in [
            format!(
                r#"wxtoken_token_refreshes_total{{app="{app_name}",result="failure",trigger="scheduled"}}"#
            ),
            format!(r#"wxtoken_upstream_errors_total{{app="{app_name}",reason="timeout"}}"#),
            format!(r#"wxtoken_invalidations_total{{app="{app_name}",outcome="too_soon"}}"#),
            format!(r#"wxtoken_actor_restarts_total{{app="{app_name}"}}"#),
            format!(r#"wxtoken_store_errors_total{{app="{app_name}",op="decrypt"}}"#),
            format!(r#"wxtoken_token_expiry_timestamp_seconds{{app="{app_name}"}}"#),
            format!(r#"wxtoken_token_seconds_left{{app="{app_name}"}}"#),
        ] {
            assert!(sample(&text, &series).is_some(), "missing {series}");
        }
    }
}
