//! Object names `container/object`: parsing, validation, and closest-name suggestions.

use crate::error::{Error, Result};
use std::fmt;

/// Longest accepted full name, in bytes (as Swift).
pub const MAX_NAME_LEN: usize = 1024;

/// A validated object name. The container has no `/`; the object part may (pseudo-folders).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectName {
    pub container: String,
    pub object: String,
}

impl ObjectName {
    /// Parses and validates `container/object`.
    pub fn parse(s: &str) -> Result<ObjectName> {
        let bad = |reason: &str| Error::InvalidName {
            name: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("it is empty; names look like `container/object`"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(bad(&format!(
                "it is {} bytes long; the limit is {MAX_NAME_LEN}",
                s.len()
            )));
        }
        if s.contains('\0') {
            return Err(bad("it contains a NUL byte"));
        }
        if s.starts_with('/') {
            return Err(bad(
                "it starts with `/`; write `container/object` without a leading slash",
            ));
        }
        let Some((container, object)) = s.split_once('/') else {
            return Err(bad(
                "it has no container; write `container/object`, e.g. `images/debian.raw`",
            ));
        };
        validate_container(container).map_err(|r| bad(&r))?;
        if object.is_empty() {
            return Err(bad("the object part after `container/` is empty"));
        }
        for seg in object.split('/') {
            match seg {
                "" => return Err(bad("it has an empty path segment (`//` or a trailing `/`)")),
                "." | ".." => return Err(bad("`.` and `..` are not allowed as path segments")),
                _ => {}
            }
        }
        Ok(ObjectName {
            container: container.to_string(),
            object: object.to_string(),
        })
    }

    /// The full name `container/object`.
    pub fn full(&self) -> String {
        format!("{}/{}", self.container, self.object)
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container, self.object)
    }
}

/// Checks a container name; returns the reason it is invalid.
pub fn validate_container(c: &str) -> std::result::Result<(), String> {
    if c.is_empty() {
        return Err("the container part is empty".into());
    }
    if c == "." || c == ".." {
        return Err("`.` and `..` are not container names".into());
    }
    if c.contains('/') {
        return Err("a container name cannot contain `/`".into());
    }
    if c.contains('\0') {
        return Err("it contains a NUL byte".into());
    }
    Ok(())
}

/// The candidate closest to `wanted` by edit distance, when it is close enough to be a typo.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (wanted.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(wanted, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        let n = ObjectName::parse("images/os/debian.raw").unwrap();
        assert_eq!(n.container, "images");
        assert_eq!(n.object, "os/debian.raw");
        assert_eq!(n.full(), "images/os/debian.raw");
    }

    #[test]
    fn invalid_names() {
        for s in [
            "", "noslash", "/c/o", "c/", "/o", "c/../x", "c/./x", "./x", "c//x", "c/x\0y",
        ] {
            assert!(ObjectName::parse(s).is_err(), "{s:?} accepted");
        }
        let long = format!("c/{}", "x".repeat(MAX_NAME_LEN));
        assert!(ObjectName::parse(&long).is_err());
    }

    #[test]
    fn suggestions_only_for_typos() {
        let names = ["images/debian.raw", "images/ubuntu.raw"];
        assert_eq!(
            closest("images/debain.raw", names).as_deref(),
            Some("images/debian.raw")
        );
        assert_eq!(closest("zzz/qqq", names), None);
    }
}
