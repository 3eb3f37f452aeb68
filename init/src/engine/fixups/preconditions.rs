//! Guest preconditions, checked before any change: the kernel that will
//! boot must carry the target storage controller's driver, as a module
//! (`modules.dep`) or built in (`modules.builtin`, or `CONFIG_…=y` in
//! `/boot/config-<v>` for kernels without modules.builtin). The default
//! (newest) kernel lacking it is an error naming the kernel and the
//! driver; an older kernel lacking it, or any kernel lacking the target
//! NIC's driver, is a warning. The plan has no edits.

use super::initramfs::modules::{Availability, KernelModules};
use crate::detect::KernelInfo;
use crate::engine::plan::{Plan, PlanCtx};
use crate::error::{FixupError, Warning, codes};

/// Checks the guest's kernels; see the module documentation.
pub fn plan(ctx: &PlanCtx) -> Result<Plan, FixupError> {
    let kernels: Vec<&KernelInfo> = ctx
        .info
        .kernels
        .iter()
        .filter(|k| k.has_modules || k.image.is_some())
        .collect();
    let Some(default) = kernels.last() else {
        return Err(FixupError::new(
            codes::GUEST_NO_KERNEL,
            "the guest has no installed kernel: install one before the migration",
        ));
    };
    let driver = ctx.inputs.system.target.storage_controller.driver();
    let nic = ctx.inputs.system.target.nic_model.driver();
    let mut plan = Plan::default();
    let mut lacking_default = false;
    let mut lacking_others = Vec::new();
    for k in &kernels {
        let km = KernelModules::load(ctx.files, k)?;
        let is_default = k.version == default.version;
        match km.availability(driver) {
            Availability::Builtin | Availability::Module => {}
            Availability::Unknown => plan.warnings.push(Warning::new(
                codes::PRECONDITION_UNVERIFIED,
                format!(
                    "kernel {} has no modules.dep, modules.builtin or config file: whether it \
                     has the {driver} driver cannot be checked",
                    k.version
                ),
            )),
            Availability::Missing if is_default => lacking_default = true,
            Availability::Missing => lacking_others.push(k.version.clone()),
        }
        if km.availability(nic) == Availability::Missing {
            plan.warnings.push(Warning::new(
                codes::PRECONDITION_DRIVER_WARNING,
                format!(
                    "kernel {} lacks the {nic} network driver (neither a module nor built in): \
                     the guest will have no network on the target NIC with that kernel",
                    k.version
                ),
            ));
        }
    }
    if lacking_default {
        let mut all = lacking_others.clone();
        all.push(default.version.clone());
        return Err(FixupError::new(
            codes::PRECONDITION_DRIVER_MISSING,
            format!(
                "the guest's default kernel {} lacks the {driver} driver for the target storage \
                 controller (neither a module nor built in){}: the guest would not find its \
                 disks. Install a kernel that has {driver} in the source VM, or choose a \
                 target controller the kernel supports",
                default.version,
                if lacking_others.is_empty() {
                    String::new()
                } else {
                    format!("; kernels lacking it: {}", all.join(", "))
                }
            ),
        ));
    }
    for v in lacking_others {
        plan.warnings.push(Warning::new(
            codes::PRECONDITION_DRIVER_WARNING,
            format!(
                "kernel {v} lacks the {driver} driver for the target storage controller: it \
                 will not boot on the target (the default kernel {} will)",
                default.version
            ),
        ));
    }
    plan.summary = format!(
        "{} kernel{} checked: {driver} present in the default kernel {}",
        kernels.len(),
        if kernels.len() == 1 { "" } else { "s" },
        default.version
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fixups::initramfs::tests::{ctx_parts, kernel};
    use crate::engine::plan::MemFiles;

    const DEP_PVSCSI: &str = "kernel/drivers/scsi/vmw_pvscsi.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz\nkernel/drivers/net/vmxnet3/vmxnet3.ko.xz:\n";
    const DEP_NONE: &str = "kernel/fs/xfs/xfs.ko.xz:\n";

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            files: MemFiles,
            kernels: Vec<&'static str>,
            want_err: bool,
            want_warnings: usize,
        }
        let m = |v: &str, file: &str, text: &str| {
            (format!("/lib/modules/{v}/{file}"), text.to_string())
        };
        let build = |entries: Vec<(String, String)>| {
            let mut f = MemFiles::new();
            for (p, t) in entries {
                f = f.with(&p, &t);
            }
            f
        };
        let cases = vec![
            Case {
                name: "module present",
                files: build(vec![m("5.14", "modules.dep", DEP_PVSCSI)]),
                kernels: vec!["5.14"],
                want_err: false,
                want_warnings: 0,
            },
            Case {
                name: "built in, NIC missing",
                files: build(vec![
                    m("5.14", "modules.dep", DEP_NONE),
                    m(
                        "5.14",
                        "modules.builtin",
                        "kernel/drivers/scsi/vmw_pvscsi.ko\n",
                    ),
                ]),
                kernels: vec!["5.14"],
                want_err: false,
                want_warnings: 1,
            },
            Case {
                name: "old kernel: config=y",
                files: build(vec![m("2.6.18", "modules.dep", DEP_NONE)]).with(
                    "/boot/config-2.6.18",
                    "CONFIG_VMWARE_PVSCSI=y\nCONFIG_VMXNET3=m\n",
                ),
                kernels: vec!["2.6.18"],
                want_err: false,
                want_warnings: 1, // vmxnet3 =m but not in modules.dep
            },
            Case {
                name: "default kernel lacks it",
                files: build(vec![
                    m("3.10", "modules.dep", DEP_PVSCSI),
                    m("5.14", "modules.dep", DEP_NONE),
                ]),
                kernels: vec!["3.10", "5.14"],
                want_err: true,
                want_warnings: 0,
            },
            Case {
                name: "older kernel lacks it: warning",
                files: build(vec![
                    m("3.10", "modules.dep", DEP_NONE),
                    m("5.14", "modules.dep", DEP_PVSCSI),
                ]),
                kernels: vec!["3.10", "5.14"],
                want_err: false,
                want_warnings: 2,
            },
            Case {
                name: "nothing to check",
                files: MemFiles::new(),
                kernels: vec!["5.14"],
                want_err: false,
                want_warnings: 1,
            },
        ];
        for c in cases {
            let kernels: Vec<_> = c.kernels.iter().map(|v| kernel(v)).collect();
            let (info, inputs, identity) = ctx_parts(crate::detect::OsFamily::Rhel, kernels, &[]);
            let ctx = PlanCtx {
                files: &c.files,
                info: &info,
                inputs: &inputs,
                identity: &identity,
                stack_arch: "x86_64",
                boot_device: None,
            };
            match plan(&ctx) {
                Ok(p) => {
                    assert!(!c.want_err, "{}: expected an error", c.name);
                    assert!(p.is_empty(), "{}", c.name);
                    assert_eq!(
                        p.warnings.len(),
                        c.want_warnings,
                        "{}: {:?}",
                        c.name,
                        p.warnings
                    );
                }
                Err(e) => {
                    assert!(c.want_err, "{}: {e}", c.name);
                    assert_eq!(e.code, codes::PRECONDITION_DRIVER_MISSING);
                    assert!(
                        e.message.contains("5.14") && e.message.contains("vmw_pvscsi"),
                        "{}",
                        e.message
                    );
                }
            }
        }
    }
}
