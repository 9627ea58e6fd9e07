//! The WeCom service-provider facade as SDKs' suite clients call it (WxJava's
//! `WxCpTpServiceImpl`, EasyWeChat's OpenWork): `get_suite_token`, `get_corp_token` and
//! `get_provider_token` answered from wxtoken's own tokens with a client key for the secret,
//! without a call to WeCom, and WeCom's errcodes for what it refuses.

use futures_util::future::join_all;
use serde_json::json;

use crate::support::helpers::*;
use crate::support::wecom::*;

#[actix_web::test]
async fn suite_clients_get_their_tokens_without_a_call_to_wecom() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000040";
    let served = app.install(SUITE, SUITE_ID, corp).await;
    let calls = |e: &str| app.fake.suite_calls(e);
    let before = (calls("get_suite_token"), calls("get_corp_token"));

    // WxJava and EasyWeChat both POST {suite_id, suite_secret, suite_ticket}.
    let suite = app.facade_suite_token(KEY).await;
    assert_eq!(suite.status, 200);
    assert_eq!(suite.body["errcode"], 0, "{}", suite.body);
    let suite_token = suite.body["suite_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(suite.body["expires_in"].as_u64().unwrap() > 0);
    // ...then `get_corp_token?suite_access_token=` with {auth_corpid, permanent_code}: the
    // permanent code they send is ignored.
    let corp_token = app.facade_corp_token(&suite_token, corp).await;
    assert_eq!(corp_token.body["errcode"], 0, "{}", corp_token.body);
    assert_eq!(corp_token.body["access_token"], served.as_str());
    assert!(corp_token.body["expires_in"].as_u64().unwrap() > 0);
    // The provider client POSTs {corpid, provider_secret}.
    let provider = app
        .wecom_call(
            "/cgi-bin/service/get_provider_token",
            json!({"corpid": PROVIDER_CORPID, "provider_secret": KEY}),
        )
        .await;
    assert_eq!(provider.body["errcode"], 0, "{}", provider.body);
    let provider_token = provider.body["provider_access_token"].as_str().unwrap();
    let v1 = app
        .get(&format!("/v1/wecom/providers/{PROVIDER}/token"), Some(KEY))
        .await;
    assert_eq!(v1.body["provider_access_token"], provider_token);
    assert_eq!(
        (calls("get_suite_token"), calls("get_corp_token")),
        before,
        "answered from wxtoken's own tokens"
    );
    let provider_calls = calls("get_provider_token");
    app.wecom_call(
        "/cgi-bin/service/get_provider_token",
        json!({"corpid": PROVIDER_CORPID, "provider_secret": KEY}),
    )
    .await;
    assert_eq!(calls("get_provider_token"), provider_calls);
}

#[actix_web::test]
async fn wrong_keys_other_suites_and_foreign_tokens_get_wecom_errcodes() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let errcode = |a: &Answer| {
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["errcode"].as_i64().expect("an errcode")
    };
    assert_eq!(errcode(&app.facade_suite_token(SUITE_SECRET).await), 40001);
    assert_eq!(errcode(&app.facade_suite_token(OTHER_KEY).await), 48002);
    let unknown_suite = app
        .wecom_call(
            "/cgi-bin/service/get_suite_token",
            json!({"suite_id": "wwnosuchsuite000", "suite_secret": KEY}),
        )
        .await;
    assert_eq!(errcode(&unknown_suite), 40083);
    let missing = app
        .wecom_call(
            "/cgi-bin/service/get_suite_token",
            json!({"suite_id": SUITE_ID}),
        )
        .await;
    assert_eq!(errcode(&missing), 41004);
    let not_json = app
        .post("/cgi-bin/service/get_suite_token", None, "[1]")
        .await;
    assert_eq!(errcode(&not_json), 47001);
    // A suite token wxtoken never issued, and a corp token in its place.
    let corp = "wwcorp00000000041";
    let corp_token = app.install(SUITE, SUITE_ID, corp).await;
    assert_eq!(
        errcode(&app.facade_corp_token("not-a-suite-token", corp).await),
        40082
    );
    assert_eq!(
        errcode(&app.facade_corp_token(&corp_token, corp).await),
        40082
    );
    let suite_token = app.facade_suite_token_value().await;
    assert_eq!(
        errcode(
            &app.facade_corp_token(&suite_token, "wwnotinstalled00")
                .await
        ),
        40013
    );
    // The provider: a key of a client without it, an unknown corpid.
    let provider = |corpid: &str, key: &str| {
        app.wecom_call(
            "/cgi-bin/service/get_provider_token",
            json!({"corpid": corpid, "provider_secret": key}),
        )
    };
    assert_eq!(errcode(&provider(PROVIDER_CORPID, OTHER_KEY).await), 48002);
    assert_eq!(errcode(&provider("wwnosuchcorp0000", KEY).await), 40013);
    assert_eq!(
        errcode(&provider(PROVIDER_CORPID, "wrong-key-000000000").await),
        40001
    );
    // A GET is WeCom's "POST required".
    assert!(app.get("/cgi-bin/service/get_corp_token", None).await.body["errcode"].is_i64());
}

#[actix_web::test]
async fn two_hundred_concurrent_get_corp_token_cost_at_most_one_upstream_call() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000042";
    app.install_unserved(SUITE, SUITE_ID, corp).await;
    let suite_token = app.facade_suite_token_value().await;
    let before = app.fake.suite_calls("get_corp_token");
    let answers = join_all((0..200).map(|_| app.facade_corp_token(&suite_token, corp))).await;
    let tokens: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.body["errcode"], 0, "{}", a.body);
            a.body["access_token"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(tokens.len(), 1);
    assert!(app.fake.suite_calls("get_corp_token") - before <= 1);
}
