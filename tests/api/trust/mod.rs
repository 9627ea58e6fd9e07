//! Trust on the wire, in the process and in the record: HTTPS with certificate reloads, client
//! certificates, the client-key rule and `keygen`, the process's own hardening, rate limits,
//! and the audit trail.

mod audit;
pub mod hardening;
pub mod https;
pub mod mtls;
pub mod pki;
pub mod rate_limit;
