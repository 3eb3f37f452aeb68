//! Partition tables of the replica disks: GPT (primary header at LBA 1,
//! CRC-checked, falling back to the backup header at the disk's last LBA)
//! and MBR (four primary slots, extended/logical chains).
//!
//! Parsed by hand from the on-disk formats (UEFI specification chapter 5
//! for GPT, the classic PC MBR/EBR layout for MBR). The `gpt` crate was
//! not used: it wants a `Read + Write + Seek + Debug` device and opens
//! whole disks for editing, while this code only reads a hostile replica
//! disk through a `Read + Seek` source and must bound every size it reads.
//!
//! Partition numbers follow the kernel: GPT entry index + 1; MBR slot
//! 1–4 (empty slots leave gaps), logical partitions from 5 in chain order.
//! PARTUUIDs are spelled the way the kernel and blkid spell them: the GPT
//! partition GUID in lowercase, or `<disk signature %08x>-<number %02x>`
//! for MBR.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use thiserror::Error;

/// The most GPT entry-array bytes read (the usual array is 16 KiB).
const MAX_GPT_ARRAY: u64 = 1 << 20;
/// The most extended boot records followed in one chain.
const MAX_LOGICAL: usize = 256;
/// The GPT header signature.
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";

#[derive(Debug, Error)]
pub enum PartError {
    #[error("{device}: reading the partition table at byte {offset}: {source}")]
    Io {
        device: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{device}: {reason}")]
    Corrupt { device: String, reason: String },
    #[error("{device}: unsupported sector size {sector}")]
    SectorSize { device: String, sector: u64 },
}

/// The placeholder device name of errors from [`read_partitions`]; replace
/// it with [`PartError::on`].
const UNNAMED: &str = "(device)";

impl PartError {
    /// The same error naming the device.
    pub fn on(self, path: &Path) -> Self {
        let device = path.display().to_string();
        match self {
            PartError::Io { offset, source, .. } => PartError::Io {
                device,
                offset,
                source,
            },
            PartError::Corrupt { reason, .. } => PartError::Corrupt { device, reason },
            PartError::SectorSize { sector, .. } => PartError::SectorSize { device, sector },
        }
    }

    fn corrupt(reason: impl Into<String>) -> Self {
        PartError::Corrupt {
            device: UNNAMED.into(),
            reason: reason.into(),
        }
    }
}

/// Which table a disk carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableKind {
    /// No partition table (a whole-disk file system, or nothing).
    None,
    /// GPT; `backup` when the primary header or array was bad and the
    /// backup at the end of the disk was used.
    Gpt { disk_guid: String, backup: bool },
    /// MBR (DOS); `signature` is the 32-bit disk signature at byte 440.
    Mbr { signature: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The kernel's partition number (`sda<N>`).
    pub number: u32,
    /// First sector (in units of the `sector` passed in).
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// `PARTUUID`, lowercase.
    pub partuuid: String,
    /// GPT partition type GUID, lowercase.
    pub type_guid: Option<String>,
    /// MBR partition type byte.
    pub mbr_type: Option<u8>,
    /// GPT partition name (`PARTLABEL`).
    pub name: Option<String>,
}

impl Partition {
    /// The byte offset of the partition.
    pub fn start_bytes(&self, sector: u64) -> u64 {
        self.first_lba.saturating_mul(sector)
    }

    /// The partition's size in bytes.
    pub fn size_bytes(&self, sector: u64) -> u64 {
        (self
            .last_lba
            .saturating_sub(self.first_lba)
            .saturating_add(1))
        .saturating_mul(sector)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    pub kind: TableKind,
    /// In number order.
    pub partitions: Vec<Partition>,
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) register update
/// without the initial and final inversion: `!crc32_update(!0, data)` is
/// the usual CRC-32 (GPT); LVM2 uses a different seed and no inversion.
pub(crate) fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The usual CRC-32.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    !crc32_update(!0, data)
}

/// A GUID stored in the mixed-endian GPT layout, spelled lowercase.
pub(crate) fn guid_mixed(b: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn arr16(b: &[u8], at: usize) -> [u8; 16] {
    b.get(at..at + 16)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 16])
}

/// Reads `n` bytes at `offset`; `None` past the end of the source.
fn read_at(
    dev: &mut (impl Read + Seek),
    offset: u64,
    n: usize,
) -> Result<Option<Vec<u8>>, PartError> {
    let io = |source| PartError::Io {
        device: UNNAMED.into(),
        offset,
        source,
    };
    dev.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = vec![0; n];
    match dev.read_exact(&mut buf) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// Reads the partition table of a disk of `size_bytes` with logical
/// sectors of `sector` bytes (512 or 4096).
pub fn read_partitions(
    dev: &mut (impl Read + Seek),
    size_bytes: u64,
    sector: u64,
) -> Result<PartitionTable, PartError> {
    if !sector.is_power_of_two() || !(512..=65536).contains(&sector) {
        return Err(PartError::SectorSize {
            device: UNNAMED.into(),
            sector,
        });
    }
    let none = PartitionTable {
        kind: TableKind::None,
        partitions: Vec::new(),
    };
    let Some(mbr) = read_at(dev, 0, 512)? else {
        return Ok(none);
    };
    if mbr.get(510..512) != Some(&[0x55, 0xAA][..]) {
        return Ok(none);
    }
    let slots: Vec<&[u8]> = (0..4)
        .filter_map(|i| mbr.get(446 + 16 * i..446 + 16 * (i + 1)))
        .collect();
    // A boot indicator other than 0x00/0x80 means this is no MBR (a
    // whole-disk file system's boot sector, most likely).
    if slots
        .iter()
        .any(|s| s.first().is_some_and(|&b| b != 0 && b != 0x80))
    {
        return Ok(none);
    }
    if slots.iter().any(|s| s.get(4) == Some(&0xEE)) {
        return read_gpt(dev, size_bytes, sector);
    }
    if looks_like_fat_boot_sector(&mbr) {
        return Ok(none);
    }
    read_mbr(dev, &mbr, size_bytes, sector)
}

/// A FAT (or NTFS) boot sector also ends in 55 AA; its partition-table
/// area is boot code. Recognised by the jump instruction and the file
/// system type strings of the BPB.
fn looks_like_fat_boot_sector(b: &[u8]) -> bool {
    let jump = matches!(b.first(), Some(0xEB) | Some(0xE9));
    jump && (b.get(54..57) == Some(b"FAT")
        || b.get(82..87) == Some(b"FAT32")
        || b.get(3..11) == Some(b"NTFS    "))
}

fn is_extended(t: u8) -> bool {
    matches!(t, 0x05 | 0x0F | 0x85)
}

fn read_mbr(
    dev: &mut (impl Read + Seek),
    mbr: &[u8],
    size_bytes: u64,
    sector: u64,
) -> Result<PartitionTable, PartError> {
    let signature = le32(mbr, 440);
    let total = size_bytes / sector;
    let mut parts = Vec::new();
    let mut extended = None;
    for i in 0..4u32 {
        let e = 446 + 16 * i as usize;
        let Some(t) = mbr.get(e + 4).copied() else {
            continue;
        };
        let start = u64::from(le32(mbr, e + 8));
        let count = u64::from(le32(mbr, e + 12));
        if t == 0 || count == 0 {
            continue;
        }
        // The kernel shows the extended partition itself too (as a 1 KiB
        // stub); it carries a PARTUUID like any other.
        if is_extended(t) && extended.is_none() {
            extended = Some((start, count));
        }
        parts.push(mbr_part(signature, i + 1, start, count, t));
    }
    if let Some((ext_start, ext_len)) = extended {
        let mut number = 5;
        let mut next = 0u64;
        let mut seen = Vec::new();
        for _ in 0..MAX_LOGICAL {
            let ebr_lba = ext_start.saturating_add(next);
            if seen.contains(&ebr_lba) || ebr_lba >= total.max(1) || next >= ext_len {
                break;
            }
            seen.push(ebr_lba);
            let Some(ebr) = read_at(dev, ebr_lba.saturating_mul(sector), 512)? else {
                break;
            };
            if ebr.get(510..512) != Some(&[0x55, 0xAA][..]) {
                break;
            }
            let mut link = None;
            let mut data_done = false;
            for j in 0..4 {
                let e = 446 + 16 * j;
                let t = ebr.get(e + 4).copied().unwrap_or(0);
                let start = u64::from(le32(&ebr, e + 8));
                let count = u64::from(le32(&ebr, e + 12));
                if t == 0 || count == 0 {
                    continue;
                }
                if is_extended(t) {
                    if link.is_none() {
                        link = Some(start);
                    }
                } else if !data_done {
                    data_done = true;
                    parts.push(mbr_part(
                        signature,
                        number,
                        ebr_lba.saturating_add(start),
                        count,
                        t,
                    ));
                    number += 1;
                }
            }
            match link {
                Some(l) if l != 0 => next = l,
                _ => break,
            }
        }
    }
    Ok(PartitionTable {
        kind: TableKind::Mbr { signature },
        partitions: parts,
    })
}

fn mbr_part(signature: u32, number: u32, start: u64, count: u64, t: u8) -> Partition {
    Partition {
        number,
        first_lba: start,
        last_lba: start.saturating_add(count).saturating_sub(1),
        partuuid: format!("{signature:08x}-{number:02x}"),
        type_guid: None,
        mbr_type: Some(t),
        name: None,
    }
}

fn read_gpt(
    dev: &mut (impl Read + Seek),
    size_bytes: u64,
    sector: u64,
) -> Result<PartitionTable, PartError> {
    let total = size_bytes / sector;
    let primary = gpt_at(dev, 1, total, sector)?;
    let (hdr, entries, backup) = match primary {
        Some((h, e)) => (h, e, false),
        None => match total
            .checked_sub(1)
            .filter(|&l| l > 1)
            .map(|last| gpt_at(dev, last, total, sector))
            .transpose()?
            .flatten()
        {
            Some((h, e)) => (h, e, true),
            None => {
                return Err(PartError::corrupt(
                    "protective MBR, but neither the primary nor the backup GPT header is valid",
                ));
            }
        },
    };
    let disk_guid = guid_mixed(&arr16(&hdr, 56));
    let entry_size = le32(&hdr, 84) as usize;
    let mut parts = Vec::new();
    for (i, e) in entries.chunks_exact(entry_size.max(1)).enumerate() {
        let type_guid = arr16(e, 0);
        if type_guid == [0; 16] {
            continue;
        }
        let first = le64(e, 32);
        let last = le64(e, 40);
        if first > last || last >= total {
            continue;
        }
        let name: Vec<u16> = e
            .get(56..128)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        let name = String::from_utf16_lossy(&name);
        parts.push(Partition {
            number: u32::try_from(i + 1).unwrap_or(u32::MAX),
            first_lba: first,
            last_lba: last,
            partuuid: guid_mixed(&arr16(e, 16)),
            type_guid: Some(guid_mixed(&type_guid)),
            mbr_type: None,
            name: (!name.is_empty()).then_some(name),
        });
    }
    Ok(PartitionTable {
        kind: TableKind::Gpt { disk_guid, backup },
        partitions: parts,
    })
}

/// A GPT header sector and its entry array.
type HeaderAndArray = (Vec<u8>, Vec<u8>);

/// A GPT header at `lba` with its entry array, when both check out.
fn gpt_at(
    dev: &mut (impl Read + Seek),
    lba: u64,
    total: u64,
    sector: u64,
) -> Result<Option<HeaderAndArray>, PartError> {
    let Ok(n) = usize::try_from(sector) else {
        return Ok(None);
    };
    let Some(mut hdr) = read_at(dev, lba.saturating_mul(sector), n)? else {
        return Ok(None);
    };
    if hdr.get(0..8) != Some(&GPT_SIGNATURE[..]) {
        return Ok(None);
    }
    let hsize = le32(&hdr, 12) as usize;
    if hsize < 92 || hsize > hdr.len() {
        return Ok(None);
    }
    let want = le32(&hdr, 16);
    if let Some(c) = hdr.get_mut(16..20) {
        c.copy_from_slice(&[0; 4]);
    }
    let got = hdr.get(..hsize).map(crc32);
    if let Some(c) = hdr.get_mut(16..20) {
        c.copy_from_slice(&want.to_le_bytes());
    }
    if got != Some(want) || le64(&hdr, 24) != lba {
        return Ok(None);
    }
    let first_usable = le64(&hdr, 40);
    let last_usable = le64(&hdr, 48);
    if first_usable > last_usable || last_usable >= total {
        return Ok(None);
    }
    let entries_lba = le64(&hdr, 72);
    let count = u64::from(le32(&hdr, 80));
    let esize = u64::from(le32(&hdr, 84));
    if esize < 128 || esize % 8 != 0 || esize > 4096 {
        return Ok(None);
    }
    let bytes = count.saturating_mul(esize);
    if bytes == 0 || bytes > MAX_GPT_ARRAY || entries_lba >= total {
        return Ok(None);
    }
    let Some(entries) = read_at(dev, entries_lba.saturating_mul(sector), bytes as usize)? else {
        return Ok(None);
    };
    if crc32(&entries) != le32(&hdr, 88) {
        return Ok(None);
    }
    Ok(Some((hdr, entries)))
}

#[cfg(test)]
pub(crate) mod build {
    //! Partition tables written byte by byte for the tests.
    use super::*;

    pub struct GptPart<'a> {
        pub type_guid: [u8; 16],
        pub guid: [u8; 16],
        pub first: u64,
        pub last: u64,
        pub name: &'a str,
    }

    /// Writes a protective MBR and both GPT copies into `img` (whose
    /// length is the disk size).
    pub fn gpt(img: &mut [u8], sector: usize, disk_guid: [u8; 16], parts: &[GptPart]) {
        let total = (img.len() / sector) as u64;
        img[446 + 4] = 0xEE;
        img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        img[446 + 12..446 + 16]
            .copy_from_slice(&((total - 1).min(u32::MAX as u64) as u32).to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xAA;
        let mut array = vec![0u8; 128 * 128];
        for (i, p) in parts.iter().enumerate() {
            let e = &mut array[i * 128..(i + 1) * 128];
            e[0..16].copy_from_slice(&p.type_guid);
            e[16..32].copy_from_slice(&p.guid);
            e[32..40].copy_from_slice(&p.first.to_le_bytes());
            e[40..48].copy_from_slice(&p.last.to_le_bytes());
            for (j, c) in p.name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&c.to_le_bytes());
            }
        }
        let array_sectors = (array.len() / sector) as u64;
        let array_crc = crc32(&array);
        for (my, alt, entries) in [(1, total - 1, 2), (total - 1, 1, total - 1 - array_sectors)] {
            let mut h = vec![0u8; 92];
            h[0..8].copy_from_slice(GPT_SIGNATURE);
            h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            h[12..16].copy_from_slice(&92u32.to_le_bytes());
            h[24..32].copy_from_slice(&my.to_le_bytes());
            h[32..40].copy_from_slice(&alt.to_le_bytes());
            h[40..48].copy_from_slice(&(2 + array_sectors).to_le_bytes());
            h[48..56].copy_from_slice(&(total - 2 - array_sectors).to_le_bytes());
            h[56..72].copy_from_slice(&disk_guid);
            h[72..80].copy_from_slice(&entries.to_le_bytes());
            h[80..84].copy_from_slice(&128u32.to_le_bytes());
            h[84..88].copy_from_slice(&128u32.to_le_bytes());
            h[88..92].copy_from_slice(&array_crc.to_le_bytes());
            let c = crc32(&h);
            h[16..20].copy_from_slice(&c.to_le_bytes());
            let at = my as usize * sector;
            img[at..at + 92].copy_from_slice(&h);
            let at = entries as usize * sector;
            img[at..at + array.len()].copy_from_slice(&array);
        }
    }

    /// One 16-byte MBR/EBR entry at slot `i` of the sector at `base`.
    pub fn mbr_entry(img: &mut [u8], base: usize, i: usize, t: u8, start: u32, count: u32) {
        let e = base + 446 + 16 * i;
        img[e + 4] = t;
        img[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        img[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
        img[base + 510] = 0x55;
        img[base + 511] = 0xAA;
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use std::io::Cursor;

    const LINUX: [u8; 16] = [
        0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D,
        0xE4,
    ];

    fn guid(n: u8) -> [u8; 16] {
        [
            0x78, 0x56, 0x34, 0x12, 0xBC, 0x9A, 0xF0, 0xDE, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB,
            0xCD, n,
        ]
    }

    fn gpt_image(sector: usize) -> Vec<u8> {
        let mut img = vec![0u8; sector * 2048];
        gpt(
            &mut img,
            sector,
            guid(0),
            &[
                GptPart {
                    type_guid: LINUX,
                    guid: guid(1),
                    first: 40,
                    last: 99,
                    name: "boot",
                },
                GptPart {
                    type_guid: LINUX,
                    guid: guid(2),
                    first: 100,
                    last: 1999,
                    name: "",
                },
            ],
        );
        img
    }

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn reads_gpt_entries() {
        for sector in [512usize, 4096] {
            let img = gpt_image(sector);
            let t =
                read_partitions(&mut Cursor::new(&img), img.len() as u64, sector as u64).unwrap();
            assert_eq!(
                t.kind,
                TableKind::Gpt {
                    disk_guid: "12345678-9abc-def0-0123-456789abcd00".into(),
                    backup: false
                }
            );
            assert_eq!(t.partitions.len(), 2);
            let p = &t.partitions[0];
            assert_eq!(p.number, 1);
            assert_eq!(p.partuuid, "12345678-9abc-def0-0123-456789abcd01");
            assert_eq!(
                p.type_guid.as_deref(),
                Some("0fc63daf-8483-4772-8e79-3d69d8477de4")
            );
            assert_eq!(p.name.as_deref(), Some("boot"));
            assert_eq!((p.first_lba, p.last_lba), (40, 99));
            assert_eq!(p.start_bytes(sector as u64), 40 * sector as u64);
            assert_eq!(p.size_bytes(sector as u64), 60 * sector as u64);
            assert_eq!(t.partitions[1].name, None);
            assert_eq!(t.partitions[1].number, 2);
        }
    }

    #[test]
    fn falls_back_to_the_backup_gpt_header() {
        let mut img = gpt_image(512);
        img[512 + 30] ^= 0xFF; // the primary's my_lba: its CRC fails
        let t = read_partitions(&mut Cursor::new(&img), img.len() as u64, 512).unwrap();
        assert!(matches!(t.kind, TableKind::Gpt { backup: true, .. }));
        assert_eq!(t.partitions.len(), 2);
        // A damaged primary entry array falls back too.
        let mut img = gpt_image(512);
        img[1024 + 20] ^= 0xFF;
        let t = read_partitions(&mut Cursor::new(&img), img.len() as u64, 512).unwrap();
        assert!(matches!(t.kind, TableKind::Gpt { backup: true, .. }));
        assert_eq!(
            t.partitions[0].partuuid,
            "12345678-9abc-def0-0123-456789abcd01"
        );
        // Both bad: an error naming the device.
        let mut img = gpt_image(512);
        img[512] = b'X';
        let last = img.len() - 512;
        img[last] = b'X';
        let e = read_partitions(&mut Cursor::new(&img), img.len() as u64, 512)
            .unwrap_err()
            .on(Path::new("/dev/sdb"));
        assert!(e.to_string().starts_with("/dev/sdb: "), "{e}");
    }

    #[test]
    fn reads_mbr_with_a_logical_chain() {
        let mut img = vec![0u8; 512 * 4096];
        img[440..444].copy_from_slice(&0x0A0B_0C0Du32.to_le_bytes());
        mbr_entry(&mut img, 0, 0, 0x83, 2048, 100);
        // Slot 2 left empty: numbers keep their slots.
        mbr_entry(&mut img, 0, 2, 0x0F, 3000, 1000);
        // EBR 1 at 3000: logical at +10, link to the next EBR at ext+200.
        mbr_entry(&mut img, 3000 * 512, 0, 0x83, 10, 50);
        mbr_entry(&mut img, 3000 * 512, 1, 0x05, 200, 100);
        // EBR 2 at 3200: logical at +5 and no further link.
        mbr_entry(&mut img, 3200 * 512, 0, 0x82, 5, 20);
        let t = read_partitions(&mut Cursor::new(&img), img.len() as u64, 512).unwrap();
        assert_eq!(
            t.kind,
            TableKind::Mbr {
                signature: 0x0A0B0C0D
            }
        );
        let got: Vec<(u32, u64, u64, &str, Option<u8>)> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.first_lba,
                    p.last_lba,
                    p.partuuid.as_str(),
                    p.mbr_type,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 2048, 2147, "0a0b0c0d-01", Some(0x83)),
                (3, 3000, 3999, "0a0b0c0d-03", Some(0x0F)),
                (5, 3010, 3059, "0a0b0c0d-05", Some(0x83)),
                (6, 3205, 3224, "0a0b0c0d-06", Some(0x82)),
            ]
        );
    }

    #[test]
    fn a_looping_ebr_chain_stops() {
        let mut img = vec![0u8; 512 * 4096];
        mbr_entry(&mut img, 0, 0, 0x05, 1000, 1000);
        mbr_entry(&mut img, 1000 * 512, 0, 0x83, 1, 10);
        mbr_entry(&mut img, 1000 * 512, 1, 0x05, 0x100, 10);
        mbr_entry(&mut img, 1256 * 512, 0, 0x83, 1, 10);
        // Links to itself: followed once, then the loop stops.
        mbr_entry(&mut img, 1256 * 512, 1, 0x05, 0x100, 10);
        let t = read_partitions(&mut Cursor::new(&img), img.len() as u64, 512).unwrap();
        assert_eq!(t.partitions.len(), 3);
    }

    #[test]
    fn hostile_and_empty_inputs_give_no_table_or_an_error() {
        // Empty, short, no 55 AA.
        for img in [vec![], vec![0u8; 100], vec![0u8; 4096]] {
            let t = read_partitions(&mut Cursor::new(&img), img.len() as u64, 512).unwrap();
            assert_eq!(t.kind, TableKind::None);
        }
        // A FAT boot sector is no MBR.
        let mut fat = vec![0u8; 4096];
        fat[0] = 0xEB;
        fat[54..57].copy_from_slice(b"FAT");
        fat[510] = 0x55;
        fat[511] = 0xAA;
        let t = read_partitions(&mut Cursor::new(&fat), 4096, 512).unwrap();
        assert_eq!(t.kind, TableKind::None);
        // A GPT header claiming a huge array or entries past the end.
        let mut img = gpt_image(512);
        img[512 + 80..512 + 84].copy_from_slice(&u32::MAX.to_le_bytes());
        let last = img.len() - 512;
        img[last + 80..last + 84].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_partitions(&mut Cursor::new(&img), img.len() as u64, 512).is_err());
        // Random bytes never panic.
        let mut x = 0x1234_5678u32;
        for _ in 0..200 {
            let mut img = vec![0u8; 8192];
            for b in img.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            img[510] = 0x55;
            img[511] = 0xAA;
            img[446] = 0;
            img[462] = 0;
            img[478] = 0;
            img[494] = 0;
            let _ = read_partitions(&mut Cursor::new(&img), img.len() as u64, 512);
        }
        assert!(read_partitions(&mut Cursor::new(&[0u8; 10]), 10, 1000).is_err());
    }

    #[test]
    fn reads_sfdisk_made_tables_like_blkid() {
        // Real tables from sfdisk, compared with blkid's PARTUUIDs.
        let Some(dir) = crate::storage::probe::real::tool_dir("sfdisk") else {
            return;
        };
        for label in ["gpt", "dos"] {
            let img = dir.path().join(format!("{label}.img"));
            let f = std::fs::File::create(&img).unwrap();
            f.set_len(64 << 20).unwrap();
            drop(f);
            let script = format!(
                "label: {label}\n{}\nsize=8MiB\nsize=8MiB\n{}",
                if label == "dos" {
                    "label-id: 0x1234abcd"
                } else {
                    "label-id: 01234567-89AB-CDEF-0123-456789ABCDEF"
                },
                if label == "dos" {
                    "type=5\nsize=4MiB\nsize=4MiB\n"
                } else {
                    "size=4MiB, name=data\n"
                }
            );
            let mut child = std::process::Command::new("sfdisk")
                .arg("-q")
                .arg(&img)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
            let out = std::process::Command::new("sfdisk")
                .args(["--dump"])
                .arg(&img)
                .output()
                .unwrap();
            let dump = String::from_utf8_lossy(&out.stdout).to_string();
            let mut f = std::fs::File::open(&img).unwrap();
            let t = read_partitions(&mut f, 64 << 20, 512).unwrap();
            for p in &t.partitions {
                let line = dump
                    .lines()
                    .find(|l| l.starts_with(&format!("{}{} ", img.display(), p.number)))
                    .unwrap_or_else(|| panic!("no partition {} in\n{dump}", p.number));
                let start: u64 = line
                    .split("start=")
                    .nth(1)
                    .and_then(|r| r.split(',').next())
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap();
                assert_eq!(start, p.first_lba, "{line}");
                if label == "gpt" {
                    assert!(line.to_lowercase().contains(&p.partuuid), "{line} vs {p:?}");
                }
            }
            if label == "dos" {
                let nums: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
                assert_eq!(nums, vec![1, 2, 3, 5, 6]);
                assert_eq!(t.partitions[4].partuuid, "1234abcd-06");
            } else {
                assert_eq!(t.partitions.len(), 3);
                assert_eq!(t.partitions[2].name.as_deref(), Some("data"));
            }
        }
    }
}
