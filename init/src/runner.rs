//! The one way commands run: argv only (never a shell string built from
//! guest data), a clean environment, stdin from /dev/null, optionally
//! chrooted into the guest, with a timeout, output streamed line by line to
//! a sink (fixup.log) and a record for result.json. Tests swap in
//! [`RecordingRunner`].

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::reaper::{self, Exit};

/// PATH inside the guest chroot and in the stack.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How often a heartbeat is reported while a command runs.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// A command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<String>,
    /// Run inside this root (chroot + chdir /).
    pub chroot: Option<PathBuf>,
    /// Extra environment on top of the clean one.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Command {
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Self {
        Command {
            argv: argv.iter().map(|s| s.as_ref().to_string()).collect(),
            chroot: None,
            env: Vec::new(),
            timeout: Duration::from_secs(900),
        }
    }

    pub fn in_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.chroot = Some(root.into());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// The command as one line for logs (quoted where needed); never
    /// executed as a shell string.
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                if !a.is_empty()
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
                {
                    a.clone()
                } else {
                    format!("'{}'", a.replace('\'', "'\\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A command as result.json lists it (`steps[].commands[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRecord {
    pub argv: Vec<String>,
    pub ran: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub timed_out: bool,
    /// Why it could not start (not found, chroot failed, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CommandRecord {
    pub fn not_run(argv: &[String]) -> Self {
        CommandRecord {
            argv: argv.to_vec(),
            ran: false,
            exit_code: None,
            signal: None,
            duration_ms: None,
            timed_out: false,
            error: None,
        }
    }

    /// Ran and exited 0.
    pub fn succeeded(&self) -> bool {
        self.ran && self.exit_code == Some(0) && !self.timed_out
    }

    /// A sentence for an error message.
    pub fn describe_failure(&self) -> String {
        let cmd = self.argv.join(" ");
        if let Some(e) = &self.error {
            format!("`{cmd}` could not run: {e}")
        } else if self.timed_out {
            format!(
                "`{cmd}` did not finish within {} s and was killed",
                self.duration_ms.unwrap_or(0) / 1000
            )
        } else if let Some(s) = self.signal {
            format!("`{cmd}` was killed by signal {s}")
        } else if let Some(c) = self.exit_code {
            format!("`{cmd}` exited with status {c}")
        } else {
            format!("`{cmd}` was not run")
        }
    }
}

/// Receives a running command's output and heartbeats.
pub trait OutputSink {
    fn output_line(&mut self, line: &str);
    fn heartbeat(&mut self, cmd: &Command, elapsed: Duration);
}

/// A sink that drops everything.
pub struct NullSink;

impl OutputSink for NullSink {
    fn output_line(&mut self, _line: &str) {}
    fn heartbeat(&mut self, _cmd: &Command, _elapsed: Duration) {}
}

/// Collects output lines (tests, small helpers).
#[derive(Default)]
pub struct VecSink {
    pub lines: Vec<String>,
}

impl OutputSink for VecSink {
    fn output_line(&mut self, line: &str) {
        self.lines.push(line.to_string());
    }
    fn heartbeat(&mut self, _cmd: &Command, _elapsed: Duration) {}
}

/// Runs commands.
pub trait CommandRunner {
    fn run(&mut self, cmd: &Command, sink: &mut dyn OutputSink) -> CommandRecord;

    /// The efivarfs directory of the firmware the commands act on (what
    /// `efibootmgr` would change), where there is one.
    fn efivars(&self) -> Option<PathBuf> {
        None
    }
}

/// Runs commands for real.
#[derive(Debug, Default)]
pub struct RealRunner {
    /// Set by a signal handler or a caller to abort the running command.
    pub cancel: Option<&'static std::sync::atomic::AtomicBool>,
}

impl CommandRunner for RealRunner {
    fn efivars(&self) -> Option<PathBuf> {
        let p = PathBuf::from("/sys/firmware/efi/efivars");
        p.is_dir().then_some(p)
    }

    fn run(&mut self, cmd: &Command, sink: &mut dyn OutputSink) -> CommandRecord {
        let start = Instant::now();
        let mut rec = CommandRecord::not_run(&cmd.argv);
        match run_real(cmd, sink, self.cancel) {
            Ok((exit, timed_out)) => {
                rec.ran = true;
                rec.timed_out = timed_out;
                match exit {
                    Exit::Code(c) => rec.exit_code = Some(c),
                    Exit::Signal(s) => {
                        rec.signal = Some(s);
                        rec.exit_code = Some(128 + s);
                    }
                }
            }
            Err(e) => {
                rec.error = Some(e);
                rec.exit_code = Some(127);
            }
        }
        rec.duration_ms = Some(crate::timefmt::millis(start.elapsed()));
        rec
    }
}

fn run_real(
    cmd: &Command,
    sink: &mut dyn OutputSink,
    cancel: Option<&'static std::sync::atomic::AtomicBool>,
) -> Result<(Exit, bool), String> {
    let Some(prog) = cmd.argv.first() else {
        return Err("empty command".into());
    };
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let write2 = write_end.try_clone().map_err(|e| format!("pipe: {e}"))?;
    let mut c = std::process::Command::new(prog);
    c.args(&cmd.argv[1..])
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("HOME", "/root")
        .env("TERM", "dumb")
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(write2));
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    let root = match &cmd.chroot {
        Some(r) => Some(
            std::ffi::CString::new(r.as_os_str().as_encoded_bytes())
                .map_err(|_| "chroot path has a NUL byte".to_string())?,
        ),
        None => None,
    };
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe system calls (setsid, chroot, chdir) on data
    // allocated before the fork.
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(root) = &root {
                if libc::chroot(root.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = c.spawn().map_err(|e| match &cmd.chroot {
        Some(r) => format!("{prog} in {}: {e}", r.display()),
        None => format!("{prog}: {e}"),
    })?;
    // The command object holds the write ends: drop it so EOF can come.
    drop(c);
    let pid = child.id() as i32;
    reaper::register(pid);
    drop(child);

    let mut reader = std::fs::File::from(read_end);
    let start = Instant::now();
    let mut next_beat = HEARTBEAT;
    let mut pending: Vec<u8> = Vec::new();
    let mut eof = false;
    let mut timed_out = false;
    let mut buf = [0u8; 8192];
    let exit = loop {
        if !eof {
            let fd = reader.as_raw_fd();
            // SAFETY: `fd` belongs to `reader`, which outlives this poll.
            let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let mut fds = [PollFd::new(bfd, PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(n) if n > 0 => match reader.read(&mut buf) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=pos).collect();
                            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                            sink.output_line(text.trim_end_matches('\r'));
                        }
                        if pending.len() > 64 * 1024 {
                            sink.output_line(&String::from_utf8_lossy(&pending));
                            pending.clear();
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => eof = true,
                },
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => eof = true,
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(exit) = reaper::try_exit(pid) {
            // Drain what is left without waiting on grandchildren that
            // still hold the pipe.
            if let Ok(n) = read_nonblocking(&mut reader, &mut buf) {
                pending.extend_from_slice(&buf[..n]);
            }
            break exit;
        }
        let elapsed = start.elapsed();
        let cancelled = cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst));
        if (elapsed >= cmd.timeout || cancelled) && !timed_out {
            timed_out = true;
            sink.output_line(&format!(
                "osam: {} after {} s: stopping `{}`",
                if cancelled { "cancelled" } else { "timed out" },
                elapsed.as_secs(),
                cmd.display()
            ));
            let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
            if let Some(exit) = reaper::wait_exit(pid, Duration::from_secs(5)) {
                break exit;
            }
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            break reaper::wait_exit(pid, Duration::from_secs(10)).unwrap_or(Exit::Signal(9));
        }
        if elapsed >= next_beat {
            sink.heartbeat(cmd, elapsed);
            next_beat += HEARTBEAT;
        }
    };
    if !pending.is_empty() {
        let text = String::from_utf8_lossy(&pending).into_owned();
        for l in text.lines() {
            sink.output_line(l);
        }
    }
    Ok((exit, timed_out))
}

fn read_nonblocking(reader: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let fd = reader.as_raw_fd();
    // SAFETY: `fd` belongs to `reader`, alive for the call.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(bfd, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) if n > 0 => reader.read(buf),
        _ => Ok(0),
    }
}

/// A runner that runs nothing and records what it was asked: for
/// `fixupctl run --no-commands`, `plan`, and tests. Scripted results can be
/// given per program name.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    pub calls: Vec<Command>,
    /// When set, commands are reported as run with these exit codes
    /// (program basename → code; others exit 0). When unset, `ran: false`.
    pub scripted: Option<std::collections::HashMap<String, i32>>,
    /// What [`CommandRunner::efivars`] answers (tests of a firmware).
    pub efivars: Option<PathBuf>,
}

impl RecordingRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports every command as run, exiting 0 unless scripted otherwise.
    pub fn succeeding() -> Self {
        RecordingRunner {
            scripted: Some(Default::default()),
            ..Default::default()
        }
    }

    pub fn with_exit(mut self, program: &str, code: i32) -> Self {
        self.scripted
            .get_or_insert_with(Default::default)
            .insert(program.to_string(), code);
        self
    }
}

impl CommandRunner for RecordingRunner {
    fn efivars(&self) -> Option<PathBuf> {
        self.efivars.clone()
    }

    fn run(&mut self, cmd: &Command, sink: &mut dyn OutputSink) -> CommandRecord {
        self.calls.push(cmd.clone());
        let mut rec = CommandRecord::not_run(&cmd.argv);
        match &self.scripted {
            None => sink.output_line(&format!("not run: {}", cmd.display())),
            Some(map) => {
                let prog = cmd
                    .argv
                    .first()
                    .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
                    .unwrap_or_default();
                rec.ran = true;
                rec.exit_code = Some(map.get(&prog).copied().unwrap_or(0));
                rec.duration_ms = Some(0);
            }
        }
        rec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_captures_output() {
        let mut sink = VecSink::default();
        let rec = RealRunner::default().run(
            &Command::new(&["sh", "-c", "echo one; echo two >&2; exit 3"]),
            &mut sink,
        );
        assert!(rec.ran);
        assert_eq!(rec.exit_code, Some(3));
        assert!(!rec.timed_out);
        assert_eq!(sink.lines, vec!["one", "two"]);
        assert!(rec.describe_failure().contains("status 3"));
    }

    #[test]
    fn clean_environment_and_null_stdin() {
        let mut sink = VecSink::default();
        let rec = RealRunner::default().run(
            &Command::new(&["sh", "-c", "echo \"$PATH|$LANG|${SECRET-unset}\"; cat"])
                .env("EXTRA", "1"),
            &mut sink,
        );
        assert!(rec.succeeded(), "{rec:?}");
        assert_eq!(sink.lines, vec![format!("{DEFAULT_PATH}|C|unset")]);
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let mut sink = VecSink::default();
        let start = Instant::now();
        let rec = RealRunner::default().run(
            &Command::new(&["sh", "-c", "sleep 30 & sleep 30; echo never"])
                .timeout(Duration::from_millis(500)),
            &mut sink,
        );
        assert!(rec.timed_out);
        assert!(!rec.succeeded());
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(!sink.lines.iter().any(|l| l == "never"));
    }

    #[test]
    fn missing_program_is_reported_not_panicked() {
        let mut sink = VecSink::default();
        let rec =
            RealRunner::default().run(&Command::new(&["/nonexistent/program-osam"]), &mut sink);
        assert!(!rec.ran);
        assert!(rec.error.is_some());
        assert!(rec.describe_failure().contains("could not run"));
    }

    #[test]
    fn recording_runner_records_without_running() {
        let mut r = RecordingRunner::new();
        let rec = r.run(&Command::new(&["dracut", "-f"]), &mut NullSink);
        assert!(!rec.ran);
        assert_eq!(rec.exit_code, None);
        assert_eq!(r.calls.len(), 1);
        let mut r = RecordingRunner::succeeding().with_exit("grub2-install", 1);
        assert_eq!(
            r.run(&Command::new(&["/usr/sbin/grub2-install"]), &mut NullSink)
                .exit_code,
            Some(1)
        );
        assert!(r.run(&Command::new(&["true"]), &mut NullSink).succeeded());
    }

    #[test]
    fn display_quotes_what_needs_it() {
        let c = Command::new(&["grub-mkconfig", "-o", "/boot/grub/grub.cfg", "a b", "it's"]);
        assert_eq!(
            c.display(),
            "grub-mkconfig -o /boot/grub/grub.cfg 'a b' 'it'\\''s'"
        );
    }

    #[test]
    fn record_serialises_like_the_protocol() {
        let rec = CommandRecord::not_run(&["dracut".to_string()]);
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"argv": ["dracut"], "ran": false, "timedOut": false})
        );
    }
}
