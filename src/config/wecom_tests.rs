//! Unit tests of `[[wecom_suites]]`, `[[wecom_providers]]` and clients' `wecom_suites` /
//! `wecom_providers`: the accepted forms, the refusals with their messages, redaction and
//! the reload comparison.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::test_support::{
    env, first_table, load_with, server_tables, AES_KEY, PROVIDER_SECRET, SUITE_SECRET, SUITE_TOKEN,
};
use super::*;

/// One suite with its provider, no apps, and a client of both.
const WECOM_ONLY: &str = concat!(server_tables!(), include_str!("testdata/wecom_only.toml"));

fn load(text: &str) -> Result<Settings, ConfigError> {
    load_with(text, &[], &env)
}

fn err(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

/// `WECOM_ONLY` with one line replaced.
fn with(old: &str, new: &str) -> String {
    assert!(WECOM_ONLY.contains(old), "{old}");
    WECOM_ONLY.replacen(old, new, 1)
}

#[test]
fn a_suite_and_its_provider_are_a_whole_configuration() {
    let s = load(WECOM_ONLY).unwrap();
    let suite = &s.wecom_suites[0];
    assert_eq!(suite.name, "crm-suite");
    assert_eq!(suite.kind, SuiteKind::Suite);
    assert_eq!(suite.suite_id, "ww4d5e6f7a8b9c0d1e");
    assert_eq!(suite.suite_secret.expose_secret(), SUITE_SECRET);
    assert_eq!(suite.provider_corpid.as_deref(), Some("ww0a1b2c3d4e5f6a7b"));
    assert_eq!(
        suite.corp_refresh,
        AuthorizerRefresh::Active {
            window: Duration::from_secs(DEFAULT_ACTIVE_WINDOW_SECS)
        }
    );
    assert_eq!(s.wecom_providers[0].corpid, "ww0a1b2c3d4e5f6a7b");
    let client = &s.clients[0];
    assert!(client.may_use_wecom_suite("crm-suite"));
    assert!(client.may_use_wecom_provider("vendor"));
    assert!(!client.may_use_wecom_suite("other"));
    assert!(!client.may_use_platform("crm-suite"));
    assert_eq!(s.credential_count(), 2);
}

#[test]
fn a_template_without_a_provider_and_with_every_corp_refreshed_is_accepted() {
    let text = with(r#"kind = "suite""#, r#"kind = "template""#)
        .replacen("provider = \"vendor\"\n", "", 1)
        .replacen(r#"corp_refresh = "active""#, r#"corp_refresh = "all""#, 1);
    let s = load(&text).unwrap();
    assert_eq!(s.wecom_suites[0].kind, SuiteKind::Template);
    assert_eq!(s.wecom_suites[0].provider_corpid, None);
    assert_eq!(s.wecom_suites[0].corp_refresh, AuthorizerRefresh::All);
}

#[test]
fn refusals_name_the_key_and_never_the_secret() {
    let cases = [
        (
            with(r#"kind = "suite""#, r#"kind = "app""#),
            "wecom_suites[0].kind",
        ),
        (
            with(r#"provider = "vendor""#, r#"provider = "nobody""#),
            "wecom_suites[0].provider",
        ),
        (
            with(r#"suite_id = "ww4d5e6f7a8b9c0d1e""#, r#"suite_id = " ""#),
            "wecom_suites[0].suite_id",
        ),
        (
            with(r#"corp_refresh = "active""#, r#"corp_refresh = "some""#),
            "wecom_suites[0].corp_refresh",
        ),
        (
            with(
                r#"corp_refresh = "active""#,
                "corp_refresh = \"all\"\nactive_window_secs = 600",
            ),
            "wecom_suites[0].active_window_secs",
        ),
        (
            with(
                r#"encoding_aes_key_env = "CRM_SUITE_AES""#,
                r#"encoding_aes_key = "short""#,
            ),
            "wecom_suites[0].encoding_aes_key",
        ),
        (
            with(r#"corpid = "ww0a1b2c3d4e5f6a7b""#, r#"corpid = "a b""#),
            "wecom_providers[0].corpid",
        ),
        (
            with(r#"wecom_suites = ["crm-suite"]"#, r#"wecom_suites = ["x"]"#),
            "clients[0].wecom_suites[0]",
        ),
        (
            with(r#"wecom_providers = ["vendor"]"#, r#"wecom_providers = []"#),
            "clients[0].wecom_providers",
        ),
    ];
    for (text, key) in cases {
        let e = err(&text);
        assert!(e.contains(key), "{key}: {e}");
        assert!(!e.contains(SUITE_SECRET) && !e.contains(AES_KEY), "{e}");
    }
}

#[test]
fn two_suites_with_one_id_are_refused() {
    // The suite's table again under another name: the same suite_id.
    let second = first_table(WECOM_ONLY, "[[wecom_suites]]")
        .replace("name = \"crm-suite\"", "name = \"crm-two\"");
    let text = WECOM_ONLY.replacen(
        "[[wecom_providers]]",
        &format!("{second}[[wecom_providers]]"),
        1,
    );
    let e = err(&text);
    assert!(e.contains("wecom_suites[1].suite_id"), "{e}");
    assert!(e.contains("crm-suite"), "{e}");
}

#[test]
fn a_platform_named_like_a_suites_records_is_refused() {
    let platform = first_table(include_str!("testdata/platform_only.toml"), "[[platforms]]")
        .replace("name = \"saas\"", "name = \"wecom.crm-suite\"");
    let text = WECOM_ONLY.replacen(
        "[[wecom_suites]]",
        &format!("{platform}[[wecom_suites]]"),
        1,
    );
    let e = err(&text);
    assert!(e.contains("wecom_suites[0].name"), "{e}");
}

#[test]
fn check_config_shows_sources_never_secrets() {
    let s = load(WECOM_ONLY).unwrap();
    let shown = s.redacted_toml();
    assert!(shown.contains("[[wecom_suites]]"), "{shown}");
    assert!(shown.contains("[[wecom_providers]]"), "{shown}");
    assert!(shown.contains("env CRM_SUITE_SECRET (redacted)"), "{shown}");
    assert!(shown.contains("wecom_suites = [\"crm-suite\"]"), "{shown}");
    for secret in [SUITE_SECRET, PROVIDER_SECRET, AES_KEY, SUITE_TOKEN] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let debug = format!("{:?}", s.wecom_suites[0]);
    assert!(!debug.contains(SUITE_SECRET) && !debug.contains(AES_KEY));
    assert!(!format!("{:?}", s.wecom_providers[0]).contains(PROVIDER_SECRET));
}

#[test]
fn a_suite_compares_equal_only_with_the_same_settings_and_secrets() {
    let a = load(WECOM_ONLY).unwrap();
    let b = load(WECOM_ONLY).unwrap();
    assert!(same_suites(&a.wecom_suites, &b.wecom_suites));
    assert!(same_providers(&a.wecom_providers, &b.wecom_providers));
    let other = load_with(WECOM_ONLY, &[], &|n| match n {
        "CRM_SUITE_SECRET" => Some("another-secret-0002".into()),
        n => env(n),
    })
    .unwrap();
    assert!(!same_suites(&a.wecom_suites, &other.wecom_suites));
}
