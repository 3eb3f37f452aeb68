//! Guest detection, the first step of stage 1: which operating system the
//! mounted guest tree holds, its architecture, init system, installed
//! kernels, boot loader and firmware.
//!
//! Everything is read through a [`GuestRoot`], so the guest's symlinks
//! resolve inside the guest and hostile files (FIFOs, huge files, garbage)
//! end in a warning, never in a hang or a panic. The release-file parsers
//! are pure functions of text (see [`os`]).

pub mod arch;
pub mod bootloader;
pub mod init_system;
pub mod kernels;
pub mod os;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{FixupError, Warning, codes};
use crate::guestfs::GuestRoot;

/// The family of a guest's operating system: which tools and file layouts
/// the fixups use. Ubuntu is of the `debian` family; Fedora, Amazon Linux
/// and Oracle Linux are of the `rhel` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    Rhel,
    Suse,
    Debian,
    Photon,
    Unknown,
}

/// The guest's init system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitSystem {
    Systemd,
    Sysvinit,
    Upstart,
    Openrc,
    Unknown,
}

/// The guest's boot loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    /// GRUB 2 with a generated `grub.cfg` listing the kernels.
    Grub2,
    /// GRUB 0.97 (`menu.lst` / `grub.conf`).
    GrubLegacy,
    /// GRUB 2 reading Boot Loader Specification entries from
    /// `/boot/loader/entries` (RHEL 8+, Fedora).
    Bls,
    /// systemd-boot.
    SystemdBoot,
    /// extlinux / syslinux.
    Extlinux,
    /// No boot loader configuration found.
    None,
}

/// What the guest's files say about the firmware it booted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirmwareHint {
    Bios,
    Efi,
    /// No evidence, or evidence for both (hybrid cloud images).
    Unknown,
}

/// One installed kernel of the guest. Paths are guest paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelInfo {
    /// The kernel release (`uname -r` of that kernel).
    pub version: String,
    /// `/boot/vmlinuz-<v>` (or `/boot/vmlinux-<v>`), where present.
    pub image: Option<String>,
    /// `/boot/initramfs-<v>.img`, `/boot/initrd.img-<v>`,
    /// `/boot/initrd-<v>` or `/boot/initrd-<v>.img`, where present.
    pub initramfs: Option<String>,
    /// `/lib/modules/<v>` (or `/usr/lib/modules/<v>`), where present.
    pub modules_dir: Option<String>,
    /// Whether the modules directory holds modules (`modules.dep` or a
    /// `kernel/` tree), not only leftovers of a removed kernel.
    pub has_modules: bool,
}

impl KernelInfo {
    /// A kernel known by its version only (as read back from result.json).
    pub fn from_version(version: impl Into<String>) -> KernelInfo {
        KernelInfo {
            version: version.into(),
            image: None,
            initramfs: None,
            modules_dir: None,
            has_modules: false,
        }
    }
}

/// What detection found: result.json's `guest` object.
///
/// In JSON, `kernels` is the protocol's list of kernel versions (oldest
/// first); the details of [`KernelInfo`] stay in memory. Reading JSON back
/// accepts versions or full objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestInfo {
    /// os-release `ID`: rhel, centos, rocky, almalinux, ol, amzn, sles,
    /// opensuse-leap, ubuntu, debian, photon, fedora, ...
    pub os_id: String,
    /// os-release `VERSION_ID` (or the release file's version), e.g. "7.9".
    pub os_version: String,
    pub pretty_name: String,
    pub family: OsFamily,
    /// `x86_64`, `i686`, `x32`, or another machine name; `unknown` when no
    /// binary of the guest could be read.
    pub arch: String,
    pub init_system: InitSystem,
    pub bootloader: Bootloader,
    pub firmware: FirmwareHint,
    /// Installed kernels, sorted by version (oldest first).
    #[serde(
        serialize_with = "kernels_as_versions",
        deserialize_with = "kernels_from_json"
    )]
    pub kernels: Vec<KernelInfo>,
    /// The guest's root device; filled in by the caller.
    pub root: Option<String>,
}

impl GuestInfo {
    /// The newest kernel (last by version), if any.
    pub fn newest_kernel(&self) -> Option<&KernelInfo> {
        self.kernels.last()
    }
}

fn kernels_as_versions<S: Serializer>(kernels: &[KernelInfo], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(kernels.iter().map(|k| k.version.as_str()))
}

fn kernels_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KernelInfo>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Kernel {
        Version(String),
        Full(KernelInfo),
    }
    let list = Vec::<Kernel>::deserialize(d)?;
    Ok(list
        .into_iter()
        .map(|k| match k {
            Kernel::Version(v) => KernelInfo::from_version(v),
            Kernel::Full(k) => k,
        })
        .collect())
}

macro_rules! display_as_serde_name {
    ($($t:ty => { $($v:ident => $s:literal),* $(,)? })*) => {$(
        impl $t {
            /// The name used in result.json.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_serde_name! {
    OsFamily => { Rhel => "rhel", Suse => "suse", Debian => "debian", Photon => "photon", Unknown => "unknown" }
    InitSystem => { Systemd => "systemd", Sysvinit => "sysvinit", Upstart => "upstart", Openrc => "openrc", Unknown => "unknown" }
    Bootloader => { Grub2 => "grub2", GrubLegacy => "grub-legacy", Bls => "bls", SystemdBoot => "systemd-boot", Extlinux => "extlinux", None => "none" }
    FirmwareHint => { Bios => "bios", Efi => "efi", Unknown => "unknown" }
}

/// Detects what the guest tree at `root` holds. An unidentifiable tree is
/// an error ([`codes::GUEST_UNKNOWN_OS`]); everything else that is odd
/// (unreadable files, no kernel, no boot loader, unknown architecture) is a
/// warning, and later steps decide whether it matters.
pub fn detect(root: &GuestRoot) -> Result<(GuestInfo, Vec<Warning>), FixupError> {
    let mut warnings = Vec::new();
    match root.metadata("/etc") {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(FixupError::new(
                codes::GUEST_UNKNOWN_OS,
                format!(
                    "no operating system found under {}: /etc is not a directory",
                    root.root_path().display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FixupError::new(
                codes::GUEST_UNKNOWN_OS,
                format!(
                    "no operating system found under {}: /etc is missing",
                    root.root_path().display()
                ),
            ));
        }
        Err(e) => {
            return Err(FixupError::new(
                codes::GUEST_IO,
                format!(
                    "cannot read the guest's /etc under {}: {e}",
                    root.root_path().display()
                ),
            ));
        }
    }

    let identity = os::detect_os(root, &mut warnings)?;
    let arch = arch::detect_arch(root).unwrap_or_else(|| {
        warnings.push(Warning::new(
            codes::GUEST_ARCH_UNKNOWN,
            format!(
                "the guest's architecture could not be read from any of {}",
                arch::ARCH_PROBES.join(", ")
            ),
        ));
        "unknown".to_string()
    });
    let init_system = init_system::detect_init_system(root);
    let kernels = kernels::list_kernels(root, &mut warnings);
    if kernels.is_empty() {
        warnings.push(Warning::new(
            codes::GUEST_NO_KERNEL,
            "no installed kernel found: neither /boot/vmlinuz-<version> nor /lib/modules/<version>",
        ));
    }
    let boot = bootloader::detect_boot(root, &mut warnings);
    if boot.bootloader == Bootloader::None {
        warnings.push(Warning::new(
            codes::GUEST_NO_BOOTLOADER,
            "no boot loader configuration found (grub.cfg, menu.lst/grub.conf, \
             /boot/loader/entries, loader.conf, extlinux.conf)",
        ));
    }

    let info = GuestInfo {
        os_id: identity.id,
        os_version: identity.version,
        pretty_name: identity.pretty_name,
        family: identity.family,
        arch,
        init_system,
        bootloader: boot.bootloader,
        firmware: boot.firmware,
        kernels,
        root: None,
    };
    Ok((info, warnings))
}

/// Whether a guest of architecture `guest_arch` can be fixed from a stack
/// built for `stack_arch` (both in the protocol's words). The guest's own
/// tools run in a chroot, so the stack's kernel must run its binaries: an
/// i686 guest is fine on the x86_64 stack, a 64-bit guest is not on the
/// i686 stack. An `unknown` guest architecture passes (the caller has the
/// manager's `source.arch` hint to go by).
pub fn check_arch(guest_arch: &str, stack_arch: &str) -> Result<(), FixupError> {
    let mismatch = |why: String| Err(FixupError::new(codes::GUEST_ARCH_MISMATCH, why));
    match (guest_arch, stack_arch) {
        ("unknown" | "", _) => Ok(()),
        (g, s) if g == s => {
            if g == "x32" {
                mismatch(
                    "the guest's userland uses the x32 ABI, which the fixup stack's kernel \
                     does not run"
                        .to_string(),
                )
            } else {
                Ok(())
            }
        }
        ("i686", "x86_64") => Ok(()),
        ("x86_64", "i686") => mismatch(
            "the guest is a 64-bit (x86_64) system and this is the 32-bit (i686) fixup \
             stack, which cannot run its tools: boot the VM from the x86_64 fixup stack \
             instead"
                .to_string(),
        ),
        ("x32", _) => mismatch(
            "the guest's userland uses the x32 ABI, which the fixup stack's kernel does \
             not run"
                .to_string(),
        ),
        (g, s) => mismatch(format!(
            "the guest is a {g} system and this is the {s} fixup stack, which fixes only \
             {s}{} guests",
            if s == "x86_64" { " and i686" } else { "" }
        )),
    }
}
