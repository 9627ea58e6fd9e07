//! The client certificate a TLS connection presented, read once when the connection starts
//! and kept in its extensions for every request on it.
//!
//! rustls has already checked the chain against `[server] tls_client_ca_file` and the validity
//! period during the handshake (a bad certificate never gets this far); what is read here is
//! only who it names: the subject's common names and the subject alternative names that
//! `[[clients]] cert_subject` / `cert_san` are matched against.

use std::any::Any;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use x509_parser::extensions::GeneralName;

use crate::config::CertMatch;

/// Who a verified client certificate names. `Debug` shows names only; a certificate holds no
/// secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Each CN of the subject (nearly always one).
    pub common_names: Vec<String>,
    /// DNS names.
    pub dns_names: Vec<String>,
    /// URIs (SPIFFE IDs among them) and e-mail addresses.
    pub other_names: Vec<String>,
}

impl PeerIdentity {
    /// The names in a DER certificate; `None` when it does not parse (rustls parsed it, so
    /// that does not happen for a certificate that passed the handshake).
    pub fn from_der(der: &[u8]) -> Option<PeerIdentity> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut id = PeerIdentity {
            common_names: cert
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
                .collect(),
            ..PeerIdentity::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => id.dns_names.push((*d).to_owned()),
                    GeneralName::URI(u) | GeneralName::RFC822Name(u) => {
                        id.other_names.push((*u).to_owned())
                    }
                    _ => {}
                }
            }
        }
        Some(id)
    }

    /// Whether this certificate is the one `m` describes: every name `m` sets must be among
    /// the certificate's.
    pub fn matches(&self, m: &CertMatch) -> bool {
        let subject_ok = m
            .subject
            .as_ref()
            .is_none_or(|s| self.common_names.iter().any(|cn| cn == s));
        let san_ok = m.san.as_ref().is_none_or(|s| {
            self.dns_names.iter().any(|d| d.eq_ignore_ascii_case(s))
                || self.other_names.iter().any(|o| o == s)
        });
        (m.subject.is_some() || m.san.is_some()) && subject_ok && san_ok
    }
}

/// `HttpServer::on_connect`: puts the verified client certificate's [`PeerIdentity`] into the
/// connection's extensions, where `HttpRequest::conn_data` finds it. A plain TCP connection,
/// or a TLS one without a client certificate, gets nothing.
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() else {
        return;
    };
    let (_, session) = tls.get_ref();
    let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) else {
        return;
    };
    if let Some(id) = PeerIdentity::from_der(leaf) {
        ext.insert(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(cn: &str, sans: &[&str]) -> Vec<u8> {
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn m(subject: Option<&str>, san: Option<&str>) -> CertMatch {
        CertMatch {
            subject: subject.map(str::to_owned),
            san: san.map(str::to_owned),
        }
    }

    #[test]
    fn subject_and_san_are_read_and_matched_exactly() {
        let id = PeerIdentity::from_der(&cert_for("billing", &["billing.shop.internal"])).unwrap();
        assert_eq!(id.common_names, ["billing"]);
        assert_eq!(id.dns_names, ["billing.shop.internal"]);
        assert!(id.matches(&m(Some("billing"), None)));
        assert!(id.matches(&m(None, Some("BILLING.shop.internal"))));
        assert!(id.matches(&m(Some("billing"), Some("billing.shop.internal"))));
        assert!(!id.matches(&m(Some("billin"), None)));
        assert!(!id.matches(&m(Some("billing"), Some("ops.shop.internal"))));
        assert!(!id.matches(&m(None, Some("billing"))), "a CN is not a SAN");
        assert!(!id.matches(&m(None, None)));
        assert!(PeerIdentity::from_der(b"not a certificate").is_none());
    }
}
