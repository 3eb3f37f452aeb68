//! Recipes: everything that makes a test guest what it is, as data.
//!
//! A [`Recipe`] names the architecture, firmware, packages, disks and file
//! systems, the files to write, the NICs, the initramfs settings and the
//! boot loader's settings of a guest. Its [`Recipe::hash`] covers all of
//! it plus [`BUILDER_VERSION`], so a changed recipe or builder never comes
//! out of the cache under the old name.
//!
//! The constructors make the reference guests of the QEMU tests: Debian 12
//! as it would come from KVM (disks on virtio-scsi, so `/dev/sda`; an
//! initramfs built with `MODULES=list` that lacks `vmw_pvscsi`, so the
//! guest does not boot on VMware's paravirtual SCSI until it is fixed).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Arch;
use crate::vm::Firmware;

/// The version of the builder code: bump it whenever the builder changes
/// what it makes from a recipe (it is part of every [`Recipe::hash`]).
pub const BUILDER_VERSION: u32 = 1;

/// The Debian release of the reference guests.
pub const DEBIAN_SUITE: &str = "bookworm";

/// The root password of the reference guests.
pub const ROOT_PASSWORD: &str = "root";

/// A guest's Debian architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestArch {
    /// `amd64`, kernel `linux-image-amd64`.
    Amd64,
    /// `i386`, kernel `linux-image-686` (no PAE).
    I386,
}

impl GuestArch {
    /// Debian's name.
    pub fn debian_arch(self) -> &'static str {
        match self {
            GuestArch::Amd64 => "amd64",
            GuestArch::I386 => "i386",
        }
    }

    /// The kernel metapackage.
    pub fn kernel_package(self) -> &'static str {
        match self {
            GuestArch::Amd64 => "linux-image-amd64",
            GuestArch::I386 => "linux-image-686",
        }
    }

    /// The machine QEMU emulates for it (emulator and CPU model).
    pub fn machine(self) -> Arch {
        match self {
            GuestArch::Amd64 => Arch::X86_64,
            GuestArch::I386 => Arch::I686,
        }
    }

    /// The architecture name the stage-2 agent uses (`uname -m` style).
    pub fn agent_arch(self) -> &'static str {
        self.machine().name()
    }
}

/// How a guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestFirmware {
    /// BIOS: GRUB's `i386-pc` boot code in the MBR and the gap after it.
    Bios,
    /// UEFI: GRUB as `EFI/debian/grub<arch>.efi` on the ESP. With
    /// `removable` also at the fallback path `EFI/BOOT/BOOT<ARCH>.EFI`
    /// (Debian's `grub2/force_efi_extra_removable`); without it the guest
    /// only boots where the firmware has a boot entry for
    /// `EFI/debian/…` — a fresh VM's NVRAM has none, so the fixup must
    /// then add the fallback path or the entry.
    Uefi {
        /// Also install to the fallback path.
        removable: bool,
    },
}

impl GuestFirmware {
    /// The GRUB package of the firmware.
    pub fn grub_package(self, arch: GuestArch) -> &'static str {
        match (self, arch) {
            (GuestFirmware::Bios, _) => "grub-pc",
            (GuestFirmware::Uefi { .. }, GuestArch::Amd64) => "grub-efi-amd64",
            (GuestFirmware::Uefi { .. }, GuestArch::I386) => "grub-efi-ia32",
        }
    }

    /// `grub-install --target=`.
    pub fn grub_target(self, arch: GuestArch) -> &'static str {
        match (self, arch) {
            (GuestFirmware::Bios, _) => "i386-pc",
            (GuestFirmware::Uefi { .. }, GuestArch::Amd64) => "x86_64-efi",
            (GuestFirmware::Uefi { .. }, GuestArch::I386) => "i386-efi",
        }
    }

    /// Whether it is UEFI.
    pub fn is_uefi(self) -> bool {
        matches!(self, GuestFirmware::Uefi { .. })
    }

    /// The QEMU firmware that boots it (ia32 OVMF needs a folder for its
    /// variable store: see [`Firmware::ovmf_ia32`]).
    pub fn vm_firmware(
        self,
        arch: GuestArch,
        dir: &std::path::Path,
    ) -> crate::error::Result<Firmware> {
        match (self, arch) {
            (GuestFirmware::Bios, _) => Ok(Firmware::SeaBios),
            (GuestFirmware::Uefi { .. }, GuestArch::Amd64) => Ok(Firmware::OvmfX64),
            (GuestFirmware::Uefi { .. }, GuestArch::I386) => Firmware::ovmf_ia32(dir),
        }
    }
}

/// A partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionTable {
    /// MBR (`msdos`).
    Msdos,
    /// GPT.
    Gpt,
}

/// What a partition is for (its type in the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionKind {
    /// A Linux file system (MBR type 83, GPT "Linux filesystem").
    Linux,
    /// The EFI system partition.
    Esp,
    /// GPT's BIOS boot partition (GRUB's core image on a BIOS/GPT disk).
    BiosBoot,
    /// An LVM physical volume (MBR type 8e, GPT "Linux LVM"): see
    /// [`super::lvm`].
    LinuxLvm,
}

/// A file system type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    /// ext4.
    Ext4,
    /// FAT32 (an ESP).
    Vfat,
    /// btrfs.
    Btrfs,
    /// XFS.
    Xfs,
}

impl FsKind {
    /// The name in fstab and `mount -t`.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Vfat => "vfat",
            FsKind::Btrfs => "btrfs",
            FsKind::Xfs => "xfs",
        }
    }
}

/// How fstab and the kernel command line name a file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceRef {
    /// A device path such as `/dev/sda1` (the kernel name on the source).
    Path(String),
    /// `UUID=…` (the builder sets a UUID derived from the recipe hash).
    Uuid,
    /// `LABEL=…` (the file system needs a label).
    Label,
}

/// A mount of a file system in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Where (`/`, `/boot/efi`, `/data`).
    pub mountpoint: String,
    /// A btrfs subvolume to mount (`subvol=` is added to the options).
    pub subvolume: Option<String>,
    /// How fstab names the device (for `/`: also `root=`).
    pub source: DeviceRef,
    /// fstab's options.
    pub options: String,
    /// fstab's fsck pass.
    pub pass: u8,
}

/// A file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsSpec {
    /// The type.
    pub kind: FsKind,
    /// Its label.
    pub label: Option<String>,
    /// btrfs subvolumes to create at the top level.
    pub subvolumes: Vec<String>,
    /// Where the guest mounts it (several for btrfs subvolumes).
    pub mounts: Vec<MountSpec>,
}

/// A partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSpec {
    /// Its size; `None` takes the rest of the disk (last partition only).
    pub size_mib: Option<u64>,
    /// Its type.
    pub kind: PartitionKind,
    /// The MBR boot flag.
    pub bootable: bool,
    /// Its file system, if any.
    pub fs: Option<FsSpec>,
}

/// A disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Its size.
    pub size_mib: u64,
    /// Its partition table.
    pub table: PartitionTable,
    /// Its partitions, in order (the first starts at 1 MiB).
    pub partitions: Vec<PartitionSpec>,
}

/// The contents of a file to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileContent {
    /// A regular file.
    Text(String),
    /// A symbolic link to this target.
    Symlink(String),
}

/// A file the builder writes into the guest after the packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    /// The absolute guest path.
    pub path: String,
    /// Its mode (regular files).
    pub mode: u32,
    /// What it holds.
    pub content: FileContent,
}

impl FileSpec {
    /// A regular file.
    pub fn text(path: &str, mode: u32, text: &str) -> Self {
        Self {
            path: path.to_owned(),
            mode,
            content: FileContent::Text(text.to_owned()),
        }
    }

    /// A symbolic link.
    pub fn symlink(path: &str, target: &str) -> Self {
        Self {
            path: path.to_owned(),
            mode: 0o777,
            content: FileContent::Symlink(target.to_owned()),
        }
    }
}

/// A NIC's IPv4 configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicAddress {
    /// DHCP.
    Dhcp,
    /// A static address.
    Static {
        /// `a.b.c.d/len`.
        address: String,
        /// The default gateway, if any.
        gateway: Option<String>,
    },
}

/// A NIC as the guest's network configuration (ifupdown's
/// `/etc/network/interfaces`) names it on the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// The interface name in the configuration (`ens192`).
    pub name: String,
    /// Its MAC address on the source (the test VMs give the NIC this MAC,
    /// on the source hardware and on VMware's).
    pub mac: String,
    /// Its address.
    pub address: NicAddress,
}

/// How the initramfs is built (initramfs-tools).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitramfsSpec {
    /// `MODULES=` (`list`, `most`, `dep`, `netboot`).
    pub modules_policy: String,
    /// `/etc/initramfs-tools/modules`.
    pub modules: Vec<String>,
    /// `COMPRESS=` (`gzip` decompresses fastest under TCG).
    pub compress: String,
}

/// GRUB's settings (`/etc/default/grub`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrubSpec {
    /// `GRUB_CMDLINE_LINUX`.
    pub cmdline_linux: Vec<String>,
    /// `GRUB_CMDLINE_LINUX_DEFAULT`.
    pub cmdline_linux_default: Vec<String>,
    /// `GRUB_TIMEOUT`.
    pub timeout_secs: u32,
    /// `GRUB_TERMINAL="console serial"` with a 115200 baud serial port.
    pub serial_terminal: bool,
}

/// dracut instead of initramfs-tools (guest (g)): the image is made by
/// `dracut --force` in the chroot after the packages, non-hostonly (the
/// build host's hardware must not leak into it) with exactly `drivers`
/// (dracut's `drivers=`, the analogue of `MODULES=list`): the source
/// hypervisor's drivers, so no `vmw_pvscsi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DracutSpec {
    /// dracut's `drivers=`: the kernel modules the image holds (with
    /// their dependencies).
    pub drivers: Vec<String>,
    /// dracut's `compress=` (`gzip` decompresses fastest under TCG).
    pub compress: String,
}

/// How a guest configures its NICs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkConfig {
    /// ifupdown's `/etc/network/interfaces` (the Debian guests).
    #[default]
    Ifupdown,
    /// NetworkManager keyfiles in
    /// `/etc/NetworkManager/system-connections/<name>.nmconnection`, each
    /// with `interface-name=<source name>` and, for the NICs after the
    /// first, `mac-address=<source MAC>` too; no ifupdown.
    NetworkManager,
}

impl NetworkConfig {
    /// Whether it is the default (not part of the recipe's JSON, so the
    /// hashes of the recipes older than the field stay the same).
    pub fn is_ifupdown(&self) -> bool {
        *self == NetworkConfig::Ifupdown
    }
}

/// An SELinux mode in `/etc/selinux/config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelinuxMode {
    /// `SELINUX=enforcing`.
    Enforcing,
    /// `SELINUX=permissive`.
    Permissive,
}

impl SelinuxMode {
    /// The word in `/etc/selinux/config` and the check block.
    pub fn name(self) -> &'static str {
        match self {
            SelinuxMode::Enforcing => "enforcing",
            SelinuxMode::Permissive => "permissive",
        }
    }
}

/// SELinux (Debian's `selinux-basics`, `selinux-policy-default`): the
/// kernel command line gets `security=selinux selinux=1`,
/// `/etc/selinux/config` the mode and policy, and the whole tree is
/// labelled at build time with `setfiles` in the chroot (no first-boot
/// relabel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelinuxSpec {
    /// `SELINUX=`.
    pub mode: SelinuxMode,
    /// `SELINUXTYPE=` (Debian's reference policy: `default`).
    pub policy: String,
}

/// Everything a guest is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// A short name (the cache file's prefix): `[a-z0-9-]`.
    pub name: String,
    /// The Debian architecture.
    pub arch: GuestArch,
    /// The Debian release (`bookworm`).
    pub suite: String,
    /// The archive mirror (see [`super::mirror::host_mirror`]).
    pub mirror: String,
    /// The firmware.
    pub firmware: GuestFirmware,
    /// Packages on top of `minbase`.
    pub packages: Vec<String>,
    /// The disks, the boot disk first (kernel names `sda`, `sdb`, … on the
    /// source).
    pub disks: Vec<DiskSpec>,
    /// Files written after the packages are installed.
    pub files: Vec<FileSpec>,
    /// The NICs.
    pub nics: Vec<NicSpec>,
    /// The initramfs.
    pub initramfs: InitramfsSpec,
    /// The boot loader.
    pub grub: GrubSpec,
    /// `/etc/hostname`.
    pub hostname: String,
    /// root's password (`None`: locked).
    pub root_password: Option<String>,
    /// dracut instead of initramfs-tools (then [`Recipe::initramfs`] is
    /// not used). Left out of the JSON, and so of the hash, when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dracut: Option<DracutSpec>,
    /// How the NICs are configured. Left out of the JSON when ifupdown.
    #[serde(default, skip_serializing_if = "NetworkConfig::is_ifupdown")]
    pub network: NetworkConfig,
    /// SELinux, if any. Left out of the JSON when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<SelinuxSpec>,
}

impl Recipe {
    /// The cache key: sha256 over [`BUILDER_VERSION`] and the whole recipe
    /// (its JSON form), first 16 hex digits.
    pub fn hash(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"osam-guest-builder\0");
        hash.update(BUILDER_VERSION.to_le_bytes());
        // Serializing plain data with string keys cannot fail.
        hash.update(serde_json::to_vec(self).unwrap_or_default());
        hex(&hash.finalize()[..8])
    }

    /// The cache file stem: `<name>-<hash>`.
    pub fn stem(&self) -> String {
        format!("{}-{}", self.name, self.hash())
    }

    /// The mount of `/`: its disk, partition and file system.
    pub fn root(&self) -> Option<(usize, usize, &FsSpec, &MountSpec)> {
        self.mounts().find(|(_, _, _, m)| m.mountpoint == "/")
    }

    /// Every mount: (disk index, partition index, file system, mount).
    pub fn mounts(&self) -> impl Iterator<Item = (usize, usize, &FsSpec, &MountSpec)> {
        self.disks.iter().enumerate().flat_map(|(d, disk)| {
            disk.partitions
                .iter()
                .enumerate()
                .filter_map(move |(p, part)| part.fs.as_ref().map(|fs| (d, p, fs)))
                .flat_map(move |(d, p, fs)| fs.mounts.iter().map(move |m| (d, p, fs, m)))
        })
    }

    /// Checks what the builder relies on; says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(format!("recipe name {:?} is not [a-z0-9-]+", self.name));
        }
        if self.disks.is_empty() || self.disks.len() > 8 {
            return Err(format!(
                "{}: 1 to 8 disks, not {}",
                self.name,
                self.disks.len()
            ));
        }
        if self.root().is_none() {
            return Err(format!("{}: no file system is mounted at /", self.name));
        }
        for (d, disk) in self.disks.iter().enumerate() {
            let n = disk.partitions.len();
            if n == 0 || (disk.table == PartitionTable::Msdos && n > 4) {
                return Err(format!("{}: disk {d} has {n} partitions", self.name));
            }
            let fixed: u64 = disk.partitions.iter().filter_map(|p| p.size_mib).sum();
            if fixed + 2 > disk.size_mib {
                return Err(format!("{}: disk {d}'s partitions do not fit", self.name));
            }
            for (p, part) in disk.partitions.iter().enumerate() {
                if part.size_mib.is_none() && p + 1 != n {
                    return Err(format!(
                        "{}: only the last partition of disk {d} may take the rest",
                        self.name
                    ));
                }
                if let Some(fs) = &part.fs {
                    if !fs.subvolumes.is_empty() && fs.kind != FsKind::Btrfs {
                        return Err(format!("{}: subvolumes on {}", self.name, fs.kind.name()));
                    }
                    for m in &fs.mounts {
                        if m.source == DeviceRef::Label && fs.label.is_none() {
                            return Err(format!(
                                "{}: {} by LABEL but the file system has none",
                                self.name, m.mountpoint
                            ));
                        }
                        if !m.mountpoint.starts_with('/') {
                            return Err(format!("{}: mount point {:?}", self.name, m.mountpoint));
                        }
                    }
                }
            }
        }
        for f in &self.files {
            if !f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
                return Err(format!("{}: file path {:?}", self.name, f.path));
            }
        }
        Ok(())
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The kernel name of partition `part` (0-based) of disk `disk` on a SCSI
/// or SATA controller: `/dev/sda1` for (0, 0).
pub fn kernel_partition_name(disk: usize, part: usize) -> String {
    let letter = char::from(b'a' + (disk % 26) as u8);
    format!("/dev/sd{letter}{}", part + 1)
}

/// The packages of every reference guest (what the lab's guest had).
pub fn base_packages(arch: GuestArch, firmware: GuestFirmware) -> Vec<String> {
    [
        arch.kernel_package(),
        firmware.grub_package(arch),
        "systemd-sysv",
        "ifupdown",
        "isc-dhcp-client",
        "initramfs-tools",
        "udev",
        "kmod",
        "e2fsprogs",
        "iproute2",
        "procps",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The initramfs modules of a KVM guest on virtio-scsi (`MODULES=list`):
/// no `vmw_pvscsi`, `mptspi`, `ahci` or `ata_piix`.
pub fn kvm_initramfs_modules() -> Vec<String> {
    ["virtio_pci", "virtio_scsi", "sd_mod", "ext4"]
        .map(str::to_owned)
        .to_vec()
}

/// The two NICs of the reference guests, as configured for VMware's
/// predictable names: `ens192` on DHCP, `ens224` static.
pub fn reference_nics() -> Vec<NicSpec> {
    vec![
        NicSpec {
            name: "ens192".into(),
            mac: "52:54:00:4f:53:01".into(),
            address: NicAddress::Dhcp,
        },
        NicSpec {
            name: "ens224".into(),
            mac: "52:54:00:4f:53:02".into(),
            address: NicAddress::Static {
                address: "192.168.50.10/24".into(),
                gateway: None,
            },
        },
    ]
}

/// An ext4 file system mounted at `mountpoint` by `source`.
pub fn ext4(mountpoint: &str, source: DeviceRef, label: Option<&str>) -> FsSpec {
    FsSpec {
        kind: FsKind::Ext4,
        label: label.map(str::to_owned),
        subvolumes: Vec::new(),
        mounts: vec![MountSpec {
            mountpoint: mountpoint.to_owned(),
            subvolume: None,
            source,
            options: if mountpoint == "/" {
                "errors=remount-ro".into()
            } else {
                "defaults".into()
            },
            pass: if mountpoint == "/" { 1 } else { 2 },
        }],
    }
}

impl Recipe {
    /// Guest (a) — and (c) for `I386`: Debian 12, BIOS, one 2 GiB disk with
    /// an MBR and ext4 `/` on partition 1 named `/dev/sda1` in fstab and in
    /// `root=`; `ens192` (DHCP) and `ens224` (192.168.50.10/24) in
    /// `/etc/network/interfaces`; a `MODULES=list` gzip initramfs for
    /// virtio-scsi without `vmw_pvscsi`; serial console on ttyS0; the
    /// check service (see [`super::check`]).
    pub fn debian12_bios(arch: GuestArch, mirror: &str) -> Recipe {
        let firmware = GuestFirmware::Bios;
        Recipe {
            name: format!("deb12-bios-{}", arch.debian_arch()),
            arch,
            suite: DEBIAN_SUITE.into(),
            mirror: mirror.to_owned(),
            firmware,
            packages: base_packages(arch, firmware),
            disks: vec![DiskSpec {
                size_mib: 2048,
                table: PartitionTable::Msdos,
                partitions: vec![PartitionSpec {
                    size_mib: None,
                    kind: PartitionKind::Linux,
                    bootable: true,
                    fs: Some(ext4("/", DeviceRef::Path("/dev/sda1".into()), Some("root"))),
                }],
            }],
            files: super::check::files(),
            nics: reference_nics(),
            initramfs: InitramfsSpec {
                modules_policy: "list".into(),
                modules: kvm_initramfs_modules(),
                compress: "gzip".into(),
            },
            grub: GrubSpec {
                cmdline_linux: vec!["console=tty0".into(), "console=ttyS0,115200".into()],
                cmdline_linux_default: Vec::new(),
                timeout_secs: 1,
                serial_terminal: true,
            },
            hostname: "osam-deb12".into(),
            root_password: Some(ROOT_PASSWORD.into()),
            dracut: None,
            network: NetworkConfig::Ifupdown,
            selinux: None,
        }
    }

    /// Guest (g), RHEL-like from Debian's packages: guest (a) (BIOS, ext4
    /// `/` as `/dev/sda1` in fstab and `root=`) with `dracut` instead of
    /// initramfs-tools (non-hostonly, exactly the virtio-scsi drivers: no
    /// `vmw_pvscsi`), NetworkManager keyfiles instead of ifupdown
    /// (`ens192` DHCP by `interface-name=`, `ens224` static by
    /// `interface-name=` and `mac-address=`), and SELinux with Debian's
    /// reference policy in `mode`, labelled at build time.
    pub fn debian12_rhel_like(arch: GuestArch, mirror: &str, mode: SelinuxMode) -> Recipe {
        let mut recipe = Recipe::debian12_bios(arch, mirror);
        recipe.name = format!("deb12-rhel-like-{}", arch.debian_arch());
        recipe.packages = base_packages(arch, recipe.firmware)
            .into_iter()
            .filter(|p| {
                !matches!(
                    p.as_str(),
                    "ifupdown" | "isc-dhcp-client" | "initramfs-tools"
                )
            })
            .chain(
                [
                    "dracut",
                    "network-manager",
                    "selinux-basics",
                    "selinux-policy-default",
                    "policycoreutils",
                ]
                .map(str::to_owned),
            )
            .collect();
        recipe.dracut = Some(DracutSpec {
            drivers: kvm_initramfs_modules(),
            compress: "gzip".into(),
        });
        recipe.network = NetworkConfig::NetworkManager;
        recipe.selinux = Some(SelinuxSpec {
            mode,
            policy: "default".into(),
        });
        recipe
            .grub
            .cmdline_linux
            .extend(["security=selinux".to_owned(), "selinux=1".to_owned()]);
        recipe.hostname = "osam-rhel-like".into();
        // The check block also lists unlabelled files.
        recipe.files = super::check::selinux_files();
        recipe
    }

    /// Variant (e): guest (a) with a second 512 MiB disk, ext4 on its
    /// partition 1 mounted at `/data` as `/dev/sdb1`.
    pub fn with_data_disk(mut self) -> Recipe {
        self.name.push_str("-data");
        self.disks.push(DiskSpec {
            size_mib: 512,
            table: PartitionTable::Msdos,
            partitions: vec![PartitionSpec {
                size_mib: None,
                kind: PartitionKind::Linux,
                bootable: false,
                fs: Some(ext4(
                    "/data",
                    DeviceRef::Path("/dev/sdb1".into()),
                    Some("data"),
                )),
            }],
        });
        self
    }

    /// Variant (b): Debian 12 UEFI, GPT with a 128 MiB ESP (`/dev/sda1`
    /// at `/boot/efi`) and ext4 `/` on `/dev/sda2`; GRUB in
    /// `EFI/debian/`, and with `removable` also at the fallback path (a
    /// VM without a boot entry boots only that).
    pub fn debian12_uefi(arch: GuestArch, mirror: &str, removable: bool) -> Recipe {
        let firmware = GuestFirmware::Uefi { removable };
        let mut recipe = Recipe::debian12_bios(arch, mirror);
        recipe.name = format!(
            "deb12-uefi{}-{}",
            if removable { "" } else { "-noremovable" },
            arch.debian_arch()
        );
        recipe.firmware = firmware;
        recipe.packages = base_packages(arch, firmware);
        recipe.packages.push("dosfstools".into());
        recipe.disks = vec![DiskSpec {
            size_mib: 2048,
            table: PartitionTable::Gpt,
            partitions: vec![
                PartitionSpec {
                    size_mib: Some(128),
                    kind: PartitionKind::Esp,
                    bootable: false,
                    fs: Some(FsSpec {
                        kind: FsKind::Vfat,
                        label: Some("ESP".into()),
                        subvolumes: Vec::new(),
                        mounts: vec![MountSpec {
                            mountpoint: "/boot/efi".into(),
                            subvolume: None,
                            source: DeviceRef::Path("/dev/sda1".into()),
                            options: "umask=0077".into(),
                            pass: 1,
                        }],
                    }),
                },
                PartitionSpec {
                    size_mib: None,
                    kind: PartitionKind::Linux,
                    bootable: false,
                    fs: Some(ext4("/", DeviceRef::Path("/dev/sda2".into()), Some("root"))),
                },
            ],
        }];
        recipe
    }

    /// Variant (f): guest (a) with btrfs on `/dev/sda1`: subvolume `@` at
    /// `/` and `@home` at `/home` (GRUB adds `rootflags=subvol=@`).
    pub fn debian12_bios_btrfs(arch: GuestArch, mirror: &str) -> Recipe {
        let mut recipe = Recipe::debian12_bios(arch, mirror);
        recipe.name = format!("deb12-bios-btrfs-{}", arch.debian_arch());
        recipe.packages.push("btrfs-progs".into());
        recipe.initramfs.modules.push("btrfs".into());
        let mount = |mountpoint: &str, subvolume: &str, pass: u8| MountSpec {
            mountpoint: mountpoint.into(),
            subvolume: Some(subvolume.into()),
            source: DeviceRef::Path("/dev/sda1".into()),
            options: "defaults".into(),
            pass,
        };
        recipe.disks[0].partitions[0].fs = Some(FsSpec {
            kind: FsKind::Btrfs,
            label: Some("root".into()),
            subvolumes: vec!["@".into(), "@home".into()],
            mounts: vec![mount("/", "@", 0), mount("/home", "@home", 0)],
        });
        recipe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIRROR: &str = "http://deb.debian.org/debian";

    #[test]
    fn reference_guest_is_valid_and_named() {
        let r = Recipe::debian12_bios(GuestArch::Amd64, MIRROR);
        r.validate().unwrap();
        assert_eq!(r.name, "deb12-bios-amd64");
        let (d, p, fs, m) = r.root().unwrap();
        assert_eq!((d, p, fs.kind), (0, 0, FsKind::Ext4));
        assert_eq!(m.source, DeviceRef::Path("/dev/sda1".into()));
        assert!(!r.initramfs.modules.iter().any(|m| m == "vmw_pvscsi"));
        assert_eq!(r.hash().len(), 16);
        assert_eq!(r.stem(), format!("deb12-bios-amd64-{}", r.hash()));
        for r in [
            Recipe::debian12_bios(GuestArch::I386, MIRROR),
            Recipe::debian12_bios(GuestArch::Amd64, MIRROR).with_data_disk(),
            Recipe::debian12_uefi(GuestArch::Amd64, MIRROR, true),
            Recipe::debian12_bios_btrfs(GuestArch::Amd64, MIRROR),
        ] {
            r.validate().unwrap();
        }
        assert_eq!(kernel_partition_name(1, 0), "/dev/sdb1");
    }

    /// The optional fields of guest (g) stay out of the JSON of the other
    /// recipes, so their hashes (and cached guests) are what they were
    /// before the fields existed; a recipe read back from a manifest
    /// hashes the same; each of (g)'s settings changes the hash.
    #[test]
    fn rhel_like_fields_leave_the_other_hashes_alone() {
        let a = Recipe::debian12_bios(GuestArch::Amd64, MIRROR);
        let json = serde_json::to_value(&a).unwrap();
        for key in ["dracut", "network", "selinux"] {
            assert!(json.get(key).is_none(), "{key} in {json}");
        }
        let back: Recipe = serde_json::from_value(json).unwrap();
        assert_eq!(back.hash(), a.hash());

        let g = Recipe::debian12_rhel_like(GuestArch::Amd64, MIRROR, SelinuxMode::Enforcing);
        g.validate().unwrap();
        assert_eq!(g.name, "deb12-rhel-like-amd64");
        let back: Recipe = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(back, g);
        assert!(g.packages.iter().any(|p| p == "dracut"));
        for absent in ["initramfs-tools", "ifupdown", "isc-dhcp-client"] {
            assert!(!g.packages.iter().any(|p| p == absent), "{absent}");
        }
        let d = g.dracut.as_ref().unwrap();
        assert!(!d.drivers.iter().any(|m| m == "vmw_pvscsi"));
        assert!(g.grub.cmdline_linux.iter().any(|a| a == "security=selinux"));
        let (_, _, _, root) = g.root().unwrap();
        assert_eq!(root.source, DeviceRef::Path("/dev/sda1".into()));
        let permissive =
            Recipe::debian12_rhel_like(GuestArch::Amd64, MIRROR, SelinuxMode::Permissive);
        let mut ifupdown = g.clone();
        ifupdown.network = NetworkConfig::Ifupdown;
        let mut no_dracut = g.clone();
        no_dracut.dracut = None;
        let mut drivers = g.clone();
        drivers.dracut.as_mut().unwrap().drivers.push("ahci".into());
        let hashes: std::collections::BTreeSet<String> =
            [&g, &permissive, &ifupdown, &no_dracut, &drivers, &a]
                .iter()
                .map(|r| r.hash())
                .collect();
        assert_eq!(hashes.len(), 6);
    }

    /// Every field of the recipe, changed one at a time, changes the hash;
    /// the same recipe hashes the same.
    #[test]
    fn every_field_changes_the_hash() {
        let base = Recipe::debian12_bios(GuestArch::Amd64, MIRROR);
        assert_eq!(base.hash(), base.clone().hash());
        type Change = fn(&mut Recipe);
        let changes: Vec<(&str, Change)> = vec![
            ("name", |r| r.name.push('x')),
            ("arch", |r| r.arch = GuestArch::I386),
            ("suite", |r| r.suite = "trixie".into()),
            ("mirror", |r| r.mirror.push('/')),
            ("firmware", |r| {
                r.firmware = GuestFirmware::Uefi { removable: true }
            }),
            ("removable", |r| {
                r.firmware = GuestFirmware::Uefi { removable: false }
            }),
            ("packages", |r| r.packages.push("less".into())),
            ("package order", |r| r.packages.reverse()),
            ("disk size", |r| r.disks[0].size_mib += 1),
            ("table", |r| r.disks[0].table = PartitionTable::Gpt),
            ("partition size", |r| {
                r.disks[0].partitions[0].size_mib = Some(100)
            }),
            ("partition kind", |r| {
                r.disks[0].partitions[0].kind = PartitionKind::Esp
            }),
            ("bootable", |r| r.disks[0].partitions[0].bootable = false),
            ("fs kind", |r| {
                r.disks[0].partitions[0].fs.as_mut().unwrap().kind = FsKind::Xfs
            }),
            ("fs label", |r| {
                r.disks[0].partitions[0].fs.as_mut().unwrap().label = None
            }),
            ("subvolumes", |r| {
                r.disks[0].partitions[0].fs.as_mut().unwrap().subvolumes = vec!["@".into()]
            }),
            ("mountpoint", |r| {
                r.disks[0].partitions[0].fs.as_mut().unwrap().mounts[0].mountpoint = "/x".into()
            }),
            ("subvolume", |r| {
                r.disks[0].partitions[0].fs.as_mut().unwrap().mounts[0].subvolume = Some("@".into())
            }),
            ("source", |r| {
                r.disks[0].partitions[0].fs.as_mut().unwrap().mounts[0].source = DeviceRef::Uuid
            }),
            ("options", |r| {
                r.disks[0].partitions[0].fs.as_mut().unwrap().mounts[0].options = "ro".into()
            }),
            ("pass", |r| {
                r.disks[0].partitions[0].fs.as_mut().unwrap().mounts[0].pass = 0
            }),
            ("second disk", |r| {
                let d = r.disks[0].clone();
                r.disks.push(d)
            }),
            ("file content", |r| {
                r.files[0].content = FileContent::Text("#!/bin/sh\n".into())
            }),
            ("file mode", |r| r.files[0].mode = 0o700),
            ("file path", |r| r.files[0].path.push('2')),
            ("new file", |r| r.files.push(FileSpec::symlink("/a", "/b"))),
            ("nic name", |r| r.nics[0].name = "eth0".into()),
            ("nic mac", |r| r.nics[0].mac = "52:54:00:00:00:09".into()),
            ("nic address", |r| {
                r.nics[0].address = NicAddress::Static {
                    address: "10.0.0.1/8".into(),
                    gateway: None,
                }
            }),
            ("gateway", |r| {
                r.nics[1].address = NicAddress::Static {
                    address: "192.168.50.10/24".into(),
                    gateway: Some("192.168.50.1".into()),
                }
            }),
            ("modules policy", |r| {
                r.initramfs.modules_policy = "most".into()
            }),
            ("modules", |r| r.initramfs.modules.push("vmw_pvscsi".into())),
            ("compress", |r| r.initramfs.compress = "zstd".into()),
            ("cmdline", |r| r.grub.cmdline_linux.push("quiet".into())),
            ("cmdline default", |r| {
                r.grub.cmdline_linux_default.push("quiet".into())
            }),
            ("grub timeout", |r| r.grub.timeout_secs = 5),
            ("serial terminal", |r| r.grub.serial_terminal = false),
            ("hostname", |r| r.hostname.push('x')),
            ("password", |r| r.root_password = None),
        ];
        let mut seen = std::collections::HashMap::new();
        seen.insert(base.hash(), "base");
        for (what, change) in changes {
            let mut r = base.clone();
            change(&mut r);
            assert_ne!(r, base, "{what}: the change changed nothing");
            if let Some(other) = seen.insert(r.hash(), what) {
                panic!("{what}: same hash as {other}");
            }
        }
    }
}
