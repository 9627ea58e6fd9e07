//! Validation of `[[clients]]`: each client's name, its key (kept only as a SHA-256 digest)
//! and its certificate match, as `[server] client_auth` requires them, and the apps and
//! platforms it may use, which must exist.

use std::collections::HashSet;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::raw::RawClient;
use super::secrets::{resolve_secret, SecretInput};
use super::validate::unique_name;
use super::{
    key_digest, AppScope, CertMatch, ClientAuth, ClientRate, ClientSettings, ConfigError,
    SecretSource,
};

/// Highest `rate_per_second`: far above what one instance serves a single client.
const MAX_RATE_PER_SECOND: u64 = 100_000;
/// Largest `burst`: ten seconds at the highest rate.
const MAX_BURST: u64 = 1_000_000;

/// Shortest client key accepted: guessable keys are refused, not warned about.
const MIN_KEY_LEN: usize = 16;

/// Whether `b` may appear in a client key: RFC 3986's unreserved characters. SDKs put the key
/// into a URL (`/cgi-bin/token?secret=KEY`) without encoding it, so a `+`, `/` or `=` (as
/// `openssl rand -base64` prints) reaches wxtoken changed and the key no longer matches.
fn url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The names clients may list: the configured apps and platforms (from the other sections).
pub(super) struct Known<'a> {
    pub(super) app: &'a dyn Fn(&str) -> bool,
    pub(super) platform: &'a dyn Fn(&str) -> bool,
    pub(super) wecom_suite: &'a dyn Fn(&str) -> bool,
    pub(super) wecom_provider: &'a dyn Fn(&str) -> bool,
}

/// Checks every `[[clients]]` entry (at least one), and that no name or key is used twice.
pub(super) fn validate_clients(
    raw: Vec<RawClient>,
    known: &Known<'_>,
    auth: ClientAuth,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ClientSettings>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::at(
            "clients",
            "no [[clients]] configured: nobody could read a token",
        ));
    }
    let mut clients = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    let mut digests = HashSet::new();
    let mut certs = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let key = format!("clients[{i}]");
        unique_name(&key, &c.name, "client", &mut names)?;
        let input = KeyInput {
            inline: c.key,
            env: c.key_env,
            file: c.key_file,
            sha256: c.key_sha256,
        };
        let cert = CertMatch::parse(&key, c.cert_subject, c.cert_san)?;
        let credentials = check_credentials(&key, auth, &input, cert.as_ref())?;
        let (digest, source) = match credentials {
            true => {
                let (digest, source) = client_key(&key, input, lookup_env)?;
                (Some(digest), Some(source))
            }
            false => (None, None),
        };
        if let Some(digest) = digest {
            if !digests.insert(digest) {
                return Err(ConfigError::at(
                    format!("{key}.key"),
                    "the same key is already used by another client",
                ));
            }
        }
        if let Some(cert) = &cert {
            if certs.contains(cert) {
                return Err(ConfigError::at(
                    format!("{key}.cert_subject"),
                    "the same certificate match is already used by another client",
                ));
            }
            certs.push(cert.clone());
        }
        if c.apps.is_none()
            && c.platforms.is_none()
            && c.wecom_suites.is_none()
            && c.wecom_providers.is_none()
        {
            return Err(ConfigError::at(
                format!("{key}.apps"),
                "missing: list app names or [\"*\"] in apps, platform names or [\"*\"] in platforms, or both \
                 (or WeCom suites and providers in wecom_suites and wecom_providers)",
            ));
        }
        let rate = client_rate(&key, c.rate_per_second, c.burst)?;
        let apps = scope(&key, "apps", "app", c.apps, known.app)?;
        let platforms = scope(&key, "platforms", "platform", c.platforms, known.platform)?;
        let wecom_suites = scope(
            &key,
            "wecom_suites",
            "WeCom suite",
            c.wecom_suites,
            known.wecom_suite,
        )?;
        let wecom_providers = scope(
            &key,
            "wecom_providers",
            "WeCom provider",
            c.wecom_providers,
            known.wecom_provider,
        )?;
        clients.push(ClientSettings {
            name: c.name,
            key_sha256: digest,
            key_source: source,
            cert,
            rate,
            apps,
            platforms,
            wecom_suites,
            wecom_providers,
            admin: c.admin,
            proxy: c.proxy,
        });
    }
    Ok(clients)
}

/// Whether client `key` has what `auth` requires (a key, a certificate match, or one of them)
/// and nothing it cannot use; `true` when it has a key to read.
fn check_credentials(
    key: &str,
    auth: ClientAuth,
    input: &KeyInput,
    cert: Option<&CertMatch>,
) -> Result<bool, ConfigError> {
    let has_key = input.inline.is_some()
        || input.env.is_some()
        || input.file.is_some()
        || input.sha256.is_some();
    if cert.is_some() && auth == ClientAuth::Key {
        return Err(ConfigError::at(
            format!("{key}.cert_subject"),
            "cert_subject and cert_san need [server] tls_client_ca_file (and client_auth other than \"key\")",
        ));
    }
    if auth.needs_key() && !has_key {
        return Err(ConfigError::at(
            format!("{key}.key"),
            format!(
                "missing: [server] client_auth = \"{}\" needs a key (key, key_env, key_file or key_sha256)",
                auth.as_str()
            ),
        ));
    }
    if auth.needs_cert() && cert.is_none() {
        return Err(ConfigError::at(
            format!("{key}.cert_subject"),
            format!(
                "missing: [server] client_auth = \"{}\" needs cert_subject or cert_san",
                auth.as_str()
            ),
        ));
    }
    if !has_key && cert.is_none() {
        return Err(ConfigError::at(
            format!("{key}.key"),
            "missing: a key (key, key_env, key_file or key_sha256), or cert_subject / cert_san",
        ));
    }
    Ok(has_key)
}

/// Client `key`'s token bucket: `rate_per_second` (1 to 100,000) and `burst` (1 to 1,000,000,
/// at least the rate; the rate when absent). A `burst` alone is refused.
fn client_rate(
    key: &str,
    per_second: Option<u64>,
    burst: Option<u64>,
) -> Result<Option<ClientRate>, ConfigError> {
    use super::validate::count;
    let Some(per_second) = per_second else {
        if burst.is_some() {
            return Err(ConfigError::at(
                format!("{key}.burst"),
                "needs rate_per_second: a burst is the size of the rate's bucket",
            ));
        }
        return Ok(None);
    };
    let per_second = count(
        &format!("{key}.rate_per_second"),
        per_second,
        1,
        MAX_RATE_PER_SECOND,
    )?;
    let burst = count(
        &format!("{key}.burst"),
        burst.unwrap_or(per_second),
        per_second,
        MAX_BURST,
    )?;
    // Both within 1..=1,000,000: they fit, and are not zero.
    let nz = |n: u64| {
        std::num::NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX))
            .unwrap_or(std::num::NonZeroU32::MIN)
    };
    Ok(Some(ClientRate {
        per_second: nz(per_second),
        burst: nz(burst),
    }))
}

/// The four exclusive ways a client key may be given.
struct KeyInput {
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    sha256: Option<String>,
}

/// The digest of client `key`'s key and where it came from: a `key_sha256` as given, any other
/// source hashed once its length is checked.
fn client_key(
    key: &str,
    input: KeyInput,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<([u8; 32], SecretSource), ConfigError> {
    match input {
        KeyInput {
            inline: None,
            env: None,
            file: None,
            sha256: Some(hexd),
        } => {
            let mut d = [0u8; 32];
            hex::decode_to_slice(hexd.trim(), &mut d).map_err(|_| {
                ConfigError::at(
                    format!("{key}.key_sha256"),
                    "must be 64 hex digits (sha-256 of the key)",
                )
            })?;
            Ok((d, SecretSource::Sha256))
        }
        KeyInput {
            inline,
            env,
            file,
            sha256: None,
        } => {
            let (k, src) = resolve_secret(
                &format!("{key}.key"),
                SecretInput { inline, env, file },
                &[&format!("{key}.key_sha256")],
                lookup_env,
            )?;
            if k.len() < MIN_KEY_LEN {
                return Err(ConfigError::at(
                    format!("{key}.key"),
                    "too short: use at least 16 characters (32 random bytes recommended)",
                ));
            }
            if !k.bytes().all(url_safe) {
                // Which character is not said: it is part of a secret.
                return Err(ConfigError::at(
                    format!("{key}.key"),
                    "holds a character outside A-Z a-z 0-9 - . _ ~ : SDKs put the key into a URL \
                     without encoding it, so WeChat's clients would send a different key \
                     (`wxtoken keygen --client` prints a good one)",
                ));
            }
            let k = SecretString::from(k);
            Ok((key_digest(k.expose_secret()), src))
        }
        _ => Err(ConfigError::at(
            format!("{key}.key"),
            format!("set only one of {key}.key, {key}.key_env, {key}.key_file, {key}.key_sha256"),
        )),
    }
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
