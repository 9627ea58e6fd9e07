//! The messages a `TokenActor` answers, one struct per operation.

use std::fmt;
use std::sync::Arc;

use actix::Message;

use super::{FailureInfo, TokenRecord};
use crate::metrics::InvalidationOutcome;

/// Asks for a valid token. Answered at once when one is held; otherwise waits (up to the
/// actor's wait limit) for a fetch to succeed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Arc<TokenRecord>, NoValidToken>")]
pub struct Get;

/// A business server reports that WeChat rejected `token` (40001, 42001, 40014...).
#[derive(Message)]
#[rtype(result = "Result<Invalidated, NoValidToken>")]
pub struct Invalidate {
    pub token: String,
}

impl fmt::Debug for Invalidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidate")
            .field("token", &super::Fingerprint::of(&self.token))
            .finish()
    }
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

/// The shared store says the app's record changed (another instance refreshed): re-read it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StoreChanged;

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
