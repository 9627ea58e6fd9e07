//! Validation: the raw structs checked section by section into [`Settings`], every number
//! within a sane range, so nothing downstream can build an `Instant + huge` or a nonsense
//! limit. The small sections (`[server]`, `[upstream]`, `[refresh]`, `[metrics]`) are checked
//! here; the others in the file of their section: [`super::store`] and [`super::redis`],
//! [`super::proxy`], [`super::apps`], [`super::platforms`], [`super::clients`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::apps::validate_apps;
use super::audit::validate_audit;
use super::clients::{validate_clients, Known};
use super::encryption::validate_encryption;
use super::platforms::validate_platforms;
use super::proxy::validate_proxy;
use super::raw::{RawMetrics, RawRefresh, RawServer, RawSettings, RawUpstream};
use super::routes::validate_routes;
use super::store::validate_store;
use super::{
    redact_url, ConfigError, MetricsSettings, PerAppMetrics, ReadinessScope, RefreshSettings,
    ServerSettings, Settings, UpstreamSettings,
};

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
/// Largest `min_token_lifetime_secs`: WeChat's tokens live 7200 s, so more than an hour would
/// refuse real answers.
const MAX_MIN_TOKEN_LIFETIME_SECS: u64 = 3600;
/// More open connections than one process can have file descriptors for (the kernel's
/// `nr_open` default) is a typo.
const MAX_CONNECTIONS_PER_WORKER: u64 = 1 << 20;
/// Most upstream calls in flight: each is a connection to WeChat; beyond a thousand the pool
/// no longer protects anything.
const MAX_UPSTREAM_CONCURRENT: u64 = 1024;
/// Highest upstream start rate: far above any WeChat quota.
const MAX_UPSTREAM_PER_SECOND: u64 = 100_000;
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

/// A name clients use in URLs (an app's, a platform's) or see in messages (a client's, a
/// route's: delivery ids end with it).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The `name` of entry `key` (`apps[0]`) among the `what`s (`app`) already `seen`: valid and
/// not taken.
pub(super) fn unique_name(
    key: &str,
    name: &str,
    what: &str,
    seen: &mut HashSet<String>,
) -> Result<(), ConfigError> {
    if !valid_name(name) {
        return Err(ConfigError::at(
            format!("{key}.name"),
            format!("`{name}` must be 1-64 characters of letters, digits, '-', '_' or '.'"),
        ));
    }
    if !seen.insert(name.to_string()) {
        return Err(ConfigError::at(
            format!("{key}.name"),
            format!("duplicate {what} name `{name}`"),
        ));
    }
    Ok(())
}

/// Checks the sections in a fixed order, so that of several mistakes the same one is always
/// named first, and the rules between sections: something to serve, platforms apart from the
/// apps, and clients naming only apps and platforms that exist.
pub(super) fn validate(
    raw: RawSettings,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let server = validate_server(raw.server)?;
    let upstream = validate_upstream(raw.upstream)?;
    let refresh = validate_refresh(raw.refresh)?;
    let encryption = validate_encryption(&raw.store, lookup_env)?;
    let store = validate_store(raw.store, &upstream, lookup_env)?;
    let proxy = validate_proxy(raw.proxy)?;
    let metrics = validate_metrics(raw.metrics)?;
    let audit = validate_audit(raw.audit)?;
    // Platforms alone are a whole configuration: their authorizers' tokens are served too.
    if raw.apps.is_empty()
        && raw.platforms.is_empty()
        && raw.wecom_suites.is_empty()
        && raw.wecom_providers.is_empty()
    {
        return Err(ConfigError::at(
            "apps",
            "no [[apps]] configured, and no [[platforms]], [[wecom_suites]] or [[wecom_providers]]: \
             nothing to serve",
        ));
    }
    let apps = validate_apps(raw.apps, lookup_env)?;
    // Platforms are checked against the apps: their labels and appids must not collide.
    let platforms = validate_platforms(raw.platforms, &apps, lookup_env)?;
    let wecom_providers = super::wecom::validate_providers(raw.wecom_providers, lookup_env)?;
    let wecom_suites =
        super::wecom::validate_suites(raw.wecom_suites, &wecom_providers, &platforms, lookup_env)?;
    let app_names: HashSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    let platform_names: HashSet<&str> = platforms.iter().map(|p| p.name.as_str()).collect();
    let suite_names: HashSet<&str> = wecom_suites.iter().map(|s| s.name.as_str()).collect();
    let provider_names: HashSet<&str> = wecom_providers.iter().map(|p| p.name.as_str()).collect();
    let known = Known {
        app: &|a| app_names.contains(a),
        platform: &|p| platform_names.contains(p),
        wecom_suite: &|s| suite_names.contains(s),
        wecom_provider: &|p| provider_names.contains(p),
    };
    let clients = validate_clients(raw.clients, &known, server.client_auth, lookup_env)?;
    let routes = validate_routes(raw.routes, &app_names, &platform_names, lookup_env)?;
    Ok(Settings {
        server,
        upstream,
        refresh,
        store,
        encryption,
        proxy,
        metrics,
        audit,
        apps,
        platforms,
        wecom_suites,
        wecom_providers,
        clients,
        routes,
    })
}

/// `[server]`.
fn validate_server(raw: RawServer) -> Result<ServerSettings, ConfigError> {
    let (tls, client_auth) = super::server_tls::validate_server_tls(&raw)?;
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        ConfigError::at(
            "server.listen",
            format!("`{}` is not an address like 127.0.0.1:8080", raw.listen),
        )
    })?;
    let shutdown_timeout = secs(
        "server.shutdown_timeout_secs",
        raw.shutdown_timeout_secs,
        0,
        MAX_SHUTDOWN_SECS,
    )?;
    let body_timeout = secs(
        "server.body_timeout_secs",
        raw.body_timeout_secs,
        1,
        MAX_CALL_SECS,
    )?;
    let max_connections_per_worker = match raw.max_connections_per_worker {
        0 => None,
        n if n > MAX_CONNECTIONS_PER_WORKER => {
            return Err(ConfigError::at(
                "server.max_connections_per_worker",
                format!(
                    "must be at most {MAX_CONNECTIONS_PER_WORKER} (0: derived from the open-file limit)"
                ),
            ))
        }
        n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let readiness = ReadinessScope::parse(&raw.readiness).ok_or_else(|| {
        ConfigError::at(
            "server.readiness",
            format!(
                "unknown scope `{}`; expected \"apps\" or \"instance\"",
                raw.readiness
            ),
        )
    })?;
    Ok(ServerSettings {
        listen,
        shutdown_timeout,
        body_timeout,
        max_connections_per_worker,
        readiness,
        tls,
        client_auth,
    })
}

/// `[upstream]`. The CA file is read here, so a wrong one fails at start-up rather than at the
/// first fetch.
fn validate_upstream(raw: RawUpstream) -> Result<UpstreamSettings, ConfigError> {
    let base_url = http_url("upstream.base_url", &raw.base_url)?;
    if let Some(ca) = &raw.ca_file {
        crate::tls::read_ca_file(ca)
            .map_err(|e| ConfigError::at("upstream.ca_file", format!("{e:#}")))?;
    }
    let wecom_base_url = http_url("upstream.wecom_base_url", &raw.wecom_base_url)?;
    let timeout = secs("upstream.timeout_secs", raw.timeout_secs, 1, MAX_CALL_SECS)?;
    let min_token_lifetime = secs(
        "upstream.min_token_lifetime_secs",
        raw.min_token_lifetime_secs,
        2,
        MAX_MIN_TOKEN_LIFETIME_SECS,
    )?;
    let max_concurrent = count(
        "upstream.max_concurrent",
        raw.max_concurrent,
        1,
        MAX_UPSTREAM_CONCURRENT,
    )?;
    let max_per_second = count(
        "upstream.max_per_second",
        raw.max_per_second,
        0,
        MAX_UPSTREAM_PER_SECOND,
    )?;
    Ok(UpstreamSettings {
        base_url,
        wecom_base_url,
        timeout,
        ca_file: raw.ca_file,
        min_token_lifetime,
        // Both bounded above, far inside either type.
        max_concurrent: usize::try_from(max_concurrent).unwrap_or(usize::MAX),
        max_per_second: u32::try_from(max_per_second).unwrap_or(u32::MAX),
    })
}

/// `[refresh]`.
fn validate_refresh(raw: RawRefresh) -> Result<RefreshSettings, ConfigError> {
    let refresh = RefreshSettings {
        margin: secs("refresh.margin_secs", raw.margin_secs, 1, MAX_MARGIN_SECS)?,
        min_interval: secs(
            "refresh.min_interval_secs",
            raw.min_interval_secs,
            0,
            MAX_RETRY_SECS,
        )?,
        retry_min: secs(
            "refresh.retry_min_secs",
            raw.retry_min_secs,
            1,
            MAX_RETRY_SECS,
        )?,
        retry_max: secs(
            "refresh.retry_max_secs",
            raw.retry_max_secs,
            1,
            MAX_RETRY_SECS,
        )?,
        reported_refetches_per_hour: u32::try_from(count(
            "refresh.reported_refetches_per_hour",
            raw.reported_refetches_per_hour,
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
    Ok(refresh)
}

/// `[metrics]`. The value is quoted back shortened: a long one is a paste gone wrong.
fn validate_metrics(raw: RawMetrics) -> Result<MetricsSettings, ConfigError> {
    let per_app = PerAppMetrics::parse(&raw.per_app).ok_or_else(|| {
        ConfigError::at(
            "metrics.per_app",
            format!(
                "`{}` is not one of \"auto\", \"full\", \"gauges\"",
                raw.per_app.chars().take(32).collect::<String>()
            ),
        )
    })?;
    Ok(MetricsSettings { per_app })
}
