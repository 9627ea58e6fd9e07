//! What a token actor is told about the credential it keeps: the few settings it reads,
//! built by apps from their configuration and by a platform from its own.

use secrecy::SecretString;

use crate::config::{AppKind, AppSettings, Grant};

/// The settings a token actor reads. For an app's own access token (`Credential::AccessToken`)
/// all of them count: the kind picks the call and the refresh rules, the secret is sent, the
/// quota is the day's limit of that call. A ticket or a credential fetched by its own source
/// (the Open Platform's) reads only `appid`: its fetch is not the actor's to make.
/// `Debug` shows the secret as `[REDACTED]` (`SecretString`).
#[derive(Clone, Debug)]
pub struct CredentialSpec {
    /// The account: an AppID, a WeCom CorpID, an authorizer's appid (logs; an app's calls).
    pub appid: String,
    /// How an app's access token is fetched and refreshed.
    pub kind: AppKind,
    /// The AppSecret of an app's access token. `SecretString`: `Debug` never prints it.
    pub secret: SecretString,
    /// Daily limit of an app's token calls, for the quota metric and alert.
    pub daily_quota: u64,
}

impl CredentialSpec {
    /// A credential whose value the actor does not fetch with a secret of its own: a ticket,
    /// or one an external source fetches. No secret, no quota of an app's token call; the
    /// kind only says "refreshed ahead of expiry, no stable grant, rotatable", the rules an
    /// Open Platform token follows.
    pub fn sourced(appid: &str) -> CredentialSpec {
        CredentialSpec {
            appid: appid.to_string(),
            kind: AppKind::Official(Grant::ClientCredential),
            secret: SecretString::from(String::new()),
            daily_quota: 0,
        }
    }
}

impl From<&AppSettings> for CredentialSpec {
    fn from(app: &AppSettings) -> CredentialSpec {
        CredentialSpec {
            appid: app.appid.clone(),
            kind: app.kind,
            secret: app.secret.clone(),
            daily_quota: app.daily_quota,
        }
    }
}
