//! The message hub's entry point: a checked push in, taken once. [`Hub::take`] deduplicates
//! (fleet-wide with Redis), matches the routes, and persists the push with one delivery per
//! matching route before it returns; then the route workers (`deliver`) are woken. A push no
//! route takes is counted, and a note of it (`recent`) is written with its dedupe entry.
//!
//! The receiving side calls only [`Hub::take`] and reads [`Taken`]; admins list and retry
//! deliveries through the other methods, and a reload changes the routes with
//! [`Hub::reload_routes`].

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;

use super::deliver::{attempt, Attempt};
use super::recent::Unmatched;
use super::route_set::{RouteChanges, RouteSet, RunningRoute};
use super::Inbound;
use crate::config::{RouteMode, RouteSettings};
use crate::metrics::{Metrics, ScrapedRoute};
use crate::store::messages::{
    new_push_id, Claimed, DeliveryRecord, DeliveryState, ListQuery, MessageStore, NewPush, Page,
    PushRecord, RouteStats, Taking,
};
use crate::time::UnixMillis;

/// A passive reply being waited for: the reply-mode route's 200 body (XML or JSON, as the
/// source writes), or `None` when it did not answer one in time (WeChat then gets `success`).
pub type ReplyWait = BoxFuture<'static, Option<String>>;

/// What became of a push.
pub enum Taken {
    /// Persisted, with deliveries to every matching route; `reply` when a `mode = "reply"`
    /// route matched.
    New {
        id: String,
        reply: Option<ReplyWait>,
    },
    /// WeChat's retry of a push already taken (here or at another instance).
    Duplicate,
    /// No route matches: counted and noted among the last unmatched pushes, not an error.
    Unmatched,
}

/// Why a push was not taken: WeChat is answered 5xx and will retry.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error("the push could not be stored")]
    NotStored(#[source] anyhow::Error),
}

/// How long a push's dedupe entry is kept: WeChat retries within about 15 s and accepts
/// timestamps for 5 minutes; 15 minutes covers both with room.
pub const DEDUPE_TTL: Duration = Duration::from_secs(15 * 60);
/// A claim's lease (Redis): longer than an attempt's 10 s timeout, so a live instance always
/// records its outcome first; a dead instance's claims are due again after it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How often a worker looks for due deliveries without being woken (retries come due).
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);
/// How often the backlog gauges are read from the store.
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// How often expired dedupe entries (embedded store) and dead deliveries past their
/// `dead_retention_secs` are swept.
pub const DEFAULT_SWEEP: Duration = Duration::from_secs(60);
/// Dead deliveries one purge write forgets: one short transaction or a few hundred scripts.
const PURGE_BATCH: usize = 500;
/// Purge writes one sweep makes at most; a larger heap of expired dead deliveries is worked
/// off over the next sweeps rather than in one long burst.
const PURGE_BATCHES_PER_SWEEP: usize = 20;

/// The hub's timing knobs (tests shorten the lease and the sweep).
#[derive(Clone, Copy, Debug)]
pub struct HubOptions {
    pub lease: Duration,
    pub poll: Duration,
    pub sweep: Duration,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            lease: DEFAULT_LEASE,
            poll: DEFAULT_POLL,
            sweep: DEFAULT_SWEEP,
        }
    }
}

/// What the hub and its workers share.
pub(super) struct Shared {
    /// The running routes; a reload swaps the set.
    pub(super) routes: ArcSwap<RouteSet>,
    /// The source of worker numbers (see [`RouteSet`]).
    workers: AtomicU64,
    pub(super) store: Arc<dyn MessageStore>,
    pub(super) metrics: Metrics,
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) options: HubOptions,
    /// The latest backlog figures, for the metrics.
    stats: ArcSwap<Vec<RouteStats>>,
}

/// Takes pushes, and owns their delivery.
pub struct Hub {
    shared: Arc<Shared>,
}

thread_local! {
    /// The reply attempts' client on this thread (awc's is not `Send`).
    static REPLY_CLIENT: std::cell::OnceCell<awc::Client> = const { std::cell::OnceCell::new() };
}

impl Hub {
    /// A hub over `routes` writing to `store`; its workers start with [`Hub::start`].
    pub fn new(
        routes: Vec<RouteSettings>,
        store: Arc<dyn MessageStore>,
        metrics: Metrics,
        tls: Arc<rustls::ClientConfig>,
        options: HubOptions,
    ) -> Hub {
        let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
        metrics.init_messages(&[], &names);
        let workers = AtomicU64::new(0);
        let routes = ArcSwap::from_pointee(RouteSet::new(routes, &workers));
        Hub {
            shared: Arc::new(Shared {
                routes,
                workers,
                store,
                metrics,
                tls,
                options,
                stats: ArcSwap::from_pointee(Vec::new()),
            }),
        }
    }

    /// Starts the route workers, the backlog reader and the dedupe sweep on the current
    /// arbiter, and shows the backlog in the metrics. They end when the hub is dropped.
    pub fn start(&self) {
        for route in self.shared.routes.load().iter() {
            self.start_worker(route);
        }
        actix::spawn(read_stats(Arc::downgrade(&self.shared)));
        actix::spawn(sweep(Arc::downgrade(&self.shared)));
        let weak = Arc::downgrade(&self.shared);
        self.shared.metrics.read_routes_from(move || {
            weak.upgrade()
                .map(|s| scraped(&s.stats.load()))
                .unwrap_or_default()
        });
    }

    fn start_worker(&self, route: &RunningRoute) {
        let (hub, name) = (Arc::downgrade(&self.shared), route.settings.name.clone());
        actix::spawn(super::deliver::work(hub, name, route.worker));
    }

    /// Applies a reload's `[[routes]]`: kept routes take their new settings, added ones get a
    /// worker (on the current arbiter, as [`Hub::start`]), removed ones lose theirs. Stored
    /// deliveries are kept whatever the change (see [`RouteSet`]).
    pub fn reload_routes(&self, routes: Vec<RouteSettings>) -> RouteChanges {
        let s = &self.shared;
        let old = s.routes.load_full();
        let (set, changes) = old.reconciled(routes, &s.workers);
        s.metrics.init_messages(&[], &changes.added);
        s.routes.store(Arc::new(set));
        let set = s.routes.load();
        for name in &changes.added {
            if let Some(route) = set.get(name) {
                self.start_worker(route);
            }
        }
        // A removed route's worker ends at its next look; woken, it looks now.
        for name in &changes.removed {
            if let Some(route) = old.get(name) {
                route.wake.notify_one();
            }
        }
        changes
    }

    /// Takes one push: deduplicated, matched, persisted; returns once it is durable.
    pub async fn take(&self, inbound: Inbound) -> Result<Taken, TakeError> {
        let s = &self.shared;
        let label = inbound.source.label().to_string();
        let routes = s.routes.load().matching(&inbound);
        let now = UnixMillis::now();
        let received_at = UnixMillis::saturating_from(inbound.received_at);
        let push = PushRecord {
            id: new_push_id(received_at),
            source: inbound.source.stored(),
            received_at,
            format: match inbound.format {
                super::Format::Xml => "xml",
                super::Format::Json => "json",
            }
            .to_string(),
            message: inbound.message.clone(),
            raw: inbound.raw.clone(),
        };
        // The first reply-mode route's attempt starts at once; its delivery is written as
        // claimed (due after a lease) so that no worker makes it meanwhile.
        let reply_route = routes
            .iter()
            .position(|r| r.settings.mode == RouteMode::Reply);
        let deliveries: Vec<DeliveryRecord> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let due = if Some(i) == reply_route {
                    now.saturating_add(s.options.lease)
                } else {
                    now
                };
                DeliveryRecord::new(&push, &r.settings.name, due)
            })
            .collect();
        let record = NewPush {
            dedupe_key: inbound.dedupe_key.clone(),
            dedupe_until: now.saturating_add(DEDUPE_TTL),
            push: if routes.is_empty() {
                Taking::Unmatched(super::recent::note(&inbound))
            } else {
                Taking::Routed(push.clone(), deliveries.clone())
            },
        };
        let new = s.store.take(record).await.map_err(TakeError::NotStored)?;
        if !new {
            s.metrics.push(&label, "duplicate");
            return Ok(Taken::Duplicate);
        }
        if routes.is_empty() {
            s.metrics.push(&label, "unmatched");
            return Ok(Taken::Unmatched);
        }
        s.metrics.push(&label, "taken");
        tracing::debug!(push = %push.id, routes = routes.len(), "push taken");
        for r in &routes {
            r.wake.notify_one();
        }
        let reply = reply_route.map(|i| {
            let claimed = Claimed {
                delivery: deliveries[i].clone(),
                push: push.clone(),
            };
            self.reply(routes[i].settings.clone(), claimed)
        });
        Ok(Taken::New { id: push.id, reply })
    }

    /// Starts the reply-mode attempt and answers its body, or `None` at the route's
    /// `reply_timeout` while the attempt goes on (its outcome is recorded either way).
    fn reply(&self, route: RouteSettings, claimed: Claimed) -> ReplyWait {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = self.shared.clone();
        let timeout = route.reply_timeout;
        let name = route.name.clone();
        let client = REPLY_CLIENT.with(|c| {
            c.get_or_init(|| super::deliver::client(shared.tls.clone()))
                .clone()
        });
        actix_web::rt::spawn(async move {
            let outcome = attempt(&client, &route, &claimed).await;
            let body = match &outcome {
                Attempt::Delivered(b) => b.clone(),
                Attempt::Failed(_) => None,
            };
            // The caller may have stopped waiting: the body is then just not used.
            let _ = tx.send(body);
            shared.record(&route, &claimed, &outcome).await;
        });
        let metrics = self.shared.metrics.clone();
        async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(Some(body))) => {
                    metrics.delivery(&name, "reply");
                    Some(body)
                }
                _ => None,
            }
        }
        .boxed()
    }

    /// A page of the deliveries in `state`, of `route` (configured or not) or else of every
    /// configured route.
    pub async fn list(
        &self,
        state: DeliveryState,
        offset: usize,
        limit: usize,
        route: Option<String>,
    ) -> anyhow::Result<Page> {
        let routes = match route {
            Some(r) => vec![r],
            None => self.route_names(),
        };
        self.shared
            .store
            .list(ListQuery {
                state,
                routes,
                offset,
                limit,
            })
            .await
    }

    /// Makes the delivery `id` due now with a fresh `max_age`, and wakes its route's worker.
    /// `Ok(None)`: no such delivery.
    pub async fn retry(&self, id: &str) -> anyhow::Result<Option<DeliveryRecord>> {
        let s = &self.shared;
        let again = s.store.retry(id, UnixMillis::now()).await?;
        if let Some(route) = again
            .as_ref()
            .and_then(|d| s.routes.load().get(&d.route).cloned())
        {
            route.wake.notify_one();
        }
        Ok(again)
    }

    /// Forgets the delivery `id` (pending or dead) for good, counted as `discarded`. `Ok(None)`:
    /// no such delivery.
    pub async fn discard(&self, id: &str) -> anyhow::Result<Option<DeliveryRecord>> {
        let gone = self.shared.store.discard(id).await?;
        if let Some(d) = &gone {
            self.shared.metrics.delivery(&d.route, "discarded");
        }
        Ok(gone)
    }

    /// Forgets up to `limit` deliveries in `state` of `route` (configured or not), each as
    /// [`Hub::discard`] does: how many were forgotten, and whether more are left. A few
    /// discards are in flight at once (the embedded store commits them together), not the
    /// whole page.
    pub async fn discard_route(
        &self,
        state: DeliveryState,
        route: String,
        limit: usize,
    ) -> anyhow::Result<(usize, bool)> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        const IN_FLIGHT: usize = 16;
        let page = self.list(state, 0, limit, Some(route)).await?;
        let forgotten = futures_util::stream::iter(&page.deliveries)
            .map(|d| self.discard(&d.id))
            .buffer_unordered(IN_FLIGHT)
            .try_fold(
                0,
                |n, gone| async move { Ok(n + usize::from(gone.is_some())) },
            )
            .await?;
        Ok((forgotten, page.next_offset.is_some()))
    }

    /// The recent unmatched pushes (the fleet's with Redis), newest first.
    pub async fn unmatched(&self) -> anyhow::Result<Vec<Unmatched>> {
        let notes = self.shared.store.unmatched().await?;
        Ok(notes.into_iter().map(Unmatched::from).collect())
    }

    /// The configured routes' names.
    pub fn route_names(&self) -> Vec<String> {
        self.shared.routes.load().names()
    }
}

/// The backlog gauges as a scrape shows them.
fn scraped(stats: &[RouteStats]) -> Vec<ScrapedRoute> {
    let now = UnixMillis::now().as_millis();
    stats
        .iter()
        .map(|r| ScrapedRoute {
            route: r.route.clone(),
            backlog: r.pending,
            oldest_seconds: r
                .oldest
                .map(|t| now.saturating_sub(t.as_millis()) as f64 / 1000.0)
                .unwrap_or(0.0),
            dead: r.dead,
        })
        .collect()
}

async fn read_stats(hub: std::sync::Weak<Shared>) {
    loop {
        let Some(s) = hub.upgrade() else { return };
        let names = s.routes.load().names();
        match s.store.stats(&names).await {
            Ok(stats) => s.stats.store(Arc::new(stats)),
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "cannot read the delivery backlog")
            }
        }
        drop(s);
        tokio::time::sleep(STATS_INTERVAL).await;
    }
}

async fn sweep(hub: std::sync::Weak<Shared>) {
    loop {
        let Some(every) = hub.upgrade().map(|s| s.options.sweep) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(s) = hub.upgrade() else { return };
        if let Err(e) = s.store.sweep(UnixMillis::now()).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot sweep the dedupe entries");
        }
        s.purge_dead(UnixMillis::now()).await;
    }
}

impl Shared {
    /// Forgets the dead deliveries whose `dead_retention_secs` has passed, each counted as
    /// `purged` under its route.
    async fn purge_dead(&self, now: UnixMillis) {
        for _ in 0..PURGE_BATCHES_PER_SWEEP {
            let ids = match self.store.purge(now, PURGE_BATCH).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot purge dead deliveries");
                    return;
                }
            };
            for id in &ids {
                if let Some((_, route)) = crate::store::messages::parse_delivery_id(id) {
                    self.metrics.delivery(route, "purged");
                }
            }
            if !ids.is_empty() {
                tracing::info!(
                    count = ids.len(),
                    "dead deliveries forgotten after dead_retention_secs"
                );
            }
            if ids.len() < PURGE_BATCH {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::SystemTime;

    use super::*;
    use crate::config::RouteMatch;
    use crate::messages::{Format, Source};
    use crate::store::messages::{Finish, Page};

    /// A store that remembers what it was asked to write, and fails the first `fail` takes.
    #[derive(Default)]
    struct Memory {
        fail: Mutex<u32>,
        taken: Mutex<Vec<NewPush>>,
    }

    impl MessageStore for Memory {
        fn take(&self, push: NewPush) -> BoxFuture<'static, anyhow::Result<bool>> {
            let mut fail = self.fail.lock().expect("lock");
            if *fail > 0 {
                *fail -= 1;
                return async { Err(anyhow::anyhow!("disk full")) }.boxed();
            }
            let mut taken = self.taken.lock().expect("lock");
            let new = !taken.iter().any(|t| t.dedupe_key == push.dedupe_key);
            if new {
                taken.push(push);
            }
            async move { Ok(new) }.boxed()
        }
        fn claim(
            &self,
            _: crate::store::messages::ClaimQuery,
        ) -> BoxFuture<'static, anyhow::Result<Vec<Claimed>>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn finish(&self, _: Finish) -> BoxFuture<'static, anyhow::Result<()>> {
            async { Ok(()) }.boxed()
        }
        fn list(&self, _: ListQuery) -> BoxFuture<'static, anyhow::Result<Page>> {
            async { Ok(Page::default()) }.boxed()
        }
        fn retry(
            &self,
            _: &str,
            _: UnixMillis,
        ) -> BoxFuture<'static, anyhow::Result<Option<DeliveryRecord>>> {
            async { Ok(None) }.boxed()
        }
        fn stats(&self, _: &[String]) -> BoxFuture<'static, anyhow::Result<Vec<RouteStats>>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn unmatched(
            &self,
        ) -> BoxFuture<'static, anyhow::Result<Vec<crate::store::messages::UnmatchedRecord>>>
        {
            async { Ok(Vec::new()) }.boxed()
        }
        fn sweep(&self, _: UnixMillis) -> BoxFuture<'static, anyhow::Result<u64>> {
            async { Ok(0) }.boxed()
        }
        fn purge(
            &self,
            _: UnixMillis,
            _: usize,
        ) -> BoxFuture<'static, anyhow::Result<Vec<String>>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn discard(&self, _: &str) -> BoxFuture<'static, anyhow::Result<Option<DeliveryRecord>>> {
            async { Ok(None) }.boxed()
        }
    }

    fn route(name: &str, msg_types: &[&str]) -> RouteSettings {
        RouteSettings {
            matches: RouteMatch {
                msg_types: Some(msg_types.iter().map(|s| s.to_string()).collect()),
                ..RouteMatch::default()
            },
            ..RouteSettings::sample(name)
        }
    }

    fn push(msg_type: &str, msg_id: &str) -> Inbound {
        let mut m = serde_json::Map::new();
        m.insert("MsgType".into(), msg_type.into());
        m.insert("MsgId".into(), msg_id.into());
        Inbound::new(
            Source::app("shop", "wx1"),
            SystemTime::now(),
            m,
            "<xml/>".into(),
            Format::Xml,
        )
    }

    #[actix_web::test]
    async fn a_push_is_written_with_its_deliveries_before_take_answers_and_a_failed_write_takes_nothing(
    ) {
        let store = Arc::new(Memory::default());
        *store.fail.lock().expect("lock") = 1;
        let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
        let tls = crate::tls::tls_config(None).expect("tls");
        let hub = Hub::new(
            vec![
                route("crm", &["text"]),
                route("erp", &["text", "image"]),
                route("ops", &["event"]),
            ],
            store.clone(),
            metrics.clone(),
            tls,
            HubOptions::default(),
        );
        // The write fails: not taken (WeChat gets a 5xx and sends it again).
        assert!(matches!(
            hub.take(push("text", "1")).await,
            Err(TakeError::NotStored(_))
        ));
        assert!(store.taken.lock().expect("lock").is_empty());
        // Sent again: taken, with one delivery per matching route, written before the answer.
        let Ok(Taken::New { id, reply: None }) = hub.take(push("text", "1")).await else {
            panic!("taken");
        };
        {
            let taken = store.taken.lock().expect("lock");
            let Taking::Routed(p, deliveries) = &taken[0].push else {
                panic!("a push with its deliveries");
            };
            assert_eq!(p.id, id);
            let routes: Vec<&str> = deliveries.iter().map(|d| d.route.as_str()).collect();
            assert_eq!(routes, ["crm", "erp"]);
            assert!(
                taken[0].dedupe_until >= UnixMillis::now().saturating_add(Duration::from_secs(600))
            );
        }
        assert!(matches!(
            hub.take(push("text", "1")).await,
            Ok(Taken::Duplicate)
        ));
        // No route takes a video: its dedupe entry alone is written, and it is listed.
        assert!(matches!(
            hub.take(push("video", "2")).await,
            Ok(Taken::Unmatched)
        ));
        let note = match &store.taken.lock().expect("lock")[1].push {
            Taking::Unmatched(note) => note.clone(),
            Taking::Routed(..) => panic!("an unmatched push wrote a push"),
        };
        assert_eq!(note.msg_type.as_deref(), Some("video"));
        assert_eq!(note.source.app.as_deref(), Some("shop"));
        let text = metrics.render();
        for (result, n) in [("taken", 1), ("duplicate", 1), ("unmatched", 1)] {
            let line = format!("wxtoken_pushes_total{{result=\"{result}\",source=\"shop\"}} {n}");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}
