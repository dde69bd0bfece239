//! A repository whose blocks and maps live in an object store (`store = "s3://..."` in
//! arch.toml): creating or joining it at init (the marker object `PREFIX/arch-repository.toml`,
//! written create-only, so exactly one of racing inits creates it) and checking the marker
//! against arch.toml at every open.

use super::config::Config;
use crate::error::{Error, Result};
use crate::storage::s3::{MARKER, S3Backend, StoreUrl};
use std::path::Path;

/// Where a repository's blocks and maps live, for `arch du` and `arch info` (never
/// credentials).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DataLocation {
    /// `local` (the repository directory) or `s3`.
    pub kind: &'static str,
    /// The directory (absolute when it can be resolved) or `s3://BUCKET[/PREFIX]`.
    pub location: String,
    /// The S3 endpoint (AWS_ENDPOINT_URL, or `AWS S3`); null for a local directory.
    pub endpoint: Option<String>,
}

impl std::fmt::Display for DataLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.endpoint {
            Some(ep) => write!(f, "{} (endpoint {ep})", self.location),
            None => write!(f, "{}", self.location),
        }
    }
}

/// The marker's text: arch.toml without the store key (the store does not name itself).
fn marker_text(config: &Config) -> String {
    let mut c = config.clone();
    c.store = None;
    c.to_toml()
}

/// Checks a marker read from `url` against `config`: same format and block size.
fn check_marker(url: &StoreUrl, config: &Config, text: &str) -> Result<()> {
    let found = Config::parse(Path::new(&url.to_string()), text).map_err(|e| Error::Corrupt {
        path: format!("{url}/{MARKER}").into(),
        reason: format!("not a valid repository marker: {e}"),
    })?;
    if found.store.is_some() {
        return Err(Error::Corrupt {
            path: format!("{url}/{MARKER}").into(),
            reason: "the marker names a store of its own".into(),
        });
    }
    if found.block_size != config.block_size {
        return Err(Error::invalid(format!(
            "the repository in {url} has block size {} but {} was asked; join it with --block-size {}, or use another prefix",
            found.block_size, config.block_size, found.block_size,
        )));
    }
    Ok(())
}

/// Creates the repository in the store of `config`, or joins the one there (same block
/// size). Returns the connected backend and whether this call created it.
pub fn create_or_join(config: &Config) -> Result<(S3Backend, bool)> {
    let url = StoreUrl::parse(config.store.as_deref().expect("a store URL"))?;
    let backend = S3Backend::connect(&url)?;
    let created = backend.create_or_join(&marker_text(config), |text| {
        check_marker(&url, config, text)
    })?;
    Ok((backend, created))
}

/// Local file naming this repository's entry in the store's `members/` (its id).
const MEMBER_FILE: &str = "meta/store-member";
/// Where each repository (DIR) using the store with a catalog of its own registers.
const MEMBERS: &str = "members";

/// Registers the repository being created in `dir` as a user of the store: the object
/// `PREFIX/members/<id>` (its directory and host, for messages) and, locally, `meta/store-member`
/// holding `<id>`. gc reads them: blocks are shared, catalogs are not.
pub fn register_member(
    backend: &S3Backend,
    dir: &Path,
    modes: crate::storage::fsutil::Modes,
    catalog: Option<&str>,
) -> Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut text = format!(
        "dir = {:?}\nhost = {:?}\n",
        abs.display().to_string(),
        host.trim()
    );
    if let Some(url) = catalog {
        text.push_str(&catalog_line(url));
    }
    backend.create_object(&format!("{MEMBERS}/{id}"), text.into_bytes())?;
    crate::storage::fsutil::atomic_write_mode(
        &dir.join(crate::storage::local::TMP_DIR),
        &dir.join(MEMBER_FILE),
        id.as_bytes(),
        modes.file(),
    )
}

/// The line of a member entry naming the shared catalog it uses.
fn catalog_line(url: &str) -> String {
    format!("catalog = {url:?}\n")
}

/// Refuses gc when other repositories with catalogs of their own use the same store: a block
/// only they reference looks unreferenced from here, and deleting it would lose their data.
/// Members that share this repository's PostgreSQL catalog are no such risk: gc sees their
/// references in the catalog it reads, and their commands hold the shared data lock.
pub fn check_sole_store_user(repo: &super::Repository, backend: &S3Backend) -> Result<()> {
    let ours = std::fs::read_to_string(repo.root().join(MEMBER_FILE)).unwrap_or_default();
    let shared = repo.config().catalog.as_deref().map(catalog_line);
    let mut others = Vec::new();
    for (name, _) in backend.list_names(MEMBERS)? {
        if name == ours.trim() {
            continue;
        }
        if let Some(line) = &shared {
            let text = backend.read_object(&format!("{MEMBERS}/{name}"))?;
            if text.is_some_and(|t| {
                String::from_utf8_lossy(&t)
                    .lines()
                    .any(|l| format!("{l}\n") == *line)
            }) {
                continue;
            }
        }
        others.push(name);
    }
    if others.is_empty() {
        return Ok(());
    }
    let mut who = Vec::new();
    for id in others.iter().take(3) {
        let text = backend
            .read_object(&format!("{MEMBERS}/{id}"))?
            .map(|b| String::from_utf8_lossy(&b).replace('\n', " "))
            .unwrap_or_default();
        who.push(format!("{id} ({})", text.trim()));
    }
    Err(Error::invalid(format!(
        "gc refused: the store {} is also used by {} other repositor{} with a catalog of its own ({}{}); a block only they use looks unreferenced here and gc would delete it. Share one catalog between the hosts (--catalog postgres://...), or, when a repository listed is gone for good, delete its entry {}/{MEMBERS}/ID and run gc again",
        backend.url(),
        others.len(),
        if others.len() == 1 { "y" } else { "ies" },
        who.join(", "),
        if others.len() > 3 { ", ..." } else { "" },
        backend.url(),
    )))
}

/// Connects to the store of an opened repository and checks its marker.
pub fn open(root: &Path, config: &Config) -> Result<S3Backend> {
    let url = StoreUrl::parse(config.store.as_deref().expect("a store URL"))?;
    let backend = S3Backend::connect(&url)?;
    match backend.read_marker()? {
        Some(text) => check_marker(&url, config, &text)?,
        None => {
            return Err(Error::Corrupt {
                path: root.join(super::CONFIG_FILE),
                reason: format!(
                    "its store {url} holds no arch repository (no {MARKER} there): the prefix was emptied or the URL is wrong. Point `store` at the right place, or create the repository there again with `arch init NEWDIR --store {url}`"
                ),
            });
        }
    }
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_checked_for_block_size() {
        let url = StoreUrl::parse("s3://bucket/p").unwrap();
        let mut config = Config::new(4096).unwrap();
        config.store = Some(url.to_string());
        let text = marker_text(&config);
        assert!(!text.contains("store"));
        check_marker(&url, &config, &text).unwrap();
        let other = Config::new(65536).unwrap();
        let e = check_marker(&url, &other, &text).unwrap_err().to_string();
        assert!(e.contains("--block-size 4096"), "{e}");
        assert!(check_marker(&url, &config, "format = 1").is_err());
    }
}
