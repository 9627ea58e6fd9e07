//! WeChat's answer to a forwarded call: read far enough to see whether it rejected the token
//! (those answers are a few dozen bytes of JSON), then sent back unchanged, streamed when it is
//! larger than that.

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};
use actix_web::HttpResponse;
use futures_util::{stream, StreamExt as _};
use serde::Deserialize;

use super::headers;
use crate::upstream::UpstreamError;

/// How much of an answer is read before deciding: far more than any errcode answer, so every
/// one is seen whole, and little enough that a media download starts streaming at once.
pub const PEEK_LIMIT: usize = 16 * 1024;

/// An answer whose head has arrived, and its first bytes (all of it when `rest` is `None`).
pub struct Peeked {
    status: StatusCode,
    head: header::HeaderMap,
    first: Bytes,
    rest: Option<awc::ClientResponse>,
    /// The `Content-Length` WeChat announced, for an answer streamed on.
    length: Option<u64>,
}

#[derive(Deserialize)]
struct Errcode {
    errcode: Option<i64>,
}

/// Reads `resp` until it ends or [`PEEK_LIMIT`] bytes have arrived. An answer announced as
/// larger is not read at all: it cannot be an errcode answer.
pub async fn peek(mut resp: awc::ClientResponse) -> Result<Peeked, UpstreamError> {
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut peeked = Peeked {
        status: resp.status(),
        head: resp.headers().clone(),
        first: Bytes::new(),
        rest: None,
        length,
    };
    if length.is_some_and(|l| l > PEEK_LIMIT as u64) {
        peeked.rest = Some(resp);
        return Ok(peeked);
    }
    let mut buf = BytesMut::new();
    while buf.len() <= PEEK_LIMIT {
        match resp.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(payload_error(e)),
            None => {
                peeked.first = buf.freeze();
                return Ok(peeked);
            }
        }
    }
    peeked.first = buf.freeze();
    peeked.rest = Some(resp);
    Ok(peeked)
}

fn payload_error(e: awc::error::PayloadError) -> UpstreamError {
    use awc::error::PayloadError as P;
    match e {
        P::Incomplete(_) | P::Io(_) => {
            UpstreamError::Connect("connection closed before a complete answer".into())
        }
        other => UpstreamError::Decode(other.to_string()),
    }
}

impl Peeked {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The errcode of a whole answer that is a JSON object carrying one; `None` for anything
    /// else (a streamed answer, media, a list without an errcode).
    pub fn errcode(&self) -> Option<i64> {
        if self.rest.is_some() {
            return None;
        }
        crate::http::body::json_object::<Errcode>(&self.first).and_then(|e| e.errcode)
    }

    /// The answer for the caller: WeChat's status, headers and body, unchanged. `guard` lives
    /// until the last byte is sent (the gateway slot of a streamed answer).
    pub fn into_response<G: 'static>(self, guard: G) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        for (name, value) in headers::to_caller(&self.head) {
            resp.append_header((name.clone(), value.clone()));
        }
        let Some(rest) = self.rest else {
            drop(guard);
            return resp.body(self.first);
        };
        let first = stream::iter((!self.first.is_empty()).then_some(Ok(self.first)));
        let body = first.chain(rest).map(move |chunk| {
            let _held = &guard;
            chunk
        });
        match self.length {
            Some(len) => resp.body(SizedStream::new(len, body.boxed_local())),
            None => resp.body(BodyStream::new(body)),
        }
    }
}
