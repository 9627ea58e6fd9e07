//! The platform's authorized accounts: their records (always in memory), their token and
//! ticket actors (only for the accounts being served), and the changes of their state.
//!
//! With `authorizer_refresh = "all"` every authorized account has an actor from the start,
//! refreshing ahead of expiry. With `"active"` an account gets one on its first request (the
//! actor's start-up fetch is the one call however many ask), keeps it while it is asked for
//! within `active_window_secs`, and loses it to the sweep after that: its token, still in the
//! store, is served again without a call if it is still valid on the next request.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::accounts::{Account, AccountCounts, Refusal};
use super::authorizer_source::AuthorizerSource;
use super::runtime::Platform;
use crate::config::labels::{authorizer_label, authorizer_ticket_label};
use crate::config::{AuthorizerRefresh, TicketKind};
use crate::secret::AccessToken;
use crate::store::platform::{AuthorizerRecord, AuthorizerState};
use crate::store::{stored_from_fetch, AppKey};
use crate::token::index::TokenOwner;
use crate::token::messages::Retire;
use crate::token::{spawn_sourced, spawn_ticket, CredentialHandle, TokenRecord, Unavailable};
use crate::upstream::{Authorization, UpstreamError};

impl Account for AuthorizerRecord {
    fn id(&self) -> &str {
        &self.appid
    }

    fn state(&self) -> AuthorizerState {
        self.state
    }

    fn holds_secret(&self) -> bool {
        self.refresh_token.is_some()
    }

    fn updated_at(&self) -> SystemTime {
        self.updated_at
    }
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

impl From<Refusal> for AuthorizerRefusal {
    fn from(r: Refusal) -> AuthorizerRefusal {
        match r {
            Refusal::Unknown => AuthorizerRefusal::Unknown,
            Refusal::Revoked => AuthorizerRefusal::Revoked,
            Refusal::NeedsReauth => AuthorizerRefusal::NeedsReauth,
            Refusal::NoSecret => AuthorizerRefusal::NoRefreshToken,
        }
    }
}

/// Why an authorizer's token could not be had.
#[derive(Debug)]
pub enum AuthorizerUnavailable {
    /// It may not be served (unknown, revoked, in need of a new authorization).
    Refused(AuthorizerRefusal),
    /// It may, but no valid token could be had in time.
    Unavailable(Unavailable),
}

/// Authorizers by state, for the metrics.
pub type AuthorizerCounts = AccountCounts;

/// Reads of the records.
impl Platform {
    /// The refresh token of an authorized account.
    pub(super) fn refresh_token(&self, appid: &str) -> Option<AccessToken> {
        self.authorizers
            .of_authorized(appid, |r| r.refresh_token.clone())
    }

    /// One authorizer's record, as held now.
    pub fn authorizer(&self, appid: &str) -> Option<AuthorizerRecord> {
        self.authorizers.get(appid)
    }

    /// One page of the authorizers in `state` (all when `None`), by appid: how many there are
    /// and the records from `offset`, `limit` at most. Only the page's records are copied.
    pub fn authorizer_page(
        &self,
        state: Option<AuthorizerState>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<AuthorizerRecord>) {
        self.authorizers.page(state, offset, limit)
    }

    /// Whether any authorizer is known.
    pub fn has_authorizers(&self) -> bool {
        !self.authorizers.is_empty()
    }

    /// Authorizers per state, and how many have a running actor (for metrics).
    pub fn authorizer_counts(&self) -> AuthorizerCounts {
        self.authorizers.counts()
    }

    /// Of `words`, the refresh tokens of this platform's accounts: the gateway finds them by
    /// value in the answers of component calls, under whatever key they stand.
    pub fn refresh_tokens_among(&self, words: &HashSet<&str>) -> Vec<String> {
        self.authorizers.with_records(|records| {
            records
                .filter_map(|r| r.refresh_token.as_ref())
                .filter(|t| words.contains(t.expose()))
                .map(|t| t.expose().to_string())
                .collect()
        })
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
        self.authorizers.keep_if_newer(appid, stored)
    }
}

/// Their actors.
impl Platform {
    /// The token actor of an authorizer whose token may be served, started if it has none;
    /// records the request for the `"active"` window.
    pub fn authorizer_actor(&self, appid: &str) -> Result<CredentialHandle, AuthorizerRefusal> {
        let me = self.me();
        self.authorizers
            .actor(appid, || Some(self.start_actor(&me?, appid)))
            .map_err(AuthorizerRefusal::from)
    }

    /// [`Platform::authorizer_actor`], reading the store first when the account is unknown
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

    /// An authorizer's current token, as [`CredentialHandle::current`] reads it, for an account
    /// that may be served (looked up in the store first if unknown here). A fetch that finds
    /// the account gone or in need of a new authorization is answered with that refusal.
    pub async fn authorizer_token(
        &self,
        appid: &str,
        wait: Duration,
    ) -> Result<Arc<TokenRecord>, AuthorizerUnavailable> {
        let handle = self
            .authorizer_actor_or_reload(appid)
            .await
            .map_err(AuthorizerUnavailable::Refused)?;
        match handle.current(wait).await {
            Ok(rec) => Ok(rec),
            Err(u @ Unavailable::NoToken(_)) => Err(match self.authorizer_actor(appid) {
                Err(r) => AuthorizerUnavailable::Refused(r),
                Ok(_) => AuthorizerUnavailable::Unavailable(u),
            }),
            Err(u) => Err(AuthorizerUnavailable::Unavailable(u)),
        }
    }

    fn authorizer_key(&self, appid: &str) -> AppKey {
        AppKey {
            name: format!("platform:{}/{appid}", self.settings.name),
            appid: format!("authorizer/{}/{appid}", self.settings.component_appid),
        }
    }

    /// Starts an authorizer's token actor (on the calling thread's arbiter).
    fn start_actor(&self, me: &Arc<Platform>, appid: &str) -> CredentialHandle {
        spawn_sourced(
            &self.deps,
            appid,
            Arc::new(AuthorizerSource::new(me, appid)),
            self.authorizer_key(appid),
            authorizer_label(&self.settings.name),
            Some(TokenOwner::Authorizer {
                platform: self.settings.name.clone(),
                appid: appid.to_string(),
            }),
        )
    }

    /// Starts the authorizer's actor if it has none.
    fn ensure_actor(&self, appid: &str) {
        if let Some(me) = self.me() {
            self.authorizers
                .ensure_actor(appid, || self.start_actor(&me, appid));
        }
    }

    /// `"all"` mode: starts the actor of every authorized account that has none.
    pub(super) fn keep_authorized_fresh(&self) {
        if self.settings.authorizer_refresh != AuthorizerRefresh::All {
            return;
        }
        let appids = self.authorizers.authorized_without_actor();
        for appid in appids {
            self.ensure_actor(&appid);
        }
    }

    /// Stops the actors of an authorizer, its tickets' too (revoked, idle, or to start afresh).
    pub(super) fn retire_actor(&self, appid: &str) {
        for h in self.authorizers.take_actors(appid) {
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
        let key = self.authorizer_key(appid);
        let label = authorizer_ticket_label(&self.settings.name, kind);
        let start = || spawn_ticket(&self.deps, appid, &token, &key, kind, label);
        self.authorizers
            .ticket(appid, kind, start)
            .ok_or(AuthorizerRefusal::Unknown)
    }

    /// `"active"` mode: stops the actors of accounts nobody asked for within the window.
    pub(super) fn sweep(&self, now: SystemTime) -> usize {
        let AuthorizerRefresh::Active { window } = self.settings.authorizer_refresh else {
            return 0;
        };
        let idle = self.authorizers.idle(window, now);
        for appid in &idle {
            self.retire_actor(appid);
        }
        idle.len()
    }
}

/// Changes of their state.
impl Platform {
    /// Saves a record (newer `updated_at`) and keeps it in memory.
    async fn put(&self, mut record: AuthorizerRecord) -> anyhow::Result<()> {
        record.updated_at = SystemTime::now();
        self.store
            .save_authorizers(&self.settings.name, std::slice::from_ref(&record))
            .await?;
        self.authorizers.keep(record);
        Ok(())
    }

    /// Keeps records saved together (a reconciliation's) in memory, and stops the actors of
    /// the accounts among them that are revoked now.
    pub(super) fn keep_saved(&self, records: Vec<AuthorizerRecord>) {
        let mut retire = Vec::new();
        for r in records {
            if r.state == AuthorizerState::Revoked {
                retire.push(r.appid.clone());
            }
            self.authorizers.keep(r);
        }
        for appid in retire {
            self.retire_actor(&appid);
        }
    }

    /// Saves a new refresh token WeChat handed out for an account.
    pub(super) async fn update_refresh_token(&self, appid: &str, token: AccessToken) {
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
    pub(super) async fn set_state(&self, appid: &str, state: AuthorizerState, why: &UpstreamError) {
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

    /// An account authorized (or changed its grant): its record with the new refresh token,
    /// and the token `api_query_auth` handed out installed in the store with a generation
    /// above the old one's, so no one serves the token the re-authorization killed.
    pub(super) async fn install(&self, auth: Authorization) -> anyhow::Result<()> {
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
        let record = AuthorizerRecord::authorized(
            appid.clone(),
            Some(auth.refresh_token),
            auth.func_ids,
            Some(SystemTime::now()),
            SystemTime::now(),
        );
        self.put(record).await?;
        tracing::info!(platform = %self.settings.name, authorizer = %appid,
            again = previous.is_some(), "authorizer authorized");
        if self.settings.authorizer_refresh == AuthorizerRefresh::All {
            self.ensure_actor(&appid);
        }
        Ok(())
    }

    /// An account revoked the platform.
    pub(super) async fn revoke(&self, appid: &str) -> anyhow::Result<()> {
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
}
