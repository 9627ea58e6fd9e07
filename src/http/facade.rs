//! A WeChat-compatible facade: `GET /cgi-bin/token` and `POST /cgi-bin/stable_token` in
//! WeChat's own format, so existing SDKs only change their API base URL.
//!
//! The `secret` such a client sends is a wxtoken client key, never the real AppSecret. The
//! client gets the shared token and can never cause a rotation (`force_refresh` is ignored).
//! Errors come as WeChat's `{"errcode","errmsg"}` with HTTP 200, as WeChat answers them.

use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::wechat::wx_refusal as wx_error;
use super::{body, read_body, ApiError, ServerState};

#[derive(Deserialize, Default)]
pub struct TokenQuery {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
}

/// The token for `appid`, if the client key `secret` may read it.
async fn token_for(state: &ServerState, req: &HttpRequest, q: TokenQuery) -> HttpResponse {
    if q.grant_type.as_deref() != Some("client_credential") {
        return wx_error(40002, "invalid grant_type");
    }
    let Some(appid) = q.appid.filter(|a| !a.is_empty()) else {
        return wx_error(41002, "appid missing");
    };
    let Some(key) = q.secret.filter(|s| !s.is_empty()) else {
        return wx_error(41004, "appsecret missing");
    };
    let client = match state.clients.load().by_key(&key, req) {
        Ok(client) => client,
        Err(refused) => {
            return super::wechat::wx_key_refusal(
                refused,
                "invalid appsecret (use a wxtoken client key)",
            )
        }
    };
    let apps = state.apps.load();
    let Some(app) = apps.by_appid(&appid).cloned() else {
        return wx_error(40013, "invalid appid");
    };
    if !client.apps.allows(&app.name) {
        return wx_error(40164, "this client may not read this app");
    }
    let record = app.current(state.wait_limit).await.map_err(|u| u.errcode());
    match record {
        Ok(r) => {
            let expires_in = r.remaining(SystemTime::now()).as_secs();
            HttpResponse::Ok()
                .insert_header(super::cache_control(expires_in))
                .json(json!({ "access_token": r.token.expose(), "expires_in": expires_in }))
        }
        // WeChat's "system busy": SDKs retry it.
        Err(code) => wx_error(
            -1,
            &match code {
                Some(c) => format!("system error: no valid token (upstream errcode {c})"),
                None => "system error: no valid token".to_string(),
            },
        ),
    }
}

/// `GET /cgi-bin/token?grant_type=client_credential&appid=APPID&secret=CLIENT_KEY`
pub async fn token(state: web::Data<ServerState>, req: HttpRequest) -> HttpResponse {
    let q = web::Query::<TokenQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    token_for(&state, &req, q).await
}

#[derive(Deserialize)]
struct StableBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    /// Accepted and ignored: a facade client never rotates the shared token.
    #[serde(default)]
    #[allow(dead_code)]
    force_refresh: Option<bool>,
}

/// `POST /cgi-bin/stable_token` with WeChat's JSON body.
///
/// A body that is not a JSON object, or too large, is WeChat's 47001. A body that does not arrive
/// in time is the one answer not in WeChat's format: a 408 (and a closed connection), because the
/// client never finished its request and no SDK waits for an answer to it.
pub async fn stable_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let body = match read_body(&req, payload).await {
        Ok(b) => b,
        Err(e @ ApiError::RequestTimeout(_)) => return super::wechat::wx_request_timeout(&e),
        Err(_) => return wx_error(47001, "data format error"),
    };
    let Some(b) = body::json_object::<StableBody>(&body) else {
        return wx_error(47001, "data format error");
    };
    token_for(
        &state,
        &req,
        TokenQuery {
            grant_type: b.grant_type,
            appid: b.appid,
            secret: b.secret,
        },
    )
    .await
}
