//! `wxtoken healthcheck`: one HTTP GET of a probe URL, for container runtimes that run a command
//! inside the image (Docker's `HEALTHCHECK`, compose's `healthcheck`), where there is no shell
//! and no curl.
//!
//! Plain `std` rather than the project's awc client: the command starts no actix System or
//! runtime, so it costs a few milliseconds of CPU each time it runs (every 30 s in a container),
//! and HTTP/1.0 over one TCP connection is all a probe of wxtoken's own port needs. An
//! `https://` URL (a listener with `[server] tls_cert_file`) goes through a rustls client
//! connection on the same blocking socket; see [`crate::tls::probe_config`] for what it checks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Where the image's server listens (`[server] listen = "0.0.0.0:8080"` in its configuration).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/healthz";

/// Longest status line and headers read: a probe needs the first line only.
const MAX_HEAD: u64 = 8 * 1024;

/// Asks `url` once and succeeds when it answers 200 within `timeout` (connecting, sending and
/// reading the status line together). Any other status, a refused connection or a timeout is an
/// error saying which.
pub fn check(url: &str, timeout: Duration, ca_file: Option<&Path>) -> anyhow::Result<()> {
    let target = Target::parse(url)?;
    let tls = match target.tls {
        true => Some(crate::tls::probe_config(ca_file)?),
        false => None,
    };
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.host))?
        .collect();
    let mut last_error = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                return match &tls {
                    None => ask(stream.try_clone()?, stream, &target, deadline),
                    Some(config) => {
                        let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                            .with_context(|| format!("{} is not a host name", target.host))?;
                        let conn = rustls::ClientConnection::new(config.clone(), name)
                            .context("TLS setup")?;
                        let socket = stream.try_clone()?;
                        ask(
                            socket,
                            rustls::StreamOwned::new(conn, stream),
                            &target,
                            deadline,
                        )
                    }
                }
            }
            Err(e) => last_error = Some(anyhow::Error::new(e).context(format!("{addr}"))),
        }
    }
    Err(last_error
        .unwrap_or_else(|| anyhow::anyhow!("timed out"))
        .context(format!("cannot connect to {url}")))
}

/// Sends the request on `stream` (the TCP connection `socket`, or TLS over it) and reads the
/// status code.
fn ask(
    socket: TcpStream,
    mut stream: impl Read + Write,
    target: &Target,
    deadline: Instant,
) -> anyhow::Result<()> {
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        // A zero timeout means "block forever" to the socket: the smallest real one instead.
        d.max(Duration::from_millis(1))
    };
    // The socket's timeouts bound the TLS handshake too, which runs inside the first write.
    socket.set_write_timeout(Some(left()))?;
    socket.set_read_timeout(Some(left()))?;
    // HTTP/1.0 and `Connection: close`: the server closes after one answer, nothing to reuse.
    // One write: a server may answer and close as soon as it has the request's head.
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: wxtoken-healthcheck\r\nConnection: close\r\n\r\n",
        target.path, target.host_header
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .context("cannot send the request")?;
    let mut head = Vec::new();
    let mut limited = stream.take(MAX_HEAD);
    let mut buf = [0u8; 512];
    // Until the status line is complete; the rest of the answer is not needed.
    while !head.contains(&b'\n') {
        socket.set_read_timeout(Some(left()))?;
        if Instant::now() >= deadline {
            bail!("timed out waiting for the answer");
        }
        let n = match limited.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("timed out waiting for the answer")
            }
            // A server that closes a TLS connection without close_notify after its answer:
            // what was read counts.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).context("cannot read the answer"),
        };
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let status = parse_status(line.trim_end())
        .with_context(|| format!("not an HTTP answer: {:?}", truncate(&line, 80)))?;
    if status != 200 {
        bail!("answered {status}");
    }
    Ok(())
}

/// The code of an `HTTP/1.x NNN reason` status line.
fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The parts of an `http(s)://host[:port][/path]` URL a probe needs.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `https://`.
    tls: bool,
    /// Host name or IP address to connect to (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// As sent in the `Host` header (`[::1]:8080`).
    host_header: String,
    /// Path and query, `/` when the URL has none.
    path: String,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Target> {
        let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => bail!("--url must be an http:// or https:// URL, not {url:?}"),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("--url must name a host, without credentials: {url:?}");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .with_context(|| format!("unclosed [ in {url:?}"))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => bail!("cannot read the port of {url:?}"),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| format!("cannot read the port of {url:?}"))?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            bail!("--url must name a host: {url:?}");
        }
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            host_header: authority.to_string(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_into_host_port_and_path() {
        let t = Target::parse("http://127.0.0.1:8080/healthz").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/healthz")
        );
        let t = Target::parse("http://[::1]:9/readyz?scope=instance").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9, "/readyz?scope=instance")
        );
        assert_eq!(t.host_header, "[::1]:9");
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = Target::parse("http://h:1?x=1").unwrap();
        assert_eq!(t.path, "/?x=1");
        let t = Target::parse("https://127.0.0.1/healthz").unwrap();
        assert!(t.tls);
        assert_eq!(t.port, 443);
        for bad in [
            "ftp://127.0.0.1/healthz",
            "127.0.0.1:8080",
            "http://",
            "http://:80/",
            "http://user:pw@h/",
            "http://h:0/",
            "http://h:99999/",
            "http://[::1/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(parse_status("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status("HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(parse_status("HTTP/1.1 200"), Some(200));
        assert_eq!(parse_status("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status("HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status(""), None);
    }

    /// A one-connection server that answers `answer`, or holds the connection without one.
    fn serve_once(answer: Option<&'static str>) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            match answer {
                Some(a) => {
                    let _ = s.write_all(a.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        });
        format!("http://{addr}/healthz")
    }

    #[test]
    fn only_a_200_within_the_deadline_passes() {
        let t = Duration::from_secs(2);
        check(&serve_once(Some("HTTP/1.1 200 OK\r\n\r\n{}")), t, None).unwrap();
        let e = check(
            &serve_once(Some("HTTP/1.1 503 Service Unavailable\r\n\r\n")),
            t,
            None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("503"), "{e:#}");
        let e = check(&serve_once(Some("garbage\r\n")), t, None).unwrap_err();
        assert!(format!("{e:#}").contains("not an HTTP answer"), "{e:#}");
        let started = Instant::now();
        let e = check(&serve_once(None), Duration::from_millis(300), None).unwrap_err();
        assert!(format!("{e:#}").contains("timed out"), "{e:#}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = check(&format!("http://127.0.0.1:{port}/healthz"), t, None).unwrap_err();
        assert!(format!("{e:#}").contains("cannot connect"), "{e:#}");
    }
}
