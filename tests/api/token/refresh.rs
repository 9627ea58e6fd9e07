//! Proactive refresh: tokens are replaced before they expire, and no served token is ever one
//! that WeChat would reject.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::helpers::*;
use wxtoken::fake::Validity;

#[actix_web::test]
async fn served_tokens_stay_valid_over_several_refresh_cycles() {
    // 4 s tokens: the 600 s margin is clamped to half the lifetime, so a refresh about every 2 s.
    // A replaced token stays valid for 1 s at the fake: long enough for a request in flight
    // during a refresh, far too short to hide a server that keeps serving an old token.
    let app = TestApp::builder()
        .spec(Spec {
            expires_in: 4,
            overlap_secs: 1,
            ..Spec::default()
        })
        .start()
        .await;
    let mut seen = HashSet::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(7) {
        let a = app.get("/v1/apps/shop/token", Some(BILLING_KEY)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let token = a.token().access_token;
        let v = app.fake.validity(&token);
        assert_eq!(v, Validity::Valid, "served a token WeChat rejects ({v:?})");
        assert!(a.token().expires_in >= 1);
        seen.insert(token);
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // 7 s of 4 s tokens refreshed at half-life: 3 or 4 tokens, at least 2 refreshes. The
    // schedule itself is unit-tested exactly on paused time (token::actor_tests); this checks
    // the real server, clock and fake together.
    assert!(seen.len() >= 3, "only {} distinct tokens", seen.len());
    let minted = app.minted(SHOP_APPID) as usize;
    assert!(
        minted <= seen.len() + 1,
        "more fetches ({minted}) than refresh cycles"
    );
    let scheduled = app
        .metric(r#"wxtoken_token_refreshes_total{app="shop",result="success",trigger="scheduled"}"#)
        .await
        .unwrap();
    assert!(scheduled >= 2.0, "{scheduled}");
    let left = app
        .metric(r#"wxtoken_token_seconds_left{app="shop"}"#)
        .await
        .unwrap();
    assert!((1.0..=4.0).contains(&left), "{left}");
}

#[actix_web::test]
async fn get_waits_for_the_first_fetch() {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    // The first fetch answers only after 800 ms: a Get made meanwhile waits for it.
    fake.inject(wxtoken::fake::Fault::Slow(Duration::from_millis(800)), 1);
    let app = TestApp::builder().spec(spec).fake(fake).start().await;
    let a = app.get("/v1/apps/shop/token", Some(BILLING_KEY)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(app.minted(SHOP_APPID), 1);
}
