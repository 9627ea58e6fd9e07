//! WeCom's service-provider facade: `POST /cgi-bin/service/get_suite_token`, `get_corp_token`
//! and `get_provider_token` in WeCom's own format, so an SDK's suite client (WxJava's
//! `WxCpTpServiceImpl`, EasyWeChat's OpenWork) only changes its API base URL. Nothing here calls
//! WeCom: every answer comes from the tokens wxtoken keeps.
//!
//! - `get_suite_token`: the `suite_secret` is a wxtoken client key allowed to use the suite
//!   (found by `suite_id`), never the real secret; the `suite_ticket` is ignored (wxtoken has
//!   its own, pushed to its callback URL).
//! - `get_corp_token`: authorized by the `suite_access_token` query parameter being a suite
//!   token wxtoken handed out for a suite (the current one or the one before). The
//!   `permanent_code` in the body is ignored: wxtoken uses the one it holds, which never leaves.
//! - `get_provider_token`: the `provider_secret` is a client key allowed to use the provider
//!   (found by `corpid`).
//! - `get_permanent_code` (v1 and v2) is answered with a refusal, never forwarded: the AuthCode
//!   of an install is exchanged by wxtoken when WeCom pushes it, and the code is kept inside.
//!
//! Errors are WeCom's `{"errcode","errmsg"}` with HTTP 200: 41002/41004 a field missing, 40001
//! an unknown client key (WeCom's "invalid secret"), 40083 an unknown suite id, 40013 an unknown
//! corpid (or a corp that has not installed the suite, or uninstalled it), 48002 a client not
//! allowed to use the suite or provider, 40082 a suite token wxtoken did not issue, 42009 the
//! previous one past its expiry, 40084 a corp whose permanent code WeCom refused, 47001 a body
//! that is not a JSON object, -1 no valid token right now (SDKs retry it).

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::component_facade::{busy, non_empty, read_object};
use super::wechat::wx_refusal as wx_error;
use super::ServerState;
use crate::config::ClientSettings;
use crate::token::index::TokenOwner;
use crate::token::TokenRecord;
use crate::wecom::{CorpRefusal, CorpUnavailable, Provider, Suite};

/// WeCom's "invalid secret": the client key does not name a client.
const BAD_SECRET: i64 = 40001;
/// WeCom's "API forbidden": the client may not use this suite or provider.
const FORBIDDEN: i64 = 48002;

/// A token answer in WeCom's field names: `errcode` 0, the token under `field`, `expires_in`.
fn token_answer(field: &str, rec: &TokenRecord) -> HttpResponse {
    let expires_in = rec.remaining(SystemTime::now()).as_secs();
    HttpResponse::Ok()
        .insert_header(super::cache_control(expires_in))
        .json(json!({
            "errcode": 0,
            "errmsg": "ok",
            field: rec.token.expose(),
            "expires_in": expires_in,
        }))
}

/// The client whose key stands in for a secret; else WeCom's answer (40001, or 45009 over
/// its rate, as the app facade answers).
#[allow(clippy::result_large_err)]
fn client_of(
    state: &ServerState,
    req: &HttpRequest,
    key: Option<String>,
    field: &str,
) -> Result<Arc<ClientSettings>, HttpResponse> {
    let Some(key) = non_empty(key) else {
        return Err(wx_error(41004, &format!("{field} missing")));
    };
    state.clients.load().by_key(&key, req).map_err(|refused| {
        super::wechat::wx_key_refusal_as(
            refused,
            BAD_SECRET,
            &format!("invalid {field} (use a wxtoken client key)"),
        )
    })
}

/// A call that names its credential by `id` and carries a client key in `key` (both taken from
/// the body by `fields`): the id and the client; else WeCom's answer.
async fn keyed_call<B: serde::de::DeserializeOwned>(
    state: &ServerState,
    req: &HttpRequest,
    payload: web::Payload,
    names: (&str, &str),
    fields: fn(B) -> (Option<String>, Option<String>),
) -> Result<(String, Arc<ClientSettings>), HttpResponse> {
    let (id_name, key_name) = names;
    let (id, key) = fields(read_object(req, payload).await?);
    let id = non_empty(id).ok_or_else(|| wx_error(41002, &format!("{id_name} missing")))?;
    Ok((id, client_of(state, req, key, key_name)?))
}

/// The answer of a token read by `client`: recorded in the audit trail, in WeCom's names.
fn read_answer(
    state: &ServerState,
    client: &ClientSettings,
    label: &str,
    field: &str,
    read: Result<Arc<TokenRecord>, crate::token::Unavailable>,
) -> HttpResponse {
    match read {
        Ok(rec) => {
            state.audit.read(&client.name, label, &rec.token);
            token_answer(field, &rec)
        }
        Err(u) => busy(u.errcode()),
    }
}

#[derive(Deserialize)]
struct SuiteTokenBody {
    suite_id: Option<String>,
    suite_secret: Option<String>,
    /// Accepted and ignored: wxtoken mints with the ticket pushed to its own callback URL.
    #[serde(default)]
    #[allow(dead_code)]
    suite_ticket: Option<serde_json::Value>,
}

/// `POST /cgi-bin/service/get_suite_token`
pub async fn suite_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (suite_id, client) = match keyed_call(
        &state,
        &req,
        payload,
        ("suite_id", "suite_secret"),
        |b: SuiteTokenBody| (b.suite_id, b.suite_secret),
    )
    .await
    {
        Ok(call) => call,
        Err(answer) => return answer,
    };
    let Some(suite) = state
        .wecom_suites
        .values()
        .find(|s| s.suite_id() == suite_id)
        .cloned()
    else {
        return wx_error(40083, "invalid suite_id");
    };
    if !client.may_use_wecom_suite(suite.name()) {
        return wx_error(
            FORBIDDEN,
            "api forbidden: this client may not use this suite",
        );
    }
    let read = suite.current_suite_token(state.wait_limit).await;
    read_answer(&state, &client, &suite.label(), "suite_access_token", read)
}

#[derive(Deserialize, Default)]
struct SuiteTokenQuery {
    suite_access_token: Option<String>,
}

/// The suite whose token `presented` is, as the index knows it; else WeCom's 40082 (not one
/// wxtoken issued) or 42009 (the previous one past its expiry).
#[allow(clippy::result_large_err)]
pub(crate) fn suite_of_token(
    state: &ServerState,
    presented: &str,
) -> Result<Arc<Suite>, HttpResponse> {
    let not_ours = || wx_error(40082, "invalid suite_access_token");
    let found = state.tokens.lookup(presented).ok_or_else(not_ours)?;
    let TokenOwner::WecomSuite(name) = &*found.owner else {
        return Err(not_ours());
    };
    let suite = state.wecom_suites.get(name).cloned().ok_or_else(not_ours)?;
    if found.record.remaining(SystemTime::now()).is_zero() {
        return Err(wx_error(42009, "suite_access_token expired"));
    }
    Ok(suite)
}

#[derive(Deserialize)]
struct CorpTokenBody {
    auth_corpid: Option<String>,
    /// Accepted and ignored: wxtoken uses the permanent code it holds.
    #[serde(default)]
    #[allow(dead_code)]
    permanent_code: Option<serde_json::Value>,
}

fn corp_refusal(r: CorpRefusal) -> HttpResponse {
    match r {
        CorpRefusal::Unknown => wx_error(
            40013,
            "invalid corpid: the corp has not installed the suite",
        ),
        CorpRefusal::Revoked => wx_error(40013, "invalid corpid: the corp uninstalled the suite"),
        CorpRefusal::NeedsReauth => wx_error(
            40084,
            "invalid permanent_code: the corp must install the suite again",
        ),
    }
}

/// `POST /cgi-bin/service/get_corp_token?suite_access_token=..`
pub async fn corp_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let q = web::Query::<SuiteTokenQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let Some(presented) = non_empty(q.suite_access_token) else {
        return wx_error(41022, "suite_access_token missing");
    };
    // The token before the body: a made-up token costs no read.
    let suite = match suite_of_token(&state, &presented) {
        Ok(s) => s,
        Err(answer) => return super::body::answer_unread(answer, payload),
    };
    let b: CorpTokenBody = match read_object(&req, payload).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let Some(corpid) = non_empty(b.auth_corpid) else {
        return wx_error(41002, "auth_corpid missing");
    };
    match suite.corp_token(&corpid, state.wait_limit).await {
        Ok(rec) => {
            // The call names no client, only the suite token one was handed.
            let label = super::wecom::corp_label(&suite, &corpid);
            state
                .audit
                .read(super::trail::SUITE_TOKEN_HOLDER, &label, &rec.token);
            token_answer("access_token", &rec)
        }
        Err(CorpUnavailable::Refused(r)) => corp_refusal(r),
        Err(CorpUnavailable::Unavailable(u)) => busy(u.errcode()),
    }
}

#[derive(Deserialize)]
struct ProviderTokenBody {
    corpid: Option<String>,
    provider_secret: Option<String>,
}

fn provider_by_corpid(state: &ServerState, corpid: &str) -> Option<Arc<Provider>> {
    state
        .wecom_providers
        .values()
        .find(|p| p.corpid() == corpid)
        .cloned()
}

/// `POST /cgi-bin/service/get_provider_token`
pub async fn provider_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (corpid, client) = match keyed_call(
        &state,
        &req,
        payload,
        ("corpid", "provider_secret"),
        |b: ProviderTokenBody| (b.corpid, b.provider_secret),
    )
    .await
    {
        Ok(call) => call,
        Err(answer) => return answer,
    };
    let Some(provider) = provider_by_corpid(&state, &corpid) else {
        return wx_error(40013, "invalid corpid");
    };
    if !client.may_use_wecom_provider(provider.name()) {
        return wx_error(
            FORBIDDEN,
            "api forbidden: this client may not use this provider",
        );
    }
    match provider.token(state.wait_limit).await {
        Ok(rec) => {
            state
                .audit
                .read(&client.name, &provider.label(), &rec.token);
            token_answer("provider_access_token", &rec)
        }
        Err(u) => busy(u.errcode()),
    }
}

/// The refusal of `get_permanent_code` in any spelling: wxtoken exchanges every AuthCode
/// itself and keeps the permanent codes.
pub(crate) const PERMANENT_CODE_REFUSAL: &str =
    "api forbidden: wxtoken exchanges AuthCodes itself and holds the permanent codes; read a \
     corp's token with get_corp_token (or GET /v1/wecom/suites/{name}/corps/{corpid}/token)";

/// `POST /cgi-bin/service/get_permanent_code` and `/cgi-bin/service/v2/get_permanent_code`.
pub async fn permanent_code(payload: web::Payload) -> HttpResponse {
    super::body::answer_unread(wx_error(FORBIDDEN, PERMANENT_CODE_REFUSAL), payload)
}
