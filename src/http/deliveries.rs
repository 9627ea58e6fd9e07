//! The message hub's admin routes, handlers only: `GET /v1/admin/deliveries` (a page of
//! pending or dead deliveries), `POST /v1/admin/deliveries/{id}/retry` (make one again),
//! `DELETE /v1/admin/deliveries/{id}` (forget one), `DELETE /v1/admin/deliveries?route=` (forget
//! a route's, a page at a time) and `GET /v1/admin/pushes/unmatched` (the
//! recent pushes no route took). Admin clients only, as every `/v1/admin/*` route; a retry and
//! a discard are written to the audit trail.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::trail;
use super::{ApiError, ServerState};
use crate::audit::{Action, Entry};
use crate::store::messages::{parse_delivery_id, DeliveryRecord, DeliveryState, MAX_PAGE};

/// Deliveries per page when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;

/// The client of `req`, if it is an admin.
fn admin(state: &ServerState, req: &HttpRequest) -> Result<String, ApiError> {
    let client = state.clients.load().authenticate(req)?;
    if !client.admin {
        return Err(ApiError::AdminOnly(client.name.clone()));
    }
    Ok(client.name.clone())
}

#[derive(Serialize)]
struct DeliveryView<'a> {
    id: &'a str,
    route: &'a str,
    state: &'static str,
    attempts: u32,
    last_error: Option<&'a str>,
    received_at: String,
}

impl<'a> From<&'a DeliveryRecord> for DeliveryView<'a> {
    fn from(d: &'a DeliveryRecord) -> Self {
        DeliveryView {
            id: &d.id,
            route: &d.route,
            state: d.state.as_str(),
            attempts: d.attempts,
            last_error: d.last_error.as_deref(),
            received_at: d.received_at.rfc3339(),
        }
    }
}

#[derive(Serialize)]
struct ListBody<'a> {
    deliveries: Vec<DeliveryView<'a>>,
    next_offset: Option<usize>,
}

/// The query of a listing, each parameter checked (an unknown one is ignored, as elsewhere).
struct ListQuery {
    state: DeliveryState,
    offset: usize,
    limit: usize,
    /// One route's deliveries, configured or not (a route taken out of the file keeps its
    /// stored ones); `None`: every configured route's.
    route: Option<String>,
}

fn list_query(query: &str) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        state: DeliveryState::Pending,
        offset: 0,
        limit: DEFAULT_LIMIT,
        route: None,
    };
    let mut state = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "state" => {
                state = Some(DeliveryState::parse(&v).ok_or_else(|| {
                    ApiError::BadRequest("state must be `pending` or `dead`".into())
                })?)
            }
            "offset" => {
                q.offset = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest("offset must be a whole number".into()))?
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}"))
                    })?
            }
            "route" => {
                if !crate::config::valid_name(&v) {
                    return Err(ApiError::BadRequest(
                        "route must be a route's name (letters, digits, `-`, `_`, `.`)".into(),
                    ));
                }
                q.route = Some(v.into_owned());
            }
            _ => {}
        }
    }
    q.state = state
        .ok_or_else(|| ApiError::BadRequest("state is required: `pending` or `dead`".into()))?;
    Ok(q)
}

/// `GET /v1/admin/deliveries?state=dead|pending&offset=&limit=&route=`.
pub async fn list(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let q = list_query(req.query_string())?;
    let page = state
        .hub
        .list(q.state, q.offset, q.limit, q.route)
        .await
        .map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "cannot list deliveries");
            ApiError::Unavailable("the message store cannot be read".into())
        })?;
    Ok(HttpResponse::Ok().json(ListBody {
        deliveries: page.deliveries.iter().map(DeliveryView::from).collect(),
        next_offset: page.next_offset,
    }))
}

#[derive(Serialize)]
struct RetryBody<'a> {
    id: &'a str,
    route: &'a str,
    state: &'static str,
}

/// An admin's change to the delivery `id`, as `action`: the id checked (400), the change
/// admitted by the audit trail and written to it with its outcome, a store that cannot be
/// written 503, an unknown id 404. Answers the admin's name and the record `change` gave.
async fn change_delivery<F, Fut>(
    state: &ServerState,
    req: &HttpRequest,
    id: &str,
    action: Action,
    change: F,
) -> Result<(String, DeliveryRecord), ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<DeliveryRecord>>>,
{
    let client = admin(state, req)?;
    let Some((_, route)) = parse_delivery_id(id) else {
        return Err(ApiError::BadRequest(
            "not a delivery id (`{push id}.{route}`)".into(),
        ));
    };
    let caller = trail::caller(req, &client);
    trail::admit(&state.audit, &caller, action)?;
    let entry = |outcome: &str| {
        state.audit.record(&Entry {
            action,
            caller: &caller,
            credential: Some(route),
            outcome,
            fingerprints: vec![],
        })
    };
    match change().await {
        Ok(Some(d)) => {
            entry("ok");
            Ok((client, d))
        }
        Ok(None) => {
            entry("not_found");
            Err(ApiError::NotFound)
        }
        Err(e) => {
            entry("unavailable");
            tracing::warn!(delivery = %id, error = %format!("{e:#}"), ?action,
                "cannot change a delivery");
            Err(ApiError::Unavailable(
                "the message store cannot be written".into(),
            ))
        }
    }
}

#[derive(Serialize)]
struct DiscardedBody {
    discarded: usize,
    /// More deliveries of the route in that state are left: call again.
    more: bool,
}

/// `DELETE /v1/admin/deliveries?state=dead|pending&route=NAME`: up to `limit` (default 100,
/// at most 1000) of the route's deliveries in that state forgotten at once, as one by one
/// would. `route` is required, so no call empties every route.
pub async fn discard_many(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let client = admin(&state, &req)?;
    let q = list_query(req.query_string())?;
    let Some(route) = q.route else {
        return Err(ApiError::BadRequest(
            "route is required: the deliveries of one route are discarded at a time".into(),
        ));
    };
    let caller = trail::caller(&req, &client);
    trail::admit(&state.audit, &caller, Action::DeadLetterDiscard)?;
    let outcome = state
        .hub
        .discard_route(q.state, route.clone(), q.limit)
        .await;
    state.audit.record(&Entry {
        action: Action::DeadLetterDiscard,
        caller: &caller,
        credential: Some(&route),
        outcome: if outcome.is_ok() { "ok" } else { "unavailable" },
        fingerprints: vec![],
    });
    let (discarded, more) = outcome.map_err(|e| {
        tracing::warn!(route = %route, error = %format!("{e:#}"), "cannot discard deliveries");
        ApiError::Unavailable("the message store cannot be written".into())
    })?;
    tracing::warn!(target: "wxtoken::audit", event = "dead_letter_discard", client = %client,
        route = %route, state = q.state.as_str(), discarded, more, "deliveries discarded");
    Ok(HttpResponse::Ok().json(DiscardedBody { discarded, more }))
}

/// `POST /v1/admin/deliveries/{id}/retry`: 202, the delivery is due now with a fresh
/// `max_age_secs`.
pub async fn retry(
    state: web::Data<ServerState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (client, d) = change_delivery(&state, &req, &id, Action::DeadLetterRetry, || {
        state.hub.retry(&id)
    })
    .await?;
    tracing::warn!(target: "wxtoken::audit", event = "dead_letter_retry", client = %client,
        delivery = %d.id, route = %d.route, "delivery retried");
    Ok(HttpResponse::Accepted().json(RetryBody {
        id: &d.id,
        route: &d.route,
        state: d.state.as_str(),
    }))
}

/// `DELETE /v1/admin/deliveries/{id}`: 200 with the delivery as it was (pending or dead); it
/// is forgotten, with its push when no other route still owes it, and never made.
pub async fn discard(
    state: web::Data<ServerState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (client, d) = change_delivery(&state, &req, &id, Action::DeadLetterDiscard, || {
        state.hub.discard(&id)
    })
    .await?;
    tracing::warn!(target: "wxtoken::audit", event = "dead_letter_discard", client = %client,
        delivery = %d.id, route = %d.route, state = d.state.as_str(), "delivery discarded");
    Ok(HttpResponse::Ok().json(DeliveryView::from(&d)))
}

#[derive(Serialize)]
struct UnmatchedBody {
    pushes: Vec<crate::messages::Unmatched>,
}

/// `GET /v1/admin/pushes/unmatched`: the recent unmatched pushes (the fleet's with Redis),
/// newest first.
pub async fn unmatched(
    state: web::Data<ServerState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req)?;
    let pushes = state.hub.unmatched().await.map_err(|e| {
        tracing::warn!(error = %format!("{e:#}"), "cannot read the unmatched pushes");
        ApiError::Unavailable("the message store cannot be read".into())
    })?;
    Ok(HttpResponse::Ok().json(UnmatchedBody { pushes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_query_is_checked_parameter_by_parameter() {
        let q = list_query("state=dead").expect("valid");
        assert_eq!(
            (q.state, q.offset, q.limit),
            (DeliveryState::Dead, 0, DEFAULT_LIMIT)
        );
        let q = list_query("state=pending&offset=200&limit=1000").expect("valid");
        assert_eq!(
            (q.state, q.offset, q.limit),
            (DeliveryState::Pending, 200, 1000)
        );
        assert_eq!(q.route, None);
        let q = list_query("state=dead&route=old-crm.v1").expect("valid");
        assert_eq!(q.route.as_deref(), Some("old-crm.v1"));
        for bad in [
            "",
            "state=gone",
            "state=dead&route=",
            "state=dead&route=a%2Fb",
            "state=dead&route=a*",
            "state=dead&offset=-1",
            "state=dead&limit=0",
            "state=dead&limit=1001",
            "state=dead&limit=x",
        ] {
            assert!(list_query(bad).is_err(), "{bad}");
        }
    }
}
