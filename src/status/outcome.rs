//! What happens to a credential, as the metrics count it: what started a refresh, how a
//! report of a rejected token ended, and why such a report got no refetch.
//!
//! The token actors decide these; each value is also a label of a fixed set (`as_str`, `ALL`).

/// What started a refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Scheduled,
    Invalidated,
    /// An admin revoked the token.
    Revoked,
}

impl Trigger {
    pub const ALL: [Trigger; 4] = [
        Trigger::Startup,
        Trigger::Scheduled,
        Trigger::Invalidated,
        Trigger::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Scheduled => "scheduled",
            Trigger::Invalidated => "invalidated",
            Trigger::Revoked => "revoked",
        }
    }
}

/// How an invalidation request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidationOutcome {
    /// The reported token was current; a new one was fetched and returned.
    Refreshed,
    /// The reported token was already replaced; the current one was returned, no fetch.
    Stale,
    /// The reported token was fetched less than `min_interval` ago; returned as is, no fetch.
    TooSoon,
    /// No new token within the wait limit; the still-valid one (or 503) was returned.
    Failed,
    /// Stable grant: WeChat's limits on forced refreshes were used up; returned as is.
    Refused,
    /// The reported token was young, and WeChat, asked, still accepts it; returned as is.
    Alive,
    /// The credential's early refetches for reports in the last hour reached
    /// `refresh.reported_refetches_per_hour`; returned as is.
    Capped,
}

impl InvalidationOutcome {
    pub const ALL: [InvalidationOutcome; 7] = [
        InvalidationOutcome::Refreshed,
        InvalidationOutcome::Stale,
        InvalidationOutcome::TooSoon,
        InvalidationOutcome::Failed,
        InvalidationOutcome::Refused,
        InvalidationOutcome::Alive,
        InvalidationOutcome::Capped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidationOutcome::Refreshed => "refreshed",
            InvalidationOutcome::Stale => "stale",
            InvalidationOutcome::TooSoon => "too_soon",
            InvalidationOutcome::Failed => "failed",
            InvalidationOutcome::Refused => "refused",
            InvalidationOutcome::Alive => "alive",
            InvalidationOutcome::Capped => "capped",
        }
    }
}

/// Why a report of the current token did not get the refetch it asked for (label `reason` of
/// `wxtoken_refetches_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefetchRefusal {
    /// WeChat, asked with a cheap call, still accepts the token: the caller's call failed for
    /// another reason (the token sent in the wrong parameter, to the wrong account...).
    TokenAlive,
    /// `refresh.reported_refetches_per_hour` early refetches were made in the last hour.
    HourlyCap,
    /// WeChat could not be asked (network, timeout, another errcode): nothing is refetched
    /// on an unconfirmed report.
    ProbeFailed,
}

impl RefetchRefusal {
    pub const ALL: [RefetchRefusal; 3] = [
        RefetchRefusal::TokenAlive,
        RefetchRefusal::HourlyCap,
        RefetchRefusal::ProbeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefetchRefusal::TokenAlive => "token_alive",
            RefetchRefusal::HourlyCap => "hourly_cap",
            RefetchRefusal::ProbeFailed => "probe_failed",
        }
    }

    /// How the invalidation it answered ends, for `wxtoken_invalidations_total`.
    pub fn outcome(self) -> InvalidationOutcome {
        match self {
            RefetchRefusal::TokenAlive => InvalidationOutcome::Alive,
            RefetchRefusal::HourlyCap => InvalidationOutcome::Capped,
            RefetchRefusal::ProbeFailed => InvalidationOutcome::Failed,
        }
    }
}
