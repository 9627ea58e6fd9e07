//! WeCom (企业微信) apps: one token per app, never per corp; early invalidation recovers.

use wxtoken::fake::Endpoint;

use crate::helpers::*;

const CORP: &str = "ww0000000000000001";
const APPS: &str = r#"
[[apps]]
name = "hr"
kind = "wecom"
corpid = "ww0000000000000001"
secret = "hr-agent-secret-0001"
[[apps]]
name = "crm"
kind = "wecom"
corpid = "ww0000000000000001"
secret = "crm-agent-secret-0002"
[[clients]]
name = "intranet"
key = "intranet-key-0000000001"
apps = ["hr", "crm"]
"#;
const KEY: &str = "intranet-key-0000000001";

async fn token(app: &TestApp, name: &str) -> String {
    let a = app.get(&format!("/v1/apps/{name}/token"), Some(KEY)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["access_token"].as_str().unwrap().to_string()
}

async fn wecom_app() -> TestApp {
    let spec = Spec::default();
    let fake = start_fake_with(
        &spec,
        &[],
        &[
            (CORP, "hr-agent-secret-0001"),
            (CORP, "crm-agent-secret-0002"),
        ],
    )
    .await;
    spawn_custom(spec, fake, APPS).await
}

#[actix_web::test]
async fn two_apps_of_one_corp_keep_their_own_tokens() {
    let app = wecom_app().await;
    let hr = token(&app, "hr").await;
    let crm = token(&app, "crm").await;
    assert_ne!(hr, crm);
    assert_eq!(
        Some(hr),
        app.fake.current_wecom_token(CORP, "hr-agent-secret-0001")
    );
    assert_eq!(
        Some(crm),
        app.fake.current_wecom_token(CORP, "crm-agent-secret-0002")
    );
    assert_eq!(app.fake.calls(Endpoint::WecomToken), 2);
    assert_eq!(
        app.fake.calls(Endpoint::Token),
        0,
        "never the official endpoint"
    );
}

#[actix_web::test]
async fn an_early_invalidated_token_is_replaced_when_reported() {
    let app = wecom_app().await;
    let hr = token(&app, "hr").await;
    let crm = token(&app, "crm").await;
    // WeCom ends the token early; calls with it now fail with 40014.
    app.fake.expire_wecom_token(CORP, "hr-agent-secret-0001");
    let probe = app
        .http
        .get(format!(
            "{}/cgi-bin/get_api_domain_ip?access_token={hr}",
            app.fake.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(probe["errcode"], 40014);
    let a = app
        .post(
            "/v1/apps/hr/token/invalidate",
            Some(KEY),
            serde_json::json!({ "access_token": hr }).to_string(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["refreshed"], true);
    let new = a.body["access_token"].as_str().unwrap();
    assert_ne!(new, hr);
    assert_eq!(
        Some(new.to_string()),
        app.fake.current_wecom_token(CORP, "hr-agent-secret-0001")
    );
    assert_eq!(
        token(&app, "crm").await,
        crm,
        "the other app of the corp is untouched"
    );
}
