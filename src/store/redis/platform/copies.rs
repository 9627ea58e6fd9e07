//! The two copies of the Redis store's platform records, Redis's and the local file's: which
//! one a load answers with, how the other is brought up to it, and what a save to both answers.

use futures_util::future::BoxFuture;

use crate::store::platform::{
    metric_label, AuthorizerRecord, CodeRecord, PlatformStore, TicketRecord,
};
use crate::store::redis::Inner;
use crate::store::sealed::unreadable_in;

/// What [`newest_copy`] loads: its name for the log, whether a Redis failure is logged at debug
/// rather than warn level, its write order (the newer copy wins), and how the local copy is
/// brought up to Redis's.
pub(super) struct Loaded<T> {
    what: &'static str,
    quiet: bool,
    order: fn(&T) -> u64,
    /// Brings the local copy up to a newer record of Redis's, without waiting for it.
    refresh_local: fn(&Inner, &str, &T),
}

/// A load's answer from Redis's copy and the local one (if the store keeps one), the newer
/// winning: with Redis unreachable the local copy answers; a local copy newer than Redis's (or
/// one Redis lacks) asks for a write-back; a Redis copy newer than the local one (or one it
/// lacks) goes to `refresh_local`.
pub(super) async fn newest_copy<T>(
    inner: &Inner,
    platform: &str,
    remote: anyhow::Result<Option<T>>,
    local: Option<BoxFuture<'static, anyhow::Result<Option<T>>>>,
    loaded: &Loaded<T>,
) -> anyhow::Result<Option<T>> {
    if remote.is_err() {
        inner.metrics.store_failed(&metric_label(platform), "load");
    }
    let local = match local {
        Some(l) => Some(l.await),
        None => None,
    };
    // A copy that does not open is no copy to fall back from or to ignore: it may hold the
    // only refresh token of an account.
    if let Some(Err(e)) = &local {
        if let Some(u) = unreadable_in(e) {
            return Err(anyhow::Error::new(u.clone())
                .context("the local copy holds a record that does not open"));
        }
    }
    let (remote, local) = match (remote, local) {
        (Err(e), _) if unreadable_in(&e).is_some() => return Err(e),
        (Err(e), Some(Ok(local))) => {
            let error = format!("{e:#}");
            if loaded.quiet {
                tracing::debug!(
                    platform,
                    error,
                    "Redis unreachable: {} comes from the local copy",
                    loaded.what
                );
            } else {
                tracing::warn!(
                    platform,
                    error,
                    "Redis unreachable: {} comes from the local copy",
                    loaded.what
                );
            }
            return Ok(local);
        }
        (Err(e), _) => return Err(e),
        (Ok(remote), local) => (remote, local.and_then(Result::ok).flatten()),
    };
    let order = loaded.order;
    match (remote, local) {
        (Some(r), Some(l)) if order(&l) > order(&r) => {
            inner.ask_writeback();
            Ok(Some(l))
        }
        (None, Some(l)) => {
            inner.ask_writeback();
            Ok(Some(l))
        }
        (Some(r), l) => {
            if l.is_none_or(|l| order(&l) < order(&r)) {
                (loaded.refresh_local)(inner, platform, &r);
            }
            Ok(Some(r))
        }
        (None, None) => Ok(None),
    }
}

/// How [`newest_copy`] loads a ticket.
pub(super) const TICKET: Loaded<TicketRecord> = Loaded {
    what: "the verify ticket",
    quiet: false,
    order: TicketRecord::order,
    refresh_local: |inner, platform, r| {
        if let Some(local) = &inner.local {
            // Not waited for; the local store retries a failure by itself.
            drop(local.save_ticket(platform, r));
        }
    },
};

/// How [`newest_copy`] loads one authorizer record.
pub(super) const AUTHORIZER: Loaded<AuthorizerRecord> = Loaded {
    what: "an authorizer record",
    // One line per account would flood the log of a large platform.
    quiet: true,
    order: AuthorizerRecord::order,
    refresh_local: |inner, platform, r| mirror(inner, platform, std::slice::from_ref(r)),
};

/// How [`newest_copy`] loads one code record.
pub(super) const CODE: Loaded<CodeRecord> = Loaded {
    what: "an authorization code record",
    quiet: true,
    order: CodeRecord::order,
    refresh_local: |inner, platform, r| {
        if let Some(local) = &inner.local {
            // Not waited for; the local store retries a failure by itself.
            drop(local.save_code(platform, r));
        }
    },
};

/// Copies records only Redis has (or has newer) into the local file, without making the load
/// wait for the fsync. A failure is retried by the local store itself.
pub(super) fn mirror(inner: &Inner, platform: &str, records: &[AuthorizerRecord]) {
    if let (Some(local), false) = (&inner.local, records.is_empty()) {
        let save = local.save_authorizers(platform, records);
        tokio::spawn(async move {
            if let Err(e) = save.await {
                tracing::debug!(error = %format!("{e:#}"), "local copy of platform records not updated");
            }
        });
    }
}

/// Logs a Redis failure of a save that the local copy holds, and asks for a write-back.
fn redis_save_failed(inner: &Inner, platform: &str, e: &anyhow::Error) {
    inner.metrics.store_failed(&metric_label(platform), "save");
    tracing::warn!(platform, error = %format!("{e:#}"),
        "platform records saved in the local copy only; they are written back when Redis answers");
    inner.ask_writeback();
}

/// The answer of a save to both copies: durable when the local copy is (see the module
/// documentation); without a local copy, Redis's answer.
pub(super) async fn combine<T>(
    inner: &Inner,
    platform: &str,
    remote: anyhow::Result<T>,
    local: Option<BoxFuture<'static, anyhow::Result<T>>>,
) -> anyhow::Result<T> {
    let local = match local {
        Some(l) => Some(l.await),
        None => None,
    };
    match (remote, local) {
        (remote, None) => remote,
        (remote, Some(Err(e))) => {
            if remote.is_err() {
                inner.metrics.store_failed(&metric_label(platform), "save");
            }
            inner.ask_writeback();
            Err(e.context("the local copy of the platform records could not be saved"))
        }
        (Ok(answer), Some(Ok(_))) => Ok(answer),
        (Err(e), Some(Ok(answer))) => {
            redis_save_failed(inner, platform, &e);
            Ok(answer)
        }
    }
}
