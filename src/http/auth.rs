//! Client authentication (bearer keys compared in constant time) and per-app permission.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{key_digest, ClientSettings};

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
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Arc<ClientSettings>, ApiError> {
        let value = req
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer header",
            ))?;
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
        self.by_key(key)
            .ok_or(ApiError::Unauthorized("unknown client key"))
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
