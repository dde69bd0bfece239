//! `arch complete -- WORDS...` (hidden): the repository names (objects, images, snapshots,
//! volumes) that fit the word being completed, for the shell completions. The generated
//! scripts in `completions/` complete subcommands and options statically and call this for
//! names (see [`shell_glue`]); it reads the command line the way clap parses it, so the
//! argument under the cursor decides which names are offered (none for a new name).

use super::{Context, Status};
use crate::repo::Repository;
use crate::repo::db::ObjectFilter;
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;
use std::path::PathBuf;

/// At most this many names are offered.
const MAX_NAMES: usize = 1000;

/// Print the repository names that complete the last of WORDS (the words after `arch`, the
/// one being completed last, possibly empty).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  arch complete -- volume info vm")]
pub struct Args {
    /// The command line after `arch`, up to and including the word being completed.
    #[arg(last = true, allow_hyphen_values = true)]
    pub words: Vec<String>,
}

/// Which names complete an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub objects: bool,
    pub images: bool,
    pub volumes: bool,
}

const NONE: Kinds = Kinds {
    objects: false,
    images: false,
    volumes: false,
};
const OBJECTS: Kinds = Kinds {
    objects: true,
    ..NONE
};
const IMAGES: Kinds = Kinds {
    images: true,
    ..NONE
};
const VOLUMES: Kinds = Kinds {
    volumes: true,
    ..NONE
};

/// The names argument `id` of command `path` (e.g. "volume info") takes: existing ones only,
/// never for an argument that names something new.
pub fn kinds_of(path: &str, id: &str) -> Kinds {
    match (path, id) {
        // New names.
        ("clone", "volume") | ("volume import", "volume") | ("snapshot", "name") => NONE,
        ("cp" | "mv", "dst") | ("volume rename", "new_name") => NONE,
        (_, "volume" | "from_volume") => VOLUMES,
        ("clone", "source") => Kinds {
            objects: true,
            images: true,
            volumes: false,
        },
        (_, "reference") => IMAGES,
        ("serve" | "du", "names") => Kinds {
            objects: true,
            images: false,
            volumes: true,
        },
        (_, "name" | "names" | "src" | "path") => OBJECTS,
        _ => NONE,
    }
}

/// What the command line `words` (after `arch`, the last being completed) completes: the
/// kinds of names, and the repository given with `-R`/`--repo` if any.
pub fn analyze(words: &[String]) -> (Kinds, Option<PathBuf>) {
    let mut cmd = crate::cli::Cli::command();
    cmd.build();
    let Some((current, before)) = words.split_last() else {
        return (NONE, None);
    };
    let mut cmd = &cmd;
    let mut path: Vec<String> = Vec::new();
    let mut positional = 0usize;
    let mut repo = None;
    let mut pending: Option<&clap::Arg> = None;
    let mut only_positionals = false;
    for w in before {
        if let Some(arg) = pending.take() {
            if arg.get_id() == "repo" {
                repo = Some(PathBuf::from(w));
            }
            continue;
        }
        if !only_positionals && w == "--" {
            only_positionals = true;
            continue;
        }
        if !only_positionals && w.starts_with('-') && w.len() > 1 {
            let arg = match w.strip_prefix("--") {
                Some(long) => {
                    let (name, inline) = match long.split_once('=') {
                        Some((n, v)) => (n, Some(v)),
                        None => (long, None),
                    };
                    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(name));
                    if let (Some(a), Some(v)) = (arg, inline) {
                        if a.get_id() == "repo" {
                            repo = Some(PathBuf::from(v));
                        }
                        continue;
                    }
                    arg
                }
                // Short flags, possibly bundled: only the last may take the next word.
                None => w
                    .chars()
                    .last()
                    .and_then(|c| cmd.get_arguments().find(|a| a.get_short() == Some(c)))
                    .filter(|_| w.len() == 2),
            };
            if let Some(a) = arg.filter(|a| a.get_action().takes_values()) {
                pending = Some(a);
            }
            continue;
        }
        if positional == 0 && !only_positionals {
            if let Some(sub) = cmd.find_subcommand(w) {
                cmd = sub;
                path.push(sub.get_name().to_string());
                continue;
            }
        }
        positional += 1;
    }
    let path = path.join(" ");
    if let Some(arg) = pending {
        return (kinds_of(&path, arg.get_id().as_str()), repo);
    }
    if current.starts_with('-') && !only_positionals {
        return (NONE, repo);
    }
    let positionals: Vec<&clap::Arg> = cmd.get_positionals().collect();
    let arg = positionals.get(positional).copied().or_else(|| {
        positionals
            .last()
            .copied()
            .filter(|a| a.get_num_args().is_some_and(|n| n.max_values() > 1))
    });
    match arg {
        Some(a) => (kinds_of(&path, a.get_id().as_str()), repo),
        None => (NONE, repo),
    }
}

/// The names of `kinds` in `repo` starting with `prefix`, sorted, at most [`MAX_NAMES`].
pub fn names(repo: &Repository, kinds: Kinds, prefix: &str) -> crate::Result<Vec<String>> {
    let cat = repo.catalog()?;
    let mut out = Vec::new();
    if kinds.objects || kinds.images {
        let filter = match prefix.split_once('/') {
            Some((c, p)) => ObjectFilter {
                container: Some(c.to_string()),
                prefix: p.to_string(),
                images_only: !kinds.objects,
                ..Default::default()
            },
            None => ObjectFilter {
                images_only: !kinds.objects,
                ..Default::default()
            },
        };
        cat.for_each_object(&filter, &mut |name, rec| {
            if name.starts_with(prefix) {
                out.push(name);
            }
            if kinds.images {
                if let Some(i) = rec.image.filter(|i| i.name.starts_with(prefix)) {
                    out.push(i.name);
                }
            }
            Ok(out.len() < MAX_NAMES)
        })?;
    }
    if kinds.volumes {
        cat.for_each_volume(&mut |name, _| {
            if name.starts_with(prefix) {
                out.push(name);
            }
            Ok(out.len() < 2 * MAX_NAMES)
        })?;
    }
    out.sort();
    out.dedup();
    out.truncate(MAX_NAMES);
    Ok(out)
}

/// Prints one name per line; prints nothing (and succeeds) when there is no repository or
/// the argument takes no existing name: completion must never print errors into a prompt.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Status> {
    let (kinds, repo_arg) = analyze(&args.words);
    if kinds == NONE {
        return Ok(Status::Ok);
    }
    let prefix = args.words.last().map(String::as_str).unwrap_or_default();
    let cwd = std::env::current_dir()?;
    let explicit = repo_arg.or_else(|| ctx.repo_arg.clone());
    let Ok(repo) = Repository::discover(explicit.as_deref(), &cwd) else {
        return Ok(Status::Ok);
    };
    let Ok(found) = names(&repo, kinds, prefix) else {
        return Ok(Status::Ok);
    };
    let mut out = std::io::stdout().lock();
    for n in found {
        // A name with a line break cannot be offered one per line (and is never valid).
        if !n.contains('\n') {
            writeln!(out, "{n}")?;
        }
    }
    Ok(Status::Ok)
}

/// The generated completion `script` for `shell` with the calls to `arch complete` added:
/// bash and zsh wrap the generated function, fish adds one rule.
pub fn shell_glue(shell: Shell, script: String) -> String {
    match shell {
        Shell::Bash => script.replace("complete -F _arch ", "complete -F _arch_names ") + BASH,
        Shell::Zsh => {
            let script = script.replace(":_default'", ":_arch_names'");
            let tail = "if [ \"$funcstack[1]\" = \"_arch\" ]; then";
            match script.rfind(tail) {
                Some(at) => format!("{}{ZSH}\n{}", &script[..at], &script[at..]),
                None => script + ZSH,
            }
        }
        Shell::Fish => script + FISH,
        _ => script,
    }
}

const BASH: &str = r#"
# Repository names (objects, images, snapshots, volumes) from `arch complete`, after the
# generated completion of subcommands and options.
_arch_names() {
    _arch "$@"
    local cur="${COMP_WORDS[COMP_CWORD]}" name
    [[ "$cur" == -* ]] && return 0
    local IFS=$'\n'
    for name in $("${COMP_WORDS[0]}" complete -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null); do
        COMPREPLY+=("$(printf '%q' "$name")")
    done
}
"#;

const ZSH: &str = r#"
# Repository names (objects, images, snapshots, volumes) from `arch complete`; other values
# complete as files.
(( $+functions[_arch_names] )) ||
_arch_names() {
    local -a line names
    line=("${(@Q)${(z)LBUFFER}}")
    [[ "$LBUFFER" == *' ' ]] && line+=('')
    names=("${(@f)$(${line[1]} complete -- "${(@)line[2,-1]}" 2>/dev/null)}")
    names=(${names:#})
    if (( ${#names} )); then
        compadd -a names
    else
        _default
    fi
}
"#;

const FISH: &str = r#"
# Repository names (objects, images, snapshots, volumes) from `arch complete`.
complete -c arch -n 'not string match -q -- "-*" (commandline -ct)' -a '(arch complete -- (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(line: &str) -> Kinds {
        let mut words: Vec<String> = line.split(' ').map(String::from).collect();
        if line.ends_with(' ') {
            words.pop();
            words.push(String::new());
        }
        analyze(&words).0
    }

    #[test]
    fn the_argument_under_the_cursor_decides_the_names() {
        assert_eq!(kinds("volume info v"), VOLUMES);
        assert_eq!(kinds("volume resize "), VOLUMES);
        assert_eq!(kinds("volume resize vm1 "), NONE);
        assert_eq!(kinds("-R /r --json volume export "), VOLUMES);
        assert_eq!(kinds("get "), OBJECTS);
        assert_eq!(kinds("get -o out.raw im"), OBJECTS);
        assert_eq!(kinds("get -o "), NONE);
        assert_eq!(
            kinds("clone "),
            Kinds {
                objects: true,
                images: true,
                volumes: false
            }
        );
        assert_eq!(kinds("clone Debian "), NONE);
        assert_eq!(kinds("clone --size 1G Debian "), NONE);
        assert_eq!(kinds("snapshot "), VOLUMES);
        assert_eq!(kinds("snapshot vm1 "), NONE);
        assert_eq!(kinds("image info "), IMAGES);
        assert_eq!(kinds("image ls --from-volume "), VOLUMES);
        assert_eq!(kinds("cp a/b "), NONE);
        assert_eq!(kinds("prune-versions a/b "), OBJECTS);
        assert_eq!(kinds("volume info --"), NONE);
        assert_eq!(kinds(""), NONE);
        let (_, repo) = analyze(&["-R".into(), "/r".into(), "get".into(), "".into()]);
        assert_eq!(repo, Some(PathBuf::from("/r")));
        let (_, repo) = analyze(&["--repo=/s".into(), "get".into(), "".into()]);
        assert_eq!(repo, Some(PathBuf::from("/s")));
    }
}
