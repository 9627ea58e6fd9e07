//! The operations files are valid and agree with each other: alert rules (promtool), their unit
//! tests, the Prometheus example, the Grafana dashboard (JSON schema) and the runbook.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::markdown::anchors;
use crate::support::ops_files::{
    alert_rules, all_panels, dashboard, read, repo_root, unquote, ALERTS, DASHBOARD,
};
use crate::support::promtool::promtool;

const ALERTS_TEST: &str = "config/prometheus/alerts_test.yml";
const PROMETHEUS_EXAMPLE: &str = "config/prometheus/prometheus.yml";
const DATASOURCE: &str = "grafana/provisioning/datasources/prometheus.yml";
const PROVIDER: &str = "grafana/provisioning/dashboards/wxtoken.yml";
const RUNBOOK: &str = "docs/runbook.md";
/// The project has no public address: every `runbook_url` is the runbook's path relative to
/// the repository root, then `#` and the anchor of one of its headings.
const RUNBOOK_BASE: &str = "docs/runbook.md#";
/// Kept outside the repository (shared by every project on the machine), next to its checkout.
const SCHEMA: &str = "../shared/grafana/dashboard.jsonschema.json";

/// The alerts the operations issue asks for; more are welcome.
const REQUIRED_ALERTS: [&str; 8] = [
    "WxtokenTokenExpiringSoon",
    "WxtokenTokenExpired",
    "WxtokenRefreshFailing",
    "WxtokenConfigError",
    "WxtokenQuotaHigh",
    "WxtokenDown",
    "WxtokenUnusualInvalidations",
    "WxtokenRedisDown",
];

/// Alerts about a whole instance rather than an app: their description names the instance.
const INSTANCE_ALERTS: [&str; 4] = [
    "WxtokenDown",
    "WxtokenRedisDown",
    "WxtokenCertificateExpiring",
    "WxtokenCertificateExpiringSoon",
];
/// Alerts about an Open Platform platform as a whole (its ticket, its accounts): they name the
/// platform. The component token's alert reads the token families and names the app label.
const PLATFORM_ALERTS: [&str; 3] = [
    "WxtokenPlatformTicketStale",
    "WxtokenPlatformTicketExpiring",
    "WxtokenPlatformAuthorizersNeedReauth",
];
/// Alerts about a WeCom suite as a whole (its ticket, its corps): they name the suite.
const SUITE_ALERTS: [&str; 2] = [
    "WxtokenWecomSuiteTicketStale",
    "WxtokenWecomCorpsNeedReauth",
];
/// Alerts about one delivery route: they name the route.
const ROUTE_ALERTS: [&str; 3] = [
    "WxtokenDeliveryBacklogGrowing",
    "WxtokenDeliveryDelayed",
    "WxtokenDeliveriesDead",
];
/// Alerts about the pushes of one source (an app or a platform): they name the source.
const SOURCE_ALERTS: [&str; 1] = ["WxtokenPushesRefused"];

/// Runs a command in the repository root; panics with its output unless it succeeds.
fn run_ok(mut cmd: Command, what: &str) -> String {
    let out: Output = cmd
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let mut cmd = promtool();
    cmd.args(["check", "rules", ALERTS]);
    let report = run_ok(cmd, "promtool check rules");
    assert!(report.contains("SUCCESS"), "promtool: {report}");
}

#[test]
fn alert_unit_tests_pass_promtool_test_rules() {
    let mut cmd = promtool();
    cmd.args(["test", "rules", ALERTS_TEST]);
    let report = run_ok(cmd, "promtool test rules");
    assert!(report.contains("SUCCESS"), "promtool: {report}");
}

#[test]
fn prometheus_example_passes_promtool_check_config() {
    let mut cmd = promtool();
    cmd.args(["check", "config", PROMETHEUS_EXAMPLE]);
    let report = run_ok(cmd, "promtool check config");
    // The example must load the project's rules, not just parse.
    assert!(report.contains("alerts.yml"), "rules not loaded: {report}");
}

#[test]
fn dashboard_validates_against_the_grafana_schema() {
    let schema = repo_root().join(SCHEMA);
    assert!(
        schema.is_file(),
        "the Grafana dashboard schema is missing at {} (see ../shared/grafana/README.md)",
        schema.display()
    );
    // Exit 3 tells a missing package apart from a validation failure.
    let script = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    print("python3 lacks the jsonschema package: run scripts/test, or python3 -m pip install jsonschema")
    sys.exit(3)
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
for e in errors:
    print("/".join(map(str, e.absolute_path)) or "(top)", e.message[:300])
    for c in e.context or []:
        print("   ", "/".join(map(str, c.absolute_path)), c.message[:300])
sys.exit(1 if errors else 0)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .arg(repo_root().join(DASHBOARD))
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 (needed for the schema check): {e}"));
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(3),
        "cannot validate the dashboard: {report}"
    );
    assert!(
        out.status.success(),
        "{DASHBOARD} does not match the Grafana schema:\n{report}"
    );
}

#[test]
fn every_runbook_url_points_at_a_runbook_heading() {
    assert_eq!(RUNBOOK_BASE.strip_suffix('#'), Some(RUNBOOK));
    assert!(
        repo_root().join(RUNBOOK).is_file(),
        "{RUNBOOK} is missing from the repository"
    );
    let anchors = anchors(&read(RUNBOOK));
    let rules = alert_rules(&read(ALERTS));
    assert!(!rules.is_empty(), "no alerts read from {ALERTS}");
    for rule in &rules {
        let url = rule
            .get("annotations.runbook_url")
            .unwrap_or_else(|| panic!("{} has no runbook_url", rule.name));
        let anchor = url.strip_prefix(RUNBOOK_BASE).unwrap_or_else(|| {
            panic!(
                "{}: runbook_url {url} does not start with {RUNBOOK_BASE}",
                rule.name
            )
        });
        assert!(
            anchors.contains(anchor),
            "{}: {RUNBOOK} has no heading for #{anchor} (headings: {anchors:?})",
            rule.name
        );
    }
    // Links inside the runbook must resolve too.
    let runbook = read(RUNBOOK);
    for part in runbook.split("](#").skip(1) {
        let anchor = part.split(')').next().unwrap_or_default();
        assert!(
            anchors.contains(anchor),
            "{RUNBOOK} links to #{anchor}, which is no heading"
        );
    }
}

#[test]
fn every_alert_is_complete() {
    let text = read(ALERTS);
    let rules = alert_rules(&text);

    // The reader must see every rule promtool sees.
    let mut cmd = promtool();
    cmd.args(["check", "rules", ALERTS]);
    let report = run_ok(cmd, "promtool check rules");
    let found = format!("SUCCESS: {} rules found", rules.len());
    assert!(
        report.contains(&found),
        "read {} alerts from {ALERTS}, promtool says: {report}",
        rules.len()
    );

    let names: BTreeSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), rules.len(), "duplicate alert names: {names:?}");
    for required in REQUIRED_ALERTS {
        assert!(names.contains(required), "alert {required} is missing");
    }

    let unit_tests = read(ALERTS_TEST);
    for rule in &rules {
        let name = &rule.name;
        for key in [
            "expr",
            "for",
            "labels.severity",
            "annotations.summary",
            "annotations.description",
            "annotations.runbook_url",
        ] {
            assert!(
                rule.get(key).is_some_and(|v| !v.trim().is_empty()),
                "{name} lacks {key}: {:?}",
                rule.fields
            );
        }
        let severity = rule.get("labels.severity").unwrap();
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: severity {severity} is neither warning nor critical"
        );
        let description = rule.get("annotations.description").unwrap();
        assert!(
            description.contains("$value"),
            "{name}: the description does not give the value: {description}"
        );
        let subject = if INSTANCE_ALERTS.contains(&name.as_str()) {
            "$labels.instance"
        } else if PLATFORM_ALERTS.contains(&name.as_str()) {
            "$labels.platform"
        } else if SUITE_ALERTS.contains(&name.as_str()) {
            "$labels.suite"
        } else if ROUTE_ALERTS.contains(&name.as_str()) {
            "$labels.route"
        } else if SOURCE_ALERTS.contains(&name.as_str()) {
            "$labels.source"
        } else {
            "$labels.app"
        };
        assert!(
            description.contains(subject),
            "{name}: the description does not name {subject}: {description}"
        );
        assert!(
            unit_tests.contains(&format!("alertname: {name}\n")),
            "{name} has no case in {ALERTS_TEST}"
        );
    }
}

/// Every `datasource` object anywhere under `v`.
fn datasources(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "datasource" {
                    out.push(child.clone());
                }
                datasources(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| datasources(i, out)),
        _ => {}
    }
}

/// Every `expr` of a panel's queries.
fn exprs(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|t| t["expr"].as_str())
        .collect()
}

#[test]
fn dashboard_uses_the_provisioned_datasource_and_app_and_platform_variables() {
    let provisioned = read(DATASOURCE);
    let uid = provisioned
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(|u| unquote(u.trim()).to_string())
        .expect("the provisioned datasource has a uid");

    let dash = dashboard();
    let mut refs = Vec::new();
    datasources(&dash, &mut refs);
    assert!(!refs.is_empty(), "the dashboard names no datasource");
    for r in &refs {
        assert_eq!(
            r["uid"].as_str(),
            Some(uid.as_str()),
            "a datasource is not the provisioned one ({uid}): {r}"
        );
    }

    let panels = all_panels(&dash);
    // Grafana keys panels by id: a duplicate, even inside a collapsed row, loses one of them.
    let mut ids = BTreeSet::new();
    for p in &panels {
        let id = p["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} is used twice");
    }
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap_or("(untitled)");
        assert_eq!(p["datasource"]["uid"], uid.as_str(), "panel {title}");
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "panel {title}: a target without expr"
            );
            assert_eq!(t["datasource"]["uid"], uid.as_str(), "panel {title}");
        }
    }
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    for want in [
        "Token health",
        "Serving",
        "Upstream",
        "Process",
        "Open Platform",
        "WeCom suites",
    ] {
        assert!(
            rows.iter().any(|r| r.starts_with(want)),
            "no row {want}: {rows:?}"
        );
    }

    let vars = dash["templating"]["list"].as_array().expect("templating");
    let app = vars
        .iter()
        .find(|v| v["name"] == "app")
        .expect("an `app` variable");
    assert_eq!(
        app["query"], "label_values(wxtoken_token_seconds_left, app)",
        "app variable query"
    );
    assert_eq!(app["multi"], true, "app variable must allow several apps");
    assert_eq!(app["includeAll"], true, "app variable must offer All");
    // From a series every platform has from start-up, so one still waiting for its first
    // ticket is listed too.
    let platform = vars
        .iter()
        .find(|v| v["name"] == "platform")
        .expect("a `platform` variable");
    assert_eq!(
        platform["query"], "label_values(wxtoken_authorizers, platform)",
        "platform variable query"
    );
    assert_eq!(
        platform["multi"], true,
        "platform variable must allow several"
    );
    assert_eq!(
        platform["includeAll"], true,
        "platform variable must offer All"
    );

    // Grafana loads the dashboard through a file provider.
    let provider = read(PROVIDER);
    assert!(
        provider.contains("type: file") && provider.contains("path:"),
        "{PROVIDER} is not a file provider with a path:\n{provider}"
    );
}

/// The queries of the collapsed row `title` (panel title, expr), after checking that every
/// one of them, and only they, read the variable `var`.
fn collapsed_row_queries(dash: &Value, title: &str, var: &str) -> Vec<(String, String)> {
    let top = dash["panels"].as_array().expect("panels");
    let row = top
        .iter()
        .find(|p| p["type"] == "row" && p["title"] == title)
        .unwrap_or_else(|| panic!("a {title} row"));
    // Collapsed: most installations have none, and its panels would show nothing.
    assert_eq!(row["collapsed"], true, "the {title} row is collapsed");
    // Every panel of the row is inside it; none of them sits at the top level.
    for p in top {
        for e in exprs(p) {
            assert!(!e.contains(var), "{e} is outside the {title} row");
        }
    }
    let queries: Vec<(String, String)> = row["panels"]
        .as_array()
        .expect("row panels")
        .iter()
        .flat_map(|p| {
            let t = p["title"].as_str().unwrap_or("(untitled)").to_string();
            exprs(p)
                .into_iter()
                .map(move |e| (t.clone(), e.to_string()))
        })
        .collect();
    for (t, e) in &queries {
        assert!(e.contains(var), "{t}: {e} ignores {var}");
    }
    queries
}

/// The title of the first of `queries` that reads `needle`.
fn reading<'a>(queries: &'a [(String, String)], needle: &str) -> &'a str {
    queries
        .iter()
        .find(|(_, e)| e.contains(needle))
        .map(|(t, _)| t.as_str())
        .unwrap_or_else(|| panic!("no query of the row reads {needle}: {queries:?}"))
}

/// The threshold steps (with a value) of the panel titled `title` anywhere in the dashboard.
fn threshold_steps(dash: &Value, title: &str) -> Vec<f64> {
    let panels = all_panels(dash);
    let panel = panels.iter().find(|p| p["title"] == title).unwrap();
    panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .expect("threshold steps")
        .iter()
        .filter_map(|s| s["value"].as_f64())
        .collect()
}

#[test]
fn dashboard_has_a_collapsed_open_platform_row_reading_every_platform_series() {
    let dash = dashboard();
    let queries = collapsed_row_queries(&dash, "Open Platform", "$platform");
    // One panel each: ticket age, authorizers by state, pushes, the component token, and the
    // authorizer actors' shared label.
    let ticket = reading(&queries, "wxtoken_platform_ticket_age_seconds{");
    reading(&queries, "wxtoken_authorizers{");
    reading(&queries, "wxtoken_platform_events_total{");
    reading(
        &queries,
        r#"wxtoken_token_seconds_left{app=~"platform:$platform"}"#,
    );
    reading(
        &queries,
        r#"wxtoken_token_refresh_failures_total{app=~"platform:$platform:authorizers"}"#,
    );
    // The ticket-age panel marks the two alert thresholds: stale at 30 minutes, expiring at
    // 11 hours.
    assert_eq!(
        threshold_steps(&dash, ticket),
        [1800.0, 11.0 * 3600.0],
        "{ticket}: thresholds"
    );
    let panels = all_panels(&dash);
    let panel = panels.iter().find(|p| p["title"] == ticket).unwrap();
    assert_eq!(
        panel["fieldConfig"]["defaults"]["unit"], "s",
        "{ticket}: unit"
    );
}

#[test]
fn dashboard_has_a_collapsed_wecom_row_reading_every_suite_series() {
    let dash = dashboard();
    let queries = collapsed_row_queries(&dash, "WeCom suites", "$suite");
    let ticket = reading(&queries, "wxtoken_wecom_suite_ticket_age_seconds{");
    reading(&queries, "wxtoken_wecom_corps{");
    reading(&queries, "wxtoken_wecom_callbacks_total{");
    reading(
        &queries,
        r#"wxtoken_token_refreshes_total{app=~"wecom:$suite.*"}"#,
    );
    // The ticket-age panel marks the alert's threshold (20 minutes) and the ticket's end (30).
    assert_eq!(
        threshold_steps(&dash, ticket),
        [1200.0, 1800.0],
        "{ticket}: thresholds"
    );
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let suite = vars
        .iter()
        .find(|v| v["name"] == "suite")
        .expect("a `suite` variable");
    assert_eq!(suite["query"], "label_values(wxtoken_wecom_corps, suite)");
}

#[test]
fn dashboard_has_a_gateway_row_reading_every_proxy_series() {
    let dash = dashboard();
    let top = dash["panels"].as_array().expect("panels");
    let at = top
        .iter()
        .position(|p| p["type"] == "row" && p["title"] == "Gateway")
        .expect("a Gateway row");
    // An open row: its panels follow it at the top level, up to the next row.
    let inside: Vec<&Value> = top[at + 1..]
        .iter()
        .take_while(|p| p["type"] != "row")
        .collect();
    let queries: Vec<&str> = inside.iter().flat_map(|p| exprs(p)).collect();
    for family in [
        "wxtoken_proxy_requests_total{",
        "wxtoken_proxy_retries_total{",
        "wxtoken_proxy_upstream_duration_seconds_bucket",
        "wxtoken_proxy_errcodes_total",
    ] {
        assert!(
            queries.iter().any(|e| e.contains(family)),
            "no Gateway query reads {family}: {queries:?}"
        );
    }
    // Per-app panels follow the $app variable (the calls that named no app included).
    for e in queries.iter().filter(|e| e.contains("app=")) {
        assert!(e.contains("$app"), "{e} ignores $app");
    }
}
