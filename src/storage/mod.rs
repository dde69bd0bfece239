//! The storage layer: content-addressed blocks, immutable maps, and the streaming pipelines
//! that move bytes in and out. It knows nothing about objects, images or volumes.

pub mod backend;
pub mod direct;
pub mod export;
pub mod export_file;
pub mod fault;
pub mod fsutil;
pub mod hash;
pub mod ingest;
pub mod local;
pub mod map;
pub mod mapped;
pub mod ordered;
pub mod pack;
pub mod packed;
mod roundtrip;
pub mod s3;
pub mod sweep;

pub use backend::{Backend, BlockBatch};
pub use hash::{BlockHash, BlockHashMap, BlockHashSet, top_hash};
pub use map::{BlockMap, MapId};
