//! Snapshot requests from other hosts through the PostgreSQL catalog: the server listens on a
//! channel of its own ([`Inbox`]) before it records that channel in its `servers` row, so a
//! requester that reads the row can reach it; the requester sends its request there with a
//! reply channel of its own and waits for the one reply, checking every second that the
//! same server still holds the volume's serve lock (a server that dies does not leave it
//! waiting for the full timeout).

use super::control::{ControlReply, ControlRequest, answer, ended};
use super::{Served, ServerInfo, server_of};
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::db::pg::CatalogUrl;
use crate::repo::db::pg::notify::{Inbox, is_channel};
use std::time::{Duration, Instant};

/// How often a waiting requester checks that its server is still there.
const LIVENESS_EVERY: Duration = Duration::from_secs(1);

/// How long a requester waits for the answer (a flush and a snapshot of the volume's map).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// Sends `request` to the server of volume `id` listening on `channel`; returns its reply.
pub(super) fn ask(
    repo: &Repository,
    url: &CatalogUrl,
    id: &str,
    channel: &str,
    server: &ServerInfo,
    name: &str,
    mut request: ControlRequest,
) -> Result<ControlReply> {
    if !is_channel(channel) {
        return Err(Error::Corrupt {
            path: format!("catalog table servers, volume id {id}").into(),
            reason: format!("the server's channel {channel:?} is not one arch makes"),
        });
    }
    let mut inbox = Inbox::open(url)?;
    request.reply_to = Some(inbox.channel().to_string());
    let text = serde_json::to_string(&request).expect("request serializes");
    inbox.send(channel, &text)?;
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        crate::interrupt::check()?;
        if let Some(payload) = inbox.next(LIVENESS_EVERY)? {
            return serde_json::from_str(&payload).map_err(|_| ended(server, name));
        }
        let same = server_of(repo, id)?.is_some_and(|now| {
            (now.pid, &now.host, &now.started) == (server.pid, &server.host, &server.started)
        });
        if !same {
            return Err(ended(server, name));
        }
        if Instant::now() >= deadline {
            return Err(Error::Busy {
                resource: format!(
                    "the server of volume '{name}' ({}) gave no answer within {} s, so it",
                    server.describe(),
                    ANSWER_TIMEOUT.as_secs()
                ),
            });
        }
    }
}

/// Answers requests arriving on `inbox` about `served`, one at a time, until SIGINT/SIGTERM.
/// A request without a valid reply channel is dropped; a lost catalog connection ends the
/// loop with a message (requesters then see the server gone, its serve lock having died
/// with the same server).
pub fn answer_relayed(served: &[Served], inbox: &mut Inbox) {
    while crate::interrupt::received().is_none() {
        let text = match inbox.next(Duration::from_millis(200)) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("arch serve: requests from other hosts stopped: {e}");
                return;
            }
        };
        let reply_to = serde_json::from_str::<ControlRequest>(&text)
            .ok()
            .and_then(|r| r.reply_to)
            .filter(|c| is_channel(c));
        let Some(reply_to) = reply_to else {
            eprintln!("arch serve: dropped a request from another host without a reply channel");
            continue;
        };
        let reply = answer(served, &text);
        let body = serde_json::to_string(&reply).expect("reply serializes");
        if let Err(e) = inbox.send(&reply_to, &body) {
            eprintln!("arch serve: could not answer a request from another host: {e}");
        }
    }
}
