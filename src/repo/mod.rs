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
mod remote;
pub use remote::{DataLocation, check_sole_store_user};

use crate::error::{Error, Result};
use crate::storage::Backend;
use crate::storage::fsutil::{
    Modes, atomic_write_mode, create_dir, open_regular, set_mode, sync_dir,
};
use crate::storage::local::{LocalBackend, TMP_DIR};
use catalog::Catalog;
use config::{Config, PacksChoice};
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
    /// The local directory's `blocks/`+`maps/`, or the object store named by `store`.
    backend: Box<dyn Backend>,
    /// The catalog on PostgreSQL (from `arch.toml`); None for `meta/catalog.db`. Its
    /// advisory locks replace the files of `locks/` for the locks every host must see.
    catalog_url: Option<db::pg::CatalogUrl>,
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
        Repository::init_with(dir, block_size, group, None, None, PacksChoice::Off)
            .map(|(repo, _)| repo)
    }

    /// [`Repository::init_shared`], with blocks and maps in the object store `store`
    /// (`s3://BUCKET[/PREFIX]`) and the catalog on PostgreSQL at `catalog`
    /// (`postgres://USER@HOST[:PORT]/DB[?schema=NAME]`) when given: the repository there is
    /// created, or joined when it exists (same block size, same store). DIR then holds no
    /// `blocks/` nor `maps/` (with a store) and no `meta/catalog.db` (with a catalog).
    /// `packs`: whether blocks are kept many to a file (`packs/`; format 2, see
    /// [`PacksChoice::resolve`]). Returns the repository and whether it was created (false:
    /// joined).
    pub fn init_with(
        dir: &Path,
        block_size: u64,
        group: Option<&Group>,
        store: Option<&str>,
        catalog: Option<&str>,
        packs: PacksChoice,
    ) -> Result<(Repository, bool)> {
        let mut config = Config::new(block_size)?;
        if let Some(url) = store {
            config.store = Some(crate::storage::s3::StoreUrl::parse(url)?.to_string());
        }
        config.set_packs(packs.resolve(block_size, config.store.as_deref())?);
        let catalog_url = catalog.map(db::pg::CatalogUrl::parse).transpose()?;
        config.catalog = catalog_url.as_ref().map(|u| u.to_string());
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
        let missing = match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() && !is_leftover_skeleton(dir) {
                    return Err(Error::DirectoryNotEmpty {
                        path: dir.to_path_buf(),
                    });
                }
                false
            }
            Err(e) if e.kind() == ErrorKind::NotFound => true,
            Err(e) => return Err(Error::io("read directory", dir, e)),
        };
        // The store's repository first: a store that cannot be reached, or refuses (missing
        // bucket, credentials, another block size), leaves DIR untouched. A failure after this
        // leaves a store repository that a retry joins.
        let remote = match config.store {
            Some(_) => Some(remote::create_or_join(&config)?),
            None => None,
        };
        // Then the catalog, which names the store: a host joining with another store (or
        // block size) is refused here, before DIR is touched.
        let catalog_created = match &catalog_url {
            Some(url) => Some(db::pg::create_or_join(
                url,
                &config,
                config.store.as_deref(),
            )?),
            None => None,
        };
        if missing {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
            }
            fs::create_dir(dir).map_err(|e| Error::io("create directory", dir, e))?;
        }
        // The root's mode decides the modes of everything below (setgid = shared), so it is
        // set first and explicitly: a directory made inside a setgid parent inherits the bit.
        if let Some(g) = group {
            g.chown(dir)?;
        }
        set_mode(dir, modes.dir())?;
        let tmp = dir.join(TMP_DIR);
        let local_dirs: &[&str] = if config.store.is_some() {
            create_dir(&tmp, modes)?;
            &[META_DIR, LOCKS_DIR, VOLUMES_DIR, TMP_DIR]
        } else {
            LocalBackend::create_layout(dir)?;
            if config.packs {
                // Created at init (a commit also creates it when missing).
                create_dir(&dir.join(crate::storage::pack::PACKS_DIR), modes)?;
                &[
                    "blocks",
                    "maps",
                    "packs",
                    META_DIR,
                    LOCKS_DIR,
                    VOLUMES_DIR,
                    TMP_DIR,
                ]
            } else {
                &["blocks", "maps", META_DIR, LOCKS_DIR, VOLUMES_DIR, TMP_DIR]
            }
        };
        for sub in [META_DIR, LOCKS_DIR, VOLUMES_DIR] {
            create_dir(&dir.join(sub), modes)?;
        }
        if catalog_url.is_none() {
            migrate::install_db(dir, &Catalog::default(), config.block_size as u32, modes)?;
        }
        for sub in local_dirs {
            sync_dir(&dir.join(sub))?;
        }
        // Registered before the local marker: an init that fails here leaves a skeleton that
        // a retry reuses.
        let created = match &remote {
            Some((backend, created)) => {
                remote::register_member(backend, dir, modes, config.catalog.as_deref())?;
                *created
            }
            None => true,
        };
        let created = catalog_created.unwrap_or(created);
        // Last: the marker that makes the directory a repository.
        atomic_write_mode(
            &tmp,
            &dir.join(CONFIG_FILE),
            config.to_toml().as_bytes(),
            modes.sealed(),
        )?;
        Ok((Repository::open(dir)?, created))
    }

    /// Opens the repository rooted at `root`.
    ///
    /// Refused as damaged when a directory of the layout is a symbolic link or missing (see
    /// [`layout`]); `arch fsck` opens with [`Repository::open_for_check`] to report it.
    pub fn open(root: &Path) -> Result<Repository> {
        let repo = Repository::open_for_check(root)?;
        let faults = layout::faults_with(root, repo.config.store.is_none());
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
        let catalog_url = config
            .catalog
            .as_deref()
            .map(db::pg::CatalogUrl::parse)
            .transpose()?;
        let modes = Modes::of_dir(root);
        let locks = root.join(LOCKS_DIR);
        // Created when missing; anything else in its place is reported by the layout check.
        if fs::symlink_metadata(&locks).is_err() {
            create_dir(&locks, modes)?;
        }
        let backend: Box<dyn Backend> = match config.store {
            Some(_) => Box::new(remote::open(root, &config)?),
            None if config.packs => Box::new(LocalBackend::with_packs(root, config.block_size)),
            None => Box::new(LocalBackend::new(root)),
        };
        Ok(Repository {
            root: root.to_path_buf(),
            config,
            modes,
            backend,
            catalog_url,
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
        self.backend.as_ref()
    }

    /// Where blocks and maps live: this directory or the object store.
    pub fn data_location(&self) -> remote::DataLocation {
        match self.backend.as_s3() {
            Some(s3) => remote::DataLocation {
                kind: "s3",
                location: s3.url().to_string(),
                endpoint: Some(s3.endpoint().to_string()),
            },
            None => remote::DataLocation {
                kind: "local",
                location: fs::canonicalize(&self.root)
                    .unwrap_or_else(|_| self.root.clone())
                    .display()
                    .to_string(),
                endpoint: None,
            },
        }
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

    /// Where the catalog lives: the PostgreSQL URL (without credentials), or None for
    /// `meta/catalog.db`.
    pub fn catalog_url(&self) -> Option<&db::pg::CatalogUrl> {
        self.catalog_url.as_ref()
    }

    /// Takes lock `name` (a file `locks/NAME.lock`, or the PostgreSQL advisory lock of that
    /// name when the catalog is there); waits unless `wait` is false, then None when held.
    fn take_lock(&self, path: &Path, shared: bool, wait: bool) -> Result<Option<FileLock>> {
        if let Some(url) = &self.catalog_url {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(
                db::pg::advisory::session_lock(url, &name, shared, wait)?.map(FileLock::catalog)
            );
        }
        match (shared, wait) {
            (true, true) => lock::lock_shared(path).map(Some),
            (false, true) => lock::lock_exclusive(path).map(Some),
            (true, false) => lock::lock_shared_nonblocking(path),
            (false, false) => lock::try_lock_exclusive(path),
        }
    }

    fn take_waiting(&self, path: &Path, shared: bool) -> Result<FileLock> {
        Ok(self
            .take_lock(path, shared, true)?
            .expect("a waiting lock is always taken"))
    }

    /// Exclusive lock of volume `id`: held by whatever changes its content or metadata.
    pub fn lock_volume_exclusive(&self, id: &str) -> Result<FileLock> {
        self.take_waiting(&self.volume_lock_path(id)?, false)
    }

    /// [`Repository::lock_volume_exclusive`] without waiting: None when another process
    /// holds the volume.
    pub fn try_lock_volume_exclusive(&self, id: &str) -> Result<Option<FileLock>> {
        self.take_lock(&self.volume_lock_path(id)?, false, false)
    }

    /// Shared lock of volume `id`: held by readers, so no snapshot moves blocks under them.
    pub fn lock_volume_shared(&self, id: &str) -> Result<FileLock> {
        self.take_waiting(&self.volume_lock_path(id)?, true)
    }

    /// `locks/volume-<id>.lock`; refused unless `id` is a uuid, as [`Repository::volume_dir`].
    pub fn volume_lock_path(&self, id: &str) -> Result<PathBuf> {
        let id = self.checked_volume_id(id)?;
        Ok(self.root.join(LOCKS_DIR).join(format!("volume-{id}.lock")))
    }

    /// Shared data lock: held while an operation writes or reads blocks.
    pub fn lock_data_shared(&self) -> Result<FileLock> {
        self.take_waiting(&self.root.join(DATA_LOCK), true)
    }

    /// Exclusive data lock: no other operation touches blocks while it is held.
    pub fn lock_data_exclusive(&self) -> Result<FileLock> {
        self.take_waiting(&self.root.join(DATA_LOCK), false)
    }

    /// [`Repository::lock_data_exclusive`] without waiting: None while another command holds
    /// the data lock (shared or exclusive).
    pub fn try_lock_data_exclusive(&self) -> Result<Option<FileLock>> {
        self.take_lock(&self.root.join(DATA_LOCK), false, false)
    }

    /// Opens the catalog database, migrating a format-1 `catalog.json` first (once; see
    /// [`migrate`]). One connection per call: cheap next to the fsync of any change.
    pub fn catalog(&self) -> Result<db::Db> {
        if let Some(url) = &self.catalog_url {
            return db::Db::open_pg(url, self.block_size(), self.config.store.as_deref());
        }
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
    let known = [
        "blocks",
        "maps",
        crate::storage::pack::PACKS_DIR,
        META_DIR,
        LOCKS_DIR,
        VOLUMES_DIR,
        TMP_DIR,
    ];
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
