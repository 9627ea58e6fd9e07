//! `wxtoken rekey` of Redis, while the fleet runs: every value under the prefix that holds a
//! secret (token records, tickets, authorizers, codes, events) is read, resealed under the
//! current key and written back only if it is still the value read (a compare-and-set in one
//! script), so a record a running instance changed meanwhile is never undone: that instance
//! wrote it sealed with its own current key. Values already under the current key are not
//! written at all, so a second run rewrites nothing.
//!
//! Keys are found with `SCAN`, values read by type (`HGET`/`HSCAN`, `GET`, `LRANGE`). One
//! `SCAN` covers one node: on a Cluster it runs on each master in turn, with a cursor of its
//! own, sent to that master by address (see `masters.rs`); each key found is then read and
//! rewritten by commands routed by its key, as everywhere else. A key is looked at once per
//! run, however often the scans return it (`SCAN` may repeat one, and a key moved by
//! resharding may be found on two masters). A key moved mid-run from a master not scanned yet
//! to one already scanned is missed: running rekey again finishes it.

use std::collections::HashSet;
use std::sync::LazyLock;

use anyhow::Context as _;

use super::masters::{self, Master};
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

/// What a rekey of Redis did.
#[derive(Debug, Default)]
pub struct RedisRekeyed {
    pub counts: Rekeyed,
    /// The masters scanned, `host:port`, when Redis is a Cluster (empty otherwise).
    pub masters: Vec<String>,
}

/// Where a value sits: the key's type and, in a hash, the field.
enum Slot {
    String,
    Hash(Vec<u8>),
    List,
}

impl RedisStore {
    /// Reseals every secret value under the prefix with this store's current key. See the
    /// module documentation.
    pub async fn rekey(&self) -> anyhow::Result<RedisRekeyed> {
        let mut out = RedisRekeyed::default();
        // The names of the keys looked at (names only: a few megabytes for 100,000 apps).
        let mut looked_at = HashSet::new();
        if !self.inner.topology.is_cluster() {
            self.rekey_node(None, &mut looked_at, &mut out.counts)
                .await?;
            return Ok(out);
        }
        let found = self
            .inner
            .run("rekey slot table read", masters::masters)
            .await?;
        anyhow::ensure!(!found.is_empty(), "the Redis Cluster lists no master");
        for master in &found {
            self.rekey_node(Some(master), &mut looked_at, &mut out.counts)
                .await
                .with_context(|| format!("rekey of Redis Cluster master {master}"))?;
            out.masters.push(master.to_string());
        }
        Ok(out)
    }

    /// Every key under the prefix on one node (`None`: the one server), each looked at
    /// unless `looked_at` has it already.
    async fn rekey_node(
        &self,
        node: Option<&Master>,
        looked_at: &mut HashSet<String>,
        counts: &mut Rekeyed,
    ) -> anyhow::Result<()> {
        if let Some(m) = node {
            let m2 = m.clone();
            let master = self
                .inner
                .run("rekey role check", |c| async move {
                    masters::still_master(c, &m2).await
                })
                .await?;
            anyhow::ensure!(
                master,
                "the node is no longer a master (a failover since the slot table was read): run rekey again once the Cluster is settled"
            );
        }
        let mut cursor = "0".to_string();
        loop {
            let (next, keys) = self.scan_page(node, &cursor).await?;
            for key in keys {
                if looked_at.insert(key.clone()) {
                    self.rekey_key(&key, counts).await?;
                }
            }
            if next == "0" {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// One page of `SCAN cursor MATCH {prefix}:* COUNT 1000` on `node` (`None`: the one
    /// server): the next cursor (`"0"` at the end) and the keys.
    async fn scan_page(
        &self,
        node: Option<&Master>,
        cursor: &str,
    ) -> anyhow::Result<(String, Vec<String>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", self.inner.prefix))
            .arg("COUNT")
            .arg(SCAN_COUNT);
        match node {
            None => {
                self.inner
                    .run("rekey scan", |mut conn| async move {
                        scan.query_async(&mut conn).await
                    })
                    .await
            }
            Some(m) => {
                let m = m.clone();
                self.inner
                    .run("rekey scan", |conn| async move {
                        let page = masters::on_master(conn, &m, scan).await?;
                        Ok(redis::from_redis_value(page)?)
                    })
                    .await
            }
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
