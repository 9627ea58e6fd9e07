//! The fake's lenient and hostile modes, for the gateway's tests: a front end that reads paths
//! as nginx's defaults (and, very likely, WeChat's own) do, and logins that repeat the request
//! back, as an upstream's error hint or redirect may.
//!
//! - Lenient paths: `//` is read as `/` and `;params` are dropped from every segment, so
//!   `/cgi-bin//component/api_query_auth;x` reaches `api_query_auth`. A gateway that classifies
//!   the path it was sent rather than the one WeChat reads is caught by this.
//! - Echoing logins: `jscode2session` and web OAuth's `access_token` answer with the whole
//!   request (its query, secret included) in `errmsg` and in a `Location` header.
//!
//! - Leaky component answers: every JSON answer under `/cgi-bin/component/` also carries the
//!   strings a test names (refresh tokens) under odd spellings of the key, nested in a JSON
//!   document inside a string, and inside free text.
//!
//! All are off until a test turns them on ([`super::FakeWechat::set_lenient_paths`],
//! [`super::FakeWechat::set_echoing_logins`], [`super::FakeWechat::leak_in_component_answers`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// Which modes are on.
#[derive(Default)]
pub(crate) struct Modes {
    pub(crate) lenient_paths: AtomicBool,
    pub(crate) echoing_logins: AtomicBool,
    pub(crate) leaked: Mutex<Vec<String>>,
}

/// The login paths whose answers repeat the request in echoing mode.
const LOGINS: [&str; 2] = ["/sns/jscode2session", "/sns/oauth2/access_token"];

/// `path` as a lenient front end reads it: empty segments and `;` parameters gone.
fn lenient(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/') {
        let seg = seg.split(';').next().unwrap_or_default();
        if !seg.is_empty() {
            out.push('/');
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Applies the modes that are on, before routing.
pub(crate) async fn apply(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(modes) = req.app_data::<web::Data<Modes>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if modes.lenient_paths.load(Ordering::Relaxed) {
        let read = lenient(req.path());
        if read != req.path() {
            let pq = match req.query_string() {
                "" => read,
                q => format!("{read}?{q}"),
            };
            if let Ok(uri) = pq.parse::<actix_web::http::Uri>() {
                req.match_info_mut().get_mut().update(&uri);
                req.head_mut().uri = uri;
            }
        }
    }
    if modes.echoing_logins.load(Ordering::Relaxed) && LOGINS.contains(&req.path()) {
        let echoed = req.uri().to_string();
        let resp = HttpResponse::Ok()
            .insert_header((header::LOCATION, echoed.clone()))
            .json(json!({
                "errcode": 40029,
                "errmsg": format!("invalid code, hint: [{echoed}] rid: fake"),
                "request": echoed,
            }));
        return Ok(req.into_response(resp));
    }
    let leaked = modes
        .leaked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if leaked.is_empty() || !req.path().starts_with("/cgi-bin/component/") {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let res = next.call(req).await?;
    let (req, res) = res.into_parts();
    let status = res.status();
    let body = actix_web::body::to_bytes(res.into_body())
        .await
        .unwrap_or_default();
    let answer = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut fields)) => {
            for (i, rt) in leaked.iter().enumerate() {
                fields.insert(format!(" Authorizer_Refresh_Token{i} "), json!(rt));
                fields.insert(
                    format!("note{i}"),
                    json!(json!({ "REFRESH_TOKEN": rt, "kept": rt }).to_string()),
                );
                fields.insert(
                    format!("hint{i}"),
                    json!(format!("retry with refresh_token={rt}")),
                );
                fields.insert(format!("deep{i}"), json!({ "x": [{ "y": rt }] }));
            }
            serde_json::Value::Object(fields).to_string().into_bytes()
        }
        _ => body.to_vec(),
    };
    let resp = HttpResponse::build(status)
        .content_type("application/json")
        .body(answer);
    Ok(ServiceResponse::new(req, resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_as_a_lenient_front_end_reads_them() {
        assert_eq!(lenient("/cgi-bin//component/x"), "/cgi-bin/component/x");
        assert_eq!(lenient("//cgi-bin/token;x"), "/cgi-bin/token");
        assert_eq!(lenient("/cgi-bin/user/info"), "/cgi-bin/user/info");
        assert_eq!(lenient("//"), "/");
    }
}
