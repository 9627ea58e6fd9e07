//! The embedded store: one redb file on local disk, the default for a single instance. It owns
//! its durability: a record it could not write (disk full, I/O error) is kept and retried in
//! the background until it is on disk, and until then the app is reported as not durable.
//!
//! Saves go to one writer thread that commits whatever has queued up in one transaction (group
//! commit): a cold start of 10,000 apps costs a few hundred fsyncs instead of 10,000, and no
//! thread pool grows to hundreds of threads blocked on redb's single write lock.
//!
//! The same file and writer also hold the Open Platform's durable records, in a table of their
//! own (see `platform`), and the message hub's pushes and deliveries (see `messages`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::{oneshot, watch, Notify};

use super::{decode_or_discard, encode, AppKey, Stored, TokenStore};
use crate::metrics::Metrics;
use crate::seal::Keyring;

mod messages;
mod platform;
mod rekey;
pub use rekey::{rekey_file, InUse};

const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");

/// First wait before retrying a failed save; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest wait between retries: once space is back the record is on disk within this (plus
/// one write), well inside the 15 s an operator is promised.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// The most saves one transaction commits. Bounds how long a batch holds the disk lock (a
/// start-up read waits for it) while still folding a cold start's burst into few fsyncs.
const MAX_BATCH: usize = 1024;

/// A redb database. A save is answered once its transaction is durable (redb fsyncs on commit
/// with a copy-on-write B-tree), so a crash leaves either the old record or the new one, never
/// half. Saves that queue up while a commit runs share the next one.
///
/// After an I/O error redb refuses every later write (`PreviousIo`) until the database is
/// opened again, so a failed write closes it and the next write (or the retry task) reopens it.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Held for every write (redb allows one writer anyway) and for a reopen.
    disk: Mutex<Disk>,
    /// The open database for reads, which take no lock; `None` while closed.
    reader: arc_swap::ArcSwapOption<Database>,
    /// Records whose save failed, by key name: the newest per key. Its own lock, so readiness
    /// checks never wait for the disk.
    pending: Mutex<HashMap<String, Pending>>,
    /// Orders saves: one that reaches the disk after a newer one of the same key is dropped.
    seq: AtomicU64,
    /// Transactions committed, for the log at shutdown and the tests of group commit.
    commits: AtomicU64,
    metrics: Metrics,
    /// Seals the secret fields of what is written, opens them on reads.
    ring: Arc<Keyring>,
    /// Platform records whose write failed, by table key: the newest per key, retried with
    /// the token records and folded into every later platform transaction.
    platform_pending: Mutex<HashMap<String, platform::Pending>>,
    /// Deliveries in an attempt in this process (see `messages`).
    msg_claims: messages::Claims,
    /// Wakes the retry task when a save fails.
    wake: Arc<Notify>,
    /// To the writer thread. Dropped with the store, which ends the thread.
    saves: mpsc::Sender<Job>,
    /// Dropped with the store, which stops the retry task.
    _stop: watch::Sender<()>,
}

struct Disk {
    /// `None` after a failed write: closed, to be reopened by the next write.
    db: Option<Arc<Database>>,
    /// The sequence number of the last record written per key.
    written: HashMap<String, u64>,
}

struct Pending {
    seq: u64,
    appid: String,
    bytes: Vec<u8>,
}

/// One record to write: save number `seq` of `app`.
struct Record {
    app: String,
    appid: String,
    bytes: Vec<u8>,
    seq: u64,
}

/// A record on its way to the writer thread, with the caller waiting for its outcome: written,
/// superseded by a newer save of the same key, or the error (as text: one error answers every
/// save of the failed batch).
struct Save {
    record: Record,
    done: oneshot::Sender<Result<bool, String>>,
}

/// What the writer thread is asked to do: one token record, or one batch of platform records
/// (which it commits in a transaction of its own: their failure is answered differently).
enum Job {
    Token(Save),
    Platform(platform::Write),
    Messages(messages::Write),
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`. A file that is not a readable database is
    /// moved aside to `<path>.corrupt-<unix seconds>` and a new one is created: losing the cached
    /// token costs one fetch, refusing to start would cost an outage.
    ///
    /// Called inside a tokio runtime, it starts the task that retries failed saves; the task
    /// stops when the last clone of the store is dropped.
    pub fn open(path: &Path, metrics: Metrics) -> anyhow::Result<EmbeddedStore> {
        EmbeddedStore::open_with_keys(path, metrics, Arc::new(Keyring::plaintext()))
    }

    /// [`EmbeddedStore::open`] with the keys that seal what it writes and open what it reads.
    pub fn open_with_keys(
        path: &Path,
        metrics: Metrics,
        ring: Arc<Keyring>,
    ) -> anyhow::Result<EmbeddedStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create store directory {}", dir.display()))?;
        }
        let db = match open_db(path) {
            Ok(db) => db,
            Err(OpenError::Fatal(e)) => return Err(e),
            Err(OpenError::Corrupt(why)) => {
                let aside = aside_path(path);
                tracing::error!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    error = %why,
                    "store file is corrupt; moving it aside and starting with an empty store"
                );
                std::fs::rename(path, &aside).with_context(|| {
                    format!("cannot move corrupt store {} aside", path.display())
                })?;
                open_db(path).map_err(|e| match e {
                    OpenError::Fatal(e) => e,
                    OpenError::Corrupt(why) => anyhow::anyhow!("new store file is unusable: {why}"),
                })?
            }
        };
        restrict_permissions(path);
        let db = Arc::new(db);
        let (stop, stopped) = watch::channel(());
        let wake = Arc::new(Notify::new());
        let (saves, queue) = mpsc::channel();
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            reader: arc_swap::ArcSwapOption::new(Some(db.clone())),
            disk: Mutex::new(Disk {
                db: Some(db),
                written: HashMap::new(),
            }),
            pending: Mutex::new(HashMap::new()),
            platform_pending: Mutex::new(HashMap::new()),
            msg_claims: messages::Claims::default(),
            seq: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            metrics,
            ring,
            wake: wake.clone(),
            saves,
            _stop: stop,
        });
        let writer = Arc::downgrade(&inner);
        // The writer logs where whoever opened the store does (a test's own subscriber too).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name("wxtoken-store".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || write_loop(&writer, &queue))
            })
            .context("cannot start the store's writer thread")?;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(retry_loop(Arc::downgrade(&inner), wake, stopped));
            }
            Err(_) => {
                tracing::debug!("no runtime: failed saves of the embedded store are not retried")
            }
        }
        Ok(EmbeddedStore { inner })
    }
}

impl Inner {
    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        // A panic while holding the lock leaves nothing half-done that matters: redb's own
        // transactions are atomic. Keep going with the data.
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open database, reopening it if a failed write closed it.
    fn db<'a>(&self, disk: &'a mut Disk) -> anyhow::Result<&'a Database> {
        if disk.db.is_none() {
            let db = Arc::new(reopen_db(&self.path)?);
            tracing::info!(path = %self.path.display(), "token store reopened");
            self.reader.store(Some(db.clone()));
            disk.db = Some(db);
        }
        disk.db
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("token store {} is closed", self.path.display()))
    }

    /// Closes the database after a failed write (redb refuses every later write until it is
    /// opened again); readers stop using it too.
    fn close(&self, disk: &mut Disk) {
        disk.db = None;
        self.reader.store(None);
    }

    /// A read transaction. Not under the disk lock, which a commit holds through its fsync:
    /// redb lets reads run beside a write, and an actor starting up (an authorizer asked for
    /// the first time) should not wait for other records' commits.
    pub(super) fn begin_read(&self) -> anyhow::Result<redb::ReadTransaction> {
        if let Some(db) = self.reader.load_full() {
            return Ok(db.begin_read()?);
        }
        let mut disk = self.disk();
        Ok(self.db(&mut disk)?.begin_read()?)
    }

    fn load_blocking(&self, key: &AppKey) -> anyhow::Result<Option<Stored>> {
        // A record still waiting for the disk is newer than what the disk holds: after an
        // actor restart it must not come back with a token WeChat has already replaced.
        let pending = self.pending().get(&key.name).map(|p| p.bytes.clone());
        let bytes = match pending {
            Some(bytes) => Some(bytes),
            None => read_in(&self.begin_read()?, &key.name)?,
        };
        Ok(bytes.and_then(|b| decode_or_discard(&self.ring, key, &b, &self.metrics, "embedded")))
    }

    /// Every key's record from one read transaction (pending records first, as in `load`).
    fn load_many_blocking(&self, keys: &[AppKey]) -> anyhow::Result<Vec<Option<Stored>>> {
        let pending: HashMap<String, Vec<u8>> = {
            let p = self.pending();
            keys.iter()
                .filter_map(|k| p.get(&k.name).map(|r| (k.name.clone(), r.bytes.clone())))
                .collect()
        };
        let tx = self.begin_read()?;
        let table = match tx.open_table(TOKENS) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let bytes = match (pending.get(&key.name), &table) {
                (Some(b), _) => Some(b.clone()),
                (None, Some(t)) => t.get(key.name.as_str())?.map(|v| v.value().to_vec()),
                (None, None) => None,
            };
            out.push(
                bytes.and_then(|b| {
                    decode_or_discard(&self.ring, key, &b, &self.metrics, "embedded")
                }),
            );
        }
        Ok(out)
    }

    /// Writes the records in one transaction, skipping each one a newer save of its key has
    /// superseded (on disk already, or later in the batch). Answers, per record, whether it was
    /// written. A failure keeps every record of the batch as pending (replacing older pending
    /// ones) and wakes the retry task.
    fn write_batch(&self, records: &[Record]) -> anyhow::Result<Vec<bool>> {
        let mut disk = self.disk();
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for r in records {
            let seq = newest.entry(r.app.as_str()).or_insert(r.seq);
            *seq = (*seq).max(r.seq);
        }
        let wanted: Vec<bool> = records
            .iter()
            .map(|r| {
                newest.get(r.app.as_str()) == Some(&r.seq)
                    && disk.written.get(&r.app).is_none_or(|&w| w <= r.seq)
            })
            .collect();
        let todo: Vec<&Record> = records
            .iter()
            .zip(&wanted)
            .filter_map(|(r, &w)| w.then_some(r))
            .collect();
        if todo.is_empty() {
            return Ok(wanted);
        }
        let result = self.db(&mut disk).and_then(|db| save_blocking(db, &todo));
        match result {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                let mut pending = self.pending();
                for r in &todo {
                    disk.written.insert(r.app.clone(), r.seq);
                    if pending.get(&r.app).is_some_and(|p| p.seq <= r.seq) {
                        pending.remove(&r.app);
                    }
                }
                Ok(wanted)
            }
            Err(e) => {
                // redb fails every later write after an I/O error: close it, reopen later.
                // Dropping it releases the file lock, so the reopen can take it.
                self.close(&mut disk);
                drop(disk);
                let mut pending = self.pending();
                for r in todo {
                    if pending.get(&r.app).is_none_or(|p| p.seq < r.seq) {
                        pending.insert(
                            r.app.clone(),
                            Pending {
                                seq: r.seq,
                                appid: r.appid.clone(),
                                bytes: r.bytes.clone(),
                            },
                        );
                    }
                }
                drop(pending);
                self.wake.notify_one();
                Err(e)
            }
        }
    }

    /// One pass over the pending records (tokens in one transaction, platform records in
    /// another); true when none is left.
    fn retry_pending(&self) -> bool {
        let platform_done = self.retry_platform_pending();
        let todo: Vec<Record> = self
            .pending()
            .iter()
            .map(|(k, p)| Record {
                app: k.clone(),
                appid: p.appid.clone(),
                bytes: p.bytes.clone(),
                seq: p.seq,
            })
            .collect();
        if todo.is_empty() {
            return platform_done;
        }
        match self.write_batch(&todo) {
            Ok(_) => {
                for r in &todo {
                    tracing::info!(app = %r.app, "saved the token record that could not be saved before");
                }
            }
            Err(e) => {
                tracing::warn!(records = todo.len(), error = %format!("{e:#}"),
                    "token records still cannot be saved; retrying");
                for r in todo {
                    let key = AppKey {
                        name: r.app,
                        appid: r.appid,
                    };
                    self.metrics.store_failed(&key.metric_label(), "save");
                }
                return false;
            }
        }
        self.pending().is_empty() && platform_done
    }
}

/// The writer thread: waits for a save, takes whatever else has queued up meanwhile (up to
/// [`MAX_BATCH`]), commits them together and answers each. Ends when the store is dropped.
fn write_loop(inner: &Weak<Inner>, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut batch = Vec::new();
        let mut platform_writes = Vec::new();
        let mut message_writes = Vec::new();
        for job in jobs {
            match job {
                Job::Token(save) => batch.push(save),
                Job::Platform(write) => platform_writes.push(write),
                Job::Messages(write) => message_writes.push(write),
            }
        }
        if !batch.is_empty() {
            write_tokens(inner, batch);
        }
        if !platform_writes.is_empty() {
            platform::write_jobs(inner, platform_writes);
        }
        if !message_writes.is_empty() {
            messages::write_jobs(inner, message_writes);
        }
    }
}

/// Commits a batch of token saves and answers each.
fn write_tokens(inner: &Weak<Inner>, batch: Vec<Save>) {
    let (records, replies): (Vec<Record>, Vec<_>) =
        batch.into_iter().map(|s| (s.record, s.done)).unzip();
    let outcome = match inner.upgrade() {
        Some(inner) => inner.write_batch(&records).map_err(|e| format!("{e:#}")),
        None => Err("the token store is closed".to_string()),
    };
    for (i, reply) in replies.into_iter().enumerate() {
        // A caller that stopped waiting (its actor stopped) needs no answer.
        let _ = reply.send(outcome.as_ref().map(|w| w[i]).map_err(Clone::clone));
    }
}

/// Runs `f` on tokio's blocking pool (redb blocks on disk I/O: keep it off the threads that
/// run actors and requests), logging where the caller logs.
fn blocking<T, F>(f: F) -> BoxFuture<'static, anyhow::Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    tokio::task::spawn_blocking(move || tracing::dispatcher::with_default(&dispatch, f))
        .map(|r| r.context("store task failed")?)
        .boxed()
}

/// Retries pending records with a doubling backoff capped at [`RETRY_MAX`] until none is left,
/// then sleeps until the next failure. Ends when the store is dropped.
async fn retry_loop(inner: Weak<Inner>, wake: Arc<Notify>, mut stopped: watch::Receiver<()>) {
    loop {
        tokio::select! {
            r = stopped.changed() => if r.is_err() { return },
            () = wake.notified() => {}
        }
        let mut delay = RETRY_MIN;
        loop {
            tokio::select! {
                r = stopped.changed() => if r.is_err() { return },
                () = tokio::time::sleep(delay) => {}
            }
            let Some(i) = inner.upgrade() else {
                return;
            };
            let done = blocking(move || Ok(i.retry_pending()))
                .await
                .unwrap_or(false);
            if done {
                break;
            }
            delay = delay.saturating_mul(2).min(RETRY_MAX);
        }
    }
}

fn read_raw(db: &Database, app: &str) -> anyhow::Result<Option<Vec<u8>>> {
    read_in(&db.begin_read()?, app)
}

fn read_in(tx: &redb::ReadTransaction, app: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let table = match tx.open_table(TOKENS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(app)?.map(|v| v.value().to_vec()))
}

fn save_blocking(db: &Database, records: &[&Record]) -> anyhow::Result<()> {
    let tx = db.begin_write()?;
    {
        let mut table = tx.open_table(TOKENS)?;
        for r in records {
            table.insert(r.app.as_str(), r.bytes.as_slice())?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl TokenStore for EmbeddedStore {
    fn load(&self, key: &AppKey) -> BoxFuture<'static, anyhow::Result<Option<Stored>>> {
        let inner = self.inner.clone();
        let key = key.clone();
        // redb blocks on disk I/O: keep it off the threads that run actors and requests.
        tokio::task::spawn_blocking(move || inner.load_blocking(&key))
            .map(|r| r.context("store task failed")?)
            .boxed()
    }

    fn load_many(
        &self,
        keys: Vec<AppKey>,
    ) -> BoxFuture<'static, anyhow::Result<Vec<Option<Stored>>>> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.load_many_blocking(&keys))
            .map(|r| r.context("store task failed")?)
            .boxed()
    }

    fn save(&self, key: &AppKey, stored: &Stored) -> BoxFuture<'static, anyhow::Result<bool>> {
        let record = Record {
            app: key.name.clone(),
            appid: key.appid.clone(),
            bytes: encode(&self.inner.ring, stored),
            seq: self.inner.seq.fetch_add(1, Ordering::SeqCst),
        };
        let (done, outcome) = oneshot::channel();
        let sent = self.inner.saves.send(Job::Token(Save { record, done }));
        async move {
            sent.map_err(|_| anyhow::anyhow!("the token store's writer has stopped"))?;
            match outcome.await {
                Ok(Ok(written)) => Ok(written),
                Ok(Err(e)) => Err(anyhow::anyhow!(e)),
                Err(_) => Err(anyhow::anyhow!("the token store's writer has stopped")),
            }
        }
        .boxed()
    }

    fn not_durable(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.pending().keys().cloned().collect();
        names.sort();
        names
    }
}

enum OpenError {
    Corrupt(String),
    Fatal(anyhow::Error),
}

fn open_db(path: &Path) -> Result<Database, OpenError> {
    // redb's debug builds assert on some corruptions instead of returning an error; treat a
    // panic during open like a corruption report.
    let result = std::panic::catch_unwind(|| Database::create(path));
    match result {
        Ok(Ok(db)) => {
            // Opening can succeed on a damaged file; a read of the table proves it usable.
            match read_raw(&db, "\u{0}probe") {
                Ok(_) => Ok(db),
                Err(e) => Err(OpenError::Corrupt(format!("{e:#}"))),
            }
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)))) => {
            Err(OpenError::Corrupt(why))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::InvalidData
                || e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Err(OpenError::Corrupt(e.to_string()))
        }
        Ok(Err(redb::DatabaseError::UpgradeRequired(v))) => Err(OpenError::Corrupt(format!(
            "file format version {v} is not supported"
        ))),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(OpenError::Fatal(anyhow::anyhow!(
            "store {} is already in use by another process (two servers cannot share an embedded store; use the redis store)",
            path.display()
        ))),
        Ok(Err(e)) => Err(OpenError::Fatal(
            anyhow::Error::new(e).context(format!("cannot open store {}", path.display())),
        )),
        Err(_) => Err(OpenError::Corrupt("the database library panicked while opening it".into())),
    }
}

/// Opens the database again after a failed write. Unlike at start-up a file that does not open
/// is not moved aside: a full or failing disk is not a corrupt file, and the retry comes back.
fn reopen_db(path: &Path) -> anyhow::Result<Database> {
    match open_db(path) {
        Ok(db) => Ok(db),
        Err(OpenError::Fatal(e)) => Err(e),
        Err(OpenError::Corrupt(why)) => Err(anyhow::anyhow!(
            "cannot reopen store {}: {why}",
            path.display()
        )),
    }
}

fn aside_path(path: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{secs}"));
    PathBuf::from(name)
}

/// The file holds live tokens: readable by its owner only.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot restrict store file permissions");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::AccessToken;
    use crate::token::{QuotaUsage, TokenRecord};

    fn key(i: usize) -> AppKey {
        AppKey {
            name: format!("app{i}"),
            appid: format!("wx{i}"),
        }
    }

    fn stored(i: usize, generation: u64) -> Stored {
        let now = SystemTime::now();
        Stored {
            record: TokenRecord {
                appid: format!("wx{i}"),
                token: AccessToken::new(format!("TOKEN-{i}-{generation}")),
                fetched_at: now,
                expires_at: now + Duration::from_secs(7200),
                generation,
            },
            quota: QuotaUsage::default(),
            fetched_by: None,
            depends_on: None,
        }
    }

    fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
        let metrics = Metrics::new(&[], crate::metrics::MetricsMode::Full);
        EmbeddedStore::open(&dir.path().join("t.redb"), metrics).expect("store opens")
    }

    #[tokio::test]
    async fn a_burst_of_saves_shares_few_commits_and_every_record_is_durable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(&dir);
        let n = 2000;
        // Held while the burst is queued, so the writer cannot commit one record at a time.
        let disk = store.inner.disk();
        let saves: Vec<_> = (0..n).map(|i| store.save(&key(i), &stored(i, 1))).collect();
        drop(disk);
        for (i, outcome) in futures_util::future::join_all(saves)
            .await
            .into_iter()
            .enumerate()
        {
            assert!(outcome.expect("saved"), "save {i} was written");
        }
        let commits = store.inner.commits.load(Ordering::Relaxed);
        assert!(commits <= 4, "{n} saves took {commits} commits");
        drop(store);
        // Reopened from the file: nothing was only in memory.
        let store = open(&dir);
        let loaded = store
            .load_many((0..n).map(key).collect())
            .await
            .expect("loads");
        for (i, s) in loaded.into_iter().enumerate() {
            let s = s.unwrap_or_else(|| panic!("record {i} is on disk"));
            assert_eq!(s.record.generation, 1);
            assert_eq!(s.record.appid, format!("wx{i}"));
        }
    }

    #[tokio::test]
    async fn within_a_batch_the_newest_save_of_a_key_wins() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(&dir);
        let record = |i: usize, generation: u64, seq: u64| Record {
            app: key(i).name,
            appid: key(i).appid,
            bytes: encode(&Keyring::plaintext(), &stored(i, generation)),
            seq,
        };
        // One batch as the writer thread would take it off the queue, older save first.
        let written = store
            .inner
            .write_batch(&[record(1, 5, 10), record(1, 6, 11), record(2, 1, 12)])
            .expect("written");
        assert_eq!(written, [false, true, true], "the older save is superseded");
        // A save that comes late (a lower sequence number) does not replace a newer one.
        let late = store
            .inner
            .write_batch(&[record(1, 4, 9)])
            .expect("no error");
        assert_eq!(late, [false]);
        let loaded = store.load(&key(1)).await.expect("loads").expect("record");
        assert_eq!(loaded.record.generation, 6);
        assert_eq!(store.inner.commits.load(Ordering::Relaxed), 1);
    }
}
