//! The CA client certificates are checked against (`[server] tls_client_ca_file`), re-read in
//! place by a reload so that rotating it needs no restart.
//!
//! rustls takes one client-certificate verifier for the life of a `ServerConfig`. [`ClientCa`]
//! is that verifier: it hands every call to the `WebPkiClientVerifier` built from the file's
//! content (`crate::tls::client_verifier_for`, so `allow_unauthenticated` and every other rule
//! stay as they are), held in an `ArcSwap`. A reload builds a new one and swaps it: new
//! handshakes are checked against the new CA at once, connections already open keep the check
//! they passed. A file that does not load (unreadable, no certificate, not PEM, over 1 MiB, no
//! usable CA) is refused: the old CA stays, and the failure is logged and counted in
//! `wxtoken_tls_client_ca_reloads_total{outcome="failed"}`.
//!
//! Two things outside the verifier's checks need care:
//! - rustls asks for the CA names it sends clients as hints (`root_hint_subjects`) as a slice
//!   borrowed from the verifier, for as long as the verifier lives. A slice of a verifier that a
//!   later reload dropped would dangle, so every distinct CA set loaded stays in an append-only
//!   list ([`Loaded`]) and the hints are read from the current one's entry there. The list grows
//!   only when the file's certificates differ from all loaded before: a reload of the same file
//!   reuses its entry.
//! - rustls does not ask the verifier again when a client resumes a session, so a client of a
//!   CA that was just removed could come back on a session stored before. The listener's session
//!   cache ([`Sessions`]) is therefore emptied whenever a reload changes the CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, Opts};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::metrics::Metrics;
use crate::tls::{client_verifier_for, read_ca_file};

/// Sessions the listener keeps for resumption: rustls' own default.
const SESSIONS: usize = 256;

/// The verifier of client certificates, re-read from `ca_file` by [`ClientCa::reload`].
pub struct ClientCa {
    ca_file: PathBuf,
    /// What new handshakes are checked with.
    current: ArcSwap<Current>,
    /// Every distinct CA set loaded, the current one among them (see the module's comment).
    loaded: Loaded,
    sessions: Arc<Sessions>,
    reloads: Option<IntCounterVec>,
}

/// The verifier in use and where its entry is in [`ClientCa::loaded`], swapped together.
struct Current {
    verifier: Arc<dyn ClientCertVerifier>,
    index: usize,
}

/// One CA set loaded in this process's life (the certificates and the verifier built from
/// them), and the sets loaded after it. Append-only: an entry, once there, lives as long as
/// the [`ClientCa`], so a slice borrowed from its verifier does too.
struct Loaded {
    certs: Vec<CertificateDer<'static>>,
    verifier: Arc<dyn ClientCertVerifier>,
    next: OnceLock<Box<Loaded>>,
}

impl Loaded {
    fn new(certs: Vec<CertificateDer<'static>>, verifier: Arc<dyn ClientCertVerifier>) -> Self {
        Loaded {
            certs,
            verifier,
            next: OnceLock::new(),
        }
    }

    /// The entry at `index` (0 is this one); the last one if the list is shorter.
    fn at(&self, index: usize) -> &Loaded {
        let mut entry = self;
        for _ in 0..index {
            match entry.next.get() {
                Some(next) => entry = next,
                None => break,
            }
        }
        entry
    }

    /// The index of the entry holding `certs` and the entry, if one does.
    fn find(&self, certs: &[CertificateDer<'static>]) -> Option<(usize, &Loaded)> {
        let mut entry = self;
        let mut index = 0;
        loop {
            if entry.certs == certs {
                return Some((index, entry));
            }
            entry = entry.next.get()?;
            index += 1;
        }
    }

    /// Appends `new` at the end; its index.
    fn push(&self, new: Loaded) -> usize {
        let mut entry = self;
        let mut index = 0;
        let mut new = Box::new(new);
        loop {
            match entry.next.get() {
                Some(next) => {
                    entry = next;
                    index += 1;
                }
                None => match entry.next.set(new) {
                    Ok(()) => return index + 1,
                    // Another reload appended first: walk on. Reloads run one at a time, and
                    // two at once could at worst add the same set twice.
                    Err(back) => new = back,
                },
            }
        }
    }
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl ClientCa {
    /// Loads the CA in `ca_file` and registers its series in `metrics`.
    pub fn load(ca_file: &Path, metrics: &Metrics) -> anyhow::Result<ClientCa> {
        let certs = read_ca_file(ca_file)?;
        let verifier = client_verifier_for(ca_file, &certs)?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "wxtoken_tls_client_ca_reloads_total",
                "Reloads of the CA file client certificates are checked against, by outcome (ok, failed: the old CA kept)",
            ),
            &["outcome"],
        )
        .ok();
        if let Some(r) = &reloads {
            if let Err(e) = metrics.registry().register(Box::new(r.clone())) {
                tracing::warn!(error = %e, "TLS client CA series not registered");
            }
            for outcome in ["ok", "failed"] {
                r.with_label_values(&[outcome]);
            }
        }
        Ok(ClientCa {
            ca_file: ca_file.to_path_buf(),
            current: ArcSwap::from_pointee(Current {
                verifier: verifier.clone(),
                index: 0,
            }),
            loaded: Loaded::new(certs, verifier),
            sessions: Arc::new(Sessions::new()),
            reloads,
        })
    }

    /// The session cache the listener must use with this CA, so that a changed CA also ends
    /// the resumption of sessions checked against the old one.
    pub fn sessions(&self) -> Arc<dyn StoresServerSessions> {
        self.sessions.clone()
    }

    /// Re-reads the file and checks new handshakes against it; a file that does not load
    /// leaves the current CA in place. Logs and counts the outcome. Reads a file: run it off
    /// the arbiters (`web::block`).
    pub fn reload(&self) -> anyhow::Result<()> {
        let outcome = read_ca_file(&self.ca_file).and_then(|certs| {
            // The same certificates as a set loaded before: its verifier, built from them.
            if let Some((index, entry)) = self.loaded.find(&certs) {
                return Ok((index, entry.verifier.clone()));
            }
            let verifier = client_verifier_for(&self.ca_file, &certs)?;
            let index = self.loaded.push(Loaded::new(certs, verifier.clone()));
            Ok((index, verifier))
        });
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        if let Some(r) = &self.reloads {
            r.with_label_values(&[label]).inc();
        }
        match outcome {
            Ok((index, verifier)) => {
                let changed = index != self.current.load().index;
                if changed {
                    self.current.store(Arc::new(Current { verifier, index }));
                    // After the swap: a handshake that was checked against the old CA while
                    // this ran may still store its session in the new cache, as a connection
                    // open across the reload keeps its check.
                    self.sessions.clear();
                }
                tracing::info!(ca_file = %self.ca_file.display(), changed, "TLS client CA reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(ca_file = %self.ca_file.display(), error = %format!("{e:#}"),
                    "TLS client CA reload failed; the current CA is kept");
                Err(e)
            }
        }
    }
}

impl ClientCa {
    /// The verifier every call is handed to: the one the last successful load made.
    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.load().verifier.clone()
    }
}

impl ClientCertVerifier for ClientCa {
    fn offer_client_auth(&self) -> bool {
        self.verifier().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.verifier().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // From the current verifier's entry in the list, which lives as long as `self`.
        let index = self.current.load().index;
        self.loaded.at(index).verifier.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.verifier().requires_raw_public_keys()
    }
}

/// The listener's resumable sessions (rustls' memory cache), replaced by an empty one when
/// the client CA changes. Holds session keys: `Debug` shows nothing of them.
pub struct Sessions(ArcSwap<ServerSessionMemoryCache>);

impl Sessions {
    fn new() -> Self {
        Sessions(ArcSwap::new(ServerSessionMemoryCache::new(SESSIONS)))
    }

    /// Forgets every stored session: the next connection of each client is a full handshake.
    fn clear(&self) {
        self.0.store(ServerSessionMemoryCache::new(SESSIONS));
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.load().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.load().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.load().take(key)
    }

    fn can_cache(&self) -> bool {
        self.0.load().can_cache()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

    /// A CA named `name`, its certificate written to `{name}.pem` in `dir`.
    fn ca(dir: &Path, name: &str) -> (CertifiedIssuer<'static, KeyPair>, PathBuf) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, ca.pem()).unwrap();
        (ca, file)
    }

    /// A client certificate `ca` signs, DER.
    fn client_of(ca: &CertifiedIssuer<'static, KeyPair>) -> CertificateDer<'static> {
        let mut p = CertificateParams::new(vec!["client.example".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "client");
        let key = KeyPair::generate().unwrap();
        p.signed_by(&key, ca).unwrap().der().clone()
    }

    fn accepts(ca: &ClientCa, client: &CertificateDer<'static>) -> bool {
        ca.verify_client_cert(client, &[], UnixTime::now()).is_ok()
    }

    /// The common names of the hints, as text (a DER `Name` holds them as plain bytes).
    fn hints_name(ca: &ClientCa, name: &str) -> bool {
        let hints = ca.root_hint_subjects();
        hints
            .iter()
            .any(|h| h.as_ref().windows(name.len()).any(|w| w == name.as_bytes()))
    }

    fn count(metrics: &Metrics, outcome: &str) -> u64 {
        metrics
            .registry()
            .gather()
            .iter()
            .filter(|f| f.name() == "wxtoken_tls_client_ca_reloads_total")
            .flat_map(|f| f.get_metric().to_vec())
            .find(|m| m.get_label().iter().any(|l| l.value() == outcome))
            .map(|m| m.get_counter().get_value() as u64)
            .expect("the series exists")
    }

    #[test]
    fn a_reload_swaps_the_ca_for_every_call_and_keeps_the_old_one_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_file) = ca(dir.path(), "ca-a");
        let (b, b_file) = ca(dir.path(), "ca-b");
        let (client_a, client_b) = (client_of(&a), client_of(&b));
        let live = dir.path().join("clients-ca.pem");
        std::fs::copy(&a_file, &live).unwrap();
        let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
        let ca = ClientCa::load(&live, &metrics).unwrap();
        // What WebPkiClientVerifier does with `allow_unauthenticated`, passed through.
        assert!(ca.offer_client_auth() && !ca.client_auth_mandatory());
        assert!(!ca.requires_raw_public_keys());
        assert!(!ca.supported_verify_schemes().is_empty());
        assert!(accepts(&ca, &client_a) && !accepts(&ca, &client_b));
        assert!(hints_name(&ca, "ca-a") && !hints_name(&ca, "ca-b"));
        assert_eq!((count(&metrics, "ok"), count(&metrics, "failed")), (0, 0));

        // Rotation: A and B side by side, then B alone.
        let both = format!(
            "{}{}",
            std::fs::read_to_string(&a_file).unwrap(),
            std::fs::read_to_string(&b_file).unwrap()
        );
        std::fs::write(&live, both).unwrap();
        ca.reload().unwrap();
        assert!(accepts(&ca, &client_a) && accepts(&ca, &client_b));
        assert!(hints_name(&ca, "ca-a") && hints_name(&ca, "ca-b"));
        std::fs::copy(&b_file, &live).unwrap();
        ca.reload().unwrap();
        assert!(!accepts(&ca, &client_a) && accepts(&ca, &client_b));
        assert!(!hints_name(&ca, "ca-a") && hints_name(&ca, "ca-b"));
        assert_eq!(count(&metrics, "ok"), 2);

        // Files that do not load leave B in place, each counted.
        for broken in [
            b"not a certificate".as_slice(),
            b"".as_slice(),
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".as_slice(),
        ] {
            std::fs::write(&live, broken).unwrap();
            assert!(ca.reload().is_err());
        }
        std::fs::write(&live, vec![b'#'; 2 * 1024 * 1024]).unwrap();
        assert!(ca.reload().is_err(), "over 1 MiB");
        std::fs::remove_file(&live).unwrap();
        let err = ca.reload().unwrap_err();
        assert!(format!("{err:#}").contains("clients-ca.pem"), "{err:#}");
        assert!(!accepts(&ca, &client_a) && accepts(&ca, &client_b));
        assert!(hints_name(&ca, "ca-b"));
        assert_eq!((count(&metrics, "ok"), count(&metrics, "failed")), (2, 5));
    }

    #[test]
    fn the_same_ca_again_reuses_its_entry_and_a_change_forgets_stored_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let (_, a_file) = ca(dir.path(), "ca-a");
        let (_, b_file) = ca(dir.path(), "ca-b");
        let live = dir.path().join("clients-ca.pem");
        std::fs::copy(&a_file, &live).unwrap();
        let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
        let ca = ClientCa::load(&live, &metrics).unwrap();
        let sessions = ca.sessions();
        assert!(sessions.put(b"id".to_vec(), b"session".to_vec()));

        // Unchanged: nothing is replaced, the session can still be resumed.
        ca.reload().unwrap();
        assert_eq!(ca.current.load().index, 0);
        assert!(ca.loaded.next.get().is_none());
        assert_eq!(sessions.get(b"id").as_deref(), Some(b"session".as_slice()));

        // Changed: the session checked against A is gone.
        std::fs::copy(&b_file, &live).unwrap();
        ca.reload().unwrap();
        assert_eq!(ca.current.load().index, 1);
        assert_eq!(sessions.get(b"id"), None);

        // Back to A: its entry serves again, nothing new is kept.
        std::fs::copy(&a_file, &live).unwrap();
        ca.reload().unwrap();
        assert_eq!(ca.current.load().index, 0);
        assert!(ca.loaded.at(1).next.get().is_none());
        assert!(hints_name(&ca, "ca-a"));
    }

    #[test]
    fn debug_names_the_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let (_, a_file) = ca(dir.path(), "ca-a");
        let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
        let ca = ClientCa::load(&a_file, &metrics).unwrap();
        let shown = format!("{ca:?} {:?}", ca.sessions());
        assert!(
            shown.contains("ca-a.pem") && !shown.contains("BEGIN"),
            "{shown}"
        );
    }
}
