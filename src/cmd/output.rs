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
            // A JSON document cut short by the reader (`arch volume info --json | head -1`).
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
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
    if ctx.json {
        print_error_document(error_kind(err), &message);
    }
    let _ = writeln!(io::stderr(), "arch: error: {message}");
    ExitCode::from(EXIT_ERROR)
}

/// The `kind` of an error document: the library error's own kind, `io` for a bare I/O error,
/// `other` for the rest (see docs/JSON.md for the list).
fn error_kind(err: &anyhow::Error) -> &'static str {
    if let Some(e) = err.downcast_ref::<crate::Error>() {
        return e.kind();
    }
    if err.chain().any(|c| c.is::<io::Error>()) {
        return "io";
    }
    "other"
}

/// Writes `{"error": {"kind": .., "message": ..}}` on stdout: the one shape of every failure
/// with `--json`.
fn print_error_document(kind: &str, message: &str) {
    #[derive(Serialize)]
    struct Doc<'a> {
        error: ErrorBody<'a>,
    }
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        kind: &'a str,
        message: &'a str,
    }
    let doc = Doc {
        error: ErrorBody { kind, message },
    };
    let text = serde_json::to_string_pretty(&doc).expect("an error document serializes");
    let _ = writeln!(io::stdout(), "{text}");
}

/// Reports a command line that clap refused (unknown subcommand or option, missing or invalid
/// argument) and returns its exit code. `json` is whether `--json` appears among the
/// arguments: clap failed, so it could not say. `--help` and `--version` print and exit 0.
pub fn report_usage_error(json: bool, err: &clap::Error) -> ExitCode {
    if !err.use_stderr() {
        let _ = err.print();
        return ExitCode::from(EXIT_OK);
    }
    if json {
        print_error_document(usage_error_kind(err), &usage_error_message(err));
    }
    let _ = err.print();
    ExitCode::from(EXIT_ERROR)
}

/// `invalid_name` (and any other library kind) when a value parser returned a library error,
/// `invalid_argument` for another refused value (a bad size), `usage` for the rest.
fn usage_error_kind(err: &clap::Error) -> &'static str {
    use clap::error::ErrorKind;
    let source = std::error::Error::source(err);
    if let Some(e) = source.and_then(|s| s.downcast_ref::<crate::Error>()) {
        return e.kind();
    }
    match err.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => "invalid_argument",
        _ => "usage",
    }
}

/// Clap's message without its `error: ` prefix, usage block and help hint: the first line,
/// then its tips (`tip: a similar subcommand exists: 'info'`), joined with `; `.
fn usage_error_message(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let mut lines = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_string();
    // Lines after one ending in `:` are its list (the missing arguments): `a: <X>, <Y>`.
    let mut in_list = message.ends_with(':');
    let mut list_started = false;
    for line in lines {
        if in_list && !line.starts_with("tip:") {
            message.push_str(if list_started { ", " } else { " " });
            list_started = true;
        } else {
            message.push_str("; ");
            in_list = line.ends_with(':');
            list_started = false;
        }
        message.push_str(line);
    }
    terminal_safe(&message).into_owned()
}

/// Whether `--json` is among the arguments (before a `--` that ends the options), read from
/// the raw command line so that a command line clap refuses still gets a JSON error.
pub fn json_requested(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
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
    fn json_is_found_before_the_end_of_options_only() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(json_requested(args(&["arch", "info", "a/../b", "--json"])));
        assert!(json_requested(args(&["arch", "--json", "nope"])));
        assert!(!json_requested(args(&["arch", "info", "x"])));
        assert!(!json_requested(args(&["arch", "put", "--", "--json"])));
        // The program name is not an argument.
        assert!(!json_requested(args(&["--json"])));
    }

    #[test]
    fn usage_errors_keep_the_message_and_tips_only() {
        use clap::Parser;
        let err = crate::cli::Cli::try_parse_from(["arch", "infp"]).unwrap_err();
        let msg = usage_error_message(&err);
        assert!(msg.starts_with("unrecognized subcommand 'infp'"), "{msg}");
        assert!(
            msg.contains("tip: a similar subcommand exists: 'info'"),
            "{msg}"
        );
        assert!(!msg.contains("Usage:") && !msg.contains('\n'), "{msg}");
        assert_eq!(usage_error_kind(&err), "usage");
        let err = crate::cli::Cli::try_parse_from(["arch", "cp"]).unwrap_err();
        assert_eq!(
            usage_error_message(&err),
            "the following required arguments were not provided: <SRC>, <DST>"
        );
        let err = crate::cli::Cli::try_parse_from(["arch", "info", "a/../b"]).unwrap_err();
        assert_eq!(usage_error_kind(&err), "invalid_name");
        let err =
            crate::cli::Cli::try_parse_from(["arch", "volume", "resize", "v", "12Q"]).unwrap_err();
        assert_eq!(usage_error_kind(&err), "invalid_argument");
    }

    #[test]
    fn terminal_safe_keeps_layout_and_escapes_the_rest() {
        assert_eq!(terminal_safe("a\tb\nc"), "a\tb\nc");
        assert_eq!(terminal_safe("a\x1b[31mb\x07\r"), "a\\x1b[31mb\\x07\\r");
    }
}
