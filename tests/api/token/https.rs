//! The upstream path over HTTPS: a test CA given as `ca_file` is trusted, nothing else is.

use std::time::Duration;

use crate::support::helpers::*;
use wxtoken::fake::{FakeConfig, FakeWechat};

/// A fake serving HTTPS, and the PEM of the CA that signed its certificate.
async fn https_fake() -> (FakeWechat, String) {
    let (tls, _, ca) = test_pki();
    let fake = FakeWechat::start(FakeConfig {
        apps: vec![
            (SHOP_APPID.into(), SHOP_SECRET.into()),
            (BLOG_APPID.into(), BLOG_SECRET.into()),
        ],
        tls: Some(tls),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    assert!(fake.base_url().starts_with("https://"));
    (fake, ca)
}

#[actix_web::test]
async fn tokens_are_fetched_over_https_with_a_ca_file() {
    let (fake, ca) = https_fake().await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let spec = Spec {
        ca_file: Some(ca_file),
        ..Spec::default()
    };
    let store = dir.path().join("s.redb");
    let app = TestApp::builder()
        .spec(spec)
        .fake(fake)
        .store(dir, store)
        .start()
        .await;
    let token = app.shop_token().await;
    assert_eq!(Some(token), app.fake.current_token(SHOP_APPID));
}

#[actix_web::test]
async fn an_untrusted_certificate_is_refused() {
    let (fake, _ca) = https_fake().await;
    let spec = Spec {
        wait_limit: Duration::from_millis(500),
        ..Spec::default()
    };
    let app = TestApp::builder().spec(spec).fake(fake).start().await;
    let a = app.get("/v1/apps/shop/token", Some(BILLING_KEY)).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(
        app.minted(SHOP_APPID),
        0,
        "no token handed to an unverified peer"
    );
    let errors = app
        .metric(r#"wxtoken_upstream_errors_total{app="shop",reason="connect"}"#)
        .await
        .unwrap();
    assert!(errors >= 1.0);
}
