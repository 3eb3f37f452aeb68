//! File-system and volume superblock probing: what `blkid` tells udev,
//! for PID 1, which has neither.
//!
//! Hand-written from the on-disk formats because no maintained pure-Rust
//! crate probes superblocks (and C libraries such as libblkid do not
//! cross-build for i686-musl here). Offsets follow the kernel headers and
//! the format documentation of each file system; UUIDs and labels are
//! spelled the way `blkid` prints them (see [`FsInfo`]), except md members
//! (mdadm's `8:8:8:8`, the spelling mdadm.conf uses).
//!
//! Everything read is hostile: a replica disk can hold anything. Every
//! field is read through bounds-checked helpers and nothing is allocated
//! from a size found on disk.
//!
//! The order of the probes is blkid's idea of precedence: RAID and volume
//! signatures (md, LUKS, LVM2) before file systems, because an md 0.90/1.0
//! member or a PV also shows its payload's file system; vfat, the weakest
//! signature, comes last.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use thiserror::Error;

use super::partition::crc32_update;

/// What a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// `ext2`, `ext3`, `ext4`, `jbd`, `xfs`, `btrfs`, `vfat`, `swap`,
    /// `LVM2_member`, `linux_raid_member`, `crypto_LUKS`, `iso9660`.
    pub fs_type: String,
    /// ext/xfs/btrfs/swap/LUKS: 8-4-4-4-12 lowercase; vfat `XXXX-XXXX`
    /// uppercase; LVM2: the PV UUID 6-4-4-4-4-4-6; md: `8:8:8:8` lowercase
    /// hex (mdadm's spelling; blkid prints the same bytes 8-4-4-4-12);
    /// iso9660: the creation time `YYYY-MM-DD-HH-MM-SS-cc`.
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// ext `1.0`; swap `1`; vfat `FAT12|FAT16|FAT32`; LVM2 `LVM2 001`;
    /// md `0.90.0|1.0|1.1|1.2`; LUKS `1|2`; iso9660 `Joliet Extension`
    /// when it has one.
    pub version: Option<String>,
}

impl FsInfo {
    /// Does udev make `/dev/disk/by-uuid` and `by-label` links for it?
    /// (Its `ID_FS_USAGE` is `filesystem`, `other` or `crypto`, not
    /// `raid`.)
    pub fn has_fs_links(&self) -> bool {
        !matches!(self.fs_type.as_str(), "LVM2_member" | "linux_raid_member")
    }
}

impl std::fmt::Display for FsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.fs_type)?;
        if let Some(u) = &self.uuid {
            write!(f, " UUID={u}")?;
        }
        if let Some(l) = &self.label {
            write!(f, " LABEL={l:?}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("{device}: reading at byte {offset}: {source}")]
    Io {
        device: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
}

impl ProbeError {
    /// The same error naming the device (errors from [`probe`] say
    /// `(device)`).
    pub fn on(self, path: &Path) -> Self {
        let device = path.display().to_string();
        match self {
            ProbeError::Io { offset, source, .. } => ProbeError::Io {
                device,
                offset,
                source,
            },
        }
    }
}

/// Probes the `len` bytes at `offset` of `dev` (a partition, or the whole
/// disk with offset 0). `None`: no known signature.
pub fn probe<R: Read + Seek>(
    dev: &mut R,
    offset: u64,
    len: u64,
) -> Result<Option<FsInfo>, ProbeError> {
    let mut s = Src { dev, offset, len };
    let probes: [fn(&mut Src<'_, R>) -> Probed; 9] =
        [md, luks, lvm2, xfs, ext, btrfs, swap, iso9660, vfat];
    for p in probes {
        if let Some(info) = p(&mut s)? {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

/// A window of a device.
struct Src<'a, R> {
    dev: &'a mut R,
    offset: u64,
    len: u64,
}

impl<R: Read + Seek> Src<'_, R> {
    /// `n` bytes at `at` within the window; `None` when they do not fit
    /// (or the device ends early).
    fn read(&mut self, at: u64, n: usize) -> Result<Option<Vec<u8>>, ProbeError> {
        let end = at.checked_add(n as u64);
        if end.is_none_or(|e| e > self.len) {
            return Ok(None);
        }
        let Some(abs) = self.offset.checked_add(at) else {
            return Ok(None);
        };
        let io = |source| ProbeError::Io {
            device: "(device)".into(),
            offset: abs,
            source,
        };
        self.dev.seek(SeekFrom::Start(abs)).map_err(io)?;
        let mut buf = vec![0; n];
        match self.dev.read_exact(&mut buf) {
            Ok(()) => Ok(Some(buf)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(io(e)),
        }
    }
}

fn get(b: &[u8], at: usize, n: usize) -> &[u8] {
    b.get(at..at.saturating_add(n)).unwrap_or(&[])
}

fn le16(b: &[u8], at: usize) -> u16 {
    get(b, at, 2).try_into().map_or(0, u16::from_le_bytes)
}

fn le32(b: &[u8], at: usize) -> u32 {
    get(b, at, 4).try_into().map_or(0, u32::from_le_bytes)
}

fn le64(b: &[u8], at: usize) -> u64 {
    get(b, at, 8).try_into().map_or(0, u64::from_le_bytes)
}

fn be16(b: &[u8], at: usize) -> u16 {
    get(b, at, 2).try_into().map_or(0, u16::from_be_bytes)
}

fn be32(b: &[u8], at: usize) -> u32 {
    get(b, at, 4).try_into().map_or(0, u32::from_be_bytes)
}

/// 16 bytes in order as 8-4-4-4-12 lowercase; `None` when all zero.
fn uuid_be(b: &[u8]) -> Option<String> {
    let b: [u8; 16] = b.try_into().ok()?;
    if b == [0; 16] {
        return None;
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A NUL- or space-padded label; `None` when empty.
fn label(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(get(b, 0, end));
    let s = s.trim_end_matches(' ');
    (!s.is_empty()).then(|| s.to_string())
}

fn info(
    fs_type: &str,
    uuid: Option<String>,
    label: Option<String>,
    version: Option<String>,
) -> Option<FsInfo> {
    Some(FsInfo {
        fs_type: fs_type.into(),
        uuid,
        label,
        version,
    })
}

type Probed = Result<Option<FsInfo>, ProbeError>;

// ext2/3/4 feature bits (the kernel's ext4.h).
const EXT_COMPAT_HAS_JOURNAL: u32 = 0x0004;
const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
/// What ext3 knows: FILETYPE, RECOVER, META_BG.
const EXT3_INCOMPAT_KNOWN: u32 = 0x0002 | 0x0004 | 0x0010;
/// SPARSE_SUPER, LARGE_FILE, BTREE_DIR.
const EXT3_RO_COMPAT_KNOWN: u32 = 0x0001 | 0x0002 | 0x0004;

fn ext(s: &mut Src<'_, impl Read + Seek>) -> Probed {
    let Some(sb) = s.read(1024, 1024)? else {
        return Ok(None);
    };
    if le16(&sb, 0x38) != 0xEF53 || le32(&sb, 0x18) > 6 {
        return Ok(None);
    }
    let compat = le32(&sb, 0x5C);
    let incompat = le32(&sb, 0x60);
    let ro_compat = le32(&sb, 0x64);
    let fs_type = if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        "jbd"
    } else if incompat & !EXT3_INCOMPAT_KNOWN != 0 || ro_compat & !EXT3_RO_COMPAT_KNOWN != 0 {
        "ext4"
    } else if compat & EXT_COMPAT_HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    Ok(info(
        fs_type,
        uuid_be(get(&sb, 0x68, 16)),
        label(get(&sb, 0x78, 16)),
        Some(format!("{}.{}", le32(&sb, 0x4C), le16(&sb, 0x3E))),
    ))
}

fn xfs(s: &mut Src<'_, impl Read + Seek>) -> Probed {
    let Some(sb) = s.read(0, 512)? else {
        return Ok(None);
    };
    if get(&sb, 0, 4) != b"XFSB" {
        return Ok(None);
    }
    let block = be32(&sb, 4);
    let sect = be16(&sb, 102);
    if !block.is_power_of_two()
        || !(512..=65536).contains(&block)
        || !sect.is_power_of_two()
        || sect < 512
        || be32(&sb, 88) == 0
    {
        return Ok(None);
    }
    Ok(info(
        "xfs",
        uuid_be(get(&sb, 32, 16)),
        label(get(&sb, 108, 12)),
        None,
    ))
}

fn btrfs(s: &mut Src<'_, impl Read + Seek>) -> Probed {
    let Some(sb) = s.read(65536, 4096)? else {
        return Ok(None);
    };
    if get(&sb, 0x40, 8) != b"_BHRfS_M" {
        return Ok(None);
    }
    Ok(info(
        "btrfs",
        uuid_be(get(&sb, 0x20, 16)),
        label(get(&sb, 0x12B, 256)),
        None,
    ))
}

fn swap(s: &mut Src<'_, impl Read + Seek>) -> Probed {
    for page in [4096u64, 8192, 16384, 32768, 65536] {
        let Some(magic) = s.read(page - 10, 10)? else {
            return Ok(None);
        };
        match magic.as_slice() {
            b"SWAPSPACE2" => {
                let Some(h) = s.read(1024, 128)? else {
                    return Ok(None);
                };
                // version 1 (either byte order), and a last page.
                let v = le32(&h, 0);
                if (v != 1 && v != 0x0100_0000) || le32(&h, 4) == 0 {
                    return Ok(None);
                }
                return Ok(info(
                    "swap",
                    uuid_be(get(&h, 12, 16)),
                    label(get(&h, 28, 16)),
                    Some("1".into()),
                ));
            }
            b"SWAP-SPACE" => return Ok(info("swap", None, None, Some("0".into()))),
            _ => {}
        }
    }
    Ok(None)
}

/// LVM2's label checksum: CRC-32 seeded with 0xf597a6cf, no inversion.
fn lvm_crc(data: &[u8]) -> u32 {
    crc32_update(0xF597_A6CF, data)
}

fn lvm2(s: &mut Src<'_, impl Read + Seek>) -> Probed {
    for sector in 0..4u64 {
        let Some(l) = s.read(sector * 512, 512)? else {
            return Ok(None);
        };
        if get(&l, 0, 8) != b"LABELONE" || get(&l, 24, 8) != b"LVM2 001" {
            continue;
        }
        if le64(&l, 8) != sector || lvm_crc(get(&l, 20, 512 - 20)) != le32(&l, 16) {
            continue;
        }
        let pvh = le32(&l, 20) as usize;
        let id = get(&l, pvh, 32);
        if id.len() != 32 || !id.iter().all(|c| c.is_ascii_graphic()) {
            continue;
        }
        let id = String::from_utf8_lossy(id);
        let mut uuid = String::new();
        let mut at = 0;
        for n in [6, 4, 4, 4, 4, 4, 6] {
            if at > 0 {
                uuid.push('-');
            }
            uuid.push_str(id.get(at..at + n).unwrap_or(""));
            at += n;
        }
        return Ok(info(
            "LVM2_member",
            Some(uuid),
            None,
            Some("LVM2 001".into()),
        ));
    }
    Ok(None)
}

const MD_MAGIC: u32 = 0xA92B_4EFC;

fn md_uuid(b: &[u8]) -> Option<String> {
    if b.len() != 16 || b.iter().all(|&c| c == 0) {
        return None;
    }
    let words: Vec<String> = b
        .chunks_exact(4)
        .map(|w| w.iter().map(|x| format!("{x:02x}")).collect())
        .collect();
    Some(words.join(":"))
}

fn md(s: &mut Src<'_, impl Read + Seek>) -> Probed {
    let sectors = s.len / 512;
    // 0.90 at the end, 64 KiB aligned.
    if sectors >= 128 {
        let at = ((sectors & !127) - 128) * 512;
        if let Some(sb) = s.read(at, 1024)? {
            let le = le32(&sb, 0) == MD_MAGIC;
            let be = be32(&sb, 0) == MD_MAGIC;
            if le || be {
                let word = |i: usize| if le { le32(&sb, i) } else { be32(&sb, i) };
                if word(4) == 0 {
                    let mut uuid = Vec::with_capacity(16);
                    uuid.extend_from_slice(get(&sb, 20, 4));
                    uuid.extend_from_slice(get(&sb, 52, 12));
                    return Ok(info(
                        "linux_raid_member",
                        md_uuid(&uuid),
                        None,
                        Some(format!("{}.{}.{}", word(4), word(8), word(12))),
                    ));
                }
            }
        }
    }
    // 1.x: 1.1 at 0, 1.2 at 4 KiB, 1.0 at the end − 8 KiB, 4 KiB aligned.
    let mut places = vec![(0u64, "1.1"), (8, "1.2")];
    if sectors >= 16 {
        places.push(((sectors - 16) & !7, "1.0"));
    }
    for (sector, minor) in places {
        let Some(sb) = s.read(sector * 512, 256)? else {
            continue;
        };
        if le32(&sb, 0) != MD_MAGIC || le32(&sb, 4) != 1 || le64(&sb, 144) != sector {
            continue;
        }
        return Ok(info(
            "linux_raid_member",
            md_uuid(get(&sb, 16, 16)),
            label(get(&sb, 32, 32)),
            Some(minor.into()),
        ));
    }
    Ok(None)
}

fn luks(s: &mut Src<'_, impl Read + Seek>) -> Probed {
    let Some(h) = s.read(0, 512)? else {
        return Ok(None);
    };
    if get(&h, 0, 6) != b"LUKS\xba\xbe" {
        return Ok(None);
    }
    let version = be16(&h, 6);
    let lab = if version == 2 {
        label(get(&h, 24, 48))
    } else {
        None
    };
    Ok(info(
        "crypto_LUKS",
        label(get(&h, 168, 40)),
        lab,
        Some(version.to_string()),
    ))
}

fn iso9660(s: &mut Src<'_, impl Read + Seek>) -> Probed {
    let Some(pvd) = s.read(32768, 2048)? else {
        return Ok(None);
    };
    if get(&pvd, 1, 5) != b"CD001" || pvd.first() != Some(&1) {
        return Ok(None);
    }
    let mut lab = label(get(&pvd, 40, 32));
    let mut joliet = false;
    // Supplementary descriptors follow; a Joliet one holds the label in
    // UCS-2 big-endian.
    for n in 1..32u64 {
        let Some(vd) = s.read(32768 + n * 2048, 2048)? else {
            break;
        };
        if get(&vd, 1, 5) != b"CD001" || vd.first() == Some(&255) {
            break;
        }
        let esc = get(&vd, 88, 3);
        if vd.first() == Some(&2) && matches!(esc, b"%/@" | b"%/C" | b"%/E") {
            joliet = true;
            let units: Vec<u16> = get(&vd, 40, 32)
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let j = String::from_utf16_lossy(&units);
            let j = j.trim_end_matches([' ', '\0']);
            if !j.is_empty() {
                lab = Some(j.to_string());
            }
            break;
        }
    }
    // blkid's UUID for iso9660 is the volume creation time. (The slicing
    // below is on 16 checked ASCII digits.)
    let t = get(&pvd, 813, 16);
    let uuid = (t.iter().all(u8::is_ascii_digit) && t.iter().any(|&c| c != b'0')).then(|| {
        let t = String::from_utf8_lossy(t);
        format!(
            "{}-{}-{}-{}-{}-{}-{}",
            &t[0..4],
            &t[4..6],
            &t[6..8],
            &t[8..10],
            &t[10..12],
            &t[12..14],
            &t[14..16]
        )
    });
    Ok(info(
        "iso9660",
        uuid,
        lab,
        joliet.then(|| "Joliet Extension".to_string()),
    ))
}

fn vfat(s: &mut Src<'_, impl Read + Seek>) -> Probed {
    let Some(bs) = s.read(0, 512)? else {
        return Ok(None);
    };
    let bps = u64::from(le16(&bs, 11));
    let spc = u64::from(bs.get(13).copied().unwrap_or(0));
    let reserved = u64::from(le16(&bs, 14));
    let fats = u64::from(bs.get(16).copied().unwrap_or(0));
    let root_entries = u64::from(le16(&bs, 17));
    let media = bs.get(21).copied().unwrap_or(0);
    let jump = bs.first().copied().unwrap_or(0);
    let signed = get(&bs, 510, 2) == [0x55, 0xAA];
    let named = get(&bs, 54, 3) == b"FAT" || get(&bs, 82, 5) == b"FAT32";
    if !matches!(jump, 0xEB | 0xE9)
        || !(signed || named)
        || !bps.is_power_of_two()
        || !(512..=4096).contains(&bps)
        || !spc.is_power_of_two()
        || reserved == 0
        || !(1..=4).contains(&fats)
        || !(media == 0xF0 || media >= 0xF8)
    {
        return Ok(None);
    }
    let fat16_len = u64::from(le16(&bs, 22));
    let fat32 = fat16_len == 0;
    let fat_len = if fat32 {
        u64::from(le32(&bs, 36))
    } else {
        fat16_len
    };
    let total = match le16(&bs, 19) {
        0 => u64::from(le32(&bs, 32)),
        n => u64::from(n),
    };
    if fat_len == 0 || total == 0 {
        return Ok(None);
    }
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let meta = reserved + fats * fat_len + root_sectors;
    let clusters = total.saturating_sub(meta) / spc;
    let version = if fat32 {
        "FAT32"
    } else if clusters < 4085 {
        "FAT12"
    } else {
        "FAT16"
    };
    let ext = if fat32 { 64 } else { 36 };
    let sig = bs.get(ext + 2).copied().unwrap_or(0);
    let has_ext = matches!(sig, 0x28 | 0x29);
    let uuid = has_ext.then(|| {
        let id = le32(&bs, ext + 3);
        format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)
    });
    let boot_label = if sig == 0x29 {
        label(get(&bs, ext + 7, 11)).filter(|l| l != "NO NAME")
    } else {
        None
    };
    // The root directory's volume-label entry wins over the boot sector's.
    let (root_at, root_len) = if fat32 {
        let cluster = u64::from(le32(&bs, 44));
        let first_data = reserved + fats * fat_len;
        (
            first_data
                .saturating_add(cluster.saturating_sub(2).saturating_mul(spc))
                .saturating_mul(bps),
            (spc * bps).min(65536),
        )
    } else {
        (
            (reserved + fats * fat_len) * bps,
            (root_entries * 32).min(65536),
        )
    };
    let mut lab = boot_label;
    if let Some(dir) = s.read(root_at, root_len as usize)? {
        for e in dir.chunks_exact(32) {
            match e.first() {
                Some(0) => break,
                Some(0xE5) => continue,
                _ => {}
            }
            let attr = e.get(11).copied().unwrap_or(0);
            if attr & 0x08 != 0 && attr & 0x0F != 0x0F {
                lab = label(get(e, 0, 11)).filter(|l| l != "NO NAME");
                break;
            }
        }
    }
    Ok(info("vfat", uuid, lab, Some(version.into())))
}

#[cfg(test)]
pub(crate) mod real {
    //! Real images made by mkfs tools, for tests run as root.
    use std::process::Command;

    pub fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    pub fn have(tool: &str) -> bool {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(tool).exists())
    }

    /// A temporary directory when running as root with `tool` at hand;
    /// otherwise prints why the test is skipped.
    pub fn tool_dir(tool: &str) -> Option<tempfile::TempDir> {
        if !is_root() {
            eprintln!("skipped: not root");
            return None;
        }
        if !have(tool) {
            eprintln!("skipped: {tool} is not installed");
            return None;
        }
        tempfile::tempdir().ok()
    }

    /// `blkid -p -o export` of a file as key/value pairs.
    pub fn blkid(path: &std::path::Path) -> Vec<(String, String)> {
        let out = Command::new("blkid")
            .args(["-p", "-o", "export"])
            .arg(path)
            .output()
            .expect("blkid runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), unescape(v)))
            .collect()
    }

    /// `-o export` quotes like a shell: a backslash before a character.
    fn unescape(v: &str) -> String {
        let mut out = String::new();
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' {
                chars.next().unwrap_or(c)
            } else {
                c
            });
        }
        out
    }

    pub fn blkid_get(kv: &[(String, String)], key: &str) -> Option<String> {
        kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::real::*;
    use super::*;
    use std::io::Cursor;

    fn run(img: &[u8]) -> Option<FsInfo> {
        probe(&mut Cursor::new(img), 0, img.len() as u64).unwrap()
    }

    const U: [u8; 16] = [
        0x1b, 0x4e, 0x28, 0xba, 0x2f, 0xa1, 0x11, 0xd2, 0x88, 0x3f, 0x00, 0x16, 0xd3, 0xcc, 0x42,
        0x7e,
    ];
    const US: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cc427e";

    fn put(img: &mut [u8], at: usize, b: &[u8]) {
        img[at..at + b.len()].copy_from_slice(b);
    }

    fn ext_img(compat: u32, incompat: u32, ro: u32) -> Vec<u8> {
        let mut img = vec![0u8; 8192];
        put(&mut img, 1024 + 0x38, &0xEF53u16.to_le_bytes());
        put(&mut img, 1024 + 0x4C, &1u32.to_le_bytes());
        put(&mut img, 1024 + 0x5C, &compat.to_le_bytes());
        put(&mut img, 1024 + 0x60, &incompat.to_le_bytes());
        put(&mut img, 1024 + 0x64, &ro.to_le_bytes());
        put(&mut img, 1024 + 0x68, &U);
        put(&mut img, 1024 + 0x78, b"root");
        img
    }

    #[test]
    fn ext_flavours_by_features() {
        for (compat, incompat, ro, want) in [
            (0, 0x2, 0x3, "ext2"),
            (0x4, 0x2, 0x3, "ext3"),
            (0x4, 0x2 | 0x40, 0x3, "ext4"),         // extents
            (0x4, 0x2 | 0x80 | 0x200, 0x3, "ext4"), // 64bit, flex_bg
            (0, 0x2, 0x3 | 0x8, "ext4"),            // huge_file, no journal
            (0, 0x8, 0, "jbd"),
        ] {
            let i = run(&ext_img(compat, incompat, ro)).unwrap();
            assert_eq!(i.fs_type, want, "{compat:x} {incompat:x} {ro:x}");
            assert_eq!(i.uuid.as_deref(), Some(US));
            assert_eq!(i.label.as_deref(), Some("root"));
            assert_eq!(i.version.as_deref(), Some("1.0"));
        }
    }

    #[test]
    fn probes_at_an_offset_within_a_window() {
        let mut disk = vec![0u8; 4096];
        disk.extend(ext_img(0x4, 0x2, 0));
        let i = probe(&mut Cursor::new(&disk), 4096, 8192).unwrap().unwrap();
        assert_eq!(i.fs_type, "ext3");
        // A window too small for the superblock sees nothing.
        assert_eq!(probe(&mut Cursor::new(&disk), 4096, 1500).unwrap(), None);
        // Past the end of the device: nothing, no error.
        assert_eq!(
            probe(&mut Cursor::new(&disk), 1 << 40, 1 << 20).unwrap(),
            None
        );
    }

    #[test]
    fn xfs_and_btrfs() {
        let mut img = vec![0u8; 1 << 17];
        put(&mut img, 0, b"XFSB");
        put(&mut img, 4, &4096u32.to_be_bytes());
        put(&mut img, 32, &U);
        put(&mut img, 88, &4u32.to_be_bytes());
        put(&mut img, 102, &512u16.to_be_bytes());
        put(&mut img, 108, b"sysroot");
        let i = run(&img).unwrap();
        assert_eq!(
            (i.fs_type.as_str(), i.uuid.as_deref(), i.label.as_deref()),
            ("xfs", Some(US), Some("sysroot"))
        );
        let mut img = vec![0u8; 1 << 17];
        put(&mut img, 65536 + 0x40, b"_BHRfS_M");
        put(&mut img, 65536 + 0x20, &U);
        put(&mut img, 65536 + 0x12B, b"fedora");
        let i = run(&img).unwrap();
        assert_eq!(
            (i.fs_type.as_str(), i.uuid.as_deref(), i.label.as_deref()),
            ("btrfs", Some(US), Some("fedora"))
        );
    }

    #[test]
    fn swap_for_every_page_size() {
        for page in [4096usize, 8192, 16384, 65536] {
            let mut img = vec![0u8; page * 2];
            put(&mut img, page - 10, b"SWAPSPACE2");
            put(&mut img, 1024, &1u32.to_le_bytes());
            put(&mut img, 1028, &1u32.to_le_bytes());
            put(&mut img, 1024 + 12, &U);
            put(&mut img, 1024 + 28, b"swap0");
            let i = run(&img).unwrap();
            assert_eq!(i.fs_type, "swap");
            assert_eq!(i.uuid.as_deref(), Some(US));
            assert_eq!(i.label.as_deref(), Some("swap0"));
        }
    }

    fn lvm_img(sector: usize) -> Vec<u8> {
        let mut img = vec![0u8; 8192];
        let l = sector * 512;
        put(&mut img, l, b"LABELONE");
        put(&mut img, l + 8, &(sector as u64).to_le_bytes());
        put(&mut img, l + 20, &32u32.to_le_bytes());
        put(&mut img, l + 24, b"LVM2 001");
        put(&mut img, l + 32, b"abcdefGHIJklmnOPQRstuvWXYZ012345");
        let crc = lvm_crc(&img[l + 20..l + 512]);
        put(&mut img, l + 16, &crc.to_le_bytes());
        img
    }

    #[test]
    fn lvm2_pv_label_in_any_of_the_first_four_sectors() {
        for sector in 0..4 {
            let i = run(&lvm_img(sector)).unwrap();
            assert_eq!(i.fs_type, "LVM2_member");
            assert_eq!(
                i.uuid.as_deref(),
                Some("abcdef-GHIJ-klmn-OPQR-stuv-WXYZ-012345")
            );
            assert_eq!(i.version.as_deref(), Some("LVM2 001"));
            assert!(!i.has_fs_links());
        }
        // A bad checksum is no PV.
        let mut img = lvm_img(1);
        img[512 + 40] ^= 1;
        assert_eq!(run(&img), None);
    }

    fn md1_img(len: usize, sector: u64) -> Vec<u8> {
        let mut img = vec![0u8; len];
        let at = sector as usize * 512;
        put(&mut img, at, &MD_MAGIC.to_le_bytes());
        put(&mut img, at + 4, &1u32.to_le_bytes());
        put(&mut img, at + 16, &U);
        put(&mut img, at + 32, b"host:0");
        put(&mut img, at + 144, &sector.to_le_bytes());
        img
    }

    #[test]
    fn md_superblocks_at_every_place() {
        let len = 1 << 20;
        let end = ((len as u64 / 512) - 16) & !7;
        for (sector, v) in [(0, "1.1"), (8, "1.2"), (end, "1.0")] {
            let i = run(&md1_img(len, sector)).unwrap();
            assert_eq!(i.fs_type, "linux_raid_member");
            assert_eq!(
                i.uuid.as_deref(),
                Some("1b4e28ba:2fa111d2:883f0016:d3cc427e")
            );
            assert_eq!(i.label.as_deref(), Some("host:0"));
            assert_eq!(i.version.as_deref(), Some(v));
        }
        // super_offset must match where it was found.
        let mut img = md1_img(len, 8);
        put(&mut img, 8 * 512 + 144, &9u64.to_le_bytes());
        assert_eq!(run(&img), None);
        // 0.90 near the end, on a size that is not 64 KiB aligned.
        let len = (1 << 20) + 5000;
        let mut img = vec![0u8; len];
        let at = (len & !65535) - 65536;
        put(&mut img, at, &MD_MAGIC.to_le_bytes());
        put(&mut img, at + 8, &90u32.to_le_bytes());
        put(&mut img, at + 20, &U[0..4]);
        put(&mut img, at + 52, &U[4..16]);
        // An ext4 inside the member: md wins.
        put(&mut img, 1024 + 0x38, &0xEF53u16.to_le_bytes());
        let i = run(&img).unwrap();
        assert_eq!(i.fs_type, "linux_raid_member");
        assert_eq!(i.version.as_deref(), Some("0.90.0"));
        assert_eq!(
            i.uuid.as_deref(),
            Some("1b4e28ba:2fa111d2:883f0016:d3cc427e")
        );
    }

    #[test]
    fn luks_v1_and_v2() {
        for v in [1u16, 2] {
            let mut img = vec![0u8; 4096];
            put(&mut img, 0, b"LUKS\xba\xbe");
            put(&mut img, 6, &v.to_be_bytes());
            put(&mut img, 168, US.as_bytes());
            put(&mut img, 24, b"cryptroot");
            let i = run(&img).unwrap();
            assert_eq!(i.fs_type, "crypto_LUKS");
            assert_eq!(i.uuid.as_deref(), Some(US));
            assert_eq!(i.version, Some(v.to_string()));
            assert_eq!(i.label.as_deref(), (v == 2).then_some("cryptroot"));
        }
    }

    #[test]
    fn iso9660_label_and_joliet() {
        let mut img = vec![0u8; 40 * 2048];
        put(&mut img, 32768, b"\x01CD001\x01");
        put(&mut img, 32768 + 40, b"VMWARE TOOLS                    ");
        put(&mut img, 32768 + 813, b"2024010212345600");
        let i = run(&img).unwrap();
        assert_eq!(i.fs_type, "iso9660");
        assert_eq!(i.label.as_deref(), Some("VMWARE TOOLS"));
        assert_eq!(i.uuid.as_deref(), Some("2024-01-02-12-34-56-00"));
        let svd = 32768 + 2048;
        put(&mut img, svd, b"\x02CD001\x01");
        put(&mut img, svd + 88, b"%/E");
        let j: Vec<u8> = "VMware Tools"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        put(&mut img, svd + 40, &j);
        let i = run(&img).unwrap();
        assert_eq!(i.label.as_deref(), Some("VMware Tools"));
        assert_eq!(i.version.as_deref(), Some("Joliet Extension"));
    }

    fn fat_img(fat32: bool, clusters: u32, label_dir: Option<&[u8; 11]>) -> Vec<u8> {
        let mut img = vec![0u8; 1 << 16];
        put(&mut img, 0, &[0xEB, 0x3C, 0x90]);
        put(&mut img, 11, &512u16.to_le_bytes());
        img[13] = 1;
        put(&mut img, 14, &(if fat32 { 32u16 } else { 1 }).to_le_bytes());
        img[16] = 2;
        put(&mut img, 17, &(if fat32 { 0u16 } else { 16 }).to_le_bytes());
        img[21] = 0xF8;
        let ext = if fat32 { 64 } else { 36 };
        if fat32 {
            put(&mut img, 32, &(clusters + 100).to_le_bytes());
            put(&mut img, 36, &4u32.to_le_bytes());
            put(&mut img, 44, &2u32.to_le_bytes());
            put(&mut img, 82, b"FAT32   ");
        } else {
            put(&mut img, 19, &((clusters + 10) as u16).to_le_bytes());
            put(&mut img, 22, &4u16.to_le_bytes());
            put(&mut img, 54, b"FAT16   ");
        }
        img[ext + 2] = 0x29;
        put(&mut img, ext + 3, &0xABCD_1234u32.to_le_bytes());
        put(&mut img, ext + 7, b"NO NAME    ");
        put(&mut img, 510, &[0x55, 0xAA]);
        if let Some(l) = label_dir {
            let root = if fat32 { 32 + 8 } else { 1 + 8 } * 512;
            put(&mut img, root, l);
            img[root + 11] = 0x08;
        }
        img
    }

    #[test]
    fn vfat_types_ids_and_labels() {
        let i = run(&fat_img(false, 2000, None)).unwrap();
        assert_eq!(i.fs_type, "vfat");
        assert_eq!(i.version.as_deref(), Some("FAT12"));
        assert_eq!(i.uuid.as_deref(), Some("ABCD-1234"));
        assert_eq!(i.label, None);
        let i = run(&fat_img(false, 30000, Some(b"EFI        "))).unwrap();
        assert_eq!(i.version.as_deref(), Some("FAT16"));
        assert_eq!(i.label.as_deref(), Some("EFI"));
        let i = run(&fat_img(true, 70000, Some(b"ESP  DATA  "))).unwrap();
        assert_eq!(i.version.as_deref(), Some("FAT32"));
        assert_eq!(i.label.as_deref(), Some("ESP  DATA"));
        // An MBR is no FAT.
        let mut img = vec![0u8; 4096];
        put(&mut img, 510, &[0x55, 0xAA]);
        assert_eq!(run(&img), None);
    }

    #[test]
    fn nothing_and_noise() {
        assert_eq!(run(&[]), None);
        assert_eq!(run(&[0u8; 100_000]), None);
        let mut x = 0x9E37_79B9u32;
        let mut img = vec![0u8; 200_000];
        for _ in 0..50 {
            for b in img.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            // Plant magics at their places to get past the first checks.
            put(&mut img, 1024 + 0x38, &0xEF53u16.to_le_bytes());
            put(&mut img, 65536 + 0x40, b"_BHRfS_M");
            let _ = run(&img);
            put(&mut img, 0, b"XFSB");
            let _ = run(&img);
            put(&mut img, 0, &[0xEB]);
            let _ = run(&img);
        }
    }

    #[test]
    fn io_errors_name_the_device() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("medium error"))
            }
        }
        impl Seek for Broken {
            fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
                Ok(0)
            }
        }
        let e = probe(&mut Broken, 0, 1 << 20)
            .unwrap_err()
            .on(Path::new("/dev/sdc1"));
        assert!(e.to_string().starts_with("/dev/sdc1: "), "{e}");
    }

    /// The synthetic LUKS header, checked against blkid. (blkid 2.38 does
    /// not run its RAID/LVM probes on regular files, and real md/LVM/LUKS
    /// volumes need device-mapper or loop devices this kernel lacks, so md
    /// and LVM2 are checked against their format only, above.)
    #[test]
    fn synthetic_luks_header_agrees_with_blkid() {
        if !have("blkid") {
            eprintln!("skipped: blkid is not installed");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let mut img = vec![0u8; 1 << 20];
        put(&mut img, 0, b"LUKS\xba\xbe");
        put(&mut img, 6, &1u16.to_be_bytes());
        put(&mut img, 168, US.as_bytes());
        let p = d.path().join("luks");
        std::fs::write(&p, &img).unwrap();
        let kv = blkid(&p);
        let mine = run(&img).unwrap();
        assert_eq!(
            blkid_get(&kv, "TYPE").as_deref(),
            Some("crypto_LUKS"),
            "{kv:?}"
        );
        assert_eq!(blkid_get(&kv, "UUID"), mine.uuid, "{kv:?}");
        assert_eq!(blkid_get(&kv, "VERSION"), mine.version, "{kv:?}");
    }

    /// Real file systems from the mkfs tools, compared with blkid.
    #[test]
    fn real_images_agree_with_blkid() {
        let uuid = "3f1d2c4b-5a69-4788-9a0b-1c2d3e4f5a6b";
        let cases: &[(&str, &[&str], u64)] = &[
            (
                "mkfs.ext4",
                &["-q", "-F", "-U", uuid, "-L", "guest root"],
                64,
            ),
            ("mkfs.ext3", &["-q", "-F", "-U", uuid, "-L", "boot"], 64),
            ("mkfs.ext2", &["-q", "-F", "-U", uuid, "-L", "old"], 64),
            (
                "mkfs.xfs",
                &[
                    "-q",
                    "-f",
                    "-m",
                    "uuid=3f1d2c4b-5a69-4788-9a0b-1c2d3e4f5a6b",
                    "-L",
                    "xroot",
                ],
                320,
            ),
            ("mkfs.btrfs", &["-q", "-f", "-U", uuid, "-L", "broot"], 320),
            ("mkfs.vfat", &["-i", "1234ABCD", "-n", "ESP"], 64),
            ("mkfs.vfat", &["-F", "32", "-i", "DEADBEEF"], 64),
            (
                "mkfs.vfat",
                &["-F", "12", "-i", "0000FFFF", "-n", "SMALL"],
                4,
            ),
            ("mkswap", &["-U", uuid, "-L", "swap0"], 64),
        ];
        for (tool, args, mib) in cases {
            let Some(d) = tool_dir(tool) else {
                continue;
            };
            let img = d.path().join("img");
            let f = std::fs::File::create(&img).unwrap();
            f.set_len(mib << 20).unwrap();
            drop(f);
            let out = std::process::Command::new(tool)
                .args(*args)
                .arg(&img)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{tool}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            check_against_blkid(&img, tool);
        }
        if let Some(d) = tool_dir("genisoimage") {
            let src = d.path().join("src");
            std::fs::create_dir(&src).unwrap();
            std::fs::write(src.join("VMwareTools.tar.gz"), b"x").unwrap();
            for joliet in [false, true] {
                let img = d.path().join(format!("tools-{joliet}.iso"));
                let mut c = std::process::Command::new("genisoimage");
                c.args(["-quiet", "-V", "VMware Tools", "-o"]).arg(&img);
                if joliet {
                    c.args(["-J", "-r"]);
                }
                assert!(c.arg(&src).status().unwrap().success());
                let i = check_against_blkid(&img, "genisoimage");
                assert_eq!(i.label.as_deref(), Some("VMware Tools"), "joliet: {joliet}");
            }
        }
    }

    fn check_against_blkid(img: &Path, tool: &str) -> FsInfo {
        let len = std::fs::metadata(img).unwrap().len();
        let mine = probe(&mut std::fs::File::open(img).unwrap(), 0, len)
            .unwrap()
            .unwrap_or_else(|| panic!("{tool}: nothing found"));
        let kv = blkid(img);
        assert_eq!(
            blkid_get(&kv, "TYPE").as_deref(),
            Some(mine.fs_type.as_str()),
            "{tool} {kv:?}"
        );
        assert_eq!(blkid_get(&kv, "UUID"), mine.uuid, "{tool} {kv:?}");
        assert_eq!(blkid_get(&kv, "LABEL"), mine.label, "{tool} {kv:?}");
        if let Some(v) = blkid_get(&kv, "VERSION") {
            assert_eq!(Some(v), mine.version, "{tool} {kv:?}");
        }
        eprintln!("{tool}: {mine}");
        mine
    }
}
