//! The control socket of `arch serve` (`REPO/run/arch-serve-PID.ctl`): `arch snapshot` of a
//! volume served read-write asks the server to take the snapshot, one JSON line each way.

use super::super::SnapshotReport;
use super::{Served, ServerInfo};
use crate::error::{Error, Result};
use crate::services::names::ObjectName;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

/// A request on a server's control socket (one JSON line; the answer is one JSON line).
#[derive(Debug, Serialize, Deserialize)]
struct ControlRequest {
    op: String,
    volume: String,
    object: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ControlReply {
    report: Option<SnapshotReport>,
    error: Option<String>,
}

/// How long `arch snapshot` waits for the server's answer.
const CONTROL_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Asks the server of volume `name` to snapshot it as `target` (waits for it).
pub fn snapshot_by_server(
    server: &ServerInfo,
    name: &str,
    target: &ObjectName,
) -> Result<SnapshotReport> {
    let Some(control) = &server.control else {
        return Err(Error::Served {
            name: name.to_string(),
            server: server.describe(),
            fix: "that server takes no snapshot requests; stop it first".into(),
        });
    };
    // Its control socket is a Unix socket: reachable from its own machine only.
    if server
        .machine
        .as_ref()
        .is_some_and(|m| *m != super::this_machine())
    {
        return Err(Error::Served {
            name: name.to_string(),
            server: server.describe(),
            fix: format!(
                "it runs on another machine, so only it can snapshot the volume: run `arch \
                 snapshot {name} {}` on {} (in a directory of this repository there), or stop \
                 the server first",
                target.full(),
                server.host
            ),
        });
    }
    let request = ControlRequest {
        op: "snapshot".into(),
        volume: name.to_string(),
        object: target.full(),
    };
    let io = |e| Error::io("talk to the server through", control, e);
    let mut stream = UnixStream::connect(control).map_err(io)?;
    // A server that stopped answering (stopped with SIGSTOP, deadlocked) does not hang the
    // snapshot command for good: the request goes out within seconds, the answer (a flush
    // and a snapshot of the volume's map) within minutes.
    stream
        .set_write_timeout(Some(std::time::Duration::from_secs(10)))
        .and_then(|()| stream.set_read_timeout(Some(CONTROL_ANSWER_TIMEOUT)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(&request).expect("request serializes");
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    crate::interrupt::check()?;
    let reply: ControlReply = serde_json::from_str(&answer).map_err(|_| Error::Busy {
        resource: format!(
            "the server of volume '{name}' ({}) ended during the snapshot, so it",
            server.describe()
        ),
    })?;
    match (reply.report, reply.error) {
        (Some(r), _) => Ok(r),
        (None, e) => Err(Error::invalid(format!(
            "snapshot of volume '{name}' by its server ({}): {}",
            server.describe(),
            e.unwrap_or_default()
        ))),
    }
}

/// Answers one request on the control socket: `stream` carries a JSON line naming one of
/// `served`.
pub fn answer_control(served: &[Served], stream: UnixStream) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&stream)
        .take(64 << 10)
        .read_line(&mut line)?;
    let result = (|| -> Result<SnapshotReport> {
        let req: ControlRequest = serde_json::from_str(&line)
            .map_err(|e| Error::invalid(format!("bad control request: {e}")))?;
        let target = ObjectName::parse(&req.object)?;
        let s = served
            .iter()
            .find(|s| s.name == req.volume && s.kind == "volume" && !s.read_only)
            .ok_or_else(|| {
                Error::invalid(format!("'{}' is not served read-write here", req.volume))
            })?;
        match req.op.as_str() {
            "snapshot" => s.snapshot(&target),
            op => Err(Error::invalid(format!("unknown control operation '{op}'"))),
        }
    })();
    let reply = match result {
        Ok(r) => ControlReply {
            report: Some(r),
            error: None,
        },
        Err(e) => ControlReply {
            report: None,
            error: Some(e.to_string()),
        },
    };
    let mut out = serde_json::to_vec(&reply).expect("reply serializes");
    out.push(b'\n');
    (&stream).write_all(&out)
}
