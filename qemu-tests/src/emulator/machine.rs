//! The target VM a blueprint describes, as QEMU runs it in each boot of a
//! run: stage 1 (the fixup disk first in the boot order, the 9p share),
//! stage 2 (the boot replica first, the fixup disk detached, the Tools
//! ISO as a CD-ROM) and the check boot (no CD-ROM).
//!
//! Layout:
//! - the replicas sit on one controller of the blueprint's model (QEMU id
//!   `scsi0` or `sata0`), first in PCI order among controllers of its
//!   kind, so the stack calls it `scsi0` / `sata0`;
//! - the fixup disk: under BIOS at SCSI target 15 of that controller when
//!   it is PVSCSI (the vSphere layout, `scsi0:15`), else at target 15 of
//!   a PVSCSI controller of its own (id `fixup`); under UEFI on port 0 of
//!   an AHCI controller of its own (Debian's OVMF boots no PVSCSI disk).
//!   The stack finds its disk by GPT GUID, not by address;
//! - NICs in the blueprint's order, each on QEMU user networking with its
//!   target MAC; `-nic none` where there is none.

use std::path::{Path, PathBuf};

use crate::vm::{Controller, ControllerModel, Drive, Firmware, VmConfig};

use super::blueprint::{Blueprint, ControllerName, FIXUP_SCSI_ID, FirmwareName, normalize_mac};

/// The boots of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Boot {
    /// The fixup stack from the fixup disk.
    Stage1,
    /// The guest from its boot disk with the Tools ISO, single-user.
    Stage2,
    /// The guest on its own, to read its check block.
    Check,
}

impl Boot {
    /// `stage1`, `stage2`, `check`.
    pub fn name(self) -> &'static str {
        match self {
            Boot::Stage1 => "stage1",
            Boot::Stage2 => "stage2",
            Boot::Check => "check",
        }
    }
}

/// Where a run's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFiles {
    /// The fixup disk image (vmdk, raw or qcow2; never written: it is
    /// attached with `snapshot=on`).
    pub stack: PathBuf,
    /// The writable image of each blueprint disk (its overlay), `None` for
    /// a disk that is not attached.
    pub disks: Vec<Option<PathBuf>>,
    /// The folder shared over 9p as the stack's `/tmp`.
    pub share: PathBuf,
    /// The QMP socket.
    pub qmp: PathBuf,
    /// The Tools ISO.
    pub tools_iso: Option<PathBuf>,
    /// The OVMF ia32 variable store of this run (i686 under UEFI).
    pub ovmf_vars: Option<PathBuf>,
}

/// QEMU's format name for an image, from its extension.
pub fn image_format(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("vmdk") => "vmdk",
        Some("qcow2") => "qcow2",
        _ => "raw",
    }
}

/// The firmware of the blueprint's VM.
pub fn firmware(blueprint: &Blueprint, files: &MachineFiles) -> Firmware {
    match (blueprint.firmware, blueprint.arch.arch()) {
        (FirmwareName::Bios, _) => Firmware::SeaBios,
        (FirmwareName::Uefi, crate::Arch::X86_64) => Firmware::OvmfX64,
        (FirmwareName::Uefi, crate::Arch::I686) => Firmware::OvmfIa32 {
            vars: files
                .ovmf_vars
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::vm::OVMF_IA32_VARS)),
        },
    }
}

/// The QEMU configuration of one boot, its serial console in `serial_log`.
pub fn vm_config(
    blueprint: &Blueprint,
    files: &MachineFiles,
    boot: Boot,
    serial_log: &Path,
) -> VmConfig {
    let controller = blueprint.controller();
    let replica_id = match controller {
        ControllerName::Ahci => "sata0",
        _ => "scsi0",
    };
    let mut replicas = Controller {
        id: replica_id.to_owned(),
        model: controller.model(),
        drives: Vec::new(),
    };
    for placement in blueprint.placements() {
        let Some(Some(path)) = files.disks.get(placement.index) else {
            continue;
        };
        let read_only = blueprint
            .disks
            .get(placement.index)
            .is_some_and(|d| d.read_only);
        replicas.drives.push(Drive {
            unit: placement.unit,
            path: path.clone(),
            // `Drive` has no read-only flag: the option rides on the
            // format (`-drive …,format=qcow2,readonly=on`).
            format: if read_only {
                format!("{},readonly=on", image_format(path))
            } else {
                image_format(path).to_owned()
            },
            snapshot: false,
            bootindex: (boot != Boot::Stage1 && placement.boot).then_some(0),
        });
    }
    let mut controllers = vec![replicas];
    if boot == Boot::Stage1 {
        let fixup = Drive {
            unit: 0,
            path: files.stack.clone(),
            format: image_format(&files.stack).to_owned(),
            snapshot: true,
            bootindex: Some(0),
        };
        match (blueprint.firmware, controller) {
            (FirmwareName::Bios, ControllerName::Pvscsi) => controllers[0].drives.push(Drive {
                unit: FIXUP_SCSI_ID,
                ..fixup
            }),
            (FirmwareName::Bios, _) => controllers.push(Controller {
                id: "fixup".into(),
                model: ControllerModel::Pvscsi,
                drives: vec![Drive {
                    unit: FIXUP_SCSI_ID,
                    ..fixup
                }],
            }),
            (FirmwareName::Uefi, _) => controllers.push(Controller {
                id: "fixup".into(),
                model: ControllerModel::Ahci,
                drives: vec![fixup],
            }),
        }
    }
    let mut config = VmConfig::machine(
        blueprint.arch.arch(),
        firmware(blueprint, files),
        controllers,
        serial_log,
    )
    .cpus(blueprint.cpus)
    .memory(blueprint.memory_mib)
    .qmp(&files.qmp);
    for nic in &blueprint.nics {
        let mac = normalize_mac(&nic.mac).unwrap_or_else(|_| nic.mac.clone());
        config = config.nic(blueprint.nic_model.model(), mac);
    }
    if blueprint.nics.is_empty() {
        config = config.args(["-nic", "none"]);
    }
    match boot {
        Boot::Stage1 => config = config.share_9p(&files.share, "fixup"),
        Boot::Stage2 => {
            if let Some(iso) = &files.tools_iso {
                config = config.cdrom(iso);
            }
        }
        Boot::Check => {}
    }
    config
}
