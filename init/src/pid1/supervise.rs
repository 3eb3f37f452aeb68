//! Supervision of the long-running helper PID 1 starts: `vmtoolsd`, which
//! carries the `vmtools` transport. It is restarted with a growing delay
//! when it dies; one that exits at once on its first start outside VMware
//! (it does: exit 1 after a few ms) is accepted and left down. On VMware
//! it is never given up (the manager cannot reach `/tmp/fixup` without
//! it): after [`Policy::max_restarts`] it is restarted every
//! [`Policy::max_delay`], with one error in the log; elsewhere it is given
//! up then.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::logging;
use crate::reaper;

/// The restart policy (pure, table-tested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub max_restarts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_restarts: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// The delay before restart number `n` (1-based): doubling, capped.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32
            .checked_shl(n.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

pub struct Supervised {
    pub name: String,
    argv: Vec<String>,
    pid: Option<i32>,
    started: Instant,
    restarts: u32,
    next_start: Option<Instant>,
    policy: Policy,
    /// Given up (outside VMware: at once, or after too many restarts).
    pub stopped: bool,
    on_vmware: bool,
}

impl Supervised {
    /// Finds `vmtoolsd` in the stack; `None` when the image has none.
    pub fn vmtoolsd(on_vmware: bool) -> Option<Supervised> {
        let path = ["/usr/bin/vmtoolsd", "/usr/sbin/vmtoolsd", "/bin/vmtoolsd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())?;
        Some(Supervised {
            name: "vmtoolsd".into(),
            argv: vec![path.display().to_string()],
            pid: None,
            started: Instant::now(),
            restarts: 0,
            next_start: Some(Instant::now()),
            policy: Policy::default(),
            stopped: false,
            on_vmware,
        })
    }

    fn start(&mut self) {
        let Some(prog) = self.argv.first() else {
            self.stopped = true;
            return;
        };
        match std::process::Command::new(prog)
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => {
                let pid = child.id() as i32;
                reaper::register(pid);
                self.pid = Some(pid);
                self.started = Instant::now();
                logging::info(format!("started {} (pid {pid})", self.name));
            }
            Err(e) => {
                logging::warn(format!("cannot start {}: {e}", self.name));
                self.stopped = true;
            }
        }
        self.next_start = None;
    }

    /// Called from PID 1's loops: notices an exit and restarts when due.
    pub fn poll(&mut self) {
        if self.stopped {
            return;
        }
        if let Some(pid) = self.pid {
            if let Some(exit) = reaper::try_exit(pid) {
                self.pid = None;
                let quick = self.started.elapsed() < Duration::from_secs(2);
                if quick && self.restarts == 0 && !self.on_vmware {
                    logging::info(format!(
                        "{} exited at once ({exit}): not on VMware, left stopped",
                        self.name
                    ));
                    self.stopped = true;
                    return;
                }
                self.restarts += 1;
                if self.restarts > self.policy.max_restarts {
                    if !self.on_vmware {
                        logging::error(format!(
                            "{} died {} times ({exit}); not on VMware, giving up",
                            self.name, self.restarts
                        ));
                        self.stopped = true;
                        return;
                    }
                    if self.restarts == self.policy.max_restarts + 1 {
                        logging::error(format!(
                            "{} died {} times ({exit}); still restarting it every {} s: \
                             the manager cannot reach the stack while it is down",
                            self.name,
                            self.restarts,
                            self.policy.max_delay.as_secs()
                        ));
                    }
                }
                let delay = self.policy.delay(self.restarts);
                logging::warn(format!(
                    "{} exited ({exit}); restarting in {} s",
                    self.name,
                    delay.as_secs_f32()
                ));
                self.next_start = Some(Instant::now() + delay);
            }
        }
        if self.pid.is_none() && self.next_start.is_some_and(|t| Instant::now() >= t) {
            self.start();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reaper::Exit;

    /// A supervised `argv` with a fast policy.
    fn fake(argv: &[&str], on_vmware: bool, max_restarts: u32) -> Supervised {
        Supervised {
            name: "fake-vmtoolsd".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            pid: None,
            started: Instant::now(),
            restarts: 0,
            next_start: Some(Instant::now()),
            policy: Policy {
                max_restarts,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(40),
            },
            stopped: false,
            on_vmware,
        }
    }

    /// Polls as PID 1's loops do until `done` or 10 s.
    fn poll_until(s: &mut Supervised, done: impl Fn(&Supervised) -> bool) {
        let start = Instant::now();
        while !done(s) && start.elapsed() < Duration::from_secs(10) {
            s.poll();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill(pid: i32) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    #[test]
    fn a_crash_looping_vmtoolsd_on_vmware_is_never_given_up() {
        let mut s = fake(&["/bin/sh", "-c", "exit 3"], true, 3);
        poll_until(&mut s, |s| s.restarts >= 8);
        assert!(!s.stopped, "given up on VMware");
        assert!(s.restarts >= 8, "only {} restarts in 10 s", s.restarts);
    }

    #[test]
    fn a_crash_looping_helper_off_vmware_is_given_up() {
        // Long enough not to count as "exits at once", then a crash loop.
        let mut s = fake(&["/bin/sh", "-c", "sleep 2.2; exit 3"], false, 1);
        poll_until(&mut s, |s| s.stopped);
        assert!(s.stopped, "still restarting after 10 s");
        assert_eq!(s.restarts, 2, "one restart, then the second death gives up");
        assert_eq!(s.pid, None);
        // Nothing more happens once given up.
        s.poll();
        assert_eq!(s.pid, None);
    }

    #[test]
    fn exits_read_as_words() {
        assert_eq!(Exit::Code(3).to_string(), "exit code 3");
        assert_eq!(Exit::Signal(9).to_string(), "killed by SIGKILL");
        assert_eq!(Exit::Signal(99).to_string(), "killed by signal 99");
    }

    #[test]
    fn vmtoolsd_outside_vmware_exits_once_and_is_left_stopped() {
        let mut s = fake(&["/bin/sh", "-c", "exit 1"], false, 3);
        poll_until(&mut s, |s| s.stopped);
        assert!(s.stopped);
        assert_eq!(s.restarts, 0, "not restarted outside VMware");
    }

    #[test]
    fn a_vmtoolsd_killed_while_running_is_restarted() {
        let mut s = fake(&["/bin/sleep", "30"], false, 3);
        s.poll();
        let first = s.pid.expect("started");
        // Up longer than a quick exit: a crash, even outside VMware.
        std::thread::sleep(Duration::from_millis(2100));
        kill(first);
        poll_until(&mut s, |s| s.pid.is_some_and(|p| p != first));
        let second = s.pid.expect("restarted");
        assert_ne!(second, first);
        assert_eq!(s.restarts, 1);
        assert!(!s.stopped);
        kill(second);
        let _ = reaper::wait_exit(second, Duration::from_secs(5));
    }

    #[test]
    fn a_vmtoolsd_that_cannot_be_started_is_given_up_without_a_panic() {
        let mut s = fake(&["/nonexistent/vmtoolsd"], true, 3);
        s.poll();
        assert!(s.stopped);
        assert_eq!(s.pid, None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = Policy::default();
        let got: Vec<u64> = (1..=9).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.delay(1000).as_secs(), 60);
    }
}
