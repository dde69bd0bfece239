//! A store that accepts connections and never answers (a stalled or overloaded radosgw):
//! SIGTERM still stops a command waiting on it, at once, with exit 143 and nothing written.
//! Runs in every mode: the "store" is a socket of this test, no service needed.
//!
//! Regression test: a `get` on S3 hung after SIGTERM with its workers waiting in the store's
//! `block_on` for requests the server never answered (each waits for the request timeout and
//! the retries after it); the signal was only looked at between blocks.

use crate::util::stderr;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sigterm_stops_a_command_waiting_on_a_store_that_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let child = Command::new(crate::util::bin())
        .arg("init")
        .arg(&root)
        .args(["--store", "s3://arch-stalled/p"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AWS_REGION", "us-east-1")
        .env("HOME", dir.path())
        .env_remove("ARCH_REPO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The request is in flight once its connection is accepted; it is never answered.
    let (held, _) = listener.accept().unwrap();
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // The bound only guards against the hang (the request timeout is minutes); nothing is
    // measured.
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("arch init still waits on the stalled store 30 s after SIGTERM");
        }
    };
    drop(held);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(stderr(&out).contains("SIGTERM"), "{}", stderr(&out));
    assert!(!root.exists(), "an interrupted init leaves no directory");
}
