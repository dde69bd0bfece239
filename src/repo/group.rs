//! The group a shared repository belongs to (`arch init --shared-group`): resolving a name or
//! id, checking that the user may give files to it, and handing the repository root to it.
//!
//! No privilege is needed: a user may chgrp a file they own to any group they belong to.

use crate::error::{Error, Result};
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A resolved group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The name, or the id in decimal when the system has no name for it.
    pub name: String,
    pub gid: u32,
}

impl Group {
    /// Resolves `spec`: a group name, or a numeric group id.
    pub fn resolve(spec: &str) -> Result<Group> {
        if let Ok(gid) = spec.parse::<u32>() {
            let name = group_name(gid).unwrap_or_else(|| gid.to_string());
            return Ok(Group { name, gid });
        }
        let c = CString::new(spec)
            .map_err(|_| Error::invalid(format!("invalid group name '{spec}': it holds a NUL")))?;
        lookup(|grp, buf, out| {
            // SAFETY: getgrnam_r writes into `grp` and `buf` (of the given length) only.
            unsafe { libc::getgrnam_r(c.as_ptr(), grp, buf.as_mut_ptr(), buf.len(), out) }
        })
        .ok_or_else(|| {
            Error::invalid(format!(
                "no group named '{spec}' on this system; create it (groupadd {spec}), or give an existing group's name or numeric id"
            ))
        })
    }

    /// Refuses a group the current user is not a member of (root may use any group): the
    /// chown at init would fail with a bare "Operation not permitted".
    pub fn check_member(&self) -> Result<()> {
        // SAFETY: these calls only read the process credentials.
        if unsafe { libc::geteuid() } == 0 || unsafe { libc::getegid() } == self.gid {
            return Ok(());
        }
        let groups = my_groups();
        if groups.contains(&self.gid) {
            return Ok(());
        }
        let mine: Vec<String> = groups
            .iter()
            .map(|g| group_name(*g).unwrap_or_else(|| g.to_string()))
            .collect();
        Err(Error::invalid(format!(
            "you are not a member of group '{}', so the repository cannot be given to it; choose one of your groups ({}), or ask an administrator to add you (usermod -aG {} USER, then log in again)",
            self.name,
            mine.join(", "),
            self.name
        )))
    }

    /// Gives `path` (not following a symlink) to this group, keeping its owner.
    pub fn chown(&self, path: &Path) -> Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::invalid(format!("{} holds a NUL byte", path.display())))?;
        // SAFETY: lchown with a valid NUL-terminated path; uid -1 keeps the owner.
        let rc = unsafe { libc::lchown(c.as_ptr(), u32::MAX, self.gid) };
        if rc != 0 {
            return Err(Error::io(
                "give to group",
                path,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// The supplementary groups and the effective group of this process.
fn my_groups() -> Vec<u32> {
    // SAFETY: getgroups(0, NULL) returns the count; the second call fills `buf` of that size.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut buf = vec![0 as libc::gid_t; n.max(0) as usize];
    let n = unsafe { libc::getgroups(buf.len() as libc::c_int, buf.as_mut_ptr()) };
    buf.truncate(n.max(0) as usize);
    buf.push(unsafe { libc::getegid() });
    buf.sort_unstable();
    buf.dedup();
    buf
}

/// The name of group `gid`, when the system knows it.
pub fn group_name(gid: u32) -> Option<String> {
    lookup(|grp, buf, out| {
        // SAFETY: getgrgid_r writes into `grp` and `buf` (of the given length) only.
        unsafe { libc::getgrgid_r(gid, grp, buf.as_mut_ptr(), buf.len(), out) }
    })
    .map(|g| g.name)
}

/// Runs a reentrant getgr*_r call, growing its buffer on ERANGE.
fn lookup(
    mut call: impl FnMut(&mut libc::group, &mut [libc::c_char], &mut *mut libc::group) -> libc::c_int,
) -> Option<Group> {
    let mut len = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; len];
        // SAFETY: an all-zero `group` is a valid value to be overwritten by the call.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        let rc = call(&mut grp, &mut buf, &mut out);
        if rc == libc::ERANGE && len < 1 << 20 {
            len *= 4;
            continue;
        }
        if rc != 0 || out.is_null() {
            return None;
        }
        // SAFETY: on success gr_name points to a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned();
        return Some(Group {
            name,
            gid: grp.gr_gid,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_group_resolves_by_name_and_id() {
        let by_id = Group::resolve("0").unwrap();
        assert_eq!(by_id.gid, 0);
        let by_name = Group::resolve(&by_id.name).unwrap();
        assert_eq!(by_name, by_id);
    }

    #[test]
    fn unknown_group_is_named_with_the_fix() {
        let err = Group::resolve("no-such-group-arch-test").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no-such-group-arch-test") && text.contains("groupadd"));
    }

    #[test]
    fn own_group_is_accepted() {
        // SAFETY: reads the process credentials.
        let gid = unsafe { libc::getegid() };
        Group::resolve(&gid.to_string())
            .unwrap()
            .check_member()
            .unwrap();
    }
}
