//! What the configuration's unit tests share: the tables every test configuration starts
//! from, the environment their `_env` keys are read from, and loading a text with overrides
//! and an environment.

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

/// The first table of `text` whose header is `header` (`[[wecom_suites]]`), up to the next
/// header: one table of a fixture, to add again under another name.
pub fn first_table<'a>(text: &'a str, header: &str) -> &'a str {
    let start = text.find(header).expect("the fixture has the table");
    let body = start + header.len();
    let end = text[body..]
        .find("\n[")
        .map_or(text.len(), |i| body + i + 1);
    &text[start..end]
}

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

/// The values of the variables in [`env`] that tests look for (in answers, in errors they must
/// stay out of).
pub const SHOP_SECRET: &str = "s3cr3t-value";
pub const BILLING_KEY: &str = "billing-key-0123456789";
pub const CRM_KEY: &str = "crm-client-key-000000001";
pub const COMPONENT_SECRET: &str = "component-secret-value-0001";
pub const MSG_TOKEN: &str = "msgToken0042";
/// WeChat's published sample EncodingAESKey. Its last character carries non-zero unused bits,
/// which a strict base64 decoder refuses.
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const SUITE_SECRET: &str = "suite-secret-value-0001";
pub const SUITE_TOKEN: &str = "suiteToken42";
pub const PROVIDER_SECRET: &str = "provider-secret-value-0001";

/// The one environment of the configuration's unit tests: every variable their texts name,
/// each holding a value of the form its key wants, and `EMPTY`, which holds only blanks.
pub fn env(name: &str) -> Option<String> {
    let value = match name {
        "SHOP_SECRET" => SHOP_SECRET,
        "BILLING_KEY" => BILLING_KEY,
        "CRM_KEY" => CRM_KEY,
        "SAAS_SECRET" => COMPONENT_SECRET,
        "SAAS_MSG_TOKEN" => MSG_TOKEN,
        "SAAS_AES_KEY" | "CRM_SUITE_AES" => AES_KEY,
        "CRM_SUITE_SECRET" => SUITE_SECRET,
        "CRM_SUITE_TOKEN" => SUITE_TOKEN,
        "VENDOR_SECRET" => PROVIDER_SECRET,
        "EMPTY" => "  ",
        _ => return None,
    };
    Some(value.to_string())
}
