//! Guest disks with real storage stacks, for the QEMU tests of assembly:
//! LVM (a separate `/boot`, root and swap LVs, a second PV on a second
//! disk holding an xfs `/data`), md RAID1, btrfs with subvolumes, and two
//! plain disks.
//!
//! The host's kernel has no device-mapper, so the disks are made inside a
//! VM that runs the fixup stack itself: its kernel has dm and md, its
//! initramfs the LVM, mdadm, mkfs and busybox tools. The guest's file tree
//! is made on the host and packed, with the build script, as a tar archive
//! written to a raw "payload" disk; the blank guest disks are partitioned
//! on the host with `sfdisk`. The stack boots straight into its rescue
//! shell (`-kernel`/`-initrd` taken from the image's ESP,
//! `osam.mode=rescue osam.after=shell`), one short line typed on the
//! serial console unpacks the payload and runs the script, which prints
//! every command and its exit status (`@@osam step:` / `@@osam FAILED`),
//! ends with `OSAM-RESULT: ok` or `OSAM-RESULT: failed`, and powers off.
//!
//! The results are converted to qcow2 and cached in
//! `${XDG_CACHE_HOME:-$HOME/.cache}/osam/storage-guests/<name>-<hash>/`,
//! the hash taken over the payload (guest tree and build script), the disk
//! layouts and the pins file (the stack kernel and tools that ran the
//! build). A build goes to a temporary folder renamed into place when
//! complete; a lock file keeps two processes from building one guest.
//!
//! The guests are Debian 11 trees that stage 1 can fix for real: a static
//! busybox as `/bin/sh` with applet links, kernel `5.10.0-28-amd64` whose
//! `/lib/modules` holds real modules (taken from the stack's kernel) with
//! their `modules.dep`, an initramfs without `vmw_pvscsi`, GRUB's
//! configuration, `/etc/network/interfaces` naming the source NIC. The
//! guest's `update-initramfs`, `grub-install`, `grub-mkconfig`,
//! `update-grub`, `mkinitramfs` and `depmod` are small shell stand-ins that
//! append their command line to [`TOOL_LOG`] in the guest and write
//! plausible output (a gzip'ed newc image of the modules listed in
//! `/etc/initramfs-tools/modules`; a `grub.cfg` naming the root the way
//! GRUB's `10_linux` does), so that a test can show that they ran inside
//! the guest, with the guest kernel's version.
//!
//! [`check_disks`] boots the stack's rescue shell again over a guest's
//! disks (copy-on-write) and reports what a test asserts: `e2fsck -fn`,
//! `xfs_repair -n` and `btrfs check --readonly` of every file system,
//! the ext4 and md superblock states, the swap signatures, and the guest's
//! fstab, tool log, `grub.cfg` and initramfs contents.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Cursor, Read, Write as _};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use osam_image::cpio::Cpio;
use osam_image::deb::Deb;
use osam_image::kernel::{KernelTree, ModuleDb};
use osam_image::pins::Pin;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Arch;
use crate::image::{FileLock, StackImage, TEST_EPOCH};
use crate::paths::{self, tail_lines};
use crate::vm::{Vm, VmConfig};

/// The guests' kernel version (Debian 11's), deliberately not the stack's:
/// a tool that fell back to `uname -r` would name the stack's.
pub const GUEST_KERNEL: &str = "5.10.0-28-amd64";
/// Where the guest's tool stand-ins record their command lines.
pub const TOOL_LOG: &str = "/var/log/osam-test-tools.log";
/// The source NIC of every guest (QEMU/KVM naming and MAC).
pub const SOURCE_NIC: (&str, &str) = ("ens3", "52:54:00:12:34:56");
/// The SCSI target id of the payload disk in the rescue VMs.
pub const PAYLOAD_SCSI_ID: u8 = 14;
/// Bump to rebuild every cached guest (a change of how disks are made
/// that the payload does not show).
const BUILDER_VERSION: &str = "storage-guests 1";
/// From QEMU's start to the rescue shell's prompt.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// From the typed line to `OSAM-RESULT:` (a build; checks are faster).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(420);
/// For the checks.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// From `OSAM-RESULT:` to QEMU's exit (`poweroff -f`).
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);
/// The rescue VMs' memory: the stack's initramfs, the payload in /tmp and
/// mkfs.
const RESCUE_MEMORY_MIB: u32 = 768;

/// The modules of the guest kernel (with their dependency closure, from
/// the stack's kernel).
const GUEST_MODULES: &[&str] = &[
    "vmw_pvscsi",
    "mptspi",
    "mptsas",
    "ahci",
    "sd_mod",
    "sr_mod",
    "ext4",
    "xfs",
    "btrfs",
    "dm_mod",
    "raid1",
    "vmxnet3",
    "e1000",
    "e1000e",
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
];

/// The guests of the storage tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestKind {
    /// `/boot` on sda1, VG `vg0` on sda2 and sdb1 with LVs `root` (ext4),
    /// `swap` and `data` (xfs, on the second disk's PV).
    Lvm,
    /// ext4 root on md0, a RAID1 of sda1 and sdb1; swap on sda2 and sdb2.
    MdRaid1,
    /// btrfs on sda1 with subvolumes `@` (root) and `@home`.
    Btrfs,
    /// ext4 root and swap on the first disk, ext4 `/data` on `/dev/sdb1`.
    TwoDisks,
}

impl GuestKind {
    /// Every guest.
    pub const ALL: [GuestKind; 4] = [
        GuestKind::Lvm,
        GuestKind::MdRaid1,
        GuestKind::Btrfs,
        GuestKind::TwoDisks,
    ];

    /// A short name (cache folders, logs).
    pub fn name(self) -> &'static str {
        match self {
            GuestKind::Lvm => "lvm",
            GuestKind::MdRaid1 => "md-raid1",
            GuestKind::Btrfs => "btrfs",
            GuestKind::TwoDisks => "two-disks",
        }
    }

    /// What the guest is made of.
    pub fn spec(self) -> GuestSpec {
        match self {
            GuestKind::Lvm => lvm_spec(),
            GuestKind::MdRaid1 => md_spec(),
            GuestKind::Btrfs => btrfs_spec(),
            GuestKind::TwoDisks => two_disks_spec(),
        }
    }
}

impl std::fmt::Display for GuestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A file system type the builder makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext4.
    Ext4,
    /// xfs.
    Xfs,
    /// btrfs.
    Btrfs,
    /// Linux swap.
    Swap,
}

impl FsKind {
    /// blkid's name (the replica map's `fsType`).
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Swap => "swap",
        }
    }
}

/// A block device of a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dev {
    /// Partition `number` of disk `disk` (0 is scsi0:0).
    Part {
        /// The disk's index.
        disk: usize,
        /// The partition number.
        number: u32,
    },
    /// A logical volume of the guest's volume group.
    Lv(&'static str),
    /// An md array (`md0`).
    Md(&'static str),
}

impl Dev {
    /// The device in the builder's and checker's scripts, where `$D<n>`
    /// holds disk n's node.
    fn shell(&self, vg: Option<&VgSpec>) -> String {
        match self {
            Dev::Part { disk, number } => format!("${{D{disk}}}{number}"),
            Dev::Lv(lv) => format!("/dev/mapper/{}-{lv}", vg.map_or("vg", |v| v.name)),
            Dev::Md(md) => format!("/dev/{md}"),
        }
    }
}

/// What a partition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartRole {
    /// A file system or swap (see [`GuestSpec::filesystems`]).
    Fs,
    /// An LVM physical volume.
    LvmPv,
    /// An md array member.
    RaidMember,
}

/// A partition of an MBR disk.
#[derive(Debug, Clone)]
pub struct PartSpec {
    /// Its size; `None` takes the rest of the disk.
    pub size_mib: Option<u64>,
    /// Its MBR type (`83`, `82`, `8e`, `fd`).
    pub mbr_type: &'static str,
    /// What it holds.
    pub role: PartRole,
}

/// A guest disk.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// Its size.
    pub size_mib: u64,
    /// The MBR disk identifier (PARTUUIDs are `<id>-<nn>`).
    pub label_id: u32,
    /// Its partitions, numbered from 1.
    pub partitions: Vec<PartSpec>,
}

impl DiskSpec {
    /// The size in bytes (`capacityBytes`).
    pub fn size_bytes(&self) -> u64 {
        self.size_mib << 20
    }

    /// sfdisk's input for the partition table.
    pub fn sfdisk_script(&self) -> String {
        let mut s = format!(
            "label: dos\nlabel-id: 0x{:08x}\nunit: sectors\n\n",
            self.label_id
        );
        for p in &self.partitions {
            match p.size_mib {
                Some(mib) => {
                    let _ = writeln!(s, "size={mib}MiB, type={}", p.mbr_type);
                }
                None => {
                    let _ = writeln!(s, "type={}", p.mbr_type);
                }
            }
        }
        s
    }
}

/// A logical volume.
#[derive(Debug, Clone)]
pub struct LvSpec {
    /// Its name.
    pub name: &'static str,
    /// Its size.
    pub size_mib: u64,
    /// The PV it is allocated on: (disk, partition).
    pub pv: (usize, u32),
}

/// The guest's volume group.
#[derive(Debug, Clone)]
pub struct VgSpec {
    /// Its name.
    pub name: &'static str,
    /// Its PVs: (disk, partition).
    pub pvs: Vec<(usize, u32)>,
    /// Its LVs, in creation order.
    pub lvs: Vec<LvSpec>,
}

/// An md RAID1 array.
#[derive(Debug, Clone)]
pub struct MdSpec {
    /// Its kernel name (`md0`).
    pub name: &'static str,
    /// Its UUID in mdadm's spelling (`xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`).
    pub uuid: &'static str,
    /// The home host and name (`<homehost>:<name>` in the superblock).
    pub homehost: &'static str,
    /// See `homehost`.
    pub md_name: &'static str,
    /// Its members: (disk, partition).
    pub members: Vec<(usize, u32)>,
}

/// A file system (or swap area) of a guest.
#[derive(Debug, Clone)]
pub struct FsSpec {
    /// Its type.
    pub kind: FsKind,
    /// Where it is.
    pub dev: Dev,
    /// Its UUID.
    pub uuid: &'static str,
    /// Its label (also the name of its checks).
    pub label: &'static str,
    /// Where the guest mounts it: (mount point, btrfs subvolume).
    pub mounts: Vec<(&'static str, Option<&'static str>)>,
}

/// One guest: disks, storage stack, file systems and configuration.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// Which.
    pub kind: GuestKind,
    /// `/etc/hostname`.
    pub hostname: &'static str,
    /// Its disks, attached at scsi0:0, scsi0:1, …
    pub disks: Vec<DiskSpec>,
    /// Its volume group.
    pub vg: Option<VgSpec>,
    /// Its md array.
    pub md: Option<MdSpec>,
    /// Its file systems and swap areas.
    pub filesystems: Vec<FsSpec>,
    /// `/etc/fstab` as the source left it.
    pub fstab: String,
    /// `root=` of the source's `grub.cfg`.
    pub source_root_arg: &'static str,
    /// What `/etc/initramfs-tools/modules` lists besides the virtio drivers.
    pub initramfs_modules: &'static [&'static str],
}

impl GuestSpec {
    /// The file system mounted at `/`.
    pub fn root_fs(&self) -> &FsSpec {
        self.filesystems
            .iter()
            .find(|f| f.mounts.iter().any(|(mp, _)| *mp == "/"))
            .expect("every guest has a root file system")
    }

    /// Every (mount point, file system, subvolume), parents first.
    pub fn mounts(&self) -> Vec<(&'static str, &FsSpec, Option<&'static str>)> {
        let mut out: Vec<_> = self
            .filesystems
            .iter()
            .flat_map(|f| f.mounts.iter().map(move |(mp, sub)| (*mp, f, *sub)))
            .collect();
        out.sort_by_key(|(mp, _, _)| {
            if *mp == "/" {
                0
            } else {
                mp.matches('/').count()
            }
        });
        out
    }

    /// The file system on partition `number` of disk `disk`.
    pub fn fs_on(&self, disk: usize, number: u32) -> Option<&FsSpec> {
        self.filesystems
            .iter()
            .find(|f| f.dev == Dev::Part { disk, number })
    }

    /// The source's name of disk `disk` (`/dev/sda`, …).
    pub fn source_disk(disk: usize) -> String {
        format!("/dev/sd{}", (b'a' + disk as u8) as char)
    }

    /// `/etc/fstab` as stage 1 must leave it (`fstabIdentifiers: uuid`):
    /// kernel names of the source's partitions become `UUID=`, LVM and md
    /// names and `UUID=` entries stay.
    pub fn expected_fstab(&self) -> String {
        let mut out = String::new();
        for line in self.fstab.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            let replaced = (0..self.disks.len()).find_map(|d| {
                let rest = first.strip_prefix(&Self::source_disk(d))?;
                let number: u32 = rest.parse().ok()?;
                let fs = self.fs_on(d, number)?;
                Some(line.replacen(first, &format!("UUID={}", fs.uuid), 1))
            });
            out.push_str(replaced.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }

    /// What `grub-mkconfig` (the stand-in, like GRUB's `10_linux`) must
    /// put on the kernel command line for the root, run in the stack's
    /// chroot: the LVM device path, else `UUID=` (which needs the stack's
    /// `/dev/disk/by-uuid` link), plus `rootflags=subvol=` on btrfs.
    pub fn expected_root_args(&self) -> Vec<String> {
        let root = self.root_fs();
        let mut args = vec![match &root.dev {
            Dev::Lv(lv) => format!(
                "root=/dev/mapper/{}-{lv}",
                self.vg.as_ref().map_or("vg", |v| v.name)
            ),
            _ => format!("root=UUID={}", root.uuid),
        }];
        if let Some((_, Some(sub))) = root.mounts.iter().find(|(mp, _)| *mp == "/") {
            args.push(format!("rootflags=subvol={sub}"));
        }
        args
    }

    /// replica-disk-map.json for the guest's disks at scsi0:0, scsi0:1, …
    /// (source devices `/dev/sda`, …; the source UUIDs are the target's,
    /// as after a block-level replication).
    pub fn replica_disk_map(&self) -> Value {
        let disks: Vec<Value> = self
            .disks
            .iter()
            .enumerate()
            .map(|(d, disk)| {
                let partitions: Vec<Value> = disk
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let number = i as u32 + 1;
                        let mut v = json!({
                            "number": number,
                            "sourceDevice": format!("{}{number}", Self::source_disk(d)),
                        });
                        match p.role {
                            PartRole::LvmPv => v["fsType"] = json!("LVM2_member"),
                            PartRole::RaidMember => v["fsType"] = json!("linux_raid_member"),
                            PartRole::Fs => {
                                if let Some(fs) = self.fs_on(d, number) {
                                    v["fsType"] = json!(fs.kind.name());
                                    v["sourceUuid"] = json!(fs.uuid);
                                    v["label"] = json!(fs.label);
                                    if let Some((mp, _)) = fs.mounts.first() {
                                        v["mountPoint"] = json!(mp);
                                    }
                                }
                            }
                        }
                        v
                    })
                    .collect();
                json!({
                    "sourceDevice": Self::source_disk(d),
                    "target": { "controller": "scsi0", "unit": d },
                    "capacityBytes": disk.size_bytes(),
                    "boot": d == 0,
                    "partitions": partitions,
                })
            })
            .collect();
        json!({ "version": 1, "disks": disks })
    }

    /// network-interface-map.json: [`SOURCE_NIC`] becomes `eth0`.
    pub fn network_interface_map(&self) -> Value {
        json!({
            "version": 1,
            "interfaces": [{
                "sourceName": SOURCE_NIC.0,
                "sourceMac": SOURCE_NIC.1,
                "targetMac": "00:50:56:9a:00:01",
                "targetName": "eth0"
            }]
        })
    }

    /// system-configuration.json for the guest (Debian 11, BIOS, pvscsi,
    /// `fstabIdentifiers: uuid`).
    pub fn system_configuration(&self, migration_id: &str) -> Value {
        json!({
            "version": 1,
            "migrationId": migration_id,
            "source": {
                "hostname": self.hostname,
                "arch": "x86_64",
                "firmware": "bios",
                "osFamily": "debian",
                "osVersion": "11"
            },
            "target": {
                "firmware": "bios",
                "storageController": "pvscsi",
                "nicModel": "vmxnet3"
            },
            "options": {
                "renameInterfaces": true,
                "fstabIdentifiers": "uuid",
                "stage2": true,
                "extraInitramfsDrivers": [],
                "commandTimeoutSeconds": 900
            }
        })
    }
}

const FSTAB_HEAD: &str = "# /etc/fstab: static file system information.\n#\n\
# Use 'blkid' to print the universally unique identifier for a\n\
# device; this may be used with UUID= as a more robust way to name devices\n\
# that works even if disks are added and removed. See fstab(5).\n#\n\
# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n";

fn lvm_spec() -> GuestSpec {
    let boot = "5a8c1f02-3e4d-4b6a-9c7e-1d2f3a4b5c60";
    GuestSpec {
        kind: GuestKind::Lvm,
        hostname: "lvm-guest",
        disks: vec![
            DiskSpec {
                size_mib: 512,
                label_id: 0x4f53_4c01,
                partitions: vec![
                    PartSpec {
                        size_mib: Some(64),
                        mbr_type: "83",
                        role: PartRole::Fs,
                    },
                    PartSpec {
                        size_mib: None,
                        mbr_type: "8e",
                        role: PartRole::LvmPv,
                    },
                ],
            },
            DiskSpec {
                size_mib: 448,
                label_id: 0x4f53_4c02,
                partitions: vec![PartSpec {
                    size_mib: None,
                    mbr_type: "8e",
                    role: PartRole::LvmPv,
                }],
            },
        ],
        vg: Some(VgSpec {
            name: "vg0",
            pvs: vec![(0, 2), (1, 1)],
            lvs: vec![
                LvSpec {
                    name: "root",
                    size_mib: 200,
                    pv: (0, 2),
                },
                LvSpec {
                    name: "swap",
                    size_mib: 32,
                    pv: (0, 2),
                },
                LvSpec {
                    name: "data",
                    size_mib: 320,
                    pv: (1, 1),
                },
            ],
        }),
        md: None,
        filesystems: vec![
            FsSpec {
                kind: FsKind::Ext4,
                dev: Dev::Lv("root"),
                uuid: "5a8c1f02-3e4d-4b6a-9c7e-1d2f3a4b5c61",
                label: "root",
                mounts: vec![("/", None)],
            },
            FsSpec {
                kind: FsKind::Ext4,
                dev: Dev::Part { disk: 0, number: 1 },
                uuid: boot,
                label: "boot",
                mounts: vec![("/boot", None)],
            },
            FsSpec {
                kind: FsKind::Swap,
                dev: Dev::Lv("swap"),
                uuid: "5a8c1f02-3e4d-4b6a-9c7e-1d2f3a4b5c62",
                label: "swap",
                mounts: vec![],
            },
            FsSpec {
                kind: FsKind::Xfs,
                dev: Dev::Lv("data"),
                uuid: "5a8c1f02-3e4d-4b6a-9c7e-1d2f3a4b5c63",
                label: "data",
                mounts: vec![("/data", None)],
            },
        ],
        fstab: format!(
            "{FSTAB_HEAD}/dev/mapper/vg0-root /               ext4    errors=remount-ro 0       1\n\
             # /boot was on /dev/sda1 during installation\n\
             UUID={boot} /boot           ext4    defaults        0       2\n\
             /dev/vg0/data   /data           xfs     defaults        0       2\n\
             /dev/mapper/vg0-swap none            swap    sw              0       0\n"
        ),
        source_root_arg: "root=/dev/mapper/vg0-root",
        initramfs_modules: &["dm_mod", "ext4"],
    }
}

fn md_spec() -> GuestSpec {
    let member = || PartSpec {
        size_mib: Some(288),
        mbr_type: "fd",
        role: PartRole::RaidMember,
    };
    let swap = || PartSpec {
        size_mib: None,
        mbr_type: "82",
        role: PartRole::Fs,
    };
    GuestSpec {
        kind: GuestKind::MdRaid1,
        hostname: "md-guest",
        disks: vec![
            DiskSpec {
                size_mib: 320,
                label_id: 0x4f53_4d01,
                partitions: vec![member(), swap()],
            },
            DiskSpec {
                size_mib: 320,
                label_id: 0x4f53_4d02,
                partitions: vec![member(), swap()],
            },
        ],
        vg: None,
        md: Some(MdSpec {
            name: "md0",
            uuid: "3f2a9c1e:5b7d4e80:a1c2d3e4:f5061728",
            homehost: "md-guest",
            md_name: "0",
            members: vec![(0, 1), (1, 1)],
        }),
        filesystems: vec![
            FsSpec {
                kind: FsKind::Ext4,
                dev: Dev::Md("md0"),
                uuid: "6b9d2013-4f5e-4c7b-8d8f-2e3f4a5b6c70",
                label: "root",
                mounts: vec![("/", None)],
            },
            FsSpec {
                kind: FsKind::Swap,
                dev: Dev::Part { disk: 0, number: 2 },
                uuid: "6b9d2013-4f5e-4c7b-8d8f-2e3f4a5b6c71",
                label: "swap0",
                mounts: vec![],
            },
            FsSpec {
                kind: FsKind::Swap,
                dev: Dev::Part { disk: 1, number: 2 },
                uuid: "6b9d2013-4f5e-4c7b-8d8f-2e3f4a5b6c72",
                label: "swap1",
                mounts: vec![],
            },
        ],
        fstab: format!(
            "{FSTAB_HEAD}/dev/md0        /               ext4    errors=remount-ro 0       1\n\
             /dev/sda2       none            swap    sw              0       0\n\
             /dev/sdb2       none            swap    sw              0       0\n"
        ),
        source_root_arg: "root=/dev/md0",
        initramfs_modules: &["raid1", "ext4"],
    }
}

fn btrfs_spec() -> GuestSpec {
    let uuid = "7cae3124-5a6f-4d8c-9e90-3f4a5b6c7d80";
    GuestSpec {
        kind: GuestKind::Btrfs,
        hostname: "btrfs-guest",
        disks: vec![DiskSpec {
            size_mib: 512,
            label_id: 0x4f53_4201,
            partitions: vec![PartSpec {
                size_mib: None,
                mbr_type: "83",
                role: PartRole::Fs,
            }],
        }],
        vg: None,
        md: None,
        filesystems: vec![FsSpec {
            kind: FsKind::Btrfs,
            dev: Dev::Part { disk: 0, number: 1 },
            uuid,
            label: "root",
            mounts: vec![("/", Some("@")), ("/home", Some("@home"))],
        }],
        fstab: format!(
            "{FSTAB_HEAD}/dev/sda1       /               btrfs   defaults,subvol=@ 0       0\n\
             UUID={uuid} /home           btrfs   defaults,subvol=@home 0       0\n"
        ),
        source_root_arg: "root=/dev/sda1 rootflags=subvol=@",
        initramfs_modules: &["btrfs"],
    }
}

fn two_disks_spec() -> GuestSpec {
    GuestSpec {
        kind: GuestKind::TwoDisks,
        hostname: "two-disks",
        disks: vec![
            DiskSpec {
                size_mib: 384,
                label_id: 0x4f53_5401,
                partitions: vec![
                    PartSpec {
                        size_mib: Some(320),
                        mbr_type: "83",
                        role: PartRole::Fs,
                    },
                    PartSpec {
                        size_mib: None,
                        mbr_type: "82",
                        role: PartRole::Fs,
                    },
                ],
            },
            DiskSpec {
                size_mib: 128,
                label_id: 0x4f53_5402,
                partitions: vec![PartSpec {
                    size_mib: None,
                    mbr_type: "83",
                    role: PartRole::Fs,
                }],
            },
        ],
        vg: None,
        md: None,
        filesystems: vec![
            FsSpec {
                kind: FsKind::Ext4,
                dev: Dev::Part { disk: 0, number: 1 },
                uuid: "8dbf4235-6b70-4e9d-a0a1-405b6c7d8e90",
                label: "root",
                mounts: vec![("/", None)],
            },
            FsSpec {
                kind: FsKind::Swap,
                dev: Dev::Part { disk: 0, number: 2 },
                uuid: "8dbf4235-6b70-4e9d-a0a1-405b6c7d8e91",
                label: "swap",
                mounts: vec![],
            },
            FsSpec {
                kind: FsKind::Ext4,
                dev: Dev::Part { disk: 1, number: 1 },
                uuid: "8dbf4235-6b70-4e9d-a0a1-405b6c7d8e92",
                label: "data",
                mounts: vec![("/data", None)],
            },
        ],
        fstab: format!(
            "{FSTAB_HEAD}/dev/sda1       /               ext4    errors=remount-ro 0       1\n\
             /dev/sda2       none            swap    sw              0       0\n\
             /dev/sdb1       /data           ext4    defaults        0       2\n"
        ),
        source_root_arg: "root=/dev/sda1",
        initramfs_modules: &["ext4"],
    }
}

// ---------------------------------------------------------------------------
// The guest tree

const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\n\
NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"11\"\nVERSION=\"11 (bullseye)\"\n\
VERSION_CODENAME=bullseye\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n\
SUPPORT_URL=\"https://www.debian.org/support\"\nBUG_REPORT_URL=\"https://bugs.debian.org/\"\n";

const DEFAULT_GRUB: &str = "# If you change this file, run 'update-grub' afterwards to update\n\
# /boot/grub/grub.cfg.\n\
# For full documentation of the options in this file, see:\n\
#   info -f grub -n 'Simple configuration'\n\n\
GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n\
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200\"\n";

const INTERFACES: &str = "# This file describes the network interfaces available on your system\n\
# and how to activate them. For more information, see interfaces(5).\n\n\
source /etc/network/interfaces.d/*\n\n\
# The loopback network interface\nauto lo\niface lo inet loopback\n\n\
# The primary network interface\nallow-hotplug ens3\niface ens3 inet dhcp\n";

/// The stand-in for initramfs-tools' `update-initramfs`.
const UPDATE_INITRAMFS: &str = r##"#!/bin/sh
# OSAM storage test guest: a stand-in for initramfs-tools' update-initramfs.
# Records its command line in /var/log/osam-test-tools.log, then writes
# /boot/initrd.img-<version> (gzip'ed newc) holding the modules that
# /etc/initramfs-tools/modules lists, with their dependencies from
# modules.dep (as MODULES=list would).
echo "update-initramfs $*" >> /var/log/osam-test-tools.log
ver=
while [ $# -gt 0 ]; do
    case "$1" in
        -k) shift; ver="$1" ;;
    esac
    shift
done
dep="/lib/modules/$ver/modules.dep"
if [ -z "$ver" ] || [ ! -f "$dep" ]; then
    echo "update-initramfs: no modules.dep for kernel '$ver'" >&2
    exit 1
fi
image="/boot/initrd.img-$ver"
echo "update-initramfs: Generating $image"
list="lib/modules/$ver/modules.dep"
for m in $(sed -e 's/#.*//' -e 's/[[:space:]].*//' /etc/initramfs-tools/modules); do
    line=$(awk -F: -v n="$(echo "$m" | tr - _)" '{ f = $1; sub(/.*\//, "", f); sub(/\.ko.*/, "", f); gsub(/-/, "_", f); if (f == n) { print; exit } }' "$dep")
    if [ -z "$line" ]; then
        echo "W: module $m not found in $dep" >&2
        continue
    fi
    for p in ${line%%:*} ${line#*:}; do
        list="$list lib/modules/$ver/$p"
    done
done
for f in etc/fstab etc/mdadm/mdadm.conf etc/lvm/lvm.conf; do
    [ -f "/$f" ] && list="$list $f"
done
cd / || exit 1
for f in $list; do echo "$f"; done | sort -u | cpio -o -H newc 2>/dev/null | gzip -n > "$image.new" || exit 1
mv "$image.new" "$image"
"##;

/// The stand-in for `grub-install`.
const GRUB_INSTALL: &str = r##"#!/bin/sh
# OSAM storage test guest: a stand-in for grub-install. Records its command
# line, checks that the install device is a block device in this root and
# leaves a core.img marker.
echo "grub-install $*" >> /var/log/osam-test-tools.log
target=i386-pc
dev=
for a in "$@"; do
    case "$a" in
        --target=*) target="${a#--target=}" ;;
        -*) ;;
        *) dev="$a" ;;
    esac
done
if [ ! -b "$dev" ]; then
    echo "grub-install: error: '$dev' is not a block device" >&2
    exit 1
fi
echo "Installing for $target platform."
mkdir -p "/boot/grub/$target"
echo "OSAM test stand-in for core.img, installed on $dev" > "/boot/grub/$target/core.img"
echo "Installation finished. No error reported."
"##;

/// The stand-in for `grub-mkconfig`.
const GRUB_MKCONFIG: &str = r##"#!/bin/sh
# OSAM storage test guest: a stand-in for grub-mkconfig. Records its command
# line, then writes one entry per installed kernel, naming the root the way
# GRUB's 10_linux does: the device path for LVM, else UUID= when
# /dev/disk/by-uuid has the root file system, else the device path; with
# rootflags=subvol= for a btrfs subvolume.
echo "grub-mkconfig $*" >> /var/log/osam-test-tools.log
out=
while [ $# -gt 0 ]; do
    case "$1" in
        -o) shift; out="$1" ;;
        --output=*) out="${1#--output=}" ;;
    esac
    shift
done
if [ -z "$out" ]; then
    echo "grub-mkconfig: this stand-in needs -o FILE" >&2
    exit 2
fi
GRUB_TIMEOUT=5
GRUB_CMDLINE_LINUX=
GRUB_CMDLINE_LINUX_DEFAULT=
. /etc/default/grub
root_dev=$(awk '$2 == "/" { d = $1 } END { print d }' /proc/self/mounts)
root_type=$(awk '$2 == "/" { t = $3 } END { print t }' /proc/self/mounts)
root_opts=$(awk '$2 == "/" { o = $4 } END { print o }' /proc/self/mounts)
case "$root_dev" in
    /dev/dm-*)
        name=$(cat "/sys/block/${root_dev#/dev/}/dm/name" 2>/dev/null) && root_dev="/dev/mapper/$name" ;;
esac
uuid=
for link in /dev/disk/by-uuid/*; do
    [ -e "$link" ] || continue
    if [ "$(readlink -f "$link")" = "$(readlink -f "$root_dev")" ]; then
        uuid="${link##*/}"
    fi
done
case "$root_dev" in
    /dev/mapper/*) root="$root_dev" ;;
    *) if [ -n "$uuid" ]; then root="UUID=$uuid"; else root="$root_dev"; fi ;;
esac
flags=
if [ "$root_type" = btrfs ]; then
    sub=$(echo "$root_opts" | tr , '\n' | sed -n 's|^subvol=/*||p')
    [ -n "$sub" ] && flags=" rootflags=subvol=$sub"
fi
prefix=/boot
if awk '$2 == "/boot" { f = 1 } END { exit !f }' /proc/self/mounts; then
    prefix=
fi
echo "Generating grub configuration file ..." >&2
{
    echo "# Written by the OSAM storage test guest's stand-in for grub-mkconfig"
    echo "set default=0"
    echo "set timeout=$GRUB_TIMEOUT"
    for k in $(ls /boot/vmlinuz-* 2>/dev/null | sort -r); do
        v="${k#/boot/vmlinuz-}"
        echo "Found linux image: $k" >&2
        echo "menuentry 'Debian GNU/Linux, with Linux $v' {"
        echo "	linux	$prefix/vmlinuz-$v root=$root ro$flags $GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"
        if [ -e "/boot/initrd.img-$v" ]; then
            echo "Found initrd image: /boot/initrd.img-$v" >&2
            echo "	initrd	$prefix/initrd.img-$v"
        fi
        echo "}"
    done
} > "$out.new" || exit 1
mv "$out.new" "$out"
echo "done" >&2
"##;

const UPDATE_GRUB: &str = "#!/bin/sh\n\
# OSAM storage test guest: update-grub, as Debian's.\n\
echo \"update-grub $*\" >> /var/log/osam-test-tools.log\n\
exec grub-mkconfig -o /boot/grub/grub.cfg \"$@\"\n";

const MKINITRAMFS: &str = "#!/bin/sh\n\
# OSAM storage test guest: a stand-in for mkinitramfs that only records.\n\
echo \"mkinitramfs $*\" >> /var/log/osam-test-tools.log\n\
echo 'mkinitramfs: not implemented by the test guest (use update-initramfs)' >&2\n\
exit 1\n";

const DEPMOD: &str = "#!/bin/sh\n\
# OSAM storage test guest: a stand-in for depmod that only records\n\
# (modules.dep is the one the builder wrote).\n\
echo \"depmod $*\" >> /var/log/osam-test-tools.log\n";

/// busybox applets linked in the guest's `/bin` (what the stand-ins and
/// stage 1's commands use).
const GUEST_APPLETS: &[&str] = &[
    "sh", "ash", "awk", "basename", "cat", "chmod", "chown", "cp", "cpio", "cut", "date", "dd",
    "df", "dirname", "echo", "env", "false", "find", "grep", "gunzip", "gzip", "head", "ln", "ls",
    "mkdir", "mknod", "mktemp", "more", "mount", "mv", "printf", "readlink", "realpath", "rm",
    "rmdir", "sed", "sleep", "sort", "stat", "sync", "tail", "tar", "tee", "test", "touch", "tr",
    "true", "umount", "uname", "uniq", "wc", "xargs", "zcat",
];

/// A guest tree under construction in a host folder.
struct TreeWriter<'a> {
    root: &'a Path,
}

impl TreeWriter<'_> {
    fn path(&self, p: &str) -> Result<PathBuf> {
        let path = self.root.join(p.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        Ok(path)
    }

    fn file(&self, p: &str, data: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        let path = self.path(p)?;
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))
    }

    fn text(&self, p: &str, text: &str) -> Result<()> {
        self.file(p, text, 0o644)
    }

    fn script(&self, p: &str, text: &str) -> Result<()> {
        self.file(p, text, 0o755)
    }

    fn dir(&self, p: &str, mode: u32) -> Result<()> {
        let path = self.root.join(p.trim_start_matches('/'));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))
    }

    fn link(&self, p: &str, target: &str) -> Result<()> {
        let path = self.path(p)?;
        symlink(target, &path).with_context(|| format!("linking {}", path.display()))
    }
}

/// What the guest trees are made from: the stack kernel's modules and the
/// pinned busybox-static.
pub struct TreeInputs {
    kernel: KernelTree,
    modules: ModuleDb,
    busybox: Vec<u8>,
}

impl TreeInputs {
    /// Loads them (the pinned kernel and busybox-static of x86_64).
    pub fn load() -> Result<TreeInputs> {
        let kernel = paths::kernel_tree(Arch::X86_64).context("the stack kernel")?;
        let modules = kernel
            .modules()
            .with_context(|| format!("reading the modules of {}", kernel.release))?;
        let busybox = busybox_static(Arch::X86_64)?;
        Ok(TreeInputs {
            kernel,
            modules,
            busybox,
        })
    }
}

/// The pinned busybox-static binary of `arch`.
fn busybox_static(arch: Arch) -> Result<Vec<u8>> {
    let pin: Pin = paths::pins()?
        .into_iter()
        .find(|p| p.arch == arch.debian_arch() && p.package == "busybox-static")
        .context("no busybox-static pin in image/pins.txt")?;
    let deb_path = paths::fetch_inputs()?.join(pin.deb_file_name());
    let deb = Deb::open(&deb_path)?;
    let mut out = None;
    deb.for_each_data_entry(|path, _, reader| {
        if path == Path::new("bin/busybox") {
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| anyhow::anyhow!("reading bin/busybox: {e}"))?;
            out = Some(bytes);
        }
        Ok::<(), anyhow::Error>(())
    })
    .with_context(|| format!("reading {}", deb_path.display()))?;
    out.with_context(|| format!("{} has no bin/busybox", deb_path.display()))
}

/// A gzip'ed newc initramfs for the guest kernel with `modules` (and their
/// dependencies), an init script and modules.dep.
fn initramfs_image(inputs: &TreeInputs, modules: &[&str]) -> Result<Vec<u8>> {
    let closure = inputs.modules.closure(modules.iter().copied());
    ensure!(
        closure.missing.is_empty(),
        "the stack kernel has no module {}",
        closure.missing.join(", ")
    );
    let mut cpio = Cpio::with_epoch(TEST_EPOCH);
    let base = format!("usr/lib/modules/{GUEST_KERNEL}");
    let subset = inputs
        .modules
        .subset(closure.modules.iter().map(String::as_str));
    for m in subset.modules() {
        let src = inputs.kernel.modules_dir.join(&m.path);
        let bytes = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        cpio.add_file(&format!("{base}/{}", m.path), 0o644, bytes)?;
    }
    cpio.add_file(&format!("{base}/modules.dep"), 0o644, subset.modules_dep())?;
    cpio.add_file(
        "init",
        0o755,
        "#!/bin/sh\necho 'OSAM test guest initramfs'\n",
    )?;
    cpio.add_symlink("lib", "usr/lib")?;
    let raw = cpio.to_bytes()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw)?;
    Ok(gz.finish()?)
}

/// Writes the guest's file tree into `root`.
pub fn write_tree(spec: &GuestSpec, inputs: &TreeInputs, root: &Path) -> Result<()> {
    let t = TreeWriter { root };
    for (dir, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("mnt", 0o755),
        ("media", 0o755),
        ("srv", 0o755),
        ("opt", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("var/log", 0o755),
        ("home", 0o755),
        ("etc/network/interfaces.d", 0o755),
        ("boot/grub/i386-pc", 0o755),
    ] {
        t.dir(dir, mode)?;
    }
    // busybox as the shell and the tools.
    t.file("bin/busybox", &inputs.busybox, 0o755)?;
    for applet in GUEST_APPLETS {
        t.link(&format!("bin/{applet}"), "busybox")?;
    }
    t.link("bin/[", "busybox")?;
    // systemd as the init system (the stage-2 hook is a systemd unit).
    t.link("lib/systemd/systemd", "/bin/busybox")?;
    t.link("sbin/init", "/lib/systemd/systemd")?;
    t.text(
        "lib/systemd/system/multi-user.target",
        "[Unit]\nDescription=Multi-User System\n",
    )?;
    t.link(
        "etc/systemd/system/default.target",
        "/lib/systemd/system/multi-user.target",
    )?;

    // /etc
    t.text("etc/os-release", OS_RELEASE)?;
    t.text("etc/debian_version", "11.9\n")?;
    t.text("etc/hostname", &format!("{}\n", spec.hostname))?;
    t.text(
        "etc/hosts",
        &format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n", spec.hostname),
    )?;
    t.text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")?;
    t.text("etc/group", "root:x:0:\n")?;
    t.text("etc/fstab", &spec.fstab)?;
    t.text("etc/network/interfaces", INTERFACES)?;
    t.text("etc/default/grub", DEFAULT_GRUB)?;
    t.text(
        "etc/initramfs-tools/initramfs.conf",
        "# initramfs.conf\nMODULES=list\nBUSYBOX=auto\nCOMPRESS=gzip\n",
    )?;
    let mut initramfs_modules = String::from(
        "# List of modules that you want to include in your initramfs.\n\
         # They will be loaded at boot time in the order below.\n\
         virtio_pci\nvirtio_blk\nvirtio_net\n",
    );
    for m in spec.initramfs_modules {
        initramfs_modules.push_str(m);
        initramfs_modules.push('\n');
    }
    t.text("etc/initramfs-tools/modules", &initramfs_modules)?;
    if let Some(md) = &spec.md {
        t.text(
            "etc/mdadm/mdadm.conf",
            &format!(
                "# mdadm.conf\n#\n# !NB! Run update-initramfs -u after updating this file.\n\
                 HOMEHOST <system>\nMAILADDR root\n\n\
                 # definitions of existing MD arrays\n\
                 ARRAY /dev/{} metadata=1.2 UUID={} name={}:{}\n",
                md.name, md.uuid, md.homehost, md.md_name
            ),
        )?;
    }

    // The tools stage 1 runs in the guest.
    t.script("usr/sbin/update-initramfs", UPDATE_INITRAMFS)?;
    t.script("usr/sbin/mkinitramfs", MKINITRAMFS)?;
    t.script("usr/sbin/grub-install", GRUB_INSTALL)?;
    t.script("usr/sbin/grub-mkconfig", GRUB_MKCONFIG)?;
    t.script("usr/sbin/update-grub", UPDATE_GRUB)?;
    t.script("sbin/depmod", DEPMOD)?;
    t.text(
        "usr/lib/grub/i386-pc/boot.img",
        "OSAM test stand-in for boot.img\n",
    )?;
    t.text("usr/lib/grub/i386-pc/normal.mod", "")?;
    t.text("boot/grub/i386-pc/normal.mod", "")?;

    // The kernel, its modules and its initramfs.
    let v = GUEST_KERNEL;
    t.text(
        &format!("boot/vmlinuz-{v}"),
        "OSAM test stand-in for a kernel image\n",
    )?;
    t.text(
        &format!("boot/config-{v}"),
        "CONFIG_X86_64=y\nCONFIG_VMWARE_PVSCSI=m\nCONFIG_BLK_DEV_DM=m\nCONFIG_MD_RAID1=m\n",
    )?;
    t.text(&format!("boot/System.map-{v}"), "")?;
    t.link("vmlinuz", &format!("boot/vmlinuz-{v}"))?;
    t.link("initrd.img", &format!("boot/initrd.img-{v}"))?;
    let closure = inputs.modules.closure(GUEST_MODULES.iter().copied());
    ensure!(
        closure.missing.is_empty(),
        "the stack kernel {} has no module {}",
        inputs.kernel.release,
        closure.missing.join(", ")
    );
    let subset = inputs
        .modules
        .subset(closure.modules.iter().map(String::as_str));
    let moddir = format!("lib/modules/{v}");
    for m in subset.modules() {
        let src = inputs.kernel.modules_dir.join(&m.path);
        let bytes = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        t.file(&format!("{moddir}/{}", m.path), bytes, 0o644)?;
    }
    for (name, text) in subset.index_files() {
        t.text(&format!("{moddir}/{name}"), &text)?;
    }
    let mut boot_modules = vec!["virtio_pci", "virtio_blk", "virtio_net"];
    boot_modules.extend(spec.initramfs_modules);
    t.file(
        &format!("boot/initrd.img-{v}"),
        initramfs_image(inputs, &boot_modules)?,
        0o644,
    )?;
    let root = spec.root_fs();
    let boot_prefix = if spec.mounts().iter().any(|(mp, _, _)| *mp == "/boot") {
        ""
    } else {
        "/boot"
    };
    t.text(
        "boot/grub/grub.cfg",
        &format!(
            "# DO NOT EDIT THIS FILE\n# It is automatically generated by grub-mkconfig\n\
             set default=0\nset timeout=5\n\
             menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os {{\n\
             \tinsmod part_msdos\n\tinsmod {fs}\n\
             \tlinux\t{boot_prefix}/vmlinuz-{v} {} ro console=tty0 console=ttyS0,115200 quiet\n\
             \tinitrd\t{boot_prefix}/initrd.img-{v}\n}}\n",
            spec.source_root_arg,
            fs = if root.kind == FsKind::Xfs { "xfs" } else { "ext2" },
        ),
    )?;

    // Some user data, on the file systems that hold it.
    t.text(
        "home/debian/.profile",
        "# ~/.profile of the OSAM storage test guest\n",
    )?;
    if spec.mounts().iter().any(|(mp, _, _)| *mp == "/data") {
        t.text(
            "data/README",
            "The OSAM storage test guest's data volume.\n",
        )?;
    }
    t.text(TOOL_LOG, "")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The scripts run in the stack's rescue shell

/// The lines every script starts with: helpers, the guest disks found by
/// SCSI address (`$D0`, `$D1`, …) and made writable, and whatever the
/// rescue mode may have taken (mounts under /sysroot, LVs, arrays)
/// released.
fn script_prelude(spec: &GuestSpec) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
# Written by osam_qemu::storage_guests; run in the stack's rescue shell.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LVMCONF='devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 } activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }'
fail() { echo "@@osam FAILED: $*"; echo "OSAM-RESULT: failed"; exit 1; }
step() { echo "@@osam step: $*"; "$@"; rc=$?; [ $rc -eq 0 ] || fail "rc=$rc: $*"; }
check() {
    id=$1; shift
    "$@" > /tmp/osam-check.out 2>&1; rc=$?
    tail -n 15 /tmp/osam-check.out | sed "s/^/@@osam out $id: /"
    echo "@@osam check $id rc=$rc"
}
value() { echo "@@osam value $1=$2"; }
dump() { [ -f "$2" ] && sed "s/^/@@osam file $1: /" "$2"; echo "@@osam value file-$1=$([ -f "$2" ] && echo present || echo missing)"; }
disk() {
    i=0
    while [ $i -lt 120 ]; do
        d=$(ls /sys/bus/scsi/devices/*:0:$1:0/block 2>/dev/null)
        [ -n "$d" ] && { echo "/dev/$d"; return 0; }
        sleep 0.5; i=$((i + 1))
    done
    return 1
}
set_swap_uuid() { printf "$2" | dd of="$1" bs=1 seek=1036 count=16 conv=notrunc 2>/dev/null; }
mkdir -p /run/lock/lvm /mnt/g
for m in $(awk '$2 ~ "^/sysroot" { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
done
lvm vgchange --config "$LVMCONF" -an >/dev/null 2>&1
mdadm --stop --scan >/dev/null 2>&1
"#,
    );
    for d in 0..spec.disks.len() {
        let _ = writeln!(
            s,
            "D{d}=$(disk {d}) || fail \"no disk at scsi0:{d}\"\n\
             for b in $D{d} $D{d}[0-9]*; do [ -b \"$b\" ] && blockdev --setrw \"$b\"; done\n\
             echo \"@@osam step: scsi0:{d} is $D{d}\""
        );
    }
    s
}

/// The check id of the read-only mount at `mp` (`mount-root`,
/// `mount-boot`, `mount-data`, `mount-home`).
pub fn mount_check_id(mp: &str) -> String {
    if mp == "/" {
        "mount-root".to_owned()
    } else {
        format!("mount{}", mp.replace('/', "-"))
    }
}

/// The 16 bytes of a UUID as printf's octal escapes.
fn uuid_octal(uuid: &str) -> String {
    let hex: String = uuid.chars().filter(char::is_ascii_hexdigit).collect();
    (0..16)
        .map(|i| {
            let byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
            format!("\\{byte:03o}")
        })
        .collect()
}

/// The build script: storage stack, file systems, the tree copied in,
/// everything released, `OSAM-RESULT: ok`, power-off.
pub fn build_script(spec: &GuestSpec) -> String {
    let vg = spec.vg.as_ref();
    let part = |(d, n): (usize, u32)| format!("${{D{d}}}{n}");
    let mut s = script_prelude(spec);
    if let Some(md) = &spec.md {
        let members: Vec<String> = md.members.iter().map(|m| part(*m)).collect();
        let _ = writeln!(
            s,
            "step mdadm --create /dev/{} --run --metadata=1.2 --level=1 --raid-devices={} \
             --assume-clean --bitmap=none --homehost={} --name={} --uuid={} {}",
            md.name,
            members.len(),
            md.homehost,
            md.md_name,
            md.uuid,
            members.join(" ")
        );
    }
    if let Some(vg) = vg {
        let pvs: Vec<String> = vg.pvs.iter().map(|p| part(*p)).collect();
        let _ = writeln!(
            s,
            "step lvm pvcreate --config \"$LVMCONF\" -ff -y {}",
            pvs.join(" ")
        );
        let _ = writeln!(
            s,
            "step lvm vgcreate --config \"$LVMCONF\" {} {}",
            vg.name,
            pvs.join(" ")
        );
        for lv in &vg.lvs {
            let _ = writeln!(
                s,
                "step lvm lvcreate --config \"$LVMCONF\" -y -Wy -Zy -n {} -L {}m {} {}",
                lv.name,
                lv.size_mib,
                vg.name,
                part(lv.pv)
            );
        }
    }
    for f in &spec.filesystems {
        let dev = f.dev.shell(vg);
        let _ = match f.kind {
            FsKind::Ext4 => writeln!(s, "step mkfs.ext4 -q -F -U {} -L {} {dev}", f.uuid, f.label),
            FsKind::Xfs => writeln!(
                s,
                "step mkfs.xfs -q -f -m uuid={} -L {} {dev}",
                f.uuid, f.label
            ),
            FsKind::Btrfs => writeln!(
                s,
                "step mkfs.btrfs -q -f -U {} -L {} {dev}",
                f.uuid, f.label
            ),
            FsKind::Swap => writeln!(
                s,
                "step busybox mkswap -L {} {dev}\nstep set_swap_uuid {dev} '{}'",
                f.label,
                uuid_octal(f.uuid)
            ),
        };
        let subvols: Vec<&str> = f.mounts.iter().filter_map(|(_, sub)| *sub).collect();
        if !subvols.is_empty() {
            let _ = writeln!(s, "step mount -t btrfs {dev} /mnt/g");
            for sub in subvols {
                let _ = writeln!(s, "step btrfs subvolume create /mnt/g/{sub}");
            }
            let _ = writeln!(s, "step umount /mnt/g");
        }
    }
    let mounts = spec.mounts();
    for (mp, f, sub) in &mounts {
        let at = format!("/mnt/g{}", if *mp == "/" { "" } else { mp });
        let opts = sub.map(|s| format!(" -o subvol={s}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "step mkdir -p {at}\nstep mount -t {}{opts} {} {at}",
            f.kind.name(),
            f.dev.shell(vg)
        );
    }
    s.push_str(
        "step sh -c 'cd /tmp/osam-payload/osam/tree && tar -cf - . | tar -xf - -C /mnt/g'\n\
         step sync\n",
    );
    for (mp, _, _) in mounts.iter().rev() {
        let _ = writeln!(s, "step umount /mnt/g{}", if *mp == "/" { "" } else { mp });
    }
    if let Some(vg) = vg {
        let _ = writeln!(s, "step lvm vgchange --config \"$LVMCONF\" -an {}", vg.name);
    }
    if let Some(md) = &spec.md {
        let _ = writeln!(s, "step mdadm --stop /dev/{}", md.name);
    }
    s.push_str("step sync\necho \"OSAM-RESULT: ok\"\nsync\npoweroff -f\n");
    s
}

/// The check script: the md members' superblock state, every file
/// system's check, the ext4 states, the swap signatures, then the root
/// (and its sub-mounts) mounted read-only and the files a test reads
/// printed; everything released again. Each result is an `@@osam check`
/// or `@@osam value` line (see [`CheckReport`]).
pub fn check_script(spec: &GuestSpec) -> String {
    let vg = spec.vg.as_ref();
    let part = |(d, n): (usize, u32)| format!("${{D{d}}}{n}");
    let mut s = script_prelude(spec);
    if let Some(md) = &spec.md {
        for (i, m) in md.members.iter().enumerate() {
            let dev = part(*m);
            let _ = writeln!(
                s,
                "value md-state-{i} \"$(mdadm --examine {dev} 2>&1 | sed -n 's/^ *State : //p')\""
            );
        }
        let members: Vec<String> = md.members.iter().map(|m| part(*m)).collect();
        let _ = writeln!(
            s,
            "check md-assemble mdadm --assemble --readonly /dev/{} {}",
            md.name,
            members.join(" ")
        );
    }
    if let Some(vg) = vg {
        let _ = writeln!(
            s,
            "check vg-activate lvm vgchange --config \"$LVMCONF\" -ay {}",
            vg.name
        );
    }
    for f in &spec.filesystems {
        let dev = f.dev.shell(vg);
        let id = f.label;
        let _ = match f.kind {
            FsKind::Ext4 => writeln!(
                s,
                "value fs-state-{id} \"$(dumpe2fs -h {dev} 2>/dev/null | sed -n 's/^Filesystem state: *//p')\"\n\
                 value fs-features-{id} \"$(dumpe2fs -h {dev} 2>/dev/null | sed -n 's/^Filesystem features: *//p')\"\n\
                 check fsck-{id} e2fsck -fn {dev}"
            ),
            FsKind::Xfs => writeln!(s, "check fsck-{id} xfs_repair -n {dev}"),
            FsKind::Btrfs => writeln!(s, "check fsck-{id} btrfs check --readonly {dev}"),
            FsKind::Swap => writeln!(
                s,
                "value swap-signature-{id} \"$(dd if={dev} bs=1 skip=4086 count=10 2>/dev/null)\""
            ),
        };
    }
    let mounts = spec.mounts();
    for (mp, f, sub) in &mounts {
        let at = format!("/mnt/g{}", if *mp == "/" { "" } else { mp });
        let mut opts = vec!["ro"];
        if f.kind == FsKind::Ext4 {
            opts.push("noload");
        }
        if f.kind == FsKind::Xfs {
            opts.push("norecovery");
        }
        let sub_opt = sub.map(|s| format!("subvol={s}"));
        if let Some(o) = &sub_opt {
            opts.push(o);
        }
        let _ = writeln!(
            s,
            "check {} mount -t {} -o {} {} {at}",
            mount_check_id(mp),
            f.kind.name(),
            opts.join(","),
            f.dev.shell(vg)
        );
    }
    let v = GUEST_KERNEL;
    let _ = writeln!(
        s,
        "dump fstab /mnt/g/etc/fstab\n\
         dump tools /mnt/g{TOOL_LOG}\n\
         dump grub.cfg /mnt/g/boot/grub/grub.cfg\n\
         dump initramfs-modules /mnt/g/etc/initramfs-tools/modules\n\
         value initrd-pvscsi \"$(zcat /mnt/g/boot/initrd.img-{v} | cpio -t 2>/dev/null | grep -c 'vmw_pvscsi\\.ko')\"\n\
         value osam-data \"$(ls /mnt/g/opt/vmware/hcx/osam/data 2>&1 | tr '\\n' ' ')\""
    );
    for (mp, _, _) in mounts.iter().rev() {
        let _ = writeln!(s, "umount /mnt/g{}", if *mp == "/" { "" } else { mp });
    }
    if let Some(vg) = vg {
        let _ = writeln!(
            s,
            "check vg-deactivate lvm vgchange --config \"$LVMCONF\" -an {}",
            vg.name
        );
    }
    if let Some(md) = &spec.md {
        let _ = writeln!(s, "check md-stop mdadm --stop /dev/{}", md.name);
    }
    s.push_str("echo \"OSAM-RESULT: ok\"\nsync\npoweroff -f\n");
    s
}

// ---------------------------------------------------------------------------
// The stack's rescue shell as a work horse

/// The stack's kernel and initramfs, for direct (`-kernel`) boots.
#[derive(Debug, Clone)]
pub struct StackBoot {
    /// The stack.
    pub arch: Arch,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
}

/// Copies the kernel and initramfs out of the stack image's ESP into
/// `dir`.
pub fn stack_boot(image: &StackImage, dir: &Path) -> Result<StackBoot> {
    let bytes = fs::read(&image.raw).with_context(|| format!("reading {}", image.raw.display()))?;
    let gpt = gpt::GptConfig::new()
        .writable(false)
        .open_from_device(Cursor::new(bytes.clone()))
        .with_context(|| format!("{}: no valid GPT", image.raw.display()))?;
    let esp = gpt
        .partitions()
        .values()
        .find(|p| p.part_type_guid == gpt::partition_types::EFI)
        .with_context(|| format!("{} has no EFI system partition", image.raw.display()))?;
    let start = usize::try_from(esp.first_lba * 512)?;
    let end = usize::try_from((esp.last_lba + 1) * 512)?;
    let slice = bytes
        .get(start..end)
        .context("the ESP lies beyond the end of the image")?
        .to_vec();
    let fat = fatfs::FileSystem::new(Cursor::new(slice), fatfs::FsOptions::new())
        .context("the ESP is not a FAT file system")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let copy = |from: &str, to: &str| -> Result<PathBuf> {
        let mut file = fat
            .root_dir()
            .open_file(from)
            .with_context(|| format!("{from} is not on the ESP of {}", image.raw.display()))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .with_context(|| format!("reading {from} from the ESP"))?;
        let path = dir.join(to);
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let kernel = copy(osam_image::disk::KERNEL_PATH, "vmlinuz")?;
    let initrd = copy(osam_image::disk::INITRD_PATH, "initrd.img")?;
    Ok(StackBoot {
        arch: image.arch,
        kernel,
        initrd,
    })
}

/// A disk on the VM's `pvscsi0` controller.
#[derive(Debug, Clone)]
pub struct ScsiDisk {
    /// The image.
    pub path: PathBuf,
    /// Its format (`raw`, `qcow2`, `vmdk`).
    pub format: &'static str,
    /// Its SCSI target id.
    pub scsi_id: u8,
    /// Guest writes go to a temporary overlay.
    pub snapshot: bool,
}

impl ScsiDisk {
    /// A disk written for real.
    pub fn writable(path: impl Into<PathBuf>, format: &'static str, scsi_id: u8) -> Self {
        ScsiDisk {
            path: path.into(),
            format,
            scsi_id,
            snapshot: false,
        }
    }
}

/// QEMU's arguments for `disks` on the controller `pvscsi0` (which the
/// caller creates, or [`crate::vm::Disk`] on pvscsi does).
pub fn scsi_disk_args(disks: &[ScsiDisk]) -> Vec<String> {
    let mut args = Vec::new();
    for d in disks {
        let id = format!("scsi{}", d.scsi_id);
        let mut drive = format!(
            "if=none,id={id},file={},format={}",
            d.path.to_string_lossy().replace(',', ",,"),
            d.format
        );
        if d.snapshot {
            drive.push_str(",snapshot=on");
        }
        args.extend([
            "-drive".to_owned(),
            drive,
            "-device".to_owned(),
            format!("scsi-hd,bus=pvscsi0.0,scsi-id={},drive={id}", d.scsi_id),
        ]);
    }
    args
}

/// What a script printed in the rescue shell.
#[derive(Debug, Clone)]
pub struct RescueOutput {
    /// The serial console from the typed line on, as the socket delivered
    /// it.
    pub transcript: String,
    /// The same from QEMU's serial log file.
    pub log: String,
    /// The serial log file.
    pub log_path: PathBuf,
    /// The VM's run time.
    pub elapsed: Duration,
}

/// The line typed in the rescue shell: find the payload disk, unpack it to
/// /tmp/osam-payload, run its script. The markers it prints on failure are
/// built at run time, so that the echo of the typed line never matches.
fn launcher() -> String {
    format!(
        "for i in $(seq 120); do p=$(ls /sys/bus/scsi/devices/*:0:{PAYLOAD_SCSI_ID}:0/block 2>/dev/null); \
         [ -n \"$p\" ] && break; sleep 0.5; done; mkdir -p /tmp/osam-payload && \
         tar -xf /dev/$p -C /tmp/osam-payload && sh /tmp/osam-payload/osam/run.sh \
         || echo OSAM-RESULT$(echo :) launch-failed"
    )
}

/// Boots the stack's rescue shell with `disks` and the payload at
/// [`PAYLOAD_SCSI_ID`], runs the payload's script and waits for its
/// `OSAM-RESULT:` line and the power-off. Fails naming `name` with the
/// serial log's tail when the script fails, hangs or the VM dies.
pub fn run_rescue_script(
    boot: &StackBoot,
    disks: &[ScsiDisk],
    payload: &Path,
    work: &Path,
    name: &str,
    timeout: Duration,
) -> Result<RescueOutput> {
    let serial = work.join(format!("{name}-serial.log"));
    let mut all = disks.to_vec();
    all.push(ScsiDisk {
        path: payload.to_path_buf(),
        format: "raw",
        scsi_id: PAYLOAD_SCSI_ID,
        snapshot: true,
    });
    let config = VmConfig::new(boot.arch, &boot.kernel, &boot.initrd, &serial)
        .memory(RESCUE_MEMORY_MIB)
        .cmdline_arg("osam.mode=rescue")
        .cmdline_arg("osam.after=shell")
        .cmdline_arg("quiet")
        .cmdline_arg("loglevel=4")
        .interactive_serial(work.join(format!("{name}-serial.sock")))
        .args(["-device", "pvscsi,id=pvscsi0", "-nic", "none"])
        .args(scsi_disk_args(&all));
    let mut vm = Vm::start(&config).with_context(|| format!("{name}: starting QEMU"))?;
    let outcome = drive_rescue(&mut vm, &serial, name, timeout);
    if vm.is_running() {
        vm.kill();
    }
    let out = outcome?;
    Ok(RescueOutput {
        elapsed: vm.elapsed(),
        ..out
    })
}

fn drive_rescue(vm: &mut Vm, serial: &Path, name: &str, timeout: Duration) -> Result<RescueOutput> {
    let mut console = vm
        .serial_console()
        .with_context(|| format!("{name}: connecting to the serial console"))?;
    vm.wait_for_serial("osam# ", PROMPT_TIMEOUT)
        .with_context(|| format!("{name}: waiting for the rescue shell"))?;
    // Let PID 1 finish its messages and the shell settle.
    std::thread::sleep(Duration::from_secs(2));
    let log_mark = vm.serial_log_len();
    let transcript_mark = console.transcript().len();
    console
        .send_line(&launcher())
        .with_context(|| format!("{name}: typing on the serial console"))?;
    let log_path = serial.to_path_buf();
    let result_line = |text: &str| -> Option<String> {
        let at = text.find("OSAM-RESULT: ")?;
        let end = text[at..].find('\n')?;
        Some(text[at..at + end].trim().to_owned())
    };
    let read_log = |mark: usize| -> String {
        let bytes = fs::read(&log_path).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).replace('\r', "")
    };
    let result = vm
        .wait_for(
            || {
                let transcript = console.transcript();
                transcript
                    .get(transcript_mark..)
                    .and_then(result_line)
                    .or_else(|| result_line(&read_log(log_mark)))
            },
            timeout,
            "the script's OSAM-RESULT line",
        )
        .with_context(|| format!("{name}: running the script"))?;
    let transcript = console
        .transcript()
        .get(transcript_mark..)
        .unwrap_or_default()
        .to_owned();
    if result != "OSAM-RESULT: ok" {
        bail!(
            "{name}: the script ended with {result:?}\n--- last lines of the serial log {} ---\n{}",
            serial.display(),
            tail_lines(&read_log(log_mark), 60)
        );
    }
    let deadline = Instant::now() + POWEROFF_TIMEOUT;
    while vm.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    if vm.is_running() {
        bail!(
            "{name}: no power-off within {POWEROFF_TIMEOUT:?} of the script's end\n\
             --- last lines of the serial log {} ---\n{}",
            serial.display(),
            vm.serial_tail(30)
        );
    }
    drop(console);
    Ok(RescueOutput {
        transcript,
        log: read_log(log_mark),
        log_path: serial.to_path_buf(),
        elapsed: vm.elapsed(),
    })
}

/// Packs `staging/osam` as a tar archive on a raw disk image (padded to
/// whole MiB) at `out`; the archive is byte-for-byte reproducible.
fn pack_payload(staging: &Path, out: &Path) -> Result<()> {
    paths::run(
        Command::new("tar")
            .args([
                "--format=ustar",
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                &format!("--mtime=@{TEST_EPOCH}"),
                "-cf",
            ])
            .arg(out)
            .arg("-C")
            .arg(staging)
            .arg("osam"),
    )
    .context("packing the payload with tar")?;
    let len = fs::metadata(out)?.len();
    let padded = len.div_ceil(1 << 20).max(1) << 20;
    let file = fs::OpenOptions::new().write(true).open(out)?;
    file.set_len(padded)?;
    Ok(())
}

/// A payload disk holding `script` as `osam/run.sh` and, where given, the
/// guest tree as `osam/tree/`.
fn payload(work: &Path, name: &str, script: &str, tree: Option<&Path>) -> Result<PathBuf> {
    let staging = work.join(format!("{name}-staging"));
    let osam = staging.join("osam");
    fs::create_dir_all(&osam).with_context(|| format!("creating {}", osam.display()))?;
    fs::write(osam.join("run.sh"), script)?;
    fs::set_permissions(osam.join("run.sh"), fs::Permissions::from_mode(0o755))?;
    if let Some(tree) = tree {
        fs::rename(tree, osam.join("tree"))
            .with_context(|| format!("moving {} into the payload", tree.display()))?;
    }
    let out = work.join(format!("{name}-payload.raw"));
    pack_payload(&staging, &out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Building and caching

/// A guest's disks, built (or found in the cache).
#[derive(Debug, Clone)]
pub struct BuiltGuest {
    /// What it is.
    pub spec: GuestSpec,
    /// The cache folder.
    pub dir: PathBuf,
    /// Its qcow2 disks, in scsi0:0, scsi0:1, … order.
    pub disks: Vec<PathBuf>,
    /// How long the build took (`None`: from the cache).
    pub built_in: Option<Duration>,
}

impl BuiltGuest {
    /// Copy-on-write overlays of the disks in `dir` (the tests write those,
    /// never the cached disks).
    pub fn overlays(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.disks
            .iter()
            .enumerate()
            .map(|(i, base)| {
                let overlay = dir.join(format!("{}-disk{i}.qcow2", self.spec.kind));
                paths::run(
                    Command::new("qemu-img")
                        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                        .arg(base)
                        .arg(&overlay),
                )
                .with_context(|| format!("creating an overlay of {}", base.display()))?;
                Ok(overlay)
            })
            .collect()
    }
}

/// The storage guests' cache folder.
pub fn cache_root() -> PathBuf {
    paths::cache_dir().join("storage-guests")
}

/// The cache key: sha256 over the builder version, the payload (the tree
/// and the script), the disk layouts and the pins file (the stack's kernel
/// and tools).
fn recipe_hash(spec: &GuestSpec, payload: &Path) -> Result<String> {
    let mut hash = Sha256::new();
    let mut add = |label: &str, bytes: &[u8]| {
        hash.update((label.len() as u64).to_le_bytes());
        hash.update(label.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    add("builder", BUILDER_VERSION.as_bytes());
    add("guest", spec.kind.name().as_bytes());
    let payload_bytes =
        fs::read(payload).with_context(|| format!("reading {}", payload.display()))?;
    add("payload", &payload_bytes);
    for (i, d) in spec.disks.iter().enumerate() {
        add(
            &format!("disk{i}"),
            format!("{} MiB\n{}", d.size_mib, d.sfdisk_script()).as_bytes(),
        );
    }
    let pins = paths::pins_file();
    add(
        "pins",
        &fs::read(&pins).with_context(|| format!("reading {}", pins.display()))?,
    );
    let digest = hash.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// A blank raw disk of `spec` at `path`, partitioned by `sfdisk`.
fn blank_disk(spec: &DiskSpec, path: &Path) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(spec.size_bytes())?;
    drop(file);
    let mut child = Command::new("sfdisk")
        .args([
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            "--wipe",
            "always",
        ])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting sfdisk (util-linux)")?;
    child
        .stdin
        .take()
        .context("sfdisk's stdin")?
        .write_all(spec.sfdisk_script().as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "sfdisk {} failed ({}): {}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The guest of `kind`, from the cache or built with the stack `boot`.
pub fn build_guest(kind: GuestKind, boot: &StackBoot) -> Result<BuiltGuest> {
    let spec = kind.spec();
    let root = cache_root();
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("osam-storage-guest-{kind}-"))
        .tempdir()
        .context("creating a work folder")?;
    let tree = work.path().join("tree");
    let inputs = TreeInputs::load()?;
    write_tree(&spec, &inputs, &tree).with_context(|| format!("{kind}: writing the guest tree"))?;
    let payload = payload(work.path(), "build", &build_script(&spec), Some(&tree))?;
    let key = recipe_hash(&spec, &payload)?;
    let dir = root.join(format!("{kind}-{key}"));
    let disk_names: Vec<String> = (0..spec.disks.len())
        .map(|i| format!("disk{i}.qcow2"))
        .collect();
    let found = |dir: &Path| disk_names.iter().map(|n| dir.join(n)).collect::<Vec<_>>();
    let _lock = FileLock::acquire(&root.join(format!("{kind}.lock")))?;
    if found(&dir).iter().all(|p| p.is_file()) {
        return Ok(BuiltGuest {
            spec,
            disks: found(&dir),
            dir,
            built_in: None,
        });
    }
    let t0 = Instant::now();
    let tmp = root.join(format!(".tmp-{kind}-{key}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let built = build_into(&spec, boot, work.path(), &payload, &tmp);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("building the {kind} guest")));
    }
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the stale {}", dir.display()))?;
    }
    fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    Ok(BuiltGuest {
        spec,
        disks: found(&dir),
        dir,
        built_in: Some(t0.elapsed()),
    })
}

fn build_into(
    spec: &GuestSpec,
    boot: &StackBoot,
    work: &Path,
    payload: &Path,
    out: &Path,
) -> Result<()> {
    let mut raws = Vec::new();
    for (i, d) in spec.disks.iter().enumerate() {
        let raw = work.join(format!("disk{i}.raw"));
        blank_disk(d, &raw)?;
        raws.push(ScsiDisk::writable(&raw, "raw", i as u8));
    }
    let run = run_rescue_script(
        boot,
        &raws,
        payload,
        work,
        &format!("build-{}", spec.kind),
        BUILD_TIMEOUT,
    );
    let log = work.join(format!("build-{}-serial.log", spec.kind));
    if log.is_file() {
        let _ = fs::copy(&log, out.join("build-serial.log"));
    }
    run?;
    for (i, raw) in raws.iter().enumerate() {
        let qcow2 = out.join(format!("disk{i}.qcow2"));
        paths::run(
            Command::new("qemu-img")
                .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
                .arg(&raw.path)
                .arg(&qcow2),
        )
        .with_context(|| format!("converting {} to qcow2", raw.path.display()))?;
    }
    fs::write(
        out.join("replica-disk-map.json"),
        serde_json::to_string_pretty(&spec.replica_disk_map())? + "\n",
    )?;
    fs::write(out.join("build.sh"), build_script(spec))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Checking a guest's disks

/// What [`check_script`] reported.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Exit status of each check (`fsck-root`, `mount-boot`, …).
    pub checks: BTreeMap<String, i32>,
    /// The last lines each check printed.
    pub outputs: BTreeMap<String, Vec<String>>,
    /// Values (`fs-state-root`, `md-state-0`, `initrd-pvscsi`, …).
    pub values: BTreeMap<String, String>,
    /// Guest files printed (`fstab`, `tools`, `grub.cfg`, …), by line.
    pub files: BTreeMap<String, Vec<String>>,
    /// The serial log file of the check.
    pub log_path: PathBuf,
}

impl CheckReport {
    /// Parses the `@@osam` lines of `text`.
    pub fn parse(text: &str) -> CheckReport {
        let mut r = CheckReport::default();
        for line in text.lines() {
            let Some(at) = line.find("@@osam ") else {
                continue;
            };
            // A byte doubled by the serial chardev now and then: keys are
            // trimmed.
            let rest = line[at + "@@osam ".len()..].trim_start();
            if let Some(c) = rest.strip_prefix("check ") {
                if let Some((id, rc)) = c.rsplit_once(" rc=") {
                    if let Ok(rc) = rc.trim().parse() {
                        r.checks.insert(id.trim().to_owned(), rc);
                    }
                }
            } else if let Some(v) = rest.strip_prefix("value ") {
                if let Some((k, v)) = v.split_once('=') {
                    r.values.insert(k.trim().to_owned(), v.to_owned());
                }
            } else if let Some(f) = rest.strip_prefix("file ") {
                if let Some((k, l)) = f.split_once(": ") {
                    r.files
                        .entry(k.trim().to_owned())
                        .or_default()
                        .push(l.to_owned());
                } else if let Some(k) = f.strip_suffix(':') {
                    r.files.entry(k.to_owned()).or_default().push(String::new());
                }
            } else if let Some(o) = rest.strip_prefix("out ") {
                if let Some((k, l)) = o.split_once(": ") {
                    r.outputs
                        .entry(k.to_owned())
                        .or_default()
                        .push(l.to_owned());
                }
            }
        }
        r
    }

    /// The failed checks, with what they printed.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|(_, rc)| **rc != 0)
            .map(|(id, rc)| {
                format!(
                    "{id} exited {rc}: {}",
                    self.outputs
                        .get(id)
                        .map(|o| o.join(" | "))
                        .unwrap_or_default()
                )
            })
            .collect()
    }

    /// A printed file as text.
    pub fn file(&self, key: &str) -> Option<String> {
        self.files.get(key).map(|lines| {
            let mut s = lines.join("\n");
            s.push('\n');
            s
        })
    }
}

/// Boots the stack's rescue shell over `disks` (the guest's, in scsi0:0,
/// … order; written copy-on-write, so never changed) and runs
/// [`check_script`]. The report takes the socket's transcript first and
/// the serial log file where the transcript lacks a line.
pub fn check_disks(
    spec: &GuestSpec,
    boot: &StackBoot,
    disks: &[PathBuf],
    work: &Path,
) -> Result<CheckReport> {
    let payload = payload(work, "check", &check_script(spec), None)?;
    let attached: Vec<ScsiDisk> = disks
        .iter()
        .enumerate()
        .map(|(i, p)| ScsiDisk {
            path: p.clone(),
            format: "qcow2",
            scsi_id: i as u8,
            snapshot: true,
        })
        .collect();
    let out = run_rescue_script(
        boot,
        &attached,
        &payload,
        work,
        &format!("check-{}", spec.kind),
        CHECK_TIMEOUT,
    )?;
    let mut report = CheckReport::parse(&out.transcript);
    let from_log = CheckReport::parse(&out.log);
    for (k, v) in from_log.checks {
        report.checks.entry(k).or_insert(v);
    }
    for (k, v) in from_log.values {
        report.values.entry(k).or_insert(v);
    }
    for (k, v) in from_log.files {
        report.files.entry(k).or_insert(v);
    }
    for (k, v) in from_log.outputs {
        report.outputs.entry(k).or_insert(v);
    }
    report.log_path = out.log_path;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_expectations() {
        let two = GuestKind::TwoDisks.spec();
        let after = two.expected_fstab();
        assert!(after.contains("UUID=8dbf4235-6b70-4e9d-a0a1-405b6c7d8e90       /"));
        assert!(after.contains("UUID=8dbf4235-6b70-4e9d-a0a1-405b6c7d8e91       none"));
        assert!(after.contains("UUID=8dbf4235-6b70-4e9d-a0a1-405b6c7d8e92       /data"));
        assert!(!after.contains("/dev/sd"));
        let lvm = GuestKind::Lvm.spec();
        assert_eq!(lvm.expected_fstab(), lvm.fstab, "LVM names stay");
        let md = GuestKind::MdRaid1.spec();
        let after = md.expected_fstab();
        assert!(after.contains("/dev/md0 "));
        assert!(after.contains("UUID=6b9d2013-4f5e-4c7b-8d8f-2e3f4a5b6c72"));
        assert_eq!(
            GuestKind::Btrfs.spec().expected_root_args(),
            [
                "root=UUID=7cae3124-5a6f-4d8c-9e90-3f4a5b6c7d80",
                "rootflags=subvol=@"
            ]
        );
        assert_eq!(lvm.expected_root_args(), ["root=/dev/mapper/vg0-root"]);
    }

    #[test]
    fn replica_maps_describe_every_partition() {
        let lvm = GuestKind::Lvm.spec().replica_disk_map();
        assert_eq!(lvm["disks"][0]["partitions"][0]["mountPoint"], "/boot");
        assert_eq!(lvm["disks"][0]["partitions"][1]["fsType"], "LVM2_member");
        assert_eq!(lvm["disks"][1]["target"]["unit"], 1);
        assert_eq!(lvm["disks"][1]["capacityBytes"], 448u64 << 20);
        let md = GuestKind::MdRaid1.spec().replica_disk_map();
        assert_eq!(
            md["disks"][1]["partitions"][0]["fsType"],
            "linux_raid_member"
        );
        assert_eq!(md["disks"][1]["partitions"][1]["sourceDevice"], "/dev/sdb2");
        let btrfs = GuestKind::Btrfs.spec().replica_disk_map();
        assert_eq!(btrfs["disks"][0]["partitions"][0]["mountPoint"], "/");
    }

    #[test]
    fn scripts_name_every_step() {
        let lvm = build_script(&GuestKind::Lvm.spec());
        for needle in [
            "step lvm pvcreate --config \"$LVMCONF\" -ff -y ${D0}2 ${D1}1",
            "step lvm lvcreate --config \"$LVMCONF\" -y -Wy -Zy -n data -L 320m vg0 ${D1}1",
            "step mkfs.xfs -q -f -m uuid=5a8c1f02-3e4d-4b6a-9c7e-1d2f3a4b5c63 -L data /dev/mapper/vg0-data",
            "step mount -t ext4 /dev/mapper/vg0-root /mnt/g\n",
            "step mount -t ext4 ${D0}1 /mnt/g/boot",
            "step lvm vgchange --config \"$LVMCONF\" -an vg0",
            "blockdev --setrw",
        ] {
            assert!(lvm.contains(needle), "{needle}\n{lvm}");
        }
        let root_mount = lvm.find("/mnt/g\n").unwrap();
        assert!(
            root_mount < lvm.find("/mnt/g/boot").unwrap(),
            "parents first"
        );
        let btrfs = build_script(&GuestKind::Btrfs.spec());
        assert!(btrfs.contains("step btrfs subvolume create /mnt/g/@home"));
        assert!(btrfs.contains("step mount -t btrfs -o subvol=@home ${D0}1 /mnt/g/home"));
        let md = check_script(&GuestKind::MdRaid1.spec());
        assert!(
            md.contains("check md-assemble mdadm --assemble --readonly /dev/md0 ${D0}1 ${D1}1")
        );
        assert!(md.contains("check fsck-root e2fsck -fn /dev/md0"));
        assert!(md.contains("check mount-root mount -t ext4 -o ro,noload /dev/md0 /mnt/g"));
    }

    #[test]
    fn swap_uuid_bytes() {
        assert_eq!(
            uuid_octal("00010203-0405-0607-0809-0a0b0c0d0eff"),
            "\\000\\001\\002\\003\\004\\005\\006\\007\\010\\011\\012\\013\\014\\015\\016\\377"
        );
    }

    #[test]
    fn report_parsing() {
        let r = CheckReport::parse(
            "noise\n@@osam check fsck-root rc=0\n[  1.0] kmsg\n@@osam check mount-boot rc=32\n\
             @@osam out mount-boot: mount: wrong fs type\n\
             @@osam value fs-state-root=clean\n@@osam file fstab: UUID=x / ext4 defaults 0 1\n\
             @@osam file fstab: \n",
        );
        assert_eq!(r.checks["fsck-root"], 0);
        assert_eq!(r.failures(), ["mount-boot exited 32: mount: wrong fs type"]);
        assert_eq!(r.values["fs-state-root"], "clean");
        assert_eq!(r.file("fstab").unwrap(), "UUID=x / ext4 defaults 0 1\n\n");
    }
}
