//! `wxtoken keygen`: random keys (rand's thread generator: a CSPRNG seeded from the operating
//! system), in the form their configuration key takes. A key is printed once and kept nowhere.
//!
//! Without `--client` it prints a new store encryption key, for `store.encryption_key_file`
//! (or `_env`), and its key id: `key: <base64 of 32 random bytes>` and `id: <8 hex digits>`.
//!
//! `--client` prints a client key: 32 random bytes in unpadded base64url (43 characters of
//! `A-Z a-z 0-9 - _`), which an SDK can put into a URL unencoded.

use std::io::Write;

use base64::Engine as _;

use crate::seal::StoreKey;

/// Random bytes in a client key: 256 bits, beyond any guessing.
const CLIENT_KEY_BYTES: usize = 32;

/// Which key `wxtoken keygen` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A `[[clients]]` key (`--client`).
    Client,
    /// A `[store]` encryption key and its id (the default).
    Store,
}

/// Writes a new key of `kind` as `wxtoken keygen` prints it.
pub fn write_key(kind: KeyKind, out: &mut impl Write) -> std::io::Result<()> {
    match kind {
        KeyKind::Client => writeln!(out, "{}", client_key()),
        KeyKind::Store => write_store_key(out),
    }
}

/// Writes a new store key as two lines, `key: <base64 of 32 random bytes>` and `id: <8 hex
/// digits>`: the id is what records, logs and `check-config` call the key by.
pub fn write_store_key(out: &mut impl Write) -> std::io::Result<()> {
    let (key, id) = StoreKey::generate();
    writeln!(out, "key: {}", key.as_str())?;
    writeln!(out, "id: {id}")
}

/// A new client key.
pub fn client_key() -> String {
    let mut bytes = [0u8; CLIENT_KEY_BYTES];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_key_parses_back_to_the_printed_id() {
        let mut out = Vec::new();
        write_key(KeyKind::Store, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let key = text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap();
        let id = text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
        assert_eq!(StoreKey::from_base64(key).unwrap().id().to_string(), id);
    }

    #[test]
    fn client_keys_are_random_url_safe_and_43_characters() {
        let a = client_key();
        let b = client_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let mut out = Vec::new();
        write_key(KeyKind::Client, &mut out).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line.trim_end().len(), 43, "{line}");
        assert!(
            !line.contains("key: "),
            "a client key is the bare key: {line}"
        );
    }
}
