//! A running third-party platform: its verify ticket, its component token actor, and its
//! authorizers (records always in memory, token actors only for the accounts being served).
//!
//! Authorizer actors: with `authorizer_refresh = "all"` every authorized account has one from
//! the start, refreshing ahead of expiry. With `"active"` an account gets one on its first
//! request (the actor's start-up fetch is the one call however many ask), keeps it while it is
//! asked for within `active_window_secs`, and loses it to the sweep after that: its token, still
//! in the store, is served again without a call if it is still valid on the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use actix::Addr;
use arc_swap::ArcSwapOption;

use super::component::{ComponentSource, Upstream};
use super::crypto::MsgCrypto;
use super::replay::ReplayGuard;
use crate::apps::{spawn_actor, ActorDeps, CredentialHandle};
use crate::config::labels::{authorizer_label, authorizer_ticket_label};
use crate::config::{
    AppKind, AppSettings, AuthorizerRefresh, Grant, PlatformSettings, SecretSource, TicketKind,
};
use crate::secret::AccessToken;
use crate::store::platform::{AuthorizerRecord, AuthorizerState, PlatformStore, TicketRecord};
use crate::store::{stored_from_fetch, AppKey};
use crate::token::actor::Credential;
use crate::token::index::TokenOwner;
use crate::token::messages::Retire;
use crate::token::{SharedStatus, TokenActor, TokenRecord};
use crate::upstream::{Authorization, UpstreamError, AUTHORIZER_PAGE_MAX};

/// The daily limit assumed for a platform's `api_component_token` calls (quota metrics): WeChat
/// publishes none; one platform's getApiQuota showed 2,000, another's 10,000.
pub const COMPONENT_DAILY_QUOTA: u64 = 2000;

/// How often idle authorizer actors are looked for (`"active"` mode).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the authorizer list is reconciled with the records.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(86_400);

/// One authorizer as the platform knows it.
pub struct AuthorizerEntry {
    pub record: AuthorizerRecord,
    /// Its token actor while it is being kept fresh.
    pub actor: Option<CredentialHandle>,
    /// Its ticket actors (jsapi, wx_card), started on first use, stopped with `actor`.
    pub tickets: HashMap<TicketKind, CredentialHandle>,
    /// The last client request for its token.
    pub last_request: Option<SystemTime>,
}

/// Why an authorizer's token cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthorizerRefusal {
    Unknown,
    Revoked,
    NeedsReauth,
    /// Known and authorized, but WeChat never gave a refresh token for it.
    NoRefreshToken,
}

/// The per-platform state shared by its handlers, actors and background tasks.
pub struct PlatformShared {
    pub settings: Arc<PlatformSettings>,
    pub crypto: MsgCrypto,
    pub replay: Mutex<ReplayGuard>,
    pub ticket: Arc<ArcSwapOption<TicketRecord>>,
    pub component: CredentialHandle,
    pub authorizers: Mutex<HashMap<String, AuthorizerEntry>>,
    pub store: Arc<dyn PlatformStore>,
    pub deps: ActorDeps,
    pub upstream: Upstream,
    /// When `api_start_push_ticket` was last called.
    pub push_restarted: Arc<Mutex<Option<Instant>>>,
    /// Serializes reconciliations (the daily one, the admin route, the first one).
    pub reconciling: tokio::sync::Mutex<()>,
    /// Serializes the exchanges of each code, and remembers the codes exchanged: a code arrives
    /// twice (the push and the redirect), and the second must find the first's account.
    pub(super) exchanges: super::codes::Exchanges,
    /// The component tokens this instance has seen current: the facade accepts the one before
    /// the current one too, since a client may still hold it just after a refresh.
    seen_component: Mutex<SeenComponentTokens>,
    me: std::sync::Weak<PlatformShared>,
}

/// The current component token as last seen, and the one it replaced.
#[derive(Default)]
struct SeenComponentTokens {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No critical section here awaits or leaves a half-made change: keep going with the data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The settings an actor of the platform runs with: its label, the appid its records carry,
/// the refresh rules of an official app's token (refreshed ahead of expiry, no stable grant).
fn actor_app(label: &str, appid: &str, secret: &secrecy::SecretString) -> Arc<AppSettings> {
    Arc::new(AppSettings {
        name: label.to_string(),
        kind: AppKind::Official(Grant::ClientCredential),
        appid: appid.to_string(),
        tickets: Vec::new(),
        secret: secret.clone(),
        secret_source: SecretSource::Inline,
        daily_quota: COMPONENT_DAILY_QUOTA,
    })
}

impl PlatformShared {
    /// Starts the platform: reads its ticket and authorizers, starts the component token actor
    /// (and, for `"all"`, every authorizer's). Must run inside an actix System.
    pub async fn start(
        settings: &PlatformSettings,
        deps: &ActorDeps,
        store: Arc<dyn PlatformStore>,
    ) -> anyhow::Result<Arc<PlatformShared>> {
        let settings = Arc::new(settings.clone());
        use secrecy::ExposeSecret as _;
        let crypto = MsgCrypto::new(
            settings.token.expose_secret(),
            settings.encoding_aes_key.expose_secret(),
            &settings.component_appid,
        )
        .map_err(|e| anyhow::anyhow!("platform `{}`: {e}", settings.name))?;
        let ticket = match store.load_ticket(&settings.name).await {
            Ok(t) => t,
            Err(e) => {
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
        let upstream = Upstream {
            settings: deps.upstream.clone(),
            tls: deps.tls.clone(),
            pool: deps.pool.clone(),
        };
        let push_restarted = Arc::new(Mutex::new(None));
        let label = settings.metrics_label();
        let component = spawn_actor(
            deps,
            &actor_app(
                &label,
                &settings.component_appid,
                &settings.component_secret,
            ),
            Credential::External(Arc::new(ComponentSource::new(
                settings.clone(),
                ticket.clone(),
                upstream.clone(),
                push_restarted.clone(),
            ))),
            AppKey {
                name: label.clone(),
                appid: format!("component/{}", settings.component_appid),
            },
            label,
            None,
            None,
        );
        let authorizers = records
            .into_iter()
            .map(|r| {
                (
                    r.appid.clone(),
                    AuthorizerEntry {
                        record: r,
                        actor: None,
                        tickets: HashMap::new(),
                        last_request: None,
                    },
                )
            })
            .collect();
        let shared = Arc::new_cyclic(|me| PlatformShared {
            settings,
            crypto,
            replay: Mutex::new(ReplayGuard::default()),
            ticket,
            component,
            authorizers: Mutex::new(authorizers),
            store,
            deps: deps.clone(),
            upstream,
            push_restarted,
            reconciling: tokio::sync::Mutex::new(()),
            exchanges: Default::default(),
            seen_component: Mutex::new(SeenComponentTokens::default()),
            me: me.clone(),
        });
        if shared.settings.authorizer_refresh == AuthorizerRefresh::All {
            let appids: Vec<String> = lock(&shared.authorizers)
                .iter()
                .filter(|(_, e)| e.record.state == AuthorizerState::Authorized)
                .map(|(a, _)| a.clone())
                .collect();
            for appid in appids {
                shared.ensure_actor(&appid);
            }
        }
        Ok(shared)
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The component token, if one is valid at `now`. Every read notes it as seen, so the one
    /// it replaces is remembered as the previous one.
    pub fn component_token(&self, now: SystemTime) -> Option<Arc<TokenRecord>> {
        let rec = self.component.status.load().valid_token(now).cloned();
        if let Some(r) = &rec {
            self.note_component_token(r);
        }
        rec
    }

    /// Notes `rec` as the current component token (handed out, or about to be).
    pub fn note_component_token(&self, rec: &Arc<TokenRecord>) {
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
        let same = |r: &Option<Arc<TokenRecord>>| {
            r.as_ref().is_some_and(|r| {
                bool::from(r.token.expose().as_bytes().ct_eq(presented.as_bytes()))
            })
        };
        if same(&seen.current) {
            match &seen.current {
                Some(r) if r.is_valid_at(now) => ComponentTokenCheck::Known,
                _ => ComponentTokenCheck::Expired,
            }
        } else if same(&seen.previous) {
            match &seen.previous {
                Some(r) if r.is_valid_at(now) => ComponentTokenCheck::Known,
                _ => ComponentTokenCheck::Expired,
            }
        } else {
            ComponentTokenCheck::Unknown
        }
    }

    pub fn component_actor(&self) -> &Addr<TokenActor> {
        &self.component.addr
    }

    pub fn component_status(&self) -> &SharedStatus {
        &self.component.status
    }

    /// The refresh token of an authorized account.
    pub fn refresh_token(&self, appid: &str) -> Option<AccessToken> {
        let map = lock(&self.authorizers);
        let e = map.get(appid)?;
        (e.record.state == AuthorizerState::Authorized)
            .then(|| e.record.refresh_token.clone())
            .flatten()
    }

    /// One authorizer's record, as held now.
    pub fn authorizer(&self, appid: &str) -> Option<AuthorizerRecord> {
        lock(&self.authorizers).get(appid).map(|e| e.record.clone())
    }

    /// One page of the authorizers in `state` (all when `None`), by appid: how many there are
    /// and the records from `offset`, `limit` at most. Only the page's records are copied.
    pub fn authorizer_page(
        &self,
        state: Option<AuthorizerState>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<AuthorizerRecord>) {
        let map = lock(&self.authorizers);
        let mut matching: Vec<&AuthorizerRecord> = map
            .values()
            .map(|e| &e.record)
            .filter(|r| state.is_none_or(|s| r.state == s))
            .collect();
        let total = matching.len();
        let end = offset.saturating_add(limit).min(total);
        if offset >= end {
            return (total, Vec::new());
        }
        // Only the first `end` need to be in order.
        matching.select_nth_unstable_by(end - 1, |a, b| a.appid.cmp(&b.appid));
        let head = &mut matching[..end];
        head.sort_unstable_by(|a, b| a.appid.cmp(&b.appid));
        (total, head[offset..].iter().map(|r| (*r).clone()).collect())
    }

    /// Whether any authorizer is known.
    pub fn has_authorizers(&self) -> bool {
        !lock(&self.authorizers).is_empty()
    }

    /// Authorizers per state, and how many have a running actor (for metrics).
    pub fn authorizer_counts(&self) -> AuthorizerCounts {
        let map = lock(&self.authorizers);
        let mut c = AuthorizerCounts::default();
        for e in map.values() {
            match e.record.state {
                AuthorizerState::Authorized if e.actor.is_some() => c.active += 1,
                AuthorizerState::Authorized => c.idle += 1,
                AuthorizerState::NeedsReauth => c.needs_reauth += 1,
                AuthorizerState::Revoked => c.revoked += 1,
            }
        }
        c
    }

    /// Of `words`, the refresh tokens of this platform's accounts: the gateway finds them by
    /// value in the answers of component calls, under whatever key they stand.
    pub fn refresh_tokens_among(&self, words: &std::collections::HashSet<&str>) -> Vec<String> {
        lock(&self.authorizers)
            .values()
            .filter_map(|e| e.record.refresh_token.as_ref())
            .filter(|t| words.contains(t.expose()))
            .map(|t| t.expose().to_string())
            .collect()
    }

    /// The token actor of an authorizer whose token may be served, started if it has none;
    /// records the request for the `"active"` window.
    pub fn authorizer_actor(&self, appid: &str) -> Result<CredentialHandle, AuthorizerRefusal> {
        {
            let mut map = lock(&self.authorizers);
            let e = map.get_mut(appid).ok_or(AuthorizerRefusal::Unknown)?;
            match e.record.state {
                AuthorizerState::Revoked => return Err(AuthorizerRefusal::Revoked),
                AuthorizerState::NeedsReauth => return Err(AuthorizerRefusal::NeedsReauth),
                AuthorizerState::Authorized if e.record.refresh_token.is_none() => {
                    return Err(AuthorizerRefusal::NoRefreshToken)
                }
                AuthorizerState::Authorized => {}
            }
            e.last_request = Some(SystemTime::now());
            if let Some(h) = &e.actor {
                return Ok(h.clone());
            }
        }
        self.ensure_actor(appid).ok_or(AuthorizerRefusal::Unknown)
    }

    /// [`PlatformShared::authorizer_actor`], reading the store first when the account is unknown
    /// here: another instance of a fleet may have handled its authorization.
    pub async fn authorizer_actor_or_reload(
        &self,
        appid: &str,
    ) -> Result<CredentialHandle, AuthorizerRefusal> {
        match self.authorizer_actor(appid) {
            Err(AuthorizerRefusal::Unknown) if self.reload_authorizer(appid).await => {
                self.authorizer_actor(appid)
            }
            other => other,
        }
    }

    /// Reads an authorizer's record from the store and keeps it if it is newer than the one
    /// held (or none is): another instance of a fleet may have handled its authorization.
    /// Whether a record is held afterwards.
    pub async fn reload_authorizer(&self, appid: &str) -> bool {
        let stored = match self.store.load_authorizer(&self.settings.name, appid).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(platform = %self.settings.name, authorizer = %appid,
                    error = %format!("{e:#}"), "could not read the authorizer's record");
                None
            }
        };
        let mut map = lock(&self.authorizers);
        if let Some(r) = stored {
            match map.get_mut(appid) {
                Some(e) if e.record.updated_at >= r.updated_at => {}
                Some(e) => e.record = r,
                None => {
                    map.insert(
                        appid.to_string(),
                        AuthorizerEntry {
                            record: r,
                            actor: None,
                            tickets: HashMap::new(),
                            last_request: None,
                        },
                    );
                }
            }
        }
        map.contains_key(appid)
    }

    fn authorizer_key(&self, appid: &str) -> AppKey {
        AppKey {
            name: format!("platform:{}/{appid}", self.settings.name),
            appid: format!("authorizer/{}/{appid}", self.settings.component_appid),
        }
    }

    /// Starts the authorizer's actor if it has none (on the calling thread's arbiter).
    fn ensure_actor(self: &PlatformShared, appid: &str) -> Option<CredentialHandle> {
        let me = self.me()?;
        let mut map = lock(&self.authorizers);
        let e = map.get_mut(appid)?;
        if let Some(h) = &e.actor {
            return Some(h.clone());
        }
        let handle = spawn_actor(
            &self.deps,
            &actor_app(
                &authorizer_label(&self.settings.name),
                appid,
                &secrecy::SecretString::from(String::new()),
            ),
            Credential::External(Arc::new(super::authorizer::source(&me, appid))),
            self.authorizer_key(appid),
            authorizer_label(&self.settings.name),
            None,
            Some(TokenOwner::Authorizer {
                platform: self.settings.name.clone(),
                appid: appid.to_string(),
            }),
        );
        e.actor = Some(handle.clone());
        Some(handle)
    }

    /// This platform's `Arc`, for the sources of the actors it starts (which hold it weakly:
    /// the platform holds their actors).
    pub(super) fn me(&self) -> Option<Arc<PlatformShared>> {
        self.me.upgrade()
    }

    /// Stops the actors of an authorizer, its tickets' too (revoked, idle, or to start afresh).
    fn retire_actor(&self, appid: &str) {
        let (actor, tickets) = match lock(&self.authorizers).get_mut(appid) {
            Some(e) => (e.actor.take(), std::mem::take(&mut e.tickets)),
            None => (None, HashMap::new()),
        };
        for t in tickets.into_values() {
            t.addr.do_send(Retire);
        }
        if let Some(h) = actor {
            h.addr.do_send(Retire);
        }
    }

    /// The ticket actor of `kind` of an authorizer whose token may be served, started on first
    /// use: fetched with the authorizer's token, refetched when that token changes.
    pub fn authorizer_ticket(
        &self,
        appid: &str,
        kind: TicketKind,
    ) -> Result<CredentialHandle, AuthorizerRefusal> {
        let token = self.authorizer_actor(appid)?;
        let mut map = lock(&self.authorizers);
        let e = map.get_mut(appid).ok_or(AuthorizerRefusal::Unknown)?;
        if let Some(t) = e.tickets.get(&kind) {
            return Ok(t.clone());
        }
        let key = self.authorizer_key(appid);
        let ticket = spawn_actor(
            &self.deps,
            &actor_app(
                &authorizer_ticket_label(&self.settings.name, kind),
                appid,
                &secrecy::SecretString::from(String::new()),
            ),
            Credential::Ticket {
                kind,
                token: token.status.clone(),
                token_actor: token.addr.clone(),
            },
            AppKey {
                name: format!("{}/ticket/{}", key.name, kind.as_str()),
                appid: format!("{}/ticket/{}", key.appid, kind.as_str()),
            },
            authorizer_ticket_label(&self.settings.name, kind),
            None,
            None,
        );
        token.addr.do_send(crate::token::messages::Subscribe(
            ticket.addr.clone().recipient(),
        ));
        e.tickets.insert(kind, ticket.clone());
        Ok(ticket)
    }

    /// Saves a record (newer `updated_at`) and keeps it in memory.
    async fn put(&self, mut record: AuthorizerRecord) -> anyhow::Result<()> {
        record.updated_at = SystemTime::now();
        self.store
            .save_authorizers(&self.settings.name, std::slice::from_ref(&record))
            .await?;
        let mut map = lock(&self.authorizers);
        match map.get_mut(&record.appid) {
            Some(e) => e.record = record,
            None => {
                map.insert(
                    record.appid.clone(),
                    AuthorizerEntry {
                        record,
                        actor: None,
                        tickets: HashMap::new(),
                        last_request: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// Saves a new refresh token WeChat handed out for an account.
    pub async fn update_refresh_token(&self, appid: &str, token: AccessToken) {
        let Some(mut record) = self.authorizer(appid) else {
            return;
        };
        record.refresh_token = Some(token);
        record.state = AuthorizerState::Authorized;
        record.last_error = None;
        if let Err(e) = self.put(record).await {
            tracing::error!(platform = %self.settings.name, authorizer = %appid,
                error = %format!("{e:#}"), "could not save a new refresh token");
        }
    }

    /// Marks an account as needing re-authorization or revoked, and stops its actor.
    pub async fn set_state(&self, appid: &str, state: AuthorizerState, why: &UpstreamError) {
        let Some(mut record) = self.authorizer(appid) else {
            return;
        };
        if record.state == state {
            return;
        }
        tracing::warn!(platform = %self.settings.name, authorizer = %appid,
            state = state.as_str(), error = %why, "authorizer state changed");
        record.state = state;
        record.last_error = Some(why.to_string());
        if let Err(e) = self.put(record).await {
            tracing::error!(platform = %self.settings.name, authorizer = %appid,
                error = %format!("{e:#}"), "could not save the authorizer's state");
        }
        self.retire_actor(appid);
    }

    /// Saves a pushed ticket (durably, before the push is answered) and lets the component
    /// token actor use it.
    pub async fn store_ticket(&self, ticket: AccessToken) -> anyhow::Result<()> {
        let record = TicketRecord {
            component_appid: self.settings.component_appid.clone(),
            ticket,
            received_at: SystemTime::now(),
        };
        self.store.save_ticket(&self.settings.name, &record).await?;
        let first = self.ticket.load().is_none();
        self.ticket.store(Some(Arc::new(record)));
        if first || self.component_token(SystemTime::now()).is_none() {
            self.component
                .addr
                .do_send(crate::token::messages::TokenChanged { generation: 0 });
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

    /// An account authorized (or changed its grant): its record with the new refresh token,
    /// and the token `api_query_auth` handed out installed in the store with a generation
    /// above the old one's, so no one serves the token the re-authorization killed.
    pub async fn install(&self, auth: Authorization) -> anyhow::Result<()> {
        let appid = auth.authorizer_appid.clone();
        let previous = self.authorizer(&appid);
        let key = self.authorizer_key(&appid);
        let old = self.deps.store.load(&key).await.ok().flatten();
        let generation = old.as_ref().map_or(0, |s| s.record.generation) + 1;
        let quota = old.map(|s| s.quota).unwrap_or_default();
        let stored = stored_from_fetch(&key, auth.token, generation, quota, None);
        if let Err(e) = self.deps.store.save(&key, &stored).await {
            tracing::warn!(platform = %self.settings.name, authorizer = %appid,
                error = %format!("{e:#}"), "could not save the new authorizer token; it is fetched again");
        }
        // Only now, with the new token stored: a request in the meantime would start the next
        // actor from the store, and one started before the save would serve the token the
        // re-authorization killed.
        self.retire_actor(&appid);
        let record = AuthorizerRecord {
            appid: appid.clone(),
            refresh_token: Some(auth.refresh_token),
            func_ids: auth.func_ids,
            state: AuthorizerState::Authorized,
            authorized_at: Some(SystemTime::now()),
            last_error: None,
            updated_at: SystemTime::now(),
        };
        self.put(record).await?;
        tracing::info!(platform = %self.settings.name, authorizer = %appid,
            again = previous.is_some(), "authorizer authorized");
        if self.settings.authorizer_refresh == AuthorizerRefresh::All {
            self.ensure_actor(&appid);
        }
        Ok(())
    }

    /// An account revoked the platform.
    pub async fn revoke(&self, appid: &str) -> anyhow::Result<()> {
        let mut record = match self.authorizer(appid) {
            Some(r) => r,
            None => AuthorizerRecord {
                appid: appid.to_string(),
                refresh_token: None,
                func_ids: Vec::new(),
                state: AuthorizerState::Revoked,
                authorized_at: None,
                last_error: None,
                updated_at: SystemTime::now(),
            },
        };
        record.state = AuthorizerState::Revoked;
        record.last_error = Some("unauthorized by the account".into());
        self.put(record).await?;
        self.retire_actor(appid);
        tracing::info!(platform = %self.settings.name, authorizer = %appid, "authorizer revoked");
        Ok(())
    }

    /// The component token, waiting up to the actor's wait limit for one.
    pub async fn wait_component_token(&self) -> Option<Arc<TokenRecord>> {
        if let Some(t) = self.component_token(SystemTime::now()) {
            return Some(t);
        }
        let wait = self.deps.wait_limit + Duration::from_secs(1);
        match self
            .component
            .addr
            .send(crate::token::messages::Get)
            .timeout(wait)
            .await
        {
            Ok(Ok(t)) => {
                self.note_component_token(&t);
                Some(t)
            }
            _ => None,
        }
    }

    /// Pages through `api_get_authorizer_list`: imports accounts authorized while wxtoken was
    /// away, repairs refresh tokens, revokes accounts no longer listed. Returns the counts.
    pub async fn reconcile(&self) -> Result<Reconciled, UpstreamError> {
        let _one = self.reconciling.lock().await;
        let Some(component) = self.wait_component_token().await else {
            return Err(UpstreamError::NoToken);
        };
        let client = self.upstream.client();
        let mut listed: HashMap<String, (Option<AccessToken>, u64)> = HashMap::new();
        let mut offset = 0u64;
        loop {
            let page = {
                let _slot = client
                    .slot(crate::upstream::Priority::Background, Default::default())
                    .await;
                client
                    .get_authorizer_list(
                        &component.token,
                        &self.settings.component_appid,
                        offset,
                        AUTHORIZER_PAGE_MAX,
                    )
                    .await?
            };
            let got = page.list.len() as u64;
            for a in page.list {
                listed.insert(a.appid, (a.refresh_token, a.auth_time));
            }
            offset = offset.saturating_add(got);
            if got == 0 || offset >= page.total_count {
                break;
            }
        }
        let now = SystemTime::now();
        let mut changed = Vec::new();
        let mut out = Reconciled::default();
        {
            let map = lock(&self.authorizers);
            for (appid, (refresh, auth_time)) in &listed {
                match map.get(appid) {
                    None => {
                        out.imported += 1;
                        changed.push(AuthorizerRecord {
                            appid: appid.clone(),
                            refresh_token: refresh.clone(),
                            func_ids: Vec::new(),
                            state: AuthorizerState::Authorized,
                            // WeChat's number, parsed here: one past the year 9999 is no
                            // time, so the account is kept without one.
                            authorized_at: crate::time::UnixMillis::from_secs(*auth_time)
                                .map(crate::time::UnixMillis::to_system_time),
                            last_error: None,
                            updated_at: now,
                        });
                    }
                    Some(e) => {
                        let new_token = refresh
                            .as_ref()
                            .filter(|r| e.record.refresh_token.as_ref() != Some(r));
                        let revived = e.record.state == AuthorizerState::Revoked
                            || (e.record.state == AuthorizerState::NeedsReauth
                                && new_token.is_some());
                        if new_token.is_some() || revived {
                            out.repaired += 1;
                            let mut r = e.record.clone();
                            if let Some(t) = new_token {
                                r.refresh_token = Some(t.clone());
                            }
                            r.state = AuthorizerState::Authorized;
                            r.last_error = None;
                            r.updated_at = now;
                            changed.push(r);
                        }
                    }
                }
            }
            for (appid, e) in map.iter() {
                if e.record.state != AuthorizerState::Revoked && !listed.contains_key(appid) {
                    out.revoked += 1;
                    let mut r = e.record.clone();
                    r.state = AuthorizerState::Revoked;
                    r.last_error = Some("no longer in the authorizer list".into());
                    r.updated_at = now;
                    changed.push(r);
                }
            }
        }
        if !changed.is_empty() {
            self.store
                .save_authorizers(&self.settings.name, &changed)
                .await
                .map_err(|e| UpstreamError::Decode(format!("cannot save the records: {e:#}")))?;
            let mut retire = Vec::new();
            {
                let mut map = lock(&self.authorizers);
                for r in changed {
                    let appid = r.appid.clone();
                    let revoked = r.state == AuthorizerState::Revoked;
                    let e = map.entry(appid.clone()).or_insert(AuthorizerEntry {
                        record: r.clone(),
                        actor: None,
                        tickets: HashMap::new(),
                        last_request: None,
                    });
                    e.record = r;
                    if revoked {
                        retire.push(appid);
                    }
                }
            }
            for appid in retire {
                self.retire_actor(&appid);
            }
        }
        out.listed = listed.len();
        tracing::info!(platform = %self.settings.name, listed = out.listed, imported = out.imported,
            repaired = out.repaired, revoked = out.revoked, "authorizers reconciled");
        if self.settings.authorizer_refresh == AuthorizerRefresh::All {
            let appids: Vec<String> = lock(&self.authorizers)
                .iter()
                .filter(|(_, e)| e.record.state == AuthorizerState::Authorized && e.actor.is_none())
                .map(|(a, _)| a.clone())
                .collect();
            for appid in appids {
                self.ensure_actor(&appid);
            }
        }
        Ok(out)
    }

    /// `"active"` mode: stops the actors of accounts nobody asked for within the window.
    pub fn sweep(&self, now: SystemTime) -> usize {
        let AuthorizerRefresh::Active { window } = self.settings.authorizer_refresh else {
            return 0;
        };
        let idle: Vec<String> = lock(&self.authorizers)
            .iter()
            .filter(|(_, e)| e.actor.is_some())
            .filter(|(_, e)| {
                e.last_request
                    .is_none_or(|at| now.duration_since(at).unwrap_or_default() > window)
            })
            .map(|(a, _)| a.clone())
            .collect();
        for appid in &idle {
            self.retire_actor(appid);
        }
        idle.len()
    }
}

/// What a reconciliation did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Reconciled {
    pub listed: usize,
    pub imported: usize,
    pub repaired: usize,
    pub revoked: usize,
}

/// Authorizers by state, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuthorizerCounts {
    pub active: usize,
    pub idle: usize,
    pub revoked: usize,
    pub needs_reauth: usize,
}
