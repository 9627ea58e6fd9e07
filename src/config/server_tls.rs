//! `[server]`'s HTTPS keys (`tls_cert_file`, `tls_key_file`, `tls_client_ca_file`) and
//! `client_auth`: what a listener serves and what authenticates a client.
//!
//! The files are read and checked here, so a wrong certificate, a key that does not belong to
//! it or an unusable CA fails `check-config` and start-up instead of the first handshake.

use std::path::PathBuf;

use super::raw::RawServer;
use super::ConfigError;

/// HTTPS on the listener (compared by value: a changed path needs a restart; the files
/// themselves are re-read on a reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain (PEM), the server's own certificate first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA (PEM) client certificates must chain to; `None`: no client certificates.
    pub client_ca_file: Option<PathBuf>,
}

/// `[server] client_auth`: what authenticates a client on the routes that need one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A Bearer key (or, on WeChat's paths, the key as `secret`); the default without a CA.
    #[default]
    Key,
    /// A client certificate that matches the client's `cert_subject` / `cert_san`.
    Cert,
    /// Either of them; the default with a CA.
    Either,
    /// Both, naming the same client.
    Both,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Key => "key",
            ClientAuth::Cert => "cert",
            ClientAuth::Either => "either",
            ClientAuth::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s {
            "key" => Some(ClientAuth::Key),
            "cert" => Some(ClientAuth::Cert),
            "either" => Some(ClientAuth::Either),
            "both" => Some(ClientAuth::Both),
            _ => None,
        }
    }

    /// Whether a client must have a key under this mode.
    pub fn needs_key(self) -> bool {
        matches!(self, ClientAuth::Key | ClientAuth::Both)
    }

    /// Whether a client must have a certificate match under this mode.
    pub fn needs_cert(self) -> bool {
        matches!(self, ClientAuth::Cert | ClientAuth::Both)
    }
}

/// Which client certificate identifies a client: its subject common name, a subject
/// alternative name, or both (then both must match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertMatch {
    /// Compared with each common name (CN) of the certificate's subject, exactly.
    pub subject: Option<String>,
    /// Compared with each DNS name (ignoring ASCII case), URI and e-mail address among the
    /// certificate's subject alternative names.
    pub san: Option<String>,
}

/// Longest `cert_subject` / `cert_san`: X.509 bounds a common name at 64 characters and real
/// SANs (SPIFFE IDs included) stay far below this.
const MAX_CERT_NAME: usize = 256;

impl CertMatch {
    /// The match of client `key` (`clients[0]`), if it names one.
    pub(super) fn parse(
        key: &str,
        subject: Option<String>,
        san: Option<String>,
    ) -> Result<Option<CertMatch>, ConfigError> {
        for (field, value) in [("cert_subject", &subject), ("cert_san", &san)] {
            if let Some(v) = value {
                if v.is_empty() || v.len() > MAX_CERT_NAME || v.chars().any(char::is_control) {
                    return Err(ConfigError::at(
                        format!("{key}.{field}"),
                        format!("must be 1-{MAX_CERT_NAME} characters without control characters"),
                    ));
                }
            }
        }
        Ok((subject.is_some() || san.is_some()).then_some(CertMatch { subject, san }))
    }
}

/// The HTTPS settings and the client authentication mode of `[server]`.
pub(super) fn validate_server_tls(
    raw: &RawServer,
) -> Result<(Option<ServerTls>, ClientAuth), ConfigError> {
    let tls = match (&raw.tls_cert_file, &raw.tls_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            crate::server_tls::load_certified_key(cert, key)
                .map_err(|e| ConfigError::at("server.tls_cert_file", format!("{e:#}")))?;
            Some(ServerTls {
                cert_file: cert.clone(),
                key_file: key.clone(),
                client_ca_file: None,
            })
        }
        (Some(_), None) => {
            return Err(ConfigError::at(
                "server.tls_key_file",
                "missing: tls_cert_file needs the private key that goes with it",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::at(
                "server.tls_cert_file",
                "missing: tls_key_file needs the certificate that goes with it",
            ))
        }
    };
    let tls = match (tls, &raw.tls_client_ca_file) {
        (tls, None) => tls,
        (None, Some(_)) => {
            return Err(ConfigError::at(
                "server.tls_client_ca_file",
                "needs tls_cert_file and tls_key_file: client certificates come with HTTPS",
            ))
        }
        (Some(tls), Some(ca)) => {
            crate::server_tls::client_verifier(ca)
                .map_err(|e| ConfigError::at("server.tls_client_ca_file", format!("{e:#}")))?;
            Some(ServerTls {
                client_ca_file: Some(ca.clone()),
                ..tls
            })
        }
    };
    let with_ca = tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
    let client_auth = match &raw.client_auth {
        None if with_ca => ClientAuth::Either,
        None => ClientAuth::Key,
        Some(s) => ClientAuth::parse(s).ok_or_else(|| {
            ConfigError::at(
                "server.client_auth",
                format!(
                    "`{}` is not one of \"key\", \"cert\", \"either\", \"both\"",
                    s.chars().take(32).collect::<String>()
                ),
            )
        })?,
    };
    if client_auth != ClientAuth::Key && !with_ca {
        return Err(ConfigError::at(
            "server.client_auth",
            format!(
                "\"{}\" needs tls_client_ca_file: without it no client certificate is asked for",
                client_auth.as_str()
            ),
        ));
    }
    Ok((tls, client_auth))
}
