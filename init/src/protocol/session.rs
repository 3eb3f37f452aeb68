//! One run of stage 1 over a fixup directory: validate the inputs, attach
//! the guest (PID 1 finds and mounts the disks; `fixupctl run` is given a
//! mounted tree), detect it, run the fixups, detach (every guest write made
//! durable), then fixup.log, result.json and END.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::detect;
use crate::engine::{self, StepCtx, StepOutcome};
use crate::error::{FixupError, Warning, codes};
use crate::guestfs::GuestRoot;
use crate::protocol::config::{self, Inputs};
use crate::protocol::report::Reporter;
use crate::protocol::result::ResultDoc;
use crate::runner::CommandRunner;

/// Finds and mounts the guest, and lets it go again.
pub trait GuestProvider {
    /// Makes the guest's tree available; returns the outcome of the
    /// `storage` step, the tree's root and the guest's root device.
    fn attach(
        &mut self,
        ctx: &mut StepCtx,
        inputs: &Inputs,
    ) -> Result<(StepOutcome, Attached), FixupError>;

    /// Makes every guest write durable and releases the guest (unmount,
    /// deactivate). Called after a successful attach, whatever happened
    /// since.
    fn detach(&mut self, reporter: &mut Reporter) -> Result<(), FixupError>;
}

/// What [`GuestProvider::attach`] gives.
#[derive(Debug, Clone)]
pub struct Attached {
    pub sysroot: PathBuf,
    /// The guest's root device as the guest names it, where known.
    pub root_device: Option<String>,
    /// The file systems probed on the replicas (PID 1; empty offline).
    pub probed: Vec<crate::engine::identity::ProbedFs>,
    /// The boot replica's device in the stack (`/dev/sda`).
    pub boot_device: Option<String>,
}

/// A guest tree that is already mounted (`fixupctl run --sysroot`).
pub struct MountedTree {
    pub sysroot: PathBuf,
}

impl GuestProvider for MountedTree {
    fn attach(
        &mut self,
        _ctx: &mut StepCtx,
        _inputs: &Inputs,
    ) -> Result<(StepOutcome, Attached), FixupError> {
        if !self.sysroot.is_dir() {
            return Err(FixupError::new(
                codes::GUEST_ROOT_NOT_FOUND,
                format!(
                    "the guest tree {} is not a directory",
                    self.sysroot.display()
                ),
            ));
        }
        Ok((
            StepOutcome::skipped(format!("using the mounted tree {}", self.sysroot.display())),
            Attached {
                sysroot: self.sysroot.clone(),
                root_device: None,
                probed: Vec::new(),
                boot_device: None,
            },
        ))
    }

    fn detach(&mut self, _reporter: &mut Reporter) -> Result<(), FixupError> {
        nix::unistd::sync();
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Take target file-system UUIDs from `targetUuid` (no probing).
    pub offline: bool,
    /// PID 1's state file, rewritten as each step starts.
    pub state: Option<crate::runstate::Tracker>,
    /// Honour the test-only hold file (PID 1 only; docs/protocol.md).
    pub test_hold: bool,
}

/// The steps before the fixups proper.
const FIRST_STEPS: usize = 3;

/// Runs stage 1 and writes the results into `dir`. Returns the document
/// written to result.json; an error only when result.json itself could
/// not be written.
pub fn run(
    dir: &Path,
    provider: &mut dyn GuestProvider,
    runner: &mut dyn CommandRunner,
    opts: &RunOptions,
) -> std::io::Result<ResultDoc> {
    let mut reporter = Reporter::create(dir);
    reporter.state = opts.state.clone();
    reporter.test_hold = opts.test_hold;
    let total = FIRST_STEPS + engine::stage1::STEP_COUNT;
    let default_timeout = Duration::from_secs(900);

    // 1. validate: nothing in the guest is touched before this passes.
    let inputs = engine::run_step(
        &mut reporter,
        runner,
        default_timeout,
        (1, total),
        "validate",
        |ctx| match config::load_inputs(dir) {
            Ok((inputs, warnings)) => {
                for w in warnings {
                    ctx.reporter.warn(with_step(w, "validate"));
                }
                Ok((
                    StepOutcome::unchanged("the three input files are valid"),
                    inputs,
                ))
            }
            Err((errors, warnings)) => {
                for w in warnings {
                    ctx.reporter.warn(with_step(w, "validate"));
                }
                let n = errors.len();
                let mut errors = errors.into_iter();
                let first = errors.next().unwrap_or_else(|| {
                    FixupError::new(codes::CONFIG_INVALID, "the inputs are invalid")
                });
                // Every problem is reported, the first as the step's error.
                for e in errors {
                    ctx.reporter.error(e.in_step("validate"));
                }
                let mut first = first;
                if n > 1 {
                    first = first.with_detail(format!("{} problems in all; see errors", n));
                }
                Err(first)
            }
        },
    );
    let Ok(inputs) = inputs else {
        return reporter.finish();
    };
    reporter.migration_id = Some(inputs.system.migration_id.clone());
    let timeout = Duration::from_secs(inputs.system.options.command_timeout_seconds);

    // 2. storage: find and mount the guest.
    let attached = engine::run_step(
        &mut reporter,
        runner,
        timeout,
        (2, total),
        "storage",
        |ctx| provider.attach(ctx, &inputs),
    );
    let Ok(attached) = attached else {
        return reporter.finish();
    };

    // 3..: detection and the fixups, then detach whatever happened.
    let _ = run_on_guest(
        &mut reporter,
        runner,
        timeout,
        total,
        &inputs,
        &attached,
        opts,
    );
    save_result_copy(&mut reporter, &attached);
    if let Err(e) = provider.detach(&mut reporter) {
        reporter.error(e.in_step("storage"));
    }
    reporter.finish()
}

/// Leaves a copy of result.json as of the end of the guest changes in the
/// guest's `data/` (PROTOCOL.md), where stage 1 made changes.
fn save_result_copy(reporter: &mut Reporter, attached: &Attached) {
    let Ok(root) = GuestRoot::open(&attached.sysroot) else {
        return;
    };
    if !root.exists(crate::guestwrite::MANIFEST) {
        return;
    }
    let mut json = match serde_json::to_vec_pretty(&reporter.result()) {
        Ok(j) => j,
        Err(_) => return,
    };
    json.push(b'\n');
    if let Err(e) = crate::guestwrite::write_data_file(&root, "result.json", &json) {
        reporter.warn(Warning::new(
            codes::GUEST_IO,
            format!("saving the copy of result.json in the guest: {e}"),
        ));
    }
}

fn with_step(mut w: Warning, step: &str) -> Warning {
    w.step.get_or_insert_with(|| step.to_string());
    w
}

fn run_on_guest(
    reporter: &mut Reporter,
    runner: &mut dyn CommandRunner,
    timeout: Duration,
    total: usize,
    inputs: &Inputs,
    attached: &Attached,
    opts: &RunOptions,
) -> Result<(), FixupError> {
    let guest = engine::run_step(reporter, runner, timeout, (3, total), "detect", |ctx| {
        let root = GuestRoot::open(&attached.sysroot).map_err(|e| {
            FixupError::new(
                codes::GUEST_ROOT_NOT_FOUND,
                format!(
                    "cannot open the guest tree {}: {e}",
                    attached.sysroot.display()
                ),
            )
        })?;
        let (mut info, warnings) = detect::detect(&root)?;
        for w in warnings {
            ctx.reporter.warn(with_step(w, "detect"));
        }
        info.root = attached.root_device.clone();
        detect::check_arch(&info.arch, crate::STACK_ARCH)?;
        for w in compare_hints(&info, &inputs.system) {
            ctx.reporter.warn(with_step(w, "detect"));
        }
        ctx.reporter.guest = serde_json::to_value(&info).ok();
        let summary = format!(
            "{} ({} {}), {}, {}, {} kernel(s)",
            info.pretty_name,
            info.os_id,
            info.os_version,
            info.arch,
            info.bootloader.as_str(),
            info.kernels.len()
        );
        Ok((StepOutcome::unchanged(summary), (root, info)))
    })?;
    let (root, info) = guest;
    let agent = find_agent(&info.arch);
    if let Some((path, _)) = &agent {
        reporter.log(&format!("stage-2 agent: {}", path.display()));
    }
    engine::stage1::run(
        reporter,
        runner,
        timeout,
        (FIRST_STEPS, total),
        &engine::stage1::Guest {
            root: &root,
            info: &info,
            inputs,
            offline: opts.offline,
            agent: agent.as_ref().map(|(_, b)| b.as_slice()),
            probed: &attached.probed,
            boot_device: attached.boot_device.as_deref(),
        },
    )
}

/// The stage-2 agent for a guest architecture: in the stack
/// (`/opt/osam/bin/osam-stage2-<arch>`, or `osam-stage2` for the stack's
/// own arch), or beside the running program (`fixupctl` on a workstation).
pub fn find_agent(guest_arch: &str) -> Option<(PathBuf, Vec<u8>)> {
    let mut dirs = vec![PathBuf::from("/opt/osam/bin")];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    let mut names = vec![format!("osam-stage2-{guest_arch}")];
    if guest_arch == crate::STACK_ARCH {
        names.push("osam-stage2".to_string());
    }
    for d in &dirs {
        for n in &names {
            let p = d.join(n);
            if let Ok(bytes) = std::fs::read(&p) {
                if !bytes.is_empty() {
                    return Some((p, bytes));
                }
            }
        }
    }
    None
}

/// Warnings where the manager's hints (`source.*`) disagree with what is
/// on disk; the disk wins.
pub fn compare_hints(
    info: &detect::GuestInfo,
    system: &config::SystemConfiguration,
) -> Vec<Warning> {
    let mut out = Vec::new();
    let file = config::SYSTEM_CONFIGURATION;
    let src = &system.source;
    if src.arch.as_str() != info.arch && !info.arch.is_empty() && info.arch != "unknown" {
        out.push(Warning::new(
            codes::CONFIG_MISMATCH,
            format!(
                "{file}: $.source.arch is {} but the guest's binaries are {}",
                src.arch.as_str(),
                info.arch
            ),
        ));
    }
    if let Some(hint) = src.os_family.as_deref() {
        let hint_l = hint.to_ascii_lowercase();
        let family = info.family.as_str();
        if hint_l != family && hint_l != info.os_id.to_ascii_lowercase() {
            out.push(Warning::new(
                codes::CONFIG_MISMATCH,
                format!(
                    "{file}: $.source.osFamily is {hint:?} but the guest is {} (family {family})",
                    info.os_id
                ),
            ));
        }
    }
    if let Some(hint) = src.os_version.as_deref() {
        let major = |v: &str| v.split(['.', ' ']).next().unwrap_or("").to_string();
        if !info.os_version.is_empty() && major(hint) != major(&info.os_version) {
            out.push(Warning::new(
                codes::CONFIG_MISMATCH,
                format!(
                    "{file}: $.source.osVersion is {hint:?} but the guest is version {}",
                    info.os_version
                ),
            ));
        }
    }
    let fw = match info.firmware {
        detect::FirmwareHint::Bios => Some("bios"),
        detect::FirmwareHint::Efi => Some("efi"),
        detect::FirmwareHint::Unknown => None,
    };
    if let Some(fw) = fw {
        if fw != src.firmware.as_str() {
            out.push(Warning::new(
                codes::CONFIG_MISMATCH,
                format!(
                    "{file}: $.source.firmware is {} but the guest is set up for {fw}",
                    src.firmware.as_str()
                ),
            ));
        }
    }
    out
}
