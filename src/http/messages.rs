//! The message URLs WeChat pushes to: `/v1/apps/{name}/messages` for an app, and
//! `/v1/platforms/{name}/accounts/{appid}/messages` for the accounts authorized to a platform
//! (its message URL is `.../accounts/$APPID$/messages`). `GET` answers WeChat's URL check;
//! `POST` opens the push (see [`crate::messages::endpoint`]), has it taken, and answers
//! `success` or the passive reply, sealed as the push came. They authenticate by WeChat's
//! signature, not by a client key.

use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};

use super::body::{deadline_of, read_body_within, BodyDeadline};
use super::{ApiError, ServerState};
use crate::config::MessageFormat;
use crate::messages::endpoint::{Endpoint, Opened, Query, Refusal, MAX_PUSH_BODY};
use crate::messages::{Inbound, Source, TakeError, Taken};
use crate::platform::{AccountAnswer, Platform};
use crate::push::crypto::MsgCrypto;

/// The query, read leniently: a parameter that is missing is refused by the endpoint with a
/// message that names it.
fn query(req: &HttpRequest) -> Query {
    web::Query::<Query>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default()
}

/// A refusal, counted under the push's source, as the JSON error of the `/v1/` routes.
fn refused(state: &ServerState, source: &str, r: Refusal) -> ApiError {
    state.metrics.push_refused(source);
    tracing::warn!(source, status = r.status, reason = %r.message, "message push refused");
    ApiError::EventRefused {
        status: r.status,
        message: r.message,
    }
}

/// The endpoint of app `name`: 404 for an unknown app or one that takes no pushes.
fn app_endpoint(state: &ServerState, name: &str) -> Result<(Endpoint, String), ApiError> {
    use secrecy::ExposeSecret as _;
    let apps = state.apps.load();
    let app = apps
        .get(name)
        .ok_or_else(|| ApiError::UnknownApp(name.to_owned()))?;
    let m = app
        .settings
        .messages
        .as_ref()
        .ok_or_else(|| ApiError::NoMessages(name.to_owned()))?;
    let crypto = match &m.encoding_aes_key {
        // Checked by the configuration: a key that does not build here is a bug, answered 503
        // rather than a panic.
        Some(key) => Some(
            MsgCrypto::new(
                m.token.expose_secret(),
                key.expose_secret(),
                &app.settings.appid,
            )
            .map_err(|e| ApiError::Unavailable(format!("app `{name}`: {e}")))?,
        ),
        None => None,
    };
    Ok((
        Endpoint::app(m.token.clone(), crypto, m.format),
        app.settings.appid.clone(),
    ))
}

fn echo(echostr: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(echostr)
}

fn success() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("success")
}

/// A passive reply, sealed as the push it answers came.
fn reply(endpoint: &Endpoint, opened: &Opened, body: &str) -> HttpResponse {
    let content_type = match endpoint.format() {
        MessageFormat::Json => "application/json",
        MessageFormat::Xml => "application/xml; charset=utf-8",
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .body(endpoint.seal_reply(opened, body, SystemTime::now()))
}

/// The push body, bounded, within the server's body deadline; the error answer otherwise
/// (which closes the connection after a timeout).
async fn push_body(req: &HttpRequest, payload: web::Payload) -> Result<web::Bytes, HttpResponse> {
    use actix_web::ResponseError as _;
    let deadline = deadline_of(req.app_data::<BodyDeadline>());
    read_body_within(req, payload, MAX_PUSH_BODY, deadline)
        .await
        .map_err(|e| e.into_response(|e| e.as_api_error().error_response()))
}

fn not_stored(e: TakeError) -> ApiError {
    tracing::error!(error = %format!("{e:#}"), "message push could not be stored; WeChat will retry it");
    ApiError::Unavailable("the push could not be stored; try again".into())
}

/// `GET /v1/apps/{name}/messages?signature=&timestamp=&nonce=&echostr=`: WeChat's URL check.
pub async fn app_check(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default();
    let (endpoint, _) = app_endpoint(&state, name)?;
    let echostr = endpoint
        .verify_url(&query(&req), SystemTime::now())
        .map_err(|r| refused(&state, name, r))?;
    Ok(echo(echostr))
}

/// `POST /v1/apps/{name}/messages`: an app's push, in plaintext, compatible or safe mode.
pub async fn app_push(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default().to_owned();
    let (endpoint, appid) = app_endpoint(&state, &name)?;
    let body = match push_body(&req, payload).await {
        Ok(body) => body,
        Err(answer) => return Ok(answer),
    };
    let opened = endpoint
        .open(&query(&req), &body, SystemTime::now())
        .map_err(|r| refused(&state, &name, r))?;
    let format = endpoint.format();
    let inbound = Inbound::new(
        Source::app(&name, &appid),
        SystemTime::now(),
        opened.fields.clone(),
        opened.raw.clone(),
        format,
    );
    match state.hub.take(inbound).await.map_err(not_stored)? {
        Taken::New {
            reply: Some(wait), ..
        } => Ok(match wait.await {
            Some(body) => reply(&endpoint, &opened, &body),
            None => success(),
        }),
        _ => Ok(success()),
    }
}

/// The platform the route names, and the account appid checked to be an appid (WeChat's are
/// letters, digits and `_`): 404 and 400.
fn platform_account(
    state: &ServerState,
    req: &HttpRequest,
) -> Result<(std::sync::Arc<Platform>, String), ApiError> {
    let name = req.match_info().get("name").unwrap_or_default();
    let platform = state
        .platforms
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownPlatform(name.to_owned()))?;
    let appid = req.match_info().get("appid").unwrap_or_default();
    crate::store::platform::check_appid(appid).map_err(|_| {
        ApiError::BadRequest("the account appid in the path is not an appid".into())
    })?;
    Ok((platform, appid.to_owned()))
}

/// `GET /v1/platforms/{name}/accounts/{appid}/messages`: the URL check, signed with the
/// platform's Token.
pub async fn account_check(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (platform, _) = platform_account(&state, &req)?;
    let echostr = platform
        .accounts_endpoint()
        .verify_url(&query(&req), SystemTime::now())
        .map_err(|r| refused(&state, platform.name(), r))?;
    Ok(echo(echostr))
}

/// `POST /v1/platforms/{name}/accounts/{appid}/messages`: an authorized account's push,
/// encrypted with the platform's keys.
pub async fn account_push(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (platform, appid) = platform_account(&state, &req)?;
    let endpoint = platform.accounts_endpoint();
    let body = match push_body(&req, payload).await {
        Ok(body) => body,
        Err(answer) => return Ok(answer),
    };
    let opened = endpoint
        .open(&query(&req), &body, SystemTime::now())
        .map_err(|r| refused(&state, platform.name(), r))?;
    match platform
        .take_account_message(&appid, &opened)
        .await
        .map_err(not_stored)?
    {
        AccountAnswer::Success => Ok(success()),
        AccountAnswer::Reply(body) => Ok(reply(&endpoint, &opened, &body)),
        AccountAnswer::Empty => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .finish()),
    }
}
