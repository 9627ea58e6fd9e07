//! How `/metrics` scales with the number of apps: body size and scrape time with 1,000 apps.
//!
//! A measurement, not a check (timings depend on the machine), so it is ignored by default:
//! `cargo test --test api metrics_scale -- --ignored --nocapture`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::helpers::*;

const APPS: usize = 1_000;
const SCRAPES: usize = 20;
const KEY: &str = "bench-client-key-00000000001";

#[actix_web::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn scrape_of_a_thousand_apps() {
    let spec = Spec::default();
    let creds: Vec<(String, String)> = (0..APPS)
        .map(|i| (format!("wxbench{i:09}"), format!("bench-secret-{i:09}")))
        .collect();
    let pairs: Vec<(&str, &str)> = creds
        .iter()
        .map(|(a, s)| (a.as_str(), s.as_str()))
        .collect();
    let fake = start_fake_with(&spec, &pairs, &[]).await;
    let mut config = String::new();
    for (i, (appid, secret)) in creds.iter().enumerate() {
        writeln!(
            config,
            "[[apps]]\nname = \"bench{i}\"\nappid = \"{appid}\"\nsecret = \"{secret}\""
        )
        .unwrap();
    }
    writeln!(
        config,
        "[[clients]]\nname = \"bench\"\nkey = \"{KEY}\"\napps = [\"*\"]"
    )
    .unwrap();
    let app = spawn_custom(spec, fake, &config).await;
    let last = format!("wxtoken_token_generation{{app=\"bench{}\"}}", APPS - 1);
    assert!(
        eventually(Duration::from_secs(120), || async {
            let text = scrape(&app).await;
            text.lines()
                .filter(|l| l.starts_with("wxtoken_token_generation{"))
                .all(|l| !l.ends_with(" 0"))
                && sample(&text, &last) == Some(1.0)
        })
        .await,
        "every app has its first token"
    );

    let mut times = Vec::with_capacity(SCRAPES);
    let mut size = 0;
    let mut lines = 0;
    for _ in 0..SCRAPES {
        let started = Instant::now();
        let text = scrape(&app).await;
        times.push(started.elapsed());
        size = text.len();
        lines = text.lines().filter(|l| !l.starts_with('#')).count();
    }
    times.sort();
    println!(
        "{APPS} apps: /metrics body {size} bytes ({} KiB), {lines} samples; scrape over HTTP \
         min {:?}, median {:?}, max {:?} ({SCRAPES} scrapes)",
        size / 1024,
        times[0],
        times[SCRAPES / 2],
        times[SCRAPES - 1]
    );
}

/// The whole body, however large (the helper's limit is 1 MiB).
async fn scrape(app: &TestApp) -> String {
    let mut resp = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics request");
    let body = resp.body().limit(64 << 20).await.expect("metrics body");
    String::from_utf8(body.to_vec()).expect("utf-8 metrics")
}
