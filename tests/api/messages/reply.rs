//! `mode = "reply"`: the receiver's 200 body within `reply_timeout_ms` is WeChat's passive
//! reply; a late one is still the route's delivery, and WeChat gets `success` at the deadline.

use std::time::{Duration, Instant};

use wxtoken::fake::{FakeInbox, InboxMode};

use crate::support::deliveries::*;
use crate::support::helpers::*;

const REPLY: &str =
    "<xml><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content></xml>";

/// An inbox answering every delivery with [`REPLY`] after `delay`, and a server whose route
/// `bot` to it is in reply mode with `timeout_ms`.
async fn replying_bot(delay: Duration, timeout_ms: u64) -> (FakeInbox, TestApp) {
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    inbox.set_mode(InboxMode::Reply {
        body: REPLY.into(),
        delay,
    });
    let mode = format!("mode = \"reply\"\nreply_timeout_ms = {timeout_ms}");
    let app = start_with_routes(&route("bot", &inbox.url(), &mode)).await;
    (inbox, app)
}

#[actix_web::test]
async fn a_reply_in_time_is_the_passive_reply_and_the_delivery() {
    let (inbox, app) = replying_bot(Duration::from_millis(100), 2000).await;
    let pushed = push_text(&app.base, 1).await;
    assert_eq!(pushed.status, Some(200));
    assert_eq!(pushed.body, REPLY);
    // The reply attempt's outcome written, the delivery is gone: no worker can make it again.
    // A worker making it alongside the reply attempt (its delivery due at once instead of
    // claimed for a lease) would have reached the inbox before then, as the inbox holds each
    // answer 100 ms.
    until_nothing_pending(&app.http, &app.base).await;
    assert_eq!(inbox.received().len(), 1, "made once, by the reply attempt");
    assert_eq!(
        app.metric(r#"wxtoken_deliveries_total{result="reply",route="bot"}"#)
            .await,
        Some(1.0)
    );
}

#[actix_web::test]
async fn a_late_reply_answers_success_at_the_deadline_and_still_counts_as_delivered() {
    let (inbox, app) = replying_bot(Duration::from_millis(1500), 300).await;
    let started = Instant::now();
    let pushed = push_text(&app.base, 2).await;
    let took = started.elapsed();
    assert_eq!(
        (pushed.status, pushed.body.as_str()),
        (Some(200), "success")
    );
    assert!(
        took < Duration::from_millis(1200),
        "answered at the deadline, not the reply: {took:?}"
    );
    // While the receiver still holds its answer, the delivery is written as claimed for a lease
    // and listed as pending: what the wait below relies on.
    assert_eq!(listed(&app.http, &app.base, "pending", 10).await.len(), 1);
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.metric(r#"wxtoken_deliveries_total{result="delivered",route="bot"}"#)
                .await
                == Some(1.0)
        })
        .await
    );
    // Nothing delivers it a second time when the lease ends, and no wait for that is needed:
    // the reply attempt's outcome removes the delivery, so no claim is left to lapse. Were the
    // outcome of a late reply not written, the delivery would stay pending until a worker made
    // it again after the lease, and the inbox would have a second request by the time none is
    // pending.
    until_nothing_pending(&app.http, &app.base).await;
    assert_eq!(inbox.received().len(), 1);
    assert_eq!(
        app.metric(r#"wxtoken_deliveries_total{result="reply",route="bot"}"#)
            .await,
        Some(0.0)
    );
}

#[actix_web::test]
async fn a_reply_to_a_safe_mode_push_is_sealed_as_wechat_and_wechatpy_open_it() {
    use wxtoken::config::MessageFormat;
    use wxtoken::fake::messages::{push_message, text_message, Mode, Retries};

    use crate::support::messages::{shop_target, shop_with_messages, SHOP_AES, SHOP_TOKEN};
    use crate::support::wechatpy::{require_wechatpy, wechatpy};

    require_wechatpy();
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    inbox.set_mode(InboxMode::Reply {
        body: REPLY.into(),
        delay: Duration::ZERO,
    });
    let config = ConfigText::new()
        .app(shop_with_messages(true, MessageFormat::Xml))
        .client(Client::new("ops", OPS_KEY).apps(&["*"]).admin())
        .raw(&route(
            "bot",
            &inbox.url(),
            "mode = \"reply\"\nreply_timeout_ms = 2000",
        ))
        .to_string();
    let app = TestApp::builder()
        .config(&config)
        .adjust(|(_, o)| o.hub = FAST_HUB)
        .start()
        .await;
    let fields = text_message("gh_shop", "o-user-1", "hello", 31);
    let once = Retries {
        timeout: Duration::from_secs(5),
        again: 0,
    };
    let target = shop_target(&app.base, MessageFormat::Xml);
    let pushed = push_message(&target, &fields, Mode::Safe, once).await;
    // The fake opened the sealed reply as WeChat does (signature, appid).
    assert_eq!(pushed.reply.as_deref(), Some(REPLY), "{pushed:?}");
    assert_ne!(pushed.body, REPLY, "sealed, not plaintext");
    // And so does wechatpy, from the reply's own MsgSignature, TimeStamp and Nonce.
    let field = |name: &str| {
        let open = format!("<{name}>");
        let rest = pushed.body.split(&open).nth(1).expect(name);
        let value = rest.split(&format!("</{name}>")).next().unwrap();
        value
            .trim_start_matches("<![CDATA[")
            .trim_end_matches("]]>")
            .to_owned()
    };
    let opened = wechatpy(serde_json::json!({
        "token": SHOP_TOKEN, "key": SHOP_AES, "appid": SHOP_APPID, "op": "open",
        "messages": [{
            "body": pushed.body,
            "msg_signature": field("MsgSignature"),
            "timestamp": field("TimeStamp"),
            "nonce": field("Nonce"),
        }],
    }));
    assert_eq!(opened, vec![serde_json::json!(REPLY)]);
}

#[actix_web::test]
async fn wechat_retrying_a_push_still_waiting_for_its_reply_gets_success_and_one_delivery() {
    use wxtoken::config::MessageFormat;
    use wxtoken::fake::messages::{push_message, text_message, Mode, Retries};

    use crate::support::messages::shop_target;

    let (inbox, app) = replying_bot(Duration::from_millis(1500), 3000).await;
    // A WeChat in a hurry: it gives up on an answer after 300 ms and sends the push again.
    let impatient = Retries {
        timeout: Duration::from_millis(300),
        again: 3,
    };
    let fields = text_message("gh_shop", "o-user-1", "hello", 77);
    let target = shop_target(&app.base, MessageFormat::Xml);
    let pushed = push_message(&target, &fields, Mode::Plaintext, impatient).await;
    assert_eq!(
        (pushed.attempts, pushed.status, pushed.body.as_str()),
        (2, Some(200), "success"),
        "{pushed:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            inbox.delivered().len() == 1
        })
        .await
    );
    // The retry was a duplicate, so it wrote no delivery; the push's one delivery is gone once
    // its reply attempt's outcome is written. Nothing is left to deliver it again.
    app.assert_metrics(&[
        (r#"wxtoken_pushes_total{result="taken",source="shop"}"#, 1.0),
        (
            r#"wxtoken_pushes_total{result="duplicate",source="shop"}"#,
            1.0,
        ),
    ])
    .await;
    until_nothing_pending(&app.http, &app.base).await;
    assert_eq!(
        inbox.received().len(),
        1,
        "the retry made no second delivery"
    );
}
