//! A WeCom service provider's token: `get_provider_token` with its corpid and secret, kept
//! fresh by one actor. WeCom hands out the same token while it lives, so it is scheduled as a
//! WeCom app's.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;

use crate::config::WecomProviderSettings;
use crate::platform::Upstream;
use crate::store::AppKey;
use crate::token::external::ExternalSource;
use crate::token::{spawn_sourced, ActorDeps, CredentialHandle, TokenRecord, Unavailable};
use crate::upstream::{Fetched, Priority, ProbeKind, Promotion, UpstreamError, WechatClient};

type Fetch = Result<Fetched, UpstreamError>;

/// One provider, running.
pub struct Provider {
    settings: Arc<WecomProviderSettings>,
    token: CredentialHandle,
}

struct ProviderSource {
    settings: Arc<WecomProviderSettings>,
    upstream: Upstream,
}

impl ExternalSource for ProviderSource {
    fn endpoint(&self) -> &'static str {
        "provider_token"
    }

    fn ready(&self, _now: std::time::SystemTime) -> bool {
        true
    }

    fn fetch(&self, p: Priority, q: Promotion) -> LocalBoxFuture<'static, Fetch> {
        let (settings, upstream) = (self.settings.clone(), self.upstream.clone());
        let call = |c: Rc<WechatClient>| async move {
            c.fetch_provider_token(&settings.corpid, &settings.provider_secret)
                .await
        };
        Box::pin(async move { upstream.in_slot(p, q, call).await })
    }

    fn probe_kind(&self) -> Option<ProbeKind> {
        None
    }

    fn same_until_expiry(&self) -> bool {
        true
    }
}

impl Provider {
    /// Starts the provider token's actor (inside an actix System).
    pub fn start(settings: &WecomProviderSettings, deps: &ActorDeps) -> Arc<Provider> {
        let settings = Arc::new(settings.clone());
        let label = settings.metrics_label();
        let source = ProviderSource {
            settings: settings.clone(),
            upstream: Upstream::new(deps),
        };
        let key = AppKey {
            name: label.clone(),
            appid: format!("wecom-provider/{}", settings.corpid),
        };
        let owner = crate::token::index::TokenOwner::WecomProvider(settings.name.clone());
        let token = spawn_sourced(
            deps,
            &settings.corpid,
            Arc::new(source),
            key,
            label,
            Some(owner),
        );
        Arc::new(Provider { settings, token })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn label(&self) -> String {
        self.settings.metrics_label()
    }

    /// The provider's corpid, by which the facade's `get_provider_token` names it.
    pub fn corpid(&self) -> &str {
        &self.settings.corpid
    }

    /// Its token's actor, for the gateway's calls made with the provider token.
    pub fn credential(&self) -> CredentialHandle {
        self.token.clone()
    }

    /// The provider token, from the published status or the actor (waiting up to `wait`).
    pub async fn token(&self, wait: Duration) -> Result<Arc<TokenRecord>, Unavailable> {
        self.token.current(wait).await
    }

    /// What its token actor last published (for metrics).
    pub fn status(&self) -> &crate::token::SharedStatus {
        &self.token.status
    }

    /// Its readiness line: `ok`, or why no token is held.
    pub fn readiness(&self, now: std::time::SystemTime) -> String {
        let status = self.token.status.load();
        match (status.valid_token(now), &status.last_failure) {
            (Some(_), _) => "ok".into(),
            (None, Some(f)) => {
                format!("no valid provider token: last fetch failed ({})", f.message)
            }
            (None, None) => "no valid provider token yet: first fetch in progress".into(),
        }
    }
}
