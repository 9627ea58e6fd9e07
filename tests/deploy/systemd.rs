//! The systemd unit: `systemd-analyze verify` finds nothing, its exposure is at most 2.0 and is
//! the figure the deployment guide prints, and it carries the settings the guide describes.

use std::process::Command;

use crate::tools::{output, path, read};

const BIN: &str = env!("CARGO_BIN_EXE_wxtoken");
const UNIT: &str = "deploy/systemd/wxtoken.service";

fn systemd_analyze() -> Command {
    let found = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "systemd-analyze not found: it comes with Debian's systemd package"
    );
    Command::new("systemd-analyze")
}

/// The unit in a directory of its own, as systemd would load it, with its binary at `bin`.
fn unit_with_binary(bin: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = read(UNIT).replace("/usr/local/bin/wxtoken", bin);
    std::fs::write(dir.path().join("wxtoken.service"), text).unwrap();
    dir
}

#[test]
fn systemd_analyze_verify_finds_nothing() {
    // The binary is not installed here: the unit is checked with the test's own binary in its
    // place, so that verify also checks that the command exists and is executable.
    let dir = unit_with_binary(BIN);
    let out = output(
        systemd_analyze()
            .arg("verify")
            .arg(dir.path().join("wxtoken.service")),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

#[test]
fn the_units_exposure_is_at_most_two_and_is_the_guides_figure() {
    let out = output(
        systemd_analyze()
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(path(UNIT)),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for wxtoken.service:"))
        .unwrap_or_else(|| panic!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    let figure = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    let exposure: f64 = figure.parse().unwrap();
    assert!(exposure <= 2.0, "exposure {exposure}:\n{text}");
    let guide = read("docs/deployment.md");
    assert!(
        guide.contains(&format!("exposure level of **{figure}**")),
        "docs/deployment.md prints the unit's exposure, {figure}"
    );
}

#[test]
fn the_unit_has_the_settings_the_guide_describes() {
    let unit = read(UNIT);
    let has = |line: &str| unit.lines().any(|l| l == line);
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=wxtoken",
        "LimitCORE=0",
        "UMask=0077",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
    ] {
        assert!(has(line), "{UNIT} lacks {line}");
    }
    // Every file the example configuration reads is a credential the unit loads, and the
    // store is in the state directory.
    let config = read("deploy/systemd/wxtoken.toml");
    let prefix = "/run/credentials/wxtoken.service/";
    let read_files: Vec<&str> = config
        .lines()
        .filter_map(|l| l.split_once(&format!("= \"{prefix}")))
        .map(|(_, rest)| rest.split('"').next().unwrap())
        .collect();
    assert!(!read_files.is_empty());
    for name in read_files {
        assert!(
            unit.lines()
                .any(|l| l.starts_with(&format!("LoadCredential={name}:"))),
            "{name} is not a credential of the unit"
        );
    }
    assert!(config.contains("path = \"/var/lib/wxtoken/"));
}
