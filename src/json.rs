//! JSON documents that must be objects: request bodies and WeChat's answers alike.

use serde::de::DeserializeOwned;

/// Parses a JSON body that must be an object into `T`; `None` for anything else.
///
/// serde's derived struct deserialisation also accepts a JSON array, field by field in order, so
/// `["tok"]` would read as `{"access_token": "tok"}`. No client means that, and accepting it
/// would make the array form part of the API, so only an object is let through to serde.
pub fn json_object<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    // JSON's own whitespace (RFC 8259): what may precede the value.
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(body).ok()
}
