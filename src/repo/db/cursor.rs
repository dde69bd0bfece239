//! A PostgreSQL connection of the catalog that streams query results: each query runs
//! through a server-side cursor (`DECLARE ... NO SCROLL CURSOR`, then `FETCH FORWARD n`), so
//! a listing holds at most [`FETCH_ROWS`] rows in this process however large the catalog.
//!
//! Invariants:
//! - A cursor lives in a transaction. Inside one that [`super::Db`] opened (`read`/`write`)
//!   the cursor is declared there, so it sees that transaction's own writes and snapshot. A
//!   query outside any transaction opens its own (`REPEATABLE READ READ ONLY`: one snapshot
//!   for the whole listing, as a single statement would see) and ends it before returning.
//! - No borrow of the client is held while the row callback runs: the callback may query
//!   the same connection (a nested cursor in the same transaction). A callback that starts a
//!   transaction while a query runs in its own transaction gets a sibling connection
//!   (see `Db::sibling`), since that transaction must commit on its own.
//! - Every cursor is closed before the query returns (or ends with its transaction), so a
//!   long transaction does not collect them; a connection is reused (pool) only when no
//!   transaction is open on it.

use super::conn::{EngineError, QueryError, Row, Value, pg_args, pg_placeholders, pg_refs};
use crate::error::Result;
use postgres::Client;
use std::cell::{Cell, RefCell};

/// Rows fetched from the server at a time: the most a query holds in memory.
pub const FETCH_ROWS: usize = 1000;

/// Where a connection stands with respect to transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// No transaction open.
    Idle,
    /// In a transaction [`super::Db`] opened.
    Open,
    /// In a transaction a query opened for its own cursor.
    Streaming,
    /// A transaction end failed: the connection's state is unknown (never reused).
    Unknown,
}

/// A PostgreSQL client whose `search_path` is the repository's schema, with its
/// transaction state.
pub struct PgConn {
    client: RefCell<Client>,
    state: Cell<TxState>,
    /// Cursors declared so far (their names are unique on the connection).
    cursors: Cell<u64>,
}

fn pg(e: postgres::Error) -> QueryError {
    QueryError::Engine(EngineError::Pg(e))
}

/// Feeds the rows of a result to `deliver`, `batch` at a time: `fetch(batch)` returns at
/// most `batch` more rows (fewer: the end of the result). At most one batch is held at
/// once; nothing more is fetched after `deliver` returns false.
pub fn stream_batches<R>(
    batch: usize,
    fetch: &mut dyn FnMut(usize) -> std::result::Result<Vec<R>, QueryError>,
    deliver: &mut dyn FnMut(R) -> std::result::Result<bool, QueryError>,
) -> std::result::Result<(), QueryError> {
    loop {
        let rows = fetch(batch)?;
        let last = rows.len() < batch;
        for row in rows {
            if !deliver(row)? {
                return Ok(());
            }
        }
        if last {
            return Ok(());
        }
    }
}

impl PgConn {
    pub fn new(client: Client) -> PgConn {
        PgConn {
            client: RefCell::new(client),
            state: Cell::new(TxState::Idle),
            cursors: Cell::new(0),
        }
    }

    /// The client, for a statement that needs no cursor (the borrow ends with the caller's
    /// expression).
    pub fn client(&self) -> std::cell::RefMut<'_, Client> {
        self.client.borrow_mut()
    }

    pub fn state(&self) -> TxState {
        self.state.get()
    }

    /// The client, when it may be reused: no transaction is open on it.
    pub fn into_reusable(self) -> Option<Client> {
        (self.state.get() == TxState::Idle).then(|| self.client.into_inner())
    }

    /// Runs `BEGIN ...` (`begin`), `COMMIT` or `ROLLBACK` for [`super::Db`], keeping the
    /// transaction state.
    pub fn begin(&self, begin: &str) -> std::result::Result<(), postgres::Error> {
        self.client.borrow_mut().batch_execute(begin)?;
        self.state.set(TxState::Open);
        Ok(())
    }

    pub fn end(&self, sql: &str) -> std::result::Result<(), postgres::Error> {
        let ended = self.client.borrow_mut().batch_execute(sql);
        self.state.set(if ended.is_ok() {
            TxState::Idle
        } else {
            TxState::Unknown
        });
        ended
    }

    /// Runs a query and passes each row to `f` in order until it returns false, fetching
    /// [`FETCH_ROWS`] rows at a time through a cursor.
    pub fn query(
        &self,
        sql: &str,
        args: &[super::conn::Arg<'_>],
        f: &mut dyn FnMut(Row<'_>) -> Result<bool>,
    ) -> std::result::Result<(), QueryError> {
        let own = self.state.get() == TxState::Idle;
        if own {
            self.client
                .borrow_mut()
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .map_err(pg)?;
            self.state.set(TxState::Streaming);
        }
        let n = self.cursors.get();
        self.cursors.set(n + 1);
        let cursor = format!("arch_rows_{n}");
        let out = self.stream(&cursor, sql, args, f);
        let end = if own {
            // Ending the transaction closes the cursor; a read-only one has nothing to keep.
            self.end(if out.is_ok() { "COMMIT" } else { "ROLLBACK" })
        } else {
            // In a failed transaction the cursor is gone with it (and CLOSE fails): ignored.
            let closed = self
                .client
                .borrow_mut()
                .batch_execute(&format!("CLOSE {cursor}"));
            if out.is_ok() { closed } else { Ok(()) }
        };
        out?;
        end.map_err(pg)
    }

    fn stream(
        &self,
        cursor: &str,
        sql: &str,
        args: &[super::conn::Arg<'_>],
        f: &mut dyn FnMut(Row<'_>) -> Result<bool>,
    ) -> std::result::Result<(), QueryError> {
        let owned = pg_args(args);
        let refs = pg_refs(&owned);
        let declare = format!(
            "DECLARE {cursor} NO SCROLL CURSOR FOR {}",
            pg_placeholders(sql)
        );
        self.client
            .borrow_mut()
            .execute(declare.as_str(), &refs)
            .map_err(pg)?;
        let fetch = self
            .client
            .borrow_mut()
            .prepare(&format!("FETCH FORWARD {FETCH_ROWS} FROM {cursor}"))
            .map_err(pg)?;
        let names: Vec<String> = fetch
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        stream_batches(
            FETCH_ROWS,
            &mut |_| {
                let rows = self.client.borrow_mut().query(&fetch, &[]).map_err(pg)?;
                Ok(rows
                    .iter()
                    .map(|r| (0..names.len()).map(|i| pg_value(r, i)).collect())
                    .collect::<Vec<Vec<Value>>>())
            },
            &mut |values| super::conn::deliver(&names, values, f),
        )
    }
}

/// Column `i` of `row` as a [`Value`].
fn pg_value(row: &postgres::Row, i: usize) -> Value {
    use postgres::types::Type;
    let ty = row.columns()[i].type_();
    let got = if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)
            .map(|v| v.map_or(Value::Null, Value::Int))
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)
            .map(|v| v.map_or(Value::Null, |n| Value::Int(n.into())))
    } else if [
        Type::TEXT,
        Type::VARCHAR,
        Type::UNKNOWN,
        Type::BPCHAR,
        Type::NAME,
    ]
    .contains(ty)
    {
        row.try_get::<_, Option<String>>(i)
            .map(|v| v.map_or(Value::Null, Value::Text))
    } else {
        return Value::Other;
    };
    got.unwrap_or(Value::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result of `total` rows served by a fake server: counts fetches and the most rows
    /// handed out at once.
    fn run(total: usize, stop_after: Option<usize>) -> (Vec<usize>, usize, usize) {
        let mut next = 0usize;
        let mut fetches = 0usize;
        let mut biggest = 0usize;
        let mut seen = Vec::new();
        stream_batches(
            FETCH_ROWS,
            &mut |n| {
                fetches += 1;
                let end = (next + n).min(total);
                let rows: Vec<usize> = (next..end).collect();
                next = end;
                biggest = biggest.max(rows.len());
                Ok(rows)
            },
            &mut |row| {
                seen.push(row);
                Ok(stop_after.is_none_or(|s| seen.len() < s))
            },
        )
        .unwrap();
        (seen, fetches, biggest)
    }

    #[test]
    fn rows_come_in_order_a_batch_at_a_time() {
        let total = 2 * FETCH_ROWS + 17;
        let (seen, fetches, biggest) = run(total, None);
        assert_eq!(seen, (0..total).collect::<Vec<_>>());
        assert_eq!(fetches, 3);
        assert_eq!(biggest, FETCH_ROWS);
    }

    #[test]
    fn an_exact_multiple_needs_one_empty_fetch_to_see_the_end() {
        let (seen, fetches, _) = run(2 * FETCH_ROWS, None);
        assert_eq!(seen.len(), 2 * FETCH_ROWS);
        assert_eq!(fetches, 3);
        let (seen, fetches, _) = run(0, None);
        assert!(seen.is_empty());
        assert_eq!(fetches, 1);
    }

    #[test]
    fn nothing_more_is_fetched_once_the_callback_stops() {
        let (seen, fetches, _) = run(10 * FETCH_ROWS, Some(FETCH_ROWS + 1));
        assert_eq!(seen.len(), FETCH_ROWS + 1);
        assert_eq!(fetches, 2);
    }

    #[test]
    fn errors_of_the_fetch_and_of_the_callback_stop_the_stream() {
        let mut fetches = 0;
        let err = stream_batches(
            2,
            &mut |_| {
                fetches += 1;
                Ok(vec![1, 2])
            },
            &mut |_| Err(QueryError::Caller(crate::error::Error::invalid("stop"))),
        );
        assert!(matches!(err, Err(QueryError::Caller(_))));
        assert_eq!(fetches, 1);
    }
}
