//! What the HTTP layer tells the audit trail: who called, from which address, through which
//! route; and the answer when the trail refuses an admin action.

use actix_web::HttpRequest;

use super::ApiError;
use crate::audit::{Action, Caller, TrailUnavailable};

/// The reader the roll-up names for a token read with WeChat's component token rather than a
/// client key (a facade's `api_authorizer_token` and `api_query_auth`): whoever holds it. No
/// configured client can be called so (names are letters, digits, `-`, `_`, `.`).
pub(crate) const COMPONENT_TOKEN_HOLDER: &str = "(component token)";
/// The same for a WeCom corp's token read with a suite token (`get_corp_token`).
pub(crate) const SUITE_TOKEN_HOLDER: &str = "(suite token)";

/// The caller of `req`, authenticated as `client`. The route is the matched template (no
/// query string: a facade's query holds a key), or the path when nothing matched.
pub(crate) fn caller(req: &HttpRequest, client: &str) -> Caller {
    Caller {
        client: client.to_owned(),
        remote_addr: req.peer_addr().map(|a| a.to_string()),
        route: req.match_pattern().unwrap_or_else(|| req.path().to_owned()),
    }
}

/// 503: the trail cannot record the action and `[audit] fail_closed` is on.
pub(crate) fn refused(_: TrailUnavailable) -> ApiError {
    ApiError::Unavailable(TrailUnavailable.to_string())
}

/// Asks the trail to admit `action` by `caller` (refused while it cannot be written, when it
/// fails closed).
pub(crate) fn admit(
    audit: &crate::audit::Audit,
    caller: &Caller,
    action: Action,
) -> Result<(), ApiError> {
    audit.admit(caller, action).map_err(refused)
}

/// Records an invalidation that refetched the token (a forced refresh a client caused): the
/// reported token's fingerprint and the new one's. Reports answered without a refetch are not
/// admin actions and leave no line. Never refused: a client holding a dead token must get a
/// new one even while the trail is down.
pub(crate) fn refetched(
    audit: &crate::audit::Audit,
    caller: &Caller,
    credential: &str,
    reported: &crate::secret::AccessToken,
    invalidated: &crate::token::messages::Invalidated,
) {
    if invalidated.outcome != crate::status::InvalidationOutcome::Refreshed {
        return;
    }
    audit.record(&crate::audit::Entry {
        action: Action::Invalidate,
        caller,
        credential: Some(credential),
        outcome: "ok",
        fingerprints: vec![
            reported.fingerprint(),
            invalidated.record.token.fingerprint(),
        ],
    });
}
