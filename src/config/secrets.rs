//! Secret sources: inline, an environment variable, or a file; resolved to the value and where
//! it came from. Files are read bounded and without blocking (see [`crate::files`]).

use std::fmt;
use std::path::PathBuf;

use super::ConfigError;

/// Longest secret file read: an AppSecret is 32 characters, a client key a few dozen; a larger
/// file is the wrong file (or `/dev/zero`), refused rather than truncated.
pub(super) const MAX_SECRET_FILE: u64 = 4096;

/// Where a secret came from; printed by `check-config` instead of the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline,
    Env(String),
    File(PathBuf),
    Sha256,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline => f.write_str("inline (redacted)"),
            SecretSource::Env(v) => write!(f, "env {v} (redacted)"),
            SecretSource::File(p) => write!(f, "file {} (redacted)", p.display()),
            SecretSource::Sha256 => f.write_str("sha-256 digest (redacted)"),
        }
    }
}

/// The ways one secret may be given; exactly one must be set.
pub(super) struct SecretInput {
    pub(super) inline: Option<String>,
    pub(super) env: Option<String>,
    pub(super) file: Option<PathBuf>,
}

/// Resolves the secret at `key` (`apps[0].secret`, `clients[1].key`): its siblings are
/// `{key}_env` and `{key}_file`. `also` names further exclusive alternatives for the messages
/// (`key_sha256` for clients). Returns the value and where it came from.
pub(super) fn resolve_secret(
    key: &str,
    input: SecretInput,
    also: &[&str],
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, SecretSource), ConfigError> {
    let mut choices = vec![key.to_string(), format!("{key}_env"), format!("{key}_file")];
    choices.extend(also.iter().map(|a| a.to_string()));
    let choices = choices.join(", ");
    match (input.inline, input.env, input.file) {
        (Some(v), None, None) => {
            tracing::warn!(
                key,
                "secret written inline in the config file; prefer {key}_env or {key}_file"
            );
            Ok((v, SecretSource::Inline))
        }
        (None, Some(var), None) => match lookup_env(&var) {
            Some(v) if !v.trim().is_empty() => Ok((v.trim().to_string(), SecretSource::Env(var))),
            Some(_) => Err(ConfigError::at(
                format!("{key}_env"),
                format!("environment variable {var} is empty"),
            )),
            None => Err(ConfigError::at(
                format!("{key}_env"),
                format!("environment variable {var} is not set"),
            )),
        },
        (None, None, Some(path)) => read_secret_file(&format!("{key}_file"), path),
        (None, None, None) => Err(ConfigError::at(
            key,
            format!("missing: set one of {choices}"),
        )),
        _ => Err(ConfigError::at(key, format!("set only one of {choices}"))),
    }
}

/// Reads a secret from the file `path`, named by the key `file_key` (`apps[0].secret_file`,
/// `store.url_file`): a regular file of at most [`MAX_SECRET_FILE`] bytes, trimmed, not empty.
/// Errors name the key and the path, never the content.
pub(super) fn read_secret_file(
    file_key: &str,
    path: PathBuf,
) -> Result<(String, SecretSource), ConfigError> {
    let v = crate::files::read_bounded_text(&path, MAX_SECRET_FILE)
        .map_err(|e| ConfigError::at(file_key, e))?;
    let v = v.trim();
    if v.is_empty() {
        return Err(ConfigError::at(
            file_key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok((v.to_string(), SecretSource::File(path)))
}
