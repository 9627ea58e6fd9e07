//! What the log of a server taking and delivering pushes holds at info level: ids, routes,
//! counts and reasons, never a message's content, the Token, the EncodingAESKey, a route's
//! signing key or a passive reply.

use std::time::Duration;

use wxtoken::config::MessageFormat;
use wxtoken::fake::messages::{
    event_message, push_message, text_message, MessageTarget, Mode, Retries,
};
use wxtoken::fake::{FakeConfig, FakeInbox, FakeWechat, InboxMode};

use crate::support::deliveries::{route, ROUTE_KEY};
use crate::support::helpers::*;
use crate::support::messages::{shop_target, shop_with_messages, SHOP_AES, SHOP_TOKEN};
use crate::support::process::serve_logging_at;

const SECRET_TEXT: &str = "my-card-number-4111111111111111";
const REPLY: &str = "<xml><Content><![CDATA[reply-only-for-the-user-77]]></Content></xml>";

#[actix_web::test]
async fn no_content_token_or_key_reaches_the_log_at_info() {
    let fake = FakeWechat::start(FakeConfig {
        apps: vec![(SHOP_APPID.into(), SHOP_SECRET.into())],
        ..FakeConfig::default()
    })
    .await
    .expect("fake");
    let replier = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    replier.set_mode(InboxMode::Reply {
        body: REPLY.into(),
        delay: Duration::ZERO,
    });
    // A second route that fails: its attempts are logged with their reasons.
    let failing = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    failing.set_mode(InboxMode::Fail);
    let dir = tempfile::tempdir().expect("dir");
    let config =
        format!(
        "[upstream]\nbase_url = \"{}\"\nmin_token_lifetime_secs = 2\n[store]\npath = {}\n{}{}{}{}",
        fake.base_url(),
        quoted(&dir.path().join("wxtoken.redb")),
        ConfigText::new().app(shop_with_messages(true, MessageFormat::Xml)),
        Client::new("ops", OPS_KEY).apps(&["*"]).admin(),
        route("bot", &replier.url(), "mode = \"reply\"\nreply_timeout_ms = 2000"),
        route("crm", &failing.url(), ""),
    );
    let (_server, base, log) = serve_logging_at(dir.path(), &config, "info");
    let target = shop_target(&base, MessageFormat::Xml);
    let once = Retries {
        timeout: Duration::from_secs(5),
        again: 0,
    };
    for (i, mode) in [Mode::Plaintext, Mode::Compatible, Mode::Safe]
        .into_iter()
        .enumerate()
    {
        let msg = text_message("gh_shop", "o-secret-user", SECRET_TEXT, 100 + i as u64);
        let got = push_message(&target, &msg, mode, once).await;
        assert_eq!(got.status, Some(200), "{got:?}");
    }
    let event = event_message("gh_shop", "o-secret-user", "CLICK", Some(SECRET_TEXT));
    assert_eq!(
        push_message(&target, &event, Mode::Safe, once).await.status,
        Some(200)
    );
    // Refused pushes: another Token, a key that does not open.
    let wrong = MessageTarget {
        token: "wrongToken1".into(),
        ..target.clone()
    };
    let msg = text_message("gh_shop", "o-secret-user", SECRET_TEXT, 200);
    assert_eq!(
        push_message(&wrong, &msg, Mode::Safe, once).await.status,
        Some(401)
    );
    // Let the failing route's attempts be made and logged.
    assert!(
        eventually(Duration::from_secs(5), || async {
            failing.received().len() >= 2
        })
        .await,
        "the failing route was tried"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("INFO"), "the log has info lines: {text}");
    for secret in [
        SECRET_TEXT,
        "o-secret-user",
        "reply-only-for-the-user-77",
        SHOP_TOKEN,
        SHOP_AES,
        ROUTE_KEY,
        SHOP_SECRET,
    ] {
        assert!(!text.contains(secret), "`{secret}` in the log:\n{text}");
    }
}
