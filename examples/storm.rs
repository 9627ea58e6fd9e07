//! An invalidation storm against a running wxtoken: many clients report the same rejected token
//! at the same moment, as happens when WeChat revokes a token every business server holds.
//!
//! Used by `scripts/bench`. It reads the current token, notes the fake WeChat's upstream call
//! counter, opens one connection per request, then sends every
//! `POST /v1/apps/{app}/token/invalidate` at once and reports, as `key=value` lines on stdout:
//! how many upstream token calls the storm cost (must be exactly 1), how many answers carried the
//! new token, how many waited on the refresh rather than arriving after it, and the latency of
//! each request from its write to the end of its answer.
//!
//! Two choices make it a storm at the server rather than only at the client:
//! - The connections are opened first, a few dozen at a time, and every request is written
//!   before any answer is read. A client library such as awc opens connections as it goes and
//!   re-uses those that free up, so its requests reach the server spread out; and a burst of a
//!   thousand connects overflows the server's accept queue (a listen backlog of 128), whose
//!   dropped SYNs cost a 1 s retransmission each: that would measure the kernel, not wxtoken.
//! - The local fake answers in about a millisecond, so most of a storm would arrive after the
//!   refresh and be answered at once as stale. `--upstream-delay-ms` makes the fake's next token
//!   answer that slow (WeChat's own take tens to hundreds of milliseconds), so that every
//!   invalidation is in flight while the one fetch is.
//!
//! Exits 1 when the storm was not coalesced into one upstream call or an answer lacked the new
//! token: those are correctness failures. Latency is only reported. Exits 2 when it could not run.
//!
//! ```text
//! cargo run --release --example storm -- --server http://127.0.0.1:8080 \
//!     --fake http://127.0.0.1:9000 --app demo --key KEY --upstream-delay-ms 100
//! ```

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use futures_util::future::join_all;
use serde_json::Value;
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(about = "Send N concurrent invalidations of the current token to a wxtoken server")]
struct Args {
    /// The wxtoken server, plain HTTP, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: String,
    /// The fake WeChat the server fetches from; its `/_fake/stats` counts upstream calls.
    #[arg(long)]
    fake: String,
    /// The app name clients use in URLs.
    #[arg(long)]
    app: String,
    /// A client key allowed to read the app.
    #[arg(long, env = "BENCH_CLIENT_KEY", hide_env_values = true)]
    key: String,
    /// Concurrent invalidations, one connection each.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// How long the fake takes to answer the refresh the storm causes, in milliseconds.
    #[arg(long, default_value_t = 0)]
    upstream_delay_ms: u64,
}

/// Connections opened at once while preparing: well under the server's listen backlog of 128.
const CONNECT_BATCH: usize = 50;

/// Far above any answer the server should give (its own wait limit is 5 s), so a slow answer
/// shows up as a latency rather than as a client-side error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What one invalidation came back with.
struct Outcome {
    latency: Duration,
    status: u16,
    token: Option<String>,
}

#[actix_web::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match storm(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("storm: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the storm and prints its report; `Ok(false)` when a correctness check failed.
async fn storm(args: &Args) -> anyhow::Result<bool> {
    // For the few control requests; the storm itself uses its own connections.
    let client = awc::Client::builder().timeout(REQUEST_TIMEOUT).finish();
    let server = args.server.trim_end_matches('/');
    let fake = args.fake.trim_end_matches('/');
    let addr = socket_addr(server)?;

    let token_url = format!("{server}/v1/apps/{}/token", args.app);
    let get = client
        .get(&token_url)
        .insert_header(("Authorization", format!("Bearer {}", args.key)));
    let (status, body) = send_json(get, None).await?;
    let old = match body["access_token"].as_str() {
        Some(t) if status == 200 => t.to_string(),
        _ => bail!("GET {token_url} answered {status}: {body}"),
    };

    // A batch at a time, each connection proven by a /healthz exchange before the next batch:
    // an answer means the server has accepted it, so its accept queue never holds more than a
    // batch.
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut conns = Vec::with_capacity(args.requests);
    while conns.len() < args.requests {
        let batch = CONNECT_BATCH.min(args.requests - conns.len());
        let opened = join_all((0..batch).map(|_| async {
            let conn = TcpStream::connect(addr).await?;
            // Each request is one small write that must leave at once.
            conn.set_nodelay(true)?;
            write_all(&conn, healthz.as_bytes()).await?;
            match read_response(&conn).await? {
                (200, _) => Ok(conn),
                (status, _) => Err(io::Error::other(format!("GET /healthz answered {status}"))),
            }
        }))
        .await;
        for conn in opened {
            conns.push(conn.with_context(|| format!("opening a connection to {addr}"))?);
        }
    }

    let calls_before = upstream_calls(&client, fake).await?;
    let counts_before = ServerCounts::read(&client, server, &args.app).await?;
    if args.upstream_delay_ms > 0 {
        let fault = serde_json::json!({"kind": "slow", "millis": args.upstream_delay_ms});
        let url = format!("{fake}/_fake/fault");
        let (status, _) = send_json(client.post(&url), Some(fault.to_string())).await?;
        anyhow::ensure!(status == 204, "POST {url} answered {status}");
    }

    let body = serde_json::json!({ "access_token": old }).to_string();
    let request = format!(
        "POST /v1/apps/{app}/token/invalidate HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        app = args.app,
        key = args.key,
        len = body.len(),
    );
    // Every request is written before any answer is read: a few hundred bytes into a fresh
    // socket's buffer, so the loop takes milliseconds however slow the server is.
    let started = Instant::now();
    let mut sent_at = Vec::with_capacity(conns.len());
    for conn in &conns {
        write_all(conn, request.as_bytes())
            .await
            .context("sending an invalidation")?;
        sent_at.push(Instant::now());
    }
    let send_time = started.elapsed();
    let outcomes = join_all(conns.iter().zip(&sent_at).map(|(conn, sent)| async move {
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, read_response(conn))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        // A request that failed on the wire counts as an answer without status or token.
        let (status, json) = answer.unwrap_or((0, Value::Null));
        Outcome {
            latency: sent.elapsed(),
            status,
            token: json["access_token"].as_str().map(str::to_string),
        }
    }))
    .await;
    let wall = started.elapsed();
    drop(conns);

    let calls = upstream_calls(&client, fake)
        .await?
        .saturating_sub(calls_before);
    let counts_after = ServerCounts::read(&client, server, &args.app).await?;
    if args.upstream_delay_ms > 0 {
        // A delay the storm did not use up (no refresh happened) must not slow a later fetch.
        send_json(client.post(format!("{fake}/_fake/clear")), None).await?;
    }

    let ok = outcomes.iter().filter(|o| o.status == 200).count();
    let new_token = outcomes
        .iter()
        .filter(|o| o.status == 200 && o.token.as_deref().is_some_and(|t| t != old))
        .count();
    let distinct: HashSet<&str> = outcomes.iter().filter_map(|o| o.token.as_deref()).collect();
    let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    latencies.sort_unstable();
    let (b, a) = (counts_before, counts_after);

    println!("requests={}", args.requests);
    println!("upstream_delay_ms={}", args.upstream_delay_ms);
    println!("upstream_calls={calls}");
    println!("ok={ok}");
    println!("new_token={new_token}");
    println!("distinct_tokens={}", distinct.len());
    println!("waited_on_refresh={}", delta(b.waited, a.waited, 1.0, 0));
    println!("answered_stale={}", delta(b.stale, a.stale, 1.0, 0));
    let upstream_ms = delta(b.upstream_secs, a.upstream_secs, 1000.0, 2);
    println!("upstream_ms={upstream_ms}");
    println!("p50_ms={:.2}", ms(percentile(&latencies, 50.0)));
    println!("p99_ms={:.2}", ms(percentile(&latencies, 99.0)));
    println!(
        "max_ms={:.2}",
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!("send_ms={:.2}", ms(send_time));
    println!("wall_ms={:.2}", ms(wall));
    Ok(calls == 1 && new_token == args.requests)
}

/// The address of a plain-HTTP base URL such as `http://127.0.0.1:8080`.
fn socket_addr(base: &str) -> anyhow::Result<SocketAddr> {
    let host_port = base
        .strip_prefix("http://")
        .with_context(|| format!("{base}: the storm speaks plain HTTP only"))?;
    let host_port = host_port.split('/').next().unwrap_or(host_port);
    host_port
        .to_socket_addrs()
        .with_context(|| format!("{base}: not host:port"))?
        .next()
        .with_context(|| format!("{base}: no address"))
}

async fn write_all(conn: &TcpStream, bytes: &[u8]) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        conn.writable().await?;
        match conn.try_write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads one HTTP/1.1 answer: the status and the JSON body (`Null` when it is not JSON). The
/// server answers these requests with a Content-Length, never chunked.
async fn read_response(conn: &TcpStream) -> io::Result<(u16, Value)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((status, body)) = complete_response(&buf)? {
            return Ok((status, serde_json::from_slice(body).unwrap_or(Value::Null)));
        }
        conn.readable().await?;
        match conn.try_read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The status and body once `buf` holds a whole response, `None` while it does not yet.
fn complete_response(buf: &[u8]) -> io::Result<Option<(u16, &[u8])>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("response head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let len: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| bad("no Content-Length"))?;
    let body = &buf[head_end + 4..];
    Ok((body.len() >= len).then(|| (status, &body[..len])))
}

/// Upstream token calls the fake has received so far, both credential endpoints together: the
/// server may use either.
async fn upstream_calls(client: &awc::Client, fake: &str) -> anyhow::Result<u64> {
    let url = format!("{fake}/_fake/stats");
    let (status, stats) = send_json(client.get(&url), None).await?;
    anyhow::ensure!(status == 200, "GET {url} answered {status}");
    let count = |name: &str| {
        stats["calls"][name]
            .as_u64()
            .with_context(|| format!("{url}: no calls.{name} in {stats}"))
    };
    Ok(count("token")? + count("stable_token")?)
}

/// What the server's own metrics say about the app, read before and after the storm.
#[derive(Clone, Copy, Default)]
struct ServerCounts {
    /// Invalidations that waited on a refresh (`wxtoken_invalidations_total`, `refreshed`).
    waited: Option<f64>,
    /// Invalidations of a token already replaced, answered at once (`stale`).
    stale: Option<f64>,
    /// Seconds spent in upstream calls (`wxtoken_upstream_request_duration_seconds_sum`), to
    /// tell the upstream's share of the storm's latency from the server's own.
    upstream_secs: Option<f64>,
}

impl ServerCounts {
    async fn read(client: &awc::Client, server: &str, app: &str) -> anyhow::Result<Self> {
        let url = format!("{server}/metrics");
        let (status, bytes) = send(client.get(&url), None).await?;
        anyhow::ensure!(status == 200, "GET {url} answered {status}");
        let text = String::from_utf8_lossy(&bytes);
        let app_label = format!("app=\"{app}\"");
        // Sums the samples of `name` for the app whose labels include `label` (every endpoint of
        // the upstream histogram, say); `None` when the server exports no such series.
        let sum = |name: &str, label: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
                .filter(|l| l.contains(&app_label) && l.contains(label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .reduce(|a, b| a + b)
        };
        Ok(ServerCounts {
            waited: sum("wxtoken_invalidations_total", "outcome=\"refreshed\""),
            stale: sum("wxtoken_invalidations_total", "outcome=\"stale\""),
            upstream_secs: sum("wxtoken_upstream_request_duration_seconds_sum", ""),
        })
    }
}

/// `after - before` for one of the counts, formatted with `decimals`, or `?` when unknown.
fn delta(before: Option<f64>, after: Option<f64>, scale: f64, decimals: usize) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{:.*}", decimals, (a - b).max(0.0) * scale),
        _ => "?".to_string(),
    }
}

/// Sends the request (with `body` when given) and reads the whole answer: status and bytes.
async fn send(req: awc::ClientRequest, body: Option<String>) -> anyhow::Result<(u16, Vec<u8>)> {
    let url = req.get_uri().to_string();
    let sent = match body {
        Some(b) => req.send_body(b).await,
        None => req.send().await,
    };
    // awc's errors are not `Send + Sync`, so anyhow gets their text.
    let mut resp = sent.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let bytes = resp
        .body()
        .limit(16 << 20)
        .await
        .map_err(|e| anyhow::anyhow!("{url}: reading the body: {e}"))?;
    Ok((resp.status().as_u16(), bytes.to_vec()))
}

/// [`send`], with the body parsed as JSON (`Null` when it is not JSON).
async fn send_json(req: awc::ClientRequest, body: Option<String>) -> anyhow::Result<(u16, Value)> {
    let (status, bytes) = send(req, body).await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Nearest-rank percentile of sorted samples (zero when there are none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
