//! Identifiers of the disk, derived from the build seed.
//!
//! Each one is `sha256(seed || purpose)` cut to size; GUIDs are formatted
//! as RFC 4122 version 4 ("random") GUIDs, which is what they are to anyone
//! who does not know the seed.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Every identifier of one disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskIds {
    /// The GPT disk GUID (`osam.disk=`).
    pub disk_guid: Uuid,
    /// The BIOS boot partition's unique GUID.
    pub bios_part_guid: Uuid,
    /// The ESP's unique GUID.
    pub esp_part_guid: Uuid,
    /// The ESP's FAT volume id (serial number).
    pub fat_volume_id: u32,
    /// The MBR disk signature (offset 0x1B8).
    pub mbr_signature: [u8; 4],
}

fn digest(seed: &[u8; 32], purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(purpose.as_bytes());
    h.finalize().into()
}

fn guid(seed: &[u8; 32], purpose: &str) -> Uuid {
    let d = digest(seed, purpose);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

fn four(seed: &[u8; 32], purpose: &str) -> [u8; 4] {
    let d = digest(seed, purpose);
    [d[0], d[1], d[2], d[3]]
}

impl DiskIds {
    /// The identifiers of the disk built from `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            disk_guid: guid(seed, "disk"),
            bios_part_guid: guid(seed, "part-bios"),
            esp_part_guid: guid(seed, "part-esp"),
            fat_volume_id: u32::from_le_bytes(four(seed, "fat-volume-id")),
            mbr_signature: four(seed, "mbr-signature"),
        }
    }

    /// The disk GUID in lower case, as `osam.disk=` carries it.
    pub fn disk_guid_string(&self) -> String {
        self.disk_guid.hyphenated().to_string()
    }

    /// The FAT volume id as blkid and GRUB's `search --fs-uuid` write it:
    /// `XXXX-XXXX`, upper case (GRUB compares without case).
    pub fn esp_fs_uuid(&self) -> String {
        fs_uuid(self.fat_volume_id)
    }
}

/// A FAT volume id as `XXXX-XXXX`.
pub fn fs_uuid(volume_id: u32) -> String {
    format!("{:04X}-{:04X}", volume_id >> 16, volume_id & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = DiskIds::from_seed(&[7; 32]);
        assert_eq!(a, DiskIds::from_seed(&[7; 32]));
        assert_ne!(a, DiskIds::from_seed(&[8; 32]));
        assert_ne!(a.disk_guid, a.esp_part_guid);
        assert_eq!(a.disk_guid.get_version_num(), 4);
        assert_eq!(fs_uuid(0x1234_abcd), "1234-ABCD");
        let s = a.disk_guid_string();
        assert_eq!(s, s.to_ascii_lowercase());
        assert_eq!(s.len(), 36);
    }
}
