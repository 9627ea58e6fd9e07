//! HTTPS on the listener: curl and Python's ssl over TLS 1.3 and 1.2, a certificate from
//! another CA refused, `wxtoken healthcheck` of an HTTPS port, and a certificate renewed in
//! place and reloaded by SIGHUP: new connections get the new one, an open keep-alive
//! connection keeps working, and a broken new one keeps the old.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::helpers::*;
use crate::support::pki::https_app;
use crate::support::pki::{curl, run, Pki};
use crate::support::process::{wait_for_listen_addr, wxtoken, KillOnDrop};

/// A Python client (the standard library's ssl and http.client) that GETs `path` with the
/// billing key, trusting `ca`, at most TLS `max` ("1.2" or "1.3"): prints the status, the TLS
/// version and the body.
const PYTHON_GET: &str = r#"
import http.client, ssl, sys
port, ca, key, path, top = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
ctx.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[top]
conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=10)
conn.request("GET", path, headers={"Authorization": "Bearer " + key})
r = conn.getresponse()
print(r.status, conn.sock.version())
print(r.read().decode())
"#;

#[actix_web::test]
async fn tokens_are_served_over_https_to_curl_and_python_with_tls_1_3_and_1_2() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let (app, base) = https_app(&pki.server("server"), None).await;
    let url = format!("{base}/v1/apps/shop/token");
    let bearer = format!("Authorization: Bearer {BILLING_KEY}");
    for version in ["--tlsv1.3", "--tls-max"] {
        let extra: &[&str] = match version {
            "--tls-max" => &["--tls-max", "1.2", "-H", &bearer],
            _ => &["--tlsv1.3", "-H", &bearer],
        };
        let (status, err) = curl(&url, &pki.ca_file, extra).await;
        assert_eq!(status, 200, "curl {version}: {err}");
    }
    let port = app.base.rsplit(':').next().unwrap().to_string();
    for top in ["1.3", "1.2"] {
        let mut py = Command::new("python3");
        py.args(["-c", PYTHON_GET, &port]).arg(&pki.ca_file).args([
            BILLING_KEY,
            "/v1/apps/shop/token",
            top,
        ]);
        let out = run(py).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = text.lines();
        let want = if top == "1.3" {
            "200 TLSv1.3"
        } else {
            "200 TLSv1.2"
        };
        assert_eq!(lines.next(), Some(want), "{text}");
        let body: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert!(
            body["access_token"].as_str().is_some_and(|t| !t.is_empty()),
            "{body}"
        );
    }
    // The usual 401 over TLS: a missing key is still refused.
    let (status, _) = curl(&url, &pki.ca_file, &[]).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn a_client_trusting_another_ca_refuses_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let other = Pki::new(dir.path(), "other");
    let (_app, base) = https_app(&pki.server("server"), None).await;
    let (status, err) = curl(&format!("{base}/healthz"), &other.ca_file, &[]).await;
    assert_eq!(status, 0, "no answer over an untrusted certificate");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Plain HTTP on the HTTPS port gets no answer either.
    let out = run({
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("{}/healthz", base.replace("https://", "http://")));
        c
    })
    .await;
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "200");
}

#[actix_web::test]
async fn healthcheck_probes_an_https_listener_with_or_without_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let other = Pki::new(dir.path(), "other");
    let (_app, base) = https_app(&pki.server("server"), None).await;
    let url = format!("{base}/healthz");
    let probe = |ca: Option<&Path>| {
        let mut cmd = wxtoken(&["healthcheck", "--url", &url, "--timeout-secs", "5"]);
        cmd.env_remove("WXTOKEN_HEALTHCHECK_CA_FILE");
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        cmd
    };
    let out = run(probe(None)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(probe(Some(&pki.ca_file))).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(probe(Some(&other.ca_file))).await;
    assert!(
        !out.status.success(),
        "a server the CA did not sign fails the probe"
    );
}

/// Holds one keep-alive connection: GETs `/healthz` when told (a line on stdin), each time
/// printing the status and the SHA-256 of the certificate that connection got.
const PYTHON_KEEPALIVE: &str = r#"
import hashlib, http.client, ssl, sys
port, ca = sys.argv[1:3]
ctx = ssl.create_default_context(cafile=ca)
conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=10)
conn.connect()
conn.auto_open = 0  # never reconnect behind the test's back
for _ in sys.stdin:
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    r.read()
    print(r.status, hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest(), flush=True)
"#;

/// The SHA-256 of the certificate a new connection to `port` gets.
async fn served_fingerprint(port: &str, ca: &Path) -> String {
    let script = r#"
import hashlib, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
        print(hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest())
"#;
    let mut py = Command::new("python3");
    py.args(["-c", script, port]).arg(ca);
    let out = run(py).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sha256_of_pem(file: &Path) -> String {
    use rustls::pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    let der = rustls::pki_types::CertificateDer::from_pem_file(file).unwrap();
    hex::encode(sha2::Sha256::digest(der.as_ref()))
}

#[actix_web::test]
async fn sighup_serves_a_renewed_certificate_to_new_connections_and_keeps_open_ones() {
    let fake = start_fake(&Spec::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "ca");
    let live = pki.server("live");
    let first = sha256_of_pem(&live.cert);
    let config = dir.path().join("wxtoken.toml");
    let text = config_text(
        &fake.base_url(),
        &dir.path().join("store.redb"),
        "127.0.0.1:0",
    )
    .replacen(
        "shutdown_timeout_secs = 2",
        &format!(
            "shutdown_timeout_secs = 2\ntls_cert_file = {}\ntls_key_file = {}",
            toml::Value::String(live.cert.display().to_string()),
            toml::Value::String(live.key.display().to_string()),
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("log.txt");
    let mut server = KillOnDrop(
        wxtoken(&["serve", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr = wait_for_listen_addr(&log, &mut server.0);
    let port = addr.rsplit(':').next().unwrap().to_string();
    assert_eq!(served_fingerprint(&port, &pki.ca_file).await, first);

    // One connection, opened and used before the renewal.
    let mut held = Command::new("python3")
        .args(["-c", PYTHON_KEEPALIVE, &port])
        .arg(&pki.ca_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tell = held.stdin.take().unwrap();
    let mut answers = BufReader::new(held.stdout.take().unwrap()).lines();
    writeln!(tell).unwrap();
    assert_eq!(answers.next().unwrap().unwrap(), format!("200 {first}"));

    // Renewed in place, as cert-manager does, then SIGHUP.
    let renewed = pki.server("renewed");
    std::fs::copy(&renewed.cert, &live.cert).unwrap();
    std::fs::copy(&renewed.key, &live.key).unwrap();
    let second = sha256_of_pem(&live.cert);
    assert_ne!(first, second);
    let hup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    hup(server.0.id());
    let mut seen = String::new();
    for _ in 0..100 {
        seen = served_fingerprint(&port, &pki.ca_file).await;
        if seen == second {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen, second,
        "a new connection gets the renewed certificate"
    );
    // The connection opened before still answers, on the session it negotiated.
    writeln!(tell).unwrap();
    assert_eq!(answers.next().unwrap().unwrap(), format!("200 {first}"));
    drop(tell);
    let _ = held.wait();

    // A broken renewal is refused: the running certificate stays, the failure is logged.
    std::fs::write(&live.cert, "not a certificate").unwrap();
    hup(server.0.id());
    let failed = eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("TLS certificate reload failed")
    })
    .await;
    assert!(failed, "{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(served_fingerprint(&port, &pki.ca_file).await, second);
    let (status, _) = curl(&format!("https://{addr}/metrics"), &pki.ca_file, &[]).await;
    assert_eq!(status, 200);
    let mut m = Command::new("curl");
    m.args(["-sS", "--cacert"])
        .arg(&pki.ca_file)
        .arg(format!("https://{addr}/metrics"));
    let metrics = String::from_utf8_lossy(&run(m).await.stdout).into_owned();
    assert_eq!(
        sample(
            &metrics,
            "wxtoken_tls_certificate_reloads_total{outcome=\"failed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "wxtoken_tls_certificate_reloads_total{outcome=\"ok\"}"
        ),
        Some(1.0)
    );
}
