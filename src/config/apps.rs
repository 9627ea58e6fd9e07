//! Validation of `[[apps]]`: each app's name, kind (official or WeCom) with its appid or
//! CorpID and grant, tickets, secret and daily quota.

use std::collections::{HashMap, HashSet};

use secrecy::SecretString;

use super::raw::RawApp;
use super::secrets::{resolve_secret, SecretInput};
use super::validate::unique_name;
use super::{AppKind, AppSettings, ConfigError, Grant, TicketKind};

/// Largest daily quota: WeChat's limits are in the thousands to a few hundred thousand.
const MAX_DAILY_QUOTA: u64 = 100_000_000;

/// Checks every `[[apps]]` entry, and that no name or official appid is used twice.
pub(super) fn validate_apps(
    raw: Vec<RawApp>,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<AppSettings>, ConfigError> {
    let mut apps = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    // appid -> the app that has it.
    let mut appids: HashMap<String, String> = HashMap::new();
    for (i, mut a) in raw.into_iter().enumerate() {
        let key = format!("apps[{i}]");
        unique_name(&key, &a.name, "app", &mut names)?;
        let (kind, appid) = identity(&key, &a)?;
        // Two entries fetching for one appid would invalidate each other's tokens: the very
        // problem this server exists to solve. (A WeCom CorpID has many apps.)
        if matches!(kind, AppKind::Official(_)) {
            if let Some(other) = appids.insert(appid.clone(), a.name.clone()) {
                return Err(ConfigError::at(
                    format!("{key}.appid"),
                    format!("appid `{appid}` is already used by app `{other}`"),
                ));
            }
        }
        let tickets = tickets(&key, &a.tickets)?;
        let messages = super::messages::app_messages(&key, &mut a, lookup_env)?;
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
            messages,
        });
    }
    Ok(apps)
}

/// The app's kind and its account id: the appid of an official app, the CorpID of a WeCom
/// one. Keys of the other kind are refused rather than ignored.
fn identity(key: &str, a: &RawApp) -> Result<(AppKind, String), ConfigError> {
    match a.kind.as_deref().unwrap_or("official") {
        "official" | "miniprogram" => official(key, a),
        "wecom" => wecom(key, a),
        other => Err(ConfigError::at(
            format!("{key}.kind"),
            format!("unknown kind `{other}`; expected \"official\" or \"wecom\""),
        )),
    }
}

fn official(key: &str, a: &RawApp) -> Result<(AppKind, String), ConfigError> {
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
                format!("unknown grant `{other}`; expected \"client_credential\" or \"stable\""),
            ))
        }
    };
    let appid = a.appid.as_deref().unwrap_or("").trim().to_string();
    if appid.is_empty() {
        return Err(ConfigError::at(format!("{key}.appid"), "missing or empty"));
    }
    Ok((AppKind::Official(grant), appid))
}

fn wecom(key: &str, a: &RawApp) -> Result<(AppKind, String), ConfigError> {
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
    Ok((AppKind::Wecom, corpid))
}

/// `tickets`: known types, each at most once.
fn tickets(key: &str, list: &[String]) -> Result<Vec<TicketKind>, ConfigError> {
    let mut tickets = Vec::with_capacity(list.len());
    for (j, t) in list.iter().enumerate() {
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
    Ok(tickets)
}
