//! The WeCom service provider the WeCom tests share: the suite `crm-suite`, the template
//! `crm-template` and the provider `vendor` as the fake and the configuration know them, and
//! the steps a test starts with (callbacks routed to the server, a ticket pushed, a corp
//! installed).

use std::time::Duration;

use wxtoken::config::Settings;
use wxtoken::fake::{FakeConfig, FakeSuite, FakeWechat};

use super::config::{Client, ConfigText};
use super::helpers::{custom_settings, eventually, Answer, Spec, TestApp};

pub const SUITE: &str = "crm-suite";
pub const SUITE_ID: &str = "ww4d5e6f7a8b9c0d1e";
pub const TEMPLATE: &str = "crm-template";
pub const TEMPLATE_ID: &str = "dk5e6f7a8b9c0d1e2f";
pub const SUITE_SECRET: &str = "suite-secret-value-000001";
pub const CALLBACK_TOKEN: &str = "suiteToken42";
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const PROVIDER: &str = "vendor";
pub const PROVIDER_CORPID: &str = "ww0a1b2c3d4e5f6a7b";
pub const PROVIDER_SECRET: &str = "provider-secret-value-0001";
pub const KEY: &str = "crm-wecom-client-key-000001";
pub const OTHER_KEY: &str = "other-wecom-client-key-00001";

fn fake_suite(suite_id: &str, template: bool) -> FakeSuite {
    FakeSuite {
        suite_id: suite_id.into(),
        suite_secret: SUITE_SECRET.into(),
        token: CALLBACK_TOKEN.into(),
        encoding_aes_key: AES_KEY.into(),
        template,
        provider_corpid: PROVIDER_CORPID.into(),
    }
}

/// `config` with the suite, the template and the provider of [`wecom_tables`] added.
pub fn with_wecom(config: FakeConfig) -> FakeConfig {
    FakeConfig {
        wecom_suites: vec![fake_suite(SUITE_ID, false), fake_suite(TEMPLATE_ID, true)],
        wecom_providers: vec![(PROVIDER_CORPID.into(), PROVIDER_SECRET.into())],
        ..config
    }
}

/// A fake that knows the suite, the template and the provider, pushing only when asked.
pub async fn start_wecom_fake() -> FakeWechat {
    FakeWechat::start(with_wecom(FakeConfig::default()))
        .await
        .expect("fake starts")
}

/// The suite, the template, the provider, `crm` (all of them) and `other` (an app-less client
/// of nothing WeCom but the template), with `corp_refresh`.
pub fn wecom_tables(corp_refresh: &str) -> String {
    let suite = |name: &str, kind: &str, id: &str| {
        format!(
            r#"
[[wecom_suites]]
name = "{name}"
kind = "{kind}"
suite_id = "{id}"
suite_secret = "{SUITE_SECRET}"
token = "{CALLBACK_TOKEN}"
encoding_aes_key = "{AES_KEY}"
provider = "{PROVIDER}"
corp_refresh = "{corp_refresh}"
"#
        )
    };
    ConfigText::new()
        .raw(&suite(SUITE, "suite", SUITE_ID))
        .raw(&suite(TEMPLATE, "template", TEMPLATE_ID))
        .raw(&format!(
            r#"
[[wecom_providers]]
name = "{PROVIDER}"
corpid = "{PROVIDER_CORPID}"
provider_secret = "{PROVIDER_SECRET}"
"#
        ))
        .client(
            Client::new("crm", KEY)
                .wecom_suites(&["*"])
                .wecom_providers(&[PROVIDER]),
        )
        .client(Client::new("other", OTHER_KEY).wecom_suites(&[TEMPLATE]))
        .to_string()
}

/// The server's settings on `store` against `fake`.
pub fn wecom_settings(fake: &FakeWechat, store: &std::path::Path) -> Settings {
    custom_settings(
        &Spec::default(),
        &fake.base_url(),
        store,
        &wecom_tables("active"),
    )
}

/// The server with the WeCom tables against a fresh fake, callbacks routed to it.
pub async fn start_wecom(corp_refresh: &str) -> TestApp {
    let app = TestApp::builder()
        .fake(start_wecom_fake().await)
        .config(&wecom_tables(corp_refresh))
        .start()
        .await;
    route_callbacks(&app.fake, &app.base);
    app
}

/// Points the fake's callbacks of both suites at the server at `base`.
pub fn route_callbacks(fake: &FakeWechat, base: &str) {
    for (name, id) in [(SUITE, SUITE_ID), (TEMPLATE, TEMPLATE_ID)] {
        let url = format!("{base}/v1/wecom/suites/{name}/events");
        assert!(fake.set_suite_callback_url(id, Some(&url)));
    }
}

/// Pushes a suite ticket to `suite_id`'s callback and checks the answer was `success`.
pub async fn push_suite_ticket(fake: &FakeWechat, suite_id: &str) -> String {
    let (push, ticket) = fake.push_suite_ticket(suite_id).await.expect("pushed");
    assert!(push.accepted(), "{push:?}");
    ticket
}

/// A ticket pushed to the suite, then `corpid` installs it (its `create_auth` pushed and
/// answered `success`): what a server the fake's callbacks reach starts from.
pub async fn ticket_and_install(fake: &FakeWechat, corpid: &str) {
    push_suite_ticket(fake, SUITE_ID).await;
    let code = fake.install_suite(SUITE_ID, corpid).expect("installed");
    let push = fake
        .push_create_auth(SUITE_ID, &code)
        .await
        .expect("pushed");
    assert!(push.accepted(), "{push:?}");
}

impl TestApp {
    pub fn suite_path(&self, name: &str, rest: &str) -> String {
        format!("/v1/wecom/suites/{name}{rest}")
    }

    /// The corp's token as `crm` reads it.
    pub async fn corp_token(&self, name: &str, corpid: &str) -> Answer {
        self.get(
            &self.suite_path(name, &format!("/corps/{corpid}/token")),
            Some(KEY),
        )
        .await
    }

    /// A ticket pushed and the suite token served: ready to install corps.
    pub async fn suite_ready(&self, name: &str, suite_id: &str) {
        push_suite_ticket(&self.fake, suite_id).await;
        let path = self.suite_path(name, "/suite_token");
        assert!(
            eventually(Duration::from_secs(10), || async {
                self.get(&path, Some(KEY)).await.status == 200
            })
            .await,
            "the suite token is served"
        );
    }

    /// `corpid` installs the suite (pushed), and the server holds its record once the AuthCode
    /// is exchanged; no token is asked for.
    pub async fn install_unserved(&self, name: &str, suite_id: &str, corpid: &str) {
        let code = self
            .fake
            .install_suite(suite_id, corpid)
            .expect("installed");
        let push = self
            .fake
            .push_create_auth(suite_id, &code)
            .await
            .expect("pushed");
        assert!(push.accepted(), "{push:?}");
        let suite = self.state.wecom_suites[name].clone();
        let held = eventually(Duration::from_secs(5), || async {
            suite.corp(corpid).is_some()
        });
        assert!(held.await, "the install is exchanged");
    }

    /// `corpid` installs the suite (pushed) and its token is served: the token.
    pub async fn install(&self, name: &str, suite_id: &str, corpid: &str) -> String {
        self.install_unserved(name, suite_id, corpid).await;
        assert!(
            eventually(Duration::from_secs(10), || async {
                self.corp_token(name, corpid).await.status == 200
            })
            .await,
            "the corp's token is served"
        );
        self.corp_token(name, corpid).await.body["access_token"]
            .as_str()
            .expect("a token")
            .to_string()
    }

    /// `corpid` uninstalls the suite: WeCom pushes `cancel_auth`, which the server takes.
    pub async fn uninstall(&self, suite_id: &str, corpid: &str) {
        let push = self
            .fake
            .cancel_suite(suite_id, corpid)
            .await
            .expect("pushed");
        assert!(push.accepted(), "{push:?}");
    }
}

/// The one value of `field` that every answer (each a 200) carries: many concurrent requests
/// for one credential must all get the same.
pub fn one_value(answers: &[Answer], field: &str) -> String {
    let values: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 200, "{}", a.body);
            a.body[field].as_str().expect("a string").to_string()
        })
        .collect();
    assert_eq!(values.len(), 1, "{field}: {values:?}");
    values.into_iter().next().unwrap_or_default()
}

/// The server with the WeCom tables (`corp_refresh = "active"`), its suite token served, and
/// `corpid` installed with its token served.
pub async fn start_with_corp(corpid: &str) -> TestApp {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    app.install(SUITE, SUITE_ID, corpid).await;
    app
}

impl TestApp {
    /// A POST to one of WeCom's paths on wxtoken, as an SDK sends it: JSON, no client key.
    pub async fn wecom_call(&self, path_and_query: &str, body: serde_json::Value) -> Answer {
        self.post(path_and_query, None, body.to_string()).await
    }

    /// The suite token as an SDK's suite client gets it from the facade with `key`.
    pub async fn facade_suite_token(&self, key: &str) -> Answer {
        self.wecom_call(
            "/cgi-bin/service/get_suite_token",
            serde_json::json!({"suite_id": SUITE_ID, "suite_secret": key, "suite_ticket": "any"}),
        )
        .await
    }

    /// The suite's token from the facade as `crm`; panics unless WeCom's success.
    pub async fn facade_suite_token_value(&self) -> String {
        let a = self.facade_suite_token(KEY).await;
        assert_eq!(a.body["errcode"], 0, "{}", a.body);
        a.body["suite_access_token"]
            .as_str()
            .expect("a suite token")
            .to_string()
    }

    /// A corp's token from the facade, with a suite token wxtoken gave.
    pub async fn facade_corp_token(&self, suite_token: &str, corpid: &str) -> Answer {
        self.wecom_call(
            &format!("/cgi-bin/service/get_corp_token?suite_access_token={suite_token}"),
            serde_json::json!({"auth_corpid": corpid, "permanent_code": "the-sdk-has-none"}),
        )
        .await
    }
}
