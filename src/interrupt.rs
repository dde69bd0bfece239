//! SIGINT and SIGTERM as a flag: the first one is recorded and every long loop stops at its
//! next check with [`Error::Interrupted`], so the ordinary error paths (Drop guards, temp-file
//! removal, removal of a half-made volume) run; a second one kills the process at once (the
//! repository's crash safety covers that). The CLI exits with 128 + the signal number.
//!
//! Why a hand-written `sigaction` rather than a crate: the handler only stores an integer in
//! an atomic (async-signal-safe), which is a dozen lines over `libc`, already a dependency.
//! The handler is installed without `SA_RESTART`, so a blocking `flock` or pipe read returns
//! `EINTR` and its loop can look at the flag instead of waiting forever.

use crate::error::{Error, Result};
use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    if RECEIVED
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // Second signal: the user insists. Default action (terminate), re-raised.
        // SAFETY: sigaction and raise are async-signal-safe; the struct is fully initialized.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
            libc::raise(sig);
        }
    }
}

/// Installs the handler for SIGINT and SIGTERM (once, at the start of the process).
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with an empty mask and a handler that only touches an
        // atomic is a valid disposition.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// The signal received so far, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Fails with [`Error::Interrupted`] once SIGINT or SIGTERM was received. Long loops call it
/// between units of work: `crate::interrupt::check()?`.
pub fn check() -> Result<()> {
    match received() {
        None => Ok(()),
        Some(signal) => Err(Error::Interrupted {
            signal: signal_name(signal),
        }),
    }
}

/// `SIGINT`, `SIGTERM`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// The conventional exit status of a process stopped by `signal`: 128 + its number.
pub fn exit_code(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

/// Runs `cmd` to completion like [`Command::output`] (stdin fed from `input`, else null), but
/// a SIGINT/SIGTERM received meanwhile kills and reaps the child and returns an error of kind
/// [`io::ErrorKind::Interrupted`], so the caller's cleanup runs after the tool is gone (it
/// cannot recreate a temporary file that was just removed).
pub fn output(cmd: &mut Command, input: Option<&[u8]>) -> io::Result<Output> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    std::thread::scope(|s| {
        let feeder = s.spawn(move || -> io::Result<()> {
            use std::io::Write;
            if let (Some(mut w), Some(data)) = (stdin, input) {
                // A tool that exits without reading all of its input is not our error.
                match w.write_all(data) {
                    Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        });
        let out = s.spawn(move || read_all(&mut stdout));
        let err = s.spawn(move || read_all(&mut stderr));
        let status = wait(&mut child);
        let stdout = out.join().expect("reader thread")?;
        let stderr = err.join().expect("reader thread")?;
        let status = status?;
        feeder.join().expect("feeder thread")?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    })
}

fn read_all(r: &mut impl io::Read) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

/// Waits for `child`, killing and reaping it if a signal arrives first.
fn wait(child: &mut Child) -> io::Result<std::process::ExitStatus> {
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if let Some(sig) = received() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                format!("stopped by {}", signal_name(sig)),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_captures_both_streams_and_feeds_stdin() {
        let out = output(
            Command::new("sh").args(["-c", "cat; echo err >&2; exit 3"]),
            Some(b"in\n"),
        )
        .unwrap();
        assert_eq!(out.stdout, b"in\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
    }
}
