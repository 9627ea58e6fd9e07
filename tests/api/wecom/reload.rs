//! A reload and the WeCom tables: suites and providers run from the settings they started with,
//! so a changed one is listed under `needs_restart` and the running suite keeps serving.

use crate::support::helpers::*;
use crate::support::wecom::*;

const ADMIN: &str = "wecom-admin-client-key-0001";

/// The server file: the WeCom tables with `suite_secret`, and an admin client.
fn file(fake: &wxtoken::fake::FakeWechat, store: &std::path::Path, suite_secret: &str) -> String {
    let tables = wecom_tables("active").replacen(SUITE_SECRET, suite_secret, 1);
    let admin = format!(
        "[[clients]]\nname = \"admin\"\nkey = \"{ADMIN}\"\nwecom_suites = [\"*\"]\nadmin = true\n"
    );
    server_file(
        &fake.base_url(),
        &format!("path = {}", quoted(store)),
        &format!("{tables}\n{admin}"),
    )
}

#[actix_web::test]
async fn a_changed_suite_waits_for_a_restart_and_the_running_one_keeps_serving() {
    let fake = start_wecom_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.toml");
    let store = dir.path().join("wxtoken.redb");
    std::fs::write(&path, file(&fake, &store, SUITE_SECRET)).unwrap();
    let app = TestApp::builder()
        .fake(fake)
        .config(&wecom_tables("active"))
        .config_file(&path)
        .start()
        .await;
    route_callbacks(&app.fake, &app.base);
    app.suite_ready(SUITE, SUITE_ID).await;

    std::fs::write(&path, file(&app.fake, &store, "another-suite-secret-0002")).unwrap();
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["needs_restart"],
        serde_json::json!(["wecom"]),
        "{}",
        r.body
    );
    let token = app
        .get(&app.suite_path(SUITE, "/suite_token"), Some(KEY))
        .await;
    assert_eq!(token.status, 200, "{}", token.body);
    // The unchanged file asks for nothing.
    std::fs::write(&path, file(&app.fake, &store, SUITE_SECRET)).unwrap();
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.body["needs_restart"], serde_json::json!([]), "{}", r.body);
}
