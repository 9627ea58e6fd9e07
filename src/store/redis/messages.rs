//! The Redis store's message records, shared by the fleet. Every key carries the hash tag
//! `{msg}` (`{prefix}:{msg}:...`), so on a Cluster they all live in one slot and each script
//! below may touch several of them atomically:
//! - `{prefix}:{msg}:pushes`: a hash, push id -> the push (content sealed);
//! - `{prefix}:{msg}:deliveries`: a hash, delivery id -> the delivery (JSON, no content);
//! - `{prefix}:{msg}:left`: a hash, push id -> deliveries not yet made (the push goes with
//!   the last);
//! - `{prefix}:{msg}:due:{route}`: a sorted set of the route's pending deliveries by the time
//!   their next attempt is due;
//! - `{prefix}:{msg}:pending:{route}` and `...:dead:{route}`: sorted sets by receipt time, for
//!   listings and the backlog gauges;
//! - `{prefix}:{msg}:seen:{dedupe key}`: the dedupe entry, `SET NX PX` (expires by itself);
//! - `{prefix}:{msg}:purge`: a sorted set of the dead deliveries by the time they may be
//!   forgotten;
//! - `{prefix}:{msg}:unmatched`: a list of the fleet's last 100 unmatched pushes, newest first
//!   (no content).
//!
//! A take is one script: the dedupe entry is set only together with the push and its
//! deliveries, so a failed take leaves nothing and WeChat's retry is taken as new. A claim is
//! one script too: the due deliveries get the score now + lease, so no other instance claims
//! them until the lease ends; an instance that dies mid-attempt leaves its claims to become due
//! again then. The price of one slot is that the message keys of a Cluster are served by one
//! node: a push is a few kilobytes, and a fleet takes WeChat's pushes, not a firehose.

use std::sync::LazyLock;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;

use super::RedisStore;
use crate::store::messages::{
    decode_delivery, decode_push, encode_delivery, encode_push, ClaimQuery, Claimed,
    DeliveryRecord, DeliveryState, Finish, ListQuery, MessageStore, NewPush, Page, RouteStats,
    Taking, UnmatchedRecord, MAX_PAGE, UNMATCHED_KEPT,
};
use crate::time::UnixMillis;

/// KEYS: seen, pushes, deliveries, left, unmatched, then due and pending of each delivery's
/// route. ARGV: ttl ms, push id, push bytes, n, then per delivery: id, JSON, next_at,
/// received_at; with n = 0, the unmatched note and how many notes are kept.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local n = tonumber(ARGV[4])
if n > 0 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('HSET', KEYS[4], ARGV[2], n)
  for i = 0, n - 1 do
    local a = 5 + i * 4
    redis.call('HSET', KEYS[3], ARGV[a], ARGV[a + 1])
    redis.call('ZADD', KEYS[6 + i * 2], ARGV[a + 2], ARGV[a])
    redis.call('ZADD', KEYS[7 + i * 2], ARGV[a + 3], ARGV[a])
  end
else
  redis.call('LPUSH', KEYS[5], ARGV[5])
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[6]) - 1)
end
return 1
"#,
    )
});

/// KEYS: due, deliveries, pushes. ARGV: now, lease end, limit. Answers id, delivery, push
/// (empty when gone) for each claimed delivery.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local d = redis.call('HGET', KEYS[2], id)
  if d then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    local p = redis.call('HGET', KEYS[3], string.match(id, '^[^.]+'))
    table.insert(out, id)
    table.insert(out, d)
    table.insert(out, p or '')
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"#,
    )
});

/// Forgets a delivery for good, its push with the last one. KEYS: deliveries, pushes, left,
/// due, pending, dead, purge. ARGV: delivery id, push id.
const FORGET: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
if redis.call('HINCRBY', KEYS[3], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[3], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
"#;

/// A delivery made, or discarded by an admin: [`FORGET`].
static FORGOTTEN: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(FORGET));

/// A dead delivery past its purge time: [`FORGET`], with ARGV[3] = now, only while it is still
/// in the purge set with a time not after now (an admin's retry takes it out).
static PURGE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r#"
local at = redis.call('ZSCORE', KEYS[7], ARGV[1])
if not at or tonumber(at) > tonumber(ARGV[3]) then
  redis.call('ZREM', KEYS[7], ARGV[1])
  return 0
end
{FORGET}"#
    ))
});

/// KEYS: deliveries, due, pending, dead, purge. ARGV: id, JSON, state, next_at, received_at,
/// purge_at (empty for none). Only a delivery still stored is rewritten (one made meanwhile
/// stays made).
static UPDATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == 'dead' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
  if ARGV[6] ~= '' then redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1]) end
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
end
return 1
"#,
    )
});

/// The message keys of one store.
struct Keys {
    base: String,
}

impl Keys {
    fn of(store: &RedisStore) -> Keys {
        Keys {
            base: format!("{}:{{msg}}", store.inner.prefix),
        }
    }
    fn pushes(&self) -> String {
        format!("{}:pushes", self.base)
    }
    fn deliveries(&self) -> String {
        format!("{}:deliveries", self.base)
    }
    fn left(&self) -> String {
        format!("{}:left", self.base)
    }
    fn due(&self, route: &str) -> String {
        format!("{}:due:{route}", self.base)
    }
    fn pending(&self, route: &str) -> String {
        format!("{}:pending:{route}", self.base)
    }
    fn dead(&self, route: &str) -> String {
        format!("{}:dead:{route}", self.base)
    }
    fn in_state(&self, state: DeliveryState, route: &str) -> String {
        match state {
            DeliveryState::Pending => self.pending(route),
            DeliveryState::Dead => self.dead(route),
        }
    }
    fn seen(&self, dedupe_key: &str) -> String {
        format!("{}:seen:{dedupe_key}", self.base)
    }
    fn purge(&self) -> String {
        format!("{}:purge", self.base)
    }
    fn unmatched(&self) -> String {
        format!("{}:unmatched", self.base)
    }
    /// The keys [`FORGET`] touches for a delivery of `route`.
    fn forget(&self, route: &str) -> [String; 7] {
        [
            self.deliveries(),
            self.pushes(),
            self.left(),
            self.due(route),
            self.pending(route),
            self.dead(route),
            self.purge(),
        ]
    }
}

impl RedisStore {
    async fn update(&self, record: &DeliveryRecord) -> anyhow::Result<()> {
        let k = Keys::of(self);
        let r = &record.route;
        let (keys, json) = (
            [k.deliveries(), k.due(r), k.pending(r), k.dead(r), k.purge()],
            encode_delivery(record),
        );
        let (state, next, received) = (
            record.state.as_str(),
            record.next_at.as_millis(),
            record.received_at.as_millis(),
        );
        let purge_at = record
            .purge_at
            .map(|at| at.as_millis().to_string())
            .unwrap_or_default();
        let id = record.id.clone();
        let _: i64 = self
            .inner
            .run("delivery update", |mut c| async move {
                let mut inv = UPDATE.prepare_invoke();
                for key in &keys {
                    inv.key(key);
                }
                inv.arg(&id)
                    .arg(json)
                    .arg(state)
                    .arg(next)
                    .arg(received)
                    .arg(&purge_at)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Forgets the delivery `id` with [`FORGET`]: whether it was there.
    async fn forget(&self, id: &str) -> anyhow::Result<bool> {
        let Some((push, route)) = crate::store::messages::parse_delivery_id(id) else {
            anyhow::bail!("not a delivery id");
        };
        let keys = Keys::of(self).forget(route);
        let (id, push) = (id.to_string(), push.to_string());
        let forgotten: i64 = self
            .inner
            .run("forget delivery", |mut c| async move {
                let mut inv = FORGOTTEN.prepare_invoke();
                for key in &keys {
                    inv.key(key);
                }
                inv.arg(&id).arg(&push).invoke_async(&mut c).await
            })
            .await?;
        Ok(forgotten == 1)
    }

    async fn stored_delivery(&self, id: &str) -> anyhow::Result<Option<DeliveryRecord>> {
        let key = Keys::of(self).deliveries();
        let id = id.to_string();
        let bytes: Option<Vec<u8>> = self
            .inner
            .run("delivery read", |mut c| async move {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(&id)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        bytes.map(|b| decode_delivery(&b)).transpose()
    }
}

impl MessageStore for RedisStore {
    fn take(&self, push: NewPush) -> BoxFuture<'static, anyhow::Result<bool>> {
        let this = self.clone();
        async move {
            let k = Keys::of(&this);
            let now = UnixMillis::now().as_millis();
            let ttl = push.dedupe_until.as_millis().saturating_sub(now).max(1000);
            let mut keys = vec![
                k.seen(&push.dedupe_key),
                k.pushes(),
                k.deliveries(),
                k.left(),
                k.unmatched(),
            ];
            let mut args: Vec<Vec<u8>> = vec![ttl.to_string().into_bytes()];
            match &push.push {
                Taking::Routed(p, deliveries) => {
                    args.push(p.id.clone().into_bytes());
                    args.push(encode_push(&this.inner.ring, p));
                    args.push(deliveries.len().to_string().into_bytes());
                    for d in deliveries {
                        keys.push(k.due(&d.route));
                        keys.push(k.pending(&d.route));
                        args.push(d.id.clone().into_bytes());
                        args.push(encode_delivery(d));
                        args.push(d.next_at.as_millis().to_string().into_bytes());
                        args.push(d.received_at.as_millis().to_string().into_bytes());
                    }
                }
                Taking::Unmatched(note) => {
                    args.extend([Vec::new(), Vec::new(), b"0".to_vec()]);
                    args.push(serde_json::to_vec(note)?);
                    args.push(UNMATCHED_KEPT.to_string().into_bytes());
                }
            }
            let taken: i64 = this
                .inner
                .run("take", |mut c| async move {
                    let mut inv = TAKE.prepare_invoke();
                    for key in &keys {
                        inv.key(key);
                    }
                    for a in &args {
                        inv.arg(a.as_slice());
                    }
                    inv.invoke_async(&mut c).await
                })
                .await?;
            Ok(taken == 1)
        }
        .boxed()
    }

    fn claim(&self, q: ClaimQuery) -> BoxFuture<'static, anyhow::Result<Vec<Claimed>>> {
        let this = self.clone();
        let ClaimQuery {
            route,
            now,
            lease,
            limit,
        } = q;
        async move {
            let k = Keys::of(&this);
            let keys = [k.due(&route), k.deliveries(), k.pushes()];
            let until = now.saturating_add(lease).as_millis();
            let limit = limit.min(MAX_PAGE);
            let flat: Vec<Vec<u8>> = this
                .inner
                .run("claim", |mut c| async move {
                    CLAIM
                        .key(&keys[0])
                        .key(&keys[1])
                        .key(&keys[2])
                        .arg(now.as_millis())
                        .arg(until)
                        .arg(limit)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            let mut out = Vec::new();
            for triple in flat.chunks(3) {
                let [id, d, p] = triple else { continue };
                let id = String::from_utf8_lossy(id);
                let delivery = match decode_delivery(d) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(delivery = %id, error = %e, "a stored delivery does not decode; skipped");
                        continue;
                    }
                };
                if p.is_empty() {
                    tracing::warn!(delivery = %id, "a pending delivery has no stored push; skipped");
                    continue;
                }
                match decode_push(&this.inner.ring, p) {
                    Ok(push) => out.push(Claimed { delivery, push }),
                    Err(e) => {
                        tracing::warn!(delivery = %id, error = %format!("{e:#}"),
                            "a stored push does not open; its delivery is skipped");
                    }
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn finish(&self, finish: Finish) -> BoxFuture<'static, anyhow::Result<()>> {
        let this = self.clone();
        async move {
            match finish {
                Finish::Delivered { id } => {
                    this.forget(&id).await?;
                    Ok(())
                }
                Finish::Failed { record } => this.update(&record).await,
            }
        }
        .boxed()
    }

    fn list(&self, q: ListQuery) -> BoxFuture<'static, anyhow::Result<Page>> {
        let this = self.clone();
        let ListQuery {
            state,
            routes,
            offset,
            limit,
        } = q;
        async move {
            let k = Keys::of(&this);
            let limit = limit.min(MAX_PAGE);
            let mut skip = offset;
            let mut ids: Vec<String> = Vec::new();
            let mut more = false;
            for r in &routes {
                let key = k.in_state(state, r);
                let n: usize = {
                    let key = key.clone();
                    this.inner
                        .run("list", |mut c| async move {
                            redis::cmd("ZCARD").arg(&key).query_async(&mut c).await
                        })
                        .await?
                };
                if skip >= n {
                    skip -= n;
                    continue;
                }
                let want = limit + 1 - ids.len();
                let (from, to) = (skip, skip + want - 1);
                skip = 0;
                let page: Vec<String> = this
                    .inner
                    .run("list", |mut c| async move {
                        redis::cmd("ZRANGE")
                            .arg(&key)
                            .arg(from)
                            .arg(to)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                ids.extend(page);
                if ids.len() > limit {
                    more = true;
                    ids.truncate(limit);
                    break;
                }
            }
            let mut deliveries = Vec::with_capacity(ids.len());
            if !ids.is_empty() {
                let key = k.deliveries();
                let ids2 = ids.clone();
                let raw: Vec<Option<Vec<u8>>> = this
                    .inner
                    .run("list", |mut c| async move {
                        redis::cmd("HMGET")
                            .arg(&key)
                            .arg(&ids2)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                for bytes in raw.into_iter().flatten() {
                    deliveries.push(decode_delivery(&bytes)?);
                }
            }
            Ok(Page {
                deliveries,
                next_offset: more.then_some(offset.saturating_add(limit)),
            })
        }
        .boxed()
    }

    fn retry(
        &self,
        id: &str,
        now: UnixMillis,
    ) -> BoxFuture<'static, anyhow::Result<Option<DeliveryRecord>>> {
        let this = self.clone();
        let id = id.to_string();
        async move {
            let Some(d) = this.stored_delivery(&id).await? else {
                return Ok(None);
            };
            let again = d.retried_at(now);
            this.update(&again).await?;
            Ok(Some(again))
        }
        .boxed()
    }

    fn discard(&self, id: &str) -> BoxFuture<'static, anyhow::Result<Option<DeliveryRecord>>> {
        let this = self.clone();
        let id = id.to_string();
        async move {
            let Some(d) = this.stored_delivery(&id).await? else {
                return Ok(None);
            };
            // Made or discarded meanwhile: nothing was forgotten here.
            Ok(this.forget(&id).await?.then_some(d))
        }
        .boxed()
    }

    fn stats(&self, routes: &[String]) -> BoxFuture<'static, anyhow::Result<Vec<RouteStats>>> {
        let this = self.clone();
        let routes = routes.to_vec();
        async move {
            let k = Keys::of(&this);
            let mut out = Vec::with_capacity(routes.len());
            for r in routes {
                let (pending, dead) = (k.pending(&r), k.dead(&r));
                let (n, oldest, d): (u64, Vec<(String, u64)>, u64) = this
                    .inner
                    .run("stats", |mut c| async move {
                        redis::pipe()
                            .cmd("ZCARD")
                            .arg(&pending)
                            .cmd("ZRANGE")
                            .arg(&pending)
                            .arg(0)
                            .arg(0)
                            .arg("WITHSCORES")
                            .cmd("ZCARD")
                            .arg(&dead)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                out.push(RouteStats {
                    route: r,
                    pending: n,
                    oldest: oldest.first().and_then(|(_, ms)| UnixMillis::new(*ms)),
                    dead: d,
                });
            }
            Ok(out)
        }
        .boxed()
    }

    fn unmatched(&self) -> BoxFuture<'static, anyhow::Result<Vec<UnmatchedRecord>>> {
        let this = self.clone();
        async move {
            let key = Keys::of(&this).unmatched();
            let notes: Vec<Vec<u8>> = this
                .inner
                .run("unmatched", |mut c| async move {
                    redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(UNMATCHED_KEPT - 1)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            Ok(notes
                .iter()
                .filter_map(|n| serde_json::from_slice(n).ok())
                .collect())
        }
        .boxed()
    }

    fn sweep(&self, _now: UnixMillis) -> BoxFuture<'static, anyhow::Result<u64>> {
        // Dedupe entries expire by themselves (`PX`).
        async { Ok(0) }.boxed()
    }

    fn purge(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> BoxFuture<'static, anyhow::Result<Vec<String>>> {
        let this = self.clone();
        async move {
            let k = Keys::of(&this);
            let key = k.purge();
            let due: Vec<String> = this
                .inner
                .run("purge", |mut c| async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(&key)
                        .arg("-inf")
                        .arg(now.as_millis())
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let mut purged = Vec::with_capacity(due.len());
            for id in due {
                let Some((push, route)) = crate::store::messages::parse_delivery_id(&id) else {
                    // Not written by this store: dropped from the set, nothing else touched.
                    let (key, id) = (k.purge(), id.clone());
                    let _: i64 = this
                        .inner
                        .run("purge", |mut c| async move {
                            redis::cmd("ZREM")
                                .arg(&key)
                                .arg(&id)
                                .query_async(&mut c)
                                .await
                        })
                        .await?;
                    continue;
                };
                let (keys, push) = (k.forget(route), push.to_string());
                let ran = {
                    let id = id.clone();
                    this.inner.run("purge", |mut c| async move {
                        let mut inv = PURGE.prepare_invoke();
                        for key in &keys {
                            inv.key(key);
                        }
                        inv.arg(&id)
                            .arg(&push)
                            .arg(now.as_millis())
                            .invoke_async(&mut c)
                            .await
                    })
                };
                let forgotten: i64 = ran.await?;
                if forgotten == 1 {
                    purged.push(id);
                }
            }
            Ok(purged)
        }
        .boxed()
    }
}
