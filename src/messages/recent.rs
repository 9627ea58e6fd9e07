//! The pushes no route matched, as admins see them (`GET /v1/admin/pushes/unmatched`): who
//! sent what kind of push when, never its content. The store keeps the last ones (the fleet's
//! with Redis), written in the same step as the push's dedupe entry, so a retry is not noted
//! twice and every instance lists the same.

use serde::Serialize;

use super::Inbound;
use crate::store::messages::{StoredSource, UnmatchedRecord};
use crate::time::UnixMillis;

/// One unmatched push, without its content.
#[derive(Clone, Debug, Serialize)]
pub struct Unmatched {
    pub source: StoredSource,
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info_type: Option<String>,
}

/// The note the store keeps of `push`.
pub fn note(push: &Inbound) -> UnmatchedRecord {
    // WeChat's values are short words; a longer one is cut rather than kept whole.
    let short = |v: Option<&str>| v.map(|s| s.chars().take(64).collect::<String>());
    UnmatchedRecord {
        source: push.source.stored(),
        received_at: UnixMillis::saturating_from(push.received_at),
        msg_type: short(push.msg_type()),
        event: short(push.event()),
        info_type: short(push.info_type()),
    }
}

impl From<UnmatchedRecord> for Unmatched {
    fn from(r: UnmatchedRecord) -> Self {
        Unmatched {
            source: r.source,
            received_at: r.received_at.rfc3339(),
            msg_type: r.msg_type,
            event: r.event,
            info_type: r.info_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::messages::{Format, Source};

    #[test]
    fn a_note_keeps_no_content_and_cuts_long_values() {
        let mut m = serde_json::Map::new();
        m.insert("MsgType".into(), "event".into());
        m.insert("Event".into(), "x".repeat(500).into());
        m.insert("Content".into(), "secret words".into());
        let push = Inbound::new(
            Source::app("shop", "wx1"),
            SystemTime::UNIX_EPOCH,
            m,
            "<xml>secret words</xml>".into(),
            Format::Xml,
        );
        let shown = Unmatched::from(note(&push));
        let text = serde_json::to_string(&shown).expect("JSON");
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(shown.msg_type.as_deref(), Some("event"));
        assert_eq!(shown.event.map(|e| e.len()), Some(64));
        assert_eq!(shown.source.app.as_deref(), Some("shop"));
        assert_eq!(shown.received_at, "1970-01-01T00:00:00Z");
    }
}
