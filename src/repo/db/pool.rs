//! Idle PostgreSQL catalog connections of this process, reused by the next [`super::Db`]
//! on the same catalog: a command opens the catalog many times, and a new connection costs
//! a round trip and an authentication each time.
//!
//! Invariant: a connection is put back only outside a transaction (every [`super::Db`]
//! transaction ends in COMMIT or ROLLBACK before it returns) and only while it is open; a
//! connection the server closed (restart, idle timeout) is dropped, not reused.

use super::pg::CatalogUrl;
use postgres::Client;
use std::sync::Mutex;

/// At most this many idle connections are kept.
const MAX_IDLE: usize = 4;

static IDLE: Mutex<Vec<(String, Client)>> = Mutex::new(Vec::new());

/// An idle connection to `url`, if there is one.
pub fn take(url: &CatalogUrl) -> Option<Client> {
    let key = url.to_string();
    let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
    while let Some(i) = idle.iter().position(|(k, _)| *k == key) {
        let (_, client) = idle.swap_remove(i);
        if !client.is_closed() {
            return Some(client);
        }
    }
    None
}

/// Keeps `client` for the next catalog opened on `url`.
pub fn put_back(url: &CatalogUrl, client: Client) {
    if client.is_closed() {
        return;
    }
    let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
    if idle.len() < MAX_IDLE {
        idle.push((url.to_string(), client));
    }
}
