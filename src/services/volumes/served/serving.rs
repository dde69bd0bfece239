//! Who serves a volume read-write, where every user of the repository sees it: the serve
//! lock (held exclusively by the server, shared for a moment by each writer that checks it)
//! and the server's description. In the directory: `locks/serve-<id>.lock` and
//! `locks/serve-<id>.json`; with the catalog on PostgreSQL: the session advisory lock
//! `serve-<id>` and the catalog's `servers` row, seen by every host. The description is
//! trusted only while the lock is held, and either lock dies with its holder.

use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::db::pg::{CatalogUrl, advisory, servers};
use crate::repo::lock::{FileLock, lock_exclusive, lock_shared_nonblocking, try_lock_exclusive};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Who serves a volume read-write (`locks/serve-<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub pid: u32,
    pub host: String,
    pub started: String,
    /// Where NBD clients reach the server.
    pub address: String,
    /// The server's control socket, through which `arch snapshot` asks it for a snapshot.
    #[serde(default)]
    pub control: Option<PathBuf>,
    /// The machine the server runs on ([`this_machine`]): its control socket is reachable
    /// only from there.
    #[serde(default)]
    pub machine: Option<String>,
}

/// This machine, as far as Unix sockets go: the host name and the kernel's boot id (two
/// containers on one kernel have other host names; a reboot ends every server anyway).
pub fn this_machine() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    format!(
        "{}/{}",
        crate::services::volumes::creating::hostname(),
        boot.trim()
    )
}

impl ServerInfo {
    /// A server whose info file is not written yet (or not any more).
    fn unknown() -> ServerInfo {
        ServerInfo {
            pid: 0,
            host: "?".into(),
            started: "?".into(),
            address: "?".into(),
            control: None,
            machine: None,
        }
    }

    /// `arch serve pid N on HOST since T (ADDRESS)`.
    pub fn describe(&self) -> String {
        format!(
            "arch serve pid {} on {} since {} ({})",
            self.pid, self.host, self.started, self.address
        )
    }
}

/// Where the serve lock and the server info of one volume live.
pub(super) enum ServeSite {
    /// `locks/serve-<id>.lock` and `locks/serve-<id>.json` (catalog in the directory).
    Files { lock: PathBuf, info: PathBuf },
    /// The advisory lock `serve-<id>` and the `servers` row of the PostgreSQL catalog.
    Catalog { url: CatalogUrl, id: String },
}

impl ServeSite {
    fn of(repo: &Repository, id: &str) -> Result<ServeSite> {
        let lock = repo.volume_lock_path(id)?;
        if let Some(url) = repo.catalog_url() {
            return Ok(ServeSite::Catalog {
                url: url.clone(),
                id: id.to_string(),
            });
        }
        let dir = lock.parent().expect("locks/").to_path_buf();
        Ok(ServeSite::Files {
            lock: dir.join(format!("serve-{id}.lock")),
            info: dir.join(format!("serve-{id}.json")),
        })
    }

    /// Takes the serve lock, shared or exclusive; waits for it when `wait`, else None when
    /// it is held in a conflicting mode.
    fn lock(&self, shared: bool, wait: bool) -> Result<Option<FileLock>> {
        match self {
            ServeSite::Files { lock, .. } => match (shared, wait) {
                (true, false) => lock_shared_nonblocking(lock),
                (false, false) => try_lock_exclusive(lock),
                (false, true) => lock_exclusive(lock).map(Some),
                (true, true) => unreachable!("nobody waits for a shared serve lock"),
            },
            ServeSite::Catalog { url, id } => {
                Ok(
                    advisory::session_lock(url, &format!("serve-{id}"), shared, wait)?
                        .map(FileLock::catalog),
                )
            }
        }
    }

    /// Whether the serve lock may be held at all (a lock file that was never made is not).
    fn may_be_held(&self) -> bool {
        match self {
            ServeSite::Files { lock, .. } => lock.exists(),
            ServeSite::Catalog { .. } => true,
        }
    }

    /// The recorded server info (trusted only while the lock is held).
    fn read_info(&self) -> Result<Option<Vec<u8>>> {
        match self {
            ServeSite::Files { info, .. } => Ok(std::fs::read(info).ok()),
            ServeSite::Catalog { url, id } => Ok(servers::get(url, id)?.map(String::into_bytes)),
        }
    }

    fn write_info(&self, repo: &Repository, bytes: &[u8]) -> Result<()> {
        match self {
            ServeSite::Files { info, .. } => crate::storage::fsutil::atomic_write_mode(
                &repo.tmp_dir(),
                info,
                bytes,
                repo.modes().file(),
            ),
            ServeSite::Catalog { url, id } => {
                servers::put(url, id, std::str::from_utf8(bytes).expect("JSON is UTF-8"))
            }
        }
    }

    pub(super) fn remove_info(&self) -> Result<()> {
        match self {
            ServeSite::Files { info, .. } => crate::storage::fsutil::remove_path(info),
            ServeSite::Catalog { url, id } => servers::remove(url, id),
        }
    }
}

/// The server of volume `id`, when one serves it read-write right now.
pub fn server_of(repo: &Repository, id: &str) -> Result<Option<ServerInfo>> {
    let site = ServeSite::of(repo, id)?;
    if !site.may_be_held() || site.lock(true, false)?.is_some() {
        return Ok(None);
    }
    let text = site.read_info()?.unwrap_or_default();
    // Unreadable only in the instant between a server's lock and its info.
    Ok(Some(
        serde_json::from_slice(&text).unwrap_or_else(|_| ServerInfo::unknown()),
    ))
}

/// Removes the serve lock and server info of volume `id` (being removed, with its lock held:
/// no server holds them).
pub fn forget(repo: &Repository, id: &str) -> Result<()> {
    let site = ServeSite::of(repo, id)?;
    site.remove_info()?;
    match &site {
        ServeSite::Files { lock, .. } => crate::storage::fsutil::remove_path(lock),
        ServeSite::Catalog { .. } => Ok(()),
    }
}

/// Refuses a writer of volume `name` (id `id`) while it is served read-write. Otherwise
/// returns a shared hold on the serve lock: keep it until the volume lock is taken, so no
/// server can start in between (a server then waits for the writer instead).
pub fn refuse_if_served(repo: &Repository, name: &str, id: &str) -> Result<FileLock> {
    if let Some(guard) = ServeSite::of(repo, id)?.lock(true, false)? {
        return Ok(guard);
    }
    let s = server_of(repo, id)?.unwrap_or_else(ServerInfo::unknown);
    Err(Error::Served {
        name: name.to_string(),
        server: s.describe(),
        fix: format!(
            "stop it first (Ctrl-C, or kill -TERM {}); readers (volume read, export) still \
             work",
            s.pid
        ),
    })
}

/// Takes the serve lock of volume `id`, refusing when another server holds it, and records
/// this process as its server.
pub(super) fn take_serve_lock(
    repo: &Repository,
    name: &str,
    id: &str,
    address: &str,
    control: Option<&Path>,
) -> Result<(FileLock, ServeSite)> {
    let site = ServeSite::of(repo, id)?;
    let lock = match site.lock(false, false)? {
        Some(l) => l,
        None => {
            // Held: by another server (refuse), or by a writer checking it for a moment.
            if let Some(s) = server_of(repo, id)? {
                return Err(Error::Served {
                    name: name.to_string(),
                    server: s.describe(),
                    fix: "stop that server first, or serve it with --read-only".into(),
                });
            }
            site.lock(false, true)?
                .expect("a waiting lock is always taken")
        }
    };
    let info = ServerInfo {
        pid: std::process::id(),
        host: crate::services::volumes::creating::hostname(),
        started: crate::time::now_rfc3339(),
        address: address.to_string(),
        // Absolute, so that `arch snapshot` finds it from any directory of the repository.
        control: control.map(|c| std::path::absolute(c).unwrap_or_else(|_| c.to_path_buf())),
        machine: Some(this_machine()),
    };
    let bytes = serde_json::to_vec(&info).expect("server info serializes");
    site.write_info(repo, &bytes)?;
    Ok((lock, site))
}
