//! Unit tests of `[server]`'s HTTPS keys, `client_auth`, the clients' certificate matches and
//! the URL-safe rule for client keys.

use std::path::Path;

use super::*;

/// A self-signed certificate for `cn` in `dir`: (cert file, key file).
fn cert_files(dir: &Path, name: &str) -> (String, String) {
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let q = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    (q(&c), q(&k))
}

fn config(server: &str, clients: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:9000"
{server}
[upstream]
base_url = "http://127.0.0.1:1/"
[[apps]]
name = "shop"
appid = "wx0123456789abcdef"
secret = "s3cr3t-value"
{clients}
"#
    )
}

const KEY_CLIENT: &str = r#"
[[clients]]
name = "billing"
key = "billing-key-0123456789"
apps = ["shop"]
"#;

const CERT_CLIENT: &str = r#"
[[clients]]
name = "billing"
cert_subject = "billing"
apps = ["shop"]
"#;

fn load(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_toml(text, &[], &|_| None)
}

#[test]
fn https_needs_a_certificate_and_its_key_which_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path(), "server");
    let (_, other_key) = cert_files(dir.path(), "other");
    let s = load(&config(
        &format!("tls_cert_file = {cert}\ntls_key_file = {key}"),
        KEY_CLIENT,
    ))
    .unwrap();
    let tls = s.server.tls.as_ref().unwrap();
    assert!(tls.client_ca_file.is_none());
    assert_eq!(s.server.client_auth, ClientAuth::Key);
    let text = s.redacted_toml();
    assert!(text.contains("tls_cert_file = "), "{text}");
    assert!(text.contains("client_auth = \"key\""), "{text}");

    let e = load(&config(&format!("tls_cert_file = {cert}"), KEY_CLIENT)).unwrap_err();
    assert!(
        e.to_string().starts_with("server.tls_key_file: missing"),
        "{e}"
    );
    let e = load(&config(&format!("tls_key_file = {key}"), KEY_CLIENT)).unwrap_err();
    assert!(
        e.to_string().starts_with("server.tls_cert_file: missing"),
        "{e}"
    );
    let e = load(&config(
        &format!("tls_cert_file = {cert}\ntls_key_file = {other_key}"),
        KEY_CLIENT,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("do not make a usable pair"), "{e}");
    // A key file that is not a key: named, its content never quoted.
    let e = load(&config(
        &format!("tls_cert_file = {cert}\ntls_key_file = {cert}"),
        KEY_CLIENT,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("no readable private key"), "{e}");
    assert!(!e.to_string().contains("BEGIN"), "{e}");
}

#[test]
fn client_certificates_need_https_and_set_the_default_mode_to_either() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path(), "server");
    let (ca, _) = cert_files(dir.path(), "ca");
    let tls = format!("tls_cert_file = {cert}\ntls_key_file = {key}");
    let e = load(&config(&format!("tls_client_ca_file = {ca}"), KEY_CLIENT)).unwrap_err();
    assert!(
        e.to_string().starts_with("server.tls_client_ca_file"),
        "{e}"
    );

    let with_ca = format!("{tls}\ntls_client_ca_file = {ca}");
    let s = load(&config(&with_ca, CERT_CLIENT)).unwrap();
    assert_eq!(s.server.client_auth, ClientAuth::Either);
    let c = &s.clients[0];
    assert!(c.key_sha256.is_none() && c.key_source.is_none());
    assert_eq!(c.cert.as_ref().unwrap().subject.as_deref(), Some("billing"));
    let text = s.redacted_toml();
    assert!(text.contains("cert_subject = \"billing\""), "{text}");
    assert!(text.contains("client_auth = \"either\""), "{text}");
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    assert!(parsed["clients"][0].get("key").is_none(), "{text}");

    for mode in ["cert", "either", "both"] {
        let e = load(&config(
            &format!("{tls}\nclient_auth = \"{mode}\""),
            KEY_CLIENT,
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("needs tls_client_ca_file"),
            "{mode}: {e}"
        );
    }
    let e = load(&config(
        &format!("{with_ca}\nclient_auth = \"mtls\""),
        KEY_CLIENT,
    ))
    .unwrap_err();
    assert!(e.to_string().starts_with("server.client_auth"), "{e}");
}

#[test]
fn each_client_has_what_its_mode_requires() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path(), "server");
    let (ca, _) = cert_files(dir.path(), "ca");
    let mode = |m: &str| {
        format!("tls_cert_file = {cert}\ntls_key_file = {key}\ntls_client_ca_file = {ca}\nclient_auth = \"{m}\"")
    };
    let err = |server: &str, clients: &str| load(&config(server, clients)).unwrap_err().to_string();
    assert!(err(&mode("cert"), KEY_CLIENT).contains("needs cert_subject or cert_san"));
    assert!(err(&mode("both"), CERT_CLIENT).contains("needs a key"));
    assert!(err(&mode("key"), CERT_CLIENT).contains("cert_subject and cert_san need"));
    assert!(err("", CERT_CLIENT).contains("cert_subject and cert_san need"));
    load(&config(&mode("cert"), CERT_CLIENT)).unwrap();
    let both = format!("{CERT_CLIENT}key = \"billing-key-0123456789\"\n");
    let s = load(&config(&mode("both"), &both)).unwrap();
    assert!(s.clients[0].key_sha256.is_some() && s.clients[0].cert.is_some());
    let neither = "[[clients]]\nname = \"x\"\napps = [\"shop\"]\n";
    assert!(err(&mode("either"), neither).contains("missing: a key"));
    let twice = format!(
        "{CERT_CLIENT}{}",
        CERT_CLIENT.replace("\"billing\"\ncert", "\"other\"\ncert")
    );
    assert!(
        err(&mode("either"), &twice).contains("same certificate match"),
        "{}",
        err(&mode("either"), &twice)
    );
    let empty = CERT_CLIENT.replace("cert_subject = \"billing\"", "cert_san = \"\"");
    assert!(err(&mode("either"), &empty).contains("clients[0].cert_san"));
}

#[test]
fn client_keys_outside_the_url_safe_set_are_refused_without_being_shown() {
    // As `openssl rand -base64 24` prints them: `+`, `/` and `=` change on the way through a URL.
    for key in [
        "abcDEF123+ghiJKL456/mnoPQR=",
        "with space 0123456789",
        "quote\"d-0123456789ab",
    ] {
        let clients = KEY_CLIENT.replace(
            "\"billing-key-0123456789\"",
            &toml::Value::String(key.into()).to_string(),
        );
        let e = load(&config("", &clients)).unwrap_err().to_string();
        assert!(
            e.starts_with("clients[0].key: holds a character outside"),
            "{e}"
        );
        assert!(e.contains("URL"), "{e}");
        assert!(!e.contains(key), "{e}");
    }
    let ok = KEY_CLIENT.replace("billing-key-0123456789", "Az09-._~Az09-._~Az09");
    load(&config("", &ok)).unwrap();
    let generated = KEY_CLIENT.replace("billing-key-0123456789", &crate::keygen::client_key());
    load(&config("", &generated)).unwrap();
}
