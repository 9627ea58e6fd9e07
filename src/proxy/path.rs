//! The path of a forwarded call as WeChat will read it, and what kind of call that makes it.
//!
//! WeChat's front end (like nginx with its defaults) reads `//` as `/`, drops `;params` and
//! decodes `%xx`, and a call's class (a token route never forwarded, an answer to mask, a login
//! that takes the AppSecret) must be decided on that reading, not on the bytes the caller sent:
//! `/cgi-bin//component/api_query_auth` is `api_query_auth` to WeChat. So the path is
//! canonicalised first (decoded, empty segments and `;` parameters dropped, `.`/`..` refused),
//! classified without regard to letter case, and the canonical form is what is forwarded:
//! what was checked is exactly what WeChat receives.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Token endpoints: forwarding one would rotate (or hand out) a shared token, or, for the code
/// exchange, spend a code wxtoken exchanges itself. WeCom's `gettoken` and the Open Platform's
/// token calls are among them.
const TOKEN_ROUTES: [&str; 9] = [
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/cgi-bin/gettoken",
    "/cgi-bin/component/api_component_token",
    "/cgi-bin/component/api_authorizer_token",
    "/cgi-bin/component/api_query_auth",
    "/cgi-bin/service/get_suite_token",
    "/cgi-bin/service/get_corp_token",
    "/cgi-bin/service/get_provider_token",
];

/// WeCom's exchange of an install's AuthCode for the corp's permanent code: wxtoken makes it
/// itself when WeCom pushes the code, and a permanent code never leaves wxtoken.
const PERMANENT_CODE_CALLS: [&str; 2] = [
    "/cgi-bin/service/get_permanent_code",
    "/cgi-bin/service/v2/get_permanent_code",
];

/// WeCom's service-provider calls (made with a suite or provider token): their answers are
/// checked for permanent codes.
const SERVICE_PREFIX: &str = "/cgi-bin/service/";

/// Component calls whose answers carry authorized accounts' refresh tokens by design.
const REFRESH_TOKEN_CALLS: [&str; 2] = [
    "/cgi-bin/component/api_get_authorizer_info",
    "/cgi-bin/component/api_get_authorizer_list",
];

/// Calls that take `appid` and `secret` instead of a token.
const SECRET_CALLS: [&str; 2] = ["/sns/jscode2session", "/sns/oauth2/access_token"];

/// Web OAuth calls made with the *user's* OAuth token, which only WeChat can check.
const USER_TOKEN_CALLS: [&str; 3] = ["/sns/userinfo", "/sns/auth", "/sns/oauth2/refresh_token"];

/// The JS-SDK ticket calls: WeChat's, and WeCom's corp and app tickets. Answered from the
/// ticket wxtoken manages or refused, never forwarded: each one forwarded would make a new
/// ticket and spend the account's or corp's ticket quota.
const TICKET_CALLS: [&str; 3] = [
    "/cgi-bin/ticket/getticket",
    "/cgi-bin/get_jsapi_ticket",
    "/cgi-bin/ticket/get",
];

/// The Open Platform's component calls: every answer under it is checked for refresh tokens.
const COMPONENT_PREFIX: &str = "/cgi-bin/component/";

/// APIs outside `/cgi-bin/component/` that take a platform's component token as
/// `access_token`: its Mini Program template library, and the quota queries.
const COMPONENT_TOKEN_APIS: [&str; 6] = [
    "/wxa/gettemplatedraftlist",
    "/wxa/addtotemplate",
    "/wxa/gettemplatelist",
    "/wxa/deletetemplate",
    "/cgi-bin/openapi/quota/get",
    "/cgi-bin/openapi/rid/get",
];

/// What a forwarded call is, by its canonical path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A token endpoint ([`TOKEN_ROUTES`]): never forwarded.
    TokenRoute,
    /// `get_permanent_code` (v1 and v2): never forwarded.
    PermanentCode,
    /// Another WeCom service-provider call: its answer is checked for permanent codes.
    Service,
    /// `api_get_authorizer_info` / `api_get_authorizer_list`: forwarded, the answer read whole
    /// and its refresh tokens replaced; an answer that is not JSON is not sent on.
    RefreshTokens,
    /// Another component call: its answer is checked for refresh tokens too.
    Component,
    /// A login that takes `appid` and `secret` (the client key stands in for the AppSecret).
    Secret,
    /// Made with a user's OAuth token: no wxtoken credential.
    UserToken,
    /// `getticket`: answered from the managed ticket.
    Ticket,
    /// Any other business call, made with a token wxtoken issued.
    Plain,
}

/// Why a path cannot be forwarded at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path has `.` or `..` segments")]
    DotSegment,
    #[error("the path does not decode to UTF-8")]
    NotUtf8,
}

/// A checked path: the form sent to WeChat, and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPath<'a> {
    /// `/`-joined non-empty segments without `;` parameters, each percent-encoded where it
    /// must be; borrowed from the request for the usual path that needs none of this.
    pub canonical: Cow<'a, str>,
    pub class: Class,
}

/// The bytes a path segment sent on keeps encoded: what would otherwise end the segment or the
/// path, or be read as an escape or a parameter.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// Reads `raw` (a request path, still percent-encoded) as WeChat will.
pub fn parse(raw: &str) -> Result<ApiPath<'_>, PathError> {
    let canonical = canonical(raw)?;
    let class = classify(&canonical);
    Ok(ApiPath { canonical, class })
}

impl ApiPath<'_> {
    /// Whether WeChat takes a platform's component token as this call's `access_token`: a
    /// component call, or one of [`COMPONENT_TOKEN_APIS`]. Anywhere else WeChat answers a
    /// valid component token with 40001, which must not cost the platform a new token.
    pub fn takes_component_token(&self) -> bool {
        matches!(self.class, Class::Component | Class::RefreshTokens)
            || COMPONENT_TOKEN_APIS
                .into_iter()
                .any(|p| self.canonical.eq_ignore_ascii_case(p))
    }
}

fn canonical(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let plain = !raw.contains(['%', ';'])
        && !raw.contains("//")
        && !raw.ends_with('/')
        && !raw.split('/').any(|s| s == "." || s == "..");
    if plain {
        // Nothing to decode, merge or drop: sent as it came, nothing copied.
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::NotUtf8)?;
    let mut out = String::with_capacity(decoded.len());
    for seg in decoded.split('/') {
        // `a;x=1` is `a` to a server that drops path parameters.
        let seg = seg.split(';').next().unwrap_or_default();
        match seg {
            "" => continue,
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
        out.push('/');
        out.extend(utf8_percent_encode(seg, SEGMENT));
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

fn classify(path: &str) -> Class {
    let is = |p: &str| path.eq_ignore_ascii_case(p);
    let under = |prefix: &str| {
        path.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    if TOKEN_ROUTES.into_iter().any(is) {
        Class::TokenRoute
    } else if PERMANENT_CODE_CALLS.into_iter().any(is) {
        Class::PermanentCode
    } else if under(SERVICE_PREFIX) {
        Class::Service
    } else if REFRESH_TOKEN_CALLS.into_iter().any(is) {
        Class::RefreshTokens
    } else if SECRET_CALLS.into_iter().any(is) {
        Class::Secret
    } else if USER_TOKEN_CALLS.into_iter().any(is) {
        Class::UserToken
    } else if TICKET_CALLS.into_iter().any(is) {
        Class::Ticket
    } else if under(COMPONENT_PREFIX) {
        Class::Component
    } else {
        Class::Plain
    }
}

/// Whether `path` (as requested, before any merging) is one of WeChat's token routes in any
/// spelling: the facade answers those it offers, and nothing forwards them.
pub fn is_token_route(raw: &str) -> bool {
    parse(raw).is_ok_and(|p| p.class == Class::TokenRoute)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(raw: &str) -> Class {
        parse(raw).expect(raw).class
    }

    #[test]
    fn the_usual_path_is_borrowed_as_it_came() {
        let p = parse("/cgi-bin/user/info").unwrap();
        assert!(matches!(p.canonical, Cow::Borrowed("/cgi-bin/user/info")));
        assert_eq!(p.class, Class::Plain);
    }

    #[test]
    fn paths_are_read_as_wechat_reads_them() {
        for (raw, seen) in [
            ("/cgi-bin/%74oken", "/cgi-bin/token"),
            ("/cgi-bin/token/", "/cgi-bin/token"),
            ("//cgi-bin//token//", "/cgi-bin/token"),
            ("/cgi-bin/token;x", "/cgi-bin/token"),
            ("/cgi-bin;a=1/token;b", "/cgi-bin/token"),
            (
                "/cgi-bin/%2Fcomponent/api_query_auth",
                "/cgi-bin/component/api_query_auth",
            ),
            ("/cgi-bin/media/a%20b", "/cgi-bin/media/a%20b"),
            ("/cgi-bin/media/a%3Fb", "/cgi-bin/media/a%3Fb"),
            ("/cgi-bin/media/%25", "/cgi-bin/media/%25"),
        ] {
            assert_eq!(parse(raw).unwrap().canonical, seen, "{raw}");
        }
    }

    #[test]
    fn dot_segments_and_broken_encodings_are_refused() {
        for sneaky in [
            "/wxa/../cgi-bin/token",
            "/wxa/%2e%2e/cgi-bin/token",
            "/cgi-bin/./token",
            "/cgi-bin/..;x/token",
        ] {
            assert_eq!(parse(sneaky), Err(PathError::DotSegment), "{sneaky}");
        }
        assert_eq!(parse("/cgi-bin/%ff"), Err(PathError::NotUtf8));
    }

    #[test]
    fn every_spelling_of_a_token_route_is_one() {
        for raw in [
            "/cgi-bin/token",
            "/cgi-bin//token",
            "//cgi-bin/token",
            "/cgi-bin/TOKEN",
            "/CGI-BIN/Token",
            "/cgi-bin/token;x",
            "/cgi-bin/token/",
            "//cgi-bin/stable_token",
            "/cgi-bin//stable_token",
            "/cgi-bin//gettoken",
            "/cgi-bin/component//api_component_token",
            "/cgi-bin/component//api_authorizer_token",
            "/cgi-bin/component//api_query_auth",
            "/cgi-bin//component/api_query_auth;x",
            "/cgi-bin/Component/API_QUERY_AUTH",
        ] {
            assert_eq!(class(raw), Class::TokenRoute, "{raw}");
            assert!(is_token_route(raw), "{raw}");
        }
    }

    #[test]
    fn masked_secret_user_and_ticket_calls_are_known_in_any_spelling() {
        assert_eq!(
            class("/cgi-bin//component/api_get_authorizer_list"),
            Class::RefreshTokens
        );
        assert_eq!(
            class("/cgi-bin/component/API_GET_AUTHORIZER_INFO;x"),
            Class::RefreshTokens
        );
        assert_eq!(
            class("/cgi-bin/component/api_create_preauthcode"),
            Class::Component
        );
        assert_eq!(class("/CGI-BIN/COMPONENT/x"), Class::Component);
        assert_eq!(class("/sns/jscode2session/"), Class::Secret);
        assert_eq!(class("/sns//oauth2/access_token"), Class::Secret);
        assert_eq!(class("/sns/userinfo"), Class::UserToken);
        assert_eq!(class("/sns/oauth2/refresh_token"), Class::UserToken);
        assert_eq!(class("/cgi-bin/ticket//getticket"), Class::Ticket);
        assert_eq!(class("/cgi-bin/GET_JSAPI_TICKET"), Class::Ticket);
        assert_eq!(class("/cgi-bin//ticket/get/"), Class::Ticket);
        assert_eq!(class("/cgi-bin/user/info"), Class::Plain);
    }

    #[test]
    fn component_tokens_go_as_access_token_only_where_wechat_takes_them() {
        let takes = |raw: &str| parse(raw).unwrap().takes_component_token();
        assert!(takes("/cgi-bin/component/api_create_preauthcode"));
        assert!(takes("/cgi-bin/component/api_get_authorizer_list"));
        assert!(takes("/wxa//gettemplatelist"));
        assert!(takes("/cgi-bin/openapi/quota/get"));
        assert!(!takes("/cgi-bin/user/info"));
        assert!(!takes("/cgi-bin/get_api_domain_ip"));
    }

    #[test]
    fn wecom_service_calls_and_the_permanent_code_exchange_are_classed() {
        assert_eq!(
            class("/cgi-bin/service/get_permanent_code"),
            Class::PermanentCode
        );
        assert_eq!(
            class("/cgi-bin//service/V2/Get_Permanent_Code"),
            Class::PermanentCode
        );
        assert_eq!(class("/cgi-bin/service/get_corp_token"), Class::TokenRoute);
        assert_eq!(class("/cgi-bin/service/get_admin_list"), Class::Service);
        assert_eq!(class("/cgi-bin/department/list"), Class::Plain);
    }
}
