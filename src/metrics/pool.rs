//! The upstream pool's gauges: `wxtoken_upstream_queue_depth` and `wxtoken_upstream_in_flight`,
//! read from the pool's counters at every scrape, so they can never go stale.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::IntGauge;

use crate::upstream::UpstreamPool;

pub struct PoolCollector {
    pool: Arc<UpstreamPool>,
    queue_depth: IntGauge,
    in_flight: IntGauge,
    descs: Vec<Desc>,
}

impl PoolCollector {
    pub fn new(pool: Arc<UpstreamPool>) -> PoolCollector {
        let queue_depth = IntGauge::new(
            "wxtoken_upstream_queue_depth",
            "Calls to WeChat waiting for a slot of the upstream pool.",
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "wxtoken_upstream_in_flight",
            "Calls to WeChat sent and not yet answered.",
        )
        .expect("valid metric");
        let descs = queue_depth
            .desc()
            .into_iter()
            .chain(in_flight.desc())
            .cloned()
            .collect();
        PoolCollector {
            pool,
            queue_depth,
            in_flight,
            descs,
        }
    }
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.queue_depth.set(as_i64(self.pool.queue_depth()));
        self.in_flight.set(as_i64(self.pool.in_flight()));
        let mut out = self.queue_depth.collect();
        out.extend(self.in_flight.collect());
        out
    }
}
