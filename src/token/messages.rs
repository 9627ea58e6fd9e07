//! The messages a `TokenActor` answers, one struct per operation.

use std::sync::Arc;

use actix::Message;

use super::{FailureInfo, TokenRecord};
use crate::status::InvalidationOutcome;

/// Asks for a valid token. Answered at once when one is held; otherwise waits (up to the
/// actor's wait limit) for a fetch to succeed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Arc<TokenRecord>, NoValidToken>")]
pub struct Get;

/// A business server reports that WeChat rejected `token` (40001, 42001, 40014...).
#[derive(Message)]
#[rtype(result = "Result<Invalidated, NoValidToken>")]
#[derive(Debug)]
pub struct Invalidate {
    /// Its `Debug` is a fingerprint: a report is never logged with the token.
    pub token: super::AccessToken,
}

/// The answer to [`Invalidate`].
#[derive(Debug, Clone)]
pub struct Invalidated {
    /// The token the caller should use from now on.
    pub record: Arc<TokenRecord>,
    /// True when `record` holds a different token from the one reported: a fetch made for this
    /// report (or one it joined), or an earlier one that had already replaced it. False means
    /// the caller gets the reported token back (too soon to refetch, or the fetch failed).
    pub refreshed: bool,
    pub outcome: InvalidationOutcome,
}

/// The shared store says the app's record changed (another instance refreshed): re-read it,
/// unless the actor already holds the generation announced.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StoreChanged {
    /// The generation written; `None` when unknown (after a reconnect, any record may have
    /// changed).
    pub generation: Option<u64>,
}

/// Stops the actor's context so its supervisor restarts it. For operators' drills and tests:
/// a restart must never interrupt service.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ForceRestart;

/// No valid token could be had within the wait limit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no valid token")]
pub struct NoValidToken {
    /// Why the last fetch failed, if one did.
    pub last_failure: Option<Arc<FailureInfo>>,
}

/// Sent by an app's token actor to its dependents (ticket actors) after its token changed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct TokenChanged {
    pub generation: u64,
}

/// What the fetch of a credential fetched by its own source needs has arrived (a verify
/// ticket, say): the actor tries now if it holds no valid token. Others ignore it.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct InputsChanged;

/// Registers a dependent to be told of every token change.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub actix::Recipient<TokenChanged>);

/// An admin asks to rotate the token so that a leaked copy dies.
#[derive(Debug, Message)]
#[rtype(result = "Result<Revoked, RevokeError>")]
pub struct Revoke;

/// The answer to [`Revoke`].
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The token that replaced the revoked one.
    pub record: Arc<TokenRecord>,
    /// The revoked token's fingerprint, for the audit log.
    pub old: Option<super::Fingerprint>,
    /// For the stable grant, when the second forced refresh (which kills the previous token
    /// for good) will run.
    pub second_rotation_in: Option<std::time::Duration>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RevokeError {
    #[error("this kind of app cannot rotate its token early: {0}")]
    Unsupported(&'static str),
    #[error("WeChat's limit on forced refreshes is reached (20 a day, 30 s apart); try later")]
    TooSoon,
    #[error("no new token within the wait limit")]
    NoNewToken(NoValidToken),
}

/// The app was removed from the configuration: stop for good.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Retire;

/// The app's settings changed (a new secret, quota or refresh policy): used from the next fetch.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateApp(
    pub Arc<super::spec::CredentialSpec>,
    pub crate::config::RefreshSettings,
);
