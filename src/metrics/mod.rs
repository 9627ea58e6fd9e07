//! Prometheus metrics: one `Metrics` value owns every series; callers use domain verbs.
//!
//! Label values come from fixed sets or from the configured app names, never from free text.
//! The per-credential gauges (seconds left, expiry, age, refresh due, generation, quota,
//! configuration error) and the aggregate `wxtoken_credentials{state}` are not set by anyone:
//! `credentials.rs` computes them at scrape from the published statuses. Counters are updated
//! by the verbs below.
//!
//! How many series each app costs is the [`MetricsMode`], chosen at start-up: `Full` labels
//! every event family with `app` (about 50 series per app); `Gauges` keeps four per-app gauges
//! and the per-app failure counter (5 per app) and counts every other event into aggregate
//! series without `app`. The verbs are the same in both.

mod audit;
mod credentials;
mod family;
mod labels;
mod messages;
mod platforms;
mod pool;
mod proxy;
mod register;
mod state;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{Encoder, Histogram, HistogramVec, IntCounterVec, Registry, TextEncoder};

pub use crate::config::MetricsMode;
use crate::status::{InvalidationOutcome, RefetchRefusal, Trigger};
use crate::upstream::{UpstreamError, UpstreamPool};
pub use credentials::{gauge_families, CredentialCollector, ScrapedCredential, StatusSource};
use family::Family;
pub use labels::{reason_label, FIXED_REASONS, KNOWN_ERRCODES, OTHER_REASON, ROUTES, STORE_OPS};
pub use messages::{ScrapedRoute, DELIVERY_RESULTS, PUSH_RESULTS};
pub use platforms::ScrapedPlatform;
pub use proxy::{errcode_label, ProxyResult};
use register::{counter, histogram, int_gauge, Families as _};
pub use state::CredentialState;

/// Served from memory, most answers take well under a millisecond; the upper buckets catch
/// requests that waited for a fetch (up to the 5 s wait limit).
const HTTP_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0,
];

/// WeChat usually answers in tens to hundreds of milliseconds; timeouts land in the top bucket.
const UPSTREAM_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The endpoints of `wxtoken_upstream_request_duration_seconds`; in gauges mode their
/// aggregate series exist from start-up.
const UPSTREAM_ENDPOINTS: [&str; 2] = ["token", "ticket"];

type Counters = Family<IntCounterVec>;

struct Inner {
    registry: Registry,
    mode: MetricsMode,
    events: EventFamilies,
    /// `wxtoken_token_refresh_failures_total{app}`: per app in every mode, so alerts can name
    /// the failing app in gauges mode too.
    refresh_failures: IntCounterVec,
    platform_events: IntCounterVec,
    wecom_callbacks: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    proxy: proxy::ProxyMetrics,
    audit_write_errors: prometheus::IntCounter,
    /// The message hub's pushes, deliveries and backlog gauges.
    messages: messages::MessageMetrics,
    /// Where the credential collector reads the running credentials from.
    source: Arc<OnceLock<StatusSource>>,
    /// Registered only when the Redis store is used, so a single instance shows no Redis.
    redis_up: OnceLock<prometheus::IntGauge>,
}

/// Cheap to clone; every clone updates the same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// The event families: labelled `app` and part of the credential collector in full mode, one
/// aggregate per label set straight in the registry otherwise (see `family.rs`).
struct EventFamilies {
    refreshes: Counters,
    upstream_errors: Counters,
    invalidations: Counters,
    actor_restarts: Counters,
    store_errors: Counters,
    revocations: Counters,
    forced_refusals: Counters,
    refetch_refusals: Counters,
    upstream_duration: Family<HistogramVec>,
}

impl EventFamilies {
    fn register(
        mode: MetricsMode,
        registry: &mut Registry,
        per_app: &mut Vec<Box<dyn prometheus::core::Collector>>,
    ) -> EventFamilies {
        let full = mode == MetricsMode::Full;
        let mut event_counter = |name: &str, help: &str, rest: &[&str]| {
            let labels = Counters::labels(mode, rest);
            let family = if full {
                counter(per_app, name, help, &labels)
            } else {
                counter(registry, name, help, &labels)
            };
            Family::new(family, full)
        };
        let refreshes = event_counter(
            "wxtoken_token_refreshes_total",
            "Token fetches from WeChat, by what started them and how they ended.",
            &["trigger", "result"],
        );
        let upstream_errors = event_counter(
                "wxtoken_upstream_errors_total",
                "Failed calls to WeChat: reason is a known errcode, other (any other errcode), or timeout/connect/http/decode/no_token.",
                &["reason"],
            );
        let invalidations = event_counter(
            "wxtoken_invalidations_total",
            "Invalidation requests from business servers, by outcome.",
            &["outcome"],
        );
        let actor_restarts = event_counter(
            "wxtoken_actor_restarts_total",
            "Restarts of an app's token actor by its supervisor.",
            &[],
        );
        let store_errors = event_counter(
            "wxtoken_store_errors_total",
            "Failed reads or writes of the token store.",
            &["op"],
        );
        let revocations = event_counter(
            "wxtoken_revocations_total",
            "Token revocations requested by admins.",
            &[],
        );
        let forced_refusals = event_counter(
                "wxtoken_forced_refresh_refusals_total",
                "Stable grant: invalidations answered without a forced refresh because WeChat's limits (20 a day, 30 s apart) were used up.",
                &[],
            );
        let refetch_refusals = event_counter(
                "wxtoken_refetches_refused_total",
                "Reports of the current token (invalidations, the gateway's retries) answered without the refetch they asked for: token_alive (WeChat still accepts it), hourly_cap (refresh.reported_refetches_per_hour reached) or probe_failed (WeChat could not be asked).",
                &["reason"],
            );
        let upstream_labels = Counters::labels(mode, &["endpoint"]);
        let upstream_duration = Family::new(
            if full {
                histogram(
                    per_app,
                    "wxtoken_upstream_request_duration_seconds",
                    "Duration of calls to WeChat, failed ones included, by endpoint.",
                    &upstream_labels,
                    &UPSTREAM_BUCKETS,
                )
            } else {
                histogram(
                    registry,
                    "wxtoken_upstream_request_duration_seconds",
                    "Duration of calls to WeChat, failed ones included, by endpoint.",
                    &upstream_labels,
                    &UPSTREAM_BUCKETS,
                )
            },
            full,
        );
        EventFamilies {
            refreshes,
            upstream_errors,
            invalidations,
            actor_restarts,
            store_errors,
            revocations,
            forced_refusals,
            refetch_refusals,
            upstream_duration,
        }
    }
}

/// `wxtoken_http_requests_total` and `wxtoken_http_request_duration_seconds`, the histogram's
/// series created at 0 for every route template.
fn http_families(registry: &mut Registry) -> (IntCounterVec, HistogramVec) {
    let http_requests = counter(
        registry,
        "wxtoken_http_requests_total",
        "HTTP requests answered, by route template and status code.",
        &["route", "status"],
    );
    let http_duration = histogram(
        registry,
        "wxtoken_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template.",
        &["route"],
        &HTTP_BUCKETS,
    );
    for route in ROUTES {
        http_duration.with_label_values(&[route]);
    }
    (http_requests, http_duration)
}

/// `wxtoken_build_info`, and the process's own series (CPU, memory, descriptors) on Linux.
fn register_process(registry: &mut Registry) {
    int_gauge(
        registry,
        "wxtoken_build_info",
        "Build information; always 1.",
        &["version"],
    )
    .with_label_values(&[env!("CARGO_PKG_VERSION")])
    .set(1);
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registers once");
}

impl Metrics {
    /// Registers every series of `mode`, and creates each per-app counter at 0 for `apps`.
    pub fn new(apps: &[String], mode: MetricsMode) -> Metrics {
        let mut registry = Registry::new();
        // Families labelled `app` are registered as part of the credential collector (below),
        // which shows only the series of running credentials; aggregate ones go straight into
        // the registry.
        let mut per_app: Vec<Box<dyn prometheus::core::Collector>> = Vec::new();
        let events = EventFamilies::register(mode, &mut registry, &mut per_app);
        let full = mode == MetricsMode::Full;
        let refresh_failures = counter(
            &mut per_app,
            "wxtoken_token_refresh_failures_total",
            "Failed token or ticket fetches of the app, whatever started them or why they failed.",
            &["app"],
        );
        let source = Arc::new(OnceLock::new());
        registry.add(Box::new(CredentialCollector::new(
            source.clone(),
            per_app,
            mode,
        )));

        register_process(&mut registry);
        let platform_events = counter(
            &mut registry,
            "wxtoken_platform_events_total",
            "Open Platform pushes received, by platform, info type and result (ok, refused, failed).",
            &["platform", "info_type", "result"],
        );
        let wecom_callbacks = counter(
            &mut registry,
            "wxtoken_wecom_callbacks_total",
            "WeCom suite callbacks received, by suite, InfoType and result (ok, refused, failed).",
            &["suite", "info_type", "result"],
        );
        let proxy = proxy::ProxyMetrics::new(&mut registry);
        let (http_requests, http_duration) = http_families(&mut registry);
        let audit_write_errors = audit::register(&mut registry);
        let messages = messages::MessageMetrics::new(&mut registry);

        let metrics = Metrics {
            inner: Arc::new(Inner {
                registry,
                mode,
                events,
                refresh_failures,
                platform_events,
                wecom_callbacks,
                http_requests,
                http_duration,
                proxy,
                audit_write_errors,
                messages,
                source,
                redis_up: OnceLock::new(),
            }),
        };
        if !full {
            // The aggregate series exist from start-up, whatever the apps, so rate() and the
            // dashboard have a baseline.
            metrics.init_app("");
            for endpoint in UPSTREAM_ENDPOINTS {
                metrics.upstream_histogram("", endpoint);
            }
        }
        for app in apps {
            metrics.init_app(app);
        }
        metrics
    }

    /// The counter of audit lines that could not be written, for the trail to increment.
    pub fn audit_write_errors(&self) -> prometheus::IntCounter {
        self.inner.audit_write_errors.clone()
    }

    /// A push from `source` (an app or platform name) ended as `result`
    /// (one of [`PUSH_RESULTS`]; `refused` is counted by the receiving side, for a push that
    /// failed its checks).
    pub fn push(&self, source: &str, result: &'static str) {
        self.inner
            .messages
            .pushes
            .with_label_values(&[source, result])
            .inc();
    }

    /// A push from `source` refused by the receiving side (signature, freshness, decryption).
    pub fn push_refused(&self, source: &str) {
        self.push(source, "refused");
    }

    /// A delivery attempt to `route` ended as `result` (one of [`DELIVERY_RESULTS`]).
    pub fn delivery(&self, route: &str, result: &'static str) {
        self.inner
            .messages
            .deliveries
            .with_label_values(&[route, result])
            .inc();
    }

    /// Creates the message series of these sources and routes at 0.
    pub fn init_messages(&self, sources: &[String], routes: &[String]) {
        let m = &self.inner.messages;
        for s in sources {
            for r in PUSH_RESULTS {
                m.pushes.with_label_values(&[s.as_str(), r]);
            }
        }
        for route in routes {
            for r in DELIVERY_RESULTS {
                m.deliveries.with_label_values(&[route.as_str(), r]);
            }
        }
    }

    /// Where scrapes read the routes' backlogs from (once, at start-up).
    pub fn read_routes_from(&self, source: impl Fn() -> Vec<ScrapedRoute> + Send + Sync + 'static) {
        if self.inner.messages.source.set(Box::new(source)).is_err() {
            tracing::warn!("a second route metrics source was ignored");
        }
    }

    /// The series set this process exports.
    pub fn mode(&self) -> MetricsMode {
        self.inner.mode
    }

    /// Where scrapes read the running credentials from. Set once, at start-up, after the apps
    /// (which need the metrics first) exist; a second source is ignored.
    pub fn read_credentials_from(
        &self,
        source: impl Fn() -> Vec<ScrapedCredential> + Send + Sync + 'static,
    ) {
        if self.inner.source.set(Box::new(source)).is_err() {
            tracing::warn!("a second metrics source was ignored");
        }
    }

    /// Where scrapes read the running platforms from (once, at start-up, when there are any).
    pub fn read_platforms_from(
        &self,
        source: impl Fn() -> Vec<ScrapedPlatform> + Send + Sync + 'static,
    ) {
        self.read_accounts_from(&platforms::PLATFORMS, Box::new(source));
    }

    /// Where scrapes read the running WeCom suites from (once, at start-up, when there are
    /// any): the same gauges as a platform's, under their own names.
    pub fn read_wecom_suites_from(
        &self,
        source: impl Fn() -> Vec<ScrapedPlatform> + Send + Sync + 'static,
    ) {
        self.read_accounts_from(&platforms::WECOM_SUITES, Box::new(source));
    }

    fn read_accounts_from(
        &self,
        names: &platforms::FamilyNames,
        source: platforms::PlatformSource,
    ) {
        let collector = platforms::PlatformCollector::new(names, source);
        if self.inner.registry.register(Box::new(collector)).is_err() {
            tracing::warn!(family = names.label, "a second metrics source was ignored");
        }
    }

    /// Creates every per-app counter at 0, so dashboards and `rate()` see no gaps. The gauges
    /// need nothing: a running credential has them by construction. In gauges mode only the
    /// failure counter is per app; the aggregate series already exist.
    pub fn init_app(&self, app: &str) {
        let m = &self.inner;
        if !app.is_empty() {
            m.refresh_failures.with_label_values(&[app]);
        }
        if m.mode == MetricsMode::Gauges && !app.is_empty() {
            return;
        }
        for t in Trigger::ALL {
            for r in ["success", "failure"] {
                m.events.refreshes.with(app, &[t.as_str(), r]);
            }
        }
        for reason in FIXED_REASONS {
            m.events.upstream_errors.with(app, &[reason]);
        }
        for o in InvalidationOutcome::ALL {
            m.events.invalidations.with(app, &[o.as_str()]);
        }
        m.events.actor_restarts.with(app, &[]);
        for op in STORE_OPS {
            m.events.store_errors.with(app, &[op]);
        }
        m.events.revocations.with(app, &[]);
        m.events.forced_refusals.with(app, &[]);
        for r in RefetchRefusal::ALL {
            m.events.refetch_refusals.with(app, &[r.as_str()]);
        }
    }

    /// Drops every per-app series of a removed credential (`shop`, `shop:jsapi_ticket`), also
    /// those with labels created on the way (an errcode `reason`, an `endpoint`). Scrapes
    /// already hide them once the app is no longer running; this frees them. Aggregate series
    /// (gauges mode) keep what the app counted into them, as counters must.
    pub fn remove_app(&self, app: &str) {
        let m = &self.inner;
        for family in [
            &m.events.refreshes,
            &m.events.upstream_errors,
            &m.events.invalidations,
            &m.events.actor_restarts,
            &m.events.store_errors,
            &m.events.revocations,
            &m.events.forced_refusals,
            &m.events.refetch_refusals,
        ] {
            family.remove_app(app);
        }
        m.events.upstream_duration.remove_app(app);
        register::remove_matching(&m.refresh_failures, "app", app);
        m.proxy.remove_app(app);
    }

    /// One call through the gateway ended with `result`; `app` is its credential's label, or
    /// empty when the call named none wxtoken knows.
    pub fn proxy_request(&self, app: &str, result: ProxyResult) {
        self.inner.proxy.request(app, result);
    }

    /// A forwarded call was repeated after WeChat rejected its token.
    pub fn proxy_retried(&self, app: &str) {
        self.inner.proxy.retry(app);
    }

    /// One attempt of a forwarded call waited `elapsed` for WeChat's answer.
    pub fn proxy_upstream(&self, elapsed: Duration) {
        self.inner.proxy.upstream(elapsed);
    }

    /// WeChat answered a forwarded call with the non-zero `errcode`.
    pub fn proxy_errcode(&self, errcode: i64) {
        self.inner.proxy.errcode(errcode);
    }

    pub fn revoked(&self, app: &str) {
        self.inner.events.revocations.with(app, &[]).inc();
    }

    pub fn forced_refresh_refused(&self, app: &str) {
        self.inner.events.forced_refusals.with(app, &[]).inc();
    }

    /// `n` reports of the current token got no refetch, for `why`.
    pub fn refetches_refused(&self, app: &str, why: RefetchRefusal, n: u64) {
        self.inner
            .events
            .refetch_refusals
            .with(app, &[why.as_str()])
            .inc_by(n);
    }

    pub fn refresh_succeeded(&self, app: &str, trigger: Trigger) {
        self.inner
            .events
            .refreshes
            .with(app, &[trigger.as_str(), "success"])
            .inc();
    }

    pub fn refresh_failed(&self, app: &str, trigger: Trigger, err: &UpstreamError) {
        let m = &self.inner;
        m.events
            .refreshes
            .with(app, &[trigger.as_str(), "failure"])
            .inc();
        m.refresh_failures.with_label_values(&[app]).inc();
        m.events
            .upstream_errors
            .with(app, &[reason_label(err)])
            .inc();
    }

    pub fn invalidation(&self, app: &str, outcome: InvalidationOutcome) {
        self.inner
            .events
            .invalidations
            .with(app, &[outcome.as_str()])
            .inc();
    }

    /// A push to a platform's event URL: `info_type` from the fixed set of
    /// `Event::kind_label` (or `unknown` when it could not be read), `result` ok, refused or
    /// failed.
    pub fn platform_event(&self, platform: &str, info_type: &str, result: &str) {
        self.inner
            .platform_events
            .with_label_values(&[platform, info_type, result])
            .inc();
    }

    /// A WeCom suite's callback (or URL check): `info_type` from the fixed set of
    /// `SuiteEvent::kind_label`, `result` ok, refused or failed.
    pub fn wecom_callback(&self, suite: &str, info_type: &str, result: &str) {
        self.inner
            .wecom_callbacks
            .with_label_values(&[suite, info_type, result])
            .inc();
    }

    pub fn actor_restarted(&self, app: &str) {
        self.inner.events.actor_restarts.with(app, &[]).inc();
    }

    pub fn store_failed(&self, app: &str, op: &'static str) {
        self.inner.events.store_errors.with(app, &[op]).inc();
    }

    /// One call to WeChat (success or failure) took `elapsed`.
    pub fn upstream_call(&self, app: &str, endpoint: &'static str, elapsed: Duration) {
        self.upstream_histogram(app, endpoint)
            .observe(elapsed.as_secs_f64());
    }

    fn upstream_histogram(&self, app: &str, endpoint: &str) -> Histogram {
        self.inner.events.upstream_duration.with(app, &[endpoint])
    }

    /// Whether the shared Redis store answers (`wxtoken_redis_up`).
    pub fn set_redis_up(&self, up: bool) {
        let gauge = self.inner.redis_up.get_or_init(|| {
            let g = prometheus::IntGauge::new(
                "wxtoken_redis_up",
                "1 when the shared Redis store answers, 0 when it does not.",
            )
            .expect("valid metric");
            self.inner
                .registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        });
        gauge.set(i64::from(up));
    }

    /// Shows `pool`'s queue depth and calls in flight at every scrape (once, at start-up: the
    /// server has one upstream pool; a second is ignored).
    pub fn watch_upstream_pool(&self, pool: Arc<UpstreamPool>) {
        let collector = pool::PoolCollector::new(pool);
        if self.inner.registry.register(Box::new(collector)).is_err() {
            tracing::warn!("a second upstream pool was ignored by the metrics");
        }
    }

    /// One answered HTTP request. `route` is a matched template or `unmatched`; `status` the
    /// three-digit code.
    pub fn http_request(&self, route: &str, status: &str, elapsed: Duration) {
        self.inner
            .http_requests
            .with_label_values(&[route, status])
            .inc();
        self.inner
            .http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// Every series in the text exposition format; the per-credential gauges are computed now.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.inner.registry.gather(), &mut buf)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::AppStatus;

    /// Lines of the text format that carry a series labelled `app="<app>"`.
    fn series_of(text: &str, app: &str) -> Vec<String> {
        let label = format!("app=\"{app}\"");
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&label))
            .map(str::to_owned)
            .collect()
    }

    fn busy(m: &Metrics, app: &str) {
        m.refresh_succeeded(app, Trigger::Scheduled);
        m.refresh_failed(
            app,
            Trigger::Invalidated,
            &UpstreamError::Api {
                errcode: 40125,
                errmsg: "invalid appsecret".into(),
            },
        );
        m.invalidation(app, InvalidationOutcome::Refreshed);
        m.actor_restarted(app);
        m.store_failed(app, "save");
        m.upstream_call(app, "ticket", Duration::from_millis(20));
        m.revoked(app);
        m.forced_refresh_refused(app);
        m.refetches_refused(app, RefetchRefusal::TokenAlive, 2);
    }

    #[test]
    fn remove_app_drops_every_per_app_series_of_that_label_only() {
        let apps = ["shop".to_owned(), "shop:jsapi_ticket".to_owned()];
        let m = Metrics::new(&apps, MetricsMode::Full);
        for app in &apps {
            busy(&m, app);
        }
        let before = m.render();
        assert!(before.contains(r#"reason="40125""#));
        assert!(before.contains(r#"endpoint="ticket""#));
        // Every per-app family has series for both labels.
        assert_eq!(
            series_of(&before, "shop").len(),
            series_of(&before, "shop:jsapi_ticket").len()
        );

        m.remove_app("shop:jsapi_ticket");
        let after = m.render();
        assert_eq!(series_of(&after, "shop:jsapi_ticket"), Vec::<String>::new());
        assert_eq!(series_of(&after, "shop"), series_of(&before, "shop"));
    }

    #[test]
    fn scrapes_show_only_running_credentials() {
        let m = Metrics::new(&["shop".to_owned(), "blog".to_owned()], MetricsMode::Full);
        m.read_credentials_from(|| {
            vec![ScrapedCredential {
                label: "blog".into(),
                status: Arc::new(AppStatus::default()),
                daily_quota: 2000,
                gauges: true,
            }]
        });
        // A retiring actor counting one more event after its app was removed.
        busy(&m, "shop");
        let text = m.render();
        assert_eq!(series_of(&text, "shop"), Vec::<String>::new());
        let blog = series_of(&text, "blog");
        for family in [
            "wxtoken_token_refreshes_total",
            "wxtoken_store_errors_total",
            "wxtoken_token_refresh_due_timestamp_seconds",
            "wxtoken_quota_daily_limit",
        ] {
            assert!(blog.iter().any(|l| l.starts_with(family)), "{family}");
        }
        assert!(text.contains("wxtoken_build_info"));
    }

    /// The family names of the text format, and whether each carries `app`.
    fn families(text: &str) -> std::collections::BTreeMap<String, bool> {
        let mut out = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|_| name.starts_with("wxtoken_upstream_request_duration"))
                .unwrap_or(name);
            let with_app = line.contains("app=\"");
            *out.entry(name.to_owned()).or_insert(false) |= with_app;
        }
        out
    }

    /// Scrapes list the apps in the returned list, which the test may change.
    fn running(m: &Metrics, apps: &[&'static str]) -> Arc<std::sync::Mutex<Vec<&'static str>>> {
        let list = Arc::new(std::sync::Mutex::new(apps.to_vec()));
        let listed = list.clone();
        m.read_credentials_from(move || {
            listed
                .lock()
                .unwrap()
                .iter()
                .map(|a| ScrapedCredential {
                    label: (*a).into(),
                    status: Arc::new(AppStatus::default()),
                    daily_quota: 2000,
                    gauges: true,
                })
                .collect()
        });
        list
    }

    /// The names of the families in `text` that carry an `app` label.
    fn per_app_families(text: &str) -> Vec<String> {
        families(text)
            .into_iter()
            .filter(|(_, app)| *app)
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn gauges_mode_keeps_five_series_per_app_and_counts_the_rest_in_aggregates() {
        let apps = ["shop".to_owned(), "blog".to_owned()];
        let m = Metrics::new(&apps, MetricsMode::Gauges);
        let listed = running(&m, &["shop", "blog"]);
        for app in &apps {
            busy(&m, app);
        }
        let text = m.render();
        let per_app = per_app_families(&text);
        assert_eq!(
            per_app,
            [
                "wxtoken_token_expiry_timestamp_seconds",
                "wxtoken_token_refresh_due_timestamp_seconds",
                "wxtoken_token_refresh_failures_total",
                "wxtoken_token_seconds_left",
                "wxtoken_upstream_config_error",
            ]
        );
        assert_eq!(series_of(&text, "shop").len(), 5);
        // Both apps' events land in one series without `app`.
        let get = |s: &str| text.lines().find_map(|l| l.strip_prefix(s)).map(str::trim);
        for (series, count) in [
            (
                r#"wxtoken_token_refreshes_total{result="failure",trigger="invalidated"} "#,
                "2",
            ),
            (r#"wxtoken_upstream_errors_total{reason="40125"} "#, "2"),
            (
                r#"wxtoken_upstream_request_duration_seconds_count{endpoint="ticket"} "#,
                "2",
            ),
            (
                r#"wxtoken_upstream_request_duration_seconds_count{endpoint="token"} "#,
                "0",
            ),
            (r#"wxtoken_revocations_total "#, "2"),
            (
                r#"wxtoken_refetches_refused_total{reason="token_alive"} "#,
                "4",
            ),
            (
                r#"wxtoken_refetches_refused_total{reason="hourly_cap"} "#,
                "0",
            ),
            (r#"wxtoken_token_refresh_failures_total{app="shop"} "#, "1"),
        ] {
            assert_eq!(get(series), Some(count), "{series}");
        }
        for state in CredentialState::ALL {
            let series = format!("wxtoken_credentials{{state=\"{}\"}} ", state.as_str());
            assert!(get(&series).is_some(), "{series}");
        }
        assert_eq!(get(r#"wxtoken_credentials{state="no_token"} "#), Some("2"));

        // A removed app leaves no series; the aggregates keep what it counted.
        listed.lock().unwrap().retain(|a| *a != "blog");
        m.remove_app("blog");
        let after = m.render();
        assert_eq!(series_of(&after, "blog"), Vec::<String>::new());
        assert!(after.contains(r#"wxtoken_revocations_total 2"#));
    }

    #[test]
    fn full_mode_is_todays_set_plus_the_failure_counter_and_the_aggregates() {
        let m = Metrics::new(&["shop".to_owned()], MetricsMode::Full);
        running(&m, &["shop"]);
        busy(&m, "shop");
        let text = m.render();
        let per_app = per_app_families(&text);
        assert_eq!(per_app.len(), 18, "{per_app:?}");
        for gauge in [
            "wxtoken_token_age_seconds",
            "wxtoken_token_generation",
            "wxtoken_quota_used_today",
            "wxtoken_quota_daily_limit",
            "wxtoken_token_refreshes_total",
            "wxtoken_upstream_request_duration_seconds",
            "wxtoken_token_refresh_failures_total",
        ] {
            assert!(per_app.iter().any(|f| f == gauge), "{gauge}");
        }
        let fams = families(&text);
        assert_eq!(fams.get("wxtoken_credentials"), Some(&false));
        assert_eq!(fams.get("wxtoken_quota_used_ratio_max"), Some(&false));
        // No event family has an aggregate twin in full mode.
        assert!(!text
            .lines()
            .any(|l| l.starts_with("wxtoken_revocations_total ")));
    }

    #[test]
    fn unknown_errcodes_are_counted_as_other_in_both_modes() {
        for mode in [MetricsMode::Full, MetricsMode::Gauges] {
            let m = Metrics::new(&["shop".to_owned()], mode);
            for errcode in [99_999, 12_345, 45_009] {
                m.refresh_failed(
                    "shop",
                    Trigger::Scheduled,
                    &UpstreamError::Api {
                        errcode,
                        errmsg: "x".into(),
                    },
                );
            }
            let text = m.render();
            let reasons: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("wxtoken_upstream_errors_total{") && !l.ends_with(" 0"))
                .collect();
            assert_eq!(reasons.len(), 2, "{mode:?}: {reasons:?}");
            assert!(reasons
                .iter()
                .any(|l| l.contains(r#"reason="other""#) && l.ends_with(" 2")));
            assert!(reasons.iter().any(|l| l.contains(r#"reason="45009""#)));
            assert!(!text.contains("99999") && !text.contains("12345"));
        }
    }
}
