//! A running WeCom suite: the [`Suite`] its routes, actors and background work share, built
//! once at start. Its fields are its own: other rooms call its methods, which the files next to
//! this one add by concept.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwapOption;

use super::ticket::SuiteTicket;
use crate::config::WecomSuiteSettings;
use crate::platform::{Accounts, Exchanges, Upstream};
use crate::push::crypto::MsgCrypto;
use crate::push::replay::ReplayGuard;
use crate::store::platform::PlatformStore;
use crate::store::wecom::WecomStore;
use crate::token::{ActorDeps, CredentialHandle};

/// One suite, running: its callback receiver, its ticket and suite token actor, its installed
/// corps (records always in memory, token actors only for the corps being served), its
/// AuthCode exchanges.
pub struct Suite {
    pub(super) settings: Arc<WecomSuiteSettings>,
    /// Opens its pushes (the suite id is the receive id).
    pub(super) crypto: MsgCrypto,
    /// Opens WeCom's URL check, whose echostr is encrypted for the provider's corpid; `None`
    /// without a provider (see [`MsgCrypto::open_encrypt_any_receiver`]).
    pub(super) url_crypto: Option<MsgCrypto>,
    pub(super) replay: Mutex<ReplayGuard>,
    /// The last pushed suite ticket, shared with the suite token's source.
    pub(super) ticket: Arc<ArcSwapOption<SuiteTicket>>,
    pub(super) suite_token: CredentialHandle,
    pub(super) corps: Accounts<crate::store::wecom::CorpRecord>,
    pub(super) store: WecomStore,
    pub(super) deps: ActorDeps,
    pub(super) upstream: Upstream,
    /// One exchange per AuthCode in this process, and the codes exchanged lately.
    pub(super) exchanges: Exchanges,
    /// The AuthCode exchanges started in the background that have not ended yet.
    pub(super) exchanges_running: AtomicUsize,
    me: Weak<Suite>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No critical section here awaits or leaves a half-made change: keep going with the data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Suite {
    /// Starts the suite: reads its ticket and corps, starts the suite token actor (and, for
    /// `"all"`, every installed corp's). Must run inside an actix System; the background work
    /// is started apart ([`Suite::spawn_background`]).
    pub async fn start(
        settings: &WecomSuiteSettings,
        deps: &ActorDeps,
        platform_store: Arc<dyn PlatformStore>,
    ) -> anyhow::Result<Arc<Suite>> {
        use secrecy::ExposeSecret as _;
        let settings = Arc::new(settings.clone());
        let name = &settings.name;
        let keys = |receive_id: &str| {
            MsgCrypto::new(
                settings.token.expose_secret(),
                settings.encoding_aes_key.expose_secret(),
                receive_id,
            )
            .map_err(|e| anyhow::anyhow!("WeCom suite `{name}`: {e}"))
        };
        let crypto = keys(&settings.suite_id)?;
        let url_crypto = settings.provider_corpid.as_deref().map(keys).transpose()?;
        let namespace = crate::config::labels::wecom_store_namespace(name);
        crate::store::sealed::check_platform_records(&*platform_store, &namespace).await?;
        let store = WecomStore::new(platform_store, namespace, &settings.suite_id);
        let ticket = super::ticket::load(&store, name).await?;
        let records = store
            .load_corps()
            .await
            .map_err(|e| anyhow::anyhow!("WeCom suite `{name}`: cannot read its corps: {e:#}"))?;
        let ticket = Arc::new(ArcSwapOption::new(ticket.map(Arc::new)));
        let upstream = Upstream::new(deps);
        let suite_token = super::ticket::start_actor(&settings, deps, &ticket, &upstream);
        let corps = Accounts::new(records);
        let suite = Arc::new_cyclic(|me| Suite {
            settings,
            crypto,
            url_crypto,
            replay: Mutex::new(ReplayGuard::default()),
            ticket,
            suite_token,
            corps,
            store,
            deps: deps.clone(),
            upstream,
            exchanges: Exchanges::default(),
            exchanges_running: AtomicUsize::new(0),
            me: me.clone(),
        });
        suite.keep_installed_fresh();
        Ok(suite)
    }

    /// Its name in the configuration and in URLs.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The label of its suite token's metrics, logs and readiness.
    pub fn label(&self) -> String {
        self.settings.metrics_label()
    }

    pub fn suite_id(&self) -> &str {
        &self.settings.suite_id
    }

    /// Its durable records (for tools and tests that look at them directly).
    pub fn store(&self) -> &WecomStore {
        &self.store
    }

    /// This suite's `Arc`, for the sources of the actors it starts (which hold it weakly) and
    /// for work spawned apart.
    pub(super) fn me(&self) -> Option<Arc<Suite>> {
        self.me.upgrade()
    }
}
