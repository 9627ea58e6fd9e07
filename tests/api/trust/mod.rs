//! Trust on the wire, in the process and at rest: HTTPS with certificate reloads, client
//! certificates, the client-key rule and `keygen`, the process's own hardening, rate limits,
//! what the stores hold sealed, and the audit trail (see docs/security.md).

mod at_rest;
mod audit;
pub mod hardening;
pub mod https;
pub mod mtls;
pub mod rate_limit;
