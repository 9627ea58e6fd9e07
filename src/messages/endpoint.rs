//! One message URL's side of WeChat's protocol: the URL check (`echostr`), and a push opened in
//! whichever mode it came (plaintext signed with `signature`; compatible and safe mode, whose
//! `Encrypt` is signed with `msg_signature` and sealed for the receiver's appid), in XML or in a
//! Mini Program's JSON; and a passive reply sealed as the push that it answers.
//!
//! Freshness is checked here (five minutes either way), replays are not: a retry of a push
//! repeats its timestamp, nonce and signature to the letter, and the hub takes it once by its
//! content, answering the retry `success`.

use std::time::SystemTime;

use rand::Rng as _;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Format;
use crate::push::crypto::{Envelope, MsgCrypto};
use crate::push::xml::{push_cdata_field, push_text_field, Fields};
use crate::push::{plain, replay};

/// The largest push body taken. WeChat's messages are a few KiB (a text is at most 2,048
/// bytes); event pushes with lists stay well below this.
pub const MAX_PUSH_BODY: usize = 64 * 1024;

/// The query WeChat puts on a message URL. Every parameter is optional here so that a missing
/// one is refused with a clear message instead of a parse error.
#[derive(Debug, Default, Deserialize)]
pub struct Query {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

/// Why a request to a message URL was refused: the status to answer (401: not shown to come
/// from WeChat now; 400: WeChat's, but not for this receiver or not readable) and why. Never
/// quotes the body, the token or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn unauthorized(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 401,
        message: message.into(),
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        message: message.into(),
    }
}

/// A push opened: its fields and the document as WeChat wrote it (decrypted).
#[derive(Debug)]
pub struct Opened {
    pub fields: Map<String, Value>,
    pub raw: String,
    /// It came encrypted: a passive reply must be sealed.
    pub encrypted: bool,
}

/// The keys and format of one message URL.
pub struct Endpoint {
    token: SecretString,
    /// For compatible and safe mode, sealed for the app's appid (or the component appid of a
    /// platform's accounts).
    crypto: Option<MsgCrypto>,
    format: Format,
    /// Plaintext pushes refused: a platform's accounts always push encrypted, so a plaintext
    /// one at their URL is not WeChat's.
    encrypted_only: bool,
}

impl Endpoint {
    /// An app's message URL: plaintext pushes always, encrypted ones when it has a key.
    pub fn app(token: SecretString, crypto: Option<MsgCrypto>, format: Format) -> Endpoint {
        Endpoint {
            token,
            crypto,
            format,
            encrypted_only: false,
        }
    }

    /// The message URL of a platform's authorized accounts: encrypted with the platform's key,
    /// XML.
    pub fn accounts(token: SecretString, crypto: MsgCrypto) -> Endpoint {
        Endpoint {
            token,
            crypto: Some(crypto),
            format: Format::Xml,
            encrypted_only: true,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// WeChat's URL check: answers the `echostr` when `signature` signs the timestamp and
    /// nonce with the Token, and the timestamp is fresh.
    pub fn verify_url(&self, q: &Query, now: SystemTime) -> Result<String, Refusal> {
        let (timestamp, nonce) = timestamp_nonce(q)?;
        self.check_plain_signature(q, timestamp, nonce)?;
        replay::check_fresh(timestamp, now).map_err(|e| unauthorized(e.to_string()))?;
        let echostr = q
            .echostr
            .as_deref()
            .ok_or_else(|| bad_request("the query has no echostr"))?;
        Ok(echostr.to_owned())
    }

    /// Opens a push: checks its signature and freshness, decrypts it if it is encrypted (the
    /// inner appid must be this receiver's), and reads its fields.
    pub fn open(&self, q: &Query, body: &[u8], now: SystemTime) -> Result<Opened, Refusal> {
        let (timestamp, nonce) = timestamp_nonce(q)?;
        let encrypted = q.encrypt_type.as_deref().is_some_and(|t| t == "aes");
        if let Some(other) = q
            .encrypt_type
            .as_deref()
            .filter(|t| *t != "aes" && *t != "raw")
        {
            return Err(bad_request(format!(
                "encrypt_type `{}` is not `aes` or `raw`",
                other.escape_debug()
            )));
        }
        let raw = if encrypted {
            let crypto = self.crypto.as_ref().ok_or_else(|| {
                bad_request("the push is encrypted and no encoding_aes_key is configured")
            })?;
            let envelope = Envelope {
                timestamp: timestamp.to_owned(),
                nonce: nonce.to_owned(),
                msg_signature: q
                    .msg_signature
                    .clone()
                    .ok_or_else(|| unauthorized("the query has no msg_signature"))?,
            };
            let encrypt = self.encrypt_field(body)?;
            crypto
                .open_encrypt(&envelope, &encrypt)
                .map_err(|e| Refusal {
                    status: e.http_status(),
                    message: e.to_string(),
                })?
        } else {
            if self.encrypted_only {
                return Err(bad_request(
                    "pushes to this URL are encrypted (encrypt_type=aes)",
                ));
            }
            self.check_plain_signature(q, timestamp, nonce)?;
            String::from_utf8(body.to_vec())
                .map_err(|_| bad_request("the push body is not UTF-8"))?
        };
        replay::check_fresh(timestamp, now).map_err(|e| unauthorized(e.to_string()))?;
        let fields = self.fields(&raw)?;
        Ok(Opened {
            fields,
            raw,
            encrypted,
        })
    }

    /// The plain `signature` of the query: present, and the Token's for this timestamp and nonce.
    fn check_plain_signature(
        &self,
        q: &Query,
        timestamp: &str,
        nonce: &str,
    ) -> Result<(), Refusal> {
        let signature = q
            .signature
            .as_deref()
            .ok_or_else(|| unauthorized("the query has no signature"))?;
        if plain::verify(&self.token, timestamp, nonce, signature) {
            Ok(())
        } else {
            Err(unauthorized("signature does not match the Token"))
        }
    }

    /// The `Encrypt` value of an encrypted push body, XML or JSON as the format says.
    fn encrypt_field(&self, body: &[u8]) -> Result<String, Refusal> {
        match self.format {
            Format::Xml => {
                let f = Fields::parse(body, MAX_PUSH_BODY).map_err(|e| {
                    bad_request(format!("the push body is not the expected XML: {e}"))
                })?;
                f.required("Encrypt")
                    .map(str::to_owned)
                    .map_err(|e| bad_request(format!("the push body is not the expected XML: {e}")))
            }
            Format::Json => {
                let map = json_map(body)?;
                match map.get("Encrypt") {
                    Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(bad_request("the push body has no Encrypt string")),
                }
            }
        }
    }

    /// The fields of a decrypted (or plaintext) push.
    fn fields(&self, raw: &str) -> Result<Map<String, Value>, Refusal> {
        match self.format {
            Format::Xml => {
                let f = Fields::parse(raw.as_bytes(), MAX_PUSH_BODY).map_err(|e| {
                    bad_request(format!("the message is not the expected XML: {e}"))
                })?;
                let mut map = Map::new();
                for (name, value) in f.iter() {
                    // A repeated field keeps its first value in `message`; the document keeps
                    // them all.
                    map.entry(name.to_owned())
                        .or_insert_with(|| Value::String(value.to_owned()));
                }
                Ok(map)
            }
            Format::Json => json_map(raw.as_bytes()),
        }
    }

    /// A passive reply as WeChat takes it for `opened`: as it is for a plaintext push; for an
    /// encrypted one, sealed for this receiver's appid and signed, in the push's format.
    pub fn seal_reply(&self, opened: &Opened, reply: &str, now: SystemTime) -> String {
        let crypto = match (&self.crypto, opened.encrypted) {
            (Some(c), true) => c,
            _ => return reply.to_owned(),
        };
        let timestamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        let nonce = rand::rng()
            .random_range(100_000_000u64..10_000_000_000)
            .to_string();
        let (encrypt, signature) = crypto.encrypt_signed(reply, &timestamp, &nonce);
        match self.format {
            Format::Xml => {
                let mut x = String::with_capacity(encrypt.len() + 200);
                x.push_str("<xml>");
                push_cdata_field(&mut x, "Encrypt", &encrypt);
                push_cdata_field(&mut x, "MsgSignature", &signature);
                push_text_field(&mut x, "TimeStamp", &timestamp);
                push_cdata_field(&mut x, "Nonce", &nonce);
                x.push_str("</xml>");
                x
            }
            Format::Json => serde_json::json!({
                "Encrypt": encrypt,
                "MsgSignature": signature,
                "TimeStamp": timestamp.parse::<u64>().unwrap_or(0),
                "Nonce": nonce,
            })
            .to_string(),
        }
    }
}

/// The timestamp and nonce every request to a message URL carries.
fn timestamp_nonce(q: &Query) -> Result<(&str, &str), Refusal> {
    match (q.timestamp.as_deref(), q.nonce.as_deref()) {
        (Some(t), Some(n)) => Ok((t, n)),
        _ => Err(unauthorized("the query must carry timestamp and nonce")),
    }
}

/// A JSON body that must be an object.
fn json_map(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    if body.len() > MAX_PUSH_BODY {
        return Err(bad_request(format!(
            "the push body is {} bytes, above the {MAX_PUSH_BODY}-byte limit",
            body.len()
        )));
    }
    crate::json::json_object::<Map<String, Value>>(body)
        .ok_or_else(|| bad_request("the push body is not a JSON object"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const TOKEN: &str = "shopToken42";
    const KEY: &str = "ShopShopShopShopShopShopShopShopShopShop123";
    const APPID: &str = "wxshop00000000001";

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn endpoint(format: Format) -> Endpoint {
        let crypto = MsgCrypto::new(TOKEN, KEY, APPID).unwrap();
        Endpoint::app(SecretString::from(TOKEN), Some(crypto), format)
    }

    fn sealed_query(encrypt_sig: &str) -> Query {
        Query {
            signature: Some(plain::signature(TOKEN, "1700000000", "77")),
            timestamp: Some("1700000000".into()),
            nonce: Some("77".into()),
            echostr: None,
            encrypt_type: Some("aes".into()),
            msg_signature: Some(encrypt_sig.into()),
        }
    }

    #[test]
    fn a_json_push_in_safe_mode_opens_to_its_fields_numbers_kept() {
        let e = endpoint(Format::Json);
        let crypto = MsgCrypto::new(TOKEN, KEY, APPID).unwrap();
        let inner = r#"{"ToUserName":"gh_x","FromUserName":"o1","CreateTime":1700000000,"MsgType":"text","Content":"hi","MsgId":99}"#;
        let (encrypt, sig) = crypto.encrypt_signed(inner, "1700000000", "77");
        let body = serde_json::json!({"ToUserName": "gh_x", "Encrypt": encrypt}).to_string();
        let opened = e.open(&sealed_query(&sig), body.as_bytes(), now()).unwrap();
        assert!(opened.encrypted);
        assert_eq!(opened.raw, inner);
        assert_eq!(opened.fields["MsgId"], serde_json::json!(99));
        assert_eq!(opened.fields["Content"], serde_json::json!("hi"));
    }

    #[test]
    fn a_reply_is_sealed_as_the_push_came_and_opens_for_the_appid() {
        let crypto = MsgCrypto::new(TOKEN, KEY, APPID).unwrap();
        for format in [Format::Xml, Format::Json] {
            let e = endpoint(format);
            let plain_push = Opened {
                fields: Map::new(),
                raw: String::new(),
                encrypted: false,
            };
            assert_eq!(
                e.seal_reply(&plain_push, "<xml>r</xml>", now()),
                "<xml>r</xml>"
            );
            let sealed_push = Opened {
                encrypted: true,
                ..plain_push
            };
            let reply = e.seal_reply(&sealed_push, "<xml>r</xml>", now());
            let (encrypt, envelope) = match format {
                Format::Xml => {
                    let f = Fields::parse(reply.as_bytes(), MAX_PUSH_BODY).unwrap();
                    let env = Envelope {
                        timestamp: f.required("TimeStamp").unwrap().into(),
                        nonce: f.required("Nonce").unwrap().into(),
                        msg_signature: f.required("MsgSignature").unwrap().into(),
                    };
                    (f.required("Encrypt").unwrap().to_owned(), env)
                }
                Format::Json => {
                    let v: Map<String, Value> = serde_json::from_str(&reply).unwrap();
                    let env = Envelope {
                        timestamp: v["TimeStamp"].to_string(),
                        nonce: v["Nonce"].as_str().unwrap().into(),
                        msg_signature: v["MsgSignature"].as_str().unwrap().into(),
                    };
                    (v["Encrypt"].as_str().unwrap().to_owned(), env)
                }
            };
            assert_eq!(envelope.timestamp, "1700000000");
            assert_eq!(
                crypto.open_encrypt(&envelope, &encrypt).unwrap(),
                "<xml>r</xml>"
            );
            // Sealed for this app only.
            let other = MsgCrypto::new(TOKEN, KEY, "wxother").unwrap();
            assert!(other.open_encrypt(&envelope, &encrypt).is_err());
        }
    }

    #[test]
    fn refusals_name_their_status() {
        let e = endpoint(Format::Xml);
        let mut q = sealed_query("00");
        q.encrypt_type = Some("rsa".into());
        assert_eq!(e.open(&q, b"<xml/>", now()).unwrap_err().status, 400);
        let q = Query {
            timestamp: Some("1700000000".into()),
            ..Query::default()
        };
        assert_eq!(e.open(&q, b"<xml/>", now()).unwrap_err().status, 401);
        // Signed, fresh, plaintext, but not XML: 400.
        let mut q = sealed_query("00");
        q.encrypt_type = None;
        assert_eq!(e.open(&q, b"not xml", now()).unwrap_err().status, 400);
        // The same a minute past the window: 401.
        let later = now() + Duration::from_secs(301);
        assert_eq!(e.open(&q, b"<xml></xml>", later).unwrap_err().status, 401);
    }
}
