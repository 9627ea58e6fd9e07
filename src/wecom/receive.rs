//! A callback to the suite's URL, received: opened (signature, then decryption for the suite
//! id), admitted (freshness and replay), parsed, checked to be for this suite, then applied and
//! stored before it is answered `success`. Work that calls WeCom (exchanging an AuthCode,
//! reading a changed grant) runs after the answer, in the background. Refusals and errors are
//! the platform's ([`PushError`]): 401 for a bad signature or a stale push, 400 for another
//! receive id or an undecryptable one; a push that could not be stored releases its admission
//! so WeCom's retry gets in.
//!
//! Also here: WeCom's URL check (a GET whose `echostr` is encrypted for the provider's corpid),
//! answered with the plaintext.

use std::time::SystemTime;

use super::runtime::{lock, Suite};
use crate::platform::{PushError, Receipt};
use crate::push::crypto::Envelope;
use crate::push::replay::open_admit_parse;
use crate::push::suite_event::{SuiteEvent, SuiteEventKind};
use crate::secret::AccessToken;

/// The kind of a push refused before its event could be read.
const UNKNOWN_KIND: &str = "unknown";

impl Suite {
    /// Receives one callback: `envelope` is its query, `body` the encrypted XML WeCom posted.
    pub async fn receive(&self, envelope: &Envelope, body: &[u8]) -> Result<Receipt, PushError> {
        let (xml, event, admitted) = open_admit_parse(
            &self.crypto,
            &self.replay,
            envelope,
            body,
            SuiteEvent::parse,
        )
        .map_err(|(status, why)| self.refused(status, why, UNKNOWN_KIND))?;
        let info_type = event.kind_label();
        if event.suite_id != self.settings.suite_id {
            return Err(self.refused(400, "the event is for another suite id".into(), info_type));
        }
        match self.apply(event, &xml).await {
            Ok(()) => {
                self.count(info_type, "ok");
                Ok(Receipt { info_type })
            }
            Err(e) => {
                lock(&self.replay).release(admitted);
                self.count(info_type, "failed");
                tracing::error!(suite = %self.name(), info_type, error = %format!("{e:#}"),
                    "callback could not be stored; WeCom will retry it");
                Err(PushError::NotStored)
            }
        }
    }

    /// WeCom's URL check: verifies `msg_signature` over `echostr`, decrypts it (for the
    /// provider's corpid when the suite names its provider; see
    /// [`crate::push::crypto::MsgCrypto::open_encrypt_any_receiver`] otherwise) and answers the
    /// plaintext.
    pub fn verify_url(&self, envelope: &Envelope, echostr: &str) -> Result<String, PushError> {
        let opened = match &self.url_crypto {
            Some(c) => c.open_encrypt(envelope, echostr),
            None => self.crypto.open_encrypt_any_receiver(envelope, echostr),
        };
        // The signature first: only a sender holding the Token learns anything more.
        let plain =
            opened.map_err(|e| self.refused(e.http_status(), e.to_string(), "url_check"))?;
        crate::push::replay::check_fresh(&envelope.timestamp, SystemTime::now())
            .map_err(|e| self.refused(e.http_status(), e.to_string(), "url_check"))?;
        Ok(plain)
    }

    /// A callback whose query has no envelope, refused.
    pub fn malformed_envelope(&self) -> PushError {
        self.refused(
            400,
            "the query must carry timestamp, nonce and msg_signature".into(),
            UNKNOWN_KIND,
        )
    }

    fn count(&self, info_type: &str, result: &str) {
        self.deps
            .metrics
            .wecom_callback(self.name(), info_type, result);
    }

    fn refused(&self, status: u16, message: String, info_type: &str) -> PushError {
        self.count(info_type, "refused");
        tracing::warn!(suite = %self.name(), status, reason = %message, "callback refused");
        PushError::Refused { status, message }
    }

    /// Applies one checked event; `Err` when it could not be persisted.
    async fn apply(&self, event: SuiteEvent, xml: &str) -> anyhow::Result<()> {
        use secrecy::ExposeSecret as _;
        let info_type = event.kind_label();
        match event.kind {
            SuiteEventKind::Ticket { ticket } => {
                self.store_ticket(AccessToken::new(ticket.expose_secret()))
                    .await?;
                tracing::debug!(suite = %self.name(), "suite ticket stored");
            }
            SuiteEventKind::AuthCode { code, .. } => {
                // Stored first: an exchange cut short is resumed from it, by any instance.
                let pending = self.accept_code(&code).await?;
                self.exchange_in_background(pending);
            }
            SuiteEventKind::ChangeAuth { corpid } => {
                self.store.save_event(info_type, xml).await?;
                self.refresh_auth_info(&corpid);
            }
            SuiteEventKind::CancelAuth { corpid } => {
                self.revoke(&corpid).await?;
                self.store.save_event(info_type, xml).await?;
            }
            SuiteEventKind::Other { ref info_type } => {
                // Kept as sent: wxtoken does not act on it, and WeCom will not send it again.
                self.store.save_event(info_type, xml).await?;
                tracing::info!(suite = %self.name(), info_type = %info_type.escape_debug(),
                    "callback of another kind stored");
            }
        }
        Ok(())
    }
}
