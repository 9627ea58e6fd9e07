//! `wxtoken rekey` of Redis, while the fleet runs: every value under the prefix that holds a
//! secret (token records, tickets, authorizers, codes, events) is read, resealed under the
//! current key and written back only if it is still the value read (a compare-and-set in one
//! script), so a record a running instance changed meanwhile is never undone: that instance
//! wrote it sealed with its own current key. Values already under the current key are not
//! written at all, so a second run rewrites nothing.
//!
//! Keys are found with `SCAN`, values read by type (`HGET`/`HSCAN`, `GET`, `LRANGE`). A
//! Cluster spreads keys over nodes that one `SCAN` does not cover: rekey refuses it.

use std::sync::LazyLock;

use super::RedisStore;
use crate::store::rekey::{reseal, Kind, Rekeyed, Resealed};

/// KEYS[1]; ARGV: type (`string`, `hash` or `list`), hash field, the value read, the new
/// value. Writes the new value where the one read still is; 1 when written.
static SWAP_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if ARGV[1] == 'string' then
  if redis.call('GET', KEYS[1]) == ARGV[3] then redis.call('SET', KEYS[1], ARGV[4]) return 1 end
elseif ARGV[1] == 'hash' then
  if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[3] then
    redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
    return 1
  end
else
  local items = redis.call('LRANGE', KEYS[1], 0, -1)
  for i, v in ipairs(items) do
    if v == ARGV[3] then redis.call('LSET', KEYS[1], i - 1, ARGV[4]) return 1 end
  end
end
return 0
"#,
    )
});

/// Keys asked per `SCAN` / `HSCAN` step.
const SCAN_COUNT: usize = 1000;

/// Where a value sits: the key's type and, in a hash, the field.
enum Slot {
    String,
    Hash(Vec<u8>),
    List,
}

impl RedisStore {
    /// Reseals every secret value under the prefix with this store's current key. See the
    /// module documentation.
    pub async fn rekey(&self) -> anyhow::Result<Rekeyed> {
        let inner = &self.inner;
        anyhow::ensure!(
            !inner.topology.is_cluster(),
            "rekey does not support Redis Cluster yet (one SCAN does not cover its nodes)"
        );
        let mut counts = Rekeyed::default();
        let pattern = format!("{}:*", inner.prefix);
        let mut cursor = "0".to_string();
        loop {
            let (c, p) = (cursor.clone(), pattern.clone());
            let (next, keys): (String, Vec<String>) = inner
                .run("rekey scan", |mut conn| async move {
                    redis::cmd("SCAN")
                        .arg(&c)
                        .arg("MATCH")
                        .arg(&p)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            for key in keys {
                self.rekey_key(&key, &mut counts).await?;
            }
            if next == "0" {
                return Ok(counts);
            }
            cursor = next;
        }
    }

    /// One key's values, by what the key says it holds; other keys (locks, budgets, claims)
    /// hold no secret.
    async fn rekey_key(&self, key: &str, counts: &mut Rekeyed) -> anyhow::Result<()> {
        let Some(rest) = key
            .strip_prefix(self.inner.prefix.as_str())
            .and_then(|r| r.strip_prefix(':'))
        else {
            return Ok(());
        };
        if rest.starts_with("token:") {
            let value = self.hget(key, b"record").await?;
            if let Some(v) = value {
                self.swap(key, Kind::Token, Slot::Hash(b"record".to_vec()), v, counts)
                    .await?;
            }
            return Ok(());
        }
        if rest == "{msg}:pushes" {
            return self.rekey_hash(key, Kind::Push, counts).await;
        }
        let Some(platform_key) = rest.strip_prefix("platform:") else {
            return Ok(());
        };
        let Some((platform, what)) = platform_key.split_once(':') else {
            return Ok(());
        };
        match what {
            "ticket" => {
                let k = key.to_string();
                let value: Option<Vec<u8>> = self
                    .inner
                    .run("rekey read", |mut c| async move {
                        redis::cmd("GET").arg(&k).query_async(&mut c).await
                    })
                    .await?;
                if let Some(v) = value {
                    self.swap(key, Kind::Ticket(platform), Slot::String, v, counts)
                        .await?;
                }
            }
            "authorizers" | "codes" => {
                let kind = if what == "codes" {
                    Kind::Code(platform)
                } else {
                    Kind::Authorizer(platform)
                };
                self.rekey_hash(key, kind, counts).await?;
            }
            "events" => {
                let k = key.to_string();
                let items: Vec<Vec<u8>> = self
                    .inner
                    .run("rekey list read", |mut c| async move {
                        redis::cmd("LRANGE")
                            .arg(&k)
                            .arg(0)
                            .arg(-1)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                for v in items {
                    self.swap(key, Kind::Event(platform), Slot::List, v, counts)
                        .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Every value of the hash `key`, each a record of `kind`, paged by HSCAN.
    async fn rekey_hash(
        &self,
        key: &str,
        kind: Kind<'_>,
        counts: &mut Rekeyed,
    ) -> anyhow::Result<()> {
        let mut cursor = "0".to_string();
        loop {
            let (next, flat) = self
                .inner
                .hscan_page("rekey hash scan", key, &cursor)
                .await?;
            for pair in flat.chunks_exact(2) {
                let slot = Slot::Hash(pair[0].clone());
                self.swap(key, kind, slot, pair[1].clone(), counts).await?;
            }
            if next == "0" {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn hget(&self, key: &str, field: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let (k, f) = (key.to_string(), field.to_vec());
        self.inner
            .run("rekey read", |mut c| async move {
                redis::cmd("HGET").arg(&k).arg(&f).query_async(&mut c).await
            })
            .await
    }

    /// Reseals one value and writes it where it was read, if it is still there.
    async fn swap(
        &self,
        key: &str,
        kind: Kind<'_>,
        slot: Slot,
        value: Vec<u8>,
        counts: &mut Rekeyed,
    ) -> anyhow::Result<()> {
        counts.seen += 1;
        let resealed = reseal(&self.inner.ring, kind, &value)
            .map_err(|u| anyhow::Error::new(u).context(format!("Redis key {key}")))?;
        let Resealed::Rewritten(new) = resealed else {
            return Ok(());
        };
        let (kind_arg, field) = match slot {
            Slot::String => ("string", Vec::new()),
            Slot::Hash(f) => ("hash", f),
            Slot::List => ("list", Vec::new()),
        };
        let k = key.to_string();
        let swapped: i64 = self
            .inner
            .run("rekey write", |mut c| async move {
                SWAP_SCRIPT
                    .key(&k)
                    .arg(kind_arg)
                    .arg(field)
                    .arg(value)
                    .arg(new)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if swapped == 1 {
            counts.rewritten += 1;
        } else {
            counts.raced += 1;
        }
        Ok(())
    }
}
