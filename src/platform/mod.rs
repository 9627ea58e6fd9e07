//! The WeChat Open Platform (第三方平台): what a third-party platform receives from WeChat and
//! how it is checked.
//!
//! Map of the modules:
//! - `crypto`: WeChat's message encryption (`WXBizMsgCrypt`): verifying `msg_signature`,
//!   opening encrypted pushes, and sealing them (for the fake WeChat and the tests).
//! - `replay`: freshness (five minutes either way) and replay refusal, with bounded memory.
//! - `event`: the decrypted push as a typed event (`component_verify_ticket`, `authorized`,
//!   `updateauthorized`, `unauthorized`, others kept), and the XML of each kind.
//! - `codes` and `exchange`: authorization codes from the push (or the redirect) to the
//!   account: stored with the push, exchanged in the background one exchange per code,
//!   resumed after a crash by any instance.
//! - `xml`: the hardened reader for WeChat's flat XML that both the push body and the event
//!   go through.
//!
//! A push is handled in this order: [`crypto::MsgCrypto::open`] (signature, then decryption),
//! [`replay::ReplayGuard::admit`] (only signed pushes take up memory), [`event::Event::parse`],
//! a check that the event's `AppId` is the platform's, then storing it; if storing fails, the
//! admission is released so WeChat's retry is not refused as a replay.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use wxtoken::platform::crypto::MsgCrypto;
//! use wxtoken::platform::event::{Event, EventKind};
//! use wxtoken::platform::replay::ReplayGuard;
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

/// What the component facade (and the gateway's mask) hands out in place of an authorized
/// account's refresh token, which never leaves wxtoken; the facade's `api_authorizer_token`
/// accepts it back.
pub const PLACEHOLDER_REFRESH_TOKEN: &str = "wxtoken-facade-placeholder-refresh-token";

pub mod authorizer;
pub mod codes;
pub mod component;
pub mod crypto;
pub mod event;
pub mod exchange;
pub mod replay;
pub mod runtime;
pub mod xml;
