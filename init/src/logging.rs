//! One logger for the whole stack. Under PID 1 it writes to both consoles
//! (`tty0`, what a vSphere console shows, and `ttyS0`) and to `/dev/kmsg`;
//! under `fixupctl` to standard error. Writers are added by PID 1 at boot;
//! with none added, messages go to standard error.

use std::io::Write;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    /// The syslog priority used on `/dev/kmsg`.
    pub fn kmsg_priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Where log lines go.
pub trait Sink: Send {
    fn write_line(&mut self, level: Level, line: &str);
}

struct State {
    sinks: Vec<Box<dyn Sink>>,
    verbose: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    sinks: Vec::new(),
    verbose: false,
});

/// Adds a sink; PID 1 adds the consoles and `/dev/kmsg`.
pub fn add_sink(sink: Box<dyn Sink>) {
    if let Ok(mut s) = STATE.lock() {
        s.sinks.push(sink);
    }
}

/// With verbose on, `debug` lines are shown too.
pub fn set_verbose(verbose: bool) {
    if let Ok(mut s) = STATE.lock() {
        s.verbose = verbose;
    }
}

pub fn verbose() -> bool {
    STATE.lock().map(|s| s.verbose).unwrap_or(false)
}

/// Logs one message (each line of it separately). Never fails or panics:
/// a poisoned lock or a broken console loses the line, nothing else.
pub fn log(level: Level, msg: &str) {
    let mut guard = match STATE.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if level == Level::Debug && !guard.verbose {
        return;
    }
    for line in msg.lines() {
        if guard.sinks.is_empty() {
            let _ = writeln!(std::io::stderr(), "osam: {}: {line}", level.label());
        } else {
            for sink in guard.sinks.iter_mut() {
                sink.write_line(level, line);
            }
        }
    }
}

pub fn error(msg: impl AsRef<str>) {
    log(Level::Error, msg.as_ref());
}

pub fn warn(msg: impl AsRef<str>) {
    log(Level::Warn, msg.as_ref());
}

pub fn info(msg: impl AsRef<str>) {
    log(Level::Info, msg.as_ref());
}

pub fn debug(msg: impl AsRef<str>) {
    log(Level::Debug, msg.as_ref());
}

/// A console device (`/dev/tty0`, `/dev/ttyS0`): one line per message with
/// a CR before the LF, since a raw serial console may not translate it.
pub struct ConsoleSink {
    file: std::fs::File,
}

impl ConsoleSink {
    pub fn open(path: &str) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags_noctty()
            .open(path)?;
        Ok(ConsoleSink { file })
    }
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
    }
}

impl Sink for ConsoleSink {
    fn write_line(&mut self, level: Level, line: &str) {
        let prefix = match level {
            Level::Error => "osam: ERROR: ",
            Level::Warn => "osam: warning: ",
            Level::Info | Level::Debug => "osam: ",
        };
        let _ = self
            .file
            .write_all(format!("{prefix}{line}\r\n").as_bytes());
    }
}

/// `/dev/kmsg`: the kernel log, read back with `dmesg`.
pub struct KmsgSink {
    file: std::fs::File,
}

impl KmsgSink {
    pub fn open() -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().write(true).open("/dev/kmsg")?;
        Ok(KmsgSink { file })
    }
}

impl Sink for KmsgSink {
    fn write_line(&mut self, level: Level, line: &str) {
        // One write is one record; the kernel caps a record near 1 KiB.
        let mut text: String = line.chars().take(900).collect();
        text.insert_str(0, &format!("<{}>osam: ", level.kmsg_priority()));
        let _ = self.file.write_all(text.as_bytes());
    }
}

/// Collects lines in memory (tests).
#[derive(Clone, Default)]
pub struct MemorySink {
    pub lines: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Sink for MemorySink {
    fn write_line(&mut self, level: Level, line: &str) {
        if let Ok(mut l) = self.lines.lock() {
            l.push(format!("{}: {line}", level.label()));
        }
    }
}
