//! The JSON body a receiver gets: the delivery's id and route, the push's source, receipt
//! time, decrypted fields, and the decrypted document as sent (`xml`, or `json` for a push in
//! JSON).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::messages::{PushRecord, StoredSource};
use crate::time::UnixMillis;

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    route: &'a str,
    source: &'a StoredSource,
    received_at: String,
    message: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xml: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<&'a str>,
}

/// The body of delivery `id` of `push` to `route`.
pub fn render(id: &str, route: &str, push: &PushRecord) -> Vec<u8> {
    let is_json = push.format == "json";
    let body = Body {
        id,
        route,
        source: &push.source,
        received_at: rfc3339(push.received_at),
        message: &push.message,
        xml: (!is_json).then_some(push.raw.as_str()),
        json: is_json.then_some(push.raw.as_str()),
    };
    // Strings, a map of JSON values and an object: always serializable.
    serde_json::to_vec(&body).unwrap_or_default()
}

fn rfc3339(t: UnixMillis) -> String {
    crate::time::rfc3339(t.to_system_time())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn push(format: &str, raw: &str) -> PushRecord {
        let mut message = Map::new();
        message.insert("MsgType".into(), "text".into());
        message.insert("CreateTime".into(), json!(1_700_000_000));
        PushRecord {
            id: "0000000000010000000000000001".into(),
            source: StoredSource {
                kind: "account".into(),
                app: None,
                platform: Some("saas".into()),
                appid: "wxa".into(),
            },
            received_at: UnixMillis::new(1_700_000_000_500).expect("ms"),
            format: format.into(),
            message,
            raw: raw.into(),
        }
    }

    #[test]
    fn the_body_carries_the_issue_fields_and_the_document_under_its_format() {
        let xml = push("xml", "<xml><MsgType>text</MsgType></xml>");
        let v: Value = serde_json::from_slice(&render("d1", "crm", &xml)).expect("JSON");
        assert_eq!(
            v,
            json!({
                "id": "d1",
                "route": "crm",
                "source": {"kind": "account", "platform": "saas", "appid": "wxa"},
                "received_at": "2023-11-14T22:13:20Z",
                "message": {"MsgType": "text", "CreateTime": 1_700_000_000},
                "xml": "<xml><MsgType>text</MsgType></xml>",
            })
        );
        let j = push("json", r#"{"MsgType":"text"}"#);
        let v: Value = serde_json::from_slice(&render("d1", "crm", &j)).expect("JSON");
        assert_eq!(v["json"], json!(r#"{"MsgType":"text"}"#));
        assert!(v.get("xml").is_none());
    }
}
