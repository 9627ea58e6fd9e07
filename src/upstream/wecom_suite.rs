//! WeCom's service-provider endpoints (`{wecom}/cgi-bin/service/*`): the suite token minted
//! with the pushed suite ticket, AuthCodes exchanged for permanent codes, the auth info, corp
//! tokens minted with a permanent code, pre-auth codes and their session, and the provider
//! token. A customized-app template's corp token is `gettoken` with the permanent code as the
//! secret ([`WechatClient::fetch_wecom_token`]).
//!
//! As for the component endpoints, every secret that comes back is held as a fingerprinted
//! [`AccessToken`] from the moment it is parsed.

use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

use super::{
    answer_object, secret_in, sorted_ids, Fetched, PreAuthCode, UpstreamError, WechatClient,
};
use crate::secret::AccessToken;

/// WeCom's errcodes for the suite's own credentials.
pub mod errcode {
    /// The AuthCode is invalid (used, expired or unknown).
    pub const AUTH_CODE_INVALID: i64 = 40078;
    /// The suite token is invalid.
    pub const SUITE_TOKEN_INVALID: i64 = 40082;
    /// The permanent code is invalid: only a new install helps.
    pub const PERMANENT_CODE_INVALID: i64 = 40084;
    /// The suite ticket is invalid.
    pub const SUITE_TICKET_INVALID: i64 = 40085;
    /// The suite token has expired.
    pub const SUITE_TOKEN_EXPIRED: i64 = 42009;
}

/// What `get_permanent_code` answers for an AuthCode.
#[derive(Debug, Clone)]
pub struct SuiteInstall {
    pub corpid: String,
    pub permanent_code: AccessToken,
    /// The suite's agent ids in the corp, sorted.
    pub agent_ids: Vec<u32>,
}

/// Where the service endpoints are, under `wecom_base_url`.
const SERVICE: &str = "/cgi-bin/service/";
/// The query parameter the suite token goes in.
const SUITE_TOKEN: &str = "suite_access_token";

/// The longest corpid accepted from an answer; real ones are 18 characters.
const MAX_CORPID_LEN: usize = 64;

fn corpid_in(map: &serde_json::Map<String, serde_json::Value>) -> Result<String, UpstreamError> {
    let corpid = map
        .get("auth_corp_info")
        .and_then(|c| c.get("corpid"))
        .and_then(|v| v.as_str());
    match corpid {
        Some(c)
            if !c.is_empty()
                && c.len() <= MAX_CORPID_LEN
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(c.to_string())
        }
        _ => Err(UpstreamError::Decode(
            "auth_corp_info.corpid missing or not a corpid".into(),
        )),
    }
}

/// `auth_info.agent[].agentid`.
fn agent_ids(map: &serde_json::Map<String, serde_json::Value>) -> Vec<u32> {
    let agents = map.get("auth_info").and_then(|a| a.get("agent"));
    sorted_ids(agents, |a| a.get("agentid")?.as_u64())
}

impl WechatClient {
    /// `POST /cgi-bin/service/get_suite_token` with the pushed suite ticket.
    pub async fn fetch_suite_token(
        &self,
        suite_id: &str,
        secret: &SecretString,
        ticket: &AccessToken,
    ) -> Result<Fetched, UpstreamError> {
        let body = serde_json::json!({
            "suite_id": suite_id,
            "suite_secret": secret.expose_secret(),
            "suite_ticket": ticket.expose(),
        });
        self.service_credential("get_suite_token", None, body, "suite_access_token")
            .await
    }

    /// `POST /cgi-bin/service/get_provider_token`.
    pub async fn fetch_provider_token(
        &self,
        corpid: &str,
        secret: &SecretString,
    ) -> Result<Fetched, UpstreamError> {
        let body = serde_json::json!({
            "corpid": corpid,
            "provider_secret": secret.expose_secret(),
        });
        self.service_credential("get_provider_token", None, body, "provider_access_token")
            .await
    }

    /// `POST /cgi-bin/service/get_corp_token`: an installed corp's token (third-party app).
    pub async fn fetch_corp_token(
        &self,
        suite_token: &AccessToken,
        corpid: &str,
        permanent_code: &AccessToken,
    ) -> Result<Fetched, UpstreamError> {
        let body = serde_json::json!({
            "auth_corpid": corpid,
            "permanent_code": permanent_code.expose(),
        });
        self.service_credential("get_corp_token", Some(suite_token), body, "access_token")
            .await
    }

    /// `POST /cgi-bin/service/get_permanent_code` (v1): exchanges an AuthCode (single use).
    pub async fn get_permanent_code(
        &self,
        suite_token: &AccessToken,
        auth_code: &AccessToken,
    ) -> Result<SuiteInstall, UpstreamError> {
        let req = self.post_to(
            &self.wecom_base_url,
            &format!("{SERVICE}get_permanent_code"),
            Some((SUITE_TOKEN, suite_token)),
        )?;
        let body = serde_json::json!({ "auth_code": auth_code.expose() });
        let body = self.call(req, Some(body)).await?;
        let answer = answer_object(&body)?;
        Ok(SuiteInstall {
            corpid: corpid_in(&answer)?,
            permanent_code: secret_in(&answer, "permanent_code")?,
            agent_ids: agent_ids(&answer),
        })
    }

    /// `POST /cgi-bin/service/get_auth_info`: the corp's current grant (its agent ids).
    pub async fn get_auth_info(
        &self,
        suite_token: &AccessToken,
        corpid: &str,
        permanent_code: &AccessToken,
    ) -> Result<Vec<u32>, UpstreamError> {
        let req = self.post_to(
            &self.wecom_base_url,
            &format!("{SERVICE}get_auth_info"),
            Some((SUITE_TOKEN, suite_token)),
        )?;
        let body = serde_json::json!({
            "auth_corpid": corpid,
            "permanent_code": permanent_code.expose(),
        });
        let body = self.call(req, Some(body)).await?;
        Ok(agent_ids(&answer_object(&body)?))
    }

    /// `GET /cgi-bin/service/get_pre_auth_code`, then `set_session_info` with `auth_type`
    /// (0 formal, 1 test install).
    pub async fn suite_pre_auth_code(
        &self,
        suite_token: &AccessToken,
        auth_type: u8,
    ) -> Result<PreAuthCode, UpstreamError> {
        let req = self.get(
            &self.wecom_base_url,
            "/cgi-bin/service/get_pre_auth_code",
            &[("suite_access_token", suite_token.expose())],
        )?;
        let body = self.call(req, None).await?;
        let PreAuthCode { code, expires_in } = PreAuthCode::in_answer(&body)?;
        let req = self.post_to(
            &self.wecom_base_url,
            &format!("{SERVICE}set_session_info"),
            Some((SUITE_TOKEN, suite_token)),
        )?;
        let body = serde_json::json!({
            "pre_auth_code": code.expose(),
            "session_info": { "auth_type": auth_type },
        });
        let body = self.call(req, Some(body)).await?;
        answer_object(&body)?;
        Ok(PreAuthCode { code, expires_in })
    }

    /// A service endpoint's credential: `body` posted, the token in `field` of the answer.
    async fn service_credential(
        &self,
        path: &str,
        suite_token: Option<&AccessToken>,
        body: serde_json::Value,
        field: &str,
    ) -> Result<Fetched, UpstreamError> {
        let requested_at = SystemTime::now();
        let req = self.post_to(
            &self.wecom_base_url,
            &format!("{SERVICE}{path}"),
            suite_token.map(|t| (SUITE_TOKEN, t)),
        )?;
        self.post_for_credential(req, body, field, requested_at)
            .await
    }
}
