//! The audit trail's family: lines that could not be written.

use prometheus::{IntCounter, Registry};

use super::register::counter;

/// `wxtoken_audit_write_errors_total`, registered in `registry`.
pub(super) fn register(registry: &mut Registry) -> IntCounter {
    counter(
        registry,
        "wxtoken_audit_write_errors_total",
        "Audit lines that could not be written (a full disk, a file that cannot be opened).",
        &[],
    )
    .with_label_values::<&str>(&[])
}
