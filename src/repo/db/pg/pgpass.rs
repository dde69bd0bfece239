//! The catalog password, found where libpq finds it: `PGPASSWORD`, else the password file
//! (`PGPASSFILE`, else `~/.pgpass`). The `postgres` crate reads neither file nor variable,
//! so arch does, with libpq's rules: lines `hostname:port:database:username:password`, `*`
//! matches anything, `\:` and `\\` escape, `#` starts a comment; the file is ignored (with
//! a warning) unless it is a regular file without group or other permissions.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The password for `user` on `dbname` at `host:port`, if one is configured.
pub fn password(host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    if let Ok(p) = std::env::var("PGPASSWORD") {
        return Some(p);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    from_file(&file, host, port, dbname, user)
}

/// The password for the connection from the password file `file`; None when the file is
/// absent, not private, or has no matching line.
pub fn from_file(
    file: &std::path::Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let meta = std::fs::metadata(file).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "arch: warning: password file {} has group or world access; it is ignored \
             (chmod 0600 {})",
            file.display(),
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    lookup(&text, host, port, dbname, user)
}

/// The password of the first line of `text` matching the connection.
pub fn lookup(text: &str, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(fields)
        .find(|f| {
            f[..4]
                .iter()
                .zip(wanted)
                .all(|(pattern, value)| pattern == "*" || pattern == value)
        })
        .map(|f| f[4].clone())
}

/// The five fields of a line, unescaped; None for a line with fewer.
fn fields(line: &str) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.last_mut()?.push(chars.next().unwrap_or('\\')),
            // The password is the rest of the line, colons included.
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut()?.push(c),
        }
    }
    (out.len() == 5).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_rules() {
        let text = "# comment\n\
                    other:5432:db:u:nope\n\
                    h:5433:*:u:right\\:one\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            lookup(text, "h", 5433, "x", "u").as_deref(),
            Some("right:one")
        );
        assert_eq!(
            lookup(text, "h", 5432, "db", "u").as_deref(),
            Some("fallback")
        );
        assert_eq!(lookup("h:1:d:u\n", "h", 1, "d", "u"), None);
        assert_eq!(
            lookup("h:1:d:u:pa:ss\n", "h", 1, "d", "u").as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            lookup("a\\\\b:1:d:u:p\n", "a\\b", 1, "d", "u").as_deref(),
            Some("p")
        );
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(&f, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(from_file(&f, "h", 1, "d", "u").as_deref(), Some("pw"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(from_file(&f, "h", 1, "d", "u"), None);
    }
}
