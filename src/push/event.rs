//! The events WeChat pushes to a platform's authorization event URL: the decrypted XML
//! parsed into a typed [`Event`], and an [`Event`] written back as that XML, so the fake
//! WeChat and the parser share one format.
//!
//! Every push carries `AppId` (the component appid), `CreateTime` and `InfoType`. By kind
//! (WeChat's docs "验证票据" and "授权变更通知推送"):
//! - `component_verify_ticket`: `ComponentVerifyTicket`.
//! - `authorized`, `updateauthorized`: `AuthorizerAppid`, `AuthorizationCode`,
//!   `AuthorizationCodeExpiredTime`, `PreAuthCode`.
//! - `unauthorized`: `AuthorizerAppid` only.
//! - anything else (`notify_third_fasteregister`, ...): kept as [`EventKind::Other`], never an
//!   error, because a refused push is retried by WeChat for nothing.
//!
//! The ticket and the codes are secrets, held as [`SecretString`] so `Debug` never prints
//! them. Parsing goes through the hardened reader in [`super::xml`] (size limit, no DOCTYPE or
//! custom entities, no duplicate fields); values are checked before they reach a store or an
//! upstream call, and a missing or malformed field is a clear error naming the field.
//!
//! `PreAuthCode` is optional: the authorization code is what the server needs, and refusing an
//! authorization over the pre-auth code (single use, already spent by then) would lose it.
//! The caller checks that `AppId` is its platform's component appid.

use secrecy::{ExposeSecret, SecretString};

use super::xml::{push_cdata_field, push_text_field, Fields, XmlError};
use crate::secret::plausible_credential;

/// The largest decrypted event accepted, in bytes. Real pushes are a few hundred bytes.
pub const MAX_EVENT_XML: usize = 64 * 1024;

/// The longest appid accepted. WeChat's are 18 characters (`wx` and 16 hex digits).
const MAX_APPID_LEN: usize = 64;

/// The longest number of seconds accepted: 12 digits reach the year 33658.
const MAX_SECONDS_DIGITS: usize = 12;

pub const VERIFY_TICKET: &str = "component_verify_ticket";
pub const AUTHORIZED: &str = "authorized";
pub const UPDATE_AUTHORIZED: &str = "updateauthorized";
pub const UNAUTHORIZED: &str = "unauthorized";

/// One push to the authorization event URL.
#[derive(Debug, Clone)]
pub struct Event {
    /// The component appid the push is for.
    pub app_id: String,
    /// When WeChat made the push, in seconds since 1970.
    pub create_time: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    /// A fresh `component_verify_ticket`.
    VerifyTicket { ticket: SecretString },
    /// An account authorized the platform.
    Authorized(Authorization),
    /// An account changed what it granted the platform.
    UpdateAuthorized(Authorization),
    /// An account revoked the platform.
    Unauthorized { authorizer_appid: String },
    /// Any other `InfoType`, as WeChat sent it (arbitrary text up to the size limit: log it
    /// escaped, label metrics with [`Event::kind_label`]).
    Other { info_type: String },
}

/// What an `authorized` or `updateauthorized` push carries.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub authorizer_appid: String,
    /// The code for `api_query_auth`.
    pub authorization_code: SecretString,
    /// `AuthorizationCodeExpiredTime`: when the code stops working, in seconds since 1970.
    pub code_expires_at: u64,
    pub pre_auth_code: Option<SecretString>,
}

impl Event {
    /// Parses decrypted event XML (the output of [`super::crypto::MsgCrypto::open`]).
    pub fn parse(xml: &str) -> Result<Event, XmlError> {
        let f = Fields::parse(xml.as_bytes(), MAX_EVENT_XML)?;
        let app_id = appid(&f, "AppId")?;
        let create_time = seconds(&f, "CreateTime")?;
        let info_type = f.required("InfoType")?;
        let kind = match info_type {
            VERIFY_TICKET => EventKind::VerifyTicket {
                ticket: credential(&f, "ComponentVerifyTicket")?,
            },
            AUTHORIZED => EventKind::Authorized(authorization(&f)?),
            UPDATE_AUTHORIZED => EventKind::UpdateAuthorized(authorization(&f)?),
            UNAUTHORIZED => EventKind::Unauthorized {
                authorizer_appid: appid(&f, "AuthorizerAppid")?,
            },
            other => EventKind::Other {
                info_type: other.to_owned(),
            },
        };
        Ok(Event {
            app_id,
            create_time,
            kind,
        })
    }

    /// The `InfoType` as sent.
    pub fn info_type(&self) -> &str {
        match &self.kind {
            EventKind::VerifyTicket { .. } => VERIFY_TICKET,
            EventKind::Authorized(_) => AUTHORIZED,
            EventKind::UpdateAuthorized(_) => UPDATE_AUTHORIZED,
            EventKind::Unauthorized { .. } => UNAUTHORIZED,
            EventKind::Other { info_type } => info_type,
        }
    }

    /// The `InfoType` from a fixed set, for metric labels: unknown kinds are `"other"`.
    pub fn kind_label(&self) -> &'static str {
        match &self.kind {
            EventKind::VerifyTicket { .. } => VERIFY_TICKET,
            EventKind::Authorized(_) => AUTHORIZED,
            EventKind::UpdateAuthorized(_) => UPDATE_AUTHORIZED,
            EventKind::Unauthorized { .. } => UNAUTHORIZED,
            EventKind::Other { .. } => "other",
        }
    }

    /// The event as WeChat writes it before encryption: strings in CDATA, times as plain
    /// numbers, fields in the order of WeChat's documentation.
    pub fn to_xml(&self) -> String {
        let mut x = String::with_capacity(256);
        x.push_str("<xml>");
        push_cdata_field(&mut x, "AppId", &self.app_id);
        push_text_field(&mut x, "CreateTime", &self.create_time.to_string());
        push_cdata_field(&mut x, "InfoType", self.info_type());
        match &self.kind {
            EventKind::VerifyTicket { ticket } => {
                push_cdata_field(&mut x, "ComponentVerifyTicket", ticket.expose_secret());
            }
            EventKind::Authorized(a) | EventKind::UpdateAuthorized(a) => {
                push_cdata_field(&mut x, "AuthorizerAppid", &a.authorizer_appid);
                push_cdata_field(
                    &mut x,
                    "AuthorizationCode",
                    a.authorization_code.expose_secret(),
                );
                push_text_field(
                    &mut x,
                    "AuthorizationCodeExpiredTime",
                    &a.code_expires_at.to_string(),
                );
                if let Some(p) = &a.pre_auth_code {
                    push_cdata_field(&mut x, "PreAuthCode", p.expose_secret());
                }
            }
            EventKind::Unauthorized { authorizer_appid } => {
                push_cdata_field(&mut x, "AuthorizerAppid", authorizer_appid);
            }
            EventKind::Other { .. } => {}
        }
        x.push_str("</xml>");
        x
    }
}

fn authorization(f: &Fields) -> Result<Authorization, XmlError> {
    let pre_auth_code = match f.optional("PreAuthCode")? {
        None | Some("") => None,
        Some(v) => Some(checked_credential("PreAuthCode", v)?),
    };
    Ok(Authorization {
        authorizer_appid: appid(f, "AuthorizerAppid")?,
        authorization_code: credential(f, "AuthorizationCode")?,
        code_expires_at: seconds(f, "AuthorizationCodeExpiredTime")?,
        pre_auth_code,
    })
}

pub(super) fn appid(f: &Fields, field: &'static str) -> Result<String, XmlError> {
    let v = f.required(field)?;
    let ok = v.len() <= MAX_APPID_LEN
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(XmlError::Invalid {
            field,
            why: "not an appid (up to 64 letters, digits, '_' or '-')",
        });
    }
    Ok(v.to_owned())
}

fn seconds(f: &Fields, field: &'static str) -> Result<u64, XmlError> {
    let v = f.required(field)?;
    let invalid = XmlError::Invalid {
        field,
        why: "not a number of seconds",
    };
    if v.len() > MAX_SECONDS_DIGITS || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid);
    }
    v.parse().map_err(|_| invalid)
}

pub(super) fn credential(f: &Fields, field: &'static str) -> Result<SecretString, XmlError> {
    checked_credential(field, f.required(field)?)
}

/// Tickets and codes go into upstream JSON bodies and stores: printable ASCII and bounded,
/// like every credential this server accepts.
fn checked_credential(field: &'static str, v: &str) -> Result<SecretString, XmlError> {
    if !plausible_credential(v) {
        return Err(XmlError::Invalid {
            field,
            why: "not a printable ASCII credential of at most 4096 bytes",
        });
    }
    Ok(SecretString::from(v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &str = "wx3c1f0a9d8e7b6a51";
    const AUTHORIZER: &str = "wxf8b4f85f3a794e77";

    fn ticket_event(ticket: &str) -> Event {
        Event {
            app_id: COMPONENT.into(),
            create_time: 1_413_192_605,
            kind: EventKind::VerifyTicket {
                ticket: ticket.into(),
            },
        }
    }

    fn authorization(pre: Option<&str>) -> Authorization {
        Authorization {
            authorizer_appid: AUTHORIZER.into(),
            authorization_code: "queryauthcode@@@cNBcl9VPLlr8vOIUSC".into(),
            code_expires_at: 1_413_196_205,
            pre_auth_code: pre.map(SecretString::from),
        }
    }

    #[test]
    fn verify_ticket_in_wechats_documented_form() {
        // Shaped like the sample in WeChat's "验证票据" page: CDATA strings, a plain time.
        let xml = "<xml>\n<AppId><![CDATA[wx3c1f0a9d8e7b6a51]]></AppId>\n\
                   <CreateTime>1413192605</CreateTime>\n\
                   <InfoType><![CDATA[component_verify_ticket]]></InfoType>\n\
                   <ComponentVerifyTicket><![CDATA[ticket@@@Cb9rGQEOVUzGv]]></ComponentVerifyTicket>\n\
                   </xml>";
        let e = Event::parse(xml).unwrap();
        assert_eq!(e.app_id, COMPONENT);
        assert_eq!(e.create_time, 1_413_192_605);
        assert_eq!(e.kind_label(), VERIFY_TICKET);
        match e.kind {
            EventKind::VerifyTicket { ticket } => {
                assert_eq!(ticket.expose_secret(), "ticket@@@Cb9rGQEOVUzGv")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_text_values_are_accepted_like_cdata() {
        let xml = "<xml><AppId>wx3c1f0a9d8e7b6a51</AppId><CreateTime> 1413192605 </CreateTime>\
                   <InfoType>unauthorized</InfoType><AuthorizerAppid>wxf8b4f85f3a794e77</AuthorizerAppid></xml>";
        let e = Event::parse(xml).unwrap();
        match e.kind {
            EventKind::Unauthorized { authorizer_appid } => {
                assert_eq!(authorizer_appid, AUTHORIZER)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_xml() {
        let events = [
            ticket_event("ticket@@@abc"),
            Event {
                kind: EventKind::Authorized(authorization(Some("preauthcode@@@xyz"))),
                ..ticket_event("x")
            },
            Event {
                kind: EventKind::UpdateAuthorized(authorization(None)),
                ..ticket_event("x")
            },
            Event {
                kind: EventKind::Unauthorized {
                    authorizer_appid: AUTHORIZER.into(),
                },
                ..ticket_event("x")
            },
            Event {
                kind: EventKind::Other {
                    info_type: "notify_third_fasteregister]]>x".into(),
                },
                ..ticket_event("x")
            },
        ];
        for e in events {
            let back = Event::parse(&e.to_xml()).unwrap();
            assert_eq!(back.app_id, e.app_id);
            assert_eq!(back.create_time, e.create_time);
            assert_eq!(back.info_type(), e.info_type());
            match (&e.kind, &back.kind) {
                (EventKind::VerifyTicket { ticket: a }, EventKind::VerifyTicket { ticket: b }) => {
                    assert_eq!(a.expose_secret(), b.expose_secret())
                }
                (EventKind::Authorized(a), EventKind::Authorized(b))
                | (EventKind::UpdateAuthorized(a), EventKind::UpdateAuthorized(b)) => {
                    assert_eq!(a.authorizer_appid, b.authorizer_appid);
                    assert_eq!(
                        a.authorization_code.expose_secret(),
                        b.authorization_code.expose_secret()
                    );
                    assert_eq!(a.code_expires_at, b.code_expires_at);
                    assert_eq!(
                        a.pre_auth_code
                            .as_ref()
                            .map(|p| p.expose_secret().to_owned()),
                        b.pre_auth_code
                            .as_ref()
                            .map(|p| p.expose_secret().to_owned())
                    );
                }
                (
                    EventKind::Unauthorized {
                        authorizer_appid: a,
                    },
                    EventKind::Unauthorized {
                        authorizer_appid: b,
                    },
                ) => assert_eq!(a, b),
                (EventKind::Other { info_type: a }, EventKind::Other { info_type: b }) => {
                    assert_eq!(a, b)
                }
                (a, b) => panic!("{a:?} came back as {b:?}"),
            }
        }
    }

    #[test]
    fn unknown_info_types_are_kept() {
        let xml = "<xml><AppId>wx3c1f0a9d8e7b6a51</AppId><CreateTime>1</CreateTime>\
                   <InfoType>notify_third_fasteregister</InfoType><status>0</status>\
                   <info><name><![CDATA[x]]></name></info></xml>";
        let e = Event::parse(xml).unwrap();
        assert_eq!(e.info_type(), "notify_third_fasteregister");
        assert_eq!(e.kind_label(), "other");
    }

    #[test]
    fn missing_duplicate_and_malformed_fields_name_the_field() {
        let base = |extra: &str, info: &str| {
            format!(
                "<xml><AppId>{COMPONENT}</AppId><CreateTime>1</CreateTime>\
                 <InfoType>{info}</InfoType>{extra}</xml>"
            )
        };
        let auth = "<AuthorizerAppid>wxa</AuthorizerAppid><AuthorizationCode>c</AuthorizationCode>\
                    <AuthorizationCodeExpiredTime>2</AuthorizationCodeExpiredTime>";
        assert!(Event::parse(&base(auth, AUTHORIZED)).is_ok());
        let cases = [
            (base("", VERIFY_TICKET), XmlError::Missing("ComponentVerifyTicket")),
            (
                base("<ComponentVerifyTicket></ComponentVerifyTicket>", VERIFY_TICKET),
                XmlError::Missing("ComponentVerifyTicket"),
            ),
            (
                base(
                    "<ComponentVerifyTicket>a</ComponentVerifyTicket>\
                     <ComponentVerifyTicket>b</ComponentVerifyTicket>",
                    VERIFY_TICKET,
                ),
                XmlError::Duplicate("ComponentVerifyTicket"),
            ),
            (base("", AUTHORIZED), XmlError::Missing("AuthorizerAppid")),
            (
                base(
                    "<AuthorizerAppid>wxa</AuthorizerAppid>\
                     <AuthorizationCodeExpiredTime>2</AuthorizationCodeExpiredTime>",
                    UPDATE_AUTHORIZED,
                ),
                XmlError::Missing("AuthorizationCode"),
            ),
            (
                base(
                    "<AuthorizerAppid>wxa</AuthorizerAppid><AuthorizationCode>c</AuthorizationCode>",
                    AUTHORIZED,
                ),
                XmlError::Missing("AuthorizationCodeExpiredTime"),
            ),
            (
                base(&format!("{auth}<AuthorizationCode>d</AuthorizationCode>"), AUTHORIZED),
                XmlError::Duplicate("AuthorizationCode"),
            ),
            (
                base(&format!("{auth}<PreAuthCode>a</PreAuthCode><PreAuthCode>b</PreAuthCode>"), AUTHORIZED),
                XmlError::Duplicate("PreAuthCode"),
            ),
            (base("", UNAUTHORIZED), XmlError::Missing("AuthorizerAppid")),
            (
                "<xml><CreateTime>1</CreateTime><InfoType>x</InfoType></xml>".into(),
                XmlError::Missing("AppId"),
            ),
            (
                format!("<xml><AppId>{COMPONENT}</AppId><InfoType>x</InfoType></xml>"),
                XmlError::Missing("CreateTime"),
            ),
            (
                format!("<xml><AppId>{COMPONENT}</AppId><CreateTime>1</CreateTime></xml>"),
                XmlError::Missing("InfoType"),
            ),
            (
                format!("<xml><AppId>{COMPONENT}</AppId><AppId>wxb</AppId><CreateTime>1</CreateTime><InfoType>x</InfoType></xml>"),
                XmlError::Duplicate("AppId"),
            ),
        ];
        for (xml, want) in cases {
            let got = Event::parse(&xml).unwrap_err();
            assert_eq!(got, want, "{xml}");
            assert!(got.to_string().contains(match &want {
                XmlError::Missing(f) | XmlError::Duplicate(f) => f,
                _ => unreachable!(),
            }));
        }
    }

    #[test]
    fn values_are_validated() {
        let with = |field: &str, value: &str| {
            let mut fields = vec![
                ("AppId", COMPONENT.to_owned()),
                ("CreateTime", "1".to_owned()),
                ("InfoType", AUTHORIZED.to_owned()),
                ("AuthorizerAppid", AUTHORIZER.to_owned()),
                ("AuthorizationCode", "code".to_owned()),
                ("AuthorizationCodeExpiredTime", "2".to_owned()),
            ];
            for f in fields.iter_mut() {
                if f.0 == field {
                    f.1 = value.to_owned();
                }
            }
            let mut x = String::from("<xml>");
            for (n, v) in fields {
                push_cdata_field(&mut x, n, &v);
            }
            x.push_str("</xml>");
            Event::parse(&x)
        };
        let invalid = |r: Result<Event, XmlError>| match r {
            Err(XmlError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(invalid(with("AppId", "wx<1>")), "AppId");
        assert_eq!(invalid(with("AppId", &"a".repeat(65))), "AppId");
        assert_eq!(invalid(with("CreateTime", "-1")), "CreateTime");
        assert_eq!(invalid(with("CreateTime", "1e9")), "CreateTime");
        assert_eq!(invalid(with("CreateTime", "9999999999999")), "CreateTime");
        assert_eq!(
            invalid(with("AuthorizationCodeExpiredTime", "soon")),
            "AuthorizationCodeExpiredTime"
        );
        assert_eq!(invalid(with("AuthorizerAppid", "wx 1")), "AuthorizerAppid");
        assert_eq!(
            invalid(with("AuthorizationCode", "a b")),
            "AuthorizationCode"
        );
        assert_eq!(
            invalid(with("AuthorizationCode", &"c".repeat(4097))),
            "AuthorizationCode"
        );
        assert!(with("AuthorizationCode", &"c".repeat(4096)).is_ok());
    }

    #[test]
    fn hostile_xml_is_refused_without_panicking() {
        let doctype = "<!DOCTYPE xml [<!ENTITY t \"ticket\">]><xml><AppId>&t;</AppId></xml>";
        assert_eq!(Event::parse(doctype).unwrap_err(), XmlError::Doctype);
        let big = format!(
            "<xml><AppId>{COMPONENT}</AppId><Pad>{}</Pad></xml>",
            "a".repeat(MAX_EVENT_XML)
        );
        assert!(matches!(Event::parse(&big), Err(XmlError::TooLarge { .. })));
        for junk in [
            "",
            "<xml>",
            "<xml><AppId>x</xml>",
            "\u{0}",
            "<<<<",
            "<xml></xml>",
        ] {
            assert!(Event::parse(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn debug_never_prints_the_ticket_or_the_codes() {
        let e = Event {
            kind: EventKind::Authorized(authorization(Some("preauthcode@@@secret-pre"))),
            ..ticket_event("x")
        };
        let d = format!("{e:?} {:?}", ticket_event("ticket@@@secret-ticket"));
        assert!(d.contains(AUTHORIZER), "{d}");
        for secret in ["secret-ticket", "cNBcl9VPLlr8vOIUSC", "secret-pre"] {
            assert!(!d.contains(secret), "{secret} in {d}");
        }
    }
}
