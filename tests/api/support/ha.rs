//! High-availability scenarios of a fleet of instances, each run against any Redis deployment
//! (one server, Sentinel, Cluster): one fetch per refresh for the whole fleet, through
//! invalidations, outages and a slow refresher.

use std::time::Duration;

use wxtoken::fake::Fault;

use crate::support::fleet::*;
use crate::support::helpers::*;
use crate::support::redis_topology::Deployment;

/// Three instances over 11 s of 4 s tokens fetch about once per cycle; killing the one that
/// refreshed last changes nothing.
pub async fn once_per_cycle_and_losing_the_refresher(redis: &dyn Deployment) {
    let spec = short_tokens();
    let fake = start_fake(&spec).await;
    let mut fleet = Fleet::start(&spec, &fake, redis, 3);
    let http = client();

    let seen = watch_fleet(&http, &fake, &fleet.bases(), 11).await;
    let minted = fake.minted(SHOP_APPID);
    // 11 s at one refresh per ~2 s: 5 or 6 cycles plus the first fetch. Three uncoordinated
    // instances would fetch three times as often.
    assert!(seen.len() >= 5, "only {} tokens over 11 s", seen.len());
    assert!(
        (5..=8).contains(&minted),
        "{minted} fetches for about 6 cycles"
    );
    assert!(
        minted as usize <= seen.len() + 1,
        "{minted} fetches, {} tokens served",
        seen.len()
    );

    // Kill the instance that refreshed last: the others carry on, still one fetch per cycle.
    let last = redis
        .hget(&redis.key("wxt", "token", SHOP_APPID), "record")
        .expect("record in Redis");
    let record: serde_json::Value = serde_json::from_str(&last).unwrap();
    let refresher = record["fetched_by"].as_str().unwrap().to_string();
    assert!(record.get("token").is_some() && record["generation"].as_u64().unwrap() >= 5);
    fleet.kill(&refresher);
    let before = fake.minted(SHOP_APPID);
    let seen = watch_fleet(&http, &fake, &fleet.bases(), 7).await;
    let after = fake.minted(SHOP_APPID) - before;
    assert!(seen.len() >= 3, "{} tokens after the kill", seen.len());
    assert!(
        (3..=5).contains(&after),
        "{after} fetches in 7 s after the kill"
    );
}

/// 30 reports of the same token at each of three instances: one upstream fetch.
pub async fn invalidations_cost_one_fetch(redis: &dyn Deployment) {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let fleet = Fleet::start(&spec, &fake, redis, 3);
    let http = client();
    let bases = fleet.bases();
    let old = token_at(&http, &bases[0]).await;
    for b in &bases {
        assert_eq!(token_at(&http, b).await, old, "one token for the fleet");
    }
    assert_eq!(fake.minted(SHOP_APPID), 1);
    // Rejected by WeChat for real: each instance asks WeChat once, and the fleet fetches once.
    assert!(fake.kill_token(&old));

    let reports = bases.iter().flat_map(|b| {
        let http = http.clone();
        let url = format!("{b}/v1/apps/shop/token/invalidate");
        let old = old.clone();
        (0..30).map(move |_| {
            let http = http.clone();
            let url = url.clone();
            let body = serde_json::json!({ "access_token": old });
            async move {
                let mut r = http
                    .post(url)
                    .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
                    .send_json(&body)
                    .await
                    .unwrap();
                let v: serde_json::Value = r.json().await.unwrap();
                (r.status().as_u16(), v)
            }
        })
    });
    let answers = futures_util::future::join_all(reports).await;
    assert_eq!(
        fake.minted(SHOP_APPID),
        2,
        "one upstream fetch for the whole fleet"
    );
    let new = fake.current_token(SHOP_APPID).unwrap();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["access_token"], new.as_str());
        assert_eq!(body["refreshed"], true);
    }
    for b in &bases {
        assert_eq!(token_at(&http, b).await, new);
    }
}

/// Redis goes away: tokens keep being served, `wxtoken_redis_up` is 0, a report of the valid
/// token fetches nothing; Redis comes back empty: the tokens are written back, the reported
/// one replaced with one fetch for the fleet, with no restart.
pub async fn outage_costs_no_fetch_and_is_refilled(redis: &mut dyn Deployment) {
    // 60 s tokens: no refresh is due during the test.
    let spec = Spec {
        expires_in: 60,
        ..Spec::default()
    };
    let fake = start_fake(&spec).await;
    let fleet = Fleet::start(&spec, &fake, redis, 3);
    let shop_key = redis.key("wxt", "token", SHOP_APPID);
    let blog_key = redis.key("wxt", "token", BLOG_APPID);
    let http = client();
    let bases = fleet.bases();
    let token = token_at(&http, &bases[0]).await;
    let (_, blog) = get_json(&http, &format!("{}/v1/apps/blog/token", bases[0]), OPS_KEY).await;
    let blog = blog["access_token"].as_str().unwrap().to_string();
    // Every instance holds the fleet's tokens before Redis goes away (one still starting
    // would, rightly, fetch alone once Redis is gone: it has no valid token).
    for b in &bases {
        let (_, body) = get_json(&http, &format!("{b}/v1/apps/blog/token"), OPS_KEY).await;
        assert_eq!(body["access_token"], blog.as_str());
        assert_eq!(token_at(&http, b).await, token);
    }
    let minted = fake.minted(SHOP_APPID);

    redis.stop_all();
    // Every instance has noticed the outage (its `wxtoken_redis_up` is 0) before the checks
    // below, which are about serving while Redis is known to be down.
    let noticed = eventually(Duration::from_secs(8), || async {
        let mut all = true;
        for b in &bases {
            all &= sample_at(&http, b, "wxtoken_redis_up").await == Some(0.0);
        }
        all
    })
    .await;
    assert!(noticed, "every instance sees Redis down");
    for b in &bases {
        assert_eq!(token_at(&http, b).await, token, "{b} keeps serving");
        let mut r = http.get(format!("{b}/readyz")).send().await.unwrap();
        let ready: serde_json::Value = r.json().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{ready}");
        assert_eq!(ready["store"]["up"], false, "{ready}");
        assert_eq!(sample_at(&http, b, "wxtoken_redis_up").await, Some(0.0));
    }
    // Invalidating a token WeChat rejects while Redis is down must not fetch alone.
    assert!(fake.kill_token(&token));
    let mut r = http
        .post(format!("{}/v1/apps/shop/token/invalidate", bases[1]))
        .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
        .send_json(&serde_json::json!({ "access_token": token }))
        .await
        .unwrap();
    let inv: serde_json::Value = r.json().await.unwrap();
    assert_eq!(inv["access_token"], token.as_str());
    assert_eq!(inv["refreshed"], false);
    assert_eq!(
        fake.minted(SHOP_APPID),
        minted,
        "no upstream call while Redis is down"
    );

    redis.restart_all();
    let restored = eventually(Duration::from_secs(8), || async {
        redis.hget(&shop_key, "record").is_some() && redis.hget(&blog_key, "record").is_some()
    })
    .await;
    assert!(restored, "instances wrote their tokens back");
    let record = redis.hget(&blog_key, "record").unwrap();
    assert!(record.contains(&blog), "the same token was written back");
    assert_eq!(fake.minted(BLOG_APPID), 1, "no refetch to refill Redis");
    // The shop token reported as rejected during the outage is replaced once the lock can be
    // taken again: exactly one fetch for the whole fleet.
    let replaced = eventually(Duration::from_secs(5), || async {
        fake.minted(SHOP_APPID) == minted + 1
    })
    .await;
    assert!(replaced, "the rejected token is replaced after the outage");
    // Once every instance serves the replacement none has a rejected token left to replace,
    // so a second fetch can no longer start: counting after that is final.
    let new = fake.current_token(SHOP_APPID).unwrap();
    let adopted = eventually(Duration::from_secs(5), || async {
        let mut all = true;
        for b in &bases {
            all &= token_at(&http, b).await == new;
        }
        all
    })
    .await;
    assert!(adopted, "every instance adopted the replacement");
    assert_eq!(
        fake.minted(SHOP_APPID),
        minted + 1,
        "one fetch for the whole fleet"
    );
    assert_eq!(fake.minted(BLOG_APPID), 1, "no refetch to refill Redis");
}

/// A refresher whose lock expired mid-fetch cannot overwrite the newer token written meanwhile.
pub async fn slow_refresher_is_fenced(redis: &dyn Deployment) {
    let spec = Spec {
        upstream_timeout: Duration::from_secs(5),
        wait_limit: Duration::from_secs(5),
        ..Spec::default()
    };
    let fake = start_fake(&spec).await;
    // A 1 s lock, and a fetch that takes 2.5 s: the slow refresher's lock expires mid-fetch.
    let ttl = Duration::from_secs(1);
    let a = ThreadServer::start(fleet_settings(&spec, &fake, redis, "slow", ttl));
    let b = ThreadServer::start(fleet_settings(&spec, &fake, redis, "fast", ttl));
    let http = client();
    let old = token_at(&http, &a.base).await;
    assert_eq!(token_at(&http, &b.base).await, old);
    let shop_key = redis.key("wxt", "token", SHOP_APPID);
    let generation =
        |r: &dyn Deployment| -> u64 { r.hget(&shop_key, "generation").unwrap().parse().unwrap() };
    let g0 = generation(redis);

    fake.inject(Fault::Slow(Duration::from_millis(2500)), 1);
    assert!(fake.kill_token(&old));
    let invalidate = |base: String| {
        let http = http.clone();
        let old = old.clone();
        async move {
            let mut r = http
                .post(format!("{base}/v1/apps/shop/token/invalidate"))
                .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
                .send_json(&serde_json::json!({ "access_token": old }))
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let slow = actix_web::rt::spawn(invalidate(a.base.clone()));
    // Let the slow refresher take the lock and start its fetch first.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let fast = invalidate(b.base.clone()).await;
    let newer = fast["access_token"].as_str().unwrap().to_string();
    assert_ne!(newer, old);
    assert_eq!(generation(redis), g0 + 1);

    // The slow instance's caller is answered as soon as it adopts the newer token (through the
    // change notification), before its own fetch completes.
    let slow = slow.await.unwrap();
    assert_eq!(
        slow["access_token"],
        newer.as_str(),
        "the slow refresher's caller got the newer token"
    );
    // Its fetch then completes with an older generation, and must not be written.
    let both = eventually(Duration::from_secs(5), || async {
        fake.minted(SHOP_APPID) == 3
    })
    .await;
    assert!(both, "the slow fetch completed");
    // A bounded wait: the fenced save leaves no counter or metric behind (the slow instance
    // drops its record and adopts the stored one), so the only sign of a wrong write would be
    // the generation moving; 300 ms is many times the slow instance's save round trip.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(generation(redis), g0 + 1, "the older write was fenced off");
    let record = redis.hget(&shop_key, "record").unwrap();
    assert!(record.contains(&newer));
    assert_eq!(token_at(&http, &a.base).await, newer);
    assert_eq!(token_at(&http, &b.base).await, newer);
    a.stop();
    b.stop();
}

/// One ticket fetch for the fleet, and one new ticket for the fleet after a new token.
pub async fn tickets_are_shared(redis: &dyn Deployment) {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let names = ["t-0", "t-1", "t-2"];
    let servers: Vec<ThreadServer> = names
        .iter()
        .map(|n| {
            let mut s = fleet_settings(&spec, &fake, redis, n, Duration::from_secs(2));
            s.apps[0].tickets = vec![wxtoken::config::TicketKind::Jsapi];
            ThreadServer::start(s)
        })
        .collect();
    let http = client();
    let ticket_at = |base: String| {
        let http = http.clone();
        async move {
            let (status, body) = get_json(
                &http,
                &format!("{base}/v1/apps/shop/ticket/jsapi"),
                BILLING_KEY,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["ticket"].as_str().unwrap().to_string()
        }
    };
    let first = ticket_at(servers[0].base.clone()).await;
    for s in &servers {
        assert_eq!(ticket_at(s.base.clone()).await, first);
    }
    assert_eq!(
        fake.tickets_minted(SHOP_APPID),
        1,
        "one ticket fetch for the fleet"
    );

    // A new token (one fetch for the fleet) brings one new ticket for the fleet.
    let token = token_at(&http, &servers[1].base).await;
    assert!(fake.kill_token(&token));
    let mut r = http
        .post(format!("{}/v1/apps/shop/token/invalidate", servers[1].base))
        .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
        .send_json(&serde_json::json!({ "access_token": token }))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.body().await);
    let converged = eventually(Duration::from_secs(5), || async {
        let mut all = Vec::new();
        for s in &servers {
            all.push(ticket_at(s.base.clone()).await);
        }
        all.iter().all(|t| *t != first && *t == all[0])
    })
    .await;
    assert!(converged, "every instance serves the one new ticket");
    // A bounded wait: convergence shows every instance holds the new ticket, but a fetch
    // wrongly begun by a second instance before it adopted would land at the fake only when
    // its request arrives; no counter marks a fetch that was not begun.
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.minted(SHOP_APPID), 2);
    assert_eq!(fake.tickets_minted(SHOP_APPID), 2);
    for s in servers {
        s.stop();
    }
}
