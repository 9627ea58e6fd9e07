//! The accounts a credential family serves, in memory: their records (always held), their
//! token actors (only for the accounts being served) and ticket actors, and when each was last
//! asked for. An Open Platform's authorized accounts and a WeCom suite's installed corps are
//! both kept here; what differs (how a record looks, how its actor is started) is theirs.
//!
//! A `std::sync::Mutex` guards the map: no critical section awaits, and each leaves the map
//! whole, so a poisoned lock is taken over with its data. An actor is started under the lock
//! (`start` closures), so two requests never start two actors for one account.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::config::TicketKind;
use crate::store::platform::AuthorizerState;
use crate::token::CredentialHandle;

/// What the book needs of an account's record.
pub trait Account: Clone + Send + 'static {
    /// Its key: an authorizer's appid, a corp's corpid.
    fn id(&self) -> &str;
    fn state(&self) -> AuthorizerState;
    /// Whether it holds the secret its token is minted with (a refresh token, a permanent
    /// code).
    fn holds_secret(&self) -> bool;
    /// The write order: a record read from the store replaces the held one only if newer.
    fn updated_at(&self) -> SystemTime;
}

/// Why an account's token cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Revoked,
    NeedsReauth,
    /// Authorized, but without the secret its token is minted with.
    NoSecret,
}

/// Accounts by state, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct AccountCounts {
    pub active: usize,
    pub idle: usize,
    pub revoked: usize,
    pub needs_reauth: usize,
}

impl AccountCounts {
    /// The counts in the order the metrics label them: active, idle, revoked, needs_reauth.
    pub fn by_state(&self) -> [usize; 4] {
        [self.active, self.idle, self.revoked, self.needs_reauth]
    }
}

struct Entry<R> {
    record: R,
    actor: Option<CredentialHandle>,
    tickets: HashMap<TicketKind, CredentialHandle>,
    last_request: Option<SystemTime>,
}

impl<R> Entry<R> {
    fn new(record: R) -> Entry<R> {
        Entry {
            record,
            actor: None,
            tickets: HashMap::new(),
            last_request: None,
        }
    }
}

/// The accounts of one platform or suite.
pub struct Accounts<R> {
    map: Mutex<HashMap<String, Entry<R>>>,
}

impl<R: Account> Accounts<R> {
    pub fn new(records: Vec<R>) -> Accounts<R> {
        let map = records
            .into_iter()
            .map(|r| (r.id().to_string(), Entry::new(r)))
            .collect();
        Accounts {
            map: Mutex::new(map),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry<R>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One account's record, as held now.
    pub fn get(&self, id: &str) -> Option<R> {
        self.lock().get(id).map(|e| e.record.clone())
    }

    /// What `read` takes from the record of an account whose token may be served.
    pub fn of_authorized<T>(&self, id: &str, read: impl FnOnce(&R) -> Option<T>) -> Option<T> {
        let map = self.lock();
        let e = map.get(id)?;
        (e.record.state() == AuthorizerState::Authorized)
            .then(|| read(&e.record))
            .flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// What `f` makes of every record (under the lock: `f` must not block).
    pub fn with_records<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &R>) -> T) -> T {
        let map = self.lock();
        f(&mut map.values().map(|e| &e.record))
    }

    /// One page of the accounts in `state` (all when `None`), by id: how many there are and
    /// the records from `offset`, `limit` at most. Only the page's records are copied.
    pub fn page(
        &self,
        state: Option<AuthorizerState>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<R>) {
        let map = self.lock();
        let mut matching: Vec<&R> = map
            .values()
            .map(|e| &e.record)
            .filter(|r| state.is_none_or(|s| r.state() == s))
            .collect();
        let total = matching.len();
        let end = offset.saturating_add(limit).min(total);
        if offset >= end {
            return (total, Vec::new());
        }
        // Only the first `end` need to be in order.
        matching.select_nth_unstable_by(end - 1, |a, b| a.id().cmp(b.id()));
        let head = &mut matching[..end];
        head.sort_unstable_by(|a, b| a.id().cmp(b.id()));
        (total, head[offset..].iter().map(|r| (*r).clone()).collect())
    }

    /// Keeps `record` in place of the held one (or as a new account).
    pub fn keep(&self, record: R) {
        let mut map = self.lock();
        match map.get_mut(record.id()) {
            Some(e) => e.record = record,
            None => {
                map.insert(record.id().to_string(), Entry::new(record));
            }
        }
    }

    /// Keeps `stored` (read from the store for `id`) if it is newer than the held record, or
    /// none is held. Whether a record is held for `id` afterwards.
    pub fn keep_if_newer(&self, id: &str, stored: Option<R>) -> bool {
        let mut map = self.lock();
        if let Some(r) = stored {
            match map.get_mut(id) {
                Some(e) if e.record.updated_at() >= r.updated_at() => {}
                Some(e) => e.record = r,
                None => {
                    map.insert(id.to_string(), Entry::new(r));
                }
            }
        }
        map.contains_key(id)
    }

    /// The token actor of an account whose token may be served, started with `start` if it has
    /// none; records the request for the `"active"` window.
    pub fn actor(
        &self,
        id: &str,
        start: impl FnOnce() -> Option<CredentialHandle>,
    ) -> Result<CredentialHandle, Refusal> {
        let mut map = self.lock();
        let e = map.get_mut(id).ok_or(Refusal::Unknown)?;
        match e.record.state() {
            AuthorizerState::Revoked => return Err(Refusal::Revoked),
            AuthorizerState::NeedsReauth => return Err(Refusal::NeedsReauth),
            AuthorizerState::Authorized if !e.record.holds_secret() => {
                return Err(Refusal::NoSecret)
            }
            AuthorizerState::Authorized => {}
        }
        e.last_request = Some(SystemTime::now());
        if let Some(h) = &e.actor {
            return Ok(h.clone());
        }
        let h = start().ok_or(Refusal::Unknown)?;
        e.actor = Some(h.clone());
        Ok(h)
    }

    /// The account's actor, started with `start` if it has none (whatever its state: the
    /// caller asks only for those it keeps warm).
    pub fn ensure_actor(&self, id: &str, start: impl FnOnce() -> CredentialHandle) {
        if let Some(e) = self.lock().get_mut(id) {
            if e.actor.is_none() {
                e.actor = Some(start());
            }
        }
    }

    /// The account's ticket actor of `kind`, started with `start` if it has none.
    pub fn ticket(
        &self,
        id: &str,
        kind: TicketKind,
        start: impl FnOnce() -> CredentialHandle,
    ) -> Option<CredentialHandle> {
        let mut map = self.lock();
        let e = map.get_mut(id)?;
        Some(e.tickets.entry(kind).or_insert_with(start).clone())
    }

    /// Takes the account's actors away (its token's and its tickets'), for the caller to stop.
    pub fn take_actors(&self, id: &str) -> Vec<CredentialHandle> {
        match self.lock().get_mut(id) {
            Some(e) => {
                let tickets = std::mem::take(&mut e.tickets).into_values();
                e.actor.take().into_iter().chain(tickets).collect()
            }
            None => Vec::new(),
        }
    }

    pub fn has_actor(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|e| e.actor.is_some())
    }

    /// The authorized accounts with no actor (to start for `"all"`).
    pub fn authorized_without_actor(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.record.state() == AuthorizerState::Authorized && e.actor.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The accounts with an actor nobody asked for within `window` before `now`.
    pub fn idle(&self, window: Duration, now: SystemTime) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.actor.is_some())
            .filter(|(_, e)| {
                e.last_request
                    .is_none_or(|at| now.duration_since(at).unwrap_or_default() > window)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Accounts per state, and how many have a running actor.
    pub fn counts(&self) -> AccountCounts {
        let mut c = AccountCounts::default();
        for e in self.lock().values() {
            match e.record.state() {
                AuthorizerState::Authorized if e.actor.is_some() => c.active += 1,
                AuthorizerState::Authorized => c.idle += 1,
                AuthorizerState::NeedsReauth => c.needs_reauth += 1,
                AuthorizerState::Revoked => c.revoked += 1,
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Rec {
        id: String,
        state: AuthorizerState,
        secret: bool,
        at: u64,
    }

    impl Account for Rec {
        fn id(&self) -> &str {
            &self.id
        }
        fn state(&self) -> AuthorizerState {
            self.state
        }
        fn holds_secret(&self) -> bool {
            self.secret
        }
        fn updated_at(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_secs(self.at)
        }
    }

    fn rec(id: &str, state: AuthorizerState, secret: bool, at: u64) -> Rec {
        Rec {
            id: id.into(),
            state,
            secret,
            at,
        }
    }

    #[test]
    fn an_account_is_refused_by_its_state_before_any_actor_starts() {
        use AuthorizerState::*;
        let book = Accounts::new(vec![
            rec("a", Revoked, true, 1),
            rec("b", NeedsReauth, true, 1),
            rec("c", Authorized, false, 1),
        ]);
        let never = || -> Option<CredentialHandle> { panic!("no actor for a refused account") };
        assert_eq!(book.actor("a", never).err(), Some(Refusal::Revoked));
        assert_eq!(book.actor("b", never).err(), Some(Refusal::NeedsReauth));
        assert_eq!(book.actor("c", never).err(), Some(Refusal::NoSecret));
        assert_eq!(book.actor("z", never).err(), Some(Refusal::Unknown));
        let c = book.counts();
        assert_eq!((c.revoked, c.needs_reauth, c.idle, c.active), (1, 1, 1, 0));
    }

    #[test]
    fn pages_are_in_id_order_and_a_stored_record_wins_only_if_newer() {
        use AuthorizerState::*;
        let book = Accounts::new(
            (0..5)
                .rev()
                .map(|i| rec(&format!("wx{i}"), Authorized, true, 10))
                .collect(),
        );
        let (total, page) = book.page(None, 1, 2);
        assert_eq!(total, 5);
        let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["wx1", "wx2"]);
        assert_eq!(book.page(Some(Revoked), 0, 10), (0, vec![]));
        assert!(book.keep_if_newer("wx1", Some(rec("wx1", Revoked, true, 5))));
        assert_eq!(
            book.get("wx1").map(|r| r.state),
            Some(Authorized),
            "older: dropped"
        );
        assert!(book.keep_if_newer("wx1", Some(rec("wx1", Revoked, true, 11))));
        assert_eq!(book.get("wx1").map(|r| r.state), Some(Revoked));
        assert!(!book.keep_if_newer("wx9", None));
        assert_eq!(book.of_authorized("wx1", |r| Some(r.at)), None);
        assert_eq!(book.of_authorized("wx2", |r| Some(r.at)), Some(10));
    }
}
