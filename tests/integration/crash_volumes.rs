//! Crash tests for volumes: `kill -9` at random instants during volume write, snapshot and
//! clone. After each, fsck finds no damage, everything complete before the crash reads back
//! identical, and gc removes whatever the crash left behind.

use crate::crash::run_and_kill;
use crate::util::{Rng, TestRepo, pseudo_random};
use std::time::{Duration, Instant};

fn read_all(r: &TestRepo, vol: &str) -> Vec<u8> {
    r.ok(&["volume", "read", vol, "--offset", "0"])
}

fn assert_no_damage(r: &TestRepo, what: &str) {
    let f = r.json(&["fsck"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{what}");
}

/// Wall time of one run of `args` on a scratch copy of the setup, to spread kill instants.
fn calibrate(setup: impl Fn() -> TestRepo, args: &[&str]) -> u64 {
    let probe = setup();
    let t = Instant::now();
    probe.ok(args);
    t.elapsed().as_micros() as u64 + 1
}

fn base_repo() -> TestRepo {
    let r = TestRepo::new();
    let p = r.file("base", &pseudo_random(1 << 20, 1));
    r.ok(&["put", p.to_str().unwrap(), "images/base"]);
    r.ok(&["clone", "images/base", "v", "--size", "3M"]);
    r
}

#[test]
fn volume_write_killed_at_any_instant_changes_only_the_written_range() {
    let r = base_repo();
    let data_len = 1 << 20;
    let input = r.file("in", &pseudo_random(data_len, 2));
    let full = calibrate(
        || {
            let p = base_repo();
            std::fs::copy(&input, p.path("in")).unwrap();
            p
        },
        &[
            "volume",
            "write",
            "v",
            "--offset",
            "100000",
            input.to_str().unwrap(),
        ],
    );
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut current = read_all(&r, "v");
    let mut killed = 0;
    for trial in 0..crate::util::trials(40) {
        let offset = (rng.next() % (2 << 20)) as usize;
        let data = pseudo_random(data_len, 10 + trial);
        let input = r.file("in", &data);
        let delay = Duration::from_micros(rng.next() % (full + full / 4));
        killed += u32::from(!run_and_kill(
            &r,
            &[
                "volume",
                "write",
                "v",
                "--offset",
                &offset.to_string(),
                input.to_str().unwrap(),
            ],
            delay,
        ));
        assert_no_damage(&r, &format!("write trial {trial}"));
        let got = read_all(&r, "v");
        assert_eq!(got.len(), current.len());
        for (i, (&g, &c)) in got.iter().zip(&current).enumerate() {
            let inside = i >= offset && i < offset + data_len;
            let ok = g == c || (inside && g == data[i - offset]);
            assert!(ok, "trial {trial}: byte {i} is neither old nor new");
        }
        current = got;
    }
    assert!(
        killed > 0,
        "no write was interrupted: the test proves nothing"
    );
    r.ok(&["gc"]);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]));
    assert_eq!(f["garbage"]["temp_entries"], 0);
    assert_eq!(read_all(&r, "v"), current);
}

#[test]
fn snapshot_killed_at_any_instant_is_all_or_nothing() {
    let r = base_repo();
    let setup = || {
        let p = base_repo();
        p.ok(&[
            "volume",
            "write",
            "v",
            "--offset",
            "0",
            p.file("w", &pseudo_random(2 << 20, 3)).to_str().unwrap(),
        ]);
        p
    };
    let full = calibrate(setup, &["snapshot", "v", "probe"]);
    let mut rng = Rng(0xDEAD_BEEF_F00D_1234);
    let mut killed = 0;
    for trial in 0..crate::util::trials(35) {
        // New private data every trial, so every snapshot has blocks to hash and store.
        let w = r.file("w", &pseudo_random(2 << 20, 100 + trial));
        r.ok(&[
            "volume",
            "write",
            "v",
            "--offset",
            &(rng.next() % (1 << 20)).to_string(),
            w.to_str().unwrap(),
        ]);
        let before = read_all(&r, "v");
        let name = format!("s{trial}");
        let delay = Duration::from_micros(rng.next() % (full + full / 4));
        killed += u32::from(!run_and_kill(&r, &["snapshot", "v", &name], delay));
        assert_no_damage(&r, &format!("snapshot trial {trial}"));
        assert_eq!(
            read_all(&r, "v"),
            before,
            "trial {trial}: the volume changed"
        );
        let obj = format!("snapshots/{name}");
        if r.run(&["info", &obj]).status.success() {
            assert_eq!(
                r.ok(&["get", &obj]),
                before,
                "trial {trial}: incomplete snapshot"
            );
            assert_eq!(r.json(&["image", "info", &obj])["is_snapshot"], true);
        }
    }
    assert!(
        killed > 0,
        "no snapshot was interrupted: the test proves nothing"
    );
    r.ok(&["gc"]);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]));
    assert_eq!(f["garbage"]["volume_entries"], 0);
}

#[test]
fn clone_killed_at_any_instant_is_all_or_nothing() {
    let r = base_repo();
    let source = r.ok(&["get", "images/base"]);
    let full = calibrate(base_repo, &["clone", "images/base", "probe"]);
    let mut rng = Rng(0x0F0F_1234_AAAA_5555);
    let mut killed = 0;
    for trial in 0..crate::util::trials(25) {
        let name = format!("c{trial}");
        let delay = Duration::from_micros(rng.next() % (full + full / 4));
        killed += u32::from(!run_and_kill(&r, &["clone", "images/base", &name], delay));
        assert_no_damage(&r, &format!("clone trial {trial}"));
        if r.run(&["volume", "info", &name]).status.success() {
            assert_eq!(read_all(&r, &name), source, "trial {trial}");
        }
    }
    // The calibration is one run; when it was slower than every trial (a loaded machine, a
    // remote store), kill earlier and earlier until a clone is interrupted, checked the same way.
    let mut early = full / 2;
    while killed == 0 && early > 0 {
        let name = format!("early{early}");
        killed += u32::from(!run_and_kill(
            &r,
            &["clone", "images/base", &name],
            Duration::from_micros(early),
        ));
        assert_no_damage(&r, &format!("clone killed after {early} us"));
        if r.run(&["volume", "info", &name]).status.success() {
            assert_eq!(read_all(&r, &name), source, "killed after {early} us");
        }
        early /= 2;
    }
    assert!(
        killed > 0,
        "no clone was interrupted: the test proves nothing"
    );
    assert_eq!(r.ok(&["get", "images/base"]), source);
}
