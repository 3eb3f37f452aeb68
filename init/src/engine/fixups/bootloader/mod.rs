//! The boot loader fixup: the kernel command line wherever the guest
//! keeps it, GRUB's configuration regenerated, GRUB installed for a BIOS
//! target, the EFI system partition repaired for an EFI target.
//!
//! | guest | edits | commands |
//! |---|---|---|
//! | GRUB 2 (Debian, Ubuntu) | `/etc/default/grub`, `/etc/default/grub.d/*.cfg` | BIOS: `grub-install --target=i386-pc <disk>`; `grub-mkconfig -o /boot/grub/grub.cfg` |
//! | GRUB 2 (RHEL 7, SUSE, …) | `/etc/default/grub` | BIOS: `grub2-install --target=i386-pc <disk>`; `grub2-mkconfig -o <cfg>` |
//! | GRUB 2 + BLS (RHEL 8+) | the above, `/boot/loader/entries/*.conf`, grubenv `kernelopts`, `/etc/kernel/cmdline` | as above |
//! | GRUB legacy (RHEL 5/6, SLES 11) | `grub.conf`/`menu.lst` `kernel` lines, `device.map` | BIOS: `grub --batch` setup |
//! | Photon OS (installer's grub.cfg) | grub.cfg `rootpartition`, `/boot/linux-*.cfg`, `/boot/systemd.cfg` | BIOS: `grub2-install --target=i386-pc <disk>`; no mkconfig (see [`photon`]) |
//! | any, EFI target | `\EFI\BOOT\BOOTX64.EFI` and companions copied on the ESP, the ESP stub `grub.cfg` repaired | `efibootmgr -c` (warn only) |
//!
//! `grub.cfg` goes to `/boot/grub/grub.cfg` (Debian family),
//! `/boot/grub2/grub.cfg` (SUSE, BIOS targets, and EFI targets whose ESP
//! `grub.cfg` is a stub: RHEL 9+, Fedora 34+), else the ESP's
//! `\EFI\<vendor>\grub.cfg` (RHEL 7/8 on EFI). The stub keeps loading the
//! real one; its `search --fs-uuid` is rewritten through the identity map.
//! `update-grub` is not used: `grub-mkconfig -o` names the file.
//!
//! On EFI targets no `grub-install`/`grub2-install` runs where the ESP has
//! the distribution's loader: the signed shim → GRUB chain is kept as it is
//! (RHEL 8+ refuses `grub2-install` on EFI anyway). Only where the ESP has no
//! loader for the distribution is it installed (`--no-nvram`, plus a
//! `--removable` copy for the fallback path); on RHEL 8+ that is an error
//! (`bootloader.efi_files_missing`).
//!
//! Commands, and idempotence: `grub.cfg` is regenerated on every run (it
//! also lists the initramfs images the initramfs step rebuilt and takes the
//! root device from the stack's `/dev/disk/by-uuid` links); the BIOS
//! install runs on every run with a BIOS target (the copied boot code may be
//! missing — Xen PV guests booted through pygrub — or belong to another
//! firmware), and `efibootmgr` on every run with an EFI target. A second
//! plan over the first one's output has no edits. The first MiB of the
//! boot disk is saved to [`FIRST_MIB`] before the first install and never
//! again (the plan skips `dd` when the file holds a whole MiB; a shorter
//! one is what a power cut during the save leaves).
//!
//! No planned command takes a kernel version: `grub-mkconfig` lists every
//! installed kernel, `grub-install` installs no kernel (the initramfs step
//! names versions to `dracut`/`mkinitrd`/`update-initramfs`).
//!
//! os-prober: the planned commands have no environment of their own, so
//! `GRUB_DISABLE_OS_PROBER=true` is set in `/etc/default/grub` (see
//! [`grub2`]).
//!
//! What the integrator must pass in: the stack's device name for the boot
//! disk ([`boot_device`]; until `PlanCtx` carries it, a documented guess)
//! and, for efibootmgr, the ESP partition number ([`esp_partition`], from
//! the replica disk map or the guest's fstab, else 1 with a warning).

pub mod bls;
pub mod cmdline;
pub mod efi;
pub mod grub2;
pub mod legacy;
pub mod nvram;
pub mod photon;

use std::collections::BTreeSet;
use std::io;

use crate::detect::{Bootloader, OsFamily};
use crate::engine::plan::{Edit, GuestFiles, Plan, PlanCtx, PlannedCommand, Unless};
use crate::error::{FixupError, Warning, codes};
use crate::protocol::config::{ControllerKind, Firmware};
use cmdline::CmdlineOpts;

/// Where the boot disk's first MiB is saved before a boot loader install.
pub const FIRST_MIB: &str = "/opt/vmware/hcx/osam/data/boot-disk-first-mib.bin";

fn io_err(path: &str, e: io::Error) -> FixupError {
    FixupError::new(
        codes::GUEST_IO,
        format!("cannot read the guest's {path}: {e}"),
    )
}

fn read(files: &dyn GuestFiles, path: &str) -> Result<Option<String>, FixupError> {
    files.read(path).map_err(|e| io_err(path, e))
}

/// The stack's device name for the target boot disk (the replica with
/// `boot: true`, else the first one).
///
/// Not known offline: until `PlanCtx` carries the device the stack found
/// at that address (`boot_device: Option<String>`), this is a guess:
/// `/dev/nvme<controller>n<unit + 1>` for an NVMe target, `/dev/sda` for
/// SCSI and SATA (the boot replica at scsi0:0 / sata0:0 is probed before
/// the fixup disk at scsi0:15). The second value says it was guessed. This
/// is the one place to change.
pub fn boot_device(ctx: &PlanCtx) -> (String, bool) {
    if let Some(dev) = ctx.boot_device {
        return (dev.to_string(), false);
    }
    let disks = &ctx.inputs.disks;
    let disk = disks.boot_disk().or(disks.disks.first());
    let dev = match disk {
        Some(d) if d.target.controller.kind == ControllerKind::Nvme => format!(
            "/dev/nvme{}n{}",
            d.target.controller.index,
            d.target.unit + 1
        ),
        _ => "/dev/sda".to_string(),
    };
    (dev, true)
}

/// The partition device of `number` on `disk` (`/dev/sda` 1 → `/dev/sda1`,
/// `/dev/nvme0n1` 1 → `/dev/nvme0n1p1`).
pub fn partition_device(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// The ESP's partition number on the boot disk: the replica map's
/// partition mounted at `/boot/efi` (or `/efi`), else its only `vfat`
/// partition, else the partition whose `sourceUuid` the guest's fstab
/// mounts at `/boot/efi`; else 1 (the second value says it was guessed).
pub fn esp_partition(ctx: &PlanCtx) -> (u32, bool) {
    let disks = &ctx.inputs.disks;
    let Some(disk) = disks.boot_disk().or(disks.disks.first()) else {
        return (1, true);
    };
    let parts = &disk.partitions;
    if let Some(p) = parts
        .iter()
        .find(|p| matches!(p.mount_point.as_deref(), Some("/boot/efi" | "/efi")))
    {
        return (p.number, false);
    }
    let vfat: Vec<_> = parts
        .iter()
        .filter(|p| {
            p.fs_type
                .as_deref()
                .is_some_and(|f| f.eq_ignore_ascii_case("vfat"))
        })
        .collect();
    if let [p] = vfat.as_slice() {
        return (p.number, false);
    }
    let fstab = ctx
        .files
        .read("/etc/fstab")
        .ok()
        .flatten()
        .unwrap_or_default();
    let esp_uuid = fstab.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f.as_slice() {
            [dev, "/boot/efi" | "/efi", ..] if !dev.starts_with('#') => dev
                .strip_prefix("UUID=")
                .or_else(|| dev.strip_prefix("/dev/disk/by-uuid/"))
                .map(str::to_string),
            _ => None,
        }
    });
    if let Some(u) = esp_uuid {
        if let Some(p) = parts.iter().find(|p| {
            p.source_uuid
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(&u))
        }) {
            return (p.number, false);
        }
    }
    (1, true)
}

/// The first path that exists.
fn first_existing<'a>(files: &dyn GuestFiles, paths: &[&'a str]) -> Option<&'a str> {
    paths.iter().copied().find(|p| files.exists(p))
}

fn major_version(v: &str) -> u32 {
    v.split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// RHEL 8+ and its rebuilds, Fedora 28+: no `grub2-install` on EFI.
fn refuses_efi_install(ctx: &PlanCtx) -> bool {
    let v = major_version(&ctx.info.os_version);
    match ctx.info.os_id.as_str() {
        "fedora" => v >= 28,
        "amzn" => v >= 2022,
        _ => ctx.info.family == OsFamily::Rhel && v >= 8,
    }
}

/// Whether the ESP `grub.cfg` of the distribution is a stub (RHEL 9+,
/// Fedora 34+) when there is none to look at.
fn expects_esp_stub(ctx: &PlanCtx) -> bool {
    let v = major_version(&ctx.info.os_version);
    match ctx.info.os_id.as_str() {
        "fedora" => v >= 34,
        "amzn" => v >= 2023,
        _ => ctx.info.family != OsFamily::Rhel || v >= 9,
    }
}

/// Collects change descriptions once each, in order.
#[derive(Default)]
struct Changes {
    seen: BTreeSet<String>,
    list: Vec<String>,
}

impl Changes {
    fn extend(&mut self, items: impl IntoIterator<Item = String>) {
        for c in items {
            if self.seen.insert(c.clone()) {
                self.list.push(c);
            }
        }
    }
}

/// The boot loader plan (see the module documentation).
pub fn plan(ctx: &PlanCtx) -> Result<Plan, FixupError> {
    let storage = ctx.inputs.system.target.storage_controller.driver();
    let nic = ctx.inputs.system.target.nic_model.driver();
    let drivers = [storage, nic];
    let opts = CmdlineOpts {
        map: ctx.identity,
        rename_nics: ctx.inputs.system.options.rename_interfaces,
        add_nic_options: true,
        target_drivers: &drivers,
    };
    match ctx.info.bootloader {
        Bootloader::Grub2 | Bootloader::Bls => plan_grub2(ctx, &opts),
        Bootloader::GrubLegacy => plan_legacy(ctx, &opts),
        other => {
            let mut plan = Plan::default();
            plan.warnings.push(Warning::new(
                codes::BOOTLOADER_UNSUPPORTED,
                format!(
                    "the guest's boot loader ({other}) is not one the stack configures: \
                     check its kernel command line (root=, console=) by hand"
                ),
            ));
            plan.summary = format!("{other}: not changed");
            Ok(plan)
        }
    }
}

/// Whether [`FIRST_MIB`] holds a whole MiB. `dd … conv=fsync` writes it
/// in place: a power cut during the save leaves it short (or empty, its
/// data not yet written). The install only runs after `dd` returned, so a
/// short file means the boot code was not touched yet and is saved again;
/// trusting it would keep a broken save for ever (the first save is never
/// replaced) and make undo write it onto the boot disk.
pub fn first_mib_saved(files: &dyn GuestFiles) -> bool {
    const MIB: u64 = 1 << 20;
    matches!(files.read_bytes(FIRST_MIB, MIB + 1), Ok(Some(b)) if b.len() as u64 == MIB)
}

/// Plans the save of the first MiB and returns the boot device: `dd` into
/// a temporary name (its data fsynced), then a rename, so that a power cut
/// leaves no short save under the final name.
fn save_first_mib(ctx: &PlanCtx, plan: &mut Plan, dev: &str) {
    if !first_mib_saved(ctx.files) {
        let partial = format!("{FIRST_MIB}.partial");
        plan.commands.push(PlannedCommand::new(
            &[
                "dd",
                &format!("if={dev}"),
                &format!("of={partial}"),
                "bs=1M",
                "count=1",
                "conv=fsync",
            ],
            format!("save the first MiB of the boot disk {dev} before the boot loader install"),
        ));
        plan.commands.push(PlannedCommand::new(
            &["mv", "-f", &partial, FIRST_MIB],
            "put the saved first MiB in place",
        ));
    }
}

fn warn_guessed_device(plan: &mut Plan, dev: &str, guessed: bool) {
    if guessed {
        plan.warnings.push(Warning::new(
            codes::BOOTLOADER_GUESSED,
            format!("the boot disk is taken to be {dev} in the fixup stack"),
        ));
    }
}

fn plan_grub2(ctx: &PlanCtx, opts: &CmdlineOpts) -> Result<Plan, FixupError> {
    let files = ctx.files;
    let mut plan = Plan::default();
    let mut changes = Changes::default();
    let mut done: Vec<String> = Vec::new();

    // Photon's installer-written grub.cfg is kept, its inputs edited.
    let photon_cfg = read(files, photon::GRUB_CFG)?.filter(|t| photon::is_photon_config(t));
    if let Some(text) = &photon_cfg {
        plan_photon(ctx, opts, text, &mut plan, &mut changes)?;
        done.push(format!(
            "{} kept (not generated by grub2-mkconfig)",
            photon::GRUB_CFG
        ));
    }

    // /etc/default/grub and its grub.d drop-ins (grub-mkconfig's input).
    if photon_cfg.is_none() {
        plan_defaults(ctx, opts, &mut plan, &mut changes, &mut done)?;
    }

    // BLS entries, grubenv, /etc/kernel/cmdline.
    let mut entries = 0usize;
    for name in files
        .list(bls::ENTRIES_DIR)
        .map_err(|e| io_err(bls::ENTRIES_DIR, e))?
    {
        if !name.ends_with(".conf") {
            continue;
        }
        let path = format!("{}/{name}", bls::ENTRIES_DIR);
        let Some(text) = read(files, &path)? else {
            continue;
        };
        let (new, ch, _) = bls::rewrite_entry(&text, opts);
        if new != text {
            plan.edits.push(Edit::write(&path, new));
            entries += 1;
        }
        changes.extend(ch);
    }
    if entries > 0 {
        done.push(format!("BLS entries: {entries}"));
    }
    let grubenv = match files.read_link(bls::GRUBENV) {
        Some(t) if t.starts_with('/') => t,
        Some(t) => resolve_relative("/boot/grub2", &t),
        None => bls::GRUBENV.to_string(),
    };
    if let Some(block) = files
        .read_bytes(&grubenv, 64 * 1024)
        .map_err(|e| io_err(&grubenv, e))?
    {
        if bls::grubenv_kernelopts(&block).is_some() {
            match bls::rewrite_grubenv(&block, opts) {
                Ok(Some((new, ch))) => {
                    plan.edits.push(Edit::write(&grubenv, new));
                    changes.extend(ch);
                    done.push("grubenv kernelopts".into());
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(FixupError::new(
                        codes::BOOTLOADER_GRUBENV,
                        format!("cannot update kernelopts in {grubenv}: {e}"),
                    ));
                }
            }
        }
    }
    if let Some(text) = read(files, bls::KERNEL_CMDLINE)? {
        let r = cmdline::rewrite_with_changes(&text, opts);
        if r.text != text {
            plan.edits.push(Edit::write(bls::KERNEL_CMDLINE, r.text));
        }
        changes.extend(r.changes);
    }

    // Which GRUB: the guest's own tools decide, the family where none is
    // found.
    let sbin = |tool: &str| {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| files.exists(&format!("{d}/{tool}")))
    };
    let prefix = if sbin("grub2-mkconfig") {
        "grub2"
    } else if sbin("grub-mkconfig") || ctx.info.family == OsFamily::Debian {
        "grub"
    } else {
        "grub2"
    };
    let boot_grub = if prefix == "grub" {
        "/boot/grub"
    } else {
        "/boot/grub2"
    };
    let mut cfg_out = format!("{boot_grub}/grub.cfg");
    let mut boot_entry = None;

    let target = ctx.inputs.system.target.firmware;
    let source = ctx.inputs.system.source.firmware;
    match target {
        Firmware::Bios => {
            let modules = [
                "/usr/lib/grub/i386-pc",
                "/usr/lib/grub2/i386-pc",
                "/usr/share/grub2/i386-pc",
                "/usr/share/grub/i386-pc",
            ];
            if first_existing(files, &modules).is_some() {
                let (dev, guessed) = boot_device(ctx);
                warn_guessed_device(&mut plan, &dev, guessed);
                save_first_mib(ctx, &mut plan, &dev);
                let mut cmd = PlannedCommand::new(
                    &[
                        format!("{prefix}-install").as_str(),
                        "--target=i386-pc",
                        &dev,
                    ],
                    format!("install GRUB's BIOS boot code on {dev}"),
                );
                if source == Firmware::Bios {
                    // The copied boot code most likely still works.
                    cmd = cmd.warn_only();
                }
                plan.commands.push(cmd);
                done.push(format!("{prefix}-install i386-pc {dev}"));
            } else if source == Firmware::Bios {
                plan.warnings.push(Warning::new(
                    codes::BOOTLOADER_BIOS_MODULES_MISSING,
                    "GRUB's i386-pc modules are not installed: the boot code copied from \
                     the source disk is kept",
                ));
            } else {
                return Err(FixupError::new(
                    codes::BOOTLOADER_BIOS_MODULES_MISSING,
                    format!(
                        "the target firmware is BIOS but the guest booted with UEFI and has \
                         no GRUB i386-pc modules: install {} in the guest, or give the \
                         target VM EFI firmware",
                        if prefix == "grub" {
                            "grub-pc-bin"
                        } else {
                            "grub2-pc-modules"
                        }
                    ),
                ));
            }
        }
        Firmware::Efi => {
            let (out, entry) =
                plan_efi(ctx, prefix, boot_grub, &mut plan, &mut done, &mut changes)?;
            if let Some(out) = out {
                cfg_out = out;
            }
            boot_entry = Some(entry);
        }
    }

    if photon_cfg.is_none() {
        // Its original, for undo (the command replaces it).
        if files.exists(&cfg_out) {
            plan.edits.push(Edit::preserve(&cfg_out));
        }
        plan.commands.push(PlannedCommand::new(
            &[format!("{prefix}-mkconfig").as_str(), "-o", &cfg_out],
            format!("regenerate {cfg_out}"),
        ));
        done.push(format!("{prefix}-mkconfig -o {cfg_out}"));
    }
    // The boot entry last: it may fail (NVRAM) without failing the step.
    if let Some((cmd, what)) = boot_entry {
        plan.commands.push(cmd);
        done.push(what);
    }

    plan.summary = summary("grub2", &changes, &done);
    Ok(plan)
}

/// `/etc/default/grub` and `/etc/default/grub.d/*.cfg`, read in the order
/// `grub-mkconfig` sources them (see [`grub2::rewrite_defaults`]). A
/// drop-in that is a symlink is left alone.
fn plan_defaults(
    ctx: &PlanCtx,
    opts: &CmdlineOpts,
    plan: &mut Plan,
    changes: &mut Changes,
    done: &mut Vec<String>,
) -> Result<(), FixupError> {
    let files = ctx.files;
    let mut inputs: Vec<(String, String)> = Vec::new();
    if let Some(text) = read(files, grub2::DEFAULT_GRUB)? {
        inputs.push((grub2::DEFAULT_GRUB.to_string(), text));
    }
    let mut names = files
        .list(grub2::DEFAULT_GRUB_D)
        .map_err(|e| io_err(grub2::DEFAULT_GRUB_D, e))?;
    names.sort();
    for name in names {
        if !name.ends_with(".cfg") || name.starts_with('.') {
            continue;
        }
        let path = format!("{}/{name}", grub2::DEFAULT_GRUB_D);
        if files.read_link(&path).is_some() {
            continue;
        }
        if let Some(text) = read(files, &path)? {
            inputs.push((path, text));
        }
    }
    if inputs.is_empty() {
        return Ok(());
    }
    let given: Vec<(&str, &str)> = inputs
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let r = grub2::rewrite_defaults(&given, opts);
    let mut drop_ins = 0usize;
    for ((path, old), new) in inputs.iter().zip(r.texts) {
        if &new != old {
            if path != grub2::DEFAULT_GRUB {
                drop_ins += 1;
            }
            plan.edits.push(Edit::write(path, new));
        }
    }
    if drop_ins > 0 {
        done.push(format!("grub.d drop-ins: {drop_ins}"));
    }
    changes.extend(r.changes);
    plan.warnings
        .extend(r.warnings.into_iter().map(|(c, m)| Warning::new(c, m)));
    Ok(())
}

/// Photon's grub.cfg inputs: its `rootpartition`, the kernels'
/// `photon_cmdline` and `systemd_cmdline` (see [`photon`]).
fn plan_photon(
    ctx: &PlanCtx,
    opts: &CmdlineOpts,
    grub_cfg: &str,
    plan: &mut Plan,
    changes: &mut Changes,
) -> Result<(), FixupError> {
    let files = ctx.files;
    let (new, ch) = photon::rewrite_rootpartition(grub_cfg, opts);
    if new != grub_cfg {
        plan.edits.push(Edit::write(photon::GRUB_CFG, new));
    }
    changes.extend(ch);
    // The NIC options go where grub.cfg takes `systemd_cmdline` from.
    let systemd = read(files, photon::SYSTEMD_CFG)?;
    let kernel_opts = CmdlineOpts {
        add_nic_options: opts.add_nic_options && systemd.is_none(),
        ..*opts
    };
    let names = files
        .list(photon::BOOT)
        .map_err(|e| io_err(photon::BOOT, e))?;
    for name in names.iter().filter(|n| photon::is_kernel_env(n)) {
        let path = format!("{}/{name}", photon::BOOT);
        if files.read_link(&path).is_some() {
            continue;
        }
        if let Some(text) = read(files, &path)? {
            let (new, ch) =
                photon::rewrite_env_cmdline(&text, photon::KERNEL_CMDLINE_KEY, &kernel_opts);
            if new != text {
                plan.edits.push(Edit::write(&path, new));
            }
            changes.extend(ch);
        }
    }
    if let Some(text) = systemd {
        let (new, ch) = photon::rewrite_env_cmdline(&text, photon::SYSTEMD_CMDLINE_KEY, opts);
        if new != text {
            plan.edits.push(Edit::write(photon::SYSTEMD_CFG, new));
        }
        changes.extend(ch);
    }
    Ok(())
}

/// EFI target: the ESP repair, an install where the loader is missing, the
/// boot entry. Returns where `grub.cfg` goes when not in `/boot`, and the
/// `efibootmgr` command with its summary part.
fn plan_efi(
    ctx: &PlanCtx,
    prefix: &str,
    boot_grub: &str,
    plan: &mut Plan,
    done: &mut Vec<String>,
    changes: &mut Changes,
) -> Result<(Option<String>, (PlannedCommand, String)), FixupError> {
    let files = ctx.files;
    let l = efi::loaders(&ctx.info.arch);
    let Some((esp_mount, efi_dir)) = efi::find_esp(files) else {
        return Err(FixupError::new(
            codes::BOOTLOADER_NO_ESP,
            "the target firmware is EFI but the guest has no EFI system partition \
             (nothing at /boot/efi/EFI or /efi/EFI): give the target VM BIOS firmware",
        ));
    };
    let vendor = efi::find_vendor(files, efi_dir, &ctx.info.os_id, &l)
        .map_err(|e| io_err(efi_dir, e))?
        .or_else(|| {
            efi::vendor_dirs(&ctx.info.os_id)
                .first()
                .map(|s| s.to_string())
        })
        .unwrap_or_else(|| ctx.info.os_id.clone());
    let repair = efi::repair(files, efi_dir, &vendor, &l).map_err(|e| io_err(efi_dir, e))?;
    let (disk, guessed) = boot_device(ctx);
    let loader = match repair.loader.clone() {
        Some(loader) => {
            if !repair.edits.is_empty() {
                done.push(format!("ESP fallback \\EFI\\BOOT\\{}", l.fallback));
            }
            changes.extend(repair.changes);
            plan.edits.extend(repair.edits);
            loader
        }
        None if refuses_efi_install(ctx) => {
            return Err(FixupError::new(
                codes::BOOTLOADER_EFI_FILES_MISSING,
                format!(
                    "the ESP has no shim or GRUB image in {efi_dir}/{vendor}: reinstall \
                     shim-x64 and grub2-efi-x64 in the guest (grub2-install does not \
                     support UEFI here)"
                ),
            ));
        }
        None => {
            let install = format!("{prefix}-install");
            let target = format!("--target={}", l.grub_target);
            let esp_dir = format!("--efi-directory={esp_mount}");
            let id = format!("--bootloader-id={vendor}");
            plan.commands.push(PlannedCommand::new(
                &[install.as_str(), &target, &esp_dir, &id, "--no-nvram"],
                format!("install GRUB for UEFI in {efi_dir}/{vendor}"),
            ));
            plan.commands.push(PlannedCommand::new(
                &[
                    install.as_str(),
                    &target,
                    &esp_dir,
                    "--removable",
                    "--no-nvram",
                ],
                format!(
                    "install GRUB for UEFI at the fallback path \\EFI\\BOOT\\{}",
                    l.fallback
                ),
            ));
            done.push(format!(
                "{install} {} (no loader on the ESP)",
                l.grub_target
            ));
            let grub = l.grub.first().copied().unwrap_or("grubx64.efi");
            format!("\\EFI\\{vendor}\\{grub}")
        }
    };

    // grub.cfg: the ESP's own, or a stub loading /boot's.
    let esp_cfg = format!("{efi_dir}/{vendor}/grub.cfg");
    let mut cfg_out = None;
    if ctx.info.family != OsFamily::Debian && ctx.info.family != OsFamily::Suse {
        match read(files, &esp_cfg)? {
            Some(text) if grub2::is_stub_config(&text) => {
                let (new, ch) = grub2::repair_stub(&text, ctx.identity);
                if new != text {
                    plan.edits.push(Edit::write(&esp_cfg, new));
                }
                changes.extend(ch);
            }
            Some(_) => cfg_out = Some(esp_cfg.clone()),
            None if expects_esp_stub(ctx) => plan.warnings.push(Warning::new(
                codes::BOOTLOADER_GUESSED,
                format!("{esp_cfg} is missing: the UEFI GRUB may not find {boot_grub}/grub.cfg"),
            )),
            None => cfg_out = Some(esp_cfg.clone()),
        }
    } else if let Some(text) = read(files, &esp_cfg)? {
        if grub2::is_stub_config(&text) {
            let (new, ch) = grub2::repair_stub(&text, ctx.identity);
            if new != text {
                plan.edits.push(Edit::write(&esp_cfg, new));
            }
            changes.extend(ch);
        }
    }

    // The boot entry (NVRAM may not be writable from the stack: warn only).
    let (part, part_guessed) = esp_partition(ctx);
    warn_guessed_device(plan, &disk, guessed);
    if part_guessed {
        plan.warnings.push(Warning::new(
            codes::BOOTLOADER_GUESSED,
            format!("the ESP is taken to be partition {part} of the boot disk"),
        ));
    }
    let label = efi::entry_label(&ctx.info.os_id, &ctx.info.pretty_name, &vendor);
    let cmd = PlannedCommand::new(
        &efi::efibootmgr_argv(&disk, part, &label, &loader),
        format!("add the UEFI boot entry \"{label}\" for {loader}"),
    )
    .warn_only()
    .unless(Unless::EfiBootEntry {
        label: label.clone(),
        loader: loader.clone(),
    });
    Ok((cfg_out, (cmd, format!("efibootmgr {loader}"))))
}

/// `dir` joined with a relative link target, `..` resolved.
fn resolve_relative(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn plan_legacy(ctx: &PlanCtx, opts: &CmdlineOpts) -> Result<Plan, FixupError> {
    let files = ctx.files;
    let mut plan = Plan::default();
    let mut changes = Changes::default();
    let mut done = Vec::new();
    // The configuration: the first real file (menu.lst is often a link).
    let mut config_text = None;
    for path in legacy::CONFIGS {
        if files.read_link(path).is_some() {
            continue;
        }
        if let Some(text) = read(files, path)? {
            let (new, ch) = legacy::rewrite_config(&text, opts);
            if new != text {
                plan.edits.push(Edit::write(path, new));
                done.push(format!("{path} kernel lines"));
            }
            changes.extend(ch);
            if config_text.is_none() && !path.starts_with("/boot/efi") {
                config_text = Some(text);
            }
        }
    }

    match ctx.inputs.system.target.firmware {
        Firmware::Bios => {
            let (dev, guessed) = boot_device(ctx);
            warn_guessed_device(&mut plan, &dev, guessed);
            let old_map = read(files, legacy::DEVICE_MAP)?;
            let new_map = legacy::device_map(old_map.as_deref(), &dev);
            if old_map.as_deref() != Some(new_map.as_str()) {
                plan.edits.push(Edit::write(legacy::DEVICE_MAP, new_map));
                done.push(format!("device.map (hd0) {dev}"));
            }
            let root = config_text.as_deref().and_then(legacy::default_root);
            let root = root.unwrap_or_else(|| {
                plan.warnings.push(Warning::new(
                    codes::BOOTLOADER_GUESSED,
                    "no `root (hdN,M)` line in grub.conf: GRUB is set up with (hd0,0)",
                ));
                "(hd0,0)".to_string()
            });
            save_first_mib(ctx, &mut plan, &dev);
            let mut cmd = PlannedCommand::new(
                &legacy::install_argv(&root, &dev),
                format!("install GRUB legacy on {dev} (root {root})"),
            );
            if ctx.inputs.system.source.firmware == Firmware::Bios {
                cmd = cmd.warn_only();
            }
            plan.commands.push(cmd);
            done.push(format!("grub setup {dev}"));
        }
        Firmware::Efi => {
            let l = efi::loaders(&ctx.info.arch);
            let Some((_, efi_dir)) = efi::find_esp(files) else {
                return Err(FixupError::new(
                    codes::BOOTLOADER_NO_ESP,
                    "the target firmware is EFI but the guest has no EFI system partition \
                     (nothing at /boot/efi/EFI): give the target VM BIOS firmware",
                ));
            };
            let vendor = efi::find_vendor(files, efi_dir, &ctx.info.os_id, &l)
                .map_err(|e| io_err(efi_dir, e))?;
            let repair = match &vendor {
                Some(v) => efi::repair(files, efi_dir, v, &l).map_err(|e| io_err(efi_dir, e))?,
                None => efi::EspRepair::default(),
            };
            let Some(loader) = repair.loader.clone() else {
                return Err(FixupError::new(
                    codes::BOOTLOADER_EFI_FILES_MISSING,
                    format!("the ESP ({efi_dir}) has no GRUB image for the guest"),
                ));
            };
            changes.extend(repair.changes);
            plan.edits.extend(repair.edits);
            let (disk, guessed) = boot_device(ctx);
            warn_guessed_device(&mut plan, &disk, guessed);
            let (part, _) = esp_partition(ctx);
            let label = efi::entry_label(&ctx.info.os_id, &ctx.info.pretty_name, "");
            plan.commands.push(
                PlannedCommand::new(
                    &efi::efibootmgr_argv(&disk, part, &label, &loader),
                    format!("add the UEFI boot entry \"{label}\" for {loader}"),
                )
                .warn_only()
                .unless(Unless::EfiBootEntry {
                    label: label.clone(),
                    loader: loader.clone(),
                }),
            );
            done.push(format!("efibootmgr {loader}"));
        }
    }
    plan.summary = summary("grub-legacy", &changes, &done);
    Ok(plan)
}

/// A change that is not the command line's (listed on its own).
fn is_setting_change(c: &str) -> bool {
    c.starts_with("os-prober") || c.starts_with("ESP ") || c.starts_with("GRUB_FORCE_PARTUUID")
}

/// "grub2: cmdline root=/dev/sda1 -> root=UUID=…, net.ifnames=0 added;
/// grub2-install i386-pc /dev/sda; grub2-mkconfig -o …".
fn summary(what: &str, changes: &Changes, done: &[String]) -> String {
    let mut parts = Vec::new();
    let cmdline: Vec<&str> = changes
        .list
        .iter()
        .map(String::as_str)
        .filter(|c| !c.starts_with('/') && !is_setting_change(c))
        .collect();
    if !cmdline.is_empty() {
        parts.push(format!("cmdline {}", cmdline.join(", ")));
    }
    parts.extend(
        changes
            .list
            .iter()
            .filter(|c| is_setting_change(c))
            .cloned(),
    );
    parts.extend(done.iter().cloned());
    if parts.is_empty() {
        format!("{what}: unchanged")
    } else {
        format!("{what}: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests;
