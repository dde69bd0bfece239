//! New SSH host keys for DeleteSSHKeys, generated on a thread of their own from the start of
//! the run: a 3072-bit RSA key takes ssh-keygen about half a second of CPU, which then
//! overlaps the disk work of the tasks before (e2fsck, resize2fs) instead of adding to it.
//! Keys need nothing from the image but their type and the hostname, which are known before
//! any task runs; the types the image does not use are generated and thrown away (the cheap
//! ones, ecdsa and ed25519, unless the image has no RSA key).
//!
//! The keys live in memory and, while ssh-keygen writes them, in the run's private scratch
//! directory; nothing outlives the run: dropping [`HostKeys`] waits for the thread.

use super::tools::run;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// The key types DeleteSSHKeys may write, all generated ahead.
pub const TYPES: [&str; 3] = ["rsa", "ecdsa", "ed25519"];

/// A private key and its public line, as ssh-keygen wrote them.
#[derive(Clone)]
pub struct KeyPair {
    pub private: Vec<u8>,
    pub public: Vec<u8>,
}

type Generated = BTreeMap<String, std::result::Result<KeyPair, String>>;

/// Keys being generated (or generated) for one run.
pub struct HostKeys {
    thread: Option<JoinHandle<Generated>>,
    done: Option<Generated>,
}

impl HostKeys {
    /// Starts generating one key of each of [`TYPES`] in `dir` (created here, inside the
    /// run's private scratch directory) with the comment `root@HOSTNAME`.
    pub fn start(task: &'static str, dir: PathBuf, hostname: String) -> HostKeys {
        let thread = std::thread::Builder::new()
            .name("ssh-keygen".into())
            .spawn(move || {
                let made = std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e));
                TYPES
                    .iter()
                    .map(|t| {
                        let key = made.as_ref().map_err(|e| e.to_string()).and_then(|()| {
                            generate(task, &dir, t, &hostname).map_err(|e| e.to_string())
                        });
                        (t.to_string(), key)
                    })
                    .collect()
            });
        match thread {
            Ok(thread) => HostKeys {
                thread: Some(thread),
                done: None,
            },
            // No thread: every key is generated when asked.
            Err(_) => HostKeys {
                thread: None,
                done: None,
            },
        }
    }

    /// The key of type `t` (one of [`TYPES`]), waiting for the generation when it is still
    /// running; generated now when there was no thread.
    pub fn take(&mut self, task: &str, t: &str, scratch: &Path, hostname: &str) -> Result<KeyPair> {
        if self.done.is_none()
            && let Some(thread) = self.thread.take()
        {
            self.done = thread.join().ok();
        }
        match self.done.as_ref().and_then(|d| d.get(t)) {
            Some(Ok(k)) => Ok(k.clone()),
            Some(Err(e)) => Err(Error::invalid(e.clone())),
            None => generate(task, scratch, t, hostname),
        }
    }
}

impl Drop for HostKeys {
    fn drop(&mut self) {
        // Nothing may write into the scratch directory once the run is over.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs ssh-keygen for one key of type `t` in `dir` and reads it back (the files go).
pub fn generate(task: &str, dir: &Path, t: &str, hostname: &str) -> Result<KeyPair> {
    let key = dir.join(format!("ssh_host_{t}_key"));
    let public_path = PathBuf::from(format!("{}.pub", key.display()));
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&public_path);
    let comment = format!("root@{hostname}");
    let args: [&std::ffi::OsStr; 9] = [
        "-q".as_ref(),
        "-t".as_ref(),
        t.as_ref(),
        "-N".as_ref(),
        "".as_ref(),
        "-C".as_ref(),
        comment.as_ref(),
        "-f".as_ref(),
        key.as_os_str(),
    ];
    let generated = run(task, "ssh-keygen", &args, None).and_then(|_| {
        let private = std::fs::read(&key).map_err(|e| Error::io("read", &key, e))?;
        let public = std::fs::read(&public_path).map_err(|e| Error::io("read", &public_path, e))?;
        Ok(KeyPair { private, public })
    });
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&public_path);
    generated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_made_ahead_are_of_the_asked_type_and_leave_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("hostkeys");
        let task = "DeleteSSHKeys";
        let mut keys = HostKeys::start(task, keys_dir.clone(), "vm1".into());
        for (t, prefix) in [("ed25519", "ssh-ed25519 "), ("rsa", "ssh-rsa ")] {
            let k = keys.take(task, t, dir.path(), "vm1").unwrap();
            let public = String::from_utf8(k.public).unwrap();
            assert!(public.starts_with(prefix), "{t}: {public}");
            assert!(public.trim_end().ends_with(" root@vm1"), "{public}");
            assert!(String::from_utf8_lossy(&k.private).contains("OPENSSH PRIVATE KEY"));
        }
        drop(keys);
        assert_eq!(
            std::fs::read_dir(&keys_dir).unwrap().count(),
            0,
            "no key file is left in the scratch directory"
        );
    }
}
