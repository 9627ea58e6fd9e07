//! WeChat's encrypted push protocol (`WXBizMsgCrypt`), with no state of any receiver: the
//! Open Platform's event URL uses it, and a WeCom service-provider suite (the same AES and
//! `msg_signature`, its suite id as the receive id) can use it as it is.
//!
//! Map of the modules:
//! - `crypto`: verifying `msg_signature`, opening encrypted pushes, and sealing them (for the
//!   fake WeChat and the tests). The receive id is whatever the receiver is (a component appid,
//!   a suite id).
//! - `replay`: freshness (five minutes either way) and replay refusal, with bounded memory.
//! - `event`: the Open Platform's decrypted push as a typed event (`component_verify_ticket`,
//!   `authorized`, `updateauthorized`, `unauthorized`, others kept), and the XML of each kind.
//! - `suite_event`: a WeCom suite's decrypted callback as a typed event (`suite_ticket`,
//!   `create_auth`, `change_auth`, `cancel_auth`, `reset_permanent_code`, others kept).
//! - `plain`: the plain `signature` of a message URL's check and of plaintext pushes.
//! - `xml`: the hardened reader for WeChat's flat XML that both the push body and the event
//!   go through.
//!
//! A receiver runs a push through, in this order: [`crypto::MsgCrypto::open`] (signature, then
//! decryption), [`replay::ReplayGuard::admit`] (only signed pushes take up memory),
//! [`event::Event::parse`], its own check of the event's `AppId`, then its storing; if storing
//! fails, it releases the admission so WeChat's retry is not refused as a replay.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use wxtoken::push::crypto::MsgCrypto;
//! use wxtoken::push::event::{Event, EventKind};
//! use wxtoken::push::replay::ReplayGuard;
//!
//! let appid = "wx3c1f0a9d8e7b6a51";
//! let crypto = MsgCrypto::new("token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", appid)?;
//! let event = Event {
//!     app_id: appid.into(),
//!     create_time: 1_700_000_000,
//!     kind: EventKind::VerifyTicket { ticket: "ticket@@@x".into() },
//! };
//! // WeChat (or the fake): POST `sealed.body` to the event URL with `?` and `sealed.query()`.
//! let sealed = crypto.seal(&event.to_xml(), "1700000000", "42");
//!
//! // The receiver, with the query parameters read back into an `Envelope`:
//! let q = sealed.envelope();
//! let xml = crypto.open(&q, sealed.body.as_bytes())?;
//! let mut replay = ReplayGuard::default();
//! let _admitted = replay.admit(&q, UNIX_EPOCH + Duration::from_secs(1_700_000_010))?;
//! let got = Event::parse(&xml)?;
//! assert_eq!(got.app_id, crypto.appid());
//! assert_eq!(got.kind_label(), "component_verify_ticket");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod crypto;
pub mod event;
pub mod plain;
pub mod replay;
pub mod suite_event;
pub mod xml;
