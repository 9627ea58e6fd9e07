//! Prometheus' `promtool` (from Debian's `prometheus` package) and other tools the checks
//! need: required, never skipped, and the check of a metrics text with it.

use std::io::Write as _;
use std::process::{Command, Stdio};

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
