//! A handle on one running credential (its actor's address and published status), and the
//! one way every reader gets its value or reports it rejected.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use super::messages::{Get, Invalidate, Invalidated, NoValidToken};
use super::{AccessToken, SharedStatus, TokenActor, TokenRecord};

/// One credential kept fresh by one actor.
#[derive(Clone)]
pub struct CredentialHandle {
    /// The supervisor keeps this address valid across restarts.
    pub addr: Addr<TokenActor>,
    /// What the actor last published.
    pub status: SharedStatus,
}

/// Longer than an actor's own wait limit, so the actor answers (with a token or the reason
/// there is none) before its caller gives up on the actor itself.
pub const ACTOR_GRACE: Duration = Duration::from_secs(2);

/// Why a credential's value could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The actor answered: no valid value within its wait limit, and why the last fetch failed.
    #[error("no valid token")]
    NoToken(NoValidToken),
    /// The actor did not answer within its wait limit and [`ACTOR_GRACE`]: never expected.
    #[error("the token service did not answer in time")]
    NoAnswer,
}

impl Unavailable {
    /// WeChat's errcode of the last failed fetch, when there was one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Unavailable::NoToken(e) => e.last_failure.as_ref().and_then(|f| f.errcode),
            Unavailable::NoAnswer => None,
        }
    }
}

/// The one read of a credential's value (see [`CredentialHandle::current`]).
pub(crate) async fn current_of(
    addr: &Addr<TokenActor>,
    status: &SharedStatus,
    wait: Duration,
) -> Result<Arc<TokenRecord>, Unavailable> {
    if let Some(rec) = status.load().valid_token(std::time::SystemTime::now()) {
        return Ok(rec.clone());
    }
    match addr.send(Get).timeout(wait + ACTOR_GRACE).await {
        Ok(answer) => answer.map_err(Unavailable::NoToken),
        Err(_) => Err(Unavailable::NoAnswer),
    }
}

impl CredentialHandle {
    /// The current value: the published one while valid (no message), else the actor's,
    /// which may wait up to `wait` (the actors' wait limit) for a fetch.
    pub async fn current(&self, wait: Duration) -> Result<Arc<TokenRecord>, Unavailable> {
        current_of(&self.addr, &self.status, wait).await
    }

    /// Reports `token` as rejected by WeChat; the answer says which token to use from now on
    /// (coalesced with every other report, confirmed with WeChat before a refetch).
    pub async fn report_rejected(
        &self,
        token: &AccessToken,
        wait: Duration,
    ) -> Result<Invalidated, Unavailable> {
        let report = Invalidate {
            token: token.clone(),
        };
        match self.addr.send(report).timeout(wait + ACTOR_GRACE).await {
            Ok(answer) => answer.map_err(Unavailable::NoToken),
            Err(_) => Err(Unavailable::NoAnswer),
        }
    }
}
