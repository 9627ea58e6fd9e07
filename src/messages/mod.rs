//! WeChat's message and event pushes after they are checked: each taken once (whatever the
//! retries and whichever instance of a fleet they reach), persisted before WeChat is answered,
//! and delivered at least once to every matching `[[routes]]` receiver.
//!
//! Map of the modules:
//! - `endpoint`: one message URL's side of WeChat's protocol: the URL check, a push opened in
//!   plaintext, compatible or safe mode (XML or JSON), a passive reply sealed.
//! - `inbound`: one checked push, its source and its dedupe key.
//! - `hub`: takes pushes (dedupe, match, persist), hands out passive replies, and serves the
//!   admin's listing and retry.
//! - `routing`: which routes a push goes to (the `match` rules).
//! - `route_set`: the running routes with their workers, swapped whole by a reload.
//! - `deliver`: the route workers: claims, attempts, outcomes.
//! - `schedule`: backoff and expiry of failed deliveries (pure).
//! - `signature`: the HMAC a receiver checks.
//! - `body`: the JSON a receiver gets.
//! - `recent`: the bounded list of pushes no route took.
//!
//! The records themselves are the store's (`crate::store::messages`).

mod body;
mod deliver;
pub mod endpoint;
pub mod hub;
pub mod inbound;
pub mod recent;
mod route_set;
pub mod routing;
pub mod schedule;
pub mod signature;

pub use deliver::IN_FLIGHT_PER_ROUTE;
pub use hub::{Hub, HubOptions, ReplyWait, TakeError, Taken};
pub use inbound::{Format, Inbound, Source, SourceKind};
pub use recent::Unmatched;
pub use route_set::RouteChanges;
