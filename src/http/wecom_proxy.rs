//! The gateway's proxy route for WeCom corps: `ANY /v1/wecom/suites/{name}/corps/{corpid}/proxy/
//! {path}`, for business servers that never hold a corp's token. The client key (401), the suite
//! (404), the client's `wecom_suites` (403), `proxy = true` (403), then the corp (404 unknown,
//! 410 uninstalled, 409 to install again); wxtoken adds the corp's current token and forwards the
//! call to `[upstream] wecom_base_url`, retrying once on a rejected token, as the other proxy
//! routes do.

use actix_web::{web, HttpRequest, HttpResponse};

use super::proxy_routes::{
    checked_path, not_for_accounts, proxy_step, require_proxy_flag, with_token, Proxied,
};
use super::wecom::{authorize_suite, refusal};
use super::{ApiError, ServerState};
use crate::proxy::path::Class;

/// `ANY /v1/wecom/suites/{name}/corps/{corpid}/proxy/{path}`
pub async fn corp_proxy(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let checked = routed(&state, &req).await;
    proxy_step(&state, &req, payload, checked).await
}

async fn routed(state: &ServerState, req: &HttpRequest) -> Result<Proxied, ApiError> {
    let (client, suite) = authorize_suite(state, req)?;
    require_proxy_flag(&client)?;
    // The path first: a call refused by its path starts no corp actor and reads no store.
    let checked = checked_path(state, req)?;
    if matches!(checked.class, Class::Secret | Class::Ticket) {
        return Err(not_for_accounts(&checked));
    }
    let corpid = req.match_info().get("corpid").unwrap_or_default();
    let credential = suite
        .corp_actor_or_reload(corpid)
        .await
        .map_err(|r| refusal(&suite, corpid, r))?;
    let target = super::wecom_gateway::corp_target_of(&suite, credential);
    Ok(Proxied::Forward(with_token(req, &checked, target, false)))
}
