//! Measures how fast a refresh on one wxtoken instance reaches the others of a Redis fleet.
//!
//! Each round reads the current token from the first instance, reports it as rejected there
//! (so that instance refreshes it), and from the moment the new token comes back polls every
//! other instance until each serves it. Prints `key=value` lines for `scripts/bench`.
//!
//! Run by `BENCH_STORE=redis scripts/bench`; all traffic goes to the loopback addresses given.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(about = "Time from a refresh on one instance to every instance serving the new token")]
struct Args {
    /// The instances, comma-separated; the first one refreshes.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    #[arg(long)]
    app: String,
    #[arg(long, env = "BENCH_CLIENT_KEY", hide_env_values = true)]
    key: String,
    #[arg(long, default_value_t = 10)]
    rounds: usize,
}

/// How long a round may wait for the fleet before it counts as a failure: the instances'
/// periodic re-read (poll_secs) is the backstop, change notifications should take milliseconds.
const ROUND_LIMIT: Duration = Duration::from_secs(10);

async fn token(client: &awc::Client, server: &str, app: &str, key: &str) -> anyhow::Result<String> {
    let mut resp = client
        .get(format!("{server}/v1/apps/{app}/token"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET token at {server}: {e}"))?;
    let body: Value = resp.json().await?;
    body["access_token"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| anyhow::anyhow!("{server}: no token in {body}"))
}

async fn run(args: &Args) -> anyhow::Result<Vec<Duration>> {
    anyhow::ensure!(args.servers.len() >= 2, "give at least two --servers");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut spreads = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let old = token(&client, &args.servers[0], &args.app, &args.key).await?;
        let mut resp = client
            .post(format!(
                "{}/v1/apps/{}/token/invalidate",
                args.servers[0], args.app
            ))
            .insert_header(("Authorization", format!("Bearer {}", args.key)))
            .send_json(&serde_json::json!({ "access_token": old }))
            .await
            .map_err(|e| anyhow::anyhow!("invalidate: {e}"))?;
        let answer: Value = resp.json().await?;
        let new = answer["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        anyhow::ensure!(!new.is_empty() && new != old, "no new token: {answer}");
        let refreshed_at = Instant::now();
        for server in &args.servers[1..] {
            while token(&client, server, &args.app, &args.key).await? != new {
                anyhow::ensure!(
                    refreshed_at.elapsed() < ROUND_LIMIT,
                    "{server} did not adopt the new token within {ROUND_LIMIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        spreads.push(refreshed_at.elapsed());
        // Let the previous token's invalidation settle before the next round.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(spreads)
}

#[actix_web::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(mut spreads) => {
            spreads.sort();
            let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
            println!("rounds={}", spreads.len());
            println!("min_ms={}", ms(spreads[0]));
            println!("median_ms={}", ms(spreads[spreads.len() / 2]));
            println!("max_ms={}", ms(spreads[spreads.len() - 1]));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("propagation: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
