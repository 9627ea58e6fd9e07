//! A fake of WeChat's credential API over real HTTP(S), for the integration tests, `wxtoken demo`
//! and `wxtoken fake-wechat`.
//!
//! It models what `shared/wechat-api.md` says about the real service: `/cgi-bin/token` mints a
//! new token on every call (the previous one overlaps for a while, older ones die), the stable
//! token is reused until its last minutes, `force_refresh` is rate-limited, quotas run out, and
//! every error is an HTTP 200 with an `errcode`. JS-SDK tickets (`/cgi-bin/ticket/getticket`)
//! rotate like `/cgi-bin/token` tokens. WeCom's `/cgi-bin/gettoken` is served on the same address
//! (point both base URLs at the fake): one token per (corpid, corpsecret), the same one until it
//! dies, and WeCom's early invalidation on demand. Tests break it on purpose with [`Fault`]s and
//! move its clock with [`FakeWechat::advance_clock`] instead of sleeping. Third-party platforms
//! (the component API under `/cgi-bin/component/`) are served too, with encrypted event pushes
//! to the server's event URL. A few business endpoints (user info, followers, menu, customer
//! service messages, temporary media, the Mini Program and OAuth logins) check the
//! `access_token` they are given as WeChat does, so that a gateway in front of them can be tested.
//!
//! Modules: `state` (all rules and bookkeeping, no HTTP), `routes` (the endpoints and fault
//! injection on the wire), `tls` (PEM to rustls), `component_state` and `component` (the same
//! two for the component API), `component_control` (its `/_fake/component/*` controls),
//! `component_handle` (its [`FakeWechat`] methods), `push` (event pushes), `business` (the
//! business endpoints, their records and their [`FakeWechat`] methods), `hostile` (a lenient
//! front end's path reading, echoing logins and leaky component answers, for the gateway's
//! tests), `reported` (what tests of reported tokens need: the component token's probe, a path
//! that rejects valid tokens, and a control that kills a token). Beside the fake WeChat,
//! `inbox` is a fake business receiver of the message hub's deliveries ([`FakeInbox`]).

mod business;
mod component;
mod component_control;
mod component_handle;
mod component_state;
mod hostile;
pub mod inbox;
pub mod messages;
mod push;
mod reported;
mod routes;
mod state;
mod tls;
mod wecom_business;
mod wecom_suite;
mod wecom_suite_control;
mod wecom_suite_handle;
mod wecom_suite_state;

pub use business::{multipart_body, FakeApiRequest};
pub use component::{FakePlatform, DEFAULT_TICKET_PUSH_INTERVAL};
pub use component_state::{bulk_authorizer_appid, Authorized, AuthorizerState, ControlError};
pub use inbox::{FakeInbox, InboxMode, Received};
pub use push::PushRecord;
pub use wecom_suite::SuitePush;
pub use wecom_suite_control::bulk_corpid;
pub use wecom_suite_state::{CorpState, FakeSuite};

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use tokio::sync::watch;

use routes::{lock, Shared};
use state::FakeState;

/// How long a graceful [`FakeWechat::stop`] waits for requests in flight (a `Slow` fault, say)
/// before closing them: tests must not hang on a fault they injected.
const SHUTDOWN_TIMEOUT_SECS: u64 = 1;

/// What the fake serves and how it behaves.
#[derive(Clone)]
pub struct FakeConfig {
    /// `(appid, secret)` pairs: the valid credentials.
    pub apps: Vec<(String, String)>,
    /// WeCom `(corpid, corpsecret)` pairs for `/cgi-bin/gettoken`. A corpid may appear with
    /// several secrets: each WeCom app of a corp has its own secret and its own token.
    pub wecom_apps: Vec<(String, String)>,
    /// Lifetime of minted tokens and tickets, seconds (default 7200; 0 is taken as 1).
    pub expires_in: u64,
    /// How long a replaced `/cgi-bin/token` token or ticket stays valid (default 300 s).
    pub overlap_secs: u64,
    /// Length of minted tokens, clamped to 16..=4096 (`upstream::MAX_CREDENTIAL_LEN`; default 64).
    pub token_len: usize,
    /// Successful `/cgi-bin/token` calls per appid per fake day before errcode 45009 (default 2000).
    pub daily_quota: u32,
    /// Where to listen (default 127.0.0.1:0, a free port).
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate instead of HTTP.
    pub tls: Option<FakeTls>,
    /// Every token, ticket and component call waits this long before it is answered (default none): a
    /// WeChat with real latency, for load tests. Unlike [`Fault::Slow`], it applies to all.
    pub answer_delay: Duration,
    /// Third-party platforms the component API knows (default none).
    pub platforms: Vec<FakePlatform>,
    /// How often a verify ticket is pushed to every platform with an event URL (default 600 s,
    /// as WeChat; zero: never on its own, only on demand).
    pub ticket_push_interval: Duration,
    /// WeCom suites and templates the service-provider API knows (default none).
    pub wecom_suites: Vec<FakeSuite>,
    /// WeCom providers `(corpid, provider_secret)` for `get_provider_token`.
    pub wecom_providers: Vec<(String, String)>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            apps: Vec::new(),
            wecom_apps: Vec::new(),
            expires_in: 7200,
            overlap_secs: 300,
            token_len: 64,
            daily_quota: 2000,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tls: None,
            answer_delay: Duration::ZERO,
            platforms: Vec::new(),
            ticket_push_interval: DEFAULT_TICKET_PUSH_INTERVAL,
            wecom_suites: Vec::new(),
            wecom_providers: Vec::new(),
        }
    }
}

/// Written by hand so that secrets never reach a log through `{:?}`.
impl fmt::Debug for FakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let appids: Vec<&str> = self.apps.iter().map(|(appid, _)| appid.as_str()).collect();
        let corpids: Vec<&str> = self
            .wecom_apps
            .iter()
            .map(|(corpid, _)| corpid.as_str())
            .collect();
        f.debug_struct("FakeConfig")
            .field("appids", &appids)
            .field("wecom_corpids", &corpids)
            .field("expires_in", &self.expires_in)
            .field("overlap_secs", &self.overlap_secs)
            .field("token_len", &self.token_len)
            .field("daily_quota", &self.daily_quota)
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("answer_delay", &self.answer_delay)
            .field("platforms", &self.platforms)
            .field("ticket_push_interval", &self.ticket_push_interval)
            .field("wecom_suites", &self.wecom_suites)
            .finish_non_exhaustive()
    }
}

/// The credentials of generated app `index`, as `wxtoken fake-wechat --bench-apps N` accepts
/// them: appid `wxbench` and the index in 11 digits (18 characters, like a real appid), secret
/// `benchsecret` and the index in 21 digits (32, like an AppSecret). Derived from the index, not
/// random, so that a benchmark script can write the matching server configuration with `printf`;
/// they guard nothing but a fake.
pub fn bench_credentials(index: u32) -> (String, String) {
    (
        format!("wxbench{index:011}"),
        format!("benchsecret{index:021}"),
    )
}

/// PEM text for HTTPS: the certificate chain (leaf first) and its private key.
#[derive(Clone)]
pub struct FakeTls {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Written by hand so that the private key never reaches a log.
impl fmt::Debug for FakeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTls").finish_non_exhaustive()
    }
}

/// The fake's WeChat endpoints, for [`FakeWechat::calls`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /cgi-bin/token`
    Token,
    /// `POST /cgi-bin/stable_token`
    StableToken,
    /// `GET /cgi-bin/get_api_domain_ip`, the validity probe
    Probe,
    /// `GET /cgi-bin/ticket/getticket` (jsapi and wx_card together)
    Ticket,
    /// WeCom `GET /cgi-bin/gettoken`
    WecomToken,
    /// `POST /cgi-bin/component/api_component_token`
    ComponentToken,
    /// `POST /cgi-bin/component/api_start_push_ticket`
    StartPushTicket,
    /// `POST /cgi-bin/component/api_create_preauthcode`
    CreatePreauthcode,
    /// `POST /cgi-bin/component/api_query_auth`
    QueryAuth,
    /// `POST /cgi-bin/component/api_authorizer_token`
    AuthorizerToken,
    /// `POST /cgi-bin/component/api_get_authorizer_info`
    GetAuthorizerInfo,
    /// `POST /cgi-bin/component/api_get_authorizer_list`
    GetAuthorizerList,
    /// The business API, every path together (`/cgi-bin/user/info`, `/cgi-bin/media/upload`,
    /// `/sns/jscode2session`, ...; [`FakeWechat::api_calls`] counts per path). Faults aimed at it
    /// with [`FakeWechat::inject_at`] break every business call; the shared queue of
    /// [`FakeWechat::inject`] never does, nor does the answer delay, and business calls are not
    /// counted in flight: those are about fetching credentials.
    Api,
}

impl Endpoint {
    /// The component API's endpoints.
    pub const COMPONENT: [Endpoint; 7] = [
        Endpoint::ComponentToken,
        Endpoint::StartPushTicket,
        Endpoint::CreatePreauthcode,
        Endpoint::QueryAuth,
        Endpoint::AuthorizerToken,
        Endpoint::GetAuthorizerInfo,
        Endpoint::GetAuthorizerList,
    ];

    /// The endpoints besides [`Endpoint::COMPONENT`]: with them, every endpoint.
    const NOT_COMPONENT: [Endpoint; 6] = [
        Endpoint::Token,
        Endpoint::StableToken,
        Endpoint::Probe,
        Endpoint::Ticket,
        Endpoint::WecomToken,
        Endpoint::Api,
    ];

    /// Its name in the `endpoint` of `POST /_fake/fault` and, for the component endpoints, in
    /// the `component_calls` of `/_fake/counters`: the last part of its path (`token`,
    /// `stable_token`, `get_api_domain_ip`, `getticket`, `gettoken`, `api_component_token`, ...),
    /// and `api` for the business API.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::StableToken => "stable_token",
            Endpoint::Probe => "get_api_domain_ip",
            Endpoint::Ticket => "getticket",
            Endpoint::WecomToken => "gettoken",
            Endpoint::ComponentToken => "api_component_token",
            Endpoint::StartPushTicket => "api_start_push_ticket",
            Endpoint::CreatePreauthcode => "api_create_preauthcode",
            Endpoint::QueryAuth => "api_query_auth",
            Endpoint::AuthorizerToken => "api_authorizer_token",
            Endpoint::GetAuthorizerInfo => "api_get_authorizer_info",
            Endpoint::GetAuthorizerList => "api_get_authorizer_list",
            Endpoint::Api => "api",
        }
    }

    /// The endpoint of that [`Endpoint::name`].
    pub fn parse(name: &str) -> Option<Endpoint> {
        Endpoint::NOT_COMPONENT
            .into_iter()
            .chain(Endpoint::COMPONENT)
            .find(|ep| ep.name() == name)
    }
}

/// A failure to answer the next token calls with, instead of the normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 200 `{"errcode":N,"errmsg":"..."}` with WeChat's errmsg for N ("fault injected" for
    /// codes the fake has no message for).
    Errcode(i64),
    /// That HTTP status with a short text body (500 if the number is not a status).
    Http(u16),
    /// HTTP 200 with an HTML body, as from a misbehaving proxy.
    NotJson,
    /// Wait that long, then answer normally.
    Slow(Duration),
    /// Close the connection without answering: the client sees the connection end before any
    /// response head arrives.
    Drop,
}

/// What the fake thinks of a token (the probe's answer, in-process) or of a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// Works.
    Valid,
    /// Killed by a newer token before its expiry (probe: 40001).
    Replaced,
    /// Reached its expiry (probe: 42001), or, for a WeCom token, ended early by
    /// [`FakeWechat::expire_wecom_token`] (probe: 40014, as WeCom answers).
    Expired,
    /// Never minted here, or forgotten long ago (probe: 40001).
    Unknown,
}

/// Handle to a running fake. Clones share the server; dropping the last handle stops it (not
/// gracefully), so nothing keeps running by accident; [`FakeWechat::stop`] stops it gracefully.
#[derive(Clone)]
pub struct FakeWechat {
    inner: Arc<Inner>,
}

struct Inner {
    state: web::Data<Shared>,
    modes: web::Data<hostile::Modes>,
    addr: SocketAddr,
    https: bool,
    server: ServerHandle,
    /// Becomes true once the server task has finished.
    stopped: watch::Receiver<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // `stop` sends its command when called; the returned future only waits for completion,
        // which a destructor cannot do.
        drop(self.server.stop(false));
    }
}

impl fmt::Debug for FakeWechat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeWechat")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl FakeWechat {
    /// Binds `cfg.listen`, spawns the server on the current runtime (an actix System, or any
    /// tokio runtime), and returns once the socket is listening. A fake with platforms needs the
    /// actix System: its event pushes use awc.
    pub async fn start(cfg: FakeConfig) -> io::Result<FakeWechat> {
        let tls_config = cfg.tls.as_ref().map(tls::server_config).transpose()?;
        let listener = std::net::TcpListener::bind(cfg.listen)?;
        let addr = listener.local_addr()?;
        let state = web::Data::new(Shared::new(FakeState::new(&cfg)));

        let modes = web::Data::new(hostile::Modes::default());
        let app_state = state.clone();
        let app_modes = modes.clone();
        // One worker: the fake's work is a few microseconds under a mutex, and tests start
        // many fakes, each of which would otherwise spawn a thread per core.
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(app_modes.clone())
                .wrap(actix_web::middleware::from_fn(hostile::apply))
                .configure(routes::configure)
        })
        .workers(1)
        // Whoever owns the handle decides when the fake stops; see `run_until_signal`.
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
        let https = tls_config.is_some();
        let server = match tls_config {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();

        let handle = server.handle();
        let (stopped_tx, stopped) = watch::channel(false);
        tokio::spawn(async move {
            if let Err(err) = server.await {
                tracing::warn!(%err, "fake wechat server ended with an error");
            }
            // Nobody listening just means every handle is gone.
            let _ = stopped_tx.send(true);
        });
        component::spawn_ticket_pushes(&state, stopped.clone());
        tracing::debug!(%addr, https, "fake wechat listening");

        Ok(FakeWechat {
            inner: Arc::new(Inner {
                state,
                modes,
                addr,
                https,
                server: handle,
                stopped,
            }),
        })
    }

    /// Reads paths as a lenient front end does: `//` as `/`, `;params` dropped (see
    /// `hostile.rs`).
    pub fn set_lenient_paths(&self, on: bool) {
        self.inner
            .modes
            .lenient_paths
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes the two logins that take the AppSecret answer with the whole request repeated
    /// (in `errmsg` and a `Location` header), as a hostile or careless upstream may.
    pub fn set_echoing_logins(&self, on: bool) {
        self.inner
            .modes
            .echoing_logins
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes every JSON answer under `/cgi-bin/component/` carry `leaked` (refresh tokens) in
    /// hostile shapes: odd key spellings, JSON inside a string, free text (see `hostile.rs`).
    /// Empty: off.
    pub fn leak_in_component_answers(&self, leaked: Vec<String>) {
        *self
            .inner
            .modes
            .leaked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = leaked;
    }

    /// The address the server listens on (with the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT` or `https://...`, without a trailing slash. A wildcard listen
    /// address is reported as loopback, which is where a local client can reach it.
    pub fn base_url(&self) -> String {
        let mut addr = self.inner.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let scheme = if self.inner.https { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// Requests received on that endpoint, faulted ones included.
    pub fn calls(&self, ep: Endpoint) -> u64 {
        let calls = self.lock().calls();
        match ep {
            Endpoint::Token => calls.token,
            Endpoint::StableToken => calls.stable_token,
            Endpoint::Probe => calls.probe,
            Endpoint::Ticket => calls.ticket,
            Endpoint::WecomToken => calls.wecom_token,
            Endpoint::Api => calls.api,
            component => self.lock().component_ref().0.calls(component),
        }
    }

    /// The most calls to any endpoint but the probe that were being answered at the same time
    /// since the start: a client's concurrency, seen from the wire.
    pub fn peak_in_flight(&self) -> u64 {
        self.lock().peak_in_flight()
    }

    /// The most calls to `ep` that were being answered at the same time since the start: for
    /// example how many code exchanges (`Endpoint::QueryAuth`) a server runs at once.
    pub fn peak_in_flight_at(&self, ep: Endpoint) -> u64 {
        self.lock().peak_in_flight_at(ep)
    }

    /// Calls to any endpoint but the probe being answered now.
    pub fn in_flight(&self) -> u64 {
        self.lock().in_flight()
    }

    /// From now on, every token, ticket and component call waits `delay` before it is answered.
    pub fn set_answer_delay(&self, delay: Duration) {
        self.lock().answer_delay = delay;
    }

    /// New tokens minted for that appid, both families together. A stable_token call that
    /// hands back the current token mints nothing; see [`FakeWechat::fetched`].
    pub fn minted(&self, appid: &str) -> u64 {
        self.lock().minted(appid)
    }

    /// Successful token answers for that appid, both families, whether minted or reused.
    pub fn fetched(&self, appid: &str) -> u64 {
        self.lock().fetched(appid)
    }

    /// The next `times` calls to the credential endpoints (Token, StableToken, Ticket and
    /// WecomToken, in whatever order they come) get `fault`, after any faults injected earlier
    /// are used up. The probe never gets faults.
    pub fn inject(&self, fault: Fault, times: u32) {
        self.lock().inject(fault, times);
    }

    /// The next `times` calls to `ep` get `fault`, before any faults of [`FakeWechat::inject`]:
    /// the one way to break a component endpoint, or one app endpoint among the others. Faults
    /// aimed at the probe are never used.
    pub fn inject_at(&self, ep: Endpoint, fault: Fault, times: u32) {
        self.lock().inject_at(ep, fault, times);
    }

    /// Forgets every fault not yet used.
    pub fn clear_faults(&self) {
        self.lock().clear_faults();
    }

    /// Lifetime of tokens and tickets minted from now on (0 is taken as 1).
    pub fn set_expires_in(&self, secs: u64) {
        self.lock().set_expires_in(secs);
    }

    /// Moves the fake's clock forward: expiry (of tokens and tickets), overlap, the stable
    /// rotation window, the 30 s force-refresh gap and the daily quotas all follow it. Real time keeps running too.
    pub fn advance_clock(&self, by: Duration) {
        self.lock().advance(by);
    }

    /// What the probe would answer for this token, without counting a probe call.
    pub fn validity(&self, token: &str) -> Validity {
        self.lock().validity(token)
    }

    /// The latest token `/cgi-bin/token` minted for that appid.
    pub fn current_token(&self, appid: &str) -> Option<String> {
        self.lock().current_token(appid)
    }

    /// The latest token `/cgi-bin/stable_token` minted for that appid.
    pub fn current_stable_token(&self, appid: &str) -> Option<String> {
        self.lock().current_stable_token(appid)
    }

    /// Tickets getticket minted for that appid, jsapi and wx_card together.
    pub fn tickets_minted(&self, appid: &str) -> u64 {
        self.lock().tickets_minted(appid)
    }

    /// What the fake thinks of a ticket: `Valid`, `Replaced` (two generations old, or one past
    /// the overlap), `Expired` or `Unknown`.
    pub fn ticket_validity(&self, ticket: &str) -> Validity {
        self.lock().ticket_validity(ticket)
    }

    /// The latest ticket of that type (`"jsapi"` or `"wx_card"`) minted for that appid.
    pub fn current_ticket(&self, appid: &str, kind: &str) -> Option<String> {
        self.lock().current_ticket(appid, kind)
    }

    /// New tokens WeCom's gettoken minted for that (corpid, corpsecret) app; calls that
    /// handed back the living token mint nothing.
    pub fn wecom_minted(&self, corpid: &str, secret: &str) -> u64 {
        self.lock().wecom_minted(corpid, secret)
    }

    /// The token gettoken would hand that WeCom app now, while it lives (`None` once it has
    /// expired or been ended early: the next call mints a new one).
    pub fn current_wecom_token(&self, corpid: &str, secret: &str) -> Option<String> {
        self.lock().current_wecom_token(corpid, secret)
    }

    /// Ends that WeCom app's current token now, as WeCom may do early: the probe answers it
    /// with 40014, [`FakeWechat::validity`] says `Expired`, and the next gettoken mints a new
    /// token. Does nothing if the app has no living token.
    pub fn expire_wecom_token(&self, corpid: &str, secret: &str) {
        self.lock().expire_wecom_token(corpid, secret);
    }

    /// Stops accepting, lets requests in flight finish (at most about a second), and returns
    /// when the server is down. Other clones of the handle see a stopped server.
    pub async fn stop(self) {
        self.inner.server.stop(true).await;
        self.stopped().await;
    }

    /// Resolves once the server has stopped, by whichever handle.
    pub async fn stopped(&self) {
        let mut stopped = self.inner.stopped.clone();
        // An error means the server task is gone, which is stopped too.
        let _ = stopped.wait_for(|done| *done).await;
    }

    /// Serves until SIGINT (Ctrl-C) or SIGTERM, then stops gracefully: the body of
    /// `wxtoken fake-wechat` once it has printed [`FakeWechat::base_url`].
    pub async fn run_until_signal(self) -> io::Result<()> {
        tokio::select! {
            signal = shutdown_signal() => signal?,
            () = self.stopped() => return Ok(()),
        }
        tracing::info!("fake wechat stopping on signal");
        self.stop().await;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        lock(&self.inner.state)
    }
}

#[cfg(unix)]
async fn shutdown_signal() -> io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn shutdown_signal() -> io::Result<()> {
    tokio::signal::ctrl_c().await
}
