//! `wxtoken rekey`: one stored record rewritten with its secret fields sealed under the current
//! key. The stores find their records (`embedded/rekey.rs`, `redis/rekey.rs`); this says, by
//! the kind of record, which fields are secret and what it is bound to, and reseals it.
//!
//! Records are rewritten as JSON values, not through their decoders: a record is kept exactly
//! as it was but for its secret fields, and a record that is not ours (corrupt) is left alone for
//! the stores to judge as before.

use serde_json::Value;

use super::sealed::{self, Unreadable};
use crate::seal::Keyring;

/// What a stored value is, as its store's key says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A token record (its appid is in the record).
    Token,
    /// The named platform's verify ticket.
    Ticket(&'a str),
    Authorizer(&'a str),
    Code(&'a str),
    Event(&'a str),
    /// A message push (its content fields, bound to its id).
    Push,
}

/// What [`reseal`] made of one value.
#[derive(Debug, PartialEq, Eq)]
pub enum Resealed {
    /// Already in the form the current key writes (or it holds no secret): left as it is.
    Current,
    /// The value to write instead.
    Rewritten(Vec<u8>),
    /// Not a record of ours: left as it is (the stores skip it on reading, as before).
    Corrupt,
}

/// Counts of one rekey run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rekeyed {
    /// Values looked at.
    pub seen: usize,
    /// Values rewritten under the current key.
    pub rewritten: usize,
    /// Values a running instance changed between the read and the rewrite (a running
    /// instance writes with its own current key: run rekey again if it is not this one).
    pub raced: usize,
}

/// `bytes` with its secret field sealed under `ring`'s current key (or opened to plaintext
/// when it has none: rekey without a key undoes encryption). A plaintext value is taken as
/// it is even where encryption is required: rekey is how such a store is sealed. A value that
/// does not open is an error naming the key id it needs.
pub fn reseal(ring: &Keyring, kind: Kind<'_>, bytes: &[u8]) -> Result<Resealed, Unreadable> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(Resealed::Corrupt);
    };
    let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_string);
    let bound: Option<(String, &'static [&'static str])> = match kind {
        Kind::Token => text("appid").map(|a| (sealed::token_record(&a), &["token"][..])),
        Kind::Ticket(p) => Some((sealed::ticket_record(p), &["ticket"][..])),
        Kind::Authorizer(p) => {
            text("appid").map(|a| (sealed::authorizer_record(p, &a), &["refresh_token"][..]))
        }
        Kind::Code(p) => text("digest").map(|d| (sealed::code_record(p, &d), &["code"][..])),
        Kind::Event(p) => {
            let at = map.get("received_at_ms").and_then(Value::as_u64);
            text("info_type")
                .zip(at)
                .map(|(t, at)| (sealed::event_record(p, &t, at), &["xml"][..]))
        }
        Kind::Push => {
            text("id").map(|id| (super::messages::push_binding(&id), &["message", "raw"][..]))
        }
    };
    let Some((record, fields)) = bound else {
        return Ok(Resealed::Corrupt);
    };
    let mut changed = false;
    for &field in fields {
        let stored = match map.get(field) {
            Some(Value::String(s)) => s.clone(),
            // No secret held (a done code, an authorizer without a refresh token).
            None | Some(Value::Null) => continue,
            Some(_) => return Ok(Resealed::Corrupt),
        };
        if ring.is_current(&stored) {
            continue;
        }
        let plain = match Keyring::sealed_with(&stored) {
            None => stored,
            Some(_) => sealed::open(ring, &record, field, &stored)?,
        };
        let value = sealed::seal(ring, &record, field, &plain);
        map.insert(field.to_string(), Value::String(value));
        changed = true;
    }
    if !changed {
        return Ok(Resealed::Current);
    }
    match serde_json::to_vec(&map) {
        Ok(out) => Ok(Resealed::Rewritten(out)),
        Err(_) => Ok(Resealed::Corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{OpenError, StoreKey, KEY_LEN};

    fn key(b: u8) -> StoreKey {
        StoreKey::from_bytes(&[b; KEY_LEN])
    }

    #[test]
    fn a_record_under_an_old_key_is_resealed_under_the_current_one_and_the_rest_kept() {
        let old = Keyring::new(Some(key(1)), vec![], false);
        let new = Keyring::new(Some(key(2)), vec![key(1)], false);
        let record = sealed::authorizer_record("saas", "wx1");
        let bytes = serde_json::json!({
            "v": 1, "appid": "wx1", "updated_at_ms": 5,
            "refresh_token": sealed::seal(&old, &record, "refresh_token", "REFRESH-1"),
        })
        .to_string();
        let Resealed::Rewritten(out) =
            reseal(&new, Kind::Authorizer("saas"), bytes.as_bytes()).unwrap()
        else {
            panic!("not rewritten")
        };
        let v: Value = serde_json::from_slice(&out).unwrap();
        let stored = v["refresh_token"].as_str().unwrap();
        assert_eq!(Keyring::sealed_with(stored), Some(key(2).id()));
        assert_eq!(v["updated_at_ms"], 5);
        let back = sealed::open(&new, &record, "refresh_token", stored).unwrap();
        assert_eq!(back, "REFRESH-1");
        // Once current, a second run rewrites nothing.
        assert_eq!(
            reseal(&new, Kind::Authorizer("saas"), &out).unwrap(),
            Resealed::Current
        );
    }

    #[test]
    fn a_push_has_both_content_fields_resealed_and_opens_under_the_new_key_only() {
        use crate::store::messages::{decode_push, encode_push, PushRecord, StoredSource};
        let old = Keyring::new(Some(key(1)), vec![], false);
        let new = Keyring::new(Some(key(2)), vec![key(1)], false);
        let push = PushRecord {
            id: "0001".into(),
            source: StoredSource {
                kind: "app".into(),
                app: Some("shop".into()),
                platform: None,
                appid: "wx1".into(),
            },
            received_at: crate::time::UnixMillis::new(5).unwrap(),
            format: "xml".into(),
            message: serde_json::from_str(r#"{"Content":"SECRET-TEXT"}"#).unwrap(),
            raw: "<xml>SECRET-TEXT</xml>".into(),
        };
        let bytes = encode_push(&old, &push);
        let Resealed::Rewritten(out) = reseal(&new, Kind::Push, &bytes).unwrap() else {
            panic!("not rewritten")
        };
        let only_new = Keyring::new(Some(key(2)), vec![], false);
        let back = decode_push(&only_new, &out).unwrap();
        assert_eq!(
            (back.raw.as_str(), &back.message),
            (push.raw.as_str(), &push.message)
        );
        assert!(decode_push(&old, &out).is_err());
        assert_eq!(reseal(&new, Kind::Push, &out).unwrap(), Resealed::Current);
    }

    #[test]
    fn plaintext_is_sealed_and_a_missing_key_is_an_error_naming_it() {
        let strict = Keyring::new(Some(key(2)), vec![], true);
        let plain = br#"{"v":1,"appid":"wx9","token":"PLAIN-TOKEN"}"#;
        let Resealed::Rewritten(out) = reseal(&strict, Kind::Token, plain).unwrap() else {
            panic!("plaintext not sealed")
        };
        assert!(!String::from_utf8_lossy(&out).contains("PLAIN-TOKEN"));
        let stranger = Keyring::new(Some(key(3)), vec![], false);
        let err = reseal(&stranger, Kind::Token, &out).unwrap_err();
        assert_eq!(err.error, OpenError::UnknownKey(key(2).id()));
        assert_eq!(
            reseal(&strict, Kind::Token, b"not json").unwrap(),
            Resealed::Corrupt
        );
        let done = br#"{"v":1,"digest":"ab","code":null}"#;
        assert_eq!(
            reseal(&strict, Kind::Code("saas"), done).unwrap(),
            Resealed::Current
        );
    }
}
