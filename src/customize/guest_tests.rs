//! debugfs quoting checked against the real debugfs on an ext4 image built by `mkfs.ext4 -d`
//! from a tree of hostile names; the result is read back with debugfs' own `rdump`.

use super::*;
use std::os::unix::ffi::OsStrExt;

/// Names no shell-style or naive quoting survives: quotes, spaces, tabs, a backslash, a
/// newline, a carriage return, invalid UTF-8, a comment marker, an inode-number lookalike.
const HOSTILE: &[&[u8]] = &[
    b"ssh_host_x\" y_key",
    b"a b",
    b"tab\tname",
    b"back\\slash",
    b"nl\nname",
    b"cr\rname",
    b"q\"",
    b"\"\"",
    b"\xffbyte",
    b"#hash",
    b"<12>",
    b"-rf",
];

fn mkfs_with(names: &[&[u8]]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let ssh = tree.join("etc/ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    for n in names {
        std::fs::write(ssh.join(OsStr::from_bytes(n)), n).unwrap();
    }
    let img = dir.path().join("fs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, img)
}

/// The names in guest directory `dir`, through debugfs' `rdump` into a host directory.
fn dumped_names(img: &Path, dir: &str) -> Vec<Vec<u8>> {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump {dir} {}", out_dir.path().display()))
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success());
    let base = Path::new(dir).file_name().unwrap();
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(out_dir.path().join(base))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    names
}

#[test]
fn quoting_follows_the_ss_parser() {
    assert_eq!(quote_arg(b"a b"), b"\"a b\"");
    assert_eq!(quote_arg(b"x\" y"), b"\"x\"\" y\"");
    assert_eq!(quote_arg(b"\\"), b"\"\\\"");
    assert!(
        quote("T", b"relative")
            .unwrap_err()
            .to_string()
            .starts_with("T: ")
    );
    assert!(quote("T", b"/a\0b").is_err());
    assert!(fits_script(b"rm \"/a b\""));
    assert!(!fits_script(b"rm \"/a\nb\""));
    assert!(!fits_script(b"rm \"/a\rb\""));
    assert!(!fits_script(&vec![b'a'; MAX_SCRIPT_LINE + 1]));
}

#[test]
fn ls_p_parsing_keeps_raw_names_and_rejects_garbage() {
    let out = b"/2/040755/0/0/.//\n/2/040755/0/0/..//\n/12/100644/0/0/nl\nname/5/\n\
/13/040755/0/0/a b//\n/14/100644/0/0/\xff/0/\n\n";
    assert_eq!(
        parse_ls_p(out).unwrap(),
        vec![b"nl\nname".to_vec(), b"a b".to_vec(), b"\xff".to_vec()]
    );
    assert_eq!(parse_ls_p(b"").map(|v| v.len()), None);
    assert_eq!(parse_ls_p(b"/x/040755/0/0/a//\n"), None);
    assert_eq!(parse_ls_p(b"/1/040755/0/0/a/"), None);
}

#[test]
fn hostile_names_are_listed_read_written_and_removed_exactly() {
    let (dir, img) = mkfs_with(HOSTILE);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let g = Guest::new(&img, 0, &scratch);
    let mut listed = g.list("T", "/etc/ssh").unwrap();
    listed.sort();
    let mut want: Vec<Vec<u8>> = HOSTILE.iter().map(|n| n.to_vec()).collect();
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(dumped_names(&img, "/etc/ssh"), want);

    let path = |n: &[u8]| [b"/etc/ssh/".as_slice(), n].concat();
    for n in HOSTILE {
        let st = g.stat("T", path(n)).unwrap().expect("exists");
        assert_eq!(st.mode & 0o170000, 0o100000, "{}", show(n));
        assert_eq!(g.read("T", path(n)).unwrap().unwrap(), *n, "{}", show(n));
    }
    assert_eq!(g.stat("T", "/etc/ssh/missing").unwrap(), None);
    assert_eq!(g.stat("T", "/etc/ssh/a b/below").unwrap(), None);

    // Replace every file (rm + write + sif in one apply), then remove half of them.
    let mut reqs = Vec::new();
    for n in HOSTILE {
        reqs.extend(
            g.write_requests("T", path(n), b"new", ROOT_0600, true)
                .unwrap(),
        );
    }
    g.apply("T", &reqs).unwrap();
    for n in HOSTILE {
        assert_eq!(
            g.read("T", path(n)).unwrap().unwrap(),
            b"new",
            "{}",
            show(n)
        );
        assert_eq!(g.stat("T", path(n)).unwrap().unwrap(), ROOT_0600);
    }
    let (gone, kept) = HOSTILE.split_at(HOSTILE.len() / 2);
    let rms: Vec<Request> = gone
        .iter()
        .map(|n| g.rm_request("T", path(n)).unwrap())
        .collect();
    g.apply("T", &rms).unwrap();
    let mut want: Vec<Vec<u8>> = kept.iter().map(|n| n.to_vec()).collect();
    want.sort();
    assert_eq!(dumped_names(&img, "/etc/ssh"), want);
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );

    // Removing a name that is not there is an error naming the task, not a silent no-op.
    let err = g
        .apply("T", &[g.rm_request("T", path(gone[0])).unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("T: ") && err.contains("not found"), "{err}");
}

const ROOT_0600: Stat = Stat {
    mode: 0o100600,
    uid: 0,
    gid: 0,
};

/// A huge sparse guest file (free to put in an image) is refused by its size, before any of
/// it is read: reading it whole would take the host's memory.
#[test]
fn a_guest_file_past_the_read_limit_is_refused_unread() {
    let (dir, img) = mkfs_with(&[b"small"]);
    let big = dir.path().join("big");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_GUEST_FILE + 1).unwrap();
    drop(f);
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} /etc/ssh/big", big.display()))
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success());
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let g = Guest::new(&img, 0, &scratch);
    let err = g
        .read("ChangePassword", "/etc/ssh/big")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("ChangePassword: ") && err.contains("more than the"),
        "{err}"
    );
    assert_eq!(g.read("T", "/etc/ssh/small").unwrap().unwrap(), b"small");
}
