//! `TokenActor`: owns one app's token, refreshes it, answers Get and Invalidate.
//!
//! The state machine, in short:
//! - `started()` loads the stored record, serves it if it is for this appid and still valid,
//!   and schedules the next refresh; otherwise it refreshes at once.
//! - At most one refresh is in flight (`in_flight`). Gets and Invalidates that need a new token
//!   park a oneshot sender in a waiter list; the one refresh answers them all.
//! - A refresh goes through the store: the embedded store fetches and saves; the shared (Redis)
//!   store first takes the fleet's lock and may adopt another instance's newer token instead.
//!   The new record is saved before it is published. A failure keeps the old token, records
//!   why, and retries with backoff.
//! - With a shared store the actor also re-reads the record when told it changed (pub/sub) and
//!   periodically, adopting newer tokens and writing back what the store lost.
//! - After every change the actor publishes an immutable [`AppStatus`] snapshot, which the HTTP
//!   fast path, readiness and metrics read without a message round trip.
//!
//! Timers and futures belong to the actor's context, so a supervisor restart drops them all;
//! `restarting()` clears the flags that pointed at them and `started()` rebuilds from state.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::messages::{
    ForceRestart, Get, Invalidate, Invalidated, NoValidToken, Retire, Revoke, RevokeError, Revoked,
    StoreChanged, Subscribe, TokenChanged, UpdateApp,
};
use super::schedule::{backoff, effective_margin, refresh_delay, stable_margin, ForceBudget};
use super::{AccessToken, AppStatus, FailureInfo, QuotaUsage, SharedStatus, TokenRecord};
use crate::config::{AppKind, AppSettings, Grant, RefreshSettings, TicketKind};
use crate::metrics::{InvalidationOutcome, Metrics, Trigger};
use crate::store::{AppKey, Basis, FetchFn, RefreshError, Refreshed, Stored, TokenStore};
use crate::upstream::{ErrorClass, UpstreamError, WechatClient};

/// How long a request may wait for a fetch before it is answered without one (spec: 5 s).
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(5);

type Waiter = oneshot::Sender<Arc<TokenRecord>>;

/// The pending timer: the next proactive refresh, or a retry after a failure.
enum Timer {
    Refresh(SpawnHandle),
    Retry(SpawnHandle),
}

impl Timer {
    fn handle(&self) -> SpawnHandle {
        match self {
            Timer::Refresh(h) | Timer::Retry(h) => *h,
        }
    }
}

/// What an actor keeps fresh.
#[derive(Clone)]
pub enum Credential {
    /// The app's access token.
    AccessToken,
    /// A ticket fetched with the app's access token, refetched when that token changes.
    Ticket {
        kind: TicketKind,
        /// The token actor's published status: the token to fetch with.
        token: SharedStatus,
        /// Told when getticket rejects the token (40001, 42001, 40014).
        token_actor: Addr<TokenActor>,
    },
}

/// What every actor is built from.
pub struct ActorConfig {
    pub app: Arc<AppSettings>,
    pub credential: Credential,
    /// The record's identity in the store.
    pub key: AppKey,
    /// The `app` label of its metrics and logs: the app name, or `name:jsapi_ticket`.
    pub label: String,
    pub refresh: RefreshSettings,
    pub wait_limit: Duration,
    /// How often to re-read a shared store (covers missed change notifications).
    pub poll_interval: Duration,
    pub client: WechatClient,
    pub store: Arc<dyn TokenStore>,
    pub metrics: Metrics,
    pub status: SharedStatus,
}

pub struct TokenActor {
    cfg: ActorConfig,

    current: Option<Arc<TokenRecord>>,
    /// Highest generation seen (in memory or in the store), so generations never go back.
    generation: u64,
    last_failure: Option<Arc<FailureInfo>>,
    /// Failed refreshes since the last success, for the backoff.
    failures: u32,
    /// Today's calls to WeChat's token endpoint.
    quota: QuotaUsage,
    /// The trigger of the refresh in flight, if any.
    in_flight: Option<Trigger>,
    timer: Option<Timer>,
    /// The store is being read after a (re)start; no refresh decisions until it answers.
    loading: bool,
    /// A re-read of the shared store is in flight.
    syncing: bool,
    /// The current token is not in the store yet (it was down when the token was fetched).
    unsaved: bool,
    get_waiters: Vec<Waiter>,
    /// Each with the token its caller reported as rejected: only a different one answers it.
    invalidate_waiters: Vec<(Waiter, AccessToken)>,
    /// The current token was reported as rejected by WeChat: keep retrying until it is
    /// replaced, even after the callers who reported it gave up waiting.
    rejected: Option<AccessToken>,
    /// Stable grant: WeChat's limits on forced refreshes.
    force_budget: ForceBudget,
    /// Ticket: the generation of the access token the current ticket was fetched with.
    depends_on: Option<u64>,
    /// Told after every token change (ticket actors).
    dependents: Vec<Recipient<TokenChanged>>,
    /// When the current token is due for its proactive refresh (published for alerting).
    refresh_due: Option<SystemTime>,
    /// Removed from the configuration: does nothing more and stops once unreferenced.
    retired: bool,
}

impl TokenActor {
    pub fn new(cfg: ActorConfig) -> Self {
        TokenActor {
            cfg,
            current: None,
            generation: 0,
            last_failure: None,
            failures: 0,
            quota: QuotaUsage::default(),
            in_flight: None,
            timer: None,
            loading: false,
            syncing: false,
            unsaved: false,
            get_waiters: Vec::new(),
            invalidate_waiters: Vec::new(),
            rejected: None,
            force_budget: ForceBudget::default(),
            depends_on: None,
            dependents: Vec::new(),
            refresh_due: None,
            retired: false,
        }
    }

    /// How long before expiry to refresh a token of `lifetime`.
    fn margin_for(&self, lifetime: Duration) -> Duration {
        match (&self.cfg.credential, self.cfg.app.kind) {
            // WeCom hands out the same token until it has expired: asking earlier only brings
            // it back. Refresh at expiry (and whenever a client reports 42001/40014).
            (Credential::AccessToken, AppKind::Wecom) => Duration::ZERO,
            (Credential::AccessToken, AppKind::Official(Grant::Stable)) => {
                stable_margin(self.cfg.refresh.margin, lifetime)
            }
            _ => effective_margin(self.cfg.refresh.margin, lifetime),
        }
    }

    fn is_stable(&self) -> bool {
        matches!(self.cfg.credential, Credential::AccessToken)
            && self.cfg.app.kind == AppKind::Official(Grant::Stable)
    }

    /// The upstream call for this credential. For the stable grant, `force` invalidates the
    /// current token at once (spent from the daily budget by the caller).
    fn fetch_fn(&self, force: bool) -> FetchFn {
        let client = self.cfg.client.clone();
        let app = self.cfg.app.clone();
        let metrics = self.cfg.metrics.clone();
        let label = self.cfg.label.clone();
        let credential = self.cfg.credential.clone();
        Box::new(move || {
            Box::pin(async move {
                let started = Instant::now();
                let (endpoint, fetched) = match credential {
                    Credential::AccessToken => match app.kind {
                        AppKind::Official(Grant::ClientCredential) => {
                            ("token", client.fetch_token(&app.appid, &app.secret).await)
                        }
                        AppKind::Official(Grant::Stable) => (
                            "stable_token",
                            client
                                .fetch_stable_token(&app.appid, &app.secret, force)
                                .await,
                        ),
                        AppKind::Wecom => (
                            "wecom_token",
                            client.fetch_wecom_token(&app.appid, &app.secret).await,
                        ),
                    },
                    Credential::Ticket {
                        kind,
                        token,
                        token_actor,
                    } => {
                        let Some(current) = token.load().valid_token(SystemTime::now()).cloned()
                        else {
                            return Err(UpstreamError::NoToken);
                        };
                        let mut fetched = client.fetch_ticket(&current.token, kind).await;
                        if let Err(e) = &fetched {
                            if matches!(e.errcode(), Some(40001 | 42001 | 40014)) {
                                // The token was rejected: have it replaced; the change
                                // notification then brings this ticket's refetch.
                                token_actor.do_send(Invalidate {
                                    token: current.token.expose().to_string(),
                                });
                            }
                        }
                        if let Ok(f) = &mut fetched {
                            f.depends_on = Some(current.generation);
                        }
                        ("ticket", fetched)
                    }
                };
                metrics.upstream_call(&label, endpoint, started.elapsed());
                fetched
            })
        })
    }

    fn name(&self) -> &str {
        &self.cfg.label
    }

    fn valid_token(&self, now: SystemTime) -> Option<Arc<TokenRecord>> {
        self.current.clone().filter(|t| t.is_valid_at(now))
    }

    fn publish(&self) {
        self.cfg.status.store(Arc::new(AppStatus {
            token: self.current.clone(),
            last_failure: self.last_failure.clone(),
            quota: self.quota,
            refresh_due: self.refresh_due,
        }));
    }

    fn cancel_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t.handle());
        }
    }

    fn retry_pending(&self) -> bool {
        matches!(self.timer, Some(Timer::Retry(_)))
    }

    /// Starts a refresh unless one is in flight, the store is still being read, or a retry is
    /// already waiting out its backoff (a storm of requests must not defeat the backoff).
    fn refresh_if_idle(&mut self, ctx: &mut Context<Self>, trigger: Trigger) {
        if self.in_flight.is_none() && !self.loading && !self.retry_pending() {
            self.start_refresh(ctx, trigger);
        }
    }

    fn start_refresh(&mut self, ctx: &mut Context<Self>, trigger: Trigger) {
        if self.in_flight.is_some() || self.retired {
            return;
        }
        if let Credential::Ticket { token, .. } = &self.cfg.credential {
            if token.load().valid_token(SystemTime::now()).is_none() {
                // Nothing to fetch with yet (start-up, or the token fetch is failing): the
                // token actor's change notification starts this refresh. Trying now would
                // only count failures that are the token's, not the ticket's.
                tracing::debug!(app = self.name(), "ticket waits for a valid access token");
                return;
            }
        }
        self.cancel_timer(ctx);
        self.in_flight = Some(trigger);

        let basis = Basis {
            generation: self.generation,
            token: self.current.as_ref().map(|c| c.token.clone()),
            quota: self.quota,
            live: self.cfg.status.clone(),
            unshared: self.unsaved,
        };
        // A stable token is only replaced early by a forced refresh, which WeChat limits.
        let now = SystemTime::now();
        let force = self.is_stable()
            && matches!(trigger, Trigger::Invalidated | Trigger::Revoked)
            && self.force_budget.allows(now);
        if force {
            self.force_budget.spend(now);
        }
        // The upstream call, made only if the store decides this instance must fetch.
        let fetch = self.fetch_fn(force);
        let refresh = self
            .cfg
            .store
            .clone()
            .refresh(self.cfg.key.clone(), basis, fetch);
        ctx.spawn(
            refresh
                .into_actor(self)
                .map(move |result, act, ctx| act.refresh_done(trigger, result, ctx)),
        );
    }

    fn refresh_done(
        &mut self,
        trigger: Trigger,
        result: Result<Refreshed, RefreshError>,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight = None;
        match result {
            Ok(Refreshed::Fetched {
                stored,
                store_error,
            }) => {
                self.unsaved = store_error.is_some();
                if let Some(e) = store_error {
                    self.cfg.metrics.store_failed(self.name(), "save");
                    tracing::error!(app = self.name(), error = %e,
                        "could not save the new token; serving it anyway and writing it back later");
                }
                tracing::info!(
                    app = self.name(),
                    trigger = trigger.as_str(),
                    generation = stored.record.generation,
                    token = %stored.record.token,
                    expires_in = stored.record.lifetime().as_secs(),
                    "token refreshed"
                );
                self.cfg.metrics.refresh_succeeded(self.name(), trigger);
                self.cfg.metrics.config_error(self.name(), false);
                self.install(stored, Some(trigger), ctx);
            }
            Ok(Refreshed::Adopted(stored)) => {
                tracing::info!(
                    app = self.name(),
                    generation = stored.record.generation,
                    token = %stored.record.token,
                    fetched_by = stored.fetched_by.as_deref().unwrap_or("?"),
                    "adopted the token another instance refreshed"
                );
                self.unsaved = false;
                self.install(stored, Some(trigger), ctx);
            }
            Err(err) => self.refresh_failed(trigger, err, ctx),
        }
    }

    /// Makes `stored` the current token: publish, answer every waiter, tell dependents,
    /// schedule the next refresh. `via` is the trigger of the refresh that produced it.
    fn install(&mut self, stored: Stored, via: Option<Trigger>, ctx: &mut Context<Self>) {
        let Stored {
            record,
            quota,
            depends_on,
            ..
        } = stored;
        if depends_on.is_some() {
            self.depends_on = depends_on;
        }
        let unchanged = self
            .current
            .as_ref()
            .is_some_and(|c| c.token == record.token);
        self.generation = self.generation.max(record.generation);
        if quota.day > self.quota.day
            || (quota.day == self.quota.day && quota.used > self.quota.used)
        {
            self.quota = quota;
        }
        if self.rejected.as_ref() != Some(&record.token) {
            self.rejected = None;
        }
        let record = Arc::new(record);
        self.current = Some(record.clone());
        self.last_failure = None;
        self.failures = 0;
        self.publish();
        for w in self.get_waiters.drain(..) {
            let _ = w.send(record.clone());
        }
        // A refresh that was not made for the reporters (e.g. one that started before the
        // report) and brought back the very token they reported does not answer them: they
        // get a refresh of their own. One made for them answers them either way.
        let made_for_reporters = matches!(via, Some(Trigger::Invalidated | Trigger::Revoked));
        let (still_rejected, answered): (Vec<_>, Vec<_>) = self
            .invalidate_waiters
            .drain(..)
            .partition(|(_, rejected)| !made_for_reporters && *rejected == record.token);
        for (w, _) in answered {
            let _ = w.send(record.clone());
        }
        self.invalidate_waiters = still_rejected;
        if !unchanged {
            let changed = TokenChanged {
                generation: record.generation,
            };
            self.dependents.retain(|d| d.try_send(changed).is_ok());
        }
        self.schedule_refresh(ctx, unchanged);
        if self.invalidate_waiters.iter().any(|(w, _)| !w.is_closed()) {
            self.start_refresh(ctx, Trigger::Invalidated);
        }
    }

    fn refresh_failed(&mut self, trigger: Trigger, err: RefreshError, ctx: &mut Context<Self>) {
        let still_valid = self.valid_token(SystemTime::now()).is_some();
        let (failure, delay) = match &err {
            RefreshError::Upstream(err) => {
                self.cfg.metrics.refresh_failed(self.name(), trigger, err);
                let class = err.class();
                self.cfg
                    .metrics
                    .config_error(self.name(), class == ErrorClass::Config);
                if err.errcode().is_some() {
                    // WeChat answered: the call counts against the daily quota.
                    self.quota.count(SystemTime::now());
                }
                let delay = match class {
                    ErrorClass::Transient => self.backoff(),
                    // Neither a wrong secret nor a used-up quota gets better by asking often.
                    ErrorClass::Config | ErrorClass::Quota => self.cfg.refresh.retry_max,
                };
                if class == ErrorClass::Config {
                    tracing::error!(app = self.name(), appid = %self.cfg.app.appid, trigger = trigger.as_str(),
                        reason = %err.reason(), class = class.as_str(), error = %err,
                        still_valid, retry_in = ?delay, "token fetch failed: configuration error");
                } else {
                    tracing::warn!(app = self.name(), trigger = trigger.as_str(),
                        reason = %err.reason(), class = class.as_str(), error = %err,
                        still_valid, retry_in = ?delay, "token fetch failed");
                }
                let failure = FailureInfo {
                    errcode: err.errcode(),
                    reason: err.reason(),
                    class,
                    message: err.to_string(),
                };
                (failure, delay)
            }
            RefreshError::Store(msg) => {
                self.cfg.metrics.store_failed(self.name(), "lock");
                let delay = self.backoff();
                tracing::warn!(app = self.name(), trigger = trigger.as_str(), error = %msg,
                    still_valid, retry_in = ?delay,
                    "refresh postponed: the shared store cannot coordinate it and the token is still valid");
                let failure = FailureInfo {
                    errcode: None,
                    reason: "store".into(),
                    class: ErrorClass::Transient,
                    message: err.to_string(),
                };
                (failure, delay)
            }
        };
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(Arc::new(failure));
        self.publish();
        let handle = ctx.run_later(delay, move |act, ctx| {
            act.timer = None;
            act.retry(ctx, trigger);
        });
        self.timer = Some(Timer::Retry(handle));
    }

    /// A retry is due. The reason for it may have gone meanwhile (another instance's token was
    /// adopted, or the reporting callers gave up): then wait for the normal refresh instead of
    /// fetching a token nobody needs yet.
    fn retry(&mut self, ctx: &mut Context<Self>, trigger: Trigger) {
        let now = SystemTime::now();
        let waiting = self.get_waiters.iter().any(|w| !w.is_closed())
            || self.invalidate_waiters.iter().any(|(w, _)| !w.is_closed());
        if let Some(cur) = self.valid_token(now) {
            let margin = self.margin_for(cur.lifetime());
            let rejected = self.rejected.as_ref() == Some(&cur.token);
            if !waiting && !rejected && cur.remaining(now) > margin {
                tracing::debug!(
                    app = self.name(),
                    "retry no longer needed: the token is not due"
                );
                self.schedule_refresh(ctx, false);
                return;
            }
        }
        self.start_refresh(ctx, trigger);
    }

    fn backoff(&self) -> Duration {
        backoff(
            self.failures,
            self.cfg.refresh.retry_min,
            self.cfg.refresh.retry_max,
            rand::random(),
        )
    }

    /// Schedules the proactive refresh. `unchanged`: the last refresh brought back the same
    /// token (a stable token asked for too early), so do not ask again at once.
    fn schedule_refresh(&mut self, ctx: &mut Context<Self>, unchanged: bool) {
        self.cancel_timer(ctx);
        if self.retired {
            return;
        }
        let Some(current) = &self.current else {
            return;
        };
        let now = SystemTime::now();
        let margin = self.margin_for(current.lifetime());
        let mut delay = refresh_delay(
            now,
            current.expires_at,
            current.lifetime(),
            margin,
            rand::random(),
        );
        if self.cfg.app.kind == AppKind::Wecom
            && matches!(self.cfg.credential, Credential::AccessToken)
        {
            // WeCom answers with whole seconds left and the old token until it has expired:
            // ask a second after the expiry, when only a new token can come back.
            delay += Duration::from_secs(1);
        }
        if unchanged && delay.is_zero() {
            delay = self.cfg.refresh.retry_min.min(current.remaining(now) / 2);
        }
        // A refresh that brought the same token back did not do its job: the due time stays
        // where it was, so alerting sees it getting overdue.
        if !(unchanged && self.refresh_due.is_some()) {
            self.refresh_due = Some(now + delay);
        }
        self.publish();
        tracing::debug!(
            app = self.name(),
            in_secs = delay.as_secs(),
            "next refresh scheduled"
        );
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.start_refresh(ctx, Trigger::Scheduled);
        });
        self.timer = Some(Timer::Refresh(handle));
    }

    /// Whether a stored record should replace what this actor holds.
    fn is_newer(&self, stored: &Stored) -> bool {
        stored.record.appid == self.cfg.key.appid
            && stored.record.is_valid_at(SystemTime::now())
            && self
                .current
                .as_ref()
                .is_none_or(|c| stored.record.generation > c.generation)
    }

    /// After the store answered at (re)start: adopt its record if it is ours and newer, then
    /// either schedule the next refresh or refresh now.
    fn loaded(&mut self, result: anyhow::Result<Option<Stored>>, ctx: &mut Context<Self>) {
        self.loading = false;
        match result {
            Ok(Some(stored)) if stored.record.appid != self.cfg.key.appid => {
                tracing::info!(
                    app = self.name(),
                    "stored token belongs to another appid; ignoring it"
                );
            }
            Ok(Some(stored)) => {
                self.generation = self.generation.max(stored.record.generation);
                if stored.quota.day >= self.quota.day {
                    self.quota = stored.quota;
                }
                if self.is_newer(&stored) {
                    tracing::info!(app = self.name(), generation = stored.record.generation,
                        token = %stored.record.token,
                        expires_in = stored.record.remaining(SystemTime::now()).as_secs(),
                        "reusing stored token");
                    self.depends_on = stored.depends_on;
                    self.current = Some(Arc::new(stored.record));
                }
            }
            Ok(None) => {}
            Err(e) => {
                self.cfg.metrics.store_failed(self.name(), "load");
                tracing::error!(app = self.name(), error = %format!("{e:#}"), "could not read the token store");
            }
        }
        if self.cfg.store.shared() {
            ctx.run_interval(self.cfg.poll_interval, |act, ctx| act.sync(ctx));
        }
        let now = SystemTime::now();
        match self.valid_token(now) {
            Some(cur) => {
                self.publish();
                for w in self.get_waiters.drain(..) {
                    let _ = w.send(cur.clone());
                }
                if cur.remaining(now) > self.margin_for(cur.lifetime()) {
                    self.schedule_refresh(ctx, false);
                } else {
                    // Already due: say so, so a failing start-up refresh shows as overdue.
                    self.refresh_due = Some(now);
                    self.start_refresh(ctx, Trigger::Startup);
                }
            }
            None => {
                self.publish();
                self.start_refresh(ctx, Trigger::Startup);
            }
        }
    }

    /// Re-reads a shared store: adopts a newer token another instance wrote, and writes back
    /// the current one when the store lost it (restarted empty) or never got it (was down).
    fn sync(&mut self, ctx: &mut Context<Self>) {
        if self.syncing || self.loading {
            return;
        }
        self.syncing = true;
        let load = self.cfg.store.load(&self.cfg.key);
        ctx.spawn(load.into_actor(self).map(|result, act, ctx| {
            act.syncing = false;
            let stored = match result {
                Ok(s) => s,
                // Unreachable: keep serving; the health loop reports it.
                Err(_) => return,
            };
            if let Some(s) = &stored {
                if act.is_newer(s) {
                    tracing::info!(app = act.name(), generation = s.record.generation,
                        token = %s.record.token, "adopting a newer token from the shared store");
                    act.unsaved = false;
                    act.install(s.clone(), None, ctx);
                    return;
                }
            }
            let behind = stored
                .as_ref()
                .is_none_or(|s| s.record.generation < act.generation);
            if let (Some(cur), true) = (act.valid_token(SystemTime::now()), behind || act.unsaved) {
                act.write_back(cur, ctx);
            }
        }));
    }

    fn write_back(&mut self, record: Arc<TokenRecord>, ctx: &mut Context<Self>) {
        let stored = Stored {
            record: (*record).clone(),
            quota: self.quota,
            fetched_by: None,
            depends_on: None,
        };
        let save = self.cfg.store.save(&self.cfg.key, &stored);
        ctx.spawn(save.into_actor(self).map(move |result, act, _| match result {
            Ok(written) => {
                act.unsaved = false;
                tracing::info!(
                    app = act.name(),
                    generation = record.generation,
                    written,
                    "wrote the current token back to the shared store"
                );
            }
            Err(e) => {
                tracing::debug!(app = act.name(), error = %format!("{e:#}"), "write-back failed; will retry")
            }
        }));
    }

    fn park_get(&mut self) -> oneshot::Receiver<Arc<TokenRecord>> {
        // Drop senders whose requests already gave up, so a long outage cannot grow the list
        // without bound.
        self.get_waiters.retain(|w| !w.is_closed());
        let (tx, rx) = oneshot::channel();
        self.get_waiters.push(tx);
        rx
    }

    fn park_invalidate(&mut self, rejected: AccessToken) -> oneshot::Receiver<Arc<TokenRecord>> {
        self.invalidate_waiters.retain(|(w, _)| !w.is_closed());
        let (tx, rx) = oneshot::channel();
        self.invalidate_waiters.push((tx, rejected));
        rx
    }
}

impl Actor for TokenActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.retired {
            // Nothing to schedule: the actor stops once the last address is dropped.
            return;
        }
        self.loading = true;
        let load = self.cfg.store.load(&self.cfg.key);
        ctx.spawn(
            load.into_actor(self)
                .map(|result, act, ctx| act.loaded(result, ctx)),
        );
    }
}

impl actix::Supervised for TokenActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The old context's timers and futures are gone with it.
        self.cfg.metrics.actor_restarted(self.name());
        tracing::warn!(app = self.name(), "token actor restarting");
        self.in_flight = None;
        self.timer = None;
        self.loading = false;
        self.syncing = false;
    }
}

impl Handler<Get> for TokenActor {
    type Result = ResponseFuture<Result<Arc<TokenRecord>, NoValidToken>>;

    fn handle(&mut self, _: Get, ctx: &mut Self::Context) -> Self::Result {
        if let Some(t) = self.valid_token(SystemTime::now()) {
            return Box::pin(std::future::ready(Ok(t)));
        }
        let rx = self.park_get();
        // A refresh may not be running: e.g. a scheduled one pending while the clock jumped.
        // One due within the wait anyway (a WeCom token in its last second) is waited for:
        // asking earlier would only bring the old token back.
        let due_soon = self
            .refresh_due
            .and_then(|d| d.duration_since(SystemTime::now()).ok())
            .is_some_and(|left| left < self.cfg.wait_limit);
        if !due_soon || self.timer.is_none() {
            self.refresh_if_idle(ctx, Trigger::Scheduled);
        }
        let status = self.cfg.status.clone();
        let wait = self.cfg.wait_limit;
        Box::pin(async move {
            match tokio::time::timeout(wait, rx).await {
                Ok(Ok(t)) => Ok(t),
                _ => {
                    let s = status.load();
                    s.valid_token(SystemTime::now())
                        .cloned()
                        .ok_or_else(|| NoValidToken {
                            last_failure: s.last_failure.clone(),
                        })
                }
            }
        })
    }
}

impl Handler<Invalidate> for TokenActor {
    type Result = ResponseFuture<Result<Invalidated, NoValidToken>>;

    fn handle(&mut self, msg: Invalidate, ctx: &mut Self::Context) -> Self::Result {
        let now = SystemTime::now();
        let metrics = self.cfg.metrics.clone();
        let app = self.cfg.label.clone();
        if let Some(cur) = self.valid_token(now) {
            let immediate = if cur.token.expose() != msg.token {
                // Already replaced: the caller only needs the current one.
                Some(InvalidationOutcome::Stale)
            } else if cur.age(now) < self.cfg.refresh.min_interval {
                // Just fetched: refetching would only burn quota.
                Some(InvalidationOutcome::TooSoon)
            } else if self.is_stable() && self.in_flight.is_none() && !self.force_budget.allows(now)
            {
                // A stable token is replaced early only by a forced refresh, and WeChat's
                // limits on those are used up: answer with what there is.
                tracing::warn!(app = %app, token = %cur.token,
                    "reported token kept: WeChat's limits on forced refreshes (20 a day, 30 s apart) are used up");
                metrics.forced_refresh_refused(&app);
                Some(InvalidationOutcome::Refused)
            } else {
                None
            };
            if let Some(outcome) = immediate {
                tracing::debug!(app = %app, outcome = outcome.as_str(), "invalidation answered without a fetch");
                metrics.invalidation(&app, outcome);
                return Box::pin(std::future::ready(Ok(Invalidated {
                    refreshed: outcome == InvalidationOutcome::Stale,
                    record: cur,
                    outcome,
                })));
            }
            tracing::info!(app = %app, token = %cur.token, generation = cur.generation,
                "current token reported as rejected; refreshing");
            self.rejected = Some(cur.token.clone());
        }
        let reported = msg.token;
        let rx = self.park_invalidate(AccessToken::new(reported.as_str()));
        self.refresh_if_idle(ctx, Trigger::Invalidated);
        let status = self.cfg.status.clone();
        let wait = self.cfg.wait_limit;
        Box::pin(async move {
            let answer = match tokio::time::timeout(wait, rx).await {
                Ok(Ok(record)) => {
                    let refreshed = record.token.expose() != reported;
                    Ok(Invalidated {
                        record,
                        refreshed,
                        outcome: if refreshed {
                            InvalidationOutcome::Refreshed
                        } else {
                            InvalidationOutcome::Failed
                        },
                    })
                }
                _ => {
                    let s = status.load();
                    match s.valid_token(SystemTime::now()) {
                        Some(record) => Ok(Invalidated {
                            refreshed: record.token.expose() != reported,
                            record: record.clone(),
                            outcome: InvalidationOutcome::Failed,
                        }),
                        None => Err(NoValidToken {
                            last_failure: s.last_failure.clone(),
                        }),
                    }
                }
            };
            let outcome = match &answer {
                Ok(a) => a.outcome,
                Err(_) => InvalidationOutcome::Failed,
            };
            metrics.invalidation(&app, outcome);
            answer
        })
    }
}

impl Handler<Revoke> for TokenActor {
    type Result = ResponseFuture<Result<Revoked, RevokeError>>;

    fn handle(&mut self, _: Revoke, ctx: &mut Self::Context) -> Self::Result {
        let now = SystemTime::now();
        match self.cfg.app.kind {
            AppKind::Wecom => {
                return Box::pin(std::future::ready(Err(RevokeError::Unsupported(
                    "WeCom hands out the same token until it expires",
                ))))
            }
            AppKind::Official(Grant::Stable) if !self.force_budget.allows(now) => {
                return Box::pin(std::future::ready(Err(RevokeError::TooSoon)))
            }
            AppKind::Official(_) => {}
        }
        let old = self.current.as_ref().map(|c| c.token.clone());
        // The waiter is answered only by a token other than the revoked one.
        let rx = self.park_invalidate(old.clone().unwrap_or_else(|| AccessToken::new("")));
        if let Some(t) = &old {
            self.rejected = Some(t.clone());
        }
        // A refresh in flight may be a normal one; the revocation needs its own.
        if self.in_flight.is_none() {
            self.start_refresh(ctx, Trigger::Revoked);
        }
        let second = if self.is_stable() {
            // A forced refresh leaves the previous token valid for a while; a second one
            // 30 s later kills it for good.
            let delay = ForceBudget::MIN_GAP + Duration::from_secs(1);
            ctx.run_later(delay, |act, ctx| {
                act.cancel_timer(ctx);
                if act.in_flight.is_none() {
                    act.start_refresh(ctx, Trigger::Revoked);
                }
            });
            Some(delay)
        } else {
            None
        };
        self.cfg.metrics.revoked(&self.cfg.label);
        let wait = self.cfg.wait_limit;
        let status = self.cfg.status.clone();
        Box::pin(async move {
            match tokio::time::timeout(wait, rx).await {
                Ok(Ok(record)) => Ok(Revoked {
                    record,
                    old: old.map(|t| t.fingerprint()),
                    second_rotation_in: second,
                }),
                _ => Err(RevokeError::NoNewToken(NoValidToken {
                    last_failure: status.load().last_failure.clone(),
                })),
            }
        })
    }
}

impl Handler<TokenChanged> for TokenActor {
    type Result = ();

    /// A ticket depends on the access token: refetch it with the new one.
    fn handle(&mut self, changed: TokenChanged, ctx: &mut Self::Context) {
        if self.retired || !matches!(self.cfg.credential, Credential::Ticket { .. }) {
            return;
        }
        let behind = self.depends_on.is_none_or(|g| g < changed.generation);
        if behind && !self.loading {
            self.start_refresh(ctx, Trigger::Scheduled);
        }
    }
}

impl Handler<Subscribe> for TokenActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) {
        self.dependents.push(msg.0);
    }
}

impl Handler<Retire> for TokenActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        tracing::info!(
            app = self.name(),
            "removed from the configuration; stopping"
        );
        self.retired = true;
        self.dependents.clear();
        if let Credential::Ticket { .. } = self.cfg.credential {
            // Drop the strong address of the token actor so it can stop too.
            self.cfg.credential = Credential::AccessToken;
        }
        self.get_waiters.clear();
        self.invalidate_waiters.clear();
        ctx.stop();
    }
}

impl Handler<UpdateApp> for TokenActor {
    type Result = ();

    /// New secret, quota or refresh policy: used from the next fetch.
    fn handle(&mut self, msg: UpdateApp, ctx: &mut Self::Context) {
        let UpdateApp(app, refresh) = msg;
        tracing::info!(app = self.name(), "settings updated");
        self.cfg.app = app;
        self.cfg.refresh = refresh;
        if self.in_flight.is_none() && !self.retry_pending() && !self.loading {
            self.schedule_refresh(ctx, false);
        }
    }
}

impl Handler<StoreChanged> for TokenActor {
    type Result = ();

    fn handle(&mut self, _: StoreChanged, ctx: &mut Self::Context) {
        self.sync(ctx);
    }
}

impl Handler<ForceRestart> for TokenActor {
    type Result = ();

    fn handle(&mut self, _: ForceRestart, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
