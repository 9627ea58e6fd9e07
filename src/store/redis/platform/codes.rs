//! Authorization code records in Redis, and the fleet-wide claim on a code's exchange: their
//! keys, scripts, and the reads and writes of Redis's copy.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::HashRecord;
use crate::seal::Keyring;
use crate::store::platform::{decode_code_of, encode_code, CodeRecord, Refused, Stored};
use crate::store::redis::Inner;

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

impl HashRecord for CodeRecord {
    const READ: &'static str = "code read";

    fn decode_of(
        ring: &Keyring,
        platform: &str,
        bytes: &[u8],
        digest: &[u8],
    ) -> Result<Self, Refused> {
        decode_code_of(ring, platform, bytes, digest)
    }

    fn stored(digest: &str) -> Stored<'_> {
        Stored::Code(digest)
    }
}

impl Inner {
    fn codes_key(&self, platform: &str) -> String {
        format!("{}:platform:{platform}:codes", self.prefix)
    }

    fn claim_key(&self, platform: &str, digest: &str) -> String {
        format!("{}:platform:{platform}:code_claim:{digest}", self.prefix)
    }

    pub(super) async fn redis_save_code(
        &self,
        platform: &str,
        r: &CodeRecord,
    ) -> anyhow::Result<bool> {
        let key = self.codes_key(platform);
        let (digest, order, body) = (
            r.digest.clone(),
            r.order(),
            encode_code(&self.ring, platform, r),
        );
        self.write_if_newer("code write", &CODE_SCRIPT, key, (digest, order, body))
            .await
    }

    /// The whole hash: codes are few (those of the last hour or so).
    pub(super) async fn redis_load_codes(
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
            if let Some(r) = self.hash_record_or_skip::<CodeRecord>(platform, &pair[0], &pair[1])? {
                out.insert(r.digest.clone(), r);
            }
        }
        Ok(out)
    }

    pub(super) async fn redis_load_code(
        &self,
        platform: &str,
        digest: &str,
    ) -> anyhow::Result<Option<CodeRecord>> {
        let key = self.codes_key(platform);
        self.redis_load_hash_record(platform, key, digest).await
    }

    /// Removes code records from Redis's copy.
    pub(super) async fn redis_forget_codes(
        &self,
        platform: &str,
        digests: &[String],
    ) -> anyhow::Result<()> {
        let key = self.codes_key(platform);
        self.run("code forget", |mut c| async move {
            redis::cmd("HDEL")
                .arg(&key)
                .arg(digests)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// Takes (or renews) this instance's claim on a code's exchange for `ttl`: whether it
    /// holds it now.
    pub(super) async fn redis_claim_code(
        &self,
        platform: &str,
        digest: &str,
        ttl: Duration,
    ) -> anyhow::Result<bool> {
        let key = self.claim_key(platform, digest);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let me = self.instance.clone();
        let held: i64 = self
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

    /// Gives up this instance's claim on a code, if it still holds it.
    pub(super) async fn redis_release_code(
        &self,
        platform: &str,
        digest: &str,
    ) -> anyhow::Result<()> {
        let key = self.claim_key(platform, digest);
        let me = self.instance.clone();
        let _: i64 = self
            .run("code release", |mut c| async move {
                RELEASE_SCRIPT.key(&key).arg(me).invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    /// Writes local code records that Redis lacks or holds behind, without making the load
    /// wait: they are few, and a failure is repaired by the next load.
    pub(super) fn code_writeback(self: &Arc<Self>, platform: &str, records: Vec<CodeRecord>) {
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
}
