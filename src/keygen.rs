//! `wxtoken keygen`: random keys (rand's thread generator: a CSPRNG seeded from the operating
//! system), in the form their configuration key takes.
//!
//! `--client` prints a client key: 32 random bytes in unpadded base64url (43 characters of
//! `A-Z a-z 0-9 - _`), which an SDK can put into a URL unencoded. Without `--client` the
//! command will print the store's encryption key; that kind is not there yet.

use base64::Engine as _;

/// Random bytes in a client key: 256 bits, beyond any guessing.
const CLIENT_KEY_BYTES: usize = 32;

/// Which key `wxtoken keygen` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A `[[clients]]` key.
    Client,
    /// `[store] encryption_key`: not available yet.
    Store,
}

/// The text `wxtoken keygen` prints for `kind`: the key, on one line.
pub fn generate(kind: KeyKind) -> anyhow::Result<String> {
    match kind {
        KeyKind::Client => Ok(client_key()),
        KeyKind::Store => anyhow::bail!(
            "store encryption keys are not available yet; `wxtoken keygen --client` prints a client key"
        ),
    }
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
    fn client_keys_are_random_url_safe_and_43_characters() {
        let a = client_key();
        let b = client_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(generate(KeyKind::Store).is_err());
    }
}
