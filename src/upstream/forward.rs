//! Forwarding one business API call to WeChat (or WeCom) for the gateway: the request as the
//! caller made it, with the token wxtoken chose, and the answer's head back for streaming.

use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::web::Bytes;

use super::{map_send_error, UpstreamError, WechatClient};

/// One attempt of a forwarded call.
pub struct Forward<'a> {
    /// WeCom's API (`wecom_base_url`) rather than WeChat's (`base_url`).
    pub wecom: bool,
    pub method: Method,
    /// Path and query as sent upstream (the query carries the token: never log it).
    pub path_and_query: &'a str,
    pub headers: &'a [(HeaderName, HeaderValue)],
    /// Replayed as is by a retry: `Bytes` clones share the buffer.
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
            req = req.insert_header((name.clone(), value.clone()));
        }
        let sent = if call.body.is_empty() {
            req.send().await
        } else {
            req.send_body(call.body).await
        };
        let resp = sent.map_err(|e| map_send_error(e, call.timeout))?;
        // awc leaves the body without a deadline unless asked: a stalled answer would hold its
        // connection and gateway slot for good.
        Ok(resp.timeout(call.timeout))
    }
}
