//! Unit tests of the record rules: each rule refuses its bad values with a reason naming the
//! field, and records as arch writes them pass.

use super::*;
use crate::storage::BlockHash;

const BS: u32 = 4096;
const UUID: &str = "0b6f8c7e-3c1a-4d2e-9f00-123456789abc";
const WHEN: &str = "2026-11-25T10:00:00Z";

pub(crate) fn object() -> ObjectRecord {
    ObjectRecord {
        uuid: UUID.into(),
        bytes: 5,
        hash: BlockHash::ZERO.to_hex(),
        map: BlockHash::ZERO,
        block_size: BS,
        content_type: "application/octet-stream".into(),
        version: 1,
        created: WHEN.into(),
        modified: WHEN.into(),
        meta: BTreeMap::from([("k".into(), "any value\nwith a newline".into())]),
        image: None,
    }
}

pub(crate) fn image() -> ImageRecord {
    ImageRecord {
        name: "Debian 12".into(),
        owner: "alice".into(),
        status: "AVAILABLE".into(),
        disk_format: "diskdump".into(),
        container_format: "bare".into(),
        is_public: false,
        is_snapshot: false,
        created_at: WHEN.into(),
        updated_at: WHEN.into(),
        properties: BTreeMap::from([("OSFAMILY".into(), "linux".into())]),
    }
}

pub(crate) fn volume() -> VolumeRecord {
    VolumeRecord {
        id: UUID.into(),
        size: 8192,
        block_size: BS,
        source: Some(format!("image:{UUID}")),
        source_object: Some("images/debian.raw".into()),
        base_map: BlockHash::ZERO,
        epoch: 1,
        created_at: WHEN.into(),
        modified_at: WHEN.into(),
        status: "available".into(),
        customization: vec![],
        creation: None,
    }
}

/// The single fault of `rec`, asserting there is exactly one.
fn one(faults: Vec<String>) -> String {
    assert_eq!(faults.len(), 1, "{faults:?}");
    faults.into_iter().next().unwrap()
}

#[test]
fn valid_records_have_no_faults() {
    assert_eq!(object().faults("c/o", BS), Vec::<String>::new());
    let mut o = object();
    o.image = Some(image());
    assert_eq!(o.faults("c/o", BS), Vec::<String>::new());
    let mut v = volume();
    v.status = "creating".into();
    v.source = None;
    v.customization = vec![TaskRecord {
        task: "AssignHostname".into(),
        status: "ran".into(),
        detail: "multi\nline detail".into(),
    }];
    assert_eq!(v.faults("vm1", BS), Vec::<String>::new());
}

#[test]
fn uuids_and_ids_must_be_canonical() {
    for bad in [
        "../../x",
        "",
        "0B6F8C7E-3C1A-4D2E-9F00-123456789ABC",
        "0b6f8c7e3c1a4d2e9f00123456789abc",
        "{0b6f8c7e-3c1a-4d2e-9f00-123456789abc}",
        "0b6f8c7e-3c1a-4d2e-9f00-123456789ab/",
        "0b6f8c7e-3c1a-4d2e-9f00.123456789abc",
    ] {
        assert!(!is_uuid(bad), "{bad:?}");
        let mut v = volume();
        v.id = bad.into();
        assert!(one(v.faults("vm1", BS)).starts_with("id '"), "{bad:?}");
        let mut o = object();
        o.uuid = bad.into();
        assert!(one(o.faults("c/o", BS)).contains("is not a uuid"));
    }
}

#[test]
fn sizes_block_sizes_and_counters_are_range_checked() {
    let mut o = object();
    o.bytes = u64::MAX;
    assert!(one(o.faults("c/o", BS)).contains("bytes 18446744073709551615 exceeds"));
    o.bytes = MAX_RESOURCE_SIZE;
    assert!(o.faults("c/o", BS).is_empty());
    for bs in [0, 1, 8192, u32::MAX] {
        let mut v = volume();
        v.block_size = bs;
        assert!(one(v.faults("vm1", BS)).contains(&format!("block_size {bs} ")));
    }
    for epoch in [0, MAX_COUNTER + 1, u64::MAX] {
        let mut v = volume();
        v.epoch = epoch;
        assert!(one(v.faults("vm1", BS)).contains("epoch"));
    }
    let mut o = object();
    o.version = 0;
    assert!(one(o.faults("c/o", BS)).contains("version 0 is outside"));
    let mut v = volume();
    v.size = MAX_RESOURCE_SIZE + 1;
    assert!(one(v.faults("vm1", BS)).contains("size"));
}

#[test]
fn text_fields_are_checked() {
    let mut o = object();
    o.hash = "ABC".into();
    assert!(one(o.faults("c/o", BS)).contains("hash 'ABC'"));
    let mut o = object();
    o.created = "yesterday".into();
    assert!(one(o.faults("c/o", BS)).contains("created 'yesterday'"));
    let mut o = object();
    o.content_type = "text/plain\x1b[2J".into();
    let fault = one(o.faults("c/o", BS));
    assert!(
        fault.contains("\\x1b") && !fault.contains('\x1b'),
        "{fault}"
    );
    let mut o = object();
    o.meta.insert("a=b".into(), "v".into());
    assert!(one(o.faults("c/o", BS)).contains("metadata key 'a=b'"));
    let mut v = volume();
    v.status = "gone".into();
    assert!(one(v.faults("vm1", BS)).contains("status 'gone' is not one of"));
    let mut v = volume();
    v.source = Some("image:../x".into());
    assert!(one(v.faults("vm1", BS)).contains("source 'image:../x'"));
    let mut v = volume();
    v.source_object = Some("noslash".into());
    assert!(one(v.faults("vm1", BS)).contains("source_object"));
}

#[test]
fn names_are_checked_with_the_record() {
    assert!(one(object().faults("c/o\n", BS)).starts_with("invalid name"));
    assert!(one(object().faults("noslash", BS)).starts_with("invalid name"));
    assert!(one(volume().faults("a/b", BS)).starts_with("invalid name"));
    assert!(one(volume().faults(&"v".repeat(1025), BS)).contains("limit is 1024"));
}

#[test]
fn image_fields_are_checked() {
    type Spoil = fn(&mut ImageRecord);
    let cases: Vec<(Spoil, &str)> = vec![
        (|i| i.name = "x\n".into(), "image name"),
        (|i| i.name = String::new(), "image name"),
        (|i| i.owner = String::new(), "image owner is empty"),
        (|i| i.status = "available".into(), "image status"),
        (|i| i.disk_format = "qcow2".into(), "image disk_format"),
        (
            |i| i.container_format = "docker".into(),
            "image container_format",
        ),
        (
            |i| i.updated_at = "2026-13-01T00:00:00Z".into(),
            "image updated_at",
        ),
        (
            |i| {
                i.properties.insert("lower".into(), "x".into());
            },
            "image property key 'lower'",
        ),
        (
            |i| {
                i.properties.insert("A\u{1b}".into(), "x".into());
            },
            "image property key 'A\\x1b'",
        ),
        (|i| i.is_snapshot = true, "is_snapshot is true but"),
        (
            |i| {
                i.properties.insert("USERS".into(), "".into());
            },
            "invalid value '' for property USERS",
        ),
        (
            |i| {
                i.properties
                    .insert("ROOT_PARTITION".into(), "99999999999999999999".into());
            },
            "for property ROOT_PARTITION",
        ),
        (
            |i| {
                i.properties
                    .insert("EXCLUDE_TASK_FIXPARTITIONTABLE".into(), "maybe".into());
            },
            "invalid value 'maybe'",
        ),
    ];
    for (spoil, expected) in cases {
        let mut o = object();
        let mut img = image();
        spoil(&mut img);
        o.image = Some(img);
        let fault = one(o.faults("c/o", BS));
        assert!(fault.contains(expected), "{fault} lacks {expected}");
    }
}

#[test]
fn a_creation_record_belongs_to_a_creating_volume_and_is_printable() {
    let creation = crate::repo::records::CreationRecord {
        pid: 42,
        host: "builder".into(),
        started: WHEN.into(),
        operation: "clone of images/debian.raw".into(),
        options: vec!["--hostname".into()],
    };
    let mut v = volume();
    v.status = "creating".into();
    v.creation = Some(creation.clone());
    assert!(v.faults("vm1", BS).is_empty(), "{:?}", v.faults("vm1", BS));
    v.status = "available".into();
    assert!(one(v.faults("vm1", BS)).contains("creation record"));
    v.status = "creating".into();
    v.creation = Some(crate::repo::records::CreationRecord {
        host: "evil\x1b[2J".into(),
        ..creation
    });
    let fault = one(v.faults("vm1", BS));
    assert!(
        fault.contains("creation host") && !fault.contains('\x1b'),
        "{fault}"
    );
}
