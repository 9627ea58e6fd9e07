//! An event family (counter or histogram) that carries the `app` label in full mode and is one
//! aggregate per label set in gauges mode, so callers count events the same way in both.

use prometheus::core::{MetricVec, MetricVecBuilder};

use super::register::remove_matching;
use crate::config::MetricsMode;

/// A family (`IntCounterVec`, `HistogramVec`) whose `app` label depends on the mode it was
/// built in.
pub struct Family<V> {
    vec: V,
    /// Whether the first label is `app`.
    per_app: bool,
}

impl<T: MetricVecBuilder> Family<MetricVec<T>> {
    /// Wraps `vec`, built with `app` as its first label when `per_app`.
    pub fn new(vec: MetricVec<T>, per_app: bool) -> Self {
        Family { vec, per_app }
    }

    /// The labels of a family declared with `rest` (without `app`) in `mode`.
    pub fn labels<'a>(mode: MetricsMode, rest: &[&'a str]) -> Vec<&'a str> {
        match mode {
            MetricsMode::Full => std::iter::once("app").chain(rest.iter().copied()).collect(),
            MetricsMode::Gauges => rest.to_vec(),
        }
    }

    /// The series of `app` with the other labels `rest`; in gauges mode the aggregate series
    /// with labels `rest`, whatever the app.
    pub fn with(&self, app: &str, rest: &[&str]) -> T::M {
        if self.per_app {
            let mut values = Vec::with_capacity(rest.len() + 1);
            values.push(app);
            values.extend_from_slice(rest);
            self.vec.with_label_values(&values)
        } else {
            self.vec.with_label_values(rest)
        }
    }

    /// Drops every series of `app`. Aggregate series stay: other apps counted into them too.
    pub fn remove_app(&self, app: &str) {
        if self.per_app {
            remove_matching(&self.vec, "app", app);
        }
    }
}
