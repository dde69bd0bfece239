//! The `store` URL of a repository, `s3://BUCKET[/PREFIX]`: parsed, checked, and refused when
//! it carries credentials (they come from AWS_* or ~/.aws, never from arch.toml).

use crate::error::{Error, Result};

/// A parsed `s3://BUCKET[/PREFIX]`. `prefix` has no leading or trailing `/` (empty: the
/// bucket's root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    pub bucket: String,
    pub prefix: String,
}

impl StoreUrl {
    /// Parses and checks `url`. Refused: another scheme, `user[:secret]@`, a query or
    /// fragment, an invalid bucket name, an empty or `.`/`..` path segment.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "store URL '{}': {why}; write it as s3://BUCKET or s3://BUCKET/PREFIX",
                crate::services::names::escape_control(url)
            ))
        };
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(bad("only s3:// URLs are supported"));
        };
        if rest.contains(['?', '#']) {
            return Err(bad("a query or fragment is not allowed"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(Error::invalid(
                "the store URL carries credentials (s3://KEY:SECRET@...): they are never written \
                 to arch.toml. Give the URL as s3://BUCKET[/PREFIX] and set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY in the environment, or put them in ~/.aws/credentials",
            ));
        }
        if !valid_bucket(authority) {
            return Err(bad(
                "the bucket name must be 3 to 63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit",
            ));
        }
        let path = path.trim_end_matches('/');
        if !path.is_empty() {
            for seg in path.split('/') {
                let ok = !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    return Err(bad(
                        "each prefix segment must be non-empty, not '.' or '..', and made of a-z, A-Z, 0-9, '-', '_' and '.'",
                    ));
                }
            }
        }
        Ok(StoreUrl {
            bucket: authority.to_string(),
            prefix: path.to_string(),
        })
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

fn valid_bucket(b: &str) -> bool {
    let bytes = b.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_and_prefix() {
        let u = StoreUrl::parse("s3://arch-data/team/images/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("arch-data", "team/images")
        );
        assert_eq!(u.to_string(), "s3://arch-data/team/images");
        let u = StoreUrl::parse("s3://arch-data").unwrap();
        assert_eq!(u.prefix, "");
        assert_eq!(u.to_string(), "s3://arch-data");
    }

    #[test]
    fn credentials_are_refused_and_point_at_the_environment() {
        for url in ["s3://AKIAX:hunter2@bucket/p", "s3://AKIAX@bucket"] {
            let e = StoreUrl::parse(url).unwrap_err().to_string();
            assert!(
                e.contains("AWS_ACCESS_KEY_ID") && e.contains("~/.aws"),
                "{e}"
            );
            assert!(
                !e.contains("hunter2") && !e.contains("AKIAX"),
                "not echoed: {e}"
            );
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "http://bucket",
            "s3://",
            "s3://Bucket",
            "s3://ab",
            "s3://b..",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "s3://bucket/p?x=1",
            "s3://bucket/sp ace",
        ] {
            assert!(StoreUrl::parse(url).is_err(), "{url}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "s3://[a-z0-9./@:-]{0,40}") {
            if let Ok(u) = StoreUrl::parse(&s) {
                prop_assert_eq!(StoreUrl::parse(&u.to_string()).unwrap(), u);
            }
        }
    }
}
