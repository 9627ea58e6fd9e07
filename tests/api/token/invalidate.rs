//! Passive refresh: one upstream call per rejected token however many report it, and none for
//! a token WeChat still accepts.

use std::time::Duration;

use crate::support::helpers::*;
use wxtoken::fake::{Endpoint, Validity};

#[actix_web::test]
async fn concurrent_invalidations_of_a_killed_token_cost_one_probe_one_fetch_and_all_get_the_new_token(
) {
    let app = TestApp::builder().start().await;
    let old = app.shop_token().await;
    assert_eq!(app.minted(SHOP_APPID), 1);
    // Something else fetched behind wxtoken's back: WeChat rejects the token for real.
    assert!(app.fake.kill_token(&old));

    let reports = (0..200).map(|_| app.invalidate_shop(&old));
    let answers = futures_util::future::join_all(reports).await;

    assert_eq!(app.minted(SHOP_APPID), 2, "exactly one upstream fetch");
    assert_eq!(
        app.fake.calls(Endpoint::Probe),
        1,
        "WeChat asked once whether the token is dead, for all 200 reports"
    );
    let new = app.fake.current_token(SHOP_APPID).unwrap();
    assert_ne!(new, old);
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.token().access_token, new.as_str());
        assert_eq!(a.token().refreshed, Some(true));
        assert!(a.token().expires_in > 7000);
    }
    assert_eq!(app.shop_token().await, new);
    // Reports that reached the actor after the fetch completed are counted as stale.
    let text = app.metrics_text().await;
    let refreshed = sample(
        &text,
        r#"wxtoken_invalidations_total{app="shop",outcome="refreshed"}"#,
    );
    let stale = sample(
        &text,
        r#"wxtoken_invalidations_total{app="shop",outcome="stale"}"#,
    );
    assert!(refreshed.unwrap() >= 1.0);
    assert_eq!(refreshed.unwrap() + stale.unwrap(), 200.0);
    assert_eq!(
        app.metric(
            r#"wxtoken_token_refreshes_total{app="shop",result="success",trigger="invalidated"}"#
        )
        .await,
        Some(1.0)
    );
}

#[actix_web::test]
async fn stale_invalidation_costs_no_fetch() {
    let app = TestApp::builder().start().await;
    let old = app.shop_token().await;
    app.fake.kill_token(&old);
    let a = app.invalidate_shop(&old).await;
    let new = a.token().access_token;
    assert_eq!(app.minted(SHOP_APPID), 2);

    // A late report of the replaced token: answered with the current one at once; for the
    // caller it is a refreshed token.
    let a = app.invalidate_shop(&old).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.token().access_token, new.as_str());
    assert_eq!(a.token().refreshed, Some(true));
    // A token that never existed is stale too.
    let a = app.invalidate_shop("made-up-token").await;
    assert_eq!(a.token().access_token, new.as_str());
    assert_eq!(
        app.minted(SHOP_APPID),
        2,
        "no upstream call for stale reports"
    );
    assert_eq!(
        app.metric(r#"wxtoken_invalidations_total{app="shop",outcome="stale"}"#)
            .await,
        Some(2.0)
    );
}

#[actix_web::test]
async fn invalidation_of_a_fresh_token_is_too_soon() {
    let app = TestApp::builder()
        .spec(Spec {
            min_interval: Duration::from_secs(60),
            ..Spec::default()
        })
        .start()
        .await;
    let t = app.shop_token().await;
    let a = app.invalidate_shop(&t).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.token().access_token, t.as_str());
    assert_eq!(a.token().refreshed, Some(false));
    assert_eq!(app.minted(SHOP_APPID), 1);
    assert_eq!(
        app.metric(r#"wxtoken_invalidations_total{app="shop",outcome="too_soon"}"#)
            .await,
        Some(1.0)
    );
}

#[actix_web::test]
async fn invalidated_token_is_really_replaced_at_wechat() {
    let app = TestApp::builder()
        .spec(Spec {
            overlap_secs: 0,
            ..Spec::default()
        })
        .start()
        .await;
    let old = app.shop_token().await;
    // A fetch behind wxtoken's back kills its token (no overlap here)...
    let rogue = fetch_behind_wxtoken(&app.fake).await;
    assert_ne!(app.fake.validity(&old), Validity::Valid);
    let a = app.invalidate_shop(&old).await;
    let new = a.body["access_token"].as_str().unwrap();
    // ...and wxtoken's refetch kills the rogue one in turn.
    assert_eq!(app.fake.validity(new), Validity::Valid);
    assert_ne!(app.fake.validity(&rogue), Validity::Valid);
}

/// One `/cgi-bin/token` call made directly at the fake, as a second fetcher would: the token
/// it got.
async fn fetch_behind_wxtoken(fake: &wxtoken::fake::FakeWechat) -> String {
    let url = format!(
        "{}/cgi-bin/token?grant_type=client_credential&appid={SHOP_APPID}&secret={SHOP_SECRET}",
        fake.base_url()
    );
    let mut resp = client().get(url).send().await.expect("fake answers");
    let body: serde_json::Value = resp.json().await.expect("JSON");
    body["access_token"].as_str().expect("a token").to_string()
}

#[actix_web::test]
async fn a_client_hammering_invalidate_with_a_valid_token_causes_no_refetch() {
    let app = TestApp::builder().start().await;
    let token = app.shop_token().await;
    assert_eq!(app.minted(SHOP_APPID), 1);
    // Sequential and concurrent: a confused client, or an SDK that reports every 40001.
    for _ in 0..20 {
        let a = app.invalidate_shop(&token).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.token().access_token, token.as_str());
        assert_eq!(a.token().refreshed, Some(false));
    }
    // With min_interval_secs = 0 here, each sequential report asks WeChat again.
    assert_eq!(app.fake.calls(Endpoint::Probe), 20);
    let burst = (0..100).map(|_| app.invalidate_shop(&token));
    for a in futures_util::future::join_all(burst).await {
        assert_eq!(a.token().access_token, token.as_str());
        assert_eq!(a.token().refreshed, Some(false));
    }
    assert_eq!(app.minted(SHOP_APPID), 1, "not one fetch");
    assert_eq!(app.fake.validity(&token), Validity::Valid);
    let burst_probes = app.fake.calls(Endpoint::Probe) - 20;
    assert!(
        (1..50).contains(&burst_probes),
        "concurrent reports share a probe: {burst_probes} for 100"
    );
    app.assert_metrics(&[
        (
            r#"wxtoken_refetches_refused_total{app="shop",reason="token_alive"}"#,
            120.0,
        ),
        (
            r#"wxtoken_invalidations_total{app="shop",outcome="alive"}"#,
            120.0,
        ),
        (
            r#"wxtoken_token_refreshes_total{app="shop",result="success",trigger="invalidated"}"#,
            0.0,
        ),
    ])
    .await;
}

#[actix_web::test]
async fn gateway_calls_wechat_rejects_for_another_reason_cause_no_refetch() {
    let app = TestApp::builder().start().await;
    let token = app.shop_token().await;
    for i in 0..10 {
        let answer = app
            .get(
                &format!("/cgi-bin/fake/reject_token?access_token={token}&n={i}"),
                None,
            )
            .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.wx().errcode, 40001, "WeChat's answer, passed on");
    }
    assert_eq!(app.minted(SHOP_APPID), 1, "no refetch");
    assert_eq!(
        app.fake.reject_token_calls(),
        10,
        "each call made once: no repetition with a new token"
    );
    assert!(app.fake.calls(Endpoint::Probe) >= 1);
    assert_eq!(app.fake.validity(&token), Validity::Valid);
    assert_eq!(app.shop_token().await, token);
    assert_eq!(
        app.metric(r#"wxtoken_refetches_refused_total{app="shop",reason="token_alive"}"#)
            .await,
        Some(10.0)
    );
}

#[actix_web::test]
async fn refetches_for_killed_tokens_stop_at_the_hourly_cap() {
    let app = TestApp::builder()
        .spec(Spec {
            reported_refetches_per_hour: 2,
            ..Spec::default()
        })
        .start()
        .await;
    let mut token = app.shop_token().await;
    for n in 2..=3 {
        app.fake.kill_token(&token);
        let a = app.invalidate_shop(&token).await;
        assert_eq!(a.token().refreshed, Some(true), "{}", a.body);
        token = a.token().access_token;
        assert_eq!(app.minted(SHOP_APPID), n);
    }
    // The third in the hour: WeChat is not even asked, the token in service is kept.
    let probes = app.fake.calls(Endpoint::Probe);
    app.fake.kill_token(&token);
    let a = app.invalidate_shop(&token).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.token().access_token, token.as_str());
    assert_eq!(a.token().refreshed, Some(false));
    assert_eq!(app.minted(SHOP_APPID), 3);
    assert_eq!(app.fake.calls(Endpoint::Probe), probes);
    app.assert_metrics(&[
        (
            r#"wxtoken_refetches_refused_total{app="shop",reason="hourly_cap"}"#,
            1.0,
        ),
        (
            r#"wxtoken_invalidations_total{app="shop",outcome="capped"}"#,
            1.0,
        ),
    ])
    .await;
}
