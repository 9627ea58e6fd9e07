//! Encryption at rest of the secret fields the stores write: the key ring (current key and the
//! previous ones, found by key id), and the sealed form of one value bound to its record and
//! field.
//!
//! A sealed value is text, so it stands where the plaintext stood in a JSON record:
//! `wxe1:<key id>:<base64url(nonce || ciphertext || tag)>`. XChaCha20-Poly1305 takes a random
//! 192-bit nonce per value, which never repeats in practice however many values are written,
//! so no counter has to survive restarts or be shared by a fleet. The associated data is the
//! record's identity and the field's name: a value copied to another record or another field
//! fails to open instead of passing for that record's secret.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What a sealed value starts with; a WeChat token, ticket or code never holds a `:`, so a
/// plaintext value cannot be mistaken for a sealed one.
const PREFIX: &str = "wxe1:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// A store key's length in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// base64url without padding: sealed values travel inside JSON strings and Redis values, where
/// `+`, `/` and `=` would be harmless but url-safe text is easier to grep and to copy.
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The first 4 bytes of the SHA-256 of a key, shown as 8 hex digits: names a key in records,
/// logs and error messages without revealing anything usable about it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 4]);

impl KeyId {
    fn of(key: &[u8; KEY_LEN]) -> KeyId {
        let digest = Sha256::digest(key);
        KeyId([digest[0], digest[1], digest[2], digest[3]])
    }

    fn parse(text: &str) -> Option<KeyId> {
        let mut id = [0u8; 4];
        hex::decode_to_slice(text, &mut id).ok()?;
        // Only the lowercase form is ever written: another spelling is not a record of ours.
        (text.bytes().all(|b| !b.is_ascii_uppercase())).then_some(KeyId(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// One 256-bit store key. Its bytes are wiped when it is dropped and never printed: `Debug`
/// shows the id.
pub struct StoreKey {
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl StoreKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> StoreKey {
        StoreKey {
            id: KeyId::of(bytes),
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }

    /// The key from its base64 text (standard or url-safe alphabet, padded or not, surrounding
    /// whitespace ignored: a key file written by `echo` ends in a newline). The error never
    /// quotes the text.
    pub fn from_base64(text: &str) -> Result<StoreKey, KeyError> {
        let text = text.trim();
        let bytes = Zeroizing::new(decode_any_base64(text).ok_or(KeyError::NotBase64)?);
        let bytes: &[u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        Ok(StoreKey::from_bytes(bytes))
    }

    /// A new random key, as `wxtoken keygen` prints it: the base64 text and its id.
    pub fn generate() -> (Zeroizing<String>, KeyId) {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(bytes.as_mut());
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(*bytes));
        (text, KeyId::of(&bytes))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreKey").field("id", &self.id).finish()
    }
}

fn decode_any_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// Why a key given in the configuration is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is not base64 (`wxtoken keygen` prints a key)")]
    NotBase64,
    #[error(
        "is {0} bytes long; a store key is 32 random bytes, base64 (`wxtoken keygen` prints one)"
    )]
    Length(usize),
}

/// Where a sealed value belongs: the record (its store key, e.g. `app/shop` or
/// `platform/saas/authorizer/wx123`) and the field in it. Both go into the associated data.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    pub record: &'a str,
    pub field: &'a str,
}

impl Binding<'_> {
    /// Length-prefixed, so that no pair of (record, field) spells the same bytes as another.
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(16 + self.record.len() + self.field.len());
        aad.extend_from_slice(b"wxtoken/1\0");
        aad.extend_from_slice(&(self.record.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.record.as_bytes());
        aad.extend_from_slice(&(self.field.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.field.as_bytes());
        aad
    }
}

/// Why a stored value does not open. None of them quotes the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Sealed under a key this instance was not given (neither the current one nor a previous
    /// one): the message names the id, so the operator knows which key to add.
    #[error("sealed under key id {0}, which is not configured (neither store.encryption_key nor a previous key)")]
    UnknownKey(KeyId),
    /// The key is known, but the value does not authenticate: tampered with, truncated, or
    /// copied from another record or field.
    #[error("does not decrypt under key id {0}: altered, or moved from another record or field")]
    Forged(KeyId),
    /// The sealed form is damaged (bad prefix, key id or base64).
    #[error("is not a well-formed sealed value")]
    Malformed,
    /// A plaintext value while `store.require_encryption` is on.
    #[error("is stored in plaintext, and store.require_encryption is on")]
    Plaintext,
}

/// The keys a store seals and opens values with. Without a current key, values are written in
/// plaintext (as before encryption was configured) and sealed ones still open with any
/// previous key given.
#[derive(Default)]
pub struct Keyring {
    current: Option<StoreKey>,
    previous: Vec<StoreKey>,
    require_encryption: bool,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.as_ref().map(StoreKey::id))
            .field(
                "previous",
                &self.previous.iter().map(StoreKey::id).collect::<Vec<_>>(),
            )
            .field("require_encryption", &self.require_encryption)
            .finish()
    }
}

impl Keyring {
    /// No key: values are written and read in plaintext.
    pub fn plaintext() -> Keyring {
        Keyring::default()
    }

    /// `current` seals every write; `previous` keys only open values written before a rotation.
    /// A previous key equal to the current one is dropped (it would never be consulted).
    pub fn new(current: Option<StoreKey>, previous: Vec<StoreKey>, require: bool) -> Keyring {
        let current_id = current.as_ref().map(StoreKey::id);
        let mut kept: Vec<StoreKey> = Vec::with_capacity(previous.len());
        for key in previous {
            if Some(key.id) != current_id && !kept.iter().any(|k| k.id == key.id) {
                kept.push(key);
            }
        }
        Keyring {
            current,
            previous: kept,
            require_encryption: require,
        }
    }

    /// The id of the key writes are sealed with, if any.
    pub fn current_id(&self) -> Option<KeyId> {
        self.current.as_ref().map(StoreKey::id)
    }

    pub fn encrypts(&self) -> bool {
        self.current.is_some()
    }

    /// The form of `plaintext` to store in `binding`'s place: sealed under the current key, or
    /// the plaintext itself when no key is configured.
    pub fn seal(&self, binding: Binding<'_>, plaintext: &str) -> String {
        let Some(key) = &self.current else {
            return plaintext.to_owned();
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = binding.associated_data();
        let sealed = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            // Encryption fails only for messages of more than 2^38 bytes.
            .expect("a store value is far below XChaCha20-Poly1305's length limit");
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, B64.encode(raw))
    }

    /// The plaintext of a stored value: opened with the key its id names, or the value itself
    /// when it was stored in plaintext (allowed unless `require_encryption`).
    pub fn open<'v>(
        &self,
        binding: Binding<'_>,
        stored: &'v str,
    ) -> Result<Cow<'v, str>, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return if self.require_encryption {
                Err(OpenError::Plaintext)
            } else {
                Ok(Cow::Borrowed(stored))
            };
        };
        let (id, body) = rest.split_once(':').ok_or(OpenError::Malformed)?;
        let id = KeyId::parse(id).ok_or(OpenError::Malformed)?;
        let key = self.key(id).ok_or(OpenError::UnknownKey(id))?;
        let raw = B64.decode(body).map_err(|_| OpenError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError::Malformed)?;
        let aad = binding.associated_data();
        let plain = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Forged(id))?;
        String::from_utf8(plain)
            .map(Cow::Owned)
            .map_err(|_| OpenError::Forged(id))
    }

    /// The key id a stored value names, if it is sealed: `rekey` rewrites the values whose id
    /// is not the current key's.
    pub fn sealed_with(stored: &str) -> Option<KeyId> {
        let rest = stored.strip_prefix(PREFIX)?;
        KeyId::parse(rest.split_once(':')?.0)
    }

    /// Whether a stored value is already in the form this ring would write (sealed with the
    /// current key, or plaintext when there is none).
    pub fn is_current(&self, stored: &str) -> bool {
        Keyring::sealed_with(stored) == self.current_id()
    }

    fn key(&self, id: KeyId) -> Option<&StoreKey> {
        self.current
            .iter()
            .chain(self.previous.iter())
            .find(|k| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> StoreKey {
        StoreKey::from_bytes(&[byte; KEY_LEN])
    }

    const SHOP: Binding<'static> = Binding {
        record: "app/shop",
        field: "token",
    };

    #[test]
    fn a_sealed_value_opens_to_its_plaintext_and_does_not_contain_it() {
        let ring = Keyring::new(Some(key(1)), vec![], false);
        let sealed = ring.seal(SHOP, "ACCESS_TOKEN_VALUE");
        assert!(!sealed.contains("ACCESS_TOKEN_VALUE"));
        assert!(sealed.starts_with(&format!("wxe1:{}:", key(1).id())));
        assert_eq!(ring.open(SHOP, &sealed).unwrap(), "ACCESS_TOKEN_VALUE");
        // A fresh nonce each time: the same value never seals to the same text.
        assert_ne!(sealed, ring.seal(SHOP, "ACCESS_TOKEN_VALUE"));
    }

    #[test]
    fn a_value_moved_to_another_record_or_field_does_not_open() {
        let ring = Keyring::new(Some(key(1)), vec![], false);
        let sealed = ring.seal(SHOP, "T");
        let other_record = Binding {
            record: "app/shop2",
            ..SHOP
        };
        let other_field = Binding {
            field: "ticket",
            ..SHOP
        };
        let id = key(1).id();
        assert_eq!(ring.open(other_record, &sealed), Err(OpenError::Forged(id)));
        assert_eq!(ring.open(other_field, &sealed), Err(OpenError::Forged(id)));
        // The length prefix keeps ("ab", "c") apart from ("a", "bc").
        let a = Binding {
            record: "ab",
            field: "c",
        };
        let b = Binding {
            record: "a",
            field: "bc",
        };
        assert!(ring.open(b, &ring.seal(a, "T")).is_err());
    }

    #[test]
    fn a_wrong_key_is_an_error_naming_the_id_never_garbage() {
        let writer = Keyring::new(Some(key(1)), vec![], false);
        let reader = Keyring::new(Some(key(2)), vec![], false);
        let sealed = writer.seal(SHOP, "T");
        let err = reader.open(SHOP, &sealed).unwrap_err();
        assert_eq!(err, OpenError::UnknownKey(key(1).id()));
        assert!(err.to_string().contains(&format!("key id {}", key(1).id())));
        // Without any key, a sealed value is not plaintext either.
        assert_eq!(
            Keyring::plaintext().open(SHOP, &sealed),
            Err(OpenError::UnknownKey(key(1).id()))
        );
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let ring = Keyring::new(Some(key(1)), vec![], false);
        let sealed = ring.seal(SHOP, "TOKEN");
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut raw = B64.decode(body).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let bad = format!("{head}:{}", B64.encode(&raw));
            assert_eq!(ring.open(SHOP, &bad), Err(OpenError::Forged(key(1).id())));
            raw[i] ^= 1;
        }
        for bad in [
            format!("{head}:"),
            format!("{head}:!!"),
            "wxe1:zz:AAAA".to_owned(),
            "wxe1:".to_owned(),
            // The key id in another letter case is not a spelling this ring writes.
            sealed.replacen(
                &key(1).id().to_string(),
                &key(1).id().to_string().to_uppercase(),
                1,
            ),
        ] {
            assert!(ring.open(SHOP, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_reads_old_values_and_writes_with_the_current_key() {
        let old = Keyring::new(Some(key(1)), vec![], false);
        let sealed_old = old.seal(SHOP, "T");
        let rotated = Keyring::new(Some(key(2)), vec![key(1), key(1), key(2)], false);
        assert_eq!(
            rotated.previous.len(),
            1,
            "duplicates and the current key dropped"
        );
        assert_eq!(rotated.open(SHOP, &sealed_old).unwrap(), "T");
        assert!(!rotated.is_current(&sealed_old));
        let sealed_new = rotated.seal(SHOP, "T");
        assert_eq!(Keyring::sealed_with(&sealed_new), Some(key(2).id()));
        assert!(rotated.is_current(&sealed_new));
    }

    #[test]
    fn plaintext_is_read_until_encryption_is_required() {
        let ring = Keyring::new(Some(key(1)), vec![], false);
        assert_eq!(ring.open(SHOP, "PLAIN").unwrap(), "PLAIN");
        assert!(!ring.is_current("PLAIN"));
        let strict = Keyring::new(Some(key(1)), vec![], true);
        assert_eq!(strict.open(SHOP, "PLAIN"), Err(OpenError::Plaintext));
        let none = Keyring::plaintext();
        assert_eq!(none.seal(SHOP, "PLAIN"), "PLAIN");
        assert!(none.is_current("PLAIN"));
    }

    #[test]
    fn keys_parse_from_base64_and_refuse_other_lengths_without_quoting() {
        let (text, id) = StoreKey::generate();
        let parsed = StoreKey::from_base64(&format!("{}\n", text.as_str())).unwrap();
        assert_eq!(parsed.id(), id);
        assert_eq!(id.to_string().len(), 8);
        let url_safe = B64.encode(
            base64::engine::general_purpose::STANDARD
                .decode(text.as_str())
                .unwrap(),
        );
        assert_eq!(StoreKey::from_base64(&url_safe).unwrap().id(), id);
        assert_eq!(
            StoreKey::from_base64("c2hvcnQ=").unwrap_err(),
            KeyError::Length(5)
        );
        let err = StoreKey::from_base64("not base64 at all!").unwrap_err();
        assert_eq!(err, KeyError::NotBase64);
        assert!(!format!("{parsed:?}").contains(text.as_str()));
        assert!(format!("{parsed:?}").contains(&id.to_string()));
    }

    #[test]
    fn the_key_id_is_the_start_of_the_keys_sha256() {
        let bytes = [7u8; KEY_LEN];
        let want = hex::encode(&Sha256::digest(bytes)[..4]);
        assert_eq!(StoreKey::from_bytes(&bytes).id().to_string(), want);
    }
}
