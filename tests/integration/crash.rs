//! Crash tests: `kill -9` of a real `arch` process at random instants, then the repository
//! must show the old or the new version of the object, complete, and nothing else.

use crate::util::{TestRepo, pseudo_random, run_and_signal};
use std::time::{Duration, Instant};

/// Runs `arch args` and kills it (SIGKILL) after `delay`; returns whether it finished first.
pub fn run_and_kill(r: &TestRepo, args: &[&str], delay: Duration) -> bool {
    use std::os::unix::process::ExitStatusExt;
    run_and_signal(r, args, delay, libc::SIGKILL).signal() != Some(libc::SIGKILL)
}

#[test]
fn put_killed_at_any_instant_shows_old_or_new_version() {
    let r = TestRepo::new();
    let size = 2 << 20;
    let mut current = pseudo_random(size, 1);
    let first = r.file("v0", &current);
    r.ok(&["put", first.to_str().unwrap(), "c/x"]);
    // Calibrate: how long a full put of new data takes here.
    let probe = TestRepo::new();
    let t = Instant::now();
    probe.ok(&["put", first.to_str().unwrap(), "c/x"]);
    let full = t.elapsed().as_micros() as u64 + 1;
    let (mut finished, trials) = (0, crate::util::trials(30));
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for trial in 0..trials {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_micros(rng % (full + full / 4));
        // Fresh content every trial, so every put has new blocks to write.
        let next = pseudo_random(size, 100 + trial);
        let path = r.file("next", &next);
        if run_and_kill(&r, &["put", path.to_str().unwrap(), "c/x"], delay) {
            finished += 1;
        }
        let got = r.ok(&["get", "c/x"]);
        assert!(
            got == current || got == next,
            "trial {trial}: a mix of versions is visible"
        );
        current = got;
    }
    // The repository stays usable: a clean put after all the crashes works.
    let last = r.file("last", &pseudo_random(size, 7));
    r.ok(&["put", last.to_str().unwrap(), "c/x"]);
    assert_eq!(r.ok(&["get", "c/x"]), std::fs::read(&last).unwrap());
    eprintln!("{finished} of {trials} puts finished before the kill");
}

#[test]
fn concurrent_puts_and_gets_on_one_repository() {
    let r = TestRepo::new();
    let datas: Vec<Vec<u8>> = (0..4).map(|i| pseudo_random(300_000, 10 + i)).collect();
    let paths: Vec<_> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| r.file(&format!("d{i}"), d))
        .collect();
    std::thread::scope(|s| {
        for (i, p) in paths.iter().enumerate() {
            let r = &r;
            s.spawn(move || {
                for round in 0..3 {
                    // Everyone also writes the shared name: the last writer wins, whole.
                    r.ok(&["put", p.to_str().unwrap(), &format!("c/own{i}")]);
                    r.ok(&["put", p.to_str().unwrap(), "c/shared"]);
                    let _ = round;
                }
            });
        }
    });
    for (i, d) in datas.iter().enumerate() {
        assert_eq!(&r.ok(&["get", &format!("c/own{i}")]), d);
    }
    let shared = r.ok(&["get", "c/shared"]);
    assert!(
        datas.contains(&shared),
        "c/shared is not any writer's whole content"
    );
    assert_eq!(r.json(&["info", "c/shared"])["version"], 12);
}

#[test]
fn gc_killed_at_any_instant_loses_nothing_referenced() {
    let r = TestRepo::new();
    let keep: Vec<Vec<u8>> = (0..3).map(|i| pseudo_random(400_000, 50 + i)).collect();
    for (i, d) in keep.iter().enumerate() {
        let p = r.file("k", d);
        r.ok(&["put", p.to_str().unwrap(), &format!("c/keep{i}")]);
    }
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for trial in 0..crate::util::trials(15) {
        // New garbage every trial: put then remove.
        let p = r.file("g", &pseudo_random(400_000, 1000 + trial));
        r.ok(&["put", p.to_str().unwrap(), "c/garbage"]);
        r.ok(&["rm", "c/garbage"]);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        run_and_kill(&r, &["gc"], Duration::from_micros(rng % 60_000));
        let f = r.json(&["fsck"]);
        assert_eq!(f["problems"], serde_json::json!([]), "trial {trial}");
        for (i, d) in keep.iter().enumerate() {
            assert_eq!(&r.ok(&["get", &format!("c/keep{i}")]), d, "trial {trial}");
        }
    }
    r.ok(&["gc"]);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["garbage"]["unreferenced_blocks"], 0);
}
