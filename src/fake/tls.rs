//! Turns the fake's PEM certificate chain and key into a rustls server configuration.

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::FakeTls;

fn invalid(what: &str, err: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("fake wechat TLS: {what}: {err}"),
    )
}

/// Builds the server config with the ring provider named explicitly: rustls is compiled without
/// default features, so there is no process-wide default provider to fall back on.
pub(crate) fn server_config(tls: &FakeTls) -> io::Result<ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate PEM", e))?;
    if certs.is_empty() {
        return Err(invalid("certificate PEM", "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|e| invalid("private key PEM", e))?;
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("certificate and key", e))
}
