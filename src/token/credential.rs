//! The rules that differ by credential: when each kind is refreshed, what its fetch is, and
//! what a ticket needs from its app's access token.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::Addr;

use super::actor::TokenActor;
use super::external::ExternalSource;
use super::fetch::FetchRequest;
use super::messages::Invalidate;
use super::schedule::{effective_margin, stable_margin};
use super::{SharedStatus, TokenRecord};
use crate::config::{AppKind, Grant, TicketKind};
use crate::status::Trigger;
use crate::store::FetchFn;
use crate::upstream::{Priority, ProbeKind, Promotion, UpstreamError};

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
    /// A credential fetched by its own source (the Open Platform's).
    External(Arc<dyn ExternalSource>),
}

/// Errcodes with which WeChat rejects the access token a call was made with.
pub fn rejects_token(errcode: Option<i64>) -> bool {
    matches!(errcode, Some(40001 | 42001 | 40014))
}

impl TokenActor {
    /// How long before expiry to refresh a token of `lifetime`.
    pub(super) fn margin_for(&self, lifetime: Duration) -> Duration {
        match (&self.cfg.credential, self.cfg.spec.kind) {
            // WeCom hands out the same token until it has expired: asking earlier only brings
            // it back. Refresh at expiry (and whenever a client reports 42001/40014).
            (Credential::AccessToken, AppKind::Wecom) => Duration::ZERO,
            (Credential::External(source), _) if source.same_until_expiry() => Duration::ZERO,
            (Credential::AccessToken, AppKind::Official(Grant::Stable)) => {
                stable_margin(self.cfg.refresh.margin, lifetime)
            }
            _ => effective_margin(self.cfg.refresh.margin, lifetime),
        }
    }

    /// Added to the computed refresh time. WeCom answers with whole seconds left and the old
    /// token until it has expired: ask a second after the expiry, when only a new token can
    /// come back.
    pub(super) fn refresh_lag(&self) -> Duration {
        if self.is_wecom_token() {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        }
    }

    /// Whether an early first refresh brings a new token: not for WeCom and stable tokens,
    /// which WeChat hands back unchanged until their last moments.
    pub(super) fn spreads_first_refresh(&self) -> bool {
        !self.is_wecom_token() && !self.is_stable()
    }

    /// Which call asks WeChat whether this credential's token still works; `None` for a
    /// ticket, which is no token WeChat can be asked about (and which only wxtoken's own
    /// getticket calls report).
    pub(super) fn probe_kind(&self) -> Option<ProbeKind> {
        match &self.cfg.credential {
            Credential::AccessToken if self.cfg.spec.kind == AppKind::Wecom => {
                Some(ProbeKind::Wecom)
            }
            Credential::AccessToken => Some(ProbeKind::Account),
            Credential::External(source) => source.probe_kind(),
            Credential::Ticket { .. } => None,
        }
    }

    pub(super) fn is_stable(&self) -> bool {
        matches!(self.cfg.credential, Credential::AccessToken)
            && self.cfg.spec.kind == AppKind::Official(Grant::Stable)
    }

    fn is_wecom_token(&self) -> bool {
        match &self.cfg.credential {
            Credential::AccessToken => self.cfg.spec.kind == AppKind::Wecom,
            Credential::External(source) => source.same_until_expiry(),
            Credential::Ticket { .. } => false,
        }
    }

    pub(super) fn is_ticket(&self) -> bool {
        matches!(self.cfg.credential, Credential::Ticket { .. })
    }

    /// A ticket is fetched with its app's valid access token; `false` while there is none
    /// (start-up, or the token fetch is failing): the token actor's change notification then
    /// starts the fetch. Other credentials need nothing.
    pub(super) fn has_what_fetch_needs(&self, now: SystemTime) -> bool {
        match &self.cfg.credential {
            Credential::AccessToken => true,
            Credential::Ticket { token, .. } => token.load().valid_token(now).is_some(),
            Credential::External(source) => source.ready(now),
        }
    }

    /// The upstream call for this credential, made only if the store decides this instance
    /// must fetch. For the stable grant, `force` invalidates the current token at once; WeChat's
    /// budget for that is spent when the call is really made, not when it is planned (a shared
    /// store may adopt another instance's token instead).
    pub(super) fn fetch_fn(&self, force: bool, promotion: Promotion) -> FetchFn {
        let fetcher = self.cfg.fetcher.clone();
        let spec = self.cfg.spec.clone();
        let metrics = self.cfg.metrics.clone();
        let label = self.cfg.label.clone();
        let credential = self.cfg.credential.clone();
        let clock = self.cfg.clock.clone();
        let budget = self.force_budget.clone();
        let status = self.cfg.status.clone();
        // `start_refresh` records the trigger before it asks for the fetch.
        let invalidated = matches!(
            self.in_flight,
            Some(Trigger::Invalidated | Trigger::Revoked)
        );
        Box::new(move || {
            Box::pin(async move {
                // Decided when the call is made: callers wait for a credential with no valid
                // token, or with one WeChat rejected; a refresh of a valid one can queue.
                let priority = if invalidated || status.load().valid_token(clock.now()).is_none() {
                    Priority::Urgent
                } else {
                    Priority::Background
                };
                let (req, fetched_with) = match &credential {
                    Credential::External(source) => {
                        let started = Instant::now();
                        let fetched = source.fetch(priority, promotion.clone()).await;
                        let sent = promotion.granted_at().unwrap_or(started);
                        metrics.upstream_call(&label, source.endpoint(), sent.elapsed());
                        return fetched;
                    }
                    Credential::AccessToken => {
                        if force {
                            let mut b = budget.get();
                            b.spend(clock.now());
                            budget.set(b);
                        }
                        let req = FetchRequest::AccessToken {
                            spec,
                            force,
                            priority,
                            promotion: promotion.clone(),
                        };
                        (req, None)
                    }
                    Credential::Ticket { kind, token, .. } => {
                        let Some(current) = token.load().valid_token(clock.now()).cloned() else {
                            return Err(UpstreamError::NoToken);
                        };
                        let req = FetchRequest::Ticket {
                            spec,
                            kind: *kind,
                            token: current.token.clone(),
                            priority,
                            promotion: promotion.clone(),
                        };
                        (req, Some(current))
                    }
                };
                let endpoint = req.endpoint();
                let started = Instant::now();
                let mut fetched = fetcher.fetch(req).await;
                let sent = promotion.granted_at().unwrap_or(started);
                metrics.upstream_call(&label, endpoint, sent.elapsed());
                if let (Credential::Ticket { token_actor, .. }, Some(current)) =
                    (&credential, fetched_with)
                {
                    ticket_fetched(&mut fetched, &current, token_actor);
                }
                fetched
            })
        })
    }
}

/// After a ticket fetch: note which token generation it was fetched with, or have the token
/// replaced when getticket rejected it (the change notification then brings the refetch).
fn ticket_fetched(
    fetched: &mut Result<crate::upstream::Fetched, UpstreamError>,
    with: &Arc<TokenRecord>,
    token_actor: &Addr<TokenActor>,
) {
    match fetched {
        Ok(f) => f.depends_on = Some(with.generation),
        Err(e) if rejects_token(e.errcode()) => token_actor.do_send(Invalidate {
            token: with.token.clone(),
        }),
        Err(_) => {}
    }
}
