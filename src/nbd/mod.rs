//! The NBD protocol, server side (fixed newstyle handshake, option haggling, transmission with
//! simple and structured replies, the `base:allocation` meta context). It knows nothing of the
//! repository: an export is anything that implements [`Export`].
//!
//! Why not a crate: the `nbd` crate on crates.io implements the old handshake without
//! NBD_OPT_GO, structured replies or meta contexts, which qemu and libnbd need to see holes;
//! nbdkit would make arch a plugin of another server. The protocol is a few hundred lines.

pub mod handshake;
pub mod reply;
pub mod transmission;
pub mod wire;

pub use handshake::{Session, handshake};
pub use reply::{ReplyStream, SharedData};
pub use transmission::serve;

/// Why an export operation failed: the errno sent to the client and a message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub errno: u32,
    pub message: String,
}

impl Failure {
    pub fn new(errno: u32, message: impl Into<String>) -> Failure {
        Failure {
            errno,
            message: message.into(),
        }
    }
}

/// A run of bytes with one allocation state (`wire::STATE_HOLE`, `wire::STATE_ZERO`, or 0
/// for data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub length: u64,
    pub flags: u32,
}

/// What the protocol serves. Ranges passed in always lie inside `size()`; writes only reach
/// an export that is not read-only.
pub trait Export: Sync {
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    /// Preferred I/O size (a power of two).
    fn preferred_block_size(&self) -> u32;
    /// Fills `out` with the `out.len()` bytes at `offset` (the reply's data, sent as it is
    /// once this returns `Ok`; nothing of it is sent after an error).
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Failure>;
    /// The `len` bytes at `offset` as bytes the server sends as they are, when the export
    /// holds them ready (no copy into a reply buffer); `Ok(None)`: the server calls
    /// [`Export::read`] instead. The same contract as `read` otherwise.
    fn read_shared(&self, _offset: u64, _len: usize) -> Result<Option<SharedData>, Failure> {
        Ok(None)
    }
    /// Called by a server thread once a READ's reply went out, before it takes the next
    /// request: the export may load what a sequential reader will ask for next. It cannot
    /// fail: a failure belongs to the read that needs the data.
    fn read_ahead(&self) {}
    /// Writes `data`; with `fua`, durable before returning.
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), Failure>;
    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), Failure>;
    /// Makes the range read as zeros (`trim`: may leave it unchanged where not whole blocks).
    fn zero(&self, offset: u64, length: u64, trim: bool, fua: bool) -> Result<(), Failure>;
    /// Allocation of `[offset, offset + length)`: extents in order, covering at least the
    /// first byte and at most the range. With `one` (the client's NBD_CMD_FLAG_REQ_ONE)
    /// only the first extent is sent: the export may stop looking once it is complete.
    fn extents(&self, offset: u64, length: u64, one: bool) -> Result<Vec<Extent>, Failure>;
}

/// One export offered by a server: the name clients ask for and what serves it.
pub struct Offer<'a> {
    pub name: String,
    pub description: String,
    pub export: &'a dyn Export,
}

#[cfg(test)]
pub(crate) mod testing;
