//! Validation of `[[routes]]`: where WeChat's message pushes are delivered. Each route names
//! the sources and kinds of pushes it takes (`match`), the business server's URL, the key the
//! deliveries are signed with, and whether WeChat waits for its answer (`mode = "reply"`).
//!
//! A reload hands changed routes to the running message hub (see `reload`).

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::secrets::{resolve_secret, SecretInput, SecretSource};
use super::validate::unique_name;
use super::ConfigError;

/// Shortest signing key: 16 characters, so the HMAC is keyed by more than a guessable word.
pub const MIN_SIGNING_KEY_LEN: usize = 16;
/// Longest `reply_timeout_ms`: WeChat gives up on a passive reply after 5 s; 4.5 s leaves
/// wxtoken the time to encrypt the answer and send it.
pub const MAX_REPLY_TIMEOUT_MS: u64 = 4500;
/// `reply_timeout_ms` by default.
pub const DEFAULT_REPLY_TIMEOUT_MS: u64 = 3000;
/// `max_age_secs` by default: a day of retries.
pub const DEFAULT_MAX_AGE_SECS: u64 = 86_400;
/// Shortest `max_age_secs`: less than the first few backoff steps would make a delivery dead
/// after one or two attempts.
pub const MIN_MAX_AGE_SECS: u64 = 10;
/// Longest `max_age_secs`: 30 days; the backlog of a receiver down longer is an outage to
/// handle by hand (dead deliveries can be retried).
pub const MAX_MAX_AGE_SECS: u64 = 30 * 86_400;
/// `dead_retention_secs` by default: a week to look at a dead delivery and retry it.
pub const DEFAULT_DEAD_RETENTION_SECS: u64 = 7 * 86_400;
/// Shortest `dead_retention_secs`: a minute, the sweep's own pace.
pub const MIN_DEAD_RETENTION_SECS: u64 = 60;
/// Longest `dead_retention_secs`: a year; dead deliveries hold their pushes' content, which
/// is not kept forever.
pub const MAX_DEAD_RETENTION_SECS: u64 = 365 * 86_400;

/// One `[[routes]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: String,
    #[serde(rename = "match", default)]
    pub(super) matches: RawMatch,
    pub(super) url: Option<String>,
    pub(super) signing_key: Option<String>,
    pub(super) signing_key_env: Option<String>,
    pub(super) signing_key_file: Option<PathBuf>,
    /// `async` or `reply`; checked in validation so the error can list them.
    pub(super) mode: Option<String>,
    pub(super) reply_timeout_ms: Option<u64>,
    pub(super) max_age_secs: Option<u64>,
    pub(super) dead_retention_secs: Option<u64>,
}

/// A route's `match` table: every key given must hold (absent keys match anything).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub(super) apps: Option<Vec<String>>,
    pub(super) platforms: Option<Vec<String>>,
    pub(super) msg_types: Option<Vec<String>>,
    pub(super) events: Option<Vec<String>>,
    pub(super) info_types: Option<Vec<String>>,
}

/// Whether WeChat's answer waits for the route's receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMode {
    /// Delivered after WeChat is answered `success`.
    Async,
    /// The first attempt starts at once, and its 200 body (within `reply_timeout`) is the
    /// passive reply WeChat gets.
    Reply,
}

impl RouteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteMode::Async => "async",
            RouteMode::Reply => "reply",
        }
    }
}

/// What a route takes. `None` is "any"; the lists are as written (WeChat's values are
/// case-sensitive: `subscribe`, `CLICK`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    pub apps: Option<Vec<String>>,
    pub platforms: Option<Vec<String>>,
    pub msg_types: Option<Vec<String>>,
    pub events: Option<Vec<String>>,
    pub info_types: Option<Vec<String>>,
}

/// One validated route. `Debug` shows where the key came from, never the key.
#[derive(Clone)]
pub struct RouteSettings {
    pub name: String,
    pub matches: RouteMatch,
    pub url: String,
    pub signing_key: SecretString,
    pub signing_key_source: SecretSource,
    pub mode: RouteMode,
    /// Only meaningful with `mode = "reply"`.
    pub reply_timeout: Duration,
    /// Deliveries are retried for this long after the push was received, then dead.
    pub max_age: Duration,
    /// A dead delivery is kept this long (to be listed and retried), then forgotten.
    pub dead_retention: Duration,
}

impl fmt::Debug for RouteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteSettings")
            .field("name", &self.name)
            .field("matches", &self.matches)
            .field("url", &self.url)
            .field("signing_key", &self.signing_key_source)
            .field("mode", &self.mode)
            .field("reply_timeout", &self.reply_timeout)
            .field("max_age", &self.max_age)
            .field("dead_retention", &self.dead_retention)
            .finish()
    }
}

impl RouteSettings {
    /// A route of the unit tests: async, matching everything, to a closed loopback port.
    #[cfg(test)]
    pub(crate) fn sample(name: &str) -> RouteSettings {
        RouteSettings {
            name: name.into(),
            matches: RouteMatch::default(),
            url: "http://127.0.0.1:9/".into(),
            signing_key: "0123456789abcdef".to_string().into(),
            signing_key_source: SecretSource::Inline,
            mode: RouteMode::Async,
            reply_timeout: Duration::from_millis(DEFAULT_REPLY_TIMEOUT_MS),
            max_age: Duration::from_secs(60),
            dead_retention: Duration::from_secs(600),
        }
    }

    /// Whether `other` is the same route with the same settings, key included (compared here,
    /// never printed).
    pub fn same_as(&self, other: &RouteSettings) -> bool {
        use secrecy::ExposeSecret as _;
        self.name == other.name
            && self.matches == other.matches
            && self.url == other.url
            && self.signing_key.expose_secret() == other.signing_key.expose_secret()
            && self.mode == other.mode
            && self.reply_timeout == other.reply_timeout
            && self.max_age == other.max_age
            && self.dead_retention == other.dead_retention
    }
}

/// Checks `[[routes]]` against each other and against the names of the apps and platforms.
pub(super) fn validate_routes(
    raw: Vec<RawRoute>,
    app_names: &HashSet<&str>,
    platform_names: &HashSet<&str>,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<RouteSettings>, ConfigError> {
    let mut names = HashSet::new();
    let mut routes = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        unique_name(&key, &r.name, "route", &mut names)?;
        let matches = route_match(&key, r.matches, app_names, platform_names)?;
        let url = route_url(&format!("{key}.url"), r.url.as_deref())?;
        let (signing_key, source) = resolve_secret(
            &format!("{key}.signing_key"),
            SecretInput {
                inline: r.signing_key,
                env: r.signing_key_env,
                file: r.signing_key_file,
            },
            &[],
            lookup_env,
        )?;
        if signing_key.chars().count() < MIN_SIGNING_KEY_LEN {
            return Err(ConfigError::at(
                format!("{key}.signing_key"),
                format!(
                    "is shorter than {MIN_SIGNING_KEY_LEN} characters (the value is not shown); \
                     `wxtoken keygen --client` prints a good one"
                ),
            ));
        }
        let mode = match r.mode.as_deref() {
            None | Some("async") => RouteMode::Async,
            Some("reply") => RouteMode::Reply,
            Some(other) => {
                return Err(ConfigError::at(
                    format!("{key}.mode"),
                    format!("`{other}` is not a mode: use \"async\" or \"reply\""),
                ))
            }
        };
        let reply_ms = r.reply_timeout_ms.unwrap_or(DEFAULT_REPLY_TIMEOUT_MS);
        if !(1..=MAX_REPLY_TIMEOUT_MS).contains(&reply_ms) {
            return Err(ConfigError::at(
                format!("{key}.reply_timeout_ms"),
                format!(
                    "{reply_ms} is out of range: must be between 1 and {MAX_REPLY_TIMEOUT_MS} \
                     (WeChat waits 5 s for a passive reply)"
                ),
            ));
        }
        if r.reply_timeout_ms.is_some() && mode != RouteMode::Reply {
            return Err(ConfigError::at(
                format!("{key}.reply_timeout_ms"),
                "is only for mode = \"reply\"",
            ));
        }
        let max_age = super::validate::secs(
            &format!("{key}.max_age_secs"),
            r.max_age_secs.unwrap_or(DEFAULT_MAX_AGE_SECS),
            MIN_MAX_AGE_SECS,
            MAX_MAX_AGE_SECS,
        )?;
        let dead_retention = super::validate::secs(
            &format!("{key}.dead_retention_secs"),
            r.dead_retention_secs.unwrap_or(DEFAULT_DEAD_RETENTION_SECS),
            MIN_DEAD_RETENTION_SECS,
            MAX_DEAD_RETENTION_SECS,
        )?;
        routes.push(RouteSettings {
            name: r.name,
            matches,
            url,
            signing_key: SecretString::from(signing_key),
            signing_key_source: source,
            mode,
            reply_timeout: Duration::from_millis(reply_ms),
            max_age,
            dead_retention,
        });
    }
    Ok(routes)
}

/// The `match` table: names that exist, lists that are not empty (an empty list would match
/// nothing, surely not what was meant).
fn route_match(
    key: &str,
    raw: RawMatch,
    app_names: &HashSet<&str>,
    platform_names: &HashSet<&str>,
) -> Result<RouteMatch, ConfigError> {
    let list = |field: &str, v: Option<Vec<String>>| -> Result<Option<Vec<String>>, ConfigError> {
        match v {
            None => Ok(None),
            Some(v) if v.is_empty() => Err(ConfigError::at(
                format!("{key}.match.{field}"),
                "is empty and would match nothing; leave the key out to match any",
            )),
            Some(v) => {
                if let Some(bad) = v.iter().find(|s| s.trim().is_empty() || s.len() > 64) {
                    return Err(ConfigError::at(
                        format!("{key}.match.{field}"),
                        format!("`{bad}` is not a value WeChat sends"),
                    ));
                }
                Ok(Some(v))
            }
        }
    };
    let apps = list("apps", raw.apps)?;
    let platforms = list("platforms", raw.platforms)?;
    for a in apps.iter().flatten() {
        if !app_names.contains(a.as_str()) {
            return Err(ConfigError::at(
                format!("{key}.match.apps"),
                format!("unknown app `{a}`: no [[apps]] entry has that name"),
            ));
        }
    }
    for p in platforms.iter().flatten() {
        if !platform_names.contains(p.as_str()) {
            return Err(ConfigError::at(
                format!("{key}.match.platforms"),
                format!("unknown platform `{p}`: no [[platforms]] entry has that name"),
            ));
        }
    }
    Ok(RouteMatch {
        apps,
        platforms,
        msg_types: list("msg_types", raw.msg_types)?,
        events: list("events", raw.events)?,
        info_types: list("info_types", raw.info_types)?,
    })
}

/// The receiver's URL: `http://` or `https://`, with a host, without credentials (they would
/// be printed by `check-config` and logged); the path and query are kept as written.
fn route_url(key: &str, url: Option<&str>) -> Result<String, ConfigError> {
    let url = url.unwrap_or("").trim();
    if url.is_empty() {
        return Err(ConfigError::at(key, "missing or empty"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(ConfigError::at(
            key,
            format!("`{}` is not an http(s) URL", super::redact_url(url)),
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(ConfigError::at(
            key,
            "must not carry credentials (user:password@); the value is not shown",
        ));
    }
    if !(scheme == "http" || scheme == "https") || authority.is_empty() {
        return Err(ConfigError::at(
            key,
            format!("`{url}` is not an http(s) URL with a host"),
        ));
    }
    if url.contains(char::is_whitespace) || url.contains('#') {
        return Err(ConfigError::at(
            key,
            format!("`{url}` holds a space or a fragment"),
        ));
    }
    if url.parse::<awc::http::Uri>().is_err() {
        return Err(ConfigError::at(key, format!("`{url}` is not a valid URL")));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{server_tables, shop_and_billing};
    use super::*;

    const BASE: &str = concat!(
        server_tables!(),
        shop_and_billing!(),
        r#"
[[platforms]]
name = "saas"
component_appid = "wxc"
component_secret = "cs"
token = "tok123"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
"#
    );

    fn env(name: &str) -> Option<String> {
        match name {
            "CRM_HOOK_KEY" => Some("0123456789abcdef0123".into()),
            "SHOP_SECRET" => Some("shop-secret".into()),
            "BILLING_KEY" => Some("billing-key-0123456789abcdef0123".into()),
            "SHORT_KEY" => Some("short".into()),
            _ => None,
        }
    }

    fn load(routes: &str) -> Result<crate::config::Settings, String> {
        crate::config::Settings::from_toml(&format!("{BASE}\n{routes}"), &[], &env)
            .map_err(|e| e.to_string())
    }

    fn route(extra: &str) -> String {
        format!(
            "[[routes]]\nname = \"crm\"\nurl = \"https://crm.internal/wechat/inbox\"\nsigning_key_env = \"CRM_HOOK_KEY\"\n{extra}\n"
        )
    }

    #[test]
    fn the_issue_example_loads_with_its_defaults() {
        let s = load(&route(
            r#"match = { apps = ["shop"], platforms = ["saas"], msg_types = ["text", "event"], events = ["subscribe"] }
mode = "reply"
reply_timeout_ms = 3000"#,
        ))
        .expect("loads");
        let r = &s.routes[0];
        assert_eq!(r.name, "crm");
        assert_eq!(r.mode, RouteMode::Reply);
        assert_eq!(r.reply_timeout, Duration::from_millis(3000));
        assert_eq!(r.max_age, Duration::from_secs(DEFAULT_MAX_AGE_SECS));
        assert_eq!(
            r.dead_retention,
            Duration::from_secs(DEFAULT_DEAD_RETENTION_SECS)
        );
        assert_eq!(r.matches.apps.as_deref(), Some(&["shop".to_string()][..]));
        assert_eq!(r.matches.info_types, None);
        // Neither Debug nor check-config's view carries the key.
        let debug = format!("{s:?}");
        let redacted = s.redacted_toml();
        for shown in [&debug, &redacted] {
            assert!(!shown.contains("0123456789abcdef0123"), "{shown}");
        }
        assert!(
            redacted.contains("env CRM_HOOK_KEY (redacted)"),
            "{redacted}"
        );
        assert!(redacted.contains("[[routes]]"), "{redacted}");
    }

    #[test]
    fn bad_routes_are_refused_naming_the_key() {
        let cases = [
            (route(r#"match = { apps = ["nope"] }"#), "routes[0].match.apps: unknown app `nope`"),
            (route(r#"match = { platforms = ["nope"] }"#), "routes[0].match.platforms: unknown platform"),
            (route(r#"match = { msg_types = [] }"#), "routes[0].match.msg_types: is empty"),
            (route(r#"mode = "reply"
reply_timeout_ms = 4501"#), "routes[0].reply_timeout_ms: 4501 is out of range"),
            (route("reply_timeout_ms = 100"), "only for mode = \"reply\""),
            (route(r#"mode = "sync""#), "routes[0].mode: `sync` is not a mode"),
            (route("max_age_secs = 9"), "routes[0].max_age_secs: 9 is out of range"),
            (route("dead_retention_secs = 59"), "routes[0].dead_retention_secs: 59 is out of range"),
            (route("dead_retention_secs = 31536001"), "routes[0].dead_retention_secs: 31536001 is out"),
            (route("match = { colour = [\"x\"] }"), "unknown field `colour`"),
            (
                "[[routes]]\nname = \"crm\"\nurl = \"ftp://crm\"\nsigning_key_env = \"CRM_HOOK_KEY\"\n".into(),
                "routes[0].url: `ftp://crm` is not an http(s) URL",
            ),
            (
                "[[routes]]\nname = \"crm\"\nurl = \"https://u:pw@crm\"\nsigning_key_env = \"CRM_HOOK_KEY\"\n".into(),
                "must not carry credentials",
            ),
            (
                "[[routes]]\nname = \"crm\"\nsigning_key_env = \"CRM_HOOK_KEY\"\n".into(),
                "routes[0].url: missing",
            ),
            (
                "[[routes]]\nname = \"crm\"\nurl = \"https://crm\"\nsigning_key_env = \"SHORT_KEY\"\n".into(),
                "routes[0].signing_key: is shorter than 16",
            ),
            (
                "[[routes]]\nname = \"crm\"\nurl = \"https://crm\"\n".into(),
                "routes[0].signing_key: missing",
            ),
            (format!("{}{}", route(""), route("")), "routes[1].name: duplicate route name `crm`"),
        ];
        for (text, want) in cases {
            let err = load(&text).expect_err(&text);
            assert!(err.contains(want), "{text}\n=> {err}\nwanted {want}");
            assert!(
                !err.contains("0123456789abcdef0123") && !err.contains("short\""),
                "{err}"
            );
        }
    }

    #[test]
    fn a_signing_key_comes_from_a_file_too() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("key");
        std::fs::write(&path, "a-key-from-a-file-123\n").expect("written");
        let text = format!(
            "[[routes]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/in\"\nsigning_key_file = {:?}\n",
            path.display().to_string()
        );
        let s = load(&text).expect("loads");
        use secrecy::ExposeSecret as _;
        assert_eq!(
            s.routes[0].signing_key.expose_secret(),
            "a-key-from-a-file-123"
        );
    }
}
