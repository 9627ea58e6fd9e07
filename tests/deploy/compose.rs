//! The compose files: valid against the compose specification's schema, every file they name
//! present, secrets given as compose secrets (files) and never in an environment block, and the
//! fleet's Prometheus configuration accepted by promtool.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::tools::{path, read, run, tool, yaml};

const FILES: [&str; 2] = ["deploy/compose/compose.yaml", "deploy/compose/fleet.yaml"];

#[test]
fn compose_files_follow_the_compose_specification() {
    // check-jsonschema carries the specification's schema (`vendor.compose-spec`).
    let mut cmd = tool("check-jsonschema", "PyPI's check-jsonschema");
    cmd.args(["--builtin-schema", "vendor.compose-spec"]);
    for f in FILES {
        cmd.arg(path(f));
    }
    run(&mut cmd);
}

fn compose(file: &str) -> Value {
    yaml(&path(file))
}

/// A path written in a compose file, relative to the file's directory.
fn beside(file: &str, relative: &str) -> PathBuf {
    path(file).parent().unwrap().join(relative)
}

fn services(doc: &Value) -> impl Iterator<Item = (&String, &Value)> {
    doc["services"].as_object().expect("services").iter()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other["source"].as_str().expect("source").to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_file_a_compose_file_names_exists() {
    for file in FILES {
        let doc = compose(file);
        for section in ["configs", "secrets"] {
            for (name, entry) in doc[section].as_object().into_iter().flatten() {
                let f = entry["file"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: {name}"));
                assert!(
                    beside(file, f).is_file(),
                    "{file}: {section}.{name}: {f} is missing"
                );
            }
        }
        for (name, svc) in services(&doc) {
            for section in ["configs", "secrets"] {
                for used in names(&svc[section]) {
                    assert!(
                        doc[section].get(&used).is_some(),
                        "{file}: {name} uses undeclared {section} {used}"
                    );
                }
            }
            if let Some(build) = svc.get("build") {
                let context = beside(file, build["context"].as_str().unwrap());
                let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
                assert!(
                    dockerfile.is_file(),
                    "{file}: {name}: {}",
                    dockerfile.display()
                );
            }
            for volume in svc["volumes"].as_array().into_iter().flatten() {
                let source = volume.as_str().unwrap().split(':').next().unwrap();
                assert!(
                    doc["volumes"].get(source).is_some(),
                    "{file}: {name}: {source} is not a named volume"
                );
            }
        }
    }
}

/// Secret-looking parts of an environment variable's name.
const SECRET_WORDS: [&str; 4] = ["SECRET", "KEY", "PASSWORD", "TOKEN"];

#[test]
fn secrets_are_compose_secrets_read_from_files_never_environment_values() {
    let mut placeholders = Vec::new();
    for file in FILES {
        let doc = compose(file);
        for (name, entry) in doc["secrets"].as_object().expect("secrets") {
            let text =
                std::fs::read_to_string(beside(file, entry["file"].as_str().unwrap())).unwrap();
            assert!(
                text.contains("REPLACE"),
                "{file}: secret {name} ships with a placeholder the guide says to replace"
            );
            placeholders.extend(
                text.split_whitespace()
                    .filter(|w| w.contains("REPLACE"))
                    .map(String::from),
            );
        }
        for (name, svc) in services(&doc) {
            let env = svc["environment"].as_object().cloned().unwrap_or_default();
            for (var, value) in env {
                let value = value.as_str().unwrap_or_default();
                // A variable that names a secret holds a path to a mounted file (wxtoken's own
                // prefix aside: WXTOKEN_ is no secret).
                let bare = var.strip_prefix("WXTOKEN_").unwrap_or(&var);
                if SECRET_WORDS.iter().any(|w| bare.contains(w)) {
                    assert!(
                        var.ends_with("_FILE") && value.starts_with("/run/secrets/"),
                        "{file}: {name}: {var} looks like a secret in the environment"
                    );
                }
                for p in &placeholders {
                    assert!(!value.contains(p.as_str()), "{file}: {name}: {var}");
                }
            }
            assert!(svc.get("env_file").is_none(), "{file}: {name}: env_file");
        }
    }
}

/// The `/run/secrets/NAME` files a wxtoken configuration reads.
fn secret_files(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|l| l.split_once("= \"/run/secrets/"))
        .map(|(_, rest)| rest.split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn each_wxtoken_service_mounts_the_secrets_its_configuration_reads_and_is_hardened() {
    for file in FILES {
        let doc = compose(file);
        for (name, svc) in services(&doc).filter(|(n, _)| n.starts_with("wxtoken")) {
            let config = svc["configs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["target"] == "/etc/wxtoken/wxtoken.toml")
                .unwrap_or_else(|| panic!("{file}: {name} mounts its configuration"));
            let source = config["source"].as_str().unwrap();
            let text = std::fs::read_to_string(beside(
                file,
                doc["configs"][source]["file"].as_str().unwrap(),
            ))
            .unwrap();
            let mounted = names(&svc["secrets"]);
            let read = secret_files(&text);
            assert!(
                !read.is_empty(),
                "{file}: {name} reads its secrets from files"
            );
            for s in &read {
                assert!(
                    mounted.contains(s),
                    "{file}: {name} reads {s} but does not mount it"
                );
            }
            assert!(text.contains("readiness = \"instance\""), "{file}: {name}");
            let probe = svc["healthcheck"]["test"].as_array().unwrap();
            assert_eq!(probe[1], "/usr/local/bin/wxtoken", "no shell, no curl");
            assert!(probe
                .iter()
                .any(|a| a.as_str().unwrap().contains("/readyz?scope=instance")));
            assert_eq!(svc["read_only"], true, "{file}: {name}");
            assert_eq!(
                svc["cap_drop"],
                serde_json::json!(["ALL"]),
                "{file}: {name}"
            );
            let volume = svc["volumes"][0].as_str().unwrap();
            assert!(
                volume.ends_with(":/data"),
                "{file}: {name}: the store's volume"
            );
        }
    }
}

#[test]
fn the_fleets_prometheus_loads_the_repositorys_alert_rules() {
    let doc = compose("deploy/compose/fleet.yaml");
    assert_eq!(
        doc["configs"]["alerts"]["file"],
        "../../config/prometheus/alerts.yml"
    );
    assert_eq!(
        doc["configs"]["grafana_dashboard"]["file"],
        "../../grafana/dashboards/wxtoken.json"
    );
    // promtool checks the configuration with the rule file beside it, as mounted.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        path("deploy/compose/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .unwrap();
    std::fs::copy(
        path("config/prometheus/alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .unwrap();
    promtool_check(&dir.path().join("prometheus.yml"));
    let datasource = read("deploy/compose/grafana-datasource.yml");
    assert!(datasource.contains("uid: wxtoken-prometheus"));
    assert!(datasource.contains("url: http://prometheus:9090"));
}

fn promtool_check(config: &Path) {
    let found = Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok(),
        "promtool not found: run scripts/test, which installs Debian's prometheus"
    );
    run(Command::new("promtool")
        .args(["check", "config"])
        .arg(config));
}
