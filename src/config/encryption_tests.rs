//! Unit tests of `[store]`'s encryption keys: sources, refusals, and the redacted view.

use super::*;
use crate::seal::StoreKey;

const APPS: &str = r#"
[[apps]]
name = "shop"
appid = "wx0123456789abcdef"
secret = "s3cr3t-value"
[[clients]]
name = "billing"
key = "billing-key-0123456789"
apps = ["shop"]
"#;

/// Two fixed keys (32 bytes of 1s and of 2s), as `keygen` would print them.
const KEY1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn id(text: &str) -> String {
    StoreKey::from_base64(text).unwrap().id().to_string()
}

fn load(store: &str) -> Result<Settings, ConfigError> {
    let env = |name: &str| match name {
        "STORE_KEY" => Some(KEY1.to_string()),
        "OLD_KEYS" => Some(format!("{KEY2}, {KEY1}")),
        "SHORT_KEY" => Some("c2hvcnQ=".to_string()),
        _ => None,
    };
    Settings::from_toml(&format!("[store]\n{store}\n{APPS}"), &[], &env)
}

#[test]
fn keys_come_from_a_variable_or_files_and_only_their_ids_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.key");
    std::fs::write(&file, format!("{KEY2}\n")).unwrap();
    let s = load(&format!(
        "encryption_key_env = \"STORE_KEY\"\nprevious_key_files = [{:?}]\nrequire_encryption = true",
        file.display().to_string()
    ))
    .unwrap();
    assert_eq!(
        s.encryption.keyring.current_id().unwrap().to_string(),
        id(KEY1)
    );
    let view = s.redacted_toml();
    assert!(
        view.contains(&format!(
            "encryption_key = \"key id {}, env STORE_KEY (redacted)\"",
            id(KEY1)
        )),
        "{view}"
    );
    assert!(
        view.contains(&format!("key id {}, file", id(KEY2))),
        "{view}"
    );
    assert!(view.contains("require_encryption = true"), "{view}");
    for key in [KEY1, KEY2] {
        assert!(!view.contains(key), "{view}");
        assert!(!format!("{s:?}").contains(key));
    }
    // Previous keys from one variable, comma-separated.
    let s = load("encryption_key_env = \"STORE_KEY\"\nprevious_keys_env = \"OLD_KEYS\"").unwrap();
    assert_eq!(s.encryption.previous.len(), 2);
    // No key: nothing shown, nothing sealed.
    let s = load("kind = \"embedded\"").unwrap();
    assert!(!s.encryption.keyring.encrypts());
    assert!(!s.redacted_toml().contains("encryption"));
}

#[test]
fn bad_key_settings_are_refused_naming_the_key_never_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not base64 !!").unwrap();
    let cases = [
        (
            "encryption_key_env = \"MISSING\"",
            "store.encryption_key_env",
            "not set",
        ),
        (
            "encryption_key_env = \"SHORT_KEY\"",
            "store.encryption_key_env",
            "5 bytes",
        ),
        (
            &format!("encryption_key_file = {:?}", garbage.display().to_string()),
            "store.encryption_key_file",
            "not base64",
        ),
        (
            "encryption_key_env = \"STORE_KEY\"\nencryption_key_file = \"/k\"",
            "store.encryption_key_env",
            "only one",
        ),
        (
            "require_encryption = true",
            "store.require_encryption",
            "needs a key",
        ),
        (
            "previous_keys_env = \"OLD_KEYS\"\nprevious_key_files = []",
            "store.previous_keys_env",
            "only one",
        ),
        (
            &format!(
                "previous_key_files = [{:?}]",
                dir.path().join("none").display().to_string()
            ),
            "store.previous_key_files[0]",
            "",
        ),
    ];
    for (store, key, why) in cases {
        let err = load(store).expect_err(store).to_string();
        assert!(err.starts_with(key), "{store}: {err}");
        assert!(err.contains(why), "{store}: {err}");
        assert!(!err.contains(KEY1) && !err.contains("c2hvcnQ"), "{err}");
    }
}

#[test]
fn a_new_key_is_a_change_that_needs_a_restart() {
    let a = load("encryption_key_env = \"STORE_KEY\"").unwrap();
    let b = load("encryption_key_env = \"STORE_KEY\"").unwrap();
    let c = load("kind = \"embedded\"").unwrap();
    assert_eq!(a.encryption, b.encryption);
    assert_ne!(a.encryption, c.encryption);
}
