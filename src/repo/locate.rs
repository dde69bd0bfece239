//! Saying where a repository is when `-R DIR` (or the current directory) is not one: inside a
//! repository (`-R repo/blocks`), or above one or more (`-R .` beside `./repo`). Instead of
//! suggesting `arch init` in the wrong place, the error names the repository to pass.

use super::CONFIG_FILE;
use crate::error::Error;
use std::path::{Path, PathBuf};

/// How many directory entries are looked at, at most, per directory searched below `dir`.
const MAX_ENTRIES: usize = 1000;

/// The error for `dir`, which is not a repository, when a repository contains it or lies
/// below it (two levels at most); None when neither.
pub fn misplaced(dir: &Path) -> Option<Error> {
    let abs = std::path::absolute(dir).ok()?;
    if let Some(root) = abs.ancestors().skip(1).find(|a| is_repository(a)) {
        return Some(Error::invalid(format!(
            "{} is inside the arch repository {}, not a repository itself; pass -R {} (or set \
             ARCH_REPO to it)",
            dir.display(),
            root.display(),
            root.display()
        )));
    }
    let below = repositories_below(dir);
    if below.is_empty() {
        return None;
    }
    let list: Vec<String> = below.iter().map(|p| p.display().to_string()).collect();
    Some(Error::invalid(format!(
        "{} is not an arch repository, but it holds {}: {}; pass -R {} (or set ARCH_REPO to it)",
        dir.display(),
        if below.len() == 1 { "one" } else { "several" },
        list.join(", "),
        list[0]
    )))
}

fn is_repository(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// Repositories one or two levels below `dir`, in name order (at most 3).
fn repositories_below(dir: &Path) -> Vec<PathBuf> {
    let subdirs = |d: &Path| -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(d) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = rd
            .take(MAX_ENTRIES)
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    };
    let mut found = Vec::new();
    for child in subdirs(dir) {
        if is_repository(&child) {
            found.push(child);
        } else {
            found.extend(subdirs(&child).into_iter().filter(|g| is_repository(g)));
        }
        if found.len() >= 3 {
            break;
        }
    }
    found.truncate(3);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_inside_or_above_a_repository_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("work/repo");
        std::fs::create_dir_all(repo.join("blocks/ab")).unwrap();
        std::fs::write(repo.join(CONFIG_FILE), "").unwrap();
        let inside = misplaced(&repo.join("blocks/ab")).unwrap().to_string();
        assert!(
            inside.contains("is inside the arch repository") && inside.ends_with("to it)"),
            "{inside}"
        );
        assert!(
            inside.contains(&format!("-R {}", repo.display())),
            "{inside}"
        );
        let above = misplaced(tmp.path()).unwrap().to_string();
        assert!(above.contains(&format!("-R {}", repo.display())), "{above}");
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(misplaced(elsewhere.path()).is_none());
    }
}
