//! `[[platforms]]` as operators meet it: `check-config` output, bad platform settings refused
//! by `check-config`, `serve` and a reload without printing a secret, a server that runs with
//! platforms and no apps, and clients limited to platforms.

use std::path::Path;

use crate::support::helpers::*;
use crate::support::process::wxtoken;

const ADMIN: &str = "admin-key-0000000000001";
const CRM: &str = "crm-client-key-000000001";
const COMPONENT_SECRET: &str = "component-secret-value-0001";
const MSG_TOKEN: &str = "msgToken0042";
/// WeChat's published sample EncodingAESKey.
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// One platform entry: `aes` is the line giving its EncodingAESKey.
fn platform(name: &str, aes: &str) -> String {
    format!(
        r#"
[[platforms]]
name = "{name}"
component_appid = "wx3c1f0a9d8e7b6a51"
component_secret_env = "WXTOKEN_TEST_SAAS_SECRET"
token_env = "WXTOKEN_TEST_SAAS_TOKEN"
{aes}
"#
    )
}

/// A configuration file with no apps: one platform and its client.
fn platforms_only(dir: &Path, aes: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[upstream]
base_url = "http://127.0.0.1:9"
[store]
path = {store}
{platform}
[[clients]]
name = "crm"
key_env = "WXTOKEN_TEST_CRM_KEY"
platforms = ["saas"]
"#,
        store = quoted(&dir.join("s.redb")),
        platform = platform("saas", aes),
    )
}

/// `wxtoken cmd --config path` with the platform's secrets in its environment.
fn run(cmd: &str, path: &Path, extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut c = wxtoken(&[cmd, "--config", path.to_str().unwrap()]);
    c.env("WXTOKEN_TEST_SAAS_SECRET", COMPONENT_SECRET)
        .env("WXTOKEN_TEST_SAAS_TOKEN", MSG_TOKEN)
        .env("WXTOKEN_TEST_CRM_KEY", CRM);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn check_config_shows_where_each_platform_secret_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let aes_file = dir.path().join("aes");
    std::fs::write(&aes_file, format!("{AES_KEY}\n")).unwrap();
    let path = dir.path().join("wxtoken.toml");
    let aes = format!("encoding_aes_key_file = {}", quoted(&aes_file));
    std::fs::write(&path, platforms_only(dir.path(), &aes)).unwrap();
    let out = run(
        "check-config",
        &path,
        &[("WXTOKEN_PLATFORMS__0__ACTIVE_WINDOW_SECS", "3600")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout} {stderr}");
    let expected = format!(
        "[[platforms]]\nname = \"saas\"\ncomponent_appid = \"wx3c1f0a9d8e7b6a51\"\n\
         component_secret = \"env WXTOKEN_TEST_SAAS_SECRET (redacted)\"\n\
         token = \"env WXTOKEN_TEST_SAAS_TOKEN (redacted)\"\n\
         encoding_aes_key = {}\n\
         authorizer_refresh = \"active\"\nactive_window_secs = 3600\n",
        toml::Value::String(format!("file {} (redacted)", aes_file.display()))
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(stdout.contains("platforms = [\"saas\"]"), "{stdout}");
    for secret in [COMPONENT_SECRET, MSG_TOKEN, AES_KEY, CRM] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
}

#[test]
fn bad_platform_settings_fail_check_config_and_serve_without_printing_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.toml");
    // (what, file, environment, expected words, the value that must not appear)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let from_env = "encoding_aes_key_env = \"WXTOKEN_TEST_SAAS_AES\"";
    let padded = format!("{AES_KEY}=");
    let cases: Vec<Case> = vec![
        (
            "an AES key with its '=' from the environment",
            platforms_only(dir.path(), from_env),
            vec![("WXTOKEN_TEST_SAAS_AES", &padded)],
            "platforms[0].encoding_aes_key: has 44 characters, an EncodingAESKey has exactly 43 (leave out the trailing '=')",
            AES_KEY,
        ),
        (
            "a message token with a dash, by override",
            platforms_only(dir.path(), &format!("encoding_aes_key = \"{AES_KEY}\"")),
            vec![("WXTOKEN_TEST_SAAS_TOKEN", "bad-token-1")],
            "platforms[0].token: must be 3 to 32 letters and digits",
            "bad-token-1",
        ),
        (
            "a component secret typed as a number",
            platforms_only(dir.path(), &format!("encoding_aes_key = \"{AES_KEY}\""))
                .replace(
                    "component_secret_env = \"WXTOKEN_TEST_SAAS_SECRET\"",
                    "component_secret = 31415926535897932384",
                ),
            vec![],
            "component_secret",
            "31415926535897932384",
        ),
        (
            "a client naming an unknown platform",
            platforms_only(dir.path(), &format!("encoding_aes_key = \"{AES_KEY}\""))
                .replace("platforms = [\"saas\"]", "platforms = [\"sass\"]"),
            vec![],
            "clients[0].platforms[0]: unknown platform `sass`",
            AES_KEY,
        ),
    ];
    for (what, text, env, expected, value) in cases {
        std::fs::write(&path, text).unwrap();
        for cmd in ["check-config", "serve"] {
            let out = run(cmd, &path, &env);
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!out.status.success(), "{what}: {cmd} accepted it");
            assert!(all.contains(expected), "{what}: {cmd} said {all:?}");
            assert!(!all.contains(value), "{what}: {cmd} printed it: {all:?}");
        }
    }
}

/// Inline secrets, for servers built in the test process.
fn inline_platform(name: &str) -> String {
    format!(
        "[[platforms]]\nname = \"{name}\"\ncomponent_appid = \"wx{name}0000000001\"\n\
         component_secret = \"{COMPONENT_SECRET}\"\ntoken = \"{MSG_TOKEN}\"\n\
         encoding_aes_key = \"{AES_KEY}\"\n"
    )
}

#[actix_web::test]
async fn a_server_runs_with_platforms_and_no_apps() {
    let fake = start_fake(&Spec::default()).await;
    let text = format!(
        "{}[[clients]]\nname = \"crm\"\nkey = \"{CRM}\"\nplatforms = [\"*\"]\n",
        inline_platform("saas")
    );
    let app = TestApp::builder().fake(fake).config(&text).start().await;
    assert_eq!(app.get("/healthz", None).await.status, 200);
    // No app exists: 404 for the client, as for any unknown app.
    let r = app.get("/v1/apps/shop/token", Some(CRM)).await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[actix_web::test]
async fn a_client_of_platforms_only_reads_no_app() {
    let fake = start_fake(&Spec::default()).await;
    let text = format!(
        "[[apps]]\nname = \"shop\"\nappid = \"{SHOP_APPID}\"\nsecret = \"{SHOP_SECRET}\"\n\
         {}\
         [[clients]]\nname = \"crm\"\nkey = \"{CRM}\"\nplatforms = [\"saas\"]\n\
         [[clients]]\nname = \"billing\"\nkey = \"{BILLING_KEY}\"\napps = [\"shop\"]\n",
        inline_platform("saas")
    );
    let app = TestApp::builder().fake(fake).config(&text).start().await;
    assert_eq!(
        app.get("/v1/apps/shop/token", Some(BILLING_KEY))
            .await
            .status,
        200
    );
    let r = app.get("/v1/apps/shop/token", Some(CRM)).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

/// A file with the shop app, an admin client and the given platform entries.
fn reload_file(dir: &Path, base: &str, platforms: &str) -> String {
    let store = format!("path = {}", quoted(&dir.join("s.redb")));
    let apps_and_clients = ConfigText::new()
        .app(App::official("shop", SHOP_APPID, SHOP_SECRET))
        .raw(platforms)
        .client(
            Client::new("admin", ADMIN)
                .apps(&["*"])
                .platforms(&["*"])
                .admin(),
        );
    server_file(base, &store, &apps_and_clients.to_string())
}

#[actix_web::test]
async fn a_reload_with_a_bad_platform_is_rejected_and_tokens_keep_serving() {
    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.toml");
    let base = fake.base_url();
    std::fs::write(&path, reload_file(dir.path(), &base, "")).unwrap();
    let placeholder = format!(
        "[[apps]]\nname = \"shop\"\nappid = \"{SHOP_APPID}\"\nsecret = \"x\"\n\
         [[clients]]\nname = \"admin\"\nkey = \"{ADMIN}\"\napps = [\"*\"]\n"
    );
    let app = TestApp::builder()
        .fake(fake)
        .config(&placeholder)
        .config_file(&path)
        .start()
        .await;
    let token = app.get("/v1/apps/shop/token", Some(ADMIN)).await;
    assert_eq!(token.status, 200, "{}", token.body);

    // An added platform is accepted by a reload, waits for a restart (it says so), and leaves
    // the app alone.
    std::fs::write(
        &path,
        reload_file(dir.path(), &base, &inline_platform("saas")),
    )
    .unwrap();
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["updated"], serde_json::json!([]), "{}", r.body);
    assert_eq!(
        r.body["needs_restart"],
        serde_json::json!(["platforms"]),
        "{}",
        r.body
    );

    let short_key = &AES_KEY[..42];
    let bad = inline_platform("saas").replace(AES_KEY, short_key);
    std::fs::write(&path, reload_file(dir.path(), &base, &bad)).unwrap();
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = r.body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("platforms[0].encoding_aes_key: has 42 characters"),
        "{msg}"
    );
    assert!(!r.body.to_string().contains(short_key), "{}", r.body);
    let after = app.get("/v1/apps/shop/token", Some(ADMIN)).await;
    assert_eq!(after.body["access_token"], token.body["access_token"]);
}
