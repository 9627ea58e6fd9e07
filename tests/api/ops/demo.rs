//! `wxtoken demo`, the README's first command: the binary starts a fake WeChat and the server,
//! prints where they are and the client key, and the first curl it suggests gets a token the
//! fake accepts; its store is under `--data-dir`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::helpers::*;
use crate::support::process::{wxtoken, KillOnDrop};

/// The value after `label` on the first line of `lines` that has it.
fn after<'a>(lines: &'a [String], label: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
}

#[actix_web::test]
async fn the_demo_serves_a_token_with_the_key_it_prints() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let mut child = wxtoken(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("utf-8 path"),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("wxtoken runs");
    let stdout = child.stdout.take().expect("stdout");
    let demo = KillOnDrop(child);
    // The banner ends with its last line; read up to it on a thread (the pipe blocks).
    let banner = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("text");
            let last = line.starts_with("Stop with Ctrl-C");
            lines.push(line);
            if last {
                break;
            }
        }
        lines
    });
    let start = Instant::now();
    while !banner.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the demo printed no banner"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = banner.join().expect("banner read");
    let base = after(&lines, "server:")
        .expect("the server's URL")
        .to_string();
    let fake = after(&lines, "fake WeChat:")
        .expect("the fake's URL")
        .to_string();
    let key = after(&lines, "client key:").expect("the key").to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{lines:?}");

    let http = client();
    let token = json_when_served(&http, &format!("{base}/v1/apps/demo/token"), &key).await;
    let access_token = token["access_token"].as_str().expect("a token");
    // "WeChat" (the fake) takes it, as the banner's third curl checks.
    let mut check = http
        .get(format!(
            "{fake}/cgi-bin/get_api_domain_ip?access_token={access_token}"
        ))
        .send()
        .await
        .expect("the fake answers");
    let body: serde_json::Value = check.json().await.expect("JSON");
    assert!(body.get("errcode").is_none_or(|c| c == 0), "{body}");
    // Without the key: 401.
    let anonymous = http
        .get(format!("{base}/v1/apps/demo/token"))
        .send()
        .await
        .expect("answered");
    assert_eq!(anonymous.status().as_u16(), 401);
    assert!(
        data.join("wxtoken.redb").exists(),
        "the store is in --data-dir"
    );
    drop(demo);
}
