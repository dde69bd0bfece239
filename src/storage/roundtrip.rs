//! Property tests of the storage pipelines: ingest then export round-trips arbitrary data,
//! from streams and from sparse files, and equal content shares every block.

#[cfg(test)]
mod tests {
    use crate::progress::NoProgress;
    use crate::storage::Backend;
    use crate::storage::export::{Sink, export};
    use crate::storage::ingest::{Source, ingest};
    use crate::storage::local::LocalBackend;
    use proptest::prelude::*;
    use std::io::{Seek, SeekFrom, Write};

    const BS: u32 = 4096;

    /// Data made of segments: random bytes, zero runs (often whole blocks), so that exact
    /// multiples of the block size, all-zero blocks and trailing zeros all occur.
    fn content() -> impl Strategy<Value = Vec<u8>> {
        let segment = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..5000),
            (0usize..3).prop_map(|n| vec![0u8; n * BS as usize]),
            (1usize..5000).prop_map(|n| vec![0u8; n]),
            Just(vec![7u8; BS as usize]),
        ];
        proptest::collection::vec(segment, 0..6).prop_map(|s| s.concat())
    }

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        LocalBackend::create_layout(dir.path()).unwrap();
        let b = LocalBackend::new(dir.path());
        (dir, b)
    }

    fn read_back(b: &LocalBackend, map: &crate::storage::BlockMap) -> Vec<u8> {
        let mut out = Vec::new();
        export(b, map, "test", true, Sink::Stream(&mut out), &NoProgress).unwrap();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn stream_round_trip_and_dedup(data in content()) {
            let (_dir, b) = backend();
            let src = || Source::Stream {
                reader: Box::new(std::io::Cursor::new(data.clone())),
                label: "t".into(),
            };
            let first = ingest(&b, BS, src(), &NoProgress).unwrap();
            prop_assert_eq!(first.map.size(), data.len() as u64);
            prop_assert_eq!(read_back(&b, &first.map), data.clone());
            let second = ingest(&b, BS, src(), &NoProgress).unwrap();
            prop_assert_eq!(second.blocks_written, 0);
            prop_assert_eq!(second.map_id, first.map_id);
            // Zero blocks are never stored.
            let mut stored = 0u64;
            b.for_each_block(&mut |h, _| { assert!(!h.is_zero()); stored += 1; Ok(()) }).unwrap();
            prop_assert_eq!(stored, first.blocks_written);
        }

        #[test]
        fn sparse_file_round_trip(data in content(), hole_blocks in 0u64..4) {
            // A file with a hole punched before the data and after it.
            let (dir, b) = backend();
            let path = dir.path().join("sparse");
            let mut f = std::fs::File::create(&path).unwrap();
            let hole = hole_blocks * BS as u64 + 100;
            f.seek(SeekFrom::Start(hole)).unwrap();
            f.write_all(&data).unwrap();
            f.set_len(hole + data.len() as u64 + hole).unwrap();
            drop(f);
            let expected = std::fs::read(&path).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let got = ingest(&b, BS, Source::File { file, path: path.clone() }, &NoProgress).unwrap();
            prop_assert_eq!(read_back(&b, &got.map), expected.clone());
            // Export into a file leaves holes for zero blocks and the same bytes.
            let out = dir.path().join("out");
            let of = std::fs::File::create(&out).unwrap();
            export(&b, &got.map, "t", true, Sink::File(&of), &NoProgress).unwrap();
            prop_assert_eq!(std::fs::read(&out).unwrap(), expected);
        }
    }
}
