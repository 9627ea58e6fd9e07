//! The validated configuration the server runs with, and the types its parts are made of.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::redis::{RedisEndpoint, RedisTls};
use super::SecretSource;

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub upstream: UpstreamSettings,
    pub refresh: RefreshSettings,
    pub store: StoreSettings,
    /// `[store]`'s encryption keys, for either kind of store.
    pub encryption: super::EncryptionSettings,
    pub proxy: super::ProxySettings,
    pub metrics: MetricsSettings,
    /// `[audit]`; `None`: no trail is written.
    pub audit: Option<super::AuditSettings>,
    pub apps: Vec<AppSettings>,
    /// Open Platform third-party platforms; a configuration may hold these and no apps.
    pub platforms: Vec<PlatformSettings>,
    /// WeCom service providers' suites and templates.
    pub wecom_suites: Vec<super::WecomSuiteSettings>,
    pub wecom_providers: Vec<super::WecomProviderSettings>,
    pub clients: Vec<ClientSettings>,
    /// Where message pushes are delivered (fixed until a restart).
    pub routes: Vec<super::RouteSettings>,
}

impl Settings {
    /// Credentials with their own metrics label: one access token per app plus its tickets,
    /// and one component token per platform (`platform:{name}`). Authorizer tokens have no
    /// label of their own, so however many a platform holds they do not count here.
    pub fn credential_count(&self) -> usize {
        self.apps
            .iter()
            .map(|a| a.tickets.len().saturating_add(1))
            .fold(
                self.platforms.len() + self.wecom_suites.len() + self.wecom_providers.len(),
                usize::saturating_add,
            )
    }
}

/// Compared by value on a reload: the series set is chosen at start-up, so a change needs a
/// restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    pub per_app: PerAppMetrics,
}

/// `[metrics] per_app`: which per-app series `/metrics` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerAppMetrics {
    /// `full` up to [`AUTO_FULL_MAX_CREDENTIALS`] credentials, `gauges` above.
    Auto,
    Full,
    Gauges,
}

/// Largest credential count for which `per_app = "auto"` exports the full per-app set. At 50
/// series per credential, 1,000 credentials are about 50,000 series (3 MB a scrape); above it
/// the full set grows past what one scrape should cost.
pub const AUTO_FULL_MAX_CREDENTIALS: usize = 1_000;

/// The per-app series set a running process exports, decided once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsMode {
    /// Every per-app gauge, counter and histogram, labelled `app`.
    Full,
    /// Four per-app gauges and one per-app failure counter; the other counters and the
    /// histograms are aggregate series without `app`.
    Gauges,
}

impl PerAppMetrics {
    pub fn as_str(self) -> &'static str {
        match self {
            PerAppMetrics::Auto => "auto",
            PerAppMetrics::Full => "full",
            PerAppMetrics::Gauges => "gauges",
        }
    }

    pub fn parse(s: &str) -> Option<PerAppMetrics> {
        match s {
            "auto" => Some(PerAppMetrics::Auto),
            "full" => Some(PerAppMetrics::Full),
            "gauges" => Some(PerAppMetrics::Gauges),
            _ => None,
        }
    }
}

impl MetricsSettings {
    /// The mode for a process that starts with `credentials` credentials (tokens plus
    /// tickets).
    pub fn mode(&self, credentials: usize) -> MetricsMode {
        match self.per_app {
            PerAppMetrics::Full => MetricsMode::Full,
            PerAppMetrics::Gauges => MetricsMode::Gauges,
            PerAppMetrics::Auto if credentials <= AUTO_FULL_MAX_CREDENTIALS => MetricsMode::Full,
            PerAppMetrics::Auto => MetricsMode::Gauges,
        }
    }
}

/// Compared by value on a reload: a change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub shutdown_timeout: Duration,
    /// Deadline for reading a whole request body once its headers arrived.
    pub body_timeout: Duration,
    /// Open connections one HTTP worker accepts; `None` derives it from the open-file limit.
    pub max_connections_per_worker: Option<usize>,
    /// What `/readyz` answers for when the probe names no `scope`.
    pub readiness: ReadinessScope,
    /// HTTPS on the listener; `None` serves plain HTTP.
    pub tls: Option<super::ServerTls>,
    /// What authenticates a client: its key, its certificate, either or both.
    pub client_auth: super::ClientAuth,
}

/// What `/readyz` is ready for (`[server] readiness`, or `?scope=` on the probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadinessScope {
    /// Ready when every credential holds a valid token and this instance can serve: one
    /// credential's problem takes the instance out of a load balancer.
    #[default]
    Apps,
    /// Ready when this instance can serve (its store has saved every record and every token
    /// actor runs); credentials without a token are listed but do not make it unready, since
    /// the instance still serves all the others. For orchestrators fronting many credentials.
    Instance,
}

impl ReadinessScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadinessScope::Apps => "apps",
            ReadinessScope::Instance => "instance",
        }
    }

    pub fn parse(s: &str) -> Option<ReadinessScope> {
        match s {
            "apps" => Some(ReadinessScope::Apps),
            "instance" => Some(ReadinessScope::Instance),
            _ => None,
        }
    }
}

/// Compared by value on a reload: a change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Most upstream calls in flight at once, across the process; more wait in a queue.
    pub max_concurrent: usize,
    /// Most upstream calls started per second, across the process; 0: no cap.
    pub max_per_second: u32,
}

/// Longest credential lifetime accepted from upstream: WeChat hands out 2 hours; a week is far
/// beyond any real answer and keeps every time computation far from overflow.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// Refresh policy. Durations rather than seconds so tests can use sub-second values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSettings {
    pub margin: Duration,
    pub min_interval: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Refetches per credential per hour that reports (invalidations, the gateway's retries)
    /// may cause before the token's normal refresh time, each one confirmed by WeChat first.
    /// Beyond it the current token is served and the report counted as refused.
    pub reported_refetches_per_hour: u32,
}

/// Compared by value on a reload: a change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
// One value per process, read at start and on a reload: its size costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum StoreSettings {
    /// A redb file database on local disk.
    Embedded { path: PathBuf },
    /// Redis, shared by several instances.
    Redis(RedisSettings),
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One server, a Sentinel-monitored master, or a Cluster.
    pub endpoint: RedisEndpoint,
    /// `Some` when the connections use TLS (`rediss://`, or `tls = true`).
    pub tls: Option<RedisTls>,
    /// Prefix of every key and channel, so several deployments can share one Redis.
    pub key_prefix: String,
    /// How long the refresh lock lives if its holder dies.
    pub lock_ttl: Duration,
    /// How often each actor re-reads its record (covers missed change notifications).
    pub poll_interval: Duration,
    /// Written into records as `fetched_by`.
    pub instance: String,
    /// This instance's own embedded file with a copy of the Open Platform records, written back
    /// to Redis when Redis lost them. Always set from a configuration file; `None` (settings
    /// built in code) keeps those records in Redis only.
    pub local_path: Option<PathBuf>,
}

impl RedisSettings {
    /// Settings for one server at `url` with the defaults of a configuration file (tests and
    /// benchmarks build them in code).
    pub fn for_url(url: &str, instance: &str) -> RedisSettings {
        RedisSettings {
            endpoint: RedisEndpoint::Url {
                url: SecretString::from(url.to_string()),
                source: SecretSource::Inline,
            },
            tls: None,
            key_prefix: "wxtoken".into(),
            lock_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_secs(5),
            instance: instance.into(),
            local_path: None,
        }
    }
}

/// By what the running store uses: the endpoint (so a changed password counts, compared
/// exposed there and never through `Debug`), TLS files, prefix, timings and instance name.
/// Where a secret came from does not matter.
impl PartialEq for RedisSettings {
    fn eq(&self, other: &Self) -> bool {
        self.endpoint.same_as(&other.endpoint)
            && self.tls == other.tls
            && self.key_prefix == other.key_prefix
            && self.lock_ttl == other.lock_ttl
            && self.poll_interval == other.poll_interval
            && self.instance == other.instance
            && self.local_path == other.local_path
    }
}

impl Eq for RedisSettings {}

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
    /// The keys of the app's message pushes, if it takes them.
    pub messages: Option<super::AppMessages>,
}

impl AppSettings {
    /// Whether `other` is the same app with the same settings, secret included (compared here,
    /// never printed): a reload leaves such an app's actors alone.
    pub fn same_as(&self, other: &AppSettings) -> bool {
        use secrecy::ExposeSecret as _;
        self.name == other.name
            && self.kind == other.kind
            && self.appid == other.appid
            && self.tickets == other.tickets
            && self.daily_quota == other.daily_quota
            && self.secret_source == other.secret_source
            && self.secret.expose_secret() == other.secret.expose_secret()
            && match (&self.messages, &other.messages) {
                (Some(a), Some(b)) => a.same_as(b),
                (None, None) => true,
                _ => false,
            }
    }
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

/// A ticket type WeChat issues with `getticket`, or one WeCom issues to a corp that installed
/// a suite (each with its own endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketKind {
    Jsapi,
    WxCard,
    /// WeCom's corp ticket (`get_jsapi_ticket`), for `wx.config`.
    CorpJsapi,
    /// WeCom's app ticket (`ticket/get?type=agent_config`), for `wx.agentConfig`.
    AgentJsapi,
}

impl TicketKind {
    /// The `type` parameter of `getticket`, also used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketKind::Jsapi => "jsapi",
            TicketKind::WxCard => "wx_card",
            TicketKind::CorpJsapi => "jsapi",
            TicketKind::AgentJsapi => "agent_jsapi",
        }
    }

    pub fn parse(s: &str) -> Option<TicketKind> {
        match s {
            "jsapi" => Some(TicketKind::Jsapi),
            "wx_card" => Some(TicketKind::WxCard),
            _ => None,
        }
    }

    /// A WeCom corp's ticket type, as its URLs name it: `jsapi` or `agent_jsapi`.
    pub fn parse_wecom(s: &str) -> Option<TicketKind> {
        match s {
            "jsapi" => Some(TicketKind::CorpJsapi),
            "agent_jsapi" => Some(TicketKind::AgentJsapi),
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

/// Which apps (or, in [`ClientSettings::platforms`], which platforms) a client may use.
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
    /// `None` for a client that authenticates by certificate only.
    pub key_sha256: Option<[u8; 32]>,
    pub key_source: Option<SecretSource>,
    /// The client certificate that identifies it (`cert_subject`, `cert_san`), if any.
    pub cert: Option<super::CertMatch>,
    /// Its token bucket (`rate_per_second`, `burst`); `None`: no limit.
    pub rate: Option<ClientRate>,
    /// The apps it may read; `Only` of nothing when the client names only platforms.
    pub apps: AppScope,
    /// The platforms whose component and authorizer credentials it may read; `Only` of
    /// nothing when the client names only apps.
    pub platforms: AppScope,
    /// The WeCom suites whose suite token and corp tokens it may read.
    pub wecom_suites: AppScope,
    /// The WeCom providers whose provider token it may read.
    pub wecom_providers: AppScope,
    /// May revoke tokens and reload the configuration.
    pub admin: bool,
    /// May call WeChat through `/v1/apps/{name}/proxy/...` (and an authorizer's), with
    /// wxtoken adding the token: the client never holds one.
    pub proxy: bool,
}

impl ClientSettings {
    /// Whether this client may read the app named `app`.
    pub fn may_use_app(&self, app: &str) -> bool {
        self.apps.allows(app)
    }

    /// Whether this client may use the platform named `platform`: its component token and
    /// every authorizer of it.
    pub fn may_use_platform(&self, platform: &str) -> bool {
        self.platforms.allows(platform)
    }

    /// Whether this client may use WeCom suite `suite`: its suite token and its corps'.
    pub fn may_use_wecom_suite(&self, suite: &str) -> bool {
        self.wecom_suites.allows(suite)
    }

    /// Whether this client may read WeCom provider `provider`'s provider token.
    pub fn may_use_wecom_provider(&self, provider: &str) -> bool {
        self.wecom_providers.allows(provider)
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("name", &self.name)
            .field("key", &"[REDACTED]")
            .field("cert", &self.cert)
            .field("rate", &self.rate)
            .field("apps", &self.apps)
            .field("platforms", &self.platforms)
            .field("wecom_suites", &self.wecom_suites)
            .field("wecom_providers", &self.wecom_providers)
            .field("admin", &self.admin)
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// A client's token bucket: `per_second` requests a second on average, `burst` at once. Per
/// instance: a fleet of N instances lets a client make up to N times as many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRate {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

/// A WeChat Open Platform third-party platform (第三方平台): the component credentials that
/// mint its component token, and the message-check Token and EncodingAESKey of its
/// authorization event URL. Every secret is a `SecretString`, so `Debug` never prints one.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// The name clients use in URLs (`/v1/platforms/saas/...`).
    pub name: String,
    /// The platform's own appid (`component_appid` in every component call).
    pub component_appid: String,
    /// The platform's AppSecret (`component_appsecret` of `api_component_token`).
    pub component_secret: SecretString,
    pub component_secret_source: SecretSource,
    /// The message-check Token: the key of `msg_signature` on pushed events. 3-32 letters and
    /// digits, as WeChat allows.
    pub token: SecretString,
    pub token_source: SecretSource,
    /// The 43-character EncodingAESKey; checked to decode (with a trailing `=`) to the
    /// 32-byte AES-256 key of the event encryption.
    pub encoding_aes_key: SecretString,
    pub encoding_aes_key_source: SecretSource,
    pub authorizer_refresh: AuthorizerRefresh,
    /// wxtoken answers WeChat's release check (全网发布) for its test accounts itself.
    pub release_check: bool,
}

impl PlatformSettings {
    /// The `app` label of the component token in the token series.
    pub fn metrics_label(&self) -> String {
        super::labels::platform_label(&self.name)
    }

    /// Whether `other` is the same platform with the same settings, secrets included (compared
    /// here, never printed): a reload can leave such a platform alone.
    pub fn same_as(&self, other: &PlatformSettings) -> bool {
        self.name == other.name
            && self.component_appid == other.component_appid
            && self.authorizer_refresh == other.authorizer_refresh
            && self.release_check == other.release_check
            && self.component_secret_source == other.component_secret_source
            && self.token_source == other.token_source
            && self.encoding_aes_key_source == other.encoding_aes_key_source
            && self.component_secret.expose_secret() == other.component_secret.expose_secret()
            && self.token.expose_secret() == other.token.expose_secret()
            && self.encoding_aes_key.expose_secret() == other.encoding_aes_key.expose_secret()
    }
}

/// `authorizer_refresh`: which authorized accounts' tokens a platform keeps warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizerRefresh {
    /// Refresh ahead of expiry only the authorizers asked for within `window`; the others
    /// are fetched on their next request.
    Active { window: Duration },
    /// Refresh every authorizer ahead of expiry, asked for or not.
    All,
}

impl AuthorizerRefresh {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizerRefresh::Active { .. } => "active",
            AuthorizerRefresh::All => "all",
        }
    }
}

/// SHA-256 of a client key, the form in which keys are stored and compared.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}
