//! Upstream failures: every kind keeps the valid token served, is counted by reason, and
//! recovers; configuration errors show in readiness, metrics and the 503 body.

use std::time::Duration;

use crate::support::helpers::*;
use wxtoken::fake::Fault;

fn fault_spec() -> Spec {
    Spec {
        upstream_timeout: Duration::from_millis(500),
        wait_limit: Duration::from_secs(1),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(300),
        ..Spec::default()
    }
}

async fn keeps_serving_and_recovers(fault: Fault, reason: &str) {
    let app = TestApp::builder().spec(fault_spec()).start().await;
    let old = app.shop_token().await;
    app.fake.inject(fault.clone(), 10_000);

    // WeChat rejected the token, but every fetch fails: the caller gets the token in service
    // after the wait limit, marked as not refreshed.
    app.fake.kill_token(&old);
    let a = app.invalidate_shop(&old).await;
    assert_eq!(a.status, 200, "{fault:?}: {}", a.body);
    assert_eq!(a.token().access_token, old.as_str());
    assert_eq!(a.token().refreshed, Some(false));
    assert_eq!(app.shop_token().await, old, "{fault:?}: valid token kept");
    assert_eq!(app.get("/readyz", None).await.status, 200);
    let series = format!(r#"wxtoken_upstream_errors_total{{app="shop",reason="{reason}"}}"#);
    let errors = app.metric(&series).await.unwrap_or(0.0);
    assert!(errors >= 1.0, "{fault:?}: {series} = {errors}");
    assert_eq!(
        app.metric(r#"wxtoken_invalidations_total{app="shop",outcome="failed"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(app.minted(SHOP_APPID), 1);

    // WeChat recovers: the retry (backoff at most 300 ms) brings a new token.
    app.fake.clear_faults();
    let recovered = eventually(Duration::from_secs(5), || async {
        app.shop_token().await != old
    })
    .await;
    assert!(recovered, "{fault:?}: no recovery");
    assert_eq!(app.minted(SHOP_APPID), 2);
}

#[actix_web::test]
async fn system_busy_errcode() {
    keeps_serving_and_recovers(Fault::Errcode(-1), "-1").await;
}

#[actix_web::test]
async fn http_500() {
    keeps_serving_and_recovers(Fault::Http(500), "http").await;
}

#[actix_web::test]
async fn body_that_is_not_json() {
    keeps_serving_and_recovers(Fault::NotJson, "decode").await;
}

#[actix_web::test]
async fn slow_answer_times_out() {
    keeps_serving_and_recovers(Fault::Slow(Duration::from_secs(2)), "timeout").await;
}

#[actix_web::test]
async fn dropped_connection() {
    keeps_serving_and_recovers(Fault::Drop, "connect").await;
}

#[actix_web::test]
async fn wrong_secret_shows_in_readyz_metrics_and_503() {
    let app = TestApp::builder()
        .spec(Spec {
            shop_secret: "wrong-secret".into(),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(1500),
            ..fault_spec()
        })
        .start()
        .await;
    // A configuration error never fixes itself: retried at the slow pace (retry_max) at once,
    // where a transient error would have been retried after 50, 100, 200, 400 ms.
    // A bounded wait is the observable here: the claim is about the retry pace, so the test
    // looks at the error counter after a window in which a fast pace would have made 4 calls.
    actix_web::rt::time::sleep(Duration::from_millis(900)).await;
    let series = r#"wxtoken_upstream_errors_total{app="shop",reason="40125"}"#;
    assert_eq!(app.metric(series).await, Some(1.0));

    let a = app.get("/v1/apps/shop/token", Some(BILLING_KEY)).await;
    assert_eq!(a.status, 503, "{}", a.body);
    let error = a.error();
    assert_eq!(error.error, "no_valid_token");
    assert_eq!(error.errcode, Some(40125));
    assert!(!error.message.contains("wrong-secret"));

    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["ready"], false);
    let why = r.body["apps"]["shop"].as_str().unwrap();
    assert!(why.contains("40125"), "{why}");
    assert_eq!(r.body["apps"]["blog"], "ok", "the other app is unaffected");

    let failed = app
        .metric(r#"wxtoken_token_refreshes_total{app="shop",result="failure",trigger="startup"}"#)
        .await
        .unwrap();
    assert!(failed >= 1.0);
    assert_eq!(
        app.metric(r#"wxtoken_token_seconds_left{app="shop"}"#)
            .await,
        Some(0.0)
    );
}
