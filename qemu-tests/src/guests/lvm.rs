//! Guest (d): Debian 12 with its root on LVM and a separate `/boot`.
//!
//! The host's kernel has no device-mapper, so the guest cannot be made
//! with loop devices like the others ([`super::guest_image`]). The build
//! runs in two places:
//!
//! 1. on the host (root): `mmdebstrap` makes the Debian tree in a plain
//!    folder with the same options as the other guests (the recipe's
//!    packages, `lvm2` among them, and its initramfs configuration staged
//!    before any package is installed); the tree is configured (fstab,
//!    host name, `/etc/network/interfaces`, GRUB defaults, the check
//!    service, root's password) and packed as a tar archive on a raw
//!    helper disk; the blank boot disk is partitioned with `sfdisk`;
//! 2. in a VM that runs the fixup stack's own kernel and initramfs in
//!    rescue mode (as [`crate::storage_guests`] does): a script creates
//!    the PV (with a UUID derived from the recipe hash), the VG and the LVs
//!    (udev synchronisation off), the ext4 file systems (UUIDs derived from
//!    the recipe hash) and the swap, mounts them, unpacks the tree, binds
//!    `/dev`, `/proc` and `/sys` into it and runs the guest's own
//!    `update-initramfs -u -k all`, `grub-install` and `update-grub` in a
//!    chroot, writes a report (GRUB's configuration, the initramfs
//!    contents, the PV and LVs, each step's time) to a third raw disk,
//!    unmounts, deactivates the VG and powers off.
//!
//! The boot disk is then converted to a compressed qcow2 and cached like
//! the other guests, in [`super::guests_dir`] as `<name>-<hash>.qcow2`
//! with `<name>-<hash>.json` (a [`GuestManifest`] whose recipe describes
//! the partitions: `/boot` on partition 1, the PV on partition 2),
//! `<name>-<hash>.lvm.json` ([`LvmDetails`]: the LVM layout, UUIDs, the
//! steps' times), the dpkg status, the build log and the build VM's
//! serial log. The hash ([`LvmRecipe::hash`]) covers the whole recipe,
//! [`LVM_BUILDER_VERSION`] and the other guests' builder version; not the
//! stack that ran the build (any stack with dm and the LVM tools makes
//! the same disk).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::build::{
    self, derived, grub_defaults, guid, ids, in_root, installed_packages, interfaces_text, secs,
    sfdisk_script, staging_files, write_file,
};
use super::cmd::{BuildLog, FileLock, have_program};
use super::manifest::{BuildTimings, BuiltPartition, GuestManifest};
use super::recipe::{
    BUILDER_VERSION, DeviceRef, DiskSpec, FileContent, FsKind, FsSpec, GuestArch, GuestFirmware,
    MountSpec, PartitionKind, PartitionSpec, PartitionTable, Recipe, ext4, hex,
    kernel_partition_name,
};
use super::{GuestImage, guests_dir};
use crate::Arch;
use crate::image::stack_image;
use crate::paths::tail_lines;
use crate::storage_guests::rescue::{ScsiDisk, payload, run_rescue_script, stack_boot};

/// The version of this builder: bump it whenever it changes what it makes
/// from a recipe (part of every [`LvmRecipe::hash`]).
pub const LVM_BUILDER_VERSION: u32 = 2;

/// The SCSI target id of the tree archive in the build VM.
pub const TREE_SCSI_ID: u8 = 13;
/// The SCSI target id of the report disk in the build VM.
pub const REPORT_SCSI_ID: u8 = 12;
/// The report disk's size.
const REPORT_MIB: u64 = 4;
/// mmdebstrap (download and install).
const MMDEBSTRAP_TIMEOUT: Duration = Duration::from_secs(1800);
/// tar, sfdisk, chpasswd.
const QUICK_TIMEOUT: Duration = Duration::from_secs(300);
/// From the typed line to the script's last line: unpacking the tree,
/// `update-initramfs` (1-8 minutes under TCG) and GRUB.
pub const VM_TIMEOUT: Duration = Duration::from_secs(3600);
/// qemu-img convert.
const CONVERT_TIMEOUT: Duration = Duration::from_secs(1200);
/// Where the script mounts the guest in the build VM.
const GUEST_MOUNT: &str = "/mnt/osam-guest";

/// What an LV holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LvContent {
    /// A file system (ext4); its mounts name the device as fstab does
    /// (for `/`: also `root=`).
    Fs(FsSpec),
    /// Swap, named in fstab as `/dev/mapper/<vg>-<lv>`.
    Swap,
}

/// A logical volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvSpec {
    /// Its name (`[a-z0-9_]`).
    pub name: String,
    /// Its size.
    pub size_mib: u64,
    /// What it holds.
    pub content: LvContent,
}

/// The volume group: one PV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgSpec {
    /// Its name (`[a-z0-9_]`).
    pub name: String,
    /// The PV: (disk, partition), 0-based; a [`PartitionKind::LinuxLvm`]
    /// partition without a file system.
    pub pv: (usize, usize),
    /// The LVs, created in this order.
    pub lvs: Vec<LvSpec>,
}

/// A guest with its root on LVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvmRecipe {
    /// Everything but the LVM layout: architecture, packages (with
    /// `lvm2`), the disk's partition table with the file systems on
    /// partitions (`/boot`) and the PV's partition, files, NICs,
    /// initramfs, GRUB, host name, password. It has no `/` of its own.
    pub base: Recipe,
    /// The volume group, its LVs and their file systems.
    pub vg: VgSpec,
}

/// An LV as built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltLv {
    /// Its name.
    pub name: String,
    /// `/dev/mapper/<vg>-<lv>`.
    pub mapper: String,
    /// `ext4` or `swap`.
    pub fs: String,
    /// The file system's UUID (ext4).
    pub fs_uuid: Option<String>,
    /// Its label.
    pub label: Option<String>,
    /// Where the guest mounts it.
    pub mountpoint: Option<String>,
}

/// How long the build's parts took, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LvmTimings {
    /// mmdebstrap on the host.
    pub mmdebstrap_s: f64,
    /// Configuring the tree on the host.
    pub configure_s: f64,
    /// Packing the tree, making the blank disks.
    pub pack_s: f64,
    /// The stack image (built or found).
    pub stack_s: f64,
    /// The build VM, from QEMU's start to its exit.
    pub vm_s: f64,
    /// qemu-img convert.
    pub convert_s: f64,
    /// The whole build.
    pub total_s: f64,
    /// Each step of the VM's script, in order (seconds, command).
    pub vm_steps: Vec<(u64, String)>,
}

/// What [`lvm_guest_image`] records beside the [`GuestManifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LvmDetails {
    /// [`LVM_BUILDER_VERSION`] of the build.
    pub lvm_builder_version: u32,
    /// [`LvmRecipe::hash`].
    pub hash: String,
    /// The recipe.
    pub recipe: LvmRecipe,
    /// The PV's device on the source (`/dev/sda2`).
    pub pv_device: String,
    /// The PV's UUID (as `pvs` and blkid show it).
    pub pv_uuid: String,
    /// The LVs.
    pub lvs: Vec<BuiltLv>,
    /// The root LV's device (`/dev/mapper/vg0-root`), as GRUB's `root=`
    /// names it.
    pub root_device: String,
    /// The stack image that ran the build.
    pub stack: PathBuf,
    /// How long it took.
    pub timings: LvmTimings,
}

/// A built LVM guest in the cache.
#[derive(Debug, Clone)]
pub struct LvmGuest {
    /// The guest as the other guests are (its recipe describes the
    /// partitions; `image.vm_config`, the Tools ISO and the manager
    /// emulator's blueprint take it as it is).
    pub image: GuestImage,
    /// The LVM layout and the build's details.
    pub details: LvmDetails,
    /// The build VM's serial log.
    pub build_serial_log: PathBuf,
}

impl LvmRecipe {
    /// Guest (d): Debian 12 amd64, BIOS, one 3 GiB disk with an MBR:
    /// partition 1 (300 MiB, bootable) ext4 `/boot` named `/dev/sda1` in
    /// fstab, partition 2 (type 8e) the PV of VG `vg0` with LVs `root`
    /// (2 GiB ext4 `/`, `/dev/mapper/vg0-root` in fstab and `root=`) and
    /// `swap` (256 MiB); `lvm2` installed, so the initramfs has its hook;
    /// otherwise guest (a): `ens192`/`ens224`, a `MODULES=list` gzip
    /// initramfs without `vmw_pvscsi`, the serial console, the check
    /// service.
    pub fn debian12_bios_lvm(arch: GuestArch, mirror: &str) -> LvmRecipe {
        let mut base = Recipe::debian12_bios(arch, mirror);
        base.name = format!("deb12-bios-lvm-{}", arch.debian_arch());
        base.packages.push("lvm2".into());
        base.hostname = "osam-deb12-lvm".into();
        base.disks = vec![DiskSpec {
            size_mib: 3072,
            table: PartitionTable::Msdos,
            partitions: vec![
                PartitionSpec {
                    size_mib: Some(300),
                    kind: PartitionKind::Linux,
                    bootable: true,
                    fs: Some(ext4(
                        "/boot",
                        DeviceRef::Path("/dev/sda1".into()),
                        Some("boot"),
                    )),
                },
                PartitionSpec {
                    size_mib: None,
                    kind: PartitionKind::LinuxLvm,
                    bootable: false,
                    fs: None,
                },
            ],
        }];
        LvmRecipe {
            base,
            vg: VgSpec {
                name: "vg0".into(),
                pv: (0, 1),
                lvs: vec![
                    LvSpec {
                        name: "root".into(),
                        size_mib: 2048,
                        content: LvContent::Fs(ext4(
                            "/",
                            DeviceRef::Path("/dev/mapper/vg0-root".into()),
                            Some("root"),
                        )),
                    },
                    LvSpec {
                        name: "swap".into(),
                        size_mib: 256,
                        content: LvContent::Swap,
                    },
                ],
            },
        }
    }

    /// The cache key: sha256 over both builder versions and the whole
    /// recipe (its JSON form), first 16 hex digits.
    pub fn hash(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"osam-lvm-guest-builder\0");
        hash.update(LVM_BUILDER_VERSION.to_le_bytes());
        hash.update(BUILDER_VERSION.to_le_bytes());
        // Serializing plain data with string keys cannot fail.
        hash.update(serde_json::to_vec(self).unwrap_or_default());
        hex(&hash.finalize()[..8])
    }

    /// The cache file stem: `<name>-<hash>`.
    pub fn stem(&self) -> String {
        format!("{}-{}", self.base.name, self.hash())
    }

    /// `/dev/mapper/<vg>-<lv>`.
    pub fn mapper(&self, lv: &str) -> String {
        format!("/dev/mapper/{}-{lv}", self.vg.name)
    }

    /// The LV mounted at `/`: the LV, its file system and the mount.
    pub fn root_lv(&self) -> Option<(&LvSpec, &FsSpec, &MountSpec)> {
        self.vg.lvs.iter().find_map(|lv| match &lv.content {
            LvContent::Fs(fs) => fs
                .mounts
                .iter()
                .find(|m| m.mountpoint == "/")
                .map(|m| (lv, fs, m)),
            LvContent::Swap => None,
        })
    }

    /// The size of the PV's partition.
    fn pv_partition_mib(&self) -> Option<u64> {
        let (d, p) = self.vg.pv;
        let disk = self.base.disks.get(d)?;
        let part = disk.partitions.get(p)?;
        part.size_mib.or_else(|| {
            let others: u64 = disk.partitions.iter().filter_map(|q| q.size_mib).sum();
            disk.size_mib.checked_sub(1 + others)
        })
    }

    /// Checks what the builder relies on; says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let b = &self.base;
        let name = &b.name;
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        };
        if b.arch != GuestArch::Amd64 || b.firmware != GuestFirmware::Bios {
            return Err(format!(
                "{name}: the LVM builder makes amd64 BIOS guests (the x86_64 stack runs \
                 their grub-install)"
            ));
        }
        if b.disks.len() != 1 || b.disks[0].table != PartitionTable::Msdos {
            return Err(format!(
                "{name}: the LVM builder makes one disk with an MBR"
            ));
        }
        if b.root().is_some() {
            return Err(format!("{name}: / is on a partition, not on an LV"));
        }
        if !plain(&self.vg.name) || !self.vg.lvs.iter().all(|lv| plain(&lv.name)) {
            return Err(format!(
                "{name}: VG and LV names are [a-z0-9_]+ (a '-' doubles in /dev/mapper)"
            ));
        }
        let (d, p) = self.vg.pv;
        match b.disks.get(d).and_then(|disk| disk.partitions.get(p)) {
            Some(part) if part.kind == PartitionKind::LinuxLvm && part.fs.is_none() => {}
            _ => {
                return Err(format!(
                    "{name}: the PV ({d}, {p}) is not a linux-lvm partition without a file system"
                ));
            }
        }
        if self.root_lv().is_none() {
            return Err(format!("{name}: no LV is mounted at /"));
        }
        for lv in &self.vg.lvs {
            if let LvContent::Fs(fs) = &lv.content {
                if fs.kind != FsKind::Ext4 || !fs.subvolumes.is_empty() {
                    return Err(format!("{name}: LV {} is not plain ext4", lv.name));
                }
                if fs.mounts.iter().any(|m| m.source == DeviceRef::Label) && fs.label.is_none() {
                    return Err(format!(
                        "{name}: LV {} is named by a missing label",
                        lv.name
                    ));
                }
            }
        }
        for part in &b.disks[0].partitions {
            if part.fs.as_ref().is_some_and(|fs| fs.kind != FsKind::Ext4) {
                return Err(format!("{name}: the builder makes ext4 file systems only"));
            }
        }
        let lvs: u64 = self.vg.lvs.iter().map(|lv| lv.size_mib).sum();
        match self.pv_partition_mib() {
            // LVM's metadata area and the first extent's alignment.
            Some(pv) if lvs + 8 <= pv => {}
            pv => {
                return Err(format!(
                    "{name}: the LVs ({lvs} MiB) do not fit the PV ({pv:?} MiB)"
                ));
            }
        }
        Ok(())
    }

    /// The PV's UUID: 32 characters of LVM's alphabet derived from the
    /// recipe hash, in LVM's 6-4-4-4-4-4-6 grouping.
    pub fn pv_uuid(&self, hash: &str) -> String {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let (d, p) = self.vg.pv;
        let digest = Sha256::digest(format!("{hash}/pv/{d}/{p}").as_bytes());
        let chars: Vec<char> = digest
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect();
        let mut out = String::new();
        let mut at = 0;
        for (i, len) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
            if i > 0 {
                out.push('-');
            }
            out.extend(&chars[at..at + len]);
            at += len;
        }
        out
    }

    /// The ext4 UUID of an LV's file system.
    fn lv_fs_uuid(&self, hash: &str, lv: &str) -> String {
        guid(derived(hash, &format!("lv/{}/{lv}", self.vg.name)))
    }

    /// The LVs as they will be built.
    fn built_lvs(&self, hash: &str) -> Vec<BuiltLv> {
        self.vg
            .lvs
            .iter()
            .map(|lv| match &lv.content {
                LvContent::Fs(fs) => BuiltLv {
                    name: lv.name.clone(),
                    mapper: self.mapper(&lv.name),
                    fs: fs.kind.name().to_owned(),
                    fs_uuid: Some(self.lv_fs_uuid(hash, &lv.name)),
                    label: fs.label.clone(),
                    mountpoint: fs.mounts.first().map(|m| m.mountpoint.clone()),
                },
                LvContent::Swap => BuiltLv {
                    name: lv.name.clone(),
                    mapper: self.mapper(&lv.name),
                    fs: "swap".into(),
                    fs_uuid: None,
                    label: Some(lv.name.clone()),
                    mountpoint: None,
                },
            })
            .collect()
    }
}

/// Every file system mount of the guest, parents first: (the device in
/// the build script, where `$D` is the disk, the device as fstab names
/// it, the file system, the mount).
fn all_mounts<'a>(
    recipe: &'a LvmRecipe,
    hash: &str,
) -> Vec<(String, String, &'a FsSpec, &'a MountSpec)> {
    let mut out = Vec::new();
    for lv in &recipe.vg.lvs {
        if let LvContent::Fs(fs) = &lv.content {
            let uuid = recipe.lv_fs_uuid(hash, &lv.name);
            for m in &fs.mounts {
                let named = match &m.source {
                    DeviceRef::Path(p) => p.clone(),
                    DeviceRef::Uuid => format!("UUID={uuid}"),
                    DeviceRef::Label => format!("LABEL={}", fs.label.as_deref().unwrap_or("")),
                };
                out.push((recipe.mapper(&lv.name), named, fs, m));
            }
        }
    }
    for (d, p, fs, m) in recipe.base.mounts() {
        let id = ids(hash, d, p, Some(fs.kind));
        let named = match &m.source {
            DeviceRef::Path(path) => path.clone(),
            DeviceRef::Uuid => format!("UUID={}", id.fs_uuid),
            DeviceRef::Label => format!("LABEL={}", fs.label.as_deref().unwrap_or("")),
        };
        out.push((format!("${{D}}{}", p + 1), named, fs, m));
    }
    out.sort_by_key(|(_, _, _, m)| {
        if m.mountpoint == "/" {
            0
        } else {
            m.mountpoint.matches('/').count()
        }
    });
    out
}

/// `/etc/fstab`: `/` and the other file systems as the recipe names
/// them, parents first, then the swap LVs by their `/dev/mapper` name.
pub fn fstab_text(recipe: &LvmRecipe, hash: &str) -> String {
    let mut s = String::from(
        "# /etc/fstab: static file system information.\n\
         #\n\
         # <file system> <mount point>   <type>  <options>       <dump>  <pass>\n",
    );
    for (_, named, fs, m) in all_mounts(recipe, hash) {
        let _ = writeln!(
            s,
            "{named} {} {} {} 0 {}",
            m.mountpoint,
            fs.kind.name(),
            m.options,
            m.pass
        );
    }
    for lv in &recipe.vg.lvs {
        if lv.content == LvContent::Swap {
            let _ = writeln!(s, "{} none swap sw 0 0", recipe.mapper(&lv.name));
        }
    }
    s
}

/// The script run in the stack's rescue shell (see the module
/// documentation). Every step prints `@@osam step:` and appends its time
/// to the report; a failed step prints `@@osam FAILED:` and `OSAM-RESULT:
/// failed`; the last lines are `OSAM-RESULT: ok` and a power-off.
pub fn build_script(recipe: &LvmRecipe, hash: &str) -> String {
    let g = GUEST_MOUNT;
    let vg = &recipe.vg;
    // One disk ([`LvmRecipe::validate`]): the PV is on `$D`.
    let pv = format!("${{D}}{}", vg.pv.1 + 1);
    let mut s = format!(
        r#"#!/bin/sh
# Written by osam_qemu::guests::lvm; run in the fixup stack's rescue shell.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LVMCONF='devices {{ obtain_device_list_from_udev = 0 use_devicesfile = 0 }} activation {{ udev_sync = 0 udev_rules = 0 monitoring = 0 }}'
G={g}
: > /tmp/osam-times
fail() {{ echo "@@osam FAILED: $*"; echo "OSAM-RESULT: failed"; exit 1; }}
step() {{
    echo "@@osam step: $*"
    t0=$(date +%s); "$@"; rc=$?; t=$(( $(date +%s) - t0 ))
    echo "$t $*" >> /tmp/osam-times
    [ $rc -eq 0 ] || fail "rc=$rc after $t s: $*"
}}
disk() {{
    i=0
    while [ $i -lt 120 ]; do
        d=$(ls /sys/bus/scsi/devices/*:0:$1:0/block 2>/dev/null)
        [ -n "$d" ] && {{ echo "/dev/$d"; return 0; }}
        sleep 0.5; i=$((i + 1))
    done
    return 1
}}
lvmc() {{ c=$1; shift; lvm "$c" --config "$LVMCONF" "$@"; }}
in_guest() {{
    chroot $G /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}}
for m in $(awk '$2 ~ "^/sysroot" {{ print $2 }}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
done
lvmc vgchange -an >/dev/null 2>&1
D=$(disk 0) || fail "no target disk at scsi0:0"
T=$(disk {TREE_SCSI_ID}) || fail "no tree archive at scsi0:{TREE_SCSI_ID}"
O=$(disk {REPORT_SCSI_ID}) || fail "no report disk at scsi0:{REPORT_SCSI_ID}"
for b in $D $D[0-9]* $O; do [ -b "$b" ] && blockdev --setrw "$b"; done
echo "@@osam step: target $D, tree $T, report $O"
step lvmc pvcreate -ff -y --norestorefile --uuid {pv_uuid} {pv}
step lvmc vgcreate {vg_name} {pv}
"#,
        pv_uuid = recipe.pv_uuid(hash),
        vg_name = vg.name,
    );
    for lv in &vg.lvs {
        let _ = writeln!(
            s,
            "step lvmc lvcreate -y -Wy -Zy -n {} -L {}m {} {pv}",
            lv.name, lv.size_mib, vg.name
        );
        let dev = recipe.mapper(&lv.name);
        match &lv.content {
            LvContent::Fs(fs) => {
                let label = fs
                    .label
                    .as_ref()
                    .map(|l| format!(" -L {l}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "step mkfs.ext4 -q -F -U {}{label} {dev}",
                    recipe.lv_fs_uuid(hash, &lv.name)
                );
            }
            LvContent::Swap => {
                let _ = writeln!(s, "step busybox mkswap -L {} {dev}", lv.name);
            }
        }
    }
    for (p, part) in recipe.base.disks[0].partitions.iter().enumerate() {
        if let Some(fs) = &part.fs {
            let label = fs
                .label
                .as_ref()
                .map(|l| format!(" -L {l}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "step mkfs.ext4 -q -F -U {}{label} ${{D}}{}",
                ids(hash, 0, p, Some(fs.kind)).fs_uuid,
                p + 1
            );
        }
    }
    let mounts = all_mounts(recipe, hash);
    for (dev, _, fs, m) in &mounts {
        let at = format!(
            "$G{}",
            if m.mountpoint == "/" {
                ""
            } else {
                &m.mountpoint
            }
        );
        let _ = writeln!(
            s,
            "step mkdir -p {at}\nstep mount -t {} {dev} {at}",
            fs.kind.name()
        );
    }
    s.push_str(
        r#"step tar -xf $T -C $G
step mount -o bind /dev $G/dev
step mount -t proc proc $G/proc
step mount -t sysfs sysfs $G/sys
step in_guest update-initramfs -u -k all
step in_guest grub-install --target=i386-pc $D
# GRUB's BIOS hints name the disk as the guest's firmware will see it
# (hd0), not as the Nth disk of this VM; Debian keeps no device.map.
step sh -c "echo '(hd0) $D' > $G/boot/grub/device.map"
step in_guest update-grub
step rm $G/boot/grub/device.map
report() {
    echo "=== grub.cfg"
    cat $G/boot/grub/grub.cfg
    for k in $(ls $G/lib/modules); do
        echo "=== initramfs $k"
        in_guest lsinitramfs /boot/initrd.img-$k | sed -n '/\.ko/{s|.*/||;s|\.ko.*||;p}' | sort -u
    done
    echo "=== pvs"
    lvmc pvs --noheadings -o pv_name,pv_uuid,vg_name
    echo "=== lvs"
    lvmc lvs --noheadings --units m -o lv_name,lv_size,lv_path
    echo "=== fstab"
    cat $G/etc/fstab
}
report > /tmp/osam-report.txt 2>&1 || fail "writing the report"
step umount $G/sys
step umount $G/proc
step umount $G/dev
"#,
    );
    for (_, _, _, m) in mounts.iter().rev() {
        let _ = writeln!(
            s,
            "step umount $G{}",
            if m.mountpoint == "/" {
                ""
            } else {
                &m.mountpoint
            }
        );
    }
    let _ = writeln!(s, "step lvmc vgchange -an {}", vg.name);
    s.push_str(
        r#"{ cat /tmp/osam-report.txt; echo "=== times"; cat /tmp/osam-times; echo "=== end"; } > /tmp/osam-report-all.txt
step sh -c "cat /tmp/osam-report-all.txt > $O"
step sync
echo "OSAM-RESULT: ok"
sync
poweroff -f
"#,
    );
    s
}

/// The build VM's report: `=== <section>` headers, each followed by its
/// lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// The sections in order: (header, lines).
    pub sections: Vec<(String, Vec<String>)>,
}

impl BuildReport {
    /// Parses the report (the report disk's bytes up to the first NUL).
    pub fn parse(text: &str) -> BuildReport {
        let mut r = BuildReport::default();
        for line in text.lines() {
            if let Some(header) = line.strip_prefix("=== ") {
                r.sections.push((header.trim().to_owned(), Vec::new()));
            } else if let Some((_, lines)) = r.sections.last_mut() {
                lines.push(line.to_owned());
            }
        }
        r
    }

    /// A section's lines.
    pub fn section(&self, header: &str) -> Option<&[String]> {
        self.sections
            .iter()
            .find(|(h, _)| h == header)
            .map(|(_, l)| l.as_slice())
    }

    /// Whether the report is complete (its last section is `end`).
    pub fn complete(&self) -> bool {
        self.sections.last().is_some_and(|(h, _)| h == "end")
    }

    /// The kernel command line of GRUB's first `linux` line with a
    /// `root=` (the words after the kernel's path).
    pub fn grub_cmdline(&self) -> Vec<String> {
        self.section("grub.cfg")
            .unwrap_or_default()
            .iter()
            .map(|l| l.trim())
            .find(|l| l.starts_with("linux") && l.contains("root="))
            .map(|l| l.split_whitespace().skip(2).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The initramfs modules of each kernel (`-` as `_`, sorted).
    pub fn initramfs_modules(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out = std::collections::BTreeMap::new();
        for (header, lines) in &self.sections {
            if let Some(kernel) = header.strip_prefix("initramfs ") {
                let mut mods: Vec<String> = lines
                    .iter()
                    .map(|l| l.trim().replace('-', "_"))
                    .filter(|l| !l.is_empty())
                    .collect();
                mods.sort();
                mods.dedup();
                out.insert(kernel.to_owned(), mods);
            }
        }
        out
    }

    /// The steps' times: (seconds, command).
    pub fn times(&self) -> Vec<(u64, String)> {
        self.section("times")
            .unwrap_or_default()
            .iter()
            .filter_map(|l| {
                let (t, cmd) = l.split_once(' ')?;
                Some((t.parse().ok()?, cmd.to_owned()))
            })
            .collect()
    }
}

/// The cache entry's files.
struct Files {
    disk: PathBuf,
    manifest: PathBuf,
    details: PathBuf,
    status: PathBuf,
    log: PathBuf,
    serial: PathBuf,
}

impl Files {
    fn new(dir: &Path, stem: &str) -> Files {
        Files {
            disk: dir.join(format!("{stem}.qcow2")),
            manifest: dir.join(format!("{stem}.json")),
            details: dir.join(format!("{stem}.lvm.json")),
            status: dir.join(format!("{stem}.dpkg-status")),
            log: dir.join(format!("{stem}.build.log")),
            serial: dir.join(format!("{stem}.build-serial.log")),
        }
    }

    /// The guest when the entry is complete (the manifest comes last).
    fn load(&self) -> Result<Option<LvmGuest>> {
        if ![&self.manifest, &self.details, &self.status, &self.disk]
            .iter()
            .all(|p| p.is_file())
        {
            return Ok(None);
        }
        let read = |path: &Path| {
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        let manifest: GuestManifest = serde_json::from_str(&read(&self.manifest)?)
            .with_context(|| format!("parsing {}", self.manifest.display()))?;
        let details: LvmDetails = serde_json::from_str(&read(&self.details)?)
            .with_context(|| format!("parsing {}", self.details.display()))?;
        Ok(Some(LvmGuest {
            image: GuestImage {
                manifest,
                disks: vec![self.disk.clone()],
                dpkg_status: self.status.clone(),
                build_log: self.log.clone(),
            },
            details,
            build_serial_log: self.serial.clone(),
        }))
    }
}

/// The guest of `recipe`, from the cache or built and cached: as root,
/// with `mmdebstrap` and the Debian archive on the host and the x86_64
/// stack image (built if needed) for the VM. Two builds of one recipe
/// name never run at once (a lock file).
pub fn lvm_guest_image(recipe: &LvmRecipe) -> Result<LvmGuest> {
    recipe
        .validate()
        .map_err(|e| anyhow!("invalid LVM recipe: {e}"))?;
    let dir = guests_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = recipe.stem();
    let files = Files::new(&dir, &stem);
    if let Some(guest) = files.load()? {
        return Ok(guest);
    }
    let _lock = FileLock::acquire(
        &dir.join(format!("{}.lock", recipe.base.name)),
        build::LOCK_TIMEOUT,
    )?;
    if let Some(guest) = files.load()? {
        return Ok(guest);
    }
    super::remove_stale_work(&dir)?;
    let work = dir.join(format!(".tmp-{stem}-{}", std::process::id()));
    super::remove_work(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let log = BuildLog::new(work.join("build.log"))?;
    let (built, details) = match build_lvm(recipe, &work, &log) {
        Ok(b) => b,
        Err(e) => {
            let failed = dir.join(format!("{stem}.failed.log"));
            let failed_serial = dir.join(format!("{stem}.failed-serial.log"));
            let _ = fs::copy(log.path(), &failed);
            let _ = fs::copy(work.join("build-lvm-serial.log"), &failed_serial);
            if let Err(cleanup) = super::remove_work(&work) {
                log.note(&format!("{cleanup:#}"));
            }
            return Err(e.context(format!(
                "building the LVM test guest {stem} (logs kept in {} and {})",
                failed.display(),
                failed_serial.display()
            )));
        }
    };
    let write_json = |name: &str, text: String| -> Result<PathBuf> {
        let path = work.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let details_tmp = write_json(
        "lvm.json",
        serde_json::to_string_pretty(&details).context("serializing the LVM details")?,
    )?;
    let manifest_tmp = write_json(
        "manifest.json",
        serde_json::to_string_pretty(&built.manifest).context("serializing the manifest")?,
    )?;
    for (from, to) in [
        (built.disk, files.disk.clone()),
        (built.dpkg_status, files.status.clone()),
        (work.join("build-lvm-serial.log"), files.serial.clone()),
        (log.path().to_path_buf(), files.log.clone()),
        (details_tmp, files.details.clone()),
        (manifest_tmp, files.manifest.clone()),
    ] {
        fs::rename(&from, &to)
            .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
    }
    for stale in ["failed.log", "failed-serial.log"] {
        let _ = fs::remove_file(dir.join(format!("{stem}.{stale}")));
    }
    super::remove_work(&work)?;
    files
        .load()?
        .with_context(|| format!("the cache entry {stem} is incomplete after the build"))
}

/// What [`build_lvm`] made in the work folder.
struct Built {
    disk: PathBuf,
    dpkg_status: PathBuf,
    manifest: GuestManifest,
}

fn preflight(recipe: &LvmRecipe, work: &Path) -> Result<()> {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "building the test guest {} needs root (mmdebstrap --mode=root, chroot)",
            recipe.base.name
        );
    }
    let missing: Vec<String> = [
        ("mmdebstrap", "mmdebstrap"),
        ("arch-test", "arch-test"),
        ("sfdisk", "fdisk"),
        ("tar", "tar"),
        ("qemu-img", "qemu-utils"),
        ("chroot", "coreutils"),
    ]
    .iter()
    .filter(|(p, _)| !have_program(p))
    .map(|(p, pkg)| format!("{p} ({pkg})"))
    .collect();
    if !missing.is_empty() {
        bail!(
            "building the test guest {} needs {}: run scripts/install-deps.sh",
            recipe.base.name,
            missing.join(", ")
        );
    }
    if work.to_string_lossy().contains(char::is_whitespace) {
        bail!(
            "the guest cache {} has white space in its path (mmdebstrap's hooks split on it)",
            work.display()
        );
    }
    Ok(())
}

/// `mmdebstrap` into `root` (a folder that does not exist yet) as the
/// other guests' builder runs it.
fn debian_tree(recipe: &Recipe, work: &Path, root: &Path, log: &BuildLog) -> Result<()> {
    let stage = work.join("stage");
    for (path, text) in staging_files(recipe) {
        write_file(&stage.join(path), &text, 0o644)?;
    }
    let mut cmd = Command::new("mmdebstrap");
    cmd.args([
        "--mode=root",
        "--variant=minbase",
        &format!("--architectures={}", recipe.arch.debian_arch()),
        &format!("--include={}", recipe.packages.join(",")),
        "--aptopt=Acquire::Retries \"3\"",
        "--dpkgopt=force-confold",
        "--dpkgopt=force-confdef",
        &format!("--setup-hook=sync-in {} /", stage.display()),
        &recipe.suite,
    ])
    .arg(root)
    .arg(format!("deb {} {} main", recipe.mirror, recipe.suite))
    .env("DEBIAN_FRONTEND", "noninteractive");
    log.run("mmdebstrap", &mut cmd, MMDEBSTRAP_TIMEOUT)?;
    for (path, text) in staging_files(recipe) {
        let now = fs::read_to_string(root.join(&path)).unwrap_or_default();
        if now != text {
            return Err(log.error(
                "checking the initramfs configuration",
                format!("/{path} is not what the recipe staged (a package replaced it)"),
            ));
        }
    }
    Ok(())
}

/// The guest's configuration: fstab, host name, network, GRUB defaults,
/// the recipe's files, root's password.
fn configure(recipe: &LvmRecipe, hash: &str, root: &Path, log: &BuildLog) -> Result<()> {
    let b = &recipe.base;
    write_file(&root.join("etc/fstab"), &fstab_text(recipe, hash), 0o644)?;
    write_file(
        &root.join("etc/hostname"),
        &format!("{}\n", b.hostname),
        0o644,
    )?;
    write_file(
        &root.join("etc/hosts"),
        &format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            b.hostname
        ),
        0o644,
    )?;
    write_file(
        &root.join("etc/network/interfaces"),
        &interfaces_text(b),
        0o644,
    )?;
    let default_grub = root.join("etc/default/grub");
    let grub_text = match fs::read_to_string(&default_grub) {
        Ok(t) => t,
        Err(_) => fs::read_to_string(root.join("usr/share/grub/default/grub")).unwrap_or_default(),
    };
    write_file(&default_grub, &grub_defaults(b, &grub_text), 0o644)?;
    for f in &b.files {
        let path = in_root(root, &f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        match &f.content {
            FileContent::Text(text) => write_file(&path, text, f.mode)?,
            FileContent::Symlink(target) => {
                let _ = fs::remove_file(&path);
                symlink(target, &path).with_context(|| format!("linking {}", path.display()))?;
            }
        }
    }
    if let Some(pw) = &b.root_password {
        let mut cmd = Command::new("chroot");
        cmd.arg(root).arg("chpasswd");
        log.run_with_input(
            "setting root's password",
            &mut cmd,
            Some(format!("root:{pw}\n").as_bytes()),
            QUICK_TIMEOUT,
        )?;
    }
    Ok(())
}

/// A sparse file of `bytes` bytes.
fn sized_file(path: &Path, bytes: u64) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(bytes)
        .with_context(|| format!("sizing {}", path.display()))
}

/// Builds `recipe` in `work`: the Debian tree on the host, the storage in
/// the stack's rescue VM, the qcow2.
fn build_lvm(recipe: &LvmRecipe, work: &Path, log: &BuildLog) -> Result<(Built, LvmDetails)> {
    let t_start = Instant::now();
    let hash = recipe.hash();
    let b = &recipe.base;
    preflight(recipe, work)?;
    let mut timings = LvmTimings::default();
    log.note(&format!(
        "building {} (LVM builder {LVM_BUILDER_VERSION}, guest builder {BUILDER_VERSION}) in {}",
        recipe.stem(),
        work.display()
    ));

    // The Debian tree, on the host.
    let t = Instant::now();
    let root = work.join("root");
    debian_tree(b, work, &root, log)?;
    timings.mmdebstrap_s = secs(t.elapsed());
    let t = Instant::now();
    configure(recipe, &hash, &root, log)?;
    let mut kernels: Vec<String> = fs::read_dir(root.join("lib/modules"))
        .context("listing the guest's /lib/modules")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    kernels.sort();
    if kernels.is_empty() {
        return Err(log.error("checking the kernel", "the guest has no kernel".into()));
    }
    let status_text = fs::read_to_string(root.join("var/lib/dpkg/status"))
        .context("reading the guest's dpkg status")?;
    let dpkg_status = work.join("dpkg-status");
    fs::write(&dpkg_status, &status_text).context("saving the guest's dpkg status")?;
    let packages = installed_packages(&status_text);
    if !packages.iter().any(|p| p.name == "lvm2") {
        return Err(log.error("checking the packages", "lvm2 is not installed".into()));
    }
    let builtin: Vec<String> = kernels
        .iter()
        .flat_map(|k| {
            fs::read_to_string(root.join(format!("lib/modules/{k}/modules.builtin")))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
                .map(|m| m.replace('-', "_"))
                .collect::<Vec<_>>()
        })
        .collect();
    timings.configure_s = secs(t.elapsed());

    // The tree archive and the blank disks.
    let t = Instant::now();
    let leftover = build::mounts_under(&root);
    if !leftover.is_empty() {
        return Err(log.error(
            "packing the tree",
            format!("mmdebstrap left mounts below the tree: {leftover:?}"),
        ));
    }
    let tree = work.join("tree.raw");
    log.run(
        "packing the tree",
        Command::new("tar")
            .args([
                "--format=gnu",
                "--numeric-owner",
                "--sort=name",
                "--one-file-system",
                "-C",
            ])
            .arg(&root)
            .arg("-cf")
            .arg(&tree)
            .arg("."),
        QUICK_TIMEOUT,
    )?;
    let len = fs::metadata(&tree)?.len();
    fs::OpenOptions::new()
        .write(true)
        .open(&tree)?
        .set_len(len.div_ceil(1 << 20) << 20)?;
    log.note(&format!("tree archive: {} MiB", len >> 20));
    let disk = work.join("disk0.raw");
    sized_file(&disk, b.disks[0].size_mib << 20)?;
    let script = sfdisk_script(&b.disks[0], &hash, 0)?;
    log.run_with_input(
        "partitioning disk 0",
        Command::new("sfdisk")
            .args(["--no-reread", "--no-tell-kernel", "-q"])
            .arg(&disk),
        Some(script.as_bytes()),
        QUICK_TIMEOUT,
    )?;
    let report_disk = work.join("report.raw");
    sized_file(&report_disk, REPORT_MIB << 20)?;
    // The tree is in the archive now.
    fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    timings.pack_s = secs(t.elapsed());

    // The storage, in the stack's rescue VM.
    let t = Instant::now();
    let stack = stack_image(Arch::X86_64).context("the x86_64 stack image (it builds the LVM)")?;
    let boot = stack_boot(&stack, &work.join("stack"))?;
    timings.stack_s = secs(t.elapsed());
    let script = build_script(recipe, &hash);
    log.note(&format!("== the build VM's script:\n{script}"));
    let payload = payload(work, "lvm", &script, None)?;
    let disks = [
        ScsiDisk::writable(&disk, "raw", 0),
        ScsiDisk {
            path: tree.clone(),
            format: "raw",
            scsi_id: TREE_SCSI_ID,
            snapshot: true,
        },
        ScsiDisk::writable(&report_disk, "raw", REPORT_SCSI_ID),
    ];
    log.note(&format!(
        "== build VM: the stack {} in rescue mode (serial log {})",
        stack.dir.display(),
        work.join("build-lvm-serial.log").display()
    ));
    let t = Instant::now();
    let run = run_rescue_script(&boot, &disks, &payload, work, "build-lvm", VM_TIMEOUT);
    timings.vm_s = secs(t.elapsed());
    let run = run.map_err(|e| {
        log.error(
            "the build VM (LVM, file systems, tree, update-initramfs, GRUB)",
            format!("{e:#}"),
        )
    })?;
    log.note(&format!(
        "== build VM done in {:.1?}; its serial log's last lines:\n{}",
        run.elapsed,
        tail_lines(&run.log, 30)
    ));
    let _ = fs::remove_file(&tree);

    // What the VM reported.
    let bytes =
        fs::read(&report_disk).with_context(|| format!("reading {}", report_disk.display()))?;
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    log.note(&format!("== the build VM's report:\n{text}"));
    let report = BuildReport::parse(&text);
    if !report.complete() {
        return Err(log.error(
            "reading the build VM's report",
            "the report disk holds no complete report".into(),
        ));
    }
    timings.vm_steps = report.times();
    let (root_lv, _, _) = recipe.root_lv().context("the recipe has no / LV")?;
    // GRUB names an LV by its /dev/mapper path, whatever fstab says.
    let root_device = recipe.mapper(&root_lv.name);
    let cmdline = report.grub_cmdline();
    for wanted in [
        format!("root={root_device}"),
        "console=ttyS0,115200".to_owned(),
    ] {
        if !cmdline.contains(&wanted) {
            return Err(log.error(
                "update-grub",
                format!("grub.cfg's first linux line lacks {wanted}: {cmdline:?}"),
            ));
        }
    }
    let initramfs_modules = report.initramfs_modules();
    for k in &kernels {
        let mods = initramfs_modules.get(k).ok_or_else(|| {
            log.error(
                "checking the initramfs",
                format!("the report lists no initramfs for {k}"),
            )
        })?;
        let wanted = b.initramfs.modules.iter().cloned().chain(["dm_mod".into()]);
        for w in wanted {
            let w = w.replace('-', "_");
            if !mods.contains(&w) && !builtin.contains(&w) {
                return Err(log.error(
                    "checking the initramfs",
                    format!("the initramfs of {k} lacks {w}"),
                ));
            }
        }
        if mods.iter().any(|m| m == "vmw_pvscsi") {
            return Err(log.error(
                "checking the initramfs",
                format!("the initramfs of {k} has vmw_pvscsi (the guest would boot on VMware)"),
            ));
        }
    }
    let pv_uuid = recipe.pv_uuid(&hash);
    let pvs = report.section("pvs").unwrap_or_default().join("\n");
    if !pvs.contains(&pv_uuid) {
        return Err(log.error(
            "checking the PV",
            format!("pvs does not show the PV UUID {pv_uuid}: {pvs}"),
        ));
    }

    // The qcow2.
    let t = Instant::now();
    let qcow2 = work.join("disk0.qcow2");
    log.run(
        "converting disk 0 to qcow2",
        Command::new("qemu-img")
            .args([
                "convert",
                "-c",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                "compression_type=zstd",
            ])
            .arg(&disk)
            .arg(&qcow2),
        CONVERT_TIMEOUT,
    )?;
    fs::remove_file(&disk).with_context(|| format!("removing {}", disk.display()))?;
    timings.convert_s = secs(t.elapsed());
    timings.total_s = secs(t_start.elapsed());
    log.note(&format!(
        "built {} in {:.1} s: {timings:?}",
        recipe.stem(),
        timings.total_s
    ));

    let (pv_d, pv_p) = recipe.vg.pv;
    let label_id = hex(&derived(&hash, "disk/0")[..4]);
    let partitions = b.disks[0]
        .partitions
        .iter()
        .enumerate()
        .map(|(p, part)| {
            let id = ids(&hash, 0, p, part.fs.as_ref().map(|f| f.kind));
            let is_pv = (pv_d, pv_p) == (0, p);
            BuiltPartition {
                disk: 0,
                index: p + 1,
                kernel_name: kernel_partition_name(0, p),
                fs: match &part.fs {
                    Some(fs) => Some(fs.kind.name().to_owned()),
                    None if is_pv => Some("LVM2_member".into()),
                    None => None,
                },
                fs_uuid: match &part.fs {
                    Some(_) => Some(id.fs_uuid),
                    None if is_pv => Some(pv_uuid.clone()),
                    None => None,
                },
                fs_label: part.fs.as_ref().and_then(|f| f.label.clone()),
                part_uuid: format!("{label_id}-{:02x}", p + 1),
            }
        })
        .collect();
    let manifest = GuestManifest {
        builder_version: BUILDER_VERSION,
        name: b.name.clone(),
        hash: hash.clone(),
        recipe: b.clone(),
        kernels,
        packages,
        initramfs_modules,
        grub_cmdline: cmdline,
        partitions,
        timings: BuildTimings {
            disks_s: timings.pack_s,
            mmdebstrap_s: timings.mmdebstrap_s,
            configure_s: timings.configure_s,
            grub_s: timings.vm_s,
            convert_s: timings.convert_s,
            total_s: timings.total_s,
        },
    };
    let details = LvmDetails {
        lvm_builder_version: LVM_BUILDER_VERSION,
        hash: hash.clone(),
        recipe: recipe.clone(),
        pv_device: kernel_partition_name(pv_d, pv_p),
        pv_uuid,
        lvs: recipe.built_lvs(&hash),
        root_device,
        stack: stack.dir.clone(),
        timings,
    };
    Ok((
        Built {
            disk: qcow2,
            dpkg_status,
            manifest,
        },
        details,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIRROR: &str = "http://deb.debian.org/debian";

    #[test]
    fn guest_d_recipe_fstab_and_ids() {
        let r = LvmRecipe::debian12_bios_lvm(GuestArch::Amd64, MIRROR);
        r.validate().unwrap();
        assert_eq!(r.base.name, "deb12-bios-lvm-amd64");
        assert!(r.base.packages.iter().any(|p| p == "lvm2"));
        assert!(r.base.root().is_none());
        let (lv, fs, m) = r.root_lv().unwrap();
        assert_eq!((lv.name.as_str(), fs.kind), ("root", FsKind::Ext4));
        assert_eq!(m.source, DeviceRef::Path("/dev/mapper/vg0-root".into()));
        assert!(!r.base.initramfs.modules.iter().any(|m| m == "vmw_pvscsi"));
        assert_eq!(r.base.initramfs.modules_policy, "list");
        let h = r.hash();
        assert_eq!(h.len(), 16);
        assert_eq!(r.stem(), format!("deb12-bios-lvm-amd64-{h}"));
        assert_ne!(h, r.base.hash());

        let fstab = fstab_text(&r, &h);
        let lines: Vec<&str> = fstab.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "/dev/mapper/vg0-root / ext4 errors=remount-ro 0 1",
                "/dev/sda1 /boot ext4 defaults 0 2",
                "/dev/mapper/vg0-swap none swap sw 0 0",
            ]
        );

        let pv = r.pv_uuid(&h);
        assert_eq!(pv, r.pv_uuid(&h));
        let groups: Vec<usize> = pv.split('-').map(str::len).collect();
        assert_eq!(groups, [6, 4, 4, 4, 4, 4, 6]);
        assert!(pv.chars().all(|c| c == '-' || c.is_ascii_alphanumeric()));
        assert_ne!(pv, r.pv_uuid("0000000000000000"));

        let sf = sfdisk_script(&r.base.disks[0], &h, 0).unwrap();
        assert!(
            sf.contains("start=2048, size=614400, type=83, bootable\ntype=8e\n"),
            "{sf}"
        );
    }

    #[test]
    fn invalid_recipes_are_refused() {
        let good = LvmRecipe::debian12_bios_lvm(GuestArch::Amd64, MIRROR);
        type Change = fn(&mut LvmRecipe);
        let changes: Vec<(&str, Change)> = vec![
            ("i386", |r| r.base.arch = GuestArch::I386),
            ("uefi", |r| {
                r.base.firmware = GuestFirmware::Uefi { removable: true }
            }),
            ("dash in the VG name", |r| r.vg.name = "vg-0".into()),
            ("no root LV", |r| {
                r.vg.lvs.remove(0);
            }),
            ("PV on the /boot partition", |r| r.vg.pv = (0, 0)),
            ("LVs too big", |r| r.vg.lvs[0].size_mib = 4096),
            ("/ also on a partition", |r| {
                r.base.disks[0].partitions[0].fs.as_mut().unwrap().mounts[0].mountpoint = "/".into()
            }),
        ];
        for (what, change) in changes {
            let mut r = good.clone();
            change(&mut r);
            assert!(r.validate().is_err(), "{what} was accepted");
            assert_ne!(r.hash(), good.hash(), "{what}");
        }
    }

    #[test]
    fn the_build_script_names_every_step() {
        let r = LvmRecipe::debian12_bios_lvm(GuestArch::Amd64, MIRROR);
        let h = r.hash();
        let s = build_script(&r, &h);
        let boot_uuid = ids(&h, 0, 0, Some(FsKind::Ext4)).fs_uuid;
        let root_uuid = r.lv_fs_uuid(&h, "root");
        let pv = r.pv_uuid(&h);
        let order = [
            format!("step lvmc pvcreate -ff -y --norestorefile --uuid {pv} ${{D}}2"),
            "step lvmc vgcreate vg0 ${D}2".to_owned(),
            "step lvmc lvcreate -y -Wy -Zy -n root -L 2048m vg0 ${D}2".to_owned(),
            format!("step mkfs.ext4 -q -F -U {root_uuid} -L root /dev/mapper/vg0-root"),
            "step busybox mkswap -L swap /dev/mapper/vg0-swap".to_owned(),
            format!("step mkfs.ext4 -q -F -U {boot_uuid} -L boot ${{D}}1"),
            "step mount -t ext4 /dev/mapper/vg0-root $G\n".to_owned(),
            "step mount -t ext4 ${D}1 $G/boot\n".to_owned(),
            "step tar -xf $T -C $G\n".to_owned(),
            "step mount -o bind /dev $G/dev\n".to_owned(),
            "step in_guest update-initramfs -u -k all\n".to_owned(),
            "step in_guest grub-install --target=i386-pc $D\n".to_owned(),
            "step sh -c \"echo '(hd0) $D' > $G/boot/grub/device.map\"\n".to_owned(),
            "step in_guest update-grub\n".to_owned(),
            "step rm $G/boot/grub/device.map\n".to_owned(),
            "report > /tmp/osam-report.txt".to_owned(),
            "step umount $G/boot\n".to_owned(),
            "step umount $G\n".to_owned(),
            "step lvmc vgchange -an vg0\n".to_owned(),
            "step sh -c \"cat /tmp/osam-report-all.txt > $O\"".to_owned(),
            "echo \"OSAM-RESULT: ok\"\nsync\npoweroff -f\n".to_owned(),
        ];
        let mut at = 0;
        for needle in &order {
            let found = s[at..]
                .find(needle.as_str())
                .unwrap_or_else(|| panic!("{needle:?} missing (or out of order) in\n{s}"));
            at += found + needle.len();
        }
        assert!(s.contains(&format!("$(disk {TREE_SCSI_ID})")));
        assert!(s.contains(&format!("$(disk {REPORT_SCSI_ID})")));
    }

    #[test]
    fn reads_the_build_report() {
        let text = "=== grub.cfg\nmenuentry 'Debian' {\n\tlinux\t/vmlinuz-6.1.0-28-amd64 \
                    root=/dev/mapper/vg0-root ro console=tty0 console=ttyS0,115200\n}\n\
                    === initramfs 6.1.0-28-amd64\ndm-mod\next4\nvirtio_scsi\n\n\
                    === pvs\n  /dev/sda2 abc vg0\n=== times\n3 lvm pvcreate x\n95 in_guest \
                    update-initramfs -u -k all\n=== end\n";
        let r = BuildReport::parse(text);
        assert!(r.complete());
        assert_eq!(
            r.grub_cmdline(),
            [
                "root=/dev/mapper/vg0-root",
                "ro",
                "console=tty0",
                "console=ttyS0,115200"
            ]
        );
        assert_eq!(
            r.initramfs_modules()["6.1.0-28-amd64"],
            ["dm_mod", "ext4", "virtio_scsi"]
        );
        assert_eq!(
            r.times()[1],
            (95, "in_guest update-initramfs -u -k all".into())
        );
        assert!(!BuildReport::parse("=== grub.cfg\nx\n").complete());
    }
}
