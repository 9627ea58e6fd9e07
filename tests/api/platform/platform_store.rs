//! The Open Platform's durable records in both stores, against a real `redis-server` and real
//! files: last-writer-wins between instances, a flushed Redis refilled from the instances'
//! local copies after every instance restarted, saves and loads while Redis is down, a full
//! disk under the local file, and never a refresh token or ticket in a log line or an error.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use wxtoken::config::RedisSettings;
use wxtoken::metrics::{Metrics, MetricsMode};
use wxtoken::store::platform::{
    code_digest, AuthorizerRecord, CodeRecord, CodeState, PlatformStore, TicketRecord,
};
use wxtoken::store::{EmbeddedStore, RedisStore, TokenStore as _};
use wxtoken::token::AccessToken;

use crate::support::fleet::RedisServer;
use crate::support::helpers::eventually;
use crate::support::tmpfs::Tmpfs;

const PLATFORM: &str = "saas";
/// Every secret of these tests contains it: no log line or error may.
const MARK: &str = "SECRET";

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

fn appid(i: usize) -> String {
    format!("wxauth{i:010}")
}

fn refresh_token(i: usize, updated_ms: u64) -> String {
    format!("refresh@@@{MARK}-{i}-{updated_ms}")
}

fn authorizer(i: usize, updated_ms: u64) -> AuthorizerRecord {
    AuthorizerRecord::authorized(
        appid(i),
        Some(AccessToken::new(refresh_token(i, updated_ms))),
        vec![1, 15],
        Some(at(1_700_000_000_000)),
        at(updated_ms),
    )
}

fn ticket(received_ms: u64) -> TicketRecord {
    TicketRecord {
        component_appid: "wxcomponent00001".into(),
        ticket: AccessToken::new(format!("ticket@@@{MARK}-{received_ms}")),
        received_at: at(received_ms),
    }
}

fn settings(redis: &RedisServer, local: &Path, instance: &str) -> RedisSettings {
    RedisSettings {
        key_prefix: "wxp".into(),
        lock_ttl: Duration::from_secs(5),
        poll_interval: Duration::from_secs(3600),
        local_path: Some(local.to_path_buf()),
        ..RedisSettings::for_url(&redis.url(), instance)
    }
}

async fn open(redis: &RedisServer, local: &Path, instance: &str) -> RedisStore {
    let metrics = Metrics::new(&[], MetricsMode::Full);
    RedisStore::open(&settings(redis, local, instance), metrics)
        .await
        .expect("store opens")
}

/// Everything the stores log while the guard lives, from every thread they use.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let w = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// No secret in any line.
    fn assert_clean(&self) {
        let text = self.text();
        assert!(!text.contains(MARK), "a secret was logged:\n{text}");
    }
}

fn hlen(redis: &RedisServer) -> usize {
    let mut c = redis.connection().expect("Redis answers");
    redis::cmd("HLEN")
        .arg(format!("wxp:platform:{PLATFORM}:authorizers"))
        .query(&mut c)
        .expect("HLEN")
}

fn redis_ticket(redis: &RedisServer) -> Option<String> {
    let mut c = redis.connection().ok()?;
    redis::cmd("GET")
        .arg(format!("wxp:platform:{PLATFORM}:ticket"))
        .query(&mut c)
        .ok()?
}

fn flushall(redis: &RedisServer) {
    let mut c = redis.connection().expect("Redis answers");
    let _: () = redis::cmd("FLUSHALL").query(&mut c).expect("FLUSHALL");
}

#[actix_web::test]
async fn the_newest_record_wins_across_instances() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let a = open(&redis, &dir.path().join("a.redb"), "a").await;
    let b = open(&redis, &dir.path().join("b.redb"), "b").await;

    assert_eq!(
        a.save_authorizers(PLATFORM, &[authorizer(1, 2_000)])
            .await
            .unwrap(),
        [true]
    );
    // B's view is older: not written, and B sees A's record.
    assert_eq!(
        b.save_authorizers(PLATFORM, &[authorizer(1, 1_000), authorizer(2, 1_000)])
            .await
            .unwrap(),
        [false, true]
    );
    assert_eq!(
        b.load_authorizer(PLATFORM, &appid(1)).await.unwrap(),
        Some(authorizer(1, 2_000))
    );
    assert_eq!(
        b.save_authorizers(PLATFORM, &[authorizer(1, 3_000)])
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(
        a.load_authorizers(PLATFORM).await.unwrap(),
        [authorizer(1, 3_000), authorizer(2, 1_000)]
    );

    a.save_ticket(PLATFORM, &ticket(20)).await.unwrap();
    b.save_ticket(PLATFORM, &ticket(10)).await.unwrap();
    assert_eq!(b.load_ticket(PLATFORM).await.unwrap(), Some(ticket(20)));
    assert_eq!(a.load_ticket(PLATFORM).await.unwrap(), Some(ticket(20)));
    logs.assert_clean();
}

#[actix_web::test]
async fn a_flushed_redis_and_a_restart_of_every_instance_lose_no_refresh_token() {
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (path_a, path_b) = (dir.path().join("a.redb"), dir.path().join("b.redb"));
    let a = open(&redis, &path_a, "a").await;
    let b = open(&redis, &path_b, "b").await;
    // Each instance saves its own share (as the one that received the events).
    let from_a: Vec<_> = (0..1_000).map(|i| authorizer(i, 5_000)).collect();
    let from_b: Vec<_> = (1_000..1_500).map(|i| authorizer(i, 5_000)).collect();
    a.save_authorizers(PLATFORM, &from_a).await.unwrap();
    b.save_authorizers(PLATFORM, &from_b).await.unwrap();
    a.save_ticket(PLATFORM, &ticket(7)).await.unwrap();
    assert_eq!(hlen(&redis), 1_500);
    drop((a, b));

    flushall(&redis);
    assert_eq!(hlen(&redis), 0);
    // Every instance restarts: new store objects over the same local files.
    let a = open(&redis, &path_a, "a2").await;
    let b = open(&redis, &path_b, "b2").await;
    let refilled = eventually(Duration::from_secs(10), || async {
        hlen(&redis) == 1_500 && redis_ticket(&redis).is_some()
    })
    .await;
    assert!(
        refilled,
        "Redis holds {} records after the restart",
        hlen(&redis)
    );

    let mut expected: Vec<_> = from_a.iter().chain(&from_b).cloned().collect();
    expected.sort_by(|x, y| x.appid.cmp(&y.appid));
    for store in [&a, &b] {
        assert_eq!(store.load_authorizers(PLATFORM).await.unwrap(), expected);
        assert_eq!(store.load_ticket(PLATFORM).await.unwrap(), Some(ticket(7)));
    }
    // Redis itself (not only the merged loads) holds the refresh tokens again.
    let mut c = redis.connection().unwrap();
    let raw: String = redis::cmd("HGET")
        .arg(format!("wxp:platform:{PLATFORM}:authorizers"))
        .arg(appid(1_234))
        .query(&mut c)
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(json["refresh_token"], refresh_token(1_234, 5_000));
    assert!(logs
        .text()
        .contains("wrote platform records Redis lacked back"));
    logs.assert_clean();
}

#[actix_web::test]
async fn while_redis_is_down_saves_land_locally_and_are_written_back_when_it_returns() {
    let (logs, _guard) = Logs::capture();
    let mut redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let store = open(&redis, &path, "a").await;
    store
        .save_authorizers(PLATFORM, &[authorizer(0, 1_000)])
        .await
        .unwrap();

    redis.stop();
    // Seen down by the health loop, so that its transition to up is what writes back.
    let down = eventually(Duration::from_secs(5), || async {
        store.health().is_some_and(|h| !h.up)
    })
    .await;
    assert!(down, "the store noticed Redis is gone");
    let during: Vec<_> = (1..=50).map(|i| authorizer(i, 2_000)).collect();
    let written = store
        .save_authorizers(PLATFORM, &during)
        .await
        .expect("durable in the local copy while Redis is down");
    assert!(written.iter().all(|w| *w));
    store
        .save_ticket(PLATFORM, &ticket(30))
        .await
        .expect("durable in the local copy");
    // Loads during the outage come from the local file.
    let loaded = store.load_authorizers(PLATFORM).await.unwrap();
    assert_eq!(loaded.len(), 51);
    assert_eq!(loaded[50], authorizer(50, 2_000));
    assert_eq!(
        store.load_authorizer(PLATFORM, &appid(7)).await.unwrap(),
        Some(authorizer(7, 2_000))
    );
    assert_eq!(store.load_ticket(PLATFORM).await.unwrap(), Some(ticket(30)));

    // It comes back empty (nothing persisted): the health loop's transition writes back all.
    redis.restart();
    let back = eventually(Duration::from_secs(10), || async {
        hlen(&redis) == 51 && redis_ticket(&redis).is_some()
    })
    .await;
    assert!(back, "Redis holds {} records", hlen(&redis));
    let other = open(&redis, &dir.path().join("b.redb"), "b").await;
    assert_eq!(
        other.load_authorizer(PLATFORM, &appid(50)).await.unwrap(),
        Some(authorizer(50, 2_000))
    );
    assert_eq!(other.load_ticket(PLATFORM).await.unwrap(), Some(ticket(30)));
    let text = logs.text();
    assert!(text.contains("local copy only"), "{text}");
    logs.assert_clean();
}

#[actix_web::test]
async fn a_failed_redis_write_is_repaired_while_redis_stays_up() {
    // Redis answers but refuses writes for a moment: no up transition, so the failed save
    // itself must ask for the write-back.
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let store = open(&redis, &dir.path().join("a.redb"), "a").await;
    // The write-back at start (over an empty file) is done by then, so only the failed save
    // can ask for the next one.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let mut c = redis.connection().unwrap();
    // A string where the hash should be: HSET fails with WRONGTYPE.
    let _: () = redis::cmd("SET")
        .arg(format!("wxp:platform:{PLATFORM}:authorizers"))
        .arg("x")
        .query(&mut c)
        .unwrap();
    let written = store
        .save_authorizers(PLATFORM, &[authorizer(1, 1_000)])
        .await
        .expect("durable locally");
    assert_eq!(written, [true]);
    let _: () = redis::cmd("DEL")
        .arg(format!("wxp:platform:{PLATFORM}:authorizers"))
        .query(&mut c)
        .unwrap();
    let repaired = eventually(Duration::from_secs(10), || async { hlen(&redis) == 1 }).await;
    assert!(repaired, "the record reached Redis after the failure");
    logs.assert_clean();
}

#[actix_web::test]
async fn many_records_go_in_pipelines_and_load_by_hscan() {
    let redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let store = open(&redis, &dir.path().join("a.redb"), "a").await;
    let n = 20_000;
    let records: Vec<_> = (0..n).map(|i| authorizer(i, 1_000)).collect();
    let started = Instant::now();
    let written = store.save_authorizers(PLATFORM, &records).await.unwrap();
    let saved = started.elapsed();
    assert_eq!(written.len(), n);
    assert!(written.iter().all(|w| *w));
    let started = Instant::now();
    let loaded = store.load_authorizers(PLATFORM).await.unwrap();
    let took = started.elapsed();
    eprintln!(
        "{n} authorizer records: saved in {saved:?} (Redis and local file), loaded in {took:?}"
    );
    assert_eq!(loaded.len(), n);
    assert_eq!(hlen(&redis), n);
    let mut c = redis.connection().unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut c)
        .unwrap();
    let calls = |cmd: &str| {
        stats
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("cmdstat_{cmd}:calls="))?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    assert_eq!(calls("hgetall"), 0, "{stats}");
    assert!(calls("hscan") >= (n / 1_000) as u64, "{stats}");
    // 20,000 records in script calls of 500: 40 calls, not 20,000 commands from the client.
    // The write-back at start may compare what the local file holds by then (up to 40 more
    // calls), but it writes no record Redis already has.
    let scripts = calls("eval") + calls("evalsha");
    assert!(
        (40..=80).contains(&scripts),
        "{scripts} script calls: {stats}"
    );
    assert_eq!(calls("hset"), n as u64, "each record written once: {stats}");
}

#[actix_web::test]
async fn a_full_disk_is_an_error_and_the_records_are_saved_once_space_is_back() {
    let Some(disk) = Tmpfs::mount("4m") else {
        return;
    };
    let (logs, _guard) = Logs::capture();
    let path = disk.path().join("platform.redb");
    let metrics = Metrics::new(&[], MetricsMode::Full);
    let store = EmbeddedStore::open(&path, metrics).unwrap();
    store
        .save_authorizers(PLATFORM, &[authorizer(0, 1_000)])
        .await
        .unwrap();

    let filler = disk.fill();
    let batch: Vec<_> = (1..=200).map(|i| authorizer(i, 2_000)).collect();
    let e = store
        .save_authorizers(PLATFORM, &batch)
        .await
        .expect_err("a full disk is an error to the caller");
    assert!(!format!("{e:#}").contains(MARK), "{e:#}");
    let e = store.save_ticket(PLATFORM, &ticket(9)).await.unwrap_err();
    assert!(!format!("{e:#}").contains(MARK), "{e:#}");
    // Not lost: kept, reported, and served by loads meanwhile.
    let pending = store.not_durable_records();
    assert_eq!(pending.len(), 201, "{pending:?}");
    assert!(pending.contains(&format!("{PLATFORM}/authorizer/{}", appid(200))));
    assert!(pending.contains(&format!("{PLATFORM}/ticket")));
    assert_eq!(
        store.load_authorizer(PLATFORM, &appid(200)).await.unwrap(),
        Some(authorizer(200, 2_000))
    );
    assert_eq!(store.load_authorizers(PLATFORM).await.unwrap().len(), 201);

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let saved = eventually(Duration::from_secs(15), || async {
        store.not_durable_records().is_empty()
    })
    .await;
    assert!(saved, "still pending 15 s after space came back");
    eprintln!(
        "platform records saved {:?} after space came back",
        freed.elapsed()
    );
    drop(store);
    let store = EmbeddedStore::open(&path, Metrics::new(&[], MetricsMode::Full)).unwrap();
    assert_eq!(store.load_authorizers(PLATFORM).await.unwrap().len(), 201);
    assert_eq!(store.load_ticket(PLATFORM).await.unwrap(), Some(ticket(9)));
    // The capture sees the retry, which logs from a blocking thread: a clean capture means
    // something.
    assert!(
        logs.text().contains("could not be saved before"),
        "{}",
        logs.text()
    );
    logs.assert_clean();
    drop(store);
    drop(disk);
}

#[actix_web::test]
async fn events_of_other_kinds_go_to_a_capped_redis_list_and_the_local_file() {
    let redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let store = open(&redis, &dir.path().join("local.redb"), "a").await;
    let event = |i: u64| wxtoken::store::platform::EventRecord {
        info_type: "notify_third_fasteregister".into(),
        received_at: at(1_700_000_000_000 + i),
        xml: format!("<xml><N>{i}</N></xml>"),
    };
    for i in 0..3 {
        store.save_event("saas", &event(i)).await.expect("saved");
    }
    let mut c = redis.connection().expect("Redis answers");
    let listed: Vec<String> = redis::cmd("LRANGE")
        .arg("wxp:platform:saas:events")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed[0].contains("<N>2</N>"), "newest first: {listed:?}");
    // Redis down: the local file still takes it, so the push can be acknowledged.
    drop(c);
    let mut redis = redis;
    redis.stop();
    store
        .save_event("saas", &event(3))
        .await
        .expect("kept locally while Redis is down");
}

#[actix_web::test]
async fn platform_records_work_on_a_redis_cluster_too() {
    use crate::support::redis_topology::{Deployment, RedisCluster};
    let (logs, _guard) = Logs::capture();
    let cluster = RedisCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let open = |local: std::path::PathBuf, instance: &str| {
        let settings = RedisSettings {
            key_prefix: "wxp".into(),
            poll_interval: Duration::from_secs(3600),
            local_path: Some(local),
            ..cluster.store(instance)
        };
        async move {
            RedisStore::open(&settings, Metrics::new(&[], MetricsMode::Full))
                .await
                .expect("store opens")
        }
    };
    let (path_a, path_b) = (dir.path().join("a.redb"), dir.path().join("b.redb"));
    let a = open(path_a.clone(), "a").await;
    let b = open(path_b, "b").await;
    // 1,200 records: three script calls in one pipeline, all on the hash's slot.
    let records: Vec<_> = (0..1_200).map(|i| authorizer(i, 5_000)).collect();
    assert!(a
        .save_authorizers(PLATFORM, &records)
        .await
        .unwrap()
        .iter()
        .all(|w| *w));
    assert_eq!(
        b.save_authorizers(PLATFORM, &[authorizer(1, 1_000)])
            .await
            .unwrap(),
        [false],
        "the newer record wins on a cluster too"
    );
    b.save_ticket(PLATFORM, &ticket(20)).await.unwrap();
    assert_eq!(a.load_ticket(PLATFORM).await.unwrap(), Some(ticket(20)));
    assert_eq!(b.load_authorizers(PLATFORM).await.unwrap().len(), 1_200);
    b.save_event(
        PLATFORM,
        &wxtoken::store::platform::EventRecord {
            info_type: "notify_third_fasteregister".into(),
            received_at: at(1_700_000_000_000),
            xml: "<xml><N>1</N></xml>".into(),
        },
    )
    .await
    .expect("event saved");
    drop((a, b));

    // Flushed, then an instance restarts over its local file: Redis is refilled.
    cluster.flush();
    let authorizers_key = format!("wxp:platform:{PLATFORM}:authorizers");
    assert!(cluster.hget(&authorizers_key, &appid(7)).is_none());
    let _a = open(path_a, "a2").await;
    let refilled = eventually(Duration::from_secs(10), || async {
        cluster.hget(&authorizers_key, &appid(1_199)).is_some()
    })
    .await;
    assert!(refilled, "the write-back reached the cluster");
    let raw = cluster.hget(&authorizers_key, &appid(7)).unwrap();
    assert!(raw.contains(&refresh_token(7, 5_000)));
    logs.assert_clean();
}

fn code(n: usize, state: CodeState, updated_ms: u64) -> CodeRecord {
    let code = format!("queryauthcode@@@{MARK}-{n}");
    CodeRecord {
        digest: code_digest(&code),
        authorizer_appid: appid(n),
        code: (state == CodeState::Pending).then(|| AccessToken::new(code)),
        state,
        errcode: (state == CodeState::Dead).then_some(61009),
        expires_at: at(1_700_000_600_000),
        received_at: at(1_700_000_000_000),
        updated_at: at(updated_ms),
    }
}

/// Code records are shared by the fleet and move forward only; a code's exchange is claimed by
/// one instance at a time, renewable by it and free again once released or lapsed; a record
/// saved while Redis was down comes back from the local copy and is written back.
#[actix_web::test]
async fn code_records_and_claims_are_shared_by_the_fleet() {
    let (logs, _guard) = Logs::capture();
    let mut redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let a = open(&redis, &dir.path().join("a.redb"), "a").await;
    let b = open(&redis, &dir.path().join("b.redb"), "b").await;

    let pending = code(1, CodeState::Pending, 1_000);
    assert!(a.save_code(PLATFORM, &pending).await.unwrap());
    assert_eq!(b.load_codes(PLATFORM).await.unwrap(), vec![pending.clone()]);
    let exchanged = code(1, CodeState::Exchanged, 2_000);
    assert!(b.save_code(PLATFORM, &exchanged).await.unwrap());
    // A's late pending copy does not make the code pending again, in Redis or when loaded.
    assert!(!a
        .save_code(PLATFORM, &code(1, CodeState::Pending, 9_000))
        .await
        .unwrap());
    assert_eq!(
        a.load_code(PLATFORM, &pending.digest).await.unwrap(),
        Some(exchanged.clone())
    );

    let ttl = Duration::from_millis(800);
    let digest = &pending.digest;
    assert!(a.claim_code(PLATFORM, digest, ttl).await.unwrap());
    assert!(
        !b.claim_code(PLATFORM, digest, ttl).await.unwrap(),
        "A holds it"
    );
    assert!(
        a.claim_code(PLATFORM, digest, ttl).await.unwrap(),
        "renewed"
    );
    // Another code is free meanwhile.
    let other = code(2, CodeState::Pending, 1_000);
    assert!(b.claim_code(PLATFORM, &other.digest, ttl).await.unwrap());
    // B's release does not free A's claim; A's does.
    b.release_code(PLATFORM, digest).await.unwrap();
    assert!(!b.claim_code(PLATFORM, digest, ttl).await.unwrap());
    a.release_code(PLATFORM, digest).await.unwrap();
    assert!(b.claim_code(PLATFORM, digest, ttl).await.unwrap());
    // A claim whose holder died lapses.
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.claim_code(PLATFORM, &other.digest, ttl).await.unwrap()
        })
        .await
    );

    // Saved while Redis is down: in the local copy only, loaded from it, written back after.
    redis.stop();
    let dead = code(3, CodeState::Dead, 3_000);
    assert!(a.save_code(PLATFORM, &dead).await.unwrap());
    assert!(a.load_codes(PLATFORM).await.unwrap().contains(&dead));
    assert!(
        a.claim_code(PLATFORM, digest, ttl).await.is_err(),
        "no claim without Redis"
    );
    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), || async {
            a.load_codes(PLATFORM).await.is_ok()
                && b.load_code(PLATFORM, &dead.digest)
                    .await
                    .is_ok_and(|r| r.as_ref() == Some(&dead))
        })
        .await,
        "the local record is written back to Redis"
    );
    a.forget_codes(PLATFORM, std::slice::from_ref(&dead.digest))
        .await
        .unwrap();
    assert_eq!(a.load_code(PLATFORM, &dead.digest).await.unwrap(), None);
    logs.assert_clean();
}

/// `record` (a stored JSON record) with `field` set to `value`.
fn with_field(record: &[u8], field: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_slice(record).unwrap();
    v[field] = value;
    v.to_string()
}

/// A record in Redis whose time is out of range (past the year 9999) is corrupt: loads skip
/// it and say why without quoting it, and it fences no write, not even as a write order far
/// in the future: the scripts that compare orders in Redis ignore it, as the decoders do.
#[actix_web::test]
async fn a_time_out_of_range_in_redis_is_corrupt_and_fences_no_write() {
    use wxtoken::seal::Keyring;
    use wxtoken::store::platform::{encode_authorizer, encode_ticket};
    let (logs, _guard) = Logs::capture();
    let redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let store = open(&redis, &dir.path().join("a.redb"), "a").await;
    let year_10000 = serde_json::json!(253_402_300_800_000u64);
    let mut c = redis.connection().unwrap();
    let hash = format!("wxp:platform:{PLATFORM}:authorizers");
    let planted = [
        (
            appid(1),
            with_field(
                &encode_authorizer(&Keyring::plaintext(), PLATFORM, &authorizer(1, 1_000)),
                "authorized_at_ms",
                year_10000.clone(),
            ),
        ),
        (
            appid(2),
            with_field(
                &encode_authorizer(&Keyring::plaintext(), PLATFORM, &authorizer(2, 1_000)),
                "updated_at_ms",
                year_10000.clone(),
            ),
        ),
        (
            appid(3),
            with_field(
                &encode_authorizer(&Keyring::plaintext(), PLATFORM, &authorizer(3, 1_000)),
                "updated_at_ms",
                serde_json::json!(u64::MAX),
            ),
        ),
    ];
    for (appid, json) in &planted {
        let _: () = redis::cmd("HSET")
            .arg(&hash)
            .arg(appid)
            .arg(json)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg(format!("wxp:platform:{PLATFORM}:ticket"))
        .arg(with_field(
            &encode_ticket(&Keyring::plaintext(), PLATFORM, &ticket(5)),
            "received_at_ms",
            year_10000,
        ))
        .query(&mut c)
        .unwrap();

    assert_eq!(store.load_authorizers(PLATFORM).await.unwrap(), []);
    assert_eq!(
        store.load_authorizer(PLATFORM, &appid(1)).await.unwrap(),
        None
    );
    assert_eq!(store.load_ticket(PLATFORM).await.unwrap(), None);

    let good: Vec<_> = (1..=3).map(|i| authorizer(i, 2_000)).collect();
    assert_eq!(
        store.save_authorizers(PLATFORM, &good).await.unwrap(),
        [true, true, true],
        "no stored time past 9999 holds a write off"
    );
    assert_eq!(store.load_authorizers(PLATFORM).await.unwrap(), good);
    store.save_ticket(PLATFORM, &ticket(10)).await.unwrap();
    assert!(redis_ticket(&redis).is_some_and(|t| t.contains("\"received_at_ms\":10")));
    assert_eq!(store.load_ticket(PLATFORM).await.unwrap(), Some(ticket(10)));

    let text = logs.text();
    assert!(text.contains("a time out of range"), "said why: {text}");
    logs.assert_clean();
}
