//! `TokenActor`: owns one credential's state and drives its refresh state machine.
//!
//! The state machine, in short:
//! - `started()` loads the stored record, serves it if it is for this appid and still valid,
//!   and schedules the next refresh; otherwise it refreshes at once (see `sync.rs`).
//! - At most one refresh is in flight (`in_flight`). Gets and Invalidates that need a new token
//!   park a oneshot sender in a waiter list; the one refresh answers them all.
//! - A refresh goes through the store: the embedded store fetches and saves; the shared (Redis)
//!   store first takes the fleet's lock and may adopt another instance's newer token instead.
//!   The new record is saved before it is published. A failure keeps the old token, records
//!   why, and retries with backoff.
//! - After every change the actor publishes its [`AppStatus`], which the HTTP fast path,
//!   readiness and metrics read without a message round trip. The actor holds that one status
//!   and nothing that mirrors it.
//!
//! Where the rest lives: the per-credential rules (margins, what a fetch is) in
//! `credential.rs`, the shared-store sync in `sync.rs`, the message handlers in `handlers.rs`,
//! the check with WeChat before a young token is refetched on a report in `confirm.rs`, panic
//! containment in `guard.rs`. Time comes from the configured [`SharedClock`] and timers
//! from tokio, so tests run all of it on paused time.
//!
//! Timers and futures belong to the actor's context, so a supervisor restart drops them all;
//! `restarting()` clears the flags that pointed at them and `started()` rebuilds from state.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::clock::SharedClock;
use super::confirm::Confirmation;
use super::fetch::Fetcher;
use super::messages::TokenChanged;
use super::schedule::{backoff, refresh_delay, startup_spread, ForceBudget};
use super::spec::CredentialSpec;
use super::{AccessToken, AppStatus, FailureInfo, SharedStatus, TokenRecord};
use crate::config::RefreshSettings;
use crate::metrics::Metrics;
use crate::status::Trigger;
use crate::store::{AppKey, Basis, Budget, RefreshError, Refreshed, Stored, TokenStore};
use crate::upstream::{ErrorClass, Promotion};

pub use super::credential::Credential;

/// How long a request may wait for a fetch before it is answered without one (spec: 5 s).
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(5);

pub(super) type Waiter = oneshot::Sender<Arc<TokenRecord>>;

/// The pending timer: the next proactive refresh, or a retry after a failure.
pub(super) enum Timer {
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

/// What every actor is built from.
pub struct ActorConfig {
    pub spec: Arc<CredentialSpec>,
    pub credential: Credential,
    /// The record's identity in the store.
    pub key: AppKey,
    /// The `app` label of its metrics and logs: the app name, or `name:jsapi_ticket`.
    pub label: String,
    pub refresh: RefreshSettings,
    pub wait_limit: Duration,
    /// How often to re-read a shared store (covers missed change notifications).
    pub poll_interval: Duration,
    /// Makes the upstream calls (WeChat, or a script in tests).
    pub fetcher: Rc<dyn Fetcher>,
    /// The record read for this actor by the start-up pass over the store (`Some(None)`: none
    /// stored); `None` to read it at start. Used by the first start only: a restart re-reads.
    pub preloaded: Option<Option<Stored>>,
    /// How many credentials were started together with this one (all of them at start-up,
    /// the added ones on a reload): their first refreshes are spread in proportion.
    pub cohort: usize,
    pub clock: SharedClock,
    pub store: Arc<dyn TokenStore>,
    pub metrics: Metrics,
    /// Where the actor publishes its status for readers.
    pub status: SharedStatus,
    /// Its entries in the server's token index (access tokens only: the gateway finds the
    /// credential of a call by the token it carries).
    pub index: Option<super::index::IndexSlot>,
}

pub struct TokenActor {
    pub(super) cfg: ActorConfig,

    /// The token, last failure, quota and refresh due time: what `publish` hands to readers.
    pub(super) status: AppStatus,
    /// Highest generation seen (in memory or in the store), so generations never go back.
    pub(super) generation: u64,
    /// Failed refreshes since the last success, for the backoff.
    failures: u32,
    /// The trigger of the refresh in flight, if any.
    pub(super) in_flight: Option<Trigger>,
    /// Moves the refresh in flight ahead in the upstream pool's queue when a caller waits.
    promotion: Option<Promotion>,
    pub(super) timer: Option<Timer>,
    /// The store is being read after a (re)start; no refresh decisions until it answers.
    pub(super) loading: bool,
    /// A re-read of the shared store is in flight.
    pub(super) syncing: bool,
    /// A change announced while a re-read was in flight, which may have read the record just
    /// before it: the generation announced (`u64::MAX`: unknown). Once the re-read is done,
    /// the actor reads again unless it holds that generation by then.
    pub(super) missed_change: Option<u64>,
    /// The current token is not in the store yet (it was down when the token was fetched).
    pub(super) unsaved: bool,
    pub(super) get_waiters: Vec<Waiter>,
    /// Each with the token its caller reported as rejected: only a different one answers it.
    pub(super) invalidate_waiters: Vec<(Waiter, AccessToken)>,
    /// The current token was reported as rejected by WeChat: keep retrying until it is
    /// replaced, even after the callers who reported it gave up waiting.
    pub(super) rejected: Option<AccessToken>,
    /// Reports of a young token waiting for WeChat's word on it, and the hour's early
    /// refetches (see `confirm.rs`).
    pub(super) confirmation: Confirmation,
    /// Stable grant: WeChat's limits on forced refreshes. Shared with the fetch, which spends
    /// from it when the call is really made.
    pub(super) force_budget: Rc<Cell<ForceBudget>>,
    /// Ticket: the generation of the access token the current ticket was fetched with.
    pub(super) depends_on: Option<u64>,
    /// Ticket: the newest access-token generation announced; a change announced while a
    /// fetch was in flight is caught up once it ends.
    pub(super) token_generation: Option<u64>,
    /// Told after every token change (ticket actors).
    pub(super) dependents: Vec<Recipient<TokenChanged>>,
    /// Stable grant revoke: when the second forced refresh (which kills the revoked token for
    /// good) is due. Actor state, so a restart in between does not lose it.
    pub(super) second_rotation: Option<SystemTime>,
    pub(super) rotation_timer: Option<SpawnHandle>,
    /// Removed from the configuration: does nothing more and stops once unreferenced.
    pub(super) retired: bool,
    /// The next scheduled refresh is the first after a fetch at start-up: spread it (see
    /// [`startup_spread`]). Cleared once used, or when a stored token was reused (it keeps the
    /// phase it already had).
    pub(super) spread_first_refresh: bool,
}

impl TokenActor {
    pub fn new(cfg: ActorConfig) -> Self {
        TokenActor {
            cfg,
            status: AppStatus::default(),
            generation: 0,
            failures: 0,
            in_flight: None,
            promotion: None,
            timer: None,
            loading: false,
            syncing: false,
            missed_change: None,
            unsaved: false,
            get_waiters: Vec::new(),
            invalidate_waiters: Vec::new(),
            rejected: None,
            confirmation: Confirmation::default(),
            force_budget: Rc::new(Cell::new(ForceBudget::default())),
            depends_on: None,
            token_generation: None,
            dependents: Vec::new(),
            second_rotation: None,
            rotation_timer: None,
            retired: false,
            spread_first_refresh: true,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.cfg.label
    }

    pub(super) fn now(&self) -> SystemTime {
        self.cfg.clock.now()
    }

    pub(super) fn current(&self) -> Option<&Arc<TokenRecord>> {
        self.status.token.as_ref()
    }

    pub(super) fn valid_token(&self, now: SystemTime) -> Option<Arc<TokenRecord>> {
        self.status.valid_token(now).cloned()
    }

    pub(super) fn publish(&self) {
        self.cfg.status.store(Arc::new(self.status.clone()));
        if let Some(slot) = &self.cfg.index {
            slot.update(self.status.token.as_ref());
        }
    }

    pub(super) fn cancel_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t.handle());
        }
    }

    /// Replaces the pending timer: there is never more than one, or refresh chains multiply.
    fn set_timer(&mut self, ctx: &mut Context<Self>, timer: Timer) {
        self.cancel_timer(ctx);
        self.timer = Some(timer);
    }

    pub(super) fn retry_pending(&self) -> bool {
        matches!(self.timer, Some(Timer::Retry(_)))
    }

    pub(super) fn anyone_waiting(&self) -> bool {
        self.get_waiters.iter().any(|w| !w.is_closed())
            || self.invalidate_waiters.iter().any(|(w, _)| !w.is_closed())
    }

    /// Starts a refresh unless one is in flight, the store is still being read, or a retry is
    /// already waiting out its backoff (a storm of requests must not defeat the backoff).
    pub(super) fn refresh_if_idle(&mut self, ctx: &mut Context<Self>, trigger: Trigger) {
        if self.in_flight.is_none() && !self.loading && !self.retry_pending() {
            self.start_refresh(ctx, trigger);
        }
    }

    pub(super) fn start_refresh(&mut self, ctx: &mut Context<Self>, trigger: Trigger) {
        if self.in_flight.is_some() || self.retired {
            return;
        }
        let now = self.now();
        if !self.has_what_fetch_needs(now) {
            // Trying now would only count failures that are the token's, not the ticket's.
            tracing::debug!(app = self.name(), "ticket waits for a valid access token");
            return;
        }
        self.cancel_timer(ctx);
        self.in_flight = Some(trigger);

        // A stable token is only replaced early by a forced refresh, which WeChat limits.
        let force = self.is_stable()
            && matches!(trigger, Trigger::Invalidated | Trigger::Revoked)
            && self.force_budget.get().allows(now);
        let basis = Basis {
            generation: self.generation,
            token: self.current().map(|c| c.token.clone()),
            quota: self.status.quota,
            live: self.cfg.status.clone(),
            unshared: self.unsaved,
            force,
            // The configured limit is the access token's (`/cgi-bin/token`'s quota).
            daily_quota: matches!(self.cfg.credential, Credential::AccessToken)
                .then_some(self.cfg.spec.daily_quota),
        };
        let promotion = Promotion::default();
        self.promotion = Some(promotion.clone());
        let fetch = self.fetch_fn(force, promotion);
        let refresh = self
            .cfg
            .store
            .clone()
            .refresh(self.cfg.key.clone(), basis, fetch);
        self.spawn_guarded(ctx, "refresh", refresh, move |act, result, ctx| {
            act.refresh_done(trigger, result, ctx)
        });
    }

    fn refresh_done(
        &mut self,
        trigger: Trigger,
        result: Result<Refreshed, RefreshError>,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight = None;
        self.promotion = None;
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
    pub(super) fn install(
        &mut self,
        stored: Stored,
        via: Option<Trigger>,
        ctx: &mut Context<Self>,
    ) {
        let Stored {
            record,
            quota,
            depends_on,
            ..
        } = stored;
        if depends_on.is_some() {
            self.depends_on = depends_on;
        }
        let unchanged = self.current().is_some_and(|c| c.token == record.token);
        self.generation = self.generation.max(record.generation);
        self.status.quota.merge(quota);
        if self.rejected.as_ref() != Some(&record.token) {
            self.rejected = None;
        }
        let record = Arc::new(record);
        self.status.token = Some(record.clone());
        self.status.last_failure = None;
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
        } else if self.ticket_behind() {
            // The access token changed while this ticket was being fetched with the old one.
            self.start_refresh(ctx, Trigger::Scheduled);
        }
    }

    /// A ticket fetched with an older access token than the newest one announced.
    pub(super) fn ticket_behind(&self) -> bool {
        self.is_ticket()
            && self
                .token_generation
                .is_some_and(|g| self.depends_on.is_none_or(|d| d < g))
    }

    fn refresh_failed(&mut self, trigger: Trigger, err: RefreshError, ctx: &mut Context<Self>) {
        let now = self.now();
        let still_valid = self.valid_token(now).is_some();
        let (failure, delay) = match &err {
            RefreshError::Upstream(err) => {
                self.cfg.metrics.refresh_failed(self.name(), trigger, err);
                let class = err.class();
                if err.errcode().is_some() {
                    // WeChat answered: the call counts against the daily quota.
                    self.status.quota.count(now);
                }
                let delay = match class {
                    ErrorClass::Transient => self.backoff(),
                    // Neither a wrong secret nor a used-up quota gets better by asking often.
                    ErrorClass::Config | ErrorClass::Quota => self.cfg.refresh.retry_max,
                };
                if class == ErrorClass::Config {
                    tracing::error!(app = self.name(), appid = %self.cfg.spec.appid, trigger = trigger.as_str(),
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
            RefreshError::Budget {
                budget,
                message,
                quota,
            } => {
                if let Some(q) = quota {
                    self.status.quota.merge(*q);
                }
                if *budget == Budget::ForcedRefresh {
                    self.cfg.metrics.forced_refresh_refused(self.name());
                    // Another instance spent it: this one counts it as spent too, so that its
                    // next reports are answered at once instead of asking the fleet again.
                    let mut b = self.force_budget.get();
                    b.spend(now);
                    self.force_budget.set(b);
                }
                // Not before the budget may allow it again: the 30 s gap, or the next day.
                let delay = self.cfg.refresh.retry_max;
                tracing::warn!(app = self.name(), trigger = trigger.as_str(), budget = budget.as_str(), error = %message,
                    still_valid, retry_in = ?delay, "refresh refused by the fleet's budget");
                // Those who reported the token get the one in service now, not after their
                // wait: no new one comes before the retry.
                if let Some(cur) = self.valid_token(now) {
                    for (w, _) in self.invalidate_waiters.drain(..) {
                        let _ = w.send(cur.clone());
                    }
                }
                let failure = FailureInfo {
                    errcode: None,
                    reason: budget.as_str().into(),
                    class: ErrorClass::Quota,
                    message: message.clone(),
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
        self.status.last_failure = Some(Arc::new(failure));
        self.publish();
        let handle = self.later(ctx, delay, "retry", move |act, ctx| {
            act.timer = None;
            act.retry(ctx, trigger);
        });
        // A timer set while the refresh was in flight (a sync adopted a record meanwhile and
        // scheduled the next refresh) is replaced, not left to run beside the retry.
        self.set_timer(ctx, Timer::Retry(handle));
    }

    /// A retry is due. The reason for it may have gone meanwhile (another instance's token was
    /// adopted, or the reporting callers gave up): then wait for the normal refresh instead of
    /// fetching a token nobody needs yet.
    fn retry(&mut self, ctx: &mut Context<Self>, trigger: Trigger) {
        let now = self.now();
        if let Some(cur) = self.valid_token(now) {
            let margin = self.margin_for(cur.lifetime());
            let rejected = self.rejected.as_ref() == Some(&cur.token);
            // Due once its (jittered) due time passed, not only inside the bare margin: else a
            // failure in the jitter window would be rescheduled at random, not backed off.
            let due =
                self.status.refresh_due.is_none_or(|d| d <= now) || cur.remaining(now) <= margin;
            if !self.anyone_waiting() && !rejected && !due {
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
    pub(super) fn schedule_refresh(&mut self, ctx: &mut Context<Self>, unchanged: bool) {
        self.cancel_timer(ctx);
        if self.retired {
            return;
        }
        let Some(current) = self.current().cloned() else {
            return;
        };
        let now = self.now();
        let margin = self.margin_for(current.lifetime());
        let mut delay = refresh_delay(
            now,
            current.expires_at,
            current.lifetime(),
            margin,
            rand::random(),
        )
        .saturating_add(self.refresh_lag());
        if std::mem::take(&mut self.spread_first_refresh) && self.spreads_first_refresh() {
            // Tokens fetched together would come due together, cycle after cycle.
            let spread = startup_spread(self.cfg.cohort, current.lifetime(), margin);
            delay = delay.saturating_sub(spread.mul_f64(rand::random()));
        }
        if unchanged && delay.is_zero() {
            delay = self.cfg.refresh.retry_min.min(current.remaining(now) / 2);
        }
        // A refresh that brought the same token back did not do its job: the due time stays
        // where it was, so alerting sees it getting overdue.
        if !(unchanged && self.status.refresh_due.is_some()) {
            self.status.refresh_due = Some(now.checked_add(delay).unwrap_or(now));
        }
        self.publish();
        tracing::debug!(
            app = self.name(),
            in_secs = delay.as_secs(),
            "next refresh scheduled"
        );
        let handle = self.later(ctx, delay, "scheduled refresh", |act, ctx| {
            act.timer = None;
            act.start_refresh(ctx, Trigger::Scheduled);
        });
        self.set_timer(ctx, Timer::Refresh(handle));
    }

    /// Stable grant revoke: the second forced refresh, `at` (kept in state across restarts).
    pub(super) fn schedule_second_rotation(&mut self, ctx: &mut Context<Self>, at: SystemTime) {
        self.second_rotation = Some(at);
        if let Some(h) = self.rotation_timer.take() {
            ctx.cancel_future(h);
        }
        let delay = at.duration_since(self.now()).unwrap_or_default();
        let handle = self.later(ctx, delay, "second rotation", |act, ctx| {
            act.rotation_timer = None;
            if act.in_flight.is_some() || act.loading {
                // Try again when the refresh in flight (or the start-up read) is done.
                act.schedule_second_rotation(ctx, act.now() + Duration::from_secs(1));
                return;
            }
            act.second_rotation = None;
            act.start_refresh(ctx, Trigger::Revoked);
        });
        self.rotation_timer = Some(handle);
    }

    pub(super) fn park_get(&mut self) -> oneshot::Receiver<Arc<TokenRecord>> {
        // Drop senders whose requests already gave up, so a long outage cannot grow the list
        // without bound.
        self.get_waiters.retain(|w| !w.is_closed());
        let (tx, rx) = oneshot::channel();
        self.get_waiters.push(tx);
        self.hurry();
        rx
    }

    pub(super) fn park_invalidate(
        &mut self,
        rejected: AccessToken,
    ) -> oneshot::Receiver<Arc<TokenRecord>> {
        self.invalidate_waiters.retain(|(w, _)| !w.is_closed());
        let (tx, rx) = oneshot::channel();
        self.invalidate_waiters.push((tx, rejected));
        self.hurry();
        rx
    }

    /// Someone waits for the refresh in flight: if it is still queued for the upstream pool as
    /// a background refresh, it goes ahead of the others now.
    fn hurry(&self) {
        if let Some(p) = &self.promotion {
            p.promote();
        }
    }
}

impl Actor for TokenActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.retired {
            // Nothing to schedule: the actor stops once the last address is dropped.
            return;
        }
        if let Some(record) = self.cfg.preloaded.take() {
            self.guard(ctx, "start", |act, ctx| act.loaded(Ok(record), ctx));
            return;
        }
        self.loading = true;
        let load = self.cfg.store.load(&self.cfg.key);
        self.spawn_guarded(ctx, "store read", load, |act, result, ctx| {
            act.loaded(result, ctx)
        });
    }
}

impl actix::Supervised for TokenActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The old context's timers and futures are gone with it.
        self.cfg.metrics.actor_restarted(self.name());
        tracing::warn!(app = self.name(), "token actor restarting");
        self.in_flight = None;
        self.promotion = None;
        self.timer = None;
        self.rotation_timer = None;
        self.loading = false;
        self.syncing = false;
        self.missed_change = None;
        self.confirmation.drop_probe();
    }
}
