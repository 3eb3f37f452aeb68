//! The executor: applies a [`Plan`] to the guest through the
//! [`GuestWriter`] (atomic, saved, recorded) and runs its commands in the
//! guest with the step's runner, applying each command's failure policy.

use std::path::Path;

use crate::engine::fixups::bootloader::nvram;
use crate::engine::plan::{Edit, OnFailure, Plan, Unless};
use crate::engine::{StepCtx, StepOutcome};
use crate::error::{FixupError, codes};
use crate::guestwrite::{GuestWriter, Preserved, WriteError, Written};
use crate::runner::Command;

fn write_error(e: WriteError) -> FixupError {
    let code = match &e {
        WriteError::NotRegular { .. } | WriteError::BadPath { .. } => codes::GUEST_UNSAFE_PATH,
        _ => codes::GUEST_IO,
    };
    FixupError::new(code, format!("writing the guest: {e}"))
}

/// Why a command need not run, when its `unless` holds.
fn already_done(ctx: &StepCtx, unless: Option<&Unless>) -> Option<String> {
    match unless? {
        Unless::EfiBootEntry { label, loader } => {
            let dir = ctx.runner.efivars()?;
            let entries = nvram::read_entries(&dir);
            nvram::find(&entries, label, loader).map(|e| {
                format!(
                    "the firmware already has Boot{:04X} \"{label}\" for {loader}",
                    e.number
                )
            })
        }
    }
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
            Edit::Preserve { path } => match writer.preserve(path).map_err(write_error)? {
                Preserved::Saved(w) => record(ctx, w),
                Preserved::NoRoom { size, free } => ctx.warn(
                    codes::BACKUP_SKIPPED,
                    format!(
                        "{path}: its original ({size} bytes) is not saved before it is \
                         regenerated: the guest's file system has {free} bytes free and the \
                         regeneration needs the room; undo cannot restore it"
                    ),
                ),
                Preserved::Nothing => {}
            },
        }
    }
    let mut ran = 0usize;
    for pc in &plan.commands {
        let mut cmd = Command::new(&pc.argv).in_root(sysroot);
        if let Some(t) = pc.timeout {
            cmd = cmd.timeout(t);
        }
        if let Some(why) = already_done(ctx, pc.unless.as_ref()) {
            ctx.progress(&format!("{}: not needed, {why}", pc.why));
            continue;
        }
        ctx.progress(&format!("{}: {}", pc.why, cmd.display()));
        let rec = ctx.run(cmd);
        if !rec.ran && rec.error.is_none() {
            writer.commands_listed_only = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::PlannedCommand;
    use crate::engine::run_step;
    use crate::guestfs::GuestRoot;
    use crate::guestwrite::RunRecord;
    use crate::protocol::report::Reporter;
    use crate::runner::RecordingRunner;
    use std::time::Duration;

    /// Runs a plan with one efibootmgr command against a firmware holding
    /// `entries`; returns the argv of the commands that ran.
    fn efibootmgr_with(entries: &[(&str, &str, &str)]) -> Vec<Vec<String>> {
        let guest = tempfile::tempdir().unwrap();
        let fixup = tempfile::tempdir().unwrap();
        let vars = tempfile::tempdir().unwrap();
        for (name, label, loader) in entries {
            let mut data = 7u32.to_le_bytes().to_vec();
            data.extend(nvram::load_option(label, loader));
            std::fs::write(
                vars.path()
                    .join(format!("{name}-8be4df61-93ca-11d0-aa6d-00e098032b8c")),
                data,
            )
            .unwrap();
        }
        let loader = "\\EFI\\debian\\shimx64.efi";
        let plan = Plan {
            commands: vec![
                PlannedCommand::new(
                    &["efibootmgr", "-c", "-L", "debian", "-l", loader],
                    "add the entry",
                )
                .unless(Unless::EfiBootEntry {
                    label: "debian".into(),
                    loader: loader.into(),
                }),
            ],
            ..Plan::default()
        };
        let root = GuestRoot::open(guest.path()).unwrap();
        let mut writer = GuestWriter::open(
            &root,
            RunRecord {
                migration_id: "m".into(),
                started_at: "t".into(),
                stack_version: "v".into(),
                initramfs_done: false,
            },
        )
        .unwrap();
        let mut reporter = Reporter::create(fixup.path());
        let mut runner = RecordingRunner::succeeding();
        runner.efivars = Some(vars.path().to_path_buf());
        run_step(
            &mut reporter,
            &mut runner,
            Duration::from_secs(5),
            (1, 1),
            "bootloader",
            |ctx| {
                Ok((
                    apply(ctx, &mut writer, &plan, guest.path(), "bootloader.failed")?,
                    (),
                ))
            },
        )
        .unwrap();
        runner.calls.iter().map(|c| c.argv.clone()).collect()
    }

    #[test]
    fn a_boot_entry_the_firmware_has_is_not_added_again() {
        assert_eq!(efibootmgr_with(&[]).len(), 1);
        assert_eq!(
            efibootmgr_with(&[("Boot0001", "debian", "\\EFI\\debian\\grubx64.efi")]).len(),
            1
        );
        assert!(
            efibootmgr_with(&[("Boot0004", "debian", "\\EFI\\DEBIAN\\SHIMX64.EFI")]).is_empty()
        );
    }
}
