//! The validity probe: one cheap authenticated call that asks WeChat whether a token it handed
//! out still works, made before wxtoken throws a young token away on a caller's word (a caller
//! may have sent it in the wrong parameter, or to the wrong account, and got 40001 for that).

use serde_json::json;

use super::{answer_object, UpstreamError, WechatClient};
use crate::secret::AccessToken;

/// The `cgi_path` the component probe asks the quota of: the component token's own endpoint,
/// a component API, so WeChat takes the component token for it (76022 otherwise).
const COMPONENT_PROBE_PATH: &str = "/cgi-bin/component/api_component_token";

/// Which call checks a token, by the kind of token it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// An account's access token: an Official Account's or Mini Program's, or one a platform
    /// minted for an authorized account. `GET {base}/cgi-bin/get_api_domain_ip?access_token=T`,
    /// which needs no permission and changes nothing.
    Account,
    /// A WeCom app's token: the same path on the WeCom host, which serves it too.
    Wecom,
    /// A platform's component token, which `get_api_domain_ip` does not take:
    /// `POST {base}/cgi-bin/openapi/quota/get?access_token=T` with
    /// `{"cgi_path": "/cgi-bin/component/api_component_token"}` (getApiQuota, documented to
    /// take the component token in `access_token` for component APIs).
    Component,
}

impl ProbeKind {
    /// The `endpoint` label of the upstream latency histogram.
    pub fn endpoint(self) -> &'static str {
        match self {
            ProbeKind::Account => "probe",
            ProbeKind::Wecom => "wecom_probe",
            ProbeKind::Component => "component_probe",
        }
    }
}

impl WechatClient {
    /// Asks WeChat whether `token` still works: `Ok` when the call succeeded, else the errcode
    /// (40001, 42001 or 40014 when the token is dead) or why WeChat could not be asked.
    pub async fn probe_token(
        &self,
        kind: ProbeKind,
        token: &AccessToken,
    ) -> Result<(), UpstreamError> {
        let query = [("access_token", token.expose())];
        let (req, body) = match kind {
            ProbeKind::Account => (
                self.get(&self.base_url, "/cgi-bin/get_api_domain_ip", &query)?,
                None,
            ),
            ProbeKind::Wecom => (
                self.get(&self.wecom_base_url, "/cgi-bin/get_api_domain_ip", &query)?,
                None,
            ),
            ProbeKind::Component => (
                self.http
                    .post(format!("{}/cgi-bin/openapi/quota/get", self.base_url))
                    .query(&query)
                    .map_err(|_| UpstreamError::Decode("cannot encode the request query".into()))?,
                Some(json!({ "cgi_path": COMPONENT_PROBE_PATH })),
            ),
        };
        let answer = self.call(req, body).await?;
        answer_object(&answer).map(|_| ())
    }
}
