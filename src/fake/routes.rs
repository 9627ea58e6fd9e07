//! The fake's HTTP face: WeChat's credential endpoints (tokens, the probe, JS-SDK tickets),
//! WeCom's gettoken, fault injection on the wire, and the `/_fake/*` control endpoints for
//! out-of-process users. The business endpoints are in `business`, the component API's in
//! `component`; both are wired in here.
//!
//! Deliberately no request-logging middleware: `/cgi-bin/token` and WeCom's `/cgi-bin/gettoken`
//! carry the secret in their query strings, and the project never logs secrets.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::state::{Credentials, FakeState, Issued, IssuedTicket, Platform, WxError};
use super::{Endpoint, Fault};

/// WeChat's own content type on its JSON answers (note the nonstandard `encoding` parameter:
/// clients must not insist on an exact `application/json`).
const WECHAT_JSON: &str = "application/json; encoding=utf-8";

pub(crate) type Shared = Mutex<FakeState>;

/// Locks the state. A panic while holding the lock cannot leave it half-updated in a way that
/// matters to a fake, so a poisoned lock is used as is rather than failing every later request.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, FakeState> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/cgi-bin/token", web::route().to(token))
        .route("/cgi-bin/stable_token", web::route().to(stable_token))
        .route("/cgi-bin/get_api_domain_ip", web::route().to(probe))
        .route("/cgi-bin/ticket/getticket", web::route().to(ticket))
        .route("/cgi-bin/gettoken", web::route().to(wecom_token))
        .route("/_fake/stats", web::get().to(stats))
        .route("/_fake/counters", web::get().to(counters))
        .route("/_fake/fault", web::post().to(inject_fault))
        .route("/_fake/clear", web::post().to(clear_faults))
        .route("/_fake/expires_in", web::post().to(set_expires_in))
        .route("/_fake/advance", web::post().to(advance_clock))
        .configure(super::component::configure)
        .configure(super::business::configure)
        .configure(super::reported::configure)
        .configure(super::wecom_suite::configure)
        .configure(super::wecom_suite_control::configure)
        .configure(super::wecom_business::configure)
        .default_service(web::to(not_found));
}

// ---- WeChat endpoints -----------------------------------------------------------------------

async fn token(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    let (_answering, faulted) = begin_call(&state, Endpoint::Token).await;
    if let Some(faulted) = faulted {
        return faulted;
    }
    if req.method() != Method::GET {
        return wx_error(WxError::REQUIRE_GET);
    }
    let query = query_params(&req);
    let creds = Credentials {
        grant_type: query.get("grant_type").map(String::as_str),
        appid: query.get("appid").map(String::as_str),
        secret: query.get("secret").map(String::as_str),
    };
    let result = lock(&state).token(creds);
    issued(result)
}

/// `/cgi-bin/ticket/getticket?access_token=TOKEN&type=jsapi|wx_card`. A credential endpoint
/// like the token ones, so injected faults apply here too.
async fn ticket(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    let (_answering, faulted) = begin_call(&state, Endpoint::Ticket).await;
    if let Some(faulted) = faulted {
        return faulted;
    }
    if req.method() != Method::GET {
        return wx_error(WxError::REQUIRE_GET);
    }
    let query = query_params(&req);
    let result = lock(&state).ticket(
        query.get("access_token").map(String::as_str),
        query.get("type").map(String::as_str),
    );
    match result {
        Ok(IssuedTicket { ticket, expires_in }) => wechat_json(json!({
            "errcode": 0,
            "errmsg": "ok",
            "ticket": ticket,
            "expires_in": expires_in,
        })),
        Err(err) => wx_error(err),
    }
}

/// WeCom's `/cgi-bin/gettoken?corpid=ID&corpsecret=SECRET`, served next to WeChat's endpoints
/// (the paths do not clash), so one fake stands for both hosts.
async fn wecom_token(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    let (_answering, faulted) = begin_call(&state, Endpoint::WecomToken).await;
    if let Some(faulted) = faulted {
        return faulted;
    }
    if req.method() != Method::GET {
        return platform_error(Platform::Wecom, WxError::REQUIRE_GET);
    }
    let query = query_params(&req);
    let result = lock(&state).wecom_token(
        query.get("corpid").map(String::as_str),
        query.get("corpsecret").map(String::as_str),
    );
    match result {
        Ok(Issued {
            access_token,
            expires_in,
        }) => wechat_json(json!({
            "errcode": 0,
            "errmsg": "ok",
            "access_token": access_token,
            "expires_in": expires_in,
        })),
        Err(err) => platform_error(Platform::Wecom, err),
    }
}

/// The JSON body of `/cgi-bin/stable_token`. Fields are optional here so that a missing one gets
/// WeChat's errcode for it rather than a generic format error.
#[derive(Deserialize)]
struct StableTokenBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    force_refresh: Option<bool>,
}

async fn stable_token(
    req: HttpRequest,
    body: Result<Bytes, actix_web::Error>,
    state: web::Data<Shared>,
) -> HttpResponse {
    let (_answering, faulted) = begin_call(&state, Endpoint::StableToken).await;
    if let Some(faulted) = faulted {
        return faulted;
    }
    let body: StableTokenBody = match post_json(&req, body) {
        Ok(body) => body,
        Err(err) => return wx_error(err),
    };
    let creds = Credentials {
        grant_type: body.grant_type.as_deref(),
        appid: body.appid.as_deref(),
        secret: body.secret.as_deref(),
    };
    let result = lock(&state).stable_token(creds, body.force_refresh.unwrap_or(false));
    issued(result)
}

/// `/cgi-bin/get_api_domain_ip`: the cheapest authenticated call, used to ask "is this token
/// still good?". WeCom serves the same path, so WeCom tokens are answered here too, in WeCom's
/// words. Faults never apply here: tests inject faults to break token fetching, and they need an
/// honest probe to check the outcome.
async fn probe(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    lock(&state).count(Endpoint::Probe);
    if req.method() != Method::GET {
        return wx_error(WxError::REQUIRE_GET);
    }
    let query = query_params(&req);
    let Some(token) = query.get("access_token").filter(|t| !t.is_empty()) else {
        return wx_error(WxError::TOKEN_MISSING);
    };
    let (platform, answer) = lock(&state).probe(token);
    match (answer, platform) {
        (Ok(()), Platform::Wechat) => wechat_json(json!({ "ip_list": ["127.0.0.1"] })),
        (Ok(()), Platform::Wecom) => wechat_json(json!({
            "errcode": 0,
            "errmsg": "ok",
            "ip_list": ["127.0.0.1"],
        })),
        (Err(err), platform) => platform_error(platform, err),
    }
}

/// Counts a token or ticket call as being answered until it is dropped, whether the handler
/// returns or the client goes away mid-answer.
pub(super) struct Answering<'a>(&'a Shared, Endpoint);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        lock(self.0).call_ended(self.1);
    }
}

/// Counts the call, waits out the answer delay, then applies the next injected fault, if any.
/// `Some` is the whole answer; `None` means "answer normally" (no fault, or a `Slow` one whose
/// delay has passed). The guard counts the call as in flight while the handler holds it.
pub(super) async fn begin_call(
    state: &Shared,
    ep: Endpoint,
) -> (Answering<'_>, Option<HttpResponse>) {
    let delay = {
        let mut s = lock(state);
        s.count(ep);
        s.call_began(ep);
        s.answer_delay
    };
    let answering = Answering(state, ep);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    (answering, injected_fault(state, ep).await)
}

/// Applies the next fault injected for a call to `ep`, if any: `Some` is the whole answer,
/// `None` means "answer normally" (no fault, or a `Slow` one whose delay has passed).
pub(super) async fn injected_fault(state: &Shared, ep: Endpoint) -> Option<HttpResponse> {
    let fault = lock(state).next_fault_for(ep)?;
    apply_fault(fault, ep).await
}

async fn apply_fault(fault: Fault, ep: Endpoint) -> Option<HttpResponse> {
    tracing::debug!(endpoint = ?ep, ?fault, "fake applying injected fault");
    let platform = match ep {
        Endpoint::WecomToken => Platform::Wecom,
        _ => Platform::Wechat,
    };
    match fault {
        Fault::Errcode(code) => Some(platform_error(platform, WxError(code))),
        Fault::Http(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Error");
            Some(
                HttpResponse::build(status)
                    .content_type("text/plain; charset=utf-8")
                    .body(format!("{} {reason}\n", status.as_u16())),
            )
        }
        Fault::NotJson => Some(
            HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(
                    "<html><head><title>502 Bad Gateway</title></head>\
                     <body><center><h1>502 Bad Gateway</h1></center></body></html>\n",
                ),
        ),
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        Fault::Drop => Some(aborted_connection()),
    }
}

/// An answer that never arrives: actix-web has no API to close a connection from a handler, so
/// this answers with a streaming body whose first chunk is an error. The HTTP/1 dispatcher then
/// abandons the connection before flushing anything (the response head it had encoded is
/// discarded with its buffer), and the client sees the connection close with no response at
/// all. actix-http logs the body error at error level; that line is expected for this fault.
fn aborted_connection() -> HttpResponse {
    let failing_body = futures_util::stream::iter([Err::<Bytes, _>(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "fake wechat: injected Drop fault",
    ))]);
    HttpResponse::Ok()
        .content_type(WECHAT_JSON)
        .streaming(failing_body)
}

// ---- control endpoints ----------------------------------------------------------------------

async fn stats(state: web::Data<Shared>) -> HttpResponse {
    let s = lock(&state);
    let by_appid = |counts: Vec<(String, u64)>| -> serde_json::Map<String, serde_json::Value> {
        counts
            .into_iter()
            .map(|(appid, n)| (appid, n.into()))
            .collect()
    };
    let mut body = counters_json(&s);
    body["minted"] = by_appid(s.minted_all()).into();
    body["tickets_minted"] = by_appid(s.tickets_minted_all()).into();
    HttpResponse::Ok().json(body)
}

/// The call counters without the per-app maps of `/_fake/stats`, which run to megabytes with
/// 100,000 apps: cheap enough to poll every second while a benchmark runs.
async fn counters(state: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(counters_json(&lock(&state)))
}

/// The call counters and the calls in flight: all of `/_fake/counters`, and the head of
/// `/_fake/stats`.
fn counters_json(s: &FakeState) -> serde_json::Value {
    let calls = s.calls();
    let mut body = json!({
        "calls": {
            "token": calls.token,
            "stable_token": calls.stable_token,
            "probe": calls.probe,
            "ticket": calls.ticket,
            "wecom_token": calls.wecom_token,
        },
        "in_flight": s.in_flight(),
        "peak_in_flight": s.peak_in_flight(),
    });
    // Only a fake that knows platforms reports their calls: the app-only shape stays as it was.
    if let Some(component_calls) = super::component::calls_json(s) {
        body["component_calls"] = component_calls;
    }
    if let Some(wecom_calls) = s.wecom_calls() {
        body["wecom_calls"] = wecom_calls;
    }
    body
}

/// `POST /_fake/fault` body: `{"kind": "...", <kind's parameter>, "times": N}` (times defaults
/// to 1), and optionally `"endpoint": "<name>"` (see [`Endpoint::name`]) to aim the fault at
/// that endpoint only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    kind: String,
    errcode: Option<i64>,
    status: Option<u16>,
    millis: Option<u64>,
    times: Option<u32>,
    endpoint: Option<String>,
}

impl FaultSpec {
    /// The endpoint the fault is aimed at, if any (the probe never takes faults).
    fn target(&self) -> Result<Option<Endpoint>, String> {
        let Some(name) = self.endpoint.as_deref() else {
            return Ok(None);
        };
        match Endpoint::parse(name) {
            Some(Endpoint::Probe) => Err("the probe never takes faults".into()),
            Some(ep) => Ok(Some(ep)),
            None => Err(format!("unknown endpoint {name:?}")),
        }
    }

    fn into_fault(self) -> Result<(Fault, u32), String> {
        let fault = match self.kind.as_str() {
            "errcode" => Fault::Errcode(self.errcode.ok_or("kind errcode needs \"errcode\"")?),
            "http" => {
                let status = self.status.ok_or("kind http needs \"status\"")?;
                if StatusCode::from_u16(status).is_err() {
                    return Err(format!("{status} is not an HTTP status"));
                }
                Fault::Http(status)
            }
            "not_json" => Fault::NotJson,
            "slow" => Fault::Slow(Duration::from_millis(
                self.millis.ok_or("kind slow needs \"millis\"")?,
            )),
            "drop" => Fault::Drop,
            other => {
                return Err(format!(
                    "unknown kind {other:?} (errcode, http, not_json, slow, drop)"
                ))
            }
        };
        Ok((fault, self.times.unwrap_or(1)))
    }
}

async fn inject_fault(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let spec = match serde_json::from_slice::<FaultSpec>(&body) {
        Ok(spec) => spec,
        Err(err) => return bad_request(err.to_string()),
    };
    let target = match spec.target() {
        Ok(target) => target,
        Err(msg) => return bad_request(msg),
    };
    match spec.into_fault() {
        Ok((fault, times)) => {
            let mut s = lock(&state);
            match target {
                Some(ep) => s.inject_at(ep, fault, times),
                None => s.inject(fault, times),
            }
            HttpResponse::NoContent().finish()
        }
        Err(msg) => bad_request(msg),
    }
}

async fn clear_faults(state: web::Data<Shared>) -> HttpResponse {
    lock(&state).clear_faults();
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Secs {
    secs: u64,
}

async fn set_expires_in(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    match serde_json::from_slice::<Secs>(&body) {
        Ok(Secs { secs }) => {
            lock(&state).set_expires_in(secs);
            HttpResponse::NoContent().finish()
        }
        Err(err) => bad_request(err.to_string()),
    }
}

async fn advance_clock(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    match serde_json::from_slice::<Secs>(&body) {
        Ok(Secs { secs }) => {
            lock(&state).advance(Duration::from_secs(secs));
            HttpResponse::NoContent().finish()
        }
        Err(err) => bad_request(err.to_string()),
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/html; charset=utf-8")
        .body("<html><body><h1>404 Not Found</h1></body></html>\n")
}

// ---- helpers --------------------------------------------------------------------------------

/// Query parameters; a malformed query string counts as an empty one, so the request gets the
/// errcode for its missing fields, as from WeChat, rather than a framework error page.
pub(super) fn query_params(req: &HttpRequest) -> HashMap<String, String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default()
}

/// A request's JSON body, or `None`: an unreadable or oversized body is as much a "data format
/// error" to WeChat as malformed JSON.
pub(super) fn json_body<T: DeserializeOwned>(body: Result<Bytes, actix_web::Error>) -> Option<T> {
    body.ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// The JSON body of a POST: 43002 for another method, 47001 for a body that is not the
/// expected JSON.
pub(super) fn post_json<T: DeserializeOwned>(
    req: &HttpRequest,
    body: Result<Bytes, actix_web::Error>,
) -> Result<T, WxError> {
    if req.method() != Method::POST {
        return Err(WxError::REQUIRE_POST);
    }
    json_body(body).ok_or(WxError::DATA_FORMAT)
}

fn issued(result: Result<Issued, WxError>) -> HttpResponse {
    match result {
        Ok(Issued {
            access_token,
            expires_in,
        }) => wechat_json(json!({ "access_token": access_token, "expires_in": expires_in })),
        Err(err) => wx_error(err),
    }
}

/// WeChat answers errors with HTTP 200 and the errcode in the body.
pub(super) fn wx_error(err: WxError) -> HttpResponse {
    platform_error(Platform::Wechat, err)
}

/// An error answer in that platform's words (WeCom and WeChat share the shape and most codes).
pub(super) fn platform_error(platform: Platform, err: WxError) -> HttpResponse {
    let errmsg = match platform {
        Platform::Wechat => err.errmsg(),
        Platform::Wecom => err.wecom_errmsg(),
    };
    wechat_json(json!({ "errcode": err.0, "errmsg": errmsg }))
}

pub(super) fn wechat_json(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(WECHAT_JSON)
        .body(body.to_string())
}

pub(super) fn bad_request(msg: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain; charset=utf-8")
        .body(msg.into() + "\n")
}
