//! Certificates the tests make with rcgen: a CA, server and client certificates it signs (an
//! expired one too), written to files the server's configuration names; and the clients that
//! speak TLS to the server (curl and Python, run off the test's arbiter); the test app serving
//! HTTPS with them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wxtoken::config::ServerTls;

use crate::support::helpers::TestApp;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A test CA that signs server and client certificates.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    /// The CA certificate, PEM, in a file.
    pub ca_file: PathBuf,
}

/// A certificate and its key, in files.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let ca_file = dir.join(format!("{name}.ca.pem"));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            ca,
            dir: dir.to_path_buf(),
            ca_file,
        }
    }

    /// A server certificate for 127.0.0.1 and localhost, written to `{file}.crt`/`.key`.
    pub fn server(&self, file: &str) -> Pair {
        self.issue(file, "wxtoken", &["127.0.0.1", "localhost"], false)
    }

    /// A client certificate with common name `cn` and DNS SANs `sans`; `expired`: valid only
    /// in 2020.
    pub fn client(&self, file: &str, cn: &str, sans: &[&str], expired: bool) -> Pair {
        self.issue(file, cn, sans, expired)
    }

    fn issue(&self, file: &str, cn: &str, sans: &[&str], expired: bool) -> Pair {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        let pair = Pair {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).unwrap();
        std::fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }
}

/// Runs `cmd` on a blocking thread, so the server on the test's arbiter keeps serving.
pub async fn run(mut cmd: Command) -> Output {
    actix_web::web::block(move || cmd.output().expect("command runs"))
        .await
        .unwrap()
}

/// `curl` of `url` trusting `ca`, with `extra` arguments: the status it printed (0 when the
/// connection failed) and its stderr.
pub async fn curl(url: &str, ca: &Path, extra: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .arg("--cacert")
    .arg(ca)
    .args(extra)
    .arg(url);
    let out = run(cmd).await;
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `curl` with a client certificate.
pub async fn curl_with_cert(url: &str, ca: &Path, client: &Pair, extra: &[&str]) -> (u16, String) {
    let mut args = vec![
        "--cert",
        client.cert.to_str().unwrap(),
        "--key",
        client.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    curl(url, ca, &args).await
}

/// The standard test app serving HTTPS with `pair`: the app and its `https://` base URL.
pub async fn https_app(pair: &Pair, client_ca: Option<&Path>) -> (TestApp, String) {
    let tls = ServerTls {
        cert_file: pair.cert.clone(),
        key_file: pair.key.clone(),
        client_ca_file: client_ca.map(Path::to_path_buf),
    };
    let app = TestApp::builder()
        .adjust(move |(s, _)| s.server.tls = Some(tls))
        .start()
        .await;
    let base = app.base.replace("http://", "https://");
    (app, base)
}
