//! Freshness and replay refusal for platform pushes: a push whose timestamp is more than
//! five minutes off the clock is refused, and so is a second delivery of a push already
//! accepted within that window.
//!
//! A signed push is a bearer message: anyone who captured one could send it again, and a
//! replayed `authorized` event or an old ticket would overwrite newer state. WeChat's
//! signature covers the timestamp and the nonce, so an old push cannot be given a new
//! timestamp; refusing stale timestamps bounds how long a push must be remembered, and
//! remembering each accepted push for that long refuses the rest.
//!
//! What is remembered is what the signature covers, not the query parameters: the signature
//! is SHA-1 over the token, timestamp, nonce and ciphertext **sorted and concatenated**, so the
//! same signature holds for timestamp T with nonce T+1 and for timestamp T+1 with nonce T, or
//! for nonce `010` with T and nonce `01` with `0T`. So the key is the signature itself (two
//! pushes with one signature are the same signed bytes, however they are split), and a
//! timestamp must be canonical decimal (digits only, no leading zero, no sign, no space): any
//! other spelling is refused before it is read as a number, as WeChat never sends one.
//!
//! Call [`ReplayGuard::admit`] only after [`super::crypto::MsgCrypto::open`] has verified the
//! signature, so that only pushes signed with the platform's token take up memory; and call
//! [`ReplayGuard::release`] if the push is then not processed (storing it failed), so WeChat's
//! retry of the same push is not refused as a replay.
//!
//! Memory is bounded: at most `capacity` pushes are remembered (100,000 by default, 7 MB as
//! measured). An entry is dropped once its timestamp is out of the window, since the freshness
//! check refuses that push anyway. At the cap the oldest accepted entry is evicted to make
//! room, and counted ([`ReplayGuard::evicted`]): the evicted push could then be replayed once
//! more while its timestamp is still fresh. Reaching the cap takes 100,000 distinct pushes
//! signed with the platform's token within ten minutes (WeChat sends a ticket every ten
//! minutes plus authorization events), so only a holder of the token can cause it, and the
//! alternative, refusing every push until entries age out, would let that same flood stop
//! real tickets.
//!
//! The guard is plain data: the caller keeps one per platform behind a `std::sync::Mutex`
//! (no await happens while it is held), and passes the time in, so tests move it in
//! milliseconds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::crypto::{Envelope, MsgCrypto};

/// How far a push's timestamp may be from the clock, either way.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);

/// How many accepted pushes are remembered at most.
pub const CAPACITY: usize = 100_000;

/// The longest timestamp accepted, in digits: seconds since 1970 have 10 until the year 2286.
const MAX_TIMESTAMP_DIGITS: usize = 12;

/// Why a push was refused as not fresh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the timestamp is not a canonical decimal number of seconds")]
    BadTimestamp,
    #[error("the timestamp is {age_ms} ms old, beyond the {window_secs}-second window")]
    Stale { age_ms: u64, window_secs: u64 },
    #[error(
        "the timestamp is {ahead_ms} ms in the future, beyond the {window_secs}-second window"
    )]
    Future { ahead_ms: u64, window_secs: u64 },
    #[error("this push was already accepted")]
    Replay,
}

impl Refused {
    /// The HTTP status for this refusal: always 401. These pushes carry a valid signature, but
    /// a signature proves only who made the message, not that this is its first delivery;
    /// freshness is part of authenticating a bearer message, and a replay is exactly a
    /// message whose sender has not shown it is WeChat now. A timestamp that is not canonical
    /// is the same case: WeChat writes its timestamps canonically, so a signed push with
    /// another spelling is a captured one with its digits moved about.
    pub fn http_status(&self) -> u16 {
        401
    }
}

/// Proof that a push was admitted, to hand back to [`ReplayGuard::release`] if it was not
/// processed after all.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "release it if the push is not processed"]
pub struct Admitted {
    key: Key,
    seq: u64,
}

/// A remembered push: a digest of its msg_signature, so every entry takes the same few bytes
/// however long the sender made it. 128 bits: a collision by chance needs about 2^64 pushes.
type Key = [u8; 16];

struct Entry {
    key: Key,
    seq: u64,
    timestamp_ms: u64,
}

/// The remembered pushes of one platform.
pub struct ReplayGuard {
    window_ms: u64,
    capacity: usize,
    /// Live entries, with the sequence number of their place in `order`.
    seen: HashMap<Key, u64>,
    /// Entries in the order they were admitted. A released entry stays here (removing it
    /// from the middle would cost a scan) and is skipped when its turn comes.
    order: VecDeque<Entry>,
    next_seq: u64,
    evicted: u64,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(WINDOW, CAPACITY)
    }
}

impl ReplayGuard {
    /// A guard with its own window and cap (at least one entry).
    pub fn new(window: Duration, capacity: usize) -> Self {
        ReplayGuard {
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            evicted: 0,
        }
    }

    /// Admits a push whose signature has been verified, if its timestamp is within the window
    /// of `now` and it was not admitted before; remembers it.
    pub fn admit(&mut self, q: &Envelope, now: SystemTime) -> Result<Admitted, Refused> {
        let (timestamp_ms, now_ms) = fresh(&q.timestamp, now, self.window_ms)?;
        self.expire(now_ms);
        let key = key(q);
        if self.seen.contains_key(&key) {
            return Err(Refused::Replay);
        }
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                if self.forget(&oldest) {
                    self.evicted += 1;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.seen.insert(key, seq);
        self.order.push_back(Entry {
            key,
            seq,
            timestamp_ms,
        });
        Ok(Admitted { key, seq })
    }

    /// Forgets an admitted push that was not processed, so its retry is admitted.
    pub fn release(&mut self, admitted: Admitted) {
        if self.seen.get(&admitted.key) == Some(&admitted.seq) {
            self.seen.remove(&admitted.key);
        }
    }

    /// How many pushes are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// How many remembered pushes were evicted at the cap while still fresh.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Drops entries from the front whose timestamp has left the window: the freshness check
    /// refuses those pushes now. Entries behind a fresh one wait their turn, at most one more
    /// window, which the cap covers.
    fn expire(&mut self, now_ms: u64) {
        while let Some(front) = self.order.front() {
            if now_ms.saturating_sub(front.timestamp_ms) <= self.window_ms {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                self.forget(&old);
            }
        }
    }

    /// Removes `entry` from `seen` if it is still live there; whether it was.
    fn forget(&mut self, entry: &Entry) -> bool {
        if self.seen.get(&entry.key) == Some(&entry.seq) {
            self.seen.remove(&entry.key);
            true
        } else {
            false
        }
    }
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("window_ms", &self.window_ms)
            .field("capacity", &self.capacity)
            .field("remembered", &self.seen.len())
            .field("evicted", &self.evicted)
            .finish()
    }
}

/// A push opened, admitted and parsed, in the order the module doc asks: the signature and
/// the decryption first ([`MsgCrypto::open`]), then freshness and replay, so that only signed
/// pushes take up memory, then `parse` (a platform's events, a WeCom suite's callbacks). A
/// refusal is the HTTP status to answer and why. The caller keeps the [`Admitted`] to release
/// it should storing the push fail.
pub fn open_admit_parse<E>(
    crypto: &MsgCrypto,
    guard: &std::sync::Mutex<ReplayGuard>,
    q: &Envelope,
    body: &[u8],
    parse: impl FnOnce(&str) -> Result<E, super::xml::XmlError>,
) -> Result<(String, E, Admitted), (u16, String)> {
    let xml = crypto
        .open(q, body)
        .map_err(|e| (e.http_status(), e.to_string()))?;
    // No critical section here leaves the guard half-changed: keep going with the data.
    let admitted = guard
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(q, SystemTime::now())
        .map_err(|e| (e.http_status(), e.to_string()))?;
    let event = parse(&xml).map_err(|e| (400, format!("the event is malformed: {e}")))?;
    Ok((xml, event, admitted))
}

/// A timestamp in canonical decimal: digits only, no leading zero (but `0` itself), at most
/// [`MAX_TIMESTAMP_DIGITS`]. Anything else could be a captured push's timestamp with digits
/// taken from or given to the nonce (see the module documentation).
/// Checks that `timestamp` (seconds, canonical decimal) is within [`WINDOW`] of `now`, either
/// way. Pushes that a retry may repeat to the letter (messages, taken once by their content)
/// need only this; the platform's events also go through [`ReplayGuard::admit`].
pub fn check_fresh(timestamp: &str, now: SystemTime) -> Result<(), Refused> {
    let window_ms = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
    fresh(timestamp, now, window_ms).map(|_| ())
}

/// The timestamp and `now` in milliseconds, if the timestamp is canonical and within
/// `window_ms` of `now`.
fn fresh(timestamp: &str, now: SystemTime, window_ms: u64) -> Result<(u64, u64), Refused> {
    let timestamp_ms = parse_timestamp(timestamp)?.saturating_mul(1000);
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let window_secs = window_ms / 1000;
    if now_ms.saturating_sub(timestamp_ms) > window_ms {
        return Err(Refused::Stale {
            age_ms: now_ms - timestamp_ms,
            window_secs,
        });
    }
    if timestamp_ms.saturating_sub(now_ms) > window_ms {
        return Err(Refused::Future {
            ahead_ms: timestamp_ms - now_ms,
            window_secs,
        });
    }
    Ok((timestamp_ms, now_ms))
}

fn parse_timestamp(s: &str) -> Result<u64, Refused> {
    let canonical = !s.is_empty()
        && s.len() <= MAX_TIMESTAMP_DIGITS
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(Refused::BadTimestamp);
    }
    s.parse().map_err(|_| Refused::BadTimestamp)
}

/// The digest of a push's identity: its signature, which is what covers the timestamp, the
/// nonce and the ciphertext. Lowercased because it is accepted in either case: `ABC..` must
/// not pass as a new push after `abc..`.
fn key(q: &Envelope) -> Key {
    let mut h = Sha256::new();
    h.update(q.msg_signature.to_ascii_lowercase().as_bytes());
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn at_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// A push whose signature differs with its timestamp and nonce, as a real one's does.
    fn push(ts: u64, nonce: &str) -> Envelope {
        let sig = Sha256::digest(format!("{ts}/{nonce}").as_bytes());
        Envelope {
            timestamp: ts.to_string(),
            nonce: nonce.into(),
            msg_signature: hex::encode(&sig[..20]),
        }
    }

    #[test]
    fn fresh_pushes_are_admitted_up_to_five_minutes_either_way() {
        let mut g = ReplayGuard::default();
        let ts_ms = T0 * 1000;
        assert!(g.admit(&push(T0, "a"), at_ms(ts_ms)).is_ok());
        assert!(g.admit(&push(T0, "b"), at_ms(ts_ms + 300_000)).is_ok());
        assert!(g.admit(&push(T0, "c"), at_ms(ts_ms - 300_000)).is_ok());
        assert_eq!(
            g.admit(&push(T0, "d"), at_ms(ts_ms + 300_001)),
            Err(Refused::Stale {
                age_ms: 300_001,
                window_secs: 300
            })
        );
        assert_eq!(
            g.admit(&push(T0, "e"), at_ms(ts_ms - 300_001)),
            Err(Refused::Future {
                ahead_ms: 300_001,
                window_secs: 300
            })
        );
        assert_eq!(g.len(), 3);
        assert_eq!(Refused::Replay.http_status(), 401);
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let mut g = ReplayGuard::default();
        let now = at_ms(T0 * 1000);
        let hour_old = g.admit(&push(T0 - 3600, "a"), now).unwrap_err();
        assert!(matches!(hour_old, Refused::Stale { .. }), "{hour_old}");
        assert_eq!(hour_old.http_status(), 401);
        assert!(matches!(
            g.admit(&push(T0 + 3600, "a"), now),
            Err(Refused::Future { .. })
        ));
        assert!(matches!(
            g.admit(&push(0, "a"), now),
            Err(Refused::Stale { .. })
        ));
        assert!(g.is_empty(), "refused pushes are not remembered");
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        let mut g = ReplayGuard::default();
        for ts in [
            "",
            "-1",
            "17e8",
            " 1700000000",
            "1700000000.5",
            "9999999999999",
            "abc",
        ] {
            let mut q = push(T0, "a");
            q.timestamp = ts.into();
            let e = g.admit(&q, at_ms(T0 * 1000)).unwrap_err();
            assert_eq!(e, Refused::BadTimestamp, "{ts:?}");
            assert_eq!(e.http_status(), 401);
        }
    }

    #[test]
    fn a_second_delivery_is_a_replay() {
        let mut g = ReplayGuard::default();
        let now = T0 * 1000;
        let q = push(T0, "a");
        let _ = g.admit(&q, at_ms(now)).unwrap();
        assert_eq!(g.admit(&q, at_ms(now + 1)), Err(Refused::Replay));
        assert_eq!(g.admit(&q, at_ms(now + 299_000)), Err(Refused::Replay));
        let mut same_upper = q.clone();
        same_upper.msg_signature = q.msg_signature.to_uppercase();
        assert_eq!(g.admit(&same_upper, at_ms(now + 2)), Err(Refused::Replay));
        // Another nonce or timestamp signs differently: another push.
        let _ = g.admit(&push(T0, "b"), at_ms(now + 3)).unwrap();
        let _ = g.admit(&push(T0 + 1, "a"), at_ms(now + 4)).unwrap();
        let mut other_sig = q.clone();
        other_sig.msg_signature.replace_range(..1, "f");
        let _ = g.admit(&other_sig, at_ms(now + 5)).unwrap();
        assert_eq!(g.len(), 4);
    }

    /// WeChat's signature is over the sorted concatenation of the token, timestamp, nonce and
    /// ciphertext: swapping the timestamp and the nonce, or moving digits from one to the
    /// other, keeps the signature. Either way it is the same signed push.
    #[test]
    fn a_push_with_its_timestamp_and_nonce_split_differently_is_a_replay() {
        let mut g = ReplayGuard::default();
        let now = at_ms(T0 * 1000);
        let sig = "0123456789abcdef0123456789abcdef01234567";
        let first = Envelope {
            timestamp: T0.to_string(),
            nonce: (T0 + 1).to_string(),
            msg_signature: sig.into(),
        };
        let _ = g.admit(&first, now).unwrap();
        // Both timestamps canonical and fresh: only the key can tell it is the same push.
        let swapped = Envelope {
            timestamp: (T0 + 1).to_string(),
            nonce: T0.to_string(),
            msg_signature: sig.to_uppercase(),
        };
        assert_eq!(g.admit(&swapped, now), Err(Refused::Replay));
        // The example: nonce `010` with T, replayed as nonce `01` with `0T`.
        let mut g = ReplayGuard::default();
        let original = Envelope {
            timestamp: T0.to_string(),
            nonce: "010".into(),
            msg_signature: sig.into(),
        };
        let _ = g.admit(&original, now).unwrap();
        let shifted = Envelope {
            timestamp: format!("0{T0}"),
            nonce: "01".into(),
            msg_signature: sig.into(),
        };
        assert!(g.admit(&shifted, now).is_err());
        assert_eq!(
            g.len(),
            1,
            "the split push is not remembered as another one"
        );
    }

    #[test]
    fn timestamps_must_be_canonical_decimal() {
        let mut g = ReplayGuard::default();
        let now = at_ms(T0 * 1000);
        for ts in [
            format!("0{T0}"),
            format!("00{T0}"),
            format!("+{T0}"),
            format!("{T0} "),
            format!("\t{T0}"),
            format!("{T0}\n"),
            "00".to_string(),
        ] {
            let mut q = push(T0, "canonical");
            q.timestamp = ts.clone();
            let e = g.admit(&q, now).unwrap_err();
            assert_eq!(e, Refused::BadTimestamp, "{ts:?}");
            assert_eq!(e.http_status(), 401, "{ts:?}");
        }
        assert!(g.is_empty());
        assert!(g.admit(&push(T0, "canonical"), now).is_ok());
    }

    #[test]
    fn a_released_push_can_be_retried() {
        let mut g = ReplayGuard::default();
        let now = T0 * 1000;
        let q = push(T0, "a");
        let admitted = g.admit(&q, at_ms(now)).unwrap();
        g.release(admitted);
        assert!(g.is_empty());
        let again = g.admit(&q, at_ms(now + 10)).unwrap();
        assert_eq!(g.admit(&q, at_ms(now + 20)), Err(Refused::Replay));
        // Releasing only touches its own admission.
        let stale_proof = Admitted {
            key: again.key,
            seq: again.seq + 100,
        };
        g.release(stale_proof);
        assert_eq!(g.admit(&q, at_ms(now + 30)), Err(Refused::Replay));
    }

    #[test]
    fn entries_are_forgotten_once_out_of_the_window() {
        let mut g = ReplayGuard::default();
        let now = T0 * 1000;
        for i in 0..10 {
            let _ = g.admit(&push(T0, &format!("n{i}")), at_ms(now)).unwrap();
        }
        assert_eq!(g.len(), 10);
        let _ = g
            .admit(&push(T0 + 301, "later"), at_ms(now + 300_001))
            .unwrap();
        assert_eq!(g.len(), 1, "the ten stale entries are dropped");
        assert_eq!(g.evicted(), 0, "expiry is not eviction");
    }

    #[test]
    fn at_the_cap_the_oldest_entry_is_evicted() {
        let mut g = ReplayGuard::new(WINDOW, 3);
        let now = at_ms(T0 * 1000);
        let first = push(T0, "1");
        for n in ["1", "2", "3"] {
            let _ = g.admit(&push(T0, n), now).unwrap();
        }
        assert_eq!(g.admit(&first, now), Err(Refused::Replay));
        let _ = g.admit(&push(T0, "4"), now).unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(g.evicted(), 1);
        // The evicted push is admitted again (the documented cost of the cap); the others
        // are still refused.
        let _ = g.admit(&first, now).unwrap();
        assert_eq!(g.evicted(), 2, "admitting it evicted \"2\"");
        assert_eq!(g.admit(&push(T0, "3"), now), Err(Refused::Replay));
        assert_eq!(g.admit(&push(T0, "4"), now), Err(Refused::Replay));
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn released_entries_free_their_place_without_counting_as_evictions() {
        let mut g = ReplayGuard::new(WINDOW, 2);
        let now = at_ms(T0 * 1000);
        let a = g.admit(&push(T0, "a"), now).unwrap();
        g.release(a);
        let _ = g.admit(&push(T0, "b"), now).unwrap();
        let _ = g.admit(&push(T0, "c"), now).unwrap();
        assert_eq!(g.evicted(), 0, "the released entry made room");
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn the_default_cap_holds_memory_at_100_000_entries() {
        let mut g = ReplayGuard::default();
        let now = at_ms(T0 * 1000);
        for i in 0..=CAPACITY {
            let q = Envelope {
                timestamp: T0.to_string(),
                nonce: "n".into(),
                msg_signature: format!("{i:040x}"),
            };
            let _ = g.admit(&q, now).unwrap();
        }
        assert_eq!(g.len(), CAPACITY);
        assert_eq!(g.evicted(), 1);
    }
}
