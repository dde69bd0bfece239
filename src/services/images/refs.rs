//! Resolution of an image REF (full id, unique id prefix of at least 8 characters, object name
//! `container/object`, or unique display name) to the object that carries it.

use crate::error::{Error, Result};
use crate::repo::db::{Db, ObjectFilter};
use crate::repo::records::ObjectRecord;
use crate::services::names::closest;

/// Shortest accepted id prefix.
pub const MIN_ID_PREFIX: usize = 8;

/// Which objects a reference may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Among {
    /// Registered images and snapshots only.
    Images,
    /// Any object: by name or uuid; images also by display name.
    Resources,
}

/// Resolves `reference` to the full object name it designates.
///
/// An object name wins outright. Otherwise the candidates are the objects whose id equals the
/// reference, starts with it (when it has at least [`MIN_ID_PREFIX`] characters), or whose
/// image display name equals it; exactly one candidate resolves, several are an error listing
/// them all.
pub fn resolve(cat: &Db, reference: &str, among: Among) -> Result<String> {
    if let Some(rec) = cat.object(reference)? {
        if among == Among::Images && rec.image.is_none() {
            return Err(not_an_image(reference));
        }
        return Ok(reference.to_string());
    }
    let eligible = |r: &ObjectRecord| among == Among::Resources || r.image.is_some();
    let by_prefix = reference.len() >= MIN_ID_PREFIX;
    let mut exact = None;
    let mut candidates: Vec<(String, String)> = Vec::new();
    // Ids a too-short prefix would match, to say why it does not.
    let mut short_matches: Vec<String> = Vec::new();
    // The ids starting with the reference (of which only an exact id counts when it is too
    // short for a prefix), and the images displayed under it.
    cat.objects_by_id_or_display(reference, reference, &mut |name, r| {
        if !eligible(&r) {
            return Ok(true);
        }
        if r.uuid == reference {
            exact = Some(name);
            return Ok(false);
        }
        if !by_prefix && !reference.is_empty() && r.uuid.starts_with(reference) {
            short_matches.push(r.uuid.clone());
        }
        if (by_prefix && r.uuid.starts_with(reference))
            || r.image.as_ref().is_some_and(|i| i.name == reference)
        {
            candidates.push((name, r.uuid));
        }
        Ok(true)
    })?;
    if let Some(name) = exact {
        return Ok(name);
    }
    match candidates.as_slice() {
        [(name, _)] => Ok(name.clone()),
        [] if !short_matches.is_empty() => Err(Error::invalid(format!(
            "image '{reference}' not found: '{reference}' is shorter than {MIN_ID_PREFIX} \
             characters, too short for an id prefix (it starts the id{} {}); give at least \
             {MIN_ID_PREFIX} characters of the id, the object name or the display name",
            if short_matches.len() == 1 { "" } else { "s" },
            short_matches
                .iter()
                .take(3)
                .map(|id| id[..MIN_ID_PREFIX.min(id.len())].to_string() + "...")
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        [] => {
            let mut known: Vec<String> = Vec::new();
            let filter = ObjectFilter {
                images_only: among == Among::Images,
                ..Default::default()
            };
            cat.for_each_object(&filter, &mut |name, r| {
                known.push(name);
                known.extend(r.image.map(|i| i.name));
                Ok(known.len() < 10_000)
            })?;
            Err(Error::NotFound {
                kind: if among == Among::Images {
                    "image"
                } else {
                    "resource"
                },
                name: reference.to_string(),
                suggestion: closest(reference, known.iter().map(String::as_str)),
            })
        }
        many => Err(Error::Ambiguous {
            kind: "image",
            name: reference.to_string(),
            candidates: many
                .iter()
                .map(|(name, id)| format!("{id} ({name})"))
                .collect(),
        }),
    }
}

/// The error for an image operation on an object that is not registered.
pub fn not_an_image(name: &str) -> Error {
    Error::invalid(format!(
        "object '{name}' is not registered as an image; register it first: \
         arch image register {name} --name DISPLAY_NAME"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uuid: &str, display: Option<&str>) -> ObjectRecord {
        let mut rec = crate::repo::records::tests::object();
        rec.uuid = format!("{uuid}-4000-8000-000000000000");
        rec.image = display.map(|n| {
            let mut img = crate::repo::records::tests::image();
            img.name = n.into();
            img
        });
        rec
    }

    /// A catalog database in `dir` holding four objects, three of them images.
    fn catalog(dir: &std::path::Path) -> Db {
        let path = dir.join("catalog.db");
        crate::repo::db::schema::build(&path, &Default::default(), 4096).unwrap();
        let db = Db::open(&path, 4096).unwrap();
        db.write(|c| {
            c.put_object("images/a", &object("aaaaaaaa-1111", Some("Debian")))?;
            c.put_object("images/b", &object("aaaaaaaa-2222", Some("Ubuntu")))?;
            c.put_object("images/c", &object("cccccccc-3333", Some("Ubuntu")))?;
            c.put_object("plain/d", &object("dddddddd-4444", None))
        })
        .unwrap();
        db
    }

    #[test]
    fn resolves_by_name_id_prefix_and_display_name() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path());
        assert_eq!(resolve(&c, "images/a", Among::Images).unwrap(), "images/a");
        assert_eq!(
            resolve(&c, "aaaaaaaa-2222-4000-8000-000000000000", Among::Images).unwrap(),
            "images/b"
        );
        assert_eq!(resolve(&c, "cccccccc", Among::Images).unwrap(), "images/c");
        assert_eq!(resolve(&c, "Debian", Among::Images).unwrap(), "images/a");
        assert_eq!(
            resolve(&c, "dddddddd-4444-4000-8000-000000000000", Among::Resources).unwrap(),
            "plain/d"
        );
    }

    #[test]
    fn ambiguity_lists_every_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path());
        let e = resolve(&c, "aaaaaaaa", Among::Images)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("aaaaaaaa-1111-4000-8000-000000000000 (images/a)")
                && e.contains("aaaaaaaa-2222-4000-8000-000000000000 (images/b)"),
            "{e}"
        );
        let e = resolve(&c, "Ubuntu", Among::Images)
            .unwrap_err()
            .to_string();
        assert!(e.contains("images/b") && e.contains("images/c"), "{e}");
    }

    #[test]
    fn short_prefixes_plain_objects_and_unknowns_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path());
        assert!(resolve(&c, "aaaa", Among::Images).is_err());
        let e = resolve(&c, "plain/d", Among::Images)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not registered"), "{e}");
        assert!(resolve(&c, "dddddddd-4444-4000-8000-000000000000", Among::Images).is_err());
        let e = resolve(&c, "Debain", Among::Images)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean 'Debian'"), "{e}");
    }
}
