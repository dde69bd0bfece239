//! Crash test for receive: `kill -9` at random instants leaves the repository as it was or
//! with the whole stream applied, and fsck finds no damage either way.

use crate::crash::run_and_kill;
use crate::transfer::{populated, read};
use crate::util::{Rng, TestRepo};
use std::time::{Duration, Instant};

#[test]
fn receive_killed_at_any_instant_is_all_or_nothing() {
    let a = populated();
    let stream = a.path("stream");
    a.ok(&[
        "send",
        "vm",
        "snapshots/s1",
        "files/a.bin",
        "-o",
        stream.to_str().unwrap(),
    ]);
    let want_vm = read(&a, "vm");
    let want_obj = a.ok(&["get", "files/a.bin"]);
    let s = stream.to_str().unwrap();
    let full = {
        let probe = TestRepo::new();
        let t = Instant::now();
        probe.ok(&["receive", s]);
        t.elapsed().as_micros() as u64 + 1
    };
    // One trial: receive killed after `delay`; true when it was killed, then whether the
    // stream was applied (all of it) rather than not at all.
    let run_trial = |trial: u64, delay: Duration| -> (bool, bool) {
        let r = TestRepo::new();
        let before = r.snapshot();
        let killed = !run_and_kill(&r, &["receive", s], delay);
        let f = r.json(&["fsck"]);
        assert_eq!(f["problems"], serde_json::json!([]), "trial {trial}");
        let present: Vec<bool> = ["vm", "snapshots/s1", "files/a.bin"]
            .iter()
            .map(|n| r.run(&["diff", n, n]).status.success())
            .collect();
        if present.iter().all(|&p| p) {
            assert_eq!(read(&r, "vm"), want_vm, "trial {trial}");
            assert_eq!(r.ok(&["get", "files/a.bin"]), want_obj, "trial {trial}");
            return (killed, true);
        }
        assert_eq!(present, [false; 3], "trial {trial}: partly applied");
        // Only garbage (tmp/, unreferenced blocks, maps, private files) may remain.
        r.ok(&["gc"]);
        let after: Vec<_> = r
            .snapshot()
            .into_iter()
            .filter(|e| !e.0.starts_with("meta/"))
            .collect();
        let was: Vec<_> = before
            .into_iter()
            .filter(|e| !e.0.starts_with("meta/"))
            .collect();
        assert_eq!(after, was, "trial {trial}: gc left something behind");
        (killed, false)
    };
    let mut rng = Rng(0x5EED_0FC0_FFEE);
    let (mut killed, mut applied) = (0, 0);
    for n in 0..32u64 {
        let delay = Duration::from_micros(rng.next() % (full + full / 4));
        let (k, a) = run_trial(n, delay);
        killed += u32::from(k);
        applied += u32::from(a);
    }
    // The calibration is one run; on a loaded machine every trial may have been slower than
    // it. Later kills until one receive completes (each still checked the same way).
    let mut late = full * 2;
    while applied == 0 && late < full * 128 {
        let (k, a) = run_trial(late, Duration::from_micros(late));
        killed += u32::from(k);
        applied += u32::from(a);
        late *= 2;
    }
    assert!(
        killed > 0,
        "no receive was interrupted: the test proves nothing"
    );
    assert!(
        applied > 0,
        "no receive completed: the kill instants are too early"
    );
}
