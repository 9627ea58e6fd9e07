//! The embedded store's Open Platform records: a `platform` table in the token file, keyed
//! `{platform}/ticket`, `{platform}/authorizer/{appid}`, `{platform}/code/{sha-256}` and
//! `{platform}/event/...`, written by the store's one writer.
//!
//! A save is answered once its transaction is committed (fsync'd). The records of one call are
//! one transaction, and calls queued meanwhile share it (group commit, as for tokens).
//! Each record is written unless the stored one is newer (`updated_at` for an authorizer,
//! `received_at` for a ticket, to the millisecond; [`CodeRecord::order`] for a code); an
//! undecodable stored record is no reason to refuse a good one. Forgetting a code record is a
//! write without bytes, which removes the key.
//!
//! A failed write (disk full, I/O error) is an error to the caller, who must not acknowledge
//! the event it came from, and the records are also kept pending: loads return them, every
//! later platform transaction writes them first, and the retry task writes them once the disk
//! takes writes again. So nothing acknowledged is lost, and nothing unacknowledged either as
//! long as the process lives.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Weak;

use futures_util::FutureExt as _;
use redb::{ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{blocking, EmbeddedStore, Inner, Job};
use crate::seal::Keyring;
use crate::store::platform::{
    check_authorizer_key, check_authorizers, check_code, check_code_key, check_digests,
    check_platform, checked, decode_authorizer, decode_authorizer_of, decode_code_of,
    decode_ticket, encode_authorizer, encode_code, encode_event, encode_ticket, metric_label,
    skip_corrupt, AuthorizerRecord, CodeRecord, Corrupt, EventRecord, PlatformStore, StoreIo,
    Stored, TicketRecord,
};
use crate::time::UnixMillis;

pub(super) const PLATFORM: TableDefinition<&str, &[u8]> = TableDefinition::new("platform");

/// One platform record on its way to the disk, or waiting for it.
#[derive(Clone)]
pub(super) struct Pending {
    key: String,
    platform: String,
    /// The write order: `updated_at` or `received_at` in milliseconds, or a code's order.
    order: u64,
    /// `None` removes the key.
    bytes: Option<Vec<u8>>,
}

/// One call's records, with the caller waiting for the per-record answers.
pub(super) struct Write {
    records: Vec<Pending>,
    done: oneshot::Sender<Result<Vec<bool>, String>>,
}

fn ticket_key(platform: &str) -> String {
    format!("{platform}/ticket")
}

fn authorizers_prefix(platform: &str) -> String {
    format!("{platform}/authorizer/")
}

fn codes_prefix(platform: &str) -> String {
    format!("{platform}/code/")
}

/// Every key that starts with `prefix`: '/' + 1 is '0', so `{p}/authorizer0` ends the range.
fn prefix_range(prefix: &str) -> (Bound<String>, Bound<String>) {
    let mut end = prefix.to_string();
    if end.pop() == Some('/') {
        end.push('0');
        (Bound::Included(prefix.to_string()), Bound::Excluded(end))
    } else {
        (Bound::Included(prefix.to_string()), Bound::Unbounded)
    }
}

/// The write order of a stored record, `None` when it cannot be decoded (it fences nothing).
/// A record whose secret does not open fences nothing either: start-up refuses to run with
/// one (see [`crate::store::sealed::Unreadable`]), so none is left by the time writes come.
fn stored_order(ring: &Keyring, key: &str, bytes: &[u8]) -> Option<u64> {
    let (platform, _) = key.split_once('/')?;
    if key.ends_with("/ticket") {
        decode_ticket(ring, platform, bytes).ok().map(|t| t.order())
    } else if let Some((_, digest)) = key.split_once("/code/") {
        decode_code_of(ring, platform, bytes, digest.as_bytes())
            .ok()
            .map(|c| c.order())
    } else {
        decode_authorizer(ring, platform, bytes)
            .ok()
            .map(|r| r.order())
    }
}

/// Answers a batch of platform writes from the writer thread.
pub(super) fn write_jobs(inner: &Weak<Inner>, writes: Vec<Write>) {
    let (jobs, replies): (Vec<Vec<Pending>>, Vec<_>) =
        writes.into_iter().map(|w| (w.records, w.done)).unzip();
    let outcome = match inner.upgrade() {
        Some(inner) => inner.write_platform(&jobs).map_err(|e| format!("{e:#}")),
        None => Err("the store is closed".to_string()),
    };
    for (i, reply) in replies.into_iter().enumerate() {
        let _ = reply.send(match &outcome {
            Ok(answers) => Ok(answers[i].clone()),
            Err(e) => Err(e.clone()),
        });
    }
}

/// The decoded platform records of the whole file, for the Redis store's write-back.
#[derive(Default)]
pub(crate) struct PlatformRecords {
    pub ticket: Option<TicketRecord>,
    pub authorizers: Vec<AuthorizerRecord>,
}

impl Inner {
    fn platform_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.platform_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the pending records and then each job's, in one transaction. Answers, per job
    /// and record, whether it was written (or already stored as it is). On failure every
    /// record of the jobs becomes pending (unless a newer one of its key already is).
    fn write_platform(&self, jobs: &[Vec<Pending>]) -> anyhow::Result<Vec<Vec<bool>>> {
        // Pending records change only under the disk lock, so this snapshot stays true.
        let mut disk = self.disk();
        let pending: Vec<Pending> = self.platform_pending().values().cloned().collect();
        let result = self
            .db(&mut disk)
            .and_then(|db| commit_platform(db, &self.ring, &pending, jobs));
        match result {
            Ok((answers, committed)) => {
                if committed {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                }
                let mut left = self.platform_pending();
                for p in &pending {
                    if left.get(&p.key).is_some_and(|q| q.order <= p.order) {
                        left.remove(&p.key);
                    }
                }
                Ok(answers)
            }
            Err(e) => {
                // As for token records: redb refuses every write after an I/O error until the
                // file is opened again.
                self.close(&mut disk);
                let mut left = self.platform_pending();
                let mut platforms: Vec<&str> = Vec::new();
                for r in jobs.iter().flatten() {
                    if left.get(&r.key).is_none_or(|q| q.order <= r.order) {
                        left.insert(r.key.clone(), r.clone());
                    }
                    if !platforms.contains(&r.platform.as_str()) {
                        platforms.push(&r.platform);
                    }
                }
                drop(left);
                drop(disk);
                for p in platforms {
                    self.metrics.store_failed(&metric_label(p), "save");
                }
                self.wake.notify_one();
                Err(e)
            }
        }
    }

    /// One retry of the pending platform records; true when none is left.
    pub(super) fn retry_platform_pending(&self) -> bool {
        let count = self.platform_pending().len();
        if count == 0 {
            return true;
        }
        match self.write_platform(&[]) {
            Ok(_) => {
                tracing::info!(
                    records = count,
                    "saved the platform records that could not be saved before"
                );
            }
            Err(e) => {
                tracing::warn!(records = count, error = %format!("{e:#}"),
                    "platform records still cannot be saved; retrying");
                return false;
            }
        }
        self.platform_pending().is_empty()
    }

    /// The raw records in `range` (pending ones over those on disk), by key, from one read
    /// transaction. The disk lock is held only to start the transaction: a long scan does not
    /// hold up the writer.
    fn read_platform(
        &self,
        range: (Bound<String>, Bound<String>),
    ) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
        let pending: Vec<Pending> = self
            .platform_pending()
            .values()
            .filter(|p| std::ops::RangeBounds::contains(&range, &p.key))
            .cloned()
            .collect();
        let tx = self.begin_read()?;
        let mut out = BTreeMap::new();
        match tx.open_table(PLATFORM) {
            Ok(table) => {
                let bounds = (
                    range.0.as_ref().map(String::as_str),
                    range.1.as_ref().map(String::as_str),
                );
                for entry in table.range::<&str>(bounds)? {
                    let (k, v) = entry?;
                    out.insert(k.value().to_string(), v.value().to_vec());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for p in pending {
            match p.bytes {
                Some(bytes) => out.insert(p.key, bytes),
                None => out.remove(&p.key),
            };
        }
        Ok(out)
    }

    fn load_ticket_blocking(&self, platform: &str) -> anyhow::Result<Option<TicketRecord>> {
        let key = ticket_key(platform);
        let raw = self.read_platform(one_key(&key))?;
        match raw.get(&key) {
            Some(b) => self.ticket_or_skip(platform, b),
            None => Ok(None),
        }
    }

    /// The records under `prefix` (only the one keyed `{prefix}{only}` when given), each
    /// decoded by `decode` from the rest of its key and its bytes (`None` skips it; an error,
    /// such as a record that does not open, fails the load).
    fn load_under<T>(
        &self,
        prefix: &str,
        only: Option<&str>,
        decode: impl Fn(&str, &[u8]) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<Vec<T>> {
        let range = match only {
            Some(rest) => one_key(&format!("{prefix}{rest}")),
            None => prefix_range(prefix),
        };
        let raw = self.read_platform(range)?;
        let mut out = Vec::with_capacity(raw.len());
        for (key, bytes) in &raw {
            if let Some(rest) = key.strip_prefix(prefix) {
                out.extend(decode(rest, bytes)?);
            }
        }
        Ok(out)
    }

    fn load_authorizers_blocking(
        &self,
        platform: &str,
        only: Option<&str>,
    ) -> anyhow::Result<Vec<AuthorizerRecord>> {
        self.load_under(&authorizers_prefix(platform), only, |appid, bytes| {
            self.authorizer_or_skip(platform, appid, bytes)
        })
    }

    fn load_codes_blocking(
        &self,
        platform: &str,
        only: Option<&str>,
    ) -> anyhow::Result<Vec<CodeRecord>> {
        self.load_under(&codes_prefix(platform), only, |digest, bytes| {
            let decoded = decode_code_of(&self.ring, platform, bytes, digest.as_bytes());
            skip_corrupt(self.corrupt(platform), Stored::Code(digest), decoded)
        })
    }

    fn snapshot_blocking(&self) -> anyhow::Result<BTreeMap<String, PlatformRecords>> {
        let raw = self.read_platform((Bound::Unbounded, Bound::Unbounded))?;
        let mut out: BTreeMap<String, PlatformRecords> = BTreeMap::new();
        for (key, bytes) in &raw {
            let Some((platform, rest)) = key.split_once('/') else {
                continue;
            };
            if rest == "ticket" {
                if let Some(t) = self.ticket_or_skip(platform, bytes)? {
                    out.entry(platform.to_string()).or_default().ticket = Some(t);
                }
            } else if let Some(appid) = rest.strip_prefix("authorizer/") {
                if let Some(r) = self.authorizer_or_skip(platform, appid, bytes)? {
                    out.entry(platform.to_string())
                        .or_default()
                        .authorizers
                        .push(r);
                }
            }
        }
        Ok(out)
    }

    /// Where a corrupt record of `platform` is counted and logged.
    fn corrupt<'a>(&'a self, platform: &'a str) -> Corrupt<'a> {
        Corrupt {
            metrics: &self.metrics,
            store: "embedded",
            platform,
        }
    }

    /// The ticket, `None` when corrupt (skipped and logged), an error when it does not open.
    fn ticket_or_skip(&self, platform: &str, bytes: &[u8]) -> anyhow::Result<Option<TicketRecord>> {
        let decoded = decode_ticket(&self.ring, platform, bytes);
        skip_corrupt(self.corrupt(platform), Stored::Ticket, decoded)
    }

    /// As [`Inner::ticket_or_skip`], for an authorizer.
    fn authorizer_or_skip(
        &self,
        platform: &str,
        appid: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Option<AuthorizerRecord>> {
        let decoded = decode_authorizer_of(&self.ring, platform, bytes, appid.as_bytes());
        skip_corrupt(self.corrupt(platform), Stored::Authorizer(appid), decoded)
    }
}

/// The range of exactly `key`.
fn one_key(key: &str) -> (Bound<String>, Bound<String>) {
    (
        Bound::Included(key.to_string()),
        Bound::Excluded(format!("{key}\0")),
    )
}

/// The transaction of [`Inner::write_platform`]: answers, and whether anything was written
/// (a transaction that changed nothing is aborted, costing no fsync).
fn commit_platform(
    db: &redb::Database,
    ring: &Keyring,
    pending: &[Pending],
    jobs: &[Vec<Pending>],
) -> anyhow::Result<(Vec<Vec<bool>>, bool)> {
    let tx = db.begin_write()?;
    let mut changed = false;
    let mut answers = Vec::with_capacity(jobs.len());
    {
        let mut table = tx.open_table(PLATFORM)?;
        for p in pending {
            put(&mut table, ring, p, &mut changed)?;
        }
        for job in jobs {
            let mut written = Vec::with_capacity(job.len());
            for r in job {
                written.push(put(&mut table, ring, r, &mut changed)?);
            }
            answers.push(written);
        }
    }
    if changed {
        tx.commit()?;
    } else {
        tx.abort()?;
    }
    Ok((answers, changed))
}

/// Last-writer-wins: writes `r` unless the stored record is newer; true unless it was. A
/// removal always removes.
fn put(
    table: &mut redb::Table<&str, &[u8]>,
    ring: &Keyring,
    r: &Pending,
    changed: &mut bool,
) -> anyhow::Result<bool> {
    let Some(bytes) = &r.bytes else {
        if table.remove(r.key.as_str())?.is_some() {
            *changed = true;
        }
        return Ok(true);
    };
    let current = table.get(r.key.as_str())?.map(|v| v.value().to_vec());
    match current {
        Some(stored) if stored == *bytes => Ok(true),
        Some(stored) if stored_order(ring, &r.key, &stored).is_some_and(|o| o > r.order) => {
            Ok(false)
        }
        _ => {
            table.insert(r.key.as_str(), bytes.as_slice())?;
            *changed = true;
            Ok(true)
        }
    }
}

impl EmbeddedStore {
    /// Queues `records` for the writer and waits for its answer.
    fn write_platform(&self, records: Vec<Pending>) -> StoreIo<Vec<bool>> {
        let (done, outcome) = oneshot::channel();
        let sent = self
            .inner
            .saves
            .send(Job::Platform(Write { records, done }));
        async move {
            sent.map_err(|_| anyhow::anyhow!("the store's writer has stopped"))?;
            match outcome.await {
                Ok(Ok(written)) => Ok(written),
                Ok(Err(e)) => Err(anyhow::anyhow!(e)),
                Err(_) => Err(anyhow::anyhow!("the store's writer has stopped")),
            }
        }
        .boxed()
    }

    /// Every platform record of the file, by platform (corrupt ones skipped and logged).
    pub(crate) fn platform_snapshot(&self) -> StoreIo<BTreeMap<String, PlatformRecords>> {
        let inner = self.inner.clone();
        blocking(move || inner.snapshot_blocking())
    }

    /// Transactions committed so far (token and platform ones), for tests.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }
}

impl EmbeddedStore {
    /// A blocking load on a worker thread, with this store's inner and the platform's name.
    fn load_blocking<T: Send + 'static>(
        &self,
        platform: &str,
        load: impl FnOnce(&Inner, &str) -> anyhow::Result<T> + Send + 'static,
    ) -> StoreIo<T> {
        let inner = self.inner.clone();
        let platform = platform.to_string();
        blocking(move || load(&inner, &platform))
    }

    /// Writes one record; whether it was written.
    fn write_one(&self, platform: &str, key: String, order: u64, bytes: Vec<u8>) -> StoreIo<bool> {
        let record = Pending {
            key,
            platform: platform.to_string(),
            order,
            bytes: Some(bytes),
        };
        self.write_platform(vec![record])
            .map(|r| r.map(|written| written.first().copied().unwrap_or(false)))
            .boxed()
    }
}

impl PlatformStore for EmbeddedStore {
    fn load_ticket(&self, platform: &str) -> StoreIo<Option<TicketRecord>> {
        checked(check_platform(platform), || {
            self.load_blocking(platform, |inner, p| inner.load_ticket_blocking(p))
        })
    }

    fn save_event(&self, platform: &str, event: &EventRecord) -> StoreIo<()> {
        checked(check_platform(platform), || {
            let order = UnixMillis::saturating_from(event.received_at).as_millis();
            // Unique and in arrival order; neither the ticket nor the authorizer range holds it.
            let seq = self.inner.seq.fetch_add(1, Ordering::SeqCst);
            let key = format!("{platform}/event/{order:020}-{seq:020}");
            let bytes = encode_event(&self.inner.ring, platform, event);
            self.write_one(platform, key, order, bytes)
                .map(|r| r.map(drop))
                .boxed()
        })
    }

    fn save_ticket(&self, platform: &str, ticket: &TicketRecord) -> StoreIo<()> {
        checked(check_platform(platform), || {
            let bytes = encode_ticket(&self.inner.ring, platform, ticket);
            self.write_one(platform, ticket_key(platform), ticket.order(), bytes)
                .map(|r| r.map(drop))
                .boxed()
        })
    }

    fn load_authorizers(&self, platform: &str) -> StoreIo<Vec<AuthorizerRecord>> {
        checked(check_platform(platform), || {
            self.load_blocking(platform, |inner, p| {
                inner.load_authorizers_blocking(p, None)
            })
        })
    }

    fn load_authorizer(&self, platform: &str, appid: &str) -> StoreIo<Option<AuthorizerRecord>> {
        checked(check_authorizer_key(platform, appid), || {
            let appid = appid.to_string();
            self.load_blocking(platform, move |inner, p| {
                Ok(inner.load_authorizers_blocking(p, Some(&appid))?.pop())
            })
        })
    }

    fn save_authorizers(&self, platform: &str, records: &[AuthorizerRecord]) -> StoreIo<Vec<bool>> {
        checked(check_authorizers(platform, records), || {
            if records.is_empty() {
                return futures_util::future::ready(Ok(Vec::new())).boxed();
            }
            let prefix = authorizers_prefix(platform);
            let records = records
                .iter()
                .map(|r| Pending {
                    key: format!("{prefix}{}", r.appid),
                    platform: platform.to_string(),
                    order: r.order(),
                    bytes: Some(encode_authorizer(&self.inner.ring, platform, r)),
                })
                .collect();
            self.write_platform(records)
        })
    }

    fn not_durable_records(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.inner.platform_pending().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn save_code(&self, platform: &str, record: &CodeRecord) -> StoreIo<bool> {
        checked(check_code(platform, record), || {
            let key = format!("{}{}", codes_prefix(platform), record.digest);
            let bytes = encode_code(&self.inner.ring, platform, record);
            self.write_one(platform, key, record.order(), bytes)
        })
    }

    fn load_codes(&self, platform: &str) -> StoreIo<Vec<CodeRecord>> {
        checked(check_platform(platform), || {
            self.load_blocking(platform, |inner, p| inner.load_codes_blocking(p, None))
        })
    }

    fn load_code(&self, platform: &str, digest: &str) -> StoreIo<Option<CodeRecord>> {
        checked(check_code_key(platform, digest), || {
            let digest = digest.to_string();
            self.load_blocking(platform, move |inner, p| {
                Ok(inner.load_codes_blocking(p, Some(&digest))?.pop())
            })
        })
    }

    fn forget_codes(&self, platform: &str, digests: &[String]) -> StoreIo<()> {
        checked(check_digests(platform, digests), || {
            if digests.is_empty() {
                return futures_util::future::ready(Ok(())).boxed();
            }
            let prefix = codes_prefix(platform);
            let removals = digests
                .iter()
                .map(|d| Pending {
                    key: format!("{prefix}{d}"),
                    platform: platform.to_string(),
                    // Any later write of the key replaces a removal still waiting for the disk.
                    order: 0,
                    bytes: None,
                })
                .collect();
            self.write_platform(removals).map(|r| r.map(drop)).boxed()
        })
    }
}

#[cfg(test)]
#[path = "platform_tests.rs"]
mod tests;
