//! `arch.toml`: the repository's format version, block size, hash algorithm, and whether its
//! blocks are kept in packs.

use crate::error::{Error, Result};
use crate::storage::map::valid_block_size;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The newest on-disk format this build reads and writes: 2, a repository with packs. A
/// repository without packs is written as format 1 (older builds keep reading it); this build
/// opens both.
pub const FORMAT_VERSION: u32 = 2;
/// The format of a repository without packs.
pub const FORMAT_LOOSE: u32 = 1;
/// Largest block size for which `--packs auto` turns packs on.
pub const PACKS_AUTO_MAX_BLOCK: u64 = 64 * 1024;
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
    /// Blocks are stored many to a file in `packs/` (format 2, local store only); absent
    /// (false) in every format-1 file. Never changes after init.
    #[serde(default, skip_serializing_if = "is_false")]
    pub packs: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `arch init --packs`: whether the new repository keeps its blocks in packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PacksChoice {
    /// On when the block size is at most 64 KiB and the store is local.
    Auto,
    /// Packs whatever the block size (a local store only): many small files become few.
    On,
    /// One file per block under `blocks/` (format 1, readable by older arch builds).
    Off,
}

impl PacksChoice {
    /// Whether packs are on for a repository of `block_size` with blocks in `store` (None:
    /// this directory). Packs are never used with an object store.
    pub fn resolve(self, block_size: u64, store: Option<&str>) -> Result<bool> {
        match self {
            PacksChoice::Off => Ok(false),
            PacksChoice::Auto => Ok(store.is_none() && block_size <= PACKS_AUTO_MAX_BLOCK),
            PacksChoice::On if store.is_some() => Err(Error::invalid(
                "--packs on is for a local store only: an object store keeps every block as \
                 its own object; drop --packs (or use --packs off) with --store",
            )),
            PacksChoice::On => Ok(true),
        }
    }
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
            format: FORMAT_LOOSE,
            block_size,
            hash: HASH_ALGORITHM.into(),
            catalog: None,
            store: None,
            packs: false,
        })
    }

    /// Turns packs on or off, with the format that goes with it (2 with packs, else 1).
    pub fn set_packs(&mut self, packs: bool) {
        self.packs = packs;
        self.format = if packs { FORMAT_VERSION } else { FORMAT_LOOSE };
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
            Some(v) if (FORMAT_LOOSE as i64..=FORMAT_VERSION as i64).contains(&v) => {}
            Some(v) if v > FORMAT_VERSION as i64 => {
                return Err(unsupported(
                    format!("format {v}, newer than this arch supports ({FORMAT_VERSION})"),
                    "upgrade arch to open it",
                ));
            }
            Some(v) => {
                return Err(unsupported(
                    format!("unknown format {v}"),
                    "this arch reads formats 1 and 2 only",
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
        if config.packs != (config.format == FORMAT_VERSION)
            || (config.packs && config.store.is_some())
        {
            return Err(Error::Corrupt {
                path: root.join("arch.toml"),
                reason: format!(
                    "format {} with packs = {}{}: packs go with format 2 and a local store only",
                    config.format,
                    config.packs,
                    if config.store.is_some() {
                        " and a store"
                    } else {
                        ""
                    }
                ),
            });
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
            "format = 3\nblock_size = 4096\nhash = \"sha256\"",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("format 3, newer than this arch supports (2); upgrade arch"),
            "{err}"
        );
    }

    #[test]
    fn packs_make_format_2_and_a_loose_repository_stays_format_1() {
        let mut c = Config::new(4096).unwrap();
        let loose = c.to_toml();
        assert!(
            loose.contains("format = 1") && !loose.contains("packs"),
            "{loose}"
        );
        c.set_packs(true);
        let packed = c.to_toml();
        assert!(packed.contains("format = 2") && packed.contains("packs = true"));
        assert_eq!(Config::parse(Path::new("/r"), &packed).unwrap(), c);
        // Packs without format 2, format 2 without packs, packs with a store: damaged.
        for bad in [
            "format = 1\nblock_size = 4096\nhash = \"sha256\"\npacks = true",
            "format = 2\nblock_size = 4096\nhash = \"sha256\"",
            "format = 2\nblock_size = 4096\nhash = \"sha256\"\npacks = true\nstore = \"s3://b\"",
        ] {
            let err = Config::parse(Path::new("/r"), bad).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{bad}: {err}");
        }
        // Unknown fields are still refused.
        let err = Config::parse(Path::new("/r"), &format!("{loose}\nfoo = 1")).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }

    #[test]
    fn packs_choice_resolves_by_block_size_and_store() {
        use PacksChoice::*;
        assert!(Auto.resolve(4096, None).unwrap());
        assert!(Auto.resolve(64 << 10, None).unwrap());
        assert!(!Auto.resolve(128 << 10, None).unwrap());
        assert!(!Auto.resolve(4096, Some("s3://b")).unwrap());
        assert!(On.resolve(4 << 20, None).unwrap());
        assert!(!Off.resolve(4096, None).unwrap());
        let err = On.resolve(4096, Some("s3://b")).unwrap_err().to_string();
        assert!(err.contains("--packs off"), "{err}");
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
