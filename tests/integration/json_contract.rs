//! The JSON contract (docs/JSON.md): every command's `--json` output, produced by the real
//! binary, validates against its schema in docs/json/ and writes its keys in the order the
//! schema lists them; every failure, a refused command line included, prints the error
//! document on stdout and the message on stderr.

mod contract;

use crate::util::{TestRepo, stderr};
use contract::{Contract, Ordered};
use std::collections::BTreeSet;
use std::path::Path;

/// `arch --json ARGS` in `r`: asserts success, checks stdout against `schema`.
fn ok(c: &Contract, r: &TestRepo, schema: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    c.check(schema, &r.ok(&all))
}

/// `arch ARGS` (which include `--json`) fails with exit 2: the error document on stdout,
/// the same message on stderr; returns the document.
fn fails(c: &Contract, r: &TestRepo, args: &[&str]) -> serde_json::Value {
    let out = r.run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    let doc = c.check("error", &out.stdout);
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(!message.is_empty() && !message.contains('\n'), "{doc}");
    let head = message.split([';', ':']).next().unwrap();
    assert!(
        stderr(&out).contains(head),
        "{args:?}: stderr does not say {message:?}: {}",
        stderr(&out)
    );
    doc
}

#[test]
fn every_command_prints_json_that_matches_its_schema() {
    let c = Contract::load();
    let r = TestRepo::new();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    let new_repo = s(&r.path("second"));
    ok(&c, &r, "init", &["init", &new_repo]);
    let about = ok(&c, &r, "info-repo", &["info"]);
    let engine = if r.catalog.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(about["catalog_engine"], engine, "{about}");

    let data = r.file("a.raw", &crate::util::pseudo_random(40_000, 1));
    let a = s(&data);
    let put = ok(&c, &r, "put", &["put", &a, "images/a.raw"]);
    assert!(put.get("replaced").is_none(), "{put}");
    ok(&c, &r, "put", &["put", &a, "images/dir/b.raw"]);
    let got = s(&r.path("got.raw"));
    ok(&c, &r, "get", &["get", "images/a.raw", "-o", &got]);
    ok(&c, &r, "ls", &["ls"]);
    ok(&c, &r, "ls", &["ls", "images"]);
    let folders = ok(&c, &r, "ls", &["ls", "images", "--delimiter", "/"]);
    assert_eq!(folders["objects"][1]["subdir"], "images/dir/", "{folders}");
    let info = ok(&c, &r, "info", &["info", "images/a.raw"]);
    let here = ok(&c, &r, "info-repo", &["info"]);
    let kind = match std::env::var_os("ARCH_TEST_STORE") {
        Some(_) => "s3",
        None => "local",
    };
    assert_eq!(here["data"]["kind"], kind, "{here}");
    assert!(info["image"].is_null());
    ok(
        &c,
        &r,
        "meta",
        &["meta", "images/a.raw", "--set", "b=2", "--set", "a=1"],
    );
    ok(&c, &r, "cp", &["cp", "images/a.raw", "images/c.raw"]);
    ok(&c, &r, "mv", &["mv", "images/c.raw", "images/d.raw"]);
    ok(&c, &r, "rm", &["rm", "images/d.raw"]);
    ok(&c, &r, "hashmap", &["hashmap", "images/a.raw"]);
    let over = ok(&c, &r, "put", &["put", &got, "images/a.raw"]);
    assert_eq!(over["replaced"]["version"], 1, "{over}");
    assert!(over["replaced"].get("registered_as").is_none(), "{over}");
    ok(&c, &r, "history", &["history", "images/a.raw"]);
    ok(
        &c,
        &r,
        "restore",
        &["restore", "images/a.raw", "--version", "1"],
    );
    ok(
        &c,
        &r,
        "prune-versions",
        &["prune-versions", "--keep", "1", "--dry-run"],
    );

    // An image is the same object in image register, info, ls, modify, mark and unregister.
    let reg = ok(
        &c,
        &r,
        "image-register",
        &[
            "image",
            "register",
            "images/a.raw",
            "--name",
            "A",
            "-p",
            "OSFAMILY=linux",
        ],
    );
    let image = ok(&c, &r, "image-info", &["image", "info", "A"]);
    let listed = ok(&c, &r, "image-ls", &["image", "ls"]);
    let info = ok(&c, &r, "info", &["info", "images/a.raw"]);
    assert_eq!(listed["images"][0], image);
    assert_eq!(info["image"], image);
    let mut without_changed = reg.clone();
    without_changed.as_object_mut().unwrap().remove("changed");
    assert_eq!(without_changed, image);
    assert_eq!(image["object"], "images/a.raw");
    assert_eq!(image["id"], put["uuid"]);
    ok(
        &c,
        &r,
        "image-modify",
        &["image", "modify", "A", "--name", "B"],
    );
    ok(&c, &r, "image-mark", &["image", "mark", "B", "image"]);

    // A volume's source and customization are the same objects in clone, volume info/ls.
    let clone = ok(&c, &r, "clone", &["clone", "B", "v1", "--no-customize"]);
    assert!(clone["customization"].is_null());
    let vinfo = ok(&c, &r, "volume-info", &["volume", "info", "v1"]);
    assert_eq!(vinfo["source"], clone["source"]);
    assert_eq!(clone["source"]["kind"], "image");
    assert_eq!(clone["source"]["object"], "images/a.raw");
    let patch = s(&r.file("patch", b"hello"));
    ok(
        &c,
        &r,
        "volume-write",
        &["volume", "write", "v1", "--offset", "4K", &patch],
    );
    let read = s(&r.path("read.bin"));
    ok(
        &c,
        &r,
        "volume-read",
        &[
            "volume", "read", "v1", "--offset", "0", "--length", "8K", "-o", &read,
        ],
    );
    ok(&c, &r, "volume-resize", &["volume", "resize", "v1", "64K"]);
    let snap = ok(&c, &r, "snapshot", &["snapshot", "v1", "s1"]);
    let from_snap = ok(
        &c,
        &r,
        "clone",
        &["clone", snap["object"].as_str().unwrap(), "v2"],
    );
    assert_eq!(from_snap["source"]["kind"], "snapshot");
    let vinfo = ok(&c, &r, "volume-info", &["volume", "info", "v1"]);
    assert_eq!(vinfo["snapshots"][0]["object"], snap["object"], "{vinfo}");
    let raw = s(&r.path("v1.raw"));
    // The format from the extension, from --format, or the default (raw).
    for (file, format, from, extra) in [
        ("v1.raw", "raw", "extension", &[][..]),
        ("v1.vmdk", "vmdk", "extension", &[]),
        ("v1.img2", "qcow2", "option", &["--format", "qcow2"]),
        ("v1", "raw", "default", &[]),
    ] {
        let out = s(&r.path(file));
        let mut args = vec!["volume", "export", "v1", "-o", &out];
        args.extend_from_slice(extra);
        let e = ok(&c, &r, "volume-export", &args);
        assert_eq!(
            (&e["format"], &e["format_from"]),
            (&format.into(), &from.into())
        );
    }
    ok(
        &c,
        &r,
        "volume-import",
        &["volume", "import", &raw, "v3", "--format", "raw"],
    );
    // A volume ls row is volume info without the snapshots taken from the volume.
    let listed = ok(&c, &r, "volume-ls", &["volume", "ls"]);
    let mut vinfo = ok(&c, &r, "volume-info", &["volume", "info", "v1"]);
    assert!(vinfo.as_object_mut().unwrap().remove("snapshots").is_some());
    assert_eq!(listed["volumes"][0], vinfo);
    assert!(listed["volumes"][2]["source"].is_null(), "{listed}");
    ok(&c, &r, "volume-rm", &["volume", "rm", "v2"]);
    transfers(&c, &r, snap["object"].as_str().unwrap());
    ok(&c, &r, "image-mark", &["image", "mark", "B", "snapshot"]);
    ok(&c, &r, "image-unregister", &["image", "unregister", "B"]);
    // The source by what it is now: its new name after a move, null once removed.
    r.ok(&["mv", "images/a.raw", "images/moved.raw"]);
    let moved = ok(&c, &r, "volume-info", &["volume", "info", "v1"]);
    assert_eq!(moved["source"]["object"], "images/moved.raw", "{moved}");
    assert_eq!(moved["source"]["removed"], false, "{moved}");
    r.ok(&["rm", "images/moved.raw"]);
    let gone = ok(&c, &r, "volume-info", &["volume", "info", "v1"]);
    assert!(gone["source"]["object"].is_null(), "{gone}");
    assert_eq!(gone["source"]["removed"], true, "{gone}");
    assert_eq!(gone["source"]["id"], moved["source"]["id"], "{gone}");

    // A customized clone of a real partitioned image: the customization shape with and
    // without blocks_changed.
    let fx = r.path("fx");
    let built = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/build.sh"))
        .arg(&fx)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    r.ok(&["put", &s(&fx.join("mbr-ext4.raw")), "images/mbr.raw"]);
    r.ok(&["image", "register", "images/mbr.raw", "--name", "M"]);
    let cust = ok(
        &c,
        &r,
        "clone",
        &["clone", "M", "web", "--hostname", "web1"],
    );
    let tasks = &cust["customization"]["tasks"];
    assert!(tasks.as_array().is_some_and(|t| !t.is_empty()), "{cust}");
    assert!(cust["customization"]["blocks_changed"].is_u64(), "{cust}");
    let web = ok(&c, &r, "volume-info", &["volume", "info", "web"]);
    assert_eq!(&web["customization"]["tasks"], tasks);
    ok(
        &c,
        &r,
        "customize",
        &["customize", "web", "--hostname", "web2"],
    );
    // A put over a registered image that a volume was cloned from.
    let over = ok(&c, &r, "put", &["put", &a, "images/mbr.raw"]);
    assert_eq!(over["replaced"]["registered_as"], "image", "{over}");

    ok(&c, &r, "du", &["du"]);
    ok(&c, &r, "fsck", &["fsck"]);
    ok(&c, &r, "gc", &["gc"]);
    let gen_dir = s(&r.path("man"));
    ok(&c, &r, "generate", &["generate", "man", &gen_dir]);

    // Failures, found by the library or by the argument parser.
    let short_ref = &web["source"]["id"].as_str().unwrap()[..4];
    let garbage = s(&r.file("garbage.arch", b"not a stream"));
    for (args, kind) in [
        (&["info", "images/none", "--json"][..], "not_found"),
        (&["image", "info", short_ref, "--json"], "invalid_argument"),
        (&["receive", &garbage, "--json"], "bad_stream"),
        // With --json, stdout carries the report: a stream or image needs -o FILE.
        (&["send", "web", "--json"], "invalid_argument"),
        (
            &["volume", "export", "web", "-o", "-", "--json"],
            "invalid_argument",
        ),
        (&["info", "a/../b", "--json"], "invalid_name"),
        (&["--json", "infp"], "usage"),
        (
            &["volume", "resize", "v1", "12Q", "--json"],
            "invalid_argument",
        ),
        (&["volume", "info", "--json"], "usage"),
        (&["volume", "info", "--json", "--bogus", "v1"], "usage"),
    ] {
        assert_eq!(fails(&c, &r, args)["error"]["kind"], kind, "{args:?}");
    }
    // -R inside or above a repository: the error names the repository.
    for dir in [r.root.join("tmp"), r.dir.path().to_path_buf()] {
        let out = std::process::Command::new(crate::util::bin())
            .arg("-R")
            .arg(&dir)
            .args(["--json", "ls"])
            .env_remove("ARCH_REPO")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let doc = c.check("error", &out.stdout);
        assert_eq!(doc["error"]["kind"], "invalid_argument", "{doc}");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(message.contains(&s(&r.root)), "{doc}");
    }

    // Every documented shape was produced (serve's event lines are not part of it yet).
    let all: BTreeSet<String> = c.schemas.keys().filter(|k| *k != "defs").cloned().collect();
    let used = c.used.borrow();
    let unused: Vec<_> = all.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "schemas no output was checked against: {unused:?}"
    );
}

/// send, receive, copy, diff (with and without --stat), volume rollback and rename, with `v1`
/// a volume of `r` and `snap` a snapshot taken from it.
fn transfers(c: &Contract, r: &TestRepo, snap: &str) {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let stream = s(&r.path("v1.arch"));
    let sent = ok(c, r, "send", &["send", snap, "images/a.raw", "-o", &stream]);
    assert_eq!(sent["resources"][0]["name"], snap, "{sent}");
    let there = TestRepo::new();
    let got = ok(c, &there, "receive", &["receive", &stream]);
    assert_eq!(got["resources"], sent["resources"], "{got}");
    let to = s(&there.root);
    let copied = ok(
        c,
        r,
        "copy",
        &["copy", "v1", "--to", &to, "--rename", "v1=v1-copy"],
    );
    assert_eq!(copied["resources"][0]["renamed_from"], "v1", "{copied}");

    let diff = ok(c, r, "diff", &["diff", snap, "v1"]);
    assert!(diff["extents"].is_array(), "{diff}");
    let stat = ok(c, r, "diff", &["diff", snap, "v1", "--stat"]);
    assert_eq!(
        stat["extent_count"],
        diff["extents"].as_array().unwrap().len()
    );
    let patch = s(&r.file("patch2", b"changed"));
    r.ok(&["volume", "write", "v1", "--offset", "0", &patch]);
    let diff = ok(c, r, "diff", &["diff", snap, "v1"]);
    assert_eq!(diff["extents"][0]["type"], "data", "{diff}");
    let back = ok(c, r, "volume-rollback", &["volume", "rollback", "v1", snap]);
    assert_eq!(back["forced"], false, "{back}");
    let renamed = ok(c, r, "volume-rename", &["volume", "rename", "v3", "v4"]);
    assert_eq!(renamed["to"], "v4", "{renamed}");
}

#[test]
fn without_json_a_refused_command_line_prints_nothing_on_stdout() {
    let r = TestRepo::new();
    for args in [&["info", "a/../b"][..], &["infp"], &["put", "--", "--json"]] {
        let out = r.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", out.stdout);
        assert!(stderr(&out).contains("error:"), "{args:?}");
    }
}

#[test]
fn the_schemas_refuse_a_wrong_document() {
    let c = Contract::load();
    let refused = |schema: &str, doc: &[u8]| {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.check(schema, doc);
        }));
        assert!(
            caught.is_err(),
            "{schema} accepted {}",
            String::from_utf8_lossy(doc)
        );
    };
    let id = "0f5e2f1c-8c47-4a1e-9d0a-2b8f3e4c5d6a";
    let good = format!(r#"{{"volume":"v","id":"{id}","private_blocks_freed":0}}"#);
    c.check("volume-rm", good.as_bytes());
    // A missing field, an undocumented one, a wrong type, a bad id, a wrong source kind.
    refused("volume-rm", br#"{"volume":"v","private_blocks_freed":0}"#);
    refused(
        "volume-rm",
        format!(r#"{{"volume":"v","id":"{id}","private_blocks_freed":0,"x":1}}"#).as_bytes(),
    );
    refused(
        "volume-rm",
        format!(r#"{{"volume":"v","id":"{id}","private_blocks_freed":"0"}}"#).as_bytes(),
    );
    refused(
        "volume-rm",
        br#"{"volume":"v","id":"nope","private_blocks_freed":0}"#,
    );
    refused(
        "clone",
        format!(r#"{{"volume":"v","id":"{id}","size":1,"source":{{"kind":"volume","id":"{id}","object":null}},"customization":null}}"#).as_bytes(),
    );
    let source = format!(r#"{{"kind":"image","id":"{id}","object":"images/a","removed":false}}"#);
    let clone = |source: &str| {
        format!(r#"{{"volume":"v","id":"{id}","size":1,"source":{source},"customization":null}}"#)
    };
    c.check("clone", clone(&source).as_bytes());
    // The source shape without `removed`, and a volume ls row with its snapshots.
    refused(
        "clone",
        clone(&source.replace(r#","removed":false"#, "")).as_bytes(),
    );
    let row = format!(
        r#"{{"name":"v","id":"{id}","size":1,"block_size":4096,"status":"available","created_at":"2026-11-26T05:54:39Z","modified_at":"2026-11-26T05:54:39Z","epoch":0,"blocks":1,"private_blocks":0,"shared_blocks":0,"zero_blocks":0,"snapshots":[],"source":null,"customization":null}}"#
    );
    c.check("volume-info", row.as_bytes());
    refused("volume-ls", format!(r#"{{"volumes":[{row}]}}"#).as_bytes());
    refused("error", br#"{"error":{"kind":"whatever","message":"m"}}"#);
}

#[test]
fn the_order_check_catches_keys_out_of_order() {
    let c = Contract::load();
    let sorted = br#"{"blocks_changed": null, "tasks": []}"#;
    let doc: Ordered = serde_json::from_slice(sorted).unwrap();
    let node = c.deref("#/$defs/customization");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.order(&doc, node, "test", "")
    }));
    assert!(caught.is_err(), "alphabetical order was accepted");
    let right: Ordered = serde_json::from_slice(br#"{"tasks": [], "blocks_changed": 3}"#).unwrap();
    c.order(&right, node, "test", "");
}

#[test]
fn a_reader_that_closed_the_pipe_is_not_an_error() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let r = TestRepo::new();
    let data = r.file("a", b"abc");
    r.ok(&["put", data.to_str().unwrap(), "x/a"]);
    for args in [
        &["--json", "info", "x/a"][..],
        &["info", "x/a"],
        &["--json", "ls", "x"],
    ] {
        // stdout is a pipe whose read end is already closed: every write fails with EPIPE.
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        drop(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        let write_end = unsafe { OwnedFd::from_raw_fd(fds[1]) };
        let out = r.cmd().args(args).stdout(write_end).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn the_documented_error_kinds_are_the_ones_arch_uses() {
    // The library's kinds, read from `Error::kind` in src/error.rs, plus those the CLI edge
    // adds (src/cmd/output.rs): a refused command line, and an error of no library kind.
    let src = include_str!("../../src/error.rs");
    let body = &src[src.find("pub fn kind(&self)").expect("Error::kind")..];
    let body = &body[..body.find("\n    }\n").unwrap()];
    let mut used: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.split("=> \"").nth(1))
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    assert!(used.contains("not_found") && used.len() > 15, "{used:?}");
    used.extend(["usage", "invalid_argument", "io", "other"].map(String::from));
    let c = Contract::load();
    let schema = c.schemas["error"].to_value();
    let documented: BTreeSet<String> = schema["properties"]["error"]["properties"]["kind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        used, documented,
        "docs/json/error.schema.json and docs/JSON.md"
    );
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/JSON.md")).unwrap();
    for k in &documented {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/JSON.md does not list {k}"
        );
    }
}

/// `volume-info` for `arch volume info`: every leaf command of the CLI, `help` aside.
fn leaf_commands(cmd: &clap::Command, prefix: &str, out: &mut BTreeSet<String>) {
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("{prefix}{}", sub.get_name());
        if sub.has_subcommands() {
            leaf_commands(sub, &format!("{name}-"), out);
        } else {
            out.insert(name);
        }
    }
}

#[test]
fn every_command_has_a_schema() {
    use clap::CommandFactory;
    let mut commands = BTreeSet::new();
    leaf_commands(&arch::cli::Cli::command(), "", &mut commands);
    // `generate` has one schema for both of its subcommands (the same report); `serve --json`
    // prints a stream of event lines, documented in docs/VOLUMES.md, not one document; the
    // hidden `complete` is what the shell completion scripts call, and prints names one per
    // line for them, --json or not (the_hidden_complete_prints_names_not_json).
    commands.retain(|c| !c.starts_with("generate-") && c != "serve" && c != "complete");
    commands.insert("generate".into());
    let c = Contract::load();
    let missing: Vec<_> = commands
        .iter()
        .filter(|n| !c.schemas.contains_key(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "commands without docs/json/NAME.schema.json: {missing:?}"
    );
    assert!(
        commands.contains("volume-info") && commands.len() > 30,
        "{commands:?}"
    );
}

/// `arch complete` is exempt from the contract: the completion scripts read its names one per
/// line, so --json changes nothing, and it never prints an error (into a prompt).
#[test]
fn the_hidden_complete_prints_names_not_json() {
    let r = TestRepo::new();
    let data = r.file("a", b"abc");
    r.ok(&["put", data.to_str().unwrap(), "x/a"]);
    for args in [
        &["--json", "complete", "--", "get", "x/"][..],
        &["complete", "--", "get", "x/"],
    ] {
        assert_eq!(r.ok(args), b"x/a\n", "{args:?}");
    }
    let out = r.run(&["--json", "complete", "--", "volume", "info", "--bogus", ""]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}
