//! Tickets and authorizer records in Redis: their keys, the last-writer-wins scripts, and the
//! reads and writes of Redis's copy (the local copy and the merge are the caller's).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::{script, HashRecord, CHUNK, CHUNKS_PER_PIPELINE};
use crate::seal::Keyring;
use crate::store::platform::{
    decode_authorizer_of, decode_ticket, encode_authorizer, encode_ticket, skip_corrupt,
    AuthorizerRecord, Refused, Stored, TicketRecord,
};
use crate::store::redis::Inner;

/// KEYS[1]: the ticket key; ARGV: received_at_ms, JSON. Writes unless the stored ticket was
/// received later (an undecodable one fences nothing). 1 when written.
static TICKET_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local cur = redis.call('GET', KEYS[1])
local t = stored_ms(cur, 'received_at_ms')
if t and t > tonumber(ARGV[1]) then return 0 end
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
  local t = stored_ms(cur, 'updated_at_ms')
  if t and t > tonumber(ARGV[i + 1]) then
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

impl HashRecord for AuthorizerRecord {
    const READ: &'static str = "authorizer read";

    fn decode_of(
        ring: &Keyring,
        platform: &str,
        bytes: &[u8],
        appid: &[u8],
    ) -> Result<Self, Refused> {
        decode_authorizer_of(ring, platform, bytes, appid)
    }

    fn stored(appid: &str) -> Stored<'_> {
        Stored::Authorizer(appid)
    }
}

impl Inner {
    pub(super) fn ticket_key(&self, platform: &str) -> String {
        format!("{}:platform:{platform}:ticket", self.prefix)
    }

    pub(super) fn authorizers_key(&self, platform: &str) -> String {
        format!("{}:platform:{platform}:authorizers", self.prefix)
    }

    pub(super) async fn redis_load_ticket(
        &self,
        platform: &str,
    ) -> anyhow::Result<Option<TicketRecord>> {
        let raw = self
            .get("ticket read", self.ticket_key(platform), None)
            .await?;
        let Some(bytes) = raw else {
            return Ok(None);
        };
        let decoded = decode_ticket(&self.ring, platform, &bytes);
        skip_corrupt(self.corrupt(platform), Stored::Ticket, decoded)
    }

    pub(super) async fn redis_save_ticket(
        &self,
        platform: &str,
        ticket: &TicketRecord,
    ) -> anyhow::Result<bool> {
        let key = self.ticket_key(platform);
        let order = ticket.order();
        let body = encode_ticket(&self.ring, platform, ticket);
        self.write_if_newer("ticket write", &TICKET_SCRIPT, key, (order, body))
            .await
    }

    pub(super) async fn redis_load_authorizer(
        &self,
        platform: &str,
        appid: &str,
    ) -> anyhow::Result<Option<AuthorizerRecord>> {
        let key = self.authorizers_key(platform);
        self.redis_load_hash_record(platform, key, appid).await
    }

    /// The whole hash by `HSCAN`, by appid.
    pub(super) async fn redis_load_authorizers(
        &self,
        platform: &str,
    ) -> anyhow::Result<BTreeMap<String, AuthorizerRecord>> {
        let key = self.authorizers_key(platform);
        let mut cursor = "0".to_string();
        let mut out = BTreeMap::new();
        loop {
            let (next, flat) = self.hscan_page("authorizer scan", &key, &cursor).await?;
            for pair in flat.chunks_exact(2) {
                if let Some(r) =
                    self.hash_record_or_skip::<AuthorizerRecord>(platform, &pair[0], &pair[1])?
                {
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
    pub(super) async fn redis_save_authorizers(
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
}
