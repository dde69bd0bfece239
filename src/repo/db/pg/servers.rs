//! Who serves each volume read-write (`arch serve`), for every host of a repository whose
//! catalog is on PostgreSQL: the table `servers` of the repository's schema, one row per
//! volume id holding the server's description (JSON, written and read by
//! `services::volumes::served`).
//!
//! Invariants: a row is trusted only while the volume's serve lock (a session advisory lock,
//! [`super::advisory`]) is held: the server writes its row after taking the lock and removes
//! it before releasing it, so a row left by a killed server (lock gone with its session) is
//! ignored, and overwritten by the next server of that volume or removed with the volume.
//! The table is made on first use (repositories created before it have none) under the
//! schema's init lock, so racing servers make it once.

use super::{CatalogUrl, advisory, connect, error};
use crate::error::Result;
use crate::repo::db::pool;
use postgres::Client;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS servers (\
     volume_id VARCHAR(36) COLLATE \"C\" NOT NULL PRIMARY KEY, \
     info TEXT COLLATE \"C\" NOT NULL)";

/// Runs `f` on a connection to the catalog (pooled, put back after: `f` leaves no
/// transaction open).
fn with_client<T>(url: &CatalogUrl, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
    let mut client = match pool::take(url) {
        Some(c) => c,
        None => connect(url)?,
    };
    let out = f(&mut client);
    if out.is_ok() {
        pool::put_back(url, client);
    }
    out
}

/// Records `info` as the server of volume `id` (replacing a row a killed server left).
pub fn put(url: &CatalogUrl, id: &str, info: &str) -> Result<()> {
    with_client(url, |c| {
        let e = |err| error(url, err);
        c.batch_execute("BEGIN").map_err(e)?;
        let out = (|| -> Result<()> {
            advisory::xact_lock(c, url, &advisory::key(&url.schema, "init"))?;
            c.batch_execute(TABLE).map_err(e)?;
            c.execute(
                "INSERT INTO servers (volume_id, info) VALUES ($1, $2) \
                 ON CONFLICT (volume_id) DO UPDATE SET info = EXCLUDED.info",
                &[&id, &info],
            )
            .map_err(e)?;
            Ok(())
        })();
        match out {
            Ok(()) => c.batch_execute("COMMIT").map_err(e),
            Err(err) => {
                let _ = c.batch_execute("ROLLBACK");
                Err(err)
            }
        }
    })
}

/// The recorded server of volume `id`, if any (trust it only while its serve lock is held).
pub fn get(url: &CatalogUrl, id: &str) -> Result<Option<String>> {
    with_client(url, |c| {
        match c.query_opt("SELECT info FROM servers WHERE volume_id = $1", &[&id]) {
            Ok(row) => Ok(row.map(|r| r.get(0))),
            Err(err) if undefined_table(&err) => Ok(None),
            Err(err) => Err(error(url, err)),
        }
    })
}

/// Removes the server row of volume `id` (its server stops, or the volume is removed).
pub fn remove(url: &CatalogUrl, id: &str) -> Result<()> {
    with_client(url, |c| {
        match c.execute("DELETE FROM servers WHERE volume_id = $1", &[&id]) {
            Ok(_) => Ok(()),
            Err(err) if undefined_table(&err) => Ok(()),
            Err(err) => Err(error(url, err)),
        }
    })
}

/// No `servers` table yet: no server ever ran in this repository.
fn undefined_table(e: &postgres::Error) -> bool {
    e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE)
}
