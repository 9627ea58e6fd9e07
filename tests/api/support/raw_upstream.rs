//! A bare HTTP/1.1 upstream, for the answers the fake WeChat cannot give: actix-web writes a
//! `Connection` header of its own and drops the one a handler sets, so an answer that names
//! headers of its connection (`Connection: X-Foo` with `X-Foo`) has to be written byte for
//! byte. It gives every request the same answer and records each request's head as it came.
//!
//! Blocking sockets on threads of their own, never on the runtime the server under test runs
//! on. Dropping it stops the listener; a connection's thread ends when its peer closes it or
//! after [`IDLE`] without a request.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a kept-alive connection may sit idle before its thread gives up on it.
const IDLE: Duration = Duration::from_secs(10);

/// Largest request head read; a test sends a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

pub struct RawUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl RawUpstream {
    /// Listens on 127.0.0.1 (a free port) and answers every request with `head_lines` (the
    /// header lines after the status line, each ending in CRLF, without `Content-Length`),
    /// `Content-Length` and `body`.
    pub fn start(head_lines: &str, body: &str) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let answer = format!(
            "HTTP/1.1 200 OK\r\n{head_lines}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        let answer: Arc<[u8]> = answer.into();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (recorded, stopped) = (heads.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (answer, recorded) = (answer.clone(), recorded.clone());
                std::thread::spawn(move || serve(conn, &answer, &recorded));
            }
        });
        RawUpstream { addr, heads, stop }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The heads of the requests received so far (request line and header lines), in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads lock").clone()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the listener's `accept`, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers the requests of one connection until it closes, goes idle, or sends something
/// that is not a request head.
fn serve(mut conn: TcpStream, answer: &[u8], heads: &Mutex<Vec<String>>) {
    if conn.set_read_timeout(Some(IDLE)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut chunk) {
                Ok(n) if n > 0 && buf.len() < MAX_HEAD => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        heads.lock().expect("heads lock").push(head);
        // The body is read and dropped: only heads are looked at.
        let mut rest = buf.split_off(end + 4);
        while rest.len() < length {
            match conn.read(&mut chunk) {
                Ok(n) if n > 0 => rest.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        buf = rest.split_off(length);
        if conn.write_all(answer).is_err() {
            return;
        }
    }
}
