//! The guest's boot loader and the firmware it booted with.
//!
//! Boot loader, by its configuration: GRUB 2's `grub.cfg` (in `/boot/grub2`,
//! `/boot/grub` or on the ESP), BLS entries in `/boot/loader/entries`
//! beside GRUB 2 (RHEL 8+, Fedora), systemd-boot's `loader.conf` or EFI
//! binary, GRUB legacy's `menu.lst`/`grub.conf` (without a `grub.cfg`),
//! extlinux.
//!
//! Firmware, by evidence: an ESP with EFI binaries, an `/etc/fstab` line
//! for `/boot/efi`, a `grub.cfg` on the ESP, GRUB's EFI modules say EFI;
//! GRUB's `i386-pc` modules in `/boot` and GRUB legacy's files in
//! `/boot/grub` say BIOS. Strong evidence for both (hybrid cloud images) or
//! for neither gives `unknown`; weak evidence (the packages' module
//! directories under `/usr/lib`) decides only where there is no strong one.

use super::{Bootloader, FirmwareHint};
use crate::error::{Warning, codes};
use crate::guestfs::GuestRoot;

/// `/etc/fstab` larger than this is not read for firmware hints.
const MAX_FSTAB_BYTES: u64 = 1024 * 1024;

/// Where ESPs are mounted in a guest tree.
const ESP_EFI_DIRS: &[&str] = &["/boot/efi/EFI", "/efi/EFI", "/boot/EFI"];

/// What [`detect_boot`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub bootloader: Bootloader,
    pub firmware: FirmwareHint,
    /// The guest path of the GRUB 2 configuration found, if any.
    pub grub_cfg: Option<String>,
}

/// What the ESP directories hold.
#[derive(Debug, Default)]
struct Esp {
    /// Any `*.efi` file in `EFI/<vendor>/`.
    efi_binaries: bool,
    /// `EFI/<vendor>/grub.cfg`.
    grub_cfg: Option<String>,
    /// `EFI/<vendor>/grub.conf` (RHEL 6's GRUB legacy for EFI).
    legacy_conf: bool,
    /// `EFI/systemd/systemd-boot*.efi`.
    systemd_boot: bool,
}

/// The boot loader and firmware of the guest at `root`.
pub fn detect_boot(root: &GuestRoot, warnings: &mut Vec<Warning>) -> BootInfo {
    let esp = scan_esp(root);
    let grub_cfg = ["/boot/grub2/grub.cfg", "/boot/grub/grub.cfg"]
        .iter()
        .find(|p| is_file(root, p))
        .map(|p| p.to_string())
        .or_else(|| esp.grub_cfg.clone());
    let bls_entries = has_conf_files(root, "/boot/loader/entries");
    let sd_boot = esp.systemd_boot
        || [
            "/boot/loader/loader.conf",
            "/boot/efi/loader/loader.conf",
            "/efi/loader/loader.conf",
        ]
        .iter()
        .any(|p| is_file(root, p));
    let grub2_installed = grub_cfg.is_some()
        || is_dir(root, "/boot/grub2")
        || is_file(root, "/boot/grub2/grubenv")
        || is_file(root, "/etc/default/grub");
    let legacy_in_boot = ["/boot/grub/menu.lst", "/boot/grub/grub.conf"]
        .iter()
        .any(|p| is_file(root, p));
    let legacy = legacy_in_boot || esp.legacy_conf;
    let extlinux = [
        "/boot/extlinux/extlinux.conf",
        "/boot/extlinux.conf",
        "/extlinux.conf",
        "/boot/syslinux/syslinux.cfg",
        "/boot/syslinux/extlinux.conf",
    ]
    .iter()
    .any(|p| is_file(root, p));

    let bootloader = if bls_entries && grub_cfg.is_some() {
        Bootloader::Bls
    } else if grub_cfg.is_some() {
        Bootloader::Grub2
    } else if sd_boot {
        Bootloader::SystemdBoot
    } else if bls_entries && grub2_installed {
        // RHEL 8+ whose grub.cfg is missing: still GRUB with BLS.
        Bootloader::Bls
    } else if legacy {
        Bootloader::GrubLegacy
    } else if grub2_installed {
        Bootloader::Grub2
    } else if extlinux {
        Bootloader::Extlinux
    } else if bls_entries {
        Bootloader::Bls
    } else {
        Bootloader::None
    };

    if matches!(bootloader, Bootloader::Grub2 | Bootloader::Bls) && grub_cfg.is_none() {
        warnings.push(Warning::new(
            codes::GUEST_NO_BOOTLOADER,
            "GRUB 2 is installed but its grub.cfg is missing (looked in /boot/grub2, \
             /boot/grub and on the ESP)",
        ));
    }

    let strong_efi = esp.efi_binaries
        || esp.grub_cfg.is_some()
        || esp.legacy_conf
        || fstab_mounts_esp(root)
        || is_dir(root, "/boot/grub/x86_64-efi")
        || is_dir(root, "/boot/grub2/x86_64-efi")
        || is_dir(root, "/boot/grub/i386-efi")
        || is_dir(root, "/boot/grub2/i386-efi");
    let strong_bios =
        is_dir(root, "/boot/grub2/i386-pc") || is_dir(root, "/boot/grub/i386-pc") || legacy_in_boot;
    let weak_efi = [
        "/usr/lib/grub/x86_64-efi",
        "/usr/lib/grub/i386-efi",
        "/usr/share/grub2/x86_64-efi",
        "/usr/lib/grub/x86_64-efi-signed",
    ]
    .iter()
    .any(|p| is_dir(root, p));
    let weak_bios = extlinux
        || [
            "/usr/lib/grub/i386-pc",
            "/usr/share/grub2/i386-pc",
            "/usr/lib/grub2/i386-pc",
        ]
        .iter()
        .any(|p| is_dir(root, p));
    let firmware = match (strong_efi, strong_bios, weak_efi, weak_bios) {
        (true, false, _, _) => FirmwareHint::Efi,
        (false, true, _, _) => FirmwareHint::Bios,
        (false, false, true, false) => FirmwareHint::Efi,
        (false, false, false, true) => FirmwareHint::Bios,
        _ => FirmwareHint::Unknown,
    };

    BootInfo {
        bootloader,
        firmware,
        grub_cfg,
    }
}

fn scan_esp(root: &GuestRoot) -> Esp {
    let mut esp = Esp::default();
    for efi in ESP_EFI_DIRS {
        let Ok(vendors) = root.read_dir(efi) else {
            continue;
        };
        for vendor in vendors {
            let Some(vendor_name) = vendor.name_str() else {
                continue;
            };
            let dir = format!("{efi}/{vendor_name}");
            let Ok(files) = root.read_dir(&dir) else {
                continue;
            };
            for file in files {
                let Some(name) = file.name_str() else {
                    continue;
                };
                let lower = name.to_ascii_lowercase();
                if lower.ends_with(".efi") {
                    esp.efi_binaries = true;
                    if vendor_name.eq_ignore_ascii_case("systemd")
                        && lower.starts_with("systemd-boot")
                    {
                        esp.systemd_boot = true;
                    }
                } else if lower == "grub.cfg" && esp.grub_cfg.is_none() {
                    esp.grub_cfg = Some(format!("{dir}/{name}"));
                } else if lower == "grub.conf" {
                    esp.legacy_conf = true;
                }
            }
        }
    }
    esp
}

/// Whether `/etc/fstab` mounts something at `/boot/efi` or `/efi`.
fn fstab_mounts_esp(root: &GuestRoot) -> bool {
    let Ok(text) = root.read_to_string_lossy("/etc/fstab", MAX_FSTAB_BYTES) else {
        return false;
    };
    fstab_has_esp(&text)
}

/// Whether fstab text has an entry for `/boot/efi` or `/efi`.
pub fn fstab_has_esp(text: &str) -> bool {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|mount_point| matches!(mount_point.trim_end_matches('/'), "/boot/efi" | "/efi"))
}

/// Whether `dir` holds a `*.conf` file.
fn has_conf_files(root: &GuestRoot, dir: &str) -> bool {
    root.read_dir(dir).is_ok_and(|entries| {
        entries.iter().any(|e| {
            e.name_str()
                .is_some_and(|n| n.ends_with(".conf") && is_file(root, &format!("{dir}/{n}")))
        })
    })
}

fn is_file(root: &GuestRoot, path: &str) -> bool {
    root.metadata(path).is_ok_and(|m| m.is_file())
}

fn is_dir(root: &GuestRoot, path: &str) -> bool {
    root.metadata(path).is_ok_and(|m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_esp_lines() {
        assert!(fstab_has_esp(
            "UUID=1234 / ext4 defaults 0 1\nUUID=ABCD-EF01  /boot/efi  vfat  umask=0077 0 1\n"
        ));
        assert!(fstab_has_esp("/dev/sda1\t/efi\tvfat\tdefaults\t0\t2"));
        assert!(!fstab_has_esp(
            "# /dev/sda1 /boot/efi vfat defaults 0 2\n/dev/sda2 / xfs defaults 0 0"
        ));
        assert!(!fstab_has_esp("/dev/sda1 /boot ext4 defaults 0 2"));
        assert!(!fstab_has_esp("\0\u{fffd}garbage"));
    }
}
