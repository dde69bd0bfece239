//! The image service (Glance/Plankton semantics): register, unregister, list, modify and the
//! image <-> snapshot flag. Every operation here changes the catalog in `meta/` only: no block
//! and no map is ever read, written, copied or moved.

pub mod properties;
pub mod refs;
mod view;

pub use refs::{Among, resolve};
pub use view::{ImageView, image_view, resource_kind};

use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::db::{Db, ObjectFilter};
use crate::repo::records::{ImageRecord, ObjectRecord};
use crate::services::names::ObjectName;
use crate::services::objects;
use crate::time::now_rfc3339;
use properties::{EXCLUDE_ALL_TASKS, normalize, normalize_key};
use serde::Serialize;
use std::collections::BTreeMap;

/// Accepted disk formats; the first is the default.
pub const DISK_FORMATS: &[&str] = &["diskdump", "extdump", "ntfsdump"];
/// Accepted container formats; `bare` is the default.
pub const CONTAINER_FORMATS: &[&str] = &["aki", "ari", "ami", "bare", "ovf"];
/// Status of a registered image or snapshot whose data is complete.
pub const STATUS_AVAILABLE: &str = "AVAILABLE";
/// Every status the image service uses (images: SAVING; snapshots: CREATING).
pub const STATUSES: &[&str] = &["SAVING", "CREATING", "AVAILABLE", "ERROR"];

/// Options of [`register`]. `None` keeps the current value on re-registration (or the default
/// on a first one).
#[derive(Debug, Clone, Default)]
pub struct RegisterOptions {
    pub display_name: String,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub is_public: Option<bool>,
    pub properties: Vec<(String, String)>,
    pub snapshot: bool,
    pub size: Option<u64>,
    pub checksum: Option<String>,
}

/// Changes of [`modify`].
#[derive(Debug, Clone, Default)]
pub struct ModifyOptions {
    pub display_name: Option<String>,
    pub set_properties: Vec<(String, String)>,
    pub delete_properties: Vec<String>,
    pub is_public: Option<bool>,
}

/// Which images [`list`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kinds {
    #[default]
    Images,
    Snapshots,
    All,
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub kinds: Kinds,
    /// Property KEY=VALUE pairs that must all match (keys case-insensitive).
    pub properties: Vec<(String, String)>,
    pub status: Option<String>,
}

/// An image together with the object that carries it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageEntry {
    /// The object `container/object`.
    pub object: String,
    #[serde(flatten)]
    pub image: ImageView,
}

/// What a metadata change did.
#[derive(Debug, Clone, Serialize)]
pub struct ImageChange {
    pub object: String,
    /// False when the request matched the current state and nothing was written.
    pub changed: bool,
    #[serde(flatten)]
    pub image: ImageView,
}

fn check_format(kind: &str, value: &str, allowed: &[&str]) -> Result<String> {
    let v = value.to_ascii_lowercase();
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(Error::invalid(format!(
            "unknown {kind} '{value}': use one of {}",
            allowed.join(", ")
        )))
    }
}

fn check_display_name(name: &str) -> Result<()> {
    crate::services::names::check_display_name(name).map_err(|reason| {
        Error::invalid(format!(
            "invalid image name '{}': {reason}; give 1-255 bytes of printable text",
            crate::services::names::escape_control(name)
        ))
    })
}

/// The owner recorded for new images: the invoking user's name.
pub fn current_owner() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && crate::services::names::check_printable(u).is_ok())
        .unwrap_or_else(|| format!("uid-{}", unsafe { libc::getuid() }))
}

/// Sets or clears the snapshot marker together with `EXCLUDE_ALL_TASKS` (the invariant
/// `is_snapshot <=> EXCLUDE_ALL_TASKS=yes`).
fn set_snapshot_flag(img: &mut ImageRecord, snapshot: bool) {
    img.is_snapshot = snapshot;
    if snapshot {
        img.properties
            .insert(EXCLUDE_ALL_TASKS.to_string(), "yes".to_string());
    } else {
        img.properties.remove(EXCLUDE_ALL_TASKS);
    }
}

/// The record of a resolved name (gone only if removed since it was resolved).
fn record_of(cat: &Db, full: &str) -> Result<ObjectRecord> {
    cat.object(full)?.ok_or_else(|| Error::NotFound {
        kind: "object",
        name: full.to_string(),
        suggestion: None,
    })
}

fn change(rec: &ObjectRecord, full: &str, changed: bool) -> ImageChange {
    ImageChange {
        object: full.to_string(),
        changed,
        image: image_view(full, rec).expect("registered"),
    }
}

/// Registers object `name` as an image (or, with `snapshot`, as a snapshot). Image id = the
/// object's uuid, checksum = its hash. Registering again updates the same image; given size
/// and checksum must match the object.
pub fn register(repo: &Repository, name: &str, opts: &RegisterOptions) -> Result<ImageChange> {
    let name = &parse_registrable(repo, name)?;
    check_display_name(&opts.display_name)?;
    let disk_format = opts
        .disk_format
        .as_deref()
        .map(|f| check_format("disk format", f, DISK_FORMATS))
        .transpose()?;
    let container_format = opts
        .container_format
        .as_deref()
        .map(|f| check_format("container format", f, CONTAINER_FORMATS))
        .transpose()?;
    let props = normalize(&opts.properties)?;
    let full = name.full();
    repo.transact(|cat| {
        let rec = objects::find(cat, name)?;
        if let Some(size) = opts.size
            && size != rec.bytes
        {
            return Err(Error::invalid(format!(
                "--size {size} does not match object '{full}', which has {} bytes; \
                 register the right object or drop --size",
                rec.bytes
            )));
        }
        if let Some(sum) = &opts.checksum
            && !sum.eq_ignore_ascii_case(&rec.hash)
        {
            return Err(Error::invalid(format!(
                "--checksum {sum} does not match object '{full}', whose hash is {}; \
                 register the right object or drop --checksum",
                rec.hash
            )));
        }
        let now = now_rfc3339();
        let before = rec.image.clone();
        let mut img = before.clone().unwrap_or_else(|| ImageRecord {
            name: String::new(),
            owner: current_owner(),
            status: STATUS_AVAILABLE.into(),
            disk_format: DISK_FORMATS[0].into(),
            container_format: "bare".into(),
            is_public: false,
            is_snapshot: false,
            created_at: now.clone(),
            updated_at: now.clone(),
            properties: BTreeMap::new(),
        });
        img.name = opts.display_name.clone();
        if let Some(f) = &disk_format {
            img.disk_format = f.clone();
        }
        if let Some(f) = &container_format {
            img.container_format = f.clone();
        }
        if let Some(p) = opts.is_public {
            img.is_public = p;
        }
        img.properties.extend(props.clone());
        if opts.snapshot {
            set_snapshot_flag(&mut img, true);
        }
        let changed = before.as_ref().is_none_or(|b| {
            let mut same = b.clone();
            same.updated_at = img.updated_at.clone();
            same != img
        });
        let mut rec = rec;
        if changed {
            img.updated_at = now;
            rec.image = Some(img);
            cat.put_object(&full, &rec)?;
        }
        Ok(change(&rec, &full, changed))
    })
}

/// Parses the NAME given to `register`: an object name; a volume gets the fix (snapshot it).
fn parse_registrable(repo: &Repository, name: &str) -> Result<ObjectName> {
    ObjectName::parse(name).or_else(|err| {
        if repo.catalog()?.has_volume(name)? {
            Err(Error::invalid(format!(
                "'{name}' is a volume; only read-only objects can be registered. \
                 Snapshot it first: arch snapshot {name} SNAPSHOT_NAME"
            )))
        } else {
            Err(err)
        }
    })
}

/// Removes the image registration of `reference`; the object stays, byte-identical.
pub fn unregister(repo: &Repository, reference: &str) -> Result<ImageEntry> {
    repo.transact(|cat| {
        let full = resolve(cat, reference, Among::Images)?;
        let mut rec = record_of(cat, &full)?;
        let view = image_view(&full, &rec).expect("resolved among images");
        rec.image = None;
        cat.put_object(&full, &rec)?;
        Ok(ImageEntry {
            object: full,
            image: view,
        })
    })
}

/// The image `reference` designates.
pub fn info(repo: &Repository, reference: &str) -> Result<ImageEntry> {
    repo.catalog()?.read(|cat| {
        let full = resolve(cat, reference, Among::Images)?;
        Ok(ImageEntry {
            image: image_view(&full, &record_of(cat, &full)?).expect("resolved among images"),
            object: full,
        })
    })
}

/// Images (and/or snapshots) matching `filter`, in object-name order, each passed to `f` as
/// it is read (streamed: nothing is collected).
pub fn list(
    repo: &Repository,
    filter: &ListFilter,
    f: &mut dyn FnMut(ImageEntry) -> Result<()>,
) -> Result<()> {
    let wanted: Vec<(String, String)> = filter
        .properties
        .iter()
        .map(|(k, v)| Ok((normalize_key(k)?, v.clone())))
        .collect::<Result<_>>()?;
    let status = filter
        .status
        .as_deref()
        .map(|s| check_format("status", s, &["saving", "creating", "available", "error"]))
        .transpose()?
        .map(|s| s.to_ascii_uppercase());
    let only_images = ObjectFilter {
        images_only: true,
        ..Default::default()
    };
    repo.catalog()?
        .for_each_object(&only_images, &mut |full, rec| {
            let Some(v) = image_view(&full, &rec) else {
                return Ok(true);
            };
            let kind = match filter.kinds {
                Kinds::Images => !v.is_snapshot,
                Kinds::Snapshots => v.is_snapshot,
                Kinds::All => true,
            };
            let props = wanted.iter().all(|(k, want)| {
                v.properties.get(k).is_some_and(|have| {
                    have == want || properties::canonical_value(k, want).is_ok_and(|c| &c == have)
                })
            });
            if kind && props && status.as_ref().is_none_or(|s| &v.status == s) {
                f(ImageEntry {
                    object: full,
                    image: v,
                })?;
            }
            Ok(true)
        })
}

/// Changes the display name, properties or visibility of an image.
pub fn modify(repo: &Repository, reference: &str, opts: &ModifyOptions) -> Result<ImageChange> {
    if let Some(n) = &opts.display_name {
        check_display_name(n)?;
    }
    let set = normalize(&opts.set_properties)?;
    let delete: Vec<String> = opts
        .delete_properties
        .iter()
        .map(|k| normalize_key(k))
        .collect::<Result<_>>()?;
    if delete.iter().any(|k| k == EXCLUDE_ALL_TASKS) {
        return Err(Error::invalid(
            "EXCLUDE_ALL_TASKS follows the snapshot marker; use `arch image mark REF image` to clear it",
        ));
    }
    repo.transact(|cat| {
        let full = resolve(cat, reference, Among::Images)?;
        let mut rec = record_of(cat, &full)?;
        let img = rec.image.as_mut().expect("resolved among images");
        let before = img.clone();
        if let Some(n) = &opts.display_name {
            img.name = n.clone();
        }
        if let Some(p) = opts.is_public {
            img.is_public = p;
        }
        img.properties.extend(set.clone());
        for k in &delete {
            img.properties.remove(k);
        }
        let changed = *img != before;
        if changed {
            img.updated_at = now_rfc3339();
            cat.put_object(&full, &rec)?;
        }
        Ok(change(&rec, &full, changed))
    })
}

/// Sets (`snapshot = true`) or clears the snapshot flag of an image. Marking an image that is
/// already in the requested state changes nothing.
pub fn mark(repo: &Repository, reference: &str, snapshot: bool) -> Result<ImageChange> {
    repo.transact(|cat| {
        let full = resolve(cat, reference, Among::Images)?;
        let mut rec = record_of(cat, &full)?;
        let img = rec.image.as_mut().expect("resolved among images");
        let before = img.clone();
        set_snapshot_flag(img, snapshot);
        let changed = *img != before;
        if changed {
            img.updated_at = now_rfc3339();
            cat.put_object(&full, &rec)?;
        }
        Ok(change(&rec, &full, changed))
    })
}
