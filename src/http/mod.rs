//! The HTTP API: routes, handlers and the JSON they answer.
//!
//! Data flows one way: handler -> authentication -> the app's published status (fast path) or
//! its actor (when a fetch must be waited for) -> JSON.

pub mod admin;
pub mod body;
pub mod component_facade;
pub mod deliveries;
pub mod error;
pub mod facade;
pub mod fast;
pub mod gateway;
pub mod messages;
pub mod platforms;
pub mod preauth;
pub mod proxy_routes;
mod state;
mod tickets;
mod trail;
pub(crate) mod wechat;
pub mod wecom;
pub mod wecom_facade;
mod wecom_gateway;
pub mod wecom_proxy;
pub mod wecom_tickets;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::apps::{AppHandle, Unavailable};
use crate::config::ReadinessScope;
use crate::metrics::ROUTES;
use crate::token::messages::NoValidToken;
use crate::token::{AccessToken, InvalidationOutcome, TokenRecord};
pub(crate) use body::read_body;
pub use body::{BodyDeadline, MAX_BODY};
pub use error::ApiError;
pub use state::ServerState;

/// Longest a business server may cache an answer: WeChat's guidance is about a minute.
pub(crate) const MAX_CLIENT_CACHE_SECS: u64 = 60;

/// Counts and times every request by route template and status (`wxtoken_http_*`).
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req
        .app_data::<web::Data<ServerState>>()
        .map(|s| s.metrics.clone());
    let res = next.call(req).await?;
    if let Some(metrics) = metrics {
        // The template, not the raw path: label values stay a fixed set.
        let route = res.request().match_pattern();
        let path = res.request().path();
        let route = route
            .as_deref()
            .filter(|r| ROUTES.contains(r))
            // The gateway's template matches any two-segment path; only calls its guard let
            // through were routed by it.
            .filter(|r| {
                *r != gateway::PASSTHROUGH_ROUTE
                    || res
                        .request()
                        .app_data::<web::Data<ServerState>>()
                        .is_some_and(|s| s.gateway.settings.is_api_path(path))
            })
            .unwrap_or("unmatched");
        metrics.http_request(route, res.status().as_str(), started.elapsed());
    }
    Ok(res)
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    probe_routes(cfg);
    app_routes(cfg);
    platform_routes(cfg);
    wecom_routes(cfg);
    admin_routes(cfg);
    facade_routes(cfg);
    gateway_routes(cfg);
    cfg.default_service(web::to(not_found));
}

/// `/healthz`, `/readyz`, `/metrics`.
fn probe_routes(cfg: &mut web::ServiceConfig) {
    // Fixed paths first: the router tries resources in order, and these are the probes a load
    // balancer and Prometheus call most, so they should not be matched against every pattern.
    cfg.service(web::resource("/healthz").to(healthz))
        .service(web::resource("/readyz").to(readyz))
        .service(
            web::resource("/metrics")
                .get(metrics)
                .default_service(not_allowed("GET")),
        );
}

/// `/v1/apps/{name}/...`: tokens, tickets, signatures, revoke, the message URL, the proxy route.
fn app_routes(cfg: &mut web::ServiceConfig) {
    // One scope for the per-app routes: `{name}` is matched once, then plain suffixes.
    cfg.service(
        web::scope("/v1/apps/{name}")
            .service(
                web::resource("/token")
                    .get(get_token)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/token/invalidate")
                    .post(invalidate_token)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/ticket/{type}")
                    .get(tickets::get_ticket)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/jssdk/signature")
                    .post(tickets::jssdk_signature)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/revoke")
                    .post(admin::revoke)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/messages")
                    .get(messages::app_check)
                    .post(messages::app_push)
                    .default_service(not_allowed("GET, POST")),
            )
            .service(web::resource("/proxy/{path:.*}").to(proxy_routes::app_proxy)),
    );
}

/// `/v1/platforms/{name}/...`: events, the accounts' message URL, component and authorizer tokens,
/// tickets, the proxy routes, pre-auth links.
fn platform_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/platforms/{name}")
            .service(
                web::resource("/events")
                    .post(platforms::events)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/accounts/{appid}/messages")
                    .get(messages::account_check)
                    .post(messages::account_push)
                    .default_service(not_allowed("GET, POST")),
            )
            .service(
                web::resource("/component_token")
                    .get(platforms::component_token)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/authorizers")
                    .get(platforms::list_authorizers)
                    .post(platforms::add_authorizer)
                    .default_service(not_allowed("GET, POST")),
            )
            .service(
                web::resource("/authorizers/{appid}")
                    .get(platforms::get_authorizer)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/authorizers/{appid}/token")
                    .get(platforms::authorizer_token)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/authorizers/{appid}/token/invalidate")
                    .post(platforms::invalidate_authorizer_token)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/authorizers/{appid}/ticket/{type}")
                    .get(platforms::authorizer_ticket)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/authorizers/{appid}/jssdk/signature")
                    .post(platforms::authorizer_jssdk_signature)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/authorizers/{appid}/proxy/{path:.*}")
                    .to(proxy_routes::authorizer_proxy),
            )
            .service(web::resource("/proxy/{path:.*}").to(proxy_routes::platform_proxy))
            .service(
                web::resource("/preauth")
                    .post(platforms::preauth)
                    .default_service(not_allowed("POST")),
            ),
    );
}

/// `/v1/wecom/...`: a suite's callback URL, suite and corp tokens, corps, pre-auth codes; a
/// provider's token.
fn wecom_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1/wecom/suites/{name}")
            .service(
                web::resource("/events")
                    .get(wecom::url_check)
                    .post(wecom::events)
                    .default_service(not_allowed("GET, POST")),
            )
            .service(
                web::resource("/suite_token")
                    .get(wecom::suite_token)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/corps")
                    .get(wecom::list_corps)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/corps/{corpid}")
                    .get(wecom::get_corp)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/corps/{corpid}/token")
                    .get(wecom::corp_token)
                    .default_service(not_allowed("GET")),
            )
            .service(web::resource("/corps/{corpid}/proxy/{path:.*}").to(wecom_proxy::corp_proxy))
            .service(
                web::resource("/corps/{corpid}/token/invalidate")
                    .post(wecom::invalidate_corp_token)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/corps/{corpid}/ticket/{type}")
                    .get(wecom_tickets::corp_ticket)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/corps/{corpid}/jssdk/signature")
                    .post(wecom_tickets::corp_jssdk_signature)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/preauth")
                    .post(wecom::preauth)
                    .default_service(not_allowed("POST")),
            ),
    )
    .service(
        web::resource("/v1/wecom/providers/{name}/token")
            .get(wecom::provider_token)
            .default_service(not_allowed("GET")),
    );
}

/// `/v1/admin/...`: reconciliation, reload, and the message hub's deliveries.
fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/admin/deliveries")
            .get(deliveries::list)
            .delete(deliveries::discard_many)
            .default_service(not_allowed("GET, DELETE")),
    )
    .service(
        web::resource("/v1/admin/deliveries/{id}")
            .delete(deliveries::discard)
            .default_service(not_allowed("DELETE")),
    )
    .service(
        web::resource("/v1/admin/deliveries/{id}/retry")
            .post(deliveries::retry)
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/v1/admin/pushes/unmatched")
            .get(deliveries::unmatched)
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/v1/admin/platforms/{name}/reconcile")
            .post(platforms::reconcile)
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/v1/admin/reload")
            .post(admin::reload)
            .default_service(not_allowed("POST")),
    );
}

/// The facade's token routes, in WeChat's format.
fn facade_routes(cfg: &mut web::ServiceConfig) {
    // The facade's token routes (also reached as `//cgi-bin/...`: slashes are merged
    // before routing). On WeChat's paths every answer is in WeChat's format.
    cfg.service(
        web::resource("/cgi-bin/token")
            .get(facade::token)
            .default_service(wx_not_allowed("GET")),
    )
    .service(
        web::resource("/cgi-bin/stable_token")
            .post(facade::stable_token)
            .default_service(wx_not_allowed("POST")),
    )
    .service(
        web::resource("/cgi-bin/component/api_component_token")
            .post(component_facade::component_token)
            .default_service(wx_not_allowed("POST")),
    )
    .service(
        web::resource("/cgi-bin/component/api_authorizer_token")
            .post(component_facade::authorizer_token)
            .default_service(wx_not_allowed("POST")),
    )
    .service(
        web::resource("/cgi-bin/component/api_query_auth")
            .post(component_facade::query_auth)
            .default_service(wx_not_allowed("POST")),
    );
    wecom_facade_routes(cfg);
}

/// WeCom's service-provider token calls, in WeCom's format, and the permanent-code exchange
/// refused in both its versions.
fn wecom_facade_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/cgi-bin/service/get_suite_token")
            .post(wecom_facade::suite_token)
            .default_service(wx_not_allowed("POST")),
    )
    .service(
        web::resource("/cgi-bin/service/get_corp_token")
            .post(wecom_facade::corp_token)
            .default_service(wx_not_allowed("POST")),
    )
    .service(
        web::resource("/cgi-bin/service/get_provider_token")
            .post(wecom_facade::provider_token)
            .default_service(wx_not_allowed("POST")),
    )
    .service(
        web::resource([
            "/cgi-bin/service/get_permanent_code",
            "/cgi-bin/service/v2/get_permanent_code",
        ])
        .to(wecom_facade::permanent_code),
    );
}

/// The pass-through: every other call under a WeChat API prefix.
fn gateway_routes(cfg: &mut web::ServiceConfig) {
    // Last: every other call under a WeChat API prefix goes to the gateway. One template
    // for all of them, so the route label of the metrics stays one value.
    cfg.service(
        web::resource(gateway::PASSTHROUGH_ROUTE)
            .guard(actix_web::guard::fn_guard(|ctx| {
                ctx.app_data::<web::Data<ServerState>>()
                    .is_some_and(|s| s.gateway.settings.is_api_path(ctx.head().uri.path()))
            }))
            .to(gateway::passthrough),
    );
}

#[derive(Serialize)]
struct TokenBody<'a> {
    app: &'a str,
    access_token: &'a str,
    expires_in: u64,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refreshed: Option<bool>,
}

/// Clients may cache an answer for at most a minute, and never past its expiry.
pub(crate) fn cache_control(expires_in: u64) -> (header::HeaderName, header::HeaderValue) {
    (header::CACHE_CONTROL, fast::cache_control_value(expires_in))
}

fn token_response(app: &str, rec: &TokenRecord, refreshed: Option<bool>) -> HttpResponse {
    let expires_in = rec.remaining(SystemTime::now()).as_secs();
    let body = TokenBody {
        app,
        access_token: rec.token.expose(),
        expires_in,
        expires_at: rec.expires_at_rfc3339(),
        refreshed,
    };
    HttpResponse::Ok()
        .insert_header(cache_control(expires_in))
        .json(body)
}

/// Authenticates the caller and resolves the app it may read: 401, then 404, then 403.
pub(crate) fn authorize(
    state: &ServerState,
    req: &HttpRequest,
    name: &str,
) -> Result<(Arc<crate::config::ClientSettings>, Arc<AppHandle>), ApiError> {
    let client = state.clients.load().authenticate(req)?;
    let app = state
        .apps
        .load()
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownApp(name.to_string()))?;
    if !client.apps.allows(name) {
        return Err(ApiError::Forbidden {
            client: client.name.clone(),
            app: name.to_string(),
        });
    }
    Ok((client, app))
}

/// Authorizes the request (401, 404, 403), then reads its JSON body (413, 408, 400 with `hint`
/// when it is not a JSON object of the right shape).
pub(crate) async fn authorized_json<T: serde::de::DeserializeOwned>(
    state: &ServerState,
    req: &HttpRequest,
    name: &str,
    payload: web::Payload,
    hint: &str,
) -> Result<(Arc<crate::config::ClientSettings>, Arc<AppHandle>, T), ApiError> {
    let (client, app) = authorize(state, req, name)?;
    let body = read_body(req, payload).await?;
    let parsed = body::json_object(&body).ok_or_else(|| ApiError::BadRequest(hint.into()))?;
    Ok((client, app, parsed))
}

pub(crate) fn no_valid_token(app: &str, e: NoValidToken) -> ApiError {
    let (why, errcode) = match &e.last_failure {
        Some(f) => (format!("last fetch failed: {}", f.message), f.errcode),
        None => ("no token fetched yet".to_string(), None),
    };
    ApiError::NoValidToken {
        app: app.to_string(),
        why,
        errcode,
    }
}

pub(crate) fn actor_unavailable(app: &str) -> ApiError {
    ApiError::Unavailable(format!(
        "token service for app `{app}` did not answer in time"
    ))
}

/// Why `label`'s credential could not be had, as the `/v1/` routes answer it: 503
/// `no_valid_token` (with the last errcode) or `unavailable`.
pub(crate) fn unavailable(label: &str, u: Unavailable) -> ApiError {
    match u {
        Unavailable::NoToken(e) => no_valid_token(label, e),
        Unavailable::NoAnswer => actor_unavailable(label),
    }
}

/// The body of every invalidation route: `{"access_token": "<the token WeChat rejected>"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvalidateBody {
    access_token: String,
}

impl InvalidateBody {
    /// How a malformed body is refused.
    pub(crate) const HINT: &'static str =
        "body must be JSON {\"access_token\": \"<the token WeChat rejected>\"}";

    /// The reported token; 400 for an empty (or blank) one.
    pub(crate) fn rejected(self) -> Result<AccessToken, ApiError> {
        if self.access_token.trim().is_empty() {
            return Err(ApiError::BadRequest(
                "access_token must not be empty".into(),
            ));
        }
        Ok(AccessToken::new(self.access_token))
    }
}

async fn get_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // Borrowed from the match, not extracted into a `String`: this is the hot path.
    let name = req.match_info().get("name").unwrap_or_default();
    let (client, app) = authorize(&state, &req, name)?;
    // Fast path: the actor's published snapshot, no message round trip.
    let now = SystemTime::now();
    if let Some(rec) = app.status.load().valid_token(now) {
        state.audit.read(&client.name, &app.name, &rec.token);
        return Ok(fast::token_answer(&app.name, rec, &state.rendered, now));
    }
    let rec = app
        .current(state.wait_limit)
        .await
        .map_err(|u| unavailable(&app.name, u))?;
    state.audit.read(&client.name, &app.name, &rec.token);
    Ok(token_response(&app.name, &rec, None))
}

async fn invalidate_token(
    state: web::Data<ServerState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (client, app, parsed): (_, _, InvalidateBody) =
        authorized_json(&state, &req, &name, payload, InvalidateBody::HINT).await?;
    let rejected = parsed.rejected()?;
    let inv = app
        .credential()
        .report_rejected(&rejected, state.wait_limit)
        .await
        .map_err(|u| unavailable(&app.name, u))?;
    trail::refetched(
        &state.audit,
        &trail::caller(&req, &client.name),
        &app.name,
        &rejected,
        &inv,
    );
    if matches!(
        inv.outcome,
        InvalidationOutcome::Alive | InvalidationOutcome::Capped
    ) {
        // The actor does not know who reported; the operator chasing a refused report does.
        tracing::info!(client = %client.name, app = %app.name, outcome = inv.outcome.as_str(),
            "invalidation answered with the token in service, no refetch");
    }
    Ok(token_response(&app.name, &inv.record, Some(inv.refreshed)))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"status": "ok"}))
}

#[derive(Serialize)]
struct Readiness<'a> {
    ready: bool,
    /// What `ready` is about: `apps` (every credential holds a token) or `instance` (this
    /// instance can serve).
    scope: &'static str,
    /// Every app's state; above [`READYZ_LIST_ALL_MAX`] apps, only (some of) those that are not
    /// `ok`.
    apps: BTreeMap<&'a str, Cow<'static, str>>,
    /// Above [`READYZ_LIST_ALL_MAX`] apps: how many are `ok` (and left out of `apps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    apps_ok: Option<usize>,
    /// Above [`READYZ_LIST_ALL_MAX`] apps: how many are not, of which `apps` lists the first
    /// [`READYZ_LIST_ALL_MAX`] in configuration order.
    #[serde(skip_serializing_if = "Option::is_none")]
    apps_not_ready: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<StoreReadiness>,
    /// Each platform's state: its component token (reported, never a reason to be unready:
    /// the first ticket push has to reach this instance through the load balancer), or its
    /// records the store could not save yet (unready, as for tokens).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    platforms: BTreeMap<&'a str, String>,
    /// Each WeCom suite's state (its suite token, or unsaved records) and each provider's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    wecom: BTreeMap<&'a str, String>,
}

/// Up to this many apps `/readyz` lists each one; above, it lists those that are not ready and
/// counts the rest (`?verbose=true` lists all). A load balancer probing an instance of 100,000
/// apps every few seconds would otherwise fetch megabytes of `"ok"` each time.
const READYZ_LIST_ALL_MAX: usize = 1000;

#[derive(Deserialize)]
struct ReadyzQuery {
    #[serde(default)]
    verbose: bool,
    /// `apps` or `instance`; anything else is the configured default.
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Serialize)]
struct StoreReadiness {
    kind: &'static str,
    up: bool,
    detail: String,
}

/// One app's readiness: `None` when it is `ok`, else why not and whether that makes the
/// instance unready in `scope`.
fn app_readiness(
    app: &AppHandle,
    not_durable: &[String],
    scope: ReadinessScope,
    now: SystemTime,
) -> Option<(Cow<'static, str>, bool)> {
    // A supervised actor keeps its address across restarts: a disconnected one has stopped
    // for good, and this instance can no longer refresh that credential whatever it holds.
    let stopped = !app.addr.connected() || app.tickets.values().any(|t| !t.addr.connected());
    if stopped {
        return Some((
            "token actor is not running: this instance cannot refresh it".into(),
            true,
        ));
    }
    let status = app.status.load();
    let unsaved: Vec<&str> = not_durable
        .iter()
        .filter(|k| {
            k.as_str() == app.name
                || k.strip_prefix(app.name.as_str())
                    .is_some_and(|rest| rest.starts_with("/ticket/"))
        })
        .map(String::as_str)
        .collect();
    if !unsaved.is_empty() {
        // Served while valid, but a restart now would bring back a token WeChat has replaced:
        // the instance is out of rotation until the store has caught up, in either scope.
        let why = if status.valid_token(now).is_some() {
            "serving a token that is not saved yet (the store keeps retrying)"
        } else {
            "a record is not saved yet (the store keeps retrying)"
        };
        return Some((format!("{why}: {}", unsaved.join(", ")).into(), true));
    }
    if status.valid_token(now).is_some() {
        return None;
    }
    let why = match &status.last_failure {
        Some(f) => match f.errcode {
            Some(code) => format!(
                "no valid token: last fetch failed with errcode {code} ({}, {})",
                f.message,
                f.class.as_str()
            ),
            None => format!(
                "no valid token: last fetch failed ({}: {})",
                f.reason, f.message
            ),
        },
        None => "no valid token yet: first fetch in progress".to_string(),
    };
    // One credential without a token (a wrong AppSecret, an IP whitelist) is that
    // credential's problem: the instance still serves every other one.
    Some((why.into(), scope == ReadinessScope::Apps))
}

/// Ready, in the `apps` scope, when every app holds a valid token; in the `instance` scope,
/// when this instance can serve: every token actor runs and the store has saved every record.
/// Either way each app that is not `ok` is listed with why. A shared store's health is
/// reported too, but does not make the instance unready: with a valid token it keeps serving
/// through a Redis outage, and taking every instance out of a load balancer because Redis is
/// down would turn that outage into a full one. A record the local store could not save does
/// make it unready (while still serving it): a restart would bring back an old token.
async fn readyz(state: web::Data<ServerState>, req: HttpRequest) -> HttpResponse {
    // A malformed query is not worth a failed probe: it gets the default answer.
    let query = web::Query::<ReadyzQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or(ReadyzQuery {
            verbose: false,
            scope: None,
        });
    let verbose = query.verbose;
    let scope = query
        .scope
        .as_deref()
        .and_then(ReadinessScope::parse)
        .unwrap_or(state.readiness);
    let now = SystemTime::now();
    let running = state.apps.load();
    let list_all = verbose || running.len() <= READYZ_LIST_ALL_MAX;
    let mut apps = BTreeMap::new();
    let (mut ok, mut not_ready) = (0, 0);
    let mut ready = true;
    // Key names of records a save failed for: the app's own, or `app/ticket/kind`.
    let not_durable = state.store.not_durable();
    for app in running.iter() {
        let Some((why, unready)) = app_readiness(app, &not_durable, scope, now) else {
            ok += 1;
            if list_all {
                apps.insert(app.name.as_str(), Cow::Borrowed("ok"));
            }
            continue;
        };
        ready &= !unready;
        not_ready += 1;
        if list_all || apps.len() < READYZ_LIST_ALL_MAX {
            apps.insert(app.name.as_str(), why);
        }
    }
    let mut platforms = BTreeMap::new();
    let mut wecom = BTreeMap::new();
    for (name, p) in &state.platforms {
        let (why, unready) = p.readiness(now);
        ready &= !unready;
        platforms.insert(name.as_str(), why);
    }
    for (name, s) in &state.wecom_suites {
        let (why, unready) = s.readiness(now);
        ready &= !unready;
        wecom.insert(name.as_str(), why);
    }
    for (name, p) in &state.wecom_providers {
        wecom.insert(name.as_str(), p.readiness(now));
    }
    let mut resp = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    resp.insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Readiness {
            ready,
            scope: scope.as_str(),
            apps,
            apps_ok: (!list_all).then_some(ok),
            apps_not_ready: (!list_all).then_some(not_ready),
            platforms,
            wecom,
            store: state.store.health().map(|h| StoreReadiness {
                kind: h.kind,
                up: h.up,
                detail: h.detail,
            }),
        })
}

async fn metrics(state: web::Data<ServerState>) -> HttpResponse {
    // The per-credential gauges are computed by the collector from the running apps.
    let text = state.metrics.render();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound)
}

/// The default service of a facade route that only takes `allow`: WeChat's format (an SDK
/// reads `errcode`), with the 405 status and `Allow` header.
fn wx_not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move {
        // WeChat's own codes: 43001 "require GET method", 43002 "require POST method".
        let errcode = if allow == "GET" { 43001 } else { 43002 };
        let mut resp = gateway::wx_error(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            errcode,
            &format!("require {allow} method"),
        );
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        resp
    })
}

/// The default service of a resource that only takes `allow`: a JSON 405 with an `Allow`
/// header, like every other error.
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move {
        actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed { allow })
    })
}
