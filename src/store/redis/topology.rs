//! Where the Redis store's connections go, for each topology: one server (plain or TLS), the
//! master a Sentinel quorum names, or a Cluster. Everything above this file sends commands
//! through one [`Conn`] and does not care which it is, but for the few commands without a key
//! that must reach every master of a Cluster (`masters.rs`).
//!
//! - **One server**: a `ConnectionManager`, which reconnects to the same address by itself.
//! - **Sentinel**: the master's address is asked of the Sentinels, then a `ConnectionManager`
//!   talks to it. The crate resolves the master only when a client is built (an existing
//!   connection never follows a failover), so the health loop checks every second that the
//!   node is still the master (`ROLE`) and, when it is not or cannot be reached, drops the
//!   connection: the next connect asks the Sentinels again and so finds the promoted replica.
//! - **Cluster**: the crate's async cluster connection, which routes each command by its key's
//!   slot and follows `MOVED` and failovers by itself. Pipelines must stay within one slot, so
//!   the store sends multi-key reads as concurrent single commands there (they still share
//!   round trips per node, the connection being multiplexed).
//!
//! Change notifications are classic pub/sub, which a Cluster delivers to every node: the
//! subscriber connects to any one (the next seed after each failure), and on Sentinel to the
//! current master.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo as _, Pipeline, RedisConnectionInfo,
    RedisFuture, RedisResult, TlsCertificates, TlsMode, Value,
};
use secrecy::ExposeSecret as _;

use crate::config::{NodeAddr, RedisAuth, RedisEndpoint, RedisSettings, RedisTls};

/// Largest TLS file read (the configuration checked them already; they are read again here,
/// when the store opens).
const MAX_TLS_FILE: u64 = 1024 * 1024;

/// A connection to whichever topology is configured; cheap to clone (clones share it).
#[derive(Clone)]
pub(super) enum Conn {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub(super) enum Topology {
    Server {
        client: redis::Client,
    },
    Sentinel {
        /// The crate's Sentinel client needs `&mut` to look the master up.
        sentinel: tokio::sync::Mutex<SentinelClient>,
        /// The master found by the last lookup: the subscriber connects there too.
        master: Mutex<Option<redis::Client>>,
        /// The address of the last master connected to, kept across lookups (for the log line
        /// when it changes).
        last_master: Mutex<Option<String>>,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
        /// One client per seed node, for the subscriber.
        seeds: Vec<redis::Client>,
        next_seed: AtomicUsize,
    },
}

/// The certificates of `tls`, read from their files.
fn certificates(tls: &RedisTls) -> anyhow::Result<TlsCertificates> {
    let read = |key: &str, path: &std::path::Path| {
        crate::files::read_bounded(path, MAX_TLS_FILE)
            .map_err(|e| anyhow::anyhow!("store.{key}: {e}"))
    };
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read("tls_ca_file", path)?),
        None => None,
    };
    let client_tls = match &tls.client {
        Some((cert, key)) => Some(redis::ClientTlsConfig {
            client_cert: read("tls_cert_file", cert)?,
            client_key: read("tls_key_file", key)?,
        }),
        None => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

fn node_info(node: &NodeAddr, tls: bool, auth: &RedisAuth) -> ConnectionInfo {
    let addr = if tls {
        ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(node.host.clone(), node.port)
    };
    let mut redis = RedisConnectionInfo::default();
    if let Some(u) = &auth.username {
        redis = redis.set_username(u);
    }
    if let Some((p, _)) = &auth.password {
        redis = redis.set_password(p.expose_secret());
    }
    addr.into_connection_info()
        .expect("an address is always connection info")
        .set_redis_settings(redis)
}

/// A client for one node, with the certificates when TLS is on.
fn node_client(
    info: ConnectionInfo,
    certs: Option<&TlsCertificates>,
) -> RedisResult<redis::Client> {
    match certs {
        Some(c) => redis::Client::build_with_tls(info, c.clone()),
        None => redis::Client::open(info),
    }
}

impl Topology {
    /// Builds the clients; connects nothing yet. Errors name the key at fault, never a secret.
    pub(super) fn open(settings: &RedisSettings) -> anyhow::Result<Topology> {
        let certs = settings.tls.as_ref().map(certificates).transpose()?;
        let location = settings.endpoint.location();
        let unusable = |key: &str, e: redis::RedisError| {
            anyhow::anyhow!(
                "store.{key}: not usable ({location}): {:?}: {}",
                e.kind(),
                e.detail().unwrap_or("")
            )
        };
        match &settings.endpoint {
            RedisEndpoint::Url { url, .. } => {
                let client = match &certs {
                    Some(c) => redis::Client::build_with_tls(url.expose_secret(), c.clone()),
                    None => redis::Client::open(url.expose_secret()),
                }
                // Only the kind: the crate's message may quote the URL.
                .map_err(|e| {
                    anyhow::anyhow!(
                        "store.url: not a usable Redis URL ({location}): {:?}",
                        e.kind()
                    )
                })?;
                Ok(Topology::Server { client })
            }
            RedisEndpoint::Sentinel(s) => {
                let tls = certs.is_some();
                let addrs = s
                    .sentinels
                    .iter()
                    .map(|n| node_info(n, tls, &RedisAuth::default()).addr().clone());
                let mut b =
                    SentinelClientBuilder::new(addrs, &s.master, SentinelServerType::Master)
                        .map_err(|e| unusable("sentinels", e))?;
                if let Some((p, _)) = &s.sentinel_password {
                    b = b.set_client_to_sentinel_password(p.expose_secret());
                }
                if let Some(u) = &s.auth.username {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some((p, _)) = &s.auth.password {
                    b = b.set_client_to_redis_password(p.expose_secret());
                }
                if let Some(c) = &certs {
                    b = b
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_certificates(c.clone())
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_redis_certificates(c.clone());
                }
                let sentinel = b.build().map_err(|e| unusable("sentinels", e))?;
                Ok(Topology::Sentinel {
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    master: Mutex::new(None),
                    last_master: Mutex::new(None),
                })
            }
            RedisEndpoint::Cluster { nodes, auth } => {
                let tls = certs.is_some();
                let infos: Vec<ConnectionInfo> =
                    nodes.iter().map(|n| node_info(n, tls, auth)).collect();
                let mut b = ClusterClientBuilder::new(infos.clone())
                    .connection_timeout(super::COMMAND_TIMEOUT)
                    .response_timeout(super::COMMAND_TIMEOUT)
                    // A command fails within the store's timeout rather than being retried
                    // past it; the callers retry on their own schedule.
                    .retries(2)
                    .min_retry_wait(50)
                    .max_retry_wait(300);
                if let Some(u) = &auth.username {
                    b = b.username(u);
                }
                if let Some((p, _)) = &auth.password {
                    b = b.password(p.expose_secret());
                }
                if let Some(c) = &certs {
                    b = b.tls(TlsMode::Secure).certs(c.clone());
                }
                let client = b.build().map_err(|e| unusable("cluster_nodes", e))?;
                let seeds = infos
                    .into_iter()
                    .map(|i| node_client(i, certs.as_ref()))
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(|e| unusable("cluster_nodes", e))?;
                Ok(Topology::Cluster {
                    client,
                    seeds,
                    next_seed: AtomicUsize::new(0),
                })
            }
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Topology::Cluster { .. })
    }

    /// Whether a connection that stops answering is dropped so the next one asks where the
    /// master is now (Sentinel).
    pub(super) fn follows_master(&self) -> bool {
        matches!(self, Topology::Sentinel { .. })
    }

    fn manager_config() -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(super::COMMAND_TIMEOUT))
            .set_response_timeout(Some(super::COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500))
    }

    /// A new connection. On Sentinel this asks the Sentinels where the master is now.
    pub(super) async fn connect(&self) -> RedisResult<Conn> {
        match self {
            Topology::Server { client } => Ok(Conn::Server(
                client
                    .get_connection_manager_with_config(Self::manager_config())
                    .await?,
            )),
            Topology::Sentinel {
                sentinel,
                master,
                last_master,
            } => {
                let client = sentinel.lock().await.async_get_client().await?;
                let conn = client
                    .get_connection_manager_with_config(Self::manager_config())
                    .await?;
                let now = client.get_connection_info().addr().to_string();
                let mut known = last_master.lock().expect("lock not poisoned");
                if known.as_ref().is_some_and(|before| *before != now) {
                    tracing::warn!(from = %known.as_deref().unwrap_or(""), to = %now,
                        "the Sentinels name a new Redis master; following it");
                }
                *known = Some(now);
                drop(known);
                *master.lock().expect("lock not poisoned") = Some(client);
                Ok(Conn::Server(conn))
            }
            Topology::Cluster { client, .. } => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(super::COMMAND_TIMEOUT)
                    .set_response_timeout(super::COMMAND_TIMEOUT);
                Ok(Conn::Cluster(
                    client.get_async_connection_with_config(config).await?,
                ))
            }
        }
    }

    /// The health check: `Ok` when the connection serves the store. On Sentinel the node must
    /// still be the master; `Err(true)` then means "drop the connection and ask the Sentinels
    /// again".
    pub(super) async fn check(&self, conn: &mut Conn) -> Result<(), (String, bool)> {
        let follow = matches!(self, Topology::Sentinel { .. });
        match (self, conn) {
            (Topology::Sentinel { .. }, Conn::Server(c)) => {
                let role: Value = redis::cmd("ROLE")
                    .query_async(c)
                    .await
                    .map_err(|e| (e.to_string(), follow))?;
                match role {
                    Value::Array(items) if items.first().is_some_and(is_master) => Ok(()),
                    _ => Err(("the node is no longer the master".into(), true)),
                }
            }
            (Topology::Cluster { .. }, Conn::Cluster(c)) => {
                // The cluster's own verdict: `cluster_state:ok` while every slot has a master
                // that answers. A master that died makes it `fail` until its replica is
                // promoted, and part of the store is unavailable meanwhile: reported as down.
                let info = c
                    .route_command(
                        redis::cmd("CLUSTER").arg("INFO").clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
                    )
                    .await
                    .map_err(|e| (e.to_string(), false))?;
                let text: String = redis::FromRedisValue::from_redis_value(info)
                    .map_err(|e| (e.to_string(), false))?;
                if text.contains("cluster_state:ok") {
                    Ok(())
                } else {
                    Err(("the cluster reports cluster_state:fail".into(), false))
                }
            }
            (_, c) => redis::cmd("PING")
                .query_async::<String>(c)
                .await
                .map(drop)
                .map_err(|e| (e.to_string(), follow)),
        }
    }

    /// A connection for the change notifications.
    pub(super) async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        match self {
            Topology::Server { client } => client.get_async_pubsub().await,
            Topology::Sentinel {
                sentinel, master, ..
            } => {
                let known = master.lock().expect("lock not poisoned").clone();
                let client = match known {
                    Some(c) => c,
                    None => sentinel.lock().await.async_get_client().await?,
                };
                client.get_async_pubsub().await
            }
            Topology::Cluster {
                seeds, next_seed, ..
            } => {
                let i = next_seed.fetch_add(1, Ordering::Relaxed) % seeds.len().max(1);
                seeds[i].get_async_pubsub().await
            }
        }
    }

    /// What a healthy store reports in `/readyz`: on Sentinel, which node is the master now.
    pub(super) fn healthy_detail(&self) -> String {
        match self {
            Topology::Sentinel { master, .. } => {
                match &*master.lock().expect("lock not poisoned") {
                    Some(c) => format!("ok: master {}", c.get_connection_info().addr()),
                    None => "ok".into(),
                }
            }
            _ => "ok".into(),
        }
    }

    /// On Sentinel, forgets the master found last (after a failed subscription too).
    pub(super) fn forget_master(&self) {
        if let Topology::Sentinel { master, .. } = self {
            *master.lock().expect("lock not poisoned") = None;
        }
    }
}

fn is_master(v: &Value) -> bool {
    match v {
        Value::BulkString(b) => b == b"master",
        Value::SimpleString(s) => s == "master",
        _ => false,
    }
}
