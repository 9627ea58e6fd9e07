//! `ApiError`: every way a request can fail, with its status code and JSON body.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error answered to an HTTP client as `{"error": "snake_code", "message": "..."}`.
/// Messages name what was wrong, never a key, secret or token.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("client `{client}` may not read app `{app}`")]
    Forbidden { client: String, app: String },
    #[error("no app named `{0}`")]
    UnknownApp(String),
    /// The app takes no message pushes (`message_token_env` is not set for it).
    #[error("app `{0}` takes no message pushes: set message_token_env (or _file) for it")]
    NoMessages(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("request body not received within {}", humantime::format_duration(*.0))]
    RequestTimeout(std::time::Duration),
    #[error("no valid token for app `{app}`: {why}")]
    NoValidToken {
        app: String,
        why: String,
        errcode: Option<i64>,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("app `{app}` has no `{kind}` ticket configured")]
    UnknownTicket { app: String, kind: String },
    #[error("client `{0}` is not an admin")]
    AdminOnly(String),
    #[error("{0}")]
    Conflict(String),
    #[error("configuration rejected, the running one is kept: {0}")]
    InvalidConfig(String),
    #[error("no such route")]
    NotFound,
    #[error("no platform named `{0}`")]
    UnknownPlatform(String),
    #[error("client `{client}` may not use platform `{platform}`")]
    ForbiddenPlatform { client: String, platform: String },
    #[error("platform `{platform}` has no authorizer `{appid}`")]
    UnknownAuthorizer { platform: String, appid: String },
    #[error("authorizer `{appid}` of platform `{platform}` has revoked the authorization")]
    AuthorizerRevoked { platform: String, appid: String },
    #[error("authorizer `{appid}` of platform `{platform}` must authorize again: {why}")]
    AuthorizerNeedsReauth {
        platform: String,
        appid: String,
        why: String,
    },
    /// No WeCom suite or provider of that name.
    #[error("{0}")]
    UnknownWecom(String),
    #[error("{0}")]
    ForbiddenWecom(String),
    #[error("WeCom suite `{suite}` has no corp `{corpid}`")]
    UnknownCorp { suite: String, corpid: String },
    #[error("corp `{corpid}` has uninstalled WeCom suite `{suite}`")]
    CorpRevoked { suite: String, corpid: String },
    #[error("corp `{corpid}` of WeCom suite `{suite}` must install again: {why}")]
    CorpNeedsReauth {
        suite: String,
        corpid: String,
        why: String,
    },
    /// A push that is not WeChat's, or not for this platform (401 or 400 by `status`).
    #[error("{message}")]
    EventRefused { status: u16, message: String },
    #[error("client `{0}` may not call WeChat through wxtoken (set proxy = true for it)")]
    ProxyNotAllowed(String),
    /// A forwarded call WeChat did not answer properly.
    #[error("{0}")]
    BadGateway(String),
    /// A forwarded call WeChat did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A client over its rate, or an address over its failed authentications.
    #[error("too many requests: retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// `allow` lists the methods the route does take, for the `Allow` header (RFC 9110).
    #[error("method not allowed on this route (allowed: {allow})")]
    MethodNotAllowed { allow: &'static str },
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::UnknownApp(_) => "unknown_app",
            ApiError::NoMessages(_) => "no_messages",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::NoValidToken { .. } => "no_valid_token",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::UnknownTicket { .. } => "unknown_ticket",
            ApiError::AdminOnly(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::InvalidConfig(_) => "invalid_config",
            ApiError::NotFound => "not_found",
            ApiError::UnknownPlatform(_) => "unknown_platform",
            ApiError::ForbiddenPlatform { .. } => "forbidden",
            ApiError::UnknownAuthorizer { .. } => "unknown_authorizer",
            ApiError::AuthorizerRevoked { .. } => "authorizer_revoked",
            ApiError::AuthorizerNeedsReauth { .. } => "authorizer_needs_reauth",
            ApiError::UnknownWecom(_) => "not_found",
            ApiError::ForbiddenWecom(_) => "forbidden",
            ApiError::UnknownCorp { .. } => "unknown_corp",
            ApiError::CorpRevoked { .. } => "corp_revoked",
            ApiError::CorpNeedsReauth { .. } => "corp_needs_reauth",
            ApiError::EventRefused { status: 401, .. } => "unauthorized",
            ApiError::EventRefused { .. } => "bad_request",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::ProxyNotAllowed(_) => "forbidden",
            ApiError::BadGateway(_) => "upstream_error",
            ApiError::GatewayTimeout(_) => "upstream_timeout",
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errcode: Option<i64>,
}

impl From<crate::clients::Refused> for ApiError {
    fn from(e: crate::clients::Refused) -> Self {
        match e {
            crate::clients::Refused::Unauthorized(why) => ApiError::Unauthorized(why),
            crate::clients::Refused::Limited(l) => ApiError::TooManyRequests {
                retry_after_secs: l.retry_after_secs,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::AdminOnly(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownApp(_)
            | ApiError::NoMessages(_)
            | ApiError::NotFound
            | ApiError::UnknownTicket { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::InvalidConfig(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NoValidToken { .. } | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnknownPlatform(_) | ApiError::UnknownAuthorizer { .. } => {
                StatusCode::NOT_FOUND
            }
            ApiError::ForbiddenPlatform { .. } => StatusCode::FORBIDDEN,
            ApiError::AuthorizerRevoked { .. } => StatusCode::GONE,
            ApiError::AuthorizerNeedsReauth { .. } => StatusCode::CONFLICT,
            ApiError::UnknownWecom(_) | ApiError::UnknownCorp { .. } => StatusCode::NOT_FOUND,
            ApiError::ForbiddenWecom(_) => StatusCode::FORBIDDEN,
            ApiError::CorpRevoked { .. } => StatusCode::GONE,
            ApiError::CorpNeedsReauth { .. } => StatusCode::CONFLICT,
            ApiError::EventRefused { status: 401, .. } => StatusCode::UNAUTHORIZED,
            ApiError::EventRefused { .. } => StatusCode::BAD_REQUEST,
            ApiError::ProxyNotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CACHE_CONTROL, "no-store"));
        if matches!(self, ApiError::Unauthorized(_)) {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"wxtoken\""));
        }
        if matches!(
            self,
            ApiError::NoValidToken { .. } | ApiError::Unavailable(_)
        ) {
            resp.insert_header((header::RETRY_AFTER, "1"));
        }
        match self {
            ApiError::MethodNotAllowed { allow } => {
                resp.insert_header((header::ALLOW, *allow));
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                resp.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            // The rest of the body may still arrive and could not be told from a next request.
            ApiError::RequestTimeout(_) => {
                resp.force_close();
            }
            _ => {}
        }
        let errcode = match self {
            ApiError::NoValidToken { errcode, .. } => *errcode,
            _ => None,
        };
        resp.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
            errcode,
        })
    }
}
