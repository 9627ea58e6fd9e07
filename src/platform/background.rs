//! A platform's background work: the resumption of stored authorization codes, the
//! `"active"` sweep every minute, the daily reconciliation, and the first one as soon as a
//! component token is held while no authorizer is known. It holds the platform weakly and ends
//! when the platform is dropped (the server stopped).

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use super::exchange::{RESUME_INTERVAL, RESUME_RETRY};
use super::runtime::Platform;

/// How often idle authorizer actors are looked for (`"active"` mode).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the authorizer list is reconciled with the records.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(86_400);
/// How often a platform with no authorizer looks for its first component token, to run its
/// first reconciliation then.
const FIRST_RECONCILE_POLL: Duration = Duration::from_secs(1);

impl Platform {
    /// Starts the background work on the current arbiter.
    pub fn spawn_background(self: &Arc<Self>) {
        actix::spawn(run(Arc::downgrade(self)));
    }
}

/// The sweep and the reconciliations, with the code resumption beside them.
async fn run(platform: Weak<Platform>) {
    actix::spawn(resume_codes(platform.clone()));
    let mut since_reconcile = Duration::ZERO;
    let mut first_done = match platform.upgrade() {
        Some(p) => p.has_authorizers(),
        None => return,
    };
    loop {
        let tick = if first_done {
            SWEEP_INTERVAL
        } else {
            FIRST_RECONCILE_POLL
        };
        tokio::time::sleep(tick).await;
        let Some(platform) = platform.upgrade() else {
            return;
        };
        since_reconcile += tick;
        if !first_done && platform.component_token(SystemTime::now()).is_some() {
            first_done = match platform.reconcile().await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(platform = %platform.name(), error = %e,
                        "first reconciliation failed; trying again");
                    false
                }
            };
            since_reconcile = Duration::ZERO;
        }
        if since_reconcile >= RECONCILE_INTERVAL {
            since_reconcile = Duration::ZERO;
            if let Err(e) = platform.reconcile().await {
                tracing::warn!(platform = %platform.name(), error = %e, "daily reconciliation failed");
            }
        }
        platform.sweep(SystemTime::now());
    }
}

/// Resumes the exchanges of stored authorization codes at start, then looks for more every
/// minute (every ten seconds while some are pending).
async fn resume_codes(platform: Weak<Platform>) {
    let mut first = true;
    loop {
        let Some(p) = platform.upgrade() else {
            return;
        };
        let pending = p.resume_codes().await;
        if first {
            // Once: the later looks find nothing most of the time.
            tracing::info!(platform = %p.name(), pending, "stored authorization codes looked at");
            first = false;
        }
        drop(p);
        tokio::time::sleep(if pending > 0 {
            RESUME_RETRY
        } else {
            RESUME_INTERVAL
        })
        .await;
    }
}
