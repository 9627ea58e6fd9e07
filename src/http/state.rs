//! `ServerState`: what every handler reads, built complete at start-up and shared by all
//! workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::fast::RenderCache;
use crate::apps::Apps;
use crate::clients::ClientKeys;
use crate::config::ReadinessScope;
use crate::metrics::Metrics;
use crate::platform::Platform;
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::store::TokenStore;
use crate::token::index::TokenIndex;

/// Shared state of the HTTP layer. Apps and clients are swapped whole by a reload, which holds
/// the same two cells.
pub struct ServerState {
    pub apps: Arc<ArcSwap<Apps>>,
    pub clients: Arc<ArcSwap<ClientKeys>>,
    pub metrics: Metrics,
    /// For its health in readiness answers.
    pub store: Arc<dyn TokenStore>,
    /// How long a request waits for a fetch (the actors' wait limit).
    pub wait_limit: Duration,
    /// Applies configuration reloads.
    pub reloader: actix::Addr<Reloader>,
    /// The Open Platform's third-party platforms, by name (fixed until a restart).
    pub platforms: HashMap<String, Arc<Platform>>,
    /// WeCom service providers' suites and providers, by name (fixed until a restart).
    pub wecom_suites: HashMap<String, Arc<crate::wecom::Suite>>,
    pub wecom_providers: HashMap<String, Arc<crate::wecom::Provider>>,
    /// Every running credential's current and previous access token, for the gateway.
    pub tokens: Arc<TokenIndex>,
    /// Forwards WeChat API calls (fixed until a restart).
    pub gateway: Gateway,
    /// What a `/readyz` that names no `scope` is ready for (`[server] readiness`).
    pub readiness: ReadinessScope,
    /// The token read path's answers, rendered once per token.
    pub rendered: RenderCache,
    /// Takes WeChat's message pushes and owns their delivery to `[[routes]]` (fixed until a
    /// restart).
    pub hub: Arc<crate::messages::Hub>,
    /// Who did which admin action, and who read which token (`[audit]`; off without it).
    pub audit: crate::audit::Audit,
}
