//! The authorization codes a platform exchanged within a code's life (ten minutes), kept by
//! digest: the `authorized` push and the redirect carry the same code, and whichever reaches
//! wxtoken second is answered with the first one's account instead of failing with WeChat's
//! 61009 (a code works once).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// How long WeChat honours an authorization code.
pub const CODE_LIFE: Duration = Duration::from_secs(600);

/// Enough for any burst of authorizations within ten minutes; the oldest go first beyond it.
const MAX_KEPT: usize = 4096;

/// Codes exchanged recently, oldest first: SHA-256 of the code (never the code), the account it
/// authorized, and when.
#[derive(Default)]
pub struct ExchangedCodes {
    entries: VecDeque<([u8; 32], String, Instant)>,
}

impl ExchangedCodes {
    /// The account `code` authorized, if it was exchanged within [`CODE_LIFE`] before `now`.
    pub fn appid(&mut self, code: &str, now: Instant) -> Option<String> {
        self.forget_expired(now);
        let digest = digest(code);
        self.entries
            .iter()
            .find(|(d, _, _)| *d == digest)
            .map(|(_, appid, _)| appid.clone())
    }

    pub fn remember(&mut self, code: &str, appid: String, now: Instant) {
        self.forget_expired(now);
        if self.entries.len() == MAX_KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back((digest(code), appid, now));
    }

    fn forget_expired(&mut self, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|(_, _, at)| now.saturating_duration_since(*at) >= CODE_LIFE)
        {
            self.entries.pop_front();
        }
    }
}

fn digest(code: &str) -> [u8; 32] {
    Sha256::digest(code.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_known_for_its_life_and_not_after() {
        let start = Instant::now();
        let mut codes = ExchangedCodes::default();
        codes.remember("queryauthcode@@@one", "wx1".into(), start);
        assert_eq!(
            codes.appid("queryauthcode@@@one", start).as_deref(),
            Some("wx1")
        );
        assert_eq!(codes.appid("queryauthcode@@@two", start), None);
        let late = start + CODE_LIFE - Duration::from_millis(1);
        assert_eq!(
            codes.appid("queryauthcode@@@one", late).as_deref(),
            Some("wx1")
        );
        assert_eq!(codes.appid("queryauthcode@@@one", start + CODE_LIFE), None);
        assert!(codes.entries.is_empty(), "expired entries are dropped");
    }

    #[test]
    fn it_stays_bounded_dropping_the_oldest() {
        let now = Instant::now();
        let mut codes = ExchangedCodes::default();
        for i in 0..=MAX_KEPT {
            codes.remember(&format!("code-{i}"), format!("wx{i}"), now);
        }
        assert_eq!(codes.entries.len(), MAX_KEPT);
        assert_eq!(codes.appid("code-0", now), None);
        assert_eq!(codes.appid("code-1", now).as_deref(), Some("wx1"));
    }
}
