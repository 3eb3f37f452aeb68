//! GRUB's BIOS boot code, installed by hand.
//!
//! This is what `grub-bios-setup` does for a GPT disk with a BIOS boot
//! partition, written here from GRUB's documented layout
//! (`include/grub/i386/pc/boot.h`, `grub-core/boot/i386/pc/diskboot.S`,
//! `util/setup.c`) because no crate does it and the builder runs neither
//! as root nor with loop devices:
//!
//! - LBA 0 gets `boot.img`'s first 440 bytes (the boot code, up to the
//!   MBR disk signature at 0x1B8), with its BPB area (0x03–0x5A) left zero
//!   as on a fresh disk, around the protective MBR's partition table;
//!   the kernel-sector field (0x5C, u64 LE) names core.img's first sector;
//!   the boot drive (0x64) is 0xFF ("use the drive the BIOS passed in DL")
//!   and the floppy-only drive check jump at 0x66 becomes two NOPs, as
//!   grub-bios-setup does for hard disks;
//! - the BIOS boot partition gets `core.img`, whose first sector is
//!   `diskboot.img`: the blocklist at the end of that sector (0x1F4: start
//!   sector u64, sector count u16, load segment u16 = 0x820) names the
//!   rest of core.img, which lies right behind it.
//!
//! GRUB's optional Reed-Solomon redundancy is not added: core.img as
//! grub-mkimage writes it has a redundancy of 0, which the loader skips.

use gpt::mbr::ProtectiveMBR;

use super::{DiskError, SECTOR};

/// Start of the BIOS parameter block in boot.img.
const BPB_START: usize = 0x03;
/// End (exclusive) of the BIOS parameter block in boot.img.
const BPB_END: usize = 0x5a;
/// boot.img: LBA of core.img's first sector (u64 LE).
const KERNEL_SECTOR: usize = 0x5c;
/// boot.img: the boot drive, 0xFF for "as the BIOS passed it".
const BOOT_DRIVE: usize = 0x64;
/// boot.img: the 2-byte jump that skips the drive check, NOPed for disks.
const DRIVE_CHECK: usize = 0x66;
/// Length of the MBR boot code (up to the disk signature).
const BOOT_CODE_LEN: usize = 0x1b8;
/// diskboot.img: the first (last-in-sector) blocklist entry.
const BLOCKLIST: usize = 0x200 - 12;
/// Segment where diskboot loads the rest of core.img (0x800 + 0x20).
const LOAD_SEGMENT: u16 = 0x820;

fn bad(what: &str, reason: impl Into<String>) -> DiskError {
    DiskError::GrubImage {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The MBR sector: a protective MBR for a disk of `total_sectors` with
/// boot.img's code patched to load core.img from `core_lba`.
pub fn mbr_sector(
    boot_img: &[u8],
    core_lba: u64,
    total_sectors: u64,
    disk_signature: [u8; 4],
) -> Result<[u8; 512], DiskError> {
    if boot_img.len() != 512 || boot_img[0x1fe..] != [0x55, 0xaa] {
        return Err(bad(
            "boot.img",
            format!("{} bytes, not a 512-byte boot sector", boot_img.len()),
        ));
    }
    // GRUB's boot.img starts with `jmp short` over the BPB and then a NOP.
    if boot_img[0] != 0xeb || boot_img[2] != 0x90 {
        return Err(bad(
            "boot.img",
            "does not start with GRUB's jump over the BPB",
        ));
    }
    let mut code = [0u8; BOOT_CODE_LEN];
    code.copy_from_slice(&boot_img[..BOOT_CODE_LEN]);
    code[BPB_START..BPB_END].fill(0);
    code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    code[BOOT_DRIVE] = 0xff;
    code[DRIVE_CHECK] = 0x90;
    code[DRIVE_CHECK + 1] = 0x90;

    let protective = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    let mut mbr = ProtectiveMBR::with_lb_size(protective);
    mbr.set_bootcode(code);
    mbr.set_disk_signature(disk_signature);
    Ok(mbr.to_bytes())
}

/// core.img padded to whole sectors, with diskboot's blocklist naming the
/// sectors after the first, for core.img written at `core_lba`. `room` is
/// the size of the BIOS boot partition.
pub fn patch_core_img(core_img: &[u8], core_lba: u64, room: u64) -> Result<Vec<u8>, DiskError> {
    let sector = SECTOR as usize;
    if core_img.len() < 2 * sector {
        return Err(bad("core.img", format!("only {} bytes", core_img.len())));
    }
    let mut core = core_img.to_vec();
    core.resize(core.len().div_ceil(sector) * sector, 0);
    if core.len() as u64 > room {
        return Err(bad(
            "core.img",
            format!(
                "{} bytes do not fit the {room}-byte BIOS boot partition",
                core.len()
            ),
        ));
    }
    let rest = u16::try_from(core.len() / sector - 1)
        .map_err(|_| bad("core.img", "too many sectors for one blocklist entry"))?;
    // diskboot.img as shipped lists sector 2 with the 0x820 segment; a
    // different image is not the diskboot this code knows.
    let seg = u16::from_le_bytes([core[BLOCKLIST + 10], core[BLOCKLIST + 11]]);
    if seg != LOAD_SEGMENT {
        return Err(bad(
            "core.img",
            format!("diskboot blocklist segment {seg:#x}, expected {LOAD_SEGMENT:#x}"),
        ));
    }
    core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    core[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&rest.to_le_bytes());
    Ok(core)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_boot_img() -> Vec<u8> {
        let mut b = vec![0x11u8; 512];
        b[0] = 0xeb;
        b[1] = 0x63;
        b[2] = 0x90;
        b[0x1fe] = 0x55;
        b[0x1ff] = 0xaa;
        b
    }

    #[test]
    fn mbr_keeps_partition_table_and_patches_fields() {
        let mbr = mbr_sector(&fake_boot_img(), 2048, 262144, [1, 2, 3, 4]).unwrap();
        assert_eq!(&mbr[..3], &[0xeb, 0x63, 0x90]);
        assert!(mbr[BPB_START..BPB_END].iter().all(|&b| b == 0));
        assert_eq!(
            u64::from_le_bytes(mbr[0x5c..0x64].try_into().unwrap()),
            2048
        );
        assert_eq!(mbr[0x64], 0xff);
        assert_eq!(&mbr[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(&mbr[0x1b8..0x1bc], &[1, 2, 3, 4]);
        assert_eq!(mbr[0x1be + 4], 0xee);
        assert_eq!(&mbr[0x1fe..], &[0x55, 0xaa]);
    }

    #[test]
    fn core_blocklist_names_the_rest() {
        let mut core = vec![0u8; 3 * 512 + 5];
        core[0x1fe] = 0x20;
        core[0x1ff] = 0x08;
        let out = patch_core_img(&core, 2048, 1 << 20).unwrap();
        assert_eq!(out.len(), 4 * 512);
        assert_eq!(
            u64::from_le_bytes(out[0x1f4..0x1fc].try_into().unwrap()),
            2049
        );
        assert_eq!(u16::from_le_bytes([out[0x1fc], out[0x1fd]]), 3);
        assert!(patch_core_img(&core, 2048, 1024).is_err());
    }
}
