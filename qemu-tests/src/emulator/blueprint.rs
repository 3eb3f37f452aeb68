//! The blueprint of a migrated VM: the target VM the manager creates
//! (architecture, CPUs, memory, firmware, storage controller, replica
//! disks, NICs with their target MACs) and what the manager knows of the
//! source (hostname, OS family, source disk devices, source NIC names and
//! MACs). From it come the three input files of PROTOCOL.md.
//!
//! A blueprint is JSON (camelCase, like the protocol's files); unknown
//! fields are errors, and every error names the field (`disks[1].path`).
//!
//! ```json
//! {
//!   "migrationId": "mig-0001",
//!   "arch": "x86_64", "cpus": 1, "memoryMib": 1024,
//!   "firmware": "bios", "controller": "pvscsi",
//!   "disks": [ { "path": "debian12.qcow2", "sourceDevice": "/dev/vda",
//!                "partitions": [ { "number": 1, "sourceDevice": "/dev/vda1",
//!                                  "fsType": "ext4", "mountPoint": "/" } ] } ],
//!   "nicModel": "vmxnet3",
//!   "nics": [ { "mac": "00:50:56:9a:00:01", "sourceName": "ens3",
//!               "sourceMac": "52:54:00:12:34:56" } ],
//!   "source": { "hostname": "web01", "osFamily": "debian", "osVersion": "12" },
//!   "options": { "renameInterfaces": true },
//!   "timeouts": { "endSeconds": 900 }
//! }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Arch;
use crate::vm::{ControllerModel, NicModel};

/// The protocol version the emulator writes.
pub const PROTOCOL_VERSION: u32 = 1;
/// SCSI target ids no replica takes: the controller's own (7) and the
/// fixup disk's (15).
pub const RESERVED_SCSI_UNITS: [u8; 2] = [7, 15];
/// The fixup disk's SCSI target id.
pub const FIXUP_SCSI_ID: u8 = 15;

/// A blueprint. See the module documentation for the format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blueprint {
    /// The migration id: 1-128 characters of `[A-Za-z0-9._-]`, not
    /// starting with `.` (it names the log files).
    pub migration_id: String,
    /// The VM's (and the guest's) architecture: picks the QEMU emulator
    /// and CPU model.
    #[serde(default = "default_arch")]
    pub arch: ArchName,
    /// Virtual CPUs (1-8).
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// Memory in MiB (256-16384; the x86_64 stack needs 256).
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
    /// The target VM's firmware.
    #[serde(default)]
    pub firmware: FirmwareName,
    /// The target VM's storage controller; default `pvscsi` under BIOS,
    /// `ahci` under UEFI (Debian's OVMF has no PVSCSI driver).
    #[serde(default)]
    pub controller: Option<ControllerName>,
    /// The replica disks, attached in this order at units 0, 1, … (SCSI
    /// skips 7 and 15) unless a disk names its unit.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// The target VM's NIC model.
    #[serde(default)]
    pub nic_model: NicModelName,
    /// The target VM's NICs (ethernet0, ethernet1, …, in PCI order).
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    /// What the manager knows of the source VM.
    #[serde(default)]
    pub source: SourceSpec,
    /// `options` of system-configuration.json.
    #[serde(default)]
    pub options: OptionsSpec,
    /// How long the emulator waits for each step.
    #[serde(default)]
    pub timeouts: Timeouts,
}

fn default_arch() -> ArchName {
    ArchName::X86_64
}
fn default_cpus() -> u32 {
    1
}
fn default_memory() -> u32 {
    1024
}

/// `arch`: `x86_64` | `i686`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchName {
    /// 64-bit.
    #[serde(rename = "x86_64")]
    X86_64,
    /// 32-bit.
    #[serde(rename = "i686")]
    I686,
}

impl ArchName {
    /// The harness's architecture.
    pub fn arch(self) -> Arch {
        match self {
            ArchName::X86_64 => Arch::X86_64,
            ArchName::I686 => Arch::I686,
        }
    }
}

/// `firmware`: `bios` (SeaBIOS) | `uefi` (OVMF: x64 for x86_64, ia32 for
/// i686). `efi` is taken for `uefi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirmwareName {
    /// Legacy BIOS.
    #[default]
    Bios,
    /// UEFI.
    #[serde(alias = "efi")]
    Uefi,
}

impl FirmwareName {
    /// The protocol's name (`bios`, `efi`).
    pub fn protocol(self) -> &'static str {
        match self {
            FirmwareName::Bios => "bios",
            FirmwareName::Uefi => "efi",
        }
    }
}

/// `controller`: `pvscsi` | `mptsas1068` (LSI Logic SAS) | `ahci`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControllerName {
    /// VMware paravirtual SCSI.
    Pvscsi,
    /// LSI Logic SAS.
    Mptsas1068,
    /// SATA.
    Ahci,
}

impl ControllerName {
    /// The QEMU model.
    pub fn model(self) -> ControllerModel {
        match self {
            ControllerName::Pvscsi => ControllerModel::Pvscsi,
            ControllerName::Mptsas1068 => ControllerModel::Mptsas1068,
            ControllerName::Ahci => ControllerModel::Ahci,
        }
    }

    /// `target.storageController` of system-configuration.json.
    pub fn protocol(self) -> &'static str {
        match self {
            ControllerName::Pvscsi => "pvscsi",
            ControllerName::Mptsas1068 => "lsilogic-sas",
            ControllerName::Ahci => "ahci",
        }
    }

    /// `target.controller` of replica-disk-map.json: the first controller
    /// of its kind.
    pub fn disk_map_controller(self) -> &'static str {
        match self {
            ControllerName::Pvscsi | ControllerName::Mptsas1068 => "scsi0",
            ControllerName::Ahci => "sata0",
        }
    }

    /// The blueprint's name.
    pub fn name(self) -> &'static str {
        match self {
            ControllerName::Pvscsi => "pvscsi",
            ControllerName::Mptsas1068 => "mptsas1068",
            ControllerName::Ahci => "ahci",
        }
    }
}

/// `nicModel`: `vmxnet3` | `e1000` | `e1000e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicModelName {
    /// VMXNET3.
    #[default]
    Vmxnet3,
    /// E1000.
    E1000,
    /// E1000e.
    E1000e,
}

impl NicModelName {
    /// The QEMU model.
    pub fn model(self) -> NicModel {
        match self {
            NicModelName::Vmxnet3 => NicModel::Vmxnet3,
            NicModelName::E1000 => NicModel::E1000,
            NicModelName::E1000e => NicModel::E1000e,
        }
    }

    /// `target.nicModel` of system-configuration.json.
    pub fn protocol(self) -> &'static str {
        self.model().qemu_device()
    }
}

/// A replica disk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskSpec {
    /// The replica's image (qcow2 or raw; relative to the blueprint's
    /// folder). Each run writes to an overlay, never to it. A disk without
    /// a path is listed in replica-disk-map.json but not attached (a
    /// replica that failed to attach: the stack answers `disk.not_found`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Its unit on the controller (SCSI target id, SATA port); default the
    /// next free one.
    #[serde(default)]
    pub unit: Option<u8>,
    /// Its device on the source (default `/dev/sda`, `/dev/sdb`, … by
    /// position).
    #[serde(default)]
    pub source_device: Option<String>,
    /// Its size; default the image's virtual size.
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    /// Whether the source booted from it (default: the first disk).
    #[serde(default)]
    pub boot: Option<bool>,
    /// Its partitions as the source knew them (passed on as they are).
    #[serde(default)]
    pub partitions: Vec<PartitionSpec>,
    /// Attach it read-only (QEMU `readonly=on`: the VM sees a
    /// write-protected disk), a fault case; default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// A source partition (replica-disk-map.json's `partitions[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartitionSpec {
    /// The partition number.
    pub number: u32,
    /// The source device (`/dev/sda1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_device: Option<String>,
    /// The file system type (`ext4`, `xfs`, `LVM2_member`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
    /// The source file system UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_uuid: Option<String>,
    /// The target file system UUID, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_uuid: Option<String>,
    /// The file system label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Where the source mounted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_point: Option<String>,
}

/// A NIC of the target VM and the source NIC it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NicSpec {
    /// The target MAC (the VM's NIC gets it).
    pub mac: String,
    /// The source NIC's name.
    pub source_name: String,
    /// The source NIC's MAC.
    pub source_mac: String,
    /// The name the guest should give it (default eth0, eth1, … by the
    /// stack).
    #[serde(default)]
    pub target_name: Option<String>,
}

/// What the manager knows of the source VM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// Its hostname.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Its OS family hint (`rhel`, `debian`, …).
    #[serde(default)]
    pub os_family: Option<String>,
    /// Its OS version hint.
    #[serde(default)]
    pub os_version: Option<String>,
    /// Its firmware (default: the target's).
    #[serde(default)]
    pub firmware: Option<FirmwareName>,
    /// Its architecture (default: the VM's).
    #[serde(default)]
    pub arch: Option<ArchName>,
}

/// `fstabIdentifiers`: `uuid` | `keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FstabIdentifiers {
    /// Device names become `UUID=`.
    #[default]
    Uuid,
    /// Device names are kept.
    Keep,
}

/// `options` of system-configuration.json, with the protocol's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OptionsSpec {
    /// Rename NICs to ethN.
    #[serde(default = "yes")]
    pub rename_interfaces: bool,
    /// How fstab names devices.
    #[serde(default)]
    pub fstab_identifiers: FstabIdentifiers,
    /// Prepare stage 2 (and so run it: without it the emulator skips the
    /// stage-2 boot).
    #[serde(default = "yes")]
    pub stage2: bool,
    /// More initramfs drivers.
    #[serde(default)]
    pub extra_initramfs_drivers: Vec<String>,
    /// The limit of each command in the guest (1-86400 s).
    #[serde(default = "default_command_timeout")]
    pub command_timeout_seconds: u32,
}

fn yes() -> bool {
    true
}
fn default_command_timeout() -> u32 {
    900
}

impl Default for OptionsSpec {
    fn default() -> Self {
        Self {
            rename_interfaces: true,
            fstab_identifiers: FstabIdentifiers::Uuid,
            stage2: true,
            extra_initramfs_drivers: Vec::new(),
            command_timeout_seconds: default_command_timeout(),
        }
    }
}

/// How long the emulator waits, in seconds (each 1-86400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// From QEMU's start to a complete READY.
    #[serde(default = "default_ready")]
    pub ready_seconds: u64,
    /// From BEGIN to END.
    #[serde(default = "default_end")]
    pub end_seconds: u64,
    /// For the stage-2 boot to power itself off.
    #[serde(default = "default_stage2")]
    pub stage2_seconds: u64,
    /// For the last boot's check block.
    #[serde(default = "default_check")]
    pub check_seconds: u64,
    /// For a guest to shut down on the ACPI power button before `quit`.
    #[serde(default = "default_power_off")]
    pub power_off_seconds: u64,
}

fn default_ready() -> u64 {
    300
}
fn default_end() -> u64 {
    900
}
fn default_stage2() -> u64 {
    1800
}
fn default_check() -> u64 {
    900
}
fn default_power_off() -> u64 {
    120
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            ready_seconds: default_ready(),
            end_seconds: default_end(),
            stage2_seconds: default_stage2(),
            check_seconds: default_check(),
            power_off_seconds: default_power_off(),
        }
    }
}

/// One problem of a blueprint: the field (`disks[1].path`) and what is
/// wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path; `.` for the whole document.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// A blueprint that cannot be used: where it came from and every problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BlueprintError {
    /// The file, where it came from one.
    pub file: Option<PathBuf>,
    /// The problems.
    pub errors: Vec<FieldError>,
}

impl BlueprintError {
    fn one(file: Option<&Path>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.map(Path::to_path_buf),
            errors: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
        }
    }

    /// Whether a problem names `field`.
    pub fn names(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for BlueprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "blueprint {}", file.display())?,
            None => f.write_str("blueprint")?,
        }
        if let [only] = self.errors.as_slice() {
            return write!(f, ": {}: {}", only.field, only.message);
        }
        write!(f, ": {} problems", self.errors.len())?;
        for e in &self.errors {
            write!(f, "\n  {}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// Where a replica disk sits in the target VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Its index in [`Blueprint::disks`].
    pub index: usize,
    /// Its unit on the replica controller.
    pub unit: u8,
    /// Whether it is the boot disk.
    pub boot: bool,
}

impl Blueprint {
    /// Reads and checks a blueprint file; relative disk paths are taken
    /// from the file's folder.
    pub fn load(path: &Path) -> Result<Blueprint, BlueprintError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BlueprintError::one(Some(path), ".", format!("cannot read it: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|mut e| {
            e.file = Some(path.to_path_buf());
            e
        })
    }

    /// Parses and checks a blueprint; relative disk paths are taken from
    /// `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Blueprint, BlueprintError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed: Result<Blueprint, _> = serde_path_to_error::deserialize(&mut deserializer);
        let mut blueprint = parsed.map_err(|e| {
            // Malformed JSON has no field: the message gives line and
            // column.
            let field = match e.path().to_string() {
                _ if e.inner().is_syntax() || e.inner().is_eof() => ".".to_owned(),
                p if p == "." || p == "?" || p.is_empty() => ".".to_owned(),
                p => p,
            };
            BlueprintError::one(None, field, e.inner().to_string())
        })?;
        deserializer
            .end()
            .map_err(|e| BlueprintError::one(None, ".", e.to_string()))?;
        for disk in &mut blueprint.disks {
            if let Some(path) = &disk.path {
                if path.is_relative() && !path.as_os_str().is_empty() {
                    disk.path = Some(base.join(path));
                }
            }
        }
        blueprint.check()?;
        Ok(blueprint)
    }

    /// The storage controller (the default filled in).
    pub fn controller(&self) -> ControllerName {
        self.controller.unwrap_or(match self.firmware {
            FirmwareName::Bios => ControllerName::Pvscsi,
            FirmwareName::Uefi => ControllerName::Ahci,
        })
    }

    /// Every problem of the blueprint, each naming its field.
    pub fn check(&self) -> Result<(), BlueprintError> {
        let mut errors = Vec::new();
        let mut err = |field: String, message: String| errors.push(FieldError { field, message });
        if let Err(why) = check_migration_id(&self.migration_id) {
            err("migrationId".into(), why);
        }
        if !(1..=8).contains(&self.cpus) {
            err("cpus".into(), format!("expected 1-8, found {}", self.cpus));
        }
        if !(256..=16384).contains(&self.memory_mib) {
            err(
                "memoryMib".into(),
                format!(
                    "expected 256-16384 (MiB; the x86_64 stack needs 256), found {}",
                    self.memory_mib
                ),
            );
        }
        let controller = self.controller();
        if self.firmware == FirmwareName::Uefi && controller != ControllerName::Ahci {
            err(
                "controller".into(),
                format!(
                    "{} cannot be booted under UEFI here: Debian's OVMF has no driver for it \
                     (lab notes); use \"ahci\" (the default under UEFI)",
                    controller.name()
                ),
            );
        }
        // Units.
        let model = controller.model();
        let mut taken: HashMap<u8, usize> = HashMap::new();
        for (i, disk) in self.disks.iter().enumerate() {
            let Some(unit) = disk.unit else { continue };
            let field = format!("disks[{i}].unit");
            if unit >= model.units() {
                err(
                    field,
                    format!(
                        "{} has units 0-{}, found {unit}",
                        controller.name(),
                        model.units() - 1
                    ),
                );
            } else if model.is_scsi() && RESERVED_SCSI_UNITS.contains(&unit) {
                err(
                    field,
                    format!("unit {unit} is reserved (7: the SCSI controller, 15: the fixup disk)"),
                );
            } else if let Some(first) = taken.insert(unit, i) {
                err(field, format!("unit {unit} is taken by disks[{first}] too"));
            }
        }
        let free = usable_units(model)
            .filter(|u| !taken.contains_key(u))
            .count();
        let auto = self.disks.iter().filter(|d| d.unit.is_none()).count();
        if auto > free {
            err(
                "disks".into(),
                format!(
                    "{} disks do not fit on one {} controller (at most {})",
                    self.disks.len(),
                    controller.name(),
                    usable_units(model).count()
                ),
            );
        }
        let mut devices: HashMap<String, String> = HashMap::new();
        let mut boots = Vec::new();
        for (i, disk) in self.disks.iter().enumerate() {
            if let Some(path) = &disk.path {
                if path.as_os_str().is_empty() {
                    err(
                        format!("disks[{i}].path"),
                        "expected an image file, found an empty string (leave the field out \
                         for a replica that is not attached)"
                            .into(),
                    );
                }
            }
            let device = self.source_device(i);
            if let Err(why) = check_device(&device) {
                err(format!("disks[{i}].sourceDevice"), why);
            }
            if let Some(first) = devices.insert(device.clone(), format!("disks[{i}].sourceDevice"))
            {
                err(
                    format!("disks[{i}].sourceDevice"),
                    format!("{device:?} is named by {first} too"),
                );
            }
            if disk.capacity_bytes == Some(0) {
                err(
                    format!("disks[{i}].capacityBytes"),
                    "expected a positive size in bytes, found 0".into(),
                );
            }
            if disk.boot == Some(true) {
                boots.push(i);
            }
            let mut numbers = HashMap::new();
            for (j, part) in disk.partitions.iter().enumerate() {
                let at = format!("disks[{i}].partitions[{j}]");
                if !(1..=128).contains(&part.number) {
                    err(
                        format!("{at}.number"),
                        format!("expected 1-128, found {}", part.number),
                    );
                } else if let Some(first) = numbers.insert(part.number, j) {
                    err(
                        format!("{at}.number"),
                        format!(
                            "partition {} is disks[{i}].partitions[{first}] too",
                            part.number
                        ),
                    );
                }
                if let Some(device) = &part.source_device {
                    if let Err(why) = check_device(device) {
                        err(format!("{at}.sourceDevice"), why);
                    } else if let Some(first) =
                        devices.insert(device.clone(), format!("{at}.sourceDevice"))
                    {
                        err(
                            format!("{at}.sourceDevice"),
                            format!("{device:?} is named by {first} too"),
                        );
                    }
                }
                if let Some(mount) = &part.mount_point {
                    if !mount.starts_with('/') {
                        err(
                            format!("{at}.mountPoint"),
                            format!("expected an absolute path, found {mount:?}"),
                        );
                    }
                }
            }
        }
        if boots.len() > 1 {
            err(
                format!("disks[{}].boot", boots[1]),
                format!("only one disk can boot; disks[{}] does too", boots[0]),
            );
        }
        let mut macs: HashMap<String, String> = HashMap::new();
        let mut names: HashMap<String, String> = HashMap::new();
        for (i, nic) in self.nics.iter().enumerate() {
            for (field, mac) in [("mac", &nic.mac), ("sourceMac", &nic.source_mac)] {
                let at = format!("nics[{i}].{field}");
                match normalize_mac(mac) {
                    Err(why) => err(at, why),
                    Ok(norm) => {
                        if field == "mac"
                            && u8::from_str_radix(&norm[..2], 16).unwrap_or(0) & 1 == 1
                        {
                            err(
                                at.clone(),
                                format!("{mac} is a multicast address; a NIC needs a unicast one"),
                            );
                        }
                        if let Some(first) = macs.insert(format!("{field}:{norm}"), at.clone()) {
                            err(at, format!("{mac} is {first} too"));
                        }
                    }
                }
            }
            let names_of = [
                ("sourceName", Some(&nic.source_name)),
                ("targetName", nic.target_name.as_ref()),
            ];
            for (field, name) in names_of {
                let Some(name) = name else { continue };
                let at = format!("nics[{i}].{field}");
                if let Err(why) = check_ifname(name) {
                    err(at, why);
                } else if let Some(first) = names.insert(format!("{field}:{name}"), at.clone()) {
                    err(at, format!("{name:?} is {first} too"));
                }
            }
        }
        for (field, text) in [
            ("source.hostname", &self.source.hostname),
            ("source.osFamily", &self.source.os_family),
            ("source.osVersion", &self.source.os_version),
        ] {
            if let Some(text) = text {
                if text.is_empty() || text.len() > 255 || text.chars().any(char::is_control) {
                    err(
                        field.into(),
                        format!(
                            "expected 1-255 characters without control characters, found {text:?}"
                        ),
                    );
                }
            }
        }
        for (j, driver) in self.options.extra_initramfs_drivers.iter().enumerate() {
            let ok = !driver.is_empty()
                && driver.len() <= 64
                && driver
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                err(
                    format!("options.extraInitramfsDrivers[{j}]"),
                    format!("expected a kernel module name, found {driver:?}"),
                );
            }
        }
        if !(1..=86_400).contains(&self.options.command_timeout_seconds) {
            err(
                "options.commandTimeoutSeconds".into(),
                format!(
                    "expected 1-86400, found {}",
                    self.options.command_timeout_seconds
                ),
            );
        }
        let t = &self.timeouts;
        for (field, value) in [
            ("timeouts.readySeconds", t.ready_seconds),
            ("timeouts.endSeconds", t.end_seconds),
            ("timeouts.stage2Seconds", t.stage2_seconds),
            ("timeouts.checkSeconds", t.check_seconds),
            ("timeouts.powerOffSeconds", t.power_off_seconds),
        ] {
            if !(1..=86_400).contains(&value) {
                err(field.into(), format!("expected 1-86400, found {value}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(BlueprintError { file: None, errors })
        }
    }

    /// The source device of disk `index` (default `/dev/sda`, `/dev/sdb`,
    /// … by position).
    pub fn source_device(&self, index: usize) -> String {
        match &self.disks[index].source_device {
            Some(device) => device.clone(),
            None => format!("/dev/sd{}", disk_letters(index)),
        }
    }

    /// Where each disk goes: explicit units first, then the free units in
    /// order. The boot disk is the one marked `boot`, else the first.
    pub fn placements(&self) -> Vec<Placement> {
        let model = self.controller().model();
        let taken: Vec<u8> = self.disks.iter().filter_map(|d| d.unit).collect();
        let mut free = usable_units(model).filter(|u| !taken.contains(u));
        let boot = self
            .disks
            .iter()
            .position(|d| d.boot == Some(true))
            .or_else(|| (!self.disks.is_empty()).then_some(0))
            .filter(|&i| self.disks[i].boot != Some(false));
        self.disks
            .iter()
            .enumerate()
            .map(|(index, disk)| Placement {
                index,
                // `check` made sure that every disk has a unit.
                unit: disk.unit.or_else(|| free.next()).unwrap_or(u8::MAX),
                boot: boot == Some(index),
            })
            .collect()
    }

    /// system-configuration.json.
    pub fn system_configuration(&self) -> Value {
        let mut source = Map::new();
        if let Some(hostname) = &self.source.hostname {
            source.insert("hostname".into(), json!(hostname));
        }
        let arch = self.source.arch.unwrap_or(self.arch).arch();
        source.insert("arch".into(), json!(arch.name()));
        let firmware = self.source.firmware.unwrap_or(self.firmware);
        source.insert("firmware".into(), json!(firmware.protocol()));
        if let Some(family) = &self.source.os_family {
            source.insert("osFamily".into(), json!(family));
        }
        if let Some(version) = &self.source.os_version {
            source.insert("osVersion".into(), json!(version));
        }
        let o = &self.options;
        json!({
            "version": PROTOCOL_VERSION,
            "migrationId": self.migration_id,
            "source": source,
            "target": {
                "firmware": self.firmware.protocol(),
                "storageController": self.controller().protocol(),
                "nicModel": self.nic_model.protocol(),
            },
            "options": {
                "renameInterfaces": o.rename_interfaces,
                "fstabIdentifiers": match o.fstab_identifiers {
                    FstabIdentifiers::Uuid => "uuid",
                    FstabIdentifiers::Keep => "keep",
                },
                "stage2": o.stage2,
                "extraInitramfsDrivers": o.extra_initramfs_drivers,
                "commandTimeoutSeconds": o.command_timeout_seconds,
            }
        })
    }

    /// replica-disk-map.json; `capacities[i]` stands in for a disk's
    /// missing `capacityBytes` (the image's virtual size).
    pub fn replica_disk_map(&self, capacities: &[Option<u64>]) -> Value {
        let controller = self.controller().disk_map_controller();
        let disks: Vec<Value> = self
            .placements()
            .iter()
            .map(|p| {
                let disk = &self.disks[p.index];
                let mut entry = Map::new();
                entry.insert("sourceDevice".into(), json!(self.source_device(p.index)));
                entry.insert(
                    "target".into(),
                    json!({ "controller": controller, "unit": p.unit }),
                );
                let capacity = disk
                    .capacity_bytes
                    .or_else(|| capacities.get(p.index).copied().flatten());
                if let Some(bytes) = capacity {
                    entry.insert("capacityBytes".into(), json!(bytes));
                }
                entry.insert("boot".into(), json!(p.boot));
                entry.insert(
                    "partitions".into(),
                    serde_json::to_value(&disk.partitions).unwrap_or_else(|_| json!([])),
                );
                Value::Object(entry)
            })
            .collect();
        json!({ "version": PROTOCOL_VERSION, "disks": disks })
    }

    /// network-interface-map.json (the NICs in the VM's order; MACs in
    /// lowercase with colons).
    pub fn network_interface_map(&self) -> Value {
        let interfaces: Vec<Value> = self
            .nics
            .iter()
            .map(|nic| {
                let mut entry = Map::new();
                entry.insert("sourceName".into(), json!(nic.source_name));
                entry.insert(
                    "sourceMac".into(),
                    json!(normalize_mac(&nic.source_mac).unwrap_or_default()),
                );
                entry.insert(
                    "targetMac".into(),
                    json!(normalize_mac(&nic.mac).unwrap_or_default()),
                );
                if let Some(name) = &nic.target_name {
                    entry.insert("targetName".into(), json!(name));
                }
                Value::Object(entry)
            })
            .collect();
        json!({ "version": PROTOCOL_VERSION, "interfaces": interfaces })
    }
}

/// The units replicas may take on a controller, in order.
pub fn usable_units(model: ControllerModel) -> impl Iterator<Item = u8> {
    (0..model.units()).filter(move |u| !(model.is_scsi() && RESERVED_SCSI_UNITS.contains(u)))
}

/// `a`…`z`, `aa`… for disk `index`.
fn disk_letters(index: usize) -> String {
    let mut n = index;
    let mut letters = Vec::new();
    loop {
        letters.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap_or_default()
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`; `-` or `:` separators, any case.
pub fn normalize_mac(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(format!(
            "expected six hexadecimal octets separated by ':' or '-' (such as \
             00:50:56:9a:00:01), found {text:?}"
        ));
    }
    Ok(parts.join(":").to_ascii_lowercase())
}

fn check_migration_id(id: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected 1-128 characters of [A-Za-z0-9._-], not starting with '.', found {id:?}"
        ))
    }
}

fn check_device(device: &str) -> Result<(), String> {
    let ok = device.starts_with("/dev/")
        && device.len() > 5
        && device.len() <= 255
        && !device.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a device path starting with /dev/, found {device:?}"
        ))
    }
}

fn check_ifname(name: &str) -> Result<(), String> {
    let ok = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an interface name of 1-15 characters of [A-Za-z0-9_.-], found {name:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters() {
        assert_eq!(disk_letters(0), "a");
        assert_eq!(disk_letters(25), "z");
        assert_eq!(disk_letters(26), "aa");
        assert_eq!(disk_letters(27), "ab");
    }

    #[test]
    fn units_skip_reserved_ids() {
        let units: Vec<u8> = usable_units(ControllerModel::Pvscsi).take(16).collect();
        assert_eq!(units[6..9], [6, 8, 9]);
        assert!(!units.contains(&15));
        assert_eq!(usable_units(ControllerModel::Mptsas1068).count(), 7);
        assert_eq!(usable_units(ControllerModel::Ahci).count(), 6);
    }

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("00-50-56-9A-00-01").unwrap(),
            "00:50:56:9a:00:01"
        );
        assert!(normalize_mac("00:50:56:9a:00").is_err());
        assert!(normalize_mac("00:50:56:9a:00:0g").is_err());
    }

    #[test]
    fn read_only_disks_are_attached_read_only() {
        let text = r#"{ "migrationId": "ro-1", "arch": "x86_64", "cpus": 1, "memoryMib": 512,
            "firmware": "bios", "disks": [ { "path": "a.qcow2" },
            { "path": "b.qcow2", "readOnly": true } ], "nics": [] }"#;
        let bp = Blueprint::parse(text, Path::new("/x")).unwrap();
        assert!(!bp.disks[0].read_only);
        assert!(bp.disks[1].read_only);
        // Written back only where set: older readers still parse it.
        let json = serde_json::to_value(&bp.disks[0]).unwrap();
        assert!(json.get("readOnly").is_none());
        let files = crate::emulator::MachineFiles {
            stack: PathBuf::from("/x/stack.vmdk"),
            disks: vec![
                Some(PathBuf::from("/w/disk0.qcow2")),
                Some(PathBuf::from("/w/disk1.qcow2")),
            ],
            share: PathBuf::from("/w/share"),
            qmp: PathBuf::from("/w/qmp.sock"),
            tools_iso: None,
            ovmf_vars: None,
        };
        let config = crate::emulator::vm_config(
            &bp,
            &files,
            crate::emulator::Boot::Stage1,
            Path::new("/w/s.log"),
        );
        let args: Vec<String> = config
            .qemu_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let drive = |name: &str| {
            args.iter()
                .find(|a| a.starts_with("if=none") && a.contains(name))
                .cloned()
                .unwrap_or_default()
        };
        assert!(!drive("disk0.qcow2").contains("readonly"), "{args:?}");
        assert!(
            drive("disk1.qcow2").contains("format=qcow2,readonly=on"),
            "{args:?}"
        );
    }
}
