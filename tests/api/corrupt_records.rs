//! Bad records in a store (written straight into Redis or the redb file) are never served,
//! adopted or written back, never panic an instance, and are counted as decode errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::ha::{redis_settings, RedisServer};
use crate::helpers::*;

const DECODE_ERRORS: &str = r#"wxtoken_store_errors_total{app="shop",op="decode"}"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Each kind of bad record: (what, record bytes, the generation field beside it in Redis).
fn bad_records(generation: u64) -> Vec<(&'static str, String, String)> {
    let now = now_ms();
    let newer = generation + 5;
    let record = |change: &dyn Fn(&mut Value)| {
        let mut v = json!({
            "v": 1, "appid": SHOP_APPID, "token": "BAD-TOKEN-FROM-THE-STORE",
            "fetched_at_ms": now, "expires_at_ms": now + 7_200_000,
            "generation": newer, "quota_day": 0, "quota_used": 1,
        });
        change(&mut v);
        v.to_string()
    };
    vec![
        (
            "another appid",
            record(&|v| v["appid"] = json!(BLOG_APPID)),
            newer.to_string(),
        ),
        (
            "generation u64::MAX",
            record(&|v| v["generation"] = json!(u64::MAX)),
            u64::MAX.to_string(),
        ),
        (
            "expiry u64::MAX",
            record(&|v| v["expires_at_ms"] = json!(u64::MAX)),
            newer.to_string(),
        ),
        (
            "expiry before fetch",
            record(&|v| v["expires_at_ms"] = json!(now - 1)),
            newer.to_string(),
        ),
        (
            "token with a space",
            record(&|v| v["token"] = json!("BAD TOKEN")),
            newer.to_string(),
        ),
        ("garbage", "not a record".to_string(), "junk".to_string()),
    ]
}

async fn decode_errors(http: &awc::Client, base: &str) -> f64 {
    let mut r = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    sample(&text, DECODE_ERRORS).unwrap_or(0.0)
}

async fn served(http: &awc::Client, base: &str) -> String {
    let (status, body) = get_json(http, &format!("{base}/v1/apps/shop/token"), BILLING_KEY).await;
    assert_eq!(status, 200, "{base} keeps serving: {body}");
    body["access_token"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn bad_records_in_redis_are_never_served_adopted_or_kept() {
    let spec = Spec {
        // Each bad record ends with a refetch of a killed token: more than the default 4.
        reported_refetches_per_hour: 60,
        ..Spec::default()
    };
    let fake = start_fake(&spec).await;
    let redis = RedisServer::start(None);
    let ttl = Duration::from_secs(3);
    let servers = [
        ThreadServer::start(redis_settings(&spec, &fake, &redis, "one", ttl)),
        ThreadServer::start(redis_settings(&spec, &fake, &redis, "two", ttl)),
    ];
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let http = client();
    let mut current = served(&http, &bases[0]).await;
    assert_eq!(served(&http, &bases[1]).await, current);
    let key = format!("wxt:token:{SHOP_APPID}");

    let generation: u64 = redis.hget(&key, "generation").unwrap().parse().unwrap();
    for (what, record, gen_field) in bad_records(generation + 10) {
        let before = decode_errors(&http, &bases[0]).await + decode_errors(&http, &bases[1]).await;
        let mut c = redis.connection().unwrap();
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("record")
            .arg(&record)
            .arg("generation")
            .arg(&gen_field)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("PUBLISH")
            .arg("wxt:changes")
            .arg(SHOP_APPID)
            .query(&mut c)
            .unwrap();
        // Counted where it was read. The first instance to read it may already write its valid
        // token over it (a bad record does not fence that write), so not necessarily by both.
        let counted = eventually(Duration::from_secs(3), || async {
            decode_errors(&http, &bases[0]).await + decode_errors(&http, &bases[1]).await > before
        })
        .await;
        assert!(counted, "{what}: the bad record is counted");
        for b in &bases {
            assert_eq!(
                served(&http, b).await,
                current,
                "{what}: {b} keeps its valid token"
            );
        }

        // After an invalidation the fleet gets a real new token, not the bad record's.
        fake.kill_token(&current);
        let mut r = http
            .post(format!("{}/v1/apps/shop/token/invalidate", bases[1]))
            .insert_header(("Authorization", format!("Bearer {BILLING_KEY}")))
            .send_json(&json!({ "access_token": current }))
            .await
            .unwrap();
        let inv: Value = r.json().await.unwrap();
        let new = inv["access_token"].as_str().unwrap_or_default().to_string();
        assert_eq!(inv["refreshed"], true, "{what}: {inv}");
        assert_eq!(
            fake.current_token(SHOP_APPID).as_deref(),
            Some(new.as_str()),
            "{what}"
        );
        let everywhere = eventually(Duration::from_secs(3), || async {
            served(&http, &bases[0]).await == new && served(&http, &bases[1]).await == new
        })
        .await;
        assert!(everywhere, "{what}: every instance serves the new token");
        let stored = redis.hget(&key, "record").unwrap();
        assert!(
            stored.contains(&new),
            "{what}: the bad record was replaced: {stored}"
        );
        current = new;
    }
    for s in servers {
        s.stop();
    }
}

#[actix_web::test]
async fn bad_records_in_the_embedded_file_are_ignored_and_replaced() {
    const TOKENS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("tokens");
    let spec = Spec::default();
    let fake = start_fake(&spec).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("wxtoken.redb");
    let http = client();
    let s = ThreadServer::start(settings_for(&spec, &fake.base_url(), &store));
    served(&http, &s.base).await;
    s.stop();

    for (what, record, _) in bad_records(1) {
        // The stopped server's last reference to the file may take a moment to go.
        let started = std::time::Instant::now();
        let db = loop {
            match redb::Database::create(&store) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if started.elapsed() < Duration::from_secs(5) =>
                {
                    actix_web::rt::time::sleep(Duration::from_millis(50)).await
                }
                other => break other.unwrap(),
            }
        };
        let tx = db.begin_write().unwrap();
        tx.open_table(TOKENS)
            .unwrap()
            .insert("shop", record.as_bytes())
            .unwrap();
        tx.commit().unwrap();
        drop(db);
        let minted = fake.minted(SHOP_APPID);

        let s = ThreadServer::start(settings_for(&spec, &fake.base_url(), &store));
        let token = served(&http, &s.base).await;
        assert_eq!(
            fake.current_token(SHOP_APPID).as_deref(),
            Some(token.as_str()),
            "{what}"
        );
        assert_eq!(
            fake.minted(SHOP_APPID),
            minted + 1,
            "{what}: fetched instead"
        );
        assert_eq!(decode_errors(&http, &s.base).await, 1.0, "{what}: counted");
        s.stop();
    }
}
