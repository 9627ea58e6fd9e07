//! The callbacks WeCom pushes to a suite's 指令回调 URL, decrypted XML parsed into a typed
//! [`SuiteEvent`]. Every push carries `SuiteId` and `InfoType`; by kind:
//! - `suite_ticket`: `SuiteTicket` (every ten minutes, valid thirty);
//! - `create_auth`: `AuthCode` (single use) and `State`;
//! - `change_auth`, `cancel_auth`: `AuthCorpId`;
//! - `reset_permanent_code`: `AuthCode` (the corp comes from its exchange);
//! - anything else (contact changes, licences): [`SuiteEventKind::Other`], never an error.
//!
//! The same hardened reader and field checks as the Open Platform's events ([`super::event`]);
//! the ticket and the AuthCode are held as [`SecretString`]. The caller checks `SuiteId`.

use secrecy::SecretString;

use super::event::{appid, credential, MAX_EVENT_XML};
use super::xml::{Fields, XmlError};

pub const SUITE_TICKET: &str = "suite_ticket";
pub const CREATE_AUTH: &str = "create_auth";
pub const CHANGE_AUTH: &str = "change_auth";
pub const CANCEL_AUTH: &str = "cancel_auth";
pub const RESET_PERMANENT_CODE: &str = "reset_permanent_code";

/// One callback of a suite.
#[derive(Debug, Clone)]
pub struct SuiteEvent {
    pub suite_id: String,
    pub kind: SuiteEventKind,
}

#[derive(Debug, Clone)]
pub enum SuiteEventKind {
    Ticket {
        ticket: SecretString,
    },
    /// `create_auth` or `reset_permanent_code`: an AuthCode to exchange.
    AuthCode {
        code: SecretString,
        reset: bool,
    },
    ChangeAuth {
        corpid: String,
    },
    CancelAuth {
        corpid: String,
    },
    /// Any other `InfoType`, as sent (label metrics with [`SuiteEvent::kind_label`]).
    Other {
        info_type: String,
    },
}

impl SuiteEvent {
    pub fn parse(xml: &str) -> Result<SuiteEvent, XmlError> {
        let f = Fields::parse(xml.as_bytes(), MAX_EVENT_XML)?;
        let suite_id = appid(&f, "SuiteId")?;
        let kind = match f.required("InfoType")? {
            SUITE_TICKET => SuiteEventKind::Ticket {
                ticket: credential(&f, "SuiteTicket")?,
            },
            CREATE_AUTH => SuiteEventKind::AuthCode {
                code: credential(&f, "AuthCode")?,
                reset: false,
            },
            RESET_PERMANENT_CODE => SuiteEventKind::AuthCode {
                code: credential(&f, "AuthCode")?,
                reset: true,
            },
            CHANGE_AUTH => SuiteEventKind::ChangeAuth {
                corpid: appid(&f, "AuthCorpId")?,
            },
            CANCEL_AUTH => SuiteEventKind::CancelAuth {
                corpid: appid(&f, "AuthCorpId")?,
            },
            other => SuiteEventKind::Other {
                info_type: other.to_owned(),
            },
        };
        Ok(SuiteEvent { suite_id, kind })
    }

    /// The `InfoType` from a fixed set, for metric labels: unknown kinds are `"other"`.
    pub fn kind_label(&self) -> &'static str {
        match &self.kind {
            SuiteEventKind::Ticket { .. } => SUITE_TICKET,
            SuiteEventKind::AuthCode { reset: false, .. } => CREATE_AUTH,
            SuiteEventKind::AuthCode { reset: true, .. } => RESET_PERMANENT_CODE,
            SuiteEventKind::ChangeAuth { .. } => CHANGE_AUTH,
            SuiteEventKind::CancelAuth { .. } => CANCEL_AUTH,
            SuiteEventKind::Other { .. } => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_parses_and_a_bad_field_is_named() {
        let xml = |body: &str| format!("<xml><SuiteId><![CDATA[wwsuite]]></SuiteId>{body}</xml>");
        let e = SuiteEvent::parse(&xml(
            "<InfoType>suite_ticket</InfoType><TimeStamp>1</TimeStamp><SuiteTicket>t-1</SuiteTicket>",
        ))
        .unwrap();
        assert_eq!(e.kind_label(), SUITE_TICKET);
        assert_eq!(e.suite_id, "wwsuite");
        let e = SuiteEvent::parse(&xml(
            "<InfoType>reset_permanent_code</InfoType><AuthCode>c-1</AuthCode>",
        ))
        .unwrap();
        assert!(matches!(
            e.kind,
            SuiteEventKind::AuthCode { reset: true, .. }
        ));
        let e = SuiteEvent::parse(&xml(
            "<InfoType>cancel_auth</InfoType><AuthCorpId>wwc</AuthCorpId>",
        ))
        .unwrap();
        assert!(matches!(e.kind, SuiteEventKind::CancelAuth { ref corpid } if corpid == "wwc"));
        let e = SuiteEvent::parse(&xml("<InfoType>change_contact</InfoType>")).unwrap();
        assert_eq!(e.kind_label(), "other");
        let err = SuiteEvent::parse(&xml("<InfoType>create_auth</InfoType>")).unwrap_err();
        assert!(err.to_string().contains("AuthCode"), "{err}");
        assert!(!format!("{e:?}").contains("t-1"));
    }
}
