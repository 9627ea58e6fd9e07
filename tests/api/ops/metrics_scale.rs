//! How `/metrics` scales with the number of apps: body size and scrape time with 1,000 apps,
//! and with 10,000 apps in each `[metrics] per_app` mode ("auto" is "gauges" there).
//!
//! A measurement, not a check (timings depend on the machine), so it is ignored by default:
//! `cargo test --test api metrics_scale -- --ignored --nocapture --test-threads 1`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::support::helpers::*;

const SCRAPES: usize = 20;
const KEY: &str = "bench-client-key-00000000001";

#[actix_web::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn scrape_of_a_thousand_apps() {
    measure(1_000, PerAppMetrics::Auto).await;
}

// One test per mode, so each runs its own server: run them one at a time (by name).
#[actix_web::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn scrape_of_ten_thousand_apps_auto() {
    measure(10_000, PerAppMetrics::Auto).await;
}

#[actix_web::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn scrape_of_ten_thousand_apps_gauges() {
    measure(10_000, PerAppMetrics::Gauges).await;
}

#[actix_web::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn scrape_of_ten_thousand_apps_full() {
    measure(10_000, PerAppMetrics::Full).await;
}

/// Starts `APPS` apps with `per_app`, waits until each has its first token, then scrapes.
#[allow(non_snake_case)]
async fn measure(APPS: usize, per_app: PerAppMetrics) {
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
    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .config(&config)
        .adjust(|(s, _)| s.metrics.per_app = per_app)
        .start()
        .await;
    // Every app has its first token: no credential without one (the standard test apps are
    // not configured here), in every mode.
    assert!(
        eventually(Duration::from_secs(300), || async {
            let text = scrape(&app).await;
            sample(&text, r#"wxtoken_credentials{state="no_token"}"#) == Some(0.0)
                && sample(&text, r#"wxtoken_credentials{state="valid"}"#) == Some(APPS as f64)
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
        "{APPS} apps, per_app = {per_app:?}: /metrics body {size} bytes ({} KiB), {lines} samples; scrape over HTTP \
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
