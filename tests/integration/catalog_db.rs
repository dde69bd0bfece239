//! Test access to `meta/catalog.db` in the shape of the format-1 JSON catalog
//! (`{"objects": {NAME: record}, "volumes": {NAME: record}}`), so tests can read a record
//! and write damaged or hostile values as a hand edit would, bypassing every check of arch.

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
    let c = open(r);
    let mut objects = Map::new();
    let sql = "SELECT o.container, o.name, o.uuid, o.version, o.created, v.bytes, v.hash, v.map, \
               v.block_size, v.content_type, v.meta, v.modified FROM objects o \
               JOIN versions v ON v.uuid = o.uuid AND v.version = o.version";
    for mut o in rows(&c, sql) {
        let full = format!(
            "{}/{}",
            o.remove("container").unwrap().as_str().unwrap(),
            o.remove("name").unwrap().as_str().unwrap()
        );
        let meta = parsed(&o["meta"]);
        o.insert("meta".into(), meta);
        let uuid = o["uuid"].as_str().unwrap().to_string();
        let img = rows(&c, &format!("SELECT * FROM images WHERE uuid = '{uuid}'"));
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
    for mut v in rows(&c, "SELECT * FROM volumes") {
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
