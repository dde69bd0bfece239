//! The image view of an object: Glance/Plankton field names, computed from the object record
//! so that id, size and checksum can never disagree with the data.

use crate::repo::records::ObjectRecord;
use serde::Serialize;
use std::collections::BTreeMap;

/// An image as the image service shows it. `id`, `size` and `checksum` come from the object,
/// so they always match the data.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImageView {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub status: String,
    pub size: u64,
    pub checksum: String,
    pub disk_format: String,
    pub container_format: String,
    pub is_public: bool,
    pub is_snapshot: bool,
    pub created_at: String,
    pub updated_at: String,
    /// `arch://container/object`.
    pub location: String,
    /// The object version the image describes: always the current one (an image belongs
    /// to its object, as in Pithos).
    pub version: u64,
    pub properties: BTreeMap<String, String>,
}

/// The image view of object `full_name`, or None when it is not registered.
pub fn image_view(full_name: &str, rec: &ObjectRecord) -> Option<ImageView> {
    let img = rec.image.as_ref()?;
    Some(ImageView {
        id: rec.uuid.clone(),
        name: img.name.clone(),
        owner: img.owner.clone(),
        status: img.status.clone(),
        size: rec.bytes,
        checksum: rec.hash.clone(),
        disk_format: img.disk_format.clone(),
        container_format: img.container_format.clone(),
        is_public: img.is_public,
        is_snapshot: img.is_snapshot,
        created_at: img.created_at.clone(),
        updated_at: img.updated_at.clone(),
        location: format!("arch://{full_name}"),
        version: rec.version,
        properties: img.properties.clone(),
    })
}

/// What kind of read-only resource an object record is.
pub fn resource_kind(rec: &ObjectRecord) -> &'static str {
    match &rec.image {
        None => "object",
        Some(i) if i.is_snapshot => "snapshot",
        Some(_) => "image",
    }
}
