//! Starting a supervised token actor: what every actor shares ([`ActorDeps`]) and the one
//! function that starts one and subscribes it to its store record.

use std::sync::Arc;
use std::time::Duration;

use actix::Supervisor;

use super::actor::{ActorConfig, Credential};
use super::handle::CredentialHandle;
use super::index::{TokenIndex, TokenOwner};
use super::messages::StoreChanged;
use super::spec::CredentialSpec;
use super::{AppStatus, SharedClock, SharedStatus, TokenActor};
use crate::config::{RefreshSettings, UpstreamSettings};
use crate::metrics::Metrics;
use crate::store::{AppKey, Stored, TokenStore};
use crate::upstream::WechatClient;

/// What every actor shares.
#[derive(Clone)]
pub struct ActorDeps {
    pub refresh: RefreshSettings,
    pub upstream: UpstreamSettings,
    pub tls: Arc<rustls::ClientConfig>,
    /// The server's one upstream pool: every call to WeChat's token endpoints waits in it.
    pub pool: Arc<crate::upstream::UpstreamPool>,
    pub store: Arc<dyn TokenStore>,
    pub metrics: Metrics,
    pub wait_limit: Duration,
    pub poll_interval: Duration,
    pub clock: SharedClock,
    /// How many credentials are being started together (see `ActorConfig::cohort`).
    pub cohort: usize,
    /// Every access token by owner, for the gateway.
    pub tokens: Arc<TokenIndex>,
}

/// Starts the actor of one credential on the current arbiter (must run inside an actix
/// System): `label` names its metrics and logs, `key` its store record; `preloaded` is the
/// record read for it in advance, if any; `owner` indexes its tokens for the gateway.
pub fn spawn_actor(
    deps: &ActorDeps,
    spec: &Arc<CredentialSpec>,
    credential: Credential,
    key: AppKey,
    label: String,
    preloaded: Option<Option<Stored>>,
    owner: Option<TokenOwner>,
) -> CredentialHandle {
    // Counters start at 0; the gauges follow from the published status at every scrape.
    deps.metrics.init_app(&label);
    let status: SharedStatus = Arc::new(arc_swap::ArcSwap::from_pointee(AppStatus::default()));
    let cfg_status = status.clone();
    let deps_owned = deps.clone();
    let spec_owned = spec.clone();
    let store_key = key.clone();
    let index = owner.map(|o| deps.tokens.slot(o));
    // The factory runs on the actor's own thread: awc clients are not `Send`.
    let addr = Supervisor::start(move |_| {
        TokenActor::new(ActorConfig {
            fetcher: WechatClient::shared(&deps_owned.upstream, &deps_owned.tls, &deps_owned.pool),
            clock: deps_owned.clock.clone(),
            spec: spec_owned,
            credential,
            key,
            label,
            refresh: deps_owned.refresh.clone(),
            wait_limit: deps_owned.wait_limit,
            poll_interval: deps_owned.poll_interval,
            cohort: deps_owned.cohort,
            preloaded,
            store: deps_owned.store.clone(),
            metrics: deps_owned.metrics.clone(),
            status: cfg_status,
            index,
        })
    });
    // A weak address: the store's notifier must not keep a removed app's actor alive.
    let weak = addr.downgrade();
    deps.store.subscribe(
        &store_key,
        Box::new(move |generation| {
            if let Some(a) = weak.upgrade() {
                a.do_send(StoreChanged { generation });
            }
        }),
    );
    CredentialHandle { addr, status }
}

/// Starts the actor of a credential its own source fetches (an Open Platform's component or
/// authorizer token, a WeCom suite's, corp's or provider's): no secret of its own, `appid` for
/// its logs, `key` its store record, `label` its metrics.
pub fn spawn_sourced(
    deps: &ActorDeps,
    appid: &str,
    source: Arc<dyn super::external::ExternalSource>,
    key: AppKey,
    label: String,
    owner: Option<TokenOwner>,
) -> CredentialHandle {
    spawn_actor(
        deps,
        &Arc::new(CredentialSpec::sourced(appid)),
        Credential::External(source),
        key,
        label,
        None,
        owner,
    )
}

/// Starts the ticket actor of `kind` that follows an account's token actor `token` (an Open
/// Platform authorizer's, a WeCom corp's): fetched with that token, stored under `key`'s name
/// and appid with `/ticket/{type}` added, refetched whenever the token changes.
pub fn spawn_ticket(
    deps: &ActorDeps,
    id: &str,
    token: &CredentialHandle,
    key: &AppKey,
    kind: crate::config::TicketKind,
    label: String,
) -> CredentialHandle {
    let ticket = spawn_actor(
        deps,
        &Arc::new(CredentialSpec::sourced(id)),
        Credential::Ticket {
            kind,
            token: token.status.clone(),
            token_actor: token.addr.clone(),
        },
        AppKey {
            name: format!("{}/ticket/{}", key.name, kind.as_str()),
            appid: format!("{}/ticket/{}", key.appid, kind.as_str()),
        },
        label,
        None,
        None,
    );
    token
        .addr
        .do_send(super::messages::Subscribe(ticket.addr.clone().recipient()));
    ticket
}
