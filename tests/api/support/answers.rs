//! Typed bodies of the answers tests read most: a token, an API error, a WeChat errcode.
//!
//! Reading a body through one of these checks its shape too: a token answer without
//! `expires_at`, or an error without `message`, fails the test where it is read.

use serde::Deserialize;
use serde_json::Value;

/// `GET /v1/apps/{app}/token`, and the invalidate and revoke answers built on it.
#[derive(Debug, Deserialize)]
pub struct TokenAnswer {
    pub app: String,
    pub access_token: String,
    pub expires_in: u64,
    /// RFC 3339, UTC.
    pub expires_at: String,
    /// Present on invalidation answers: whether a new token was fetched.
    #[serde(default)]
    pub refreshed: Option<bool>,
}

/// wxtoken's error body: a stable code for programs and a sentence for people.
#[derive(Debug, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
    pub message: String,
    /// WeChat's errcode, when the error is WeChat's answer passed on.
    #[serde(default)]
    pub errcode: Option<i64>,
}

/// WeChat's (and the fake's, and the facades') `{"errcode": .., "errmsg": ..}`; success
/// answers may leave both out, which reads as errcode 0.
#[derive(Debug, Deserialize)]
pub struct WxAnswer {
    #[serde(default)]
    pub errcode: i64,
    #[serde(default)]
    pub errmsg: String,
}

/// Parses `body` as `T`, or panics naming what was expected and showing the body.
pub fn parse<T: serde::de::DeserializeOwned>(what: &str, status: u16, body: &Value) -> T {
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not {what} ({e}): {status} {body}"))
}
