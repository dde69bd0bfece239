//! Files a killed `arch serve` leaves behind: its server info (`locks/serve-<id>.json`), the
//! serve lock of a volume that no longer exists (`locks/serve-<id>.lock`), and its sockets
//! in `run/` (`arch-serve-<pid>.sock`, `.ctl`); with the catalog on PostgreSQL, the
//! server's row in the table `servers` instead of the info file (and the advisory lock
//! `serve-<id>` instead of the lock file, which dies with its session and leaves nothing).
//! A live server's leftovers are never stale: its serve lock is held and its sockets listen.
//! fsck reports them, gc removes them.

use crate::error::{Error, Result};
use crate::repo::catalog::Catalog;
use crate::repo::db::pg::{CatalogUrl, advisory, servers};
use crate::repo::lock::{lock_shared_nonblocking, try_lock_exclusive};
use crate::repo::{LOCKS_DIR, Repository};
use crate::storage::fsutil::remove_path;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Something a killed server left: a file of the directory, or its row in the catalog's
/// `servers` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    File(PathBuf),
    Row { url: CatalogUrl, id: String },
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::File(path) => write!(f, "{}", path.display()),
            Leftover::Row { url, id } => {
                write!(f, "the `servers` row of volume {id} in catalog {url}")
            }
        }
    }
}

/// The stale server leftovers of `repo`; `is_volume(id)` tells a live volume id.
pub fn scan(repo: &Repository, is_volume: &dyn Fn(&str) -> bool) -> Result<Vec<Leftover>> {
    let mut out: Vec<Leftover> = scan_files(repo, is_volume)?
        .into_iter()
        .map(Leftover::File)
        .collect();
    if let Some(url) = repo.catalog_url() {
        // A row is stale when no server holds its serve lock: a server takes the lock before
        // it writes its row and removes the row before it lets the lock go, so only a
        // killed server (its session, and so its lock, gone) leaves a row with a free lock.
        for id in servers::list(url)? {
            if !row_lock_held(url, &id)? {
                out.push(Leftover::Row {
                    url: url.clone(),
                    id,
                });
            }
        }
    }
    Ok(out)
}

/// The advisory serve lock of volume `id` is held exclusively (by a server): a shared try
/// fails.
fn row_lock_held(url: &CatalogUrl, id: &str) -> Result<bool> {
    Ok(advisory::session_lock(url, &format!("serve-{id}"), true, false)?.is_none())
}

/// The stale server files of the directory (see [`scan`]).
fn scan_files(repo: &Repository, is_volume: &dyn Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let locks = repo.root().join(LOCKS_DIR);
    for (name, path) in entries(&locks)? {
        if let Some(id) = name
            .strip_prefix("serve-")
            .and_then(|n| n.strip_suffix(".lock"))
        {
            if !is_volume(id) && !is_held(&path)? {
                out.push(path);
            }
        } else if let Some(id) = name
            .strip_prefix("serve-")
            .and_then(|n| n.strip_suffix(".json"))
        {
            let lock = locks.join(format!("serve-{id}.lock"));
            if !lock.exists() || !is_held(&lock)? {
                out.push(path);
            }
        }
    }
    for (name, path) in entries(&repo.root().join("run"))? {
        if is_server_socket(&name) && is_dead_socket(&path) {
            out.push(path);
        }
    }
    Ok(out)
}

/// [`scan`] against the volumes of `catalog`.
pub fn scan_against(repo: &Repository, catalog: &Catalog) -> Result<Vec<Leftover>> {
    let ids: std::collections::HashSet<&str> =
        catalog.volumes.values().map(|v| v.id.as_str()).collect();
    scan(repo, &|id| ids.contains(id))
}

/// Removes `leftover` (one [`scan`] found) unless a server uses it by now; true when
/// removed. Server info (file or row) is removed with its serve lock held, so no server
/// starting meanwhile loses its fresh info (it takes the lock before writing its info).
pub fn remove(leftover: &Leftover) -> Result<bool> {
    match leftover {
        Leftover::File(path) => remove_file(path),
        Leftover::Row { url, id } => {
            let Some(_held) = advisory::session_lock(url, &format!("serve-{id}"), false, false)?
            else {
                return Ok(false);
            };
            servers::remove(url, id)?;
            Ok(true)
        }
    }
}

fn remove_file(path: &Path) -> Result<bool> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Some(stem) = name.strip_suffix(".json") {
        let lock = path.with_file_name(format!("{stem}.lock"));
        let _held = if lock.exists() {
            match try_lock_exclusive(&lock)? {
                Some(held) => Some(held),
                None => return Ok(false),
            }
        } else {
            None
        };
        remove_path(path)?;
        return Ok(true);
    }
    if name.ends_with(".lock") {
        let Some(_held) = try_lock_exclusive(path)? else {
            return Ok(false);
        };
        remove_path(path)?;
        return Ok(true);
    }
    if is_server_socket(name) && is_dead_socket(path) {
        remove_path(path)?;
        return Ok(true);
    }
    Ok(false)
}

/// `arch-serve-<pid>.sock` or `.ctl`: the names arch serve gives its sockets in `run/`.
fn is_server_socket(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("arch-serve-") else {
        return false;
    };
    let pid = rest
        .strip_suffix(".sock")
        .or_else(|| rest.strip_suffix(".ctl"));
    pid.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A socket file nobody listens on (a regular file or anything else is left alone).
fn is_dead_socket(path: &Path) -> bool {
    let socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    socket && UnixStream::connect(path).is_err()
}

/// Someone holds `lock` exclusively (a server).
fn is_held(lock: &Path) -> Result<bool> {
    Ok(lock_shared_nonblocking(lock)?.is_none())
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let list = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for e in list {
        let e = e.map_err(|e| Error::io("list", dir, e))?;
        if let Some(name) = e.file_name().to_str() {
            out.push((name.to_string(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_arch_serve_socket_names_are_considered() {
        assert!(is_server_socket("arch-serve-123.sock"));
        assert!(is_server_socket("arch-serve-9.ctl"));
        for name in [
            "arch-serve-.sock",
            "arch-serve-1x.ctl",
            "vm.sock",
            "arch-serve-1",
        ] {
            assert!(!is_server_socket(name), "{name}");
        }
    }
}
