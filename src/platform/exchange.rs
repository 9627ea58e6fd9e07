//! Authorization codes from the push (or the redirect) to the account: a pushed code is stored
//! before the push is answered, exchanged with `api_query_auth` in the background, and resumed
//! after a crash by whichever instance looks first; every exchange of one code waits for the
//! others, in the process and across a fleet.
//!
//! - **Stored first.** An `authorized` / `updateauthorized` push is answered once its code is
//!   durable as a pending [`CodeRecord`]. The record is marked done once the account is stored
//!   (`exchanged`) or the code is dead (WeChat's 61009 invalid / 61010 expired, or its
//!   `AuthorizationCodeExpiredTime` passed), so nothing is resumed forever.
//! - **Resumed.** Every instance looks for pending records at start and then every
//!   [`RESUME_INTERVAL`] ([`RESUME_RETRY`] while it saw some): a process killed mid-exchange
//!   loses no acknowledged authorization, and neither does a fleet that lost the instance.
//! - **Once per code.** In the process, a code's exchanges wait for each other ([`Exchanges`]).
//!   In a fleet, the exchanging instance holds the code's claim in the store, for twice the
//!   upstream timeout plus five seconds, renewed before each attempt; the others wait for the
//!   record to say it is done (a caller) or leave it to the holder (the background). If two
//!   exchanges still meet (a claim lapsed, Redis was down), WeChat answers the second with
//!   61009; for a code whose account is stored since the push arrived, that is success.
//! - **Expiry.** WeChat's codes live ten minutes. A stored code is not sent once it is
//!   [`EXPIRY_GRACE`] past its expiry by this clock (the clocks may disagree by the push
//!   window), and such a code is marked dead.
//!
//! The code itself is a secret: logs and keys name it by its SHA-256.
//!
//! [`Exchanges`]: super::codes::Exchanges

use std::time::{Duration, Instant, SystemTime};

use super::codes::CODE_LIFE;
use super::runtime::Platform;
use crate::push::event::Authorization;
use crate::secret::AccessToken;
use crate::store::platform::{code_digest, resume_pending, AuthorizerState, CodeRecord, CodeState};
use crate::upstream::{ErrorClass, UpstreamError};

/// How far past its expiry (by this clock) a stored code is still sent to WeChat: WeChat's
/// clock and this one may disagree by as much as a push's timestamp may (five minutes).
pub const EXPIRY_GRACE: Duration = crate::push::replay::WINDOW;

/// How often an instance looks for stored codes not exchanged yet, when it saw none last time
/// (another instance may store one and die).
pub const RESUME_INTERVAL: Duration = Duration::from_secs(60);

/// ... and while it saw some: one held by a dead instance's claim is taken over once the claim
/// lapses, and one whose exchange failed (WeChat unreachable) is tried again, until it expires.
pub const RESUME_RETRY: Duration = Duration::from_secs(10);

/// Attempts of one exchange, 0.5 s, 1 s and 2 s apart, on transient failures.
const ATTEMPTS: u32 = 4;

/// How often a caller waiting for another instance's exchange of its code looks at the record.
const CLAIM_POLL: Duration = Duration::from_millis(250);

/// One exchange of a single-use code, made by `attempt` (given the attempt's number, from 1),
/// tried again on transient failures, 0.5 s, 1 s and 2 s apart ([`ATTEMPTS`] in all), unless
/// `spent` says the errcode means the code is used up or expired: retrying cannot help then.
/// The Open Platform's authorization codes and WeCom's AuthCodes are exchanged this way.
pub async fn retry_exchange<T, F, Fut>(
    spent: impl Fn(Option<i64>) -> bool,
    mut attempt: F,
) -> Result<T, UpstreamError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, UpstreamError>>,
{
    let mut delay = Duration::from_millis(500);
    let mut n = 0;
    loop {
        n += 1;
        match attempt(n).await {
            Err(e) if n < ATTEMPTS && e.class() == ErrorClass::Transient && !spent(e.errcode()) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

/// What an exchange came to.
enum Exchanged {
    /// The code's account.
    Account(String),
    /// Someone else is exchanging this code (here, or another instance holds its claim).
    Busy,
}

impl Platform {
    /// Exchanges an authorization code from the redirect (`POST /authorizers`, the facade's
    /// `api_query_auth`), waiting for any other exchange of it, here or in the fleet. A code
    /// already exchanged is not sent again (WeChat would refuse it, 61009): its account is the
    /// answer. Transient failures are retried a few times within the code's life.
    pub async fn authorize_code(&self, code: &AccessToken) -> Result<String, UpstreamError> {
        match self.exchange(code, None, true).await? {
            Exchanged::Account(appid) => Ok(appid),
            // Only a background exchange leaves a busy code to another.
            Exchanged::Busy => Err(UpstreamError::Decode(
                "the code is being exchanged elsewhere".into(),
            )),
        }
    }

    /// Stores the code of an `authorized` / `updateauthorized` push as pending, durably: the
    /// push is answered only after this. A code already done stays done.
    pub(super) async fn accept_pushed_code(
        &self,
        auth: &Authorization,
    ) -> anyhow::Result<CodeRecord> {
        use secrecy::ExposeSecret as _;
        let code = auth.authorization_code.expose_secret();
        let now = SystemTime::now();
        // WeChat's time, taken at its word but never beyond a code's documented life.
        let pushed =
            crate::time::UnixMillis::saturating_from_secs(auth.code_expires_at).to_system_time();
        let record = CodeRecord {
            digest: code_digest(code),
            authorizer_appid: auth.authorizer_appid.clone(),
            code: Some(AccessToken::new(code)),
            state: CodeState::Pending,
            errcode: None,
            expires_at: pushed.min(now + CODE_LIFE),
            received_at: now,
            updated_at: now,
        };
        self.store.save_code(self.name(), &record).await?;
        Ok(record)
    }

    /// Exchanges a stored pending code in the background (a push just answered, or one
    /// resumed), unless another exchange of it runs: that one finishes it, or leaves it
    /// pending for the next look.
    pub(super) fn exchange_pushed_code(&self, record: CodeRecord) {
        let Some(me) = self.me() else {
            return;
        };
        actix::spawn(async move {
            let Some(code) = record.code.clone() else {
                return;
            };
            match me.exchange(&code, Some(&record), false).await {
                Ok(Exchanged::Account(_)) => {}
                Ok(Exchanged::Busy) => {
                    tracing::debug!(platform = %me.name(), authorizer = %record.authorizer_appid,
                        "authorization code being exchanged elsewhere");
                }
                Err(e) => {
                    tracing::error!(platform = %me.name(), authorizer = %record.authorizer_appid,
                        error = %e, "could not exchange the authorization code");
                }
            }
        });
    }

    /// Starts the exchange of every stored code not exchanged yet, and forgets the records of
    /// codes long expired. Answers how many were pending (0: look again in a while; a store
    /// that cannot answer counts as one, to look again soon).
    pub async fn resume_codes(&self) -> usize {
        resume_pending(&*self.store, self.name(), SystemTime::now(), |r, code| {
            // Already running here: it finishes the record itself.
            if !self.exchanges.is_busy(code.expose()) {
                tracing::info!(platform = %self.name(), authorizer = %r.authorizer_appid,
                    "resuming the exchange of a stored authorization code");
                self.exchange_pushed_code(r);
            }
        })
        .await
    }

    /// One exchange of `code` (with `pushed`, its stored record, for a push's code). `wait`:
    /// wait for other exchanges of the code (a caller); otherwise leave the code to them.
    async fn exchange(
        &self,
        code: &AccessToken,
        pushed: Option<&CodeRecord>,
        wait: bool,
    ) -> Result<Exchanged, UpstreamError> {
        if let Some(appid) = self.already_exchanged(code) {
            return Ok(self.known(appid, pushed).await);
        }
        let _slot = if wait {
            self.exchanges.slot(code.expose()).await
        } else {
            match self.exchanges.try_slot(code.expose()) {
                Some(slot) => slot,
                None => return Ok(Exchanged::Busy),
            }
        };
        // The exchange waited for may have been this code's.
        if let Some(appid) = self.already_exchanged(code) {
            return Ok(self.known(appid, pushed).await);
        }
        let digest = code_digest(code.expose());
        // What the fleet knows of the code: done by another instance, or pushed to one.
        let mut record = pushed.cloned();
        match self.stored_code(&digest).await {
            Some(r) if r.state == CodeState::Exchanged => {
                return Ok(self.exchanged_elsewhere(code, r.authorizer_appid).await);
            }
            Some(r) if r.state == CodeState::Dead => return Err(dead(r.errcode)),
            Some(r) => record = record.or(Some(r)),
            None => {}
        }
        if let Some(r) = record.as_ref().filter(|r| {
            r.expires_at
                .checked_add(EXPIRY_GRACE)
                .is_some_and(|t| t < SystemTime::now())
        }) {
            tracing::warn!(platform = %self.name(), authorizer = %r.authorizer_appid,
                "authorization code expired before it was exchanged");
            self.finish(r, CodeState::Dead, Some(61010)).await;
            return Err(dead(Some(61010)));
        }
        let ttl = self.claim_ttl();
        let claimed = match self.claim(&digest, ttl, wait).await {
            Claim::Held => true,
            Claim::Unavailable => false,
            Claim::Busy => return Ok(Exchanged::Busy),
            Claim::Done(Ok(Exchanged::Account(appid))) => {
                return Ok(self.exchanged_elsewhere(code, appid).await);
            }
            Claim::Done(result) => return result,
        };
        let result = self.call_query_auth(code, &digest, ttl, claimed).await;
        let outcome = self.settle(code, &digest, record.as_ref(), result).await;
        if claimed {
            if let Err(e) = self.store.release_code(self.name(), &digest).await {
                // The claim lapses by itself.
                tracing::debug!(platform = %self.name(), error = %format!("{e:#}"),
                    "could not release a code's claim");
            }
        }
        outcome
    }

    /// `api_query_auth`, retrying transient failures; the claim renewed before each attempt.
    async fn call_query_auth(
        &self,
        code: &AccessToken,
        digest: &str,
        ttl: Duration,
        claimed: bool,
    ) -> Result<crate::upstream::Authorization, UpstreamError> {
        let spent = |e: Option<i64>| matches!(e, Some(61009 | 61010));
        retry_exchange(spent, |attempt| async move {
            let Some(component) = self.wait_component_token().await else {
                return Err(UpstreamError::NoToken);
            };
            let client = self.upstream.client();
            let _slot = client
                .slot(crate::upstream::Priority::Urgent, Default::default())
                .await;
            if claimed && attempt > 1 {
                // A lapse only risks a second exchange, which WeChat answers with 61009.
                let _ = self.store.claim_code(self.name(), digest, ttl).await;
            }
            client
                .query_auth(&component.token, &self.settings.component_appid, code)
                .await
        })
        .await
    }

    /// Installs the account an exchange brought and marks the code done, or works out what a
    /// refusal means. A transient failure leaves a pushed code pending: it is resumed.
    async fn settle(
        &self,
        code: &AccessToken,
        digest: &str,
        record: Option<&CodeRecord>,
        result: Result<crate::upstream::Authorization, UpstreamError>,
    ) -> Result<Exchanged, UpstreamError> {
        match result {
            Ok(auth) => {
                let appid = auth.authorizer_appid.clone();
                self.install(auth)
                    .await
                    .map_err(|e| UpstreamError::Decode(format!("{e:#}")))?;
                self.remember(code, &appid);
                let done = match record {
                    Some(r) => CodeRecord {
                        authorizer_appid: appid.clone(),
                        ..r.clone()
                    },
                    None => {
                        let now = SystemTime::now();
                        CodeRecord {
                            digest: digest.to_string(),
                            authorizer_appid: appid.clone(),
                            code: None,
                            state: CodeState::Exchanged,
                            errcode: None,
                            expires_at: now + CODE_LIFE,
                            received_at: now,
                            updated_at: now,
                        }
                    }
                };
                // Also for a redirect's code: a fleet's other instances then know it.
                self.finish(&done, CodeState::Exchanged, None).await;
                Ok(Exchanged::Account(appid))
            }
            Err(e) if matches!(e.errcode(), Some(61009 | 61010)) => {
                let Some(r) = record else {
                    return Err(e);
                };
                // Spent by an exchange whose answer reached someone: another instance (its
                // claim lapsed), or this one before a restart that lost nothing.
                if self.stored_since(&r.authorizer_appid, r.received_at).await {
                    tracing::info!(platform = %self.name(), authorizer = %r.authorizer_appid,
                        "authorization code already exchanged by another instance");
                    self.remember(code, &r.authorizer_appid);
                    self.finish(r, CodeState::Exchanged, None).await;
                    return Ok(Exchanged::Account(r.authorizer_appid.clone()));
                }
                tracing::error!(platform = %self.name(), authorizer = %r.authorizer_appid,
                    error = %e, "WeChat refused a pushed authorization code; the account comes \
                    back with the next reconciliation (POST /v1/admin/platforms/{{name}}/reconcile)");
                self.finish(r, CodeState::Dead, e.errcode()).await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Claims the code's exchange in the fleet. A caller (`wait`) waits while another instance
    /// holds it, until the record says the code is done or the claim is free (or it has
    /// waited a claim's lifetime: that instance may be gone without a trace).
    async fn claim(&self, digest: &str, ttl: Duration, wait: bool) -> Claim {
        let started = Instant::now();
        loop {
            match self.store.claim_code(self.name(), digest, ttl).await {
                Ok(true) => return Claim::Held,
                Ok(false) if !wait => return Claim::Busy,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(platform = %self.name(), error = %format!("{e:#}"),
                        "cannot claim a code's exchange; exchanging without a claim");
                    return Claim::Unavailable;
                }
            }
            if started.elapsed() > ttl {
                return Claim::Unavailable;
            }
            tokio::time::sleep(CLAIM_POLL).await;
            match self.stored_code(digest).await {
                Some(r) if r.state == CodeState::Exchanged => {
                    return Claim::Done(Ok(Exchanged::Account(r.authorizer_appid)))
                }
                Some(r) if r.state == CodeState::Dead => return Claim::Done(Err(dead(r.errcode))),
                _ => {}
            }
        }
    }

    /// The code's stored record; a store that cannot answer is no reason not to exchange.
    async fn stored_code(&self, digest: &str) -> Option<CodeRecord> {
        match self.store.load_code(self.name(), digest).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(platform = %self.name(), error = %format!("{e:#}"),
                    "cannot read an authorization code's record; exchanging it anyway");
                None
            }
        }
    }

    /// Saves the record as done. A failure is logged: the account is stored (or the code
    /// dead) all the same, and a resumed exchange of a code left pending finds that out.
    async fn finish(&self, record: &CodeRecord, state: CodeState, errcode: Option<i64>) {
        let done = record.done(state, errcode, SystemTime::now());
        if let Err(e) = self.store.save_code(self.name(), &done).await {
            tracing::warn!(platform = %self.name(), authorizer = %record.authorizer_appid,
                state = state.as_str(), error = %format!("{e:#}"),
                "could not mark an authorization code done");
        }
    }

    /// Whether the account is stored as authorized, with a refresh token, by an exchange made
    /// after `since` (`authorized_at` is set by an exchange only; a token refresh or a state
    /// change keeps it): then an exchange of a code pushed at `since` reached its end.
    async fn stored_since(&self, appid: &str, since: SystemTime) -> bool {
        self.reload_authorizer(appid).await;
        self.authorizer(appid).is_some_and(|a| {
            a.state == AuthorizerState::Authorized
                && a.refresh_token.is_some()
                && a.authorized_at.is_some_and(|at| at >= since)
        })
    }

    /// A code this process exchanged: its account, and a stored record of it marked done if
    /// it was not yet (the push of a code the redirect brought first), so it is not resumed.
    async fn known(&self, appid: String, pushed: Option<&CodeRecord>) -> Exchanged {
        if let Some(r) = pushed {
            let done = CodeRecord {
                authorizer_appid: appid.clone(),
                ..r.clone()
            };
            self.finish(&done, CodeState::Exchanged, None).await;
        }
        Exchanged::Account(appid)
    }

    /// A code another instance exchanged: its account, read from the store so this instance
    /// knows it too.
    async fn exchanged_elsewhere(&self, code: &AccessToken, appid: String) -> Exchanged {
        self.reload_authorizer(&appid).await;
        self.remember(code, &appid);
        Exchanged::Account(appid)
    }

    fn already_exchanged(&self, code: &AccessToken) -> Option<String> {
        let appid = self.exchanges.exchanged(code.expose(), Instant::now())?;
        tracing::debug!(platform = %self.name(), authorizer = %appid,
            "authorization code already exchanged");
        Some(appid)
    }

    fn remember(&self, code: &AccessToken, appid: &str) {
        self.exchanges
            .remember(code.expose(), appid.to_string(), Instant::now());
    }

    /// How long a claim holds: an attempt's upstream call at most (with room for a queue),
    /// renewed before each further attempt.
    fn claim_ttl(&self) -> Duration {
        self.deps.upstream.timeout.saturating_mul(2) + Duration::from_secs(5)
    }
}

/// What claiming a code's exchange came to.
enum Claim {
    /// This instance holds it.
    Held,
    /// The store cannot say (Redis down): exchange without one.
    Unavailable,
    /// Another instance holds it (and the caller does not wait).
    Busy,
    /// Another instance finished it meanwhile.
    Done(Result<Exchanged, UpstreamError>),
}

/// The error a dead code answers with, as WeChat would.
fn dead(errcode: Option<i64>) -> UpstreamError {
    let errcode = errcode.unwrap_or(61010);
    UpstreamError::Api {
        errcode,
        errmsg: if errcode == 61009 {
            "authorization code is invalid".into()
        } else {
            "authorization code is expired".into()
        },
    }
}
