//! The Open Platform's authorization links: what `POST /v1/platforms/{name}/preauth` accepts
//! (a redirect URI, an account type, an optional single account) and the PC and mobile links
//! it builds around a pre-auth code.
//!
//! WeChat's account types (`auth_type`): 1 official accounts only, 2 mini programs only, 3 both
//! (WeChat's default, used when none is given). `biz_appid` limits the page to one account.

use serde::Deserialize;

/// The PC authorization page (the merchant scans a QR code there).
const PC_PAGE: &str = "https://mp.weixin.qq.com/cgi-bin/componentloginpage";
/// The mobile authorization page (opened inside WeChat).
const MOBILE_PAGE: &str = "https://open.weixin.qq.com/wxaopen/safe/bindcomponent";

/// The account type used when the request names none: both kinds, as WeChat shows by default.
pub const DEFAULT_AUTH_TYPE: u8 = 3;

/// The longest redirect URI accepted; browsers and WeChat's pages cope with far less than the
/// link lengths this allows.
const MAX_REDIRECT_URI: usize = 2048;

/// The body of `POST /v1/platforms/{name}/preauth`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreauthBody {
    pub redirect_uri: String,
    pub auth_type: Option<u8>,
    pub biz_appid: Option<String>,
}

/// A validated request for links.
#[derive(Debug, PartialEq, Eq)]
pub struct LinkRequest {
    pub redirect_uri: String,
    pub auth_type: u8,
    pub biz_appid: Option<String>,
}

impl PreauthBody {
    /// Checks the fields; the error says which one is wrong and why, without quoting it back.
    pub fn validate(self) -> Result<LinkRequest, String> {
        if !is_absolute_http_url(&self.redirect_uri) {
            return Err(format!(
                "redirect_uri must be an absolute http:// or https:// URL with a host, \
                 without spaces, at most {MAX_REDIRECT_URI} characters"
            ));
        }
        let auth_type = self.auth_type.unwrap_or(DEFAULT_AUTH_TYPE);
        if !(1..=3).contains(&auth_type) {
            return Err("auth_type is 1 (official accounts), 2 (mini programs) or 3 (both)".into());
        }
        if let Some(a) = &self.biz_appid {
            if !is_appid(a) {
                return Err(format!(
                    "biz_appid is not an appid (letters, digits and `_`, at most {MAX_APPID_LEN})"
                ));
            }
        }
        Ok(LinkRequest {
            redirect_uri: self.redirect_uri,
            auth_type,
            biz_appid: self.biz_appid,
        })
    }
}

/// The longest appid accepted, as from WeChat's answers; real ones are 18 characters.
const MAX_APPID_LEN: usize = 64;

fn is_appid(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= MAX_APPID_LEN
        && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `http(s)://host[...]`: a scheme WeChat redirects to, a non-empty host, no whitespace or
/// control characters (they would break the link the URI is embedded in).
fn is_absolute_http_url(uri: &str) -> bool {
    if uri.len() > MAX_REDIRECT_URI || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &uri[8..]
    } else if lower.starts_with("http://") {
        &uri[7..]
    } else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // No user info (`user@host`): a link that hides its real host is refused.
    let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            authority
        }
    });
    !host.is_empty()
        && !authority.contains('@')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a redirect URI with
/// its own query survives as one parameter.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The common query of both links.
fn query(component_appid: &str, pre_auth_code: &str, req: &LinkRequest) -> String {
    let mut q = format!(
        "component_appid={}&pre_auth_code={}&redirect_uri={}&auth_type={}",
        encode(component_appid),
        encode(pre_auth_code),
        encode(&req.redirect_uri),
        req.auth_type
    );
    if let Some(biz) = &req.biz_appid {
        q.push_str("&biz_appid=");
        q.push_str(&encode(biz));
    }
    q
}

/// The PC link: `componentloginpage?component_appid&pre_auth_code&redirect_uri&auth_type[&biz_appid]`.
pub fn pc_url(component_appid: &str, pre_auth_code: &str, req: &LinkRequest) -> String {
    format!("{PC_PAGE}?{}", query(component_appid, pre_auth_code, req))
}

/// The mobile link: `bindcomponent?action=bindcomponent&no_scan=1&...#wechat_redirect`.
pub fn mobile_url(component_appid: &str, pre_auth_code: &str, req: &LinkRequest) -> String {
    format!(
        "{MOBILE_PAGE}?action=bindcomponent&no_scan=1&{}#wechat_redirect",
        query(component_appid, pre_auth_code, req)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(uri: &str, auth_type: Option<u8>, biz: Option<&str>) -> PreauthBody {
        PreauthBody {
            redirect_uri: uri.into(),
            auth_type,
            biz_appid: biz.map(str::to_string),
        }
    }

    #[test]
    fn redirect_uris_must_be_absolute_http_urls_with_a_host() {
        for ok in [
            "https://example.com/cb",
            "http://example.com",
            "HTTPS://shop.example.com:8443/auth/done?x=1&y=2#top",
            "http://127.0.0.1:8080/cb",
        ] {
            assert!(body(ok, None, None).validate().is_ok(), "{ok}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_REDIRECT_URI));
        for bad in [
            "",
            "/relative/path",
            "example.com/cb",
            "ftp://example.com/cb",
            "javascript:alert(1)",
            "https://",
            "https:///path",
            "https://exa mple.com/",
            "https://example.com/\n",
            "https://user@evil.example/",
            "https://exa%6dple.com/",
            long.as_str(),
        ] {
            assert!(body(bad, None, None).validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn auth_type_is_one_to_three_and_defaults_to_both() {
        let ok = |t| body("https://example.com/", t, None).validate();
        assert_eq!(ok(None).unwrap().auth_type, 3);
        for t in 1..=3 {
            assert_eq!(ok(Some(t)).unwrap().auth_type, t);
        }
        for t in [0, 4, 255] {
            assert!(ok(Some(t)).is_err(), "{t}");
        }
        assert!(body("https://example.com/", None, Some("not-an-appid"))
            .validate()
            .is_err());
    }

    #[test]
    fn links_carry_every_parameter_with_the_redirect_uri_encoded() {
        let req = body(
            "https://example.com/cb?a=1&b=x y",
            Some(2),
            Some("wx5b3a1c9d7e8f6a42"),
        );
        // A space is refused; a URI with its own query and fragment is fine.
        assert!(req.validate().is_err());
        let req = body(
            "https://example.com/cb?a=1&b=2#f",
            Some(2),
            Some("wx5b3a1c9d7e8f6a42"),
        )
        .validate()
        .unwrap();
        let pc = pc_url("wx3c1f0a9d8e7b6a51", "preauthcode@@@abc", &req);
        assert_eq!(
            pc,
            "https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=wx3c1f0a9d8e7b6a51\
             &pre_auth_code=preauthcode%40%40%40abc\
             &redirect_uri=https%3A%2F%2Fexample.com%2Fcb%3Fa%3D1%26b%3D2%23f\
             &auth_type=2&biz_appid=wx5b3a1c9d7e8f6a42"
        );
        let mobile = mobile_url("wx3c1f0a9d8e7b6a51", "preauthcode@@@abc", &req);
        assert_eq!(
            mobile,
            "https://open.weixin.qq.com/wxaopen/safe/bindcomponent?action=bindcomponent&no_scan=1\
             &component_appid=wx3c1f0a9d8e7b6a51&pre_auth_code=preauthcode%40%40%40abc\
             &redirect_uri=https%3A%2F%2Fexample.com%2Fcb%3Fa%3D1%26b%3D2%23f\
             &auth_type=2&biz_appid=wx5b3a1c9d7e8f6a42#wechat_redirect"
        );
        let plain = body("https://example.com/", None, None).validate().unwrap();
        assert!(!pc_url("wx3c1f0a9d8e7b6a51", "c", &plain).contains("biz_appid"));
    }
}
