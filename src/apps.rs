//! The running apps: one supervised `TokenActor` per configured app (plus one per ticket it
//! uses), and their published status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Supervisor};

use crate::config::{AppSettings, RefreshSettings, TicketKind, UpstreamSettings};
use crate::metrics::Metrics;
use crate::store::{AppKey, TokenStore};
use crate::token::actor::{ActorConfig, Credential};
use crate::token::messages::{Retire, StoreChanged, Subscribe, UpdateApp};
use crate::token::{AppStatus, SharedClock, SharedStatus, TokenActor};
use crate::upstream::WechatClient;

/// One credential kept fresh by one actor.
#[derive(Clone)]
pub struct CredentialHandle {
    /// The supervisor keeps this address valid across restarts.
    pub addr: Addr<TokenActor>,
    /// What the actor last published.
    pub status: SharedStatus,
}

/// One running app.
pub struct AppHandle {
    pub name: String,
    pub settings: Arc<AppSettings>,
    pub addr: Addr<TokenActor>,
    pub status: SharedStatus,
    pub tickets: HashMap<TicketKind, CredentialHandle>,
    /// The current token's answer, rendered by the HTTP fast path once per token.
    pub rendered: arc_swap::ArcSwapOption<crate::http::fast::RenderedToken>,
}

impl AppHandle {
    /// Stops the app's actors for good (it was removed from the configuration) and drops
    /// their counters; the gauges go with the app, so no frozen value keeps an alert firing.
    pub fn retire(&self, metrics: &Metrics) {
        for (kind, t) in &self.tickets {
            t.addr.do_send(Retire);
            metrics.remove_app(&ticket_label(&self.name, *kind));
        }
        self.addr.do_send(Retire);
        metrics.remove_app(&self.name);
    }
}

/// Every running app, by name, in configuration order.
#[derive(Default, Clone)]
pub struct Apps {
    by_name: HashMap<String, Arc<AppHandle>>,
    order: Vec<Arc<AppHandle>>,
}

/// What every actor shares.
#[derive(Clone)]
pub struct ActorDeps {
    pub refresh: RefreshSettings,
    pub upstream: UpstreamSettings,
    pub tls: Arc<rustls::ClientConfig>,
    pub store: Arc<dyn TokenStore>,
    pub metrics: Metrics,
    pub wait_limit: Duration,
    pub poll_interval: Duration,
    pub clock: SharedClock,
}

/// The metrics label of a ticket actor: `shop:jsapi_ticket`.
pub fn ticket_label(app: &str, kind: TicketKind) -> String {
    format!("{app}:{}_ticket", kind.as_str())
}

fn spawn_actor(
    deps: &ActorDeps,
    app: &Arc<AppSettings>,
    credential: Credential,
    key: AppKey,
    label: String,
) -> CredentialHandle {
    // Counters start at 0; the gauges follow from the published status at every scrape.
    deps.metrics.init_app(&label);
    let status: SharedStatus = Arc::new(arc_swap::ArcSwap::from_pointee(AppStatus::default()));
    let cfg_status = status.clone();
    let deps_owned = deps.clone();
    let app_owned = app.clone();
    let store_key = key.clone();
    // The factory runs on the actor's own thread: awc clients are not `Send`.
    let addr = Supervisor::start(move |_| {
        TokenActor::new(ActorConfig {
            fetcher: WechatClient::shared(
                &deps_owned.upstream,
                &deps_owned.tls,
                &deps_owned.metrics,
            ),
            clock: deps_owned.clock.clone(),
            app: app_owned,
            credential,
            key,
            label,
            refresh: deps_owned.refresh.clone(),
            wait_limit: deps_owned.wait_limit,
            poll_interval: deps_owned.poll_interval,
            store: deps_owned.store.clone(),
            metrics: deps_owned.metrics.clone(),
            status: cfg_status,
        })
    });
    // A weak address: the store's notifier must not keep a removed app's actor alive.
    let weak = addr.downgrade();
    deps.store.subscribe(
        &store_key,
        Box::new(move || {
            if let Some(a) = weak.upgrade() {
                a.do_send(StoreChanged);
            }
        }),
    );
    CredentialHandle { addr, status }
}

/// Starts the actors of one app on the current arbiter. Must run inside an actix System.
pub fn start_app(app: &AppSettings, deps: &ActorDeps) -> Arc<AppHandle> {
    let settings = Arc::new(app.clone());
    let token = spawn_actor(
        deps,
        &settings,
        Credential::AccessToken,
        AppKey {
            name: app.name.clone(),
            appid: app.store_id(),
        },
        app.name.clone(),
    );
    let mut tickets = HashMap::new();
    for &kind in &app.tickets {
        let ticket = spawn_actor(
            deps,
            &settings,
            Credential::Ticket {
                kind,
                token: token.status.clone(),
                token_actor: token.addr.clone(),
            },
            AppKey {
                name: format!("{}/ticket/{}", app.name, kind.as_str()),
                appid: format!("{}/ticket/{}", app.store_id(), kind.as_str()),
            },
            ticket_label(&app.name, kind),
        );
        token
            .addr
            .do_send(Subscribe(ticket.addr.clone().recipient()));
        tickets.insert(kind, ticket);
    }
    Arc::new(AppHandle {
        name: app.name.clone(),
        settings,
        addr: token.addr,
        status: token.status,
        tickets,
        rendered: Default::default(),
    })
}

impl Apps {
    /// Starts every app. Must run inside an actix System.
    pub fn start(apps: &[AppSettings], deps: &ActorDeps) -> Apps {
        let mut out = Apps::default();
        for app in apps {
            out.insert(start_app(app, deps));
        }
        out
    }

    fn insert(&mut self, handle: Arc<AppHandle>) {
        self.by_name.insert(handle.name.clone(), handle.clone());
        self.order.push(handle);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<AppHandle>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<AppHandle>> {
        self.order.iter()
    }

    /// The app whose AppID is `appid` (official apps only: the WeChat-compatible facade).
    pub fn by_appid(&self, appid: &str) -> Option<&Arc<AppHandle>> {
        self.order.iter().find(|a| {
            matches!(a.settings.kind, crate::config::AppKind::Official(_))
                && a.settings.appid == appid
        })
    }

    /// The apps of `new`: unchanged apps keep their actors (told of new secrets or policy),
    /// removed ones are retired, added or re-identified ones started. Returns the new set and
    /// a summary of what changed.
    pub fn reconcile(&self, new: &[AppSettings], deps: &ActorDeps) -> (Apps, ReloadSummary) {
        let mut out = Apps::default();
        let mut summary = ReloadSummary::default();
        for app in new {
            match self.by_name.get(&app.name) {
                Some(old)
                    if old.settings.kind == app.kind
                        && old.settings.appid == app.appid
                        && old.settings.tickets == app.tickets =>
                {
                    let settings = Arc::new(app.clone());
                    old.addr
                        .do_send(UpdateApp(settings.clone(), deps.refresh.clone()));
                    for t in old.tickets.values() {
                        t.addr
                            .do_send(UpdateApp(settings.clone(), deps.refresh.clone()));
                    }
                    out.insert(Arc::new(AppHandle {
                        name: old.name.clone(),
                        settings,
                        addr: old.addr.clone(),
                        status: old.status.clone(),
                        tickets: old.tickets.clone(),
                        rendered: Default::default(),
                    }));
                    summary.updated.push(app.name.clone());
                }
                Some(old) => {
                    old.retire(&deps.metrics);
                    out.insert(start_app(app, deps));
                    summary.replaced.push(app.name.clone());
                }
                None => {
                    out.insert(start_app(app, deps));
                    summary.added.push(app.name.clone());
                }
            }
        }
        for old in &self.order {
            if !out.by_name.contains_key(&old.name) {
                old.retire(&deps.metrics);
                summary.removed.push(old.name.clone());
            }
        }
        (out, summary)
    }
}

/// What a configuration reload changed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Kind, appid or tickets changed: the app's actors were replaced.
    pub replaced: Vec<String>,
    /// Kept running with the new secret, quota and refresh policy.
    pub updated: Vec<String>,
    /// Settings that only a restart applies.
    pub needs_restart: Vec<String>,
}
