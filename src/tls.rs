//! rustls configurations and the PEM files they read: the client side of the calls to WeChat
//! (with the extra CA files it trusts) and of the `healthcheck` probe, the listener's
//! certificate pair and the verifier of client certificates. A leaf, so that `check-config`
//! checks those files with the very code the server loads them with.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;

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

/// The rustls configuration of `wxtoken healthcheck` for an `https://` probe URL: with
/// `ca_file`, the server's certificate is checked against it (and the URL's host); without,
/// it is not checked at all. A probe asks its own server, most often by `127.0.0.1`, which a
/// certificate for the service's name does not cover; it checks liveness, not identity, as
/// Kubernetes' HTTPS probes do. The handshake's signatures are still verified.
pub fn probe_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?;
    let mut config = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_ca_file(path)? {
                roots.add(cert).with_context(|| {
                    format!("{}: certificate not usable as a root", path.display())
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate, checking only the handshake's signatures: the probe's
/// verifier when no CA is given (see [`probe_config`]). Never used for calls that carry data.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Largest private key file read: a PEM key is a few kilobytes.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The crypto of every TLS connection wxtoken accepts (ring, as its client configurations).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain with its private key, checked to belong together and to be valid now.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// When the server's certificate expires, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// Reads the chain in `cert_file` (the server's certificate first) and the key in `key_file`.
/// Errors name the file and the problem, never the key's content.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> anyhow::Result<LoadedCert> {
    use rustls_pki_types::pem::PemObject as _;
    let chain = crate::tls::read_ca_file(cert_file)?;
    let pem = crate::files::read_bounded(key_file, MAX_KEY_FILE)?;
    // The parser's own error could quote part of the file: reduced to what went wrong.
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        anyhow::anyhow!(
            "{} holds no readable private key (PEM: PKCS#8, PKCS#1 or SEC1)",
            key_file.display()
        )
    })?;
    let not_after = {
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).map_err(|_| {
            anyhow::anyhow!(
                "{}: the first certificate does not parse",
                cert_file.display()
            )
        })?;
        let validity = leaf.validity();
        if !validity.is_valid() {
            anyhow::bail!(
                "{}: the certificate is not valid now (valid from {} to {})",
                cert_file.display(),
                validity.not_before,
                validity.not_after
            );
        }
        validity.not_after.timestamp()
    };
    let key = CertifiedKey::from_der(chain, key, &provider()).with_context(|| {
        format!(
            "{} and {} do not make a usable pair",
            cert_file.display(),
            key_file.display()
        )
    })?;
    Ok(LoadedCert {
        key: Arc::new(key),
        not_after,
    })
}

/// The verifier of client certificates: chains to the CA in `ca_file`, or no certificate at
/// all.
pub fn client_verifier(ca_file: &Path) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    client_verifier_for(ca_file, &read_ca_file(ca_file)?)
}

/// The verifier of [`client_verifier`] for the CA certificates `certs`, read from `ca_file`
/// (which errors name).
pub fn client_verifier_for(
    ca_file: &Path,
    certs: &[rustls_pki_types::CertificateDer<'static>],
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .with_context(|| format!("{}: certificate not usable as a CA", ca_file.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .with_context(|| format!("{}: no usable CA", ca_file.display()))
}
