//! Clone-and-customize through the CLI, run as a non-root user, checked on the export with
//! independent tools; the Image never changes; a Snapshot's clone runs no task.

use crate::util::{TestRepo, bin};
use std::path::Path;
use std::process::Command;

/// Runs a host tool, which must succeed, and returns its stdout.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `arch` as an unprivileged user (nobody) when the tests run as root, else as ourselves.
fn arch_unprivileged(repo: &Path, args: &[&str]) -> std::process::Output {
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()]);
        c
    } else {
        Command::new(bin())
    };
    cmd.arg("-R")
        .arg(repo)
        .args(args)
        .env("HOME", "/tmp")
        .output()
        .unwrap()
}

#[test]
fn image_clone_is_customized_without_root_and_the_image_never_changes() {
    let r = TestRepo::new();
    let dir = r.dir.path();
    tool(
        "bash",
        &[
            concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/build.sh"),
            dir.join("fx").to_str().unwrap(),
        ],
    );
    let disk = dir.join("fx/gpt-ext4.raw");
    r.ok(&["put", disk.to_str().unwrap(), "images/gpt.raw"]);
    r.ok(&[
        "image",
        "register",
        "images/gpt.raw",
        "--name",
        "GPT",
        "-p",
        "USERS=root user",
    ]);
    let image = r.json(&["hashmap", "images/gpt.raw"]);
    std::fs::write(dir.join("pw"), "hunter2 horse\n").unwrap();
    std::fs::write(dir.join("key.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVbGq0fV2S0m5mN7p1YcEoTtqs3M1F2eY6x0Ch8ZfKq me@host\n").unwrap();
    std::fs::write(dir.join("motd"), "hi\n").unwrap();
    // Everything the unprivileged user touches belongs to it.
    tool("chown", &["-R", "65534:65534", dir.to_str().unwrap()]);
    tool("chmod", &["755", dir.to_str().unwrap()]);

    let file_arg = format!("{}:/etc/motd:0600:user:user", dir.join("motd").display());
    let out = arch_unprivileged(
        &r.root,
        &[
            "--json",
            "clone",
            "GPT",
            "vm",
            "--size",
            "1G",
            "--hostname",
            "web1",
            "--password-file",
            dir.join("pw").to_str().unwrap(),
            "--ssh-key",
            dir.join("key.pub").to_str().unwrap(),
            "--file",
            &file_arg,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = doc["customization"]["tasks"].as_array().unwrap();
    let ran: Vec<&str> = tasks
        .iter()
        .filter(|t| t["status"] == "ran")
        .map(|t| t["task"].as_str().unwrap())
        .collect();
    assert_eq!(
        ran,
        [
            "FixPartitionTable",
            "FilesystemResizeUnmounted",
            "AssignHostname",
            "ChangeMachineId",
            "ChangePassword",
            "DeleteSSHKeys",
            "EnforcePersonality"
        ]
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));

    let info = r.json(&["volume", "info", "vm"]);
    // The same customization shape as clone's: the recorded tasks, equal to those clone
    // reported; blocks_changed is only known to the command that ran them.
    assert_eq!(
        info["customization"]["tasks"],
        doc["customization"]["tasks"]
    );
    assert!(info["customization"]["blocks_changed"].is_null(), "{info}");
    let private = info["private_blocks"].as_u64().unwrap();
    assert!(
        private > 0 && private * 20 < info["blocks"].as_u64().unwrap(),
        "{info}"
    );
    eprintln!(
        "customized 1 GiB clone: {private} private of {} blocks",
        info["blocks"]
    );

    let raw = dir.join("vm.raw");
    r.ok(&["volume", "export", "vm", "-o", raw.to_str().unwrap()]);
    let spec = format!("{}?offset=1048576", raw.display());
    assert!(
        Command::new("e2fsck")
            .args(["-fn", &spec])
            .status()
            .unwrap()
            .success()
    );
    assert!(tool("sgdisk", &["-v", raw.to_str().unwrap()]).contains("No problems found"));
    assert_eq!(
        tool("debugfs", &["-R", "cat /etc/hostname", &spec]),
        "web1\n"
    );
    let st = tool("debugfs", &["-R", "stat /etc/motd", &spec]);
    assert!(
        st.contains("Mode:  0600") && st.contains("User:  1000"),
        "{st}"
    );
    let shadow = tool("debugfs", &["-R", "cat /etc/shadow", &spec]);
    let hash = shadow
        .lines()
        .find(|l| l.starts_with("user:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .to_string();
    let salt = hash.split('$').nth(2).unwrap();
    assert_eq!(
        tool("openssl", &["passwd", "-6", "-salt", salt, "hunter2 horse"]).trim(),
        hash
    );

    assert_eq!(
        r.json(&["hashmap", "images/gpt.raw"]),
        image,
        "the image changed"
    );
    let f = r.json(&["fsck", "--read-data"]);
    assert_eq!(f["problems"], serde_json::json!([]));

    // A Snapshot's clone runs no task: it reads exactly the snapshot.
    r.ok(&["image", "mark", "GPT", "snapshot"]);
    let plain = r.json(&["clone", "GPT", "plain"]);
    assert!(plain["customization"].is_null(), "{plain}");
    let out = dir.join("plain.raw");
    r.ok(&["volume", "export", "plain", "-o", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == r.ok(&["get", "images/gpt.raw"]));
    assert_eq!(r.json(&["volume", "info", "plain"])["private_blocks"], 0);
}

#[test]
fn a_failing_task_removes_the_half_made_volume() {
    let r = TestRepo::new();
    let junk = r.file("junk.raw", &vec![7u8; 1 << 20]);
    r.ok(&["put", junk.to_str().unwrap(), "images/junk"]);
    r.ok(&["image", "register", "images/junk", "--name", "Junk"]);
    let err = r.fails(2, &["clone", "Junk", "vm", "--hostname", "x"]);
    assert!(
        err.contains("FixPartitionTable") && err.contains("removed"),
        "{err}"
    );
    assert!(
        r.json(&["volume", "ls"])["volumes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    r.ok(&["clone", "Junk", "vm2", "--no-customize"]);
}

/// A clone of an image whose /etc/ssh holds a host key file named `ssh_host_x" y_key` (and
/// one with a newline) succeeds and removes every host key, the hostile ones included.
#[test]
fn clone_removes_host_keys_with_hostile_names() {
    use std::os::unix::ffi::OsStrExt;
    let r = TestRepo::new();
    let dir = r.dir.path();
    tool(
        "bash",
        &[
            concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/build.sh"),
            dir.join("fx").to_str().unwrap(),
        ],
    );
    let disk = dir.join("fx/mbr-ext4.raw");
    let spec = format!("{}?offset=1048576", disk.display());
    std::fs::write(dir.join("key"), "old\n").unwrap();
    // Requests quoted by hand for debugfs' parser: `"` doubled inside double quotes.
    for req in [
        format!(
            "write {} \"/etc/ssh/ssh_host_x\"\" y_key\"",
            dir.join("key").display()
        ),
        format!(
            "write {} \"/etc/ssh/ssh_host_n\nl_key.pub\"",
            dir.join("key").display()
        ),
    ] {
        tool("debugfs", &["-w", "-R", &req, &spec]);
    }
    r.ok(&["put", disk.to_str().unwrap(), "images/mbr.raw"]);
    r.ok(&["image", "register", "images/mbr.raw", "--name", "MBR"]);
    let doc = r.json(&["clone", "MBR", "vm", "--hostname", "k1"]);
    let ssh = doc["customization"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "DeleteSSHKeys")
        .unwrap()
        .clone();
    assert_eq!(ssh["status"], "ran", "{ssh}");
    assert!(
        ssh["detail"]
            .as_str()
            .unwrap()
            .contains("removed 6 host key files"),
        "{ssh}"
    );
    let raw = dir.join("vm.raw");
    r.ok(&["volume", "export", "vm", "-o", raw.to_str().unwrap()]);
    let out = dir.join("dump");
    std::fs::create_dir(&out).unwrap();
    let spec = format!("{}?offset=1048576", raw.display());
    tool(
        "debugfs",
        &["-R", &format!("rdump /etc/ssh {}", out.display()), &spec],
    );
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(out.join("ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    let want: Vec<&[u8]> = vec![
        b"ssh_host_ed25519_key",
        b"ssh_host_ed25519_key.pub",
        b"ssh_host_rsa_key",
        b"ssh_host_rsa_key.pub",
        b"sshd_config",
    ];
    assert_eq!(names, want);
}
