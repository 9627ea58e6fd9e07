//! The Open Platform's routes: the event receive URL WeChat pushes to, the component and
//! authorizer tokens for business servers, the authorizer listing, the redirect flow's code,
//! and the admin reconciliation. Client routes check 401, then 404, then 403, as for apps.

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::body::{json_object, read_body};
use super::preauth::{mobile_url, pc_url, PreauthBody};
use super::{cache_control, trail, unavailable, ApiError, InvalidateBody, ServerState};
use crate::audit::{Action, Entry};
use crate::config::{ClientSettings, TicketKind};
use crate::platform::{
    AuthorizerRefusal, AuthorizerUnavailable, Platform, PreauthError, PushError,
};
use crate::push::crypto::Envelope;
use crate::secret::AccessToken;
use crate::store::platform::{AuthorizerRecord, AuthorizerState};
use crate::token::{CredentialHandle, TokenRecord};

/// The platform the route names: 404 when there is none.
fn named_platform(state: &ServerState, req: &HttpRequest) -> Result<Arc<Platform>, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default();
    state
        .platforms
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownPlatform(name.to_string()))
}

/// The platform a client may use: 401 (no or bad key), 404 (no such platform), 403.
pub(crate) fn authorize_platform(
    state: &ServerState,
    req: &HttpRequest,
) -> Result<(Arc<ClientSettings>, Arc<Platform>), ApiError> {
    let client = state.clients.load().authenticate(req)?;
    let platform = named_platform(state, req)?;
    let name = platform.name();
    if !client.may_use_platform(name) {
        return Err(ApiError::ForbiddenPlatform {
            client: client.name.clone(),
            platform: name.to_string(),
        });
    }
    Ok((client, platform))
}

fn appid_param(req: &HttpRequest) -> String {
    req.match_info()
        .get("appid")
        .unwrap_or_default()
        .to_string()
}

/// The platform a client may use (see [`authorize_platform`]) and the request's body as the
/// JSON object `T`: 400 with `hint` for anything else.
async fn platform_and_json<T: serde::de::DeserializeOwned>(
    state: &ServerState,
    req: &HttpRequest,
    payload: web::Payload,
    hint: &str,
) -> Result<(Arc<ClientSettings>, Arc<Platform>, T), ApiError> {
    let (client, platform) = authorize_platform(state, req)?;
    let body = read_body(req, payload).await?;
    let parsed = json_object(&body).ok_or_else(|| ApiError::BadRequest(hint.into()))?;
    Ok((client, platform, parsed))
}

const CODE_HINT: &str = "body must be JSON {\"authorization_code\": \"...\"}";
const PREAUTH_HINT: &str = "body must be JSON {\"redirect_uri\": \"https://...\", \"auth_type\": \
                            1|2|3, \"biz_appid\": \"...\"} (auth_type and biz_appid optional)";
const URL_HINT: &str = "body must be JSON {\"url\": \"https://...\"}";

#[derive(Serialize)]
struct ComponentTokenBody<'a> {
    platform: &'a str,
    component_access_token: &'a str,
    expires_in: u64,
    expires_at: String,
}

#[derive(Serialize)]
struct AuthorizerTokenBody<'a> {
    platform: &'a str,
    appid: &'a str,
    access_token: &'a str,
    expires_in: u64,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refreshed: Option<bool>,
}

/// `GET /v1/platforms/{name}/component_token`
pub async fn component_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (client, platform) = authorize_platform(&state, &req)?;
    let label = platform.label();
    if platform.component_token(SystemTime::now()).is_none() && !platform.has_ticket() {
        return Err(ApiError::NoValidToken {
            app: label,
            why: "no component_verify_ticket has been pushed yet (WeChat pushes one \
                  about every 10 minutes to the event URL)"
                .into(),
            errcode: None,
        });
    }
    let rec = platform
        .current_component_token(state.wait_limit)
        .await
        .map_err(|u| unavailable(&label, u))?;
    state.audit.read(&client.name, &label, &rec.token);
    let expires_in = rec.remaining(SystemTime::now()).as_secs();
    Ok(HttpResponse::Ok()
        .insert_header(cache_control(expires_in))
        .json(ComponentTokenBody {
            platform: platform.name(),
            component_access_token: rec.token.expose(),
            expires_in,
            expires_at: rec.expires_at_rfc3339(),
        }))
}

fn refusal(platform: &Platform, appid: &str, r: AuthorizerRefusal) -> ApiError {
    let (p, a) = (platform.name().to_string(), appid.to_string());
    match r {
        AuthorizerRefusal::Unknown => ApiError::UnknownAuthorizer {
            platform: p,
            appid: a,
        },
        AuthorizerRefusal::Revoked => ApiError::AuthorizerRevoked {
            platform: p,
            appid: a,
        },
        AuthorizerRefusal::NeedsReauth => {
            let why = platform
                .authorizer(appid)
                .and_then(|r| r.last_error)
                .unwrap_or_else(|| "its refresh token was refused".into());
            ApiError::AuthorizerNeedsReauth {
                platform: p,
                appid: a,
                why,
            }
        }
        AuthorizerRefusal::NoRefreshToken => ApiError::AuthorizerNeedsReauth {
            platform: p,
            appid: a,
            why: "WeChat never gave a refresh token for it".into(),
        },
    }
}

/// The label an authorizer's failures are reported under.
pub(super) fn authorizer_label(platform: &Platform, appid: &str) -> String {
    format!("{}/{appid}", platform.label())
}

fn authorizer_answer(
    platform: &Platform,
    appid: &str,
    rec: &TokenRecord,
    refreshed: Option<bool>,
) -> HttpResponse {
    let expires_in = rec.remaining(SystemTime::now()).as_secs();
    HttpResponse::Ok()
        .insert_header(cache_control(expires_in))
        .json(AuthorizerTokenBody {
            platform: platform.name(),
            appid,
            access_token: rec.token.expose(),
            expires_in,
            expires_at: rec.expires_at_rfc3339(),
            refreshed,
        })
}

/// An authorizer's token actor; an account this instance does not know is looked up in the
/// store first (another instance of the fleet may have handled its authorization).
async fn authorizer_handle(platform: &Platform, appid: &str) -> Result<CredentialHandle, ApiError> {
    platform
        .authorizer_actor_or_reload(appid)
        .await
        .map_err(|r| refusal(platform, appid, r))
}

/// For the gateway's authorizer proxy route: the client (401, 404, 403 as for every platform
/// route), the platform and the authorizer's token actor (404, 410, 409 as for its token).
pub(crate) async fn authorizer_for_proxy(
    state: &ServerState,
    req: &HttpRequest,
) -> Result<(Arc<ClientSettings>, Arc<Platform>, CredentialHandle), ApiError> {
    let (client, platform) = authorize_platform(state, req)?;
    let appid = appid_param(req);
    let handle = authorizer_handle(&platform, &appid).await?;
    Ok((client, platform, handle))
}

/// `GET /v1/platforms/{name}/authorizers/{appid}/token`
pub async fn authorizer_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (client, platform) = authorize_platform(&state, &req)?;
    let appid = appid_param(&req);
    match platform.authorizer_token(&appid, state.wait_limit).await {
        Ok(rec) => {
            let label = authorizer_label(&platform, &appid);
            state.audit.read(&client.name, &label, &rec.token);
            Ok(authorizer_answer(&platform, &appid, &rec, None))
        }
        Err(AuthorizerUnavailable::Refused(r)) => Err(refusal(&platform, &appid, r)),
        Err(AuthorizerUnavailable::Unavailable(u)) => {
            Err(unavailable(&authorizer_label(&platform, &appid), u))
        }
    }
}

/// `POST /v1/platforms/{name}/authorizers/{appid}/token/invalidate`
pub async fn invalidate_authorizer_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (client, platform, parsed): (_, _, InvalidateBody) =
        platform_and_json(&state, &req, payload, InvalidateBody::HINT).await?;
    let appid = appid_param(&req);
    let rejected = parsed.rejected()?;
    let handle = authorizer_handle(&platform, &appid).await?;
    let inv = handle
        .report_rejected(&rejected, state.wait_limit)
        .await
        .map_err(|u| unavailable(&authorizer_label(&platform, &appid), u))?;
    trail::refetched(
        &state.audit,
        &trail::caller(&req, &client.name),
        &authorizer_label(&platform, &appid),
        &rejected,
        &inv,
    );
    Ok(authorizer_answer(
        &platform,
        &appid,
        &inv.record,
        Some(inv.refreshed),
    ))
}

/// An authorizer as listed to clients: never its refresh token.
#[derive(Serialize)]
struct AuthorizerView {
    appid: String,
    state: &'static str,
    func_ids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    has_refresh_token: bool,
}

fn view(r: AuthorizerRecord) -> AuthorizerView {
    AuthorizerView {
        state: r.state.as_str(),
        has_refresh_token: r.refresh_token.is_some(),
        appid: r.appid,
        func_ids: r.func_ids,
        authorized_at: r.authorized_at.map(crate::time::rfc3339),
        last_error: r.last_error,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// The most records one listing answers.
const LIST_MAX: usize = 1000;

/// A listing's query (a platform's authorizers, a WeCom suite's corps): the state wanted
/// (all when `None`), the offset and the limit (100 by default, at most [`LIST_MAX`]); 400
/// for anything else.
pub(crate) fn page_query(
    req: &HttpRequest,
) -> Result<(Option<AuthorizerState>, usize, usize), ApiError> {
    let hint = "query parameters are state (authorized, needs_reauth, revoked), offset and limit";
    let q = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|_| ApiError::BadRequest(hint.into()))?;
    let wanted = match q.state.as_deref() {
        None => None,
        Some("authorized") => Some(AuthorizerState::Authorized),
        Some("needs_reauth") => Some(AuthorizerState::NeedsReauth),
        Some("revoked") => Some(AuthorizerState::Revoked),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "state is one of authorized, needs_reauth, revoked".into(),
            ))
        }
    };
    Ok((
        wanted,
        q.offset.unwrap_or(0),
        q.limit.unwrap_or(100).min(LIST_MAX),
    ))
}

/// `GET /v1/platforms/{name}/authorizers?state=&offset=&limit=`
pub async fn list_authorizers(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = authorize_platform(&state, &req)?;
    let (wanted, offset, limit) = page_query(&req)?;
    let (total, records) = platform.authorizer_page(wanted, offset, limit);
    let page: Vec<AuthorizerView> = records.into_iter().map(view).collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "platform": platform.name(),
            "total": total,
            "offset": offset,
            "authorizers": page,
        })))
}

/// `GET /v1/platforms/{name}/authorizers/{appid}`. An account whose stored record is corrupt
/// (a time out of range, say) is unknown here, 404, as it is to its token route: the stores
/// skip such a record (logged and counted in `wxtoken_store_errors_total{op="decode"}`, as a
/// corrupt token record), retrying cannot help, and a reconciliation can bring the account
/// back if WeChat still lists it.
pub async fn get_authorizer(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = authorize_platform(&state, &req)?;
    let appid = appid_param(&req);
    if platform.authorizer(&appid).is_none() {
        platform.reload_authorizer(&appid).await;
    }
    let record = platform
        .authorizer(&appid)
        .ok_or_else(|| refusal(&platform, &appid, AuthorizerRefusal::Unknown))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view(record)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    authorization_code: String,
}

/// `POST /v1/platforms/{name}/authorizers {"authorization_code"}`: the code of the redirect
/// flow, exchanged at once.
pub async fn add_authorizer(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (client, platform, parsed): (_, _, CodeBody) =
        platform_and_json(&state, &req, payload, CODE_HINT).await?;
    if !crate::secret::plausible_credential(&parsed.authorization_code) {
        return Err(ApiError::BadRequest(
            "authorization_code is empty or malformed".into(),
        ));
    }
    let caller = trail::caller(&req, &client.name);
    trail::admit(&state.audit, &caller, Action::AuthorizerImport)?;
    let code = AccessToken::new(parsed.authorization_code);
    let exchanged = platform.authorize_code(&code).await;
    state.audit.record(&Entry {
        action: Action::AuthorizerImport,
        caller: &caller,
        credential: Some(&match &exchanged {
            Ok(appid) => authorizer_label(&platform, appid),
            Err(_) => platform.label(),
        }),
        outcome: if exchanged.is_ok() { "ok" } else { "failed" },
        fingerprints: vec![],
    });
    match exchanged {
        Ok(appid) => {
            let record = platform
                .authorizer(&appid)
                .ok_or_else(|| ApiError::Unavailable("the authorizer was not kept".into()))?;
            Ok(HttpResponse::Ok().json(view(record)))
        }
        Err(e) => match e.errcode() {
            Some(code @ (61009 | 61010)) => Err(ApiError::BadRequest(format!(
                "WeChat refused the authorization code (errcode {code}: {})",
                if code == 61009 { "invalid" } else { "expired" }
            ))),
            _ => Err(ApiError::Unavailable(format!(
                "could not exchange the authorization code: {e}"
            ))),
        },
    }
}

/// `POST /v1/platforms/{name}/preauth {"redirect_uri","auth_type"?,"biz_appid"?}`: a fresh
/// pre-auth code (single use, WeChat's `expires_in`) and the PC and mobile authorization links
/// built around it; the merchant's authorization then arrives as an `authorized` push.
pub async fn preauth(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (_, platform, parsed): (_, _, PreauthBody) =
        platform_and_json(&state, &req, payload, PREAUTH_HINT).await?;
    let links = parsed.validate().map_err(ApiError::BadRequest)?;
    let code = platform.create_preauth_code().await.map_err(|e| match e {
        PreauthError::NoComponentToken => ApiError::NoValidToken {
            app: platform.label(),
            why: "no component token to create a pre-auth code with".into(),
            errcode: None,
        },
        PreauthError::Upstream(e) => {
            ApiError::Unavailable(format!("could not create a pre-auth code: {e}"))
        }
    })?;
    let appid = platform.component_appid();
    let pre_auth_code = code.code.expose();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "platform": platform.name(),
            "pre_auth_code": pre_auth_code,
            "expires_in": code.expires_in.as_secs(),
            "pc_url": pc_url(appid, pre_auth_code, &links),
            "mobile_url": mobile_url(appid, pre_auth_code, &links),
        })))
}

/// `POST /v1/admin/platforms/{name}/reconcile` (admins)
pub async fn reconcile(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let client = state.clients.load().authenticate(&req)?;
    let platform = named_platform(&state, &req)?;
    if !client.admin {
        return Err(ApiError::AdminOnly(client.name.clone()));
    }
    let caller = trail::caller(&req, &client.name);
    trail::admit(&state.audit, &caller, Action::Reconcile)?;
    let done = platform.reconcile().await;
    state.audit.record(&Entry {
        action: Action::Reconcile,
        caller: &caller,
        credential: Some(&platform.label()),
        outcome: if done.is_ok() { "ok" } else { "failed" },
        fingerprints: vec![],
    });
    let done = done.map_err(|e| ApiError::Unavailable(format!("reconciliation failed: {e}")))?;
    Ok(HttpResponse::Ok().json(done))
}

/// `POST /v1/platforms/{name}/events?timestamp=&nonce=&encrypt_type=aes&msg_signature=`:
/// WeChat's pushes. Checked (signature, decryption, freshness, replay, AppId), persisted, then
/// answered `success`; anything refused is stored nowhere (see [`Platform::receive`]).
pub async fn events(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let platform = named_platform(&state, &req)?;
    let envelope = web::Query::<Envelope>::from_query(req.query_string())
        .map_err(|_| pushed(platform.malformed_envelope()))?;
    let body = read_body(&req, payload).await?;
    platform.receive(&envelope, &body).await.map_err(pushed)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("success"))
}

/// A push refused (401 or 400 by its status) or not stored (503, so it is sent again).
pub(crate) fn pushed(e: PushError) -> ApiError {
    match e {
        PushError::Refused { status, message } => ApiError::EventRefused { status, message },
        PushError::NotStored => ApiError::Unavailable(e.to_string()),
    }
}

/// An authorizer's ticket of `kind`, from the published status or the actor's fetch.
pub(crate) async fn authorizer_ticket_record(
    state: &ServerState,
    platform: &Platform,
    appid: &str,
    kind: TicketKind,
) -> Result<Arc<TokenRecord>, ApiError> {
    // Known to this instance first (see `authorizer_handle`).
    authorizer_handle(platform, appid).await?;
    let handle = platform
        .authorizer_ticket(appid, kind)
        .map_err(|r| refusal(platform, appid, r))?;
    let label = format!(
        "{}:{}_ticket",
        authorizer_label(platform, appid),
        kind.as_str()
    );
    super::tickets::current_of(state, &handle, &label).await
}

#[derive(Serialize)]
struct AuthorizerTicketBody<'a> {
    platform: &'a str,
    appid: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    ticket: &'a str,
    expires_in: u64,
    expires_at: String,
}

/// `GET /v1/platforms/{name}/authorizers/{appid}/ticket/{type}` (`jsapi` or `wx_card`),
/// fetched with the authorizer's token on first use, then kept fresh.
pub async fn authorizer_ticket(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = authorize_platform(&state, &req)?;
    let appid = appid_param(&req);
    let raw = req.match_info().get("type").unwrap_or_default();
    let kind = TicketKind::parse(raw).ok_or_else(|| ApiError::UnknownTicket {
        app: format!("{}/{appid}", platform.name()),
        kind: raw.to_string(),
    })?;
    let ticket = authorizer_ticket_record(&state, &platform, &appid, kind).await?;
    let expires_in = ticket.remaining(SystemTime::now()).as_secs();
    Ok(HttpResponse::Ok()
        .insert_header(cache_control(expires_in))
        .json(AuthorizerTicketBody {
            platform: platform.name(),
            appid: &appid,
            kind: kind.as_str(),
            ticket: ticket.token.expose(),
            expires_in,
            expires_at: ticket.expires_at_rfc3339(),
        }))
}

/// `POST /v1/platforms/{name}/authorizers/{appid}/jssdk/signature` `{"url"}`: the `wx.config`
/// values for a page of the authorizer's, signed with its jsapi ticket; `appId` is the
/// authorizer's, as WeChat requires for a platform's pages.
pub async fn authorizer_jssdk_signature(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (_, platform, parsed): (_, _, super::tickets::SignatureRequest) =
        platform_and_json(&state, &req, payload, URL_HINT).await?;
    let appid = appid_param(&req);
    let url = super::tickets::signed_url(&parsed)?;
    let ticket = authorizer_ticket_record(&state, &platform, &appid, TicketKind::Jsapi).await?;
    Ok(super::tickets::signature_answer(&ticket, appid, url))
}
