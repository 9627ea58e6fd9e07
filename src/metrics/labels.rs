//! The fixed label values of the metrics: what started a refresh, how an invalidation ended,
//! the route templates and the upstream error reasons that are not errcodes.

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
}

impl InvalidationOutcome {
    pub const ALL: [InvalidationOutcome; 5] = [
        InvalidationOutcome::Refreshed,
        InvalidationOutcome::Stale,
        InvalidationOutcome::TooSoon,
        InvalidationOutcome::Failed,
        InvalidationOutcome::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidationOutcome::Refreshed => "refreshed",
            InvalidationOutcome::Stale => "stale",
            InvalidationOutcome::TooSoon => "too_soon",
            InvalidationOutcome::Failed => "failed",
            InvalidationOutcome::Refused => "refused",
        }
    }
}

/// Upstream error reasons that are not errcodes; created at 0 so rate() has a baseline.
pub const FIXED_REASONS: [&str; 4] = ["timeout", "connect", "http", "decode"];

/// Operations on the token store (label `op` of `wxtoken_store_errors_total`).
pub const STORE_OPS: [&str; 3] = ["load", "save", "lock"];

/// Routes of the HTTP API as matched templates (label `route`); anything else is `unmatched`.
pub const ROUTES: [&str; 11] = [
    "/v1/apps/{name}/token",
    "/v1/apps/{name}/token/invalidate",
    "/v1/apps/{name}/ticket/{type}",
    "/v1/apps/{name}/jssdk/signature",
    "/v1/apps/{name}/revoke",
    "/v1/admin/reload",
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/healthz",
    "/readyz",
    "/metrics",
];
