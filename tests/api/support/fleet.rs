//! A fleet on one Redis: a `redis-server` killed on drop, wxtoken instances sharing it, and
//! the per-instance calls the fleet tests make.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wxtoken::config::{Settings, StoreSettings};
use wxtoken::fake::{FakeWechat, Validity};

use crate::support::helpers::*;
use crate::support::redis_topology::{ephemeral_args, Deployment};

/// A `redis-server` on a random loopback port, killed on drop. Nothing is persisted, so a
/// restart comes back empty.
pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(password: Option<&str>) -> RedisServer {
        let port = crate::support::redis_topology::free_port(false);
        let mut server = RedisServer {
            port,
            password: password.map(String::from),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(ephemeral_args(self.port))
            .args(["--protected-mode", "yes"]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): run scripts/test, which installs Debian's redis-server")
            });
        self.child = Some(child);
        let start = Instant::now();
        while self.connection().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the running redis-server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid} failed");
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(1))
    }

    pub fn hget(&self, key: &str, field: &str) -> Option<String> {
        let mut c = self.connection().ok()?;
        redis::cmd("HGET").arg(key).arg(field).query(&mut c).ok()?
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn redis_settings(
    spec: &Spec,
    fake: &FakeWechat,
    redis: &RedisServer,
    instance: &str,
    lock_ttl: Duration,
) -> Settings {
    fleet_settings(spec, fake, redis, instance, lock_ttl)
}

/// A test server's settings on deployment `d`: prefix `wxt`, re-reads every 300 ms.
pub fn fleet_settings(
    spec: &Spec,
    fake: &FakeWechat,
    d: &dyn Deployment,
    instance: &str,
    lock_ttl: Duration,
) -> Settings {
    let dir = std::env::temp_dir();
    let mut s = settings_for(spec, &fake.base_url(), &dir.join("unused.redb"));
    let mut store = d.store(instance);
    store.key_prefix = "wxt".into();
    store.lock_ttl = lock_ttl;
    store.poll_interval = Duration::from_millis(300);
    // These tests are about tokens: no local copy of platform records.
    store.local_path = None;
    s.store = StoreSettings::Redis(store);
    s
}

pub struct Fleet {
    servers: Vec<Option<ThreadServer>>,
    names: Vec<String>,
}

impl Fleet {
    pub fn start(spec: &Spec, fake: &FakeWechat, d: &dyn Deployment, n: usize) -> Fleet {
        let names: Vec<String> = (0..n).map(|i| format!("instance-{i}")).collect();
        let servers = names
            .iter()
            .map(|name| {
                Some(ThreadServer::start(fleet_settings(
                    spec,
                    fake,
                    d,
                    name,
                    Duration::from_secs(2),
                )))
            })
            .collect();
        Fleet { servers, names }
    }

    pub fn bases(&self) -> Vec<String> {
        self.servers
            .iter()
            .flatten()
            .map(|s| s.base.clone())
            .collect()
    }

    pub fn kill(&mut self, name: &str) {
        let i = self.names.iter().position(|n| n == name).unwrap();
        self.servers[i].take().unwrap().stop();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for s in self.servers.iter_mut().filter_map(Option::take) {
            s.stop();
        }
    }
}

/// Reports `token` as rejected at `base` (as the billing client); the answer's JSON.
pub async fn invalidate_at(http: &awc::Client, base: &str, token: &str) -> serde_json::Value {
    let mut r = http
        .post(format!("{base}/v1/apps/shop/token/invalidate"))
        .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
        .send_json(&serde_json::json!({ "access_token": token }))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{base}");
    r.json().await.unwrap()
}

/// Rotates shop's token at `base` (as the ops admin): one refresh, with the old token still
/// working at WeChat for the overlap, unlike a report, which refetches only a token WeChat
/// already rejects. The status and the answer's JSON.
pub async fn revoke_at(http: &awc::Client, base: &str) -> (u16, serde_json::Value) {
    let mut r = http
        .post(format!("{base}/v1/apps/shop/revoke"))
        .insert_header(("Authorization", format!("Bearer {OPS_KEY}")))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

pub async fn token_at(http: &awc::Client, base: &str) -> String {
    let (status, body) = get_json(http, &format!("{base}/v1/apps/shop/token"), BILLING_KEY).await;
    assert_eq!(status, 200, "{base}: {body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// Polls every instance for `secs`, checking every served token at the fake; returns the
/// distinct tokens seen.
pub async fn watch_fleet(
    http: &awc::Client,
    fake: &FakeWechat,
    bases: &[String],
    secs: u64,
) -> HashSet<String> {
    let mut seen = HashSet::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        for base in bases {
            let t = token_at(http, base).await;
            let v = fake.validity(&t);
            assert_eq!(
                v,
                Validity::Valid,
                "{base} served a token WeChat rejects ({v:?})"
            );
            seen.insert(t);
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

pub fn short_tokens() -> Spec {
    // 4 s tokens refreshed at half-life (about every 2 s); a replaced token lives 1 s more.
    Spec {
        expires_in: 4,
        overlap_secs: 1,
        ..Spec::default()
    }
}

/// Instances sharing one Redis, each with its own local copy: `n` local copies in a temporary
/// folder, a way to start one instance on each, and to start them again after Redis lost
/// everything.
pub struct LocalCopies {
    pub paths: Vec<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

impl LocalCopies {
    pub fn new(n: usize) -> LocalCopies {
        let dir = tempfile::tempdir().expect("a temporary folder");
        LocalCopies {
            paths: (0..n)
                .map(|i| dir.path().join(format!("local-{i}.redb")))
                .collect(),
            _dir: dir,
        }
    }

    /// One instance on each local copy, with the settings `settings` makes for it.
    pub fn start(&self, settings: impl Fn(&std::path::Path) -> Settings) -> Vec<ThreadServer> {
        self.paths
            .iter()
            .map(|l| ThreadServer::start(settings(l)))
            .collect()
    }

    /// Stops `fleet`, empties `redis` and starts the instances again on their local copies:
    /// what a fleet meets after Redis lost everything and every instance restarted, with no
    /// push from WeChat in between.
    pub fn restart_on_empty_redis(
        &self,
        fleet: Vec<ThreadServer>,
        redis: &RedisServer,
        settings: impl Fn(&std::path::Path) -> Settings,
    ) -> Vec<ThreadServer> {
        for s in fleet {
            s.stop();
        }
        redis.flush();
        self.start(settings)
    }
}

/// Waits until every instance of `fleet` serves `url(base)` (10 s each), panicking with the
/// last answer of the first that does not.
pub async fn each_serves(
    http: &awc::Client,
    fleet: &[ThreadServer],
    key: &str,
    url: impl Fn(&str) -> String,
) {
    for server in fleet {
        json_when_served(http, &url(&server.base), key).await;
    }
}
