//! Unit tests of the catalog database: records round-trip, versions are kept, renames and
//! removals carry the history, listings filter and order, and damaged rows are refused.

use super::*;
use crate::repo::catalog::Catalog as JsonCatalog;
use crate::repo::records::tests::{image, object, volume};

fn new_db(dir: &Path) -> Db {
    let path = dir.join("catalog.db");
    schema::build(&path, &JsonCatalog::default(), 4096).unwrap();
    Db::open(&path, 4096).unwrap()
}

fn uuid(n: u8) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

#[test]
fn records_round_trip_and_versions_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    let mut rec = object();
    rec.image = Some(image());
    db.write(|db| db.put_object("images/a.raw", &rec)).unwrap();
    assert_eq!(db.object("images/a.raw").unwrap(), Some(rec.clone()));
    let mut v2 = rec.clone();
    v2.version = 2;
    v2.bytes = 7;
    db.write(|db| db.put_object("images/a.raw", &v2)).unwrap();
    assert_eq!(db.object("images/a.raw").unwrap(), Some(v2.clone()));
    let mut maps = Vec::new();
    db.for_each_map_reference(&mut |_, who| {
        maps.push(who);
        Ok(())
    })
    .unwrap();
    maps.sort();
    assert_eq!(maps, ["object:images/a.raw", "object:images/a.raw@1"]);
    db.write(|db| db.rename_object("images/a.raw", "other/b"))
        .unwrap();
    assert_eq!(db.object("images/a.raw").unwrap(), None);
    assert_eq!(db.object("other/b").unwrap(), Some(v2));
    assert!(db.write(|db| db.remove_object("other/b")).unwrap());
    let mut left = 0;
    db.for_each_map_reference(&mut |_, _| {
        left += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(left, 0, "rm removes the history too");
}

#[test]
fn a_put_over_another_object_replaces_it_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    let a = object();
    let mut b = object();
    b.uuid = uuid(2);
    db.write(|db| db.put_object("c/x", &a)).unwrap();
    db.write(|db| db.put_object("c/x", &b)).unwrap();
    assert_eq!(db.object("c/x").unwrap().unwrap().uuid, b.uuid);
    let n: i64 = sqlite(&db)
        .query_row("SELECT COUNT(*) FROM versions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn listings_filter_by_container_prefix_and_marker_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    db.write(|db| {
        for (i, name) in ["c/b1", "c/a2", "c/a1", "d/a0", "c/b/x"].iter().enumerate() {
            let mut r = object();
            r.uuid = uuid(i as u8 + 1);
            db.put_object(name, &r)?;
        }
        Ok(())
    })
    .unwrap();
    let list = |filter: ObjectFilter| {
        let mut out = Vec::new();
        db.for_each_object(&filter, &mut |n, _| {
            out.push(n);
            Ok(true)
        })
        .unwrap();
        out
    };
    assert_eq!(
        list(ObjectFilter::default()),
        ["c/a1", "c/a2", "c/b/x", "c/b1", "d/a0"]
    );
    let c = Some("c".to_string());
    assert_eq!(
        list(ObjectFilter {
            container: c.clone(),
            prefix: "b".into(),
            ..Default::default()
        }),
        ["c/b/x", "c/b1"]
    );
    assert_eq!(
        list(ObjectFilter {
            container: c,
            marker: Some("a2".into()),
            ..Default::default()
        }),
        ["c/b/x", "c/b1"]
    );
}

#[test]
fn volumes_round_trip_and_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    let v = volume();
    db.write(|db| db.put_volume("vm", &v)).unwrap();
    assert_eq!(db.volume("vm").unwrap(), Some(v));
    assert!(db.has_volume("vm").unwrap());
    assert!(db.write(|db| db.remove_volume("vm")).unwrap());
    assert_eq!(db.volume("vm").unwrap(), None);
}

#[test]
fn damaged_rows_are_corrupt_errors_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    db.write(|db| db.put_volume("vm", &volume())).unwrap();
    sqlite(&db)
        .execute("UPDATE volumes SET id = '../../x'", [])
        .unwrap();
    let err = db.volume("vm").unwrap_err().to_string();
    assert!(
        err.contains("volume 'vm'") && err.contains("not a uuid"),
        "{err}"
    );
    sqlite(&db)
        .execute("UPDATE volumes SET size = 'big'", [])
        .unwrap();
    let err = db.volume("vm").unwrap_err().to_string();
    assert!(err.contains("column size"), "{err}");
    db.write(|db| db.put_object("c/o", &object())).unwrap();
    sqlite(&db).execute("DELETE FROM versions", []).unwrap();
    let err = db.object("c/o").unwrap_err().to_string();
    assert!(err.contains("current version has no row"), "{err}");
    assert!(db.integrity_check().unwrap().is_empty());
}

#[test]
fn a_failed_write_changes_nothing_and_an_unknown_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_db(dir.path());
    let r: Result<()> = db.write(|db| {
        db.put_volume("vm", &volume())?;
        Err(Error::invalid("no"))
    });
    assert!(r.is_err());
    assert!(!db.has_volume("vm").unwrap());
    sqlite(&db)
        .execute_batch("PRAGMA user_version = 9")
        .unwrap();
    let err = Db::open(db.path(), 4096).err().unwrap().to_string();
    assert!(err.contains("catalog version 9"), "{err}");
}

/// The SQLite connection under `db`, to damage it as a hostile writer would.
fn sqlite(db: &Db) -> &rusqlite::Connection {
    match &db.conn {
        super::conn::Conn::Sqlite(c) => c,
        super::conn::Conn::Pg(_) => panic!("a SQLite catalog"),
    }
}
