//! The fleet on a Redis Cluster (three masters, one replica each): the single-server HA suite
//! against it, and a master killed under load while its replica is promoted.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use wxtoken::fake::Validity;

use crate::support::fleet::{revoke_at, token_at, Fleet};
use crate::support::ha;
use crate::support::helpers::*;
use crate::support::redis_topology::{Deployment, RedisCluster};

#[actix_web::test]
async fn cluster_fleet_fetches_once_per_cycle_and_survives_losing_the_refresher() {
    ha::once_per_cycle_and_losing_the_refresher(&RedisCluster::start()).await;
}

#[actix_web::test]
async fn cluster_fleet_invalidations_cost_one_fetch_and_slow_refreshers_are_fenced() {
    let cluster = RedisCluster::start();
    // One cluster for three tests (each with a fake WeChat of its own): emptied in between.
    ha::invalidations_cost_one_fetch(&cluster).await;
    cluster.flush();
    ha::slow_refresher_is_fenced(&cluster).await;
    cluster.flush();
    ha::tickets_are_shared(&cluster).await;
}

#[actix_web::test]
async fn cluster_outage_costs_no_fetch_and_an_empty_cluster_is_refilled() {
    ha::outage_costs_no_fetch_and_is_refilled(&mut RedisCluster::start()).await;
}

#[actix_web::test]
async fn killing_the_master_of_the_tokens_slot_keeps_the_fleet_serving() {
    // 10 s tokens, refreshed with 5 s left: a promotion (about 2 s with a 1 s node timeout)
    // fits well inside the token's remaining life.
    let spec = Spec {
        expires_in: 10,
        overlap_secs: 1,
        ..Spec::default()
    };
    let fake = start_fake(&spec).await;
    let mut cluster = RedisCluster::start();
    let fleet = Fleet::start(&spec, &fake, &cluster, 3);
    let http = client();
    let bases = fleet.bases();
    let first = token_at(&http, &bases[0]).await;
    // Every instance holds the fleet's token before the master goes (one still starting would,
    // rightly, fetch alone while the slot has no master: it has no valid token).
    let converged = eventually(Duration::from_secs(5), || async {
        for b in &bases {
            if token_at(&http, b).await != first {
                return false;
            }
        }
        true
    })
    .await;
    assert!(converged, "the fleet shares one token");
    let key = cluster.key("wxt", "token", SHOP_APPID);
    assert!(
        cluster
            .hget(&key, "record")
            .is_some_and(|r| r.contains(&first)),
        "the record is stored under its hash-tagged key"
    );

    let victim = cluster.master_of(&key).expect("the slot has a master");
    cluster.kill_port(victim);
    let killed = Instant::now();
    let mut seen = HashSet::new();
    let mut served = 0u32;
    // Every instance serves a valid token, whatever the moment.
    async fn serve(
        http: &awc::Client,
        fake: &wxtoken::fake::FakeWechat,
        bases: &[String],
        since: Instant,
        seen: &mut HashSet<String>,
    ) -> u32 {
        for b in bases {
            let t = token_at(http, b).await;
            assert_eq!(
                fake.validity(&t),
                Validity::Valid,
                "{b} served a dead token {:?} after the master was killed",
                since.elapsed()
            );
            seen.insert(t);
        }
        bases.len() as u32
    }
    // Until the replica serves the slot.
    let promoted = loop {
        served += serve(&http, &fake, &bases, killed, &mut seen).await;
        if cluster.master_of(&key).is_some_and(|m| m != victim) {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(15), "no promotion");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let served_until_promotion = served;
    // Until a refresh through the fleet is written to the promoted replica.
    let followed = loop {
        let (status, _) = revoke_at(&http, &bases[1]).await;
        if status == 200 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "no refresh after the promotion"
        );
        served += serve(&http, &fake, &bases, killed, &mut seen).await;
    };
    eprintln!(
        "cluster failover: the replica served the slot {promoted:?} after its master was killed, \
         the fleet refreshed through it at {followed:?}; {served_until_promotion} tokens served \
         until the promotion, all valid"
    );
    // Serve for 15 s from the kill: the promotion, then the refresh cycles after it.
    while killed.elapsed() < Duration::from_secs(15) {
        served += serve(&http, &fake, &bases, killed, &mut seen).await;
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 100, "{served} tokens served");
    // No restart needed: every instance reports the store up again.
    for b in &bases {
        let (_, ready) = get_json(&http, &format!("{b}/readyz"), OPS_KEY).await;
        assert_eq!(ready["store"]["up"], true, "{b}: {ready}");
    }
    cluster.wait_ok();
    assert_ne!(
        cluster.master_of(&key),
        Some(victim),
        "the replica took over the slot"
    );
    // Refreshes went on through the promoted replica: the record there is the fleet's token.
    let current = fake.current_token(SHOP_APPID).unwrap();
    let stored = cluster.hget(&key, "record").unwrap_or_default();
    assert!(
        stored.contains(&current),
        "the promoted replica holds the current token"
    );
    // 15 s of 10 s tokens refreshed at half-life (two or three refreshes, one fetch each),
    // the first fetch and the one invalidation.
    let minted = fake.minted(SHOP_APPID);
    assert!(
        (3..=7).contains(&minted),
        "{minted} fetches in total, {} tokens served",
        seen.len()
    );
    assert!(
        minted as usize <= seen.len() + 1,
        "{minted} fetches, {} tokens",
        seen.len()
    );
}

#[actix_web::test]
async fn a_fleet_shares_tokens_through_a_tls_cluster() {
    let pki = crate::support::redis_topology::Pki::new(&["127.0.0.1"]);
    let cluster = RedisCluster::start_tls(&pki);
    ha::invalidations_cost_one_fetch(&cluster).await;
    let record = cluster.hget(&cluster.key("wxt", "token", SHOP_APPID), "record");
    assert!(record.is_some(), "the record is on the cluster, over TLS");
}
