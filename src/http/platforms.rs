//! The Open Platform's routes: the event receive URL WeChat pushes to, the component and
//! authorizer tokens for business servers, the authorizer listing, the redirect flow's code,
//! and the admin reconciliation. Client routes check 401, then 404, then 403, as for apps.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::body::{json_object, read_body};
use super::preauth::{mobile_url, pc_url, PreauthBody};
use super::{cache_control, unavailable, ApiError, InvalidateBody, ServerState};
use crate::apps::Unavailable;
use crate::platform::runtime::{AuthorizerRefusal, PlatformShared};
use crate::push::crypto::Envelope;
use crate::push::event::{Event, EventKind};
use crate::secret::AccessToken;
use crate::store::platform::{AuthorizerRecord, AuthorizerState};

use crate::token::TokenRecord;

/// The platform a client may use: 401 (no or bad key), 404 (no such platform), 403.
pub(crate) fn authorize_platform(
    state: &ServerState,
    req: &HttpRequest,
) -> Result<(Arc<crate::config::ClientSettings>, Arc<PlatformShared>), ApiError> {
    let client = state.clients.load().authenticate(req)?;
    let name = req.match_info().get("name").unwrap_or_default();
    let platform = state
        .platforms
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownPlatform(name.to_string()))?;
    if !client.may_use_platform(name) {
        return Err(ApiError::ForbiddenPlatform {
            client: client.name.clone(),
            platform: name.to_string(),
        });
    }
    Ok((client, platform))
}

fn expires_at(rec: &TokenRecord) -> String {
    rec.expires_at_rfc3339()
}

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
    let (_, platform) = authorize_platform(&state, &req)?;
    let label = platform.settings.metrics_label();
    let rec = match platform.component_token(SystemTime::now()) {
        Some(rec) => rec,
        None => {
            if platform.ticket.load().is_none() {
                return Err(ApiError::NoValidToken {
                    app: label,
                    why: "no component_verify_ticket has been pushed yet (WeChat pushes one \
                          about every 10 minutes to the event URL)"
                        .into(),
                    errcode: None,
                });
            }
            let rec = platform
                .component
                .current(state.wait_limit)
                .await
                .map_err(|u| unavailable(&label, u))?;
            platform.note_component_token(&rec);
            rec
        }
    };
    let expires_in = rec.remaining(SystemTime::now()).as_secs();
    Ok(HttpResponse::Ok()
        .insert_header(cache_control(expires_in))
        .json(ComponentTokenBody {
            platform: platform.name(),
            component_access_token: rec.token.expose(),
            expires_in,
            expires_at: expires_at(&rec),
        }))
}

fn refusal(platform: &PlatformShared, appid: &str, r: AuthorizerRefusal) -> ApiError {
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

fn authorizer_answer(
    platform: &PlatformShared,
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
            expires_at: expires_at(rec),
            refreshed,
        })
}

/// An authorizer's token actor; an account this instance does not know is looked up in the
/// store first (another instance of the fleet may have handled its authorization).
async fn authorizer_handle(
    platform: &PlatformShared,
    appid: &str,
) -> Result<crate::apps::CredentialHandle, ApiError> {
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
) -> Result<
    (
        Arc<crate::config::ClientSettings>,
        Arc<PlatformShared>,
        crate::apps::CredentialHandle,
    ),
    ApiError,
> {
    let (client, platform) = authorize_platform(state, req)?;
    let appid = appid_param(req);
    let handle = authorizer_handle(&platform, &appid).await?;
    Ok((client, platform, handle))
}

fn appid_param(req: &HttpRequest) -> String {
    req.match_info()
        .get("appid")
        .unwrap_or_default()
        .to_string()
}

/// `GET /v1/platforms/{name}/authorizers/{appid}/token`
pub async fn authorizer_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = authorize_platform(&state, &req)?;
    let appid = appid_param(&req);
    let handle = authorizer_handle(&platform, &appid).await?;
    let label = format!("{}/{appid}", platform.settings.metrics_label());
    match handle.current(state.wait_limit).await {
        Ok(rec) => Ok(authorizer_answer(&platform, &appid, &rec, None)),
        // The fetch may have found the account gone or in need of a new authorization.
        Err(u @ Unavailable::NoToken(_)) => match platform.authorizer_actor(&appid) {
            Err(r) => Err(refusal(&platform, &appid, r)),
            Ok(_) => Err(unavailable(&label, u)),
        },
        Err(u) => Err(unavailable(&label, u)),
    }
}

/// `POST /v1/platforms/{name}/authorizers/{appid}/token/invalidate`
pub async fn invalidate_authorizer_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = authorize_platform(&state, &req)?;
    let appid = appid_param(&req);
    let body = read_body(&req, payload).await?;
    let parsed: InvalidateBody =
        json_object(&body).ok_or_else(|| ApiError::BadRequest(InvalidateBody::HINT.into()))?;
    let rejected = parsed.rejected()?;
    let handle = authorizer_handle(&platform, &appid).await?;
    let label = format!("{}/{appid}", platform.settings.metrics_label());
    let inv = handle
        .report_rejected(&rejected, state.wait_limit)
        .await
        .map_err(|u| unavailable(&label, u))?;
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

/// The most authorizers one listing answers.
const LIST_MAX: usize = 1000;

/// `GET /v1/platforms/{name}/authorizers?state=&offset=&limit=`
pub async fn list_authorizers(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (_, platform) = authorize_platform(&state, &req)?;
    let q = web::Query::<ListQuery>::from_query(req.query_string()).map_err(|_| {
        ApiError::BadRequest(
            "query parameters are state (authorized, needs_reauth, revoked), offset and limit"
                .into(),
        )
    })?;
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
    let limit = q.limit.unwrap_or(100).min(LIST_MAX);
    let offset = q.offset.unwrap_or(0);
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
    let (_, platform) = authorize_platform(&state, &req)?;
    let body = read_body(&req, payload).await?;
    let parsed: CodeBody = json_object(&body).ok_or_else(|| {
        ApiError::BadRequest("body must be JSON {\"authorization_code\": \"...\"}".into())
    })?;
    if !crate::secret::plausible_credential(&parsed.authorization_code) {
        return Err(ApiError::BadRequest(
            "authorization_code is empty or malformed".into(),
        ));
    }
    let code = AccessToken::new(parsed.authorization_code);
    match platform.authorize_code(&code).await {
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
    let (_, platform) = authorize_platform(&state, &req)?;
    let body = read_body(&req, payload).await?;
    let parsed: PreauthBody = json_object(&body).ok_or_else(|| {
        ApiError::BadRequest(
            "body must be JSON {\"redirect_uri\": \"https://...\", \"auth_type\": 1|2|3, \
             \"biz_appid\": \"...\"} (auth_type and biz_appid optional)"
                .into(),
        )
    })?;
    let links = parsed.validate().map_err(ApiError::BadRequest)?;
    let label = platform.settings.metrics_label();
    let Some(component) = platform.wait_component_token().await else {
        return Err(ApiError::NoValidToken {
            app: label,
            why: "no component token to create a pre-auth code with".into(),
            errcode: None,
        });
    };
    let client = platform.upstream.client();
    let code = {
        let _slot = client
            .slot(crate::upstream::Priority::Urgent, Default::default())
            .await;
        client
            .create_preauth_code(&component.token, &platform.settings.component_appid)
            .await
    }
    .map_err(|e| ApiError::Unavailable(format!("could not create a pre-auth code: {e}")))?;
    let appid = &platform.settings.component_appid;
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
    let name = req.match_info().get("name").unwrap_or_default();
    let platform = state
        .platforms
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownPlatform(name.to_string()))?;
    if !client.admin {
        return Err(ApiError::AdminOnly(client.name.clone()));
    }
    let done = platform
        .reconcile()
        .await
        .map_err(|e| ApiError::Unavailable(format!("reconciliation failed: {e}")))?;
    Ok(HttpResponse::Ok().json(done))
}

/// `POST /v1/platforms/{name}/events?timestamp=&nonce=&encrypt_type=aes&msg_signature=`:
/// WeChat's pushes. Checked (signature, decryption, freshness, replay, AppId), persisted, then
/// answered `success`; anything refused is stored nowhere.
pub async fn events(
    state: web::Data<ServerState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default();
    let platform = state
        .platforms
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownPlatform(name.to_string()))?;
    let metrics = &state.metrics;
    let refused = |status: u16, message: String, label: &str| {
        metrics.platform_event(platform.name(), label, "refused");
        tracing::warn!(platform = %platform.name(), status, reason = %message, "push refused");
        ApiError::EventRefused { status, message }
    };
    let q = web::Query::<Envelope>::from_query(req.query_string()).map_err(|_| {
        refused(
            400,
            "the query must carry timestamp, nonce and msg_signature".into(),
            "unknown",
        )
    })?;
    let body = read_body(&req, payload).await?;
    let xml = platform
        .crypto
        .open(&q, &body)
        .map_err(|e| refused(e.http_status(), e.to_string(), "unknown"))?;
    let admitted = platform
        .replay
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(&q, SystemTime::now())
        .map_err(|e| refused(e.http_status(), e.to_string(), "unknown"))?;
    let event = match Event::parse(&xml) {
        Ok(e) => e,
        Err(e) => {
            return Err(refused(
                400,
                format!("the event is malformed: {e}"),
                "unknown",
            ));
        }
    };
    let label = event.kind_label();
    if event.app_id != platform.settings.component_appid {
        return Err(refused(
            400,
            "the event is for another component appid".into(),
            label,
        ));
    }
    let stored = handle_event(&platform, event, &xml).await;
    match stored {
        Ok(()) => {
            metrics.platform_event(platform.name(), label, "ok");
            Ok(HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body("success"))
        }
        Err(e) => {
            // Not stored: let WeChat's retry in.
            platform
                .replay
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .release(admitted);
            metrics.platform_event(platform.name(), label, "failed");
            tracing::error!(platform = %platform.name(), info_type = label,
                error = %format!("{e:#}"), "push could not be stored; WeChat will retry it");
            Err(ApiError::Unavailable(
                "the push could not be stored; try again".into(),
            ))
        }
    }
}

/// Applies one checked event; `Err` when it could not be persisted.
async fn handle_event(
    platform: &Arc<PlatformShared>,
    event: Event,
    xml: &str,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret as _;
    let auth_kind = event.kind_label();
    match event.kind {
        EventKind::VerifyTicket { ticket } => {
            let ticket = AccessToken::new(ticket.expose_secret());
            platform.store_ticket(ticket).await?;
            tracing::debug!(platform = %platform.name(), "verify ticket stored");
        }
        EventKind::Authorized(auth) | EventKind::UpdateAuthorized(auth) => {
            // Persisted first, as WeChat sent it: acknowledged, it is not sent again.
            let record = crate::store::platform::EventRecord {
                info_type: auth_kind.to_string(),
                received_at: SystemTime::now(),
                xml: xml.to_string(),
            };
            platform.store.save_event(platform.name(), &record).await?;
            // The code stored as pending, then exchanged in the background: WeChat wants its
            // answer within seconds, and an exchange cut short (a crash, WeChat unreachable)
            // is resumed from the stored code by this or any instance.
            let pending = platform.accept_pushed_code(&auth).await?;
            platform.exchange_pushed_code(pending);
        }
        EventKind::Unauthorized { authorizer_appid } => {
            platform.revoke(&authorizer_appid).await?;
        }
        EventKind::Other { info_type } => {
            // Kept as sent: wxtoken does not act on it, but it is data someone may need (a
            // fast-registration result, say), and WeChat will not send it again.
            let record = crate::store::platform::EventRecord {
                info_type: info_type.clone(),
                received_at: SystemTime::now(),
                xml: xml.to_string(),
            };
            platform.store.save_event(platform.name(), &record).await?;
            tracing::info!(platform = %platform.name(), info_type = %info_type.escape_debug(),
                "push of another kind stored");
        }
    }
    Ok(())
}

/// Resumes the exchanges of stored authorization codes at start, then looks for more every
/// minute (every ten seconds while some are pending). Ends when the platform is dropped.
async fn resume_codes(platform: std::sync::Weak<PlatformShared>) {
    use crate::platform::exchange::{RESUME_INTERVAL, RESUME_RETRY};
    let mut first = true;
    loop {
        let Some(p) = platform.upgrade() else {
            return;
        };
        let pending = p.resume_codes().await;
        if first {
            // Once: the later looks find nothing most of the time.
            tracing::info!(platform = %p.name(), pending, "stored authorization codes looked at");
            first = false;
        }
        drop(p);
        tokio::time::sleep(if pending > 0 {
            RESUME_RETRY
        } else {
            RESUME_INTERVAL
        })
        .await;
    }
}

/// Runs the platform's background work: the resumption of stored authorization codes, the
/// `"active"` sweep every minute, the daily reconciliation, and the first one as soon as a
/// component token is held while no authorizer is known. Ends when the platform is dropped
/// (the server stopped).
pub async fn background(platform: std::sync::Weak<PlatformShared>) {
    actix::spawn(resume_codes(platform.clone()));
    let mut since_reconcile = Duration::ZERO;
    let mut first_done = match platform.upgrade() {
        Some(p) => p.has_authorizers(),
        None => return,
    };
    loop {
        let tick = if first_done {
            crate::platform::runtime::SWEEP_INTERVAL
        } else {
            Duration::from_secs(1)
        };
        tokio::time::sleep(tick).await;
        let Some(platform) = platform.upgrade() else {
            return;
        };
        since_reconcile += tick;
        if !first_done && platform.component_token(SystemTime::now()).is_some() {
            first_done = match platform.reconcile().await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(platform = %platform.name(), error = %e,
                        "first reconciliation failed; trying again");
                    false
                }
            };
            since_reconcile = Duration::ZERO;
        }
        if since_reconcile >= crate::platform::runtime::RECONCILE_INTERVAL {
            since_reconcile = Duration::ZERO;
            if let Err(e) = platform.reconcile().await {
                tracing::warn!(platform = %platform.name(), error = %e, "daily reconciliation failed");
            }
        }
        platform.sweep(SystemTime::now());
    }
}

/// A platform's line in `/readyz`: `ok`, or why its component token cannot be served; and
/// whether that makes the instance unready: only records the store could not save yet (a
/// restart now would lose a refresh token or the ticket), never a missing ticket (the first
/// push has to reach this instance through the load balancer).
pub fn readiness(platform: &PlatformShared, now: SystemTime) -> (String, bool) {
    let prefix = format!("{}/", platform.name());
    let unsaved = platform
        .store
        .not_durable_records()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .count();
    if unsaved > 0 {
        return (
            format!("{unsaved} records not saved yet (the store keeps retrying)"),
            true,
        );
    }
    (component_readiness(platform, now), false)
}

fn component_readiness(platform: &PlatformShared, now: SystemTime) -> String {
    if let Some(token) = platform.component_token(now) {
        // A success clears the last failure, so one still published means the refreshes since
        // this token was fetched have failed (61005/61006 during a ticket outage): the token
        // is served until it expires, and then the platform's accounts go with it.
        return match &platform.component_status().load().last_failure {
            Some(f) => format!(
                "serving a component token with {} s left, but its refreshes fail: {}",
                token.remaining(now).as_secs(),
                f.message
            ),
            None => "ok".into(),
        };
    }
    if platform.ticket.load().is_none() {
        return "no component_verify_ticket pushed yet; WeChat pushes one about every 10 minutes \
                to /v1/platforms/{name}/events"
            .replace("{name}", platform.name());
    }
    match &platform.component_status().load().last_failure {
        Some(f) => format!(
            "no valid component token: last fetch failed ({})",
            f.message
        ),
        None => "no valid component token yet: first fetch in progress".into(),
    }
}

/// An authorizer's ticket of `kind`, from the published status or the actor's fetch.
pub(crate) async fn authorizer_ticket_record(
    state: &ServerState,
    platform: &PlatformShared,
    appid: &str,
    kind: crate::config::TicketKind,
) -> Result<Arc<TokenRecord>, ApiError> {
    // Known to this instance first (see `authorizer_handle`).
    authorizer_handle(platform, appid).await?;
    let handle = platform
        .authorizer_ticket(appid, kind)
        .map_err(|r| refusal(platform, appid, r))?;
    let label = format!(
        "{}/{appid}:{}_ticket",
        platform.settings.metrics_label(),
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
    let kind = crate::config::TicketKind::parse(raw).ok_or_else(|| ApiError::UnknownTicket {
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
    let (_, platform) = authorize_platform(&state, &req)?;
    let appid = appid_param(&req);
    let body = read_body(&req, payload).await?;
    let parsed: super::tickets::SignatureRequest = json_object(&body).ok_or_else(|| {
        ApiError::BadRequest("body must be JSON {\"url\": \"https://...\"}".into())
    })?;
    let url = super::tickets::signed_url(&parsed)?;
    let ticket =
        authorizer_ticket_record(&state, &platform, &appid, crate::config::TicketKind::Jsapi)
            .await?;
    Ok(super::tickets::signature_answer(&ticket, appid, url))
}
