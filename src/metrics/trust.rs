//! The trust families: audit lines that could not be written, and requests refused by the
//! per-client rate limits or the brake on failed authentications.

use prometheus::{IntCounter, IntCounterVec, Registry};

use super::register::counter;

/// Why a client's request was refused before it reached its route.
pub const REJECTION_REASONS: [&str; 2] = ["rate_limited", "auth_failures"];

/// The `client` label of refusals that name no configured client (a remote address that keeps
/// failing to authenticate): one series, however many addresses.
pub const UNKNOWN_CLIENT: &str = "-";

pub(super) struct TrustFamilies {
    pub(super) audit_write_errors: IntCounter,
    pub(super) client_rejections: IntCounterVec,
}

impl TrustFamilies {
    pub(super) fn register(registry: &mut Registry) -> TrustFamilies {
        let audit_write_errors = counter(
            registry,
            "wxtoken_audit_write_errors_total",
            "Audit lines that could not be written (a full disk, a file that cannot be opened).",
            &[],
        )
        .with_label_values::<&str>(&[]);
        let client_rejections = counter(
            registry,
            "wxtoken_client_rejections_total",
            "Requests answered 429: over the client's rate limit, or from an address past its failed authentications.",
            &["client", "reason"],
        );
        client_rejections.with_label_values(&[UNKNOWN_CLIENT, "auth_failures"]);
        TrustFamilies {
            audit_write_errors,
            client_rejections,
        }
    }
}
