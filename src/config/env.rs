//! Environment overrides: `WXTOKEN_A__B__C=value` written into the parsed TOML tree.

use super::raw::is_secret_leaf;
use super::{ConfigError, ENV_PREFIX};

/// Writes `WXTOKEN_A__B=value` into `tree` at `a.b`. Variables without `__` (such as
/// `WXTOKEN_CONFIG` or `WXTOKEN_LOG`) are not configuration keys and are skipped. A numeric
/// segment indexes an array (`WXTOKEN_APPS__0__APPID`).
pub(super) fn apply_env_overrides(
    tree: &mut toml::Table,
    overrides: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut sorted: Vec<&(String, String)> = overrides
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k[ENV_PREFIX.len()..].contains("__"))
        .collect();
    // Deterministic order, so that a later variable cannot win by accident of hashing.
    sorted.sort();
    for (name, value) in sorted {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::at(name, "malformed override variable name"));
        }
        set_path(tree, &path, value).map_err(|msg| ConfigError::at(name, msg))?;
    }
    Ok(())
}

fn set_path(table: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (head, rest) = path.split_first().expect("path is never empty");
    if rest.is_empty() {
        // A secret stays a string whatever it looks like: typed as a number, serde's error
        // would have to mention it.
        let value = if is_secret_leaf(head) {
            toml::Value::String(raw.to_string())
        } else {
            typed_value(table.get(head), raw)
        };
        table.insert(head.clone(), value);
        return Ok(());
    }
    let entry = table
        .entry(head.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    set_in_value(entry, rest, raw)
}

fn set_in_value(value: &mut toml::Value, path: &[String], raw: &str) -> Result<(), String> {
    match value {
        toml::Value::Table(t) => set_path(t, path, raw),
        toml::Value::Array(items) => {
            let (head, rest) = path.split_first().expect("path is never empty");
            let idx: usize = head
                .parse()
                .map_err(|_| format!("`{head}` is not an array index"))?;
            let len = items.len();
            let item = items
                .get_mut(idx)
                .ok_or_else(|| format!("index {idx} is past the {len} entries"))?;
            if rest.is_empty() {
                *item = typed_value(Some(item), raw);
                Ok(())
            } else {
                set_in_value(item, rest, raw)
            }
        }
        _ => Err("cannot override inside a plain value".into()),
    }
}

/// Parses an override in the type of the value it replaces, so `WXTOKEN_APPS__0__APPID=123`
/// stays a string while `WXTOKEN_UPSTREAM__TIMEOUT_SECS=5` becomes a number.
fn typed_value(existing: Option<&toml::Value>, raw: &str) -> toml::Value {
    let parsed = || {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match existing {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(toml::Value::Integer(_)) | Some(toml::Value::Boolean(_)) => {
            parsed().unwrap_or_else(|| toml::Value::String(raw.to_string()))
        }
        _ => match parsed() {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Array(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
    }
}
