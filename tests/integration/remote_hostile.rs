//! Store contents written by someone else, against a real Ceph RGW: a repository marker
//! (`PREFIX/arch-repository.toml`) that is garbage, huge, of another format or block size,
//! and member entries (`PREFIX/members/`) that are garbage or huge. Every command gives a
//! clear error naming the object and the fix, never panics, and changes nothing; once the
//! object is put right, everything works again.
//!
//! Needs `ARCH_TEST_STORE=s3://BUCKET` (+ AWS_*); `.ci/remote` sets it. Unset: the tests say
//! so and pass without running.

use crate::remote_private::{remote_repo, store_of};
use crate::remote_store::{init, joined, overwrite};
use crate::util::{pseudo_random, stderr};

/// Deletes the object `PREFIX/<rel>` of the store at `url`.
fn delete(url: &str, rel: &str) {
    arch::storage::s3::connect(url)
        .unwrap()
        .delete_object(rel)
        .unwrap();
}

#[test]
fn a_foreign_marker_is_refused_with_a_clear_error_and_nothing_changes() {
    let Some(url) = crate::remote_store::store_url("a_foreign_marker_is_refused") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = joined(&tmp.path().join("a"), &url);
    let data = pseudo_random(10_000, 1);
    let f = tmp.path().join("f");
    std::fs::write(&f, &data).unwrap();
    a.ok(&["put", f.to_str().unwrap(), "c/x"]);
    let b = arch::storage::s3::connect(&url).unwrap();
    let marker = b.read_object("arch-repository.toml").unwrap().unwrap();
    let before = crate::util::tree_snapshot(&a.root);
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "garbage",
            b"\x1b[31m\x00\xff not toml at all".to_vec(),
            "another prefix",
        ),
        (
            "toml of something else",
            b"[server]\nport = 80\n".to_vec(),
            "another prefix",
        ),
        ("huge", vec![b'#'; 300 << 10], "307200 bytes"),
        ("newer format", b"format = 7\n".to_vec(), "upgrade arch"),
        (
            "another block size",
            String::from_utf8(marker.clone())
                .unwrap()
                .replace("block_size = 4096", "block_size = 65536")
                .into_bytes(),
            "arch.toml records 4096",
        ),
        (
            "a store of its own",
            [&marker[..], b"store = \"s3://elsewhere/x\"\n"].concat(),
            "another prefix",
        ),
    ];
    for (what, bytes, says) in cases {
        overwrite(&url, "arch-repository.toml", &bytes);
        for args in [&["get", "c/x"][..], &["fsck"], &["gc"]] {
            let out = a.run(args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{what}, {args:?}: {err}");
            assert!(
                err.contains("arch-repository.toml") && err.contains(says),
                "{what}, {args:?}: {err}"
            );
            assert!(!err.contains('\x1b') && !err.contains("panicked"), "{err}");
        }
        // Joining that prefix is refused too, leaving no DIR behind.
        let c = tmp.path().join("c");
        let out = init(&c, &url, "4K");
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        assert!(!c.join("arch.toml").exists(), "{what}");
        assert_eq!(crate::util::tree_snapshot(&a.root), before, "{what}");
    }
    // The marker arch wrote, put back: everything works again, nothing was lost.
    overwrite(&url, "arch-repository.toml", &marker);
    assert_eq!(a.ok(&["get", "c/x"]), data);
    let f = a.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
}

#[test]
fn foreign_member_entries_refuse_gc_clearly_and_bounded() {
    let Some(r) = remote_repo("foreign_member_entries_refuse_gc_clearly") else {
        return;
    };
    let url = store_of(&r.root);
    let data = pseudo_random(10_000, 2);
    let f = r.file("f", &data);
    r.ok(&["put", f.to_str().unwrap(), "c/x"]);
    r.ok(&["gc"]);
    overwrite(
        &url,
        "members/evil\x1b[2J",
        b"dir = \"\x1b[31m/x\"\n\x00\xff",
    );
    overwrite(&url, "members/huge", &vec![b'a'; 300 << 10]);
    let before = r.snapshot();
    let out = r.run(&["gc"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("gc refused") && err.contains("2 other"),
        "{err}"
    );
    assert!(
        err.contains("evil") && err.contains("307200 bytes"),
        "{err}"
    );
    assert!(!err.contains('\x1b') && !err.contains("panicked"), "{err}");
    assert!(
        err.len() < 4000,
        "the entries are cut short: {} bytes",
        err.len()
    );
    assert_eq!(r.snapshot(), before, "a refused gc changes nothing");
    // fsck --repair keeps the (shared-looking) store's private objects and says why.
    let f = r.json(&["fsck", "--repair"]);
    assert!(f["warnings"].to_string().contains("gc refused"), "{f}");
    // Once the entries are gone, gc runs.
    delete(&url, "members/evil\x1b[2J");
    delete(&url, "members/huge");
    r.ok(&["gc"]);
    assert_eq!(r.ok(&["get", "c/x"]), data);
}
