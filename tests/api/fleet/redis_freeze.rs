//! A Redis freeze (SIGSTOP) while a token is reported as rejected: the lock `SET`s that timed
//! out are carried out when Redis resumes, and must not keep the rejected token in service for
//! the lock's TTL.

use std::time::{Duration, Instant};

use crate::support::fleet::{redis_settings, RedisServer};
use crate::support::helpers::*;

async fn invalidate(http: &awc::Client, base: &str, token: &str) -> serde_json::Value {
    let mut r = http
        .post(format!("{base}/v1/apps/shop/token/invalidate"))
        .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
        .send_json(&serde_json::json!({ "access_token": token }))
        .await
        .expect("invalidate answers");
    r.json().await.expect("JSON answer")
}

#[actix_web::test]
async fn a_lock_left_over_by_a_redis_freeze_does_not_keep_a_rejected_token_for_its_ttl() {
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let redis = RedisServer::start(None);
    // The default TTL: without the fix the rejected token stays for about 15 s.
    let ttl = Duration::from_secs(15);
    let a = ThreadServer::start(redis_settings(&spec, &fake, &redis, "a", ttl));
    let b = ThreadServer::start(redis_settings(&spec, &fake, &redis, "b", ttl));
    let http = client();
    let (_, body) = get_json(
        &http,
        &format!("{}/v1/apps/shop/token", a.base),
        BILLING_KEY,
    )
    .await;
    let old = body["access_token"].as_str().unwrap().to_string();
    let (_, body) = get_json(
        &http,
        &format!("{}/v1/apps/shop/token", b.base),
        BILLING_KEY,
    )
    .await;
    assert_eq!(body["access_token"], old.as_str(), "one token for both");
    let minted = fake.minted(SHOP_APPID);

    assert!(fake.kill_token(&old));
    redis.signal("STOP");
    // Reported while Redis is frozen: a cannot take the lock (its SETs time out but stay
    // queued in Redis) and, holding a valid token, must not fetch alone.
    let inv = invalidate(&http, &a.base, &old).await;
    assert_eq!(inv["access_token"], old.as_str(), "{inv}");
    assert_eq!(
        fake.minted(SHOP_APPID),
        minted,
        "no fetch while Redis is frozen"
    );
    redis.signal("CONT");
    let resumed = Instant::now();

    // The report reaches b too, which waits for the lock a's stalled SET left.
    let inv = invalidate(&http, &b.base, &old).await;
    let replaced = eventually(Duration::from_secs(6), || async {
        let mut served = Vec::new();
        for base in [&a.base, &b.base] {
            let (_, body) =
                get_json(&http, &format!("{base}/v1/apps/shop/token"), BILLING_KEY).await;
            served.push(
                body["access_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        served
            .iter()
            .all(|t| *t != old && fake.current_token(SHOP_APPID).as_deref() == Some(t))
    })
    .await;
    let took = resumed.elapsed();
    assert!(
        replaced,
        "the rejected token was still served {took:?} after Redis resumed ({inv})"
    );
    eprintln!("rejected token replaced {took:?} after Redis resumed");
    assert!(took < Duration::from_secs(6));
    assert_eq!(
        fake.minted(SHOP_APPID),
        minted + 1,
        "one fetch for both instances"
    );
    a.stop();
    b.stop();
}
