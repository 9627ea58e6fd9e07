//! The write-back of the local copy to Redis: at start, whenever Redis comes back, and when a
//! save or load found Redis behind. A script first asks which records Redis lacks or holds
//! older (sending appids and times only), so a write-back over records Redis already has
//! moves none.

use std::sync::atomic::Ordering;
use std::sync::{LazyLock, Weak};
use std::time::Duration;

use super::{script, CHUNK, CHUNKS_PER_PIPELINE};
use crate::store::platform::{check_platform, AuthorizerRecord};
use crate::store::redis::Inner;

/// First wait before retrying a failed write-back; it doubles up to [`WRITEBACK_MAX`].
const WRITEBACK_MIN: Duration = Duration::from_secs(1);
const WRITEBACK_MAX: Duration = Duration::from_secs(30);

/// KEYS[1]: the authorizers hash; ARGV: (appid, updated_at_ms) pairs. Answers the 1-based
/// positions of the pairs Redis lacks, cannot decode or holds older.
static STALE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"
local out = {}
for i = 1, #ARGV, 2 do
  local t = stored_ms(redis.call('HGET', KEYS[1], ARGV[i]), 'updated_at_ms')
  if not (t and t >= tonumber(ARGV[i + 1])) then out[#out + 1] = (i + 1) / 2 end
end
return out
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
    /// Asks the write-back loop for a pass (when the store keeps a local copy).
    pub(super) fn ask_writeback(&self) {
        if self.local.is_some() {
            self.writeback.notify_one();
        }
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
pub(in crate::store::redis) async fn writeback_loop(inner: Weak<Inner>) {
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
