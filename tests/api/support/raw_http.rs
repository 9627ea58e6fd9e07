//! HTTP over raw sockets, so a test controls exactly which bytes are sent and sees exactly what
//! comes back and whether the connection closed; the blocking calls run off the runtime.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::answers::{ErrorAnswer, WxAnswer};

/// Connects and sends `bytes`, then leaves the connection as it is.
pub fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).expect("send");
    s
}

/// What came back on a raw connection.
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: Value,
    /// The server closed the connection after its answer.
    pub closed: bool,
    /// From the call to the end of the answer (or to `limit`).
    pub elapsed: Duration,
}

impl Raw {
    /// The body as wxtoken's error answer; panics (showing it) when it is not one.
    pub fn error(&self) -> ErrorAnswer {
        crate::support::answers::parse("an error answer", self.status, &self.body)
    }

    /// The body as WeChat's errcode answer; panics (showing it) when it is not one.
    pub fn wx(&self) -> WxAnswer {
        crate::support::answers::parse("a WeChat answer", self.status, &self.body)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Reads one answer: until the server closes, or `limit` passes.
pub fn read_answer(s: &mut TcpStream, limit: Duration) -> Raw {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut closed = false;
    let mut chunk = [0u8; 4096];
    let mut answered = None;
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                answered.get_or_insert_with(|| start.elapsed());
            }
            // A reset after the answer is a close as well.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                closed = true;
                break;
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Raw {
        status,
        head: head.to_string(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        closed,
        elapsed: answered.unwrap_or_else(|| start.elapsed()),
    }
}

pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_web::rt::task::spawn_blocking(f)
        .await
        .expect("blocking task")
}
