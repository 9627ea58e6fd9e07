//! Hot reload: re-reads the configuration file (SIGHUP or `POST /v1/admin/reload`) and applies
//! it to the running server, or rejects it and keeps the running one.
//!
//! Applied at once: added apps start, removed apps stop, client keys and permissions change,
//! `[[routes]]` are added, removed or changed in the message hub. Applied at the next fetch:
//! secrets, quotas and the refresh policy of running apps. Listen address, upstream and store
//! settings need a restart; a reload says so and keeps the old ones.
//!
//! The new file is read and validated on a blocking-pool thread (it names files, and a slow or
//! hostile one must not stall the arbiter the token actors run on); only the apply step runs in
//! the [`Reloader`] actor, one reload at a time.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::web;
use arc_swap::ArcSwap;

use crate::apps::{ActorDeps, Apps, ReloadSummary};
use crate::clients::ClientKeys;
use crate::config::{
    MetricsSettings, PlatformSettings, ServerSettings, Settings, StoreSettings, UpstreamSettings,
};
use crate::messages::{Hub, RouteChanges};

/// Re-read the configuration and apply it.
#[derive(Debug, Message)]
#[rtype(result = "Result<Reloaded, String>")]
pub struct Reload;

/// What a reload applied: the apps' changes and the sections waiting for a restart
/// ([`ReloadSummary`]), and the routes' changes.
#[derive(Debug, Default, serde::Serialize)]
pub struct Reloaded {
    #[serde(flatten)]
    pub apps: ReloadSummary,
    pub routes: RouteChanges,
}

/// Owns the running configuration; lives on the main arbiter, where the token actors it
/// starts belong.
pub struct Reloader {
    path: Option<PathBuf>,
    /// The sections the process runs with: those it started with, since no reload applies
    /// them. A new file is compared with these, so a change is reported by every reload until
    /// a restart, not only by the first.
    running: Running,
    deps: ActorDeps,
    /// The running apps and clients, the same cells the HTTP layer reads: a reload swaps them
    /// whole.
    apps: Arc<ArcSwap<Apps>>,
    clients: Arc<ArcSwap<ClientKeys>>,
    /// The listener's certificate and client CA, re-read by every reload (cert-manager renews
    /// them in place).
    tls_files: Option<Arc<crate::server_tls::TlsFiles>>,
    /// The message hub, whose routes a reload changes.
    hub: Arc<Hub>,
}

/// The sections only a restart applies, as started.
struct Running {
    server: ServerSettings,
    upstream: UpstreamSettings,
    store: StoreSettings,
    encryption: crate::config::EncryptionSettings,
    proxy: crate::config::ProxySettings,
    /// The series set is chosen at start-up (`per_app = "auto"` from the credentials then).
    metrics: MetricsSettings,
    platforms: Vec<PlatformSettings>,
    /// WeCom suites and providers, like platforms, run from their start's settings.
    wecom_suites: Vec<crate::config::WecomSuiteSettings>,
    wecom_providers: Vec<crate::config::WecomProviderSettings>,
    /// The trail's file is opened at start-up (and reopened on SIGHUP), its settings kept.
    audit: Option<crate::config::AuditSettings>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        current: Settings,
        deps: ActorDeps,
        apps: Arc<ArcSwap<Apps>>,
        clients: Arc<ArcSwap<ClientKeys>>,
        hub: Arc<Hub>,
    ) -> Self {
        Reloader {
            path,
            running: Running {
                server: current.server,
                upstream: current.upstream,
                store: current.store,
                encryption: current.encryption,
                proxy: current.proxy,
                metrics: current.metrics,
                platforms: current.platforms,
                wecom_suites: current.wecom_suites,
                wecom_providers: current.wecom_providers,
                audit: current.audit,
            },
            deps,
            apps,
            clients,
            tls_files: None,
            hub,
        }
    }

    /// Also re-reads the listener's certificate and client CA on every reload (HTTPS only).
    pub fn reloading_tls_files(mut self, files: Option<Arc<crate::server_tls::TlsFiles>>) -> Self {
        self.tls_files = files;
        self
    }

    /// Applies a loaded and validated configuration.
    fn apply(&mut self, new: Settings) -> Reloaded {
        let mut needs_restart = Vec::new();
        // By value (`PartialEq`): a Redis URL compares its password too, which `Debug` hides.
        if new.server != self.running.server {
            needs_restart.push("server".to_string());
        }
        if new.upstream != self.running.upstream {
            needs_restart.push("upstream".to_string());
        }
        if new.store != self.running.store {
            needs_restart.push("store".to_string());
        }
        // The stores were opened with the keys of the start: a new key applies on a restart.
        if new.encryption != self.running.encryption {
            needs_restart.push("store encryption keys".to_string());
        }
        if new.proxy != self.running.proxy {
            needs_restart.push("proxy".to_string());
        }
        if new.metrics != self.running.metrics {
            needs_restart.push("metrics".to_string());
        }
        if new.audit != self.running.audit {
            needs_restart.push("audit".to_string());
        }
        // Platforms run from the settings they started with: any change waits for a restart.
        let platforms_same = new.platforms.len() == self.running.platforms.len()
            && new
                .platforms
                .iter()
                .zip(&self.running.platforms)
                .all(|(a, b)| a.same_as(b));
        if !platforms_same {
            needs_restart.push("platforms".to_string());
        }
        if !crate::config::same_suites(&new.wecom_suites, &self.running.wecom_suites)
            || !crate::config::same_providers(&new.wecom_providers, &self.running.wecom_providers)
        {
            needs_restart.push("wecom".to_string());
        }
        // The hub compares the routes with the running ones (by name, and their order: the
        // first matching reply route replies) and applies what changed.
        let routes = self.hub.reload_routes(new.routes.clone());
        let refresh_changed = new.refresh != self.deps.refresh;
        self.deps.refresh = new.refresh.clone();
        let apps = self.apps.load_full();
        let (apps, mut summary) = apps.reconcile(&new.apps, &self.deps, refresh_changed);
        self.apps.store(Arc::new(apps));
        // The running `client_auth` and unchanged rate buckets carry over.
        self.clients.store(Arc::new(
            self.clients.load().with_clients(new.clients.clone()),
        ));
        summary.needs_restart = needs_restart;
        Reloaded {
            apps: summary,
            routes,
        }
    }
}

impl Actor for Reloader {
    type Context = Context<Self>;
}

impl Handler<Reload> for Reloader {
    /// Atomic: a second reload waits until this one is applied, so answers come in order.
    type Result = AtomicResponse<Self, Result<Reloaded, String>>;

    fn handle(&mut self, _: Reload, _: &mut Self::Context) -> Self::Result {
        let path = self.path.clone();
        let tls_files = self.tls_files.clone();
        let load = async move {
            // First and apart from the file: a renewed certificate or CA is used even when the
            // configuration is rejected. A bad one is logged and counted, and the old one kept;
            // validation reads the same files, so the new configuration is then rejected too
            // and the running one stays whole.
            if let Some(files) = tls_files {
                let _ = web::block(move || files.reload()).await;
            }
            let Some(path) = path else {
                return Err("the server was not started from a configuration file".to_string());
            };
            web::block(move || Settings::load(&path).map_err(|e| e.to_string()))
                .await
                .map_err(|_| "the configuration loader stopped unexpectedly".to_string())?
        };
        AtomicResponse::new(Box::pin(load.into_actor(self).map(|loaded, this, _| {
            let outcome = loaded.map(|new| this.apply(new));
            report(outcome)
        })))
    }
}

/// Logs the outcome of a reload and hands it back.
fn report(outcome: Result<Reloaded, String>) -> Result<Reloaded, String> {
    match outcome {
        Ok(reloaded) => {
            let summary = &reloaded.apps;
            tracing::info!(
                added = ?summary.added,
                removed = ?summary.removed,
                replaced = ?summary.replaced,
                updated = summary.updated.len(),
                routes = ?reloaded.routes,
                needs_restart = ?summary.needs_restart,
                "configuration reloaded"
            );
            if !summary.needs_restart.is_empty() {
                tracing::warn!(sections = ?summary.needs_restart,
                        "these sections changed but only take effect after a restart");
            }
            Ok(reloaded)
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration reload rejected; the running configuration is kept");
            Err(e)
        }
    }
}
