//! The token domain: what a token is, what each app's actor publishes, and the actor itself.

pub mod actor;
#[cfg(test)]
mod actor_tests;
pub mod clock;
mod confirm;
mod credential;
pub mod external;
pub mod fetch;
mod guard;
pub mod handle;
mod handlers;
pub mod index;
pub mod messages;
pub mod schedule;
pub mod spawn;
pub mod spec;
mod sync;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use crate::secret::{AccessToken, Fingerprint};
pub use actor::TokenActor;
pub use clock::SharedClock;
pub use credential::rejects_token;
pub use handle::{CredentialHandle, Unavailable, ACTOR_GRACE};
pub use spawn::{spawn_actor, ActorDeps};
pub use spec::CredentialSpec;

/// One fetched token with everything needed to serve, schedule and persist it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// The appid the token was fetched for; a stored record of another appid is ignored.
    pub appid: String,
    pub token: AccessToken,
    /// When the request that produced the token was sent, so the expiry errs on the early side.
    pub fetched_at: SystemTime,
    pub expires_at: SystemTime,
    /// Counts the tokens this app has had; goes up by one with every fetch.
    pub generation: u64,
}

impl TokenRecord {
    /// Time left at `now`, zero once expired.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }

    /// Whether the token can still be handed out: at least a whole second left, so a client
    /// never receives `expires_in: 0`.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.remaining(now) >= Duration::from_secs(1)
    }

    pub fn lifetime(&self) -> Duration {
        self.expires_at
            .duration_since(self.fetched_at)
            .unwrap_or_default()
    }

    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fetched_at).unwrap_or_default()
    }

    /// The expiry as RFC 3339 (`2026-11-25T15:00:00Z`), for answers, by the one clamping
    /// formatter of every answer's times ([`crate::time::rfc3339`]).
    pub fn expires_at_rfc3339(&self) -> String {
        crate::time::rfc3339(self.expires_at)
    }
}

/// Why the last fetch failed, as published to readiness checks, metrics and the 503 body.
#[derive(Clone, Debug)]
pub struct FailureInfo {
    /// The WeChat errcode, when the failure was an errcode answer.
    pub errcode: Option<i64>,
    /// Metric label: the errcode, or timeout/connect/http/decode.
    pub reason: String,
    pub class: crate::upstream::ErrorClass,
    /// A human sentence without secrets.
    pub message: String,
}

/// Calls to WeChat's token endpoint on one quota day. WeChat's daily quota resets at midnight
/// Beijing time (UTC+8), so days are counted in that zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    /// Days since the Unix epoch, in UTC+8.
    pub day: u64,
    pub used: u64,
}

impl QuotaUsage {
    const BEIJING_OFFSET_SECS: u64 = 8 * 3600;

    pub fn day_of(t: SystemTime) -> u64 {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        (secs + Self::BEIJING_OFFSET_SECS) / 86_400
    }

    /// Calls made on the day of `now` (zero once that day is over).
    pub fn used_on(&self, now: SystemTime) -> u64 {
        if self.day == Self::day_of(now) {
            self.used
        } else {
            0
        }
    }

    /// One more call at `now`.
    pub fn count(&mut self, now: SystemTime) {
        let day = Self::day_of(now);
        if day != self.day {
            *self = QuotaUsage { day, used: 0 };
        }
        self.used += 1;
    }
}

/// What an app's actor publishes after every change. Readers (the HTTP fast path, readiness,
/// metrics) load it without a message round trip; the actor is its only writer.
#[derive(Clone, Debug, Default)]
pub struct AppStatus {
    pub token: Option<Arc<TokenRecord>>,
    pub last_failure: Option<Arc<FailureInfo>>,
    /// Upstream token calls that WeChat answered today (a token or an errcode).
    pub quota: QuotaUsage,
    /// When the current token became (or becomes) due for its proactive refresh. It stays in
    /// the past while refreshing fails, which is what alerting looks for.
    pub refresh_due: Option<SystemTime>,
}

impl AppStatus {
    /// The token if it can be served at `now`.
    pub fn valid_token(&self, now: SystemTime) -> Option<&Arc<TokenRecord>> {
        self.token.as_ref().filter(|t| t.is_valid_at(now))
    }
}

/// The published status of one app, shared between its actor and the readers.
pub type SharedStatus = Arc<arc_swap::ArcSwap<AppStatus>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_token() {
        let t = AccessToken::new("very-secret-token-value");
        assert!(!format!("{t:?}").contains("very-secret"));
        assert!(!format!("{t}").contains("very-secret"));
        assert_eq!(format!("{t}").len(), 8);
        assert_ne!(
            AccessToken::new("a").fingerprint(),
            AccessToken::new("b").fingerprint()
        );
    }

    #[test]
    fn quota_days_turn_at_midnight_beijing_time() {
        let epoch = SystemTime::UNIX_EPOCH;
        // 15:59:59 UTC is 23:59:59 in Beijing; one second later a new quota day starts.
        let before = epoch + Duration::from_secs(20_000 * 86_400 + 15 * 3600 + 3599);
        let after = before + Duration::from_secs(1);
        let mut q = QuotaUsage::default();
        q.count(before);
        q.count(before);
        assert_eq!(q.used_on(before), 2);
        assert_eq!(q.used_on(after), 0);
        q.count(after);
        assert_eq!(q.used_on(after), 1);
        assert_eq!(QuotaUsage::day_of(after), QuotaUsage::day_of(before) + 1);
    }

    #[test]
    fn validity_needs_a_whole_second() {
        let now = SystemTime::now();
        let rec = TokenRecord {
            appid: "wx".into(),
            token: AccessToken::new("t"),
            fetched_at: now - Duration::from_secs(10),
            expires_at: now + Duration::from_millis(500),
            generation: 1,
        };
        assert!(!rec.is_valid_at(now));
        assert!(rec.is_valid_at(now - Duration::from_secs(1)));
        assert_eq!(rec.lifetime(), Duration::from_millis(10_500));
    }
}
