//! A blueprint for a test guest of [`crate::guests`]: the VM the manager
//! would create for it on vSphere, and what it knows of the source.

use std::path::PathBuf;

use crate::guests::GuestImage;
use crate::guests::recipe::{GuestArch, GuestFirmware};

use super::blueprint::{
    ArchName, Blueprint, DiskSpec, FirmwareName, NicSpec, OptionsSpec, PartitionSpec, SourceSpec,
    Timeouts,
};

/// The target MAC the blueprint gives the guest's NIC `index`
/// (`00:50:56:9a:00:01`, … : VMware's prefix; the source MACs differ).
pub fn target_mac(index: usize) -> String {
    format!(
        "00:50:56:9a:{:02x}:{:02x}",
        (index + 1) >> 8,
        (index + 1) & 0xff
    )
}

/// The blueprint of `image` migrated to VMware: its architecture and
/// firmware, the default controller of that firmware (pvscsi under BIOS,
/// ahci under UEFI), its disks (the cached qcow2 files: the emulator only
/// ever writes to overlays; their sizes come from the images) with the
/// partitions the build recorded, one
/// VMXNET3 NIC per source NIC with a new MAC ([`target_mac`]), the
/// source's hostname and `debian`/`12`.
pub fn blueprint_for_guest(image: &GuestImage, migration_id: &str) -> Blueprint {
    let recipe = image.recipe();
    let disks = image
        .disks
        .iter()
        .enumerate()
        .map(|(d, path)| {
            let partitions = image
                .manifest
                .partitions
                .iter()
                .filter(|p| p.disk == d)
                .map(|p| {
                    let fs = recipe
                        .disks
                        .get(d)
                        .and_then(|disk| disk.partitions.get(p.index.saturating_sub(1)))
                        .and_then(|part| part.fs.as_ref());
                    PartitionSpec {
                        number: p.index as u32,
                        source_device: Some(p.kernel_name.clone()),
                        fs_type: p
                            .fs
                            .clone()
                            .or_else(|| fs.map(|f| f.kind.name().to_owned())),
                        source_uuid: p.fs_uuid.clone(),
                        target_uuid: None,
                        label: p.fs_label.clone(),
                        mount_point: fs
                            .and_then(|f| f.mounts.iter().find(|m| m.subvolume.is_none()))
                            .or_else(|| fs.and_then(|f| f.mounts.first()))
                            .map(|m| m.mountpoint.clone()),
                    }
                })
                .collect();
            DiskSpec {
                path: Some(PathBuf::from(path)),
                unit: None,
                source_device: Some(format!("/dev/sd{}", (b'a' + d as u8) as char)),
                // The run takes the image's virtual size.
                capacity_bytes: None,
                boot: Some(d == 0),
                partitions,
                read_only: false,
            }
        })
        .collect();
    let nics = recipe
        .nics
        .iter()
        .enumerate()
        .map(|(i, nic)| NicSpec {
            mac: target_mac(i),
            source_name: nic.name.clone(),
            source_mac: nic.mac.clone(),
            target_name: None,
        })
        .collect();
    Blueprint {
        migration_id: migration_id.to_owned(),
        arch: match recipe.arch {
            GuestArch::Amd64 => ArchName::X86_64,
            GuestArch::I386 => ArchName::I686,
        },
        cpus: 1,
        memory_mib: crate::guests::GUEST_MEMORY_MIB,
        firmware: match recipe.firmware {
            GuestFirmware::Bios => FirmwareName::Bios,
            GuestFirmware::Uefi { .. } => FirmwareName::Uefi,
        },
        controller: None,
        disks,
        nic_model: Default::default(),
        nics,
        source: SourceSpec {
            hostname: Some(recipe.hostname.clone()),
            os_family: Some("debian".into()),
            os_version: Some("12".into()),
            firmware: None,
            arch: None,
        },
        options: OptionsSpec::default(),
        timeouts: Timeouts::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guests::manifest::{BuiltPartition, GuestManifest};
    use crate::guests::recipe::{BUILDER_VERSION, Recipe};
    use serde_json::json;

    #[test]
    fn the_reference_guest_as_a_blueprint() {
        let recipe = Recipe::debian12_bios(GuestArch::Amd64, "http://mirror/debian");
        let image = GuestImage {
            manifest: GuestManifest {
                builder_version: BUILDER_VERSION,
                name: recipe.name.clone(),
                hash: recipe.hash(),
                recipe,
                kernels: vec!["6.1.0-28-amd64".into()],
                packages: vec![],
                initramfs_modules: Default::default(),
                grub_cmdline: vec![],
                partitions: vec![BuiltPartition {
                    disk: 0,
                    index: 1,
                    kernel_name: "/dev/sda1".into(),
                    fs: Some("ext4".into()),
                    fs_uuid: Some("11111111-2222-3333-4444-555555555555".into()),
                    fs_label: Some("root".into()),
                    part_uuid: "abcd-01".into(),
                }],
                timings: Default::default(),
            },
            disks: vec!["/cache/deb12.qcow2".into()],
            dpkg_status: "/cache/s".into(),
            build_log: "/cache/l".into(),
        };
        let bp = blueprint_for_guest(&image, "mig-1");
        bp.check().unwrap();
        assert_eq!(bp.controller().name(), "pvscsi");
        assert_eq!(
            bp.replica_disk_map(&[Some(2 << 30)])["disks"][0],
            json!({
                "sourceDevice": "/dev/sda",
                "target": {"controller": "scsi0", "unit": 0},
                "capacityBytes": 2u64 << 30,
                "boot": true,
                "partitions": [{"number": 1, "sourceDevice": "/dev/sda1", "fsType": "ext4",
                                "sourceUuid": "11111111-2222-3333-4444-555555555555",
                                "label": "root", "mountPoint": "/"}]
            })
        );
        assert_eq!(
            bp.network_interface_map()["interfaces"],
            json!([
                {"sourceName": "ens192", "sourceMac": "52:54:00:4f:53:01",
                 "targetMac": "00:50:56:9a:00:01"},
                {"sourceName": "ens224", "sourceMac": "52:54:00:4f:53:02",
                 "targetMac": "00:50:56:9a:00:02"}
            ])
        );
        assert_eq!(
            bp.system_configuration()["source"]["hostname"],
            "osam-deb12"
        );
    }
}
