//! Test guests built from the Debian archive, and the Tools ISO of stage 2.
//!
//! A guest is made from a [`Recipe`] (architecture, firmware, packages,
//! disks and file systems, files, NICs, initramfs and GRUB settings) by
//! [`guest_image`], which builds it once (as root: `mmdebstrap`, loop
//! devices, chroot `grub-install`) and caches it as
//! `${XDG_CACHE_HOME:-$HOME/.cache}/osam/guests/<name>-<hash>.qcow2`
//! (more disks as `<name>-<hash>.disk<N>.qcow2`), with
//! `<name>-<hash>.json` ([`GuestManifest`]), the guest's dpkg status and
//! the build log beside it. The hash ([`Recipe::hash`]) covers the whole
//! recipe — mirror included — and [`recipe::BUILDER_VERSION`]. A build
//! runs in a temporary folder and is renamed into place, the manifest
//! last: an interrupted build never leaves a cache entry, and the next
//! build removes what it left (its mounts and loop devices too).
//!
//! The reference guests ([`Recipe::debian12_bios`] and its variants) come
//! from KVM: disks on virtio-scsi, an initramfs without `vmw_pvscsi`. Each
//! runs a check service ([`check`]) that reports its state on ttyS0 at
//! the end of the boot. [`GuestImage::vm_config`] boots a guest on its
//! source hardware or on VMware's ([`Hardware`]).
//!
//! [`tools_iso::tools_iso`] makes the stage-2 Tools ISO for a guest.
//!
//! Guest (d), root on LVM, is built by [`lvm::lvm_guest_image`] (the
//! host has no device-mapper: the storage is made in a VM).

pub mod check;
mod cmd;
pub mod lvm;
pub mod manifest;
pub mod mirror;
pub mod recipe;
pub mod tools_iso;

mod build;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use check::{GuestCheck, wait_for_check};
pub use cmd::{BuildLog, FileLock};
pub use manifest::GuestManifest;
pub use recipe::{GuestArch, GuestFirmware, Recipe};

use crate::paths::cache_dir;
use crate::vm::{Disk, DiskBus, VmConfig};

/// `<cache>/guests`.
pub fn guests_dir() -> PathBuf {
    cache_dir().join("guests")
}

/// Memory of the guests' VMs (MiB).
pub const GUEST_MEMORY_MIB: u32 = 1024;

/// A built guest in the cache.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// What it is.
    pub manifest: GuestManifest,
    /// Its disks (qcow2), the boot disk first. Boot them with
    /// `snapshot=on` ([`GuestImage::vm_config`] does) or copy them: the
    /// cache entry must stay pristine.
    pub disks: Vec<PathBuf>,
    /// A copy of its `/var/lib/dpkg/status`.
    pub dpkg_status: PathBuf,
    /// Its build log.
    pub build_log: PathBuf,
}

/// The hardware a guest boots on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardware {
    /// Where it comes from (KVM): disks on virtio-scsi, virtio-net NICs.
    Source,
    /// VMware's: disks on pvscsi from scsi0:0 (BIOS), or on AHCI (UEFI:
    /// OVMF has no PVSCSI driver); VMXNET3 NICs.
    Vmware,
}

/// The cache entry's file names.
struct Entry {
    manifest: PathBuf,
    status: PathBuf,
    log: PathBuf,
    disks: Vec<PathBuf>,
}

impl Entry {
    fn new(dir: &Path, stem: &str, disks: usize) -> Self {
        Self {
            manifest: dir.join(format!("{stem}.json")),
            status: dir.join(format!("{stem}.dpkg-status")),
            log: dir.join(format!("{stem}.build.log")),
            disks: (0..disks)
                .map(|d| {
                    if d == 0 {
                        dir.join(format!("{stem}.qcow2"))
                    } else {
                        dir.join(format!("{stem}.disk{d}.qcow2"))
                    }
                })
                .collect(),
        }
    }

    /// The image when the entry is complete.
    fn load(&self) -> Result<Option<GuestImage>> {
        if !self.manifest.is_file()
            || !self.status.is_file()
            || !self.disks.iter().all(|d| d.is_file())
        {
            return Ok(None);
        }
        let text = fs::read_to_string(&self.manifest)
            .with_context(|| format!("reading {}", self.manifest.display()))?;
        let manifest: GuestManifest = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", self.manifest.display()))?;
        Ok(Some(GuestImage {
            manifest,
            disks: self.disks.clone(),
            dpkg_status: self.status.clone(),
            build_log: self.log.clone(),
        }))
    }
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as i32, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Unmounts what a build left below `work`, detaches its loop devices and
/// removes the folder — only when nothing is mounted below it any more
/// (a recursive removal must never walk into a bind mount of /dev).
fn remove_work(work: &Path) -> Result<()> {
    if !work.exists() {
        return Ok(());
    }
    let cleaned = build::Cleanup::new(work, None).run();
    let left = build::mounts_under(work);
    if !left.is_empty() {
        bail!(
            "{} still has mounts below it ({left:?}); not removing it{}",
            work.display(),
            cleaned
                .err()
                .map(|e| format!(": {e:#}"))
                .unwrap_or_default()
        );
    }
    fs::remove_dir_all(work).with_context(|| format!("removing {}", work.display()))
}

/// Removes the work folders of builds whose process is gone (after
/// unmounting what they left mounted and detaching their loop devices).
fn remove_stale_work(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".tmp-") else {
            continue;
        };
        let pid = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(alive) {
            continue;
        }
        let path = entry.path();
        remove_work(&path)
            .with_context(|| format!("cleaning up the stale build folder {}", path.display()))?;
    }
    Ok(())
}

/// The guest of `recipe`, from the cache or built (as root) and cached.
/// Two builds of one recipe never run at once (a lock file per recipe
/// name).
pub fn guest_image(recipe: &Recipe) -> Result<GuestImage> {
    recipe
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid recipe: {e}"))?;
    let dir = guests_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = recipe.stem();
    let entry = Entry::new(&dir, &stem, recipe.disks.len());
    if let Some(image) = entry.load()? {
        return Ok(image);
    }
    let _lock = FileLock::acquire(
        &dir.join(format!("{}.lock", recipe.name)),
        build::LOCK_TIMEOUT,
    )?;
    if let Some(image) = entry.load()? {
        return Ok(image);
    }
    remove_stale_work(&dir)?;
    let work = dir.join(format!(".tmp-{stem}-{}", std::process::id()));
    remove_work(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let log = BuildLog::new(work.join("build.log"))?;
    let built = build::build(recipe, &work, &log);
    let built = match built {
        Ok(b) => b,
        Err(e) => {
            // Keep the log of the failed build next to where the guest
            // would have been.
            let failed = dir.join(format!("{stem}.failed.log"));
            let _ = fs::copy(log.path(), &failed);
            if let Err(cleanup) = remove_work(&work) {
                log.note(&format!("{cleanup:#}"));
            }
            return Err(e.context(format!(
                "building the test guest {stem} (log kept in {})",
                failed.display()
            )));
        }
    };
    let manifest_tmp = work.join("manifest.json");
    fs::write(
        &manifest_tmp,
        serde_json::to_string_pretty(&built.manifest).context("serializing the manifest")?,
    )
    .with_context(|| format!("writing {}", manifest_tmp.display()))?;
    let mut moves: Vec<(PathBuf, PathBuf)> = built
        .disks
        .iter()
        .cloned()
        .zip(entry.disks.iter().cloned())
        .collect();
    moves.push((built.dpkg_status.clone(), entry.status.clone()));
    moves.push((log.path().to_path_buf(), entry.log.clone()));
    moves.push((manifest_tmp, entry.manifest.clone()));
    for (from, to) in moves {
        fs::rename(&from, &to)
            .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
    }
    let _ = fs::remove_file(dir.join(format!("{stem}.failed.log")));
    remove_work(&work)?;
    match entry.load()? {
        Some(image) => Ok(image),
        None => bail!("the cache entry {stem} is incomplete after the build"),
    }
}

impl GuestImage {
    /// The recipe.
    pub fn recipe(&self) -> &Recipe {
        &self.manifest.recipe
    }

    /// The boot disk.
    pub fn boot_disk(&self) -> &Path {
        &self.disks[0]
    }

    /// A VM for the guest on `hardware`: its firmware (`dir` holds a copy
    /// of an ia32 OVMF variable store where needed), its disks with
    /// `snapshot=on` in recipe order (SCSI target ids / SATA ports 0, 1,
    /// …), one NIC per recipe NIC with the recipe's MAC on QEMU user
    /// networking, 1 GiB of memory, the serial console in `serial_log`.
    pub fn vm_config(
        &self,
        hardware: Hardware,
        dir: &Path,
        serial_log: impl Into<PathBuf>,
    ) -> crate::error::Result<VmConfig> {
        let recipe = self.recipe();
        let firmware = recipe.firmware.vm_firmware(recipe.arch, dir)?;
        let uefi = recipe.firmware.is_uefi();
        let bus = match hardware {
            Hardware::Source => DiskBus::VirtioScsi { scsi_id: 0 },
            Hardware::Vmware if uefi => DiskBus::Ahci,
            Hardware::Vmware => DiskBus::Pvscsi { scsi_id: 0 },
        };
        let mut args: Vec<OsString> = Vec::new();
        for (i, disk) in self.disks.iter().enumerate().skip(1) {
            let id = format!("guestdisk{i}");
            args.push("-drive".into());
            args.push(
                format!(
                    "if=none,id={id},file={},format=qcow2,snapshot=on",
                    disk.to_string_lossy().replace(',', ",,")
                )
                .into(),
            );
            args.push("-device".into());
            args.push(
                match bus {
                    DiskBus::VirtioScsi { .. } => {
                        format!("scsi-hd,bus=virtioscsi0.0,scsi-id={i},drive={id}")
                    }
                    DiskBus::Pvscsi { .. } => {
                        format!("scsi-hd,bus=pvscsi0.0,scsi-id={i},drive={id}")
                    }
                    DiskBus::Ahci => format!("ide-hd,bus=sata0.{i},drive={id}"),
                }
                .into(),
            );
        }
        let model = match hardware {
            Hardware::Source => "virtio-net-pci",
            Hardware::Vmware => "vmxnet3",
        };
        for (i, nic) in recipe.nics.iter().enumerate() {
            args.push("-netdev".into());
            args.push(format!("user,id=guestnet{i}").into());
            args.push("-device".into());
            args.push(format!("{model},netdev=guestnet{i},mac={}", nic.mac).into());
        }
        if recipe.nics.is_empty() {
            args.push("-nic".into());
            args.push("none".into());
        }
        Ok(VmConfig::disk(
            recipe.arch.machine(),
            Disk::new(self.boot_disk(), bus),
            firmware,
            serial_log,
        )
        .memory(GUEST_MEMORY_MIB)
        .args(args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_and_vm_configs() {
        let recipe = Recipe::debian12_bios(GuestArch::Amd64, "http://deb.debian.org/debian")
            .with_data_disk();
        let e = Entry::new(Path::new("/c"), &recipe.stem(), 2);
        assert_eq!(
            e.disks[0],
            Path::new(&format!("/c/{}.qcow2", recipe.stem()))
        );
        assert_eq!(
            e.disks[1],
            Path::new(&format!("/c/{}.disk1.qcow2", recipe.stem()))
        );
        let image = GuestImage {
            manifest: GuestManifest {
                builder_version: recipe::BUILDER_VERSION,
                name: recipe.name.clone(),
                hash: recipe.hash(),
                recipe,
                kernels: vec![],
                packages: vec![],
                initramfs_modules: Default::default(),
                grub_cmdline: vec![],
                partitions: vec![],
                timings: Default::default(),
            },
            disks: e.disks.clone(),
            dpkg_status: e.status,
            build_log: e.log,
        };
        let joined = |hw| {
            image
                .vm_config(hw, Path::new("/t"), "/t/s.log")
                .unwrap()
                .qemu_args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let source = joined(Hardware::Source);
        assert!(
            source.contains("-device virtio-scsi-pci,id=virtioscsi0"),
            "{source}"
        );
        assert!(source.contains("scsi-hd,bus=virtioscsi0.0,scsi-id=1,drive=guestdisk1"));
        assert!(source.contains("virtio-net-pci,netdev=guestnet1,mac=52:54:00:4f:53:02"));
        assert!(source.contains("-m 1024"));
        let vmware = joined(Hardware::Vmware);
        assert!(
            vmware.contains("scsi-hd,bus=pvscsi0.0,scsi-id=0,drive=osamdisk"),
            "{vmware}"
        );
        assert!(vmware.contains("scsi-hd,bus=pvscsi0.0,scsi-id=1,drive=guestdisk1"));
        assert!(vmware.contains("vmxnet3,netdev=guestnet0,mac=52:54:00:4f:53:01"));
        assert!(!vmware.contains("kvm"));
    }
}
