//! Encryption at rest end to end: after a cold start of apps and a platform with an
//! authorizer, neither the redb file nor any Redis value holds a token, ticket, refresh token
//! or code (searched by value, the values taken from the fake WeChat); a wrong key stops the
//! start naming the key id it needs; plaintext stores migrate; `rekey` rotates a running fleet,
//! on one Redis server and on every master of a Redis Cluster.

use std::path::Path;
use std::time::Duration;

use wxtoken::config::Settings;
use wxtoken::fake::{FakeConfig, FakeWechat};
use wxtoken::seal::StoreKey;
use wxtoken::startup::{Application, Options};

use crate::support::config::{App, Client, ConfigText};
use crate::support::fleet::RedisServer;
use crate::support::helpers::*;
use crate::support::platform::{platform_table, start_platform_fake, COMPONENT};
use crate::support::redis_topology::RedisCluster;

const AUTHORIZER: &str = "wx5b3a1c9d7e8f6a42";
const KEY: &str = "trust-client-key-000000000001";
/// Two store keys (32 bytes of 1s, of 2s), as `wxtoken keygen` prints them.
const K1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const K2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn id(key: &str) -> String {
    StoreKey::from_base64(key).unwrap().id().to_string()
}

async fn fake() -> FakeWechat {
    fake_with(0).await
}

/// The apps besides `shop` that spread a Cluster's keys over its masters: `(name, appid,
/// secret)`. With nine, shop's and theirs hash (as `{appid}`) to each master's slots: four,
/// three and three.
fn extra_apps(count: usize) -> Vec<(String, String, String)> {
    (0..count)
        .map(|i| {
            (
                format!("app{i}"),
                format!("wxrekey000000{i:04}"),
                format!("rekey-app-secret-{i:04}"),
            )
        })
        .collect()
}

async fn fake_with(extra: usize) -> FakeWechat {
    let mut apps = vec![(SHOP_APPID.to_string(), SHOP_SECRET.to_string())];
    apps.extend(extra_apps(extra).into_iter().map(|(_, a, s)| (a, s)));
    start_platform_fake(FakeConfig {
        apps,
        ..FakeConfig::default()
    })
    .await
}

/// An app with a JS-SDK ticket and a platform, on `store` (the `[store]` keys but encryption),
/// with `keys` (`encryption_key_env = ...` lines; the variables hold K1 and K2).
fn settings(fake: &FakeWechat, store: &str, keys: &str) -> Settings {
    settings_with(fake, store, keys, 0)
}

/// [`settings`] with `extra` apps of [`extra_apps`] too, all readable by the client.
fn settings_with(fake: &FakeWechat, store: &str, keys: &str, extra: usize) -> Settings {
    let mut config = ConfigText::new()
        .app(App::official("shop", SHOP_APPID, SHOP_SECRET).line(r#"tickets = ["jsapi"]"#));
    for (name, appid, secret) in extra_apps(extra) {
        config = config.app(App::official(&name, &appid, &secret));
    }
    let rest = config
        .raw(&platform_table())
        .raw(r#"authorizer_refresh = "active""#)
        .client(Client::new("crm", KEY).apps(&["*"]).platforms(&["saas"]))
        .to_string();
    let text = server_file(&fake.base_url(), &format!("{store}\n{keys}"), &rest);
    let env = |name: &str| match name {
        "K1" => Some(K1.to_string()),
        "K2" => Some(K2.to_string()),
        "K1_AND_K2" => Some(format!("{K1},{K2}")),
        _ => None,
    };
    Settings::from_toml(&text, &[], &env).expect("test config is valid")
}

fn embedded(path: &Path) -> String {
    format!("kind = \"embedded\"\npath = {}", quoted(path))
}

fn cluster_store(cluster: &RedisCluster, local: &Path) -> String {
    let seeds: Vec<String> = cluster
        .nodes
        .iter()
        .take(2)
        .map(|n| format!("\"127.0.0.1:{}\"", n.port))
        .collect();
    format!(
        "kind = \"redis\"\ncluster_nodes = [{}]\nkey_prefix = \"wxt\"\nlocal_path = {}",
        seeds.join(", "),
        quoted(local)
    )
}

fn redis_store(redis: &RedisServer, local: &Path) -> String {
    format!(
        "kind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"wxt\"\nlocal_path = {}",
        redis.url(),
        quoted(local)
    )
}

/// The embedded store at `path` written by one run under `first` keys, and a server started
/// on it again under `then`, which reads the records back: the shop's token served without a
/// new fetch. The secrets written, the running server, and the token it served.
async fn restarted(
    fake: &FakeWechat,
    path: &Path,
    first: &str,
    then: &str,
) -> (Vec<String>, ThreadServer, serde_json::Value) {
    let secrets = written(fake, path, first).await;
    let minted = fake.minted(SHOP_APPID);
    let server = ThreadServer::start(settings(fake, &embedded(path), then));
    let token = ok(&client(), &server.base, "/v1/apps/shop/token").await;
    assert_eq!(fake.minted(SHOP_APPID), minted, "no fetch after a restart");
    (secrets, server, token)
}

fn authorizer_token_path() -> String {
    format!("/v1/platforms/saas/authorizers/{AUTHORIZER}/token")
}

/// The server serves the authorizer's token (read back, or refreshed with a refresh token it
/// read back), then stops.
async fn serves_the_authorizer_then_stops(server: ThreadServer) {
    ok(&client(), &server.base, &authorizer_token_path()).await;
    server.stop();
}

async fn ok(http: &awc::Client, base: &str, path: &str) -> serde_json::Value {
    let url = format!("{base}{path}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            get_json(http, &url, KEY).await.0 == 200
        })
        .await,
        "{path}: {}",
        get_json(http, &url, KEY).await.1
    );
    get_json(http, &url, KEY).await.1
}

/// The embedded store at `path` written by one run of a server with `keys` (exercised, then
/// stopped): the secrets it now holds.
async fn written(fake: &FakeWechat, path: &Path, keys: &str) -> Vec<String> {
    let server = ThreadServer::start(settings(fake, &embedded(path), keys));
    let secrets = exercise(fake, &server.base).await;
    server.stop();
    secrets
}

/// Runs every credential once on `server`: the ticket pushed, the account authorized, each
/// token served. Answers every secret value the stores may hold, from the fake.
async fn exercise(fake: &FakeWechat, base: &str) -> Vec<String> {
    let http = client();
    fake.set_event_url(COMPONENT, Some(&format!("{base}/v1/platforms/saas/events")))
        .unwrap();
    let push = fake.push_verify_ticket(COMPONENT).await.unwrap();
    assert_eq!(push.status, Some(200), "{push:?}");
    let (authorized, _) = fake
        .authorize_and_push(COMPONENT, AUTHORIZER, &[1])
        .await
        .unwrap();
    ok(&http, base, "/v1/apps/shop/token").await;
    ok(&http, base, "/v1/apps/shop/ticket/jsapi").await;
    ok(&http, base, "/v1/platforms/saas/component_token").await;
    ok(&http, base, &authorizer_token_path()).await;
    let secrets = vec![
        fake.current_token(SHOP_APPID),
        fake.current_ticket(SHOP_APPID, "jsapi"),
        fake.current_verify_ticket(COMPONENT),
        fake.current_component_token(COMPONENT),
        fake.current_authorizer_token(COMPONENT, AUTHORIZER),
        fake.authorizer_refresh_token(COMPONENT, AUTHORIZER),
        Some(authorized.authorization_code),
    ];
    secrets
        .into_iter()
        .map(|s| s.expect("the fake minted every secret"))
        .collect()
}

fn assert_holds_none(what: &str, bytes: &[u8], secrets: &[String]) {
    for s in secrets {
        let found = bytes.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(
            !found,
            "{what} holds a secret of {} bytes in clear",
            s.len()
        );
    }
}

/// Every value under the prefix, read by its type.
fn redis_values(redis: &RedisServer) -> Vec<u8> {
    let mut c = redis.connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("wxt:*").query(&mut c).unwrap();
    assert!(!keys.is_empty());
    values_of(&keys, |cmd| cmd.query(&mut c).unwrap())
}

/// Every value under the prefix on each master of `cluster`, read there by its type.
fn cluster_values(cluster: &RedisCluster) -> Vec<u8> {
    let mut all = Vec::new();
    for port in cluster.master_ports() {
        let keys = cluster.keys_on(port, "wxt:*");
        all.extend(values_of(&keys, |cmd| cluster.on_node(port, cmd).unwrap()));
    }
    assert!(!all.is_empty());
    all
}

/// The values of `keys`, each read by its type with `query`, one per line.
fn values_of(keys: &[String], mut query: impl FnMut(&redis::Cmd) -> redis::Value) -> Vec<u8> {
    let mut all = Vec::new();
    for key in keys {
        let kind: String = redis::from_redis_value(query(redis::cmd("TYPE").arg(key))).unwrap();
        let answer = match kind.as_str() {
            "string" => redis::Value::Array(vec![query(redis::cmd("GET").arg(key))]),
            "hash" => query(redis::cmd("HGETALL").arg(key)),
            "list" => query(redis::cmd("LRANGE").arg(key).arg(0).arg(-1)),
            other => panic!("{key} is a {other}"),
        };
        let values: Vec<Vec<u8>> = match answer {
            // HGETALL's answer in RESP3.
            redis::Value::Map(pairs) => pairs
                .into_iter()
                .flat_map(|(f, v)| [f, v])
                .map(|v| redis::from_redis_value(v).unwrap())
                .collect(),
            other => redis::from_redis_value(other).unwrap(),
        };
        for v in values {
            all.extend(v);
            all.push(b'\n');
        }
    }
    all
}

/// The start's error, from a System of its own (like a process that exits on it, the actors it
/// started before refusing are gone with it). A server stopped just before may still be
/// releasing the file for a moment.
async fn refused(settings: Settings) -> String {
    let started = std::time::Instant::now();
    loop {
        let s = settings.clone();
        let err = std::thread::spawn(move || {
            let sys = actix_web::rt::System::new();
            let options = Options {
                handle_signals: false,
                workers: Some(1),
                ..Options::default()
            };
            match sys.block_on(Application::build(s, options)) {
                Ok(_) => panic!("started with records it cannot open"),
                Err(e) => format!("{e:#}"),
            }
        })
        .join()
        .unwrap();
        if !err.contains("already in use") || started.elapsed() > Duration::from_secs(5) {
            return err;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `wxtoken rekey`'s lines, once the file a stopped server held is released: its worker
/// threads may hold it a moment after the stop (a process exit releases it at once), and rekey
/// refuses an embedded file in use and skips a Redis store's local copy in use.
async fn rekey(settings: &Settings) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let soon = started.elapsed() < Duration::from_secs(5);
        match wxtoken::rekey::rekey(settings).await {
            Err(e) if format!("{e}").contains("in use") && soon => {}
            Ok(lines) if lines.iter().any(|l| l.contains("skipped the local copy")) && soon => {}
            other => return other.expect("rekey runs"),
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn after_a_cold_start_the_redb_file_holds_no_secret_and_a_wrong_key_stops_the_start() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.redb");
    let sealed = |keys: &str| settings(&fake, &embedded(&path), keys);
    let k1 = "encryption_key_env = \"K1\"";

    // A cold start reads every record back: the same token, no new fetch.
    let (secrets, server, token) = restarted(&fake, &path, k1, k1).await;
    assert_eq!(token["access_token"].as_str(), Some(secrets[0].as_str()));
    serves_the_authorizer_then_stops(server).await;
    assert_holds_none("the redb file", &std::fs::read(&path).unwrap(), &secrets);

    // Another key: the refresh tokens must not pass for absent; the start stops and says
    // which key it needs.
    let err = refused(sealed("encryption_key_env = \"K2\"")).await;
    assert!(err.contains(&format!("key id {}", id(K1))), "{err}");
    for s in &secrets {
        assert!(!err.contains(s.as_str()), "{err}");
    }
}

#[actix_web::test]
async fn a_plaintext_store_keeps_working_under_a_key_and_rekey_seals_it_for_require_encryption() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.redb");
    let with = |keys: &str| settings(&fake, &embedded(&path), keys);

    // A key added: the plaintext records are read (no fetch).
    let (secrets, server, _) = restarted(&fake, &path, "", "encryption_key_env = \"K1\"").await;
    server.stop();

    // Required before every record is sealed: refused, not taken as absent.
    let strict = "encryption_key_env = \"K1\"\nrequire_encryption = true";
    let err = refused(with(strict)).await;
    assert!(err.contains("plaintext"), "{err}");

    // rekey seals everything into a fresh file; then the strict start works.
    let lines = rekey(&with(strict)).await;
    assert!(lines[0].starts_with("rewrote "), "{lines:?}");
    assert!(
        lines[0].contains(&format!("under key id {}", id(K1))),
        "{lines:?}"
    );
    assert_holds_none("the rekeyed file", &std::fs::read(&path).unwrap(), &secrets);
    let server = ThreadServer::start(with(strict));
    serves_the_authorizer_then_stops(server).await;
}

#[actix_web::test]
async fn redis_values_and_the_local_copy_hold_no_secret_and_rekey_rotates_a_running_fleet() {
    let redis = RedisServer::start(None);
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.redb");
    let on_redis = |keys: &str| settings(&fake, &redis_store(&redis, &local), keys);
    let server = ThreadServer::start(on_redis("encryption_key_env = \"K1\""));
    let secrets = exercise(&fake, &server.base).await;
    server.stop();
    let server = ThreadServer::start(on_redis("encryption_key_env = \"K1\""));
    ok(&client(), &server.base, "/v1/apps/shop/token").await;
    server.stop();
    let values = redis_values(&redis);
    assert_holds_none("Redis", &values, &secrets);
    assert_holds_none("the local copy", &std::fs::read(&local).unwrap(), &secrets);

    // Rotation: K2 writes, K1 still reads; rekey while the instance runs rewrites Redis,
    // and leaves the local copy it holds for a run while it is stopped.
    let rotated = "encryption_key_env = \"K2\"\nprevious_keys_env = \"K1\"";
    let server = ThreadServer::start(on_redis(rotated));
    ok(&client(), &server.base, "/v1/apps/shop/token").await;
    let lines = wxtoken::rekey::rekey(&on_redis(rotated)).await.unwrap();
    assert!(lines[0].contains("rewrote"), "{lines:?}");
    assert!(lines[1].contains("skipped the local copy"), "{lines:?}");
    let old = format!("wxe1:{}:", id(K1));
    let values = String::from_utf8_lossy(&redis_values(&redis)).into_owned();
    assert!(!values.contains(&old), "a value under the old key is left");
    assert!(values.contains(&format!("wxe1:{}:", id(K2))));
    server.stop();
    let lines = rekey(&on_redis(rotated)).await;
    assert!(
        lines[0].starts_with("rewrote 0 of"),
        "a second run rewrites nothing: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("skipped")),
        "the local copy rewritten: {lines:?}"
    );
    let local_bytes = std::fs::read(&local).unwrap();
    assert!(!String::from_utf8_lossy(&local_bytes).contains(&old));

    // K2 alone now serves everything, from Redis and the local copy.
    let server = ThreadServer::start(on_redis("encryption_key_env = \"K2\""));
    serves_the_authorizer_then_stops(server).await;
}

/// Apps besides `shop` in the Cluster test: enough that every master holds token records.
const CLUSTER_APPS: usize = 9;

/// Each app's token, as `base` serves it: `(name, token)`.
async fn tokens(base: &str, extra: usize) -> Vec<(String, String)> {
    let http = client();
    let mut names = vec!["shop".to_string()];
    names.extend(extra_apps(extra).into_iter().map(|(n, _, _)| n));
    let mut out = Vec::new();
    for name in names {
        let answer = ok(&http, base, &format!("/v1/apps/{name}/token")).await;
        let token = answer["access_token"].as_str().unwrap().to_string();
        out.push((name, token));
    }
    out
}

/// `N` of a rekey line `rewrote R of N values ...`.
fn seen(line: &str) -> usize {
    line.split(' ')
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a rekey line: {line}"))
}

/// How many tokens the fake minted for each app.
fn minted(fake: &FakeWechat, extra: usize) -> Vec<u64> {
    std::iter::once(SHOP_APPID.to_string())
        .chain(extra_apps(extra).into_iter().map(|(_, a, _)| a))
        .map(|a| fake.minted(&a))
        .collect()
}

#[actix_web::test]
async fn rekey_rewrites_every_master_of_a_cluster_and_a_second_run_rewrites_nothing() {
    let cluster = RedisCluster::start();
    let fake = fake_with(CLUSTER_APPS).await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.redb");
    let on_cluster =
        |keys: &str| settings_with(&fake, &cluster_store(&cluster, &local), keys, CLUSTER_APPS);
    let server = ThreadServer::start(on_cluster("encryption_key_env = \"K1\""));
    let secrets = exercise(&fake, &server.base).await;
    let served = tokens(&server.base, CLUSTER_APPS).await;
    server.stop();

    // Sealed records on every master (a replica is never one of these), all under K1.
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3, "{masters:?}");
    for port in &masters {
        let records = cluster.keys_on(*port, "wxt:token:*");
        assert!(
            !records.is_empty(),
            "no token record on the master on {port}"
        );
    }
    let old = format!("wxe1:{}:", id(K1));
    let new = format!("wxe1:{}:", id(K2));
    let values = cluster_values(&cluster);
    assert_holds_none("the Cluster", &values, &secrets);
    assert!(String::from_utf8_lossy(&values).contains(&old));

    // Rotation while an instance runs with K2 current and K1 previous: every master's values
    // are rewritten, and the line names the masters scanned.
    let rotated = "encryption_key_env = \"K2\"\nprevious_keys_env = \"K1\"";
    let server = ThreadServer::start(on_cluster(rotated));
    ok(&client(), &server.base, "/v1/apps/shop/token").await;
    let started = std::time::Instant::now();
    let lines = wxtoken::rekey::rekey(&on_cluster(rotated)).await.unwrap();
    eprintln!("rekey of the Cluster: {:?}: {lines:?}", started.elapsed());
    assert!(lines[0].starts_with("rewrote "), "{lines:?}");
    assert!(!lines[0].starts_with("rewrote 0 "), "{lines:?}");
    assert!(lines[0].contains("(3 masters: "), "{lines:?}");
    for node in &cluster.nodes {
        let named = lines[0].contains(&format!("127.0.0.1:{}", node.port));
        assert_eq!(named, masters.contains(&node.port), "{lines:?}");
    }
    let values = String::from_utf8_lossy(&cluster_values(&cluster)).into_owned();
    assert!(!values.contains(&old), "a value under the old key is left");
    // Each value counted once: the sealed ones, and the done code, which holds no secret.
    let held = values.matches(&new).count() + values.matches(r#""code":null"#).count();
    assert_eq!(seen(&lines[0]), held, "{lines:?}");
    server.stop();

    // A second run rewrites nothing in the Cluster, and now rewrites the stopped instance's
    // local copy.
    let lines = rekey(&on_cluster(rotated)).await;
    assert!(
        lines[0].starts_with("rewrote 0 of"),
        "a second run rewrites nothing: {lines:?}"
    );
    assert_eq!(seen(&lines[0]), held, "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("skipped")), "{lines:?}");

    // K2 alone serves the same tokens, read back from the Cluster: no fetch.
    let minted = minted(&fake, CLUSTER_APPS);
    let server = ThreadServer::start(on_cluster("encryption_key_env = \"K2\""));
    assert_eq!(tokens(&server.base, CLUSTER_APPS).await, served);
    assert_eq!(
        self::minted(&fake, CLUSTER_APPS),
        minted,
        "a token was fetched again"
    );
    serves_the_authorizer_then_stops(server).await;
}

#[actix_web::test]
async fn rekey_of_a_cluster_with_a_master_down_fails_naming_that_master() {
    let mut cluster = RedisCluster::start_without_replicas();
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local.redb");
    let rotated = "encryption_key_env = \"K2\"\nprevious_keys_env = \"K1\"";
    let settings = settings(&fake, &cluster_store(&cluster, &local), rotated);
    let masters = cluster.master_ports();
    // Without a replica to promote, its slots stay unserved: rekey cannot finish.
    let victim = masters[0];
    cluster.kill_port(victim);
    let started = std::time::Instant::now();
    let err = wxtoken::rekey::rekey(&settings).await.unwrap_err();
    let text = format!("{err:#}");
    eprintln!(
        "rekey with a master down failed in {:?}: {text}",
        started.elapsed()
    );
    assert!(
        text.contains(&format!("Redis Cluster master 127.0.0.1:{victim}")),
        "{text}"
    );
    for other in &masters[1..] {
        assert!(!text.contains(&other.to_string()), "{text}");
    }
}
