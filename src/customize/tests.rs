//! Customization of the real fixtures, checked with independent tools (sfdisk, sgdisk,
//! e2fsck, dumpe2fs, debugfs, openssl, ssh-keygen).

use super::*;
use std::process::Command;
use std::sync::OnceLock;

/// The fixtures, built once per test process by fixtures/build.sh.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("arch-fixtures-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/build.sh");
        let out = Command::new("bash").arg(script).arg(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn debugfs(spec: &str, request: &str) -> String {
    tool("debugfs", &["-R", request, spec])
}

/// A copy of fixture `name` grown to 256 MiB, in its own temp dir.
fn grown(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    std::fs::copy(fixtures().join(name), &disk).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    (dir, disk)
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn mbr_image_is_fully_customized() {
    let (dir, disk) = grown("mbr-ext4.raw");
    let scratch = tempfile::tempdir().unwrap();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVbGq0fV2S0m5mN7p1YcEoTtqs3M1F2eY6x0Ch8ZfKq test@arch";
    let inject = dir.path().join("motd");
    std::fs::write(&inject, b"welcome\n").unwrap();
    let opts = CustomizeOptions {
        hostname: Some("vm-one".into()),
        password: Some("s3cret pass".into()),
        ssh_keys: vec![key.into()],
        files: vec![
            format!("{}:/etc/motd:0640:user:root", inject.display())
                .parse()
                .unwrap(),
        ],
    };
    let before_keys = {
        let spec = format!("{}?offset=1048576", disk.display());
        debugfs(&spec, "cat /etc/ssh/ssh_host_ed25519_key.pub")
    };
    let tasks = customize_disk(
        &disk,
        &props(&[("USERS", "root user")]),
        &opts,
        scratch.path(),
    )
    .unwrap();
    let status: BTreeMap<&str, &str> = tasks
        .iter()
        .map(|t| (t.task.as_str(), t.status.as_str()))
        .collect();
    for t in [
        "FixPartitionTable",
        "FilesystemResizeUnmounted",
        "AssignHostname",
        "ChangeMachineId",
        "ChangePassword",
        "DeleteSSHKeys",
        "EnforcePersonality",
    ] {
        assert_eq!(status[t], "ran", "{t}: {tasks:?}");
    }
    assert_eq!(status["SELinuxAutorelabel"], "skipped");

    let d = disk.to_str().unwrap();
    let dump = tool("sfdisk", &["-d", d]);
    let line = dump.lines().find(|l| l.contains("start=")).unwrap();
    assert!(
        line.contains("size=      522240") || line.contains("size=522240"),
        "{dump}"
    );
    let spec = format!("{d}?offset=1048576");
    let fsck = Command::new("e2fsck")
        .args(["-fn", &spec])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let head = tool("dumpe2fs", &["-h", &spec]);
    assert!(
        head.lines()
            .any(|l| l.starts_with("Block count:") && l.ends_with(" 65280")),
        "{head}"
    );
    assert_eq!(debugfs(&spec, "cat /etc/hostname"), "vm-one\n");
    assert!(debugfs(&spec, "cat /etc/hosts").contains("127.0.1.1\tvm-one"));
    assert_ne!(
        debugfs(&spec, "cat /etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n"
    );

    // The shadow hash is reproduced by openssl from its salt.
    let shadow = debugfs(&spec, "cat /etc/shadow");
    for user in ["root", "user"] {
        let hash = shadow
            .lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap();
        let salt = hash.split('$').nth(2).unwrap();
        assert_eq!(
            tool("openssl", &["passwd", "-6", "-salt", salt, "s3cret pass"]).trim(),
            hash
        );
    }
    assert!(!shadow.contains("s3cret"), "clear text in /etc/shadow");

    // authorized_keys: mode 600 under a 700 .ssh, owned by the user.
    for (home, uid) in [("/root", "0"), ("/home/user", "1000")] {
        assert!(debugfs(&spec, &format!("cat {home}/.ssh/authorized_keys")).contains(key));
        let st = debugfs(&spec, &format!("stat {home}/.ssh/authorized_keys"));
        assert!(
            st.contains("Mode:  0600") && st.contains(&format!("User: {uid:>5}")),
            "{st}"
        );
        let st = debugfs(&spec, &format!("stat {home}/.ssh"));
        assert!(st.contains("Mode:  0700"), "{st}");
    }
    // Fresh, valid host keys.
    let pub_key = debugfs(&spec, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    assert_ne!(pub_key, before_keys);
    let dumped = dir.path().join("host_key");
    debugfs(
        &spec,
        &format!("dump /etc/ssh/ssh_host_ed25519_key {}", dumped.display()),
    );
    tool("ssh-keygen", &["-l", "-f", dumped.to_str().unwrap()]);
    assert!(debugfs(&spec, "stat /etc/ssh/ssh_host_rsa_key").contains("Mode:  0600"));
    // The injected file with its mode and owner.
    assert_eq!(debugfs(&spec, "cat /etc/motd"), "welcome\n");
    let st = debugfs(&spec, "stat /etc/motd");
    assert!(
        st.contains("Mode:  0640") && st.contains("User:  1000"),
        "{st}"
    );
}

#[test]
fn gpt_table_and_filesystem_grow() {
    let (_dir, disk) = grown("gpt-ext4.raw");
    let scratch = tempfile::tempdir().unwrap();
    let tasks = customize_disk(
        &disk,
        &props(&[]),
        &CustomizeOptions::default(),
        scratch.path(),
    )
    .unwrap();
    assert_eq!(tasks[0].status, "ran", "{tasks:?}");
    let d = disk.to_str().unwrap();
    let verify = tool("sgdisk", &["-v", d]);
    assert!(verify.contains("No problems found"), "{verify}");
    let dump = tool("sfdisk", &["-d", d]);
    assert!(
        dump.contains("last-lba: 524254"),
        "backup header at the end: {dump}"
    );
    let spec = format!("{d}?offset=1048576");
    let head = tool("dumpe2fs", &["-h", &spec]);
    let blocks: u64 = head
        .lines()
        .find(|l| l.starts_with("Block count:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(blocks > 65000, "{blocks}");
    assert!(
        Command::new("e2fsck")
            .args(["-fn", &spec])
            .status()
            .unwrap()
            .success()
    );
    let status: Vec<&str> = tasks.iter().map(|t| t.status.as_str()).collect();
    assert_eq!(
        status.iter().filter(|s| **s == "skipped").count(),
        5,
        "{tasks:?}"
    );
}

#[test]
fn exclusions_are_honoured_and_leave_the_disk_untouched() {
    let (_dir, disk) = grown("mbr-ext4.raw");
    let before = std::fs::read(&disk).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let opts = CustomizeOptions {
        hostname: Some("x".into()),
        ..Default::default()
    };
    let tasks = customize_disk(
        &disk,
        &props(&[("EXCLUDE_ALL_TASKS", "yes")]),
        &opts,
        scratch.path(),
    )
    .unwrap();
    assert!(tasks.iter().all(|t| t.status == "excluded"), "{tasks:?}");
    assert!(std::fs::read(&disk).unwrap() == before);
    let tasks = customize_disk(
        &disk,
        &props(&[
            ("EXCLUDE_MOUNTED_TASKS", "yes"),
            ("EXCLUDE_TASK_FILESYSTEMRESIZEUNMOUNTED", "yes"),
        ]),
        &opts,
        scratch.path(),
    )
    .unwrap();
    assert_eq!(tasks[0].status, "ran");
    assert!(
        tasks[1..].iter().all(|t| t.status == "excluded"),
        "{tasks:?}"
    );
}

#[test]
fn unsupported_input_fails_naming_the_task() {
    let (_dir, disk) = grown("mbr-ext4.raw");
    let scratch = tempfile::tempdir().unwrap();
    let opts = CustomizeOptions {
        hostname: Some("x".into()),
        ..Default::default()
    };
    let e = customize_disk(
        &disk,
        &props(&[("OSFAMILY", "windows")]),
        &opts,
        scratch.path(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("AddSwap") || e.to_string().contains("OSFAMILY=windows"),
        "{e}"
    );
    let blank = scratch.path().join("blank.raw");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let e = customize_disk(&blank, &props(&[]), &opts, scratch.path())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("FixPartitionTable:"), "{e}");
    assert!(
        validate(&CustomizeOptions {
            hostname: Some("bad_name!".into()),
            ..Default::default()
        })
        .is_err()
    );
    assert!("x".parse::<FileInjection>().is_err());
    assert!("a:/b:999".parse::<FileInjection>().is_err());
}

/// Host key files with names debugfs' parser would split or misread (a quote and a space,
/// a backslash, a newline, a carriage return, invalid UTF-8) are all removed, and the fresh
/// keys written; checked with debugfs' own `rdump` of /etc/ssh.
#[test]
fn hostile_host_key_names_are_all_deleted() {
    use std::os::unix::ffi::OsStrExt;
    let (dir, disk) = grown("mbr-ext4.raw");
    let spec = format!("{}?offset=1048576", disk.display());
    let hostile: &[&[u8]] = &[
        b"ssh_host_x\" y_key",
        b"ssh_host_x\" y_key.pub",
        b"ssh_host_back\\slash_key",
        b"ssh_host_nl\nx_key",
        b"ssh_host_cr\rx_key",
        b"ssh_host_\xff_key.pub",
        b"ssh_host_a\tb_key",
    ];
    let content = dir.path().join("old-key");
    std::fs::write(&content, b"old private key\n").unwrap();
    for name in hostile {
        // Quoted by hand for debugfs' parser: `"` doubled inside double quotes.
        let mut req = format!("write {} \"/etc/ssh/", content.display()).into_bytes();
        for &b in *name {
            req.extend(if b == b'"' {
                &b"\"\""[..]
            } else {
                std::slice::from_ref(&b)
            });
        }
        req.push(b'"');
        let out = Command::new("debugfs")
            .args(["-w", "-R"])
            .arg(std::ffi::OsStr::from_bytes(&req))
            .arg(&spec)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let names = |label: &str| -> Vec<Vec<u8>> {
        let out = dir.path().join(label);
        std::fs::create_dir(&out).unwrap();
        debugfs(&spec, &format!("rdump /etc/ssh {}", out.display()));
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(out.join("ssh"))
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("before").len(), 5 + hostile.len(), "all planted");
    let before_key = debugfs(&spec, "cat /etc/ssh/ssh_host_rsa_key");

    let scratch = tempfile::tempdir().unwrap();
    let tasks = customize_disk(
        &disk,
        &props(&[]),
        &CustomizeOptions::default(),
        scratch.path(),
    )
    .unwrap();
    let ssh = tasks.iter().find(|t| t.task == "DeleteSSHKeys").unwrap();
    assert_eq!(ssh.status, "ran", "{tasks:?}");
    assert!(ssh.detail.contains("removed 11 host key files"), "{ssh:?}");
    let after: Vec<Vec<u8>> = names("after");
    let want: Vec<&[u8]> = vec![
        b"ssh_host_ed25519_key",
        b"ssh_host_ed25519_key.pub",
        b"ssh_host_rsa_key",
        b"ssh_host_rsa_key.pub",
        b"sshd_config",
    ];
    assert_eq!(after, want);
    assert_ne!(debugfs(&spec, "cat /etc/ssh/ssh_host_rsa_key"), before_key);
    let fsck = Command::new("e2fsck")
        .args(["-fn", &spec])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

/// Every task error starts with the task's name, exactly once, and keeps its kind.
#[test]
fn task_errors_are_named_once() {
    let io = Error::io(
        "read",
        "/nowhere",
        std::io::Error::from_raw_os_error(libc::EIO),
    );
    let e = in_task("DeleteSSHKeys", io);
    assert!(
        e.to_string().starts_with("DeleteSSHKeys: read /nowhere"),
        "{e}"
    );
    assert_eq!(e.kind(), "io");
    let e = in_task(
        "AddSwap",
        Error::invalid("AddSwap: SWAP=1 is not supported"),
    );
    assert_eq!(e.to_string(), "AddSwap: SWAP=1 is not supported");
}
