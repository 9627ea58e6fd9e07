//! A corp's JS-SDK tickets over real HTTP: `jsapi` (the corp's) and `agent_jsapi` (the app's)
//! fetched once with the corp token however many ask, the signature checked against the
//! ticket served, and the corp routes' refusals: unknown type and corp 404, another suite's
//! client 403, a revoked corp 410, a refused permanent code 409.

use futures_util::future::join_all;
use wxtoken::fake::CorpState;

use crate::support::wecom::*;

fn ticket_path(corp: &str, kind: &str) -> String {
    format!("/v1/wecom/suites/{SUITE}/corps/{corp}/ticket/{kind}")
}

fn signature_path(corp: &str) -> String {
    format!("/v1/wecom/suites/{SUITE}/corps/{corp}/jssdk/signature")
}

#[actix_web::test]
async fn both_tickets_are_fetched_once_with_the_corp_token_and_served_to_many() {
    let corp = "wwcorp00000000030";
    let app = start_with_corp(corp).await;
    for (kind, fake_kind, endpoint) in [
        ("jsapi", "jsapi", "get_jsapi_ticket"),
        ("agent_jsapi", "agent_config", "ticket/get"),
    ] {
        let path = ticket_path(corp, kind);
        let answers = join_all((0..50).map(|_| app.get(&path, Some(KEY)))).await;
        one_value(&answers, "ticket");
        assert_eq!(answers[0].body["type"], kind);
        assert_eq!(answers[0].body["corpid"], corp);
        assert!(answers[0].body["expires_in"].as_u64().unwrap() > 7000);
        assert_eq!(app.fake.suite_calls(endpoint), 1, "{kind}");
        assert_eq!(app.fake.corp_tickets_minted(SUITE_ID, corp, fake_kind), 1);
    }
}

#[actix_web::test]
async fn the_signature_is_the_js_sdk_one_with_the_corps_ticket_and_corpid() {
    let corp = "wwcorp00000000031";
    let app = start_with_corp(corp).await;
    let url = "https://crm.example.com/page?x=1";
    for (kind, body) in [
        ("jsapi", format!(r#"{{"url":"{url}"}}"#)),
        (
            "agent_jsapi",
            format!(r#"{{"url":"{url}","type":"agent_jsapi"}}"#),
        ),
    ] {
        let signed = app.post(&signature_path(corp), Some(KEY), body).await;
        assert_eq!(signed.status, 200, "{}", signed.body);
        assert_eq!(signed.body["appId"], corp);
        let ticket = app.get(&ticket_path(corp, kind), Some(KEY)).await;
        let expected = wxtoken::jssdk::signature(
            ticket.body["ticket"].as_str().unwrap(),
            signed.body["nonceStr"].as_str().unwrap(),
            signed.body["timestamp"].as_u64().unwrap(),
            url,
        );
        assert_eq!(signed.body["signature"], expected.as_str(), "{kind}");
    }
    let bad = app
        .post(
            &signature_path(corp),
            Some(KEY),
            format!(r#"{{"url":"{url}","type":"wx_card"}}"#),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[actix_web::test]
async fn the_corp_routes_refusals_hold_for_tickets() {
    let corp = "wwcorp00000000032";
    let app = start_with_corp(corp).await;
    let unknown_type = app.get(&ticket_path(corp, "wx_card"), Some(KEY)).await;
    assert_eq!(unknown_type.status, 404, "{}", unknown_type.body);
    let unknown_corp = app
        .get(&ticket_path("wwcorp00000000039", "jsapi"), Some(KEY))
        .await;
    assert_eq!(unknown_corp.status, 404, "{}", unknown_corp.body);
    assert_eq!(app.get(&ticket_path(corp, "jsapi"), None).await.status, 401);
    let other = app.get(&ticket_path(corp, "jsapi"), Some(OTHER_KEY)).await;
    assert_eq!(other.status, 403, "{}", other.body);

    let refused = "wwcorp00000000033";
    app.install_unserved(SUITE, SUITE_ID, refused).await;
    app.fake
        .set_corp_state(SUITE_ID, refused, CorpState::CodeRefused);
    let answer = app.get(&ticket_path(refused, "jsapi"), Some(KEY)).await;
    assert_eq!(answer.status, 409, "{}", answer.body);

    app.uninstall(SUITE_ID, corp).await;
    let revoked = app.get(&ticket_path(corp, "agent_jsapi"), Some(KEY)).await;
    assert_eq!(revoked.status, 410, "{}", revoked.body);
    let signed = app
        .post(
            &signature_path(corp),
            Some(KEY),
            r#"{"url":"https://a.example/"}"#,
        )
        .await;
    assert_eq!(signed.status, 410, "{}", signed.body);
    assert!(!revoked.body.to_string().contains("ticket\":"));
}
