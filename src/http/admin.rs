//! Admin routes: revoking a leaked token and reloading the configuration.

use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::{actor_unavailable, authorize, cache_control, no_valid_token, ApiError, ServerState};
use crate::reload::Reload;
use crate::token::messages::{Revoke, RevokeError};

#[derive(Serialize)]
struct RevokedBody<'a> {
    app: &'a str,
    access_token: &'a str,
    expires_in: u64,
    expires_at: String,
    revoked: bool,
    /// Whether the new token is saved in the store: `false` means a restart now would bring
    /// back a token WeChat has replaced (the store keeps retrying; `/readyz` says when done).
    persisted: bool,
    /// Stable grant: seconds until the second forced refresh that ends the old token.
    #[serde(skip_serializing_if = "Option::is_none")]
    second_rotation_in_secs: Option<u64>,
}

/// `POST /v1/apps/{name}/revoke` (admins): rotates the token so a leaked copy dies.
pub async fn revoke(
    state: web::Data<ServerState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (client, app) = authorize(&state, &req, &name)?;
    if !client.admin {
        return Err(ApiError::AdminOnly(client.name.clone()));
    }
    let answer = app
        .addr
        .send(Revoke)
        .timeout(state.wait_limit * 2 + crate::apps::ACTOR_GRACE)
        .await
        .map_err(|_| actor_unavailable(&app.name))?;
    let revoked = match answer {
        Ok(r) => r,
        Err(RevokeError::NoNewToken(e)) => return Err(no_valid_token(&app.name, e)),
        Err(e) => return Err(ApiError::Conflict(e.to_string())),
    };
    // The store answers once the new token's save has been tried: a failure is pending there.
    let persisted = !state
        .store
        .not_durable()
        .iter()
        .any(|k| k.as_str() == app.name);
    // The audit trail: who, which app, which token (fingerprints only); the log line's
    // timestamp says when.
    let old = revoked
        .old
        .map(|f| f.to_string())
        .unwrap_or_else(|| "-".into());
    if persisted {
        tracing::warn!(target: "wxtoken::audit", event = "revoke", client = %client.name,
            app = %app.name, old = %old, new = %revoked.record.token, persisted,
            "token revoked");
    } else {
        tracing::warn!(target: "wxtoken::audit", event = "revoke", client = %client.name,
            app = %app.name, old = %old, new = %revoked.record.token, persisted,
            "token revoked, but the new token is not saved yet: a restart before the store recovers would bring back the revoked token");
    }
    let expires_in = revoked.record.remaining(SystemTime::now()).as_secs();
    Ok(HttpResponse::Ok()
        .insert_header(cache_control(expires_in))
        .json(RevokedBody {
            app: &app.name,
            access_token: revoked.record.token.expose(),
            expires_in,
            expires_at: revoked.record.expires_at_rfc3339(),
            revoked: true,
            persisted,
            second_rotation_in_secs: revoked.second_rotation_in.map(|d| d.as_secs()),
        }))
}

/// `POST /v1/admin/reload` (admins): re-reads the configuration file.
pub async fn reload(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let client = state.clients.load().authenticate(&req)?;
    if !client.admin {
        return Err(ApiError::AdminOnly(client.name.clone()));
    }
    let summary = state
        .reloader
        .send(Reload)
        .await
        .map_err(|_| ApiError::Unavailable("the reloader did not answer".into()))?
        .map_err(ApiError::InvalidConfig)?;
    tracing::warn!(target: "wxtoken::audit", event = "reload", client = %client.name, "configuration reloaded");
    Ok(HttpResponse::Ok().json(summary))
}
