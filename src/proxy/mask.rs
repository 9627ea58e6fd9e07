//! Refresh tokens taken out of the component answers that carry them
//! (`api_get_authorizer_info`, `api_get_authorizer_list`), so a call forwarded for a business
//! server never hands it an authorized account's refresh token: those stay in wxtoken.

use serde_json::Value;

/// The largest answer read for masking: a full page of `api_get_authorizer_list` (500
/// accounts) is about 100 KiB, and parsing takes several times an answer's size in memory.
pub const ANSWER_LIMIT: usize = 1 << 20;

/// The field names WeChat puts an authorizer's refresh token under.
const REFRESH_TOKEN_FIELDS: [&str; 2] = ["authorizer_refresh_token", "refresh_token"];

/// `answer` (a JSON object) with every refresh-token field, at any depth, set to
/// `placeholder`; `None` when it is not JSON, which cannot be checked and so is not sent on.
pub fn without_refresh_tokens(answer: &[u8], placeholder: &str) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(answer).ok()?;
    if !value.is_object() {
        return None;
    }
    mask(&mut value, placeholder);
    serde_json::to_vec(&value).ok()
}

fn mask(value: &mut Value, placeholder: &str) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                // An empty one (an account whose code was never exchanged) says so; kept.
                let secret = matches!(field, Value::String(s) if !s.is_empty());
                if secret && REFRESH_TOKEN_FIELDS.contains(&name.as_str()) {
                    *field = Value::String(placeholder.to_string());
                } else {
                    mask(field, placeholder);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| mask(item, placeholder)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn masked(v: Value) -> Value {
        let out = without_refresh_tokens(v.to_string().as_bytes(), "PLACEHOLDER").unwrap();
        serde_json::from_slice(&out).unwrap()
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
    fn what_is_not_a_json_object_is_not_sent_on() {
        for raw in [&b"refresh_token=rt"[..], b"[1,2]", b"{\"a\":"] {
            assert_eq!(without_refresh_tokens(raw, "P"), None, "{raw:?}");
        }
    }
}
