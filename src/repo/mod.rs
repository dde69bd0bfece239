//! A repository on disk: finding and opening it, its configuration, its locks, and
//! transactions on its metadata catalog.
//!
//! Layout (see docs/FORMAT.md): `arch.toml`, `blocks/`, `maps/`, `meta/catalog.db`,
//! `locks/`, `tmp/`. `arch.toml` is written last at init: its presence marks a repository.

pub mod catalog;
pub mod config;
pub mod db;
pub mod group;
pub mod layout;
mod locate;
pub mod lock;
mod migrate;
pub mod records;

use crate::error::{Error, Result};
use crate::storage::Backend;
use crate::storage::fsutil::{
    Modes, atomic_write_mode, create_dir, open_regular, set_mode, sync_dir,
};
use crate::storage::local::{LocalBackend, TMP_DIR};
use catalog::Catalog;
use config::Config;
use group::Group;
use lock::FileLock;
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "arch.toml";
pub const META_DIR: &str = "meta";
/// The format-1 catalog (one JSON file), migrated to [`CATALOG_DB`] on first open.
pub const CATALOG_FILE: &str = "meta/catalog.json";
/// The catalog database (SQLite; docs/FORMAT.md "Catalog database").
pub const CATALOG_DB: &str = "meta/catalog.db";
pub const LOCKS_DIR: &str = "locks";
/// Shared by every operation that writes or reads block data; exclusive for gc and repair,
/// so garbage collection never runs while an operation has unreferenced blocks in flight.
pub const DATA_LOCK: &str = "locks/data.lock";
/// Private blocks of volumes: `volumes/<id>/<epoch>/<index>`.
pub const VOLUMES_DIR: &str = "volumes";
/// Exclusive while the catalog is migrated and while tmp/ is cleaned (the migration stages
/// its database in tmp/). Catalog changes themselves are database transactions.
pub const CATALOG_LOCK: &str = "locks/catalog.lock";

/// An open repository.
pub struct Repository {
    root: PathBuf,
    config: Config,
    modes: Modes,
    backend: LocalBackend,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("root", &self.root)
            .field("config", &self.config)
            .finish()
    }
}

impl Repository {
    /// Creates a repository in `dir` (created if missing), private to its owner. Refused
    /// when `dir` is already a repository or is a non-empty directory.
    pub fn init(dir: &Path, block_size: u64) -> Result<Repository> {
        Repository::init_shared(dir, block_size, None)
    }

    /// [`Repository::init`], shared with `group` when given: the tree belongs to the group,
    /// directories are setgid 2770 and files 0660 (see docs/FORMAT.md, Permissions).
    pub fn init_shared(dir: &Path, block_size: u64, group: Option<&Group>) -> Result<Repository> {
        let config = Config::new(block_size)?;
        if let Some(g) = group {
            g.check_member()?;
        }
        let modes = if group.is_some() {
            Modes::SHARED
        } else {
            Modes::PRIVATE
        };
        if dir.join(CONFIG_FILE).exists() {
            return Err(Error::AlreadyARepository {
                path: dir.to_path_buf(),
            });
        }
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() && !is_leftover_skeleton(dir) {
                    return Err(Error::DirectoryNotEmpty {
                        path: dir.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent)
                        .map_err(|e| Error::io("create directory", parent, e))?;
                }
                fs::create_dir(dir).map_err(|e| Error::io("create directory", dir, e))?;
            }
            Err(e) => return Err(Error::io("read directory", dir, e)),
        }
        // The root's mode decides the modes of everything below (setgid = shared), so it is
        // set first and explicitly: a directory made inside a setgid parent inherits the bit.
        if let Some(g) = group {
            g.chown(dir)?;
        }
        set_mode(dir, modes.dir())?;
        LocalBackend::create_layout(dir)?;
        for sub in [META_DIR, LOCKS_DIR, VOLUMES_DIR] {
            create_dir(&dir.join(sub), modes)?;
        }
        let tmp = dir.join(TMP_DIR);
        migrate::install_db(dir, &Catalog::default(), config.block_size as u32, modes)?;
        for sub in ["blocks", "maps", META_DIR, LOCKS_DIR, VOLUMES_DIR, TMP_DIR] {
            sync_dir(&dir.join(sub))?;
        }
        // Last: the marker that makes the directory a repository.
        atomic_write_mode(
            &tmp,
            &dir.join(CONFIG_FILE),
            config.to_toml().as_bytes(),
            modes.sealed(),
        )?;
        Repository::open(dir)
    }

    /// Opens the repository rooted at `root`.
    ///
    /// Refused as damaged when a directory of the layout is a symbolic link or missing (see
    /// [`layout`]); `arch fsck` opens with [`Repository::open_for_check`] to report it.
    pub fn open(root: &Path) -> Result<Repository> {
        let repo = Repository::open_for_check(root)?;
        let faults = layout::faults(root);
        if let Some(first) = faults.first() {
            let more = match faults.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            return Err(Error::Corrupt {
                path: first.path.clone(),
                reason: format!(
                    "{first}{more}; arch never makes links or files there. Replace it with a \
                     real directory (after moving its content back); `arch fsck` lists every \
                     problem"
                ),
            });
        }
        Ok(repo)
    }

    /// Opens the repository rooted at `root` without checking its directory layout: for
    /// `arch fsck`, which reports what [`layout::faults`] finds instead of refusing it.
    pub fn open_for_check(root: &Path) -> Result<Repository> {
        let cfg_path = root.join(CONFIG_FILE);
        let Some(mut file) = open_regular(&cfg_path)? else {
            return Err(Error::NotARepository {
                path: root.to_path_buf(),
            });
        };
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| Error::io("read", &cfg_path, e))?;
        let config = Config::parse(root, &text)?;
        let modes = Modes::of_dir(root);
        let locks = root.join(LOCKS_DIR);
        // Created when missing; anything else in its place is reported by the layout check.
        if fs::symlink_metadata(&locks).is_err() {
            create_dir(&locks, modes)?;
        }
        Ok(Repository {
            root: root.to_path_buf(),
            config,
            modes,
            backend: LocalBackend::new(root),
        })
    }

    /// Finds the repository: `explicit` (from `-R` or `ARCH_REPO`) when given, else `start`
    /// and its parents, as git does.
    pub fn discover(explicit: Option<&Path>, start: &Path) -> Result<Repository> {
        Repository::open(&Repository::find_root(explicit, start)?)
    }

    /// [`Repository::discover`] for `arch fsck`: the layout is reported, not refused.
    pub fn discover_for_check(explicit: Option<&Path>, start: &Path) -> Result<Repository> {
        Repository::open_for_check(&Repository::find_root(explicit, start)?)
    }

    fn find_root(explicit: Option<&Path>, start: &Path) -> Result<PathBuf> {
        if let Some(dir) = explicit {
            if !dir.join(CONFIG_FILE).exists() {
                if let Some(e) = locate::misplaced(dir) {
                    return Err(e);
                }
            }
            return Ok(dir.to_path_buf());
        }
        let mut dir = Some(start);
        while let Some(d) = dir {
            if d.join(CONFIG_FILE).is_file() {
                return Ok(d.to_path_buf());
            }
            dir = d.parent();
        }
        Err(
            locate::misplaced(start).unwrap_or_else(|| Error::NoRepository {
                start: start.to_path_buf(),
            }),
        )
    }

    /// Root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.config.block_size as u32
    }

    /// The configuration read from `arch.toml`.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The modes of what this repository creates (private, or shared with a group).
    pub fn modes(&self) -> Modes {
        self.modes
    }

    /// The block and map store.
    pub fn backend(&self) -> &dyn Backend {
        &self.backend
    }

    /// The local backend (paths of blocks and maps, for integrity checks).
    pub fn local_backend(&self) -> &LocalBackend {
        &self.backend
    }

    /// Directory for temporary files (same filesystem as the store).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// Where the private blocks of this repository's volumes live (see
    /// `services::volumes::private`; the wiring point for a remote store is there).
    pub fn private_store(&self) -> Box<dyn crate::services::volumes::private::PrivateStore + '_> {
        crate::services::volumes::private::for_repository(self)
    }

    /// The private directory of volume `id` (holding one sub-directory per epoch). Refused
    /// unless `id` is a uuid, so no id read from a damaged catalog can name a path outside
    /// `volumes/` (the catalog is checked on read too; this is the second line).
    ///
    /// Refused as damaged when something other than a real directory stands there (a link
    /// would take the volume's reads, writes and removals outside the repository).
    pub fn volume_dir(&self, id: &str) -> Result<PathBuf> {
        let dir = self
            .root
            .join(VOLUMES_DIR)
            .join(self.checked_volume_id(id)?);
        if let Some(found) = layout::not_a_directory(&dir, true) {
            return Err(Error::Corrupt {
                reason: format!(
                    "the private directory of volume {id} is {found}, not a directory; \
                     `arch fsck` reports it"
                ),
                path: dir,
            });
        }
        Ok(dir)
    }

    fn checked_volume_id<'a>(&self, id: &'a str) -> Result<&'a str> {
        if records::is_uuid(id) {
            return Ok(id);
        }
        Err(Error::Corrupt {
            path: self.root.join(CATALOG_FILE),
            reason: format!(
                "volume id '{}' is not a uuid",
                crate::services::names::escape_control(id)
            ),
        })
    }

    /// Exclusive lock of volume `id`: held by whatever changes its content or metadata.
    pub fn lock_volume_exclusive(&self, id: &str) -> Result<FileLock> {
        lock::lock_exclusive(&self.volume_lock_path(id)?)
    }

    /// Shared lock of volume `id`: held by readers, so no snapshot moves blocks under them.
    pub fn lock_volume_shared(&self, id: &str) -> Result<FileLock> {
        lock::lock_shared(&self.volume_lock_path(id)?)
    }

    /// `locks/volume-<id>.lock`; refused unless `id` is a uuid, as [`Repository::volume_dir`].
    pub fn volume_lock_path(&self, id: &str) -> Result<PathBuf> {
        let id = self.checked_volume_id(id)?;
        Ok(self.root.join(LOCKS_DIR).join(format!("volume-{id}.lock")))
    }

    /// Shared data lock: held while an operation writes or reads blocks.
    pub fn lock_data_shared(&self) -> Result<FileLock> {
        lock::lock_shared(&self.root.join(DATA_LOCK))
    }

    /// Exclusive data lock: no other operation touches blocks while it is held.
    pub fn lock_data_exclusive(&self) -> Result<FileLock> {
        lock::lock_exclusive(&self.root.join(DATA_LOCK))
    }

    /// Opens the catalog database, migrating a format-1 `catalog.json` first (once; see
    /// [`migrate`]). One connection per call: cheap next to the fsync of any change.
    pub fn catalog(&self) -> Result<db::Db> {
        let path = self.root.join(CATALOG_DB);
        if !path.exists() {
            migrate::migrate(self)?;
        }
        db::Db::open(&path, self.block_size())
    }

    /// Runs `change` in one catalog transaction: committed (durably) when it succeeds,
    /// rolled back when it fails. Concurrent transactions wait for each other.
    pub fn transact<T>(&self, change: impl FnOnce(&db::Db) -> Result<T>) -> Result<T> {
        self.catalog()?.write(change)
    }
}

/// True when `dir` holds only what an interrupted `arch init` leaves (no `arch.toml`, and only
/// the skeleton directories, an empty catalog and the catalog being built in `tmp/`), so init
/// may be retried there.
fn is_leftover_skeleton(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let known = ["blocks", "maps", META_DIR, LOCKS_DIR, VOLUMES_DIR, TMP_DIR];
    entries.flatten().all(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        known.contains(&name.as_ref())
            && walkdir::WalkDir::new(e.path())
                .into_iter()
                .flatten()
                .all(|w| {
                    w.file_type().is_dir()
                        || w.path().ends_with(CATALOG_FILE)
                        || w.path().parent().is_some_and(|p| p.ends_with(META_DIR))
                        || w.path().parent().is_some_and(|p| p.ends_with(TMP_DIR))
                })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_open_and_discover_from_a_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        Repository::init(&root, 4096).unwrap();
        let sub = root.join("meta");
        let repo = Repository::discover(None, &sub).unwrap();
        assert_eq!(repo.root(), root);
        assert_eq!(repo.block_size(), 4096);
    }

    #[test]
    fn init_refuses_a_repository_and_a_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init(dir.path(), 4096).unwrap();
        assert!(matches!(
            Repository::init(dir.path(), 4096),
            Err(Error::AlreadyARepository { .. })
        ));
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("file"), b"x").unwrap();
        assert!(matches!(
            Repository::init(other.path(), 4096),
            Err(Error::DirectoryNotEmpty { .. })
        ));
    }

    #[test]
    fn failed_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path(), 4096).unwrap();
        let rec = records::tests::volume();
        repo.transact(|c| c.put_volume("kept", &rec)).unwrap();
        let r: Result<()> = repo.transact(|c| {
            c.remove_volume("kept")?;
            c.put_volume("new", &rec)?;
            Err(Error::invalid("no"))
        });
        assert!(r.is_err());
        let db = repo.catalog().unwrap();
        assert_eq!(db.volume("kept").unwrap(), Some(rec));
        assert_eq!(db.volume("new").unwrap(), None);
    }
}
