//! AuthCodes from the push to the corp: a `create_auth` or `reset_permanent_code` push is
//! answered once its AuthCode is durable as a pending code record; the code is exchanged with
//! `get_permanent_code` in the background (WeCom wants its answer within a second), with the
//! platform's retries ([`retry_exchange`]), and resumed after a crash by whichever instance
//! looks first (at start, then every minute, every ten seconds while some are pending).
//!
//! Once per code: in the process the platform's per-code slots ([`crate::platform::Exchanges`]);
//! in a fleet the store's claim of the code. An AuthCode works once (40078 after), so a code
//! WeCom refuses, or one past its life, is marked dead and never tried again. The code is a
//! secret: logs and keys name it by its SHA-256.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret as _, SecretString};

use super::runtime::Suite;
use crate::platform::retry_exchange;
use crate::secret::AccessToken;
use crate::store::platform::{resume_pending, CodeRecord, CodeState};
use crate::upstream::{wecom_errcode, Priority, Promotion, SuiteInstall, UpstreamError};

/// How long WeCom honours an AuthCode.
const AUTH_CODE_LIFE: Duration = Duration::from_secs(600);
/// How far past its life a stored code is still tried: the clocks may disagree by as much as a
/// push's timestamp may.
const EXPIRY_GRACE: Duration = crate::push::replay::WINDOW;
/// How often stored codes are looked for when none was pending last time...
const RESUME_INTERVAL: Duration = Duration::from_secs(60);
/// ... and while some were (WeCom unreachable, a claim held by a dead instance).
const RESUME_RETRY: Duration = Duration::from_secs(10);

impl Suite {
    /// Stores a pushed AuthCode as pending, durably: the push is answered only after this.
    pub(super) async fn accept_code(&self, code: &SecretString) -> anyhow::Result<CodeRecord> {
        let code = AccessToken::new(code.expose_secret());
        self.store
            .save_pending_code(&code, SystemTime::now(), AUTH_CODE_LIFE)
            .await
    }

    /// Exchanges a stored pending code in the background, unless it is being exchanged.
    pub(super) fn exchange_in_background(&self, record: CodeRecord) {
        if let Some(me) = self.me() {
            // Counted from before the push is answered until the task ends.
            let running = Running::start(me);
            actix::spawn(async move { running.0.exchange(record).await });
        }
    }

    /// How many AuthCode exchanges started in the background have not ended yet. A push's
    /// exchange runs after its answer: this is how a test knows it is over (and has made
    /// whatever call it was going to make).
    pub fn exchanges_running(&self) -> usize {
        self.exchanges_running.load(Ordering::SeqCst)
    }

    async fn exchange(&self, record: CodeRecord) {
        let Some(code) = record.code.clone() else {
            return;
        };
        // Running here already: that exchange finishes the record.
        let Some(_slot) = self.exchanges.try_slot(code.expose()) else {
            return;
        };
        let (store, ns) = self.store.codes();
        if self
            .exchanges
            .exchanged(code.expose(), Instant::now())
            .is_some()
        {
            return;
        }
        if let Ok(Some(r)) = store.load_code(ns, &record.digest).await {
            if r.state != CodeState::Pending {
                return;
            }
        }
        if record
            .expires_at
            .checked_add(EXPIRY_GRACE)
            .is_some_and(|t| t < SystemTime::now())
        {
            tracing::warn!(suite = %self.name(), code = %record.digest,
                "AuthCode expired before it was exchanged; the corp must install again");
            self.finish(
                &record,
                CodeState::Dead,
                Some(wecom_errcode::AUTH_CODE_INVALID),
            )
            .await;
            return;
        }
        let ttl = self.deps.upstream.timeout.saturating_mul(2) + Duration::from_secs(5);
        let claimed = match store.claim_code(ns, &record.digest, ttl).await {
            Ok(true) => true,
            // Another instance exchanges it; the next look finds it done or its claim lapsed.
            Ok(false) => return,
            Err(_) => false,
        };
        let result = self.call_permanent_code(&code).await;
        self.settle(&record, &code, result).await;
        if claimed {
            // The claim lapses by itself if this fails.
            let _ = store.release_code(ns, &record.digest).await;
        }
    }

    /// `get_permanent_code`, retried on transient failures; a dead suite token is reported.
    async fn call_permanent_code(&self, code: &AccessToken) -> Result<SuiteInstall, UpstreamError> {
        let spent = |e: Option<i64>| e == Some(wecom_errcode::AUTH_CODE_INVALID);
        retry_exchange(spent, |_| {
            self.with_suite_token(Priority::Urgent, Promotion::default(), |c, t| async move {
                c.get_permanent_code(&t, code).await
            })
        })
        .await
    }

    /// Stores the corp an exchange brought and marks the code done, or marks a refused code
    /// dead; a transient failure leaves it pending, to be resumed.
    async fn settle(
        &self,
        record: &CodeRecord,
        code: &AccessToken,
        result: Result<SuiteInstall, UpstreamError>,
    ) {
        match result {
            Ok(install) => {
                let corpid = install.corpid.clone();
                if let Err(e) = self.install(install).await {
                    tracing::error!(suite = %self.name(), corp = %corpid, error = %format!("{e:#}"),
                        "could not save the corp's permanent code yet: it is served from memory \
                         and the store keeps retrying (WeCom honours an AuthCode once)");
                }
                self.exchanges
                    .remember(code.expose(), corpid.clone(), Instant::now());
                let done = CodeRecord {
                    authorizer_appid: corpid,
                    ..record.clone()
                };
                self.finish(&done, CodeState::Exchanged, None).await;
            }
            Err(e) if e.errcode() == Some(wecom_errcode::AUTH_CODE_INVALID) => {
                tracing::error!(suite = %self.name(), code = %record.digest, error = %e,
                    "WeCom refused a pushed AuthCode");
                self.finish(record, CodeState::Dead, e.errcode()).await;
            }
            Err(e) => {
                tracing::warn!(suite = %self.name(), code = %record.digest, error = %e,
                    "could not exchange an AuthCode yet; it is tried again");
            }
        }
    }

    /// Saves the record as done, without its code.
    async fn finish(&self, record: &CodeRecord, state: CodeState, errcode: Option<i64>) {
        let done = record.done(state, errcode, SystemTime::now());
        let (store, ns) = self.store.codes();
        if let Err(e) = store.save_code(ns, &done).await {
            tracing::warn!(suite = %self.name(), code = %record.digest, error = %format!("{e:#}"),
                "could not mark an AuthCode done");
        }
    }

    /// Starts the exchange of every stored pending code, and forgets the records of codes long
    /// expired. How many were pending.
    async fn resume_codes(&self) -> usize {
        let (store, ns) = self.store.codes();
        resume_pending(&**store, ns, SystemTime::now(), |r, code| {
            if !self.exchanges.is_busy(code.expose()) {
                self.exchange_in_background(r);
            }
        })
        .await
    }

    /// Starts the background work on the current arbiter: the code resumption and the
    /// `"active"` sweep. It holds the suite weakly and ends when the suite is dropped.
    pub fn spawn_background(self: &Arc<Self>) {
        actix::spawn(background(Arc::downgrade(self)));
    }
}

/// An exchange started in the background: counted in [`Suite::exchanges_running`] until its
/// task ends or is dropped.
struct Running(Arc<Suite>);

impl Running {
    fn start(suite: Arc<Suite>) -> Running {
        suite.exchanges_running.fetch_add(1, Ordering::SeqCst);
        Running(suite)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.exchanges_running.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn background(suite: Weak<Suite>) {
    let mut first = true;
    loop {
        let Some(s) = suite.upgrade() else {
            return;
        };
        let pending = s.resume_codes().await;
        if first {
            tracing::info!(suite = %s.name(), pending, "stored AuthCodes looked at");
            first = false;
        }
        s.sweep(SystemTime::now());
        drop(s);
        tokio::time::sleep(if pending > 0 {
            RESUME_RETRY
        } else {
            RESUME_INTERVAL
        })
        .await;
    }
}
