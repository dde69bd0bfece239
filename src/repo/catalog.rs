//! `meta/catalog.json`: every metadata record of the repository in one file, replaced
//! atomically, so any multi-record change (move, snapshot) is a single rename.

use super::records::{ObjectRecord, VolumeRecord};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Catalog encoding version.
pub const CATALOG_FORMAT: u32 = 1;

/// All metadata records. Keys of `objects` are full names `container/object`; keys of
/// `volumes` are volume names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Catalog {
    pub format: u32,
    #[serde(default)]
    pub objects: BTreeMap<String, ObjectRecord>,
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeRecord>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            format: CATALOG_FORMAT,
            objects: BTreeMap::new(),
            volumes: BTreeMap::new(),
        }
    }
}

impl Catalog {
    /// Decodes catalog bytes read from `path`.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Catalog> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let catalog: Catalog =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
        if catalog.format != CATALOG_FORMAT {
            return Err(corrupt(format!(
                "catalog format {} is not supported (this arch reads {CATALOG_FORMAT})",
                catalog.format
            )));
        }
        Ok(catalog)
    }

    /// Encodes the catalog (pretty JSON, stable key order).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("catalog serializes");
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_round_trip() {
        let c = Catalog::default();
        assert_eq!(Catalog::decode(Path::new("c"), &c.encode()).unwrap(), c);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Catalog::decode(Path::new("c"), &bytes);
        }
    }
}
