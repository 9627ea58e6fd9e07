//! Fleet-wide budgets in Redis: WeChat's daily count of token calls, and the stable_token
//! forced-refresh budget (20 a Beijing day, 30 s apart). Each instance alone would count only
//! its own calls, so three instances could together make three times what WeChat allows.
//!
//! Both live in one hash per credential, `{prefix}:budget:{id}` (hash-tagged on a Cluster like
//! the record and the lock), and change only in Lua scripts: a check and its spend are one
//! atomic step, whichever instance makes them. Times and days are arguments, never Redis's own
//! clock, so the scripts are tested at any time of any day.
//!
//! Refreshes already hold the credential's lock when they consult these, so one instance at
//! a time asks; the scripts are atomic anyway, for a lock that expired mid-fetch.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use super::{Inner, RedisStore};
use crate::status::{ForceBudget, QuotaUsage};
use crate::store::AppKey;
use crate::time::UnixMillis;

/// The budget hash outlives its day by a day: nothing in it matters after that.
const BUDGET_TTL: Duration = Duration::from_secs(2 * 86_400);

/// KEYS[1]: the budget hash; ARGV: day, now_ms, per_day, gap_ms, ttl_ms. Spends one forced
/// refresh if the day's count and the gap since the last one allow it: 1 when spent.
static FORCE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local day = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local stored_day = tonumber(redis.call('HGET', KEYS[1], 'forced_day') or '0') or 0
local used = tonumber(redis.call('HGET', KEYS[1], 'forced') or '0') or 0
local last = tonumber(redis.call('HGET', KEYS[1], 'forced_at_ms') or '0') or 0
-- An instance whose clock is already past midnight started the new day: keep it.
if stored_day > day then day = stored_day end
if stored_day < day then used = 0 end
-- A time more than a day ahead of ours is a clock gone wrong, not a spend to wait for.
if last > now + 86400000 then last = 0 end
if used >= tonumber(ARGV[3]) then return 0 end
if last > 0 and now < last + tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'forced_day', day, 'forced', used + 1, 'forced_at_ms', now)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"#,
    )
});

/// KEYS[1]: the budget hash; ARGV: day, ttl_ms. Counts one call on `day` and answers the
/// day's count, the fleet's.
static CALL_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local day = tonumber(ARGV[1])
local stored_day = tonumber(redis.call('HGET', KEYS[1], 'calls_day') or '0') or 0
if stored_day > day then day = stored_day end
local n = 0
if stored_day == day then n = tonumber(redis.call('HGET', KEYS[1], 'calls') or '0') or 0 end
n = n + 1
redis.call('HSET', KEYS[1], 'calls_day', day, 'calls', n)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
"#,
    )
});

fn ttl_ms() -> u64 {
    u64::try_from(BUDGET_TTL.as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    fn budget_key(&self, key: &AppKey) -> String {
        format!("{}:budget:{}", self.prefix, self.key_id(&key.appid))
    }

    /// Spends one forced refresh of `key` at `now` from the fleet's budget; `false` when the
    /// day's 20 are used or the last one was less than 30 s ago.
    pub(super) async fn spend_force(&self, key: &AppKey, now: SystemTime) -> anyhow::Result<bool> {
        let k = self.budget_key(key);
        let spent: i64 = self
            .run("forced-refresh budget", |mut c| async move {
                FORCE_SCRIPT
                    .key(&k)
                    .arg(QuotaUsage::day_of(now))
                    .arg(UnixMillis::saturating_from(now).as_millis())
                    .arg(ForceBudget::PER_DAY)
                    .arg(u64::try_from(ForceBudget::MIN_GAP.as_millis()).unwrap_or(u64::MAX))
                    .arg(ttl_ms())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(spent == 1)
    }

    /// The fleet's token calls for `key` on the day of `now`.
    pub(super) async fn calls_on(
        &self,
        key: &AppKey,
        now: SystemTime,
    ) -> anyhow::Result<QuotaUsage> {
        let k = self.budget_key(key);
        let (day, calls): (Option<u64>, Option<u64>) = self
            .run("call count", |mut c| async move {
                redis::cmd("HMGET")
                    .arg(&k)
                    .arg("calls_day")
                    .arg("calls")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let today = QuotaUsage::day_of(now);
        Ok(QuotaUsage {
            day: today,
            used: if day == Some(today) {
                calls.unwrap_or(0)
            } else {
                0
            },
        })
    }

    /// Counts one call for `key` at `now`; the fleet's count for that day.
    pub(super) async fn count_call(
        &self,
        key: &AppKey,
        now: SystemTime,
    ) -> anyhow::Result<QuotaUsage> {
        let k = self.budget_key(key);
        let day = QuotaUsage::day_of(now);
        let used: u64 = self
            .run("call count", |mut c| async move {
                CALL_SCRIPT
                    .key(&k)
                    .arg(day)
                    .arg(ttl_ms())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(QuotaUsage { day, used })
    }
}

/// The fleet budgets, for tests and tools: the same calls a refresh makes, at a given time.
impl RedisStore {
    /// Spends one forced refresh of `key` at `now`, if the fleet's budget allows it.
    pub async fn spend_forced_refresh(
        &self,
        key: &AppKey,
        now: SystemTime,
    ) -> anyhow::Result<bool> {
        self.inner.spend_force(key, now).await
    }

    /// The fleet's count of `key`'s token calls on the day of `now`.
    pub async fn token_calls(&self, key: &AppKey, now: SystemTime) -> anyhow::Result<QuotaUsage> {
        self.inner.calls_on(key, now).await
    }

    /// Counts one token call of `key` at `now`.
    pub async fn count_token_call(
        &self,
        key: &AppKey,
        now: SystemTime,
    ) -> anyhow::Result<QuotaUsage> {
        self.inner.count_call(key, now).await
    }
}
