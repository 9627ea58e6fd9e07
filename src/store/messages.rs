//! The message hub's durable records and the `MessageStore` trait (the embedded file and Redis
//! implement it): each push taken, with one delivery per matching route, written before WeChat
//! is answered; deliveries claimed by one deliverer at a time and finished (delivered, retried
//! later, or dead); the dedupe entries that make WeChat's retries of a push one push.
//!
//! A push's `message` and `raw` fields are sealed with the store's key ring when it has a key
//! (bound to `push/{id}`), so message content is encrypted at rest as tokens are. Delivery
//! records hold no content: ids, route, state, attempts and the last error (a short category).
//!
//! Ids: a push id is 28 lowercase hex digits, the receipt time in milliseconds (12 digits) then
//! 64 random bits, so ids sort by arrival; a delivery id is `{push id}.{route name}`.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::seal::Keyring;
use crate::time::UnixMillis;

/// Hex digits of a push id.
pub const PUSH_ID_LEN: usize = 28;

/// Most rows one listing page or one claim returns, whatever is asked.
pub const MAX_PAGE: usize = 1000;

/// A new push id for a push received at `at`.
pub fn new_push_id(at: UnixMillis) -> String {
    let random: u64 = rand::random();
    format!("{:012x}{random:016x}", at.as_millis() & 0xffff_ffff_ffff)
}

/// A delivery's id from its push and route.
pub fn delivery_id(push: &str, route: &str) -> String {
    format!("{push}.{route}")
}

/// The push id and route of a delivery id, or `None` when it is not one.
pub fn parse_delivery_id(id: &str) -> Option<(&str, &str)> {
    let (push, route) = id.split_once('.')?;
    let push_ok = push.len() == PUSH_ID_LEN
        && push
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    // A route's name, as `[[routes]] name` may be spelled.
    (push_ok && crate::config::valid_name(route)).then_some((push, route))
}

/// Who pushed, as stored (the hub's `Source`, by plain fields: the store sits below it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSource {
    /// `app`, `account` or `platform`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub appid: String,
}

/// One push as the store keeps it until every delivery of it is made.
#[derive(Clone, Debug, PartialEq)]
pub struct PushRecord {
    pub id: String,
    pub source: StoredSource,
    pub received_at: UnixMillis,
    /// `xml` or `json`.
    pub format: String,
    /// The decrypted fields, by WeChat's names.
    pub message: Map<String, Value>,
    /// The decrypted document as sent.
    pub raw: String,
}

/// Where a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or in one).
    Pending,
    /// Given up after `max_age_secs`; made again only by an admin's retry.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "dead" => Some(DeliveryState::Dead),
            _ => None,
        }
    }
}

/// One delivery of a push to a route. A delivery made is removed (and its push with the last
/// one), so what is stored is pending or dead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: String,
    pub push: String,
    pub route: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// A short category (`status 500`, `timeout`, `connect`), never a body.
    pub last_error: Option<String>,
    /// When the next attempt is due (for a claimed one: when its claim lapses).
    pub next_at: UnixMillis,
    pub received_at: UnixMillis,
    /// Where `max_age_secs` counts from: the receipt, or an admin's last retry.
    pub age_from: UnixMillis,
    /// A dead delivery's end: from then on the sweep may forget it (and its push with its last
    /// delivery). `None` while pending, and for a delivery that died before purging existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_at: Option<UnixMillis>,
}

impl DeliveryRecord {
    /// The delivery an admin's retry makes of this one: pending, due at `now`, its attempts and
    /// its age counted from then.
    pub fn retried_at(self, now: UnixMillis) -> DeliveryRecord {
        DeliveryRecord {
            state: DeliveryState::Pending,
            attempts: 0,
            next_at: now,
            age_from: now,
            purge_at: None,
            ..self
        }
    }

    /// A new delivery of `push` to `route`, due at `next_at`.
    pub fn new(push: &PushRecord, route: &str, next_at: UnixMillis) -> DeliveryRecord {
        DeliveryRecord {
            id: delivery_id(&push.id, route),
            push: push.id.clone(),
            route: route.to_string(),
            state: DeliveryState::Pending,
            attempts: 0,
            last_error: None,
            next_at,
            received_at: push.received_at,
            age_from: push.received_at,
            purge_at: None,
        }
    }
}

/// What `take` writes: the dedupe entry, and the push with its deliveries when routes matched,
/// or the note of an unmatched push when none did.
#[derive(Clone, Debug)]
pub struct NewPush {
    pub dedupe_key: String,
    /// The dedupe entry is kept at least until then.
    pub dedupe_until: UnixMillis,
    pub push: Taking,
}

/// What a take keeps besides its dedupe entry.
#[derive(Clone, Debug)]
pub enum Taking {
    /// The push and one delivery per matching route.
    Routed(PushRecord, Vec<DeliveryRecord>),
    /// A push no route matched: only a note of it, kept among the last [`UNMATCHED_KEPT`].
    Unmatched(UnmatchedRecord),
}

/// How many unmatched pushes the store keeps (the fleet's, with Redis): enough to see what a
/// missing route would have taken.
pub const UNMATCHED_KEPT: usize = 100;

/// A push no route matched, as the store keeps it: who sent what kind of push when, never its
/// content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmatchedRecord {
    pub source: StoredSource,
    pub received_at: UnixMillis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_type: Option<String>,
}

/// A delivery claimed for an attempt, with its push.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub delivery: DeliveryRecord,
    pub push: PushRecord,
}

/// How an attempt ended, as the store records it.
#[derive(Clone, Debug)]
pub enum Finish {
    /// The receiver answered 2xx: the delivery is removed (its push with its last delivery).
    Delivered { id: String },
    /// Failed: tried again at `record.next_at` (with `record.attempts` and `last_error`
    /// updated), or dead when `record.state` says so.
    Failed { record: DeliveryRecord },
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub deliveries: Vec<DeliveryRecord>,
    /// Where the next page starts; `None` at the end.
    pub next_offset: Option<usize>,
}

/// A route's backlog, for the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteStats {
    pub route: String,
    pub pending: u64,
    /// The receipt time of the oldest pending delivery.
    pub oldest: Option<UnixMillis>,
    pub dead: u64,
}

/// The message hub's records, in the embedded file or in Redis.
pub trait MessageStore: Send + Sync {
    /// Writes a push durably (committed / acknowledged by Redis) unless its dedupe key was
    /// already taken: `Ok(true)` when written, `Ok(false)` for a duplicate. The dedupe entry,
    /// the push and its deliveries are one atomic write, so a failure leaves none of them and
    /// WeChat's retry is taken as new.
    fn take(&self, push: NewPush) -> BoxFuture<'static, anyhow::Result<bool>>;

    /// Claims up to `limit` deliveries of `route` due at `now`, for `lease`: none of them is
    /// claimed again (by this or another instance) until the lease ends or it is finished.
    fn claim(&self, q: ClaimQuery) -> BoxFuture<'static, anyhow::Result<Vec<Claimed>>>;

    /// Records how an attempt ended, and releases the claim.
    fn finish(&self, finish: Finish) -> BoxFuture<'static, anyhow::Result<()>>;

    /// A page of the deliveries in `state` of `routes` (in the order given, then by arrival).
    fn list(&self, q: ListQuery) -> BoxFuture<'static, anyhow::Result<Page>>;

    /// Makes the delivery `id` (dead or pending) due at `now` with a fresh age, so that it is
    /// tried until `max_age` after now. `Ok(None)` when there is no such delivery.
    fn retry(
        &self,
        id: &str,
        now: UnixMillis,
    ) -> BoxFuture<'static, anyhow::Result<Option<DeliveryRecord>>>;

    /// Forgets the delivery `id`, pending or dead, and its push with its last delivery: an
    /// admin's discard. The record as it was; `Ok(None)` when there is no such delivery.
    fn discard(&self, id: &str) -> BoxFuture<'static, anyhow::Result<Option<DeliveryRecord>>>;

    /// The backlog of each route.
    fn stats(&self, routes: &[String]) -> BoxFuture<'static, anyhow::Result<Vec<RouteStats>>>;

    /// The last [`UNMATCHED_KEPT`] unmatched pushes, newest first (a note that does not decode
    /// is left out).
    fn unmatched(&self) -> BoxFuture<'static, anyhow::Result<Vec<UnmatchedRecord>>>;

    /// Forgets dedupe entries past their time (the embedded file; Redis expires them itself).
    fn sweep(&self, now: UnixMillis) -> BoxFuture<'static, anyhow::Result<u64>>;

    /// Forgets up to `limit` dead deliveries whose `purge_at` has come, each push with its last
    /// delivery: the ids of those forgotten. A delivery retried meanwhile is pending and kept.
    fn purge(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> BoxFuture<'static, anyhow::Result<Vec<String>>>;
}

/// A worker's claim: up to `limit` deliveries of `route` due at `now`, held for `lease`.
#[derive(Clone, Debug)]
pub struct ClaimQuery {
    pub route: String,
    pub now: UnixMillis,
    pub lease: Duration,
    pub limit: usize,
}

/// An admin's page: the deliveries in `state` of `routes`, from `offset`, at most `limit`.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub state: DeliveryState,
    pub routes: Vec<String>,
    pub offset: usize,
    pub limit: usize,
}

/// A push as written: the content fields sealed.
#[derive(Serialize, Deserialize)]
struct PushBytes {
    id: String,
    source: StoredSource,
    received_at: u64,
    format: String,
    /// The JSON of the fields, sealed.
    message: String,
    /// The document, sealed.
    raw: String,
}

/// The record a push's sealed fields are bound to.
pub fn push_binding(id: &str) -> String {
    format!("push/{id}")
}

/// A push's stored bytes, its content sealed with `ring`.
pub fn encode_push(ring: &Keyring, push: &PushRecord) -> Vec<u8> {
    let record = push_binding(&push.id);
    let message = Value::Object(push.message.clone()).to_string();
    let bytes = PushBytes {
        id: push.id.clone(),
        source: push.source.clone(),
        received_at: push.received_at.as_millis(),
        format: push.format.clone(),
        message: super::sealed::seal(ring, &record, "message", &message),
        raw: super::sealed::seal(ring, &record, "raw", &push.raw),
    };
    // A struct of strings and a number always serializes.
    serde_json::to_vec(&bytes).unwrap_or_default()
}

/// A push from its stored bytes; an error says which part did not read or open (never the
/// content).
pub fn decode_push(ring: &Keyring, bytes: &[u8]) -> anyhow::Result<PushRecord> {
    let b: PushBytes = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("a stored push does not decode ({:?})", e.classify()))?;
    let record = push_binding(&b.id);
    let message = super::sealed::open(ring, &record, "message", &b.message)?;
    let raw = super::sealed::open(ring, &record, "raw", &b.raw)?;
    let message = match serde_json::from_str(&message) {
        Ok(Value::Object(m)) => m,
        _ => anyhow::bail!("stored push {} has fields that are not an object", b.id),
    };
    Ok(PushRecord {
        id: b.id,
        source: b.source,
        received_at: UnixMillis::new(b.received_at)
            .ok_or_else(|| anyhow::anyhow!("stored push has a time out of range"))?,
        format: b.format,
        message,
        raw,
    })
}

/// A delivery's stored bytes.
pub fn encode_delivery(d: &DeliveryRecord) -> Vec<u8> {
    serde_json::to_vec(d).unwrap_or_default()
}

/// A delivery from its stored bytes.
pub fn decode_delivery(bytes: &[u8]) -> anyhow::Result<DeliveryRecord> {
    serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("a stored delivery does not decode ({:?})", e.classify()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push() -> PushRecord {
        let mut message = Map::new();
        message.insert("Content".into(), "hello secret".into());
        PushRecord {
            id: new_push_id(UnixMillis::new(1_700_000_000_000).expect("in range")),
            source: StoredSource {
                kind: "app".into(),
                app: Some("shop".into()),
                platform: None,
                appid: "wx1".into(),
            },
            received_at: UnixMillis::new(1_700_000_000_000).expect("in range"),
            format: "xml".into(),
            message,
            raw: "<xml><Content>hello secret</Content></xml>".into(),
        }
    }

    #[test]
    fn push_ids_sort_by_arrival_and_delivery_ids_parse_back() {
        let a = new_push_id(UnixMillis::new(1000).expect("ms"));
        let b = new_push_id(UnixMillis::new(1001).expect("ms"));
        assert_eq!(a.len(), PUSH_ID_LEN);
        assert!(a < b);
        let id = delivery_id(&a, "crm.v2");
        assert_eq!(parse_delivery_id(&id), Some((a.as_str(), "crm.v2")));
        for bad in [
            "",
            "x",
            "abc.crm",
            &format!("{a}."),
            &format!("{}.crm", a.to_uppercase()),
        ] {
            assert_eq!(parse_delivery_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_sealed_push_keeps_no_content_in_clear_and_opens_only_as_itself() {
        let key = crate::seal::StoreKey::from_bytes(&[7; 32]);
        let ring = Keyring::new(Some(key), vec![], false);
        let p = push();
        let bytes = encode_push(&ring, &p);
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("hello secret"), "{text}");
        assert_eq!(decode_push(&ring, &bytes).expect("opens"), p);
        // Moved to another id, it does not open.
        let moved = text.replace(&p.id, &new_push_id(p.received_at));
        assert!(decode_push(&ring, moved.as_bytes()).is_err());
        // Without a key it is written as it is, and still read back.
        let plain = Keyring::plaintext();
        assert_eq!(
            decode_push(&plain, &encode_push(&plain, &p)).expect("reads"),
            p
        );
    }
}
