//! Integrity and space: fsck (find damage and garbage), gc (mark and sweep), du (who uses
//! what). These sit beside the services: they read the catalog and the store directly.

pub mod du;
pub mod entries;
pub mod fsck;
pub mod fsck_packs;
pub mod gc;
pub mod gc_packs;
pub mod invariants;
pub mod quarantine;
pub mod quarantine_packs;
pub(crate) mod refs;
pub mod serve_files;
pub mod volume_files;
pub mod volume_objects;
