//! Trust on the wire and in the process: HTTPS with certificate reloads, client certificates,
//! the client-key rule and `keygen`, and the process's own hardening.

pub mod hardening;
pub mod https;
pub mod mtls;
pub mod pki;
pub mod rate_limit;
