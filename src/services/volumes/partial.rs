//! What a `volume write` that failed midway had already changed, block by block, so that its
//! error says exactly which blocks show the new bytes and which keep their old content.

use crate::error::{Error, cause_text};

/// The blocks a write changed before it stopped. Blocks are written in order, so the changed
/// ones lie before the failing one; zero data over a zero block changes nothing and is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    block_size: u64,
    /// The write's byte range: `start..end`.
    start: u64,
    end: u64,
    /// Indexes of the blocks that now show this write's bytes, ascending.
    changed: Vec<u64>,
    /// The end of the bytes written so far (the last changed block ends its part there).
    reached: u64,
    /// A block written in place when the write failed, and the end of the piece it was
    /// given: part of that range may be new.
    partly: Option<(u64, u64)>,
    /// Why the changed blocks could not be made durable, when they could not.
    not_durable: Option<String>,
}

impl Changes {
    /// No block changed yet, for a write of `start..end`.
    pub fn new(block_size: u64, start: u64, end: u64) -> Changes {
        Changes {
            block_size,
            start,
            end,
            changed: Vec::new(),
            reached: start,
            partly: None,
            not_durable: None,
        }
    }

    /// Block `index` now shows this write's bytes, up to byte `end` (exclusive).
    pub fn changed(&mut self, index: u64, end: u64) {
        if self.changed.last() != Some(&index) {
            self.changed.push(index);
        }
        self.reached = end;
    }

    /// Block `index` failed while given the bytes up to `end` in place: some may be new.
    pub fn partly(&mut self, index: u64, end: u64) {
        self.partly = Some((index, end));
    }

    /// Making the changed blocks durable failed with `err`.
    pub fn not_durable(&mut self, err: &Error) {
        self.not_durable = Some(cause_text(err));
    }

    /// True when nothing in the volume changed.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.partly.is_none()
    }

    /// The bytes of this write before `end` inside blocks `first..=last`, as `a-b` (inclusive).
    fn bytes(&self, first: u64, last: u64, end: u64) -> String {
        let a = (first * self.block_size).max(self.start);
        let b = ((last + 1) * self.block_size).min(end) - 1;
        format!("{a}-{b}")
    }

    /// Runs of consecutive changed blocks, as (first, last).
    fn runs(&self) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &i in &self.changed {
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == i => *last = i,
                _ => runs.push((i, i)),
            }
        }
        runs
    }

    /// Which blocks changed and which did not, in words.
    pub fn describe(&self) -> String {
        let runs = self.runs();
        let mut text = if runs.is_empty() {
            "no block was changed".to_string()
        } else {
            let blocks: Vec<String> = runs
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            let bytes: Vec<String> = runs
                .iter()
                .map(|&(a, b)| self.bytes(a, b, self.reached))
                .collect();
            let n = self.changed.len();
            format!(
                "{n} block{} of {} bytes already {} the new data: block{} {} (bytes {})",
                if n == 1 { "" } else { "s" },
                self.block_size,
                if n == 1 { "shows" } else { "show" },
                if n == 1 { "" } else { "s" },
                blocks.join(", "),
                bytes.join(", ")
            )
        };
        if let Some((i, end)) = self.partly {
            text.push_str(&format!(
                "; block {i} (bytes {}) was being written in place and may hold part of the new \
                 data",
                self.bytes(i, i, end)
            ));
        }
        text.push_str(&format!(
            "; every other byte of {}-{} keeps its old content",
            self.start,
            self.end - 1
        ));
        if let Some(why) = &self.not_durable {
            text.push_str(&format!(
                "; making the changed blocks durable failed ({why}), so after a crash some of \
                 them may show their old content"
            ));
        }
        text
    }

    /// `cause`, or when blocks had changed, an error that lists them.
    pub fn into_error(self, volume: &str, cause: Error) -> Error {
        if self.is_empty() {
            return cause;
        }
        Error::PartialWrite {
            volume: volume.to_string(),
            changes: self.describe(),
            cause: Box::new(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_byte_ranges_are_exact() {
        // A write of bytes 1000..20000 over 4 KiB blocks: blocks 0-4; block 2 was zero over
        // zero, block 4 failed in place.
        let mut c = Changes::new(4096, 1000, 20000);
        assert!(c.is_empty());
        for (i, end) in [(0, 4096), (1, 6000), (1, 8192), (3, 16384)] {
            c.changed(i, end);
        }
        c.partly(4, 20000);
        assert_eq!(
            c.describe(),
            "3 blocks of 4096 bytes already show the new data: blocks 0-1, 3 (bytes \
             1000-8191, 12288-16383); block 4 (bytes 16384-19999) was being written in place \
             and may hold part of the new data; every other byte of 1000-19999 keeps its old \
             content"
        );
        let mut one = Changes::new(4096, 0, 4096);
        one.changed(0, 4096);
        assert!(one.describe().starts_with(
            "1 block of 4096 bytes already shows the new data: block 0 (bytes 0-4095)"
        ));
    }

    /// A real volume whose input fails (ENOSPC) on the third chunk: the error lists exactly
    /// the blocks the first two chunks changed, and reading the volume shows those and no other.
    #[test]
    fn a_failed_write_lists_exactly_what_it_changed() {
        use crate::progress::NoProgress;
        use crate::repo::Repository;
        use crate::services::names::ObjectName;
        use crate::services::objects::{self, PutOptions};
        use crate::services::volumes::{CloneOptions, clone, read, write};
        use crate::storage::ingest::Source;
        const BS: usize = 4096;
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path(), BS as u64).unwrap();
        let mut base = vec![0x11u8; 6 * BS];
        base[2 * BS..3 * BS].fill(0);
        let src = Source::Stream {
            reader: Box::new(std::io::Cursor::new(base.clone())),
            label: "base".into(),
        };
        let obj = ObjectName::parse("images/base").unwrap();
        objects::put(&repo, src, &obj, &PutOptions::default(), &NoProgress).unwrap();
        clone(&repo, "images/base", "v", &CloneOptions::default()).unwrap();

        // Bytes 1000..1000+5 blocks; the part over block 2 (a zero block) is zeros.
        let (start, len) = (1000usize, 5 * BS);
        let mut data = vec![0x22u8; len];
        data[2 * BS - start..3 * BS - start].fill(0);
        let mut chunks = data.chunks(6000).map(<[u8]>::to_vec).take(2);
        let err = write(
            &repo,
            "v",
            start as u64,
            len as u64,
            &mut |buf| match chunks.next() {
                Some(c) => {
                    *buf = c;
                    Ok(buf.len())
                }
                None => Err(Error::io(
                    "read",
                    "input",
                    std::io::Error::from_raw_os_error(libc::ENOSPC),
                )),
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), "partial_write");
        assert_eq!(
            err.to_string(),
            "write to volume 'v' failed: no space left on the device while writing input; free \
             space and retry; 3 blocks of 4096 bytes already show the new data: blocks 0-1, 3 \
             (bytes 1000-8191, 12288-12999); every other byte of 1000-21479 keeps its old content"
        );
        let mut now = Vec::new();
        read(&repo, "v", 0, base.len() as u64, &mut |p| {
            now.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        let mut want = base.clone();
        want[start..13000].copy_from_slice(&data[..13000 - start]);
        assert!(now == want, "exactly bytes 1000-12999 changed");
    }

    #[test]
    fn blocks_not_made_durable_are_said_so() {
        let mut c = Changes::new(4096, 0, 8192);
        c.changed(0, 4096);
        c.changed(1, 8192);
        let full = Error::io(
            "fsync",
            "vol/1",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        c.not_durable(&full);
        let text = c.into_error("v", full).to_string();
        assert!(
            text.ends_with(
                "every other byte of 0-8191 keeps its old content; making the changed blocks \
                 durable failed (no space left on the device while writing vol/1; free space \
                 and retry), so after a crash some of them may show their old content"
            ),
            "{text}"
        );
        assert!(!text.contains("nothing was committed"), "{text}");
    }

    #[test]
    fn nothing_changed_keeps_the_cause() {
        let cause = Error::invalid("boom");
        let e = Changes::new(4096, 0, 10).into_error("v", cause);
        assert_eq!(e.to_string(), "boom");
    }
}
