//! Ticket routes: `GET /v1/apps/{name}/ticket/{type}` and the server-side JS-SDK signature.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{authorize, authorized_json, cache_control, ApiError, ServerState};
use crate::apps::{AppHandle, CredentialHandle};
use crate::config::ticket_label;
use crate::config::TicketKind;
use crate::token::TokenRecord;

fn ticket_of<'a>(
    app: &'a AppHandle,
    kind: &str,
) -> Result<(TicketKind, &'a CredentialHandle), ApiError> {
    let unknown = || ApiError::UnknownTicket {
        app: app.name.clone(),
        kind: kind.to_string(),
    };
    let k = TicketKind::parse(kind).ok_or_else(unknown)?;
    let handle = app.tickets.get(&k).ok_or_else(unknown)?;
    Ok((k, handle))
}

/// The current ticket: from the published status, or waiting for the actor's fetch.
async fn current_ticket(
    state: &ServerState,
    app: &AppHandle,
    kind: TicketKind,
    handle: &CredentialHandle,
) -> Result<std::sync::Arc<TokenRecord>, ApiError> {
    current_of(state, handle, &ticket_label(&app.name, kind)).await
}

/// A credential's current value: from the published status, or waiting for the actor's fetch
/// (its wait limit, then a 503 naming `label`).
pub(crate) async fn current_of(
    state: &ServerState,
    handle: &CredentialHandle,
    label: &str,
) -> Result<std::sync::Arc<TokenRecord>, ApiError> {
    handle
        .current(state.wait_limit)
        .await
        .map_err(|u| super::unavailable(label, u))
}

#[derive(Serialize)]
struct TicketBody<'a> {
    app: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    ticket: &'a str,
    expires_in: u64,
    expires_at: String,
}

pub async fn get_ticket(
    state: web::Data<ServerState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, kind) = path.into_inner();
    let (client, app) = authorize(&state, &req, &name)?;
    let (kind, handle) = ticket_of(&app, &kind)?;
    let ticket = current_ticket(&state, &app, kind, handle).await?;
    state.audit.read(
        &client.name,
        &crate::config::ticket_label(&app.name, kind),
        &ticket.token,
    );
    let expires_in = ticket.remaining(SystemTime::now()).as_secs();
    Ok(HttpResponse::Ok()
        .insert_header(cache_control(expires_in))
        .json(TicketBody {
            app: &app.name,
            kind: kind.as_str(),
            ticket: ticket.token.expose(),
            expires_in,
            expires_at: ticket.expires_at_rfc3339(),
        }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignatureRequest {
    pub(crate) url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignatureBody {
    app_id: String,
    timestamp: u64,
    nonce_str: String,
    signature: String,
}

/// `POST /v1/apps/{name}/jssdk/signature` `{"url": "https://..."}`: the `wx.config` values for
/// a page, signed with the app's jsapi ticket.
pub async fn jssdk_signature(
    state: web::Data<ServerState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (_, app, parsed): (_, _, SignatureRequest) = authorized_json(
        &state,
        &req,
        &name,
        payload,
        "body must be JSON {\"url\": \"https://...\"}",
    )
    .await?;
    let url = signed_url(&parsed)?;
    let (kind, handle) = ticket_of(&app, TicketKind::Jsapi.as_str())?;
    let ticket = current_ticket(&state, &app, kind, handle).await?;
    Ok(signature_answer(&ticket, app.settings.appid.clone(), url))
}

/// A ticket's answer: the fields naming whose it is (`head`), then its type, value and expiry,
/// cacheable while it lives.
pub(crate) fn ticket_answer(
    mut head: serde_json::Map<String, serde_json::Value>,
    kind: TicketKind,
    ticket: &TokenRecord,
) -> HttpResponse {
    let expires_in = ticket.remaining(SystemTime::now()).as_secs();
    head.insert("type".into(), kind.as_str().into());
    head.insert("ticket".into(), ticket.token.expose().into());
    head.insert("expires_in".into(), expires_in.into());
    head.insert("expires_at".into(), ticket.expires_at_rfc3339().into());
    HttpResponse::Ok()
        .insert_header(cache_control(expires_in))
        .json(head)
}

/// The page URL of a signature request, checked (no fragment, absolute http(s)).
pub(crate) fn signed_url(parsed: &SignatureRequest) -> Result<&str, ApiError> {
    crate::jssdk::signed_url(&parsed.url).map_err(|why| ApiError::BadRequest(why.to_string()))
}

/// The `wx.config` values for `url`, signed with the jsapi `ticket` of `app_id`.
pub(crate) fn signature_answer(ticket: &TokenRecord, app_id: String, url: &str) -> HttpResponse {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let nonce = crate::jssdk::nonce();
    let signature = crate::jssdk::signature(ticket.token.expose(), &nonce, timestamp, url);
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(SignatureBody {
            app_id,
            timestamp,
            nonce_str: nonce,
            signature,
        })
}
