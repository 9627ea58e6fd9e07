//! WeChat's release check (全网发布接入检测): before a platform goes live, WeChat's test accounts
//! push to its message URL and expect, for a text `TESTCOMPONENT_MSG_TYPE_TEXT`, the passive
//! reply `TESTCOMPONENT_MSG_TYPE_TEXT_callback`; for a text `QUERY_AUTH_CODE:$code$`, an empty
//! answer and, within seconds, a customer-service message `$code$_from_api` sent with the token
//! of the account that code authorizes; for an event, a text reply of the event's name followed
//! by `from_callback`. Every platform writes this by hand; wxtoken answers it itself for the
//! test accounts (`[[platforms]] release_check`, on by default), and their pushes go to no
//! route.

use serde_json::{Map, Value};

use super::runtime::Platform;
use crate::push::xml::{push_cdata_field, push_text_field};
use crate::secret::AccessToken;

/// The appids WeChat's release check pushes from: five Official Accounts, then five Mini
/// Programs, as WeChat's documentation of the check lists them.
pub const TEST_ACCOUNTS: [&str; 10] = [
    "wx570bc396a51b8ff8",
    "wx9252c5e0bb1836fc",
    "wx8e1097c5bc82cde9",
    "wx14550af28c71a144",
    "wxa35b9c23cfe664eb",
    "wxd101a85aa106f53e",
    "wxc39235c15087f6f3",
    "wx7720d01d4b2a4500",
    "wx05d483572dcd5d8b",
    "wx5910277cae6fd970",
];

/// The text test message and its expected reply.
pub const TEST_TEXT: &str = "TESTCOMPONENT_MSG_TYPE_TEXT";
/// The prefix of the test message answered through the API.
pub const QUERY_AUTH_CODE: &str = "QUERY_AUTH_CODE:";

/// How a test account's push is answered.
#[derive(Debug, PartialEq, Eq)]
pub enum ReleaseAnswer {
    /// A passive reply (plaintext XML, sealed by the caller).
    Reply(String),
    /// An empty answer (the customer-service message follows).
    Empty,
}

impl Platform {
    /// The release check's answer to a push from account `appid`, if the check is on and
    /// `appid` is one of WeChat's test accounts; `None` for every other push.
    pub fn release_check(&self, appid: &str, fields: &Map<String, Value>) -> Option<ReleaseAnswer> {
        if !self.settings.release_check || !TEST_ACCOUNTS.contains(&appid) {
            return None;
        }
        let text = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or_default();
        let (from, to) = (text("FromUserName"), text("ToUserName"));
        let answer = match text("MsgType") {
            "text" if text("Content") == TEST_TEXT => {
                ReleaseAnswer::Reply(text_reply(from, to, &format!("{TEST_TEXT}_callback")))
            }
            "text" if text("Content").starts_with(QUERY_AUTH_CODE) => {
                let code = text("Content")[QUERY_AUTH_CODE.len()..].trim().to_owned();
                self.answer_through_api(appid, code, from.to_owned());
                ReleaseAnswer::Empty
            }
            "event" => ReleaseAnswer::Reply(text_reply(
                from,
                to,
                &format!("{}from_callback", text("Event")),
            )),
            // Another kind of test push: answered, delivered nowhere.
            _ => ReleaseAnswer::Empty,
        };
        tracing::info!(platform = %self.name(), appid, "release check push answered");
        Some(answer)
    }

    /// Exchanges the test's authorization code (or finds the account an earlier exchange of it
    /// gave, as the test account's `authorized` push may carry the same code), then sends
    /// `{code}_from_api` to the test user with that account's token, in the background.
    fn answer_through_api(&self, appid: &str, code: String, touser: String) {
        let Some(me) = self.me() else {
            return;
        };
        let appid = appid.to_owned();
        actix::spawn(async move {
            if let Err(e) = me.send_from_api(&code, &touser).await {
                tracing::error!(platform = %me.name(), appid = %appid, error = %e,
                    "release check: the customer-service message could not be sent");
            }
        });
    }

    async fn send_from_api(&self, code: &str, touser: &str) -> anyhow::Result<()> {
        let secret = AccessToken::new(code);
        let account = self.authorize_code(&secret).await?;
        let token = self
            .authorizer_token(&account, self.deps.wait_limit)
            .await
            .map_err(|e| anyhow::anyhow!("no token for {account}: {e:?}"))?;
        let content = format!("{code}_from_api");
        self.upstream
            .client()
            .send_custom_text(&token.token, touser, &content)
            .await?;
        Ok(())
    }
}

/// A passive text reply from `to` (the account) to `from` (the user).
fn text_reply(from: &str, to: &str, content: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut x = String::with_capacity(256);
    x.push_str("<xml>");
    push_cdata_field(&mut x, "ToUserName", from);
    push_cdata_field(&mut x, "FromUserName", to);
    push_text_field(&mut x, "CreateTime", &now.to_string());
    push_cdata_field(&mut x, "MsgType", "text");
    push_cdata_field(&mut x, "Content", content);
    x.push_str("</xml>");
    x
}
