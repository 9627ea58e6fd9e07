//! The `signature` of WeChat's plain requests to a message URL: the URL check (`echostr`) and
//! plaintext pushes carry the hex SHA-1 of the sorted, concatenated Token, timestamp and
//! nonce. It covers no body: a plaintext push is only as safe as the channel it came over.

use secrecy::{ExposeSecret as _, SecretString};
use sha1::{Digest as _, Sha1};
use subtle::ConstantTimeEq as _;

fn digest(token: &str, timestamp: &str, nonce: &str) -> [u8; 20] {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// The `signature` WeChat sends for this timestamp and nonce (the fake and the tests sign with
/// it, holding the Token as their configuration's text).
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    hex::encode(digest(token, timestamp, nonce))
}

/// Whether `given` is that signature, compared in constant time (hex in either case).
pub fn verify(token: &SecretString, timestamp: &str, nonce: &str, given: &str) -> bool {
    let mut bytes = [0u8; 20];
    if hex::decode_to_slice(given.as_bytes(), &mut bytes).is_err() {
        return false;
    }
    bool::from(digest(token.expose_secret(), timestamp, nonce).ct_eq(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_sha1_of_the_sorted_parts() {
        let token = SecretString::from("AAAAA");
        // sha1("1409304348" + "AAAAA" + "xxxxxx"), the three sorted: computed independently.
        let expected = {
            let mut h = Sha1::new();
            h.update(b"1409304348AAAAAxxxxxx");
            hex::encode(h.finalize())
        };
        assert_eq!(signature("AAAAA", "1409304348", "xxxxxx"), expected);
        assert!(verify(&token, "1409304348", "xxxxxx", &expected));
        assert!(verify(
            &token,
            "1409304348",
            "xxxxxx",
            &expected.to_ascii_uppercase()
        ));
    }

    #[test]
    fn anything_else_does_not_verify() {
        let token = SecretString::from("AAAAA");
        let good = signature("AAAAA", "1", "2");
        assert!(!verify(&token, "1", "3", &good));
        assert!(!verify(&SecretString::from("BBBBB"), "1", "2", &good));
        assert!(!verify(&token, "1", "2", &good[..39]));
        assert!(!verify(&token, "1", "2", ""));
        assert!(!verify(&token, "1", "2", &format!("{good}00")));
    }
}
