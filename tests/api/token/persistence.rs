//! Persistence and resilience: restarts reuse the stored token, a corrupt store is moved aside,
//! a restarted actor keeps serving.

use std::time::Duration;

use crate::support::helpers::*;
use wxtoken::token::messages::ForceRestart;

/// The token planted near its expiry (a valid token: the store would refuse a malformed one).
const NEAR_EXPIRY: &str = "NEAR-EXPIRY-TOKEN-FROM-THE-STORE";

/// Seconds from now until the served shop token's proactive refresh, from `/metrics`.
async fn refresh_due_secs_from_now(http: &awc::Client, base: &str) -> f64 {
    let due = sample_at(
        http,
        base,
        r#"wxtoken_token_refresh_due_timestamp_seconds{app="shop"}"#,
    )
    .await
    .unwrap_or(0.0);
    due - now_ms() as f64 / 1000.0
}

#[actix_web::test]
async fn restart_reuses_the_stored_token_without_a_fetch() {
    let stored = FileStore::new().await;
    let fake = &stored.fake;
    let http = client();

    let first = stored.start();
    let url = format!("{}/v1/apps/shop/token", first.base);
    let (status, body) = get_json(&http, &url, BILLING_KEY).await;
    assert_eq!(status, 200);
    let token = body["access_token"].as_str().unwrap().to_string();
    first.stop();
    assert_eq!(fake.minted(SHOP_APPID), 1);

    let second = stored.start();
    let url = format!("{}/v1/apps/shop/token", second.base);
    let (status, body) = get_json(&http, &url, BILLING_KEY).await;
    assert_eq!(status, 200);
    assert_eq!(body["access_token"], token.as_str(), "stored token reused");
    // A refresh wrongly started at load would set the due time to now; a published due time
    // far ahead proves the loaded token was judged fresh and its refresh scheduled, the last
    // point at which a start-up fetch could have begun.
    let scheduled = eventually(Duration::from_secs(5), || async {
        refresh_due_secs_from_now(&http, &second.base).await > 600.0
    })
    .await;
    assert!(
        scheduled,
        "the stored token's refresh is scheduled, not started"
    );
    assert_eq!(fake.minted(SHOP_APPID), 1, "no upstream call after restart");
    assert_eq!(fake.minted(BLOG_APPID), 1);
    second.stop();
}

#[actix_web::test]
async fn stored_token_of_another_appid_or_near_expiry_is_not_reused() {
    let stored = FileStore::new().await;
    let fake = &stored.fake;
    let http = client();

    let s = stored.start();
    get_json(
        &http,
        &format!("{}/v1/apps/shop/token", s.base),
        BILLING_KEY,
    )
    .await;
    s.stop();
    assert_eq!(fake.minted(SHOP_APPID), 1);

    // Same app name, another appid: the stored record is not for it.
    let mut other = stored.settings();
    other.apps[0].appid = "wxsomeoneelse0000".into();
    let s = ThreadServer::start(other);
    let (status, _) = get_json(
        &http,
        &format!("{}/v1/apps/shop/token", s.base),
        BILLING_KEY,
    )
    .await;
    assert_eq!(status, 503, "the fake does not know that appid");
    s.stop();
    assert_eq!(fake.minted(SHOP_APPID), 1);

    // A well-formed record of the right appid with 5 s left of a 30 s life: the margin (600 s,
    // clamped to half the life, 15 s) has passed, so a restart must fetch, not reuse it.
    let now = now_ms();
    let near_expiry = serde_json::json!({
        "v": 1, "appid": SHOP_APPID, "token": NEAR_EXPIRY,
        "fetched_at_ms": now - 25_000, "expires_at_ms": now + 5_000,
        "generation": 2, "quota_day": 0, "quota_used": 1,
    });
    plant_token_record(&stored.path, "shop", &near_expiry.to_string()).await;
    let s = stored.start();
    let replaced = eventually(Duration::from_secs(5), || async {
        let (status, body) = get_json(
            &http,
            &format!("{}/v1/apps/shop/token", s.base),
            BILLING_KEY,
        )
        .await;
        status == 200 && body["access_token"].as_str() == fake.current_token(SHOP_APPID).as_deref()
    })
    .await;
    assert!(replaced, "the near-expiry token is replaced by a fresh one");
    assert_eq!(fake.minted(SHOP_APPID), 2, "one fetch at start-up");
    let mut r = http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    assert_eq!(
        sample(
            &text,
            r#"wxtoken_token_refreshes_total{app="shop",result="success",trigger="startup"}"#
        ),
        Some(1.0),
        "fetched because it was due at start-up"
    );
    s.stop();
}

#[actix_web::test]
async fn corrupt_store_is_moved_aside_and_the_server_starts() {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let store = dir.path().join("wxtoken.redb");
    std::fs::write(
        &store,
        b"this is not a database, just garbage bytes".repeat(100),
    )
    .unwrap();

    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .store(dir.clone(), store.clone())
        .start()
        .await;
    let t = app.shop_token().await;
    assert!(!t.is_empty());
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("wxtoken.redb.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "corrupt file kept for inspection");
    assert!(store.exists());
}

#[actix_web::test]
async fn forced_actor_restart_keeps_serving() {
    let app = TestApp::builder().start().await;
    let t = app.shop_token().await;
    let shop = app.state.apps.load().get("shop").unwrap().clone();
    shop.addr.send(ForceRestart).await.unwrap();
    let restarted = eventually(Duration::from_secs(3), || async {
        app.metric(r#"wxtoken_actor_restarts_total{app="shop"}"#)
            .await
            == Some(1.0)
    })
    .await;
    assert!(restarted);
    assert_eq!(app.shop_token().await, t, "same token after the restart");
    assert_eq!(app.minted(SHOP_APPID), 1, "the restart did not fetch");
    // The restarted actor still works: an invalidation refreshes through it.
    app.fake.kill_token(&t);
    let a = app.invalidate_shop(&t).await;
    assert_eq!(a.token().refreshed, Some(true), "{}", a.body);
    assert_eq!(app.minted(SHOP_APPID), 2);
}
