//! Trust on the wire: HTTPS with certificate reloads, and client certificates.

pub mod https;
pub mod mtls;
pub mod pki;
