//! Installed corps over real HTTP: an install exchanged and its token served, coalesced (200
//! requests, one `get_corp_token`), an install acknowledged while the server was down found
//! when WeCom retries its push, a cancelled corp 410 and no longer refreshed, a refused
//! permanent code 409, a template's corps through `gettoken`, the listing and a corp's record
//! without its permanent code, pre-auth codes, and the provider token.

use std::time::Duration;

use futures_util::future::join_all;
use wxtoken::fake::CorpState;

use crate::support::helpers::*;
use crate::support::wecom::*;

#[actix_web::test]
async fn two_hundred_requests_for_one_corp_cost_one_get_corp_token() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000010";
    app.install_unserved(SUITE, SUITE_ID, corp).await;
    let answers = join_all((0..200).map(|_| app.corp_token(SUITE, corp))).await;
    one_value(&answers, "access_token");
    assert_eq!(app.fake.suite_calls("get_corp_token"), 1);
    assert_eq!(app.fake.corp_tokens_minted(SUITE_ID, corp), 1);
    assert_eq!(answers[0].body["corpid"], corp);
    assert!(answers[0].body["expires_at"].as_str().is_some());
}

#[actix_web::test]
async fn an_install_acknowledged_while_the_server_was_down_is_found_when_the_push_is_retried() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000011";
    // WeCom's first push reaches nobody.
    assert!(app
        .fake
        .set_suite_callback_url(SUITE_ID, Some("http://127.0.0.1:9/down")));
    let code = app.fake.install_suite(SUITE_ID, corp).unwrap();
    let first = app.fake.push_create_auth(SUITE_ID, &code).await.unwrap();
    assert!(!first.accepted());
    assert_eq!(app.corp_token(SUITE, corp).await.status, 404);
    // Its retry reaches the server: the same AuthCode is exchanged once.
    route_callbacks(&app.fake, &app.base);
    let retried = app.fake.push_create_auth(SUITE_ID, &code).await.unwrap();
    assert!(retried.accepted(), "{retried:?}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.corp_token(SUITE, corp).await.status == 200
        })
        .await
    );
    // A third copy of the push changes nothing: the code is done, not exchanged again. The
    // exchange a push starts runs after its answer; once the suite has none running, any call
    // this copy's exchange was going to make has been made.
    assert!(app
        .fake
        .push_create_auth(SUITE_ID, &code)
        .await
        .unwrap()
        .accepted());
    let suite = app.state.wecom_suites[SUITE].clone();
    assert!(
        eventually(Duration::from_secs(5), || async {
            suite.exchanges_running() == 0
        })
        .await,
        "the push's exchange ends"
    );
    assert_eq!(app.fake.suite_calls("get_permanent_code"), 1);
}

#[actix_web::test]
async fn a_cancelled_corp_is_410_and_no_longer_refreshed() {
    let app = start_wecom("all").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000012";
    app.install(SUITE, SUITE_ID, corp).await;
    let suite = app.state.wecom_suites[SUITE].clone();
    assert!(suite.corp_has_actor(corp), "\"all\" keeps an actor");
    app.uninstall(SUITE_ID, corp).await;
    let answer = app.corp_token(SUITE, corp).await;
    assert_eq!(answer.status, 410, "{}", answer.body);
    assert_eq!(answer.body["error"], "corp_revoked");
    assert!(!suite.corp_has_actor(corp), "its actor is stopped");
    let listed = app
        .get(&app.suite_path(SUITE, "/corps?state=revoked"), Some(KEY))
        .await;
    assert_eq!(listed.body["total"], 1, "{}", listed.body);
    assert_eq!(listed.body["corps"][0]["corpid"], corp);
    // Nothing is left to refresh it, so no wait is needed to see that nothing does: a corp's
    // token is fetched by its actor, which is stopped, and with its permanent code, which the
    // suite hands out for authorized corps only (not even a stray actor could call). Asked
    // for again, it is refused without a new actor or a call.
    let calls = app.fake.suite_calls("get_corp_token");
    assert_eq!(app.corp_token(SUITE, corp).await.status, 410);
    assert!(!suite.corp_has_actor(corp), "no actor started");
    assert_eq!(app.fake.suite_calls("get_corp_token"), calls);
}

#[actix_web::test]
async fn a_permanent_code_wecom_refuses_is_409_without_a_retry_loop() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000013";
    app.install_unserved(SUITE, SUITE_ID, corp).await;
    app.fake
        .set_corp_state(SUITE_ID, corp, CorpState::CodeRefused);
    let answer = app.corp_token(SUITE, corp).await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert_eq!(answer.body["error"], "corp_needs_reauth");
    assert_eq!(app.fake.suite_calls("get_corp_token"), 1, "tried once");
    let record = app
        .get(&app.suite_path(SUITE, &format!("/corps/{corp}")), Some(KEY))
        .await;
    assert_eq!(record.body["state"], "needs_reauth", "{}", record.body);
    // No retry loop, and no wait needed to see it: a retry would be the corp's actor's, which
    // was stopped with the refusal, and would need the permanent code, which the suite no
    // longer hands out for a corp that needs a new install. Asked for again, it is refused
    // without a new actor or a call.
    let suite = app.state.wecom_suites[SUITE].clone();
    assert!(!suite.corp_has_actor(corp), "its actor is stopped");
    assert_eq!(app.corp_token(SUITE, corp).await.status, 409);
    assert!(!suite.corp_has_actor(corp), "no actor started");
    assert_eq!(app.fake.suite_calls("get_corp_token"), 1, "still once");
}

#[actix_web::test]
async fn a_templates_corps_take_gettoken_and_records_never_show_the_permanent_code() {
    let app = start_wecom("active").await;
    app.suite_ready(TEMPLATE, TEMPLATE_ID).await;
    let corp = "wwcorp00000000014";
    let token = app.install(TEMPLATE, TEMPLATE_ID, corp).await;
    assert_eq!(app.fake.suite_calls("get_corp_token"), 0);
    assert_eq!(
        app.fake
            .current_wecom_token(corp, &app.fake.permanent_code(TEMPLATE_ID, corp).unwrap())
            .as_deref(),
        Some(token.as_str())
    );
    let code = app.fake.permanent_code(TEMPLATE_ID, corp).unwrap();
    let record = app
        .get(
            &app.suite_path(TEMPLATE, &format!("/corps/{corp}")),
            Some(OTHER_KEY),
        )
        .await;
    assert_eq!(record.status, 200);
    assert_eq!(record.body["state"], "authorized");
    assert_eq!(record.body["has_permanent_code"], true);
    assert!(!record.body.to_string().contains(&code));
    let listed = app
        .get(&app.suite_path(TEMPLATE, "/corps"), Some(KEY))
        .await;
    assert_eq!(listed.body["total"], 1);
    assert!(!listed.body.to_string().contains(&code));
    // `other` may use the template only.
    assert_eq!(app.corp_token_as(SUITE, corp, OTHER_KEY).await, 403);
}

impl crate::support::helpers::TestApp {
    async fn corp_token_as(&self, name: &str, corpid: &str, key: &str) -> u16 {
        self.get(
            &self.suite_path(name, &format!("/corps/{corpid}/token")),
            Some(key),
        )
        .await
        .status
    }
}

#[actix_web::test]
async fn preauth_sets_the_session_and_builds_the_install_link() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let answer = app
        .post(
            &app.suite_path(SUITE, "/preauth"),
            Some(KEY),
            r#"{"auth_type": 1, "redirect_uri": "https://crm.example.com/installed", "state": "s1"}"#,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let code = answer.body["pre_auth_code"].as_str().unwrap();
    assert_eq!(app.fake.session_auth_type(SUITE_ID, code), Some(1));
    let link = answer.body["install_url"].as_str().unwrap();
    assert!(link.starts_with("https://open.work.weixin.qq.com/3rdapp/install?suite_id="));
    assert!(link.contains("redirect_uri=https%3A%2F%2Fcrm.example.com%2Finstalled"));
    let bad = app
        .post(
            &app.suite_path(SUITE, "/preauth"),
            Some(KEY),
            r#"{"auth_type": 2}"#,
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[actix_web::test]
async fn the_provider_token_is_served_to_its_clients_only() {
    let app = start_wecom("active").await;
    let path = format!("/v1/wecom/providers/{PROVIDER}/token");
    let answer = app.get(&path, Some(KEY)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body["provider_access_token"].as_str().is_some());
    assert_eq!(app.fake.suite_calls("get_provider_token"), 1);
    assert_eq!(app.get(&path, Some(OTHER_KEY)).await.status, 403);
    assert_eq!(
        app.get("/v1/wecom/providers/nobody/token", Some(KEY))
            .await
            .status,
        404
    );
}

#[actix_web::test]
async fn a_reported_corp_token_that_was_already_replaced_costs_no_call() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000015";
    let token = app.install(SUITE, SUITE_ID, corp).await;
    let path = app.suite_path(SUITE, &format!("/corps/{corp}/token/invalidate"));
    let calls = app.fake.suite_calls("get_corp_token");
    let stale = app
        .post(
            &path,
            Some(KEY),
            r#"{"access_token": "an-old-token-0000000001"}"#,
        )
        .await;
    assert_eq!(stale.status, 200, "{}", stale.body);
    assert_eq!(stale.body["access_token"], token.as_str());
    assert_eq!(stale.body["refreshed"], true);
    assert_eq!(app.fake.suite_calls("get_corp_token"), calls, "no call");
    // The current one is looked at with WeCom; the answer is a token to use either way.
    let current = app
        .post(
            &path,
            Some(KEY),
            format!(r#"{{"access_token": "{token}"}}"#),
        )
        .await;
    assert_eq!(current.status, 200, "{}", current.body);
    assert!(current.body["access_token"].as_str().is_some());
    let bad = app.post(&path, Some(KEY), "not json").await;
    assert_eq!(bad.status, 400);
}
