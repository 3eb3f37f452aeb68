//! What a guest kernel has (its `modules.dep`, `modules.builtin` and
//! `/boot/config-<v>`), and which modules the guest's initramfs needs.

use std::collections::{BTreeMap, BTreeSet};

use crate::detect::KernelInfo;
use crate::engine::plan::GuestFiles;
use crate::error::{FixupError, codes};
use crate::kmod::{ModuleIndex, module_name, normalize_name};

/// The kernel config option of a driver the stack may need, for kernels
/// whose `modules.builtin` is missing (RHEL 5).
pub fn config_option(module: &str) -> Option<&'static str> {
    Some(match normalize_name(module).as_str() {
        "vmw_pvscsi" => "VMWARE_PVSCSI",
        "mptspi" => "FUSION_SPI",
        "mptsas" => "FUSION_SAS",
        "BusLogic" => "SCSI_BUSLOGIC",
        "ahci" => "SATA_AHCI",
        "nvme" => "BLK_DEV_NVME",
        "sd_mod" => "BLK_DEV_SD",
        "vmxnet3" => "VMXNET3",
        "e1000" => "E1000",
        "e1000e" => "E1000E",
        "ext4" => "EXT4_FS",
        "ext3" => "EXT3_FS",
        "ext2" => "EXT2_FS",
        "xfs" => "XFS_FS",
        "btrfs" => "BTRFS_FS",
        "dm_mod" => "BLK_DEV_DM",
        "dm_crypt" => "DM_CRYPT",
        "md_mod" => "BLK_DEV_MD",
        "raid0" => "MD_RAID0",
        "raid1" => "MD_RAID1",
        "raid10" => "MD_RAID10",
        "raid456" => "MD_RAID456",
        "linear" => "MD_LINEAR",
        _ => return None,
    })
}

/// Whether and how a kernel provides a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Built into the kernel: nothing to load.
    Builtin,
    /// A loadable module.
    Module,
    /// Neither.
    Missing,
    /// The kernel has no modules.dep, modules.builtin or config to tell.
    Unknown,
}

/// The module facts of one guest kernel.
#[derive(Debug, Clone, Default)]
pub struct KernelModules {
    pub version: String,
    index: ModuleIndex,
    /// Hard dependencies by module name (from `modules.dep`).
    deps: BTreeMap<String, Vec<String>>,
    config: BTreeMap<String, char>,
    pub has_dep: bool,
    pub has_builtin: bool,
    pub has_config: bool,
}

impl KernelModules {
    /// Builds the facts from the texts of `modules.dep`, `modules.builtin`
    /// and the kernel config (each optional).
    pub fn from_texts(
        version: &str,
        dep: Option<&str>,
        builtin: Option<&str>,
        config: Option<&str>,
    ) -> KernelModules {
        let index = ModuleIndex::parse(dep.unwrap_or(""), "", builtin.unwrap_or(""), "");
        let mut deps = BTreeMap::new();
        for line in dep.unwrap_or("").lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let name = module_name(path);
            if name.is_empty() {
                continue;
            }
            deps.insert(name, rest.split_whitespace().map(module_name).collect());
        }
        let mut options = BTreeMap::new();
        for line in config.unwrap_or("").lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let Some(key) = key.strip_prefix("CONFIG_") else {
                continue;
            };
            if let Some(c @ ('y' | 'm')) = value.trim().chars().next() {
                options.insert(key.to_string(), c);
            }
        }
        KernelModules {
            version: version.to_string(),
            index,
            deps,
            config: options,
            has_dep: dep.is_some(),
            has_builtin: builtin.is_some(),
            has_config: config.is_some(),
        }
    }

    /// Reads a guest kernel's module directory and config.
    pub fn load(files: &dyn GuestFiles, kernel: &KernelInfo) -> Result<KernelModules, FixupError> {
        let v = &kernel.version;
        let dirs: Vec<String> = kernel
            .modules_dir
            .iter()
            .cloned()
            .chain([format!("/lib/modules/{v}"), format!("/usr/lib/modules/{v}")])
            .collect();
        let dir = dirs
            .iter()
            .find(|d| files.exists(&format!("{d}/modules.dep")))
            .or_else(|| dirs.first())
            .cloned()
            .unwrap_or_default();
        let read = |path: String| -> Result<Option<String>, FixupError> {
            files.read(&path).map_err(|e| {
                FixupError::new(
                    codes::GUEST_IO,
                    format!("cannot read the guest's {path}: {e}"),
                )
            })
        };
        let dep = read(format!("{dir}/modules.dep"))?;
        let builtin = read(format!("{dir}/modules.builtin"))?;
        let config = match read(format!("/boot/config-{v}"))? {
            Some(c) => Some(c),
            None => read(format!("{dir}/config"))?,
        };
        Ok(KernelModules::from_texts(
            v,
            dep.as_deref(),
            builtin.as_deref(),
            config.as_deref(),
        ))
    }

    /// Whether and how this kernel provides `module`.
    pub fn availability(&self, module: &str) -> Availability {
        let name = normalize_name(module);
        let config = config_option(&name)
            .and_then(|o| self.config.get(o))
            .copied();
        if self.index.is_builtin(&name) || config == Some('y') {
            Availability::Builtin
        } else if self.index.contains(&name) {
            Availability::Module
        } else if !self.has_dep && config == Some('m') {
            // No modules.dep to confirm it: the config says it was built.
            Availability::Module
        } else if !self.has_dep && !self.has_builtin && !self.has_config {
            Availability::Unknown
        } else {
            Availability::Missing
        }
    }

    /// Whether the kernel has `module` in any form.
    pub fn has(&self, module: &str) -> bool {
        matches!(
            self.availability(module),
            Availability::Builtin | Availability::Module
        )
    }

    /// A loadable module and its hard dependencies (from `modules.dep`),
    /// normalised, each once; built-in ones are left out.
    pub fn closure(&self, module: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut stack = vec![normalize_name(module)];
        while let Some(name) = stack.pop() {
            if out.contains(&name) || self.index.is_builtin(&name) {
                continue;
            }
            if let Some(deps) = self.deps.get(&name) {
                stack.extend(deps.iter().rev().cloned());
            }
            out.push(name);
        }
        out
    }
}

/// Why a module is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Controller,
    Disk,
    RootFs,
    DeviceMapper,
    Raid,
    Extra,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Controller => "the target storage controller",
            Reason::Disk => "SCSI disks",
            Reason::RootFs => "the root file system",
            Reason::DeviceMapper => "the root device (device mapper)",
            Reason::Raid => "the root device (software RAID)",
            Reason::Extra => "extraInitramfsDrivers",
        }
    }
}

/// One needed module: the first of `names` the kernel has (ext3 is
/// served by ext4 on newer kernels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub names: Vec<String>,
    pub reason: Reason,
}

impl Needed {
    fn one(name: &str, reason: Reason) -> Needed {
        Needed {
            names: vec![normalize_name(name)],
            reason,
        }
    }

    /// The name to use for a kernel.
    pub fn pick(&self, kernel: &KernelModules) -> &str {
        self.names
            .iter()
            .find(|n| kernel.has(n))
            .or_else(|| self.names.last())
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// What the guest's configuration says about its root device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootDevice {
    /// The fstab device field of `/` (`UUID=…`, `/dev/mapper/vg-root`).
    pub device: String,
    pub fs_type: String,
}

/// The `/` line of an fstab text.
pub fn fstab_root(fstab: &str) -> Option<RootDevice> {
    fstab.lines().find_map(|line| {
        let line = line.trim();
        if line.starts_with('#') {
            return None;
        }
        let mut f = line.split_whitespace();
        let (device, mount, fs_type) = (f.next()?, f.next()?, f.next()?);
        (mount == "/").then(|| RootDevice {
            device: device.to_string(),
            fs_type: fs_type.to_string(),
        })
    })
}

fn is_md(device: &str) -> bool {
    let Some(rest) = device.strip_prefix("/dev/") else {
        return false;
    };
    rest.starts_with("md/")
        || rest
            .strip_prefix("md")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// `/dev/mapper/x`, `/dev/dm-N` or an LVM path `/dev/<vg>/<lv>`.
fn is_dm(device: &str) -> bool {
    let Some(rest) = device.strip_prefix("/dev/") else {
        return false;
    };
    if rest.starts_with("mapper/") || rest.starts_with("dm-") {
        return true;
    }
    match rest.split_once('/') {
        Some((dir, lv)) => {
            !lv.is_empty()
                && !matches!(
                    dir,
                    "disk" | "md" | "cciss" | "ida" | "rd" | "block" | "char" | "xvd"
                )
        }
        None => false,
    }
}

/// The md personalities an mdadm.conf's ARRAY lines name (`level=raid1`).
fn md_levels(mdadm_conf: &str) -> Vec<String> {
    let mut levels = Vec::new();
    for line in mdadm_conf.lines() {
        let line = line.trim();
        if !line.starts_with("ARRAY") {
            continue;
        }
        for word in line.split_whitespace() {
            let Some(level) = word.strip_prefix("level=") else {
                continue;
            };
            let module = match level.to_ascii_lowercase().as_str() {
                "raid0" | "0" | "stripe" => "raid0",
                "raid1" | "1" | "mirror" => "raid1",
                "raid4" | "raid5" | "raid6" | "4" | "5" | "6" => "raid456",
                "raid10" | "10" => "raid10",
                "linear" => "linear",
                _ => continue,
            };
            if !levels.iter().any(|l| l == module) {
                levels.push(module.to_string());
            }
        }
    }
    levels
}

/// The guest files [`needed_modules`] reads.
#[derive(Debug, Clone, Default)]
pub struct RootConfig<'a> {
    pub fstab: &'a str,
    /// The root device detection found (`GuestInfo::root`).
    pub detected_root: Option<&'a str>,
    pub crypttab: &'a str,
    pub mdadm_conf: &'a str,
}

/// The modules every initramfs of the guest needs: the controller's
/// driver (and `sd_mod` for SCSI and SATA controllers, whose disks it
/// serves), the root file system, device mapper / md for the root device,
/// and the extra drivers of the options.
pub fn needed_modules(controller_driver: &str, root: &RootConfig, extra: &[String]) -> Vec<Needed> {
    let mut needed = vec![Needed::one(controller_driver, Reason::Controller)];
    if controller_driver != "nvme" {
        needed.push(Needed::one("sd_mod", Reason::Disk));
    }
    let fstab_root = fstab_root(root.fstab);
    if let Some(r) = &fstab_root {
        let names: &[&str] = match r.fs_type.as_str() {
            "ext4" | "ext4dev" => &["ext4"],
            "ext3" => &["ext3", "ext4"],
            "ext2" => &["ext2", "ext4"],
            "xfs" => &["xfs"],
            "btrfs" => &["btrfs"],
            "jfs" => &["jfs"],
            "reiserfs" => &["reiserfs"],
            _ => &[],
        };
        if !names.is_empty() {
            needed.push(Needed {
                names: names.iter().map(|s| s.to_string()).collect(),
                reason: Reason::RootFs,
            });
        }
    }
    let devices: Vec<&str> = fstab_root
        .as_ref()
        .map(|r| r.device.as_str())
        .into_iter()
        .chain(root.detected_root)
        .collect();
    if devices.iter().any(|d| is_dm(d)) {
        needed.push(Needed::one("dm_mod", Reason::DeviceMapper));
        let crypt_names: Vec<&str> = root
            .crypttab
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let encrypted = devices.iter().any(|d| {
            d.strip_prefix("/dev/mapper/")
                .is_some_and(|n| crypt_names.contains(&n))
        });
        if encrypted {
            needed.push(Needed::one("dm_crypt", Reason::DeviceMapper));
        }
    }
    if devices.iter().any(|d| is_md(d)) {
        let mut levels = md_levels(root.mdadm_conf);
        if levels.is_empty() {
            levels.push("raid1".to_string());
        }
        for level in levels {
            needed.push(Needed::one(&level, Reason::Raid));
        }
    }
    for name in extra {
        let name = normalize_name(name);
        if !name.is_empty() && !needed.iter().any(|n| n.names.contains(&name)) {
            needed.push(Needed::one(&name, Reason::Extra));
        }
    }
    needed
}

/// The module names (normalised) an initramfs listing holds for kernel
/// `version`, under `lib/modules/<v>/` or `usr/lib/modules/<v>/`.
pub fn modules_in_image<'a>(
    names: impl Iterator<Item = &'a str>,
    version: &str,
) -> BTreeSet<String> {
    let prefixes = [
        format!("lib/modules/{version}/"),
        format!("usr/lib/modules/{version}/"),
    ];
    names
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        .filter(|n| {
            let file = n.rsplit('/').next().unwrap_or("");
            file.ends_with(".ko") || file.contains(".ko.")
        })
        .map(module_name)
        .collect()
}
