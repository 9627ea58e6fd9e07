//! Hot reload: re-reads the configuration file (SIGHUP or `POST /v1/admin/reload`) and applies
//! it to the running server, or rejects it and keeps the running one.
//!
//! Applied at once: added apps start, removed apps stop, client keys and permissions change.
//! Applied at the next fetch: secrets, quotas and the refresh policy of running apps. Listen
//! address, upstream and store settings need a restart; a reload says so and keeps the old ones.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::web;

use crate::apps::{ActorDeps, ReloadSummary};
use crate::config::Settings;
use crate::http::auth::ClientKeys;
use crate::http::ServerState;

/// Re-read the configuration and apply it.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReloadSummary, String>")]
pub struct Reload;

/// Owns the running configuration; lives on the main arbiter, where the token actors it
/// starts belong.
pub struct Reloader {
    path: Option<PathBuf>,
    current: Settings,
    deps: ActorDeps,
    state: web::Data<ServerState>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        current: Settings,
        deps: ActorDeps,
        state: web::Data<ServerState>,
    ) -> Self {
        Reloader {
            path,
            current,
            deps,
            state,
        }
    }

    fn apply(&mut self) -> Result<ReloadSummary, String> {
        let Some(path) = &self.path else {
            return Err("the server was not started from a configuration file".into());
        };
        let new = Settings::load(path).map_err(|e| e.to_string())?;
        let mut needs_restart = Vec::new();
        // Compared through their Debug form, which redacts secrets but shows every setting.
        if format!("{:?}", new.server) != format!("{:?}", self.current.server) {
            needs_restart.push("server".to_string());
        }
        if format!("{:?}", new.upstream) != format!("{:?}", self.current.upstream) {
            needs_restart.push("upstream".to_string());
        }
        if format!("{:?}", new.store) != format!("{:?}", self.current.store) {
            needs_restart.push("store".to_string());
        }
        self.deps.refresh = new.refresh.clone();
        let apps = self.state.apps.load_full();
        let (apps, mut summary) = apps.reconcile(&new.apps, &self.deps);
        self.state.apps.store(Arc::new(apps));
        self.state
            .clients
            .store(Arc::new(ClientKeys::new(new.clients.clone())));
        summary.needs_restart = needs_restart;
        self.current = new;
        Ok(summary)
    }
}

impl Actor for Reloader {
    type Context = Context<Self>;
}

impl Handler<Reload> for Reloader {
    type Result = Result<ReloadSummary, String>;

    fn handle(&mut self, _: Reload, _: &mut Self::Context) -> Self::Result {
        match self.apply() {
            Ok(summary) => {
                tracing::info!(
                    added = ?summary.added,
                    removed = ?summary.removed,
                    replaced = ?summary.replaced,
                    updated = summary.updated.len(),
                    needs_restart = ?summary.needs_restart,
                    "configuration reloaded"
                );
                if !summary.needs_restart.is_empty() {
                    tracing::warn!(sections = ?summary.needs_restart,
                        "these sections changed but only take effect after a restart");
                }
                Ok(summary)
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload rejected; the running configuration is kept");
                Err(e)
            }
        }
    }
}
