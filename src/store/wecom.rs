//! WeCom suites' durable records, kept as the Open Platform's are: a suite is a platform to the
//! store. [`WecomStore`] is a typed view of a [`PlatformStore`] under the suite's namespace
//! (`wecom.{suite}`, a name no configured platform may have), so both stores, their sealing
//! at rest, the Redis store's local copy and its write-back after a flush, the readiness of
//! unsaved records and `wxtoken rekey`'s record kinds serve suites with no code of their own.
//!
//! The mapping, record for record:
//! - the suite ticket is the platform's verify ticket ([`TicketRecord`], the suite id as its
//!   appid);
//! - an installed corp is an authorizer ([`AuthorizerRecord`]): the corpid as its appid, the
//!   permanent code sealed where a refresh token is (bound to the suite's record and the corp),
//!   the agent ids as its granted ids, the same three states;
//! - an AuthCode of `create_auth` or `reset_permanent_code` is a pushed authorization code
//!   ([`CodeRecord`]): stored pending before the push is answered, keyed by its SHA-256, the
//!   code dropped once done. Its corp is known only from the exchange's answer, so a pending
//!   record names the suite id in its place.
//! - other events are stored as the platform's are.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::platform::{
    AuthorizerRecord, AuthorizerState, CodeRecord, EventRecord, PlatformStore, TicketRecord,
};
use crate::secret::AccessToken;

/// Where an installed corp stands: the platform's authorizer states.
pub type CorpState = AuthorizerState;

/// One corp that installed a suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpRecord {
    pub corpid: String,
    /// The permanent code: data, not cache (lost, the corp must install again). `None` only
    /// for a corp known from a `cancel_auth` alone.
    pub permanent_code: Option<AccessToken>,
    /// The suite's agent ids in the corp, sorted.
    pub agent_ids: Vec<u32>,
    pub state: CorpState,
    /// When its permanent code was last exchanged.
    pub authorized_at: Option<SystemTime>,
    /// Why its state last changed (no secret in it).
    pub last_error: Option<String>,
    /// The write order: an older record never replaces a newer one.
    pub updated_at: SystemTime,
}

impl From<AuthorizerRecord> for CorpRecord {
    fn from(r: AuthorizerRecord) -> CorpRecord {
        CorpRecord {
            corpid: r.appid,
            permanent_code: r.refresh_token,
            agent_ids: r.func_ids,
            state: r.state,
            authorized_at: r.authorized_at,
            last_error: r.last_error,
            updated_at: r.updated_at,
        }
    }
}

impl From<CorpRecord> for AuthorizerRecord {
    fn from(r: CorpRecord) -> AuthorizerRecord {
        AuthorizerRecord {
            appid: r.corpid,
            refresh_token: r.permanent_code,
            func_ids: r.agent_ids,
            state: r.state,
            authorized_at: r.authorized_at,
            last_error: r.last_error,
            updated_at: r.updated_at,
        }
    }
}

/// A suite's view of the platform store.
#[derive(Clone)]
pub struct WecomStore {
    store: Arc<dyn PlatformStore>,
    /// The suite's namespace among the platforms (`wecom.crm-suite`).
    namespace: String,
    suite_id: String,
}

impl WecomStore {
    pub fn new(store: Arc<dyn PlatformStore>, namespace: String, suite_id: &str) -> WecomStore {
        WecomStore {
            store,
            namespace,
            suite_id: suite_id.to_string(),
        }
    }

    /// The namespace, as the store's keys and unsaved-record names start with it.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The suite's last ticket and when it arrived.
    pub async fn load_ticket(&self) -> anyhow::Result<Option<(AccessToken, SystemTime)>> {
        let t = self.store.load_ticket(&self.namespace).await?;
        Ok(t.map(|t| (t.ticket, t.received_at)))
    }

    /// Saves a pushed ticket durably (before the push is answered).
    pub async fn save_ticket(
        &self,
        ticket: AccessToken,
        received_at: SystemTime,
    ) -> anyhow::Result<()> {
        let record = TicketRecord {
            component_appid: self.suite_id.clone(),
            ticket,
            received_at,
        };
        self.store.save_ticket(&self.namespace, &record).await
    }

    pub async fn load_corps(&self) -> anyhow::Result<Vec<CorpRecord>> {
        let records = self.store.load_authorizers(&self.namespace).await?;
        Ok(records.into_iter().map(CorpRecord::from).collect())
    }

    pub async fn load_corp(&self, corpid: &str) -> anyhow::Result<Option<CorpRecord>> {
        let r = self.store.load_authorizer(&self.namespace, corpid).await?;
        Ok(r.map(CorpRecord::from))
    }

    /// Saves a corp durably unless a newer record is stored; whether it was written.
    pub async fn save_corp(&self, record: CorpRecord) -> anyhow::Result<bool> {
        let written = self
            .store
            .save_authorizers(&self.namespace, &[record.into()])
            .await?;
        Ok(written.first().copied().unwrap_or(false))
    }

    /// Stores an AuthCode as pending (before its push is answered).
    pub async fn save_pending_code(
        &self,
        code: &AccessToken,
        received_at: SystemTime,
        life: Duration,
    ) -> anyhow::Result<CodeRecord> {
        let record = CodeRecord {
            digest: super::platform::code_digest(code.expose()),
            authorizer_appid: self.suite_id.clone(),
            code: Some(code.clone()),
            state: super::platform::CodeState::Pending,
            errcode: None,
            expires_at: received_at + life,
            received_at,
            updated_at: received_at,
        };
        self.store.save_code(&self.namespace, &record).await?;
        Ok(record)
    }

    /// The underlying platform store and namespace, for the shared code-exchange machinery.
    pub fn codes(&self) -> (&Arc<dyn PlatformStore>, &str) {
        (&self.store, &self.namespace)
    }

    pub async fn save_event(&self, info_type: &str, xml: &str) -> anyhow::Result<()> {
        let record = EventRecord {
            info_type: info_type.to_string(),
            received_at: SystemTime::now(),
            xml: xml.to_string(),
        };
        self.store.save_event(&self.namespace, &record).await
    }

    /// How many of the suite's records the store could not save yet (readiness).
    pub fn not_durable(&self) -> usize {
        let prefix = format!("{}/", self.namespace);
        self.store
            .not_durable_records()
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, MetricsMode};
    use crate::seal::{Keyring, StoreKey, KEY_LEN};
    use crate::store::EmbeddedStore;

    const CODE: &str = "permanent-code-0123456789abcdefghijklmnopqrstuvwxyz";

    fn corp(updated: u64) -> CorpRecord {
        CorpRecord {
            corpid: "wwcorp0001".into(),
            permanent_code: Some(AccessToken::new(CODE)),
            agent_ids: vec![1000002],
            state: CorpState::Authorized,
            authorized_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(updated)),
            last_error: None,
            updated_at: SystemTime::UNIX_EPOCH + Duration::from_secs(updated),
        }
    }

    fn open(dir: &tempfile::TempDir) -> Arc<dyn PlatformStore> {
        open_with(
            dir,
            Keyring::new(Some(StoreKey::from_bytes(&[7; KEY_LEN])), vec![], false),
        )
    }

    fn open_with(dir: &tempfile::TempDir, ring: Keyring) -> Arc<dyn PlatformStore> {
        let metrics = Metrics::new(&[], MetricsMode::Full);
        Arc::new(
            EmbeddedStore::open_with_keys(&dir.path().join("w.redb"), metrics, Arc::new(ring))
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn ticket_corps_and_codes_survive_a_reopen_with_the_permanent_code_sealed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let w = WecomStore::new(open(&dir), "wecom.crm".into(), "wwsuite");
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            w.save_ticket(AccessToken::new("suite-ticket-000000000001"), at)
                .await
                .unwrap();
            assert!(w.save_corp(corp(10)).await.unwrap());
            assert!(
                !w.save_corp(corp(5)).await.unwrap(),
                "an older record is dropped"
            );
            let code = AccessToken::new("auth-code-000000000000000001");
            w.save_pending_code(&code, at, Duration::from_secs(600))
                .await
                .unwrap();
        }
        let raw = std::fs::read(dir.path().join("w.redb")).unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(!raw.contains(CODE), "the permanent code is sealed at rest");
        assert!(!raw.contains("suite-ticket-000000000001"));
        let w = WecomStore::new(open(&dir), "wecom.crm".into(), "wwsuite");
        let (ticket, _) = w.load_ticket().await.unwrap().unwrap();
        assert_eq!(ticket.expose(), "suite-ticket-000000000001");
        assert_eq!(w.load_corps().await.unwrap(), vec![corp(10)]);
        let (store, ns) = w.codes();
        let codes = store.load_codes(ns).await.unwrap();
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].authorizer_appid, "wwsuite");
        // Another suite's namespace sees none of it.
        let other = WecomStore::new(store.clone(), "wecom.other".into(), "wwx");
        assert!(other.load_corps().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn rekey_reseals_a_suites_permanent_codes_as_it_does_refresh_tokens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let w = WecomStore::new(open(&dir), "wecom.crm".into(), "wwsuite");
            assert!(w.save_corp(corp(10)).await.unwrap());
        }
        let old = StoreKey::from_bytes(&[7; KEY_LEN]);
        let new = || StoreKey::from_bytes(&[9; KEY_LEN]);
        let ring = Keyring::new(Some(new()), vec![old], false);
        crate::store::embedded::rekey_file(&dir.path().join("w.redb"), &ring).unwrap();
        let w = WecomStore::new(
            open_with(&dir, Keyring::new(Some(new()), vec![], false)),
            "wecom.crm".into(),
            "wwsuite",
        );
        assert_eq!(w.load_corps().await.unwrap(), vec![corp(10)]);
    }
}
