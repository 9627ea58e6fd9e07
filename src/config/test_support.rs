//! What the configuration's unit tests share: the tables every test configuration starts
//! from, and loading a text with overrides and an environment of the test's own.

use super::{ConfigError, Settings};

/// `[server]` and `[upstream]`, as every test configuration starts.
macro_rules! server_tables {
    () => {
        r#"
[server]
listen = "127.0.0.1:9000"
[upstream]
base_url = "http://127.0.0.1:1/"
"#
    };
}
pub(super) use server_tables;

/// `shop` and `billing`, which reads it: the app and client most test configurations have.
/// Without arguments the secret comes from `SHOP_SECRET` and the key from `BILLING_KEY`; or
/// give the secret's line and the key's line.
macro_rules! shop_and_billing {
    () => {
        shop_and_billing!(
            r#"secret_env = "SHOP_SECRET""#,
            r#"key_env = "BILLING_KEY""#
        )
    };
    ($secret:literal, $key:literal) => {
        concat!(
            r#"[[apps]]
name = "shop"
appid = "wx0123456789abcdef"
"#,
            $secret,
            r#"
[[clients]]
name = "billing"
"#,
            $key,
            r#"
apps = ["shop"]
"#
        )
    };
}
pub(super) use shop_and_billing;

/// Loads `text` with `overrides` (`WXTOKEN_...` names and values) and `env` as the
/// environment.
pub fn load_with(
    text: &str,
    overrides: &[(&str, &str)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let o: Vec<(String, String)> = overrides
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Settings::from_toml(text, &o, env)
}
