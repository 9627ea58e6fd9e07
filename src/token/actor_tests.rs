//! Unit tests of the token actor's state machine on paused tokio time: an in-memory store, a
//! scripted fetch and a clock that moves with tokio's, so two-hour lifetimes, backoffs and
//! coalescing windows are checked exactly and in milliseconds.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use futures_util::future::{BoxFuture, LocalBoxFuture};
use secrecy::SecretString;

use super::actor::{ActorConfig, Credential};
use super::clock::{SharedClock, TokioClock};
use super::fetch::{FetchRequest, Fetcher, ProbeRequest};
use super::messages::{
    ForceRestart, Get, InputsChanged, Invalidate, Revoke, StoreChanged, Subscribe,
};
use super::spec::CredentialSpec;
use super::{AccessToken, AppStatus, SharedStatus, TokenActor, TokenRecord};
use crate::config::{AppKind, AppSettings, Grant, RefreshSettings, SecretSource, TicketKind};
use crate::metrics::Metrics;
use crate::status::InvalidationOutcome;
use crate::store::{
    stored_from_fetch, AppKey, Basis, Budget, FetchFn, RefreshError, RefreshFuture, Refreshed,
    Stored, TokenStore,
};
use crate::upstream::{Fetched, ProbeKind, UpstreamError};

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;
const LIFETIME: Duration = Duration::from_secs(7200);

/// Equal but for tokio's timer granularity (a millisecond per timer).
fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= MS(10)
}

/// A store in memory. Like the shared store it adopts a newer record instead of fetching,
/// so the tests can play "another instance refreshed".
#[derive(Default)]
struct MemoryStore {
    records: Mutex<HashMap<String, Stored>>,
    /// Plays a shared store: the actor then re-reads it periodically and on notifications.
    shared: bool,
    /// How long a read takes to answer (it reads the record when asked).
    load_delay: Duration,
    /// When each read was asked for, and whether it was a periodic (lazy) one.
    loads: Mutex<Vec<(tokio::time::Instant, bool)>>,
    /// Plays the fleet's forced-refresh budget being used up by other instances: refreshes
    /// that would force are refused while it is set.
    fleet_refuses_force: std::sync::atomic::AtomicBool,
    /// The `force` of every refresh asked for.
    forces: Mutex<Vec<bool>>,
}

impl MemoryStore {
    fn put(&self, appid: &str, stored: Stored) {
        self.records.lock().unwrap().insert(appid.into(), stored);
    }

    fn shared() -> Arc<MemoryStore> {
        Arc::new(MemoryStore {
            shared: true,
            ..MemoryStore::default()
        })
    }

    fn read(&self, key: &AppKey, lazy: bool) -> BoxFuture<'static, anyhow::Result<Option<Stored>>> {
        self.loads
            .lock()
            .unwrap()
            .push((tokio::time::Instant::now(), lazy));
        let r = self.records.lock().unwrap().get(&key.appid).cloned();
        let delay = self.load_delay;
        if delay.is_zero() {
            return Box::pin(std::future::ready(Ok(r)));
        }
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(r)
        })
    }

    /// The reads asked for so far: (urgent, lazy).
    fn reads(&self) -> (usize, usize) {
        let loads = self.loads.lock().unwrap();
        let lazy = loads.iter().filter(|(_, lazy)| *lazy).count();
        (loads.len() - lazy, lazy)
    }
}

impl TokenStore for MemoryStore {
    fn load(&self, key: &AppKey) -> BoxFuture<'static, anyhow::Result<Option<Stored>>> {
        self.read(key, false)
    }

    fn load_lazy(&self, key: &AppKey) -> BoxFuture<'static, anyhow::Result<Option<Stored>>> {
        self.read(key, true)
    }

    fn shared(&self) -> bool {
        self.shared
    }

    fn save(&self, key: &AppKey, stored: &Stored) -> BoxFuture<'static, anyhow::Result<bool>> {
        self.put(&key.appid, stored.clone());
        Box::pin(std::future::ready(Ok(true)))
    }

    fn refresh(self: Arc<Self>, key: AppKey, basis: Basis, fetch: FetchFn) -> RefreshFuture {
        Box::pin(async move {
            let held = self.records.lock().unwrap().get(&key.appid).cloned();
            if let Some(s) = held.filter(|s| basis.superseded_by(s)) {
                return Ok(Refreshed::Adopted(s));
            }
            self.forces.lock().unwrap().push(basis.force);
            let refused = self
                .fleet_refuses_force
                .load(std::sync::atomic::Ordering::SeqCst);
            if basis.force && refused {
                return Err(RefreshError::Budget {
                    budget: Budget::ForcedRefresh,
                    message: "the fleet's forced refreshes are used up".into(),
                    quota: None,
                });
            }
            let f = fetch().await?;
            let stored = stored_from_fetch(&key, f, basis.generation + 1, basis.quota, None);
            self.put(&key.appid, stored.clone());
            Ok(Refreshed::Fetched {
                stored,
                store_error: None,
            })
        })
    }
}

/// A record as another instance (or an earlier run) would have stored it.
fn stored(token: &str, fetched_at: SystemTime, lifetime: Duration, generation: u64) -> Stored {
    Stored {
        record: TokenRecord {
            appid: "wxshop".into(),
            token: AccessToken::new(token),
            fetched_at,
            expires_at: fetched_at + lifetime,
            generation,
        },
        quota: Default::default(),
        fetched_by: Some("other".into()),
        depends_on: None,
    }
}

/// What one scripted call does.
enum Step {
    /// A new token of this lifetime, after this delay.
    Mint(Duration, Duration),
    Fail(UpstreamError, Duration),
    Panic,
}

/// One upstream call as the fetcher saw it.
#[derive(Clone, Debug)]
struct Call {
    at: SystemTime,
    forced: bool,
    /// For a ticket, the token it was fetched with.
    with: Option<String>,
    /// The call's place in the upstream pool, as the actor can still change it.
    promotion: crate::upstream::Promotion,
}

/// One validity probe as the fetcher saw it.
#[derive(Clone, Debug)]
struct Probe {
    kind: ProbeKind,
    token: String,
}

/// WeChat's 40001: what the probe of a dead token answers.
fn invalid_credential() -> UpstreamError {
    UpstreamError::Api {
        errcode: 40001,
        errmsg: "invalid credential".into(),
    }
}

/// Answers from a script, then mints `LIFETIME` tokens at once; records every call. Probes
/// answer from their own script, then say "dead" (40001): a reported token is taken to be
/// really rejected unless a test says otherwise.
struct Script {
    clock: SharedClock,
    steps: RefCell<VecDeque<Step>>,
    calls: RefCell<Vec<Call>>,
    probe_steps: RefCell<VecDeque<(Result<(), UpstreamError>, Duration)>>,
    probes: RefCell<Vec<Probe>>,
    prefix: &'static str,
    /// The lifetime of tokens minted when the script has run out.
    lifetime: std::cell::Cell<Duration>,
}

impl Script {
    fn new(clock: &SharedClock, prefix: &'static str) -> Rc<Script> {
        Rc::new(Script {
            clock: clock.clone(),
            steps: RefCell::default(),
            calls: RefCell::default(),
            probe_steps: RefCell::default(),
            probes: RefCell::default(),
            prefix,
            lifetime: std::cell::Cell::new(LIFETIME),
        })
    }

    fn then(&self, step: Step) {
        self.steps.borrow_mut().push_back(step);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// The next probe answers `answer` after `delay`.
    fn then_probe(&self, answer: Result<(), UpstreamError>, delay: Duration) {
        self.probe_steps.borrow_mut().push_back((answer, delay));
    }

    fn probes(&self) -> Vec<Probe> {
        self.probes.borrow().clone()
    }
}

impl Fetcher for Script {
    fn fetch(&self, req: FetchRequest) -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>> {
        let requested_at = self.clock.now();
        let n = self.calls.borrow().len() + 1;
        let (forced, with) = match &req {
            FetchRequest::AccessToken { force, .. } => (*force, None),
            FetchRequest::Ticket { token, .. } => (false, Some(token.expose().to_string())),
        };
        self.calls.borrow_mut().push(Call {
            at: requested_at,
            forced,
            with,
            promotion: req.promotion().clone(),
        });
        let step = self
            .steps
            .borrow_mut()
            .pop_front()
            .unwrap_or(Step::Mint(self.lifetime.get(), Duration::ZERO));
        let token = format!("{}{n}", self.prefix);
        Box::pin(async move {
            match step {
                Step::Mint(lifetime, delay) => {
                    tokio::time::sleep(delay).await;
                    Ok(Fetched {
                        token: AccessToken::new(token),
                        expires_in: lifetime,
                        requested_at,
                        depends_on: None,
                    })
                }
                Step::Fail(e, delay) => {
                    tokio::time::sleep(delay).await;
                    Err(e)
                }
                Step::Panic => panic!("scripted panic in a fetch"),
            }
        })
    }

    fn probe(&self, req: ProbeRequest) -> LocalBoxFuture<'static, Result<(), UpstreamError>> {
        self.probes.borrow_mut().push(Probe {
            kind: req.kind,
            token: req.token.expose().to_string(),
        });
        let (answer, delay) = self
            .probe_steps
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| (Err(invalid_credential()), Duration::ZERO));
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer
        })
    }
}

fn app(kind: AppKind) -> Arc<CredentialSpec> {
    Arc::new(CredentialSpec::from(&AppSettings {
        name: "shop".into(),
        kind,
        appid: "wxshop".into(),
        tickets: vec![],
        secret: SecretString::from("s3cret"),
        secret_source: SecretSource::Inline,
        daily_quota: 2000,
        messages: None,
    }))
}

fn refresh_settings() -> RefreshSettings {
    RefreshSettings {
        margin: S(600),
        min_interval: S(5),
        retry_min: S(1),
        retry_max: S(60),
        reported_refetches_per_hour: 4,
    }
}

/// One running actor and what the test needs to look at it.
struct Rig {
    addr: Addr<TokenActor>,
    status: SharedStatus,
    script: Rc<Script>,
    store: Arc<MemoryStore>,
    clock: SharedClock,
    metrics: Metrics,
    start: SystemTime,
    /// The gateway's token index, which an access-token actor keeps up to date.
    tokens: Arc<crate::token::index::TokenIndex>,
}

impl Rig {
    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn token(&self) -> Option<Arc<TokenRecord>> {
        self.status.load().valid_token(self.now()).cloned()
    }

    fn restarts(&self) -> u64 {
        counter(&self.metrics, "wxtoken_actor_restarts_total")
    }
}

fn counter(metrics: &Metrics, name: &str) -> u64 {
    metrics
        .registry()
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum::<f64>() as u64
}

struct RigSpec {
    kind: AppKind,
    store: Arc<MemoryStore>,
    credential: Option<Credential>,
    label: &'static str,
    prefix: &'static str,
    cohort: usize,
    lifetime: Duration,
    poll_interval: Duration,
}

impl Default for RigSpec {
    fn default() -> Self {
        RigSpec {
            kind: AppKind::Official(Grant::ClientCredential),
            store: Arc::default(),
            credential: None,
            label: "shop",
            prefix: "tok-",
            cohort: 1,
            lifetime: LIFETIME,
            poll_interval: S(3600),
        }
    }
}

fn rig_with(spec: RigSpec, clock: &SharedClock, metrics: &Metrics) -> Rig {
    let script = Script::new(clock, spec.prefix);
    let status: SharedStatus = Arc::new(arc_swap::ArcSwap::from_pointee(AppStatus::default()));
    let app = app(spec.kind);
    let (cfg_script, cfg_status, cfg_store, cfg_clock, cfg_metrics) = (
        script.clone(),
        status.clone(),
        spec.store.clone(),
        clock.clone(),
        metrics.clone(),
    );
    let credential = spec.credential.unwrap_or(Credential::AccessToken);
    let appid = match &credential {
        Credential::AccessToken => "wxshop".to_string(),
        Credential::Ticket { .. } => "wxshop/ticket/jsapi".to_string(),
        Credential::External(_) => "component/wxshop".to_string(),
    };
    let tokens = crate::token::index::TokenIndex::new();
    let index = matches!(credential, Credential::AccessToken)
        .then(|| tokens.slot(crate::token::index::TokenOwner::App(spec.label.to_string())));
    let label = spec.label;
    let cohort = spec.cohort;
    let poll_interval = spec.poll_interval;
    script.lifetime.set(spec.lifetime);
    let addr = Supervisor::start(move |_| {
        TokenActor::new(ActorConfig {
            spec: app,
            credential,
            key: AppKey {
                name: label.into(),
                appid,
            },
            label: label.into(),
            refresh: refresh_settings(),
            wait_limit: S(5),
            poll_interval,
            fetcher: cfg_script,
            preloaded: None,
            cohort,
            clock: cfg_clock,
            store: cfg_store,
            metrics: cfg_metrics,
            status: cfg_status,
            index,
        })
    });
    Rig {
        addr,
        status,
        script,
        store: spec.store,
        start: clock.now(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        tokens,
    }
}

/// A jsapi ticket actor fetched with `token`'s access token, subscribed to its changes.
async fn ticket_rig(token: &Rig, clock: &SharedClock, metrics: &Metrics) -> Rig {
    let ticket = rig_with(
        RigSpec {
            credential: Some(Credential::Ticket {
                kind: TicketKind::Jsapi,
                token: token.status.clone(),
                token_actor: token.addr.clone(),
            }),
            label: "shop:jsapi_ticket",
            prefix: "ticket-",
            ..RigSpec::default()
        },
        clock,
        metrics,
    );
    token
        .addr
        .send(Subscribe(ticket.addr.clone().recipient()))
        .await
        .unwrap();
    ticket
}

fn clock() -> SharedClock {
    tokio::time::pause();
    SharedClock::new(TokioClock::starting_at(
        SystemTime::UNIX_EPOCH + S(1_800_000_000),
    ))
}

fn rig(kind: AppKind) -> Rig {
    let clock = clock();
    rig_with(
        RigSpec {
            kind,
            ..RigSpec::default()
        },
        &clock,
        &Metrics::new(&[], crate::metrics::MetricsMode::Full),
    )
}

/// Reports `token` as rejected and waits for the answer.
async fn report(r: &Rig, token: &str) -> super::messages::Invalidated {
    r.addr
        .send(Invalidate {
            token: AccessToken::new(token),
        })
        .await
        .unwrap()
        .unwrap()
}

/// Lets the actor run until nothing is left to do now, without moving the clock.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn advance(d: Duration) {
    tokio::time::sleep(d).await;
    settle().await;
}

#[actix_web::test]
async fn fetches_at_start_then_refreshes_margin_before_expiry_with_bounded_jitter() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    assert_eq!(first.token.expose(), "tok-1");
    assert_eq!(r.script.calls().len(), 1);
    let due = r.status.load().refresh_due.unwrap();
    let lead = (first.expires_at.duration_since(due)).unwrap();
    // A margin of 600 s plus up to 10% jitter.
    assert!(lead >= S(600) && lead <= S(660), "{lead:?}");

    advance(S(6539)).await;
    assert_eq!(r.script.calls().len(), 1, "refreshed before the margin");
    advance(S(62)).await;
    assert_eq!(r.script.calls().len(), 2, "not refreshed inside the margin");
    assert_eq!(r.token().unwrap().token.expose(), "tok-2");
    // Over ten more cycles: one fetch each, never a token served past its margin.
    for cycle in 0..10 {
        advance(S(600)).await;
        let t = r.token().expect("always a valid token");
        assert!(t.remaining(r.now()) > S(540), "cycle {cycle}");
        advance(S(6000)).await;
    }
    let calls = r.script.calls().len();
    assert!((11..=12).contains(&calls), "{calls} fetches for 10 cycles");
}

#[actix_web::test]
async fn concurrent_invalidations_of_the_current_token_cost_one_fetch() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(10)).await;
    r.script.then(Step::Mint(LIFETIME, MS(100)));
    let reports: Vec<_> = (0..500)
        .map(|_| {
            r.addr.send(Invalidate {
                token: first.token.clone(),
            })
        })
        .collect();
    let answers = futures_util::future::join_all(reports).await;
    assert_eq!(r.script.calls().len(), 2, "one fetch for 500 reports");
    for a in answers {
        let a = a.unwrap().unwrap();
        assert_eq!(a.record.token.expose(), "tok-2");
        assert!(a.refreshed);
    }
    // A late report of the old token gets the new one without a fetch.
    let late = report(&r, first.token.expose()).await;
    assert_eq!(late.outcome, InvalidationOutcome::Stale);
    assert_eq!(r.script.calls().len(), 2);
}

#[actix_web::test]
async fn the_gateway_index_follows_rotations_and_forgets_a_revoked_token() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    assert!(r.tokens.lookup(first.token.expose()).is_some());
    advance(S(10)).await;
    let second = report(&r, first.token.expose()).await.record;
    assert_eq!(second.token.expose(), "tok-2");
    // Both the new token and the one it replaced name the app; nothing else is indexed.
    for t in [&first, &second] {
        let found = r.tokens.lookup(t.token.expose()).expect("indexed");
        assert_eq!(
            *found.owner,
            crate::token::index::TokenOwner::App("shop".into())
        );
    }
    assert_eq!(r.tokens.len(), 2);
    // A revoked token stops naming the app at once, and so does the one before it once the
    // new token arrives (at most two per credential).
    advance(S(10)).await;
    let revoked = r.addr.send(Revoke).await.unwrap().unwrap();
    assert!(r.tokens.lookup(second.token.expose()).is_none());
    assert!(r.tokens.lookup(revoked.record.token.expose()).is_some());
    assert!(r.tokens.lookup(first.token.expose()).is_none());
}

#[actix_web::test]
async fn a_caller_waiting_for_a_proactive_refresh_makes_it_urgent() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    // The proactive refresh takes a while (as if queued behind others in the upstream pool).
    r.script.then(Step::Mint(LIFETIME, S(3)));
    let due = r.status.load().refresh_due.unwrap();
    advance(due.duration_since(r.now()).unwrap() + S(1)).await;
    let calls = r.script.calls();
    assert_eq!(calls.len(), 2, "the proactive refresh is under way");
    assert!(!calls[1].promotion.is_urgent(), "a valid token: background");
    // A Get is answered with the valid token and changes nothing.
    assert_eq!(r.addr.send(Get).await.unwrap().unwrap().token, first.token);
    assert!(!calls[1].promotion.is_urgent());
    // A business server saw the token rejected: now someone waits for this refresh.
    let waiting = r.addr.send(Invalidate {
        token: first.token.clone(),
    });
    let waiting = actix::spawn(waiting);
    settle().await;
    assert!(
        calls[1].promotion.is_urgent(),
        "promoted once a caller waits"
    );
    advance(S(3)).await;
    let answer = waiting.await.unwrap().unwrap().unwrap();
    assert_eq!(answer.record.token.expose(), "tok-2");
    assert_eq!(r.script.calls().len(), 2, "the same call, not a second one");
}

#[actix_web::test]
async fn an_invalidation_right_after_a_fetch_is_too_soon() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(4)).await;
    let a = report(&r, first.token.expose()).await;
    assert_eq!(a.outcome, InvalidationOutcome::TooSoon);
    assert_eq!(r.script.calls().len(), 1);
}

#[actix_web::test]
async fn transient_failures_back_off_doubling_to_the_cap_and_keep_the_token() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    // More failures than the 260 s below can use up.
    for _ in 0..20 {
        r.script.then(Step::Fail(
            UpstreamError::Connect("down".into()),
            Duration::ZERO,
        ));
    }
    // Past the refresh time: the scheduled refresh and its retries fail.
    advance(S(6600)).await;
    advance(S(200)).await;
    let calls = r.script.calls();
    let gaps: Vec<Duration> = calls
        .windows(2)
        .skip(1)
        .map(|w| w[1].at.duration_since(w[0].at).unwrap())
        .collect();
    // Backoff 1, 2, 4, 8, 16, 32, 60 (cap), each shortened by at most 20% of jitter. tokio's
    // timer fires at whole milliseconds, rounding a deadline up: a wait with (almost) no jitter
    // may end a millisecond past its base.
    let want = [1, 2, 4, 8, 16, 32, 60, 60];
    let tick = Duration::from_millis(1);
    assert!(gaps.len() >= want.len(), "{gaps:?}");
    for (gap, base) in gaps.iter().zip(want) {
        let base = S(base);
        assert!(
            *gap <= base + tick && *gap >= base.mul_f64(0.8),
            "gap {gap:?} for base {base:?}"
        );
    }
    // The still-valid token was served throughout, and the failure is published.
    let s = r.status.load();
    assert_eq!(s.token.as_ref().unwrap().token, first.token);
    assert_eq!(s.last_failure.as_ref().unwrap().reason, "connect");
    // Once WeChat answers again, the next retry gets a token and clears the failure.
    r.script.steps.borrow_mut().clear();
    advance(S(61)).await;
    let n = r.script.calls().len();
    assert_eq!(r.token().unwrap().token.expose(), format!("tok-{n}"));
    assert!(r.status.load().last_failure.is_none());
}

#[actix_web::test]
async fn configuration_errors_retry_at_the_slow_pace_at_once() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    for _ in 0..3 {
        r.script.then(Step::Fail(
            UpstreamError::Api {
                errcode: 40125,
                errmsg: "invalid appsecret".into(),
            },
            Duration::ZERO,
        ));
    }
    settle().await;
    advance(S(181)).await;
    let calls = r.script.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    for w in calls.windows(2) {
        let gap = w[1].at.duration_since(w[0].at).unwrap();
        assert!(close(gap, S(60)), "{gap:?}");
    }
}

#[actix_web::test]
async fn get_without_a_token_waits_for_the_fetch_and_then_answers_from_status() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    // The first fetch takes 3 s: a Get meanwhile waits for it.
    r.script.then(Step::Mint(LIFETIME, S(3)));
    let t = r.addr.send(Get).await.unwrap().unwrap();
    assert_eq!(t.token.expose(), "tok-1");
    assert!(close(r.now().duration_since(r.start).unwrap(), S(3)));
}

#[actix_web::test]
async fn get_gives_up_after_the_wait_limit_with_the_failure() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    r.script.then(Step::Fail(UpstreamError::Http(502), S(10)));
    let e = r.addr.send(Get).await.unwrap().unwrap_err();
    assert!(close(r.now().duration_since(r.start).unwrap(), S(5)));
    assert!(e.last_failure.is_none(), "the fetch has not failed yet");
}

#[actix_web::test]
async fn a_retry_after_an_adopted_record_leaves_one_timer_not_two() {
    let clock = clock();
    let r = rig_with(
        RigSpec::default(),
        &clock,
        &Metrics::new(&[], crate::metrics::MetricsMode::Full),
    );
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(60)).await;
    // An invalidation starts a slow fetch that will fail...
    r.script
        .then(Step::Fail(UpstreamError::Connect("down".into()), S(2)));
    let report = r.addr.send(Invalidate {
        token: first.token.clone(),
    });
    let report = actix_web::rt::spawn(report);
    advance(S(1)).await;
    // ...while another instance's newer token lands in the store and is adopted.
    let now = r.now();
    r.store
        .put("wxshop", stored("from-elsewhere", now, LIFETIME, 9));
    r.addr
        .send(StoreChanged { generation: None })
        .await
        .unwrap();
    settle().await;
    assert_eq!(r.token().unwrap().token.expose(), "from-elsewhere");
    let answer = report.await.unwrap().unwrap().unwrap();
    assert_eq!(answer.record.token.expose(), "from-elsewhere");
    advance(S(2)).await;
    let after_failure = r.script.calls().len();
    assert_eq!(after_failure, 2);
    // The adopted token is due about 6,600 s after it was fetched: exactly one refresh then.
    advance(S(7200)).await;
    assert_eq!(
        r.script.calls().len(),
        after_failure + 1,
        "{:?}",
        r.script.calls()
    );
}

#[actix_web::test]
async fn stable_revoke_rotates_twice_even_across_a_restart() {
    let r = rig(AppKind::Official(Grant::Stable));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(100)).await;
    let revoked = r.addr.send(Revoke).await.unwrap().unwrap();
    assert_eq!(revoked.second_rotation_in, Some(S(31)));
    assert_ne!(revoked.record.token, first.token);
    // A restart between the two rotations must not lose the second.
    r.addr.send(ForceRestart).await.unwrap();
    settle().await;
    assert_eq!(r.restarts(), 1);
    advance(S(32)).await;
    let calls = r.script.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[1].forced && calls[2].forced);
    assert!(close(
        calls[2].at.duration_since(calls[1].at).unwrap(),
        S(31)
    ));
}

#[actix_web::test]
async fn a_forced_refresh_is_spent_only_when_the_call_is_made() {
    let clock = clock();
    let r = rig_with(
        RigSpec {
            kind: AppKind::Official(Grant::Stable),
            ..RigSpec::default()
        },
        &clock,
        &Metrics::new(&[], crate::metrics::MetricsMode::Full),
    );
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(100)).await;
    // Another instance already replaced the token: the invalidation adopts it, no call.
    let now = r.now();
    r.store
        .put("wxshop", stored("forced-elsewhere", now, LIFETIME, 5));
    let a = report(&r, first.token.expose()).await;
    assert_eq!(a.record.token.expose(), "forced-elsewhere");
    assert_eq!(r.script.calls().len(), 1);
    // The budget is untouched: a forced refresh is allowed at once (no 30 s gap to wait).
    advance(S(10)).await;
    let a = report(&r, "forced-elsewhere").await;
    assert_eq!(a.outcome, InvalidationOutcome::Refreshed);
    let calls = r.script.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1].forced);
}

#[actix_web::test]
async fn a_token_change_during_a_ticket_fetch_brings_a_refetch_with_the_new_token() {
    let clock = clock();
    let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
    let token = rig_with(RigSpec::default(), &clock, &metrics);
    let first = token.addr.send(Get).await.unwrap().unwrap();
    let ticket = ticket_rig(&token, &clock, &metrics).await;
    settle().await;
    assert_eq!(ticket.script.calls().len(), 1);
    advance(S(60)).await;
    // A slow ticket fetch with the first token; the token is replaced meanwhile.
    ticket.script.then(Step::Mint(LIFETIME, S(2)));
    ticket.addr.do_send(Invalidate {
        token: AccessToken::new("ticket-1"),
    });
    settle().await;
    report(&token, first.token.expose()).await;
    advance(S(3)).await;
    let calls = ticket.script.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[1].with.as_deref(), Some("tok-1"));
    assert_eq!(calls[2].with.as_deref(), Some("tok-2"));
    assert_eq!(
        ticket.token().unwrap().token.expose(),
        "ticket-3",
        "the ticket of the new token is served"
    );
}

#[actix_web::test]
async fn a_ticket_waits_for_its_token_instead_of_failing() {
    let clock = clock();
    let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
    let token = rig_with(RigSpec::default(), &clock, &metrics);
    token.script.then(Step::Mint(LIFETIME, S(2)));
    let ticket = ticket_rig(&token, &clock, &metrics).await;
    settle().await;
    assert!(ticket.script.calls().is_empty());
    assert!(ticket.status.load().last_failure.is_none());
    advance(S(2)).await;
    let calls = ticket.script.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].with.as_deref(), Some("tok-1"));
}

#[actix_web::test]
async fn a_panicking_fetch_restarts_the_actor_which_then_serves() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    r.script.then(Step::Panic);
    // The Get made during the panicking fetch is kept waiting across the restart and
    // answered by the restarted actor's fetch.
    let t = r.addr.send(Get).await.unwrap().unwrap();
    assert_eq!(t.token.expose(), "tok-2");
    assert_eq!(r.restarts(), 1);
    assert_eq!(r.script.calls().len(), 2);
    let a = report(&r, "unknown").await;
    assert_eq!(a.outcome, InvalidationOutcome::Stale);
}

#[actix_web::test]
async fn a_stored_valid_token_is_reused_at_start_without_a_fetch() {
    let clock = clock();
    let store: Arc<MemoryStore> = Arc::default();
    let now = clock.now();
    store.put("wxshop", stored("kept", now - S(1000), S(7200), 3));
    let r = rig_with(
        RigSpec {
            store,
            ..RigSpec::default()
        },
        &clock,
        &Metrics::new(&[], crate::metrics::MetricsMode::Full),
    );
    let t = r.addr.send(Get).await.unwrap().unwrap();
    assert_eq!(t.token.expose(), "kept");
    assert!(r.script.calls().is_empty());
    // Due 600-660 s before its expiry, not a full lifetime later.
    advance(S(5539)).await;
    assert!(r.script.calls().is_empty());
    advance(S(62)).await;
    assert_eq!(r.script.calls().len(), 1);
    assert_eq!(r.token().unwrap().generation, 4);
}

#[actix_web::test]
async fn wecom_tokens_are_refreshed_a_second_after_expiry() {
    let r = rig(AppKind::Wecom);
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(7200)).await;
    assert_eq!(r.script.calls().len(), 1, "asked before expiry");
    // The token is gone at expiry; a Get in that last second waits for the new one.
    let t = r.addr.send(Get).await.unwrap().unwrap();
    assert_ne!(t.token, first.token);
    assert_eq!(r.script.calls().len(), 2);
    let late = r.script.calls()[1]
        .at
        .duration_since(first.expires_at)
        .unwrap();
    assert!(close(late, S(1)), "{late:?}");
}

#[actix_web::test]
async fn stable_tokens_are_refreshed_inside_their_last_five_minutes_once_per_cycle() {
    let r = rig(AppKind::Official(Grant::Stable));
    r.addr.send(Get).await.unwrap().unwrap();
    // WeChat rotates a stable token only in its last 300 s: wxtoken asks 270 s (plus up to
    // 10% jitter) before expiry, never earlier, and never twice for one rotation.
    advance(S(7200 - 298)).await;
    assert_eq!(r.script.calls().len(), 1);
    advance(S(30)).await;
    assert_eq!(r.script.calls().len(), 2);
    assert!(
        !r.script.calls()[1].forced,
        "a scheduled refresh is never forced"
    );
    for _ in 0..5 {
        advance(LIFETIME).await;
    }
    assert_eq!(r.script.calls().len(), 7);
}

#[actix_web::test]
async fn tokens_fetched_together_spread_their_refreshes_over_the_cycle() {
    // 1,000 apps started together with 600 s tokens (the 600 s margin is clamped to half the
    // lifetime: a 300 s cycle). Without the spread every cycle would be a burst of 1,000 calls
    // inside the 30 s jitter window.
    let clock = clock();
    let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
    let n = 1000;
    let rigs: Vec<Rig> = (0..n)
        .map(|_| {
            rig_with(
                RigSpec {
                    cohort: n,
                    lifetime: S(600),
                    ..RigSpec::default()
                },
                &clock,
                &metrics,
            )
        })
        .collect();
    settle().await;
    let start = clock.now();
    let mut windows = vec![0usize; 46];
    // Nine cycles, counting every call by the minute it was made in.
    advance(S(2700)).await;
    for r in &rigs {
        assert!(r.token().is_some());
        for c in r.script.calls() {
            let minute = c.at.duration_since(start).unwrap().as_secs() / 60;
            windows[minute as usize] += 1;
        }
    }
    let calls: usize = windows.iter().sum();
    // The first cycle ends early by design; after it each app makes one call per cycle.
    assert!(calls >= 9 * n, "{calls}");
    let mean_per_minute = n as f64 * 60.0 / 300.0;
    // Every minute from the first refreshes on (minute 0 is the cold start itself).
    let peak = *windows[1..45].iter().max().unwrap();
    assert!(
        (peak as f64) <= 2.0 * mean_per_minute,
        "peak {peak} calls in a minute, mean {mean_per_minute:.0}: {windows:?}"
    );
    // No token was served past its margin: each was refreshed at least 300 s before expiry.
    for r in &rigs {
        let calls = r.script.calls();
        for w in calls.windows(2) {
            let age = w[1].at.duration_since(w[0].at).unwrap();
            assert!(age <= S(300) + MS(10), "refreshed at age {age:?}");
        }
    }
}

#[actix_web::test]
async fn periodic_rereads_of_actors_started_together_are_spread_over_the_interval() {
    let clock = clock();
    let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
    let n = 100;
    let every = S(10);
    let start = tokio::time::Instant::now();
    let rigs: Vec<Rig> = (0..n)
        .map(|_| {
            rig_with(
                RigSpec {
                    store: MemoryStore::shared(),
                    poll_interval: every,
                    ..RigSpec::default()
                },
                &clock,
                &metrics,
            )
        })
        .collect();
    advance(S(25)).await;
    let mut per_second = [0usize; 10];
    for r in &rigs {
        let polls: Vec<Duration> = r
            .store
            .loads
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, lazy)| *lazy)
            .map(|(at, _)| at.duration_since(start))
            .collect();
        // The first within the first interval (its random offset, plus the moment the actor
        // took to start), then one every interval exactly.
        assert!(polls.len() >= 2, "{polls:?}");
        assert!(polls[0] < every + MS(50), "{polls:?}");
        assert!(close(polls[1] - polls[0], every), "{polls:?}");
        per_second[(polls[0].as_secs() as usize).min(9)] += 1;
    }
    // Together they would all come at 10 s; spread, each second of the interval has about a
    // tenth of them (more than 40 in one second: odds below 1e-13).
    assert!(
        per_second.iter().all(|&c| c <= 40),
        "first polls by second: {per_second:?}"
    );
}

#[actix_web::test]
async fn a_change_announced_with_a_generation_already_held_is_not_read() {
    let clock = clock();
    let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
    let r = rig_with(
        RigSpec {
            store: MemoryStore::shared(),
            ..RigSpec::default()
        },
        &clock,
        &metrics,
    );
    let first = r.addr.send(Get).await.unwrap().unwrap();
    assert_eq!(first.generation, 1);
    settle().await;
    let (urgent, _) = r.store.reads();
    // Its own write (or an older record) announced: nothing to read.
    for generation in [Some(1), Some(0)] {
        r.addr.send(StoreChanged { generation }).await.unwrap();
        settle().await;
        assert_eq!(r.store.reads().0, urgent, "{generation:?}");
    }
    // A newer one is read and adopted; an announcement without a generation is read too.
    let now = r.now();
    r.store
        .put("wxshop", stored("from-elsewhere", now, LIFETIME, 2));
    r.addr
        .send(StoreChanged {
            generation: Some(2),
        })
        .await
        .unwrap();
    settle().await;
    assert_eq!(r.store.reads().0, urgent + 1);
    assert_eq!(r.token().unwrap().token.expose(), "from-elsewhere");
    r.addr
        .send(StoreChanged { generation: None })
        .await
        .unwrap();
    settle().await;
    assert_eq!(r.store.reads().0, urgent + 2);
}

#[actix_web::test]
async fn a_change_announced_during_a_reread_is_read_after_it() {
    let clock = clock();
    let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
    let store = Arc::new(MemoryStore {
        shared: true,
        load_delay: S(1),
        ..MemoryStore::default()
    });
    let r = rig_with(
        RigSpec {
            store,
            ..RigSpec::default()
        },
        &clock,
        &metrics,
    );
    r.addr.send(Get).await.unwrap().unwrap();
    advance(S(2)).await;
    // A re-read starts and reads the record as it is now...
    r.addr
        .send(StoreChanged { generation: None })
        .await
        .unwrap();
    advance(MS(500)).await;
    // ...and the newer record lands, and is announced, before that read answers.
    let now = r.now();
    r.store
        .put("wxshop", stored("from-elsewhere", now, LIFETIME, 5));
    r.addr
        .send(StoreChanged {
            generation: Some(5),
        })
        .await
        .unwrap();
    advance(S(1)).await;
    assert_ne!(r.token().unwrap().token.expose(), "from-elsewhere");
    advance(S(1)).await;
    assert_eq!(r.token().unwrap().token.expose(), "from-elsewhere");
    // Read once more, no more.
    advance(S(5)).await;
    assert_eq!(
        r.store.reads().0,
        3,
        "start-up, the first re-read, the catch-up"
    );
}

/// An external source that can fetch only once `ready` is set, minting `ext-N` tokens.
struct Gated {
    clock: SharedClock,
    ready: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicU32,
}

impl crate::token::external::ExternalSource for Gated {
    fn endpoint(&self) -> &'static str {
        "component_token"
    }

    fn ready(&self, _now: SystemTime) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn fetch(
        &self,
        _priority: crate::upstream::Priority,
        _promotion: crate::upstream::Promotion,
    ) -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let requested_at = self.clock.now();
        Box::pin(async move {
            Ok(Fetched {
                token: AccessToken::new(format!("ext-{n}")),
                expires_in: LIFETIME,
                requested_at,
                depends_on: None,
            })
        })
    }
}

#[actix_web::test]
async fn an_external_credential_waits_for_its_inputs_then_fetches_once_told() {
    let clock = clock();
    let source = Arc::new(Gated {
        clock: clock.clone(),
        ready: false.into(),
        calls: 0.into(),
    });
    let r = rig_with(
        RigSpec {
            credential: Some(Credential::External(source.clone())),
            ..RigSpec::default()
        },
        &clock,
        &Metrics::new(&[], crate::metrics::MetricsMode::Full),
    );
    advance(S(30)).await;
    assert_eq!(
        source.calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no ticket: no call"
    );
    assert!(r.token().is_none());
    // The missing input (a verify ticket) arrives, and the actor is told.
    source
        .ready
        .store(true, std::sync::atomic::Ordering::SeqCst);
    r.addr.do_send(InputsChanged);
    settle().await;
    assert_eq!(source.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(r.token().unwrap().token.expose(), "ext-1");
    // Told again while it holds a valid token: nothing to do.
    r.addr.do_send(InputsChanged);
    settle().await;
    assert_eq!(source.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Refreshed ahead of expiry like any token.
    advance(S(6700)).await;
    assert_eq!(source.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[actix_web::test]
async fn a_forced_refresh_the_fleet_refuses_answers_at_once_and_is_retried_after_retry_max() {
    let r = rig(AppKind::Official(Grant::Stable));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(100)).await;
    r.store
        .fleet_refuses_force
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // This instance's own budget allows it; the fleet's does not (another instance spent it).
    let asked = tokio::time::Instant::now();
    let a = report(&r, first.token.expose()).await;
    assert_eq!(a.record.token, first.token, "the token in service stays");
    assert!(!a.refreshed);
    assert!(
        asked.elapsed() < S(1),
        "answered at once, not after the wait limit"
    );
    assert_eq!(r.script.calls().len(), 1, "no forced call");
    // The first fetch, then the refused forced one.
    assert_eq!(*r.store.forces.lock().unwrap(), [false, true]);
    assert_eq!(
        counter(&r.metrics, "wxtoken_forced_refresh_refusals_total"),
        1
    );
    let status = r.status.load();
    let failure = status
        .last_failure
        .as_ref()
        .expect("the refusal is reported");
    assert_eq!(failure.reason, "forced_refresh");
    // The next report within 30 s is answered from this instance's own count, without asking.
    let a = report(&r, first.token.expose()).await;
    assert_eq!(a.outcome, InvalidationOutcome::Refused);
    assert_eq!(r.store.forces.lock().unwrap().len(), 2);
    // The rejected token is still to be replaced: retried after retry_max (60 s), when the
    // fleet's budget allows it again.
    r.store
        .fleet_refuses_force
        .store(false, std::sync::atomic::Ordering::SeqCst);
    advance(S(59)).await;
    assert_eq!(r.script.calls().len(), 1, "not before retry_max");
    advance(S(2)).await;
    let calls = r.script.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[1].forced);
    assert_ne!(r.token().unwrap().token, first.token);
}

#[actix_web::test]
async fn a_revocation_the_fleet_refuses_is_too_soon_not_a_success() {
    let r = rig(AppKind::Official(Grant::Stable));
    r.addr.send(Get).await.unwrap().unwrap();
    advance(S(100)).await;
    r.store
        .fleet_refuses_force
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let answer = r.addr.send(Revoke).await.unwrap();
    assert!(
        matches!(answer, Err(super::messages::RevokeError::TooSoon)),
        "{answer:?}"
    );
    assert_eq!(r.script.calls().len(), 1, "no forced call");
}

/// `wxtoken_refetches_refused_total` of that reason, all credentials together.
fn refused(metrics: &Metrics, reason: &str) -> u64 {
    metrics
        .registry()
        .gather()
        .iter()
        .filter(|f| f.name() == "wxtoken_refetches_refused_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "reason" && l.value() == reason)
        })
        .map(|m| m.get_counter().get_value())
        .sum::<f64>() as u64
}

/// `n` concurrent reports of `token`, answered.
async fn reports(r: &Rig, token: &str, n: usize) -> Vec<super::messages::Invalidated> {
    let sent: Vec<_> = (0..n)
        .map(|_| {
            r.addr.send(Invalidate {
                token: AccessToken::new(token),
            })
        })
        .collect();
    futures_util::future::join_all(sent)
        .await
        .into_iter()
        .map(|a| a.unwrap().unwrap())
        .collect()
}

#[actix_web::test]
async fn reports_of_a_young_token_wechat_still_accepts_cost_one_probe_and_no_fetch() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(10)).await;
    r.script.then_probe(Ok(()), MS(100));
    let answers = reports(&r, first.token.expose(), 500).await;
    let probes = r.script.probes();
    assert_eq!(probes.len(), 1, "one probe for 500 reports");
    assert_eq!(probes[0].kind, ProbeKind::Account);
    assert_eq!(probes[0].token, first.token.expose());
    assert_eq!(r.script.calls().len(), 1, "no fetch");
    for a in answers {
        assert_eq!(a.record.token, first.token);
        assert!(!a.refreshed);
        assert_eq!(a.outcome, InvalidationOutcome::Alive);
    }
    assert_eq!(refused(&r.metrics, "token_alive"), 500);
    // WeChat's word holds for min_interval (5 s): a report meanwhile is refused unasked.
    advance(S(4)).await;
    let a = report(&r, first.token.expose()).await;
    assert_eq!(a.outcome, InvalidationOutcome::Alive);
    assert_eq!(r.script.probes().len(), 1);
    // Later WeChat is asked again; this time the token is dead: one fetch.
    advance(S(2)).await;
    let a = report(&r, first.token.expose()).await;
    assert_eq!(r.script.probes().len(), 2);
    assert_eq!(a.outcome, InvalidationOutcome::Refreshed);
    assert_eq!(a.record.token.expose(), "tok-2");
    assert_eq!(r.script.calls().len(), 2);
    assert_eq!(refused(&r.metrics, "token_alive"), 501);
}

#[actix_web::test]
async fn reports_of_a_young_token_wechat_confirms_dead_cost_one_probe_and_one_fetch() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(10)).await;
    r.script.then_probe(Err(invalid_credential()), MS(100));
    r.script.then(Step::Mint(LIFETIME, MS(100)));
    let answers = reports(&r, first.token.expose(), 500).await;
    assert_eq!(r.script.probes().len(), 1, "one probe for 500 reports");
    assert_eq!(r.script.calls().len(), 2, "one fetch for 500 reports");
    for a in answers {
        assert_eq!(a.record.token.expose(), "tok-2");
        assert!(a.refreshed);
        assert_eq!(a.outcome, InvalidationOutcome::Refreshed);
    }
    assert_eq!(refused(&r.metrics, "token_alive"), 0);
    // Reports of the dead token after that are stale: neither probe nor fetch.
    let late = report(&r, first.token.expose()).await;
    assert_eq!(late.outcome, InvalidationOutcome::Stale);
    assert_eq!(r.script.probes().len(), 1);
    assert_eq!(r.script.calls().len(), 2);
}

#[actix_web::test]
async fn a_report_wechat_cannot_be_asked_about_refetches_nothing() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(10)).await;
    r.script
        .then_probe(Err(UpstreamError::Timeout(S(2))), MS(100));
    r.script.then_probe(
        Err(UpstreamError::Api {
            errcode: -1,
            errmsg: "system busy".into(),
        }),
        Duration::ZERO,
    );
    let answers = reports(&r, first.token.expose(), 10).await;
    let a = report(&r, first.token.expose()).await;
    assert_eq!(r.script.probes().len(), 2);
    assert_eq!(
        r.script.calls().len(),
        1,
        "no fetch on an unconfirmed report"
    );
    for a in answers.into_iter().chain([a]) {
        assert_eq!(a.record.token, first.token, "the token in service stays");
        assert!(!a.refreshed);
        assert_eq!(a.outcome, InvalidationOutcome::Failed);
    }
    assert_eq!(refused(&r.metrics, "probe_failed"), 11);
    assert!(
        r.status.load().last_failure.is_none(),
        "not a refresh failure"
    );
    // Nothing is left owed: no fetch follows later either.
    advance(S(120)).await;
    assert_eq!(r.script.calls().len(), 1);
}

#[actix_web::test]
async fn early_refetches_for_reports_are_capped_per_hour_then_allowed_again() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let mut current = r.addr.send(Get).await.unwrap().unwrap();
    let started = r.now();
    // The cap is 4 an hour: four confirmed-dead reports refetch, 10 minutes apart.
    for n in 2..=5 {
        advance(S(600)).await;
        let a = report(&r, current.token.expose()).await;
        assert_eq!(a.outcome, InvalidationOutcome::Refreshed, "refetch {n}");
        assert_eq!(a.record.token.expose(), format!("tok-{n}"));
        current = a.record;
    }
    assert_eq!(r.script.probes().len(), 4);
    // The fifth within the hour: the current token is served, WeChat is not even asked.
    advance(S(600)).await;
    let a = report(&r, current.token.expose()).await;
    assert_eq!(a.outcome, InvalidationOutcome::Capped);
    assert_eq!(a.record.token, current.token);
    assert!(!a.refreshed);
    assert_eq!(r.script.probes().len(), 4);
    assert_eq!(r.script.calls().len(), 5);
    assert_eq!(refused(&r.metrics, "hourly_cap"), 1);
    // An hour after the first early refetch, one more fits.
    let first_refetch = started + S(600);
    advance((first_refetch + S(3599)).duration_since(r.now()).unwrap()).await;
    assert_eq!(
        report(&r, current.token.expose()).await.outcome,
        InvalidationOutcome::Capped
    );
    advance(S(2)).await;
    let a = report(&r, current.token.expose()).await;
    assert_eq!(a.outcome, InvalidationOutcome::Refreshed);
    assert_eq!(a.record.token.expose(), "tok-6");
    assert_eq!(refused(&r.metrics, "hourly_cap"), 2);
}

#[actix_web::test]
async fn a_token_past_its_refresh_age_is_refetched_on_a_report_without_a_probe() {
    let r = rig(AppKind::Official(Grant::ClientCredential));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    // The proactive refresh fails once, so the token stays in service past its refresh age.
    r.script
        .then(Step::Fail(UpstreamError::Timeout(S(2)), Duration::ZERO));
    let due = r.status.load().refresh_due.unwrap();
    advance(due.duration_since(r.now()).unwrap() + MS(10)).await;
    assert_eq!(r.script.calls().len(), 2, "the proactive refresh failed");
    let a = report(&r, first.token.expose()).await;
    assert_eq!(a.outcome, InvalidationOutcome::Refreshed);
    assert_eq!(a.record.token.expose(), "tok-3");
    assert_eq!(
        r.script.probes().len(),
        0,
        "no probe for a token due anyway"
    );
}

#[actix_web::test]
async fn a_stable_token_wechat_still_accepts_is_not_force_refreshed() {
    let r = rig(AppKind::Official(Grant::Stable));
    let first = r.addr.send(Get).await.unwrap().unwrap();
    advance(S(100)).await;
    r.script.then_probe(Ok(()), Duration::ZERO);
    let a = report(&r, first.token.expose()).await;
    assert_eq!(a.outcome, InvalidationOutcome::Alive);
    assert_eq!(r.script.calls().len(), 1, "no call, forced or not");
    assert_eq!(
        counter(&r.metrics, "wxtoken_forced_refresh_refusals_total"),
        0
    );
    // WeChat's forced-refresh budget is untouched: a report WeChat confirms (6 s later, past
    // the 5 s WeChat's word holds) forces at once, with no 30 s gap to wait out.
    advance(S(6)).await;
    let a = report(&r, first.token.expose()).await;
    assert_eq!(a.outcome, InvalidationOutcome::Refreshed);
    let calls = r.script.calls();
    assert_eq!(calls.len(), 2);
    assert!(
        calls[1].forced,
        "a dead stable token is replaced by a forced refresh"
    );
    assert_eq!(r.script.probes().len(), 2);
}

#[actix_web::test]
async fn each_kind_of_token_is_asked_about_with_its_own_call() {
    let clock = clock();
    let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
    let wecom = rig_with(
        RigSpec {
            kind: AppKind::Wecom,
            ..RigSpec::default()
        },
        &clock,
        &metrics,
    );
    let component = Arc::new(Gated {
        clock: clock.clone(),
        ready: true.into(),
        calls: 0.into(),
    });
    let component = rig_with(
        RigSpec {
            credential: Some(Credential::External(component)),
            label: "platform:saas",
            ..RigSpec::default()
        },
        &clock,
        &metrics,
    );
    let w = wecom.addr.send(Get).await.unwrap().unwrap();
    let c = component.addr.send(Get).await.unwrap().unwrap();
    advance(S(10)).await;
    for (rig, token) in [(&wecom, &w), (&component, &c)] {
        rig.script.then_probe(Ok(()), Duration::ZERO);
        let a = report(rig, token.token.expose()).await;
        assert_eq!(a.outcome, InvalidationOutcome::Alive);
    }
    assert_eq!(wecom.script.probes()[0].kind, ProbeKind::Wecom);
    assert_eq!(component.script.probes()[0].kind, ProbeKind::Component);
    // A WeCom token is refreshed only at expiry: every report of it before then is checked.
    advance(S(7000)).await;
    wecom.script.then_probe(Ok(()), Duration::ZERO);
    let a = report(&wecom, w.token.expose()).await;
    assert_eq!(a.outcome, InvalidationOutcome::Alive);
    assert_eq!(wecom.script.probes().len(), 2);
    assert_eq!(wecom.script.calls().len(), 1);
}
