//! Progress reporting as a trait, so the library never depends on a terminal.

/// Receives byte counts from long operations. Implementations must be cheap and thread-safe.
pub trait Progress: Sync {
    /// The total number of bytes the operation will process, when known.
    fn set_total(&self, _bytes: u64) {}
    /// `bytes` more were processed.
    fn advance(&self, _bytes: u64) {}
    /// The operation ended (successfully or not).
    fn finish(&self) {}
}

/// Progress that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
