//! `wxtoken rekey` of an embedded file (the embedded store's, or a Redis store's local copy):
//! every record copied, its secret resealed under the current key, into a fresh file that then
//! replaces the old one. redb frees the pages of rewritten values without wiping them, so a
//! rewrite in place (or a store migrated record by record on its saves) would leave old values
//! readable in the file; a fresh file holds only what it was given.
//!
//! The file must not be in use: a running server holds it locked, and rekey says so.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};

use super::messages::{DEDUPE, DEDUPE_EXPIRY, DELIVERIES, DUE, PURGE, PUSHES, STATE, UNMATCHED};
use super::platform::PLATFORM;
use super::{restrict_permissions, TOKENS};
use crate::seal::Keyring;
use crate::store::rekey::{reseal, Kind, Rekeyed, Resealed};

/// Rewrites the file at `path` under `ring`'s current key (see the module documentation). A
/// missing file has nothing to rewrite.
pub fn rekey_file(path: &Path, ring: &Keyring) -> anyhow::Result<Rekeyed> {
    if !path.exists() {
        return Ok(Rekeyed::default());
    }
    let old = match Database::open(path) {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(InUse(path.to_path_buf()).into())
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot open {}", path.display())))
        }
    };
    let fresh = fresh_path(path);
    // A leftover of an interrupted run is only ever a copy: start over.
    let _ = std::fs::remove_file(&fresh);
    let counts = copy_resealed(&old, &fresh, ring).inspect_err(|_| {
        let _ = std::fs::remove_file(&fresh);
    })?;
    drop(old);
    restrict_permissions(&fresh);
    std::fs::rename(&fresh, path)
        .with_context(|| format!("cannot replace {} with its rekeyed copy", path.display()))?;
    // The rename is durable once the directory is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(counts)
}

/// The file is held by a running server (redb locks it).
#[derive(Debug, thiserror::Error)]
#[error("{} is in use by a running wxtoken: stop that instance first (rekey needs the file to itself)", .0.display())]
pub struct InUse(pub PathBuf);

fn fresh_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rekey");
    PathBuf::from(name)
}

fn copy_resealed(old: &Database, fresh: &Path, ring: &Keyring) -> anyhow::Result<Rekeyed> {
    let read = old.begin_read()?;
    // Only tables this version writes are copied: refuse rather than drop one it does not know.
    let known = [
        TOKENS.name(),
        PLATFORM.name(),
        PUSHES.name(),
        DELIVERIES.name(),
        DUE.name(),
        STATE.name(),
        DEDUPE.name(),
        DEDUPE_EXPIRY.name(),
        PURGE.name(),
        UNMATCHED.name(),
    ];
    for table in read.list_tables()? {
        anyhow::ensure!(
            known.contains(&table.name()),
            "the file holds a table `{}` this version of wxtoken does not know; not rewriting it",
            table.name()
        );
    }
    let new =
        Database::create(fresh).with_context(|| format!("cannot create {}", fresh.display()))?;
    let write = new.begin_write()?;
    let mut counts = Rekeyed::default();
    for def in [TOKENS, PLATFORM, PUSHES] {
        let source = match read.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut target = write.open_table(def)?;
        for entry in source.iter()? {
            let (key, value) = entry?;
            let (key, value) = (key.value(), value.value());
            let kind = if def.name() == PUSHES.name() {
                Some(Kind::Push)
            } else {
                kind_of(def.name() == TOKENS.name(), key)
            };
            counts.seen += 1;
            let resealed = match kind {
                Some(kind) => reseal(ring, kind, value)
                    .map_err(|u| anyhow::Error::new(u).context(format!("record {key}")))?,
                None => Resealed::Corrupt,
            };
            match resealed {
                Resealed::Rewritten(bytes) => {
                    counts.rewritten += 1;
                    target.insert(key, bytes.as_slice())?;
                }
                Resealed::Current | Resealed::Corrupt => {
                    target.insert(key, value)?;
                }
            }
        }
    }
    // The message hub's other tables hold no secret: copied as they are.
    copy(&read, &write, DELIVERIES)?;
    copy(&read, &write, DUE)?;
    copy(&read, &write, STATE)?;
    copy(&read, &write, DEDUPE)?;
    copy(&read, &write, DEDUPE_EXPIRY)?;
    copy(&read, &write, PURGE)?;
    copy(&read, &write, UNMATCHED)?;
    write.commit()?;
    Ok(counts)
}

/// Copies table `def` from `read` into `write` as it is (absent: nothing to copy).
fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &redb::ReadTransaction,
    write: &redb::WriteTransaction,
    def: redb::TableDefinition<K, V>,
) -> anyhow::Result<()> {
    let source = match read.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut target = write.open_table(def)?;
    for entry in source.iter()? {
        let (key, value) = entry?;
        target.insert(key.value(), value.value())?;
    }
    Ok(())
}

/// A record's kind by its table and key (`{platform}/ticket`, `{platform}/authorizer/{appid}`,
/// `{platform}/code/{sha-256}`, `{platform}/event/...`); `None`: not a key this version writes.
fn kind_of(token_table: bool, key: &str) -> Option<Kind<'_>> {
    if token_table {
        return Some(Kind::Token);
    }
    let (platform, rest) = key.split_once('/')?;
    if rest == "ticket" {
        Some(Kind::Ticket(platform))
    } else if rest.starts_with("authorizer/") {
        Some(Kind::Authorizer(platform))
    } else if rest.starts_with("code/") {
        Some(Kind::Code(platform))
    } else if rest.starts_with("event/") {
        Some(Kind::Event(platform))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::metrics::{Metrics, MetricsMode};
    use crate::seal::{StoreKey, KEY_LEN};
    use crate::secret::AccessToken;
    use crate::store::platform::{
        code_digest, AuthorizerRecord, AuthorizerState, CodeRecord, CodeState, PlatformStore,
        TicketRecord,
    };
    use crate::store::{AppKey, EmbeddedStore, Stored, TokenStore};
    use crate::token::{QuotaUsage, TokenRecord};

    fn key(b: u8) -> StoreKey {
        StoreKey::from_bytes(&[b; KEY_LEN])
    }

    fn ring(current: u8, previous: &[u8]) -> Arc<Keyring> {
        Arc::new(Keyring::new(
            Some(key(current)),
            previous.iter().map(|b| key(*b)).collect(),
            false,
        ))
    }

    fn app() -> AppKey {
        AppKey {
            name: "shop".into(),
            appid: "wx1".into(),
        }
    }

    async fn fill(store: &EmbeddedStore) {
        let now = SystemTime::now();
        let token = Stored {
            record: TokenRecord {
                appid: "wx1".into(),
                token: AccessToken::new("TOKEN-SECRET"),
                fetched_at: now,
                expires_at: now + Duration::from_secs(7200),
                generation: 1,
            },
            quota: QuotaUsage::default(),
            fetched_by: None,
            depends_on: None,
        };
        assert!(store.save(&app(), &token).await.unwrap());
        let authorizer = AuthorizerRecord {
            appid: "wxauth1".into(),
            refresh_token: Some(AccessToken::new("refreshtoken@@@REFRESH-SECRET")),
            func_ids: vec![1],
            state: AuthorizerState::Authorized,
            authorized_at: None,
            last_error: None,
            updated_at: now,
        };
        store.save_authorizers("saas", &[authorizer]).await.unwrap();
        let ticket = TicketRecord {
            component_appid: "wxcomp".into(),
            ticket: AccessToken::new("ticket@@@TICKET-SECRET"),
            received_at: now,
        };
        store.save_ticket("saas", &ticket).await.unwrap();
        let code = CodeRecord {
            digest: code_digest("queryauthcode@@@CODE-SECRET"),
            authorizer_appid: "wxauth1".into(),
            code: Some(AccessToken::new("queryauthcode@@@CODE-SECRET")),
            state: CodeState::Pending,
            errcode: None,
            expires_at: now + Duration::from_secs(600),
            received_at: now,
            updated_at: now,
        };
        assert!(store.save_code("saas", &code).await.unwrap());
    }

    fn metrics() -> Metrics {
        Metrics::new(&[], MetricsMode::Full)
    }

    #[tokio::test]
    async fn rotation_reads_old_records_and_rekey_leaves_none_under_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        // Written in plaintext first (a store from before encryption), then under key 1.
        let store = EmbeddedStore::open(&path, metrics()).unwrap();
        fill(&store).await;
        drop(store);
        let store = EmbeddedStore::open_with_keys(&path, metrics(), ring(1, &[])).unwrap();
        assert!(
            store.load(&app()).await.unwrap().is_some(),
            "plaintext reads"
        );
        fill(&store).await;
        // A server holding the file keeps rekey out.
        let err = rekey_file(&path, &ring(2, &[1])).unwrap_err();
        assert!(err.downcast_ref::<InUse>().is_some(), "{err:#}");
        drop(store);

        // Rotated: key 2 writes, key 1 still opens.
        let counts = rekey_file(&path, &ring(2, &[1])).unwrap();
        assert_eq!((counts.seen, counts.rewritten), (4, 4));
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [
            "TOKEN-SECRET",
            "REFRESH-SECRET",
            "TICKET-SECRET",
            "CODE-SECRET",
        ] {
            assert!(!text.contains(secret), "{secret} left in the file");
        }
        assert!(
            !text.contains(&format!("wxe1:{}:", key(1).id())),
            "old key left"
        );
        assert!(text.contains(&format!("wxe1:{}:", key(2).id())));
        assert_eq!(rekey_file(&path, &ring(2, &[1])).unwrap().rewritten, 0);

        // Key 2 alone reads everything back.
        let store = EmbeddedStore::open_with_keys(&path, metrics(), ring(2, &[])).unwrap();
        let token = store.load(&app()).await.unwrap().expect("token");
        assert_eq!(token.record.token.expose(), "TOKEN-SECRET");
        let authorizers = store.load_authorizers("saas").await.unwrap();
        assert_eq!(
            authorizers[0].refresh_token.as_ref().unwrap().expose(),
            "refreshtoken@@@REFRESH-SECRET"
        );
        drop(store);

        // Key 1 alone: the token is absent and counted, the platform records an error naming
        // key 2's id, never "no record".
        let m = metrics();
        let store = EmbeddedStore::open_with_keys(&path, m.clone(), ring(1, &[])).unwrap();
        assert!(store.load(&app()).await.unwrap().is_none());
        assert!(m
            .render()
            .contains("wxtoken_store_errors_total{app=\"shop\",op=\"decrypt\"} 1"));
        let want = format!("key id {}", key(2).id());
        let err = store.load_authorizers("saas").await.unwrap_err();
        assert!(format!("{err:#}").contains(&want), "{err:#}");
        let err = crate::store::sealed::check_platform_records(&store, "saas")
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&want), "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}
