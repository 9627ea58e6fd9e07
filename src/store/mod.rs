//! Persistence and sharing of token records: a restart reuses a valid token instead of
//! fetching again, and (with Redis) a fleet of instances shares one token and one refresher.

pub mod embedded;
pub mod redis;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::{BoxFuture, LocalBoxFuture};
use serde::{Deserialize, Serialize};

use crate::token::{AccessToken, QuotaUsage, SharedStatus, TokenRecord};
use crate::upstream::{Fetched, UpstreamError};

pub use embedded::EmbeddedStore;
pub use redis::RedisStore;

/// Identifies an app's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppKey {
    /// The configured name (the embedded store's key).
    pub name: String,
    /// The appid (part of the shared store's key, so apps never read each other's records).
    pub appid: String,
}

/// What is kept per app: its token, the day's quota usage as of that token's fetch, and which
/// instance fetched it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub record: TokenRecord,
    pub quota: QuotaUsage,
    pub fetched_by: Option<String>,
    /// For a ticket: the generation of the access token it was fetched with.
    pub depends_on: Option<u64>,
}

/// What an actor knows when it asks for a refresh.
#[derive(Clone, Debug)]
pub struct Basis {
    /// The highest generation this instance has seen.
    pub generation: u64,
    /// The token it holds, if any.
    pub token: Option<AccessToken>,
    pub quota: QuotaUsage,
    /// What the actor publishes now: it may adopt a token while the refresh waits.
    pub live: SharedStatus,
    /// The token held was fetched while the shared store was down and never stored: the fleet
    /// is already split, so holding it does not forbid fetching alone.
    pub unshared: bool,
}

impl Basis {
    /// Whether this instance holds a valid token right now: if so, nobody may fetch without
    /// coordination.
    pub fn holds_valid_token(&self) -> bool {
        self.live.load().valid_token(SystemTime::now()).is_some()
    }

    /// Whether `stored` is newer than what this instance based its request on: another
    /// instance refreshed meanwhile (higher generation, or the token it held was replaced).
    pub fn superseded_by(&self, stored: &Stored) -> bool {
        stored.record.generation > self.generation
            || self
                .token
                .as_ref()
                .is_some_and(|t| *t != stored.record.token)
    }
}

/// The upstream call a refresh may make; the store decides whether to make it.
pub type FetchFn = Box<dyn FnOnce() -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>>>;

/// How a refresh ended.
#[derive(Debug)]
pub enum Refreshed {
    /// This instance fetched a new token. `store_error` says why it is not (yet) stored.
    Fetched {
        stored: Stored,
        store_error: Option<String>,
    },
    /// Another instance had already refreshed; its record was adopted with no upstream call.
    Adopted(Stored),
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The shared store cannot coordinate the refresh while the fleet's token is still valid:
    /// fetching alone would invalidate the token every other instance serves.
    #[error("shared store unavailable: {0}")]
    Store(String),
}

/// Health of a shared store, for readiness and metrics.
#[derive(Clone, Debug)]
pub struct StoreHealth {
    pub kind: &'static str,
    pub up: bool,
    pub detail: String,
}

/// Builds the record a fetch produced, counting the call in the day's quota.
pub fn stored_from_fetch(
    key: &AppKey,
    fetched: Fetched,
    generation: u64,
    mut quota: QuotaUsage,
    fetched_by: Option<String>,
) -> Stored {
    quota.count(SystemTime::now());
    let depends_on = fetched.depends_on;
    Stored {
        depends_on,
        record: TokenRecord {
            appid: key.appid.clone(),
            token: fetched.token,
            fetched_at: fetched.requested_at,
            expires_at: fetched.requested_at + fetched.expires_in,
            generation,
        },
        quota,
        fetched_by,
    }
}

/// Where token records live. One store serves every actor of the process.
pub trait TokenStore: Send + Sync + 'static {
    /// The last saved record of `key`, if any. A record that cannot be decoded is reported as
    /// absent (and logged) rather than as an error: the cure is the same, fetch a new token.
    fn load(&self, key: &AppKey) -> BoxFuture<'static, anyhow::Result<Option<Stored>>>;

    /// Saves `stored` durably, unless the store already holds a newer generation (a shared
    /// store fences old writers): `Ok(true)` when written.
    fn save(&self, key: &AppKey, stored: &Stored) -> BoxFuture<'static, anyhow::Result<bool>>;

    /// Gets a new token: by default fetch, then save. A shared store coordinates instances
    /// here so that one fetch serves the fleet.
    fn refresh(
        self: Arc<Self>,
        key: AppKey,
        basis: Basis,
        fetch: FetchFn,
    ) -> LocalBoxFuture<'static, Result<Refreshed, RefreshError>> {
        Box::pin(async move {
            let fetched = fetch().await?;
            let stored = stored_from_fetch(&key, fetched, basis.generation + 1, basis.quota, None);
            let store_error = match self.save(&key, &stored).await {
                Ok(_) => None,
                Err(e) => Some(format!("{e:#}")),
            };
            Ok(Refreshed::Fetched {
                stored,
                store_error,
            })
        })
    }

    /// Whether other processes write to this store too: actors then re-read it periodically
    /// and write back what it lost.
    fn shared(&self) -> bool {
        false
    }

    /// Calls `notify` whenever another instance changes `key`'s record.
    fn subscribe(&self, _key: &AppKey, _notify: Box<dyn Fn() + Send + Sync>) {}

    /// `None` for a local store that has no health to speak of.
    fn health(&self) -> Option<StoreHealth> {
        None
    }
}

/// The on-disk form of a record (JSON), versioned so the format can evolve.
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    v: u32,
    appid: String,
    token: String,
    fetched_at_ms: u64,
    expires_at_ms: u64,
    generation: u64,
    #[serde(default)]
    quota_day: u64,
    #[serde(default)]
    quota_used: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fetched_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    depends_on: Option<u64>,
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub(crate) fn encode(stored: &Stored) -> Vec<u8> {
    let record = &stored.record;
    let stored = StoredRecord {
        v: 1,
        appid: record.appid.clone(),
        token: record.token.expose().to_string(),
        fetched_at_ms: to_ms(record.fetched_at),
        expires_at_ms: to_ms(record.expires_at),
        generation: record.generation,
        quota_day: stored.quota.day,
        quota_used: stored.quota.used,
        fetched_by: stored.fetched_by.clone(),
        depends_on: stored.depends_on,
    };
    serde_json::to_vec(&stored).expect("a struct of strings and numbers always serializes")
}

pub(crate) fn decode(bytes: &[u8]) -> Option<Stored> {
    let s: StoredRecord = serde_json::from_slice(bytes).ok()?;
    if s.v != 1 || s.token.is_empty() {
        return None;
    }
    Some(Stored {
        record: TokenRecord {
            appid: s.appid,
            token: AccessToken::new(s.token),
            fetched_at: from_ms(s.fetched_at_ms),
            expires_at: from_ms(s.expires_at_ms),
            generation: s.generation,
        },
        quota: QuotaUsage {
            day: s.quota_day,
            used: s.quota_used,
        },
        fetched_by: s.fetched_by,
        depends_on: s.depends_on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_to_the_millisecond() {
        let rec = Stored {
            record: TokenRecord {
                appid: "wx1".into(),
                token: AccessToken::new("tok"),
                fetched_at: from_ms(1_700_000_000_123),
                expires_at: from_ms(1_700_007_200_123),
                generation: 7,
            },
            quota: QuotaUsage {
                day: 20_000,
                used: 3,
            },
            fetched_by: Some("host-1".into()),
            depends_on: Some(4),
        };
        assert_eq!(decode(&encode(&rec)), Some(rec));
        assert_eq!(decode(b"garbage"), None);
    }
}
