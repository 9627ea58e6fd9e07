//! The gateway's series: forwarded calls by app and result, token retries, upstream latency,
//! and the errcodes WeChat answered them with (a bounded set).

use std::time::Duration;

use prometheus::{Histogram, IntCounterVec, Registry};

use super::labels::{KNOWN_ERRCODES, OTHER_REASON};
use super::register::{counter, histogram, remove_matching};

/// How one call through the gateway ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyResult {
    /// WeChat answered, without an errcode (or with 0).
    Ok,
    /// WeChat answered with a non-zero errcode (after the one retry, if there was one).
    WechatError,
    /// The token was rejected, wxtoken refreshed it and the repeated call succeeded.
    Retried,
    /// No answer from WeChat: timeout, connection failure, a broken answer.
    UpstreamError,
    /// Not forwarded: unknown token or key, no permission, too large, no valid token, busy.
    Refused,
}

impl ProxyResult {
    pub const ALL: [ProxyResult; 5] = [
        ProxyResult::Ok,
        ProxyResult::WechatError,
        ProxyResult::Retried,
        ProxyResult::UpstreamError,
        ProxyResult::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyResult::Ok => "ok",
            ProxyResult::WechatError => "wechat_error",
            ProxyResult::Retried => "retried",
            ProxyResult::UpstreamError => "upstream_error",
            ProxyResult::Refused => "refused",
        }
    }
}

/// Errcodes of business calls worth a series of their own, beyond the token-related
/// [`KNOWN_ERRCODES`]: what SDK users most often meet (bad openid, media, codes, data format,
/// out-of-window replies, subscription required, api not authorized for the account).
const BUSINESS_ERRCODES: [(i64, &str); 14] = [
    (40003, "40003"),
    (40004, "40004"),
    (40007, "40007"),
    (40029, "40029"),
    (40163, "40163"),
    (41005, "41005"),
    (43004, "43004"),
    (44002, "44002"),
    (45015, "45015"),
    (45047, "45047"),
    (47001, "47001"),
    (48004, "48004"),
    (61003, "61003"),
    (61007, "61007"),
];

/// The bounded `errcode` label of `code`.
pub fn errcode_label(code: i64) -> &'static str {
    KNOWN_ERRCODES
        .iter()
        .chain(BUSINESS_ERRCODES.iter())
        .find(|(c, _)| *c == code)
        .map_or(OTHER_REASON, |(_, label)| label)
}

/// A forwarded call takes WeChat's own time plus transfer; media moves megabytes.
const PROXY_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub(super) struct ProxyMetrics {
    requests: IntCounterVec,
    retries: IntCounterVec,
    upstream_duration: Histogram,
    errcodes: IntCounterVec,
}

impl ProxyMetrics {
    pub(super) fn new(registry: &mut Registry) -> ProxyMetrics {
        let requests = counter(
            registry,
            "wxtoken_proxy_requests_total",
            "WeChat API calls through the gateway, by app (empty when the call named none wxtoken knows) and result (ok, wechat_error, retried, upstream_error, refused).",
            &["app", "result"],
        );
        let retries = counter(
            registry,
            "wxtoken_proxy_retries_total",
            "Calls repeated by the gateway after WeChat rejected their token (40001, 42001, 40014).",
            &["app"],
        );
        let upstream_duration = histogram(
            registry,
            "wxtoken_proxy_upstream_duration_seconds",
            "Time from sending a forwarded call to WeChat to its answer's headers, each attempt.",
            &[],
            &PROXY_BUCKETS,
        )
        .with_label_values(&[] as &[&str]);
        let errcodes = counter(
            registry,
            "wxtoken_proxy_errcodes_total",
            "Non-zero errcodes WeChat answered forwarded calls with; codes outside a fixed set are counted as other.",
            &["errcode"],
        );
        ProxyMetrics {
            requests,
            retries,
            upstream_duration,
            errcodes,
        }
    }

    pub(super) fn request(&self, app: &str, result: ProxyResult) {
        self.requests
            .with_label_values(&[app, result.as_str()])
            .inc();
    }

    pub(super) fn retry(&self, app: &str) {
        self.retries.with_label_values(&[app]).inc();
    }

    pub(super) fn upstream(&self, elapsed: Duration) {
        self.upstream_duration.observe(elapsed.as_secs_f64());
    }

    pub(super) fn errcode(&self, code: i64) {
        self.errcodes
            .with_label_values(&[errcode_label(code)])
            .inc();
    }

    pub(super) fn remove_app(&self, app: &str) {
        remove_matching(&self.requests, "app", app);
        remove_matching(&self.retries, "app", app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcode_labels_are_a_fixed_set() {
        assert_eq!(errcode_label(40001), "40001");
        assert_eq!(errcode_label(45015), "45015");
        assert_eq!(errcode_label(-1), "-1");
        assert_eq!(errcode_label(99_999_999), "other");
        assert_eq!(errcode_label(i64::MIN), "other");
    }
}
