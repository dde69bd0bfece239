//! PostgreSQL advisory locks: the catalog's write lock (transaction-scoped, the
//! `BEGIN IMMEDIATE` of SQLite) and the repository's cross-host locks (session-scoped, held
//! on a connection of their own, so they die with their holder as `flock` locks do).
//!
//! A lock's key is the first 8 bytes (big-endian, signed) of
//! `sha256("arch-lock\0" SCHEMA "\0" NAME)`: distinct per repository (schema) and lock name
//! (`data`, `catalog`, `volume-<uuid>`, ...). Waits poll `pg_try_advisory_*` so that
//! SIGINT/SIGTERM stop them like a wait on a file lock.

use super::{CatalogUrl, connect, error};
use crate::error::Result;
use postgres::Client;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The advisory lock key of lock `name` of the repository in `schema`.
pub fn key(schema: &str, name: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(b"arch-lock\0");
    h.update(schema.as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Polls `sql` (a `pg_try_advisory_*` call returning a boolean) until it returns true, or
/// once when `wait` is false. An interrupt stops the wait.
fn poll(client: &mut Client, url: &CatalogUrl, sql: &str, key: i64, wait: bool) -> Result<bool> {
    let mut delay = 1u64;
    loop {
        let got: bool = client
            .query_one(sql, &[&key])
            .map_err(|e| error(url, e))?
            .get(0);
        if got || !wait {
            return Ok(got);
        }
        crate::interrupt::check()?;
        std::thread::sleep(Duration::from_millis(delay));
        delay = (delay * 2).min(50);
    }
}

/// Takes the transaction-scoped exclusive lock `key` in the open transaction of `client`,
/// waiting for its holder.
pub fn xact_lock(client: &mut Client, url: &CatalogUrl, key: &i64) -> Result<()> {
    poll(
        client,
        url,
        "SELECT pg_try_advisory_xact_lock($1)",
        *key,
        true,
    )?;
    Ok(())
}

/// A session advisory lock held on a connection of its own; released when dropped (or when
/// the process dies and the server sees the connection close).
pub struct SessionLock {
    /// In a mutex only so that a guard can be shared between threads (it is never locked
    /// but at drop).
    client: std::sync::Mutex<Client>,
}

impl std::fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionLock")
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        // Explicit, so the next taker does not race the server noticing the closed socket.
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = client.batch_execute("SELECT pg_advisory_unlock_all()");
    }
}

/// Takes lock `name` of the repository at `url`, shared or exclusive; waits for it when
/// `wait`, else returns None when it is held in a conflicting mode.
pub fn session_lock(
    url: &CatalogUrl,
    name: &str,
    shared: bool,
    wait: bool,
) -> Result<Option<SessionLock>> {
    let mut client = connect(url)?;
    let sql = if shared {
        "SELECT pg_try_advisory_lock_shared($1)"
    } else {
        "SELECT pg_try_advisory_lock($1)"
    };
    let k = key(&url.schema, name);
    Ok(
        poll(&mut client, url, sql, k, wait)?.then_some(SessionLock {
            client: std::sync::Mutex::new(client),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_schema_and_name_and_are_stable() {
        assert_ne!(key("a", "data"), key("b", "data"));
        assert_ne!(key("a", "data"), key("a", "catalog"));
        assert_ne!(key("ab", "c"), key("a", "bc"));
        assert_eq!(key("arch", "data"), key("arch", "data"));
    }
}
