//! The embedded store: one redb file on local disk, the default for a single instance.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use redb::{Database, ReadableDatabase, TableDefinition};

use super::{decode, encode, AppKey, Stored, TokenStore};

const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");

/// A redb database. Every save is its own durable transaction (redb fsyncs on commit with a
/// copy-on-write B-tree), so a crash leaves either the old record or the new one, never half.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`. A file that is not a readable database is
    /// moved aside to `<path>.corrupt-<unix seconds>` and a new one is created: losing the cached
    /// token costs one fetch, refusing to start would cost an outage.
    pub fn open(path: &Path) -> anyhow::Result<EmbeddedStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create store directory {}", dir.display()))?;
        }
        let db = match open_db(path) {
            Ok(db) => db,
            Err(OpenError::Fatal(e)) => return Err(e),
            Err(OpenError::Corrupt(why)) => {
                let aside = aside_path(path);
                tracing::error!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    error = %why,
                    "store file is corrupt; moving it aside and starting with an empty store"
                );
                std::fs::rename(path, &aside).with_context(|| {
                    format!("cannot move corrupt store {} aside", path.display())
                })?;
                open_db(path).map_err(|e| match e {
                    OpenError::Fatal(e) => e,
                    OpenError::Corrupt(why) => anyhow::anyhow!("new store file is unusable: {why}"),
                })?
            }
        };
        restrict_permissions(path);
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    fn load_blocking(db: &Database, app: &str) -> anyhow::Result<Option<Stored>> {
        let tx = db.begin_read()?;
        let table = match tx.open_table(TOKENS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(value) = table.get(app)? else {
            return Ok(None);
        };
        let record = decode(value.value());
        if record.is_none() {
            tracing::warn!(app, "stored token record is unreadable; ignoring it");
        }
        Ok(record)
    }

    fn save_blocking(db: &Database, app: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let tx = db.begin_write()?;
        {
            let mut table = tx.open_table(TOKENS)?;
            table.insert(app, bytes)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl TokenStore for EmbeddedStore {
    fn load(&self, key: &AppKey) -> BoxFuture<'static, anyhow::Result<Option<Stored>>> {
        let db = self.db.clone();
        let app = key.name.clone();
        // redb blocks on disk I/O: keep it off the threads that run actors and requests.
        tokio::task::spawn_blocking(move || Self::load_blocking(&db, &app))
            .map(|r| r.context("store task failed")?)
            .boxed()
    }

    fn save(&self, key: &AppKey, stored: &Stored) -> BoxFuture<'static, anyhow::Result<bool>> {
        let db = self.db.clone();
        let app = key.name.clone();
        let bytes = encode(stored);
        // One process owns the file, so there is no older writer to fence: always written.
        tokio::task::spawn_blocking(move || Self::save_blocking(&db, &app, &bytes).map(|()| true))
            .map(|r| r.context("store task failed")?)
            .boxed()
    }
}

enum OpenError {
    Corrupt(String),
    Fatal(anyhow::Error),
}

fn open_db(path: &Path) -> Result<Database, OpenError> {
    // redb's debug builds assert on some corruptions instead of returning an error; treat a
    // panic during open like a corruption report.
    let result = std::panic::catch_unwind(|| Database::create(path));
    match result {
        Ok(Ok(db)) => {
            // Opening can succeed on a damaged file; a read of the table proves it usable.
            match EmbeddedStore::load_blocking(&db, "\u{0}probe") {
                Ok(_) => Ok(db),
                Err(e) => Err(OpenError::Corrupt(format!("{e:#}"))),
            }
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)))) => {
            Err(OpenError::Corrupt(why))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::InvalidData
                || e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Err(OpenError::Corrupt(e.to_string()))
        }
        Ok(Err(redb::DatabaseError::UpgradeRequired(v))) => Err(OpenError::Corrupt(format!(
            "file format version {v} is not supported"
        ))),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(OpenError::Fatal(anyhow::anyhow!(
            "store {} is already in use by another process (two servers cannot share an embedded store; use the redis store)",
            path.display()
        ))),
        Ok(Err(e)) => Err(OpenError::Fatal(
            anyhow::Error::new(e).context(format!("cannot open store {}", path.display())),
        )),
        Err(_) => Err(OpenError::Corrupt("the database library panicked while opening it".into())),
    }
}

fn aside_path(path: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{secs}"));
    PathBuf::from(name)
}

/// The file holds live tokens: readable by its owner only.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot restrict store file permissions");
        }
    }
}
