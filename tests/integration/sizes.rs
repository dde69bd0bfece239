//! Sizes: a 64 TiB volume with one written block works with every command at a cost that
//! follows its data (its snapshot map is a few dozen bytes), and sizes past 64 TiB are
//! refused where they enter, leaving the repository unchanged.

use crate::util::{TestRepo, pseudo_random};

const TIB: u64 = 1 << 40;

#[test]
fn a_64_tib_volume_with_one_written_block_works_everywhere() {
    let r = TestRepo::new();
    let image = pseudo_random(4096, 7);
    let p = r.file("one.raw", &image);
    r.ok(&["put", p.to_str().unwrap(), "images/one.raw"]);
    r.ok(&["clone", "images/one.raw", "big", "--size", "64T"]);

    let block = pseudo_random(4096, 8);
    let at = 40 * TIB;
    let out = r.run_stdin(
        &["volume", "write", "big", "--offset", &at.to_string()],
        &block,
    );
    assert!(out.status.success(), "{}", crate::util::stderr(&out));

    let info = r.json(&["volume", "info", "big"]);
    assert_eq!(info["size"], 64 * TIB);
    assert_eq!(info["blocks"], 1u64 << 34);
    assert_eq!(info["private_blocks"], 1);
    assert_eq!(info["shared_blocks"], 1);
    assert_eq!(info["zero_blocks"], (1u64 << 34) - 2);
    let ls = r.json(&["volume", "ls"]);
    assert_eq!(ls["volumes"][0]["size"], 64 * TIB);

    let read = r.ok(&[
        "volume",
        "read",
        "big",
        "--offset",
        &(at - 4096).to_string(),
        "--length",
        "12288",
    ]);
    assert_eq!(read.len(), 12288);
    assert!(read[..4096].iter().all(|&b| b == 0));
    assert_eq!(&read[4096..8192], &block[..]);
    assert!(read[8192..].iter().all(|&b| b == 0));

    let snap = r.json(&["snapshot", "big", "big-monday"]);
    let object = snap["object"].as_str().unwrap().to_string();
    assert_eq!(snap["bytes"], 64 * TIB);
    assert_eq!(snap["blocks_hashed"], 1);
    let catalog: serde_json::Value = crate::catalog_db::read(&r);
    let map = catalog["objects"][&object]["map"]
        .as_str()
        .expect("the catalog names the map");
    // Header (32) + two extents of one hash (2 x (16 + 32)): the size follows the data.
    let stored_map = crate::stored::read(&r, &crate::stored::data_rel(&r, "maps", map));
    let len = stored_map.expect("the map is stored").len();
    assert_eq!(len, 32 + 2 * (16 + 32), "map of two data blocks in 64 TiB");

    // A clone of the snapshot reads the same block through the shared map.
    r.ok(&["clone", &object, "big2"]);
    let again = r.ok(&[
        "volume",
        "read",
        "big2",
        "--offset",
        &at.to_string(),
        "--length",
        "4096",
    ]);
    assert_eq!(again, block);
    let head = r.ok(&[
        "volume", "read", "big2", "--offset", "0", "--length", "4096",
    ]);
    assert_eq!(head, image);

    let du = r.json(&["du"]);
    let logical: u128 = du["logical_bytes"].as_u64().map(u128::from).unwrap_or(0);
    assert_eq!(logical, 4096 + 3 * 64 * TIB as u128);
    let fsck = r.json(&["fsck"]);
    assert_eq!(fsck["problems"].as_array().map(Vec::len), Some(0), "{fsck}");
    r.ok(&["gc"]);
    assert_eq!(
        r.ok(&[
            "volume", "read", "big2", "--offset", "0", "--length", "4096"
        ]),
        image
    );
}

#[test]
fn du_totals_past_2_pow_64_do_not_wrap() {
    let r = TestRepo::new();
    let p = r.file("one.raw", &pseudo_random(4096, 1));
    r.ok(&["put", p.to_str().unwrap(), "images/one.raw"]);
    // 2^18 + 1 volumes of 64 TiB would be needed to pass 2^64 bytes; 5 show the sum is exact
    // past u32 and uses no wrapping arithmetic on the way.
    for i in 0..5 {
        r.ok(&["clone", "images/one.raw", &format!("v{i}"), "--size", "64T"]);
    }
    let du = r.json(&["du"]);
    assert_eq!(du["logical_bytes"], 4096 + 5 * 64 * TIB);
}

#[test]
fn sizes_past_64_tib_are_refused_and_change_nothing() {
    let r = TestRepo::new();
    let p = r.file("one.raw", &pseudo_random(4096, 1));
    r.ok(&["put", p.to_str().unwrap(), "images/one.raw"]);
    r.ok(&["clone", "images/one.raw", "v"]);
    let before = r.snapshot();
    for size in ["18446744073709551615", &(64 * TIB + 1).to_string(), "65T"] {
        let err = r.fails(2, &["clone", "images/one.raw", "w", "--size", size]);
        assert!(err.contains("64 TiB"), "{err}");
        let err = r.fails(2, &["volume", "resize", "v", size]);
        assert!(err.contains("64 TiB"), "{err}");
    }
    assert_eq!(r.snapshot(), before);
    let ls = r.json(&["volume", "ls"]);
    assert_eq!(ls["volumes"].as_array().map(Vec::len), Some(1));
}

#[test]
fn export_of_64_tib_is_a_sparse_file_or_a_clear_error() {
    let r = TestRepo::new();
    let p = r.file("one.raw", &pseudo_random(4096, 1));
    r.ok(&["put", p.to_str().unwrap(), "images/one.raw"]);
    r.ok(&["clone", "images/one.raw", "big", "--size", "64T"]);
    let dest = r.path("big.raw");
    let out = r.run(&["volume", "export", "big", "-o", dest.to_str().unwrap()]);
    if out.status.success() {
        // A filesystem that holds 64 TiB sparse files (xfs, btrfs).
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), 64 * TIB);
    } else {
        // ext4 stops at 16 TiB: a clear error and no output file.
        let err = crate::util::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("cannot make a 70368744177664-byte sparse file"),
            "{err}"
        );
        assert!(!dest.exists());
    }
}

#[test]
fn put_of_an_8_tib_sparse_file_reads_only_its_data() {
    let r = TestRepo::new();
    let p = r.path("sparse.raw");
    let data = pseudo_random(4096, 3);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(8 * TIB).unwrap();
        f.write_all_at(&data, 5 * TIB).unwrap();
    }
    let put = r.json(&["put", p.to_str().unwrap(), "images/sparse.raw"]);
    assert_eq!(put["bytes"], 8 * TIB);
    assert_eq!(put["blocks_written"], 1);
    assert_eq!(put["zero_blocks"], (1u64 << 31) - 1);
    r.ok(&["clone", "images/sparse.raw", "v"]);
    let got = r.ok(&[
        "volume",
        "read",
        "v",
        "--offset",
        &(5 * TIB).to_string(),
        "--length",
        "4096",
    ]);
    assert_eq!(got, data);
}
