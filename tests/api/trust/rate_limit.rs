//! Per-client rate limits over real HTTP: a client past its burst gets 429 with `Retry-After`
//! on the `/v1` routes and WeChat's 45009 on the facade, the probes are never limited, other
//! clients are not affected, and an address failing authentication more than 20 times a
//! minute gets 429; every refusal is counted by client and reason.

use std::num::NonZeroU32;

use crate::support::helpers::*;
use wxtoken::config::ClientRate;

/// The standard app with `billing` limited to one request a second and a burst of 3.
async fn limited_app() -> TestApp {
    TestApp::builder()
        .adjust(|(s, _)| {
            let billing = s.clients.iter_mut().find(|c| c.name == "billing").unwrap();
            billing.rate = Some(ClientRate {
                per_second: NonZeroU32::new(1).unwrap(),
                burst: NonZeroU32::new(3).unwrap(),
            });
        })
        .start()
        .await
}

#[actix_web::test]
async fn a_client_past_its_burst_gets_429_with_retry_after_and_others_are_untouched() {
    let app = limited_app().await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/v1/apps/shop/token", Some(BILLING_KEY))
                .await
                .status,
            200
        );
    }
    let refused = app.get("/v1/apps/shop/token", Some(BILLING_KEY)).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.body["error"], "too_many_requests",
        "{}",
        refused.body
    );
    let retry: u64 = refused
        .headers
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another client, and the probes, are not limited.
    for _ in 0..10 {
        assert_eq!(
            app.get("/v1/apps/shop/token", Some(OPS_KEY)).await.status,
            200
        );
        assert_eq!(app.get("/healthz", None).await.status, 200);
        assert_eq!(app.get("/readyz", None).await.status, 200);
    }
    // The facade answers in WeChat's format: 45009, and when to come back.
    let facade = app
        .get(
            &format!("/cgi-bin/token?grant_type=client_credential&appid={SHOP_APPID}&secret={BILLING_KEY}"),
            None,
        )
        .await;
    assert_eq!(facade.wx().errcode, 45009, "{}", facade.body);
    assert!(facade.headers.contains_key("retry-after"));
    let metrics = app.metrics_text().await;
    assert_eq!(
        sample(
            &metrics,
            "wxtoken_client_rejections_total{client=\"billing\",reason=\"rate\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    // The bucket refills: a second later the client is served again.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.get("/v1/apps/shop/token", Some(BILLING_KEY))
            .await
            .status,
        200
    );
}

#[actix_web::test]
async fn an_address_failing_authentication_more_than_20_times_a_minute_gets_429() {
    let app = TestApp::builder().start().await;
    for i in 0..20 {
        let a = app
            .get("/v1/apps/shop/token", Some("wrong-key-000000000000"))
            .await;
        assert_eq!(a.status, 401, "attempt {i}");
    }
    let a = app
        .get("/v1/apps/shop/token", Some("wrong-key-000000000000"))
        .await;
    assert_eq!(a.status, 429);
    assert!(a.headers.contains_key("retry-after"));
    // Without any key it is the same failure.
    assert_eq!(app.get("/v1/apps/shop/token", None).await.status, 429);
    // The right key from the same address still works; probes are not counted.
    assert_eq!(
        app.get("/v1/apps/shop/token", Some(BILLING_KEY))
            .await
            .status,
        200
    );
    assert_eq!(app.get("/healthz", None).await.status, 200);
    let metrics = app.metrics_text().await;
    assert_eq!(
        sample(
            &metrics,
            "wxtoken_client_rejections_total{client=\"unauthenticated\",reason=\"failed_auth\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
}
