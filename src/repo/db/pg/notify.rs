//! Messages between hosts of a repository whose catalog is on PostgreSQL, through its
//! LISTEN/NOTIFY channels: an `arch serve` on one host takes requests (a snapshot of a
//! volume it serves) from `arch` on another, which no Unix socket reaches.
//!
//! Invariants: a channel is named at random per listener (`arch_<32 hex>`), so two
//! repositories, servers or requests never share one; a notification reaches only the
//! sessions that were listening when it was sent, so a listener listens *before* it tells
//! anyone its channel. Payloads are at most [`MAX_PAYLOAD`] bytes (PostgreSQL's limit is
//! 8000).

use super::{CatalogUrl, connect, error};
use crate::error::{Error, Result};
use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;
use std::time::Duration;

/// The longest payload sent (PostgreSQL refuses more than 7999 bytes).
pub const MAX_PAYLOAD: usize = 7900;

/// Whether `name` is a channel [`Inbox::open`] makes: `arch_` and 32 lowercase hex digits.
pub fn is_channel(name: &str) -> bool {
    name.strip_prefix("arch_").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// A connection listening on a channel of its own.
pub struct Inbox {
    client: Client,
    url: CatalogUrl,
    channel: String,
}

impl Inbox {
    /// Connects and listens on a new channel; once this returns, notifications sent to
    /// [`Inbox::channel`] are kept for [`Inbox::next`].
    pub fn open(url: &CatalogUrl) -> Result<Inbox> {
        let mut client = connect(url)?;
        let channel = format!("arch_{}", uuid::Uuid::new_v4().simple());
        // The name is ours and plain (checked by is_channel): no quoting needed.
        debug_assert!(is_channel(&channel));
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .map_err(|e| error(url, e))?;
        Ok(Inbox {
            client,
            url: url.clone(),
            channel,
        })
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next payload sent to this channel, waiting at most `wait`; None when none came.
    /// A connection lost to the server is an error (nothing more can arrive).
    pub fn next(&mut self, wait: Duration) -> Result<Option<String>> {
        let got = self.client.notifications().timeout_iter(wait).next();
        match got {
            Ok(Some(n)) => Ok(Some(n.payload().to_string())),
            Ok(None) if self.client.is_closed() => Err(Error::Catalog {
                target: super::target(&self.url),
                reason: "the connection was closed while waiting for an answer".into(),
                fix: super::unreachable_fix(&self.url),
            }),
            Ok(None) => Ok(None),
            Err(e) => Err(error(&self.url, e)),
        }
    }

    /// Sends `payload` to `channel` on this inbox's connection.
    pub fn send(&mut self, channel: &str, payload: &str) -> Result<()> {
        send_on(&mut self.client, &self.url, channel, payload)
    }
}

/// Sends `payload` to `channel` (refused when longer than [`MAX_PAYLOAD`]).
fn send_on(client: &mut Client, url: &CatalogUrl, channel: &str, payload: &str) -> Result<()> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Error::invalid(format!(
            "a message of {} bytes between hosts is longer than the {MAX_PAYLOAD} bytes the \
             catalog carries",
            payload.len()
        )));
    }
    client
        .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .map_err(|e| error(url, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_channel_names_pass() {
        assert!(is_channel(&format!("arch_{}", "0a".repeat(16))));
        for bad in [
            "arch_",
            "arch_0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A",
            "arch_0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
            "arch_0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0; DROP TABLE objects",
            "other_0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a",
        ] {
            assert!(!is_channel(bad), "{bad}");
        }
    }
}
