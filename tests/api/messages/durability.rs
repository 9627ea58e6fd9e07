//! Deliveries outlive the server that took them: the wxtoken process killed (SIGKILL)
//! mid-backlog on the embedded file, a restart on it, and with Redis two instances that make
//! each delivery once, one of them killed mid-backlog and the other finishing its claims. Apart
//! from the first, the servers run in-process, each in its own actix System (so the claim lease
//! can be 2 s); a kill stops the System at once, without a graceful shutdown: the attempts in
//! flight are dropped unrecorded, as in a crash.

use std::collections::HashMap;
use std::time::Duration;

use wxtoken::fake::{FakeInbox, InboxMode};

use crate::support::deliveries::*;
use crate::support::fleet::RedisServer;
use crate::support::helpers::*;

fn counts(ids: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for id in ids {
        *m.entry(id.clone()).or_insert(0) += 1;
    }
    m
}

/// Waits until `n` distinct deliveries were made to `inbox` (within `limit`).
async fn until_made(inbox: &FakeInbox, n: usize, limit: Duration) {
    let made = eventually(limit, || async { counts(&inbox.delivered()).len() == n }).await;
    assert!(made, "{} of {n} made", counts(&inbox.delivered()).len());
}

#[actix_web::test]
async fn a_process_killed_mid_backlog_on_the_embedded_store_resumes_every_delivery() {
    let fake = start_fake(&Spec::default()).await;
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    inbox.set_mode(InboxMode::Hang);
    let dir = tempfile::tempdir().expect("dir");
    let config = format!(
        "[upstream]\nbase_url = \"{}\"\nmin_token_lifetime_secs = 2\n[store]\npath = {}\n{}",
        fake.base_url(),
        quoted(&dir.path().join("wxtoken.redb")),
        with_routes(&route("crm", &inbox.url(), ""))
    );
    let (first_dir, second_dir) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir_all(&first_dir).expect("dir");
    std::fs::create_dir_all(&second_dir).expect("dir");

    let (mut first, base, _) = crate::support::process::serve_at_trace(&first_dir, &config);
    push_all(&base, 1..=20).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            !inbox.received().is_empty()
        })
        .await
    );
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reaped");

    inbox.set_mode(InboxMode::Accept);
    let (_second, base, _) = crate::support::process::serve_at_trace(&second_dir, &config);
    until_made(&inbox, 20, Duration::from_secs(10)).await;
    until_nothing_pending(&client(), &base).await;
}

#[actix_web::test]
async fn a_restart_on_the_embedded_store_mid_backlog_loses_nothing() {
    let fake = start_fake(&Spec::default()).await;
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    inbox.set_mode(InboxMode::Hang);
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("wxtoken.redb");
    let settings = settings_with_routes(&fake.base_url(), &store, &route("crm", &inbox.url(), ""));

    let first = ThreadServer::start_with(settings.clone(), FAST_HUB);
    push_all(&first.base, 1..=20).await;
    // Some attempts are in flight (the inbox holds them) when the process dies.
    assert!(
        eventually(Duration::from_secs(5), || async {
            !inbox.received().is_empty()
        })
        .await
    );
    first.kill();

    inbox.set_mode(InboxMode::Accept);
    let second = ThreadServer::start_with(settings, FAST_HUB);
    until_made(&inbox, 20, Duration::from_secs(10)).await;
    until_nothing_pending(&client(), &second.base).await;
    second.stop();
}

#[actix_web::test]
async fn two_instances_on_redis_make_each_delivery_once_and_one_finishes_what_a_killed_one_claimed()
{
    let redis = RedisServer::start(None);
    let fake = start_fake(&Spec::default()).await;
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let on_redis = |instance: &str| {
        settings_on_redis(
            &fake.base_url(),
            &redis,
            instance,
            &route("crm", &inbox.url(), ""),
        )
    };
    let a = ThreadServer::start_with(on_redis("a"), FAST_HUB);
    let b = ThreadServer::start_with(on_redis("b"), FAST_HUB);

    // Both take pushes (a retry of one at the other is a duplicate) and both deliver.
    for id in 1..=30u64 {
        let base = if id % 2 == 0 { &a.base } else { &b.base };
        assert_eq!(push_text(base, id).await.status, Some(200));
    }
    assert_eq!(
        push_text(&a.base, 1).await.status,
        Some(200),
        "b's push retried at a"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            inbox.delivered().len() >= 30
        })
        .await
    );
    // Both instances list the deliveries the fleet shares. Once none is pending, every one was
    // made and removed, so no instance can claim one again; a second attempt of one would have
    // been claimed while the first was in flight, and has reached the inbox unless it is
    // still on its way at this very moment.
    until_nothing_pending(&client(), &a.base).await;
    let once = counts(&inbox.delivered());
    assert_eq!(once.len(), 30);
    assert!(
        once.values().all(|&n| n == 1),
        "each delivery made once: {once:?}"
    );

    // Now b alone holds claims when it dies: a finishes them after the lease.
    a.kill();
    inbox.set_mode(InboxMode::Hang);
    let before = inbox.received().len();
    push_all(&b.base, 101..=110).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            inbox.received().len() > before
        })
        .await
    );
    b.kill();
    inbox.set_mode(InboxMode::Accept);
    let a2 = ThreadServer::start_with(on_redis("a"), FAST_HUB);
    until_made(&inbox, 40, Duration::from_secs(15)).await;
    a2.stop();
}

#[actix_web::test]
async fn deliveries_work_on_a_redis_cluster_with_every_message_key_in_one_slot() {
    let cluster = crate::support::redis_topology::RedisCluster::start();
    let fake = start_fake(&Spec::default()).await;
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let routes = route("crm", &inbox.url(), "") + &route("erp", &inbox.url(), "");
    let s = settings_on_redis(&fake.base_url(), &cluster, "a", &routes);
    let server = ThreadServer::start_with(s, FAST_HUB);
    push_all(&server.base, 1..=5).await;
    assert_eq!(
        push_text(&server.base, 3).await.status,
        Some(200),
        "a duplicate"
    );
    until_made(&inbox, 10, Duration::from_secs(10)).await;
    until_nothing_pending(&client(), &server.base).await;
    server.stop();
}
