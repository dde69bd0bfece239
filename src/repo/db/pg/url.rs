//! The `catalog` URL of `arch.toml`: `postgres://USER@HOST[:PORT]/DB[?schema=NAME]`.
//! Parsed strictly; a URL carrying a password is refused (credentials live in PGPASSWORD or
//! ~/.pgpass, never in `arch.toml`).

use crate::error::{Error, Result};

/// Default schema of a repository's catalog.
pub const DEFAULT_SCHEMA: &str = "arch";
/// Default PostgreSQL port.
pub const DEFAULT_PORT: u16 = 5432;

/// A parsed catalog location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogUrl {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub schema: String,
}

fn bad(url: &str, why: &str) -> Error {
    Error::invalid(format!(
        "catalog URL '{}' {why}; the form is postgres://USER@HOST[:PORT]/DB[?schema=NAME]",
        crate::services::names::escape_control(url)
    ))
}

/// True for a schema name arch accepts: lower-case letters, digits and `_`, not starting
/// with a digit, at most 63 bytes (PostgreSQL's identifier limit) and not `pg_*`.
pub fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with("pg_")
        && s.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn decode(url: &str, part: &str) -> Result<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(url, "has a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(url, "is not UTF-8 once decoded"))
}

impl CatalogUrl {
    /// Parses `url`. The user defaults to PGUSER (then the login name) when the URL has
    /// none, as libpq does.
    pub fn parse(url: &str) -> Result<CatalogUrl> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| bad(url, "does not start with postgres://"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad(url, "names no database"))?;
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if userinfo.is_some_and(|u| u.contains(':')) {
            return Err(Error::invalid(
                "the catalog URL carries a password; arch never writes credentials to \
                 arch.toml: remove it from the URL and set PGPASSWORD, or add a line \
                 HOST:PORT:DB:USER:PASSWORD to ~/.pgpass (mode 0600)",
            ));
        }
        let user = match userinfo {
            Some(u) if !u.is_empty() => decode(url, u)?,
            _ => std::env::var("PGUSER")
                .ok()
                .filter(|u| !u.is_empty())
                .or_else(|| std::env::var("USER").ok())
                .ok_or_else(|| bad(url, "names no user (and PGUSER is not set)"))?,
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad(url, "has an unclosed [ in its host"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad(url, "names no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(url, "has an invalid port"))?,
        };
        let (db, query) = match path.split_once('?') {
            Some((d, q)) => (d, Some(q)),
            None => (path, None),
        };
        let dbname = decode(url, db)?;
        if dbname.is_empty() || dbname.contains('/') {
            return Err(bad(url, "names no database"));
        }
        let mut schema = DEFAULT_SCHEMA.to_string();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("schema", s)) => schema = decode(url, s)?,
                Some(("password", _)) => return Err(bad(url, "carries a password")),
                _ => return Err(bad(url, "has a parameter other than schema=NAME")),
            }
        }
        if !valid_schema(&schema) {
            return Err(bad(
                url,
                "has an invalid schema (lower-case letters, digits and _, at most 63, not pg_)",
            ));
        }
        Ok(CatalogUrl {
            user,
            host,
            port,
            dbname,
            schema,
        })
    }
}

impl std::fmt::Display for CatalogUrl {
    /// The URL without credentials, in the canonical form arch writes to `arch.toml`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "postgres://{}@{host}:{}/{}?schema={}",
            self.user, self.port, self.dbname, self.schema
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let u = CatalogUrl::parse("postgres://arch@db.example:6543/meta?schema=lib_1").unwrap();
        assert_eq!(
            (u.user.as_str(), u.host.as_str(), u.port, u.dbname.as_str()),
            ("arch", "db.example", 6543, "meta")
        );
        assert_eq!(u.schema, "lib_1");
        assert_eq!(
            u.to_string(),
            "postgres://arch@db.example:6543/meta?schema=lib_1"
        );
        let d = CatalogUrl::parse("postgresql://a@[::1]/m").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("::1", DEFAULT_PORT));
        assert_eq!(d.schema, DEFAULT_SCHEMA);
        assert_eq!(d.to_string(), "postgres://a@[::1]:5432/m?schema=arch");
    }

    #[test]
    fn passwords_are_refused_with_the_place_they_go() {
        for url in [
            "postgres://u:secret@h/db",
            "postgres://u@h/db?password=secret",
        ] {
            let e = CatalogUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains("password"), "{e}");
            assert!(!e.contains("secret") || url.contains('?'), "{e}");
        }
        let e = CatalogUrl::parse("postgres://u:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("PGPASSWORD") && e.contains(".pgpass"), "{e}");
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "mysql://u@h/db",
            "postgres://u@h",
            "postgres://u@h/",
            "postgres://u@:5432/db",
            "postgres://u@h:0/db",
            "postgres://u@h:x/db",
            "postgres://u@h/db?schema=Bad",
            "postgres://u@h/db?schema=pg_x",
            "postgres://u@h/db?schema=1x",
            "postgres://u@h/db?sslmode=require",
        ] {
            assert!(CatalogUrl::parse(url).is_err(), "{url}");
        }
    }
}
