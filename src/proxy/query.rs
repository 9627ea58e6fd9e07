//! Query strings of forwarded calls: reading a parameter, and replacing one (the token, or a
//! client key by the real AppSecret) while every other parameter keeps its exact bytes and order.

use std::borrow::Cow;

/// The decoded value of the first `name` parameter of `query`.
pub fn param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `query` with every `name` parameter removed and one `name=value` in the place of the first
/// (at the end when there was none). `value` is percent-encoded; the other parameters are left
/// byte for byte as the client sent them, so their signatures and encodings stay valid.
pub fn with_param(query: &str, name: &str, value: &str) -> String {
    let mut out = String::with_capacity(query.len() + name.len() + value.len() + 2);
    let mut placed = false;
    let put = |out: &mut String, part: Option<&str>| {
        if !out.is_empty() {
            out.push('&');
        }
        match part {
            Some(part) => out.push_str(part),
            None => {
                out.push_str(name);
                out.push('=');
                out.extend(form_urlencoded::byte_serialize(value.as_bytes()));
            }
        }
    };
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let key = part.split_once('=').map_or(part, |(k, _)| k);
        if !is_key(key, name) {
            put(&mut out, Some(part));
        } else if !placed {
            placed = true;
            put(&mut out, None);
        }
    }
    if !placed {
        put(&mut out, None);
    }
    out
}

/// Whether the raw (still encoded) `key` of a query parameter decodes to `name`.
fn is_key(key: &str, name: &str) -> bool {
    // Nearly every key is sent unencoded: compared as it is, without decoding.
    if !key.contains(['%', '+']) {
        return key == name;
    }
    form_urlencoded::parse(key.as_bytes())
        .next()
        .is_some_and(|(k, _)| k == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_is_read_decoded() {
        assert_eq!(
            param("a=1&access_token=t%2B1&b=2", "access_token").as_deref(),
            Some("t+1")
        );
        assert_eq!(param("a=1", "access_token"), None);
        assert_eq!(param("", "access_token"), None);
        assert_eq!(param("access_token", "access_token").as_deref(), Some(""));
    }

    #[test]
    fn the_token_is_replaced_in_place_and_the_rest_kept_byte_for_byte() {
        assert_eq!(
            with_param(
                "openid=o%2Dx&access_token=old&lang=zh_CN",
                "access_token",
                "new"
            ),
            "openid=o%2Dx&access_token=new&lang=zh_CN"
        );
    }

    #[test]
    fn a_missing_parameter_is_appended_and_duplicates_dropped() {
        assert_eq!(with_param("", "access_token", "t"), "access_token=t");
        assert_eq!(with_param("a=1", "access_token", "t"), "a=1&access_token=t");
        assert_eq!(
            with_param("access_token=x&a=1&access_token=y", "access_token", "t"),
            "access_token=t&a=1"
        );
        // An encoded key is still the same parameter: it must not reach WeChat beside ours.
        assert_eq!(
            with_param("access%5Ftoken=x&a=1", "access_token", "t"),
            "access_token=t&a=1"
        );
    }

    #[test]
    fn the_value_is_encoded() {
        assert_eq!(with_param("a=1", "secret", "s&t=u"), "a=1&secret=s%26t%3Du");
    }
}
