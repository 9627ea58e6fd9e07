//! `docs/openapi.yaml` as a contract: valid OpenAPI 3.1 (openapi-spec-validator), free of
//! anything that looks like a token or key in its examples, and true of a live server with
//! healthy fakes (schemathesis: no 5xx, every answer's status, content type and body as the
//! document says, no request that stalls or crashes the server).

use std::path::{Path, PathBuf};
use std::process::Command;

use wxtoken::fake::FakeConfig;

use crate::support::helpers::*;
use crate::support::platform::{platform_table, start_with_platform};

const ACCOUNT: &str = "wx5b3a1c9d7e8f6a42";
const CONTRACT_KEY: &str = "contract-client-key-00000000001";

fn spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml")
}

#[test]
fn the_document_is_valid_openapi() {
    let out = Command::new("openapi-spec-validator")
        .arg(spec())
        .output()
        .expect("openapi-spec-validator runs (scripts/test installs it from PyPI)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Examples and descriptions carry no token, key or secret: nothing longer than a word that
/// looks like one (24 or more letters, digits, `-`, `_` in a row, outside prose and URLs).
#[test]
fn the_document_shows_no_token_or_key() {
    let text = std::fs::read_to_string(spec()).expect("readable");
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            let letters_and_digits =
                word.chars().any(|c| c.is_ascii_digit()) && word.chars().any(char::is_alphabetic);
            assert!(
                word.len() < 24 || !letters_and_digits,
                "line {}: `{word}` looks like a credential",
                n + 1
            );
        }
    }
}

/// A server with an app (and its jsapi ticket), a platform with a ticket and an authorized
/// account, and one client allowed everything; schemathesis drives every operation of the
/// document at it.
#[actix_web::test]
async fn a_live_server_keeps_the_contract_under_generated_requests() {
    let shop = App::official("shop", SHOP_APPID, SHOP_SECRET).line(r#"tickets = ["jsapi"]"#);
    let contract = Client::new("contract", CONTRACT_KEY).apps(&["shop"]);
    let config = ConfigText::new()
        .app(shop)
        .raw(&platform_table())
        .client(contract.platforms(&["saas"]).admin().proxy())
        .to_string();
    let fake = FakeConfig {
        apps: vec![(SHOP_APPID.into(), SHOP_SECRET.into())],
        ..FakeConfig::default()
    };
    let app = start_with_platform(fake, TestApp::builder().config(&config)).await;
    app.push_ticket().await;
    app.authorize(ACCOUNT, &[1], CONTRACT_KEY).await;
    let account = format!("/v1/platforms/saas/authorizers/{ACCOUNT}/token");
    assert_eq!(
        app.get("/v1/apps/shop/token", Some(CONTRACT_KEY))
            .await
            .status,
        200
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[operations]]
include-path-regex = "^/v1/apps/"
parameters = {{ "path.name" = "shop" }}
[[operations]]
include-path-regex = "^/v1/(admin/)?platforms/"
parameters = {{ "path.name" = "saas", "path.appid" = "{ACCOUNT}" }}
"#
        ),
    )
    .expect("config written");
    let base = app.base.clone();
    let run = actix_web::rt::task::spawn_blocking(move || {
        Command::new("schemathesis")
            // Its cache of crashes is written where it runs: not into the checkout.
            .current_dir(config.parent().expect("in the temp dir"))
            .arg("--config-file")
            .arg(&config)
            .args(["run", "--url", &base])
            .arg(spec())
            .args(["-H", &format!("Authorization: Bearer {CONTRACT_KEY}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "15",
                // One worker: Hypothesis's lambda-description cache is not thread-safe and
                // fails a run now and then with "AST constructor recursion depth mismatch".
                "--workers",
                "1",
                "--request-timeout",
                "15",
                "--seed",
                "20261207",
                "--no-color",
            ])
            .output()
    })
    .await
    .expect("joined")
    .expect("schemathesis runs (scripts/test installs it from PyPI)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{report}");
    assert!(report.contains("passed"), "{report}");
    // Nothing stalled or broke the server.
    assert_eq!(app.get("/healthz", None).await.status, 200);
    assert_eq!(app.get(&account, Some(CONTRACT_KEY)).await.status, 200);
}
