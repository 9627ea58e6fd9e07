//! The raw form of the configuration: exactly what the file may contain, unknown keys rejected.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Keys whose values are secrets (or may carry one, as a Redis URL carries its password).
/// Errors about them name the key and the problem, never the value.
pub(super) fn is_secret_key(path: &str) -> bool {
    is_secret_leaf(path.rsplit('.').next().unwrap_or(path))
}

/// The last segment of a secret-bearing key: `apps[N].secret`, `clients[N].key`,
/// `clients[N].key_sha256`, `store.url`, a platform's `component_secret`, message-check
/// `token` and `encoding_aes_key`, and an app's `message_token` and `encoding_aes_key`.
pub(super) fn is_secret_leaf(leaf: &str) -> bool {
    matches!(
        leaf,
        "secret"
            | "key"
            | "key_sha256"
            | "url"
            | "component_secret"
            | "token"
            | "encoding_aes_key"
            | "message_token"
    )
}

/// A TOML syntax error, located by line and key but never quoting a value: the parser's
/// Display form quotes the offending line, and even its message quotes values (an integer too
/// large for TOML: `` invalid type: integer `31415926535897932384` ``), which may be a secret.
pub(super) fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let mut message = String::new();
    // Backquoted parts longer than a token (`=`, `]`) are values: left out.
    for (i, part) in e.message().split('`').enumerate() {
        if i % 2 == 0 {
            message.push_str(part);
        } else if part.chars().count() <= 2 {
            message.push_str(&format!("`{part}`"));
        } else {
            message.push_str("(value not shown)");
        }
    }
    let Some(span) = e.span() else {
        return ConfigError(format!("not valid TOML: {message}"));
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && k.len() <= 64 && !k.contains(['"', '\'', '[']))
        .map(|k| format!(" at `{k}`"))
        .unwrap_or_default();
    ConfigError(format!("not valid TOML, line {line_no}{key}: {message}"))
}

/// Deserializes the (overridden) tree; an error names the path of the value at fault.
pub(super) fn deserialize(tree: toml::Table) -> Result<RawSettings, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
        let path = e.path().to_string();
        // serde's unknown-field message names the key and the expected ones, never a value.
        let unknown_field = e.inner().message().starts_with("unknown field");
        if is_secret_key(&path) && !unknown_field {
            // serde's message quotes the value (`invalid type: integer `1234...``): reduced
            // to what is wrong, so a secret typed without quotes is not printed back.
            return ConfigError::at(
                path,
                "must be a string (the value is not shown: this key holds a secret)",
            );
        }
        ConfigError::at(
            if path == "." { "config".into() } else { path },
            e.inner().message(),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) upstream: RawUpstream,
    #[serde(default)]
    pub(super) refresh: RawRefresh,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) proxy: super::proxy::RawProxy,
    pub(super) audit: Option<super::audit::RawAudit>,
    #[serde(default)]
    pub(super) apps: Vec<RawApp>,
    #[serde(default)]
    pub(super) platforms: Vec<RawPlatform>,
    #[serde(default)]
    pub(super) wecom_suites: Vec<RawWecomSuite>,
    #[serde(default)]
    pub(super) wecom_providers: Vec<RawWecomProvider>,
    #[serde(default)]
    pub(super) clients: Vec<RawClient>,
    #[serde(default)]
    pub(super) routes: Vec<super::routes::RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: String,
    pub(super) shutdown_timeout_secs: u64,
    pub(super) body_timeout_secs: u64,
    pub(super) max_connections_per_worker: u64,
    /// What a bare `/readyz` answers for: `"apps"` or `"instance"`.
    pub(super) readiness: String,
    /// HTTPS: the certificate chain and private key (PEM) the listener serves.
    pub(super) tls_cert_file: Option<PathBuf>,
    pub(super) tls_key_file: Option<PathBuf>,
    /// The CA (PEM) client certificates are checked against; turns them on.
    pub(super) tls_client_ca_file: Option<PathBuf>,
    /// `key`, `cert`, `either` or `both`; the default depends on `tls_client_ca_file`.
    pub(super) client_auth: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            shutdown_timeout_secs: 10,
            body_timeout_secs: 5,
            max_connections_per_worker: 0,
            readiness: "apps".into(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            client_auth: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUpstream {
    pub(super) base_url: String,
    pub(super) wecom_base_url: String,
    pub(super) timeout_secs: u64,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) min_token_lifetime_secs: u64,
    pub(super) max_concurrent: u64,
    pub(super) max_per_second: u64,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            base_url: "https://api.weixin.qq.com".into(),
            wecom_base_url: "https://qyapi.weixin.qq.com".into(),
            timeout_secs: 10,
            ca_file: None,
            min_token_lifetime_secs: 60,
            max_concurrent: 16,
            max_per_second: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRefresh {
    pub(super) margin_secs: u64,
    pub(super) min_interval_secs: u64,
    pub(super) retry_min_secs: u64,
    pub(super) retry_max_secs: u64,
    pub(super) reported_refetches_per_hour: u64,
}

impl Default for RawRefresh {
    fn default() -> Self {
        RawRefresh {
            margin_secs: 600,
            min_interval_secs: 5,
            retry_min_secs: 1,
            retry_max_secs: 60,
            // A few an hour: about 100 a day at most, a small share of WeChat's 2,000.
            reported_refetches_per_hour: 4,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub(super) kind: String,
    pub(super) path: Option<PathBuf>,
    pub(super) local_path: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) url_env: Option<String>,
    /// A file holding the URL (a mounted secret: a container's `/run/secrets/...`, a systemd
    /// credential).
    pub(super) url_file: Option<PathBuf>,
    pub(super) key_prefix: Option<String>,
    pub(super) lock_ttl_secs: Option<u64>,
    pub(super) poll_secs: Option<u64>,
    pub(super) instance: Option<String>,
    pub(super) sentinels: Option<Vec<String>>,
    pub(super) sentinel_master: Option<String>,
    pub(super) sentinel_password_env: Option<String>,
    pub(super) sentinel_password_file: Option<PathBuf>,
    pub(super) cluster_nodes: Option<Vec<String>>,
    /// The data nodes' password (Sentinel and Cluster; a URL carries its own).
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) username: Option<String>,
    /// TLS for Sentinel and Cluster; a URL chooses it by its scheme.
    pub(super) tls: Option<bool>,
    pub(super) tls_ca_file: Option<PathBuf>,
    pub(super) tls_cert_file: Option<PathBuf>,
    pub(super) tls_key_file: Option<PathBuf>,
    /// Encryption at rest (both kinds; see [`super::encryption`]): the current key's variable
    /// or file, the previous keys, and whether plaintext records are refused.
    pub(super) encryption_key_env: Option<String>,
    pub(super) encryption_key_file: Option<PathBuf>,
    pub(super) previous_keys_env: Option<String>,
    pub(super) previous_key_files: Option<Vec<PathBuf>>,
    pub(super) require_encryption: Option<bool>,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            kind: "embedded".into(),
            path: None,
            local_path: None,
            url: None,
            url_env: None,
            url_file: None,
            key_prefix: None,
            lock_ttl_secs: None,
            poll_secs: None,
            instance: None,
            sentinels: None,
            sentinel_master: None,
            sentinel_password_env: None,
            sentinel_password_file: None,
            cluster_nodes: None,
            password_env: None,
            password_file: None,
            username: None,
            tls: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            encryption_key_env: None,
            encryption_key_file: None,
            previous_keys_env: None,
            previous_key_files: None,
            require_encryption: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMetrics {
    /// `auto`, `full` or `gauges`; checked in validation so the error can list them.
    pub(super) per_app: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            per_app: "auto".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub(super) name: String,
    #[serde(default)]
    pub(super) kind: Option<String>,
    pub(super) appid: Option<String>,
    pub(super) corpid: Option<String>,
    #[serde(default)]
    pub(super) grant: Option<String>,
    #[serde(default)]
    pub(super) tickets: Vec<String>,
    pub(super) secret: Option<String>,
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<PathBuf>,
    #[serde(default = "default_daily_quota")]
    pub(super) daily_quota: u64,
    /// The message-check Token of the app's pushes (`/v1/apps/{name}/messages`).
    pub(super) message_token: Option<String>,
    pub(super) message_token_env: Option<String>,
    pub(super) message_token_file: Option<PathBuf>,
    pub(super) encoding_aes_key: Option<String>,
    pub(super) encoding_aes_key_env: Option<String>,
    pub(super) encoding_aes_key_file: Option<PathBuf>,
    /// `xml` (default) or `json`.
    pub(super) message_format: Option<String>,
}

/// WeChat's default daily limit of `/cgi-bin/token` calls per appid.
fn default_daily_quota() -> u64 {
    2000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) name: String,
    pub(super) key: Option<String>,
    pub(super) key_env: Option<String>,
    /// A file holding the key, read like `secret_file`.
    pub(super) key_file: Option<PathBuf>,
    pub(super) key_sha256: Option<String>,
    /// Absent and empty differ: an empty list is refused, an absent one grants no app (the
    /// client then needs `platforms`).
    #[serde(default)]
    pub(super) apps: Option<Vec<String>>,
    #[serde(default)]
    pub(super) platforms: Option<Vec<String>>,
    #[serde(default)]
    pub(super) wecom_suites: Option<Vec<String>>,
    #[serde(default)]
    pub(super) wecom_providers: Option<Vec<String>>,
    #[serde(default)]
    pub(super) admin: bool,
    /// May call WeChat through `/v1/.../proxy/...` without holding a token.
    #[serde(default)]
    pub(super) proxy: bool,
    /// The client certificate's subject common name that identifies this client.
    pub(super) cert_subject: Option<String>,
    /// A subject alternative name (DNS, URI or e-mail) of the certificate that identifies it.
    pub(super) cert_san: Option<String>,
    /// Requests a second this client may make on average (a token bucket per instance)...
    pub(super) rate_per_second: Option<u64>,
    /// ...and in a burst; defaults to `rate_per_second`.
    pub(super) burst: Option<u64>,
}

/// One `[[wecom_suites]]` entry: a WeCom suite or customized-app template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWecomSuite {
    pub(super) name: String,
    /// `suite` (default) or `template`.
    pub(super) kind: Option<String>,
    pub(super) suite_id: Option<String>,
    pub(super) suite_secret: Option<String>,
    pub(super) suite_secret_env: Option<String>,
    pub(super) suite_secret_file: Option<PathBuf>,
    pub(super) token: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) encoding_aes_key: Option<String>,
    pub(super) encoding_aes_key_env: Option<String>,
    pub(super) encoding_aes_key_file: Option<PathBuf>,
    pub(super) provider: Option<String>,
    pub(super) corp_refresh: Option<String>,
    pub(super) active_window_secs: Option<u64>,
}

/// One `[[wecom_providers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWecomProvider {
    pub(super) name: String,
    pub(super) corpid: Option<String>,
    pub(super) provider_secret: Option<String>,
    pub(super) provider_secret_env: Option<String>,
    pub(super) provider_secret_file: Option<PathBuf>,
}

/// One `[[platforms]]` entry: a WeChat Open Platform third-party platform. Each secret has
/// three exclusive sources, as an app's `secret` does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlatform {
    pub(super) name: String,
    pub(super) component_appid: Option<String>,
    pub(super) component_secret: Option<String>,
    pub(super) component_secret_env: Option<String>,
    pub(super) component_secret_file: Option<PathBuf>,
    pub(super) token: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) encoding_aes_key: Option<String>,
    pub(super) encoding_aes_key_env: Option<String>,
    pub(super) encoding_aes_key_file: Option<PathBuf>,
    /// `active` or `all`; checked in validation so the error can list them.
    pub(super) authorizer_refresh: Option<String>,
    /// Optional so that setting it next to `authorizer_refresh = "all"` can be refused.
    pub(super) active_window_secs: Option<u64>,
    /// Answer WeChat's release check (全网发布) for its test accounts (default true).
    pub(super) release_check: Option<bool>,
}
