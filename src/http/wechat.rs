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

/// A body that did not arrive in time on one of WeChat's paths: errcode -1, the 408 status,
/// and the connection closed (the rest of the body may still be on its way and could not be
/// told from a next request).
pub(crate) fn wx_request_timeout(e: &ApiError) -> HttpResponse {
    let mut resp = wx_error(StatusCode::REQUEST_TIMEOUT, -1, &e.to_string());
    resp.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    resp
}
