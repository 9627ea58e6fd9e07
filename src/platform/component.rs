//! The component token's source: `api_component_token` with the platform's last pushed verify
//! ticket. Without a ticket it does not try; on 61005/61006 (ticket expired or refused) it asks
//! WeChat to push again (`api_start_push_ticket`), at most once per ten minutes, and the token
//! actor keeps serving the current token while it is valid.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use futures_util::future::LocalBoxFuture;

use crate::config::{PlatformSettings, UpstreamSettings};
use crate::store::platform::TicketRecord;
use crate::token::external::ExternalSource;
use crate::upstream::{Fetched, Priority, Promotion, UpstreamError, UpstreamPool, WechatClient};

/// Least time between two `api_start_push_ticket` calls of a platform.
pub const PUSH_RESTART_INTERVAL: Duration = Duration::from_secs(600);

/// What the upstream calls of a platform are made with (the parts of `ActorDeps` they need).
#[derive(Clone)]
pub struct Upstream {
    pub settings: UpstreamSettings,
    pub tls: Arc<rustls::ClientConfig>,
    pub pool: Arc<UpstreamPool>,
}

impl Upstream {
    /// This thread's shared client (awc is not `Send`), whose calls go through the server's
    /// one upstream pool.
    pub fn client(&self) -> std::rc::Rc<WechatClient> {
        WechatClient::shared(&self.settings, &self.tls, &self.pool)
    }
}

/// Whether an errcode says the verify ticket is the problem.
pub fn ticket_refused(errcode: Option<i64>) -> bool {
    matches!(errcode, Some(61005 | 61006))
}

pub struct ComponentSource {
    pub settings: Arc<PlatformSettings>,
    /// The last pushed ticket, shared with the event handler that stores new ones.
    pub ticket: Arc<ArcSwapOption<TicketRecord>>,
    pub upstream: Upstream,
    /// When `api_start_push_ticket` was last called.
    push_restarted: Arc<Mutex<Option<Instant>>>,
}

impl ComponentSource {
    pub fn new(
        settings: Arc<PlatformSettings>,
        ticket: Arc<ArcSwapOption<TicketRecord>>,
        upstream: Upstream,
        push_restarted: Arc<Mutex<Option<Instant>>>,
    ) -> ComponentSource {
        ComponentSource {
            settings,
            ticket,
            upstream,
            push_restarted,
        }
    }
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
