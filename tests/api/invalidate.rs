//! Passive refresh: one upstream call per rejected token however many report it.

use std::time::Duration;

use crate::helpers::*;
use wxtoken::fake::Validity;

#[actix_web::test]
async fn concurrent_invalidations_cost_one_fetch_and_all_get_the_new_token() {
    let app = spawn_app(Spec::default()).await;
    let old = app.shop_token().await;
    assert_eq!(app.minted(SHOP_APPID), 1);

    let reports = (0..200).map(|_| app.invalidate_shop(&old));
    let answers = futures_util::future::join_all(reports).await;

    assert_eq!(app.minted(SHOP_APPID), 2, "exactly one upstream fetch");
    let new = app.fake.current_token(SHOP_APPID).unwrap();
    assert_ne!(new, old);
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["access_token"], new.as_str());
        assert_eq!(a.body["refreshed"], true);
        assert!(a.body["expires_in"].as_u64().unwrap() > 7000);
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
    let app = spawn_app(Spec::default()).await;
    let old = app.shop_token().await;
    let a = app.invalidate_shop(&old).await;
    let new = a.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.minted(SHOP_APPID), 2);

    // A late report of the replaced token: answered with the current one at once; for the
    // caller it is a refreshed token.
    let a = app.invalidate_shop(&old).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["access_token"], new.as_str());
    assert_eq!(a.body["refreshed"], true);
    // A token that never existed is stale too.
    let a = app.invalidate_shop("made-up-token").await;
    assert_eq!(a.body["access_token"], new.as_str());
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
    let app = spawn_app(Spec {
        min_interval: Duration::from_secs(60),
        ..Spec::default()
    })
    .await;
    let t = app.shop_token().await;
    let a = app.invalidate_shop(&t).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["access_token"], t.as_str());
    assert_eq!(a.body["refreshed"], false);
    assert_eq!(app.minted(SHOP_APPID), 1);
    assert_eq!(
        app.metric(r#"wxtoken_invalidations_total{app="shop",outcome="too_soon"}"#)
            .await,
        Some(1.0)
    );
}

#[actix_web::test]
async fn invalidated_token_is_really_replaced_at_wechat() {
    let app = spawn_app(Spec {
        overlap_secs: 0,
        ..Spec::default()
    })
    .await;
    let old = app.shop_token().await;
    let a = app.invalidate_shop(&old).await;
    let new = a.body["access_token"].as_str().unwrap();
    assert_eq!(app.fake.validity(new), Validity::Valid);
    assert_ne!(app.fake.validity(&old), Validity::Valid);
}
