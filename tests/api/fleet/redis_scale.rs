//! Redis mode with many apps, at small scale against a real `redis-server`: concurrent re-reads
//! share pipelined round trips, a reconnect costs one read per app in a few pipelines, the
//! instance that wrote a token does not re-read it on its own announcement, and the idle
//! periodic re-reads travel in a few pipelines a second. The figures at 10,000 apps come from
//! `BENCH_STORE=redis scripts/bench-scale`.
//!
//! Round trips are counted on the client where the store is at hand, and otherwise by Redis
//! itself: `total_reads_processed` (socket reads, so a pipeline is one or two however many
//! commands it holds) and `SLOWLOG` with a threshold of 0, which logs every command.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use wxtoken::config::{RedisSettings, Settings, StoreSettings};
use wxtoken::metrics::{Metrics, MetricsMode};
use wxtoken::store::{AppKey, RedisStore, Stored, TokenStore};
use wxtoken::token::{AccessToken, QuotaUsage, TokenRecord};

use crate::support::fleet::{redis_settings, RedisServer};
use crate::support::helpers::*;

const APPS: usize = 200;
/// Periodic re-reads far enough apart never to come during a test.
const NO_POLLS: Duration = Duration::from_secs(86_400);

/// One connection to Redis for looking at it, so that looking adds one socket read per
/// command and no connection set-up.
struct Probe(redis::Connection);

impl Probe {
    fn new(redis: &RedisServer) -> Probe {
        Probe(redis.connection().expect("Redis answers"))
    }

    fn command(&mut self, args: &[&str]) -> redis::Value {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut self.0).expect("Redis command")
    }

    fn info(&mut self, section: &str) -> String {
        redis::cmd("INFO")
            .arg(section)
            .query(&mut self.0)
            .expect("INFO")
    }

    /// `HGET`s Redis has run (those of scripts too), and the socket reads it has made: a round
    /// trip costs one (a large pipeline, a few). Two commands, so two socket reads.
    fn counters(&mut self) -> (u64, u64) {
        let hgets = self
            .info("commandstats")
            .lines()
            .find_map(|l| {
                let calls = l.strip_prefix("cmdstat_hget:calls=")?;
                calls.split(',').next()?.parse().ok()
            })
            .unwrap_or(0);
        let reads = self
            .info("stats")
            .lines()
            .find_map(|l| {
                l.strip_prefix("total_reads_processed:")?
                    .trim()
                    .parse()
                    .ok()
            })
            .expect("total_reads_processed in INFO stats");
        (hgets, reads)
    }

    /// Every command logged since the last `SLOWLOG RESET` (with the threshold at 0), as
    /// words, newest first. Commands a script runs are logged too.
    fn logged_commands(&mut self) -> Vec<Vec<String>> {
        let redis::Value::Array(entries) = self.command(&["SLOWLOG", "GET", "-1"]) else {
            panic!("SLOWLOG GET answers an array");
        };
        entries
            .into_iter()
            .filter_map(|entry| match entry {
                redis::Value::Array(fields) => match fields.into_iter().nth(3) {
                    Some(redis::Value::Array(args)) => Some(
                        args.into_iter()
                            .map(|a| match a {
                                redis::Value::BulkString(b) => {
                                    String::from_utf8_lossy(&b).into_owned()
                                }
                                other => format!("{other:?}"),
                            })
                            .collect(),
                    ),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }
}

/// `APPS` apps `wxscale000000000`..., each with its own secret, and a client for all.
fn many_apps() -> (Vec<(String, String)>, String) {
    let creds: Vec<(String, String)> = (0..APPS)
        .map(|i| (format!("wxscale{i:09}"), format!("scale-secret-{i:09}")))
        .collect();
    let mut config = String::new();
    for (i, (appid, secret)) in creds.iter().enumerate() {
        writeln!(
            config,
            "[[apps]]\nname = \"scale{i}\"\nappid = \"{appid}\"\nsecret = \"{secret}\""
        )
        .unwrap();
    }
    config.push_str(
        "[[clients]]\nname = \"scale\"\nkey = \"scale-client-key-000000000001\"\napps = [\"*\"]\n",
    );
    (creds, config)
}

fn redis_store(redis: &RedisServer, instance: &str, poll_interval: Duration) -> StoreSettings {
    StoreSettings::Redis(RedisSettings {
        key_prefix: "wxt".into(),
        lock_ttl: Duration::from_secs(5),
        poll_interval,
        // These tests are about tokens: no local copy of platform records.
        local_path: None,
        ..RedisSettings::for_url(&redis.url(), instance)
    })
}

/// A server with `APPS` apps against `redis`, ready (every app holds a token).
async fn many_app_server(redis: &RedisServer, poll_interval: Duration) -> TestApp {
    let spec = Spec::default();
    let (creds, config) = many_apps();
    let pairs: Vec<(&str, &str)> = creds
        .iter()
        .map(|(a, s)| (a.as_str(), s.as_str()))
        .collect();
    let fake = start_fake_with(&spec, &pairs, &[]).await;
    let store = redis_store(redis, "scale-0", poll_interval);
    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .config(&config)
        .adjust(|(s, _): &mut (Settings, _)| s.store = store)
        .start()
        .await;
    let ready = eventually(Duration::from_secs(30), || async {
        app.get("/readyz", None).await.status == 200
    })
    .await;
    assert!(ready, "every app has its token");
    app
}

#[actix_web::test]
async fn concurrent_reads_share_one_round_trip_and_a_frozen_redis_fails_each_in_time() {
    let redis = RedisServer::start(None);
    let settings = match redis_store(&redis, "direct", NO_POLLS) {
        StoreSettings::Redis(r) => r,
        _ => unreachable!(),
    };
    let store = RedisStore::open(&settings, Metrics::new(&[], MetricsMode::Full))
        .await
        .expect("store opens");
    let keys: Vec<AppKey> = (0..APPS)
        .map(|i| AppKey {
            name: format!("app{i}"),
            appid: format!("wxdirect{i:06}"),
        })
        .collect();
    let now = std::time::SystemTime::now();
    for k in keys.iter().step_by(2) {
        let stored = Stored {
            record: TokenRecord {
                appid: k.appid.clone(),
                token: AccessToken::new(format!("token-of-{}", k.appid)),
                fetched_at: now,
                expires_at: now + Duration::from_secs(7200),
                generation: 1,
            },
            quota: QuotaUsage::default(),
            fetched_by: Some("direct".into()),
            depends_on: None,
        };
        assert!(store.save(k, &stored).await.expect("saved"));
    }

    let before = store.read_stats();
    let loads = futures_util::future::join_all(keys.iter().map(|k| store.load(k))).await;
    for (i, (k, loaded)) in keys.iter().zip(loads).enumerate() {
        let loaded = loaded.expect("read");
        match loaded {
            Some(s) => {
                assert_eq!(i % 2, 0);
                assert_eq!(s.record.token.expose(), format!("token-of-{}", k.appid));
            }
            None => assert_eq!(i % 2, 1, "{} has a record", k.appid),
        }
    }
    let after = store.read_stats();
    assert_eq!(after.keys - before.keys, APPS as u64);
    assert_eq!(
        after.round_trips - before.round_trips,
        1,
        "{APPS} reads, one pipeline"
    );

    // Frozen: every caller is told within the command timeout (1 s, plus the batching
    // window), as a single read would be; none waits behind another batch.
    redis.signal("STOP");
    let started = Instant::now();
    let loads = futures_util::future::join_all(keys.iter().map(|k| store.load(k))).await;
    let took = started.elapsed();
    redis.signal("CONT");
    for loaded in loads {
        let err = format!("{:#}", loaded.expect_err("Redis is frozen"));
        assert!(err.contains("timed out"), "{err}");
    }
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[actix_web::test]
async fn a_resubscribe_over_many_apps_costs_one_read_per_app_in_a_few_round_trips() {
    let redis = RedisServer::start(None);
    let _app = many_app_server(&redis, NO_POLLS).await;
    // The start-up re-reads (the first subscription) are over.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let mut probe = Probe::new(&redis);
    let (hgets0, reads0) = probe.counters();

    // Cut the change subscription: the store subscribes again a second later and, since
    // announcements may have been missed meanwhile, every actor re-reads its record.
    probe.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
    let (hgets1, reads1) = probe.counters();

    let read = hgets1 - hgets0;
    let round_trips = reads1 - reads0;
    eprintln!("resubscribe with {APPS} apps: {read} HGETs in {round_trips} socket reads");
    assert!(
        (APPS as u64..=APPS as u64 + 5).contains(&read),
        "every app re-read once: {read} HGETs"
    );
    // The re-reads' pipeline, the new subscription's connection, two or three health pings
    // and the probe's three commands.
    assert!(
        round_trips <= 15,
        "{round_trips} socket reads for {APPS} re-reads"
    );
}

#[actix_web::test]
async fn idle_periodic_rereads_come_spread_in_a_few_pipelines_a_second() {
    let redis = RedisServer::start(None);
    let _app = many_app_server(&redis, Duration::from_secs(1)).await;
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let mut probe = Probe::new(&redis);
    let (hgets0, reads0) = probe.counters();
    let window = Duration::from_secs(3);
    actix_web::rt::time::sleep(window).await;
    let (hgets1, reads1) = probe.counters();

    let read = hgets1 - hgets0;
    let round_trips = reads1 - reads0;
    eprintln!(
        "idle, {APPS} apps polling every second: {read} HGETs in {round_trips} socket reads over {window:?}"
    );
    // Each app re-reads once a second...
    let expected = APPS as u64 * window.as_secs();
    assert!(
        read >= expected * 8 / 10 && read <= expected * 12 / 10,
        "{read} HGETs, expected about {expected}"
    );
    // ...in about ten pipelines a second (plus a health ping), not one round trip each.
    assert!(
        round_trips <= 20 * window.as_secs(),
        "{round_trips} socket reads for {read} re-reads"
    );
}

#[actix_web::test]
async fn the_instance_that_wrote_a_token_does_not_reread_it_on_its_announcement() {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let redis = RedisServer::start(None);
    let start = |name: &str| {
        let mut s = redis_settings(&spec, &fake, &redis, name, Duration::from_secs(5));
        if let StoreSettings::Redis(r) = &mut s.store {
            r.poll_interval = NO_POLLS;
        }
        ThreadServer::start(s)
    };
    let (writer, reader) = (start("writer"), start("reader"));
    let http = client();
    let token_at = |base: String| {
        let http = http.clone();
        async move {
            let (status, body) =
                get_json(&http, &format!("{base}/v1/apps/shop/token"), BILLING_KEY).await;
            assert_eq!(status, 200, "{body}");
            body["access_token"].as_str().unwrap().to_string()
        }
    };
    let old = token_at(writer.base.clone()).await;
    assert_eq!(token_at(reader.base.clone()).await, old);
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;

    let mut probe = Probe::new(&redis);
    probe.command(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    probe.command(&["CONFIG", "SET", "slowlog-max-len", "10000"]);
    probe.command(&["SLOWLOG", "RESET"]);
    assert!(fake.kill_token(&old));
    let mut r = http
        .post(format!("{}/v1/apps/shop/token/invalidate", writer.base))
        .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
        .send_json(&serde_json::json!({ "access_token": old }))
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    let new = body["access_token"].as_str().unwrap().to_string();
    assert_ne!(new, old, "{body}");
    let adopted = eventually(Duration::from_secs(5), || async {
        token_at(reader.base.clone()).await == new
    })
    .await;
    assert!(adopted, "the other instance adopted the new token");
    // A bounded wait: the claim is that the writer does not read back its own record, and a
    // read that is not made leaves no counter; 500 ms is far past the announcement's handling.
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;

    let commands = probe.logged_commands();
    let shop_reads = commands
        .iter()
        .filter(|c| {
            c.len() == 3
                && c[0].eq_ignore_ascii_case("hget")
                && c[1] == format!("wxt:token:{SHOP_APPID}")
                && c[2] == "record"
        })
        .count();
    // The writer's re-read under the lock, and the other instance's on the announcement: the
    // writer does not read again what it has just written.
    assert_eq!(shop_reads, 2, "{commands:?}");
    writer.stop();
    reader.stop();
}
