//! `TokenRecord`: one fetched token with everything needed to serve, schedule and persist it.

use std::time::{Duration, SystemTime};

use crate::secret::AccessToken;

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

#[cfg(test)]
mod tests {
    use super::*;

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
