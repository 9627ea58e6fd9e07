//! The fake's component API on the wire: WeChat's `/cgi-bin/component/*` endpoints and the
//! task that pushes verify tickets on a timer. The `/_fake/component/*` controls are in
//! `component_control`, the [`FakeWechat`](super::FakeWechat) methods for platforms in `component_handle`.
//!
//! Every component endpoint is a POST with a JSON body and answers errors as HTTP 200 with an
//! `errcode`, as WeChat does. The ones that need a component token take it in the
//! `component_access_token` query parameter (older documents, every SDK) or in `access_token`
//! (newer documents). They count their calls, wait out the answer delay and take the faults
//! aimed at them ([`FakeWechat::inject_at`](super::FakeWechat::inject_at)); the shared fault queue is the app endpoints'.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::HttpRequest;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::component_state::{IssuedAuthorizerToken, Listed};
use super::push::{self, Event};
use super::routes::{begin_call, lock, post_json, query_params, wechat_json, wx_error, Shared};
use super::state::{FakeState, WxError};
use super::Endpoint;

/// WeChat pushes a verify ticket about every 10 minutes.
pub const DEFAULT_TICKET_PUSH_INTERVAL: Duration = Duration::from_secs(600);

/// One third-party platform the fake knows.
#[derive(Clone)]
pub struct FakePlatform {
    pub component_appid: String,
    pub component_secret: String,
    /// The message-check Token that signs pushes.
    pub token: String,
    /// The 43-character EncodingAESKey that encrypts pushes.
    pub encoding_aes_key: String,
    /// Where events are pushed (the platform's authorization event receive URL). Usually set
    /// later with [`FakeWechat::set_event_url`](super::FakeWechat::set_event_url), once the server's port is known.
    pub event_url: Option<String>,
}

/// Written by hand so that the secret, the token and the key never reach a log.
impl fmt::Debug for FakePlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakePlatform")
            .field("component_appid", &self.component_appid)
            .field("event_url", &self.event_url)
            .finish_non_exhaustive()
    }
}

/// A component endpoint's answer, once its call is counted and no fault took it.
type Answer = fn(Call) -> Result<Value, WxError>;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    const BASE: &str = "/cgi-bin/component/";
    let endpoints: [(Endpoint, Answer); 7] = [
        (Endpoint::ComponentToken, component_token),
        (Endpoint::StartPushTicket, start_push_ticket),
        (Endpoint::CreatePreauthcode, create_preauthcode),
        (Endpoint::QueryAuth, query_auth),
        (Endpoint::AuthorizerToken, authorizer_token),
        (Endpoint::GetAuthorizerInfo, authorizer_info),
        (Endpoint::GetAuthorizerList, authorizer_list),
    ];
    for (ep, answer) in endpoints {
        let path = format!("{BASE}{}", ep.name());
        cfg.route(
            &path,
            web::route().to(
                move |req: HttpRequest,
                      body: Result<Bytes, actix_web::Error>,
                      state: web::Data<Shared>| async move {
                    let (_answering, faulted) = begin_call(&state, ep).await;
                    if let Some(faulted) = faulted {
                        return faulted;
                    }
                    let result = answer(Call {
                        req: &req,
                        body,
                        state: &state,
                    });
                    match result {
                        Ok(body) => wechat_json(body),
                        Err(err) => wx_error(err),
                    }
                },
            ),
        );
    }
    super::component_control::configure(cfg);
}

/// The per-endpoint counters for `/_fake/counters`, if the fake knows any platform.
pub(super) fn calls_json(s: &FakeState) -> Option<Value> {
    let component = s.component_ref().0;
    component.has_platforms().then(|| {
        Endpoint::COMPONENT
            .into_iter()
            .map(|ep| (ep.name().to_owned(), component.calls(ep).into()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    })
}

/// Pushes a ticket to every platform with an event URL at the configured interval, until the
/// server stops. The interval is watched, so a change takes effect at once.
pub(super) fn spawn_ticket_pushes(state: &web::Data<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut interval = {
        let s = lock(state);
        let component = s.component_ref().0;
        if !component.has_platforms() {
            return;
        }
        component.watch_ticket_interval()
    };
    // Weak: the task must not keep a dropped fake's state alive.
    let weak = Arc::downgrade(&state.clone().into_inner());
    actix_web::rt::spawn(async move {
        loop {
            let every = *interval.borrow_and_update();
            let tick = async {
                if every.is_zero() {
                    std::future::pending::<()>().await;
                } else {
                    tokio::time::sleep(every).await;
                }
            };
            tokio::select! {
                () = tick => {}
                changed = interval.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                _ = stopped.wait_for(|done| *done) => return,
            }
            let Some(state) = weak.upgrade() else {
                return;
            };
            let targets = lock(&state).component_ref().0.pushable();
            for component_appid in targets {
                // Each outcome is recorded with the pushes; a failure is no reason to stop.
                let _ = push::push(&state, &component_appid, Event::Ticket).await;
            }
        }
    });
}

// ---- WeChat endpoints -----------------------------------------------------------------------

/// What a component endpoint gets once its call is counted and no fault took it.
struct Call<'a> {
    req: &'a HttpRequest,
    body: Result<Bytes, actix_web::Error>,
    state: &'a web::Data<Shared>,
}

impl Call<'_> {
    /// The JSON body of a POST: 43002 for another method, 47001 for a body that is not the
    /// expected JSON (fields are optional, so that a missing one gets WeChat's errcode for it).
    fn body<T: DeserializeOwned>(&mut self) -> Result<T, WxError> {
        post_json(
            self.req,
            std::mem::replace(&mut self.body, Ok(Bytes::new())),
        )
    }

    /// The component token, under either of its names.
    fn token(&self) -> Option<String> {
        let mut query = query_params(self.req);
        query
            .remove("component_access_token")
            .or_else(|| query.remove("access_token"))
    }
}

#[derive(Deserialize)]
struct ComponentTokenBody {
    component_appid: Option<String>,
    component_appsecret: Option<String>,
    component_verify_ticket: Option<String>,
}

fn component_token(mut call: Call) -> Result<Value, WxError> {
    let b: ComponentTokenBody = call.body()?;
    let mut s = lock(call.state);
    let (component, m) = s.component();
    let (token, expires_in) = component.component_token(
        b.component_appid.as_deref(),
        b.component_appsecret.as_deref(),
        b.component_verify_ticket.as_deref(),
        &m,
    )?;
    Ok(json!({ "component_access_token": token, "expires_in": expires_in }))
}

#[derive(Deserialize)]
struct StartPushBody {
    component_appid: Option<String>,
    component_secret: Option<String>,
}

/// Answers at once; the ticket follows in a push of its own, as from WeChat.
fn start_push_ticket(mut call: Call) -> Result<Value, WxError> {
    let b: StartPushBody = call.body()?;
    let appid = {
        let mut s = lock(call.state);
        let (component, _) = s.component();
        let appid = b.component_appid.as_deref();
        component.start_push_ticket(appid, b.component_secret.as_deref())?;
        let appid = appid.unwrap_or_default().to_owned();
        component.push_target(&appid).is_ok().then_some(appid)
    };
    if let Some(appid) = appid {
        let state = call.state.clone();
        actix_web::rt::spawn(async move {
            let _ = push::push(&state, &appid, Event::Ticket).await;
        });
    }
    Ok(json!({ "errcode": 0, "errmsg": "ok" }))
}

#[derive(Deserialize)]
struct AppidBody {
    component_appid: Option<String>,
}

fn create_preauthcode(mut call: Call) -> Result<Value, WxError> {
    let b: AppidBody = call.body()?;
    let token = call.token();
    let mut s = lock(call.state);
    let (component, m) = s.component();
    let (code, expires_in) =
        component.create_preauthcode(token.as_deref(), b.component_appid.as_deref(), &m)?;
    Ok(json!({ "pre_auth_code": code, "expires_in": expires_in }))
}

#[derive(Deserialize)]
struct QueryAuthBody {
    component_appid: Option<String>,
    authorization_code: Option<String>,
}

fn func_info_json(ids: &[u32]) -> Value {
    ids.iter()
        .map(|id| json!({ "funcscope_category": { "id": id } }))
        .collect()
}

fn query_auth(mut call: Call) -> Result<Value, WxError> {
    let b: QueryAuthBody = call.body()?;
    let token = call.token();
    let mut s = lock(call.state);
    let (component, m) = s.component();
    let IssuedAuthorizerToken {
        authorizer_appid,
        access_token,
        expires_in,
        refresh_token,
        func_info,
    } = component.query_auth(
        token.as_deref(),
        b.component_appid.as_deref(),
        b.authorization_code.as_deref(),
        &m,
    )?;
    Ok(json!({
        "authorization_info": {
            "authorizer_appid": authorizer_appid,
            "authorizer_access_token": access_token,
            "expires_in": expires_in,
            "authorizer_refresh_token": refresh_token,
            "func_info": func_info_json(&func_info),
        }
    }))
}

#[derive(Deserialize)]
struct AuthorizerTokenBody {
    component_appid: Option<String>,
    authorizer_appid: Option<String>,
    authorizer_refresh_token: Option<String>,
}

fn authorizer_token(mut call: Call) -> Result<Value, WxError> {
    let b: AuthorizerTokenBody = call.body()?;
    let token = call.token();
    let mut s = lock(call.state);
    let (component, m) = s.component();
    let issued = component.authorizer_token(
        token.as_deref(),
        b.component_appid.as_deref(),
        b.authorizer_appid.as_deref(),
        b.authorizer_refresh_token.as_deref(),
        &m,
    )?;
    Ok(json!({
        "authorizer_access_token": issued.access_token,
        "expires_in": issued.expires_in,
        "authorizer_refresh_token": issued.refresh_token,
    }))
}

#[derive(Deserialize)]
struct AuthorizerInfoBody {
    component_appid: Option<String>,
    authorizer_appid: Option<String>,
}

fn authorizer_info(mut call: Call) -> Result<Value, WxError> {
    let b: AuthorizerInfoBody = call.body()?;
    let token = call.token();
    let s = lock(call.state);
    let (component, now) = s.component_ref();
    let a = component.authorizer_info(
        token.as_deref(),
        b.component_appid.as_deref(),
        b.authorizer_appid.as_deref(),
        now,
    )?;
    Ok(json!({
        "authorizer_info": {
            "nick_name": format!("fake account {}", a.authorizer_appid),
            "user_name": format!("gh_{}", a.authorizer_appid),
            "service_type_info": { "id": 2 },
            "verify_type_info": { "id": 0 },
            "principal_name": "fake principal",
            "alias": "",
            "qrcode_url": "",
            "business_info": {},
        },
        "authorization_info": {
            "authorizer_appid": a.authorizer_appid,
            "authorizer_refresh_token": a.refresh_token,
            "func_info": func_info_json(&a.func_info),
        },
    }))
}

#[derive(Deserialize)]
struct ListBody {
    component_appid: Option<String>,
    offset: Option<u64>,
    count: Option<u64>,
}

fn authorizer_list(mut call: Call) -> Result<Value, WxError> {
    let b: ListBody = call.body()?;
    let token = call.token();
    let s = lock(call.state);
    let (component, now) = s.component_ref();
    let (Some(offset), Some(count)) = (b.offset, b.count) else {
        // Both are required; the token and the appid are still checked first.
        component.authorizer_list(token.as_deref(), b.component_appid.as_deref(), 0, 0, now)?;
        return Err(WxError::INVALID_ARGS);
    };
    let (total, page) = component.authorizer_list(
        token.as_deref(),
        b.component_appid.as_deref(),
        offset,
        count,
        now,
    )?;
    let list: Vec<Value> = page
        .into_iter()
        .map(
            |Listed {
                 authorizer_appid,
                 refresh_token,
                 auth_time,
             }| {
                json!({
                    "authorizer_appid": authorizer_appid,
                    "refresh_token": refresh_token,
                    "auth_time": auth_time,
                })
            },
        )
        .collect();
    Ok(json!({ "total_count": total, "list": list }))
}
