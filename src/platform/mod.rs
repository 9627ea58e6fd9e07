//! The WeChat Open Platform (第三方平台) as a running service: one [`Platform`] per configured
//! platform, behind a small API with private fields. The push protocol it receives with is
//! not here: it is [`crate::push`], which a WeCom suite can use as well.
//!
//! Map of the modules:
//! - `runtime`: [`Platform`] itself, its start, and what its parts share.
//! - `receive`: a push to the event URL, from the envelope to `success` ([`Platform::receive`]).
//! - `component`: the component token: its source (the pushed verify ticket), the ticket, the
//!   tokens handed out (the facade accepts the one before the current one), pre-auth codes.
//! - `accounts`: the accounts of a credential family in memory (records, token and ticket
//!   actors, last requests), for the platform's authorizers and a WeCom suite's corps alike.
//! - `authorizers`: the authorized accounts: records, token and ticket actors (all, or only
//!   those asked for), the changes of their state.
//! - `authorizer_source`: an authorizer token's fetch with its refresh token, and what a
//!   refused refresh token means.
//! - `reconcile`: the records brought in line with WeChat's authorizer list.
//! - `codes` and `exchange`: authorization codes from the push (or the redirect) to the
//!   account: stored with the push, exchanged in the background one exchange per code,
//!   resumed after a crash by any instance.
//! - `background`: the code resumption, the `"active"` sweep and the reconciliations.
//! - `readiness`: the platform's line in `/readyz`.
//! - `messages`: its accounts' messages (their message URL) and its own events, to the hub.
//! - `release_check`: WeChat's release check (全网发布), answered for its test accounts.

/// What the component facade (and the gateway's mask) hands out in place of an authorized
/// account's refresh token, which never leaves wxtoken; the facade's `api_authorizer_token`
/// accepts it back.
pub const PLACEHOLDER_REFRESH_TOKEN: &str = "wxtoken-facade-placeholder-refresh-token";

mod accounts;
mod authorizer_source;
mod authorizers;
mod background;
mod codes;
mod component;
mod exchange;
mod messages;
mod readiness;
mod receive;
mod reconcile;
mod release_check;
mod runtime;

pub use accounts::{Account, AccountCounts, Accounts, Refusal};
pub use authorizers::{AuthorizerCounts, AuthorizerRefusal, AuthorizerUnavailable};
pub use background::{RECONCILE_INTERVAL, SWEEP_INTERVAL};
pub use codes::{ExchangedCodes, Exchanges};
pub use component::{ComponentTokenCheck, PreauthError, COMPONENT_DAILY_QUOTA};
pub use exchange::retry_exchange;
pub use messages::AccountAnswer;
pub use receive::{PushError, Receipt};
pub use reconcile::Reconciled;
pub use release_check::{ReleaseAnswer, TEST_ACCOUNTS};
pub use runtime::{Platform, Upstream};
