//! Prometheus metrics: one `Metrics` value owns every series; callers use domain verbs.
//!
//! Label values come from fixed sets or from the configured app names, never from free text.
//! Clock-dependent gauges (seconds left, expiry) are set from the published app status at
//! scrape time, so they are exact whenever Prometheus looks.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::token::AppStatus;
use crate::upstream::UpstreamError;

/// What started a refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Scheduled,
    Invalidated,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Startup, Trigger::Scheduled, Trigger::Invalidated];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Scheduled => "scheduled",
            Trigger::Invalidated => "invalidated",
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
}

impl InvalidationOutcome {
    pub const ALL: [InvalidationOutcome; 4] = [
        InvalidationOutcome::Refreshed,
        InvalidationOutcome::Stale,
        InvalidationOutcome::TooSoon,
        InvalidationOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidationOutcome::Refreshed => "refreshed",
            InvalidationOutcome::Stale => "stale",
            InvalidationOutcome::TooSoon => "too_soon",
            InvalidationOutcome::Failed => "failed",
        }
    }
}

/// Upstream error reasons that are not errcodes; created at 0 so rate() has a baseline.
const FIXED_REASONS: [&str; 4] = ["timeout", "connect", "http", "decode"];

struct Inner {
    registry: Registry,
    refreshes: IntCounterVec,
    upstream_errors: IntCounterVec,
    seconds_left: GaugeVec,
    expiry_timestamp: GaugeVec,
    invalidations: IntCounterVec,
    actor_restarts: IntCounterVec,
    store_errors: IntCounterVec,
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

        for c in [
            Box::new(refreshes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_errors.clone()),
            Box::new(seconds_left.clone()),
            Box::new(expiry_timestamp.clone()),
            Box::new(invalidations.clone()),
            Box::new(actor_restarts.clone()),
            Box::new(store_errors.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registers once");

        for app in apps {
            for t in Trigger::ALL {
                for r in ["success", "failure"] {
                    refreshes.with_label_values(&[app, t.as_str(), r]);
                }
            }
            for reason in FIXED_REASONS {
                upstream_errors.with_label_values(&[app, reason]);
            }
            seconds_left.with_label_values(&[app]);
            expiry_timestamp.with_label_values(&[app]);
            for o in InvalidationOutcome::ALL {
                invalidations.with_label_values(&[app, o.as_str()]);
            }
            actor_restarts.with_label_values(&[app]);
            for op in ["load", "save"] {
                store_errors.with_label_values(&[app, op]);
            }
        }

        Metrics {
            inner: Arc::new(Inner {
                registry,
                refreshes,
                upstream_errors,
                seconds_left,
                expiry_timestamp,
                invalidations,
                actor_restarts,
                store_errors,
            }),
        }
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
