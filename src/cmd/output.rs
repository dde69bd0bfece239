//! Rendering: a report becomes one JSON document (`--json`) or human text / comfy-table
//! tables on stdout; errors go to stderr (and, with `--json`, also as a JSON document).

use super::{Context, EXIT_ERROR, EXIT_OK};
use comfy_table::presets::NOTHING;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use serde::Serialize;
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
        human(&mut out)?;
    }
    out.flush()?;
    Ok(())
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
            let cell = Cell::new(c);
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
        t.add_row(vec![Cell::new(format!("{k}:")), Cell::new(v)]);
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
