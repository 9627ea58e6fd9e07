//! The suite ticket and the suite token: the ticket WeCom pushes every ten minutes (valid
//! thirty), stored before its push is answered; the suite token's source, which mints with
//! the last ticket; pre-auth codes made with the suite token.
//!
//! Without a ticket, or with one older than [`SUITE_TICKET_LIFE`], the source does not try:
//! the actor keeps serving the current token while it is valid, and readiness says why. A
//! token error never drops the ticket (an SDK that dropped its whole cache on 42001 waited ten
//! minutes for the next push). The suite token is not probed: only wxtoken's own calls report
//! it, with WeCom's word (40082, 42009) that it is dead, so it is minted again at once.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use futures_util::future::LocalBoxFuture;

use super::runtime::Suite;
use crate::config::WecomSuiteSettings;
use crate::platform::Upstream;
use crate::secret::AccessToken;
use crate::store::wecom::WecomStore;
use crate::store::AppKey;
use crate::token::external::ExternalSource;
use crate::token::messages::{InputsChanged, Invalidate};
use crate::token::{spawn_sourced, ActorDeps, CredentialHandle, TokenRecord, Unavailable};
use crate::upstream::{
    Fetched, PreAuthCode, Priority, ProbeKind, Promotion, UpstreamError, WechatClient,
};

/// How long WeCom honours a suite ticket.
pub const SUITE_TICKET_LIFE: Duration = Duration::from_secs(1800);

/// The last pushed suite ticket and when it arrived (this server's clock).
#[derive(Debug)]
pub struct SuiteTicket {
    pub ticket: AccessToken,
    pub received_at: SystemTime,
}

impl SuiteTicket {
    fn fresh_at(&self, now: SystemTime) -> bool {
        now.duration_since(self.received_at).unwrap_or_default() < SUITE_TICKET_LIFE
    }
}

/// The stored ticket. One sealed under a key this instance lacks stops the start, naming the
/// key; one that cannot be read otherwise waits for the next push.
pub(super) async fn load(store: &WecomStore, name: &str) -> anyhow::Result<Option<SuiteTicket>> {
    match store.load_ticket().await {
        Ok(t) => Ok(t.map(|(ticket, received_at)| SuiteTicket {
            ticket,
            received_at,
        })),
        Err(e) => {
            if let Some(u) = crate::store::sealed::unreadable_in(&e) {
                anyhow::bail!(
                    "WeCom suite `{name}`: {u}; {}",
                    crate::store::sealed::remedy(u)
                );
            }
            tracing::error!(suite = %name, error = %format!("{e:#}"),
                "could not read the stored suite ticket; waiting for the next push");
            Ok(None)
        }
    }
}

struct SuiteTokenSource {
    settings: Arc<WecomSuiteSettings>,
    ticket: Arc<ArcSwapOption<SuiteTicket>>,
    upstream: Upstream,
}

/// Starts the suite token's actor.
pub(super) fn start_actor(
    settings: &Arc<WecomSuiteSettings>,
    deps: &ActorDeps,
    ticket: &Arc<ArcSwapOption<SuiteTicket>>,
    upstream: &Upstream,
) -> CredentialHandle {
    let label = settings.metrics_label();
    let source = SuiteTokenSource {
        settings: settings.clone(),
        ticket: ticket.clone(),
        upstream: upstream.clone(),
    };
    let key = AppKey {
        name: label.clone(),
        appid: format!("wecom-suite/{}", settings.suite_id),
    };
    let owner = crate::token::index::TokenOwner::WecomSuite(settings.name.clone());
    spawn_sourced(
        deps,
        &settings.suite_id,
        Arc::new(source),
        key,
        label,
        Some(owner),
    )
}

type Fetch = Result<Fetched, UpstreamError>;

/// The suite token's fetch with `ticket` (none: nothing to mint with). A failure leaves the
/// ticket alone: the next push replaces it, and a token error says nothing of it.
async fn mint(
    settings: Arc<WecomSuiteSettings>,
    ticket: Option<Arc<SuiteTicket>>,
    upstream: Upstream,
    priority: Priority,
    promotion: Promotion,
) -> Fetch {
    let ticket = ticket.ok_or(UpstreamError::NoToken)?;
    let keys = settings.clone();
    let fetched = upstream
        .in_slot(priority, promotion, |c| async move {
            c.fetch_suite_token(&keys.suite_id, &keys.suite_secret, &ticket.ticket)
                .await
        })
        .await;
    if let Err(e) = &fetched {
        tracing::warn!(suite = %settings.name, errcode = e.errcode(), error = %e,
            "could not mint the suite token");
    }
    fetched
}

impl ExternalSource for SuiteTokenSource {
    fn endpoint(&self) -> &'static str {
        "suite_token"
    }

    fn ready(&self, now: SystemTime) -> bool {
        self.ticket.load().as_ref().is_some_and(|t| t.fresh_at(now))
    }

    fn fetch(&self, p: Priority, q: Promotion) -> LocalBoxFuture<'static, Fetch> {
        let (settings, upstream) = (self.settings.clone(), self.upstream.clone());
        Box::pin(mint(settings, self.ticket.load_full(), upstream, p, q))
    }

    fn probe_kind(&self) -> Option<ProbeKind> {
        None
    }
}

impl Suite {
    /// The suite token, if one is valid at `now`.
    pub fn suite_token(&self, now: SystemTime) -> Option<Arc<TokenRecord>> {
        self.suite_token.status.load().valid_token(now).cloned()
    }

    /// The suite token, from the published status or the actor (waiting up to `wait`).
    pub async fn current_suite_token(
        &self,
        wait: Duration,
    ) -> Result<Arc<TokenRecord>, Unavailable> {
        self.suite_token.current(wait).await
    }

    /// Tells the suite token's actor that WeCom refused `token` (40082, 42009): minted again
    /// from the stored ticket at once.
    pub(super) fn suite_token_refused(&self, token: &AccessToken) {
        self.suite_token.addr.do_send(Invalidate {
            token: token.clone(),
        });
    }

    /// The suite token's actor, for the gateway's calls made with the suite token.
    pub fn suite_token_credential(&self) -> CredentialHandle {
        self.suite_token.clone()
    }

    /// What the suite token's actor last published.
    pub fn suite_token_status(&self) -> &crate::token::SharedStatus {
        &self.suite_token.status
    }

    pub fn has_ticket(&self) -> bool {
        self.ticket.load().is_some()
    }

    /// Whether the last ticket is younger than [`SUITE_TICKET_LIFE`].
    pub fn ticket_fresh(&self, now: SystemTime) -> bool {
        self.ticket.load().as_ref().is_some_and(|t| t.fresh_at(now))
    }

    pub fn ticket_age(&self, now: SystemTime) -> Option<Duration> {
        self.ticket
            .load()
            .as_ref()
            .map(|t| now.duration_since(t.received_at).unwrap_or_default())
    }

    /// Saves a pushed ticket (durably, before the push is answered) and lets the suite token
    /// actor use it.
    pub(super) async fn store_ticket(&self, ticket: AccessToken) -> anyhow::Result<()> {
        let now = SystemTime::now();
        self.store.save_ticket(ticket.clone(), now).await?;
        let was_fresh = self.ticket_fresh(now);
        self.ticket.store(Some(Arc::new(SuiteTicket {
            ticket,
            received_at: now,
        })));
        if !was_fresh || self.suite_token(now).is_none() {
            self.suite_token.addr.do_send(InputsChanged);
        }
        Ok(())
    }

    /// Calls WeCom with the suite token (waiting up to the actors' wait limit for one) once
    /// the upstream pool gives a slot of `priority`; a suite token WeCom says is dead (40082,
    /// 42009) is reported to its actor, which mints another from the stored ticket at once.
    /// `NoToken`: no suite token to call with.
    pub(super) async fn with_suite_token<T, Fut>(
        &self,
        priority: Priority,
        promotion: Promotion,
        call: impl FnOnce(Rc<WechatClient>, AccessToken) -> Fut,
    ) -> Result<T, UpstreamError>
    where
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let token = self
            .current_suite_token(self.deps.wait_limit)
            .await
            .map_err(|_| UpstreamError::NoToken)?
            .token
            .clone();
        let used = token.clone();
        let answer = self
            .upstream
            .in_slot(priority, promotion, |c| call(c, token))
            .await;
        if let Err(e) = &answer {
            if super::corp_source::suite_token_dead(e.errcode()) {
                self.suite_token_refused(&used);
            }
        }
        answer
    }

    /// A pre-auth code with its session set (`auth_type` 0 formal, 1 test install), made with
    /// the suite token ahead of background calls. `NoToken`: no suite token to make it with.
    pub async fn create_preauth_code(&self, auth_type: u8) -> Result<PreAuthCode, UpstreamError> {
        self.with_suite_token(Priority::Urgent, Promotion::default(), |c, t| async move {
            c.suite_pre_auth_code(&t, auth_type).await
        })
        .await
    }
}
