//! Rows of `meta/catalog.db` to and from records. Every row read is decoded strictly (a
//! column of the wrong type or a malformed value is [`Error::Corrupt`]) and validated with
//! the record rules before it is handed out.

use super::Db;
use super::conn::{Arg, Row, Value};
use crate::error::Result;
use crate::repo::records::{CreationRecord, ImageRecord, ObjectRecord, TaskRecord, VolumeRecord};
use crate::services::names::escape_control;
use crate::storage::MapId;
use std::collections::BTreeMap;

/// Which objects a listing wants.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    /// Only this container (else every container, in container order).
    pub container: Option<String>,
    /// Only object names (within the container) starting with this.
    pub prefix: String,
    /// Only object names strictly after this one (Swift's `marker`); needs `container`.
    pub marker: Option<String>,
    /// Only image or snapshot registrations.
    pub images_only: bool,
}

pub const OBJECT_SELECT: &str = "SELECT o.container, o.name, o.uuid, o.version, o.created, \
     v.bytes, v.hash, v.map, v.block_size, v.content_type, v.meta, v.modified, \
     i.name, i.owner, i.status, i.disk_format, i.container_format, i.is_public, i.is_snapshot, \
     i.created_at, i.updated_at, i.properties \
     FROM objects o LEFT JOIN versions v ON v.uuid = o.uuid AND v.version = o.version \
     LEFT JOIN images i ON i.uuid = o.uuid";

pub const VOLUME_SELECT: &str = "SELECT name, id, size, block_size, source, source_object, \
     base_map, epoch, created_at, modified_at, status, customization, creation FROM volumes";

/// Strict column reads: the column's value must have the expected type.
struct Cols<'a, 'r> {
    db: &'a Db,
    row: &'a Row<'r>,
    what: String,
}

impl Cols<'_, '_> {
    fn bad(&self, i: usize, expected: &str) -> crate::error::Error {
        let col = self.row.name(i).to_string();
        self.db.corrupt(format!(
            "{}: column {col} is not {expected}",
            escape_control(&self.what)
        ))
    }
    fn text(&self, i: usize) -> Result<String> {
        match self.row.get(i) {
            Value::Text(t) => Ok(t.clone()),
            Value::BadText => Err(self.bad(i, "UTF-8 text")),
            _ => Err(self.bad(i, "text")),
        }
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.row.get(i) {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
    fn uint(&self, i: usize) -> Result<u64> {
        match *self.row.get(i) {
            Value::Int(n) if n >= 0 => Ok(n as u64),
            _ => Err(self.bad(i, "a non-negative integer")),
        }
    }
    fn u32(&self, i: usize) -> Result<u32> {
        u32::try_from(self.uint(i)?).map_err(|_| self.bad(i, "a 32-bit integer"))
    }
    fn flag(&self, i: usize) -> Result<bool> {
        match self.uint(i)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad(i, "0 or 1")),
        }
    }
    fn map(&self, i: usize) -> Result<MapId> {
        self.text(i)?
            .parse()
            .map_err(|_| self.bad(i, "a 64-digit hex map id"))
    }
    fn json<T: serde::de::DeserializeOwned>(&self, i: usize, expected: &str) -> Result<T> {
        serde_json::from_str(&self.text(i)?).map_err(|_| self.bad(i, expected))
    }
}

fn decode_object(db: &Db, row: &Row<'_>) -> Result<(String, ObjectRecord)> {
    let mut c = Cols {
        db,
        row,
        what: "object".into(),
    };
    let full = format!("{}/{}", c.text(0)?, c.text(1)?);
    c.what = format!("object '{full}'");
    if matches!(row.get(5), Value::Null) {
        return Err(db.corrupt(format!(
            "object '{}': its current version has no row in versions",
            escape_control(&full)
        )));
    }
    let image = match row.get(12) {
        Value::Null => None,
        _ => Some(ImageRecord {
            name: c.text(12)?,
            owner: c.text(13)?,
            status: c.text(14)?,
            disk_format: c.text(15)?,
            container_format: c.text(16)?,
            is_public: c.flag(17)?,
            is_snapshot: c.flag(18)?,
            created_at: c.text(19)?,
            updated_at: c.text(20)?,
            properties: c.json::<BTreeMap<String, String>>(21, "a JSON object of strings")?,
        }),
    };
    let rec = ObjectRecord {
        uuid: c.text(2)?,
        version: c.uint(3)?,
        created: c.text(4)?,
        bytes: c.uint(5)?,
        hash: c.text(6)?,
        map: c.map(7)?,
        block_size: c.u32(8)?,
        content_type: c.text(9)?,
        meta: c.json(10, "a JSON object of strings")?,
        modified: c.text(11)?,
        image,
    };
    Ok((full, rec))
}

fn decode_volume(db: &Db, row: &Row<'_>) -> Result<(String, VolumeRecord)> {
    let mut c = Cols {
        db,
        row,
        what: "volume".into(),
    };
    let name = c.text(0)?;
    c.what = format!("volume '{name}'");
    let creation: Option<String> = c.opt_text(12)?;
    let creation: Option<CreationRecord> = match creation {
        None => None,
        Some(t) => Some(serde_json::from_str(&t).map_err(|_| c.bad(12, "a JSON creation record"))?),
    };
    let rec = VolumeRecord {
        id: c.text(1)?,
        size: c.uint(2)?,
        block_size: c.u32(3)?,
        source: c.opt_text(4)?,
        source_object: c.opt_text(5)?,
        base_map: c.map(6)?,
        epoch: c.uint(7)?,
        created_at: c.text(8)?,
        modified_at: c.text(9)?,
        status: c.text(10)?,
        customization: c.json::<Vec<TaskRecord>>(11, "a JSON list of tasks")?,
        creation,
    };
    Ok((name, rec))
}

/// The first fault of a record read under `label`, as a corrupt-catalog error.
fn check(db: &Db, label: &str, name: &str, faults: Vec<String>) -> Result<()> {
    match faults.first() {
        None => Ok(()),
        Some(first) => {
            let more = match faults.len() - 1 {
                0 => String::new(),
                1 => " (and 1 more problem)".to_string(),
                n => format!(" (and {n} more problems)"),
            };
            Err(db.corrupt(format!("{label} '{}': {first}{more}", escape_control(name))))
        }
    }
}

pub fn scan_objects(
    db: &Db,
    sql: &str,
    p: &[Arg<'_>],
    f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
) -> Result<()> {
    scan_objects_checked(db, sql, p, true, f)
}

pub fn scan_objects_checked(
    db: &Db,
    sql: &str,
    p: &[Arg<'_>],
    validate: bool,
    f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
) -> Result<()> {
    db.query(sql, p, &mut |row| {
        let (full, rec) = decode_object(db, &row)?;
        if validate {
            check(db, "object", &full, rec.faults(&full, db.block_size))?;
        }
        f(full, rec)
    })
}

pub fn scan_volumes(
    db: &Db,
    sql: &str,
    p: &[Arg<'_>],
    f: &mut dyn FnMut(String, VolumeRecord) -> Result<bool>,
) -> Result<()> {
    scan_volumes_checked(db, sql, p, true, f)
}

pub fn scan_volumes_checked(
    db: &Db,
    sql: &str,
    p: &[Arg<'_>],
    validate: bool,
    f: &mut dyn FnMut(String, VolumeRecord) -> Result<bool>,
) -> Result<()> {
    db.query(sql, p, &mut |row| {
        let (name, rec) = decode_volume(db, &row)?;
        if validate {
            check(db, "volume", &name, rec.faults(&name, db.block_size))?;
        }
        f(name, rec)
    })
}

pub fn for_each_object(
    db: &Db,
    filter: &ObjectFilter,
    f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
) -> Result<()> {
    let mut sql = String::from(OBJECT_SELECT);
    let mut args: Vec<String> = Vec::new();
    let mut conds: Vec<String> = Vec::new();
    if filter.images_only {
        conds.push("i.uuid IS NOT NULL".into());
    }
    if let Some(c) = &filter.container {
        args.push(c.clone());
        conds.push(format!("o.container = ?{}", args.len()));
        if !filter.prefix.is_empty() {
            args.push(filter.prefix.clone());
            conds.push(format!("o.name >= ?{}", args.len()));
        }
        if let Some(m) = &filter.marker {
            args.push(m.clone());
            conds.push(format!("o.name > ?{}", args.len()));
        }
    }
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(" ORDER BY o.container, o.name");
    let prefix = filter.prefix.as_str();
    let in_container = filter.container.is_some();
    let args: Vec<Arg<'_>> = args.iter().map(Arg::from).collect();
    scan_objects(db, &sql, &args, &mut |full, rec| {
        if !prefix.is_empty() {
            let object = full.split_once('/').map_or("", |(_, o)| o);
            if !object.starts_with(prefix) {
                // Names are in order: past the prefix range inside one container, done.
                return Ok(!in_container || object < prefix);
            }
        }
        f(full, rec)
    })
}

/// Every kept version (current ones included) of the object named `full`, or of every
/// object, newest first within an object, as records of that version (without image).
pub fn for_each_version(
    db: &Db,
    full: Option<&str>,
    validate: bool,
    f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
) -> Result<()> {
    let mut sql = String::from(
        "SELECT o.container, o.name, v.uuid, v.version, o.created, v.bytes, v.hash, v.map, \
         v.block_size, v.content_type, v.meta, v.modified, NULL, NULL, NULL, NULL, NULL, NULL, \
         NULL, NULL, NULL, NULL FROM versions v JOIN objects o ON o.uuid = v.uuid",
    );
    let mut args: Vec<&str> = Vec::new();
    if let Some((container, name)) = full.and_then(|f| f.split_once('/')) {
        sql.push_str(" WHERE o.container = ?1 AND o.name = ?2");
        args.extend([container, name]);
    }
    sql.push_str(" ORDER BY o.container, o.name, v.version DESC");
    let args: Vec<Arg<'_>> = args.into_iter().map(Arg::from).collect();
    scan_objects_checked(db, &sql, &args, validate, f)
}

pub fn objects_by_id_or_display(
    db: &Db,
    prefix: &str,
    display: &str,
    f: &mut dyn FnMut(String, ObjectRecord) -> Result<bool>,
) -> Result<()> {
    // uuid prefix as a range (uuids are lower-case hex and '-', all below '~').
    let sql = format!(
        "{OBJECT_SELECT} WHERE (o.uuid >= ?1 AND o.uuid < ?2) OR i.name = ?3 \
         ORDER BY o.container, o.name"
    );
    let upper = format!("{prefix}~");
    scan_objects(
        db,
        &sql,
        &[prefix.into(), (&upper).into(), display.into()],
        f,
    )
}

fn uuid_at(db: &Db, full: &str) -> Result<Option<String>> {
    let Some((container, name)) = full.split_once('/') else {
        return Ok(None);
    };
    let mut out = None;
    db.query(
        "SELECT uuid FROM objects WHERE container = ?1 AND name = ?2",
        &[container.into(), name.into()],
        &mut |row| {
            let c = Cols {
                db,
                row: &row,
                what: format!("object '{full}'"),
            };
            out = Some(c.text(0)?);
            Ok(false)
        },
    )?;
    Ok(out)
}

fn delete_uuid(db: &Db, uuid: &str) -> Result<()> {
    for sql in [
        "DELETE FROM images WHERE uuid = ?1",
        "DELETE FROM versions WHERE uuid = ?1",
        "DELETE FROM objects WHERE uuid = ?1",
    ] {
        db.execute(sql, &[uuid.into()])?;
    }
    Ok(())
}

fn split(full: &str) -> (&str, &str) {
    full.split_once('/')
        .expect("object names are container/object")
}

/// Runs `update`; when it changed no row, runs `insert` (a portable upsert).
fn upsert(db: &Db, update: &str, insert: &str, p: &[Arg<'_>]) -> Result<()> {
    let n = db.execute(update, p)?;
    if n == 0 {
        db.execute(insert, p)?;
    }
    Ok(())
}

fn int(v: u64) -> i64 {
    i64::try_from(v).expect("record counters and sizes are below 2^63")
}

pub fn put_object(db: &Db, full: &str, rec: &ObjectRecord) -> Result<()> {
    let (container, name) = split(full);
    if let Some(other) = uuid_at(db, full)?
        && other != rec.uuid
    {
        delete_uuid(db, &other)?;
    }
    upsert(
        db,
        "UPDATE objects SET container = ?2, name = ?3, version = ?4, created = ?5 WHERE uuid = ?1",
        "INSERT INTO objects (uuid, container, name, version, created) VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            Arg::from(&rec.uuid),
            Arg::from(container),
            Arg::from(name),
            Arg::from(int(rec.version)),
            Arg::from(&rec.created),
        ],
    )?;
    let meta = serde_json::to_string(&rec.meta).expect("metadata serializes");
    upsert(
        db,
        "UPDATE versions SET bytes = ?3, hash = ?4, map = ?5, block_size = ?6, content_type = ?7, \
         meta = ?8, modified = ?9 WHERE uuid = ?1 AND version = ?2",
        "INSERT INTO versions (uuid, version, bytes, hash, map, block_size, content_type, meta, \
         modified) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            Arg::from(&rec.uuid),
            Arg::from(int(rec.version)),
            Arg::from(int(rec.bytes)),
            Arg::from(&rec.hash),
            Arg::from(&rec.map.to_hex()),
            Arg::from(rec.block_size),
            Arg::from(&rec.content_type),
            Arg::from(&meta),
            Arg::from(&rec.modified),
        ],
    )?;
    match &rec.image {
        None => {
            db.execute("DELETE FROM images WHERE uuid = ?1", &[(&rec.uuid).into()])?;
        }
        Some(i) => {
            let props = serde_json::to_string(&i.properties).expect("properties serialize");
            upsert(
                db,
                "UPDATE images SET name = ?2, owner = ?3, status = ?4, disk_format = ?5, \
                 container_format = ?6, is_public = ?7, is_snapshot = ?8, created_at = ?9, \
                 updated_at = ?10, properties = ?11 WHERE uuid = ?1",
                "INSERT INTO images (uuid, name, owner, status, disk_format, container_format, \
                 is_public, is_snapshot, created_at, updated_at, properties) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                &[
                    Arg::from(&rec.uuid),
                    Arg::from(&i.name),
                    Arg::from(&i.owner),
                    Arg::from(&i.status),
                    Arg::from(&i.disk_format),
                    Arg::from(&i.container_format),
                    Arg::from(i.is_public as i64),
                    Arg::from(i.is_snapshot as i64),
                    Arg::from(&i.created_at),
                    Arg::from(&i.updated_at),
                    Arg::from(&props),
                ],
            )?;
        }
    }
    Ok(())
}

pub fn rename_object(db: &Db, from: &str, to: &str) -> Result<()> {
    let Some(uuid) = uuid_at(db, from)? else {
        return Ok(());
    };
    if let Some(other) = uuid_at(db, to)?
        && other != uuid
    {
        delete_uuid(db, &other)?;
    }
    let (container, name) = split(to);
    db.execute(
        "UPDATE objects SET container = ?2, name = ?3 WHERE uuid = ?1",
        &[(&uuid).into(), container.into(), name.into()],
    )?;
    Ok(())
}

pub fn remove_object(db: &Db, full: &str) -> Result<bool> {
    let Some(uuid) = uuid_at(db, full)? else {
        return Ok(false);
    };
    delete_uuid(db, &uuid)?;
    Ok(true)
}

pub fn put_volume(db: &Db, name: &str, rec: &VolumeRecord) -> Result<()> {
    let customization = serde_json::to_string(&rec.customization).expect("tasks serialize");
    let creation = rec
        .creation
        .as_ref()
        .map(|c| serde_json::to_string(c).expect("creation serializes"));
    upsert(
        db,
        "UPDATE volumes SET id = ?2, size = ?3, block_size = ?4, source = ?5, source_object = ?6, \
         base_map = ?7, epoch = ?8, created_at = ?9, modified_at = ?10, status = ?11, \
         customization = ?12, creation = ?13 WHERE name = ?1",
        "INSERT INTO volumes (name, id, size, block_size, source, source_object, base_map, epoch, \
         created_at, modified_at, status, customization, creation) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        &[
            Arg::from(name),
            Arg::from(&rec.id),
            Arg::from(int(rec.size)),
            Arg::from(rec.block_size),
            Arg::from(&rec.source),
            Arg::from(&rec.source_object),
            Arg::from(&rec.base_map.to_hex()),
            Arg::from(int(rec.epoch)),
            Arg::from(&rec.created_at),
            Arg::from(&rec.modified_at),
            Arg::from(&rec.status),
            Arg::from(&customization),
            Arg::from(&creation),
        ],
    )
}

pub fn for_each_map_reference(
    db: &Db,
    f: &mut dyn FnMut(MapId, String) -> Result<()>,
) -> Result<()> {
    let sql = "SELECT o.container, o.name, o.version, v.version, v.map, v.uuid FROM versions v \
               LEFT JOIN objects o ON o.uuid = v.uuid";
    db.query(sql, &[], &mut |row| {
        let c = Cols {
            db,
            row: &row,
            what: "version".into(),
        };
        let map = c.map(4)?;
        let version = c.uint(3)?;
        let holder = match c.opt_text(0)? {
            Some(container) => {
                let full = format!("{container}/{}", c.text(1)?);
                if c.uint(2)? == version {
                    format!("object:{full}")
                } else {
                    format!("object:{full}@{version}")
                }
            }
            // A version without its object is damage fsck reports; its map is kept meanwhile.
            None => format!("object-uuid:{}@{version}", escape_control(&c.text(5)?)),
        };
        f(map, holder)?;
        Ok(true)
    })?;
    // Volumes unvalidated (column types are still checked): fsck lists the maps of a
    // damaged record too, and gc refuses damaged records before it gets here.
    scan_volumes_checked(db, VOLUME_SELECT, &[], false, &mut |name, vol| {
        f(vol.base_map, format!("volume:{name}"))?;
        Ok(true)
    })
}
