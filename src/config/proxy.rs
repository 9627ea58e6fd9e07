//! `[proxy]`: the API gateway's settings (which paths are WeChat API calls, body limit,
//! timeout, concurrency), validated.

use std::time::Duration;

use serde::Deserialize;

use super::validate::{count, secs};
use super::ConfigError;

/// The WeChat API path prefixes the gateway forwards, before `[proxy] extra_prefixes`.
pub const WECHAT_API_PREFIXES: &[&str] = &[
    "/cgi-bin/",
    "/wxa/",
    "/sns/",
    "/datacube/",
    "/card/",
    "/merchant/",
    "/shop/",
    "/product/",
    "/semantic/",
    "/customservice/",
    "/channels/",
    "/wxaapi/",
];

/// Largest `max_body_bytes`: a gigabyte held in memory per call is far past WeChat's own
/// upload limits (tens of megabytes).
const MAX_BODY_LIMIT: u64 = 1 << 30;
/// Most proxied calls in flight: each holds an upstream connection and up to a request body.
const MAX_PROXY_CONCURRENT: u64 = 65_536;
/// Longest proxied call (answer and body both).
const MAX_PROXY_SECS: u64 = 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawProxy {
    pub(super) extra_prefixes: Vec<String>,
    pub(super) max_body_bytes: u64,
    pub(super) timeout_secs: u64,
    pub(super) max_concurrent: u64,
    pub(super) anonymous_max_concurrent: u64,
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            extra_prefixes: Vec::new(),
            max_body_bytes: 20 * 1024 * 1024,
            timeout_secs: 30,
            max_concurrent: 64,
            anonymous_max_concurrent: 8,
        }
    }
}

/// Compared by value on a reload: a change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Every forwarded path prefix: WeChat's own ([`WECHAT_API_PREFIXES`]) and the extra ones,
    /// each starting and ending with `/`.
    pub prefixes: Vec<String>,
    /// Largest request body forwarded (413 above); it is held in memory to be replayed.
    pub max_body_bytes: usize,
    /// Deadline for a proxied call: the request body's arrival, then WeChat's answer, then
    /// the answer's body each get this long.
    pub timeout: Duration,
    /// Most proxied calls in flight at once, across the process; more wait for a slot (up to
    /// `timeout`). Separate from `[upstream] max_concurrent`, so API traffic never holds a
    /// slot a token refresh needs.
    pub max_concurrent: usize,
    /// Most calls in flight that carry no wxtoken credential (web OAuth made with a user's
    /// token): a pool of their own, so anonymous callers never hold an authenticated call's
    /// slot. Their bodies are at most [`ANONYMOUS_MAX_BODY`] bytes.
    pub anonymous_max_concurrent: usize,
}

/// Largest body of a call without a wxtoken credential. Those calls are WeChat's GET APIs
/// (`/sns/userinfo`, `/sns/auth`, `/sns/oauth2/refresh_token`); a few KiB leaves room for a
/// client that sends its parameters as a form, and nothing for a stranger's upload.
pub const ANONYMOUS_MAX_BODY: usize = 4096;

impl Default for ProxySettings {
    fn default() -> Self {
        validate_proxy(RawProxy::default()).expect("the defaults are valid")
    }
}

impl ProxySettings {
    /// Whether `path` is a WeChat API call the gateway forwards.
    pub fn is_api_path(&self, path: &str) -> bool {
        self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

/// Paths of wxtoken's own that an extra prefix must not capture.
const OWN_PREFIXES: &[&str] = &["/v1/", "/healthz", "/readyz", "/metrics"];

pub(super) fn validate_proxy(raw: RawProxy) -> Result<ProxySettings, ConfigError> {
    let mut prefixes: Vec<String> = WECHAT_API_PREFIXES.iter().map(|p| p.to_string()).collect();
    for (i, p) in raw.extra_prefixes.into_iter().enumerate() {
        let key = format!("proxy.extra_prefixes[{i}]");
        let shape_ok = p.len() >= 3
            && p.len() <= 128
            && p.starts_with('/')
            && p.ends_with('/')
            && !p.contains("//")
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
        if !shape_ok {
            return Err(ConfigError::at(
                key,
                format!(
                    "`{}` must be a path prefix like \"/express/\": starting and ending with '/', \
                     of letters, digits, '-', '_', '.'",
                    p.chars().take(64).collect::<String>()
                ),
            ));
        }
        if let Some(own) = OWN_PREFIXES.iter().find(|own| p.starts_with(*own)) {
            return Err(ConfigError::at(
                key,
                format!("`{p}` would capture wxtoken's own `{own}` routes"),
            ));
        }
        if prefixes.contains(&p) {
            return Err(ConfigError::at(key, format!("`{p}` is already forwarded")));
        }
        prefixes.push(p);
    }
    let max_body_bytes = count(
        "proxy.max_body_bytes",
        raw.max_body_bytes,
        1,
        MAX_BODY_LIMIT,
    )?;
    Ok(ProxySettings {
        prefixes,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        timeout: secs("proxy.timeout_secs", raw.timeout_secs, 1, MAX_PROXY_SECS)?,
        max_concurrent: usize::try_from(count(
            "proxy.max_concurrent",
            raw.max_concurrent,
            1,
            MAX_PROXY_CONCURRENT,
        )?)
        .unwrap_or(usize::MAX),
        anonymous_max_concurrent: usize::try_from(count(
            "proxy.anonymous_max_concurrent",
            raw.anonymous_max_concurrent,
            1,
            MAX_PROXY_CONCURRENT,
        )?)
        .unwrap_or(usize::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_prefixes(p: &[&str]) -> Result<ProxySettings, ConfigError> {
        validate_proxy(RawProxy {
            extra_prefixes: p.iter().map(|s| s.to_string()).collect(),
            ..RawProxy::default()
        })
    }

    #[test]
    fn defaults_forward_wechats_prefixes_with_a_20_mib_limit() {
        let s = ProxySettings::default();
        assert_eq!(s.max_body_bytes, 20 * 1024 * 1024);
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert!(s.is_api_path("/cgi-bin/user/info"));
        assert!(s.is_api_path("/wxaapi/newtmpl/gettemplate"));
        assert!(!s.is_api_path("/cgi-bin"));
        assert!(!s.is_api_path("/v1/apps/shop/token"));
        assert!(!s.is_api_path("/express/business/order/add"));
    }

    #[test]
    fn extra_prefixes_are_forwarded_too() {
        let s = with_prefixes(&["/express/", "/intp/market/"]).expect("valid");
        assert!(s.is_api_path("/express/business/order/add"));
        assert!(s.is_api_path("/intp/market/order"));
        assert!(!s.is_api_path("/intp/other"));
    }

    #[test]
    fn malformed_or_capturing_prefixes_are_refused_by_key() {
        for bad in ["express/", "/express", "/", "//", "/a b/", "/a?b/"] {
            let e = with_prefixes(&[bad]).expect_err(bad).to_string();
            assert!(e.contains("proxy.extra_prefixes[0]"), "{e}");
        }
        let e = with_prefixes(&["/v1/apps/"]).expect_err("own").to_string();
        assert!(e.contains("wxtoken's own"), "{e}");
        let e = with_prefixes(&["/cgi-bin/"]).expect_err("dup").to_string();
        assert!(e.contains("already forwarded"), "{e}");
    }

    #[test]
    fn numbers_are_range_checked() {
        let e = validate_proxy(RawProxy {
            max_body_bytes: 0,
            ..RawProxy::default()
        })
        .expect_err("zero");
        assert!(e.to_string().contains("proxy.max_body_bytes"));
        let e = validate_proxy(RawProxy {
            timeout_secs: 0,
            ..RawProxy::default()
        })
        .expect_err("zero");
        assert!(e.to_string().contains("proxy.timeout_secs"));
    }
}
