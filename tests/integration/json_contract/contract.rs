//! The schema side of the JSON contract test: docs/json/ loaded with key order kept, each
//! output validated (jsonschema) and its key order checked against the schema's.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A JSON value that keeps object keys in document order. (`serde_json::Value` sorts them
/// unless serde_json's `preserve_order` feature is on, and turning that on here would turn
/// it on in the binary under test too, hiding the very bug this checks for.)
#[derive(Debug, Clone)]
pub enum Ordered {
    Scalar(serde_json::Value),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ordered, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(serde_json::Value::Null))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(Ordered::Array(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = a.next_entry()? {
                    out.push(kv);
                }
                Ok(Ordered::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Ordered {
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Ordered::Scalar(v) => v.clone(),
            Ordered::Array(a) => a.iter().map(Ordered::to_value).collect(),
            Ordered::Object(o) => o.iter().map(|(k, v)| (k.clone(), v.to_value())).collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Ordered> {
        match self {
            Ordered::Object(o) => o.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Ordered::Scalar(serde_json::Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

const DEFS: &str = "defs.schema.json";
const BASE: &str = "https://arch.invalid/json/";

/// The schemas of docs/json/ and the ones the test has checked an output against.
pub struct Contract {
    pub schemas: BTreeMap<String, Ordered>,
    defs: serde_json::Value,
    pub used: RefCell<BTreeSet<String>>,
}

impl Contract {
    pub fn load() -> Contract {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json");
        let mut schemas = BTreeMap::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let Some(stem) = name.strip_suffix(".schema.json") else {
                panic!("{name}: docs/json holds only NAME.schema.json files");
            };
            let doc: Ordered = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let id = doc.get("$id").and_then(Ordered::str);
            assert_eq!(id, Some(format!("{BASE}{name}").as_str()), "{name}: $id");
            schemas.insert(stem.to_string(), doc);
        }
        let defs = schemas["defs"].to_value();
        Contract {
            schemas,
            defs,
            used: RefCell::new(BTreeSet::new()),
        }
    }

    /// Parses `stdout` as one JSON document, validates it against `docs/json/<schema>.schema.json`
    /// and checks its key order; returns it.
    pub fn check(&self, schema: &str, stdout: &[u8]) -> serde_json::Value {
        let text = String::from_utf8_lossy(stdout);
        let doc: Ordered = serde_json::from_slice(stdout)
            .unwrap_or_else(|e| panic!("{schema}: not one JSON document ({e}): {text}"));
        let node = self
            .schemas
            .get(schema)
            .unwrap_or_else(|| panic!("no docs/json/{schema}.schema.json"));
        let registry = jsonschema::Registry::new()
            .add(format!("{BASE}{DEFS}"), self.defs.clone())
            .unwrap()
            .prepare()
            .unwrap();
        let validator = jsonschema::options()
            .with_registry(&registry)
            .build(&node.to_value())
            .unwrap_or_else(|e| panic!("{schema}.schema.json: {e}"));
        let value = doc.to_value();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{schema}: {errors:#?}\n{text}");
        self.order(&doc, node, schema, "");
        self.used.borrow_mut().insert(schema.to_string());
        value
    }

    /// The schema node `reference` names: `#/$defs/X` inside defs, `defs.schema.json#/$defs/X`.
    pub fn deref(&self, reference: &str) -> &Ordered {
        let name = reference
            .strip_prefix("#/$defs/")
            .or_else(|| reference.strip_prefix("defs.schema.json#/$defs/"))
            .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
        self.schemas["defs"]
            .get("$defs")
            .and_then(|d| d.get(name))
            .unwrap_or_else(|| panic!("$ref {reference}: no such definition"))
    }

    fn target<'s>(&'s self, node: &'s Ordered) -> Option<&'s Ordered> {
        node.get("$ref")
            .and_then(Ordered::str)
            .map(|r| self.deref(r))
    }

    /// The properties `node` declares, in order: those of its `$ref` first, then its own
    /// (a `$ref` with sibling properties is how a shape extends another, as serde's flatten).
    fn properties<'s>(&'s self, node: &'s Ordered) -> Vec<(&'s str, &'s Ordered)> {
        let mut out = self
            .target(node)
            .map_or_else(Vec::new, |t| self.properties(t));
        if let Some(Ordered::Object(props)) = node.get("properties") {
            out.extend(props.iter().map(|(k, v)| (k.as_str(), v)));
        }
        out
    }

    /// A keyword of `node` or of what its `$ref` names.
    fn keyword<'s>(&'s self, node: &'s Ordered, key: &str) -> Option<&'s Ordered> {
        node.get(key)
            .or_else(|| self.target(node).and_then(|t| self.keyword(t, key)))
    }

    /// Checks that each object of `doc` writes its keys in the order its schema lists them
    /// (optional keys may be absent), and that free maps have sorted keys.
    pub fn order(&self, doc: &Ordered, node: &Ordered, schema: &str, path: &str) {
        let branches = self
            .keyword(node, "anyOf")
            .or_else(|| self.keyword(node, "oneOf"));
        if let Some(Ordered::Array(branches)) = branches {
            // The branch for this value: for an object, the one declaring all its keys.
            let fits = |b: &Ordered| match doc {
                Ordered::Object(o) => {
                    let props = self.properties(b);
                    let free = self.keyword(b, "additionalProperties");
                    !props.is_empty() && o.iter().all(|(k, _)| props.iter().any(|p| p.0 == k))
                        || props.is_empty() && matches!(free, Some(Ordered::Object(_)))
                }
                _ => true,
            };
            if let Some(b) = branches.iter().find(|b| fits(b)) {
                self.order(doc, b, schema, path);
            }
            return;
        }
        match doc {
            Ordered::Object(entries) => {
                let props = self.properties(node);
                if props.is_empty() {
                    let keys: Vec<&String> = entries.iter().map(|(k, _)| k).collect();
                    assert!(
                        keys.is_sorted(),
                        "{schema}: keys of {path} not sorted: {keys:?}"
                    );
                    if let Some(free @ Ordered::Object(_)) =
                        self.keyword(node, "additionalProperties")
                    {
                        for (k, v) in entries {
                            self.order(v, free, schema, &format!("{path}/{k}"));
                        }
                    }
                    return;
                }
                let mut last = None;
                for (k, v) in entries {
                    let i = props
                        .iter()
                        .position(|p| p.0 == k)
                        .unwrap_or_else(|| panic!("{schema}: {path}/{k} is not in the schema"));
                    assert!(
                        last.is_none_or(|l| l < i),
                        "{schema}: {path}/{k} is out of the documented order {:?}; keys: {:?}",
                        props.iter().map(|p| p.0).collect::<Vec<_>>(),
                        entries.iter().map(|e| &e.0).collect::<Vec<_>>()
                    );
                    last = Some(i);
                    self.order(v, props[i].1, schema, &format!("{path}/{k}"));
                }
            }
            Ordered::Array(items) => {
                if let Some(item) = self.keyword(node, "items") {
                    for (i, v) in items.iter().enumerate() {
                        self.order(v, item, schema, &format!("{path}/{i}"));
                    }
                }
            }
            Ordered::Scalar(_) => {}
        }
    }
}
