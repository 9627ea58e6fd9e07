//! The fake's `/_fake/wecom/*` control endpoints, for users outside the process (benchmarks,
//! manual runs): push a suite ticket, and install many corps at once, each with its
//! `create_auth` pushed. Errors are plain text: 400 for a bad request, 404 for an unknown suite,
//! 409 when the suite has no callback URL.

use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use futures_util::stream::{self, StreamExt as _};
use serde::Deserialize;
use serde_json::json;

use super::routes::{bad_request, lock, Shared};
use super::wecom_suite::{event_xml, push};

/// The most corps one bulk install creates.
const BULK_MAX: u64 = 1_000_000;
/// Installs pushed at once: WeCom sends callbacks in parallel, not one by one.
const PUSHES_IN_FLIGHT: usize = 32;

/// The corpid of bulk-installed corp `index`: `wwbench` and the index in 12 digits.
pub fn bulk_corpid(index: u64) -> String {
    format!("wwbench{index:012}")
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/_fake/wecom/ticket", web::post().to(ctl_ticket))
        .route(
            "/_fake/wecom/bulk_install",
            web::post().to(ctl_bulk_install),
        );
}

fn plain(status: u16, msg: String) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("text/plain; charset=utf-8")
        .body(msg + "\n")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketSpec {
    suite_id: String,
}

/// `POST /_fake/wecom/ticket {"suite_id"}`: a new suite ticket, pushed; the receiver's answer.
async fn ctl_ticket(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let Ok(spec) = serde_json::from_slice::<TicketSpec>(&body) else {
        return bad_request("body must be JSON {\"suite_id\": \"...\"}");
    };
    let ticket = {
        let mut s = lock(&state);
        let (suites, now) = s.wecom_suites();
        suites.mint_ticket(&spec.suite_id, now)
    };
    if ticket.is_none() {
        return plain(404, format!("unknown suite {:?}", spec.suite_id));
    }
    let xml = event_xml(
        &spec.suite_id,
        "suite_ticket",
        &[("SuiteTicket", ticket.as_deref().unwrap_or_default())],
    );
    match push(&state, &spec.suite_id, "suite_ticket", &xml).await {
        Some(p) => HttpResponse::Ok().json(json!({"accepted": p.accepted(), "status": p.status})),
        None => plain(
            409,
            format!("suite {:?} has no callback URL", spec.suite_id),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkSpec {
    suite_id: String,
    count: u64,
}

/// `POST /_fake/wecom/bulk_install {"suite_id", "count"}`: corps `wwbench000000000000` ...
/// install the suite, and each one's `create_auth` is pushed (32 at a time); how many the
/// receiver took.
async fn ctl_bulk_install(body: Bytes, state: web::Data<Shared>) -> HttpResponse {
    let Ok(spec) = serde_json::from_slice::<BulkSpec>(&body) else {
        return bad_request("body must be JSON {\"suite_id\": \"...\", \"count\": N}");
    };
    if spec.count == 0 || spec.count > BULK_MAX {
        return bad_request(format!("count is 1 to {BULK_MAX}"));
    }
    let codes: Option<Vec<String>> = {
        let mut s = lock(&state);
        let (suites, now) = s.wecom_suites();
        (0..spec.count)
            .map(|i| suites.install(&spec.suite_id, &bulk_corpid(i), now))
            .collect()
    };
    let Some(codes) = codes else {
        return plain(404, format!("unknown suite {:?}", spec.suite_id));
    };
    let suite_id = spec.suite_id.as_str();
    let pushes = stream::iter(codes)
        .map(|code| {
            let xml = event_xml(
                suite_id,
                "create_auth",
                &[("AuthCode", &code), ("State", "")],
            );
            let state = state.clone();
            async move { push(&state, suite_id, "create_auth", &xml).await }
        })
        .buffer_unordered(PUSHES_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    if pushes.iter().any(Option::is_none) {
        return plain(409, format!("suite {suite_id:?} has no callback URL"));
    }
    let accepted = pushes.iter().flatten().filter(|p| p.accepted()).count();
    HttpResponse::Ok().json(json!({
        "installed": spec.count,
        "accepted": accepted,
        "first": bulk_corpid(0),
        "last": bulk_corpid(spec.count - 1),
    }))
}
