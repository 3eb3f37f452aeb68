//! The stage-1 lock: `fixupctl run`, `fixupctl undo`, `fixupctl
//! mount`/`umount` and PID 1's stage-1 run each hold it while they change
//! a guest or its mounts, so that two of them never run at once. It is an exclusive `flock(2)` taken without waiting: a
//! second taker fails at once and is told who holds the lock.
//!
//! Where it lives ([`scope`]):
//!
//! - on the stack, `/run/osam/stage1.lock`: one lock for the machine
//!   (PID 1 creates `/run/osam`);
//! - on a workstation, where `/run/osam` is absent, one lock per guest
//!   tree: `osam-stage1-<hash of the tree's real path>.lock` in the
//!   temporary folder, so that `run` and `undo` on one tree exclude each
//!   other and runs on different trees do not.
//!
//! The holder writes who it is into the file (`{"pid", "command",
//! "since"}`); the kernel drops the lock when the holder exits, however it
//! exits, so a stale file never blocks anyone.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::runstate::{self, State};
use crate::timefmt;

/// The lock's name in the stack's run-time folder.
pub const LOCK_FILE: &str = "stage1.lock";

/// Who holds the lock, as the holder wrote it into the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// `osam-init`, `fixupctl run`, `fixupctl undo`, `fixupctl mount`,
    /// `fixupctl umount`.
    pub command: String,
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {}, since {})",
            self.command, self.pid, self.since
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "stage 1 is already running on this machine: {} holds {}; wait for it to end (fixupctl status shows what it does)",
        describe_holder(.holder, .state),
        .path.display()
    )]
    Busy {
        path: PathBuf,
        holder: Option<Holder>,
        /// PID 1's state when PID 1 is the holder.
        state: Option<Box<State>>,
    },
    #[error("cannot take the stage-1 lock {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn describe_holder(holder: &Option<Holder>, state: &Option<Box<State>>) -> String {
    let mut s = match holder {
        Some(h) => h.to_string(),
        None => "another process (it has not said which yet)".to_string(),
    };
    if let Some(st) = state {
        s.push_str(&format!(" [{}]", st.describe()));
    }
    s
}

/// Where the lock is: the machine's (on the stack) or the guest tree's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `<run_dir>/stage1.lock`.
    Machine(PathBuf),
    /// A lock file in `dir` named after the guest tree `sysroot`.
    Tree { dir: PathBuf, sysroot: PathBuf },
}

impl Scope {
    /// The lock file's path.
    pub fn path(&self) -> PathBuf {
        match self {
            Scope::Machine(run_dir) => run_dir.join(LOCK_FILE),
            Scope::Tree { dir, sysroot } => {
                let digest = Sha256::digest(sysroot.as_os_str().as_encoded_bytes());
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                dir.join(format!("osam-stage1-{hex}.lock"))
            }
        }
    }
}

/// The stack's run-time folder: `$OSAM_RUN_DIR` where set (tests), else
/// [`runstate::RUN_DIR`].
pub fn run_dir() -> PathBuf {
    std::env::var_os("OSAM_RUN_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(runstate::RUN_DIR), PathBuf::from)
}

/// The lock for work on `sysroot`: the machine's where `run_dir` exists,
/// else the tree's in the temporary folder.
pub fn scope(run_dir: &Path, sysroot: &Path) -> Scope {
    if run_dir.is_dir() {
        Scope::Machine(run_dir.to_path_buf())
    } else {
        let sysroot = std::fs::canonicalize(sysroot).unwrap_or_else(|_| sysroot.to_path_buf());
        Scope::Tree {
            dir: std::env::temp_dir(),
            sysroot,
        }
    }
}

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct Stage1Lock {
    _file: Flock<File>,
    path: PathBuf,
}

impl Stage1Lock {
    /// Takes the lock at once or fails: [`LockError::Busy`] names the
    /// holder. `command` is what this process calls itself in the file.
    pub fn acquire(scope: &Scope, command: &str) -> Result<Stage1Lock, LockError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = scope.path();
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((_, Errno::EWOULDBLOCK)) => {
                let holder = read_holder(&path);
                let state = match (scope, &holder) {
                    (Scope::Machine(run_dir), Some(h)) => State::read(run_dir)
                        .ok()
                        .flatten()
                        .filter(|s| s.pid == h.pid)
                        .map(Box::new),
                    _ => None,
                };
                return Err(LockError::Busy {
                    path,
                    holder,
                    state,
                });
            }
            Err((_, errno)) => return Err(io_err(io::Error::from(errno))),
        };
        let holder = Holder {
            pid: std::process::id(),
            command: command.to_string(),
            since: timefmt::now(),
        };
        let mut json = serde_json::to_vec(&holder).map_err(|e| io_err(io::Error::other(e)))?;
        json.push(b'\n');
        (|| -> io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&json)?;
            file.flush()
        })()
        .map_err(io_err)?;
        Ok(Stage1Lock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The holder named in a lock file, if it wrote itself in yet.
pub fn read_holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Who holds the lock now, without taking it for long: `Ok(None)` when it
/// is free (it was taken and given back at once to find out).
pub fn holder_now(scope: &Scope) -> io::Result<Option<Holder>> {
    let path = scope.path();
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_free) => Ok(None),
        Err((_, Errno::EWOULDBLOCK)) => Ok(Some(read_holder(&path).unwrap_or(Holder {
            pid: 0,
            command: "an unknown process".into(),
            since: "?".into(),
        }))),
        Err((_, errno)) => Err(io::Error::from(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_fails_at_once_and_is_told_who_holds_it() {
        let d = tempfile::tempdir().unwrap();
        let scope = Scope::Machine(d.path().to_path_buf());
        let first = Stage1Lock::acquire(&scope, "fixupctl run").unwrap();
        assert_eq!(first.path(), d.path().join(LOCK_FILE));
        let held = holder_now(&scope).unwrap().unwrap();
        assert_eq!(held.pid, std::process::id());
        assert_eq!(held.command, "fixupctl run");
        // flock locks belong to the open file: a second open in this very
        // process conflicts like another process would.
        let err = Stage1Lock::acquire(&scope, "fixupctl undo").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LockError::Busy { .. }), "{msg}");
        assert!(
            msg.contains(&format!("fixupctl run (pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&d.path().join(LOCK_FILE).display().to_string()));
        drop(first);
        assert_eq!(holder_now(&scope).unwrap(), None);
        let again = Stage1Lock::acquire(&scope, "osam-init").unwrap();
        assert_eq!(read_holder(again.path()).unwrap().command, "osam-init");
    }

    #[test]
    fn busy_names_pid_1_with_its_state() {
        let d = tempfile::tempdir().unwrap();
        let scope = Scope::Machine(d.path().to_path_buf());
        let _held = Stage1Lock::acquire(&scope, "osam-init").unwrap();
        let mut t = runstate::Tracker::new(d.path(), Path::new("/tmp/fixup"));
        t.step(4, 11, "fstab");
        let msg = Stage1Lock::acquire(&scope, "fixupctl run")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("osam-init (pid"), "{msg}");
        assert!(msg.contains("[running stage 1: step 4/11 fstab]"), "{msg}");
    }

    #[test]
    fn scope_is_the_machine_on_the_stack_and_the_tree_elsewhere() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run-osam");
        let tree_a = d.path().join("a");
        let tree_b = d.path().join("b");
        std::fs::create_dir(&tree_a).unwrap();
        std::fs::create_dir(&tree_b).unwrap();
        let a = scope(&run, &tree_a);
        assert!(matches!(a, Scope::Tree { .. }), "{a:?}");
        assert_ne!(a.path(), scope(&run, &tree_b).path());
        // The same tree by another spelling is the same lock.
        assert_eq!(a.path(), scope(&run, &d.path().join("b/../a")).path());
        std::fs::create_dir(&run).unwrap();
        assert_eq!(scope(&run, &tree_a), Scope::Machine(run.clone()));
        assert_eq!(scope(&run, &tree_b).path(), run.join(LOCK_FILE));
    }
}
