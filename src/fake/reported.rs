//! What tests of reported tokens need from the fake, kept in one place:
//!
//! - `POST /cgi-bin/openapi/quota/get?access_token=T` (getApiQuota) with `{"cgi_path": ...}`:
//!   the call that tells whether a component token still works, since `get_api_domain_ip`
//!   is an account's call. A component API's `cgi_path` takes the component token, any other
//!   an account's token; the wrong one is 76022, as WeChat answers. Counted as a probe.
//! - `/cgi-bin/fake/reject_token`: a business path that answers 40001 to any token, valid or
//!   not, as WeChat does to a valid token sent in a parameter of another kind (an app token as
//!   `component_access_token`). A gateway forwards it like any `/cgi-bin/` call.
//! - `POST /_fake/kill_token` `{"token": "..."}` and [`FakeWechat::kill_token`]: a token dies
//!   now, as when something fetches behind wxtoken's back, without anything being minted.

use actix_web::http::Method;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::routes::{bad_request, json_body, lock, query_params, wechat_json, wx_error, Shared};
use super::state::{present, Family, WxError};
use super::{Endpoint, FakeWechat};

/// getApiQuota's answer when the token belongs to another kind of account than the API.
const NO_PERMISSION: WxError = WxError(76022);

/// The quota getApiQuota reports. The fake keeps no per-API counts; one user's getApiQuota
/// showed 10,000 a day for `api_component_token` (see `shared/open-platform.md`).
const REPORTED_DAILY_LIMIT: u64 = 10_000;

/// Calls to this module's endpoints.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReportedCalls {
    /// `POST /cgi-bin/openapi/quota/get`.
    quota_get: u64,
    /// `/cgi-bin/fake/reject_token`.
    reject_token: u64,
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/cgi-bin/openapi/quota/get", web::route().to(quota_get))
        .route("/cgi-bin/fake/reject_token", web::route().to(reject_token))
        .route("/_fake/kill_token", web::post().to(ctl_kill_token));
}

/// getApiQuota, answered by the rules of the probe (`FakeState::probe`) for the token, then
/// by whose API the `cgi_path` is. Like the probe, it takes no faults: tests break token
/// fetching and need an honest answer about the tokens.
async fn quota_get(
    req: HttpRequest,
    body: Result<Bytes, actix_web::Error>,
    state: web::Data<Shared>,
) -> HttpResponse {
    let mut s = lock(&state);
    s.count(Endpoint::Probe);
    s.reported.quota_get += 1;
    if req.method() != Method::POST {
        return wx_error(WxError::REQUIRE_POST);
    }
    let query = query_params(&req);
    let Some(token) = present(query.get("access_token").map(String::as_str)) else {
        return wx_error(WxError::TOKEN_MISSING);
    };
    if let (_, Err(err)) = s.probe(token) {
        return wx_error(err);
    }
    // Read as a JSON object, as WeChat reads it: `{"cgi_path": "/..."}`.
    let cgi_path = json_body::<serde_json::Value>(body)
        .and_then(|b| b.get("cgi_path")?.as_str().map(str::to_owned));
    let Some(cgi_path) = cgi_path.filter(|p| p.starts_with('/')) else {
        return wx_error(WxError::DATA_FORMAT);
    };
    let component_token = s
        .component_ref()
        .0
        .book()
        .get(token)
        .is_some_and(|r| r.family == Family::Component);
    if component_token != cgi_path.starts_with("/cgi-bin/component/") {
        return wx_error(NO_PERMISSION);
    }
    wechat_json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "quota": {
            "daily_limit": REPORTED_DAILY_LIMIT,
            "used": 0,
            "remain": REPORTED_DAILY_LIMIT,
        },
    }))
}

/// Always 40001 (41001 without a token): what a caller gets for a valid token sent where a
/// token of another kind was expected.
async fn reject_token(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    lock(&state).reported.reject_token += 1;
    let query = query_params(&req);
    let token = ["access_token", "component_access_token"]
        .iter()
        .find_map(|p| present(query.get(*p).map(String::as_str)));
    match token {
        Some(_) => wx_error(WxError::INVALID_CREDENTIAL),
        None => wx_error(WxError::TOKEN_MISSING),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillBody {
    token: String,
}

/// `POST /_fake/kill_token`: 204, or 404 for a token the fake does not know.
async fn ctl_kill_token(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    match serde_json::from_slice::<KillBody>(&body) {
        Ok(KillBody { token }) if lock(&state).kill_token(&token) => {
            HttpResponse::NoContent().finish()
        }
        Ok(_) => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such token\n"),
        Err(err) => bad_request(err.to_string()),
    }
}

/// Reported tokens, for tests in the same process.
impl FakeWechat {
    /// Kills `token` now, of whatever kind (app, stable, WeCom, component, authorizer), as a
    /// fetch behind wxtoken's back would: the probes answer it as dead and the next call of
    /// its token endpoint mints a new one. Nothing is minted. False for a token the fake does
    /// not know.
    pub fn kill_token(&self, token: &str) -> bool {
        self.lock().kill_token(token)
    }

    /// Calls of `/cgi-bin/fake/reject_token`.
    pub fn reject_token_calls(&self) -> u64 {
        self.lock().reported.reject_token
    }

    /// Calls of getApiQuota, the component token's probe (also counted in
    /// `calls(Endpoint::Probe)`, with those of `get_api_domain_ip`).
    pub fn quota_get_calls(&self) -> u64 {
        self.lock().reported.quota_get
    }
}
