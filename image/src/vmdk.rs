//! VMDK writers: hosted sparse (`monolithicSparse`) and `streamOptimized`.
//!
//! No maintained Rust crate writes VMDK, so this module is written by hand
//! from VMware's "Virtual Disk Format 5.0" specification (the "VMware
//! Virtual Disk Format 5.0" technical note): the sparse extent header
//! (`SparseExtentHeader`, magic `KDMV`), grain directories and grain tables,
//! the embedded descriptor, and for stream-optimized extents the compressed
//! grains with their LBA/size header, the markers, the footer and the
//! end-of-stream marker.
//!
//! Both writers read a raw disk image (its size a multiple of 512 bytes) and
//! leave all-zero grains unallocated. Output goes to a temporary file beside
//! the destination that is renamed into place only once it is complete and
//! synced, so a half-written file never carries the destination's name.
//! Two writes of the same input with the same [`VmdkOptions`] (seed and
//! extent name) are byte-identical.

use std::io::{self, Read, Seek, Write};
use std::path::Path;

pub use crate::rawimg::ImageError;
use crate::rawimg::{StagedFile, is_zero, raw_size, read_block, write_zeros};

use flate2::Compression;
use flate2::write::ZlibEncoder;
use sha2::{Digest, Sha256};

/// The bytes of a sector.
pub const SECTOR: u64 = 512;
/// The grain size in sectors (64 KiB grains).
pub const GRAIN_SECTORS: u64 = 128;
/// The grain size in bytes.
pub const GRAIN_BYTES: u64 = GRAIN_SECTORS * SECTOR;
/// Grain table entries per grain table.
pub const GTES_PER_GT: u64 = 512;
/// The sparse extent magic number, "KDMV" read as a little-endian u32.
pub const SPARSE_MAGIC: u32 = 0x564d_444b;
/// `gdOffset` of a stream-optimized header: the grain directory is at the
/// end, its location is in the footer.
pub const GD_AT_END: u64 = 0xffff_ffff_ffff_ffff;

/// Header flag: the newline detection characters are valid.
pub const FLAG_VALID_NEWLINE_TEST: u32 = 1 << 0;
/// Header flag: a redundant grain directory and grain tables are present.
pub const FLAG_REDUNDANT_GT: u32 = 1 << 1;
/// Header flag: grains are compressed.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Header flag: the extent carries markers.
pub const FLAG_MARKERS: u32 = 1 << 17;
/// `compressAlgorithm` value for deflate (zlib streams, RFC 1950).
pub const COMPRESS_DEFLATE: u16 = 1;

/// Marker type: end of stream.
pub const MARKER_EOS: u32 = 0;
/// Marker type: a grain table follows.
pub const MARKER_GT: u32 = 1;
/// Marker type: the grain directory follows.
pub const MARKER_GD: u32 = 2;
/// Marker type: the footer follows.
pub const MARKER_FOOTER: u32 = 3;

/// Sectors reserved for the embedded descriptor (as VMware does, so that
/// the descriptor can grow in place).
const DESCRIPTOR_SECTORS: u64 = 20;
/// zlib level of compressed grains.
const ZLIB_LEVEL: u32 = 6;
/// Largest sector offset a 32-bit grain table entry can hold.
const MAX_SECTOR_OFFSET: u64 = u32::MAX as u64;

/// `ddb.adapterType` of the descriptor: which controller the disk was
/// created for (it only decides the geometry). VMware knows `ide`,
/// `buslogic`, `lsilogic` and `legacyESX`; SAS and paravirtual SCSI disks
/// say `lsilogic` too (there is no `pvscsi` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterType {
    /// `ide` (16 heads, 63 sectors per track).
    Ide,
    /// `buslogic` (255 heads, 63 sectors per track).
    BusLogic,
    /// `lsilogic` (255 heads, 63 sectors per track).
    #[default]
    LsiLogic,
}

impl AdapterType {
    /// The descriptor value.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterType::Ide => "ide",
            AdapterType::BusLogic => "buslogic",
            AdapterType::LsiLogic => "lsilogic",
        }
    }

    fn heads(self) -> u64 {
        match self {
            AdapterType::Ide => 16,
            AdapterType::BusLogic | AdapterType::LsiLogic => 255,
        }
    }
}

/// Options of the VMDK writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmdkOptions {
    /// Seed of the descriptor's `CID` and `ddb.uuid`: the same seed gives
    /// the same identifiers, so builds are reproducible.
    pub seed: Vec<u8>,
    /// `ddb.adapterType`.
    pub adapter_type: AdapterType,
    /// `ddb.virtualHWVersion`.
    pub virtual_hw_version: u32,
    /// The file name in the descriptor's extent line; `None` takes the
    /// destination's file name. The embedded extent is the file itself, so
    /// readers do not use it, but it is part of the bytes: fix it when
    /// writing to differently named files must give identical bytes.
    pub extent_name: Option<String>,
}

impl Default for VmdkOptions {
    fn default() -> Self {
        VmdkOptions {
            seed: Vec::new(),
            adapter_type: AdapterType::default(),
            virtual_hw_version: 4,
            extent_name: None,
        }
    }
}

/// Writes `raw` as a hosted sparse extent (`createType="monolithicSparse"`,
/// version 1) with a redundant grain directory and grain tables.
pub fn write_monolithic_sparse<R: Read + Seek>(
    raw: &mut R,
    out: &Path,
    options: &VmdkOptions,
) -> Result<(), ImageError> {
    let capacity = raw_size(raw)? / SECTOR;
    let grains = capacity.div_ceil(GRAIN_SECTORS);
    let num_gts = grains.div_ceil(GTES_PER_GT);
    let gt_sectors = GTES_PER_GT * 4 / SECTOR;
    let gd_sectors = (num_gts * 4).div_ceil(SECTOR);

    // Layout: header, descriptor, redundant GD, redundant GTs, GD, GTs,
    // padding to a grain boundary, then the allocated grains in LBA order.
    let rgd_offset = 1 + DESCRIPTOR_SECTORS;
    let rgt_offset = rgd_offset + gd_sectors;
    let gd_offset = rgt_offset + num_gts * gt_sectors;
    let gt_offset = gd_offset + gd_sectors;
    let overhead = (gt_offset + num_gts * gt_sectors).next_multiple_of(GRAIN_SECTORS);

    // First pass: which grains hold data.
    let mut buf = vec![0u8; GRAIN_BYTES as usize];
    let mut gtes = vec![0u32; (num_gts * GTES_PER_GT) as usize];
    let mut next = overhead;
    for grain in 0..grains {
        read_block(raw, grain, capacity * SECTOR, &mut buf)?;
        if !is_zero(&buf) {
            if next + GRAIN_SECTORS > MAX_SECTOR_OFFSET {
                return Err(ImageError::TooLarge { path: out.into() });
            }
            gtes[grain as usize] = sector_u32(next);
            next += GRAIN_SECTORS;
        }
    }

    let extent_name = extent_name(out, options)?;
    let descriptor = descriptor(
        options,
        capacity,
        "monolithicSparse",
        &extent_name,
        DESCRIPTOR_SECTORS,
    );
    let header = SparseHeader {
        version: 1,
        flags: FLAG_VALID_NEWLINE_TEST | FLAG_REDUNDANT_GT,
        capacity,
        descriptor_offset: 1,
        descriptor_size: DESCRIPTOR_SECTORS,
        rgd_offset,
        gd_offset,
        overhead,
        compress_algorithm: 0,
    };

    let mut staged = StagedFile::create(out).map_err(|e| ImageError::write(out, e))?;
    let result = (|| -> io::Result<()> {
        let w = staged.writer();
        w.write_all(&header.encode())?;
        w.write_all(&descriptor)?;
        for gt_at in [rgt_offset, gt_offset] {
            let gd: Vec<u32> = (0..num_gts)
                .map(|t| sector_u32(gt_at + t * gt_sectors))
                .collect();
            write_u32s_padded(w, &gd)?;
            write_u32s_padded(w, &gtes)?;
        }
        write_zeros(w, (overhead - (gt_offset + num_gts * gt_sectors)) * SECTOR)?;
        Ok(())
    })();
    result.map_err(|e| ImageError::write(out, e))?;

    // Second pass: the allocated grains, in the order of their offsets.
    for grain in 0..grains {
        if gtes[grain as usize] == 0 {
            continue;
        }
        read_block(raw, grain, capacity * SECTOR, &mut buf)?;
        staged
            .writer()
            .write_all(&buf)
            .map_err(|e| ImageError::write(out, e))?;
    }
    staged.commit().map_err(|e| ImageError::write(out, e))
}

/// Writes `raw` as a stream-optimized extent
/// (`createType="streamOptimized"`, version 3): zlib-compressed grains with
/// their LBA/size header, then the grain tables and the grain directory
/// with their markers, the footer (a copy of the header that holds the
/// grain directory's offset) and the end-of-stream marker. The header at
/// the start says `gdOffset = GD_AT_END`.
pub fn write_stream_optimized<R: Read + Seek>(
    raw: &mut R,
    out: &Path,
    options: &VmdkOptions,
) -> Result<(), ImageError> {
    let capacity = raw_size(raw)? / SECTOR;
    let grains = capacity.div_ceil(GRAIN_SECTORS);
    let num_gts = grains.div_ceil(GTES_PER_GT);
    let gt_sectors = GTES_PER_GT * 4 / SECTOR;
    let gd_sectors = (num_gts * 4).div_ceil(SECTOR);
    let overhead = (1 + DESCRIPTOR_SECTORS).next_multiple_of(GRAIN_SECTORS);

    let extent_name = extent_name(out, options)?;
    let descriptor = descriptor(
        options,
        capacity,
        "streamOptimized",
        &extent_name,
        DESCRIPTOR_SECTORS,
    );
    let mut header = SparseHeader {
        version: 3,
        flags: FLAG_VALID_NEWLINE_TEST | FLAG_COMPRESSED | FLAG_MARKERS,
        capacity,
        descriptor_offset: 1,
        descriptor_size: DESCRIPTOR_SECTORS,
        rgd_offset: 0,
        gd_offset: GD_AT_END,
        overhead,
        compress_algorithm: COMPRESS_DEFLATE,
    };

    let mut staged = StagedFile::create(out).map_err(|e| ImageError::write(out, e))?;
    let w = |e| ImageError::write(out, e);
    {
        let f = staged.writer();
        f.write_all(&header.encode()).map_err(w)?;
        f.write_all(&descriptor).map_err(w)?;
        write_zeros(f, (overhead - 1 - DESCRIPTOR_SECTORS) * SECTOR).map_err(w)?;
    }

    let mut at = overhead;
    let mut buf = vec![0u8; GRAIN_BYTES as usize];
    let mut gtes = vec![0u32; (num_gts * GTES_PER_GT) as usize];
    for grain in 0..grains {
        read_block(raw, grain, capacity * SECTOR, &mut buf)?;
        if is_zero(&buf) {
            continue;
        }
        let mut enc = ZlibEncoder::new(
            Vec::with_capacity(GRAIN_BYTES as usize / 2),
            Compression::new(ZLIB_LEVEL),
        );
        enc.write_all(&buf).map_err(w)?;
        let data = enc.finish().map_err(w)?;
        let mut record = Vec::with_capacity(12 + data.len() + SECTOR as usize);
        record.extend_from_slice(&(grain * GRAIN_SECTORS).to_le_bytes());
        record.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        record.extend_from_slice(&data);
        record.resize(record.len().next_multiple_of(SECTOR as usize), 0);
        if at > MAX_SECTOR_OFFSET {
            return Err(ImageError::TooLarge { path: out.into() });
        }
        gtes[grain as usize] = sector_u32(at);
        staged.writer().write_all(&record).map_err(w)?;
        at += record.len() as u64 / SECTOR;
    }

    // Every grain table (with its marker), then the grain directory.
    let mut gd = Vec::with_capacity(num_gts as usize);
    for table in gtes.chunks(GTES_PER_GT as usize) {
        let f = staged.writer();
        f.write_all(&marker(gt_sectors, MARKER_GT)).map_err(w)?;
        at += 1;
        if at > MAX_SECTOR_OFFSET {
            return Err(ImageError::TooLarge { path: out.into() });
        }
        gd.push(sector_u32(at));
        write_u32s_padded(f, table).map_err(w)?;
        at += gt_sectors;
    }
    let f = staged.writer();
    f.write_all(&marker(gd_sectors, MARKER_GD)).map_err(w)?;
    at += 1;
    header.gd_offset = at;
    write_u32s_padded(f, &gd).map_err(w)?;
    f.write_all(&marker(1, MARKER_FOOTER)).map_err(w)?;
    f.write_all(&header.encode()).map_err(w)?;
    f.write_all(&marker(0, MARKER_EOS)).map_err(w)?;
    staged.commit().map_err(w)
}

/// The fields of a `SparseExtentHeader` this writer sets.
#[derive(Debug, Clone, Copy)]
struct SparseHeader {
    version: u32,
    flags: u32,
    capacity: u64,
    descriptor_offset: u64,
    descriptor_size: u64,
    rgd_offset: u64,
    gd_offset: u64,
    overhead: u64,
    compress_algorithm: u16,
}

impl SparseHeader {
    /// The 512-byte little-endian header sector.
    fn encode(&self) -> [u8; 512] {
        let mut s = Vec::with_capacity(512);
        s.extend_from_slice(&SPARSE_MAGIC.to_le_bytes());
        s.extend_from_slice(&self.version.to_le_bytes());
        s.extend_from_slice(&self.flags.to_le_bytes());
        s.extend_from_slice(&self.capacity.to_le_bytes());
        s.extend_from_slice(&GRAIN_SECTORS.to_le_bytes());
        s.extend_from_slice(&self.descriptor_offset.to_le_bytes());
        s.extend_from_slice(&self.descriptor_size.to_le_bytes());
        s.extend_from_slice(&(GTES_PER_GT as u32).to_le_bytes());
        s.extend_from_slice(&self.rgd_offset.to_le_bytes());
        s.extend_from_slice(&self.gd_offset.to_le_bytes());
        s.extend_from_slice(&self.overhead.to_le_bytes());
        s.push(0); // uncleanShutdown
        s.extend_from_slice(b"\n \r\n"); // newline detection characters
        s.extend_from_slice(&self.compress_algorithm.to_le_bytes());
        let mut sector = [0u8; 512];
        sector[..s.len()].copy_from_slice(&s);
        sector
    }
}

/// A 512-byte marker: `numSectors`, `size` 0, `type`, padding.
fn marker(num_sectors: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[..8].copy_from_slice(&num_sectors.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

/// The descriptor's `CID`, derived from the seed (never `ffffffff`, which
/// means "no content ID").
pub fn content_id(seed: &[u8]) -> u32 {
    let d = derive(seed, b"cid");
    let cid = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    if cid == u32::MAX { cid - 1 } else { cid }
}

/// The descriptor's `ddb.uuid` bytes, derived from the seed (an RFC 4122
/// name-based UUID: version 5 and variant bits set).
pub fn disk_uuid(seed: &[u8]) -> [u8; 16] {
    let d = derive(seed, b"uuid");
    let mut u = [0u8; 16];
    u.copy_from_slice(&d[..16]);
    u[6] = (u[6] & 0x0f) | 0x50;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

fn derive(seed: &[u8], what: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"osam-vmdk\0");
    h.update(what);
    h.update(b"\0");
    h.update(seed);
    h.finalize().into()
}

/// The embedded descriptor, padded with zeros to `sectors` sectors (or the
/// next sector boundary if it is longer).
fn descriptor(
    options: &VmdkOptions,
    capacity: u64,
    create_type: &str,
    extent_name: &str,
    sectors: u64,
) -> Vec<u8> {
    let heads = options.adapter_type.heads();
    let cylinders = (capacity / (heads * 63)).clamp(1, 65535);
    let uuid = disk_uuid(&options.seed);
    let hex: Vec<String> = uuid.iter().map(|b| format!("{b:02x}")).collect();
    let uuid_text = format!("{}-{}", hex[..8].join(" "), hex[8..].join(" "));
    let text = format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         encoding=\"UTF-8\"\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"{create_type}\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"{extent_name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.adapterType = \"{adapter}\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"{heads}\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.uuid = \"{uuid_text}\"\n\
         ddb.virtualHWVersion = \"{hw}\"\n",
        cid = content_id(&options.seed),
        adapter = options.adapter_type.as_str(),
        hw = options.virtual_hw_version,
    );
    let mut bytes = text.into_bytes();
    let len = (sectors * SECTOR).max((bytes.len() as u64).next_multiple_of(SECTOR));
    bytes.resize(len as usize, 0);
    bytes
}

fn extent_name(out: &Path, options: &VmdkOptions) -> Result<String, ImageError> {
    let name = match &options.extent_name {
        Some(n) => n.clone(),
        None => out
            .file_name()
            .ok_or_else(|| ImageError::NoFileName { path: out.into() })?
            .to_string_lossy()
            .into_owned(),
    };
    // The descriptor quotes it: keep the quoting intact.
    Ok(name.replace(['"', '\n', '\r'], "_"))
}

fn sector_u32(sector: u64) -> u32 {
    u32::try_from(sector).unwrap_or(u32::MAX)
}

/// Writes little-endian u32s, zero-padded to a sector boundary.
fn write_u32s_padded<W: Write>(w: &mut W, values: &[u32]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity((values.len() * 4).next_multiple_of(SECTOR as usize));
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.resize(bytes.len().next_multiple_of(SECTOR as usize), 0);
    w.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_the_specification() {
        let h = SparseHeader {
            version: 3,
            flags: FLAG_VALID_NEWLINE_TEST | FLAG_COMPRESSED | FLAG_MARKERS,
            capacity: 16384,
            descriptor_offset: 1,
            descriptor_size: 20,
            rgd_offset: 0,
            gd_offset: GD_AT_END,
            overhead: 128,
            compress_algorithm: COMPRESS_DEFLATE,
        }
        .encode();
        assert_eq!(&h[..4], b"KDMV");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(h[8..12].try_into().unwrap()), 0x3_0001);
        assert_eq!(u64::from_le_bytes(h[12..20].try_into().unwrap()), 16384);
        assert_eq!(u64::from_le_bytes(h[20..28].try_into().unwrap()), 128);
        assert_eq!(u32::from_le_bytes(h[44..48].try_into().unwrap()), 512);
        assert_eq!(u64::from_le_bytes(h[56..64].try_into().unwrap()), GD_AT_END);
        assert_eq!(u64::from_le_bytes(h[64..72].try_into().unwrap()), 128);
        assert_eq!(&h[73..77], b"\n \r\n");
        assert_eq!(u16::from_le_bytes(h[77..79].try_into().unwrap()), 1);
        assert!(h[79..].iter().all(|&b| b == 0));
    }

    #[test]
    fn identifiers_follow_the_seed() {
        assert_eq!(content_id(b"a"), content_id(b"a"));
        assert_ne!(content_id(b"a"), content_id(b"b"));
        let u = disk_uuid(b"a");
        assert_eq!(u[6] >> 4, 5);
        assert_eq!(u[8] >> 6, 2);
    }

    #[test]
    fn descriptor_is_padded_and_names_the_geometry() {
        let d = descriptor(
            &VmdkOptions::default(),
            262144,
            "streamOptimized",
            "x.vmdk",
            20,
        );
        assert_eq!(d.len(), 20 * 512);
        let text = String::from_utf8_lossy(&d);
        assert!(text.contains("createType=\"streamOptimized\""));
        assert!(text.contains("RW 262144 SPARSE \"x.vmdk\""));
        assert!(text.contains("ddb.geometry.cylinders = \"16\""));
        assert!(text.contains("ddb.adapterType = \"lsilogic\""));
    }
}
