//! Trust on the wire, in the process and at rest: HTTPS with certificate reloads, client
//! certificates and their CA's reloads, the client-key rule and `keygen`, the process's own
//! hardening, rate limits, what the stores hold sealed, and the audit trail (see
//! docs/security.md).

mod at_rest;
mod audit;
mod client_ca_reload;
pub mod hardening;
pub mod https;
pub mod mtls;
pub mod rate_limit;
