//! Dead deliveries are kept `dead_retention_secs`, then forgotten with their pushes: in each
//! store on a clock the test gives (nothing before the time, a retried one kept, a push still
//! owed to another route kept), and through the running hub, counted as `purged`. An admin's
//! discard forgets one at once, pending or dead, by the same rules.

use std::sync::Arc;
use std::time::Duration;

use wxtoken::fake::{FakeInbox, InboxMode};
use wxtoken::metrics::{Metrics, MetricsMode};
use wxtoken::store::messages::{
    new_push_id, ClaimQuery, DeliveryRecord, DeliveryState, Finish, MessageStore, NewPush,
    PushRecord, StoredSource, Taking,
};
use wxtoken::store::{EmbeddedStore, RedisStore};
use wxtoken::time::UnixMillis;

use crate::support::deliveries::*;
use crate::support::fleet::RedisServer;
use crate::support::helpers::*;

fn ms(v: u64) -> UnixMillis {
    UnixMillis::new(v).expect("in range")
}

fn push(at: u64) -> PushRecord {
    PushRecord {
        id: new_push_id(ms(at)),
        source: StoredSource {
            kind: "app".into(),
            app: Some("shop".into()),
            platform: None,
            appid: "wx1".into(),
        },
        received_at: ms(at),
        format: "xml".into(),
        message: serde_json::Map::new(),
        raw: "<xml/>".into(),
    }
}

/// Takes `p` for `routes` and claims its delivery to `route` at `now`.
async fn take_and_claim(
    store: &dyn MessageStore,
    p: &PushRecord,
    routes: &[&str],
    route: &str,
) -> DeliveryRecord {
    let deliveries = routes
        .iter()
        .map(|r| DeliveryRecord::new(p, r, p.received_at))
        .collect();
    let taken = store
        .take(NewPush {
            dedupe_key: p.id.clone(),
            dedupe_until: UnixMillis::now().saturating_add(Duration::from_secs(60)),
            push: Taking::Routed(p.clone(), deliveries),
        })
        .await
        .expect("stored");
    assert!(taken);
    let claimed = store
        .claim(ClaimQuery {
            route: route.into(),
            now: p.received_at.saturating_add(Duration::from_secs(1)),
            lease: Duration::from_secs(30),
            limit: 10,
        })
        .await
        .expect("claims");
    let mine = claimed.into_iter().find(|c| c.push.id == p.id);
    mine.expect("its delivery is due").delivery
}

/// Records `d` as dead at `died`, to be forgotten at `purge_at`.
async fn die(store: &dyn MessageStore, d: DeliveryRecord, died: u64, purge_at: u64) {
    let record = DeliveryRecord {
        state: DeliveryState::Dead,
        attempts: 5,
        last_error: Some("status 500".into()),
        next_at: ms(died),
        purge_at: Some(ms(purge_at)),
        ..d
    };
    store
        .finish(Finish::Failed { record })
        .await
        .expect("recorded");
}

/// The rules of the purge, the same for either store.
async fn purge_keeps_what_it_must(store: Arc<dyn MessageStore>) {
    let s = store.as_ref();
    // One push for one route, dead at 10 s, forgotten from 20 s.
    let alone = push(1_000);
    let d = take_and_claim(s, &alone, &["crm"], "crm").await;
    die(s, d.clone(), 10_000, 20_000).await;
    // One push for two routes: dead for crm, still pending for erp.
    let shared = push(2_000);
    let d2 = take_and_claim(s, &shared, &["crm", "erp"], "crm").await;
    die(s, d2.clone(), 11_000, 20_000).await;
    // Dead, then retried by an admin: pending again, never purged.
    let retried = push(3_000);
    let d3 = take_and_claim(s, &retried, &["crm"], "crm").await;
    die(s, d3.clone(), 12_000, 20_000).await;
    s.retry(&d3.id, ms(13_000)).await.expect("retried");

    assert!(s.purge(ms(19_999), 100).await.expect("purges").is_empty());
    assert_eq!(s.stats(&["crm".into()]).await.expect("stats")[0].dead, 2);

    let mut purged = s.purge(ms(20_000), 100).await.expect("purges");
    purged.sort();
    let mut expected = vec![d.id.clone(), d2.id.clone()];
    expected.sort();
    assert_eq!(purged, expected);
    assert!(s.purge(ms(99_000), 100).await.expect("purges").is_empty());
    let crm = &s.stats(&["crm".into()]).await.expect("stats")[0];
    assert_eq!((crm.dead, crm.pending), (0, 1), "{crm:?}");
    // erp's delivery still has its push; the retried one is due with its push.
    for (route, p) in [("erp", &shared), ("crm", &retried)] {
        let claimed = s
            .claim(ClaimQuery {
                route: route.into(),
                now: ms(50_000),
                lease: Duration::from_secs(30),
                limit: 10,
            })
            .await
            .expect("claims");
        assert_eq!(claimed.len(), 1, "{route}");
        assert_eq!(&claimed[0].push, p);
    }
    // A retry of a purged delivery finds nothing.
    assert!(s.retry(&d.id, ms(60_000)).await.expect("answers").is_none());
}

/// A discard, the same for either store: one delivery at once, its push with the last.
async fn discard_forgets_one_delivery(store: Arc<dyn MessageStore>) {
    let s = store.as_ref();
    let p = push(5_000);
    let sms = take_and_claim(s, &p, &["sms", "bot"], "sms").await;
    die(s, sms.clone(), 9_000, 90_000).await;
    let gone = s
        .discard(&sms.id)
        .await
        .expect("discards")
        .expect("was there");
    assert_eq!(
        (gone.id.as_str(), gone.state),
        (sms.id.as_str(), DeliveryState::Dead)
    );
    assert!(s.discard(&sms.id).await.expect("answers").is_none());
    // Its purge entry went with it (the store's other dead ones purged here were the purge
    // test's), and bot still has the push.
    assert!(s.purge(ms(99_000), 100).await.expect("purges").is_empty());
    let bot = s
        .claim(ClaimQuery {
            route: "bot".into(),
            now: ms(10_000),
            lease: Duration::from_secs(30),
            limit: 10,
        })
        .await
        .expect("claims");
    assert_eq!(bot.len(), 1);
    assert_eq!(bot[0].push, p);
    // bot's pending one is discarded too: nothing is left of the push.
    let bot_id = bot[0].delivery.id.clone();
    let gone = s
        .discard(&bot_id)
        .await
        .expect("discards")
        .expect("was there");
    assert_eq!(gone.state, DeliveryState::Pending);
    let stats = s.stats(&["sms".into(), "bot".into()]).await.expect("stats");
    assert!(
        stats.iter().all(|r| r.pending == 0 && r.dead == 0),
        "{stats:?}"
    );
    assert!(s
        .retry(&bot_id, ms(20_000))
        .await
        .expect("answers")
        .is_none());
}

#[actix_web::test]
async fn the_embedded_store_forgets_dead_deliveries_at_their_time_only() {
    let dir = tempfile::tempdir().expect("dir");
    let metrics = Metrics::new(&[], MetricsMode::Full);
    let store = EmbeddedStore::open(&dir.path().join("m.redb"), metrics).expect("opens");
    let store: Arc<dyn MessageStore> = Arc::new(store);
    purge_keeps_what_it_must(store.clone()).await;
    discard_forgets_one_delivery(store).await;
}

#[actix_web::test]
async fn the_redis_store_forgets_dead_deliveries_at_their_time_only() {
    use crate::support::redis_topology::Deployment as _;
    let redis = RedisServer::start(None);
    let metrics = Metrics::new(&[], MetricsMode::Full);
    let store = RedisStore::open(&redis.store("purge"), metrics)
        .await
        .expect("opens");
    let store: Arc<dyn MessageStore> = Arc::new(store);
    purge_keeps_what_it_must(store.clone()).await;
    discard_forgets_one_delivery(store).await;
}

/// A server whose route `crm` goes to an inbox that fails everything, its deliveries dead
/// after 300 ms and kept `dead_retention`: below what a file may say (10 s, a minute), so a
/// test takes a second. The rules themselves are checked above on a given clock.
async fn failing_route(dead_retention: Duration) -> (FakeInbox, TestApp) {
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    inbox.set_mode(InboxMode::Fail);
    let app = TestApp::builder()
        .config(&with_routes(&route("crm", &inbox.url(), "")))
        .adjust(move |(s, o)| {
            s.routes[0].max_age = Duration::from_millis(300);
            s.routes[0].dead_retention = dead_retention;
            o.hub = FAST_HUB;
        })
        .start()
        .await;
    (inbox, app)
}

#[actix_web::test]
async fn the_hub_forgets_a_dead_delivery_after_its_retention_and_counts_it() {
    let (_inbox, app) = failing_route(Duration::from_millis(300)).await;
    push_all(&app.base, [77]).await;
    let purged = r#"wxtoken_deliveries_total{result="purged",route="crm"}"#;
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.metric(purged).await == Some(1.0)
        })
        .await,
        "the dead delivery is forgotten"
    );
    assert_eq!(
        app.metric(r#"wxtoken_deliveries_total{result="dead",route="crm"}"#)
            .await,
        Some(1.0)
    );
    assert!(listed(&app.http, &app.base, "dead", 10).await.is_empty());
    assert!(listed(&app.http, &app.base, "pending", 10).await.is_empty());
}

#[actix_web::test]
async fn an_admin_discards_a_dead_delivery_and_the_alerting_gauge_clears() {
    let (_inbox, app) = failing_route(Duration::from_secs(3600)).await;
    push_all(&app.base, [78, 79, 80]).await;
    let dead = eventually(Duration::from_secs(10), || async {
        listed(&app.http, &app.base, "dead", 10).await.len() == 3
    });
    assert!(dead.await);
    let id = listed(&app.http, &app.base, "dead", 10).await.remove(0);
    let gauge = r#"wxtoken_dead_deliveries{route="crm"}"#;
    let counted = eventually(Duration::from_secs(5), || async {
        app.metric(gauge).await == Some(3.0)
    });
    assert!(counted.await);

    let url = format!("{}/v1/admin/deliveries/{id}", app.base);
    let (status, body) = admin_call(&app.http, "DELETE", &url, Some(OPS_KEY)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["id"].as_str(), body["state"].as_str()),
        (Some(id.as_str()), Some("dead"))
    );
    assert_eq!(body["route"], "crm");
    assert_eq!(listed(&app.http, &app.base, "dead", 10).await.len(), 2);
    // The rest of the route's, a page at a time; the route must be named.
    let many = |query: &str| format!("{}/v1/admin/deliveries?{query}", app.base);
    let (status, body) = admin_call(&app.http, "DELETE", &many("state=dead"), Some(OPS_KEY)).await;
    assert_eq!(status, 400, "{body}");
    let page = many("state=dead&route=crm&limit=1");
    let (status, body) = admin_call(&app.http, "DELETE", &page, Some(OPS_KEY)).await;
    assert_eq!(
        (status, body.clone()),
        (200, serde_json::json!({"discarded": 1, "more": true}))
    );
    let rest = many("state=dead&route=crm");
    let (status, body) = admin_call(&app.http, "DELETE", &rest, Some(OPS_KEY)).await;
    assert_eq!(
        (status, body.clone()),
        (200, serde_json::json!({"discarded": 1, "more": false}))
    );
    assert_eq!(
        app.metric(r#"wxtoken_deliveries_total{result="discarded",route="crm"}"#)
            .await,
        Some(3.0)
    );
    assert!(listed(&app.http, &app.base, "dead", 10).await.is_empty());
    let cleared = eventually(Duration::from_secs(5), || async {
        app.metric(gauge).await == Some(0.0)
    });
    assert!(
        cleared.await,
        "the gauge WxtokenDeliveriesDead watches is 0"
    );
    // Gone: a second discard and a retry find nothing.
    assert_eq!(
        admin_call(&app.http, "DELETE", &url, Some(OPS_KEY)).await.0,
        404
    );
    let retry = format!("{url}/retry");
    assert_eq!(
        admin_call(&app.http, "POST", &retry, Some(OPS_KEY)).await.0,
        404
    );
}
