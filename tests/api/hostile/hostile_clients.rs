//! Hostile and careless HTTP clients: stalled bodies (408, closed, the connection cap, the
//! open-file limit), the longest token in a body, array bodies, wrong methods (405 + Allow).
//!
//! Stalled clients are raw sockets, so the test controls exactly which bytes are sent; their
//! blocking reads and writes run on `spawn_blocking`, never on the runtime the fake serves on.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::time::{Duration, Instant};

use serde_json::Value;
use wxtoken::fake::{FakeConfig, FakeWechat};
use wxtoken::upstream::MAX_CREDENTIAL_LEN;

use crate::support::helpers::*;
use crate::support::process::{wait_for_listen_addr, wxtoken, KillOnDrop};
use crate::support::raw_http::{blocking, read_answer, send, Raw};

/// `shop`, a client of it and an admin (the standard app and clients, keys inline).
fn apps() -> String {
    ConfigText::new()
        .app(App::official("shop", SHOP_APPID, SHOP_SECRET))
        .client(Client::new("billing", BILLING_KEY).apps(&["shop"]))
        .client(Client::new("ops", OPS_KEY).apps(&["*"]).admin())
        .to_string()
}

/// A server whose `[server]` settings are adjusted by `server`.
async fn spawn_with(
    fake: FakeWechat,
    server: impl FnOnce(&mut wxtoken::config::ServerSettings, &mut wxtoken::startup::Options),
) -> TestApp {
    TestApp::builder()
        .fake(fake)
        .config(&apps())
        .adjust(|(s, o)| server(&mut s.server, o))
        .start()
        .await
}

/// [`spawn_with`] on a fake of the standard apps.
async fn spawn(
    server: impl FnOnce(&mut wxtoken::config::ServerSettings, &mut wxtoken::startup::Options),
) -> TestApp {
    spawn_with(start_fake(&Spec::default()).await, server).await
}

fn addr_of(app: &TestApp) -> SocketAddr {
    app.base
        .trim_start_matches("http://")
        .parse()
        .expect("base is http://IP:PORT")
}

/// A request head announcing a `len`-byte body (request line, headers and the blank line).
fn head(method: &str, path: &str, key: Option<&str>, len: usize) -> String {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    )
}

/// Headers and the first bytes of a body that never comes: a stalled client.
fn stall(addr: SocketAddr, method: &str, path: &str, key: Option<&str>) -> TcpStream {
    let partial = br#"{"access_token":"#;
    send(
        addr,
        &[head(method, path, key, 200).as_bytes(), &partial[..]].concat(),
    )
}

/// What `connect` (which opens a connection and sends on it) brings back within `limit`, its
/// `elapsed` counted from before the connection: a deadline runs from the request's start.
fn connect_and_read(connect: impl FnOnce() -> TcpStream, limit: Duration) -> Raw {
    let start = Instant::now();
    let mut s = connect();
    let mut a = read_answer(&mut s, limit);
    a.elapsed = start.elapsed();
    a
}

/// A whole GET on a fresh connection (`Connection: close`), as a probe sees the server.
fn probe(addr: SocketAddr, path: &str, key: Option<&str>, limit: Duration) -> Raw {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let start = Instant::now();
    let mut s = send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    // Connecting counts: a server that stopped accepting leaves the probe in the backlog.
    let sent = start.elapsed();
    let mut a = read_answer(&mut s, limit);
    a.elapsed += sent;
    a
}

#[actix_web::test]
async fn a_stalled_body_gets_a_json_408_and_a_closed_connection_on_every_body_route() {
    let app = spawn(|s, _| s.body_timeout = Duration::from_secs(1)).await;
    let addr = addr_of(&app);
    let routes = [
        ("/v1/apps/shop/token/invalidate", Some(BILLING_KEY)),
        ("/v1/apps/shop/jssdk/signature", Some(BILLING_KEY)),
        // The facade reads the body before it knows who is asking.
        ("/cgi-bin/stable_token", None),
    ];
    for (path, key) in routes {
        let a = blocking(move || {
            connect_and_read(|| stall(addr, "POST", path, key), Duration::from_secs(6))
        })
        .await;
        assert_eq!(a.status, 408, "{path}: {}", a.head);
        if path.starts_with("/cgi-bin/") {
            // WeChat's path, WeChat's format.
            let wx = a.wx();
            assert_eq!(wx.errcode, -1, "{path}");
            assert_eq!(wx.errmsg, "request body not received within 1s");
        } else {
            let error = a.error();
            assert_eq!(error.error, "request_timeout", "{path}");
            assert_eq!(
                error.message, "request body not received within 1s",
                "{path}"
            );
        }
        assert_eq!(a.header("connection").as_deref(), Some("close"), "{path}");
        assert!(a.closed, "{path}: the connection stays open");
        assert!(
            a.elapsed >= Duration::from_millis(900) && a.elapsed < Duration::from_secs(5),
            "{path}: answered after {:?}, the deadline is 1 s",
            a.elapsed
        );
    }
    // A chunked body is drained, not refused, when a handler drops it, so it is read before
    // routing on every route, the ones that take no body too.
    for (method, path, key) in [
        ("POST", "/v1/apps/shop/token/invalidate", Some(BILLING_KEY)),
        ("GET", "/healthz", None),
        ("GET", "/v1/apps/shop/token", Some(BILLING_KEY)),
        ("POST", "/v1/apps/shop/revoke", Some(OPS_KEY)),
        ("DELETE", "/metrics", None),
    ] {
        let a = blocking(move || {
            let auth = key
                .map(|k| format!("Authorization: Bearer {k}\r\n"))
                .unwrap_or_default();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\
                 Transfer-Encoding: chunked\r\n\r\n10\r\n{{\"access"
            );
            connect_and_read(|| send(addr, head.as_bytes()), Duration::from_secs(6))
        })
        .await;
        assert_eq!(a.status, 408, "chunked {method} {path}: {}", a.head);
        assert_eq!(a.error().error, "request_timeout");
        assert!(
            a.closed,
            "chunked {method} {path}: the connection stays open"
        );
        assert!(
            a.elapsed < Duration::from_secs(5),
            "chunked {method} {path}: {:?}",
            a.elapsed
        );
    }
    assert_eq!(
        app.metric(r#"wxtoken_http_requests_total{route="/cgi-bin/stable_token",status="408"}"#)
            .await,
        Some(1.0)
    );
}

#[actix_web::test]
async fn a_stalled_body_on_a_route_that_takes_none_does_not_hold_the_connection() {
    // A deadline far away: what closes these connections must be the answer, not the deadline.
    let app = spawn(|s, _| s.body_timeout = Duration::from_secs(60)).await;
    app.shop_token().await;
    let addr = addr_of(&app);
    let routes = [
        ("GET", "/healthz", None),
        ("GET", "/v1/apps/shop/token", Some(BILLING_KEY)),
        ("POST", "/v1/apps/shop/revoke", Some(OPS_KEY)),
        ("POST", "/v1/admin/reload", Some(OPS_KEY)),
        // Unauthenticated: refused before the body is read.
        ("POST", "/v1/apps/shop/token/invalidate", None),
        ("DELETE", "/v1/apps/shop/token", Some(BILLING_KEY)),
        ("POST", "/nope", None),
    ];
    for (method, path, key) in routes {
        let a = blocking(move || {
            let mut s = stall(addr, method, path, key);
            read_answer(&mut s, Duration::from_secs(5))
        })
        .await;
        check(method, path, a);
    }
}

fn check(method: &str, path: &str, a: Raw) {
    {
        assert_ne!(a.status, 0, "{method} {path}: no answer");
        assert!(
            a.closed,
            "{method} {path}: answered {} but kept the connection",
            a.status
        );
        assert!(
            a.elapsed < Duration::from_secs(3),
            "{method} {path}: {:?}",
            a.elapsed
        );
    }
}

#[actix_web::test]
async fn when_every_worker_holds_its_cap_new_clients_wait_for_a_free_slot() {
    let app = spawn(|s, o| {
        s.body_timeout = Duration::from_secs(2);
        s.max_connections_per_worker = Some(2);
        o.workers = Some(2);
    })
    .await;
    let addr = addr_of(&app);
    let fast = blocking(move || probe(addr, "/healthz", None, Duration::from_secs(5))).await;
    assert_eq!(fast.status, 200);
    // 2 workers x 2 connections: these four fill every slot.
    let (held, waited) = blocking(move || {
        let held: Vec<TcpStream> = (0..4)
            .map(|_| stall(addr, "POST", "/cgi-bin/stable_token", None))
            .collect();
        // Give the server a moment to accept the four before the probe joins the queue.
        std::thread::sleep(Duration::from_millis(300));
        (held, probe(addr, "/healthz", None, Duration::from_secs(10)))
    })
    .await;
    assert_eq!(waited.status, 200, "{}", waited.head);
    // Not served until a held connection's 2 s deadline freed a slot: the cap is in force.
    // Served once a slot was freed, not long after.
    let freed = Duration::from_millis(1200)..Duration::from_secs(6);
    assert!(
        freed.contains(&waited.elapsed),
        "served after {:?}, not within {freed:?} though every slot was taken",
        waited.elapsed
    );
    drop(held);
}

#[actix_web::test]
async fn the_longest_token_upstream_may_send_can_be_invalidated() {
    let fake = FakeWechat::start(FakeConfig {
        apps: vec![(SHOP_APPID.into(), SHOP_SECRET.into())],
        token_len: MAX_CREDENTIAL_LEN,
        ..FakeConfig::default()
    })
    .await
    .expect("fake starts");
    let app = spawn_with(fake, |_, _| {}).await;
    let old = app.shop_token().await;
    assert_eq!(old.len(), MAX_CREDENTIAL_LEN);
    let minted = app.minted(SHOP_APPID);
    // Rejected for real: WeChat is asked about it (with the whole long token) and says so.
    assert!(app.fake.kill_token(&old));
    let a = app.invalidate_shop(&old).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.token().refreshed, Some(true));
    let new = a.body["access_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(new.len(), MAX_CREDENTIAL_LEN);
    assert_eq!(app.minted(SHOP_APPID), minted + 1);
}

#[actix_web::test]
async fn array_bodies_are_refused_on_every_json_route() {
    let app = spawn(|_, _| {}).await;
    let token = app.shop_token().await;
    let minted = app.minted(SHOP_APPID);

    let a = app
        .post(
            "/v1/apps/shop/token/invalidate",
            Some(BILLING_KEY),
            serde_json::json!([token]).to_string(),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.error().error, "bad_request");
    assert_eq!(app.minted(SHOP_APPID), minted, "no refresh for an array");

    let a = app
        .post(
            "/v1/apps/shop/jssdk/signature",
            Some(BILLING_KEY),
            r#"["https://example.com/page"]"#,
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.error().error, "bad_request");

    // The facade's "bad JSON" is WeChat's 47001; an array must not read as its fields.
    let a = app
        .post(
            "/cgi-bin/stable_token",
            None,
            serde_json::json!(["client_credential", SHOP_APPID, BILLING_KEY]).to_string(),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.wx().errcode, 47001, "{}", a.body);
    assert!(a.body.get("access_token").is_none());
    // The same fields as an object are served: the refusal is about the shape alone.
    let a = app
        .post(
            "/cgi-bin/stable_token",
            None,
            serde_json::json!({"grant_type": "client_credential", "appid": SHOP_APPID,
                "secret": BILLING_KEY})
            .to_string(),
        )
        .await;
    assert_eq!(a.body["access_token"], token.as_str(), "{}", a.body);
}

#[actix_web::test]
async fn wrong_methods_answer_a_json_405_naming_the_allowed_method() {
    let app = spawn(|_, _| {}).await;
    let cases = [
        ("POST", "/metrics", "GET"),
        ("DELETE", "/v1/apps/shop/token", "GET"),
        ("GET", "/v1/apps/shop/token/invalidate", "POST"),
        ("PUT", "/v1/apps/shop/ticket/jsapi", "GET"),
        ("GET", "/v1/apps/shop/jssdk/signature", "POST"),
        ("GET", "/v1/apps/shop/revoke", "POST"),
        ("GET", "/v1/admin/reload", "POST"),
        ("POST", "/cgi-bin/token", "GET"),
        ("GET", "/cgi-bin/stable_token", "POST"),
    ];
    for (method, path, allow) in cases {
        let mut resp = app
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{}", app.base, path),
            )
            .insert_header(("Authorization", format!("Bearer {OPS_KEY}")))
            .send()
            .await
            .expect("request sent");
        let body: Value =
            serde_json::from_slice(&resp.body().await.expect("body")).unwrap_or(Value::Null);
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(
            resp.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        assert_eq!(
            resp.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        if path.starts_with("/cgi-bin/") {
            // The facade answers in WeChat's format, which an SDK reads.
            let errcode = if allow == "GET" { 43001 } else { 43002 };
            assert_eq!(body["errcode"], errcode, "{method} {path}: {body}");
            assert_eq!(body["errmsg"], format!("require {allow} method"));
            continue;
        }
        assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
        assert_eq!(
            body["message"],
            format!("method not allowed on this route (allowed: {allow})")
        );
    }
}

/// The real binary, started as systemd starts it (soft open-file limit 1,024, hard limit
/// higher): probes keep answering while 2,000 clients hold half-sent `stable_token` bodies, and
/// the body deadline then answers and closes every one of them.
#[actix_web::test]
async fn probes_answer_while_2000_stalled_bodies_are_held_under_a_soft_limit_of_1024() {
    const HELD: usize = 2000;
    const SOFT: u64 = 1024;
    // The test process holds the client ends itself.
    let limits = wxtoken::fd_limit::raise_nofile().expect("getrlimit");
    assert!(
        limits.after > HELD as u64 + 500 && limits.hard > SOFT + HELD as u64 + 500,
        "this test needs an open-file hard limit above {}: {limits:?}",
        SOFT + HELD as u64 + 500
    );
    let hard = limits.hard;

    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wxtoken.toml");
    let text = config_text(
        &fake.base_url(),
        &dir.path().join("store.redb"),
        "127.0.0.1:0",
    )
    .replace(
        "shutdown_timeout_secs = 2",
        // Long enough that all 2,000 are still held while the probes run, even on a slow
        // machine; short enough to keep the test under 20 s.
        "shutdown_timeout_secs = 2\nbody_timeout_secs = 8",
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("log.txt");
    let mut cmd = wxtoken(&["serve", "--config", config.to_str().unwrap()]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: SOFT,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let addr: SocketAddr = wait_for_listen_addr(&log, &mut child.0).parse().unwrap();
    let pid = child.0.id();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("open-file limit raised to the hard limit")
            && log_text.contains(&format!("before={SOFT}"))
            && log_text.contains(&format!("after={hard}")),
        "{log_text}"
    );

    // A token first, so the token probes are served from memory.
    let ready = eventually(Duration::from_secs(10), || async {
        blocking(move || {
            probe(
                addr,
                "/v1/apps/shop/token",
                Some(BILLING_KEY),
                Duration::from_secs(5),
            )
            .status
                == 200
        })
        .await
    })
    .await;
    assert!(ready, "no token before the flood");

    let flood_start = Instant::now();
    let held = blocking(move || {
        (0..HELD)
            .map(|_| stall(addr, "POST", "/cgi-bin/stable_token", None))
            .collect::<Vec<_>>()
    })
    .await;
    let flooded_in = flood_start.elapsed();
    // Accepted by the server, not waiting in the kernel's backlog: it holds a descriptor each.
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let accepted = eventually(Duration::from_secs(3), || async { fds() > HELD }).await;
    assert!(accepted, "the server holds only {} descriptors", fds());

    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        for (path, key) in [
            ("/healthz", None),
            ("/v1/apps/shop/token", Some(BILLING_KEY)),
        ] {
            let a = blocking(move || probe(addr, path, key, Duration::from_secs(3))).await;
            assert_eq!(a.status, 200, "{path} during the flood: {}", a.head);
            // The first probe lands while the server is still taking in the flood (a few
            // hundred ms in a debug build); the ones after it answer in about a millisecond.
            assert!(
                a.elapsed < Duration::from_secs(2),
                "{path} took {:?}",
                a.elapsed
            );
            slowest = slowest.max(a.elapsed);
        }
    }
    assert!(fds() > HELD, "the flood was still held during the probes");
    eprintln!(
        "{HELD} stalled bodies opened in {flooded_in:?}; slowest probe during the flood: {slowest:?}"
    );

    // The deadline frees them all: a 408 in WeChat's format, then the connection closes.
    let ends = blocking(move || {
        let until = flood_start + Duration::from_secs(8 + 8);
        held.into_iter()
            .map(|mut s| {
                let a = read_answer(&mut s, until.saturating_duration_since(Instant::now()));
                (a.status, a.body["errcode"].clone(), a.closed)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let timed_out = ends
        .iter()
        .filter(|(status, errcode, closed)| *status == 408 && *errcode == -1 && *closed)
        .count();
    assert_eq!(timed_out, HELD, "first few: {:?}", &ends[..3]);
}
