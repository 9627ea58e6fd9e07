//! Validation of `[[wecom_suites]]` and `[[wecom_providers]]`: WeCom service providers'
//! suites (third-party apps and customized-app templates) and their provider credentials.
//!
//! A suite is the Open Platform's twin, so it follows the platforms' rules: secrets from one
//! of inline, `_env` and `_file`; the callback Token and EncodingAESKey checked for the form
//! WeCom gives them (the same as WeChat's), never quoted; `corp_refresh` read like a
//! platform's `authorizer_refresh`. Suites and providers run from the settings they started
//! with: a reload that changes them asks for a restart, as for platforms.

use std::collections::{HashMap, HashSet};

use secrecy::{ExposeSecret as _, SecretString};

use super::platforms::{authorizer_refresh, check_encoding_aes_key, check_message_token};
use super::raw::{RawWecomProvider, RawWecomSuite};
use super::secrets::{resolve_secret, SecretInput};
use super::validate::unique_name;
use super::{AuthorizerRefresh, ConfigError, PlatformSettings, SecretSource};

/// What a suite is to WeCom: how its installed corps' tokens are minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteKind {
    /// A third-party app (第三方应用): corp tokens from `service/get_corp_token`.
    Suite,
    /// A customized-app template (代开发应用模板): the permanent code is the corp app's
    /// secret for `gettoken`.
    Template,
}

impl SuiteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteKind::Suite => "suite",
            SuiteKind::Template => "template",
        }
    }
}

/// One WeCom suite (or template). Every secret is a `SecretString`: `Debug` never prints one.
#[derive(Debug, Clone)]
pub struct WecomSuiteSettings {
    /// The name clients use in URLs (`/v1/wecom/suites/{name}/...`).
    pub name: String,
    pub kind: SuiteKind,
    /// The suite id (or template id): `suite_id` of `get_suite_token`, and the receive id of
    /// its pushes.
    pub suite_id: String,
    pub suite_secret: SecretString,
    pub suite_secret_source: SecretSource,
    /// The callback Token (the key of `msg_signature`).
    pub token: SecretString,
    pub token_source: SecretSource,
    /// The callback's 43-character EncodingAESKey.
    pub encoding_aes_key: SecretString,
    pub encoding_aes_key_source: SecretSource,
    /// The provider whose corpid WeCom's URL check encrypts its `echostr` for.
    pub provider: Option<String>,
    /// That provider's corpid, copied here so the suite needs nothing else to check it.
    pub provider_corpid: Option<String>,
    /// Which installed corps' tokens are kept warm.
    pub corp_refresh: AuthorizerRefresh,
}

impl WecomSuiteSettings {
    /// The label of its suite token's metrics, logs and readiness: `wecom:crm-suite`.
    pub fn metrics_label(&self) -> String {
        super::labels::wecom_suite_label(&self.name)
    }

    /// Whether `other` is the same suite with the same settings, secrets included (compared,
    /// never printed): a reload can leave it alone.
    pub fn same_as(&self, other: &WecomSuiteSettings) -> bool {
        self.name == other.name
            && self.kind == other.kind
            && self.suite_id == other.suite_id
            && self.provider == other.provider
            && self.provider_corpid == other.provider_corpid
            && self.corp_refresh == other.corp_refresh
            && self.suite_secret_source == other.suite_secret_source
            && self.token_source == other.token_source
            && self.encoding_aes_key_source == other.encoding_aes_key_source
            && self.suite_secret.expose_secret() == other.suite_secret.expose_secret()
            && self.token.expose_secret() == other.token.expose_secret()
            && self.encoding_aes_key.expose_secret() == other.encoding_aes_key.expose_secret()
    }
}

/// One WeCom service provider: the corpid and secret of `get_provider_token`.
#[derive(Debug, Clone)]
pub struct WecomProviderSettings {
    pub name: String,
    pub corpid: String,
    pub provider_secret: SecretString,
    pub provider_secret_source: SecretSource,
}

impl WecomProviderSettings {
    /// The label of its provider token: `wecom-provider:vendor`.
    pub fn metrics_label(&self) -> String {
        super::labels::wecom_provider_label(&self.name)
    }

    pub fn same_as(&self, other: &WecomProviderSettings) -> bool {
        self.name == other.name
            && self.corpid == other.corpid
            && self.provider_secret_source == other.provider_secret_source
            && self.provider_secret.expose_secret() == other.provider_secret.expose_secret()
    }
}

/// Whether two lists of suites are the same, entry by entry (a reload's comparison).
pub fn same_suites(a: &[WecomSuiteSettings], b: &[WecomSuiteSettings]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
}

/// Whether two lists of providers are the same, entry by entry.
pub fn same_providers(a: &[WecomProviderSettings], b: &[WecomProviderSettings]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
}

/// A secret of entry `key`, from exactly one of its three sources.
fn secret(
    key: &str,
    name: &str,
    input: SecretInput,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, SecretSource), ConfigError> {
    resolve_secret(&format!("{key}.{name}"), input, &[], lookup_env)
}

/// A required id (`suite_id`, `corpid`): trimmed, non-empty, and safe in a store key.
fn required_id(key: &str, field: &str, value: Option<String>) -> Result<String, ConfigError> {
    let v = value.unwrap_or_default().trim().to_string();
    if v.is_empty() {
        return Err(ConfigError::at(
            format!("{key}.{field}"),
            "missing or empty",
        ));
    }
    let safe = v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !safe {
        return Err(ConfigError::at(
            format!("{key}.{field}"),
            "must be 1-64 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(v)
}

/// Checks `[[wecom_providers]]`: unique names and corpids, one secret each.
pub(super) fn validate_providers(
    raw: Vec<RawWecomProvider>,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<WecomProviderSettings>, ConfigError> {
    let mut names = HashSet::new();
    let mut corpids: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let key = format!("wecom_providers[{i}]");
        unique_name(&key, &p.name, "WeCom provider", &mut names)?;
        let corpid = required_id(&key, "corpid", p.corpid)?;
        // Two entries for one provider would each mint a provider token for the same corp.
        if let Some(other) = corpids.insert(corpid.clone(), p.name.clone()) {
            return Err(ConfigError::at(
                format!("{key}.corpid"),
                format!("corpid `{corpid}` is already used by WeCom provider `{other}`"),
            ));
        }
        let input = SecretInput {
            inline: p.provider_secret,
            env: p.provider_secret_env,
            file: p.provider_secret_file,
        };
        let (s, source) = secret(&key, "provider_secret", input, lookup_env)?;
        out.push(WecomProviderSettings {
            name: p.name,
            corpid,
            provider_secret: SecretString::from(s),
            provider_secret_source: source,
        });
    }
    Ok(out)
}

/// Checks `[[wecom_suites]]` against each other, the (validated) providers they name, and the
/// platforms, whose store records they share a key space with.
pub(super) fn validate_suites(
    raw: Vec<RawWecomSuite>,
    providers: &[WecomProviderSettings],
    platforms: &[PlatformSettings],
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<WecomSuiteSettings>, ConfigError> {
    let mut names = HashSet::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let key = format!("wecom_suites[{i}]");
        unique_name(&key, &s.name, "WeCom suite", &mut names)?;
        // A suite's records live beside the platforms' under `wecom.{name}` (see
        // `store::wecom`): a platform of that name would share them.
        let namespace = crate::config::labels::wecom_store_namespace(&s.name);
        if platforms.iter().any(|p| p.name == namespace) {
            return Err(ConfigError::at(
                format!("{key}.name"),
                format!(
                    "platform `{namespace}` would share this suite's stored records; rename one"
                ),
            ));
        }
        let suite_id = required_id(&key, "suite_id", s.suite_id.clone())?;
        if let Some(other) = ids.insert(suite_id.clone(), s.name.clone()) {
            return Err(ConfigError::at(
                format!("{key}.suite_id"),
                format!("suite id `{suite_id}` is already used by WeCom suite `{other}`"),
            ));
        }
        out.push(suite(&key, s, suite_id, providers, lookup_env)?);
    }
    Ok(out)
}

/// The rest of suite `key` once its name and id are checked.
fn suite(
    key: &str,
    s: RawWecomSuite,
    suite_id: String,
    providers: &[WecomProviderSettings],
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<WecomSuiteSettings, ConfigError> {
    let kind = match s.kind.as_deref().unwrap_or("suite") {
        "suite" => SuiteKind::Suite,
        "template" => SuiteKind::Template,
        other => {
            return Err(ConfigError::at(
                format!("{key}.kind"),
                format!(
                    "unknown kind `{}`; expected \"suite\" or \"template\"",
                    other.chars().take(32).collect::<String>()
                ),
            ))
        }
    };
    let provider_corpid = match &s.provider {
        None => None,
        Some(name) => match providers.iter().find(|p| &p.name == name) {
            Some(p) => Some(p.corpid.clone()),
            None => {
                return Err(ConfigError::at(
                    format!("{key}.provider"),
                    format!("unknown WeCom provider `{name}`"),
                ))
            }
        },
    };
    let input = |inline, env, file| SecretInput { inline, env, file };
    let (suite_secret, suite_secret_source) = secret(
        key,
        "suite_secret",
        input(s.suite_secret, s.suite_secret_env, s.suite_secret_file),
        lookup_env,
    )?;
    let (token, token_source) = secret(
        key,
        "token",
        input(s.token, s.token_env, s.token_file),
        lookup_env,
    )?;
    check_message_token(&token).map_err(|m| ConfigError::at(format!("{key}.token"), m))?;
    let (aes, aes_source) = secret(
        key,
        "encoding_aes_key",
        input(
            s.encoding_aes_key,
            s.encoding_aes_key_env,
            s.encoding_aes_key_file,
        ),
        lookup_env,
    )?;
    check_encoding_aes_key(&aes)
        .map_err(|m| ConfigError::at(format!("{key}.encoding_aes_key"), m))?;
    let corp_refresh = authorizer_refresh(
        key,
        "corp_refresh",
        s.corp_refresh.as_deref(),
        s.active_window_secs,
    )?;
    Ok(WecomSuiteSettings {
        name: s.name,
        kind,
        suite_id,
        suite_secret: SecretString::from(suite_secret),
        suite_secret_source,
        token: SecretString::from(token),
        token_source,
        encoding_aes_key: SecretString::from(aes),
        encoding_aes_key_source: aes_source,
        provider: s.provider,
        provider_corpid,
        corp_refresh,
    })
}
