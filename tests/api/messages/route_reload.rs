//! `[[routes]]` change with a reload: a changed route delivers to its new URL, an added one
//! gets the pushes taken after the reload, a removed one gets none, and its pending deliveries
//! wait for it: added back, it delivers them.

use std::time::Duration;

use wxtoken::fake::{FakeInbox, InboxMode};

use crate::support::deliveries::*;
use crate::support::helpers::*;

/// The server file: the delivery tests' apps and clients, then `routes`.
fn file(fake_base: &str, store: &std::path::Path, routes: &str) -> String {
    server_file(
        fake_base,
        &format!("path = {}", quoted(store)),
        &with_routes(routes),
    )
}

/// The `hello {id}` texts `inbox` received, in order.
fn texts(inbox: &FakeInbox) -> Vec<String> {
    inbox
        .received()
        .iter()
        .map(|r| {
            r.body["message"]["Content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

async fn reload(app: &TestApp) -> serde_json::Value {
    let r = app.post("/v1/admin/reload", Some(OPS_KEY), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["needs_restart"], serde_json::json!([]), "{}", r.body);
    r.body["routes"].clone()
}

async fn arrives(inbox: &FakeInbox, text: &str) {
    let arrived = eventually(Duration::from_secs(10), || async {
        texts(inbox).iter().any(|t| t == text)
    });
    assert!(
        arrived.await,
        "{text} reaches the inbox: {:?}",
        texts(inbox)
    );
}

#[actix_web::test]
async fn routes_are_added_changed_and_removed_by_a_reload_and_nothing_waiting_is_lost() {
    let (old_crm, new_crm, erp) = (
        FakeInbox::start(ROUTE_KEY).await.expect("inbox"),
        FakeInbox::start(ROUTE_KEY).await.expect("inbox"),
        FakeInbox::start(ROUTE_KEY).await.expect("inbox"),
    );
    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let (path, store) = (dir.path().join("w.toml"), dir.path().join("w.redb"));
    let write = |routes: &str| {
        std::fs::write(&path, file(&fake.base_url(), &store, routes)).expect("written");
    };
    write(&route("crm", &old_crm.url(), ""));
    let app = TestApp::builder()
        .fake(fake.clone())
        .config_file(&path)
        .adjust(|(_, o)| o.hub = FAST_HUB)
        .start()
        .await;
    push_all(&app.base, [1]).await;
    arrives(&old_crm, "hello 1").await;

    // crm moves to another URL; erp is new.
    write(&format!(
        "{}{}",
        route("crm", &new_crm.url(), ""),
        route("erp", &erp.url(), "")
    ));
    let changes = reload(&app).await;
    assert_eq!(
        changes,
        serde_json::json!({"added": ["erp"], "removed": [], "changed": ["crm"]})
    );
    push_all(&app.base, [2]).await;
    arrives(&new_crm, "hello 2").await;
    arrives(&erp, "hello 2").await;
    assert_eq!(
        app.metric(r#"wxtoken_deliveries_total{result="delivered",route="erp"}"#)
            .await,
        Some(1.0),
        "the added route's series exist"
    );

    // erp is down and holds push 3 pending; then erp leaves the file, crm stays.
    erp.set_mode(InboxMode::Fail);
    push_all(&app.base, [3]).await;
    arrives(&new_crm, "hello 3").await;
    let erp_pending = eventually(Duration::from_secs(10), || async {
        listed(&app.http, &app.base, "pending", 10)
            .await
            .iter()
            .any(|id| id.ends_with(".erp"))
    });
    assert!(erp_pending.await);
    write(&route("crm", &new_crm.url(), ""));
    let changes = reload(&app).await;
    assert_eq!(
        changes,
        serde_json::json!({"added": [], "removed": ["erp"], "changed": []})
    );
    erp.set_mode(InboxMode::Accept);
    push_all(&app.base, [4]).await;
    arrives(&new_crm, "hello 4").await;
    // The last push was taken after erp left: it made no delivery for erp at all. The listing
    // shows the configured routes; erp's stored one is found by its name.
    assert!(listed(&app.http, &app.base, "pending", 10).await.is_empty());
    let url = format!("{}/v1/admin/deliveries?state=pending&route=erp", app.base);
    let (status, page) = admin_call(&app.http, "GET", &url, Some(OPS_KEY)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{page}"
    );

    // erp comes back: its pending delivery of push 3 is made; push 4 never was erp's.
    write(&format!(
        "{}{}",
        route("crm", &new_crm.url(), ""),
        route("erp", &erp.url(), "")
    ));
    assert_eq!(reload(&app).await["added"], serde_json::json!(["erp"]));
    let delivered = eventually(Duration::from_secs(10), || async {
        erp.delivered().len() == 2
    });
    assert!(delivered.await, "{:?}", texts(&erp));
    let made: Vec<String> = erp
        .received()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            r.body["message"]["Content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(made, ["hello 2", "hello 3"]);
    assert_eq!(
        texts(&old_crm),
        ["hello 1"],
        "the old URL got nothing after the reload"
    );
}
