//! Many arch processes on one repository: every operation succeeds (they wait for each other,
//! never "database is locked"), and the final catalog is what a serial order gives. Kills in
//! the middle of a catalog transaction leave the last committed state. In a packed repository,
//! puts, gets, removals and gc at once lose nothing and leave no extra copy of a block.

use crate::util::{TestRepo, pseudo_random};
use std::process::Output;
use std::time::Duration;

const WORKERS: usize = 8;

/// The operations of worker `i`: on names of its own, plus a put of the shared object
/// `c/shared` and a metadata change of the shared `c/meta` (where lost updates would show;
/// a put replaces user metadata, so the two are kept apart).
fn worker(r: &TestRepo, i: usize) -> Vec<(Vec<String>, Output)> {
    let own = r.file(&format!("own{i}"), &pseudo_random(6000, i as u64));
    let shared = r.file(&format!("shared{i}"), &pseudo_random(3000, 100 + i as u64));
    let p = |s: &str| s.replace("{i}", &i.to_string());
    let steps: Vec<Vec<String>> = vec![
        vec!["put".into(), own.to_str().unwrap().into(), p("c/p{i}")],
        vec![
            "put".into(),
            shared.to_str().unwrap().into(),
            "c/shared".into(),
        ],
        vec!["cp".into(), p("c/p{i}"), p("c/cp{i}")],
        vec!["mv".into(), p("c/cp{i}"), p("c/mv{i}")],
        vec![
            "image".into(),
            "register".into(),
            p("c/p{i}"),
            "--name".into(),
            p("img{i}"),
        ],
        vec![
            "image".into(),
            "mark".into(),
            p("img{i}"),
            "snapshot".into(),
        ],
        vec![
            "meta".into(),
            "c/meta".into(),
            "--set".into(),
            p("k{i}=v{i}"),
        ],
        vec!["clone".into(), p("c/mv{i}"), p("vol{i}")],
        vec!["snapshot".into(), p("vol{i}"), p("s{i}")],
        vec!["rm".into(), p("c/mv{i}")],
        vec!["put".into(), own.to_str().unwrap().into(), p("c/p{i}")],
    ];
    steps
        .into_iter()
        .map(|args| {
            let out = r.run(&args);
            (args, out)
        })
        .collect()
}

#[test]
fn eight_processes_all_succeed_and_end_as_a_serial_order_would() {
    let r = TestRepo::new();
    let base = r.file("base", b"base");
    r.ok(&["put", base.to_str().unwrap(), "c/shared"]);
    r.ok(&["put", base.to_str().unwrap(), "c/meta"]);
    let results: Vec<Vec<(Vec<String>, Output)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|i| {
                let r = &r;
                s.spawn(move || worker(r, i))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, steps) in results.iter().enumerate() {
        for (args, out) in steps {
            assert!(
                out.status.success(),
                "worker {i}: arch {args:?}: {}",
                crate::util::stderr(out)
            );
        }
    }
    // Whatever the interleaving, a serial order of these operations gives exactly this.
    let names: Vec<String> = String::from_utf8(r.ok(&["ls", "c"]))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut want: Vec<String> = (0..WORKERS).map(|i| format!("c/p{i}")).collect();
    want.extend(["c/meta".into(), "c/shared".into()]);
    want.sort();
    assert_eq!(names, want);
    let shared = r.json(&["info", "c/shared"]);
    assert_eq!(
        shared["version"],
        1 + WORKERS as u64,
        "a put was lost: {shared}"
    );
    let meta = r.json(&["info", "c/meta"]);
    for i in 0..WORKERS {
        assert_eq!(meta["meta"][format!("k{i}")], format!("v{i}"), "{meta}");
        let p = r.json(&["info", &format!("c/p{i}")]);
        assert_eq!(p["version"], 2);
        assert_eq!(p["image"]["is_snapshot"], true, "{p}");
        assert_eq!(
            r.ok(&["get", &format!("snapshots/s{i}")]),
            pseudo_random(6000, i as u64)
        );
        assert_eq!(
            r.ok(&["volume", "read", &format!("vol{i}"), "--offset", "0"]),
            pseudo_random(6000, i as u64)
        );
    }
    assert_eq!(
        r.json(&["volume", "ls"])["volumes"]
            .as_array()
            .unwrap()
            .len(),
        WORKERS
    );
    let fsck = r.json(&["fsck"]);
    assert_eq!(fsck["problems"].as_array().unwrap().len(), 0, "{fsck}");
}

#[test]
fn writers_killed_mid_transaction_leave_the_last_committed_state() {
    let r = TestRepo::new();
    let files: Vec<_> = (0..4)
        .map(|i| r.file(&format!("f{i}"), &pseudo_random(5000, 50 + i)))
        .collect();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for trial in 0..12 {
        // Four concurrent writers of the same object, each killed at a random instant.
        let children: Vec<_> = files
            .iter()
            .map(|f| {
                r.cmd()
                    .args(["put", f.to_str().unwrap(), "c/x"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            std::thread::sleep(Duration::from_micros(rng % 15_000));
            let _ = c.kill();
            c.wait().unwrap();
        }
        // The catalog opens, and c/x (if any put committed) is one complete version.
        let out = r.run(&["get", "c/x"]);
        if out.status.success() {
            assert!(
                (0..4).any(|i| out.stdout == pseudo_random(5000, 50 + i)),
                "trial {trial}: c/x is not one of the written versions"
            );
        } else {
            assert!(
                crate::util::stderr(&out).contains("not found"),
                "trial {trial}"
            );
        }
        let fsck = r.json(&["fsck"]);
        assert_eq!(
            fsck["problems"].as_array().unwrap().len(),
            0,
            "trial {trial}: {fsck}"
        );
    }
}

/// Object `c/w{w}-{k}` of the packed test: 32 blocks shared with other writers' objects of
/// the same `k % 3` (puts at once that each pack the same new blocks), then 8 of its own.
fn packed_content(w: usize, k: usize) -> Vec<u8> {
    const BS: usize = 4096;
    let mut data = pseudo_random(32 * BS, 500 + (k % 3) as u64);
    data.extend(pseudo_random(8 * BS, 1000 + (w * 10 + k) as u64));
    data
}

#[test]
fn packed_puts_gets_removals_and_gc_at_once_lose_nothing_and_leave_no_extra_copy() {
    if crate::util::local_store_only("packs are kept in a local store only") {
        return;
    }
    let r = TestRepo::packed();
    let done = std::sync::atomic::AtomicBool::new(false);
    let reads = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let r = &r;
                s.spawn(move || {
                    for k in 0..4 {
                        let f = r.file(&format!("w{w}-{k}"), &packed_content(w, k));
                        r.ok(&["put", f.to_str().unwrap(), &format!("c/w{w}-{k}")]);
                        if k == 2 {
                            r.ok(&["rm", &format!("c/w{w}-0")]);
                        }
                    }
                })
            })
            .collect();
        let (r, done) = (&r, &done);
        s.spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                r.ok(&["gc"]);
            }
        });
        let reads = &reads;
        s.spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // Before the first put, there is no container yet.
                let listed = String::from_utf8(r.run(&["ls", "c"]).stdout).unwrap();
                for name in listed.lines() {
                    let (w, k) = name
                        .trim_start_matches("c/w")
                        .split_once('-')
                        .map(|(w, k)| (w.parse().unwrap(), k.parse().unwrap()))
                        .unwrap();
                    let out = r.run(&["get", name]);
                    if out.status.success() {
                        assert_eq!(out.stdout, packed_content(w, k), "{name}");
                        reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        let err = crate::util::stderr(&out);
                        assert!(err.contains("not found"), "{name}: {err}");
                    }
                }
            }
        });
        // Stop the loops whatever happened to the writers, then report a writer's failure.
        let joined: Vec<_> = writers.into_iter().map(|h| h.join()).collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for j in joined {
            j.unwrap();
        }
    });
    assert!(reads.into_inner() > 0, "the reader read nothing");
    for w in 0..4 {
        for k in 1..4 {
            assert_eq!(r.ok(&["get", &format!("c/w{w}-{k}")]), packed_content(w, k));
        }
    }
    let fsck = r.json(&["fsck", "--read-data"]);
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
    r.ok(&["gc"]);
    let du = r.json(&["du"]);
    assert_eq!(
        du["garbage_bytes"], 0,
        "no unused entry nor extra copy left: {du}"
    );
    let fsck = r.json(&["fsck", "--read-data"]);
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
    assert_eq!(fsck["garbage"]["unreferenced_blocks"], 0, "{fsck}");
}
