//! Settings: the TOML file, `WXTOKEN_` environment overrides, validation and secret loading.
//!
//! Loading happens in three steps so every error can name the key it is about:
//! 1. the file is parsed into a generic TOML tree,
//! 2. environment variables `WXTOKEN_A__B__C=value` are written into that tree ([`env`]),
//! 3. the tree is deserialized into the raw structs ([`raw`], unknown keys rejected) and
//!    validated into [`Settings`] ([`validate`]), where secrets are resolved ([`secrets`]) and
//!    held as [`SecretString`](secrecy::SecretString).
//!
//! Validation goes section by section, each in the file of its section: `[store]` in [`store`]
//! and [`redis`], `[proxy]` in [`proxy`], `[[apps]]` in [`apps`], `[[platforms]]` (Open
//! Platform third-party platforms) in [`platforms`], `[[clients]]` in [`clients`], `[[routes]]`
//! (where message pushes are delivered) in [`routes`]; [`validate`]
//! holds the small sections and calls the others in order.
//!
//! [`redact`] renders the result for `check-config` with every secret left out. No error, log
//! line or `Debug` output of this module carries a secret's value.

mod apps;
mod audit;
mod clients;
mod encryption;
#[cfg(test)]
mod encryption_tests;
mod env;
pub mod labels;
mod messages;
#[cfg(test)]
mod platform_tests;
mod platforms;
mod proxy;
mod raw;
mod redact;
mod redis;
#[cfg(test)]
mod redis_tests;
mod routes;
mod secrets;
mod server_tls;
#[cfg(test)]
mod server_tls_tests;
mod settings;
mod store;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
mod validate;
pub use validate::valid_name;
mod wecom;
#[cfg(test)]
mod wecom_tests;

use std::path::Path;

pub use audit::{AuditSettings, SinkKind};
pub use encryption::EncryptionSettings;
pub use labels::{platform_label, ticket_label};
pub use messages::{AppMessages, MessageFormat};
pub use platforms::{
    decode_encoding_aes_key, DEFAULT_ACTIVE_WINDOW_SECS, ENCODING_AES_KEY_LEN,
    MAX_ACTIVE_WINDOW_SECS, MIN_ACTIVE_WINDOW_SECS,
};
pub use proxy::{ProxySettings, ANONYMOUS_MAX_BODY, WECHAT_API_PREFIXES};
pub use redact::redact_url;
pub use redis::{NodeAddr, RedisAuth, RedisEndpoint, RedisTls, SentinelEndpoint};
pub use routes::{
    RouteMatch, RouteMode, RouteSettings, DEFAULT_MAX_AGE_SECS, MAX_REPLY_TIMEOUT_MS,
    MIN_SIGNING_KEY_LEN,
};
pub use secrets::SecretSource;
pub use server_tls::{CertMatch, ClientAuth, ServerTls};
pub use settings::{
    key_digest, AppKind, AppScope, AppSettings, AuthorizerRefresh, ClientRate, ClientSettings,
    Grant, MetricsMode, MetricsSettings, PerAppMetrics, PlatformSettings, ReadinessScope,
    RedisSettings, RefreshSettings, ServerSettings, Settings, StoreSettings, TicketKind,
    UpstreamSettings, AUTO_FULL_MAX_CREDENTIALS, MAX_TOKEN_LIFETIME,
};
pub use wecom::{
    same_providers, same_suites, SuiteKind, WecomProviderSettings, WecomSuiteSettings,
};

/// Prefix of environment variables that override configuration values.
pub const ENV_PREFIX: &str = "WXTOKEN_";

/// Largest configuration file read. An app takes about 100 bytes, so 100,000 apps (the scale
/// one instance is built for) need about 10 MiB; the bound keeps a wrong path (a device, a
/// huge log) from being read into memory whole.
const MAX_CONFIG_FILE: u64 = 64 * 1024 * 1024;

/// A configuration problem, always naming the key (or file) it is about.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn at(key: impl std::fmt::Display, msg: impl std::fmt::Display) -> Self {
        ConfigError(format!("{key}: {msg}"))
    }
}

impl Settings {
    /// Loads `path`, applies `WXTOKEN_*` overrides from the process environment, validates.
    /// It reads files and may take a moment: callers on an actix arbiter run it with
    /// `web::block`.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = crate::files::read_bounded_text(path, MAX_CONFIG_FILE)
            .map_err(|e| ConfigError(e.to_string()))?;
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
        let mut tree: toml::Table =
            toml::from_str(text).map_err(|e| raw::syntax_error(text, &e))?;
        env::apply_env_overrides(&mut tree, overrides)?;
        let raw = raw::deserialize(tree)?;
        validate::validate(raw, lookup_env)
    }
}
