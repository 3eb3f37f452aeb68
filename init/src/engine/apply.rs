//! The executor: applies a [`Plan`] to the guest through the
//! [`GuestWriter`] (atomic, saved, recorded) and runs its commands in the
//! guest with the step's runner, applying each command's failure policy.

use std::path::Path;

use crate::engine::plan::{Edit, OnFailure, Plan};
use crate::engine::{StepCtx, StepOutcome};
use crate::error::{FixupError, codes};
use crate::guestwrite::{GuestWriter, WriteError, Written};
use crate::runner::Command;

fn write_error(e: WriteError) -> FixupError {
    let code = match &e {
        WriteError::NotRegular { .. } | WriteError::BadPath { .. } => codes::GUEST_UNSAFE_PATH,
        _ => codes::GUEST_IO,
    };
    FixupError::new(code, format!("writing the guest: {e}"))
}

/// Applies one plan; `failure_code` is the code of a failed command of
/// this step (`initramfs.failed`, `bootloader.failed`, ...).
pub fn apply(
    ctx: &mut StepCtx,
    writer: &mut GuestWriter,
    plan: &Plan,
    sysroot: &Path,
    failure_code: &str,
) -> Result<StepOutcome, FixupError> {
    writer.step = ctx.id().to_string();
    for w in &plan.warnings {
        ctx.warn(&w.code, w.message.clone());
    }
    let mut changed_files = 0usize;
    let mut record = |ctx: &mut StepCtx, w: Written| {
        if w.changed {
            changed_files += 1;
            ctx.file(&w.path, w.backup.as_deref());
        }
    };
    for edit in &plan.edits {
        match edit {
            Edit::Write {
                path,
                contents,
                mode,
            } => {
                let w = writer.write(path, contents, *mode).map_err(write_error)?;
                record(ctx, w);
            }
            Edit::Remove { path } => {
                if let Some(w) = writer.remove(path).map_err(write_error)? {
                    record(ctx, w);
                }
            }
            Edit::Rename { from, to, contents } => {
                for w in writer.rename(from, to, contents).map_err(write_error)? {
                    record(ctx, w);
                }
            }
            Edit::Symlink { path, target } => {
                let w = writer.set_symlink(path, target).map_err(write_error)?;
                record(ctx, w);
            }
        }
    }
    let mut ran = 0usize;
    for pc in &plan.commands {
        let mut cmd = Command::new(&pc.argv).in_root(sysroot);
        if let Some(t) = pc.timeout {
            cmd = cmd.timeout(t);
        }
        ctx.progress(&format!("{}: {}", pc.why, cmd.display()));
        let rec = ctx.run(cmd);
        if !rec.ran && rec.error.is_none() {
            continue; // listed only (--no-commands)
        }
        ran += 1;
        if !rec.succeeded() {
            match pc.on_failure {
                OnFailure::Fail => {
                    let code = if rec.timed_out {
                        codes::TIMEOUT
                    } else {
                        failure_code
                    };
                    return Err(FixupError::new(
                        code,
                        format!("{}: {}", pc.why, rec.describe_failure()),
                    )
                    .with_detail("the command's output is in fixup.log"));
                }
                OnFailure::Warn => ctx.warn(
                    failure_code,
                    format!("{}: {} (not fatal)", pc.why, rec.describe_failure()),
                ),
            }
        }
    }
    let summary = if plan.summary.is_empty() {
        "nothing to change".to_string()
    } else {
        plan.summary.clone()
    };
    Ok(
        if changed_files > 0 || ran > 0 || !plan.commands.is_empty() {
            StepOutcome::changed(summary)
        } else {
            StepOutcome::unchanged(summary)
        },
    )
}
