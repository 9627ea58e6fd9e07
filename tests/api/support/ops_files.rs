//! The operations files as the tests read them: their paths, the alert rules of alerts.yml and
//! the Grafana dashboard's panels.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

pub const ALERTS: &str = "config/prometheus/alerts.yml";
pub const DASHBOARD: &str = "grafana/dashboards/wxtoken.json";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One alerting rule as written in alerts.yml: `key: value` entries with nested keys joined by
/// dots (`labels.severity`), quotes removed, and block scalars (`|`, `>-`) joined into one line.
///
/// A line-based reader rather than a YAML parser (the project has none and does not need one):
/// it understands the block style alerts.yml is written in, and `every_alert_is_complete`
/// checks that it found as many rules as promtool, so a rule it cannot read fails the test.
#[derive(Debug)]
pub struct AlertRule {
    pub name: String,
    pub fields: BTreeMap<String, String>,
}

impl AlertRule {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

pub fn alert_rules(text: &str) -> Vec<AlertRule> {
    let mut rules: Vec<AlertRule> = Vec::new();
    // Indent of the keys of the rule being read (that of `alert` in `- alert: X`).
    let mut base: Option<usize> = None;
    // Enclosing keys of the current line: (indent, key).
    let mut parents: Vec<(usize, String)> = Vec::new();
    // The block scalar being collected: (indent of its key, dotted key).
    let mut block: Option<(usize, String)> = None;

    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some((key_indent, key)) = &block {
            if trimmed.is_empty() || indent > *key_indent {
                if let Some(rule) = rules.last_mut() {
                    let value = rule.fields.entry(key.clone()).or_default();
                    if !value.is_empty() && !trimmed.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(trimmed.trim_end());
                }
                continue;
            }
            block = None;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            let key_indent = indent + 2;
            base = Some(key_indent);
            parents.clear();
            rules.push(AlertRule {
                name: unquote(name.trim()).to_string(),
                fields: BTreeMap::new(),
            });
            continue;
        }
        let Some(base_indent) = base else { continue };
        if indent < base_indent {
            // Past the last key of this rule: a new rule, group or top-level key follows.
            base = None;
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let dotted = parents
            .iter()
            .map(|(_, k)| k.as_str())
            .chain([key])
            .collect::<Vec<_>>()
            .join(".");
        let rule = rules.last_mut().expect("inside a rule");
        match value {
            "" => parents.push((indent, key.to_string())),
            "|" | "|-" | ">" | ">-" => {
                rule.fields.insert(dotted.clone(), String::new());
                block = Some((indent, dotted));
            }
            v => {
                rule.fields.insert(dotted, unquote(v).to_string());
            }
        }
    }
    rules
}

pub fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
}

pub fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel of the dashboard, rows included, in order. A collapsed row holds its panels
/// itself (`row.panels`) rather than after it at the top level, so both places are read.
pub fn all_panels(dash: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p.clone());
        out.extend(p["panels"].as_array().cloned().unwrap_or_default());
    }
    out
}
