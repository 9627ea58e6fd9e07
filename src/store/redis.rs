//! The Redis store: several wxtoken instances share one record per app and one refresher.
//!
//! Redis is one server (plain or TLS), the master of a Sentinel quorum, or a Cluster; how each
//! is reached is in `topology`, and the rest of this module does not depend on which.
//!
//! Keys (all under `key_prefix`, and all including the appid so apps never share a record; on
//! a Cluster the appid is written `{appid}`, a hash tag, so that one app's keys share a slot):
//! - `{prefix}:token:{appid}`: a hash with `generation` and `record` (JSON: token, expiry,
//!   fetch time, quota, the instance that fetched it);
//! - `{prefix}:lock:{appid}`: the refresh lock, `SET NX PX` with a random owner value;
//! - `{prefix}:budget:{appid}`: the fleet's count of calls today and its forced refreshes
//!   (see `budget`), checked under the lock before a fetch;
//! - channel `{prefix}:changes`: `appid:generation` of every record written, so other
//!   instances adopt a new token within milliseconds (each actor also re-reads periodically).
//!   An actor that already holds that generation (the writer's, in particular) does not re-read;
//!   a bare `appid`, as earlier versions announce, makes every watcher re-read.
//!
//! Reads are coalesced (see `redis_batch`): the re-reads of many actors at once, such as
//! every actor's after a reconnect, share pipelined round trips.
//!
//! A refresh takes the lock, re-reads the record (another instance may have refreshed while
//! this one waited), and only then fetches. The write is a compare-and-set on the generation
//! in Lua, so a refresher whose lock expired mid-fetch can never overwrite a newer token.
//!
//! A lock command whose answer never came (Redis stalled, e.g. frozen) may still be carried
//! out when Redis resumes, leaving a lock that no refresh of this instance holds: the lock's
//! owner value is then remembered, and this instance deletes such leftovers (only if they still
//! carry that value) as soon as Redis answers again and before its next attempt. Otherwise a
//! token reported as rejected would stay in service fleet-wide for the whole lock TTL.
//!
//! While Redis is unreachable nobody may fetch a token that is still valid (that would
//! invalidate the token the rest of the fleet serves); once the token has expired an instance
//! may fetch alone, and its actor writes the token back when Redis returns.
//!
//! The Open Platform's records (`{prefix}:platform:{name}:ticket` and
//! `{prefix}:platform:{name}:authorizers`) are data, not cache: each instance also keeps them
//! in a local embedded file and writes them back whenever Redis comes back (see `platform`).
//! Every script and pipeline on them touches one key, so they need no hash tag on a Cluster.
//!
//! Commands that span keys are avoided on a Cluster: the compare-and-set script has one key
//! (its `PUBLISH` goes to every node of a Cluster), and batched reads, a pipeline of `HGET`s on
//! one server, become concurrent single reads there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, StreamExt as _};
use topology::{Conn, Topology};

pub use super::redis_batch::ReadStats;
use super::redis_batch::{self, ReadFn, Reads};
use super::{
    decode_or_discard, encode, stored_from_fetch, AppKey, Basis, Budget, FetchFn, Notify,
    RefreshError, RefreshFuture, Refreshed, StoreHealth, Stored, TokenStore,
};
use crate::config::RedisSettings;
use crate::metrics::Metrics;
use crate::seal::Keyring;
use crate::store::EmbeddedStore;

mod budget;
mod masters;
mod messages;
mod platform;
mod rekey;
mod topology;

pub use rekey::RedisRekeyed;

/// Records read per pipeline at start-up.
const LOAD_BATCH: usize = redis_batch::MAX_BATCH;
/// Every Redis command gets this long; a hung Redis must not hang a refresh.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the health loop pings Redis.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How often a refresher that found the lock taken looks at the record again.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// Writes the record only if its generation is higher than the stored one, then announces it.
/// A stored generation that is not a number or is beyond `MAX_GENERATION` (ARGV[5]) belongs to
/// a corrupt record, which every reader ignores: it does not fence anything, or one bad write
/// would freeze the app's record for good. Likewise a record still byte for byte the one this
/// instance read and found corrupt (ARGV[6]) does not fence: its generation cannot be trusted.
const CAS_SCRIPT: &str = r#"
local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0') or 0
if current > tonumber(ARGV[5]) or current < 0 then current = 0 end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'record') == ARGV[6] then current = 0 end
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'record', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ':' .. ARGV[1])
return 1
"#;

/// Deletes the lock only if this owner still holds it.
const UNLOCK_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Who to tell of changes to one appid's record.
#[derive(Default)]
struct Watch {
    notify: Vec<Arc<Notify>>,
    /// The highest generation this instance wrote (or tried to): its own announcement of it
    /// is not passed on. The actor installed that record itself, and the announcement can
    /// arrive before the write's own answer, while the actor still holds the previous one.
    written: u64,
}

/// At most this many leftover lock values are remembered (one per stalled attempt; attempts
/// are at most one per app and backoff step, and each is forgotten after the lock TTL).
const MAX_LEFTOVERS: usize = 64;

/// A lock value of this instance that no refresh holds: a `SET` or an unlock whose answer was
/// lost. Deleted when Redis answers, if the lock still has this value.
struct Leftover {
    lock_key: String,
    owner: String,
    /// The lock has expired by itself by then.
    until: Instant,
}

struct Inner {
    topology: Topology,
    /// Established lazily and re-established by the health loop; the connection then
    /// reconnects by itself after failures (on Sentinel the health loop drops it when the node
    /// is no longer the master, so that the next one goes to the promoted replica).
    conn: Mutex<Option<Conn>>,
    prefix: String,
    lock_ttl: Duration,
    instance: String,
    /// Where Redis is, for messages: the URL without credentials, or the topology's nodes.
    location: String,
    metrics: Metrics,
    up: AtomicBool,
    detail: Mutex<String>,
    watchers: Mutex<HashMap<String, Watch>>,
    /// Coalesces record reads into pipelines.
    reads: Reads,
    leftovers: Mutex<Vec<Leftover>>,
    /// Per token key, the last record read that was corrupt, exactly as read: a write may
    /// replace it whatever generation it claims (see `CAS_SCRIPT`).
    corrupt_seen: Mutex<HashMap<String, Vec<u8>>>,
    cas: redis::Script,
    unlock: redis::Script,
    /// This instance's copy of the platform records (`store.local_path`).
    local: Option<EmbeddedStore>,
    /// Seals the secret fields of what is written, opens them on reads (the local copy's too).
    ring: Arc<Keyring>,
    /// Counts the transitions to "up" (the first connection included): each one starts a
    /// write-back of the local platform records.
    ups: tokio::sync::watch::Sender<u64>,
    /// Asks for a write-back: a save or load found Redis behind the local copy.
    writeback: Arc<tokio::sync::Notify>,
}

/// Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

/// A TLS handshake that failed on a certificate (an unknown issuer, a name that does not
/// match, a client certificate refused): the crate reports them as I/O errors carrying
/// rustls's message.
fn is_tls_error(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("certificate") || text.contains("tls") || text.contains("alert")
}

/// The part of a TLS error worth showing: rustls's own words (no secret is in them).
fn tls_reason(text: &str) -> &str {
    match text.find("invalid peer certificate") {
        Some(i) => &text[i..],
        None => text,
    }
}

/// Wrong or missing credentials, as the server words them (the crate's error kind is only in
/// its message by the time it gets here).
fn is_auth_error(text: &str) -> bool {
    text.contains("WRONGPASS")
        || text.contains("NOAUTH")
        || text.contains("invalid password")
        || text.contains("AuthenticationFailed")
        || text.contains("Authentication")
}

impl RedisStore {
    /// Connects to Redis and starts the health and change-notification loops on the current
    /// runtime. Wrong credentials are a startup error; an unreachable Redis is not (the
    /// instance starts degraded and connects when Redis appears).
    pub async fn open(settings: &RedisSettings, metrics: Metrics) -> anyhow::Result<RedisStore> {
        RedisStore::open_with_keys(settings, metrics, Arc::new(Keyring::plaintext())).await
    }

    /// [`RedisStore::open`] with the keys that seal what it writes (to Redis and to its local
    /// copy) and open what it reads.
    pub async fn open_with_keys(
        settings: &RedisSettings,
        metrics: Metrics,
        ring: Arc<Keyring>,
    ) -> anyhow::Result<RedisStore> {
        let location = settings.endpoint.location();
        let topology = Topology::open(settings)?;
        let local = match &settings.local_path {
            Some(path) => Some(
                EmbeddedStore::open_with_keys(path, metrics.clone(), ring.clone()).map_err(
                    |e| {
                        e.context(format!(
                            "store.local_path {}: each instance needs a local file of its own",
                            path.display()
                        ))
                    },
                )?,
            ),
            None => None,
        };
        let (reads, loader) = redis_batch::channel(COMMAND_TIMEOUT);
        let inner = Arc::new(Inner {
            reads,
            topology,
            conn: Mutex::new(None),
            prefix: settings.key_prefix.clone(),
            lock_ttl: settings.lock_ttl,
            instance: settings.instance.clone(),
            location: location.clone(),
            metrics,
            up: AtomicBool::new(false),
            detail: Mutex::new("not connected yet".into()),
            watchers: Mutex::new(HashMap::new()),
            leftovers: Mutex::new(Vec::new()),
            corrupt_seen: Mutex::new(HashMap::new()),
            cas: redis::Script::new(CAS_SCRIPT),
            unlock: redis::Script::new(UNLOCK_SCRIPT),
            local,
            ring,
            ups: tokio::sync::watch::channel(0).0,
            writeback: Arc::new(tokio::sync::Notify::new()),
        });
        // A connection may be "made" before the server said anything (TLS 1.3 refuses a
        // missing client certificate only after the handshake): the health check's first
        // command is part of the first contact.
        let first = async {
            let mut c = inner.connect().await.map_err(|e| e.to_string())?;
            inner.topology.check(&mut c).await.map_err(|(e, _)| e)
        };
        match tokio::time::timeout(COMMAND_TIMEOUT * 3, first)
            .await
            .unwrap_or_else(|_| Err("no answer in time".into()))
        {
            Ok(()) => inner.set_health(true, inner.topology.healthy_detail()),
            Err(e) if is_auth_error(&e) => {
                anyhow::bail!(
                    "store: Redis at {location} rejected the credentials; check the password ({})",
                    match settings.endpoint {
                        crate::config::RedisEndpoint::Url { .. } => "in store.url",
                        _ => "store.password_env, store.sentinel_password_env",
                    }
                )
            }
            Err(e) if is_tls_error(&e) => {
                // A certificate that does not check out will not start to: fail now rather
                // than serve for hours without the fleet's coordination.
                anyhow::bail!(
                    "store: TLS to Redis at {location} failed: {}; check store.tls_ca_file, \
                     store.tls_cert_file, the server's certificate and the host name connected to",
                    tls_reason(&e)
                )
            }
            Err(e) => {
                tracing::error!(redis = %location, error = %e,
                    "Redis unreachable at startup; serving without it until it is back");
                inner.set_health(false, format!("unreachable: {e}"));
            }
        }
        // Ends when the store is dropped (its `reads` with it).
        tokio::spawn(loader.run(read_fn(Arc::downgrade(&inner))));
        actix_web::rt::spawn(health_loop(Arc::downgrade(&inner)));
        actix_web::rt::spawn(change_loop(Arc::downgrade(&inner)));
        actix_web::rt::spawn(platform::writeback_loop(Arc::downgrade(&inner)));
        Ok(RedisStore { inner })
    }
}

impl Inner {
    /// `id` as it appears in key names. On a Cluster it is wrapped in braces, a hash tag, so
    /// that a credential's record, lock and budget hash to one slot (the key prefix cannot
    /// hold braces, so the tag is always the id). Other topologies keep the plain names that
    /// earlier versions use.
    fn key_id<'a>(&self, id: &'a str) -> std::borrow::Cow<'a, str> {
        if self.topology.is_cluster() {
            format!("{{{id}}}").into()
        } else {
            id.into()
        }
    }

    fn token_key(&self, key: &AppKey) -> String {
        format!("{}:token:{}", self.prefix, self.key_id(&key.appid))
    }

    fn lock_key(&self, key: &AppKey) -> String {
        format!("{}:lock:{}", self.prefix, self.key_id(&key.appid))
    }

    fn channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        let conn = self.topology.connect().await?;
        *self.conn.lock().expect("lock not poisoned") = Some(conn.clone());
        Ok(conn)
    }

    fn conn(&self) -> anyhow::Result<Conn> {
        self.conn
            .lock()
            .expect("lock not poisoned")
            .clone()
            .ok_or_else(|| anyhow::anyhow!("Redis at {} is not connected", self.location))
    }

    fn set_health(&self, up: bool, detail: String) {
        let was = self.up.swap(up, Ordering::SeqCst);
        self.metrics.set_redis_up(up);
        *self.detail.lock().expect("lock not poisoned") = detail;
        if was != up {
            if up {
                tracing::info!(redis = %self.location, "Redis is reachable");
                // Whatever changed while it was away (or if it restarted empty): every actor
                // re-reads its record and writes back what is missing.
                self.notify_all();
                self.ups.send_modify(|n| *n = n.wrapping_add(1));
            } else {
                tracing::error!(redis = %self.location, "Redis is unreachable; serving cached tokens");
            }
        }
    }

    /// Passes an announcement from the changes channel on to the watchers of its appid.
    fn announced(&self, payload: &str) {
        let parsed = parse_announcement(payload);
        let watchers = self.watchers.lock().expect("lock not poisoned");
        if let Some((appid, generation)) = parsed {
            match watchers.get(appid) {
                Some(w) if generation <= w.written => {}
                Some(w) => w.notify.iter().for_each(|n| n(Some(generation))),
                None => {}
            }
        }
        // A bare appid, from an instance of an earlier version. An appid may itself contain
        // ':', so a payload that is a watched appid as a whole is one even if it also parsed.
        if let Some(w) = watchers.get(payload) {
            w.notify.iter().for_each(|n| n(None));
        }
    }

    fn notify_all(&self) {
        let watchers = self.watchers.lock().expect("lock not poisoned");
        for n in watchers.values().flat_map(|w| &w.notify) {
            n(None);
        }
    }

    /// One page of `HSCAN key cursor COUNT 1000`: the next cursor (`"0"` at the end) and the
    /// fields and values, flat. A page may repeat an entry; callers keep the last.
    async fn hscan_page(
        &self,
        what: &str,
        key: &str,
        cursor: &str,
    ) -> anyhow::Result<(String, Vec<Vec<u8>>)> {
        /// Entries asked for per page: 100,000 authorizers load in about 100 round trips,
        /// and no page holds Redis up.
        const SCAN_COUNT: usize = 1000;
        let (k, c) = (key.to_string(), cursor.to_string());
        self.run(what, |mut conn| async move {
            redis::cmd("HSCAN")
                .arg(&k)
                .arg(&c)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
        })
        .await
    }

    async fn run<T, F, Fut>(&self, what: &str, op: F) -> anyhow::Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn()?;
        match tokio::time::timeout(COMMAND_TIMEOUT, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(anyhow::anyhow!("Redis {what} failed: {e}")),
            Err(_) => Err(anyhow::anyhow!("Redis {what} timed out")),
        }
    }

    /// `lazy`: a periodic poll, which may wait a little longer to share a round trip.
    async fn load(&self, key: &AppKey, lazy: bool) -> anyhow::Result<Option<Stored>> {
        let k = self.token_key(key);
        let raw = self.reads.read(k.clone(), lazy).await?;
        // Every read of a record (start-up, change notifications and polls, the re-read under
        // the lock, the one after a fenced write) comes through here.
        let decoded = raw
            .as_ref()
            .and_then(|bytes| decode_or_discard(&self.ring, key, bytes, &self.metrics, "redis"));
        let mut seen = self.corrupt_seen.lock().expect("lock not poisoned");
        match raw {
            Some(bytes) if decoded.is_none() => {
                seen.insert(k, bytes);
            }
            _ => {
                seen.remove(&k);
            }
        }
        Ok(decoded)
    }

    /// Every key's record, read by pipelines of [`LOAD_BATCH`] HGETs: one round trip per batch
    /// instead of one per credential, so 10,000 apps start from Redis in a handful of them.
    async fn load_many(&self, keys: &[AppKey]) -> anyhow::Result<Vec<Option<Stored>>> {
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(LOAD_BATCH) {
            let names: Vec<String> = batch.iter().map(|k| self.token_key(k)).collect();
            let read = names.clone();
            let cluster = self.topology.is_cluster();
            let raws: Vec<Option<Vec<u8>>> = self
                .run("batch read", |c| read_records(c, read, cluster))
                .await?;
            let mut seen = self.corrupt_seen.lock().expect("lock not poisoned");
            for ((key, name), raw) in batch.iter().zip(names).zip(raws) {
                let decoded = raw.as_ref().and_then(|bytes| {
                    decode_or_discard(&self.ring, key, bytes, &self.metrics, "redis")
                });
                match raw {
                    Some(bytes) if decoded.is_none() => {
                        seen.insert(name, bytes);
                    }
                    _ => {
                        seen.remove(&name);
                    }
                }
                out.push(decoded);
            }
        }
        Ok(out)
    }

    async fn save(&self, key: &AppKey, stored: &Stored) -> anyhow::Result<bool> {
        let k = self.token_key(key);
        let generation = stored.record.generation;
        let body = encode(&self.ring, stored);
        let channel = self.channel();
        let appid = key.appid.clone();
        if let Some(w) = self
            .watchers
            .lock()
            .expect("lock not poisoned")
            .get_mut(&key.appid)
        {
            // Before the write: its announcement may come back before its answer.
            w.written = w.written.max(generation);
        }
        let corrupt = self
            .corrupt_seen
            .lock()
            .expect("lock not poisoned")
            .get(&k)
            .cloned()
            .unwrap_or_default();
        let cas = &self.cas;
        let written: i64 = self
            .run("write", |mut c| async move {
                cas.key(&k)
                    .arg(generation)
                    .arg(body)
                    .arg(channel)
                    .arg(appid)
                    .arg(super::MAX_GENERATION)
                    .arg(corrupt)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(written == 1)
    }

    async fn try_lock(&self, key: &AppKey, owner: &str) -> anyhow::Result<bool> {
        let k = self.lock_key(key);
        let ttl = u64::try_from(self.lock_ttl.as_millis()).unwrap_or(u64::MAX);
        let k2 = k.clone();
        let reply: anyhow::Result<Option<String>> = self
            .run("lock", |mut c| async move {
                redis::cmd("SET")
                    .arg(&k2)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut c)
                    .await
            })
            .await;
        match reply {
            Ok(r) => Ok(r.is_some()),
            Err(e) => {
                // The SET may still be carried out (Redis stalled, not gone).
                self.remember_leftover(k, owner);
                Err(e)
            }
        }
    }

    async fn unlock(&self, key: &AppKey, owner: &str) {
        let k = self.lock_key(key);
        if let Err(e) = self.delete_lock(&k, owner).await {
            // Released as soon as Redis answers again (or it expires by itself).
            self.remember_leftover(k, owner);
            tracing::debug!(app = %key.name, error = %format!("{e:#}"), "could not release the refresh lock");
        }
    }

    /// Deletes `lock_key` if it still holds `owner`: whether it did.
    async fn delete_lock(&self, lock_key: &str, owner: &str) -> anyhow::Result<bool> {
        let unlock = &self.unlock;
        let deleted: i64 = self
            .run("unlock", |mut c| async move {
                unlock.key(lock_key).arg(owner).invoke_async(&mut c).await
            })
            .await?;
        Ok(deleted == 1)
    }

    fn remember_leftover(&self, lock_key: String, owner: &str) {
        let mut leftovers = self.leftovers.lock().expect("lock not poisoned");
        if leftovers.len() >= MAX_LEFTOVERS {
            leftovers.remove(0);
        }
        leftovers.push(Leftover {
            lock_key,
            owner: owner.to_string(),
            until: Instant::now() + self.lock_ttl + COMMAND_TIMEOUT,
        });
    }

    /// Deletes the locks this instance left behind (see the module documentation). Those not
    /// confirmed gone are kept until their TTL has run out: the stalled `SET` may only now be
    /// carried out.
    async fn release_leftovers(&self) {
        let now = Instant::now();
        let todo: Vec<(String, String)> = {
            let mut leftovers = self.leftovers.lock().expect("lock not poisoned");
            leftovers.retain(|l| l.until > now);
            leftovers
                .iter()
                .map(|l| (l.lock_key.clone(), l.owner.clone()))
                .collect()
        };
        for (lock_key, owner) in todo {
            match self.delete_lock(&lock_key, &owner).await {
                Ok(true) => {
                    tracing::info!(lock = %lock_key,
                        "released a refresh lock left over from a Redis stall");
                    self.leftovers
                        .lock()
                        .expect("lock not poisoned")
                        .retain(|l| l.owner != owner);
                }
                Ok(false) => {}
                // Still stalled: the next attempt or health check tries again.
                Err(_) => return,
            }
        }
    }

    /// The coordinated refresh; see the module documentation.
    async fn refresh(
        self: Arc<Self>,
        key: AppKey,
        basis: Basis,
        fetch: FetchFn,
    ) -> Result<Refreshed, RefreshError> {
        // Random per attempt: a value remembered as left over is never one a refresh holds.
        let owner = format!("{}-{:016x}", self.instance, rand::random::<u64>());
        self.release_leftovers().await;
        // Another refresher holds the lock at most lock_ttl; wait that long for its result.
        let deadline = Instant::now() + self.lock_ttl + Duration::from_secs(1);
        loop {
            match self.try_lock(&key, &owner).await {
                Ok(true) => break,
                Ok(false) => {
                    if let Ok(Some(r)) = self.load(&key, false).await {
                        if basis.superseded_by(&r) && r.record.is_valid_at(SystemTime::now()) {
                            return Ok(Refreshed::Adopted(r));
                        }
                    }
                    // The holder may be a stalled attempt of this very instance, whose SET
                    // Redis carried out late: release it rather than wait out its TTL.
                    self.release_leftovers().await;
                    if Instant::now() > deadline {
                        return Err(RefreshError::Store(
                            "another instance holds the refresh lock and has not refreshed".into(),
                        ));
                    }
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(e) => return self.refresh_alone(key, basis, fetch, e).await,
            }
        }

        let result = self.refresh_locked(&key, &basis, fetch).await;
        self.unlock(&key, &owner).await;
        result
    }

    async fn refresh_locked(
        &self,
        key: &AppKey,
        basis: &Basis,
        fetch: FetchFn,
    ) -> Result<Refreshed, RefreshError> {
        // Re-check under the lock: the token may have been refreshed while we waited for it.
        let current = self
            .load(key, false)
            .await
            .map_err(|e| RefreshError::Store(format!("{e:#}")))?;
        if let Some(r) = &current {
            if basis.superseded_by(r) && r.record.is_valid_at(SystemTime::now()) {
                return Ok(Refreshed::Adopted(r.clone()));
            }
        }
        let base_generation = current
            .as_ref()
            .map_or(0, |r| r.record.generation)
            .max(basis.generation);
        let quota = current.as_ref().map_or(basis.quota, |r| r.quota);
        self.within_budgets(key, basis).await?;
        let fetched = fetch().await;
        // WeChat counts every call it answered, a token or an errcode: so does the fleet.
        let answered = match &fetched {
            Ok(_) => true,
            Err(e) => e.errcode().is_some(),
        };
        let fleet_calls = if answered {
            match self.count_call(key, SystemTime::now()).await {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::debug!(app = %key.name, error = %format!("{e:#}"),
                        "the call was not counted in the fleet's budget");
                    None
                }
            }
        } else {
            None
        };
        let mut stored = stored_from_fetch(
            key,
            fetched?,
            base_generation.saturating_add(1),
            quota,
            Some(self.instance.clone()),
        );
        if let Some(q) = fleet_calls {
            stored.quota = q;
        }
        match self.save(key, &stored).await {
            Ok(true) => Ok(Refreshed::Fetched {
                stored,
                store_error: None,
            }),
            Ok(false) => {
                // Fenced: our lock expired during a slow fetch and another instance wrote a
                // newer generation. Theirs stays; ours is dropped.
                tracing::warn!(app = %key.name, generation = stored.record.generation,
                    "a newer token was stored while this fetch was slow; adopting it and dropping ours");
                match self.load(key, false).await {
                    Ok(Some(r)) if r.record.is_valid_at(SystemTime::now()) => {
                        Ok(Refreshed::Adopted(r))
                    }
                    _ => Ok(Refreshed::Fetched {
                        stored,
                        store_error: Some("fenced by a newer record that could not be read".into()),
                    }),
                }
            }
            Err(e) => Ok(Refreshed::Fetched {
                stored,
                store_error: Some(format!("{e:#}")),
            }),
        }
    }

    /// The fleet's budgets, checked under the lock before a fetch: a forced refresh is spent
    /// from the fleet's 20 a day (30 s apart), and no call is made past the day's quota while
    /// the token in service is still valid. Once it has expired the call is made anyway: only
    /// WeChat knows whether its count was reset (`clear_quota`), and it refuses if not.
    async fn within_budgets(&self, key: &AppKey, basis: &Basis) -> Result<(), RefreshError> {
        let now = SystemTime::now();
        let store_error = |e: anyhow::Error| RefreshError::Store(format!("{e:#}"));
        if let Some(limit) = basis.daily_quota {
            let calls = self.calls_on(key, now).await.map_err(store_error)?;
            if calls.used >= limit && basis.holds_valid_token() {
                return Err(RefreshError::Budget {
                    budget: Budget::DailyQuota,
                    message: format!(
                        "the fleet made {} of its {limit} token calls today; the token in service stays until it expires",
                        calls.used
                    ),
                    quota: Some(calls),
                });
            }
        }
        if basis.force && !self.spend_force(key, now).await.map_err(store_error)? {
            return Err(RefreshError::Budget {
                budget: Budget::ForcedRefresh,
                message: "WeChat's limits on forced refreshes (20 a day, 30 s apart) are used up for the fleet".into(),
                quota: None,
            });
        }
        Ok(())
    }

    /// Redis is unreachable. Fetching now would invalidate the token the rest of the fleet
    /// serves, so it is allowed only once that token has expired anyway.
    async fn refresh_alone(
        &self,
        key: AppKey,
        basis: Basis,
        fetch: FetchFn,
        error: anyhow::Error,
    ) -> Result<Refreshed, RefreshError> {
        if basis.holds_valid_token() && !basis.unshared {
            return Err(RefreshError::Store(format!("{error:#}")));
        }
        tracing::warn!(app = %key.name, error = %format!("{error:#}"),
            "Redis unreachable and no valid token: fetching alone");
        let stored = basis.into_record(&key, fetch().await?, Some(self.instance.clone()));
        Ok(Refreshed::Fetched {
            stored,
            store_error: Some(format!("{error:#}")),
        })
    }
}

/// `appid:generation` as the CAS script announces it; `None` for anything else (a bare appid
/// from an earlier version, or a generation out of range).
fn parse_announcement(payload: &str) -> Option<(&str, u64)> {
    let (appid, generation) = payload.rsplit_once(':')?;
    let generation = generation
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| generation.parse::<u64>().ok())??;
    (generation <= super::MAX_GENERATION).then_some((appid, generation))
}

/// Pings Redis every second, reconnecting when needed, and reports its health.
async fn health_loop(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(HEALTH_INTERVAL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let conn = inner.conn.lock().expect("lock not poisoned").clone();
        let result = match conn {
            Some(mut c) => {
                match tokio::time::timeout(COMMAND_TIMEOUT, inner.topology.check(&mut c)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err((e, follow))) => {
                        if follow {
                            // Sentinel: the next round asks the Sentinels where the master is.
                            *inner.conn.lock().expect("lock not poisoned") = None;
                            inner.topology.forget_master();
                        }
                        Err(e)
                    }
                    Err(_) => {
                        if inner.topology.follows_master() {
                            *inner.conn.lock().expect("lock not poisoned") = None;
                            inner.topology.forget_master();
                        }
                        Err("health check timed out".to_string())
                    }
                }
            }
            None => match tokio::time::timeout(COMMAND_TIMEOUT * 2, inner.connect()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connect timed out".into()),
            },
        };
        match result {
            Ok(_) => {
                inner.set_health(true, inner.topology.healthy_detail());
                inner.release_leftovers().await;
            }
            Err(e) => inner.set_health(false, format!("unreachable: {e}")),
        }
    }
}

/// Listens on the changes channel and tells the actor of each written appid (with the
/// generation written). Reconnects on failure; after a reconnect every actor re-reads, since
/// messages may have been missed.
async fn change_loop(inner: Weak<Inner>) {
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(HEALTH_INTERVAL).await;
        }
        first = false;
        let Some(i) = inner.upgrade() else {
            return;
        };
        let channel = i.channel();
        let pubsub = tokio::time::timeout(COMMAND_TIMEOUT * 2, async {
            let mut ps = i.topology.pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        })
        .await;
        let Ok(Ok(pubsub)) = pubsub else {
            i.topology.forget_master();
            continue;
        };
        drop(i);
        if let Some(i) = inner.upgrade() {
            i.notify_all();
        }
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Some(i) = inner.upgrade() else {
                return;
            };
            if let Ok(payload) = msg.get_payload::<String>() {
                i.announced(&payload);
            }
        }
    }
}

/// The `record` field of each key, in order: one pipeline of `HGET`s, or on a Cluster (where
/// a pipeline must stay within one slot) as many concurrent `HGET`s, which the multiplexed
/// connection still sends together to each node.
async fn read_records(
    mut c: Conn,
    keys: Vec<String>,
    cluster: bool,
) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
    if cluster {
        let reads = keys.iter().map(|k| {
            let mut c = c.clone();
            async move {
                redis::cmd("HGET")
                    .arg(k)
                    .arg("record")
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            }
        });
        return futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect();
    }
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("HGET").arg(k).arg("record");
    }
    pipe.query_async(&mut c).await
}

/// The loader's read: `HGET key record` for each key, under the command timeout.
fn read_fn(inner: Weak<Inner>) -> ReadFn {
    Arc::new(move |keys: Vec<String>| {
        let inner = inner.clone();
        async move {
            let Some(inner) = inner.upgrade() else {
                return Err("Redis read failed: the store is closed".to_string());
            };
            let cluster = inner.topology.is_cluster();
            inner
                .run("read", |c| read_records(c, keys, cluster))
                .await
                .map_err(|e| format!("{e:#}"))
        }
        .boxed()
    })
}

impl RedisStore {
    /// The reads made so far (pipelines and keys), for tests and benchmarks.
    pub fn read_stats(&self) -> ReadStats {
        self.inner.reads.stats()
    }
}

impl TokenStore for RedisStore {
    fn load(&self, key: &AppKey) -> BoxFuture<'static, anyhow::Result<Option<Stored>>> {
        let inner = self.inner.clone();
        let key = key.clone();
        async move { inner.load(&key, false).await }.boxed()
    }

    fn load_lazy(&self, key: &AppKey) -> BoxFuture<'static, anyhow::Result<Option<Stored>>> {
        let inner = self.inner.clone();
        let key = key.clone();
        async move { inner.load(&key, true).await }.boxed()
    }

    fn load_many(
        &self,
        keys: Vec<AppKey>,
    ) -> BoxFuture<'static, anyhow::Result<Vec<Option<Stored>>>> {
        let inner = self.inner.clone();
        async move { inner.load_many(&keys).await }.boxed()
    }

    fn save(&self, key: &AppKey, stored: &Stored) -> BoxFuture<'static, anyhow::Result<bool>> {
        let inner = self.inner.clone();
        let key = key.clone();
        let stored = stored.clone();
        async move { inner.save(&key, &stored).await }.boxed()
    }

    fn refresh(self: Arc<Self>, key: AppKey, basis: Basis, fetch: FetchFn) -> RefreshFuture {
        self.inner.clone().refresh(key, basis, fetch).boxed_local()
    }

    fn shared(&self) -> bool {
        true
    }

    fn subscribe(&self, key: &AppKey, notify: Box<Notify>) {
        self.inner
            .watchers
            .lock()
            .expect("lock not poisoned")
            .entry(key.appid.clone())
            .or_default()
            .notify
            .push(Arc::from(notify));
    }

    fn health(&self) -> Option<StoreHealth> {
        Some(StoreHealth {
            kind: "redis",
            up: self.inner.up.load(Ordering::SeqCst),
            detail: self.inner.detail.lock().expect("lock not poisoned").clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_announcement;

    #[test]
    fn announcements_carry_the_generation_and_bare_appids_still_parse() {
        assert_eq!(parse_announcement("wx1:7"), Some(("wx1", 7)));
        // Tickets and WeCom ids have other separators; an appid may even contain ':'.
        assert_eq!(
            parse_announcement("wx1/ticket/jsapi:12"),
            Some(("wx1/ticket/jsapi", 12))
        );
        assert_eq!(parse_announcement("odd:id:3"), Some(("odd:id", 3)));
        // From earlier versions, or not a generation: the whole payload is an appid.
        for bare in [
            "wx1",
            "wx1:",
            "wx1:+3",
            "wx1:x",
            "wx1:-1",
            "wx1:281474976710657",
        ] {
            assert_eq!(parse_announcement(bare), None, "{bare}");
        }
    }
}
