//! A WeCom corp's JS-SDK tickets: `GET /v1/wecom/suites/{name}/corps/{corpid}/ticket/{type}`
//! (`jsapi`, the corp's ticket for `wx.config`; `agent_jsapi`, the app's for `wx.agentConfig`)
//! and the server-side signature. The corp routes' rules hold: 401, 404, 403; an unknown corp
//! 404, a revoked one 410, one whose permanent code WeCom refused 409.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::wecom::{authorize_suite, corp_label, param, refusal, suite_and_json};
use super::{ApiError, ServerState};
use crate::config::TicketKind;
use crate::token::TokenRecord;
use crate::wecom::{CorpUnavailable, Suite};

/// What logs, errors and the audit trail call one corp's ticket: `wecom:crm/ww...:jsapi_ticket`.
fn ticket_label(suite: &Suite, corpid: &str, kind: TicketKind) -> String {
    format!("{}:{}_ticket", corp_label(suite, corpid), kind.as_str())
}

/// A corp's ticket of `kind`, from the published status or the actor's fetch.
async fn corp_ticket_record(
    state: &ServerState,
    suite: &Suite,
    corpid: &str,
    kind: TicketKind,
) -> Result<Arc<TokenRecord>, ApiError> {
    // The corp's token first (read from the store if the corp is unknown here: another
    // instance may have handled its install), so that a revoked corp or a refused permanent
    // code is answered as such rather than as a ticket that never came.
    suite
        .corp_token(corpid, state.wait_limit)
        .await
        .map_err(|e| match e {
            CorpUnavailable::Refused(r) => refusal(suite, corpid, r),
            CorpUnavailable::Unavailable(u) => super::unavailable(&corp_label(suite, corpid), u),
        })?;
    let handle = suite
        .corp_ticket(corpid, kind)
        .map_err(|r| refusal(suite, corpid, r))?;
    super::tickets::current_of(state, &handle, &ticket_label(suite, corpid, kind)).await
}

/// `GET /v1/wecom/suites/{name}/corps/{corpid}/ticket/{type}` (`jsapi` or `agent_jsapi`),
/// fetched with the corp's token on first use, then kept fresh.
pub async fn corp_ticket(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (client, suite) = authorize_suite(&state, &req)?;
    let corpid = param(&req, "corpid");
    let raw = param(&req, "type");
    let kind = TicketKind::parse_wecom(&raw).ok_or_else(|| ApiError::UnknownTicket {
        app: format!("{}/{corpid}", suite.name()),
        kind: raw.clone(),
    })?;
    let ticket = corp_ticket_record(&state, &suite, &corpid, kind).await?;
    let label = ticket_label(&suite, &corpid, kind);
    state.audit.read(&client.name, &label, &ticket.token);
    let mut head = serde_json::Map::new();
    head.insert("suite".into(), suite.name().into());
    head.insert("corpid".into(), corpid.into());
    Ok(super::tickets::ticket_answer(head, kind, &ticket))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureRequest {
    url: String,
    /// `jsapi` (the default: `wx.config`) or `agent_jsapi` (`wx.agentConfig`).
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

const SIGNATURE_HINT: &str =
    "body must be JSON {\"url\": \"https://...\", \"type\": \"jsapi\"|\"agent_jsapi\"} (type optional)";

/// `POST /v1/wecom/suites/{name}/corps/{corpid}/jssdk/signature {"url", "type"?}`: the values
/// for `wx.config` (or, with `agent_jsapi`, `wx.agentConfig`) of a page of the corp's, signed
/// as the JS-SDK signs; `appId` is the corpid, as WeCom requires.
pub async fn corp_jssdk_signature(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (_, suite, parsed): (_, _, SignatureRequest) =
        suite_and_json(&state, &req, payload, SIGNATURE_HINT).await?;
    let kind = match parsed.kind.as_deref() {
        None => TicketKind::CorpJsapi,
        Some(t) => {
            TicketKind::parse_wecom(t).ok_or_else(|| ApiError::BadRequest(SIGNATURE_HINT.into()))?
        }
    };
    let url = crate::jssdk::signed_url(&parsed.url)
        .map_err(|why| ApiError::BadRequest(why.to_string()))?;
    let corpid = param(&req, "corpid");
    let ticket = corp_ticket_record(&state, &suite, &corpid, kind).await?;
    Ok(super::tickets::signature_answer(&ticket, corpid, url))
}
