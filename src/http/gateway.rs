//! The gateway's pass-through front (facade mode), and what both fronts share.
//!
//! An SDK pointed at wxtoken by base URL sends every call here. A call under a WeChat API
//! prefix carries a token wxtoken issued (which names the app, the authorized account or, for
//! component calls, the platform) and is forwarded with that credential's current token; the
//! two logins that take the AppSecret carry the client's wxtoken key as `secret`, replaced by
//! the real one; web OAuth made with a user's token carries no wxtoken credential and runs in a
//! small pool of its own. Everything wxtoken answers itself is in WeChat's format.
//!
//! The proxy front (`/v1/.../proxy/{path}`, Bearer auth) is in `proxy_routes.rs`.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret as _;
use serde_json::json;

use super::body::{answer_unread, read_body_within, BodyError};
pub(crate) use super::wechat::wx_error;
use super::{ApiError, ServerState};
use crate::config::{AppKind, TicketKind, ANONYMOUS_MAX_BODY};
use crate::proxy::path::{self, ApiPath, Class};
use crate::proxy::{query, AnswerRule, Call, GatewayError, Slot, Target};
use crate::token::index::TokenOwner;

/// The query parameters a pass-through call may carry its token in: an access token, or the
/// Open Platform's component token, which its component calls (and its accounts' web OAuth)
/// send as `component_access_token`.
const ACCESS_TOKEN: &str = "access_token";
const COMPONENT_TOKEN: &str = "component_access_token";

/// The route template of the pass-through, for every WeChat API prefix at once.
pub const PASSTHROUGH_ROUTE: &str = "/{prefix}/{path:.*}";

/// Whether `path` is one the gateway's handlers read the body of: a pass-through call or a
/// proxy route.
pub fn is_gateway_path(settings: &crate::config::ProxySettings, path: &str) -> bool {
    settings.is_api_path(path) || (path.starts_with("/v1/") && path.contains("/proxy/"))
}

/// A gateway failure in WeChat's format. A call WeChat never answered is a 502 or 504, so an
/// SDK does not take the body for WeChat's own answer to a call that may have happened.
fn wx_gateway_error(e: &GatewayError) -> HttpResponse {
    match e {
        GatewayError::Busy(_) | GatewayError::AnonymousBusy => {
            wx_error(StatusCode::SERVICE_UNAVAILABLE, -1, &e.to_string())
        }
        GatewayError::NoValidToken(_) => {
            wx_error(StatusCode::OK, -1, &format!("system error: {e}"))
        }
        GatewayError::Upstream(crate::upstream::UpstreamError::Timeout(_)) => {
            wx_error(StatusCode::GATEWAY_TIMEOUT, -1, &e.to_string())
        }
        GatewayError::Upstream(_) => wx_error(StatusCode::BAD_GATEWAY, -1, &e.to_string()),
    }
}

/// Whether the request asks to switch protocols. Its "body" would be the rest of the
/// connection, which never ends: it is answered at once, unread, and the connection closed.
pub(crate) fn is_upgrade(req: &HttpRequest) -> bool {
    req.head().upgrade()
        || req.headers().contains_key(header::UPGRADE)
        || req.method() == actix_web::http::Method::CONNECT
}

/// Reads the body of a forwarded call, up to `[proxy] max_body_bytes` within the call timeout.
pub(crate) async fn read_call_body(
    state: &ServerState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<web::Bytes, BodyError> {
    let settings = &state.gateway.settings;
    read_body_within(req, payload, settings.max_body_bytes, settings.timeout).await
}

/// The call to forward, to `path` as checked (its canonical form).
pub(crate) fn call_of(
    req: &HttpRequest,
    path: String,
    query: String,
    body: web::Bytes,
    answer: AnswerRule,
) -> Call {
    Call {
        method: req.method().clone(),
        path,
        query,
        headers: crate::proxy::headers::to_upstream(req.headers()),
        body,
        answer,
    }
}

/// The rule for a call's answer: a component call's (by path, or by the token it is made
/// with, whatever the path) is checked for refresh tokens; `api_get_authorizer_info` and
/// `_list`, which carry them by design, must be JSON. A WeCom service call's is checked for
/// permanent codes.
pub(crate) fn refresh_token_rule(class: Class, component: bool) -> AnswerRule {
    match class {
        Class::RefreshTokens => AnswerRule::NoRefreshTokens { json_only: true },
        Class::Component => AnswerRule::NoRefreshTokens { json_only: false },
        _ if component => AnswerRule::NoRefreshTokens { json_only: false },
        Class::Service => AnswerRule::NoPermanentCodes,
        _ => AnswerRule::AsIs,
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
            Some(authorizer_target(platform, handle))
        }
        _ => super::wecom_gateway::target_of(state, owner),
    }
}

pub(crate) fn app_target(app: &crate::apps::AppHandle) -> Target {
    Target {
        label: app.name.clone(),
        wecom: app.settings.kind == AppKind::Wecom,
        param: ACCESS_TOKEN,
        credential: app.credential(),
    }
}

pub(crate) fn authorizer_target(platform: &str, handle: crate::apps::CredentialHandle) -> Target {
    Target {
        label: crate::config::labels::authorizer_label(platform),
        wecom: false,
        param: ACCESS_TOKEN,
        credential: handle,
    }
}

/// A platform's component token as the credential of a forwarded call.
pub(crate) fn component_target_of(platform: &crate::platform::Platform) -> Target {
    Target {
        label: platform.label(),
        wecom: false,
        param: COMPONENT_TOKEN,
        credential: platform.component_credential(),
    }
}

/// Forwards a checked call: the slot (from its pool), then the body, then WeChat.
/// `render` makes the answer of each failure in the front's own format.
pub(crate) async fn forward_checked(
    state: &ServerState,
    req: &HttpRequest,
    payload: web::Payload,
    routed: Routed,
    render: impl Fn(&GatewayError) -> HttpResponse,
    render_body: impl Fn(&BodyError) -> HttpResponse,
) -> HttpResponse {
    let Routed {
        target,
        label,
        path,
        query,
        answer,
        anonymous,
    } = routed;
    let gateway = &state.gateway;
    let (slot, body): (Slot, web::Bytes) = if anonymous {
        // The (small) body first, within the server's short body deadline: a stranger who
        // sends headers and then nothing never holds a slot.
        let deadline = super::body::deadline_of(req.app_data::<super::BodyDeadline>());
        let body = match read_body_within(req, payload, ANONYMOUS_MAX_BODY, deadline).await {
            Ok(b) => b,
            Err(e) => {
                gateway.refused(&label);
                return e.into_response(|e| render_body(e));
            }
        };
        match gateway.anonymous_slot().await {
            Ok(slot) => (slot, body),
            Err(e) => {
                gateway.refused(&label);
                return render(&e);
            }
        }
    } else {
        let slot = match gateway.slot().await {
            Ok(slot) => slot,
            Err(e) => {
                gateway.refused(&label);
                return answer_unread(render(&e), payload);
            }
        };
        match read_call_body(state, req, payload).await {
            Ok(b) => (slot, b),
            Err(e) => {
                gateway.refused(&label);
                return e.into_response(|e| render_body(e));
            }
        }
    };
    let call = call_of(req, path, query, body, answer);
    match gateway.forward(slot, call, target.as_ref(), &label).await {
        Ok(resp) => resp,
        Err(e) => render(&e),
    }
}

/// `ANY /{prefix}/{path}` under a WeChat API prefix: the SDK pass-through.
pub async fn passthrough(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    if is_upgrade(&req) {
        state.gateway.refused("");
        return answer_unread(upgrade_refused(), payload);
    }
    let routed = match route_passthrough(&state, &req) {
        Ok(Step::Forward(routed)) => routed,
        Ok(Step::Ticket(target, kind)) => {
            return answer_unread(ticket_answer(&state, &target, kind).await, payload)
        }
        Err((errcode, errmsg)) => {
            state.gateway.refused("");
            return answer_unread(wx_error(StatusCode::OK, errcode, &errmsg), payload);
        }
    };
    forward_checked(&state, &req, payload, routed, wx_gateway_error, |e| {
        wx_error(e.status(), -1, &e.to_string())
    })
    .await
}

/// The answer to a protocol upgrade on a gateway route, in WeChat's format.
pub(crate) fn upgrade_refused() -> HttpResponse {
    let mut resp = wx_error(
        StatusCode::BAD_REQUEST,
        40097,
        "invalid args: wxtoken does not forward protocol upgrades",
    );
    resp.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    resp
}

/// What the pass-through does with a call.
enum Step {
    Forward(Routed),
    /// `getticket`: answered from the managed ticket of the token's account.
    Ticket(TicketOwner, TicketKind),
}

/// The account a ticket is asked for.
pub(crate) enum TicketOwner {
    App(std::sync::Arc<crate::apps::AppHandle>),
    Authorizer { platform: String, appid: String },
}

/// A checked call, ready to forward.
pub(crate) struct Routed {
    /// Its credential; none for calls that carry their own.
    pub target: Option<Target>,
    /// Its metrics label.
    pub label: String,
    /// The path sent to WeChat: the canonical form that was checked.
    pub path: String,
    /// The query to send.
    pub query: String,
    pub answer: AnswerRule,
    /// Carries no wxtoken credential: the anonymous pool and body limit.
    pub anonymous: bool,
}

/// WeChat's refusal: errcode and errmsg.
pub(super) type Refusal = (i64, String);

pub(super) fn refusal(errcode: i64, errmsg: impl Into<String>) -> Refusal {
    (errcode, errmsg.into())
}

/// The refusal of a path that cannot be forwarded, or of a token route in any spelling.
pub(crate) fn path_refusal(raw: &str) -> Result<ApiPath<'_>, Refusal> {
    let checked = path::parse(raw).map_err(|e| refusal(40066, format!("invalid url: {e}")))?;
    if checked.class == Class::PermanentCode {
        return Err(refusal(48002, super::wecom_facade::PERMANENT_CODE_REFUSAL));
    }
    if checked.class == Class::TokenRoute {
        return Err(refusal(
            48001,
            format!(
                "api unauthorized: wxtoken never forwards `{}`, a token call (the facade answers \
                 /cgi-bin/token, /cgi-bin/stable_token and the component token calls as spelled)",
                checked.canonical
            ),
        ));
    }
    Ok(checked)
}

/// Where a pass-through call goes, or WeChat's refusal.
fn route_passthrough(state: &ServerState, req: &HttpRequest) -> Result<Step, Refusal> {
    let checked = path_refusal(req.path())?;
    let raw_query = req.query_string();
    let forward = |target: Option<Target>, label: String, query: String, answer, anonymous| {
        Step::Forward(Routed {
            target,
            label,
            path: checked.canonical.to_string(),
            query,
            answer,
            anonymous,
        })
    };
    match checked.class {
        Class::Secret => {
            let (app, query, stand_in) = with_real_secret(state, req, raw_query)?;
            let secret = app.settings.secret.clone();
            return Ok(forward(
                None,
                app.name.clone(),
                query,
                AnswerRule::NoSecret { secret, stand_in },
                false,
            ));
        }
        Class::UserToken => {
            return Ok(forward(
                None,
                String::new(),
                raw_query.to_string(),
                AnswerRule::AsIs,
                true,
            ))
        }
        _ => {}
    }
    if checked.class == Class::Ticket {
        return ticket_step(state, raw_query);
    }
    let (target, component) = token_target(state, raw_query, &checked)?;
    let answer =
        super::wecom_gateway::answer_rule(&target, refresh_token_rule(checked.class, component));
    Ok(forward(
        Some(target.clone()),
        target.label.clone(),
        raw_query.to_string(),
        answer,
        false,
    ))
}

/// The credential of a call made with a token, from its one token parameter: an
/// `access_token` wxtoken issued (an app's, an account's, or a platform's component token on
/// a call that takes it under that name), or a `component_access_token` that is a component
/// token. A token in a parameter its kind does not belong in would draw WeChat's 40001 for a
/// valid token (and a refetch a reporter asked for in vain), and is refused here instead.
/// `true` with a component target.
fn token_target(
    state: &ServerState,
    raw_query: &str,
    checked: &ApiPath<'_>,
) -> Result<(Target, bool), Refusal> {
    let access = single_param(raw_query, ACCESS_TOKEN)?;
    let component = single_param(raw_query, COMPONENT_TOKEN)?;
    let carries = access.is_some() || component.is_some();
    if let Some(target) = super::wecom_gateway::service_target(state, raw_query, carries)? {
        return Ok((target, false));
    }
    match (access, component) {
        (Some(_), Some(_)) => Err(refusal(
            40097,
            "invalid args: a call carries one token, as access_token or component_access_token",
        )),
        (None, None) => Err(refusal(41001, "access_token missing")),
        (Some(token), None) => {
            if let Some(target) = state
                .tokens
                .lookup(&token)
                .and_then(|i| target_of(state, &i.owner))
            {
                if target.param != ACCESS_TOKEN {
                    return Err(refusal(
                        40001,
                        format!(
                            "invalid credential: this is a WeCom {} and goes in that parameter",
                            target.param
                        ),
                    ));
                }
                return Ok((target, false));
            }
            let mut target = component_target(state, &token)?;
            if !checked.takes_component_token() {
                return Err(refusal(
                    40001,
                    format!(
                        "invalid credential: `{}` takes an account's access_token, and this is                          a platform's component token",
                        checked.canonical
                    ),
                ));
            }
            // The token goes back where the caller put it.
            target.param = ACCESS_TOKEN;
            Ok((target, true))
        }
        (None, Some(token)) => {
            if state.tokens.lookup(&token).is_some() {
                return Err(refusal(
                    40001,
                    "invalid credential: component_access_token carries an account's access \
                     token; send it as access_token",
                ));
            }
            Ok((component_target(state, &token)?, true))
        }
    }
}

/// The decoded value of the parameter `name` when it is there once and not empty; WeChat's
/// refusal when it is there twice (a server reading the other copy would act on a value
/// wxtoken never checked).
pub(super) fn single_param<'q>(
    raw_query: &'q str,
    name: &str,
) -> Result<Option<std::borrow::Cow<'q, str>>, Refusal> {
    let mut values = form_urlencoded::parse(raw_query.as_bytes()).filter(|(k, _)| k == name);
    let first = values.next().map(|(_, v)| v);
    if values.next().is_some() {
        return Err(refusal(
            40097,
            format!("invalid args: the parameter `{name}` is given more than once"),
        ));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

/// The platform whose component token `presented` is (its current one, or the one before it
/// while that is valid); WeChat's 42001 for the one before past its expiry, else 40001.
fn component_target(state: &ServerState, presented: &str) -> Result<Target, Refusal> {
    use crate::platform::ComponentTokenCheck;
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
        refusal(42001, "access_token expired")
    } else {
        refusal(
            40001,
            "invalid credential, access_token is invalid or not latest (not a token wxtoken issued)",
        )
    })
}

/// The query of a login call with the client key in `secret` replaced by the app's AppSecret,
/// the app, and the client key (which stands in for the AppSecret should an answer repeat
/// it); or WeChat's refusal (40125 unknown key, 40013 unknown appid, 40164 not this client's
/// app, 40097 a parameter given twice).
fn with_real_secret(
    state: &ServerState,
    req: &HttpRequest,
    raw_query: &str,
) -> Result<(std::sync::Arc<crate::apps::AppHandle>, String, String), Refusal> {
    let appid = single_param(raw_query, "appid")?;
    let key = single_param(raw_query, "secret")?;
    let Some(appid) = appid else {
        return Err(refusal(41002, "appid missing"));
    };
    let Some(key) = key else {
        return Err(refusal(41004, "appsecret missing"));
    };
    let client = match state.clients.load().by_key(&key, req) {
        Ok(client) => client,
        Err(crate::clients::Refused::Unauthorized(_)) => {
            return Err(refusal(
                40125,
                "invalid appsecret (use a wxtoken client key)",
            ))
        }
        Err(crate::clients::Refused::Limited(l)) => {
            return Err(refusal(
                super::wechat::RATE_LIMITED_ERRCODE,
                format!(
                    "too many requests for this client: retry in {} s",
                    l.retry_after_secs
                ),
            ))
        }
    };
    let apps = state.apps.load();
    let Some(app) = apps.by_appid(&appid).cloned() else {
        return Err(refusal(40013, "invalid appid"));
    };
    if !client.may_use_app(&app.name) {
        return Err(refusal(40164, "this client may not use this app"));
    }
    let query = query::with_param(raw_query, "secret", app.settings.secret.expose_secret());
    Ok((app, query, key.into_owned()))
}

/// `getticket`: the ticket wxtoken manages for the account whose token the call carries (one
/// look-up in the token index; a component token fetches no ticket).
fn ticket_step(state: &ServerState, raw_query: &str) -> Result<Step, Refusal> {
    if single_param(raw_query, COMPONENT_TOKEN)?.is_some() {
        return Err(refusal(
            40001,
            "invalid credential: a ticket is fetched with an account's access token",
        ));
    }
    let Some(token) = single_param(raw_query, ACCESS_TOKEN)? else {
        return Err(refusal(41001, "access_token missing"));
    };
    let kind = single_param(raw_query, "type")?.unwrap_or(std::borrow::Cow::Borrowed("jsapi"));
    let Some(kind) = TicketKind::parse(&kind) else {
        return Err(refusal(
            40097,
            "invalid args: type must be jsapi or wx_card",
        ));
    };
    let not_issued = || {
        refusal(
            40001,
            "invalid credential, access_token is invalid or not latest (not an account's token \
             wxtoken issued)",
        )
    };
    let owner = match state.tokens.lookup(&token).map(|i| (*i.owner).clone()) {
        Some(TokenOwner::App(name)) => {
            let app = state
                .apps
                .load()
                .get(&name)
                .cloned()
                .ok_or_else(not_issued)?;
            TicketOwner::App(app)
        }
        Some(TokenOwner::Authorizer { platform, appid }) => {
            TicketOwner::Authorizer { platform, appid }
        }
        _ => return Err(not_issued()),
    };
    Ok(Step::Ticket(owner, kind))
}

/// WeChat's `getticket` answer from the managed ticket: an app's configured one (`tickets`),
/// or an account's, started on first use.
pub(crate) async fn ticket_answer(
    state: &ServerState,
    owner: &TicketOwner,
    kind: TicketKind,
) -> HttpResponse {
    let record = match owner {
        TicketOwner::App(app) => {
            let Some(handle) = app.tickets.get(&kind) else {
                state.gateway.refused(&app.name);
                return wx_error(
                    StatusCode::OK,
                    48001,
                    &format!(
                        "api unauthorized: wxtoken keeps no {} ticket for app `{}` (add \"{}\" to \
                         its tickets), and never forwards getticket",
                        kind.as_str(),
                        app.name,
                        kind.as_str()
                    ),
                );
            };
            let label = crate::config::ticket_label(&app.name, kind);
            super::tickets::current_of(state, handle, &label).await
        }
        TicketOwner::Authorizer { platform, appid } => match state.platforms.get(platform) {
            Some(p) => super::platforms::authorizer_ticket_record(state, p, appid, kind).await,
            None => Err(ApiError::UnknownPlatform(platform.clone())),
        },
    };
    match record {
        Ok(t) => {
            let expires_in = t.remaining(std::time::SystemTime::now()).as_secs();
            HttpResponse::Ok()
                .insert_header(super::cache_control(expires_in))
                .json(json!({
                    "errcode": 0,
                    "errmsg": "ok",
                    "ticket": t.token.expose(),
                    "expires_in": expires_in,
                }))
        }
        Err(e) => wx_api_error(&e),
    }
}

/// One of wxtoken's own `/v1/` errors in WeChat's format, for a WeChat path: an account that
/// is gone (unknown, revoked, to authorize again) is WeChat's 40001 for its token; anything
/// else (no ticket could be had in time) its "system busy", which SDKs retry.
fn wx_api_error(e: &ApiError) -> HttpResponse {
    let errcode = match actix_web::ResponseError::status_code(e) {
        StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::CONFLICT => 40001,
        _ => -1,
    };
    wx_error(StatusCode::OK, errcode, &format!("system error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_token_has_its_answer_checked_for_refresh_tokens_on_any_path() {
        let rule = |class, component| match refresh_token_rule(class, component) {
            AnswerRule::NoRefreshTokens { json_only } => format!("refresh json={json_only}"),
            AnswerRule::NoPermanentCodes => "permanent".into(),
            AnswerRule::AsIs => "as is".into(),
            _ => "other".into(),
        };
        assert_eq!(rule(Class::Service, true), "refresh json=false");
        assert_eq!(rule(Class::Service, false), "permanent");
        assert_eq!(rule(Class::RefreshTokens, true), "refresh json=true");
        assert_eq!(rule(Class::Component, false), "refresh json=false");
        assert_eq!(rule(Class::Plain, true), "refresh json=false");
        assert_eq!(rule(Class::Plain, false), "as is");
    }
}
