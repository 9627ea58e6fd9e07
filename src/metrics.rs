//! Prometheus metrics: one `Metrics` value owns every series; callers use domain verbs.
//!
//! Label values come from fixed sets or from the configured app names, never from free text.
//! Clock-dependent gauges (seconds left, expiry) are set from the published app status at
//! scrape time, so they are exact whenever Prometheus looks.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::token::AppStatus;
use crate::upstream::UpstreamError;

/// What started a refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Scheduled,
    Invalidated,
    /// An admin revoked the token.
    Revoked,
}

impl Trigger {
    pub const ALL: [Trigger; 4] = [
        Trigger::Startup,
        Trigger::Scheduled,
        Trigger::Invalidated,
        Trigger::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Scheduled => "scheduled",
            Trigger::Invalidated => "invalidated",
            Trigger::Revoked => "revoked",
        }
    }
}

/// How an invalidation request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidationOutcome {
    /// The reported token was current; a new one was fetched and returned.
    Refreshed,
    /// The reported token was already replaced; the current one was returned, no fetch.
    Stale,
    /// The reported token was fetched less than `min_interval` ago; returned as is, no fetch.
    TooSoon,
    /// No new token within the wait limit; the still-valid one (or 503) was returned.
    Failed,
    /// Stable grant: WeChat's limits on forced refreshes were used up; returned as is.
    Refused,
}

impl InvalidationOutcome {
    pub const ALL: [InvalidationOutcome; 5] = [
        InvalidationOutcome::Refreshed,
        InvalidationOutcome::Stale,
        InvalidationOutcome::TooSoon,
        InvalidationOutcome::Failed,
        InvalidationOutcome::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidationOutcome::Refreshed => "refreshed",
            InvalidationOutcome::Stale => "stale",
            InvalidationOutcome::TooSoon => "too_soon",
            InvalidationOutcome::Failed => "failed",
            InvalidationOutcome::Refused => "refused",
        }
    }
}

/// Upstream error reasons that are not errcodes; created at 0 so rate() has a baseline.
const FIXED_REASONS: [&str; 4] = ["timeout", "connect", "http", "decode"];

/// Routes of the HTTP API as matched templates (label `route`); anything else is `unmatched`.
pub const ROUTES: [&str; 11] = [
    "/v1/apps/{name}/token",
    "/v1/apps/{name}/token/invalidate",
    "/v1/apps/{name}/ticket/{type}",
    "/v1/apps/{name}/jssdk/signature",
    "/v1/apps/{name}/revoke",
    "/v1/admin/reload",
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/healthz",
    "/readyz",
    "/metrics",
];

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
    seconds_left: GaugeVec,
    expiry_timestamp: GaugeVec,
    invalidations: IntCounterVec,
    actor_restarts: IntCounterVec,
    store_errors: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    upstream_duration: HistogramVec,
    config_error: IntGaugeVec,
    token_age: GaugeVec,
    refresh_due: GaugeVec,
    token_generation: IntGaugeVec,
    quota_used: IntGaugeVec,
    quota_limit: IntGaugeVec,
    /// Registered only when the Redis store is used, so a single instance shows no Redis.
    redis_up: OnceLock<prometheus::IntGauge>,
    revocations: IntCounterVec,
    forced_refusals: IntCounterVec,
}

/// Cheap to clone; every clone updates the same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Metrics {
    /// Registers every series, and creates each per-app series at 0 for `apps`.
    pub fn new(apps: &[String]) -> Metrics {
        let registry = Registry::new();
        let refreshes = IntCounterVec::new(
            Opts::new(
                "wxtoken_token_refreshes_total",
                "Token fetches from WeChat, by what started them and how they ended.",
            ),
            &["app", "trigger", "result"],
        )
        .expect("valid metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "wxtoken_upstream_errors_total",
                "Failed calls to WeChat: reason is the errcode, or timeout/connect/http/decode.",
            ),
            &["app", "reason"],
        )
        .expect("valid metric");
        let seconds_left = GaugeVec::new(
            Opts::new(
                "wxtoken_token_seconds_left",
                "Seconds until the served token expires; 0 when there is none.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let expiry_timestamp = GaugeVec::new(
            Opts::new(
                "wxtoken_token_expiry_timestamp_seconds",
                "Unix time at which the served token expires; 0 when there is none.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let invalidations = IntCounterVec::new(
            Opts::new(
                "wxtoken_invalidations_total",
                "Invalidation requests from business servers, by outcome.",
            ),
            &["app", "outcome"],
        )
        .expect("valid metric");
        let actor_restarts = IntCounterVec::new(
            Opts::new(
                "wxtoken_actor_restarts_total",
                "Restarts of an app's token actor by its supervisor.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let store_errors = IntCounterVec::new(
            Opts::new(
                "wxtoken_store_errors_total",
                "Failed reads or writes of the token store.",
            ),
            &["app", "op"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("wxtoken_build_info", "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let http_requests = IntCounterVec::new(
            Opts::new(
                "wxtoken_http_requests_total",
                "HTTP requests answered, by route template and status code.",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "wxtoken_http_request_duration_seconds",
                "Time to answer an HTTP request, by route template.",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "wxtoken_upstream_request_duration_seconds",
                "Duration of calls to WeChat, failed ones included, by endpoint.",
            )
            .buckets(UPSTREAM_BUCKETS.to_vec()),
            &["app", "endpoint"],
        )
        .expect("valid metric");
        let config_error = IntGaugeVec::new(
            Opts::new(
                "wxtoken_upstream_config_error",
                "1 while the last fetch failed with a configuration error (wrong secret, IP whitelist...), else 0.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let token_age = GaugeVec::new(
            Opts::new(
                "wxtoken_token_age_seconds",
                "Seconds since the served token was fetched; 0 when there is none.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let refresh_due = GaugeVec::new(
            Opts::new(
                "wxtoken_token_refresh_due_timestamp_seconds",
                "Unix time at which the served token is due for its proactive refresh; 0 when there is no token. Past due means refreshing is failing.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let token_generation = IntGaugeVec::new(
            Opts::new(
                "wxtoken_token_generation",
                "Generation of the served token: goes up by one with every fetch.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let quota_used = IntGaugeVec::new(
            Opts::new(
                "wxtoken_quota_used_today",
                "Calls to WeChat's token endpoint answered today (days start at 00:00 UTC+8).",
            ),
            &["app"],
        )
        .expect("valid metric");
        let quota_limit = IntGaugeVec::new(
            Opts::new(
                "wxtoken_quota_daily_limit",
                "Daily limit of token calls for the app (configured, WeChat's default 2000).",
            ),
            &["app"],
        )
        .expect("valid metric");

        let revocations = IntCounterVec::new(
            Opts::new(
                "wxtoken_revocations_total",
                "Token revocations requested by admins.",
            ),
            &["app"],
        )
        .expect("valid metric");
        let forced_refusals = IntCounterVec::new(
            Opts::new(
                "wxtoken_forced_refresh_refusals_total",
                "Stable grant: invalidations answered without a forced refresh because WeChat's limits (20 a day, 30 s apart) were used up.",
            ),
            &["app"],
        )
        .expect("valid metric");
        for c in [
            Box::new(refreshes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(revocations.clone()),
            Box::new(forced_refusals.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(seconds_left.clone()),
            Box::new(expiry_timestamp.clone()),
            Box::new(invalidations.clone()),
            Box::new(actor_restarts.clone()),
            Box::new(store_errors.clone()),
            Box::new(build_info),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(config_error.clone()),
            Box::new(token_age.clone()),
            Box::new(refresh_due.clone()),
            Box::new(token_generation.clone()),
            Box::new(quota_used.clone()),
            Box::new(quota_limit.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registers once");

        for route in ROUTES {
            http_duration.with_label_values(&[route]);
        }

        let metrics = Metrics {
            inner: Arc::new(Inner {
                registry,
                refreshes,
                upstream_errors,
                seconds_left,
                expiry_timestamp,
                invalidations,
                actor_restarts,
                store_errors,
                http_requests,
                http_duration,
                upstream_duration,
                config_error,
                token_age,
                refresh_due,
                token_generation,
                quota_used,
                quota_limit,
                redis_up: OnceLock::new(),
                revocations,
                forced_refusals,
            }),
        };
        for app in apps {
            metrics.init_app(app);
        }
        metrics
    }

    /// Creates every per-app series at 0, so dashboards and alerts see no gaps.
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
        m.seconds_left.with_label_values(&[app]);
        m.expiry_timestamp.with_label_values(&[app]);
        for o in InvalidationOutcome::ALL {
            m.invalidations.with_label_values(&[app, o.as_str()]);
        }
        m.actor_restarts.with_label_values(&[app]);
        for op in ["load", "save", "lock"] {
            m.store_errors.with_label_values(&[app, op]);
        }
        m.config_error.with_label_values(&[app]);
        m.token_age.with_label_values(&[app]);
        m.refresh_due.with_label_values(&[app]);
        m.token_generation.with_label_values(&[app]);
        m.quota_used.with_label_values(&[app]);
        m.quota_limit.with_label_values(&[app]);
        m.revocations.with_label_values(&[app]);
        m.forced_refusals.with_label_values(&[app]);
    }

    /// Drops every per-app series of a removed app.
    pub fn remove_app(&self, app: &str) {
        let m = &self.inner;
        for vec in [&m.seconds_left, &m.expiry_timestamp, &m.token_age] {
            let _ = vec.remove_label_values(&[app]);
        }
        for vec in [
            &m.config_error,
            &m.token_generation,
            &m.quota_used,
            &m.quota_limit,
        ] {
            let _ = vec.remove_label_values(&[app]);
        }
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

    /// Whether the last fetch failed for a reason only a configuration change can cure.
    pub fn config_error(&self, app: &str, is_config_error: bool) {
        self.inner
            .config_error
            .with_label_values(&[app])
            .set(i64::from(is_config_error));
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

    pub fn set_quota_limit(&self, app: &str, limit: u64) {
        self.inner
            .quota_limit
            .with_label_values(&[app])
            .set(limit as i64);
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

    /// Sets the clock-dependent gauges from each app's published status, then renders the text
    /// exposition format.
    pub fn render<'a>(&self, apps: impl Iterator<Item = (&'a str, Arc<AppStatus>)>) -> String {
        let now = SystemTime::now();
        for (app, status) in apps {
            let (left, expiry) = match &status.token {
                Some(t) => (
                    t.remaining(now).as_secs_f64().floor(),
                    t.expires_at
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64()
                        .floor(),
                ),
                None => (0.0, 0.0),
            };
            self.inner.seconds_left.with_label_values(&[app]).set(left);
            let (age, generation) = match &status.token {
                Some(t) => (t.age(now).as_secs_f64().floor(), t.generation as i64),
                None => (0.0, 0),
            };
            self.inner.token_age.with_label_values(&[app]).set(age);
            let due = match (&status.token, status.refresh_due) {
                (Some(_), Some(due)) => due
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64()
                    .floor(),
                _ => 0.0,
            };
            self.inner.refresh_due.with_label_values(&[app]).set(due);
            self.inner
                .token_generation
                .with_label_values(&[app])
                .set(generation);
            self.inner
                .quota_used
                .with_label_values(&[app])
                .set(status.quota.used_on(now) as i64);
            self.inner
                .expiry_timestamp
                .with_label_values(&[app])
                .set(expiry);
        }
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
