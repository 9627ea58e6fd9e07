//! Test harness: a fake WeChat and a wxtoken server on random loopback ports, with typed helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use serde_json::Value;
pub use wxtoken::config::PerAppMetrics;
use wxtoken::config::Settings;
use wxtoken::fake::{FakeConfig, FakeWechat};
use wxtoken::http::ServerState;
use wxtoken::startup::{Application, Options};

pub use super::answers::{ErrorAnswer, TokenAnswer, WxAnswer};
pub use super::config::{App, Client, ConfigText};

pub const SHOP_APPID: &str = "wxshop00000000001";
pub const SHOP_SECRET: &str = "shop-app-secret-value-0001";
pub const BLOG_APPID: &str = "wxblog00000000002";
pub const BLOG_SECRET: &str = "blog-app-secret-value-0002";
/// May read `shop` only.
pub const BILLING_KEY: &str = "billing-client-key-0000000001";
/// May read every app, revoke tokens and reload the configuration.
pub const OPS_KEY: &str = "ops-client-key-00000000000002";

/// Logs go to the test output only when asked: `TEST_LOG=1 cargo test`.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        wxtoken::telemetry::init("debug", std::io::stderr, false);
    }
}

/// Everything a test may want to change about the fake and the server.
#[derive(Clone)]
pub struct Spec {
    pub expires_in: u64,
    pub overlap_secs: u64,
    /// Secret configured for `shop` (the fake knows the right one).
    pub shop_secret: String,
    pub margin: Duration,
    pub min_interval: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// `refresh.reported_refetches_per_hour`.
    pub reported_refetches_per_hour: u32,
    pub upstream_timeout: Duration,
    pub wait_limit: Duration,
    pub ca_file: Option<PathBuf>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            expires_in: 7200,
            overlap_secs: 300,
            shop_secret: SHOP_SECRET.into(),
            margin: Duration::from_secs(600),
            min_interval: Duration::ZERO,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
            reported_refetches_per_hour: 4,
            upstream_timeout: Duration::from_secs(2),
            wait_limit: Duration::from_secs(2),
            ca_file: None,
        }
    }
}

pub async fn start_fake(spec: &Spec) -> FakeWechat {
    FakeWechat::start(FakeConfig {
        apps: vec![
            (SHOP_APPID.into(), SHOP_SECRET.into()),
            (BLOG_APPID.into(), BLOG_SECRET.into()),
        ],
        expires_in: spec.expires_in,
        overlap_secs: spec.overlap_secs,
        ..FakeConfig::default()
    })
    .await
    .expect("fake WeChat starts")
}

/// The configuration file text tests start from (also used by the subprocess tests).
pub fn config_text(base_url: &str, store: &Path, listen: &str) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
shutdown_timeout_secs = 2
[upstream]
base_url = "{base_url}"
timeout_secs = 2
min_token_lifetime_secs = 2
[refresh]
margin_secs = 600
min_interval_secs = 0
retry_min_secs = 1
retry_max_secs = 2
[store]
kind = "embedded"
path = {store}
{apps_and_clients}"#,
        store = toml::Value::String(store.display().to_string()),
        apps_and_clients = standard_apps_and_clients(),
    )
}

/// A path as a TOML string, quoted and escaped, for a configuration file's text.
pub fn quoted(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// A short configuration file's text: a server on any loopback port against the fake at
/// `base` (WeChat's and WeCom's APIs both; taking tokens with 2 s left, as the fake's short
/// lifetimes need), with `store`'s lines under `[store]`; `rest` adds the apps, clients and
/// any other tables.
pub fn server_file(base: &str, store: &str, rest: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[upstream]
base_url = "{base}"
wecom_base_url = "{base}"
min_token_lifetime_secs = 2
[store]
{store}
{rest}"#
    )
}

/// `shop` and `blog`, their secrets in the environment; the `billing` client (key in the
/// environment) and the `ops` admin (known by its key's digest).
fn standard_apps_and_clients() -> ConfigText {
    let ops = hex::encode(wxtoken::config::key_digest(OPS_KEY));
    ConfigText::new()
        .app(App::official_env(
            "shop",
            SHOP_APPID,
            "WXTOKEN_TEST_SHOP_SECRET",
        ))
        .app(App::official_env(
            "blog",
            BLOG_APPID,
            "WXTOKEN_TEST_BLOG_SECRET",
        ))
        .client(Client::key_env("billing", "WXTOKEN_TEST_BILLING_KEY").apps(&["shop"]))
        .client(Client::key_sha256("ops", &ops).apps(&["*"]).admin())
}

pub fn settings_for(spec: &Spec, base_url: &str, store: &Path) -> Settings {
    let text = config_text(base_url, store, "127.0.0.1:0");
    let shop = spec.shop_secret.clone();
    let lookup = move |name: &str| match name {
        "WXTOKEN_TEST_SHOP_SECRET" => Some(shop.clone()),
        "WXTOKEN_TEST_BLOG_SECRET" => Some(BLOG_SECRET.to_string()),
        "WXTOKEN_TEST_BILLING_KEY" => Some(BILLING_KEY.to_string()),
        _ => None,
    };
    let mut s = Settings::from_toml(&text, &[], &lookup).expect("test config is valid");
    s.refresh.margin = spec.margin;
    s.refresh.min_interval = spec.min_interval;
    s.refresh.retry_min = spec.retry_min;
    s.refresh.retry_max = spec.retry_max;
    s.refresh.reported_refetches_per_hour = spec.reported_refetches_per_hour;
    s.upstream.timeout = spec.upstream_timeout;
    s.upstream.ca_file = spec.ca_file.clone();
    s
}

pub struct TestApp {
    pub base: String,
    pub fake: FakeWechat,
    pub state: web::Data<ServerState>,
    pub http: awc::Client,
    /// Keeps the store directory alive for the test's duration.
    _dir: Arc<tempfile::TempDir>,
}

/// How a [`TestApp`] is started: every choice has a default, so `TestApp::builder().start()`
/// is the standard app (`shop` and `blog`, the `billing` and `ops` clients) against a fresh
/// fake and store.
pub struct TestAppBuilder<'a> {
    spec: Spec,
    fake: Option<FakeWechat>,
    /// Apps the default fake knows besides `shop` and `blog`: (appid, secret), and WeCom's.
    fake_apps: Vec<(&'a str, &'a str)>,
    wecom_apps: Vec<(&'a str, &'a str)>,
    config: Option<String>,
    store: Option<(Arc<tempfile::TempDir>, PathBuf)>,
    per_app: Option<PerAppMetrics>,
    adjust: Vec<Adjust<'a>>,
}

/// A last look at the settings and options before the server is built.
type Adjust<'a> = Box<dyn FnOnce(&mut (Settings, Options)) + 'a>;

impl TestApp {
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder {
            spec: Spec::default(),
            fake: None,
            fake_apps: Vec::new(),
            wecom_apps: Vec::new(),
            config: None,
            store: None,
            per_app: None,
            adjust: Vec::new(),
        }
    }
}

impl<'a> TestAppBuilder<'a> {
    /// The test timings, token lifetime and `shop`'s configured secret.
    pub fn spec(mut self, spec: Spec) -> Self {
        self.spec = spec;
        self
    }

    /// An already running fake (default: a new one with the standard apps, from the spec).
    pub fn fake(mut self, fake: FakeWechat) -> Self {
        self.fake = Some(fake);
        self
    }

    /// More apps for the default fake to know, as (appid, secret).
    pub fn fake_apps(mut self, apps: &[(&'a str, &'a str)]) -> Self {
        self.fake_apps.extend_from_slice(apps);
        self
    }

    /// WeCom apps for the default fake to know, as (corpid, secret).
    pub fn wecom_apps(mut self, apps: &[(&'a str, &'a str)]) -> Self {
        self.wecom_apps.extend_from_slice(apps);
        self
    }

    /// The `[[apps]]` and `[[clients]]` tables (secrets inline) instead of the standard ones;
    /// the server then takes only the spec's refresh and upstream timings.
    pub fn config(mut self, apps_and_clients: &str) -> Self {
        self.config = Some(apps_and_clients.to_owned());
        self
    }

    /// An existing store file, kept alive by `dir` (restart tests; default: a fresh one).
    pub fn store(mut self, dir: Arc<tempfile::TempDir>, path: PathBuf) -> Self {
        self.store = Some((dir, path));
        self
    }

    /// The settings of the file at `path`, which reloads read again: for reload tests. The
    /// file's settings replace all the others (the spec's too), so a test still names its
    /// apps with [`Self::config`] only for the builder's sake; an [`Self::adjust`] called
    /// after this one changes the file's settings.
    pub fn config_file(self, path: &Path) -> Self {
        let settings = Settings::load(path).expect("the first file is valid");
        let path = path.to_path_buf();
        self.adjust(move |(s, o)| {
            *s = settings;
            o.config_path = Some(path);
        })
    }

    /// The per-app series set exported (`[metrics] per_app`).
    pub fn metrics(mut self, per_app: PerAppMetrics) -> Self {
        self.per_app = Some(per_app);
        self
    }

    /// Changes the settings and options last, after everything above (several run in the
    /// order given).
    pub fn adjust(mut self, f: impl FnOnce(&mut (Settings, Options)) + 'a) -> Self {
        self.adjust.push(Box::new(f));
        self
    }

    pub async fn start(self) -> TestApp {
        init_logs();
        let spec = self.spec;
        let fake = match self.fake {
            Some(f) => f,
            None => start_fake_with(&spec, &self.fake_apps, &self.wecom_apps).await,
        };
        let (dir, store) = match self.store {
            Some(s) => s,
            None => {
                let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
                let store = dir.path().join("wxtoken.redb");
                (dir, store)
            }
        };
        let mut settings = match &self.config {
            Some(apps_and_clients) => {
                custom_settings(&spec, &fake.base_url(), &store, apps_and_clients)
            }
            None => settings_for(&spec, &fake.base_url(), &store),
        };
        if let Some(per_app) = self.per_app {
            settings.metrics.per_app = per_app;
        }
        let mut both = (settings, test_options(&spec));
        for adjust in self.adjust {
            adjust(&mut both);
        }
        let (settings, options) = both;
        launch(settings, options, fake, dir).await
    }
}

/// Options for an in-process test server: the spec's wait limit, no signal handling.
pub fn test_options(spec: &Spec) -> Options {
    Options {
        wait_limit: spec.wait_limit,
        handle_signals: false,
        workers: Some(2),
        config_path: None,
        hub: Default::default(),
    }
}

/// Builds the server, runs it on the test's System, and wraps it in a `TestApp`.
async fn launch(
    settings: Settings,
    options: Options,
    fake: FakeWechat,
    dir: Arc<tempfile::TempDir>,
) -> TestApp {
    let app = Application::build(settings, options)
        .await
        .expect("server builds");
    let base = format!("http://{}", app.addr());
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        base,
        fake,
        state,
        http: client(),
        _dir: dir,
    }
}

/// An HTTP client able to hold many concurrent requests.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(1000))
        .timeout(Duration::from_secs(30))
        .finish()
}

/// Status and parsed JSON body (Null when the body is not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The body as a token answer; panics (showing it) when it is not one.
    pub fn token(&self) -> TokenAnswer {
        super::answers::parse("a token answer", self.status, &self.body)
    }

    /// The body as wxtoken's error answer; panics (showing it) when it is not one.
    pub fn error(&self) -> ErrorAnswer {
        super::answers::parse("an error answer", self.status, &self.body)
    }

    /// The body as WeChat's errcode answer; panics (showing it) when it is not one.
    pub fn wx(&self) -> WxAnswer {
        super::answers::parse("a WeChat answer", self.status, &self.body)
    }
}

impl TestApp {
    pub async fn get(&self, path: &str, key: Option<&str>) -> Answer {
        let mut req = self.http.get(format!("{}{}", self.base, path));
        if let Some(k) = key {
            req = req.insert_header(("Authorization", format!("Bearer {k}")));
        }
        answer(req.send().await.expect("request sent")).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: impl Into<String>) -> Answer {
        let mut req = self
            .http
            .post(format!("{}{}", self.base, path))
            .insert_header(("Content-Type", "application/json"));
        if let Some(k) = key {
            req = req.insert_header(("Authorization", format!("Bearer {k}")));
        }
        answer(req.send_body(body.into()).await.expect("request sent")).await
    }

    /// `GET /v1/apps/shop/token` as the billing client; panics unless 200.
    pub async fn shop_token(&self) -> String {
        let a = self.get("/v1/apps/shop/token", Some(BILLING_KEY)).await;
        assert_eq!(a.status, 200, "token request failed: {}", a.body);
        a.token().access_token
    }

    pub async fn invalidate_shop(&self, token: &str) -> Answer {
        self.post(
            "/v1/apps/shop/token/invalidate",
            Some(BILLING_KEY),
            serde_json::json!({ "access_token": token }).to_string(),
        )
        .await
    }

    pub async fn metrics_text(&self) -> String {
        let mut resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics request");
        let body = resp.body().limit(1 << 20).await.expect("metrics body");
        String::from_utf8(body.to_vec()).expect("utf-8 metrics")
    }

    /// The value of one sample, e.g. `metric(r#"wxtoken_token_refreshes_total{app="shop",result="success",trigger="startup"}"#)`.
    /// Labels must be given in the order the text format prints them (alphabetical).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        sample(&self.metrics_text().await, series)
    }

    /// Each of the `(series, value)` pairs has that value (see [`TestApp::metric`]).
    pub async fn assert_metrics(&self, expected: &[(&str, f64)]) {
        for &(series, value) in expected {
            assert_eq!(self.metric(series).await, Some(value), "{series}");
        }
    }

    pub fn minted(&self, appid: &str) -> u64 {
        self.fake.minted(appid)
    }
}

/// One sample from the `/metrics` of the server at `base`: for servers a test starts without a
/// [`TestApp`] (thread servers, fleets), whose scrape is otherwise written out each time.
pub async fn sample_at(http: &awc::Client, base: &str, series: &str) -> Option<f64> {
    let mut r = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    sample(&text, series)
}

pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn answer(
    mut resp: awc::ClientResponse<
        impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    >,
) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.body().limit(1 << 20).await.expect("response body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fake and an embedded store file that outlive the servers a restart test starts on them,
/// one after another, to see what the file carries from one to the next.
pub struct FileStore {
    pub spec: Spec,
    pub fake: FakeWechat,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl FileStore {
    pub async fn new() -> FileStore {
        let spec = Spec::default();
        let fake = start_fake(&spec).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxtoken.redb");
        FileStore {
            spec,
            fake,
            path,
            _dir: dir,
        }
    }

    /// The standard settings, on this file.
    pub fn settings(&self) -> Settings {
        settings_for(&self.spec, &self.fake.base_url(), &self.path)
    }

    /// A server on the standard settings and this file.
    pub fn start(&self) -> ThreadServer {
        ThreadServer::start(self.settings())
    }
}

/// A server in its own actix System on its own thread: stopping it drops every actor and closes
/// the store, like a process exit.
pub struct ThreadServer {
    pub base: String,
    system: actix_web::rt::System,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadServer {
    pub fn start(settings: Settings) -> ThreadServer {
        ThreadServer::start_with(settings, wxtoken::messages::HubOptions::default())
    }

    /// [`ThreadServer::start`] with the message hub's lease and poll interval.
    pub fn start_with(settings: Settings, hub: wxtoken::messages::HubOptions) -> ThreadServer {
        init_logs();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let sys = actix_web::rt::System::new();
            let built = sys.block_on(async move {
                let opts = Options {
                    handle_signals: false,
                    workers: Some(1),
                    hub,
                    ..Options::default()
                };
                // A server stopped just before, in this process, may still be dropping its
                // last reference to the store file on one of its worker threads (a process
                // exit releases it at once): give it a moment rather than fail.
                let started = std::time::Instant::now();
                let app = loop {
                    match Application::build(settings.clone(), opts.clone()).await {
                        Err(e)
                            if format!("{e:#}").contains("already in use")
                                && started.elapsed() < Duration::from_secs(5) =>
                        {
                            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                        }
                        built => break built?,
                    }
                };
                let base = format!("http://{}", app.addr());
                let handle = app.handle();
                actix_web::rt::spawn(app.run_until_stopped());
                anyhow::Ok((base, handle))
            });
            let ok = built.is_ok();
            tx.send(built.map(|(b, h)| (b, h, actix_web::rt::System::current())))
                .unwrap();
            if ok {
                sys.run().unwrap();
            }
        });
        let (base, server, system) = rx.recv().unwrap().expect("server builds");
        ThreadServer {
            base,
            system,
            server,
            thread: Some(thread),
        }
    }

    /// Stops the System at once, as a crash would: work in flight (an attempt, a write not
    /// yet answered) is dropped where it is, nothing is finished or recorded.
    pub fn kill(mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// Stops the HTTP workers (which hold the store too), then the System, and waits until
    /// its thread and every actor in it are gone.
    pub fn stop(mut self) {
        let server = self.server.clone();
        self.system.arbiter().spawn(async move {
            server.stop(false).await;
            actix_web::rt::System::current().stop();
        });
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

pub async fn get_json(http: &awc::Client, url: &str, key: &str) -> (u16, Value) {
    let mut resp = http
        .get(url)
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send()
        .await
        .expect("request sent");
    let body = resp.body().await.unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// The JSON of `url`'s first 200 answer to `key` within 10 s (panics, showing the last answer,
/// when none comes): a credential that a push or a fleet peer is about to make servable.
pub async fn json_when_served(http: &awc::Client, url: &str, key: &str) -> Value {
    let served = eventually(Duration::from_secs(10), || async {
        get_json(http, url, key).await.0 == 200
    })
    .await;
    let (status, body) = get_json(http, url, key).await;
    assert!(served && status == 200, "{url} not served: {status} {body}");
    body
}

/// POSTs `body` as JSON to `url` and reads the answer's JSON, whatever its status.
pub async fn post_json(http: &awc::Client, url: &str, body: &Value) -> Value {
    let mut resp = http.post(url).send_json(body).await.expect("answered");
    resp.json::<Value>().await.expect("JSON")
}

/// A CA, and a leaf certificate for 127.0.0.1 signed by it: the fake's TLS settings, the CA
/// certificate in DER and in PEM.
pub fn test_pki() -> (
    wxtoken::fake::FakeTls,
    rustls::pki_types::CertificateDer<'static>,
    String,
) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wxtoken test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");

    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf certificate");

    let tls = wxtoken::fake::FakeTls {
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    };
    (tls, ca.der().clone(), ca.pem())
}

/// Settings for `apps_and_clients` (the `[[apps]]` and `[[clients]]` tables, secrets inline)
/// against the fake at `base_url`, with the spec's refresh and upstream timings.
pub fn custom_settings(
    spec: &Spec,
    base_url: &str,
    store: &Path,
    apps_and_clients: &str,
) -> Settings {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[upstream]
base_url = "{base_url}"
wecom_base_url = "{base_url}"
min_token_lifetime_secs = 2
[store]
path = {store}
{apps_and_clients}
"#,
        store = toml::Value::String(store.display().to_string()),
    );
    let mut settings = Settings::from_toml(&text, &[], &|_| None).expect("test config is valid");
    settings.refresh.margin = spec.margin;
    settings.refresh.min_interval = spec.min_interval;
    settings.refresh.retry_min = spec.retry_min;
    settings.refresh.retry_max = spec.retry_max;
    settings.upstream.timeout = spec.upstream_timeout;
    settings
}

/// The fake with the standard test apps plus `extra` (appid, secret) pairs and WeCom apps.
pub async fn start_fake_with(
    spec: &Spec,
    extra: &[(&str, &str)],
    wecom: &[(&str, &str)],
) -> FakeWechat {
    let mut apps = vec![
        (SHOP_APPID.to_string(), SHOP_SECRET.to_string()),
        (BLOG_APPID.to_string(), BLOG_SECRET.to_string()),
    ];
    apps.extend(extra.iter().map(|(a, s)| (a.to_string(), s.to_string())));
    FakeWechat::start(FakeConfig {
        apps,
        wecom_apps: wecom
            .iter()
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .collect(),
        expires_in: spec.expires_in,
        overlap_secs: spec.overlap_secs,
        ..FakeConfig::default()
    })
    .await
    .expect("fake WeChat starts")
}

/// Writes `record` as app `app`'s token record straight into the embedded store file `store`,
/// as a stopped server would find it at its next start.
pub async fn plant_token_record(store: &Path, app: &str, record: &str) {
    const TOKENS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("tokens");
    // The stopped server's last reference to the file may take a moment to go.
    let started = Instant::now();
    let db = loop {
        match redb::Database::create(store) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if started.elapsed() < Duration::from_secs(5) =>
            {
                actix_web::rt::time::sleep(Duration::from_millis(50)).await
            }
            other => break other.expect("store file opens"),
        }
    };
    let tx = db.begin_write().unwrap();
    tx.open_table(TOKENS)
        .unwrap()
        .insert(app, record.as_bytes())
        .unwrap();
    tx.commit().unwrap();
}

/// Milliseconds since the Unix epoch, the unit of the stored records' times.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
