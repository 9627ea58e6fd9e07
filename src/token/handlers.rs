//! The messages a `TokenActor` answers. Every handler runs guarded: a panic restarts the actor
//! (see `guard.rs`) and the caller gets the published status's answer, never a hang.

use std::future::ready;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::actor::TokenActor;
use super::confirm::{Confirming, Verdict};
use super::credential::Credential;
use super::messages::{
    ForceRestart, Get, InputsChanged, Invalidate, Invalidated, NoValidToken, Retire, Revoke,
    RevokeError, Revoked, StoreChanged, Subscribe, TokenChanged, UpdateApp,
};
use super::schedule::ForceBudget;
use super::{AccessToken, SharedClock, SharedStatus, TokenRecord};
use crate::config::{AppKind, Grant};
use crate::status::{InvalidationOutcome, Trigger};

/// The answer to a request whose handler could not run: whatever the status holds.
fn from_status(
    status: &SharedStatus,
    clock: &SharedClock,
) -> Result<Arc<TokenRecord>, NoValidToken> {
    let s = status.load();
    s.valid_token(clock.now())
        .cloned()
        .ok_or_else(|| NoValidToken {
            last_failure: s.last_failure.clone(),
        })
}

impl Handler<Get> for TokenActor {
    type Result = ResponseFuture<Result<Arc<TokenRecord>, NoValidToken>>;

    fn handle(&mut self, _: Get, ctx: &mut Self::Context) -> Self::Result {
        let status = self.cfg.status.clone();
        let clock = self.cfg.clock.clone();
        let wait = self.cfg.wait_limit;
        let rx = self.guard(ctx, "get", |act, ctx| {
            let now = act.now();
            if let Some(t) = act.valid_token(now) {
                return Err(t);
            }
            let rx = act.park_get();
            // A refresh may not be running: e.g. a scheduled one pending while the clock
            // jumped. One due within the wait anyway (a WeCom token in its last second) is
            // waited for: asking earlier would only bring the old token back.
            let due_soon = act
                .status
                .refresh_due
                .and_then(|d| d.duration_since(now).ok())
                .is_some_and(|left| left < act.cfg.wait_limit);
            if !due_soon || act.timer.is_none() {
                act.refresh_if_idle(ctx, Trigger::Scheduled);
            }
            Ok(rx)
        });
        match rx {
            Some(Err(token)) => Box::pin(ready(Ok(token))),
            Some(Ok(rx)) => Box::pin(async move {
                match tokio::time::timeout(wait, rx).await {
                    Ok(Ok(t)) => Ok(t),
                    _ => from_status(&status, &clock),
                }
            }),
            None => Box::pin(ready(from_status(&status, &clock))),
        }
    }
}

/// How an invalidation is answered without a fetch, if it is.
enum Immediate {
    Answer(Invalidated),
    Wait(tokio::sync::oneshot::Receiver<Arc<TokenRecord>>),
    /// A young token: WeChat is asked first (see `confirm.rs`).
    Confirming(tokio::sync::oneshot::Receiver<Verdict>),
}

impl TokenActor {
    fn invalidate(&mut self, reported: &str, ctx: &mut Context<Self>) -> Immediate {
        let now = self.now();
        if let Some(cur) = self.valid_token(now) {
            let immediate = if cur.token.expose() != reported {
                // Already replaced: the caller only needs the current one.
                Some(InvalidationOutcome::Stale)
            } else if cur.age(now) < self.cfg.refresh.min_interval {
                // Just fetched: refetching would only burn quota.
                Some(InvalidationOutcome::TooSoon)
            } else if self.is_stable()
                && self.in_flight.is_none()
                && !self.force_budget.get().allows(now)
            {
                // A stable token is replaced early only by a forced refresh, and WeChat's
                // limits on those are used up: answer with what there is.
                tracing::warn!(app = self.name(), token = %cur.token,
                    "reported token kept: WeChat's limits on forced refreshes (20 a day, 30 s apart) are used up");
                self.cfg.metrics.forced_refresh_refused(self.name());
                Some(InvalidationOutcome::Refused)
            } else {
                None
            };
            if let Some(outcome) = immediate {
                tracing::debug!(
                    app = self.name(),
                    outcome = outcome.as_str(),
                    "invalidation answered without a fetch"
                );
                return Immediate::Answer(Invalidated {
                    refreshed: outcome == InvalidationOutcome::Stale,
                    record: cur,
                    outcome,
                });
            }
            if self.needs_confirmation(&cur, now) {
                return match self.confirm(cur, ctx) {
                    Confirming::Refused(record, why) => Immediate::Answer(Invalidated {
                        record,
                        refreshed: false,
                        outcome: why.outcome(),
                    }),
                    Confirming::Wait(rx) => Immediate::Confirming(rx),
                };
            }
            tracing::info!(app = self.name(), token = %cur.token, generation = cur.generation,
                "current token reported as rejected; refreshing");
            self.rejected = Some(cur.token.clone());
        }
        let rx = self.park_invalidate(AccessToken::new(reported));
        self.refresh_if_idle(ctx, Trigger::Invalidated);
        Immediate::Wait(rx)
    }
}

impl Handler<Invalidate> for TokenActor {
    type Result = ResponseFuture<Result<Invalidated, NoValidToken>>;

    fn handle(&mut self, msg: Invalidate, ctx: &mut Self::Context) -> Self::Result {
        let metrics = self.cfg.metrics.clone();
        let app = self.cfg.label.clone();
        let status = self.cfg.status.clone();
        let clock = self.cfg.clock.clone();
        let wait = self.cfg.wait_limit;
        let reported = msg.token;
        let step = self.guard(ctx, "invalidate", |act, ctx| {
            act.invalidate(reported.expose(), ctx)
        });
        Box::pin(async move {
            // One wait limit for the whole answer, WeChat's verdict and the refetch together.
            let deadline = tokio::time::Instant::now() + wait;
            let failed = || {
                from_status(&status, &clock).map(|record| Invalidated {
                    refreshed: record.token != reported,
                    record,
                    outcome: InvalidationOutcome::Failed,
                })
            };
            let refetched = |record: Arc<TokenRecord>| {
                let refreshed = record.token != reported;
                Ok(Invalidated {
                    record,
                    refreshed,
                    outcome: if refreshed {
                        InvalidationOutcome::Refreshed
                    } else {
                        InvalidationOutcome::Failed
                    },
                })
            };
            let answer = match step {
                Some(Immediate::Answer(a)) => Ok(a),
                Some(Immediate::Wait(rx)) => match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(record)) => refetched(record),
                    _ => failed(),
                },
                Some(Immediate::Confirming(rx)) => {
                    match tokio::time::timeout_at(deadline, rx).await {
                        Ok(Ok(Verdict::Refetching(rx))) => {
                            match tokio::time::timeout_at(deadline, rx).await {
                                Ok(Ok(record)) => refetched(record),
                                _ => failed(),
                            }
                        }
                        Ok(Ok(Verdict::Kept(record, why))) => Ok(Invalidated {
                            refreshed: record.token != reported,
                            record,
                            outcome: why.outcome(),
                        }),
                        Ok(Ok(Verdict::Replaced(record))) => {
                            let refreshed = record.token != reported;
                            Ok(Invalidated {
                                record,
                                refreshed,
                                outcome: if refreshed {
                                    InvalidationOutcome::Stale
                                } else {
                                    InvalidationOutcome::Failed
                                },
                            })
                        }
                        _ => failed(),
                    }
                }
                None => failed(),
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

/// A revocation under way: the waiter for the new token, the revoked token, and when the
/// second rotation (stable grant) comes.
struct Revoking {
    rx: tokio::sync::oneshot::Receiver<Arc<TokenRecord>>,
    old: Option<AccessToken>,
    second: Option<Duration>,
}

impl TokenActor {
    fn revoke(&mut self, ctx: &mut Context<Self>) -> Result<Revoking, RevokeError> {
        let now = self.now();
        match self.cfg.spec.kind {
            AppKind::Wecom => {
                return Err(RevokeError::Unsupported(
                    "WeCom hands out the same token until it expires",
                ))
            }
            AppKind::Official(Grant::Stable) if !self.force_budget.get().allows(now) => {
                return Err(RevokeError::TooSoon)
            }
            AppKind::Official(_) => {}
        }
        let old = self.current().map(|c| c.token.clone());
        if let (Some(slot), Some(t)) = (&self.cfg.index, &old) {
            // A leaked token must stop working through the gateway now, not once replaced.
            slot.revoke(t.expose());
        }
        // The waiter is answered only by a token other than the revoked one.
        let rx = self.park_invalidate(old.clone().unwrap_or_else(|| AccessToken::new("")));
        if let Some(t) = &old {
            self.rejected = Some(t.clone());
        }
        // A refresh in flight may be a normal one; the revocation needs its own, which the
        // parked waiter brings once that one is done.
        if self.in_flight.is_none() {
            self.start_refresh(ctx, Trigger::Revoked);
        }
        let second = if self.is_stable() {
            // A forced refresh leaves the previous token valid for a while; a second one
            // 30 s later kills it for good.
            let delay = ForceBudget::MIN_GAP + Duration::from_secs(1);
            self.schedule_second_rotation(ctx, now + delay);
            Some(delay)
        } else {
            None
        };
        self.cfg.metrics.revoked(self.name());
        Ok(Revoking { rx, old, second })
    }
}

impl Handler<Revoke> for TokenActor {
    type Result = ResponseFuture<Result<Revoked, RevokeError>>;

    fn handle(&mut self, _: Revoke, ctx: &mut Self::Context) -> Self::Result {
        let wait = self.cfg.wait_limit;
        let status = self.cfg.status.clone();
        let no_token = move || {
            RevokeError::NoNewToken(NoValidToken {
                last_failure: status.load().last_failure.clone(),
            })
        };
        let step = match self.guard(ctx, "revoke", |act, ctx| act.revoke(ctx)) {
            Some(Ok(step)) => step,
            Some(Err(e)) => return Box::pin(ready(Err(e))),
            None => return Box::pin(ready(Err(no_token()))),
        };
        let Revoking { rx, old, second } = step;
        Box::pin(async move {
            match tokio::time::timeout(wait, rx).await {
                // Answered with the very token revoked: the fleet's forced-refresh budget
                // refused the rotation (see `RefreshError::Budget`).
                Ok(Ok(record)) if old.as_ref() == Some(&record.token) => Err(RevokeError::TooSoon),
                Ok(Ok(record)) => Ok(Revoked {
                    record,
                    old: old.map(|t| t.fingerprint()),
                    second_rotation_in: second,
                }),
                _ => Err(no_token()),
            }
        })
    }
}

impl Handler<TokenChanged> for TokenActor {
    type Result = ();

    /// A ticket depends on the access token: refetch it with the new one. While a fetch is in
    /// flight the change is remembered, and caught up once that fetch is done.
    fn handle(&mut self, changed: TokenChanged, ctx: &mut Self::Context) {
        if self.retired {
            return;
        }
        if !self.is_ticket() {
            return;
        }
        self.token_generation = Some(
            self.token_generation
                .map_or(changed.generation, |g| g.max(changed.generation)),
        );
        if self.ticket_behind() && !self.loading {
            self.guard(ctx, "token changed", |act, ctx| {
                act.start_refresh(ctx, Trigger::Scheduled)
            });
        }
    }
}

impl Handler<InputsChanged> for TokenActor {
    type Result = ();

    /// What the fetch of an external credential needs has arrived (a ticket, a component
    /// token): try now if it was waiting for it.
    fn handle(&mut self, _: InputsChanged, ctx: &mut Self::Context) {
        if self.retired || !matches!(self.cfg.credential, Credential::External(_)) {
            return;
        }
        self.guard(ctx, "inputs changed", |act, ctx| {
            let now = act.now();
            if act.valid_token(now).is_none() || act.rejected.is_some() {
                act.refresh_if_idle(ctx, Trigger::Scheduled);
            }
        });
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
        self.confirmation.drop_probe();
        if let Some(slot) = &self.cfg.index {
            slot.clear();
        }
        ctx.stop();
    }
}

impl Handler<UpdateApp> for TokenActor {
    type Result = ();

    /// New secret, quota or refresh policy: used from the next fetch.
    fn handle(&mut self, msg: UpdateApp, ctx: &mut Self::Context) {
        let UpdateApp(spec, refresh) = msg;
        tracing::info!(app = self.name(), "settings updated");
        self.cfg.spec = spec;
        self.cfg.refresh = refresh;
        if self.in_flight.is_none() && !self.retry_pending() && !self.loading {
            self.guard(ctx, "update", |act, ctx| act.schedule_refresh(ctx, false));
        }
    }
}

impl Handler<StoreChanged> for TokenActor {
    type Result = ();

    fn handle(&mut self, msg: StoreChanged, ctx: &mut Self::Context) {
        // Already held (this instance wrote it, or adopted it another way): nothing to read.
        // A record older than the one held is no reason either; a store that lost the newer
        // one is refilled by the periodic re-read and after every reconnect.
        if msg.generation.is_some_and(|g| g <= self.generation) {
            return;
        }
        if self.syncing {
            let announced = msg.generation.unwrap_or(u64::MAX);
            self.missed_change = Some(self.missed_change.map_or(announced, |m| m.max(announced)));
            return;
        }
        self.guard(ctx, "store changed", |act, ctx| act.sync(ctx, false));
    }
}

impl Handler<ForceRestart> for TokenActor {
    type Result = ();

    fn handle(&mut self, _: ForceRestart, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
