//! The Open Platform's own events as deliveries: a route with `info_types` receives the
//! authorization events wxtoken has acted on, and an account's message goes to a route of its
//! platform; the verify ticket stays internal.

use std::time::Duration;

use wxtoken::fake::messages::{push_message, text_message, Mode, Retries};
use wxtoken::fake::{FakeConfig, FakeInbox};

use crate::support::deliveries::{listed, route, until_nothing_pending, FAST_HUB, ROUTE_KEY};
use crate::support::helpers::*;
use crate::support::messages::account_target;
use crate::support::platform::{platform_table, start_with_platform, COMPONENT, PLATFORM};

const ACCOUNT: &str = "wxaccount0000001";

#[actix_web::test]
async fn authorization_events_and_account_messages_are_delivered_and_tickets_are_not() {
    let events = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let messages = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let config = ConfigText::new()
        .raw(&platform_table())
        .client(Client::new("ops", OPS_KEY).platforms(&["*"]).admin())
        .raw(&route(
            "audit",
            &events.url(),
            "match = { platforms = [\"saas\"], info_types = [\"authorized\", \"unauthorized\"] }",
        ))
        .raw(&route(
            "inbox",
            &messages.url(),
            "match = { platforms = [\"saas\"], msg_types = [\"text\"] }",
        ));
    let app = start_with_platform(
        FakeConfig::default(),
        TestApp::builder()
            .config(&config.to_string())
            .adjust(|(_, o)| o.hub = FAST_HUB),
    )
    .await;
    app.push_ticket().await;
    let (_, pushed) = app
        .fake
        .authorize_and_push(COMPONENT, ACCOUNT, &[1])
        .await
        .expect("authorized");
    assert!(pushed.accepted(), "{pushed:?}");
    let target = account_target(&app.base, ACCOUNT);
    let once = Retries {
        timeout: Duration::from_secs(5),
        again: 0,
    };
    let text = text_message("gh_account", "o-user", "hi", 9);
    assert_eq!(
        push_message(&target, &text, Mode::Safe, once).await.status,
        Some(200)
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            events.delivered().len() == 1 && messages.delivered().len() == 1
        })
        .await,
        "events {:?}, messages {:?}",
        events.received(),
        messages.received()
    );
    let event = &events.received()[0].body;
    assert_eq!(event["source"]["kind"], "platform");
    assert_eq!(event["source"]["platform"], PLATFORM);
    assert_eq!(event["source"]["appid"], COMPONENT);
    assert_eq!(event["message"]["InfoType"], "authorized");
    assert_eq!(event["message"]["AuthorizerAppid"], ACCOUNT);
    assert!(event["xml"].as_str().unwrap().contains("<InfoType>"));
    let message = &messages.received()[0].body;
    assert_eq!(message["source"]["kind"], "account");
    assert_eq!(message["source"]["appid"], ACCOUNT);
    assert_eq!(message["message"]["Content"], "hi");

    // Both deliveries made and removed: nothing left to deliver before the next push.
    until_nothing_pending(&app.http, &app.base).await;

    // Another ticket: stored for the component token, delivered to no route. An event reaches
    // the routes only through the hub's take, which the push awaits before WeChat gets its
    // answer, and a take is always counted (taken, unmatched or duplicate) and writes its
    // deliveries before it returns: with the counts unchanged and nothing pending once the
    // ticket is answered, no delivery of it exists or can come.
    app.push_ticket().await;
    app.assert_metrics(&[
        (
            r#"wxtoken_platform_events_total{info_type="component_verify_ticket",platform="saas",result="ok"}"#,
            2.0,
        ),
        (r#"wxtoken_pushes_total{result="taken",source="saas"}"#, 2.0),
        (r#"wxtoken_pushes_total{result="unmatched",source="saas"}"#, 0.0),
        (r#"wxtoken_pushes_total{result="duplicate",source="saas"}"#, 0.0),
    ])
    .await;
    assert!(listed(&app.http, &app.base, "pending", 100)
        .await
        .is_empty());
    assert_eq!(events.received().len(), 1);
    assert_eq!(messages.received().len(), 1);
}
