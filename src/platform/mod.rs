//! The WeChat Open Platform (第三方平台): what a third-party platform receives from WeChat and
//! how it is checked.
//!
//! Map of the modules:
//! - `crypto`: WeChat's message encryption (`WXBizMsgCrypt`): verifying `msg_signature`,
//!   opening encrypted pushes, and sealing them (for the fake WeChat and the tests).
//! - `replay`: freshness (five minutes either way) and replay refusal, with bounded memory.
//! - `event`: the decrypted push as a typed event (`component_verify_ticket`, `authorized`,
//!   `updateauthorized`, `unauthorized`, others kept), and the XML of each kind.
//! - `xml`: the hardened reader for WeChat's flat XML that both the push body and the event
//!   go through.
//!
//! A push is handled in this order: [`crypto::MsgCrypto::open`] (signature, then decryption),
//! [`replay::ReplayGuard::admit`] (only signed pushes take up memory), [`event::Event::parse`],
//! a check that the event's `AppId` is the platform's, then storing it; if storing fails, the
//! admission is released so WeChat's retry is not refused as a replay.

pub mod crypto;
pub mod event;
pub mod replay;
pub mod xml;
