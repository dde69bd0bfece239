//! The resource records of a send stream (JSON inside a stream resource record): what the
//! receiver needs to recreate an object (with its image registration) or a volume (its
//! record, base map and private blocks). Blocks and maps travel as their own records.

use crate::repo::records::{ObjectRecord, VolumeRecord};
use crate::storage::BlockHash;
use serde::{Deserialize, Serialize};

/// One resource in a stream. Unknown fields are refused: a newer sender's resource is not
/// silently received without them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum WireResource {
    /// An object at one version: its record names its map (by id) and carries its image
    /// registration, if any.
    Object { name: String, record: ObjectRecord },
    /// A volume: its record names its base map; `private` lists its live private blocks by
    /// index with the hash of their content (the zero hash for a block of zeros), sorted.
    Volume {
        name: String,
        record: VolumeRecord,
        private: Vec<(u64, BlockHash)>,
    },
}

impl WireResource {
    /// The resource's name.
    pub fn name(&self) -> &str {
        match self {
            WireResource::Object { name, .. } | WireResource::Volume { name, .. } => name,
        }
    }

    /// `volume`, `object`, `image` or `snapshot`.
    pub fn kind(&self) -> &'static str {
        match self {
            WireResource::Volume { .. } => "volume",
            WireResource::Object { record, .. } => crate::services::images::resource_kind(record),
        }
    }
}
