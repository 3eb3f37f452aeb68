//! The EFI System Partition: FAT32 formatted in memory with `fatfs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Cursor, Write};
use std::sync::{Mutex, OnceLock};

use fatfs::{
    Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider,
};

use super::{DiskError, FIXUP_DIR, SECTOR};

/// FAT32 needs at least this many clusters (or it is FAT16 by definition).
const FAT32_MIN_CLUSTERS: u64 = 65525;

/// A [`TimeProvider`] that always says the same time: every FAT timestamp of
/// the ESP is `SOURCE_DATE_EPOCH`.
#[derive(Debug, Clone, Copy)]
pub struct FixedTime(DateTime);

impl FixedTime {
    /// The FAT time of Unix time `epoch` (UTC), clamped to FAT's range
    /// 1980-01-01 to 2107-12-31.
    pub fn from_epoch(epoch: u64) -> Self {
        const FAT_MIN: u64 = 315_532_800; // 1980-01-01T00:00:00Z
        const FAT_MAX: u64 = 4_354_819_199; // 2107-12-31T23:59:59Z
        let t = epoch.clamp(FAT_MIN, FAT_MAX);
        let (year, month, day) = civil_from_days(t / 86_400);
        let secs = t % 86_400;
        Self(DateTime {
            date: Date { year, month, day },
            time: Time {
                hour: (secs / 3600) as u16,
                min: (secs / 60 % 60) as u16,
                sec: (secs % 60) as u16,
                millis: 0,
            },
        })
    }

    /// The fixed time.
    pub fn date_time(&self) -> DateTime {
        self.0
    }

    /// A `'static` provider for `epoch`, as fatfs 0.3 wants one. One per
    /// distinct epoch is leaked (a few bytes) and then reused.
    fn leaked(epoch: u64) -> &'static FixedTime {
        static CACHE: OnceLock<Mutex<BTreeMap<u64, &'static FixedTime>>> = OnceLock::new();
        let mut cache = CACHE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cache
            .entry(epoch)
            .or_insert_with(|| Box::leak(Box::new(FixedTime::from_epoch(epoch))))
    }
}

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        self.0.date
    }

    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (the usual era-based conversion, 400-year eras of 146097 days).
fn civil_from_days(days: u64) -> (u16, u16, u16) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year as u16, month as u16, day as u16)
}

/// `"/EFI//BOOT/x"` → `"EFI/BOOT/x"`; refuses empty paths, `.`, `..` and
/// control characters.
pub fn normalize_path(raw: &str) -> Result<String, DiskError> {
    let bad = |reason: &str| DiskError::EspPath {
        path: raw.to_owned(),
        reason: reason.into(),
    };
    let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(bad("empty"));
    }
    for p in &parts {
        if *p == "." || *p == ".." {
            return Err(bad("contains . or .."));
        }
        if p.chars()
            .any(|c| c.is_control() || "\\:*?\"<>|".contains(c))
        {
            return Err(bad("contains a character FAT does not allow"));
        }
    }
    Ok(parts.join("/"))
}

/// The FAT volume label: upper case, characters FAT allows, space padded.
pub fn fat_label(label: &str) -> [u8; 11] {
    let mut out = [b' '; 11];
    let chars = label
        .chars()
        .map(|c| c.to_ascii_uppercase())
        .filter(|c| c.is_ascii_alphanumeric() || "-_ ".contains(*c));
    for (slot, c) in out.iter_mut().zip(chars) {
        *slot = c as u8;
    }
    out
}

/// The largest cluster size (at most 4 KiB) that keeps a volume of `bytes`
/// FAT32.
fn cluster_size(bytes: u64) -> Option<u32> {
    [4096u32, 2048, 1024, 512]
        .into_iter()
        // Keep a margin for the reserved sectors and the FATs.
        .find(|&c| bytes / u64::from(c) > FAT32_MIN_CLUSTERS + FAT32_MIN_CLUSTERS / 16)
}

/// Formats a FAT32 volume of `bytes` in memory (a partition starting at
/// `first_lba`, recorded as its hidden sectors) and writes `files` into it:
/// first every folder, then every file, both in path order, plus the empty
/// [`FIXUP_DIR`]. Returns the volume's bytes.
pub fn format_esp(
    bytes: u64,
    first_lba: u64,
    volume_id: u32,
    label: &str,
    epoch: u64,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, DiskError> {
    let fat = |what: String| move |source: io::Error| DiskError::Fat { what, source };
    let cluster = cluster_size(bytes).ok_or_else(|| DiskError::Size {
        size: bytes,
        reason: "ESP too small for FAT32".into(),
    })?;
    let len = usize::try_from(bytes).map_err(|_| DiskError::Size {
        size: bytes,
        reason: "ESP does not fit in memory".into(),
    })?;
    let mut vol = Cursor::new(vec![0u8; len]);
    fatfs::format_volume(
        &mut vol,
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .bytes_per_sector(SECTOR as u16)
            .bytes_per_cluster(cluster)
            .volume_id(volume_id)
            .volume_label(fat_label(label)),
    )
    .map_err(fat("formatting".into()))?;
    vol.set_position(0);

    let mut dirs = BTreeSet::new();
    dirs.insert(FIXUP_DIR.to_owned());
    for path in files.keys() {
        let mut parent = path.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            dirs.insert(p.to_owned());
            parent = p;
        }
    }
    {
        let options = FsOptions::new()
            .update_accessed_date(false)
            .time_provider(FixedTime::leaked(epoch));
        let fs = FileSystem::new(&mut vol, options).map_err(fat("mounting".into()))?;
        write_tree(&fs, &dirs, files)?;
        fs.unmount().map_err(fat("unmounting".into()))?;
    }
    let mut vol = vol.into_inner();
    set_hidden_sectors(&mut vol, first_lba);
    Ok(vol)
}

/// Creates `dirs`, then writes `files`, in that order.
fn write_tree<T: fatfs::ReadWriteSeek>(
    fs: &FileSystem<T>,
    dirs: &BTreeSet<String>,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), DiskError> {
    let fat = |what: String| move |source: io::Error| DiskError::Fat { what, source };
    {
        let root = fs.root_dir();
        // BTreeSet order puts a parent before its children.
        for dir in dirs {
            root.create_dir(dir)
                .map_err(fat(format!("creating {dir}/")))?;
        }
        for (path, data) in files {
            let mut f = root
                .create_file(path)
                .map_err(fat(format!("creating {path}")))?;
            f.truncate().map_err(fat(format!("truncating {path}")))?;
            f.write_all(data).map_err(fat(format!("writing {path}")))?;
            f.flush().map_err(fat(format!("writing {path}")))?;
        }
    }
    Ok(())
}

/// Records the partition's start in the boot sector and its backup (BPB
/// "hidden sectors", offset 0x1C), as a formatter on the partition would.
fn set_hidden_sectors(vol: &mut [u8], first_lba: u64) {
    let hidden = u32::try_from(first_lba).unwrap_or(u32::MAX).to_le_bytes();
    let backup = u64::from(u16::from_le_bytes([vol[0x32], vol[0x33]]));
    for sector in [0, backup] {
        let at = (sector * SECTOR) as usize + 0x1c;
        if sector == 0 || (backup != 0 && backup != 0xffff) {
            vol[at..at + 4].copy_from_slice(&hidden);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn epoch_to_fat_time() {
        let t = FixedTime::from_epoch(1_700_000_000).date_time(); // 2023-11-14T22:13:20Z
        assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
        let t = FixedTime::from_epoch(0).date_time();
        assert_eq!((t.date.year, t.date.month, t.date.day), (1980, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn paths_and_labels() {
        assert_eq!(
            normalize_path("/EFI//BOOT/x.efi").unwrap(),
            "EFI/BOOT/x.efi"
        );
        assert!(normalize_path("a/../b").is_err());
        assert!(normalize_path("/").is_err());
        assert_eq!(&fat_label("osam-fixup!"), b"OSAM-FIXUP ");
        assert_eq!(&fat_label("a very long label"), b"A VERY LONG");
    }

    #[test]
    fn esp_round_trip() {
        let mut files = BTreeMap::new();
        files.insert("osam/vmlinuz".to_owned(), vec![1u8; 70_000]);
        files.insert("EFI/BOOT/BOOTX64.EFI".to_owned(), b"efi".to_vec());
        let vol = format_esp(40 << 20, 4096, 0x1234_5678, "osam", 1_700_000_000, &files).unwrap();
        assert_eq!(
            u32::from_le_bytes(vol[0x1c..0x20].try_into().unwrap()),
            4096
        );
        let fs = FileSystem::new(Cursor::new(vol), FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), FatType::Fat32);
        assert_eq!(fs.volume_id(), 0x1234_5678);
        let mut data = Vec::new();
        fs.root_dir()
            .open_file("osam/vmlinuz")
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        assert_eq!(data, vec![1u8; 70_000]);
        let fixup = fs.root_dir().open_dir(FIXUP_DIR).unwrap();
        assert_eq!(fixup.iter().filter(|e| e.is_ok()).count(), 2); // . and ..
    }
}
