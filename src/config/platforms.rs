//! Validation of `[[platforms]]`: each Open Platform third-party platform's name, component
//! appid, its three secrets (component secret, message-check Token, EncodingAESKey) and its
//! authorizer refresh policy.
//!
//! The secrets follow the apps' rules (exactly one of inline, `_env` and `_file`; inline
//! warns; files read bounded). The Token and the EncodingAESKey are also checked for the form
//! WeChat gives them, so a mistyped key fails at start-up instead of at the first pushed
//! event; those errors say what is wrong and never quote the value.

use std::collections::{HashMap, HashSet};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use secrecy::SecretString;

use super::raw::RawPlatform;
use super::secrets::{resolve_secret, SecretInput};
use super::validate::{secs, unique_name};
use super::{
    platform_label, AppKind, AppSettings, AuthorizerRefresh, ConfigError, PlatformSettings,
};

/// Characters of an EncodingAESKey: base64 of the 32-byte key without its one `=` of padding.
pub const ENCODING_AES_KEY_LEN: usize = 43;

/// `active_window_secs` by default: a day, so an account used once a day (a daily report, a
/// nightly job) stays warm, and one unused for longer costs one fetch on its next request.
pub const DEFAULT_ACTIVE_WINDOW_SECS: u64 = 86_400;
/// Shortest `active_window_secs`: an account whose clients ask every minute is active by any
/// measure; a shorter window would drop it between two requests and make each of them wait
/// for a fetch after every expiry, the cost `active` exists to avoid.
pub const MIN_ACTIVE_WINDOW_SECS: u64 = 60;
/// Longest `active_window_secs`: 30 days. An account nobody asked for in a month is idle; a
/// longer window keeps nearly every account warm, which is what `authorizer_refresh = "all"`
/// says plainly.
pub const MAX_ACTIVE_WINDOW_SECS: u64 = 30 * 86_400;

/// WeChat's message-check Token: 3 to 32 letters and digits.
const TOKEN_MIN: usize = 3;
const TOKEN_MAX: usize = 32;

/// The standard alphabet, lenient about the unused low bits of the last character: WeChat
/// generates EncodingAESKeys as 43 random characters, so those bits are rarely zero (its own
/// sample key ends in `G`), and the SDKs that decode them (Java's and Python's base64) ignore
/// them. A strict decoder would refuse most real keys.
const AES_KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// The AES-256 key an EncodingAESKey stands for: base64 of the key plus `=`. `None` unless it
/// is 43 characters of the base64 alphabet.
pub fn decode_encoding_aes_key(key: &str) -> Option<[u8; 32]> {
    if key.len() != ENCODING_AES_KEY_LEN {
        return None;
    }
    let bytes = AES_KEY_BASE64.decode(format!("{key}=")).ok()?;
    bytes.try_into().ok()
}

/// Why an EncodingAESKey is refused; the message never carries the key.
pub(super) fn check_encoding_aes_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if chars != ENCODING_AES_KEY_LEN {
        let hint = if chars == ENCODING_AES_KEY_LEN + 1 && key.ends_with('=') {
            " (leave out the trailing '=')"
        } else {
            ""
        };
        return Err(format!(
            "has {chars} characters, an EncodingAESKey has exactly {ENCODING_AES_KEY_LEN}{hint} \
             (the value is not shown)"
        ));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(
            "has a character outside the base64 alphabet (A-Z, a-z, 0-9, '+', '/') \
             (the value is not shown)"
                .into(),
        );
    }
    match decode_encoding_aes_key(key) {
        Some(_) => Ok(()),
        None => Err(
            "does not decode (with a trailing '=') to a 32-byte AES key (the value is not shown)"
                .into(),
        ),
    }
}

/// Why a message-check Token is refused; the message never carries the token.
pub(super) fn check_message_token(token: &str) -> Result<(), String> {
    let ok = (TOKEN_MIN..=TOKEN_MAX).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be {TOKEN_MIN} to {TOKEN_MAX} letters and digits, as WeChat allows for the \
             message-check Token (the value is not shown)"
        ))
    }
}

/// Every metrics label the apps use: their names and their tickets' labels.
fn app_labels(apps: &[AppSettings]) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    for a in apps {
        labels.insert(a.name.clone(), format!("app `{}`", a.name));
        for kind in &a.tickets {
            labels.insert(
                super::ticket_label(&a.name, *kind),
                format!("the {} ticket of app `{}`", kind.as_str(), a.name),
            );
        }
    }
    labels
}

/// Checks `[[platforms]]` against each other and against the (validated) apps: a platform's
/// metrics label and appid must not be an app's.
pub(super) fn validate_platforms(
    raw: Vec<RawPlatform>,
    apps: &[AppSettings],
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PlatformSettings>, ConfigError> {
    let labels = app_labels(apps);
    let app_appids: HashMap<&str, &str> = apps
        .iter()
        .filter(|a| matches!(a.kind, AppKind::Official(_)))
        .map(|a| (a.appid.as_str(), a.name.as_str()))
        .collect();
    let mut names = HashSet::new();
    // component appid -> the platform that has it.
    let mut appids: HashMap<String, String> = HashMap::new();
    let mut platforms = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let key = format!("platforms[{i}]");
        unique_name(&key, &p.name, "platform", &mut names)?;
        let label = platform_label(&p.name);
        if let Some(owner) = labels.get(&label) {
            return Err(ConfigError::at(
                format!("{key}.name"),
                format!(
                    "the component token's metrics label `{label}` is already the label of \
                     {owner}; rename the platform or the app"
                ),
            ));
        }
        let appid = component_appid(&key, &p, &mut appids, &app_appids)?;
        platforms.push(platform(&key, p, appid, lookup_env)?);
    }
    Ok(platforms)
}

/// The platform's `component_appid`: given, and neither another platform's nor an app's.
fn component_appid(
    key: &str,
    p: &RawPlatform,
    platform_appids: &mut HashMap<String, String>,
    app_appids: &HashMap<&str, &str>,
) -> Result<String, ConfigError> {
    let appid = p
        .component_appid
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_string();
    if appid.is_empty() {
        return Err(ConfigError::at(
            format!("{key}.component_appid"),
            "missing or empty",
        ));
    }
    // Two entries for one component would each mint a component token and invalidate
    // the other's, as two apps with one appid would.
    if let Some(other) = platform_appids.insert(appid.clone(), p.name.clone()) {
        return Err(ConfigError::at(
            format!("{key}.component_appid"),
            format!("appid `{appid}` is already used by platform `{other}`"),
        ));
    }
    // WeChat refuses `/cgi-bin/token` for a component appid (61024): such an app could
    // never fetch, and is a platform configured twice.
    if let Some(app) = app_appids.get(appid.as_str()) {
        return Err(ConfigError::at(
            format!("{key}.component_appid"),
            format!(
                "appid `{appid}` is also app `{app}`'s appid; a component account gets its \
                 token only as a platform (WeChat answers 61024 to /cgi-bin/token)"
            ),
        ));
    }
    Ok(appid)
}

/// The rest of platform `key` once its name and appid are checked: its three secrets, each in
/// the form WeChat gives it, and its refresh policy.
fn platform(
    key: &str,
    p: RawPlatform,
    component_appid: String,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<PlatformSettings, ConfigError> {
    let secret = |name: &str, inline, env, file| {
        resolve_secret(
            &format!("{key}.{name}"),
            SecretInput { inline, env, file },
            &[],
            lookup_env,
        )
    };
    let (component_secret, component_secret_source) = secret(
        "component_secret",
        p.component_secret,
        p.component_secret_env,
        p.component_secret_file,
    )?;
    let (token, token_source) = secret("token", p.token, p.token_env, p.token_file)?;
    check_message_token(&token).map_err(|m| ConfigError::at(format!("{key}.token"), m))?;
    let (aes_key, aes_key_source) = secret(
        "encoding_aes_key",
        p.encoding_aes_key,
        p.encoding_aes_key_env,
        p.encoding_aes_key_file,
    )?;
    check_encoding_aes_key(&aes_key)
        .map_err(|m| ConfigError::at(format!("{key}.encoding_aes_key"), m))?;
    let authorizer_refresh = authorizer_refresh(
        key,
        "authorizer_refresh",
        p.authorizer_refresh.as_deref(),
        p.active_window_secs,
    )?;
    Ok(PlatformSettings {
        name: p.name,
        component_appid,
        component_secret: SecretString::from(component_secret),
        component_secret_source,
        token: SecretString::from(token),
        token_source,
        encoding_aes_key: SecretString::from(aes_key),
        encoding_aes_key_source: aes_key_source,
        authorizer_refresh,
        release_check: p.release_check.unwrap_or(true),
    })
}

/// `authorizer_refresh` (`active` by default) and the window that only `active` takes; `field`
/// names the policy's key (a WeCom suite calls it `corp_refresh`).
pub(super) fn authorizer_refresh(
    key: &str,
    field: &str,
    policy: Option<&str>,
    window: Option<u64>,
) -> Result<AuthorizerRefresh, ConfigError> {
    match policy.unwrap_or("active") {
        "active" => Ok(AuthorizerRefresh::Active {
            window: secs(
                &format!("{key}.active_window_secs"),
                window.unwrap_or(DEFAULT_ACTIVE_WINDOW_SECS),
                MIN_ACTIVE_WINDOW_SECS,
                MAX_ACTIVE_WINDOW_SECS,
            )?,
        }),
        "all" if window.is_some() => Err(ConfigError::at(
            format!("{key}.active_window_secs"),
            format!("only used with {field} = \"active\""),
        )),
        "all" => Ok(AuthorizerRefresh::All),
        other => Err(ConfigError::at(
            format!("{key}.{field}"),
            format!(
                "unknown policy `{}`; expected \"active\" or \"all\"",
                other.chars().take(32).collect::<String>()
            ),
        )),
    }
}
