//! The `disk` transport (docs/protocol.md, "The disk transport"): the
//! inputs and the results travel in `/fixup/` on the fixup disk's own FAT
//! partition (the ESP), for field engineers who have no manager.
//!
//! 1. [`wait_for_esp`] finds the fixup disk by its GPT disk GUID
//!    (`osam.disk=`, passed by the disk's grub.cfg) and on it the FAT
//!    partition: the EFI System Partition by type, else any partition
//!    holding a FAT file system;
//! 2. [`EspMount`] mounts it (vfat) at `/run/osam/esp`;
//! 3. [`import_inputs`] copies `/fixup/*.json` into `/tmp/fixup` (tmpfs);
//!    a `BEGIN` in either folder starts the run ([`begin_at`]);
//! 4. [`start_run`] consumes the ESP's BEGIN and removes the last run's
//!    results there, and the ESP is remounted read-only for the run;
//! 5. [`export_results`] writes progress.txt, fixup.log and result.json
//!    back (each atomically: FAT renames over an existing name), END last,
//!    and the ESP is synced and unmounted.
//!
//! FAT has no journal: every write goes to a temporary name first, and the
//! folder is synced before END is created, so a power cut leaves either
//! the old results or the new ones, and END only over complete ones.
//!
//! Finding the partition and moving the files are functions of paths (a
//! sysfs tree, a `/dev` folder, two folders): the tests run them on
//! temporary trees; only [`EspMount`] touches the system.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};

use crate::fsutil;
use crate::protocol::report::{BEGIN, END, FIXUP_LOG, PROGRESS, READY, RESULT};
use crate::runstate::EspInfo;
use crate::storage::discover;
use crate::storage::partition::{Partition, TableKind, read_partitions};
use crate::storage::probe::probe;

/// The GPT type GUID of an EFI System Partition.
pub const ESP_TYPE_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// The folder on the ESP that holds the inputs and the results.
pub const ESP_FIXUP_DIR: &str = "fixup";
/// The results copied back to the ESP, in this order; END follows last.
pub const RESULT_FILES: [&str; 3] = [PROGRESS, FIXUP_LOG, RESULT];
/// The modules a vfat mount needs (there is no modprobe for the kernel to
/// ask): the file system and the code pages its names are converted with.
pub const VFAT_MODULES: [&str; 4] = ["vfat", "nls_cp437", "nls_iso8859_1", "nls_utf8"];
/// The largest input file copied from the ESP (the protocol's own limit
/// is 1 MiB; a larger file is copied whole up to this size so that
/// validation reports `config.too_large` rather than a truncated JSON).
const MAX_INPUT_COPY: u64 = 16 << 20;

/// The fixup disk's FAT partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspLocation {
    /// The disk's kernel name: `sda`.
    pub disk: String,
    /// The partition's kernel name: `sda2`.
    pub partition: String,
    pub number: u32,
    /// Its device node: `/dev/sda2`.
    pub device: PathBuf,
    /// The disk's GPT disk GUID, lowercase.
    pub disk_guid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error(
        "no osam.disk= on the kernel command line: the disk transport finds the fixup \
         disk by its GPT disk GUID, which the disk's own GRUB menu passes; boot from the \
         fixup disk's menu or add osam.disk=<GUID>"
    )]
    NoGuid,
    #[error(
        "no disk with GPT disk GUID {guid} (osam.disk=, the fixup disk) appeared within \
         {secs} s; disks seen: {seen}"
    )]
    NotFound {
        guid: String,
        secs: u64,
        seen: String,
    },
    #[error(
        "the fixup disk /dev/{disk} (GPT disk GUID {guid}) has no FAT partition: no EFI \
         System Partition holding a FAT file system"
    )]
    NoFat { disk: String, guid: String },
    #[error(
        "the fixup disk's FAT partition {} is not in /dev (found /dev/{disk} with GPT disk \
         GUID {guid})", .device.display()
    )]
    NoNode {
        disk: String,
        guid: String,
        device: PathBuf,
    },
    #[error("cannot mount the fixup disk's FAT partition: {0}")]
    Mount(#[source] Box<crate::pid1::mounts::MountError>),
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// The kernel name of partition `number` of `disk`: from sysfs, else by
/// the kernel's rule (`sda2`, `nvme0n1p2`).
pub fn partition_name(sysfs: &Path, disk: &str, number: u32) -> String {
    let base = sysfs.join("block").join(disk);
    if let Ok(entries) = fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(disk)
                && read_trim(&e.path().join("partition")) == Some(number.to_string())
            {
                return name;
            }
        }
    }
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// Does the partition hold a FAT file system?
fn holds_fat(dev: &mut File, p: &Partition, sector: u64) -> bool {
    matches!(
        probe(dev, p.start_bytes(sector), p.size_bytes(sector)),
        Ok(Some(fs)) if fs.fs_type == "vfat"
    )
}

/// Finds the fixup disk (GPT disk GUID `guid`) among the disks of a sysfs
/// tree, reading each one's table from `<dev>/<name>`, and its FAT
/// partition: the ESP by type first, then any partition holding FAT.
pub fn find_esp(sysfs: &Path, dev: &Path, guid: &str) -> Result<EspLocation, EspError> {
    let guid = guid.to_ascii_lowercase();
    let mut seen = Vec::new();
    for d in discover::scan(sysfs) {
        let node = dev.join(&d.name);
        let sector = read_trim(
            &sysfs
                .join("block")
                .join(&d.name)
                .join("queue/logical_block_size"),
        )
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
        let mut file = match File::open(&node) {
            Ok(f) => f,
            Err(e) => {
                seen.push(format!("{} ({e})", d.name));
                continue;
            }
        };
        let table = match read_partitions(&mut file, d.size_bytes, sector) {
            Ok(t) => t,
            Err(e) => {
                seen.push(format!("{} ({e})", d.name));
                continue;
            }
        };
        let disk_guid = match &table.kind {
            TableKind::Gpt { disk_guid, .. } => disk_guid.clone(),
            TableKind::Mbr { .. } => {
                seen.push(format!("{} (MBR)", d.name));
                continue;
            }
            TableKind::None => {
                seen.push(format!("{} (no partition table)", d.name));
                continue;
            }
        };
        if disk_guid != guid {
            seen.push(format!("{} (GPT {disk_guid})", d.name));
            continue;
        }
        let is_esp = |p: &&Partition| p.type_guid.as_deref() == Some(ESP_TYPE_GUID);
        let candidates = table
            .partitions
            .iter()
            .filter(is_esp)
            .chain(table.partitions.iter().filter(|p| !is_esp(p)));
        let mut fat = None;
        for p in candidates {
            if holds_fat(&mut file, p, sector) {
                fat = Some(p.number);
                break;
            }
        }
        let Some(number) = fat else {
            return Err(EspError::NoFat { disk: d.name, guid });
        };
        let partition = partition_name(sysfs, &d.name, number);
        let device = dev.join(&partition);
        if !device.exists() {
            return Err(EspError::NoNode {
                disk: d.name,
                guid,
                device,
            });
        }
        return Ok(EspLocation {
            disk: d.name,
            partition,
            number,
            device,
            disk_guid: guid,
        });
    }
    Err(EspError::NotFound {
        guid,
        secs: 0,
        seen: if seen.is_empty() {
            "none".to_string()
        } else {
            seen.join(", ")
        },
    })
}

/// [`find_esp`], retried every 250 ms for up to `limit` while the disk or
/// its partition's node has not appeared (the kernel scans the disks
/// while PID 1 starts). A disk without a FAT partition fails at once.
pub fn wait_for_esp(
    sysfs: &Path,
    dev: &Path,
    guid: Option<&str>,
    limit: Duration,
) -> Result<EspLocation, EspError> {
    let guid = guid.ok_or(EspError::NoGuid)?;
    let start = Instant::now();
    loop {
        match find_esp(sysfs, dev, guid) {
            Ok(loc) => return Ok(loc),
            Err(e @ EspError::NoFat { .. }) => return Err(e),
            Err(e) if start.elapsed() >= limit => {
                return Err(match e {
                    EspError::NotFound { guid, seen, .. } => EspError::NotFound {
                        guid,
                        secs: limit.as_secs(),
                        seen,
                    },
                    other => other,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Is `name` an input file to copy from the ESP: `*.json` (any case),
/// not hidden (temporary files are), not a result?
fn is_input_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".json") && !lower.starts_with('.') && lower != RESULT
}

/// Copies the input files (`*.json`, not result.json) of the ESP's fixup
/// folder into the fixup directory, replacing what is there; the names
/// are lower-cased (the protocol's names are; FAT tools may store them in
/// capitals). Returns the names copied, sorted.
pub fn import_inputs(esp_fixup: &Path, fixup_dir: &Path) -> io::Result<Vec<String>> {
    let mut copied = Vec::new();
    let entries = match fs::read_dir(esp_fixup) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(copied),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_input_name(&name) || !e.file_type()?.is_file() {
            continue;
        }
        let mut data = Vec::new();
        File::open(e.path())?
            .take(MAX_INPUT_COPY)
            .read_to_end(&mut data)?;
        let target = name.to_ascii_lowercase();
        fsutil::write_atomic(&fixup_dir.join(&target), &data, 0o600)?;
        copied.push(target);
    }
    copied.sort();
    Ok(copied)
}

/// Where BEGIN was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginAt {
    /// `/tmp/fixup/BEGIN` (made from the shell): the inputs in
    /// `/tmp/fixup` are used as they are.
    FixupDir,
    /// `/fixup/BEGIN` on the ESP: the ESP's inputs are copied in again.
    Esp,
}

/// Looks for BEGIN in the fixup directory, then in the ESP's folder.
pub fn begin_at(fixup_dir: &Path, esp_fixup: Option<&Path>) -> Option<BeginAt> {
    if fixup_dir.join(BEGIN).exists() {
        Some(BeginAt::FixupDir)
    } else if esp_fixup.is_some_and(|d| d.join(BEGIN).exists()) {
        Some(BeginAt::Esp)
    } else {
        None
    }
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Readies the ESP's folder for a new run: END first (so that nothing
/// claims complete results from here on), then the last run's results and
/// READY, then BEGIN (consumed: a run starts once per BEGIN); synced.
pub fn start_run(esp_fixup: &Path) -> io::Result<()> {
    remove_if_there(&esp_fixup.join(END))?;
    fsutil::sync_dir(esp_fixup)?;
    for f in RESULT_FILES.iter().chain(&[READY, BEGIN]) {
        remove_if_there(&esp_fixup.join(f))?;
    }
    fsutil::sync_dir(esp_fixup)
}

/// Copies the results from the fixup directory to the ESP's folder: END
/// removed there first, then progress.txt, fixup.log and result.json,
/// each written atomically, then END, created only when the fixup
/// directory has one, last. Returns the names written.
pub fn export_results(fixup_dir: &Path, esp_fixup: &Path) -> io::Result<Vec<String>> {
    fs::create_dir_all(esp_fixup)?;
    remove_if_there(&esp_fixup.join(END))?;
    fsutil::sync_dir(esp_fixup)?;
    let mut written = Vec::new();
    for f in RESULT_FILES {
        let data = match fs::read(fixup_dir.join(f)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        fsutil::write_atomic(&esp_fixup.join(f), &data, 0o644)?;
        written.push(f.to_string());
    }
    fsutil::sync_dir(esp_fixup)?;
    if fixup_dir.join(END).exists() {
        fsutil::touch_durable(&esp_fixup.join(END))?;
        written.push(END.to_string());
    }
    Ok(written)
}

/// The ESP mounted at a mount point (the executor of this module).
#[derive(Debug)]
pub struct EspMount {
    pub location: EspLocation,
    pub mount_point: PathBuf,
    mounted: bool,
}

/// The vfat options tried in turn: names in UTF-8 with ISO 8859-1 case
/// folding (both from [`VFAT_MODULES`]; the kernel's default character
/// set, Debian's `ascii`, may not be in the stack), then the kernel's
/// defaults.
const VFAT_OPTIONS: [Option<&str>; 2] = [Some("utf8,iocharset=iso8859-1,codepage=437"), None];

const MOUNT_FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME);

impl EspMount {
    /// Mounts the partition (vfat, read-write) at `mount_point`.
    pub fn mount(location: EspLocation, mount_point: &Path) -> Result<EspMount, EspError> {
        let mut m = EspMount {
            location,
            mount_point: mount_point.to_path_buf(),
            mounted: false,
        };
        m.mount_again()?;
        Ok(m)
    }

    /// Mounts the partition read-only (its FAT is not marked dirty), to
    /// read the inputs (rescue mode).
    pub fn mount_read_only(
        location: EspLocation,
        mount_point: &Path,
    ) -> Result<EspMount, EspError> {
        let mut m = EspMount {
            location,
            mount_point: mount_point.to_path_buf(),
            mounted: false,
        };
        m.mount_with(MsFlags::MS_RDONLY)?;
        Ok(m)
    }

    fn mount_again(&mut self) -> Result<(), EspError> {
        self.mount_with(MsFlags::empty())
    }

    fn mount_with(&mut self, extra: MsFlags) -> Result<(), EspError> {
        let device = self.location.device.to_string_lossy().into_owned();
        let mut result = Ok(());
        for data in VFAT_OPTIONS {
            result = crate::pid1::mounts::mount_one(
                &device,
                &self.mount_point,
                Some("vfat"),
                MOUNT_FLAGS | extra,
                data,
            );
            if result.is_ok() {
                break;
            }
        }
        result.map_err(|e| EspError::Mount(Box::new(e)))?;
        self.mounted = true;
        Ok(())
    }

    /// The ESP's fixup folder (created when missing, while writable).
    pub fn fixup_dir(&self) -> PathBuf {
        let dir = self.mount_point.join(ESP_FIXUP_DIR);
        if !dir.is_dir() {
            let _ = fs::create_dir_all(&dir);
        }
        dir
    }

    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// What the state file says about it.
    pub fn info(&self) -> EspInfo {
        EspInfo {
            device: self.location.device.display().to_string(),
            mount_point: self.mount_point.display().to_string(),
            disk_guid: self.location.disk_guid.clone(),
        }
    }

    /// Remounts read-only (`true`: while stage 1 runs, so that a power
    /// cut leaves a clean FAT) or read-write; mounts first where needed.
    pub fn set_read_only(&mut self, read_only: bool) -> Result<(), String> {
        if !self.mounted {
            self.mount_again().map_err(|e| e.to_string())?;
        }
        let mut flags = MOUNT_FLAGS | MsFlags::MS_REMOUNT;
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        nix::mount::mount(
            None::<&str>,
            &self.mount_point,
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| {
            format!(
                "remounting {} {}: {e}",
                self.mount_point.display(),
                if read_only { "read-only" } else { "read-write" }
            )
        })
    }

    /// Syncs and unmounts; a busy mount (a shell inside it) is retried for
    /// a few seconds and then detached (it goes once the shell leaves).
    pub fn unmount(&mut self) -> Result<(), String> {
        if !self.mounted {
            return Ok(());
        }
        nix::unistd::sync();
        let mut last = None;
        for _ in 0..20 {
            match nix::mount::umount2(&self.mount_point, MntFlags::empty()) {
                Ok(()) => {
                    self.mounted = false;
                    return Ok(());
                }
                Err(nix::errno::Errno::EBUSY) => {
                    last = Some(nix::errno::Errno::EBUSY);
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(format!("unmounting {}: {e}", self.mount_point.display())),
            }
        }
        nix::mount::umount2(&self.mount_point, MntFlags::MNT_DETACH).map_err(|e| {
            format!(
                "unmounting {} ({}): {e}",
                self.mount_point.display(),
                last.map_or_else(String::new, |e| e.to_string())
            )
        })?;
        self.mounted = false;
        Err(format!(
            "{} was busy: detached; it is unmounted once the last user leaves it",
            self.mount_point.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::discover::fixture;
    use crate::storage::partition::build::{GptPart, gpt};

    const DISK_GUID: [u8; 16] = [
        0x78, 0x56, 0x34, 0x12, 0xBC, 0x9A, 0xF0, 0xDE, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD,
        0xEF,
    ];
    const DISK_GUID_TEXT: &str = "12345678-9abc-def0-0123-456789abcdef";
    /// c12a7328-f81f-11d2-ba4b-00a0c93ec93b in the GPT's byte order.
    const ESP_TYPE: [u8; 16] = [
        0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9,
        0x3B,
    ];
    const BIOS_BOOT: [u8; 16] = [
        0x48, 0x61, 0x68, 0x21, 0x49, 0x64, 0x6F, 0x6E, 0x74, 0x4E, 0x65, 0x65, 0x64, 0x45, 0x46,
        0x49,
    ];

    /// A 4 MiB disk like the fixup disk: a BIOS boot partition and a FAT
    /// partition (typed ESP when `esp_type`, formatted when `fat`).
    fn fixup_disk(guid: [u8; 16], esp_type: bool, fat: bool) -> Vec<u8> {
        let mut img = vec![0u8; 4 << 20];
        gpt(
            &mut img,
            512,
            guid,
            &[
                GptPart {
                    type_guid: BIOS_BOOT,
                    guid: [1; 16],
                    first: 34,
                    last: 2047,
                    name: "bios",
                },
                GptPart {
                    type_guid: if esp_type { ESP_TYPE } else { BIOS_BOOT },
                    guid: [2; 16],
                    first: 2048,
                    last: 8191 - 34,
                    name: "esp",
                },
            ],
        );
        if fat {
            let start = 2048 * 512;
            let len = (8191 - 34 - 2048 + 1) * 512;
            let mut part = io::Cursor::new(vec![0u8; len]);
            fatfs::format_volume(&mut part, fatfs::FormatVolumeOptions::new()).unwrap();
            img[start..start + len].copy_from_slice(part.get_ref());
        }
        img
    }

    /// A sysfs tree and a /dev folder holding `disks` (name, image).
    fn machine(disks: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let sysfs = d.path().join("sys");
        let dev = d.path().join("dev");
        fs::create_dir_all(&dev).unwrap();
        fixture::controller(&sysfs, "0000:03:00.0", "vmw_pvscsi");
        for (i, (name, img)) in disks.iter().enumerate() {
            fixture::disk(
                &sysfs,
                name,
                "0000:03:00.0",
                &format!("host2/target2:0:{i}/2:0:{i}:0"),
                img.len() as u64 / 512,
            );
            fs::write(dev.join(name), img).unwrap();
            let part = sysfs.join("block").join(name).join(format!("{name}2"));
            fs::create_dir_all(&part).unwrap();
            fs::write(part.join("partition"), "2\n").unwrap();
            fs::write(dev.join(format!("{name}2")), b"").unwrap();
        }
        d
    }

    #[test]
    fn finds_the_fat_partition_of_the_disk_with_the_guid() {
        let mut other = DISK_GUID;
        other[15] = 0x01;
        let m = machine(&[
            ("sda", fixup_disk(other, true, true)),
            ("sdb", fixup_disk(DISK_GUID, true, true)),
        ]);
        let (sysfs, dev) = (m.path().join("sys"), m.path().join("dev"));
        let loc = find_esp(&sysfs, &dev, &DISK_GUID_TEXT.to_ascii_uppercase()).unwrap();
        assert_eq!(loc.disk, "sdb");
        assert_eq!(loc.partition, "sdb2");
        assert_eq!(loc.number, 2);
        assert_eq!(loc.device, dev.join("sdb2"));
        assert_eq!(loc.disk_guid, DISK_GUID_TEXT);
    }

    #[test]
    fn a_fat_partition_without_the_esp_type_is_taken_too() {
        let m = machine(&[("sda", fixup_disk(DISK_GUID, false, true))]);
        let loc = find_esp(&m.path().join("sys"), &m.path().join("dev"), DISK_GUID_TEXT).unwrap();
        assert_eq!(loc.partition, "sda2");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let m = machine(&[("sda", fixup_disk(DISK_GUID, true, false))]);
        let (sysfs, dev) = (m.path().join("sys"), m.path().join("dev"));
        let e =
            wait_for_esp(&sysfs, &dev, Some(DISK_GUID_TEXT), Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, EspError::NoFat { .. }), "{e}");
        assert!(e.to_string().contains("/dev/sda"), "{e}");

        let e = wait_for_esp(
            &sysfs,
            &dev,
            Some("00000000-0000-0000-0000-000000000001"),
            Duration::ZERO,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("00000000-0000-0000-0000-000000000001"), "{e}");
        assert!(e.contains(&format!("sda (GPT {DISK_GUID_TEXT})")), "{e}");

        let e = wait_for_esp(&sysfs, &dev, None, Duration::ZERO).unwrap_err();
        assert!(matches!(e, EspError::NoGuid));
        assert!(e.to_string().contains("osam.disk="));

        let empty = tempfile::tempdir().unwrap();
        let e = find_esp(empty.path(), empty.path(), DISK_GUID_TEXT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("disks seen: none"), "{e}");
    }

    #[test]
    fn a_missing_partition_node_is_waited_for_then_named() {
        let m = machine(&[("sda", fixup_disk(DISK_GUID, true, true))]);
        fs::remove_file(m.path().join("dev/sda2")).unwrap();
        let e = wait_for_esp(
            &m.path().join("sys"),
            &m.path().join("dev"),
            Some(DISK_GUID_TEXT),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, EspError::NoNode { .. }), "{e}");
    }

    #[test]
    fn partition_names_follow_the_kernel() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(partition_name(d.path(), "sda", 2), "sda2");
        assert_eq!(partition_name(d.path(), "nvme0n1", 2), "nvme0n1p2");
        assert_eq!(partition_name(d.path(), "mmcblk0", 1), "mmcblk0p1");
    }

    /// The ESP's folder and /tmp/fixup as two temporary folders.
    fn folders() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let esp = d.path().join("esp/fixup");
        let fixup = d.path().join("tmp/fixup");
        fs::create_dir_all(&esp).unwrap();
        fs::create_dir_all(&fixup).unwrap();
        (d, esp, fixup)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn imports_the_inputs_but_not_old_results_or_other_files() {
        let (_d, esp, fixup) = folders();
        fs::write(esp.join("system-configuration.json"), b"{\"a\":1}").unwrap();
        fs::write(esp.join("REPLICA-DISK-MAP.JSON"), b"{}").unwrap();
        fs::write(esp.join("network-interface-map.json"), b"{}").unwrap();
        fs::write(esp.join("result.json"), b"{\"old\":true}").unwrap();
        fs::write(esp.join(".result.json.tmp7"), b"x").unwrap();
        fs::write(esp.join("notes.txt"), b"x").unwrap();
        fs::create_dir(esp.join("dir.json")).unwrap();
        fs::write(fixup.join("system-configuration.json"), b"stale").unwrap();
        let copied = import_inputs(&esp, &fixup).unwrap();
        assert_eq!(
            copied,
            [
                "network-interface-map.json",
                "replica-disk-map.json",
                "system-configuration.json"
            ]
        );
        assert_eq!(names(&fixup), copied);
        assert_eq!(
            fs::read(fixup.join("system-configuration.json")).unwrap(),
            b"{\"a\":1}"
        );
        // A missing ESP folder is nothing to import.
        assert!(
            import_inputs(&esp.join("missing"), &fixup)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn begin_in_either_folder_starts_the_run() {
        let (_d, esp, fixup) = folders();
        assert_eq!(begin_at(&fixup, Some(&esp)), None);
        assert_eq!(begin_at(&fixup, None), None);
        fs::write(esp.join(BEGIN), b"").unwrap();
        assert_eq!(begin_at(&fixup, Some(&esp)), Some(BeginAt::Esp));
        assert_eq!(begin_at(&fixup, None), None);
        fs::write(fixup.join(BEGIN), b"").unwrap();
        assert_eq!(begin_at(&fixup, Some(&esp)), Some(BeginAt::FixupDir));
    }

    #[test]
    fn a_run_consumes_begin_and_clears_the_last_results() {
        let (_d, esp, _fixup) = folders();
        for f in [BEGIN, END, RESULT, FIXUP_LOG, PROGRESS, READY] {
            fs::write(esp.join(f), b"old").unwrap();
        }
        fs::write(esp.join("system-configuration.json"), b"{}").unwrap();
        fs::write(esp.join("osam-collect-1.tar.gz"), b"x").unwrap();
        start_run(&esp).unwrap();
        assert_eq!(
            names(&esp),
            ["osam-collect-1.tar.gz", "system-configuration.json"]
        );
        start_run(&esp).unwrap();
    }

    #[test]
    fn exports_the_results_with_end_last_and_only_over_complete_ones() {
        let (_d, esp, fixup) = folders();
        fs::write(esp.join(END), b"").unwrap();
        fs::write(esp.join(RESULT), b"{\"old\":true}").unwrap();
        fs::write(fixup.join(PROGRESS), b"line\n").unwrap();
        fs::write(fixup.join(FIXUP_LOG), b"log\n").unwrap();
        fs::write(fixup.join(RESULT), b"{\"status\":\"failed\"}").unwrap();
        fs::write(fixup.join("system-configuration.json"), b"{}").unwrap();
        // No END in the fixup directory yet: none on the ESP either.
        let written = export_results(&fixup, &esp).unwrap();
        assert_eq!(written, ["progress.txt", "fixup.log", "result.json"]);
        assert!(!esp.join(END).exists());
        fs::write(fixup.join(END), b"").unwrap();
        let written = export_results(&fixup, &esp).unwrap();
        assert_eq!(written.last().map(String::as_str), Some("END"));
        assert_eq!(
            names(&esp),
            ["END", "fixup.log", "progress.txt", "result.json"]
        );
        assert_eq!(
            fs::read(esp.join(RESULT)).unwrap(),
            b"{\"status\":\"failed\"}"
        );
        // A missing ESP folder is created.
        let fresh = esp.parent().unwrap().join("new/fixup");
        export_results(&fixup, &fresh).unwrap();
        assert!(fresh.join(END).exists());
    }
}
