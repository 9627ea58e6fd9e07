//! The gateway the gateway tests share: `shop`, `blog` and the WeCom app `corp` behind a
//! `[proxy]` section, the `backend` client that calls WeChat through it, a token rotated
//! behind wxtoken's back, and a raw request whose answer is read as bytes.

use actix_web::web::Bytes;
use serde_json::Value;
use wxtoken::fake::FakeWechat;

use super::config::{App, Client, ConfigText};
use super::helpers::{
    client, TestApp, TestAppBuilder, BILLING_KEY, BLOG_APPID, BLOG_SECRET, SHOP_APPID, SHOP_SECRET,
};

/// May read `shop` and call WeChat through the proxy routes.
pub const BACKEND_KEY: &str = "backend-client-key-000000000003";
pub const CORPID: &str = "wwcorp0000000001";
pub const CORP_SECRET: &str = "corp-app-secret-value-0001";

/// `[proxy]` with the lines `proxy`, then `apps`, the WeCom app `corp`, the `billing` client
/// (reads `shop`) and the `backend` client (reads `shop` and `corp`, calls through the gateway).
pub fn gateway_config(proxy: &str, apps: impl IntoIterator<Item = App>) -> String {
    let config = apps.into_iter().fold(
        ConfigText::new().raw(&format!("[proxy]\n{proxy}")),
        ConfigText::app,
    );
    config
        .app(App::wecom("corp", CORPID, CORP_SECRET))
        .client(Client::new("billing", BILLING_KEY).apps(&["shop"]))
        .client(
            Client::new("backend", BACKEND_KEY)
                .apps(&["shop", "corp"])
                .proxy(),
        )
        .to_string()
}

/// `shop` with its secret inline.
pub fn shop() -> App {
    App::official("shop", SHOP_APPID, SHOP_SECRET)
}

/// The gateway's standard configuration: [`gateway_config`] with `shop` and `blog`.
pub fn apps_and_clients(proxy: &str) -> String {
    let blog = App::official("blog", BLOG_APPID, BLOG_SECRET);
    gateway_config(proxy, [shop(), blog])
}

/// The standard fake with the WeCom app `corp`, and the server of `config`.
pub fn gateway_builder<'a>(config: &str) -> TestAppBuilder<'a> {
    TestApp::builder()
        .wecom_apps(&[(CORPID, CORP_SECRET)])
        .config(config)
}

pub async fn gateway(proxy: &str) -> TestApp {
    gateway_builder(&apps_and_clients(proxy)).start().await
}

/// The gateway of [`gateway`], with a jsapi ticket kept for `shop`.
pub async fn gateway_with_jsapi_ticket() -> TestApp {
    let blog = App::official("blog", BLOG_APPID, BLOG_SECRET);
    let config = gateway_config("", [shop().line(r#"tickets = ["jsapi"]"#), blog]);
    gateway_builder(&config).start().await
}

/// Two fetches made behind wxtoken's back: its current token is now dead at WeChat (the
/// one before the newest keeps working for a while; older ones die at once).
pub async fn rotate_behind_wxtoken(fake: &FakeWechat) {
    let http = client();
    for _ in 0..2 {
        let url = format!(
            "{}/cgi-bin/token?grant_type=client_credential&appid={SHOP_APPID}&secret={SHOP_SECRET}",
            fake.base_url()
        );
        let resp = http.get(url).send().await.expect("fake answers");
        assert_eq!(resp.status(), 200);
    }
}

impl TestApp {
    /// A request of any method with `headers` and `body`, its answer read as bytes (up to
    /// 64 MiB): status, headers and body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, actix_web::http::header::HeaderMap, Bytes) {
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(k) = key {
            req = req.insert_header(("Authorization", format!("Bearer {k}")));
        }
        for (n, v) in headers {
            req = req.insert_header((*n, *v));
        }
        let mut resp = if body.is_empty() {
            req.send().await
        } else {
            req.send_body(body).await
        }
        .expect("request sent");
        let bytes = resp.body().limit(64 << 20).await.expect("body");
        (resp.status().as_u16(), resp.headers().clone(), bytes)
    }

    /// A GET with `key` (if any) and no other header, its answer read as bytes.
    pub async fn get_raw(
        &self,
        path: &str,
        key: Option<&str>,
    ) -> (u16, actix_web::http::header::HeaderMap, Bytes) {
        self.raw("GET", path, key, &[], vec![]).await
    }
}

/// An answer body as JSON, `null` when it is not JSON.
pub fn json(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}
