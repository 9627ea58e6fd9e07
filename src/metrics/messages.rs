//! The message hub's series: pushes by source and result, deliveries by route and result, and
//! each route's backlog gauges, read at scrape from the latest figures the hub published (it
//! reads them from the store every few seconds; a scrape never waits for the store).

use std::sync::{Arc, OnceLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::register::counter;

/// `result` of `wxtoken_pushes_total`.
pub const PUSH_RESULTS: [&str; 4] = ["taken", "duplicate", "unmatched", "refused"];
/// `result` of `wxtoken_deliveries_total`: made (2xx), an attempt failed (retried later), given
/// up (`max_age_secs`), made by a reply-mode attempt whose body went to WeChat, a dead one
/// forgotten after `dead_retention_secs`, or one an admin discarded.
pub const DELIVERY_RESULTS: [&str; 6] = [
    "delivered",
    "failed",
    "dead",
    "reply",
    "purged",
    "discarded",
];

/// A route's backlog as a scrape shows it.
#[derive(Clone, Debug, Default)]
pub struct ScrapedRoute {
    pub route: String,
    pub backlog: u64,
    /// Seconds since the oldest pending delivery's push was received; 0 with none pending.
    pub oldest_seconds: f64,
    pub dead: u64,
}

pub type RouteSource = Box<dyn Fn() -> Vec<ScrapedRoute> + Send + Sync>;

pub(super) struct MessageMetrics {
    pub(super) pushes: IntCounterVec,
    pub(super) deliveries: IntCounterVec,
    pub(super) source: Arc<OnceLock<RouteSource>>,
}

impl MessageMetrics {
    pub(super) fn new(registry: &mut Registry) -> MessageMetrics {
        let pushes = counter(
            registry,
            "wxtoken_pushes_total",
            "Message and event pushes from WeChat, by source (app or platform name) and result (taken, duplicate, unmatched, refused).",
            &["source", "result"],
        );
        let deliveries = counter(
            registry,
            "wxtoken_deliveries_total",
            "Delivery attempts to [[routes]] receivers, by route and result (delivered, failed, dead, reply, purged, discarded).",
            &["route", "result"],
        );
        let source = Arc::new(OnceLock::new());
        super::register::Families::add(registry, Box::new(RouteCollector::new(source.clone())));
        MessageMetrics {
            pushes,
            deliveries,
            source,
        }
    }
}

/// The backlog gauges, rebuilt from the source at each scrape.
struct RouteCollector {
    source: Arc<OnceLock<RouteSource>>,
    backlog: IntGaugeVec,
    oldest: GaugeVec,
    dead: IntGaugeVec,
    descs: Vec<Desc>,
}

impl RouteCollector {
    fn new(source: Arc<OnceLock<RouteSource>>) -> RouteCollector {
        let backlog = IntGaugeVec::new(
            Opts::new(
                "wxtoken_delivery_backlog",
                "Deliveries waiting for the route's receiver (pending, in an attempt or its backoff).",
            ),
            &["route"],
        )
        .expect("valid metric");
        let oldest = GaugeVec::new(
            Opts::new(
                "wxtoken_delivery_oldest_seconds",
                "Seconds since the push of the route's oldest pending delivery was received (0 when none is pending).",
            ),
            &["route"],
        )
        .expect("valid metric");
        let dead = IntGaugeVec::new(
            Opts::new(
                "wxtoken_dead_deliveries",
                "Deliveries given up after max_age_secs, kept until an admin retries them.",
            ),
            &["route"],
        )
        .expect("valid metric");
        let descs = backlog
            .desc()
            .into_iter()
            .chain(oldest.desc())
            .chain(dead.desc())
            .cloned()
            .collect();
        RouteCollector {
            source,
            backlog,
            oldest,
            dead,
            descs,
        }
    }
}

impl Collector for RouteCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(source) = self.source.get() else {
            return Vec::new();
        };
        self.backlog.reset();
        self.oldest.reset();
        self.dead.reset();
        for r in source() {
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.backlog
                .with_label_values(&[&r.route])
                .set(n(r.backlog));
            self.oldest
                .with_label_values(&[&r.route])
                .set(r.oldest_seconds);
            self.dead.with_label_values(&[&r.route]).set(n(r.dead));
        }
        let mut out = self.backlog.collect();
        out.extend(self.oldest.collect());
        out.extend(self.dead.collect());
        out
    }
}
