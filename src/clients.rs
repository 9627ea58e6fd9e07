//! The running set of clients: who a bearer key belongs to (digests compared in constant
//! time), and with it what that client may read (`ClientSettings`).
//!
//! Below both the HTTP layer, which authenticates every request with it, and the reload, which
//! swaps in a new set; so neither has to import the other.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use crate::config::{key_digest, ClientSettings};

/// Why a request was not authenticated: a fixed sentence, never the presented key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unauthorized(pub &'static str);

/// The configured clients, by key digest.
pub struct ClientKeys {
    clients: Vec<Arc<ClientSettings>>,
}

impl ClientKeys {
    pub fn new(clients: Vec<ClientSettings>) -> Self {
        ClientKeys {
            clients: clients.into_iter().map(Arc::new).collect(),
        }
    }

    /// The client whose key is presented in `Authorization: Bearer KEY`.
    ///
    /// The presented key is hashed and the digest compared with every client's digest without
    /// early exit, so neither timing nor the number of clients tells how close a guess was.
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Arc<ClientSettings>, Unauthorized> {
        let value = req
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or(Unauthorized("missing Authorization: Bearer header"))?;
        let value = value
            .to_str()
            .map_err(|_| Unauthorized("malformed Authorization header"))?;
        let key = match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => return Err(Unauthorized("Authorization must be `Bearer KEY`")),
        };
        if key.is_empty() {
            return Err(Unauthorized("empty bearer key"));
        }
        self.by_key(key).ok_or(Unauthorized("unknown client key"))
    }

    /// The client whose key is `key`. The key is hashed and the digest compared with every
    /// client's digest without early exit.
    pub fn by_key(&self, key: &str) -> Option<Arc<ClientSettings>> {
        let digest = key_digest(key);
        let mut found = None;
        for c in &self.clients {
            if bool::from(c.key_sha256.ct_eq(&digest)) {
                found = Some(c.clone());
            }
        }
        found
    }
}
