//! The corps that installed a suite: their records (always in memory), their token actors (only
//! for the corps being served), and the changes of their state. As for a platform's
//! authorizers: with `corp_refresh = "all"` every installed corp has an actor from the start;
//! with `"active"` a corp gets one on its first request (the actor's first fetch is the one
//! call however many ask) and loses it to the sweep once nobody asked within the window.
//!
//! A corp's permanent code never leaves this room but for its own fetch: the records are read
//! by clients as views without it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::corp_source::CorpSource;
use super::runtime::Suite;
use crate::config::labels::{wecom_corp_ticket_label, wecom_corps_label};
use crate::config::{AuthorizerRefresh, TicketKind};
use crate::platform::{Account, Refusal};
use crate::store::wecom::{CorpRecord, CorpState};
use crate::store::AppKey;
use crate::token::messages::Retire;
use crate::token::{spawn_sourced, spawn_ticket, CredentialHandle, TokenRecord, Unavailable};
use crate::upstream::{Priority, Promotion, SuiteInstall};

impl Account for CorpRecord {
    fn id(&self) -> &str {
        &self.corpid
    }

    fn state(&self) -> CorpState {
        self.state
    }

    fn holds_secret(&self) -> bool {
        self.permanent_code.is_some()
    }

    fn updated_at(&self) -> SystemTime {
        self.updated_at
    }
}

/// Why a corp's token cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum CorpRefusal {
    Unknown,
    /// It uninstalled the suite (`cancel_auth`): 410.
    Revoked,
    /// WeCom refused its permanent code (40084): only a new install helps. 409.
    NeedsReauth,
}

impl From<Refusal> for CorpRefusal {
    fn from(r: Refusal) -> CorpRefusal {
        match r {
            Refusal::Unknown => CorpRefusal::Unknown,
            Refusal::Revoked => CorpRefusal::Revoked,
            // A corp without its permanent code can only install again.
            Refusal::NeedsReauth | Refusal::NoSecret => CorpRefusal::NeedsReauth,
        }
    }
}

/// Why a corp's token could not be had.
#[derive(Debug)]
pub enum CorpUnavailable {
    Refused(CorpRefusal),
    Unavailable(Unavailable),
}

/// Reads of the records.
impl Suite {
    /// One corp's record, as held now (with its permanent code: for this crate's callers).
    pub fn corp(&self, corpid: &str) -> Option<CorpRecord> {
        self.corps.get(corpid)
    }

    /// The permanent code of an installed corp.
    pub(super) fn permanent_code(&self, corpid: &str) -> Option<crate::secret::AccessToken> {
        self.corps
            .of_authorized(corpid, |r| r.permanent_code.clone())
    }

    /// Corps per state, and how many have a running actor (for metrics).
    pub fn corp_counts(&self) -> crate::platform::AccountCounts {
        self.corps.counts()
    }

    /// One page of the corps in `state` (all when `None`), by corpid: how many and the records
    /// from `offset`, `limit` at most.
    pub fn corp_page(
        &self,
        state: Option<CorpState>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<CorpRecord>) {
        self.corps.page(state, offset, limit)
    }

    /// Reads a corp's record from the store and keeps it if it is newer than the one held:
    /// another instance may have handled its install. Whether a record is held afterwards.
    pub async fn reload_corp(&self, corpid: &str) -> bool {
        let stored = match self.store.load_corp(corpid).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(suite = %self.name(), corp = %corpid, error = %format!("{e:#}"),
                    "could not read the corp's record");
                None
            }
        };
        self.corps.keep_if_newer(corpid, stored)
    }
}

/// Their actors.
impl Suite {
    /// The token actor of a corp whose token may be served, started if it has none; records
    /// the request for the `"active"` window.
    pub fn corp_actor(&self, corpid: &str) -> Result<CredentialHandle, CorpRefusal> {
        let me = self.me();
        self.corps
            .actor(corpid, || Some(self.start_actor(&me?, corpid)))
            .map_err(CorpRefusal::from)
    }

    /// [`Suite::corp_actor`], reading the store first when the corp is unknown here.
    pub async fn corp_actor_or_reload(
        &self,
        corpid: &str,
    ) -> Result<CredentialHandle, CorpRefusal> {
        match self.corp_actor(corpid) {
            Err(CorpRefusal::Unknown) if self.reload_corp(corpid).await => self.corp_actor(corpid),
            other => other,
        }
    }

    /// A corp's current token; a fetch that finds the corp revoked or its code refused is
    /// answered with that refusal.
    pub async fn corp_token(
        &self,
        corpid: &str,
        wait: Duration,
    ) -> Result<Arc<TokenRecord>, CorpUnavailable> {
        let handle = self
            .corp_actor_or_reload(corpid)
            .await
            .map_err(CorpUnavailable::Refused)?;
        match handle.current(wait).await {
            Ok(rec) => Ok(rec),
            Err(u @ Unavailable::NoToken(_)) => Err(match self.corp_actor(corpid) {
                Err(r) => CorpUnavailable::Refused(r),
                Ok(_) => CorpUnavailable::Unavailable(u),
            }),
            Err(u) => Err(CorpUnavailable::Unavailable(u)),
        }
    }

    fn corp_key(&self, corpid: &str) -> AppKey {
        AppKey {
            name: format!("wecom:{}/{corpid}", self.name()),
            appid: format!("wecom-corp/{}/{corpid}", self.settings.suite_id),
        }
    }

    fn start_actor(&self, me: &Arc<Suite>, corpid: &str) -> CredentialHandle {
        spawn_sourced(
            &self.deps,
            corpid,
            Arc::new(CorpSource::new(me, corpid)),
            self.corp_key(corpid),
            wecom_corps_label(self.name()),
            Some(crate::token::index::TokenOwner::WecomCorp {
                suite: self.name().to_string(),
                corpid: corpid.to_string(),
            }),
        )
    }

    fn ensure_actor(&self, corpid: &str) {
        if let Some(me) = self.me() {
            self.corps
                .ensure_actor(corpid, || self.start_actor(&me, corpid));
        }
    }

    /// `"all"`: starts the actor of every installed corp that has none.
    pub(super) fn keep_installed_fresh(&self) {
        if self.settings.corp_refresh != AuthorizerRefresh::All {
            return;
        }
        let corpids = self.corps.authorized_without_actor();
        for corpid in corpids {
            self.ensure_actor(&corpid);
        }
    }

    /// The ticket actor of `kind` (`CorpJsapi`, `AgentJsapi`) of a corp whose token may be
    /// served, started on first use: fetched with the corp's token, refetched when it changes,
    /// stopped with it.
    pub fn corp_ticket(
        &self,
        corpid: &str,
        kind: TicketKind,
    ) -> Result<CredentialHandle, CorpRefusal> {
        let token = self.corp_actor(corpid)?;
        let key = self.corp_key(corpid);
        let label = wecom_corp_ticket_label(self.name(), kind);
        let start = || spawn_ticket(&self.deps, corpid, &token, &key, kind, label);
        self.corps
            .ticket(corpid, kind, start)
            .ok_or(CorpRefusal::Unknown)
    }

    /// Stops a corp's actor (revoked, refused, idle, or to start afresh).
    fn retire_actor(&self, corpid: &str) {
        for h in self.corps.take_actors(corpid) {
            h.addr.do_send(Retire);
        }
    }

    /// `"active"`: stops the actors of corps nobody asked for within the window.
    pub(super) fn sweep(&self, now: SystemTime) -> usize {
        let AuthorizerRefresh::Active { window } = self.settings.corp_refresh else {
            return 0;
        };
        let idle = self.corps.idle(window, now);
        for corpid in &idle {
            self.retire_actor(corpid);
        }
        idle.len()
    }

    /// Whether any corp has a running token actor (for tests of the sweep and of revocation).
    pub fn corp_has_actor(&self, corpid: &str) -> bool {
        self.corps.has_actor(corpid)
    }
}

/// Changes of their state.
impl Suite {
    /// Saves a record (newer `updated_at`) and keeps it in memory. It is kept even when the
    /// save fails: the store keeps the record and retries it (readiness says so meanwhile), and
    /// a permanent code WeCom hands out once must not be dropped here; the error still goes
    /// back, so the push it came with is answered 503. A newer record another instance stored
    /// wins: it is read back instead.
    async fn put(&self, mut record: CorpRecord) -> anyhow::Result<()> {
        record.updated_at = SystemTime::now();
        let saved = self.store.save_corp(record.clone()).await;
        if matches!(saved, Ok(false)) {
            self.reload_corp(&record.corpid).await;
            return Ok(());
        }
        self.corps.keep(record);
        saved.map(|_| ())
    }

    /// A corp installed the suite, or its permanent code was reset: the new code stored, its
    /// actor restarted so the next fetch uses it.
    pub(super) async fn install(&self, install: SuiteInstall) -> anyhow::Result<()> {
        let corpid = install.corpid.clone();
        let again = self.corp(&corpid).is_some();
        let now = SystemTime::now();
        self.put(CorpRecord {
            corpid: corpid.clone(),
            permanent_code: Some(install.permanent_code),
            agent_ids: install.agent_ids,
            state: CorpState::Authorized,
            authorized_at: Some(now),
            last_error: None,
            updated_at: now,
        })
        .await?;
        self.retire_actor(&corpid);
        tracing::info!(suite = %self.name(), corp = %corpid, again, "corp installed");
        if self.settings.corp_refresh == AuthorizerRefresh::All {
            self.ensure_actor(&corpid);
        }
        Ok(())
    }

    /// A corp uninstalled (`cancel_auth`): revoked, its token never served again.
    pub(super) async fn revoke(&self, corpid: &str) -> anyhow::Result<()> {
        let mut record = self.corp(corpid).unwrap_or(CorpRecord {
            corpid: corpid.to_string(),
            permanent_code: None,
            agent_ids: Vec::new(),
            state: CorpState::Revoked,
            authorized_at: None,
            last_error: None,
            updated_at: SystemTime::now(),
        });
        record.state = CorpState::Revoked;
        record.last_error = Some("the corp cancelled the install".into());
        self.put(record).await?;
        self.retire_actor(corpid);
        tracing::info!(suite = %self.name(), corp = %corpid, "corp revoked");
        Ok(())
    }

    /// WeCom refused the corp's permanent code (40084): it needs a new install; no retry loop.
    pub(super) async fn needs_reauth(&self, corpid: &str, why: &str) {
        let Some(mut record) = self.corp(corpid) else {
            return;
        };
        if record.state != CorpState::Authorized {
            return;
        }
        tracing::warn!(suite = %self.name(), corp = %corpid, error = %why,
            "permanent code refused; the corp must install again");
        record.state = CorpState::NeedsReauth;
        record.last_error = Some(why.to_string());
        if let Err(e) = self.put(record).await {
            tracing::error!(suite = %self.name(), corp = %corpid, error = %format!("{e:#}"),
                "could not save the corp's state");
        }
        self.retire_actor(corpid);
    }

    /// `change_auth`: the corp's grant read again (`get_auth_info`) in the background.
    pub(super) fn refresh_auth_info(&self, corpid: &str) {
        let (Some(me), Some(code)) = (self.me(), self.permanent_code(corpid)) else {
            return;
        };
        let corpid = corpid.to_string();
        actix::spawn(async move {
            let answer = me
                .with_suite_token(Priority::Background, Promotion::default(), |c, t| {
                    let (corpid, code) = (corpid.clone(), code.clone());
                    async move { c.get_auth_info(&t, &corpid, &code).await }
                })
                .await;
            match answer {
                Ok(agent_ids) => {
                    if let Some(mut r) = me.corp(&corpid) {
                        r.agent_ids = agent_ids;
                        if let Err(e) = me.put(r).await {
                            tracing::warn!(suite = %me.name(), corp = %corpid,
                                error = %format!("{e:#}"), "could not save the corp's grant");
                        }
                    }
                }
                Err(e) => me.code_refused(&corpid, &e).await,
            }
        });
    }
}
