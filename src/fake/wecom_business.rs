//! The fake WeCom's business calls for service providers' tokens, so the gateway's forwarding
//! can be tested end to end: `department/list` made with a corp token (WeCom's 40014 for a token
//! it no longer accepts), and the service call `get_admin_list` made with a suite token, whose
//! answer here carries the corp's permanent code on purpose (WeCom's does not), to prove the
//! gateway masks what an answer should never carry.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::routes::{lock, query_params, Shared};
use super::state::WxError;
use super::wecom_suite::wecom_answer as answer;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/cgi-bin/department/list", web::get().to(department_list))
        .route(
            "/cgi-bin/service/get_admin_list",
            web::post().to(admin_list),
        );
}

/// `GET /cgi-bin/department/list?access_token=CORP_TOKEN`: the corp's one department.
async fn department_list(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    let token = query_params(&req)
        .remove("access_token")
        .unwrap_or_default();
    let mut s = lock(&state);
    let (suites, now) = s.wecom_suites();
    suites.count("department/list");
    answer(suites.corp_of_token(&token, now).map(
        |(_, corpid)| json!({"department": [{"id": 1, "name": corpid, "parentid": 0, "order": 1}]}),
    ))
}

/// `POST /cgi-bin/service/get_admin_list?suite_access_token=..` `{auth_corpid, agentid}`.
async fn admin_list(req: HttpRequest, body: web::Bytes, state: web::Data<Shared>) -> HttpResponse {
    #[derive(Deserialize)]
    struct Req {
        auth_corpid: String,
    }
    let token = query_params(&req)
        .remove("suite_access_token")
        .unwrap_or_default();
    let mut s = lock(&state);
    let (suites, now) = s.wecom_suites();
    suites.count("get_admin_list");
    let Ok(r) = serde_json::from_slice::<Req>(&body) else {
        return answer(Err(WxError::WECOM_BAD_ARGS));
    };
    answer(
        suites
            .code_by_suite_token(&token, &r.auth_corpid, now)
            .map(|code| {
                json!({
                    "admin": [{"userid": "admin", "auth_type": 1}],
                    "permanent_code": code,
                    "corp_info": {"PermanentCode": code},
                })
            }),
    )
}
