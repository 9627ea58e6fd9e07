//! What a credential's actor publishes and keeps: its token record, its quota day, why its last
//! fetch failed, and what started or ended a refresh.
//!
//! These are plain data, below every room that handles them: the store persists records, the
//! metrics count outcomes and compute gauges from published statuses, the token actors produce
//! both. Keeping them here (and not in `token/`, which uses the store and the metrics) is what
//! lets data flow one way: `store` and `metrics` never import `token`.

mod outcome;
mod quota;
mod record;

use std::sync::Arc;
use std::time::SystemTime;

pub use outcome::{InvalidationOutcome, RefetchRefusal, Trigger};
pub use quota::{ForceBudget, QuotaUsage};
pub use record::TokenRecord;

/// Why the last fetch failed, as published to readiness checks, metrics and the 503 body.
#[derive(Clone, Debug)]
pub struct FailureInfo {
    /// The WeChat errcode, when the failure was an errcode answer.
    pub errcode: Option<i64>,
    /// Metric label: the errcode, or timeout/connect/http/decode.
    pub reason: String,
    pub class: crate::upstream::ErrorClass,
    /// A human sentence without secrets.
    pub message: String,
}

/// What an app's actor publishes after every change. Readers (the HTTP fast path, readiness,
/// metrics) load it without a message round trip; the actor is its only writer.
#[derive(Clone, Debug, Default)]
pub struct AppStatus {
    pub token: Option<Arc<TokenRecord>>,
    pub last_failure: Option<Arc<FailureInfo>>,
    /// Upstream token calls that WeChat answered today (a token or an errcode).
    pub quota: QuotaUsage,
    /// When the current token became (or becomes) due for its proactive refresh. It stays in
    /// the past while refreshing fails, which is what alerting looks for.
    pub refresh_due: Option<SystemTime>,
}

impl AppStatus {
    /// The token if it can be served at `now`.
    pub fn valid_token(&self, now: SystemTime) -> Option<&Arc<TokenRecord>> {
        self.token.as_ref().filter(|t| t.is_valid_at(now))
    }
}

/// The published status of one app, shared between its actor and the readers.
pub type SharedStatus = Arc<arc_swap::ArcSwap<AppStatus>>;
