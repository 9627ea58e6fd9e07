//! The client CA re-read by a reload, on the binary over real HTTPS: after the CA file is
//! replaced and SIGHUP sent, clients of the new CA are let in and those of the old one turned
//! away on new connections (a resumed session included), while a connection opened before
//! keeps working; a CA file that does not load keeps the running CA and is counted; a changed
//! `tls_client_ca_file` path waits for a restart.

use std::io::{BufRead as _, BufReader, Lines, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::support::config::{App, Client, ConfigText};
use crate::support::helpers::*;
use crate::support::pki::{curl_with_cert, run, Pair, Pki};
use crate::support::process::{serve_logging_at, KillOnDrop};

/// The configuration after `[server] listen`: HTTPS with a certificate of `site`, client
/// certificates checked against `client_ca`, `shop` against the fake at `fake`, the `billing`
/// client known by the subject `billing` and the admin `ops` by its key.
fn config(site: &Pair, client_ca: &Path, fake: &str, store: &Path) -> String {
    let tables = ConfigText::new()
        .app(App::official("shop", SHOP_APPID, SHOP_SECRET))
        .client(Client::new("billing", BILLING_KEY).apps(&["shop"]))
        .raw("cert_subject = \"billing\"")
        .client(Client::new("ops", OPS_KEY).apps(&["*"]).admin());
    format!(
        "tls_cert_file = {}\ntls_key_file = {}\ntls_client_ca_file = {}\n\
         [upstream]\nbase_url = \"{fake}\"\nmin_token_lifetime_secs = 2\n\
         [store]\npath = {}\n{tables}",
        quoted(&site.cert),
        quoted(&site.key),
        quoted(client_ca),
        quoted(store),
    )
}

fn hup(server: &KillOnDrop) {
    let sent = Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(sent, "SIGHUP sent");
}

/// Waits until `log` holds `needle` `times` times.
async fn logged(log: &Path, needle: &str, times: usize) {
    let seen = eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches(needle)
            .count()
            >= times
    })
    .await;
    assert!(
        seen,
        "{needle} not logged {times} times: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Whether a new connection with `client`'s certificate reads shop's token: 200, or refused
/// in the handshake (0) or after it (401, as a TLS 1.3 server reads the certificate after its
/// own Finished). Anything else fails the test.
async fn admitted(url: &str, server_ca: &Path, client: &Pair) -> bool {
    let (status, err) = curl_with_cert(url, server_ca, client, &[]).await;
    assert!([0, 200, 401].contains(&status), "{status} {err}");
    status == 200
}

/// One client of `billing`'s certificate, driven a line at a time: `held` GETs shop's token
/// on the connection opened at the start, `resume` opens a new connection resuming the TLS
/// session of the last connection. Prints the status (and for `resume` whether the session was
/// resumed), or `refused` when the connection fails.
const PYTHON_CLIENT: &str = r#"
import http.client, socket, ssl, sys
port, ca, cert, key = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
def get(conn):
    conn.request("GET", "/v1/apps/shop/token")
    r = conn.getresponse()
    r.read()
    return r.status
held = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=10)
held.connect()
held.auto_open = 0  # never reconnect behind the test's back
print(get(held), flush=True)
session = held.sock.session  # read after an answer: TLS 1.3 sends its tickets after the handshake
for line in sys.stdin:
    try:
        if line.strip() == "held":
            print(get(held), flush=True)
            continue
        raw = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
        conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=10)
        conn.sock = tls
        status = get(conn)
        # A ticket serves once: the next resumption takes this connection's newer one.
        session = tls.session
        print(status, "resumed" if tls.session_reused else "full", flush=True)
    except (OSError, http.client.HTTPException) as e:
        print("refused", type(e).__name__, flush=True)
"#;

/// The running [`PYTHON_CLIENT`].
struct HeldClient {
    tell: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
    _child: KillOnDrop,
}

impl HeldClient {
    fn start(port: &str, server_ca: &Path, client: &Pair) -> HeldClient {
        let mut child = Command::new("python3")
            .args(["-c", PYTHON_CLIENT, port])
            .arg(server_ca)
            .arg(&client.cert)
            .arg(&client.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let tell = child.stdin.take().unwrap();
        let mut answers = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(answers.next().unwrap().unwrap(), "200", "the first GET");
        HeldClient {
            tell,
            answers,
            _child: KillOnDrop(child),
        }
    }

    /// Sends `what` (`held` or `resume`); the answer line. Python answers within its 10 s
    /// timeouts, so the blocking read is short.
    fn ask(&mut self, what: &str) -> String {
        writeln!(self.tell, "{what}").unwrap();
        self.answers.next().unwrap().unwrap()
    }
}

/// `GET /metrics` over HTTPS: the scrape's text.
async fn metrics(base: &str, server_ca: &Path) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(server_ca)
        .arg(format!("{base}/metrics"));
    String::from_utf8_lossy(&run(cmd).await.stdout).into_owned()
}

#[actix_web::test]
async fn a_replaced_client_ca_admits_its_clients_and_turns_the_old_ones_away_after_sighup() {
    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let site = Pki::new(dir.path(), "site");
    let (a, b) = (Pki::new(dir.path(), "ca-a"), Pki::new(dir.path(), "ca-b"));
    let live = dir.path().join("clients-ca.pem");
    std::fs::copy(&a.ca_file, &live).unwrap();
    let text = config(
        &site.server("server"),
        &live,
        &fake.base_url(),
        &dir.path().join("store.redb"),
    );
    let (server, base, log) = serve_logging_at(dir.path(), &text, "info");
    let base = base.replace("http://", "https://");
    let port = base.rsplit(':').next().unwrap().to_string();
    let shop = format!("{base}/v1/apps/shop/token");
    let trust = site.ca_file.as_path();
    let client_a = a.client("billing-a", "billing", &[], false);
    let client_b = b.client("billing-b", "billing", &[], false);

    // Started with A: A's client reads, B's is turned away.
    assert!(admitted(&shop, trust, &client_a).await);
    assert!(!admitted(&shop, trust, &client_b).await);
    // A connection of A's client, open across the reload, and its session, resumable now.
    let mut held = HeldClient::start(&port, trust, &client_a);
    assert_eq!(held.ask("resume"), "200 resumed");

    // B replaces A in the file, as a rotation's last step does; SIGHUP.
    std::fs::copy(&b.ca_file, &live).unwrap();
    hup(&server);
    logged(&log, "TLS client CA reloaded", 1).await;
    assert!(admitted(&shop, trust, &client_b).await, "B's client now");
    assert!(
        !admitted(&shop, trust, &client_a).await,
        "A's client no more"
    );
    // The open connection keeps the check it passed; its session is not resumed under B.
    assert_eq!(held.ask("held"), "200");
    let resumed = held.ask("resume");
    assert!(resumed.starts_with("refused"), "{resumed}");

    // A file that does not load: B stays, the warning names the file, the failure is counted.
    std::fs::write(&live, "not a certificate").unwrap();
    hup(&server);
    logged(&log, "TLS client CA reload failed", 1).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let warning = text
        .lines()
        .find(|l| l.contains("TLS client CA reload failed"))
        .unwrap();
    assert!(
        warning.contains("WARN") && warning.contains("clients-ca.pem"),
        "{warning}"
    );
    assert!(admitted(&shop, trust, &client_b).await, "B's client still");
    assert!(!admitted(&shop, trust, &client_a).await);
    let scrape = metrics(&base, trust).await;
    for (outcome, count) in [("ok", 1.0), ("failed", 1.0)] {
        let series = format!("wxtoken_tls_client_ca_reloads_total{{outcome=\"{outcome}\"}}");
        assert_eq!(sample(&scrape, &series), Some(count), "{series}");
    }
    // The certificate pair was re-read by both reloads, apart from the CA.
    assert_eq!(
        sample(
            &scrape,
            "wxtoken_tls_certificate_reloads_total{outcome=\"ok\"}"
        ),
        Some(2.0)
    );
}

#[actix_web::test]
async fn a_changed_client_ca_path_waits_for_a_restart() {
    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let site = Pki::new(dir.path(), "site");
    let (a, b) = (Pki::new(dir.path(), "ca-a"), Pki::new(dir.path(), "ca-b"));
    let server_pair = site.server("server");
    let store = dir.path().join("store.redb");
    let text = config(&server_pair, &a.ca_file, &fake.base_url(), &store);
    let (_server, base, _log) = serve_logging_at(dir.path(), &text, "info");
    let addr = base.strip_prefix("http://").unwrap().to_string();
    let base = format!("https://{addr}");
    let shop = format!("{base}/v1/apps/shop/token");
    let trust = site.ca_file.as_path();

    // The same file, now naming B's CA file.
    let moved: PathBuf = b.ca_file.clone();
    let text = config(&server_pair, &moved, &fake.base_url(), &store);
    std::fs::write(
        dir.path().join("wxtoken.toml"),
        format!("[server]\nlisten = \"{addr}\"\n{text}"),
    )
    .unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-X", "POST", "--cacert"])
        .arg(trust)
        .args(["-H", &format!("Authorization: Bearer {OPS_KEY}")])
        .arg(format!("{base}/v1/admin/reload"));
    let out = run(cmd).await;
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        answer["needs_restart"],
        serde_json::json!(["server"]),
        "{answer}"
    );
    // The running path is still the one re-read: A's clients in, B's out.
    let client_a = a.client("billing-a", "billing", &[], false);
    let client_b = b.client("billing-b", "billing", &[], false);
    assert!(admitted(&shop, trust, &client_a).await);
    assert!(!admitted(&shop, trust, &client_b).await);
}
