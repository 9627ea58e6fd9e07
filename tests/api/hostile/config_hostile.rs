//! Hostile and careless configurations: secret files that are FIFOs or devices, secrets typed
//! as numbers, credentials in URLs, and what reloads report while the server keeps serving.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::helpers::*;
use crate::support::process::{wait_exit, wxtoken};

const ADMIN: &str = "admin-key-0000000000001";
const SVC: &str = "svc-key-00000000000001";

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
}

/// A whole configuration file: `shop_secret` is the line that gives shop's secret, `upstream`
/// and `store` are extra lines of those sections.
fn file_text(
    dir: &Path,
    fake_base: &str,
    shop_secret: &str,
    upstream: &str,
    store: &str,
) -> String {
    let store = if store.is_empty() {
        format!("path = {}", quoted(&dir.join("s.redb")))
    } else {
        store.to_string()
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[upstream]
base_url = "{fake_base}"
min_token_lifetime_secs = 2
{upstream}
[refresh]
min_interval_secs = 0
[store]
{store}
{apps_and_clients}"#,
        apps_and_clients = ConfigText::new()
            .app(App::official_with("shop", SHOP_APPID).line(shop_secret))
            .client(Client::new("svc", SVC).apps(&["*"]))
            .client(Client::new("admin", ADMIN).apps(&["*"]).admin()),
    )
}

/// Runs `cmd --config path`, which must fail within `limit`; returns its stderr.
fn fails_fast(cmd: &str, path: &Path, limit: Duration) -> String {
    let dir = path.parent().unwrap();
    let err = dir.join(format!("{cmd}.stderr"));
    let start = Instant::now();
    let mut child = wxtoken(&[cmd, "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, limit);
    assert!(!status.success(), "{cmd} accepted it");
    assert!(start.elapsed() < limit);
    std::fs::read_to_string(&err).unwrap()
}

#[test]
fn fifo_and_device_secret_files_fail_check_config_and_serve_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("secret.fifo");
    mkfifo(&fifo);
    for (file, what) in [
        (fifo.as_path(), "a FIFO"),
        (Path::new("/dev/zero"), "a device"),
    ] {
        let path = dir.path().join("wxtoken.toml");
        let text = file_text(
            dir.path(),
            "http://127.0.0.1:9",
            &format!("secret_file = {}", quoted(file)),
            "",
            "",
        );
        std::fs::write(&path, text).unwrap();
        for cmd in ["check-config", "serve"] {
            let stderr = fails_fast(cmd, &path, Duration::from_secs(5));
            assert!(
                stderr.contains("apps[0].secret_file") && stderr.contains(what),
                "{cmd}: {stderr}"
            );
        }
    }
}

#[test]
fn numeric_secrets_and_url_passwords_are_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.toml");
    let cases = [
        (
            file_text(
                dir.path(),
                "http://127.0.0.1:9",
                "secret = 31415926535897932384",
                "",
                "",
            ),
            "31415926535897932384",
            "secret",
        ),
        (
            file_text(
                dir.path(),
                "http://wxuser:hunter2hunter2@127.0.0.1:9",
                "secret = \"s\"",
                "",
                "",
            ),
            "hunter2hunter2",
            "upstream.base_url",
        ),
        (
            file_text(
                dir.path(),
                "http://127.0.0.1:9",
                "secret = \"s\"",
                "wecom_base_url = \"https://wxuser:hunter2hunter2@proxy.example\"",
                "",
            ),
            "hunter2hunter2",
            "upstream.wecom_base_url",
        ),
    ];
    for (text, secret, key) in cases {
        std::fs::write(&path, text).unwrap();
        let out = wxtoken(&["check-config", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{all}");
        assert!(all.contains(key), "names the key: {all}");
        assert!(!all.contains(secret), "{all}");
        assert!(!all.contains("wxuser"), "{all}");
    }
}

/// A server started from `path`, with reloads reading it.
async fn spawn_from_file(fake: wxtoken::fake::FakeWechat, path: &Path) -> TestApp {
    // The placeholder apps are replaced by the file's settings before the server starts.
    let placeholder = format!(
        "[[apps]]\nname = \"shop\"\nappid = \"{SHOP_APPID}\"\nsecret = \"x\"\n\
         [[clients]]\nname = \"svc\"\nkey = \"{SVC}\"\napps = [\"*\"]\n"
    );
    TestApp::builder()
        .fake(fake)
        .config(&placeholder)
        .config_file(path)
        .start()
        .await
}

/// `shop`'s secret written inline, as the files below start.
fn inline_secret() -> String {
    format!("secret = \"{SHOP_SECRET}\"")
}

/// A server started from a file of its own (inline secret, default store) that a test
/// rewrites before asking for a reload.
struct FileServer {
    app: TestApp,
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl FileServer {
    async fn start() -> FileServer {
        let fake = start_fake(&Spec::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxtoken.toml");
        let text = file_text(dir.path(), &fake.base_url(), &inline_secret(), "", "");
        std::fs::write(&path, text).unwrap();
        let app = spawn_from_file(fake, &path).await;
        FileServer { app, dir, path }
    }

    /// Rewrites the file; the arguments are [`file_text`]'s.
    fn write(&self, shop_secret: &str, upstream: &str, store: &str) {
        let base = self.app.fake.base_url();
        let text = file_text(self.dir.path(), &base, shop_secret, upstream, store);
        std::fs::write(&self.path, text).unwrap();
    }
}

#[actix_web::test]
async fn a_reload_naming_a_fifo_is_rejected_while_tokens_keep_serving() {
    let served = FileServer::start().await;
    let app = &served.app;
    let token = app.get("/v1/apps/shop/token", Some(SVC)).await;
    assert_eq!(token.status, 200, "{}", token.body);

    let fifo = served.dir.path().join("secret.fifo");
    mkfifo(&fifo);
    served.write(&format!("secret_file = {}", quoted(&fifo)), "", "");
    let started = Instant::now();
    let reload = app.post("/v1/admin/reload", Some(ADMIN), "");
    let gets = async {
        let mut answers = Vec::new();
        for _ in 0..20 {
            answers.push(app.get("/v1/apps/shop/token", Some(SVC)).await.status);
        }
        answers
    };
    let (r, answers) = futures_util::future::join(reload, gets).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = r.body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("apps[0].secret_file") && msg.contains("FIFO"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once"
    );
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    // The running configuration is kept, and the token actor still answers.
    let after = app.get("/v1/apps/shop/token", Some(SVC)).await;
    assert_eq!(after.body["access_token"], token.body["access_token"]);
}

#[actix_web::test]
async fn needs_restart_is_reported_by_every_reload_until_a_restart() {
    let served = FileServer::start().await;
    let app = &served.app;

    // An unchanged file needs nothing.
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["needs_restart"], serde_json::json!([]));

    let elsewhere = format!("path = {}", quoted(&served.dir.path().join("other.redb")));
    served.write(&inline_secret(), "timeout_secs = 7", &elsewhere);
    for round in ["first", "second"] {
        let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["needs_restart"],
            serde_json::json!(["upstream", "store"]),
            "{round} reload"
        );
    }
    // Back to what runs: nothing to restart for.
    served.write(&inline_secret(), "", "");
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.body["needs_restart"], serde_json::json!([]), "{}", r.body);
}

#[actix_web::test]
async fn a_changed_redis_password_needs_a_restart() {
    let redis = crate::support::fleet::RedisServer::start(Some("first-password-1"));
    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.toml");
    let base = fake.base_url();
    let inline = inline_secret();
    let local = dir.path().join("local.redb");
    let store = |url: &str| {
        format!(
            "kind = \"redis\"\nurl = \"{url}\"\ninstance = \"cfg-test\"\nlocal_path = \"{}\"",
            local.display()
        )
    };
    std::fs::write(
        &path,
        file_text(dir.path(), &base, &inline, "", &store(&redis.url())),
    )
    .unwrap();
    let app = spawn_from_file(fake, &path).await;
    assert_eq!(app.get("/v1/apps/shop/token", Some(SVC)).await.status, 200);

    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.body["needs_restart"], serde_json::json!([]), "{}", r.body);
    let changed = redis.url().replace("first-password-1", "second-password-2");
    std::fs::write(
        &path,
        file_text(dir.path(), &base, &inline, "", &store(&changed)),
    )
    .unwrap();
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["needs_restart"], serde_json::json!(["store"]));
    let text = r.body.to_string();
    assert!(!text.contains("password"), "{text}");
}
