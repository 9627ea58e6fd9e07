//! The pushes no route matched, kept in a short list for admins (`GET
//! /v1/admin/pushes/unmatched`): who sent what kind of push when, never its content. Each
//! instance keeps its own list, in memory.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use super::{Inbound, Source};

/// How many unmatched pushes are kept: enough to see what a missing route would have taken.
pub const RECENT_UNMATCHED: usize = 100;

/// One unmatched push, without its content.
#[derive(Clone, Debug, Serialize)]
pub struct Unmatched {
    pub source: Source,
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info_type: Option<String>,
}

/// The most recent unmatched pushes, newest first.
#[derive(Default)]
pub struct Recent(Mutex<VecDeque<Unmatched>>);

impl Recent {
    pub fn record(&self, push: &Inbound) {
        // WeChat's values are short words; a longer one is cut rather than kept whole.
        let short = |v: Option<&str>| v.map(|s| s.chars().take(64).collect::<String>());
        let entry = Unmatched {
            source: push.source.clone(),
            received_at: crate::time::rfc3339(push.received_at),
            msg_type: short(push.msg_type()),
            event: short(push.event()),
            info_type: short(push.info_type()),
        };
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.push_front(entry);
        list.truncate(RECENT_UNMATCHED);
    }

    pub fn list(&self) -> Vec<Unmatched> {
        let list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::messages::Format;

    #[test]
    fn the_list_keeps_the_newest_hundred_without_content() {
        let recent = Recent::default();
        for i in 0..150 {
            let mut m = serde_json::Map::new();
            m.insert("MsgType".into(), "text".into());
            m.insert("Content".into(), format!("secret {i}").into());
            recent.record(&Inbound::new(
                Source::app("shop", "wx1"),
                SystemTime::UNIX_EPOCH,
                m,
                format!("<xml>secret {i}</xml>"),
                Format::Xml,
            ));
        }
        let list = recent.list();
        assert_eq!(list.len(), RECENT_UNMATCHED);
        let text = serde_json::to_string(&list).expect("JSON");
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(list[0].msg_type.as_deref(), Some("text"));
    }
}
