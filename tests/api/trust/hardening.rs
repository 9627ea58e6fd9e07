//! The process's own hardening and the client-key rules, as an operator meets them: the
//! server runs undumpable, `keygen --client` prints a key `check-config` accepts, a key an SDK
//! would mangle in a URL is refused, and plain HTTP on a public address is warned about.

use std::process::Stdio;

use crate::support::helpers::*;
use crate::support::process::{succeeds, wait_for_listen_addr, wxtoken, KillOnDrop};

/// A configuration whose billing client has `key` (inline) and listens on `listen`.
fn config_with(dir: &std::path::Path, key: &str, listen: &str) -> std::path::PathBuf {
    let text = config_text("http://127.0.0.1:1", &dir.join("store.redb"), listen).replace(
        "key_env = \"WXTOKEN_TEST_BILLING_KEY\"",
        &format!("key = {}", toml::Value::String(key.into())),
    );
    let file = dir.join("wxtoken.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn keygen_client_prints_a_key_check_config_accepts() {
    let out = wxtoken(&["keygen", "--client"]).output().unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(key.len(), 43, "{key}");
    let dir = tempfile::tempdir().unwrap();
    let file = config_with(dir.path(), &key, "127.0.0.1:0");
    succeeds(&mut wxtoken(&[
        "check-config",
        "--config",
        file.to_str().unwrap(),
    ]));
    let again = wxtoken(&["keygen", "--client"]).output().unwrap();
    assert_ne!(String::from_utf8(again.stdout).unwrap().trim(), key);
    // Without --client: the store's encryption key and its id, never a client key.
    let out = wxtoken(&["keygen"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("key: ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("id: ")), "{text}");
}

#[test]
fn check_config_refuses_a_key_sdks_would_change_in_a_url_and_says_why() {
    // `openssl rand -base64 24`: `+`, `/`, `=`.
    let key = "q9+Zx/0mKp3Lw7Rt2Vb8Nc4Hd==";
    let dir = tempfile::tempdir().unwrap();
    let file = config_with(dir.path(), key, "127.0.0.1:0");
    let out = wxtoken(&["check-config", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clients[0].key"), "{err}");
    assert!(err.contains("A-Z a-z 0-9 - . _ ~"), "{err}");
    assert!(err.contains("URL"), "{err}");
    assert!(!err.contains(key), "{err}");
}

#[actix_web::test]
async fn the_server_cannot_dump_core_and_warns_about_plain_http_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = config_with(dir.path(), BILLING_KEY, &format!("0.0.0.0:{port}"));
    let log = dir.path().join("log.txt");
    let mut server = KillOnDrop(
        wxtoken(&["serve", "--config", file.to_str().unwrap()])
            .env("WXTOKEN_LOG", "info,wxtoken=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_listen_addr(&log, &mut server.0);
    let text = std::fs::read_to_string(&log).unwrap();
    let warning = text
        .lines()
        .find(|l| l.contains("plain HTTP on a non-loopback address"))
        .unwrap_or_else(|| panic!("no warning: {text}"));
    assert!(
        warning.contains("WARN") && warning.contains("unencrypted"),
        "{warning}"
    );
    // What the kernel says when the process asks (PR_GET_DUMPABLE): /proc shows the flag to
    // no one else, and as root every /proc file is root's anyway.
    assert!(
        text.contains("dumpable=Some(false)"),
        "the server reads back that it cannot dump core: {text}"
    );
}
