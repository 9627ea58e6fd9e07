//! The Open Platform's WeChat-compatible facade: `POST /cgi-bin/component/api_component_token`
//! and `POST /cgi-bin/component/api_authorizer_token` in WeChat's own format, so an SDK's
//! component client only changes its API base URL.
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

use super::{body, read_body, ApiError, ServerState, ACTOR_GRACE};
use crate::platform::runtime::{AuthorizerRefusal, ComponentTokenCheck, PlatformShared};
use crate::token::messages::Get;
use crate::token::TokenRecord;

/// What the facade answers as `authorizer_refresh_token`: an SDK stores it and sends it back,
/// and the facade ignores it. The real refresh token stays inside wxtoken.
pub const PLACEHOLDER_REFRESH_TOKEN: &str = "wxtoken-facade-placeholder-refresh-token";

fn wx_error(errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({ "errcode": errcode, "errmsg": errmsg }))
}

/// "System busy": no valid token could be had in time; SDKs retry it.
fn busy(errcode: Option<i64>) -> HttpResponse {
    wx_error(
        -1,
        &match errcode {
            Some(c) => format!("system error: no valid token (upstream errcode {c})"),
            None => "system error: no valid token".to_string(),
        },
    )
}

fn platform_by_appid(state: &ServerState, appid: &str) -> Option<Arc<PlatformShared>> {
    state
        .platforms
        .values()
        .find(|p| p.settings.component_appid == appid)
        .cloned()
}

/// The JSON object of the body, or the answer to give instead (47001, or a 408 for a body that
/// never arrived, as the app facade does).
async fn read_object<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, HttpResponse> {
    let body = match read_body(req, payload).await {
        Ok(b) => b,
        Err(e @ ApiError::RequestTimeout(_)) => {
            return Err(actix_web::ResponseError::error_response(&e))
        }
        Err(_) => return Err(wx_error(47001, "data format error")),
    };
    body::json_object::<T>(&body).ok_or_else(|| wx_error(47001, "data format error"))
}

fn non_empty(v: Option<String>) -> Option<String> {
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
    let Some(client) = state.clients.load().by_key(&key) else {
        return wx_error(
            40125,
            "invalid component_appsecret (use a wxtoken client key)",
        );
    };
    let Some(platform) = platform_by_appid(&state, &appid) else {
        return wx_error(61011, "invalid component");
    };
    if !client.may_use_platform(platform.name()) {
        return wx_error(40164, "this client may not use this platform");
    }
    let record = match platform.component_token(SystemTime::now()) {
        Some(r) => r,
        None => match platform
            .component_actor()
            .send(Get)
            .timeout(state.wait_limit + ACTOR_GRACE)
            .await
        {
            Ok(Ok(r)) => {
                platform.note_component_token(&r);
                r
            }
            Ok(Err(e)) => return busy(e.last_failure.and_then(|f| f.errcode)),
            Err(_) => return busy(None),
        },
    };
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

/// `POST /cgi-bin/component/api_authorizer_token?component_access_token=..` (or `access_token=`)
pub async fn authorizer_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let q = web::Query::<TokenQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let Some(presented) = non_empty(q.component_access_token).or(non_empty(q.access_token)) else {
        return wx_error(41001, "access_token missing");
    };
    let b: AuthorizerTokenBody = match read_object(&req, payload).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let Some(component_appid) = non_empty(b.component_appid) else {
        return wx_error(41002, "component_appid missing");
    };
    let Some(appid) = non_empty(b.authorizer_appid) else {
        return wx_error(41002, "authorizer_appid missing");
    };
    // Unknown component and unknown token answer alike: the token is the credential here.
    let Some(platform) = platform_by_appid(&state, &component_appid) else {
        return wx_error(
            40001,
            "invalid credential, access_token is invalid or not latest",
        );
    };
    match platform.check_component_token(&presented, SystemTime::now()) {
        ComponentTokenCheck::Known => {}
        ComponentTokenCheck::Expired => return wx_error(42001, "access_token expired"),
        ComponentTokenCheck::Unknown => {
            return wx_error(
                40001,
                "invalid credential, access_token is invalid or not latest",
            )
        }
    }
    let handle = match platform.authorizer_actor(&appid) {
        Ok(h) => h,
        Err(r) => return refusal_answer(r),
    };
    if let Some(rec) = handle.status.load().valid_token(SystemTime::now()) {
        return authorizer_answer(rec);
    }
    match handle
        .addr
        .send(Get)
        .timeout(state.wait_limit + ACTOR_GRACE)
        .await
    {
        Ok(Ok(rec)) => authorizer_answer(&rec),
        // The fetch may have found the account gone or in need of a new authorization.
        Ok(Err(e)) => match platform.authorizer_actor(&appid) {
            Err(r) => refusal_answer(r),
            Ok(_) => busy(e.last_failure.and_then(|f| f.errcode)),
        },
        Err(_) => busy(None),
    }
}
