//! A full disk under the embedded store: the new token keeps being served, `/readyz` names the
//! app whose token is not saved, revoke says it could not persist, and once space is back the
//! store saves the current token by itself (a restart then reuses it without a fetch).

use std::time::{Duration, Instant};

use crate::support::helpers::*;
use crate::support::tmpfs::Tmpfs;

async fn readyz(http: &awc::Client, base: &str) -> (u16, serde_json::Value) {
    let mut r = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz answers");
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (r.status().as_u16(), body)
}

async fn post(
    http: &awc::Client,
    url: &str,
    key: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut r = http
        .post(url)
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&body)
        .await
        .expect("request sent");
    let v = r.json().await.unwrap_or(serde_json::Value::Null);
    (r.status().as_u16(), v)
}

#[actix_web::test]
async fn a_full_disk_is_reported_and_the_current_token_is_saved_once_space_is_back() {
    let Some(disk) = Tmpfs::mount("4m") else {
        return;
    };
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let store = disk.path().join("wxtoken.redb");
    let http = client();
    let server = ThreadServer::start(settings_for(&spec, &fake.base_url(), &store));
    let base = server.base.clone();
    let (status, body) = get_json(&http, &format!("{base}/v1/apps/shop/token"), BILLING_KEY).await;
    assert_eq!(status, 200, "{body}");
    let first = body["access_token"].as_str().unwrap().to_string();
    // Ready once every app (blog too) holds a saved token.
    let ready = eventually(Duration::from_secs(5), || async {
        readyz(&http, &base).await.0 == 200
    })
    .await;
    assert!(ready, "{:?}", readyz(&http, &base).await);

    let filler = disk.fill();
    // An invalidation makes the server fetch a new token, which it cannot save.
    fake.kill_token(&first);
    let (status, inv) = post(
        &http,
        &format!("{base}/v1/apps/shop/token/invalidate"),
        BILLING_KEY,
        serde_json::json!({ "access_token": first }),
    )
    .await;
    assert_eq!(status, 200, "{inv}");
    assert_eq!(inv["refreshed"], true, "{inv}");
    let second = inv["access_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);

    let (status, ready) = readyz(&http, &base).await;
    assert_eq!(
        status, 503,
        "an unsaved token makes the instance unready: {ready}"
    );
    let why = ready["apps"]["shop"].as_str().unwrap_or_default();
    assert!(why.contains("not saved") && why.contains("shop"), "{ready}");
    assert_eq!(ready["apps"]["blog"], "ok", "{ready}");
    // An unsaved record is this instance's problem, not a credential's: unready in the
    // instance scope too.
    let mut r = http
        .get(format!("{base}/readyz?scope=instance"))
        .send()
        .await
        .expect("readyz answers");
    assert_eq!(r.status(), 503, "{:?}", r.body().await);
    let (status, body) = get_json(&http, &format!("{base}/v1/apps/shop/token"), BILLING_KEY).await;
    assert_eq!(
        (status, body["access_token"].as_str()),
        (200, Some(second.as_str())),
        "still served"
    );

    // A revoke while the disk is full says that its new token is not persisted.
    let (status, revoked) = post(
        &http,
        &format!("{base}/v1/apps/shop/revoke"),
        OPS_KEY,
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked"], true);
    assert_eq!(revoked["persisted"], false, "{revoked}");
    let current = revoked["access_token"].as_str().unwrap().to_string();
    assert_ne!(current, second);
    assert_eq!(readyz(&http, &base).await.0, 503);

    std::fs::remove_file(&filler).expect("free the space");
    let freed = Instant::now();
    let recovered = eventually(Duration::from_secs(15), || async {
        readyz(&http, &base).await.0 == 200
    })
    .await;
    let took = freed.elapsed();
    assert!(recovered, "/readyz still 503 15 s after space came back");
    eprintln!("store recovered {took:?} after space came back");
    let minted = fake.minted(SHOP_APPID);
    server.stop();

    // The file holds the current token: a restart serves it without an upstream call.
    let again = ThreadServer::start(settings_for(&spec, &fake.base_url(), &store));
    let (status, body) = get_json(
        &http,
        &format!("{}/v1/apps/shop/token", again.base),
        BILLING_KEY,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["access_token"],
        current.as_str(),
        "the current token was saved"
    );
    assert_eq!(
        fake.current_token(SHOP_APPID).as_deref(),
        Some(current.as_str())
    );
    // With space, a revoke is persisted again.
    let (status, revoked) = post(
        &http,
        &format!("{}/v1/apps/shop/revoke", again.base),
        OPS_KEY,
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["persisted"], true, "{revoked}");
    assert_eq!(
        fake.minted(SHOP_APPID),
        minted + 1,
        "only the revoke fetched"
    );
    again.stop();
    drop(disk);
}
