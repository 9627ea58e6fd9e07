//! The API gateway: WeChat business calls forwarded with the token of the credential they are
//! for, and repeated once, with a new token, when WeChat rejected the one sent.
//!
//! WeChat checks the token before doing anything else, so a call answered 40001, 42001 or
//! 40014 did nothing and is safe to repeat. The rejected token is reported to its actor as
//! `POST .../invalidate` would report it, so a thousand calls that meet the same rotated token
//! cost one fetch between them (the actor coalesces), and each is repeated once.
//!
//! [`query`] rewrites query strings, [`headers`] decides which headers cross, [`answer`] reads
//! WeChat's answer far enough to see a rejection and streams the rest back.

pub mod answer;
pub mod headers;
pub mod mask;
pub mod path;
pub mod query;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::apps::{CredentialHandle, Unavailable};
use crate::config::{ProxySettings, UpstreamSettings};
use crate::metrics::{Metrics, ProxyResult};
use crate::secret::Fingerprint;
use crate::token::TokenRecord;
use crate::upstream::{Forward, UpstreamError, UpstreamPool, WechatClient};

/// The errcodes of a rejected token: replaced (or never valid), expired, and WeCom's "invalid"
/// (which it also answers for an expired or early-ended token).
pub const REJECTED_TOKEN: [i64; 3] = [40001, 42001, 40014];

/// The same for a WeCom credential, with a suite token's "invalid" (40082) and "expired"
/// (42009): WeCom checks the token first too.
pub const WECOM_REJECTED_TOKEN: [i64; 5] = [40001, 42001, 40014, 40082, 42009];

/// Longest a call without a wxtoken credential waits for one of its slots.
const ANONYMOUS_WAIT: Duration = Duration::from_secs(1);

/// One of the gateway's `max_concurrent` slots, held by a call from its body's arrival to its
/// answer's last byte.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// The credential a forwarded call uses: its token actor and published status.
#[derive(Clone)]
pub struct Target {
    /// The `app` label of the call's metrics (an app name, or an authorizer's platform label).
    pub label: String,
    pub wecom: bool,
    /// The query parameter the token goes in: `access_token`, or `component_access_token` for
    /// the Open Platform's component calls that name it so.
    pub param: &'static str,
    pub credential: CredentialHandle,
}

/// A call as the caller made it, ready to forward: `query` is the raw query string (with
/// the client key already replaced by the AppSecret where the call takes one).
pub struct Call {
    pub method: Method,
    /// The WeChat API path, `/cgi-bin/user/info`.
    pub path: String,
    pub query: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// What must be taken out of its answer before it is sent on.
    pub answer: AnswerRule,
}

/// What a forwarded answer may not carry back to the caller.
pub enum AnswerRule {
    /// Nothing: streamed back as it came.
    AsIs,
    /// Authorized accounts' refresh tokens (a component call's answer): read whole, up to
    /// [`mask::ANSWER_LIMIT`], and each one replaced by `PLACEHOLDER_REFRESH_TOKEN`. With
    /// `json_only`, an answer that is not a JSON object is not sent on (502).
    NoRefreshTokens { json_only: bool },
    /// WeCom corps' permanent codes (a service-provider call's answer): read whole, up to
    /// [`mask::ANSWER_LIMIT`], each one replaced by `PLACEHOLDER_PERMANENT_CODE`.
    NoPermanentCodes,
    /// The AppSecret wxtoken put in a login call (an upstream may echo the request): read
    /// whole, up to [`mask::LOGIN_ANSWER_LIMIT`], with it replaced by `stand_in` (the client
    /// key the caller sent) in the body and the headers.
    NoSecret {
        secret: secrecy::SecretString,
        stand_in: String,
    },
}

/// Why a call was not answered by WeChat. Each front (the WeChat-compatible pass-through and
/// the `/v1/.../proxy/` routes) renders these in its own format.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("every gateway slot stayed busy for {}", humantime::format_duration(*.0))]
    Busy(Duration),
    #[error("every slot for calls without a wxtoken credential is busy")]
    AnonymousBusy,
    #[error("no valid token: {0}")]
    NoValidToken(String),
    #[error("WeChat did not answer: {0}")]
    Upstream(UpstreamError),
}

/// The gateway of one server: its settings, its own concurrency limit and metrics.
pub struct Gateway {
    pub settings: ProxySettings,
    upstream: UpstreamSettings,
    tls: Arc<rustls::ClientConfig>,
    /// The server's upstream pool: which of each thread's shared clients is this server's.
    pool: Arc<UpstreamPool>,
    metrics: Metrics,
    /// Independent of the token pool: API traffic waits here, never in front of a refresh.
    slots: Arc<Semaphore>,
    /// For calls that carry no wxtoken credential (web OAuth with a user's token): a small
    /// pool of their own, so strangers can never take the slots of authenticated calls.
    anonymous_slots: Arc<Semaphore>,
    /// Refresh tokens wxtoken holds, to find them by value in component answers.
    known: Arc<dyn mask::KnownRefreshTokens>,
    wait_limit: Duration,
    /// Identifies this gateway in each thread's [`CLIENTS`]; the clients go with it.
    alive: Arc<()>,
}

thread_local! {
    /// The HTTP client each worker thread forwards with, per gateway (tests run several servers
    /// in one process). Held strongly: [`WechatClient::shared`] keeps only weak references, and
    /// a client dropped after each call would close its connection to WeChat every time.
    static CLIENTS: RefCell<Vec<(Weak<()>, Rc<WechatClient>)>> = const { RefCell::new(Vec::new()) };
}

impl Gateway {
    pub fn new(
        settings: ProxySettings,
        upstream: UpstreamSettings,
        tls: Arc<rustls::ClientConfig>,
        pool: Arc<UpstreamPool>,
        metrics: Metrics,
        wait_limit: Duration,
        known: Arc<dyn mask::KnownRefreshTokens>,
    ) -> Gateway {
        let slots = Arc::new(Semaphore::new(settings.max_concurrent));
        let anonymous_slots = Arc::new(Semaphore::new(settings.anonymous_max_concurrent));
        Gateway {
            settings,
            upstream,
            tls,
            pool,
            metrics,
            slots,
            anonymous_slots,
            known,
            wait_limit,
            alive: Arc::new(()),
        }
    }

    /// This thread's client, kept for as long as the gateway lives.
    fn client(&self) -> Rc<WechatClient> {
        CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            clients.retain(|(gateway, _)| gateway.strong_count() > 0);
            if let Some((_, client)) = clients
                .iter()
                .find(|(gateway, _)| std::ptr::eq(gateway.as_ptr(), Arc::as_ptr(&self.alive)))
            {
                return client.clone();
            }
            let client = WechatClient::shared(&self.upstream, &self.tls, &self.pool);
            clients.push((Arc::downgrade(&self.alive), client.clone()));
            client
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts a call refused before it was forwarded.
    pub fn refused(&self, label: &str) {
        self.metrics.proxy_request(label, ProxyResult::Refused);
    }

    /// Forwards `call`, with `target`'s token (none for calls that carry their own
    /// credentials), and repeats it once when WeChat rejects the token. `label` names the
    /// call in metrics when there is no target. `slot` (from [`Gateway::slot`], taken before
    /// the body was read) is held until the answer's last byte is sent.
    pub async fn forward(
        &self,
        slot: Slot,
        call: Call,
        target: Option<&Target>,
        label: &str,
    ) -> Result<HttpResponse, GatewayError> {
        let label = target.map_or(label, |t| t.label.as_str());
        let result = self.forward_counted(slot, call, target, label).await;
        match &result {
            Ok((_, outcome)) => self.metrics.proxy_request(label, *outcome),
            Err(GatewayError::Upstream(_)) => self
                .metrics
                .proxy_request(label, ProxyResult::UpstreamError),
            Err(_) => self.metrics.proxy_request(label, ProxyResult::Refused),
        }
        result.map(|(resp, _)| resp)
    }

    async fn forward_counted(
        &self,
        slot: Slot,
        call: Call,
        target: Option<&Target>,
        label: &str,
    ) -> Result<(HttpResponse, ProxyResult), GatewayError> {
        let mut token = match target {
            Some(t) => Some(self.current_token(t).await?),
            None => None,
        };
        let mut retried = false;
        loop {
            let query = match &token {
                Some(t) => query::with_param(
                    &call.query,
                    target.map_or("access_token", |t| t.param),
                    t.token.expose(),
                ),
                None => call.query.clone(),
            };
            let mut path_and_query = String::with_capacity(call.path.len() + 1 + query.len());
            path_and_query.push_str(&call.path);
            if !query.is_empty() {
                path_and_query.push('?');
                path_and_query.push_str(&query);
            }
            let mut peeked = self
                .attempt(&call, target.is_some_and(|t| t.wecom), &path_and_query)
                .await
                .inspect_err(|e| {
                    tracing::debug!(app = label, path = %call.path,
                        token = ?token.as_ref().map(|t| t.token.fingerprint()),
                        error = %e, "forwarded call failed");
                })?;
            let errcode = peeked.errcode();
            if let (Some(t), Some(sent), Some(code), false) = (target, &token, errcode, retried) {
                let rejected: &[i64] = if t.wecom {
                    &WECOM_REJECTED_TOKEN
                } else {
                    &REJECTED_TOKEN
                };
                if rejected.contains(&code) {
                    if let Some(fresh) = self.replace_rejected(t, sent).await {
                        retried = true;
                        self.metrics.proxy_retried(label);
                        tracing::debug!(app = label, path = %call.path, errcode = code,
                            rejected = %sent.token.fingerprint(),
                            token = %fresh.token.fingerprint(),
                            "token rejected; repeating the call with a new one");
                        token = Some(fresh);
                        continue;
                    }
                }
            }
            let outcome = match errcode {
                Some(code) if code != 0 => {
                    self.metrics.proxy_errcode(code);
                    ProxyResult::WechatError
                }
                _ if peeked.status().is_server_error() => ProxyResult::UpstreamError,
                _ if retried => ProxyResult::Retried,
                _ => ProxyResult::Ok,
            };
            self.apply_rule(&call.answer, &mut peeked).await?;
            tracing::debug!(app = label, path = %call.path,
                token = ?token.as_ref().map(|t| t.token.fingerprint()),
                status = peeked.status().as_u16(), errcode, result = outcome.as_str(),
                "forwarded call answered");
            return Ok((peeked.into_response(slot), outcome));
        }
    }

    /// Takes out of an answer what its call's rule says may not go back.
    async fn apply_rule(
        &self,
        rule: &AnswerRule,
        peeked: &mut answer::Peeked,
    ) -> Result<(), GatewayError> {
        match rule {
            AnswerRule::AsIs => Ok(()),
            AnswerRule::NoRefreshTokens { json_only } => {
                let whole = peeked
                    .read_whole(mask::ANSWER_LIMIT)
                    .await
                    .map_err(GatewayError::Upstream)?;
                let placeholder = crate::platform::PLACEHOLDER_REFRESH_TOKEN;
                match mask::without_refresh_tokens(whole, placeholder, &*self.known, *json_only) {
                    Ok(Some(masked)) => peeked.replace_body(Bytes::from(masked)),
                    Ok(None) => {}
                    Err(mask::Unchecked::NotJson) => {
                        return Err(GatewayError::Upstream(UpstreamError::Decode(
                            "an answer that may carry refresh tokens is not a JSON object".into(),
                        )))
                    }
                }
                Ok(())
            }
            AnswerRule::NoPermanentCodes => {
                let whole = peeked
                    .read_whole(mask::ANSWER_LIMIT)
                    .await
                    .map_err(GatewayError::Upstream)?;
                let placeholder = crate::wecom::PLACEHOLDER_PERMANENT_CODE;
                if let Some(masked) = mask::without_permanent_codes(whole, placeholder) {
                    peeked.replace_body(Bytes::from(masked));
                }
                Ok(())
            }
            AnswerRule::NoSecret { secret, stand_in } => {
                use secrecy::ExposeSecret as _;
                let secret = secret.expose_secret();
                let whole = peeked
                    .read_whole(mask::LOGIN_ANSWER_LIMIT)
                    .await
                    .map_err(GatewayError::Upstream)?;
                if let Some(clean) = mask::without_secret(whole, secret, stand_in) {
                    peeked.replace_body(Bytes::from(clean));
                }
                peeked.rewrite_headers(|value| mask::without_secret(value, secret, stand_in));
                Ok(())
            }
        }
    }

    /// A gateway slot, waiting at most the call timeout for one. Taken before the call's body
    /// is read, so `max_concurrent` bounds the memory bodies take too (`max_body_bytes` each).
    pub async fn slot(&self) -> Result<Slot, GatewayError> {
        // Without a timer when a slot is free, as it nearly always is.
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot(permit));
        }
        let wait = self.settings.timeout;
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            // The semaphore is never closed; treated as busy all the same.
            _ => Err(GatewayError::Busy(wait)),
        }
    }

    /// A slot for a call that carries no wxtoken credential, from their own small pool
    /// (`[proxy] anonymous_max_concurrent`), waiting at most a second: such a call has read
    /// its (small) body already, and a stranger's burst must not queue for long.
    pub async fn anonymous_slot(&self) -> Result<Slot, GatewayError> {
        if let Ok(permit) = self.anonymous_slots.clone().try_acquire_owned() {
            return Ok(Slot(permit));
        }
        match tokio::time::timeout(ANONYMOUS_WAIT, self.anonymous_slots.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            _ => Err(GatewayError::AnonymousBusy),
        }
    }

    /// Calls holding a slot now: each from its body's first byte to its answer's last, and
    /// with it whatever of its body it holds (the body lives no longer than its slot).
    pub fn in_flight(&self) -> usize {
        self.settings
            .max_concurrent
            .saturating_sub(self.slots.available_permits())
    }

    /// One attempt: send, and read the answer far enough to see a rejection.
    async fn attempt(
        &self,
        call: &Call,
        wecom: bool,
        path_and_query: &str,
    ) -> Result<answer::Peeked, GatewayError> {
        let client = self.client();
        let started = Instant::now();
        let sent = client
            .forward(Forward {
                wecom,
                method: call.method.clone(),
                path_and_query,
                headers: &call.headers,
                body: call.body.clone(),
                timeout: self.settings.timeout,
            })
            .await;
        self.metrics.proxy_upstream(started.elapsed());
        let resp = sent.map_err(GatewayError::Upstream)?;
        answer::peek(resp).await.map_err(GatewayError::Upstream)
    }

    /// The credential's token: the published one while valid, else the actor's (which may
    /// wait for a fetch).
    async fn current_token(&self, target: &Target) -> Result<Arc<TokenRecord>, GatewayError> {
        target
            .credential
            .current(self.wait_limit)
            .await
            .map_err(|u| GatewayError::NoValidToken(why(&u)))
    }

    /// Reports `rejected` to the credential's actor; the new token, if there is one (none when
    /// WeChat still accepts it, it is too soon to refetch, or the fetch failed: the caller then
    /// gets WeChat's answer).
    async fn replace_rejected(
        &self,
        target: &Target,
        rejected: &TokenRecord,
    ) -> Option<Arc<TokenRecord>> {
        match target
            .credential
            .report_rejected(&rejected.token, self.wait_limit)
            .await
        {
            Ok(inv) if inv.refreshed && inv.record.token != rejected.token => Some(inv.record),
            _ => None,
        }
    }
}

fn why(u: &Unavailable) -> String {
    match u {
        Unavailable::NoToken(e) => match &e.last_failure {
            Some(f) => format!("last fetch failed: {}", f.message),
            None => "no token fetched yet".into(),
        },
        Unavailable::NoAnswer => "the token service did not answer in time".into(),
    }
}

/// The refresh tokens of every platform's accounts, for [`mask`].
pub struct PlatformRefreshTokens(pub Vec<Arc<crate::platform::Platform>>);

impl mask::KnownRefreshTokens for PlatformRefreshTokens {
    fn known_among(&self, words: &std::collections::HashSet<&str>) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|p| p.refresh_tokens_among(words))
            .collect()
    }
}

/// For logs: a token's fingerprint, never the token.
pub fn fingerprint(token: &str) -> Fingerprint {
    Fingerprint::of(token)
}
