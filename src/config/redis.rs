//! Where the Redis store connects: one server (`url`, plain or `rediss://`), the master a
//! Sentinel quorum names (`sentinels`), or a Cluster (`cluster_nodes`); its TLS files; and the
//! validation of a `kind = "redis"` store's keys. Exactly one of the three topologies is
//! configured.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::raw::RawStore;
use super::validate::secs;
use super::{redact_url, ConfigError, RedisSettings, SecretSource, UpstreamSettings};

/// Most addresses in `sentinels` or `cluster_nodes`: a few are enough to find the rest (a
/// cluster client learns every node from any one of them).
const MAX_NODES: usize = 64;
/// Largest client certificate chain or key file read.
const MAX_TLS_FILE: u64 = 1024 * 1024;
/// Longest Redis lock lifetime and poll interval.
const MAX_STORE_SECS: u64 = 3600;
/// Longest key prefix and instance name: they go into every key and record.
const MAX_LABEL: usize = 128;
/// The Redis store's local copy of the platform records, in the working directory.
const DEFAULT_LOCAL_PATH: &str = "wxtoken-local.redb";

/// Which Redis deployment the store talks to.
#[derive(Debug, Clone)]
pub enum RedisEndpoint {
    /// One server: `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. Secret
    /// because the URL may carry the password.
    Url {
        url: SecretString,
        source: SecretSource,
    },
    /// The master that a quorum of Sentinels names, followed across failovers.
    Sentinel(SentinelEndpoint),
    /// A Redis Cluster, found from any of these seed nodes.
    Cluster {
        nodes: Vec<NodeAddr>,
        auth: RedisAuth,
    },
}

/// The Sentinels of a Sentinel deployment, the master they name, and the credentials of both.
#[derive(Debug, Clone)]
pub struct SentinelEndpoint {
    /// `host:port` of each Sentinel.
    pub sentinels: Vec<NodeAddr>,
    /// The name the Sentinels monitor the master under (`sentinel_master`).
    pub master: String,
    /// For the master and its replicas.
    pub auth: RedisAuth,
    /// For the Sentinels themselves, which may have a password of their own.
    pub sentinel_password: Option<(SecretString, SecretSource)>,
}

/// Credentials for the data nodes of a Sentinel or Cluster deployment (with `url` they are
/// part of the URL).
#[derive(Debug, Clone, Default)]
pub struct RedisAuth {
    /// The ACL user; `None` is the default user.
    pub username: Option<String>,
    pub password: Option<(SecretString, SecretSource)>,
}

/// `host:port` of a Sentinel or Cluster node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// TLS to Redis: on with a `rediss://` URL, or `tls = true` for Sentinel and Cluster. The
/// server's certificate is checked against `ca_file` (else the web PKI roots) and against the
/// host name connected to; there is no way to turn either check off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisTls {
    /// PEM roots that sign the servers' certificates; `None`: the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain) and its key, for servers that ask for one (mutual TLS).
    pub client: Option<(PathBuf, PathBuf)>,
}

impl RedisEndpoint {
    /// Where Redis is, for messages and `check-config`: never a password.
    pub fn location(&self) -> String {
        let list = |nodes: &[NodeAddr]| {
            nodes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            RedisEndpoint::Url { url, .. } => redact_url(url.expose_secret()),
            RedisEndpoint::Sentinel(s) => {
                format!("sentinel master {} via {}", s.master, list(&s.sentinels))
            }
            RedisEndpoint::Cluster { nodes, .. } => format!("cluster via {}", list(nodes)),
        }
    }

    /// The topology's name in metrics-free places (logs, `/readyz` detail).
    pub fn kind(&self) -> &'static str {
        match self {
            RedisEndpoint::Url { .. } => "server",
            RedisEndpoint::Sentinel(_) => "sentinel",
            RedisEndpoint::Cluster { .. } => "cluster",
        }
    }

    /// Compares by value, secrets included (never printed): a changed password is a change
    /// that needs a restart.
    pub(super) fn same_as(&self, other: &RedisEndpoint) -> bool {
        fn secret(
            a: &Option<(SecretString, SecretSource)>,
            b: &Option<(SecretString, SecretSource)>,
        ) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some((a, _)), Some((b, _))) => a.expose_secret() == b.expose_secret(),
                _ => false,
            }
        }
        fn auth(a: &RedisAuth, b: &RedisAuth) -> bool {
            a.username == b.username && secret(&a.password, &b.password)
        }
        match (self, other) {
            (RedisEndpoint::Url { url: a, .. }, RedisEndpoint::Url { url: b, .. }) => {
                a.expose_secret() == b.expose_secret()
            }
            (RedisEndpoint::Sentinel(a), RedisEndpoint::Sentinel(b)) => {
                a.sentinels == b.sentinels
                    && a.master == b.master
                    && auth(&a.auth, &b.auth)
                    && secret(&a.sentinel_password, &b.sentinel_password)
            }
            (
                RedisEndpoint::Cluster {
                    nodes: n1,
                    auth: a1,
                },
                RedisEndpoint::Cluster {
                    nodes: n2,
                    auth: a2,
                },
            ) => n1 == n2 && auth(a1, a2),
            _ => false,
        }
    }
}

/// Parses `host:port` (`[v6]:port` for IPv6). Schemes, credentials and paths are refused: the
/// password has keys of its own, TLS is `tls`.
fn node_addr(key: &str, text: &str) -> Result<NodeAddr, ConfigError> {
    let bad = || ConfigError::at(key, format!("`{}` is not host:port", redact_url_like(text)));
    if text.contains("://") || text.contains('@') || text.contains('/') {
        return Err(bad());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            return Err(bad());
        }
        (host, port)
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.len() > 253 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(NodeAddr {
        host: host.to_string(),
        port,
    })
}

/// A node list entry for a message: anything after an `@` may be a password.
fn redact_url_like(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((_, rest)) => format!("(credentials not shown)@{rest}"),
        None => text.to_string(),
    }
}

fn node_list(key: &str, list: Vec<String>) -> Result<Vec<NodeAddr>, ConfigError> {
    if list.is_empty() || list.len() > MAX_NODES {
        return Err(ConfigError::at(
            key,
            format!("must list 1 to {MAX_NODES} host:port addresses"),
        ));
    }
    let mut out: Vec<NodeAddr> = Vec::with_capacity(list.len());
    for (i, text) in list.iter().enumerate() {
        let addr = node_addr(&format!("{key}[{i}]"), text.trim())?;
        if out.contains(&addr) {
            return Err(ConfigError::at(
                format!("{key}[{i}]"),
                format!("{addr} is listed twice"),
            ));
        }
        out.push(addr);
    }
    Ok(out)
}

/// A password named by an environment variable (`{key}_env`) or read from a file
/// (`{key}_file`), at most one of them: `key` is `store.password` or `store.sentinel_password`.
fn password_from(
    key: &str,
    var: Option<String>,
    file: Option<PathBuf>,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(SecretString, SecretSource)>, ConfigError> {
    let env_key = format!("{key}_env");
    match (var, file) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ConfigError::at(
            key,
            format!("set only one of {key}_env, {key}_file"),
        )),
        (None, Some(path)) => {
            let (v, source) = super::secrets::read_secret_file(&format!("{key}_file"), path)?;
            Ok(Some((SecretString::from(v), source)))
        }
        (Some(var), None) => match lookup_env(&var) {
            Some(v) if !v.trim().is_empty() => Ok(Some((
                SecretString::from(v.trim().to_string()),
                SecretSource::Env(var),
            ))),
            Some(_) => Err(ConfigError::at(
                env_key,
                format!("environment variable {var} is empty"),
            )),
            None => Err(ConfigError::at(
                env_key,
                format!("environment variable {var} is not set"),
            )),
        },
    }
}

/// Checks that a client certificate file holds PEM certificates and a key file a PEM private
/// key. Only the kind of problem is reported, never the content.
fn check_client_files(cert: &Path, key: &Path) -> Result<(), ConfigError> {
    use rustls_pki_types::pem::PemObject;
    let pem = crate::files::read_bounded(cert, MAX_TLS_FILE)
        .map_err(|e| ConfigError::at("store.tls_cert_file", e))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            ConfigError::at(
                "store.tls_cert_file",
                format!("{} is not valid PEM", cert.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::at(
            "store.tls_cert_file",
            format!("{} holds no PEM certificate", cert.display()),
        ));
    }
    let pem = crate::files::read_bounded(key, MAX_TLS_FILE)
        .map_err(|e| ConfigError::at("store.tls_key_file", e))?;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        ConfigError::at(
            "store.tls_key_file",
            format!("{} holds no PEM private key", key.display()),
        )
    })?;
    Ok(())
}

/// The TLS part of `[store]`: `enabled` says whether TLS is on (a `rediss://` URL, or
/// `tls = true`); files given without it are an error rather than silently unused.
fn validate_tls(
    st: &mut RawStore,
    enabled: bool,
    why_off: &str,
) -> Result<Option<RedisTls>, ConfigError> {
    let files = [
        ("store.tls_ca_file", st.tls_ca_file.is_some()),
        ("store.tls_cert_file", st.tls_cert_file.is_some()),
        ("store.tls_key_file", st.tls_key_file.is_some()),
    ];
    if !enabled {
        if let Some((key, _)) = files.iter().find(|(_, set)| *set) {
            return Err(ConfigError::at(
                key,
                format!("only used with TLS; {why_off}"),
            ));
        }
        return Ok(None);
    }
    let ca_file = st.tls_ca_file.take();
    if let Some(ca) = &ca_file {
        crate::tls::read_ca_file(ca)
            .map_err(|e| ConfigError::at("store.tls_ca_file", format!("{e:#}")))?;
    }
    let client = match (st.tls_cert_file.take(), st.tls_key_file.take()) {
        (Some(cert), Some(key)) => {
            check_client_files(&cert, &key)?;
            Some((cert, key))
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::at(
                "store.tls_cert_file",
                "needs store.tls_key_file (the client certificate's private key)",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::at(
                "store.tls_key_file",
                "needs store.tls_cert_file (the client certificate it belongs to)",
            ))
        }
    };
    Ok(Some(RedisTls { ca_file, client }))
}

/// The keys of a `kind = "redis"` store: where it is ([`validate_endpoint`]), then the names
/// and timings every topology shares.
pub(super) fn validate_redis(
    mut st: RawStore,
    upstream: &UpstreamSettings,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<RedisSettings, ConfigError> {
    let (endpoint, tls) = validate_endpoint(&mut st, lookup_env)?;
    let key_prefix = st.key_prefix.unwrap_or_else(|| "wxtoken".into());
    if key_prefix.is_empty()
        || key_prefix.len() > MAX_LABEL
        || key_prefix.contains(char::is_whitespace)
        || key_prefix.contains(['{', '}'])
    {
        // Braces would move the Cluster hash tag of every key (see the Redis store).
        return Err(ConfigError::at(
            "store.key_prefix",
            format!("must be 1-{MAX_LABEL} characters without spaces or braces"),
        ));
    }
    let lock_ttl = secs(
        "store.lock_ttl_secs",
        st.lock_ttl_secs.unwrap_or(15),
        1,
        MAX_STORE_SECS,
    )?;
    if lock_ttl <= upstream.timeout {
        tracing::warn!(
            "store.lock_ttl_secs is not longer than upstream.timeout_secs: a slow fetch \
             may outlive its lock (fencing keeps the newer token, but the slow fetch is wasted)"
        );
    }
    let poll_interval = secs(
        "store.poll_secs",
        st.poll_secs.unwrap_or(5),
        1,
        MAX_STORE_SECS,
    )?;
    let local_path = st
        .local_path
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCAL_PATH));
    if local_path.as_os_str().is_empty() {
        return Err(ConfigError::at("store.local_path", "must not be empty"));
    }
    let instance = st.instance.unwrap_or_else(default_instance_name);
    if instance.is_empty() || instance.len() > MAX_LABEL {
        return Err(ConfigError::at(
            "store.instance",
            format!("must be 1-{MAX_LABEL} characters"),
        ));
    }
    Ok(RedisSettings {
        endpoint,
        tls,
        key_prefix,
        lock_ttl,
        poll_interval,
        instance,
        local_path: Some(local_path),
    })
}

/// This host's name and the process id: unique among the instances sharing one Redis.
fn default_instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wxtoken".into());
    format!("{host}-{}", std::process::id())
}

/// The topology keys of a `kind = "redis"` store, and its TLS.
fn validate_endpoint(
    st: &mut RawStore,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(RedisEndpoint, Option<RedisTls>), ConfigError> {
    let url_given = st.url.is_some() || st.url_env.is_some() || st.url_file.is_some();
    one_topology(st, url_given)?;
    if url_given {
        return url_endpoint(st, lookup_env);
    }
    let auth = RedisAuth {
        username: match st.username.take() {
            Some(u) if u.is_empty() || u.len() > 128 || u.contains(char::is_whitespace) => {
                return Err(ConfigError::at(
                    "store.username",
                    "must be 1-128 characters without spaces",
                ))
            }
            u => u,
        },
        password: password_from(
            "store.password",
            st.password_env.take(),
            st.password_file.take(),
            lookup_env,
        )?,
    };
    let tls = validate_tls(st, st.tls == Some(true), "set store.tls = true")?;
    if let Some(list) = st.sentinels.take() {
        let endpoint = sentinel_endpoint(st, list, auth, lookup_env)?;
        return Ok((endpoint, tls));
    }
    if let Some(list) = st.cluster_nodes.take() {
        let nodes = node_list("store.cluster_nodes", list)?;
        return Ok((RedisEndpoint::Cluster { nodes, auth }, tls));
    }
    Err(ConfigError::at(
        "store.url",
        "missing: set store.url, store.url_env or store.url_file (one server), store.sentinels (Sentinel) or store.cluster_nodes (Cluster) for the redis store",
    ))
}

/// At most one topology is set, and the Sentinel keys only with `sentinels`.
fn one_topology(st: &RawStore, url_given: bool) -> Result<(), ConfigError> {
    let chosen = [
        ("store.url", url_given),
        ("store.sentinels", st.sentinels.is_some()),
        ("store.cluster_nodes", st.cluster_nodes.is_some()),
    ];
    let set: Vec<&str> = chosen.iter().filter(|(_, s)| *s).map(|(k, _)| *k).collect();
    if let [first, second, ..] = set[..] {
        return Err(ConfigError::at(
            second,
            format!(
                "set exactly one of store.url (or url_env, url_file), store.sentinels, store.cluster_nodes; {first} is set too"
            ),
        ));
    }
    let sentinel_only = [
        ("store.sentinel_master", st.sentinel_master.is_some()),
        (
            "store.sentinel_password_env",
            st.sentinel_password_env.is_some(),
        ),
        (
            "store.sentinel_password_file",
            st.sentinel_password_file.is_some(),
        ),
    ];
    if st.sentinels.is_none() {
        if let Some((key, _)) = sentinel_only.iter().find(|(_, s)| *s) {
            return Err(ConfigError::at(key, "only used with store.sentinels"));
        }
    }
    Ok(())
}

/// One server at a URL, which carries its own credentials and chooses TLS by its scheme: the
/// keys that would say otherwise are refused.
fn url_endpoint(
    st: &mut RawStore,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(RedisEndpoint, Option<RedisTls>), ConfigError> {
    for (key, set) in [
        ("store.password_env", st.password_env.is_some()),
        ("store.password_file", st.password_file.is_some()),
        ("store.username", st.username.is_some()),
    ] {
        if set {
            return Err(ConfigError::at(
                key,
                "only used with store.sentinels or store.cluster_nodes; with store.url the credentials are part of the URL",
            ));
        }
    }
    if st.tls.is_some() {
        return Err(ConfigError::at(
            "store.tls",
            "with store.url the scheme chooses TLS: use a rediss:// URL",
        ));
    }
    let (url, source) = validate_url(st, lookup_env)?;
    let tls = url.expose_secret().starts_with("rediss://");
    let tls = validate_tls(st, tls, "use a rediss:// URL")?;
    Ok((RedisEndpoint::Url { url, source }, tls))
}

/// The master that the Sentinels at `list` name, and the Sentinels' own password.
fn sentinel_endpoint(
    st: &mut RawStore,
    list: Vec<String>,
    auth: RedisAuth,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<RedisEndpoint, ConfigError> {
    let sentinels = node_list("store.sentinels", list)?;
    let master = match st.sentinel_master.take() {
        Some(m) if !m.is_empty() && m.len() <= 128 && !m.contains(char::is_whitespace) => m,
        Some(_) => {
            return Err(ConfigError::at(
                "store.sentinel_master",
                "must be 1-128 characters without spaces",
            ))
        }
        None => {
            return Err(ConfigError::at(
                "store.sentinel_master",
                "missing: the name the Sentinels monitor the master under (e.g. \"mymaster\")",
            ))
        }
    };
    let sentinel_password = password_from(
        "store.sentinel_password",
        st.sentinel_password_env.take(),
        st.sentinel_password_file.take(),
        lookup_env,
    )?;
    Ok(RedisEndpoint::Sentinel(SentinelEndpoint {
        sentinels,
        master,
        auth,
        sentinel_password,
    }))
}

fn validate_url(
    st: &mut RawStore,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(SecretString, SecretSource), ConfigError> {
    let (url, source) = match (st.url.take(), st.url_env.take(), st.url_file.take()) {
        (Some(u), None, None) => (u, SecretSource::Inline),
        (None, Some(var), None) => match lookup_env(&var) {
            Some(u) if !u.trim().is_empty() => (u.trim().to_string(), SecretSource::Env(var)),
            _ => {
                return Err(ConfigError::at(
                    "store.url_env",
                    format!("environment variable {var} is not set"),
                ))
            }
        },
        (None, None, Some(path)) => super::secrets::read_secret_file("store.url_file", path)?,
        _ => {
            return Err(ConfigError::at(
                "store.url",
                "set only one of store.url, store.url_env, store.url_file",
            ))
        }
    };
    let scheme_len = if url.starts_with("rediss://") {
        "rediss://".len()
    } else if url.starts_with("redis://") {
        "redis://".len()
    } else {
        0
    };
    if scheme_len == 0 || url.len() <= scheme_len {
        return Err(ConfigError::at(
            "store.url",
            format!("`{}` is not a redis:// or rediss:// URL", redact_url(&url)),
        ));
    }
    if url.contains('#') {
        // The client reads `#insecure` as "do not check the certificate"; that is not offered.
        return Err(ConfigError::at(
            "store.url",
            "must not carry a #fragment: certificate checks cannot be turned off",
        ));
    }
    if source == SecretSource::Inline && url.contains('@') {
        tracing::warn!(
            "store.url carries a password inline; prefer store.url_env or store.url_file"
        );
    }
    Ok((SecretString::from(url), source))
}
