//! Validation of the encryption keys of `[store]` (both kinds): the current key, the previous
//! ones kept for reading, and whether plaintext records are still accepted.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::raw::RawStore;
use super::secrets::read_secret_file;
use super::{ConfigError, SecretSource};
use crate::seal::{KeyId, Keyring, StoreKey};

/// At most this many previous keys: each is tried only by the id a record names, so more cost
/// nothing at run time, but a longer list is a rotation that was never finished.
const MAX_PREVIOUS_KEYS: usize = 16;

/// The keys the stores seal and open secret fields with, and where each came from (what
/// `check-config` shows instead of the key). `Debug` shows key ids only.
#[derive(Clone)]
pub struct EncryptionSettings {
    pub keyring: Arc<Keyring>,
    /// The key every write is sealed with, if encryption is on.
    pub current: Option<(KeyId, SecretSource)>,
    /// Keys that only open records written before a rotation.
    pub previous: Vec<(KeyId, SecretSource)>,
    /// Plaintext records are refused.
    pub require: bool,
}

impl EncryptionSettings {
    /// No key: records are written in plaintext, as before encryption existed.
    pub fn plaintext() -> EncryptionSettings {
        EncryptionSettings {
            keyring: Arc::new(Keyring::plaintext()),
            current: None,
            previous: Vec::new(),
            require: false,
        }
    }
}

/// By key ids and the requirement: what a reload must compare (a key's id is its SHA-256, so
/// a different key has a different id; where it came from does not matter).
impl PartialEq for EncryptionSettings {
    fn eq(&self, other: &Self) -> bool {
        let ids = |s: &EncryptionSettings| {
            (
                s.current.as_ref().map(|(id, _)| *id),
                s.previous.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                s.require,
            )
        };
        ids(self) == ids(other)
    }
}

impl fmt::Debug for EncryptionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionSettings")
            .field("current", &self.current.as_ref().map(|(id, _)| id))
            .field(
                "previous",
                &self.previous.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("require", &self.require)
            .finish()
    }
}

/// `store.encryption_key_env|_file`, `store.previous_keys_env|previous_key_files` and
/// `store.require_encryption`. Errors name the key and the variable or file, never the key.
pub(super) fn validate_encryption(
    st: &RawStore,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<EncryptionSettings, ConfigError> {
    let current = match (&st.encryption_key_env, &st.encryption_key_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::at(
                "store.encryption_key_env",
                "set only one of store.encryption_key_env, store.encryption_key_file",
            ))
        }
        (Some(var), None) => {
            let text = env_value("store.encryption_key_env", var, lookup_env)?;
            Some((
                parse_key("store.encryption_key_env", &text)?,
                SecretSource::Env(var.clone()),
            ))
        }
        (None, Some(path)) => Some(key_file("store.encryption_key_file", path.clone())?),
        (None, None) => None,
    };
    let previous = match (&st.previous_keys_env, &st.previous_key_files) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::at(
                "store.previous_keys_env",
                "set only one of store.previous_keys_env, store.previous_key_files",
            ))
        }
        (Some(var), None) => {
            let text = env_value("store.previous_keys_env", var, lookup_env)?;
            let mut keys = Vec::new();
            for (i, part) in text.split(',').map(str::trim).enumerate() {
                let at = format!("store.previous_keys_env (key {} of {var})", i + 1);
                if part.is_empty() {
                    return Err(ConfigError::at(at, "is empty (a stray comma?)"));
                }
                keys.push((parse_key(&at, part)?, SecretSource::Env(var.clone())));
            }
            keys
        }
        (None, Some(paths)) => paths
            .iter()
            .enumerate()
            .map(|(i, p)| key_file(&format!("store.previous_key_files[{i}]"), p.clone()))
            .collect::<Result<_, _>>()?,
        (None, None) => Vec::new(),
    };
    if previous.len() > MAX_PREVIOUS_KEYS {
        return Err(ConfigError::at(
            "store.previous_keys",
            format!(
                "{} keys; at most {MAX_PREVIOUS_KEYS} (run `wxtoken rekey` and drop the old ones)",
                previous.len()
            ),
        ));
    }
    let require = st.require_encryption.unwrap_or(false);
    if require && current.is_none() {
        return Err(ConfigError::at(
            "store.require_encryption",
            "needs a key: set store.encryption_key_env or store.encryption_key_file (`wxtoken keygen` prints one)",
        ));
    }
    let ids = |keys: &[(StoreKey, SecretSource)]| {
        keys.iter()
            .map(|(k, s)| (k.id(), s.clone()))
            .collect::<Vec<_>>()
    };
    let shown_current = current.as_ref().map(|(k, s)| (k.id(), s.clone()));
    let shown_previous = ids(&previous);
    let keyring = Keyring::new(
        current.map(|(k, _)| k),
        previous.into_iter().map(|(k, _)| k).collect(),
        require,
    );
    Ok(EncryptionSettings {
        keyring: Arc::new(keyring),
        current: shown_current,
        previous: shown_previous,
        require,
    })
}

fn env_value(
    key: &str,
    var: &str,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    match lookup_env(var) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(ConfigError::at(
            key,
            format!("environment variable {var} is empty"),
        )),
        None => Err(ConfigError::at(
            key,
            format!("environment variable {var} is not set"),
        )),
    }
}

fn key_file(key: &str, path: PathBuf) -> Result<(StoreKey, SecretSource), ConfigError> {
    let (text, source) = read_secret_file(key, path)?;
    let shown = match &source {
        SecretSource::File(p) => p.display().to_string(),
        _ => String::new(),
    };
    let parsed = StoreKey::from_base64(&text)
        .map_err(|e| ConfigError::at(key, format!("the key in {shown} {e}")))?;
    Ok((parsed, source))
}

fn parse_key(key: &str, text: &str) -> Result<StoreKey, ConfigError> {
    StoreKey::from_base64(text).map_err(|e| ConfigError::at(key, format!("the key {e}")))
}
