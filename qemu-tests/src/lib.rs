//! The QEMU test harness of the OSAM fixup stack: where inputs and stack
//! binaries come from ([`paths`]), the smoke-test initramfs ([`smoke`]),
//! a QEMU runner that never leaves a VM behind ([`vm`]) and the manager's
//! side of the `/tmp/fixup` protocol ([`manager`]), and what the
//! end-to-end scenarios share ([`scenario`]).
//!
//! QEMU runs under TCG only (`-accel tcg`): KVM hangs on this kind of
//! machine.

pub mod arch;
pub mod diskprep;
pub mod emulator;
pub mod error;
pub mod esp;
pub mod faults;
pub mod guests;
pub mod image;
pub mod manager;
pub mod paths;
pub mod peer;
pub mod rawdisk;
pub mod scenario;
pub mod serial;
pub mod smoke;
pub mod storage_guests;
pub mod vm;
pub mod vmslot;

pub use arch::Arch;
pub use error::Error;
