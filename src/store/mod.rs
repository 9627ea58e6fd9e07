//! Persistence and sharing of token records: a restart reuses a valid token instead of
//! fetching again, and (with Redis) a fleet of instances shares one token and one refresher.

pub mod embedded;
pub mod messages;
pub mod platform;
pub mod redis;
mod redis_batch;
pub mod rekey;
#[cfg(test)]
mod seal_bench;
pub mod sealed;
pub mod wecom;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::{BoxFuture, LocalBoxFuture};
use serde::{Deserialize, Serialize};

use crate::config::MAX_TOKEN_LIFETIME;
use crate::seal::Keyring;
use crate::secret::AccessToken;
use crate::status::{QuotaUsage, SharedStatus, TokenRecord};
use crate::time::UnixMillis;
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

impl AppKey {
    /// The `app` label of this key's metrics, as the actors use it: the app name, or
    /// `name:kind_ticket` for a ticket (whose key name is `name/ticket/kind`).
    pub fn metric_label(&self) -> String {
        crate::config::labels::store_key_label(&self.name)
    }
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
    /// The fetch would be a forced refresh (stable grant): a shared store spends it from the
    /// fleet's budget first, and refuses the refresh when that is used up.
    pub force: bool,
    /// The daily limit of calls to check the fleet's count against, if any: a shared store
    /// refuses a refresh past it while the token is still valid.
    pub daily_quota: Option<u64>,
}

impl Basis {
    /// The record a fetch on this basis produced: the next generation, the call counted in the
    /// day's quota (see [`stored_from_fetch`]).
    pub fn into_record(self, key: &AppKey, fetched: Fetched, fetched_by: Option<String>) -> Stored {
        let generation = self.generation.saturating_add(1);
        stored_from_fetch(key, fetched, generation, self.quota, fetched_by)
    }

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

/// Told of a change to a record by another instance: with the generation it announced, or
/// `None` when any record may have changed (a reconnect, or a writer that did not say).
pub type Notify = dyn Fn(Option<u64>) + Send + Sync;

/// The upstream call a refresh may make; the store decides whether to make it.
pub type FetchFn = Box<dyn FnOnce() -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>>>;

/// What [`TokenStore::refresh`] returns: local, because the fetch it may await is (awc's
/// client is not `Send`).
pub type RefreshFuture = LocalBoxFuture<'static, Result<Refreshed, RefreshError>>;

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
    /// The fleet's budget for this call is used up (the day's calls, or WeChat's limits on
    /// forced refreshes); the token in service stays.
    #[error("{message}")]
    Budget {
        budget: Budget,
        message: String,
        /// The fleet's count of calls today, when the store read it.
        quota: Option<QuotaUsage>,
    },
}

/// Which of the fleet's budgets refused a refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// The fleet's token calls today reached the app's `daily_quota`.
    DailyQuota,
    /// WeChat's limits on forced refreshes of stable tokens (20 a day, 30 s apart).
    ForcedRefresh,
}

impl Budget {
    /// The `reason` a refused refresh publishes (readiness, the 503 body) and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::DailyQuota => "daily_quota",
            Budget::ForcedRefresh => "forced_refresh",
        }
    }
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
            // Saturating: a lifetime that does not fit yields an already expired record
            // rather than a panic.
            expires_at: fetched
                .requested_at
                .checked_add(fetched.expires_in)
                .unwrap_or(fetched.requested_at),
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

    /// The records of many keys at once, in the order of `keys`: start-up reads every
    /// credential's record in one pass instead of one round trip each. By default, one load
    /// after the other.
    fn load_many(
        &self,
        keys: Vec<AppKey>,
    ) -> BoxFuture<'static, anyhow::Result<Vec<Option<Stored>>>> {
        let loads: Vec<_> = keys.iter().map(|k| self.load(k)).collect();
        Box::pin(async move {
            let mut out = Vec::with_capacity(loads.len());
            for load in loads {
                out.push(load.await?);
            }
            Ok(out)
        })
    }

    /// Saves `stored` durably, unless the store already holds a newer generation (a shared
    /// store fences old writers): `Ok(true)` when written.
    fn save(&self, key: &AppKey, stored: &Stored) -> BoxFuture<'static, anyhow::Result<bool>>;

    /// Gets a new token: by default fetch, then save. A shared store coordinates instances
    /// here so that one fetch serves the fleet.
    fn refresh(self: Arc<Self>, key: AppKey, basis: Basis, fetch: FetchFn) -> RefreshFuture {
        Box::pin(async move {
            let stored = basis.into_record(&key, fetch().await?, None);
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

    /// A periodic re-read of a shared store, covering missed notifications: no caller waits on
    /// it, so it may wait a little to share a round trip with other reads. By default, `load`.
    fn load_lazy(&self, key: &AppKey) -> BoxFuture<'static, anyhow::Result<Option<Stored>>> {
        self.load(key)
    }

    /// Calls `notify` whenever another instance changes `key`'s record, with the generation
    /// written when the change said.
    fn subscribe(&self, _key: &AppKey, _notify: Box<Notify>) {}

    /// `None` for a local store that has no health to speak of.
    fn health(&self) -> Option<StoreHealth> {
        None
    }

    /// The key names (`AppKey::name`) whose latest record is not durable yet: a save failed
    /// and the store is still retrying it. A restart now would bring back an older token.
    fn not_durable(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The on-disk form of a record (JSON), versioned so the format can evolve. Its times are
/// [`UnixMillis`]: one out of range does not parse, so the record is corrupt.
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    v: u32,
    appid: String,
    token: String,
    fetched_at_ms: UnixMillis,
    expires_at_ms: UnixMillis,
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

/// Largest encoded record accepted from a store: a real one is a few hundred bytes (the token
/// at most 4 KiB), so anything bigger is garbage and is not even parsed.
const MAX_RECORD_BYTES: usize = 16 * 1024;
/// Highest generation accepted. One refresh a second for a million years stays below it, and
/// it is so far below `u64::MAX` that `+ 1` can never wrap.
pub const MAX_GENERATION: u64 = 1 << 48;
/// A record fetched "in the future" by more than this is not a clock skew between instances.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(86_400);
/// More calls on one quota day than any WeChat limit allows (the stable grant: 500,000).
const MAX_QUOTA_USED: u64 = 10_000_000;
/// Longest instance name in `fetched_by` (it is logged).
const MAX_INSTANCE_BYTES: usize = 256;

/// Why a stored record is not used. Says which rule it broke, never what the token is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corrupt {
    #[error("record is larger than {MAX_RECORD_BYTES} bytes")]
    TooLarge,
    #[error("record is not valid JSON of the expected shape ({0})")]
    Unparsable(&'static str),
    #[error("record format version {0} is not supported")]
    Version(u32),
    #[error("record names another appid")]
    OtherAppid,
    #[error("token is empty, longer than {max} bytes or has non-printable bytes", max = crate::secret::MAX_CREDENTIAL_LEN)]
    Token,
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    /// The token is sealed and does not open: the record is as good as absent, but it is
    /// counted apart (`op="decrypt"`), as the cure is a key, not a refetch alone.
    #[error("{0}")]
    Sealed(sealed::Unreadable),
}

/// What may be said of a serde error on a stored record (token, ticket, authorizer, code):
/// that one of its times is out of range, or else the error's category. Never serde's message,
/// which may quote a value (a token). A time's refusal is told by [`crate::time::OUT_OF_RANGE`],
/// the message of our own error: serde's messages that quote input start with serde's words.
pub(crate) fn json_refusal(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data if e.to_string().starts_with(crate::time::OUT_OF_RANGE) => {
            "a time out of range"
        }
        Category::Io => "io",
        Category::Syntax => "syntax",
        Category::Data => "data",
        Category::Eof => "eof",
    }
}

/// The stored form of `stored`, its token sealed with `ring`'s current key (if any) and bound
/// to the record's appid: a copy under another app's key does not open.
pub fn encode(ring: &Keyring, stored: &Stored) -> Vec<u8> {
    let record = &stored.record;
    let token = sealed::seal(
        ring,
        &sealed::token_record(&record.appid),
        "token",
        record.token.expose(),
    );
    let stored = StoredRecord {
        v: 1,
        appid: record.appid.clone(),
        token,
        fetched_at_ms: UnixMillis::saturating_from(record.fetched_at),
        expires_at_ms: UnixMillis::saturating_from(record.expires_at),
        generation: record.generation,
        quota_day: stored.quota.day,
        quota_used: stored.quota.used,
        fetched_by: stored.fetched_by.clone(),
        depends_on: stored.depends_on,
    };
    serde_json::to_vec(&stored).expect("a struct of strings and numbers always serializes")
}

/// [`decode`] for a store's read path: a corrupt record is logged (without its token),
/// counted in `wxtoken_store_errors_total{op="decode"}`, and reported as absent; one whose
/// token does not open is counted as `op="decrypt"` and logged with the key id it needs.
pub(crate) fn decode_or_discard(
    ring: &Keyring,
    key: &AppKey,
    bytes: &[u8],
    metrics: &crate::metrics::Metrics,
    store: &'static str,
) -> Option<Stored> {
    match decode(ring, key, bytes, SystemTime::now()) {
        Ok(s) => Some(s),
        Err(Corrupt::Sealed(why)) => {
            metrics.store_failed(&key.metric_label(), "decrypt");
            tracing::error!(app = %key.name, store, error = %why, remedy = sealed::remedy(&why),
                "stored token record does not decrypt; ignoring it (a new token is fetched)");
            None
        }
        Err(why) => {
            metrics.store_failed(&key.metric_label(), "decode");
            tracing::error!(app = %key.name, store, error = %why,
                "stored token record is corrupt; ignoring it (it is never served)");
            None
        }
    }
}

/// Parses a record read from a store for `key`, at `now`, and checks everything the server
/// later relies on: a record that passes cannot make time arithmetic overflow, a generation
/// wrap, or another app's token be served. One that fails is to be treated as absent. A sealed
/// token is opened with `ring` (plaintext passes unless it requires encryption).
pub fn decode(
    ring: &Keyring,
    key: &AppKey,
    bytes: &[u8],
    now: SystemTime,
) -> Result<Stored, Corrupt> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(Corrupt::TooLarge);
    }
    // Times out of range are refused here, by their type.
    let s: StoredRecord =
        serde_json::from_slice(bytes).map_err(|e| Corrupt::Unparsable(json_refusal(&e)))?;
    if s.v != 1 {
        return Err(Corrupt::Version(s.v));
    }
    if s.appid != key.appid {
        return Err(Corrupt::OtherAppid);
    }
    let token = sealed::open(ring, &sealed::token_record(&s.appid), "token", &s.token)
        .map_err(Corrupt::Sealed)?;
    if !crate::secret::plausible_credential(&token) {
        return Err(Corrupt::Token);
    }
    if s.fetched_at_ms > UnixMillis::saturating_from(now).saturating_add(MAX_CLOCK_SKEW) {
        return Err(Corrupt::OutOfRange("fetched_at_ms"));
    }
    if s.expires_at_ms < s.fetched_at_ms {
        return Err(Corrupt::OutOfRange("expires_at_ms (before fetched_at_ms)"));
    }
    if s.expires_at_ms > s.fetched_at_ms.saturating_add(MAX_TOKEN_LIFETIME) {
        return Err(Corrupt::OutOfRange("expires_at_ms (lifetime over 7 days)"));
    }
    if s.generation > MAX_GENERATION {
        return Err(Corrupt::OutOfRange("generation"));
    }
    if s.depends_on.is_some_and(|g| g > MAX_GENERATION) {
        return Err(Corrupt::OutOfRange("depends_on"));
    }
    let today = QuotaUsage::day_of(now);
    if s.quota_day > today.saturating_add(1) || s.quota_used > MAX_QUOTA_USED {
        return Err(Corrupt::OutOfRange("quota"));
    }
    if s.fetched_by
        .as_ref()
        .is_some_and(|f| f.len() > MAX_INSTANCE_BYTES || f.chars().any(char::is_control))
    {
        return Err(Corrupt::OutOfRange("fetched_by"));
    }
    Ok(Stored {
        record: TokenRecord {
            appid: s.appid,
            token: AccessToken::new(token),
            fetched_at: s.fetched_at_ms.to_system_time(),
            expires_at: s.expires_at_ms.to_system_time(),
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

    fn plain() -> Keyring {
        Keyring::plaintext()
    }

    fn ring(byte: u8) -> Keyring {
        use crate::seal::{StoreKey, KEY_LEN};
        Keyring::new(Some(StoreKey::from_bytes(&[byte; KEY_LEN])), vec![], false)
    }

    fn key() -> AppKey {
        AppKey {
            name: "shop".into(),
            appid: "wx1".into(),
        }
    }

    fn from_ms(ms: u64) -> SystemTime {
        UnixMillis::new(ms).expect("in range").to_system_time()
    }

    fn now() -> SystemTime {
        from_ms(1_700_000_100_000)
    }

    fn record() -> Stored {
        Stored {
            record: TokenRecord {
                appid: "wx1".into(),
                token: AccessToken::new("S3CRET-VALUE"),
                fetched_at: from_ms(1_700_000_000_123),
                expires_at: from_ms(1_700_007_200_123),
                generation: 7,
            },
            quota: QuotaUsage {
                day: QuotaUsage::day_of(now()),
                used: 3,
            },
            fetched_by: Some("host-1".into()),
            depends_on: Some(4),
        }
    }

    /// The encoded `record()` with one JSON field replaced.
    fn with(field: &str, value: serde_json::Value) -> Vec<u8> {
        let mut v: serde_json::Value =
            serde_json::from_slice(&encode(&plain(), &record())).unwrap();
        v[field] = value;
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn records_round_trip_to_the_millisecond() {
        let rec = record();
        assert_eq!(
            decode(&plain(), &key(), &encode(&plain(), &rec), now()),
            Ok(rec)
        );
    }

    #[test]
    fn every_kind_of_bad_record_is_refused_without_quoting_the_token() {
        use serde_json::json;
        let max = json!(u64::MAX);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"garbage".to_vec()),
            ("huge", vec![b' '; MAX_RECORD_BYTES + 1]),
            ("version", with("v", json!(2))),
            ("other appid", with("appid", json!("wx2"))),
            ("empty token", with("token", json!(""))),
            ("token with space", with("token", json!("a b"))),
            ("long token", with("token", json!("x".repeat(4097)))),
            ("expiry u64::MAX", with("expires_at_ms", max.clone())),
            ("fetch in the future", with("fetched_at_ms", max.clone())),
            ("expiry before fetch", with("expires_at_ms", json!(1))),
            (
                "lifetime over 7 days",
                with(
                    "expires_at_ms",
                    json!(1_700_000_000_123u64 + 8 * 86_400_000),
                ),
            ),
            ("generation u64::MAX", with("generation", max.clone())),
            ("generation negative", with("generation", json!(-1))),
            ("depends_on", with("depends_on", max.clone())),
            ("quota used", with("quota_used", max.clone())),
            ("quota day", with("quota_day", max)),
            ("fetched_by", with("fetched_by", json!("a\nb"))),
        ];
        for (what, bytes) in cases {
            let err = decode(&plain(), &key(), &bytes, now()).expect_err(what);
            assert!(!err.to_string().contains("S3CRET"), "{what}: {err}");
        }
        // The largest values in range still decode.
        let ok = with("generation", json!(MAX_GENERATION));
        assert!(decode(&plain(), &key(), &ok, now()).is_ok());
    }

    #[test]
    fn a_time_out_of_range_is_a_corrupt_record_and_said_so() {
        use serde_json::json;
        // Past 9999-12-31 (and so past RFC 3339) with a lifetime that alone would pass.
        let year_10000 = 253_402_300_800_000u64;
        let mut v: serde_json::Value =
            serde_json::from_slice(&encode(&plain(), &record())).unwrap();
        v["fetched_at_ms"] = json!(year_10000);
        v["expires_at_ms"] = json!(year_10000 + 1);
        let far_now = UnixMillis::MAX.to_system_time();
        let err = decode(&plain(), &key(), &serde_json::to_vec(&v).unwrap(), far_now).unwrap_err();
        assert_eq!(err, Corrupt::Unparsable("a time out of range"));
        assert!(!err.to_string().contains("S3CRET"), "{err}");
        // Another kind of bad value is only named by its category.
        let err = decode(
            &plain(),
            &key(),
            &with("expires_at_ms", json!("S3CRET")),
            now(),
        )
        .unwrap_err();
        assert_eq!(err, Corrupt::Unparsable("data"));
    }

    #[test]
    fn what_is_written_can_be_read_back_however_far_its_times() {
        // A record whose times are past what a store can hold is written clamped, never as a
        // value its own decode would refuse.
        let mut rec = record();
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1_000_000);
        rec.record.fetched_at = far;
        rec.record.expires_at = far;
        let bytes = encode(&plain(), &rec);
        let decoded = decode(&plain(), &key(), &bytes, far).expect("decodes");
        assert_eq!(decoded.record.expires_at, UnixMillis::MAX.to_system_time());
    }

    #[test]
    fn a_sealed_record_round_trips_and_holds_no_token() {
        let rec = record();
        let bytes = encode(&ring(1), &rec);
        assert!(!String::from_utf8_lossy(&bytes).contains("S3CRET"));
        assert_eq!(decode(&ring(1), &key(), &bytes, now()), Ok(rec.clone()));
        // A plaintext record still reads under a key, and is sealed on its next save.
        let plain_bytes = encode(&plain(), &rec);
        assert_eq!(decode(&ring(1), &key(), &plain_bytes, now()), Ok(rec));
    }

    #[test]
    fn a_sealed_token_does_not_open_under_another_key_or_in_another_record() {
        let bytes = encode(&ring(1), &record());
        let err = decode(&ring(2), &key(), &bytes, now()).unwrap_err();
        assert!(matches!(err, Corrupt::Sealed(_)), "{err:?}");
        assert!(!err.to_string().contains("S3CRET"), "{err}");
        // The same sealed token copied into another app's record (appid rewritten to pass the
        // appid check) is refused: it is bound to the appid it was written for.
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["appid"] = "wx2".into();
        let other = AppKey {
            name: "other".into(),
            appid: "wx2".into(),
        };
        let err = decode(&ring(1), &other, &serde_json::to_vec(&v).unwrap(), now()).unwrap_err();
        assert!(matches!(err, Corrupt::Sealed(_)), "{err:?}");
    }

    #[test]
    fn ticket_keys_are_labelled_like_their_actors() {
        let k = AppKey {
            name: "shop/ticket/jsapi".into(),
            appid: "wx1/ticket/jsapi".into(),
        };
        assert_eq!(k.metric_label(), "shop:jsapi_ticket");
        assert_eq!(key().metric_label(), "shop");
    }
}
