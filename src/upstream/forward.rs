//! Forwarding one business API call to WeChat (or WeCom) for the gateway: the request as the
//! caller made it, with the token wxtoken chose, and the answer's head back for streaming.
//!
//! The body goes out in [`SEND_PIECE`] slices of the one buffer the gateway read it into, never
//! as one piece: awc's HTTP/1 encoder copies every piece it is given into the connection's
//! write buffer, and that buffer lives until the answer has been read. Given a 20 MiB body
//! whole, it held a second 20 MiB copy for as long as WeChat took to answer (measured: 2.02
//! copies per body with `scripts/bench-gateway-memory`); given slices, it takes the next one
//! only once the last is flushed, so the copy is one slice at most.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::web::Bytes;
use futures_util::stream;

use super::{map_send_error, UpstreamError, WechatClient};

/// Size of the slices a body is sent in: large enough that a 20 MiB upload is 320 writes, small
/// enough that the copy in awc's write buffer is negligible beside the body.
const SEND_PIECE: usize = 64 * 1024;

/// One attempt of a forwarded call.
pub struct Forward<'a> {
    /// WeCom's API (`wecom_base_url`) rather than WeChat's (`base_url`).
    pub wecom: bool,
    pub method: Method,
    /// Path and query as sent upstream (the query carries the token: never log it).
    pub path_and_query: &'a str,
    /// In the caller's order, a repeated header once per value.
    pub headers: &'a [(HeaderName, HeaderValue)],
    /// Replayed as is by a retry: `Bytes` clones and slices share the buffer.
    pub body: Bytes,
    /// For the answer's head, and again for its body.
    pub timeout: Duration,
}

impl WechatClient {
    /// Sends `call` and returns WeChat's answer once its head has arrived. Its body is read
    /// by the caller, within `call.timeout` more. Not limited by the token pool: the gateway
    /// has a limit of its own, so API traffic never takes a slot a token refresh needs.
    pub async fn forward(&self, call: Forward<'_>) -> Result<awc::ClientResponse, UpstreamError> {
        let base = if call.wecom {
            &self.wecom_base_url
        } else {
            &self.base_url
        };
        let mut url = String::with_capacity(base.len() + call.path_and_query.len());
        url.push_str(base);
        url.push_str(call.path_and_query);
        let mut req = self.http.request(call.method, url).timeout(call.timeout);
        for (name, value) in call.headers {
            // Appended: inserting would keep only the last value of a repeated header.
            req = req.append_header((name.clone(), value.clone()));
        }
        let sent = if call.body.is_empty() {
            req.send().await
        } else {
            // Sized: WeChat gets the body's Content-Length, as the caller sent it, not chunks.
            let len = call.body.len() as u64;
            req.send_body(SizedStream::new(len, pieces(call.body)))
                .await
        };
        let resp = sent.map_err(|e| map_send_error(e, call.timeout))?;
        // awc leaves the body without a deadline unless asked: a stalled answer would hold its
        // connection and gateway slot for good.
        Ok(resp.timeout(call.timeout))
    }
}

/// `body` as [`SEND_PIECE`] slices that share its buffer (nothing is copied).
fn pieces(body: Bytes) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + 'static {
    let len = body.len();
    stream::iter(
        (0..len)
            .step_by(SEND_PIECE)
            .map(move |at| Ok(body.slice(at..len.min(at.saturating_add(SEND_PIECE))))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{FutureExt as _, StreamExt as _};

    fn collect(body: Bytes) -> Vec<Bytes> {
        // An iterator's stream is ready at once: no executor needed.
        pieces(body)
            .map(|p| match p {
                Ok(p) => p,
                Err(never) => match never {},
            })
            .collect()
            .now_or_never()
            .expect("ready at once")
    }

    #[test]
    fn a_body_is_sent_in_slices_of_its_own_buffer() {
        let body = Bytes::from((0..SEND_PIECE * 2 + 7).map(|i| i as u8).collect::<Vec<_>>());
        let pieces = collect(body.clone());
        let lens: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(lens, [SEND_PIECE, SEND_PIECE, 7]);
        assert_eq!(pieces.concat(), body.as_ref());
        // Slices, not copies: each piece points into the body's buffer.
        let start = body.as_ptr() as usize;
        for (i, p) in pieces.iter().enumerate() {
            assert_eq!(p.as_ptr() as usize, start + i * SEND_PIECE);
        }
    }

    #[test]
    fn a_body_of_exactly_one_piece_is_one_piece() {
        assert_eq!(collect(Bytes::from(vec![1u8; SEND_PIECE])).len(), 1);
    }
}
