//! The message hub's entry point: a checked push in, taken once.
//!
//! CONTRACT (replaced by the delivery implementation): the receiving side calls only
//! [`Hub::take`] and reads [`Taken`].

use std::collections::HashSet;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::Inbound;

/// A passive reply being waited for: the reply-mode route's 200 body (XML or JSON, as the
/// source writes), or `None` when it did not answer one in time (WeChat then gets `success`).
pub type ReplyWait = BoxFuture<'static, Option<String>>;

/// What became of a push.
pub enum Taken {
    /// Persisted, with deliveries to every matching route; `reply` when a `mode = "reply"`
    /// route matched.
    New {
        id: String,
        reply: Option<ReplyWait>,
    },
    /// WeChat's retry of a push already taken (here or at another instance).
    Duplicate,
    /// No route matches: counted and kept in the bounded recent list, not an error.
    Unmatched,
}

/// Why a push was not taken: WeChat is answered 5xx and will retry.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error("the push could not be stored")]
    NotStored(#[source] anyhow::Error),
}

/// Takes pushes.
#[derive(Default)]
pub struct Hub {
    seen: Mutex<HashSet<String>>,
}

impl Hub {
    /// Takes one push: deduplicated, matched, persisted; returns once it is durable.
    pub async fn take(&self, inbound: Inbound) -> Result<Taken, TakeError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.insert(inbound.dedupe_key.clone()) {
            return Ok(Taken::Duplicate);
        }
        Ok(Taken::Unmatched)
    }
}
