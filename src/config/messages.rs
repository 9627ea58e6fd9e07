//! An app's message push settings (`[[apps]] message_token_env|_file`,
//! `encoding_aes_key_env|_file`, `message_format`): the keys WeChat's pushes to
//! `/v1/apps/{name}/messages` are checked with.

use secrecy::SecretString;
use serde::Serialize;

use super::platforms::{check_encoding_aes_key, check_message_token};
use super::raw::RawApp;
use super::secrets::{resolve_secret, SecretInput};
use super::{ConfigError, SecretSource};

/// How an app's pushes are written: XML (every Official Account; a Mini Program's default),
/// or JSON (a Mini Program may choose it in its console).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    Xml,
    Json,
}

impl MessageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageFormat::Xml => "xml",
            MessageFormat::Json => "json",
        }
    }
}

/// The message-check keys of one app. `Debug` shows where they came from, never their values.
#[derive(Clone)]
pub struct AppMessages {
    /// The Token of the app's server settings (3 to 32 letters and digits).
    pub token: SecretString,
    pub token_source: SecretSource,
    /// The EncodingAESKey, for compatible and safe mode; without it only plaintext pushes are
    /// taken.
    pub encoding_aes_key: Option<SecretString>,
    pub encoding_aes_key_source: Option<SecretSource>,
    pub format: MessageFormat,
}

impl std::fmt::Debug for AppMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppMessages")
            .field("token", &self.token_source)
            .field("encoding_aes_key", &self.encoding_aes_key_source)
            .field("format", &self.format)
            .finish()
    }
}

impl AppMessages {
    /// Whether both are the same keys and format (compared here, never printed).
    pub fn same_as(&self, other: &AppMessages) -> bool {
        use secrecy::ExposeSecret as _;
        let key = |m: &AppMessages| {
            m.encoding_aes_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned())
        };
        self.token.expose_secret() == other.token.expose_secret()
            && key(self) == key(other)
            && self.format == other.format
    }
}

/// The message settings of app `key` (`apps[N]`), if it has a message token. An EncodingAESKey
/// or a format without a token is refused: pushes cannot be checked without it.
pub(super) fn app_messages(
    key: &str,
    a: &mut RawApp,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<AppMessages>, ConfigError> {
    let has_token = a.message_token.is_some()
        || a.message_token_env.is_some()
        || a.message_token_file.is_some();
    let has_key = a.encoding_aes_key.is_some()
        || a.encoding_aes_key_env.is_some()
        || a.encoding_aes_key_file.is_some();
    if !has_token {
        if has_key || a.message_format.is_some() {
            return Err(ConfigError::at(
                format!("{key}.message_token"),
                "missing: set message_token_env or message_token_file (pushes are checked with it)",
            ));
        }
        return Ok(None);
    }
    let (token, token_source) = resolve_secret(
        &format!("{key}.message_token"),
        SecretInput {
            inline: a.message_token.take(),
            env: a.message_token_env.take(),
            file: a.message_token_file.take(),
        },
        &[],
        lookup_env,
    )?;
    check_message_token(&token).map_err(|m| ConfigError::at(format!("{key}.message_token"), m))?;
    let (encoding_aes_key, encoding_aes_key_source) = if has_key {
        let (aes, source) = resolve_secret(
            &format!("{key}.encoding_aes_key"),
            SecretInput {
                inline: a.encoding_aes_key.take(),
                env: a.encoding_aes_key_env.take(),
                file: a.encoding_aes_key_file.take(),
            },
            &[],
            lookup_env,
        )?;
        check_encoding_aes_key(&aes)
            .map_err(|m| ConfigError::at(format!("{key}.encoding_aes_key"), m))?;
        (Some(SecretString::from(aes)), Some(source))
    } else {
        (None, None)
    };
    let format = match a.message_format.as_deref().unwrap_or("xml") {
        "xml" => MessageFormat::Xml,
        "json" => MessageFormat::Json,
        other => {
            return Err(ConfigError::at(
                format!("{key}.message_format"),
                format!(
                    "unknown format `{}`; expected \"xml\" or \"json\"",
                    other.escape_debug()
                ),
            ))
        }
    };
    Ok(Some(AppMessages {
        token: SecretString::from(token),
        token_source,
        encoding_aes_key,
        encoding_aes_key_source,
        format,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{load_with, server_tables};
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    /// `shop` with `lines` added to its table, and a client reading it.
    fn load(lines: &str) -> Result<super::super::Settings, ConfigError> {
        let text = format!(
            "{}[[apps]]\nname = \"shop\"\nappid = \"wx0123456789abcdef\"\nsecret = \"s\"\n{lines}\n\
             [[clients]]\nname = \"billing\"\nkey = \"billing-key-0123456789\"\napps = [\"shop\"]\n",
            server_tables!(),
        );
        let env = |name: &str| match name {
            "MSG_TOKEN" => Some("envToken77".to_owned()),
            "MSG_AES" => Some(KEY.to_owned()),
            _ => None,
        };
        load_with(&text, &[], &env)
    }

    #[test]
    fn an_app_without_a_message_token_takes_no_pushes() {
        assert!(load("").unwrap().apps[0].messages.is_none());
    }

    #[test]
    fn the_token_key_and_format_are_read_from_their_sources() {
        let s = load("message_token_env = \"MSG_TOKEN\"\nencoding_aes_key_env = \"MSG_AES\"\nmessage_format = \"json\"").unwrap();
        let m = s.apps[0].messages.as_ref().unwrap();
        assert_eq!(m.token_source, SecretSource::Env("MSG_TOKEN".into()));
        assert_eq!(m.format, MessageFormat::Json);
        assert!(m.encoding_aes_key.is_some());
        // Debug shows the sources only.
        let debug = format!("{m:?}");
        assert!(
            !debug.contains("envToken77") && !debug.contains(KEY),
            "{debug}"
        );
    }

    #[test]
    fn bad_message_settings_are_refused_by_key_without_the_value() {
        for (lines, key, value) in [
            ("message_token = \"ab\"", "apps[0].message_token", "ab"),
            (
                "message_token = \"has space1\"",
                "apps[0].message_token",
                "has space1",
            ),
            (
                "message_token = \"okToken1\"\nencoding_aes_key = \"short\"",
                "apps[0].encoding_aes_key",
                "short",
            ),
            (
                "encoding_aes_key_env = \"MSG_AES\"",
                "apps[0].message_token",
                "MSG_AES",
            ),
            ("message_format = \"yaml\"", "apps[0].message_token", "yaml"),
            (
                "message_token = \"okToken1\"\nmessage_format = \"yaml\"",
                "apps[0].message_format",
                "\"yaml\"\"",
            ),
            (
                "message_token = \"okToken1\"\nmessage_token_env = \"MSG_TOKEN\"",
                "apps[0].message_token",
                "okToken1",
            ),
        ] {
            let e = load(lines).unwrap_err().to_string();
            assert!(e.contains(key), "{lines}: {e}");
            assert!(!e.contains(value), "{lines}: the value shown: {e}");
        }
    }
}
