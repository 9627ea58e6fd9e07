//! Creating a metric family and registering it in one call, so a family is declared in one
//! line and a name clash fails at start-up, not at the first scrape.

use std::collections::HashMap;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Where a new family goes: the registry itself, or a list that a collector of its own (the
/// credential collector) registers as a whole.
pub trait Families {
    fn add(&mut self, family: Box<dyn Collector>);
}

impl Families for Registry {
    /// The names are constants of this crate, so a clash is a programming error that every test
    /// finds, never something outside input can cause.
    fn add(&mut self, family: Box<dyn Collector>) {
        self.register(family)
            .expect("metric names are unique and valid");
    }
}

impl Families for Vec<Box<dyn Collector>> {
    fn add(&mut self, family: Box<dyn Collector>) {
        self.push(family);
    }
}

/// A counter family, added to `to`.
pub fn counter(to: &mut impl Families, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    to.add(Box::new(vec.clone()));
    vec
}

/// An integer gauge family, added to `to`.
pub fn int_gauge(to: &mut impl Families, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    to.add(Box::new(vec.clone()));
    vec
}

/// A histogram family with the given bucket bounds, added to `to`.
pub fn histogram(
    to: &mut impl Families,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let vec = HistogramVec::new(opts, labels).expect("valid metric");
    to.add(Box::new(vec.clone()));
    vec
}

/// Drops every series of `vec` whose label `name` is `value`, whatever its other labels (an
/// errcode `reason`, an `endpoint`): the crate can only remove exact label sets, so the present
/// ones are listed first.
pub fn remove_matching<T: MetricVecBuilder>(vec: &MetricVec<T>, name: &str, value: &str) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels = metric.get_label();
            if labels
                .iter()
                .any(|l| l.name() == name && l.value() == value)
            {
                let by_name: HashMap<&str, &str> =
                    labels.iter().map(|l| (l.name(), l.value())).collect();
                // Already gone is fine: a concurrent removal got there first.
                let _ = vec.remove(&by_name);
            }
        }
    }
}
