//! The message hub's figures, in one process on 127.0.0.1: a wxtoken server (embedded store in a
//! temporary directory) with an app taking pushes, the fake WeChat pushing them as WeChat does,
//! and fake business inboxes receiving the deliveries.
//!
//! Used by `scripts/bench-messages`. It reports, as `key=value` lines on stdout:
//! - `taken_per_sec`: plaintext pushes answered `success` per second, `--concurrency` in flight;
//! - `delivered_per_sec`: the same pushes delivered to an async route, from the first push to
//!   the last delivery;
//! - `async_p50_ms`, `reply_p50_ms` (and p99): one push at a time, answered `success` (async
//!   route) or with the passive reply of a route that answers at once (reply route), safe mode:
//!   their difference is what a passive reply adds to WeChat's wait.
//!
//! Exits 1 when a push was not answered `success` or a delivery is missing (correctness), 2
//! when it could not run. Figures are only reported.
//!
//! ```text
//! cargo run --release --example messages -- --pushes 20000 --concurrency 64
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use futures_util::stream::{self, StreamExt as _};
use wxtoken::config::{MessageFormat, Settings};
use wxtoken::fake::messages::{push_message, text_message, MessageTarget, Mode, Retries};
use wxtoken::fake::{FakeConfig, FakeInbox, FakeWechat, InboxMode};
use wxtoken::startup::{Application, Options};

#[derive(Debug, Parser)]
#[command(about = "Pushes taken and delivered per second, and what a passive reply adds")]
struct Args {
    /// Pushes in the throughput round.
    #[arg(long, default_value_t = 20_000)]
    pushes: u64,
    /// Pushes in flight at once in the throughput round.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Pushes, one at a time, in each latency round.
    #[arg(long, default_value_t = 500)]
    latency_pushes: u64,
}

const APPID: &str = "wxbench000000001";
const SECRET: &str = "bench-app-secret-000001";
const TOKEN: &str = "benchToken1";
const AES: &str = "BenchBenchBenchBenchBenchBenchBenchBench123";
const ROUTE_KEY: &str = "bench-route-signing-key-01";
const REPLY: &str =
    "<xml><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ok]]></Content></xml>";

#[actix_web::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("messages: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The server's configuration: `shop` (plaintext pushes to the async route), `bot` (safe mode,
/// to the reply route).
fn settings(
    fake: &str,
    store: &std::path::Path,
    inbox: &str,
    replier: &str,
) -> anyhow::Result<Settings> {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[upstream]
base_url = "{fake}"
[store]
path = {store}
[[apps]]
name = "shop"
appid = "{APPID}"
secret = "{SECRET}"
message_token = "{TOKEN}"
encoding_aes_key = "{AES}"
[[clients]]
name = "ops"
key = "bench-admin-key-000000001"
apps = ["*"]
admin = true
[[routes]]
name = "inbox"
match = {{ msg_types = ["text"] }}
url = "{inbox}"
signing_key = "{ROUTE_KEY}"
[[routes]]
name = "bot"
match = {{ msg_types = ["event"] }}
url = "{replier}"
signing_key = "{ROUTE_KEY}"
mode = "reply"
reply_timeout_ms = 3000
"#,
        store = toml_string(&store.display().to_string()),
    );
    Settings::from_toml(&text, &[], &|_| None).map_err(|e| anyhow::anyhow!("{e}"))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    let fake = FakeWechat::start(FakeConfig {
        apps: vec![(APPID.into(), SECRET.into())],
        ..FakeConfig::default()
    })
    .await
    .context("fake WeChat")?;
    let inbox = FakeInbox::start(ROUTE_KEY).await.context("inbox")?;
    let replier = FakeInbox::start(ROUTE_KEY).await.context("reply inbox")?;
    replier.set_mode(InboxMode::Reply {
        body: REPLY.into(),
        delay: Duration::ZERO,
    });
    let dir = tempfile::tempdir().context("temp dir")?;
    let settings = settings(
        &fake.base_url(),
        &dir.path().join("wxtoken.redb"),
        &inbox.url(),
        &replier.url(),
    )?;
    let app = Application::build(
        settings,
        Options {
            handle_signals: false,
            ..Options::default()
        },
    )
    .await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let target = MessageTarget {
        url: format!("{base}/v1/apps/shop/messages"),
        token: TOKEN.into(),
        encoding_aes_key: Some(AES.into()),
        appid: APPID.into(),
        format: MessageFormat::Xml,
    };
    let mut ok = throughput(args, &target, &inbox).await?;
    ok &= latency(args, &target).await?;
    handle.stop(true).await;
    Ok(ok)
}

const ONCE: Retries = Retries {
    timeout: Duration::from_secs(10),
    again: 0,
};

/// Pushes `args.pushes` texts, `args.concurrency` at a time; then waits for their deliveries.
async fn throughput(
    args: &Args,
    target: &MessageTarget,
    inbox: &FakeInbox,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let answered: Vec<bool> = stream::iter(0..args.pushes)
        .map(|i| async move {
            let msg = text_message("gh_bench", "o-bench", "hello", 1_000_000 + i);
            let got = push_message(target, &msg, Mode::Plaintext, ONCE).await;
            got.status == Some(200) && got.body == "success"
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let taken = started.elapsed();
    let failed = answered.iter().filter(|ok| !**ok).count();
    println!("pushes={}", args.pushes);
    println!("taken_secs={:.2}", taken.as_secs_f64());
    println!(
        "taken_per_sec={:.0}",
        args.pushes as f64 / taken.as_secs_f64()
    );
    println!("push_failures={failed}");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut delivered = 0;
    while Instant::now() < deadline {
        delivered = inbox.delivered().len() as u64;
        if delivered >= args.pushes {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let all = started.elapsed();
    println!("delivered={delivered}");
    println!("delivered_secs={:.2}", all.as_secs_f64());
    println!(
        "delivered_per_sec={:.0}",
        delivered as f64 / all.as_secs_f64()
    );
    Ok(failed == 0 && delivered >= args.pushes)
}

/// One push at a time, safe mode: a text (async route, `success`) and an event (reply route,
/// the passive reply), each round's p50 and p99.
async fn latency(args: &Args, target: &MessageTarget) -> anyhow::Result<bool> {
    if args.latency_pushes == 0 {
        bail!("--latency-pushes must be at least 1");
    }
    let mut ok = true;
    for (name, reply) in [("async", false), ("reply", true)] {
        let mut took = Vec::with_capacity(args.latency_pushes as usize);
        for i in 0..args.latency_pushes {
            let msg = if reply {
                wxtoken::fake::messages::event_message(
                    "gh_bench",
                    &format!("o-user-{i}"),
                    "CLICK",
                    Some("K"),
                )
            } else {
                text_message("gh_bench", "o-bench", "hi", 5_000_000 + i)
            };
            let started = Instant::now();
            let got = push_message(target, &msg, Mode::Safe, ONCE).await;
            took.push(started.elapsed());
            let expected = if reply { Some(REPLY) } else { None };
            if got.status != Some(200) || got.reply.as_deref() != expected {
                eprintln!("messages: {name} push {i} answered {:?}", got.status);
                ok = false;
            }
        }
        took.sort();
        let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
        println!("{name}_p50_ms={:.2}", at(0.50).as_secs_f64() * 1000.0);
        println!("{name}_p99_ms={:.2}", at(0.99).as_secs_f64() * 1000.0);
    }
    Ok(ok)
}
