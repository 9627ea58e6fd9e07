//! Test deployments of Redis beyond one plain server, all real processes on 127.0.0.1 and
//! random ports, killed on drop: a TLS server with certificates made here (rcgen), a Sentinel
//! group (one master, one replica, three Sentinels) and a Cluster of three masters with a
//! replica each (`redis-cli --cluster create`). [`Deployment`] is what the fleet tests need of
//! any of them, the plain server of `ha.rs` included.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use wxtoken::config::{
    NodeAddr, RedisAuth, RedisEndpoint, RedisSettings, RedisTls, SecretSource, SentinelEndpoint,
};

use crate::support::fleet::RedisServer;

/// What a fleet test needs of a Redis deployment.
pub trait Deployment {
    /// The store settings of one instance.
    fn store(&self, instance: &str) -> RedisSettings;
    /// A key as the store names it here: `{prefix}:{kind}:{id}`, the id hash-tagged on a
    /// Cluster.
    fn key(&self, prefix: &str, kind: &str, id: &str) -> String {
        format!("{prefix}:{kind}:{id}")
    }
    fn hget(&self, key: &str, field: &str) -> Option<String>;
    fn hset(&self, key: &str, field: &str, value: &str);
    /// Empties it (between tests that share one deployment).
    fn flush(&self);
    /// Takes all of Redis away (every instance then sees it unreachable).
    fn stop_all(&mut self);
    /// Brings it back, empty, with the same addresses.
    fn restart_all(&mut self);
}

impl Deployment for RedisServer {
    fn store(&self, instance: &str) -> RedisSettings {
        RedisSettings::for_url(&self.url(), instance)
    }
    fn hget(&self, key: &str, field: &str) -> Option<String> {
        RedisServer::hget(self, key, field)
    }
    fn hset(&self, key: &str, field: &str, value: &str) {
        let mut c = self.connection().expect("redis reachable");
        let () = redis::cmd("HSET")
            .arg(key)
            .arg(field)
            .arg(value)
            .query(&mut c)
            .expect("HSET");
    }
    fn flush(&self) {
        let mut c = self.connection().expect("redis reachable");
        let () = redis::cmd("FLUSHALL").query(&mut c).expect("FLUSHALL");
    }
    fn stop_all(&mut self) {
        self.stop();
    }
    fn restart_all(&mut self) {
        self.restart();
    }
}

/// A loopback port that is free now (and, with `bus`, whose Cluster bus port, 10000 above, is
/// free too), taken below the kernel's ephemeral range: servers are restarted on their ports
/// mid-test, and one the kernel had meanwhile given to some client's outgoing connection (the
/// fleet's, reconnecting) would not start. No port, bus ports included, is handed out twice in
/// this process, as tests pick theirs concurrently.
pub fn free_port(bus: bool) -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let top = if bus { low.saturating_sub(10_000) } else { low };
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    loop {
        let port = if top > 12_000 {
            rand::random_range(10_000..top)
        } else {
            // An unusual ephemeral range leaves no room below it: any free port, as the
            // kernel picks them.
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let mut taken = TAKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A bus port counts as taken too: a plain server handed a node's bus port (or the other
        // way round) would keep that node from starting.
        let bus_ok =
            !bus || (port < 55_000 && !taken.contains(&(port + 10_000)) && free(port + 10_000));
        if !taken.contains(&port) && free(port) && bus_ok {
            taken.push(port);
            if bus {
                taken.push(port + 10_000);
            }
            return port;
        }
    }
}

/// A binary from Debian's redis packages, with the message scripts/test's users need when it
/// is missing (the test fails, it never passes silently).
fn binary(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} is missing: run scripts/test, which installs Debian's redis-server, redis-sentinel and redis-tools"
    );
    Command::new(name)
}

/// One redis-server or redis-sentinel process, killed on drop.
pub struct Process {
    pub port: u16,
    args: Vec<String>,
    program: &'static str,
    child: Option<Child>,
}

impl Process {
    fn spawn(program: &'static str, port: u16, args: Vec<String>) -> Process {
        let mut p = Process {
            port,
            args,
            program,
            child: None,
        };
        p.start();
        p
    }

    pub fn start(&mut self) {
        let child = binary(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e})", self.program));
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How the test reaches a node: its password, and TLS with the test CA.
#[derive(Clone, Default)]
pub struct Access {
    password: Option<String>,
    tls: Option<redis::TlsCertificates>,
}

fn client(port: u16, a: &Access) -> redis::Client {
    let scheme = if a.tls.is_some() { "rediss" } else { "redis" };
    let auth = a
        .password
        .as_ref()
        .map(|p| format!(":{p}@"))
        .unwrap_or_default();
    let url = format!("{scheme}://{auth}127.0.0.1:{port}/");
    match &a.tls {
        Some(certs) => redis::Client::build_with_tls(url, certs.clone()),
        None => redis::Client::open(url),
    }
    .unwrap()
}

/// Waits until `port` answers `PING` (at most 10 s).
fn wait_ping_as(port: u16, a: &Access) {
    let start = Instant::now();
    loop {
        let ok = client(port, a)
            .get_connection_with_timeout(Duration::from_millis(500))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok();
        if ok {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn query_as<T: redis::FromRedisValue>(
    port: u16,
    a: &Access,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let mut c = client(port, a).get_connection_with_timeout(Duration::from_millis(500))?;
    cmd.query(&mut c)
}

/// Polls `cond` every 50 ms for at most `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `redis-server` on `port` of the loopback that never writes its data to disk, so that a
/// restart comes back empty: what every test server starts from.
pub fn ephemeral_args(port: u16) -> Vec<String> {
    let port = port.to_string();
    [
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .to_vec()
}

fn base_args(port: u16, dir: &Path) -> Vec<String> {
    let mut args = ephemeral_args(port);
    args.extend(
        [
            // Replicas sync at once instead of after the default 5 s.
            "--repl-diskless-sync-delay",
            "0",
            "--dir",
            &dir.display().to_string(),
        ]
        .map(String::from),
    );
    args
}

// ---------------------------------------------------------------------------------------------
// TLS

/// PEM files of a test PKI: a CA, a server certificate for 127.0.0.1, a client certificate.
pub struct Pki {
    /// Holds the files for the test's duration.
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Another CA, which signed nothing here.
    pub other_ca: PathBuf,
}

impl Pki {
    /// `server_names`: the names in the server certificate.
    pub fn new(server_names: &[&str]) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
        };
        let root = ca("wxtoken redis test CA");
        let other = ca("some other CA");
        let names: Vec<String> = server_names.iter().map(|s| s.to_string()).collect();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(names)
            .unwrap()
            .signed_by(&server_key, &root)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(vec!["wxtoken-client".to_string()]).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "wxtoken-client");
        let client = client_params.signed_by(&client_key, &root).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            ca: write("ca.pem", root.pem()),
            other_ca: write("other-ca.pem", other.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server-key.pem", server_key.serialize_pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
            _dir: dir,
        }
    }
}

/// A redis-server listening with TLS only (`--port 0 --tls-port P`).
pub struct TlsRedis {
    pub port: u16,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// `client_certs`: whether clients must present a certificate signed by the CA.
    pub fn start(pki: &Pki, client_certs: bool) -> TlsRedis {
        let port = free_port(false);
        let dir = tempfile::tempdir().unwrap();
        let mut args = base_args(0, dir.path());
        for (k, v) in [
            ("--tls-port", port.to_string()),
            ("--tls-cert-file", pki.server_cert.display().to_string()),
            ("--tls-key-file", pki.server_key.display().to_string()),
            ("--tls-ca-cert-file", pki.ca.display().to_string()),
            (
                "--tls-auth-clients",
                if client_certs { "yes" } else { "no" }.to_string(),
            ),
        ] {
            args.push(k.into());
            args.push(v);
        }
        let process = Process::spawn("redis-server", port, args);
        // Up once it accepts TCP (a TLS PING would need the client certificate).
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "TLS redis did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsRedis {
            port,
            _process: process,
            _dir: dir,
        }
    }

    /// Store settings for `host` (the name connected to, checked against the certificate).
    pub fn store(&self, host: &str, tls: RedisTls, instance: &str) -> RedisSettings {
        RedisSettings {
            tls: Some(tls),
            ..RedisSettings::for_url(&format!("rediss://{host}:{}/", self.port), instance)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sentinel

pub const SENTINEL_MASTER: &str = "mymaster";

/// One master, one replica and three Sentinels (quorum 2) that declare the master down after
/// 1 s without an answer.
pub struct SentinelGroup {
    pub master: Process,
    pub replica: Process,
    pub sentinels: Vec<Process>,
    /// How to reach the data nodes and the Sentinels (their passwords may differ).
    data: Access,
    sentinel: Access,
    /// The store's TLS settings when the whole group speaks TLS.
    tls: Option<RedisTls>,
    _dir: tempfile::TempDir,
}

impl SentinelGroup {
    pub fn start() -> SentinelGroup {
        SentinelGroup::start_with(None, None)
    }

    /// With `requirepass` on the data nodes and, separately, on the Sentinels.
    pub fn start_with(
        data_password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> SentinelGroup {
        SentinelGroup::start_full(data_password, sentinel_password, None)
    }

    /// Every node, the Sentinels included, listening with TLS only on `pki`'s certificate.
    pub fn start_tls(pki: &Pki) -> SentinelGroup {
        SentinelGroup::start_full(None, None, Some(pki))
    }

    fn start_full(
        data_password: Option<&str>,
        sentinel_password: Option<&str>,
        pki: Option<&Pki>,
    ) -> SentinelGroup {
        let dir = tempfile::tempdir().unwrap();
        let m = free_port(false);
        let r = free_port(false);
        let certs = pki.map(|p| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&p.ca).unwrap()),
        });
        let data = Access {
            password: data_password.map(String::from),
            tls: certs.clone(),
        };
        let sentinel = Access {
            password: sentinel_password.map(String::from),
            tls: certs,
        };
        // With TLS the plain port is off and every link (replication, Sentinels) uses TLS.
        let tls_lines: Vec<(String, String)> = pki
            .map(|p| {
                vec![
                    ("tls-cert-file".into(), p.server_cert.display().to_string()),
                    ("tls-key-file".into(), p.server_key.display().to_string()),
                    ("tls-ca-cert-file".into(), p.ca.display().to_string()),
                    ("tls-replication".into(), "yes".into()),
                    ("tls-auth-clients".into(), "no".into()),
                ]
            })
            .unwrap_or_default();
        let node_args = |port: u16| {
            if pki.is_none() {
                return base_args(port, dir.path());
            }
            let mut args = base_args(0, dir.path());
            args.extend(["--tls-port".into(), port.to_string()]);
            for (k, v) in &tls_lines {
                args.extend([format!("--{k}"), v.clone()]);
            }
            args
        };
        let mut master_args = node_args(m);
        let mut replica_args = node_args(r);
        if let Some(p) = data_password {
            for args in [&mut master_args, &mut replica_args] {
                args.extend([
                    "--requirepass".into(),
                    p.into(),
                    "--masterauth".into(),
                    p.into(),
                ]);
            }
        }
        let master = Process::spawn("redis-server", m, master_args);
        replica_args.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
        let replica = Process::spawn("redis-server", r, replica_args);
        wait_ping_as(m, &data);
        wait_ping_as(r, &data);
        // A replica that never synced would be promoted empty: wait until it has.
        wait_until(Duration::from_secs(20), "the replica synced", || {
            query_as::<String>(r, &data, redis::cmd("INFO").arg("replication"))
                .is_ok_and(|i| i.contains("master_link_status:up"))
        });
        let mut auth = String::new();
        if let Some(p) = data_password {
            auth.push_str(&format!("sentinel auth-pass {SENTINEL_MASTER} {p}\n"));
        }
        if let Some(p) = sentinel_password {
            // Sentinels talk to each other with it too.
            auth.push_str(&format!("requirepass {p}\nsentinel sentinel-pass {p}\n"));
        }
        for (k, v) in &tls_lines {
            auth.push_str(&format!("{k} {v}\n"));
        }
        let sentinels: Vec<Process> = (0..3)
            .map(|i| {
                let port = free_port(false);
                let conf = dir.path().join(format!("sentinel-{i}.conf"));
                let listen = match pki {
                    Some(_) => format!("port 0\ntls-port {port}"),
                    None => format!("port {port}"),
                };
                std::fs::write(
                    &conf,
                    format!(
                        "{listen}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {m} 2\n\
                         sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                         sentinel failover-timeout {SENTINEL_MASTER} 4000\n\
                         sentinel parallel-syncs {SENTINEL_MASTER} 1\n{auth}",
                        dir = dir.path().display()
                    ),
                )
                .unwrap();
                Process::spawn("redis-sentinel", port, vec![conf.display().to_string()])
            })
            .collect();
        let group = SentinelGroup {
            master,
            replica,
            sentinels,
            data,
            sentinel,
            tls: pki.map(|p| RedisTls {
                ca_file: Some(p.ca.clone()),
                client: None,
            }),
            _dir: dir,
        };
        // Ready once every Sentinel knows the replica and the two other Sentinels.
        for s in &group.sentinels {
            wait_until(
                Duration::from_secs(20),
                "the Sentinels found each other",
                || {
                    let info: redis::RedisResult<std::collections::HashMap<String, String>> =
                        query_as(
                            s.port,
                            &group.sentinel,
                            redis::cmd("SENTINEL").arg("MASTER").arg(SENTINEL_MASTER),
                        );
                    info.is_ok_and(|i| {
                        i.get("num-slaves").map(String::as_str) == Some("1")
                            && i.get("num-other-sentinels").map(String::as_str) == Some("2")
                    })
                },
            );
        }
        group
    }

    /// The master's port as the Sentinels name it now.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let (_, port): (String, String) = query_as(
                s.port,
                &self.sentinel,
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(SENTINEL_MASTER),
            )
            .ok()?;
            port.parse().ok()
        })
    }

    fn data_port(&self) -> u16 {
        self.master_port().expect("a Sentinel names the master")
    }
}

impl Deployment for SentinelGroup {
    fn store(&self, instance: &str) -> RedisSettings {
        RedisSettings {
            endpoint: RedisEndpoint::Sentinel(SentinelEndpoint {
                sentinels: self
                    .sentinels
                    .iter()
                    .map(|s| NodeAddr {
                        host: "127.0.0.1".into(),
                        port: s.port,
                    })
                    .collect(),
                master: SENTINEL_MASTER.into(),
                auth: RedisAuth {
                    username: None,
                    password: self.data.password.as_ref().map(|p| {
                        (
                            SecretString::from(p.clone()),
                            SecretSource::Env("TEST".into()),
                        )
                    }),
                },
                sentinel_password: self.sentinel.password.as_ref().map(|p| {
                    (
                        SecretString::from(p.clone()),
                        SecretSource::Env("TEST".into()),
                    )
                }),
            }),
            tls: self.tls.clone(),
            ..RedisSettings::for_url("redis://unused/", instance)
        }
    }
    fn hget(&self, key: &str, field: &str) -> Option<String> {
        query_as(
            self.data_port(),
            &self.data,
            redis::cmd("HGET").arg(key).arg(field),
        )
        .ok()?
    }
    fn hset(&self, key: &str, field: &str, value: &str) {
        let () = query_as(
            self.data_port(),
            &self.data,
            redis::cmd("HSET").arg(key).arg(field).arg(value),
        )
        .expect("HSET on the master");
    }
    fn flush(&self) {
        let () = query_as(self.data_port(), &self.data, &redis::cmd("FLUSHALL")).expect("FLUSHALL");
    }
    fn stop_all(&mut self) {
        self.master.kill();
        self.replica.kill();
    }
    fn restart_all(&mut self) {
        self.master.start();
        self.replica.start();
        wait_ping_as(self.master.port, &self.data);
        wait_ping_as(self.replica.port, &self.data);
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster

/// Three masters with one replica each, nodes declared failed after 1 s.
pub struct RedisCluster {
    pub nodes: Vec<Process>,
    /// How the test reaches the nodes, and the store's TLS settings (TLS clusters).
    access: Access,
    tls: Option<RedisTls>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        RedisCluster::start_full(1, None)
    }

    /// Three masters without replicas: a master killed stays down, its slots unserved.
    pub fn start_without_replicas() -> RedisCluster {
        RedisCluster::start_full(0, None)
    }

    /// Three masters without replicas, every link (clients, the cluster bus, replication)
    /// over TLS with `pki`'s certificate.
    pub fn start_tls(pki: &Pki) -> RedisCluster {
        RedisCluster::start_full(0, Some(pki))
    }

    fn start_full(replicas: usize, pki: Option<&Pki>) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 * (1 + replicas) {
            let p = free_port(true);
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let access = Access {
            password: None,
            tls: pki.map(|p| redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(&p.ca).unwrap()),
            }),
        };
        let nodes: Vec<Process> = ports
            .iter()
            .map(|&p| {
                let mut args = match pki {
                    None => base_args(p, dir.path()),
                    Some(pki) => {
                        let mut args = base_args(0, dir.path());
                        for (k, v) in [
                            ("--tls-port", p.to_string()),
                            ("--tls-cluster", "yes".into()),
                            ("--tls-replication", "yes".into()),
                            ("--tls-auth-clients", "no".into()),
                            ("--tls-cert-file", pki.server_cert.display().to_string()),
                            ("--tls-key-file", pki.server_key.display().to_string()),
                            ("--tls-ca-cert-file", pki.ca.display().to_string()),
                        ] {
                            args.extend([k.to_string(), v]);
                        }
                        args
                    }
                };
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{p}.conf"),
                        "--cluster-node-timeout",
                        "1000",
                    ]
                    .iter()
                    .map(|s| s.to_string()),
                );
                Process::spawn("redis-server", p, args)
            })
            .collect();
        for p in &ports {
            wait_ping_as(*p, &access);
        }
        let mut create = binary("redis-cli");
        if let Some(pki) = pki {
            create.arg("--tls").arg("--cacert").arg(&pki.ca);
        }
        create.arg("--cluster").arg("create");
        for p in &ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster {
            nodes,
            access,
            tls: pki.map(|p| RedisTls {
                ca_file: Some(p.ca.clone()),
                client: None,
            }),
            _dir: dir,
        };
        cluster.wait_ok();
        // A replica that never synced with its master is not allowed to replace it: wait
        // until each one has.
        for n in &cluster.nodes {
            wait_until(Duration::from_secs(20), "the replicas synced", || {
                query_as::<String>(
                    n.port,
                    &cluster.access,
                    redis::cmd("INFO").arg("replication"),
                )
                .is_ok_and(|i| i.contains("role:master") || i.contains("master_link_status:up"))
            });
        }
        cluster
    }

    /// Until every running node reports `cluster_state:ok`.
    pub fn wait_ok(&self) {
        for n in self.nodes.iter().filter(|n| n.running()) {
            wait_until(Duration::from_secs(20), "the cluster is ok", || {
                query_as::<String>(n.port, &self.access, redis::cmd("CLUSTER").arg("INFO"))
                    .is_ok_and(|i| i.contains("cluster_state:ok"))
            });
        }
    }

    fn client(&self) -> redis::cluster::ClusterClient {
        let scheme = if self.access.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let urls: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.running())
            .map(|n| format!("{scheme}://127.0.0.1:{}/", n.port))
            .collect();
        let mut b = redis::cluster::ClusterClientBuilder::new(urls);
        if let Some(certs) = &self.access.tls {
            b = b.certs(certs.clone());
        }
        b.build().unwrap()
    }

    fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut c = self.client().get_connection()?;
        cmd.query(&mut c)
    }

    /// `cmd` answered by the node on `port` itself (a command on keys answers for that node's
    /// keys only, or is redirected).
    pub fn on_node<T: redis::FromRedisValue>(
        &self,
        port: u16,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        query_as(port, &self.access, cmd)
    }

    /// The ports of the masters that serve slots now.
    pub fn master_ports(&self) -> Vec<u16> {
        let nodes: String = self.run(redis::cmd("CLUSTER").arg("NODES")).unwrap();
        let mut ports: Vec<u16> = nodes
            .lines()
            .map(|line| line.split(' ').collect::<Vec<_>>())
            .filter(|f| f[2].contains("master") && !f[2].contains("fail") && f.len() > 8)
            .map(|f| node_port(f[1]))
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The keys matching `pattern` that the node on `port` holds.
    pub fn keys_on(&self, port: u16, pattern: &str) -> Vec<String> {
        self.on_node(port, redis::cmd("KEYS").arg(pattern))
            .expect("KEYS on the node")
    }

    /// The port of the master that serves `key`'s slot (`None` while none does: its master
    /// failed and no replica was promoted yet).
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let slot: i64 = query_as(
            self.nodes.iter().find(|n| n.running()).unwrap().port,
            &self.access,
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(key),
        )
        .unwrap();
        let nodes: String = self.run(redis::cmd("CLUSTER").arg("NODES")).unwrap();
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port = node_port(f[1]);
            for range in &f[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (a, b): (i64, i64) = (a.parse().unwrap_or(-1), b.parse().unwrap_or(-1));
                if (a..=b).contains(&slot) {
                    return Some(port);
                }
            }
        }
        None
    }

    pub fn kill_port(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node on that port")
            .kill();
    }
}

/// The port of a `CLUSTER NODES` address (`ip:port@bus-port[,hostname]`).
fn node_port(address: &str) -> u16 {
    address
        .split('@')
        .next()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("a node address with a port")
}

impl Deployment for RedisCluster {
    fn store(&self, instance: &str) -> RedisSettings {
        RedisSettings {
            endpoint: RedisEndpoint::Cluster {
                // Two seeds are plenty: the client learns the rest from either.
                nodes: self
                    .nodes
                    .iter()
                    .take(2)
                    .map(|n| NodeAddr {
                        host: "127.0.0.1".into(),
                        port: n.port,
                    })
                    .collect(),
                auth: RedisAuth::default(),
            },
            tls: self.tls.clone(),
            ..RedisSettings::for_url("redis://unused/", instance)
        }
    }
    fn key(&self, prefix: &str, kind: &str, id: &str) -> String {
        format!("{prefix}:{kind}:{{{id}}}")
    }
    fn hget(&self, key: &str, field: &str) -> Option<String> {
        self.run(redis::cmd("HGET").arg(key).arg(field)).ok()?
    }
    fn hset(&self, key: &str, field: &str, value: &str) {
        let () = self
            .run(redis::cmd("HSET").arg(key).arg(field).arg(value))
            .expect("HSET");
    }
    fn flush(&self) {
        // Routed to every master by the cluster client.
        let () = self.run(&redis::cmd("FLUSHALL")).expect("FLUSHALL");
    }
    fn stop_all(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
    fn restart_all(&mut self) {
        // Each node comes back with its nodes.conf (slots, epochs) and no data.
        for n in &mut self.nodes {
            n.start();
        }
        for n in &self.nodes {
            wait_ping_as(n.port, &self.access);
        }
        self.wait_ok();
    }
}
