//! `wxtoken rekey --config FILE`: every record of the configured store rewritten under the
//! current key (`store.encryption_key_*`), opening old ones with the previous keys; without a
//! current key, every record is written back in plaintext.
//!
//! An embedded store's file is rewritten into a fresh file (the server must be stopped: it
//! holds the file). Redis is rewritten in place while the fleet runs (see
//! `store/redis/rekey.rs`), and then this instance's local copy, if it is not in use; a local
//! copy in use is rekeyed when its instance is stopped and rekey runs again, and until then
//! its instance still needs the previous keys.

use std::path::Path;

use crate::config::{Settings, StoreSettings};
use crate::metrics::{Metrics, MetricsMode};
use crate::store::embedded::{rekey_file, InUse};
use crate::store::rekey::Rekeyed;
use crate::store::RedisStore;

/// Rekeys the store `settings` name and answers one line per place rewritten, e.g.
/// `rewrote 12 of 40 values in data/wxtoken.redb under key id 1a2b3c4d`.
pub async fn rekey(settings: &Settings) -> anyhow::Result<Vec<String>> {
    let ring = settings.encryption.keyring.clone();
    let under = match ring.current_id() {
        Some(id) => format!("under key id {id}"),
        None => "in plaintext (no store.encryption_key_*)".to_string(),
    };
    let line = |counts: Rekeyed, place: &str| {
        let mut line = format!(
            "rewrote {} of {} values in {place} {under}",
            counts.rewritten, counts.seen
        );
        if counts.raced > 0 {
            line.push_str(&format!(
                "; {} changed meanwhile by a running instance (written with its own key: run rekey again if it lacks this one)",
                counts.raced
            ));
        }
        line
    };
    let mut lines = Vec::new();
    match &settings.store {
        StoreSettings::Embedded { path } => {
            let counts = rekey_file(path, &ring)?;
            lines.push(line(counts, &path.display().to_string()));
        }
        StoreSettings::Redis(redis) => {
            // The local copy is rewritten as a file of its own below, not opened by the store.
            let mut remote = redis.clone();
            remote.local_path = None;
            let metrics = Metrics::new(&[], MetricsMode::Full);
            let store = RedisStore::open_with_keys(&remote, metrics, ring.clone()).await?;
            let done = store.rekey().await?;
            let mut place = format!("Redis at {}", redis.endpoint.location());
            if !done.masters.is_empty() {
                // Which nodes were scanned, so a run that missed none can be seen to.
                let n = done.masters.len();
                let noun = if n == 1 { "master" } else { "masters" };
                place.push_str(&format!(" ({n} {noun}: {})", done.masters.join(", ")));
            }
            lines.push(line(done.counts, &place));
            if let Some(local) = &redis.local_path {
                match rekey_file(local, &ring) {
                    Ok(counts) => lines.push(line(counts, &local.display().to_string())),
                    Err(e) if e.downcast_ref::<InUse>().is_some() => lines.push(format!(
                        "skipped the local copy {}: in use by its running instance (it keeps needing the previous keys until rekey runs while it is stopped)",
                        local.display()
                    )),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(lines)
}

/// The command: loads `config`, rekeys, prints the lines.
pub async fn run(config: &Path) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let outcome = rekey(&settings).await;
    record_rotation(&settings, outcome.is_ok());
    for line in outcome? {
        println!("{line}");
    }
    Ok(())
}

/// A key rotation is an admin action: with `[audit]`, its line goes to the same trail the
/// server writes (the file is opened for appending, so a running server's lines and this one
/// interleave whole). The caller is the command, run by whoever can read the configuration.
fn record_rotation(settings: &Settings, ok: bool) {
    let Some(audit) = &settings.audit else {
        return;
    };
    let errors =
        prometheus::IntCounter::new("rekey_audit_write_errors", "unused").expect("a valid counter");
    let trail = crate::audit::Audit::open(audit.clone(), errors);
    let caller = crate::audit::Caller {
        client: "wxtoken rekey".into(),
        remote_addr: None,
        route: "rekey".into(),
    };
    trail.record(&crate::audit::Entry {
        action: crate::audit::Action::KeyRotation,
        caller: &caller,
        credential: settings
            .encryption
            .keyring
            .current_id()
            .map(|id| format!("key id {id}"))
            .as_deref(),
        outcome: if ok { "ok" } else { "failed" },
        fingerprints: Vec::new(),
    });
}
