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
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;

use super::{Inner, RedisStore};
use crate::seal::Keyring;
use crate::store::embedded::EmbeddedStore;
use crate::store::platform::{
    check_authorizer_key, check_authorizers, check_code, check_code_key, check_digests,
    check_platform, checked, encode_event, metric_label, skip_corrupt, AuthorizerRecord,
    CodeRecord, Corrupt, EventRecord, PlatformStore, Refused, StoreIo, Stored, TicketRecord,
    MAX_REDIS_EVENTS,
};
use crate::store::sealed::unreadable_in;
use crate::time::UnixMillis;

mod codes;
mod copies;
mod records;
mod writeback;

use copies::{combine, mirror, newest_copy};
pub(super) use writeback::writeback_loop;

/// Records per script call: a call of 500 HGET/HSET and JSON decodes keeps Redis busy about a
/// millisecond.
const CHUNK: usize = 500;
/// Script calls per pipeline: 2,500 records (under 1 MiB) per round trip, well inside the
/// command timeout.
const CHUNKS_PER_PIPELINE: usize = 5;

/// The Lua function every script given to [`script`] may call: the time a stored record
/// (`cur`, its JSON, or false when absent) names in its field `field`, or nil when there is no
/// record, it does not decode, or the time is past `MAX_MS`. The scripts compare stored times
/// without decoding the records; one past `MAX_MS` is corrupt (the decoders refuse it), so it
/// fences nothing, as an undecodable record fences nothing. Otherwise one hostile time would
/// hold off every later write of its record.
const STORED_MS: &str = r#"
local function stored_ms(cur, field)
  if not cur then return nil end
  local ok, rec = pcall(cjson.decode, cur)
  local t = ok and type(rec) == 'table' and tonumber(rec[field])
  if t and t <= MAX_MS then return t end
  return nil
end
"#;

/// A script that may call `stored_ms` (see [`STORED_MS`]), with `MAX_MS` replaced by
/// [`UnixMillis::MAX`].
fn script(lua: &str) -> redis::Script {
    let lua = format!("{STORED_MS}{lua}");
    redis::Script::new(&lua.replace("MAX_MS", &UnixMillis::MAX.as_millis().to_string()))
}

/// A record kept in a platform's Redis hash under a name (an authorizer's appid, a code's
/// digest), which its stored form repeats.
trait HashRecord: Sized {
    /// The read's name in errors.
    const READ: &'static str;
    /// The record stored under `name`, refused when it names another.
    fn decode_of(
        ring: &Keyring,
        platform: &str,
        bytes: &[u8],
        name: &[u8],
    ) -> Result<Self, Refused>;
    /// How a corrupt one is named in the log and the metrics.
    fn stored(name: &str) -> Stored<'_>;
}

impl Inner {
    /// Where a corrupt record of `platform` is counted and logged.
    fn corrupt<'a>(&'a self, platform: &'a str) -> Corrupt<'a> {
        Corrupt {
            metrics: &self.metrics,
            store: "redis",
            platform,
        }
    }

    /// A record Redis holds under `name` in a hash: skipped when corrupt, never when its secret
    /// does not open (see [`skip_corrupt`]).
    fn hash_record_or_skip<R: HashRecord>(
        &self,
        platform: &str,
        name: &[u8],
        bytes: &[u8],
    ) -> anyhow::Result<Option<R>> {
        let decoded = R::decode_of(&self.ring, platform, bytes, name);
        let name = String::from_utf8_lossy(name);
        skip_corrupt(self.corrupt(platform), R::stored(&name), decoded)
    }

    /// The record under `name` in the hash `key` (`HGET`).
    async fn redis_load_hash_record<R: HashRecord>(
        &self,
        platform: &str,
        key: String,
        name: &str,
    ) -> anyhow::Result<Option<R>> {
        match self.get(R::READ, key, Some(name)).await? {
            Some(b) => self.hash_record_or_skip(platform, name.as_bytes(), &b),
            None => Ok(None),
        }
    }

    /// Runs a last-writer-wins `script` on `key` with `args`: whether it wrote the record (or
    /// found it already equal) rather than keeping a newer one.
    async fn write_if_newer(
        &self,
        what: &str,
        script: &redis::Script,
        key: String,
        args: impl redis::ToRedisArgs,
    ) -> anyhow::Result<bool> {
        let written: i64 = self
            .run(what, |mut c| async move {
                script.key(&key).arg(args).invoke_async(&mut c).await
            })
            .await?;
        Ok(written == 1)
    }

    /// One stored record: `GET key`, or `HGET key field`.
    async fn get(
        &self,
        what: &str,
        key: String,
        field: Option<&str>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let field = field.map(str::to_string);
        self.run(what, |mut c| async move {
            match field {
                Some(f) => {
                    redis::cmd("HGET")
                        .arg(&key)
                        .arg(f)
                        .query_async(&mut c)
                        .await
                }
                None => redis::cmd("GET").arg(&key).query_async(&mut c).await,
            }
        })
        .await
    }
}

impl RedisStore {
    /// What a call to both copies starts with: the store, the platform's name, and the local
    /// copy's call, made now (a save's fsync runs while Redis answers).
    fn both<T>(
        &self,
        platform: &str,
        local: impl FnOnce(&EmbeddedStore, &str) -> T,
    ) -> (Arc<Inner>, String, Option<T>) {
        let inner = self.inner.clone();
        let local = inner.local.as_ref().map(|l| local(l, platform));
        (inner, platform.to_string(), local)
    }
}

impl PlatformStore for RedisStore {
    /// Kept in the local file when there is one (durable there), and in a capped Redis list
    /// (`{prefix}:platform:{name}:events`, the newest [`MAX_REDIS_EVENTS`]) for the fleet.
    fn save_event(&self, platform: &str, event: &EventRecord) -> StoreIo<()> {
        checked(check_platform(platform), || {
            let (inner, platform, local) = self.both(platform, |l, p| l.save_event(p, event));
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
        })
    }

    fn load_ticket(&self, platform: &str) -> StoreIo<Option<TicketRecord>> {
        checked(check_platform(platform), || {
            let (inner, platform, local) = self.both(platform, |l, p| l.load_ticket(p));
            async move {
                let remote = inner.redis_load_ticket(&platform).await;
                newest_copy(&inner, &platform, remote, local, &copies::TICKET).await
            }
            .boxed()
        })
    }

    fn save_ticket(&self, platform: &str, ticket: &TicketRecord) -> StoreIo<()> {
        checked(check_platform(platform), || {
            let (inner, platform, local) = self.both(platform, |l, p| l.save_ticket(p, ticket));
            let ticket = ticket.clone();
            async move {
                let remote = inner.redis_save_ticket(&platform, &ticket).await.map(drop);
                combine(&inner, &platform, remote, local).await
            }
            .boxed()
        })
    }

    fn load_authorizers(&self, platform: &str) -> StoreIo<Vec<AuthorizerRecord>> {
        checked(check_platform(platform), || {
            let (inner, platform, local) = self.both(platform, |l, p| l.load_authorizers(p));
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
                    (Err(e), _) | (_, Some(Err(e))) if unreadable_in(&e).is_some() => {
                        return Err(e)
                    }
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
        })
    }

    fn load_authorizer(&self, platform: &str, appid: &str) -> StoreIo<Option<AuthorizerRecord>> {
        checked(check_authorizer_key(platform, appid), || {
            let (inner, platform, local) = self.both(platform, |l, p| l.load_authorizer(p, appid));
            let appid = appid.to_string();
            async move {
                let remote = inner.redis_load_authorizer(&platform, &appid).await;
                newest_copy(&inner, &platform, remote, local, &copies::AUTHORIZER).await
            }
            .boxed()
        })
    }

    fn save_authorizers(&self, platform: &str, records: &[AuthorizerRecord]) -> StoreIo<Vec<bool>> {
        checked(check_authorizers(platform, records), || {
            let (inner, platform, local) =
                self.both(platform, |l, p| l.save_authorizers(p, records));
            let records = records.to_vec();
            async move {
                let remote = inner.redis_save_authorizers(&platform, &records).await;
                combine(&inner, &platform, remote, local).await
            }
            .boxed()
        })
    }

    fn not_durable_records(&self) -> Vec<String> {
        self.inner
            .local
            .as_ref()
            .map(PlatformStore::not_durable_records)
            .unwrap_or_default()
    }

    fn save_code(&self, platform: &str, record: &CodeRecord) -> StoreIo<bool> {
        checked(check_code(platform, record), || {
            let (inner, platform, local) = self.both(platform, |l, p| l.save_code(p, record));
            let record = record.clone();
            async move {
                let remote = inner.redis_save_code(&platform, &record).await;
                combine(&inner, &platform, remote, local).await
            }
            .boxed()
        })
    }

    /// Both copies merged, the further record of each code winning; local records Redis lacks
    /// or holds behind are written back to it.
    fn load_codes(&self, platform: &str) -> StoreIo<Vec<CodeRecord>> {
        checked(check_platform(platform), || {
            let (inner, platform, local) = self.both(platform, |l, p| l.load_codes(p));
            async move {
                let remote = inner.redis_load_codes(&platform).await;
                if remote.is_err() {
                    inner.metrics.store_failed(&metric_label(&platform), "load");
                }
                let local = match local {
                    // A code that does not open is never skipped (see `load_authorizers`).
                    Some(l) => match l.await {
                        Ok(local) => local,
                        Err(e) if unreadable_in(&e).is_some() => return Err(e),
                        Err(e) => {
                            tracing::warn!(platform, error = %format!("{e:#}"),
                                "the local copy of the code records cannot be read");
                            Vec::new()
                        }
                    },
                    None => Vec::new(),
                };
                let mut merged = match remote {
                    Ok(remote) => remote,
                    Err(e) if unreadable_in(&e).is_some() => return Err(e),
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
        })
    }

    fn load_code(&self, platform: &str, digest: &str) -> StoreIo<Option<CodeRecord>> {
        checked(check_code_key(platform, digest), || {
            let (inner, platform, local) = self.both(platform, |l, p| l.load_code(p, digest));
            let digest = digest.to_string();
            async move {
                let remote = inner.redis_load_code(&platform, &digest).await;
                newest_copy(&inner, &platform, remote, local, &copies::CODE).await
            }
            .boxed()
        })
    }

    fn forget_codes(&self, platform: &str, digests: &[String]) -> StoreIo<()> {
        checked(check_digests(platform, digests), || {
            let (inner, platform, local) = self.both(platform, |l, p| l.forget_codes(p, digests));
            let digests = digests.to_vec();
            async move {
                if !digests.is_empty() {
                    if let Err(e) = inner.redis_forget_codes(&platform, &digests).await {
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
        })
    }

    fn claim_code(&self, platform: &str, digest: &str, ttl: Duration) -> StoreIo<bool> {
        checked(check_code_key(platform, digest), || {
            let (inner, platform, digest) =
                (self.inner.clone(), platform.to_string(), digest.to_string());
            async move { inner.redis_claim_code(&platform, &digest, ttl).await }.boxed()
        })
    }

    fn release_code(&self, platform: &str, digest: &str) -> StoreIo<()> {
        checked(check_code_key(platform, digest), || {
            let (inner, platform, digest) =
                (self.inner.clone(), platform.to_string(), digest.to_string());
            async move { inner.redis_release_code(&platform, &digest).await }.boxed()
        })
    }
}
