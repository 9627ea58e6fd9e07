//! Bad records in a store (written straight into Redis or the redb file) are never served,
//! adopted or written back, never panic an instance, and are counted as decode errors.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fleet::{redis_settings, RedisServer};
use crate::support::helpers::*;

const DECODE_ERRORS: &str = r#"wxtoken_store_errors_total{app="shop",op="decode"}"#;

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
    sample_at(http, base, DECODE_ERRORS).await.unwrap_or(0.0)
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
    let stored = FileStore::new().await;
    let fake = &stored.fake;
    let http = client();
    let s = stored.start();
    served(&http, &s.base).await;
    s.stop();

    for (what, record, _) in bad_records(1) {
        plant_token_record(&stored.path, "shop", &record).await;
        let minted = fake.minted(SHOP_APPID);

        let s = stored.start();
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

/// The Open Platform's authorizer records, planted by hand, for the platform `saas`.
mod platform {
    use serde_json::{json, Value};
    use wxtoken::config::Settings;
    use wxtoken::fake::FakeWechat;

    use crate::support::helpers::*;
    use crate::support::platform::platform_and_crm;

    const KEY: &str = "platform-client-key-00000001";
    const DECODE_ERRORS: &str = r#"wxtoken_store_errors_total{app="platform:saas",op="decode"}"#;
    /// A good account beside the hostile one: the listing still shows it.
    pub const GOOD: &str = "wx00000000000000a1";
    /// The account whose stored record carries a time past the year 9999.
    pub const HOSTILE: &str = "wx00000000000000b2";
    /// 10000-01-01T00:00:00Z: one second past what RFC 3339 (and its formatter) can write.
    const YEAR_10000_MS: u64 = 253_402_300_800_000;

    fn record(appid: &str, authorized_at_ms: u64) -> String {
        json!({
            "v": 1, "appid": appid, "refresh_token": "refresh@@@hostile-test",
            "func_ids": [1], "state": "authorized",
            "authorized_at_ms": authorized_at_ms, "updated_at_ms": now_ms(),
        })
        .to_string()
    }

    /// (appid, stored JSON): one good record and the hostile one.
    pub fn planted() -> Vec<(&'static str, String)> {
        vec![
            (GOOD, record(GOOD, 1_700_000_000_000)),
            (HOSTILE, record(HOSTILE, YEAR_10000_MS)),
        ]
    }

    pub fn settings(fake: &FakeWechat, store: &str) -> Settings {
        let text = server_file(&fake.base_url(), store, &platform_and_crm(KEY).to_string());
        Settings::from_toml(&text, &[], &|_| None).expect("test config is valid")
    }

    async fn decode_errors(http: &awc::Client, base: &str) -> f64 {
        sample_at(http, base, DECODE_ERRORS).await.unwrap_or(0.0)
    }

    /// The routes that show the hostile account answer (it is absent, as a corrupt token
    /// record is), the good one is still listed, and each read of the record is counted.
    pub async fn assert_answered_and_counted(base: &str) {
        let http = client();
        // Counted once already, when the platform loaded its records at start.
        let before = decode_errors(&http, base).await;

        let url = |appid: &str| format!("{base}/v1/platforms/saas/authorizers/{appid}");
        let (status, body) = get_json(&http, &url(HOSTILE), KEY).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"], "unknown_authorizer", "{body}");
        assert!(
            decode_errors(&http, base).await > before,
            "the read of the hostile record is counted"
        );
        let (status, body) = get_json(&http, &format!("{}/token", url(HOSTILE)), KEY).await;
        assert_eq!(status, 404, "{body}");

        let (status, good) = get_json(&http, &url(GOOD), KEY).await;
        assert_eq!(status, 200, "{good}");
        assert_eq!(good["authorized_at"], "2023-11-14T22:13:20Z", "{good}");
        let (status, listed) =
            get_json(&http, &format!("{base}/v1/platforms/saas/authorizers"), KEY).await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["total"], 1, "{listed}");
        assert_eq!(listed["authorizers"][0]["appid"], GOOD, "{listed}");
        let body: Value = listed;
        assert!(!body.to_string().contains("hostile-test"), "{body}");
        assert!(
            before >= 1.0,
            "counted when the platform loaded its records"
        );
    }
}

#[actix_web::test]
async fn a_hostile_authorizer_record_in_the_embedded_file_is_corrupt_not_a_panic() {
    const PLATFORM: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("platform");
    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("wxtoken.redb");
    {
        let db = redb::Database::create(&store).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(PLATFORM).unwrap();
            for (appid, json) in platform::planted() {
                let key = format!("saas/authorizer/{appid}");
                table.insert(key.as_str(), json.as_bytes()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let s = ThreadServer::start(platform::settings(
        &fake,
        &format!("path = {}", quoted(&store)),
    ));
    platform::assert_answered_and_counted(&s.base).await;
    s.stop();
}

#[actix_web::test]
async fn a_hostile_authorizer_record_in_redis_is_corrupt_not_a_panic() {
    let fake = start_fake(&Spec::default()).await;
    let redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let mut c = redis.connection().unwrap();
    for (appid, json) in platform::planted() {
        let _: () = redis::cmd("HSET")
            .arg("wxe:platform:saas:authorizers")
            .arg(appid)
            .arg(json)
            .query(&mut c)
            .unwrap();
    }
    let store = format!(
        "kind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"wxe\"\nlocal_path = {}",
        redis.url(),
        quoted(&dir.path().join("local.redb")),
    );
    let s = ThreadServer::start(platform::settings(&fake, &store));
    platform::assert_answered_and_counted(&s.base).await;
    s.stop();
}
