//! Request bodies: the one reader every handler that takes a body uses, with its size limit,
//! its read deadline, and the rule that a JSON body is an object.
//!
//! The deadline exists because actix-web times out request *headers* (`client_request_timeout`)
//! but never a body: a client that sends headers and half a body would hold its connection, and
//! a file descriptor, for as long as it likes. The facade's `stable_token` must read its body
//! before it can authenticate anyone, so without a deadline any stranger could exhaust the
//! server's connections.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{web, HttpMessage as _, HttpRequest};
use futures_util::{Stream, StreamExt as _};

use super::ApiError;
use crate::upstream::MAX_CREDENTIAL_LEN;

/// Largest request body accepted. The largest body a client needs to send is an invalidation of
/// the longest token wxtoken accepts: `{"access_token":"..."}` with the token JSON-escaped.
/// Tokens are printable ASCII, so escaping at most doubles them (`"` and `\`, or `/` written as
/// `\/` by PHP's `json_encode`); 1 KiB more covers the field name and any whitespace.
pub const MAX_BODY: usize = 2 * MAX_CREDENTIAL_LEN + 1024;

/// Used when the app was built without a [`BodyDeadline`] (the configuration default).
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a body may take to arrive once the handler starts reading it (that is, right after
/// the headers). Registered with `App::app_data` from `[server] body_timeout_secs`.
#[derive(Clone, Copy, Debug)]
pub struct BodyDeadline(pub Duration);

/// Reads at most [`MAX_BODY`] bytes within the body deadline. The limit is checked against
/// Content-Length first so an oversized upload is refused before it is read.
///
/// A timeout answers 408 and the connection is closed, because the rest of the body may still be
/// on its way and could not be told apart from the next request.
pub(crate) async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Vec<u8>, ApiError> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > MAX_BODY {
            return Err(ApiError::PayloadTooLarge(MAX_BODY));
        }
    }
    let mut payload = payload;
    read_within(&mut payload, deadline_of(req.app_data::<BodyDeadline>())).await
}

pub(crate) fn deadline_of(d: Option<&BodyDeadline>) -> Duration {
    d.map_or(DEFAULT_BODY_TIMEOUT, |d| d.0)
}

/// The whole payload, at most [`MAX_BODY`] bytes, within `deadline`.
async fn read_within<S>(payload: &mut S, deadline: Duration) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|_| ApiError::BadRequest("could not read the body".into()))?;
            if body.len().saturating_add(chunk.len()) > MAX_BODY {
                return Err(ApiError::PayloadTooLarge(MAX_BODY));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match actix_web::rt::time::timeout(deadline, read).await {
        Ok(read) => read,
        Err(_) => {
            // Debug, not warn: under a flood of stalled clients one line each would be a flood
            // of its own; `wxtoken_http_requests_total{status="408"}` counts them.
            tracing::debug!(?deadline, "request body not received in time");
            Err(ApiError::RequestTimeout(deadline))
        }
    }
}

/// Why the body of a forwarded call could not be read. A body that did not arrive in time
/// keeps its payload: the answer must hold it until sent (see [`HoldingPayload`]).
pub(crate) struct BodyError {
    kind: ApiError,
    payload: Option<Payload>,
}

impl BodyError {
    pub(crate) fn status(&self) -> actix_web::http::StatusCode {
        actix_web::ResponseError::status_code(&self.kind)
    }

    /// As the JSON error of the `/v1/` routes.
    pub(crate) fn as_api_error(&self) -> &ApiError {
        &self.kind
    }

    /// The answer `render` makes of it, closing the connection after a timeout (the rest of
    /// the body may still arrive and could not be told from a next request).
    pub(crate) fn into_response(
        self,
        render: impl FnOnce(&Self) -> actix_web::HttpResponse,
    ) -> actix_web::HttpResponse {
        let mut resp = render(&self);
        let Some(payload) = self.payload else {
            return resp;
        };
        resp.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        resp.map_body(|_, body| {
            BoxBody::new(HoldingPayload {
                body: BoxBody::new(body),
                _payload: payload,
            })
        })
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

/// `resp`, for a request whose body the handler decided not to read (a refusal): the payload
/// is held until the answer is sent, then the connection closes. Dropped, an unread chunked
/// body would be drained for as long as its sender takes; the gateway's paths skip
/// [`read_chunked_bodies`], so this is what protects them.
pub(crate) fn answer_unread(
    resp: actix_web::HttpResponse,
    payload: web::Payload,
) -> actix_web::HttpResponse {
    BodyError {
        kind: ApiError::NotFound,
        payload: Some(payload.into_inner()),
    }
    .into_response(|_| resp)
}

/// Reads a body of up to `limit` bytes (413 above, checked against Content-Length first)
/// within `deadline`: the body of a call the gateway forwards, and replays if it must repeat it.
pub(crate) async fn read_body_within(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(BodyError {
            kind: ApiError::PayloadTooLarge(limit),
            payload: None,
        });
    }
    let mut payload = payload.into_inner();
    let read = async {
        // One buffer, sized by what was announced (never above the limit), so a large upload
        // is not copied again and again as the buffer grows. Pages are only resident once
        // written, so a body announced and never sent costs its address space, not memory.
        let capacity = announced.map_or(0, |l| usize::try_from(l).unwrap_or(limit));
        let mut body = Vec::with_capacity(capacity);
        // Each chunk is a slice of the connection's read buffer (actix-http pauses reading
        // at 32 KiB queued): copied here and dropped at once, so the body is held once.
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|_| ApiError::BadRequest("could not read the body".into()))?;
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            grow_within(&mut body, chunk.len(), limit);
            body.extend_from_slice(&chunk);
        }
        // Without a copy: the `Bytes` takes the buffer's allocation over.
        Ok(Bytes::from(body))
    };
    match actix_web::rt::time::timeout(deadline, read).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(kind)) => Err(BodyError {
            kind,
            payload: None,
        }),
        Err(_) => {
            tracing::debug!(?deadline, "request body not received in time");
            Err(BodyError {
                kind: ApiError::RequestTimeout(deadline),
                payload: Some(payload),
            })
        }
    }
}

/// Makes room for `more` bytes in `body`, doubling as a `Vec` would but never past `limit`
/// (which the caller has checked `body.len() + more` against), so a body that came without a
/// Content-Length never holds a buffer larger than the limit either.
fn grow_within(body: &mut Vec<u8>, more: usize, limit: usize) {
    if body.capacity() - body.len() >= more {
        return;
    }
    let needed = body.len().saturating_add(more);
    let target = body
        .capacity()
        .saturating_mul(2)
        .clamp(needed, limit.max(needed));
    body.reserve_exact(target - body.len());
}

/// Reads a chunked request body before routing, on every route, and hands the handler an
/// in-memory copy.
///
/// A body with a Content-Length that a handler leaves unread makes actix-web close the
/// connection after the answer. A *chunked* body is drained instead, however long its sender
/// takes, so a stalled chunked body on a route that takes none (`/healthz`, revoke, a 405) would
/// hold its connection for good. Real clients send a Content-Length for bodies this small; the
/// cost of this for them is nil, and the 401-before-413 order of the `/v1/` routes holds for
/// them. A chunked body is read here first, so its 408 or 413 comes before any 401.
///
/// Calls for the gateway are left alone: their handlers read bodies of their own size limit.
pub async fn read_chunked_bodies(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let for_gateway = || {
        req.app_data::<web::Data<super::ServerState>>()
            .is_some_and(|s| super::gateway::is_gateway_path(&s.gateway.settings, req.path()))
    };
    if !req.headers().contains_key(header::TRANSFER_ENCODING) || for_gateway() {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let deadline = deadline_of(req.app_data::<BodyDeadline>());
    let mut payload = req.take_payload();
    match read_within(&mut payload, deadline).await {
        Ok(body) => {
            req.set_payload(Payload::from(body));
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        // The answer holds the unread payload until it is sent: actix-web closes the
        // connection after answering a request whose payload is still unread, but drains one
        // that was dropped, which for a stalled body never ends.
        Err(e) => {
            // The facade's routes are WeChat's paths: their answers are in WeChat's format.
            let resp = if req.path().starts_with("/cgi-bin/") {
                let status = actix_web::ResponseError::status_code(&e);
                let mut resp = super::wechat::wx_error(status, -1, &e.to_string());
                resp.head_mut()
                    .set_connection_type(actix_web::http::ConnectionType::Close);
                req.into_response(resp)
            } else {
                req.error_response(e)
            };
            Ok(resp.map_body(|_, body| {
                BoxBody::new(HoldingPayload {
                    body,
                    _payload: payload,
                })
            }))
        }
    }
}

/// A response body that keeps the request's unread payload alive until the body is sent.
struct HoldingPayload {
    body: BoxBody,
    _payload: Payload,
}

impl MessageBody for HoldingPayload {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

pub(crate) use crate::json::json_object;

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        access_token: String,
    }

    #[test]
    fn an_object_is_parsed() {
        let b: Option<Body> = json_object(b" \r\n\t{\"access_token\":\"tok\"} ");
        assert_eq!(
            b,
            Some(Body {
                access_token: "tok".into()
            })
        );
    }

    #[test]
    fn an_array_with_the_fields_in_order_is_refused() {
        // The plain serde parse takes it: this is what the check is for.
        assert!(serde_json::from_slice::<Body>(b"[\"tok\"]").is_ok());
        assert_eq!(json_object::<Body>(b"[\"tok\"]"), None);
        assert_eq!(json_object::<Body>(b"  [\"tok\"]"), None);
    }

    #[test]
    fn everything_else_that_is_not_an_object_is_refused() {
        for body in [
            &b""[..],
            b"   ",
            b"\"tok\"",
            b"null",
            b"42",
            b"\xef\xbb\xbf{}",
            b"{",
        ] {
            assert_eq!(json_object::<Body>(body), None, "{body:?}");
        }
    }

    #[test]
    fn a_body_buffer_doubles_but_never_past_the_limit() {
        let limit = 100;
        let mut body = Vec::new();
        let mut capacities = Vec::new();
        for _ in 0..10 {
            grow_within(&mut body, 10, limit);
            body.extend_from_slice(&[0; 10]);
            capacities.push(body.capacity());
        }
        assert!(capacities.iter().all(|&c| c <= limit), "{capacities:?}");
        assert_eq!(body.capacity(), limit);
        // Grown a few times, not once per chunk.
        capacities.dedup();
        assert!(capacities.len() <= 5, "{capacities:?}");
    }

    #[test]
    fn a_buffer_with_room_is_left_alone() {
        let mut body = Vec::with_capacity(64);
        grow_within(&mut body, 64, 1000);
        assert_eq!(body.capacity(), 64);
    }

    #[test]
    fn the_longest_accepted_token_fits_even_fully_escaped() {
        let token = "\"".repeat(MAX_CREDENTIAL_LEN);
        let body = serde_json::json!({ "access_token": token }).to_string();
        assert!(body.len() <= MAX_BODY, "{} > {MAX_BODY}", body.len());
        let pretty = serde_json::to_string_pretty(&serde_json::json!({ "access_token": token }))
            .expect("serializes");
        assert!(pretty.len() <= MAX_BODY);
    }
}
