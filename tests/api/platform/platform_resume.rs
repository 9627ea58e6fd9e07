//! An acknowledged authorization survives the death of the instance that acknowledged it: the
//! real binary, killed with SIGKILL while WeChat (the fake) is slow to exchange the pushed code,
//! exchanges it after a restart, on the embedded store and in a fleet on Redis, without a
//! reconciliation and without exchanging a code twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wxtoken::fake::{Endpoint, FakeConfig, FakeWechat, Fault};
use wxtoken::metrics::{Metrics, MetricsMode};
use wxtoken::store::platform::{code_digest, CodeState, PlatformStore as _};
use wxtoken::store::EmbeddedStore;

use crate::support::fleet::RedisServer;
use crate::support::helpers::*;
use crate::support::platform::{
    crypto, now_secs, platform_and_crm, push_ticket, route_pushes, start_platform_fake,
    start_with_platform, COMPONENT,
};
use crate::support::process::{wait_for_listen_addr, wxtoken, KillOnDrop};

const KEY: &str = "platform-client-key-00000001";
/// Exchanged normally first, so that a restarted instance knows an account and runs no first
/// reconciliation (which would import the other one from the list).
const FIRST: &str = "wx5b3a1c9d7e8f6a42";
/// Pushed while WeChat is slow, then the instance is killed mid-exchange.
const CUT: &str = "wx6c4b2d0e8f9a7b53";

async fn fake() -> FakeWechat {
    start_platform_fake(FakeConfig::default()).await
}

/// A configuration file for the binary on a port of its own; `store` is its `[store]` table.
fn write_config(dir: &Path, name: &str, fake: &FakeWechat, store: &str) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
shutdown_timeout_secs = 2
[upstream]
base_url = "{base}"
timeout_secs = 2
min_token_lifetime_secs = 2
{store}
{platform}"#,
            base = fake.base_url(),
            platform = platform_and_crm(KEY),
        ),
    )
    .unwrap();
    file
}

/// The binary serving `config`, its log in `dir`; killed (SIGKILL) when dropped.
struct Instance {
    child: KillOnDrop,
    base: String,
}

impl Instance {
    fn start(config: &Path, dir: &Path, run: &str) -> Instance {
        let log = dir.join(format!("{run}.log"));
        let child = wxtoken(&["serve", "--config", config.to_str().unwrap()])
            .env("WXTOKEN_LOG", "info")
            .current_dir(dir)
            .stdout(std::fs::File::create(dir.join(format!("{run}.out"))).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let base = format!("http://{}", wait_for_listen_addr(&log, &mut child.0));
        Instance { child, base }
    }

    /// kill -9: nothing in flight is finished, nothing is flushed.
    fn kill(mut self) {
        self.child.0.kill().expect("SIGKILL");
        self.child.0.wait().expect("reaped");
    }

    async fn token(&self, appid: &str) -> (u16, serde_json::Value) {
        let url = format!("{}/v1/platforms/saas/authorizers/{appid}/token", self.base);
        get_json(&client(), &url, KEY).await
    }

    async fn served(&self, appid: &str, within: Duration) -> bool {
        eventually(within, || async { self.token(appid).await.0 == 200 }).await
    }
}

/// Pushes a ticket to `at` and waits for its component token; then `FIRST` authorizes and is
/// served; then `CUT` authorizes while every exchange hangs, and `at` is killed as soon as its
/// exchange reached WeChat. Answers the exchanges and list calls WeChat saw by then, and the
/// cut code.
async fn authorize_and_kill_mid_exchange(fake: &FakeWechat, at: Instance) -> (u64, u64, String) {
    route_pushes(fake, &at.base);
    push_ticket(fake).await;
    let (_, push) = fake
        .authorize_and_push(COMPONENT, FIRST, &[1])
        .await
        .unwrap();
    assert_eq!(push.status, Some(200), "{push:?}");
    assert!(at.served(FIRST, Duration::from_secs(20)).await);
    let before = fake.calls(Endpoint::QueryAuth);

    fake.inject_at(
        Endpoint::QueryAuth,
        Fault::Slow(Duration::from_secs(60)),
        100,
    );
    let (cut, push) = fake
        .authorize_and_push(COMPONENT, CUT, &[1, 17])
        .await
        .unwrap();
    assert_eq!(
        push.status,
        Some(200),
        "the push was acknowledged: {push:?}"
    );
    assert_eq!(push.body, "success");
    assert!(
        eventually(Duration::from_secs(10), || async {
            fake.calls(Endpoint::QueryAuth) > before
        })
        .await,
        "the exchange reached WeChat"
    );
    at.kill();
    // WeChat answers again; the hanging call's connection died with the process.
    fake.clear_faults();
    (
        fake.calls(Endpoint::QueryAuth),
        fake.calls(Endpoint::GetAuthorizerList),
        cut.authorization_code,
    )
}

#[actix_web::test]
async fn an_authorization_cut_by_a_kill_is_exchanged_after_the_restart_on_the_embedded_store() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\npath = {}",
        toml::Value::String(dir.path().join("s.redb").display().to_string())
    );
    let config = write_config(dir.path(), "embedded", &fake, &store);
    let first = Instance::start(&config, dir.path(), "first");
    let (exchanges, listed, cut) = authorize_and_kill_mid_exchange(&fake, first).await;

    let again = Instance::start(&config, dir.path(), "again");
    assert!(
        again.served(CUT, Duration::from_secs(30)).await,
        "the acknowledged authorization was lost: {}",
        again.token(CUT).await.1
    );
    let (_, body) = again.token(CUT).await;
    assert_eq!(
        body["access_token"].as_str(),
        fake.current_authorizer_token(COMPONENT, CUT).as_deref(),
        "the token of the resumed exchange"
    );
    assert_eq!(
        fake.calls(Endpoint::QueryAuth),
        exchanges + 1,
        "one more exchange"
    );
    assert_eq!(
        fake.calls(Endpoint::GetAuthorizerList),
        listed,
        "no reconciliation brought it"
    );
    again.kill();

    // Both codes are marked done in the file, without the codes: nothing is resumed again.
    let store = EmbeddedStore::open(
        &dir.path().join("s.redb"),
        Metrics::new(&[], MetricsMode::Full),
    )
    .unwrap();
    let codes = store.load_codes("saas").await.unwrap();
    assert_eq!(codes.len(), 2, "{codes:?}");
    for c in &codes {
        assert_eq!(c.state, CodeState::Exchanged, "{c:?}");
        assert!(c.code.is_none(), "a done code is not kept");
    }
    assert!(codes.iter().any(|c| c.digest == code_digest(&cut)));
}

/// Instance `a` acknowledges the push and dies mid-exchange; `b`, which never saw the push,
/// exchanges the code once `a`'s claim lapses; `a` restarted finds it done. One exchange after
/// the kill, the refresh token WeChat handed out is the one stored, and both serve the account.
#[actix_web::test]
async fn in_a_fleet_on_redis_another_instance_resumes_the_code_and_it_is_exchanged_once() {
    let fake = fake().await;
    let redis = RedisServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let store = |name: &str| {
        format!(
            "[store]\nkind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"wxt\"\ninstance = \"{name}\"\n\
             poll_secs = 1\nlocal_path = {}",
            redis.url(),
            toml::Value::String(dir.path().join(format!("{name}-local.redb")).display().to_string())
        )
    };
    let config_a = write_config(dir.path(), "a", &fake, &store("a"));
    let config_b = write_config(dir.path(), "b", &fake, &store("b"));
    let a = Instance::start(&config_a, dir.path(), "a");
    let (exchanges, listed, _) = authorize_and_kill_mid_exchange(&fake, a).await;

    let b = Instance::start(&config_b, dir.path(), "b");
    assert!(
        b.served(CUT, Duration::from_secs(60)).await,
        "the acknowledged authorization was lost: {}",
        b.token(CUT).await.1
    );
    assert_eq!(fake.calls(Endpoint::QueryAuth), exchanges + 1);

    let a = Instance::start(&config_a, dir.path(), "a-again");
    assert!(a.served(CUT, Duration::from_secs(20)).await);
    assert_eq!(
        a.token(CUT).await.1["access_token"],
        b.token(CUT).await.1["access_token"]
    );
    // `a` looked at the stored codes at start and found this one done.
    let log = dir.path().join("a-again.log");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || async {
            text().contains("stored authorization codes looked at")
        })
        .await,
        "{}",
        text()
    );
    assert!(
        !text().contains("resuming the exchange"),
        "a done code was resumed"
    );
    assert_eq!(
        fake.calls(Endpoint::QueryAuth),
        exchanges + 1,
        "exchanged once after the kill"
    );
    assert_eq!(fake.calls(Endpoint::GetAuthorizerList), listed);
    let stored: serde_json::Value = serde_json::from_str(
        &redis
            .hget("wxt:platform:saas:authorizers", CUT)
            .expect("the account's record in Redis"),
    )
    .unwrap();
    assert_eq!(
        stored["refresh_token"].as_str(),
        fake.authorizer_refresh_token(COMPONENT, CUT).as_deref(),
        "the refresh token of the one exchange is stored"
    );
    drop(b);
}

// ---- in the process: expiry and refusals end a stored code -----------------------------------

fn platform_config() -> String {
    platform_and_crm(KEY).to_string()
}

/// A server for the platform with its component token, the fake pushing to its event URL.
async fn spawn_with_token() -> TestApp {
    let server = TestApp::builder().config(&platform_config());
    let app = start_with_platform(FakeConfig::default(), server).await;
    app.push_ticket().await;
    assert!(
        app.component_token_within(KEY, Duration::from_secs(5))
            .await
    );
    app
}

fn platform(app: &TestApp) -> std::sync::Arc<wxtoken::platform::Platform> {
    app.state.platforms.get("saas").expect("platform").clone()
}

/// Waits for the stored record of `code` to be done, and returns it.
async fn done_record(app: &TestApp, code: &str) -> wxtoken::store::platform::CodeRecord {
    let p = platform(app);
    let digest = code_digest(code);
    let load = || async { p.store().load_code("saas", &digest).await.unwrap() };
    let done = eventually(Duration::from_secs(10), || async {
        load().await.is_some_and(|r| r.state != CodeState::Pending)
    })
    .await;
    let record = load().await;
    assert!(done, "{record:?}");
    record.unwrap()
}

/// A push whose `AuthorizationCodeExpiredTime` is past by more than clocks may disagree is
/// acknowledged, never sent to WeChat, and its code marked dead: not resumed at every look.
#[actix_web::test]
async fn a_pushed_code_long_expired_is_marked_dead_without_calling_wechat() {
    use wxtoken::push::event::{Authorization, Event, EventKind};
    let app = spawn_with_token().await;
    // A code WeChat would still take: only the push's expiry says no.
    let issued = app.fake.authorize(COMPONENT, CUT, &[1], None).unwrap();
    let now = now_secs();
    let event = Event {
        app_id: COMPONENT.into(),
        create_time: now,
        kind: EventKind::Authorized(Authorization {
            authorizer_appid: CUT.into(),
            authorization_code: issued.authorization_code.clone().into(),
            code_expires_at: now - 3600,
            pre_auth_code: None,
        }),
    };
    let sealed = crypto().seal(&event.to_xml(), &now.to_string(), "5150");
    let answer = app.post_event(&sealed.query(), sealed.body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let record = done_record(&app, &issued.authorization_code).await;
    assert_eq!(record.state, CodeState::Dead);
    assert_eq!(record.errcode, Some(61010));
    assert!(record.code.is_none());
    assert_eq!(
        platform(&app).resume_codes().await,
        0,
        "nothing left to resume"
    );
    assert_eq!(app.fake.calls(Endpoint::QueryAuth), 0);
    assert_eq!(
        app.get(
            &format!("/v1/platforms/saas/authorizers/{CUT}/token"),
            Some(KEY)
        )
        .await
        .status,
        404
    );
}

/// WeChat refusing a pushed code (61010 expired) ends it: marked dead, not resumed again.
#[actix_web::test]
async fn a_pushed_code_wechat_refuses_is_marked_dead_and_not_resumed() {
    let app = spawn_with_token().await;
    app.fake
        .inject_at(Endpoint::QueryAuth, Fault::Errcode(61010), 1);
    let (issued, push) = app
        .fake
        .authorize_and_push(COMPONENT, CUT, &[1])
        .await
        .unwrap();
    assert_eq!(push.status, Some(200), "{push:?}");
    let record = done_record(&app, &issued.authorization_code).await;
    assert_eq!(
        (record.state, record.errcode),
        (CodeState::Dead, Some(61010))
    );
    assert_eq!(platform(&app).resume_codes().await, 0);
    assert_eq!(app.fake.calls(Endpoint::QueryAuth), 1, "tried once");
}

/// A stored code WeChat calls invalid (61009) because it was spent: if its account was stored
/// since the push arrived (another instance exchanged it), the code is done and the account
/// stays authorized; if not, the code is dead and the account unknown.
#[actix_web::test]
async fn a_stored_code_already_spent_is_done_when_its_account_was_stored_since() {
    use wxtoken::store::platform::CodeRecord;
    use wxtoken::token::AccessToken;
    let app = spawn_with_token().await;
    let p = platform(&app);
    let pending = |code: &str, appid: &str| {
        let now = std::time::SystemTime::now();
        CodeRecord {
            digest: code_digest(code),
            authorizer_appid: appid.into(),
            code: Some(AccessToken::new(code)),
            state: CodeState::Pending,
            errcode: None,
            expires_at: now + Duration::from_secs(600),
            received_at: now,
            updated_at: now,
        }
    };
    // WeChat never issued these: it answers 61009, as for a code spent by someone else.
    let spent = "queryauthcode@@@spent-elsewhere";
    let lost = "queryauthcode@@@spent-and-lost";
    p.store()
        .save_code("saas", &pending(spent, FIRST))
        .await
        .unwrap();
    p.store()
        .save_code("saas", &pending(lost, CUT))
        .await
        .unwrap();
    // FIRST is stored after its push arrived (by the redirect, standing in for the instance
    // whose exchange won).
    let issued = app.fake.authorize(COMPONENT, FIRST, &[1], None).unwrap();
    let posted = app
        .post(
            "/v1/platforms/saas/authorizers",
            Some(KEY),
            serde_json::json!({ "authorization_code": issued.authorization_code }).to_string(),
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.body);

    assert_eq!(p.resume_codes().await, 2);
    let record = done_record(&app, spent).await;
    assert_eq!(record.state, CodeState::Exchanged, "{record:?}");
    let record = done_record(&app, lost).await;
    assert_eq!(
        (record.state, record.errcode),
        (CodeState::Dead, Some(61009))
    );
    assert_eq!(
        app.get(
            &format!("/v1/platforms/saas/authorizers/{FIRST}/token"),
            Some(KEY)
        )
        .await
        .status,
        200
    );
    assert_eq!(p.resume_codes().await, 0);
}

/// The redirect's code posted to `app`.
async fn post(app: &TestApp, code: &str) -> Answer {
    let body = serde_json::json!({ "authorization_code": code }).to_string();
    app.post("/v1/platforms/saas/authorizers", Some(KEY), body)
        .await
}

/// Two instances on one Redis: a code pushed to one while its exchange is slow, and posted to
/// the other meanwhile, is exchanged once (the second waits for the first's claim and record);
/// a redirect's code exchanged by one is known to the other.
#[actix_web::test]
async fn in_a_fleet_one_code_is_exchanged_once_whichever_instance_it_reaches() {
    use wxtoken::config::{RedisSettings, StoreSettings};
    let redis = RedisServer::start(None);
    let fake = fake().await;
    let on_redis = |name: &'static str| {
        let url = redis.url();
        move |both: &mut (wxtoken::config::Settings, wxtoken::startup::Options)| {
            both.0.store = StoreSettings::Redis(RedisSettings {
                key_prefix: "wxf".into(),
                poll_interval: Duration::from_millis(300),
                ..RedisSettings::for_url(&url, name)
            });
        }
    };
    let config = platform_config();
    let a = TestApp::builder()
        .fake(fake.clone())
        .config(&config)
        .adjust(on_redis("a"))
        .start()
        .await;
    let b = TestApp::builder()
        .fake(fake.clone())
        .config(&config)
        .adjust(on_redis("b"))
        .start()
        .await;
    route_pushes(&fake, &a.base);
    push_ticket(&fake).await;
    for app in [&a, &b] {
        assert!(
            app.component_token_within(KEY, Duration::from_secs(10))
                .await
        );
    }

    fake.inject_at(Endpoint::QueryAuth, Fault::Slow(Duration::from_secs(1)), 10);
    let (issued, push) = fake.authorize_and_push(COMPONENT, CUT, &[1]).await.unwrap();
    assert_eq!(push.status, Some(200), "{push:?}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            fake.calls(Endpoint::QueryAuth) == 1
        })
        .await,
        "A's exchange reached WeChat"
    );
    let answer = post(&b, &issued.authorization_code).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["appid"], CUT);
    assert_eq!(
        fake.calls(Endpoint::QueryAuth),
        1,
        "B waited for A's exchange"
    );

    fake.clear_faults();
    let issued = fake.authorize(COMPONENT, FIRST, &[1], None).unwrap();
    let answer = post(&b, &issued.authorization_code).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = post(&a, &issued.authorization_code).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["appid"], FIRST);
    assert_eq!(fake.calls(Endpoint::QueryAuth), 2, "A knew B's exchange");
}
