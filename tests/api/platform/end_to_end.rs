//! The Open Platform end to end, over real HTTP between the server and the fake WeChat: the
//! fake pushes encrypted tickets and authorization events to the server's event URL, the server
//! mints the component token with the ticket, exchanges codes, serves authorizer tokens, looks
//! up a refused refresh token once, and reconciles the authorizer list.

use std::time::Duration;

use wxtoken::fake::{Endpoint, FakeConfig, FakeWechat, Fault};
use wxtoken::push::crypto::MsgCrypto;
use wxtoken::push::event::{Event, EventKind};

use crate::support::helpers::*;
use crate::support::platform::{
    crypto, now_secs, platform_table, start_platform_fake, start_with_platform, AES_KEY, COMPONENT,
    COMPONENT_SECRET as SECRET, MSG_TOKEN,
};

const KEY: &str = "platform-client-key-00000001";
const ADMIN: &str = "platform-admin-key-000000001";
const SHOP: &str = "wx5b3a1c9d7e8f6a42";

async fn fake() -> FakeWechat {
    start_platform_fake(FakeConfig::default()).await
}

fn config(refresh: &str) -> String {
    ConfigText::new()
        .raw(&format!(
            "{}authorizer_refresh = \"{refresh}\"",
            platform_table()
        ))
        .client(Client::new("crm", KEY).platforms(&["saas"]))
        .client(Client::new("ops", ADMIN).platforms(&["*"]).admin())
        .to_string()
}

/// A server for the platform, with the fake pushing to its event URL.
async fn spawn(refresh: &str) -> TestApp {
    let server = TestApp::builder().config(&config(refresh));
    start_with_platform(FakeConfig::default(), server).await
}

async fn component_token(app: &TestApp) -> Answer {
    app.get("/v1/platforms/saas/component_token", Some(KEY))
        .await
}

async fn authorizer_token(app: &TestApp, appid: &str) -> Answer {
    app.get(
        &format!("/v1/platforms/saas/authorizers/{appid}/token"),
        Some(KEY),
    )
    .await
}

/// Waits up to `limit` for `appid`'s token to be answered with `status`.
async fn await_authorizer_status(app: &TestApp, appid: &str, status: u16, limit: Duration) {
    let reached = eventually(limit, || async {
        authorizer_token(app, appid).await.status == status
    })
    .await;
    assert!(
        reached,
        "{appid}: {}",
        authorizer_token(app, appid).await.body
    );
}

/// The token served for `appid` now.
async fn served_token(app: &TestApp, appid: &str) -> String {
    authorizer_token(app, appid).await.body["access_token"]
        .as_str()
        .expect("a token")
        .to_string()
}

/// Reports `token` of `appid` as rejected.
async fn invalidate(app: &TestApp, appid: &str, token: &str) -> Answer {
    app.post(
        &format!("/v1/platforms/saas/authorizers/{appid}/token/invalidate"),
        Some(KEY),
        serde_json::json!({ "access_token": token }).to_string(),
    )
    .await
}

/// Waits until a token fetched now is old enough for an invalidation to refetch it
/// (`min_interval`).
async fn past_min_interval() {
    tokio::time::sleep(Spec::default().min_interval + Duration::from_millis(100)).await;
}

/// A server of the "active" mode with three accounts authorized, the ticket pushed, and the
/// first account's token served: the server, the accounts and that token.
async fn three_accounts_first_served() -> (TestApp, Vec<String>, String) {
    let app = spawn("active").await;
    let appids = app.fake.bulk_authorize(COMPONENT, 3).expect("authorized");
    app.push_ticket().await;
    await_authorizer_status(&app, &appids[0], 200, Duration::from_secs(10)).await;
    let first = served_token(&app, &appids[0]).await;
    (app, appids, first)
}

/// A push of a kind wxtoken only stores (`info_type`), created at `now`.
fn other_event(info_type: &str, now: u64) -> Event {
    Event {
        app_id: COMPONENT.into(),
        create_time: now,
        kind: EventKind::Other {
            info_type: info_type.into(),
        },
    }
}

#[actix_web::test]
async fn a_pushed_ticket_mints_the_component_token_and_nothing_before_it() {
    let app = spawn("active").await;
    let before = component_token(&app).await;
    assert_eq!(before.status, 503, "{}", before.body);
    assert!(
        before.body["message"]
            .as_str()
            .unwrap()
            .contains("component_verify_ticket"),
        "{}",
        before.body
    );
    assert_eq!(app.fake.component_tokens_minted(COMPONENT), 0);

    app.push_ticket().await;
    assert!(
        app.component_token_within(KEY, Duration::from_secs(5))
            .await
    );
    let answer = component_token(&app).await;
    assert_eq!(answer.body["platform"], "saas");
    assert_eq!(
        answer.body["component_access_token"].as_str(),
        app.fake.current_component_token(COMPONENT).as_deref()
    );
    assert!(answer.body["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(app.fake.component_tokens_minted(COMPONENT), 1);
    let text = app.metrics_text().await;
    let age = sample(
        &text,
        r#"wxtoken_platform_ticket_age_seconds{platform="saas"}"#,
    );
    assert!(age.is_some_and(|a| (0.0..60.0).contains(&a)), "{age:?}");
    assert_eq!(
        sample(
            &text,
            r#"wxtoken_platform_events_total{info_type="component_verify_ticket",platform="saas",result="ok"}"#
        ),
        Some(1.0)
    );
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.body["platforms"]["saas"], "ok", "{}", ready.body);
    // The component token in the token series, as `platform:saas`.
    let left = sample(&text, r#"wxtoken_token_seconds_left{app="platform:saas"}"#);
    assert!(left.is_some_and(|s| s > 0.0), "{left:?}");

    // Auth: 401 without a key, 404 for another platform, 403 for a client without it.
    assert_eq!(
        app.get("/v1/platforms/saas/component_token", None)
            .await
            .status,
        401
    );
    assert_eq!(
        app.get("/v1/platforms/nope/component_token", Some(KEY))
            .await
            .status,
        404
    );
}

#[actix_web::test]
async fn pushes_that_are_not_wechats_are_refused_and_change_nothing() {
    let app = spawn("active").await;
    let crypto = crypto();
    let now = now_secs();
    let event = Event {
        app_id: COMPONENT.into(),
        create_time: now,
        kind: EventKind::VerifyTicket {
            ticket: "ticket@@@forged".into(),
        },
    };
    let sealed = crypto.seal(&event.to_xml(), &now.to_string(), "4242");
    let post = |query: String, body: String| {
        let app = &app;
        async move { app.post_event(&query, body).await }
    };
    // A wrong signature.
    let bad = sealed
        .query()
        .replace(&sealed.msg_signature, &"0".repeat(40));
    let answer = post(bad, sealed.body.clone()).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    // A stale timestamp (ten minutes ago), correctly signed.
    let old = (now - 600).to_string();
    let stale = crypto.seal(&event.to_xml(), &old, "4243");
    let answer = post(stale.query(), stale.body.clone()).await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    // Another platform's push, signed with the same keys.
    let other = MsgCrypto::new(MSG_TOKEN, AES_KEY, "wx0000000000000b0b").unwrap();
    let misrouted = other.seal(&event.to_xml(), &now.to_string(), "4244");
    let answer = post(misrouted.query(), misrouted.body.clone()).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    // Nothing of it was stored: still no ticket.
    assert_eq!(component_token(&app).await.status, 503);

    // The good one is accepted once, and its replay refused.
    let answer = post(sealed.query(), sealed.body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = post(sealed.query(), sealed.body.clone()).await;
    assert_eq!(answer.status, 401, "a replay: {}", answer.body);
}

/// The signature covers the sorted concatenation of token, timestamp, nonce and ciphertext, so
/// a captured push keeps its signature with the timestamp and nonce swapped, or with digits
/// moved from the nonce to the timestamp: such a push is refused as a replay (401), and a
/// timestamp that is not canonical decimal is refused outright (401); nothing of them is stored.
#[actix_web::test]
async fn a_signed_push_resplit_between_timestamp_and_nonce_is_refused_as_a_replay() {
    let app = spawn("active").await;
    let crypto = crypto();
    let now = now_secs();
    // Of a kind wxtoken only stores, so that each one stored is counted and nothing follows.
    let event = |info_type: &str| other_event(info_type, now);
    let post = |query: String, body: String| {
        let app = &app;
        async move { app.post_event(&query, body).await }
    };
    let query = |ts: &str, nonce: &str, sig: &str| {
        format!("timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={sig}")
    };
    let (t, t1) = (now.to_string(), (now + 1).to_string());

    // Timestamp T with nonce T+1, then the same push as timestamp T+1 with nonce T.
    let sealed = crypto.seal(&event("notify_one").to_xml(), &t, &t1);
    let answer = post(sealed.query(), sealed.body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let swapped = post(query(&t1, &t, &sealed.msg_signature), sealed.body.clone()).await;
    assert_eq!(swapped.status, 401, "{}", swapped.body);

    // Nonce `010` with T, then as nonce `01` with `0T`: the same signature as long as the
    // ciphertext sorts after both (it starts with a letter).
    let sealed = (0..1000)
        .map(|_| crypto.seal(&event("notify_two").to_xml(), &t, "010"))
        .find(|s| {
            let encrypt = s.body.split("<Encrypt><![CDATA[").nth(1).unwrap_or("");
            encrypt.starts_with(|c: char| c.is_ascii_alphabetic())
        })
        .expect("a ciphertext starting with a letter");
    let shifted_ts = format!("0{t}");
    let encrypt = sealed.body.split("<Encrypt><![CDATA[").nth(1).unwrap();
    let encrypt = &encrypt[..encrypt.find("]]>").unwrap()];
    assert_eq!(
        crypto.signature(&shifted_ts, "01", encrypt),
        sealed.msg_signature,
        "the shifted split is signed alike"
    );
    let answer = post(sealed.query(), sealed.body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let shifted = post(
        query(&shifted_ts, "01", &sealed.msg_signature),
        sealed.body.clone(),
    )
    .await;
    assert_eq!(shifted.status, 401, "{}", shifted.body);

    // A fresh push, correctly signed, with a timestamp that is not canonical.
    for ts in [format!("0{t}"), format!("%2B{t}"), format!("{t}%20")] {
        let raw = ts.replace("%2B", "+").replace("%20", " ");
        let sealed = crypto.seal(&event("notify_three").to_xml(), &raw, "4711");
        let answer = post(
            query(&ts, "4711", &sealed.msg_signature),
            sealed.body.clone(),
        )
        .await;
        assert_eq!(answer.status, 401, "{ts:?}: {}", answer.body);
    }

    let text = app.metrics_text().await;
    let events = |result: &str| {
        sample(
            &text,
            &format!(
                r#"wxtoken_platform_events_total{{info_type="unknown",platform="saas",result="{result}"}}"#
            ),
        )
    };
    assert_eq!(events("refused"), Some(5.0), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"wxtoken_platform_events_total{info_type="other",platform="saas",result="ok"}"#
        ),
        Some(2.0),
        "only the two original pushes were stored"
    );
}

/// Code exchanges are serialised per code, not per platform: with WeChat slow to answer,
/// authorizations of several accounts are exchanged side by side, while one code arriving by
/// several routes at once is still exchanged once.
#[actix_web::test]
async fn different_codes_are_exchanged_side_by_side_and_one_code_once() {
    const N: usize = 6;
    let app = spawn("active").await;
    app.push_ticket().await;
    assert!(
        app.component_token_within(KEY, Duration::from_secs(5))
            .await
    );
    // Every exchange takes a second: one at a time, the fake never sees two at once.
    app.fake.inject_at(
        Endpoint::QueryAuth,
        Fault::Slow(Duration::from_secs(1)),
        100,
    );
    let appids: Vec<String> = (0..N).map(|i| format!("wx5b3a1c9d7e8f6{i:03x}")).collect();
    let pushes = futures_util::future::join_all(
        appids
            .iter()
            .map(|a| app.fake.authorize_and_push(COMPONENT, a, &[1])),
    )
    .await;
    for p in pushes {
        let (_, push) = p.expect("authorized");
        assert_eq!(push.status, Some(200), "{push:?}");
    }
    for appid in &appids {
        await_authorizer_status(&app, appid, 200, Duration::from_secs(30)).await;
    }
    assert_eq!(app.fake.calls(Endpoint::QueryAuth), N as u64);
    let peak = app.fake.peak_in_flight_at(Endpoint::QueryAuth);
    assert!(peak > 1, "exchanges ran one at a time (peak {peak})");

    // One code posted three times at once: one exchange, one account for all.
    let authorized = app
        .fake
        .authorize(COMPONENT, SHOP, &[1], None)
        .expect("authorized");
    let post = || {
        app.post(
            "/v1/platforms/saas/authorizers",
            Some(KEY),
            serde_json::json!({ "authorization_code": authorized.authorization_code }).to_string(),
        )
    };
    let (a, b, c) = futures_util::future::join3(post(), post(), post()).await;
    for answer in [a, b, c] {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["appid"], SHOP, "{}", answer.body);
    }
    assert_eq!(
        app.fake.calls(Endpoint::QueryAuth),
        N as u64 + 1,
        "the code was exchanged once"
    );
}

#[actix_web::test]
async fn an_authorization_event_brings_a_token_and_unauthorized_revokes_it() {
    let app = spawn("active").await;
    app.push_ticket().await;
    let (authorized, push) = app
        .fake
        .authorize_and_push(COMPONENT, SHOP, &[1, 17])
        .await
        .expect("authorized");
    assert_eq!(push.status, Some(200));
    assert_eq!(authorized.authorizer_appid, SHOP);
    await_authorizer_status(&app, SHOP, 200, Duration::from_secs(10)).await;
    let answer = authorizer_token(&app, SHOP).await;
    assert_eq!(answer.body["appid"], SHOP);
    // The token api_query_auth handed out is served: no api_authorizer_token call.
    assert_eq!(
        answer.body["access_token"].as_str(),
        app.fake
            .current_authorizer_token(COMPONENT, SHOP)
            .as_deref()
    );
    let listed = app
        .get(&format!("/v1/platforms/saas/authorizers/{SHOP}"), Some(KEY))
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["state"], "authorized");
    assert_eq!(listed.body["func_ids"], serde_json::json!([1, 17]));
    let refresh = app
        .fake
        .authorizer_refresh_token(COMPONENT, SHOP)
        .expect("a refresh token");
    assert!(
        !listed.body.to_string().contains(&refresh),
        "never a refresh token"
    );

    let push = app
        .fake
        .unauthorize_and_push(COMPONENT, SHOP)
        .await
        .expect("pushed");
    assert_eq!(push.status, Some(200));
    let answer = authorizer_token(&app, SHOP).await;
    assert_eq!(answer.status, 410, "{}", answer.body);
    assert_eq!(answer.body["error"], "authorizer_revoked");
    let unknown = authorizer_token(&app, "wx00000000000000ff").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"], "unknown_authorizer");
}

#[actix_web::test]
async fn reconciliation_imports_ten_thousand_and_an_idle_one_costs_one_call_for_200_requests() {
    let app = spawn("active").await;
    let appids = app
        .fake
        .bulk_authorize(COMPONENT, 10_000)
        .expect("authorized in bulk");
    app.push_ticket().await;
    // With no authorizer known, the first component token starts a reconciliation by itself.
    assert!(
        eventually(Duration::from_secs(30), || async {
            let list = app
                .get("/v1/platforms/saas/authorizers?limit=1", Some(KEY))
                .await;
            list.body["total"] == 10_000
        })
        .await,
        "all imported"
    );
    // Paged by appid, 1,000 at most a page, every account once.
    let mut listed = Vec::new();
    for offset in (0..10_000).step_by(1000) {
        let page = app
            .get(
                &format!("/v1/platforms/saas/authorizers?offset={offset}&limit=5000"),
                Some(KEY),
            )
            .await;
        let appids = page.body["authorizers"].as_array().expect("a page").clone();
        assert_eq!(appids.len(), 1000, "offset {offset}");
        listed.extend(
            appids
                .iter()
                .map(|a| a["appid"].as_str().unwrap().to_string()),
        );
    }
    let mut expected = appids.clone();
    expected.sort();
    assert_eq!(listed, expected);
    let past = app
        .get("/v1/platforms/saas/authorizers?offset=10000", Some(KEY))
        .await;
    assert_eq!(past.body["total"], 10_000);
    assert_eq!(past.body["authorizers"], serde_json::json!([]));
    // The admin route runs it again: nothing new.
    let again = app
        .post("/v1/admin/platforms/saas/reconcile", Some(ADMIN), "")
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["listed"], 10_000);
    assert_eq!(again.body["imported"], 0);
    let forbidden = app
        .post("/v1/admin/platforms/saas/reconcile", Some(KEY), "")
        .await;
    assert_eq!(forbidden.status, 403);

    let idle = &appids[1234];
    let requests: Vec<_> = (0..200).map(|_| authorizer_token(&app, idle)).collect();
    let answers = futures_util::future::join_all(requests).await;
    let token = app.fake.current_authorizer_token(COMPONENT, idle).unwrap();
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["access_token"].as_str(), Some(token.as_str()));
    }
    assert_eq!(app.fake.authorizer_tokens_minted(COMPONENT, idle), 1);
    let text = app.metrics_text().await;
    let state = |s: &str| {
        sample(
            &text,
            &format!(r#"wxtoken_authorizers{{platform="saas",state="{s}"}}"#),
        )
    };
    assert_eq!(
        state("active"),
        Some(1.0),
        "one account is being kept fresh"
    );
    assert_eq!(state("idle"), Some(9_999.0));
    // One series for all authorizer actors of the platform, none per account, and no token
    // gauge made up for the shared label.
    assert!(!text.contains(idle.as_str()), "no per-authorizer series");
    assert!(
        text.lines()
            .any(|l| l.starts_with("wxtoken_token_refreshes_total")
                && l.contains(r#"app="platform:saas:authorizers""#)),
        "the authorizers' refreshes are counted under the shared label"
    );
    assert_eq!(
        sample(
            &text,
            r#"wxtoken_token_seconds_left{app="platform:saas:authorizers"}"#
        ),
        None
    );
    // Nobody else was fetched: "active" refreshes only what is asked for.
    assert_eq!(app.fake.authorizer_tokens_minted(COMPONENT, &appids[0]), 0);
}

#[actix_web::test]
async fn a_refused_refresh_token_is_looked_up_once_and_then_needs_reauth() {
    let (app, appids, first) = three_accounts_first_served().await;
    // WeChat changed the refresh token behind our back: 61023, then the list has the new one.
    app.fake
        .rotate_refresh_token(COMPONENT, &appids[0])
        .expect("rotated");
    past_min_interval().await;
    assert!(app.fake.kill_token(&first));
    let answer = invalidate(&app, &appids[0], &first).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_ne!(answer.body["access_token"].as_str(), Some(first.as_str()));
    let listed = app
        .get(
            &format!("/v1/platforms/saas/authorizers/{}", appids[0]),
            Some(KEY),
        )
        .await;
    assert_eq!(listed.body["state"], "authorized");

    // Now the account must authorize again: listed with the very token that is refused.
    app.fake
        .require_reauth(COMPONENT, &appids[0])
        .expect("needs reauth");
    let current = app
        .fake
        .current_authorizer_token(COMPONENT, &appids[0])
        .unwrap();
    past_min_interval().await;
    assert!(app.fake.kill_token(&current));
    let _ = invalidate(&app, &appids[0], &current).await;
    await_authorizer_status(&app, &appids[0], 409, Duration::from_secs(5)).await;
    let answer = authorizer_token(&app, &appids[0]).await;
    assert_eq!(answer.body["error"], "authorizer_needs_reauth");
    let calls = app.fake.calls(Endpoint::AuthorizerToken);
    // No retry loop: more requests cost nothing upstream.
    for _ in 0..5 {
        assert_eq!(authorizer_token(&app, &appids[0]).await.status, 409);
    }
    // A bounded wait: a retry loop would run on the retry timers (100 ms at the least), and
    // a retry that never happens leaves no counter; 300 ms covers several of its periods.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.fake.calls(Endpoint::AuthorizerToken), calls);
}

#[actix_web::test]
async fn a_ticket_the_disk_cannot_take_is_not_acknowledged_and_makes_the_instance_unready() {
    let Some(disk) = crate::support::tmpfs::Tmpfs::mount("4m") else {
        return;
    };
    let path = disk.path().join("wxtoken.redb");
    let server = TestApp::builder()
        .config(&config("active"))
        .adjust(|(s, _)| {
            s.store = wxtoken::config::StoreSettings::Embedded { path };
        });
    let app = start_with_platform(FakeConfig::default(), server).await;
    app.push_ticket().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.get("/readyz", None).await.status == 200
        })
        .await
    );

    let filler = disk.fill();
    let push = app
        .fake
        .push_verify_ticket(COMPONENT)
        .await
        .expect("pushed");
    assert_eq!(push.status, Some(503), "not acknowledged: {push:?}");
    assert_ne!(push.body, "success");
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let why = ready.body["platforms"]["saas"].as_str().unwrap_or_default();
    assert!(why.contains("not saved"), "{}", ready.body);

    // Space is back: the store saves what it kept, and the instance is ready again.
    std::fs::remove_file(filler).unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            app.get("/readyz", None).await.status == 200
        })
        .await,
        "{}",
        app.get("/readyz", None).await.body
    );
}

#[actix_web::test]
async fn an_authorizers_jsapi_ticket_and_signature_use_its_own_token_and_appid() {
    let app = spawn("active").await;
    let appids = app.fake.bulk_authorize(COMPONENT, 2).expect("authorized");
    app.push_ticket().await;
    let ticket_path = format!("/v1/platforms/saas/authorizers/{}/ticket/jsapi", appids[0]);
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.get(&ticket_path, Some(KEY)).await.status == 200
        })
        .await,
        "{}",
        app.get(&ticket_path, Some(KEY)).await.body
    );
    let answer = app.get(&ticket_path, Some(KEY)).await;
    assert_eq!(answer.body["appid"], appids[0].as_str());
    assert_eq!(answer.body["type"], "jsapi");
    let ticket = answer.body["ticket"].as_str().unwrap().to_string();
    // Fetched once, with the authorizer's token, and served from then on.
    assert_eq!(app.fake.authorizer_tickets_minted(COMPONENT, &appids[0]), 1);
    assert_eq!(
        app.get(&ticket_path, Some(KEY)).await.body["ticket"],
        ticket.as_str()
    );
    assert_eq!(app.fake.authorizer_tickets_minted(COMPONENT, &appids[0]), 1);

    let url = "https://shop.example.com/page?x=1";
    let signed = app
        .post(
            &format!(
                "/v1/platforms/saas/authorizers/{}/jssdk/signature",
                appids[0]
            ),
            Some(KEY),
            serde_json::json!({ "url": url }).to_string(),
        )
        .await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert_eq!(
        signed.body["appId"],
        appids[0].as_str(),
        "the authorizer's appid"
    );
    let nonce = signed.body["nonceStr"].as_str().unwrap();
    let timestamp = signed.body["timestamp"].as_u64().unwrap();
    let expected = wxtoken::jssdk::signature(&ticket, nonce, timestamp, url);
    assert_eq!(signed.body["signature"].as_str(), Some(expected.as_str()));

    let unknown = app
        .get(
            "/v1/platforms/saas/authorizers/wx00000000000000ff/ticket/jsapi",
            Some(KEY),
        )
        .await;
    assert_eq!(unknown.status, 404);
    let bad_kind = app
        .get(
            &format!("/v1/platforms/saas/authorizers/{}/ticket/nope", appids[0]),
            Some(KEY),
        )
        .await;
    assert_eq!(bad_kind.status, 404);
}

/// The real binary at the most verbose level, through every platform path: no component
/// secret, message Token, AES key, ticket, code, refresh token or token in its log.
#[actix_web::test]
async fn the_binary_logs_no_platform_secret_even_at_trace() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, base, log) = crate::support::process::serve_at_trace(
        dir.path(),
        &format!(
            "[upstream]\nbase_url = \"{}\"\nmin_token_lifetime_secs = 2\n[store]\npath = {}\n{}",
            fake.base_url(),
            toml::Value::String(dir.path().join("s.redb").display().to_string()),
            config("active"),
        ),
    );
    fake.set_event_url(COMPONENT, Some(&format!("{base}/v1/platforms/saas/events")))
        .unwrap();
    let http = client();
    let mut secrets: Vec<String> =
        vec![SECRET.into(), MSG_TOKEN.into(), AES_KEY.into(), KEY.into()];
    let push = fake.push_verify_ticket(COMPONENT).await.unwrap();
    assert_eq!(push.status, Some(200), "{push:?}");
    secrets.extend(push.ticket.clone());
    let (authorized, _) = fake
        .authorize_and_push(COMPONENT, SHOP, &[1])
        .await
        .unwrap();
    secrets.push(authorized.authorization_code.clone());
    let url = format!("{base}/v1/platforms/saas/authorizers/{SHOP}/token");
    let body = json_when_served(&http, &url, KEY).await;
    secrets.push(body["access_token"].as_str().unwrap().to_string());
    let (_, body) = get_json(
        &http,
        &format!("{base}/v1/platforms/saas/component_token"),
        KEY,
    )
    .await;
    let component = body["component_access_token"].as_str().unwrap().to_string();
    secrets.push(component.clone());
    secrets.extend(fake.authorizer_refresh_token(COMPONENT, SHOP));
    // Through the gateway and the component facade too: a component call, an answer carrying
    // a refresh token (masked), and a code exchanged for an SDK.
    let post = |path: String, body: serde_json::Value| {
        let http = http.clone();
        async move { post_json(&http, &path, &body).await }
    };
    let preauth = post(
        format!(
            "{base}/cgi-bin/component/api_create_preauthcode?component_access_token={component}"
        ),
        serde_json::json!({ "component_appid": COMPONENT }),
    )
    .await;
    assert!(preauth["pre_auth_code"].is_string(), "{preauth}");
    let info = post(
        format!(
            "{base}/cgi-bin/component/api_get_authorizer_info?component_access_token={component}"
        ),
        serde_json::json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP }),
    )
    .await;
    assert_eq!(
        info["authorization_info"]["authorizer_refresh_token"],
        wxtoken::http::component_facade::PLACEHOLDER_REFRESH_TOKEN
    );
    const CAFE: &str = "wx6c4b2d0e8f9a7b53";
    let cafe = fake.authorize(COMPONENT, CAFE, &[1], None).unwrap();
    secrets.push(cafe.authorization_code.clone());
    let exchanged = post(
        format!("{base}/cgi-bin/component/api_query_auth?component_access_token={component}"),
        serde_json::json!({ "component_appid": COMPONENT, "authorization_code": cafe.authorization_code }),
    )
    .await;
    let cafe_token = exchanged["authorization_info"]["authorizer_access_token"]
        .as_str()
        .unwrap_or_default();
    assert!(!cafe_token.is_empty(), "{exchanged}");
    secrets.push(cafe_token.to_string());
    secrets.extend(fake.authorizer_refresh_token(COMPONENT, CAFE));
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("authorizer authorized"),
        "the log says what happened"
    );
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "the log holds a secret of {} bytes ({} bytes of log)",
            secret.len(),
            text.len()
        );
    }
}

/// Settings of one fleet instance on `redis`, with its own local copy of the records.
fn fleet_settings(
    fake: &FakeWechat,
    redis: &crate::support::fleet::RedisServer,
    local: &std::path::Path,
) -> wxtoken::config::Settings {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nbase_url = \"{}\"\nmin_token_lifetime_secs = 2\n[store]\nkind = \"redis\"\nurl = \"{}\"\nlocal_path = {}\n{}",
        fake.base_url(),
        redis.url(),
        toml::Value::String(local.display().to_string()),
        config("active"),
    );
    wxtoken::config::Settings::from_toml(&text, &[], &|_| None).expect("fleet config is valid")
}

#[actix_web::test]
async fn a_fleet_shares_authorizers_and_a_flushed_redis_loses_no_refresh_token() {
    let redis = crate::support::fleet::RedisServer::start(None);
    let fake = fake().await;
    let locals = crate::support::fleet::LocalCopies::new(2);
    let settings = |l: &std::path::Path| fleet_settings(&fake, &redis, l);
    let fleet = locals.start(settings);
    fake.set_event_url(
        COMPONENT,
        Some(&format!("{}/v1/platforms/saas/events", fleet[0].base)),
    )
    .unwrap();
    let http = client();
    let push = fake.push_verify_ticket(COMPONENT).await.unwrap();
    assert_eq!(push.status, Some(200), "{push:?}");
    fake.authorize_and_push(COMPONENT, SHOP, &[1])
        .await
        .unwrap();
    let token_at = |base: &str| format!("{base}/v1/platforms/saas/authorizers/{SHOP}/token");
    json_when_served(&http, &token_at(&fleet[0].base), KEY).await;
    // The other instance learns of the account from the shared records and serves the same
    // token: the authorization and the token are the fleet's, not the receiving instance's.
    // Its SDK facade, the first there to hear of the account, finds it too.
    let (s0, a) = get_json(&http, &token_at(&fleet[0].base), KEY).await;
    let post = |path: String, body: serde_json::Value| {
        let http = http.clone();
        async move { post_json(&http, &path, &body).await }
    };
    let base = &fleet[1].base;
    let component = post(
        format!("{base}/cgi-bin/component/api_component_token"),
        serde_json::json!({ "component_appid": COMPONENT, "component_appsecret": KEY }),
    )
    .await;
    let via_facade = post(
        format!(
            "{base}/cgi-bin/component/api_authorizer_token?component_access_token={}",
            component["component_access_token"]
                .as_str()
                .unwrap_or_default()
        ),
        serde_json::json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP }),
    )
    .await;
    assert_eq!(
        via_facade["authorizer_access_token"], a["access_token"],
        "{via_facade}"
    );
    // Running the account now, the instance knows its token at the pass-through too.
    let (_, user) = get_json(
        &http,
        &format!(
            "{base}/cgi-bin/user/info?openid=o1&access_token={}",
            a["access_token"].as_str().unwrap_or_default()
        ),
        KEY,
    )
    .await;
    assert_eq!(user["openid"], "o1", "{user}");
    let (s1, b) = get_json(&http, &token_at(&fleet[1].base), KEY).await;
    assert_eq!((s0, s1), (200, 200), "{a} {b}");
    assert_eq!(a["access_token"], b["access_token"]);

    // Redis loses everything, and every instance restarts.
    let fleet = locals.restart_on_empty_redis(fleet, &redis, settings);
    crate::support::fleet::each_serves(&http, &fleet, KEY, token_at).await;
    // The refresh token came back from the local copies: WeChat still knows it, and the
    // account is authorized, not in need of a new authorization.
    let (_, listed) = get_json(
        &http,
        &format!("{}/v1/platforms/saas/authorizers/{SHOP}", fleet[1].base),
        KEY,
    )
    .await;
    assert_eq!(listed["state"], "authorized", "{listed}");
    assert_eq!(listed["has_refresh_token"], true);
    for s in fleet {
        s.stop();
    }
}

#[actix_web::test]
async fn a_push_sealed_by_wechatpy_is_accepted_by_the_event_url() {
    crate::support::wechatpy::require_wechatpy();
    let app = spawn("active").await;
    let now = now_secs();
    let event = Event {
        app_id: COMPONENT.into(),
        create_time: now,
        kind: EventKind::VerifyTicket {
            ticket: "ticket@@@from-wechatpy".into(),
        },
    };
    let sealed = crate::support::wechatpy::wechatpy(serde_json::json!({
        "token": MSG_TOKEN, "key": AES_KEY, "appid": COMPONENT, "op": "seal",
        "messages": [{"xml": event.to_xml(), "timestamp": now.to_string(), "nonce": "777"}],
    }));
    let query = format!(
        "timestamp={now}&nonce=777&encrypt_type=aes&msg_signature={}",
        sealed[0]["msg_signature"].as_str().unwrap()
    );
    let answer = app
        .post_event(&query, sealed[0]["body"].as_str().unwrap().to_string())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The ticket was stored and a component token is asked for with it (the fake refuses a
    // ticket it did not issue, so that call fails; that it is made shows the push took).
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.fake.calls(Endpoint::ComponentToken) >= 1
        })
        .await
    );
}

#[actix_web::test]
async fn a_ticket_outage_keeps_the_token_served_and_asks_for_a_push_once() {
    let app = spawn("active").await;
    // Short component tokens: refreshed every couple of seconds.
    app.fake.set_expires_in(6);
    app.push_ticket().await;
    assert!(
        app.component_token_within(KEY, Duration::from_secs(5))
            .await
    );
    // WeChat stops accepting tickets (expired): every refresh fails with 61005.
    app.fake.inject_at(
        Endpoint::ComponentToken,
        wxtoken::fake::Fault::Errcode(61005),
        1000,
    );
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let answer = component_token(&app).await;
        assert_eq!(answer.status, 200, "served while valid: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        app.fake.calls(Endpoint::ComponentToken) >= 2,
        "refreshes were tried"
    );
    // `/readyz` says the held token's refreshes fail (it used to say `ok`), and stays ready:
    // the token is still served.
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let why = ready.body["platforms"]["saas"].as_str().unwrap_or_default();
    assert!(
        why.contains("refreshes fail") && why.contains("61005"),
        "{}",
        ready.body
    );
    // Asked for a new push once, however many refreshes failed (at most one per 10 minutes).
    assert_eq!(app.fake.calls(Endpoint::StartPushTicket), 1);
}

#[actix_web::test]
async fn all_mode_keeps_every_account_warm_without_a_request() {
    let app = spawn("all").await;
    let appids = app.fake.bulk_authorize(COMPONENT, 3).expect("authorized");
    app.push_ticket().await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            appids
                .iter()
                .all(|a| app.fake.authorizer_tokens_minted(COMPONENT, a) == 1)
        })
        .await,
        "every account fetched without being asked for"
    );
}

#[actix_web::test]
async fn an_account_that_left_is_revoked_by_its_refused_refresh_or_by_reconciliation() {
    let (app, appids, first) = three_accounts_first_served().await;
    // Both leave without a word: not listed any more, their refresh tokens refused (61023).
    app.fake.unauthorize(COMPONENT, &appids[0]).unwrap();
    app.fake.unauthorize(COMPONENT, &appids[1]).unwrap();
    past_min_interval().await;
    let _ = invalidate(&app, &appids[0], &first).await;
    await_authorizer_status(&app, &appids[0], 410, Duration::from_secs(5)).await;
    // The other one, never asked for, is found out by the reconciliation.
    let done = app
        .post("/v1/admin/platforms/saas/reconcile", Some(ADMIN), "")
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["revoked"], 1, "{}", done.body);
    assert_eq!(authorizer_token(&app, &appids[1]).await.status, 410);
    assert_eq!(authorizer_token(&app, &appids[2]).await.status, 200);
    let revoked = app
        .get("/v1/platforms/saas/authorizers?state=revoked", Some(KEY))
        .await;
    assert_eq!(revoked.body["total"], 2, "{}", revoked.body);
}

#[actix_web::test]
async fn a_reauthorization_replaces_the_token_it_killed() {
    let app = spawn("active").await;
    app.push_ticket().await;
    fake_authorize(&app).await;
    let first = served_token(&app, SHOP).await;
    // The merchant authorizes again (updateauthorized): WeChat kills the old token at once.
    let (again, push) = app
        .fake
        .authorize_and_push(COMPONENT, SHOP, &[1, 2])
        .await
        .unwrap();
    assert_eq!(again.info_type, "updateauthorized");
    assert_eq!(push.status, Some(200));
    assert!(
        eventually(Duration::from_secs(10), || async {
            let a = authorizer_token(&app, SHOP).await;
            a.status == 200 && a.body["access_token"].as_str() != Some(first.as_str())
        })
        .await,
        "the killed token is not served: {} {}",
        authorizer_token(&app, SHOP).await.status,
        authorizer_token(&app, SHOP).await.body
    );
    let served = served_token(&app, SHOP).await;
    assert_eq!(
        Some(served),
        app.fake.current_authorizer_token(COMPONENT, SHOP),
        "the new token, the one WeChat accepts"
    );
    // The record's permissions are written with the exchange, which may finish just after the
    // token is served.
    let record = format!("/v1/platforms/saas/authorizers/{SHOP}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.get(&record, Some(KEY)).await.body["func_ids"] == serde_json::json!([1, 2])
        })
        .await,
        "{}",
        app.get(&record, Some(KEY)).await.body
    );
}

/// Authorizes SHOP through a pushed event and waits until its token is served.
async fn fake_authorize(app: &TestApp) {
    app.fake
        .authorize_and_push(COMPONENT, SHOP, &[1])
        .await
        .expect("authorized");
    await_authorizer_status(app, SHOP, 200, Duration::from_secs(10)).await;
}

#[actix_web::test]
async fn a_push_of_another_kind_is_answered_success_and_counted() {
    let app = spawn("active").await;
    let crypto = crypto();
    let now = now_secs();
    let event = other_event("notify_third_fasteregister", now);
    let sealed = crypto.seal(&event.to_xml(), &now.to_string(), "9001");
    let answer = app.post_event(&sealed.query(), sealed.body.clone()).await;
    assert_eq!(answer.status, 200, "never an error: WeChat would retry it");
    let text = app.metrics_text().await;
    assert_eq!(
        sample(
            &text,
            r#"wxtoken_platform_events_total{info_type="other",platform="saas",result="ok"}"#
        ),
        Some(1.0)
    );
}
