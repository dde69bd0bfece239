//! Durability ordering, checked on the system calls a real `arch` makes (`strace -f -y`): the
//! orders that a power cut would expose, which a kill -9 cannot (the page cache survives it).
//! gc: every removed map's shard is fsynced before the first block is removed, and every
//! touched block shard is fsynced before gc exits. put: every block byte is written before the
//! sync that precedes the first rename into `blocks/`, and a second sync follows the renames
//! before the map is written.

use crate::util::{TestRepo, bin, pseudo_random};
use std::process::Command;

/// The `strace -f -y` log of `arch args` in `r`. strace is required (.ci/run installs it):
/// without it the ordering would go unchecked, so the test fails.
fn traced(r: &TestRepo, args: &[&str], calls: &str) -> Vec<String> {
    let log = r.path("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-y", "-qq", "-e", &format!("trace={calls}"), "-o"])
        .arg(&log)
        .arg(bin())
        .arg("-R")
        .arg(&r.root)
        .args(args)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "arch {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("strace could not run ({e}): install it (apt install strace)"),
    }
    let text = std::fs::read_to_string(&log).unwrap();
    text.lines().map(str::to_string).collect()
}

/// The directory a `call(fd</path>, ...)` line names through its first descriptor.
fn fd_path<'a>(line: &'a str, call: &str) -> Option<&'a str> {
    let rest = &line[line.find(&format!("{call}("))? + call.len() + 1..];
    let start = rest.find('<')? + 1;
    Some(&rest[start..start + rest[start..].find('>')?])
}

fn is_shard(path: &str, top: &str) -> bool {
    let parent = std::path::Path::new(path)
        .parent()
        .and_then(|p| p.file_name());
    parent.is_some_and(|p| p == top)
}

#[test]
fn gc_syncs_map_shards_before_removing_blocks_and_block_shards_before_exiting() {
    if crate::util::local_store_only(
        "straces the fsyncs and renames of local block, map and shard files",
    ) {
        return;
    }
    let r = TestRepo::new();
    for i in 0..3u64 {
        let p = r.file("d", &pseudo_random(200_000, 70 + i));
        r.ok(&["put", p.to_str().unwrap(), &format!("c/o{i}")]);
    }
    r.ok(&["rm", "c/o1"]);
    r.ok(&["rm", "c/o2"]);
    let log = traced(&r, &["gc"], "unlinkat,fsync");
    let mut removed_in: Vec<(usize, String, bool)> = Vec::new(); // (line, shard, is a map)
    let mut synced: Vec<(usize, String)> = Vec::new();
    for (n, line) in log.iter().enumerate() {
        // A call another thread interrupts is logged `<unfinished ...>` where it starts:
        // its line still names the descriptor, and precedes its completion.
        if let Some(dir) = fd_path(line, "unlinkat") {
            if is_shard(dir, "maps") || is_shard(dir, "blocks") {
                removed_in.push((n, dir.to_string(), is_shard(dir, "maps")));
            }
        } else if let Some(dir) = fd_path(line, "fsync") {
            synced.push((n, dir.to_string()));
        }
    }
    let first_block = removed_in
        .iter()
        .find(|e| !e.2)
        .map(|e| e.0)
        .expect("gc removed blocks");
    assert!(removed_in.iter().any(|e| e.2), "gc removed maps");
    for (n, shard, is_map) in &removed_in {
        // The shard is synced after this removal, and (for maps) before any block goes.
        let limit = if *is_map { first_block } else { usize::MAX };
        assert!(
            synced
                .iter()
                .any(|(s, dir)| dir == shard && s > n && *s < limit),
            "removal at line {n} in {shard} is not synced in order:\n{}",
            log.join("\n")
        );
    }
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]));
    assert_eq!(r.ok(&["get", "c/o0"]), pseudo_random(200_000, 70));
}

#[test]
fn put_writes_every_block_before_the_sync_that_precedes_its_rename() {
    if crate::util::local_store_only(
        "straces the fsyncs and renames of local block, map and shard files",
    ) {
        return;
    }
    let r = TestRepo::with_block_size("64K");
    // Unaligned tails too: a short last block and blocks ending in zeros (stored stripped).
    let mut data = pseudo_random(1_000_123, 9);
    data[65_536 * 3 - 5000..65_536 * 3].fill(0);
    let p = r.file("d", &data);
    let log = traced(
        &r,
        &["put", p.to_str().unwrap(), "c/x"],
        "pwrite64,write,syncfs,rename,renameat,renameat2",
    );
    blocks_synced_before_renames(&log);
    assert_eq!(r.ok(&["get", "c/x"]), data);
    assert_eq!(
        r.json(&["fsck", "--read-data"])["problems"],
        serde_json::json!([])
    );
}

/// In a traced put or receive: a sync comes after the last block write and before the first
/// rename into `blocks/`, and another after the last such rename and before the map's.
fn blocks_synced_before_renames(log: &[String]) {
    let block_write = |l: &String| {
        (l.contains("pwrite64(") || l.contains("write("))
            && fd_path(
                l,
                if l.contains("pwrite64(") {
                    "pwrite64"
                } else {
                    "write"
                },
            )
            .is_some_and(|p| p.contains("/tmp/batch-"))
    };
    let block_rename = |l: &String| l.contains("rename") && l.contains("/blocks/");
    let last_write = log.iter().rposition(block_write).expect("blocks written");
    let first_rename = log.iter().position(block_rename).expect("blocks renamed");
    let last_rename = log.iter().rposition(block_rename).unwrap();
    let syncs: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].contains("syncfs("))
        .collect();
    assert!(
        syncs.iter().any(|&s| s > last_write && s < first_rename),
        "no sync between the block writes and their renames:\n{}",
        log.join("\n")
    );
    let map_rename = log
        .iter()
        .position(|l| l.contains("rename") && l.contains("/maps/"))
        .expect("map renamed");
    assert!(
        syncs.iter().any(|&s| s > last_rename && s < map_rename),
        "no sync between the block renames and the map:\n{}",
        log.join("\n")
    );
}

#[test]
fn receive_writes_every_block_before_the_sync_that_precedes_its_rename() {
    if crate::util::local_store_only(
        "straces the fsyncs and renames of local block, map and shard files",
    ) {
        return;
    }
    let a = TestRepo::with_block_size("64K");
    let mut data = pseudo_random(1_000_123, 11);
    data[65_536 * 2 - 3000..65_536 * 2].fill(0);
    a.ok(&["put", a.file("d", &data).to_str().unwrap(), "c/x"]);
    let stream = a.path("s");
    a.ok(&["send", "c/x", "-o", stream.to_str().unwrap()]);
    let r = TestRepo::with_block_size("64K");
    let log = traced(
        &r,
        &["receive", stream.to_str().unwrap()],
        "pwrite64,write,syncfs,rename,renameat,renameat2",
    );
    blocks_synced_before_renames(&log);
    assert_eq!(r.ok(&["get", "c/x"]), data);
    assert_eq!(
        r.json(&["fsck", "--read-data"])["problems"],
        serde_json::json!([])
    );
}
