//! The redacted view of the effective configuration (`check-config`): structs that mirror
//! [`Settings`] key for key, with every secret replaced by where it came from, serialized by
//! the `toml` crate. A secret can only enter the view as a [`Redacted`] source, and the view
//! parses back as TOML because the TOML writer produced it.

use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Serialize, Serializer};

use super::{
    AppKind, AppScope, AppSettings, AuthorizerRefresh, ClientSettings, EncryptionSettings, Grant,
    NodeAddr, PlatformSettings, ProxySettings, RedisAuth, RedisEndpoint, RedisSettings,
    RefreshSettings, SecretSource, ServerSettings, Settings, StoreSettings, UpstreamSettings,
    WECHAT_API_PREFIXES,
};

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

impl Settings {
    /// A TOML rendering of the effective configuration with every secret redacted.
    pub fn redacted_toml(&self) -> String {
        match toml::to_string(&View::from(self)) {
            Ok(text) => text,
            // The view holds only strings, integers within i64, booleans and lists of them,
            // which TOML always takes; should the writer refuse anyway, say so instead of
            // panicking in `check-config`.
            Err(e) => format!("# the configuration could not be rendered: {e}\n"),
        }
    }
}

/// A secret, shown as where it came from (`env SHOP_SECRET (redacted)`), never its value.
struct Redacted<'a>(&'a SecretSource);

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// Whole seconds, as the file gives them.
fn secs(d: Duration) -> i64 {
    int(d.as_secs())
}

/// TOML integers are i64: settings built in code could hold more, shown as the largest.
fn int<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The file's sections in the order of the configuration reference; the lists of tables come
/// last, as TOML requires.
#[derive(Serialize)]
struct View<'a> {
    server: ServerView<'a>,
    upstream: UpstreamView<'a>,
    refresh: RefreshView,
    store: StoreSection<'a>,
    metrics: MetricsView,
    proxy: ProxyView<'a>,
    // The serializer leaves out a `None`, as the file leaves out an absent section: an empty
    // list of tables is `None` (see `tables`) rather than a written `apps = []`.
    audit: Option<super::audit::AuditView>,
    apps: Option<Vec<AppView<'a>>>,
    platforms: Option<Vec<PlatformView<'a>>>,
    wecom_suites: Option<Vec<SuiteView<'a>>>,
    wecom_providers: Option<Vec<ProviderView<'a>>>,
    clients: Option<Vec<ClientView<'a>>>,
    routes: Option<Vec<RouteView<'a>>>,
}

/// The views of a list of tables, or `None` for an empty list.
fn tables<'a, T, V: From<&'a T>>(items: &'a [T]) -> Option<Vec<V>> {
    (!items.is_empty()).then(|| items.iter().map(V::from).collect())
}

impl<'a> From<&'a Settings> for View<'a> {
    fn from(s: &'a Settings) -> Self {
        View {
            server: ServerView::from(&s.server),
            upstream: UpstreamView::from(&s.upstream),
            refresh: RefreshView::from(&s.refresh),
            store: StoreSection {
                kind: StoreView::from(&s.store),
                encryption: EncryptionView::from(&s.encryption),
            },
            metrics: MetricsView {
                per_app: s.metrics.per_app.as_str(),
            },
            proxy: ProxyView::from(&s.proxy),
            audit: s.audit.as_ref().map(super::audit::AuditView::from),
            apps: tables(&s.apps),
            platforms: tables(&s.platforms),
            wecom_suites: tables(&s.wecom_suites),
            wecom_providers: tables(&s.wecom_providers),
            clients: tables(&s.clients),
            routes: tables(&s.routes),
        }
    }
}

#[derive(Serialize)]
struct ServerView<'a> {
    listen: String,
    shutdown_timeout_secs: i64,
    body_timeout_secs: i64,
    /// 0: derived from the open-file limit, as in the file.
    max_connections_per_worker: i64,
    readiness: &'a str,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    tls_client_ca_file: Option<String>,
    client_auth: &'static str,
}

impl<'a> From<&'a ServerSettings> for ServerView<'a> {
    fn from(s: &'a ServerSettings) -> Self {
        ServerView {
            listen: s.listen.to_string(),
            shutdown_timeout_secs: secs(s.shutdown_timeout),
            body_timeout_secs: secs(s.body_timeout),
            max_connections_per_worker: int(s.max_connections_per_worker.unwrap_or(0)),
            readiness: s.readiness.as_str(),
            tls_cert_file: s.tls.as_ref().map(|t| path(&t.cert_file)),
            tls_key_file: s.tls.as_ref().map(|t| path(&t.key_file)),
            tls_client_ca_file: s
                .tls
                .as_ref()
                .and_then(|t| t.client_ca_file.as_deref())
                .map(path),
            client_auth: s.client_auth.as_str(),
        }
    }
}

#[derive(Serialize)]
struct UpstreamView<'a> {
    base_url: &'a str,
    wecom_base_url: &'a str,
    timeout_secs: i64,
    min_token_lifetime_secs: i64,
    max_concurrent: i64,
    max_per_second: i64,
    ca_file: Option<String>,
}

impl<'a> From<&'a UpstreamSettings> for UpstreamView<'a> {
    fn from(u: &'a UpstreamSettings) -> Self {
        UpstreamView {
            base_url: &u.base_url,
            wecom_base_url: &u.wecom_base_url,
            timeout_secs: secs(u.timeout),
            min_token_lifetime_secs: secs(u.min_token_lifetime),
            max_concurrent: int(u.max_concurrent),
            max_per_second: int(u.max_per_second),
            ca_file: u.ca_file.as_deref().map(path),
        }
    }
}

#[derive(Serialize)]
struct RefreshView {
    margin_secs: i64,
    min_interval_secs: i64,
    retry_min_secs: i64,
    retry_max_secs: i64,
    reported_refetches_per_hour: i64,
}

impl From<&RefreshSettings> for RefreshView {
    fn from(r: &RefreshSettings) -> Self {
        RefreshView {
            margin_secs: secs(r.margin),
            min_interval_secs: secs(r.min_interval),
            retry_min_secs: secs(r.retry_min),
            retry_max_secs: secs(r.retry_max),
            reported_refetches_per_hour: int(r.reported_refetches_per_hour),
        }
    }
}

/// `[store]`: the keys of its kind, then the encryption keys (of either kind).
#[derive(Serialize)]
struct StoreSection<'a> {
    #[serde(flatten)]
    kind: StoreView<'a>,
    #[serde(flatten)]
    encryption: EncryptionView,
}

/// The keys as their ids and where they came from (`key id 1a2b3c4d, env STORE_KEY
/// (redacted)`); left out when encryption is not configured.
#[derive(Serialize)]
struct EncryptionView {
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_key: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    previous_keys: Vec<String>,
    /// Shown when on: the view of a store without encryption stays as it was.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    require_encryption: bool,
}

impl From<&EncryptionSettings> for EncryptionView {
    fn from(e: &EncryptionSettings) -> Self {
        let show = |(id, source): &(crate::seal::KeyId, SecretSource)| {
            format!("key id {id}, {}", Redacted(source).0)
        };
        EncryptionView {
            encryption_key: e.current.as_ref().map(show),
            previous_keys: e.previous.iter().map(show).collect(),
            require_encryption: e.require,
        }
    }
}

/// `kind` first, then the keys of that kind.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum StoreView<'a> {
    Embedded { path: String },
    Redis(Box<RedisView<'a>>),
}

impl<'a> From<&'a StoreSettings> for StoreView<'a> {
    fn from(s: &'a StoreSettings) -> Self {
        match s {
            StoreSettings::Embedded { path: p } => StoreView::Embedded { path: path(p) },
            StoreSettings::Redis(r) => StoreView::Redis(Box::new(RedisView::from(r))),
        }
    }
}

/// The keys of one topology are set, the others left out (`None` is not written).
#[derive(Serialize, Default)]
struct RedisView<'a> {
    /// The URL without its credentials, and where it came from: `redis://h:6379/0 (env X
    /// (redacted))`.
    url: Option<String>,
    sentinels: Option<Vec<String>>,
    sentinel_master: Option<&'a str>,
    sentinel_password: Option<Redacted<'a>>,
    cluster_nodes: Option<Vec<String>>,
    username: Option<&'a str>,
    password: Option<Redacted<'a>>,
    tls: Option<bool>,
    tls_ca_file: Option<String>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    key_prefix: &'a str,
    lock_ttl_secs: i64,
    poll_secs: i64,
    instance: &'a str,
    local_path: Option<String>,
}

impl<'a> From<&'a RedisSettings> for RedisView<'a> {
    fn from(r: &'a RedisSettings) -> Self {
        let nodes = |n: &[NodeAddr]| Some(n.iter().map(ToString::to_string).collect());
        let secret = |p: &'a Option<_>| p.as_ref().map(|(_, source)| Redacted(source));
        let mut v = RedisView {
            key_prefix: &r.key_prefix,
            lock_ttl_secs: secs(r.lock_ttl),
            poll_secs: secs(r.poll_interval),
            instance: &r.instance,
            local_path: r.local_path.as_deref().map(path),
            ..RedisView::default()
        };
        let auth = match &r.endpoint {
            RedisEndpoint::Url { url, source } => {
                v.url = Some(format!("{} ({source})", redact_url(url.expose_secret())));
                None
            }
            RedisEndpoint::Sentinel(s) => {
                v.sentinels = nodes(&s.sentinels);
                v.sentinel_master = Some(&s.master);
                v.sentinel_password = secret(&s.sentinel_password);
                Some(&s.auth)
            }
            RedisEndpoint::Cluster { nodes: n, auth } => {
                v.cluster_nodes = nodes(n);
                Some(auth)
            }
        };
        if let Some(RedisAuth { username, password }) = auth {
            v.username = username.as_deref();
            v.password = secret(password);
        }
        if let Some(tls) = &r.tls {
            // With a URL its scheme says TLS; `tls` is the key of the other topologies.
            v.tls = auth.is_some().then_some(true);
            v.tls_ca_file = tls.ca_file.as_deref().map(path);
            v.tls_cert_file = tls.client.as_ref().map(|(cert, _)| path(cert));
            v.tls_key_file = tls.client.as_ref().map(|(_, key)| path(key));
        }
        v
    }
}

#[derive(Serialize)]
struct MetricsView {
    per_app: &'static str,
}

#[derive(Serialize)]
struct ProxyView<'a> {
    /// The prefixes beyond WeChat's own, as the file lists them.
    extra_prefixes: Vec<&'a str>,
    max_body_bytes: i64,
    timeout_secs: i64,
    max_concurrent: i64,
    anonymous_max_concurrent: i64,
}

impl<'a> From<&'a ProxySettings> for ProxyView<'a> {
    fn from(p: &'a ProxySettings) -> Self {
        ProxyView {
            extra_prefixes: p
                .prefixes
                .iter()
                .map(String::as_str)
                .filter(|p| !WECHAT_API_PREFIXES.contains(p))
                .collect(),
            max_body_bytes: int(p.max_body_bytes),
            timeout_secs: secs(p.timeout),
            max_concurrent: int(p.max_concurrent),
            anonymous_max_concurrent: int(p.anonymous_max_concurrent),
        }
    }
}

/// An official app has a grant and an appid, a WeCom app a corpid.
#[derive(Serialize)]
struct AppView<'a> {
    name: &'a str,
    kind: &'static str,
    grant: Option<&'static str>,
    appid: Option<&'a str>,
    corpid: Option<&'a str>,
    secret: Redacted<'a>,
    daily_quota: i64,
    tickets: Vec<&'static str>,
    message_token: Option<Redacted<'a>>,
    encoding_aes_key: Option<Redacted<'a>>,
    message_format: Option<&'static str>,
}

impl<'a> From<&'a AppSettings> for AppView<'a> {
    fn from(a: &'a AppSettings) -> Self {
        let (kind, grant, appid, corpid) = match a.kind {
            AppKind::Official(grant) => {
                let grant = match grant {
                    Grant::ClientCredential => "client_credential",
                    Grant::Stable => "stable",
                };
                ("official", Some(grant), Some(a.appid.as_str()), None)
            }
            AppKind::Wecom => ("wecom", None, None, Some(a.appid.as_str())),
        };
        AppView {
            name: &a.name,
            kind,
            grant,
            appid,
            corpid,
            secret: Redacted(&a.secret_source),
            daily_quota: int(a.daily_quota),
            tickets: a.tickets.iter().map(|t| t.as_str()).collect(),
            message_token: a.messages.as_ref().map(|m| Redacted(&m.token_source)),
            encoding_aes_key: a
                .messages
                .as_ref()
                .and_then(|m| m.encoding_aes_key_source.as_ref())
                .map(Redacted),
            message_format: a.messages.as_ref().map(|m| m.format.as_str()),
        }
    }
}

#[derive(Serialize)]
struct PlatformView<'a> {
    name: &'a str,
    component_appid: &'a str,
    component_secret: Redacted<'a>,
    token: Redacted<'a>,
    encoding_aes_key: Redacted<'a>,
    authorizer_refresh: &'static str,
    /// Only with `authorizer_refresh = "active"`.
    active_window_secs: Option<i64>,
    release_check: bool,
}

impl<'a> From<&'a PlatformSettings> for PlatformView<'a> {
    fn from(p: &'a PlatformSettings) -> Self {
        PlatformView {
            name: &p.name,
            component_appid: &p.component_appid,
            component_secret: Redacted(&p.component_secret_source),
            token: Redacted(&p.token_source),
            encoding_aes_key: Redacted(&p.encoding_aes_key_source),
            authorizer_refresh: p.authorizer_refresh.as_str(),
            active_window_secs: match p.authorizer_refresh {
                AuthorizerRefresh::Active { window } => Some(secs(window)),
                AuthorizerRefresh::All => None,
            },
            release_check: p.release_check,
        }
    }
}

#[derive(Serialize)]
struct SuiteView<'a> {
    name: &'a str,
    kind: &'static str,
    suite_id: &'a str,
    suite_secret: Redacted<'a>,
    token: Redacted<'a>,
    encoding_aes_key: Redacted<'a>,
    provider: Option<&'a str>,
    corp_refresh: &'static str,
    /// Only with `corp_refresh = "active"`.
    active_window_secs: Option<i64>,
}

impl<'a> From<&'a super::WecomSuiteSettings> for SuiteView<'a> {
    fn from(s: &'a super::WecomSuiteSettings) -> Self {
        SuiteView {
            name: &s.name,
            kind: s.kind.as_str(),
            suite_id: &s.suite_id,
            suite_secret: Redacted(&s.suite_secret_source),
            token: Redacted(&s.token_source),
            encoding_aes_key: Redacted(&s.encoding_aes_key_source),
            provider: s.provider.as_deref(),
            corp_refresh: s.corp_refresh.as_str(),
            active_window_secs: match s.corp_refresh {
                AuthorizerRefresh::Active { window } => Some(secs(window)),
                AuthorizerRefresh::All => None,
            },
        }
    }
}

#[derive(Serialize)]
struct ProviderView<'a> {
    name: &'a str,
    corpid: &'a str,
    provider_secret: Redacted<'a>,
}

impl<'a> From<&'a super::WecomProviderSettings> for ProviderView<'a> {
    fn from(p: &'a super::WecomProviderSettings) -> Self {
        ProviderView {
            name: &p.name,
            corpid: &p.corpid,
            provider_secret: Redacted(&p.provider_secret_source),
        }
    }
}

#[derive(Serialize)]
struct ClientView<'a> {
    name: &'a str,
    /// Left out for a client that authenticates by certificate only.
    key: Option<Redacted<'a>>,
    cert_subject: Option<&'a str>,
    cert_san: Option<&'a str>,
    rate_per_second: Option<i64>,
    burst: Option<i64>,
    apps: Option<Vec<&'a str>>,
    platforms: Option<Vec<&'a str>>,
    wecom_suites: Option<Vec<&'a str>>,
    wecom_providers: Option<Vec<&'a str>>,
    admin: bool,
    proxy: bool,
}

impl<'a> From<&'a ClientSettings> for ClientView<'a> {
    fn from(c: &'a ClientSettings) -> Self {
        ClientView {
            name: &c.name,
            key: c.key_source.as_ref().map(Redacted),
            cert_subject: c.cert.as_ref().and_then(|m| m.subject.as_deref()),
            cert_san: c.cert.as_ref().and_then(|m| m.san.as_deref()),
            rate_per_second: c.rate.map(|r| int(r.per_second.get())),
            burst: c.rate.map(|r| int(r.burst.get())),
            apps: scope(&c.apps),
            platforms: scope(&c.platforms),
            wecom_suites: scope(&c.wecom_suites),
            wecom_providers: scope(&c.wecom_providers),
            admin: c.admin,
            proxy: c.proxy,
        }
    }
}

/// A client's list, sorted so the output is stable. A scope of nothing is a list the client
/// left out (an empty one is refused), so it is left out here too.
fn scope(s: &AppScope) -> Option<Vec<&str>> {
    match s {
        AppScope::All => Some(vec!["*"]),
        AppScope::Only(set) if set.is_empty() => None,
        AppScope::Only(set) => {
            let mut names: Vec<&str> = set.iter().map(String::as_str).collect();
            names.sort_unstable();
            Some(names)
        }
    }
}

/// A route, its signing key as where it came from.
#[derive(Serialize)]
struct RouteView<'a> {
    name: &'a str,
    #[serde(rename = "match")]
    matches: RouteMatchView<'a>,
    url: &'a str,
    signing_key: Redacted<'a>,
    mode: &'static str,
    /// Only with `mode = "reply"`.
    reply_timeout_ms: Option<i64>,
    max_age_secs: i64,
    dead_retention_secs: i64,
}

#[derive(Serialize)]
struct RouteMatchView<'a> {
    apps: Option<&'a [String]>,
    platforms: Option<&'a [String]>,
    msg_types: Option<&'a [String]>,
    events: Option<&'a [String]>,
    info_types: Option<&'a [String]>,
}

impl<'a> From<&'a super::RouteSettings> for RouteView<'a> {
    fn from(r: &'a super::RouteSettings) -> Self {
        let m = &r.matches;
        RouteView {
            name: &r.name,
            matches: RouteMatchView {
                apps: m.apps.as_deref(),
                platforms: m.platforms.as_deref(),
                msg_types: m.msg_types.as_deref(),
                events: m.events.as_deref(),
                info_types: m.info_types.as_deref(),
            },
            url: &r.url,
            signing_key: Redacted(&r.signing_key_source),
            mode: r.mode.as_str(),
            reply_timeout_ms: (r.mode == super::RouteMode::Reply)
                .then(|| int(r.reply_timeout.as_millis())),
            max_age_secs: secs(r.max_age),
            dead_retention_secs: secs(r.dead_retention),
        }
    }
}
