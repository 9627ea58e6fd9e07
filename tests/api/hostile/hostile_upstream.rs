//! Hostile upstream answers: absurd token lifetimes are refused as `decode` failures, the valid
//! token keeps being served, and nothing panics or stops.

use std::time::Duration;

use crate::support::helpers::*;

#[actix_web::test]
async fn absurd_lifetimes_are_decode_failures_that_keep_the_valid_token() {
    let app = TestApp::builder()
        .spec(Spec {
            wait_limit: Duration::from_secs(1),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_millis(300),
            ..Spec::default()
        })
        .start()
        .await;
    let old = app.shop_token().await;
    // WeChat rejects it: every report asks for a fetch.
    app.fake.kill_token(&old);
    // 10^12 s once made every later GET panic; i64::MAX killed the actor for good; 1 s served
    // `expires_in: 0` (the test configuration accepts lifetimes from 2 s).
    for secs in [1_000_000_000_000, i64::MAX as u64, u64::MAX, 1] {
        app.fake.set_expires_in(secs);
        let a = app.invalidate_shop(&old).await;
        assert_eq!(a.status, 200, "expires_in {secs}: {}", a.body);
        assert_eq!(a.token().access_token, old.as_str(), "expires_in {secs}");
        assert_eq!(a.token().refreshed, Some(false));
        let t = app.get("/v1/apps/shop/token", Some(BILLING_KEY)).await;
        assert_eq!(t.status, 200, "expires_in {secs}: {}", t.body);
        assert_eq!(t.token().access_token, old.as_str());
        assert!(t.token().expires_in > 7000);
        assert_eq!(app.get("/readyz", None).await.status, 200);
    }
    let decode = app
        .metric(r#"wxtoken_upstream_errors_total{app="shop",reason="decode"}"#)
        .await
        .unwrap_or(0.0);
    assert!(decode >= 4.0, "{decode} decode failures counted");
    assert_eq!(
        app.metric(r#"wxtoken_actor_restarts_total{app="shop"}"#)
            .await,
        Some(0.0)
    );
    // Sane answers again: the next retry brings a new token, which invalidation serves.
    app.fake.set_expires_in(7200);
    let renewed = eventually(Duration::from_secs(5), || async {
        app.shop_token().await != old
    })
    .await;
    assert!(renewed, "no recovery once the lifetimes were sane");
    let t = app.get("/v1/apps/shop/token", Some(BILLING_KEY)).await;
    assert!((7000..=7200).contains(&t.token().expires_in));
}
