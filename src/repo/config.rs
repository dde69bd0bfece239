//! `arch.toml`: the repository's format version, block size and hash algorithm.

use crate::error::{Error, Result};
use crate::storage::map::valid_block_size;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The only block hash algorithm (Pithos compatibility).
pub const HASH_ALGORITHM: &str = "sha256";
/// Default block size: 4 MiB, as Pithos.
pub const DEFAULT_BLOCK_SIZE: u64 = 4 * 1024 * 1024;

/// Contents of `arch.toml`. Written once, at init; never changed afterwards.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// On-disk format version.
    pub format: u32,
    /// Block size in bytes: a power of two from 4 KiB to 64 MiB.
    pub block_size: u64,
    /// Block hash algorithm: "sha256".
    pub hash: String,
    /// The catalog on PostgreSQL (`postgres://USER@HOST:PORT/DB?schema=NAME`, never with a
    /// password); None for the local `meta/catalog.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    /// Where blocks and maps live when not in this directory: `s3://BUCKET[/PREFIX]`
    /// (credentials never: they come from AWS_* or ~/.aws).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

impl Config {
    /// A new configuration with the given block size.
    pub fn new(block_size: u64) -> Result<Config> {
        if !valid_block_size(block_size) {
            return Err(Error::invalid(format!(
                "block size {block_size} is not a power of two between 4 KiB and 64 MiB; try 4M (the default), 64K or 16M"
            )));
        }
        Ok(Config {
            format: FORMAT_VERSION,
            block_size,
            hash: HASH_ALGORITHM.into(),
            catalog: None,
            store: None,
        })
    }

    /// TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        format!(
            "# arch repository configuration; see docs/FORMAT.md. Do not edit.\n{}",
            toml::to_string(self).expect("config serializes")
        )
    }

    /// Parses and checks `arch.toml` text read from the repository at `root`.
    pub fn parse(root: &Path, text: &str) -> Result<Config> {
        let unsupported = |what: String, fix: &str| Error::UnsupportedRepository {
            path: root.to_path_buf(),
            what,
            fix: fix.into(),
        };
        // Look at the format version first, so a newer format is named as such even when
        // its other fields would not parse.
        let value: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Corrupt {
            path: root.join("arch.toml"),
            reason: e.message().to_string(),
        })?;
        match value.get("format").and_then(|v| v.as_integer()) {
            Some(v) if v == FORMAT_VERSION as i64 => {}
            Some(v) if v > FORMAT_VERSION as i64 => {
                return Err(unsupported(
                    format!("format {v}, newer than this arch supports ({FORMAT_VERSION})"),
                    "upgrade arch to open it",
                ));
            }
            Some(v) => {
                return Err(unsupported(
                    format!("unknown format {v}"),
                    "this arch reads format 1 only",
                ));
            }
            None => {
                return Err(Error::Corrupt {
                    path: root.join("arch.toml"),
                    reason: "no integer `format` field".into(),
                });
            }
        }
        let config: Config = toml::from_str(text).map_err(|e| Error::Corrupt {
            path: root.join("arch.toml"),
            reason: e.message().to_string(),
        })?;
        if config.hash != HASH_ALGORITHM {
            return Err(unsupported(
                format!("hash algorithm '{}'", config.hash),
                "this arch supports sha256 only",
            ));
        }
        if !valid_block_size(config.block_size) {
            return Err(Error::Corrupt {
                path: root.join("arch.toml"),
                reason: format!("invalid block_size {}", config.block_size),
            });
        }
        if let Some(url) = &config.catalog {
            crate::repo::db::pg::CatalogUrl::parse(url).map_err(|e| Error::Corrupt {
                path: root.join("arch.toml"),
                reason: format!("catalog: {e}"),
            })?;
        }
        if let Some(url) = &config.store {
            crate::storage::s3::StoreUrl::parse(url).map_err(|e| Error::Corrupt {
                path: root.join("arch.toml"),
                reason: format!("store: {e}"),
            })?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let c = Config::new(DEFAULT_BLOCK_SIZE).unwrap();
        assert_eq!(Config::parse(Path::new("/r"), &c.to_toml()).unwrap(), c);
    }

    #[test]
    fn a_catalog_url_round_trips_and_a_bad_one_is_corrupt() {
        let mut c = Config::new(4096).unwrap();
        c.catalog = Some("postgres://u@h:5432/db?schema=arch".into());
        assert_eq!(Config::parse(Path::new("/r"), &c.to_toml()).unwrap(), c);
        assert!(!Config::new(4096).unwrap().to_toml().contains("catalog"));
        c.catalog = Some("postgres://u:pw@h/db".into());
        let err = Config::parse(Path::new("/r"), &c.to_toml()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }

    #[test]
    fn store_round_trips_and_a_local_config_has_no_store_key() {
        let mut c = Config::new(DEFAULT_BLOCK_SIZE).unwrap();
        assert!(!c.to_toml().contains("store"));
        c.store = Some("s3://arch-data/team".into());
        assert_eq!(Config::parse(Path::new("/r"), &c.to_toml()).unwrap(), c);
        c.store = Some("s3://key:secret@arch-data".into());
        assert!(Config::parse(Path::new("/r"), &c.to_toml()).is_err());
    }

    #[test]
    fn newer_format_is_named() {
        let err = Config::parse(
            Path::new("/r"),
            "format = 2\nblock_size = 4096\nhash = \"sha256\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn bad_block_sizes_are_refused() {
        for bs in [0, 1000, 2048, 128 * 1024 * 1024] {
            assert!(Config::new(bs).is_err());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = Config::parse(Path::new("/r"), &s);
        }
    }
}
