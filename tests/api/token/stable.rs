//! The stable_token grant: refreshed inside its last minutes, replaced early only by forced
//! refreshes within WeChat's limits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::helpers::*;
use wxtoken::fake::{Endpoint, Validity};

const STABLE_APPID: &str = "wxstable000000001";
const KEY: &str = "stable-client-key-0001";
const ADMIN: &str = "stable-admin-key-00001";

/// `stable` on the stable grant, a client of it and an admin.
fn apps() -> String {
    let stable = App::official("stable", STABLE_APPID, "stable-secret-0001");
    ConfigText::new()
        .app(stable.line(r#"grant = "stable""#))
        .client(Client::new("svc", KEY).apps(&["stable"]))
        .client(Client::new("admin", ADMIN).apps(&["*"]).admin())
        .to_string()
}

async fn stable_app(expires_in: u64) -> TestApp {
    let spec = Spec {
        expires_in,
        ..Spec::default()
    };
    TestApp::builder()
        .spec(spec)
        .fake_apps(&[(STABLE_APPID, "stable-secret-0001")])
        .config(&apps())
        .start()
        .await
}

async fn token(app: &TestApp) -> String {
    let a = app.get("/v1/apps/stable/token", Some(KEY)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.token().access_token
}

#[actix_web::test]
async fn stable_tokens_are_refreshed_inside_their_last_minutes() {
    // 12 s tokens: the fake rotates in the last 6 s (its 300 s window scaled to half a short
    // lifetime); wxtoken must ask inside that window, or it just gets the same token back.
    let app = stable_app(12).await;
    let mut seen = HashSet::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(14) {
        let t = token(&app).await;
        assert_eq!(app.fake.validity(&t), Validity::Valid);
        seen.insert(t);
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.len() >= 2,
        "{} tokens in 14 s of 12 s tokens",
        seen.len()
    );
    let calls = app.fake.calls(Endpoint::StableToken);
    // One call per rotation (plus the first): no storm of early calls getting the same token.
    assert!(
        calls <= seen.len() as u64 + 2,
        "{calls} calls for {} tokens",
        seen.len()
    );
}

#[actix_web::test]
async fn a_stable_token_wechat_still_accepts_is_kept_without_a_call() {
    let app = stable_app(7200).await;
    let t = token(&app).await;
    let calls = app.fake.calls(Endpoint::StableToken);
    for _ in 0..5 {
        let a = app
            .post(
                "/v1/apps/stable/token/invalidate",
                Some(KEY),
                serde_json::json!({ "access_token": t }).to_string(),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.token().access_token, t.as_str());
        assert_eq!(a.token().refreshed, Some(false));
    }
    assert_eq!(
        app.fake.calls(Endpoint::StableToken),
        calls,
        "no stable_token call, forced or not: WeChat's 20 forced refreshes a day are kept"
    );
    assert_eq!(app.fake.validity(&t), Validity::Valid);
    assert!(app.fake.calls(Endpoint::Probe) >= 1);
}

#[actix_web::test]
async fn invalidation_forces_a_refresh_once_per_30_seconds() {
    let app = stable_app(7200).await;
    let old = token(&app).await;
    // Killed behind wxtoken's back (another holder of the secret forced a refresh).
    assert!(app.fake.kill_token(&old));
    let a = app
        .post(
            "/v1/apps/stable/token/invalidate",
            Some(KEY),
            serde_json::json!({ "access_token": old }).to_string(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.token().refreshed, Some(true));
    let new = a.token().access_token;
    assert_ne!(new, old);
    assert_ne!(
        app.fake.validity(&old),
        Validity::Valid,
        "force_refresh kills the old one"
    );
    let calls = app.fake.calls(Endpoint::StableToken);

    // Within 30 s WeChat would answer 45011: wxtoken refuses itself and keeps the token.
    assert!(app.fake.kill_token(&new));
    let a = app
        .post(
            "/v1/apps/stable/token/invalidate",
            Some(KEY),
            serde_json::json!({ "access_token": new }).to_string(),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.token().access_token, new.as_str());
    assert_eq!(a.token().refreshed, Some(false));
    assert_eq!(
        app.fake.calls(Endpoint::StableToken),
        calls,
        "no upstream call"
    );
    app.assert_metrics(&[
        (
            r#"wxtoken_invalidations_total{app="stable",outcome="refused"}"#,
            1.0,
        ),
        (
            r#"wxtoken_forced_refresh_refusals_total{app="stable"}"#,
            1.0,
        ),
    ])
    .await;
    // Revoking needs a forced refresh too: refused with 409 for the same reason.
    let r = app.post("/v1/apps/stable/revoke", Some(ADMIN), "").await;
    assert_eq!(r.status, 409, "{}", r.body);
}

/// The second rotation comes 31 s later: waiting for it here would cost half a minute of real
/// time, so `stable_revoke_rotates_twice_even_across_a_restart` (src/token/actor_tests.rs)
/// checks it on paused time; this test checks the first rotation and the announced second.
#[actix_web::test]
async fn revoking_a_stable_token_rotates_it_at_once_and_announces_a_second_rotation() {
    let app = stable_app(7200).await;
    let old = token(&app).await;
    let r = app.post("/v1/apps/stable/revoke", Some(KEY), "").await;
    assert_eq!(r.status, 403, "only admins revoke: {}", r.body);
    let r = app.post("/v1/apps/stable/revoke", Some(ADMIN), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revoked"], true);
    assert_eq!(r.body["second_rotation_in_secs"], 31);
    let new = r.body["access_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_ne!(app.fake.validity(&old), Validity::Valid);
    assert_eq!(token(&app).await, new);
    app.assert_metrics(&[
        (r#"wxtoken_revocations_total{app="stable"}"#, 1.0),
        (
            r#"wxtoken_token_refreshes_total{app="stable",result="success",trigger="revoked"}"#,
            1.0,
        ),
    ])
    .await;
}
