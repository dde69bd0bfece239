//! Names and display text: parsing and validation of object names `container/object`,
//! volume names and image display names, the escaping of untrusted text for terminals, and
//! closest-name suggestions.
//!
//! Every name arch stores is printable: no control character (C0 U+0000-U+001F, DEL U+007F,
//! C1 U+0080-U+009F) and no leading or trailing whitespace, so a listing shows it exactly
//! and it cannot move the cursor or recolour a terminal. The same rules are checked when a
//! name is read back from the catalog (see `repo::records`).

use crate::error::{Error, Result};
use std::borrow::Cow;
use std::fmt;

/// Longest accepted full object name and volume name, in bytes (as Swift).
pub const MAX_NAME_LEN: usize = 1024;
/// Longest accepted image display name, in bytes.
pub const MAX_DISPLAY_NAME_LEN: usize = 255;

/// Checks that `s` is printable text: no control character (C0, DEL, C1) and no leading or
/// trailing whitespace. Returns the reason it is not.
pub fn check_printable(s: &str) -> std::result::Result<(), String> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "it contains the control character {}; names may hold only printable characters",
            describe_char(c)
        ));
    }
    if s.starts_with(char::is_whitespace) {
        return Err("it starts with whitespace".into());
    }
    if s.ends_with(char::is_whitespace) {
        return Err("it ends with whitespace".into());
    }
    Ok(())
}

/// `U+000A (\n)`-style description of a character, for error messages.
fn describe_char(c: char) -> String {
    format!("U+{:04X} ({})", c as u32, escape_control(&c.to_string()))
}

/// Text from the repository made safe for a terminal: every control character (C0, DEL, C1)
/// is written as an escape (`\n`, `\t`, `\r`, `\x1b`, `\u{85}`); other text is unchanged.
/// Valid names never contain control characters, so they are never altered.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A validated object name. The container has no `/`; the object part may (pseudo-folders).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectName {
    pub container: String,
    pub object: String,
}

impl ObjectName {
    /// Parses and validates `container/object`.
    pub fn parse(s: &str) -> Result<ObjectName> {
        let (container, object) = ObjectName::split_valid(s)?;
        Ok(ObjectName {
            container: container.to_string(),
            object: object.to_string(),
        })
    }

    /// Validates `container/object` without allocating; returns its two parts.
    pub fn split_valid(s: &str) -> Result<(&str, &str)> {
        let bad = |reason: &str| Error::InvalidName {
            name: escape_control(s).into_owned(),
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
        check_printable(object).map_err(|r| bad(&r))?;
        for seg in object.split('/') {
            match seg {
                "" => return Err(bad("it has an empty path segment (`//` or a trailing `/`)")),
                "." | ".." => return Err(bad("`.` and `..` are not allowed as path segments")),
                _ => {}
            }
        }
        Ok((container, object))
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
    check_printable(c)
}

/// Validates a volume name: the container rules (no `/`, not `.` or `..`, printable, no
/// leading or trailing whitespace) and at most [`MAX_NAME_LEN`] bytes, as object names.
pub fn validate_volume_name(name: &str) -> Result<()> {
    let bad = |reason: String| Error::InvalidName {
        name: escape_control(name).into_owned(),
        reason,
    };
    if name.len() > MAX_NAME_LEN {
        return Err(bad(format!(
            "it is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(bad("`.` and `..` are not volume names".into()));
    }
    if name.contains('/') {
        return Err(bad(
            "a volume name cannot contain `/` (volumes are not in containers)".into(),
        ));
    }
    check_printable(name).map_err(bad)
}

/// Validates an image display name: 1 to [`MAX_DISPLAY_NAME_LEN`] bytes of printable text
/// without leading or trailing whitespace. Returns the reason it is invalid.
pub fn check_display_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > MAX_DISPLAY_NAME_LEN {
        return Err(format!(
            "it is {} bytes long; the limit is {MAX_DISPLAY_NAME_LEN}",
            name.len()
        ));
    }
    check_printable(name)
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
            "",
            "noslash",
            "/c/o",
            "c/",
            "/o",
            "c/../x",
            "c/./x",
            "./x",
            "c//x",
            "c/x\0y",
            "c/x\ny",
            "c/x\x1b[2J",
            "c/x\x7f",
            "c/x\u{85}",
            "c/x\u{9f}",
            "c\t/x",
            "c/x ",
            "c /x",
            " c/x",
            "c/ x",
            "c/x\u{a0}",
        ] {
            assert!(ObjectName::parse(s).is_err(), "{s:?} accepted");
        }
        let long = format!("c/{}", "x".repeat(MAX_NAME_LEN));
        assert!(ObjectName::parse(&long).is_err());
    }

    #[test]
    fn printable_names_with_inner_spaces_and_unicode_are_valid() {
        for s in ["c/a b", "c/dir /x", "c/καλημέρα", "c/a\\b", "c/x\u{a0}y"] {
            assert!(ObjectName::parse(s).is_ok(), "{s:?} refused");
        }
    }

    #[test]
    fn volume_names_follow_container_rules_and_the_object_length_limit() {
        assert!(validate_volume_name("vm1").is_ok());
        assert!(validate_volume_name(&"v".repeat(MAX_NAME_LEN)).is_ok());
        for s in ["", ".", "..", "a/b", "v\n", "v\x1b", "v ", " v", "v\0"] {
            assert!(validate_volume_name(s).is_err(), "{s:?} accepted");
        }
        let err = validate_volume_name(&"v".repeat(MAX_NAME_LEN + 1)).unwrap_err();
        assert!(err.to_string().contains("limit is 1024"), "{err}");
        let err = validate_volume_name("v\x1b[2J").unwrap_err().to_string();
        assert!(!err.contains('\x1b') && err.contains("\\x1b"), "{err}");
        assert!(err.contains("U+001B"), "{err}");
    }

    #[test]
    fn display_names() {
        assert!(check_display_name("Debian 12 (bookworm)").is_ok());
        for s in ["", " ", "x ", " x", "a\nb", "a\u{7f}"] {
            assert!(check_display_name(s).is_err(), "{s:?} accepted");
        }
        assert!(check_display_name(&"x".repeat(MAX_DISPLAY_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn escaping_removes_every_control_character() {
        assert_eq!(escape_control("plain é"), "plain é");
        assert!(matches!(escape_control("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("a\nb\tc\rd\x1be\x7ff\u{85}g\0"),
            "a\\nb\\tc\\rd\\x1be\\x7ff\\u{85}g\\x00"
        );
    }

    proptest::proptest! {
        #[test]
        fn escaped_text_has_no_control_characters(s in "\\PC*|[\\x00-\\x{9f}]{0,40}") {
            proptest::prop_assert!(!escape_control(&s).chars().any(char::is_control));
        }
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
