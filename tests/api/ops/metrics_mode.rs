//! `[metrics] per_app`: which series each mode exports over HTTP, the aggregate
//! `wxtoken_credentials{state}`, unknown errcodes counted as `other`, and promtool's verdict on
//! each mode's exposition.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::helpers::*;
use crate::support::promtool::assert_promtool_clean;
use wxtoken::fake::Fault;

/// The families of `text` that carry an `app` label.
fn per_app_families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains("app=\""))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_owned()
        })
        .collect()
}

/// Fails every fetch from now on with an errcode nobody documents, starting with one of shop's
/// through an invalidation, and returns the metrics once that failure is counted and shop is
/// published as failing.
async fn fail_with_an_unknown_errcode(app: &TestApp) -> String {
    let token = app.shop_token().await;
    app.fake.inject(Fault::Errcode(77_777), 1_000_000);
    app.fake.kill_token(&token);
    let answer = app.invalidate_shop(&token).await;
    assert_eq!(answer.status, 200, "the still-valid token is served");
    let failures = r#"wxtoken_token_refresh_failures_total{app="shop"}"#;
    // The failure is counted as it happens and the credential's state published just after:
    // both, or a scrape in between sees the count without the state.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let text = app.metrics_text().await;
            sample(&text, failures).is_some_and(|n| n >= 1.0)
                && state(&text, "failing").is_some_and(|n| n >= 1.0)
        })
        .await
    );
    app.metrics_text().await
}

fn state(text: &str, state: &str) -> Option<f64> {
    sample(text, &format!("wxtoken_credentials{{state=\"{state}\"}}"))
}

#[actix_web::test]
async fn gauges_mode_exports_five_families_per_app_and_aggregates() {
    let app = TestApp::builder()
        .metrics(PerAppMetrics::Gauges)
        .start()
        .await;
    let text = fail_with_an_unknown_errcode(&app).await;
    assert_eq!(
        per_app_families(&text),
        [
            "wxtoken_token_expiry_timestamp_seconds",
            "wxtoken_token_refresh_due_timestamp_seconds",
            "wxtoken_token_refresh_failures_total",
            "wxtoken_token_seconds_left",
            "wxtoken_upstream_config_error",
        ]
        .map(str::to_owned)
        .into(),
    );
    let get = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("missing {s}"));
    let failed = get(r#"wxtoken_token_refresh_failures_total{app="shop"}"#);
    assert!(failed >= 1.0);
    assert_eq!(
        get(r#"wxtoken_token_refresh_failures_total{app="blog"}"#),
        0.0
    );
    // Every failure so far is shop's, all with the unknown errcode: one aggregate, `other`.
    assert_eq!(
        get(r#"wxtoken_upstream_errors_total{reason="other"}"#),
        failed
    );
    let by_trigger: f64 = ["startup", "scheduled", "invalidated", "revoked"]
        .iter()
        .map(|t| {
            get(&format!(
                "wxtoken_token_refreshes_total{{result=\"failure\",trigger=\"{t}\"}}"
            ))
        })
        .sum();
    assert_eq!(by_trigger, failed);
    // Start-up fetches of both apps, then shop's failed ones (a call just timed may not be
    // counted as failed yet): one series for all apps.
    assert!(
        get(r#"wxtoken_upstream_request_duration_seconds_count{endpoint="token"}"#) >= 2.0 + failed
    );
    assert!(!text.contains("77777"), "the errcode itself is no label");
    // shop's token is served but its last fetch failed; blog's is fine.
    assert_eq!(state(&text, "failing"), Some(1.0));
    assert_eq!(state(&text, "valid"), Some(1.0));
    assert_eq!(state(&text, "no_token"), Some(0.0));
    assert_promtool_clean(&text);
}

#[actix_web::test]
async fn full_mode_keeps_every_per_app_family_and_counts_other_per_app() {
    let app = TestApp::builder()
        .metrics(PerAppMetrics::Full)
        .start()
        .await;
    let text = fail_with_an_unknown_errcode(&app).await;
    let families = per_app_families(&text);
    for family in [
        "wxtoken_token_age_seconds",
        "wxtoken_token_generation",
        "wxtoken_quota_used_today",
        "wxtoken_quota_daily_limit",
        "wxtoken_token_refreshes_total",
        "wxtoken_upstream_errors_total",
        "wxtoken_invalidations_total",
        "wxtoken_actor_restarts_total",
        "wxtoken_store_errors_total",
        "wxtoken_revocations_total",
        "wxtoken_forced_refresh_refusals_total",
        "wxtoken_upstream_request_duration_seconds",
        "wxtoken_token_refresh_failures_total",
        "wxtoken_token_seconds_left",
    ] {
        assert!(families.contains(family), "{family} per app");
    }
    assert_eq!(
        sample(
            &text,
            r#"wxtoken_upstream_errors_total{app="shop",reason="other"}"#
        ),
        sample(&text, r#"wxtoken_token_refresh_failures_total{app="shop"}"#)
    );
    assert!(!text.contains("77777"), "the errcode itself is no label");
    assert_eq!(state(&text, "failing"), Some(1.0));
    assert!(sample(&text, "wxtoken_quota_used_ratio_max").is_some());
    assert_promtool_clean(&text);
}

/// The states a live server reaches: shop's secret is wrong, so it never has a token; blog's
/// 3 s tokens are valid (or due, inside their 1 s margin) until WeChat refuses every fetch,
/// then expired. `failing` and `refreshing` in detail are the unit tests' (metrics::state).
#[actix_web::test]
async fn credentials_are_counted_by_state() {
    let spec = Spec {
        expires_in: 3,
        shop_secret: "not-the-secret".into(),
        margin: Duration::from_secs(1),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(200),
        ..Spec::default()
    };
    let app = TestApp::builder()
        .spec(spec)
        .metrics(PerAppMetrics::Gauges)
        .start()
        .await;
    let served = |text: &str| {
        ["valid", "refreshing", "failing"]
            .iter()
            .map(|s| state(text, s).unwrap_or(0.0))
            .sum::<f64>()
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            let text = app.metrics_text().await;
            state(&text, "no_token") == Some(1.0) && served(&text) == 1.0
        })
        .await,
        "shop without a token, blog served"
    );

    app.fake.inject(Fault::Errcode(-1), 1_000_000);
    assert!(
        eventually(Duration::from_secs(8), || async {
            state(&app.metrics_text().await, "expired") == Some(1.0)
        })
        .await,
        "blog's token expires while every fetch fails"
    );
    let text = app.metrics_text().await;
    assert_eq!(state(&text, "no_token"), Some(1.0));
    assert_eq!(served(&text), 0.0);
}
