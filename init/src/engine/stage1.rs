//! The stage-1 fixups, in PROTOCOL.md's order (each later step embeds what
//! the earlier ones wrote): preconditions (before any change), storage
//! references, network, stage-2 preparation, initramfs, boot loader.
//! Detection runs before, in the session.

use std::path::Path;
use std::time::Duration;

use crate::detect::GuestInfo;
use crate::engine::apply::apply;
use crate::engine::fixups;
use crate::engine::identity::IdentityMap;
use crate::engine::overlay::Overlay;
use crate::engine::plan::{GuestFiles, Plan, PlanCtx};
use crate::engine::run_step;
use crate::error::{FixupError, codes};
use crate::guestfs::GuestRoot;
use crate::guestwrite::{GuestWriter, RunRecord};
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
    /// The stage-2 agent to install, for the guest's architecture.
    pub agent: Option<&'a [u8]>,
    /// What PID 1 probed on the replicas (empty offline).
    pub probed: &'a [crate::engine::identity::ProbedFs],
    /// The boot replica's device in the stack.
    pub boot_device: Option<&'a str>,
}

/// One fixup step.
pub struct StepDef {
    pub id: &'static str,
    /// The code of a failed command of this step.
    pub failure_code: &'static str,
    /// Does a failure leave the guest unbootable (so the run stops)?
    pub fatal: bool,
}

/// The fixup steps, in order.
pub const STEPS: &[StepDef] = &[
    StepDef {
        id: "preconditions",
        failure_code: codes::COMMAND_FAILED,
        fatal: true,
    },
    StepDef {
        id: "fstab",
        failure_code: codes::COMMAND_FAILED,
        fatal: true,
    },
    StepDef {
        id: "network",
        failure_code: codes::COMMAND_FAILED,
        fatal: false,
    },
    StepDef {
        id: "stage2",
        failure_code: codes::COMMAND_FAILED,
        fatal: false,
    },
    StepDef {
        id: "initramfs",
        failure_code: codes::INITRAMFS_FAILED,
        fatal: true,
    },
    StepDef {
        id: "bootloader",
        failure_code: codes::BOOTLOADER_FAILED,
        fatal: true,
    },
];

/// How many fixup steps [`run`] runs (for the `[n/m]` of progress.txt).
pub const STEP_COUNT: usize = STEPS.len();

/// Plans one step. `changed` lists the guest paths earlier steps changed
/// (the initramfs embeds some of them).
pub fn plan_step(
    id: &str,
    ctx: &PlanCtx,
    changed: &[String],
    agent: Option<&[u8]>,
) -> Result<Plan, FixupError> {
    match id {
        "preconditions" => fixups::preconditions::plan(ctx),
        "fstab" => fixups::fstab::plan(ctx),
        "network" => fixups::network::plan(ctx),
        "stage2" => fixups::stage2::plan_with_agent(ctx, agent),
        "initramfs" => fixups::initramfs::plan_with_changes(ctx, changed),
        "bootloader" => fixups::bootloader::plan(ctx),
        other => Err(FixupError::new(
            codes::INTERNAL,
            format!("unknown fixup step {other}"),
        )),
    }
}

/// Builds the identity map for a guest (warnings returned).
pub fn identity_for(
    inputs: &Inputs,
    probed: &[crate::engine::identity::ProbedFs],
    files: &dyn GuestFiles,
) -> (IdentityMap, Vec<crate::error::Warning>) {
    IdentityMap::build(inputs, probed, files)
}

/// Runs the fixups after step `first` of `total`. Stops at the first
/// failure that leaves the guest unbootable; returns the first error.
pub fn run(
    reporter: &mut Reporter,
    runner: &mut dyn CommandRunner,
    timeout: Duration,
    (first, total): (usize, usize),
    guest: &Guest,
) -> Result<(), FixupError> {
    let sysroot: &Path = guest.root.root_path();
    let (identity, warnings) = identity_for(guest.inputs, guest.probed, guest.root);
    for w in warnings {
        let mut w = w;
        w.step.get_or_insert_with(|| "fstab".to_string());
        reporter.warn(w);
    }
    let run = RunRecord {
        migration_id: guest.inputs.system.migration_id.clone(),
        started_at: crate::timefmt::now(),
        stack_version: crate::VERSION.to_string(),
        initramfs_done: false,
    };
    let mut writer = match GuestWriter::open(guest.root, run).and_then(|w| w.save().map(|()| w)) {
        Ok(w) => w,
        Err(e) => {
            // Before any step: reported here, or the run would end as a
            // success that changed nothing.
            let e = FixupError::new(
                codes::GUEST_IO,
                format!("opening the change manifest, before the first fixup: {e}"),
            )
            .in_step(STEPS[0].id);
            reporter.error(e.clone());
            return Err(e);
        }
    };
    let mut first_error = None;
    for (i, def) in STEPS.iter().enumerate() {
        // Not only this run's changes: a run killed between its edits and
        // its initramfs rebuild left images without its edits, and this
        // run finds those edits already made.
        let changed = writer.changed_since_initramfs();
        let result = run_step(
            reporter,
            runner,
            timeout,
            (first + i + 1, total),
            def.id,
            |ctx| {
                let pctx = PlanCtx {
                    files: guest.root,
                    info: guest.info,
                    inputs: guest.inputs,
                    identity: &identity,
                    stack_arch: crate::STACK_ARCH,
                    boot_device: guest.boot_device,
                };
                let plan = plan_step(def.id, &pctx, &changed, guest.agent)?;
                let outcome = apply(ctx, &mut writer, &plan, sysroot, def.failure_code)?;
                Ok((outcome, ()))
            },
        );
        match result {
            // A listed-only rebuild (--no-commands) built nothing.
            Ok(()) if def.id == "initramfs" && !writer.commands_listed_only => {
                if let Err(e) = writer.initramfs_done() {
                    // Only costs the next run an extra rebuild.
                    reporter.log(&format!(
                        "cannot record the finished initramfs step in the manifest: {e}"
                    ));
                }
            }
            Ok(()) => {}
            Err(e) => {
                first_error.get_or_insert(e);
                if def.fatal {
                    break;
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Plans every step without writing (`fixupctl plan`): each later step
/// sees what the earlier ones would write. Returns the plans in order and
/// the overlay's view of the original files for diffs.
pub fn plan_all(
    root: &GuestRoot,
    info: &GuestInfo,
    inputs: &Inputs,
    agent: Option<&[u8]>,
) -> Result<Vec<(&'static str, Plan)>, FixupError> {
    let (identity, _) = identity_for(inputs, &[], root);
    let mut overlay = Overlay::new(root);
    let mut changed: Vec<String> = Vec::new();
    let mut plans = Vec::new();
    for def in STEPS {
        let plan = {
            let pctx = PlanCtx {
                files: &overlay,
                info,
                inputs,
                identity: &identity,
                stack_arch: crate::STACK_ARCH,
                boot_device: None,
            };
            plan_step(def.id, &pctx, &changed, agent).map_err(|e| e.in_step(def.id))?
        };
        for e in &plan.edits {
            changed.extend(e.paths().into_iter().map(str::to_string));
            overlay.apply(e);
        }
        plans.push((def.id, plan));
    }
    Ok(plans)
}
