//! A qcow2 (version 3) writer, written from QEMU's qcow2 format
//! specification (docs/interop/qcow2.txt in the QEMU sources).
//!
//! The image is plain: 64 KiB clusters, 16-bit refcounts (refcount order
//! 4), no backing file, no compression, no snapshots, no extensions.
//! All-zero clusters of the raw input stay unallocated (they read as zeros
//! since there is no backing file). The layout is fixed — header, L1 table,
//! refcount table, refcount blocks, L2 tables, then the data clusters in
//! guest order — so the same input gives the same bytes.
//!
//! Like the VMDK writers, the output is written under a temporary name
//! beside the destination and renamed into place when complete.

use std::io::{self, Read, Seek, Write};
use std::path::Path;

pub use crate::rawimg::ImageError;
use crate::rawimg::{StagedFile, is_zero, raw_size, read_block};

/// The qcow2 magic, "QFI\xfb".
pub const MAGIC: u32 = 0x5146_49fb;
/// log2 of the cluster size.
pub const CLUSTER_BITS: u32 = 16;
/// The cluster size in bytes (64 KiB).
pub const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// log2 of the refcount width in bits (16-bit refcounts).
pub const REFCOUNT_ORDER: u32 = 4;
/// The header length of a version 3 header without optional fields.
pub const HEADER_LENGTH: u32 = 104;
/// L1/L2 entry flag: the refcount of the cluster is exactly one.
pub const OFLAG_COPIED: u64 = 1 << 63;

/// 8-byte entries per L2 table / refcount table cluster.
const ENTRIES_PER_CLUSTER: u64 = CLUSTER / 8;
/// 16-bit refcounts per refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;

/// Where everything goes, in clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    l1_entries: u64,
    l1_at: u64,
    l1_clusters: u64,
    rt_at: u64,
    rt_clusters: u64,
    rb_at: u64,
    rb_clusters: u64,
    l2_at: u64,
    data_at: u64,
    total: u64,
}

impl Layout {
    fn new(size: u64, l2_tables: u64, data_clusters: u64) -> Layout {
        let l1_entries = size.div_ceil(CLUSTER * ENTRIES_PER_CLUSTER);
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER).max(1);
        // The refcount blocks cover every cluster, themselves included.
        let (mut rt_clusters, mut rb_clusters) = (1, 1);
        loop {
            let total = 1 + l1_clusters + rt_clusters + rb_clusters + l2_tables + data_clusters;
            let rb = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let rt = (rb * 8).div_ceil(CLUSTER);
            if (rt, rb) == (rt_clusters, rb_clusters) {
                break;
            }
            (rt_clusters, rb_clusters) = (rt.max(rt_clusters), rb.max(rb_clusters));
        }
        let l1_at = 1;
        let rt_at = l1_at + l1_clusters;
        let rb_at = rt_at + rt_clusters;
        let l2_at = rb_at + rb_clusters;
        let data_at = l2_at + l2_tables;
        Layout {
            l1_entries,
            l1_at,
            l1_clusters,
            rt_at,
            rt_clusters,
            rb_at,
            rb_clusters,
            l2_at,
            data_at,
            total: data_at + data_clusters,
        }
    }
}

/// Writes `raw` as a qcow2 version 3 image at `out`.
pub fn write<R: Read + Seek>(raw: &mut R, out: &Path) -> Result<(), ImageError> {
    let size = raw_size(raw)?;
    let clusters = size.div_ceil(CLUSTER);

    // First pass: which clusters hold data.
    let mut buf = vec![0u8; CLUSTER as usize];
    let mut allocated = Vec::with_capacity(clusters as usize);
    for c in 0..clusters {
        read_block(raw, c, size, &mut buf)?;
        allocated.push(!is_zero(&buf));
    }
    let data_clusters = allocated.iter().filter(|&&a| a).count() as u64;
    let l2_used: Vec<bool> = allocated
        .chunks(ENTRIES_PER_CLUSTER as usize)
        .map(|t| t.iter().any(|&a| a))
        .collect();
    let l2_tables = l2_used.iter().filter(|&&u| u).count() as u64;
    let layout = Layout::new(size, l2_tables, data_clusters);

    // L1 and L2 tables.
    let mut l1 = vec![0u64; layout.l1_entries as usize];
    let mut l2_bytes = Vec::with_capacity((l2_tables * CLUSTER) as usize);
    let mut next_l2 = layout.l2_at;
    let mut next_data = layout.data_at;
    for (t, table) in allocated.chunks(ENTRIES_PER_CLUSTER as usize).enumerate() {
        if !l2_used[t] {
            continue;
        }
        l1[t] = (next_l2 * CLUSTER) | OFLAG_COPIED;
        next_l2 += 1;
        let mut l2 = vec![0u64; ENTRIES_PER_CLUSTER as usize];
        for (i, &a) in table.iter().enumerate() {
            if a {
                l2[i] = (next_data * CLUSTER) | OFLAG_COPIED;
                next_data += 1;
            }
        }
        l2_bytes.extend(be_cluster_u64(&l2, 1));
    }

    let rt: Vec<u64> = (0..layout.rb_clusters)
        .map(|b| (layout.rb_at + b) * CLUSTER)
        .collect();
    let mut rb = Vec::with_capacity((layout.rb_clusters * CLUSTER) as usize);
    for c in 0..layout.rb_clusters * REFCOUNTS_PER_BLOCK {
        rb.extend_from_slice(&u16::from(c < layout.total).to_be_bytes());
    }

    let werr = |source| ImageError::write(out, source);
    let mut staged = StagedFile::create(out).map_err(werr)?;
    let meta = (|| -> io::Result<()> {
        let w = staged.writer();
        w.write_all(&header(size, &layout))?;
        w.write_all(&be_cluster_u64(&l1, layout.l1_clusters))?;
        w.write_all(&be_cluster_u64(&rt, layout.rt_clusters))?;
        w.write_all(&rb)?;
        w.write_all(&l2_bytes)
    })();
    meta.map_err(werr)?;

    // Second pass: the data clusters, in guest order.
    for (c, &a) in allocated.iter().enumerate() {
        if a {
            read_block(raw, c as u64, size, &mut buf)?;
            staged.writer().write_all(&buf).map_err(werr)?;
        }
    }
    // Nothing to pad: every cluster is written whole.
    staged.commit().map_err(werr)
}

/// The header cluster.
fn header(size: u64, layout: &Layout) -> Vec<u8> {
    let mut h = Vec::with_capacity(CLUSTER as usize);
    h.extend_from_slice(&MAGIC.to_be_bytes());
    h.extend_from_slice(&3u32.to_be_bytes()); // version
    h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
    h.extend_from_slice(&(layout.l1_entries as u32).to_be_bytes());
    h.extend_from_slice(&(layout.l1_at * CLUSTER).to_be_bytes());
    h.extend_from_slice(&(layout.rt_at * CLUSTER).to_be_bytes());
    h.extend_from_slice(&(layout.rt_clusters as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    h.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    h.extend_from_slice(&REFCOUNT_ORDER.to_be_bytes());
    h.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
    debug_assert_eq!(h.len(), HEADER_LENGTH as usize);
    // The end-of-extensions marker (type 0, length 0) and the rest of the
    // cluster are zeros.
    h.resize(CLUSTER as usize, 0);
    h
}

/// Big-endian u64s, zero-padded to `clusters` clusters.
fn be_cluster_u64(values: &[u64], clusters: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity((clusters * CLUSTER) as usize);
    for v in values {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    bytes.resize((clusters * CLUSTER) as usize, 0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_typical_disk() {
        // 128 MiB: one L1 entry, one L2 table.
        let l = Layout::new(128 << 20, 1, 100);
        assert_eq!(l.l1_entries, 1);
        assert_eq!(
            (l.l1_at, l.rt_at, l.rb_at, l.l2_at, l.data_at),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(l.total, 105);
    }

    #[test]
    fn refcount_blocks_cover_themselves() {
        // Just over one refcount block's worth of clusters.
        let l = Layout::new(4 << 30, 8, REFCOUNTS_PER_BLOCK - 10);
        assert_eq!(l.rb_clusters, 2);
        assert!(l.total <= l.rb_clusters * REFCOUNTS_PER_BLOCK);
    }

    #[test]
    fn header_fields() {
        let l = Layout::new(8 << 20, 1, 3);
        let h = header(8 << 20, &l);
        assert_eq!(&h[..4], b"QFI\xfb");
        assert_eq!(u32::from_be_bytes(h[4..8].try_into().unwrap()), 3);
        assert_eq!(u32::from_be_bytes(h[20..24].try_into().unwrap()), 16);
        assert_eq!(u64::from_be_bytes(h[24..32].try_into().unwrap()), 8 << 20);
        assert_eq!(u32::from_be_bytes(h[96..100].try_into().unwrap()), 4);
        assert_eq!(u32::from_be_bytes(h[100..104].try_into().unwrap()), 104);
    }
}
