//! Making `meta/catalog.db`: empty at init, or from a format-1 `meta/catalog.json` the first
//! time a repository is opened by this arch (in place, once, atomically).
//!
//! Crash safety of the migration (docs/FORMAT.md "Catalog database"): under the exclusive
//! catalog lock, the database is built in `tmp/`, closed (its write-ahead log checkpointed
//! into it), fsynced, renamed to `meta/catalog.db` and the directory fsynced; only then is
//! `catalog.json` removed. A crash before the rename leaves `catalog.json` the catalog (and a
//! temp file that fsck and gc clean); after it, `catalog.db` is the catalog, and a leftover
//! `catalog.json` is removed by the next open.

use super::catalog::Catalog;
use super::{CATALOG_DB, CATALOG_FILE, CATALOG_LOCK, META_DIR, Repository, lock};
use crate::error::{Error, Result};
use crate::storage::fsutil::{Modes, TempPath, create_file, open_regular, sync_dir};
use crate::storage::local::TMP_DIR;
use std::fs;
use std::io::Read;
use std::path::Path;

/// Builds a database holding `from` in `root/tmp/` and renames it to `root/meta/catalog.db`
/// (durably), with the repository's file mode. Replaces nothing: the caller checked that
/// there is no database yet, under the catalog lock (or at init).
pub fn install_db(root: &Path, from: &Catalog, block_size: u32, modes: Modes) -> Result<()> {
    let tmp = root
        .join(TMP_DIR)
        .join(format!("catalog-{}.db", uuid::Uuid::new_v4()));
    // Created first with the repository's mode: SQLite gives its -wal and -shm files the
    // mode of the database file.
    create_file(&tmp, modes.file()).map_err(|e| Error::io("create", &tmp, e))?;
    let guard = TempPath::new(tmp.clone());
    super::db::schema::build(&tmp, from, block_size)?;
    let file = fs::File::open(&tmp).map_err(|e| Error::io("open", &tmp, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    let dest = root.join(CATALOG_DB);
    fs::rename(&tmp, &dest).map_err(|e| Error::io("rename", &dest, e))?;
    guard.keep();
    sync_dir(&root.join(META_DIR))?;
    sync_dir(&root.join(TMP_DIR))?;
    Ok(())
}

/// Migrates a format-1 repository: `catalog.json` becomes `catalog.db`. Says so on stderr.
pub fn migrate(repo: &Repository) -> Result<()> {
    let root = repo.root();
    let _lock = lock::lock_exclusive(&root.join(CATALOG_LOCK))?;
    let json = root.join(CATALOG_FILE);
    if root.join(CATALOG_DB).exists() {
        // Another process migrated meanwhile, or a crash came after the rename.
        return retire(root);
    }
    let Some(mut file) = open_regular(&json)? else {
        return Err(Error::Corrupt {
            path: root.join(CATALOG_DB),
            reason: "the catalog is missing".into(),
        });
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", &json, e))?;
    let catalog = Catalog::decode_valid(&json, &bytes, repo.block_size()).map_err(|e| match e {
        Error::Corrupt { path, reason } => Error::Corrupt {
            path,
            reason: format!(
                "{reason}; the format-1 catalog must be valid to be migrated (fix it with the \
                 arch release that wrote it)"
            ),
        },
        other => other,
    })?;
    install_db(root, &catalog, repo.block_size(), repo.modes())?;
    retire(root)?;
    eprintln!(
        "arch: migrated the catalog of {} to format 2 (meta/catalog.db: {} objects, {} volumes)",
        root.display(),
        catalog.objects.len(),
        catalog.volumes.len()
    );
    Ok(())
}

/// Removes the format-1 catalog once the database holds everything (no-op when gone).
fn retire(root: &Path) -> Result<()> {
    let json = root.join(CATALOG_FILE);
    match fs::remove_file(&json) {
        Ok(()) => sync_dir(&root.join(META_DIR)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", &json, e)),
    }
}
