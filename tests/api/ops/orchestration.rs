//! What orchestrators rely on: `/readyz?scope=instance` (ready while the instance can serve,
//! whatever one credential's state), `wxtoken healthcheck` (an exit code from one probe, with no
//! shell) and the systemd notifications of `serve` (`READY=1`, `STOPPING=1`).

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use wxtoken::config::ReadinessScope;

use crate::support::helpers::*;
use crate::support::process::{wait_exit, wait_for_listen_addr, wxtoken, KillOnDrop};

const KEY: &str = "orchestration-client-key-0001";

/// `shop` with a wrong AppSecret (WeChat answers 40125 for ever), `blog` with its right one.
fn one_wrong_secret() -> String {
    format!(
        r#"
[[apps]]
name = "shop"
appid = "{SHOP_APPID}"
secret = "a-wrong-app-secret-000001"
[[apps]]
name = "blog"
appid = "{BLOG_APPID}"
secret = "{BLOG_SECRET}"
[[clients]]
name = "ops"
key = "{KEY}"
apps = ["*"]
"#
    )
}

async fn spawn_with(readiness: ReadinessScope) -> TestApp {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .config(&one_wrong_secret())
        .adjust(|(s, _)| {
            s.server.readiness = readiness;
        })
        .start()
        .await;
    // blog holds its token and shop's fetch has failed at least once.
    let settled = eventually(Duration::from_secs(10), || async {
        let r = app.get("/readyz?scope=apps", None).await;
        r.body["apps"]["blog"] == "ok"
            && r.body["apps"]["shop"]
                .as_str()
                .is_some_and(|w| w.contains("40125"))
    })
    .await;
    assert!(settled, "{}", app.get("/readyz", None).await.body);
    app
}

#[actix_web::test]
async fn one_credential_without_a_token_leaves_the_instance_ready_in_the_instance_scope() {
    let app = spawn_with(ReadinessScope::Apps).await;

    // The default scope: every credential must hold a token.
    let all = app.get("/readyz", None).await;
    assert_eq!(all.status, 503, "{}", all.body);
    assert_eq!(all.body["scope"], "apps");

    // The instance serves blog (and would serve 99,999 others): ready, shop still listed.
    let instance = app.get("/readyz?scope=instance", None).await;
    assert_eq!(instance.status, 200, "{}", instance.body);
    assert_eq!(instance.body["ready"], true);
    assert_eq!(instance.body["scope"], "instance");
    assert_eq!(instance.body["apps"]["blog"], "ok");
    let why = instance.body["apps"]["shop"].as_str().unwrap();
    assert!(
        why.contains("no valid token") && why.contains("40125"),
        "{why}"
    );
    assert!(!why.contains("a-wrong-app-secret"), "{why}");
    assert_eq!(app.get("/v1/apps/blog/token", Some(KEY)).await.status, 200);

    // An unknown scope is not worth a failed probe: it gets the configured default.
    let unknown = app.get("/readyz?scope=everything", None).await;
    assert_eq!(
        (unknown.status, &unknown.body["scope"]),
        (503, &"apps".into())
    );
}

#[actix_web::test]
async fn readiness_instance_in_the_config_is_the_default_and_scope_apps_still_asks_for_all() {
    let app = spawn_with(ReadinessScope::Instance).await;
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["scope"], "instance");
    assert!(r.body["apps"]["shop"].as_str().unwrap().contains("40125"));
    let all = app.get("/readyz?scope=apps", None).await;
    assert_eq!(all.status, 503, "{}", all.body);
}

/// `wxtoken healthcheck ARGS` run off the test's thread (the server answers on this System);
/// its exit code and how long it took.
async fn healthcheck(args: &[&str]) -> (Option<i32>, Duration, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    actix_web::rt::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut cmd = wxtoken(&["healthcheck"]);
        cmd.args(&args).env_remove("WXTOKEN_HEALTHCHECK_URL");
        let out = cmd.output().expect("wxtoken runs");
        (
            out.status.code(),
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn healthcheck_exits_0_for_a_200_and_1_for_any_other_answer_or_none() {
    let app = spawn_with(ReadinessScope::Apps).await;
    let url = |p: &str| format!("{}{p}", app.base);
    let (code, _, err) = healthcheck(&["--url", &url("/healthz")]).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = healthcheck(&["--url", &url("/readyz?scope=instance")]).await;
    assert_eq!(code, Some(0), "{err}");

    // A 503 (shop has no token).
    let (code, _, err) = healthcheck(&["--url", &url("/readyz")]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("answered 503"), "{err}");

    // Refused: nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = healthcheck(&["--url", &format!("http://127.0.0.1:{port}/healthz")]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot connect"), "{err}");

    // Accepted but never answered: timed out, on time.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/healthz", silent.local_addr().unwrap());
    let (code, took, err) = healthcheck(&["--url", &silent_url, "--timeout-secs", "1"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("timed out"), "{err}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    drop(silent);

    // Not a URL it can probe (https:// is: see tests/api/trust/https.rs).
    let (code, _, err) = healthcheck(&["--url", "ftp://127.0.0.1:1/healthz"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("http://"), "{err}");
}

/// Waits for one datagram on `socket`.
fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[actix_web::test]
async fn serve_tells_systemd_ready_once_it_serves_and_stopping_on_sigterm() {
    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // systemd's side of Type=notify: a datagram socket named by NOTIFY_SOCKET.
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = dir.path().join("wxtoken.toml");
    std::fs::write(
        &config,
        config_text(&fake.base_url(), &dir.path().join("s.redb"), "127.0.0.1:0"),
    )
    .unwrap();
    let log = dir.path().join("log.txt");
    let mut child = KillOnDrop(
        wxtoken(&["serve", "--config", config.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(std::fs::File::create(dir.path().join("stdout.txt")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let ready = actix_web::rt::task::spawn_blocking({
        let socket = socket.try_clone().unwrap();
        move || receive(&socket)
    })
    .await
    .unwrap();
    assert_eq!(ready, "READY=1\n");
    // READY=1 comes after the listener is bound: the first request is answered.
    let base = format!("http://{}", wait_for_listen_addr(&log, &mut child.0));
    let (status, _) = get_json(&client(), &format!("{base}/healthz"), OPS_KEY).await;
    assert_eq!(status, 200);

    let term = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert_eq!(receive(&socket), "STOPPING=1\n");
    let status = wait_exit(&mut child.0, Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("shut down cleanly"), "{text}");
}
