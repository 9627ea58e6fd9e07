//! Per-credential series are collected at scrape from the running apps: they follow the clock
//! between scrapes, and a removed app (with its tickets) leaves no series in any family.

use std::time::Duration;

use crate::support::helpers::*;
use wxtoken::fake::Fault;

const ADMIN: &str = "scrape-admin-key-0000000001";

fn apps(with_shop: bool) -> String {
    let shop = if with_shop {
        format!(
            "[[apps]]\nname = \"shop\"\nappid = \"{SHOP_APPID}\"\nsecret = \"{SHOP_SECRET}\"\ntickets = [\"jsapi\"]\n"
        )
    } else {
        String::new()
    };
    format!(
        "{shop}[[apps]]\nname = \"blog\"\nappid = \"{BLOG_APPID}\"\nsecret = \"{BLOG_SECRET}\"\n\
         [[clients]]\nname = \"admin\"\nkey = \"{ADMIN}\"\napps = [\"*\"]\nadmin = true\n"
    )
}

/// A configuration file for the apps in `body`, with `[metrics] per_app = per_app`.
fn file_config_with(dir: &std::path::Path, fake_base: &str, body: &str, per_app: &str) -> String {
    let store = format!("path = {}", quoted(&dir.join("s.redb")));
    let rest =
        format!("[refresh]\nmin_interval_secs = 0\n[metrics]\nper_app = \"{per_app}\"\n{body}");
    server_file(fake_base, &store, &rest)
}

/// Sample lines (not comments) whose `app` label is `app` or one of its tickets.
fn series_of(text: &str, app: &str) -> Vec<String> {
    let exact = format!("app=\"{app}\"");
    let ticket = format!("app=\"{app}:");
    text.lines()
        .filter(|l| !l.starts_with('#') && (l.contains(&exact) || l.contains(&ticket)))
        .map(str::to_owned)
        .collect()
}

/// The metric family names among `lines`.
fn families(lines: &[String]) -> std::collections::BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
        })
        .map(str::to_owned)
        .collect()
}

#[actix_web::test]
async fn a_reload_that_removes_an_app_leaves_none_of_its_series() {
    removed_app_leaves_no_series("full").await;
}

#[actix_web::test]
async fn a_reload_that_removes_an_app_leaves_none_of_its_series_with_gauges_only() {
    removed_app_leaves_no_series("gauges").await;
}

async fn removed_app_leaves_no_series(per_app: &'static str) {
    let gauges = per_app == "gauges";
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.toml");
    std::fs::write(
        &path,
        file_config_with(dir.path(), &fake.base_url(), &apps(true), per_app),
    )
    .unwrap();
    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .config(&apps(true))
        .config_file(&path)
        .start()
        .await;

    // Series with every kind of per-app label: a ticket, an errcode reason, an outcome.
    let token = app.get("/v1/apps/shop/token", Some(ADMIN)).await;
    assert_eq!(token.status, 200, "{}", token.body);
    let ticket = app.get("/v1/apps/shop/ticket/jsapi", Some(ADMIN)).await;
    assert_eq!(ticket.status, 200, "{}", ticket.body);
    app.fake.inject(Fault::Errcode(40125), 1);
    app.fake
        .kill_token(token.body["access_token"].as_str().unwrap_or_default());
    let inv = app
        .post(
            "/v1/apps/shop/token/invalidate",
            Some(ADMIN),
            serde_json::json!({ "access_token": token.body["access_token"] }).to_string(),
        )
        .await;
    assert_eq!(inv.status, 200, "{}", inv.body);
    let before = app.metrics_text().await;
    let shop_before = series_of(&before, "shop");
    let per_app_only: &[&str] = if gauges {
        &[
            r#"wxtoken_token_refresh_failures_total{app="shop"}"#,
            r#"wxtoken_upstream_errors_total{reason="40125"}"#,
        ]
    } else {
        &[
            r#"wxtoken_upstream_errors_total{app="shop",reason="40125"}"#,
            r#"wxtoken_upstream_request_duration_seconds_count{app="shop:jsapi_ticket",endpoint="ticket"}"#,
        ]
    };
    for must in [
        r#"wxtoken_token_refresh_due_timestamp_seconds{app="shop"}"#,
        r#"wxtoken_token_seconds_left{app="shop:jsapi_ticket"}"#,
    ]
    .iter()
    .chain(per_app_only)
    {
        assert!(sample(&before, must).is_some(), "{must} before the reload");
    }
    let shop_families = families(&shop_before);

    std::fs::write(
        &path,
        file_config_with(dir.path(), &app.fake.base_url(), &apps(false), per_app),
    )
    .unwrap();
    let r = app.post("/v1/admin/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["removed"], serde_json::json!(["shop"]));

    let after = app.metrics_text().await;
    assert_eq!(
        series_of(&after, "shop"),
        Vec::<String>::new(),
        "a removed app and its tickets leave no series, so no frozen value keeps an alert firing"
    );
    // The remaining app keeps its series in every per-app family the removed one had.
    let blog_families = families(&series_of(&after, "blog"));
    for family in &shop_families {
        assert!(blog_families.contains(family), "blog lost {family}");
    }
    // Still removed at a later scrape, after the retired actors had time to stop.
    assert!(
        !eventually(Duration::from_millis(500), || async {
            !series_of(&app.metrics_text().await, "shop").is_empty()
        })
        .await
    );
}

#[actix_web::test]
async fn gauges_read_at_two_scrapes_follow_the_clock() {
    let app = TestApp::builder().start().await;
    app.shop_token().await;
    let left = r#"wxtoken_token_seconds_left{app="shop"}"#;
    let age = r#"wxtoken_token_age_seconds{app="shop"}"#;
    let first = app.metrics_text().await;
    let (left1, age1) = (sample(&first, left).unwrap(), sample(&first, age).unwrap());
    // Nothing happens to the token meanwhile: only the clock moves.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let text = app.metrics_text().await;
            let (left2, age2) = (sample(&text, left).unwrap(), sample(&text, age).unwrap());
            left2 < left1 && age2 > age1
        })
        .await,
        "seconds left and age are computed at each scrape"
    );
    assert_eq!(
        app.metric(r#"wxtoken_token_generation{app="shop"}"#).await,
        Some(1.0)
    );
}
