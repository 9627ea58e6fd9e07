//! The message URLs as WeChat uses them: the URL check, a push in each mode and format, the
//! refusals (each with its status, nothing taken), and a platform account's pushes.

use std::time::Duration;

use wxtoken::config::MessageFormat;
use wxtoken::fake::messages::{
    event_message, push_message, seal, text_message, MessageTarget, Mode, Retries,
};
use wxtoken::push::plain;

use crate::support::helpers::*;
use crate::support::messages::*;
use crate::support::platform::{platform_table, start_platform_fake, COMPONENT, PLATFORM};

const ONCE: Retries = Retries {
    timeout: Duration::from_secs(5),
    again: 0,
};

async fn shop_app(encrypted: bool, format: MessageFormat) -> TestApp {
    let config = ConfigText::new()
        .app(shop_with_messages(encrypted, format))
        .app(App::official("blog", BLOG_APPID, BLOG_SECRET))
        .client(Client::new("billing", BILLING_KEY).apps(&["*"]));
    TestApp::builder().config(&config.to_string()).start().await
}

fn check_query(token: &str, timestamp: u64, echostr: &str) -> String {
    let ts = timestamp.to_string();
    let sig = plain::signature(token, &ts, "12345");
    format!("signature={sig}&timestamp={ts}&nonce=12345&echostr={echostr}")
}

#[actix_web::test]
async fn the_url_check_echoes_only_a_fresh_signed_request() {
    let app = shop_app(false, MessageFormat::Xml).await;
    let url = |q: &str| format!("{}/v1/apps/shop/messages?{q}", app.base);
    let now = now_ms() / 1000;

    let (status, body) = raw_request(
        &app.http,
        "GET",
        &url(&check_query(SHOP_TOKEN, now, "e1c2h3o")),
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "e1c2h3o"));

    // Another Token, a stale timestamp, no signature: 401, and the echostr is never echoed.
    for q in [
        check_query("otherToken9", now, "e1c2h3o"),
        check_query(SHOP_TOKEN, now - 600, "e1c2h3o"),
        format!("timestamp={now}&nonce=12345&echostr=e1c2h3o"),
    ] {
        let (status, body) = raw_request(&app.http, "GET", &url(&q), "").await;
        assert_eq!(status, 401, "{q}: {body}");
        assert!(!body.contains("e1c2h3o"), "{body}");
    }
    // An app that takes no pushes, and one that does not exist: 404.
    let q = check_query(SHOP_TOKEN, now, "x");
    for name in ["blog", "nope"] {
        let url = format!("{}/v1/apps/{name}/messages?{q}", app.base);
        assert_eq!(
            raw_request(&app.http, "GET", &url, "").await.0,
            404,
            "{name}"
        );
    }
}

#[actix_web::test]
async fn a_push_is_taken_in_every_mode_and_format() {
    for (format, modes) in [
        (
            MessageFormat::Xml,
            [Mode::Plaintext, Mode::Compatible, Mode::Safe],
        ),
        (
            MessageFormat::Json,
            [Mode::Plaintext, Mode::Compatible, Mode::Safe],
        ),
    ] {
        let app = shop_app(true, format).await;
        let target = shop_target(&app.base, format);
        for (i, mode) in modes.into_iter().enumerate() {
            let msg = text_message("gh_shop", "openid-1", "hello", 7000 + i as u64);
            let got = push_message(&target, &msg, mode, ONCE).await;
            assert_eq!(
                (got.status, got.body.as_str(), got.attempts),
                (Some(200), "success", 1),
                "{format:?} {mode:?}: {got:?}"
            );
        }
    }
}

#[actix_web::test]
async fn plaintext_pushes_are_taken_without_a_key_and_encrypted_ones_are_refused() {
    let app = shop_app(false, MessageFormat::Xml).await;
    let target = shop_target(&app.base, MessageFormat::Xml);
    let event = event_message("gh_shop", "openid-1", "subscribe", None);
    let got = push_message(&target, &event, Mode::Plaintext, ONCE).await;
    assert_eq!((got.status, got.body.as_str()), (Some(200), "success"));
    let got = push_message(&target, &event, Mode::Safe, ONCE).await;
    assert_eq!(got.status, Some(400), "{got:?}");
    assert!(got.body.contains("encoding_aes_key"), "{}", got.body);
}

#[actix_web::test]
async fn a_push_not_shown_to_be_wechats_now_is_refused_with_its_status() {
    let app = shop_app(true, MessageFormat::Xml).await;
    let target = shop_target(&app.base, MessageFormat::Xml);
    let msg = text_message("gh_shop", "openid-1", "hello", 1);
    let send = |query: String, body: String| {
        let url = format!("{}?{query}", target.url);
        let http = app.http.clone();
        async move { raw_request(&http, "POST", &url, &body).await }
    };

    // Signed with another Token: 401 (plaintext's signature and safe mode's msg_signature).
    for mode in [Mode::Plaintext, Mode::Safe] {
        let other = MessageTarget {
            token: "otherToken9".into(),
            ..target.clone()
        };
        let (q, body) = seal(&other, &msg, mode).unwrap();
        assert_eq!(send(q, body).await.0, 401, "{mode:?}");
    }
    // Sealed for another appid with the right keys: 400 (misrouted, not unauthenticated).
    let elsewhere = MessageTarget {
        appid: BLOG_APPID.into(),
        ..target.clone()
    };
    let (q, body) = seal(&elsewhere, &msg, Mode::Safe).unwrap();
    assert_eq!(send(q, body).await.0, 400);
    // A signed Encrypt that does not decrypt: 400.
    let (q, body) = seal(&target, &msg, Mode::Safe).unwrap();
    let garbage = "QUJD".repeat(8);
    let sig = wxtoken::push::crypto::MsgCrypto::new(SHOP_TOKEN, SHOP_AES, SHOP_APPID).unwrap();
    let param = |name: &str| {
        let rest = q.split(&format!("{name}=")).nth(1).unwrap();
        rest.split('&').next().unwrap().to_owned()
    };
    let (ts, nonce) = (param("timestamp"), param("nonce"));
    let msg_sig = sig.signature(&ts, &nonce, &garbage);
    let q2 = q.split("&msg_signature=").next().unwrap().to_owned() + "&msg_signature=" + &msg_sig;
    let body2 = body.replace(
        body.split("<Encrypt><![CDATA[")
            .nth(1)
            .unwrap()
            .split("]]>")
            .next()
            .unwrap(),
        &garbage,
    );
    assert_eq!(send(q2, body2).await.0, 400);
    // A stale timestamp, correctly signed: 401.
    let ts_old = (now_ms() / 1000 - 3600).to_string();
    let sig_old = plain::signature(SHOP_TOKEN, &ts_old, "1");
    let doc = wxtoken::fake::messages::document(&msg, MessageFormat::Xml);
    let (status, _) = send(
        format!("signature={sig_old}&timestamp={ts_old}&nonce=1"),
        doc,
    )
    .await;
    assert_eq!(status, 401);
    // A body over the limit: 413, unread.
    let (q, _) = seal(&target, &msg, Mode::Plaintext).unwrap();
    let (status, _) = send(q, "x".repeat(65 * 1024)).await;
    assert_eq!(status, 413);
}

#[actix_web::test]
async fn a_platform_account_pushes_encrypted_with_the_platform_keys_even_unknown() {
    let fake = start_platform_fake(wxtoken::fake::FakeConfig::default()).await;
    let config = ConfigText::new()
        .raw(&platform_table())
        .client(Client::new("crm", "crm-key-000000000000000001").platforms(&[PLATFORM]));
    let app = TestApp::builder()
        .fake(fake)
        .config(&config.to_string())
        .start()
        .await;
    // An account wxtoken has never heard of: taken, since the signature proves the sender.
    let target = account_target(&app.base, "wxunknown0000001");
    let msg = text_message("gh_account", "openid-2", "hi", 42);
    let got = push_message(&target, &msg, Mode::Safe, ONCE).await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (Some(200), "success"),
        "{got:?}"
    );
    // Plaintext is not how accounts push: refused.
    let got = push_message(&target, &msg, Mode::Plaintext, ONCE).await;
    assert_eq!(got.status, Some(400), "{got:?}");
    // Sealed for another component appid: 400; an appid path that is no appid: 400.
    let other = MessageTarget {
        appid: "wxanothercomponent".into(),
        ..target.clone()
    };
    assert_eq!(
        push_message(&other, &msg, Mode::Safe, ONCE).await.status,
        Some(400)
    );
    let bad = account_target(&app.base, "wx%2F..%2Fx");
    assert_eq!(
        push_message(&bad, &msg, Mode::Safe, ONCE).await.status,
        Some(400)
    );
    // The URL check, signed with the platform's Token.
    let now = now_ms() / 1000;
    let q = check_query(crate::support::platform::MSG_TOKEN, now, "acc0unt");
    let (status, body) = raw_request(
        &app.http,
        "GET",
        &format!(
            "{}/v1/platforms/{PLATFORM}/accounts/wxunknown0000001/messages?{q}",
            app.base
        ),
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "acc0unt"));
    let _ = COMPONENT;
}

#[actix_web::test]
async fn a_retry_repeating_the_request_to_the_letter_is_answered_success_and_taken_once() {
    use crate::support::deliveries::{route, start_with_routes, until_nothing_pending, ROUTE_KEY};
    let inbox = wxtoken::fake::FakeInbox::start(ROUTE_KEY)
        .await
        .expect("inbox");
    let app = start_with_routes(&route("crm", &inbox.url(), "")).await;
    let target = shop_target(&app.base, MessageFormat::Xml);
    let msg = text_message("gh_shop", "openid-1", "hello", 4242);
    let (query, body) = seal(&target, &msg, Mode::Plaintext).unwrap();
    let url = format!("{}?{query}", target.url);
    for _ in 0..3 {
        let (status, answer) = raw_request(&app.http, "POST", &url, &body).await;
        assert_eq!((status, answer.as_str()), (200, "success"));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            inbox.delivered().len() == 1
        })
        .await
    );
    // With one push taken and two counted as duplicates, one delivery was written; once none
    // is pending it was made and removed, so nothing can deliver the push again.
    until_nothing_pending(&app.http, &app.base).await;
    assert_eq!(inbox.delivered().len(), 1, "delivered once");
    app.assert_metrics(&[
        (r#"wxtoken_pushes_total{result="taken",source="shop"}"#, 1.0),
        (
            r#"wxtoken_pushes_total{result="duplicate",source="shop"}"#,
            2.0,
        ),
    ])
    .await;
}
