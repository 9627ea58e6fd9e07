//! The fake's `/_fake/component/*` control endpoints: mint and push tickets, set the event URL
//! and the push interval, authorize, unauthorize, bulk-create, rotate refresh tokens, require
//! re-authorization, and list the pushes, for users outside the process. Errors are plain text:
//! 400 for a bad request, 404 for an unknown platform or authorizer, 409 when there is no event
//! URL to push to.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::component_state::{Authorized, ControlError};
use super::push::{self, Event, PushRecord};
use super::routes::{bad_request, lock, Shared};

/// The most authorizers one bulk call creates (a benchmark wants 100,000).
const BULK_MAX: u64 = 1_000_000;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/_fake/component/ticket", web::post().to(ctl_ticket))
        .route("/_fake/component/event_url", web::post().to(ctl_event_url))
        .route(
            "/_fake/component/ticket_interval",
            web::post().to(ctl_ticket_interval),
        )
        .route("/_fake/component/authorize", web::post().to(ctl_authorize))
        .route(
            "/_fake/component/unauthorize",
            web::post().to(ctl_unauthorize),
        )
        .route("/_fake/component/bulk", web::post().to(ctl_bulk))
        .route(
            "/_fake/component/rotate_refresh_token",
            web::post().to(ctl_rotate_refresh_token),
        )
        .route(
            "/_fake/component/needs_reauth",
            web::post().to(ctl_needs_reauth),
        )
        .route("/_fake/component/pushes", web::get().to(ctl_pushes));
}

fn control_error(err: &ControlError) -> HttpResponse {
    let status = match err {
        ControlError::UnknownComponent(_) | ControlError::UnknownAuthorizer(_) => {
            StatusCode::NOT_FOUND
        }
        ControlError::NoEventUrl(_) => StatusCode::CONFLICT,
        ControlError::BadAppid | ControlError::PreAuthCode => StatusCode::BAD_REQUEST,
    };
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{err}\n"))
}

fn control_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|err| err.to_string())
}

fn push_json(p: &PushRecord) -> Value {
    json!({
        "component_appid": p.component_appid,
        "info_type": p.info_type,
        "authorizer_appid": p.authorizer_appid,
        "status": p.status,
        "body": p.body,
        "error": p.error,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketSpec {
    component_appid: String,
    /// Push it to the event URL (default: just mint it).
    #[serde(default)]
    push: bool,
}

/// Mints a verify ticket, and pushes it if asked: `{"ticket": ..., "push": {...}}`.
async fn ctl_ticket(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let spec: TicketSpec = match control_body(&body) {
        Ok(spec) => spec,
        Err(msg) => return bad_request(msg),
    };
    if spec.push {
        return match push::push(&state, &spec.component_appid, Event::Ticket).await {
            Ok(record) => HttpResponse::Ok().json(json!({
                "ticket": record.ticket,
                "push": push_json(&record),
            })),
            Err(err) => control_error(&err),
        };
    }
    let mut s = lock(&state);
    let (component, m) = s.component();
    match component.mint_ticket(&spec.component_appid, m.now) {
        Ok(ticket) => HttpResponse::Ok().json(json!({ "ticket": ticket })),
        Err(err) => control_error(&err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventUrlSpec {
    component_appid: String,
    url: Option<String>,
}

async fn ctl_event_url(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let spec: EventUrlSpec = match control_body(&body) {
        Ok(spec) => spec,
        Err(msg) => return bad_request(msg),
    };
    if let Some(url) = spec.url.as_deref() {
        if let Err(msg) = check_event_url(url) {
            return bad_request(msg);
        }
    }
    match lock(&state)
        .component()
        .0
        .set_event_url(&spec.component_appid, spec.url)
    {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(err) => control_error(&err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntervalSpec {
    secs: u64,
}

async fn ctl_ticket_interval(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    match control_body::<IntervalSpec>(&body) {
        Ok(IntervalSpec { secs }) => {
            lock(&state)
                .component_ref()
                .0
                .set_ticket_interval(Duration::from_secs(secs));
            HttpResponse::NoContent().finish()
        }
        Err(msg) => bad_request(msg),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeSpec {
    component_appid: String,
    authorizer_appid: String,
    /// Granted permission-set ids (default `[1]`).
    func_info: Option<Vec<u32>>,
    pre_auth_code: Option<String>,
    /// Push the authorized / updateauthorized event (default: just answer the code).
    #[serde(default)]
    push: bool,
}

fn authorized_json(a: &Authorized) -> Value {
    json!({
        "info_type": a.info_type,
        "authorizer_appid": a.authorizer_appid,
        "authorization_code": a.authorization_code,
        "expires_in": a.expires_in,
        "pre_auth_code": a.pre_auth_code,
    })
}

async fn ctl_authorize(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let spec: AuthorizeSpec = match control_body(&body) {
        Ok(spec) => spec,
        Err(msg) => return bad_request(msg),
    };
    let func_info = spec.func_info.unwrap_or_else(|| vec![1]);
    let authorized = authorize(
        &state,
        &spec.component_appid,
        &spec.authorizer_appid,
        &func_info,
        spec.pre_auth_code.as_deref(),
    );
    let authorized = match authorized {
        Ok(a) => a,
        Err(err) => return control_error(&err),
    };
    let mut body = authorized_json(&authorized);
    if spec.push {
        let event = Event::Authorization(authorized);
        match push::push(&state, &spec.component_appid, event).await {
            Ok(record) => body["push"] = push_json(&record),
            Err(err) => return control_error(&err),
        }
    }
    HttpResponse::Ok().json(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizerSpec {
    component_appid: String,
    authorizer_appid: String,
    /// `unauthorize` only: push the unauthorized event (default: leave silently).
    #[serde(default)]
    push: bool,
}

async fn ctl_unauthorize(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let spec: AuthorizerSpec = match control_body(&body) {
        Ok(spec) => spec,
        Err(msg) => return bad_request(msg),
    };
    let (component_appid, authorizer_appid) = (&spec.component_appid, &spec.authorizer_appid);
    let left = {
        let mut s = lock(&state);
        let (component, m) = s.component();
        component.unauthorize(component_appid, authorizer_appid, m.now)
    };
    if let Err(err) = left {
        return control_error(&err);
    }
    if !spec.push {
        return HttpResponse::NoContent().finish();
    }
    let event = Event::Unauthorized(authorizer_appid.clone());
    match push::push(&state, component_appid, event).await {
        Ok(record) => HttpResponse::Ok().json(json!({ "push": push_json(&record) })),
        Err(err) => control_error(&err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkSpec {
    component_appid: String,
    count: u64,
}

async fn ctl_bulk(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let spec: BulkSpec = match control_body(&body) {
        Ok(spec) => spec,
        Err(msg) => return bad_request(msg),
    };
    if spec.count > BULK_MAX {
        return bad_request(format!("count is at most {BULK_MAX}"));
    }
    match bulk(&state, &spec.component_appid, spec.count) {
        Ok(appids) => HttpResponse::Ok().json(json!({
            "created": appids.len(),
            "first": appids.first(),
            "last": appids.last(),
        })),
        Err(err) => control_error(&err),
    }
}

async fn ctl_rotate_refresh_token(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let spec: AuthorizerSpec = match control_body(&body) {
        Ok(spec) => spec,
        Err(msg) => return bad_request(msg),
    };
    let rotated = lock(&state)
        .component()
        .0
        .rotate_refresh_token(&spec.component_appid, &spec.authorizer_appid);
    match rotated {
        Ok(refresh_token) => HttpResponse::Ok().json(json!({ "refresh_token": refresh_token })),
        Err(err) => control_error(&err),
    }
}

async fn ctl_needs_reauth(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let spec: AuthorizerSpec = match control_body(&body) {
        Ok(spec) => spec,
        Err(msg) => return bad_request(msg),
    };
    let marked = lock(&state)
        .component()
        .0
        .require_reauth(&spec.component_appid, &spec.authorizer_appid);
    match marked {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(err) => control_error(&err),
    }
}

async fn ctl_pushes(state: web::Data<Shared>) -> HttpResponse {
    let pushes = lock(&state).component_ref().0.pushes();
    let pushes: Vec<Value> = pushes.iter().map(push_json).collect();
    HttpResponse::Ok().json(json!({ "pushes": pushes }))
}

// ---- shared by the controls and the handle --------------------------------------------------

/// An event URL must be an absolute http(s) URL: it is where pushes go.
pub(super) fn check_event_url(url: &str) -> Result<(), String> {
    let uri: actix_web::http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none() {
        return Err(format!("{url:?} is not an absolute http(s) URL"));
    }
    Ok(())
}

pub(super) fn authorize(
    state: &Shared,
    component_appid: &str,
    authorizer_appid: &str,
    func_info: &[u32],
    pre_auth_code: Option<&str>,
) -> Result<Authorized, ControlError> {
    let mut s = lock(state);
    let (component, m) = s.component();
    component.authorize(
        component_appid,
        authorizer_appid,
        func_info,
        pre_auth_code,
        &m,
    )
}

pub(super) fn bulk(
    state: &Shared,
    component_appid: &str,
    n: u64,
) -> Result<Vec<String>, ControlError> {
    let mut s = lock(state);
    let (component, m) = s.component();
    component.bulk_authorize(component_appid, n, m.unix_now)
}
