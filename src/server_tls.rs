//! HTTPS on wxtoken's own listener: the rustls server configuration, the certificate it serves
//! (swapped in place when a reload re-reads its files) and the set of files a reload re-reads.
//!
//! cert-manager and certbot renew the files in place and then expect a SIGHUP. [`ServerCert`]
//! holds the current `CertifiedKey` in an `ArcSwap`: every new handshake reads it, a reload
//! swaps it, and connections already open keep the session they negotiated, so nothing is
//! dropped. A new pair that does not load (unreadable, a key that is not the certificate's, an
//! expired certificate) is refused: the old pair stays, and the failure is logged and counted in
//! `wxtoken_tls_certificate_reloads_total{outcome="failed"}`.
//!
//! Client certificates are asked for but not required (`allow_unauthenticated`), so probes
//! without one still reach `/healthz`, `/readyz` and `/metrics`; a certificate that is presented
//! must chain to the CA and be valid now, or the handshake fails. Which routes need a client is
//! decided later, per request (by the running client set). The CA is re-read by a reload too
//! ([`crate::client_ca`]).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, IntGauge, Opts};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::client_ca::ClientCa;
use crate::config::ServerTls;
use crate::metrics::Metrics;
use crate::tls::{load_certified_key, provider};

/// The certificate the listener serves, replaced whole by [`ServerCert::reload`].
pub struct ServerCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
    reloads: Option<IntCounterVec>,
    expiry: Option<IntGauge>,
}

impl std::fmt::Debug for ServerCert {
    /// The files only: a `CertifiedKey` holds the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ServerCert {
    /// Loads the pair and registers its series in `metrics`.
    pub fn load(tls: &ServerTls, metrics: &Metrics) -> anyhow::Result<ServerCert> {
        let loaded = load_certified_key(&tls.cert_file, &tls.key_file)?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "wxtoken_tls_certificate_reloads_total",
                "Reloads of the listener's certificate files, by outcome (ok, failed: the old one kept)",
            ),
            &["outcome"],
        )
        .ok();
        let expiry = IntGauge::new(
            "wxtoken_tls_certificate_expiry_timestamp_seconds",
            "When the certificate the listener serves expires (Unix time)",
        )
        .ok();
        for c in [
            reloads
                .clone()
                .map(|c| Box::new(c) as Box<dyn prometheus::core::Collector>),
            expiry
                .clone()
                .map(|g| Box::new(g) as Box<dyn prometheus::core::Collector>),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(e) = metrics.registry().register(c) {
                tracing::warn!(error = %e, "TLS certificate series not registered");
            }
        }
        if let Some(r) = &reloads {
            for outcome in ["ok", "failed"] {
                r.with_label_values(&[outcome]);
            }
        }
        if let Some(g) = &expiry {
            g.set(loaded.not_after);
        }
        Ok(ServerCert {
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
            current: ArcSwap::new(loaded.key),
            reloads,
            expiry,
        })
    }

    /// Re-reads both files and serves the new pair to new connections; a pair that does not
    /// load leaves the current one in place. Logs and counts the outcome. Reads files: run it
    /// off the arbiters (`web::block`).
    pub fn reload(&self) -> anyhow::Result<()> {
        let outcome = load_certified_key(&self.cert_file, &self.key_file);
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        if let Some(r) = &self.reloads {
            r.with_label_values(&[label]).inc();
        }
        match outcome {
            Ok(loaded) => {
                self.current.store(loaded.key);
                if let Some(g) = &self.expiry {
                    g.set(loaded.not_after);
                }
                tracing::info!(cert_file = %self.cert_file.display(), not_after = loaded.not_after,
                    "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"),
                    "TLS certificate reload failed; the current certificate is kept");
                Err(e)
            }
        }
    }
}

/// The files of the listener's HTTPS that every reload re-reads: the certificate pair and,
/// with client certificates, their CA.
#[derive(Debug)]
pub struct TlsFiles {
    pub cert: Arc<ServerCert>,
    pub client_ca: Option<Arc<ClientCa>>,
}

impl TlsFiles {
    /// Re-reads each file set on its own: one that does not load keeps its running version,
    /// logged and counted, and does not stop the other. Reads files: run it off the arbiters
    /// (`web::block`).
    pub fn reload(&self) {
        let _ = self.cert.reload();
        if let Some(ca) = &self.client_ca {
            let _ = ca.reload();
        }
    }
}

/// The listener's rustls configuration: TLS 1.3 and 1.2, the certificate `files` resolves,
/// and client certificates checked against its CA when there is one.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let verifier: Arc<dyn ClientCertVerifier> = match &files.client_ca {
        Some(ca) => ca.clone(),
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS setup")?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(files.cert.clone());
    if let Some(ca) = &files.client_ca {
        config.session_storage = ca.sessions();
    }
    Ok(config)
}

/// What the listener needs for `[server]`: the files reloads re-read and the rustls
/// configuration with HTTPS, or nothing for plain HTTP. Plain HTTP on an address other hosts
/// can reach is logged as a warning that names the risk.
pub fn for_listener(
    server: &crate::config::ServerSettings,
    metrics: &Metrics,
) -> anyhow::Result<Option<(Arc<TlsFiles>, ServerConfig)>> {
    let Some(tls) = &server.tls else {
        if !server.listen.ip().is_loopback() {
            tracing::warn!(listen = %server.listen,
                "plain HTTP on a non-loopback address: client keys and access tokens cross the \
                 network unencrypted, readable and replayable by anyone on the path; set [server] \
                 tls_cert_file and tls_key_file, or put a TLS-terminating proxy in front");
        }
        return Ok(None);
    };
    let cert = Arc::new(ServerCert::load(tls, metrics).context("server TLS certificate")?);
    let client_ca = match &tls.client_ca_file {
        Some(ca) => Some(Arc::new(
            ClientCa::load(ca, metrics).context("server TLS client CA")?,
        )),
        None => None,
    };
    let files = Arc::new(TlsFiles { cert, client_ca });
    let config = server_config(&files).context("server TLS configuration")?;
    Ok(Some((files, config)))
}
