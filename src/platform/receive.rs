//! A push to the platform's event URL, received: opened (signature, then decryption),
//! admitted (freshness and replay), parsed, checked to be for this platform's component
//! appid, then applied and stored before it is answered. Anything refused is stored nowhere;
//! a push that could not be stored releases its admission so that WeChat's retry gets in.

use std::time::SystemTime;

use super::runtime::{lock, Platform};
use crate::push::crypto::Envelope;
use crate::push::event::{Event, EventKind};
use crate::push::replay::open_admit_parse;
use crate::secret::AccessToken;
use crate::store::platform::EventRecord;

/// A push received and stored: WeChat is answered `success`.
#[derive(Debug)]
pub struct Receipt {
    /// The event's kind, as its metrics label names it.
    pub info_type: &'static str,
}

/// Why a push was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Refused as it is (no signature, a bad one, stale, a replay, malformed, another
    /// component's): the HTTP status to answer and why. WeChat's retry would be refused too.
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// Checked, but it could not be stored: WeChat's retry is let in.
    #[error("the push could not be stored; try again")]
    NotStored,
}

/// The kind of a push refused before its event could be read.
const UNKNOWN_KIND: &str = "unknown";

impl Platform {
    /// Receives one push: `envelope` is its query (timestamp, nonce, msg_signature), `body`
    /// the encrypted XML WeChat posted.
    pub async fn receive(&self, envelope: &Envelope, body: &[u8]) -> Result<Receipt, PushError> {
        let (xml, event, admitted) =
            open_admit_parse(&self.crypto, &self.replay, envelope, body, Event::parse)
                .map_err(|(status, why)| self.refused(status, why, UNKNOWN_KIND))?;
        let info_type = event.kind_label();
        if event.app_id != self.settings.component_appid {
            return Err(self.refused(
                400,
                "the event is for another component appid".into(),
                info_type,
            ));
        }
        match self.apply(event, &xml).await {
            Ok(()) => {
                self.deps
                    .metrics
                    .platform_event(self.name(), info_type, "ok");
                Ok(Receipt { info_type })
            }
            Err(e) => {
                // Not stored: let WeChat's retry in.
                lock(&self.replay).release(admitted);
                self.deps
                    .metrics
                    .platform_event(self.name(), info_type, "failed");
                tracing::error!(platform = %self.name(), info_type,
                    error = %format!("{e:#}"), "push could not be stored; WeChat will retry it");
                Err(PushError::NotStored)
            }
        }
    }

    /// A push whose query has no envelope (timestamp, nonce and msg_signature), refused.
    pub fn malformed_envelope(&self) -> PushError {
        self.refused(
            400,
            "the query must carry timestamp, nonce and msg_signature".into(),
            UNKNOWN_KIND,
        )
    }

    /// A refusal, counted and logged.
    fn refused(&self, status: u16, message: String, info_type: &str) -> PushError {
        self.deps
            .metrics
            .platform_event(self.name(), info_type, "refused");
        tracing::warn!(platform = %self.name(), status, reason = %message, "push refused");
        PushError::Refused { status, message }
    }

    /// Applies one checked event; `Err` when it could not be persisted.
    async fn apply(&self, event: Event, xml: &str) -> anyhow::Result<()> {
        use secrecy::ExposeSecret as _;
        let info_type = event.kind_label();
        match event.kind {
            EventKind::VerifyTicket { ticket } => {
                self.store_ticket(AccessToken::new(ticket.expose_secret()))
                    .await?;
                tracing::debug!(platform = %self.name(), "verify ticket stored");
            }
            EventKind::Authorized(auth) | EventKind::UpdateAuthorized(auth) => {
                // Persisted first, as WeChat sent it: acknowledged, it is not sent again.
                self.save_event(info_type, xml).await?;
                self.deliver_event(info_type, xml).await?;
                // The code stored as pending, then exchanged in the background: WeChat wants
                // its answer within seconds, and an exchange cut short (a crash, WeChat
                // unreachable) is resumed from the stored code by this or any instance.
                let pending = self.accept_pushed_code(&auth).await?;
                self.exchange_pushed_code(pending);
            }
            EventKind::Unauthorized { authorizer_appid } => {
                self.revoke(&authorizer_appid).await?;
                self.deliver_event(info_type, xml).await?;
            }
            EventKind::Other { info_type } => {
                // Kept as sent: wxtoken does not act on it, but it is data someone may need (a
                // fast-registration result, say), and WeChat will not send it again.
                self.save_event(&info_type, xml).await?;
                self.deliver_event(&info_type, xml).await?;
                tracing::info!(platform = %self.name(), info_type = %info_type.escape_debug(),
                    "push of another kind stored");
            }
        }
        Ok(())
    }

    /// Stores a push's XML as WeChat sent it.
    async fn save_event(&self, info_type: &str, xml: &str) -> anyhow::Result<()> {
        let record = EventRecord {
            info_type: info_type.to_string(),
            received_at: SystemTime::now(),
            xml: xml.to_string(),
        };
        self.store.save_event(self.name(), &record).await
    }
}
