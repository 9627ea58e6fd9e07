//! The Open Platform's component endpoints (`/cgi-bin/component/*`): the component token minted
//! with the pushed verify ticket, the authorization code exchange, authorizer tokens minted with
//! a refresh token, the authorizer list, pre-auth codes and the restart of the ticket push.
//!
//! Every secret that comes back (tokens, refresh tokens, codes) is held as a fingerprinted
//! [`AccessToken`] from the moment it is parsed, so none can reach a log or an error text.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use super::{
    answer_object, credential_in, secret_in, sorted_ids, Fetched, UpstreamError, WechatClient,
};
use crate::secret::AccessToken;

/// The most authorizers `api_get_authorizer_list` returns per page; more is errcode 40170.
pub const AUTHORIZER_PAGE_MAX: u32 = 500;

/// What `api_query_auth` answers for an authorization code.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub authorizer_appid: String,
    pub token: Fetched,
    pub refresh_token: AccessToken,
    /// The permission set ids actually granted (`func_info[].funcscope_category.id`).
    pub func_ids: Vec<u32>,
}

/// What `api_authorizer_token` answers: the token, and the refresh token if the answer carries
/// a non-empty one (it is to be saved; an empty one must never replace the stored one).
#[derive(Debug, Clone)]
pub struct AuthorizerToken {
    pub token: Fetched,
    pub refresh_token: Option<AccessToken>,
}

/// One authorizer as `api_get_authorizer_list` lists it.
#[derive(Debug, Clone)]
pub struct ListedAuthorizer {
    pub appid: String,
    /// `None` when WeChat lists it with an empty one (`api_query_auth` was never called).
    pub refresh_token: Option<AccessToken>,
    /// When it authorized, Unix seconds.
    pub auth_time: u64,
}

/// One page of `api_get_authorizer_list`.
#[derive(Debug, Clone)]
pub struct AuthorizerPage {
    pub total_count: u64,
    pub list: Vec<ListedAuthorizer>,
}

/// A single-use pre-auth code for the authorization links.
#[derive(Debug, Clone)]
pub struct PreAuthCode {
    pub code: AccessToken,
    pub expires_in: Duration,
}

impl PreAuthCode {
    /// The pre-auth code of an answer (the Open Platform's and WeCom's say it alike).
    pub(super) fn in_answer(body: &[u8]) -> Result<PreAuthCode, UpstreamError> {
        let answer = answer_object(body)?;
        let code = secret_in(&answer, "pre_auth_code")?;
        let expires_in = answer
            .get("expires_in")
            .and_then(|v| v.as_u64())
            .map(Duration::from_secs)
            .ok_or_else(|| UpstreamError::Decode("expires_in missing or not a number".into()))?;
        Ok(PreAuthCode { code, expires_in })
    }
}

/// The largest page of the authorizer list accepted: 500 entries of about 150 bytes each,
/// with room to spare.
const MAX_LIST_BODY: usize = 1024 * 1024;

/// The longest appid accepted from an answer; real ones are 18 characters.
const MAX_APPID_LEN: usize = 64;

fn appid_in(
    map: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<String, UpstreamError> {
    match map.get(field).and_then(|v| v.as_str()) {
        Some(a)
            if !a.is_empty()
                && a.len() <= MAX_APPID_LEN
                && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Ok(a.to_string())
        }
        _ => Err(UpstreamError::Decode(format!(
            "{field} missing or not an appid"
        ))),
    }
}

/// A refresh token field that may be empty (WeChat's way of saying there is none yet).
fn optional_secret(
    map: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<AccessToken>, UpstreamError> {
    match map.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(_) => secret_in(map, field).map(Some),
    }
}

/// `func_info: [{"funcscope_category": {"id": 1}}, ...]`.
fn func_ids(map: &serde_json::Map<String, serde_json::Value>) -> Vec<u32> {
    sorted_ids(map.get("func_info"), |f| {
        f.get("funcscope_category")?.get("id")?.as_u64()
    })
}

impl WechatClient {
    /// A component endpoint's URL, with the component token in the query when given.
    fn component_request(
        &self,
        path: &str,
        component_token: Option<&AccessToken>,
    ) -> Result<awc::ClientRequest, UpstreamError> {
        self.post_to(
            &self.base_url,
            &format!("/cgi-bin/component/{path}"),
            component_token.map(|t| ("component_access_token", t)),
        )
    }

    /// `POST /cgi-bin/component/api_component_token` with the pushed verify ticket.
    pub async fn fetch_component_token(
        &self,
        component_appid: &str,
        secret: &SecretString,
        ticket: &AccessToken,
    ) -> Result<Fetched, UpstreamError> {
        let requested_at = SystemTime::now();
        let req = self.component_request("api_component_token", None)?;
        let body = serde_json::json!({
            "component_appid": component_appid,
            "component_appsecret": secret.expose_secret(),
            "component_verify_ticket": ticket.expose(),
        });
        self.post_for_credential(req, body, "component_access_token", requested_at)
            .await
    }

    /// `POST /cgi-bin/component/api_start_push_ticket`: asks WeChat to push the verify ticket
    /// again (also answers fine when the push already runs).
    pub async fn start_push_ticket(
        &self,
        component_appid: &str,
        secret: &SecretString,
    ) -> Result<(), UpstreamError> {
        let req = self.component_request("api_start_push_ticket", None)?;
        let body = serde_json::json!({
            "component_appid": component_appid,
            "component_secret": secret.expose_secret(),
        });
        let body = self.call(req, Some(body)).await?;
        answer_object(&body).map(|_| ())
    }

    /// `POST /cgi-bin/component/api_create_preauthcode`.
    pub async fn create_preauth_code(
        &self,
        component_token: &AccessToken,
        component_appid: &str,
    ) -> Result<PreAuthCode, UpstreamError> {
        let req = self.component_request("api_create_preauthcode", Some(component_token))?;
        let body = serde_json::json!({ "component_appid": component_appid });
        let body = self.call(req, Some(body)).await?;
        PreAuthCode::in_answer(&body)
    }

    /// `POST /cgi-bin/component/api_query_auth`: exchanges an authorization code (from the
    /// redirect or an `authorized` event) for the authorizer's token, refresh token and the
    /// permissions it granted.
    pub async fn query_auth(
        &self,
        component_token: &AccessToken,
        component_appid: &str,
        authorization_code: &AccessToken,
    ) -> Result<Authorization, UpstreamError> {
        let requested_at = SystemTime::now();
        let req = self.component_request("api_query_auth", Some(component_token))?;
        let body = serde_json::json!({
            "component_appid": component_appid,
            "authorization_code": authorization_code.expose(),
        });
        let body = self.call(req, Some(body)).await?;
        let answer = answer_object(&body)?;
        let info = answer
            .get("authorization_info")
            .and_then(|v| v.as_object())
            .ok_or_else(|| UpstreamError::Decode("no authorization_info in the answer".into()))?;
        Ok(Authorization {
            authorizer_appid: appid_in(info, "authorizer_appid")?,
            token: credential_in(
                info,
                "authorizer_access_token",
                requested_at,
                self.min_lifetime,
            )?,
            refresh_token: secret_in(info, "authorizer_refresh_token")?,
            func_ids: func_ids(info),
        })
    }

    /// `POST /cgi-bin/component/api_authorizer_token`: an authorizer token from its refresh
    /// token.
    pub async fn fetch_authorizer_token(
        &self,
        component_token: &AccessToken,
        component_appid: &str,
        authorizer_appid: &str,
        refresh_token: &AccessToken,
    ) -> Result<AuthorizerToken, UpstreamError> {
        let requested_at = SystemTime::now();
        let req = self.component_request("api_authorizer_token", Some(component_token))?;
        let body = serde_json::json!({
            "component_appid": component_appid,
            "authorizer_appid": authorizer_appid,
            "authorizer_refresh_token": refresh_token.expose(),
        });
        let body = self.call(req, Some(body)).await?;
        let answer = answer_object(&body)?;
        Ok(AuthorizerToken {
            token: credential_in(
                &answer,
                "authorizer_access_token",
                requested_at,
                self.min_lifetime,
            )?,
            refresh_token: optional_secret(&answer, "authorizer_refresh_token")?,
        })
    }

    /// `POST /cgi-bin/component/api_get_authorizer_list`: one page of at most
    /// [`AUTHORIZER_PAGE_MAX`] authorizers from `offset`.
    pub async fn get_authorizer_list(
        &self,
        component_token: &AccessToken,
        component_appid: &str,
        offset: u64,
        count: u32,
    ) -> Result<AuthorizerPage, UpstreamError> {
        let req = self.component_request("api_get_authorizer_list", Some(component_token))?;
        let body = serde_json::json!({
            "component_appid": component_appid,
            "offset": offset,
            "count": count.min(AUTHORIZER_PAGE_MAX),
        });
        let body = self.call_limited(req, Some(body), MAX_LIST_BODY).await?;
        parse_authorizer_page(&body)
    }
}

/// Parses a page of the authorizer list. An entry that is not an authorizer (no appid) makes
/// the page a decode failure: a reconciliation must not mark accounts revoked because it
/// misread the list.
pub fn parse_authorizer_page(body: &[u8]) -> Result<AuthorizerPage, UpstreamError> {
    let answer = answer_object(body)?;
    let total_count = answer
        .get("total_count")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| UpstreamError::Decode("total_count missing or not a number".into()))?;
    let entries = match answer.get("list") {
        None | Some(serde_json::Value::Null) => &Vec::new(),
        Some(serde_json::Value::Array(list)) => list,
        Some(_) => return Err(UpstreamError::Decode("list is not an array".into())),
    };
    let mut list = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry
            .as_object()
            .ok_or_else(|| UpstreamError::Decode("a list entry is not an object".into()))?;
        list.push(ListedAuthorizer {
            appid: appid_in(entry, "authorizer_appid")?,
            refresh_token: optional_secret(entry, "refresh_token")?,
            auth_time: entry.get("auth_time").and_then(|v| v.as_u64()).unwrap_or(0),
        });
    }
    Ok(AuthorizerPage { total_count, list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_authorizers_parses_and_keeps_empty_refresh_tokens_apart() {
        let page = parse_authorizer_page(
            br#"{"total_count":3,"list":[
                {"authorizer_appid":"wxa1","refresh_token":"R-1","auth_time":1700000000},
                {"authorizer_appid":"wxa2","refresh_token":"","auth_time":1700000001}]}"#,
        )
        .unwrap();
        assert_eq!(page.total_count, 3);
        assert_eq!(page.list.len(), 2);
        assert_eq!(page.list[0].appid, "wxa1");
        assert_eq!(page.list[0].refresh_token.as_ref().unwrap().expose(), "R-1");
        assert_eq!(page.list[0].auth_time, 1_700_000_000);
        assert!(page.list[1].refresh_token.is_none());
    }

    #[test]
    fn a_misread_list_is_an_error_not_an_empty_page() {
        for body in [
            r#"{"list":[]}"#,
            r#"{"total_count":1,"list":{}}"#,
            r#"{"total_count":1,"list":[{"refresh_token":"R"}]}"#,
            r#"{"total_count":1,"list":[{"authorizer_appid":"wx a","refresh_token":"R"}]}"#,
            r#"{"total_count":1,"list":[{"authorizer_appid":"wxa","refresh_token":"R\nX"}]}"#,
        ] {
            assert!(
                matches!(
                    parse_authorizer_page(body.as_bytes()),
                    Err(UpstreamError::Decode(_))
                ),
                "{body}"
            );
        }
        let e = parse_authorizer_page(br#"{"errcode":40170,"errmsg":"args count exceed"}"#)
            .unwrap_err();
        assert_eq!(e.errcode(), Some(40170));
    }

    #[test]
    fn granted_permission_ids_are_read_sorted_and_odd_entries_skipped() {
        let info: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"func_info":[{"funcscope_category":{"id":17}},{"funcscope_category":{"id":1}},
                {"other":1},{"funcscope_category":{"id":-3}},{"funcscope_category":{"id":1}}]}"#,
        )
        .unwrap();
        assert_eq!(func_ids(&info), vec![1, 17]);
    }

    #[test]
    fn a_secret_in_an_answer_never_shows_in_debug() {
        let page = parse_authorizer_page(
            br#"{"total_count":1,"list":[{"authorizer_appid":"wxa1","refresh_token":"REFRESH-SECRET"}]}"#,
        )
        .unwrap();
        assert!(!format!("{page:?}").contains("REFRESH-SECRET"));
    }
}
