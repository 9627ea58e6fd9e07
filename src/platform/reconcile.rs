//! Reconciliation with WeChat's authorizer list (`api_get_authorizer_list`): accounts
//! authorized while wxtoken was away are imported, refresh tokens repaired, accounts no longer
//! listed revoked. Daily, at the first component token, and on an admin's request; one at a
//! time per platform.

use std::collections::HashMap;
use std::time::SystemTime;

use super::runtime::Platform;
use crate::secret::AccessToken;
use crate::store::platform::{AuthorizerRecord, AuthorizerState};
use crate::time::UnixMillis;
use crate::upstream::{ListedAuthorizer, Priority, Promotion, UpstreamError, AUTHORIZER_PAGE_MAX};

/// What a reconciliation did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Reconciled {
    pub listed: usize,
    pub imported: usize,
    pub repaired: usize,
    pub revoked: usize,
}

/// What the list says of each account: its refresh token, when it authorized (Unix seconds).
type Listed = HashMap<String, (Option<AccessToken>, u64)>;

impl Platform {
    /// Pages through `api_get_authorizer_list` with `component` in the upstream pool at
    /// `priority`, handing each page to `visit` until it answers `true` (found what it looked
    /// for) or the list ends. Whether `visit` stopped it.
    pub(super) async fn page_authorizer_list(
        &self,
        component: &AccessToken,
        priority: Priority,
        mut visit: impl FnMut(Vec<ListedAuthorizer>) -> bool,
    ) -> Result<bool, UpstreamError> {
        let client = self.upstream.client();
        let mut offset = 0u64;
        loop {
            let page = {
                let _slot = client.slot(priority, Promotion::default()).await;
                client
                    .get_authorizer_list(
                        component,
                        &self.settings.component_appid,
                        offset,
                        AUTHORIZER_PAGE_MAX,
                    )
                    .await?
            };
            let got = page.list.len() as u64;
            if visit(page.list) {
                return Ok(true);
            }
            offset = offset.saturating_add(got);
            if got == 0 || offset >= page.total_count {
                return Ok(false);
            }
        }
    }

    /// Reads the whole authorizer list and brings the records in line with it: imports
    /// accounts authorized while wxtoken was away, repairs refresh tokens, revokes accounts
    /// no longer listed. Returns the counts.
    pub async fn reconcile(&self) -> Result<Reconciled, UpstreamError> {
        let _one = self.reconciling.lock().await;
        let Some(component) = self.wait_component_token().await else {
            return Err(UpstreamError::NoToken);
        };
        let mut listed = Listed::new();
        self.page_authorizer_list(&component.token, Priority::Background, |page| {
            for a in page {
                listed.insert(a.appid, (a.refresh_token, a.auth_time));
            }
            false
        })
        .await?;
        let (changed, mut out) = self.changes_for(&listed, SystemTime::now());
        if !changed.is_empty() {
            self.store
                .save_authorizers(&self.settings.name, &changed)
                .await
                .map_err(|e| UpstreamError::Decode(format!("cannot save the records: {e:#}")))?;
            self.keep_saved(changed);
        }
        out.listed = listed.len();
        tracing::info!(platform = %self.settings.name, listed = out.listed, imported = out.imported,
            repaired = out.repaired, revoked = out.revoked, "authorizers reconciled");
        self.keep_authorized_fresh();
        Ok(out)
    }

    /// The records that `listed` changes, as of `now`, and how many of each change.
    fn changes_for(&self, listed: &Listed, now: SystemTime) -> (Vec<AuthorizerRecord>, Reconciled) {
        let mut changed = Vec::new();
        let mut out = Reconciled::default();
        self.authorizers.with_records(|records| {
            let held: HashMap<&str, &AuthorizerRecord> =
                records.map(|r| (r.appid.as_str(), r)).collect();
            for (appid, (refresh, auth_time)) in listed {
                match held.get(appid.as_str()) {
                    None => {
                        out.imported += 1;
                        changed.push(imported(appid, refresh, *auth_time, now));
                    }
                    Some(r) => {
                        if let Some(r) = repaired(r, refresh.as_ref(), now) {
                            out.repaired += 1;
                            changed.push(r);
                        }
                    }
                }
            }
            for (appid, r) in &held {
                if r.state != AuthorizerState::Revoked && !listed.contains_key(*appid) {
                    out.revoked += 1;
                    let mut r = (*r).clone();
                    r.state = AuthorizerState::Revoked;
                    r.last_error = Some("no longer in the authorizer list".into());
                    r.updated_at = now;
                    changed.push(r);
                }
            }
        });
        (changed, out)
    }
}

/// The record of an account the list has and wxtoken does not.
fn imported(
    appid: &str,
    refresh: &Option<AccessToken>,
    auth_time: u64,
    now: SystemTime,
) -> AuthorizerRecord {
    AuthorizerRecord::authorized(
        appid.to_string(),
        refresh.clone(),
        Vec::new(),
        // WeChat's number, parsed here: one past the year 9999 is no time, so the account is
        // kept without one.
        UnixMillis::from_secs(auth_time).map(UnixMillis::to_system_time),
        now,
    )
}

/// A known account's record repaired by the list: a new refresh token, or authorized again
/// (revoked, or in need of a new authorization that the list's new token brings). `None` when
/// the list changes nothing.
fn repaired(
    record: &AuthorizerRecord,
    refresh: Option<&AccessToken>,
    now: SystemTime,
) -> Option<AuthorizerRecord> {
    let new_token = refresh.filter(|r| record.refresh_token.as_ref() != Some(*r));
    let revived = record.state == AuthorizerState::Revoked
        || (record.state == AuthorizerState::NeedsReauth && new_token.is_some());
    if new_token.is_none() && !revived {
        return None;
    }
    let mut r = record.clone();
    if let Some(t) = new_token {
        r.refresh_token = Some(t.clone());
    }
    r.state = AuthorizerState::Authorized;
    r.last_error = None;
    r.updated_at = now;
    Some(r)
}
