//! The four storage guests: their disks and partitions, LVM and md
//! layouts, file systems with fixed UUIDs, fstab; the manager's input
//! files for them and what stage 1 must leave (fstab, GRUB's root).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::SOURCE_NIC;

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
    pub(super) fn shell(&self, vg: Option<&VgSpec>) -> String {
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
}
