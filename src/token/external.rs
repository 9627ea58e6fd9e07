//! Credentials whose fetch lives outside the token module: the Open Platform's component token
//! (minted with the pushed verify ticket) and its authorizers' tokens (minted with their
//! refresh tokens and the component token). The actor schedules, coalesces, persists and
//! publishes them like any token; the source says when a fetch is possible and makes it.

use std::time::SystemTime;

use futures_util::future::LocalBoxFuture;

use crate::upstream::{Fetched, Priority, ProbeKind, Promotion, UpstreamError};

/// Where an external credential comes from.
pub trait ExternalSource: Send + Sync + 'static {
    /// The `endpoint` label of the upstream latency histogram.
    fn endpoint(&self) -> &'static str;

    /// Whether a fetch has what it needs now (a ticket, a valid component token, a refresh
    /// token that may be used). While it has not, the actor does not try; whoever supplies the
    /// missing piece sends the actor `InputsChanged` to try again.
    fn ready(&self, now: SystemTime) -> bool;

    /// Makes the call, on the actor's thread, waiting in the upstream pool with `priority`.
    fn fetch(
        &self,
        priority: Priority,
        promotion: Promotion,
    ) -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>>;

    /// Which call asks WeChat whether its token still works. Told apart by
    /// [`Self::endpoint`], so that the sources need not say: the component token takes the
    /// component probe; every other external credential (an authorizer's) is an account's
    /// access token. `None`: no call can tell (a WeCom suite token), and only wxtoken's own
    /// calls report it, with WeCom's word that it is dead: it is refetched without asking.
    fn probe_kind(&self) -> Option<ProbeKind> {
        if self.endpoint() == "component_token" {
            Some(ProbeKind::Component)
        } else {
            Some(ProbeKind::Account)
        }
    }

    /// Whether the token is scheduled as a WeCom app's: WeCom hands out the same token until
    /// it has expired, so it is asked for a second after the expiry, never earlier (a corp's
    /// or a provider's token).
    fn same_until_expiry(&self) -> bool {
        false
    }
}
