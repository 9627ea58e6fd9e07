//! The Open Platform's WeChat-compatible facade: `POST /cgi-bin/component/api_component_token`,
//! `api_authorizer_token` and `api_query_auth` in WeChat's own format, so an SDK's component
//! client only changes its API base URL.
//!
//! - `api_component_token`: the `component_appsecret` a client sends is a wxtoken client key
//!   allowed to use the platform (found by `component_appid`), never the real secret. The
//!   answer is the shared component token; the `component_verify_ticket` in the body is
//!   ignored (wxtoken has its own, pushed to its event URL), and nothing here calls WeChat.
//! - `api_authorizer_token`: authorized by the `component_access_token` (or `access_token`)
//!   query parameter being a component token wxtoken handed out: the current one, or the one
//!   before it while it is valid. The answer is wxtoken's shared token for the authorizer, and
//!   [`PLACEHOLDER_REFRESH_TOKEN`] in place of the real refresh token, which never leaves wxtoken.
//!   The `authorizer_refresh_token` in the body is ignored (an SDK sends back the placeholder).
//! - `api_query_auth`: authorized the same way; wxtoken exchanges the code itself (once per
//!   code, whichever way it arrives) and answers with the account's shared token and the
//!   placeholder.
//!
//! Errors are WeChat's `{"errcode","errmsg"}` with HTTP 200:
//! 41002/41004 a field missing, 40125 unknown client key, 61011 unknown component appid,
//! 40164 client not allowed to use the platform, 40001 unknown component token, 42001 the
//! previous component token after its expiry, 61003 authorizer unknown to the platform or
//! revoked, 61023 authorizer needing a new authorization (its refresh token was refused),
//! 47001 a body that is not a JSON object, -1 no valid token right now (SDKs retry it).

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::wechat::wx_refusal as wx_error;
use super::{body, read_body, ApiError, ServerState};
use crate::platform::{AuthorizerRefusal, AuthorizerUnavailable, ComponentTokenCheck, Platform};
use crate::secret::AccessToken;
use crate::token::TokenRecord;

/// What the facade answers as `authorizer_refresh_token`: an SDK stores it and sends it back,
/// and the facade ignores it. The real refresh token stays inside wxtoken.
pub use crate::platform::PLACEHOLDER_REFRESH_TOKEN;

/// "System busy": no valid token could be had in time; SDKs retry it.
pub(super) fn busy(errcode: Option<i64>) -> HttpResponse {
    wx_error(
        -1,
        &match errcode {
            Some(c) => format!("system error: no valid token (upstream errcode {c})"),
            None => "system error: no valid token".to_string(),
        },
    )
}

fn platform_by_appid(state: &ServerState, appid: &str) -> Option<Arc<Platform>> {
    state
        .platforms
        .values()
        .find(|p| p.component_appid() == appid)
        .cloned()
}

/// The JSON object of the body, or the answer to give instead (47001, or a 408 for a body that
/// never arrived, as the app facade does).
pub(super) async fn read_object<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, HttpResponse> {
    let body = match read_body(req, payload).await {
        Ok(b) => b,
        Err(e @ ApiError::RequestTimeout(_)) => return Err(super::wechat::wx_request_timeout(&e)),
        Err(_) => return Err(wx_error(47001, "data format error")),
    };
    body::json_object::<T>(&body).ok_or_else(|| wx_error(47001, "data format error"))
}

pub(super) fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

#[derive(Deserialize)]
struct ComponentTokenBody {
    component_appid: Option<String>,
    component_appsecret: Option<String>,
    /// Accepted and ignored: wxtoken mints with the ticket pushed to its own event URL.
    #[serde(default)]
    #[allow(dead_code)]
    component_verify_ticket: Option<serde_json::Value>,
}

/// `POST /cgi-bin/component/api_component_token`
pub async fn component_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let b: ComponentTokenBody = match read_object(&req, payload).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let Some(appid) = non_empty(b.component_appid) else {
        return wx_error(41002, "component_appid missing");
    };
    let Some(key) = non_empty(b.component_appsecret) else {
        return wx_error(41004, "component_appsecret missing");
    };
    let client = match state.clients.load().by_key(&key, &req) {
        Ok(client) => client,
        Err(refused) => {
            return super::wechat::wx_key_refusal(
                refused,
                "invalid component_appsecret (use a wxtoken client key)",
            )
        }
    };
    let Some(platform) = platform_by_appid(&state, &appid) else {
        return wx_error(61011, "invalid component");
    };
    if !client.may_use_platform(platform.name()) {
        return wx_error(40164, "this client may not use this platform");
    }
    let record = match platform.current_component_token(state.wait_limit).await {
        Ok(r) => r,
        Err(u) => return busy(u.errcode()),
    };
    state
        .audit
        .read(&client.name, &platform.label(), &record.token);
    let expires_in = record.remaining(SystemTime::now()).as_secs();
    HttpResponse::Ok()
        .insert_header(super::cache_control(expires_in))
        .json(json!({
            "component_access_token": record.token.expose(),
            "expires_in": expires_in,
        }))
}

#[derive(Deserialize, Default)]
struct TokenQuery {
    component_access_token: Option<String>,
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct AuthorizerTokenBody {
    component_appid: Option<String>,
    authorizer_appid: Option<String>,
    /// Accepted and ignored: the facade handed out only the placeholder.
    #[serde(default)]
    #[allow(dead_code)]
    authorizer_refresh_token: Option<serde_json::Value>,
}

fn refusal_answer(r: AuthorizerRefusal) -> HttpResponse {
    match r {
        AuthorizerRefusal::Unknown => wx_error(
            61003,
            "component is not authorized by this account (unknown authorizer)",
        ),
        AuthorizerRefusal::Revoked => wx_error(
            61003,
            "component is not authorized by this account (authorization revoked)",
        ),
        AuthorizerRefusal::NeedsReauth | AuthorizerRefusal::NoRefreshToken => wx_error(
            61023,
            "refresh_token is invalid: the account must authorize the platform again",
        ),
    }
}

fn authorizer_answer(rec: &TokenRecord) -> HttpResponse {
    let expires_in = rec.remaining(SystemTime::now()).as_secs();
    HttpResponse::Ok()
        .insert_header(super::cache_control(expires_in))
        .json(json!({
            "authorizer_access_token": rec.token.expose(),
            "expires_in": expires_in,
            "authorizer_refresh_token": PLACEHOLDER_REFRESH_TOKEN,
        }))
}

/// The component token a component call presents, under either name; else 41001.
// The error is the answer itself, made at most once per call: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn presented_token(req: &HttpRequest) -> Result<String, HttpResponse> {
    let q = web::Query::<TokenQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    non_empty(q.component_access_token)
        .or(non_empty(q.access_token))
        .ok_or_else(|| wx_error(41001, "access_token missing"))
}

/// The platform a component call is for: `component_appid` names one and `presented` is a
/// component token wxtoken handed out for it; else WeChat's answer.
#[allow(clippy::result_large_err)]
fn platform_for(
    state: &ServerState,
    presented: &str,
    component_appid: Option<String>,
) -> Result<Arc<Platform>, HttpResponse> {
    let Some(component_appid) = non_empty(component_appid) else {
        return Err(wx_error(41002, "component_appid missing"));
    };
    let not_ours = || {
        wx_error(
            40001,
            "invalid credential, access_token is invalid or not latest",
        )
    };
    // Unknown component and unknown token answer alike: the token is the credential here.
    let platform = platform_by_appid(state, &component_appid).ok_or_else(not_ours)?;
    match platform.check_component_token(presented, SystemTime::now()) {
        ComponentTokenCheck::Known => Ok(platform),
        ComponentTokenCheck::Expired => Err(wx_error(42001, "access_token expired")),
        ComponentTokenCheck::Unknown => Err(not_ours()),
    }
}

/// The shared token of an account authorized to `platform`, fetched if need be; else WeChat's
/// answer (61003, 61023, or -1 when none could be had in time).
async fn authorizer_record(
    state: &ServerState,
    platform: &Platform,
    appid: &str,
) -> Result<Arc<TokenRecord>, HttpResponse> {
    platform
        .authorizer_token(appid, state.wait_limit)
        .await
        .map_err(|e| match e {
            AuthorizerUnavailable::Refused(r) => refusal_answer(r),
            AuthorizerUnavailable::Unavailable(u) => busy(u.errcode()),
        })
}

/// A component call's body, and the platform it is for (see [`platform_for`], given the
/// `component_appid` that `appid_of` takes from the body); else the answer to give instead.
async fn component_call<B: serde::de::DeserializeOwned>(
    state: &ServerState,
    req: &HttpRequest,
    payload: web::Payload,
    appid_of: fn(&mut B) -> Option<String>,
) -> Result<(Arc<Platform>, B), HttpResponse> {
    let presented = presented_token(req)?;
    let mut b: B = read_object(req, payload).await?;
    let platform = platform_for(state, &presented, appid_of(&mut b))?;
    Ok((platform, b))
}

/// `POST /cgi-bin/component/api_authorizer_token?component_access_token=..` (or `access_token=`)
pub async fn authorizer_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (platform, b) =
        match component_call(&state, &req, payload, |b: &mut AuthorizerTokenBody| {
            b.component_appid.take()
        })
        .await
        {
            Ok(call) => call,
            Err(answer) => return answer,
        };
    let Some(appid) = non_empty(b.authorizer_appid) else {
        return wx_error(41002, "authorizer_appid missing");
    };
    match authorizer_record(&state, &platform, &appid).await {
        Ok(rec) => {
            read_with_component_token(&state, &platform, &appid, &rec);
            authorizer_answer(&rec)
        }
        Err(answer) => answer,
    }
}

/// Counts a read of `appid`'s token in the audit roll-up under the component token's holder:
/// the call names no client, only the token `api_component_token` handed to one.
fn read_with_component_token(
    state: &ServerState,
    platform: &Platform,
    appid: &str,
    rec: &TokenRecord,
) {
    let label = super::platforms::authorizer_label(platform, appid);
    state
        .audit
        .read(super::trail::COMPONENT_TOKEN_HOLDER, &label, &rec.token);
}

#[derive(Deserialize)]
struct QueryAuthBody {
    component_appid: Option<String>,
    authorization_code: Option<String>,
}

/// `POST /cgi-bin/component/api_query_auth?component_access_token=..` (or `access_token=`):
/// wxtoken exchanges the code itself (once: the same code arriving from the `authorized` push
/// finds this exchange, and the other way round) and answers with the account's shared token,
/// its permission sets, and the placeholder for the refresh token it keeps.
pub async fn query_auth(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (platform, b) = match component_call(&state, &req, payload, |b: &mut QueryAuthBody| {
        b.component_appid.take()
    })
    .await
    {
        Ok(call) => call,
        Err(answer) => return answer,
    };
    let Some(code) = non_empty(b.authorization_code) else {
        return wx_error(41002, "authorization_code missing");
    };
    if !crate::secret::plausible_credential(&code) {
        return wx_error(61009, "code is invalid");
    }
    let appid = match platform.authorize_code(&AccessToken::new(code)).await {
        Ok(appid) => appid,
        Err(e) => {
            return match e.errcode() {
                Some(61009) => wx_error(61009, "code is invalid"),
                Some(61010) => wx_error(61010, "code is expired"),
                errcode => busy(errcode),
            }
        }
    };
    let rec = match authorizer_record(&state, &platform, &appid).await {
        Ok(rec) => rec,
        Err(answer) => return answer,
    };
    read_with_component_token(&state, &platform, &appid, &rec);
    let func_info: Vec<serde_json::Value> = platform
        .authorizer(&appid)
        .map(|a| a.func_ids)
        .unwrap_or_default()
        .into_iter()
        .map(|id| json!({ "funcscope_category": { "id": id } }))
        .collect();
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "authorization_info": {
                "authorizer_appid": appid,
                "authorizer_access_token": rec.token.expose(),
                "expires_in": rec.remaining(SystemTime::now()).as_secs(),
                "authorizer_refresh_token": PLACEHOLDER_REFRESH_TOKEN,
                "func_info": func_info,
            }
        }))
}
