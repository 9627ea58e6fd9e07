//! Admin operations: revoking a client_credential token, and hot reload of the configuration.

use std::time::Duration;

use crate::support::helpers::*;
use wxtoken::fake::Validity;

const EXTRA_APPID: &str = "wxextra000000003";

fn config(shop_secret: &str, with_extra: bool, svc_key: &str) -> String {
    let mut config = ConfigText::new()
        .app(App::official("shop", SHOP_APPID, shop_secret))
        .app(App::official("blog", BLOG_APPID, BLOG_SECRET));
    if with_extra {
        config = config.app(App::official("extra", EXTRA_APPID, "extra-secret-0003"));
    }
    config
        .client(Client::new("svc", svc_key).apps(&["*"]))
        .client(Client::new("admin", ADMIN).apps(&["*"]).admin())
        .to_string()
}

const ADMIN: &str = "admin-key-0000000000001";
const SVC: &str = "svc-key-00000000000001";
const SVC2: &str = "svc-key-00000000000002";

fn file_config(dir: &std::path::Path, fake_base: &str, body: &str) -> String {
    let store = format!("path = {}", quoted(&dir.join("s.redb")));
    let rest = format!("[refresh]\nmin_interval_secs = 0\n{body}");
    server_file(fake_base, &store, &rest)
}

#[actix_web::test]
async fn revoke_rotates_a_client_credential_token() {
    let spec = Spec {
        overlap_secs: 0,
        ..Spec::default()
    };
    let fake = start_fake(&spec).await;
    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .config(&config(SHOP_SECRET, false, SVC))
        .start()
        .await;
    let old = app.get("/v1/apps/shop/token", Some(SVC)).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.post("/v1/apps/shop/revoke", Some(SVC), "").await.status,
        403
    );
    let r = app.post("/v1/apps/shop/revoke", Some(ADMIN), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revoked"], true);
    assert!(r.body.get("second_rotation_in_secs").is_none());
    let new = r.body["access_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(app.fake.validity(new), Validity::Valid);
    assert_ne!(app.fake.validity(&old), Validity::Valid);
    assert_eq!(app.minted(SHOP_APPID), 2);
}

#[actix_web::test]
async fn reload_adds_and_removes_apps_and_swaps_keys_and_secrets() {
    let spec = Spec::default();
    let fake = start_fake_with(&spec, &[(EXTRA_APPID, "extra-secret-0003")], &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.toml");
    std::fs::write(
        &path,
        file_config(
            dir.path(),
            &fake.base_url(),
            &config(SHOP_SECRET, false, SVC),
        ),
    )
    .unwrap();
    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .config(&config(SHOP_SECRET, false, SVC))
        .config_file(&path)
        .start()
        .await;
    let shop_token = app.get("/v1/apps/shop/token", Some(SVC)).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.get("/v1/apps/extra/token", Some(SVC)).await.status, 404);
    let blog_minted = app.minted(BLOG_APPID);
    // Weak, so the test does not keep the actor alive (a supervised actor with a live address
    // would be restarted instead of stopping).
    let blog_actor = app.state.apps.load().get("blog").unwrap().addr.downgrade();

    // New file: `extra` added, `blog` removed, the service key replaced, shop's secret wrong.
    let new = config("a-wrong-secret", true, SVC2).replace(
        &format!(
            "[[apps]]\nname = \"blog\"\nappid = \"{BLOG_APPID}\"\nsecret = \"{BLOG_SECRET}\"\n"
        ),
        "",
    );
    std::fs::write(&path, file_config(dir.path(), &app.fake.base_url(), &new)).unwrap();
    assert_eq!(
        app.post("/v1/admin/reload", Some(SVC), "").await.status,
        403
    );
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["added"], serde_json::json!(["extra"]));
    assert_eq!(r.body["removed"], serde_json::json!(["blog"]));
    assert_eq!(
        r.body["updated"],
        serde_json::json!(["shop"]),
        "only the app whose secret changed is told"
    );

    // Client keys change at once.
    assert_eq!(app.get("/v1/apps/shop/token", Some(SVC)).await.status, 401);
    assert_eq!(app.get("/v1/apps/shop/token", Some(SVC2)).await.status, 200);
    // The added app serves; the removed one is gone and its actor no longer fetches.
    let extra = app.get("/v1/apps/extra/token", Some(SVC2)).await;
    assert_eq!(extra.status, 200, "{}", extra.body);
    assert_eq!(app.get("/v1/apps/blog/token", Some(SVC2)).await.status, 404);
    let text = app.metrics_text().await;
    assert!(
        sample(&text, r#"wxtoken_token_seconds_left{app="blog"}"#).is_none(),
        "a removed app's gauges are dropped, so no frozen value keeps an alert firing"
    );
    assert!(sample(&text, r#"wxtoken_token_seconds_left{app="extra"}"#).unwrap() > 7000.0);
    // The running token stays; the new (wrong) secret is used from the next fetch.
    assert_eq!(
        app.get("/v1/apps/shop/token", Some(SVC2)).await.body["access_token"],
        shop_token.as_str()
    );
    // WeChat rejects the token for real, so the report asks for a fetch.
    app.fake.kill_token(&shop_token);
    let inv = app
        .post(
            "/v1/apps/shop/token/invalidate",
            Some(SVC2),
            serde_json::json!({ "access_token": shop_token }).to_string(),
        )
        .await;
    assert_eq!(
        inv.token().refreshed,
        Some(false),
        "the fetch with the new secret failed"
    );
    assert!(
        app.metric(r#"wxtoken_upstream_errors_total{app="shop",reason="40125"}"#)
            .await
            .unwrap()
            >= 1.0
    );
    // The removed app's actor is gone (its mailbox disconnected): nothing is left that could
    // fetch for it, so the count below is final.
    let stopped = eventually(Duration::from_secs(5), || async {
        blog_actor.upgrade().is_none()
    })
    .await;
    assert!(stopped, "the removed app's actor stopped");
    assert_eq!(app.minted(BLOG_APPID), blog_minted);

    // A broken file is rejected and the running configuration kept.
    std::fs::write(&path, "[server\n").unwrap();
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, 400);
    let error = r.error();
    assert_eq!(error.error, "invalid_config");
    assert!(
        error.message.contains("not valid TOML"),
        "{}",
        error.message
    );
    assert_eq!(
        app.get("/v1/apps/extra/token", Some(SVC2)).await.status,
        200
    );
}

#[actix_web::test]
async fn a_reload_of_many_apps_with_one_changed_touches_only_that_one() {
    let n = 500;
    let apps: Vec<(String, String)> = (0..n)
        .map(|i| (format!("wx{i:016}"), format!("secret-{i:08}")))
        .collect();
    let body = |changed: &str| {
        let mut b = String::new();
        for (i, (appid, secret)) in apps.iter().enumerate() {
            let secret = if i == 7 { changed } else { secret.as_str() };
            b.push_str(&format!(
                "[[apps]]\nname = \"app-{i}\"\nappid = \"{appid}\"\nsecret = \"{secret}\"\n"
            ));
        }
        b.push_str(&format!(
            "[[clients]]\nname = \"admin\"\nkey = \"{ADMIN}\"\napps = [\"*\"]\nadmin = true\n"
        ));
        b
    };
    let spec = Spec::default();
    let registered: Vec<(&str, &str)> =
        apps.iter().map(|(a, s)| (a.as_str(), s.as_str())).collect();
    let fake = start_fake_with(&spec, &registered, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.toml");
    let write = |b: &str, base: &str| {
        std::fs::write(&path, file_config(dir.path(), base, b)).unwrap();
    };
    write(&body("secret-00000007"), &fake.base_url());
    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .config(&body("secret-00000007"))
        .config_file(&path)
        .start()
        .await;
    let ready = eventually(Duration::from_secs(20), || async {
        app.get("/readyz", None).await.status == 200
    })
    .await;
    assert!(ready, "{n} apps never became ready");
    let before = app.state.apps.load_full();
    write(&body("a-new-secret-0007"), &app.fake.base_url());
    let started = std::time::Instant::now();
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["updated"], serde_json::json!(["app-7"]));
    assert_eq!(r.body["added"], serde_json::json!([]));
    assert_eq!(r.body["replaced"], serde_json::json!([]));
    // The other apps' handles are the very same: no message, no copy.
    let after = app.state.apps.load_full();
    let kept = (0..n)
        .filter(|i| {
            let name = format!("app-{i}");
            std::sync::Arc::ptr_eq(before.get(&name).unwrap(), after.get(&name).unwrap())
        })
        .count();
    assert_eq!(kept, n - 1);
    println!("reload of {n} apps with one changed: {took:?}");
}
