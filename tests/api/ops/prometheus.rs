//! The alert rules and the dashboard against a real Prometheus scraping a live wxtoken with two
//! apps, an Open Platform platform (a pushed ticket, authorized accounts) and WeCom suites (a
//! pushed suite ticket, an installed corp, its ticket): every query
//! returns data, and the configuration-error and refresh-failure alerts follow a fault, with
//! each `[metrics] per_app` series set ("full" and "gauges").
//!
//! Prometheus (Debian's `prometheus` package, installed by `scripts/test`) runs on a free
//! loopback port with a temporary configuration and storage, scraping the in-process test
//! server every second, with a copy of config/prometheus/alerts.yml whose `for:` durations and
//! range windows are shortened so that alerts come and go within seconds.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wxtoken::config::MessageFormat;
use wxtoken::fake::messages::{
    event_message, push_message, text_message, MessageTarget, Mode, Retries,
};
use wxtoken::fake::{FakeConfig, FakeInbox, Fault};

use crate::support::deliveries::{route, ROUTE_KEY};
use crate::support::helpers::*;
use crate::support::messages::{shop_target, shop_with_messages};
use crate::support::ops_files::{alert_rules, all_panels, dashboard, read, ALERTS, DASHBOARD};
use crate::support::platform::{platform_table, start_with_platform, COMPONENT, PLATFORM};

/// `for:` in the test copy of the rules: long enough to pass through `pending`.
const TEST_FOR: &str = "1s";
/// Range windows (`[10m]`, `offset 10m`) in the test copy: ten scrapes.
const TEST_WINDOW: &str = "10s";
/// Stands in for Grafana's rate-interval variables in dashboard queries.
const DASHBOARD_INTERVAL: &str = "1m";
/// What Grafana sends for `$app` when All is selected: a regex of every app. Not `.*`, which
/// would also match series whose `app` label is misspelled or missing.
const ALL_APPS: &str = "(shop|blog)";
/// The same for `$platform`: the test server's one platform.
const ALL_PLATFORMS: &str = "(saas)";
/// The same for `$suite`: the test server's WeCom suite and template.
const ALL_SUITES: &str = "(crm-suite|crm-template)";
/// Series exported only with the Redis store or with HTTPS, neither of which the test server
/// uses: rule and dashboard queries that read them must still be valid PromQL, but may return
/// nothing. The WxtokenRedisDown and certificate-expiry rules are covered by synthetic series in
/// alerts_test.yml.
const NOT_EXPORTED_HERE: [&str; 2] = [
    "wxtoken_redis_up",
    "wxtoken_tls_certificate_expiry_timestamp_seconds",
];

/// Families that `[metrics] per_app = "gauges"` does not export: a rule may read them only in
/// an `or` whose other side works without them.
const ONLY_IN_FULL_MODE: [&str; 2] = ["wxtoken_quota_used_today", "wxtoken_quota_daily_limit"];

/// Whether a selector reads a family that gauges mode leaves out.
fn only_in_full_mode(selector: &str) -> bool {
    ONLY_IN_FULL_MODE.iter().any(|m| {
        selector
            .strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
    })
}

/// Whether a selector reads a series that only the Redis store or HTTPS exports.
fn not_exported_here(selector: &str) -> bool {
    NOT_EXPORTED_HERE.iter().any(|m| {
        selector
            .strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
    })
}

/// Debian's Prometheus server, on PATH.
const PROMETHEUS: &str = "prometheus";

/// A missing Prometheus is a failure, not a skip: this check must run in CI.
fn require_prometheus() {
    crate::support::promtool::require_tool(PROMETHEUS, "prometheus");
}

/// A free loopback port. Another process may take it before Prometheus binds it; `start`
/// then tries another.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The rules with every `for:` set to `TEST_FOR`, and every range window and offset set to
/// `TEST_WINDOW`. A textual rewrite: alerts.yml keeps `for:` on its own line and writes windows
/// as plain durations, which is all this needs to recognise.
fn shorten_rules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        if body.starts_with("for:") {
            out.push_str(&format!("{indent}for: {TEST_FOR}"));
        } else {
            out.push_str(&shorten_windows(line));
        }
        out.push('\n');
    }
    out
}

fn is_duration(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_digit() || "smhdwy".contains(c))
}

fn shorten_windows(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    loop {
        let next_range = rest.find('[');
        let next_offset = rest.find("offset ");
        match (next_range, next_offset) {
            (Some(r), o) if o.is_none_or(|o| r < o) => {
                out.push_str(&rest[..r]);
                let after = &rest[r + 1..];
                match after.find(']') {
                    Some(end) if is_duration(&after[..end]) => {
                        out.push_str(&format!("[{TEST_WINDOW}]"));
                        rest = &after[end + 1..];
                    }
                    _ => {
                        out.push('[');
                        rest = after;
                    }
                }
            }
            (_, Some(o)) => {
                out.push_str(&rest[..o]);
                let after = &rest[o + "offset ".len()..];
                let end = after
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(after.len());
                if is_duration(&after[..end]) {
                    out.push_str(&format!("offset {TEST_WINDOW}"));
                } else {
                    out.push_str("offset ");
                    out.push_str(&after[..end]);
                }
                rest = &after[end..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// PromQL words followed by a list of labels, not of selectors.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// PromQL words that are not metric names, besides [`GROUPING`].
const NOT_METRICS: [&str; 19] = [
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "inf",
    "nan",
];

/// The vector selectors (`metric{labels}`) an expression reads, as written. A small scanner:
/// skips strings, range windows, numbers, function names, keywords and grouping label lists.
fn selectors(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    // The index just past the string that opens at `j`.
    let skip_string = |j: usize| {
        let quote = chars[j];
        let mut k = j + 1;
        while k < chars.len() {
            if chars[k] == '\\' {
                k += 2;
                continue;
            }
            if chars[k] == quote {
                return k + 1;
            }
            k += 1;
        }
        chars.len()
    };
    // The index just past the `close` that matches the opening bracket at `j`.
    let matching = |j: usize, close: char| {
        let mut k = j + 1;
        while k < chars.len() {
            match chars[k] {
                '"' | '\'' | '`' => k = skip_string(k),
                c if c == close => return k + 1,
                _ => k += 1,
            }
        }
        chars.len()
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
            continue;
        }
        if c == '[' {
            i = matching(i, ']');
            continue;
        }
        if c == '{' {
            let end = matching(i, '}');
            out.push(chars[i..end].iter().collect());
            i = end;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_ws(i);
            if GROUPING.contains(&word.as_str()) {
                // A label list, not selectors.
                if chars.get(next) == Some(&'(') {
                    i = matching(next, ')');
                }
                continue;
            }
            let lower = word.to_lowercase();
            if chars.get(next) == Some(&'(')
                || NOT_METRICS.contains(&lower.as_str())
                || GROUPING.contains(&lower.as_str())
            {
                continue;
            }
            if chars.get(next) == Some(&'{') {
                let end = matching(next, '}');
                out.push(format!(
                    "{word}{}",
                    chars[next..end].iter().collect::<String>()
                ));
                i = end;
            } else {
                out.push(word);
            }
            continue;
        }
        i += 1;
    }
    out
}

/// A Prometheus process; killed (and its log shown, if the test failed) when dropped.
struct Prometheus {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) every second with the shortened rules,
    /// and waits until it is ready.
    async fn start(target: &str, rules: &str) -> Prometheus {
        require_prometheus();
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
            std::fs::write(
                dir.path().join("prometheus.yml"),
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                     rule_files:\n  - alerts.yml\n\
                     scrape_configs:\n  - job_name: wxtoken\n    metrics_path: /metrics\n    \
                     static_configs:\n      - targets: [\"{target}\"]\n"
                ),
            )
            .unwrap();
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let child = Command::new(PROMETHEUS)
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("prometheus starts");
            let mut prom = Prometheus {
                child,
                base: format!("http://127.0.0.1:{port}"),
                dir,
            };
            if prom.wait_ready().await {
                return prom;
            }
            last_log = prom.log_tail(30);
            // Dropping `prom` kills it; a taken port is worth another try.
        }
        panic!("prometheus did not become ready; its log:\n{last_log}");
    }

    /// Polls `/-/ready` for up to 20 s; false if it exited or never got ready.
    async fn wait_ready(&mut self) -> bool {
        let http = client();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(resp) = http.get(format!("{}/-/ready", self.base)).send().await {
                if resp.status().is_success() {
                    return true;
                }
            }
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    fn log_tail(&self, n: usize) -> String {
        let lines: Vec<String> = std::fs::File::open(self.log_path())
            .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
            .unwrap_or_default();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the prometheus log ---\n{}",
                self.log_tail(30)
            );
        }
    }
}

/// Prometheus' HTTP API.
struct Api {
    http: awc::Client,
    base: String,
}

impl Api {
    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut resp = self
            .http
            .get(format!("{}{path}", self.base))
            .query(&params)
            .expect("query string")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body = resp.body().limit(8 << 20).await.expect("API body");
        let v: Value = serde_json::from_slice(&body).expect("API answers JSON");
        assert_eq!(v["status"], "success", "GET {path} {params:?}: {v}");
        v["data"].clone()
    }

    /// The result of an instant query (panics if Prometheus rejects the expression).
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.get("/api/v1/query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Pending and firing alerts.
    async fn alerts(&self) -> Vec<Alert> {
        let data = self.get("/api/v1/alerts", &[]).await;
        data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(a["labels"].clone()).unwrap_or_default();
                let name = labels.get("alertname").cloned().unwrap_or_default();
                Alert {
                    name,
                    labels,
                    state: a["state"].as_str().unwrap_or("").to_string(),
                }
            })
            .collect()
    }

    /// Polls the alerts every 250 ms until `done` accepts them (Ok) or `limit` passes (Err with
    /// the last ones seen).
    async fn alerts_until(
        &self,
        limit: Duration,
        done: impl Fn(&[Alert]) -> bool,
    ) -> Result<Vec<Alert>, Vec<Alert>> {
        let start = Instant::now();
        loop {
            let alerts = self.alerts().await;
            if done(&alerts) {
                return Ok(alerts);
            }
            if start.elapsed() > limit {
                return Err(alerts);
            }
            actix_web::rt::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every rule Prometheus loaded.
    /// Those of `selectors` that return no series.
    async fn without_data(&self, selectors: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut empty = Vec::new();
        for selector in selectors {
            if self.query(&selector).await.is_empty() {
                empty.push(selector);
            }
        }
        empty
    }

    async fn rules(&self) -> Vec<Value> {
        let data = self.get("/api/v1/rules", &[]).await;
        data["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// Polls `check` every 250 ms until it returns true or `limit` passes.
async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Fails with `what` and each of `found`, one a line, unless there are none.
fn assert_none(what: &str, found: &[String]) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

/// A pending or firing alert, as `/api/v1/alerts` lists it.
#[derive(Debug)]
struct Alert {
    name: String,
    labels: BTreeMap<String, String>,
    state: String,
}

fn has_alert(alerts: &[Alert], name: &str, labels: &[(&str, &str)]) -> bool {
    alerts.iter().any(|a| {
        a.name == name
            && (a.state == "pending" || a.state == "firing")
            && labels
                .iter()
                .all(|(k, v)| a.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// Every `expr` in the dashboard with Grafana's variables filled in, titled by its panel.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash = dashboard();
    let mut out = Vec::new();
    for p in &all_panels(&dash) {
        let title = p["title"].as_str().unwrap_or("(untitled)");
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(expr) = t["expr"].as_str() {
                out.push((title.to_string(), fill_variables(expr)));
            }
        }
    }
    // Grafana's `label_values(metric, label)` for the variables, as the PromQL it stands for.
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = v["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or_else(|| panic!("unexpected variable query {q}"));
            let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
            out.push((
                format!("variable {}", v["name"]),
                format!("count by ({}) ({})", label.trim(), metric.trim()),
            ));
        }
    }
    out
}

fn fill_variables(expr: &str) -> String {
    let filled = expr
        .replace("$__rate_interval", DASHBOARD_INTERVAL)
        .replace("$__interval", DASHBOARD_INTERVAL)
        .replace("$__range", DASHBOARD_INTERVAL)
        .replace("${app}", ALL_APPS)
        .replace("$app", ALL_APPS)
        .replace("${platform}", ALL_PLATFORMS)
        .replace("$platform", ALL_PLATFORMS)
        .replace("${suite}", ALL_SUITES)
        .replace("$suite", ALL_SUITES);
    assert!(
        !filled.contains('$'),
        "{DASHBOARD}: unknown variable in {expr}"
    );
    filled
}

#[test]
fn selector_scanner_finds_the_metrics_an_expression_reads() {
    let expr = r#"sum by (app, reason) (increase(wxtoken_upstream_errors_total[10m])) > 0
        or on (app) ((wxtoken_upstream_errors_total > 0) unless wxtoken_upstream_errors_total offset 10m)
        and on (app) sum by (app) (increase(wxtoken_token_refreshes_total{result="failure",x=~"a}b"}[10m])) > 0.8e1
        or absent(up{job="wxtoken"}) or histogram_quantile(0.5, sum by (le) (rate(m_bucket[1m])))"#;
    assert_eq!(
        selectors(expr),
        [
            "wxtoken_upstream_errors_total",
            "wxtoken_upstream_errors_total",
            "wxtoken_upstream_errors_total",
            r#"wxtoken_token_refreshes_total{result="failure",x=~"a}b"}"#,
            r#"up{job="wxtoken"}"#,
            "m_bucket",
        ]
    );
}

#[test]
fn series_not_exported_here_are_recognised_by_exact_name() {
    assert!(not_exported_here("wxtoken_redis_up"));
    assert!(not_exported_here(r#"wxtoken_redis_up{instance="a"}"#));
    assert!(not_exported_here(
        "wxtoken_tls_certificate_expiry_timestamp_seconds"
    ));
    assert!(!not_exported_here("wxtoken_redis_upstream"));
    assert!(!not_exported_here("wxtoken_token_seconds_left"));
}

#[test]
fn test_copy_of_the_rules_has_short_windows() {
    let short = shorten_rules(&read(ALERTS));
    assert!(!short.contains("[10m]") && !short.contains("[1h]") && !short.contains("offset 10m"));
    assert!(short.contains(&format!("[{TEST_WINDOW}]")));
    assert!(short.contains(&format!("offset {TEST_WINDOW}")));
    let rules = alert_rules(&short);
    assert!(!rules.is_empty());
    for r in &rules {
        assert_eq!(r.get("for"), Some(TEST_FOR), "{}", r.name);
    }
    // Annotations are untouched.
    let original = alert_rules(&read(ALERTS));
    for (a, b) in original.iter().zip(&rules) {
        assert_eq!(
            a.get("annotations.description"),
            b.get("annotations.description")
        );
    }
}

/// The usual test server (`shop`, `blog`, the billing and ops clients) plus the platform
/// `saas`, exporting `per_app`; `shop` takes pushes, delivered by the route `crm` to the inbox
/// returned. The fake pushes only on demand.
async fn spawn_with_platform(per_app: PerAppMetrics) -> (TestApp, FakeInbox) {
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let config = ConfigText::new()
        .app(shop_with_messages(false, MessageFormat::Xml))
        .app(App::official("blog", BLOG_APPID, BLOG_SECRET))
        .raw(&platform_table())
        .raw(&crate::support::wecom::wecom_tables("active"))
        .raw(&route(
            "crm",
            &inbox.url(),
            "match = { msg_types = [\"text\"] }",
        ))
        .client(Client::new("billing", BILLING_KEY).apps(&["shop"]))
        .client(
            Client::new("ops", OPS_KEY)
                .apps(&["*"])
                .platforms(&["*"])
                .admin(),
        );
    let fake = crate::support::wecom::with_wecom(FakeConfig {
        apps: vec![
            (SHOP_APPID.into(), SHOP_SECRET.into()),
            (BLOG_APPID.into(), BLOG_SECRET.into()),
        ],
        ..FakeConfig::default()
    });
    let server = TestApp::builder()
        .spec(Spec::default())
        .config(&config.to_string())
        .adjust(|(settings, _)| {
            settings.metrics.per_app = per_app;
        });
    (start_with_platform(fake, server).await, inbox)
}

/// A push of every outcome the dashboard shows: taken (and delivered), a retry of it
/// (duplicate), one no route matches, one refused.
async fn message_traffic(app: &TestApp, inbox: &FakeInbox) {
    let target = shop_target(&app.base, MessageFormat::Xml);
    let once = Retries {
        timeout: Duration::from_secs(5),
        again: 0,
    };
    let text = text_message("gh_shop", "o-user", "hello", 1);
    for _ in 0..2 {
        let got = push_message(&target, &text, Mode::Plaintext, once).await;
        assert_eq!((got.status, got.body.as_str()), (Some(200), "success"));
    }
    let event = event_message("gh_shop", "o-user", "subscribe", None);
    assert_eq!(
        push_message(&target, &event, Mode::Plaintext, once)
            .await
            .status,
        Some(200)
    );
    let wrong = MessageTarget {
        token: "wrongToken1".into(),
        ..target.clone()
    };
    assert_eq!(
        push_message(&wrong, &text, Mode::Plaintext, once)
            .await
            .status,
        Some(401)
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            inbox.delivered().len() == 1
        })
        .await,
        "the text was delivered"
    );
}

/// What the Open Platform panels show: a pushed ticket, the component token it mints, two
/// accounts imported by the first reconciliation, and one of them asked for (active).
async fn platform_traffic(app: &TestApp) {
    let accounts = app
        .fake
        .bulk_authorize(COMPONENT, 2)
        .expect("accounts authorized");
    app.push_ticket().await;
    let authorizers = format!("/v1/platforms/{PLATFORM}/authorizers?limit=1");
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.get(&authorizers, Some(OPS_KEY)).await.body["total"] == 2
        })
        .await,
        "the first component token did not bring the authorized accounts"
    );
    let token = app
        .get(
            &format!("/v1/platforms/{PLATFORM}/authorizers/{}/token", accounts[0]),
            Some(OPS_KEY),
        )
        .await;
    assert_eq!(token.status, 200, "{}", token.body);
}

/// What the WeCom suites row shows: pushed suite tickets and the suite token it mints, a corp
/// installed (its callback, its token) and its jsapi ticket fetched.
async fn wecom_traffic(app: &TestApp) {
    use crate::support::wecom::{route_callbacks, KEY, SUITE, SUITE_ID, TEMPLATE, TEMPLATE_ID};
    route_callbacks(&app.fake, &app.base);
    // Both suites get a ticket: a suite token without one is expired, as an alert says.
    app.suite_ready(TEMPLATE, TEMPLATE_ID).await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000050";
    app.install(SUITE, SUITE_ID, corp).await;
    let ticket = app
        .get(
            &format!("/v1/wecom/suites/{SUITE}/corps/{corp}/ticket/jsapi"),
            Some(KEY),
        )
        .await;
    assert_eq!(ticket.status, 200, "{}", ticket.body);
}

#[actix_web::test]
async fn alerts_and_dashboard_work_in_a_real_prometheus() {
    alerts_and_dashboard_work_with(PerAppMetrics::Full).await;
}

#[actix_web::test]
async fn alerts_and_dashboard_work_in_a_real_prometheus_with_gauges_only() {
    alerts_and_dashboard_work_with(PerAppMetrics::Gauges).await;
}

async fn alerts_and_dashboard_work_with(per_app: PerAppMetrics) {
    let started = Instant::now();
    let gauges = per_app == PerAppMetrics::Gauges;
    let (app, inbox) = spawn_with_platform(per_app).await;
    let target = app.base.strip_prefix("http://").expect("http base");
    let rules_text = shorten_rules(&read(ALERTS));
    let alert_count = alert_rules(&rules_text).len();
    let prom = Prometheus::start(target, &rules_text).await;
    let api = Api {
        http: client(),
        base: prom.base.clone(),
    };

    // Every rule loaded and none is broken.
    let loaded = api.rules().await;
    assert_eq!(
        loaded.iter().filter(|r| r["type"] == "alerting").count(),
        alert_count,
        "Prometheus did not load every rule of {ALERTS}: {loaded:?}"
    );

    // Traffic of every kind the dashboard shows: reads by two clients, an unknown app, a bad
    // key, an unknown path, probes, a stale and a real invalidation.
    let first = app.shop_token().await;
    assert_eq!(
        app.get("/v1/apps/blog/token", Some(OPS_KEY)).await.status,
        200
    );
    assert_eq!(
        app.get("/v1/apps/nosuch/token", Some(OPS_KEY)).await.status,
        404
    );
    assert_eq!(
        app.get("/v1/apps/shop/token", Some("not-a-client-key"))
            .await
            .status,
        401
    );
    assert_eq!(app.get("/no/such/path", None).await.status, 404);
    assert_eq!(app.get("/healthz", None).await.status, 200);
    assert_eq!(app.get("/readyz", None).await.status, 200);
    assert_eq!(app.invalidate_shop("an-old-token").await.status, 200);
    app.fake.kill_token(&first);
    let refreshed = app.invalidate_shop(&first).await;
    assert_eq!(
        refreshed.token().refreshed,
        Some(true),
        "{}",
        refreshed.body
    );
    platform_traffic(&app).await;
    wecom_traffic(&app).await;
    message_traffic(&app, &inbox).await;
    // Through the gateway: a call whose token was rotated behind wxtoken's back (retried), and
    // one WeChat answers with an errcode (no openid).
    crate::support::gateway::rotate_behind_wxtoken(&app.fake).await;
    let current = app.shop_token().await;
    let retried = app
        .get(
            &format!("/cgi-bin/user/info?access_token={current}&openid=o1"),
            None,
        )
        .await;
    assert_eq!(retried.body["openid"], "o1", "{}", retried.body);
    let refused = app
        .get(&format!("/cgi-bin/user/info?access_token={current}"), None)
        .await;
    assert_eq!(refused.wx().errcode, 40003, "{}", refused.body);

    assert!(
        wait_for(Duration::from_secs(10), || async {
            !api.query(r#"wxtoken_invalidations_total{outcome="refreshed"} > 0"#)
                .await
                .is_empty()
                && !api
                    .query(r#"wxtoken_authorizers{state="active"} > 0"#)
                    .await
                    .is_empty()
                && !api
                    .query(r#"wxtoken_wecom_corps{state="active"} > 0"#)
                    .await
                    .is_empty()
        })
        .await,
        "Prometheus never scraped the traffic"
    );

    // Fault: WeChat says the secret is wrong. The invalidation starts a fetch; it and its
    // retries fail until the fault is cleared, while the old token is still served. With
    // gauges only, the reason is on an alert for all apps and the app on another.
    app.fake.inject(Fault::Errcode(40125), 100_000);
    let current = app.shop_token().await;
    app.fake.kill_token(&current);
    let during = app.invalidate_shop(&current).await;
    assert_eq!(during.status, 200, "the still-valid token is served");
    let raised = api
        .alerts_until(Duration::from_secs(15), |alerts| {
            let failing =
                |labels: &[(&str, &str)]| has_alert(alerts, "WxtokenRefreshFailing", labels);
            has_alert(alerts, "WxtokenConfigError", &[("app", "shop")])
                && if gauges {
                    failing(&[("app", "shop")]) && failing(&[("reason", "40125")])
                } else {
                    failing(&[("app", "shop"), ("reason", "40125")])
                }
        })
        .await;
    if let Err(seen) = raised {
        panic!("config-error and refresh-failure alerts not raised during the fault: {seen:?}");
    }

    // Recovery: the next retry succeeds; every alert clears.
    app.fake.clear_faults();
    let cleared = api
        .alerts_until(Duration::from_secs(25), |alerts| alerts.is_empty())
        .await;
    if let Err(seen) = cleared {
        panic!("alerts still active after recovery: {seen:?}");
    }
    assert_ne!(
        app.shop_token().await,
        current,
        "a new token after recovery"
    );
    let config_error = api
        .query(r#"wxtoken_upstream_config_error{app="shop"}"#)
        .await;
    assert_eq!(
        config_error.first().map(|s| s["value"][1].clone()),
        Some(Value::from("0")),
        "config error flag after recovery: {config_error:?}"
    );

    // WxtokenTokenExpiringSoon compares the published refresh-due time with Prometheus' clock:
    // it must be a Unix time in seconds, in the future (within a token's life) while
    // refreshing works.
    let due_in = api
        .query(&format!(
            "wxtoken_token_refresh_due_timestamp_seconds{{app=~\"{ALL_APPS}\"}} - time()"
        ))
        .await;
    assert_eq!(due_in.len(), 2, "a refresh due time per app: {due_in:?}");
    for series in &due_in {
        let secs: f64 = series["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        assert!(
            secs > 0.0 && secs < 7200.0,
            "refresh due in {secs} s, not within the token's life: {series}"
        );
    }

    // Every dashboard query is accepted, and returns data unless it reads a series the test
    // server does not export.
    let mut empty = Vec::new();
    for (panel, expr) in dashboard_queries() {
        let result = api.query(&expr).await;
        let (absent_here, others): (Vec<String>, Vec<String>) = selectors(&expr)
            .into_iter()
            .partition(|s| not_exported_here(s));
        if absent_here.is_empty() {
            if result.is_empty() {
                empty.push(format!("{panel}: {expr}"));
            }
            continue;
        }
        // Without them the whole query may be empty; what else it reads must not be.
        for selector in api.without_data(others).await {
            empty.push(format!("{panel}: {selector} (in {expr})"));
        }
    }
    assert_none("dashboard queries without data", &empty);

    // Every rule evaluates cleanly, and every series it reads exists. Rules are empty when
    // all is well, so it is their selectors that must return data.
    let mut missing = Vec::new();
    for rule in api.rules().await {
        let name = rule["name"].as_str().unwrap_or_default().to_string();
        assert_eq!(
            rule["health"],
            "ok",
            "{name}: {}",
            rule["lastError"].as_str().unwrap_or_default()
        );
        let query = rule["query"].as_str().expect("rule query");
        let found = selectors(query);
        assert!(!found.is_empty(), "{name}: no selector found in {query}");
        let checked = found
            .into_iter()
            .filter(|s| !(not_exported_here(s) || (gauges && only_in_full_mode(s))));
        for selector in api.without_data(checked).await {
            missing.push(format!("{name}: {selector}"));
        }
    }
    assert_none("alert rules read series that do not exist", &missing);

    eprintln!(
        "prometheus test ({per_app:?}) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
