//! Which `[[routes]]` a push goes to: the `match` rules, pure and unit-tested.
//!
//! The keys of a `match` are ANDed; an absent key matches anything.
//! - `apps` and `platforms` name the sources together: an app's push matches when its name is
//!   in `apps`; an authorized account's push or a platform's own event when the platform is in
//!   `platforms`. With only one of the two given, the other kind of source does not match;
//!   with neither, every source does.
//! - `msg_types` is checked against `MsgType`; `events` only against pushes whose `MsgType` is
//!   `event` (a text message passes an `events` list).
//! - A platform's own events (authorized, unauthorized, ...: they have an `InfoType` and no
//!   `MsgType`) go to a route with `info_types` listing theirs, or to a route that constrains
//!   neither `msg_types` nor `events` nor `info_types` (it takes everything from its sources).
//!   A route whose only kind constraint is `info_types` takes platform events only.

use crate::config::RouteMatch;

use super::{Inbound, SourceKind};

/// Whether `m` takes `push`.
pub fn matches(m: &RouteMatch, push: &Inbound) -> bool {
    source_matches(m, push) && kind_matches(m, push)
}

fn listed(list: &Option<Vec<String>>, value: Option<&str>) -> bool {
    match list {
        None => true,
        Some(list) => value.is_some_and(|v| list.iter().any(|l| l == v)),
    }
}

fn source_matches(m: &RouteMatch, push: &Inbound) -> bool {
    if m.apps.is_none() && m.platforms.is_none() {
        return true;
    }
    let s = &push.source;
    let named = |list: &Option<Vec<String>>, name: Option<&str>| {
        list.as_ref()
            .is_some_and(|l| name.is_some_and(|n| l.iter().any(|x| x == n)))
    };
    match s.kind {
        SourceKind::App => named(&m.apps, s.app.as_deref()),
        SourceKind::Account | SourceKind::Platform => named(&m.platforms, s.platform.as_deref()),
    }
}

fn kind_matches(m: &RouteMatch, push: &Inbound) -> bool {
    let unconstrained = m.msg_types.is_none() && m.events.is_none();
    if push.source.kind == SourceKind::Platform {
        return match &m.info_types {
            Some(_) => listed(&m.info_types, push.info_type()),
            None => unconstrained,
        };
    }
    if m.info_types.is_some() && unconstrained {
        // Only platform events asked for.
        return false;
    }
    if !listed(&m.msg_types, push.msg_type()) {
        return false;
    }
    if push.msg_type() == Some("event") && !listed(&m.events, push.event()) {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::{Map, Value};

    use super::*;
    use crate::messages::{Format, Source};

    fn push(source: Source, fields: &[(&str, &str)]) -> Inbound {
        let message: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        Inbound::new(
            source,
            SystemTime::UNIX_EPOCH,
            message,
            String::new(),
            Format::Xml,
        )
    }

    fn list(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn the_match_rules_table() {
        let shop_text = push(Source::app("shop", "wx1"), &[("MsgType", "text")]);
        let shop_sub = push(
            Source::app("shop", "wx1"),
            &[("MsgType", "event"), ("Event", "subscribe")],
        );
        let shop_click = push(
            Source::app("shop", "wx1"),
            &[("MsgType", "event"), ("Event", "CLICK")],
        );
        let blog_text = push(Source::app("blog", "wx2"), &[("MsgType", "text")]);
        let account_text = push(Source::account("saas", "wxa"), &[("MsgType", "text")]);
        let other_account = push(Source::account("other", "wxb"), &[("MsgType", "text")]);
        let authorized = push(
            Source::platform("saas", "wxc"),
            &[("InfoType", "authorized")],
        );
        let unauthorized = push(
            Source::platform("saas", "wxc"),
            &[("InfoType", "unauthorized")],
        );
        let any = RouteMatch::default();
        let issue = RouteMatch {
            apps: list(&["shop"]),
            platforms: list(&["saas"]),
            msg_types: list(&["text", "event"]),
            events: list(&["subscribe"]),
            info_types: None,
        };
        let apps_only = RouteMatch {
            apps: list(&["shop"]),
            ..RouteMatch::default()
        };
        let platforms_only = RouteMatch {
            platforms: list(&["saas"]),
            ..RouteMatch::default()
        };
        let info_only = RouteMatch {
            platforms: list(&["saas"]),
            info_types: list(&["authorized"]),
            ..RouteMatch::default()
        };
        let info_and_text = RouteMatch {
            msg_types: list(&["text"]),
            info_types: list(&["authorized"]),
            ..RouteMatch::default()
        };
        let events_only = RouteMatch {
            events: list(&["subscribe"]),
            ..RouteMatch::default()
        };
        #[rustfmt::skip]
        let table: [(&str, &RouteMatch, &Inbound, bool); 27] = [
            ("no match keys takes a message", &any, &shop_text, true),
            ("no match keys takes a platform event", &any, &authorized, true),
            ("issue: shop's text", &issue, &shop_text, true),
            ("issue: shop's subscribe", &issue, &shop_sub, true),
            ("issue: shop's click is not a listed event", &issue, &shop_click, false),
            ("issue: another app", &issue, &blog_text, false),
            ("issue: an account of saas", &issue, &account_text, true),
            ("issue: an account of another platform", &issue, &other_account, false),
            ("issue: msg_types constrain, so no platform event", &issue, &authorized, false),
            ("apps only: the app", &apps_only, &shop_text, true),
            ("apps only: another app", &apps_only, &blog_text, false),
            ("apps only: no account", &apps_only, &account_text, false),
            ("apps only: no platform event", &apps_only, &authorized, false),
            ("platforms only: an account", &platforms_only, &account_text, true),
            ("platforms only: its own events, unconstrained", &platforms_only, &authorized, true),
            ("platforms only: no app", &platforms_only, &shop_text, false),
            ("platforms only: another platform's account", &platforms_only, &other_account, false),
            ("info_types only: the listed platform event", &info_only, &authorized, true),
            ("info_types only: another info type", &info_only, &unauthorized, false),
            ("info_types only: no message", &info_only, &account_text, false),
            ("info_types and msg_types: the message", &info_and_text, &shop_text, true),
            ("info_types and msg_types: the event", &info_and_text, &authorized, true),
            ("info_types and msg_types: an unlisted event push", &info_and_text, &shop_sub, false),
            ("events only: a text passes", &events_only, &shop_text, true),
            ("events only: a listed event", &events_only, &shop_sub, true),
            ("events only: an unlisted event", &events_only, &shop_click, false),
            ("events only: no platform event", &events_only, &authorized, false),
        ];
        for (what, m, p, want) in table {
            assert_eq!(matches(m, p), want, "{what}");
        }
    }
}
