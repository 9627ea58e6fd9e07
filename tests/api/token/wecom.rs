//! WeCom (企业微信) apps: one token per app, never per corp; early invalidation recovers.

use wxtoken::fake::Endpoint;

use crate::support::helpers::*;

const CORP: &str = "ww0000000000000001";
const KEY: &str = "intranet-key-0000000001";

/// Two WeCom apps of one corp, and a client of both.
fn apps() -> String {
    const CORPID: &str = "ww0000000000000001";
    ConfigText::new()
        .app(App::wecom("hr", CORPID, "hr-agent-secret-0001"))
        .app(App::wecom("crm", CORPID, "crm-agent-secret-0002"))
        .client(Client::new("intranet", KEY).apps(&["hr", "crm"]))
        .to_string()
}

async fn token(app: &TestApp, name: &str) -> String {
    let a = app.get(&format!("/v1/apps/{name}/token"), Some(KEY)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.token().access_token
}

async fn wecom_app(spec: Spec) -> TestApp {
    TestApp::builder()
        .spec(spec)
        .wecom_apps(&[
            (CORP, "hr-agent-secret-0001"),
            (CORP, "crm-agent-secret-0002"),
        ])
        .config(&apps())
        .start()
        .await
}

#[actix_web::test]
async fn two_apps_of_one_corp_keep_their_own_tokens() {
    let app = wecom_app(Spec::default()).await;
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
    let app = wecom_app(Spec::default()).await;
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
    assert_eq!(a.token().refreshed, Some(true));
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

#[actix_web::test]
async fn wecom_tokens_are_refreshed_at_expiry_once_per_cycle() {
    // WeCom returns the same token until it expires, so asking early only brings it back:
    // wxtoken refreshes at expiry. 3 s tokens over 8 s: about three tokens, one fetch each.
    // A Get in the token's last second waits for the refresh a second after expiry: give it
    // the production wait limit, or a slow disk on a busy machine makes it miss.
    let app = wecom_app(Spec {
        expires_in: 3,
        wait_limit: std::time::Duration::from_secs(5),
        ..Spec::default()
    })
    .await;
    let mut seen = std::collections::HashSet::new();
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(8) {
        let t = token(&app, "hr").await;
        assert_eq!(app.fake.validity(&t), wxtoken::fake::Validity::Valid);
        seen.insert(t);
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let minted = app.fake.wecom_minted(CORP, "hr-agent-secret-0001");
    assert!(seen.len() >= 3, "{} tokens", seen.len());
    assert!(minted <= seen.len() as u64 + 1, "{minted} tokens minted");
    let calls = app.fake.calls(Endpoint::WecomToken);
    // Two apps, one call per token each, give or take a retry at a boundary.
    assert!(
        calls <= 2 * (minted + 1),
        "{calls} gettoken calls for {minted} hr tokens"
    );
    // No early call that brought back the old token was counted as a failure.
    let text = app.metrics_text().await;
    let failures: f64 = text
        .lines()
        .filter(|l| l.starts_with("wxtoken_token_refreshes_total{app=\"hr\",result=\"failure\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failures, 0.0, "{text}");
}
