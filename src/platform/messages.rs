//! The messages of a platform's authorized accounts (its message URL,
//! `.../accounts/$APPID$/messages`) and its own events, handed to the message hub. An account's
//! push is sealed with the platform's keys for the component appid; an account wxtoken does not
//! know yet is taken all the same, since the signature proves the push came from WeChat.

use std::time::SystemTime;

use super::release_check::ReleaseAnswer;
use super::runtime::Platform;
use crate::messages::endpoint::{Endpoint, Opened};
use crate::messages::{Inbound, Source, TakeError, Taken};
use crate::push::event::VERIFY_TICKET;

/// What an account's push came to: WeChat's answer.
pub enum AccountAnswer {
    /// Taken (or a retry of one taken, or matched by no route): `success`.
    Success,
    /// A passive reply, plaintext; the caller seals it with [`Platform::accounts_endpoint`].
    Reply(String),
    /// The release check's empty answer.
    Empty,
}

impl Platform {
    /// The message URL of this platform's accounts: its Token and EncodingAESKey, the
    /// component appid as receive id.
    pub fn accounts_endpoint(&self) -> Endpoint {
        Endpoint::accounts(self.settings.token.clone(), self.crypto.clone())
    }

    /// Takes a push opened at the message URL of account `appid`: the release check's test
    /// accounts are answered here (when `release_check` is on); everything else goes to the
    /// hub.
    pub async fn take_account_message(
        &self,
        appid: &str,
        opened: &Opened,
    ) -> Result<AccountAnswer, TakeError> {
        if let Some(answer) = self.release_check(appid, &opened.fields) {
            return Ok(match answer {
                ReleaseAnswer::Reply(xml) => AccountAnswer::Reply(xml),
                ReleaseAnswer::Empty => AccountAnswer::Empty,
            });
        }
        let inbound = Inbound::new(
            Source::account(self.name(), appid),
            SystemTime::now(),
            opened.fields.clone(),
            opened.raw.clone(),
            crate::messages::Format::Xml,
        );
        match self.hub.take(inbound).await? {
            Taken::New {
                reply: Some(wait), ..
            } => Ok(match wait.await {
                Some(reply) => AccountAnswer::Reply(reply),
                None => AccountAnswer::Success,
            }),
            _ => Ok(AccountAnswer::Success),
        }
    }

    /// Hands one of the platform's own events (already applied and stored) to the hub, so
    /// routes with `info_types` receive it. The verify ticket stays internal. An event that
    /// could not be queued fails the push: WeChat sends it again, applying it again does no
    /// harm, and the hub takes it once.
    pub(super) async fn deliver_event(&self, info_type: &str, xml: &str) -> anyhow::Result<()> {
        if info_type == VERIFY_TICKET {
            return Ok(());
        }
        // The document was parsed once already on its way here (under the same limit); its
        // fields are read again for the delivery's `message`.
        let fields =
            crate::push::xml::Fields::parse(xml.as_bytes(), crate::push::event::MAX_EVENT_XML)?
                .iter()
                .map(|(n, v)| (n.to_owned(), serde_json::Value::String(v.to_owned())))
                .collect();
        let inbound = Inbound::new(
            Source::platform(self.name(), self.component_appid()),
            SystemTime::now(),
            fields,
            xml.to_owned(),
            crate::messages::Format::Xml,
        );
        self.hub.take(inbound).await?;
        Ok(())
    }
}
