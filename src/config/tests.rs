//! Unit tests of loading: each rule of the file, the overrides, validation and redaction.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"
[upstream]
base_url = "http://127.0.0.1:1/"
[[apps]]
name = "shop"
appid = "wx0123456789abcdef"
secret_env = "SHOP_SECRET"
[[clients]]
name = "billing"
key_env = "BILLING_KEY"
apps = ["shop"]
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "SHOP_SECRET" => Some("s3cr3t-value".into()),
        "BILLING_KEY" => Some("billing-key-0123456789".into()),
        _ => None,
    }
}

fn load(text: &str, overrides: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let o: Vec<(String, String)> = overrides
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Settings::from_toml(text, &o, &env)
}

#[test]
fn good_config_loads_with_defaults() {
    let s = load(GOOD, &[]).unwrap();
    assert_eq!(s.server.listen.port(), 9000);
    assert_eq!(s.upstream.base_url, "http://127.0.0.1:1");
    assert_eq!(s.refresh.margin, Duration::from_secs(600));
    assert_eq!(s.apps[0].secret.expose_secret(), "s3cr3t-value");
    assert_eq!(
        s.clients[0].key_sha256,
        key_digest("billing-key-0123456789")
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
