//! `TokenActor`: owns one app's token, fetches and refreshes it, answers Get and Invalidate.
//!
//! The state machine, in short:
//! - `started()` loads the stored record, serves it if it is for this appid and still valid,
//!   and schedules the next refresh; otherwise it fetches at once.
//! - At most one fetch is in flight (`in_flight`). Gets and Invalidates that need a new token
//!   park a oneshot sender in a waiter list; the one fetch answers them all.
//! - A fetch saves the new record to the store before publishing it, then schedules the next
//!   refresh. A failure keeps the old token, records why, and retries with backoff.
//! - After every change the actor publishes an immutable [`AppStatus`] snapshot, which the HTTP
//!   fast path, readiness and metrics read without a message round trip.
//!
//! Timers and futures belong to the actor's context, so a supervisor restart drops them all;
//! `restarting()` clears the flags that pointed at them and `started()` rebuilds from state.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::messages::{ForceRestart, Get, Invalidate, Invalidated, NoValidToken};
use super::schedule::{backoff, effective_margin, refresh_delay};
use super::{AppStatus, FailureInfo, QuotaUsage, SharedStatus, TokenRecord};
use crate::config::{AppSettings, RefreshSettings};
use crate::metrics::{InvalidationOutcome, Metrics, Trigger};
use crate::store::{Stored, TokenStore};
use crate::upstream::{ErrorClass, Fetched, UpstreamError, WechatClient};

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

/// Everything an actor needs, cloned into each (re)start.
pub struct TokenActor {
    app: Arc<AppSettings>,
    refresh: RefreshSettings,
    wait_limit: Duration,
    client: WechatClient,
    store: Arc<dyn TokenStore>,
    metrics: Metrics,
    status: SharedStatus,

    current: Option<Arc<TokenRecord>>,
    /// Highest generation seen (in memory or in the store), so generations never go back.
    generation: u64,
    last_failure: Option<Arc<FailureInfo>>,
    /// Failed fetches since the last success, for the backoff.
    failures: u32,
    /// Today's calls to WeChat's token endpoint.
    quota: QuotaUsage,
    /// The trigger of the fetch in flight, if any.
    in_flight: Option<Trigger>,
    timer: Option<Timer>,
    /// The store is being read after a (re)start; no fetch decisions until it answers.
    loading: bool,
    get_waiters: Vec<Waiter>,
    invalidate_waiters: Vec<Waiter>,
}

impl TokenActor {
    pub fn new(
        app: Arc<AppSettings>,
        refresh: RefreshSettings,
        client: WechatClient,
        store: Arc<dyn TokenStore>,
        metrics: Metrics,
        status: SharedStatus,
    ) -> Self {
        TokenActor {
            app,
            refresh,
            wait_limit: DEFAULT_WAIT_LIMIT,
            client,
            store,
            metrics,
            status,
            current: None,
            generation: 0,
            last_failure: None,
            failures: 0,
            quota: QuotaUsage::default(),
            in_flight: None,
            timer: None,
            loading: false,
            get_waiters: Vec::new(),
            invalidate_waiters: Vec::new(),
        }
    }

    /// Overrides the 5 s wait limit (tests use shorter ones).
    pub fn with_wait_limit(mut self, wait: Duration) -> Self {
        self.wait_limit = wait;
        self
    }

    fn name(&self) -> &str {
        &self.app.name
    }

    fn valid_token(&self, now: SystemTime) -> Option<Arc<TokenRecord>> {
        self.current.clone().filter(|t| t.is_valid_at(now))
    }

    fn publish(&self) {
        self.status.store(Arc::new(AppStatus {
            token: self.current.clone(),
            last_failure: self.last_failure.clone(),
            refreshing: self.in_flight.is_some(),
            quota: self.quota,
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

    /// Starts a fetch unless one is in flight, the store is still being read, or a retry is
    /// already waiting out its backoff (a storm of requests must not defeat the backoff).
    fn fetch_if_idle(&mut self, ctx: &mut Context<Self>, trigger: Trigger) {
        if self.in_flight.is_none() && !self.loading && !self.retry_pending() {
            self.start_fetch(ctx, trigger);
        }
    }

    fn start_fetch(&mut self, ctx: &mut Context<Self>, trigger: Trigger) {
        if self.in_flight.is_some() {
            return;
        }
        self.cancel_timer(ctx);
        self.in_flight = Some(trigger);
        self.publish();

        let client = self.client.clone();
        let app = self.app.clone();
        let store = self.store.clone();
        let generation = self.generation + 1;
        let mut quota = self.quota;
        let fetch = async move {
            let started = Instant::now();
            let fetched = client.fetch_token(&app.appid, &app.secret).await;
            let elapsed = started.elapsed();
            let Fetched {
                token,
                expires_in,
                requested_at,
            } = match fetched {
                Ok(f) => f,
                Err(e) => return FetchResult::Failed(e, elapsed),
            };
            quota.count(SystemTime::now());
            let stored = Stored {
                record: TokenRecord {
                    appid: app.appid.clone(),
                    token,
                    fetched_at: requested_at,
                    expires_at: requested_at + expires_in,
                    generation,
                },
                quota,
            };
            // Saved before it is served: a crash right after serving must not lose it.
            let saved = store.save(&app.name, &stored).await;
            FetchResult::Fetched {
                stored,
                saved,
                elapsed,
            }
        };
        ctx.spawn(
            fetch
                .into_actor(self)
                .map(move |result, act, ctx| act.fetch_done(trigger, result, ctx)),
        );
    }

    fn fetch_done(&mut self, trigger: Trigger, result: FetchResult, ctx: &mut Context<Self>) {
        self.in_flight = None;
        match result {
            FetchResult::Fetched {
                stored: Stored { record, quota },
                saved,
                elapsed,
            } => {
                self.metrics.upstream_call(self.name(), "token", elapsed);
                self.metrics.config_error(self.name(), false);
                self.quota = quota;
                if let Err(e) = saved {
                    self.metrics.store_failed(self.name(), "save");
                    tracing::error!(app = self.name(), error = %format!("{e:#}"),
                        "could not save the new token; serving it anyway, a restart will fetch again");
                }
                tracing::info!(
                    app = self.name(),
                    trigger = trigger.as_str(),
                    generation = record.generation,
                    token = %record.token,
                    expires_in = record.lifetime().as_secs(),
                    "token refreshed"
                );
                self.metrics.refresh_succeeded(self.name(), trigger);
                self.generation = record.generation;
                let record = Arc::new(record);
                self.current = Some(record.clone());
                self.last_failure = None;
                self.failures = 0;
                self.publish();
                for w in self
                    .get_waiters
                    .drain(..)
                    .chain(self.invalidate_waiters.drain(..))
                {
                    let _ = w.send(record.clone());
                }
                self.schedule_refresh(ctx);
            }
            FetchResult::Failed(err, elapsed) => {
                self.metrics.upstream_call(self.name(), "token", elapsed);
                self.metrics.refresh_failed(self.name(), trigger, &err);
                let class = err.class();
                self.metrics
                    .config_error(self.name(), class == ErrorClass::Config);
                if err.errcode().is_some() {
                    // WeChat answered: the call counts against the daily quota.
                    self.quota.count(SystemTime::now());
                }
                let delay = match class {
                    ErrorClass::Transient => backoff(
                        self.failures,
                        self.refresh.retry_min,
                        self.refresh.retry_max,
                        rand::random(),
                    ),
                    // Neither a wrong secret nor a used-up quota gets better by asking often.
                    ErrorClass::Config | ErrorClass::Quota => self.refresh.retry_max,
                };
                self.failures = self.failures.saturating_add(1);
                let still_valid = self.valid_token(SystemTime::now()).is_some();
                if class == ErrorClass::Config {
                    tracing::error!(app = self.name(), appid = %self.app.appid, trigger = trigger.as_str(),
                        reason = %err.reason(), class = class.as_str(), error = %err,
                        still_valid, retry_in = ?delay, "token fetch failed: configuration error");
                } else {
                    tracing::warn!(app = self.name(), trigger = trigger.as_str(),
                        reason = %err.reason(), class = class.as_str(), error = %err,
                        still_valid, retry_in = ?delay, "token fetch failed");
                }
                self.last_failure = Some(Arc::new(FailureInfo {
                    errcode: err.errcode(),
                    reason: err.reason(),
                    class,
                    message: err.to_string(),
                    at: SystemTime::now(),
                }));
                self.publish();
                let handle = ctx.run_later(delay, move |act, ctx| {
                    act.timer = None;
                    act.start_fetch(ctx, trigger);
                });
                self.timer = Some(Timer::Retry(handle));
            }
        }
    }

    fn schedule_refresh(&mut self, ctx: &mut Context<Self>) {
        self.cancel_timer(ctx);
        let Some(current) = &self.current else {
            return;
        };
        let delay = refresh_delay(
            SystemTime::now(),
            current.expires_at,
            current.lifetime(),
            self.refresh.margin,
            rand::random(),
        );
        tracing::debug!(
            app = self.name(),
            in_secs = delay.as_secs(),
            "next refresh scheduled"
        );
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.start_fetch(ctx, Trigger::Scheduled);
        });
        self.timer = Some(Timer::Refresh(handle));
    }

    /// After the store answered at (re)start: adopt its record if it is ours and newer, then
    /// either schedule the next refresh or fetch now.
    fn loaded(&mut self, result: anyhow::Result<Option<Stored>>, ctx: &mut Context<Self>) {
        self.loading = false;
        match result {
            Ok(Some(Stored { record: rec, .. })) if rec.appid != self.app.appid => {
                tracing::info!(
                    app = self.name(),
                    "stored token belongs to another appid; ignoring it"
                );
            }
            Ok(Some(Stored { record: rec, quota })) => {
                if quota.day >= self.quota.day && quota.used > self.quota.used {
                    self.quota = quota;
                }
                self.generation = self.generation.max(rec.generation);
                let newer = self
                    .current
                    .as_ref()
                    .is_none_or(|c| rec.generation > c.generation);
                if newer && rec.is_valid_at(SystemTime::now()) {
                    tracing::info!(app = self.name(), generation = rec.generation, token = %rec.token,
                        expires_in = rec.remaining(SystemTime::now()).as_secs(), "reusing stored token");
                    self.current = Some(Arc::new(rec));
                }
            }
            Ok(None) => {}
            Err(e) => {
                self.metrics.store_failed(self.name(), "load");
                tracing::error!(app = self.name(), error = %format!("{e:#}"), "could not read the token store");
            }
        }
        let now = SystemTime::now();
        match self.valid_token(now) {
            Some(cur) => {
                self.publish();
                for w in self.get_waiters.drain(..) {
                    let _ = w.send(cur.clone());
                }
                let margin = effective_margin(self.refresh.margin, cur.lifetime());
                if cur.remaining(now) > margin {
                    self.schedule_refresh(ctx);
                } else {
                    self.start_fetch(ctx, Trigger::Startup);
                }
            }
            None => {
                self.publish();
                self.start_fetch(ctx, Trigger::Startup);
            }
        }
    }

    fn park(list: &mut Vec<Waiter>) -> oneshot::Receiver<Arc<TokenRecord>> {
        // Drop senders whose requests already gave up, so a long outage cannot grow the list
        // without bound.
        list.retain(|w| !w.is_closed());
        let (tx, rx) = oneshot::channel();
        list.push(tx);
        rx
    }
}

/// What a fetch future hands back to the actor.
enum FetchResult {
    Fetched {
        stored: Stored,
        /// The store write; a failure is logged and counted, the token served anyway.
        saved: anyhow::Result<()>,
        elapsed: Duration,
    },
    Failed(UpstreamError, Duration),
}

impl Actor for TokenActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.loading = true;
        let load = self.store.load(self.name());
        ctx.spawn(
            load.into_actor(self)
                .map(|result, act, ctx| act.loaded(result, ctx)),
        );
    }
}

impl actix::Supervised for TokenActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The old context's timers and futures are gone with it.
        self.metrics.actor_restarted(self.name());
        tracing::warn!(app = self.name(), "token actor restarting");
        self.in_flight = None;
        self.timer = None;
        self.loading = false;
    }
}

impl Handler<Get> for TokenActor {
    type Result = ResponseFuture<Result<Arc<TokenRecord>, NoValidToken>>;

    fn handle(&mut self, _: Get, ctx: &mut Self::Context) -> Self::Result {
        if let Some(t) = self.valid_token(SystemTime::now()) {
            return Box::pin(std::future::ready(Ok(t)));
        }
        let rx = Self::park(&mut self.get_waiters);
        // A fetch may not be running: e.g. a scheduled refresh pending while the clock jumped.
        self.fetch_if_idle(ctx, Trigger::Scheduled);
        let status = self.status.clone();
        let wait = self.wait_limit;
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
        let metrics = self.metrics.clone();
        let app = self.app.name.clone();
        if let Some(cur) = self.valid_token(now) {
            let immediate = if cur.token.expose() != msg.token {
                // Already replaced: the caller only needs the current one.
                Some(InvalidationOutcome::Stale)
            } else if cur.age(now) < self.refresh.min_interval {
                // Just fetched: refetching would only burn quota.
                Some(InvalidationOutcome::TooSoon)
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
        }
        let rx = Self::park(&mut self.invalidate_waiters);
        self.fetch_if_idle(ctx, Trigger::Invalidated);
        let status = self.status.clone();
        let wait = self.wait_limit;
        Box::pin(async move {
            let answer = match tokio::time::timeout(wait, rx).await {
                Ok(Ok(record)) => Ok(Invalidated {
                    record,
                    refreshed: true,
                    outcome: InvalidationOutcome::Refreshed,
                }),
                _ => {
                    let s = status.load();
                    match s.valid_token(SystemTime::now()) {
                        Some(record) => Ok(Invalidated {
                            record: record.clone(),
                            refreshed: false,
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

impl Handler<ForceRestart> for TokenActor {
    type Result = ();

    fn handle(&mut self, _: ForceRestart, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
