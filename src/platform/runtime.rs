//! A running third-party platform: the [`Platform`] that its routes, actors and background
//! work share, built once at start. Its fields are its own: other rooms call its methods, and
//! the files next to this one each add those of one concept (`component.rs`, `authorizers.rs`,
//! `receive.rs`, `reconcile.rs`, `exchange.rs`, `background.rs`, `readiness.rs`, `messages.rs`,
//! `release_check.rs`).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwapOption;

use super::accounts::Accounts;
use super::codes::Exchanges;
use super::component::SeenComponentTokens;
use crate::config::{PlatformSettings, UpstreamSettings};
use crate::messages::Hub;
use crate::push::crypto::MsgCrypto;
use crate::push::replay::ReplayGuard;
use crate::store::platform::{PlatformStore, TicketRecord};
use crate::token::{ActorDeps, CredentialHandle};
use crate::upstream::{UpstreamPool, WechatClient};

/// What the upstream calls of a platform (or a WeCom suite) are made with: the parts of
/// `ActorDeps` they need.
#[derive(Clone)]
pub struct Upstream {
    settings: UpstreamSettings,
    tls: Arc<rustls::ClientConfig>,
    pool: Arc<UpstreamPool>,
}

impl Upstream {
    /// This thread's shared client (awc is not `Send`), whose calls go through the server's
    /// one upstream pool.
    pub fn client(&self) -> std::rc::Rc<WechatClient> {
        WechatClient::shared(&self.settings, &self.tls, &self.pool)
    }

    /// Runs `call` with this thread's client once the upstream pool gives it a slot of
    /// `priority`: every call to WeChat waits in the one pool.
    pub async fn in_slot<T, Fut>(
        &self,
        priority: crate::upstream::Priority,
        promotion: crate::upstream::Promotion,
        call: impl FnOnce(std::rc::Rc<WechatClient>) -> Fut,
    ) -> T
    where
        Fut: std::future::Future<Output = T>,
    {
        let client = self.client();
        let _slot = client.slot(priority, promotion).await;
        call(client.clone()).await
    }

    pub fn new(deps: &ActorDeps) -> Upstream {
        Upstream {
            settings: deps.upstream.clone(),
            tls: deps.tls.clone(),
            pool: deps.pool.clone(),
        }
    }
}

/// One third-party platform, running: its push receiver, its verify ticket and component token
/// actor, its authorizers (records always in memory, token actors only for the accounts being
/// served), its code exchanges.
pub struct Platform {
    pub(super) settings: Arc<PlatformSettings>,
    /// Opens the pushes to its event URL (the component appid is the receive id).
    pub(super) crypto: MsgCrypto,
    pub(super) replay: Mutex<ReplayGuard>,
    /// The last pushed verify ticket, shared with the component token's source.
    pub(super) ticket: Arc<ArcSwapOption<TicketRecord>>,
    pub(super) component: CredentialHandle,
    pub(super) authorizers: Accounts<crate::store::platform::AuthorizerRecord>,
    pub(super) store: Arc<dyn PlatformStore>,
    pub(super) deps: ActorDeps,
    pub(super) upstream: Upstream,
    /// Serializes reconciliations (the daily one, the admin route, the first one).
    pub(super) reconciling: tokio::sync::Mutex<()>,
    /// Serializes the exchanges of each code, and remembers the codes exchanged: a code arrives
    /// twice (the push and the redirect), and the second must find the first's account.
    pub(super) exchanges: Exchanges,
    /// The component tokens this instance has seen current: the facade accepts the one before
    /// the current one too, since a client may still hold it just after a refresh.
    pub(super) seen_component: Mutex<SeenComponentTokens>,
    /// Where its accounts' messages and its own events (other than verify tickets) are taken
    /// for delivery.
    pub(super) hub: Arc<Hub>,
    me: Weak<Platform>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No critical section here awaits or leaves a half-made change: keep going with the data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Platform {
    /// Starts the platform: reads its ticket and authorizers, starts the component token actor
    /// (and, for `"all"`, every authorizer's). Must run inside an actix System. Its background
    /// work is started apart ([`Platform::spawn_background`]).
    pub async fn start(
        settings: &PlatformSettings,
        deps: &ActorDeps,
        store: Arc<dyn PlatformStore>,
        hub: Arc<Hub>,
    ) -> anyhow::Result<Arc<Platform>> {
        use secrecy::ExposeSecret as _;
        let settings = Arc::new(settings.clone());
        let crypto = MsgCrypto::new(
            settings.token.expose_secret(),
            settings.encoding_aes_key.expose_secret(),
            &settings.component_appid,
        )
        .map_err(|e| anyhow::anyhow!("platform `{}`: {e}", settings.name))?;
        let ticket = match store.load_ticket(&settings.name).await {
            Ok(t) => t,
            Err(e) => {
                // A ticket sealed under a key this instance lacks is not "no ticket": the start
                // stops and names the key, as for authorizers.
                if let Some(u) = crate::store::sealed::unreadable_in(&e) {
                    anyhow::bail!(
                        "platform `{}`: {u}; {}",
                        settings.name,
                        crate::store::sealed::remedy(u)
                    );
                }
                tracing::error!(platform = %settings.name, error = %format!("{e:#}"),
                    "could not read the stored verify ticket; waiting for the next push");
                None
            }
        };
        let records = store.load_authorizers(&settings.name).await.map_err(|e| {
            anyhow::anyhow!(
                "platform `{}`: cannot read its authorizers: {e:#}",
                settings.name
            )
        })?;
        let ticket = Arc::new(ArcSwapOption::new(ticket.map(Arc::new)));
        let upstream = Upstream::new(deps);
        let component = super::component::start_actor(&settings, deps, &ticket, &upstream);
        let authorizers = Accounts::new(records);
        let platform = Arc::new_cyclic(|me| Platform {
            settings,
            crypto,
            replay: Mutex::new(ReplayGuard::default()),
            ticket,
            component,
            authorizers,
            store,
            deps: deps.clone(),
            upstream,
            reconciling: tokio::sync::Mutex::new(()),
            exchanges: Default::default(),
            seen_component: Mutex::new(SeenComponentTokens::default()),
            hub,
            me: me.clone(),
        });
        platform.keep_authorized_fresh();
        Ok(platform)
    }

    /// Its name in the configuration and in URLs.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The label of its component token's metrics, logs and readiness.
    pub fn label(&self) -> String {
        self.settings.metrics_label()
    }

    /// The component appid WeChat knows it by (the facade finds a platform by it).
    pub fn component_appid(&self) -> &str {
        &self.settings.component_appid
    }

    /// Its durable records (for tools and tests that look at them directly).
    pub fn store(&self) -> &Arc<dyn PlatformStore> {
        &self.store
    }

    /// This platform's `Arc`, for the sources of the actors it starts (which hold it weakly:
    /// the platform holds their actors) and for work spawned apart.
    pub(super) fn me(&self) -> Option<Arc<Platform>> {
        self.me.upgrade()
    }
}
