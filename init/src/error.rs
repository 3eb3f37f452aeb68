//! Errors that reach result.json: each has a stable, documented code and a
//! sentence a field engineer can act on.

use serde::{Deserialize, Serialize};

/// The stable error and warning codes of result.json (see docs/protocol.md).
pub mod codes {
    /// An input file is malformed, has a wrong type or value, or is missing.
    pub const CONFIG_INVALID: &str = "config.invalid";
    /// An input file is missing.
    pub const CONFIG_MISSING: &str = "config.missing";
    /// An input file is larger than the stack accepts (1 MiB).
    pub const CONFIG_TOO_LARGE: &str = "config.too_large";
    /// An input file names a `version` this stack does not know.
    pub const CONFIG_UNSUPPORTED_VERSION: &str = "config.unsupported_version";
    /// A field the stack does not know (a warning).
    pub const CONFIG_UNKNOWN_FIELD: &str = "config.unknown_field";
    /// A valid field that has no effect given the other inputs, e.g. a
    /// `targetName` while `renameInterfaces` is false (a warning).
    pub const CONFIG_IGNORED_FIELD: &str = "config.ignored_field";
    /// A hint in the input disagrees with what is on disk (a warning).
    pub const CONFIG_MISMATCH: &str = "config.mismatch";
    /// A replica disk named in replica-disk-map.json never appeared.
    pub const DISK_NOT_FOUND: &str = "disk.not_found";
    /// A replica disk's size differs from `capacityBytes`.
    pub const DISK_CAPACITY: &str = "disk.capacity_mismatch";
    /// No guest root file system was found.
    pub const GUEST_ROOT_NOT_FOUND: &str = "guest.root_not_found";
    /// More than one tree looks like a guest root.
    pub const GUEST_MULTIPLE_ROOTS: &str = "guest.multiple_roots";
    /// The guest tree has no recognisable operating system.
    pub const GUEST_UNKNOWN_OS: &str = "guest.unknown_os";
    /// The guest's operating system is recognised but not supported.
    pub const GUEST_UNSUPPORTED_OS: &str = "guest.unsupported_os";
    /// The guest's architecture cannot be fixed from this stack.
    pub const GUEST_ARCH_MISMATCH: &str = "guest.arch_mismatch";
    /// The guest has no kernel installed.
    pub const GUEST_NO_KERNEL: &str = "guest.no_kernel";
    /// A guest file could not be read or written.
    pub const GUEST_IO: &str = "guest.io";
    /// A guest path that must not be written through: a FIFO, a device
    /// node, a dangling symlink or a directory where a file should be.
    pub const GUEST_UNSAFE_PATH: &str = "guest.unsafe_path";
    /// The guest's architecture could not be read from its binaries (a
    /// warning).
    pub const GUEST_ARCH_UNKNOWN: &str = "guest.arch_unknown";
    /// No boot loader configuration was found in the guest (a warning at
    /// detection; the boot loader step decides).
    pub const GUEST_NO_BOOTLOADER: &str = "guest.no_bootloader";
    /// The stack has no stage-2 agent for this guest (a warning): the
    /// guest is not switched to single-user mode.
    pub const STAGE2_AGENT_MISSING: &str = "stage2.agent_missing";
    /// The guest's run level could not be found (a warning): it is not
    /// switched to single-user mode.
    pub const STAGE2_NO_RUNLEVEL: &str = "stage2.no_runlevel";
    /// A command in the guest failed.
    pub const COMMAND_FAILED: &str = "command.failed";
    /// A command or a wait ran out of time.
    pub const TIMEOUT: &str = "timeout";
    /// The transport for /tmp/fixup could not be set up.
    pub const TRANSPORT_FAILED: &str = "transport.failed";
    /// BEGIN did not come within `osam.begin_timeout`.
    pub const BEGIN_TIMEOUT: &str = "begin.timeout";
    /// An internal error of the stack (a bug): the message says where.
    pub const INTERNAL: &str = "internal";
}

/// One error of result.json's `errors` (and a step's `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct FixupError {
    pub code: String,
    pub step: Option<String>,
    pub message: String,
    pub detail: Option<String>,
}

impl FixupError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        FixupError {
            code: code.to_string(),
            step: None,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn in_step(mut self, step: &str) -> Self {
        if self.step.is_none() {
            self.step = Some(step.to_string());
        }
        self
    }
}

/// One warning of result.json's `warnings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub step: Option<String>,
    pub message: String,
}

impl Warning {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Warning {
            code: code.to_string(),
            step: None,
            message: message.into(),
        }
    }
}
