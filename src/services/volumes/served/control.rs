//! How `arch snapshot` of a volume served read-write asks its server to take the snapshot,
//! one JSON request and one JSON reply: on the server's machine through its control socket
//! (`REPO/run/arch-serve-PID.ctl`), from another host through the server's channel in the
//! PostgreSQL catalog ([`relay`](super::relay)).

use super::super::SnapshotReport;
use super::{Served, ServerInfo};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::services::names::ObjectName;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

/// A request on a server's control socket (one JSON line; the answer is one JSON line).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ControlRequest {
    pub op: String,
    pub volume: String,
    pub object: String,
    /// Where the answer goes, for a request through the catalog (a channel of
    /// [`crate::repo::db::pg::notify`]); None on the control socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ControlReply {
    pub report: Option<SnapshotReport>,
    pub error: Option<String>,
}

/// How long `arch snapshot` waits for the server's answer.
const CONTROL_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Asks the server of volume `name` (id `id`) to snapshot it as `target` (waits for it).
pub fn snapshot_by_server(
    repo: &Repository,
    id: &str,
    server: &ServerInfo,
    name: &str,
    target: &ObjectName,
) -> Result<SnapshotReport> {
    let request = ControlRequest {
        op: "snapshot".into(),
        volume: name.to_string(),
        object: target.full(),
        reply_to: None,
    };
    let elsewhere = server
        .machine
        .as_ref()
        .is_some_and(|m| *m != super::this_machine());
    let reply = match (&server.control, elsewhere) {
        // Its control socket is a Unix socket: reachable from its own machine only.
        (Some(control), false) => ask_on_socket(control, server, name, &request)?,
        _ => match (&server.relay, repo.catalog_url()) {
            (Some(channel), Some(url)) => {
                super::relay::ask(repo, url, id, channel, server, name, request)?
            }
            _ => return Err(unreachable(server, name, target, elsewhere)),
        },
    };
    match (reply.report, reply.error) {
        (Some(r), _) => Ok(r),
        (None, e) => Err(Error::invalid(format!(
            "snapshot of volume '{name}' by its server ({}): {}",
            server.describe(),
            e.unwrap_or_default()
        ))),
    }
}

/// The refusal when neither the control socket nor a catalog channel reaches the server.
fn unreachable(server: &ServerInfo, name: &str, target: &ObjectName, elsewhere: bool) -> Error {
    let fix = if elsewhere {
        format!(
            "it runs on another machine and takes no requests through the catalog, so only it \
             can snapshot the volume: run `arch snapshot {name} {}` on {} (in a directory of \
             this repository there), or stop the server first",
            target.full(),
            server.host
        )
    } else {
        "that server takes no snapshot requests; stop it first".into()
    };
    Error::Served {
        name: name.to_string(),
        server: server.describe(),
        fix,
    }
}

/// The error when a server ended (or answered nonsense) before its reply.
pub(super) fn ended(server: &ServerInfo, name: &str) -> Error {
    Error::Busy {
        resource: format!(
            "the server of volume '{name}' ({}) ended during the snapshot, so it",
            server.describe()
        ),
    }
}

fn ask_on_socket(
    control: &std::path::Path,
    server: &ServerInfo,
    name: &str,
    request: &ControlRequest,
) -> Result<ControlReply> {
    let io = |e| Error::io("talk to the server through", control, e);
    let mut stream = UnixStream::connect(control).map_err(io)?;
    // A server that stopped answering (stopped with SIGSTOP, deadlocked) does not hang the
    // snapshot command for good: the request goes out within seconds, the answer (a flush
    // and a snapshot of the volume's map) within minutes.
    stream
        .set_write_timeout(Some(std::time::Duration::from_secs(10)))
        .and_then(|()| stream.set_read_timeout(Some(CONTROL_ANSWER_TIMEOUT)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(request).expect("request serializes");
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    crate::interrupt::check()?;
    serde_json::from_str(&answer).map_err(|_| ended(server, name))
}

/// Answers one request on the control socket: `stream` carries a JSON line naming one of
/// `served`.
pub fn answer_control(served: &[Served], stream: UnixStream) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&stream)
        .take(64 << 10)
        .read_line(&mut line)?;
    let reply = answer(served, &line);
    let mut out = serde_json::to_vec(&reply).expect("reply serializes");
    out.push(b'\n');
    (&stream).write_all(&out)
}

/// The reply to request `text` (JSON) about one of `served`.
pub(super) fn answer(served: &[Served], text: &str) -> ControlReply {
    let result = (|| -> Result<SnapshotReport> {
        let req: ControlRequest = serde_json::from_str(text)
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
    match result {
        Ok(r) => ControlReply {
            report: Some(r),
            error: None,
        },
        Err(e) => ControlReply {
            report: None,
            error: Some(e.to_string()),
        },
    }
}
