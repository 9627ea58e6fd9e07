//! `wxtoken keygen`: a new random store encryption key and its key id, for
//! `store.encryption_key_file` (or `_env`). The key is printed once and kept nowhere.

use std::io::Write;

use crate::seal::StoreKey;

/// Writes a new key as two lines, `key: <base64 of 32 random bytes>` and `id: <8 hex digits>`:
/// the id is what records, logs and `check-config` call the key by.
pub fn write_store_key(out: &mut impl Write) -> std::io::Result<()> {
    let (key, id) = StoreKey::generate();
    writeln!(out, "key: {}", key.as_str())?;
    writeln!(out, "id: {id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_key_parses_back_to_the_printed_id() {
        let mut out = Vec::new();
        write_store_key(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let key = text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap();
        let id = text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
        assert_eq!(StoreKey::from_base64(key).unwrap().id().to_string(), id);
    }
}
