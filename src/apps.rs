//! The running apps: one supervised `TokenActor` per configured app, and its published status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Supervisor};

use crate::config::{AppSettings, RefreshSettings, UpstreamSettings};
use crate::metrics::Metrics;
use crate::store::AppKey;
use crate::store::TokenStore;
use crate::token::actor::ActorConfig;
use crate::token::messages::StoreChanged;
use crate::token::{AppStatus, SharedStatus, TokenActor};
use crate::upstream::WechatClient;

/// One running app.
pub struct AppHandle {
    pub name: String,
    pub appid: String,
    /// The app's actor; the supervisor keeps this address valid across restarts.
    pub addr: Addr<TokenActor>,
    /// What the actor last published.
    pub status: SharedStatus,
}

/// Every running app, by name, in configuration order.
#[derive(Default)]
pub struct Apps {
    by_name: HashMap<String, Arc<AppHandle>>,
    order: Vec<Arc<AppHandle>>,
}

/// What every actor shares.
pub struct ActorDeps {
    pub refresh: RefreshSettings,
    pub upstream: UpstreamSettings,
    pub tls: Arc<rustls::ClientConfig>,
    pub store: Arc<dyn TokenStore>,
    pub metrics: Metrics,
    pub wait_limit: Duration,
    pub poll_interval: Duration,
}

impl Apps {
    /// Starts one supervised actor per app on the current arbiter. Must run inside an actix
    /// System.
    pub fn start(apps: &[AppSettings], deps: &ActorDeps) -> Apps {
        let mut out = Apps::default();
        for app in apps {
            deps.metrics.set_quota_limit(&app.name, app.daily_quota);
            let status: SharedStatus =
                Arc::new(arc_swap::ArcSwap::from_pointee(AppStatus::default()));
            let settings = Arc::new(app.clone());
            let refresh = deps.refresh.clone();
            let upstream = deps.upstream.clone();
            let tls = deps.tls.clone();
            let store = deps.store.clone();
            let metrics = deps.metrics.clone();
            let wait_limit = deps.wait_limit;
            let poll_interval = deps.poll_interval;
            let actor_status = status.clone();
            // The factory runs on the actor's own thread: awc clients are not `Send`.
            let addr = Supervisor::start(move |_| {
                TokenActor::new(ActorConfig {
                    client: WechatClient::new(&upstream, tls),
                    app: settings,
                    refresh,
                    wait_limit,
                    poll_interval,
                    store,
                    metrics,
                    status: actor_status,
                })
            });
            let notify = addr.clone();
            deps.store.subscribe(
                &AppKey {
                    name: app.name.clone(),
                    appid: app.appid.clone(),
                },
                Box::new(move || notify.do_send(StoreChanged)),
            );
            let handle = Arc::new(AppHandle {
                name: app.name.clone(),
                appid: app.appid.clone(),
                addr,
                status,
            });
            out.by_name.insert(app.name.clone(), handle.clone());
            out.order.push(handle);
        }
        out
    }

    pub fn get(&self, name: &str) -> Option<&Arc<AppHandle>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<AppHandle>> {
        self.order.iter()
    }
}
