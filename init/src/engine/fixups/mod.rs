//! The stage-1 fixups, one module each. Every module exposes
//! `pub fn plan(ctx: &PlanCtx) -> Result<Plan, FixupError>`: a pure planner
//! over the guest's files (see `engine::plan`).

pub mod bootloader;
pub mod fstab;
pub mod initramfs;
pub mod network;
pub mod preconditions;
pub mod stage2;
