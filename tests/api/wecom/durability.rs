//! What a suite keeps: its ticket, corps and permanent codes survive a restart on the embedded
//! store (served again with no new push and no new exchange), and none of its secrets (suite
//! secret, ticket, AuthCode, permanent code, tokens) reaches the log of the real binary.

use std::time::Duration;

use crate::support::helpers::*;
use crate::support::process::{wait_for_listen_addr, wxtoken, KillOnDrop};
use crate::support::wecom::*;

const CORP: &str = "wwcorp00000000020";

#[actix_web::test]
async fn the_suite_ticket_and_the_corps_survive_a_restart() {
    let fake = start_wecom_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("wxtoken.redb");
    let http = client();
    let first = ThreadServer::start(wecom_settings(&fake, &store));
    route_callbacks(&fake, &first.base);
    ticket_and_install(&fake, CORP).await;
    let corp_url = |base: &str| format!("{base}/v1/wecom/suites/{SUITE}/corps/{CORP}/token");
    let served = eventually(Duration::from_secs(10), || async {
        get_json(&http, &corp_url(&first.base), KEY).await.0 == 200
    })
    .await;
    assert!(served);
    first.stop();

    // No push reaches the second server: what it serves comes from the store.
    let second = ThreadServer::start(wecom_settings(&fake, &store));
    let (status, body) = get_json(
        &http,
        &format!("{}/v1/wecom/suites/{SUITE}/suite_token", second.base),
        KEY,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_json(&http, &corp_url(&second.base), KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.suite_calls("get_permanent_code"), 1, "no new exchange");
    assert_eq!(
        fake.suite_tokens_minted(SUITE_ID),
        1,
        "the stored suite token is reused"
    );
    // The ticket came back too: a suite token WeCom ends is minted again with it, no push
    // needed.
    fake.end_suite_tokens(SUITE_ID);
    let other = "wwcorp00000000021";
    let code = fake.install_suite(SUITE_ID, other).unwrap();
    route_callbacks(&fake, &second.base);
    assert!(fake
        .push_create_auth(SUITE_ID, &code)
        .await
        .unwrap()
        .accepted());
    let other_url = format!(
        "{}/v1/wecom/suites/{SUITE}/corps/{other}/token",
        second.base
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            get_json(&http, &other_url, KEY).await.0 == 200
        })
        .await
    );
    assert_eq!(fake.suite_tokens_minted(SUITE_ID), 2);
    second.stop();
}

#[actix_web::test]
async fn no_secret_of_a_suite_reaches_the_log() {
    let fake = start_wecom_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wxtoken.toml");
    let store = format!("path = {}", quoted(&dir.path().join("wxtoken.redb")));
    let text = server_file(&fake.base_url(), &store, &wecom_tables("all"));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("serve.log");
    let child = wxtoken(&["serve", "--config", config.to_str().unwrap()])
        .env("WXTOKEN_LOG", "debug")
        .env("WXTOKEN_UPSTREAM__WECOM_BASE_URL", fake.base_url())
        .stdout(std::fs::File::create(dir.path().join("serve.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let base = format!("http://{}", wait_for_listen_addr(&log, &mut child.0));
    route_callbacks(&fake, &base);
    let http = client();
    let ticket = push_suite_ticket(&fake, SUITE_ID).await;
    let auth_code = fake.install_suite(SUITE_ID, CORP).unwrap();
    assert!(fake
        .push_create_auth(SUITE_ID, &auth_code)
        .await
        .unwrap()
        .accepted());
    let corp_url = format!("{base}/v1/wecom/suites/{SUITE}/corps/{CORP}/token");
    let corp = json_when_served(&http, &corp_url, KEY).await;
    let (_, suite) = get_json(
        &http,
        &format!("{base}/v1/wecom/suites/{SUITE}/suite_token"),
        KEY,
    )
    .await;
    let (_, provider) = get_json(
        &http,
        &format!("{base}/v1/wecom/providers/{PROVIDER}/token"),
        KEY,
    )
    .await;
    let permanent = fake.permanent_code(SUITE_ID, CORP).unwrap();
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("corp installed"),
        "the log is written: {text}"
    );
    let secrets = [
        ticket.as_str(),
        auth_code.as_str(),
        permanent.as_str(),
        corp["access_token"].as_str().unwrap(),
        suite["suite_access_token"].as_str().unwrap(),
        provider["provider_access_token"].as_str().unwrap(),
        SUITE_SECRET,
        PROVIDER_SECRET,
        AES_KEY,
    ];
    for secret in secrets {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}

/// Settings of one fleet instance on `redis`, with its own local copy of the records.
fn fleet_settings(
    fake: &wxtoken::fake::FakeWechat,
    redis: &crate::support::fleet::RedisServer,
    local: &std::path::Path,
) -> wxtoken::config::Settings {
    use crate::support::redis_topology::Deployment as _;
    let mut settings = wecom_settings(fake, local);
    let mut store = redis.store("wecom");
    store.local_path = Some(local.to_path_buf());
    settings.store = wxtoken::config::StoreSettings::Redis(store);
    settings
}

#[actix_web::test]
async fn a_fleet_shares_the_corps_and_a_flushed_redis_loses_no_ticket_or_permanent_code() {
    let redis = crate::support::fleet::RedisServer::start(None);
    let fake = start_wecom_fake().await;
    let locals = crate::support::fleet::LocalCopies::new(2);
    let settings = |l: &std::path::Path| fleet_settings(&fake, &redis, l);
    let http = client();
    let corp_at = |base: &str| format!("{base}/v1/wecom/suites/{SUITE}/corps/{CORP}/token");
    let fleet = locals.start(settings);
    route_callbacks(&fake, &fleet[0].base);
    ticket_and_install(&fake, CORP).await;
    // The instance that did not receive the install finds the corp in the shared records.
    crate::support::fleet::each_serves(&http, &fleet, KEY, corp_at).await;
    let (_, before) = get_json(&http, &corp_at(&fleet[1].base), KEY).await;
    assert_eq!(
        fake.suite_calls("get_corp_token"),
        1,
        "one fetch for the fleet"
    );

    // Redis loses everything, and every instance restarts: no push comes in between.
    let fleet = locals.restart_on_empty_redis(fleet, &redis, settings);
    for server in &fleet {
        let suite_url = format!("{}/v1/wecom/suites/{SUITE}/suite_token", server.base);
        assert!(
            eventually(Duration::from_secs(10), || async {
                get_json(&http, &suite_url, KEY).await.0 == 200
            })
            .await,
            "the suite token is minted again from the written-back ticket: {}",
            get_json(&http, &suite_url, KEY).await.1
        );
        let (status, after) = get_json(&http, &corp_at(&server.base), KEY).await;
        assert_eq!(status, 200, "{after}");
        assert_eq!(after["access_token"], before["access_token"]);
    }
    let (_, record) = get_json(
        &http,
        &format!("{}/v1/wecom/suites/{SUITE}/corps/{CORP}", fleet[1].base),
        KEY,
    )
    .await;
    assert_eq!(record["state"], "authorized", "{record}");
    assert_eq!(record["has_permanent_code"], true);
    assert_eq!(
        fake.suite_calls("get_permanent_code"),
        1,
        "no new install needed"
    );
    for s in fleet {
        s.stop();
    }
}

#[actix_web::test]
async fn an_expired_stored_ticket_mints_nothing_and_readiness_says_why() {
    use wxtoken::metrics::{Metrics, MetricsMode};
    use wxtoken::secret::AccessToken;
    use wxtoken::store::wecom::WecomStore;
    let fake = start_wecom_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxtoken.redb");
    {
        // A ticket received 31 minutes ago: WeCom honours one 30.
        let store =
            wxtoken::store::EmbeddedStore::open(&path, Metrics::new(&[], MetricsMode::Full))
                .unwrap();
        let w = WecomStore::new(
            std::sync::Arc::new(store),
            format!("wecom.{SUITE}"),
            SUITE_ID,
        );
        let received = std::time::SystemTime::now() - Duration::from_secs(31 * 60);
        w.save_ticket(AccessToken::new("an-old-suite-ticket-0001"), received)
            .await
            .unwrap();
    }
    let http = client();
    let server = ThreadServer::start(wecom_settings(&fake, &path));
    let url = format!("{}/v1/wecom/suites/{SUITE}/suite_token", server.base);
    let (status, body) = get_json(&http, &url, KEY).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("s old"),
        "{body}"
    );
    let (_, ready) = get_json(&http, &format!("{}/readyz", server.base), KEY).await;
    assert!(
        ready["wecom"][SUITE].as_str().unwrap().contains("s old"),
        "{ready}"
    );
    assert_eq!(
        fake.suite_calls("get_suite_token"),
        0,
        "no call with an expired ticket"
    );
    // The next push brings a fresh one, and the suite token follows at once.
    route_callbacks(&fake, &server.base);
    push_suite_ticket(&fake, SUITE_ID).await;
    let served = eventually(Duration::from_secs(10), || async {
        get_json(&http, &url, KEY).await.0 == 200
    });
    assert!(served.await);
    server.stop();
}
