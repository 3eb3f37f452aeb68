//! The OSAM Linux fixup stack: the static PID 1 (`osam-init`), the protocol
//! engine that talks to the migration manager through `/tmp/fixup`, the
//! stage-1 fixup engine and the `fixupctl` command line.
//!
//! Pure parsers and planners live beside thin executors; only the `pid1`
//! module and the executors touch the running system.

pub mod cli;
pub mod cmdline;
pub mod collect;
pub mod decompress;
pub mod detect;
pub mod engine;
pub mod error;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod guestfs;
pub mod guestwrite;
pub mod kmod;
pub mod lock;
pub mod logging;
pub mod pid1;
pub mod protocol;
pub mod reaper;
pub mod runner;
pub mod runstate;
pub mod stage2;
pub mod storage;
pub mod timefmt;
pub mod ui;

/// The stack's version, as reported in READY and result.json.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The architecture this binary was built for, in the protocol's words.
pub const STACK_ARCH: &str = if cfg!(target_arch = "x86_64") {
    "x86_64"
} else if cfg!(target_arch = "x86") {
    "i686"
} else if cfg!(target_arch = "aarch64") {
    "aarch64"
} else {
    "unknown"
};
