//! Per-client rate limits and the failed-authentication budget of each remote address, both
//! token buckets (GCRA, the `governor` crate) kept per instance.
//!
//! - A client with `rate_per_second` (and `burst`) is refused once its bucket is empty, until
//!   it refills: 429 with `Retry-After` on the `/v1` routes, WeChat's 45009 on its paths.
//! - An address whose authentications fail more than [`FAILED_AUTH_PER_MINUTE`] times a minute
//!   gets 429 instead of 401 for the failures beyond, so a key-guessing client cannot fill the
//!   logs; a right key from that address (a NAT shared with a guesser) still works.
//!
//! The probes (`/healthz`, `/readyz`, `/metrics`) authenticate nobody, so nothing here counts
//! them. Every refusal is counted in `wxtoken_client_rejections_total{client,reason}`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus::{IntCounterVec, Opts};

use crate::config::{ClientRate, ClientSettings};
use crate::metrics::Metrics;

/// Failed authentications a minute one address may make before the next ones get 429.
pub const FAILED_AUTH_PER_MINUTE: u32 = 20;

/// Most addresses whose failures are tracked at once: a few MB at most. When as many are
/// tracked, those back to a full budget are dropped first; a new address beyond the cap is not
/// tracked (its failures answer 401), so memory stays bounded whatever the number of sources.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// Why a client or address was refused, as the metric's `reason` label.
const REASON_RATE: &str = "rate";
const REASON_FAILED_AUTH: &str = "failed_auth";
/// The `client` label of a refusal before any client is known.
const UNAUTHENTICATED: &str = "unauthenticated";

/// A refusal: how long until a request would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds, at least 1: what `Retry-After` says.
    pub retry_after_secs: u64,
}

impl Limited {
    fn after(wait: Duration) -> Limited {
        Limited {
            retry_after_secs: wait.as_secs().saturating_add(1),
        }
    }
}

/// The buckets of the configured clients and of failing addresses.
pub struct Limits {
    /// By client name, with the rate it was made for (a reload keeps an unchanged bucket).
    clients: HashMap<String, (ClientRate, Arc<DefaultDirectRateLimiter>)>,
    /// Shared by every generation of clients: reloads do not reset an address's failures.
    failures: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    rejections: Option<IntCounterVec>,
}

impl Limits {
    /// The buckets for `clients`, their refusals counted in `metrics`.
    pub fn new(clients: &[ClientSettings], metrics: &Metrics) -> Limits {
        let rejections = IntCounterVec::new(
            Opts::new(
                "wxtoken_client_rejections_total",
                "Requests refused with 429: a client over its rate (reason rate), or an address \
                 over its failed authentications (reason failed_auth, client unauthenticated)",
            ),
            &["client", "reason"],
        )
        .ok()
        .filter(|c| {
            let registered = metrics.registry().register(Box::new(c.clone()));
            if let Err(e) = &registered {
                tracing::warn!(error = %e, "client rejection series not registered");
            }
            registered.is_ok()
        });
        let per_minute = NonZeroU32::new(FAILED_AUTH_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        let limits = Limits {
            clients: HashMap::new(),
            failures: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            rejections,
        };
        limits.renewed(clients)
    }

    /// The buckets for a reloaded set of clients: a client whose rate did not change keeps its
    /// bucket (a reload is no way around a limit), the others start full.
    pub fn renewed(&self, clients: &[ClientSettings]) -> Limits {
        let buckets = clients
            .iter()
            .filter_map(|c| {
                let rate = c.rate?;
                let bucket = match self.clients.get(&c.name) {
                    Some((old, bucket)) if *old == rate => bucket.clone(),
                    _ => Arc::new(RateLimiter::direct(
                        Quota::per_second(rate.per_second).allow_burst(rate.burst),
                    )),
                };
                Some((c.name.clone(), (rate, bucket)))
            })
            .collect();
        Limits {
            clients: buckets,
            failures: self.failures.clone(),
            rejections: self.rejections.clone(),
        }
    }

    /// Takes one request from `client`'s bucket, or says how long until one is there.
    pub fn admit(&self, client: &ClientSettings) -> Result<(), Limited> {
        let Some((_, bucket)) = self.clients.get(&client.name) else {
            return Ok(());
        };
        bucket.check().map_err(|not_until| {
            self.count(&client.name, REASON_RATE);
            Limited::after(not_until.wait_time_from(bucket.clock().now()))
        })
    }

    /// Records a failed authentication from `addr`: `Err` once the address is over its budget.
    pub fn failed(&self, addr: Option<IpAddr>) -> Result<(), Limited> {
        let Some(addr) = addr else {
            return Ok(());
        };
        if self.failures.len() >= MAX_TRACKED_ADDRESSES {
            self.failures.retain_recent();
            if self.failures.len() >= MAX_TRACKED_ADDRESSES {
                return Ok(());
            }
        }
        self.failures.check_key(&addr).map_err(|not_until| {
            self.count(UNAUTHENTICATED, REASON_FAILED_AUTH);
            Limited::after(not_until.wait_time_from(self.failures.clock().now()))
        })
    }

    fn count(&self, client: &str, reason: &str) {
        if let Some(r) = &self.rejections {
            r.with_label_values(&[client, reason]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppScope, ClientSettings};

    fn client(name: &str, rate: Option<(u32, u32)>) -> ClientSettings {
        ClientSettings {
            name: name.into(),
            key_sha256: None,
            key_source: None,
            cert: None,
            rate: rate.map(|(r, b)| ClientRate {
                per_second: NonZeroU32::new(r).unwrap(),
                burst: NonZeroU32::new(b).unwrap(),
            }),
            apps: AppScope::All,
            platforms: AppScope::All,
            wecom_suites: AppScope::All,
            wecom_providers: AppScope::All,
            admin: false,
            proxy: false,
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_and_survives_a_reload_unchanged() {
        let metrics = Metrics::new(&[], crate::config::MetricsMode::Full);
        let slow = client("slow", Some((1, 3)));
        let free = client("free", None);
        let limits = Limits::new(&[slow.clone(), free.clone()], &metrics);
        for _ in 0..3 {
            assert_eq!(limits.admit(&slow), Ok(()));
        }
        let refused = limits.admit(&slow).unwrap_err();
        assert!((1..=2).contains(&refused.retry_after_secs), "{refused:?}");
        for _ in 0..100 {
            assert_eq!(limits.admit(&free), Ok(()));
        }
        // Same rate: the same, empty bucket. A new rate: a new, full one.
        let reloaded = limits.renewed(std::slice::from_ref(&slow));
        assert!(reloaded.admit(&slow).is_err());
        let faster = client("slow", Some((10, 10)));
        let reloaded = limits.renewed(std::slice::from_ref(&faster));
        assert_eq!(reloaded.admit(&faster), Ok(()));
        assert!(metrics
            .render()
            .contains("wxtoken_client_rejections_total{client=\"slow\",reason=\"rate\"} 2"));
    }

    #[test]
    fn an_address_gets_twenty_failures_a_minute() {
        let metrics = Metrics::new(&[], crate::config::MetricsMode::Full);
        let limits = Limits::new(&[], &metrics);
        let guesser: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..FAILED_AUTH_PER_MINUTE {
            assert_eq!(limits.failed(Some(guesser)), Ok(()));
        }
        let refused = limits.failed(Some(guesser)).unwrap_err();
        assert!(refused.retry_after_secs >= 1);
        assert_eq!(limits.failed(Some("192.0.2.8".parse().unwrap())), Ok(()));
        assert_eq!(limits.failed(None), Ok(()));
    }
}
