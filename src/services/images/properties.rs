//! Image properties: key normalization (case-insensitive, stored upper-case) and validation of
//! the properties the customization tasks read. Unknown keys are kept as given.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The property that, set to yes, makes a clone skip every customization task. It is kept in
/// step with the snapshot marker: `is_snapshot` <=> `EXCLUDE_ALL_TASKS=yes`.
pub const EXCLUDE_ALL_TASKS: &str = "EXCLUDE_ALL_TASKS";
/// Snapshot property naming the volume a snapshot was taken from.
pub const SOURCE_VOLUME: &str = "SOURCE_VOLUME";

/// Operating-system families snf-image knows.
pub const OS_FAMILIES: &[&str] = &["linux", "windows", "freebsd", "netbsd", "openbsd"];
/// Password hashing methods (crypt(3) schemes).
pub const PASSWD_HASHING_METHODS: &[&str] = &["sha256", "sha512"];

/// Longest accepted property key and value, in bytes.
const MAX_KEY_LEN: usize = 255;
const MAX_VALUE_LEN: usize = 65535;

/// Parses a boolean property value: yes/true/on/1 and no/false/off/0, any case.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// True when property `key` (upper-case) is present and a true boolean.
pub fn is_true(props: &BTreeMap<String, String>, key: &str) -> bool {
    props.get(key).and_then(|v| parse_bool(v)).unwrap_or(false)
}

/// Normalizes a property key: trimmed, upper-case, non-empty, no `=`, control character or
/// whitespace.
pub fn normalize_key(key: &str) -> Result<String> {
    let k = key.trim();
    if k.is_empty()
        || k.len() > MAX_KEY_LEN
        || k.chars()
            .any(|c| c == '=' || c.is_control() || c.is_whitespace())
    {
        return Err(Error::invalid(format!(
            "invalid property key '{key}': keys are 1-{MAX_KEY_LEN} bytes with no `=`, control character or whitespace"
        )));
    }
    Ok(k.to_ascii_uppercase())
}

fn is_boolean_key(key: &str) -> bool {
    key == EXCLUDE_ALL_TASKS || key == "EXCLUDE_MOUNTED_TASKS" || key.starts_with("EXCLUDE_TASK_")
}

fn bad_value(key: &str, value: &str, expected: &str) -> Error {
    Error::invalid(format!(
        "invalid value '{value}' for property {key}: expected {expected}"
    ))
}

fn valid_user_name(u: &str) -> bool {
    let mut chars = u.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && u.len() <= 32
        && u.char_indices().skip(1).all(|(i, c)| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '_'
                || c == '-'
                || (c == '$' && i == u.len() - 1)
        })
}

/// Validates and canonicalizes one property (key already normalized). Booleans become `yes`
/// or `no`; OSFAMILY and PASSWD_HASHING_METHOD become lower-case; USERS is re-joined with
/// single spaces. Unknown keys are returned unchanged.
pub fn canonical_value(key: &str, value: &str) -> Result<String> {
    if value.len() > MAX_VALUE_LEN || value.contains('\0') {
        return Err(bad_value(
            key,
            value,
            &format!("at most {MAX_VALUE_LEN} bytes without NUL"),
        ));
    }
    if is_boolean_key(key) {
        return match parse_bool(value) {
            Some(true) => Ok("yes".into()),
            Some(false) => Ok("no".into()),
            None => Err(bad_value(key, value, "yes/no, true/false, on/off or 1/0")),
        };
    }
    match key {
        "OSFAMILY" => {
            let v = value.to_ascii_lowercase();
            if OS_FAMILIES.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(bad_value(key, value, &OS_FAMILIES.join(", ")))
            }
        }
        "ROOT_PARTITION" => match value.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n.to_string()),
            _ => Err(bad_value(key, value, "a positive partition number, e.g. 1")),
        },
        "PASSWD_HASHING_METHOD" => {
            let v = value.to_ascii_lowercase();
            if PASSWD_HASHING_METHODS.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(bad_value(key, value, &PASSWD_HASHING_METHODS.join(", ")))
            }
        }
        "USERS" => {
            let users: Vec<&str> = value.split_whitespace().collect();
            if users.is_empty() || !users.iter().all(|u| valid_user_name(u)) {
                return Err(bad_value(
                    key,
                    value,
                    "a space-separated list of user names, e.g. \"root user\"",
                ));
            }
            Ok(users.join(" "))
        }
        _ => Ok(value.to_string()),
    }
}

/// Normalizes and validates a list of `KEY=VALUE` assignments into upper-case keys.
/// `EXCLUDE_ALL_TASKS` is refused: it moves only with the snapshot marker.
pub fn normalize(assignments: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in assignments {
        let key = normalize_key(k)?;
        if key == EXCLUDE_ALL_TASKS {
            return Err(Error::invalid(
                "EXCLUDE_ALL_TASKS follows the snapshot marker; use `arch image mark REF snapshot` \
                 or `arch image mark REF image` (or `register --snapshot`) instead",
            ));
        }
        out.insert(key.clone(), canonical_value(&key, v)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> Result<BTreeMap<String, String>> {
        normalize(&[(k.into(), v.into())])
    }

    #[test]
    fn keys_are_case_insensitive_and_stored_upper_case() {
        let p = one("osFamily", "Linux").unwrap();
        assert_eq!(p.get("OSFAMILY").map(String::as_str), Some("linux"));
        assert_eq!(
            one("my_key", "Keep Case").unwrap()["MY_KEY"],
            "Keep Case",
            "unknown keys keep their value"
        );
    }

    #[test]
    fn booleans_are_canonical() {
        for (v, want) in [("ON", "yes"), ("1", "yes"), ("false", "no"), ("Off", "no")] {
            assert_eq!(
                one("exclude_task_AssignHostname", v)
                    .unwrap()
                    .values()
                    .next()
                    .unwrap(),
                want
            );
        }
        assert!(one("EXCLUDE_MOUNTED_TASKS", "maybe").is_err());
    }

    #[test]
    fn known_properties_are_validated() {
        assert!(one("ROOT_PARTITION", "0").is_err());
        assert!(one("ROOT_PARTITION", "-1").is_err());
        assert_eq!(one("ROOT_PARTITION", " 2 ").unwrap()["ROOT_PARTITION"], "2");
        assert!(one("OSFAMILY", "plan9").is_err());
        assert!(one("PASSWD_HASHING_METHOD", "des").is_err());
        assert_eq!(
            one("PASSWD_HASHING_METHOD", "SHA512").unwrap()["PASSWD_HASHING_METHOD"],
            "sha512"
        );
        assert_eq!(one("USERS", " root   user ").unwrap()["USERS"], "root user");
        assert!(one("USERS", "root Bad!").is_err());
        assert!(one("USERS", "   ").is_err());
        assert!(one("", "x").is_err());
        assert!(one("A B", "x").is_err());
    }

    #[test]
    fn exclude_all_tasks_moves_only_with_the_marker() {
        let e = one("exclude_all_tasks", "yes").unwrap_err().to_string();
        assert!(e.contains("arch image mark"), "{e}");
    }
}
