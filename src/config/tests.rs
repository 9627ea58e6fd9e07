//! Unit tests of loading: each rule of the file, the overrides, validation and redaction.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::test_support::{env, load_with, server_tables, shop_and_billing};
use super::*;

const GOOD: &str = concat!(server_tables!(), shop_and_billing!());

fn load(text: &str, overrides: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load_with(text, overrides, &env)
}

#[test]
fn good_config_loads_with_defaults() {
    let s = load(GOOD, &[]).unwrap();
    assert_eq!(s.server.listen.port(), 9000);
    assert_eq!(s.upstream.base_url, "http://127.0.0.1:1");
    assert_eq!(s.refresh.margin, Duration::from_secs(600));
    assert_eq!(s.upstream.max_concurrent, 16);
    assert_eq!(s.upstream.max_per_second, 0, "no start-rate cap by default");
    assert_eq!(s.apps[0].secret.expose_secret(), "s3cr3t-value");
    assert_eq!(
        s.clients[0].key_sha256,
        Some(key_digest("billing-key-0123456789"))
    );
    assert!(s.clients[0].apps.allows("shop"));
    assert!(!s.clients[0].apps.allows("other"));
}

#[test]
fn env_overrides_nested_and_array_keys() {
    let s = load(
        GOOD,
        &[
            ("WXTOKEN_SERVER__LISTEN", "0.0.0.0:8081"),
            ("WXTOKEN_REFRESH__MARGIN_SECS", "300"),
            ("WXTOKEN_APPS__0__APPID", "12345"),
            ("WXTOKEN_CONFIG", "ignored.toml"),
        ],
    )
    .unwrap();
    assert_eq!(s.server.listen.to_string(), "0.0.0.0:8081");
    assert_eq!(s.refresh.margin, Duration::from_secs(300));
    assert_eq!(s.apps[0].appid, "12345");
}

#[test]
fn unknown_keys_are_named() {
    let e = load(&GOOD.replace("listen =", "lisen ="), &[]).unwrap_err();
    assert!(e.to_string().contains("server.lisen"), "{e}");
    let e = load(GOOD, &[("WXTOKEN_REFRESH__MARGN", "1")]).unwrap_err();
    assert!(e.to_string().contains("refresh.margn"), "{e}");
}

#[test]
fn missing_secret_variable_is_named() {
    let e = load(&GOOD.replace("SHOP_SECRET", "NOPE"), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("apps[0].secret_env") && msg.contains("NOPE"),
        "{msg}"
    );
}

#[test]
fn duplicate_apps_unknown_apps_and_no_clients_are_rejected() {
    let dup = format!("{GOOD}\n[[apps]]\nname = \"shop\"\nappid = \"wxother\"\nsecret = \"x\"\n");
    assert!(load(&dup, &[])
        .unwrap_err()
        .to_string()
        .contains("duplicate app name"));
    let same_appid = format!(
        "{GOOD}\n[[apps]]\nname = \"shop2\"\nappid = \"wx0123456789abcdef\"\nsecret = \"x\"\n"
    );
    assert!(load(&same_appid, &[])
        .unwrap_err()
        .to_string()
        .contains("already used by app"));
    let unknown = GOOD.replace("apps = [\"shop\"]", "apps = [\"nope\"]");
    let e = load(&unknown, &[]).unwrap_err().to_string();
    assert!(
        e.contains("clients[0].apps[0]") && e.contains("nope"),
        "{e}"
    );
    let no_clients = GOOD.split("[[clients]]").next().unwrap().to_string();
    assert!(load(&no_clients, &[])
        .unwrap_err()
        .to_string()
        .contains("clients"));
}

#[test]
fn redis_store_settings_are_validated_and_redacted() {
    let redis = GOOD.replace(
        "[[apps]]",
        "[store]\nkind = \"redis\"\nurl = \"redis://:hunter2@10.0.0.5:6379/0\"\nkey_prefix = \"wx\"\n[[apps]]",
    );
    let s = load(&redis, &[]).unwrap();
    match &s.store {
        StoreSettings::Redis(r) => {
            assert_eq!(r.key_prefix, "wx");
            assert_eq!(r.lock_ttl, Duration::from_secs(15));
        }
        other => panic!("{other:?}"),
    }
    let text = s.redacted_toml();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("redis://10.0.0.5:6379/0"));
    assert!(!format!("{s:?}").contains("hunter2"));
    let e = load(&redis.replace("redis://:hunter2@", "http://"), &[]).unwrap_err();
    assert!(e.to_string().contains("store.url"), "{e}");
    let e = load(
        &GOOD.replace("[[apps]]", "[store]\nurl = \"redis://x\"\n[[apps]]"),
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("only used with"), "{e}");
    assert_eq!(redact_url("redis://u:p@h:1/2"), "redis://h:1/2");
}

#[test]
fn the_redis_store_has_a_local_file_for_platform_records() {
    let redis = GOOD.replace(
        "[[apps]]",
        "[store]\nkind = \"redis\"\nurl = \"redis://10.0.0.5:6379/0\"\n[[apps]]",
    );
    let local = |s: &Settings| match &s.store {
        StoreSettings::Redis(r) => r.local_path.clone(),
        other => panic!("{other:?}"),
    };
    let s = load(&redis, &[]).unwrap();
    assert_eq!(local(&s), Some("wxtoken-local.redb".into()));
    assert!(s
        .redacted_toml()
        .contains("local_path = \"wxtoken-local.redb\""));
    let s = load(
        &redis,
        &[("WXTOKEN_STORE__LOCAL_PATH", "/var/lib/wx/local.redb")],
    )
    .unwrap();
    assert_eq!(local(&s), Some("/var/lib/wx/local.redb".into()));
    let e = load(&redis, &[("WXTOKEN_STORE__LOCAL_PATH", "")]).unwrap_err();
    assert!(e.to_string().contains("store.local_path"), "{e}");
    let e = load(
        &GOOD.replace("[[apps]]", "[store]\nlocal_path = \"l.redb\"\n[[apps]]"),
        &[],
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("store.local_path") && e.to_string().contains("only used with"),
        "{e}"
    );
}

#[test]
fn app_kinds_grants_and_tickets() {
    let extra = r#"
[[apps]]
name = "stable-app"
appid = "wxstable"
grant = "stable"
tickets = ["jsapi", "wx_card"]
secret = "x"
[[apps]]
name = "hr"
kind = "wecom"
corpid = "ww123"
secret = "y"
[[apps]]
name = "hr2"
kind = "wecom"
corpid = "ww123"
secret = "z"
"#;
    let text = GOOD.replace("[[clients]]", &format!("{extra}\n[[clients]]"));
    let s = load(&text, &[]).unwrap();
    assert_eq!(s.apps[0].kind, AppKind::Official(Grant::ClientCredential));
    assert_eq!(s.apps[1].kind, AppKind::Official(Grant::Stable));
    assert_eq!(
        s.apps[1].tickets,
        vec![TicketKind::Jsapi, TicketKind::WxCard]
    );
    assert_eq!(s.apps[2].kind, AppKind::Wecom);
    // Two WeCom apps of one corp never share a record.
    assert_ne!(s.apps[2].store_id(), s.apps[3].store_id());
    toml::from_str::<toml::Table>(&s.redacted_toml()).unwrap();

    let bad = text.replace("grant = \"stable\"", "grant = \"magic\"");
    assert!(load(&bad, &[])
        .unwrap_err()
        .to_string()
        .contains("apps[1].grant"));
    let bad = text.replace("\"wx_card\"]", "\"nope\"]");
    assert!(load(&bad, &[])
        .unwrap_err()
        .to_string()
        .contains("apps[1].tickets[1]"));
    let bad = text.replace("corpid = \"ww123\"\nsecret = \"y\"", "secret = \"y\"");
    assert!(load(&bad, &[])
        .unwrap_err()
        .to_string()
        .contains("apps[2].corpid"));
}

#[test]
fn redacted_rendering_hides_secrets() {
    let s = load(GOOD, &[]).unwrap();
    let text = s.redacted_toml();
    assert!(!text.contains("s3cr3t-value"));
    assert!(!text.contains("billing-key-0123456789"));
    assert!(text.contains("env SHOP_SECRET (redacted)"));
    // The rendering is itself valid TOML.
    toml::from_str::<toml::Table>(&text).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("s3cr3t-value"));
    assert!(!debug.contains(&hex::encode(key_digest("billing-key-0123456789"))));
}

fn with_secret_file(path: &std::path::Path) -> String {
    GOOD.replace(
        "secret_env = \"SHOP_SECRET\"",
        &format!(
            "secret_file = {}",
            toml::Value::String(path.display().to_string())
        ),
    )
}

#[test]
fn secret_files_must_be_regular_and_small() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok");
    std::fs::write(&ok, "  file-secret-value\n").unwrap();
    let s = load(&with_secret_file(&ok), &[]).unwrap();
    assert_eq!(s.apps[0].secret.expose_secret(), "file-secret-value");

    let fifo = dir.path().join("fifo");
    crate::files::mkfifo(&fifo);
    let big = dir.path().join("big");
    std::fs::write(&big, "x".repeat(4097)).unwrap();
    let exact = dir.path().join("exact");
    std::fs::write(&exact, "y".repeat(4096)).unwrap();
    assert!(load(&with_secret_file(&exact), &[]).is_ok(), "4 KiB fits");
    let start = std::time::Instant::now();
    for (path, what) in [
        (fifo.as_path(), "a FIFO"),
        (std::path::Path::new("/dev/zero"), "a device"),
        (dir.path(), "a directory"),
        (big.as_path(), "larger than 4096 bytes"),
    ] {
        let e = load(&with_secret_file(path), &[]).unwrap_err().to_string();
        assert!(e.contains("apps[0].secret_file") && e.contains(what), "{e}");
        assert!(!e.contains("xxxx"), "the content is never quoted: {e}");
    }
    assert!(start.elapsed() < Duration::from_secs(1), "never blocks");
}

#[test]
fn client_keys_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "file-client-key-000000001\n").unwrap();
    let shown = toml::Value::String(key.display().to_string());
    let text = GOOD.replace("key_env = \"BILLING_KEY\"", &format!("key_file = {shown}"));
    let s = load(&text, &[]).unwrap();
    assert_eq!(
        s.clients[0].key_sha256,
        Some(key_digest("file-client-key-000000001"))
    );
    assert_eq!(
        s.clients[0].key_source,
        Some(SecretSource::File(key.clone()))
    );
    // Exactly one source.
    let both = text.replace("key_file", "key_env = \"BILLING_KEY\"\nkey_file");
    let e = load(&both, &[]).unwrap_err().to_string();
    assert!(
        e.contains("clients[0].key") && e.contains("key_file"),
        "{e}"
    );
    // The same file rules as secret_file.
    let fifo = dir.path().join("fifo");
    crate::files::mkfifo(&fifo);
    let e = load(
        &GOOD.replace(
            "key_env = \"BILLING_KEY\"",
            &format!(
                "key_file = {}",
                toml::Value::String(fifo.display().to_string())
            ),
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("clients[0].key_file") && e.contains("FIFO"),
        "{e}"
    );
}

#[test]
fn secret_values_are_never_echoed_in_errors() {
    let cases = [
        GOOD.replace("secret_env = \"SHOP_SECRET\"", "secret = 98765432123456789"),
        GOOD.replace("key_env = \"BILLING_KEY\"", "key = 98765432123456789"),
        GOOD.replace(
            "key_env = \"BILLING_KEY\"",
            "key_sha256 = 98765432123456789",
        ),
        GOOD.replace(
            "[[apps]]",
            "[store]\nkind = \"redis\"\nurl = 98765432123456789\n[[apps]]",
        ),
        GOOD.replace(
            "secret_env = \"SHOP_SECRET\"",
            "secret = 98765432123456789abc",
        ),
        GOOD.replace(
            "secret_env = \"SHOP_SECRET\"",
            "secret = [\"98765432123456789\"]",
        ),
        // Too large for TOML's integers: the parser itself quotes it.
        GOOD.replace(
            "secret_env = \"SHOP_SECRET\"",
            "secret = 98765432123456789000000",
        ),
    ];
    for text in cases {
        let e = load(&text, &[]).unwrap_err().to_string();
        assert!(!e.contains("98765432123456789"), "{e}");
    }
    let e = load(&cases_secret_only(), &[]).unwrap_err().to_string();
    assert!(e.contains("apps[0].secret") && e.contains("string"), "{e}");
    // A numeric-looking secret from the environment stays a string.
    let s = load(
        &GOOD.replace("secret_env = \"SHOP_SECRET\"", ""),
        &[("WXTOKEN_APPS__0__SECRET", "98765432123456789")],
    )
    .unwrap();
    assert_eq!(s.apps[0].secret.expose_secret(), "98765432123456789");
}

fn cases_secret_only() -> String {
    GOOD.replace("secret_env = \"SHOP_SECRET\"", "secret = 98765432123456789")
}

#[test]
fn credentials_in_base_urls_are_refused_without_printing_them() {
    for key in ["base_url", "wecom_base_url"] {
        let text = GOOD.replace(
            "base_url = \"http://127.0.0.1:1/\"",
            &format!("{key} = \"https://admin:hunter2@proxy.example/wx\""),
        );
        let e = load(&text, &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("upstream.{key}")), "{e}");
        assert!(e.contains("credentials"), "{e}");
        assert!(!e.contains("hunter2") && !e.contains("admin"), "{e}");
    }
    // Not a URL at all, with an `@`: refused, still not printed.
    let e = load(
        &GOOD.replace("http://127.0.0.1:1/", "user:hunter2@host"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains("hunter2"), "{e}");
    // An `@` in the path is no credential.
    let s = load(&GOOD.replace("127.0.0.1:1/", "127.0.0.1:1/a@b"), &[]).unwrap();
    assert_eq!(s.upstream.base_url, "http://127.0.0.1:1/a@b");
}

#[test]
fn every_duration_and_count_has_an_upper_bound() {
    let too_big = [
        ("WXTOKEN_SERVER__SHUTDOWN_TIMEOUT_SECS", "3601"),
        ("WXTOKEN_SERVER__BODY_TIMEOUT_SECS", "301"),
        ("WXTOKEN_SERVER__MAX_CONNECTIONS_PER_WORKER", "1048577"),
        ("WXTOKEN_UPSTREAM__TIMEOUT_SECS", "301"),
        ("WXTOKEN_UPSTREAM__MIN_TOKEN_LIFETIME_SECS", "3601"),
        ("WXTOKEN_UPSTREAM__MAX_CONCURRENT", "1025"),
        ("WXTOKEN_UPSTREAM__MAX_CONCURRENT", "0"),
        ("WXTOKEN_UPSTREAM__MAX_PER_SECOND", "100001"),
        ("WXTOKEN_REFRESH__MARGIN_SECS", "86401"),
        ("WXTOKEN_REFRESH__MIN_INTERVAL_SECS", "3601"),
        ("WXTOKEN_REFRESH__RETRY_MAX_SECS", "3601"),
        ("WXTOKEN_REFRESH__RETRY_MIN_SECS", "3601"),
        ("WXTOKEN_APPS__0__DAILY_QUOTA", "100000001"),
        ("WXTOKEN_UPSTREAM__TIMEOUT_SECS", "18446744073709551615"),
    ];
    for (var, value) in too_big {
        let text = GOOD.replace("[[apps]]\n", "[[apps]]\ndaily_quota = 2000\n");
        let e = load(&text, &[(var, value)]).unwrap_err().to_string();
        let key = var["WXTOKEN_".len()..]
            .to_ascii_lowercase()
            .replace("__0__", "[0].")
            .replace("__", ".");
        assert!(e.contains(&key), "{var}={value}: {e}");
    }
    // The largest allowed values load.
    let s = load(
        GOOD,
        &[
            ("WXTOKEN_SERVER__SHUTDOWN_TIMEOUT_SECS", "3600"),
            ("WXTOKEN_UPSTREAM__TIMEOUT_SECS", "300"),
            ("WXTOKEN_UPSTREAM__MAX_CONCURRENT", "1024"),
            ("WXTOKEN_UPSTREAM__MAX_PER_SECOND", "100000"),
            ("WXTOKEN_REFRESH__MARGIN_SECS", "86400"),
            ("WXTOKEN_REFRESH__RETRY_MAX_SECS", "3600"),
        ],
    )
    .unwrap();
    assert_eq!(s.upstream.timeout, Duration::from_secs(300));
    assert_eq!(s.upstream.max_concurrent, 1024);
    assert_eq!(s.upstream.max_per_second, 100_000);
    let e = load(
        GOOD,
        &[
            ("WXTOKEN_REFRESH__RETRY_MIN_SECS", "30"),
            ("WXTOKEN_REFRESH__RETRY_MAX_SECS", "20"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("refresh.retry_max_secs"), "{e}");
    let redis = GOOD.replace(
        "[[apps]]",
        "[store]\nkind = \"redis\"\nurl = \"redis://h:1\"\n[[apps]]",
    );
    for (key, v) in [("lock_ttl_secs", "3601"), ("poll_secs", "3601")] {
        let text = redis.replace(
            "url = \"redis://h:1\"",
            &format!("url = \"redis://h:1\"\n{key} = {v}"),
        );
        let e = load(&text, &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("store.{key}")), "{e}");
    }
}

#[test]
fn restart_sections_compare_by_value_including_the_redis_password() {
    let redis = |url: &str| {
        GOOD.replace(
            "[[apps]]",
            &format!("[store]\nkind = \"redis\"\nurl = \"{url}\"\ninstance = \"a\"\n[[apps]]"),
        )
    };
    let a = load(&redis("redis://:one@10.0.0.5:6379/0"), &[]).unwrap();
    let same = load(&redis("redis://:one@10.0.0.5:6379/0"), &[]).unwrap();
    let other = load(&redis("redis://:two@10.0.0.5:6379/0"), &[]).unwrap();
    assert_eq!(a.store, same.store);
    assert_ne!(a.store, other.store, "a changed password is a change");
    assert_eq!(
        format!("{:?}", a.store),
        format!("{:?}", other.store),
        "(which Debug cannot see)"
    );
    let b = load(GOOD, &[("WXTOKEN_UPSTREAM__TIMEOUT_SECS", "11")]).unwrap();
    assert_ne!(load(GOOD, &[]).unwrap().upstream, b.upstream);
    assert_eq!(load(GOOD, &[]).unwrap().server, b.server);
}

#[test]
fn metrics_per_app_mode_is_validated_rendered_and_resolved() {
    let s = load(GOOD, &[]).unwrap();
    assert_eq!(s.metrics.per_app, PerAppMetrics::Auto);
    assert!(s.redacted_toml().contains("[metrics]\nper_app = \"auto\""));
    // One app with no tickets is one credential: auto means the full set.
    assert_eq!(s.credential_count(), 1);
    assert_eq!(s.metrics.mode(s.credential_count()), MetricsMode::Full);

    let text = format!("{GOOD}\n[metrics]\nper_app = \"gauges\"\n");
    let s = load(&text, &[]).unwrap();
    assert_eq!(s.metrics.per_app, PerAppMetrics::Gauges);
    assert_eq!(s.metrics.mode(1), MetricsMode::Gauges);
    assert!(s.redacted_toml().contains("per_app = \"gauges\""));
    toml::from_str::<toml::Table>(&s.redacted_toml()).unwrap();
    let s = load(GOOD, &[("WXTOKEN_METRICS__PER_APP", "full")]).unwrap();
    assert_eq!(s.metrics.mode(1_000_000), MetricsMode::Full);

    let err = load(&text.replace("gauges", "everything"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("metrics.per_app"), "{err}");
    assert!(err.contains("\"auto\", \"full\", \"gauges\""), "{err}");
    assert!(load(&format!("{GOOD}\n[metrics]\nper_ap = \"full\"\n"), &[]).is_err());

    // Auto switches at the threshold, counted in credentials (tokens plus tickets).
    let auto = MetricsSettings {
        per_app: PerAppMetrics::Auto,
    };
    assert_eq!(auto.mode(AUTO_FULL_MAX_CREDENTIALS), MetricsMode::Full);
    assert_eq!(
        auto.mode(AUTO_FULL_MAX_CREDENTIALS + 1),
        MetricsMode::Gauges
    );
    let with_tickets = GOOD.replace(
        "secret_env = \"SHOP_SECRET\"",
        "secret_env = \"SHOP_SECRET\"\ntickets = [\"jsapi\", \"wx_card\"]",
    );
    assert_eq!(load(&with_tickets, &[]).unwrap().credential_count(), 3);
}

#[test]
fn reported_refetches_per_hour_defaults_to_a_few_is_range_checked_and_shown() {
    let s = load(GOOD, &[]).unwrap();
    assert_eq!(s.refresh.reported_refetches_per_hour, 4);
    assert!(s
        .redacted_toml()
        .contains("\nreported_refetches_per_hour = 4\n"));
    // Zero is allowed: reports then never refetch a token before its normal refresh time.
    let s = load(
        GOOD,
        &[("WXTOKEN_REFRESH__REPORTED_REFETCHES_PER_HOUR", "0")],
    )
    .unwrap();
    assert_eq!(s.refresh.reported_refetches_per_hour, 0);
    let s = load(
        &format!("{GOOD}\n[refresh]\nreported_refetches_per_hour = 60\n"),
        &[],
    )
    .unwrap();
    assert_eq!(s.refresh.reported_refetches_per_hour, 60);
    toml::from_str::<toml::Table>(&s.redacted_toml()).unwrap();
    for bad in ["61", "100000000000"] {
        let e = load(
            GOOD,
            &[("WXTOKEN_REFRESH__REPORTED_REFETCHES_PER_HOUR", bad)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("refresh.reported_refetches_per_hour"), "{e}");
        assert!(e.contains("must be between 0 and 60"), "{e}");
    }
}

#[test]
fn readiness_scope_defaults_to_apps_and_is_validated_and_rendered() {
    let s = load(GOOD, &[]).unwrap();
    assert_eq!(s.server.readiness, ReadinessScope::Apps);
    assert!(s.redacted_toml().contains("readiness = \"apps\""));
    let text = GOOD.replace(
        "listen = \"127.0.0.1:9000\"",
        "listen = \"127.0.0.1:9000\"\nreadiness = \"instance\"",
    );
    let s = load(&text, &[]).unwrap();
    assert_eq!(s.server.readiness, ReadinessScope::Instance);
    assert!(s.redacted_toml().contains("readiness = \"instance\""));
    toml::from_str::<toml::Table>(&s.redacted_toml()).unwrap();
    let s = load(GOOD, &[("WXTOKEN_SERVER__READINESS", "instance")]).unwrap();
    assert_eq!(s.server.readiness, ReadinessScope::Instance);
    let err = load(&text.replace("\"instance\"", "\"pod\""), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.readiness"), "{err}");
    assert!(err.contains("\"apps\" or \"instance\""), "{err}");
}

/// Every section with keys of several kinds: official and WeCom apps, tickets, both refresh
/// policies of a platform, and clients with every kind of list.
const RICH: &str = include_str!("testdata/rich.toml");

/// What `check-config` prints for [`RICH`]: every key, each secret as its source.
const RICH_RENDERED: &str = include_str!("testdata/rich_rendered.toml");

#[test]
fn check_config_renders_every_key_of_every_section() {
    let s = load(RICH, &[]).unwrap();
    assert_eq!(s.redacted_toml(), RICH_RENDERED);
}

#[test]
fn the_rendering_reads_back_as_the_same_configuration_without_its_secrets() {
    let s = load(RICH, &[]).unwrap();
    let text = s.redacted_toml();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        parsed["store"]["path"].as_str(),
        Some(r#"C:\data\"wx".redb"#)
    );
    assert_eq!(parsed["apps"][1]["corpid"].as_str(), Some("ww123"));
    assert_eq!(
        parsed["proxy"]["max_body_bytes"].as_integer(),
        Some(20 << 20)
    );
    for secret in [
        "s3cr3t-value",
        "hr-secret",
        "comp-secret",
        "abc123",
        "crm-key",
        "msgTok3n",
        "route-signing-key",
    ] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
}

#[test]
fn values_beyond_what_a_file_allows_render_without_panicking() {
    // Settings built in code are not range-checked: TOML's integers stop at i64::MAX.
    let mut s = load(GOOD, &[]).unwrap();
    s.refresh.margin = Duration::MAX;
    s.proxy.max_body_bytes = usize::MAX;
    s.apps[0].daily_quota = u64::MAX;
    let text = s.redacted_toml();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        parsed["refresh"]["margin_secs"].as_integer(),
        Some(i64::MAX)
    );
    assert_eq!(
        parsed["proxy"]["max_body_bytes"].as_integer(),
        Some(i64::MAX)
    );
    assert_eq!(
        parsed["apps"][0]["daily_quota"].as_integer(),
        Some(i64::MAX)
    );
}

#[test]
fn client_rate_limits_are_validated_defaulted_and_shown() {
    let with =
        |keys: &str| GOOD.replace("apps = [\"shop\"]", &format!("apps = [\"shop\"]\n{keys}"));
    let s = load(&with("rate_per_second = 5"), &[]).unwrap();
    let rate = s.clients[0].rate.unwrap();
    assert_eq!((rate.per_second.get(), rate.burst.get()), (5, 5));
    let text = s.redacted_toml();
    assert!(text.contains("rate_per_second = 5\nburst = 5"), "{text}");
    let s = load(&with("rate_per_second = 5\nburst = 50"), &[]).unwrap();
    assert_eq!(s.clients[0].rate.unwrap().burst.get(), 50);
    assert!(load(GOOD, &[]).unwrap().clients[0].rate.is_none());
    for (keys, named) in [
        ("burst = 5", "clients[0].burst: needs rate_per_second"),
        (
            "rate_per_second = 0",
            "clients[0].rate_per_second: 0 is out of range",
        ),
        (
            "rate_per_second = 10\nburst = 2",
            "clients[0].burst: 2 is out of range",
        ),
        ("rate_per_second = 1000000", "clients[0].rate_per_second"),
    ] {
        let e = load(&with(keys), &[]).unwrap_err().to_string();
        assert!(e.starts_with(named), "{keys}: {e}");
    }
}
