//! WeCom service providers (企业微信服务商) as running services: one [`Suite`] per configured
//! suite or customized-app template, and one [`Provider`] per provider. A suite is the Open
//! Platform's twin and is built on its rooms: the push protocol of [`crate::push`], the actors
//! and external sources of [`crate::token`], the platform store's durable records (through
//! [`crate::store::wecom`]), and the platform's code exchange with retries and per-code slots.
//!
//! Map of the modules:
//! - `runtime`: [`Suite`] itself (private fields), its start.
//! - `receive`: a callback, from the envelope to `success`, and WeCom's URL check.
//! - `ticket`: the suite ticket and the suite token's source (`get_suite_token`).
//! - `corps`: the installed corps: records, token actors (all, or only those asked for),
//!   state changes, the `"active"` sweep.
//! - `corp_source`: a corp token's fetch (`get_corp_token`, or `gettoken` for a template), and
//!   what a refused permanent code or suite token means.
//! - `exchange`: AuthCodes stored before the push is answered, exchanged in the background for
//!   permanent codes, resumed at start and every minute.
//! - `provider`: the provider token.
//! - `readiness`: the suite's line in `/readyz`.
//! - `scrape`: what `/metrics` reads of the suites and providers.

mod corp_source;
mod corps;
mod exchange;
mod provider;
mod readiness;
mod receive;
mod runtime;
pub mod scrape;
mod ticket;

pub use corps::{CorpRefusal, CorpUnavailable};
pub use provider::Provider;
pub use runtime::Suite;
pub use ticket::SUITE_TICKET_LIFE;

/// What the gateway puts in place of a corp's permanent code in a forwarded answer: the code
/// never leaves wxtoken.
pub const PLACEHOLDER_PERMANENT_CODE: &str = "WXTOKEN_HOLDS_THE_PERMANENT_CODE";
