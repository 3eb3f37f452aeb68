//! Running the builders' commands: each with a timeout, its output
//! appended to a build log, and on failure an error that names the step
//! and shows the log's last lines.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::paths::tail_lines;

/// How many log lines an error shows.
pub const ERROR_TAIL: usize = 40;

/// A build log: every command's line, stdout and stderr.
#[derive(Debug, Clone)]
pub struct BuildLog {
    path: PathBuf,
}

impl BuildLog {
    /// A log at `path` (created or appended to).
    pub fn new(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("creating the build log {}", path.display()))?;
        Ok(Self { path })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> Result<File> {
        OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening the build log {}", self.path.display()))
    }

    /// Appends a line.
    pub fn note(&self, text: &str) {
        if let Ok(mut f) = self.open() {
            let _ = writeln!(f, "{text}");
        }
    }

    /// The log's last `n` lines.
    pub fn tail(&self, n: usize) -> String {
        let bytes = fs::read(&self.path).unwrap_or_default();
        tail_lines(&String::from_utf8_lossy(&bytes), n)
    }

    /// An error for `step` with the log's tail.
    pub fn error(&self, step: &str, what: String) -> anyhow::Error {
        anyhow!(
            "{step}: {what}\n--- last {ERROR_TAIL} lines of {} ---\n{}",
            self.path.display(),
            self.tail(ERROR_TAIL)
        )
    }

    /// Runs `command` for `step`; fails on a non-zero exit or after
    /// `timeout` (the command's whole process group is killed). Returns
    /// its stdout (which is logged too).
    pub fn run(&self, step: &str, command: &mut Command, timeout: Duration) -> Result<String> {
        self.run_with_input(step, command, None, timeout)
    }

    /// [`BuildLog::run`] with `input` on the command's stdin.
    pub fn run_with_input(
        &self,
        step: &str,
        command: &mut Command,
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<String> {
        let line = format!("{command:?}");
        self.note(&format!("== {step}: {line}"));
        let stdout_path = PathBuf::from(format!("{}.stdout", self.path.display()));
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("{step}: creating {}", stdout_path.display()))?;
        let stderr = self.open()?;
        command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and
        // only calls prctl(2), which is async-signal-safe. SIGTERM, not
        // SIGKILL: mmdebstrap cleans up its mounts on SIGTERM.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| self.error(step, format!("starting {line}: {e}")))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A command that exits without reading its input is judged by
            // its exit status below.
            let _ = stdin.write_all(input);
        }
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(self.error(step, format!("waiting for {line}: {e}"))),
            }
            if started.elapsed() >= timeout {
                let pgid = child.id() as i32;
                // SAFETY: kill(2) on the process group this function
                // created (process_group(0) above); no memory is shared.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                self.append_stdout(&stdout_path);
                return Err(self.error(step, format!("{line} timed out after {timeout:?}")));
            }
            // Short commands are the most; long ones need no fine polling.
            let pause = if started.elapsed() < Duration::from_secs(2) {
                10
            } else {
                100
            };
            std::thread::sleep(Duration::from_millis(pause));
        };
        let out = self.append_stdout(&stdout_path);
        self.note(&format!(
            "== {step}: {status} after {:.1?}",
            started.elapsed()
        ));
        if !status.success() {
            return Err(self.error(step, format!("{line} failed ({status})")));
        }
        Ok(out)
    }

    fn append_stdout(&self, stdout_path: &Path) -> String {
        let out = fs::read(stdout_path).unwrap_or_default();
        let _ = fs::remove_file(stdout_path);
        if let Ok(mut f) = self.open() {
            let _ = f.write_all(&out);
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// An exclusive `flock` on a file, released when dropped.
#[derive(Debug)]
pub struct FileLock(File);

impl FileLock {
    /// Waits up to `timeout` for the lock on `path` (created if missing).
    pub fn acquire(path: &Path, timeout: Duration) -> Result<FileLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let start = Instant::now();
        loop {
            // SAFETY: flock(2) on a descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(FileLock(file));
            }
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                std::io::ErrorKind::WouldBlock => {
                    return Err(anyhow!(
                        "another build held {} for more than {timeout:?}",
                        path.display()
                    ));
                }
                _ => return Err(err).with_context(|| format!("locking {}", path.display())),
            }
        }
    }
}

/// Runs a command quietly with a timeout (its process group killed when
/// it passes); whether it succeeded.
pub fn quiet(command: &mut Command, timeout: Duration) -> bool {
    let Ok(mut child) = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
    else {
        return false;
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                // SAFETY: kill(2) on the process group created above.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
                return false;
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as in `acquire`.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Whether a program is on `PATH` (or `/usr/sbin`, `/sbin`).
pub fn have_program(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| d.join(name).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_logs_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = BuildLog::new(dir.path().join("build.log")).unwrap();
        let out = log
            .run(
                "echo",
                Command::new("sh").args(["-c", "echo out; echo err >&2"]),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(out, "out\n");
        let text = fs::read_to_string(log.path()).unwrap();
        assert!(
            text.contains("== echo: ") && text.contains("err\nout\n"),
            "{text}"
        );
        let out = log
            .run_with_input(
                "cat",
                &mut Command::new("cat"),
                Some(b"in"),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(out, "in");
        let e = log
            .run(
                "fails",
                Command::new("sh").args(["-c", "echo why; exit 3"]),
                Duration::from_secs(10),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("fails: ") && e.contains("exit status: 3") && e.contains("why"),
            "{e}"
        );
        let t0 = Instant::now();
        let e = log
            .run(
                "sleeps",
                Command::new("sh").args(["-c", "sleep 30 & sleep 30"]),
                Duration::from_millis(300),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(have_program("sh"));
        assert!(quiet(&mut Command::new("true"), Duration::from_secs(10)));
        assert!(!quiet(&mut Command::new("false"), Duration::from_secs(10)));
        let t0 = Instant::now();
        assert!(!quiet(
            Command::new("sleep").arg("30"),
            Duration::from_millis(200)
        ));
        assert!(t0.elapsed() < Duration::from_secs(10));
        let lock_path = dir.path().join("x.lock");
        let held = FileLock::acquire(&lock_path, Duration::from_secs(1)).unwrap();
        let e = FileLock::acquire(&lock_path, Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains("another build"), "{e}");
        drop(held);
        FileLock::acquire(&lock_path, Duration::from_secs(1)).unwrap();
        assert!(!have_program("no-such-program-osam"));
    }
}
