//! Authorization codes on their way to `api_query_auth`: one exchange at a time **per code**,
//! and the codes a platform exchanged within a code's life (ten minutes), kept by digest.
//!
//! A code arrives twice in the usual flow (the `authorized` push and the redirect carry the
//! same one), and WeChat honours it once (61009 after that): whichever arrives second waits for
//! the first one's exchange and is answered with its account. Different codes do not wait for
//! each other: with WeChat taking seconds per exchange, a queue per platform made the tenth
//! authorization of a burst wait for the nine before it, and an SDK's `api_query_auth` with it.
//!
//! Slots are plain data behind a `std::sync::Mutex` (no await happens while it is held); the
//! wait for a busy code is on that code's own `tokio::sync::Mutex`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// How long WeChat honours an authorization code.
pub const CODE_LIFE: Duration = Duration::from_secs(600);

/// Enough for any burst of authorizations within ten minutes; the oldest go first beyond it.
const MAX_KEPT: usize = 4096;

/// The SHA-256 of a code: how a code is named anywhere but in the call that exchanges it.
pub type CodeDigest = [u8; 32];

pub fn digest(code: &str) -> CodeDigest {
    Sha256::digest(code.as_bytes()).into()
}

/// Codes exchanged recently, oldest first: SHA-256 of the code (never the code), the account it
/// authorized, and when.
#[derive(Default)]
pub struct ExchangedCodes {
    entries: VecDeque<(CodeDigest, String, Instant)>,
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

/// One platform's exchanges: the codes exchanged, and a slot per code being exchanged.
#[derive(Default)]
pub struct Exchanges {
    state: Mutex<ExchangesState>,
}

#[derive(Default)]
struct ExchangesState {
    exchanged: ExchangedCodes,
    /// The codes being exchanged or waited for. An entry's `Arc` is cloned only under the
    /// state's lock, by the holder's guard and by each waiter, so a count of one means nobody
    /// holds or waits for it any more.
    slots: HashMap<CodeDigest, Arc<tokio::sync::Mutex<()>>>,
}

impl Exchanges {
    fn state(&self) -> MutexGuard<'_, ExchangesState> {
        // Every critical section leaves the maps whole: keep going with the data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The account `code` authorized, if this platform exchanged it within [`CODE_LIFE`].
    pub fn exchanged(&self, code: &str, now: Instant) -> Option<String> {
        self.state().exchanged.appid(code, now)
    }

    pub fn remember(&self, code: &str, appid: String, now: Instant) {
        self.state().exchanged.remember(code, appid, now);
    }

    /// The code's slot, once no one else holds it: whoever holds it is the only one exchanging
    /// that code in this process. Other codes' slots are independent.
    pub async fn slot(&self, code: &str) -> CodeSlot<'_> {
        let digest = digest(code);
        let lock = self.slot_lock(digest);
        let guard = lock.lock_owned().await;
        CodeSlot {
            owner: self,
            digest,
            guard: Some(guard),
        }
    }

    /// The code's slot if it is free now; `None` while someone exchanges that code.
    pub fn try_slot(&self, code: &str) -> Option<CodeSlot<'_>> {
        let digest = digest(code);
        let guard = self.slot_lock(digest).try_lock_owned().ok()?;
        Some(CodeSlot {
            owner: self,
            digest,
            guard: Some(guard),
        })
    }

    /// Whether an exchange of `code` runs in this process now.
    pub fn is_busy(&self, code: &str) -> bool {
        self.state()
            .slots
            .get(&digest(code))
            .is_some_and(|l| l.try_lock().is_err())
    }

    /// The lock of the code's slot, made if there is none. Drops the slots nobody holds or
    /// waits for (a waiter that gave up leaves one behind).
    fn slot_lock(&self, digest: CodeDigest) -> Arc<tokio::sync::Mutex<()>> {
        let mut state = self.state();
        state
            .slots
            .retain(|d, l| *d == digest || Arc::strong_count(l) > 1);
        state.slots.entry(digest).or_default().clone()
    }

    /// How many codes have a slot now, for tests.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.state().slots.len()
    }
}

/// The right to exchange one code; released on drop (the exchange returned or was cancelled).
pub struct CodeSlot<'a> {
    owner: &'a Exchanges,
    digest: CodeDigest,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for CodeSlot<'_> {
    fn drop(&mut self) {
        let mut state = self.owner.state();
        // The map's reference and this guard's: no one waits, so the slot goes.
        if state
            .slots
            .get(&self.digest)
            .is_some_and(|l| Arc::strong_count(l) == 2)
        {
            state.slots.remove(&self.digest);
        }
        drop(self.guard.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

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

    #[actix_web::test]
    async fn one_code_is_exchanged_at_a_time_and_other_codes_meanwhile() {
        let ex = Exchanges::default();
        let first = ex.slot("code-a").await;
        // Another code is free while "code-a" is held; "code-a" itself is not.
        let other = ex.try_slot("code-b").expect("another code's slot is free");
        assert!(ex.try_slot("code-a").is_none());
        // A second holder of "code-a" waits for the first to finish.
        let mut waiter = std::pin::pin!(ex.slot("code-a"));
        assert!(waiter.as_mut().now_or_never().is_none());
        drop(first);
        let second = waiter.await;
        assert!(ex.try_slot("code-a").is_none());
        drop(second);
        drop(other);
        assert_eq!(ex.slots(), 0, "finished slots are dropped");
    }

    #[actix_web::test]
    async fn a_waiter_that_gives_up_leaves_no_slot_behind_for_long() {
        let ex = Exchanges::default();
        let held = ex.slot("code-a").await;
        {
            let mut waiter = std::pin::pin!(ex.slot("code-a"));
            assert!(waiter.as_mut().now_or_never().is_none());
        }
        drop(held);
        // The abandoned waiter's slot is dropped when the next one is made.
        drop(ex.slot("code-b").await);
        assert_eq!(ex.slots(), 0);
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
