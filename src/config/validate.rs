//! Validation: the raw structs checked key by key into [`Settings`], every number within a
//! sane range, so nothing downstream can build an `Instant + huge` or a nonsense limit.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::platforms::validate_platforms;
use super::raw::{RawSettings, RawStore};
use super::secrets::{resolve_secret, SecretInput};
use super::{
    key_digest, redact_url, AppKind, AppScope, AppSettings, ClientSettings, ConfigError, Grant,
    MetricsSettings, PerAppMetrics, ReadinessScope, RedisSettings, RefreshSettings, SecretSource,
    ServerSettings, Settings, StoreSettings, TicketKind, UpstreamSettings,
};

const DEFAULT_STORE_PATH: &str = "data/wxtoken.redb";
/// The Redis store's local copy of the platform records, in the working directory.
const DEFAULT_LOCAL_PATH: &str = "wxtoken-local.redb";

/// Longest wait for one upstream call or one request body: five minutes is already far past
/// any real WeChat answer or client upload.
const MAX_CALL_SECS: u64 = 300;
/// Longest graceful shutdown: an hour; an orchestrator kills the process long before.
const MAX_SHUTDOWN_SECS: u64 = 3600;
/// Longest refresh margin: a day, far beyond the 2-hour tokens WeChat hands out.
const MAX_MARGIN_SECS: u64 = 86_400;
/// Longest retry backoff and invalidation interval: an hour without a retry is already an
/// outage.
const MAX_RETRY_SECS: u64 = 3600;
/// Most early refetches reports may cause per credential and hour: 60 an hour is 1,440 a day,
/// already most of WeChat's daily 2,000 for an access token.
const MAX_REPORTED_REFETCHES_PER_HOUR: u64 = 60;
/// Longest Redis lock lifetime and poll interval.
const MAX_STORE_SECS: u64 = 3600;
/// Largest `min_token_lifetime_secs`: WeChat's tokens live 7200 s, so more than an hour would
/// refuse real answers.
const MAX_MIN_TOKEN_LIFETIME_SECS: u64 = 3600;
/// Largest daily quota: WeChat's limits are in the thousands to a few hundred thousand.
const MAX_DAILY_QUOTA: u64 = 100_000_000;
/// More open connections than one process can have file descriptors for (the kernel's
/// `nr_open` default) is a typo.
const MAX_CONNECTIONS_PER_WORKER: u64 = 1 << 20;
/// Most upstream calls in flight: each is a connection to WeChat; beyond a thousand the pool
/// no longer protects anything.
const MAX_UPSTREAM_CONCURRENT: u64 = 1024;
/// Highest upstream start rate: far above any WeChat quota.
const MAX_UPSTREAM_PER_SECOND: u64 = 100_000;
/// Longest Redis key prefix and instance name: they go into every key and record.
const MAX_LABEL: usize = 128;

/// A duration key in whole seconds, within `min..=max`.
pub(super) fn secs(key: &str, v: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    if v < min || v > max {
        return Err(ConfigError::at(
            key,
            format!("{v} is out of range: must be between {min} and {max}"),
        ));
    }
    Ok(Duration::from_secs(v))
}

/// A count key within `min..=max`.
pub(super) fn count(key: &str, v: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if v < min || v > max {
        return Err(ConfigError::at(
            key,
            format!("{v} is out of range: must be between {min} and {max}"),
        ));
    }
    Ok(v)
}

/// An `http(s)://` base URL without a trailing slash. Credentials (`user:password@`) are
/// refused: WeChat takes none in the URL, and `check-config` would print them; the message
/// never repeats them.
fn http_url(key: &str, url: &str) -> Result<String, ConfigError> {
    let url = url.trim_end_matches('/');
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or(url);
    if authority.contains('@') {
        return Err(ConfigError::at(
            key,
            "must not carry credentials (user:password@); the value is not shown",
        ));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() <= "https://".len()
    {
        // Whatever follows an `@` in the path is not shown either.
        let shown = if url.contains('@') {
            redact_url(url)
        } else {
            url.to_string()
        };
        return Err(ConfigError::at(
            key,
            format!("`{shown}` is not an http(s) URL"),
        ));
    }
    Ok(url.to_string())
}

fn default_instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wxtoken".into());
    format!("{host}-{}", std::process::id())
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn validate_store(
    mut st: RawStore,
    upstream: &UpstreamSettings,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreSettings, ConfigError> {
    let only_redis = [
        ("store.url", st.url.is_some()),
        ("store.url_env", st.url_env.is_some()),
        ("store.url_file", st.url_file.is_some()),
        ("store.key_prefix", st.key_prefix.is_some()),
        ("store.lock_ttl_secs", st.lock_ttl_secs.is_some()),
        ("store.poll_secs", st.poll_secs.is_some()),
        ("store.instance", st.instance.is_some()),
        ("store.local_path", st.local_path.is_some()),
        ("store.sentinels", st.sentinels.is_some()),
        ("store.sentinel_master", st.sentinel_master.is_some()),
        (
            "store.sentinel_password_env",
            st.sentinel_password_env.is_some(),
        ),
        (
            "store.sentinel_password_file",
            st.sentinel_password_file.is_some(),
        ),
        ("store.cluster_nodes", st.cluster_nodes.is_some()),
        ("store.password_env", st.password_env.is_some()),
        ("store.password_file", st.password_file.is_some()),
        ("store.username", st.username.is_some()),
        ("store.tls", st.tls.is_some()),
        ("store.tls_ca_file", st.tls_ca_file.is_some()),
        ("store.tls_cert_file", st.tls_cert_file.is_some()),
        ("store.tls_key_file", st.tls_key_file.is_some()),
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
            let (endpoint, tls) = super::redis::validate_endpoint(&mut st, lookup_env)?;
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
            Ok(StoreSettings::Redis(RedisSettings {
                endpoint,
                tls,
                key_prefix,
                lock_ttl,
                poll_interval,
                instance,
                local_path: Some(local_path),
            }))
        }
        other => Err(ConfigError::at(
            "store.kind",
            format!("unknown store `{other}`; expected \"embedded\" or \"redis\""),
        )),
    }
}

pub(super) fn validate(
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
        shutdown_timeout: secs(
            "server.shutdown_timeout_secs",
            raw.server.shutdown_timeout_secs,
            0,
            MAX_SHUTDOWN_SECS,
        )?,
        body_timeout: secs(
            "server.body_timeout_secs",
            raw.server.body_timeout_secs,
            1,
            MAX_CALL_SECS,
        )?,
        max_connections_per_worker: match raw.server.max_connections_per_worker {
            0 => None,
            n if n > MAX_CONNECTIONS_PER_WORKER => {
                return Err(ConfigError::at(
                    "server.max_connections_per_worker",
                    format!("must be at most {MAX_CONNECTIONS_PER_WORKER} (0: derived from the open-file limit)"),
                ))
            }
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        },
        readiness: ReadinessScope::parse(&raw.server.readiness).ok_or_else(|| {
            ConfigError::at(
                "server.readiness",
                format!(
                    "unknown scope `{}`; expected \"apps\" or \"instance\"",
                    raw.server.readiness
                ),
            )
        })?,
    };

    let base_url = http_url("upstream.base_url", &raw.upstream.base_url)?;
    if let Some(ca) = &raw.upstream.ca_file {
        crate::tls::read_ca_file(ca)
            .map_err(|e| ConfigError::at("upstream.ca_file", format!("{e:#}")))?;
    }
    let wecom_base_url = http_url("upstream.wecom_base_url", &raw.upstream.wecom_base_url)?;
    let upstream = UpstreamSettings {
        base_url,
        wecom_base_url,
        timeout: secs(
            "upstream.timeout_secs",
            raw.upstream.timeout_secs,
            1,
            MAX_CALL_SECS,
        )?,
        ca_file: raw.upstream.ca_file,
        min_token_lifetime: secs(
            "upstream.min_token_lifetime_secs",
            raw.upstream.min_token_lifetime_secs,
            2,
            MAX_MIN_TOKEN_LIFETIME_SECS,
        )?,
        max_concurrent: usize::try_from(count(
            "upstream.max_concurrent",
            raw.upstream.max_concurrent,
            1,
            MAX_UPSTREAM_CONCURRENT,
        )?)
        .unwrap_or(usize::MAX),
        max_per_second: u32::try_from(count(
            "upstream.max_per_second",
            raw.upstream.max_per_second,
            0,
            MAX_UPSTREAM_PER_SECOND,
        )?)
        .unwrap_or(u32::MAX),
    };

    let r = raw.refresh;
    let refresh = RefreshSettings {
        margin: secs("refresh.margin_secs", r.margin_secs, 1, MAX_MARGIN_SECS)?,
        min_interval: secs(
            "refresh.min_interval_secs",
            r.min_interval_secs,
            0,
            MAX_RETRY_SECS,
        )?,
        retry_min: secs(
            "refresh.retry_min_secs",
            r.retry_min_secs,
            1,
            MAX_RETRY_SECS,
        )?,
        retry_max: secs(
            "refresh.retry_max_secs",
            r.retry_max_secs,
            1,
            MAX_RETRY_SECS,
        )?,
        reported_refetches_per_hour: u32::try_from(count(
            "refresh.reported_refetches_per_hour",
            r.reported_refetches_per_hour,
            0,
            MAX_REPORTED_REFETCHES_PER_HOUR,
        )?)
        .unwrap_or(u32::MAX),
    };
    if refresh.retry_max < refresh.retry_min {
        return Err(ConfigError::at(
            "refresh.retry_max_secs",
            "must not be smaller than refresh.retry_min_secs",
        ));
    }

    let store = validate_store(raw.store, &upstream, lookup_env)?;
    let proxy = super::proxy::validate_proxy(raw.proxy)?;
    let metrics = MetricsSettings {
        per_app: PerAppMetrics::parse(&raw.metrics.per_app).ok_or_else(|| {
            ConfigError::at(
                "metrics.per_app",
                format!(
                    "`{}` is not one of \"auto\", \"full\", \"gauges\"",
                    raw.metrics.per_app.chars().take(32).collect::<String>()
                ),
            )
        })?,
    };

    // Platforms alone are a whole configuration: their authorizers' tokens are served too.
    if raw.apps.is_empty() && raw.platforms.is_empty() {
        return Err(ConfigError::at(
            "apps",
            "no [[apps]] configured, and no [[platforms]]: nothing to serve",
        ));
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
            SecretInput {
                inline: a.secret,
                env: a.secret_env,
                file: a.secret_file,
            },
            &[],
            lookup_env,
        )?;
        if a.daily_quota == 0 || a.daily_quota > MAX_DAILY_QUOTA {
            return Err(ConfigError::at(
                format!("{key}.daily_quota"),
                format!("must be between 1 and {MAX_DAILY_QUOTA}"),
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

    let platforms = validate_platforms(raw.platforms, &apps, lookup_env)?;
    let platform_names: HashSet<&str> = platforms.iter().map(|p| p.name.as_str()).collect();

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
        let (digest, source) = match (c.key, c.key_env, c.key_file, c.key_sha256) {
            (None, None, None, Some(hexd)) => {
                let mut d = [0u8; 32];
                hex::decode_to_slice(hexd.trim(), &mut d).map_err(|_| {
                    ConfigError::at(
                        format!("{key}.key_sha256"),
                        "must be 64 hex digits (sha-256 of the key)",
                    )
                })?;
                (d, SecretSource::Sha256)
            }
            (inline, env, file, None) => {
                let (k, src) = resolve_secret(
                    &format!("{key}.key"),
                    SecretInput { inline, env, file },
                    &[&format!("{key}.key_sha256")],
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
                    format!(
                        "set only one of {key}.key, {key}.key_env, {key}.key_file, {key}.key_sha256"
                    ),
                ))
            }
        };
        if !digests.insert(digest) {
            return Err(ConfigError::at(
                format!("{key}.key"),
                "the same key is already used by another client",
            ));
        }
        if c.apps.is_none() && c.platforms.is_none() {
            return Err(ConfigError::at(
                format!("{key}.apps"),
                "missing: list app names or [\"*\"] in apps, platform names or [\"*\"] in platforms, or both",
            ));
        }
        let apps_scope = scope(&key, "apps", "app", c.apps, &|a| names.contains(a))?;
        let platforms_scope = scope(&key, "platforms", "platform", c.platforms, &|p| {
            platform_names.contains(p)
        })?;
        clients.push(ClientSettings {
            name: c.name,
            key_sha256: digest,
            key_source: source,
            apps: apps_scope,
            platforms: platforms_scope,
            admin: c.admin,
            proxy: c.proxy,
        });
    }

    Ok(Settings {
        server,
        upstream,
        refresh,
        store,
        proxy,
        metrics,
        apps,
        platforms,
        clients,
    })
}

/// A client's `apps` or `platforms` list (`field`), each entry a configured `what` or `"*"`.
/// Absent grants none; an empty list is refused, since it grants nothing either and is more
/// likely a mistake.
fn scope(
    key: &str,
    field: &str,
    what: &str,
    list: Option<Vec<String>>,
    known: &dyn Fn(&str) -> bool,
) -> Result<AppScope, ConfigError> {
    let Some(list) = list else {
        return Ok(AppScope::Only(HashSet::new()));
    };
    if list.is_empty() {
        return Err(ConfigError::at(
            format!("{key}.{field}"),
            format!("empty: list {what} names or [\"*\"]"),
        ));
    }
    if list.iter().any(|a| a == "*") {
        return Ok(AppScope::All);
    }
    let mut set = HashSet::new();
    for (j, a) in list.into_iter().enumerate() {
        if !known(&a) {
            return Err(ConfigError::at(
                format!("{key}.{field}[{j}]"),
                format!("unknown {what} `{a}`"),
            ));
        }
        set.insert(a);
    }
    Ok(AppScope::Only(set))
}
