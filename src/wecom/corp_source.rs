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
use crate::secret::AccessToken;
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
    /// What a refused call made for `corpid` with `suite_token` means (see the module doc).
    pub(super) async fn fetch_refused(
        &self,
        corpid: &str,
        suite_token: &AccessToken,
        e: &UpstreamError,
    ) {
        match e.errcode() {
            Some(wecom_errcode::PERMANENT_CODE_INVALID) => {
                self.needs_reauth(corpid, &format!("WeCom refused its permanent code ({e})"))
                    .await
            }
            code if suite_token_dead(code) => self.suite_token_refused(suite_token),
            _ => {}
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
            let client = suite.upstream.client();
            if suite.settings.kind == SuiteKind::Template {
                let secret = SecretString::from(code.expose().to_string());
                let fetched = {
                    let _slot = client.slot(priority, promotion).await;
                    client.fetch_wecom_token(&corpid, &secret).await
                };
                if let Err(e) = &fetched {
                    // gettoken answers 40001 for a secret (the permanent code) it refuses.
                    if matches!(
                        e.errcode(),
                        Some(40001 | wecom_errcode::PERMANENT_CODE_INVALID)
                    ) {
                        suite
                            .needs_reauth(
                                &corpid,
                                &format!("WeCom refused its permanent code ({e})"),
                            )
                            .await;
                    }
                }
                return fetched;
            }
            let Some(token) = suite.suite_token(SystemTime::now()) else {
                return Err(UpstreamError::NoToken);
            };
            let fetched = {
                let _slot = client.slot(priority, promotion).await;
                client.fetch_corp_token(&token.token, &corpid, &code).await
            };
            if let Err(e) = &fetched {
                suite.fetch_refused(&corpid, &token.token, e).await;
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
