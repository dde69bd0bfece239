//! Object listings with Swift/Pithos semantics: the objects of one container in name order,
//! filtered by `prefix`, after `marker`, at most `limit` entries, and with a `delimiter`
//! rolled up into pseudo-folders (`subdir`s). Streamed from the catalog: memory does not
//! grow with the container.

use super::images::resource_kind;
use super::names::{closest, validate_container};
use super::objects::{ObjectEntry, list_containers};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::db::ObjectFilter;

/// What to list of a container.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub prefix: String,
    /// Names are rolled up to the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Only names strictly after this one.
    pub marker: Option<String>,
    /// At most this many entries (objects and pseudo-folders together).
    pub limit: Option<u64>,
}

/// One entry of a listing.
#[derive(Debug, Clone)]
pub enum Listed {
    Object(ObjectEntry),
    /// A pseudo-folder: the common prefix (`container/prefix...delimiter`) of the names
    /// rolled up into it.
    Folder(String),
}

/// Lists `container` per `opts`, handing each entry to `f` in name order. An empty
/// container (no object at all) is an error naming the closest container.
pub fn list(
    repo: &Repository,
    container: &str,
    opts: &ListOptions,
    f: &mut dyn FnMut(Listed) -> Result<()>,
) -> Result<()> {
    if let Err(reason) = validate_container(container) {
        return Err(Error::InvalidName {
            name: container.to_string(),
            reason,
        });
    }
    if opts.delimiter.as_deref() == Some("") {
        return Err(Error::invalid(
            "--delimiter is empty; give the character that separates folders, e.g. --delimiter /",
        ));
    }
    let db = repo.catalog()?;
    let mut left = opts.limit.unwrap_or(u64::MAX);
    let mut marker = opts.marker.clone();
    let mut any = false;
    // One pass per pseudo-folder: the folder is emitted, then the scan restarts past every
    // name it covers.
    db.read(|db| {
        // The folder last emitted: a name inside it that sorts past the restart marker
        // (`folder` + U+10FFFF, then more U+10FFFF) is skipped, never emitted again.
        let mut emitted: Option<String> = None;
        while left > 0 {
            let filter = ObjectFilter {
                container: Some(container.to_string()),
                prefix: opts.prefix.clone(),
                marker: marker.take(),
                images_only: false,
            };
            let mut folder = None;
            db.for_each_object(&filter, &mut |full, rec| {
                any = true;
                let object = &full[container.len() + 1..];
                if emitted
                    .as_ref()
                    .is_some_and(|e| object.starts_with(e.as_str()))
                {
                    return Ok(true);
                }
                if let Some(d) = &opts.delimiter
                    && let Some(at) = object[opts.prefix.len()..].find(d.as_str())
                {
                    folder = Some(object[..opts.prefix.len() + at + d.len()].to_string());
                    return Ok(false);
                }
                left -= 1;
                f(Listed::Object(ObjectEntry {
                    kind: resource_kind(&rec).into(),
                    name: full,
                    bytes: rec.bytes,
                    hash: rec.hash,
                    content_type: rec.content_type,
                    modified: rec.modified,
                    uuid: rec.uuid,
                }))?;
                Ok(left > 0)
            })?;
            let Some(folder) = folder else {
                break;
            };
            left -= 1;
            f(Listed::Folder(format!("{container}/{folder}")))?;
            // Past every name that starts with the folder.
            marker = Some(format!("{folder}{}", char::MAX));
            emitted = Some(folder);
        }
        Ok(())
    })?;
    if !any && opts.prefix.is_empty() && opts.marker.is_none() && opts.limit != Some(0) {
        let containers: Vec<String> = list_containers(repo)?.into_iter().map(|c| c.name).collect();
        return Err(Error::NotFound {
            kind: "container",
            name: container.to_string(),
            suggestion: closest(container, containers.iter().map(String::as_str)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::services::names::ObjectName;
    use crate::services::objects::{PutOptions, put};
    use crate::storage::ingest::Source;

    fn names(repo: &Repository, opts: ListOptions) -> Vec<String> {
        let mut out = Vec::new();
        list(repo, "c", &opts, &mut |e| {
            out.push(match e {
                Listed::Object(o) => o.name,
                Listed::Folder(f) => format!("{f} (folder)"),
            });
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn prefix_delimiter_marker_and_limit_follow_swift() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path(), 4096).unwrap();
        for n in ["a/1", "a/2", "a/b/3", "b", "c/x", "d"] {
            let src = Source::Stream {
                reader: Box::new(std::io::Cursor::new(n.as_bytes().to_vec())),
                label: n.into(),
            };
            let name = ObjectName::parse(&format!("c/{n}")).unwrap();
            put(&repo, src, &name, &PutOptions::default(), &NoProgress).unwrap();
        }
        let delim = Some("/".to_string());
        assert_eq!(
            names(
                &repo,
                ListOptions {
                    delimiter: delim.clone(),
                    ..Default::default()
                }
            ),
            ["c/a/ (folder)", "c/b", "c/c/ (folder)", "c/d"]
        );
        assert_eq!(
            names(
                &repo,
                ListOptions {
                    prefix: "a/".into(),
                    delimiter: delim.clone(),
                    ..Default::default()
                }
            ),
            ["c/a/1", "c/a/2", "c/a/b/ (folder)"]
        );
        assert_eq!(
            names(
                &repo,
                ListOptions {
                    marker: Some("a/2".into()),
                    limit: Some(2),
                    ..Default::default()
                }
            ),
            ["c/a/b/3", "c/b"]
        );
        assert_eq!(
            names(
                &repo,
                ListOptions {
                    delimiter: delim,
                    limit: Some(2),
                    ..Default::default()
                }
            ),
            ["c/a/ (folder)", "c/b"]
        );
        assert!(list(&repo, "nope", &ListOptions::default(), &mut |_| Ok(())).is_err());
    }

    /// `a/\u{10FFFF}\u{10FFFF}` sorts past the restart marker of folder `a/`: it must not
    /// bring the folder back (the listing looped forever before).
    #[test]
    fn a_name_past_the_folder_marker_does_not_repeat_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path(), 4096).unwrap();
        for n in ["a/1", "a/\u{10FFFF}\u{10FFFF}", "b"] {
            let src = Source::Stream {
                reader: Box::new(std::io::Cursor::new(b"x".to_vec())),
                label: n.into(),
            };
            let name = ObjectName::parse(&format!("c/{n}")).unwrap();
            put(&repo, src, &name, &PutOptions::default(), &NoProgress).unwrap();
        }
        let opts = ListOptions {
            delimiter: Some("/".into()),
            ..Default::default()
        };
        assert_eq!(names(&repo, opts), ["c/a/ (folder)", "c/b"]);
    }
}
