//! The help, man pages, completions and tour a newcomer meets (issue 14): global options
//! apart, examples that fit a terminal, man pages with synopses, ENVIRONMENT and EXIT STATUS
//! and no dangling reference, repository names completed in bash, and a tour that finds the
//! binary wherever cargo put it.

use crate::packaging::command_paths;
use crate::util::{TestRepo, bin, stderr};
use clap::CommandFactory;
use std::path::Path;
use std::process::Command;

#[test]
fn help_lists_global_options_apart_and_examples_fit_80_columns() {
    let mut paths = vec![vec![]];
    command_paths(&arch::cli::Cli::command(), vec![], &mut paths);
    for path in paths {
        let out = Command::new(bin())
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8(out.stdout).unwrap();
        let name = format!("arch {} --help", path.join(" "));
        let (own, global) = help
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("{name}: no `Global options:` section:\n{help}"));
        assert!(
            !own.contains("--repo"),
            "{name}: --repo among the command's own options"
        );
        assert!(
            global.contains("-R, --repo <DIR>") && global.contains("--json"),
            "{name}"
        );
        let examples = help.split("Examples:\n").nth(1).unwrap_or_default();
        for line in examples.lines().take_while(|l| !l.is_empty()) {
            assert!(
                line.len() <= 80 && line.starts_with("  "),
                "{name}: example wider than 80 columns or wrapped: {line:?}"
            );
        }
    }
}

/// The `name(1)` references of a man page, with roff font escapes removed.
fn references(page: &str) -> Vec<String> {
    let text = page
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "")
        .replace("\\-", "-");
    let mut out = Vec::new();
    for (at, _) in text.match_indices("(1)") {
        let start = text[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(0, |i| i + 1);
        out.push(text[start..at].to_string());
    }
    out
}

#[test]
fn man_pages_have_synopses_environment_exit_status_and_no_dangling_reference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut pages = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let page = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        pages += 1;
        let synopsis = page
            .split(".SH SYNOPSIS\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .unwrap_or_else(|| panic!("{name}: no SYNOPSIS"));
        assert!(
            synopsis.contains("[\\fIGLOBAL OPTIONS\\fR]"),
            "{name}: {synopsis}"
        );
        for section in [".SH ENVIRONMENT\n", ".SH EXIT STATUS\n"] {
            assert!(page.contains(section), "{name}: no {section}");
        }
        assert!(page.contains("\\fBARCH_REPO\\fR") && page.contains("\\fBNO_COLOR\\fR"));
        for r in references(&page) {
            assert!(
                dir.join(format!("{r}.1")).exists(),
                "{name} refers to {r}(1), which does not exist"
            );
        }
        if Command::new("groff").arg("--version").output().is_ok() {
            let out = Command::new("groff")
                .args(["-man", "-ww", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.stderr.is_empty(), "{name}: {}", stderr(&out));
        }
    }
    assert!(pages > 30);
    let export = std::fs::read_to_string(dir.join("arch-volume-export.1")).unwrap();
    assert!(
        export.contains(
            "\\fBarch volume export\\fR [\\fIGLOBAL OPTIONS\\fR] \\fB\\-o\\fR|\\fB\\-\\-output\\fR \\fIFILE\\fR"
        ) && export.contains("\\fIVOLUME\\fR"),
        "{export}"
    );
    assert!(export.contains(".SH EXAMPLES\n.PP\n.nf\narch volume export vm1 \\-o vm1.raw\n"));
    let top = std::fs::read_to_string(dir.join("arch.1")).unwrap();
    assert!(top.contains("arch\\-volume(1)") && !top.contains("help(1)"));
}

#[test]
fn completion_offers_repository_names_for_the_argument_under_the_cursor() {
    let r = TestRepo::new();
    let f = r.file("d", b"data");
    r.ok(&["put", f.to_str().unwrap(), "images/debian.raw"]);
    r.ok(&["put", f.to_str().unwrap(), "other/x"]);
    r.ok(&[
        "image",
        "register",
        "images/debian.raw",
        "--name",
        "Debian 12",
    ]);
    r.ok(&["clone", "images/debian.raw", "vm1", "--no-customize"]);
    r.ok(&["clone", "other/x", "vm2"]);
    let complete = |words: &[&str]| -> Vec<String> {
        let mut args = vec!["complete", "--"];
        args.extend_from_slice(words);
        String::from_utf8(r.ok(&args))
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    assert_eq!(complete(&["volume", "info", "vm"]), ["vm1", "vm2"]);
    assert_eq!(complete(&["get", "images/"]), ["images/debian.raw"]);
    assert_eq!(
        complete(&["image", "info", ""]),
        ["Debian 12", "images/debian.raw"]
    );
    assert_eq!(
        complete(&["clone", "D"]),
        ["Debian 12"],
        "display names complete a clone source"
    );
    assert!(
        complete(&["clone", "images/debian.raw", ""]).is_empty(),
        "a new name"
    );
    assert!(complete(&["volume", "info", "--"]).is_empty());
    // No repository: nothing, and success (a prompt never shows an error).
    let out = Command::new(bin())
        .args(["complete", "--", "volume", "info", ""])
        .current_dir(r.dir.path().parent().unwrap())
        .env_remove("ARCH_REPO")
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());

    // The committed bash script calls it (the repository from ARCH_REPO).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/arch.bash");
    let run_bash = |line: &str| -> String {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({} {line}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 _arch_names arch \"${{COMP_WORDS[COMP_CWORD]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display(),
                bin()
            ))
            .env("ARCH_REPO", &r.root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run_bash("volume rm vm"), "vm1\nvm2\n");
    assert_eq!(run_bash("clone Deb"), "Debian\\ 12\n");
    let bin_dir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let completions = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    if Command::new("fish").arg("--version").output().is_ok() {
        let out = Command::new("fish")
            .arg("-c")
            .arg(format!(
                "source {}; complete -C 'arch volume info vm'; complete -C 'arch clone Deb'",
                completions.join("arch.fish").display()
            ))
            .env("PATH", &path)
            .env("ARCH_REPO", &r.root)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "vm1\nvm2\nDebian 12\n",
            "{}",
            stderr(&out)
        );
    }
    if Command::new("zsh").arg("--version").output().is_ok() {
        // An interactive zsh in a pseudo-terminal completes `arch volume info vm<TAB>`;
        // compadd is wrapped to record what is offered.
        let out_file = r.path("zsh-offered");
        let script = r.file(
            "capture.zsh",
            format!(
                r#"zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1=''"
zpty -w z 'fpath=({dir} $fpath); autoload -U compinit; compinit -u -D'
zpty -w z 'compadd () {{ local -a h; builtin compadd -O h "$@"; print -l -- $h >> {out}; builtin compadd "$@" }}'
zpty -w z $'arch volume info vm	'
for i in {{1..200}}; do [[ -s {out} ]] && break; sleep 0.05; done
sleep 0.2
zpty -d z
"#,
                dir = completions.display(),
                out = out_file.display()
            )
            .as_bytes(),
        );
        let out = Command::new("zsh")
            .arg("-f")
            .arg(&script)
            .env("PATH", &path)
            .env("ARCH_REPO", &r.root)
            .output()
            .unwrap();
        let offered = std::fs::read_to_string(&out_file).unwrap_or_default();
        assert_eq!(offered, "vm1\nvm2\n", "{}", stderr(&out));
    }
    for (file, call) in [("_arch", "complete --"), ("arch.fish", "arch complete --")] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("completions")
                .join(file),
        )
        .unwrap();
        assert!(text.contains(call), "{file} never calls `arch complete`");
    }
}

#[test]
fn the_tour_finds_the_binary_through_cargo_or_arch() {
    let tour = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tour.sh"))
        .unwrap();
    assert!(
        tour.contains("--message-format=json"),
        "the tour asks cargo where the binary is"
    );
    assert!(tour.contains("${ARCH:-"), "ARCH= overrides it");
    // ARCH= is honoured: a stand-in binary that records its calls stops the tour at its first
    // step, before any fixture is needed.
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("fake-arch");
    std::fs::write(&fake, "#!/bin/sh\necho \"fake $*\" >&2\nexit 7\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tour.sh"))
        .env("ARCH", &fake)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = stderr(&out);
    if out.status.code() == Some(2) {
        // A machine without the tour's tools: they are named with one apt line first.
        assert!(err.contains("install with: sudo apt install"), "{err}");
        return;
    }
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("fake init"), "{err}");
}
