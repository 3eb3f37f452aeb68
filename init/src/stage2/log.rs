//! The agent's log: `/var/log/osam-stage2.log` (appended to, one time-stamped
//! line per message) and the console. Writing never fails the run: a log
//! that cannot be written loses lines, nothing else.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::runner::{Command, OutputSink};

/// Where the log goes in the guest.
pub const LOG_PATH: &str = "/var/log/osam-stage2.log";

/// The agent's logger; also the sink of the commands it runs.
pub struct Log {
    path: PathBuf,
    file: Option<File>,
    console: Option<Box<dyn Write + Send>>,
    /// Every line written (the report's source and the tests' view).
    pub lines: Vec<String>,
}

impl Log {
    /// Opens `<root>/var/log/osam-stage2.log` for appending (creating
    /// `/var/log` when missing) and, with `console`, `/dev/console`.
    pub fn open(root: &Path, console: bool) -> Log {
        let path = root.join(LOG_PATH.trim_start_matches('/'));
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = open_append(&path).ok();
        // The console, else standard error (what the hook shows).
        let console: Option<Box<dyn Write + Send>> = match (console, open_console()) {
            (false, _) => None,
            (true, Ok(f)) => Some(Box::new(f)),
            (true, Err(_)) => Some(Box::new(std::io::stderr())),
        };
        let mut log = Log {
            path,
            file,
            console,
            lines: Vec::new(),
        };
        if log.file.is_none() {
            let p = log.path.display().to_string();
            log.line(
                "warning",
                &format!("cannot open {p}: logging to the console only"),
            );
        }
        log
    }

    /// The host path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&mut self, msg: &str) {
        self.line("info", msg);
    }

    pub fn warn(&mut self, msg: &str) {
        self.line("warning", msg);
    }

    pub fn error(&mut self, msg: &str) {
        self.line("ERROR", msg);
    }

    fn line(&mut self, level: &str, msg: &str) {
        let stamp = crate::timefmt::now();
        for l in msg.lines() {
            let text = format!("{stamp} {level}: {l}");
            if let Some(f) = self.file.as_mut() {
                let _ = f.write_all(format!("{text}\n").as_bytes());
            }
            if let Some(c) = self.console.as_mut() {
                let _ = c.write_all(format!("osam-stage2: {level}: {l}\r\n").as_bytes());
            }
            self.lines.push(text);
        }
    }

    /// Makes the log durable (before the power-off).
    pub fn sync(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.sync_all();
        }
    }
}

impl OutputSink for Log {
    fn output_line(&mut self, line: &str) {
        self.line("output", &format!("| {line}"));
    }

    fn heartbeat(&mut self, cmd: &Command, elapsed: Duration) {
        self.info(&format!(
            "`{}` still running after {} s",
            cmd.display(),
            elapsed.as_secs()
        ));
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

fn open_console() -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/console")
}

/// Installs a panic hook that appends the panic to the log file (and
/// standard error) before the default hook runs: a crash says why in the
/// log the manager collects.
pub fn install_panic_hook(root: &Path) {
    let path = root.join(LOG_PATH.trim_start_matches('/'));
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = format!(
            "{} ERROR: osam-stage2 panicked: {info}\n",
            crate::timefmt::now()
        );
        if let Ok(mut f) = open_append(&path) {
            let _ = f.write_all(msg.as_bytes());
            let _ = f.sync_all();
        }
        previous(info);
    }));
}
