//! Reports of a young token are checked with WeChat before the token is thrown away.
//!
//! A caller's 40001 proves little: WeChat answers it as well to a valid token sent in the wrong
//! parameter (an app token as `component_access_token`) or to the wrong account, and a client
//! may report a token by mistake. Refetching on every such report burns the daily quota (2,000
//! for an access token) and kills the token every other server holds. So a report of the current
//! token with more time left than its refresh margin (younger than its normal refresh age)
//! goes through three gates before it may refetch:
//!
//! 1. WeChat was asked about this token less than `min_interval` ago and accepted it: refused
//!    (`token_alive`), no call.
//! 2. The credential already had `refresh.reported_refetches_per_hour` early refetches in the
//!    last hour: refused (`hourly_cap`), no call.
//! 3. One probe (`ProbeKind`: get_api_domain_ip, or getApiQuota for a component token) asks
//!    WeChat, however many reports are waiting: 40001/42001/40014 means dead, and the refetch
//!    goes on as it always did (one fetch for every report, forced for the stable grant within
//!    WeChat's limits); success means alive (`token_alive`); anything else (network, timeout,
//!    another errcode) refetches nothing (`probe_failed`).
//!
//! A token past its refresh age is refetched at once, as before: its refresh is due anyway, and
//! the new one it brings is young, so reports of that one are checked again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::actor::TokenActor;
use super::credential::rejects_token;
use super::fetch::ProbeRequest;
use super::{AccessToken, TokenRecord};
use crate::status::{RefetchRefusal, Trigger};
use crate::upstream::UpstreamError;

/// The window of `refresh.reported_refetches_per_hour`.
const CAP_WINDOW: Duration = Duration::from_secs(3600);

/// What a reporter waiting for WeChat's verdict is told.
pub(super) enum Verdict {
    /// The token is dead: the refetch is started (or joined); the receiver gets its token.
    Refetching(oneshot::Receiver<Arc<TokenRecord>>),
    /// No refetch: the token to go on with, and why.
    Kept(Arc<TokenRecord>, RefetchRefusal),
    /// The token was replaced while WeChat was asked: the one in service now.
    Replaced(Arc<TokenRecord>),
}

/// How a report that needs WeChat's word is answered.
pub(super) enum Confirming {
    /// At once, without a call.
    Refused(Arc<TokenRecord>, RefetchRefusal),
    /// When the probe answers.
    Wait(oneshot::Receiver<Verdict>),
}

/// The actor's state for checking reports. Actor state, not context state, so a supervisor
/// restart keeps the hour's count (the probe in flight and its waiters go with the context).
#[derive(Default)]
pub(super) struct Confirmation {
    /// The token a probe is asking about now.
    probing: Option<AccessToken>,
    /// The reporters waiting for that probe's verdict.
    waiters: Vec<oneshot::Sender<Verdict>>,
    /// The last token WeChat accepted, and when it was asked.
    alive: Option<(AccessToken, SystemTime)>,
    /// When the early refetches of the last hour were started, oldest first.
    early_refetches: VecDeque<SystemTime>,
}

impl Confirmation {
    /// Whether another early refetch fits under `cap` in the hour before `now`.
    fn cap_allows(&mut self, now: SystemTime, cap: u32) -> bool {
        while self
            .early_refetches
            .front()
            .is_some_and(|t| now.duration_since(*t).unwrap_or_default() >= CAP_WINDOW)
        {
            self.early_refetches.pop_front();
        }
        self.early_refetches.len() < cap as usize
    }

    /// The probe in flight and its waiters are gone (a restart dropped the context, or the
    /// actor retires): waiters see their channel closed and answer from the status.
    pub(super) fn drop_probe(&mut self) {
        self.probing = None;
        self.waiters.clear();
    }
}

impl TokenActor {
    /// Whether a report of `cur`, the current token, must be confirmed by WeChat before it is
    /// refetched: a token of a kind WeChat can be asked about, whose proactive refresh is not
    /// due yet (its due time, jitter included, is ahead and it has more time left than its
    /// refresh margin), with no refresh under way or already owed for it (joining one costs
    /// nothing).
    pub(super) fn needs_confirmation(&self, cur: &TokenRecord, now: SystemTime) -> bool {
        let due = self.status.refresh_due.is_some_and(|d| d <= now)
            || cur.remaining(now) <= self.margin_for(cur.lifetime());
        self.probe_kind().is_some()
            && !due
            && self.in_flight.is_none()
            && self.rejected.as_ref() != Some(&cur.token)
    }

    /// Checks `cur` with WeChat for a report, or refuses at once (see the module doc).
    pub(super) fn confirm(&mut self, cur: Arc<TokenRecord>, ctx: &mut Context<Self>) -> Confirming {
        let now = self.now();
        let recently_alive = self.confirmation.alive.as_ref().is_some_and(|(t, at)| {
            *t == cur.token
                && now.duration_since(*at).unwrap_or_default() < self.cfg.refresh.min_interval
        });
        if recently_alive {
            self.cfg
                .metrics
                .refetches_refused(self.name(), RefetchRefusal::TokenAlive, 1);
            return Confirming::Refused(cur, RefetchRefusal::TokenAlive);
        }
        let (tx, rx) = oneshot::channel();
        if self.confirmation.probing.is_some() {
            // One probe answers every report that comes while it runs.
            self.confirmation.waiters.retain(|w| !w.is_closed());
            self.confirmation.waiters.push(tx);
            return Confirming::Wait(rx);
        }
        let cap = self.cfg.refresh.reported_refetches_per_hour;
        if !self.confirmation.cap_allows(now, cap) {
            tracing::warn!(app = self.name(), token = %cur.token, per_hour = cap,
                "reported token kept: the hour's early refetches for reports are used up");
            self.cfg
                .metrics
                .refetches_refused(self.name(), RefetchRefusal::HourlyCap, 1);
            return Confirming::Refused(cur, RefetchRefusal::HourlyCap);
        }
        let Some(kind) = self.probe_kind() else {
            // Not reached: `needs_confirmation` asks for a kind. Nothing is refetched unasked.
            return Confirming::Refused(cur, RefetchRefusal::ProbeFailed);
        };
        tracing::info!(app = self.name(), token = %cur.token, generation = cur.generation,
            "current token reported as rejected; asking WeChat whether it still works");
        self.confirmation.probing = Some(cur.token.clone());
        self.confirmation.waiters.push(tx);
        let probe = self.cfg.fetcher.probe(ProbeRequest {
            kind,
            token: cur.token.clone(),
        });
        let metrics = self.cfg.metrics.clone();
        let label = self.cfg.label.clone();
        let asked = async move {
            let started = Instant::now();
            let result = probe.await;
            metrics.upstream_call(&label, kind.endpoint(), started.elapsed());
            result
        };
        let token = cur.token.clone();
        self.spawn_guarded(ctx, "probe", asked, move |act, result, ctx| {
            act.probed(token, result, ctx)
        });
        Confirming::Wait(rx)
    }

    /// WeChat answered the probe of `token`: tell every waiting reporter.
    fn probed(
        &mut self,
        token: AccessToken,
        result: Result<(), UpstreamError>,
        ctx: &mut Context<Self>,
    ) {
        self.confirmation.probing = None;
        let waiters = std::mem::take(&mut self.confirmation.waiters);
        let n = waiters.len() as u64;
        let now = self.now();
        let Some(cur) = self.valid_token(now) else {
            // Expired while WeChat was asked: a fetch is due whatever the answer.
            self.join_refresh(&token, waiters, ctx);
            return;
        };
        if cur.token != token {
            // Replaced meanwhile (a refresh, or another instance's token adopted): the verdict
            // is about a token no longer served.
            for w in waiters {
                let _ = w.send(Verdict::Replaced(cur.clone()));
            }
            return;
        }
        let why = match result {
            Err(e) if rejects_token(e.errcode()) => {
                tracing::warn!(app = self.name(), token = %token, reason = %e.reason(), reports = n,
                    "WeChat confirms the reported token is dead; refreshing");
                self.confirmation.early_refetches.push_back(now);
                self.rejected = Some(token.clone());
                self.join_refresh(&token, waiters, ctx);
                return;
            }
            Ok(()) => {
                tracing::info!(app = self.name(), token = %token, reports = n,
                    "reported token kept: WeChat still accepts it");
                self.confirmation.alive = Some((token, now));
                RefetchRefusal::TokenAlive
            }
            Err(e) => {
                tracing::warn!(app = self.name(), token = %token, reports = n, reason = %e.reason(),
                    error = %e, "reported token kept: WeChat could not be asked whether it still works");
                RefetchRefusal::ProbeFailed
            }
        };
        self.cfg.metrics.refetches_refused(self.name(), why, n);
        for w in waiters {
            let _ = w.send(Verdict::Kept(cur.clone(), why));
        }
    }

    /// Parks every reporter still waiting on the refresh for `token` and starts it (or joins
    /// the one under way). Started even if every reporter gave up: once `rejected` is set, the
    /// refresh stays owed until done.
    fn join_refresh(
        &mut self,
        token: &AccessToken,
        waiters: Vec<oneshot::Sender<Verdict>>,
        ctx: &mut Context<Self>,
    ) {
        for w in waiters {
            if !w.is_closed() {
                let rx = self.park_invalidate(token.clone());
                let _ = w.send(Verdict::Refetching(rx));
            }
        }
        self.refresh_if_idle(ctx, Trigger::Invalidated);
    }
}
