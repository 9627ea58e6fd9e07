//! The message URLs the message tests push to: an app `shop` taking pushes (Token, key, format
//! of the test's choosing), and the fake's targets for it and for the platform's accounts.

use wxtoken::config::MessageFormat;
use wxtoken::fake::messages::MessageTarget;

use super::config::App;
use super::helpers::{SHOP_APPID, SHOP_SECRET};
use super::platform::{AES_KEY, COMPONENT, MSG_TOKEN, PLATFORM};

/// The message Token and EncodingAESKey of the app `shop` in these tests.
pub const SHOP_TOKEN: &str = "shopToken42";
pub const SHOP_AES: &str = "ShopShopShopShopShopShopShopShopShopShop123";

/// `shop` taking pushes: its Token, its key when `encrypted`, and `format`.
pub fn shop_with_messages(encrypted: bool, format: MessageFormat) -> App {
    let mut app = App::official("shop", SHOP_APPID, SHOP_SECRET)
        .line(&format!("message_token = \"{SHOP_TOKEN}\""))
        .line(&format!("message_format = \"{}\"", format.as_str()));
    if encrypted {
        app = app.line(&format!("encoding_aes_key = \"{SHOP_AES}\""));
    }
    app
}

/// The fake's target for `shop`'s message URL on the server at `base`.
pub fn shop_target(base: &str, format: MessageFormat) -> MessageTarget {
    MessageTarget {
        url: format!("{base}/v1/apps/shop/messages"),
        token: SHOP_TOKEN.into(),
        encoding_aes_key: Some(SHOP_AES.into()),
        appid: SHOP_APPID.into(),
        format,
    }
}

/// The fake's target for the message URL of the platform's account `appid`.
pub fn account_target(base: &str, appid: &str) -> MessageTarget {
    MessageTarget {
        url: format!("{base}/v1/platforms/{PLATFORM}/accounts/{appid}/messages"),
        token: MSG_TOKEN.into(),
        encoding_aes_key: Some(AES_KEY.into()),
        appid: COMPONENT.into(),
        format: MessageFormat::Xml,
    }
}

/// Status and text body of a request to the server at `base` (message URLs answer text).
pub async fn raw_request(http: &awc::Client, method: &str, url: &str, body: &str) -> (u16, String) {
    let req = match method {
        "GET" => http.get(url),
        _ => http.post(url).insert_header(("Content-Type", "text/xml")),
    };
    let mut res = req.send_body(body.to_owned()).await.expect("request sent");
    let bytes = res.body().limit(1 << 20).await.expect("body read");
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}
