//! WeChat's message and event pushes after they are checked: each taken once (whatever the
//! retries and whichever instance of a fleet they reach), persisted before WeChat is answered,
//! and delivered at least once to every matching `[[routes]]` receiver.
//!
//! Map of the modules:
//! - `endpoint`: one message URL's side of WeChat's protocol: the URL check, a push opened in
//!   plaintext, compatible or safe mode (XML or JSON), a passive reply sealed.
//! - `inbound`: one checked push, its source and its dedupe key.
//! - `hub`: takes pushes (dedupe, match, persist) and hands out passive replies.

pub mod endpoint;
pub mod hub;
pub mod inbound;

pub use hub::{Hub, ReplyWait, TakeError, Taken};
pub use inbound::{Format, Inbound, Source, SourceKind};
