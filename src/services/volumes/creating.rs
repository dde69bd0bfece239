//! Volumes whose creation has not finished (status `creating`): who creates them, how other
//! commands recognise and refuse them, and how one left behind by a dead creator is removed or
//! finished.
//!
//! Invariant: a volume is `creating` from the commit that adds its record until the single
//! commit that makes it `available` after its customized blocks are durable, and its creator
//! holds the volume lock (`locks/volume-<id>.lock`) exclusively for that whole time. So
//! "`creating` and the lock is free" means the creator is dead (the kernel drops a dead
//! process's flock; no pid is trusted, so pid reuse cannot fool it). Nothing reads a
//! `creating` volume: it may still carry the Image's host keys and machine id.

use super::{STATUS_CREATING, find, remove_locked};
use crate::customize::CustomizeOptions;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::lock::FileLock;
use crate::repo::records::{CreationRecord, VolumeRecord};
use crate::time::now_rfc3339;
use serde::Serialize;

/// A new creation record for this process.
pub fn new_record(operation: String, opts: &CustomizeOptions) -> CreationRecord {
    let mut options = Vec::new();
    if opts.hostname.is_some() {
        options.push("--hostname".to_string());
    }
    if opts.password.is_some() {
        options.push("--password-file".to_string());
    }
    if !opts.ssh_keys.is_empty() {
        options.push("--ssh-key".to_string());
    }
    if !opts.files.is_empty() {
        options.push("--file".to_string());
    }
    CreationRecord {
        pid: std::process::id(),
        host: hostname(),
        started: now_rfc3339(),
        operation,
        options,
    }
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What `volume ls`/`info` show about a volume being created.
#[derive(Debug, Clone, Serialize)]
pub struct CreationState {
    #[serde(flatten)]
    pub record: CreationRecord,
    /// False when the creator is gone: the volume was left unfinished.
    pub creator_running: bool,
}

/// True when the creator of volume `id` still holds its lock.
pub fn creator_running(repo: &Repository, id: &str) -> Result<bool> {
    Ok(repo.try_lock_volume_exclusive(id)?.is_none())
}

/// The creation state of `rec`, None unless it is `creating`.
pub fn state(repo: &Repository, rec: &VolumeRecord) -> Result<Option<CreationState>> {
    if rec.status != STATUS_CREATING {
        return Ok(None);
    }
    Ok(Some(CreationState {
        record: rec.creation.clone().unwrap_or_else(unknown_creator),
        creator_running: creator_running(repo, &rec.id)?,
    }))
}

fn unknown_creator() -> CreationRecord {
    CreationRecord {
        pid: 0,
        host: "unknown".into(),
        started: "unknown".into(),
        operation: "creation".into(),
        options: Vec::new(),
    }
}

/// The refusal for using volume `name` while it is `creating`.
pub fn refusal(name: &str, rec: &VolumeRecord, running: bool) -> Error {
    let c = rec.creation.clone().unwrap_or_else(unknown_creator);
    if running {
        return Error::VolumeCreating {
            name: name.to_string(),
            state: format!(
                "is being created by arch pid {} on {} since {} ({})",
                c.pid, c.host, c.started, c.operation
            ),
            fix: "wait for that command to finish; until then the volume cannot be used".into(),
        };
    }
    let again = if c.options.is_empty() {
        String::new()
    } else {
        format!(" with the same {}", c.options.join(", "))
    };
    Error::VolumeCreating {
        name: name.to_string(),
        state: format!(
            "was left unfinished by arch pid {} on {} ({}, started {}), which is gone; it was \
             not customized and must not be used",
            c.pid, c.host, c.operation, c.started
        ),
        fix: format!(
            "run `arch customize {name}`{again} to finish it, or `arch volume rm {name}` \
             (`arch gc` removes every unfinished volume)"
        ),
    }
}

/// Refuses volume `name` when it is `creating` (running creator or not).
pub fn refuse_if_creating(repo: &Repository, name: &str, rec: &VolumeRecord) -> Result<()> {
    if rec.status != STATUS_CREATING {
        return Ok(());
    }
    Err(refusal(name, rec, creator_running(repo, &rec.id)?))
}

/// Before a clone into `name`: a `creating` volume of that name whose creator is gone is
/// removed (returned); one still being created is refused. Other volumes are left alone.
pub fn reap_if_abandoned(repo: &Repository, name: &str) -> Result<Option<CreationRecord>> {
    let Some(rec) = repo.catalog()?.volume(name)? else {
        return Ok(None);
    };
    if rec.status != STATUS_CREATING {
        return Ok(None);
    }
    let Some(lock) = repo.try_lock_volume_exclusive(&rec.id)? else {
        return Err(refusal(name, &rec, true));
    };
    // Re-read under the lock: it may have been finished or removed meanwhile.
    match repo.catalog()?.volume(name)? {
        Some(now) if now.id == rec.id && now.status == STATUS_CREATING => {
            remove_locked(repo, name, &rec.id)?;
            drop(lock);
            Ok(Some(now.creation.clone().unwrap_or_else(unknown_creator)))
        }
        _ => Ok(None),
    }
}

/// Removes every `creating` volume whose creator is gone (garbage collection: such a volume
/// was never usable and holds no data of the user's; its customization did not finish).
/// Returns the names removed, or, with `dry_run`, those that would be. A volume whose creator
/// still runs is left alone. Must be called without the data lock held (removal takes it).
pub fn reap_all_abandoned(repo: &Repository, dry_run: bool) -> Result<Vec<String>> {
    let mut creating = Vec::new();
    repo.catalog()?.for_each_volume(&mut |name, rec| {
        if rec.status == STATUS_CREATING {
            creating.push((name, rec.id));
        }
        Ok(true)
    })?;
    let mut reaped = Vec::new();
    for (name, id) in creating {
        if dry_run {
            if !creator_running(repo, &id)? {
                reaped.push(name);
            }
            continue;
        }
        match reap_if_abandoned(repo, &name) {
            Ok(Some(_)) => reaped.push(name),
            Ok(None) | Err(Error::VolumeCreating { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(reaped)
}

/// Makes a `creating` volume whose creator is gone this process's: its private blocks (a
/// crashed customization's partial output) are dropped, so it reads exactly its source again,
/// and the record names this process as the creator. The caller holds the volume lock.
pub fn restart(repo: &Repository, name: &str, id: &str, opts: &CustomizeOptions) -> Result<()> {
    repo.private_store().remove_volume(id)?;
    repo.transact(|cat| {
        let mut v = find(cat, name)?;
        if v.id != id || v.status != STATUS_CREATING {
            return Err(Error::Busy {
                resource: format!("volume '{name}' (changed while waiting)"),
            });
        }
        let operation = v
            .creation
            .as_ref()
            .map_or_else(|| "creation".into(), |c| c.operation.clone());
        v.creation = Some(new_record(
            format!("{operation}, finished by customize"),
            opts,
        ));
        cat.put_volume(name, &v)
    })
}

/// A volume being created by this process: holds its lock, and removes the volume (record,
/// then private directory) when dropped before [`Creation::finished`] — on error, on
/// interrupt, on panic.
pub struct Creation<'a> {
    repo: &'a Repository,
    name: String,
    id: String,
    lock: Option<FileLock>,
}

impl<'a> Creation<'a> {
    /// Takes over `lock` (the exclusive lock of volume `id`, taken before its `creating`
    /// record was committed).
    pub fn adopt(repo: &'a Repository, name: &str, id: &str, lock: FileLock) -> Creation<'a> {
        Creation {
            repo,
            name: name.to_string(),
            id: id.to_string(),
            lock: Some(lock),
        }
    }

    /// The creation committed `available`: keep the volume.
    pub fn finished(mut self) {
        self.lock = None;
    }

    /// The creation failed: remove the volume now (record, then private directory).
    pub fn abort(mut self) -> Result<()> {
        let lock = self.lock.take();
        let r = remove_locked(self.repo, &self.name, &self.id).map(|_| ());
        drop(lock);
        r
    }
}

impl Drop for Creation<'_> {
    fn drop(&mut self) {
        if self.lock.is_some() {
            // Best effort: if this fails too, the volume stays `creating` with a free lock,
            // which every command recognises as abandoned.
            let _ = remove_locked(self.repo, &self.name, &self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CloneOptions, clone, open};
    use super::*;
    use crate::progress::NoProgress;
    use crate::services::names::ObjectName;
    use crate::services::objects::{self, PutOptions};
    use crate::storage::ingest::Source;

    /// A repository with volume `v` (an available clone), then marked `creating` by a
    /// creator whose lock the test holds or not.
    fn creating_volume(dir: &std::path::Path) -> (Repository, String) {
        let repo = Repository::init(dir, 4096).unwrap();
        let src = Source::Stream {
            reader: Box::new(std::io::Cursor::new(vec![5u8; 10_000])),
            label: "base".into(),
        };
        let name = ObjectName::parse("c/base").unwrap();
        objects::put(&repo, src, &name, &PutOptions::default(), &NoProgress).unwrap();
        let id = clone(&repo, "c/base", "v", &CloneOptions::default())
            .unwrap()
            .id;
        repo.transact(|cat| {
            let mut v = cat.volume("v")?.unwrap();
            v.status = STATUS_CREATING.into();
            v.creation = Some(new_record(
                "clone of c/base".into(),
                &CustomizeOptions {
                    password: Some("secret".into()),
                    ..Default::default()
                },
            ));
            cat.put_volume("v", &v)
        })
        .unwrap();
        (repo, id)
    }

    #[test]
    fn a_creating_volume_is_refused_while_running_and_reaped_once_its_creator_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, id) = creating_volume(dir.path());
        // Every byte of the catalog (the database and any write-ahead log not yet merged).
        let mut catalog = String::new();
        for f in ["meta/catalog.db", "meta/catalog.db-wal"] {
            if let Ok(b) = std::fs::read(dir.path().join(f)) {
                catalog.push_str(&String::from_utf8_lossy(&b));
            }
        }
        assert!(catalog.contains("--password-file") && !catalog.contains("secret"));

        let held = repo.lock_volume_exclusive(&id).unwrap();
        let err = open(&repo, "v", false).err().unwrap().to_string();
        assert!(err.contains("is being created by arch pid"), "{err}");
        let err = reap_if_abandoned(&repo, "v").err().unwrap().to_string();
        assert!(err.contains("is being created"), "{err}");
        drop(held);

        let err = open(&repo, "v", true).err().unwrap().to_string();
        assert!(
            err.contains("left unfinished") && err.contains("--password-file"),
            "{err}"
        );
        let rec = repo.catalog().unwrap().volume("v").unwrap().unwrap();
        let st = state(&repo, &rec).unwrap().unwrap();
        assert!(!st.creator_running);
        assert_eq!(st.record.pid, std::process::id());

        let reaped = reap_if_abandoned(&repo, "v").unwrap().unwrap();
        assert_eq!(reaped.operation, "clone of c/base");
        assert!(!repo.catalog().unwrap().has_volume("v").unwrap());
        assert!(!repo.volume_lock_path(&id).unwrap().exists());
        assert!(reap_if_abandoned(&repo, "v").unwrap().is_none());
    }

    #[test]
    fn gc_reaps_only_volumes_whose_creator_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, id) = creating_volume(dir.path());
        let held = repo.lock_volume_exclusive(&id).unwrap();
        assert!(reap_all_abandoned(&repo, false).unwrap().is_empty());
        assert!(repo.catalog().unwrap().has_volume("v").unwrap());
        drop(held);
        // Another test of this process forking a tool may hold a copy of the lock's file
        // description until its child execs (close-on-exec): wait for that copy to go.
        for _ in 0..200 {
            if !creator_running(&repo, &id).unwrap() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            reap_all_abandoned(&repo, true).unwrap(),
            vec!["v".to_string()]
        );
        assert!(repo.catalog().unwrap().has_volume("v").unwrap(), "dry run");
        assert_eq!(
            reap_all_abandoned(&repo, false).unwrap(),
            vec!["v".to_string()]
        );
        assert!(!repo.catalog().unwrap().has_volume("v").unwrap());
        assert!(!repo.volume_dir(&id).unwrap().exists());
    }
}
