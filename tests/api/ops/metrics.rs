//! The operations metrics: request counts by route template, token age and generation, quota,
//! upstream latency and the configuration-error flag.

use std::time::Duration;

use crate::support::helpers::*;
use wxtoken::fake::Fault;

#[actix_web::test]
async fn requests_tokens_and_quota_are_measured() {
    let app = TestApp::builder().start().await;
    let t = app.shop_token().await;
    app.shop_token().await;
    app.get("/v1/apps/blog/token", Some(BILLING_KEY)).await; // 403
    app.get("/nope/at/all", None).await; // 404, unmatched
    app.fake.kill_token(&t);
    app.invalidate_shop(&t).await;

    let text = app.metrics_text().await;
    let get = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("missing {s}"));
    assert_eq!(
        get(r#"wxtoken_http_requests_total{route="/v1/apps/{name}/token",status="200"}"#),
        2.0
    );
    assert_eq!(
        get(r#"wxtoken_http_requests_total{route="/v1/apps/{name}/token",status="403"}"#),
        1.0
    );
    assert_eq!(
        get(r#"wxtoken_http_requests_total{route="unmatched",status="404"}"#),
        1.0
    );
    assert_eq!(
        get(
            r#"wxtoken_http_requests_total{route="/v1/apps/{name}/token/invalidate",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        get(r#"wxtoken_http_request_duration_seconds_count{route="/v1/apps/{name}/token"}"#),
        3.0
    );
    assert_eq!(get(r#"wxtoken_token_generation{app="shop"}"#), 2.0);
    assert_eq!(get(r#"wxtoken_token_generation{app="blog"}"#), 1.0);
    assert_eq!(get(r#"wxtoken_quota_used_today{app="shop"}"#), 2.0);
    assert_eq!(get(r#"wxtoken_quota_daily_limit{app="shop"}"#), 2000.0);
    assert!(get(r#"wxtoken_token_age_seconds{app="shop"}"#) <= 2.0);
    assert_eq!(
        get(r#"wxtoken_upstream_request_duration_seconds_count{app="shop",endpoint="token"}"#),
        2.0
    );
    assert_eq!(get(r#"wxtoken_upstream_config_error{app="shop"}"#), 0.0);
}

#[actix_web::test]
async fn config_error_flag_follows_the_last_failure() {
    let app = TestApp::builder()
        .spec(Spec {
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_millis(200),
            wait_limit: Duration::from_millis(500),
            ..Spec::default()
        })
        .start()
        .await;
    let t = app.shop_token().await;
    let flag = r#"wxtoken_upstream_config_error{app="shop"}"#;
    app.fake.inject(Fault::Errcode(40125), 10_000);
    app.fake.kill_token(&t);
    app.invalidate_shop(&t).await;
    assert_eq!(app.metric(flag).await, Some(1.0));
    // Failed calls that WeChat answered count against the quota too.
    let used = app
        .metric(r#"wxtoken_quota_used_today{app="shop"}"#)
        .await
        .unwrap();
    assert!(used >= 2.0, "{used}");

    // A transient failure is not a configuration error.
    app.fake.clear_faults();
    app.fake.inject(Fault::Errcode(-1), 10_000);
    assert!(
        eventually(Duration::from_secs(3), || async {
            app.metric(flag).await == Some(0.0)
        })
        .await
    );
    app.fake.clear_faults();
    assert!(
        eventually(Duration::from_secs(3), || async {
            app.shop_token().await != t
        })
        .await
    );
    assert_eq!(app.metric(flag).await, Some(0.0));
}
