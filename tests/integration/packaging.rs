//! What makes arch pick-up-able: committed completions and man pages that match the command
//! definitions, an example in every `--help`, no colour codes, no progress off a terminal.

use crate::util::{TestRepo, bin, pseudo_random};
use clap::CommandFactory;
use std::path::Path;
use std::process::Command;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn committed_completions_and_man_pages_are_up_to_date() {
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    for what in ["completions", "man"] {
        let out_dir = tmp.path().join(what);
        let out = Command::new(bin())
            .args(["generate", what])
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fresh = files(&out_dir);
        let committed = files(&repo_root.join(what));
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&committed),
            names(&fresh),
            "{what}/ is stale: run `cargo run -- generate completions completions && cargo run -- generate man man`"
        );
        for ((name, a), (_, b)) in committed.iter().zip(&fresh) {
            assert!(
                a == b,
                "{what}/{name} is stale: run `cargo run -- generate completions completions && cargo run -- generate man man`"
            );
        }
    }
    assert!(
        files(&repo_root.join("man"))
            .iter()
            .any(|(n, _)| n == "arch-volume-export.1")
    );
}

/// Every visible command path, e.g. ["image", "register"].
pub fn command_paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let mut path = prefix.clone();
        path.push(sub.get_name().to_string());
        out.push(path.clone());
        command_paths(sub, path, out);
    }
}

#[test]
fn every_help_shows_an_example() {
    let mut paths = vec![vec![]];
    command_paths(&arch::cli::Cli::command(), vec![], &mut paths);
    assert!(paths.len() > 30, "{paths:?}");
    for path in paths {
        let out = Command::new(bin())
            .args(&path)
            .arg("--help")
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .output()
            .unwrap();
        assert!(out.status.success(), "{path:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        let example = help
            .split("Examples:\n")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .unwrap_or_default();
        assert!(
            example.starts_with("  arch ") || example.contains("| arch "),
            "`arch {} --help` has no example:\n{help}",
            path.join(" ")
        );
        assert!(
            !help.contains('\x1b'),
            "colour codes in `arch {} --help`",
            path.join(" ")
        );
    }
}

#[test]
fn errors_and_tables_carry_no_colour_and_progress_stays_off_a_pipe() {
    let r = TestRepo::new();
    let p = r.file("d", &pseudo_random(3 << 20, 1));
    // stderr is a pipe here: no progress bar, only (nothing but) diagnostics.
    let out = r
        .cmd()
        .args(["put", p.to_str().unwrap(), "c/d"])
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.contains(&0x1b));
    let out = r
        .cmd()
        .args(["get", "c/e"])
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .unwrap();
    assert!(!out.stderr.contains(&0x1b));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean 'c/d'"));
}
