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

/// An answer whose head has arrived, and its first bytes (all of it when `complete`).
pub struct Peeked {
    /// Its head (status, headers) and, unless `complete`, the rest of its body.
    resp: awc::ClientResponse,
    first: Bytes,
    complete: bool,
    /// The `Content-Length` WeChat announced, for an answer streamed on.
    length: Option<u64>,
    /// The answer's headers for the caller, when some were rewritten (see
    /// [`Peeked::rewrite_headers`]); WeChat's own otherwise.
    rewritten: Option<Vec<(header::HeaderName, header::HeaderValue)>>,
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
    if length.is_some_and(|l| l > PEEK_LIMIT as u64) {
        return Ok(Peeked {
            resp,
            first: Bytes::new(),
            complete: false,
            length,
            rewritten: None,
        });
    }
    // Most answers arrive in one chunk: kept as it is, not copied.
    let mut first = Bytes::new();
    let mut buf = BytesMut::new();
    let complete = loop {
        match resp.next().await {
            Some(Ok(chunk)) if first.is_empty() && buf.is_empty() => first = chunk,
            Some(Ok(chunk)) => {
                if buf.is_empty() {
                    buf.extend_from_slice(&first);
                }
                buf.extend_from_slice(&chunk);
            }
            Some(Err(e)) => return Err(payload_error(e)),
            None => break true,
        }
        if first.len().max(buf.len()) > PEEK_LIMIT {
            break false;
        }
    };
    if !buf.is_empty() {
        first = buf.freeze();
    }
    Ok(Peeked {
        resp,
        first,
        complete,
        length,
        rewritten: None,
    })
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
        self.resp.status()
    }

    /// Reads the rest of the answer, `limit` bytes at most in all, for an answer that is
    /// rewritten before it is sent on.
    pub async fn read_whole(&mut self, limit: usize) -> Result<&Bytes, UpstreamError> {
        if !self.complete {
            let mut buf = BytesMut::from(&self.first[..]);
            while let Some(chunk) = self.resp.next().await {
                let chunk = chunk.map_err(payload_error)?;
                if buf.len() + chunk.len() > limit {
                    return Err(UpstreamError::Decode(format!(
                        "the answer is larger than {limit} bytes"
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
            self.first = buf.freeze();
            self.complete = true;
        }
        Ok(&self.first)
    }

    /// Replaces the body of an answer read whole (see [`Peeked::read_whole`]).
    pub fn replace_body(&mut self, body: Bytes) {
        debug_assert!(self.complete, "only a whole answer is rewritten");
        self.first = body;
    }

    /// Rewrites every header value for which `rewrite` returns a new one (a value that no
    /// longer makes a valid header is dropped).
    pub fn rewrite_headers(&mut self, rewrite: impl Fn(&[u8]) -> Option<Vec<u8>>) {
        let mut changed = false;
        let headers = headers::to_caller(self.resp.headers())
            .filter_map(|(name, value)| match rewrite(value.as_bytes()) {
                None => Some((name.clone(), value.clone())),
                Some(new) => {
                    changed = true;
                    header::HeaderValue::from_bytes(&new)
                        .ok()
                        .map(|v| (name.clone(), v))
                }
            })
            .collect();
        if changed {
            self.rewritten = Some(headers);
        }
    }

    /// The errcode of a whole answer that is a JSON object carrying one; `None` for anything
    /// else (a streamed answer, media, a list without an errcode).
    pub fn errcode(&self) -> Option<i64> {
        // Most successful answers carry no errcode at all: a scan is cheaper than a parse.
        if !self.complete || memchr::memmem::find(&self.first, b"\"errcode\"").is_none() {
            return None;
        }
        crate::json::json_object::<Errcode>(&self.first).and_then(|e| e.errcode)
    }

    /// The answer for the caller: WeChat's status, headers and body, unchanged. `guard` lives
    /// until the last byte is sent (the gateway slot of a streamed answer).
    pub fn into_response<G: 'static>(self, guard: G) -> HttpResponse {
        let mut resp = HttpResponse::build(self.resp.status());
        match &self.rewritten {
            Some(headers) => {
                for (name, value) in headers {
                    resp.append_header((name.clone(), value.clone()));
                }
            }
            None => {
                for (name, value) in headers::to_caller(self.resp.headers()) {
                    resp.append_header((name.clone(), value.clone()));
                }
            }
        }
        if self.complete {
            drop(guard);
            return resp.body(self.first);
        }
        let rest = self.resp;
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
