//! The Open Platform the platform tests share: the component `saas` as the fake WeChat and the
//! configuration know it, and the steps such a test starts with (pushes routed to the server,
//! a ticket pushed, an account authorized).

use std::time::Duration;

use wxtoken::fake::{FakeConfig, FakePlatform, FakeWechat};
use wxtoken::push::crypto::MsgCrypto;

use super::config::{Client, ConfigText};
use super::helpers::{eventually, Answer, TestApp, TestAppBuilder};

/// The platform's name in the configuration and in every route.
pub const PLATFORM: &str = "saas";
pub const COMPONENT: &str = "wx3c1f0a9d8e7b6a51";
pub const COMPONENT_SECRET: &str = "platform-component-secret";
pub const MSG_TOKEN: &str = "msgtoken123";
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// The fake's side of the platform: no event URL until the server's is known.
pub fn fake_platform() -> FakePlatform {
    FakePlatform {
        component_appid: COMPONENT.into(),
        component_secret: COMPONENT_SECRET.into(),
        token: MSG_TOKEN.into(),
        encoding_aes_key: AES_KEY.into(),
        event_url: None,
    }
}

/// The platform's message crypto, as WeChat seals the pushes to it.
pub fn crypto() -> MsgCrypto {
    MsgCrypto::new(MSG_TOKEN, AES_KEY, COMPONENT).expect("the test keys are valid")
}

/// Seconds since the Unix epoch: a push's `CreateTime` and timestamp.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A fake WeChat from `config` with the platform added, pushing tickets only when asked.
pub async fn start_platform_fake(config: FakeConfig) -> FakeWechat {
    FakeWechat::start(FakeConfig {
        platforms: vec![fake_platform()],
        ticket_push_interval: Duration::ZERO,
        ..config
    })
    .await
    .expect("fake WeChat starts")
}

/// The platform's `[[platforms]]` table (secrets inline), open for more keys of its own.
pub fn platform_table() -> String {
    format!(
        r#"
[[platforms]]
name = "{PLATFORM}"
component_appid = "{COMPONENT}"
component_secret = "{COMPONENT_SECRET}"
token = "{MSG_TOKEN}"
encoding_aes_key = "{AES_KEY}"
"#
    )
}

/// The platform's table and `crm`, with `key`, a client of the platform alone: how the tests
/// of one platform configure a server.
pub fn platform_and_crm(key: &str) -> ConfigText {
    ConfigText::new()
        .raw(&platform_table())
        .client(Client::new("crm", key).platforms(&[PLATFORM]))
}

/// Starts `server` (its configuration naming the platform) against a fake made from `fake`
/// with the platform added, the fake pushing to the server's event URL.
pub async fn start_with_platform(fake: FakeConfig, server: TestAppBuilder<'_>) -> TestApp {
    let app = server.fake(start_platform_fake(fake).await).start().await;
    route_pushes(&app.fake, &app.base);
    app
}

/// Points `fake`'s pushes at the event URL of the server at `base`.
pub fn route_pushes(fake: &FakeWechat, base: &str) {
    let url = format!("{base}/v1/platforms/{PLATFORM}/events");
    fake.set_event_url(COMPONENT, Some(&url))
        .expect("event URL set");
}

/// Pushes a fresh verify ticket from `fake` and checks the server answered `success`.
pub async fn push_ticket(fake: &FakeWechat) {
    let push = fake
        .push_verify_ticket(COMPONENT)
        .await
        .expect("ticket pushed");
    assert_eq!(
        (push.status, push.body.as_str()),
        (Some(200), "success"),
        "{push:?}"
    );
}

impl TestApp {
    /// Posts a push to the platform's event URL as WeChat would (`query` holds the signature).
    pub async fn post_event(&self, query: &str, body: String) -> Answer {
        let path = format!("/v1/platforms/{PLATFORM}/events?{query}");
        self.post(&path, None, body).await
    }

    /// Pushes a fresh verify ticket and checks the server answered `success`.
    pub async fn push_ticket(&self) {
        push_ticket(&self.fake).await;
    }

    /// Whether the component token is served to `key` within `limit`.
    pub async fn component_token_within(&self, key: &str, limit: Duration) -> bool {
        let path = format!("/v1/platforms/{PLATFORM}/component_token");
        eventually(limit, || async {
            self.get(&path, Some(key)).await.status == 200
        })
        .await
    }

    /// `appid` authorizes the platform with these permission sets (pushed), and the server
    /// serves its token to `key`: the token it serves.
    pub async fn authorize(&self, appid: &str, func_info: &[u32], key: &str) -> String {
        self.fake
            .authorize_and_push(COMPONENT, appid, func_info)
            .await
            .expect("authorized");
        let token_path = format!("/v1/platforms/{PLATFORM}/authorizers/{appid}/token");
        assert!(
            eventually(Duration::from_secs(10), || async {
                self.get(&token_path, Some(key)).await.status == 200
            })
            .await,
            "the server serves the account's token"
        );
        self.get(&token_path, Some(key)).await.body["access_token"]
            .as_str()
            .expect("a token")
            .to_string()
    }
}
