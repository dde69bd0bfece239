//! The library's typed errors: each says what failed, on what, and what to do about it.

use std::io;
use std::path::{Path, PathBuf};

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a library operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no arch repository found in {start} or any parent directory; run `arch init DIR`, pass `-R DIR`, or set ARCH_REPO"
    )]
    NoRepository { start: PathBuf },
    #[error(
        "{path} is not an arch repository (no arch.toml); run `arch init {path}` to create one"
    )]
    NotARepository { path: PathBuf },
    #[error("{path} is already an arch repository; use it as it is, or init a different directory")]
    AlreadyARepository { path: PathBuf },
    #[error("{path} exists and is not empty; init a new or empty directory")]
    DirectoryNotEmpty { path: PathBuf },
    #[error("repository {path} uses {what}; {fix}")]
    UnsupportedRepository {
        path: PathBuf,
        what: String,
        fix: String,
    },
    #[error("invalid name '{name}': {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{kind} '{name}' not found{}", suggestion_text(.suggestion))]
    NotFound {
        kind: &'static str,
        name: String,
        suggestion: Option<String>,
    },
    #[error("{kind} '{name}' already exists; {fix}")]
    AlreadyExists {
        kind: &'static str,
        name: String,
        fix: String,
    },
    #[error(
        "{kind} reference '{name}' is ambiguous: it matches {}; use a full id or the object name",
        .candidates.join(", ")
    )]
    Ambiguous {
        kind: &'static str,
        name: String,
        candidates: Vec<String>,
    },
    #[error("cannot read source {path}: {source}; check the path and its permissions")]
    SourceUnreadable { path: PathBuf, source: io::Error },
    #[error(
        "corrupted block {hash} at offset {offset} of {resource}: the stored data does not match its hash; run `arch fsck --read-data --repair` to move it to quarantine/ and list what needs it, then put the original data again (any put, import or snapshot holding that block restores it)"
    )]
    CorruptBlock {
        hash: String,
        offset: u64,
        resource: String,
    },
    #[error(
        "missing block {hash} at offset {offset} of {resource}; the repository is damaged: run `arch fsck` to list what needs it, then put the original data again (any put, import or snapshot holding that block restores it)"
    )]
    MissingBlock {
        hash: String,
        offset: u64,
        resource: String,
    },
    #[error("damaged repository file {path}: {reason}; run `arch fsck`")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "no space left on the device while writing {path}; free space and retry (nothing was committed)"
    )]
    NoSpace { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error("{resource} is in use by another arch process; retry when it has finished")]
    Busy { resource: String },
    #[error("volume '{name}' is served read-write by {server}; {fix}")]
    Served {
        name: String,
        server: String,
        fix: String,
    },
    #[error("volume '{name}' {state}; {fix}")]
    VolumeCreating {
        name: String,
        state: String,
        fix: String,
    },
    #[error(
        "interrupted by {signal}: the command stopped at a safe point and removed its temporary files"
    )]
    Interrupted { signal: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A volume write that failed after changing some blocks; `changes` lists them.
    #[error("write to volume '{volume}' failed: {}; {changes}", cause_text(.cause))]
    PartialWrite {
        volume: String,
        changes: String,
        cause: Box<Error>,
    },
    /// A send stream that is truncated, reordered, corrupt or hostile (see docs/FORMAT.md
    /// "Send streams"); refused before anything it holds becomes visible.
    #[error(
        "not a valid arch stream: {reason}; nothing was received (the repository is as it was). Send it again, or check what produced it"
    )]
    BadStream { reason: String },
    /// The catalog on PostgreSQL cannot be used: unreachable after retries, refused, or
    /// failed; `target` is its URL without credentials.
    #[error("catalog {target}: {reason}; {fix}")]
    Catalog {
        target: String,
        reason: String,
        fix: String,
    },
    /// The object store holding blocks and maps failed or refused a request (after retries):
    /// names the store, its endpoint (never credentials) and the fix.
    #[error("object store {store}: {what}; {fix}")]
    Store {
        store: String,
        what: String,
        fix: String,
    },
    /// A request to a remote store (volume private blocks in an object store) failed after
    /// the store client's retries.
    #[error(
        "{what}: {reason}; check that the store is reachable (AWS_ENDPOINT_URL) and that the credentials (AWS_* variables or ~/.aws) are valid, then run the command again"
    )]
    Remote { what: String, reason: String },
    /// An error inside a named step (a customization task), which it names first.
    #[error("{task}: {source}")]
    InTask { task: String, source: Box<Error> },
}

/// The text of `cause` of a partial write, without claims that only hold when nothing was
/// written.
pub(crate) fn cause_text(cause: &Error) -> String {
    match cause {
        Error::NoSpace { path } => format!(
            "no space left on the device while writing {}; free space and retry",
            path.display()
        ),
        other => other.to_string(),
    }
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("; did you mean '{s}'?"),
        None => String::new(),
    }
}

impl Error {
    /// Wraps an I/O error with the operation and path; ENOSPC becomes [`Error::NoSpace`].
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return Error::NoSpace { path };
        }
        Error::Io { op, path, source }
    }

    /// An invalid-argument error with a message that already names the fix.
    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }

    /// Stable snake_case name of the error kind, for `--json` error documents.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoRepository { .. } => "no_repository",
            Error::NotARepository { .. } => "not_a_repository",
            Error::AlreadyARepository { .. } => "already_a_repository",
            Error::DirectoryNotEmpty { .. } => "directory_not_empty",
            Error::UnsupportedRepository { .. } => "unsupported_repository",
            Error::InvalidName { .. } => "invalid_name",
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists { .. } => "already_exists",
            Error::Ambiguous { .. } => "ambiguous",
            Error::SourceUnreadable { .. } => "source_unreadable",
            Error::CorruptBlock { .. } => "corrupt_block",
            Error::MissingBlock { .. } => "missing_block",
            Error::Corrupt { .. } => "corrupt",
            Error::NoSpace { .. } => "no_space",
            Error::Invalid(_) => "invalid_argument",
            Error::Busy { .. } => "busy",
            Error::VolumeCreating { .. } => "volume_creating",
            Error::Served { .. } => "served",
            Error::Interrupted { .. } => "interrupted",
            Error::Io { .. } => "io",
            Error::InTask { source, .. } => source.kind(),
            Error::PartialWrite { .. } => "partial_write",
            Error::BadStream { .. } => "bad_stream",
            Error::Catalog { .. } => "remote",
            Error::Store { .. } => "remote",
            Error::Remote { .. } => "remote",
        }
    }
}
