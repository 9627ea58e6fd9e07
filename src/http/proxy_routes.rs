//! The gateway's proxy front: `ANY /v1/apps/{name}/proxy/{path}`, an authorizer's and a
//! platform's, for business servers that never hold a token. Bearer auth, a client with
//! `proxy = true`, and wxtoken adds the credential's token; the path is read and classified
//! as the pass-through reads it (see `proxy::path`).

use actix_web::http::ConnectionType;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret as _;

use super::body::answer_unread;
use super::gateway::{
    app_target, authorizer_target, component_target_of, forward_checked, is_upgrade,
    refresh_token_rule, ticket_answer, Routed, TicketOwner,
};
use super::{authorize, ApiError, ServerState};
use crate::config::{AppKind, TicketKind};
use crate::proxy::path::{self, ApiPath, Class};
use crate::proxy::{query, AnswerRule, GatewayError, Target};

/// What stands in for the AppSecret should WeChat's answer to a login call repeat it.
const SECRET_STAND_IN: &str = "wxtoken-hidden-appsecret";

fn api_gateway_error(label: &str, e: &GatewayError) -> ApiError {
    match e {
        GatewayError::Busy(_) | GatewayError::AnonymousBusy => ApiError::Unavailable(e.to_string()),
        GatewayError::NoValidToken(why) => ApiError::NoValidToken {
            app: label.to_string(),
            why: why.clone(),
            errcode: None,
        },
        GatewayError::Upstream(crate::upstream::UpstreamError::Timeout(_)) => {
            ApiError::GatewayTimeout(e.to_string())
        }
        GatewayError::Upstream(_) => ApiError::BadGateway(e.to_string()),
    }
}

/// The WeChat path of a proxy route: what follows `/proxy` in the request path (still
/// percent-encoded as the client sent it).
fn proxied_path(req: &HttpRequest) -> Option<&str> {
    let raw = req.path();
    let at = raw.find("/proxy/")?;
    Some(&raw[at + "/proxy".len()..])
}

/// Checks a proxy call's path: one that reads as a WeChat API path (400 otherwise) and is no
/// token endpoint in any spelling.
pub(super) fn checked_path<'r>(
    state: &ServerState,
    req: &'r HttpRequest,
) -> Result<ApiPath<'r>, ApiError> {
    let raw = proxied_path(req).ok_or(ApiError::NotFound)?;
    let checked = path::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if checked.class == Class::PermanentCode {
        return Err(ApiError::BadRequest(
            super::wecom_facade::PERMANENT_CODE_REFUSAL.into(),
        ));
    }
    if checked.class == Class::TokenRoute {
        return Err(ApiError::BadRequest(format!(
            "`{}` would rotate the shared token and is never forwarded; read the token from wxtoken instead",
            checked.canonical
        )));
    }
    if !state.gateway.settings.is_api_path(&checked.canonical) {
        return Err(ApiError::BadRequest(format!(
            "`{}` is not under a WeChat API prefix (see [proxy] extra_prefixes)",
            checked.canonical.chars().take(128).collect::<String>()
        )));
    }
    Ok(checked)
}

pub(super) fn require_proxy_flag(client: &crate::config::ClientSettings) -> Result<(), ApiError> {
    if client.proxy {
        Ok(())
    } else {
        Err(ApiError::ProxyNotAllowed(client.name.clone()))
    }
}

/// A call made with `target`'s token: the token added, the answer checked as its class says.
pub(super) fn with_token(
    req: &HttpRequest,
    checked: &ApiPath<'_>,
    target: Target,
    component: bool,
) -> Routed {
    let (target, answer) = match checked.class {
        // The user's OAuth token is the call's credential: nothing added.
        Class::UserToken => (None, AnswerRule::AsIs),
        class => (Some(target), refresh_token_rule(class, component)),
    };
    Routed {
        label: target.as_ref().map(|t| t.label.clone()).unwrap_or_default(),
        target,
        path: checked.canonical.to_string(),
        query: req.query_string().to_string(),
        answer,
        anonymous: false,
    }
}

/// What a proxy route does with a checked call.
pub(super) enum Proxied {
    Forward(Routed),
    Ticket(TicketOwner, TicketKind),
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
        let checked = checked_path(&state, &req)?;
        match checked.class {
            Class::Ticket => Ok(Proxied::Ticket(
                TicketOwner::App(app.clone()),
                ticket_kind(&req)?,
            )),
            Class::Secret => Ok(Proxied::Forward(login_call(&req, &checked, &app)?)),
            _ => Ok(Proxied::Forward(with_token(
                &req,
                &checked,
                app_target(&app),
                false,
            ))),
        }
    });
    proxy_step(&state, &req, payload, checked).await
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
        let checked = checked_path(&state, &req)?;
        match checked.class {
            Class::Ticket => Ok(Proxied::Ticket(
                TicketOwner::Authorizer {
                    platform: platform.name().to_string(),
                    appid: req
                        .match_info()
                        .get("appid")
                        .unwrap_or_default()
                        .to_string(),
                },
                ticket_kind(&req)?,
            )),
            Class::Secret => Err(not_for_accounts(&checked)),
            _ => Ok(Proxied::Forward(with_token(
                &req,
                &checked,
                authorizer_target(platform.name(), handle),
                false,
            ))),
        }
    };
    let checked = checked.await;
    proxy_step(&state, &req, payload, checked).await
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
            let checked = checked_path(&state, &req)?;
            match checked.class {
                Class::Secret | Class::Ticket => Err(not_for_accounts(&checked)),
                _ => Ok(Proxied::Forward(with_token(
                    &req,
                    &checked,
                    component_target_of(&platform),
                    true,
                ))),
            }
        });
    proxy_step(&state, &req, payload, checked).await
}

pub(super) fn not_for_accounts(checked: &ApiPath<'_>) -> ApiError {
    ApiError::BadRequest(format!(
        "`{}` takes an app's AppSecret or an account's ticket: use /v1/apps/{{name}}/proxy/ or \
         the account's routes",
        checked.canonical
    ))
}

/// The `type` of a `getticket` call (`jsapi` when absent, as WeChat's JS-SDK calls it).
fn ticket_kind(req: &HttpRequest) -> Result<TicketKind, ApiError> {
    let raw = query::param(req.query_string(), "type");
    let raw = raw.as_deref().unwrap_or("jsapi");
    TicketKind::parse(raw)
        .ok_or_else(|| ApiError::BadRequest("type must be jsapi or wx_card".into()))
}

/// A login call (`jscode2session`, web OAuth's code exchange) for `app`: the AppSecret put in
/// `secret` whatever the caller sent there (a client key must never reach WeChat), and the
/// call refused when it names another app or repeats `appid` or `secret`.
fn login_call(
    req: &HttpRequest,
    checked: &ApiPath<'_>,
    app: &crate::apps::AppHandle,
) -> Result<Routed, ApiError> {
    if app.settings.kind == AppKind::Wecom {
        return Err(ApiError::BadRequest(format!(
            "`{}` is an Official Account or Mini Program login; `{}` is a WeCom app",
            checked.canonical, app.name
        )));
    }
    let raw = req.query_string();
    for name in ["appid", "secret"] {
        let n = form_urlencoded::parse(raw.as_bytes())
            .filter(|(k, _)| k == name)
            .count();
        if n > 1 {
            return Err(ApiError::BadRequest(format!(
                "the parameter `{name}` is given more than once"
            )));
        }
    }
    match query::param(raw, "appid") {
        Some(appid) if *appid != app.settings.appid => {
            return Err(ApiError::BadRequest(format!(
                "appid `{}` is not the appid of app `{}`",
                appid.chars().take(64).collect::<String>(),
                app.name
            )))
        }
        _ => {}
    }
    let query = query::with_param(raw, "appid", &app.settings.appid);
    let query = query::with_param(&query, "secret", app.settings.secret.expose_secret());
    Ok(Routed {
        target: None,
        label: app.name.clone(),
        path: checked.canonical.to_string(),
        query,
        answer: AnswerRule::NoSecret {
            secret: app.settings.secret.clone(),
            stand_in: SECRET_STAND_IN.to_string(),
        },
        anonymous: false,
    })
}

/// Forwards a checked proxy call, or answers its refusal (unread, the connection closed).
pub(super) async fn proxy_step(
    state: &ServerState,
    req: &HttpRequest,
    payload: web::Payload,
    checked: Result<Proxied, ApiError>,
) -> HttpResponse {
    if is_upgrade(req) {
        state.gateway.refused("");
        let e = ApiError::BadRequest("wxtoken does not forward protocol upgrades".into());
        let mut resp = actix_web::ResponseError::error_response(&e);
        resp.head_mut().set_connection_type(ConnectionType::Close);
        return answer_unread(resp, payload);
    }
    match checked {
        Ok(Proxied::Forward(routed)) => {
            let label = routed.label.clone();
            forward_checked(
                state,
                req,
                payload,
                routed,
                |e| actix_web::ResponseError::error_response(&api_gateway_error(&label, e)),
                |e| actix_web::ResponseError::error_response(e.as_api_error()),
            )
            .await
        }
        Ok(Proxied::Ticket(owner, kind)) => {
            answer_unread(ticket_answer(state, &owner, kind).await, payload)
        }
        Err(e) => {
            state.gateway.refused("");
            answer_unread(actix_web::ResponseError::error_response(&e), payload)
        }
    }
}
