//! Serving tokens: the first fetch, the answer's shape, and that it is the real, live token.

use crate::support::helpers::*;
use wxtoken::fake::{Endpoint, Validity};

#[actix_web::test]
async fn token_is_served_and_valid_at_wechat() {
    let app = TestApp::builder().start().await;
    let a = app.get("/v1/apps/shop/token", Some(BILLING_KEY)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let answer = a.token();
    assert_eq!(answer.app, "shop");
    let token = answer.access_token.as_str();
    assert_eq!(app.fake.validity(token), Validity::Valid);
    // And at the probe over HTTP, as a business server's first WeChat call would see it.
    let probe: serde_json::Value = app
        .http
        .get(format!(
            "{}/cgi-bin/get_api_domain_ip?access_token={token}",
            app.fake.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(probe.get("errcode").is_none(), "{probe}");
    assert!(probe["ip_list"].is_array());
    assert_eq!(Some(token.to_string()), app.fake.current_token(SHOP_APPID));
    let expires_in = answer.expires_in;
    assert!((7100..=7200).contains(&expires_in), "{expires_in}");
    let expires_at = &answer.expires_at;
    let at = humantime::parse_rfc3339(expires_at).expect("RFC 3339 expires_at");
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!(
        left.abs_diff(expires_in) <= 2,
        "{expires_at} vs {expires_in}"
    );
    let cc = a.headers.get("cache-control").unwrap().to_str().unwrap();
    assert_eq!(cc, "private, max-age=60");
}

#[actix_web::test]
async fn many_gets_cost_one_fetch_per_app() {
    let app = TestApp::builder().start().await;
    let first = app.shop_token().await;
    let gets = (0..50).map(|_| app.shop_token());
    for t in futures_util::future::join_all(gets).await {
        assert_eq!(t, first);
    }
    let blog = app.get("/v1/apps/blog/token", Some(OPS_KEY)).await;
    assert_eq!(blog.status, 200);
    assert_ne!(blog.body["access_token"], first.as_str());
    assert_eq!(app.minted(SHOP_APPID), 1);
    assert_eq!(app.minted(BLOG_APPID), 1);
    assert_eq!(app.fake.calls(Endpoint::Token), 2);
}

#[actix_web::test]
async fn health_and_readiness() {
    let app = TestApp::builder().start().await;
    assert_eq!(app.get("/healthz", None).await.status, 200);
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            app.get("/readyz", None).await.status == 200
        })
        .await
    );
    let r = app.get("/readyz", None).await;
    assert_eq!(r.body["ready"], true);
    assert_eq!(r.body["apps"]["shop"], "ok");
    assert_eq!(r.body["apps"]["blog"], "ok");
}

#[actix_web::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::builder().start().await;
    let a = app.get("/nope", None).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error().error, "not_found");
    let a = app
        .post("/v1/apps/shop/token", Some(BILLING_KEY), "{}")
        .await;
    assert_eq!(a.status, 405);
    assert_eq!(a.error().error, "method_not_allowed");
}
