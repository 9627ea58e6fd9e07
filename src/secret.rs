//! Secret values that print as fingerprints: an access token (or ticket) and the fingerprint
//! logs, errors and metrics may show instead of it.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The longest token or ticket accepted, from upstream or from a store, in bytes. WeChat asks
/// for room for at least 512 characters; the margin leaves room for a format change without
/// letting an absurd value through. The HTTP body limit is sized from it, so any accepted
/// token can be reported.
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// Whether `t` can be a WeChat token or ticket. They are URL-safe today; anything with
/// whitespace or control characters would break the headers and URLs clients put it into, so
/// it is refused wherever a credential enters.
pub fn plausible_credential(t: &str) -> bool {
    !t.is_empty() && t.len() <= MAX_CREDENTIAL_LEN && t.bytes().all(|b| b.is_ascii_graphic())
}

/// An access token. Its `Debug` and `Display` show only a fingerprint, so a token that ends up
/// in a log line or an error by accident does not leak.
///
/// The text is wiped from memory when the last holder drops it, so a token that was replaced
/// does not linger in freed heap pages.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<Zeroizing<Box<str>>>);

impl AccessToken {
    pub fn new(value: impl Into<Box<str>>) -> Self {
        AccessToken(Arc::new(Zeroizing::new(value.into())))
    }

    /// The token itself: only for answering clients and for calling WeChat.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.0)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken({})", self.fingerprint())
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.fingerprint())
    }
}

/// The first 8 hex digits of a secret's SHA-256: enough to tell tokens apart in logs, useless
/// to an attacker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 4]);

impl Fingerprint {
    pub fn of(secret: &str) -> Self {
        let d = Sha256::digest(secret.as_bytes());
        Fingerprint([d[0], d[1], d[2], d[3]])
    }

    /// The fingerprint's 4 bytes (its text is their hex).
    pub fn bytes(self) -> [u8; 4] {
        self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
