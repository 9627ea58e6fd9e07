//! Authentication, permissions and request validation: 401, 403, 404, 400, 413.

use crate::support::helpers::*;

#[actix_web::test]
async fn missing_or_unknown_keys_are_401() {
    let app = TestApp::builder().start().await;
    for key in [None, Some("not-a-configured-key-000000"), Some("")] {
        let a = app.get("/v1/apps/shop/token", key).await;
        assert_eq!(a.status, 401, "{key:?}");
        let error = a.error();
        assert_eq!(error.error, "unauthorized");
        assert!(!error.message.is_empty());
        assert!(a.body.get("access_token").is_none());
    }
    // A wrong scheme is refused too.
    let resp = app
        .http
        .get(format!("{}/v1/apps/shop/token", app.base))
        .insert_header(("Authorization", format!("Basic {BILLING_KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    let a = app.invalidate_shop("x").await;
    assert_eq!(a.status, 200, "the real client works: {}", a.body);
    let a = app
        .post(
            "/v1/apps/shop/token/invalidate",
            None,
            r#"{"access_token":"x"}"#,
        )
        .await;
    assert_eq!(a.status, 401);
}

#[actix_web::test]
async fn clients_only_read_their_apps() {
    let app = TestApp::builder().start().await;
    let a = app.get("/v1/apps/blog/token", Some(BILLING_KEY)).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.error().error, "forbidden");
    let a = app
        .post(
            "/v1/apps/blog/token/invalidate",
            Some(BILLING_KEY),
            r#"{"access_token":"x"}"#,
        )
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(
        app.get("/v1/apps/blog/token", Some(OPS_KEY)).await.status,
        200
    );
    assert_eq!(
        app.get("/v1/apps/shop/token", Some(OPS_KEY)).await.status,
        200
    );
}

#[actix_web::test]
async fn unknown_apps_are_404() {
    let app = TestApp::builder().start().await;
    let a = app.get("/v1/apps/nope/token", Some(OPS_KEY)).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error().error, "unknown_app");
    let a = app.get("/v1/apps/nope/token", None).await;
    assert_eq!(a.status, 401, "authentication comes before app lookup");
}

#[actix_web::test]
async fn bad_invalidate_bodies_are_400() {
    let app = TestApp::builder().start().await;
    let path = "/v1/apps/shop/token/invalidate";
    for body in [
        "",
        "not json",
        "{}",
        r#"{"access_token":""}"#,
        r#"{"access_token":42}"#,
        r#"{"token":"abc"}"#,
    ] {
        let a = app.post(path, Some(BILLING_KEY), body).await;
        assert_eq!(a.status, 400, "body {body:?} gave {}", a.body);
        assert_eq!(a.error().error, "bad_request");
    }
}

#[actix_web::test]
async fn bodies_over_the_limit_are_413() {
    let app = TestApp::builder().start().await;
    let big = format!(
        r#"{{"access_token":"{}"}}"#,
        "a".repeat(wxtoken::http::MAX_BODY)
    );
    let a = app
        .post("/v1/apps/shop/token/invalidate", Some(BILLING_KEY), big)
        .await;
    assert_eq!(a.status, 413);
    assert_eq!(a.error().error, "payload_too_large");
    // Just under the limit is fine (and a stale token: answered without a fetch).
    let ok = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(4000));
    let a = app
        .post("/v1/apps/shop/token/invalidate", Some(BILLING_KEY), ok)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}
