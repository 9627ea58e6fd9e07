//! The actor's side of the store: the read at (re)start, and for a shared store the periodic
//! and notified re-reads that adopt another instance's newer token or write back what the
//! store lost.
//!
//! The periodic re-reads of all actors must not come together: they start together, and
//! 10,000 reads at the same instant every interval would be a burst for Redis and for this
//! process. Each actor's first one comes at a random point of the interval, then one every
//! interval, so the reads arrive evenly (and the store pipelines them a few times a second).

use std::sync::Arc;

use actix::prelude::*;

use super::actor::TokenActor;
use super::TokenRecord;
use crate::status::Trigger;
use crate::store::Stored;

impl TokenActor {
    /// Whether a stored record should replace what this actor holds.
    pub(super) fn is_newer(&self, stored: &Stored) -> bool {
        stored.record.appid == self.cfg.key.appid
            && stored.record.is_valid_at(self.now())
            && self
                .current()
                .is_none_or(|c| stored.record.generation > c.generation)
    }

    /// After the store answered at (re)start: adopt its record if it is ours and newer, then
    /// either schedule the next refresh or refresh now.
    pub(super) fn loaded(
        &mut self,
        result: anyhow::Result<Option<Stored>>,
        ctx: &mut Context<Self>,
    ) {
        self.loading = false;
        match result {
            Ok(Some(stored)) if stored.record.appid != self.cfg.key.appid => {
                tracing::warn!(
                    app = self.name(),
                    "stored token belongs to another appid; ignoring it"
                );
            }
            Ok(Some(stored)) => {
                self.generation = self.generation.max(stored.record.generation);
                self.status.quota.merge(stored.quota);
                if self.is_newer(&stored) {
                    tracing::info!(app = self.name(), generation = stored.record.generation,
                        token = %stored.record.token,
                        expires_in = stored.record.remaining(self.now()).as_secs(),
                        "reusing stored token");
                    self.depends_on = stored.depends_on;
                    self.status.token = Some(Arc::new(stored.record));
                    self.spread_first_refresh = false;
                }
            }
            Ok(None) => {}
            Err(e) => {
                self.cfg.metrics.store_failed(self.name(), "load");
                tracing::error!(app = self.name(), error = %format!("{e:#}"), "could not read the token store");
            }
        }
        if self.cfg.store.shared() {
            let every = self.cfg.poll_interval;
            let first = every.mul_f64(rand::random::<f64>());
            self.later(ctx, first, "sync", move |act, ctx| {
                act.sync(ctx, true);
                ctx.run_interval(every, |act, ctx| {
                    act.guard(ctx, "sync", |act, ctx| act.sync(ctx, true));
                });
            });
        }
        if let Some(at) = self.second_rotation {
            self.schedule_second_rotation(ctx, at);
        }
        let now = self.now();
        match self.valid_token(now) {
            Some(cur) => {
                self.publish();
                for w in self.get_waiters.drain(..) {
                    let _ = w.send(cur.clone());
                }
                if self.rejected.as_ref() == Some(&cur.token) || self.anyone_waiting() {
                    // Reported as rejected before the restart: it still has to go.
                    self.start_refresh(ctx, Trigger::Invalidated);
                } else if cur.remaining(now) > self.margin_for(cur.lifetime()) {
                    self.schedule_refresh(ctx, false);
                } else {
                    // Already due: say so, so a failing start-up refresh shows as overdue.
                    self.status.refresh_due = Some(now);
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
    /// `periodic`: the interval's re-read, which is in no hurry.
    pub(super) fn sync(&mut self, ctx: &mut Context<Self>, periodic: bool) {
        if self.syncing || self.loading {
            return;
        }
        self.syncing = true;
        let load = if periodic {
            self.cfg.store.load_lazy(&self.cfg.key)
        } else {
            self.cfg.store.load(&self.cfg.key)
        };
        self.spawn_guarded(ctx, "sync", load, |act, result, ctx| {
            act.syncing = false;
            act.synced(result, ctx);
            if let Some(announced) = act.missed_change.take() {
                if announced > act.generation {
                    act.sync(ctx, false);
                }
            }
        });
    }

    fn synced(&mut self, result: anyhow::Result<Option<Stored>>, ctx: &mut Context<Self>) {
        let stored = match result {
            Ok(s) => s,
            // Unreachable: keep serving; the health loop reports it.
            Err(_) => return,
        };
        if let Some(s) = &stored {
            if self.is_newer(s) {
                tracing::info!(app = self.name(), generation = s.record.generation,
                    token = %s.record.token, "adopting a newer token from the shared store");
                self.unsaved = false;
                self.install(s.clone(), None, ctx);
                return;
            }
        }
        let behind = stored
            .as_ref()
            .is_none_or(|s| s.record.generation < self.generation);
        if let (Some(cur), true) = (self.valid_token(self.now()), behind || self.unsaved) {
            self.write_back(cur, ctx);
        }
    }

    fn write_back(&mut self, record: Arc<TokenRecord>, ctx: &mut Context<Self>) {
        let stored = Stored {
            record: (*record).clone(),
            quota: self.status.quota,
            fetched_by: None,
            depends_on: None,
        };
        let save = self.cfg.store.save(&self.cfg.key, &stored);
        self.spawn_guarded(ctx, "write-back", save, move |act, result, _| match result {
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
        });
    }
}
