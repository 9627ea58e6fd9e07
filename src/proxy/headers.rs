//! Which headers cross the gateway, each way. Everything does but what belongs to one
//! connection (RFC 9110 §7.6.1: the fixed hop-by-hop headers, and every header the message's
//! own `Connection` header names), what the gateway itself rewrites, and the caller's wxtoken
//! credentials. A repeated header crosses with every one of its values, in order.

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

/// The headers a message's `Connection` headers name as belonging to its connection (RFC 9110
/// §7.6.1): comma-separated, in any case, over any number of `Connection` headers. Options that
/// are not header names (`close`) name nothing that could be forwarded and are ignored.
fn named_by_connection(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .filter_map(|option| HeaderName::from_bytes(option.trim_ascii()).ok())
        .collect()
}

/// Whether `name` stays on this hop: a fixed hop-by-hop header or one `Connection` named.
fn of_this_hop(name: &HeaderName, named: &[HeaderName]) -> bool {
    hop_by_hop(name) || named.contains(name)
}

/// The caller's headers that go to WeChat. Left out besides those of one connection: `Host`
/// and `Content-Length` (set for the upstream request), `Authorization` (the wxtoken client
/// key of a proxy call), `Cookie` (WeChat's API takes none), `Expect` (the gateway has read the
/// body already) and `Accept-Encoding`: a compressed answer could not be checked for a rejected
/// token.
pub fn to_upstream(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let named = named_by_connection(headers);
    headers
        .iter()
        .filter(|(name, _)| {
            !of_this_hop(name, &named)
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

/// WeChat's answer headers that go back to the caller: all but those of one connection and
/// `Content-Length`, which actix-web sets from the body it sends (the same length).
pub fn to_caller(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    let named = named_by_connection(headers);
    headers
        .iter()
        .filter(move |(name, _)| !of_this_hop(name, &named) && *name != header::CONTENT_LENGTH)
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

    #[test]
    fn headers_named_in_connection_stay_behind_both_ways() {
        let m = map(&[
            ("connection", "keep-alive, X-Hop-One,x-hop-two"),
            ("connection", " X-HOP-THREE , close,"),
            ("x-hop-one", "1"),
            ("x-hop-two", "2"),
            ("x-hop-three", "3"),
            ("content-type", "application/json"),
            ("x-kept", "yes"),
        ]);
        let sent = to_upstream(&m);
        let mut names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-kept"]);
        let mut back: Vec<&str> = to_caller(&m).map(|(n, _)| n.as_str()).collect();
        back.sort_unstable();
        assert_eq!(back, ["content-type", "x-kept"]);
    }

    #[test]
    fn a_connection_option_that_is_no_header_name_names_nothing() {
        let m = map(&[("connection", "\"quoted\", a b, , ,"), ("x-kept", "yes")]);
        let sent = to_upstream(&m);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.as_str(), "x-kept");
    }

    #[test]
    fn every_value_of_a_repeated_header_crosses_in_order() {
        let m = map(&[
            ("x-trace", "first"),
            ("accept", "application/json"),
            ("x-trace", "second"),
            ("x-trace", "third"),
        ]);
        fn values<'a>(
            pairs: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
        ) -> Vec<&'a str> {
            pairs
                .filter(|(n, _)| n.as_str() == "x-trace")
                .map(|(_, v)| v.to_str().unwrap_or_default())
                .collect()
        }
        let sent = to_upstream(&m);
        assert_eq!(
            values(sent.iter().map(|(n, v)| (n, v))),
            ["first", "second", "third"]
        );
        assert_eq!(values(to_caller(&m)), ["first", "second", "third"]);
    }
}
