//! Rendering: a report becomes one JSON document (`--json`) or human text / comfy-table
//! tables on stdout; errors go to stderr (and, with `--json`, also as a JSON document).
//!
//! Text from the repository is untrusted: a hostile catalog may hold names or values with
//! control characters. Table cells escape every control character (see
//! [`escape_control`]); all human output and error messages additionally pass through
//! [`terminal_safe`], so no control character other than the line breaks and tabs of the
//! layout ever reaches the terminal. JSON output is escaped by serde.

use super::{Context, EXIT_ERROR, EXIT_OK};
pub use crate::services::names::escape_control;
use comfy_table::presets::NOTHING;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
use std::borrow::Cow;
use std::io::{self, Write};
use std::process::ExitCode;

/// Prints `report` as JSON, or runs `human` to print it for people (skipped with `-q`).
pub fn emit<T: Serialize>(
    ctx: &Context,
    report: &T,
    human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if ctx.json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else if !ctx.quiet {
        let mut text = Vec::new();
        human(&mut text)?;
        out.write_all(terminal_safe(&String::from_utf8_lossy(&text)).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// `text` with every control character except line feed and tab escaped (`\x1b`, `\r`,
/// `\u{85}`): the layout keeps its lines, a hostile value cannot drive the terminal.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let layout = |c: char| c == '\n' || c == '\t';
    if !text.chars().any(|c| c.is_control() && !layout(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if layout(c) {
            out.push(c);
        } else {
            out.push_str(&escape_control(c.encode_utf8(&mut buf)));
        }
    }
    Cow::Owned(out)
}

/// Renders a borderless table: no leading space, two spaces between columns, no trailing
/// whitespace.
fn finish(mut t: Table) -> String {
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t.trim_fmt()
}

/// A borderless table with a header row, numeric columns right-aligned.
pub fn table(header: &[&str], rows: Vec<Vec<String>>, right_aligned: &[usize]) -> String {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| Cell::new(h.to_uppercase())));
    for row in rows {
        t.add_row(row.into_iter().enumerate().map(|(i, c)| {
            let cell = Cell::new(escape_control(&c));
            if right_aligned.contains(&i) {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    finish(t)
}

/// Key/value lines for `info`-style output.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    for (k, v) in rows {
        t.add_row(vec![
            Cell::new(format!("{k}:")),
            Cell::new(escape_control(v)),
        ]);
    }
    finish(t)
}

/// Prints an error and returns its exit code. A broken pipe (e.g. `arch get x | head`) is
/// not an error.
pub fn report_error(ctx: &Context, err: &anyhow::Error) -> ExitCode {
    let broken_pipe = err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || matches!(
                c.downcast_ref::<crate::Error>(),
                Some(crate::Error::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe
            )
    });
    if broken_pipe {
        return ExitCode::from(EXIT_OK);
    }
    // Library errors already embed their cause in their message; other errors get their chain.
    let message = if err.downcast_ref::<crate::Error>().is_some() {
        err.to_string()
    } else {
        err.chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ")
    };
    let message = terminal_safe(&message);
    let kind = err
        .downcast_ref::<crate::Error>()
        .map_or("error", |e| e.kind());
    if ctx.json {
        let doc = serde_json::json!({ "error": { "kind": kind, "message": message } });
        let _ = writeln!(
            io::stdout(),
            "{}",
            serde_json::to_string_pretty(&doc).unwrap()
        );
    }
    let _ = writeln!(io::stderr(), "arch: error: {message}");
    ExitCode::from(EXIT_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_never_hold_raw_control_characters() {
        let t = table(&["name"], vec![vec!["a\nb\x1b[2J\u{9b}".into()]], &[]);
        assert!(t.contains("a\\nb\\x1b[2J\\u{9b}"), "{t}");
        assert_eq!(t.lines().count(), 2, "{t}");
        let kv = key_values(&[("name", "x\ry".into())]);
        assert_eq!(kv, "name:  x\\ry");
    }

    #[test]
    fn terminal_safe_keeps_layout_and_escapes_the_rest() {
        assert_eq!(terminal_safe("a\tb\nc"), "a\tb\nc");
        assert_eq!(terminal_safe("a\x1b[31mb\x07\r"), "a\\x1b[31mb\\x07\\r");
    }
}
