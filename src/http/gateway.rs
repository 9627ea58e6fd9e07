//! The gateway's two fronts.
//!
//! - Pass-through (facade mode): an SDK pointed at wxtoken by base URL sends every call here.
//!   A call under a WeChat API prefix carries a token wxtoken issued (which names the app, the
//!   authorized account or, for component calls, the platform) and is forwarded with that
//!   credential's current token; the two logins that take the AppSecret carry the client's
//!   wxtoken key as `secret`, replaced by the real one. Everything else gets WeChat's own
//!   answer format without reaching WeChat.
//! - Proxy: `ANY /v1/apps/{name}/proxy/{path}` (and an authorizer's, and a platform's for its
//!   component calls) for business servers that never hold a token: Bearer auth, a client with
//!   `proxy = true`, and wxtoken adds the token.

use std::borrow::Cow;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret as _;
use serde_json::json;

use super::body::{answer_unread, read_body_within, BodyError};
use super::{authorize, ApiError, ServerState};
use crate::config::AppKind;
use crate::proxy::{query, Call, GatewayError, Target};
use crate::token::index::TokenOwner;

/// Token endpoints: forwarding one would rotate (or hand out) the shared token, or, for the
/// code exchange, spend a code wxtoken exchanges itself. The facade answers its own; the others
/// are refused.
const NEVER_FORWARDED: [&str; 6] = [
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/cgi-bin/gettoken",
    "/cgi-bin/component/api_component_token",
    "/cgi-bin/component/api_authorizer_token",
    "/cgi-bin/component/api_query_auth",
];

/// Component calls whose answers carry authorized accounts' refresh tokens, which never leave
/// wxtoken (a client holding one could rotate an account's token behind wxtoken's back). Both
/// are forwarded, and the answer sent on with each refresh token replaced by the facade's
/// placeholder.
const MASKED_CALLS: [&str; 2] = [
    "/cgi-bin/component/api_get_authorizer_info",
    "/cgi-bin/component/api_get_authorizer_list",
];

/// The query parameters a pass-through call may carry its token in: an access token, or the
/// Open Platform's component token, which its component calls (and its accounts' web OAuth)
/// send as `component_access_token`.
const TOKEN_PARAMS: [&str; 2] = ["access_token", "component_access_token"];

/// Calls that take `appid` and `secret` instead of a token: the client sends its wxtoken key
/// as `secret`, and only wxtoken holds the AppSecret.
const SECRET_CALLS: [&str; 2] = ["/sns/jscode2session", "/sns/oauth2/access_token"];

/// Web OAuth calls made with the *user's* OAuth token (or refresh token), which only WeChat can
/// check and which wxtoken never issued: forwarded as they are, with nothing added.
const USER_TOKEN_CALLS: [&str; 3] = ["/sns/userinfo", "/sns/auth", "/sns/oauth2/refresh_token"];

/// The route template of the pass-through, for every WeChat API prefix at once.
pub const PASSTHROUGH_ROUTE: &str = "/{prefix}/{path:.*}";

/// Whether `path` is one the gateway's handlers read the body of: a pass-through call or a
/// proxy route.
pub fn is_gateway_path(settings: &crate::config::ProxySettings, path: &str) -> bool {
    settings.is_api_path(path) || (path.starts_with("/v1/") && path.contains("/proxy/"))
}

/// A forwarded path as WeChat will read it: percent-decoded, with any trailing `/` dropped.
/// `None` when it holds a `.` or `..` segment (which a server in between could resolve to a
/// path the checks never saw) or does not decode to UTF-8.
fn canonical(raw: &str) -> Option<Cow<'_, str>> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    if decoded.split('/').any(|seg| seg == "." || seg == "..") {
        return None;
    }
    // Borrowed, with nothing copied, for the usual path: nothing encoded, no trailing `/`.
    Some(match decoded {
        Cow::Borrowed(path) => Cow::Borrowed(path.trim_end_matches('/')),
        Cow::Owned(path) => Cow::Owned(path.trim_end_matches('/').to_string()),
    })
}

/// WeChat's error answer: HTTP 200 (or `status`) and `{"errcode","errmsg"}`.
fn wx_error(status: StatusCode, errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "errcode": errcode, "errmsg": errmsg }))
}

fn wx_refusal(errcode: i64, errmsg: &str) -> HttpResponse {
    wx_error(StatusCode::OK, errcode, errmsg)
}

/// A gateway failure in WeChat's format. A call WeChat never answered is a 502 or 504, so an
/// SDK does not take the body for WeChat's own answer to a call that may have happened.
fn wx_gateway_error(e: &GatewayError) -> HttpResponse {
    match e {
        GatewayError::Busy(_) => wx_error(StatusCode::SERVICE_UNAVAILABLE, -1, &e.to_string()),
        GatewayError::NoValidToken(_) => {
            wx_error(StatusCode::OK, -1, &format!("system error: {e}"))
        }
        GatewayError::Upstream(crate::upstream::UpstreamError::Timeout(_)) => {
            wx_error(StatusCode::GATEWAY_TIMEOUT, -1, &e.to_string())
        }
        GatewayError::Upstream(_) => wx_error(StatusCode::BAD_GATEWAY, -1, &e.to_string()),
    }
}

fn api_gateway_error(label: &str, e: GatewayError) -> ApiError {
    match e {
        GatewayError::Busy(_) => ApiError::Unavailable(e.to_string()),
        GatewayError::NoValidToken(why) => ApiError::NoValidToken {
            app: label.to_string(),
            why,
            errcode: None,
        },
        GatewayError::Upstream(crate::upstream::UpstreamError::Timeout(_)) => {
            ApiError::GatewayTimeout(e.to_string())
        }
        GatewayError::Upstream(_) => ApiError::BadGateway(e.to_string()),
    }
}

/// Reads the body of a forwarded call, up to `[proxy] max_body_bytes` within the call timeout.
async fn read_call_body(
    state: &ServerState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<web::Bytes, BodyError> {
    let settings = &state.gateway.settings;
    read_body_within(req, payload, settings.max_body_bytes, settings.timeout).await
}

/// The call to forward; `masked` from the path as checked (see [`MASKED_CALLS`]).
fn call_of(req: &HttpRequest, path: String, query: String, body: web::Bytes, masked: bool) -> Call {
    Call {
        method: req.method().clone(),
        path,
        query,
        headers: crate::proxy::headers::to_upstream(req.headers()),
        body,
        masked,
    }
}

/// The credential a token in the index belongs to, if it is still running.
fn target_of(state: &ServerState, owner: &TokenOwner) -> Option<Target> {
    match owner {
        TokenOwner::App(name) => {
            let app = state.apps.load().get(name).cloned()?;
            Some(app_target(&app))
        }
        TokenOwner::Authorizer { platform, appid } => {
            let p = state.platforms.get(platform)?;
            let handle = p.authorizer_actor(appid).ok()?;
            Some(Target {
                label: crate::platform::runtime::authorizer_label(platform),
                wecom: false,
                param: "access_token",
                addr: handle.addr,
                status: handle.status,
            })
        }
    }
}

fn app_target(app: &crate::apps::AppHandle) -> Target {
    Target {
        label: app.name.clone(),
        wecom: app.settings.kind == AppKind::Wecom,
        param: "access_token",
        addr: app.addr.clone(),
        status: app.status.clone(),
    }
}

/// `ANY /{prefix}/{path}` under a WeChat API prefix: the SDK pass-through.
pub async fn passthrough(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let Routed {
        target,
        label,
        query,
        masked,
    } = match route_passthrough(&state, &req) {
        Ok(routed) => routed,
        Err(refusal) => {
            state.gateway.refused("");
            let resp = match refusal {
                Refusal::NotFound => actix_web::ResponseError::error_response(&ApiError::NotFound),
                Refusal::Wechat(errcode, errmsg) => wx_refusal(errcode, errmsg),
            };
            return answer_unread(resp, payload);
        }
    };
    let slot = match state.gateway.slot().await {
        Ok(slot) => slot,
        Err(e) => {
            state.gateway.refused(&label);
            return answer_unread(wx_gateway_error(&e), payload);
        }
    };
    let body = match read_call_body(&state, &req, payload).await {
        Ok(b) => b,
        Err(e) => {
            state.gateway.refused(&label);
            return e.into_response(|e| wx_error(e.status(), -1, &e.to_string()));
        }
    };
    let call = call_of(&req, req.path().to_string(), query, body, masked);
    match state
        .gateway
        .forward(slot, call, target.as_ref(), &label)
        .await
    {
        Ok(resp) => resp,
        Err(e) => wx_gateway_error(&e),
    }
}

/// Why a pass-through call is not forwarded.
enum Refusal {
    /// Not a call the gateway forwards at all (a token route).
    NotFound,
    /// WeChat's answer to it, made by wxtoken: errcode and errmsg.
    Wechat(i64, &'static str),
}

/// Where a pass-through call goes.
struct Routed {
    /// Its credential; none for calls that carry their own.
    target: Option<Target>,
    /// Its metrics label.
    label: String,
    /// The query to send.
    query: String,
    /// Whether its answer is sent on with the refresh tokens replaced.
    masked: bool,
}

/// Where a pass-through call goes, or why not.
fn route_passthrough(state: &ServerState, req: &HttpRequest) -> Result<Routed, Refusal> {
    let Some(seen) = canonical(req.path()).filter(|p| !NEVER_FORWARDED.contains(&p.as_ref()))
    else {
        // A token route in another spelling (the facade's own routes never get here), or
        // WeCom's gettoken, which the facade does not offer.
        return Err(Refusal::NotFound);
    };
    let raw_query = req.query_string().to_string();
    if SECRET_CALLS.contains(&seen.as_ref()) {
        let (app, query) = with_real_secret(state, &raw_query)
            .map_err(|(errcode, errmsg)| Refusal::Wechat(errcode, errmsg))?;
        return Ok(Routed {
            target: None,
            label: app,
            query,
            masked: false,
        });
    }
    if USER_TOKEN_CALLS.contains(&seen.as_ref()) {
        return Ok(Routed {
            target: None,
            label: String::new(),
            query: raw_query,
            masked: false,
        });
    }
    let Some((param, token)) = TOKEN_PARAMS.into_iter().find_map(|name| {
        query::param(&raw_query, name)
            .filter(|t| !t.is_empty())
            .map(|t| (name, t))
    }) else {
        return Err(Refusal::Wechat(41001, "access_token missing"));
    };
    let mut target = match state
        .tokens
        .lookup(&token)
        .and_then(|i| target_of(state, &i.owner))
    {
        Some(target) => target,
        None => component_target(state, &token)?,
    };
    // The token goes back where the caller put it.
    target.param = param;
    Ok(Routed {
        label: target.label.clone(),
        target: Some(target),
        query: raw_query,
        masked: MASKED_CALLS.contains(&seen.as_ref()),
    })
}

/// The platform whose component token `presented` is (its current one, or the one before it
/// while that is valid); WeChat's 42001 for the one before past its expiry, else 40001.
fn component_target(state: &ServerState, presented: &str) -> Result<Target, Refusal> {
    use crate::platform::runtime::ComponentTokenCheck;
    let now = std::time::SystemTime::now();
    let mut expired = false;
    for platform in state.platforms.values() {
        match platform.check_component_token(presented, now) {
            ComponentTokenCheck::Known => return Ok(component_target_of(platform)),
            ComponentTokenCheck::Expired => expired = true,
            ComponentTokenCheck::Unknown => {}
        }
    }
    Err(if expired {
        Refusal::Wechat(42001, "access_token expired")
    } else {
        Refusal::Wechat(
            40001,
            "invalid credential, access_token is invalid or not latest (not a token wxtoken issued)",
        )
    })
}

/// A platform's component token as the credential of a forwarded call.
fn component_target_of(platform: &crate::platform::runtime::PlatformShared) -> Target {
    Target {
        label: platform.settings.metrics_label(),
        wecom: false,
        param: "component_access_token",
        addr: platform.component_actor().clone(),
        status: platform.component_status().clone(),
    }
}

/// The query of a login call with the client key in `secret` replaced by the app's AppSecret,
/// and the app's name; or WeChat's refusal (40125 unknown key, 40013 unknown appid, 40164 not
/// this client's app).
fn with_real_secret(
    state: &ServerState,
    raw_query: &str,
) -> Result<(String, String), (i64, &'static str)> {
    let Some(appid) = query::param(raw_query, "appid").filter(|a| !a.is_empty()) else {
        return Err((41002, "appid missing"));
    };
    let Some(key) = query::param(raw_query, "secret").filter(|s| !s.is_empty()) else {
        return Err((41004, "appsecret missing"));
    };
    let Some(client) = state.clients.load().by_key(&key) else {
        return Err((40125, "invalid appsecret (use a wxtoken client key)"));
    };
    let apps = state.apps.load();
    let Some(app) = apps.by_appid(&appid) else {
        return Err((40013, "invalid appid"));
    };
    if !client.may_use_app(&app.name) {
        return Err((40164, "this client may not use this app"));
    }
    let query = query::with_param(raw_query, "secret", app.settings.secret.expose_secret());
    Ok((app.name.clone(), query))
}

/// The WeChat path of a proxy route: what follows `/proxy` in the raw request path (still
/// percent-encoded as the client sent it).
fn proxied_path(req: &HttpRequest) -> Option<String> {
    let raw = req.path();
    let at = raw.find("/proxy/")?;
    Some(raw[at + "/proxy".len()..].to_string())
}

/// A proxy call's WeChat path, as checked.
struct ProxyPath {
    /// Still percent-encoded as the client sent it.
    path: String,
    /// Whether the call's answer is masked (see [`MASKED_CALLS`]).
    masked: bool,
}

/// Checks a proxy call's path: a WeChat API path (404 otherwise) that is no token endpoint.
fn checked_path(state: &ServerState, req: &HttpRequest) -> Result<ProxyPath, ApiError> {
    let path = proxied_path(req).ok_or(ApiError::NotFound)?;
    let seen = canonical(&path).ok_or_else(|| {
        ApiError::BadRequest("the path has `.` or `..` segments, or is not UTF-8".into())
    })?;
    if NEVER_FORWARDED.contains(&seen.as_ref()) {
        return Err(ApiError::BadRequest(format!(
            "`{path}` would rotate the shared token and is never forwarded; read the token from wxtoken instead"
        )));
    }
    if !state.gateway.settings.is_api_path(&seen) {
        return Err(ApiError::BadRequest(format!(
            "`{}` is not under a WeChat API prefix (see [proxy] extra_prefixes)",
            path.chars().take(128).collect::<String>()
        )));
    }
    let masked = MASKED_CALLS.contains(&seen.as_ref());
    Ok(ProxyPath { path, masked })
}

fn require_proxy_flag(client: &crate::config::ClientSettings) -> Result<(), ApiError> {
    if client.proxy {
        Ok(())
    } else {
        Err(ApiError::ProxyNotAllowed(client.name.clone()))
    }
}

/// `ANY /v1/apps/{name}/proxy/{path}`
pub async fn app_proxy(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let name = req.match_info().get("name").unwrap_or_default();
    let checked = authorize(&state, &req, name).and_then(|(client, app)| {
        require_proxy_flag(&client)?;
        Ok((app_target(&app), checked_path(&state, &req)?))
    });
    match checked {
        Ok((target, path)) => proxy_call(&state, &req, payload, target, path).await,
        Err(e) => refuse_proxy(&state, e, payload),
    }
}

/// `ANY /v1/platforms/{name}/authorizers/{appid}/proxy/{path}`
pub async fn authorizer_proxy(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let checked = async {
        let (client, platform, handle) =
            super::platforms::authorizer_for_proxy(&state, &req).await?;
        require_proxy_flag(&client)?;
        let target = Target {
            label: crate::platform::runtime::authorizer_label(platform.name()),
            wecom: false,
            param: "access_token",
            addr: handle.addr,
            status: handle.status,
        };
        Ok::<_, ApiError>((target, checked_path(&state, &req)?))
    };
    match checked.await {
        Ok((target, path)) => proxy_call(&state, &req, payload, target, path).await,
        Err(e) => refuse_proxy(&state, e, payload),
    }
}

/// `ANY /v1/platforms/{name}/proxy/{path}`: a component call (`/cgi-bin/component/...`, web
/// OAuth on behalf of an account) with the platform's component token added.
pub async fn platform_proxy(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let checked =
        super::platforms::authorize_platform(&state, &req).and_then(|(client, platform)| {
            require_proxy_flag(&client)?;
            Ok((component_target_of(&platform), checked_path(&state, &req)?))
        });
    match checked {
        Ok((target, path)) => proxy_call(&state, &req, payload, target, path).await,
        Err(e) => refuse_proxy(&state, e, payload),
    }
}

/// A proxy call refused before its body was read.
fn refuse_proxy(state: &ServerState, e: ApiError, payload: web::Payload) -> HttpResponse {
    state.gateway.refused("");
    answer_unread(actix_web::ResponseError::error_response(&e), payload)
}

async fn proxy_call(
    state: &ServerState,
    req: &HttpRequest,
    payload: web::Payload,
    target: Target,
    ProxyPath { path, masked }: ProxyPath,
) -> HttpResponse {
    let slot = match state.gateway.slot().await {
        Ok(slot) => slot,
        Err(e) => {
            state.gateway.refused(&target.label);
            let e = api_gateway_error(&target.label, e);
            return answer_unread(actix_web::ResponseError::error_response(&e), payload);
        }
    };
    let body = match read_call_body(state, req, payload).await {
        Ok(b) => b,
        Err(e) => {
            state.gateway.refused(&target.label);
            return e.into_response(|e| actix_web::ResponseError::error_response(e.as_api_error()));
        }
    };
    let call = call_of(req, path, req.query_string().to_string(), body, masked);
    match state
        .gateway
        .forward(slot, call, Some(&target), &target.label)
        .await
    {
        Ok(resp) => resp,
        Err(e) => actix_web::ResponseError::error_response(&api_gateway_error(&target.label, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_as_wechat_reads_them() {
        assert_eq!(
            canonical("/cgi-bin/%74oken").as_deref(),
            Some("/cgi-bin/token")
        );
        assert_eq!(
            canonical("/cgi-bin/token/").as_deref(),
            Some("/cgi-bin/token")
        );
        assert_eq!(
            canonical("/cgi-bin/user/info").as_deref(),
            Some("/cgi-bin/user/info")
        );
        for sneaky in [
            "/wxa/../cgi-bin/token",
            "/wxa/%2e%2e/cgi-bin/token",
            "/cgi-bin/./token",
            "/cgi-bin/%ff",
        ] {
            assert_eq!(canonical(sneaky), None, "{sneaky}");
        }
    }
}
