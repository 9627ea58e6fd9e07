//! The signature a receiver checks on each delivery: `X-Wxtoken-Timestamp` (unix seconds) and
//! `X-Wxtoken-Signature: sha256=<hex>`, the HMAC-SHA256 keyed with the route's signing key over
//! the timestamp, a `.` and the body exactly as sent.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The header with the unix seconds the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Wxtoken-Timestamp";
/// The header with `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Wxtoken-Signature";

/// `sha256=<hex HMAC-SHA256(key, timestamp + "." + body)>`.
pub fn sign(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `signature` is [`sign`]'s for these, compared in constant time (what a receiver
/// does; the fake inbox uses it).
pub fn verify(key: &[u8], timestamp: u64, body: &[u8], signature: &str) -> bool {
    let Some(hex_part) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_part) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body_as_python_computes_it() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"0123456789abcdef",
        //   b"1700000000.{\"id\":\"x\"}", hashlib.sha256).hexdigest())'
        let want = "sha256=f1cf8ba6a2fa64bd8193b9db564f42cd35d0fc2a46f6a2c2903f897838a7f23a";
        let body = br#"{"id":"x"}"#;
        assert_eq!(sign(b"0123456789abcdef", 1_700_000_000, body), want);
        assert!(verify(b"0123456789abcdef", 1_700_000_000, body, want));
        assert!(!verify(b"0123456789abcdeF", 1_700_000_000, body, want));
        assert!(!verify(b"0123456789abcdef", 1_700_000_001, body, want));
        assert!(!verify(
            b"0123456789abcdef",
            1_700_000_000,
            br#"{"id":"y"}"#,
            want
        ));
        assert!(!verify(
            b"0123456789abcdef",
            1_700_000_000,
            body,
            &want[7..]
        ));
        assert!(!verify(
            b"0123456789abcdef",
            1_700_000_000,
            body,
            "sha256=zz"
        ));
    }
}
