//! Client authentication (bearer keys compared in constant time, client certificates matched
//! by name) as `[server] client_auth` asks, then the client's rate limit; a failed
//! authentication counts against its address's budget ([`super::rate_limit`]).

use std::sync::Arc;

use actix_web::http::header;
use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use super::client_cert::PeerIdentity;
use super::error::ApiError;
use super::rate_limit::{Limited, Limits};
use crate::config::{key_digest, ClientAuth, ClientSettings};
use crate::metrics::Metrics;

/// The configured clients, by key digest and certificate match, what authenticates them, and
/// their rate limits.
pub struct ClientKeys {
    clients: Vec<Arc<ClientSettings>>,
    mode: ClientAuth,
    limits: Limits,
}

/// Why the key given on one of WeChat's paths was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No client, or not this one as `client_auth` needs it (WeChat's 40125).
    Unknown,
    /// The client's rate, or the address's failed authentications (WeChat's 45009).
    Limited(Limited),
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
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Arc<ClientSettings>, ApiError> {
        let too_many = |l: Limited| ApiError::TooManyRequests {
            retry_after_secs: l.retry_after_secs,
        };
        let resolved = match bearer_key(req) {
            Ok(key) => self
                .resolve(key, req.conn_data::<PeerIdentity>())
                .map_err(ApiError::Unauthorized),
            Err(e) => Err(e),
        };
        match resolved {
            Ok(client) => {
                self.limits.admit(&client).map_err(too_many)?;
                Ok(client)
            }
            Err(e) => {
                self.limits.failed(peer_ip(req)).map_err(too_many)?;
                Err(e)
            }
        }
    }

    /// The client whose key is `key` (given as `secret` on WeChat's paths), with the
    /// connection's certificate where `client_auth` asks for one, within its rate limit. The
    /// key is hashed and the digest compared with every client's digest without early exit.
    pub fn by_key(&self, key: &str, req: &HttpRequest) -> Result<Arc<ClientSettings>, KeyRefusal> {
        match self.resolve(Some(key), req.conn_data::<PeerIdentity>()) {
            Ok(client) => {
                self.limits.admit(&client).map_err(KeyRefusal::Limited)?;
                Ok(client)
            }
            Err(_) => {
                self.limits
                    .failed(peer_ip(req))
                    .map_err(KeyRefusal::Limited)?;
                Err(KeyRefusal::Unknown)
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
fn bearer_key(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    let key = match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
        _ => return Err(ApiError::Unauthorized("Authorization must be `Bearer KEY`")),
    };
    if key.is_empty() {
        return Err(ApiError::Unauthorized("empty bearer key"));
    }
    Ok(Some(key))
}
