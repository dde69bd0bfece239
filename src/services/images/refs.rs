//! Resolution of an image REF (full id, unique id prefix of at least 8 characters, object name
//! `container/object`, or unique display name) to the object that carries it.

use crate::error::{Error, Result};
use crate::repo::catalog::Catalog;
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
pub fn resolve(cat: &Catalog, reference: &str, among: Among) -> Result<String> {
    if let Some(rec) = cat.objects.get(reference) {
        if among == Among::Images && rec.image.is_none() {
            return Err(not_an_image(reference));
        }
        return Ok(reference.to_string());
    }
    let eligible = cat
        .objects
        .iter()
        .filter(|(_, r)| among == Among::Resources || r.image.is_some());
    if let Some((name, _)) = eligible.clone().find(|(_, r)| r.uuid == reference) {
        return Ok(name.clone());
    }
    let by_prefix = reference.len() >= MIN_ID_PREFIX;
    let candidates: Vec<(&String, String)> = eligible
        .clone()
        .filter(|(_, r)| {
            (by_prefix && r.uuid.starts_with(reference))
                || r.image.as_ref().is_some_and(|i| i.name == reference)
        })
        .map(|(name, r)| (name, r.uuid.clone()))
        .collect();
    match candidates.as_slice() {
        [(name, _)] => Ok((*name).clone()),
        [] => {
            let known = eligible.flat_map(|(name, r)| {
                std::iter::once(name.as_str()).chain(r.image.as_ref().map(|i| i.name.as_str()))
            });
            Err(Error::NotFound {
                kind: if among == Among::Images {
                    "image"
                } else {
                    "resource"
                },
                name: reference.to_string(),
                suggestion: closest(reference, known),
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
    use crate::repo::records::{ImageRecord, ObjectRecord};
    use crate::storage::BlockHash;

    fn object(uuid: &str, display: Option<&str>) -> ObjectRecord {
        ObjectRecord {
            uuid: uuid.into(),
            bytes: 0,
            hash: String::new(),
            map: BlockHash([0; 32]),
            block_size: 4096,
            content_type: String::new(),
            version: 1,
            created: String::new(),
            modified: String::new(),
            meta: Default::default(),
            image: display.map(|n| ImageRecord {
                name: n.into(),
                owner: String::new(),
                status: "AVAILABLE".into(),
                disk_format: "diskdump".into(),
                container_format: "bare".into(),
                is_public: false,
                is_snapshot: false,
                created_at: String::new(),
                updated_at: String::new(),
                properties: Default::default(),
            }),
        }
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.objects
            .insert("images/a".into(), object("aaaaaaaa-1111", Some("Debian")));
        c.objects
            .insert("images/b".into(), object("aaaaaaaa-2222", Some("Ubuntu")));
        c.objects
            .insert("images/c".into(), object("cccccccc-3333", Some("Ubuntu")));
        c.objects
            .insert("plain/d".into(), object("dddddddd-4444", None));
        c
    }

    #[test]
    fn resolves_by_name_id_prefix_and_display_name() {
        let c = catalog();
        assert_eq!(resolve(&c, "images/a", Among::Images).unwrap(), "images/a");
        assert_eq!(
            resolve(&c, "aaaaaaaa-2222", Among::Images).unwrap(),
            "images/b"
        );
        assert_eq!(resolve(&c, "cccccccc", Among::Images).unwrap(), "images/c");
        assert_eq!(resolve(&c, "Debian", Among::Images).unwrap(), "images/a");
        assert_eq!(
            resolve(&c, "dddddddd-4444", Among::Resources).unwrap(),
            "plain/d"
        );
    }

    #[test]
    fn ambiguity_lists_every_candidate() {
        let c = catalog();
        let e = resolve(&c, "aaaaaaaa", Among::Images)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("aaaaaaaa-1111 (images/a)") && e.contains("aaaaaaaa-2222 (images/b)"),
            "{e}"
        );
        let e = resolve(&c, "Ubuntu", Among::Images)
            .unwrap_err()
            .to_string();
        assert!(e.contains("images/b") && e.contains("images/c"), "{e}");
    }

    #[test]
    fn short_prefixes_plain_objects_and_unknowns_are_refused() {
        let c = catalog();
        assert!(resolve(&c, "aaaa", Among::Images).is_err());
        let e = resolve(&c, "plain/d", Among::Images)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not registered"), "{e}");
        assert!(resolve(&c, "dddddddd-4444", Among::Images).is_err());
        let e = resolve(&c, "Debain", Among::Images)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean 'Debian'"), "{e}");
    }
}
