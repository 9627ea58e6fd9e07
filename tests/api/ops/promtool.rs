//! `/metrics` is valid Prometheus text exposition, checked by Prometheus' own `promtool`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::support::helpers::*;
use wxtoken::fake::Fault;

/// Fails (never skips: the check must run in CI) unless `tool` from Debian's `package` runs;
/// `scripts/test` installs it.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found on PATH: run scripts/test, which installs Debian's `{package}` package"
    );
}

/// promtool from Debian's `prometheus` package.
pub fn promtool() -> Command {
    require_tool("promtool", "prometheus");
    Command::new("promtool")
}

#[actix_web::test]
async fn metrics_pass_promtool_check_metrics() {
    let app = TestApp::builder().start().await;
    let old = app.shop_token().await;
    // Produce samples with every kind of label: an errcode reason, invalidation outcomes.
    app.fake.inject(Fault::Errcode(-1), 1);
    app.invalidate_shop(&old).await;
    app.invalidate_shop("stale-token").await;
    let text = app.metrics_text().await;
    assert!(text.contains("wxtoken_token_seconds_left{app=\"shop\"}"));
    assert!(text.contains("wxtoken_build_info{version="));
    assert!(text.contains("process_resident_memory_bytes"));

    assert_promtool_clean(&text);
}

/// Fails unless `promtool check metrics` accepts `text` without a single remark.
pub fn assert_promtool_clean(text: &str) {
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {report}");
    assert!(
        report.trim().is_empty(),
        "promtool found problems: {report}"
    );
}

#[actix_web::test]
async fn every_per_app_series_exists_from_startup() {
    let app = TestApp::builder().start().await;
    let text = app.metrics_text().await;
    for app_name in ["shop", "blog"] {
        for series in [
            format!(
                r#"wxtoken_token_refreshes_total{{app="{app_name}",result="failure",trigger="scheduled"}}"#
            ),
            format!(r#"wxtoken_upstream_errors_total{{app="{app_name}",reason="timeout"}}"#),
            format!(r#"wxtoken_invalidations_total{{app="{app_name}",outcome="too_soon"}}"#),
            format!(r#"wxtoken_actor_restarts_total{{app="{app_name}"}}"#),
            format!(r#"wxtoken_store_errors_total{{app="{app_name}",op="decrypt"}}"#),
            format!(r#"wxtoken_token_expiry_timestamp_seconds{{app="{app_name}"}}"#),
            format!(r#"wxtoken_token_seconds_left{{app="{app_name}"}}"#),
        ] {
            assert!(sample(&text, &series).is_some(), "missing {series}");
        }
    }
}
