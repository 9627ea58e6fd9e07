//! Deliveries over real HTTP: the body and signature a receiver gets, a route down for a while
//! (nothing lost, the other route unaffected), a delivery given up at `max_age_secs` and made
//! by an admin's retry.

use std::collections::HashSet;
use std::time::Duration;

use wxtoken::fake::{FakeInbox, InboxMode};

use crate::support::deliveries::*;
use crate::support::helpers::*;

#[actix_web::test]
async fn a_push_is_delivered_once_signed_with_the_route_key_in_the_documented_body() {
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let app = start_with_routes(&route(
        "crm",
        &inbox.url(),
        r#"match = { apps = ["shop"] }"#,
    ))
    .await;

    let pushed = push_text(&app.base, 7001).await;
    assert_eq!(
        (pushed.status, pushed.body.as_str()),
        (Some(200), "success")
    );
    // WeChat's retry of the same message is the same push: taken once, delivered once.
    assert_eq!(push_text(&app.base, 7001).await.status, Some(200));
    assert!(
        eventually(Duration::from_secs(5), || async {
            inbox.delivered().len() == 1
        })
        .await
    );

    let got = &inbox.received()[0];
    assert!(got.signed, "the signature checks out with the route's key");
    let b = &got.body;
    assert_eq!(b["route"], "crm");
    assert!(b["id"].as_str().expect("id").ends_with(".crm"), "{b}");
    assert_eq!(
        b["source"],
        serde_json::json!({"kind": "app", "app": "shop", "appid": SHOP_APPID})
    );
    assert_eq!(b["message"]["Content"], "hello 7001");
    assert_eq!(b["message"]["MsgType"], "text");
    assert!(
        b["xml"]
            .as_str()
            .expect("xml")
            .contains("<Content><![CDATA[hello 7001]]></Content>")
            || b["xml"].as_str().expect("xml").contains("hello 7001"),
        "{b}"
    );
    assert!(
        b["received_at"].as_str().expect("time").ends_with('Z'),
        "{b}"
    );

    // Nothing is delivered again, and the counters say what happened: one push taken (the
    // retry a duplicate, which writes nothing), and its one delivery made and removed, so
    // nothing is left that could be delivered later.
    until_nothing_pending(&app.http, &app.base).await;
    assert_eq!(inbox.received().len(), 1);
    assert_eq!(
        app.metric(r#"wxtoken_pushes_total{result="taken",source="shop"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric(r#"wxtoken_pushes_total{result="duplicate",source="shop"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric(r#"wxtoken_deliveries_total{result="delivered",route="crm"}"#)
            .await,
        Some(1.0)
    );
}

#[actix_web::test]
async fn a_route_down_for_a_while_loses_nothing_and_holds_up_no_other_route() {
    let crm = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let erp = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let routes = route("crm", &crm.url(), "") + &route("erp", &erp.url(), "");
    let app = start_with_routes(&routes).await;
    crm.down().await;

    push_all(&app.base, 1..=10).await;
    // erp gets every push while crm is down.
    assert!(
        eventually(Duration::from_secs(5), || async {
            erp.delivered().len() == 10
        })
        .await
    );
    assert!(crm.received().is_empty());
    // crm's ten, once erp's outcomes are written (the inbox counts an answer before the hub
    // has recorded it); paged three at a time.
    assert!(
        eventually(Duration::from_secs(5), || async {
            listed(&app.http, &app.base, "pending", 3).await.len() == 10
        })
        .await,
        "{:?}",
        listed(&app.http, &app.base, "pending", 100).await
    );
    assert!(listed(&app.http, &app.base, "pending", 100)
        .await
        .iter()
        .all(|id| id.ends_with(".crm")));

    crm.up().expect("back up");
    assert!(
        eventually(Duration::from_secs(15), || async {
            crm.delivered().iter().collect::<HashSet<_>>().len() == 10
        })
        .await,
        "crm got {:?}",
        crm.delivered()
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            listed(&app.http, &app.base, "pending", 100)
                .await
                .is_empty()
        })
        .await
    );
    assert_eq!(
        erp.delivered().len(),
        10,
        "erp's deliveries were made once each"
    );
}

#[actix_web::test]
async fn a_delivery_is_dead_after_max_age_and_an_admin_retry_delivers_it() {
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    inbox.set_mode(InboxMode::Fail);
    // Below what a file may say (10 s): the backoff and deadline are schedule.rs's unit tests
    // on a given clock; here the whole way to dead and back takes a second.
    let app = TestApp::builder()
        .config(&with_routes(&route("crm", &inbox.url(), "")))
        .adjust(|(s, o)| {
            s.routes[0].max_age = Duration::from_millis(300);
            o.hub = FAST_HUB;
        })
        .start()
        .await;
    push_all(&app.base, [42]).await;

    assert!(
        eventually(Duration::from_secs(10), || async {
            listed(&app.http, &app.base, "dead", 10).await.len() == 1
        })
        .await
    );
    let dead = listed(&app.http, &app.base, "dead", 10).await.remove(0);
    let attempts = inbox.received().len();
    // One at once, and the next, due after the deadline, at the deadline itself.
    assert_eq!(attempts, 2, "{attempts} attempts");
    let (_, page) = admin_call(
        &app.http,
        "GET",
        &format!("{}/v1/admin/deliveries?state=dead", app.base),
        Some(OPS_KEY),
    )
    .await;
    assert_eq!(page["deliveries"][0]["last_error"], "status 500");
    assert_eq!(page["deliveries"][0]["state"], "dead");
    assert_eq!(page["deliveries"][0]["attempts"], attempts as u64);
    assert_eq!(
        app.metric(r#"wxtoken_deliveries_total{result="dead",route="crm"}"#)
            .await,
        Some(1.0)
    );

    inbox.set_mode(InboxMode::Accept);
    let retry = |id: &str| format!("{}/v1/admin/deliveries/{id}/retry", app.base);
    let (status, body) = admin_call(&app.http, "POST", &retry(&dead), Some(OPS_KEY)).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            inbox.delivered() == vec![dead.clone()]
        })
        .await
    );
    assert!(listed(&app.http, &app.base, "dead", 10).await.is_empty());

    // Gone now: 404; not an id at all: 400.
    assert_eq!(
        admin_call(&app.http, "POST", &retry(&dead), Some(OPS_KEY))
            .await
            .0,
        404
    );
    assert_eq!(
        admin_call(&app.http, "POST", &retry("nope"), Some(OPS_KEY))
            .await
            .0,
        400
    );
}
