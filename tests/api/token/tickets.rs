//! Tickets and JS-SDK signatures: dependent credentials kept fresh with the access token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};
use wxtoken::fake::{Endpoint, Validity};
use wxtoken::token::messages::TokenChanged;

use crate::support::helpers::*;

const KEY: &str = "web-client-key-000000001";

/// `shop` with its tickets, `blog`, and a client of both.
fn apps() -> String {
    let shop = App::official("shop", SHOP_APPID, SHOP_SECRET);
    ConfigText::new()
        .app(shop.line(r#"tickets = ["jsapi", "wx_card"]"#))
        .app(App::official("blog", BLOG_APPID, BLOG_SECRET))
        .client(Client::new("web", KEY).apps(&["*"]))
        .to_string()
}

/// The standard fake, and a server of [`apps`].
async fn spawn() -> TestApp {
    TestApp::builder().config(&apps()).start().await
}

async fn ticket(app: &TestApp, kind: &str) -> String {
    let a = app
        .get(&format!("/v1/apps/shop/ticket/{kind}"), Some(KEY))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["ticket"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn tickets_are_served_and_valid() {
    let app = spawn().await;
    let a = app.get("/v1/apps/shop/ticket/jsapi", Some(KEY)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["app"], "shop");
    assert_eq!(a.body["type"], "jsapi");
    let t = a.body["ticket"].as_str().unwrap();
    assert_eq!(app.fake.ticket_validity(t), Validity::Valid);
    assert_eq!(
        Some(t.to_string()),
        app.fake.current_ticket(SHOP_APPID, "jsapi")
    );
    assert!(a.body["expires_in"].as_u64().unwrap() > 7000);
    assert!(a.body["expires_at"].is_string());
    let card = ticket(&app, "wx_card").await;
    assert_eq!(Some(card), app.fake.current_ticket(SHOP_APPID, "wx_card"));
    assert_eq!(app.fake.tickets_minted(SHOP_APPID), 2, "one per type");

    for path in ["/v1/apps/shop/ticket/nope", "/v1/apps/blog/ticket/jsapi"] {
        let a = app.get(path, Some(KEY)).await;
        assert_eq!(a.status, 404, "{path}");
        assert_eq!(a.error().error, "unknown_ticket");
    }
    assert_eq!(
        app.get("/v1/apps/shop/ticket/jsapi", None).await.status,
        401
    );
    // The ticket waited for the token instead of failing without one.
    let text = app.metrics_text().await;
    for trigger in ["startup", "scheduled"] {
        let series = format!(
            r#"wxtoken_token_refreshes_total{{app="shop:jsapi_ticket",result="failure",trigger="{trigger}"}}"#
        );
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    }
    // Tickets have their own metrics series.
    assert!(
        app.metric(r#"wxtoken_token_seconds_left{app="shop:jsapi_ticket"}"#)
            .await
            .unwrap()
            > 7000.0
    );
}

#[actix_web::test]
async fn a_new_token_brings_a_new_ticket() {
    let app = spawn().await;
    let old_ticket = ticket(&app, "jsapi").await;
    let token = app.get("/v1/apps/shop/token", Some(KEY)).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let before = app.fake.tickets_minted(SHOP_APPID);
    app.fake.kill_token(&token);
    app.post(
        "/v1/apps/shop/token/invalidate",
        Some(KEY),
        serde_json::json!({ "access_token": token }).to_string(),
    )
    .await;
    let refetched = eventually(Duration::from_secs(3), || async {
        ticket(&app, "jsapi").await != old_ticket
    })
    .await;
    assert!(refetched, "the ticket follows the token");
    // Both ticket types follow it, each once.
    assert!(
        eventually(Duration::from_secs(3), || async {
            app.fake.tickets_minted(SHOP_APPID) == before + 2
        })
        .await
    );
    assert_eq!(
        app.fake.ticket_validity(&ticket(&app, "jsapi").await),
        Validity::Valid
    );
}

#[actix_web::test]
async fn a_rejected_token_at_getticket_is_replaced_then_the_ticket_fetched() {
    let app = spawn().await;
    let old_ticket = ticket(&app, "jsapi").await;
    let tokens_before = app.minted(SHOP_APPID);
    let tickets_before = app.fake.tickets_minted(SHOP_APPID);
    let calls_before = app.fake.calls(Endpoint::Ticket);

    // Another process fetched tokens for this appid: getticket answers 40001 (the token is
    // not the latest), and so does WeChat when wxtoken asks about the token.
    let apps = app.state.apps.load();
    let shop = apps.get("shop").unwrap();
    let current = shop.status.load().token.clone().unwrap();
    assert!(app.fake.kill_token(current.token.expose()));
    let jsapi = &shop.tickets[&wxtoken::config::TicketKind::Jsapi];
    // As the token actor announces its next token. (Not an arbitrary huge generation: the
    // ticket would stay behind it, and be refetched, whatever token it got.)
    let next = shop.status.load().token.as_ref().unwrap().generation + 1;
    jsapi
        .addr
        .send(TokenChanged { generation: next })
        .await
        .unwrap();

    let recovered = eventually(Duration::from_secs(5), || async {
        ticket(&app, "jsapi").await != old_ticket
    })
    .await;
    assert!(recovered, "the ticket was fetched again with a new token");
    assert_eq!(
        app.minted(SHOP_APPID),
        tokens_before + 1,
        "the token was replaced once"
    );
    assert!(app.fake.calls(Endpoint::Ticket) >= calls_before + 2);
    assert!(app.fake.tickets_minted(SHOP_APPID) > tickets_before);
    let t = ticket(&app, "jsapi").await;
    assert_eq!(app.fake.ticket_validity(&t), Validity::Valid);
}

#[actix_web::test]
async fn jssdk_signatures_are_computed_server_side() {
    let app = spawn().await;
    let page = "https://shop.example.com/item?id=42&from=share";
    let a = app
        .post(
            "/v1/apps/shop/jssdk/signature",
            Some(KEY),
            serde_json::json!({ "url": format!("{page}#reviews") }).to_string(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["appId"], SHOP_APPID);
    let ts = a.body["timestamp"].as_u64().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) <= 5);
    let nonce = a.body["nonceStr"].as_str().unwrap();
    assert_eq!(nonce.len(), 16);
    // Recomputed here from the ticket WeChat (the fake) issued, without the fragment.
    let ticket = app.fake.current_ticket(SHOP_APPID, "jsapi").unwrap();
    let plain = format!("jsapi_ticket={ticket}&noncestr={nonce}&timestamp={ts}&url={page}");
    let expected = hex::encode(Sha1::digest(plain.as_bytes()));
    assert_eq!(a.body["signature"], expected.as_str());
    assert!(
        a.body.get("ticket").is_none(),
        "the ticket itself is never sent"
    );

    for bad in [
        r#"{"url":"/relative"}"#,
        r#"{"url":"ftp://x/y"}"#,
        r#"{}"#,
        "nope",
    ] {
        let a = app
            .post("/v1/apps/shop/jssdk/signature", Some(KEY), bad)
            .await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    let a = app
        .post(
            "/v1/apps/blog/jssdk/signature",
            Some(KEY),
            r#"{"url":"https://x/"}"#,
        )
        .await;
    assert_eq!(a.status, 404, "no jsapi ticket configured for blog");
}
