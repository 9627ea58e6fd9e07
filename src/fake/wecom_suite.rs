//! The fake's WeCom service-provider API on the wire (`/cgi-bin/service/*`) and its callback
//! pushes: suite tickets and install events encrypted for the suite (receive id = the suite
//! id), and the URL check's GET whose `echostr` is encrypted for the provider's corpid.
//!
//! Errors are HTTP 200 with an `errcode`, as WeCom answers. The rules are in
//! `wecom_suite_state.rs`; this file only reads requests and writes answers.

use std::time::{Instant, SystemTime};

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::push::post;
use super::routes::{lock, query_params, Shared};
use super::state::WxError;
use super::wecom_suite_state::WecomSuiteState;
use crate::push::crypto::MsgCrypto;
use crate::push::xml::{push_cdata_field, push_text_field};

/// One callback push (or URL check) and how the receiver answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuitePush {
    /// `suite_ticket`, `create_auth`, ... or `url_check`.
    pub info_type: String,
    /// The receiver's HTTP status (`None` when no answer arrived).
    pub status: Option<u16>,
    /// The start of the answer (`success`, or the echoed plaintext of a URL check).
    pub body: String,
    pub error: Option<String>,
}

impl SuitePush {
    /// The receiver took it: HTTP 200 and `success`.
    pub fn accepted(&self) -> bool {
        self.status == Some(200) && self.body == "success"
    }
}

type Suites = WecomSuiteState;
type Answered = Result<Value, WxError>;
type Answer = fn(&mut Suites, &HttpRequest, &[u8], Instant) -> Answered;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    let endpoints: [(&'static str, Answer); 7] = [
        ("get_suite_token", suite_token),
        ("get_pre_auth_code", pre_auth_code),
        ("set_session_info", set_session_info),
        ("get_permanent_code", permanent_code),
        ("get_auth_info", auth_info),
        ("get_corp_token", corp_token),
        ("get_provider_token", provider_token),
    ];
    for (name, answer) in endpoints {
        cfg.route(
            &format!("/cgi-bin/service/{name}"),
            web::route().to(
                move |req: HttpRequest, body: Bytes, state: web::Data<Shared>| async move {
                    let mut s = lock(&state);
                    let (suites, now) = s.wecom_suites();
                    suites.count(name);
                    let answer = answer(suites, &req, &body, now);
                    wecom_answer(answer)
                },
            ),
        );
    }
    // A corp's JS-SDK tickets, with the corp token (served at WeCom's base, as gettoken is).
    cfg.route("/cgi-bin/get_jsapi_ticket", web::route().to(jsapi_ticket))
        .route("/cgi-bin/ticket/get", web::route().to(agent_ticket));
}

async fn jsapi_ticket(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    corp_ticket(&req, &state, "jsapi")
}

/// `ticket/get?type=agent_config`: any other type is refused as WeCom refuses bad arguments.
async fn agent_ticket(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    match query_params(&req).get("type").map(String::as_str) {
        Some("agent_config") => corp_ticket(&req, &state, "agent_config"),
        _ => wecom_answer(Err(WxError::WECOM_BAD_ARGS)),
    }
}

fn corp_ticket(req: &HttpRequest, state: &Shared, kind: &'static str) -> HttpResponse {
    let token = query_params(req).remove("access_token").unwrap_or_default();
    let mut s = lock(state);
    let (suites, now) = s.wecom_suites();
    suites.count(if kind == "jsapi" {
        "get_jsapi_ticket"
    } else {
        "ticket/get"
    });
    let answer = suites.corp_ticket(&token, kind, now);
    wecom_answer(
        answer.map(|(ticket, expires_in)| json!({"ticket": ticket, "expires_in": expires_in})),
    )
}

pub(super) fn wecom_answer(answer: Result<Value, WxError>) -> HttpResponse {
    let body = match answer {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("errcode".into(), 0.into());
                o.insert("errmsg".into(), "ok".into());
            }
            v
        }
        Err(WxError(code)) => json!({"errcode": code, "errmsg": errmsg(code)}),
    };
    HttpResponse::Ok()
        .content_type("application/json; charset=UTF-8")
        .body(body.to_string())
}

fn errmsg(code: i64) -> &'static str {
    match code {
        40078 => "invalid auth_code",
        40082 => "invalid suite_token",
        40084 => "invalid permanent_code",
        40085 => "invalid suite_ticket",
        42009 => "suite_token expired",
        40013 => "invalid corpid",
        40001 => "invalid secret",
        _ => "invalid request",
    }
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, WxError> {
    serde_json::from_slice(body).map_err(|_| WxError::WECOM_BAD_ARGS)
}

fn suite_token_param(req: &HttpRequest) -> String {
    query_params(req)
        .remove("suite_access_token")
        .unwrap_or_default()
}

fn suite_token(s: &mut Suites, _req: &HttpRequest, body: &[u8], now: Instant) -> Answered {
    #[derive(Deserialize)]
    struct Req {
        suite_id: String,
        suite_secret: String,
        suite_ticket: String,
    }
    let r: Req = json_body(body)?;
    let (token, expires_in) = s.suite_token(&r.suite_id, &r.suite_secret, &r.suite_ticket, now)?;
    Ok(json!({"suite_access_token": token, "expires_in": expires_in}))
}

fn pre_auth_code(s: &mut Suites, req: &HttpRequest, _body: &[u8], now: Instant) -> Answered {
    let code = s.pre_auth_code(&suite_token_param(req), now)?;
    Ok(json!({"pre_auth_code": code, "expires_in": 1200}))
}

fn set_session_info(s: &mut Suites, req: &HttpRequest, body: &[u8], now: Instant) -> Answered {
    #[derive(Deserialize)]
    struct Session {
        auth_type: u8,
    }
    #[derive(Deserialize)]
    struct Req {
        pre_auth_code: String,
        session_info: Session,
    }
    let r: Req = json_body(body)?;
    s.set_session_info(
        &suite_token_param(req),
        &r.pre_auth_code,
        r.session_info.auth_type,
        now,
    )?;
    Ok(json!({}))
}

fn permanent_code(s: &mut Suites, req: &HttpRequest, body: &[u8], now: Instant) -> Answered {
    #[derive(Deserialize)]
    struct Req {
        auth_code: String,
    }
    let r: Req = json_body(body)?;
    let p = s.permanent_code(&suite_token_param(req), &r.auth_code, now)?;
    Ok(json!({
        "permanent_code": p.permanent_code,
        "auth_corp_info": {"corpid": p.corpid, "corp_name": p.corp_name},
        "auth_info": {"agent": [{"agentid": p.agentid, "name": "CRM"}]},
        "auth_user_info": {"userid": "admin"},
    }))
}

#[derive(Deserialize)]
struct CorpReq {
    auth_corpid: String,
    permanent_code: String,
}

/// The suite token and the body of a call naming a corp by its permanent code.
fn corp_request(req: &HttpRequest, body: &[u8]) -> Result<(String, CorpReq), WxError> {
    Ok((suite_token_param(req), json_body(body)?))
}

fn auth_info(s: &mut Suites, req: &HttpRequest, body: &[u8], now: Instant) -> Answered {
    let (token, r) = corp_request(req, body)?;
    let (name, agentid) = s.auth_info(&token, &r.auth_corpid, &r.permanent_code, now)?;
    Ok(json!({
        "auth_corp_info": {"corpid": r.auth_corpid, "corp_name": name},
        "auth_info": {"agent": [{"agentid": agentid, "name": "CRM"}]},
    }))
}

fn corp_token(s: &mut Suites, req: &HttpRequest, body: &[u8], now: Instant) -> Answered {
    let (token, r) = corp_request(req, body)?;
    let (access, expires_in) = s.corp_token(&token, &r.auth_corpid, &r.permanent_code, now)?;
    Ok(json!({"access_token": access, "expires_in": expires_in}))
}

fn provider_token(s: &mut Suites, _req: &HttpRequest, body: &[u8], now: Instant) -> Answered {
    #[derive(Deserialize)]
    struct Req {
        corpid: String,
        provider_secret: String,
    }
    let r: Req = json_body(body)?;
    let (token, expires_in) = s.provider_token(&r.corpid, &r.provider_secret, now)?;
    Ok(json!({"provider_access_token": token, "expires_in": expires_in}))
}

// ---- pushes ---------------------------------------------------------------------------------

/// The inner XML of a callback: `SuiteId`, `InfoType`, `TimeStamp` and the event's fields.
pub(super) fn event_xml(suite_id: &str, info_type: &str, fields: &[(&str, &str)]) -> String {
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut xml = String::from("<xml>");
    push_cdata_field(&mut xml, "SuiteId", suite_id);
    push_cdata_field(&mut xml, "InfoType", info_type);
    push_text_field(&mut xml, "TimeStamp", &unix.to_string());
    for (name, value) in fields {
        push_cdata_field(&mut xml, name, value);
    }
    xml.push_str("</xml>");
    xml
}

fn nonce_and_time() -> (String, String) {
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (format!("{:x}", rand::random::<u64>()), unix.to_string())
}

/// Pushes `xml` encrypted for the suite to its callback URL. `None` when the suite is unknown
/// or has no callback URL.
pub(super) async fn push(
    state: &Shared,
    suite_id: &str,
    info_type: &str,
    xml: &str,
) -> Option<SuitePush> {
    let (suite, url) = lock(state).wecom_suites().0.target(suite_id)?;
    let (nonce, timestamp) = nonce_and_time();
    let outcome = match MsgCrypto::new(&suite.token, &suite.encoding_aes_key, &suite.suite_id) {
        Ok(crypto) => {
            let sealed = crypto.seal(xml, &timestamp, &nonce);
            let query = format!(
                "msg_signature={}&timestamp={timestamp}&nonce={nonce}",
                sealed.msg_signature
            );
            post(&url, &query, sealed.body).await
        }
        Err(e) => Err(e.to_string()),
    };
    Some(record(info_type, outcome))
}

fn record(info_type: &str, outcome: Result<(u16, String), String>) -> SuitePush {
    match outcome {
        Ok((status, body)) => SuitePush {
            info_type: info_type.to_owned(),
            status: Some(status),
            body,
            error: None,
        },
        Err(e) => SuitePush {
            info_type: info_type.to_owned(),
            status: None,
            body: String::new(),
            error: Some(e),
        },
    }
}

/// WeCom's URL check: a GET with `msg_signature`, `timestamp`, `nonce` and an `echostr`
/// encrypted for `receive_id` (the provider's corpid). Answers the outcome and the plaintext
/// the receiver should echo.
pub(super) async fn url_check(
    state: &Shared,
    suite_id: &str,
    receive_id: Option<&str>,
) -> Option<(SuitePush, String)> {
    let (suite, url) = lock(state).wecom_suites().0.target(suite_id)?;
    let receive_id = receive_id.unwrap_or(&suite.provider_corpid);
    let plain = format!("echo{:x}", rand::random::<u64>());
    let (nonce, timestamp) = nonce_and_time();
    let crypto = MsgCrypto::new(&suite.token, &suite.encoding_aes_key, receive_id).ok()?;
    let (encrypt, signature) = crypto.encrypt_signed(&plain, &timestamp, &nonce);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("msg_signature", &signature)
        .append_pair("timestamp", &timestamp)
        .append_pair("nonce", &nonce)
        .append_pair("echostr", &encrypt)
        .append_pair(
            "signature",
            &crate::push::plain::signature(&suite.token, &timestamp, &nonce),
        )
        .finish();
    let separator = if url.contains('?') { '&' } else { '?' };
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .finish();
    let outcome = async {
        let mut res = client
            .get(format!("{url}{separator}{query}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body = res.body().limit(4096).await.map_err(|e| e.to_string())?;
        Ok((
            res.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
    .await;
    Some((record("url_check", outcome), plain))
}
