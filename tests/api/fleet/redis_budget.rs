//! Fleet-wide budgets in Redis: the stable_token forced-refresh budget (20 a Beijing day,
//! 30 s apart) and the daily count of token calls, shared by every instance so that a fleet
//! together stays within WeChat's limits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wxtoken::config::{AppKind, Grant, Settings};
use wxtoken::fake::Endpoint;
use wxtoken::metrics::Metrics;
use wxtoken::store::{AppKey, RedisStore};

use crate::support::fleet::{fleet_settings, invalidate_at, token_at, RedisServer};
use crate::support::helpers::*;
use crate::support::redis_topology::Deployment;

fn key() -> AppKey {
    AppKey {
        name: "shop".into(),
        appid: SHOP_APPID.into(),
    }
}

async fn store(redis: &RedisServer, instance: &str) -> RedisStore {
    let metrics = Metrics::new(&[], wxtoken::config::MetricsMode::Full);
    RedisStore::open(&redis.store(instance), metrics)
        .await
        .expect("store opens")
}

/// 10:00 Beijing time on some day, plus `secs`.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 2 * 3600 + secs)
}

#[actix_web::test]
async fn forced_refreshes_are_counted_for_the_fleet_at_any_time_of_day() {
    let redis = RedisServer::start(None);
    let a = store(&redis, "a").await;
    let b = store(&redis, "b").await;
    assert!(a.spend_forced_refresh(&key(), at(0)).await.unwrap());
    // The other instance is held to the same 30 s.
    assert!(!b.spend_forced_refresh(&key(), at(29)).await.unwrap());
    assert!(b.spend_forced_refresh(&key(), at(30)).await.unwrap());
    // 20 a day between them, whoever spends.
    let mut t = 30;
    for i in 2..20 {
        t += 31;
        let s = if i % 2 == 0 { &a } else { &b };
        assert!(s.spend_forced_refresh(&key(), at(t)).await.unwrap(), "{i}");
    }
    assert!(
        !a.spend_forced_refresh(&key(), at(t + 3600)).await.unwrap(),
        "21st"
    );
    assert!(
        !b.spend_forced_refresh(&key(), at(t + 3600)).await.unwrap(),
        "21st"
    );
    // Midnight in Beijing (16:00 UTC) starts a new budget.
    let midnight = 14 * 3600;
    assert!(!a
        .spend_forced_refresh(&key(), at(midnight - 1))
        .await
        .unwrap());
    assert!(b.spend_forced_refresh(&key(), at(midnight)).await.unwrap());
    // An instance whose clock is behind does not reopen the old day.
    assert!(
        !a.spend_forced_refresh(&key(), at(midnight + 10))
            .await
            .unwrap(),
        "gap"
    );
    // Another credential has a budget of its own.
    let blog = AppKey {
        name: "blog".into(),
        appid: BLOG_APPID.into(),
    };
    assert!(a
        .spend_forced_refresh(&blog, at(midnight + 1))
        .await
        .unwrap());
}

#[actix_web::test]
async fn token_calls_are_counted_for_the_fleet_per_beijing_day() {
    let redis = RedisServer::start(None);
    let a = store(&redis, "a").await;
    let b = store(&redis, "b").await;
    assert_eq!(a.token_calls(&key(), at(0)).await.unwrap().used, 0);
    assert_eq!(a.count_token_call(&key(), at(0)).await.unwrap().used, 1);
    assert_eq!(b.count_token_call(&key(), at(5)).await.unwrap().used, 2);
    assert_eq!(a.count_token_call(&key(), at(9)).await.unwrap().used, 3);
    assert_eq!(b.token_calls(&key(), at(10)).await.unwrap().used, 3);
    let next_day = 14 * 3600;
    assert_eq!(a.token_calls(&key(), at(next_day)).await.unwrap().used, 0);
    assert_eq!(
        b.count_token_call(&key(), at(next_day)).await.unwrap().used,
        1
    );
    // A call counted by a clock still on the old day goes to the new one, not back.
    assert_eq!(
        a.count_token_call(&key(), at(next_day - 5))
            .await
            .unwrap()
            .used,
        2
    );
}

fn fleet(
    redis: &RedisServer,
    fake: &wxtoken::fake::FakeWechat,
    spec: &Spec,
    adjust: impl Fn(&mut Settings),
) -> Vec<ThreadServer> {
    ["budget-0", "budget-1", "budget-2"]
        .iter()
        .map(|name| {
            let mut s = fleet_settings(spec, fake, redis, name, Duration::from_secs(2));
            adjust(&mut s);
            ThreadServer::start(s)
        })
        .collect()
}

/// Until every instance serves `token`.
async fn all_serve(http: &awc::Client, servers: &[ThreadServer], token: &str) -> bool {
    eventually(Duration::from_secs(3), || async {
        for s in servers {
            if token_at(http, &s.base).await != token {
                return false;
            }
        }
        true
    })
    .await
}

#[actix_web::test]
async fn a_fleet_forces_a_stable_refresh_once_per_30_seconds_between_all_instances() {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let redis = RedisServer::start(None);
    let servers = fleet(&redis, &fake, &spec, |s| {
        s.apps[0].kind = AppKind::Official(Grant::Stable);
    });
    let http = client();
    let first = token_at(&http, &servers[0].base).await;
    assert!(all_serve(&http, &servers, &first).await);

    // Killed behind the fleet's back, as another holder of the secret forcing a refresh would.
    assert!(fake.kill_token(&first));
    let forced = invalidate_at(&http, &servers[0].base, &first).await;
    assert_eq!(forced["refreshed"], true, "{forced}");
    let second = forced["access_token"].as_str().unwrap().to_string();
    assert!(all_serve(&http, &servers, &second).await);
    let calls = fake.calls(Endpoint::StableToken);

    // Within 30 s of the fleet's forced refresh, the other instances (which forced nothing
    // themselves) are refused by the fleet's budget, promptly, and keep the token.
    assert!(fake.kill_token(&second));
    for s in &servers[1..] {
        let started = std::time::Instant::now();
        let a = invalidate_at(&http, &s.base, &second).await;
        assert_eq!(a["refreshed"], false, "{a}");
        assert_eq!(a["access_token"], second.as_str());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered at once"
        );
    }
    assert_eq!(
        fake.calls(Endpoint::StableToken),
        calls,
        "no forced refresh past WeChat's limits"
    );
    let mut m = http
        .get(format!("{}/metrics", servers[1].base))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(m.body().await.unwrap().to_vec()).unwrap();
    assert_eq!(
        sample(
            &text,
            r#"wxtoken_forced_refresh_refusals_total{app="shop"}"#
        ),
        Some(1.0)
    );
    for s in servers {
        s.stop();
    }
}

#[actix_web::test]
async fn a_fleet_makes_no_token_call_past_its_daily_quota_while_the_token_is_valid() {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let redis = RedisServer::start(None);
    let servers = fleet(&redis, &fake, &spec, |s| s.apps[0].daily_quota = 3);
    let http = client();
    // Call 1: the first fetch. Calls 2 and 3: reports at two instances.
    let mut token = token_at(&http, &servers[0].base).await;
    assert!(all_serve(&http, &servers, &token).await);
    for s in &servers[..2] {
        assert!(fake.kill_token(&token));
        let a = invalidate_at(&http, &s.base, &token).await;
        assert_eq!(a["refreshed"], true, "{a}");
        token = a["access_token"].as_str().unwrap().to_string();
        assert!(all_serve(&http, &servers, &token).await);
    }
    assert_eq!(fake.minted(SHOP_APPID), 3);
    // The third instance made no call itself, but the fleet used its 3.
    assert!(fake.kill_token(&token));
    let a = invalidate_at(&http, &servers[2].base, &token).await;
    assert_eq!(a["refreshed"], false, "{a}");
    assert_eq!(a["access_token"], token.as_str());
    assert_eq!(fake.minted(SHOP_APPID), 3, "no call past the fleet's quota");
    let calls = redis.hget(&redis.key("wxt", "budget", SHOP_APPID), "calls");
    assert_eq!(calls.as_deref(), Some("3"));
    for s in &servers {
        let mut m = http
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap();
        let text = String::from_utf8(m.body().await.unwrap().to_vec()).unwrap();
        assert_eq!(
            sample(&text, r#"wxtoken_quota_used_today{app="shop"}"#),
            Some(3.0),
            "{} reports the fleet's count",
            s.base
        );
    }
    for s in servers {
        s.stop();
    }
}
