//! The Open Platform server the facade and gateway tests share: the platform with a client of
//! its own and a gateway client, holding a component token, and `SHOP` authorized on demand.

use std::time::Duration;

use serde_json::json;
use wxtoken::fake::FakeConfig;

use super::config::Client;
use super::helpers::{Answer, TestApp};
use super::platform::{platform_and_crm, start_with_platform, COMPONENT};

/// May use the platform (component token, authorizer tokens, the facade).
pub const FACADE_KEY: &str = "facade-client-key-0000000001";
/// May use the platform and call WeChat through the gateway's proxy routes.
pub const PROXY_KEY: &str = "gateway-client-key-000000001";
pub const SHOP: &str = "wx5b3a1c9d7e8f6a42";

pub async fn spawn_facade() -> TestApp {
    spawn_facade_with(FakeConfig::default().expires_in).await
}

/// A server for the platform whose tokens (at the fake) live `expires_in` seconds, holding a
/// component token.
pub async fn spawn_facade_with(expires_in: u64) -> TestApp {
    let config = platform_and_crm(FACADE_KEY)
        .client(
            Client::new("gateway", PROXY_KEY)
                .platforms(&["saas"])
                .proxy(),
        )
        .to_string();
    let fake = FakeConfig {
        expires_in,
        overlap_secs: 1,
        ..FakeConfig::default()
    };
    let app = start_with_platform(fake, TestApp::builder().config(&config)).await;
    app.push_ticket().await;
    assert!(
        app.component_token_within(FACADE_KEY, Duration::from_secs(5))
            .await,
        "a component token"
    );
    app
}

/// SHOP authorizes the platform with these permission sets (pushed), and wxtoken serves its
/// token: the token it serves.
pub async fn authorized_shop(app: &TestApp, func_info: &[u32]) -> String {
    app.authorize(SHOP, func_info, FACADE_KEY).await
}

pub async fn facade_component_token(app: &TestApp, key: &str, ticket: &str) -> Answer {
    app.post(
        "/cgi-bin/component/api_component_token",
        None,
        json!({
            "component_appid": COMPONENT,
            "component_appsecret": key,
            "component_verify_ticket": ticket,
        })
        .to_string(),
    )
    .await
}
