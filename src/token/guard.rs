//! Panic containment for the token actor. actix does not restart an actor whose handler
//! panicked: its task dies and every later message fails. So every handler, timer and
//! completion runs inside `catch_unwind`; a panic stops the context, and the supervisor then
//! restarts the actor from its kept state and the store, as after any restart.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt as _;

use super::actor::TokenActor;

/// The longest any timer of the actor is set for. Lifetimes are bounded where they enter (a
/// week at most), so this only guards against a computation gone wrong: tokio panics on an
/// `Instant` past its range.
const MAX_TIMER: Duration = Duration::from_secs(8 * 86_400);

impl TokenActor {
    /// Runs `f`; if it panics, logs it and stops the context so the supervisor restarts the
    /// actor. `None` when it panicked.
    pub(super) fn guard<R>(
        &mut self,
        ctx: &mut Context<Self>,
        what: &'static str,
        f: impl FnOnce(&mut Self, &mut Context<Self>) -> R,
    ) -> Option<R> {
        match catch_unwind(AssertUnwindSafe(|| f(self, ctx))) {
            Ok(r) => Some(r),
            Err(_) => {
                self.panicked(ctx, what);
                None
            }
        }
    }

    pub(super) fn panicked(&mut self, ctx: &mut Context<Self>, what: &'static str) {
        tracing::error!(
            app = self.name(),
            during = what,
            "token actor panicked; restarting it"
        );
        ctx.stop();
    }

    /// Spawns `fut` on the actor's context and hands its output to `then`, both guarded.
    pub(super) fn spawn_guarded<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        what: &'static str,
        fut: impl Future<Output = T> + 'static,
        then: impl FnOnce(&mut Self, T, &mut Context<Self>) + 'static,
    ) -> SpawnHandle {
        let fut = AssertUnwindSafe(fut).catch_unwind();
        ctx.spawn(fut.into_actor(self).map(move |out, act, ctx| match out {
            Ok(v) => {
                act.guard(ctx, what, move |act, ctx| then(act, v, ctx));
            }
            Err(_) => act.panicked(ctx, what),
        }))
    }

    /// `ctx.run_later`, guarded, with the delay clamped to [`MAX_TIMER`].
    pub(super) fn later(
        &mut self,
        ctx: &mut Context<Self>,
        delay: Duration,
        what: &'static str,
        f: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) -> SpawnHandle {
        ctx.run_later(delay.min(MAX_TIMER), move |act, ctx| {
            act.guard(ctx, what, f);
        })
    }
}
