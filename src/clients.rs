//! The running set of clients: who a request belongs to, by bearer key (digests compared in
//! constant time), client certificate or both as `[server] client_auth` asks, then within the
//! client's rate limit; a failed authentication counts against its address's budget
//! ([`crate::rate_limit`]). With the client comes what it may read (`ClientSettings`).
//!
//! Below both the HTTP layer, which authenticates every request with it, and the reload, which
//! swaps in a new set; so neither has to import the other.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use crate::client_cert::PeerIdentity;
use crate::config::{key_digest, ClientAuth, ClientSettings};
use crate::metrics::Metrics;
use crate::rate_limit::{Limited, Limits};

/// Why a request was not admitted: a fixed sentence, never the presented key; or a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No client, or not as `client_auth` needs it (401; WeChat's 40125 on its paths).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The client's rate, or the address's failed authentications (429; WeChat's 45009).
    #[error("too many requests: retry in {} s", .0.retry_after_secs)]
    Limited(Limited),
}

/// The configured clients, by key digest and certificate match, what authenticates them, and
/// their rate limits.
pub struct ClientKeys {
    clients: Vec<Arc<ClientSettings>>,
    mode: ClientAuth,
    limits: Limits,
}

impl ClientKeys {
    pub fn new(clients: Vec<ClientSettings>, mode: ClientAuth, metrics: &Metrics) -> Self {
        ClientKeys {
            limits: Limits::new(&clients, metrics),
            clients: clients.into_iter().map(Arc::new).collect(),
            mode,
        }
    }

    /// New clients under the same mode: `client_auth` is a `[server]` key, which only a
    /// restart changes, so a reload keeps the running one (and unchanged rate buckets).
    pub fn with_clients(&self, clients: Vec<ClientSettings>) -> Self {
        ClientKeys {
            limits: self.limits.renewed(&clients),
            clients: clients.into_iter().map(Arc::new).collect(),
            mode: self.mode,
        }
    }

    /// The client of a request to a route that needs one: by its `Authorization: Bearer KEY`,
    /// the client certificate of its connection, or both, as `client_auth` says; then its rate
    /// limit (429).
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Arc<ClientSettings>, Refused> {
        let resolved = bearer_key(req).and_then(|key| {
            self.resolve(key, req.conn_data::<PeerIdentity>())
                .map_err(Refused::Unauthorized)
        });
        self.admit(req, resolved)
    }

    /// The client whose key is `key` (given as `secret` on WeChat's paths), with the
    /// connection's certificate where `client_auth` asks for one, within its rate limit. The
    /// key is hashed and the digest compared with every client's digest without early exit.
    pub fn by_key(&self, key: &str, req: &HttpRequest) -> Result<Arc<ClientSettings>, Refused> {
        let resolved = self
            .resolve(Some(key), req.conn_data::<PeerIdentity>())
            .map_err(Refused::Unauthorized);
        self.admit(req, resolved)
    }

    /// An authenticated client within its rate; a failure counted against the address.
    fn admit(
        &self,
        req: &HttpRequest,
        resolved: Result<Arc<ClientSettings>, Refused>,
    ) -> Result<Arc<ClientSettings>, Refused> {
        match resolved {
            Ok(client) => {
                self.limits.admit(&client).map_err(Refused::Limited)?;
                Ok(client)
            }
            Err(e) => {
                self.limits.failed(peer_ip(req)).map_err(Refused::Limited)?;
                Err(e)
            }
        }
    }

    /// The rules of `client_auth`; the error is the 401's message. Under `either`, a key that
    /// is given must be right (a wrong key is refused, not passed over for the certificate),
    /// and a key and a certificate that name different clients are refused.
    fn resolve(
        &self,
        key: Option<&str>,
        peer: Option<&PeerIdentity>,
    ) -> Result<Arc<ClientSettings>, &'static str> {
        let by_key = |k: &str| self.key_client(k).ok_or("unknown client key");
        let same = |a: &Arc<ClientSettings>, b: &Arc<ClientSettings>| Arc::ptr_eq(a, b);
        match self.mode {
            ClientAuth::Key => by_key(key.ok_or("missing Authorization: Bearer header")?),
            ClientAuth::Cert => self.cert_client(peer.ok_or(NO_CERT)?),
            ClientAuth::Either => match (key, peer) {
                (None, None) => Err("missing Authorization: Bearer header or client certificate"),
                (None, Some(p)) => self.cert_client(p),
                (Some(k), None) => by_key(k),
                (Some(k), Some(p)) => {
                    let c = by_key(k)?;
                    match self.cert_client(p) {
                        Ok(other) if !same(&c, &other) => Err(DIFFERENT_CLIENTS),
                        _ => Ok(c),
                    }
                }
            },
            ClientAuth::Both => {
                let c = by_key(key.ok_or("missing Authorization: Bearer header")?)?;
                let other = self.cert_client(peer.ok_or(NO_CERT)?)?;
                if same(&c, &other) {
                    Ok(c)
                } else {
                    Err(DIFFERENT_CLIENTS)
                }
            }
        }
    }

    /// The client whose key is `key`: every digest compared, without early exit, so neither
    /// timing nor the number of clients tells how close a guess was.
    fn key_client(&self, key: &str) -> Option<Arc<ClientSettings>> {
        let digest = key_digest(key);
        let mut found = None;
        for c in &self.clients {
            if let Some(d) = &c.key_sha256 {
                if bool::from(d.ct_eq(&digest)) {
                    found = Some(c.clone());
                }
            }
        }
        found
    }

    /// The one client whose `cert_subject` / `cert_san` the certificate matches.
    fn cert_client(&self, peer: &PeerIdentity) -> Result<Arc<ClientSettings>, &'static str> {
        let mut matching = self
            .clients
            .iter()
            .filter(|c| c.cert.as_ref().is_some_and(|m| peer.matches(m)));
        match (matching.next(), matching.next()) {
            (Some(c), None) => Ok(c.clone()),
            (None, _) => Err("the client certificate matches no client"),
            // Validation refuses equal matches, but a subject for one client and a SAN for
            // another can both fit one certificate: refused rather than guessed.
            (Some(_), Some(_)) => Err("the client certificate matches several clients"),
        }
    }
}

const NO_CERT: &str = "a client certificate is required";
const DIFFERENT_CLIENTS: &str = "the key and the client certificate name different clients";

/// The address the connection comes from (a proxy's, behind one: forwarded headers are not
/// trusted for this, since any client can set them).
fn peer_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

/// The key of `Authorization: Bearer KEY`; `None` without the header.
fn bearer_key(req: &HttpRequest) -> Result<Option<&str>, Refused> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Refused::Unauthorized("malformed Authorization header"))?;
    let key = match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
        _ => return Err(Refused::Unauthorized("Authorization must be `Bearer KEY`")),
    };
    if key.is_empty() {
        return Err(Refused::Unauthorized("empty bearer key"));
    }
    Ok(Some(key))
}
