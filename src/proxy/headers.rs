//! Which headers cross the gateway, each way. Everything does but what belongs to one
//! connection (RFC 9110 §7.6.1), what the gateway itself rewrites, and the caller's wxtoken
//! credentials.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers of one hop, never forwarded either way.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The caller's headers that go to WeChat. Left out besides the hop-by-hop ones: `Host` and
/// `Content-Length` (set for the upstream request), `Authorization` (the wxtoken client key of
/// a proxy call), `Cookie` (WeChat's API takes none), `Expect` (the gateway has read the body
/// already) and `Accept-Encoding`: a compressed answer could not be checked for a rejected token.
pub fn to_upstream(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| {
            !hop_by_hop(name)
                && *name != header::HOST
                && *name != header::CONTENT_LENGTH
                && *name != header::AUTHORIZATION
                && *name != header::COOKIE
                && *name != header::EXPECT
                && *name != header::ACCEPT_ENCODING
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// WeChat's answer headers that go back to the caller: all but the hop-by-hop ones and
/// `Content-Length`, which actix-web sets from the body it sends (the same length).
pub fn to_caller(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| !hop_by_hop(name) && *name != header::CONTENT_LENGTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn the_callers_credentials_and_connection_headers_stay_behind() {
        let sent = to_upstream(&map(&[
            ("authorization", "Bearer client-key"),
            ("connection", "keep-alive"),
            ("host", "wxtoken.internal"),
            ("content-length", "12"),
            ("accept-encoding", "gzip"),
            ("content-type", "multipart/form-data; boundary=x"),
            ("user-agent", "wechatpy"),
        ]));
        let mut names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "user-agent"]);
    }

    #[test]
    fn answer_headers_keep_what_a_download_needs() {
        let m = map(&[
            ("content-type", "image/jpeg"),
            ("content-disposition", "attachment; filename=\"m.jpg\""),
            ("content-length", "10"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
        ]);
        let mut names: Vec<&str> = to_caller(&m).map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-disposition", "content-type"]);
    }
}
