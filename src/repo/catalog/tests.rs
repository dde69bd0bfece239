//! Catalog decoding under hostile input: arbitrary bytes and JSON-shaped catalogs whose
//! fields hold hostile values never panic, and whatever `decode_valid` accepts is safe to use
//! (volume ids are uuids, block sizes are the repository's, sizes within the limit).

use super::*;
use crate::repo::records::{MAX_COUNTER, is_uuid};
use crate::storage::map::MAX_RESOURCE_SIZE;
use proptest::prelude::*;
use serde_json::{Value, json};

const BS: u32 = 4096;
const UUID: &str = "0b6f8c7e-3c1a-4d2e-9f00-123456789abc";
const ZERO: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn valid_object(uuid: &str) -> Value {
    json!({"uuid": uuid, "bytes": 0, "hash": ZERO, "map": ZERO, "block_size": BS,
           "content_type": "application/octet-stream", "version": 1,
           "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "meta": {}})
}

fn valid_volume(id: &str) -> Value {
    json!({"id": id, "size": 4096, "block_size": BS, "source": null, "source_object": null,
           "base_map": ZERO, "epoch": 1, "created_at": "2026-01-01T00:00:00Z",
           "modified_at": "2026-01-01T00:00:00Z", "status": "available"})
}

fn decode_json(v: &Value) -> Result<Catalog> {
    Catalog::decode_valid(Path::new("c"), &serde_json::to_vec(v).unwrap(), BS)
}

#[test]
fn empty_round_trip() {
    let c = Catalog::default();
    assert_eq!(
        Catalog::decode_valid(Path::new("c"), &c.encode(), BS).unwrap(),
        c
    );
}

#[test]
fn a_hostile_volume_id_makes_the_catalog_corrupt() {
    let cat = json!({"format": 1, "volumes": {"vm1": valid_volume("../../x")}});
    let err = decode_json(&cat).unwrap_err();
    assert_eq!(err.kind(), "corrupt");
    assert!(
        err.to_string()
            .contains("volume 'vm1': id '../../x' is not a uuid"),
        "{err}"
    );
    // The lenient decode keeps it, for fsck to report.
    let raw = Catalog::decode(Path::new("c"), &serde_json::to_vec(&cat).unwrap()).unwrap();
    let v = raw.violations(BS);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, "invalid_record");
    assert_eq!(v[0].resources, vec!["volume:vm1".to_string()]);
}

#[test]
fn every_violation_is_listed_and_the_error_counts_the_rest() {
    let mut bad = valid_volume(UUID);
    bad["block_size"] = json!(0);
    bad["epoch"] = json!(0);
    let cat = json!({"format": 1,
        "objects": {"a/x": valid_object(UUID), "b/y": valid_object(UUID), "c/z\u{1b}": valid_object("0b6f8c7e-3c1a-4d2e-9f00-000000000000")},
        "volumes": {"v1": bad}});
    let raw = Catalog::decode(Path::new("c"), &serde_json::to_vec(&cat).unwrap()).unwrap();
    let v = raw.violations(BS);
    let kinds: Vec<_> = v.iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        [
            "invalid_record",
            "invalid_record",
            "invalid_record",
            "duplicate_uuid"
        ]
    );
    assert!(
        v[0].message.starts_with("object 'c/z\\x1b': invalid name"),
        "{}",
        v[0].message
    );
    assert!(v[1].message.contains("block_size 0"));
    assert!(v[2].message.contains("epoch 0"));
    assert_eq!(v[3].resources, ["object:a/x", "object:b/y"]);
    assert!(
        v[3].message
            .contains(&format!("objects 'a/x', 'b/y' share the uuid '{UUID}'"))
    );
    let err = decode_json(&cat).unwrap_err().to_string();
    assert!(err.contains("(and 3 more problems)"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err}");
}

#[test]
fn volumes_sharing_an_id_are_a_violation() {
    let cat = json!({"format": 1, "volumes": {"a": valid_volume(UUID), "b": valid_volume(UUID)}});
    let err = decode_json(&cat).unwrap_err().to_string();
    assert!(err.contains("volumes 'a', 'b' share the id"), "{err}");
}

/// Values that break records: wrong types, out-of-range numbers, path tricks, control
/// characters, and a few valid ones so that some records pass.
fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!([])),
        Just(json!({})),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(0)),
        Just(json!(1)),
        Just(json!(BS)),
        Just(json!(u32::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(MAX_COUNTER + 1)),
        Just(json!(MAX_RESOURCE_SIZE + 1)),
        Just(json!("")),
        Just(json!("../../x")),
        Just(json!("/etc")),
        Just(json!("a\nb")),
        Just(json!("\u{1b}[2J")),
        Just(json!("x ")),
        Just(json!(UUID)),
        Just(json!(ZERO)),
        Just(json!("available")),
        Just(json!("2026-01-01T00:00:00Z")),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

/// A record: a valid one with some fields replaced by hostile values or removed.
fn record(valid: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = valid.as_object().unwrap().keys().cloned().collect();
    let n = keys.len();
    proptest::collection::vec((0..n + 2, hostile()), 0..4).prop_map(move |edits| {
        let mut rec = valid.clone();
        let obj = rec.as_object_mut().unwrap();
        for (i, value) in edits {
            match i {
                i if i < n => {
                    obj.insert(keys[i].clone(), value);
                }
                i if i == n => {
                    obj.remove(&keys[(value.to_string().len()) % n]);
                }
                _ => {
                    obj.insert(
                        "image".into(),
                        json!({"name": value, "owner": "o",
                        "status": "AVAILABLE", "disk_format": "diskdump",
                        "container_format": "bare", "is_public": false, "is_snapshot": false,
                        "created_at": "2026-01-01T00:00:00Z", "updated_at": "x"}),
                    );
                }
            }
        }
        rec
    })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("c/o".to_string()),
        Just("vm".to_string()),
        Just("../x".to_string()),
        Just("c/o\n".to_string()),
        "\\PC{0,8}(/\\PC{0,8})?",
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Catalog::decode_valid(Path::new("c"), &bytes, BS);
    }

    #[test]
    fn hostile_records_never_panic_and_what_passes_is_safe(
        objects in proptest::collection::vec((name(), record(valid_object(UUID))), 0..4),
        volumes in proptest::collection::vec((name(), record(valid_volume(UUID))), 0..4),
    ) {
        let cat = json!({"format": 1,
            "objects": objects.into_iter().collect::<serde_json::Map<_, _>>(),
            "volumes": volumes.into_iter().collect::<serde_json::Map<_, _>>()});
        let bytes = serde_json::to_vec(&cat).unwrap();
        if let Ok(raw) = Catalog::decode(Path::new("c"), &bytes) {
            let violations = raw.violations(BS);
            prop_assert!(violations.iter().all(|v| !v.message.chars().any(char::is_control)));
            match Catalog::decode_valid(Path::new("c"), &bytes, BS) {
                Ok(valid) => {
                    prop_assert!(violations.is_empty());
                    for v in valid.volumes.values() {
                        prop_assert!(is_uuid(&v.id) && v.block_size == BS);
                        prop_assert!(v.size <= MAX_RESOURCE_SIZE && v.epoch >= 1);
                    }
                    for o in valid.objects.values() {
                        prop_assert!(o.block_size == BS && o.bytes <= MAX_RESOURCE_SIZE);
                    }
                }
                Err(e) => prop_assert!(!violations.is_empty() && e.kind() == "corrupt"),
            }
        }
    }
}
