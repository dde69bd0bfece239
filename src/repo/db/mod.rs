//! The catalog seam: every metadata query and change goes through [`Db`], a connection to
//! the catalog: `meta/catalog.db` (SQLite, WAL, `synchronous=FULL`), or a schema of a
//! PostgreSQL database shared by many hosts ([`pg`]). Services never hold the whole
//! catalog: they ask for one record, or stream records in name order through a callback.
//!
//! Invariants: a change is one [`Db::write`] transaction (SQLite `BEGIN IMMEDIATE`;
//! PostgreSQL: the repository's advisory transaction lock taken first, so writers queue the
//! same way), so a multi-record change (move, snapshot, register) commits whole or not at
//! all, and a command that returned is durable. Concurrent processes wait for each other
//! (never giving up, except on SIGINT/SIGTERM); nobody sees "database is locked". Every row
//! read is validated with the record rules ([`ObjectRecord::faults`],
//! [`VolumeRecord::faults`]) before any of its values is used, so a damaged or hostile
//! database gives [`Error::Corrupt`], never a path built from an unchecked id.

mod conn;
mod cursor;
pub mod pg;
mod pool;
mod rows;
pub mod schema;

use crate::error::{Error, Result};
use crate::repo::records::{ObjectRecord, VolumeRecord};
use conn::{Arg, Conn, EngineError, QueryError, Row};
use pg::CatalogUrl;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use rows::ObjectFilter;

/// An open catalog.
pub struct Db {
    /// The database file, or the PostgreSQL URL (without credentials) for messages.
    path: PathBuf,
    conn: Conn,
    /// The PostgreSQL location, when the catalog is there.
    url: Option<CatalogUrl>,
    /// The repository's block size, which every record must carry.
    block_size: u32,
}

impl Drop for Db {
    fn drop(&mut self) {
        // Only a connection with no transaction open is reused (a panic in a transaction
        // body leaves one open: that connection is closed instead).
        if let Some(url) = &self.url
            && let Ok(empty) = Connection::open_in_memory()
            && let Conn::Pg(conn) = std::mem::replace(&mut self.conn, Conn::Sqlite(empty))
            && let Some(client) = (*conn).into_reusable()
        {
            pool::put_back(url, client);
        }
    }
}

/// A SQLite failure on the catalog at `path`, as a repository error. A file that is not a
/// database, or is damaged, is [`Error::Corrupt`]; anything else (full disk, permissions)
/// is I/O.
pub(crate) fn sql_error(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ffi::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) =>
        {
            Error::Corrupt {
                path: path.to_path_buf(),
                reason: format!("the catalog database is damaged ({e})"),
            }
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => Error::NoSpace {
            path: path.to_path_buf(),
        },
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::OperationInterrupted => {
            match crate::interrupt::check() {
                Err(e) => e,
                Ok(()) => Error::io("query", path, std::io::Error::other(e.to_string())),
            }
        }
        _ => Error::io(
            "use catalog database",
            path,
            std::io::Error::other(e.to_string()),
        ),
    }
}

/// Refuses to write record `name` when it has `faults`.
fn refuse_faults(name: &str, faults: Vec<String>) -> Result<()> {
    match faults.first() {
        None => Ok(()),
        Some(fault) => Err(Error::invalid(format!(
            "this change would leave an invalid record '{}' ({fault}); nothing was written",
            crate::services::names::escape_control(name)
        ))),
    }
}

/// Waits for another process's transaction: retries forever (a few ms apart) unless an
/// interrupt arrived.
fn busy(attempt: i32) -> bool {
    if crate::interrupt::received().is_some() {
        return false;
    }
    std::thread::sleep(Duration::from_millis(attempt.clamp(1, 20) as u64));
    true
}

impl Db {
    /// Opens the existing catalog database at `path` for a repository of `block_size`.
    /// Refused as corrupt unless it is a regular file holding catalog version
    /// [`schema::CATALOG_DB_VERSION`].
    pub fn open(path: &Path, block_size: u32) -> Result<Db> {
        if crate::storage::fsutil::open_regular(path)?.is_none() {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                reason: "the catalog is missing".into(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(path, e))?;
        conn.busy_handler(Some(busy))
            .map_err(|e| sql_error(path, e))?;
        conn.execute_batch("PRAGMA synchronous=FULL;")
            .map_err(|e| sql_error(path, e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sql_error(path, e))?;
        let db = Db {
            path: path.to_path_buf(),
            conn: Conn::Sqlite(conn),
            url: None,
            block_size,
        };
        if version != schema::CATALOG_DB_VERSION {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "catalog version {version} is not supported (this arch reads {})",
                    schema::CATALOG_DB_VERSION
                ),
            });
        }
        Ok(db)
    }

    /// Opens the catalog of the repository at `url` (PostgreSQL), of `block_size`, whose
    /// blocks are in `store` (arch.toml's; None: the hosts' directories): refused unless the
    /// schema holds a catalog this arch reads, of that block size and store. A connection
    /// reused from the pool was checked when it was opened.
    pub fn open_pg(url: &CatalogUrl, block_size: u32, store: Option<&str>) -> Result<Db> {
        let client = match pool::take(url) {
            Some(c) => c,
            None => pg::open(url, block_size.into(), store)?,
        };
        Ok(Db::from_pg_client(url, client, block_size))
    }

    fn from_pg_client(url: &CatalogUrl, client: postgres::Client, block_size: u32) -> Db {
        Db {
            path: PathBuf::from(url.to_string()),
            conn: Conn::Pg(Box::new(cursor::PgConn::new(client))),
            url: Some(url.clone()),
            block_size,
        }
    }

    /// Another connection to this PostgreSQL catalog (already checked by this one), for a
    /// transaction started while a query streams in a transaction of its own: that
    /// transaction must commit by itself, so it cannot run on this connection.
    fn sibling(&self) -> Result<Option<Db>> {
        match (&self.conn, &self.url) {
            (Conn::Pg(c), Some(url)) if c.state() == cursor::TxState::Streaming => {
                let client = match pool::take(url) {
                    Some(c) => c,
                    None => pg::connect(url)?,
                };
                Ok(Some(Db::from_pg_client(url, client, self.block_size)))
            }
            _ => Ok(None),
        }
    }

    pub(crate) fn from_connection(path: PathBuf, conn: Connection, block_size: u32) -> Db {
        conn.busy_handler(Some(busy)).ok();
        Db {
            path,
            conn: Conn::Sqlite(conn),
            url: None,
            block_size,
        }
    }

    /// The SQLite connection of a catalog made by [`Db::from_connection`].
    pub(crate) fn into_connection(mut self) -> Connection {
        let placeholder = Conn::Sqlite(Connection::open_in_memory().expect("in-memory SQLite"));
        match std::mem::replace(&mut self.conn, placeholder) {
            Conn::Sqlite(c) => c,
            Conn::Pg(_) => unreachable!("from_connection makes SQLite catalogs only"),
        }
    }

    /// The database file (for PostgreSQL, its URL without credentials).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The PostgreSQL location of the catalog; None for SQLite.
    pub fn url(&self) -> Option<&CatalogUrl> {
        self.url.as_ref()
    }

    fn err(&self, e: EngineError) -> Error {
        match (e, &self.url) {
            (EngineError::Sqlite(e), _) => sql_error(&self.path, e),
            (EngineError::Pg(e), Some(url)) => pg::error(url, e),
            (EngineError::Pg(e), None) => Error::io(
                "use catalog database",
                &self.path,
                std::io::Error::other(e.to_string()),
            ),
        }
    }

    /// Runs one statement; the number of rows it changed.
    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        self.conn.execute(sql, args).map_err(|e| self.err(e))
    }

    /// Runs a query, passing each row to `f` until it returns false.
    fn query(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        f: &mut dyn FnMut(Row<'_>) -> Result<bool>,
    ) -> Result<()> {
        self.conn.query(sql, args, f).map_err(|e| match e {
            QueryError::Engine(e) => self.err(e),
            QueryError::Caller(e) => e,
        })
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    /// Runs `change` in one write transaction (`BEGIN IMMEDIATE`: it waits for the writer
    /// before reading, so what it reads stays true until it commits). Commits when `change`
    /// succeeds, rolls back otherwise.
    pub fn write<T>(&self, change: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        if let Some(other) = self.sibling()? {
            return other.write(change);
        }
        match (&self.conn, &self.url) {
            (Conn::Pg(conn), Some(url)) => self.transaction("BEGIN", |db| {
                let key = pg::advisory::key(&url.schema, "catalog");
                pg::advisory::xact_lock(&mut conn.client(), url, &key)?;
                change(db)
            }),
            _ => self.transaction("BEGIN IMMEDIATE", change),
        }
    }

    /// Runs `query` in one read transaction: every query in it sees the same committed
    /// state, whatever other processes commit meanwhile.
    pub fn read<T>(&self, query: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        if let Some(other) = self.sibling()? {
            return other.read(query);
        }
        match self.conn {
            Conn::Pg(_) => self.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ", query),
            Conn::Sqlite(_) => self.transaction("BEGIN", query),
        }
    }

    fn transaction<T>(&self, begin: &str, body: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        self.conn.begin(begin).map_err(|e| self.err(e))?;
        match body(self) {
            Ok(out) => {
                if let Err(e) = self.conn.end("COMMIT") {
                    let _ = self.conn.end("ROLLBACK");
                    return Err(self.err(e));
                }
                Ok(out)
            }
            Err(e) => {
                let _ = self.conn.end("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The object named `full` (`container/object`), validated.
    pub fn object(&self, full: &str) -> Result<Option<ObjectRecord>> {
        let Some((container, name)) = full.split_once('/') else {
            return Ok(None);
        };
        let mut out = None;
        self.scan_objects(
            &format!(
                "{} WHERE o.container = ?1 AND o.name = ?2",
                rows::OBJECT_SELECT
            ),
            &[container.into(), name.into()],
            &mut |full, rec| {
                out = Some(rec);
                let _ = full;
                Ok(false)
            },
        )?;
        Ok(out)
    }

    /// True when an object named `full` exists.
    pub fn has_object(&self, full: &str) -> Result<bool> {
        let Some((container, name)) = full.split_once('/') else {
            return Ok(false);
        };
        self.exists(
            "SELECT 1 FROM objects WHERE container = ?1 AND name = ?2",
            &[container.into(), name.into()],
        )
    }

    /// True when a volume named `name` exists.
    pub fn has_volume(&self, name: &str) -> Result<bool> {
        self.exists("SELECT 1 FROM volumes WHERE name = ?1", &[name.into()])
    }

    fn exists(&self, sql: &str, p: &[Arg<'_>]) -> Result<bool> {
        let mut found = false;
        self.query(sql, p, &mut |_| {
            found = true;
            Ok(false)
        })?;
        Ok(found)
    }

    /// Objects matching `filter`, in name order (container, then object name), each passed
    /// to `f` as it is read; `f` returns false to stop.
    pub fn for_each_object(
        &self,
        filter: &ObjectFilter,
        f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
    ) -> Result<()> {
        rows::for_each_object(self, filter, f)
    }

    /// Every kept version of object `full` (of every object when None), newest first within
    /// an object, each as the record of that version (no image registration), validated.
    pub fn for_each_version(
        &self,
        full: Option<&str>,
        f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
    ) -> Result<()> {
        rows::for_each_version(self, full, true, f)
    }

    /// [`Db::for_each_version`] without the record checks (column types are still checked):
    /// for fsck, which reports every invalid version.
    pub fn for_each_version_unchecked(
        &self,
        full: Option<&str>,
        f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
    ) -> Result<()> {
        rows::for_each_version(self, full, false, f)
    }

    /// Every current object in name order without the record checks (column types are still
    /// checked): for fsck, which reports every invalid record.
    pub fn for_each_object_unchecked(
        &self,
        f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
    ) -> Result<()> {
        let sql = format!("{} ORDER BY o.container, o.name", rows::OBJECT_SELECT);
        rows::scan_objects_checked(self, &sql, &[], false, f)
    }

    /// Every volume in name order without the record checks (column types are still
    /// checked): for fsck.
    pub fn for_each_volume_unchecked(
        &self,
        f: &mut dyn FnMut(String, VolumeRecord) -> Result<bool>,
    ) -> Result<()> {
        let sql = format!("{} ORDER BY name", rows::VOLUME_SELECT);
        rows::scan_volumes_checked(self, &sql, &[], false, f)
    }

    /// Objects whose uuid starts with `prefix` (all of them for an empty prefix), plus the
    /// images whose display name is `display`; for reference resolution.
    pub fn objects_by_id_or_display(
        &self,
        prefix: &str,
        display: &str,
        f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
    ) -> Result<()> {
        rows::objects_by_id_or_display(self, prefix, display, f)
    }

    /// Writes the object named `full` as `rec` (insert, or update of the object with the
    /// same uuid, which may move it). The version `rec.version` is inserted, or updated in
    /// place when it exists: older versions stay. Any other object already at `full` is
    /// removed with its history first, as a replaced value would be.
    ///
    /// A record that breaks a rule of the catalog is refused, nothing written: every later
    /// read would refuse it (a bug, or an input the change failed to check).
    pub fn put_object(&self, full: &str, rec: &ObjectRecord) -> Result<()> {
        refuse_faults(full, rec.faults(full, self.block_size))?;
        rows::put_object(self, full, rec)
    }

    /// Moves object `from` to `to` (keeping uuid, versions and image registration); an
    /// object at `to` is removed with its history first.
    pub fn rename_object(&self, from: &str, to: &str) -> Result<()> {
        rows::rename_object(self, from, to)
    }

    /// Removes object `full` with every version and its image registration. Returns false
    /// when there was none.
    pub fn remove_object(&self, full: &str) -> Result<bool> {
        rows::remove_object(self, full)
    }

    /// The volume `name`, validated.
    pub fn volume(&self, name: &str) -> Result<Option<VolumeRecord>> {
        let mut out = None;
        rows::scan_volumes(
            self,
            &format!("{} WHERE name = ?1", rows::VOLUME_SELECT),
            &[name.into()],
            &mut |_, rec| {
                out = Some(rec);
                Ok(false)
            },
        )?;
        Ok(out)
    }

    /// Every volume in name order, each passed to `f` as it is read; `f` returns false to
    /// stop.
    pub fn for_each_volume(
        &self,
        f: &mut dyn FnMut(String, VolumeRecord) -> Result<bool>,
    ) -> Result<()> {
        rows::scan_volumes(
            self,
            &format!("{} ORDER BY name", rows::VOLUME_SELECT),
            &[],
            f,
        )
    }

    /// Removes version `version` of object `uuid` (never the current one: refused).
    pub fn remove_version(&self, uuid: &str, version: u64) -> Result<()> {
        let n = self.execute(
            "DELETE FROM versions WHERE uuid = ?1 AND version = ?2 AND NOT EXISTS \
             (SELECT 1 FROM objects o WHERE o.uuid = ?1 AND o.version = ?2)",
            &[uuid.into(), Arg::Int(version as i64)],
        )?;
        if n == 0 {
            return Err(Error::invalid(format!(
                "version {version} of object {uuid} is current or gone; nothing was removed"
            )));
        }
        Ok(())
    }

    /// Inserts or replaces volume `name`.
    /// Refused, nothing written, when the record breaks a rule of the catalog.
    pub fn put_volume(&self, name: &str, rec: &VolumeRecord) -> Result<()> {
        refuse_faults(name, rec.faults(name, self.block_size))?;
        rows::put_volume(self, name, rec)
    }

    /// Removes volume `name`; false when there was none.
    pub fn remove_volume(&self, name: &str) -> Result<bool> {
        let n = self.execute("DELETE FROM volumes WHERE name = ?1", &[name.into()])?;
        Ok(n > 0)
    }

    /// Every map a kept object version or a volume references, each passed to `f` with the
    /// resource that holds it (`container/object`, `container/object@version` for an old
    /// version, or the volume name). Validated like every other read.
    pub fn for_each_map_reference(
        &self,
        f: &mut dyn FnMut(crate::storage::MapId, String) -> Result<()>,
    ) -> Result<()> {
        rows::for_each_map_reference(self, f)
    }

    /// Runs SQLite's own consistency check; the problems it reports (empty when sound).
    /// A PostgreSQL server keeps its own storage consistent (WAL, checksums): nothing to run.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if let Conn::Pg(_) = self.conn {
            return Ok(out);
        }
        self.query("PRAGMA integrity_check", &[], &mut |row| {
            match row.get(0) {
                conn::Value::Text(line) if line == "ok" => {}
                conn::Value::Text(line) => out.push(line.clone()),
                other => out.push(format!("{other:?}")),
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn scan_objects(
        &self,
        sql: &str,
        p: &[Arg<'_>],
        f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
    ) -> Result<()> {
        rows::scan_objects(self, sql, p, f)
    }
}

#[cfg(test)]
mod pg_tests;
#[cfg(test)]
mod tests;
