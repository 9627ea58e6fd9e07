//! The Open Platform's durable records: each platform's last verify ticket, and every
//! authorizer's refresh token, granted permissions and state. Unlike token records these are
//! data, not cache: a lost refresh token can only be replaced by the merchant authorizing
//! again, so a store keeps them durably (the embedded store in its file; the Redis store in
//! Redis and in each instance's local file, written back when Redis comes back empty).
//!
//! Writes are last-writer-wins by `updated_at` (milliseconds): a record older than the stored
//! one is not written, so an instance replaying a stale view (after a partition, a restart from
//! its local file) never undoes a newer change.

use std::time::SystemTime;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::secret::AccessToken;

/// A platform's component_verify_ticket as last pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketRecord {
    /// The `AppId` of the push: the platform's component appid.
    pub component_appid: String,
    pub ticket: AccessToken,
    /// When it arrived (the push's `CreateTime` is WeChat's clock; this is ours).
    pub received_at: SystemTime,
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

/// A pushed event of a kind wxtoken does not act on (`InfoType` other than the ticket and the
/// authorization events), kept as WeChat sent it, decrypted, for whoever needs it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub info_type: String,
    pub received_at: SystemTime,
    /// The decrypted XML (it may carry codes: the store is as private as its tokens).
    pub xml: String,
}

/// At most this many events of other kinds are kept per platform in Redis (the newest); the
/// embedded store keeps each one, as WeChat sends them rarely and only signed.
pub const MAX_REDIS_EVENTS: isize = 1000;

/// Where the durable platform records live.
pub trait PlatformStore: Send + Sync + 'static {
    /// Saves a pushed event of another kind durably before the push is answered `success`.
    fn save_event(
        &self,
        platform: &str,
        event: &EventRecord,
    ) -> BoxFuture<'static, anyhow::Result<()>>;

    /// The platform's last saved ticket.
    fn load_ticket(
        &self,
        platform: &str,
    ) -> BoxFuture<'static, anyhow::Result<Option<TicketRecord>>>;

    /// Saves the ticket durably before the push is answered `success`, unless the stored one
    /// was received later (then this one is dropped, and that is no error). An error is as
    /// for [`PlatformStore::save_authorizers`].
    fn save_ticket(
        &self,
        platform: &str,
        ticket: &TicketRecord,
    ) -> BoxFuture<'static, anyhow::Result<()>>;

    /// Every authorizer record of the platform (start-up, reconciliation). Records that cannot
    /// be decoded are skipped and logged, never an error for the rest.
    fn load_authorizers(
        &self,
        platform: &str,
    ) -> BoxFuture<'static, anyhow::Result<Vec<AuthorizerRecord>>>;

    /// One authorizer's record, as stored now.
    fn load_authorizer(
        &self,
        platform: &str,
        appid: &str,
    ) -> BoxFuture<'static, anyhow::Result<Option<AuthorizerRecord>>>;

    /// Saves records durably (one transaction or pipeline for the batch), each unless the
    /// stored one is newer (`updated_at`). Answers, per record, whether it was written: `false`
    /// means a newer record is stored (re-read it). A record equal to the stored one counts as
    /// written.
    ///
    /// An error means the batch is not durable: the event it came from must not be answered
    /// `success`. The store still keeps the records and retries them (see
    /// [`PlatformStore::not_durable_records`]), so the caller need not retry itself.
    fn save_authorizers(
        &self,
        platform: &str,
        records: &[AuthorizerRecord],
    ) -> BoxFuture<'static, anyhow::Result<Vec<bool>>>;

    /// The records (as `{platform}/ticket` or `{platform}/authorizer/{appid}`) whose latest
    /// save failed and is still being retried: a crash now would lose them. For readiness.
    fn not_durable_records(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The label of a platform's series in the store metrics, as for its component token.
pub fn metric_label(platform: &str) -> String {
    format!("platform:{platform}")
}

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

fn key_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The stored form of a ticket (JSON, versioned).
#[derive(Serialize, Deserialize)]
struct TicketJson {
    v: u32,
    pub component_appid: String,
    pub ticket: String,
    pub received_at_ms: u64,
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
    pub authorized_at_ms: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub updated_at_ms: u64,
}

const VERSION: u32 = 1;

pub fn encode_ticket(t: &TicketRecord) -> Vec<u8> {
    let json = TicketJson {
        v: VERSION,
        component_appid: t.component_appid.clone(),
        ticket: t.ticket.expose().to_string(),
        received_at_ms: super::to_ms(t.received_at),
    };
    serde_json::to_vec(&json).unwrap_or_default()
}

/// A stored ticket, or why not (never quoting the ticket).
pub fn decode_ticket(bytes: &[u8]) -> Result<TicketRecord, String> {
    let json: TicketJson = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a ticket record ({:?})", e.classify()))?;
    if json.v != VERSION {
        return Err(format!("ticket record version {} is not supported", json.v));
    }
    if !crate::secret::plausible_credential(&json.ticket) {
        return Err("the stored ticket is empty or malformed".into());
    }
    Ok(TicketRecord {
        component_appid: json.component_appid,
        ticket: AccessToken::new(json.ticket),
        received_at: super::from_ms(json.received_at_ms),
    })
}

pub fn encode_authorizer(r: &AuthorizerRecord) -> Vec<u8> {
    let json = AuthorizerJson {
        v: VERSION,
        appid: r.appid.clone(),
        refresh_token: r.refresh_token.as_ref().map(|t| t.expose().to_string()),
        func_ids: r.func_ids.clone(),
        state: r.state,
        authorized_at_ms: r.authorized_at.map(super::to_ms),
        last_error: r.last_error.clone(),
        updated_at_ms: super::to_ms(r.updated_at),
    };
    serde_json::to_vec(&json).unwrap_or_default()
}

/// [`decode_authorizer`] for a record stored under `appid`: one naming another account is as
/// corrupt as one that does not decode.
pub fn decode_authorizer_of(bytes: &[u8], appid: &[u8]) -> Result<AuthorizerRecord, String> {
    decode_authorizer(bytes).and_then(|r| {
        if r.appid.as_bytes() == appid {
            Ok(r)
        } else {
            Err("the record names another appid".to_string())
        }
    })
}

/// A stored authorizer record, or why not (never quoting the refresh token).
pub fn decode_authorizer(bytes: &[u8]) -> Result<AuthorizerRecord, String> {
    let json: AuthorizerJson = serde_json::from_slice(bytes)
        .map_err(|e| format!("not an authorizer record ({:?})", e.classify()))?;
    if json.v != VERSION {
        return Err(format!(
            "authorizer record version {} is not supported",
            json.v
        ));
    }
    if json.appid.is_empty() || json.appid.len() > 64 {
        return Err("the authorizer appid is empty or too long".into());
    }
    let refresh_token = match json.refresh_token {
        None => None,
        Some(t) if crate::secret::plausible_credential(&t) => Some(AccessToken::new(t)),
        Some(_) => return Err("the stored refresh token is malformed".into()),
    };
    Ok(AuthorizerRecord {
        appid: json.appid,
        refresh_token,
        func_ids: json.func_ids,
        state: json.state,
        authorized_at: json.authorized_at_ms.map(super::from_ms),
        last_error: json.last_error,
        updated_at: super::from_ms(json.updated_at_ms),
    })
}

/// The stored form of an event of another kind (JSON, versioned).
pub fn encode_event(e: &EventRecord) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "v": VERSION,
        "info_type": e.info_type,
        "received_at_ms": super::to_ms(e.received_at),
        "xml": e.xml,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    #[test]
    fn records_round_trip_to_the_millisecond() {
        let r = record();
        assert_eq!(decode_authorizer(&encode_authorizer(&r)).unwrap(), r);
        let t = TicketRecord {
            component_appid: "wxcomp".into(),
            ticket: AccessToken::new("ticket@@@abc"),
            received_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_456),
        };
        assert_eq!(decode_ticket(&encode_ticket(&t)).unwrap(), t);
    }

    #[test]
    fn a_record_is_the_accounts_it_is_stored_under_or_corrupt() {
        let r = record();
        let bytes = encode_authorizer(&r);
        assert_eq!(decode_authorizer_of(&bytes, r.appid.as_bytes()).unwrap(), r);
        let err = decode_authorizer_of(&bytes, b"wx0000000000000000").unwrap_err();
        assert!(err.contains("another appid"), "{err}");
    }

    #[test]
    fn bad_records_are_refused_without_quoting_the_secret() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&encode_authorizer(&record())).unwrap();
        json["refresh_token"] = "REFRESH SECRET\n".into();
        let e = decode_authorizer(json.to_string().as_bytes()).unwrap_err();
        assert!(!e.contains("REFRESH"), "{e}");
        for bad in ["", "[]", "{\"v\":2}", "not json"] {
            assert!(decode_authorizer(bad.as_bytes()).is_err(), "{bad}");
            assert!(decode_ticket(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", record()).contains("REFRESH-SECRET"));
    }
}
