//! `POST /cgi-bin/message/custom/send`: the one business call wxtoken makes itself, a text
//! customer-service message, which the Open Platform's release check (全网发布) expects from a
//! platform in answer to its `QUERY_AUTH_CODE:` test message.

use super::{answer_object, UpstreamError, WechatClient};
use crate::secret::AccessToken;

impl WechatClient {
    /// Sends `content` as a text customer-service message to `touser`, with an authorizer's
    /// token.
    pub async fn send_custom_text(
        &self,
        token: &AccessToken,
        touser: &str,
        content: &str,
    ) -> Result<(), UpstreamError> {
        let req = self
            .http
            .post(format!("{}/cgi-bin/message/custom/send", self.base_url))
            .query(&[("access_token", token.expose())])
            .map_err(|_| UpstreamError::Decode("cannot encode the request query".into()))?;
        let body = serde_json::json!({
            "touser": touser,
            "msgtype": "text",
            "text": { "content": content },
        });
        let answer = self.call(req, Some(body)).await?;
        answer_object(&answer).map(|_| ())
    }
}
