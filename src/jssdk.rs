//! JS-SDK page signatures: computed server-side so business servers never hold the ticket.

use sha1::{Digest, Sha1};

/// The URL a page signature is made for: an absolute http(s) URL, without its `#fragment`
/// (WeChat signs the page URL as the browser sees it, before the fragment).
pub fn signed_url(url: &str) -> Result<&str, &'static str> {
    let url = url.trim();
    let without_fragment = url.split('#').next().unwrap_or_default();
    let rest = without_fragment
        .strip_prefix("https://")
        .or_else(|| without_fragment.strip_prefix("http://"))
        .ok_or("url must be an absolute http:// or https:// URL")?;
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("url must name a host");
    }
    if without_fragment.chars().any(|c| c.is_control()) {
        return Err("url must not contain control characters");
    }
    Ok(without_fragment)
}

/// `sha1("jsapi_ticket=T&noncestr=N&timestamp=TS&url=U")`: keys in ASCII order, values raw
/// (no URL escaping), as WeChat's JS-SDK documentation specifies.
pub fn signature(ticket: &str, nonce: &str, timestamp: u64, url: &str) -> String {
    let plain = format!("jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}");
    hex::encode(Sha1::digest(plain.as_bytes()))
}

/// A random nonce of 16 letters and digits.
pub fn nonce() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example published in WeChat's JS-SDK documentation (appendix 1).
    #[test]
    fn published_example() {
        let sig = signature(
            "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
            "Wm3WZYTPz0wzccnW",
            1414587457,
            "http://mp.weixin.qq.com?params=value",
        );
        assert_eq!(sig, "0f9de62fce790f9a083d5c99e95740ceb90c27ed");
    }

    #[test]
    fn fragment_is_dropped_and_values_stay_raw() {
        assert_eq!(
            signed_url("https://example.com/a?b=c d&e=%20#frag").unwrap(),
            "https://example.com/a?b=c d&e=%20"
        );
        assert_eq!(
            signature("t", "n", 1, signed_url("http://h/p#x").unwrap()),
            signature("t", "n", 1, "http://h/p")
        );
    }

    #[test]
    fn only_absolute_http_urls() {
        for bad in [
            "",
            "/relative",
            "ftp://h/x",
            "https://",
            "https:///path",
            "javascript:alert(1)",
        ] {
            assert!(signed_url(bad).is_err(), "{bad}");
        }
        assert!(signed_url("http://h").is_ok());
    }

    #[test]
    fn nonces_are_16_alphanumerics_and_differ() {
        let a = nonce();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, nonce());
    }
}
