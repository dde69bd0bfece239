//! Timestamps as RFC 3339 UTC strings, the form every record and report uses.

use std::time::SystemTime;

/// Now, as RFC 3339 UTC with second precision (e.g. `2026-11-25T10:00:00Z`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
