//! Test access to `meta/catalog.db` in the shape of the format-1 JSON catalog
//! (`{"objects": {NAME: record}, "volumes": {NAME: record}}`), so tests can read a record
//! and write damaged or hostile values as a hand edit would, bypassing every check of arch.
//! In remote-catalog mode the same reads and writes go to the test's PostgreSQL schema
//! (a value its column types cannot hold fails the write: that damage cannot exist there).

use crate::util::TestRepo;
use rusqlite::types::Value as Sql;
use serde_json::{Map, Value, json};

fn open(r: &TestRepo) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(r.root.join("meta/catalog.db")).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(60)).unwrap();
    c
}

fn from_sql(v: Sql) -> Value {
    match v {
        Sql::Null => Value::Null,
        Sql::Integer(n) => json!(n),
        Sql::Real(f) => json!(f),
        Sql::Text(t) => json!(t),
        Sql::Blob(b) => json!(String::from_utf8_lossy(&b)),
    }
}

fn to_sql(v: &Value) -> Sql {
    match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            // Past i64 (a hostile size): kept as text, which arch refuses as corrupt.
            None => Sql::Text(n.to_string()),
        },
        Value::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

/// One connection to the catalog of `r`: SQLite, or the test's PostgreSQL schema.
enum Conn {
    Sqlite(rusqlite::Connection),
    Pg(Box<postgres::Client>),
}

fn connect(r: &TestRepo) -> Conn {
    match &r.catalog {
        None => Conn::Sqlite(open(r)),
        Some(url) => {
            let url = arch::repo::db::pg::CatalogUrl::parse(url).unwrap();
            Conn::Pg(Box::new(arch::repo::db::pg::connect(&url).unwrap()))
        }
    }
}

fn query(c: &mut Conn, sql: &str) -> Vec<Map<String, Value>> {
    match c {
        Conn::Sqlite(c) => rows(c, sql),
        Conn::Pg(c) => c
            .query(&format!("SELECT row_to_json(t)::text FROM ({sql}) t"), &[])
            .unwrap()
            .iter()
            .map(|row| serde_json::from_str(row.get::<_, &str>(0)).unwrap())
            .collect(),
    }
}

/// `value` as PostgreSQL's `json_populate_record` takes it for the column: booleans as 0/1,
/// objects and arrays as their JSON text (as `to_sql` does for SQLite).
fn pg_json(v: &Value) -> Value {
    match v {
        Value::Bool(b) => json!(*b as i64),
        Value::Object(_) | Value::Array(_) => json!(v.to_string()),
        other => other.clone(),
    }
}

fn rows(c: &rusqlite::Connection, sql: &str) -> Vec<Map<String, Value>> {
    let mut st = c.prepare(sql).unwrap();
    let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
    st.query_map([], |row| {
        let mut m = Map::new();
        for (i, n) in names.iter().enumerate() {
            m.insert(n.clone(), from_sql(row.get::<_, Sql>(i)?));
        }
        Ok(m)
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn parsed(v: &Value) -> Value {
    v.as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(v.clone())
}

/// The current records of the catalog, format-1 shaped.
pub fn read(r: &TestRepo) -> Value {
    let mut c = connect(r);
    let mut objects = Map::new();
    let sql = "SELECT o.container, o.name, o.uuid, o.version, o.created, v.bytes, v.hash, v.map, \
               v.block_size, v.content_type, v.meta, v.modified FROM objects o \
               JOIN versions v ON v.uuid = o.uuid AND v.version = o.version";
    for mut o in query(&mut c, sql) {
        let full = format!(
            "{}/{}",
            o.remove("container").unwrap().as_str().unwrap(),
            o.remove("name").unwrap().as_str().unwrap()
        );
        let meta = parsed(&o["meta"]);
        o.insert("meta".into(), meta);
        let uuid = o["uuid"].as_str().unwrap().to_string();
        let img = query(
            &mut c,
            &format!("SELECT * FROM images WHERE uuid = '{uuid}'"),
        );
        if let Some(mut i) = img.into_iter().next() {
            i.remove("uuid");
            for k in ["is_public", "is_snapshot"] {
                let b = i[k] == json!(1);
                i.insert(k.into(), json!(b));
            }
            let p = parsed(&i["properties"]);
            i.insert("properties".into(), p);
            o.insert("image".into(), Value::Object(i));
        }
        objects.insert(full, Value::Object(o));
    }
    let mut volumes = Map::new();
    for mut v in query(&mut c, "SELECT * FROM volumes") {
        let name = v.remove("name").unwrap().as_str().unwrap().to_string();
        for k in ["customization", "creation"] {
            let p = parsed(&v[k]);
            v.insert(k.into(), p);
        }
        volumes.insert(name, Value::Object(v));
    }
    json!({"format": 1, "objects": objects, "volumes": volumes})
}

/// Replaces every record with those of `cat` (format-1 shaped), values written as given.
pub fn write(r: &TestRepo, cat: &Value) {
    if r.catalog.is_some() {
        return write_pg(r, cat);
    }
    let c = open(r);
    c.execute_batch(
        "BEGIN IMMEDIATE; DELETE FROM images; DELETE FROM versions; DELETE FROM objects; \
         DELETE FROM volumes;",
    )
    .unwrap();
    let get = |o: &Value, k: &str| to_sql(o.get(k).unwrap_or(&Value::Null));
    for (full, o) in cat["objects"].as_object().unwrap() {
        let (container, name) = full.split_once('/').unwrap_or((full, ""));
        c.execute(
            "INSERT INTO objects VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                get(o, "uuid"),
                container,
                name,
                get(o, "version"),
                get(o, "created")
            ],
        )
        .unwrap();
        c.execute(
            "INSERT INTO versions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                get(o, "uuid"),
                get(o, "version"),
                get(o, "bytes"),
                get(o, "hash"),
                get(o, "map"),
                get(o, "block_size"),
                get(o, "content_type"),
                to_sql(o.get("meta").unwrap_or(&json!({}))),
                get(o, "modified"),
            ],
        )
        .unwrap();
        if let Some(i) = o.get("image").filter(|i| !i.is_null()) {
            c.execute(
                "INSERT INTO images VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                rusqlite::params![
                    get(o, "uuid"),
                    get(i, "name"),
                    get(i, "owner"),
                    get(i, "status"),
                    get(i, "disk_format"),
                    get(i, "container_format"),
                    get(i, "is_public"),
                    get(i, "is_snapshot"),
                    get(i, "created_at"),
                    get(i, "updated_at"),
                    to_sql(i.get("properties").unwrap_or(&json!({}))),
                ],
            )
            .unwrap();
        }
    }
    for (name, v) in cat["volumes"].as_object().unwrap() {
        let custom = v.get("customization").filter(|c| !c.is_null()).cloned();
        c.execute(
            "INSERT INTO volumes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            rusqlite::params![
                name,
                get(v, "id"),
                get(v, "size"),
                get(v, "block_size"),
                get(v, "source"),
                get(v, "source_object"),
                get(v, "base_map"),
                get(v, "epoch"),
                get(v, "created_at"),
                get(v, "modified_at"),
                get(v, "status"),
                to_sql(&custom.unwrap_or(json!([]))),
                get(v, "creation"),
            ],
        )
        .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
}

/// [`write`] on the PostgreSQL catalog of `r`.
fn write_pg(r: &TestRepo, cat: &Value) {
    let Conn::Pg(mut c) = connect(r) else {
        unreachable!("remote catalog")
    };
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(
        "DELETE FROM images; DELETE FROM versions; DELETE FROM objects; DELETE FROM volumes;",
    )
    .unwrap();
    let mut insert = |table: &str, row: Map<String, Value>| {
        let row: Map<String, Value> = row.into_iter().map(|(k, v)| (k, pg_json(&v))).collect();
        tx.execute(
            &format!(
                "INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, $1::text::json)"
            ),
            &[&Value::Object(row).to_string()],
        )
        .unwrap_or_else(|e| panic!("{table}: {e}"));
    };
    let pick = |o: &Value, keys: &[&str]| -> Map<String, Value> {
        keys.iter()
            .map(|k| (k.to_string(), o.get(*k).cloned().unwrap_or(Value::Null)))
            .collect()
    };
    for (full, o) in cat["objects"].as_object().unwrap() {
        let (container, name) = full.split_once('/').unwrap_or((full, ""));
        let mut row = pick(o, &["uuid", "version", "created"]);
        row.insert("container".into(), json!(container));
        row.insert("name".into(), json!(name));
        insert("objects", row);
        let mut row = pick(
            o,
            &[
                "uuid",
                "version",
                "bytes",
                "hash",
                "map",
                "block_size",
                "content_type",
                "modified",
            ],
        );
        row.insert("meta".into(), o.get("meta").cloned().unwrap_or(json!({})));
        insert("versions", row);
        if let Some(i) = o.get("image").filter(|i| !i.is_null()) {
            let mut row = pick(
                i,
                &[
                    "name",
                    "owner",
                    "status",
                    "disk_format",
                    "container_format",
                    "is_public",
                    "is_snapshot",
                    "created_at",
                    "updated_at",
                ],
            );
            row.insert("uuid".into(), o["uuid"].clone());
            row.insert(
                "properties".into(),
                i.get("properties").cloned().unwrap_or(json!({})),
            );
            insert("images", row);
        }
    }
    for (name, v) in cat["volumes"].as_object().unwrap() {
        let mut row = v.as_object().unwrap().clone();
        row.insert("name".into(), json!(name));
        let custom = v.get("customization").filter(|c| !c.is_null()).cloned();
        row.insert("customization".into(), custom.unwrap_or(json!([])));
        insert("volumes", row);
    }
    tx.commit().unwrap();
}
