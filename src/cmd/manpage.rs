//! One man page from a clap command: clap_mangen's page with a real synopsis (every option
//! with its value placeholder, the operands by name), the examples as an EXAMPLES section
//! (kept on their lines), ENVIRONMENT, EXIT STATUS and SEE ALSO sections, and no entry for
//! clap's `help` subcommand, which has no page.

/// Renders the page `name` (e.g. `arch-volume-resize`) of `cmd`, invoked as `path` (e.g.
/// `arch volume resize`); `parent` is the page of the command above it.
pub fn render(cmd: &clap::Command, name: &str, path: &str, parent: Option<&str>) -> Vec<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name.to_string()))
        .render(&mut page)
        .expect("rendering into memory cannot fail");
    let page = String::from_utf8(page).expect("clap_mangen writes UTF-8");
    let (head, sections) = split_sections(&page);
    let mut out = head.to_string();
    let mut extra_done = false;
    let exit_note = cmd.get_after_help().and_then(|h| {
        h.to_string()
            .split("\n\n")
            .find(|p| p.starts_with("Exit codes:"))
            .map(str::to_string)
    });
    let tail = |out: &mut String| {
        out.push_str(&examples_and_notes(cmd));
        out.push_str(&environment_and_exit_status(exit_note.as_deref()));
        out.push_str(&see_also(name, parent));
    };
    for (title, body) in sections {
        match title {
            "SYNOPSIS" => {
                out.push_str(".SH SYNOPSIS\n");
                out.push_str(&synopsis(cmd, path));
            }
            "SUBCOMMANDS" => {
                out.push_str(".SH COMMANDS\n");
                out.push_str(&without_help_entry(body));
            }
            "EXTRA" => {}
            "VERSION" => {
                tail(&mut out);
                extra_done = true;
                out.push_str(".SH VERSION\n");
                out.push_str(body);
            }
            _ => {
                out.push_str(&format!(".SH {title}\n"));
                out.push_str(body);
            }
        }
    }
    if !extra_done {
        tail(&mut out);
    }
    out.into_bytes()
}

/// The text before the first `.SH`, and each section's title and body.
fn split_sections(page: &str) -> (&str, Vec<(&str, &str)>) {
    let mut starts: Vec<usize> = page.match_indices("\n.SH ").map(|(i, _)| i + 1).collect();
    let head_end = starts.first().copied().unwrap_or(page.len());
    starts.push(page.len());
    let sections = starts
        .windows(2)
        .map(|w| {
            let section = &page[w[0]..w[1]];
            let (title_line, body) = section.split_once('\n').unwrap_or((section, ""));
            (
                title_line.trim_start_matches(".SH ").trim_matches('"'),
                body,
            )
        })
        .collect();
    (&page[..head_end], sections)
}

/// Text escaped for roff: backslashes and dashes, and a leading `.` or `'` made literal.
fn esc(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn bold(t: &str) -> String {
    format!("\\fB{}\\fR", esc(t))
}

fn italic(t: &str) -> String {
    format!("\\fI{}\\fR", esc(t))
}

/// `\fBarch volume resize\fR [\fIGLOBAL OPTIONS\fR] [\fB\-\-allow\-shrink\fR] \fIVOLUME\fR
/// \fISIZE\fR`: every own option with its placeholder, then the operands.
pub fn synopsis(cmd: &clap::Command, path: &str) -> String {
    let mut parts = vec![bold(path)];
    // Every command takes -h and -V; they are listed under OPTIONS, not in each synopsis.
    let visible = |a: &&clap::Arg| {
        !a.is_hide_set()
            && !matches!(
                a.get_action(),
                clap::ArgAction::Help
                    | clap::ArgAction::HelpShort
                    | clap::ArgAction::HelpLong
                    | clap::ArgAction::Version
            )
    };
    if cmd
        .get_arguments()
        .filter(visible)
        .any(|a| a.is_global_set())
    {
        parts.push(format!("[{}]", italic("GLOBAL OPTIONS")));
    }
    for a in cmd
        .get_arguments()
        .filter(visible)
        .filter(|a| !a.is_global_set() && !a.is_positional())
    {
        let mut names = Vec::new();
        if let Some(s) = a.get_short() {
            names.push(bold(&format!("-{s}")));
        }
        if let Some(l) = a.get_long() {
            names.push(bold(&format!("--{l}")));
        }
        let mut text = names.join("|");
        if a.get_action().takes_values() {
            text.push(' ');
            text.push_str(&italic(&placeholder(a)));
        }
        if matches!(a.get_action(), clap::ArgAction::Append) {
            text.push_str("...");
        }
        parts.push(if a.is_required_set() {
            text
        } else {
            format!("[{text}]")
        });
    }
    for a in cmd.get_positionals().filter(visible) {
        let mut text = italic(&placeholder(a));
        if a.get_num_args().is_some_and(|n| n.max_values() > 1)
            || matches!(a.get_action(), clap::ArgAction::Append)
        {
            text.push_str("...");
        }
        parts.push(if a.is_required_set() {
            text
        } else {
            format!("[{text}]")
        });
    }
    if cmd.has_subcommands() {
        parts.push(italic("COMMAND"));
        parts.push(format!("[{}]", italic("ARGS")));
    }
    parts.join(" ") + "\n"
}

/// An argument's value placeholder: its value name, else its id in upper case.
fn placeholder(a: &clap::Arg) -> String {
    match a.get_value_names() {
        Some(names) if !names.is_empty() => names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        _ => a.get_id().as_str().to_uppercase(),
    }
}

/// The subcommand list without clap's `help` entry (`.TP`, the page, its description).
fn without_help_entry(body: &str) -> String {
    let mut out = String::new();
    for entry in body.split_inclusive(".TP\n").collect::<Vec<_>>().iter() {
        // Each piece ends with the `.TP` that starts the next entry.
        let (text, tp) = match entry.strip_suffix(".TP\n") {
            Some(t) => (t, ".TP\n"),
            None => (*entry, ""),
        };
        if text
            .lines()
            .next()
            .is_some_and(|l| l.ends_with("\\-help(1)"))
        {
            // Keep the following entry's `.TP` only if the removed entry had taken ours.
            if !out.ends_with(".TP\n") {
                out.push_str(tp);
            }
            continue;
        }
        out.push_str(text);
        out.push_str(tp);
    }
    if out.ends_with(".TP\n") {
        out.truncate(out.len() - ".TP\n".len());
    }
    out
}

/// EXAMPLES (each on its own line, never filled) and NOTES from the command's after-help;
/// its exit-code line is left to EXIT STATUS.
fn examples_and_notes(cmd: &clap::Command) -> String {
    let Some(after) = cmd.get_after_help().map(|h| h.to_string()) else {
        return String::new();
    };
    let mut examples = String::new();
    let mut notes = String::new();
    for para in after.split("\n\n") {
        if let Some(rest) = para.strip_prefix("Examples:") {
            examples.push_str(".PP\n.nf\n");
            for line in rest.lines().filter(|l| !l.trim().is_empty()) {
                examples.push_str(&esc(line.trim()));
                examples.push('\n');
            }
            examples.push_str(".fi\n");
        } else if para.starts_with("Exit codes:") {
            // The command's own reading of its exit codes, under EXIT STATUS.
        } else {
            notes.push_str(".PP\n");
            notes.push_str(&esc(para.trim()));
            notes.push('\n');
        }
    }
    let mut out = String::new();
    if !examples.is_empty() {
        out.push_str(".SH EXAMPLES\n");
        out.push_str(&examples);
    }
    if !notes.is_empty() {
        out.push_str(".SH NOTES\n");
        out.push_str(&notes);
    }
    out
}

/// ENVIRONMENT and EXIT STATUS; `note` is the command's own line about its exit codes.
fn environment_and_exit_status(note: Option<&str>) -> String {
    let env = [
        (
            "ARCH_REPO",
            "The repository directory when \\fB\\-R\\fR is not given; without either, the \
             current directory and its parents are searched for one.",
        ),
        (
            "NO_COLOR",
            "When set, no colour is written (arch writes none today; progress bars appear only \
             on a terminal, never with \\fB\\-\\-json\\fR or \\fB\\-q\\fR).",
        ),
    ];
    let status = [
        ("0", "Success (also when stdout is a closed pipe)."),
        ("1", "A check ran and found problems (\\fBarch fsck\\fR)."),
        (
            "2",
            "Usage or operational error: bad input, not found, I/O, corruption found while \
             reading. The repository is left as it was.",
        ),
        (
            "130, 143",
            "Stopped by SIGINT or SIGTERM at a safe point, temporary files removed.",
        ),
    ];
    let mut out = String::from(".SH ENVIRONMENT\n");
    for (k, v) in env {
        out.push_str(&format!(".TP\n\\fB{k}\\fR\n{v}\n"));
    }
    out.push_str(".SH EXIT STATUS\n");
    if let Some(n) = note {
        out.push_str(&format!("{}\n", esc(n.trim())));
    }
    for (k, v) in status {
        out.push_str(&format!(".TP\n{k}\n{v}\n"));
    }
    out
}

/// `arch(1)` and the parent page (both exist: pages are generated for every visible command).
fn see_also(name: &str, parent: Option<&str>) -> String {
    let mut refs: Vec<String> = Vec::new();
    if name != "arch" {
        refs.push("\\fBarch\\fR(1)".into());
    }
    if let Some(p) = parent.filter(|p| *p != "arch") {
        refs.push(format!("\\fB{}\\fR(1)", esc(p)));
    }
    if refs.is_empty() {
        return String::new();
    }
    format!(".SH SEE ALSO\n{}\n", refs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_entry_is_dropped_and_the_others_kept() {
        let body = ".TP\narch\\-a(1)\nA\n.TP\narch\\-help(1)\nHelp\n";
        assert_eq!(without_help_entry(body), ".TP\narch\\-a(1)\nA\n");
        let body = ".TP\narch\\-help(1)\nHelp\n.TP\narch\\-b(1)\nB\n";
        assert_eq!(without_help_entry(body), ".TP\narch\\-b(1)\nB\n");
    }

    #[test]
    fn escaping_keeps_roff_literal() {
        assert_eq!(esc("a-b\\c"), "a\\-b\\ec");
        assert_eq!(esc(".x"), "\\&.x");
    }
}
