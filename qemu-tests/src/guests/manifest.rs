//! What a built guest is: written next to its disks as
//! `<name>-<hash>.json`, last, so that its presence marks a complete cache
//! entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::recipe::Recipe;

/// How long the steps of a build took, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildTimings {
    /// Raw disks, partitions, file systems, mounts.
    pub disks_s: f64,
    /// mmdebstrap (download, install, the kernel's initramfs).
    pub mmdebstrap_s: f64,
    /// fstab, network, GRUB defaults, files, password.
    pub configure_s: f64,
    /// grub-install, update-grub, and the initramfs check.
    pub grub_s: f64,
    /// qemu-img convert (compressed qcow2).
    pub convert_s: f64,
    /// The whole build.
    pub total_s: f64,
}

/// A partition as built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltPartition {
    /// The disk (0-based, recipe order).
    pub disk: usize,
    /// The partition number (1-based).
    pub index: usize,
    /// Its kernel name on a SCSI/SATA controller (`/dev/sda1`).
    pub kernel_name: String,
    /// Its file system type.
    pub fs: Option<String>,
    /// Its file system UUID (as blkid shows it).
    pub fs_uuid: Option<String>,
    /// Its file system label.
    pub fs_label: Option<String>,
    /// Its PARTUUID (GPT: the partition GUID; MBR: `<disk id>-<nn>`).
    pub part_uuid: String,
}

/// An installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its architecture.
    pub arch: String,
}

/// A built guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestManifest {
    /// [`super::recipe::BUILDER_VERSION`] of the build.
    pub builder_version: u32,
    /// The recipe's name.
    pub name: String,
    /// The recipe's hash.
    pub hash: String,
    /// The recipe.
    pub recipe: Recipe,
    /// Kernel releases (`/lib/modules/*`).
    pub kernels: Vec<String>,
    /// Installed packages.
    pub packages: Vec<InstalledPackage>,
    /// The modules (`.ko` base names, `-` as `_`) of each kernel's
    /// initramfs.
    pub initramfs_modules: BTreeMap<String, Vec<String>>,
    /// The kernel command line of GRUB's first entry.
    pub grub_cmdline: Vec<String>,
    /// The partitions.
    pub partitions: Vec<BuiltPartition>,
    /// How long the build took.
    pub timings: BuildTimings,
}

impl GuestManifest {
    /// The installed version of `package`.
    pub fn package_version(&self, package: &str) -> Option<&str> {
        self.packages
            .iter()
            .find(|p| p.name == package)
            .map(|p| p.version.as_str())
    }

    /// Whether every kernel's initramfs holds `module`.
    pub fn initramfs_has(&self, module: &str) -> bool {
        let m = module.replace('-', "_");
        !self.initramfs_modules.is_empty()
            && self
                .initramfs_modules
                .values()
                .all(|mods| mods.contains(&m))
    }
}
