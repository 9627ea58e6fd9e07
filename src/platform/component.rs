//! The component token: its source (`api_component_token` with the platform's last pushed
//! verify ticket), the ticket itself, and the tokens this instance has handed out.
//!
//! Without a ticket the source does not try; on 61005/61006 (ticket expired or refused) it
//! asks WeChat to push again (`api_start_push_ticket`), at most once per ten minutes, and the
//! token actor keeps serving the current token while it is valid.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use futures_util::future::LocalBoxFuture;

use super::runtime::{lock, Platform, Upstream};
use crate::config::PlatformSettings;
use crate::secret::AccessToken;
use crate::store::platform::TicketRecord;
use crate::store::AppKey;
use crate::token::external::ExternalSource;
use crate::token::messages::InputsChanged;
use crate::token::{
    spawn_sourced, ActorDeps, CredentialHandle, SharedStatus, TokenRecord, Unavailable,
};
use crate::upstream::{Fetched, PreAuthCode, Priority, Promotion, UpstreamError};

/// Least time between two `api_start_push_ticket` calls of a platform.
pub const PUSH_RESTART_INTERVAL: Duration = Duration::from_secs(600);

/// The daily limit assumed for a platform's `api_component_token` calls (quota metrics): WeChat
/// publishes none; one platform's getApiQuota showed 2,000, another's 10,000.
pub const COMPONENT_DAILY_QUOTA: u64 = 2000;

/// Whether an errcode says the verify ticket is the problem.
pub fn ticket_refused(errcode: Option<i64>) -> bool {
    matches!(errcode, Some(61005 | 61006))
}

pub struct ComponentSource {
    settings: Arc<PlatformSettings>,
    /// The last pushed ticket, shared with the receiver that stores new ones.
    ticket: Arc<ArcSwapOption<TicketRecord>>,
    upstream: Upstream,
    /// When `api_start_push_ticket` was last called.
    push_restarted: Arc<Mutex<Option<Instant>>>,
}

/// Starts the component token's actor: its own label and store key, fetched by its source.
pub(super) fn start_actor(
    settings: &Arc<PlatformSettings>,
    deps: &ActorDeps,
    ticket: &Arc<ArcSwapOption<TicketRecord>>,
    upstream: &Upstream,
) -> CredentialHandle {
    let label = settings.metrics_label();
    let source = ComponentSource {
        settings: settings.clone(),
        ticket: ticket.clone(),
        upstream: upstream.clone(),
        push_restarted: Arc::new(Mutex::new(None)),
    };
    spawn_sourced(
        deps,
        &settings.component_appid,
        Arc::new(source),
        AppKey {
            name: label.clone(),
            appid: format!("component/{}", settings.component_appid),
        },
        label,
        None,
    )
}

/// Calls `api_start_push_ticket` unless it was called within [`PUSH_RESTART_INTERVAL`].
/// Returns whether it called.
pub async fn restart_push(
    settings: &PlatformSettings,
    upstream: &Upstream,
    last: &Mutex<Option<Instant>>,
) -> bool {
    {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < PUSH_RESTART_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
    }
    let client = upstream.client();
    let _slot = client
        .slot(Priority::Background, Promotion::default())
        .await;
    match client
        .start_push_ticket(&settings.component_appid, &settings.component_secret)
        .await
    {
        Ok(()) => {
            tracing::info!(platform = %settings.name, "asked WeChat to push the verify ticket again")
        }
        Err(e) => tracing::warn!(platform = %settings.name, error = %e,
            "could not ask WeChat to push the verify ticket again"),
    }
    true
}

impl ExternalSource for ComponentSource {
    fn endpoint(&self) -> &'static str {
        "component_token"
    }

    fn ready(&self, _now: SystemTime) -> bool {
        self.ticket.load().is_some()
    }

    fn fetch(
        &self,
        priority: Priority,
        promotion: Promotion,
    ) -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>> {
        let settings = self.settings.clone();
        let ticket = self.ticket.load_full();
        let upstream = self.upstream.clone();
        let push_restarted = self.push_restarted.clone();
        Box::pin(async move {
            let Some(ticket) = ticket else {
                return Err(UpstreamError::NoToken);
            };
            let client = upstream.client();
            let fetched = {
                let _slot = client.slot(priority, promotion).await;
                client
                    .fetch_component_token(
                        &settings.component_appid,
                        &settings.component_secret,
                        &ticket.ticket,
                    )
                    .await
            };
            if let Err(e) = &fetched {
                if ticket_refused(e.errcode()) {
                    tracing::warn!(platform = %settings.name, errcode = e.errcode(),
                        "WeChat refused the verify ticket");
                    // Not awaited by the refresh: its answer changes nothing here.
                    actix::spawn(async move {
                        restart_push(&settings, &upstream, &push_restarted).await;
                    });
                }
            }
            fetched
        })
    }
}

/// The current component token as last seen, and the one it replaced.
#[derive(Default)]
pub(super) struct SeenComponentTokens {
    current: Option<Arc<TokenRecord>>,
    previous: Option<Arc<TokenRecord>>,
}

/// Whether a presented component token is one wxtoken handed out.
#[derive(Debug, PartialEq, Eq)]
pub enum ComponentTokenCheck {
    /// The current token, or the one before it while it has not expired.
    Known,
    /// The one before the current token, past its expiry.
    Expired,
    Unknown,
}

/// Why no pre-auth code could be created.
#[derive(Debug)]
pub enum PreauthError {
    /// No component token to create it with.
    NoComponentToken,
    Upstream(UpstreamError),
}

impl Platform {
    /// The component token, if one is valid at `now`. Every read notes it as seen, so the one
    /// it replaces is remembered as the previous one.
    pub fn component_token(&self, now: SystemTime) -> Option<Arc<TokenRecord>> {
        let rec = self.component.status.load().valid_token(now).cloned();
        if let Some(r) = &rec {
            self.note_component_token(r);
        }
        rec
    }

    /// The component token: the published one while valid, else the actor's, which may wait
    /// up to `wait` (the actors' wait limit) for a fetch. Noted as seen either way.
    pub async fn current_component_token(
        &self,
        wait: Duration,
    ) -> Result<Arc<TokenRecord>, Unavailable> {
        if let Some(rec) = self.component_token(SystemTime::now()) {
            return Ok(rec);
        }
        let rec = self.component.current(wait).await?;
        self.note_component_token(&rec);
        Ok(rec)
    }

    /// The component token, waiting up to the actor's wait limit for one.
    pub async fn wait_component_token(&self) -> Option<Arc<TokenRecord>> {
        self.current_component_token(self.deps.wait_limit)
            .await
            .ok()
    }

    /// Notes `rec` as the current component token (handed out, or about to be).
    fn note_component_token(&self, rec: &Arc<TokenRecord>) {
        let mut seen = lock(&self.seen_component);
        match &seen.current {
            Some(cur) if cur.token == rec.token => {}
            // An older record (a late answer of the actor) never pushes a newer one out.
            Some(cur) if cur.generation > rec.generation => {}
            _ => {
                seen.previous = seen.current.take();
                seen.current = Some(rec.clone());
            }
        }
    }

    /// Whether `presented` is a component token this instance handed out and still knows: the
    /// current one, or the one before it. Compared in constant time: it is a credential.
    pub fn check_component_token(&self, presented: &str, now: SystemTime) -> ComponentTokenCheck {
        use subtle::ConstantTimeEq as _;
        // Reading the current token first moves a replaced one into `previous`.
        let _ = self.component_token(now);
        let seen = lock(&self.seen_component);
        let matching = [&seen.current, &seen.previous]
            .into_iter()
            .flatten()
            .find(|r| bool::from(r.token.expose().as_bytes().ct_eq(presented.as_bytes())));
        match matching {
            Some(r) if r.is_valid_at(now) => ComponentTokenCheck::Known,
            Some(_) => ComponentTokenCheck::Expired,
            None => ComponentTokenCheck::Unknown,
        }
    }

    /// The component token's actor, as a credential (the gateway forwards calls with it).
    pub fn component_credential(&self) -> CredentialHandle {
        self.component.clone()
    }

    /// What the component token's actor last published.
    pub fn component_status(&self) -> &SharedStatus {
        &self.component.status
    }

    /// Whether a verify ticket has been pushed (or read back from the store) yet.
    pub fn has_ticket(&self) -> bool {
        self.ticket.load().is_some()
    }

    /// Saves a pushed ticket (durably, before the push is answered) and lets the component
    /// token actor use it.
    pub(super) async fn store_ticket(&self, ticket: AccessToken) -> anyhow::Result<()> {
        let record = TicketRecord {
            component_appid: self.settings.component_appid.clone(),
            ticket,
            received_at: SystemTime::now(),
        };
        self.store.save_ticket(&self.settings.name, &record).await?;
        let first = self.ticket.load().is_none();
        self.ticket.store(Some(Arc::new(record)));
        if first || self.component_token(SystemTime::now()).is_none() {
            self.component.addr.do_send(InputsChanged);
        }
        Ok(())
    }

    /// The age of the last ticket.
    pub fn ticket_age(&self, now: SystemTime) -> Option<Duration> {
        self.ticket
            .load()
            .as_ref()
            .map(|t| now.duration_since(t.received_at).unwrap_or_default())
    }

    /// A fresh pre-auth code (single use) for the authorization links, made with the
    /// component token, ahead of background calls in the upstream pool.
    pub async fn create_preauth_code(&self) -> Result<PreAuthCode, PreauthError> {
        let Some(component) = self.wait_component_token().await else {
            return Err(PreauthError::NoComponentToken);
        };
        let client = self.upstream.client();
        let _slot = client.slot(Priority::Urgent, Promotion::default()).await;
        client
            .create_preauth_code(&component.token, &self.settings.component_appid)
            .await
            .map_err(PreauthError::Upstream)
    }
}
