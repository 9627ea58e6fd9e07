//! The admin's delivery routes: paging, parameter checks, who may call them, and the recent
//! unmatched pushes.

use wxtoken::fake::FakeInbox;

use crate::support::deliveries::*;
use crate::support::helpers::*;

#[actix_web::test]
async fn pending_deliveries_are_listed_in_pages_to_the_end() {
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    inbox.down().await;
    let app = start_with_routes(&route("crm", &inbox.url(), "")).await;
    push_all(&app.base, 1..=5).await;

    let url = |q: &str| format!("{}/v1/admin/deliveries?{q}", app.base);
    let mut seen = Vec::new();
    for (offset, count, next) in [(0, 2, Some(2)), (2, 2, Some(4)), (4, 1, None)] {
        let (status, page) = admin_call(
            &app.http,
            "GET",
            &url(&format!("state=pending&offset={offset}&limit=2")),
            Some(OPS_KEY),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let items = page["deliveries"].as_array().expect("list");
        assert_eq!(items.len(), count, "{page}");
        assert_eq!(page["next_offset"].as_u64(), next, "{page}");
        for d in items {
            assert_eq!(d["route"], "crm");
            assert_eq!(d["state"], "pending");
            for key in ["id", "attempts", "last_error", "received_at"] {
                assert!(d.get(key).is_some(), "{key} in {d}");
            }
            seen.push(d["id"].as_str().expect("id").to_string());
        }
    }
    seen.dedup();
    assert_eq!(
        seen.len(),
        5,
        "every delivery once, in arrival order: {seen:?}"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    // Bad parameters: 400 with a JSON error.
    for q in [
        "state=gone",
        "offset=-1&state=dead",
        "state=dead&limit=0",
        "state=dead&limit=1001",
        "",
    ] {
        let (status, body) = admin_call(&app.http, "GET", &url(q), Some(OPS_KEY)).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["error"], "bad_request", "{q}: {body}");
    }
    let (_, dead) = admin_call(&app.http, "GET", &url("state=dead"), Some(OPS_KEY)).await;
    assert_eq!(dead["deliveries"].as_array().map(Vec::len), Some(0));
    assert!(dead["next_offset"].is_null());
}

#[actix_web::test]
async fn the_delivery_routes_refuse_anonymous_and_non_admin_callers() {
    let app = start_with_routes("").await;
    let id = "0000000000000000000000000000.crm";
    for (method, path) in [
        ("GET", "/v1/admin/deliveries?state=dead".to_string()),
        ("POST", format!("/v1/admin/deliveries/{id}/retry")),
        ("DELETE", format!("/v1/admin/deliveries/{id}")),
        (
            "DELETE",
            "/v1/admin/deliveries?state=dead&route=crm".to_string(),
        ),
        ("GET", "/v1/admin/pushes/unmatched".to_string()),
    ] {
        let url = format!("{}{path}", app.base);
        assert_eq!(
            admin_call(&app.http, method, &url, None).await.0,
            401,
            "{path}"
        );
        assert_eq!(
            admin_call(&app.http, method, &url, Some("wrong-key-0000000000000"))
                .await
                .0,
            401,
            "{path}"
        );
        assert_eq!(
            admin_call(&app.http, method, &url, Some(BILLING_KEY))
                .await
                .0,
            403,
            "{path}"
        );
    }
    // The admin's retry or discard of an unknown delivery: 404; of something that is not a
    // delivery id (another spelling of a path, a traversal): 400 or 404, never a change.
    let url = format!("{}/v1/admin/deliveries/{id}/retry", app.base);
    assert_eq!(
        admin_call(&app.http, "POST", &url, Some(OPS_KEY)).await.0,
        404
    );
    let url = format!("{}/v1/admin/deliveries/{id}", app.base);
    assert_eq!(
        admin_call(&app.http, "DELETE", &url, Some(OPS_KEY)).await.0,
        404
    );
    for bad in [
        "nope",
        "..%2F..%2Fx.crm",
        "0000000000000000000000000000.",
        "%00.crm",
    ] {
        let url = format!("{}/v1/admin/deliveries/{bad}", app.base);
        let status = admin_call(&app.http, "DELETE", &url, Some(OPS_KEY)).await.0;
        assert!(status == 400 || status == 404, "{bad}: {status}");
    }
    // GET on a delivery: 405.
    let url = format!("{}/v1/admin/deliveries/{id}", app.base);
    assert_eq!(
        admin_call(&app.http, "GET", &url, Some(OPS_KEY)).await.0,
        405
    );
}

#[actix_web::test]
async fn a_push_no_route_takes_is_counted_and_listed_without_its_content() {
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let app = start_with_routes(&route(
        "crm",
        &inbox.url(),
        r#"match = { msg_types = ["event"] }"#,
    ))
    .await;
    push_all(&app.base, [9]).await;
    let (status, body) = admin_call(
        &app.http,
        "GET",
        &format!("{}/v1/admin/pushes/unmatched", app.base),
        Some(OPS_KEY),
    )
    .await;
    assert_eq!(status, 200);
    let pushes = body["pushes"].as_array().expect("list");
    assert_eq!(pushes.len(), 1, "{body}");
    assert_eq!(pushes[0]["msg_type"], "text");
    assert_eq!(pushes[0]["source"]["app"], "shop");
    assert!(!body.to_string().contains("hello 9"), "{body}");
    assert_eq!(
        app.metric(r#"wxtoken_pushes_total{result="unmatched",source="shop"}"#)
            .await,
        Some(1.0)
    );
    // The dedupe entry is written all the same.
    push_all(&app.base, [9]).await;
    assert_eq!(
        app.metric(r#"wxtoken_pushes_total{result="duplicate",source="shop"}"#)
            .await,
        Some(1.0)
    );
    // No route matched, so no delivery was written (a take writes its deliveries before WeChat
    // gets its answer): there is nothing a worker could deliver, now or later.
    assert_eq!(
        app.metric(r#"wxtoken_pushes_total{result="taken",source="shop"}"#)
            .await,
        Some(0.0)
    );
    assert!(listed(&app.http, &app.base, "pending", 100)
        .await
        .is_empty());
    assert!(listed(&app.http, &app.base, "dead", 100).await.is_empty());
    assert!(inbox.received().is_empty());
}

#[actix_web::test]
async fn every_instance_of_a_fleet_lists_the_fleets_unmatched_pushes() {
    let redis = crate::support::fleet::RedisServer::start(None);
    let fake = start_fake(&Spec::default()).await;
    let inbox = FakeInbox::start(ROUTE_KEY).await.expect("inbox");
    let events_only = route("crm", &inbox.url(), r#"match = { msg_types = ["event"] }"#);
    let on_redis =
        |instance: &str| settings_on_redis(&fake.base_url(), &redis, instance, &events_only);
    let a = ThreadServer::start_with(on_redis("a"), FAST_HUB);
    let b = ThreadServer::start_with(on_redis("b"), FAST_HUB);
    // A text no route takes reaches a; WeChat's retry of it reaches b: noted once.
    push_all(&a.base, [21]).await;
    push_all(&b.base, [21]).await;
    let http = client();
    for server in [&a, &b] {
        let url = format!("{}/v1/admin/pushes/unmatched", server.base);
        let (status, body) = admin_call(&http, "GET", &url, Some(OPS_KEY)).await;
        assert_eq!(status, 200, "{body}");
        let pushes = body["pushes"].as_array().expect("a list");
        assert_eq!(pushes.len(), 1, "{body}");
        assert_eq!(pushes[0]["msg_type"], "text");
        assert_eq!(pushes[0]["source"]["app"], "shop");
        assert!(!body.to_string().contains("hello"), "no content: {body}");
    }
    a.stop();
    b.stop();
}
