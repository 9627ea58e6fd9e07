//! A fake business receiver of deliveries (tests, the demo): an HTTP server on 127.0.0.1 that
//! checks each delivery's signature with the route's key, records it, and answers as it is
//! told: 200, 500, never (hang), a passive reply body (after a delay), or not at all (down).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;

use crate::messages::signature::{verify, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// How the inbox answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboxMode {
    /// 200 with an empty body: delivered.
    Accept,
    /// 500.
    Fail,
    /// No answer for a minute (past the attempt's timeout).
    Hang,
    /// 200 with this body after `delay`: a passive reply.
    Reply { body: String, delay: Duration },
}

/// One request the inbox got.
#[derive(Clone, Debug)]
pub struct Received {
    /// The delivery's `id` (empty when the body was not JSON).
    pub id: String,
    pub route: String,
    pub body: Value,
    /// Whether `X-Wxtoken-Signature` checked out with the key.
    pub signed: bool,
    /// The status answered (0: none, the request hung).
    pub status: u16,
}

struct State {
    key: Vec<u8>,
    mode: Mutex<InboxMode>,
    received: Mutex<Vec<Received>>,
}

/// A running fake inbox; [`FakeInbox::down`] stops it, [`FakeInbox::up`] starts it again on
/// the same port.
pub struct FakeInbox {
    addr: SocketAddr,
    state: Arc<State>,
    server: Mutex<Option<ServerHandle>>,
}

impl FakeInbox {
    /// Starts an inbox on 127.0.0.1 (a free port) that checks signatures with `key`. Needs an
    /// actix System or a tokio runtime.
    pub async fn start(key: &str) -> io::Result<FakeInbox> {
        let state = Arc::new(State {
            key: key.as_bytes().to_vec(),
            mode: Mutex::new(InboxMode::Accept),
            received: Mutex::new(Vec::new()),
        });
        let listener = bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
        let addr = listener.local_addr()?;
        let inbox = FakeInbox {
            addr,
            state,
            server: Mutex::new(None),
        };
        inbox.serve(listener)?;
        Ok(inbox)
    }

    fn serve(&self, listener: std::net::TcpListener) -> io::Result<()> {
        let state = web::Data::from(self.state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)?
        .run();
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server.handle());
        tokio::spawn(server);
        Ok(())
    }

    /// Where deliveries go: `http://127.0.0.1:{port}/inbox`.
    pub fn url(&self) -> String {
        format!("http://{}/inbox", self.addr)
    }

    pub fn set_mode(&self, mode: InboxMode) {
        *self.state.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// Stops listening: connections are refused until [`FakeInbox::up`].
    pub async fn down(&self) {
        let handle = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            h.stop(false).await;
        }
    }

    /// Listens again on the same port.
    pub fn up(&self) -> io::Result<()> {
        let listener = bind(self.addr)?;
        self.serve(listener)
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The ids of the deliveries answered 2xx, with repeats.
    pub fn delivered(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| r.id)
            .collect()
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

async fn receive(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let ts: u64 = header(TIMESTAMP_HEADER).parse().unwrap_or(0);
    let signed = verify(&state.key, ts, &body, &header(SIGNATURE_HEADER));
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |k: &str| {
        json.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mode = state.mode.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (status, answer) = if !signed {
        (401, String::new())
    } else {
        match &mode {
            InboxMode::Accept => (200, String::new()),
            InboxMode::Fail => (500, String::new()),
            InboxMode::Hang => (0, String::new()),
            InboxMode::Reply { body, .. } => (200, body.clone()),
        }
    };
    state
        .received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Received {
            id: text("id"),
            route: text("route"),
            body: json.clone(),
            signed,
            status,
        });
    match mode {
        InboxMode::Hang if signed => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            HttpResponse::ServiceUnavailable().finish()
        }
        InboxMode::Reply { delay, .. } if signed => {
            tokio::time::sleep(delay).await;
            HttpResponse::Ok()
                .content_type("application/xml")
                .body(answer)
        }
        _ => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .body(answer),
    }
}
