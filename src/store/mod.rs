//! Persistence of token records, so a restart reuses a valid token instead of fetching again.

pub mod embedded;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::token::{AccessToken, QuotaUsage, TokenRecord};

pub use embedded::EmbeddedStore;

/// What is kept per app: its token, and the day's quota usage as of that token's fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub record: TokenRecord,
    pub quota: QuotaUsage,
}

/// Where token records live between restarts. Keyed by the app's configured name; the record
/// carries the appid, and a record of another appid is ignored by the caller.
pub trait TokenStore: Send + Sync + 'static {
    /// The last saved record of `app`, if any. A record that cannot be decoded is reported as
    /// absent (and logged) rather than as an error: the cure is the same, fetch a new token.
    fn load(&self, app: &str) -> BoxFuture<'static, anyhow::Result<Option<Stored>>>;

    /// Saves `stored` durably: when the future resolves `Ok`, a crash cannot lose it.
    fn save(&self, app: &str, stored: &Stored) -> BoxFuture<'static, anyhow::Result<()>>;
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
        };
        assert_eq!(decode(&encode(&rec)), Some(rec));
        assert_eq!(decode(b"garbage"), None);
    }
}
