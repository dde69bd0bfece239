//! Unit tests of the catalog on a real PostgreSQL server (`ARCH_TEST_CATALOG`; each test
//! says so and returns without one): queries stream through cursors inside and outside
//! transactions, nest on one connection, stop early, and a write started while a query
//! streams in its own transaction commits by itself.

use super::cursor::{FETCH_ROWS, TxState};
use super::*;
use crate::repo::config::Config;
use crate::repo::records::tests::object;

/// A schema of its own on the test server, dropped at the end.
struct Scratch {
    url: CatalogUrl,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut c) = pg::connect(&self.url) {
            let _ = c.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.url.schema));
        }
    }
}

fn pg_db(test: &str) -> Option<(Scratch, Db)> {
    let Some(base) = std::env::var("ARCH_TEST_CATALOG")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        eprintln!("{test} not run: set ARCH_TEST_CATALOG (a PostgreSQL server)");
        return None;
    };
    let url = CatalogUrl::parse(&format!("{base}?schema=u_{test}_{}", std::process::id())).unwrap();
    let scratch = Scratch { url: url.clone() };
    pg::create_or_join(&url, &Config::new(4096).unwrap(), None).unwrap();
    let db = Db::open_pg(&url, 4096, None).unwrap();
    Some((scratch, db))
}

fn state(db: &Db) -> TxState {
    match &db.conn {
        Conn::Pg(c) => c.state(),
        Conn::Sqlite(_) => panic!("a PostgreSQL catalog"),
    }
}

/// `n` objects `c/o00001`.. copied from one put, in one statement per table.
fn fill(db: &Db, n: i64) {
    db.write(|db| db.put_object("c/o00000", &object())).unwrap();
    let uuid = "lpad(to_hex(g), 8, '0') || substr(uuid, 9)";
    db.write(|db| {
        db.execute(
            &format!(
                "INSERT INTO versions (uuid, version, bytes, hash, map, block_size, \
                 content_type, meta, modified) SELECT {uuid}, version, bytes, hash, map, \
                 block_size, content_type, meta, modified FROM versions, \
                 generate_series(1, ?1::bigint) g"
            ),
            &[Arg::Int(n)],
        )?;
        db.execute(
            &format!(
                "INSERT INTO objects (uuid, container, name, version, created) SELECT {uuid}, \
                 container, 'o' || lpad(g::text, 5, '0'), version, created FROM objects, \
                 generate_series(1, ?1::bigint) g"
            ),
            &[Arg::Int(n)],
        )
    })
    .unwrap();
}

#[test]
fn pg_listings_stream_through_cursors_and_nest() {
    let Some((_s, db)) = pg_db("stream") else {
        return;
    };
    let total = 2 * FETCH_ROWS + 5;
    fill(&db, total as i64 - 1);
    // Outside a transaction: the query's own; a lookup inside the callback is a nested
    // cursor on the same connection, in the same snapshot.
    let mut seen = Vec::new();
    db.for_each_object(&ObjectFilter::default(), &mut |name, rec| {
        if seen.len() % 700 == 0 {
            assert_eq!(db.object(&name)?.map(|r| r.uuid), Some(rec.uuid));
            assert_eq!(state(&db), TxState::Streaming);
        }
        seen.push(name);
        Ok(true)
    })
    .unwrap();
    assert_eq!(state(&db), TxState::Idle);
    let expect: Vec<String> = (0..total).map(|i| format!("c/o{i:05}")).collect();
    assert_eq!(seen, expect);
    // Inside a read transaction, and stopping early.
    let n = db
        .read(|db| {
            let mut n = 0;
            db.for_each_version(None, &mut |_, _| {
                n += 1;
                Ok(n < FETCH_ROWS + 1)
            })?;
            assert_eq!(state(db), TxState::Open);
            Ok(n)
        })
        .unwrap();
    assert_eq!(n, FETCH_ROWS + 1);
    assert_eq!(state(&db), TxState::Idle);
    // A failing callback ends the query's transaction; the connection goes on.
    let err = db
        .for_each_object(&ObjectFilter::default(), &mut |_, _| {
            Err(Error::invalid("stop here"))
        })
        .unwrap_err();
    assert!(err.to_string().contains("stop here"), "{err}");
    assert_eq!(state(&db), TxState::Idle);
    assert!(db.has_object("c/o00007").unwrap());
}

#[test]
fn pg_a_write_inside_a_streaming_query_commits_on_its_own() {
    let Some((_s, db)) = pg_db("write_beside") else {
        return;
    };
    fill(&db, 9);
    let mut seen = 0;
    db.for_each_object(&ObjectFilter::default(), &mut |_, rec| {
        if seen == 0 {
            let mut other = rec.clone();
            other.uuid = "ffffffff-0000-4000-8000-000000000000".into();
            // Runs on another connection: this one streams in its own transaction.
            db.write(|db| db.put_object("z/new", &other))?;
        }
        seen += 1;
        Ok(true)
    })
    .unwrap();
    // The listing kept its snapshot (z/new would sort last); the write is committed.
    assert_eq!(seen, 10);
    assert!(db.has_object("z/new").unwrap());
}
