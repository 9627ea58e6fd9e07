//! Unit tests of `[[platforms]]` and of clients' `platforms`: every accepted form, every
//! refusal with its message, the overrides, redaction and the reload comparison.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::test_support::{
    env, load_with, server_tables, shop_and_billing, AES_KEY, COMPONENT_SECRET, CRM_KEY, MSG_TOKEN,
};
use super::*;

/// A configuration with one platform, no apps, and a client of the platform only.
const PLATFORM_ONLY: &str = concat!(
    server_tables!(),
    include_str!("testdata/platform_only.toml")
);

/// An app and its client, to add to [`PLATFORM_ONLY`].
const APP: &str = concat!("\n", shop_and_billing!());

fn load(text: &str, overrides: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load_with(text, overrides, &env)
}

fn err(text: &str) -> String {
    load(text, &[]).unwrap_err().to_string()
}

/// `PLATFORM_ONLY` with one line of the platform replaced.
fn with(old: &str, new: &str) -> String {
    assert!(PLATFORM_ONLY.contains(old), "{old}");
    PLATFORM_ONLY.replacen(old, new, 1)
}

fn mixed() -> String {
    format!("{PLATFORM_ONLY}{APP}")
}

thread_local! {
    /// The log lines of the current test's `with_logs` closure, if one runs on this thread.
    static CAPTURED: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Writes into this thread's capture, if any; elsewhere the line is dropped.
struct ThreadSink;

impl std::io::Write for ThreadSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|c| {
            if let Some(buf) = c.borrow_mut().as_mut() {
                buf.extend_from_slice(b);
            }
        });
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns its log lines. One global subscriber for the whole test binary, not a
/// scoped one per test: tracing caches each call site's interest process-wide, and a scoped
/// subscriber misses events whose site another thread first reached while none was set.
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadSink)
            .with_ansi(false)
            .finish();
        // Fails only if another test set one first; then that one's output is what we get,
        // and the assertions say so.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let out = f();
    let bytes = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn a_platforms_only_config_loads_with_defaults() {
    let s = load(PLATFORM_ONLY, &[]).unwrap();
    assert!(s.apps.is_empty());
    let p = &s.platforms[0];
    assert_eq!(p.name, "saas");
    assert_eq!(p.component_appid, "wx3c1f0a9d8e7b6a51");
    assert_eq!(p.component_secret.expose_secret(), COMPONENT_SECRET);
    assert_eq!(p.token.expose_secret(), MSG_TOKEN);
    assert_eq!(p.encoding_aes_key.expose_secret(), AES_KEY);
    assert_eq!(
        p.component_secret_source,
        SecretSource::Env("SAAS_SECRET".into())
    );
    assert_eq!(p.token_source, SecretSource::Env("SAAS_MSG_TOKEN".into()));
    assert_eq!(
        p.encoding_aes_key_source,
        SecretSource::Env("SAAS_AES_KEY".into())
    );
    assert_eq!(
        p.authorizer_refresh,
        AuthorizerRefresh::Active {
            window: Duration::from_secs(86_400)
        }
    );
    assert_eq!(p.metrics_label(), "platform:saas");
    // The component token is a labelled credential; the metrics mode counts it.
    assert_eq!(s.credential_count(), 1);

    let crm = &s.clients[0];
    assert!(crm.may_use_platform("saas"));
    assert!(!crm.may_use_platform("other"));
    assert!(!crm.may_use_app("saas"), "a platform is not an app");
    assert_eq!(crm.apps, AppScope::Only(Default::default()));
}

#[test]
fn the_issue_example_loads_as_written() {
    let text = with(
        "encoding_aes_key_env = \"SAAS_AES_KEY\"",
        "encoding_aes_key_env = \"SAAS_AES_KEY\"\nauthorizer_refresh = \"active\"\nactive_window_secs = 86400",
    );
    let s = load(&text, &[]).unwrap();
    assert_eq!(
        s.platforms[0].authorizer_refresh,
        AuthorizerRefresh::Active {
            window: Duration::from_secs(86_400)
        }
    );
}

#[test]
fn apps_and_platforms_together_and_client_scopes() {
    let text = mixed().replace("platforms = [\"saas\"]", "platforms = [\"*\"]");
    let s = load(&text, &[]).unwrap();
    assert_eq!(s.apps.len(), 1);
    assert_eq!(s.platforms.len(), 1);
    assert_eq!(s.credential_count(), 2);
    let crm = &s.clients[0];
    assert_eq!(crm.platforms, AppScope::All);
    assert!(crm.may_use_platform("saas") && crm.may_use_platform("added-later"));
    assert!(!crm.may_use_app("shop"));
    let billing = &s.clients[1];
    assert!(billing.may_use_app("shop"));
    assert!(!billing.may_use_platform("saas"), "apps only: no platform");

    // Both lists on one client.
    let both = mixed().replace(
        "apps = [\"shop\"]",
        "apps = [\"shop\"]\nplatforms = [\"saas\"]",
    );
    let s = load(&both, &[]).unwrap();
    assert!(s.clients[1].may_use_app("shop") && s.clients[1].may_use_platform("saas"));
    // `["*"]` for apps with no app configured is allowed, as a reload may add some.
    let star = with(
        "platforms = [\"saas\"]",
        "apps = [\"*\"]\nplatforms = [\"saas\"]",
    );
    assert_eq!(load(&star, &[]).unwrap().clients[0].apps, AppScope::All);
}

#[test]
fn a_config_with_neither_apps_nor_platforms_is_refused() {
    let text = PLATFORM_ONLY
        .split("[[platforms]]")
        .next()
        .unwrap()
        .to_string()
        + "[[clients]]\nname = \"crm\"\nkey_env = \"CRM_KEY\"\napps = [\"*\"]\n";
    let e = err(&text);
    assert!(
        e.starts_with("apps: no [[apps]] configured, and no [[platforms]]"),
        "{e}"
    );
    // Platforms still need clients.
    let no_clients = PLATFORM_ONLY.split("[[clients]]").next().unwrap();
    assert!(
        err(no_clients).starts_with("clients: no [[clients]] configured"),
        "{}",
        err(no_clients)
    );
}

#[test]
fn client_lists_are_checked_like_apps() {
    let cases = [
        (
            with("platforms = [\"saas\"]", ""),
            "clients[0].apps: missing: list app names or [\"*\"] in apps, platform names or [\"*\"] in platforms, or both",
        ),
        (
            with("platforms = [\"saas\"]", "platforms = []"),
            "clients[0].platforms: empty: list platform names or [\"*\"]",
        ),
        (
            with("platforms = [\"saas\"]", "platforms = [\"saas\", \"nope\"]"),
            "clients[0].platforms[1]: unknown platform `nope`",
        ),
        (
            // An app's name is not a platform's.
            mixed().replace("platforms = [\"saas\"]", "platforms = [\"shop\"]"),
            "clients[0].platforms[0]: unknown platform `shop`",
        ),
        (
            mixed().replace("apps = [\"shop\"]", "apps = [\"saas\"]"),
            "clients[1].apps[0]: unknown app `saas`",
        ),
        (
            with("platforms = [\"saas\"]", "apps = []\nplatforms = [\"saas\"]"),
            "clients[0].apps: empty: list app names or [\"*\"]",
        ),
        (
            with("platforms = [\"saas\"]", "platforms = \"saas\""),
            "clients[0].platforms: invalid type",
        ),
    ];
    for (text, expected) in cases {
        let e = err(&text);
        assert!(e.starts_with(expected), "expected {expected:?}, got {e:?}");
    }
}

#[test]
fn every_secret_source_is_accepted_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("  {value}\n")).unwrap();
        (
            toml::Value::String(path.display().to_string()).to_string(),
            path,
        )
    };
    let (secret_q, secret_p) = file("secret", COMPONENT_SECRET);
    let (token_q, token_p) = file("token", MSG_TOKEN);
    let (aes_q, aes_p) = file("aes", AES_KEY);
    let files = PLATFORM_ONLY
        .replace(
            "component_secret_env = \"SAAS_SECRET\"",
            &format!("component_secret_file = {secret_q}"),
        )
        .replace(
            "token_env = \"SAAS_MSG_TOKEN\"",
            &format!("token_file = {token_q}"),
        )
        .replace(
            "encoding_aes_key_env = \"SAAS_AES_KEY\"",
            &format!("encoding_aes_key_file = {aes_q}"),
        );
    let s = load(&files, &[]).unwrap();
    let p = &s.platforms[0];
    assert_eq!(p.component_secret.expose_secret(), COMPONENT_SECRET);
    assert_eq!(p.token.expose_secret(), MSG_TOKEN, "trimmed");
    assert_eq!(p.encoding_aes_key.expose_secret(), AES_KEY);
    assert_eq!(p.component_secret_source, SecretSource::File(secret_p));
    assert_eq!(p.token_source, SecretSource::File(token_p));
    assert_eq!(p.encoding_aes_key_source, SecretSource::File(aes_p));

    let inline = PLATFORM_ONLY
        .replace(
            "component_secret_env = \"SAAS_SECRET\"",
            &format!("component_secret = \"{COMPONENT_SECRET}\""),
        )
        .replace(
            "token_env = \"SAAS_MSG_TOKEN\"",
            &format!("token = \"{MSG_TOKEN}\""),
        )
        .replace(
            "encoding_aes_key_env = \"SAAS_AES_KEY\"",
            &format!("encoding_aes_key = \"{AES_KEY}\""),
        );
    let (s, logs) = with_logs(|| load(&inline, &[]).unwrap());
    let p = &s.platforms[0];
    assert_eq!(p.token.expose_secret(), MSG_TOKEN);
    assert_eq!(p.component_secret_source, SecretSource::Inline);
    assert_eq!(p.token_source, SecretSource::Inline);
    assert_eq!(p.encoding_aes_key_source, SecretSource::Inline);
    // Each inline secret warns, naming the key and never the value.
    for key in [
        "platforms[0].component_secret",
        "platforms[0].token",
        "platforms[0].encoding_aes_key",
    ] {
        assert!(
            logs.contains(&format!("prefer {key}_env or {key}_file")),
            "{logs}"
        );
    }
    for secret in [COMPONENT_SECRET, MSG_TOKEN, AES_KEY] {
        assert!(!logs.contains(secret), "{logs}");
    }
}

#[test]
fn each_secret_needs_exactly_one_source() {
    for (line, key) in [
        (
            "component_secret_env = \"SAAS_SECRET\"",
            "platforms[0].component_secret",
        ),
        ("token_env = \"SAAS_MSG_TOKEN\"", "platforms[0].token"),
        (
            "encoding_aes_key_env = \"SAAS_AES_KEY\"",
            "platforms[0].encoding_aes_key",
        ),
    ] {
        let leaf = key.rsplit('.').next().unwrap();
        let e = err(&with(line, ""));
        assert_eq!(
            e,
            format!("{key}: missing: set one of {key}, {key}_env, {key}_file"),
        );
        let e = err(&with(line, &format!("{line}\n{leaf}_file = \"/x\"")));
        assert_eq!(
            e,
            format!("{key}: set only one of {key}, {key}_env, {key}_file")
        );
        let var = line.split('"').nth(1).unwrap();
        let e = err(&PLATFORM_ONLY.replace(var, "NOT_SET"));
        assert_eq!(
            e,
            format!("{key}_env: environment variable NOT_SET is not set")
        );
        let e = err(&PLATFORM_ONLY.replace(var, "EMPTY"));
        assert_eq!(e, format!("{key}_env: environment variable EMPTY is empty"));
    }
}

#[test]
fn secret_files_follow_the_bounded_reader_rules() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    crate::files::mkfifo(&fifo);
    let big = dir.path().join("big");
    std::fs::write(&big, "x".repeat(4097)).unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let start = std::time::Instant::now();
    for (line, key) in [
        (
            "component_secret_env = \"SAAS_SECRET\"",
            "platforms[0].component_secret_file",
        ),
        ("token_env = \"SAAS_MSG_TOKEN\"", "platforms[0].token_file"),
        (
            "encoding_aes_key_env = \"SAAS_AES_KEY\"",
            "platforms[0].encoding_aes_key_file",
        ),
    ] {
        let leaf = key.rsplit('.').next().unwrap();
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (std::path::Path::new("/dev/zero"), "a device"),
            (big.as_path(), "larger than 4096 bytes"),
            (empty.as_path(), "is empty"),
        ] {
            let quoted = toml::Value::String(path.display().to_string());
            let e = err(&with(line, &format!("{leaf} = {quoted}")));
            assert!(e.starts_with(key) && e.contains(what), "{e}");
            assert!(!e.contains("xxxx"), "{e}");
        }
    }
    assert!(start.elapsed() < Duration::from_secs(1), "never blocks");
}

#[test]
fn the_message_token_must_be_3_to_32_letters_and_digits() {
    let inline = |t: &str| {
        with(
            "token_env = \"SAAS_MSG_TOKEN\"",
            &format!("token = {}", toml::Value::String(t.into())),
        )
    };
    for ok in ["abc", &"Z9".repeat(16), "0123456789"] {
        let s = load(&inline(ok), &[]).unwrap();
        assert_eq!(s.platforms[0].token.expose_secret(), ok);
    }
    for bad in [
        "ab",
        &"a".repeat(33),
        "token-with-dash",
        "token with space",
        "tökenvalue",
        "tokenvalue!",
    ] {
        let e = err(&inline(bad));
        assert_eq!(
            e,
            "platforms[0].token: must be 3 to 32 letters and digits, as WeChat allows for the \
             message-check Token (the value is not shown)"
        );
    }
}

#[test]
fn the_encoding_aes_key_must_decode_to_32_bytes() {
    let inline = |k: &str| {
        with(
            "encoding_aes_key_env = \"SAAS_AES_KEY\"",
            &format!("encoding_aes_key = {}", toml::Value::String(k.into())),
        )
    };
    // WeChat's sample key, decoded as every SDK decodes it (checked against Python's
    // base64.b64decode of the key plus "=").
    assert_eq!(
        decode_encoding_aes_key(AES_KEY).map(hex::encode).as_deref(),
        Some("69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051")
    );
    let plus_slash = format!("{}+/A", &AES_KEY[..40]);
    for ok in [AES_KEY, &"A".repeat(43), &plus_slash] {
        let s = load(&inline(ok), &[]).unwrap();
        assert_eq!(s.platforms[0].encoding_aes_key.expose_secret(), ok);
        assert!(decode_encoding_aes_key(ok).is_some());
    }
    let key = "platforms[0].encoding_aes_key";
    let long = format!("{AES_KEY}A");
    let padded = format!("{AES_KEY}=");
    let url_safe = format!("{}-_A", &AES_KEY[..40]);
    let unicode = format!("{}é", &AES_KEY[..42]);
    let cases = [
        (&AES_KEY[..42], "has 42 characters, an EncodingAESKey has exactly 43 (the value is not shown)"),
        (long.as_str(), "has 44 characters, an EncodingAESKey has exactly 43 (the value is not shown)"),
        (padded.as_str(), "has 44 characters, an EncodingAESKey has exactly 43 (leave out the trailing '=') (the value is not shown)"),
        (url_safe.as_str(), "has a character outside the base64 alphabet (A-Z, a-z, 0-9, '+', '/') (the value is not shown)"),
        (unicode.as_str(), "has a character outside the base64 alphabet (A-Z, a-z, 0-9, '+', '/') (the value is not shown)"),
    ];
    for (bad, expected) in cases {
        assert_eq!(err(&inline(bad)), format!("{key}: {expected}"));
        assert!(decode_encoding_aes_key(bad).is_none());
    }
    // The same checks whatever the source.
    let e = load(
        PLATFORM_ONLY,
        &[("WXTOKEN_PLATFORMS__0__ENCODING_AES_KEY_ENV", "SAAS_SECRET")],
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with(key) && !e.contains(COMPONENT_SECRET), "{e}");
}

#[test]
fn authorizer_refresh_and_the_active_window() {
    let text = |extra: &str| {
        with(
            "encoding_aes_key_env = \"SAAS_AES_KEY\"",
            &format!("encoding_aes_key_env = \"SAAS_AES_KEY\"\n{extra}"),
        )
    };
    let refresh = |extra: &str| load(&text(extra), &[]).unwrap().platforms[0].authorizer_refresh;
    assert_eq!(
        refresh("authorizer_refresh = \"all\""),
        AuthorizerRefresh::All
    );
    for (secs, window) in [(60, 60), (2_592_000, 2_592_000), (3600, 3600)] {
        assert_eq!(
            refresh(&format!("active_window_secs = {secs}")),
            AuthorizerRefresh::Active {
                window: Duration::from_secs(window)
            }
        );
    }
    let cases = [
        (
            "active_window_secs = 59",
            "platforms[0].active_window_secs: 59 is out of range: must be between 60 and 2592000",
        ),
        (
            "active_window_secs = 2592001",
            "platforms[0].active_window_secs: 2592001 is out of range: must be between 60 and 2592000",
        ),
        (
            "active_window_secs = -1",
            "platforms[0].active_window_secs: invalid value",
        ),
        (
            "authorizer_refresh = \"all\"\nactive_window_secs = 3600",
            "platforms[0].active_window_secs: only used with authorizer_refresh = \"active\"",
        ),
        (
            "authorizer_refresh = \"lazy\"",
            "platforms[0].authorizer_refresh: unknown policy `lazy`; expected \"active\" or \"all\"",
        ),
    ];
    for (extra, expected) in cases {
        let e = err(&text(extra));
        assert!(e.starts_with(expected), "expected {expected:?}, got {e:?}");
    }
}

#[test]
fn platform_names_and_appids_are_unique_and_checked() {
    let second = |name: &str, appid: &str| {
        mixed().replace(
            "[[clients]]\nname = \"crm\"",
            &format!(
                "[[platforms]]\nname = \"{name}\"\ncomponent_appid = \"{appid}\"\n\
                 component_secret = \"s\"\ntoken = \"tok\"\nencoding_aes_key = \"{AES_KEY}\"\n\
                 [[clients]]\nname = \"crm\""
            ),
        )
    };
    let s = load(&second("other", "wxother"), &[]).unwrap();
    assert_eq!(s.platforms[1].name, "other");
    // A platform may share an app's name: the URLs and the metrics labels differ.
    let s = load(&second("shop", "wxother"), &[]).unwrap();
    assert_eq!(s.platforms[1].metrics_label(), "platform:shop");

    let ticket_app =
        "[[apps]]\nname = \"platform\"\nappid = \"wxp\"\nsecret = \"x\"\ntickets = [\"jsapi\"]\n";
    let cases = [
        (
            second("saas", "wxother"),
            "platforms[1].name: duplicate platform name `saas`".to_string(),
        ),
        (
            second("a/b", "wxother"),
            "platforms[1].name: `a/b` must be 1-64 characters of letters, digits, '-', '_' or '.'".into(),
        ),
        (
            second("", "wxother"),
            "platforms[1].name: `` must be 1-64".into(),
        ),
        (
            second("other", "wx3c1f0a9d8e7b6a51"),
            "platforms[1].component_appid: appid `wx3c1f0a9d8e7b6a51` is already used by platform `saas`".into(),
        ),
        (
            second("other", "wx0123456789abcdef"),
            "platforms[1].component_appid: appid `wx0123456789abcdef` is also app `shop`'s appid; a component account gets its token only as a platform (WeChat answers 61024 to /cgi-bin/token)".into(),
        ),
        (
            second("other", "  "),
            "platforms[1].component_appid: missing or empty".into(),
        ),
        (
            with("component_appid = \"wx3c1f0a9d8e7b6a51\"\n", ""),
            "platforms[0].component_appid: missing or empty".into(),
        ),
        (
            format!("{ticket_app}{}", second("jsapi_ticket", "wxother")),
            "platforms[1].name: the component token's metrics label `platform:jsapi_ticket` is already the label of the jsapi ticket of app `platform`; rename the platform or the app".into(),
        ),
        (
            with("name = \"saas\"\n", ""),
            "platforms[0]: missing field `name`".into(),
        ),
        (
            with("name = \"saas\"", "name = \"saas\"\nsecret = \"x\""),
            "platforms[0].secret: unknown field `secret`".into(),
        ),
        // `token` holds a secret in a platform, and is still a misspelled key in an app.
        (
            mixed().replace("appid = \"wx0123", "token = \"x\"\nappid = \"wx0123"),
            "apps[0].token: unknown field `token`".into(),
        ),
    ];
    for (text, expected) in cases {
        let e = err(&text);
        assert!(e.starts_with(&expected), "expected {expected:?}, got {e:?}");
    }
}

#[test]
fn env_overrides_reach_platforms_and_client_platforms() {
    let no_token = with("token_env = \"SAAS_MSG_TOKEN\"\n", "");
    let s = load(
        &no_token,
        &[
            ("WXTOKEN_PLATFORMS__0__COMPONENT_APPID", "wxfromenv00000001"),
            ("WXTOKEN_PLATFORMS__0__ACTIVE_WINDOW_SECS", "3600"),
            // Digits only: still a string, as every secret is.
            ("WXTOKEN_PLATFORMS__0__TOKEN", "123456"),
            ("WXTOKEN_CLIENTS__0__PLATFORMS", "[\"*\"]"),
        ],
    )
    .unwrap();
    let p = &s.platforms[0];
    assert_eq!(p.component_appid, "wxfromenv00000001");
    assert_eq!(
        p.authorizer_refresh,
        AuthorizerRefresh::Active {
            window: Duration::from_secs(3600)
        }
    );
    assert_eq!(p.token.expose_secret(), "123456");
    assert_eq!(p.token_source, SecretSource::Inline);
    assert_eq!(s.clients[0].platforms, AppScope::All);

    // A key the file leaves out, a 43-digit key that stays a string, and the policy.
    let no_aes = with("encoding_aes_key_env = \"SAAS_AES_KEY\"\n", "");
    let digits = "1234567890123456789012345678901234567890123";
    let s = load(
        &no_aes,
        &[
            ("WXTOKEN_PLATFORMS__0__ENCODING_AES_KEY", digits),
            ("WXTOKEN_PLATFORMS__0__AUTHORIZER_REFRESH", "all"),
        ],
    )
    .unwrap();
    assert_eq!(s.platforms[0].encoding_aes_key.expose_secret(), digits);
    assert_eq!(s.platforms[0].authorizer_refresh, AuthorizerRefresh::All);
    // A client of apps only gains a platform from the environment.
    let s = load(&mixed(), &[("WXTOKEN_CLIENTS__1__PLATFORMS", "[\"saas\"]")]).unwrap();
    assert!(s.clients[1].may_use_platform("saas"));

    let cases = [
        (
            "WXTOKEN_PLATFORMS__1__NAME",
            "x",
            "WXTOKEN_PLATFORMS__1__NAME: index 1 is past the 1 entries",
        ),
        (
            "WXTOKEN_PLATFORMS__0__TOKN",
            "x",
            "platforms[0].tokn: unknown field `tokn`",
        ),
        (
            "WXTOKEN_PLATFORMS__0__ACTIVE_WINDOW_SECS",
            "10",
            "platforms[0].active_window_secs: 10 is out of range",
        ),
        (
            "WXTOKEN_CLIENTS__0__PLATFORMS",
            "[\"nope\"]",
            "clients[0].platforms[0]: unknown platform `nope`",
        ),
        (
            "WXTOKEN_PLATFORMS__0__TOKEN",
            "abcdef",
            "platforms[0].token: set only one of",
        ),
    ];
    for (var, value, expected) in cases {
        let e = load(PLATFORM_ONLY, &[(var, value)])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(expected),
            "{var}: expected {expected:?}, got {e:?}"
        );
    }
}

#[test]
fn secret_values_typed_as_numbers_are_never_echoed() {
    for (line, typed) in [
        (
            "component_secret_env = \"SAAS_SECRET\"",
            "component_secret = 98765432123456789",
        ),
        (
            "token_env = \"SAAS_MSG_TOKEN\"",
            "token = 98765432123456789",
        ),
        (
            "encoding_aes_key_env = \"SAAS_AES_KEY\"",
            "encoding_aes_key = 98765432123456789",
        ),
        (
            "encoding_aes_key_env = \"SAAS_AES_KEY\"",
            "encoding_aes_key = [\"98765432123456789\"]",
        ),
        (
            "token_env = \"SAAS_MSG_TOKEN\"",
            "token = 98765432123456789000000",
        ),
    ] {
        let e = err(&with(line, typed));
        assert!(!e.contains("98765432123456789"), "{e}");
        let leaf = typed.split(' ').next().unwrap();
        assert!(e.contains(leaf), "names the key: {e}");
    }
    let e = err(&with(
        "token_env = \"SAAS_MSG_TOKEN\"",
        "token = 98765432123456789",
    ));
    assert_eq!(
        e,
        "platforms[0].token: must be a string (the value is not shown: this key holds a secret)"
    );
}

#[test]
fn debug_and_check_config_never_show_a_platform_secret() {
    let s = load(&mixed(), &[]).unwrap();
    let debug = format!("{s:?}");
    let text = s.redacted_toml();
    for secret in [COMPONENT_SECRET, MSG_TOKEN, AES_KEY, CRM_KEY] {
        assert!(!debug.contains(secret), "Debug shows {secret}");
        assert!(!text.contains(secret), "check-config shows {secret}");
    }
    assert!(text.contains(
        "[[platforms]]\nname = \"saas\"\ncomponent_appid = \"wx3c1f0a9d8e7b6a51\"\n\
         component_secret = \"env SAAS_SECRET (redacted)\"\n\
         token = \"env SAAS_MSG_TOKEN (redacted)\"\n\
         encoding_aes_key = \"env SAAS_AES_KEY (redacted)\"\n\
         authorizer_refresh = \"active\"\nactive_window_secs = 86400\n"
    ));
    // Each client shows the lists it has, and only those.
    assert!(text.contains(
        "[[clients]]\nname = \"crm\"\nkey = \"env CRM_KEY (redacted)\"\nplatforms = [\"saas\"]\nadmin = false"
    ), "{text}");
    assert!(text.contains(
        "[[clients]]\nname = \"billing\"\nkey = \"env BILLING_KEY (redacted)\"\napps = [\"shop\"]\nadmin = false"
    ), "{text}");
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(parsed["platforms"][0]["name"].as_str(), Some("saas"));

    // With the policy "all", no window is shown; inline secrets say so.
    let all = with(
        "encoding_aes_key_env = \"SAAS_AES_KEY\"",
        &format!("encoding_aes_key = \"{AES_KEY}\"\nauthorizer_refresh = \"all\""),
    );
    let s = load(&all, &[]).unwrap();
    let text = s.redacted_toml();
    assert!(
        text.contains("encoding_aes_key = \"inline (redacted)\"\nauthorizer_refresh = \"all\"\n")
    );
    assert!(!text.contains("active_window_secs") && !text.contains(AES_KEY));
    assert!(!format!("{:?}", s.platforms[0]).contains(AES_KEY));
}

#[test]
fn an_apps_only_config_renders_as_before() {
    let text = APP.replace(
        "[[apps]]",
        "[server]\nlisten = \"127.0.0.1:9000\"\n[[apps]]",
    );
    let s = load(&text, &[]).unwrap();
    assert!(s.platforms.is_empty());
    assert_eq!(s.clients[0].platforms, AppScope::Only(Default::default()));
    let rendered = s.redacted_toml();
    assert!(!rendered.contains("platform"), "{rendered}");
    assert!(rendered.ends_with(
        "[[clients]]\nname = \"billing\"\nkey = \"env BILLING_KEY (redacted)\"\napps = [\"shop\"]\nadmin = false\nproxy = false\n"
    ));
}

#[test]
fn same_as_tells_which_platforms_changed() {
    let base = load(&mixed(), &[]).unwrap();
    let again = load(&mixed(), &[]).unwrap();
    assert!(base.platforms[0].same_as(&again.platforms[0]));
    let changed = |overrides: &[(&str, &str)], text: &str| {
        let other = load(text, overrides).unwrap();
        !base.platforms[0].same_as(&other.platforms[0])
    };
    let m = mixed();
    // Every setting counts, each secret compared by value.
    assert!(changed(
        &[("WXTOKEN_PLATFORMS__0__COMPONENT_APPID", "wxnew")],
        &m
    ));
    assert!(changed(
        &[("WXTOKEN_PLATFORMS__0__ACTIVE_WINDOW_SECS", "600")],
        &m
    ));
    assert!(changed(
        &[("WXTOKEN_PLATFORMS__0__NAME", "saas2")],
        &m.replace("platforms = [\"saas\"]", "platforms = [\"*\"]")
    ));
    // Same value, another source: a change, as for apps.
    let inline_token = m.replace(
        "token_env = \"SAAS_MSG_TOKEN\"",
        &format!("token = \"{MSG_TOKEN}\""),
    );
    assert!(changed(&[], &inline_token));

    // Same source, another value: the files a reload re-reads, each secret in turn.
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let quoted = |name: &str| toml::Value::String(path(name).display().to_string()).to_string();
    let from_files = m
        .replace(
            "component_secret_env = \"SAAS_SECRET\"",
            &format!("component_secret_file = {}", quoted("secret")),
        )
        .replace(
            "token_env = \"SAAS_MSG_TOKEN\"",
            &format!("token_file = {}", quoted("token")),
        )
        .replace(
            "encoding_aes_key_env = \"SAAS_AES_KEY\"",
            &format!("encoding_aes_key_file = {}", quoted("aes")),
        );
    let write = |secret: &str, token: &str, aes: &str| {
        std::fs::write(path("secret"), secret).unwrap();
        std::fs::write(path("token"), token).unwrap();
        std::fs::write(path("aes"), aes).unwrap();
        load(&from_files, &[]).unwrap().platforms.remove(0)
    };
    let before = write(COMPONENT_SECRET, MSG_TOKEN, AES_KEY);
    assert!(before.same_as(&write(COMPONENT_SECRET, MSG_TOKEN, AES_KEY)));
    let other_aes = "B".repeat(43);
    for (what, after) in [
        ("secret", write("another-secret", MSG_TOKEN, AES_KEY)),
        ("token", write(COMPONENT_SECRET, "otherToken1", AES_KEY)),
        ("aes key", write(COMPONENT_SECRET, MSG_TOKEN, &other_aes)),
    ] {
        assert!(!before.same_as(&after), "a new {what} is a change");
        assert_eq!(
            format!("{before:?}"),
            format!("{after:?}"),
            "(which Debug cannot see)"
        );
    }
}
