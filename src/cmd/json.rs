//! The JSON shapes that several commands print, each defined once here so that the same
//! thing has the same shape everywhere (docs/JSON.md, docs/json/defs.schema.json):
//! a volume's `source` and `customization` (`clone`, `customize`, `volume info`,
//! `volume ls`), a volume (`volume info`, `volume ls` rows) and an image (`image info`,
//! `image ls` rows, the `image` of `info`, the image commands' reports).
//!
//! Key order is the order of the fields of these structs (serde keeps it; `#[serde(flatten)]`
//! writes the flattened struct's fields in place). Never build output from a
//! `serde_json::Value` map: without serde_json's `preserve_order` it sorts its keys.

use crate::repo::records::TaskRecord;
use crate::services::images::{ImageChange, ImageEntry};
use crate::services::objects::ObjectInfo;
use crate::services::volumes::customize::CustomizeReport;
use crate::services::volumes::{CloneReport, VolumeInfo};
use serde::Serialize;

/// An image: `object` (the object that carries it, `container/object`), then the image
/// fields in [`crate::services::images::ImageView`] order.
pub type Image = ImageEntry;

/// The read-only resource a volume was cloned from; `null` for an imported volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// `image`, `snapshot` or `object`: what the resource was when the volume was cloned.
    pub kind: String,
    /// The image id (= object uuid) or, for a plain object, the object uuid.
    pub id: String,
    /// The source object's name as it is now, `container/object` (found by id: after
    /// `arch mv`, its new name); `null` once it was removed.
    pub object: Option<String>,
    /// True when the source object was removed since the clone (the volume keeps its data).
    pub removed: bool,
}

impl Source {
    /// From a volume's recorded `kind:id` reference and source object name; None for a
    /// volume with no source (imported).
    pub fn from_record(
        reference: Option<&str>,
        object: Option<&str>,
        removed: bool,
    ) -> Option<Source> {
        let reference = reference?;
        let (kind, id) = reference.split_once(':').unwrap_or(("object", reference));
        Some(Source {
            kind: kind.to_string(),
            id: id.to_string(),
            object: object.map(str::to_string),
            removed,
        })
    }
}

/// The customization tasks run on a volume, in order; `null` when none ran (a clone of a
/// Snapshot or a plain object, `--no-customize`, an imported volume).
#[derive(Debug, Clone, Serialize)]
pub struct Customization<'a> {
    pub tasks: &'a [TaskRecord],
    /// Blocks the tasks changed. Known to the command that ran them (`clone`, `customize`);
    /// `null` in `volume info`/`volume ls`, which only have the recorded tasks.
    pub blocks_changed: Option<u64>,
}

impl<'a> Customization<'a> {
    /// The recorded tasks of a volume; None when it has none.
    pub fn recorded(tasks: &'a [TaskRecord]) -> Option<Customization<'a>> {
        (!tasks.is_empty()).then_some(Customization {
            tasks,
            blocks_changed: None,
        })
    }

    /// What a customization run reported.
    pub fn ran(report: &'a CustomizeReport) -> Customization<'a> {
        Customization {
            tasks: &report.tasks,
            blocks_changed: Some(report.blocks_changed),
        }
    }
}

/// A volume (`volume info`, each row of `volume ls`): the service's description, then
/// `source` and `customization` in their shared shapes.
#[derive(Debug, Serialize)]
pub struct Volume<'a> {
    #[serde(flatten)]
    pub info: &'a VolumeInfo,
    pub source: Option<Source>,
    pub customization: Option<Customization<'a>>,
}

impl<'a> Volume<'a> {
    pub fn new(info: &'a VolumeInfo) -> Volume<'a> {
        Volume {
            info,
            source: Source::from_record(
                info.source.as_deref(),
                info.source_object.as_deref(),
                info.source_removed,
            ),
            customization: Customization::recorded(&info.customization),
        }
    }
}

/// What `arch clone` did: the new volume, its source and its customization.
#[derive(Debug, Serialize)]
pub struct Cloned<'a> {
    pub volume: &'a str,
    pub id: &'a str,
    pub size: u64,
    pub source: Source,
    pub customization: Option<Customization<'a>>,
    /// An unfinished volume of the same name, left by a dead creator, removed first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_unfinished: Option<&'a crate::repo::records::CreationRecord>,
}

impl<'a> Cloned<'a> {
    pub fn new(r: &'a CloneReport) -> Cloned<'a> {
        Cloned {
            volume: &r.volume,
            id: &r.id,
            size: r.size,
            source: Source::from_record(Some(&r.source.source), Some(&r.source.object), false)
                .expect("a clone has a source"),
            customization: r.customization.as_ref().map(Customization::ran),
            removed_unfinished: r.removed_unfinished.as_ref(),
        }
    }
}

/// What `arch customize` did.
#[derive(Debug, Serialize)]
pub struct Customized<'a> {
    pub volume: &'a str,
    pub customization: Customization<'a>,
}

/// `arch info`: the object's fields, then its `image` (null when not registered) in the one
/// image shape.
#[derive(Debug, Serialize)]
pub struct Object<'a> {
    #[serde(flatten)]
    pub info: &'a ObjectInfo,
    pub image: Option<Image>,
}

impl<'a> Object<'a> {
    pub fn new(info: &'a ObjectInfo) -> Object<'a> {
        Object {
            info,
            image: info.image.as_ref().map(|view| Image {
                object: info.name.clone(),
                image: view.clone(),
            }),
        }
    }
}

/// What `image register|modify|mark` did: the image, then whether anything was written.
#[derive(Debug, Serialize)]
pub struct ImageChanged {
    #[serde(flatten)]
    pub image: Image,
    /// False when the request matched the current state and nothing was written.
    pub changed: bool,
}

impl ImageChanged {
    pub fn new(c: &ImageChange) -> ImageChanged {
        ImageChanged {
            image: Image {
                object: c.object.clone(),
                image: c.image.clone(),
            },
            changed: c.changed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_reference_splits_into_kind_and_id() {
        let s = Source::from_record(Some("snapshot:1234"), Some("snapshots/a"), false).unwrap();
        assert_eq!(
            (s.kind.as_str(), s.id.as_str(), s.object.as_deref()),
            ("snapshot", "1234", Some("snapshots/a"))
        );
        assert_eq!(Source::from_record(None, Some("x/y"), false), None);
        let doc = serde_json::to_string(&s).unwrap();
        assert_eq!(
            doc,
            r#"{"kind":"snapshot","id":"1234","object":"snapshots/a","removed":false}"#
        );
    }

    #[test]
    fn no_recorded_task_is_no_customization() {
        assert!(Customization::recorded(&[]).is_none());
        let tasks = [TaskRecord {
            task: "hostname".into(),
            status: "ran".into(),
            detail: "web1".into(),
        }];
        let doc = serde_json::to_string(&Customization::recorded(&tasks)).unwrap();
        assert_eq!(
            doc,
            r#"{"tasks":[{"task":"hostname","status":"ran","detail":"web1"}],"blocks_changed":null}"#
        );
    }
}
