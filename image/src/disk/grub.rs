//! GRUB for the fixup disk: the images `grub-mkimage` makes from the pinned
//! GRUB packages, and the one grub.cfg that BIOS and UEFI GRUB both read.
//!
//! Every image carries a small early config that finds the ESP by its FAT
//! volume id and sets `prefix=($root)/boot/grub`; GRUB's `normal` mode then
//! reads `/boot/grub/grub.cfg` from the ESP. All modules that grub.cfg
//! needs are built into the images: the ESP carries no module folders.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::DiskError;

/// The prefix (on the ESP) where GRUB finds grub.cfg.
pub const PREFIX: &str = "/boot/grub";

/// Modules that every platform's image carries.
pub const COMMON_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "search",
    "search_fs_uuid",
    "search_fs_file",
    "search_label",
    "normal",
    "configfile",
    "linux",
    "serial",
    "terminal",
    "echo",
    "test",
    "boot",
    "ls",
    "cat",
    "halt",
    "reboot",
    "sleep",
    "minicmd",
];

/// Extra modules for BIOS (`i386-pc`).
pub const BIOS_MODULES: &[&str] = &["biosdisk"];

/// Extra modules for UEFI (`x86_64-efi`, `i386-efi`): the firmware's
/// graphics output for the kernel's early frame buffer.
pub const EFI_MODULES: &[&str] = &["efi_gop", "efi_uga"];

/// GRUB's images for the disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubImages {
    /// `i386-pc/boot.img`: the MBR boot code.
    pub boot_img: Vec<u8>,
    /// The BIOS `core.img` (diskboot.img first), for the BIOS boot partition.
    pub core_img: Vec<u8>,
    /// The x86_64 UEFI image (`EFI/BOOT/BOOTX64.EFI`).
    pub efi_x64: Vec<u8>,
    /// The ia32 UEFI image (`EFI/BOOT/BOOTIA32.EFI`).
    pub efi_ia32: Vec<u8>,
    /// The ESP (`XXXX-XXXX`) the images' early config searches for, when
    /// known; the disk builder refuses images made for another seed's ESP.
    pub esp_fs_uuid: Option<String>,
}

/// Options of [`grub_cfg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubCfg {
    /// Seconds the menu waits.
    pub timeout: u32,
    /// The default of `$osam_extra`, appended to every entry's command line.
    pub extra: String,
}

impl Default for GrubCfg {
    fn default() -> Self {
        Self {
            timeout: 3,
            extra: String::new(),
        }
    }
}

/// `s` as one single-quoted GRUB script word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The disk's grub.cfg, for BIOS and UEFI alike.
///
/// Four entries: "OSAM automatic fixup" (the default), "OSAM rescue shell"
/// (`osam.mode=rescue`), "OSAM automatic fixup (verbose)"
/// (`osam.verbose=1`, without `quiet`) and "Fix up from files on this
/// disk" (`osam.transport=disk`: inputs and results in `/fixup/` on the
/// ESP). Each passes `osam.disk=<disk_guid>` and the consoles `tty0` and
/// `ttyS0` (the last one is `/dev/console`). The entries keep this order
/// (people and tests step down the menu); each has an `--id` that
/// `set default=` in osam-extra.cfg can name.
/// Every entry appends `$osam_extra`: its default comes from
/// [`GrubCfg::extra`], and an optional `/boot/grub/osam-extra.cfg` on the
/// ESP (`set osam_extra="..."`) may change it without rebuilding grub.cfg.
pub fn grub_cfg(disk_guid: &str, opts: &GrubCfg) -> String {
    let common = format!(
        "console=tty0 console=ttyS0,115200 osam.disk={}",
        disk_guid.to_ascii_lowercase()
    );
    let entry = |title: &str, id: &str, options: &str| {
        format!(
            "menuentry '{title}' --id {id} {{\n\
             \techo 'Loading the OSAM kernel and initramfs...'\n\
             \tlinux /{kernel} {common} {options} $osam_extra\n\
             \tinitrd /{initrd}\n\
             }}\n",
            kernel = super::KERNEL_PATH,
            initrd = super::INITRD_PATH,
        )
    };
    let mut cfg = format!(
        "# The OSAM fixup disk (written by osam-image): one grub.cfg for BIOS and UEFI.\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout={timeout}\n\
         set default=osam-auto\n\
         set osam_extra={extra}\n\
         if [ -f {PREFIX}/osam-extra.cfg ]; then source {PREFIX}/osam-extra.cfg; fi\n\
         export osam_extra\n\n",
        timeout = opts.timeout,
        extra = quote(&opts.extra),
    );
    cfg.push_str(&entry(
        "OSAM automatic fixup",
        "osam-auto",
        "quiet loglevel=4",
    ));
    cfg.push_str(&entry(
        "OSAM rescue shell",
        "osam-rescue",
        "quiet loglevel=4 osam.mode=rescue",
    ));
    cfg.push_str(&entry(
        "OSAM automatic fixup (verbose)",
        "osam-verbose",
        "osam.verbose=1",
    ));
    cfg.push_str(&entry(
        "Fix up from files on this disk",
        DISK_ENTRY_ID,
        "quiet loglevel=4 osam.transport=disk",
    ));
    cfg
}

/// The `--id` of the menu entry that runs the disk transport.
pub const DISK_ENTRY_ID: &str = "osam-disk";

/// The config built into every image: serial console first (so that a
/// failure shows on the serial log), then find the ESP by its volume id.
pub fn early_config(esp_fs_uuid: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         search --no-floppy --fs-uuid --set=root {esp_fs_uuid}\n\
         set prefix=($root){PREFIX}\n"
    )
}

/// One GRUB platform: its name, the module folder in the packages and the
/// extra modules.
struct Platform {
    target: &'static str,
    extra: &'static [&'static str],
}

const I386_PC: Platform = Platform {
    target: "i386-pc",
    extra: BIOS_MODULES,
};
const X86_64_EFI: Platform = Platform {
    target: "x86_64-efi",
    extra: EFI_MODULES,
};
const I386_EFI: Platform = Platform {
    target: "i386-efi",
    extra: EFI_MODULES,
};

/// The module list of a platform (`i386-pc`, `x86_64-efi`, `i386-efi`).
pub fn modules(target: &str) -> Vec<&'static str> {
    let extra = match target {
        "i386-pc" => BIOS_MODULES,
        _ => EFI_MODULES,
    };
    COMMON_MODULES.iter().chain(extra).copied().collect()
}

fn read(path: &Path) -> Result<Vec<u8>, DiskError> {
    fs::read(path).map_err(|source| DiskError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The `grub-mkimage` to run: `$GRUB_MKIMAGE` or `grub-mkimage` on `PATH`.
fn mkimage_program() -> PathBuf {
    std::env::var_os("GRUB_MKIMAGE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("grub-mkimage"), PathBuf::from)
}

fn mkimage(
    platform: &Platform,
    modules_dir: &Path,
    early: &Path,
    out: &Path,
) -> Result<Vec<u8>, DiskError> {
    let err = |reason: String| DiskError::MkImage {
        target: platform.target.into(),
        reason,
    };
    if !modules_dir.join("moddep.lst").is_file() {
        return Err(err(format!(
            "{} has no moddep.lst: not GRUB's {} module folder",
            modules_dir.display(),
            platform.target
        )));
    }
    let mods: Vec<&str> = COMMON_MODULES
        .iter()
        .chain(platform.extra)
        .copied()
        .collect();
    let output = Command::new(mkimage_program())
        .arg("-d")
        .arg(modules_dir)
        .args(["-O", platform.target, "-p", PREFIX, "-c"])
        .arg(early)
        .arg("-o")
        .arg(out)
        .args(&mods)
        .output()
        .map_err(|e| err(format!("cannot run {}: {e}", mkimage_program().display())))?;
    if !output.status.success() {
        return Err(err(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    read(out)
}

/// Makes GRUB's images with `grub-mkimage` from the pinned packages
/// extracted under `extracted_root` (which holds `usr/lib/grub/i386-pc`,
/// `x86_64-efi` and `i386-efi`), using `work` for the early config and the
/// images. The images find the ESP whose volume id is `esp_fs_uuid`
/// ([`super::DiskIds::esp_fs_uuid`]).
pub fn make_grub_images(
    extracted_root: &Path,
    work: &Path,
    esp_fs_uuid: &str,
) -> Result<GrubImages, DiskError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DiskError::Write { path, source }
    };
    fs::create_dir_all(work).map_err(write_err(work))?;
    let early = work.join("early-grub.cfg");
    fs::write(&early, early_config(esp_fs_uuid)).map_err(write_err(&early))?;
    let lib = extracted_root.join("usr/lib/grub");
    let pc = lib.join(I386_PC.target);
    let boot_img = read(&pc.join("boot.img"))?;
    let core_img = mkimage(&I386_PC, &pc, &early, &work.join("core.img"))?;
    let efi_x64 = mkimage(
        &X86_64_EFI,
        &lib.join(X86_64_EFI.target),
        &early,
        &work.join("BOOTX64.EFI"),
    )?;
    let efi_ia32 = mkimage(
        &I386_EFI,
        &lib.join(I386_EFI.target),
        &early,
        &work.join("BOOTIA32.EFI"),
    )?;
    Ok(GrubImages {
        boot_img,
        core_img,
        efi_x64,
        efi_ia32,
        esp_fs_uuid: Some(esp_fs_uuid.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_has_the_four_entries() {
        let cfg = grub_cfg(
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            &GrubCfg {
                extra: "osam.transport=9p:fixup it's".into(),
                ..GrubCfg::default()
            },
        );
        assert!(cfg.contains("set timeout=3\n"));
        assert!(cfg.contains("serial --unit=0 --speed=115200\n"));
        assert!(cfg.contains("terminal_output serial console\n"));
        assert_eq!(cfg.matches("menuentry ").count(), 4);
        assert_eq!(
            cfg.matches("osam.disk=0fc63daf-8483-4772-8e79-3d69d8477de4 ")
                .count(),
            4
        );
        assert!(cfg.contains("set osam_extra='osam.transport=9p:fixup it'\\''s'\n"));
        let verbose = cfg.split("menuentry").nth(3).unwrap();
        assert!(verbose.contains("osam.verbose=1") && !verbose.contains("quiet"));
        let rescue = cfg.split("menuentry").nth(2).unwrap();
        assert!(rescue.contains("osam.mode=rescue"));
        let disk = cfg.split("menuentry").nth(4).unwrap();
        assert!(
            disk.starts_with(" 'Fix up from files on this disk' --id osam-disk {"),
            "{disk}"
        );
        assert!(
            disk.contains(" osam.transport=disk $osam_extra\n"),
            "{disk}"
        );
        // Only that entry picks a transport: the others are `auto`.
        assert_eq!(cfg.matches("osam.transport=disk").count(), 1);
        for line in cfg.lines().filter(|l| l.trim_start().starts_with("linux ")) {
            assert!(line.contains("console=tty0 console=ttyS0,115200"));
            assert!(line.ends_with("$osam_extra"));
        }
    }

    #[test]
    fn module_lists() {
        assert!(modules("i386-pc").contains(&"biosdisk"));
        assert!(!modules("x86_64-efi").contains(&"biosdisk"));
        assert!(modules("i386-efi").contains(&"efi_gop"));
    }
}
