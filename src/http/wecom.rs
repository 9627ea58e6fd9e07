//! WeCom service providers' routes, handlers only: a suite's callback URL (WeCom's URL check
//! and its pushes), the suite token, the installed corps' tokens and records, pre-auth codes
//! and install links, and a provider's token. Client routes check 401, then 404, then 403, as
//! for apps and platforms; a revoked corp is 410, one whose permanent code WeCom refused 409.

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::body::{json_object, read_body};
use super::platforms::{page_query, pushed};
use super::{cache_control, trail, unavailable, ApiError, InvalidateBody, ServerState};
use crate::config::ClientSettings;
use crate::push::crypto::Envelope;
use crate::store::wecom::CorpRecord;
use crate::token::{CredentialHandle, TokenRecord};
use crate::upstream::UpstreamError;
use crate::wecom::{CorpRefusal, CorpUnavailable, Suite};

/// WeCom's page where a corp admin installs a suite with a pre-auth code.
const INSTALL_URL: &str = "https://open.work.weixin.qq.com/3rdapp/install";

fn param(req: &HttpRequest, name: &str) -> String {
    req.match_info().get(name).unwrap_or_default().to_string()
}

fn named_suite(state: &ServerState, req: &HttpRequest) -> Result<Arc<Suite>, ApiError> {
    let name = param(req, "name");
    state
        .wecom_suites
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownWecom(format!("no WeCom suite named `{name}`")))
}

/// The suite a client may use: 401, 404, 403.
pub(super) fn authorize_suite(
    state: &ServerState,
    req: &HttpRequest,
) -> Result<(Arc<ClientSettings>, Arc<Suite>), ApiError> {
    let client = state.clients.load().authenticate(req)?;
    let suite = named_suite(state, req)?;
    if !client.may_use_wecom_suite(suite.name()) {
        return Err(ApiError::ForbiddenWecom(format!(
            "client `{}` may not use WeCom suite `{}`",
            client.name,
            suite.name()
        )));
    }
    Ok((client, suite))
}

fn token_answer(body: serde_json::Value, rec: &TokenRecord) -> HttpResponse {
    let expires_in = rec.remaining(SystemTime::now()).as_secs();
    let mut body = body;
    if let Some(o) = body.as_object_mut() {
        o.insert("expires_in".into(), expires_in.into());
        o.insert("expires_at".into(), rec.expires_at_rfc3339().into());
    }
    HttpResponse::Ok()
        .insert_header(cache_control(expires_in))
        .json(body)
}

/// `GET /v1/wecom/suites/{name}/suite_token`
pub async fn suite_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (client, suite) = authorize_suite(&state, &req)?;
    let label = suite.label();
    if suite.suite_token(SystemTime::now()).is_none() && !suite.ticket_fresh(SystemTime::now()) {
        let (why, _) = suite.readiness(SystemTime::now());
        return Err(ApiError::NoValidToken {
            app: label,
            why,
            errcode: None,
        });
    }
    let rec = suite
        .current_suite_token(state.wait_limit)
        .await
        .map_err(|u| unavailable(&label, u))?;
    state.audit.read(&client.name, &label, &rec.token);
    Ok(token_answer(
        serde_json::json!({"suite": suite.name(), "suite_access_token": rec.token.expose()}),
        &rec,
    ))
}

pub(super) fn refusal(suite: &Suite, corpid: &str, r: CorpRefusal) -> ApiError {
    let (s, c) = (suite.name().to_string(), corpid.to_string());
    match r {
        CorpRefusal::Unknown => ApiError::UnknownCorp {
            suite: s,
            corpid: c,
        },
        CorpRefusal::Revoked => ApiError::CorpRevoked {
            suite: s,
            corpid: c,
        },
        CorpRefusal::NeedsReauth => ApiError::CorpNeedsReauth {
            why: suite
                .corp(corpid)
                .and_then(|r| r.last_error)
                .unwrap_or_else(|| "WeCom refused its permanent code".into()),
            suite: s,
            corpid: c,
        },
    }
}

fn corp_label(suite: &Suite, corpid: &str) -> String {
    format!("{}/{corpid}", suite.label())
}

fn corp_answer(
    suite: &Suite,
    corpid: &str,
    rec: &TokenRecord,
    refreshed: Option<bool>,
) -> HttpResponse {
    let mut body = serde_json::json!({
        "suite": suite.name(),
        "corpid": corpid,
        "access_token": rec.token.expose(),
    });
    if let (Some(r), Some(o)) = (refreshed, body.as_object_mut()) {
        o.insert("refreshed".into(), r.into());
    }
    token_answer(body, rec)
}

/// `GET /v1/wecom/suites/{name}/corps/{corpid}/token`
pub async fn corp_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (client, suite) = authorize_suite(&state, &req)?;
    let corpid = param(&req, "corpid");
    match suite.corp_token(&corpid, state.wait_limit).await {
        Ok(rec) => {
            state
                .audit
                .read(&client.name, &corp_label(&suite, &corpid), &rec.token);
            Ok(corp_answer(&suite, &corpid, &rec, None))
        }
        Err(CorpUnavailable::Refused(r)) => Err(refusal(&suite, &corpid, r)),
        Err(CorpUnavailable::Unavailable(u)) => Err(unavailable(&corp_label(&suite, &corpid), u)),
    }
}

async fn corp_handle(suite: &Suite, corpid: &str) -> Result<CredentialHandle, ApiError> {
    suite
        .corp_actor_or_reload(corpid)
        .await
        .map_err(|r| refusal(suite, corpid, r))
}

/// `POST /v1/wecom/suites/{name}/corps/{corpid}/token/invalidate {"access_token"}`
pub async fn invalidate_corp_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (client, suite) = authorize_suite(&state, &req)?;
    let body = read_body(&req, payload).await?;
    let parsed: InvalidateBody =
        json_object(&body).ok_or_else(|| ApiError::BadRequest(InvalidateBody::HINT.into()))?;
    let rejected = parsed.rejected()?;
    let corpid = param(&req, "corpid");
    let handle = corp_handle(&suite, &corpid).await?;
    let label = corp_label(&suite, &corpid);
    let inv = handle
        .report_rejected(&rejected, state.wait_limit)
        .await
        .map_err(|u| unavailable(&label, u))?;
    trail::refetched(
        &state.audit,
        &trail::caller(&req, &client.name),
        &label,
        &rejected,
        &inv,
    );
    Ok(corp_answer(
        &suite,
        &corpid,
        &inv.record,
        Some(inv.refreshed),
    ))
}

/// A corp as shown to clients: never its permanent code.
#[derive(Serialize)]
struct CorpView {
    corpid: String,
    state: &'static str,
    agent_ids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    has_permanent_code: bool,
}

fn view(r: CorpRecord) -> CorpView {
    CorpView {
        state: r.state.as_str(),
        has_permanent_code: r.permanent_code.is_some(),
        corpid: r.corpid,
        agent_ids: r.agent_ids,
        authorized_at: r.authorized_at.map(crate::time::rfc3339),
        last_error: r.last_error,
    }
}

/// `GET /v1/wecom/suites/{name}/corps?state=&offset=&limit=`
pub async fn list_corps(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (_, suite) = authorize_suite(&state, &req)?;
    let (wanted, offset, limit) = page_query(&req)?;
    let (total, records) = suite.corp_page(wanted, offset, limit);
    let page: Vec<CorpView> = records.into_iter().map(view).collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "suite": suite.name(),
            "total": total,
            "offset": offset,
            "corps": page,
        })))
}

/// `GET /v1/wecom/suites/{name}/corps/{corpid}`
pub async fn get_corp(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (_, suite) = authorize_suite(&state, &req)?;
    let corpid = param(&req, "corpid");
    if suite.corp(&corpid).is_none() {
        suite.reload_corp(&corpid).await;
    }
    let record = suite
        .corp(&corpid)
        .ok_or_else(|| refusal(&suite, &corpid, CorpRefusal::Unknown))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view(record)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PreauthBody {
    #[serde(default)]
    auth_type: Option<u8>,
    redirect_uri: Option<String>,
    state: Option<String>,
}

const PREAUTH_HINT: &str = "body must be JSON {\"auth_type\": 0|1, \"redirect_uri\": \
                            \"https://...\", \"state\": \"...\"} (each optional)";

/// `POST /v1/wecom/suites/{name}/preauth {"auth_type"?, "redirect_uri"?, "state"?}`: a
/// pre-auth code with its session set (0 formal install, 1 test install) and the install link.
pub async fn preauth(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (_, suite) = authorize_suite(&state, &req)?;
    let body = read_body(&req, payload).await?;
    let parsed: PreauthBody = if body.is_empty() {
        PreauthBody::default()
    } else {
        json_object(&body).ok_or_else(|| ApiError::BadRequest(PREAUTH_HINT.into()))?
    };
    let auth_type = parsed.auth_type.unwrap_or(0);
    if auth_type > 1 {
        return Err(ApiError::BadRequest(PREAUTH_HINT.into()));
    }
    if let Some(uri) = &parsed.redirect_uri {
        if !(uri.starts_with("https://") || uri.starts_with("http://")) || uri.len() > 2048 {
            return Err(ApiError::BadRequest(
                "redirect_uri must be an http(s) URL".into(),
            ));
        }
    }
    let code = suite
        .create_preauth_code(auth_type)
        .await
        .map_err(|e| match e {
            UpstreamError::NoToken => ApiError::NoValidToken {
                app: suite.label(),
                why: "no suite token to create a pre-auth code with".into(),
                errcode: None,
            },
            e => ApiError::Unavailable(format!("could not create a pre-auth code: {e}")),
        })?;
    let mut link = form_urlencoded::Serializer::new(String::new());
    link.append_pair("suite_id", suite.suite_id())
        .append_pair("pre_auth_code", code.code.expose());
    if let Some(uri) = &parsed.redirect_uri {
        link.append_pair("redirect_uri", uri);
    }
    if let Some(s) = &parsed.state {
        link.append_pair("state", s);
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "suite": suite.name(),
            "pre_auth_code": code.code.expose(),
            "expires_in": code.expires_in.as_secs(),
            "auth_type": auth_type,
            "install_url": format!("{INSTALL_URL}?{}", link.finish()),
        })))
}

#[derive(Deserialize)]
struct UrlCheck {
    msg_signature: String,
    timestamp: String,
    nonce: String,
    echostr: String,
}

/// `GET /v1/wecom/suites/{name}/events?msg_signature=&timestamp=&nonce=&echostr=`: WeCom's URL
/// check, answered with the decrypted echostr.
pub async fn url_check(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let suite = named_suite(&state, &req)?;
    let q = web::Query::<UrlCheck>::from_query(req.query_string()).map_err(|_| {
        ApiError::BadRequest(
            "the query must carry msg_signature, timestamp, nonce and echostr".into(),
        )
    })?;
    let envelope = Envelope {
        timestamp: q.timestamp.clone(),
        nonce: q.nonce.clone(),
        msg_signature: q.msg_signature.clone(),
    };
    let plain = suite.verify_url(&envelope, &q.echostr).map_err(pushed)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(plain))
}

/// `POST /v1/wecom/suites/{name}/events?msg_signature=&timestamp=&nonce=`: WeCom's callbacks,
/// checked, persisted, then answered `success` (see [`Suite::receive`]).
pub async fn events(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let suite = named_suite(&state, &req)?;
    let envelope = web::Query::<Envelope>::from_query(req.query_string())
        .map_err(|_| pushed(suite.malformed_envelope()))?;
    let body = read_body(&req, payload).await?;
    suite.receive(&envelope, &body).await.map_err(pushed)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("success"))
}

/// `GET /v1/wecom/providers/{name}/token`
pub async fn provider_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let client = state.clients.load().authenticate(&req)?;
    let name = param(&req, "name");
    let provider = state
        .wecom_providers
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownWecom(format!("no WeCom provider named `{name}`")))?;
    if !client.may_use_wecom_provider(&name) {
        return Err(ApiError::ForbiddenWecom(format!(
            "client `{}` may not use WeCom provider `{name}`",
            client.name
        )));
    }
    let label = provider.label();
    let rec = provider
        .token(state.wait_limit)
        .await
        .map_err(|u| unavailable(&label, u))?;
    state.audit.read(&client.name, &label, &rec.token);
    Ok(token_answer(
        serde_json::json!({"provider": name, "provider_access_token": rec.token.expose()}),
        &rec,
    ))
}
