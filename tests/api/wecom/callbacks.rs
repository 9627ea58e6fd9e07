//! A suite's callback URL over real HTTP: WeCom's URL check (the echostr encrypted for the
//! provider's corpid), each InfoType stored and answered `success`, refusals (401, 400), and
//! the suite token minted from the pushed ticket, again at once when WeCom ends it early.

use std::time::Duration;

use wxtoken::push::crypto::MsgCrypto;

use crate::support::helpers::*;
use crate::support::wecom::*;

#[actix_web::test]
async fn the_url_check_answers_the_echostr_decrypted_for_the_providers_corpid() {
    let app = start_wecom("active").await;
    let (check, plain) = app.fake.check_suite_url(SUITE_ID, None).await.unwrap();
    assert_eq!(check.status, Some(200), "{check:?}");
    assert_eq!(check.body, plain);
    // Encrypted for another corp: signed right, addressed wrong.
    let (check, _) = app
        .fake
        .check_suite_url(SUITE_ID, Some("wwanothercorp0001"))
        .await
        .unwrap();
    assert_eq!(check.status, Some(400), "{check:?}");
    // Signed with another Token: not WeCom.
    let crypto = MsgCrypto::new("otherToken1", AES_KEY, PROVIDER_CORPID).unwrap();
    let ts = now_secs().to_string();
    let (echostr, sig) = crypto.encrypt_signed("echo", &ts, "n1");
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("msg_signature", &sig)
        .append_pair("timestamp", &ts)
        .append_pair("nonce", "n1")
        .append_pair("echostr", &echostr)
        .finish();
    let answer = app
        .get(&app.suite_path(SUITE, &format!("/events?{query}")), None)
        .await;
    assert_eq!(answer.status, 401);
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[actix_web::test]
async fn a_pushed_ticket_mints_the_suite_token_and_no_ticket_is_a_clear_503() {
    let app = start_wecom("active").await;
    let path = app.suite_path(SUITE, "/suite_token");
    let before = app.get(&path, Some(KEY)).await;
    assert_eq!(before.status, 503);
    assert!(
        before.body["message"]
            .as_str()
            .unwrap()
            .contains("no suite_ticket"),
        "{}",
        before.body
    );
    let ready = app.get("/readyz", None).await;
    assert!(ready.body["wecom"][SUITE]
        .as_str()
        .unwrap()
        .contains("no suite_ticket"));
    app.suite_ready(SUITE, SUITE_ID).await;
    let answer = app.get(&path, Some(KEY)).await;
    assert!(
        answer.body["suite_access_token"].as_str().is_some(),
        "{}",
        answer.body
    );
    assert!(answer.body["expires_in"].as_u64().unwrap() > 0);
    assert!(answer.body["expires_at"].as_str().is_some());
    assert_eq!(app.fake.suite_tokens_minted(SUITE_ID), 1);
    // Another client may not read it: 403; an unknown suite is 404; no key is 401.
    assert_eq!(app.get(&path, Some(OTHER_KEY)).await.status, 403);
    assert_eq!(
        app.get(&app.suite_path("nope", "/suite_token"), Some(KEY))
            .await
            .status,
        404
    );
    assert_eq!(app.get(&path, None).await.status, 401);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.body["wecom"][SUITE], "ok", "{}", ready.body);
}

#[actix_web::test]
async fn a_suite_token_wecom_ends_early_is_minted_again_from_the_stored_ticket() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    app.fake.end_suite_tokens(SUITE_ID);
    // The exchange meets 42009, reports it, and its retry uses the new suite token.
    let token = app.install(SUITE, SUITE_ID, "wwcorp00000000001").await;
    assert!(!token.is_empty());
    assert_eq!(app.fake.suite_tokens_minted(SUITE_ID), 2);
    assert!(app.fake.suite_calls("get_permanent_code") >= 2);
}

#[actix_web::test]
async fn each_info_type_is_answered_success_and_acted_on() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000002";
    app.install(SUITE, SUITE_ID, corp).await;
    // change_auth: the grant read again.
    let push = app.fake.push_change_auth(SUITE_ID, corp).await.unwrap();
    assert!(push.accepted(), "{push:?}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.fake.suite_calls("get_auth_info") == 1
        })
        .await
    );
    // Another kind: stored and answered.
    let push = app
        .fake
        .push_suite_event(SUITE_ID, "change_contact", &[("AuthCorpId", corp)])
        .await
        .unwrap();
    assert!(push.accepted(), "{push:?}");
    // reset_permanent_code: the new code exchanged and stored in place of the old one.
    let push = app.fake.reset_permanent_code(SUITE_ID, corp).await.unwrap();
    assert!(push.accepted(), "{push:?}");
    let suite = app.state.wecom_suites[SUITE].clone();
    let new_code = app.fake.permanent_code(SUITE_ID, corp).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            suite
                .corp(corp)
                .and_then(|r| r.permanent_code)
                .is_some_and(|c| c.expose() == new_code)
        })
        .await,
        "the reset permanent code replaced the stored one"
    );
    assert_eq!(app.corp_token(SUITE, corp).await.status, 200);
    // cancel_auth: revoked.
    app.uninstall(SUITE_ID, corp).await;
    assert_eq!(app.corp_token(SUITE, corp).await.status, 410);
}

#[actix_web::test]
async fn a_callback_for_another_suite_or_unsigned_is_refused_and_stored_nowhere() {
    let app = start_wecom("active").await;
    // The template's keys are the suite's, so its push opens but names another receive id.
    let url = format!("{}/v1/wecom/suites/{SUITE}/events", app.base);
    assert!(app.fake.set_suite_callback_url(TEMPLATE_ID, Some(&url)));
    let (push, _) = app.fake.push_suite_ticket(TEMPLATE_ID).await.unwrap();
    assert_eq!(push.status, Some(400), "{push:?}");
    assert!(!app.state.wecom_suites[SUITE].has_ticket());
    let answer = app
        .post(
            &app.suite_path(SUITE, "/events?msg_signature=00&timestamp=1&nonce=2"),
            None,
            "<xml><Encrypt>AAAA</Encrypt></xml>",
        )
        .await;
    assert_eq!(answer.status, 401);
}

#[actix_web::test]
async fn without_its_provider_a_suite_checks_the_signature_and_not_the_receive_id() {
    // The template names no provider: its URL check cannot know the corpid.
    let tables = wecom_tables("active");
    let second = tables
        .match_indices("provider = \"vendor\"\n")
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    let tables = format!("{}{}", &tables[..second], &tables[second + 20..]);
    let app = TestApp::builder()
        .fake(start_wecom_fake().await)
        .config(&tables)
        .start()
        .await;
    route_callbacks(&app.fake, &app.base);
    let (check, plain) = app
        .fake
        .check_suite_url(TEMPLATE_ID, Some("wwanyprovider0001"))
        .await
        .unwrap();
    assert_eq!(check.status, Some(200), "{check:?}");
    assert_eq!(check.body, plain);
    // The suite that names its provider still refuses another receive id.
    let (check, _) = app
        .fake
        .check_suite_url(SUITE_ID, Some("wwanyprovider0001"))
        .await
        .unwrap();
    assert_eq!(check.status, Some(400), "{check:?}");
}
