//! One push taken from WeChat, as the message hub receives it: where it came from, its
//! decrypted fields, the decrypted document as sent, and the key that makes WeChat's retries
//! of it one push.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};

/// Who pushed: an app of `[[apps]]`, an account authorized to a platform (its message URL),
/// or the platform itself (its authorization event URL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    App,
    Account,
    Platform,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::App => "app",
            SourceKind::Account => "account",
            SourceKind::Platform => "platform",
        }
    }
}

/// The source of a push, as a delivery's `source` object carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    pub kind: SourceKind,
    /// The `[[apps]]` name, for an app's push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The `[[platforms]]` name, for an account's or a platform's push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The app's appid, the authorized account's appid, or the component appid.
    pub appid: String,
}

impl Source {
    /// The source as the store keeps it (plain fields: the store sits below the hub).
    pub fn stored(&self) -> crate::store::messages::StoredSource {
        crate::store::messages::StoredSource {
            kind: self.kind.as_str().to_string(),
            app: self.app.clone(),
            platform: self.platform.clone(),
            appid: self.appid.clone(),
        }
    }

    pub fn app(name: &str, appid: &str) -> Source {
        Source {
            kind: SourceKind::App,
            app: Some(name.to_owned()),
            platform: None,
            appid: appid.to_owned(),
        }
    }

    pub fn account(platform: &str, appid: &str) -> Source {
        Source {
            kind: SourceKind::Account,
            app: None,
            platform: Some(platform.to_owned()),
            appid: appid.to_owned(),
        }
    }

    pub fn platform(platform: &str, component_appid: &str) -> Source {
        Source {
            kind: SourceKind::Platform,
            app: None,
            platform: Some(platform.to_owned()),
            appid: component_appid.to_owned(),
        }
    }

    /// The `source` label of `wxtoken_pushes_total`: the app's name, or the platform's for its
    /// accounts and its own events (bounded by the configuration, whatever WeChat sends).
    pub fn label(&self) -> &str {
        self.app
            .as_deref()
            .or(self.platform.as_deref())
            .unwrap_or("unknown")
    }

    /// A stable identity of the source, for dedupe keys: kinds and names cannot collide.
    pub fn identity(&self) -> String {
        format!("{}:{}:{}", self.kind.as_str(), self.label(), self.appid)
    }
}

/// The format the push was written in: an app's `message_format`; XML for everything else.
pub use crate::config::MessageFormat as Format;

/// A push checked (signature, freshness, decryption, AppId) and parsed, ready to be taken.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub source: Source,
    pub received_at: SystemTime,
    /// Equal for WeChat's retries of one push, different for different pushes of one source:
    /// the source's identity and the MsgId, or for an event its sender, CreateTime, Event and
    /// EventKey, or for a platform event its InfoType, CreateTime and authorizer.
    pub dedupe_key: String,
    /// The decrypted fields, by WeChat's names (`ToUserName`, `MsgType`, `Content`, ...), as
    /// strings for XML; as sent for JSON.
    pub message: Map<String, Value>,
    /// The decrypted document, as WeChat wrote it.
    pub raw: String,
    pub format: Format,
}

impl Inbound {
    /// Builds a push from its fields, computing its dedupe key.
    pub fn new(
        source: Source,
        received_at: SystemTime,
        message: Map<String, Value>,
        raw: String,
        format: Format,
    ) -> Inbound {
        let dedupe_key = dedupe_key(&source, &message);
        Inbound {
            source,
            received_at,
            dedupe_key,
            message,
            raw,
            format,
        }
    }

    /// `MsgType` (`text`, `event`, ...); absent for a platform's event.
    pub fn msg_type(&self) -> Option<&str> {
        self.field("MsgType")
    }

    /// `Event` of an event push (`subscribe`, `CLICK`, ...).
    pub fn event(&self) -> Option<&str> {
        self.field("Event")
    }

    /// `InfoType` of a platform's event (`authorized`, `unauthorized`, ...).
    pub fn info_type(&self) -> Option<&str> {
        self.field("InfoType")
    }

    /// A field as text: strings as they are, numbers written out; absent or another JSON type
    /// is `None`.
    pub fn field(&self, name: &str) -> Option<&str> {
        match self.message.get(name)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The field's text, numbers included (JSON pushes carry `CreateTime` and `MsgId` as numbers).
fn text(message: &Map<String, Value>, name: &str) -> String {
    match message.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The key under which WeChat's retries of one push are one push. WeChat's own advice: a
/// message by its MsgId; an event (which has none) by sender and CreateTime (and Event and
/// EventKey, since one user's click and scan can share a second).
fn dedupe_key(source: &Source, message: &Map<String, Value>) -> String {
    let msg_id = text(message, "MsgId");
    let what = if !msg_id.is_empty() {
        format!("msg:{msg_id}")
    } else if message.contains_key("InfoType") {
        format!(
            "info:{}:{}:{}",
            text(message, "InfoType"),
            text(message, "CreateTime"),
            text(message, "AuthorizerAppid")
        )
    } else {
        // Parts are joined with a separator no field can hold unescaped in the key's digest.
        format!(
            "event:{}\u{1f}{}\u{1f}{}\u{1f}{}",
            text(message, "FromUserName"),
            text(message, "CreateTime"),
            text(message, "Event"),
            text(message, "EventKey")
        )
    };
    use sha2::Digest as _;
    // Hashed: the key is a store key, and senders' openids are personal data.
    let digest = sha2::Sha256::digest(format!("{}\u{1e}{what}", source.identity()).as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn key(source: &Source, pairs: &[(&str, Value)]) -> String {
        Inbound::new(
            source.clone(),
            SystemTime::UNIX_EPOCH,
            fields(pairs),
            String::new(),
            Format::Xml,
        )
        .dedupe_key
    }

    #[test]
    fn a_message_is_one_push_by_its_msg_id_in_text_or_number() {
        let shop = Source::app("shop", "wx1");
        let a = key(
            &shop,
            &[("MsgId", "123".into()), ("CreateTime", "1".into())],
        );
        let b = key(&shop, &[("MsgId", 123.into()), ("CreateTime", "2".into())]);
        let c = key(&shop, &[("MsgId", "124".into())]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The same MsgId from another source is another push.
        assert_ne!(
            a,
            key(&Source::account("saas", "wx1"), &[("MsgId", "123".into())])
        );
    }

    #[test]
    fn an_event_is_one_push_by_sender_time_event_and_key() {
        let shop = Source::app("shop", "wx1");
        let base = [
            ("FromUserName", Value::from("o1")),
            ("CreateTime", "100".into()),
            ("Event", "CLICK".into()),
            ("EventKey", "A".into()),
        ];
        let same = key(&shop, &base);
        assert_eq!(same, key(&shop, &base));
        for i in 0..base.len() {
            let mut other = base.clone();
            other[i].1 = "changed".into();
            assert_ne!(same, key(&shop, &other), "field {} must count", base[i].0);
        }
    }

    #[test]
    fn a_platform_event_is_one_push_by_info_type_time_and_authorizer() {
        let saas = Source::platform("saas", "wxc");
        let a = key(
            &saas,
            &[
                ("InfoType", "authorized".into()),
                ("CreateTime", "5".into()),
                ("AuthorizerAppid", "wxa".into()),
            ],
        );
        let b = key(
            &saas,
            &[
                ("InfoType", "unauthorized".into()),
                ("CreateTime", "5".into()),
                ("AuthorizerAppid", "wxa".into()),
            ],
        );
        assert_ne!(a, b);
    }

    #[test]
    fn the_source_is_serialized_as_deliveries_carry_it() {
        let v = serde_json::to_value(Source::account("saas", "wxa")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "account", "platform": "saas", "appid": "wxa"})
        );
        assert_eq!(Source::app("shop", "wx1").label(), "shop");
    }
}
