//! The harness's errors.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use osam_image::cpio::CpioError;
use osam_image::deb::DebError;
use osam_image::kernel::KernelError;
use osam_image::pins::PinsError;
use osam_image::xz::XzError;

/// An error of the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command could not be started.
    #[error("starting {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command ended with an error.
    #[error("{command} failed ({status})\n{output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// The end of what it printed.
        output: String,
    },
    /// A file operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("reading", "writing", …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Something the harness expected is not there.
    #[error("{0}")]
    Missing(String),
    /// QEMU ended before the condition was met.
    #[error(
        "QEMU exited ({status}) while waiting for {what}\n--- last lines of the serial log {log} ---\n{tail}"
    )]
    VmExited {
        /// What was awaited.
        what: String,
        /// How QEMU ended.
        status: String,
        /// The serial log file.
        log: PathBuf,
        /// Its last lines (and QEMU's stderr).
        tail: String,
    },
    /// The condition was not met in time.
    #[error(
        "timed out after {timeout:?} waiting for {what}\n--- last lines of the serial log {log} ---\n{tail}"
    )]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
        /// The serial log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The guest reached a state it cannot leave by itself (an initramfs
    /// shell, a kernel panic, systemd's emergency mode).
    #[error(
        "the guest reached a dead end while waiting for {what}: {line}\n--- last lines of the serial log {log} ---\n{tail}"
    )]
    DeadEnd {
        /// What was awaited.
        what: String,
        /// The serial line that shows it.
        line: String,
        /// The serial log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// A QMP exchange failed.
    #[error("QMP {command}: {reason}")]
    Qmp {
        /// The command sent.
        command: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading a package failed.
    #[error(transparent)]
    Deb(#[from] DebError),
    /// Reading a kernel failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Building an archive failed.
    #[error(transparent)]
    Cpio(#[from] CpioError),
    /// Compressing failed.
    #[error(transparent)]
    Xz(#[from] XzError),
    /// The pins file is malformed.
    #[error(transparent)]
    Pins(#[from] PinsError),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// The harness's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
