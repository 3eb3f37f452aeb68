//! The fixup disk as a raw image: GPT with a BIOS boot partition and a FAT32
//! EFI System Partition holding the kernel, the initramfs, GRUB and one
//! grub.cfg for BIOS and UEFI.
//!
//! Layout (all offsets 1 MiB aligned, 512-byte sectors):
//!
//! | where | what |
//! |---|---|
//! | LBA 0 | protective MBR, boot code from GRUB's `boot.img` ([`bios`]) |
//! | LBA 1–33 | primary GPT header and entries (128 entries) |
//! | 1 MiB, 1 MiB long | partition 1, BIOS boot partition: GRUB's `core.img` |
//! | 2 MiB to the last whole MiB before the backup GPT | partition 2, ESP, FAT32 ([`esp`]) |
//! | last 33 sectors | backup GPT |
//!
//! The ESP holds (see [`esp_files`]): `EFI/BOOT/BOOTX64.EFI`,
//! `EFI/BOOT/BOOTIA32.EFI`, `boot/grub/grub.cfg`, an empty `fixup/` folder
//! (the disk transport) and the caller's files (the kernel as
//! `osam/vmlinuz`, the initramfs as `osam/initrd.img`, the manifest, …).
//!
//! Every identifier comes from [`DiskSpec::seed`] ([`ids`]) and every
//! FAT timestamp from `SOURCE_DATE_EPOCH` ([`DiskSpec::epoch`]), so two
//! builds of the same spec are byte-identical. The partitions' contents
//! are written first and the partition table last. Nothing here needs root,
//! loop devices or grub-install: GRUB's images come from `grub-mkimage`
//! ([`grub::make_grub_images`]) and the BIOS boot code is installed by hand
//! ([`bios`]).

pub mod bios;
pub mod esp;
pub mod grub;
pub mod ids;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gpt::partition::Partition;
use gpt::partition_types;

pub use grub::{GrubCfg, GrubImages, grub_cfg, make_grub_images};
pub use ids::DiskIds;

/// Bytes per sector of the disk (GPT logical block size).
pub const SECTOR: u64 = 512;
/// Alignment of every partition.
pub const MIB: u64 = 1024 * 1024;
/// Start of the BIOS boot partition (partition 1).
pub const BIOS_BOOT_START: u64 = MIB;
/// Size of the BIOS boot partition; `core.img` must fit.
pub const BIOS_BOOT_SIZE: u64 = MIB;
/// Start of the ESP (partition 2).
pub const ESP_START: u64 = BIOS_BOOT_START + BIOS_BOOT_SIZE;
/// Sectors the backup GPT takes at the end of the disk (header + 128 entries).
const BACKUP_GPT_SECTORS: u64 = 33;
/// The smallest disk this builder makes: FAT32 needs 65525 clusters, which
/// with 512-byte clusters is about 33 MiB of ESP.
pub const MIN_SIZE: u64 = 40 * MIB;

/// ESP path of the kernel that grub.cfg boots.
pub const KERNEL_PATH: &str = "osam/vmlinuz";
/// ESP path of the initramfs that grub.cfg loads.
pub const INITRD_PATH: &str = "osam/initrd.img";
/// ESP path of the one grub.cfg (GRUB's prefix is `/boot/grub`).
pub const GRUB_CFG_PATH: &str = "boot/grub/grub.cfg";
/// ESP path of the x86_64 UEFI GRUB (the removable-media fallback path).
pub const EFI_X64_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// ESP path of the ia32 UEFI GRUB (the removable-media fallback path).
pub const EFI_IA32_PATH: &str = "EFI/BOOT/BOOTIA32.EFI";
/// ESP folder of the disk transport (empty on a fresh disk).
pub const FIXUP_DIR: &str = "fixup";

/// An error building the disk.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The requested disk size is unusable.
    #[error("disk size {size} bytes: {reason}")]
    Size {
        /// The requested size.
        size: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file path for the ESP is unusable.
    #[error("ESP path {path:?}: {reason}")]
    EspPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Formatting or filling the ESP failed (the files do not fit, …).
    #[error("ESP: {what}")]
    Fat {
        /// What was being done (names the ESP path where there is one).
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A GRUB image is unusable.
    #[error("GRUB image {what}: {reason}")]
    GrubImage {
        /// Which image.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Reading an input file failed.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the disk image or a work file failed.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `grub-mkimage` could not be run or failed.
    #[error("grub-mkimage for {target}: {reason}")]
    MkImage {
        /// The GRUB platform (`i386-pc`, `x86_64-efi`, `i386-efi`).
        target: String,
        /// What went wrong, with its stderr.
        reason: String,
    },
    /// The GPT could not be written.
    #[error("writing the GPT of {path}")]
    Gpt {
        /// The disk image (`<memory>` for an in-memory build).
        path: PathBuf,
        /// Why.
        #[source]
        source: gpt::GptError,
    },
}

/// What to build.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// The disk size in bytes: a whole number of MiB, at least [`MIN_SIZE`].
    pub size_bytes: u64,
    /// Seed of every identifier: GPT disk GUID, partition GUIDs, FAT volume
    /// id, MBR disk signature ([`DiskIds::from_seed`]).
    pub seed: [u8; 32],
    /// Files for the ESP: path (relative, `/`-separated; a leading `/` is
    /// ignored) and contents. The kernel goes to [`KERNEL_PATH`], the
    /// initramfs to [`INITRD_PATH`]. They may not replace the GRUB files
    /// this builder writes.
    pub files: Vec<(String, Vec<u8>)>,
    /// GRUB's images, made for this seed's ESP ([`make_grub_images`]).
    pub grub: GrubImages,
    /// The FAT volume label (upper-cased, cut to 11 characters) and the ESP's
    /// GPT partition name.
    pub label: String,
    /// Options grub.cfg appends to every menu entry's kernel command line
    /// (the default of `$osam_extra`); empty for none.
    pub extra_cmdline: String,
    /// Timestamp of every FAT entry, Unix seconds (`SOURCE_DATE_EPOCH`;
    /// clamped to FAT's 1980–2107).
    pub epoch: u64,
}

impl DiskSpec {
    /// A spec with the default label `OSAM-FIXUP`, no extra options and the
    /// epoch from `SOURCE_DATE_EPOCH`.
    pub fn new(size_bytes: u64, seed: [u8; 32], grub: GrubImages) -> Self {
        Self {
            size_bytes,
            seed,
            files: Vec::new(),
            grub,
            label: "OSAM-FIXUP".into(),
            extra_cmdline: String::new(),
            epoch: crate::cpio::source_date_epoch(),
        }
    }

    /// The identifiers this spec's disk gets.
    pub fn ids(&self) -> DiskIds {
        DiskIds::from_seed(&self.seed)
    }
}

/// One partition of the built disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    /// The partition number (1-based, as Linux names it).
    pub number: u32,
    /// The GPT partition name.
    pub name: String,
    /// The partition type GUID, upper case as the specification writes it.
    pub type_guid: String,
    /// The unique partition GUID, lower case.
    pub part_guid: String,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
}

/// What [`build_raw`] made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiskInfo {
    /// The disk size in bytes.
    pub size_bytes: u64,
    /// The GPT disk GUID, lower case: what grub.cfg passes as `osam.disk=`.
    pub disk_guid: String,
    /// The ESP's FAT volume id as GRUB and blkid print it (`XXXX-XXXX`).
    pub esp_fs_uuid: String,
    /// The partitions, in order.
    pub partitions: Vec<PartitionInfo>,
    /// The ESP's files, sorted, as written.
    pub esp_files: Vec<String>,
    /// The grub.cfg written to the ESP.
    pub grub_cfg: String,
}

impl DiskInfo {
    /// The ESP's byte offset in the image.
    pub fn esp_offset(&self) -> u64 {
        self.partitions
            .iter()
            .find(|p| p.number == 2)
            .map_or(ESP_START, |p| p.first_lba * SECTOR)
    }
}

/// The geometry of a disk of `size` bytes: (ESP first LBA, ESP sectors).
fn geometry(size: u64) -> Result<(u64, u64), DiskError> {
    let bad = |reason: &str| DiskError::Size {
        size,
        reason: reason.into(),
    };
    if size % MIB != 0 {
        return Err(bad("not a whole number of MiB"));
    }
    if size < MIN_SIZE {
        return Err(bad(&format!("smaller than the minimum {MIN_SIZE}")));
    }
    if size / SECTOR > u64::from(u32::MAX) {
        return Err(bad("larger than FAT32 and the protective MBR can describe"));
    }
    let total = size / SECTOR;
    let mib_sectors = MIB / SECTOR;
    // The ESP ends at the last whole MiB before the backup GPT.
    let end = (total - BACKUP_GPT_SECTORS - 1) / mib_sectors * mib_sectors;
    let first = ESP_START / SECTOR;
    Ok((first, end - first))
}

/// Builds the disk into the file `out` (created or truncated; sparse where
/// the disk is zero) and returns what it made.
pub fn build_raw(spec: &DiskSpec, out: &Path) -> Result<DiskInfo, DiskError> {
    let write_err = |source| DiskError::Write {
        path: out.to_path_buf(),
        source,
    };
    geometry(spec.size_bytes)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(write_err)?;
    file.set_len(spec.size_bytes).map_err(write_err)?;
    let info = build_on(spec, &mut file, out, true)?;
    file.sync_all().map_err(write_err)?;
    Ok(info)
}

/// Builds the disk in memory and returns its bytes with what it made.
pub fn build_in_memory(spec: &DiskSpec) -> Result<(Vec<u8>, DiskInfo), DiskError> {
    geometry(spec.size_bytes)?;
    let len = usize::try_from(spec.size_bytes).map_err(|_| DiskError::Size {
        size: spec.size_bytes,
        reason: "does not fit in memory".into(),
    })?;
    let mut dev = Cursor::new(vec![0u8; len]);
    let info = build_on(spec, &mut dev, Path::new("<memory>"), false)?;
    Ok((dev.into_inner(), info))
}

/// Writes the whole disk onto `dev`, which is `spec.size_bytes` long and
/// reads as zeros. With `sparse`, all-zero blocks are not written (the
/// device is a freshly truncated file).
fn build_on<D: Read + Write + Seek + std::fmt::Debug>(
    spec: &DiskSpec,
    dev: &mut D,
    path: &Path,
    sparse: bool,
) -> Result<DiskInfo, DiskError> {
    let write_err = |source| DiskError::Write {
        path: path.to_path_buf(),
        source,
    };
    let (esp_first, esp_sectors) = geometry(spec.size_bytes)?;
    let ids = spec.ids();
    if let Some(made_for) = &spec.grub.esp_fs_uuid
        && !made_for.eq_ignore_ascii_case(&ids.esp_fs_uuid())
    {
        return Err(DiskError::GrubImage {
            what: "set".into(),
            reason: format!(
                "made for the ESP {made_for}, but this seed's ESP is {}",
                ids.esp_fs_uuid()
            ),
        });
    }

    // 1. The partitions' contents: the ESP, then core.img.
    let cfg = grub_cfg(
        &ids.disk_guid_string(),
        &GrubCfg {
            extra: spec.extra_cmdline.clone(),
            ..GrubCfg::default()
        },
    );
    let files = esp_files(spec, &cfg)?;
    let esp_bytes = esp_sectors * SECTOR;
    let esp = esp::format_esp(
        esp_bytes,
        esp_first,
        ids.fat_volume_id,
        &spec.label,
        spec.epoch,
        &files,
    )?;
    write_at(dev, esp_first * SECTOR, &esp, sparse).map_err(write_err)?;

    let bios_first = BIOS_BOOT_START / SECTOR;
    let core = bios::patch_core_img(&spec.grub.core_img, bios_first, BIOS_BOOT_SIZE)?;
    write_at(dev, BIOS_BOOT_START, &core, false).map_err(write_err)?;

    // 2. The partition table, last: GPT, then the protective MBR with
    //    GRUB's boot code.
    let mut parts = BTreeMap::new();
    parts.insert(
        1,
        Partition {
            part_type_guid: partition_types::BIOS,
            part_guid: ids.bios_part_guid,
            first_lba: bios_first,
            last_lba: bios_first + BIOS_BOOT_SIZE / SECTOR - 1,
            flags: 0,
            name: "BIOS boot".into(),
        },
    );
    parts.insert(
        2,
        Partition {
            part_type_guid: partition_types::EFI,
            part_guid: ids.esp_part_guid,
            first_lba: esp_first,
            last_lba: esp_first + esp_sectors - 1,
            flags: 0,
            name: spec.label.chars().take(36).collect(),
        },
    );
    let gpt_err = |source| DiskError::Gpt {
        path: path.to_path_buf(),
        source,
    };
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(&mut *dev, Some(ids.disk_guid))
        .map_err(gpt_err)?;
    disk.update_partitions(parts).map_err(gpt_err)?;
    let partitions = disk
        .partitions()
        .iter()
        .map(|(&number, p)| PartitionInfo {
            number,
            name: p.name.clone(),
            type_guid: p.part_type_guid.guid.to_string().to_ascii_uppercase(),
            part_guid: p.part_guid.to_string(),
            first_lba: p.first_lba,
            last_lba: p.last_lba,
        })
        .collect();
    disk.write().map_err(gpt_err)?;

    let mbr = bios::mbr_sector(
        &spec.grub.boot_img,
        bios_first,
        spec.size_bytes / SECTOR,
        ids.mbr_signature,
    )?;
    write_at(dev, 0, &mbr, false).map_err(write_err)?;
    dev.flush().map_err(write_err)?;

    Ok(DiskInfo {
        size_bytes: spec.size_bytes,
        disk_guid: ids.disk_guid_string(),
        esp_fs_uuid: ids.esp_fs_uuid(),
        partitions,
        esp_files: files.keys().cloned().collect(),
        grub_cfg: cfg,
    })
}

/// The ESP's files, sorted by path: GRUB's (EFI images, grub.cfg) and the
/// caller's. A caller's path that is unusable or collides with GRUB's is an
/// error.
pub fn esp_files(spec: &DiskSpec, grub_cfg: &str) -> Result<BTreeMap<String, Vec<u8>>, DiskError> {
    let mut files = BTreeMap::new();
    files.insert(EFI_X64_PATH.to_owned(), spec.grub.efi_x64.clone());
    files.insert(EFI_IA32_PATH.to_owned(), spec.grub.efi_ia32.clone());
    files.insert(GRUB_CFG_PATH.to_owned(), grub_cfg.as_bytes().to_vec());
    for (raw, data) in &spec.files {
        let path = esp::normalize_path(raw)?;
        if files.contains_key(&path) {
            return Err(DiskError::EspPath {
                path: raw.clone(),
                reason: "given twice or replaces a GRUB file".into(),
            });
        }
        files.insert(path, data.clone());
    }
    Ok(files)
}

/// Writes `data` at `offset`; with `sparse`, skips 64 KiB blocks that are
/// all zero (the target already reads as zeros there).
fn write_at<D: Write + Seek>(
    dev: &mut D,
    offset: u64,
    data: &[u8],
    sparse: bool,
) -> io::Result<()> {
    if !sparse {
        dev.seek(SeekFrom::Start(offset))?;
        return dev.write_all(data);
    }
    const BLOCK: usize = 64 * 1024;
    for (i, chunk) in data.chunks(BLOCK).enumerate() {
        if chunk.iter().all(|&b| b == 0) {
            continue;
        }
        dev.seek(SeekFrom::Start(offset + (i * BLOCK) as u64))?;
        dev.write_all(chunk)?;
    }
    Ok(())
}

/// Reads a raw disk image's file `path` back (for checks and tests).
pub fn read_image(path: &Path) -> Result<Vec<u8>, DiskError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| DiskError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_mib_aligned() {
        let (first, sectors) = geometry(128 * MIB).unwrap();
        assert_eq!(first * SECTOR, 2 * MIB);
        assert_eq!((first + sectors) * SECTOR % MIB, 0);
        assert!((first + sectors) < 128 * MIB / SECTOR - BACKUP_GPT_SECTORS);
        assert_eq!(sectors * SECTOR, 125 * MIB);
        assert!(geometry(128 * MIB + 512).is_err());
        assert!(geometry(8 * MIB).is_err());
    }
}
