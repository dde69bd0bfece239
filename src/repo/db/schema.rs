//! The SQL schema of `meta/catalog.db` (catalog format 2, docs/FORMAT.md "Catalog
//! database"), and the making of a new database file: empty at init, or filled from a
//! format-1 `catalog.json` by the migration.
//!
//! The SQL is portable (plain types, explicit indexes, no SQLite-only clause) so that a
//! server database can hold the same schema; only the pragmas are SQLite's.

use super::{Db, sql_error};
use crate::error::Result;
use crate::repo::catalog::Catalog as JsonCatalog;
use rusqlite::Connection;
use std::path::Path;

/// `PRAGMA user_version` of a catalog database this arch reads and writes.
pub const CATALOG_DB_VERSION: i64 = 2;

/// The tables and indexes. Names are compared byte-wise (SQLite's BINARY collation; a
/// PostgreSQL catalog uses `COLLATE "C"`), which is the order listings promise.
pub const SCHEMA: &str = "
CREATE TABLE objects (
    uuid        VARCHAR(36)  NOT NULL PRIMARY KEY,
    container   TEXT         NOT NULL,
    name        TEXT         NOT NULL,
    version     BIGINT       NOT NULL,
    created     VARCHAR(64)  NOT NULL,
    UNIQUE (container, name)
);
CREATE TABLE versions (
    uuid         VARCHAR(36) NOT NULL,
    version      BIGINT      NOT NULL,
    bytes        BIGINT      NOT NULL,
    hash         VARCHAR(64) NOT NULL,
    map          VARCHAR(64) NOT NULL,
    block_size   INTEGER     NOT NULL,
    content_type TEXT        NOT NULL,
    meta         TEXT        NOT NULL,
    modified     VARCHAR(64) NOT NULL,
    PRIMARY KEY (uuid, version)
);
CREATE INDEX versions_map ON versions (map);
CREATE TABLE images (
    uuid             VARCHAR(36) NOT NULL PRIMARY KEY,
    name             TEXT        NOT NULL,
    owner            TEXT        NOT NULL,
    status           VARCHAR(16) NOT NULL,
    disk_format      VARCHAR(16) NOT NULL,
    container_format VARCHAR(16) NOT NULL,
    is_public        INTEGER     NOT NULL,
    is_snapshot      INTEGER     NOT NULL,
    created_at       VARCHAR(64) NOT NULL,
    updated_at       VARCHAR(64) NOT NULL,
    properties       TEXT        NOT NULL
);
CREATE INDEX images_name ON images (name);
CREATE TABLE volumes (
    name          TEXT        NOT NULL PRIMARY KEY,
    id            VARCHAR(36) NOT NULL UNIQUE,
    size          BIGINT      NOT NULL,
    block_size    INTEGER     NOT NULL,
    source        TEXT,
    source_object TEXT,
    base_map      VARCHAR(64) NOT NULL,
    epoch         BIGINT      NOT NULL,
    created_at    VARCHAR(64) NOT NULL,
    modified_at   VARCHAR(64) NOT NULL,
    status        VARCHAR(16) NOT NULL,
    customization TEXT        NOT NULL,
    creation      TEXT
);
CREATE INDEX volumes_base_map ON volumes (base_map);
";

/// Creates the schema in the fresh database at `path` (which must not hold one yet) and
/// fills it with `from` (a format-1 catalog, every record already validated), in one
/// transaction; then sets `user_version` and closes, which checkpoints the write-ahead log
/// into the file. The caller fsyncs and renames the file into place.
pub fn build(path: &Path, from: &JsonCatalog, block_size: u32) -> Result<()> {
    let conn = Connection::open(path).map_err(|e| sql_error(path, e))?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        .map_err(|e| sql_error(path, e))?;
    let db = Db::from_connection(path.to_path_buf(), conn, block_size);
    db.write(|tx| {
        tx.conn.batch(SCHEMA).map_err(|e| tx.err(e))?;
        for (name, rec) in &from.objects {
            tx.put_object(name, rec)?;
        }
        for (name, rec) in &from.volumes {
            tx.put_volume(name, rec)?;
        }
        tx.conn
            .batch(&format!("PRAGMA user_version = {CATALOG_DB_VERSION};"))
            .map_err(|e| tx.err(e))?;
        Ok(())
    })?;
    let conn = db.into_connection();
    conn.close().map_err(|(_, e)| sql_error(path, e))?;
    Ok(())
}
