//! What never leaves wxtoken in a forwarded answer: authorized accounts' refresh tokens (the
//! component calls that carry them by design, and any answer to a component call that repeats
//! one), WeCom corps' permanent codes in the answers of service-provider calls, and the
//! AppSecret of a login call an upstream echoes back.
//!
//! Refresh tokens are found two ways. By key: a field whose name, without regard to case,
//! spacing or separators, ends in `refresh_token` (at any depth, also inside a JSON document
//! carried as a string). By value: every refresh token wxtoken holds, wherever it stands in a
//! string, under any key, found by looking the answer's words up among the stored accounts.

use std::collections::HashSet;

use serde_json::Value;

/// The largest answer read for masking: a full page of `api_get_authorizer_list` (500
/// accounts) is about 100 KiB, and parsing takes several times an answer's size in memory.
pub const ANSWER_LIMIT: usize = 1 << 20;

/// The largest answer of a login call read for scrubbing: those answers are a few hundred
/// bytes (an openid, a session key, an OAuth token).
pub const LOGIN_ANSWER_LIMIT: usize = 64 * 1024;

/// Shortest word looked up as a possible refresh token: WeChat's are dozens of characters, and
/// shorter words (field names, numbers) are not worth the look-up.
const MIN_TOKEN_LEN: usize = 16;

/// Nested JSON documents inside strings are opened this deep, no deeper: a hostile answer
/// cannot make the walk recurse without end.
const MAX_NESTING: usize = 8;

/// The refresh tokens wxtoken holds, looked up by value.
pub trait KnownRefreshTokens: Send + Sync {
    /// Of `words`, those that are refresh tokens of stored accounts.
    fn known_among(&self, words: &HashSet<&str>) -> Vec<String>;
}

/// No account known: masking by key only.
pub struct NoneKnown;

impl KnownRefreshTokens for NoneKnown {
    fn known_among(&self, _: &HashSet<&str>) -> Vec<String> {
        Vec::new()
    }
}

/// Why an answer is not sent on.
#[derive(Debug, PartialEq, Eq)]
pub enum Unchecked {
    /// It had to be a JSON object (the calls that carry refresh tokens by design).
    NotJson,
}

/// `answer` with every refresh token replaced by `placeholder`: by key at any depth, and by
/// value wherever a known one stands. An answer that is not JSON is refused when `json_only`,
/// and otherwise sent on with known refresh tokens replaced in its bytes. `None`: nothing to
/// change, send it as it is.
pub fn without_refresh_tokens(
    answer: &[u8],
    placeholder: &str,
    known: &dyn KnownRefreshTokens,
    json_only: bool,
) -> Result<Option<Vec<u8>>, Unchecked> {
    without_held(answer, REFRESH_TOKEN_KEY, placeholder, known, json_only)
}

/// The field names of refresh tokens end in this, once spelled without case or separators.
const REFRESH_TOKEN_KEY: &str = "refreshtoken";
/// The field names of WeCom's permanent codes (`permanent_code`, `permanentCode`), likewise.
const PERMANENT_CODE_KEY: &str = "permanentcode";

/// `answer` with every permanent code replaced by `placeholder`, found by key as refresh
/// tokens are (the codes wxtoken holds are not looked up by value). `None`: nothing to change.
pub fn without_permanent_codes(answer: &[u8], placeholder: &str) -> Option<Vec<u8>> {
    without_held(answer, PERMANENT_CODE_KEY, placeholder, &NoneKnown, false)
        .ok()
        .flatten()
}

/// What [`without_refresh_tokens`] and [`without_permanent_codes`] share: the fields whose
/// name ends in `key` (spelled without case or separators), and the `known` values anywhere.
fn without_held(
    answer: &[u8],
    key: &str,
    placeholder: &str,
    known: &dyn KnownRefreshTokens,
    json_only: bool,
) -> Result<Option<Vec<u8>>, Unchecked> {
    let parsed = serde_json::from_slice::<Value>(answer)
        .ok()
        .filter(Value::is_object);
    let Some(mut value) = parsed else {
        if json_only {
            return Err(Unchecked::NotJson);
        }
        let text = String::from_utf8_lossy(answer);
        let found = known.known_among(&words(&text));
        if found.is_empty() {
            return Ok(None);
        }
        return Ok(Some(replace_all(&text, &found, placeholder).into_bytes()));
    };
    let mut seen = Vec::new();
    collect_strings(&value, 0, &mut seen);
    let mut candidates = HashSet::new();
    for s in &seen {
        candidates.extend(words(s));
    }
    let found = known.known_among(&candidates);
    drop(candidates);
    drop(seen);
    mask(
        &mut value,
        &Masking {
            key,
            placeholder,
            found: &found,
        },
        0,
    );
    Ok(serde_json::to_vec(&value).ok())
}

/// `answer` with `secret` replaced by `stand_in` wherever it appears: as it is, URL-encoded or
/// JSON-escaped. `None` when it does not appear.
pub fn without_secret(answer: &[u8], secret: &str, stand_in: &str) -> Option<Vec<u8>> {
    if secret.is_empty() {
        return None;
    }
    let forms = secret_forms(secret);
    if !forms
        .iter()
        .any(|f| memchr::memmem::find(answer, f.as_bytes()).is_some())
    {
        return None;
    }
    let mut out = answer.to_vec();
    for form in forms {
        out = replace_bytes(&out, form.as_bytes(), stand_in.as_bytes());
    }
    Some(out)
}

/// The spellings of a secret an echo may carry it in.
fn secret_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    let url: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let path: String =
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.trim_matches('"').to_string();
    for f in [url, path, json] {
        if !forms.contains(&f) {
            forms.push(f);
        }
    }
    // Longest first: a form that contains another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = memchr::memmem::find(rest, needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Whether a field name is a refresh token's, however spelled: `refresh_token`,
/// `Authorizer_Refresh_Token`, ` refreshToken `, `refresh-token`.
fn is_held_key(name: &str, key: &str) -> bool {
    let letters: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    letters.ends_with(key)
}

/// What one walk of [`mask`] replaces: fields named `key`, and the `found` values.
struct Masking<'a> {
    key: &'a str,
    placeholder: &'a str,
    found: &'a [String],
}

/// A string that holds a JSON document of its own.
fn nested(s: &str) -> Option<Value> {
    let t = s.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str(s).ok()
}

fn collect_strings<'a>(value: &'a Value, depth: usize, out: &mut Vec<std::borrow::Cow<'a, str>>) {
    match value {
        Value::String(s) => {
            out.push(std::borrow::Cow::Borrowed(s));
            if depth < MAX_NESTING {
                if let Some(inner) = nested(s) {
                    let mut found = Vec::new();
                    collect_strings(&inner, depth + 1, &mut found);
                    out.extend(
                        found
                            .into_iter()
                            .map(|s| std::borrow::Cow::Owned(s.into_owned())),
                    );
                }
            }
        }
        Value::Object(fields) => {
            for (name, field) in fields {
                out.push(std::borrow::Cow::Borrowed(name));
                collect_strings(field, depth, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, depth, out)),
        _ => {}
    }
}

/// The words of `text` that could be a refresh token, cut at every separator a URL, a JSON
/// text or a sentence puts around one, and also at fewer separators, so a token with `=`, `.`,
/// `+` or `/` in it is found whole too.
fn words(text: &str) -> HashSet<&str> {
    let mut out = HashSet::new();
    let coarse = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\''
                    | '\\'
                    | ','
                    | ';'
                    | '&'
                    | '?'
                    | '<'
                    | '>'
                    | '('
                    | ')'
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '|'
                    | ':'
                    | '`'
            )
    };
    let fine = |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '@' | '_' | '-' | '*'));
    for piece in text.split(coarse).filter(|p| p.len() >= MIN_TOKEN_LEN) {
        out.insert(piece);
        // `key=value`: the value alone.
        for (at, _) in piece.match_indices('=') {
            let after = &piece[at + 1..];
            if after.len() >= MIN_TOKEN_LEN {
                out.insert(after);
            }
        }
        out.extend(piece.split(fine).filter(|p| p.len() >= MIN_TOKEN_LEN));
    }
    out
}

/// `text` with every one of `found` replaced by `placeholder`.
fn replace_all(text: &str, found: &[String], placeholder: &str) -> String {
    let mut out = text.to_string();
    for token in found {
        if out.contains(token.as_str()) {
            out = out.replace(token.as_str(), placeholder);
        }
    }
    out
}

fn mask(value: &mut Value, m: &Masking<'_>, depth: usize) {
    let (placeholder, found) = (m.placeholder, m.found);
    match value {
        Value::Object(fields) => {
            let renamed: Vec<String> = fields
                .keys()
                .filter(|k| found.iter().any(|t| k.contains(t.as_str())))
                .cloned()
                .collect();
            for old in renamed {
                if let Some(v) = fields.remove(&old) {
                    fields.insert(replace_all(&old, found, placeholder), v);
                }
            }
            for (name, field) in fields.iter_mut() {
                // An empty one (an account whose code was never exchanged) says so; kept.
                let secret = matches!(field, Value::String(s) if !s.is_empty());
                if secret && is_held_key(name, m.key) {
                    *field = Value::String(placeholder.to_string());
                } else {
                    mask(field, m, depth);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| mask(item, m, depth)),
        Value::String(s) => {
            if depth < MAX_NESTING {
                if let Some(mut inner) = nested(s) {
                    mask(&mut inner, m, depth + 1);
                    *s = inner.to_string();
                    return;
                }
            }
            if found.iter().any(|t| s.contains(t.as_str())) {
                *s = replace_all(s, found, placeholder);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Knows the given refresh tokens.
    struct Known(Vec<&'static str>);

    impl KnownRefreshTokens for Known {
        fn known_among(&self, words: &HashSet<&str>) -> Vec<String> {
            self.0
                .iter()
                .filter(|t| words.contains(**t))
                .map(|t| t.to_string())
                .collect()
        }
    }

    const RT: &str = "refreshtoken@@@RU0Sgi7bD6apS7frS9gj8Sbws7OoDejK9Z-cm0EnCzg";

    fn masked_with(v: Value, known: &[&'static str]) -> Value {
        let out = without_refresh_tokens(
            v.to_string().as_bytes(),
            "PLACEHOLDER",
            &Known(known.to_vec()),
            true,
        )
        .unwrap()
        .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn masked(v: Value) -> Value {
        masked_with(v, &[])
    }

    #[test]
    fn authorizer_info_keeps_everything_but_the_refresh_token() {
        let out = masked(json!({
            "authorizer_info": { "nick_name": "shop", "user_name": "gh_1" },
            "authorization_info": {
                "authorizer_appid": "wx1",
                "authorizer_refresh_token": "refreshtoken@@@secret",
                "func_info": [{ "funcscope_category": { "id": 1 } }],
            },
        }));
        assert_eq!(
            out["authorization_info"]["authorizer_refresh_token"],
            "PLACEHOLDER"
        );
        assert_eq!(out["authorization_info"]["authorizer_appid"], "wx1");
        assert_eq!(out["authorizer_info"]["nick_name"], "shop");
        assert!(!out.to_string().contains("secret"));
    }

    #[test]
    fn every_entry_of_a_listing_is_masked_and_an_empty_one_kept() {
        let out = masked(json!({
            "total_count": 2,
            "list": [
                { "authorizer_appid": "wx1", "refresh_token": "rt-one", "auth_time": 1 },
                { "authorizer_appid": "wx2", "refresh_token": "" },
            ],
        }));
        assert_eq!(out["list"][0]["refresh_token"], "PLACEHOLDER");
        assert_eq!(out["list"][0]["auth_time"], 1);
        assert_eq!(out["list"][1]["refresh_token"], "");
        assert_eq!(out["total_count"], 2);
    }

    #[test]
    fn keys_are_matched_in_any_spelling() {
        let out = masked(json!({
            "list": [{
                "REFRESH_TOKEN": "a",
                " refresh_token ": "b",
                "Authorizer_Refresh_Token": "c",
                "refreshToken": "d",
                "refresh-token": "e",
                "deep": { "x": [{ "authorizer_refresh_token\t": "f" }] },
            }],
        }));
        let text = out.to_string();
        for leaked in ["\"a\"", "\"b\"", "\"c\"", "\"d\"", "\"e\"", "\"f\""] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
    }

    #[test]
    fn a_known_token_is_found_by_value_under_any_key_and_inside_text() {
        let out = masked_with(
            json!({
                "list": [{ "authorizer_appid": "wx1", "token_for_later": RT }],
                "errmsg": format!("invalid refresh_token={RT}, hint: [{RT}]"),
                "weird": { RT: 1 },
            }),
            &[RT],
        );
        let text = out.to_string();
        assert!(!text.contains("RU0Sgi7bD6apS7"), "{text}");
        assert_eq!(out["list"][0]["token_for_later"], "PLACEHOLDER");
        assert_eq!(out["list"][0]["authorizer_appid"], "wx1");
    }

    #[test]
    fn json_inside_a_string_is_masked_by_key_and_by_value() {
        let inner = json!({ "authorizer_refresh_token": "by-key", "other": RT }).to_string();
        let out = masked_with(json!({ "errcode": 0, "data": inner }), &[RT]);
        let text = out.to_string();
        assert!(!text.contains("by-key"), "{text}");
        assert!(!text.contains("RU0Sgi7bD6apS7"), "{text}");
        let data: Value = serde_json::from_str(out["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["authorizer_refresh_token"], "PLACEHOLDER");
    }

    #[test]
    fn what_must_be_a_json_object_and_is_not_is_not_sent_on() {
        for raw in [&b"refresh_token=rt"[..], b"[1,2]", b"{\"a\":"] {
            assert_eq!(
                without_refresh_tokens(raw, "P", &NoneKnown, true),
                Err(Unchecked::NotJson),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn another_answer_that_is_not_json_loses_only_known_tokens() {
        let page = format!("<html>token {RT} here</html>");
        let out = without_refresh_tokens(page.as_bytes(), "P", &Known(vec![RT]), false)
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "<html>token P here</html>");
        assert_eq!(
            without_refresh_tokens(b"<html>nothing</html>", "P", &Known(vec![RT]), false),
            Ok(None)
        );
    }

    #[test]
    fn a_secret_is_scrubbed_in_every_spelling() {
        let secret = "s3cr3t+/=&x";
        let answer = format!(
            "{{\"errmsg\":\"bad request: secret={} url {} raw {}\"}}",
            form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC),
            secret
        );
        let out =
            String::from_utf8(without_secret(answer.as_bytes(), secret, "KEY").unwrap()).unwrap();
        assert!(!out.contains("s3cr3t"), "{out}");
        assert_eq!(out.matches("KEY").count(), 3, "{out}");
        assert_eq!(without_secret(b"{\"openid\":\"o1\"}", secret, "KEY"), None);
    }

    #[test]
    fn permanent_codes_are_masked_by_key_in_any_spelling_and_nothing_else() {
        let answer = json!({
            "permanent_code": "pc-secret-1",
            "auth_corp_info": {"PermanentCode": "pc-secret-2", "corpid": "wwcorp"},
            "refresh_token": "kept-here",
            "nested": "{\"permanent-code\":\"pc-secret-3\"}",
        });
        let out = without_permanent_codes(answer.to_string().as_bytes(), "P").expect("masked");
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("pc-secret"), "{text}");
        assert!(
            text.contains("kept-here") && text.contains("wwcorp"),
            "{text}"
        );
        assert!(without_permanent_codes(b"not json", "P").is_none());
    }
}
