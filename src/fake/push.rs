//! The fake's event pushes: verify tickets and authorization changes, encrypted and signed with
//! the platform's keys and POSTed to its event URL as WeChat sends them
//! (`?timestamp=&nonce=&encrypt_type=aes&msg_signature=&signature=`, the encrypted XML as the
//! body), with each outcome recorded for tests.

use std::fmt;
use std::time::{Duration, SystemTime};

use rand::Rng;
use secrecy::SecretString;

use super::component_state::{Authorized, ControlError, PushTarget};
use super::routes::{lock, Shared};
use crate::push::crypto::MsgCrypto;
use crate::push::event::{self, Authorization, EventKind};

/// How long a push waits for the receiver's answer.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of the receiver's answer is kept in a [`PushRecord`].
const BODY_KEPT: usize = 1024;

/// What to push.
pub(super) enum Event {
    /// A freshly minted verify ticket.
    Ticket,
    /// `authorized` or `updateauthorized`, with the authorization code.
    Authorization(Authorized),
    /// `unauthorized` for that authorizer appid.
    Unauthorized(String),
}

/// One push and how the receiver answered it.
#[derive(Clone, PartialEq, Eq)]
pub struct PushRecord {
    pub component_appid: String,
    /// `component_verify_ticket`, `authorized`, `updateauthorized` or `unauthorized`.
    pub info_type: String,
    pub authorizer_appid: Option<String>,
    /// The ticket a `component_verify_ticket` push carried.
    pub ticket: Option<String>,
    /// The receiver's HTTP status (`None` if no answer arrived).
    pub status: Option<u16>,
    /// The start of the receiver's answer (WeChat wants exactly `success`).
    pub body: String,
    /// Why the push got no answer, if it did not.
    pub error: Option<String>,
}

impl PushRecord {
    /// The receiver took it: HTTP 200 and the body `success`.
    pub fn accepted(&self) -> bool {
        self.status == Some(200) && self.body == "success"
    }
}

/// Written by hand so that the ticket never reaches a log.
impl fmt::Debug for PushRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushRecord")
            .field("component_appid", &self.component_appid)
            .field("info_type", &self.info_type)
            .field("authorizer_appid", &self.authorizer_appid)
            .field("status", &self.status)
            .field("body", &self.body)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Pushes one event to the platform's event URL and records the outcome. Errors (nothing
/// pushed, nothing minted) when the platform is unknown or has no event URL; a push the
/// receiver refused or never answered is a recorded outcome, not an error.
pub(super) async fn push(
    state: &Shared,
    component_appid: &str,
    event: Event,
) -> Result<PushRecord, ControlError> {
    // Real time, not the fake clock: the receiver checks the timestamp against its own clock.
    let unix_now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (target, xml, mut record) = {
        let mut s = lock(state);
        let (component, m) = s.component();
        let target = component.push_target(component_appid)?;
        let mut record = PushRecord {
            component_appid: component_appid.to_owned(),
            info_type: String::new(),
            authorizer_appid: None,
            ticket: None,
            status: None,
            body: String::new(),
            error: None,
        };
        let kind = match event {
            Event::Ticket => {
                let ticket = component.mint_ticket(component_appid, m.now)?;
                record.ticket = Some(ticket.clone());
                EventKind::VerifyTicket {
                    ticket: SecretString::from(ticket),
                }
            }
            Event::Authorization(a) => {
                record.authorizer_appid = Some(a.authorizer_appid.clone());
                let authorization = Authorization {
                    authorizer_appid: a.authorizer_appid,
                    authorization_code: SecretString::from(a.authorization_code),
                    code_expires_at: a.code_expires_at,
                    pre_auth_code: Some(SecretString::from(a.pre_auth_code)),
                };
                if a.info_type == event::UPDATE_AUTHORIZED {
                    EventKind::UpdateAuthorized(authorization)
                } else {
                    EventKind::Authorized(authorization)
                }
            }
            Event::Unauthorized(authorizer_appid) => {
                record.authorizer_appid = Some(authorizer_appid.clone());
                EventKind::Unauthorized { authorizer_appid }
            }
        };
        let event = event::Event {
            app_id: component_appid.to_owned(),
            create_time: unix_now,
            kind,
        };
        record.info_type = event.info_type().to_owned();
        (target, event.to_xml(), record)
    };

    let timestamp = unix_now.to_string();
    let nonce = rand::rng()
        .random_range(100_000_000u64..10_000_000_000)
        .to_string();
    match seal(&target, &xml, &timestamp, &nonce) {
        Ok((query, body)) => match post(&target.url, &query, body).await {
            Ok((status, body)) => {
                record.status = Some(status);
                record.body = body;
            }
            Err(err) => record.error = Some(err),
        },
        Err(err) => record.error = Some(err),
    }
    tracing::debug!(
        component_appid,
        info_type = %record.info_type,
        status = ?record.status,
        error = ?record.error,
        "fake pushed an event"
    );
    lock(state).component().0.record_push(record.clone());
    Ok(record)
}

/// The query string and the body of a push of `xml`, encrypted for the platform. A platform
/// configured with a key that is no EncodingAESKey cannot push: that is the recorded outcome.
fn seal(
    target: &PushTarget,
    xml: &str,
    timestamp: &str,
    nonce: &str,
) -> Result<(String, String), String> {
    let crypto = MsgCrypto::new(
        &target.msg_token,
        &target.encoding_aes_key,
        &target.component_appid,
    )
    .map_err(|err| err.to_string())?;
    let sealed = crypto.seal(xml, timestamp, nonce);
    let signature = crate::push::plain::signature(&target.msg_token, timestamp, nonce);
    Ok((
        format!("{}&signature={signature}", sealed.query()),
        sealed.body,
    ))
}

pub(super) async fn post(url: &str, query: &str, body: String) -> Result<(u16, String), String> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let client = awc::Client::builder().timeout(PUSH_TIMEOUT).finish();
    let mut res = client
        .post(format!("{url}{separator}{query}"))
        .content_type("text/xml")
        .send_body(body)
        .await
        .map_err(|err| err.to_string())?;
    let status = res.status().as_u16();
    let bytes = res
        .body()
        .limit(64 * 1024)
        .await
        .map_err(|err| err.to_string())?;
    let kept = &bytes[..bytes.len().min(BODY_KEPT)];
    Ok((status, String::from_utf8_lossy(kept).into_owned()))
}
