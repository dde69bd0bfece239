//! The customization tasks, in snf-image order. Each returns what it did, or an error that
//! names it.

use super::CustomizeOptions;
use super::disk::{Table, grow_last_partition, read_table};
use super::guest::{Guest, Request, Stat, fs_geometry, is_ext, resize_filesystem};
use super::hostkeys::{self, HostKeys};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a task did.
pub enum Outcome {
    Ran(String),
    Skipped(String),
}

/// One task: its snf-image name, whether it works on the root filesystem's files (excluded by
/// EXCLUDE_MOUNTED_TASKS), and its body.
pub struct Task {
    pub name: &'static str,
    pub mounted: bool,
    pub run: fn(&mut Ctx) -> Result<Outcome>,
}

/// Every task, in the order they run.
pub const TASKS: &[Task] = &[
    Task {
        name: "FixPartitionTable",
        mounted: false,
        run: fix_partition_table,
    },
    Task {
        name: "FilesystemResizeUnmounted",
        mounted: false,
        run: filesystem_resize,
    },
    Task {
        name: "AddSwap",
        mounted: true,
        run: add_swap,
    },
    Task {
        name: "AssignHostname",
        mounted: true,
        run: assign_hostname,
    },
    Task {
        name: "ChangeMachineId",
        mounted: true,
        run: change_machine_id,
    },
    Task {
        name: "ChangePassword",
        mounted: true,
        run: change_password,
    },
    Task {
        name: "DeleteSSHKeys",
        mounted: true,
        run: delete_ssh_keys,
    },
    Task {
        name: "SELinuxAutorelabel",
        mounted: true,
        run: selinux_autorelabel,
    },
    Task {
        name: "EnforcePersonality",
        mounted: true,
        run: enforce_personality,
    },
];

const ROOT_FILE: Stat = Stat {
    mode: 0o100644,
    uid: 0,
    gid: 0,
};

/// Shared state of one customization run.
pub struct Ctx<'a> {
    disk: &'a Path,
    props: &'a BTreeMap<String, String>,
    opts: &'a CustomizeOptions,
    scratch: PathBuf,
    root: Option<Guest>,
    /// The partition table once FixPartitionTable has read it (it is the last to change it).
    table: Option<Table>,
    /// Host keys generated ahead for DeleteSSHKeys (None when it is excluded).
    keys: Option<HostKeys>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        disk: &'a Path,
        props: &'a BTreeMap<String, String>,
        opts: &'a CustomizeOptions,
        scratch: &Path,
    ) -> Ctx<'a> {
        let keys = super::excluded(props, "DeleteSSHKeys", true)
            .is_none()
            .then(|| HostKeys::start("DeleteSSHKeys", scratch.join("hostkeys"), host(opts)));
        Ctx {
            disk,
            props,
            opts,
            scratch: scratch.to_path_buf(),
            root: None,
            table: None,
            keys,
        }
    }

    /// The root filesystem: ROOT_PARTITION, else the first ext2/3/4 partition holding /etc.
    /// Checks OSFAMILY (given or detected) is linux.
    fn root(&mut self, task: &str) -> Result<&Guest> {
        if self.root.is_none() {
            if let Some(os) = self.props.get("OSFAMILY")
                && os != "linux"
            {
                return Err(Error::invalid(format!(
                    "{task}: OSFAMILY={os} is not supported; arch customizes Linux images only \
                     (clone with --no-customize, or mark the image as a snapshot)"
                )));
            }
            let table = self.table(task)?;
            let wanted: Option<u32> = self
                .props
                .get("ROOT_PARTITION")
                .and_then(|p| p.parse().ok());
            let mut found = None;
            for p in &table.partitions {
                if wanted.is_some_and(|w| w != p.number) {
                    continue;
                }
                let g = Guest::new(self.disk, p.start * 512, &self.scratch);
                if !is_ext(&g) {
                    if wanted.is_some() {
                        return Err(Error::invalid(format!(
                            "{task}: ROOT_PARTITION={} does not hold an ext2/3/4 filesystem",
                            p.number
                        )));
                    }
                    continue;
                }
                if wanted.is_some() || g.stat(task, "/etc")?.is_some() {
                    found = Some(g);
                    break;
                }
            }
            let guest = found.ok_or_else(|| {
                Error::invalid(format!(
                    "{task}: no Linux root filesystem found (no ext2/3/4 partition with /etc{}); \
                     set ROOT_PARTITION or clone with --no-customize",
                    wanted
                        .map(|w| format!(", partition {w} missing"))
                        .unwrap_or_default()
                ))
            })?;
            let linux = guest.stat(task, "/etc/os-release")?.is_some()
                || guest.stat(task, "/etc/passwd")?.is_some();
            if !linux {
                return Err(Error::invalid(format!(
                    "{task}: the root filesystem has no /etc/os-release or /etc/passwd: not a \
                     Linux system arch can customize"
                )));
            }
            self.root = Some(guest);
        }
        Ok(self.root.as_ref().expect("set above"))
    }

    /// The partition table: the one FixPartitionTable left, else read now.
    fn table(&mut self, task: &str) -> Result<Table> {
        if self.table.is_none() {
            self.table = Some(read_table(task, self.disk)?);
        }
        Ok(self.table.clone().expect("set above"))
    }

    fn users(&self) -> Vec<String> {
        self.props
            .get("USERS")
            .map(|u| u.split_whitespace().map(String::from).collect())
            .unwrap_or_else(|| vec!["root".to_string()])
    }
}

/// The hostname the new host keys name (`root@HOST`).
fn host(opts: &CustomizeOptions) -> String {
    opts.hostname.clone().unwrap_or_else(|| "localhost".into())
}

fn fix_partition_table(ctx: &mut Ctx) -> Result<Outcome> {
    let task = "FixPartitionTable";
    let g = grow_last_partition(task, ctx.disk)?;
    ctx.table = Some(g.table.clone());
    let note = if g.unreachable > 0 {
        format!(
            "; an MBR partition cannot end past 2 TiB, so the last {} of the disk stay unused \
             (convert the image to GPT to use them)",
            crate::units::format_size(g.unreachable)
        )
    } else {
        String::new()
    };
    Ok(if g.after != g.before {
        Outcome::Ran(format!(
            "partition {} grown from {} to {} sectors{note}",
            g.after.number, g.before.sectors, g.after.sectors
        ))
    } else {
        Outcome::Skipped(format!(
            "the last partition already ends at the end of the disk{note}"
        ))
    })
}

fn filesystem_resize(ctx: &mut Ctx) -> Result<Outcome> {
    let task = "FilesystemResizeUnmounted";
    let table = ctx.table(task)?;
    let last = table
        .last()
        .ok_or_else(|| Error::invalid(format!("{task}: the disk has no partition")))?;
    let guest = Guest::new(ctx.disk, last.start * 512, &ctx.scratch);
    let Ok(geometry) = fs_geometry("probe", &guest) else {
        return Ok(Outcome::Skipped(format!(
            "partition {} holds no ext2/3/4 filesystem",
            last.number
        )));
    };
    let (old, new) = resize_filesystem(task, &guest, geometry, last.sectors * 512)?;
    Ok(if new > old {
        Outcome::Ran(format!(
            "filesystem on partition {} grown from {old} to {new} blocks",
            last.number
        ))
    } else {
        Outcome::Skipped(format!(
            "filesystem already fills partition {}",
            last.number
        ))
    })
}

fn add_swap(ctx: &mut Ctx) -> Result<Outcome> {
    match ctx.props.get("SWAP") {
        None => Ok(Outcome::Skipped("no SWAP property".into())),
        Some(s) => Err(Error::invalid(format!(
            "AddSwap: SWAP={s} is not supported by arch yet; remove the SWAP property or set \
             EXCLUDE_TASK_ADDSWAP=yes"
        ))),
    }
}

/// The requests replacing the file `path` with `data`, keeping the owner and mode it had
/// (`found`, from a stat or read just made), else root 0644.
fn replace_requests(
    g: &Guest,
    task: &str,
    path: &str,
    data: &[u8],
    found: Option<Stat>,
) -> Result<Vec<Request>> {
    g.write_requests(
        task,
        path,
        data,
        found.unwrap_or(ROOT_FILE),
        found.is_some(),
    )
}

fn assign_hostname(ctx: &mut Ctx) -> Result<Outcome> {
    let task = "AssignHostname";
    let Some(name) = ctx.opts.hostname.clone() else {
        return Ok(Outcome::Skipped("no --hostname given".into()));
    };
    let g = ctx.root(task)?;
    let found = g.stat(task, "/etc/hostname")?;
    let mut cmds = replace_requests(
        g,
        task,
        "/etc/hostname",
        format!("{name}\n").as_bytes(),
        found,
    )?;
    let (found, hosts) = match g.read_stat(task, "/etc/hosts")? {
        Some((st, content)) => (Some(st), content),
        None => (None, Vec::new()),
    };
    let text = String::from_utf8_lossy(&hosts);
    let mut lines: Vec<String> = Vec::new();
    let mut replaced = false;
    for line in text.lines() {
        if line.split_whitespace().next() == Some("127.0.1.1") {
            if !replaced {
                lines.push(format!("127.0.1.1\t{name}"));
                replaced = true;
            }
        } else {
            lines.push(line.to_string());
        }
    }
    if !replaced {
        let at = lines
            .iter()
            .position(|l| l.starts_with("127.0.0.1"))
            .map_or(lines.len(), |i| i + 1);
        lines.insert(at, format!("127.0.1.1\t{name}"));
    }
    let hosts = lines.join("\n") + "\n";
    cmds.extend(replace_requests(
        g,
        task,
        "/etc/hosts",
        hosts.as_bytes(),
        found,
    )?);
    // Both files in one debugfs run.
    g.apply(task, &cmds)?;
    Ok(Outcome::Ran(format!(
        "hostname {name} in /etc/hostname and /etc/hosts"
    )))
}

fn change_machine_id(ctx: &mut Ctx) -> Result<Outcome> {
    let task = "ChangeMachineId";
    let g = ctx.root(task)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let found = g.stat(task, "/etc/machine-id")?;
    let cmds = replace_requests(
        g,
        task,
        "/etc/machine-id",
        format!("{id}\n").as_bytes(),
        found,
    )?;
    g.apply(task, &cmds)?;
    Ok(Outcome::Ran("new /etc/machine-id".into()))
}

/// crypt(3) hash of `password` with a fresh random salt.
pub fn hash_password(task: &str, method: &str, password: &str) -> Result<String> {
    use sha_crypt::{PasswordHasher, ShaCrypt};
    let hasher = match method {
        "sha512" => ShaCrypt::SHA512,
        "sha256" => ShaCrypt::SHA256,
        other => {
            return Err(Error::invalid(format!(
                "{task}: PASSWD_HASHING_METHOD={other} is not supported; use sha512 or sha256"
            )));
        }
    };
    let salt = uuid::Uuid::new_v4();
    let hash = hasher
        .hash_password_with_salt(password.as_bytes(), &salt.as_bytes()[..12])
        .map_err(|e| Error::invalid(format!("{task}: hashing failed: {e}")))?;
    // 5000 rounds is the default: drop the explicit parameter, as passwd(1) writes it.
    Ok(hash.as_str().replacen("$rounds=5000$", "$", 1))
}

fn change_password(ctx: &mut Ctx) -> Result<Outcome> {
    let task = "ChangePassword";
    let Some(password) = ctx.opts.password.clone() else {
        return Ok(Outcome::Skipped("no password given".into()));
    };
    let users = ctx.users();
    let method = ctx
        .props
        .get("PASSWD_HASHING_METHOD")
        .cloned()
        .unwrap_or_else(|| "sha512".into());
    let g = ctx.root(task)?;
    let (st, shadow) = g
        .read_stat(task, "/etc/shadow")?
        .ok_or_else(|| Error::invalid(format!("{task}: the image has no /etc/shadow")))?;
    let text = String::from_utf8_lossy(&shadow).into_owned();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for user in &users {
        let line = lines
            .iter_mut()
            .find(|l| l.split(':').next() == Some(user.as_str()))
            .ok_or_else(|| {
                Error::invalid(format!("{task}: user '{user}' is not in /etc/shadow"))
            })?;
        let mut fields: Vec<String> = line.split(':').map(String::from).collect();
        if fields.len() < 2 {
            return Err(Error::invalid(format!(
                "{task}: malformed /etc/shadow line for '{user}'"
            )));
        }
        fields[1] = hash_password(task, &method, &password)?;
        *line = fields.join(":");
    }
    let cmds = g.write_requests(
        task,
        "/etc/shadow",
        (lines.join("\n") + "\n").as_bytes(),
        st,
        true,
    )?;
    g.apply(task, &cmds)?;
    Ok(Outcome::Ran(format!(
        "{method} password hash set for {}",
        users.join(", ")
    )))
}

fn delete_ssh_keys(ctx: &mut Ctx) -> Result<Outcome> {
    let task = "DeleteSSHKeys";
    let scratch = ctx.scratch.clone();
    let hostname = host(ctx.opts);
    let mut keys = ctx.keys.take();
    let g = ctx.root(task)?;
    if g.stat(task, "/etc/ssh")?.is_none() {
        return Ok(Outcome::Skipped("no /etc/ssh".into()));
    }
    // Names are raw bytes: a host key file may be called anything, quotes and newlines
    // included, and every one of them goes.
    let old: Vec<Vec<u8>> = g
        .list(task, "/etc/ssh")?
        .into_iter()
        .filter(|n| {
            n.starts_with(b"ssh_host_") && (n.ends_with(b"_key") || n.ends_with(b"_key.pub"))
        })
        .collect();
    let mut types: Vec<String> = hostkeys::TYPES
        .into_iter()
        .filter(|t| {
            old.iter()
                .any(|n| *n == format!("ssh_host_{t}_key").as_bytes())
        })
        .map(String::from)
        .collect();
    if types.is_empty() {
        types = vec!["ed25519".into(), "rsa".into()];
    }
    let mut cmds = Vec::new();
    for n in &old {
        cmds.push(g.rm_request(task, [b"/etc/ssh/".as_slice(), n].concat())?);
    }
    for t in &types {
        let pair = match keys.as_mut() {
            Some(k) => k.take(task, t, &scratch, &hostname)?,
            None => hostkeys::generate(task, &scratch, t, &hostname)?,
        };
        cmds.extend(g.write_requests(
            task,
            format!("/etc/ssh/ssh_host_{t}_key"),
            &pair.private,
            Stat {
                mode: 0o100600,
                uid: 0,
                gid: 0,
            },
            false,
        )?);
        cmds.extend(g.write_requests(
            task,
            format!("/etc/ssh/ssh_host_{t}_key.pub"),
            &pair.public,
            ROOT_FILE,
            false,
        )?);
    }
    g.apply(task, &cmds)?;
    Ok(Outcome::Ran(format!(
        "removed {} host key files; new {} host keys",
        old.len(),
        types.join(", ")
    )))
}

fn selinux_autorelabel(ctx: &mut Ctx) -> Result<Outcome> {
    let task = "SELinuxAutorelabel";
    let g = ctx.root(task)?;
    if g.stat(task, "/etc/selinux/config")?.is_none() {
        return Ok(Outcome::Skipped("no /etc/selinux/config".into()));
    }
    g.write(task, "/.autorelabel", b"", ROOT_FILE)?;
    Ok(Outcome::Ran("/.autorelabel created".into()))
}

/// (uid, gid, home) of `user` from the guest's /etc/passwd.
fn passwd_entry(g: &Guest, task: &str, user: &str) -> Result<(u32, u32, String)> {
    let passwd = g.read(task, "/etc/passwd")?.unwrap_or_default();
    String::from_utf8_lossy(&passwd)
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[0] == user)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_string())))
        .ok_or_else(|| Error::invalid(format!("{task}: user '{user}' is not in /etc/passwd")))
}

/// A numeric id, or the id of `name` in the guest's /etc/passwd (`file` = passwd) or /etc/group.
fn resolve_id(g: &Guest, task: &str, file: &str, name: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let content = g.read(task, file)?.unwrap_or_default();
    String::from_utf8_lossy(&content)
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| Error::invalid(format!("{task}: '{name}' is not in the image's {file}")))
}

fn enforce_personality(ctx: &mut Ctx) -> Result<Outcome> {
    let task = "EnforcePersonality";
    if ctx.opts.files.is_empty() && ctx.opts.ssh_keys.is_empty() {
        return Ok(Outcome::Skipped("no --file or --ssh-key given".into()));
    }
    let users = ctx.users();
    let opts = ctx.opts.clone();
    let g = ctx.root(task)?;
    let mut done = Vec::new();
    if !opts.ssh_keys.is_empty() {
        for user in &users {
            let (uid, gid, home) = passwd_entry(g, task, user)?;
            let dir = format!("{}/.ssh", home.trim_end_matches('/'));
            let dir_stat = Stat {
                mode: 0o040700,
                uid,
                gid,
            };
            let path = format!("{dir}/authorized_keys");
            // Read first (a missing directory holds no file), then the directory, its owner
            // and the file in one debugfs run.
            let (exists, content) = match g.read(task, &path)? {
                Some(c) => (true, c),
                None => (false, Vec::new()),
            };
            let mut content = String::from_utf8_lossy(&content).into_owned();
            let mut cmds = g.dir_requests(task, &dir, dir_stat)?;
            cmds.extend(g.set_owner_mode(task, &dir, dir_stat)?);
            for key in &opts.ssh_keys {
                if !content.lines().any(|l| l.trim() == key.trim()) {
                    if !content.is_empty() && !content.ends_with('\n') {
                        content.push('\n');
                    }
                    content.push_str(key.trim());
                    content.push('\n');
                }
            }
            cmds.extend(g.write_requests(
                task,
                &path,
                content.as_bytes(),
                Stat {
                    mode: 0o100600,
                    uid,
                    gid,
                },
                exists,
            )?);
            g.apply(task, &cmds)?;
            done.push(format!("{} key(s) for {user}", opts.ssh_keys.len()));
        }
    }
    for f in &opts.files {
        let data = std::fs::read(&f.local).map_err(|e| Error::io("read", &f.local, e))?;
        let uid = resolve_id(g, task, "/etc/passwd", &f.owner)?;
        let gid = resolve_id(g, task, "/etc/group", &f.group)?;
        if let Some((parent, _)) = f.guest.rsplit_once('/')
            && !parent.is_empty()
        {
            g.ensure_dir(
                task,
                parent,
                Stat {
                    mode: 0o040755,
                    uid: 0,
                    gid: 0,
                },
            )?;
        }
        g.write(
            task,
            &f.guest,
            &data,
            Stat {
                mode: 0o100000 | f.mode,
                uid,
                gid,
            },
        )?;
        done.push(f.guest.clone());
    }
    Ok(Outcome::Ran(done.join(", ")))
}
