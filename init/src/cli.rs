//! `fixupctl`: the fixup engine on the command line, for field engineers
//! and tests. `main` parses the command line and dispatches; the work is in
//! the library.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::lock::{self, LockError, Stage1Lock};
use crate::pid1::remount::{self, RemountError};
use crate::pid1::rescue;
use crate::protocol::config;
use crate::protocol::result::RunStatus;
use crate::protocol::session::{self, MountedTree, RunOptions};
use crate::runner::{CommandRunner, RealRunner, RecordingRunner};
use crate::runstate::{DEFAULT_FIXUP_DIR, DEFAULT_SYSROOT, ESP_MOUNT, State};

/// Exit status: the run succeeded / the input is valid.
pub const EXIT_OK: i32 = 0;
/// Exit status: the fixup failed / the input is invalid.
pub const EXIT_FAILED: i32 = 1;
/// Exit status: the command line is wrong.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: stage 1 is already running on this machine (another
/// process holds the stage-1 lock); nothing was done.
pub const EXIT_BUSY: i32 = 3;

/// Inspect, plan, run and undo the OSAM Linux fixup on a guest.
#[derive(Debug, Parser)]
#[command(name = "fixupctl", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run stage 1 on an already-mounted guest tree (no disk assembly).
    ///
    /// The three JSON files are read from the fixup directory (no BEGIN
    /// needed); progress.txt, fixup.log, result.json and END are written
    /// there. Target file-system UUIDs come from `targetUuid` in
    /// replica-disk-map.json. Holds the stage-1 lock while it runs.
    /// A guest mounted read-only is refused (in rescue mode: fixupctl
    /// mount --rw first). Exit status: 0 success, 1 failed fixup, 2 usage
    /// error or a read-only guest, 3 stage 1 is already running (the
    /// lock's holder is named).
    Run {
        /// The guest's root, mounted (with its /boot and other mounts);
        /// in the fixup stack /sysroot by default.
        #[arg(long, value_name = "DIR")]
        sysroot: Option<PathBuf>,
        /// Where the JSON files are and the results go; in the fixup
        /// stack /tmp/fixup by default.
        #[arg(long, value_name = "DIR")]
        fixup_dir: Option<PathBuf>,
        /// Execute nothing in the guest: commands are only listed in
        /// result.json with "ran": false.
        #[arg(long)]
        no_commands: bool,
    },
    /// Show what stage 1 would do to a mounted guest; writes nothing.
    ///
    /// Prints a unified diff of every file it would change and every
    /// command it would run, step by step. Exit status: 0 planned, 1 the
    /// inputs or the guest stop the run (the error is printed), 2 usage
    /// error.
    Plan {
        /// The guest's root, mounted; in the fixup stack /sysroot by
        /// default.
        #[arg(long, value_name = "DIR")]
        sysroot: Option<PathBuf>,
        /// Where the three JSON files are; in the fixup stack /tmp/fixup
        /// by default.
        #[arg(long, value_name = "DIR")]
        fixup_dir: Option<PathBuf>,
    },
    /// Restore the guest to what it was before stage 1.
    ///
    /// Every file stage 1 changed is restored byte for byte from its
    /// backup under /opt/vmware/hcx/osam/data/backup, every file it created
    /// is removed, as data/manifest.json records them. Holds the stage-1
    /// lock while it runs. Exit status: 0 all restored, 1 something could
    /// not be restored (listed), 2 usage error or a read-only guest, 3
    /// stage 1 is running.
    Undo {
        /// The guest's root, mounted read-write; in the fixup stack
        /// /sysroot by default.
        #[arg(long, value_name = "DIR")]
        sysroot: Option<PathBuf>,
    },
    /// Mount the guest again, read-write with --rw (the stack's rescue
    /// mode only).
    ///
    /// Unmounts what rescue mode (or the last fixupctl mount) mounted,
    /// deactivates its LVM volume groups and md arrays, then assembles and
    /// mounts the guest again: read-only as at boot, or with --rw
    /// read-write (journals replayed, LVM and md read-write, the stack's
    /// /dev /proc /sys /run bound in for chroot and fixupctl run).
    /// Updates /run/osam/rescue.json and prints what is mounted. Holds the
    /// stage-1 lock. Exit status: 0 mounted, 1 not mounted (busy, nothing
    /// to mount, no guest root), 2 usage error or not rescue mode, 3 stage
    /// 1 is running.
    Mount {
        /// Read-write (default: read-only, nothing on the disks changes).
        #[arg(long)]
        rw: bool,
        /// Where to mount the guest.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_SYSROOT)]
        sysroot: PathBuf,
    },
    /// Unmount the guest and release its disks (the stack's rescue mode
    /// only).
    ///
    /// Unmounts in reverse order, deactivates the LVM volume groups and
    /// stops the md arrays rescue mode or fixupctl mount started, syncs,
    /// and updates /run/osam/rescue.json. Holds the stage-1 lock. Exit
    /// status: 0 released (or nothing was mounted), 1 something is still
    /// in use, 2 not rescue mode, 3 stage 1 is running.
    Umount,
    /// Validate the three JSON files of a fixup directory.
    ///
    /// Errors (file, JSON path, what was expected) and warnings go to
    /// standard error. Exit status: 0 valid, 1 invalid, 2 usage error.
    Validate {
        /// The directory holding system-configuration.json,
        /// replica-disk-map.json and network-interface-map.json.
        #[arg(long, value_name = "DIR")]
        fixup_dir: PathBuf,
    },
    /// Show what PID 1 is doing, and the last lines of progress.txt.
    ///
    /// Reads the state file PID 1 keeps (/run/osam/state.json): waiting
    /// for the input files or BEGIN, running step n/m, finished, failed;
    /// says who holds the stage-1 lock. Exit status: 0 shown, 1 no state
    /// file (PID 1 does not serve the protocol on this machine), 2 usage
    /// error.
    Status {
        /// Where progress.txt is.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_FIXUP_DIR)]
        fixup_dir: PathBuf,
        /// Print one JSON document: {"state", "rescue", "lock",
        /// "progress"}.
        #[arg(long)]
        json: bool,
    },
    /// Bundle logs, results, PID 1's state, the kernel log and the guest's
    /// OSAM data into one .tar.gz for support.
    ///
    /// Without --out the bundle goes to /fixup/ on the fixup disk's FAT
    /// partition (mounted for the purpose when PID 1 has not mounted it).
    /// Prints where it went. What is missing is listed in the bundle's
    /// collect.txt. Exit status: 0 written, 1 not written, 2 usage error
    /// (no --out and no fixup disk found).
    Collect {
        /// The guest's root, for its /opt/vmware/hcx/osam/data.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_SYSROOT)]
        sysroot: PathBuf,
        /// Where the results of the run are.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_FIXUP_DIR)]
        fixup_dir: PathBuf,
        /// Write the bundle here: a file, or a folder to put it in.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

/// Parses the command line and runs; returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    EXIT_OK
                }
                _ => EXIT_USAGE,
            };
        }
    };
    dispatch(cli.cmd)
}

/// Runs one command; returns the exit status.
pub fn dispatch(cmd: Cmd) -> i32 {
    match cmd {
        Cmd::Run {
            sysroot,
            fixup_dir,
            no_commands,
        } => match stack_paths(sysroot, fixup_dir) {
            Ok((sysroot, fixup_dir)) => run(&sysroot, &fixup_dir, no_commands),
            Err(code) => code,
        },
        Cmd::Validate { fixup_dir } => validate(&fixup_dir),
        Cmd::Undo { sysroot } => match stack_sysroot(sysroot) {
            Ok(sysroot) => undo(&sysroot),
            Err(code) => code,
        },
        Cmd::Plan { sysroot, fixup_dir } => match stack_paths(sysroot, fixup_dir) {
            Ok((sysroot, fixup_dir)) => plan(&sysroot, &fixup_dir),
            Err(code) => code,
        },
        Cmd::Mount { rw, sysroot } => mount(&sysroot, rw),
        Cmd::Umount => umount(),
        Cmd::Status { fixup_dir, json } => status(&fixup_dir, json),
        Cmd::Collect {
            sysroot,
            fixup_dir,
            out,
        } => collect(&sysroot, &fixup_dir, out.as_deref()),
    }
}

/// Takes the stage-1 lock for work on `sysroot`, or says who holds it and
/// returns the exit status.
fn take_lock(sysroot: &Path, command: &str) -> Result<Stage1Lock, i32> {
    let scope = lock::scope(&lock::run_dir(), sysroot);
    Stage1Lock::acquire(&scope, command).map_err(|e| {
        eprintln!("fixupctl: {e}");
        match e {
            LockError::Busy { .. } => EXIT_BUSY,
            LockError::Io { .. } => EXIT_FAILED,
        }
    })
}

/// Is this the fixup stack: does PID 1 keep its state file, or rescue
/// mode its record, in the run-time folder?
fn in_stack(run_dir: &Path) -> bool {
    run_dir.join(crate::runstate::STATE_FILE).is_file()
        || run_dir.join(rescue::STATE_NAME).is_file()
}

/// A path option as given, or in the fixup stack its default; elsewhere
/// a missing one is a usage error.
fn or_stack_default(given: Option<PathBuf>, flag: &str, default: &str) -> Result<PathBuf, i32> {
    match given {
        Some(p) => Ok(p),
        None if in_stack(&lock::run_dir()) => Ok(PathBuf::from(default)),
        None => {
            eprintln!(
                "fixupctl: give {flag} DIR (only the fixup stack's shell has a default, {default})"
            );
            Err(EXIT_USAGE)
        }
    }
}

/// `--sysroot`, or the stack's /sysroot, which must then have the guest
/// mounted.
fn stack_sysroot(given: Option<PathBuf>) -> Result<PathBuf, i32> {
    let defaulted = given.is_none();
    let sysroot = or_stack_default(given, "--sysroot", DEFAULT_SYSROOT)?;
    if defaulted {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if !crate::pid1::mounts::is_mounted(&mountinfo, DEFAULT_SYSROOT) {
            eprintln!(
                "fixupctl: nothing is mounted at {DEFAULT_SYSROOT}: in rescue mode `fixupctl mount` \
                 mounts the guest (fixupctl status shows what is mounted), or give --sysroot DIR"
            );
            return Err(EXIT_USAGE);
        }
    }
    Ok(sysroot)
}

/// `--sysroot` and `--fixup-dir`, with the stack's defaults.
fn stack_paths(
    sysroot: Option<PathBuf>,
    fixup_dir: Option<PathBuf>,
) -> Result<(PathBuf, PathBuf), i32> {
    let fixup_dir = or_stack_default(fixup_dir, "--fixup-dir", DEFAULT_FIXUP_DIR)?;
    Ok((stack_sysroot(sysroot)?, fixup_dir))
}

/// The mount points at or below `sysroot` that are mounted read-only
/// (per /proc/self/mountinfo text), in mount order.
pub fn read_only_mounts(mountinfo: &str, sysroot: &Path) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mp = crate::fsutil::unescape_octal(f.get(4)?);
            let ro = f.get(5)?.split(',').any(|o| o == "ro");
            (ro && Path::new(&mp).starts_with(sysroot)).then_some(mp)
        })
        .collect()
}

/// Refuses to change a guest whose root is mounted read-only (rescue
/// mode's mount); warns about read-only mounts below it.
fn refuse_read_only(sysroot: &Path, command: &str) -> Option<i32> {
    let real = std::fs::canonicalize(sysroot).unwrap_or_else(|_| sysroot.to_path_buf());
    let read_only = nix::sys::statvfs::statvfs(&real)
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    if read_only {
        eprintln!(
            "fixupctl: {} is mounted read-only (rescue mode mounts the guest read-only): run \
             `fixupctl mount --rw` first, then fixupctl {command} again; nothing was changed",
            sysroot.display()
        );
        return Some(EXIT_USAGE);
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mp in read_only_mounts(&mountinfo, &real) {
        eprintln!("fixupctl: warning: {mp} is mounted read-only: nothing there can be changed");
    }
    None
}

fn usage_dir(what: &str, dir: &Path) -> Option<i32> {
    if dir.is_dir() {
        None
    } else {
        eprintln!("fixupctl: {what} {}: not a directory", dir.display());
        Some(EXIT_USAGE)
    }
}

fn run(sysroot: &Path, fixup_dir: &Path, no_commands: bool) -> i32 {
    if let Some(code) = usage_dir("--fixup-dir", fixup_dir) {
        return code;
    }
    if let Some(code) = usage_dir("--sysroot", sysroot) {
        return code;
    }
    if let Some(code) = refuse_read_only(sysroot, "run") {
        return code;
    }
    let _lock = match take_lock(sysroot, "fixupctl run") {
        Ok(l) => l,
        Err(code) => return code,
    };
    // A fresh run: old results would be mistaken for this run's.
    for f in ["progress.txt", "fixup.log", "result.json", "END"] {
        let _ = std::fs::remove_file(fixup_dir.join(f));
    }
    let mut provider = MountedTree {
        sysroot: sysroot.to_path_buf(),
    };
    let mut real = RealRunner::default();
    let mut recording = RecordingRunner::new();
    let runner: &mut dyn CommandRunner = if no_commands {
        &mut recording
    } else {
        &mut real
    };
    let opts = RunOptions {
        offline: true,
        ..RunOptions::default()
    };
    match session::run(fixup_dir, &mut provider, runner, &opts) {
        Ok(doc) => {
            let status = match doc.status {
                RunStatus::Success => "success",
                RunStatus::Failed => "failed",
            };
            println!(
                "{status}: {} step(s), {} error(s), {} warning(s); see {}",
                doc.steps.len(),
                doc.errors.len(),
                doc.warnings.len(),
                fixup_dir.join("result.json").display()
            );
            for e in &doc.errors {
                eprintln!("fixupctl: error: {}: {}", e.code, e.message);
            }
            if doc.status == RunStatus::Success {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(e) => {
            eprintln!(
                "fixupctl: cannot write the results into {}: {e}",
                fixup_dir.display()
            );
            EXIT_FAILED
        }
    }
}

fn plan(sysroot: &Path, fixup_dir: &Path) -> i32 {
    use crate::engine::plan::{Edit, GuestFiles};
    if let Some(code) = usage_dir("--fixup-dir", fixup_dir) {
        return code;
    }
    if let Some(code) = usage_dir("--sysroot", sysroot) {
        return code;
    }
    let inputs = match config::load_inputs(fixup_dir) {
        Ok((inputs, _)) => inputs,
        Err((errors, _)) => {
            for e in &errors {
                eprintln!("error: {}: {}", e.code, e.message);
            }
            return EXIT_FAILED;
        }
    };
    let fail = |e: crate::error::FixupError| {
        eprintln!("fixupctl: {}: {}", e.code, e.message);
        EXIT_FAILED
    };
    let root = match crate::guestfs::GuestRoot::open(sysroot) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "fixupctl: cannot open the guest tree {}: {e}",
                sysroot.display()
            );
            return EXIT_FAILED;
        }
    };
    let info = match crate::detect::detect(&root) {
        Ok((info, _)) => info,
        Err(e) => return fail(e),
    };
    if let Err(e) = crate::detect::check_arch(&info.arch, crate::STACK_ARCH) {
        return fail(e);
    }
    let agent = session::find_agent(&info.arch);
    let plans = match crate::engine::stage1::plan_all(
        &root,
        &info,
        &inputs,
        agent.as_ref().map(|(_, b)| b.as_slice()),
    ) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    println!(
        "# {} ({} {}) at {}",
        info.pretty_name,
        info.os_id,
        info.os_version,
        sysroot.display()
    );
    let mut current: std::collections::BTreeMap<String, Option<Vec<u8>>> = Default::default();
    let old_of = |current: &mut std::collections::BTreeMap<String, Option<Vec<u8>>>,
                  path: &str|
     -> Option<Vec<u8>> {
        current
            .entry(path.to_string())
            .or_insert_with(|| root.read_bytes(path, 1 << 30).ok().flatten())
            .clone()
    };
    let mut updates: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for (id, plan) in &plans {
        println!(
            "## {id}: {}",
            if plan.summary.is_empty() {
                "nothing to change"
            } else {
                &plan.summary
            }
        );
        for w in &plan.warnings {
            println!("# warning: {}: {}", w.code, w.message);
        }
        for edit in &plan.edits {
            match edit {
                Edit::Write { path, contents, .. } => {
                    print_diff(path, old_of(&mut current, path).as_deref(), Some(contents));
                    updates.push((path.clone(), Some(contents.clone())));
                }
                Edit::Remove { path } => {
                    print_diff(path, old_of(&mut current, path).as_deref(), None);
                    updates.push((path.clone(), None));
                }
                Edit::Rename { from, to, contents } => {
                    println!("rename {from} -> {to}");
                    print_diff(to, old_of(&mut current, from).as_deref(), Some(contents));
                    updates.push((from.clone(), None));
                    updates.push((to.clone(), Some(contents.clone())));
                }
                Edit::Symlink { path, target } => {
                    let old = GuestFiles::read_link(&root, path);
                    println!(
                        "symlink {path}: {} -> {target}",
                        old.as_deref().unwrap_or("(none)")
                    );
                }
                Edit::Preserve { path } => {
                    println!("save {path} (a command below regenerates it)");
                }
            }
            for (p, c) in updates.drain(..) {
                current.insert(p, c);
            }
        }
        for c in &plan.commands {
            println!(
                "$ chroot {} {}",
                sysroot.display(),
                crate::runner::Command::new(&c.argv).display()
            );
            println!("#   {}", c.why);
        }
    }
    EXIT_OK
}

/// Prints a unified diff of one file (old → new; `None` is missing).
fn print_diff(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) {
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let (o, n) = (text(old), text(new));
    let binary = |b: Option<&[u8]>| b.is_some_and(|b| b.contains(&0));
    if binary(old) || binary(new) {
        println!(
            "binary {path}: {} -> {} bytes",
            old.map_or(0, <[u8]>::len),
            new.map_or(0, <[u8]>::len)
        );
        return;
    }
    let a = o.clone().unwrap_or_default();
    let b = n.clone().unwrap_or_default();
    let diff = similar::TextDiff::from_lines(&a, &b);
    let old_name = if o.is_some() {
        format!("a{path}")
    } else {
        "/dev/null".into()
    };
    let new_name = if n.is_some() {
        format!("b{path}")
    } else {
        "/dev/null".into()
    };
    print!(
        "{}",
        diff.unified_diff()
            .context_radius(3)
            .header(&old_name, &new_name)
    );
}

fn undo(sysroot: &Path) -> i32 {
    if let Some(code) = usage_dir("--sysroot", sysroot) {
        return code;
    }
    if let Some(code) = refuse_read_only(sysroot, "undo") {
        return code;
    }
    let _lock = match take_lock(sysroot, "fixupctl undo") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let root = match crate::guestfs::GuestRoot::open(sysroot) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "fixupctl: cannot open the guest tree {}: {e}",
                sysroot.display()
            );
            return EXIT_FAILED;
        }
    };
    match crate::guestwrite::undo(&root) {
        Ok(report) => {
            for p in &report.restored {
                println!("restored {p}");
            }
            for p in &report.removed {
                println!("removed {p}");
            }
            for p in &report.problems {
                eprintln!("fixupctl: not restored: {p}");
            }
            println!(
                "undo: {} restored, {} removed, {} problem(s)",
                report.restored.len(),
                report.removed.len(),
                report.problems.len()
            );
            nix::unistd::sync();
            if report.problems.is_empty() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(e) => {
            eprintln!("fixupctl: undo: {e}");
            EXIT_FAILED
        }
    }
}

/// `p` as an absolute path without `.` and `..`; `/` itself is refused
/// (the guest is never mounted over the stack).
pub fn mount_point(p: &Path, cwd: &Path) -> Result<PathBuf, String> {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    let joined = cwd.join(p);
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("{}: give a path without `..`", p.display()));
            }
        }
    }
    if out == Path::new("/") {
        return Err("the guest cannot be mounted over /".into());
    }
    Ok(out)
}

fn remount_exit(e: &RemountError) -> i32 {
    match e {
        RemountError::NotRescue { .. } => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

/// Leaves the current folder for `/`: a working directory below the
/// guest would keep it busy.
fn leave_cwd() -> Result<PathBuf, i32> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    if let Err(e) = std::env::set_current_dir("/") {
        eprintln!("fixupctl: cannot change to /: {e}");
        return Err(EXIT_FAILED);
    }
    Ok(cwd)
}

fn mount(sysroot: &Path, rw: bool) -> i32 {
    let env = remount::Env::system();
    if let Err(e) = remount::rescue_state(&env) {
        eprintln!("fixupctl: {e}");
        return remount_exit(&e);
    }
    let cwd = match leave_cwd() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sysroot = match mount_point(sysroot, &cwd) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fixupctl: --sysroot {e}");
            return EXIT_USAGE;
        }
    };
    let _lock = match take_lock(&sysroot, "fixupctl mount") {
        Ok(l) => l,
        Err(code) => return code,
    };
    match remount::mount(&env, &sysroot, rw) {
        Ok(done) => {
            for l in &done.released {
                println!("{l}");
            }
            let s = &done.state;
            if let Some(a) = &s.assembly {
                let how = if a.read_only {
                    "read-only"
                } else {
                    "read-write"
                };
                for l in a.summary() {
                    println!("assembled, {how}: {l}");
                }
            }
            if let Some(m) = &s.mounted {
                if m.read_only {
                    println!(
                        "mounted READ-ONLY at {} (no journal replayed, devices read-only; \
                         fixupctl mount --rw to change the guest):",
                        m.sysroot.display()
                    );
                } else {
                    println!(
                        "mounted READ-WRITE at {} (journals replayed; chroot and fixupctl run \
                         work):",
                        m.sysroot.display()
                    );
                }
                for l in m.summary() {
                    println!("  {l}");
                }
                let binds: Vec<&str> = m
                    .mounts
                    .iter()
                    .filter(|r| r.kind == crate::pid1::sysroot::MountKind::Stack)
                    .map(|r| r.guest_path.as_str())
                    .collect();
                if !binds.is_empty() {
                    println!("  the stack's {} bound in", binds.join(" "));
                }
                for r in &m.other_roots {
                    println!("also looks like a guest root, not mounted: {r}");
                }
            }
            for p in &s.problems {
                eprintln!("fixupctl: warning: {p}");
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("fixupctl: {e}");
            remount_exit(&e)
        }
    }
}

fn umount() -> i32 {
    let env = remount::Env::system();
    let s = match remount::rescue_state(&env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fixupctl: {e}");
            return remount_exit(&e);
        }
    };
    if let Err(code) = leave_cwd() {
        return code;
    }
    let sysroot = s
        .mounted
        .as_ref()
        .map_or_else(|| PathBuf::from(DEFAULT_SYSROOT), |m| m.sysroot.clone());
    let _lock = match take_lock(&sysroot, "fixupctl umount") {
        Ok(l) => l,
        Err(code) => return code,
    };
    match remount::umount(&env) {
        Ok(r) if r.lines.is_empty() => {
            println!("nothing is mounted: the guest's disks are not in use");
            EXIT_OK
        }
        Ok(r) => {
            for l in &r.lines {
                println!("{l}");
            }
            for p in &r.problems {
                eprintln!("fixupctl: warning: {p}");
            }
            println!(
                "released: the guest's disks are synced and no longer in use (fixupctl mount \
                 [--rw] mounts them again)"
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("fixupctl: {e}");
            remount_exit(&e)
        }
    }
}

fn validate(fixup_dir: &Path) -> i32 {
    if let Some(code) = usage_dir("--fixup-dir", fixup_dir) {
        return code;
    }
    match config::load_inputs(fixup_dir) {
        Ok((_, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {}: {}", w.code, w.message);
            }
            println!("valid: {}", fixup_dir.display());
            EXIT_OK
        }
        Err((errors, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {}: {}", w.code, w.message);
            }
            for e in &errors {
                eprintln!("error: {}: {}", e.code, e.message);
            }
            EXIT_FAILED
        }
    }
}

/// The last `n` lines of a text file (read from its last 64 KiB).
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(64 * 1024).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if from > 0 && !lines.is_empty() {
        // The first line read may be cut.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..].iter().map(|l| l.to_string()).collect())
}

/// `osam.mode=rescue` on a kernel command line?
fn rescue_on(cmdline: &str) -> bool {
    crate::cmdline::parse(cmdline).mode == crate::cmdline::Mode::Rescue
}

/// The status report in words (pure: `status` gathers, this renders).
pub fn render_status(
    state: Option<&State>,
    rescue: bool,
    holder: Option<&lock::Holder>,
    progress_path: &Path,
    progress: &[String],
) -> String {
    let mut out = String::new();
    match state {
        Some(s) => {
            out.push_str(&format!("PID 1: {}\n", s.describe()));
            out.push_str(&format!(
                "  since {} (stack up since {}, pid {})\n",
                s.phase_since, s.started_at, s.pid
            ));
            if let Some(t) = &s.transport {
                out.push_str(&format!("  transport: {t}\n"));
            }
            if let Some(esp) = &s.esp {
                out.push_str(&format!(
                    "  fixup disk: {} (GPT disk GUID {}); files in /fixup/ there, mounted at {} while in use\n",
                    esp.device, esp.disk_guid, esp.mount_point
                ));
            }
            out.push_str(&format!("  fixup dir: {}\n", s.fixup_dir));
        }
        None if rescue => out.push_str(
            "rescue mode (osam.mode=rescue): PID 1 runs no fixup; fixupctl run works on a tree you mount\n",
        ),
        None => out.push_str(
            "PID 1 keeps no state here: it does not serve the protocol on this machine\n",
        ),
    }
    match holder {
        Some(h) => out.push_str(&format!("stage-1 lock: held by {h}\n")),
        None => out.push_str("stage-1 lock: free\n"),
    }
    if progress.is_empty() {
        out.push_str(&format!("no progress in {}\n", progress_path.display()));
    } else {
        out.push_str(&format!(
            "last {} line(s) of {}:\n",
            progress.len(),
            progress_path.display()
        ));
        for l in progress {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

fn status(fixup_dir: &Path, json: bool) -> i32 {
    let run_dir = lock::run_dir();
    let state = match State::read(&run_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fixupctl: reading PID 1's state: {e}");
            None
        }
    };
    let rescue = run_dir.join(rescue::STATE_NAME).is_file()
        || std::fs::read_to_string("/proc/cmdline").is_ok_and(|c| rescue_on(&c));
    let holder = if run_dir.is_dir() {
        lock::holder_now(&lock::Scope::Machine(run_dir.clone()))
            .ok()
            .flatten()
    } else {
        None
    };
    let progress_path = fixup_dir.join(crate::protocol::report::PROGRESS);
    let progress = tail_lines(&progress_path, 10).unwrap_or_default();
    if json {
        let doc = serde_json::json!({
            "state": state,
            "rescue": rescue,
            "lock": holder,
            "progress": progress,
        });
        match serde_json::to_string_pretty(&doc) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("fixupctl: {e}");
                return EXIT_FAILED;
            }
        }
    } else {
        print!(
            "{}",
            render_status(
                state.as_ref(),
                rescue,
                holder.as_ref(),
                &progress_path,
                &progress
            )
        );
        if rescue {
            // What is mounted now (the banner is rewritten by fixupctl
            // mount and umount).
            if let Ok(banner) = std::fs::read_to_string(run_dir.join(rescue::BANNER_NAME)) {
                print!("{banner}");
            }
        }
    }
    if state.is_some() || rescue {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// The fixup disk's `/fixup/` folder for `collect`: where PID 1 has the
/// ESP mounted, or after mounting it (returned, to be unmounted) when its
/// device is known from PID 1's state or from `osam.disk=`.
fn esp_for_collect(
    run_dir: &Path,
) -> Result<(PathBuf, Option<crate::pid1::disk_transport::EspMount>), String> {
    use crate::pid1::disk_transport::{self, EspLocation, EspMount};
    let mount_point = Path::new(ESP_MOUNT);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if crate::pid1::mounts::is_mounted(&mountinfo, ESP_MOUNT) {
        return Ok((mount_point.join(disk_transport::ESP_FIXUP_DIR), None));
    }
    let from_state = State::read(run_dir).ok().flatten().and_then(|s| s.esp);
    let location = match from_state {
        Some(esp) => EspLocation {
            disk: String::new(),
            partition: String::new(),
            number: 0,
            device: PathBuf::from(esp.device),
            disk_guid: esp.disk_guid,
        },
        None => {
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            let Some(guid) = crate::cmdline::parse(&cmdline).disk else {
                return Err(
                    "the fixup disk's FAT partition is not mounted here and this is not the \
                     fixup stack (no osam.disk= on the kernel command line)"
                        .into(),
                );
            };
            disk_transport::find_esp(Path::new("/sys"), Path::new("/dev"), &guid)
                .map_err(|e| e.to_string())?
        }
    };
    let esp = EspMount::mount(location, mount_point).map_err(|e| e.to_string())?;
    let dir = esp.fixup_dir();
    Ok((dir, Some(esp)))
}

fn collect(sysroot: &Path, fixup_dir: &Path, out: Option<&Path>) -> i32 {
    let run_dir = lock::run_dir();
    let now = std::time::SystemTime::now();
    let stamp = crate::timefmt::rfc3339(now);
    let stem = crate::collect::bundle_stem(&stamp);
    let gathered = crate::collect::gather(&crate::collect::Sources::system(
        fixup_dir, sysroot, &run_dir,
    ));
    let data =
        match crate::collect::bundle(&gathered, &stem, &stamp, crate::timefmt::unix_seconds(now)) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("fixupctl: making the bundle: {e}");
                return EXIT_FAILED;
            }
        };
    let (path, mut mounted_here) = match out {
        Some(o) => (crate::collect::out_path(o, &stem), None),
        None => match esp_for_collect(&run_dir) {
            Ok((dir, m)) => (dir.join(format!("{stem}.tar.gz")), m),
            Err(why) => {
                eprintln!("fixupctl: {why}; give --out FILE or --out DIR");
                return EXIT_USAGE;
            }
        },
    };
    let written = crate::collect::write_bundle(&path, &data);
    if let Some(m) = mounted_here.as_mut() {
        if let Err(e) = m.unmount() {
            eprintln!("fixupctl: {e}");
        }
    }
    match written {
        Ok(()) => {
            println!("{}", path.display());
            eprintln!(
                "collected {} file(s), {} bytes; {} not collected (see collect.txt)",
                gathered.entries.len(),
                data.len(),
                gathered.missing.len()
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("fixupctl: writing {}: {e}", path.display());
            EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_forms() {
        let c = Cli::try_parse_from([
            "fixupctl",
            "run",
            "--sysroot",
            "/sysroot",
            "--fixup-dir",
            "/tmp/fixup",
            "--no-commands",
        ])
        .unwrap();
        match c.cmd {
            Cmd::Run { no_commands, .. } => assert!(no_commands),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["fixupctl", "validate", "--fixup-dir", "x"]).is_ok());
        match Cli::try_parse_from(["fixupctl", "status"]).unwrap().cmd {
            Cmd::Status { fixup_dir, json } => {
                assert_eq!(fixup_dir, Path::new("/tmp/fixup"));
                assert!(!json);
            }
            other => panic!("{other:?}"),
        }
        match Cli::try_parse_from(["fixupctl", "collect"]).unwrap().cmd {
            Cmd::Collect {
                sysroot,
                fixup_dir,
                out,
            } => {
                assert_eq!(sysroot, Path::new("/sysroot"));
                assert_eq!(fixup_dir, Path::new("/tmp/fixup"));
                assert_eq!(out, None);
            }
            other => panic!("{other:?}"),
        }
        // The paths of run, plan and undo have defaults in the stack
        // only (`stack_paths`); parsing leaves them out.
        match Cli::try_parse_from(["fixupctl", "run"]).unwrap().cmd {
            Cmd::Run {
                sysroot, fixup_dir, ..
            } => assert_eq!((sysroot, fixup_dir), (None, None)),
            other => panic!("{other:?}"),
        }
        match Cli::try_parse_from(["fixupctl", "mount", "--rw"])
            .unwrap()
            .cmd
        {
            Cmd::Mount { rw, sysroot } => {
                assert!(rw);
                assert_eq!(sysroot, Path::new("/sysroot"));
            }
            other => panic!("{other:?}"),
        }
        match Cli::try_parse_from(["fixupctl", "mount", "--sysroot", "/mnt/g"])
            .unwrap()
            .cmd
        {
            Cmd::Mount { rw, sysroot } => {
                assert!(!rw);
                assert_eq!(sysroot, Path::new("/mnt/g"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Cli::try_parse_from(["fixupctl", "umount"]).unwrap().cmd,
            Cmd::Umount
        ));
        assert!(Cli::try_parse_from(["fixupctl", "umount", "--rw"]).is_err());
    }

    #[test]
    fn mount_points_are_absolute_and_never_the_root() {
        let cwd = Path::new("/root");
        assert_eq!(
            mount_point(Path::new("/sysroot/"), cwd).unwrap(),
            Path::new("/sysroot")
        );
        assert_eq!(
            mount_point(Path::new("./g"), cwd).unwrap(),
            Path::new("/root/g")
        );
        assert!(mount_point(Path::new("/"), cwd).is_err());
        assert!(mount_point(Path::new("/."), cwd).is_err());
        assert!(mount_point(Path::new("/sysroot/.."), cwd).is_err());
    }

    #[test]
    fn read_only_mounts_below_the_sysroot() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    40 1 8:1 / /sysroot ro,relatime - ext4 /dev/sda1 ro,noload\n\
                    41 40 8:2 / /sysroot/boot rw - ext4 /dev/sda2 rw\n\
                    42 40 8:3 / /sysroot/with\\040space ro - xfs /dev/sda3 ro\n\
                    43 1 8:4 / /sysroot2 ro - ext4 /dev/sdb1 ro\n";
        assert_eq!(
            read_only_mounts(info, Path::new("/sysroot")),
            ["/sysroot", "/sysroot/with space"]
        );
        assert!(read_only_mounts(info, Path::new("/sysroot/boot")).is_empty());
    }

    #[test]
    fn status_in_words() {
        let mut s = State::new(Path::new("/tmp/fixup"));
        s.transport = Some("disk".into());
        s.esp = Some(crate::runstate::EspInfo {
            device: "/dev/sda2".into(),
            mount_point: "/run/osam/esp".into(),
            disk_guid: "12345678-9abc-def0-0123-456789abcdef".into(),
        });
        s.set_phase(crate::runstate::Phase::Running, None);
        s.step = Some(crate::runstate::StepPos {
            n: 5,
            of: 12,
            id: "fstab".into(),
        });
        let holder = lock::Holder {
            pid: 1,
            command: "osam-init".into(),
            since: "2026-11-25T19:00:00Z".into(),
        };
        let text = render_status(
            Some(&s),
            false,
            Some(&holder),
            Path::new("/tmp/fixup/progress.txt"),
            &["a".to_string(), "b".to_string()],
        );
        assert!(
            text.starts_with("PID 1: running stage 1: step 5/12 fstab\n"),
            "{text}"
        );
        assert!(text.contains("  transport: disk\n"), "{text}");
        assert!(text.contains("fixup disk: /dev/sda2"), "{text}");
        assert!(
            text.contains("stage-1 lock: held by osam-init (pid 1, since 2026-11-25T19:00:00Z)"),
            "{text}"
        );
        assert!(
            text.ends_with("last 2 line(s) of /tmp/fixup/progress.txt:\n  a\n  b\n"),
            "{text}"
        );
        let text = render_status(None, true, None, Path::new("/p"), &[]);
        assert!(text.starts_with("rescue mode"), "{text}");
        assert!(
            text.contains("stage-1 lock: free\nno progress in /p\n"),
            "{text}"
        );
        assert!(rescue_on("quiet osam.mode=rescue"));
        assert!(!rescue_on("quiet"));
    }

    #[test]
    fn tail_lines_gives_the_last_ones() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("progress.txt");
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        let got = tail_lines(&p, 10).unwrap();
        assert_eq!(got.len(), 10);
        assert_eq!(got[0], "line 21");
        assert_eq!(got[9], "line 30");
        assert_eq!(tail_lines(&p, 100).unwrap().len(), 30);
        let long: String = (0..20_000).map(|i| format!("{i:08}\n")).collect();
        std::fs::write(&p, long).unwrap();
        assert_eq!(tail_lines(&p, 2).unwrap(), ["00019998", "00019999"]);
        assert!(tail_lines(&d.path().join("missing"), 10).is_err());
    }
}
