//! The `wxtoken` binary as operators run it: serve, SIGTERM, logs, check-config, bad configs.

use std::io::Read as _;
use std::process::Command;
use std::time::Duration;

use crate::support::helpers::*;
use crate::support::process::{wait_exit, wait_for_listen_addr, wxtoken, KillOnDrop};

#[actix_web::test]
async fn serve_stops_gracefully_on_sigterm_and_logs_no_secret() {
    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wxtoken.toml");
    let store = dir.path().join("store.redb");
    std::fs::write(
        &config,
        config_text(&fake.base_url(), &store, "127.0.0.1:0"),
    )
    .unwrap();
    let log = dir.path().join("log.txt");
    let mut child = KillOnDrop(
        wxtoken(&["serve", "--config", config.to_str().unwrap()])
            // The most verbose level, every crate: nothing may leak even there.
            .env("WXTOKEN_LOG", "trace")
            .stdout(std::fs::File::create(dir.path().join("stdout.txt")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let base = format!("http://{}", wait_for_listen_addr(&log, child));
    let http = client();

    let mut served = Vec::new();
    let (s, body) = get_json(&http, &format!("{base}/v1/apps/shop/token"), BILLING_KEY).await;
    assert_eq!(s, 200, "{body}");
    served.push(body["access_token"].as_str().unwrap().to_string());
    let (s, body) = get_json(&http, &format!("{base}/v1/apps/blog/token"), OPS_KEY).await;
    assert_eq!(s, 200);
    served.push(body["access_token"].as_str().unwrap().to_string());
    // Rejected for real, so the report is confirmed with WeChat and refetched.
    assert!(fake.kill_token(&served[0]));
    let mut resp = http
        .post(format!("{base}/v1/apps/shop/token/invalidate"))
        .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
        .send_json(&serde_json::json!({"access_token": served[0]}))
        .await
        .unwrap();
    let inv: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(inv["refreshed"], true);
    served.push(inv["access_token"].as_str().unwrap().to_string());
    let (s, _) = get_json(
        &http,
        &format!("{base}/v1/apps/shop/token"),
        "wrong-key-000000000",
    )
    .await;
    assert_eq!(s, 401);

    // An admin revokes the shop token: the audit line names who, which app and fingerprints.
    let mut resp = http
        .post(format!("{base}/v1/apps/shop/revoke"))
        .insert_header(("Authorization", format!("Bearer {OPS_KEY}")))
        .send()
        .await
        .unwrap();
    let revoked: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(revoked["revoked"], true, "{revoked}");
    served.push(revoked["access_token"].as_str().unwrap().to_string());

    // SIGHUP re-reads the file: a client added there can read at once.
    let late_key = "late-client-key-000000001";
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!("[[clients]]\nname = \"late\"\nkey = \"{late_key}\"\napps = [\"blog\"]\n");
    std::fs::write(&config, text).unwrap();
    let (s, _) = get_json(&http, &format!("{base}/v1/apps/blog/token"), late_key).await;
    assert_eq!(s, 401, "not before the reload");
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloaded = eventually(Duration::from_secs(5), || async {
        get_json(&http, &format!("{base}/v1/apps/blog/token"), late_key)
            .await
            .0
            == 200
    })
    .await;
    assert!(reloaded, "SIGHUP applied the new client");

    // A request in flight when SIGTERM arrives still completes.
    let slow = http
        .get(format!("{base}/v1/apps/shop/token"))
        .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
        .send();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let _ = slow.await;
    let status = wait_exit(child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");

    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("shut down cleanly"), "{text}");
    assert!(text.contains("token refreshed"), "logs say what happened");
    assert!(text.contains("configuration reloaded"), "{text}");
    let audit = text
        .lines()
        .find(|l| l.contains("token revoked"))
        .expect("an audit line for the revocation");
    let old_fp = wxtoken::token::Fingerprint::of(&served[2]).to_string();
    let new_fp = wxtoken::token::Fingerprint::of(&served[3]).to_string();
    for part in [
        "client=ops",
        "app=shop",
        &format!("old={old_fp}"),
        &format!("new={new_fp}"),
    ] {
        assert!(audit.contains(part), "audit line {audit:?} lacks {part}");
    }
    for secret in [SHOP_SECRET, BLOG_SECRET, BILLING_KEY, OPS_KEY]
        .iter()
        .map(|s| s.to_string())
        .chain(served.iter().cloned())
    {
        assert!(
            !text.contains(&secret),
            "log contains a secret or token ({} bytes of log)",
            text.len()
        );
    }
    // The stored token survives the shutdown: the file is there and non-empty.
    assert!(std::fs::metadata(&store).unwrap().len() > 0);
}

#[test]
fn check_config_prints_the_effective_config_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wxtoken.toml");
    std::fs::write(
        &config,
        config_text(
            "http://127.0.0.1:9",
            &dir.path().join("s.redb"),
            "127.0.0.1:0",
        ),
    )
    .unwrap();
    let out = wxtoken(&["check-config", "--config", config.to_str().unwrap()])
        .env("WXTOKEN_REFRESH__MARGIN_SECS", "300")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"));
    assert!(
        stdout.contains("margin_secs = 300"),
        "env override applied: {stdout}"
    );
    assert!(stdout.contains("env WXTOKEN_TEST_SHOP_SECRET (redacted)"));
    assert!(stdout.contains("sha-256 digest (redacted)"));
    for secret in [SHOP_SECRET, BLOG_SECRET, BILLING_KEY, OPS_KEY] {
        assert!(!stdout.contains(secret));
    }
}

#[test]
fn bad_configs_fail_with_messages_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = config_text(
        "http://127.0.0.1:9",
        &dir.path().join("s.redb"),
        "127.0.0.1:0",
    );
    let no_clients = good.split("[[clients]]").next().unwrap().to_string();
    // (what is wrong, text of the good config, what replaces it, expected words in the error)
    let edits = [
        (
            "unknown key",
            "shutdown_timeout_secs",
            "bogus = 1\nshutdown_timeout_secs",
            "server.bogus",
        ),
        (
            "missing secret variable",
            "WXTOKEN_TEST_SHOP_SECRET",
            "WXTOKEN_TEST_UNSET_VARIABLE",
            "apps[0].secret_env: environment variable WXTOKEN_TEST_UNSET_VARIABLE is not set",
        ),
        (
            "duplicate app names",
            "name = \"blog\"",
            "name = \"shop\"",
            "apps[1].name: duplicate app name `shop`",
        ),
        (
            "client naming an unknown app",
            "apps = [\"shop\"]",
            "apps = [\"shopp\"]",
            "clients[0].apps[0]: unknown app `shopp`",
        ),
        (
            "bad listen address",
            "127.0.0.1:0",
            "localhost",
            "server.listen",
        ),
        (
            "wrong type",
            "\ntimeout_secs = 2",
            "\ntimeout_secs = \"two\"",
            "upstream.timeout_secs",
        ),
    ];
    // (what is wrong, config text, extra environment, expected words in the error)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);
    let mut cases: Vec<Case> = edits
        .iter()
        .map(|&(what, from, to, expected)| (what, good.replace(from, to), vec![], expected))
        .collect();
    cases.extend([
        (
            "unknown key from the environment",
            good.clone(),
            vec![("WXTOKEN_UPSTREAM__BASE_URLL", "x")],
            "upstream.base_urll",
        ),
        (
            "no clients",
            no_clients,
            vec![],
            "clients: no [[clients]] configured",
        ),
        ("not TOML", "[server".to_string(), vec![], "not valid TOML"),
    ]);
    for (what, text, env, expected) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        for cmd in ["check-config", "serve"] {
            let mut c = wxtoken(&[cmd, "--config", path.to_str().unwrap()]);
            for (k, v) in &env {
                c.env(k, v);
            }
            let out = c.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what}: {cmd} accepted it");
            assert!(
                stderr.contains(expected),
                "{what}: {cmd} said {stderr:?}, expected {expected:?}"
            );
        }
    }
    let out = wxtoken(&["check-config", "--config", "/nonexistent/wxtoken.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
