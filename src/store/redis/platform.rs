//! The Redis store's Open Platform records: shared by the fleet in Redis, and copied in each
//! instance's local embedded file (`store.local_path`) so that a flushed or replaced Redis
//! loses no refresh token, even after every instance restarted.
//!
//! Keys: `{prefix}:platform:{name}:ticket` (the ticket's JSON) and
//! `{prefix}:platform:{name}:authorizers` (a hash, appid -> the record's JSON). Every write is
//! last-writer-wins in a Lua script comparing `updated_at_ms` (`received_at_ms` for a ticket),
//! so an instance replaying an old view never undoes a newer change, and running the same
//! write-back from every instance at once is safe. A stored time the record format refuses
//! (past the year 9999) fences nothing, as an undecodable record fences nothing.
//!
//! - **Saves** go to Redis and to the local file at once. A save succeeds when the local copy
//!   is durable (fsync'd): that is the copy that survives a Redis flush. A Redis failure is then
//!   logged, counted, and repaired by the write-back; a local failure is an error to the caller
//!   (the local store keeps retrying it, and Redis may already hold the record).
//! - **Loads** read both: each record is the newer of the two. Records Redis lacks or has older
//!   start a write-back; records only Redis has (saved by other instances) are copied into the
//!   local file. With Redis down, loads answer from the local file alone.
//! - **Write-back**: at start, whenever Redis comes back (the health loop's transition to up),
//!   and when a save or load found Redis behind, every local record that Redis lacks or holds
//!   older is written to it. A script first asks which are (sending appids and times only), so
//!   a write-back over 100,000 records Redis already has moves no record.
//!
//! Authorization codes of pushes (see [`CodeRecord`]) are in `{prefix}:platform:{name}:codes`
//! (a hash, SHA-256 of the code -> the record's JSON), saved to both copies like authorizers
//! and ordered by [`CodeRecord::order`], so a done code is never made pending again. A load
//! merges both copies and writes the newer local ones to Redis. The exchange of a code is
//! claimed fleet-wide by `{prefix}:platform:{name}:code_claim:{sha-256}` (this instance's name,
//! with a lifetime; renewable by its holder), so one instance exchanges a code while the others
//! wait for its record to say it is done.
//!
//! Batches are split into script calls of [`CHUNK`] records, [`CHUNKS_PER_PIPELINE`] of them
//! per round trip, and loads scan the hash with `HSCAN`: 100,000 authorizers never make one
//! command that blocks Redis for long.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;

use super::{Inner, RedisStore};
use crate::store::platform::{
    check_appid, check_code_digest, check_platform, decode_authorizer_of, decode_code_of,
    decode_ticket, encode_authorizer, encode_code, encode_event, encode_ticket, metric_label,
    AuthorizerRecord, CodeRecord, EventRecord, PlatformStore, Refused, TicketRecord,
    MAX_REDIS_EVENTS,
};
use crate::store::sealed::{unreadable_in, Unreadable};
use crate::time::UnixMillis;

/// Records per script call: a call of 500 HGET/HSET and JSON decodes keeps Redis busy about a
/// millisecond.
const CHUNK: usize = 500;
/// Script calls per pipeline: 2,500 records (under 1 MiB) per round trip, well inside the
/// command timeout.
const CHUNKS_PER_PIPELINE: usize = 5;
/// Hash entries asked per `HSCAN`: 100,000 authorizers load in about 100 round trips.
const SCAN_COUNT: usize = 1000;
/// First wait before retrying a failed write-back; it doubles up to [`WRITEBACK_MAX`].
const WRITEBACK_MIN: Duration = Duration::from_secs(1);
const WRITEBACK_MAX: Duration = Duration::from_secs(30);

/// A script with `MAX_MS` replaced by [`UnixMillis::MAX`]. The scripts compare stored times
/// without decoding the records; one past `MAX_MS` is corrupt (the decoders refuse it), so it
/// fences nothing, as an undecodable record fences nothing. Otherwise one hostile time would
/// hold off every later write of its record.
fn script(lua: &str) -> redis::Script {
    redis::Script::new(&lua.replace("MAX_MS", &UnixMillis::MAX.as_millis().to_string()))
}

/// KEYS[1]: the ticket key; ARGV: received_at_ms, JSON. Writes unless the stored ticket was
/// received later (an undecodable one fences nothing). 1 when written.
static TICKET_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  local t = ok and type(rec) == 'table' and tonumber(rec.received_at_ms)
  if t and t <= MAX_MS and t > tonumber(ARGV[1]) then
    return 0
  end
end
if cur ~= ARGV[2] then redis.call('SET', KEYS[1], ARGV[2]) end
return 1
"#,
    )
});

/// KEYS[1]: the authorizers hash; ARGV: (appid, updated_at_ms, JSON) triples. Writes each
/// unless the stored record is newer; answers 1 (written or already equal) or 0 per record.
static SAVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local out = {}
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local newer = false
  if cur then
    local ok, rec = pcall(cjson.decode, cur)
    local t = ok and type(rec) == 'table' and tonumber(rec.updated_at_ms)
    newer = t and t <= MAX_MS and t > tonumber(ARGV[i + 1])
  end
  if newer then
    out[#out + 1] = 0
  else
    if cur ~= ARGV[i + 2] then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2]) end
    out[#out + 1] = 1
  end
end
return out
"#,
    )
});

/// KEYS[1]: the authorizers hash; ARGV: (appid, updated_at_ms) pairs. Answers the 1-based
/// positions of the pairs Redis lacks, cannot decode or holds older.
static STALE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local out = {}
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local current = false
  if cur then
    local ok, rec = pcall(cjson.decode, cur)
    local t = ok and type(rec) == 'table' and tonumber(rec.updated_at_ms)
    current = t and t <= MAX_MS and t >= tonumber(ARGV[i + 1])
  end
  if not current then out[#out + 1] = (i + 1) / 2 end
end
return out
"#,
    )
});

/// KEYS[1]: the codes hash; ARGV: digest, order, JSON. Writes unless the stored record's
/// order is higher (an undecodable one fences nothing). 1 when written or already equal.
static CODE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and type(rec) == 'table' and tonumber(rec.order)
      and tonumber(rec.order) > tonumber(ARGV[2]) then
    return 0
  end
end
if cur ~= ARGV[3] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
"#,
    )
});

/// KEYS[1]: a code's claim; ARGV: this instance, lifetime in ms. Takes the claim if it is free
/// or already this instance's (then renews it). 1 when held now.
static CLAIM_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#,
    )
});

/// KEYS[1]: a code's claim; ARGV: this instance. Deletes the claim if it is this instance's.
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#,
    )
});

/// What one write-back wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct WroteBack {
    tickets: usize,
    authorizers: usize,
}

impl Inner {
    fn ticket_key(&self, platform: &str) -> String {
        format!("{}:platform:{platform}:ticket", self.prefix)
    }

    fn authorizers_key(&self, platform: &str) -> String {
        format!("{}:platform:{platform}:authorizers", self.prefix)
    }

    fn codes_key(&self, platform: &str) -> String {
        format!("{}:platform:{platform}:codes", self.prefix)
    }

    fn claim_key(&self, platform: &str, digest: &str) -> String {
        format!("{}:platform:{platform}:code_claim:{digest}", self.prefix)
    }

    /// The record, `None` when corrupt (skipped and logged), an error when it does not open.
    fn code_or_skip(
        &self,
        platform: &str,
        digest: &[u8],
        bytes: &[u8],
    ) -> anyhow::Result<Option<CodeRecord>> {
        match decode_code_of(&self.ring, platform, bytes, digest) {
            Ok(r) => Ok(Some(r)),
            Err(Refused::Unreadable(u)) => Err(self.unreadable(platform, u)),
            Err(Refused::Corrupt(why)) => {
                self.metrics.store_failed(&metric_label(platform), "decode");
                let digest = String::from_utf8_lossy(digest);
                tracing::warn!(platform, code = ?digest, store = "redis", error = %why,
                    "stored authorization code record is corrupt; skipping it");
                Ok(None)
            }
        }
    }

    /// A record that does not open: counted, and an error for the caller (never skipped).
    fn unreadable(&self, platform: &str, u: Unreadable) -> anyhow::Error {
        self.metrics
            .store_failed(&metric_label(platform), "decrypt");
        anyhow::Error::new(u).context("Redis holds a record that does not open")
    }

    async fn redis_save_code(&self, platform: &str, r: &CodeRecord) -> anyhow::Result<bool> {
        let key = self.codes_key(platform);
        let (digest, order, body) = (
            r.digest.clone(),
            r.order(),
            encode_code(&self.ring, platform, r),
        );
        let written: i64 = self
            .run("code write", |mut c| async move {
                CODE_SCRIPT
                    .key(&key)
                    .arg(digest)
                    .arg(order)
                    .arg(body)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(written == 1)
    }

    /// The whole hash: codes are few (those of the last hour or so).
    async fn redis_load_codes(
        &self,
        platform: &str,
    ) -> anyhow::Result<BTreeMap<String, CodeRecord>> {
        let key = self.codes_key(platform);
        let flat: Vec<Vec<u8>> = self
            .run("code scan", |mut c| async move {
                redis::cmd("HGETALL").arg(&key).query_async(&mut c).await
            })
            .await?;
        let mut out = BTreeMap::new();
        for pair in flat.chunks_exact(2) {
            if let Some(r) = self.code_or_skip(platform, &pair[0], &pair[1])? {
                out.insert(r.digest.clone(), r);
            }
        }
        Ok(out)
    }

    async fn redis_load_code(
        &self,
        platform: &str,
        digest: &str,
    ) -> anyhow::Result<Option<CodeRecord>> {
        let key = self.codes_key(platform);
        let field = digest.to_string();
        let raw: Option<Vec<u8>> = self
            .run("code read", |mut c| async move {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(&field)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        match raw {
            Some(b) => self.code_or_skip(platform, digest.as_bytes(), &b),
            None => Ok(None),
        }
    }

    /// Writes local code records that Redis lacks or holds behind, without making the load
    /// wait: they are few, and a failure is repaired by the next load.
    fn code_writeback(self: &Arc<Self>, platform: &str, records: Vec<CodeRecord>) {
        if records.is_empty() {
            return;
        }
        let inner = self.clone();
        let platform = platform.to_string();
        tokio::spawn(async move {
            for r in records {
                if let Err(e) = inner.redis_save_code(&platform, &r).await {
                    tracing::debug!(platform = %platform, error = %format!("{e:#}"),
                        "code record not written back to Redis yet");
                    return;
                }
            }
        });
    }

    fn ask_writeback(&self) {
        if self.local.is_some() {
            self.writeback.notify_one();
        }
    }

    async fn redis_load_ticket(&self, platform: &str) -> anyhow::Result<Option<TicketRecord>> {
        let key = self.ticket_key(platform);
        let raw: Option<Vec<u8>> = self
            .run("ticket read", |mut c| async move {
                redis::cmd("GET").arg(&key).query_async(&mut c).await
            })
            .await?;
        let Some(bytes) = raw else {
            return Ok(None);
        };
        match decode_ticket(&self.ring, platform, &bytes) {
            Ok(t) => Ok(Some(t)),
            Err(Refused::Unreadable(u)) => Err(self.unreadable(platform, u)),
            Err(Refused::Corrupt(why)) => {
                self.metrics.store_failed(&metric_label(platform), "decode");
                tracing::warn!(platform, store = "redis", error = %why,
                    "stored verify ticket is corrupt; ignoring it");
                Ok(None)
            }
        }
    }

    async fn redis_save_ticket(
        &self,
        platform: &str,
        ticket: &TicketRecord,
    ) -> anyhow::Result<bool> {
        let key = self.ticket_key(platform);
        let order = ticket.order();
        let body = encode_ticket(&self.ring, platform, ticket);
        let written: i64 = self
            .run("ticket write", |mut c| async move {
                TICKET_SCRIPT
                    .key(&key)
                    .arg(order)
                    .arg(body)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(written == 1)
    }

    fn authorizer_or_skip(
        &self,
        platform: &str,
        appid: &[u8],
        bytes: &[u8],
    ) -> anyhow::Result<Option<AuthorizerRecord>> {
        match decode_authorizer_of(&self.ring, platform, bytes, appid) {
            Ok(r) => Ok(Some(r)),
            Err(Refused::Unreadable(u)) => Err(self.unreadable(platform, u)),
            Err(Refused::Corrupt(why)) => {
                self.metrics.store_failed(&metric_label(platform), "decode");
                let appid = String::from_utf8_lossy(appid);
                tracing::warn!(platform, appid = ?appid, store = "redis", error = %why,
                    "stored authorizer record is corrupt; skipping it");
                Ok(None)
            }
        }
    }

    async fn redis_load_authorizer(
        &self,
        platform: &str,
        appid: &str,
    ) -> anyhow::Result<Option<AuthorizerRecord>> {
        let key = self.authorizers_key(platform);
        let field = appid.to_string();
        let raw: Option<Vec<u8>> = self
            .run("authorizer read", |mut c| async move {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(&field)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        match raw {
            Some(b) => self.authorizer_or_skip(platform, appid.as_bytes(), &b),
            None => Ok(None),
        }
    }

    /// The whole hash by `HSCAN`, by appid.
    async fn redis_load_authorizers(
        &self,
        platform: &str,
    ) -> anyhow::Result<BTreeMap<String, AuthorizerRecord>> {
        let key = self.authorizers_key(platform);
        let mut cursor = "0".to_string();
        let mut out = BTreeMap::new();
        loop {
            let (k, c) = (key.clone(), cursor.clone());
            let (next, flat): (String, Vec<Vec<u8>>) = self
                .run("authorizer scan", |mut conn| async move {
                    redis::cmd("HSCAN")
                        .arg(&k)
                        .arg(&c)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            for pair in flat.chunks_exact(2) {
                if let Some(r) = self.authorizer_or_skip(platform, &pair[0], &pair[1])? {
                    // HSCAN may return an entry twice; the record is the same.
                    out.insert(r.appid.clone(), r);
                }
            }
            if next == "0" {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Last-writer-wins saves in pipelines of script calls; the answers in `records`' order.
    async fn redis_save_authorizers(
        &self,
        platform: &str,
        records: &[AuthorizerRecord],
    ) -> anyhow::Result<Vec<bool>> {
        let key = self.authorizers_key(platform);
        let mut written = Vec::with_capacity(records.len());
        for batch in records.chunks(CHUNK * CHUNKS_PER_PIPELINE) {
            let mut pipe = redis::pipe();
            pipe.load_script(&SAVE_SCRIPT).ignore();
            for chunk in batch.chunks(CHUNK) {
                let mut call = SAVE_SCRIPT.key(&key);
                for r in chunk {
                    call.arg(&r.appid)
                        .arg(r.order())
                        .arg(encode_authorizer(&self.ring, platform, r));
                }
                pipe.invoke_script(&call);
            }
            let answers: Vec<Vec<i64>> = self
                .run("authorizer write", |mut c| async move {
                    pipe.query_async(&mut c).await
                })
                .await?;
            let flat: Vec<bool> = answers.into_iter().flatten().map(|w| w == 1).collect();
            anyhow::ensure!(
                flat.len() == batch.len(),
                "Redis authorizer write answered {} of {} records",
                flat.len(),
                batch.len()
            );
            written.extend(flat);
        }
        Ok(written)
    }

    /// Those of `records` that Redis lacks or holds older.
    async fn redis_stale<'a>(
        &self,
        platform: &str,
        records: &'a [AuthorizerRecord],
    ) -> anyhow::Result<Vec<&'a AuthorizerRecord>> {
        let key = self.authorizers_key(platform);
        let mut stale = Vec::new();
        for batch in records.chunks(CHUNK * CHUNKS_PER_PIPELINE) {
            let mut pipe = redis::pipe();
            pipe.load_script(&STALE_SCRIPT).ignore();
            for chunk in batch.chunks(CHUNK) {
                let mut call = STALE_SCRIPT.key(&key);
                for r in chunk {
                    call.arg(&r.appid).arg(r.order());
                }
                pipe.invoke_script(&call);
            }
            let answers: Vec<Vec<usize>> = self
                .run("authorizer compare", |mut c| async move {
                    pipe.query_async(&mut c).await
                })
                .await?;
            for (chunk, positions) in batch.chunks(CHUNK).zip(answers) {
                stale.extend(
                    positions
                        .into_iter()
                        .filter_map(|p| chunk.get(p.checked_sub(1)?)),
                );
            }
        }
        Ok(stale)
    }

    /// Writes every local record that Redis lacks or holds older.
    async fn write_back(&self) -> anyhow::Result<WroteBack> {
        let Some(local) = &self.local else {
            return Ok(WroteBack::default());
        };
        let mut wrote = WroteBack::default();
        for (platform, records) in local.platform_snapshot().await? {
            if check_platform(&platform).is_err() {
                continue;
            }
            if let Some(t) = &records.ticket {
                let remote = self.redis_load_ticket(&platform).await?;
                if remote.is_none_or(|r| r.received_at < t.received_at)
                    && self.redis_save_ticket(&platform, t).await?
                {
                    wrote.tickets += 1;
                }
            }
            let stale: Vec<AuthorizerRecord> = self
                .redis_stale(&platform, &records.authorizers)
                .await?
                .into_iter()
                .cloned()
                .collect();
            if !stale.is_empty() {
                let written = self.redis_save_authorizers(&platform, &stale).await?;
                wrote.authorizers += written.into_iter().filter(|w| *w).count();
            }
        }
        Ok(wrote)
    }
}

/// Writes the local records back at start, on every transition of Redis to up, and when asked,
/// retrying a failed write-back with backoff while Redis is up. Ends with the store.
pub(super) async fn writeback_loop(inner: Weak<Inner>) {
    let (mut ups, asked) = match inner.upgrade() {
        Some(i) if i.local.is_some() => (i.ups.subscribe(), i.writeback.clone()),
        _ => return,
    };
    let mut due = true;
    let mut delay = WRITEBACK_MIN;
    loop {
        if !due {
            tokio::select! {
                r = ups.changed() => if r.is_err() { return },
                () = asked.notified() => {}
            }
        }
        due = false;
        let Some(i) = inner.upgrade() else {
            return;
        };
        if !i.up.load(Ordering::SeqCst) {
            // The transition to up brings us back.
            continue;
        }
        match i.write_back().await {
            Ok(wrote) => {
                delay = WRITEBACK_MIN;
                if wrote != WroteBack::default() {
                    tracing::info!(
                        tickets = wrote.tickets,
                        authorizers = wrote.authorizers,
                        redis = %i.location,
                        "wrote platform records Redis lacked back from the local copy"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay,
                    "cannot write the local platform records back to Redis yet");
                drop(i);
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(WRITEBACK_MAX);
                due = true;
            }
        }
    }
}

/// What [`newest_copy`] loads: its name for the log, whether a Redis failure is logged at debug
/// rather than warn level, and its write order (the newer copy wins).
struct Loaded<T> {
    what: &'static str,
    quiet: bool,
    order: fn(&T) -> u64,
}

/// A load's answer from Redis's copy and the local one (if the store keeps one), the newer
/// winning: with Redis unreachable the local copy answers; a local copy newer than Redis's (or
/// one Redis lacks) asks for a write-back; a Redis copy newer than the local one (or one it
/// lacks) goes to `refresh_local`.
async fn newest_copy<T>(
    inner: &Inner,
    platform: &str,
    remote: anyhow::Result<Option<T>>,
    local: Option<BoxFuture<'static, anyhow::Result<Option<T>>>>,
    loaded: Loaded<T>,
    refresh_local: impl FnOnce(&T),
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
                refresh_local(&r);
            }
            Ok(Some(r))
        }
        (None, None) => Ok(None),
    }
}

/// Copies records only Redis has (or has newer) into the local file, without making the load
/// wait for the fsync. A failure is retried by the local store itself.
fn mirror(inner: &Inner, platform: &str, records: &[AuthorizerRecord]) {
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
fn combine<T>(
    inner: &Inner,
    platform: &str,
    remote: anyhow::Result<T>,
    local: Option<anyhow::Result<T>>,
) -> anyhow::Result<T> {
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

fn refuse<T: Send + 'static>(e: anyhow::Error) -> BoxFuture<'static, anyhow::Result<T>> {
    futures_util::future::ready(Err(e)).boxed()
}

impl PlatformStore for RedisStore {
    /// Kept in the local file when there is one (durable there), and in a capped Redis list
    /// (`{prefix}:platform:{name}:events`, the newest [`MAX_REDIS_EVENTS`]) for the fleet.
    fn save_event(
        &self,
        platform: &str,
        event: &EventRecord,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        if let Err(e) = check_platform(platform) {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let local = inner.local.as_ref().map(|l| l.save_event(&platform, event));
        let key = format!("{}:platform:{platform}:events", inner.prefix);
        let body = encode_event(&inner.ring, &platform, event);
        async move {
            let remote: anyhow::Result<()> = inner
                .run("event write", |mut c| async move {
                    redis::pipe()
                        .lpush(&key, body)
                        .ignore()
                        .ltrim(&key, 0, MAX_REDIS_EVENTS - 1)
                        .ignore()
                        .query_async(&mut c)
                        .await
                })
                .await;
            match local {
                Some(l) => {
                    if let Err(e) = &remote {
                        tracing::warn!(platform = %platform, error = %format!("{e:#}"),
                            "event kept in the local file only");
                    }
                    l.await
                }
                None => remote,
            }
        }
        .boxed()
    }

    fn load_ticket(
        &self,
        platform: &str,
    ) -> BoxFuture<'static, anyhow::Result<Option<TicketRecord>>> {
        if let Err(e) = check_platform(platform) {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let local = inner.local.as_ref().map(|l| l.load_ticket(&platform));
        async move {
            let remote = inner.redis_load_ticket(&platform).await;
            let loaded = Loaded {
                what: "the verify ticket",
                quiet: false,
                order: TicketRecord::order,
            };
            newest_copy(&inner, &platform, remote, local, loaded, |r| {
                if let Some(local) = &inner.local {
                    // Not waited for; the local store retries a failure by itself.
                    drop(local.save_ticket(&platform, r));
                }
            })
            .await
        }
        .boxed()
    }

    fn save_ticket(
        &self,
        platform: &str,
        ticket: &TicketRecord,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        if let Err(e) = check_platform(platform) {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let ticket = ticket.clone();
        // Queued now: the local fsync runs while Redis answers.
        let local = inner
            .local
            .as_ref()
            .map(|l| l.save_ticket(&platform, &ticket));
        async move {
            let remote = inner.redis_save_ticket(&platform, &ticket).await.map(drop);
            let local = match local {
                Some(l) => Some(l.await),
                None => None,
            };
            combine(&inner, &platform, remote, local)
        }
        .boxed()
    }

    fn load_authorizers(
        &self,
        platform: &str,
    ) -> BoxFuture<'static, anyhow::Result<Vec<AuthorizerRecord>>> {
        if let Err(e) = check_platform(platform) {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let local = inner.local.as_ref().map(|l| l.load_authorizers(&platform));
        async move {
            let remote = inner.redis_load_authorizers(&platform).await;
            if remote.is_err() {
                inner.metrics.store_failed(&metric_label(&platform), "load");
            }
            let local = match local {
                Some(l) => Some(l.await),
                None => None,
            };
            let (mut merged, local) = match (remote, local) {
                // A copy that does not open is never skipped: it may hold the only refresh
                // token of an account.
                (Err(e), _) | (_, Some(Err(e))) if unreadable_in(&e).is_some() => return Err(e),
                (Err(e), Some(Ok(local))) => {
                    tracing::warn!(platform, error = %format!("{e:#}"),
                        "Redis unreachable: authorizer records come from the local copy");
                    return Ok(local);
                }
                (Err(e), _) => return Err(e),
                (Ok(remote), Some(Ok(local))) => (remote, local),
                (Ok(remote), Some(Err(e))) => {
                    tracing::warn!(platform, error = %format!("{e:#}"),
                        "the local copy of the authorizer records cannot be read");
                    (remote, Vec::new())
                }
                (Ok(remote), None) => (remote, Vec::new()),
            };
            let mut redis_behind = false;
            let mut local_has: BTreeMap<String, std::time::SystemTime> = BTreeMap::new();
            for l in local {
                local_has.insert(l.appid.clone(), l.updated_at);
                match merged.get(&l.appid) {
                    Some(r) if r.updated_at >= l.updated_at => {}
                    _ => {
                        redis_behind = true;
                        merged.insert(l.appid.clone(), l);
                    }
                }
            }
            if redis_behind {
                inner.ask_writeback();
            }
            let local_behind: Vec<AuthorizerRecord> = merged
                .values()
                .filter(|r| local_has.get(&r.appid).is_none_or(|t| *t < r.updated_at))
                .cloned()
                .collect();
            mirror(&inner, &platform, &local_behind);
            Ok(merged.into_values().collect())
        }
        .boxed()
    }

    fn load_authorizer(
        &self,
        platform: &str,
        appid: &str,
    ) -> BoxFuture<'static, anyhow::Result<Option<AuthorizerRecord>>> {
        if let Err(e) = check_platform(platform).and_then(|()| check_appid(appid)) {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let appid = appid.to_string();
        let local = inner
            .local
            .as_ref()
            .map(|l| l.load_authorizer(&platform, &appid));
        async move {
            let remote = inner.redis_load_authorizer(&platform, &appid).await;
            let loaded = Loaded {
                what: "an authorizer record",
                // One line per account would flood the log of a large platform.
                quiet: true,
                order: AuthorizerRecord::order,
            };
            newest_copy(&inner, &platform, remote, local, loaded, |r| {
                mirror(&inner, &platform, std::slice::from_ref(r));
            })
            .await
        }
        .boxed()
    }

    fn save_authorizers(
        &self,
        platform: &str,
        records: &[AuthorizerRecord],
    ) -> BoxFuture<'static, anyhow::Result<Vec<bool>>> {
        let checked = check_platform(platform)
            .and_then(|()| records.iter().try_for_each(|r| check_appid(&r.appid)));
        if let Err(e) = checked {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let local = inner
            .local
            .as_ref()
            .map(|l| l.save_authorizers(&platform, records));
        let records = records.to_vec();
        async move {
            let remote = inner.redis_save_authorizers(&platform, &records).await;
            let local = match local {
                Some(l) => Some(l.await),
                None => None,
            };
            combine(&inner, &platform, remote, local)
        }
        .boxed()
    }

    fn not_durable_records(&self) -> Vec<String> {
        self.inner
            .local
            .as_ref()
            .map(PlatformStore::not_durable_records)
            .unwrap_or_default()
    }

    fn save_code(
        &self,
        platform: &str,
        record: &CodeRecord,
    ) -> BoxFuture<'static, anyhow::Result<bool>> {
        let checked = check_platform(platform)
            .and_then(|()| check_code_digest(&record.digest))
            .and_then(|()| check_appid(&record.authorizer_appid));
        if let Err(e) = checked {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let local = inner.local.as_ref().map(|l| l.save_code(&platform, record));
        let record = record.clone();
        async move {
            let remote = inner.redis_save_code(&platform, &record).await;
            let local = match local {
                Some(l) => Some(l.await),
                None => None,
            };
            combine(&inner, &platform, remote, local)
        }
        .boxed()
    }

    /// Both copies merged, the further record of each code winning; local records Redis lacks
    /// or holds behind are written back to it.
    fn load_codes(&self, platform: &str) -> BoxFuture<'static, anyhow::Result<Vec<CodeRecord>>> {
        if let Err(e) = check_platform(platform) {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let local = inner.local.as_ref().map(|l| l.load_codes(&platform));
        async move {
            let remote = inner.redis_load_codes(&platform).await;
            if remote.is_err() {
                inner.metrics.store_failed(&metric_label(&platform), "load");
            }
            let local = match local {
                Some(l) => l.await.unwrap_or_else(|e| {
                    tracing::warn!(platform, error = %format!("{e:#}"),
                        "the local copy of the code records cannot be read");
                    Vec::new()
                }),
                None => Vec::new(),
            };
            let mut merged = match remote {
                Ok(remote) => remote,
                Err(e) if inner.local.is_some() => {
                    tracing::warn!(platform, error = %format!("{e:#}"),
                        "Redis unreachable: code records come from the local copy");
                    return Ok(local);
                }
                Err(e) => return Err(e),
            };
            let mut behind = Vec::new();
            for l in local {
                if merged.get(&l.digest).is_none_or(|r| r.order() < l.order()) {
                    behind.push(l.clone());
                    merged.insert(l.digest.clone(), l);
                }
            }
            inner.code_writeback(&platform, behind);
            Ok(merged.into_values().collect())
        }
        .boxed()
    }

    fn load_code(
        &self,
        platform: &str,
        digest: &str,
    ) -> BoxFuture<'static, anyhow::Result<Option<CodeRecord>>> {
        if let Err(e) = check_platform(platform).and_then(|()| check_code_digest(digest)) {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let digest = digest.to_string();
        let local = inner
            .local
            .as_ref()
            .map(|l| l.load_code(&platform, &digest));
        async move {
            let remote = inner.redis_load_code(&platform, &digest).await;
            let loaded = Loaded {
                what: "an authorization code record",
                quiet: true,
                order: CodeRecord::order,
            };
            newest_copy(&inner, &platform, remote, local, loaded, |r| {
                if let Some(local) = &inner.local {
                    // Not waited for; the local store retries a failure by itself.
                    drop(local.save_code(&platform, r));
                }
            })
            .await
        }
        .boxed()
    }

    fn forget_codes(
        &self,
        platform: &str,
        digests: &[String],
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        let checked = check_platform(platform)
            .and_then(|()| digests.iter().try_for_each(|d| check_code_digest(d)));
        if let Err(e) = checked {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let platform = platform.to_string();
        let local = inner
            .local
            .as_ref()
            .map(|l| l.forget_codes(&platform, digests));
        let digests = digests.to_vec();
        async move {
            if !digests.is_empty() {
                let key = inner.codes_key(&platform);
                let remote: anyhow::Result<()> = inner
                    .run("code forget", |mut c| async move {
                        redis::cmd("HDEL")
                            .arg(&key)
                            .arg(&digests)
                            .query_async(&mut c)
                            .await
                    })
                    .await;
                if let Err(e) = remote {
                    // Forgotten at the next load instead.
                    tracing::debug!(platform = %platform, error = %format!("{e:#}"),
                        "old code records not removed from Redis yet");
                }
            }
            match local {
                Some(l) => l.await,
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn claim_code(
        &self,
        platform: &str,
        digest: &str,
        ttl: Duration,
    ) -> BoxFuture<'static, anyhow::Result<bool>> {
        if let Err(e) = check_platform(platform).and_then(|()| check_code_digest(digest)) {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let key = inner.claim_key(platform, digest);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        async move {
            let me = inner.instance.clone();
            let held: i64 = inner
                .run("code claim", |mut c| async move {
                    CLAIM_SCRIPT
                        .key(&key)
                        .arg(me)
                        .arg(ms)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(held == 1)
        }
        .boxed()
    }

    fn release_code(&self, platform: &str, digest: &str) -> BoxFuture<'static, anyhow::Result<()>> {
        if let Err(e) = check_platform(platform).and_then(|()| check_code_digest(digest)) {
            return refuse(e);
        }
        let inner = self.inner.clone();
        let key = inner.claim_key(platform, digest);
        async move {
            let me = inner.instance.clone();
            let _: i64 = inner
                .run("code release", |mut c| async move {
                    RELEASE_SCRIPT.key(&key).arg(me).invoke_async(&mut c).await
                })
                .await?;
            Ok(())
        }
        .boxed()
    }
}
