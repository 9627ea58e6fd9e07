//! The fleet on Redis Sentinel: three instances serve under load while the master is killed;
//! they follow the promoted replica, serve valid tokens throughout, repair a write the
//! promoted replica lost, and keep making one upstream call per refresh cycle.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use wxtoken::config::{RedisEndpoint, SecretSource, StoreSettings};
use wxtoken::fake::{FakeWechat, Validity};

use crate::support::fleet::{fleet_settings, revoke_at, token_at, Fleet};
use crate::support::ha;
use crate::support::helpers::*;
use crate::support::redis_topology::{Deployment, SentinelGroup};

/// Requests a token from every instance, checking each at the fake; the tokens served.
async fn serve_round(
    http: &awc::Client,
    fake: &FakeWechat,
    bases: &[String],
    when: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for b in bases {
        let t = token_at(http, b).await;
        let v = fake.validity(&t);
        assert_eq!(
            v,
            Validity::Valid,
            "{b} served a token WeChat rejects ({v:?}) {when}"
        );
        out.push(t);
    }
    out
}

/// The master each instance's `/readyz` names (`ok: master 127.0.0.1:PORT`), if it is up.
async fn masters_in_use(http: &awc::Client, bases: &[String]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in bases {
        let (_, ready) = get_json(http, &format!("{b}/readyz"), OPS_KEY).await;
        let up = ready["store"]["up"] == true;
        out.push(
            ready["store"]["detail"]
                .as_str()
                .and_then(|d| d.strip_prefix("ok: master "))
                .filter(|_| up)
                .map(String::from),
        );
    }
    out
}

#[actix_web::test]
async fn the_fleet_follows_a_sentinel_failover_under_load_and_repairs_a_lost_write() {
    // 10 s tokens refreshed with 5 s left: the failover (1 s to declare the master down, then
    // the promotion) fits inside the remaining life, so nobody may fetch alone meanwhile.
    let spec = Spec {
        expires_in: 10,
        overlap_secs: 1,
        ..Spec::default()
    };
    let fake = start_fake(&spec).await;
    let mut group = SentinelGroup::start();
    let fleet = Fleet::start(&spec, &fake, &group, 3);
    let http = client();
    let bases = fleet.bases();
    let old_master = format!("127.0.0.1:{}", group.master.port);
    let key = group.key("wxt", "token", SHOP_APPID);
    let converged = eventually(Duration::from_secs(5), || async {
        let tokens = serve_round(&http, &fake, &bases, "at start").await;
        let masters = masters_in_use(&http, &bases).await;
        tokens.iter().all(|t| *t == tokens[0])
            && masters
                .iter()
                .all(|m| m.as_deref() == Some(old_master.as_str()))
    })
    .await;
    assert!(
        converged,
        "the fleet shares one token through the first master"
    );
    // The record as it is now: written back into the promoted replica later, it stands for a
    // write the replica lost (replication is asynchronous).
    let stale_record = group.hget(&key, "record").expect("record on the master");
    let stale_generation: u64 = group.hget(&key, "generation").unwrap().parse().unwrap();
    // One more refresh, replicated before the kill: the generation the fleet holds.
    let token = token_at(&http, &bases[0]).await;
    let (status, answer) = revoke_at(&http, &bases[0]).await;
    assert_eq!(status, 200, "{answer}");
    let held = eventually(Duration::from_secs(3), || async {
        serve_round(&http, &fake, &bases, "after the refresh")
            .await
            .iter()
            .all(|t| *t != token)
    })
    .await;
    assert!(held, "every instance adopted the refreshed token");

    let minted_before = fake.minted(SHOP_APPID);
    group.master.kill();
    let killed = Instant::now();
    let mut served_during = 0u32;
    let followed = loop {
        served_during += serve_round(&http, &fake, &bases, "during the failover")
            .await
            .len() as u32;
        let masters = masters_in_use(&http, &bases).await;
        if masters
            .iter()
            .all(|m| m.as_ref().is_some_and(|m| *m != old_master))
        {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "the fleet did not follow the new master: {masters:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    let new_master = group.master_port().expect("a promoted master");
    assert_eq!(new_master, group.replica.port, "the replica was promoted");
    eprintln!(
        "sentinel failover: every instance followed the new master {followed:?} after the kill; \
         {served_during} tokens served meanwhile, all valid"
    );
    assert!(served_during > 0);

    // The promoted replica "lost" the last write: it holds the older record again.
    group.hset(&key, "generation", &stale_generation.to_string());
    group.hset(&key, "record", &stale_record);
    let repaired = eventually(Duration::from_secs(5), || async {
        // Nobody adopts the older token (the validity check would catch it: it was replaced).
        serve_round(&http, &fake, &bases, "after the lost write").await;
        group
            .hget(&key, "generation")
            .and_then(|g| g.parse::<u64>().ok())
            .is_some_and(|g| g > stale_generation)
    })
    .await;
    assert!(repaired, "an instance wrote its newer generation back");

    // The next refresh cycles go through the new master: one upstream call each.
    let start = Instant::now();
    let minted_at_follow = fake.minted(SHOP_APPID);
    let mut seen = HashSet::new();
    while start.elapsed() < Duration::from_secs(11) {
        seen.extend(serve_round(&http, &fake, &bases, "after the failover").await);
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let cycles = fake.minted(SHOP_APPID) - minted_at_follow;
    // 11 s of 10 s tokens refreshed with 5 s left: two refreshes, three at a boundary.
    assert!((1..=3).contains(&cycles), "{cycles} fetches in 11 s");
    assert!(
        cycles as usize <= seen.len(),
        "{cycles} fetches, {} tokens served",
        seen.len()
    );
    assert!(
        fake.minted(SHOP_APPID) - minted_before <= cycles + 1,
        "no instance fetched alone during the failover"
    );
}

#[actix_web::test]
async fn sentinel_outage_costs_no_fetch_and_an_empty_master_is_refilled() {
    // Master and replica both down: nothing to fail over to, the fleet rides it out.
    ha::outage_costs_no_fetch_and_is_refilled(&mut SentinelGroup::start()).await;
}

#[actix_web::test]
async fn sentinels_and_data_nodes_with_passwords_of_their_own() {
    let group = SentinelGroup::start_with(Some("data-pass-0001"), Some("sentinel-pass-0002"));
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let ttl = Duration::from_secs(2);
    let server = ThreadServer::start(fleet_settings(&spec, &fake, &group, "a", ttl));
    let http = client();
    let token = token_at(&http, &server.base).await;
    let record = group.hget(&group.key("wxt", "token", SHOP_APPID), "record");
    assert!(
        record.is_some_and(|r| r.contains(&token)),
        "stored on the master"
    );
    server.stop();

    // Either password wrong: a start-up error that shows neither password.
    let wrong = |sentinel: bool| {
        let mut s = fleet_settings(&spec, &fake, &group, "b", ttl);
        if let StoreSettings::Redis(r) = &mut s.store {
            if let RedisEndpoint::Sentinel(s) = &mut r.endpoint {
                let bad = Some((SecretString::from("wrong-pass-9999"), SecretSource::Inline));
                if sentinel {
                    s.sentinel_password = bad;
                } else {
                    s.auth.password = bad;
                }
            }
        }
        s
    };
    for sentinel in [true, false] {
        let e =
            match wxtoken::startup::Application::build(wrong(sentinel), Default::default()).await {
                Ok(_) => panic!("started with a wrong password (sentinel: {sentinel})"),
                Err(e) => format!("{e:#}"),
            };
        assert!(
            e.contains("rejected the credentials"),
            "sentinel {sentinel}: {e}"
        );
        for p in ["wrong-pass", "data-pass", "sentinel-pass"] {
            assert!(!e.contains(p), "a password in the error: {e}");
        }
    }
}

#[actix_web::test]
async fn a_fleet_reaches_sentinels_and_master_over_tls() {
    let pki = crate::support::redis_topology::Pki::new(&["127.0.0.1"]);
    let group = SentinelGroup::start_tls(&pki);
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let fleet = Fleet::start(&spec, &fake, &group, 2);
    let http = client();
    let bases = fleet.bases();
    let token = token_at(&http, &bases[0]).await;
    let shared = eventually(Duration::from_secs(3), || async {
        token_at(&http, &bases[1]).await == token
    })
    .await;
    assert!(shared, "one token for the fleet");
    assert_eq!(fake.minted(SHOP_APPID), 1);
    let master = format!("127.0.0.1:{}", group.master.port);
    assert_eq!(
        masters_in_use(&http, &bases).await,
        [Some(master.clone()), Some(master)]
    );
    let record = group.hget(&group.key("wxt", "token", SHOP_APPID), "record");
    assert!(
        record.is_some_and(|r| r.contains(&token)),
        "stored over TLS"
    );
}
