//! Child processes and zombies. PID 1 inherits every orphan of the system,
//! so it must reap with `waitpid(-1)`; but then it would also take the exit
//! status of the commands it runs itself. So every child the stack starts
//! is registered here, and one reaper collects all exits: the statuses of
//! registered children are kept for their owners, orphans are just reaped.
//!
//! Outside PID 1 (`fixupctl`, tests) reaping all would steal other
//! threads' children, so there only the registered pid is waited for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

static REAP_ALL: AtomicBool = AtomicBool::new(false);
static CHILDREN: Mutex<Registry> = Mutex::new(Registry::new());

/// The registry: pid → exit status once known.
struct Registry {
    map: Option<HashMap<i32, Option<Exit>>>,
}

impl Registry {
    const fn new() -> Self {
        Registry { map: None }
    }
    fn map(&mut self) -> &mut HashMap<i32, Option<Exit>> {
        self.map.get_or_insert_with(HashMap::new)
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(s) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

impl Exit {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn as_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }

    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

/// Maps a wait status to an exit, `None` for stops and continues.
pub fn exit_of(status: WaitStatus) -> Option<(i32, Exit)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), Exit::Code(code))),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), Exit::Signal(sig as i32))),
        _ => None,
    }
}

/// Called once by PID 1: from now on every exit is collected here.
pub fn become_subreaper_of_all() {
    REAP_ALL.store(true, Ordering::SeqCst);
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    match CHILDREN.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Registers a child right after it was started (before any reaping).
pub fn register(pid: i32) {
    lock().map().insert(pid, None);
}

/// Reaps every exited child without blocking. Returns how many orphans
/// (children nobody registered) were reaped.
pub fn reap() -> usize {
    if !REAP_ALL.load(Ordering::SeqCst) {
        return 0;
    }
    let mut orphans = 0;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(status) => {
                if let Some((pid, exit)) = exit_of(status) {
                    let mut g = lock();
                    match g.map().get_mut(&pid) {
                        Some(slot) => *slot = Some(exit),
                        None => orphans += 1,
                    }
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: nothing left
        }
    }
    orphans
}

/// The exit of a registered child, if it has ended; the entry is removed
/// once reported.
pub fn try_exit(pid: i32) -> Option<Exit> {
    if REAP_ALL.load(Ordering::SeqCst) {
        reap();
    } else {
        loop {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(status) => {
                    if let Some((p, exit)) = exit_of(status) {
                        lock().map().insert(p, Some(exit));
                    }
                    break;
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }
    let mut g = lock();
    let map = g.map();
    match map.get(&pid) {
        Some(Some(exit)) => {
            let exit = *exit;
            map.remove(&pid);
            Some(exit)
        }
        _ => None,
    }
}

/// Waits for a registered child, polling every `step`, at most `limit`.
pub fn wait_exit(pid: i32, limit: std::time::Duration) -> Option<Exit> {
    let start = std::time::Instant::now();
    loop {
        if let Some(e) = try_exit(pid) {
            return Some(e);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn exit_mapping_table() {
        let p = Pid::from_raw(42);
        let cases = [
            (WaitStatus::Exited(p, 0), Some((42, Exit::Code(0)))),
            (WaitStatus::Exited(p, 3), Some((42, Exit::Code(3)))),
            (
                WaitStatus::Signaled(p, Signal::SIGKILL, false),
                Some((42, Exit::Signal(9))),
            ),
            (WaitStatus::Stopped(p, Signal::SIGSTOP), None),
            (WaitStatus::Continued(p), None),
        ];
        for (status, want) in cases {
            assert_eq!(exit_of(status), want, "{status:?}");
        }
        assert_eq!(Exit::Signal(9).as_code(), 137);
        assert!(Exit::Code(0).success());
        assert!(!Exit::Code(1).success());
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped through the registry
    fn waits_for_a_registered_child() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        register(pid);
        let exit = wait_exit(pid, std::time::Duration::from_secs(10));
        assert_eq!(exit, Some(Exit::Code(7)));
    }
}
