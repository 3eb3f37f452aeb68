//! The initramfs fixup: every installed kernel's initramfs must hold the
//! target storage controller's driver, what the root device needs (file
//! system, device mapper, md) and `extraInitramfsDrivers`.
//!
//! A rebuild takes minutes, so the existing image is read first (leading
//! uncompressed cpio archives such as early microcode, then the gzip, xz,
//! zstd, lz4 or lzma main archive): when every needed module is inside and
//! no configuration the image embeds was changed by an earlier step, the
//! kernel is reported `unchanged` and nothing runs.
//!
//! Otherwise the guest's own tool rebuilds it, always naming the guest
//! kernel's version (the tools default to `uname -r`, the stack's kernel):
//! - dracut (RHEL 6+, Fedora, SLES 12+, Photon): a
//!   `/etc/dracut.conf.d/90-osam.conf` with `add_drivers+=" … "` and
//!   `dracut -f --add-drivers "<list>" <image> <version>`. The guest's
//!   hostonly setting is kept: the stack runs in the target VM, so a
//!   hostonly image is built for the target hardware, and the explicit
//!   driver list guarantees what the boot needs whatever dracut detects
//!   (`--no-hostonly` would make images several times larger and slower to
//!   build).
//! - mkinitrd: RHEL 5 `mkinitrd -f --with=<m>… <image> <version>`; SLES 11
//!   `mkinitrd -k <vmlinuz> -i <initrd> -m "<modules>"` with the modules
//!   also added to `INITRD_MODULES` in `/etc/sysconfig/kernel` (`-m`
//!   replaces that list, so it carries the guest's own modules too).
//! - initramfs-tools (Debian, Ubuntu): missing modules appended to
//!   `/etc/initramfs-tools/modules` (included in every `MODULES=` mode),
//!   then `update-initramfs -u -k <version>` (`-c` when there is no image).
//!
//! A rebuild of the default (newest) kernel's image must succeed; for the
//! others a failure is a warning.

pub mod cpio;
pub mod modules;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeSet;

use crate::detect::{KernelInfo, OsFamily};
use crate::engine::plan::{Edit, GuestFiles, Plan, PlanCtx, PlannedCommand};
use crate::error::{FixupError, Warning, codes};
use modules::{Availability, KernelModules, Needed, RootConfig};

/// The largest initramfs image read.
const MAX_IMAGE_BYTES: u64 = 512 << 20;
/// The most bytes an image may decompress to.
const MAX_DECOMPRESSED: usize = 1 << 30;

/// The dracut configuration file this step writes.
pub const DRACUT_CONF: &str = "/etc/dracut.conf.d/90-osam.conf";
/// initramfs-tools' list of modules to include.
pub const INITRAMFS_TOOLS_MODULES: &str = "/etc/initramfs-tools/modules";
/// SUSE's mkinitrd configuration (`INITRD_MODULES`).
pub const SUSE_SYSCONFIG_KERNEL: &str = "/etc/sysconfig/kernel";

/// Guest paths (files, or directories ending in `/`) whose contents an
/// initramfs embeds or is built from: a change by an earlier step means a
/// rebuild even when every module is inside. Any changed path the image
/// holds counts too.
pub const EMBEDDED_PATHS: &[&str] = &[
    "/etc/fstab",
    "/etc/crypttab",
    "/etc/mdadm.conf",
    "/etc/mdadm/mdadm.conf",
    "/etc/lvm/lvm.conf",
    "/etc/udev/rules.d/70-persistent-net.rules",
    "/etc/modprobe.conf",
    "/etc/modprobe.d/",
    "/etc/initramfs-tools/",
    "/etc/dracut.conf",
    "/etc/dracut.conf.d/",
    "/etc/sysconfig/kernel",
    "/etc/kernel/cmdline",
];

/// The guest's initramfs tool.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tool {
    Dracut(String),
    /// RHEL 5's mkinitrd.
    MkinitrdRhel(String),
    /// SLES 11's mkinitrd.
    MkinitrdSuse(String),
    InitramfsTools(String),
}

fn find_binary(files: &dyn GuestFiles, name: &str) -> Option<String> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| files.exists(p))
}

fn find_tool(files: &dyn GuestFiles, family: OsFamily) -> Option<Tool> {
    let dracut = find_binary(files, "dracut");
    let update = find_binary(files, "update-initramfs");
    if let Some(update) = update {
        // Debian's dracut package also ships an update-initramfs; the
        // initramfs-tools one comes with mkinitramfs and its configuration.
        let is_tools = files.exists("/etc/initramfs-tools/initramfs.conf")
            && find_binary(files, "mkinitramfs").is_some();
        if is_tools || dracut.is_none() {
            return Some(Tool::InitramfsTools(update));
        }
    }
    if let Some(d) = dracut {
        return Some(Tool::Dracut(d));
    }
    let mkinitrd = find_binary(files, "mkinitrd")?;
    Some(if family == OsFamily::Suse {
        Tool::MkinitrdSuse(mkinitrd)
    } else {
        Tool::MkinitrdRhel(mkinitrd)
    })
}

/// The image a tool writes for a kernel that has none yet.
fn default_image(family: OsFamily, tool: Option<&Tool>, v: &str) -> String {
    match (family, tool) {
        (OsFamily::Debian | OsFamily::Photon, _) | (_, Some(Tool::InitramfsTools(_))) => {
            format!("/boot/initrd.img-{v}")
        }
        (OsFamily::Suse, _) => format!("/boot/initrd-{v}"),
        (_, Some(Tool::MkinitrdRhel(_))) => format!("/boot/initrd-{v}.img"),
        _ => format!("/boot/initramfs-{v}.img"),
    }
}

/// The kernel's initramfs path: detection's, an existing file of any
/// distribution's naming, or the one the tool will write.
fn image_path(
    files: &dyn GuestFiles,
    family: OsFamily,
    tool: Option<&Tool>,
    k: &KernelInfo,
) -> String {
    if let Some(p) = &k.initramfs {
        return p.clone();
    }
    let v = &k.version;
    [
        format!("/boot/initramfs-{v}.img"),
        format!("/boot/initrd.img-{v}"),
        format!("/boot/initrd-{v}"),
        format!("/boot/initrd-{v}.img"),
    ]
    .into_iter()
    .find(|p| files.exists(p))
    .unwrap_or_else(|| default_image(family, tool, v))
}

/// Whether a changed guest path is one the image embeds or is built from.
fn is_embedded(changed: &str, image_names: &BTreeSet<&str>) -> bool {
    EMBEDDED_PATHS.iter().any(|p| {
        if p.ends_with('/') {
            changed.starts_with(p) || changed == p.trim_end_matches('/')
        } else {
            changed == *p
        }
    }) || image_names.contains(changed.trim_start_matches('/'))
}

/// What one kernel needs, resolved against its modules.
struct KernelNeeds {
    /// Needed loadable modules (top level), for the tool's list.
    loadable: Vec<String>,
    /// Those and their hard dependencies: what the image must hold.
    in_image: Vec<String>,
}

fn resolve(
    km: &KernelModules,
    needed: &[Needed],
    is_default: bool,
    warnings: &mut Vec<Warning>,
) -> Result<KernelNeeds, FixupError> {
    let mut loadable = Vec::new();
    let mut in_image: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for n in needed {
        let name = n.pick(km);
        match km.availability(name) {
            Availability::Builtin => {}
            Availability::Module | Availability::Unknown => {
                loadable.push(name.to_string());
                for m in km.closure(name) {
                    if !in_image.contains(&m) {
                        in_image.push(m);
                    }
                }
            }
            Availability::Missing => missing.push(format!("{name} (for {})", n.reason.describe())),
        }
    }
    if !missing.is_empty() {
        let message = format!(
            "kernel {} has no module {} (neither loadable nor built in){}",
            km.version,
            missing.join(", "),
            if is_default {
                ": it is the default boot kernel; install a kernel that has it, or remove the \
                 driver from extraInitramfsDrivers"
            } else {
                ": its initramfs is built without it, and that kernel may not boot"
            }
        );
        if is_default {
            return Err(FixupError::new(codes::INITRAMFS_MODULE_MISSING, message));
        }
        warnings.push(Warning::new(codes::INITRAMFS_MODULE_MISSING, message));
    }
    Ok(KernelNeeds { loadable, in_image })
}

/// The initramfs planner, for a guest no earlier step changed.
pub fn plan(ctx: &PlanCtx) -> Result<Plan, FixupError> {
    plan_with_changes(ctx, &[])
}

/// The initramfs planner. `changed` lists the guest paths earlier steps
/// of this run change (their edits' paths): an image embedding one of them
/// is rebuilt even when it holds every needed module.
pub fn plan_with_changes(ctx: &PlanCtx, changed: &[String]) -> Result<Plan, FixupError> {
    let files = ctx.files;
    let family = ctx.info.family;
    let read = |path: &str| -> Result<String, FixupError> {
        files
            .read(path)
            .map(Option::unwrap_or_default)
            .map_err(|e| {
                FixupError::new(
                    codes::GUEST_IO,
                    format!("cannot read the guest's {path}: {e}"),
                )
            })
    };
    let fstab = read("/etc/fstab")?;
    let crypttab = read("/etc/crypttab")?;
    let mut mdadm_conf = read("/etc/mdadm.conf")?;
    mdadm_conf.push_str(&read("/etc/mdadm/mdadm.conf")?);
    let root = RootConfig {
        fstab: &fstab,
        detected_root: ctx.info.root.as_deref(),
        crypttab: &crypttab,
        mdadm_conf: &mdadm_conf,
    };
    let driver = ctx.inputs.system.target.storage_controller.driver();
    let needed = modules::needed_modules(
        driver,
        &root,
        &ctx.inputs.system.options.extra_initramfs_drivers,
    );

    let mut plan = Plan::default();
    let kernels: Vec<&KernelInfo> = ctx.info.kernels.iter().filter(|k| k.has_modules).collect();
    let Some(default_kernel) = kernels.last().map(|k| k.version.clone()) else {
        return Err(FixupError::new(
            codes::GUEST_NO_KERNEL,
            "no installed kernel with modules found: there is no initramfs to prepare",
        ));
    };
    let tool = find_tool(files, family);
    let mut results = Vec::new();
    let mut rebuilds: Vec<(&KernelInfo, String, KernelNeeds)> = Vec::new();
    for k in kernels.iter().rev() {
        let is_default = k.version == default_kernel;
        let km = KernelModules::load(files, k)?;
        let needs = resolve(&km, &needed, is_default, &mut plan.warnings)?;
        let image = image_path(files, family, tool.as_ref(), k);
        let reason = match inspect(files, &image, &k.version) {
            Err(why) => {
                plan.warnings.push(Warning::new(
                    codes::INITRAMFS_UNREADABLE,
                    format!(
                        "cannot list {image} (kernel {}): {why}; it is rebuilt",
                        k.version
                    ),
                ));
                Some("image unreadable".to_string())
            }
            Ok(None) => Some("no image".to_string()),
            Ok(Some(listing)) => {
                let present =
                    modules::modules_in_image(listing.iter().map(|e| e.name.as_str()), &k.version);
                let missing: Vec<&str> = needs
                    .in_image
                    .iter()
                    .filter(|m| !present.contains(*m))
                    .map(String::as_str)
                    .collect();
                let names: BTreeSet<&str> = listing.iter().map(|e| e.name.as_str()).collect();
                let stale: Vec<&str> = changed
                    .iter()
                    .map(String::as_str)
                    .filter(|c| is_embedded(c, &names))
                    .collect();
                if !missing.is_empty() {
                    Some(format!("{} added", missing.join(", ")))
                } else if !stale.is_empty() {
                    Some(format!("{} changed", stale.join(", ")))
                } else {
                    None
                }
            }
        };
        match reason {
            None => results.push(format!("{} unchanged", k.version)),
            Some(r) => {
                results.push(format!("{} rebuilt ({r})", k.version));
                rebuilds.push((k, image, needs));
            }
        }
    }

    if !rebuilds.is_empty() {
        let Some(tool) = tool else {
            return Err(FixupError::new(
                codes::INITRAMFS_NO_TOOL,
                "the guest has none of dracut, mkinitrd and update-initramfs to rebuild its \
                 initramfs: install the distribution's initramfs tool",
            ));
        };
        plan_rebuilds(files, &tool, &rebuilds, &default_kernel, &mut plan)?;
    }
    plan.summary = format!(
        "{} kernel{}: {}",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        results.join(", ")
    );
    Ok(plan)
}

/// The members of an existing image; `Ok(None)` when there is none.
fn inspect(
    files: &dyn GuestFiles,
    image: &str,
    _version: &str,
) -> Result<Option<Vec<cpio::Entry>>, String> {
    let bytes = match files.read_bytes(image, MAX_IMAGE_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    cpio::list_image(&bytes, MAX_DECOMPRESSED)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn with_failure_policy(cmd: PlannedCommand, is_default: bool) -> PlannedCommand {
    if is_default { cmd } else { cmd.warn_only() }
}

fn plan_rebuilds(
    files: &dyn GuestFiles,
    tool: &Tool,
    rebuilds: &[(&KernelInfo, String, KernelNeeds)],
    default_kernel: &str,
    plan: &mut Plan,
) -> Result<(), FixupError> {
    let read = |path: &str| -> Result<Option<String>, FixupError> {
        files.read(path).map_err(|e| {
            FixupError::new(
                codes::GUEST_IO,
                format!("cannot read the guest's {path}: {e}"),
            )
        })
    };
    // Modules loadable in every kernel rebuilt: safe for the configuration
    // files, which apply to every kernel.
    let common: Vec<String> = rebuilds
        .first()
        .map(|(_, _, n)| n.loadable.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|m| rebuilds.iter().all(|(_, _, n)| n.loadable.contains(m)))
        .collect();
    match tool {
        Tool::Dracut(_) => {
            if !common.is_empty() {
                let text = format!(
                    "# Written by the OSAM fixup stack: drivers the VMware target needs to boot.\n\
                     add_drivers+=\" {} \"\n",
                    common.join(" ")
                );
                if read(DRACUT_CONF)?.as_deref() != Some(text.as_str()) {
                    plan.edits.push(Edit::write(DRACUT_CONF, text));
                }
            }
        }
        Tool::InitramfsTools(_) => {
            let all: Vec<String> = rebuilds
                .iter()
                .flat_map(|(_, _, n)| n.loadable.iter().cloned())
                .collect();
            let existing = read(INITRAMFS_TOOLS_MODULES)?;
            if let Some(text) = append_modules_file(existing.as_deref(), &all) {
                plan.edits.push(Edit::write(INITRAMFS_TOOLS_MODULES, text));
            }
        }
        Tool::MkinitrdSuse(_) => {
            let existing = read(SUSE_SYSCONFIG_KERNEL)?;
            if let Some(text) = add_initrd_modules(existing.as_deref(), &common) {
                plan.edits.push(Edit::write(SUSE_SYSCONFIG_KERNEL, text));
            }
        }
        Tool::MkinitrdRhel(_) => {}
    }
    let suse_modules = match tool {
        Tool::MkinitrdSuse(_) => read(SUSE_SYSCONFIG_KERNEL)?
            .as_deref()
            .map(initrd_modules)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    for (k, image, needs) in rebuilds {
        let v = k.version.as_str();
        let is_default = v == default_kernel;
        let list = needs.loadable.join(" ");
        let why = format!(
            "rebuild the initramfs of kernel {v} with {}",
            if list.is_empty() {
                "its modules".to_string()
            } else {
                list.clone()
            }
        );
        let argv: Vec<String> = match tool {
            Tool::Dracut(bin) => {
                let mut a = vec![bin.clone(), "-f".into()];
                if !list.is_empty() {
                    a.extend(["--add-drivers".into(), list.clone()]);
                }
                a.extend([image.clone(), v.to_string()]);
                a
            }
            Tool::MkinitrdRhel(bin) => {
                let mut a = vec![bin.clone(), "-f".into()];
                a.extend(needs.loadable.iter().map(|m| format!("--with={m}")));
                a.extend([image.clone(), v.to_string()]);
                a
            }
            Tool::MkinitrdSuse(bin) => {
                let vmlinuz = k
                    .image
                    .clone()
                    .unwrap_or_else(|| format!("/boot/vmlinuz-{v}"));
                let mut mods = suse_modules.clone();
                for m in &needs.loadable {
                    if !mods.contains(m) {
                        mods.push(m.clone());
                    }
                }
                vec![
                    bin.clone(),
                    "-k".into(),
                    vmlinuz,
                    "-i".into(),
                    image.clone(),
                    "-m".into(),
                    mods.join(" "),
                ]
            }
            Tool::InitramfsTools(bin) => {
                let mode = if files.exists(image) { "-u" } else { "-c" };
                vec![bin.clone(), mode.into(), "-k".into(), v.to_string()]
            }
        };
        // The image's original, for undo (the tool replaces it).
        if files.exists(image) {
            plan.edits.push(Edit::preserve(image));
        }
        plan.commands.push(with_failure_policy(
            PlannedCommand::new(&argv, why),
            is_default,
        ));
    }
    Ok(())
}

fn module_key(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    line.split_whitespace()
        .next()
        .map(crate::kmod::normalize_name)
}

/// `/etc/initramfs-tools/modules` with the modules it lacks appended (its
/// lines and comments kept); `None` when nothing is missing.
fn append_modules_file(existing: Option<&str>, modules: &[String]) -> Option<String> {
    let text = existing.unwrap_or("");
    let have: BTreeSet<String> = text.lines().filter_map(module_key).collect();
    let mut add: Vec<&str> = Vec::new();
    for m in modules {
        if !have.contains(&crate::kmod::normalize_name(m)) && !add.contains(&m.as_str()) {
            add.push(m);
        }
    }
    if add.is_empty() {
        return None;
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# Added by the OSAM fixup stack (VMware target):\n");
    for m in add {
        out.push_str(m);
        out.push('\n');
    }
    Some(out)
}

/// The modules of `INITRD_MODULES="…"` in /etc/sysconfig/kernel.
fn initrd_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("INITRD_MODULES="))
        .next_back()
        .map(|v| {
            v.trim()
                .trim_matches('"')
                .trim_matches('\'')
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// /etc/sysconfig/kernel with `modules` added to `INITRD_MODULES`; `None`
/// when all are there.
fn add_initrd_modules(existing: Option<&str>, modules: &[String]) -> Option<String> {
    let text = existing.unwrap_or("");
    let mut list = initrd_modules(text);
    let before = list.len();
    for m in modules {
        if !list.contains(m) {
            list.push(m.clone());
        }
    }
    if list.len() == before {
        return None;
    }
    let line = format!("INITRD_MODULES=\"{}\"", list.join(" "));
    let mut replaced = false;
    let mut out: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let last = lines
        .iter()
        .rposition(|l| l.trim().starts_with("INITRD_MODULES="));
    for (i, l) in lines.iter().enumerate() {
        if Some(i) == last {
            out.push(line.clone());
            replaced = true;
        } else {
            out.push(l.to_string());
        }
    }
    if !replaced {
        out.push(line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    Some(s)
}
