//! Streamed listings: each row is written as it is produced, so a listing's memory does not
//! grow with the number of rows. Plain text is a table with fixed column widths (a wider
//! cell pushes its line out, it is never cut); `--json` is one document,
//! `{"<key>":[row, ...]<tail fields>}`, written incrementally. Output is held back for its
//! first 4 MiB (see [`Spill`]) so an error early in a listing leaves only the error document.

use super::Context;
use super::ls::{SPILL, Spill};
use super::output::escape_control;
use crate::error::{Error, Result};
use serde::Serialize;
use std::io::Write;

/// One column of the plain table: its header, width, and whether it is right-aligned.
pub type Column = (&'static str, usize, bool);

/// Writes one listing, row by row.
pub struct RowWriter<'a> {
    out: Spill,
    json: bool,
    quiet: bool,
    first: bool,
    columns: &'a [Column],
}

fn io(e: std::io::Error) -> Error {
    Error::io("write", "stdout", e)
}

impl<'a> RowWriter<'a> {
    /// Starts the listing: the JSON document's opening up to its `key` array, or the header.
    pub fn start(ctx: &Context, key: &str, columns: &'a [Column]) -> Result<RowWriter<'a>> {
        let mut w = RowWriter {
            out: Spill::new(SPILL),
            json: ctx.json,
            quiet: ctx.quiet,
            first: true,
            columns,
        };
        if w.json {
            let key = serde_json::to_string(key).expect("a key serializes");
            write!(w.out, "{{{key}:[").map_err(io)?;
        } else if !w.quiet {
            let header: Vec<String> = columns.iter().map(|c| c.0.to_string()).collect();
            w.line(&header)?;
        }
        Ok(w)
    }

    fn line(&mut self, cells: &[String]) -> Result<()> {
        let mut text = String::new();
        for (i, (cell, (_, width, right))) in cells.iter().zip(self.columns).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let cell = escape_control(cell);
            if *right {
                text.push_str(&format!("{cell:>width$}"));
            } else {
                text.push_str(&format!("{cell:<width$}"));
            }
        }
        writeln!(self.out, "{}", text.trim_end()).map_err(io)
    }

    /// Writes one row: `item` as JSON, or the plain cells `cells` gives (one per column).
    pub fn row<T: Serialize>(
        &mut self,
        item: &T,
        cells: impl FnOnce() -> Vec<String>,
    ) -> Result<()> {
        if self.json {
            let sep = if self.first { "" } else { "," };
            let doc = serde_json::to_string(item).expect("a row serializes");
            write!(self.out, "{sep}{doc}").map_err(io)?;
        } else if !self.quiet {
            self.line(&cells())?;
        }
        self.first = false;
        Ok(())
    }

    /// Ends the listing: closes the JSON array and adds the fields of `tail` (a struct) to the
    /// document, or prints `summary` after the table; then flushes.
    pub fn finish<T: Serialize>(mut self, tail: Option<&T>, summary: Option<String>) -> Result<()> {
        if self.json {
            let rest = match tail {
                Some(t) => {
                    let doc = serde_json::to_string(t).expect("a summary serializes");
                    // `{"a":1}` becomes `,"a":1}`; an empty struct just closes the document.
                    if doc == "{}" {
                        "}".to_string()
                    } else {
                        format!(",{}", &doc[1..])
                    }
                }
                None => "}".to_string(),
            };
            writeln!(self.out, "]{rest}").map_err(io)?;
        } else if let (false, Some(s)) = (self.quiet, summary) {
            writeln!(self.out, "{s}").map_err(io)?;
        }
        self.out.flush().map_err(io)
    }
}
