//! Coalesced record reads for the Redis store: concurrent loads share pipelined round trips.
//!
//! Every actor of a fleet instance re-reads its record from Redis: on each change notification,
//! after a reconnect (all of them at once), and periodically. One command per read would make a
//! reconnect with 10,000 apps cost 10,000 round trips, and the idle polls thousands a second.
//! Instead each read is queued to one loader task per store, which collects the keys asked for
//! and reads them with one pipeline of up to [`MAX_BATCH`] `HGET`s, answering each caller.
//!
//! How long the loader collects depends on who asks. A read someone is waiting on (a change
//! notification, the re-read under the refresh lock) is sent within [`URGENT_WINDOW`]; a
//! periodic poll, which only covers missed notifications, may wait [`LAZY_WINDOW`] for company,
//! so the polls of spread-out actors still travel in a few pipelines a second. A lazy read
//! queued behind an urgent one leaves with it.
//!
//! Batches are sent concurrently, each under the store's command timeout, so a stalled Redis
//! fails every caller within about that timeout (plus its window) as a single read would,
//! rather than queueing batches behind one another. A failed batch fails each of its callers
//! with the same message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Keys read per pipeline at most: large enough that 10,000 apps re-read in 20 round trips,
/// small enough that one answer stays a few hundred KiB.
pub(super) const MAX_BATCH: usize = 500;
/// How long an urgent read waits for others to join its pipeline.
pub(super) const URGENT_WINDOW: Duration = Duration::from_millis(2);
/// How long a periodic poll waits for others (polls are spread over the poll interval, which
/// is seconds: 100 ms more is nothing to them, and it turns 2,000 polls a second into 10
/// pipelines).
pub(super) const LAZY_WINDOW: Duration = Duration::from_millis(100);

/// A record as read: the raw `record` field, if the key exists.
pub(super) type Raw = Option<Vec<u8>>;

/// Reads the `record` field of each key in one round trip, the answers in the keys' order; on
/// failure, the message each caller gets.
pub(super) type ReadFn =
    Arc<dyn Fn(Vec<String>) -> BoxFuture<'static, Result<Vec<Raw>, String>> + Send + Sync>;

struct Request {
    key: String,
    lazy: bool,
    reply: oneshot::Sender<Result<Raw, String>>,
}

/// Counters of the reads made, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Pipelines sent (one round trip each).
    pub round_trips: u64,
    /// Keys read by them.
    pub keys: u64,
}

#[derive(Default)]
struct Counters {
    round_trips: AtomicU64,
    keys: AtomicU64,
}

/// The callers' side: queues reads for the loader. Dropping it ends the loader.
pub(super) struct Reads {
    tx: mpsc::UnboundedSender<Request>,
    counters: Arc<Counters>,
    /// A caller gives up after this, whatever happened to its batch.
    limit: Duration,
}

/// The loader's side, to be run once with [`Loader::run`].
pub(super) struct Loader {
    rx: mpsc::UnboundedReceiver<Request>,
    counters: Arc<Counters>,
}

/// A new pair. `command_timeout` bounds each pipeline (the read function applies it); a caller
/// waits at most its window plus twice that.
pub(super) fn channel(command_timeout: Duration) -> (Reads, Loader) {
    let (tx, rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let reads = Reads {
        tx,
        counters: counters.clone(),
        limit: LAZY_WINDOW + command_timeout * 2,
    };
    (reads, Loader { rx, counters })
}

impl Reads {
    /// Reads `key`'s record with whatever other reads are queued. `lazy`: a periodic poll that
    /// may wait [`LAZY_WINDOW`] for company.
    pub(super) async fn read(&self, key: String, lazy: bool) -> anyhow::Result<Raw> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { key, lazy, reply })
            .map_err(|_| anyhow::anyhow!("Redis read failed: the store's reader has stopped"))?;
        match tokio::time::timeout(self.limit, answer).await {
            Ok(Ok(Ok(raw))) => Ok(raw),
            Ok(Ok(Err(message))) => Err(anyhow::anyhow!(message)),
            Ok(Err(_)) => Err(anyhow::anyhow!(
                "Redis read failed: the store's reader has stopped"
            )),
            Err(_) => Err(anyhow::anyhow!("Redis read timed out")),
        }
    }

    pub(super) fn stats(&self) -> ReadStats {
        ReadStats {
            round_trips: self.counters.round_trips.load(Ordering::Relaxed),
            keys: self.counters.keys.load(Ordering::Relaxed),
        }
    }
}

impl Loader {
    /// Collects queued reads into batches and sends each with `read`, until every [`Reads`]
    /// is dropped (the store closed).
    pub(super) async fn run(mut self, read: ReadFn) {
        while let Some(first) = self.rx.recv().await {
            let mut deadline = Instant::now() + window(first.lazy);
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                // What is queued already is taken even past the deadline: the timeout polls
                // the channel first.
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(request)) => {
                        if !request.lazy {
                            deadline = deadline.min(Instant::now() + URGENT_WINDOW);
                        }
                        batch.push(request);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
            self.counters
                .keys
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            // Not awaited here: a batch stalled on Redis must not hold up the next one.
            tokio::spawn(answer(batch, read.clone()));
        }
    }
}

fn window(lazy: bool) -> Duration {
    if lazy {
        LAZY_WINDOW
    } else {
        URGENT_WINDOW
    }
}

async fn answer(batch: Vec<Request>, read: ReadFn) {
    let keys = batch.iter().map(|r| r.key.clone()).collect();
    match read(keys).await {
        Ok(raws) if raws.len() == batch.len() => {
            for (request, raw) in batch.into_iter().zip(raws) {
                // A caller that gave up is no longer listening.
                let _ = request.reply.send(Ok(raw));
            }
        }
        result => {
            let message = match result {
                Err(message) => message,
                Ok(raws) => format!(
                    "Redis read failed: {} answers for {} keys",
                    raws.len(),
                    batch.len()
                ),
            };
            for request in batch {
                let _ = request.reply.send(Err(message.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::FutureExt as _;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    /// A read function that answers `value-of-KEY` (or `fail`'s message) after `delay`, and
    /// records each batch it was given.
    fn fake_read(
        delay: Duration,
        fail: Option<&'static str>,
    ) -> (ReadFn, Arc<Mutex<Vec<Vec<String>>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let read: ReadFn = Arc::new(move |keys: Vec<String>| {
            seen.lock().unwrap().push(keys.clone());
            async move {
                tokio::time::sleep(delay).await;
                match fail {
                    Some(message) => Err(message.to_string()),
                    None => Ok(keys
                        .iter()
                        .map(|k| Some(format!("value-of-{k}").into_bytes()))
                        .collect()),
                }
            }
            .boxed()
        });
        (read, batches)
    }

    fn start(read: ReadFn) -> Arc<Reads> {
        let (reads, loader) = channel(TIMEOUT);
        tokio::spawn(loader.run(read));
        Arc::new(reads)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_reads_share_pipelines_of_at_most_max_batch_keys() {
        let (read, batches) = fake_read(Duration::from_millis(1), None);
        let reads = start(read);
        let calls: Vec<_> = (0..1200)
            .map(|i| {
                let reads = reads.clone();
                tokio::spawn(async move { reads.read(format!("k{i}"), false).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let raw = call.await.unwrap().unwrap();
            assert_eq!(raw, Some(format!("value-of-k{i}").into_bytes()));
        }
        let sizes: Vec<usize> = batches.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![500, 500, 200]);
        assert_eq!(
            reads.stats(),
            ReadStats {
                round_trips: 3,
                keys: 1200
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_urgent_read_leaves_within_its_window_and_takes_lazy_ones_along() {
        let (read, batches) = fake_read(Duration::ZERO, None);
        let reads = start(read);
        let started = Instant::now();
        let lazy = tokio::spawn({
            let reads = reads.clone();
            async move { reads.read("poll".into(), true).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        reads.read("urgent".into(), false).await.unwrap();
        let urgent_done = started.elapsed();
        lazy.await.unwrap().unwrap();
        assert!(
            urgent_done <= Duration::from_millis(10) + URGENT_WINDOW + Duration::from_millis(1),
            "{urgent_done:?}"
        );
        assert_eq!(
            *batches.lock().unwrap(),
            vec![vec!["poll".to_string(), "urgent".to_string()]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lazy_reads_wait_for_company_up_to_their_window() {
        let (read, batches) = fake_read(Duration::ZERO, None);
        let reads = start(read);
        let started = Instant::now();
        let polls: Vec<_> = (0..10)
            .map(|i| {
                let reads = reads.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i * 5)).await;
                    reads.read(format!("k{i}"), true).await
                })
            })
            .collect();
        for p in polls {
            p.await.unwrap().unwrap();
        }
        // Ten polls 5 ms apart: one pipeline, sent when the first one's window ran out.
        assert_eq!(batches.lock().unwrap().len(), 1);
        let took = started.elapsed();
        assert!(
            took >= LAZY_WINDOW && took <= LAZY_WINDOW + Duration::from_millis(2),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_fails_each_caller_with_the_same_message() {
        let (read, _) = fake_read(
            Duration::ZERO,
            Some("Redis read failed: connection refused"),
        );
        let reads = start(read);
        let calls: Vec<_> = (0..3)
            .map(|i| {
                let reads = reads.clone();
                tokio::spawn(async move { reads.read(format!("k{i}"), false).await })
            })
            .collect();
        for call in calls {
            let err = call.await.unwrap().unwrap_err();
            assert_eq!(err.to_string(), "Redis read failed: connection refused");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_batch_does_not_hold_up_the_next_and_callers_give_up_in_time() {
        // The read function never answers within the caller's limit: each caller still gets
        // "timed out" after its window plus twice the command timeout, not later.
        let (read, batches) = fake_read(Duration::from_secs(3600), None);
        let reads = start(read);
        let started = Instant::now();
        let first = tokio::spawn({
            let reads = reads.clone();
            async move { reads.read("a".into(), false).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = reads.read("b".into(), false).await.unwrap_err();
        assert_eq!(second.to_string(), "Redis read timed out");
        assert_eq!(
            first.await.unwrap().unwrap_err().to_string(),
            "Redis read timed out"
        );
        assert_eq!(
            batches.lock().unwrap().len(),
            2,
            "sent while the first hung"
        );
        assert!(
            started.elapsed()
                <= Duration::from_millis(500)
                    + LAZY_WINDOW
                    + TIMEOUT * 2
                    + Duration::from_millis(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_reads_ends_the_loader() {
        let (read, _) = fake_read(Duration::ZERO, None);
        let (reads, loader) = channel(TIMEOUT);
        let task = tokio::spawn(loader.run(read));
        reads.read("k".into(), false).await.unwrap();
        drop(reads);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the loader ends")
            .unwrap();
    }
}
