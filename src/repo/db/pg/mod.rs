//! The catalog on PostgreSQL (docs/FORMAT.md "Catalog on PostgreSQL"): connecting (with
//! the password from PGPASSWORD or ~/.pgpass, retried with backoff), the schema of one
//! repository (SQLite's, translated), its identity row, creating or joining it, and the
//! advisory lock keys.
//!
//! Invariants: one repository per PostgreSQL schema; the schema is made, filled and given
//! its `repository` row in one transaction under an advisory lock, so two hosts running
//! `arch init --catalog` at once end with one repository, which both use.

pub mod advisory;
pub mod notify;
pub mod pgpass;
pub mod servers;
pub mod url;

use crate::error::{Error, Result};
use crate::repo::config::{Config, FORMAT_LOOSE, FORMAT_VERSION};
use crate::repo::db::schema::{CATALOG_DB_VERSION, SCHEMA};
use postgres::{Client, NoTls};
use std::time::Duration;
pub use url::CatalogUrl;

/// The identity row's table: exactly one row, written when the repository is created.
const REPOSITORY_TABLE: &str = "
CREATE TABLE repository (
    id              INTEGER     NOT NULL PRIMARY KEY CHECK (id = 1),
    format          INTEGER     NOT NULL,
    catalog_version INTEGER     NOT NULL,
    block_size      BIGINT      NOT NULL,
    hash            VARCHAR(16) NOT NULL,
    store           TEXT,
    created_at      VARCHAR(64) NOT NULL
);
";

/// SQLite's catalog schema as PostgreSQL DDL: every integer is `BIGINT` (SQLite integers
/// are 64-bit) and every text column compares byte-wise (`COLLATE "C"`, SQLite's BINARY),
/// so listings come out in the same order on both engines.
pub fn pg_schema(sqlite: &str) -> String {
    let mut out = String::with_capacity(sqlite.len() + 256);
    let mut rest = sqlite;
    while let Some(i) = rest.find(|c: char| c.is_ascii_uppercase()) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let word_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let word = &rest[..word_end];
        match word {
            "INTEGER" => {
                out.push_str("BIGINT");
                rest = &rest[word_end..];
            }
            "TEXT" => {
                out.push_str("TEXT COLLATE \"C\"");
                rest = &rest[word_end..];
            }
            "VARCHAR" => {
                let close = rest.find(')').map_or(rest.len(), |c| c + 1);
                out.push_str(&rest[..close]);
                out.push_str(" COLLATE \"C\"");
                rest = &rest[close..];
            }
            _ => {
                out.push_str(word);
                rest = &rest[word_end..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Where the catalog is, for messages: the URL without credentials.
pub fn target(url: &CatalogUrl) -> String {
    url.to_string()
}

fn unreachable_fix(url: &CatalogUrl) -> String {
    format!(
        "check that PostgreSQL runs on {}:{} and accepts connections (pg_isready -h {} -p {}), \
         then retry",
        url.host, url.port, url.host, url.port
    )
}

/// A PostgreSQL failure on the catalog at `url` as a repository error.
pub fn error(url: &CatalogUrl, e: postgres::Error) -> Error {
    use postgres::error::SqlState;
    let Some(db) = e.as_db_error() else {
        let mut reason = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            reason = format!("{reason}: {c}");
            cause = c.source();
        }
        return Error::Catalog {
            target: target(url),
            reason,
            fix: unreachable_fix(url),
        };
    };
    let code = db.code();
    if *code == SqlState::QUERY_CANCELED
        && let Err(interrupted) = crate::interrupt::check()
    {
        return interrupted;
    }
    let fix = if *code == SqlState::INVALID_PASSWORD
        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        format!(
            "set PGPASSWORD, or add the line {}:{}:{}:{}:PASSWORD to ~/.pgpass (mode 0600)",
            url.host, url.port, url.dbname, url.user
        )
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        format!(
            "create the database first (createdb -h {} -p {} -O {} {})",
            url.host, url.port, url.user, url.dbname
        )
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        format!(
            "grant user {} CREATE on database {} (or create schema {} for it)",
            url.user, url.dbname, url.schema
        )
    } else if [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
    ]
    .contains(code)
    {
        unreachable_fix(url)
    } else {
        "see the PostgreSQL server log for the cause, then retry".to_string()
    };
    Error::Catalog {
        target: target(url),
        reason: format!("{} ({})", db.message(), code.code()),
        fix,
    }
}

/// True for a failure a moment later may not have: no connection, or a server starting up,
/// shutting down or full.
fn transient(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    match e.as_db_error() {
        None => true,
        Some(db) => [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(db.code()),
    }
}

/// Delays between connection attempts: about 3 s in all before a failure is reported.
const BACKOFF_MS: &[u64] = &[50, 100, 200, 400, 800, 1600];

/// Opens a connection to the catalog database, retried with backoff while the server cannot
/// be reached; `search_path` is the repository's schema.
pub fn connect(url: &CatalogUrl) -> Result<Client> {
    let mut cfg = postgres::Config::new();
    cfg.user(&url.user)
        .host(&url.host)
        .port(url.port)
        .dbname(&url.dbname)
        .application_name("arch")
        .connect_timeout(Duration::from_secs(
            std::env::var("PGCONNECT_TIMEOUT")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(10),
        ));
    if let Some(pw) = pgpass::password(&url.host, url.port, &url.dbname, &url.user) {
        cfg.password(pw);
    }
    let mut delays = BACKOFF_MS.iter();
    loop {
        match cfg.connect(NoTls) {
            Ok(mut client) => {
                client
                    .batch_execute(&format!("SET search_path TO \"{}\"", url.schema))
                    .map_err(|e| error(url, e))?;
                return Ok(client);
            }
            Err(e) => match delays.next() {
                Some(ms) if transient(&e) => {
                    crate::interrupt::check()?;
                    std::thread::sleep(Duration::from_millis(*ms));
                }
                _ => return Err(error(url, e)),
            },
        }
    }
}

/// The identity row of a repository's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub format: u32,
    pub catalog_version: i64,
    pub block_size: u64,
    pub store: Option<String>,
    pub created_at: String,
}

fn read_identity(client: &mut Client, url: &CatalogUrl) -> Result<Option<Identity>> {
    let rows = client
        .query(
            "SELECT format, catalog_version, block_size, store, created_at FROM repository",
            &[],
        )
        .map_err(|e| error(url, e))?;
    let row = match rows.as_slice() {
        [] => return Ok(None),
        [row] => row,
        _ => {
            return Err(corrupt(url, "the repository table holds more than one row"));
        }
    };
    let get = |i: usize| -> Result<i64> {
        row.try_get::<_, i64>(i)
            .map_err(|_| corrupt(url, "the repository row has a column of the wrong type"))
    };
    Ok(Some(Identity {
        format: u32::try_from(get(0)?).unwrap_or(u32::MAX),
        catalog_version: get(1)?,
        block_size: u64::try_from(get(2)?).unwrap_or(0),
        store: row.try_get(3).map_err(|e| error(url, e))?,
        created_at: row.try_get(4).map_err(|e| error(url, e))?,
    }))
}

fn corrupt(url: &CatalogUrl, reason: &str) -> Error {
    Error::Corrupt {
        path: target(url).into(),
        reason: reason.to_string(),
    }
}

/// `size` as `--block-size` takes it (`64K`, `4M`).
fn size_arg(size: u64) -> String {
    if size % (1 << 20) == 0 {
        format!("{}M", size >> 20)
    } else {
        format!("{}K", size >> 10)
    }
}

/// Checks that `id` is a repository this arch reads, of block size `block_size`.
pub fn check_identity(url: &CatalogUrl, id: &Identity, block_size: u64) -> Result<()> {
    let unsupported = |what: String, fix: &str| Error::UnsupportedRepository {
        path: target(url).into(),
        what,
        fix: fix.into(),
    };
    if !(FORMAT_LOOSE..=FORMAT_VERSION).contains(&id.format) {
        return Err(unsupported(
            format!("format {}", id.format),
            "use the arch that created it",
        ));
    }
    if id.catalog_version != CATALOG_DB_VERSION {
        return Err(unsupported(
            format!("catalog version {}", id.catalog_version),
            "use the arch that created it",
        ));
    }
    if id.block_size != block_size {
        return Err(Error::invalid(format!(
            "the catalog at {} belongs to a repository of block size {}, not {}: join it with \
             --block-size {}, or use another ?schema= for a new repository",
            target(url),
            crate::units::format_size(id.block_size),
            crate::units::format_size(block_size),
            size_arg(id.block_size),
        )));
    }
    Ok(())
}

/// Creates the repository's catalog at `url`, or joins it when it exists. Returns true when
/// this call created it. Everything happens in one transaction under the schema's init lock.
pub fn create_or_join(url: &CatalogUrl, config: &Config, store: Option<&str>) -> Result<bool> {
    let mut client = connect(url)?;
    let e = |err| error(url, err);
    client.batch_execute("BEGIN").map_err(e)?;
    let out = (|| -> Result<bool> {
        advisory::xact_lock(&mut client, url, &advisory::key(&url.schema, "init"))?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{0}\"; SET LOCAL search_path TO \"{0}\"",
                url.schema
            ))
            .map_err(e)?;
        let tables: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                &[&url.schema],
            )
            .map_err(e)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if tables.iter().any(|t| t == "repository") {
            let id = read_identity(&mut client, url)?.ok_or_else(|| {
                corrupt(
                    url,
                    "the repository table is empty (its creation was undone?)",
                )
            })?;
            check_identity(url, &id, config.block_size)?;
            // A host must use the store the catalog's blocks are in: a joiner with another
            // store, or none, would name blocks it cannot read.
            match (&id.store, store) {
                (Some(theirs), Some(ours)) if theirs != ours => {
                    return Err(Error::invalid(format!(
                        "the catalog at {} names the store {theirs}, not {ours}: join with \
                         --store {theirs}",
                        target(url)
                    )));
                }
                (Some(theirs), None) => {
                    return Err(Error::invalid(format!(
                        "the catalog at {} keeps its blocks in the store {theirs}: join with \
                         --store {theirs} --catalog {}",
                        target(url),
                        target(url)
                    )));
                }
                (None, Some(ours)) => {
                    return Err(Error::invalid(format!(
                        "the catalog at {} keeps its blocks in its hosts' directories, not in \
                         a store: join without --store {ours}, or give this store its own \
                         catalog (another ?schema=NAME)",
                        target(url)
                    )));
                }
                _ => {}
            }
            return Ok(false);
        }
        if !tables.is_empty() {
            return Err(Error::invalid(format!(
                "schema {} of database {} holds tables that are not an arch catalog ({}); \
                 choose another schema with ?schema=NAME",
                url.schema,
                url.dbname,
                tables.join(", ")
            )));
        }
        client
            .batch_execute(&pg_schema(&format!("{SCHEMA}{REPOSITORY_TABLE}")))
            .map_err(e)?;
        client
            .execute(
                "INSERT INTO repository (id, format, catalog_version, block_size, hash, store, \
                 created_at) VALUES (1, $1, $2, $3, $4, $5, $6)",
                &[
                    &i64::from(config.format),
                    &CATALOG_DB_VERSION,
                    &(config.block_size as i64),
                    &config.hash,
                    &store,
                    &crate::time::now_rfc3339(),
                ],
            )
            .map_err(e)?;
        Ok(true)
    })();
    match out {
        Ok(created) => {
            client.batch_execute("COMMIT").map_err(e)?;
            Ok(created)
        }
        Err(err) => {
            let _ = client.batch_execute("ROLLBACK");
            Err(err)
        }
    }
}

/// Opens the catalog at `url` for a repository of `block_size` whose blocks are in `store`
/// (arch.toml's `store`; None: each host's directory): refused unless its identity row says
/// it is one this arch reads, of that block size and that store.
pub fn open(url: &CatalogUrl, block_size: u64, store: Option<&str>) -> Result<Client> {
    let mut client = connect(url)?;
    let id = read_identity(&mut client, url).map_err(|err| match err {
        Error::Catalog { reason, .. } if reason.contains("42P01") => Error::Corrupt {
            path: target(url).into(),
            reason: format!(
                "schema {} holds no arch catalog (no repository table); `arch init DIR \
                 --catalog {}` creates one",
                url.schema,
                target(url)
            ),
        },
        other => other,
    })?;
    let id = id.ok_or_else(|| corrupt(url, "the repository table is empty"))?;
    check_identity(url, &id, block_size)?;
    check_store(url, id.store.as_deref(), store)?;
    Ok(client)
}

/// The same store URL, compared in its canonical form when both parse.
fn same_store(a: &str, b: &str) -> bool {
    use crate::storage::s3::StoreUrl;
    match (StoreUrl::parse(a), StoreUrl::parse(b)) {
        (Ok(a), Ok(b)) => a.to_string() == b.to_string(),
        _ => a == b,
    }
}

/// Checks arch.toml's `store` (`ours`) against the store the catalog's identity row names
/// (`theirs`): a host whose arch.toml was edited by hand, or copied from another repository,
/// would otherwise read and write blocks where this catalog's are not.
pub fn check_store(url: &CatalogUrl, theirs: Option<&str>, ours: Option<&str>) -> Result<()> {
    let (what, fix) = match (theirs, ours) {
        (Some(t), Some(o)) if !same_store(t, o) => (
            format!("the store {t}, but arch.toml names the store {o}"),
            format!("set `store = \"{t}\"` in arch.toml again"),
        ),
        (Some(t), None) => (
            format!("the store {t}, but arch.toml names no store (blocks in the directory)"),
            format!("add `store = \"{t}\"` to arch.toml again"),
        ),
        (None, Some(o)) => (
            format!("its hosts' directories for blocks, but arch.toml names the store {o}"),
            "remove the `store` line from arch.toml again".to_string(),
        ),
        _ => return Ok(()),
    };
    let join = match theirs {
        Some(t) => format!("arch init NEWDIR --store {t} --catalog {}", target(url)),
        None => format!("arch init NEWDIR --catalog {}", target(url)),
    };
    Err(Error::UnsupportedRepository {
        path: target(url).into(),
        what: format!("{what} (edited by hand, or copied from another repository)"),
        fix: format!("{fix}, or join this repository from a new directory: {join}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_other_than_the_catalogs_is_refused_naming_both_and_the_fix() {
        let url = CatalogUrl::parse("postgres://arch@db:5432/arch?schema=team").unwrap();
        check_store(&url, Some("s3://b/p"), Some("s3://b/p")).unwrap();
        check_store(&url, None, None).unwrap();
        let err = check_store(&url, Some("s3://b/p"), Some("s3://other/p"))
            .unwrap_err()
            .to_string();
        for part in [
            "s3://b/p,",
            "s3://other/p",
            "store = \"s3://b/p\"",
            "arch init NEWDIR --store s3://b/p --catalog postgres://arch@db:5432/arch?schema=team",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        let err = check_store(&url, Some("s3://b/p"), None).unwrap_err();
        assert!(matches!(err, Error::UnsupportedRepository { .. }), "{err}");
        assert!(
            err.to_string().contains("add `store = \"s3://b/p\"`"),
            "{err}"
        );
        let err = check_store(&url, None, Some("s3://b/p"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("remove the `store` line"), "{err}");
        assert!(
            err.contains("arch init NEWDIR --catalog postgres://"),
            "{err}"
        );
    }

    #[test]
    fn schema_translation_widens_integers_and_compares_bytes() {
        let pg = pg_schema("CREATE TABLE t (a INTEGER NOT NULL, b TEXT, c VARCHAR(36) UNIQUE);");
        assert_eq!(
            pg,
            "CREATE TABLE t (a BIGINT NOT NULL, b TEXT COLLATE \"C\", c VARCHAR(36) COLLATE \
             \"C\" UNIQUE);"
        );
        let full = pg_schema(SCHEMA);
        assert!(!full.contains("INTEGER"));
        assert_eq!(
            full.matches("COLLATE").count(),
            SCHEMA.matches("TEXT").count() + SCHEMA.matches("VARCHAR").count()
        );
    }
}
