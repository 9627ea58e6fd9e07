//! Unit tests of the Redis store's topology keys: one of url, sentinels, cluster_nodes; the
//! TLS files; the passwords kept out of every message and rendering.

use std::path::Path;

use secrecy::ExposeSecret as _;

use super::test_support::{server_tables, shop_and_billing};
use super::*;

const BASE: &str = concat!(
    server_tables!(),
    shop_and_billing!(
        r#"secret = "s3cr3t-value""#,
        r#"key = "billing-key-0123456789""#
    )
);

fn env(name: &str) -> Option<String> {
    match name {
        "REDIS_PASS" => Some("data-node-pass-1".into()),
        "SENTINEL_PASS" => Some("sentinel-pass-2".into()),
        "OTHER_PASS" => Some("other-pass-3".into()),
        _ => None,
    }
}

fn load(store: &str) -> Result<Settings, ConfigError> {
    let text = format!("{BASE}[store]\nkind = \"redis\"\n{store}\n");
    Settings::from_toml(&text, &[], &env)
}

fn error(store: &str) -> String {
    match load(store) {
        Ok(s) => panic!("accepted: {store}\n{s:?}"),
        Err(e) => e.to_string(),
    }
}

fn redis(s: &Settings) -> &RedisSettings {
    match &s.store {
        StoreSettings::Redis(r) => r,
        other => panic!("{other:?}"),
    }
}

/// A CA certificate and a client certificate with its key, as PEM files in `dir`.
fn pem_files(dir: &Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    (
        write("ca.pem", ca.pem()),
        write("client.pem", ca.pem()),
        write("client-key.pem", ca_key.serialize_pem()),
    )
}

#[test]
fn exactly_one_topology_is_configured() {
    let e = error("url = \"redis://h:1\"\nsentinels = [\"h:26379\"]\nsentinel_master = \"m\"");
    assert!(
        e.contains("store.sentinels") && e.contains("exactly one"),
        "{e}"
    );
    let e = error("url_env = \"X\"\ncluster_nodes = [\"h:7000\"]");
    assert!(
        e.contains("store.cluster_nodes") && e.contains("exactly one"),
        "{e}"
    );
    let e =
        error("sentinels = [\"h:26379\"]\nsentinel_master = \"m\"\ncluster_nodes = [\"h:7000\"]");
    assert!(e.contains("exactly one"), "{e}");
    let e = error("");
    assert!(
        e.contains("missing") && e.contains("store.cluster_nodes"),
        "{e}"
    );
}

#[test]
fn sentinel_keys_belong_together() {
    let e = error("sentinels = [\"10.0.0.1:26379\"]");
    assert!(
        e.contains("store.sentinel_master") && e.contains("missing"),
        "{e}"
    );
    let e = error("url = \"redis://h:1\"\nsentinel_master = \"m\"");
    assert!(
        e.contains("store.sentinel_master: only used with store.sentinels"),
        "{e}"
    );
    let e = error("cluster_nodes = [\"h:1\"]\nsentinel_password_env = \"SENTINEL_PASS\"");
    assert!(e.contains("store.sentinel_password_env"), "{e}");
    let s = load(
        "sentinels = [\"10.0.0.1:26379\", \"[::1]:26380\"]\nsentinel_master = \"mymaster\"\n\
         password_env = \"REDIS_PASS\"\nsentinel_password_env = \"SENTINEL_PASS\"\nusername = \"wx\"",
    )
    .unwrap();
    match &redis(&s).endpoint {
        RedisEndpoint::Sentinel(s) => {
            assert_eq!(s.sentinels[1].host, "::1");
            assert_eq!(s.sentinels[1].to_string(), "[::1]:26380");
            assert_eq!(s.master, "mymaster");
            assert_eq!(s.auth.username.as_deref(), Some("wx"));
            assert!(s.auth.password.is_some() && s.sentinel_password.is_some());
        }
        other => panic!("{other:?}"),
    }
    // Neither password is in any rendering.
    let text = s.redacted_toml();
    let debug = format!("{s:?}");
    for secret in ["data-node-pass-1", "sentinel-pass-2"] {
        assert!(!text.contains(secret) && !debug.contains(secret), "{text}");
    }
    assert!(
        text.contains("env SENTINEL_PASS") && text.contains("env REDIS_PASS"),
        "{text}"
    );
    assert!(text.contains("sentinel_master = \"mymaster\""), "{text}");
}

#[test]
fn node_addresses_are_host_and_port_only() {
    for bad in [
        "\"10.0.0.1\"",
        "\"redis://10.0.0.1:7000\"",
        "\"user:pw@10.0.0.1:7000\"",
        "\"10.0.0.1:0\"",
        "\"10.0.0.1:99999\"",
        "\"::1:7000\"",
        "\":7000\"",
    ] {
        let e = error(&format!("cluster_nodes = [{bad}]"));
        assert!(e.contains("store.cluster_nodes[0]"), "{bad}: {e}");
        assert!(!e.contains("pw@"), "credentials are not echoed: {e}");
    }
    let e = error("cluster_nodes = []");
    assert!(e.contains("1 to 64"), "{e}");
    let e = error("cluster_nodes = [\"h:7000\", \"h:7000\"]");
    assert!(e.contains("listed twice"), "{e}");
    let s = load("cluster_nodes = [\"10.0.0.1:7000\", \"10.0.0.2:7001\"]").unwrap();
    assert_eq!(redis(&s).endpoint.kind(), "cluster");
    assert!(s
        .redacted_toml()
        .contains("cluster_nodes = [\"10.0.0.1:7000\", \"10.0.0.2:7001\"]"));
}

#[test]
fn passwords_come_from_the_environment_and_credentials_stay_out_of_urls_elsewhere() {
    let e = error("cluster_nodes = [\"h:1\"]\npassword_env = \"UNSET_VAR\"");
    assert!(
        e.contains("store.password_env") && e.contains("UNSET_VAR is not set"),
        "{e}"
    );
    let e = error("url = \"redis://h:1\"\npassword_env = \"REDIS_PASS\"");
    assert!(e.contains("part of the URL"), "{e}");
    let e = error("url = \"redis://h:1\"\nusername = \"wx\"");
    assert!(e.contains("store.username"), "{e}");
}

#[test]
fn tls_files_need_tls_and_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pem_files(dir.path());
    let e = error(&format!("url = \"redis://h:1\"\ntls_ca_file = \"{ca}\""));
    assert!(
        e.contains("store.tls_ca_file: only used with TLS") && e.contains("rediss://"),
        "{e}"
    );
    let e = error(&format!(
        "cluster_nodes = [\"h:1\"]\ntls_ca_file = \"{ca}\""
    ));
    assert!(e.contains("set store.tls = true"), "{e}");
    let e = error("url = \"rediss://h:1\"\ntls = true");
    assert!(e.contains("store.tls") && e.contains("scheme"), "{e}");
    let missing = dir.path().join("nope.pem").display().to_string();
    let e = error(&format!(
        "url = \"rediss://h:1\"\ntls_ca_file = \"{missing}\""
    ));
    assert!(
        e.contains("store.tls_ca_file") && e.contains("nope.pem"),
        "{e}"
    );
    let e = error(&format!(
        "url = \"rediss://h:1\"\ntls_cert_file = \"{cert}\""
    ));
    assert!(
        e.contains("store.tls_cert_file") && e.contains("tls_key_file"),
        "{e}"
    );
    let e = error(&format!("url = \"rediss://h:1\"\ntls_key_file = \"{key}\""));
    assert!(
        e.contains("store.tls_key_file") && e.contains("tls_cert_file"),
        "{e}"
    );
    // A key file that holds a certificate is refused, without quoting it.
    let e = error(&format!(
        "url = \"rediss://h:1\"\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{cert}\""
    ));
    assert!(
        e.contains("store.tls_key_file") && e.contains("no PEM private key"),
        "{e}"
    );
    assert!(!e.contains("BEGIN"), "{e}");
    // Certificate checks cannot be turned off: there is no key for it, and no URL fragment.
    let e = error("url = \"rediss://h:1/#insecure\"");
    assert!(e.contains("cannot be turned off"), "{e}");
    let e = error("url = \"rediss://h:1\"\ntls_insecure = true");
    assert!(e.contains("tls_insecure"), "{e}");

    let s = load(&format!(
        "url = \"rediss://:pw-in-url@h:6380/0\"\ntls_ca_file = \"{ca}\"\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\""
    ))
    .unwrap();
    let r = redis(&s);
    let tls = r.tls.as_ref().expect("TLS on");
    assert_eq!(tls.ca_file.as_deref(), Some(Path::new(&ca)));
    assert!(tls.client.is_some());
    let text = s.redacted_toml();
    assert!(
        text.contains("rediss://h:6380/0") && !text.contains("pw-in-url"),
        "{text}"
    );
    assert!(text.contains("tls_ca_file"), "{text}");
    // rediss:// alone: TLS with the web PKI roots.
    let s = load("url = \"rediss://h:6380\"").unwrap();
    assert_eq!(redis(&s).tls, Some(RedisTls::default()));
    let s = load(&format!(
        "cluster_nodes = [\"h:1\"]\ntls = true\ntls_ca_file = \"{ca}\""
    ))
    .unwrap();
    assert!(redis(&s).tls.is_some());
}

#[test]
fn key_prefixes_cannot_move_the_cluster_hash_tag() {
    let e = error("url = \"redis://h:1\"\nkey_prefix = \"{wx}\"");
    assert!(
        e.contains("store.key_prefix") && e.contains("braces"),
        "{e}"
    );
}

#[test]
fn a_changed_sentinel_or_cluster_password_is_a_change() {
    let sentinel = |var: &str| {
        load(&format!(
            "sentinels = [\"h:26379\"]\nsentinel_master = \"m\"\ninstance = \"a\"\nsentinel_password_env = \"{var}\""
        ))
        .unwrap()
    };
    assert_eq!(
        sentinel("SENTINEL_PASS").store,
        sentinel("SENTINEL_PASS").store
    );
    assert_ne!(
        sentinel("SENTINEL_PASS").store,
        sentinel("OTHER_PASS").store
    );
    let cluster = |var: &str| {
        load(&format!(
            "cluster_nodes = [\"h:1\"]\ninstance = \"a\"\npassword_env = \"{var}\""
        ))
        .unwrap()
    };
    assert_ne!(cluster("REDIS_PASS").store, cluster("OTHER_PASS").store);
    assert_ne!(sentinel("SENTINEL_PASS").store, cluster("REDIS_PASS").store);
}

#[test]
fn the_url_can_come_from_a_file_as_mounted_secrets_do() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    // A URL file as a container secret holds it: with its trailing newline.
    let url = file("redis_url", "redis://:file-pass-4@redis:6379/0\n");
    let s = load(&format!("url_file = \"{url}\"")).unwrap();
    match &redis(&s).endpoint {
        RedisEndpoint::Url { url: u, source } => {
            assert_eq!(u.expose_secret(), "redis://:file-pass-4@redis:6379/0");
            assert!(matches!(source, SecretSource::File(_)), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
    let shown = s.redacted_toml();
    assert!(shown.contains("redis://redis:6379/0 (file "), "{shown}");
    assert!(!shown.contains("file-pass-4") && !format!("{s:?}").contains("file-pass-4"));

    let e = error(&format!("url = \"redis://h:1\"\nurl_file = \"{url}\""));
    assert!(
        e.contains("set only one of") && e.contains("store.url_file"),
        "{e}"
    );
    let e = error(&format!("url_file = \"{url}\"\ncluster_nodes = [\"h:1\"]"));
    assert!(e.contains("exactly one"), "{e}");
    let empty = file("empty", " \n");
    let e = error(&format!("url_file = \"{empty}\""));
    assert!(
        e.contains("store.url_file") && e.contains("is empty"),
        "{e}"
    );
    let e = error("url_file = \"/dev/zero\"");
    assert!(e.contains("store.url_file") && e.contains("device"), "{e}");
    let e = error(&format!("url_file = \"{}\"", dir.path().display()));
    assert!(
        e.contains("store.url_file") && e.contains("directory"),
        "{e}"
    );
    let not_redis = file("not_redis", "http://secret-host-pass@h:1\n");
    let e = error(&format!("url_file = \"{not_redis}\""));
    assert!(
        e.contains("not a redis://") && !e.contains("secret-host-pass"),
        "{e}"
    );
}

#[test]
fn the_data_nodes_and_the_sentinels_passwords_can_come_from_files_one_source_each() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let pass = file("pass", "data-file-pass-5\n");
    let spass = file("spass", "sentinel-file-pass-6");
    let s = load(&format!(
        "sentinels = [\"h:26379\"]\nsentinel_master = \"m\"\npassword_file = \"{pass}\"\n\
         sentinel_password_file = \"{spass}\""
    ))
    .unwrap();
    match &redis(&s).endpoint {
        RedisEndpoint::Sentinel(s) => {
            let (p, _) = s.auth.password.as_ref().unwrap();
            assert_eq!(p.expose_secret(), "data-file-pass-5");
            let (p, _) = s.sentinel_password.as_ref().unwrap();
            assert_eq!(p.expose_secret(), "sentinel-file-pass-6");
        }
        other => panic!("{other:?}"),
    }
    let shown = s.redacted_toml();
    assert!(!shown.contains("file-pass"), "{shown}");
    let e = error(&format!(
        "cluster_nodes = [\"h:1\"]\npassword_env = \"REDIS_PASS\"\npassword_file = \"{pass}\""
    ));
    assert!(
        e.contains("set only one of store.password_env, store.password_file"),
        "{e}"
    );
    let e = error(&format!(
        "url = \"redis://h:1\"\npassword_file = \"{pass}\""
    ));
    assert!(
        e.contains("store.password_file") && e.contains("part of the URL"),
        "{e}"
    );
    let e = error(&format!(
        "cluster_nodes = [\"h:1\"]\nsentinel_password_file = \"{spass}\""
    ));
    assert!(
        e.contains("store.sentinel_password_file: only used with store.sentinels"),
        "{e}"
    );
    let missing = dir.path().join("missing").display().to_string();
    let e = error(&format!(
        "cluster_nodes = [\"h:1\"]\npassword_file = \"{missing}\""
    ));
    assert!(
        e.contains("store.password_file") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn redis_file_keys_are_refused_with_the_embedded_store() {
    let text = format!("{BASE}[store]\nkind = \"embedded\"\nurl_file = \"/x\"\n");
    let e = Settings::from_toml(&text, &[], &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("store.url_file: only used with store.kind = \"redis\""),
        "{e}"
    );
}

#[test]
fn check_config_renders_a_sentinel_store_key_for_key() {
    let s = load(
        "sentinels = [\"10.0.0.1:26379\", \"[::1]:26380\"]\nsentinel_master = \"mymaster\"\n\
         sentinel_password_env = \"SENTINEL_PASS\"\npassword_env = \"REDIS_PASS\"\n\
         username = \"wx\"\ntls = true\ninstance = \"i-1\"\nlock_ttl_secs = 30",
    )
    .unwrap();
    let text = s.redacted_toml();
    assert!(
        text.contains(
            "[store]\nkind = \"redis\"\nsentinels = [\"10.0.0.1:26379\", \"[::1]:26380\"]\n\
             sentinel_master = \"mymaster\"\nsentinel_password = \"env SENTINEL_PASS (redacted)\"\n\
             username = \"wx\"\npassword = \"env REDIS_PASS (redacted)\"\ntls = true\n\
             key_prefix = \"wxtoken\"\nlock_ttl_secs = 30\npoll_secs = 5\ninstance = \"i-1\"\n\
             local_path = \"wxtoken-local.redb\"\n\n[metrics]"
        ),
        "{text}"
    );
    // With a URL its scheme says TLS: no `tls` key, and the URL shows where it came from.
    let s = load("url = \"rediss://:pw@h:6380/0\"\ninstance = \"i-1\"").unwrap();
    let text = s.redacted_toml();
    assert!(
        text.contains(
            "[store]\nkind = \"redis\"\nurl = \"rediss://h:6380/0 (inline (redacted))\"\n\
             key_prefix = \"wxtoken\"\n"
        ),
        "{text}"
    );
}
