//! The WeChat client: fetches access tokens over HTTPS and classifies every way that can fail.
//!
//! It knows nothing of actors or HTTP handlers: one call in, a token or an [`UpstreamError`] out
//! (or, for the gateway, WeChat's answer to a forwarded call: [`forward`]).
//! Every client of a server shares one [`UpstreamPool`] (`pool`), which caps the calls in flight
//! and their start rate.

mod component;
mod custom_message;
mod forward;
mod pool;
mod probe;
mod wecom_suite;

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use crate::config::{TicketKind, UpstreamSettings, MAX_TOKEN_LIFETIME};
use crate::secret::AccessToken;

/// Largest answer body accepted from WeChat. Real answers are a few hundred bytes; the limit
/// only stops a broken proxy from feeding us megabytes.
const MAX_BODY: usize = 64 * 1024;

use crate::secret::plausible_credential;
pub use crate::secret::MAX_CREDENTIAL_LEN;
pub use component::{
    parse_authorizer_page, Authorization, AuthorizerPage, AuthorizerToken, ListedAuthorizer,
    PreAuthCode, AUTHORIZER_PAGE_MAX,
};
pub use forward::Forward;
pub use pool::{Acquire, Permit, Priority, Promotion, UpstreamPool};
pub use probe::ProbeKind;
pub use wecom_suite::{errcode as wecom_errcode, SuiteInstall};

/// How a failure should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Busy, network trouble, broken answer: retry with backoff, it will likely pass.
    Transient,
    /// Our side is misconfigured (wrong secret, IP whitelist...): never fixes itself; alert.
    Config,
    /// The daily or per-minute quota is used up: retry slowly.
    Quota,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Config => "config",
            ErrorClass::Quota => "quota",
        }
    }
}

/// Everything that can go wrong with one token fetch. Messages never contain the secret, the
/// URL (which carries the secret) or a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// WeChat answered with a non-zero errcode.
    #[error("WeChat errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// No answer within the configured timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// No connection, or the connection closed before a complete answer.
    #[error("connection failed: {0}")]
    Connect(String),
    /// A non-2xx HTTP status.
    #[error("HTTP status {0}")]
    Http(u16),
    /// A 2xx answer that is not the expected JSON.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// A ticket cannot be fetched: the app has no valid access token.
    #[error("no valid access token to fetch it with")]
    NoToken,
}

impl UpstreamError {
    /// The `reason` metric label: the errcode, or timeout/connect/http/decode.
    pub fn reason(&self) -> String {
        match self {
            UpstreamError::Api { errcode, .. } => errcode.to_string(),
            UpstreamError::Timeout(_) => "timeout".into(),
            UpstreamError::Connect(_) => "connect".into(),
            UpstreamError::Http(_) => "http".into(),
            UpstreamError::Decode(_) => "decode".into(),
            UpstreamError::NoToken => "no_token".into(),
        }
    }

    pub fn errcode(&self) -> Option<i64> {
        match self {
            UpstreamError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            UpstreamError::Api { errcode, .. } => classify_errcode(*errcode),
            _ => ErrorClass::Transient,
        }
    }
}

/// Sorts WeChat errcodes by what they call for (see the table in the project's API notes).
pub fn classify_errcode(errcode: i64) -> ErrorClass {
    match errcode {
        // invalid grant_type, appid, appsecret; frozen secret; IP whitelist; IP needs admin
        // confirmation; api unauthorized.
        40002 | 40013 | 40125 | 40243 | 40164 | 61004 | 60020 | 89501 | 89503 | 89506 | 89507
        | 48001 => ErrorClass::Config,
        45009 | 45011 => ErrorClass::Quota,
        _ => ErrorClass::Transient,
    }
}

/// A token as WeChat handed it out.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub token: AccessToken,
    pub expires_in: Duration,
    /// When the request was sent: the token's lifetime is counted from here, erring early.
    pub requested_at: SystemTime,
    /// For a ticket: the generation of the access token it was fetched with.
    pub depends_on: Option<u64>,
}

/// Client for WeChat's credential endpoints. `awc::Client` is not `Send`, so there is one per
/// thread ([`WechatClient::shared`]), built from the shared, `Send` TLS configuration; all of
/// them share one [`UpstreamPool`].
#[derive(Clone)]
pub struct WechatClient {
    http: awc::Client,
    pool: Arc<UpstreamPool>,
    base_url: Arc<str>,
    wecom_base_url: Arc<str>,
    timeout: Duration,
    /// Shortest `expires_in` accepted; see [`parse_answer`].
    min_lifetime: Duration,
}

thread_local! {
    /// This thread's clients, one per pool (one per server; tests run several in a process).
    /// Weak: a client and its connections go once the last actor using it is gone.
    static SHARED: RefCell<Vec<Weak<WechatClient>>> = const { RefCell::new(Vec::new()) };
}

impl WechatClient {
    /// A client with a pool of its own, built from `settings`.
    pub fn new(settings: &UpstreamSettings, tls: Arc<rustls::ClientConfig>) -> Self {
        let pool = UpstreamPool::new(settings.max_concurrent, settings.max_per_second);
        WechatClient::with_pool(settings, tls, pool)
    }

    /// The client every actor of this thread shares: one connector, one connection pool, one
    /// TLS session cache, instead of one per credential. Its calls go through `pool`, the
    /// server's one [`UpstreamPool`], built at start-up and handed to every actor; a thread
    /// keeps one client per pool (tests run several servers in a process).
    pub fn shared(
        settings: &UpstreamSettings,
        tls: &Arc<rustls::ClientConfig>,
        pool: &Arc<UpstreamPool>,
    ) -> Rc<WechatClient> {
        SHARED.with(|clients| {
            let mut clients = clients.borrow_mut();
            clients.retain(|c| c.strong_count() > 0);
            if let Some(client) = clients
                .iter()
                .filter_map(Weak::upgrade)
                .find(|c| Arc::ptr_eq(&c.pool, pool))
            {
                return client;
            }
            let client = Rc::new(WechatClient::with_pool(settings, tls.clone(), pool.clone()));
            clients.push(Rc::downgrade(&client));
            client
        })
    }

    fn with_pool(
        settings: &UpstreamSettings,
        tls: Arc<rustls::ClientConfig>,
        pool: Arc<UpstreamPool>,
    ) -> Self {
        let connector = awc::Connector::new()
            .rustls_0_23(tls)
            .timeout(settings.timeout)
            // No cap of awc's own: the token pool and the gateway's limit each bound their
            // calls, and a shared cap would let API traffic queue token refreshes behind it
            // (where the wait would count against the refresh's timeout).
            .limit(0)
            // A fresh connection now and then picks up DNS changes of api.weixin.qq.com.
            .conn_lifetime(Duration::from_secs(300));
        let http = awc::Client::builder()
            .connector(connector)
            .timeout(settings.timeout)
            .disable_redirects()
            .add_default_header(("user-agent", concat!("wxtoken/", env!("CARGO_PKG_VERSION"))))
            .finish();
        WechatClient {
            http,
            pool,
            base_url: settings.base_url.as_str().into(),
            wecom_base_url: settings.wecom_base_url.as_str().into(),
            timeout: settings.timeout,
            min_lifetime: settings.min_token_lifetime,
        }
    }

    /// Waits for a slot in the pool. The call's timeout starts once this returns: time spent
    /// queued behind other calls is no fault of WeChat's.
    /// `promotion` moves it to the urgent queue if it is promoted while it waits.
    pub fn slot(&self, priority: Priority, promotion: Promotion) -> Acquire {
        self.pool.acquire_promotable(priority, promotion)
    }

    /// Sends `req` (with `body` as JSON when given) and reads the answer, all within one
    /// deadline.
    async fn call(
        &self,
        req: awc::ClientRequest,
        body: Option<serde_json::Value>,
    ) -> Result<actix_web::web::Bytes, UpstreamError> {
        self.call_limited(req, body, MAX_BODY).await
    }

    /// As [`call`](Self::call), accepting an answer of up to `limit` bytes.
    async fn call_limited(
        &self,
        req: awc::ClientRequest,
        body: Option<serde_json::Value>,
        limit: usize,
    ) -> Result<actix_web::web::Bytes, UpstreamError> {
        let exchange = async {
            let sent = match body {
                Some(json) => req.send_json(&json).await,
                None => req.send().await,
            };
            let mut resp = sent.map_err(|e| map_send_error(e, self.timeout))?;
            let status = resp.status();
            let body = resp
                .body()
                .limit(limit)
                .await
                .map_err(|e| map_payload_error(e, limit))?;
            if !status.is_success() {
                return Err(UpstreamError::Http(status.as_u16()));
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
    }

    /// A POST to `{base}{path}`, with `token` as the query parameter named first when given
    /// (`component_access_token`, `suite_access_token`).
    fn post_to(
        &self,
        base: &str,
        path: &str,
        token: Option<(&str, &AccessToken)>,
    ) -> Result<awc::ClientRequest, UpstreamError> {
        let req = self.http.post(format!("{base}{path}"));
        match token {
            None => Ok(req),
            Some((param, t)) => req
                .query(&[(param, t.expose())])
                .map_err(|_| UpstreamError::Decode("cannot encode the request query".into())),
        }
    }

    /// POSTs `body` and reads the credential in `field` of the answer, its lifetime counted
    /// from `requested_at` (taken before the request was built).
    async fn post_for_credential(
        &self,
        req: awc::ClientRequest,
        body: serde_json::Value,
        field: &str,
        requested_at: SystemTime,
    ) -> Result<Fetched, UpstreamError> {
        let body = self.call(req, Some(body)).await?;
        let answer = answer_object(&body)?;
        credential_in(&answer, field, requested_at, self.min_lifetime)
    }

    fn get(
        &self,
        base: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<awc::ClientRequest, UpstreamError> {
        self.http
            .get(format!("{base}{path}"))
            .query(&query)
            .map_err(|_| UpstreamError::Decode("cannot encode the request query".into()))
    }

    /// `GET /cgi-bin/token?grant_type=client_credential&appid=..&secret=..`
    pub async fn fetch_token(
        &self,
        appid: &str,
        secret: &SecretString,
    ) -> Result<Fetched, UpstreamError> {
        let requested_at = SystemTime::now();
        let req = self.get(
            &self.base_url,
            "/cgi-bin/token",
            &[
                ("grant_type", "client_credential"),
                ("appid", appid),
                ("secret", secret.expose_secret()),
            ],
        )?;
        let body = self.call(req, None).await?;
        parse_answer(&body, "access_token", requested_at, self.min_lifetime)
    }

    /// `POST /cgi-bin/stable_token`. `force` invalidates the current stable token at once
    /// (WeChat allows 20 a day, 30 s apart).
    pub async fn fetch_stable_token(
        &self,
        appid: &str,
        secret: &SecretString,
        force: bool,
    ) -> Result<Fetched, UpstreamError> {
        let requested_at = SystemTime::now();
        let req = self
            .http
            .post(format!("{}/cgi-bin/stable_token", self.base_url));
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret.expose_secret(),
            "force_refresh": force,
        });
        let body = self.call(req, Some(body)).await?;
        parse_answer(&body, "access_token", requested_at, self.min_lifetime)
    }

    /// WeCom: `GET {wecom}/cgi-bin/gettoken?corpid=..&corpsecret=..`
    pub async fn fetch_wecom_token(
        &self,
        corpid: &str,
        secret: &SecretString,
    ) -> Result<Fetched, UpstreamError> {
        let requested_at = SystemTime::now();
        let req = self.get(
            &self.wecom_base_url,
            "/cgi-bin/gettoken",
            &[("corpid", corpid), ("corpsecret", secret.expose_secret())],
        )?;
        let body = self.call(req, None).await?;
        parse_answer(&body, "access_token", requested_at, self.min_lifetime)
    }

    /// `GET /cgi-bin/ticket/getticket?access_token=..&type=jsapi|wx_card`; for a WeCom corp,
    /// `GET {wecom}/cgi-bin/get_jsapi_ticket?access_token=..` (the corp's ticket) or
    /// `GET {wecom}/cgi-bin/ticket/get?access_token=..&type=agent_config` (the app's).
    pub async fn fetch_ticket(
        &self,
        access_token: &AccessToken,
        kind: TicketKind,
    ) -> Result<Fetched, UpstreamError> {
        let requested_at = SystemTime::now();
        let token = ("access_token", access_token.expose());
        let req = match kind {
            TicketKind::Jsapi | TicketKind::WxCard => self.get(
                &self.base_url,
                "/cgi-bin/ticket/getticket",
                &[token, ("type", kind.as_str())],
            ),
            TicketKind::CorpJsapi => {
                self.get(&self.wecom_base_url, "/cgi-bin/get_jsapi_ticket", &[token])
            }
            TicketKind::AgentJsapi => self.get(
                &self.wecom_base_url,
                "/cgi-bin/ticket/get",
                &[token, ("type", "agent_config")],
            ),
        }?;
        let body = self.call(req, None).await?;
        parse_answer(&body, "ticket", requested_at, self.min_lifetime)
    }
}

/// Ids from a list in an answer (permission sets, agents), sorted and without repeats; entries
/// without an id in `u32` range are skipped, not fatal: the ids are reported, never acted on.
fn sorted_ids(
    list: Option<&serde_json::Value>,
    id: impl Fn(&serde_json::Value) -> Option<u64>,
) -> Vec<u32> {
    let Some(list) = list.and_then(|v| v.as_array()) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = list
        .iter()
        .filter_map(id)
        .filter_map(|n| u32::try_from(n).ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Interprets a credential answer: errcode first (failures come with HTTP 200), then the
/// credential in `field` and its lifetime, which must lie between `min_lifetime` and
/// [`MAX_TOKEN_LIFETIME`]. Anything else is a `decode` failure: the valid token held is kept,
/// and no absurd lifetime ever reaches a timer or a date computation.
pub fn parse_answer(
    body: &[u8],
    field: &str,
    requested_at: SystemTime,
    min_lifetime: Duration,
) -> Result<Fetched, UpstreamError> {
    let answer = answer_object(body)?;
    credential_in(&answer, field, requested_at, min_lifetime)
}

/// A WeChat answer as a JSON object, or the error it reports: errcode first, since failures
/// come with HTTP 200.
fn answer_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, UpstreamError> {
    let answer: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| {
            UpstreamError::Decode(format!(
                "not the expected JSON ({} bytes): {}",
                body.len(),
                e.classify_str()
            ))
        })?;
    let errcode = match answer.get("errcode") {
        None | Some(serde_json::Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| UpstreamError::Decode("errcode is not a number".into()))?,
    };
    if errcode != 0 {
        let errmsg = answer
            .get("errmsg")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        return Err(UpstreamError::Api { errcode, errmsg });
    }
    Ok(answer)
}

/// The credential in `field` of `answer` and its lifetime (`expires_in`), checked as
/// [`parse_answer`] says.
fn credential_in(
    answer: &serde_json::Map<String, serde_json::Value>,
    field: &str,
    requested_at: SystemTime,
    min_lifetime: Duration,
) -> Result<Fetched, UpstreamError> {
    let token = secret_in(answer, field)?;
    let expires_in = match answer.get("expires_in").and_then(|v| v.as_u64()) {
        Some(s) => Duration::from_secs(s),
        None => {
            return Err(UpstreamError::Decode(
                "expires_in missing or not a positive whole number".into(),
            ))
        }
    };
    if expires_in < min_lifetime || expires_in > MAX_TOKEN_LIFETIME {
        return Err(UpstreamError::Decode(format!(
            "expires_in of {} s is outside the accepted {} s to {} s",
            expires_in.as_secs(),
            min_lifetime.as_secs(),
            MAX_TOKEN_LIFETIME.as_secs()
        )));
    }
    Ok(Fetched {
        token,
        expires_in,
        requested_at,
        depends_on: None,
    })
}

/// A credential-like string (token, ticket, refresh token, code) in `field`: present, a string,
/// and plausible. Held as a fingerprinted secret from here on.
fn secret_in(
    answer: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<AccessToken, UpstreamError> {
    let value = match answer.get(field) {
        Some(serde_json::Value::String(v)) => v,
        Some(_) => return Err(UpstreamError::Decode(format!("{field} is not a string"))),
        None => return Err(UpstreamError::Decode(format!("no {field} in the answer"))),
    };
    if !plausible_credential(value) {
        return Err(UpstreamError::Decode(format!(
            "{field} is empty or has characters no credential has"
        )));
    }
    Ok(AccessToken::new(value.as_str()))
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    // serde_json's messages can quote parts of the body; the category alone is safe to log.
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong field types",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// `timeout` is the deadline that ran out, for the message: awc's own timeout errors do not
/// carry it.
fn map_send_error(e: awc::error::SendRequestError, timeout: Duration) -> UpstreamError {
    use awc::error::{ConnectError, SendRequestError as E};
    match e {
        E::Timeout | E::Connect(ConnectError::Timeout) => UpstreamError::Timeout(timeout),
        E::Connect(ce) => UpstreamError::Connect(ce.to_string()),
        E::Send(io) => UpstreamError::Connect(format!("closed while sending: {}", io.kind())),
        E::Response(p) => UpstreamError::Decode(format!("malformed HTTP answer: {p}")),
        E::Url(_) => UpstreamError::Connect("invalid upstream URL".into()),
        other => UpstreamError::Connect(other.to_string()),
    }
}

fn map_payload_error(e: awc::error::PayloadError, limit: usize) -> UpstreamError {
    use awc::error::PayloadError as P;
    match e {
        P::Overflow => UpstreamError::Decode(format!("answer larger than {limit} bytes")),
        P::Incomplete(_) | P::Io(_) => {
            UpstreamError::Connect("connection closed before a complete answer".into())
        }
        other => UpstreamError::Decode(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn parse(body: &str) -> Result<Fetched, UpstreamError> {
        parse_answer(body.as_bytes(), "access_token", SystemTime::now(), MIN)
    }

    #[test]
    fn ticket_answers_parse() {
        let f = parse_answer(
            br#"{"errcode":0,"errmsg":"ok","ticket":"T-1","expires_in":7200}"#,
            "ticket",
            SystemTime::now(),
            MIN,
        )
        .unwrap();
        assert_eq!(f.token.expose(), "T-1");
        let e = parse_answer(
            br#"{"errcode":40001,"errmsg":"invalid credential"}"#,
            "ticket",
            SystemTime::now(),
            MIN,
        )
        .unwrap_err();
        assert_eq!(e.errcode(), Some(40001));
    }

    #[test]
    fn success_bodies_parse_with_or_without_errcode_zero() {
        let f = parse(r#"{"access_token":"ABC","expires_in":7200}"#).unwrap();
        assert_eq!(f.token.expose(), "ABC");
        assert_eq!(f.expires_in, Duration::from_secs(7200));
        let f = parse(r#"{"errcode":0,"errmsg":"ok","access_token":"X","expires_in":60}"#).unwrap();
        assert_eq!(f.expires_in, Duration::from_secs(60));
    }

    #[test]
    fn errcodes_are_errors_and_classified() {
        let e = parse(r#"{"errcode":40125,"errmsg":"invalid appsecret"}"#).unwrap_err();
        assert_eq!(e.reason(), "40125");
        assert_eq!(e.class(), ErrorClass::Config);
        assert_eq!(e.errcode(), Some(40125));
        let e = parse(r#"{"errcode":-1,"errmsg":"system busy"}"#).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Transient);
        assert_eq!(classify_errcode(45009), ErrorClass::Quota);
        assert_eq!(classify_errcode(40164), ErrorClass::Config);
    }

    #[test]
    fn malformed_bodies_are_decode_errors() {
        for body in [
            "<html>busy</html>",
            r#"{"expires_in":7200}"#,
            r#"{"access_token":"","expires_in":7200}"#,
            r#"{"access_token":"a b","expires_in":7200}"#,
            r#"{"access_token":"abc","expires_in":0}"#,
            r#"{"access_token":"abc","expires_in":-7200}"#,
            r#"{"access_token":"abc","expires_in":7200.5}"#,
            r#"{"access_token":"abc","expires_in":"7200"}"#,
            r#"{"access_token":"abc"}"#,
            r#"{"access_token":5,"expires_in":7200}"#,
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.reason(), "decode", "{body}");
        }
    }

    #[test]
    fn lifetimes_outside_the_accepted_range_are_decode_errors() {
        // Each would overflow a timer or a date, or serve `expires_in: 0`.
        for secs in [
            "1",
            "59",
            "604801",
            "1000000000000",
            "9223372036854775807",
            "18446744073709551615",
        ] {
            let body = format!(r#"{{"access_token":"abc","expires_in":{secs}}}"#);
            let e = parse(&body).unwrap_err();
            assert_eq!(e.reason(), "decode", "{secs}");
        }
        assert_eq!(
            parse(r#"{"access_token":"abc","expires_in":60}"#)
                .unwrap()
                .expires_in,
            MIN
        );
        assert_eq!(
            parse(r#"{"access_token":"abc","expires_in":604800}"#)
                .unwrap()
                .expires_in,
            MAX_TOKEN_LIFETIME
        );
    }

    #[test]
    fn decode_errors_do_not_quote_the_body() {
        let e = parse(r#"{"access_token":"SECRET-TOKEN","expires_in":"soon"}"#).unwrap_err();
        assert!(!e.to_string().contains("SECRET-TOKEN"), "{e}");
    }
}
