//! The EFI system partition: the distribution's loader in
//! `\EFI\<vendor>\`, the removable-media fallback `\EFI\BOOT\BOOTX64.EFI`
//! (`BOOTIA32.EFI` for i686 guests) that a VM with empty NVRAM boots, and
//! the `efibootmgr` entry.
//!
//! The fallback is a copy of the vendor's first-stage loader: shim where
//! the distribution boots through shim (RHEL and derivatives, Ubuntu,
//! Debian with shim-signed, SUSE), else its GRUB image. Shim started from
//! `\EFI\BOOT\` loads `grubx64.efi` and `mmx64.efi` from its own
//! directory, so those are copied beside it; `fbx64.efi` (which recreates
//! boot entries from the vendor's `BOOTX64.CSV`) only where that CSV
//! exists. The signed binaries are copied, never rebuilt: `grub2-install`
//! would replace the signed chain by an unsigned GRUB. A fallback that
//! already exists is kept (the distribution's packages maintain it); only
//! missing companions are added.

use std::io;

use crate::engine::plan::{Edit, GuestFiles};

/// The largest EFI binary copied.
const MAX_EFI_BINARY: u64 = 64 * 1024 * 1024;

/// Where an ESP is mounted in the guest, with its `EFI` directory.
pub const ESP_MOUNTS: &[(&str, &str)] = &[("/boot/efi", "/boot/efi/EFI"), ("/efi", "/efi/EFI")];

/// The loader file names of one EFI architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaders {
    pub fallback: &'static str,
    pub shim: &'static [&'static str],
    pub grub: &'static [&'static str],
    pub mok_manager: &'static [&'static str],
    pub fb: &'static str,
    pub csv: &'static str,
    /// GRUB's platform for `grub-install --target=`.
    pub grub_target: &'static str,
}

/// The loaders for a guest architecture (`i686` → 32-bit UEFI).
pub fn loaders(guest_arch: &str) -> Loaders {
    if guest_arch == "i686" {
        Loaders {
            fallback: "BOOTIA32.EFI",
            shim: &["shimia32.efi"],
            grub: &["grubia32.efi"],
            mok_manager: &["mmia32.efi"],
            fb: "fbia32.efi",
            csv: "BOOTIA32.CSV",
            grub_target: "i386-efi",
        }
    } else {
        Loaders {
            fallback: "BOOTX64.EFI",
            shim: &["shimx64.efi", "shim.efi"],
            grub: &["grubx64.efi", "grub.efi"],
            mok_manager: &["mmx64.efi", "MokManager.efi"],
            fb: "fbx64.efi",
            csv: "BOOTX64.CSV",
            grub_target: "x86_64-efi",
        }
    }
}

/// The ESP's `\EFI\` directory names a distribution uses, by os-release ID.
pub fn vendor_dirs(os_id: &str) -> &'static [&'static str] {
    match os_id {
        "rhel" | "ol" => &["redhat"],
        "centos" => &["centos", "redhat"],
        "rocky" => &["rocky"],
        "almalinux" => &["almalinux"],
        "fedora" => &["fedora"],
        "amzn" => &["amzn"],
        "ubuntu" => &["ubuntu"],
        "debian" => &["debian"],
        "sles" | "sled" | "sles_sap" => &["sles"],
        "opensuse-leap" | "opensuse-tumbleweed" | "opensuse" => &["opensuse"],
        "photon" => &["photon"],
        _ => &[],
    }
}

/// A name in `dir` matching one of `names` (case-insensitively: FAT).
pub fn find_in(files: &dyn GuestFiles, dir: &str, names: &[&str]) -> io::Result<Option<String>> {
    let list = files.list(dir)?;
    Ok(names
        .iter()
        .find_map(|n| list.iter().find(|e| e.eq_ignore_ascii_case(n)))
        .cloned())
}

/// The guest's ESP: (mount point, `EFI` directory).
pub fn find_esp(files: &dyn GuestFiles) -> Option<(&'static str, &'static str)> {
    ESP_MOUNTS
        .iter()
        .copied()
        .find(|(_, efi)| files.is_dir(efi))
}

/// The vendor directory under `efi_dir`: the distribution's own, else the
/// first one holding a shim or GRUB image.
pub fn find_vendor(
    files: &dyn GuestFiles,
    efi_dir: &str,
    os_id: &str,
    l: &Loaders,
) -> io::Result<Option<String>> {
    let dirs = files.list(efi_dir)?;
    if let Some(d) = vendor_dirs(os_id)
        .iter()
        .find_map(|v| dirs.iter().find(|d| d.eq_ignore_ascii_case(v)))
    {
        return Ok(Some(d.clone()));
    }
    for d in dirs.iter().filter(|d| !d.eq_ignore_ascii_case("boot")) {
        let path = format!("{efi_dir}/{d}");
        if find_in(files, &path, l.shim)?.is_some() || find_in(files, &path, l.grub)?.is_some() {
            return Ok(Some(d.clone()));
        }
    }
    Ok(None)
}

/// What [`repair`] plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EspRepair {
    pub edits: Vec<Edit>,
    pub changes: Vec<String>,
    /// The loader for the boot entry, as the firmware names it
    /// (`\EFI\redhat\shimx64.efi`); `None` when the vendor directory has
    /// neither shim nor GRUB.
    pub loader: Option<String>,
}

/// Plans the fallback path from the vendor directory's loaders.
pub fn repair(
    files: &dyn GuestFiles,
    efi_dir: &str,
    vendor: &str,
    l: &Loaders,
) -> io::Result<EspRepair> {
    let mut out = EspRepair::default();
    let vdir = format!("{efi_dir}/{vendor}");
    let shim = find_in(files, &vdir, l.shim)?;
    let grub = find_in(files, &vdir, l.grub)?;
    let Some(primary) = shim.clone().or_else(|| grub.clone()) else {
        return Ok(out);
    };
    out.loader = Some(format!("\\EFI\\{vendor}\\{primary}"));
    let boot_name = files
        .list(efi_dir)?
        .into_iter()
        .find(|d| d.eq_ignore_ascii_case("boot"))
        .unwrap_or_else(|| "BOOT".to_string());
    let bdir = format!("{efi_dir}/{boot_name}");

    let copy = |from: &str, to_name: &str, out: &mut EspRepair| -> io::Result<()> {
        let src = format!("{vdir}/{from}");
        let Some(bytes) = files.read_bytes(&src, MAX_EFI_BINARY)? else {
            return Ok(());
        };
        let dst = format!("{bdir}/{to_name}");
        out.changes.push(format!("{src} copied to {dst}"));
        out.edits.push(Edit::write(&dst, bytes));
        Ok(())
    };

    let existing = find_in(files, &bdir, &[l.fallback])?;
    let fallback_ok = match &existing {
        Some(name) => files
            .read_bytes(&format!("{bdir}/{name}"), MAX_EFI_BINARY)?
            .is_some_and(|b| !b.is_empty()),
        None => false,
    };
    if !fallback_ok {
        let name = existing.unwrap_or_else(|| l.fallback.to_string());
        copy(&primary, &name, &mut out)?;
    }
    if shim.is_some() {
        let has_fb = find_in(files, &bdir, &[l.fb])?.is_some();
        let vendor_fb = find_in(files, &vdir, &[l.fb])?;
        let csv = find_in(files, &vdir, &[l.csv, "BOOT.CSV"])?.is_some();
        if let (false, Some(fb), true) = (has_fb, &vendor_fb, csv) {
            copy(fb, fb, &mut out)?;
        }
        for names in [l.grub, l.mok_manager] {
            if let Some(n) = find_in(files, &vdir, names)? {
                if find_in(files, &bdir, &[n.as_str()])?.is_none() {
                    copy(&n, &n, &mut out)?;
                }
            }
        }
    }
    Ok(out)
}

/// The `efibootmgr` argv for a new boot entry.
pub fn efibootmgr_argv(disk: &str, partition: u32, label: &str, loader: &str) -> Vec<String> {
    [
        "efibootmgr",
        "-c",
        "-d",
        disk,
        "-p",
        &partition.to_string(),
        "-L",
        label,
        "-l",
        loader,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The boot entry's label for a distribution.
pub fn entry_label(os_id: &str, pretty_name: &str, vendor: &str) -> String {
    let known = match os_id {
        "rhel" => "Red Hat Enterprise Linux",
        "centos" => "CentOS Linux",
        "rocky" => "Rocky Linux",
        "almalinux" => "AlmaLinux",
        "ol" => "Oracle Linux",
        "fedora" => "Fedora",
        "amzn" => "Amazon Linux",
        "ubuntu" => "ubuntu",
        "debian" => "debian",
        "sles" | "sled" | "sles_sap" => "sles-secureboot",
        "opensuse-leap" | "opensuse-tumbleweed" => "opensuse-secureboot",
        _ => "",
    };
    if !known.is_empty() {
        known.to_string()
    } else if !pretty_name.is_empty() {
        pretty_name.to_string()
    } else {
        vendor.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::MemFiles;

    #[test]
    fn shim_distribution_gets_fallback_and_companions() {
        let files = MemFiles::new()
            .with("/boot/efi/EFI/redhat/shimx64.efi", "SHIM")
            .with("/boot/efi/EFI/redhat/grubx64.efi", "GRUB")
            .with("/boot/efi/EFI/redhat/mmx64.efi", "MM")
            .with("/boot/efi/EFI/redhat/BOOTX64.CSV", "csv");
        let l = loaders("x86_64");
        assert_eq!(find_esp(&files), Some(("/boot/efi", "/boot/efi/EFI")));
        let v = find_vendor(&files, "/boot/efi/EFI", "rhel", &l)
            .unwrap()
            .unwrap();
        assert_eq!(v, "redhat");
        let r = repair(&files, "/boot/efi/EFI", &v, &l).unwrap();
        assert_eq!(r.loader.as_deref(), Some("\\EFI\\redhat\\shimx64.efi"));
        let paths: Vec<&str> = r.edits.iter().flat_map(|e| e.paths()).collect();
        assert_eq!(
            paths,
            vec![
                "/boot/efi/EFI/BOOT/BOOTX64.EFI",
                "/boot/efi/EFI/BOOT/grubx64.efi",
                "/boot/efi/EFI/BOOT/mmx64.efi"
            ]
        );
        assert_eq!(
            r.edits[0],
            Edit::write("/boot/efi/EFI/BOOT/BOOTX64.EFI", b"SHIM".to_vec())
        );
    }

    #[test]
    fn existing_fallback_is_kept_and_grub_only_debian_and_ia32() {
        let files = MemFiles::new()
            .with("/boot/efi/EFI/debian/grubx64.efi", "GRUB")
            .with("/boot/efi/EFI/boot/bootx64.efi", "OLD");
        let l = loaders("x86_64");
        let r = repair(&files, "/boot/efi/EFI", "debian", &l).unwrap();
        assert!(r.edits.is_empty());
        assert_eq!(r.loader.as_deref(), Some("\\EFI\\debian\\grubx64.efi"));
        let files = MemFiles::new().with("/boot/efi/EFI/debian/grubia32.efi", "G32");
        let r = repair(&files, "/boot/efi/EFI", "debian", &loaders("i686")).unwrap();
        assert_eq!(r.edits[0].paths(), vec!["/boot/efi/EFI/BOOT/BOOTIA32.EFI"]);
        let empty = MemFiles::new().with("/boot/efi/EFI/redhat/grub.cfg", "");
        assert_eq!(
            repair(&empty, "/boot/efi/EFI", "redhat", &l)
                .unwrap()
                .loader,
            None
        );
    }
}
