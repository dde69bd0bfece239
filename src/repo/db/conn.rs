//! The two catalog engines behind one small surface: run a statement, run a query and see
//! its rows as engine-neutral [`Value`]s. SQL is written once, in SQLite's `?N` placeholder
//! style; for PostgreSQL the placeholders become `$N` (no statement holds a literal `?`).
//!
//! Why an enum and not a trait: the set of engines is closed (embedded SQLite, shared
//! PostgreSQL), the row decoding and validation above are shared, and a `Db` stays a plain
//! value that needs no boxing or generics in the services.

use super::cursor::PgConn;
use crate::error::{Error, Result};

/// One column value as read: the only types the catalog schema uses, plus what a damaged
/// database may hold instead.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    /// Text that is not UTF-8 (SQLite only).
    BadText,
    /// Any other type (real, blob, ...).
    Other,
}

/// One statement argument.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(s)
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Text(s)
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(s: &'a Option<String>) -> Self {
        s.as_deref().map_or(Arg::Null, Arg::Text)
    }
}
impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Int(n)
    }
}
impl From<u32> for Arg<'_> {
    fn from(n: u32) -> Self {
        Arg::Int(n as i64)
    }
}

/// A row being read: its values and the names of its columns (for messages).
pub struct Row<'a> {
    pub names: &'a [String],
    pub values: Vec<Value>,
}

impl Row<'_> {
    pub fn get(&self, i: usize) -> &Value {
        self.values.get(i).unwrap_or(&Value::Other)
    }
    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("?", |s| s.as_str())
    }
}

/// A connection to one of the engines.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    /// A client whose `search_path` is the repository's schema; queries stream through
    /// cursors.
    Pg(Box<PgConn>),
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            Arg::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Arg::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(n)),
            Arg::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// `?N` placeholders as PostgreSQL's `$N`.
pub fn pg_placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Value::Text(s.to_string()),
            Err(_) => Value::BadText,
        },
        _ => Value::Other,
    }
}

impl Conn {
    /// Runs several statements without arguments.
    pub fn batch(&self, sql: &str) -> std::result::Result<(), EngineError> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(EngineError::Sqlite),
            Conn::Pg(c) => c.client().batch_execute(sql).map_err(EngineError::Pg),
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, args: &[Arg<'_>]) -> std::result::Result<u64, EngineError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql).map_err(EngineError::Sqlite)?;
                st.execute(rusqlite::params_from_iter(args.iter()))
                    .map(|n| n as u64)
                    .map_err(EngineError::Sqlite)
            }
            Conn::Pg(c) => {
                let owned = pg_args(args);
                let refs = pg_refs(&owned);
                c.client()
                    .execute(pg_placeholders(sql).as_str(), &refs)
                    .map_err(EngineError::Pg)
            }
        }
    }

    /// Opens a transaction with `begin` (`BEGIN ...`).
    pub fn begin(&self, begin: &str) -> std::result::Result<(), EngineError> {
        match self {
            Conn::Sqlite(_) => self.batch(begin),
            Conn::Pg(c) => c.begin(begin).map_err(EngineError::Pg),
        }
    }

    /// Ends the open transaction with `end` (`COMMIT` or `ROLLBACK`).
    pub fn end(&self, end: &str) -> std::result::Result<(), EngineError> {
        match self {
            Conn::Sqlite(_) => self.batch(end),
            Conn::Pg(c) => c.end(end).map_err(EngineError::Pg),
        }
    }

    /// Runs a query and passes each row to `f` in order until it returns false. `f` gets
    /// an engine error through `Err(Ok(..))` and its own errors through `Err(Err(..))`.
    /// Rows are read as `f` takes them: SQLite steps the statement, PostgreSQL fetches
    /// through a cursor ([`super::cursor`]); neither holds the whole result.
    pub fn query(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        f: &mut dyn FnMut(Row<'_>) -> Result<bool>,
    ) -> std::result::Result<(), QueryError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql).map_err(engine_sqlite)?;
                let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
                let mut rows = st
                    .query(rusqlite::params_from_iter(args.iter()))
                    .map_err(engine_sqlite)?;
                while let Some(row) = rows.next().map_err(engine_sqlite)? {
                    let values = (0..names.len())
                        .map(|i| row.get_ref(i).map_or(Value::Other, sqlite_value))
                        .collect();
                    if !deliver(&names, values, f)? {
                        break;
                    }
                }
                Ok(())
            }
            Conn::Pg(c) => c.query(sql, args, f),
        }
    }
}

/// Hands one row (column `names`, `values`) to the row callback `f` of either engine;
/// false when `f` wants no more rows.
pub fn deliver(
    names: &[String],
    values: Vec<Value>,
    f: &mut dyn FnMut(Row<'_>) -> Result<bool>,
) -> std::result::Result<bool, QueryError> {
    f(Row { names, values }).map_err(QueryError::Caller)
}

fn engine_sqlite(e: rusqlite::Error) -> QueryError {
    QueryError::Engine(EngineError::Sqlite(e))
}

/// A failure of the engine itself.
#[derive(Debug)]
pub enum EngineError {
    Sqlite(rusqlite::Error),
    Pg(postgres::Error),
}

/// A failure of a query: the engine's, or the row callback's.
#[derive(Debug)]
pub enum QueryError {
    Engine(EngineError),
    Caller(Error),
}

pub enum PgArg {
    Null(Option<String>),
    Int(i64),
    Text(String),
}

pub fn pg_args(args: &[Arg<'_>]) -> Vec<PgArg> {
    args.iter()
        .map(|a| match *a {
            Arg::Null => PgArg::Null(None),
            Arg::Int(n) => PgArg::Int(n),
            Arg::Text(s) => PgArg::Text(s.to_string()),
        })
        .collect()
}

pub fn pg_refs(owned: &[PgArg]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    owned
        .iter()
        .map(|a| match a {
            PgArg::Null(n) => n as &(dyn postgres::types::ToSql + Sync),
            PgArg::Int(n) => n as _,
            PgArg::Text(s) => s as _,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            pg_placeholders("SELECT 1 FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT 1 FROM t WHERE a = $1 AND b = $12"
        );
    }

    #[test]
    fn sqlite_values_keep_their_kind() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let conn = Conn::Sqlite(c);
        let mut seen = Vec::new();
        conn.query(
            "SELECT NULL, 7, 'x', CAST(x'ff' AS TEXT), 1.5, ?1",
            &[Arg::Text("arg")],
            &mut |row| {
                assert_eq!(row.name(1), "7");
                seen = row.values;
                Ok(true)
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            vec![
                Value::Null,
                Value::Int(7),
                Value::Text("x".into()),
                Value::BadText,
                Value::Other,
                Value::Text("arg".into())
            ]
        );
    }
}
