//! `fixupctl`: the fixup engine on the command line, for field engineers
//! and tests. `main` parses the command line and dispatches; the work is in
//! the library.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::protocol::config;
use crate::protocol::result::RunStatus;
use crate::protocol::session::{self, MountedTree, RunOptions};
use crate::runner::{CommandRunner, RealRunner, RecordingRunner};

/// Exit status: the run succeeded / the input is valid.
pub const EXIT_OK: i32 = 0;
/// Exit status: the fixup failed / the input is invalid.
pub const EXIT_FAILED: i32 = 1;
/// Exit status: the command line is wrong.
pub const EXIT_USAGE: i32 = 2;

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
    /// replica-disk-map.json. Exit status: 0 success, 1 failed fixup,
    /// 2 usage error.
    Run {
        /// The guest's root, mounted (with its /boot and other mounts).
        #[arg(long, value_name = "DIR")]
        sysroot: PathBuf,
        /// Where the JSON files are and the results go.
        #[arg(long, value_name = "DIR")]
        fixup_dir: PathBuf,
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
        /// The guest's root, mounted.
        #[arg(long, value_name = "DIR")]
        sysroot: PathBuf,
        /// Where the three JSON files are.
        #[arg(long, value_name = "DIR")]
        fixup_dir: PathBuf,
    },
    /// Restore the guest to what it was before stage 1.
    ///
    /// Every file stage 1 changed is restored byte for byte from its
    /// backup under /opt/vmware/hcx/osam/data/backup, every file it created
    /// is removed, as data/manifest.json records them. Exit status: 0 all
    /// restored, 1 something could not be restored (listed), 2 usage error.
    Undo {
        /// The guest's root, mounted read-write.
        #[arg(long, value_name = "DIR")]
        sysroot: PathBuf,
    },
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
        } => run(&sysroot, &fixup_dir, no_commands),
        Cmd::Validate { fixup_dir } => validate(&fixup_dir),
        Cmd::Undo { sysroot } => undo(&sysroot),
        Cmd::Plan { sysroot, fixup_dir } => plan(&sysroot, &fixup_dir),
    }
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
    let opts = RunOptions { offline: true };
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
        assert!(Cli::try_parse_from(["fixupctl", "run", "--sysroot", "x"]).is_err());
    }
}
