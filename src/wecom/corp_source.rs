//! A corp token's source: for a suite, `get_corp_token` with the suite token and the corp's
//! permanent code; for a customized-app template, `gettoken` with the permanent code as the
//! app's secret. WeCom hands out the same token while it lives, so it is scheduled as a WeCom
//! app's (asked for a second after its expiry).
//!
//! What a refusal means: a suite token WeCom ends early (40082, 42009) is reported to its actor,
//! which mints a new one from the stored ticket at once; a refused permanent code (40084) marks
//! the corp as needing a new install (409 to clients), and nothing retries it.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use futures_util::future::LocalBoxFuture;
use secrecy::SecretString;

use super::runtime::Suite;
use crate::config::SuiteKind;
use crate::token::external::ExternalSource;
use crate::upstream::{wecom_errcode, Fetched, Priority, ProbeKind, Promotion, UpstreamError};

/// Whether an errcode says the suite token is dead (invalid, or expired early).
pub(super) fn suite_token_dead(errcode: Option<i64>) -> bool {
    matches!(
        errcode,
        Some(wecom_errcode::SUITE_TOKEN_INVALID | wecom_errcode::SUITE_TOKEN_EXPIRED)
    )
}

pub(super) struct CorpSource {
    /// Weak: the suite holds this source's actor.
    suite: Weak<Suite>,
    corpid: String,
}

impl CorpSource {
    pub(super) fn new(suite: &Arc<Suite>, corpid: &str) -> CorpSource {
        CorpSource {
            suite: Arc::downgrade(suite),
            corpid: corpid.to_string(),
        }
    }
}

impl Suite {
    /// A permanent code WeCom refused (40084 from any call made with it): the corp needs a new
    /// install. Other errors change nothing here.
    pub(super) async fn code_refused(&self, corpid: &str, e: &UpstreamError) {
        if e.errcode() == Some(wecom_errcode::PERMANENT_CODE_INVALID) {
            self.needs_reauth(corpid, &format!("WeCom refused its permanent code ({e})"))
                .await
        }
    }
}

impl ExternalSource for CorpSource {
    fn endpoint(&self) -> &'static str {
        "corp_token"
    }

    fn ready(&self, now: SystemTime) -> bool {
        let Some(suite) = self.suite.upgrade() else {
            return false;
        };
        let template = suite.settings.kind == SuiteKind::Template;
        suite.permanent_code(&self.corpid).is_some()
            && (template || suite.suite_token(now).is_some())
    }

    fn fetch(
        &self,
        priority: Priority,
        promotion: Promotion,
    ) -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>> {
        let suite = self.suite.clone();
        let corpid = self.corpid.clone();
        Box::pin(async move {
            let Some(suite) = suite.upgrade() else {
                return Err(UpstreamError::NoToken);
            };
            let Some(code) = suite.permanent_code(&corpid) else {
                return Err(UpstreamError::NoToken);
            };
            if suite.settings.kind == SuiteKind::Template {
                let secret = SecretString::from(code.expose().to_string());
                let fetched = suite
                    .upstream
                    .in_slot(priority, promotion, |c| {
                        let corpid = corpid.clone();
                        async move { c.fetch_wecom_token(&corpid, &secret).await }
                    })
                    .await;
                if let Err(e) = &fetched {
                    // gettoken answers 40001 for a secret (the permanent code) it refuses.
                    if e.errcode() == Some(40001) {
                        let why = format!("WeCom refused its permanent code ({e})");
                        suite.needs_reauth(&corpid, &why).await;
                    }
                    suite.code_refused(&corpid, e).await;
                }
                return fetched;
            }
            let fetched = suite
                .with_suite_token(priority, promotion, |c, t| {
                    let (corpid, code) = (corpid.clone(), code.clone());
                    async move { c.fetch_corp_token(&t, &corpid, &code).await }
                })
                .await;
            if let Err(e) = &fetched {
                suite.code_refused(&corpid, e).await;
            }
            fetched
        })
    }

    fn probe_kind(&self) -> Option<ProbeKind> {
        Some(ProbeKind::Wecom)
    }

    fn same_until_expiry(&self) -> bool {
        true
    }
}
