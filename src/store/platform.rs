//! The Open Platform's durable records: each platform's last verify ticket, and every
//! authorizer's refresh token, granted permissions and state. Unlike token records these are
//! data, not cache: a lost refresh token can only be replaced by the merchant authorizing
//! again, so a store keeps them durably (the embedded store in its file; the Redis store in
//! Redis and in each instance's local file, written back when Redis comes back empty).
//!
//! Writes are last-writer-wins by `updated_at` (milliseconds): a record older than the stored
//! one is not written, so an instance replaying a stale view (after a partition, a restart from
//! its local file) never undoes a newer change.
//!
//! Also here: the authorization codes of `authorized` / `updateauthorized` pushes
//! ([`CodeRecord`]). A push is answered once its code is stored, and the code is exchanged in
//! the background; a code stored and not yet exchanged is resumed after a crash, by whichever
//! instance starts or looks first. Code records are keyed by the code's SHA-256, keep the code
//! only while it is pending, and once done (exchanged or dead) are never made pending again.

use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::json_refusal;
use super::sealed::{self, Unreadable};
use crate::metrics::Metrics;
use crate::seal::Keyring;
use crate::secret::AccessToken;
use crate::time::UnixMillis;

/// A platform's component_verify_ticket as last pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketRecord {
    /// The `AppId` of the push: the platform's component appid.
    pub component_appid: String,
    pub ticket: AccessToken,
    /// When it arrived (the push's `CreateTime` is WeChat's clock; this is ours).
    pub received_at: SystemTime,
}

impl TicketRecord {
    /// The write order: `received_at` in milliseconds, as stored.
    pub fn order(&self) -> u64 {
        UnixMillis::saturating_from(self.received_at).as_millis()
    }
}

/// Where an authorizer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizerState {
    /// Authorized, with a refresh token: its token is served.
    Authorized,
    /// Its refresh token is refused (61023) and WeChat lists the same one: only the merchant
    /// authorizing again helps. Not called until then.
    NeedsReauth,
    /// It left the platform (`unauthorized`, or no longer listed). Not called.
    Revoked,
}

impl AuthorizerState {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizerState::Authorized => "authorized",
            AuthorizerState::NeedsReauth => "needs_reauth",
            AuthorizerState::Revoked => "revoked",
        }
    }
}

/// One authorized account of a platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizerRecord {
    pub appid: String,
    /// `None` only when WeChat never gave one (listed with an empty one); never replaced by
    /// `None` once known.
    pub refresh_token: Option<AccessToken>,
    /// The permission set ids granted (`func_info`), sorted.
    pub func_ids: Vec<u32>,
    pub state: AuthorizerState,
    /// When the merchant authorized (WeChat's `auth_time`, or when the event arrived).
    pub authorized_at: Option<SystemTime>,
    /// The last refresh failure that changed the state, for the listing (no secret in it).
    pub last_error: Option<String>,
    /// The write order: a save older than the stored record is dropped.
    pub updated_at: SystemTime,
}

impl AuthorizerRecord {
    /// An account that authorized the platform, with no failure on record.
    pub fn authorized(
        appid: String,
        refresh_token: Option<AccessToken>,
        func_ids: Vec<u32>,
        authorized_at: Option<SystemTime>,
        updated_at: SystemTime,
    ) -> AuthorizerRecord {
        AuthorizerRecord {
            appid,
            refresh_token,
            func_ids,
            state: AuthorizerState::Authorized,
            authorized_at,
            last_error: None,
            updated_at,
        }
    }

    /// The write order: `updated_at` in milliseconds, as stored.
    pub fn order(&self) -> u64 {
        UnixMillis::saturating_from(self.updated_at).as_millis()
    }
}

/// A pushed event of a kind wxtoken does not act on (`InfoType` other than the ticket and the
/// authorization events), kept as WeChat sent it, decrypted, for whoever needs it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub info_type: String,
    pub received_at: SystemTime,
    /// The decrypted XML (it may carry codes: the store is as private as its tokens).
    pub xml: String,
}

/// Where a pushed authorization code stands. Ordered: a record moves only forward, so a done
/// code is never resumed again because an old copy of its pending record came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeState {
    /// Stored with the push, not exchanged yet: resumed after a crash.
    Pending,
    /// WeChat refused it (61009 invalid, 61010 expired), or it expired before an exchange.
    Dead,
    /// Exchanged: its account is stored.
    Exchanged,
}

impl CodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeState::Pending => "pending",
            CodeState::Dead => "dead",
            CodeState::Exchanged => "exchanged",
        }
    }
}

/// An authorization code as wxtoken keeps it: from an `authorized` or `updateauthorized` push
/// (pending until exchanged), or a code exchanged from the redirect (so a fleet knows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    /// The SHA-256 of the code, 64 lowercase hex digits: the record's key. Logs and keys name
    /// a code by this, never by the code.
    pub digest: String,
    /// The account the code is for (the push's `AuthorizerAppid`, or the exchange's answer).
    pub authorizer_appid: String,
    /// The code, while it is pending (a resumed exchange needs it); `None` once done.
    pub code: Option<AccessToken>,
    pub state: CodeState,
    /// Why a dead code is dead: WeChat's errcode (61009, 61010).
    pub errcode: Option<i64>,
    /// When WeChat stops honouring it (`AuthorizationCodeExpiredTime`, at most ten minutes).
    pub expires_at: SystemTime,
    pub received_at: SystemTime,
    pub updated_at: SystemTime,
}

/// The write order's resolution: milliseconds below the state, which weighs more.
const ORDER_STATE_SHIFT: u32 = 48;
// Every time a record can hold fits below the state (9999-12-31 is about 2^47.85 ms).
const _: () = assert!(UnixMillis::MAX.as_millis() < 1 << ORDER_STATE_SHIFT);

impl CodeRecord {
    /// The write order: the state first (a done record is never replaced by a pending one),
    /// then `updated_at` in milliseconds.
    pub fn order(&self) -> u64 {
        let rank = match self.state {
            CodeState::Pending => 0,
            CodeState::Dead => 1,
            CodeState::Exchanged => 2,
        };
        (rank << ORDER_STATE_SHIFT) | UnixMillis::saturating_from(self.updated_at).as_millis()
    }

    /// This record done at `now`: `state` (exchanged or dead) with WeChat's `errcode`, the
    /// code itself dropped (a done code is never sent again).
    pub fn done(&self, state: CodeState, errcode: Option<i64>, now: SystemTime) -> CodeRecord {
        CodeRecord {
            code: None,
            state,
            errcode,
            updated_at: now,
            ..self.clone()
        }
    }

    /// Whether it may be forgotten at `now`: its code expired long ago, so neither WeChat nor
    /// a late copy of the push can bring it up again.
    pub fn forgettable(&self, now: SystemTime) -> bool {
        // Saturating: a record's times come from outside (a store), never a panic.
        self.expires_at
            .checked_add(CODE_RECORD_KEPT)
            .is_some_and(|t| t < now)
    }
}

/// How long a code record is kept past its code's expiry: the records of done codes answer a
/// late arrival of the same code (the push after the redirect) for that long.
pub const CODE_RECORD_KEPT: Duration = Duration::from_secs(3600);

/// The SHA-256 of an authorization code, as [`CodeRecord::digest`] holds it.
pub fn code_digest(code: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(code.as_bytes()))
}

/// Whether `digest` can be a [`CodeRecord::digest`] (and so part of a store key).
pub fn check_code_digest(digest: &str) -> anyhow::Result<()> {
    if digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        anyhow::bail!("a code digest is 64 lowercase hex digits")
    }
}

/// At most this many events of other kinds are kept per platform in Redis (the newest); the
/// embedded store keeps each one, as WeChat sends them rarely and only signed.
pub const MAX_REDIS_EVENTS: isize = 1000;

/// A platform store's operation: boxed, so that both stores implement one trait, and `Send`,
/// as the handlers that await it run on any worker.
pub type StoreIo<T> = BoxFuture<'static, anyhow::Result<T>>;

/// Where the durable platform records live.
pub trait PlatformStore: Send + Sync + 'static {
    /// Saves a pushed event of another kind durably before the push is answered `success`.
    fn save_event(&self, platform: &str, event: &EventRecord) -> StoreIo<()>;

    /// The platform's last saved ticket.
    fn load_ticket(&self, platform: &str) -> StoreIo<Option<TicketRecord>>;

    /// Saves the ticket durably before the push is answered `success`, unless the stored one
    /// was received later (then this one is dropped, and that is no error). An error is as
    /// for [`PlatformStore::save_authorizers`].
    fn save_ticket(&self, platform: &str, ticket: &TicketRecord) -> StoreIo<()>;

    /// Every authorizer record of the platform (start-up, reconciliation). Records that cannot
    /// be decoded are skipped and logged, never an error for the rest.
    fn load_authorizers(&self, platform: &str) -> StoreIo<Vec<AuthorizerRecord>>;

    /// One authorizer's record, as stored now.
    fn load_authorizer(&self, platform: &str, appid: &str) -> StoreIo<Option<AuthorizerRecord>>;

    /// Saves records durably (one transaction or pipeline for the batch), each unless the
    /// stored one is newer (`updated_at`). Answers, per record, whether it was written: `false`
    /// means a newer record is stored (re-read it). A record equal to the stored one counts as
    /// written.
    ///
    /// An error means the batch is not durable: the event it came from must not be answered
    /// `success`. The store still keeps the records and retries them (see
    /// [`PlatformStore::not_durable_records`]), so the caller need not retry itself.
    fn save_authorizers(&self, platform: &str, records: &[AuthorizerRecord]) -> StoreIo<Vec<bool>>;

    /// The records (as `{platform}/ticket` or `{platform}/authorizer/{appid}`) whose latest
    /// save failed and is still being retried: a crash now would lose them. For readiness.
    fn not_durable_records(&self) -> Vec<String> {
        Vec::new()
    }

    /// Saves a code record durably (before the push it came with is answered), unless the
    /// stored one is further on ([`CodeRecord::order`]). Whether it was written; an error is as
    /// for [`PlatformStore::save_authorizers`].
    fn save_code(&self, platform: &str, record: &CodeRecord) -> StoreIo<bool>;

    /// Every code record of the platform (corrupt ones skipped and logged).
    fn load_codes(&self, platform: &str) -> StoreIo<Vec<CodeRecord>>;

    /// One code's record, by [`CodeRecord::digest`].
    fn load_code(&self, platform: &str, digest: &str) -> StoreIo<Option<CodeRecord>>;

    /// Removes code records (those [`CodeRecord::forgettable`]).
    fn forget_codes(&self, platform: &str, digests: &[String]) -> StoreIo<()>;

    /// Claims the exchange of a code for `ttl` for this instance: false while another instance
    /// holds the claim. Claiming again before the claim lapses renews it. A store with one
    /// instance grants every claim (the process serialises its own exchanges).
    fn claim_code(&self, _platform: &str, _digest: &str, _ttl: Duration) -> StoreIo<bool> {
        Box::pin(futures_util::future::ready(Ok(true)))
    }

    /// Gives up this instance's claim of a code, if it still holds it.
    fn release_code(&self, _platform: &str, _digest: &str) -> StoreIo<()> {
        Box::pin(futures_util::future::ready(Ok(())))
    }
}

/// Resumes the code records of `platform` still pending: every record is read, those
/// [`CodeRecord::forgettable`] at `now` are forgotten (a failure to forget is logged: the next
/// look tries again), and `resume` is handed each pending one that still holds its code. How
/// many were pending; 1 when the records could not be read, so the caller looks again soon.
pub async fn resume_pending(
    store: &dyn PlatformStore,
    platform: &str,
    now: SystemTime,
    mut resume: impl FnMut(CodeRecord, AccessToken),
) -> usize {
    let records = match store.load_codes(platform).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(platform, error = %format!("{e:#}"),
                "cannot read the stored authorization codes; trying again");
            return 1;
        }
    };
    let (old, current): (Vec<CodeRecord>, Vec<CodeRecord>) =
        records.into_iter().partition(|r| r.forgettable(now));
    if !old.is_empty() {
        let digests: Vec<String> = old.into_iter().map(|r| r.digest).collect();
        if let Err(e) = store.forget_codes(platform, &digests).await {
            tracing::warn!(platform, error = %format!("{e:#}"),
                "cannot forget old authorization codes; trying again later");
        }
    }
    let pending: Vec<CodeRecord> = current
        .into_iter()
        .filter(|r| r.state == CodeState::Pending)
        .collect();
    let count = pending.len();
    for r in pending {
        if let Some(code) = r.code.clone() {
            resume(r, code);
        }
    }
    count
}

/// The label of a platform's series in the store metrics, as for its component token.
pub use crate::config::labels::platform_label as metric_label;

/// Whether `name` can be part of a store key: what the configuration allows for a platform
/// name (letters, digits, '-', '_', '.'; at most 64), so keys never run into each other.
pub fn check_platform(name: &str) -> anyhow::Result<()> {
    if key_safe(name) {
        Ok(())
    } else {
        anyhow::bail!(
            "platform name {name:?} cannot be stored: use 1-64 letters, digits, '-', '_' or '.'"
        )
    }
}

/// Whether `appid` can be part of a store key (as [`check_platform`]; WeChat's appids are
/// `wx` and hexadecimal digits).
pub fn check_appid(appid: &str) -> anyhow::Result<()> {
    if key_safe(appid) {
        Ok(())
    } else {
        anyhow::bail!("authorizer appid {appid:?} cannot be stored: use 1-64 letters, digits, '-', '_' or '.'")
    }
}

/// The checks of a call naming one authorizer of a platform.
pub fn check_authorizer_key(platform: &str, appid: &str) -> anyhow::Result<()> {
    check_platform(platform).and_then(|()| check_appid(appid))
}

/// The checks of a save of authorizer records.
pub fn check_authorizers(platform: &str, records: &[AuthorizerRecord]) -> anyhow::Result<()> {
    check_platform(platform).and_then(|()| records.iter().try_for_each(|r| check_appid(&r.appid)))
}

/// The checks of a call naming one code record of a platform.
pub fn check_code_key(platform: &str, digest: &str) -> anyhow::Result<()> {
    check_platform(platform).and_then(|()| check_code_digest(digest))
}

/// The checks of a call naming several code records of a platform.
pub fn check_digests(platform: &str, digests: &[String]) -> anyhow::Result<()> {
    check_platform(platform).and_then(|()| digests.iter().try_for_each(|d| check_code_digest(d)))
}

/// The checks of a save of a code record.
pub fn check_code(platform: &str, record: &CodeRecord) -> anyhow::Result<()> {
    check_code_key(platform, &record.digest).and_then(|()| check_appid(&record.authorizer_appid))
}

/// A store call whose arguments passed `check`, or the refusal: a name that could break the key
/// scheme never reaches a store.
pub fn checked<T: Send + 'static>(
    check: anyhow::Result<()>,
    call: impl FnOnce() -> StoreIo<T>,
) -> StoreIo<T> {
    match check {
        Ok(()) => call(),
        Err(e) => Box::pin(futures_util::future::ready(Err(e))),
    }
}

fn key_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Where a store counts and logs a stored record that does not decode (or does not open).
#[derive(Clone, Copy)]
pub struct Corrupt<'a> {
    pub metrics: &'a Metrics,
    /// `embedded` or `redis`, for the log.
    pub store: &'static str,
    pub platform: &'a str,
}

impl Corrupt<'_> {
    /// A record that does not open: counted (`op="decrypt"`), and an error for the caller,
    /// never a skipped record (see [`Unreadable`]; [`sealed::unreadable_in`] finds it).
    pub fn unreadable(self, u: Unreadable) -> anyhow::Error {
        self.metrics
            .store_failed(&metric_label(self.platform), "decrypt");
        let holder = match self.store {
            "redis" => "Redis holds",
            "embedded" => "the embedded store holds",
            _ => "the store holds",
        };
        anyhow::Error::new(u).context(format!("{holder} a record that does not open"))
    }
}

/// Which stored record did not decode, named by its key (never by its content).
pub enum Stored<'a> {
    Ticket,
    Authorizer(&'a str),
    /// By its [`CodeRecord::digest`] as the key holds it.
    Code(&'a str),
}

/// A decoded stored record, or `None` after counting it as corrupt and logging why (the
/// decoders never quote a secret): a corrupt record is skipped, never an error for the rest.
/// A record whose secret does not open is not skipped: it is an error (see
/// [`Corrupt::unreadable`]), as treating a refresh token, a code or the verify ticket as
/// absent would lose what it holds.
pub fn skip_corrupt<T>(
    at: Corrupt<'_>,
    stored: Stored<'_>,
    decoded: Result<T, Refused>,
) -> anyhow::Result<Option<T>> {
    let why = match decoded {
        Ok(r) => return Ok(Some(r)),
        Err(Refused::Unreadable(u)) => return Err(at.unreadable(u)),
        Err(Refused::Corrupt(why)) => why,
    };
    let Corrupt {
        metrics,
        store,
        platform,
    } = at;
    metrics.store_failed(&metric_label(platform), "decode");
    match stored {
        Stored::Ticket => tracing::warn!(platform, store, error = %why,
            "stored verify ticket is corrupt; ignoring it"),
        Stored::Authorizer(appid) => tracing::warn!(platform, appid = ?appid, store, error = %why,
            "stored authorizer record is corrupt; skipping it"),
        Stored::Code(digest) => tracing::warn!(platform, code = ?digest, store, error = %why,
            "stored authorization code record is corrupt; skipping it"),
    }
    Ok(None)
}

/// The stored form of a ticket (JSON, versioned). The times of the stored forms here are
/// [`UnixMillis`], as those of token records: one out of range does not parse, so its record
/// is corrupt (skipped, logged and counted by the stores as a token record is).
#[derive(Serialize, Deserialize)]
struct TicketJson {
    v: u32,
    pub component_appid: String,
    pub ticket: String,
    pub received_at_ms: UnixMillis,
}

/// The stored form of an authorizer record (JSON, versioned).
#[derive(Serialize, Deserialize)]
struct AuthorizerJson {
    v: u32,
    pub appid: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub func_ids: Vec<u32>,
    pub state: AuthorizerState,
    #[serde(default)]
    pub authorized_at_ms: Option<UnixMillis>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub updated_at_ms: UnixMillis,
}

const VERSION: u32 = 1;

/// Why a stored platform record is not used. Neither says what its secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a record of ours (bad JSON, version, appid, a time out of range): skipped and
    /// logged by the stores, as before encryption.
    Corrupt(String),
    /// Its secret does not open: an error to the caller, never a skipped record (see
    /// [`Unreadable`]).
    Unreadable(Unreadable),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Corrupt(why) => f.write_str(why),
            Refused::Unreadable(u) => u.fmt(f),
        }
    }
}

impl From<String> for Refused {
    fn from(why: String) -> Refused {
        Refused::Corrupt(why)
    }
}

impl From<&str> for Refused {
    fn from(why: &str) -> Refused {
        Refused::Corrupt(why.to_string())
    }
}

impl From<Unreadable> for Refused {
    fn from(u: Unreadable) -> Refused {
        Refused::Unreadable(u)
    }
}

/// A sealed credential of a stored record, opened with `ring`: unreadable when it does not
/// open, corrupt (`malformed`, never quoting it) when what it holds cannot be a credential.
fn open_credential(
    ring: &Keyring,
    record: &str,
    field: &'static str,
    stored: &str,
    malformed: &str,
) -> Result<AccessToken, Refused> {
    let value = sealed::open(ring, record, field, stored)?;
    if !crate::secret::plausible_credential(&value) {
        return Err(malformed.into());
    }
    Ok(AccessToken::new(value))
}

/// The stored form of a ticket, sealed with `ring` and bound to `platform`'s ticket record.
pub fn encode_ticket(ring: &Keyring, platform: &str, t: &TicketRecord) -> Vec<u8> {
    let json = TicketJson {
        v: VERSION,
        component_appid: t.component_appid.clone(),
        ticket: sealed::seal(
            ring,
            &sealed::ticket_record(platform),
            "ticket",
            t.ticket.expose(),
        ),
        received_at_ms: UnixMillis::saturating_from(t.received_at),
    };
    serde_json::to_vec(&json).unwrap_or_default()
}

/// `platform`'s stored ticket, or why not (never quoting the ticket).
pub fn decode_ticket(
    ring: &Keyring,
    platform: &str,
    bytes: &[u8],
) -> Result<TicketRecord, Refused> {
    let json: TicketJson = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a ticket record ({})", json_refusal(&e)))?;
    if json.v != VERSION {
        return Err(format!("ticket record version {} is not supported", json.v).into());
    }
    let ticket = open_credential(
        ring,
        &sealed::ticket_record(platform),
        "ticket",
        &json.ticket,
        "the stored ticket is empty or malformed",
    )?;
    Ok(TicketRecord {
        component_appid: json.component_appid,
        ticket,
        received_at: json.received_at_ms.to_system_time(),
    })
}

/// The stored form of an authorizer record, its refresh token sealed with `ring` and bound to
/// the authorizer's record of `platform`.
pub fn encode_authorizer(ring: &Keyring, platform: &str, r: &AuthorizerRecord) -> Vec<u8> {
    let record = sealed::authorizer_record(platform, &r.appid);
    let json = AuthorizerJson {
        v: VERSION,
        appid: r.appid.clone(),
        refresh_token: r
            .refresh_token
            .as_ref()
            .map(|t| sealed::seal(ring, &record, "refresh_token", t.expose())),
        func_ids: r.func_ids.clone(),
        state: r.state,
        authorized_at_ms: r.authorized_at.map(UnixMillis::saturating_from),
        last_error: r.last_error.clone(),
        updated_at_ms: UnixMillis::saturating_from(r.updated_at),
    };
    serde_json::to_vec(&json).unwrap_or_default()
}

/// [`decode_authorizer`] for a record stored under `appid`: one naming another account is as
/// corrupt as one that does not decode.
pub fn decode_authorizer_of(
    ring: &Keyring,
    platform: &str,
    bytes: &[u8],
    appid: &[u8],
) -> Result<AuthorizerRecord, Refused> {
    let json = parse_authorizer(bytes)?;
    if json.appid.as_bytes() != appid {
        return Err("the record names another appid".into());
    }
    open_authorizer(ring, platform, json)
}

/// A stored authorizer record of `platform`, or why not (never quoting the refresh token).
pub fn decode_authorizer(
    ring: &Keyring,
    platform: &str,
    bytes: &[u8],
) -> Result<AuthorizerRecord, Refused> {
    open_authorizer(ring, platform, parse_authorizer(bytes)?)
}

fn parse_authorizer(bytes: &[u8]) -> Result<AuthorizerJson, Refused> {
    let json: AuthorizerJson = serde_json::from_slice(bytes)
        .map_err(|e| format!("not an authorizer record ({})", json_refusal(&e)))?;
    if json.v != VERSION {
        return Err(format!("authorizer record version {} is not supported", json.v).into());
    }
    if json.appid.is_empty() || json.appid.len() > 64 {
        return Err("the authorizer appid is empty or too long".into());
    }
    Ok(json)
}

fn open_authorizer(
    ring: &Keyring,
    platform: &str,
    json: AuthorizerJson,
) -> Result<AuthorizerRecord, Refused> {
    let record = sealed::authorizer_record(platform, &json.appid);
    let refresh_token = json
        .refresh_token
        .map(|t| {
            let malformed = "the stored refresh token is malformed";
            open_credential(ring, &record, "refresh_token", &t, malformed)
        })
        .transpose()?;
    Ok(AuthorizerRecord {
        appid: json.appid,
        refresh_token,
        func_ids: json.func_ids,
        state: json.state,
        authorized_at: json.authorized_at_ms.map(UnixMillis::to_system_time),
        last_error: json.last_error,
        updated_at: json.updated_at_ms.to_system_time(),
    })
}

/// The stored form of a code record (JSON, versioned). `order` is [`CodeRecord::order`],
/// written out so that Redis's script compares it without decoding times.
#[derive(Serialize, Deserialize)]
struct CodeJson {
    v: u32,
    digest: String,
    appid: String,
    #[serde(default)]
    code: Option<String>,
    state: CodeState,
    #[serde(default)]
    errcode: Option<i64>,
    expires_at_ms: UnixMillis,
    received_at_ms: UnixMillis,
    updated_at_ms: UnixMillis,
    order: u64,
}

/// The stored form of a code record, its code (while pending) sealed with `ring` and bound to
/// the code's record of `platform`.
pub fn encode_code(ring: &Keyring, platform: &str, r: &CodeRecord) -> Vec<u8> {
    let record = sealed::code_record(platform, &r.digest);
    let json = CodeJson {
        v: VERSION,
        digest: r.digest.clone(),
        appid: r.authorizer_appid.clone(),
        code: r
            .code
            .as_ref()
            .map(|c| sealed::seal(ring, &record, "code", c.expose())),
        state: r.state,
        errcode: r.errcode,
        expires_at_ms: UnixMillis::saturating_from(r.expires_at),
        received_at_ms: UnixMillis::saturating_from(r.received_at),
        updated_at_ms: UnixMillis::saturating_from(r.updated_at),
        order: r.order(),
    };
    serde_json::to_vec(&json).unwrap_or_default()
}

/// A stored code record of `platform` under `digest`, or why not (never quoting the code).
pub fn decode_code_of(
    ring: &Keyring,
    platform: &str,
    bytes: &[u8],
    digest: &[u8],
) -> Result<CodeRecord, Refused> {
    let json: CodeJson = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a code record ({})", json_refusal(&e)))?;
    if json.v != VERSION {
        return Err(format!("code record version {} is not supported", json.v).into());
    }
    if json.digest.as_bytes() != digest || check_code_digest(&json.digest).is_err() {
        return Err("the record names another code".into());
    }
    check_appid(&json.appid).map_err(|_| "the authorizer appid is malformed".to_string())?;
    let record = sealed::code_record(platform, &json.digest);
    let code = json
        .code
        .map(|c| open_credential(ring, &record, "code", &c, "the stored code is malformed"))
        .transpose()?;
    if json.state == CodeState::Pending && code.is_none() {
        return Err("a pending code record without its code".into());
    }
    Ok(CodeRecord {
        digest: json.digest,
        authorizer_appid: json.appid,
        code,
        state: json.state,
        errcode: json.errcode,
        expires_at: json.expires_at_ms.to_system_time(),
        received_at: json.received_at_ms.to_system_time(),
        updated_at: json.updated_at_ms.to_system_time(),
    })
}

/// The stored form of an event of another kind (JSON, versioned). Written for whoever reads
/// them later; wxtoken itself reads one back only to seal it under a new key (`rekey`).
#[derive(Serialize, Deserialize)]
struct EventJson {
    v: u32,
    info_type: String,
    received_at_ms: UnixMillis,
    /// Sealed: a push may carry codes.
    xml: String,
}

/// The stored form of a pushed event of `platform`, its XML sealed with `ring` and bound to
/// the event's kind and arrival time.
pub fn encode_event(ring: &Keyring, platform: &str, e: &EventRecord) -> Vec<u8> {
    let received_at_ms = UnixMillis::saturating_from(e.received_at);
    let record = sealed::event_record(platform, &e.info_type, received_at_ms.as_millis());
    serde_json::to_vec(&EventJson {
        v: VERSION,
        info_type: e.info_type.clone(),
        received_at_ms,
        xml: sealed::seal(ring, &record, "xml", &e.xml),
    })
    .unwrap_or_default()
}

/// A stored event of `platform`, or why not (never quoting the XML).
pub fn decode_event(ring: &Keyring, platform: &str, bytes: &[u8]) -> Result<EventRecord, Refused> {
    let json: EventJson = serde_json::from_slice(bytes)
        .map_err(|e| format!("not an event record ({})", json_refusal(&e)))?;
    if json.v != VERSION {
        return Err(format!("event record version {} is not supported", json.v).into());
    }
    let record = sealed::event_record(platform, &json.info_type, json.received_at_ms.as_millis());
    let xml = sealed::open(ring, &record, "xml", &json.xml)?;
    Ok(EventRecord {
        info_type: json.info_type,
        received_at: json.received_at_ms.to_system_time(),
        xml,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const P: &str = "saas";

    fn plain() -> Keyring {
        Keyring::plaintext()
    }

    fn record() -> AuthorizerRecord {
        AuthorizerRecord {
            appid: "wxauth0001".into(),
            refresh_token: Some(AccessToken::new("REFRESH-SECRET")),
            func_ids: vec![1, 17],
            state: AuthorizerState::Authorized,
            authorized_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            last_error: None,
            updated_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        }
    }

    fn ring(byte: u8) -> Keyring {
        use crate::seal::{StoreKey, KEY_LEN};
        Keyring::new(Some(StoreKey::from_bytes(&[byte; KEY_LEN])), vec![], false)
    }

    #[test]
    fn every_platform_record_round_trips_sealed_and_holds_no_secret() {
        let k = ring(1);
        let a = record();
        let bytes = encode_authorizer(&k, P, &a);
        assert_eq!(
            decode_authorizer_of(&k, P, &bytes, a.appid.as_bytes()),
            Ok(a)
        );
        let t = TicketRecord {
            component_appid: "wxcomp".into(),
            ticket: AccessToken::new("ticket@@@SECRET"),
            received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_456),
        };
        let tb = encode_ticket(&k, P, &t);
        assert_eq!(decode_ticket(&k, P, &tb), Ok(t));
        let c = code(CodeState::Pending, 1_700_000_000_123);
        let cb = encode_code(&k, P, &c);
        assert_eq!(decode_code_of(&k, P, &cb, c.digest.as_bytes()), Ok(c));
        let e = EventRecord {
            info_type: "notify_third_fasteregister".into(),
            received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_789),
            xml: "<xml><auth_code>CODE-SECRET</auth_code></xml>".into(),
        };
        let eb = encode_event(&k, P, &e);
        assert_eq!(decode_event(&k, P, &eb), Ok(e));
        for bytes in [&bytes, &tb, &cb, &eb] {
            let text = String::from_utf8_lossy(bytes);
            assert!(!text.contains("SECRET"), "{text}");
        }
    }

    #[test]
    fn a_sealed_value_is_refused_under_a_wrong_key_or_in_another_record() {
        let k = ring(1);
        let a = record();
        let bytes = encode_authorizer(&k, P, &a);
        // Another key: the error names the key id it needs, never the value.
        let err = decode_authorizer(&ring(2), P, &bytes).unwrap_err();
        assert!(matches!(err, Refused::Unreadable(_)), "{err:?}");
        let id = crate::seal::StoreKey::from_bytes(&[1; crate::seal::KEY_LEN]).id();
        assert!(err.to_string().contains(&format!("key id {id}")), "{err}");
        // The same bytes read as another platform's record, or moved to another account.
        assert!(matches!(
            decode_authorizer(&k, "other", &bytes),
            Err(Refused::Unreadable(_))
        ));
        let mut moved: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        moved["appid"] = "wxauth0002".into();
        let moved = moved.to_string();
        assert!(matches!(
            decode_authorizer_of(&k, P, moved.as_bytes(), b"wxauth0002"),
            Err(Refused::Unreadable(_))
        ));
        // A sealed refresh token moved into the ticket field does not open there either.
        let sealed_rt: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let t = TicketRecord {
            component_appid: "wxcomp".into(),
            ticket: AccessToken::new("ticket@@@x"),
            received_at: SystemTime::UNIX_EPOCH,
        };
        let mut tj: serde_json::Value = serde_json::from_slice(&encode_ticket(&k, P, &t)).unwrap();
        tj["ticket"] = sealed_rt["refresh_token"].clone();
        assert!(matches!(
            decode_ticket(&k, P, tj.to_string().as_bytes()),
            Err(Refused::Unreadable(_))
        ));
    }

    #[test]
    fn records_round_trip_to_the_millisecond() {
        let r = record();
        assert_eq!(
            decode_authorizer(&plain(), P, &encode_authorizer(&plain(), P, &r)).unwrap(),
            r
        );
        let t = TicketRecord {
            component_appid: "wxcomp".into(),
            ticket: AccessToken::new("ticket@@@abc"),
            received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_456),
        };
        assert_eq!(
            decode_ticket(&plain(), P, &encode_ticket(&plain(), P, &t)).unwrap(),
            t
        );
    }

    #[test]
    fn a_record_is_the_accounts_it_is_stored_under_or_corrupt() {
        let r = record();
        let bytes = encode_authorizer(&plain(), P, &r);
        assert_eq!(
            decode_authorizer_of(&plain(), P, &bytes, r.appid.as_bytes()).unwrap(),
            r
        );
        let err = decode_authorizer_of(&plain(), P, &bytes, b"wx0000000000000000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("another appid"), "{err}");
    }

    fn code(state: CodeState, updated_ms: u64) -> CodeRecord {
        CodeRecord {
            digest: code_digest("queryauthcode@@@CODE-SECRET"),
            authorizer_appid: "wxauth0001".into(),
            code: (state == CodeState::Pending)
                .then(|| AccessToken::new("queryauthcode@@@CODE-SECRET")),
            state,
            errcode: (state == CodeState::Dead).then_some(61010),
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_600),
            received_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            updated_at: SystemTime::UNIX_EPOCH + Duration::from_millis(updated_ms),
        }
    }

    #[test]
    fn code_records_round_trip_and_done_ones_order_after_pending_ones() {
        for state in [CodeState::Pending, CodeState::Dead, CodeState::Exchanged] {
            let r = code(state, 1_700_000_000_123);
            let bytes = encode_code(&plain(), P, &r);
            assert_eq!(
                decode_code_of(&plain(), P, &bytes, r.digest.as_bytes()).unwrap(),
                r
            );
            assert!(
                !String::from_utf8_lossy(&bytes).contains("SECRET") || state == CodeState::Pending,
                "only a pending record keeps its code"
            );
        }
        // However much later, a pending record orders before a done one.
        let late_pending = code(CodeState::Pending, 1_800_000_000_000);
        let dead = code(CodeState::Dead, 1_700_000_000_000);
        let exchanged = code(CodeState::Exchanged, 1_700_000_000_000);
        assert!(late_pending.order() < dead.order());
        assert!(dead.order() < exchanged.order());
        assert!(code(CodeState::Dead, 2).order() > code(CodeState::Dead, 1).order());
        // Forgotten an hour after the code's expiry, not before.
        let r = code(CodeState::Exchanged, 0);
        assert!(!r.forgettable(r.expires_at + CODE_RECORD_KEPT));
        assert!(r.forgettable(r.expires_at + CODE_RECORD_KEPT + Duration::from_millis(1)));
    }

    #[test]
    fn bad_code_records_are_refused_without_quoting_the_code() {
        let r = code(CodeState::Pending, 1);
        let bytes = encode_code(&plain(), P, &r);
        let err = decode_code_of(&plain(), P, &bytes, code_digest("another").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("another code"), "{err}");
        let refusal = |json: &serde_json::Value| {
            decode_code_of(
                &plain(),
                P,
                json.to_string().as_bytes(),
                r.digest.as_bytes(),
            )
            .unwrap_err()
            .to_string()
        };
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        json["code"] = "CODE SECRET\n".into();
        let e = refusal(&json);
        assert!(!e.contains("SECRET"), "{e}");
        json["code"] = serde_json::Value::Null;
        let e = refusal(&json);
        assert!(e.contains("without its code"), "{e}");
        assert!(check_code_digest(&r.digest).is_ok());
        assert!(check_code_digest("../x").is_err());
        assert!(check_code_digest(&r.digest.to_uppercase()).is_err());
        assert!(!format!("{r:?}").contains("CODE-SECRET"));
    }

    #[test]
    fn a_time_out_of_range_makes_any_platform_record_corrupt() {
        use serde_json::json;
        // 10000-01-01T00:00:00Z, and the largest number a record can hold.
        let out = [json!(253_402_300_800_000u64), json!(u64::MAX)];
        let with = |bytes: Vec<u8>, field: &str, value: &serde_json::Value| {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            v[field] = value.clone();
            v.to_string().into_bytes()
        };
        let ticket = encode_ticket(
            &plain(),
            P,
            &TicketRecord {
                component_appid: "wxcomp".into(),
                ticket: AccessToken::new("ticket@@@SECRET"),
                received_at: SystemTime::UNIX_EPOCH,
            },
        );
        let authorizer = encode_authorizer(&plain(), P, &record());
        let c = code(CodeState::Pending, 1);
        let pending = encode_code(&plain(), P, &c);
        for value in &out {
            let mut errors =
                vec![
                    decode_ticket(&plain(), P, &with(ticket.clone(), "received_at_ms", value))
                        .expect_err("ticket")
                        .to_string(),
                ];
            for field in ["authorized_at_ms", "updated_at_ms"] {
                errors.push(
                    decode_authorizer(&plain(), P, &with(authorizer.clone(), field, value))
                        .expect_err(field)
                        .to_string(),
                );
            }
            for field in ["expires_at_ms", "received_at_ms", "updated_at_ms"] {
                let bytes = with(pending.clone(), field, value);
                errors.push(
                    decode_code_of(&plain(), P, &bytes, c.digest.as_bytes())
                        .expect_err(field)
                        .to_string(),
                );
            }
            for e in errors {
                assert!(e.ends_with("(a time out of range)"), "{e}");
                assert!(!e.contains("SECRET"), "{e}");
            }
        }
        // The bounds themselves decode: the epoch (WeChat's missing auth_time) and 9999.
        for ms in [0, UnixMillis::MAX.as_millis()] {
            let r = decode_authorizer(
                &plain(),
                P,
                &with(authorizer.clone(), "authorized_at_ms", &json!(ms)),
            )
            .expect("in range");
            assert_eq!(
                r.authorized_at,
                UnixMillis::new(ms).map(UnixMillis::to_system_time)
            );
        }
    }

    #[test]
    fn times_beyond_what_a_store_holds_are_written_clamped_and_read_back() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1_000_000);
        let last = UnixMillis::MAX.to_system_time();
        let r = AuthorizerRecord {
            authorized_at: Some(far),
            updated_at: far,
            ..record()
        };
        let back =
            decode_authorizer(&plain(), P, &encode_authorizer(&plain(), P, &r)).expect("decodes");
        assert_eq!((back.authorized_at, back.updated_at), (Some(last), last));
        assert_eq!(back.order(), r.order());
        let c = CodeRecord {
            expires_at: far,
            received_at: far,
            updated_at: far,
            ..code(CodeState::Exchanged, 0)
        };
        let back = decode_code_of(
            &plain(),
            P,
            &encode_code(&plain(), P, &c),
            c.digest.as_bytes(),
        )
        .expect("decodes");
        assert_eq!(back.expires_at, last);
        assert_eq!(back.order(), c.order(), "the order is the stored one");
        assert!(
            !back.forgettable(SystemTime::now()),
            "kept until its (clamped) expiry"
        );
    }

    #[test]
    fn bad_records_are_refused_without_quoting_the_secret() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&encode_authorizer(&plain(), P, &record())).unwrap();
        json["refresh_token"] = "REFRESH SECRET\n".into();
        let e = decode_authorizer(&plain(), P, json.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!e.contains("REFRESH"), "{e}");
        for bad in ["", "[]", "{\"v\":2}", "not json"] {
            assert!(
                decode_authorizer(&plain(), P, bad.as_bytes()).is_err(),
                "{bad}"
            );
            assert!(decode_ticket(&plain(), P, bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", record()).contains("REFRESH-SECRET"));
    }
}
