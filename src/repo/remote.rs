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

/// The largest marker read: a real one is a few lines. One written by something else may be
/// anything; a longer one is refused unread.
const MAX_MARKER: u64 = 64 << 10;

/// The error for a marker at `url` that is not one arch wrote: `what` it is instead.
fn foreign_marker(url: &StoreUrl, what: String) -> Error {
    Error::UnsupportedRepository {
        path: format!("{url}/{MARKER}").into(),
        what: format!(
            "a repository marker arch cannot read: {}",
            crate::services::names::escape_control(&what)
        ),
        fix: format!(
            "the prefix holds something arch did not write; use another prefix (s3://BUCKET/OTHER), or, when nothing else uses this one, delete {url}/{MARKER} and create the repository again"
        ),
    }
}

/// Checks a marker read from `url` against `config`: same format and block size. `joining`:
/// the block size is the one `arch init` was given (else the one arch.toml records).
fn check_marker(url: &StoreUrl, config: &Config, text: &str, joining: bool) -> Result<()> {
    let found = Config::parse(Path::new(MARKER), text).map_err(|e| match e {
        // A newer format, another hash: named as such (upgrade arch).
        Error::UnsupportedRepository { what, fix, .. } => Error::UnsupportedRepository {
            path: format!("{url}/{MARKER}").into(),
            what,
            fix,
        },
        Error::Corrupt { reason, .. } => foreign_marker(url, reason),
        other => foreign_marker(url, other.to_string()),
    })?;
    if found.store.is_some() {
        return Err(foreign_marker(url, "it names a store of its own".into()));
    }
    if found.block_size == config.block_size {
        return Ok(());
    }
    if joining {
        return Err(Error::invalid(format!(
            "the repository in {url} has block size {} but {} was asked; join it with --block-size {}, or use another prefix",
            found.block_size, config.block_size, found.block_size,
        )));
    }
    Err(Error::UnsupportedRepository {
        path: format!("{url}/{MARKER}").into(),
        what: format!(
            "block size {} where arch.toml records {}: the marker was rewritten, or `store` in arch.toml names another repository",
            found.block_size, config.block_size
        ),
        fix: "point `store` in arch.toml back at this repository's prefix (or restore the marker arch wrote); nothing was changed".into(),
    })
}

/// The marker's text read from `backend` when it is at most [`MAX_MARKER`] bytes (None: no
/// marker; a missing bucket is an error saying how to create it).
fn read_marker(backend: &S3Backend, url: &StoreUrl) -> Result<Option<String>> {
    match backend.read_small_object(MARKER, MAX_MARKER)? {
        Some(Ok(bytes)) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| foreign_marker(url, "it is not UTF-8 text".into())),
        Some(Err(len)) => Err(foreign_marker(
            url,
            format!("it is {len} bytes (a marker is a few lines)"),
        )),
        // Tells a missing bucket from an empty prefix.
        None => backend.read_marker(),
    }
}

/// Creates the repository in the store of `config`, or joins the one there (same block
/// size). Returns the connected backend and whether this call created it.
pub fn create_or_join(config: &Config) -> Result<(S3Backend, bool)> {
    let url = StoreUrl::parse(config.store.as_deref().expect("a store URL"))?;
    let backend = S3Backend::connect(&url)?;
    // An existing marker is checked first, read bounded (the join below reads it whole).
    if let Some(text) = read_marker(&backend, &url)? {
        check_marker(&url, config, &text, true)?;
    }
    let created = backend.create_or_join(&marker_text(config), |text| {
        check_marker(&url, config, text, true)
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
    let mut others = 0usize;
    let mut who = Vec::new();
    for (name, _) in backend.list_names(MEMBERS)? {
        if name == ours.trim() {
            continue;
        }
        // Entries are anyone's to write: read bounded, shown escaped and cut short. One
        // that cannot be read or is not arch's counts as another repository (gc refused).
        let rel = format!("{MEMBERS}/{name}");
        let needed = shared.is_some() || who.len() < 3;
        let text = match needed.then(|| backend.read_small_object(&rel, MAX_MEMBER)) {
            None => String::new(),
            Some(read) => match read? {
                Some(Ok(t)) => String::from_utf8_lossy(&t).into_owned(),
                Some(Err(len)) => format!("an entry of {len} bytes that arch did not write"),
                None => "gone or not an entry".into(),
            },
        };
        if let Some(line) = &shared
            && text.lines().any(|l| format!("{l}\n") == *line)
        {
            continue;
        }
        others += 1;
        if who.len() < 3 {
            who.push(format!(
                "{} ({})",
                shown(&name),
                shown(&text.replace('\n', " "))
            ));
        }
    }
    if others == 0 {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "gc refused: the store {} is also used by {} other repositor{} with a catalog of its own ({}{}); a block only they use looks unreferenced here and gc would delete it. Share one catalog between the hosts (--catalog postgres://...), or, when a repository listed is gone for good, delete its entry {}/{MEMBERS}/ID and run gc again",
        backend.url(),
        others,
        if others == 1 { "y" } else { "ies" },
        who.join(", "),
        if others > 3 { ", ..." } else { "" },
        backend.url(),
    )))
}

/// The largest member entry read (arch writes a few lines).
const MAX_MEMBER: u64 = 64 << 10;

/// `text` as a message shows it: control characters escaped, at most 200 characters.
fn shown(text: &str) -> String {
    let text = text.trim();
    let cut: String = text.chars().take(200).collect();
    let more = if cut.len() < text.len() { "..." } else { "" };
    format!("{}{more}", crate::services::names::escape_control(&cut))
}

/// Connects to the store of an opened repository and checks its marker.
pub fn open(root: &Path, config: &Config) -> Result<S3Backend> {
    let url = StoreUrl::parse(config.store.as_deref().expect("a store URL"))?;
    let backend = S3Backend::connect(&url)?;
    match read_marker(&backend, &url)? {
        Some(text) => check_marker(&url, config, &text, false)?,
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
        check_marker(&url, &config, &text, true).unwrap();
        let other = Config::new(65536).unwrap();
        let e = check_marker(&url, &other, &text, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--block-size 4096"), "{e}");
        // At open, arch.toml and the store disagree: neither side is "asked".
        let e = check_marker(&url, &other, &text, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("arch.toml records 65536"), "{e}");
        assert!(check_marker(&url, &config, "format = 1", true).is_err());
    }

    #[test]
    fn a_foreign_marker_is_refused_naming_it_and_the_fix() {
        let url = StoreUrl::parse("s3://bucket/p").unwrap();
        let config = Config::new(4096).unwrap();
        let bad = [
            "\u{0}\u{1b}[31m garbage \u{7f}".to_string(),
            "format = \"one\"".into(),
            "format = 99\nblock_size = 4096".into(),
            "format = 1\nblock_size = 12345\nhash = \"sha256\"".into(),
            format!("{}\nstore = \"s3://other/x\"", marker_text(&config)),
            "[[[".repeat(10_000),
        ];
        for text in bad {
            let e = check_marker(&url, &config, &text, false).unwrap_err();
            let shown = e.to_string();
            assert!(
                matches!(e, Error::UnsupportedRepository { .. }),
                "{text:.40}: {shown}"
            );
            assert!(
                shown.contains("s3://bucket/p/arch-repository.toml"),
                "{shown}"
            );
            assert!(
                !shown.contains('\u{1b}'),
                "control characters are escaped: {shown}"
            );
        }
        let e = check_marker(&url, &config, "format = 99", false).unwrap_err();
        assert!(e.to_string().contains("upgrade arch"), "{e}");
    }
}
