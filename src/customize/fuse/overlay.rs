//! The content of the file the customization tools see: the volume's blocks, loaded one block
//! at a time into a sparse cache file on first touch, and the tools' writes on top of them.
//!
//! Invariants:
//! - the cache file is exactly as long as the file the tools see (`State::size`);
//! - a block of the volume that holds data and is in `unloaded` has not been copied yet: the
//!   cache file has a hole there and its reads are answered from the volume (through a few
//!   recently loaded blocks kept in memory); it is copied into the cache file only before a
//!   partial write; every other byte of the cache file is the tools' view (zero blocks of the
//!   volume need no copy: holes read zeros);
//! - `written` holds every block whose bytes may differ from the volume's now (written,
//!   zeroed, or cut by a truncation); only those are compared and stored afterwards.
//!
//! Memory follows the number of the volume's data blocks, never its virtual size.

use super::recent::Recent;
use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A loaded, verified volume block shared between the requests that read it.
type SharedBlock = Arc<Vec<u8>>;

/// Reads whole blocks of the volume (verified), for the overlay. Called from several threads
/// at once (one per FUSE request being served), never twice at once for one block.
pub trait BlockLoader: Send + Sync {
    /// Fills `buf` with block `index` (exactly one block).
    fn load(&self, index: u64, buf: &mut Vec<u8>) -> io::Result<()>;
}

/// The tools' view of a volume of `limit` bytes in blocks of `block_size`.
///
/// Concurrency: every method takes `&self`; the state is under one lock, which is released
/// only while a block of the volume is loaded (so requests for other blocks, already loaded
/// or in the cache file, go on meanwhile). The kernel serializes writes, truncations and
/// fallocate on the file; reads run beside them and beside each other.
pub struct Overlay {
    cache: File,
    block_size: u64,
    limit: u64,
    loader: Box<dyn BlockLoader>,
    state: Mutex<State>,
    /// Signalled whenever a load ends.
    loaded: Condvar,
}

struct State {
    size: u64,
    unloaded: BTreeSet<u64>,
    written: BTreeSet<u64>,
    /// The volume's data blocks at the start (for truncations).
    data: BTreeSet<u64>,
    /// Recently loaded blocks that are not in the cache file (still `unloaded`): reads are
    /// served from here, so a block only read is never copied to disk.
    recent: Recent,
}

/// Memory for [`State::recent`]: the kernel caches the file's pages too, so a few blocks are
/// enough for the tools' sweeps (e2fsck reads metadata in ascending order).
const CLEAN_BYTES: u64 = 24 << 20;

/// What the tools did, once they are done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The file's length at the end (the volume's size unless a tool changed it).
    pub size: u64,
    /// Blocks that may differ from the volume's, ascending.
    pub written: BTreeSet<u64>,
}

impl Overlay {
    /// An overlay over a volume of `limit` bytes whose blocks holding data are `data`; `cache`
    /// is an empty file of this process that becomes the sparse copy.
    pub fn new(
        cache: File,
        limit: u64,
        block_size: u64,
        data: BTreeSet<u64>,
        loader: Box<dyn BlockLoader>,
    ) -> io::Result<Overlay> {
        cache.set_len(limit)?;
        let capacity = (CLEAN_BYTES / block_size).clamp(2, 64) as usize;
        Ok(Overlay {
            cache,
            block_size,
            limit,
            loader,
            state: Mutex::new(State {
                size: limit,
                unloaded: data.clone(),
                written: BTreeSet::new(),
                data,
                recent: Recent::new(capacity),
            }),
            loaded: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while serving a request leaves the state as consistent as any error would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current length of the file.
    pub fn size(&self) -> u64 {
        self.lock().size
    }

    /// Blocks `first..=last` of a range.
    fn blocks(&self, offset: u64, len: u64) -> std::ops::RangeInclusive<u64> {
        offset / self.block_size..=(offset + len - 1) / self.block_size
    }

    /// Block `index` of the volume while it is in `unloaded` (loaded, or taken from the recent
    /// ones); None when it is not (any more), so the cache file holds its bytes. The lock is
    /// released while the block loads and held again on return.
    fn volume_block<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        index: u64,
    ) -> io::Result<(MutexGuard<'a, State>, Option<SharedBlock>)> {
        loop {
            if !st.unloaded.contains(&index) {
                return Ok((st, None));
            }
            if let Some(block) = st.recent.get(index) {
                return Ok((st, Some(block)));
            }
            if !st.recent.is_loading(index) {
                break;
            }
            st = self.loaded.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let mut buf = st.recent.start_loading(index);
        drop(st);
        let loaded = self.loader.load(index, &mut buf);
        let mut st = self.lock();
        self.loaded.notify_all();
        if let Err(e) = loaded {
            st.recent.finish_loading(index, None);
            return Err(e);
        }
        let block = Arc::new(buf);
        // Written whole (or cut) meanwhile: the cache file has the bytes now.
        if !st.unloaded.contains(&index) {
            st.recent.finish_loading(index, None);
            st.recent.recycle(block);
            return Ok((st, None));
        }
        st.recent.finish_loading(index, Some(block.clone()));
        Ok((st, Some(block)))
    }

    /// Copies block `index` of the volume into the cache file if it is not there yet (before
    /// a write to part of it).
    fn ensure_loaded<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        index: u64,
    ) -> io::Result<MutexGuard<'a, State>> {
        let (mut st, block) = self.volume_block(st, index)?;
        let Some(block) = block else {
            return Ok(st);
        };
        st.recent.forget(index);
        let offset = index * self.block_size;
        let keep = (st.size.saturating_sub(offset)).min(self.block_size) as usize;
        // One write per run of non-zero pages (a loaded 4 MiB block is one write, not a
        // thousand); zero pages stay holes.
        crate::services::volumes::blockio::write_nonzero_pages(
            &self.cache,
            &block[..keep.min(block.len())],
            offset,
        )?;
        st.unloaded.remove(&index);
        Ok(st)
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub fn read(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let mut st = self.lock();
        let mut end = (offset + u64::from(len)).min(st.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let mut pos = offset;
        while pos < end {
            let index = pos / self.block_size;
            let (g, block) = self.volume_block(st, index)?;
            st = g;
            // The length may have changed while a block loaded.
            end = end.min(st.size);
            if pos >= end {
                break;
            }
            let start = index * self.block_size;
            let stop = (start + self.block_size).min(end);
            let dst = &mut out[(pos - offset) as usize..(stop - offset) as usize];
            match block {
                Some(b) => {
                    let within = (pos - start) as usize;
                    dst.copy_from_slice(&b[within..within + dst.len()]);
                }
                None => self.cache.read_exact_at(dst, pos)?,
            }
            pos = stop;
        }
        out.truncate((pos - offset) as usize);
        Ok(out)
    }

    /// Writes `data` at `offset`. The file never grows past the volume: the tools work on a
    /// disk of a fixed size (EFBIG otherwise).
    pub fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.limit)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        let mut st = self.lock();
        for i in self.blocks(offset, data.len() as u64) {
            let start = i * self.block_size;
            let whole = offset <= start && end >= start + self.block_size;
            if whole {
                st.unloaded.remove(&i);
                st.recent.forget(i);
            } else {
                st = self.ensure_loaded(st, i)?;
            }
            st.written.insert(i);
        }
        if end > st.size {
            self.cache.set_len(end)?;
            st.size = end;
        }
        self.cache.write_all_at(data, offset)
    }

    /// Sets the file's length (truncate or extend with zeros), at most the volume's size.
    pub fn set_size(&self, size: u64) -> io::Result<()> {
        if size > self.limit {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        let mut st = self.lock();
        if size < st.size {
            // The block holding the new end keeps its bytes before it; the blocks past it
            // read as zeros from now on, which differs from the volume where it had data.
            if size % self.block_size != 0 {
                let partial = size / self.block_size;
                st = self.ensure_loaded(st, partial)?;
                st.written.insert(partial);
            }
            let from = size.div_ceil(self.block_size);
            let cut: Vec<u64> = st.data.range(from..).copied().collect();
            st.written.extend(cut);
            st.unloaded.split_off(&from);
            st.recent.forget_from(from);
        }
        self.cache.set_len(size)?;
        st.size = size;
        Ok(())
    }

    /// Makes `len` bytes at `offset` read as zeros (fallocate PUNCH_HOLE or ZERO_RANGE),
    /// without changing the length.
    pub fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut st = self.lock();
        let end = offset.saturating_add(len).min(st.size);
        if offset >= end {
            return Ok(());
        }
        for i in self.blocks(offset, end - offset) {
            let start = i * self.block_size;
            if offset <= start && end >= start + self.block_size {
                st.unloaded.remove(&i);
                st.recent.forget(i);
            } else {
                st = self.ensure_loaded(st, i)?;
            }
            st.written.insert(i);
        }
        punch(&self.cache, offset, end - offset)
    }

    /// What the tools changed; the cache file then holds the new bytes of every block in
    /// `written` (read it at the block's offset).
    pub fn changes(&self) -> Changes {
        let st = self.lock();
        Changes {
            size: st.size,
            written: st.written.clone(),
        }
    }

    /// The cache file, for reading the written blocks once the tools are done.
    pub fn cache(&self) -> &File {
        &self.cache
    }
}

/// Deallocates a range of `f` (it reads as zeros after), keeping the length.
fn punch(f: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate on a valid descriptor with plain integer arguments.
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    // A filesystem without hole punching: write the zeros.
    let zeros = vec![0u8; (1 << 20).min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const BS: u64 = 8192;

    /// A volume in memory; counts the loads.
    struct Mem {
        bytes: Vec<u8>,
        loads: Arc<AtomicUsize>,
    }

    impl BlockLoader for Mem {
        fn load(&self, index: u64, buf: &mut Vec<u8>) -> io::Result<()> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            let start = (index * BS) as usize;
            let end = (start + BS as usize).min(self.bytes.len());
            buf.clear();
            buf.extend_from_slice(&self.bytes[start..end]);
            buf.resize(BS as usize, 0);
            Ok(())
        }
    }

    /// A volume of `len` bytes whose odd blocks hold data; the overlay over it.
    fn setup(len: u64) -> (tempfile::TempDir, Vec<u8>, Overlay, Arc<AtomicUsize>) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = vec![0u8; len as usize];
        let mut data = BTreeSet::new();
        for i in (1..len.div_ceil(BS)).step_by(2) {
            let start = (i * BS) as usize;
            let end = (start + BS as usize).min(bytes.len());
            for (k, b) in bytes[start..end].iter_mut().enumerate() {
                *b = (k % 251) as u8 + 1;
            }
            data.insert(i);
        }
        let loads = Arc::new(AtomicUsize::new(0));
        let cache = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("cache"))
            .unwrap();
        let mem = Mem {
            bytes: bytes.clone(),
            loads: loads.clone(),
        };
        let o = Overlay::new(cache, len, BS, data, Box::new(mem)).unwrap();
        (dir, bytes, o, loads)
    }

    #[test]
    fn untouched_blocks_are_never_loaded_and_zero_blocks_never_at_all() {
        let (_d, bytes, o, loads) = setup(8 * BS);
        assert_eq!(o.read(0, 100).unwrap(), vec![0u8; 100]);
        assert_eq!(loads.load(Ordering::SeqCst), 0, "block 0 holds no data");
        let got = o.read(BS + 10, 20).unwrap();
        assert_eq!(got, bytes[(BS + 10) as usize..(BS + 30) as usize]);
        o.read(BS + 4000, 5000).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 1, "block 1 loaded once");
        assert!(o.changes().written.is_empty(), "reads change nothing");
        assert_eq!(
            o.read(8 * BS - 4, 100).unwrap().len(),
            4,
            "short at the end"
        );
    }

    #[test]
    fn recent_blocks_are_bounded_and_an_evicted_one_is_loaded_again() {
        let (_d, bytes, o, loads) = setup(140 * BS);
        for i in (1..140).step_by(2) {
            o.read(i * BS, 16).unwrap();
        }
        assert_eq!(loads.load(Ordering::SeqCst), 70);
        assert!(o.lock().recent.len() <= 64, "at most 64 blocks kept");
        let got = o.read(BS + 100, 50).unwrap();
        assert_eq!(got, bytes[(BS + 100) as usize..(BS + 150) as usize]);
        assert_eq!(loads.load(Ordering::SeqCst), 71, "block 1 was evicted");
        o.read(139 * BS, 8).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 71, "block 139 is still kept");
    }

    #[test]
    fn a_whole_block_write_loads_nothing_and_a_partial_one_keeps_the_rest() {
        let (_d, bytes, o, loads) = setup(8 * BS);
        o.write(3 * BS, &vec![7u8; BS as usize]).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 0);
        o.write(5 * BS + 1, b"xy").unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let block = o.read(5 * BS, BS as u32).unwrap();
        assert_eq!(block[0], bytes[(5 * BS) as usize]);
        assert_eq!(&block[1..3], b"xy");
        assert_eq!(block[3..], bytes[(5 * BS + 3) as usize..(6 * BS) as usize]);
        assert_eq!(o.changes().written, BTreeSet::from([3, 5]));
    }

    #[test]
    fn the_file_never_grows_past_the_volume() {
        let (_d, _b, o, _l) = setup(4 * BS);
        let e = o.write(4 * BS - 1, b"ab").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFBIG));
        assert_eq!(
            o.set_size(4 * BS + 1).unwrap_err().raw_os_error(),
            Some(libc::EFBIG)
        );
        assert_eq!(o.size(), 4 * BS);
        assert!(o.changes().written.is_empty());
    }

    /// A loader that holds the load of block 1 until told to go on.
    struct Held {
        inner: Mem,
        started: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
        go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl BlockLoader for Held {
        fn load(&self, index: u64, buf: &mut Vec<u8>) -> io::Result<()> {
            if index == 1 {
                self.started.lock().unwrap().send(()).unwrap();
                self.go.lock().unwrap().recv().unwrap();
            }
            self.inner.load(index, buf)
        }
    }

    #[test]
    fn a_block_being_loaded_is_loaded_once_and_holds_up_no_other_block() {
        let dir = tempfile::tempdir().unwrap();
        let (_d, bytes, plain, _) = setup(8 * BS);
        let data: BTreeSet<u64> = (1..8).step_by(2).collect();
        let loads = Arc::new(AtomicUsize::new(0));
        let (started_tx, started) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        let held = Held {
            inner: Mem {
                bytes: bytes.clone(),
                loads: loads.clone(),
            },
            started: std::sync::Mutex::new(started_tx),
            go: std::sync::Mutex::new(go_rx),
        };
        drop(plain);
        let cache = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("cache"))
            .unwrap();
        let o = Overlay::new(cache, 8 * BS, BS, data, Box::new(held)).unwrap();
        std::thread::scope(|s| {
            let first = s.spawn(|| o.read(BS, 100).unwrap());
            started.recv().unwrap();
            // Block 1 is loading: a second reader of it waits for that load, not a new one.
            let second = s.spawn(|| o.read(BS + 200, 100).unwrap());
            // Block 3 is served while block 1 still loads.
            assert_eq!(
                o.read(3 * BS, 50).unwrap(),
                bytes[(3 * BS) as usize..(3 * BS + 50) as usize]
            );
            // A partial write of block 5 meanwhile loads it into the cache file.
            o.write(5 * BS + 1, b"z").unwrap();
            go.send(()).unwrap();
            assert_eq!(
                first.join().unwrap(),
                bytes[BS as usize..(BS + 100) as usize]
            );
            assert_eq!(
                second.join().unwrap(),
                bytes[(BS + 200) as usize..(BS + 300) as usize]
            );
        });
        assert_eq!(
            loads.load(Ordering::SeqCst),
            3,
            "blocks 1, 3 and 5 once each"
        );
        assert_eq!(
            o.read(5 * BS, 2).unwrap(),
            vec![bytes[(5 * BS) as usize], b'z']
        );
        assert_eq!(o.changes().written, BTreeSet::from([5]));
    }

    #[test]
    fn a_block_written_whole_while_it_loads_reads_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let (_d, bytes, plain, _) = setup(4 * BS);
        drop(plain);
        let (started_tx, started) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        let held = Held {
            inner: Mem {
                bytes,
                loads: Arc::new(AtomicUsize::new(0)),
            },
            started: std::sync::Mutex::new(started_tx),
            go: std::sync::Mutex::new(go_rx),
        };
        let cache = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("cache"))
            .unwrap();
        let o = Overlay::new(cache, 4 * BS, BS, BTreeSet::from([1, 3]), Box::new(held)).unwrap();
        std::thread::scope(|s| {
            let reader = s.spawn(|| o.read(BS, 10).unwrap());
            started.recv().unwrap();
            o.write(BS, &vec![9u8; BS as usize]).unwrap();
            go.send(()).unwrap();
            // The load ended after the write: the reader takes the written bytes, and the
            // stale load is not kept.
            assert_eq!(reader.join().unwrap(), vec![9u8; 10]);
        });
        assert_eq!(o.read(BS, 10).unwrap(), vec![9u8; 10]);
        assert_eq!(o.lock().recent.len(), 0, "the stale load was dropped");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, Vec<u8>),
        Read(u64, u32),
        SetSize(u64),
        Zero(u64, u64),
    }

    fn op(len: u64) -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                0..len,
                proptest::collection::vec(any::<u8>(), 1..3 * BS as usize)
            )
                .prop_map(|(o, d)| Op::Write(o, d)),
            (0..len + 10, 1..3 * BS as u32).prop_map(|(o, n)| Op::Read(o, n)),
            (0..=len).prop_map(Op::SetSize),
            (0..len, 1..3 * BS).prop_map(|(o, n)| Op::Zero(o, n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Against a plain byte vector: every read answers what the model holds, and at the
        /// end every block that differs from the volume is listed as written.
        #[test]
        fn overlay_behaves_like_a_file_and_lists_every_changed_block(
            ops in proptest::collection::vec(op(5 * BS - 1000), 1..24)
        ) {
            let len = 5 * BS - 1000;
            let (_d, bytes, o, _l) = setup(len);
            let mut model = bytes.clone();
            for op in ops {
                match op {
                    Op::Write(off, data) => {
                        let r = o.write(off, &data);
                        if off + data.len() as u64 > len {
                            prop_assert!(r.is_err());
                        } else {
                            r.unwrap();
                            let end = off as usize + data.len();
                            if end > model.len() { model.resize(end, 0); }
                            model[off as usize..end].copy_from_slice(&data);
                        }
                    }
                    Op::Read(off, n) => {
                        let got = o.read(off, n).unwrap();
                        let s = (off as usize).min(model.len());
                        let e = (off as usize + n as usize).min(model.len());
                        prop_assert_eq!(&got[..], &model[s..e]);
                    }
                    Op::SetSize(n) => {
                        o.set_size(n).unwrap();
                        model.resize(n as usize, 0);
                    }
                    Op::Zero(off, n) => {
                        o.zero(off, n).unwrap();
                        let s = (off as usize).min(model.len());
                        let e = (off as usize + n as usize).min(model.len());
                        model[s..e].fill(0);
                    }
                }
            }
            let changes = o.changes();
            prop_assert_eq!(changes.size, model.len() as u64);
            model.resize(len as usize, 0);
            let mut now = vec![0u8; o.size() as usize];
            o.cache().read_exact_at(&mut now, 0).unwrap();
            now.resize(len as usize, 0);
            for i in 0..len.div_ceil(BS) {
                let (s, e) = ((i * BS) as usize, (((i + 1) * BS) as usize).min(len as usize));
                if model[s..e] != bytes[s..e] {
                    prop_assert!(changes.written.contains(&i), "block {} changed unlisted", i);
                }
                if changes.written.contains(&i) {
                    prop_assert_eq!(&now[s..e], &model[s..e], "block {} in the cache", i);
                }
            }
        }
    }
}
