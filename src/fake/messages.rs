//! The fake's message pushes: a user's message or event as WeChat pushes it to an app's or an
//! authorized account's message URL, in plaintext, compatible or safe mode, XML or JSON, sent
//! again (the same query and body, to the letter) when no `200` comes within the timeout, as
//! WeChat does; the passive reply read back and, when sealed, opened and checked as WeChat
//! checks it. Also the Open Platform's release check (全网发布) as WeChat runs it.

use std::time::{Duration, SystemTime};

use rand::Rng as _;
use serde_json::{Map, Value};

use super::FakeWechat;
use crate::config::MessageFormat;
use crate::push::crypto::{Envelope, MsgCrypto};
use crate::push::plain;
use crate::push::xml::{push_cdata_field, push_text_field, Fields};

/// How WeChat sends a push: the app's console setting (a platform's accounts use `Safe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The message as it is, signed with `signature` (token, timestamp, nonce).
    Plaintext,
    /// The message's fields and its `Encrypt` side by side.
    Compatible,
    /// Only `ToUserName` and `Encrypt`.
    Safe,
}

/// Where and how a push goes: the message URL and the keys of the app (or of the platform, for
/// its accounts, with the component appid as `appid`).
#[derive(Clone)]
pub struct MessageTarget {
    pub url: String,
    pub token: String,
    pub encoding_aes_key: Option<String>,
    /// The receive id the push is sealed for.
    pub appid: String,
    pub format: MessageFormat,
}

/// WeChat's patience: how long it waits for an answer, and how many times it sends again.
#[derive(Clone, Copy, Debug)]
pub struct Retries {
    pub timeout: Duration,
    pub again: u32,
}

impl Default for Retries {
    /// WeChat's: 5 s, then three more times.
    fn default() -> Self {
        Retries {
            timeout: Duration::from_secs(5),
            again: 3,
        }
    }
}

/// How a push went: the last answer, and the passive reply in it, opened.
#[derive(Clone, Debug, Default)]
pub struct Pushed {
    /// Requests sent (1 when the first was answered `200`).
    pub attempts: u32,
    pub status: Option<u16>,
    /// The last answer's body, as it came.
    pub body: String,
    /// The passive reply: the body itself for a plaintext push; for a sealed one, the opened
    /// message when its signature and appid check out (`None` if they do not, or if the answer
    /// was `success` or empty).
    pub reply: Option<String>,
    /// Why the last attempt got no answer, if it did not.
    pub error: Option<String>,
}

/// A text message from `from` (an openid) to `to` (the account's original id) as XML.
pub fn text_message(to: &str, from: &str, content: &str, msg_id: u64) -> Vec<(String, String)> {
    vec![
        ("ToUserName".into(), to.into()),
        ("FromUserName".into(), from.into()),
        ("CreateTime".into(), unix_now().to_string()),
        ("MsgType".into(), "text".into()),
        ("Content".into(), content.into()),
        ("MsgId".into(), msg_id.to_string()),
    ]
}

/// An event push (`subscribe`, `CLICK`, ...), with `EventKey` when given.
pub fn event_message(
    to: &str,
    from: &str,
    event: &str,
    event_key: Option<&str>,
) -> Vec<(String, String)> {
    let mut fields = vec![
        ("ToUserName".into(), to.into()),
        ("FromUserName".into(), from.into()),
        ("CreateTime".into(), unix_now().to_string()),
        ("MsgType".into(), "event".into()),
        ("Event".into(), event.into()),
    ];
    if let Some(key) = event_key {
        fields.push(("EventKey".into(), key.into()));
    }
    fields
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Numbers stay numbers in JSON and plain text in XML, as WeChat writes them.
const NUMERIC: [&str; 2] = ["CreateTime", "MsgId"];

/// The document of a message in `format`.
pub fn document(fields: &[(String, String)], format: MessageFormat) -> String {
    match format {
        MessageFormat::Xml => {
            let mut x = String::from("<xml>");
            for (name, value) in fields {
                if NUMERIC.contains(&name.as_str()) {
                    push_text_field(&mut x, name, value);
                } else {
                    push_cdata_field(&mut x, name, value);
                }
            }
            x.push_str("</xml>");
            x
        }
        MessageFormat::Json => {
            let map: Map<String, Value> = fields
                .iter()
                .map(|(n, v)| {
                    let value = match v.parse::<u64>() {
                        Ok(n_) if NUMERIC.contains(&n.as_str()) => Value::from(n_),
                        _ => Value::from(v.clone()),
                    };
                    (n.clone(), value)
                })
                .collect();
            Value::Object(map).to_string()
        }
    }
}

/// The query and body of one push of `fields` to `target` in `mode` (fresh timestamp and
/// nonce): what [`push_message`] sends, for a test that replays a push to the letter.
pub fn seal(
    target: &MessageTarget,
    fields: &[(String, String)],
    mode: Mode,
) -> Result<(String, String), String> {
    let timestamp = unix_now().to_string();
    let nonce = rand::rng()
        .random_range(100_000_000u64..10_000_000_000)
        .to_string();
    let signature = plain::signature(&target.token, &timestamp, &nonce);
    let plain_doc = document(fields, target.format);
    let mut query = format!("signature={signature}&timestamp={timestamp}&nonce={nonce}");
    if let Some((_, from)) = fields.iter().find(|(n, _)| n == "FromUserName") {
        query.push_str(&format!("&openid={from}"));
    }
    if mode == Mode::Plaintext {
        return Ok((query, plain_doc));
    }
    let crypto = crypto(target)?;
    let (encrypt, msg_signature) = crypto.encrypt_signed(&plain_doc, &timestamp, &nonce);
    query.push_str(&format!("&encrypt_type=aes&msg_signature={msg_signature}"));
    let to = fields
        .iter()
        .find(|(n, _)| n == "ToUserName")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut outer: Vec<(String, String)> = if mode == Mode::Compatible {
        fields.to_vec()
    } else {
        vec![("ToUserName".into(), to)]
    };
    outer.push(("Encrypt".into(), encrypt));
    let body = match target.format {
        MessageFormat::Xml => document(&outer, MessageFormat::Xml),
        MessageFormat::Json => {
            let map: Map<String, Value> = outer
                .into_iter()
                .map(|(n, v)| (n, Value::from(v)))
                .collect();
            Value::Object(map).to_string()
        }
    };
    Ok((query, body))
}

fn crypto(target: &MessageTarget) -> Result<MsgCrypto, String> {
    let key = target
        .encoding_aes_key
        .as_deref()
        .ok_or("the target has no EncodingAESKey")?;
    MsgCrypto::new(&target.token, key, &target.appid).map_err(|e| e.to_string())
}

/// Pushes `fields` to `target` in `mode` as WeChat does: the same request again when no `200`
/// comes within `retries.timeout`, up to `retries.again` more times.
pub async fn push_message(
    target: &MessageTarget,
    fields: &[(String, String)],
    mode: Mode,
    retries: Retries,
) -> Pushed {
    let (query, body) = match seal(target, fields, mode) {
        Ok(q) => q,
        Err(error) => {
            return Pushed {
                error: Some(error),
                ..Pushed::default()
            }
        }
    };
    let separator = if target.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}{query}", target.url);
    let client = awc::Client::builder().timeout(retries.timeout).finish();
    let content_type = match target.format {
        MessageFormat::Xml => "text/xml",
        MessageFormat::Json => "application/json",
    };
    let mut pushed = Pushed::default();
    for _ in 0..=retries.again {
        pushed.attempts += 1;
        let sent = client
            .post(&url)
            .content_type(content_type)
            .send_body(body.clone())
            .await;
        match sent {
            Ok(mut res) => {
                pushed.status = Some(res.status().as_u16());
                pushed.error = None;
                pushed.body = match res.body().limit(64 * 1024).await {
                    Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                    Err(e) => {
                        pushed.error = Some(e.to_string());
                        String::new()
                    }
                };
                if pushed.status == Some(200) && pushed.error.is_none() {
                    break;
                }
            }
            Err(e) => {
                pushed.status = None;
                pushed.error = Some(e.to_string());
            }
        }
    }
    if pushed.status == Some(200) {
        pushed.reply = open_reply(target, mode, &pushed.body);
    }
    pushed
}

/// The passive reply in an answer, as WeChat reads it: nothing for `success` or an empty
/// body; the body for a plaintext push; for a sealed one, the message inside when its
/// signature checks out and it is sealed for the target's appid.
fn open_reply(target: &MessageTarget, mode: Mode, body: &str) -> Option<String> {
    if body.is_empty() || body == "success" {
        return None;
    }
    if mode == Mode::Plaintext {
        return Some(body.to_owned());
    }
    let crypto = crypto(target).ok()?;
    let (encrypt, envelope) = match target.format {
        MessageFormat::Xml => {
            let f = Fields::parse(body.as_bytes(), 64 * 1024).ok()?;
            let envelope = Envelope {
                timestamp: f.required("TimeStamp").ok()?.to_owned(),
                nonce: f.required("Nonce").ok()?.to_owned(),
                msg_signature: f.required("MsgSignature").ok()?.to_owned(),
            };
            (f.required("Encrypt").ok()?.to_owned(), envelope)
        }
        MessageFormat::Json => {
            let v: Map<String, Value> = serde_json::from_str(body).ok()?;
            let text = |k: &str| match v.get(k)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let envelope = Envelope {
                timestamp: text("TimeStamp")?,
                nonce: text("Nonce")?,
                msg_signature: text("MsgSignature")?,
            };
            (text("Encrypt")?, envelope)
        }
    };
    crypto.open_encrypt(&envelope, &encrypt).ok()
}

/// What WeChat's release check saw.
#[derive(Clone, Debug, Default)]
pub struct ReleaseCheck {
    /// The text test got `TESTCOMPONENT_MSG_TYPE_TEXT_callback` back.
    pub text_replied: bool,
    /// The `QUERY_AUTH_CODE:` test got an empty answer...
    pub api_answer_empty: bool,
    /// ... and the customer-service message `{code}_from_api` reached the test user.
    pub api_message_sent: bool,
    /// The event test got `{Event}from_callback` back.
    pub event_replied: bool,
}

impl ReleaseCheck {
    pub fn passed(&self) -> bool {
        self.text_replied && self.api_answer_empty && self.api_message_sent && self.event_replied
    }
}

impl FakeWechat {
    /// Runs the release check against the message URL of a platform's accounts, as test
    /// account `test_appid` (original id `test_username`), with `auth_code` (a code that
    /// authorizes that account, as WeChat hands one to the check): the text test, the API
    /// test (waiting up to `wait` for the customer-service message), then the event test.
    pub async fn run_release_check(
        &self,
        target: &MessageTarget,
        test_username: &str,
        auth_code: &str,
        wait: Duration,
    ) -> ReleaseCheck {
        let user = "ozy4qt1eDxSxzCr0aNT0mXCWfrDE";
        let retries = Retries {
            timeout: Duration::from_secs(5),
            again: 0,
        };
        let mut check = ReleaseCheck::default();
        let text = text_message(test_username, user, "TESTCOMPONENT_MSG_TYPE_TEXT", 1);
        let got = push_message(target, &text, Mode::Safe, retries).await;
        check.text_replied =
            reply_content(&got).as_deref() == Some("TESTCOMPONENT_MSG_TYPE_TEXT_callback");

        let before = self.messages_sent().len();
        let api = text_message(
            test_username,
            user,
            &format!("QUERY_AUTH_CODE:{auth_code}"),
            2,
        );
        let got = push_message(target, &api, Mode::Safe, retries).await;
        check.api_answer_empty = got.status == Some(200) && got.body.is_empty();
        let expected = format!("{auth_code}_from_api");
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let sent = self.messages_sent();
            if sent.iter().skip(before).any(|m| {
                m["touser"] == user && m["text"]["content"].as_str() == Some(expected.as_str())
            }) {
                check.api_message_sent = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let event = event_message(test_username, user, "LOCATION", None);
        let got = push_message(target, &event, Mode::Safe, retries).await;
        check.event_replied = reply_content(&got).as_deref() == Some("LOCATIONfrom_callback");
        check
    }
}

/// The `Content` of a passive text reply.
fn reply_content(pushed: &Pushed) -> Option<String> {
    let reply = pushed.reply.as_deref()?;
    let f = Fields::parse(reply.as_bytes(), 64 * 1024).ok()?;
    if f.optional("MsgType").ok()?? != "text" {
        return None;
    }
    f.optional("Content").ok()?.map(str::to_owned)
}
