//! Per-client rate limits (a token bucket per client and instance) and the brake on remote
//! addresses that keep failing authentication.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Failed authentications one remote address may make in a minute before it is answered 429.
pub const AUTH_FAILURES_PER_MINUTE: u32 = 20;

/// Remote addresses tracked for failed authentications. Past it, the idle ones are dropped;
/// if the table is still full, further addresses share one bucket, so a scan from many
/// addresses costs bounded memory and is braked as a whole.
const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// A client's limit, from `[[clients]] rate_per_second` and `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientRate {
    pub per_second: f64,
    pub burst: u32,
}

impl ClientRate {
    fn quota(self) -> Option<Quota> {
        let period = Duration::try_from_secs_f64(1.0 / self.per_second).ok()?;
        Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(self.burst)?))
    }
}

type Bucket<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type AddressBuckets<C> =
    RateLimiter<IpAddr, HashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The buckets of one instance: one per limited client, one per remote address that failed to
/// authenticate. Built from the configuration (and anew on a reload: a reload refills them).
pub struct Limits<C: Clock = DefaultClock> {
    clock: C,
    clients: HashMap<String, Bucket<C>>,
    failures: AddressBuckets<C>,
    /// Where addresses beyond [`MAX_TRACKED_ADDRESSES`] are counted.
    overflow: IpAddr,
    /// Failures seen while the table was full: the idle addresses are swept on every
    /// [`SWEEP_EVERY`]th, not on each (a sweep walks the whole table).
    full_hits: AtomicUsize,
}

/// While the address table is full, one failure in this many sweeps it.
const SWEEP_EVERY: usize = 1024;

impl Limits<DefaultClock> {
    pub fn new<'a>(clients: impl IntoIterator<Item = (&'a str, ClientRate)>) -> Self {
        Limits::with_clock(clients, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limits<C> {
    /// On a clock the caller gives (tests advance a fake one).
    pub fn with_clock<'a>(
        clients: impl IntoIterator<Item = (&'a str, ClientRate)>,
        clock: C,
    ) -> Self {
        let clients = clients
            .into_iter()
            .filter_map(|(name, rate)| {
                let bucket =
                    RateLimiter::new(rate.quota()?, InMemoryState::default(), clock.clone());
                Some((name.to_owned(), bucket))
            })
            .collect();
        let failures_quota =
            Quota::per_minute(NonZeroU32::new(AUTH_FAILURES_PER_MINUTE).expect("not zero"));
        Limits {
            failures: RateLimiter::new(failures_quota, HashMapStateStore::default(), clock.clone()),
            clock,
            clients,
            overflow: IpAddr::from([0, 0, 0, 0]),
            full_hits: AtomicUsize::new(0),
        }
    }

    /// Takes one request from `client`'s bucket; `Err` holds how long until the next is
    /// allowed. A client without a limit always passes.
    pub fn admit(&self, client: &str) -> Result<(), Duration> {
        let Some(bucket) = self.clients.get(client) else {
            return Ok(());
        };
        bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Counts a failed authentication from `addr`; `Err` (with the wait) once the address is
    /// past [`AUTH_FAILURES_PER_MINUTE`]: the caller answers 429 instead of 401 and does not
    /// log the attempt.
    pub fn failed_authentication(&self, addr: IpAddr) -> Result<(), Duration> {
        let mut key = addr;
        if self.failures.len() >= MAX_TRACKED_ADDRESSES {
            if self
                .full_hits
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(SWEEP_EVERY)
            {
                self.failures.retain_recent();
            }
            if self.failures.len() >= MAX_TRACKED_ADDRESSES {
                key = self.overflow;
            }
        }
        self.failures
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Whether `client` has a limit.
    pub fn limits(&self, client: &str) -> bool {
        self.clients.contains_key(client)
    }
}

/// `Retry-After` in whole seconds, rounded up (a wait of 0.2 s is 1, never 0: 0 would invite an
/// immediate retry that is refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limits(rate: ClientRate) -> (Limits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Limits::with_clock([("crm", rate)], clock.clone()), clock)
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let (limits, clock) = limits(ClientRate {
            per_second: 10.0,
            burst: 5,
        });
        for _ in 0..5 {
            limits.admit("crm").unwrap();
        }
        let wait = limits.admit("crm").unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(retry_after_secs(wait), 1);
        clock.advance(Duration::from_millis(100));
        limits.admit("crm").unwrap();
        assert!(limits.admit("crm").is_err());
        // A second later the bucket holds its burst again, not more.
        clock.advance(Duration::from_secs(1));
        for _ in 0..5 {
            limits.admit("crm").unwrap();
        }
        assert!(limits.admit("crm").is_err());
        // Other clients are not limited.
        for _ in 0..100 {
            limits.admit("erp").unwrap();
        }
        assert!(limits.limits("crm") && !limits.limits("erp"));
    }

    #[test]
    fn a_fractional_rate_waits_seconds() {
        let (limits, clock) = limits(ClientRate {
            per_second: 0.5,
            burst: 1,
        });
        limits.admit("crm").unwrap();
        let wait = limits.admit("crm").unwrap_err();
        assert_eq!(retry_after_secs(wait), 2);
        clock.advance(Duration::from_millis(1999));
        assert!(limits.admit("crm").is_err());
        clock.advance(Duration::from_millis(1));
        limits.admit("crm").unwrap();
    }

    #[test]
    fn an_address_is_braked_after_twenty_failures_a_minute() {
        let (limits, clock) = limits(ClientRate {
            per_second: 1.0,
            burst: 1,
        });
        let guesser: IpAddr = [10, 0, 0, 7].into();
        let other: IpAddr = [10, 0, 0, 8].into();
        for _ in 0..AUTH_FAILURES_PER_MINUTE {
            limits.failed_authentication(guesser).unwrap();
        }
        assert!(limits.failed_authentication(guesser).is_err());
        limits.failed_authentication(other).unwrap();
        // One failure's worth comes back every 3 s; a minute refills all twenty.
        clock.advance(Duration::from_secs(3));
        limits.failed_authentication(guesser).unwrap();
        assert!(limits.failed_authentication(guesser).is_err());
        clock.advance(Duration::from_secs(60));
        for _ in 0..AUTH_FAILURES_PER_MINUTE {
            limits.failed_authentication(guesser).unwrap();
        }
    }

    #[test]
    fn many_addresses_cost_bounded_memory() {
        let (limits, _clock) = limits(ClientRate {
            per_second: 1.0,
            burst: 1,
        });
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 100) {
            let addr = IpAddr::from(i.to_be_bytes());
            let _ = limits.failed_authentication(addr);
        }
        assert!(limits.failures.len() <= MAX_TRACKED_ADDRESSES + 1);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 0);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
