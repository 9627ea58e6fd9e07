//! The open platform's push crypto against an independent implementation: wechatpy's
//! `WeChatCrypto` (a real WeChat SDK from PyPI, installed by scripts/test) seals events that
//! wxtoken opens, and opens what wxtoken seals.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::wechatpy::{require_wechatpy, wechatpy};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use wxtoken::push::crypto::{Envelope, MsgCrypto, OpenError};
use wxtoken::push::event::{Authorization, Event, EventKind};
use wxtoken::push::replay::{Refused, ReplayGuard};

const TOKEN: &str = "interop-token-7f3a";
const KEY: &str = "Zr4Kp8Qw2Ex6Ty0Uo3Ia7Sd1Fg5Hj9Kl2Zx6Cv0Bn4M";
const APPID: &str = "wx3c1f0a9d8e7b6a51";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn ticket_event(ticket: &str) -> Event {
    Event {
        app_id: APPID.into(),
        create_time: now_secs(),
        kind: EventKind::VerifyTicket {
            ticket: SecretString::from(ticket),
        },
    }
}

/// Events of every kind, with lengths spread so the 32-byte padding takes every value 1..=32.
fn events() -> Vec<Event> {
    let mut all: Vec<Event> = (0..32)
        .map(|i| ticket_event(&format!("ticket@@@{}", "T".repeat(i))))
        .collect();
    let auth = Authorization {
        authorizer_appid: "wxf8b4f85f3a794e77".into(),
        authorization_code: SecretString::from("queryauthcode@@@Interop"),
        code_expires_at: now_secs() + 3600,
        pre_auth_code: Some(SecretString::from("preauthcode@@@Interop")),
    };
    all.push(Event {
        kind: EventKind::Authorized(auth.clone()),
        ..ticket_event("x")
    });
    all.push(Event {
        kind: EventKind::UpdateAuthorized(auth),
        ..ticket_event("x")
    });
    all.push(Event {
        kind: EventKind::Unauthorized {
            authorizer_appid: "wxf8b4f85f3a794e77".into(),
        },
        ..ticket_event("x")
    });
    all.push(Event {
        kind: EventKind::Other {
            info_type: "notify_third_fasteregister".into(),
        },
        ..ticket_event("x")
    });
    all
}

#[test]
fn wxtoken_opens_pushes_sealed_by_wechatpy() {
    require_wechatpy();
    let crypto = MsgCrypto::new(TOKEN, KEY, APPID).unwrap();
    let events = events();
    let timestamp = now_secs().to_string();
    let messages: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"xml": e.to_xml(), "timestamp": timestamp, "nonce": format!("{}", 1000 + i)}))
        .collect();
    let sealed = wechatpy(json!({
        "token": TOKEN, "key": KEY, "appid": APPID, "op": "seal", "messages": messages,
    }));
    assert_eq!(sealed.len(), events.len());
    let mut replay = ReplayGuard::default();
    for (i, (push, sent)) in sealed.iter().zip(&events).enumerate() {
        let q = Envelope {
            timestamp: timestamp.clone(),
            nonce: format!("{}", 1000 + i),
            msg_signature: push["msg_signature"].as_str().unwrap().to_owned(),
        };
        let body = push["body"].as_str().unwrap();
        let xml = crypto
            .open(&q, body.as_bytes())
            .unwrap_or_else(|e| panic!("#{i}: {e}"));
        assert_eq!(xml, sent.to_xml(), "#{i}");
        let got = Event::parse(&xml).unwrap();
        assert_eq!(got.app_id, APPID);
        assert_eq!(got.info_type(), sent.info_type());
        if let (EventKind::VerifyTicket { ticket: a }, EventKind::VerifyTicket { ticket: b }) =
            (&got.kind, &sent.kind)
        {
            assert_eq!(a.expose_secret(), b.expose_secret());
        }
        let _ = replay.admit(&q, SystemTime::now()).unwrap();
        // The same push delivered twice is refused the second time.
        assert_eq!(replay.admit(&q, SystemTime::now()), Err(Refused::Replay));
    }
    // Six minutes later a push with that timestamp is refused as stale.
    let q = Envelope {
        timestamp,
        nonce: "stale".into(),
        msg_signature: "0".repeat(40),
    };
    assert!(matches!(
        replay.admit(&q, SystemTime::now() + Duration::from_secs(360)),
        Err(Refused::Stale { .. })
    ));
}

#[test]
fn wechatpy_opens_pushes_sealed_by_wxtoken() {
    require_wechatpy();
    let crypto = MsgCrypto::new(TOKEN, KEY, APPID).unwrap();
    let events = events();
    let timestamp = now_secs().to_string();
    let pushes: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| crypto.seal(&e.to_xml(), &timestamp, &format!("{}", 2000 + i)))
        .collect();
    let messages: Vec<Value> = pushes
        .iter()
        .map(|s| json!({"body": s.body, "msg_signature": s.msg_signature, "timestamp": s.timestamp, "nonce": s.nonce}))
        .collect();
    let opened = wechatpy(json!({
        "token": TOKEN, "key": KEY, "appid": APPID, "op": "open", "messages": messages,
    }));
    assert_eq!(opened.len(), events.len());
    for (i, (xml, sent)) in opened.iter().zip(&events).enumerate() {
        assert_eq!(xml.as_str().unwrap(), sent.to_xml(), "#{i}");
    }
}

#[test]
fn a_wechatpy_push_for_another_appid_is_refused() {
    require_wechatpy();
    let sealed = wechatpy(json!({
        "token": TOKEN, "key": KEY, "appid": "wx0000000000000000", "op": "seal",
        "messages": [{"xml": ticket_event("ticket@@@other").to_xml(), "timestamp": "1700000000", "nonce": "1"}],
    }));
    let q = Envelope {
        timestamp: "1700000000".into(),
        nonce: "1".into(),
        msg_signature: sealed[0]["msg_signature"].as_str().unwrap().to_owned(),
    };
    let crypto = MsgCrypto::new(TOKEN, KEY, APPID).unwrap();
    let body = sealed[0]["body"].as_str().unwrap();
    assert_eq!(crypto.open(&q, body.as_bytes()), Err(OpenError::WrongAppId));
    let other_token = MsgCrypto::new("another-token", KEY, APPID).unwrap();
    assert_eq!(
        other_token.open(&q, body.as_bytes()),
        Err(OpenError::BadSignature)
    );
}
