//! The WeChat-compatible facade: SDKs pointed at wxtoken get the shared token with a client
//! key as their "secret", and can never rotate it.

use crate::support::helpers::*;

fn facade_url(appid: &str, secret: &str) -> String {
    format!("/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}")
}

#[actix_web::test]
async fn token_endpoint_in_wechat_format() {
    let app = TestApp::builder().start().await;
    let shared = app.shop_token().await;
    let a = app.get(&facade_url(SHOP_APPID, BILLING_KEY), None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["access_token"], shared.as_str());
    assert!(a.body["expires_in"].as_u64().unwrap() > 7000);
    assert!(a.body.get("errcode").is_none());

    for (appid, secret, errcode) in [
        (SHOP_APPID, "not-a-client-key-00000", 40125),
        ("wxunknown", BILLING_KEY, 40013),
        (BLOG_APPID, BILLING_KEY, 40164),
        (SHOP_APPID, SHOP_SECRET, 40125),
    ] {
        let a = app.get(&facade_url(appid, secret), None).await;
        assert_eq!(a.status, 200, "WeChat answers errors with 200");
        assert_eq!(a.body["errcode"], errcode, "{appid}: {}", a.body);
        assert!(a.body["errmsg"].is_string());
    }
    let a = app
        .get(
            &format!("/cgi-bin/token?appid={SHOP_APPID}&secret={BILLING_KEY}"),
            None,
        )
        .await;
    assert_eq!(a.body["errcode"], 40002);
    assert_eq!(app.minted(SHOP_APPID), 1, "facade clients never fetch");
}

#[actix_web::test]
async fn stable_token_endpoint_never_rotates() {
    let app = TestApp::builder().start().await;
    let shared = app.shop_token().await;
    for force in [false, true] {
        let a = app
            .post(
                "/cgi-bin/stable_token",
                None,
                serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": SHOP_APPID,
                    "secret": OPS_KEY,
                    "force_refresh": force,
                })
                .to_string(),
            )
            .await;
        assert_eq!(a.body["access_token"], shared.as_str(), "{}", a.body);
    }
    let a = app.post("/cgi-bin/stable_token", None, "not json").await;
    assert_eq!(a.body["errcode"], 47001);
    assert_eq!(app.minted(SHOP_APPID), 1);
}

/// wechatpy, a real SDK from PyPI (installed by scripts/test), fetching through the facade.
/// wechatpy 1.x hard-codes WeChat's token URL, so the client is subclassed to call its own
/// fetch-and-parse routine with the facade's URL; all parsing and error handling is the SDK's.
const WECHATPY: &str = r#"
import sys
from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException
base, appid, secret = sys.argv[1:4]
class Facade(WeChatClient):
    def fetch_access_token(self):
        return self._fetch_access_token(url=base + "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})
try:
    print("token", Facade(appid, secret).access_token)
except WeChatClientException as e:
    print("errcode", e.errcode)
"#;

#[actix_web::test]
async fn wechatpy_sdk_gets_the_shared_token() {
    crate::support::wechatpy::require_wechatpy();
    let app = TestApp::builder().start().await;
    let shared = app.shop_token().await;
    let run = |secret: &'static str| {
        let args = vec![app.base.clone(), SHOP_APPID.into(), secret.into()];
        async move {
            crate::support::wechatpy::python(WECHATPY, args)
                .await
                .trim()
                .to_string()
        }
    };
    assert_eq!(run(BILLING_KEY).await, format!("token {shared}"));
    assert_eq!(run("wrong-client-key-0000000").await, "errcode 40125");
    assert_eq!(app.minted(SHOP_APPID), 1);
}
