//! The stage-1 fixups, in PROTOCOL.md's order (each later step embeds what
//! the earlier ones wrote): storage references, network, stage-2
//! preparation, initramfs, boot loader. Detection runs before, in the
//! session.

use std::time::Duration;

use crate::detect::GuestInfo;
use crate::error::FixupError;
use crate::guestfs::GuestRoot;
use crate::protocol::config::Inputs;
use crate::protocol::report::Reporter;
use crate::runner::CommandRunner;

/// What the fixups work on.
pub struct Guest<'a> {
    pub root: &'a GuestRoot,
    pub info: &'a GuestInfo,
    pub inputs: &'a Inputs,
    /// Target identities come from `targetUuid` (no probing).
    pub offline: bool,
}

/// How many fixup steps [`run`] runs (for the `[n/m]` of progress.txt).
pub const STEP_COUNT: usize = 0;

/// Runs the fixups after step `first` of `total`. Stops at the first
/// failure that leaves the guest unbootable.
pub fn run(
    _reporter: &mut Reporter,
    _runner: &mut dyn CommandRunner,
    _timeout: Duration,
    (_first, _total): (usize, usize),
    _guest: &Guest,
) -> Result<(), FixupError> {
    Ok(())
}
