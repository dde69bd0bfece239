//! kill -9 trials on a repository whose data is in an object store (and, with
//! ARCH_TEST_CATALOG, whose catalog is in PostgreSQL), as `crash`/`crash_volumes` do on local
//! disk: put, clone, volume write, snapshot and gc killed at random instants. After each
//! kill, fsck finds nothing missing (the catalog never names a block or map the store lacks)
//! and what the command touched reads back whole, the old or the new version, never a mix
//! (after a gc: everything committed so far). At the end, gc collects what the kills left (blocks, old epochs' private objects, scratch) and
//! `fsck --read-data` is clean.
//!
//! Needs `ARCH_TEST_STORE=s3://BUCKET` (+ AWS_*); `.ci/remote` sets it. Unset: the test says
//! so and passes without running.

use crate::crash::run_and_kill;
use crate::remote_private::{id_epoch, private_objects, remote_repo, store_of};
use crate::util::{Rng, TestRepo, pseudo_random};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const BS: usize = 4096;

fn read_vm(r: &TestRepo, name: &str) -> Vec<u8> {
    r.ok(&["volume", "read", name, "--offset", "0"])
}

/// Runs `args` to completion and returns how long it took (µs): the range of kill instants.
fn timed(r: &TestRepo, args: &[&str]) -> u64 {
    let t = Instant::now();
    r.ok(args);
    t.elapsed().as_micros() as u64 + 1
}

fn assert_nothing_missing(r: &TestRepo, what: &str) {
    let f = r.json(&["fsck"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{what}: {f}");
}

#[test]
fn kill_9_of_put_clone_write_snapshot_and_gc_on_a_store_loses_nothing_committed() {
    let Some(r) = remote_repo("kill_9_of_put_clone_write_snapshot_and_gc") else {
        return;
    };
    let url = store_of(&r.root);
    let size = 256 << 10;
    // What must read back: objects by name, volumes by name.
    let mut objects: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let base = pseudo_random(size, 1);
    let p = r.file("base", &base);
    let put_time = timed(&r, &["put", p.to_str().unwrap(), "images/base"]);
    objects.insert("images/base".into(), base.clone());
    let clone_time = timed(&r, &["clone", "images/base", "vm", "--size", "512K"]);
    let mut vm = read_vm(&r, "vm");
    let w = r.file("w", &pseudo_random(64 << 10, 2));
    let write_time = timed(
        &r,
        &[
            "volume",
            "write",
            "vm",
            "--offset",
            "5000",
            w.to_str().unwrap(),
        ],
    );
    vm = {
        let mut v = vm;
        v[5000..5000 + (64 << 10)].copy_from_slice(&std::fs::read(&w).unwrap());
        v
    };
    assert_eq!(read_vm(&r, "vm"), vm);
    let snap_time = timed(&r, &["snapshot", "vm", "s0"]);
    objects.insert("snapshots/s0".into(), vm.clone());
    let gc_time = timed(&r, &["gc"]);
    let mut volumes: BTreeMap<String, Vec<u8>> = BTreeMap::from([("vm".to_string(), vm)]);

    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let (mut trials, mut killed) = (0, 0);
    for trial in 0..25u64 {
        let op = trial % 5;
        let full = [put_time, clone_time, write_time, snap_time, gc_time][op as usize];
        let delay = Duration::from_micros(rng.next() % (full + full / 4));
        let what = format!("trial {trial} (op {op}, kill after {delay:?})");
        let finished = match op {
            0 => {
                let next = pseudo_random(size, 100 + trial);
                let p = r.file("next", &next);
                let done = run_and_kill(&r, &["put", p.to_str().unwrap(), "c/x"], delay);
                let got = r.run(&["get", "c/x"]);
                let old = objects.get("c/x");
                if got.status.success() {
                    assert!(
                        old == Some(&got.stdout) || got.stdout == next,
                        "{what}: c/x is neither the old version nor the new one"
                    );
                    objects.insert("c/x".into(), got.stdout);
                } else {
                    assert!(old.is_none(), "{what}: c/x does not read back");
                }
                done
            }
            1 => {
                let name = format!("v{trial}");
                let done = run_and_kill(&r, &["clone", "images/base", &name], delay);
                // A clone is one commit: the volume exists whole, or not at all (or is
                // left `creating`, which gc removes).
                let got = r.run(&["volume", "read", &name, "--offset", "0"]);
                if got.status.success() {
                    assert_eq!(got.stdout, base, "{what}");
                    volumes.insert(name, base.clone());
                }
                done
            }
            2 => {
                let old = volumes["vm"].clone();
                let offset = (rng.next() % (400 << 10)) as usize;
                let data = pseudo_random(100 << 10, 200 + trial);
                let p = r.file("w", &data);
                let off = offset.to_string();
                let args = [
                    "volume",
                    "write",
                    "vm",
                    "--offset",
                    &off,
                    p.to_str().unwrap(),
                ];
                let done = run_and_kill(&r, &args, delay);
                let now = read_vm(&r, "vm");
                let mut new = old.clone();
                let end = (offset + data.len()).min(new.len());
                new[offset..end].copy_from_slice(&data[..end - offset]);
                // Block by block, the old content or the new: each upload is one PUT.
                for (i, (got, (o, n))) in now
                    .chunks(BS)
                    .zip(old.chunks(BS).zip(new.chunks(BS)))
                    .enumerate()
                {
                    assert!(got == o || got == n, "{what}: block {i} is torn");
                }
                if done {
                    assert_eq!(now, new, "{what}: a finished write is whole");
                }
                volumes.insert("vm".into(), now);
                done
            }
            3 => {
                let name = format!("snapshots/s{trial}");
                let (_, epoch) = id_epoch(&r, "vm");
                let done = run_and_kill(&r, &["snapshot", "vm", &format!("s{trial}")], delay);
                assert_eq!(
                    read_vm(&r, "vm"),
                    volumes["vm"],
                    "{what}: the volume changed"
                );
                let got = r.run(&["get", &name]);
                if got.status.success() {
                    assert_eq!(got.stdout, volumes["vm"], "{what}: the snapshot");
                    assert_eq!(id_epoch(&r, "vm").1, epoch + 1, "{what}");
                    objects.insert(name, got.stdout);
                } else {
                    assert_eq!(id_epoch(&r, "vm").1, epoch, "{what}");
                }
                done
            }
            _ => {
                // New garbage each time: a removed object's blocks.
                let p = r.file("g", &pseudo_random(size, 300 + trial));
                r.ok(&["put", p.to_str().unwrap(), "c/garbage"]);
                r.ok(&["rm", "c/garbage"]);
                run_and_kill(&r, &["gc"], delay)
            }
        };
        trials += 1;
        if !finished {
            killed += 1;
        }
        assert_nothing_missing(&r, &what);
        if op == 4 {
            // gc is what could lose something committed: everything reads back.
            for (name, data) in &objects {
                assert_eq!(&r.ok(&["get", name]), data, "{what}: {name}");
            }
            for (name, data) in &volumes {
                assert_eq!(&read_vm(&r, name), data, "{what}: {name}");
            }
        }
    }
    // What the kills left is garbage: gc takes it, and only it.
    r.ok(&["gc"]);
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]), "{f}");
    for key in ["unreferenced_blocks", "unreferenced_maps", "volume_entries"] {
        assert_eq!(f["garbage"][key], 0, "{key}: {f}");
    }
    for (name, data) in &objects {
        assert_eq!(&r.ok(&["get", name]), data, "{name}");
    }
    for (name, data) in &volumes {
        assert_eq!(&read_vm(&r, name), data, "{name}");
    }
    // Every private object left is a block of a volume's current epoch.
    let current: Vec<String> = volumes
        .keys()
        .map(|n| {
            let (id, epoch) = id_epoch(&r, n);
            format!("{id}/{epoch}/")
        })
        .collect();
    for (key, _) in private_objects(&url) {
        assert!(
            current.iter().any(|c| key.starts_with(c)),
            "{key} is not in a volume's current epoch"
        );
    }
    eprintln!("{killed} of {trials} commands killed before they finished");
    assert!(
        killed >= 5,
        "the kills landed in the commands: {killed} of {trials}"
    );
}
