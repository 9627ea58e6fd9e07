//! `/readyz` of an instance with more apps than it lists: the apps that are not ready by name,
//! counts for the rest, and every app with `?verbose=true`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::support::helpers::*;

const KEY: &str = "readyz-client-key-0000000001";
/// One more app than `/readyz` lists one by one.
const APPS: usize = 1001;

#[actix_web::test]
async fn above_a_thousand_apps_readyz_names_the_unready_and_counts_the_rest() {
    let creds: Vec<(String, String)> = (0..APPS)
        .map(|i| (format!("wxready{i:010}"), format!("ready-secret-{i:08}")))
        .collect();
    let pairs: Vec<(&str, &str)> = creds
        .iter()
        .map(|(a, s)| (a.as_str(), s.as_str()))
        .collect();
    let spec = Spec::default();
    let fake = start_fake_with(&spec, &pairs, &[]).await;
    let mut config = String::new();
    for (i, (appid, secret)) in creds.iter().enumerate() {
        // The last app is configured with a secret WeChat does not know (errcode 40125).
        let secret = if i == APPS - 1 {
            "not-the-secret"
        } else {
            secret
        };
        writeln!(
            config,
            "[[apps]]\nname = \"r{i:04}\"\nappid = \"{appid}\"\nsecret = \"{secret}\""
        )
        .unwrap();
    }
    writeln!(
        config,
        "[[clients]]\nname = \"c\"\nkey = \"{KEY}\"\napps = [\"*\"]"
    )
    .unwrap();
    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .config(&config)
        .start()
        .await;

    let summary = |body: &serde_json::Value| {
        (
            body["apps_ok"].as_u64(),
            body["apps_not_ready"].as_u64(),
            body["apps"].as_object().map(|m| m.len()),
        )
    };
    assert!(
        eventually(Duration::from_secs(20), || async {
            let r = app.get("/readyz", None).await;
            summary(&r.body) == (Some(APPS as u64 - 1), Some(1), Some(1))
        })
        .await,
        "every app but one ready: {}",
        app.get("/readyz", None).await.body
    );
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["ready"], false);
    let why = r.body["apps"]["r1000"].as_str().unwrap();
    assert!(why.contains("40125"), "{why}");

    let all = app.get("/readyz?verbose=true", None).await;
    assert_eq!(all.status, 503);
    let apps = all.body["apps"].as_object().unwrap();
    assert_eq!(apps.len(), APPS);
    assert_eq!(apps["r0000"], "ok");
    assert!(
        all.body.get("apps_ok").is_none(),
        "the full list needs no counts"
    );
}
