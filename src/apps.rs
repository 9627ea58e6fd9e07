//! The running apps: one supervised `TokenActor` per configured app (plus one per ticket it
//! uses), and their published status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use crate::config::{ticket_label, AppSettings, TicketKind};
use crate::metrics::Metrics;
use crate::store::{AppKey, Stored};
use crate::token::actor::Credential;
use crate::token::handle::current_of;
use crate::token::index::TokenOwner;
use crate::token::messages::{Retire, Subscribe, UpdateApp};
use crate::token::{spawn_actor, CredentialSpec, SharedStatus, TokenActor, TokenRecord};

// Where they were before they moved to the token room, for the callers that name them here.
pub use crate::token::{ActorDeps, CredentialHandle, Unavailable, ACTOR_GRACE};

/// One running app.
pub struct AppHandle {
    pub name: String,
    pub settings: Arc<AppSettings>,
    pub addr: Addr<TokenActor>,
    pub status: SharedStatus,
    pub tickets: HashMap<TicketKind, CredentialHandle>,
}

impl AppHandle {
    /// The app's current token, as [`CredentialHandle::current`] reads it, without building a
    /// handle (the facade's token route calls this for every request).
    pub async fn current(&self, wait: Duration) -> Result<Arc<TokenRecord>, Unavailable> {
        current_of(&self.addr, &self.status, wait).await
    }

    /// The app's token, as a credential.
    pub fn credential(&self) -> CredentialHandle {
        CredentialHandle {
            addr: self.addr.clone(),
            status: self.status.clone(),
        }
    }

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
    /// Official apps by AppID, for the facade (the first of an appid configured twice).
    by_appid: HashMap<String, Arc<AppHandle>>,
    order: Vec<Arc<AppHandle>>,
}

/// Credentials (a token plus its tickets) of `apps`.
fn credentials(apps: &[&AppSettings]) -> usize {
    apps.iter().map(|a| 1 + a.tickets.len()).sum()
}

/// The store keys of an app's credentials: its token, then each ticket.
fn app_keys(app: &AppSettings) -> Vec<AppKey> {
    let token = AppKey {
        name: app.name.clone(),
        appid: app.store_id(),
    };
    let tickets = app.tickets.iter().map(|kind| AppKey {
        name: format!("{}/ticket/{}", app.name, kind.as_str()),
        appid: format!("{}/ticket/{}", app.store_id(), kind.as_str()),
    });
    std::iter::once(token).chain(tickets).collect()
}

/// Starts the actors of one app on the current arbiter. Must run inside an actix System.
/// `preloaded` holds records read for them in advance, by key name; the actors of keys not in
/// it read their own.
pub fn start_app(
    app: &AppSettings,
    deps: &ActorDeps,
    preloaded: &mut HashMap<String, Option<Stored>>,
) -> Arc<AppHandle> {
    let settings = Arc::new(app.clone());
    let spec = Arc::new(CredentialSpec::from(app));
    let mut keys = app_keys(app).into_iter();
    let key = keys.next().expect("an app has a token key");
    let pre = preloaded.remove(&key.name);
    let token = spawn_actor(
        deps,
        &spec,
        Credential::AccessToken,
        key,
        app.name.clone(),
        pre,
        Some(TokenOwner::App(app.name.clone())),
    );
    let mut tickets = HashMap::new();
    for (&kind, key) in app.tickets.iter().zip(keys) {
        let pre = preloaded.remove(&key.name);
        let ticket = spawn_actor(
            deps,
            &spec,
            Credential::Ticket {
                kind,
                token: token.status.clone(),
                token_actor: token.addr.clone(),
            },
            key,
            ticket_label(&app.name, kind),
            pre,
            None,
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
    })
}

impl Apps {
    /// Starts every app, after reading all their records from the store in one pass. If that
    /// read fails, each actor reads its own (and reports what fails). Must run inside an actix
    /// System.
    pub async fn start(apps: &[AppSettings], deps: &ActorDeps) -> Apps {
        let deps = &ActorDeps {
            cohort: credentials(&apps.iter().collect::<Vec<_>>()),
            ..deps.clone()
        };
        let keys: Vec<AppKey> = apps.iter().flat_map(app_keys).collect();
        let names: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
        let mut preloaded: HashMap<String, Option<Stored>> = match deps.store.load_many(keys).await
        {
            Ok(records) => names.into_iter().zip(records).collect(),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not read the store in one pass; each app reads its own record");
                HashMap::new()
            }
        };
        let mut out = Apps::default();
        for app in apps {
            out.insert(start_app(app, deps, &mut preloaded));
        }
        out
    }

    fn insert(&mut self, handle: Arc<AppHandle>) {
        self.by_name.insert(handle.name.clone(), handle.clone());
        if matches!(handle.settings.kind, crate::config::AppKind::Official(_)) {
            self.by_appid
                .entry(handle.settings.appid.clone())
                .or_insert_with(|| handle.clone());
        }
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
        self.by_appid.get(appid)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The apps of `new`: unchanged apps keep their actors untouched; apps with a new secret,
    /// quota (or every app, when the refresh policy changed: `refresh_changed`) are told by
    /// message; removed ones are retired, added or re-identified ones started. So a reload of
    /// 10,000 apps with one changed sends one message. Returns the new set and a summary.
    pub fn reconcile(
        &self,
        new: &[AppSettings],
        deps: &ActorDeps,
        refresh_changed: bool,
    ) -> (Apps, ReloadSummary) {
        let starting: Vec<&AppSettings> = new
            .iter()
            .filter(|app| {
                self.by_name
                    .get(&app.name)
                    .is_none_or(|old| !same_identity(&old.settings, app))
            })
            .collect();
        let deps = &ActorDeps {
            cohort: credentials(&starting),
            ..deps.clone()
        };
        let mut out = Apps::default();
        let mut summary = ReloadSummary::default();
        for app in new {
            match self.by_name.get(&app.name) {
                Some(old) if old.settings.same_as(app) && !refresh_changed => {
                    out.insert(old.clone());
                }
                Some(old) if same_identity(&old.settings, app) => {
                    let settings = Arc::new(app.clone());
                    let spec = Arc::new(CredentialSpec::from(app));
                    for addr in
                        std::iter::once(&old.addr).chain(old.tickets.values().map(|t| &t.addr))
                    {
                        addr.do_send(UpdateApp(spec.clone(), deps.refresh.clone()));
                    }
                    out.insert(Arc::new(AppHandle {
                        name: old.name.clone(),
                        settings,
                        addr: old.addr.clone(),
                        status: old.status.clone(),
                        tickets: old.tickets.clone(),
                    }));
                    summary.updated.push(app.name.clone());
                }
                Some(old) => {
                    old.retire(&deps.metrics);
                    out.insert(start_app(app, deps, &mut HashMap::new()));
                    summary.replaced.push(app.name.clone());
                }
                None => {
                    out.insert(start_app(app, deps, &mut HashMap::new()));
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

/// Same kind, appid and tickets: the running actors can serve the new settings.
fn same_identity(old: &AppSettings, new: &AppSettings) -> bool {
    old.kind == new.kind && old.appid == new.appid && old.tickets == new.tickets
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
