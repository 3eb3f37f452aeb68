//! `fixupctl mount [--rw]` and `fixupctl umount`: the guest's mounts in
//! the stack's rescue mode, changed from the shell.
//!
//! Rescue mode ([`rescue`]) records what it assembled and mounted in
//! `/run/osam/rescue.json`. `mount` releases that (unmounts in reverse
//! order, deactivates the LVM volume groups and stops the md arrays it
//! started, syncs), looks at the disks again and assembles and mounts the
//! guest anew: read-only as at boot, or read-write (journals replayed,
//! LVM and md read-write, the stack's /dev /proc /sys /run bound in for
//! chroot and `fixupctl run`). `umount` only releases. Both rewrite
//! rescue.json and the banner; the caller holds the stage-1 lock.
//!
//! Nothing is released while a process still uses the guest (its working
//! directory, root or an open file below the sysroot): the error names
//! each such process ([`busy_users`]) and nothing changes.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cmdline::{self, Mode};
use crate::pid1::rescue::{self, RescueState};
use crate::runner::RealRunner;
use crate::runstate::State;
use crate::storage::assemble::LogCtx;
use crate::storage::devlinks;

/// Where the rescue mode's files and the system's trees are (tests move
/// them).
#[derive(Debug, Clone)]
pub struct Env {
    /// `/run/osam`.
    pub run_dir: PathBuf,
    /// `/sys`.
    pub sysfs: PathBuf,
    /// `/proc`.
    pub proc_root: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
}

impl Env {
    /// The running system's.
    pub fn system() -> Env {
        Env {
            run_dir: crate::lock::run_dir(),
            sysfs: PathBuf::from("/sys"),
            proc_root: PathBuf::from("/proc"),
            cmdline: std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
        }
    }
}

/// A process that uses something below a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyUser {
    pub pid: u32,
    /// Its `comm`.
    pub command: String,
    /// How: `working directory /sysroot/etc`, `open file …`.
    pub what: String,
}

impl fmt::Display for BusyUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {}, {})", self.command, self.pid, self.what)
    }
}

/// The processes of a proc tree whose working directory, root, program
/// or an open file is `under` or below it, by pid; `except` (this
/// process) is left out.
pub fn busy_users(proc_root: &Path, under: &Path, except: u32) -> Vec<BusyUser> {
    let inside = |p: &Path| p.starts_with(under);
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == except {
            continue;
        }
        let base = e.path();
        let mut what = None;
        for (link, label) in [
            ("cwd", "working directory"),
            ("root", "root directory"),
            ("exe", "program"),
        ] {
            if let Ok(t) = std::fs::read_link(base.join(link))
                && inside(&t)
            {
                what = Some(format!("{label} {}", t.display()));
                break;
            }
        }
        if what.is_none()
            && let Ok(fds) = std::fs::read_dir(base.join("fd"))
        {
            what = fds
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .find(|t| inside(t))
                .map(|t| format!("open file {}", t.display()));
        }
        if let Some(what) = what {
            let command = std::fs::read_to_string(base.join("comm"))
                .map(|c| c.trim().to_string())
                .ok()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "?".into());
            out.push(BusyUser { pid, command, what });
        }
    }
    out.sort_by_key(|u| u.pid);
    out
}

#[derive(Debug, thiserror::Error)]
pub enum RemountError {
    /// No rescue.json and not booted in rescue mode.
    #[error("{}", not_rescue_message(.phase))]
    NotRescue {
        /// PID 1's phase where it serves the protocol.
        phase: Option<String>,
    },
    /// A process uses the guest: nothing was changed.
    #[error(
        "{} is busy: used by {}; leave it (`cd /`) and end what runs there, then try again; nothing was changed",
        .target.display(),
        .users.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Busy {
        target: PathBuf,
        users: Vec<BusyUser>,
    },
    /// What could not be unmounted or deactivated.
    #[error(
        "not everything was released: {}; something still uses it (a shell's working directory below it, an open file: `cd /` and end what runs there), then try again",
        .0.join("; ")
    )]
    NotReleased(Vec<String>),
    /// Something fixupctl did not mount is mounted at the target.
    #[error(
        "something that fixupctl did not mount (by hand?) is mounted at {}: unmount it (umount {}) or give another --sysroot; nothing was changed",
        .0.display(),
        .0.display()
    )]
    Occupied(PathBuf),
    /// No disk besides the stack's own.
    #[error("nothing to mount: {0}")]
    NothingToMount(String),
    /// The guest was not mounted (the rescue banner's reason).
    #[error("the guest is not mounted: {0}")]
    MountFailed(String),
    #[error("{0}")]
    Io(String),
}

fn not_rescue_message(phase: &Option<String>) -> String {
    match phase {
        Some(p) => format!(
            "fixupctl mount and umount only work in the fixup stack's rescue mode; here PID 1 \
             serves the protocol ({p}) and mounts the guest itself while stage 1 runs; boot the \
             fixup disk's \"OSAM rescue shell\" entry to mount the guest from the shell"
        ),
        None => "fixupctl mount and umount only work in the fixup stack's rescue mode (boot the \
                 fixup disk's \"OSAM rescue shell\" entry): there is no /run/osam/rescue.json \
                 here; elsewhere mount the guest yourself and give --sysroot to plan, run and undo"
            .to_string(),
    }
}

/// Rescue mode's record: rescue.json, or a fresh one where the kernel
/// command line says rescue mode but its setup wrote none.
pub fn rescue_state(env: &Env) -> Result<RescueState, RemountError> {
    match rescue::load(&env.run_dir) {
        Ok(Some(s)) => Ok(s),
        Ok(None) if cmdline::parse(&env.cmdline).mode == Mode::Rescue => Ok(RescueState::default()),
        Ok(None) => Err(RemountError::NotRescue {
            phase: State::read(&env.run_dir)
                .ok()
                .flatten()
                .map(|s| s.describe()),
        }),
        Err(e) => Err(RemountError::Io(format!(
            "reading rescue mode's record: {e}"
        ))),
    }
}

/// Fails when a process uses the mounted guest.
fn check_busy(env: &Env, s: &RescueState) -> Result<(), RemountError> {
    let Some(m) = &s.mounted else {
        return Ok(());
    };
    let users = busy_users(&env.proc_root, &m.sysroot, std::process::id());
    if users.is_empty() {
        Ok(())
    } else {
        Err(RemountError::Busy {
            target: m.sysroot.clone(),
            users,
        })
    }
}

/// Unmounts what `s` records (reverse order), then deactivates its volume
/// groups and stops its arrays; syncs. Returns a line for each thing
/// released. On a failure `s` keeps what is still mounted.
fn release(s: &mut RescueState, ctx: &mut LogCtx<'_>) -> Result<Vec<String>, RemountError> {
    let mut lines = Vec::new();
    if let Some(m) = s.mounted.as_mut() {
        let before = m.summary();
        let failed = m.unmount();
        if !failed.is_empty() {
            s.problems
                .extend(failed.iter().map(|f| format!("unmounting {f}")));
            return Err(RemountError::NotReleased(failed));
        }
        lines.extend(before.into_iter().map(|l| format!("unmounted {l}")));
        s.mounted = None;
    }
    if let Some(mut a) = s.assembly.take() {
        let summary = a.summary();
        let failed = a.teardown(ctx);
        nix::unistd::sync();
        if !failed.is_empty() {
            s.problems.extend(failed.iter().cloned());
            return Err(RemountError::NotReleased(failed));
        }
        lines.extend(summary.into_iter().map(|l| format!("released {l}")));
    }
    nix::unistd::sync();
    Ok(lines)
}

/// Saves the record; a failure is a warning (the mounts are what they
/// are).
fn save(env: &Env, s: &RescueState) {
    if let Err(e) = rescue::save(&env.run_dir, s) {
        crate::logging::warn(format!(
            "cannot update {}: {e}",
            env.run_dir.join(rescue::STATE_NAME).display()
        ));
    }
}

/// What `mount` did.
#[derive(Debug, Clone)]
pub struct Mounted {
    /// What was released first.
    pub released: Vec<String>,
    /// The record as it is now (`mounted` is set).
    pub state: RescueState,
}

/// `fixupctl mount`: releases what is mounted and mounts the guest again
/// at `sysroot`, read-write or read-only.
pub fn mount(env: &Env, sysroot: &Path, read_write: bool) -> Result<Mounted, RemountError> {
    let mut s = rescue_state(env)?;
    let ours = s.mounted.as_ref().is_some_and(|m| m.sysroot == sysroot);
    let mountinfo =
        std::fs::read_to_string(env.proc_root.join("self/mountinfo")).unwrap_or_default();
    if !ours && crate::pid1::mounts::is_mounted(&mountinfo, &sysroot.to_string_lossy()) {
        return Err(RemountError::Occupied(sysroot.to_path_buf()));
    }
    check_busy(env, &s)?;
    let mut runner = RealRunner::default();
    let mut ctx = LogCtx::new(&mut runner);
    let released = match release(&mut s, &mut ctx) {
        Ok(l) => l,
        Err(e) => {
            save(env, &s);
            return Err(e);
        }
    };
    s.problems.clear();
    let osam_disk = cmdline::parse(&env.cmdline).disk;
    let (disks, own, facts) = rescue::scan_disks(&env.sysfs, osam_disk.as_deref());
    for o in own {
        if !s.stack_disks.contains(&o) {
            s.stack_disks.push(o);
        }
    }
    let replicas: Vec<_> = disks
        .into_iter()
        .filter(|d| !s.stack_disks.contains(&d.name))
        .collect();
    s.replica_disks = replicas.iter().map(|d| d.name.clone()).collect();
    if let Err(e) = devlinks::create_links(Path::new("/dev"), &devlinks::plan(&facts).links) {
        s.problems.push(format!("creating /dev/disk links: {e}"));
    }
    if replicas.is_empty() {
        let why = format!(
            "no disk besides the stack's own ({}) is attached",
            if s.stack_disks.is_empty() {
                "none found".to_string()
            } else {
                s.stack_disks.join(" ")
            }
        );
        s.not_mounted = Some(why.clone());
        save(env, &s);
        return Err(RemountError::NothingToMount(why));
    }
    rescue::assemble_and_mount(&mut s, &mut ctx, &replicas, &facts, sysroot, !read_write);
    save(env, &s);
    match &s.mounted {
        Some(_) => Ok(Mounted { released, state: s }),
        None => Err(RemountError::MountFailed(
            s.not_mounted
                .clone()
                .unwrap_or_else(|| "no reason recorded".into()),
        )),
    }
}

/// What `umount` did.
#[derive(Debug, Clone)]
pub struct Released {
    /// One line per thing released; empty when nothing was mounted.
    pub lines: Vec<String>,
    /// Warnings met (`code: message`).
    pub problems: Vec<String>,
}

/// `fixupctl umount`: unmounts the guest in reverse order, deactivates
/// its LVM volume groups and md arrays, syncs.
pub fn umount(env: &Env) -> Result<Released, RemountError> {
    let mut s = rescue_state(env)?;
    if s.mounted.is_none() && s.assembly.as_ref().is_none_or(|a| a.is_empty()) {
        return Ok(Released {
            lines: Vec::new(),
            problems: Vec::new(),
        });
    }
    check_busy(env, &s)?;
    let mut runner = RealRunner::default();
    let mut ctx = LogCtx::new(&mut runner);
    let released = release(&mut s, &mut ctx);
    let problems: Vec<String> = ctx
        .warnings
        .drain(..)
        .map(|w| format!("{}: {}", w.code, w.message))
        .collect();
    match released {
        Ok(lines) => {
            s.problems = problems.clone();
            s.not_mounted =
                Some("released by fixupctl umount; fixupctl mount [--rw] mounts it again".into());
            save(env, &s);
            Ok(Released { lines, problems })
        }
        Err(e) => {
            save(env, &s);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn proc_entry(root: &Path, pid: u32, comm: &str, cwd: &str, fds: &[&str]) {
        let base = root.join(pid.to_string());
        std::fs::create_dir_all(base.join("fd")).unwrap();
        std::fs::write(base.join("comm"), format!("{comm}\n")).unwrap();
        symlink(cwd, base.join("cwd")).unwrap();
        symlink("/", base.join("root")).unwrap();
        symlink("/bin/busybox", base.join("exe")).unwrap();
        for (i, f) in fds.iter().enumerate() {
            symlink(f, base.join("fd").join(i.to_string())).unwrap();
        }
    }

    #[test]
    fn busy_users_name_the_processes_inside() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        proc_entry(p, 1, "osam-init", "/", &["/dev/console"]);
        proc_entry(p, 214, "sh", "/sysroot/etc", &["/dev/ttyS0"]);
        proc_entry(p, 300, "less", "/", &["/sysroot/var/log/syslog"]);
        proc_entry(p, 301, "sh", "/sysroot2", &[]);
        proc_entry(p, 400, "fixupctl", "/sysroot", &[]);
        std::fs::create_dir(p.join("self")).unwrap();
        let users = busy_users(p, Path::new("/sysroot"), 400);
        assert_eq!(
            users,
            vec![
                BusyUser {
                    pid: 214,
                    command: "sh".into(),
                    what: "working directory /sysroot/etc".into()
                },
                BusyUser {
                    pid: 300,
                    command: "less".into(),
                    what: "open file /sysroot/var/log/syslog".into()
                },
            ]
        );
        let e = RemountError::Busy {
            target: "/sysroot".into(),
            users,
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "/sysroot is busy: used by sh (pid 214, working directory /sysroot/etc), less"
            ),
            "{msg}"
        );
        assert!(msg.contains("`cd /`"), "{msg}");
        assert!(busy_users(&p.join("missing"), Path::new("/sysroot"), 0).is_empty());
    }

    #[test]
    fn outside_rescue_mode_says_where_it_works() {
        let d = tempfile::tempdir().unwrap();
        let mut env = Env {
            run_dir: d.path().join("run-osam"),
            sysfs: d.path().join("sys"),
            proc_root: d.path().join("proc"),
            cmdline: "quiet".into(),
        };
        let e = rescue_state(&env).unwrap_err();
        assert!(matches!(e, RemountError::NotRescue { phase: None }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("only work in the fixup stack's rescue mode"),
            "{msg}"
        );
        assert!(msg.contains("OSAM rescue shell"), "{msg}");

        // The protocol's PID 1: its phase is named.
        let mut t = crate::runstate::Tracker::new(&env.run_dir, Path::new("/tmp/fixup"));
        t.phase(crate::runstate::Phase::WaitingForBegin, None);
        let msg = rescue_state(&env).unwrap_err().to_string();
        assert!(
            msg.contains("PID 1 serves the protocol (waiting for BEGIN in /tmp/fixup)"),
            "{msg}"
        );
        // The same command outside the stack fails before it looks at any
        // disk.
        assert!(matches!(umount(&env), Err(RemountError::NotRescue { .. })));

        // Rescue mode without a record: a fresh one.
        env.cmdline = "osam.mode=rescue".into();
        assert_eq!(rescue_state(&env).unwrap(), RescueState::default());

        // A record is read back.
        let s = RescueState {
            replica_disks: vec!["sda".into()],
            ..RescueState::default()
        };
        rescue::save(&env.run_dir, &s).unwrap();
        env.cmdline = String::new();
        assert_eq!(rescue_state(&env).unwrap(), s);
        // Nothing mounted, nothing assembled: umount has nothing to do.
        let r = umount(&env).unwrap();
        assert!(r.lines.is_empty());

        // A mount made by hand at the target is never mounted over.
        std::fs::create_dir_all(env.proc_root.join("self")).unwrap();
        std::fs::write(
            env.proc_root.join("self/mountinfo"),
            "40 1 8:1 / /sysroot ro,relatime - ext4 /dev/sda1 ro\n",
        )
        .unwrap();
        let e = mount(&env, Path::new("/sysroot"), true).unwrap_err();
        assert!(matches!(e, RemountError::Occupied(_)), "{e}");
        assert!(e.to_string().contains("umount /sysroot"), "{e}");
        assert_eq!(rescue::load(&env.run_dir).unwrap(), Some(s));
    }
}
