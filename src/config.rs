//! Settings: the TOML file, `WXTOKEN_` environment overrides, validation and secret loading.
//!
//! Loading happens in three steps so every error can name the key it is about:
//! 1. the file is parsed into a generic TOML tree,
//! 2. environment variables `WXTOKEN_A__B__C=value` are written into that tree,
//! 3. the tree is deserialized into `RawSettings` (unknown keys rejected) and validated into
//!    [`Settings`], where secrets are resolved and held as [`SecretString`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Prefix of environment variables that override configuration values.
pub const ENV_PREFIX: &str = "WXTOKEN_";

/// A configuration problem, always naming the key (or file) it is about.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn at(key: impl fmt::Display, msg: impl fmt::Display) -> Self {
        ConfigError(format!("{key}: {msg}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Raw form: exactly what the file may contain.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    refresh: RawRefresh,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    apps: Vec<RawApp>,
    #[serde(default)]
    clients: Vec<RawClient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    shutdown_timeout_secs: u64,
    body_timeout_secs: u64,
    max_connections_per_worker: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            shutdown_timeout_secs: 10,
            body_timeout_secs: 5,
            max_connections_per_worker: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    base_url: String,
    wecom_base_url: String,
    timeout_secs: u64,
    ca_file: Option<PathBuf>,
    min_token_lifetime_secs: u64,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            base_url: "https://api.weixin.qq.com".into(),
            wecom_base_url: "https://qyapi.weixin.qq.com".into(),
            timeout_secs: 10,
            ca_file: None,
            min_token_lifetime_secs: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRefresh {
    margin_secs: u64,
    min_interval_secs: u64,
    retry_min_secs: u64,
    retry_max_secs: u64,
}

impl Default for RawRefresh {
    fn default() -> Self {
        RawRefresh {
            margin_secs: 600,
            min_interval_secs: 5,
            retry_min_secs: 1,
            retry_max_secs: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    kind: String,
    path: Option<PathBuf>,
    url: Option<String>,
    url_env: Option<String>,
    key_prefix: Option<String>,
    lock_ttl_secs: Option<u64>,
    poll_secs: Option<u64>,
    instance: Option<String>,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            kind: "embedded".into(),
            path: None,
            url: None,
            url_env: None,
            key_prefix: None,
            lock_ttl_secs: None,
            poll_secs: None,
            instance: None,
        }
    }
}

const DEFAULT_STORE_PATH: &str = "data/wxtoken.redb";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: String,
    #[serde(default)]
    kind: Option<String>,
    appid: Option<String>,
    corpid: Option<String>,
    #[serde(default)]
    grant: Option<String>,
    #[serde(default)]
    tickets: Vec<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default = "default_daily_quota")]
    daily_quota: u64,
}

/// WeChat's default daily limit of `/cgi-bin/token` calls per appid.
fn default_daily_quota() -> u64 {
    2000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: String,
    key: Option<String>,
    key_env: Option<String>,
    key_sha256: Option<String>,
    apps: Vec<String>,
    #[serde(default)]
    admin: bool,
}

// ---------------------------------------------------------------------------------------------
// Validated form.
// ---------------------------------------------------------------------------------------------

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub upstream: UpstreamSettings,
    pub refresh: RefreshSettings,
    pub store: StoreSettings,
    pub apps: Vec<AppSettings>,
    pub clients: Vec<ClientSettings>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub shutdown_timeout: Duration,
    /// Deadline for reading a whole request body once its headers arrived.
    pub body_timeout: Duration,
    /// Open connections one HTTP worker accepts; `None` derives it from the open-file limit.
    pub max_connections_per_worker: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Base URL of the WeChat API, without a trailing slash.
    pub base_url: String,
    /// Base URL of the WeCom (企业微信) API, without a trailing slash.
    pub wecom_base_url: String,
    /// Deadline for one whole upstream call: connect, request, answer.
    pub timeout: Duration,
    /// Extra trusted root certificates (PEM), on top of the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Shortest credential lifetime (`expires_in`) accepted from upstream; a shorter one is a
    /// `decode` failure. The longest accepted is [`MAX_TOKEN_LIFETIME`].
    pub min_token_lifetime: Duration,
}

/// Longest credential lifetime accepted from upstream: WeChat hands out 2 hours; a week is far
/// beyond any real answer and keeps every time computation far from overflow.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// Refresh policy. Durations rather than seconds so tests can use sub-second values.
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    pub margin: Duration,
    pub min_interval: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// A redb file database on local disk.
    Embedded { path: PathBuf },
    /// Redis, shared by several instances.
    Redis(RedisSettings),
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]`; secret because it may carry the password.
    pub url: SecretString,
    pub url_source: SecretSource,
    /// Prefix of every key and channel, so several deployments can share one Redis.
    pub key_prefix: String,
    /// How long the refresh lock lives if its holder dies.
    pub lock_ttl: Duration,
    /// How often each actor re-reads its record (covers missed change notifications).
    pub poll_interval: Duration,
    /// Written into records as `fetched_by`.
    pub instance: String,
}

/// `redis://user:pass@host:6379/0` -> `redis://host:6379/0`: what may be printed.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            format!("{scheme}://{rest}")
        }
        None => "(not a URL)".into(),
    }
}

fn default_instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wxtoken".into());
    format!("{host}-{}", std::process::id())
}

/// Where a secret came from; printed by `check-config` instead of the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline,
    Env(String),
    File(PathBuf),
    Sha256,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline => f.write_str("inline (redacted)"),
            SecretSource::Env(v) => write!(f, "env {v} (redacted)"),
            SecretSource::File(p) => write!(f, "file {} (redacted)", p.display()),
            SecretSource::Sha256 => f.write_str("sha-256 digest (redacted)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppSettings {
    /// The name clients use in URLs.
    pub name: String,
    pub kind: AppKind,
    /// The AppID, or for WeCom apps the CorpID.
    pub appid: String,
    /// Dependent credentials fetched with the access token.
    pub tickets: Vec<TicketKind>,
    /// The AppSecret. `SecretString` keeps it out of `Debug` output.
    pub secret: SecretString,
    pub secret_source: SecretSource,
    /// Daily limit of token calls, for the quota metric and alert.
    pub daily_quota: u64,
}

/// What kind of account an app is, and so how its token is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// Official Account or Mini Program: `/cgi-bin/token` or `/cgi-bin/stable_token`.
    Official(Grant),
    /// WeCom (企业微信) app: `/cgi-bin/gettoken` with the CorpID and the app's own secret.
    Wecom,
}

/// How an Official Account / Mini Program token is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `GET /cgi-bin/token`: every call mints a new token.
    ClientCredential,
    /// `POST /cgi-bin/stable_token`: the same token until its last 5 minutes.
    Stable,
}

/// A ticket type WeChat issues with `getticket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketKind {
    Jsapi,
    WxCard,
}

impl TicketKind {
    /// The `type` parameter of `getticket`, also used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketKind::Jsapi => "jsapi",
            TicketKind::WxCard => "wx_card",
        }
    }

    pub fn parse(s: &str) -> Option<TicketKind> {
        match s {
            "jsapi" => Some(TicketKind::Jsapi),
            "wx_card" => Some(TicketKind::WxCard),
            _ => None,
        }
    }
}

impl AppSettings {
    /// The identity of the app's shared record: the appid for official apps; for WeCom the
    /// CorpID plus the app name, since one corp has many apps, each with its own token.
    pub fn store_id(&self) -> String {
        match self.kind {
            AppKind::Official(_) => self.appid.clone(),
            AppKind::Wecom => format!("{}.{}", self.appid, self.name),
        }
    }
}

/// Which apps a client may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppScope {
    All,
    Only(HashSet<String>),
}

impl AppScope {
    pub fn allows(&self, app: &str) -> bool {
        match self {
            AppScope::All => true,
            AppScope::Only(set) => set.contains(app),
        }
    }
}

/// A client of the token API. Only the SHA-256 digest of its key is kept in memory.
#[derive(Clone)]
pub struct ClientSettings {
    pub name: String,
    pub key_sha256: [u8; 32],
    pub key_source: SecretSource,
    pub apps: AppScope,
    /// May revoke tokens and reload the configuration.
    pub admin: bool,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("name", &self.name)
            .field("key", &"[REDACTED]")
            .field("apps", &self.apps)
            .field("admin", &self.admin)
            .finish()
    }
}

/// SHA-256 of a client key, the form in which keys are stored and compared.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Settings {
    /// Loads `path`, applies `WXTOKEN_*` overrides from the process environment, validates.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::at(path.display(), format!("cannot read: {e}")))?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_toml(&text, &env, &|name| std::env::var(name).ok())
            .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses TOML text with the given overrides; `lookup_env` resolves `secret_env`/`key_env`.
    pub fn from_toml(
        text: &str,
        overrides: &[(String, String)],
        lookup_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut tree: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError(format!("not valid TOML: {}", e.message())))?;
        apply_env_overrides(&mut tree, overrides)?;
        let raw: RawSettings =
            serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
                let path = e.path().to_string();
                ConfigError::at(
                    if path == "." { "config".into() } else { path },
                    e.inner().message(),
                )
            })?;
        validate(raw, lookup_env)
    }

    /// A TOML rendering of the effective configuration with every secret redacted.
    pub fn redacted_toml(&self) -> String {
        use fmt::Write;
        let mut out = String::new();
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let _ = writeln!(
            out,
            "[server]\nlisten = {}",
            q(&self.server.listen.to_string())
        );
        let _ = writeln!(
            out,
            "shutdown_timeout_secs = {}",
            self.server.shutdown_timeout.as_secs()
        );
        let _ = writeln!(
            out,
            "body_timeout_secs = {}\nmax_connections_per_worker = {}\n",
            self.server.body_timeout.as_secs(),
            self.server.max_connections_per_worker.unwrap_or(0)
        );
        let _ = writeln!(out, "[upstream]\nbase_url = {}", q(&self.upstream.base_url));
        let _ = writeln!(out, "wecom_base_url = {}", q(&self.upstream.wecom_base_url));
        let _ = writeln!(out, "timeout_secs = {}", self.upstream.timeout.as_secs());
        let _ = writeln!(
            out,
            "min_token_lifetime_secs = {}",
            self.upstream.min_token_lifetime.as_secs()
        );
        if let Some(ca) = &self.upstream.ca_file {
            let _ = writeln!(out, "ca_file = {}", q(&ca.display().to_string()));
        }
        let r = &self.refresh;
        let _ = writeln!(
            out,
            "\n[refresh]\nmargin_secs = {}\nmin_interval_secs = {}\nretry_min_secs = {}\nretry_max_secs = {}\n",
            r.margin.as_secs(),
            r.min_interval.as_secs(),
            r.retry_min.as_secs(),
            r.retry_max.as_secs()
        );
        match &self.store {
            StoreSettings::Embedded { path } => {
                let _ = writeln!(
                    out,
                    "[store]\nkind = \"embedded\"\npath = {}",
                    q(&path.display().to_string())
                );
            }
            StoreSettings::Redis(r) => {
                let _ = writeln!(
                    out,
                    "[store]\nkind = \"redis\"\nurl = {}\nkey_prefix = {}\nlock_ttl_secs = {}\npoll_secs = {}\ninstance = {}",
                    q(&format!(
                        "{} ({})",
                        redact_url(r.url.expose_secret()),
                        r.url_source
                    )),
                    q(&r.key_prefix),
                    r.lock_ttl.as_secs(),
                    r.poll_interval.as_secs(),
                    q(&r.instance)
                );
            }
        }
        for app in &self.apps {
            let id = match app.kind {
                AppKind::Official(grant) => format!(
                    "kind = \"official\"\ngrant = {}\nappid = {}",
                    q(match grant {
                        Grant::ClientCredential => "client_credential",
                        Grant::Stable => "stable",
                    }),
                    q(&app.appid)
                ),
                AppKind::Wecom => format!("kind = \"wecom\"\ncorpid = {}", q(&app.appid)),
            };
            let tickets: Vec<String> = app.tickets.iter().map(|t| q(t.as_str())).collect();
            let _ = writeln!(
                out,
                "\n[[apps]]\nname = {}\n{id}\nsecret = {}\ndaily_quota = {}\ntickets = [{}]",
                q(&app.name),
                q(&app.secret_source.to_string()),
                app.daily_quota,
                tickets.join(", ")
            );
        }
        for c in &self.clients {
            let apps = match &c.apps {
                AppScope::All => "[\"*\"]".to_string(),
                AppScope::Only(set) => {
                    let mut v: Vec<_> = set.iter().map(|s| q(s)).collect();
                    v.sort();
                    format!("[{}]", v.join(", "))
                }
            };
            let _ = writeln!(
                out,
                "\n[[clients]]\nname = {}\nkey = {}\napps = {}\nadmin = {}",
                q(&c.name),
                q(&c.key_source.to_string()),
                apps,
                c.admin
            );
        }
        out
    }
}

/// Writes `WXTOKEN_A__B=value` into `tree` at `a.b`. Variables without `__` (such as
/// `WXTOKEN_CONFIG` or `WXTOKEN_LOG`) are not configuration keys and are skipped. A numeric
/// segment indexes an array (`WXTOKEN_APPS__0__APPID`).
fn apply_env_overrides(
    tree: &mut toml::Table,
    overrides: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut sorted: Vec<&(String, String)> = overrides
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k[ENV_PREFIX.len()..].contains("__"))
        .collect();
    // Deterministic order, so that a later variable cannot win by accident of hashing.
    sorted.sort();
    for (name, value) in sorted {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::at(name, "malformed override variable name"));
        }
        set_path(tree, &path, value).map_err(|msg| ConfigError::at(name, msg))?;
    }
    Ok(())
}

fn set_path(table: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (head, rest) = path.split_first().expect("path is never empty");
    if rest.is_empty() {
        let value = typed_value(table.get(head), raw);
        table.insert(head.clone(), value);
        return Ok(());
    }
    let entry = table
        .entry(head.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    set_in_value(entry, rest, raw)
}

fn set_in_value(value: &mut toml::Value, path: &[String], raw: &str) -> Result<(), String> {
    match value {
        toml::Value::Table(t) => set_path(t, path, raw),
        toml::Value::Array(items) => {
            let (head, rest) = path.split_first().expect("path is never empty");
            let idx: usize = head
                .parse()
                .map_err(|_| format!("`{head}` is not an array index"))?;
            let len = items.len();
            let item = items
                .get_mut(idx)
                .ok_or_else(|| format!("index {idx} is past the {len} entries"))?;
            if rest.is_empty() {
                *item = typed_value(Some(item), raw);
                Ok(())
            } else {
                set_in_value(item, rest, raw)
            }
        }
        _ => Err("cannot override inside a plain value".into()),
    }
}

/// Parses an override in the type of the value it replaces, so `WXTOKEN_APPS__0__APPID=123`
/// stays a string while `WXTOKEN_UPSTREAM__TIMEOUT_SECS=5` becomes a number.
fn typed_value(existing: Option<&toml::Value>, raw: &str) -> toml::Value {
    let parsed = || {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match existing {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(toml::Value::Integer(_)) | Some(toml::Value::Boolean(_)) => {
            parsed().unwrap_or_else(|| toml::Value::String(raw.to_string()))
        }
        _ => match parsed() {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Array(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn secs(key: &str, v: u64, min: u64) -> Result<Duration, ConfigError> {
    if v < min {
        return Err(ConfigError::at(key, format!("must be at least {min}")));
    }
    Ok(Duration::from_secs(v))
}

/// Exactly one of the three ways to give a secret; returns the value and where it came from.
fn resolve_secret(
    key: &str,
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, SecretSource), ConfigError> {
    match (inline, env, file) {
        (Some(v), None, None) => {
            tracing::warn!(
                key,
                "secret written inline in the config file; prefer {key}_env or {key}_file"
            );
            Ok((v, SecretSource::Inline))
        }
        (None, Some(var), None) => match lookup_env(&var) {
            Some(v) if !v.trim().is_empty() => Ok((v.trim().to_string(), SecretSource::Env(var))),
            Some(_) => Err(ConfigError::at(
                format!("{key}_env"),
                format!("environment variable {var} is empty"),
            )),
            None => Err(ConfigError::at(
                format!("{key}_env"),
                format!("environment variable {var} is not set"),
            )),
        },
        (None, None, Some(path)) => {
            let v = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::at(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let v = v.trim();
            if v.is_empty() {
                return Err(ConfigError::at(
                    format!("{key}_file"),
                    format!("{} is empty", path.display()),
                ));
            }
            Ok((v.to_string(), SecretSource::File(path)))
        }
        (None, None, None) => Err(ConfigError::at(
            key,
            format!("missing: set one of {key}, {key}_env, {key}_file"),
        )),
        _ => Err(ConfigError::at(
            key,
            format!("set only one of {key}, {key}_env, {key}_file"),
        )),
    }
}

fn validate_store(
    st: RawStore,
    upstream: &UpstreamSettings,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreSettings, ConfigError> {
    let only_redis = [
        ("store.url", st.url.is_some()),
        ("store.url_env", st.url_env.is_some()),
        ("store.key_prefix", st.key_prefix.is_some()),
        ("store.lock_ttl_secs", st.lock_ttl_secs.is_some()),
        ("store.poll_secs", st.poll_secs.is_some()),
        ("store.instance", st.instance.is_some()),
    ];
    match st.kind.as_str() {
        "embedded" => {
            if let Some((key, _)) = only_redis.iter().find(|(_, set)| *set) {
                return Err(ConfigError::at(
                    key,
                    "only used with store.kind = \"redis\"",
                ));
            }
            let path = st.path.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
            if path.as_os_str().is_empty() {
                return Err(ConfigError::at("store.path", "must not be empty"));
            }
            Ok(StoreSettings::Embedded { path })
        }
        "redis" => {
            if st.path.is_some() {
                return Err(ConfigError::at(
                    "store.path",
                    "only used with store.kind = \"embedded\"",
                ));
            }
            let (url, url_source) = match (st.url, st.url_env) {
                (Some(u), None) => (u, SecretSource::Inline),
                (None, Some(var)) => match lookup_env(&var) {
                    Some(u) if !u.trim().is_empty() => {
                        (u.trim().to_string(), SecretSource::Env(var))
                    }
                    _ => {
                        return Err(ConfigError::at(
                            "store.url_env",
                            format!("environment variable {var} is not set"),
                        ))
                    }
                },
                (None, None) => {
                    return Err(ConfigError::at(
                        "store.url",
                        "missing: set store.url or store.url_env for the redis store",
                    ))
                }
                _ => {
                    return Err(ConfigError::at(
                        "store.url",
                        "set only one of store.url, store.url_env",
                    ))
                }
            };
            if url.starts_with("rediss://") {
                return Err(ConfigError::at(
                    "store.url",
                    "rediss:// (TLS) is not supported by this build; use redis:// over a private network or a TLS tunnel",
                ));
            }
            if !url.starts_with("redis://") || url.len() <= "redis://".len() {
                return Err(ConfigError::at(
                    "store.url",
                    format!("`{}` is not a redis:// URL", redact_url(&url)),
                ));
            }
            if url_source == SecretSource::Inline && url.contains('@') {
                tracing::warn!("store.url carries a password inline; prefer store.url_env");
            }
            let key_prefix = st.key_prefix.unwrap_or_else(|| "wxtoken".into());
            if key_prefix.is_empty() || key_prefix.contains(char::is_whitespace) {
                return Err(ConfigError::at(
                    "store.key_prefix",
                    "must be non-empty and without spaces",
                ));
            }
            let lock_ttl = secs("store.lock_ttl_secs", st.lock_ttl_secs.unwrap_or(15), 1)?;
            if lock_ttl <= upstream.timeout {
                tracing::warn!(
                    "store.lock_ttl_secs is not longer than upstream.timeout_secs: a slow fetch \
                     may outlive its lock (fencing keeps the newer token, but the slow fetch is wasted)"
                );
            }
            let poll_interval = secs("store.poll_secs", st.poll_secs.unwrap_or(5), 1)?;
            let instance = st.instance.unwrap_or_else(default_instance_name);
            Ok(StoreSettings::Redis(RedisSettings {
                url: SecretString::from(url),
                url_source,
                key_prefix,
                lock_ttl,
                poll_interval,
                instance,
            }))
        }
        other => Err(ConfigError::at(
            "store.kind",
            format!("unknown store `{other}`; expected \"embedded\" or \"redis\""),
        )),
    }
}

fn validate(
    raw: RawSettings,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let listen: SocketAddr = raw.server.listen.parse().map_err(|_| {
        ConfigError::at(
            "server.listen",
            format!(
                "`{}` is not an address like 127.0.0.1:8080",
                raw.server.listen
            ),
        )
    })?;
    let server = ServerSettings {
        listen,
        shutdown_timeout: Duration::from_secs(raw.server.shutdown_timeout_secs),
        body_timeout: secs("server.body_timeout_secs", raw.server.body_timeout_secs, 1)?,
        max_connections_per_worker: match raw.server.max_connections_per_worker {
            0 => None,
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        },
    };

    let base_url = raw.upstream.base_url.trim_end_matches('/').to_string();
    if !(base_url.starts_with("https://") || base_url.starts_with("http://"))
        || base_url.len() <= "https://".len()
    {
        return Err(ConfigError::at(
            "upstream.base_url",
            format!("`{base_url}` is not an http(s) URL"),
        ));
    }
    if let Some(ca) = &raw.upstream.ca_file {
        crate::tls::read_ca_file(ca)
            .map_err(|e| ConfigError::at("upstream.ca_file", format!("{e:#}")))?;
    }
    let wecom_base_url = raw
        .upstream
        .wecom_base_url
        .trim_end_matches('/')
        .to_string();
    if !(wecom_base_url.starts_with("https://") || wecom_base_url.starts_with("http://"))
        || wecom_base_url.len() <= "https://".len()
    {
        return Err(ConfigError::at(
            "upstream.wecom_base_url",
            format!("`{wecom_base_url}` is not an http(s) URL"),
        ));
    }
    let upstream = UpstreamSettings {
        base_url,
        wecom_base_url,
        timeout: secs("upstream.timeout_secs", raw.upstream.timeout_secs, 1)?,
        ca_file: raw.upstream.ca_file,
        min_token_lifetime: secs(
            "upstream.min_token_lifetime_secs",
            raw.upstream.min_token_lifetime_secs,
            2,
        )?,
    };

    let r = raw.refresh;
    let refresh = RefreshSettings {
        margin: secs("refresh.margin_secs", r.margin_secs, 1)?,
        min_interval: secs("refresh.min_interval_secs", r.min_interval_secs, 0)?,
        retry_min: secs("refresh.retry_min_secs", r.retry_min_secs, 1)?,
        retry_max: secs("refresh.retry_max_secs", r.retry_max_secs, 1)?,
    };
    if refresh.retry_max < refresh.retry_min {
        return Err(ConfigError::at(
            "refresh.retry_max_secs",
            "must not be smaller than refresh.retry_min_secs",
        ));
    }

    let store = validate_store(raw.store, &upstream, lookup_env)?;

    if raw.apps.is_empty() {
        return Err(ConfigError::at("apps", "no [[apps]] configured"));
    }
    let mut apps = Vec::with_capacity(raw.apps.len());
    let mut names = HashSet::new();
    let mut appids: HashMap<String, String> = HashMap::new();
    for (i, a) in raw.apps.into_iter().enumerate() {
        let key = format!("apps[{i}]");
        if !valid_name(&a.name) {
            return Err(ConfigError::at(
                format!("{key}.name"),
                format!(
                    "`{}` must be 1-64 characters of letters, digits, '-', '_' or '.'",
                    a.name
                ),
            ));
        }
        if !names.insert(a.name.clone()) {
            return Err(ConfigError::at(
                format!("{key}.name"),
                format!("duplicate app name `{}`", a.name),
            ));
        }
        let (kind, appid) = match a.kind.as_deref().unwrap_or("official") {
            "official" | "miniprogram" => {
                if a.corpid.is_some() {
                    return Err(ConfigError::at(
                        format!("{key}.corpid"),
                        "only used with kind = \"wecom\"",
                    ));
                }
                let grant = match a.grant.as_deref().unwrap_or("client_credential") {
                    "client_credential" => Grant::ClientCredential,
                    "stable" => Grant::Stable,
                    other => {
                        return Err(ConfigError::at(
                            format!("{key}.grant"),
                            format!(
                            "unknown grant `{other}`; expected \"client_credential\" or \"stable\""
                        ),
                        ))
                    }
                };
                let appid = a.appid.as_deref().unwrap_or("").trim().to_string();
                if appid.is_empty() {
                    return Err(ConfigError::at(format!("{key}.appid"), "missing or empty"));
                }
                // Two entries fetching for one appid would invalidate each other's tokens: the
                // very problem this server exists to solve.
                if let Some(other) = appids.insert(appid.clone(), a.name.clone()) {
                    return Err(ConfigError::at(
                        format!("{key}.appid"),
                        format!("appid `{appid}` is already used by app `{other}`"),
                    ));
                }
                (AppKind::Official(grant), appid)
            }
            "wecom" => {
                if a.appid.is_some() {
                    return Err(ConfigError::at(
                        format!("{key}.appid"),
                        "WeCom apps use corpid, not appid",
                    ));
                }
                if a.grant.is_some() {
                    return Err(ConfigError::at(
                        format!("{key}.grant"),
                        "only used with official apps",
                    ));
                }
                if !a.tickets.is_empty() {
                    return Err(ConfigError::at(
                        format!("{key}.tickets"),
                        "tickets are only supported for official apps",
                    ));
                }
                let corpid = a.corpid.as_deref().unwrap_or("").trim().to_string();
                if corpid.is_empty() {
                    return Err(ConfigError::at(format!("{key}.corpid"), "missing or empty"));
                }
                (AppKind::Wecom, corpid)
            }
            other => {
                return Err(ConfigError::at(
                    format!("{key}.kind"),
                    format!("unknown kind `{other}`; expected \"official\" or \"wecom\""),
                ))
            }
        };
        let mut tickets = Vec::new();
        for (j, t) in a.tickets.iter().enumerate() {
            let kind = TicketKind::parse(t).ok_or_else(|| {
                ConfigError::at(
                    format!("{key}.tickets[{j}]"),
                    format!("unknown ticket type `{t}`; expected \"jsapi\" or \"wx_card\""),
                )
            })?;
            if tickets.contains(&kind) {
                return Err(ConfigError::at(
                    format!("{key}.tickets[{j}]"),
                    format!("`{t}` listed twice"),
                ));
            }
            tickets.push(kind);
        }
        let (secret, source) = resolve_secret(
            &format!("{key}.secret"),
            a.secret,
            a.secret_env,
            a.secret_file,
            lookup_env,
        )?;
        if a.daily_quota == 0 {
            return Err(ConfigError::at(
                format!("{key}.daily_quota"),
                "must be at least 1",
            ));
        }
        apps.push(AppSettings {
            name: a.name,
            kind,
            appid,
            tickets,
            secret: SecretString::from(secret),
            secret_source: source,
            daily_quota: a.daily_quota,
        });
    }

    if raw.clients.is_empty() {
        return Err(ConfigError::at(
            "clients",
            "no [[clients]] configured: nobody could read a token",
        ));
    }
    let mut clients = Vec::with_capacity(raw.clients.len());
    let mut client_names = HashSet::new();
    let mut digests = HashSet::new();
    for (i, c) in raw.clients.into_iter().enumerate() {
        let key = format!("clients[{i}]");
        if !valid_name(&c.name) {
            return Err(ConfigError::at(
                format!("{key}.name"),
                format!(
                    "`{}` must be 1-64 characters of letters, digits, '-', '_' or '.'",
                    c.name
                ),
            ));
        }
        if !client_names.insert(c.name.clone()) {
            return Err(ConfigError::at(
                format!("{key}.name"),
                format!("duplicate client name `{}`", c.name),
            ));
        }
        let (digest, source) = match (&c.key, &c.key_env, &c.key_sha256) {
            (None, None, Some(hexd)) => {
                let mut d = [0u8; 32];
                hex::decode_to_slice(hexd.trim(), &mut d).map_err(|_| {
                    ConfigError::at(
                        format!("{key}.key_sha256"),
                        "must be 64 hex digits (sha-256 of the key)",
                    )
                })?;
                (d, SecretSource::Sha256)
            }
            (_, _, None) => {
                let (k, src) = resolve_secret(
                    &format!("{key}.key"),
                    c.key.clone(),
                    c.key_env.clone(),
                    None,
                    lookup_env,
                )?;
                if k.len() < 16 {
                    return Err(ConfigError::at(
                        format!("{key}.key"),
                        "too short: use at least 16 characters (32 random bytes recommended)",
                    ));
                }
                let k = SecretString::from(k);
                (key_digest(k.expose_secret()), src)
            }
            _ => {
                return Err(ConfigError::at(
                    format!("{key}.key"),
                    format!("set only one of {key}.key, {key}.key_env, {key}.key_sha256"),
                ))
            }
        };
        if !digests.insert(digest) {
            return Err(ConfigError::at(
                format!("{key}.key"),
                "the same key is already used by another client",
            ));
        }
        if c.apps.is_empty() {
            return Err(ConfigError::at(
                format!("{key}.apps"),
                "empty: list app names or [\"*\"]",
            ));
        }
        let scope = if c.apps.iter().any(|a| a == "*") {
            AppScope::All
        } else {
            let mut set = HashSet::new();
            for (j, a) in c.apps.iter().enumerate() {
                if !names.contains(a) {
                    return Err(ConfigError::at(
                        format!("{key}.apps[{j}]"),
                        format!("unknown app `{a}`"),
                    ));
                }
                set.insert(a.clone());
            }
            AppScope::Only(set)
        };
        clients.push(ClientSettings {
            name: c.name,
            key_sha256: digest,
            key_source: source,
            apps: scope,
            admin: c.admin,
        });
    }

    Ok(Settings {
        server,
        upstream,
        refresh,
        store,
        apps,
        clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"
[upstream]
base_url = "http://127.0.0.1:1/"
[[apps]]
name = "shop"
appid = "wx0123456789abcdef"
secret_env = "SHOP_SECRET"
[[clients]]
name = "billing"
key_env = "BILLING_KEY"
apps = ["shop"]
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "SHOP_SECRET" => Some("s3cr3t-value".into()),
            "BILLING_KEY" => Some("billing-key-0123456789".into()),
            _ => None,
        }
    }

    fn load(text: &str, overrides: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let o: Vec<(String, String)> = overrides
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Settings::from_toml(text, &o, &env)
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let s = load(GOOD, &[]).unwrap();
        assert_eq!(s.server.listen.port(), 9000);
        assert_eq!(s.upstream.base_url, "http://127.0.0.1:1");
        assert_eq!(s.refresh.margin, Duration::from_secs(600));
        assert_eq!(s.apps[0].secret.expose_secret(), "s3cr3t-value");
        assert_eq!(
            s.clients[0].key_sha256,
            key_digest("billing-key-0123456789")
        );
        assert!(s.clients[0].apps.allows("shop"));
        assert!(!s.clients[0].apps.allows("other"));
    }

    #[test]
    fn env_overrides_nested_and_array_keys() {
        let s = load(
            GOOD,
            &[
                ("WXTOKEN_SERVER__LISTEN", "0.0.0.0:8081"),
                ("WXTOKEN_REFRESH__MARGIN_SECS", "300"),
                ("WXTOKEN_APPS__0__APPID", "12345"),
                ("WXTOKEN_CONFIG", "ignored.toml"),
            ],
        )
        .unwrap();
        assert_eq!(s.server.listen.to_string(), "0.0.0.0:8081");
        assert_eq!(s.refresh.margin, Duration::from_secs(300));
        assert_eq!(s.apps[0].appid, "12345");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load(&GOOD.replace("listen =", "lisen ="), &[]).unwrap_err();
        assert!(e.to_string().contains("server.lisen"), "{e}");
        let e = load(GOOD, &[("WXTOKEN_REFRESH__MARGN", "1")]).unwrap_err();
        assert!(e.to_string().contains("refresh.margn"), "{e}");
    }

    #[test]
    fn missing_secret_variable_is_named() {
        let e = load(&GOOD.replace("SHOP_SECRET", "NOPE"), &[]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("apps[0].secret_env") && msg.contains("NOPE"),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_apps_unknown_apps_and_no_clients_are_rejected() {
        let dup =
            format!("{GOOD}\n[[apps]]\nname = \"shop\"\nappid = \"wxother\"\nsecret = \"x\"\n");
        assert!(load(&dup, &[])
            .unwrap_err()
            .to_string()
            .contains("duplicate app name"));
        let same_appid = format!(
            "{GOOD}\n[[apps]]\nname = \"shop2\"\nappid = \"wx0123456789abcdef\"\nsecret = \"x\"\n"
        );
        assert!(load(&same_appid, &[])
            .unwrap_err()
            .to_string()
            .contains("already used by app"));
        let unknown = GOOD.replace("apps = [\"shop\"]", "apps = [\"nope\"]");
        let e = load(&unknown, &[]).unwrap_err().to_string();
        assert!(
            e.contains("clients[0].apps[0]") && e.contains("nope"),
            "{e}"
        );
        let no_clients = GOOD.split("[[clients]]").next().unwrap().to_string();
        assert!(load(&no_clients, &[])
            .unwrap_err()
            .to_string()
            .contains("clients"));
    }

    #[test]
    fn redis_store_settings_are_validated_and_redacted() {
        let redis = GOOD.replace(
            "[[apps]]",
            "[store]\nkind = \"redis\"\nurl = \"redis://:hunter2@10.0.0.5:6379/0\"\nkey_prefix = \"wx\"\n[[apps]]",
        );
        let s = load(&redis, &[]).unwrap();
        match &s.store {
            StoreSettings::Redis(r) => {
                assert_eq!(r.key_prefix, "wx");
                assert_eq!(r.lock_ttl, Duration::from_secs(15));
            }
            other => panic!("{other:?}"),
        }
        let text = s.redacted_toml();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redis://10.0.0.5:6379/0"));
        assert!(!format!("{s:?}").contains("hunter2"));
        let e = load(&redis.replace("redis://:hunter2@", "http://"), &[]).unwrap_err();
        assert!(e.to_string().contains("store.url"), "{e}");
        let e = load(
            &GOOD.replace("[[apps]]", "[store]\nurl = \"redis://x\"\n[[apps]]"),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("only used with"), "{e}");
        assert_eq!(redact_url("redis://u:p@h:1/2"), "redis://h:1/2");
    }

    #[test]
    fn app_kinds_grants_and_tickets() {
        let extra = r#"
[[apps]]
name = "stable-app"
appid = "wxstable"
grant = "stable"
tickets = ["jsapi", "wx_card"]
secret = "x"
[[apps]]
name = "hr"
kind = "wecom"
corpid = "ww123"
secret = "y"
[[apps]]
name = "hr2"
kind = "wecom"
corpid = "ww123"
secret = "z"
"#;
        let text = GOOD.replace("[[clients]]", &format!("{extra}\n[[clients]]"));
        let s = load(&text, &[]).unwrap();
        assert_eq!(s.apps[0].kind, AppKind::Official(Grant::ClientCredential));
        assert_eq!(s.apps[1].kind, AppKind::Official(Grant::Stable));
        assert_eq!(
            s.apps[1].tickets,
            vec![TicketKind::Jsapi, TicketKind::WxCard]
        );
        assert_eq!(s.apps[2].kind, AppKind::Wecom);
        // Two WeCom apps of one corp never share a record.
        assert_ne!(s.apps[2].store_id(), s.apps[3].store_id());
        toml::from_str::<toml::Table>(&s.redacted_toml()).unwrap();

        let bad = text.replace("grant = \"stable\"", "grant = \"magic\"");
        assert!(load(&bad, &[])
            .unwrap_err()
            .to_string()
            .contains("apps[1].grant"));
        let bad = text.replace("\"wx_card\"]", "\"nope\"]");
        assert!(load(&bad, &[])
            .unwrap_err()
            .to_string()
            .contains("apps[1].tickets[1]"));
        let bad = text.replace("corpid = \"ww123\"\nsecret = \"y\"", "secret = \"y\"");
        assert!(load(&bad, &[])
            .unwrap_err()
            .to_string()
            .contains("apps[2].corpid"));
    }

    #[test]
    fn redacted_rendering_hides_secrets() {
        let s = load(GOOD, &[]).unwrap();
        let text = s.redacted_toml();
        assert!(!text.contains("s3cr3t-value"));
        assert!(!text.contains("billing-key-0123456789"));
        assert!(text.contains("env SHOP_SECRET (redacted)"));
        // The rendering is itself valid TOML.
        toml::from_str::<toml::Table>(&text).unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cr3t-value"));
        assert!(!debug.contains(&hex::encode(key_digest("billing-key-0123456789"))));
    }
}
