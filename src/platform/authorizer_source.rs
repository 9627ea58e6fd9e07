//! An authorizer token's source: `api_authorizer_token` with the account's refresh token and the
//! platform's component token. A refresh token the answer carries is saved (never an empty
//! one); a component token WeChat rejects is reported to its actor; a refused refresh token
//! (61023) is looked up in `api_get_authorizer_list` once: listed with another one, that one is
//! stored and tried once; listed with the same one, the account needs to authorize again;
//! not listed, it has left the platform. No retry loop in any case.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use futures_util::future::LocalBoxFuture;

use super::runtime::Platform;
use crate::secret::AccessToken;
use crate::store::platform::AuthorizerState;
use crate::token::external::ExternalSource;
use crate::token::messages::Invalidate;
use crate::upstream::{Fetched, Priority, Promotion, UpstreamError};

/// WeChat's "refresh token is invalid".
pub const REFRESH_TOKEN_INVALID: i64 = 61023;

pub struct AuthorizerSource {
    /// Weak: the platform holds this source's actor.
    platform: Weak<Platform>,
    appid: String,
}

impl AuthorizerSource {
    pub(super) fn new(platform: &Arc<Platform>, appid: &str) -> AuthorizerSource {
        AuthorizerSource {
            platform: Arc::downgrade(platform),
            appid: appid.to_string(),
        }
    }
}

/// What the authorizer list says of one account.
enum Listed {
    With(Option<AccessToken>),
    Absent,
}

/// Pages through the authorizer list until `appid` turns up.
async fn look_up(
    platform: &Platform,
    component_token: &AccessToken,
    appid: &str,
) -> Result<Listed, UpstreamError> {
    let mut found = None;
    let listed = platform
        .page_authorizer_list(component_token, Priority::Urgent, |page| {
            found = page.into_iter().find(|a| a.appid == appid);
            found.is_some()
        })
        .await?;
    Ok(match found {
        Some(a) if listed => Listed::With(a.refresh_token),
        _ => Listed::Absent,
    })
}

impl ExternalSource for AuthorizerSource {
    fn endpoint(&self) -> &'static str {
        "authorizer_token"
    }

    fn ready(&self, now: SystemTime) -> bool {
        let Some(platform) = self.platform.upgrade() else {
            return false;
        };
        platform.component_token(now).is_some() && platform.refresh_token(&self.appid).is_some()
    }

    fn fetch(
        &self,
        priority: Priority,
        promotion: Promotion,
    ) -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>> {
        let platform = self.platform.clone();
        let appid = self.appid.clone();
        Box::pin(async move {
            let Some(platform) = platform.upgrade() else {
                return Err(UpstreamError::NoToken);
            };
            let mut retried = false;
            loop {
                let now = SystemTime::now();
                let Some(component) = platform.component_token(now) else {
                    return Err(UpstreamError::NoToken);
                };
                let Some(refresh) = platform.refresh_token(&appid) else {
                    return Err(UpstreamError::NoToken);
                };
                let client = platform.upstream.client();
                let answer = {
                    let _slot = client.slot(priority, promotion.clone()).await;
                    client
                        .fetch_authorizer_token(
                            &component.token,
                            &platform.settings.component_appid,
                            &appid,
                            &refresh,
                        )
                        .await
                };
                let errcode = match &answer {
                    Ok(_) => None,
                    Err(e) => e.errcode(),
                };
                match answer {
                    Ok(a) => {
                        if let Some(rotated) = a.refresh_token.filter(|r| *r != refresh) {
                            platform.update_refresh_token(&appid, rotated).await;
                        }
                        return Ok(a.token);
                    }
                    Err(e) if crate::token::rejects_token(errcode) => {
                        platform.component.addr.do_send(Invalidate {
                            token: component.token.clone(),
                        });
                        return Err(e);
                    }
                    Err(e) if errcode == Some(REFRESH_TOKEN_INVALID) && !retried => {
                        retried = true;
                        match look_up(&platform, &component.token, &appid).await {
                            Ok(Listed::With(Some(listed))) if listed != refresh => {
                                tracing::info!(platform = %platform.settings.name, authorizer = %appid,
                                    "refresh token refused; the authorizer list has another one, trying it once");
                                platform.update_refresh_token(&appid, listed).await;
                                continue;
                            }
                            Ok(Listed::With(_)) => {
                                platform
                                    .set_state(&appid, AuthorizerState::NeedsReauth, &e)
                                    .await;
                            }
                            Ok(Listed::Absent) => {
                                platform
                                    .set_state(&appid, AuthorizerState::Revoked, &e)
                                    .await;
                            }
                            // The lookup failed: nothing is known, nothing is marked.
                            Err(_) => {}
                        }
                        return Err(e);
                    }
                    Err(e) if errcode == Some(REFRESH_TOKEN_INVALID) => {
                        // The refresh token from the list was refused too.
                        platform
                            .set_state(&appid, AuthorizerState::NeedsReauth, &e)
                            .await;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }
}
