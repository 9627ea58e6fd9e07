//! The WeChat Open Platform (第三方平台): a running third-party platform. The push protocol it
//! receives with is not here: it is [`crate::push`], which a WeCom suite can use as well.
//!
//! Map of the modules:
//! - `codes` and `exchange`: authorization codes from the push (or the redirect) to the
//!   account: stored with the push, exchanged in the background one exchange per code,
//!   resumed after a crash by any instance.
//! - `component` and `authorizer`: the two token sources.
//! - `runtime`: a running platform: ticket, component actor, authorizers, reconciliation, sweep.

/// What the component facade (and the gateway's mask) hands out in place of an authorized
/// account's refresh token, which never leaves wxtoken; the facade's `api_authorizer_token`
/// accepts it back.
pub const PLACEHOLDER_REFRESH_TOKEN: &str = "wxtoken-facade-placeholder-refresh-token";

pub mod authorizer;
pub mod codes;
pub mod component;
pub mod exchange;
pub mod runtime;
