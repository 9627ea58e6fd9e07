//! The embedded store's message records, in the token file, written by the store's one writer
//! (group commit: the takes of a burst share one fsync'd transaction):
//! - `msg_pushes`: push id -> the push (content sealed);
//! - `msg_deliveries`: delivery id -> the delivery;
//! - `msg_due`: (route, next attempt ms, delivery id), the pending deliveries by due time;
//! - `msg_state`: (state, route, delivery id), for listings and the backlog gauges;
//! - `msg_dedupe`: dedupe key -> kept-until ms, with `msg_dedupe_expiry` (until, key) for the
//!   sweep;
//! - `msg_purge`: (purge ms, delivery id), the dead deliveries by the time they may be
//!   forgotten;
//! - `msg_unmatched`: time-ordered id -> the note of a push no route matched (the last 100).
//!
//! One process owns the file, so a claim is kept in memory: a delivery in an attempt is skipped
//! by later claims until its outcome is written. A crash forgets the claims with the process,
//! and every delivery not recorded as made is due again at the next start.

use std::collections::HashSet;
use std::sync::Weak;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use super::{blocking, EmbeddedStore, Inner, Job};
use crate::store::messages::{
    decode_delivery, decode_push, encode_delivery, encode_push, new_push_id, ClaimQuery, Claimed,
    DeliveryRecord, DeliveryState, Finish, ListQuery, MessageStore, NewPush, Page, RouteStats,
    Taking, UnmatchedRecord, MAX_PAGE, UNMATCHED_KEPT,
};
use crate::time::UnixMillis;

pub(super) const PUSHES: TableDefinition<&str, &[u8]> = TableDefinition::new("msg_pushes");
pub(super) const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("msg_deliveries");
pub(super) const DUE: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("msg_due");
pub(super) const STATE: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("msg_state");
pub(super) const DEDUPE: TableDefinition<&str, u64> = TableDefinition::new("msg_dedupe");
pub(super) const DEDUPE_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("msg_dedupe_expiry");
pub(super) const PURGE: TableDefinition<(u64, &str), ()> = TableDefinition::new("msg_purge");
pub(super) const UNMATCHED: TableDefinition<&str, &[u8]> = TableDefinition::new("msg_unmatched");

/// Above every id and route name (they are ASCII): the end of a prefix range.
const TOP: &str = "\u{10ffff}";

/// Most dedupe entries one sweep removes: a sweep is one transaction, kept short.
const SWEEP_BATCH: usize = 10_000;

/// One message write for the writer thread.
pub(super) enum Op {
    Take(NewPush),
    Finish(Finish),
    Retry { id: String, now: UnixMillis },
    Sweep(UnixMillis),
    Purge { now: UnixMillis, limit: usize },
    Discard { id: String },
}

/// What a write answers.
pub(super) enum Done {
    Taken(bool),
    Finished,
    Retried(Option<DeliveryRecord>),
    Swept(u64),
    Purged(Vec<String>),
    Discarded(Option<DeliveryRecord>),
}

pub(super) struct Write {
    op: Op,
    done: oneshot::Sender<Result<Done, String>>,
}

/// The claims of this process: delivery ids in an attempt.
#[derive(Default)]
pub(super) struct Claims(std::sync::Mutex<HashSet<String>>);

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Commits a batch of message writes in one transaction and answers each; a failed commit
/// answers every one with the error (none of them is written).
pub(super) fn write_jobs(inner: &Weak<Inner>, writes: Vec<Write>) {
    let (ops, replies): (Vec<Op>, Vec<_>) = writes.into_iter().map(|w| (w.op, w.done)).unzip();
    let outcome = match inner.upgrade() {
        Some(inner) => inner.write_messages(ops).map_err(|e| format!("{e:#}")),
        None => Err("the store is closed".to_string()),
    };
    match outcome {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

impl Inner {
    fn write_messages(&self, ops: Vec<Op>) -> anyhow::Result<Vec<Done>> {
        let mut disk = self.disk();
        let result = self.db(&mut disk).and_then(|db| {
            let tx = db.begin_write()?;
            let mut answers = Vec::with_capacity(ops.len());
            for op in &ops {
                answers.push(match op {
                    Op::Take(p) => Done::Taken(take_in(&tx, &self.ring, p)?),
                    Op::Finish(f) => {
                        finish_in(&tx, f)?;
                        Done::Finished
                    }
                    Op::Retry { id, now } => Done::Retried(retry_in(&tx, id, *now)?),
                    Op::Sweep(now) => Done::Swept(sweep_in(&tx, *now)?),
                    Op::Purge { now, limit } => Done::Purged(purge_in(&tx, *now, *limit)?),
                    Op::Discard { id } => Done::Discarded(discard_in(&tx, id)?),
                });
            }
            tx.commit()?;
            Ok(answers)
        });
        match result {
            Ok(answers) => {
                self.commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(answers)
            }
            Err(e) => {
                // redb refuses every write after an I/O error until the file is reopened.
                self.close(&mut disk);
                Err(e)
            }
        }
    }
}

fn take_in(
    tx: &redb::WriteTransaction,
    ring: &crate::seal::Keyring,
    p: &NewPush,
) -> anyhow::Result<bool> {
    let now = UnixMillis::now().as_millis();
    let mut dedupe = tx.open_table(DEDUPE)?;
    let seen = dedupe.get(p.dedupe_key.as_str())?.map(|v| v.value());
    if seen.is_some_and(|until| until >= now) {
        return Ok(false);
    }
    let until = p.dedupe_until.as_millis();
    dedupe.insert(p.dedupe_key.as_str(), until)?;
    tx.open_table(DEDUPE_EXPIRY)?
        .insert((until, p.dedupe_key.as_str()), ())?;
    match &p.push {
        Taking::Routed(push, deliveries) => {
            tx.open_table(PUSHES)?
                .insert(push.id.as_str(), encode_push(ring, push).as_slice())?;
            for d in deliveries {
                put_delivery(tx, d)?;
            }
        }
        Taking::Unmatched(note) => note_unmatched(tx, note)?,
    }
    Ok(true)
}

/// Keeps `note` among the last [`UNMATCHED_KEPT`], keyed by a time-ordered id (the oldest go
/// first).
fn note_unmatched(tx: &redb::WriteTransaction, note: &UnmatchedRecord) -> anyhow::Result<()> {
    let mut table = tx.open_table(UNMATCHED)?;
    let key = new_push_id(note.received_at);
    let bytes = serde_json::to_vec(note)?;
    table.insert(key.as_str(), bytes.as_slice())?;
    while table.len()? > UNMATCHED_KEPT as u64 {
        if table.pop_first()?.is_none() {
            break;
        }
    }
    Ok(())
}

/// Writes `d` and its index entries.
fn put_delivery(tx: &redb::WriteTransaction, d: &DeliveryRecord) -> anyhow::Result<()> {
    tx.open_table(DELIVERIES)?
        .insert(d.id.as_str(), encode_delivery(d).as_slice())?;
    tx.open_table(STATE)?
        .insert((d.state.as_str(), d.route.as_str(), d.id.as_str()), ())?;
    if d.state == DeliveryState::Pending {
        tx.open_table(DUE)?
            .insert((d.route.as_str(), d.next_at.as_millis(), d.id.as_str()), ())?;
    }
    if let (DeliveryState::Dead, Some(at)) = (d.state, d.purge_at) {
        tx.open_table(PURGE)?
            .insert((at.as_millis(), d.id.as_str()), ())?;
    }
    Ok(())
}

/// Removes `d` and its index entries, as it is stored.
fn remove_delivery(tx: &redb::WriteTransaction, d: &DeliveryRecord) -> anyhow::Result<()> {
    tx.open_table(DELIVERIES)?.remove(d.id.as_str())?;
    tx.open_table(STATE)?
        .remove((d.state.as_str(), d.route.as_str(), d.id.as_str()))?;
    tx.open_table(DUE)?
        .remove((d.route.as_str(), d.next_at.as_millis(), d.id.as_str()))?;
    if let Some(at) = d.purge_at {
        tx.open_table(PURGE)?
            .remove((at.as_millis(), d.id.as_str()))?;
    }
    Ok(())
}

/// Removes `d` for good: made, or dead past its purge time. The push goes with its last
/// delivery (`{push}.` .. `{push}/` holds them all).
fn forget_delivery(tx: &redb::WriteTransaction, d: &DeliveryRecord) -> anyhow::Result<()> {
    remove_delivery(tx, d)?;
    let left = {
        let table = tx.open_table(DELIVERIES)?;
        let from = format!("{}.", d.push);
        let to = format!("{}/", d.push);
        let found = table
            .range::<&str>(from.as_str()..to.as_str())?
            .next()
            .is_some();
        found
    };
    if !left {
        tx.open_table(PUSHES)?.remove(d.push.as_str())?;
    }
    Ok(())
}

fn stored_delivery(
    tx: &redb::WriteTransaction,
    id: &str,
) -> anyhow::Result<Option<DeliveryRecord>> {
    let table = tx.open_table(DELIVERIES)?;
    let bytes = table.get(id)?.map(|v| v.value().to_vec());
    bytes.map(|b| decode_delivery(&b)).transpose()
}

fn finish_in(tx: &redb::WriteTransaction, f: &Finish) -> anyhow::Result<()> {
    match f {
        Finish::Delivered { id } => {
            // Already gone: made by another attempt (a reply's, or a retry's).
            let Some(d) = stored_delivery(tx, id)? else {
                return Ok(());
            };
            forget_delivery(tx, &d)?;
        }
        Finish::Failed { record } => {
            let Some(d) = stored_delivery(tx, &record.id)? else {
                return Ok(());
            };
            remove_delivery(tx, &d)?;
            put_delivery(tx, record)?;
        }
    }
    Ok(())
}

fn retry_in(
    tx: &redb::WriteTransaction,
    id: &str,
    now: UnixMillis,
) -> anyhow::Result<Option<DeliveryRecord>> {
    let Some(d) = stored_delivery(tx, id)? else {
        return Ok(None);
    };
    remove_delivery(tx, &d)?;
    let again = d.retried_at(now);
    put_delivery(tx, &again)?;
    Ok(Some(again))
}

fn sweep_in(tx: &redb::WriteTransaction, now: UnixMillis) -> anyhow::Result<u64> {
    let mut expiry = tx.open_table(DEDUPE_EXPIRY)?;
    let mut dedupe = tx.open_table(DEDUPE)?;
    let old: Vec<(u64, String)> = expiry
        .range((0u64, "")..(now.as_millis(), ""))?
        .take(SWEEP_BATCH)
        .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_string())))
        .collect::<Result<_, _>>()?;
    for (until, key) in &old {
        expiry.remove((*until, key.as_str()))?;
        // A newer entry of the same key (taken again after expiry) stays.
        let current = dedupe.get(key.as_str())?.map(|v| v.value());
        if current == Some(*until) {
            dedupe.remove(key.as_str())?;
        }
    }
    Ok(old.len() as u64)
}

fn discard_in(tx: &redb::WriteTransaction, id: &str) -> anyhow::Result<Option<DeliveryRecord>> {
    let Some(d) = stored_delivery(tx, id)? else {
        return Ok(None);
    };
    forget_delivery(tx, &d)?;
    Ok(Some(d))
}

/// Forgets up to `limit` dead deliveries whose purge time has come. An index entry whose
/// delivery is gone or no longer that dead one (retried since) is only dropped.
fn purge_in(
    tx: &redb::WriteTransaction,
    now: UnixMillis,
    limit: usize,
) -> anyhow::Result<Vec<String>> {
    let due: Vec<(u64, String)> = tx
        .open_table(PURGE)?
        .range((0u64, "")..=(now.as_millis(), TOP))?
        .take(limit)
        .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_string())))
        .collect::<Result<_, _>>()?;
    let mut purged = Vec::with_capacity(due.len());
    for (at, id) in due {
        tx.open_table(PURGE)?.remove((at, id.as_str()))?;
        let Some(d) = stored_delivery(tx, &id)? else {
            continue;
        };
        let still_dead =
            d.state == DeliveryState::Dead && d.purge_at.map(UnixMillis::as_millis) == Some(at);
        if still_dead {
            forget_delivery(tx, &d)?;
            purged.push(id);
        }
    }
    Ok(purged)
}

/// The receipt time a push id starts with.
fn id_time(id: &str) -> Option<UnixMillis> {
    let hex = id.get(..12)?;
    u64::from_str_radix(hex, 16).ok().and_then(UnixMillis::new)
}

impl Inner {
    fn claim_blocking(
        &self,
        route: &str,
        now: UnixMillis,
        limit: usize,
    ) -> anyhow::Result<Vec<Claimed>> {
        // The claims first, then the snapshot: a delivery finished meanwhile is either still
        // claimed here, or its outcome is committed before this snapshot begins (its claim is
        // released only after the commit). A snapshot taken first could show a delivery that
        // was finished and released since, and it would be made twice.
        let mut claims = self.msg_claims.lock();
        let tx = self.begin_read()?;
        let due = match tx.open_table(DUE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let deliveries = tx.open_table(DELIVERIES)?;
        let pushes = tx.open_table(PUSHES)?;
        let mut out = Vec::new();
        for entry in due.range((route, 0u64, "")..=(route, now.as_millis(), TOP))? {
            if out.len() >= limit.min(MAX_PAGE) {
                break;
            }
            let (k, _) = entry?;
            let id = k.value().2.to_string();
            if claims.contains(&id) {
                continue;
            }
            let Some(bytes) = deliveries.get(id.as_str())?.map(|v| v.value().to_vec()) else {
                continue;
            };
            // A record that does not decode or open is set aside as if claimed, so it is warned
            // about once per process rather than at every poll, and it holds up no other
            // delivery of its route (an error here would fail the whole claim, every time).
            let delivery = match decode_delivery(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(delivery = %id, error = %format!("{e:#}"),
                        "a stored delivery does not decode; set aside until a restart");
                    claims.insert(id);
                    continue;
                }
            };
            let push_bytes = pushes
                .get(delivery.push.as_str())?
                .map(|v| v.value().to_vec());
            let Some(push_bytes) = push_bytes else {
                tracing::warn!(delivery = %id, "a pending delivery has no stored push; set aside until a restart");
                claims.insert(id);
                continue;
            };
            match decode_push(&self.ring, &push_bytes) {
                Ok(push) => out.push(Claimed { delivery, push }),
                Err(e) => tracing::warn!(delivery = %id, error = %format!("{e:#}"),
                    "a stored push does not open; its delivery is set aside until a restart"),
            }
            claims.insert(id);
        }
        Ok(out)
    }

    fn list_blocking(&self, q: &ListQuery) -> anyhow::Result<Page> {
        let (state, routes, offset, limit) = (q.state, &q.routes, q.offset, q.limit);
        let tx = self.begin_read()?;
        let index = match tx.open_table(STATE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Page::default()),
            Err(e) => return Err(e.into()),
        };
        let deliveries = tx.open_table(DELIVERIES)?;
        let s = state.as_str();
        let limit = limit.min(MAX_PAGE);
        let mut out = Vec::new();
        let mut more = false;
        let mut skip = offset;
        'routes: for r in routes {
            for entry in index.range((s, r.as_str(), "")..=(s, r.as_str(), TOP))? {
                let (k, _) = entry?;
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break 'routes;
                }
                if let Some(v) = deliveries.get(k.value().2)? {
                    out.push(decode_delivery(v.value())?);
                }
            }
        }
        Ok(Page {
            deliveries: out,
            next_offset: more.then_some(offset.saturating_add(limit)),
        })
    }

    fn unmatched_blocking(&self) -> anyhow::Result<Vec<UnmatchedRecord>> {
        let tx = self.begin_read()?;
        let table = match tx.open_table(UNMATCHED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            let (_, v) = entry?;
            if let Ok(note) = serde_json::from_slice(v.value()) {
                out.push(note);
            }
        }
        Ok(out)
    }

    fn stats_blocking(&self, routes: &[String]) -> anyhow::Result<Vec<RouteStats>> {
        let tx = self.begin_read()?;
        let index = match tx.open_table(STATE) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::with_capacity(routes.len());
        for r in routes {
            let mut stats = RouteStats {
                route: r.clone(),
                ..RouteStats::default()
            };
            if let Some(index) = &index {
                let p = "pending";
                let mut pending = index.range((p, r.as_str(), "")..=(p, r.as_str(), TOP))?;
                if let Some(first) = pending.next() {
                    let (k, _) = first?;
                    stats.oldest = id_time(k.value().2);
                    stats.pending = 1 + pending.count() as u64;
                }
                let d = "dead";
                stats.dead = index
                    .range((d, r.as_str(), "")..=(d, r.as_str(), TOP))?
                    .count() as u64;
            }
            out.push(stats);
        }
        Ok(out)
    }
}

impl EmbeddedStore {
    /// Hands `op` to the writer thread and answers what `answer` takes from its outcome (the
    /// writer answers each op with its own kind of [`Done`]).
    fn message_write<T: Send + 'static>(
        &self,
        op: Op,
        answer: fn(Done) -> Option<T>,
    ) -> BoxFuture<'static, anyhow::Result<T>> {
        let (done, outcome) = oneshot::channel();
        let sent = self.inner.saves.send(Job::Messages(Write { op, done }));
        async move {
            sent.map_err(|_| anyhow::anyhow!("the store's writer has stopped"))?;
            let done = match outcome.await {
                Ok(Ok(done)) => done,
                Ok(Err(e)) => return Err(anyhow::anyhow!(e)),
                Err(_) => return Err(anyhow::anyhow!("the store's writer has stopped")),
            };
            answer(done).ok_or_else(|| anyhow::anyhow!("the store answered another write"))
        }
        .boxed()
    }
}

impl MessageStore for EmbeddedStore {
    fn take(&self, push: NewPush) -> BoxFuture<'static, anyhow::Result<bool>> {
        self.message_write(Op::Take(push), |d| match d {
            Done::Taken(v) => Some(v),
            _ => None,
        })
    }

    fn claim(&self, q: ClaimQuery) -> BoxFuture<'static, anyhow::Result<Vec<Claimed>>> {
        // The lease is not needed: one process owns the file, and its claims live in memory.
        let inner = self.inner.clone();
        blocking(move || inner.claim_blocking(&q.route, q.now, q.limit))
    }

    fn finish(&self, finish: Finish) -> BoxFuture<'static, anyhow::Result<()>> {
        let id = match &finish {
            Finish::Delivered { id } => id.clone(),
            Finish::Failed { record } => record.id.clone(),
        };
        let write = self.message_write(Op::Finish(finish), |d| match d {
            Done::Finished => Some(()),
            _ => None,
        });
        let inner = self.inner.clone();
        async move {
            let written = write.await;
            // Released either way: a delivery whose outcome could not be written is tried
            // again (at least once).
            inner.msg_claims.lock().remove(&id);
            written
        }
        .boxed()
    }

    fn list(&self, q: ListQuery) -> BoxFuture<'static, anyhow::Result<Page>> {
        let inner = self.inner.clone();
        blocking(move || inner.list_blocking(&q))
    }

    fn retry(
        &self,
        id: &str,
        now: UnixMillis,
    ) -> BoxFuture<'static, anyhow::Result<Option<DeliveryRecord>>> {
        let op = Op::Retry {
            id: id.to_string(),
            now,
        };
        self.message_write(op, |d| match d {
            Done::Retried(v) => Some(v),
            _ => None,
        })
    }

    fn discard(&self, id: &str) -> BoxFuture<'static, anyhow::Result<Option<DeliveryRecord>>> {
        self.message_write(Op::Discard { id: id.to_string() }, |d| match d {
            Done::Discarded(v) => Some(v),
            _ => None,
        })
    }

    fn stats(&self, routes: &[String]) -> BoxFuture<'static, anyhow::Result<Vec<RouteStats>>> {
        let inner = self.inner.clone();
        let routes = routes.to_vec();
        blocking(move || inner.stats_blocking(&routes))
    }

    fn unmatched(&self) -> BoxFuture<'static, anyhow::Result<Vec<UnmatchedRecord>>> {
        let inner = self.inner.clone();
        blocking(move || inner.unmatched_blocking())
    }

    fn sweep(&self, now: UnixMillis) -> BoxFuture<'static, anyhow::Result<u64>> {
        self.message_write(Op::Sweep(now), |d| match d {
            Done::Swept(v) => Some(v),
            _ => None,
        })
    }

    fn purge(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> BoxFuture<'static, anyhow::Result<Vec<String>>> {
        self.message_write(Op::Purge { now, limit }, |d| match d {
            Done::Purged(v) => Some(v),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A claim of up to 10 deliveries of `route` at `now`.
    fn claim_of(route: &str, now: UnixMillis) -> ClaimQuery {
        ClaimQuery {
            route: route.into(),
            now,
            lease: std::time::Duration::from_secs(30),
            limit: 10,
        }
    }
    use crate::metrics::{Metrics, MetricsMode};
    use crate::store::messages::{new_push_id, PushRecord, StoredSource};

    fn push(at: u64) -> PushRecord {
        let received_at = UnixMillis::new(at).expect("ms");
        PushRecord {
            id: new_push_id(received_at),
            source: StoredSource {
                kind: "app".into(),
                app: Some("shop".into()),
                platform: None,
                appid: "wx1".into(),
            },
            received_at,
            format: "xml".into(),
            message: serde_json::Map::new(),
            raw: "<xml/>".into(),
        }
    }

    fn new_push(key: &str, p: &PushRecord, routes: &[&str]) -> NewPush {
        let deliveries = routes
            .iter()
            .map(|r| DeliveryRecord::new(p, r, p.received_at))
            .collect();
        NewPush {
            dedupe_key: key.into(),
            dedupe_until: UnixMillis::MAX,
            push: Taking::Routed(p.clone(), deliveries),
        }
    }

    fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
        let metrics = Metrics::new(&[], MetricsMode::Full);
        EmbeddedStore::open(&dir.path().join("m.redb"), metrics).expect("opens")
    }

    #[tokio::test]
    async fn a_delivery_that_does_not_decode_is_set_aside_and_holds_up_no_other() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("m.redb");
        {
            // A record written by something else: not a delivery.
            let db = redb::Database::create(&path).expect("file");
            let tx = db.begin_write().expect("tx");
            let bad = "000000000001aaaaaaaaaaaaaaaa.a";
            tx.open_table(DELIVERIES)
                .expect("table")
                .insert(bad, b"{not json".as_slice())
                .expect("insert");
            tx.open_table(DUE)
                .expect("table")
                .insert(("a", 1u64, bad), ())
                .expect("insert");
            tx.commit().expect("commit");
        }
        let metrics = Metrics::new(&[], MetricsMode::Full);
        let store = EmbeddedStore::open(&path, metrics).expect("opens");
        let p = push(2_000);
        assert!(store.take(new_push("k", &p, &["a"])).await.expect("taken"));
        let now = UnixMillis::new(3_000).expect("ms");
        let claimed = store.claim(claim_of("a", now)).await.expect("claims");
        assert_eq!(claimed.len(), 1, "the good one, past the bad one");
        assert_eq!(claimed[0].push, p);
        let again = store.claim(claim_of("a", now)).await.expect("claims");
        assert_eq!(
            again.len(),
            0,
            "the bad one stays set aside, the good one is claimed"
        );
    }

    #[tokio::test]
    async fn a_push_is_taken_once_claimed_once_and_gone_after_its_last_delivery() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(&dir);
        let p = push(1_000);
        assert!(store
            .take(new_push("k", &p, &["a", "b"]))
            .await
            .expect("taken"));
        assert!(!store.take(new_push("k", &p, &["a"])).await.expect("dup"));
        let now = UnixMillis::new(2_000).expect("ms");
        let claimed = store.claim(claim_of("a", now)).await.expect("claims");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].push, p);
        // Claimed: not handed out again until finished.
        assert!(store
            .claim(claim_of("a", now))
            .await
            .expect("claims")
            .is_empty());
        let id = claimed[0].delivery.id.clone();
        store
            .finish(Finish::Delivered { id })
            .await
            .expect("finished");
        // The push stays for route b.
        let b = store.claim(claim_of("b", now)).await.expect("claims");
        assert_eq!(b.len(), 1);
        let dead = DeliveryRecord {
            state: DeliveryState::Dead,
            attempts: 3,
            last_error: Some("status 500".into()),
            ..b[0].delivery.clone()
        };
        store
            .finish(Finish::Failed {
                record: dead.clone(),
            })
            .await
            .expect("finished");
        let page = store
            .list(ListQuery {
                state: DeliveryState::Dead,
                routes: vec!["a".into(), "b".into()],
                offset: 0,
                limit: 10,
            })
            .await
            .expect("lists");
        assert_eq!(page.deliveries, vec![dead.clone()]);
        let stats = store.stats(&["b".into()]).await.expect("stats");
        assert_eq!((stats[0].pending, stats[0].dead), (0, 1));
        // A retry makes it due now, with a fresh age.
        let later = UnixMillis::new(50_000).expect("ms");
        let again = store
            .retry(&dead.id, later)
            .await
            .expect("retried")
            .expect("known");
        assert_eq!(
            (again.state, again.age_from),
            (DeliveryState::Pending, later)
        );
        assert!(store.retry("nope", later).await.expect("answers").is_none());
        drop(store);
        // Reopened: nothing was only in memory, and the claims of the old process are gone.
        let store = open(&dir);
        let b = store.claim(claim_of("b", later)).await.expect("claims");
        assert_eq!(b.len(), 1);
        store
            .finish(Finish::Delivered {
                id: b[0].delivery.id.clone(),
            })
            .await
            .expect("finished");
        let tx = store.inner.begin_read().expect("reads");
        assert!(tx
            .open_table(PUSHES)
            .expect("table")
            .get(p.id.as_str())
            .expect("reads")
            .is_none());
    }

    #[tokio::test]
    async fn the_last_hundred_unmatched_pushes_are_kept_newest_first() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(&dir);
        for i in 0..150u64 {
            let p = push(1_000 + i);
            let mut take = new_push(&format!("k{i}"), &p, &[]);
            take.push = Taking::Unmatched(UnmatchedRecord {
                source: p.source.clone(),
                received_at: p.received_at,
                msg_type: Some(format!("t{i}")),
                event: None,
                info_type: None,
            });
            assert!(store.take(take).await.expect("taken"));
        }
        let kept = store.unmatched().await.expect("reads");
        assert_eq!(kept.len(), UNMATCHED_KEPT);
        assert_eq!(kept[0].msg_type.as_deref(), Some("t149"));
        assert_eq!(kept[99].msg_type.as_deref(), Some("t50"));
    }

    #[tokio::test]
    async fn the_sweep_forgets_expired_dedupe_entries_only() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(&dir);
        let p = push(1_000);
        let mut old = new_push("old", &p, &[]);
        old.push = Taking::Unmatched(UnmatchedRecord {
            source: p.source.clone(),
            received_at: p.received_at,
            msg_type: Some("video".into()),
            event: None,
            info_type: None,
        });
        old.dedupe_until = UnixMillis::new(5_000).expect("ms");
        let mut young = old.clone();
        young.dedupe_key = "young".into();
        young.dedupe_until = UnixMillis::MAX;
        assert!(store.take(old).await.expect("taken"));
        assert!(store.take(young.clone()).await.expect("taken"));
        let swept = store
            .sweep(UnixMillis::new(6_000).expect("ms"))
            .await
            .expect("swept");
        assert_eq!(swept, 1);
        assert!(!store.take(young).await.expect("still a duplicate"));
    }
}
