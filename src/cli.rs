//! The command line: `serve`, `check-config`, `healthcheck`, `keygen`, `rekey`, `fake-wechat`
//! and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::fake::{bench_credentials, FakeConfig, FakePlatform, FakeSuite, FakeTls, FakeWechat};
use crate::startup::{Application, Options};

#[derive(Debug, Parser)]
#[command(
    name = "wxtoken",
    version,
    about = "Central access_token server for WeChat"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the token server.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, env = "WXTOKEN_CONFIG", default_value = "config/wxtoken.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and print the effective configuration, secrets redacted.
    CheckConfig {
        #[arg(long, env = "WXTOKEN_CONFIG", default_value = "config/wxtoken.toml")]
        config: PathBuf,
    },
    /// Probe a running server: exit 0 when URL answers 200, 1 otherwise (refused, timed out,
    /// any other status). For container health checks: needs no shell and no curl.
    Healthcheck {
        /// The full URL to GET, such as http://127.0.0.1:8080/readyz?scope=instance.
        #[arg(long, env = "WXTOKEN_HEALTHCHECK_URL", default_value = crate::healthcheck::DEFAULT_URL)]
        url: String,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 5,
              value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout_secs: u64,
        /// For an https:// URL: check the server's certificate against this CA (PEM) and the
        /// URL's host. Without it the certificate is not checked (the probe asks its own
        /// server, usually by an address the certificate does not name).
        #[arg(long, env = "WXTOKEN_HEALTHCHECK_CA_FILE", value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Print a new random key: the store's encryption key (base64) and its key id, or with
    /// `--client` a `[[clients]]` key (URL-safe, 32 bytes).
    Keygen {
        /// A client key (43 characters of A-Z a-z 0-9 - _).
        #[arg(long)]
        client: bool,
    },
    /// Run the fake WeChat API (for manual tests and benchmarks; never point production at it).
    FakeWechat {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// A valid credential pair, APPID:SECRET; repeat for more apps.
        #[arg(
            long = "app",
            value_name = "APPID:SECRET",
            required_unless_present_any = ["bench_apps", "platforms", "wecom_suites"]
        )]
        apps: Vec<String>,
        /// A WeCom suite, `SUITE_ID:SECRET:TOKEN:ENCODING_AES_KEY:PROVIDER_CORPID[:CALLBACK_URL]`;
        /// tickets are pushed with `POST /_fake/wecom/ticket`, corps installed in bulk with
        /// `POST /_fake/wecom/bulk_install`; repeat for more suites.
        #[arg(
            long = "wecom-suite",
            value_name = "SUITE_ID:SECRET:TOKEN:AES_KEY:PROVIDER_CORPID[:CALLBACK_URL]"
        )]
        wecom_suites: Vec<String>,
        /// A third-party platform, `COMPONENT_APPID:SECRET:TOKEN:ENCODING_AES_KEY[:EVENT_URL]`
        /// (the event URL can also be set later with `POST /_fake/component/event_url`); repeat
        /// for more platforms.
        #[arg(
            long = "platform",
            value_name = "APPID:SECRET:TOKEN:AES_KEY[:EVENT_URL]"
        )]
        platforms: Vec<String>,
        /// Push a verify ticket to every platform's event URL this often, seconds (0: only on
        /// demand).
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        ticket_interval_secs: u64,
        /// Also N generated authorizers on every --platform, for benchmarks: appid `wxauth` and
        /// the index in 12 digits, listed by api_get_authorizer_list with their refresh tokens.
        #[arg(long, value_name = "N", requires = "platforms",
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        bench_authorizers: Option<u64>,
        /// Also N generated apps, for benchmarks: app I (0..N) has appid `wxbench` and I in 11
        /// digits, secret `benchsecret` and I in 21 digits.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        bench_apps: Option<u32>,
        /// Every credential call waits this long before it is answered, as WeChat is not
        /// instant (milliseconds).
        #[arg(long, value_name = "MS", default_value_t = 0,
              value_parser = clap::value_parser!(u64).range(0..=60_000))]
        delay_ms: u64,
        /// Lifetime of minted tokens, seconds.
        #[arg(long, default_value_t = 7200)]
        expires_in: u64,
        /// Serve HTTPS with this certificate chain (PEM)...
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// ...and this private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Rewrite every stored record under the current store key (see docs/security.md).
    Rekey {
        #[arg(long, env = "WXTOKEN_CONFIG", default_value = "config/wxtoken.toml")]
        config: PathBuf,
    },
    /// Run a self-contained demo: a fake WeChat with 2-minute tokens, the server on
    /// 127.0.0.1:8080 with its store under ./data, one app and one client key.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
}

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => serve(config).await,
        Command::CheckConfig { config } => {
            let settings = Settings::load(&config)?;
            println!("# {}: OK\n", config.display());
            print!("{}", settings.redacted_toml());
            Ok(())
        }
        Command::Healthcheck {
            url,
            timeout_secs,
            ca_file,
        } => crate::healthcheck::check(&url, Duration::from_secs(timeout_secs), ca_file.as_deref())
            .with_context(|| format!("healthcheck of {url} failed")),
        Command::Keygen { client } => {
            let kind = if client {
                crate::keygen::KeyKind::Client
            } else {
                crate::keygen::KeyKind::Store
            };
            Ok(crate::keygen::write_key(kind, &mut std::io::stdout())?)
        }
        Command::Rekey { config } => crate::rekey::run(&config).await,
        Command::FakeWechat {
            listen,
            apps,
            wecom_suites,
            platforms,
            ticket_interval_secs,
            bench_authorizers,
            bench_apps,
            delay_ms,
            expires_in,
            tls_cert,
            tls_key,
        } => {
            let fake = FakeArgs {
                listen,
                apps,
                wecom_suites,
                platforms,
                ticket_push_interval: Duration::from_secs(ticket_interval_secs),
                bench_authorizers: bench_authorizers.unwrap_or(0),
                bench_apps: bench_apps.unwrap_or(0),
                answer_delay: Duration::from_millis(delay_ms),
                expires_in,
                tls_cert,
                tls_key,
            };
            fake_wechat(fake).await
        }
        Command::Demo { listen, data_dir } => demo(listen, data_dir).await,
    }
}

async fn serve(config: PathBuf) -> anyhow::Result<()> {
    let settings = Settings::load(&config)?;
    let options = Options {
        config_path: Some(config),
        ..Options::default()
    };
    let app = Application::build(settings, options).await?;
    // The listener is bound and the workers started: connections are accepted from now on.
    crate::notify::ready();
    crate::notify::stopping_on_signal().context("cannot listen for SIGTERM")?;
    app.run_until_stopped().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// The `fake-wechat` command's arguments.
struct FakeArgs {
    listen: SocketAddr,
    apps: Vec<String>,
    wecom_suites: Vec<String>,
    platforms: Vec<String>,
    ticket_push_interval: Duration,
    bench_authorizers: u64,
    bench_apps: u32,
    answer_delay: Duration,
    expires_in: u64,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

async fn fake_wechat(args: FakeArgs) -> anyhow::Result<()> {
    let FakeArgs {
        listen,
        apps,
        wecom_suites,
        platforms,
        ticket_push_interval,
        bench_authorizers,
        bench_apps,
        answer_delay,
        expires_in,
        tls_cert,
        tls_key,
    } = args;
    let mut pairs: Vec<(String, String)> = (0..bench_apps).map(bench_credentials).collect();
    for a in &apps {
        let (id, secret) = a
            .split_once(':')
            .filter(|(i, s)| !i.is_empty() && !s.is_empty())
            .with_context(|| "--app takes APPID:SECRET".to_string())?;
        pairs.push((id.to_string(), secret.to_string()));
    }
    let platforms = platforms
        .iter()
        .map(|p| parse_platform(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let suites = wecom_suites
        .iter()
        .map(|s| parse_wecom_suite(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tls = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => Some(FakeTls {
            cert_pem: std::fs::read_to_string(&c)
                .with_context(|| format!("cannot read {}", c.display()))?,
            key_pem: std::fs::read_to_string(&k)
                .with_context(|| format!("cannot read {}", k.display()))?,
        }),
        _ => None,
    };
    let fake = FakeWechat::start(FakeConfig {
        apps: pairs,
        expires_in,
        listen,
        tls,
        answer_delay,
        platforms: platforms.clone(),
        wecom_suites: suites.iter().map(|(s, _)| s.clone()).collect(),
        ticket_push_interval,
        ..FakeConfig::default()
    })
    .await?;
    for (s, url) in &suites {
        if let Some(url) = url.as_deref() {
            fake.set_suite_callback_url(&s.suite_id, Some(url));
        }
    }
    for p in &platforms {
        if let Some(url) = p.event_url.as_deref() {
            // Checked here rather than at the first push, so that a bad URL fails at once.
            fake.set_event_url(&p.component_appid, Some(url))
                .map_err(anyhow::Error::msg)?;
        }
        fake.bulk_authorize(&p.component_appid, bench_authorizers)?;
    }
    // Printed on stdout so scripts can read the address.
    println!("fake WeChat listening on {}", fake.base_url());
    fake.run_until_signal().await?;
    Ok(())
}

/// `--platform APPID:SECRET:TOKEN:AES_KEY[:EVENT_URL]` (the URL may hold colons of its own).
fn parse_platform(arg: &str) -> anyhow::Result<FakePlatform> {
    const USAGE: &str = "--platform takes APPID:SECRET:TOKEN:AES_KEY[:EVENT_URL]";
    let mut parts = arg.splitn(5, ':');
    let mut next = || parts.next().filter(|s| !s.is_empty());
    let (Some(appid), Some(secret), Some(token), Some(key)) = (next(), next(), next(), next())
    else {
        anyhow::bail!(USAGE);
    };
    let event_url = next().map(str::to_owned);
    anyhow::ensure!(
        key.len() == 43,
        "--platform {appid}: the EncodingAESKey must be 43 characters"
    );
    Ok(FakePlatform {
        component_appid: appid.to_owned(),
        component_secret: secret.to_owned(),
        token: token.to_owned(),
        encoding_aes_key: key.to_owned(),
        event_url,
    })
}

/// `--wecom-suite SUITE_ID:SECRET:TOKEN:AES_KEY:PROVIDER_CORPID[:CALLBACK_URL]`.
fn parse_wecom_suite(arg: &str) -> anyhow::Result<(FakeSuite, Option<String>)> {
    const USAGE: &str =
        "--wecom-suite takes SUITE_ID:SECRET:TOKEN:AES_KEY:PROVIDER_CORPID[:CALLBACK_URL]";
    let mut parts = arg.splitn(6, ':');
    let mut next = || parts.next().filter(|s| !s.is_empty());
    let (Some(id), Some(secret), Some(token), Some(key), Some(provider)) =
        (next(), next(), next(), next(), next())
    else {
        anyhow::bail!(USAGE);
    };
    anyhow::ensure!(
        key.len() == 43,
        "--wecom-suite {id}: the EncodingAESKey must be 43 characters"
    );
    let suite = FakeSuite {
        suite_id: id.to_owned(),
        suite_secret: secret.to_owned(),
        token: token.to_owned(),
        encoding_aes_key: key.to_owned(),
        template: false,
        provider_corpid: provider.to_owned(),
    };
    Ok((suite, next().map(str::to_owned)))
}

fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

async fn demo(listen: SocketAddr, data_dir: PathBuf) -> anyhow::Result<()> {
    // A fresh appid each run: the fake forgets its tokens when it stops, so a token stored by
    // an earlier demo could not be valid at this one.
    let appid = format!("wxdemo{}", random_hex(5));
    let secret = random_hex(16);
    let key = random_hex(16);
    let fake = FakeWechat::start(FakeConfig {
        apps: vec![(appid.clone(), secret.clone())],
        expires_in: 120,
        ..FakeConfig::default()
    })
    .await?;
    let store = data_dir.join("wxtoken.redb");
    let toml = format!(
        r#"
[server]
listen = "{listen}"
[upstream]
base_url = "{base}"
timeout_secs = 5
[refresh]
margin_secs = 600
min_interval_secs = 5
[store]
kind = "embedded"
path = {store}
[[apps]]
name = "demo"
appid = "{appid}"
secret_env = "DEMO_SECRET"
[[clients]]
name = "demo-client"
key_env = "DEMO_KEY"
apps = ["demo"]
proxy = true
"#,
        base = fake.base_url(),
        store = toml::Value::String(store.display().to_string()),
    );
    let lookup = |name: &str| match name {
        "DEMO_SECRET" => Some(secret.clone()),
        "DEMO_KEY" => Some(key.clone()),
        _ => None,
    };
    let settings = Settings::from_toml(&toml, &[], &lookup)?;
    let app = Application::build(settings, Options::default()).await?;
    let base = format!("http://{}", app.addr());
    println!(
        r#"
wxtoken demo is running.
  server:       {base}   (store: {store})
  fake WeChat:  {fake}   (tokens live 120 s, so a refresh happens about every minute)
  app:          demo (appid {appid})
  client key:   {key}

Try:
  curl -s -H 'Authorization: Bearer {key}' {base}/v1/apps/demo/token
  curl -s -X POST -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \
       -d '{{"access_token":"PASTE_THE_TOKEN"}}' {base}/v1/apps/demo/token/invalidate
  curl -s '{fake}/cgi-bin/get_api_domain_ip?access_token=PASTE_THE_TOKEN'   # is it valid at "WeChat"?
  curl -s -H 'Authorization: Bearer {key}' '{base}/v1/apps/demo/proxy/cgi-bin/user/info?openid=o1'
  curl -s '{base}/cgi-bin/menu/get?access_token=PASTE_THE_TOKEN'              # as an SDK would
  curl -s {base}/readyz
  curl -s {base}/metrics | grep '^wxtoken_'
Stop with Ctrl-C.
"#,
        store = store.display(),
        fake = fake.base_url(),
    );
    // Give the first fetch a moment so the first curl already gets a token.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.run_until_stopped().await?;
    fake.stop().await;
    Ok(())
}
