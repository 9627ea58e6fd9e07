//! rustls client configuration for the calls to WeChat, and the extra CA files it trusts.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

/// Largest CA file read: a bundle of a few hundred PEM certificates fits; `/dev/zero` does not.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// Reads PEM certificates from `path` (a regular file of at most 1 MiB); at least one must be
/// there.
pub fn read_ca_file(path: &Path) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let pem = crate::files::read_bounded(path, MAX_CA_FILE)?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.into_owned()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// The rustls configuration for calls to WeChat: the web PKI roots plus `ca_file`.
pub fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots
                .add(cert)
                .with_context(|| format!("{}: certificate not usable as a root", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
