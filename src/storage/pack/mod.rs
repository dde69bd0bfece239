//! Packs: small stored blocks kept many to a file (`packs/<id>`), so that the store's cost
//! per block (a file to create, sync, list and unlink) is paid per pack. Used by the local
//! store for repositories whose blocks are small (see `docs/FORMAT.md`).

pub mod format;
pub mod index;
pub mod table;
pub mod writer;

pub use format::Entry;
pub use index::{Located, PACKS_DIR, PackSet};
pub use writer::{FinishedPack, PACK_TARGET, PackWriter};
