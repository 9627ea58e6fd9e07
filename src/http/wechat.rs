//! WeChat's answer format, for what wxtoken answers itself on WeChat's paths (the facades and
//! the pass-through): `{"errcode","errmsg"}`, never cached, so an SDK reads it as WeChat's own.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::json;

use super::ApiError;

/// WeChat's error answer: `status` and `{"errcode","errmsg"}`.
pub(crate) fn wx_error(status: StatusCode, errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "errcode": errcode, "errmsg": errmsg }))
}

/// A refusal as WeChat makes one: HTTP 200 and an errcode.
pub(crate) fn wx_refusal(errcode: i64, errmsg: &str) -> HttpResponse {
    wx_error(StatusCode::OK, errcode, errmsg)
}

/// WeChat's "reach max api daily quota limit" errcode, which SDKs already treat as a refusal
/// to back off from; wxtoken answers it for a client over its rate.
pub(crate) const RATE_LIMITED_ERRCODE: i64 = 45009;

/// The refusal of a client key given on one of WeChat's paths: 40125 with `unknown` for a key
/// that names no client, 45009 with `Retry-After` for one over its rate (or an address over
/// its failed authentications).
pub(crate) fn wx_key_refusal(refusal: crate::clients::Refused, unknown: &str) -> HttpResponse {
    wx_key_refusal_as(refusal, 40125, unknown)
}

/// [`wx_key_refusal`] with the errcode of an unknown key given: WeCom calls it 40001.
pub(crate) fn wx_key_refusal_as(
    refusal: crate::clients::Refused,
    errcode: i64,
    unknown: &str,
) -> HttpResponse {
    match refusal {
        crate::clients::Refused::Unauthorized(_) => wx_refusal(errcode, unknown),
        crate::clients::Refused::Limited(l) => {
            let mut resp = wx_refusal(
                RATE_LIMITED_ERRCODE,
                &format!(
                    "too many requests for this client: retry in {} s",
                    l.retry_after_secs
                ),
            );
            if let Ok(v) = header::HeaderValue::from_str(&l.retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

/// A body that did not arrive in time on one of WeChat's paths: errcode -1, the 408 status,
/// and the connection closed (the rest of the body may still be on its way and could not be
/// told from a next request).
pub(crate) fn wx_request_timeout(e: &ApiError) -> HttpResponse {
    let mut resp = wx_error(StatusCode::REQUEST_TIMEOUT, -1, &e.to_string());
    resp.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    resp
}
