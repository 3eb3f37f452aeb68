//! The two stacks: x86_64 and i686.

use std::fmt;

/// A stack architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// The 64-bit stack (Debian `amd64`, kernel flavour `amd64`).
    X86_64,
    /// The 32-bit stack (Debian `i386`, kernel flavour `686`, no PAE).
    I686,
}

impl Arch {
    /// Both stacks.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::I686];

    /// The name the protocol uses (`source.arch`, READY's `arch`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::I686 => "i686",
        }
    }

    /// The Rust target the stack's binaries are built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::I686 => "i686-unknown-linux-musl",
        }
    }

    /// The Debian architecture of its packages.
    pub fn debian_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::I686 => "i386",
        }
    }

    /// The QEMU system emulator that boots it.
    pub fn qemu_system(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::I686 => "qemu-system-i386",
        }
    }

    /// The `-cpu` model: the default `qemu64` for x86_64; for i686 a
    /// 32-bit-only CPU with SSE2 (Rust's i686 targets assume SSE2, and the
    /// 686 kernel needs no PAE), so that a 64-bit-only instruction in the
    /// i686 stack would fail here rather than in the field.
    pub fn qemu_cpu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu64",
            Arch::I686 => "coreduo",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
