//! Prometheus metrics: one `Metrics` value owns every series; callers use domain verbs.
//!
//! Label values come from fixed sets or from the configured app names, never from free text.
//! The per-credential gauges (seconds left, expiry, age, refresh due, generation, quota,
//! configuration error) are not set by anyone: `credentials.rs` computes them at scrape from
//! the published statuses. Counters are updated by the verbs below.

mod credentials;
mod labels;
mod pool;
mod register;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{Encoder, HistogramVec, IntCounterVec, Registry, TextEncoder};

use crate::upstream::{UpstreamError, UpstreamPool};
pub use credentials::{gauge_families, CredentialCollector, ScrapedCredential, StatusSource};
pub use labels::{InvalidationOutcome, Trigger, FIXED_REASONS, ROUTES, STORE_OPS};
use register::{counter, histogram, int_gauge, remove_matching, Families as _};

/// Served from memory, most answers take well under a millisecond; the upper buckets catch
/// requests that waited for a fetch (up to the 5 s wait limit).
const HTTP_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0,
];

/// WeChat usually answers in tens to hundreds of milliseconds; timeouts land in the top bucket.
const UPSTREAM_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

struct Inner {
    registry: Registry,
    refreshes: IntCounterVec,
    upstream_errors: IntCounterVec,
    invalidations: IntCounterVec,
    actor_restarts: IntCounterVec,
    store_errors: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    upstream_duration: HistogramVec,
    revocations: IntCounterVec,
    forced_refusals: IntCounterVec,
    /// Where the credential collector reads the running credentials from.
    source: Arc<OnceLock<StatusSource>>,
    /// Registered only when the Redis store is used, so a single instance shows no Redis.
    redis_up: OnceLock<prometheus::IntGauge>,
    /// The process's one upstream pool, whose gauges are read at scrape.
    upstream_pool: OnceLock<Arc<UpstreamPool>>,
}

/// Cheap to clone; every clone updates the same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Metrics {
    /// Registers every series, and creates each per-app counter at 0 for `apps`.
    pub fn new(apps: &[String]) -> Metrics {
        let mut registry = Registry::new();
        // Per-app families are registered as part of the credential collector (below), which
        // shows only the series of running credentials.
        let mut per_app: Vec<Box<dyn prometheus::core::Collector>> = Vec::new();
        let refreshes = counter(
            &mut per_app,
            "wxtoken_token_refreshes_total",
            "Token fetches from WeChat, by what started them and how they ended.",
            &["app", "trigger", "result"],
        );
        let upstream_errors = counter(
            &mut per_app,
            "wxtoken_upstream_errors_total",
            "Failed calls to WeChat: reason is the errcode, or timeout/connect/http/decode.",
            &["app", "reason"],
        );
        let invalidations = counter(
            &mut per_app,
            "wxtoken_invalidations_total",
            "Invalidation requests from business servers, by outcome.",
            &["app", "outcome"],
        );
        let actor_restarts = counter(
            &mut per_app,
            "wxtoken_actor_restarts_total",
            "Restarts of an app's token actor by its supervisor.",
            &["app"],
        );
        let store_errors = counter(
            &mut per_app,
            "wxtoken_store_errors_total",
            "Failed reads or writes of the token store.",
            &["app", "op"],
        );
        let upstream_duration = histogram(
            &mut per_app,
            "wxtoken_upstream_request_duration_seconds",
            "Duration of calls to WeChat, failed ones included, by endpoint.",
            &["app", "endpoint"],
            &UPSTREAM_BUCKETS,
        );
        let revocations = counter(
            &mut per_app,
            "wxtoken_revocations_total",
            "Token revocations requested by admins.",
            &["app"],
        );
        let forced_refusals = counter(
            &mut per_app,
            "wxtoken_forced_refresh_refusals_total",
            "Stable grant: invalidations answered without a forced refresh because WeChat's limits (20 a day, 30 s apart) were used up.",
            &["app"],
        );
        let source = Arc::new(OnceLock::new());
        registry.add(Box::new(CredentialCollector::new(source.clone(), per_app)));

        int_gauge(
            &mut registry,
            "wxtoken_build_info",
            "Build information; always 1.",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        let http_requests = counter(
            &mut registry,
            "wxtoken_http_requests_total",
            "HTTP requests answered, by route template and status code.",
            &["route", "status"],
        );
        let http_duration = histogram(
            &mut registry,
            "wxtoken_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            &["route"],
            &HTTP_BUCKETS,
        );
        for route in ROUTES {
            http_duration.with_label_values(&[route]);
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registers once");

        let metrics = Metrics {
            inner: Arc::new(Inner {
                registry,
                refreshes,
                upstream_errors,
                invalidations,
                actor_restarts,
                store_errors,
                http_requests,
                http_duration,
                upstream_duration,
                revocations,
                forced_refusals,
                source,
                redis_up: OnceLock::new(),
                upstream_pool: OnceLock::new(),
            }),
        };
        for app in apps {
            metrics.init_app(app);
        }
        metrics
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

    /// Creates every per-app counter at 0, so dashboards and `rate()` see no gaps. The gauges
    /// need nothing: a running credential has them by construction.
    pub fn init_app(&self, app: &str) {
        let m = &self.inner;
        for t in Trigger::ALL {
            for r in ["success", "failure"] {
                m.refreshes.with_label_values(&[app, t.as_str(), r]);
            }
        }
        for reason in FIXED_REASONS {
            m.upstream_errors.with_label_values(&[app, reason]);
        }
        for o in InvalidationOutcome::ALL {
            m.invalidations.with_label_values(&[app, o.as_str()]);
        }
        m.actor_restarts.with_label_values(&[app]);
        for op in STORE_OPS {
            m.store_errors.with_label_values(&[app, op]);
        }
        m.revocations.with_label_values(&[app]);
        m.forced_refusals.with_label_values(&[app]);
    }

    /// Drops every per-app series of a removed credential (`shop`, `shop:jsapi_ticket`), also
    /// those with labels created on the way (an errcode `reason`, an `endpoint`). Scrapes
    /// already hide them once the app is no longer running; this frees them.
    pub fn remove_app(&self, app: &str) {
        let m = &self.inner;
        for vec in [
            &m.refreshes,
            &m.upstream_errors,
            &m.invalidations,
            &m.actor_restarts,
            &m.store_errors,
            &m.revocations,
            &m.forced_refusals,
        ] {
            remove_matching(vec, "app", app);
        }
        remove_matching(&m.upstream_duration, "app", app);
    }

    pub fn revoked(&self, app: &str) {
        self.inner.revocations.with_label_values(&[app]).inc();
    }

    pub fn forced_refresh_refused(&self, app: &str) {
        self.inner.forced_refusals.with_label_values(&[app]).inc();
    }

    pub fn refresh_succeeded(&self, app: &str, trigger: Trigger) {
        self.inner
            .refreshes
            .with_label_values(&[app, trigger.as_str(), "success"])
            .inc();
    }

    pub fn refresh_failed(&self, app: &str, trigger: Trigger, err: &UpstreamError) {
        self.inner
            .refreshes
            .with_label_values(&[app, trigger.as_str(), "failure"])
            .inc();
        self.inner
            .upstream_errors
            .with_label_values(&[app, &err.reason()])
            .inc();
    }

    pub fn invalidation(&self, app: &str, outcome: InvalidationOutcome) {
        self.inner
            .invalidations
            .with_label_values(&[app, outcome.as_str()])
            .inc();
    }

    pub fn actor_restarted(&self, app: &str) {
        self.inner.actor_restarts.with_label_values(&[app]).inc();
    }

    pub fn store_failed(&self, app: &str, op: &'static str) {
        self.inner.store_errors.with_label_values(&[app, op]).inc();
    }

    /// One call to WeChat (success or failure) took `elapsed`.
    pub fn upstream_call(&self, app: &str, endpoint: &'static str, elapsed: Duration) {
        self.inner
            .upstream_duration
            .with_label_values(&[app, endpoint])
            .observe(elapsed.as_secs_f64());
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

    /// The upstream pool every client of this server shares: built by the first client that
    /// asks (from the settings all of them share), its gauges registered with it. Metrics is
    /// the one value per server that every actor already gets, so no new plumbing is needed.
    pub fn upstream_pool(&self, build: impl FnOnce() -> Arc<UpstreamPool>) -> Arc<UpstreamPool> {
        self.inner
            .upstream_pool
            .get_or_init(|| {
                let pool = build();
                self.inner
                    .registry
                    .register(Box::new(pool::PoolCollector::new(pool.clone())))
                    .expect("registered once");
                pool
            })
            .clone()
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
    use crate::token::AppStatus;

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
    }

    #[test]
    fn remove_app_drops_every_per_app_series_of_that_label_only() {
        let apps = ["shop".to_owned(), "shop:jsapi_ticket".to_owned()];
        let m = Metrics::new(&apps);
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
        let m = Metrics::new(&["shop".to_owned(), "blog".to_owned()]);
        m.read_credentials_from(|| {
            vec![ScrapedCredential {
                label: "blog".into(),
                status: Arc::new(AppStatus::default()),
                daily_quota: 2000,
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
}
