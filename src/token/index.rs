//! Which credential issued a token: the gateway identifies the app of a forwarded call by the
//! `access_token` it carries, among the current and previous token of every credential.
//!
//! Each token actor owns an [`IndexSlot`] and updates it when it publishes; readers look a
//! token up without a message round trip. Keys are a digest of the token, not the token: the
//! record (already held by the actor's status) carries the token itself, and a lookup compares
//! it in constant time, so the index costs about 50 bytes per token however long tokens are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::TokenRecord;

/// Whose token it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOwner {
    /// A configured app, by name.
    App(String),
    /// An account authorized to an Open Platform third-party platform.
    Authorizer { platform: String, appid: String },
    /// A WeCom suite's suite token, by suite name.
    WecomSuite(String),
    /// The token of a corp that installed a WeCom suite.
    WecomCorp { suite: String, corpid: String },
    /// A WeCom service provider's provider token, by provider name.
    WecomProvider(String),
}

/// What a lookup finds.
#[derive(Clone, Debug)]
pub struct Indexed {
    pub owner: Arc<TokenOwner>,
    pub record: Arc<TokenRecord>,
}

type Key = [u8; 16];

fn key_of(token: &str) -> Key {
    let d = Sha256::digest(token.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// Every indexed token of a server.
#[derive(Default)]
pub struct TokenIndex {
    // A std lock, not a tokio one: nothing awaits while holding it. Writes come at the rate
    // tokens are fetched (a few a second at 100,000 apps), reads once per forwarded call.
    map: RwLock<HashMap<Key, Indexed>>,
}

impl TokenIndex {
    pub fn new() -> Arc<TokenIndex> {
        Arc::new(TokenIndex::default())
    }

    /// The credential `token` belongs to, if it is one the index holds.
    pub fn lookup(&self, token: &str) -> Option<Indexed> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let found = map.get(&key_of(token))?;
        let same: bool = found
            .record
            .token
            .expose()
            .as_bytes()
            .ct_eq(token.as_bytes())
            .into();
        same.then(|| found.clone())
    }

    /// How many tokens are indexed.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A slot for one credential's tokens.
    pub fn slot(self: &Arc<Self>, owner: TokenOwner) -> IndexSlot {
        IndexSlot {
            index: self.clone(),
            owner: Arc::new(owner),
            held: Mutex::new(Held::default()),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Indexed>> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes `key` if `owner`'s slot put it there. An app replaced by a reload has a new actor
/// (and slot) that may index the same token before the old one is retired: the old slot must
/// not take the new one's entry with it.
fn remove_own(map: &mut HashMap<Key, Indexed>, key: &Key, owner: &Arc<TokenOwner>) {
    if map.get(key).is_some_and(|e| Arc::ptr_eq(&e.owner, owner)) {
        map.remove(key);
    }
}

#[derive(Default)]
struct Held {
    /// The record last indexed as current, to skip unchanged publications cheaply.
    current: Option<Arc<TokenRecord>>,
    /// The keys this slot holds in the index: current, then previous.
    keys: [Option<Key>; 2],
    /// A revoked token: never indexed again, even while it is still the current one.
    barred: Option<Key>,
}

/// One credential's entries in the index: its current token and the one before. The previous
/// token is kept because WeChat keeps it working for a while after a refresh, and business
/// servers that read a token a moment ago still send it.
pub struct IndexSlot {
    index: Arc<TokenIndex>,
    owner: Arc<TokenOwner>,
    // Locked only by the owning actor; a mutex keeps the slot `Sync` at no real cost.
    held: Mutex<Held>,
}

impl IndexSlot {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Indexes `current` (what the actor now publishes); a new token pushes the current one to
    /// previous and drops the one before.
    pub fn update(&self, current: Option<&Arc<TokenRecord>>) {
        let mut held = self.held();
        let Some(current) = current else {
            return;
        };
        if held
            .current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, current))
        {
            return;
        }
        held.current = Some(current.clone());
        let key = key_of(current.token.expose());
        if held.barred == Some(key) {
            return;
        }
        let entry = Indexed {
            owner: self.owner.clone(),
            record: current.clone(),
        };
        let mut map = self.index.write();
        if held.keys[0] == Some(key) {
            // The same token in a new record (read back from the store, say).
            map.insert(key, entry);
            return;
        }
        if let Some(old) = held.keys[1].take() {
            remove_own(&mut map, &old, &self.owner);
        }
        held.keys[1] = held.keys[0].take();
        held.keys[0] = Some(key);
        map.insert(key, entry);
    }

    /// `token` was revoked: it leaves the index now and is never indexed again by this slot.
    pub fn revoke(&self, token: &str) {
        let key = key_of(token);
        let mut held = self.held();
        held.barred = Some(key);
        let mut map = self.index.write();
        for k in &mut held.keys {
            if *k == Some(key) {
                remove_own(&mut map, &key, &self.owner);
                *k = None;
            }
        }
    }

    /// The credential is gone: all its entries leave the index.
    pub fn clear(&self) {
        let mut held = self.held();
        held.current = None;
        let mut map = self.index.write();
        for k in held.keys.iter_mut().filter_map(Option::take) {
            remove_own(&mut map, &k, &self.owner);
        }
    }
}

impl Drop for IndexSlot {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::token::AccessToken;

    fn rec(token: &str, generation: u64) -> Arc<TokenRecord> {
        let now = SystemTime::now();
        Arc::new(TokenRecord {
            appid: "wx1".into(),
            token: AccessToken::new(token),
            fetched_at: now,
            expires_at: now + Duration::from_secs(7200),
            generation,
        })
    }

    #[test]
    fn current_and_previous_are_known_the_one_before_is_not() {
        let index = TokenIndex::new();
        let slot = index.slot(TokenOwner::App("shop".into()));
        slot.update(Some(&rec("t1", 1)));
        slot.update(Some(&rec("t2", 2)));
        assert_eq!(
            *index.lookup("t1").expect("previous").owner,
            TokenOwner::App("shop".into())
        );
        assert_eq!(index.lookup("t2").expect("current").record.generation, 2);
        slot.update(Some(&rec("t3", 3)));
        assert!(index.lookup("t1").is_none());
        assert!(index.lookup("t2").is_some());
        assert!(index.lookup("t3").is_some());
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn the_same_token_republished_is_not_a_rotation() {
        let index = TokenIndex::new();
        let slot = index.slot(TokenOwner::App("shop".into()));
        slot.update(Some(&rec("t1", 1)));
        slot.update(Some(&rec("t2", 2)));
        slot.update(Some(&rec("t2", 2)));
        assert!(index.lookup("t1").is_some(), "previous kept");
        slot.update(None);
        assert!(
            index.lookup("t2").is_some(),
            "no token published: nothing dropped"
        );
    }

    #[test]
    fn unknown_tokens_and_prefixes_are_not_found() {
        let index = TokenIndex::new();
        let slot = index.slot(TokenOwner::App("shop".into()));
        slot.update(Some(&rec("token-value", 1)));
        assert!(index.lookup("token-valu").is_none());
        assert!(index.lookup("").is_none());
        assert!(index.lookup("other").is_none());
    }

    #[test]
    fn a_revoked_token_leaves_at_once_and_stays_out() {
        let index = TokenIndex::new();
        let slot = index.slot(TokenOwner::App("shop".into()));
        let leaked = rec("leaked", 1);
        slot.update(Some(&leaked));
        slot.revoke("leaked");
        assert!(index.lookup("leaked").is_none());
        // Still the actor's current token until the new one arrives: not indexed again.
        slot.update(Some(&rec("leaked", 1)));
        assert!(index.lookup("leaked").is_none());
        slot.update(Some(&rec("fresh", 2)));
        assert!(index.lookup("fresh").is_some());
        assert!(
            index.lookup("leaked").is_none(),
            "not even as the previous one"
        );
    }

    #[test]
    fn slots_of_two_owners_are_apart_and_dropping_one_clears_it() {
        let index = TokenIndex::new();
        let a = index.slot(TokenOwner::App("a".into()));
        let b = index.slot(TokenOwner::Authorizer {
            platform: "p".into(),
            appid: "wxb".into(),
        });
        a.update(Some(&rec("ta", 1)));
        b.update(Some(&rec("tb", 1)));
        assert_eq!(
            *index.lookup("ta").expect("a").owner,
            TokenOwner::App("a".into())
        );
        assert!(matches!(
            *index.lookup("tb").expect("b").owner,
            TokenOwner::Authorizer { .. }
        ));
        drop(a);
        assert!(index.lookup("ta").is_none());
        assert!(index.lookup("tb").is_some());
    }

    #[test]
    fn a_replaced_slot_leaves_its_successors_entry_alone() {
        // A reload replaces the app's actor: the new one indexes the same token first, then
        // the old one is retired.
        let index = TokenIndex::new();
        let old = index.slot(TokenOwner::App("shop".into()));
        old.update(Some(&rec("t1", 1)));
        let new = index.slot(TokenOwner::App("shop".into()));
        new.update(Some(&rec("t1", 1)));
        old.clear();
        drop(old);
        assert!(index.lookup("t1").is_some(), "still the new actor's token");
        new.update(Some(&rec("t2", 2)));
        assert!(index.lookup("t1").is_some() && index.lookup("t2").is_some());
    }
}
