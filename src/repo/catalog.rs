//! `meta/catalog.json`: every metadata record of the repository in one file, replaced
//! atomically, so any multi-record change (move, snapshot) is a single rename.
//!
//! Nothing read from it is trusted: [`Catalog::decode_valid`] refuses a catalog with any
//! invalid record (a bad id could otherwise become a path, a zero block size a division), so
//! every command sees only valid records. fsck uses the lenient [`Catalog::decode`] and
//! [`Catalog::violations`] to list every bad record.

use super::records::{ObjectRecord, VolumeRecord};
use crate::error::{Error, Result};
use crate::services::names::escape_control;
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

/// One way a decoded catalog breaks the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `invalid_record` | `duplicate_uuid` | `duplicate_volume_id`.
    pub kind: &'static str,
    /// The records concerned: `object:<name>` / `volume:<name>`, control characters escaped.
    pub resources: Vec<String>,
    /// What is wrong, naming the record, the field and the value.
    pub message: String,
}

impl Catalog {
    /// Decodes catalog bytes read from `path` and refuses them unless every record is valid
    /// for a repository of `repo_block_size` ([`Catalog::violations`] is empty). The error
    /// names the first violation and how many more fsck will list.
    pub fn decode_valid(path: &Path, bytes: &[u8], repo_block_size: u32) -> Result<Catalog> {
        let catalog = Catalog::decode(path, bytes)?;
        let violations = catalog.violations(repo_block_size);
        if let Some(first) = violations.first() {
            let more = match violations.len() - 1 {
                0 => String::new(),
                1 => " (and 1 more problem)".to_string(),
                n => format!(" (and {n} more problems)"),
            };
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                reason: format!("{}{more}", first.message),
            });
        }
        Ok(catalog)
    }

    /// Every violation of the format's invariants (docs/FORMAT.md "Invariants"): each fault
    /// of each record, then each uuid shared by several objects and each id shared by several
    /// volumes. Empty for a valid catalog.
    pub fn violations(&self, repo_block_size: u32) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut record = |kind: &str, name: &str, faults: Vec<String>| {
            let name = escape_control(name);
            for fault in faults {
                out.push(Violation {
                    kind: "invalid_record",
                    resources: vec![format!("{kind}:{name}")],
                    message: format!("{kind} '{name}': {fault}"),
                });
            }
        };
        for (name, rec) in &self.objects {
            record("object", name, rec.faults(name, repo_block_size));
        }
        for (name, rec) in &self.volumes {
            record("volume", name, rec.faults(name, repo_block_size));
        }
        let objects = self.objects.iter().map(|(n, r)| (r.uuid.as_str(), n));
        out.extend(shared("duplicate_uuid", "object", "uuid", objects));
        let volumes = self.volumes.iter().map(|(n, r)| (r.id.as_str(), n));
        out.extend(shared("duplicate_volume_id", "volume", "id", volumes));
        out
    }

    /// Decodes catalog bytes read from `path`: JSON and the format version only, the records
    /// unchecked. For fsck; everything else uses [`Catalog::decode_valid`].
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

/// One violation per value that several records share (records listed in name order).
fn shared<'a>(
    violation: &'static str,
    kind: &str,
    field: &str,
    pairs: impl Iterator<Item = (&'a str, &'a String)>,
) -> Vec<Violation> {
    // One sort instead of a map of vectors: this runs on every catalog read.
    let mut pairs: Vec<(&str, &String)> = pairs.collect();
    pairs.sort_unstable();
    pairs
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|group| group.len() > 1)
        .map(|group| {
            let value = group[0].0;
            let names: Vec<&String> = group.iter().map(|(_, n)| *n).collect();
            let names: Vec<String> = names
                .iter()
                .map(|n| escape_control(n).into_owned())
                .collect();
            Violation {
                kind: violation,
                resources: names.iter().map(|n| format!("{kind}:{n}")).collect(),
                message: format!(
                    "{kind}s {} share the {field} '{}'; each {kind} needs its own",
                    names
                        .iter()
                        .map(|n| format!("'{n}'"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    escape_control(value)
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
