//! The manager's three input files (PROTOCOL.md): typed values with the
//! protocol's defaults, and a validator that reports every problem at once.
//!
//! The validator walks a [`serde_json::Value`] by hand instead of deriving
//! `Deserialize`: serde's errors name neither the JSON path nor the file and
//! stop at the first problem, while the manager needs all of them, each as
//! `<file>: <path>: expected <what>, found <value>`.
//!
//! The input is hostile until proven otherwise: files are read with a hard
//! size cap, nesting is bounded before the parser recurses, duplicate keys
//! are refused, every string that reaches a message is quoted and escaped,
//! and the number of errors and warnings reported per file is capped.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::hash::Hash;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::{Map, Number, Value};

use crate::error::{FixupError, Warning, codes};

/// File name of the system configuration in `/tmp/fixup`.
pub const SYSTEM_CONFIGURATION: &str = "system-configuration.json";
/// File name of the replica disk map in `/tmp/fixup`.
pub const REPLICA_DISK_MAP: &str = "replica-disk-map.json";
/// File name of the network interface map in `/tmp/fixup`.
pub const NETWORK_INTERFACE_MAP: &str = "network-interface-map.json";
/// The largest input file accepted (1 MiB).
pub const MAX_INPUT_BYTES: u64 = 1 << 20;
/// The only `version` of the input files this stack understands.
pub const SUPPORTED_VERSION: u32 = 1;
/// The deepest nesting of arrays and objects accepted in an input file.
pub const MAX_NESTING_DEPTH: usize = 64;
/// At most this many errors (and as many warnings) are reported per file;
/// one more entry then says how many were left out.
pub const MAX_REPORTS_PER_FILE: usize = 100;

// ---------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------

macro_rules! protocol_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order PROTOCOL.md lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// The protocol's spellings, in the order of [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($text,)+];

            /// The value as the protocol spells it.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses the protocol's spelling (case-sensitive).
            pub fn from_protocol(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

protocol_enum! {
    /// A CPU architecture (`source.arch`).
    pub enum Arch {
        /// 64-bit x86.
        X86_64 = "x86_64",
        /// 32-bit x86.
        I686 = "i686",
    }
}

protocol_enum! {
    /// A firmware type (`source.firmware`, `target.firmware`).
    pub enum Firmware {
        /// Legacy BIOS.
        Bios = "bios",
        /// UEFI.
        Efi = "efi",
    }
}

protocol_enum! {
    /// The target VM's storage controller (`target.storageController`).
    pub enum StorageController {
        /// VMware paravirtual SCSI.
        Pvscsi = "pvscsi",
        /// LSI Logic parallel SCSI.
        Lsilogic = "lsilogic",
        /// LSI Logic SAS.
        LsilogicSas = "lsilogic-sas",
        /// BusLogic parallel SCSI.
        Buslogic = "buslogic",
        /// SATA (AHCI).
        Ahci = "ahci",
        /// NVMe.
        Nvme = "nvme",
    }
}

impl StorageController {
    /// The Linux kernel module that drives this controller.
    pub fn driver(&self) -> &'static str {
        match self {
            StorageController::Pvscsi => "vmw_pvscsi",
            StorageController::Lsilogic => "mptspi",
            StorageController::LsilogicSas => "mptsas",
            StorageController::Buslogic => "BusLogic",
            StorageController::Ahci => "ahci",
            StorageController::Nvme => "nvme",
        }
    }

    /// The kind of controller slot (`scsiN`, `sataN`, `nvmeN`) it occupies.
    pub fn controller_kind(&self) -> ControllerKind {
        match self {
            StorageController::Pvscsi
            | StorageController::Lsilogic
            | StorageController::LsilogicSas
            | StorageController::Buslogic => ControllerKind::Scsi,
            StorageController::Ahci => ControllerKind::Sata,
            StorageController::Nvme => ControllerKind::Nvme,
        }
    }
}

protocol_enum! {
    /// The target VM's NIC model (`target.nicModel`).
    pub enum NicModel {
        /// VMware paravirtual NIC.
        Vmxnet3 = "vmxnet3",
        /// Intel 82545EM.
        E1000 = "e1000",
        /// Intel 82574L.
        E1000e = "e1000e",
    }
}

impl NicModel {
    /// The Linux kernel module that drives this NIC.
    pub fn driver(&self) -> &'static str {
        match self {
            NicModel::Vmxnet3 => "vmxnet3",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
        }
    }
}

protocol_enum! {
    /// How fstab's device-name entries are written (`options.fstabIdentifiers`).
    #[derive(Default)]
    pub enum FstabIdentifiers {
        /// Device names become `UUID=` (the default).
        #[default]
        Uuid = "uuid",
        /// Device-name entries are left as they are.
        Keep = "keep",
    }
}

protocol_enum! {
    /// The kind of a target disk controller in the replica disk map.
    pub enum ControllerKind {
        /// A SCSI controller (PVSCSI, LSI Logic, LSI Logic SAS, BusLogic).
        Scsi = "scsi",
        /// A SATA (AHCI) controller.
        Sata = "sata",
        /// An NVMe controller.
        Nvme = "nvme",
    }
}

impl ControllerKind {
    /// The highest unit number a controller of this kind has.
    pub fn max_unit(&self) -> u32 {
        match self {
            ControllerKind::Scsi | ControllerKind::Nvme => 63,
            ControllerKind::Sata => 29,
        }
    }
}

/// A target disk controller, e.g. `scsi0` (`target.controller`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControllerRef {
    pub kind: ControllerKind,
    /// 0..=[`ControllerRef::MAX_INDEX`], in PCI order among controllers of the kind.
    pub index: u8,
}

impl ControllerRef {
    /// The highest controller index of a kind (`scsi3`, `sata3`, `nvme3`).
    pub const MAX_INDEX: u8 = 3;
    /// The SCSI target id a SCSI controller keeps for itself.
    pub const SCSI_CONTROLLER_UNIT: u32 = 7;
    /// The fixup disk's address, which no replica may take.
    pub const FIXUP_DISK: DiskAddress = DiskAddress {
        controller: ControllerRef {
            kind: ControllerKind::Scsi,
            index: 0,
        },
        unit: 15,
    };

    /// Parses `scsi0`…`scsi3`, `sata0`…`sata3`, `nvme0`…`nvme3`.
    pub fn from_protocol(text: &str) -> Option<Self> {
        ControllerKind::ALL.iter().find_map(|kind| {
            let digits = text.strip_prefix(kind.as_str())?;
            match digits.as_bytes() {
                [digit @ b'0'..=b'9'] if digit - b'0' <= Self::MAX_INDEX => Some(ControllerRef {
                    kind: *kind,
                    index: digit - b'0',
                }),
                _ => None,
            }
        })
    }

    /// Whether `unit` is an address a replica disk may take on this controller.
    pub fn accepts_unit(&self, unit: u32) -> bool {
        let address = DiskAddress {
            controller: *self,
            unit,
        };
        unit <= self.kind.max_unit()
            && !(self.kind == ControllerKind::Scsi && unit == Self::SCSI_CONTROLLER_UNIT)
            && address != Self::FIXUP_DISK
    }
}

impl fmt::Display for ControllerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind, self.index)
    }
}

impl Serialize for ControllerRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A MAC address. Parsing accepts `:` or `-` separators in any case;
/// [`Display`](fmt::Display) and serialization give lowercase with colons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether every octet is zero (no NIC can have this address).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected six hexadecimal octets separated by ':' or '-', such as 00:50:56:9a:00:01")]
pub struct ParseMacError;

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = text.as_bytes();
        if bytes.len() != 17 {
            return Err(ParseMacError);
        }
        let separator = match bytes.get(2) {
            Some(&sep @ (b':' | b'-')) => sep,
            _ => return Err(ParseMacError),
        };
        let mut octets = [0u8; 6];
        for (i, octet) in octets.iter_mut().enumerate() {
            let start = i * 3;
            let high = bytes.get(start).and_then(|b| hex_digit(*b));
            let low = bytes.get(start + 1).and_then(|b| hex_digit(*b));
            let (Some(high), Some(low)) = (high, low) else {
                return Err(ParseMacError);
            };
            *octet = high << 4 | low;
            if i < 5 && bytes.get(start + 2) != Some(&separator) {
                return Err(ParseMacError);
            }
        }
        Ok(MacAddr(octets))
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

// ---------------------------------------------------------------------------
// The typed inputs
// ---------------------------------------------------------------------------

/// The three input files, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inputs {
    pub system: SystemConfiguration,
    pub disks: ReplicaDiskMap,
    pub nics: NetworkInterfaceMap,
}

impl Inputs {
    /// The name each interface of the network map gets in the target, in
    /// list order: `targetName` or `eth<N>`, or the source name when
    /// `renameInterfaces` is false.
    pub fn effective_target_names(&self) -> Vec<String> {
        self.nics
            .effective_target_names(self.system.options.rename_interfaces)
    }
}

/// `system-configuration.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemConfiguration {
    pub version: u32,
    /// 1–128 characters of `[A-Za-z0-9._-]`, not starting with `.`.
    pub migration_id: String,
    pub source: Source,
    pub target: Target,
    pub options: Options,
}

/// `source` of the system configuration: hints about the source machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub arch: Arch,
    pub firmware: Firmware,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

/// `target` of the system configuration: the VM the guest now runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub firmware: Firmware,
    pub storage_controller: StorageController,
    pub nic_model: NicModel,
}

/// `options` of the system configuration; every field has its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    /// Rename NICs to `ethN` (default true).
    pub rename_interfaces: bool,
    /// Default [`FstabIdentifiers::Uuid`].
    pub fstab_identifiers: FstabIdentifiers,
    /// Prepare the in-guest stage 2 (default true).
    pub stage2: bool,
    /// Kernel modules added to every initramfs (default none).
    pub extra_initramfs_drivers: Vec<String>,
    /// Limit for each command run in the guest (default 900, 1..=86400).
    pub command_timeout_seconds: u64,
}

impl Options {
    /// The default `commandTimeoutSeconds`.
    pub const DEFAULT_COMMAND_TIMEOUT_SECONDS: u64 = 900;
    /// The largest `commandTimeoutSeconds` accepted (a day).
    pub const MAX_COMMAND_TIMEOUT_SECONDS: u64 = 86_400;
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rename_interfaces: true,
            fstab_identifiers: FstabIdentifiers::Uuid,
            stage2: true,
            extra_initramfs_drivers: Vec::new(),
            command_timeout_seconds: Self::DEFAULT_COMMAND_TIMEOUT_SECONDS,
        }
    }
}

/// `replica-disk-map.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaDiskMap {
    pub version: u32,
    /// Never empty.
    pub disks: Vec<ReplicaDisk>,
}

impl ReplicaDiskMap {
    /// The disk flagged `boot: true`, if any.
    pub fn boot_disk(&self) -> Option<&ReplicaDisk> {
        self.disks.iter().find(|d| d.boot)
    }
}

/// One replica disk: where it was on the source and where it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaDisk {
    /// The source's device path, starting with `/dev/`.
    pub source_device: String,
    pub target: DiskAddress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    pub boot: bool,
    pub partitions: Vec<PartitionInfo>,
}

/// The address of a replica disk in the target VM, e.g. `scsi0:0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskAddress {
    pub controller: ControllerRef,
    /// SCSI target id, SATA port, or NVMe namespace id − 1.
    pub unit: u32,
}

impl fmt::Display for DiskAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.controller, self.unit)
    }
}

/// What the manager knows about one partition of a replica disk. Empty
/// strings for the optional text fields are taken as absent; `mountPoint`
/// is normalized (no repeated `/`, no `.` components, no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionInfo {
    /// 1..=128, unique within the disk.
    pub number: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_point: Option<String>,
}

/// `network-interface-map.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceMap {
    pub version: u32,
    /// In the target VM's NIC order; may be empty.
    pub interfaces: Vec<InterfaceMapping>,
}

impl NetworkInterfaceMap {
    /// The target name of each interface, in list order: with `rename`,
    /// `targetName` or `eth<N>` (N its position in the list); without, the
    /// source name.
    pub fn effective_target_names(&self, rename: bool) -> Vec<String> {
        self.interfaces
            .iter()
            .enumerate()
            .map(|(i, nic)| nic.effective_target_name(i, rename))
            .collect()
    }
}

/// One NIC: its source name and MAC, and its MAC (and name) in the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceMapping {
    pub source_name: String,
    pub source_mac: MacAddr,
    pub target_mac: MacAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
}

impl InterfaceMapping {
    /// The name this interface gets when it is at `position` in the list.
    pub fn effective_target_name(&self, position: usize, rename: bool) -> String {
        if !rename {
            self.source_name.clone()
        } else if let Some(name) = &self.target_name {
            name.clone()
        } else {
            format!("eth{position}")
        }
    }
}

/// Every error (and the warnings) of inputs that were refused.
pub type Rejected = (Vec<FixupError>, Vec<Warning>);

/// What [`load_inputs`] gives: the inputs and their warnings, or why not.
pub type LoadResult = Result<(Inputs, Vec<Warning>), Rejected>;

/// The outcome of validating one input file: `value` is present only when
/// `errors` is empty; `warnings` (unknown fields) may come either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T> {
    pub value: Option<T>,
    pub errors: Vec<FixupError>,
    pub warnings: Vec<Warning>,
}

impl<T> Parsed<T> {
    /// The value, or the errors, each with the warnings.
    pub fn into_result(self) -> Result<(T, Vec<Warning>), Rejected> {
        match self.value {
            Some(value) if self.errors.is_empty() => Ok((value, self.warnings)),
            _ => Err((self.errors, self.warnings)),
        }
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Validates `system-configuration.json`.
pub fn parse_system_configuration(bytes: &[u8]) -> Parsed<SystemConfiguration> {
    let mut checker = Checker::new(SYSTEM_CONFIGURATION);
    let value = checker
        .parse_document(bytes)
        .and_then(|root| system_configuration(&mut checker, &root));
    checker.finish(value)
}

/// Validates `replica-disk-map.json`.
pub fn parse_replica_disk_map(bytes: &[u8]) -> Parsed<ReplicaDiskMap> {
    let mut checker = Checker::new(REPLICA_DISK_MAP);
    let value = checker
        .parse_document(bytes)
        .and_then(|root| replica_disk_map(&mut checker, &root));
    checker.finish(value)
}

/// Validates `network-interface-map.json` on its own (the checks that need
/// the system configuration are in [`check_inputs`]).
pub fn parse_network_interface_map(bytes: &[u8]) -> Parsed<NetworkInterfaceMap> {
    let mut checker = Checker::new(NETWORK_INTERFACE_MAP);
    let value = checker
        .parse_document(bytes)
        .and_then(|root| network_interface_map(&mut checker, &root));
    checker.finish(value)
}

/// Reads and validates the three input files in `dir`, then checks them
/// against each other. Every problem of every file is reported, not only
/// the first; warnings come either way.
pub fn load_inputs(dir: &Path) -> LoadResult {
    let system = read_input(dir, SYSTEM_CONFIGURATION).map(|b| parse_system_configuration(&b));
    let disks = read_input(dir, REPLICA_DISK_MAP).map(|b| parse_replica_disk_map(&b));
    let nics = read_input(dir, NETWORK_INTERFACE_MAP).map(|b| parse_network_interface_map(&b));
    combine(system, disks, nics)
}

/// [`load_inputs`] for contents already in memory (e.g. `fixupctl`).
pub fn validate_inputs(system: &[u8], disks: &[u8], nics: &[u8]) -> LoadResult {
    combine(
        Ok(parse_system_configuration(system)),
        Ok(parse_replica_disk_map(disks)),
        Ok(parse_network_interface_map(nics)),
    )
}

/// The checks between files: errors and warnings for inputs each of which
/// is valid on its own.
pub fn check_inputs(inputs: &Inputs) -> (Vec<FixupError>, Vec<Warning>) {
    cross_check(
        Some(&inputs.system),
        Some(&inputs.disks),
        Some(&inputs.nics),
    )
}

fn combine(
    system: Result<Parsed<SystemConfiguration>, FixupError>,
    disks: Result<Parsed<ReplicaDiskMap>, FixupError>,
    nics: Result<Parsed<NetworkInterfaceMap>, FixupError>,
) -> LoadResult {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let system = take_parsed(system, &mut errors, &mut warnings);
    let disks = take_parsed(disks, &mut errors, &mut warnings);
    let nics = take_parsed(nics, &mut errors, &mut warnings);

    let (cross_errors, cross_warnings) =
        cross_check(system.as_ref(), disks.as_ref(), nics.as_ref());
    errors.extend(cross_errors);
    warnings.extend(cross_warnings);

    match (system, disks, nics) {
        (Some(system), Some(disks), Some(nics)) if errors.is_empty() => Ok((
            Inputs {
                system,
                disks,
                nics,
            },
            warnings,
        )),
        _ => {
            if errors.is_empty() {
                errors.push(FixupError::new(
                    codes::INTERNAL,
                    "protocol::config: an input was rejected without an error (a bug)",
                ));
            }
            Err((errors, warnings))
        }
    }
}

fn take_parsed<T>(
    parsed: Result<Parsed<T>, FixupError>,
    errors: &mut Vec<FixupError>,
    warnings: &mut Vec<Warning>,
) -> Option<T> {
    match parsed {
        Err(error) => {
            errors.push(error);
            None
        }
        Ok(parsed) => {
            errors.extend(parsed.errors);
            warnings.extend(parsed.warnings);
            parsed.value
        }
    }
}

/// Checks between files, on whichever files are valid on their own.
fn cross_check(
    system: Option<&SystemConfiguration>,
    disks: Option<&ReplicaDiskMap>,
    nics: Option<&NetworkInterfaceMap>,
) -> (Vec<FixupError>, Vec<Warning>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut add = |(e, w): Rejected| {
        errors.extend(e);
        warnings.extend(w);
    };
    if let (Some(system), Some(nics)) = (system, nics) {
        let mut checker = Checker::new(NETWORK_INTERFACE_MAP);
        check_effective_names(&mut checker, system, nics);
        add(checker.into_reports());
    }
    if let (Some(system), Some(disks)) = (system, disks) {
        let mut checker = Checker::new(SYSTEM_CONFIGURATION);
        check_system_against_disks(&mut checker, system, disks);
        add(checker.into_reports());
    }
    (errors, warnings)
}

/// The hook for checks between the system configuration (`source.arch`,
/// firmware, controller) and the disk map. The protocol defines none yet;
/// what the stack finds on the disks is checked later, against the guest.
fn check_system_against_disks(
    _checker: &mut Checker,
    _system: &SystemConfiguration,
    _disks: &ReplicaDiskMap,
) {
}

fn check_effective_names(
    checker: &mut Checker,
    system: &SystemConfiguration,
    nics: &NetworkInterfaceMap,
) {
    let list = JPath::root().key("interfaces");
    if !system.options.rename_interfaces {
        for (i, nic) in nics.interfaces.iter().enumerate() {
            if nic.target_name.is_some() {
                checker.warn(
                    codes::CONFIG_IGNORED_FIELD,
                    &list.index(i).key("targetName"),
                    format!(
                        "ignored because {SYSTEM_CONFIGURATION}: $.options.renameInterfaces \
                         is false; the interface keeps the name {}",
                        quote(&nic.source_name)
                    ),
                );
            }
        }
        // The source names are the effective names; they are unique
        // (checked with the file).
        return;
    }
    let mut seen: HashMap<String, (JPath, bool)> = HashMap::new();
    for (i, nic) in nics.interfaces.iter().enumerate() {
        let explicit = nic.target_name.is_some();
        let name = nic.effective_target_name(i, true);
        let at = if explicit {
            list.index(i).key("targetName")
        } else {
            list.index(i)
        };
        match seen.entry(name) {
            Entry::Vacant(slot) => {
                slot.insert((at, explicit));
            }
            // Two explicit names were already reported with the file.
            Entry::Occupied(prev) if explicit && prev.get().1 => {}
            Entry::Occupied(prev) => {
                let how = if explicit {
                    "targetName"
                } else {
                    "default name (no targetName: eth<N> by list order)"
                };
                checker.invalid(
                    &at,
                    format!(
                        "duplicate target name: the {how} {} is also the name of {}",
                        quote(prev.key()),
                        prev.get().0
                    ),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the files
// ---------------------------------------------------------------------------

/// Reads `dir/name` with a hard cap: never more than
/// [`MAX_INPUT_BYTES`] + 1 bytes, never blocking on a FIFO, only regular
/// files (symbolic links are followed).
fn read_input(dir: &Path, name: &str) -> Result<Vec<u8>, FixupError> {
    let path = dir.join(name);
    let shown = path.display();
    let file = open_nonblocking(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            FixupError::new(
                codes::CONFIG_MISSING,
                format!("{name}: the file is missing; it is required before BEGIN"),
            )
            .with_detail(format!("{shown}: {e}"))
        } else {
            FixupError::new(
                codes::CONFIG_INVALID,
                format!("{name}: cannot be opened: {e}"),
            )
            .with_detail(format!("{shown}: {e}"))
        }
    })?;
    let cannot_read = |e: io::Error| {
        FixupError::new(
            codes::CONFIG_INVALID,
            format!("{name}: cannot be read: {e}"),
        )
        .with_detail(format!("{shown}: {e}"))
    };
    let meta = file.metadata().map_err(cannot_read)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(FixupError::new(
            codes::CONFIG_INVALID,
            format!(
                "{name}: expected a regular file, found {}",
                describe_file_type(&kind)
            ),
        )
        .with_detail(shown.to_string()));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(
            too_large(name, &format!("{} bytes", meta.len())).with_detail(shown.to_string())
        );
    }
    let expected = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(expected.saturating_add(1));
    (&file)
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_INPUT_BYTES {
        return Err(
            too_large(name, "more (it grew while being read)").with_detail(shown.to_string())
        );
    }
    Ok(bytes)
}

fn too_large(name: &str, size: &str) -> FixupError {
    FixupError::new(
        codes::CONFIG_TOO_LARGE,
        format!(
            "{name}: the file is too large: at most {MAX_INPUT_BYTES} bytes (1 MiB) are \
             accepted, the file has {size}"
        ),
    )
}

fn open_nonblocking(path: &Path) -> io::Result<File> {
    let mut attempts = 0;
    loop {
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path);
        match opened {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && attempts < 100 => attempts += 1,
            other => return other,
        }
    }
}

fn describe_file_type(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_char_device() {
        "a character device"
    } else {
        "something else"
    }
}

// ---------------------------------------------------------------------------
// The checker: errors and warnings of one file
// ---------------------------------------------------------------------------

/// A JSON path as shown in messages: `$.disks[1].target.unit`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JPath(String);

impl JPath {
    fn root() -> Self {
        JPath("$".to_string())
    }

    fn key(&self, key: &str) -> JPath {
        let plain = !key.is_empty()
            && key.len() <= 64
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !key.as_bytes().first().is_some_and(u8::is_ascii_digit);
        if plain {
            JPath(format!("{}.{key}", self.0))
        } else {
            JPath(format!("{}[{}]", self.0, quote(key)))
        }
    }

    fn index(&self, index: usize) -> JPath {
        JPath(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for JPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a string field is checked.
struct StrRule {
    /// What is expected, for messages.
    expected: &'static str,
    min_chars: usize,
    max_chars: usize,
    /// An empty string means the field is absent.
    empty_is_absent: bool,
    /// Further checks; the error says why the value is wrong.
    check: fn(&str) -> Result<(), String>,
}

enum VersionCheck {
    Supported(u32),
    Invalid,
    Unsupported,
}

struct Checker {
    file: &'static str,
    errors: Vec<FixupError>,
    warnings: Vec<Warning>,
    dropped_errors: usize,
    dropped_warnings: usize,
}

impl Checker {
    fn new(file: &'static str) -> Self {
        Checker {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
            dropped_errors: 0,
            dropped_warnings: 0,
        }
    }

    fn push_error(&mut self, error: FixupError) {
        if self.errors.len() < MAX_REPORTS_PER_FILE {
            self.errors.push(error);
        } else {
            self.dropped_errors += 1;
        }
    }

    fn file_error(&mut self, code: &str, what: impl fmt::Display) {
        self.push_error(FixupError::new(code, format!("{}: {what}", self.file)));
    }

    fn error(&mut self, code: &str, at: &JPath, what: impl fmt::Display) {
        self.push_error(FixupError::new(
            code,
            format!("{}: {at}: {what}", self.file),
        ));
    }

    fn invalid(&mut self, at: &JPath, what: impl fmt::Display) {
        self.error(codes::CONFIG_INVALID, at, what);
    }

    fn warn(&mut self, code: &str, at: &JPath, what: impl fmt::Display) {
        if self.warnings.len() < MAX_REPORTS_PER_FILE {
            self.warnings
                .push(Warning::new(code, format!("{}: {at}: {what}", self.file)));
        } else {
            self.dropped_warnings += 1;
        }
    }

    fn into_reports(self) -> (Vec<FixupError>, Vec<Warning>) {
        let Checker {
            file,
            mut errors,
            mut warnings,
            dropped_errors,
            dropped_warnings,
        } = self;
        if dropped_errors > 0 {
            errors.push(FixupError::new(
                codes::CONFIG_INVALID,
                format!("{file}: {dropped_errors} more errors not shown"),
            ));
        }
        if dropped_warnings > 0 {
            let code = warnings
                .last()
                .map_or(codes::CONFIG_UNKNOWN_FIELD, |w| w.code.as_str())
                .to_string();
            warnings.push(Warning::new(
                &code,
                format!("{file}: {dropped_warnings} more warnings not shown"),
            ));
        }
        (errors, warnings)
    }

    fn finish<T>(self, value: Option<T>) -> Parsed<T> {
        let file = self.file;
        let (mut errors, warnings) = self.into_reports();
        let value = if errors.is_empty() { value } else { None };
        if value.is_none() && errors.is_empty() {
            errors.push(FixupError::new(
                codes::INTERNAL,
                format!("{file}: rejected without an error (a bug in protocol::config)"),
            ));
        }
        Parsed {
            value,
            errors,
            warnings,
        }
    }

    /// Bytes to a JSON value: UTF-8, not empty, not nested too deep, valid
    /// JSON without duplicate keys. A UTF-8 byte order mark is skipped.
    fn parse_document(&mut self, bytes: &[u8]) -> Option<Value> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let (line, column) = line_column(bytes, e.valid_up_to());
                self.file_error(
                    codes::CONFIG_INVALID,
                    format!(
                        "not valid UTF-8 at line {line} column {column}; expected a JSON object"
                    ),
                );
                return None;
            }
        };
        if text
            .bytes()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.file_error(
                codes::CONFIG_INVALID,
                "the file is empty; expected a JSON object",
            );
            return None;
        }
        if let Some((line, column)) = too_deep(text, MAX_NESTING_DEPTH) {
            self.file_error(
                codes::CONFIG_INVALID,
                format!(
                    "not valid input: arrays and objects nest deeper than \
                     {MAX_NESTING_DEPTH} levels at line {line} column {column}"
                ),
            );
            return None;
        }
        match serde_json::from_str::<StrictValue>(text) {
            Ok(StrictValue(value)) => Some(value),
            Err(e) => {
                self.file_error(codes::CONFIG_INVALID, format!("not valid JSON: {e}"));
                None
            }
        }
    }

    /// An object; its fields not in `known` are reported as warnings.
    fn object<'v>(
        &mut self,
        value: &'v Value,
        at: &JPath,
        known: &[&'static str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(map) = value.as_object() else {
            self.invalid(at, format!("expected an object, found {}", describe(value)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = suggestion(key, known)
                    .map(|k| format!(" (did you mean {}?)", quote(k)))
                    .unwrap_or_default();
                self.warn(
                    codes::CONFIG_UNKNOWN_FIELD,
                    &at.key(key),
                    format!("unknown field, ignored{hint}"),
                );
            }
        }
        Some(map)
    }

    fn array<'v>(&mut self, value: &'v Value, at: &JPath, expected: &str) -> Option<&'v [Value]> {
        match value.as_array() {
            Some(items) => Some(items.as_slice()),
            None => {
                self.invalid(
                    at,
                    format!("expected {expected}, found {}", describe(value)),
                );
                None
            }
        }
    }

    /// A required field: missing is an error; `null` is checked by `check`
    /// like any other value (and rejected by it).
    fn required<'v, T>(
        &mut self,
        map: &'v Map<String, Value>,
        at: &JPath,
        key: &str,
        expected: &str,
        check: impl FnOnce(&mut Self, &'v Value, &JPath) -> Option<T>,
    ) -> Option<T> {
        let path = at.key(key);
        match map.get(key) {
            Some(value) => check(self, value, &path),
            None => {
                self.invalid(
                    &path,
                    format!("required field is missing; expected {expected}"),
                );
                None
            }
        }
    }

    /// An optional field: absent or `null` is `Some(None)`; an error `None`.
    fn optional<'v, T>(
        &mut self,
        map: &'v Map<String, Value>,
        at: &JPath,
        key: &str,
        check: impl FnOnce(&mut Self, &'v Value, &JPath) -> Option<T>,
    ) -> Option<Option<T>> {
        match map.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(value) => check(self, value, &at.key(key)).map(Some),
        }
    }

    fn integer(
        &mut self,
        value: &Value,
        at: &JPath,
        min: u64,
        max: u64,
        expected: &str,
    ) -> Option<u64> {
        match as_integer(value) {
            Some(n) if n >= i128::from(min) && n <= i128::from(max) => u64::try_from(n).ok(),
            _ => {
                self.invalid(
                    at,
                    format!("expected {expected}, found {}", describe(value)),
                );
                None
            }
        }
    }

    fn int_u32(&mut self, value: &Value, at: &JPath, min: u32, max: u32) -> Option<u32> {
        let expected = format!("an integer {min}-{max}");
        self.integer(value, at, min.into(), max.into(), &expected)
            .and_then(|n| u32::try_from(n).ok())
    }

    fn boolean(&mut self, value: &Value, at: &JPath) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.invalid(
                    at,
                    format!("expected true or false, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A string checked against `rule`; `Some(None)` for an empty string
    /// the rule takes as absent.
    fn string(&mut self, value: &Value, at: &JPath, rule: &StrRule) -> Option<Option<String>> {
        let Some(text) = value.as_str() else {
            self.invalid(
                at,
                format!("expected {}, found {}", rule.expected, describe(value)),
            );
            return None;
        };
        if text.is_empty() && rule.empty_is_absent {
            return Some(None);
        }
        let chars = text.chars().count();
        let problem = if chars < rule.min_chars {
            Some(if chars == 0 {
                "it is empty".to_string()
            } else {
                format!("it has {chars} characters")
            })
        } else if chars > rule.max_chars {
            Some(format!("it has {chars} characters"))
        } else {
            (rule.check)(text).err()
        };
        match problem {
            None => Some(Some(text.to_string())),
            Some(why) => {
                self.invalid(
                    at,
                    format!("expected {}, found {} ({why})", rule.expected, quote(text)),
                );
                None
            }
        }
    }

    fn required_string(
        &mut self,
        map: &Map<String, Value>,
        at: &JPath,
        key: &str,
        rule: &StrRule,
    ) -> Option<String> {
        self.required(map, at, key, rule.expected, |c, v, p| {
            match c.string(v, p, rule) {
                Some(Some(text)) => Some(text),
                Some(None) => {
                    c.invalid(
                        p,
                        format!("expected {}, found \"\" (it is empty)", rule.expected),
                    );
                    None
                }
                None => None,
            }
        })
    }

    fn optional_string(
        &mut self,
        map: &Map<String, Value>,
        at: &JPath,
        key: &str,
        rule: &StrRule,
    ) -> Option<Option<String>> {
        self.optional(map, at, key, |c, v, p| c.string(v, p, rule))
            .map(Option::flatten)
    }

    fn enumerated<T>(
        &mut self,
        value: &Value,
        at: &JPath,
        names: &[&str],
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        if let Some(parsed) = value.as_str().and_then(parse) {
            return Some(parsed);
        }
        let allowed = names
            .iter()
            .map(|n| quote(n))
            .collect::<Vec<_>>()
            .join(", ");
        let case_hint = match value.as_str() {
            Some(text) if names.iter().any(|n| n.eq_ignore_ascii_case(text)) => {
                " (values are case-sensitive)"
            }
            _ => "",
        };
        self.invalid(
            at,
            format!(
                "expected one of {allowed}, found {}{case_hint}",
                describe(value)
            ),
        );
        None
    }

    fn required_enum<T>(
        &mut self,
        map: &Map<String, Value>,
        at: &JPath,
        key: &str,
        names: &[&str],
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let expected = format!("one of {}", names.join(", "));
        self.required(map, at, key, &expected, |c, v, p| {
            c.enumerated(v, p, names, parse)
        })
    }

    fn mac(&mut self, value: &Value, at: &JPath) -> Option<MacAddr> {
        let parsed = value.as_str().map(MacAddr::from_str);
        match parsed {
            Some(Ok(mac)) if !mac.is_zero() => Some(mac),
            Some(Ok(_)) => {
                self.invalid(
                    at,
                    "expected a MAC address, found \"00:00:00:00:00:00\" (no NIC can have it)",
                );
                None
            }
            _ => {
                self.invalid(
                    at,
                    format!("expected {MAC_EXPECTED}, found {}", describe(value)),
                );
                None
            }
        }
    }

    /// `version`: only [`SUPPORTED_VERSION`]; another number is unsupported,
    /// anything else invalid.
    fn version(&mut self, map: &Map<String, Value>) -> VersionCheck {
        let at = JPath::root().key("version");
        let expected = format!("the integer {SUPPORTED_VERSION}");
        match map.get("version") {
            None => {
                self.invalid(
                    &at,
                    format!("required field is missing; expected {expected}"),
                );
                VersionCheck::Invalid
            }
            Some(value @ Value::Number(_)) => {
                if as_integer(value) == Some(i128::from(SUPPORTED_VERSION)) {
                    VersionCheck::Supported(SUPPORTED_VERSION)
                } else {
                    self.error(
                        codes::CONFIG_UNSUPPORTED_VERSION,
                        &at,
                        format!(
                            "version {} is not supported; this stack understands version \
                             {SUPPORTED_VERSION}",
                            describe(value)
                        ),
                    );
                    VersionCheck::Unsupported
                }
            }
            Some(other) => {
                self.invalid(
                    &at,
                    format!("expected {expected}, found {}", describe(other)),
                );
                VersionCheck::Invalid
            }
        }
    }

    /// Records `key` at `at`; a repeat is an error naming the first place.
    fn unique<K: Eq + Hash>(
        &mut self,
        seen: &mut HashMap<K, JPath>,
        key: K,
        at: &JPath,
        shown: &str,
    ) -> bool {
        match seen.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(at.clone());
                true
            }
            Entry::Occupied(prev) => {
                let prev = prev.get().clone();
                self.invalid(at, format!("duplicate: {shown} is also given at {prev}"));
                false
            }
        }
    }
}

// ---------------------------------------------------------------------------
// system-configuration.json
// ---------------------------------------------------------------------------

const MIGRATION_ID: StrRule = StrRule {
    expected: "1-128 characters of [A-Za-z0-9._-], not starting with '.'",
    min_chars: 1,
    max_chars: 128,
    empty_is_absent: false,
    check: check_migration_id,
};

const HOSTNAME_HINT: StrRule = StrRule {
    expected: "a host name of at most 255 characters without control characters",
    min_chars: 0,
    max_chars: 255,
    empty_is_absent: true,
    check: check_no_control,
};

const OS_HINT: StrRule = StrRule {
    expected: "a string of at most 64 characters without control characters",
    min_chars: 0,
    max_chars: 64,
    empty_is_absent: true,
    check: check_no_control,
};

const MODULE_NAME: StrRule = StrRule {
    expected: "a kernel module name: 1-64 characters of [A-Za-z0-9_-]",
    min_chars: 1,
    max_chars: 64,
    empty_is_absent: false,
    check: check_module_name,
};

fn system_configuration(c: &mut Checker, root: &Value) -> Option<SystemConfiguration> {
    let at = JPath::root();
    let map = c.object(
        root,
        &at,
        &["version", "migrationId", "source", "target", "options"],
    )?;
    let version = match c.version(map) {
        VersionCheck::Supported(v) => Some(v),
        VersionCheck::Invalid => None,
        // Another version may mean another schema: its other fields say
        // nothing useful.
        VersionCheck::Unsupported => return None,
    };
    let migration_id = c.required_string(map, &at, "migrationId", &MIGRATION_ID);
    let source = c.required(
        map,
        &at,
        "source",
        "an object with arch and firmware",
        source,
    );
    let target = c.required(
        map,
        &at,
        "target",
        "an object with firmware, storageController and nicModel",
        target,
    );
    let options = c
        .optional(map, &at, "options", options)
        .map(Option::unwrap_or_default);
    Some(SystemConfiguration {
        version: version?,
        migration_id: migration_id?,
        source: source?,
        target: target?,
        options: options?,
    })
}

fn source(c: &mut Checker, value: &Value, at: &JPath) -> Option<Source> {
    let map = c.object(
        value,
        at,
        &["hostname", "arch", "firmware", "osFamily", "osVersion"],
    )?;
    let hostname = c.optional_string(map, at, "hostname", &HOSTNAME_HINT);
    let arch = c.required_enum(map, at, "arch", Arch::NAMES, Arch::from_protocol);
    let firmware = c.required_enum(
        map,
        at,
        "firmware",
        Firmware::NAMES,
        Firmware::from_protocol,
    );
    let os_family = c.optional_string(map, at, "osFamily", &OS_HINT);
    let os_version = c.optional_string(map, at, "osVersion", &OS_HINT);
    Some(Source {
        hostname: hostname?,
        arch: arch?,
        firmware: firmware?,
        os_family: os_family?,
        os_version: os_version?,
    })
}

fn target(c: &mut Checker, value: &Value, at: &JPath) -> Option<Target> {
    let map = c.object(value, at, &["firmware", "storageController", "nicModel"])?;
    let firmware = c.required_enum(
        map,
        at,
        "firmware",
        Firmware::NAMES,
        Firmware::from_protocol,
    );
    let storage_controller = c.required_enum(
        map,
        at,
        "storageController",
        StorageController::NAMES,
        StorageController::from_protocol,
    );
    let nic_model = c.required_enum(
        map,
        at,
        "nicModel",
        NicModel::NAMES,
        NicModel::from_protocol,
    );
    Some(Target {
        firmware: firmware?,
        storage_controller: storage_controller?,
        nic_model: nic_model?,
    })
}

fn options(c: &mut Checker, value: &Value, at: &JPath) -> Option<Options> {
    let map = c.object(
        value,
        at,
        &[
            "renameInterfaces",
            "fstabIdentifiers",
            "stage2",
            "extraInitramfsDrivers",
            "commandTimeoutSeconds",
        ],
    )?;
    let defaults = Options::default();
    let rename_interfaces = c.optional(map, at, "renameInterfaces", Checker::boolean);
    let fstab_identifiers = c.optional(map, at, "fstabIdentifiers", |c, v, p| {
        c.enumerated(
            v,
            p,
            FstabIdentifiers::NAMES,
            FstabIdentifiers::from_protocol,
        )
    });
    let stage2 = c.optional(map, at, "stage2", Checker::boolean);
    let drivers = c.optional(map, at, "extraInitramfsDrivers", |c, v, p| {
        let items = c.array(v, p, "an array of kernel module names")?;
        let mut names = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match c.string(item, &p.index(i), &MODULE_NAME) {
                Some(Some(name)) => names.push(name),
                _ => ok = false,
            }
        }
        ok.then_some(names)
    });
    let timeout = c.optional(map, at, "commandTimeoutSeconds", |c, v, p| {
        let expected = format!(
            "an integer 1-{} (seconds)",
            Options::MAX_COMMAND_TIMEOUT_SECONDS
        );
        c.integer(v, p, 1, Options::MAX_COMMAND_TIMEOUT_SECONDS, &expected)
    });
    Some(Options {
        rename_interfaces: rename_interfaces?.unwrap_or(defaults.rename_interfaces),
        fstab_identifiers: fstab_identifiers?.unwrap_or(defaults.fstab_identifiers),
        stage2: stage2?.unwrap_or(defaults.stage2),
        extra_initramfs_drivers: drivers?.unwrap_or(defaults.extra_initramfs_drivers),
        command_timeout_seconds: timeout?.unwrap_or(defaults.command_timeout_seconds),
    })
}

// ---------------------------------------------------------------------------
// replica-disk-map.json
// ---------------------------------------------------------------------------

const DEVICE: StrRule = StrRule {
    expected: "a device path starting with /dev/ (at most 255 characters)",
    min_chars: 6,
    max_chars: 255,
    empty_is_absent: false,
    check: check_device,
};

const MOUNT_POINT: StrRule = StrRule {
    expected: "an absolute path without '..' components",
    min_chars: 1,
    max_chars: 4096,
    empty_is_absent: false,
    check: check_mount_point,
};

const UUID: StrRule = StrRule {
    expected: "an identifier of at most 255 characters without control characters",
    min_chars: 0,
    max_chars: 255,
    empty_is_absent: true,
    check: check_no_control,
};

const LABEL: StrRule = StrRule {
    expected: "a label of at most 255 characters without NUL or line breaks",
    min_chars: 0,
    max_chars: 255,
    empty_is_absent: true,
    check: check_no_nul_newline,
};

const FS_TYPE: StrRule = StrRule {
    expected: "a file system type: at most 64 characters of [A-Za-z0-9_.-]",
    min_chars: 0,
    max_chars: 64,
    empty_is_absent: true,
    check: check_fs_type,
};

const CONTROLLER_EXPECTED: &str =
    "one of \"scsi0\"-\"scsi3\", \"sata0\"-\"sata3\", \"nvme0\"-\"nvme3\"";

/// What has been seen so far across the whole disk map.
#[derive(Default)]
struct DiskMapSeen {
    addresses: HashMap<DiskAddress, JPath>,
    devices: HashMap<String, JPath>,
    mount_points: HashMap<String, JPath>,
    boot: Option<JPath>,
}

fn replica_disk_map(c: &mut Checker, root: &Value) -> Option<ReplicaDiskMap> {
    let at = JPath::root();
    let map = c.object(root, &at, &["version", "disks"])?;
    let version = match c.version(map) {
        VersionCheck::Supported(v) => Some(v),
        VersionCheck::Invalid => None,
        VersionCheck::Unsupported => return None,
    };
    let expected = "a non-empty array of disks";
    let disks = c.required(map, &at, "disks", expected, |c, v, p| {
        let items = c.array(v, p, expected)?;
        if items.is_empty() {
            c.invalid(p, format!("expected {expected}, found an empty array"));
            return None;
        }
        let mut seen = DiskMapSeen::default();
        let mut disks = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match disk(c, item, &p.index(i), &mut seen) {
                Some(d) => disks.push(d),
                None => ok = false,
            }
        }
        ok.then_some(disks)
    });
    Some(ReplicaDiskMap {
        version: version?,
        disks: disks?,
    })
}

fn disk(c: &mut Checker, value: &Value, at: &JPath, seen: &mut DiskMapSeen) -> Option<ReplicaDisk> {
    let map = c.object(
        value,
        at,
        &[
            "sourceDevice",
            "target",
            "capacityBytes",
            "boot",
            "partitions",
        ],
    )?;
    let source_device = c.required_string(map, at, "sourceDevice", &DEVICE);
    if let Some(device) = &source_device {
        c.unique(
            &mut seen.devices,
            device.clone(),
            &at.key("sourceDevice"),
            &quote(device),
        );
    }
    let target = c.required(
        map,
        at,
        "target",
        "an object like {\"controller\": \"scsi0\", \"unit\": 0}",
        disk_address,
    );
    if let Some(address) = target {
        let shown = format!("the address {address}");
        c.unique(&mut seen.addresses, address, &at.key("target"), &shown);
    }
    let capacity_bytes = c.optional(map, at, "capacityBytes", |c, v, p| {
        c.integer(v, p, 1, u64::MAX, "a positive integer (bytes)")
    });
    let boot = c.optional(map, at, "boot", Checker::boolean);
    if let Some(Some(true)) = boot {
        let here = at.key("boot");
        match &seen.boot {
            Some(prev) => {
                let prev = prev.clone();
                c.invalid(
                    &here,
                    format!("only one disk can have boot: true; {prev} has it too"),
                );
            }
            None => seen.boot = Some(here),
        }
    }
    let partitions = c.optional(map, at, "partitions", |c, v, p| {
        let items = c.array(v, p, "an array of partitions")?;
        let mut numbers = HashMap::new();
        let mut partitions = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match partition(c, item, &p.index(i), &mut numbers, seen) {
                Some(part) => partitions.push(part),
                None => ok = false,
            }
        }
        ok.then_some(partitions)
    });
    Some(ReplicaDisk {
        source_device: source_device?,
        target: target?,
        capacity_bytes: capacity_bytes?,
        boot: boot?.unwrap_or(false),
        partitions: partitions?.unwrap_or_default(),
    })
}

fn disk_address(c: &mut Checker, value: &Value, at: &JPath) -> Option<DiskAddress> {
    let map = c.object(value, at, &["controller", "unit"])?;
    let controller = c.required(map, at, "controller", CONTROLLER_EXPECTED, |c, v, p| {
        let parsed = v.as_str().and_then(ControllerRef::from_protocol);
        if parsed.is_none() {
            c.invalid(
                p,
                format!("expected {CONTROLLER_EXPECTED}, found {}", describe(v)),
            );
        }
        parsed
    });
    let max = controller.map_or(63, |ctrl| ctrl.kind.max_unit());
    let unit_expected = format!("an integer 0-{max}");
    let unit = c.required(map, at, "unit", &unit_expected, |c, v, p| {
        let unit = c.int_u32(v, p, 0, max)?;
        let Some(ctrl) = controller else {
            return Some(unit);
        };
        let address = DiskAddress {
            controller: ctrl,
            unit,
        };
        if address == ControllerRef::FIXUP_DISK {
            c.invalid(
                p,
                format!("{address} is the fixup disk's address; expected another unit of {ctrl}"),
            );
            None
        } else if ctrl.kind == ControllerKind::Scsi && unit == ControllerRef::SCSI_CONTROLLER_UNIT {
            c.invalid(
                p,
                format!(
                    "unit 7 is the SCSI controller's own id; expected an integer 0-{max} other \
                     than 7"
                ),
            );
            None
        } else {
            Some(unit)
        }
    });
    Some(DiskAddress {
        controller: controller?,
        unit: unit?,
    })
}

fn partition(
    c: &mut Checker,
    value: &Value,
    at: &JPath,
    numbers: &mut HashMap<u32, JPath>,
    seen: &mut DiskMapSeen,
) -> Option<PartitionInfo> {
    let map = c.object(
        value,
        at,
        &[
            "number",
            "sourceDevice",
            "fsType",
            "sourceUuid",
            "targetUuid",
            "label",
            "mountPoint",
        ],
    )?;
    let number = c.required(map, at, "number", "an integer 1-128", |c, v, p| {
        c.int_u32(v, p, 1, 128)
    });
    if let Some(n) = number {
        c.unique(
            numbers,
            n,
            &at.key("number"),
            &format!("partition number {n}"),
        );
    }
    let source_device = c.optional_string(map, at, "sourceDevice", &DEVICE);
    if let Some(Some(device)) = &source_device {
        c.unique(
            &mut seen.devices,
            device.clone(),
            &at.key("sourceDevice"),
            &quote(device),
        );
    }
    let fs_type = c.optional_string(map, at, "fsType", &FS_TYPE);
    let source_uuid = c.optional_string(map, at, "sourceUuid", &UUID);
    let target_uuid = c.optional_string(map, at, "targetUuid", &UUID);
    let label = c.optional_string(map, at, "label", &LABEL);
    let mount_point = c
        .optional_string(map, at, "mountPoint", &MOUNT_POINT)
        .map(|m| m.map(|m| normalize_mount_point(&m)));
    if let Some(Some(mount)) = &mount_point {
        let shown = format!("mount point {}", quote(mount));
        c.unique(
            &mut seen.mount_points,
            mount.clone(),
            &at.key("mountPoint"),
            &shown,
        );
    }
    Some(PartitionInfo {
        number: number?,
        source_device: source_device?,
        fs_type: fs_type?,
        source_uuid: source_uuid?,
        target_uuid: target_uuid?,
        label: label?,
        mount_point: mount_point?,
    })
}

// ---------------------------------------------------------------------------
// network-interface-map.json
// ---------------------------------------------------------------------------

const IFNAME: StrRule = StrRule {
    expected: "an interface name: 1-15 characters of [A-Za-z0-9_.-], not \".\" or \"..\"",
    min_chars: 1,
    max_chars: 15,
    empty_is_absent: false,
    check: check_ifname,
};

const TARGET_IFNAME: StrRule = StrRule {
    expected: "an interface name: 1-15 characters of [A-Za-z0-9_.-], not \".\", \"..\" or \"lo\"",
    min_chars: 1,
    max_chars: 15,
    empty_is_absent: false,
    check: check_target_ifname,
};

const MAC_EXPECTED: &str = "a MAC address of six hexadecimal octets separated by ':' or '-' \
                            (such as 00:50:56:9a:00:01)";

#[derive(Default)]
struct NicMapSeen {
    source_names: HashMap<String, JPath>,
    target_names: HashMap<String, JPath>,
    source_macs: HashMap<MacAddr, JPath>,
    target_macs: HashMap<MacAddr, JPath>,
}

fn network_interface_map(c: &mut Checker, root: &Value) -> Option<NetworkInterfaceMap> {
    let at = JPath::root();
    let map = c.object(root, &at, &["version", "interfaces"])?;
    let version = match c.version(map) {
        VersionCheck::Supported(v) => Some(v),
        VersionCheck::Invalid => None,
        VersionCheck::Unsupported => return None,
    };
    let expected = "an array of interface mappings (may be empty)";
    let interfaces = c.required(map, &at, "interfaces", expected, |c, v, p| {
        let items = c.array(v, p, expected)?;
        let mut seen = NicMapSeen::default();
        let mut interfaces = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match interface(c, item, &p.index(i), &mut seen) {
                Some(nic) => interfaces.push(nic),
                None => ok = false,
            }
        }
        ok.then_some(interfaces)
    });
    Some(NetworkInterfaceMap {
        version: version?,
        interfaces: interfaces?,
    })
}

fn interface(
    c: &mut Checker,
    value: &Value,
    at: &JPath,
    seen: &mut NicMapSeen,
) -> Option<InterfaceMapping> {
    let map = c.object(
        value,
        at,
        &["sourceName", "sourceMac", "targetMac", "targetName"],
    )?;
    let source_name = c.required_string(map, at, "sourceName", &IFNAME);
    if let Some(name) = &source_name {
        c.unique(
            &mut seen.source_names,
            name.clone(),
            &at.key("sourceName"),
            &quote(name),
        );
    }
    let source_mac = c.required(map, at, "sourceMac", MAC_EXPECTED, Checker::mac);
    if let Some(mac) = source_mac {
        c.unique(
            &mut seen.source_macs,
            mac,
            &at.key("sourceMac"),
            &mac.to_string(),
        );
    }
    let target_mac = c.required(map, at, "targetMac", MAC_EXPECTED, Checker::mac);
    if let Some(mac) = target_mac {
        c.unique(
            &mut seen.target_macs,
            mac,
            &at.key("targetMac"),
            &mac.to_string(),
        );
    }
    let target_name = c.optional_string(map, at, "targetName", &TARGET_IFNAME);
    if let Some(Some(name)) = &target_name {
        c.unique(
            &mut seen.target_names,
            name.clone(),
            &at.key("targetName"),
            &quote(name),
        );
    }
    Some(InterfaceMapping {
        source_name: source_name?,
        source_mac: source_mac?,
        target_mac: target_mac?,
        target_name: target_name?,
    })
}

// ---------------------------------------------------------------------------
// String checks
// ---------------------------------------------------------------------------

fn first_bad_char(text: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    match text.chars().find(|ch| !allowed(*ch)) {
        None => Ok(()),
        Some(ch) => Err(format!("{} is not allowed", describe_char(ch))),
    }
}

fn check_migration_id(text: &str) -> Result<(), String> {
    first_bad_char(text, |ch| {
        ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')
    })?;
    if text.starts_with('.') {
        return Err("it starts with '.'".to_string());
    }
    Ok(())
}

fn check_no_control(text: &str) -> Result<(), String> {
    first_bad_char(text, |ch| !ch.is_control())
}

fn check_no_nul_newline(text: &str) -> Result<(), String> {
    first_bad_char(text, |ch| !matches!(ch, '\0' | '\n' | '\r'))
}

fn check_module_name(text: &str) -> Result<(), String> {
    first_bad_char(text, |ch| {
        ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-')
    })
    .map_err(|why| {
        if text.contains('/') || text.contains('.') {
            format!("{why}: a module name, not a file name or path")
        } else {
            why
        }
    })
}

fn check_fs_type(text: &str) -> Result<(), String> {
    first_bad_char(text, |ch| {
        ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-')
    })
}

fn check_device(text: &str) -> Result<(), String> {
    if !text.starts_with("/dev/") {
        return Err("it does not start with /dev/".to_string());
    }
    check_no_nul_newline(text)?;
    check_no_dot_dot(text)
}

fn check_mount_point(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err("it is not an absolute path".to_string());
    }
    check_no_nul_newline(text)?;
    check_no_dot_dot(text)
}

fn check_no_dot_dot(text: &str) -> Result<(), String> {
    if text.split('/').any(|part| part == "..") {
        Err("it has a '..' component".to_string())
    } else {
        Ok(())
    }
}

fn check_ifname(text: &str) -> Result<(), String> {
    first_bad_char(text, |ch| {
        ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-')
    })?;
    if text == "." || text == ".." {
        return Err("the kernel refuses this name".to_string());
    }
    Ok(())
}

fn check_target_ifname(text: &str) -> Result<(), String> {
    check_ifname(text)?;
    if text == "lo" {
        return Err("it is the loopback interface's name".to_string());
    }
    Ok(())
}

/// `/a//b/./c/` → `/a/b/c`; `/` stays `/`.
fn normalize_mount_point(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A JSON integer, also from a float with no fraction that a double holds
/// exactly (some writers emit `900.0`).
fn as_integer(value: &Value) -> Option<i128> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(n) = number.as_u64() {
        return Some(n.into());
    }
    if let Some(n) = number.as_i64() {
        return Some(n.into());
    }
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let f = number.as_f64()?;
    if f.fract() == 0.0 && f.abs() <= EXACT {
        // Exact: an integral value within ±2^53.
        Some(f as i128)
    } else {
        None
    }
}

/// A value as shown after "found": strings quoted, containers by kind.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Array(items) if items.is_empty() => "an empty array".to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// `text` in double quotes, safe for a console and a log: quotes and
/// backslashes escaped, anything but printable ASCII as `\u{..}`, cut after
/// 64 characters.
fn quote(text: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::with_capacity(text.len().min(MAX * 2) + 2);
    out.push('"');
    for (i, ch) in text.chars().enumerate() {
        if i == MAX {
            out.push_str("...");
            break;
        }
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(ch),
            other => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(other));
            }
        }
    }
    out.push('"');
    out
}

fn describe_char(ch: char) -> String {
    match ch {
        '!'..='~' if ch != '\'' => format!("'{ch}'"),
        _ => format!("U+{:04X}", u32::from(ch)),
    }
}

/// A known field that `key` probably meant (differs in case, `_` or `-`).
fn suggestion(key: &str, known: &[&'static str]) -> Option<&'static str> {
    if key.len() > 64 {
        return None;
    }
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|ch| !matches!(ch, '_' | '-'))
            .map(|ch| ch.to_ascii_lowercase())
            .collect()
    };
    let wanted = squash(key);
    known.iter().copied().find(|k| squash(k) == wanted)
}

/// 1-based line and byte column of `offset` in `bytes`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = bytes.get(..offset).unwrap_or(bytes);
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    (line, before.len() - line_start + 1)
}

/// Where arrays and objects first nest deeper than `max` (line, column), by
/// a scan that does not recurse; brackets inside strings do not count.
fn too_deep(text: &str, max: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut line = 1usize;
    let mut line_start = 0usize;
    for (i, byte) in text.bytes().enumerate() {
        if byte == b'\n' {
            line += 1;
            line_start = i + 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some((line, i - line_start + 1));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// A JSON value whose objects have no duplicate keys (serde_json keeps the
/// last of duplicates silently; here they are an error).
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(deserializer).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {}",
                    quote(&key)
                )));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SYSTEM: &str = include_str!("../../tests/data/protocol/valid/system-configuration.json");
    const DISKS: &str = include_str!("../../tests/data/protocol/valid/replica-disk-map.json");
    const NICS: &str = include_str!("../../tests/data/protocol/valid/network-interface-map.json");

    fn base(file: &str) -> Value {
        let text = match file {
            SYSTEM_CONFIGURATION => SYSTEM,
            REPLICA_DISK_MAP => DISKS,
            NETWORK_INTERFACE_MAP => NICS,
            other => panic!("no such file {other}"),
        };
        serde_json::from_str(text).expect("test data is JSON")
    }

    /// Parses `bytes` as `file`: whether a value came out, errors, warnings.
    fn parse(file: &str, bytes: &[u8]) -> (bool, Vec<FixupError>, Vec<Warning>) {
        match file {
            SYSTEM_CONFIGURATION => {
                let p = parse_system_configuration(bytes);
                (p.value.is_some(), p.errors, p.warnings)
            }
            REPLICA_DISK_MAP => {
                let p = parse_replica_disk_map(bytes);
                (p.value.is_some(), p.errors, p.warnings)
            }
            NETWORK_INTERFACE_MAP => {
                let p = parse_network_interface_map(bytes);
                (p.value.is_some(), p.errors, p.warnings)
            }
            other => panic!("no such file {other}"),
        }
    }

    enum Edit {
        Set(&'static str, Value),
        Remove(&'static str),
    }

    fn set(pointer: &'static str, value: Value) -> Edit {
        Edit::Set(pointer, value)
    }

    fn del(pointer: &'static str) -> Edit {
        Edit::Remove(pointer)
    }

    fn apply(doc: &mut Value, edit: &Edit) {
        let (pointer, new) = match edit {
            Edit::Set(p, v) => (*p, Some(v.clone())),
            Edit::Remove(p) => (*p, None),
        };
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
        let parent = doc.pointer_mut(parent).expect("parent exists");
        match parent {
            Value::Object(map) => {
                match new {
                    Some(v) => map.insert(key.to_string(), v),
                    None => map.remove(key),
                };
            }
            Value::Array(items) => match (key, new) {
                ("-", Some(v)) => items.push(v),
                (index, Some(v)) => items[index.parse::<usize>().expect("index")] = v,
                (index, None) => {
                    items.remove(index.parse::<usize>().expect("index"));
                }
            },
            _ => panic!("cannot edit {pointer}"),
        }
    }

    fn edited(file: &str, edits: &[Edit]) -> Vec<u8> {
        let mut doc = base(file);
        for edit in edits {
            apply(&mut doc, edit);
        }
        serde_json::to_vec_pretty(&doc).expect("serializable")
    }

    struct Case {
        name: &'static str,
        file: &'static str,
        edits: Vec<Edit>,
        code: &'static str,
        expect: &'static [&'static str],
    }

    fn case(
        name: &'static str,
        file: &'static str,
        edits: Vec<Edit>,
        code: &'static str,
        expect: &'static [&'static str],
    ) -> Case {
        Case {
            name,
            file,
            edits,
            code,
            expect,
        }
    }

    fn run_bad_cases(cases: Vec<Case>) {
        let mut failures = Vec::new();
        for c in &cases {
            let bytes = edited(c.file, &c.edits);
            let (ok, errors, _) = parse(c.file, &bytes);
            let hit = errors.iter().any(|e| {
                e.code == c.code
                    && e.message.starts_with(&format!("{}: ", c.file))
                    && c.expect.iter().all(|frag| e.message.contains(frag))
            });
            if ok || !hit {
                failures.push(format!("{}: ok={ok} errors={errors:#?}", c.name));
            }
        }
        assert!(
            failures.is_empty(),
            "failing cases:\n{}",
            failures.join("\n")
        );
    }

    fn run_good_cases(file: &'static str, cases: Vec<(&'static str, Vec<Edit>)>) {
        let mut failures = Vec::new();
        for (name, edits) in &cases {
            let bytes = edited(file, edits);
            let (ok, errors, warnings) = parse(file, &bytes);
            if !ok || !errors.is_empty() || !warnings.is_empty() {
                failures.push(format!("{name}: errors={errors:#?} warnings={warnings:#?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "failing cases:\n{}",
            failures.join("\n")
        );
    }

    const INVALID: &str = codes::CONFIG_INVALID;
    const UNSUPPORTED: &str = codes::CONFIG_UNSUPPORTED_VERSION;
    const SYS: &str = SYSTEM_CONFIGURATION;
    const RDM: &str = REPLICA_DISK_MAP;
    const NIM: &str = NETWORK_INTERFACE_MAP;

    fn expected_system() -> SystemConfiguration {
        SystemConfiguration {
            version: 1,
            migration_id: "mig-7f3a".into(),
            source: Source {
                hostname: Some("web01".into()),
                arch: Arch::X86_64,
                firmware: Firmware::Bios,
                os_family: Some("rhel".into()),
                os_version: Some("7.9".into()),
            },
            target: Target {
                firmware: Firmware::Bios,
                storage_controller: StorageController::Pvscsi,
                nic_model: NicModel::Vmxnet3,
            },
            options: Options {
                rename_interfaces: true,
                fstab_identifiers: FstabIdentifiers::Uuid,
                stage2: true,
                extra_initramfs_drivers: vec![],
                command_timeout_seconds: 900,
            },
        }
    }

    fn scsi0(unit: u32) -> DiskAddress {
        DiskAddress {
            controller: ControllerRef {
                kind: ControllerKind::Scsi,
                index: 0,
            },
            unit,
        }
    }

    fn expected_disks() -> ReplicaDiskMap {
        ReplicaDiskMap {
            version: 1,
            disks: vec![
                ReplicaDisk {
                    source_device: "/dev/sda".into(),
                    target: scsi0(0),
                    capacity_bytes: Some(21_474_836_480),
                    boot: true,
                    partitions: vec![
                        PartitionInfo {
                            number: 1,
                            source_device: Some("/dev/sda1".into()),
                            fs_type: Some("xfs".into()),
                            source_uuid: Some("0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f".into()),
                            target_uuid: None,
                            label: Some("boot".into()),
                            mount_point: Some("/boot".into()),
                        },
                        PartitionInfo {
                            number: 2,
                            source_device: Some("/dev/sda2".into()),
                            fs_type: Some("LVM2_member".into()),
                            source_uuid: Some("Xq3LcL-bD2u-7hGk-Qm1P-vR8s-Tn4w-Yz9AeF".into()),
                            target_uuid: None,
                            label: None,
                            mount_point: None,
                        },
                    ],
                },
                ReplicaDisk {
                    source_device: "/dev/sdb".into(),
                    target: scsi0(1),
                    capacity_bytes: Some(53_687_091_200),
                    boot: false,
                    partitions: vec![PartitionInfo {
                        number: 1,
                        source_device: Some("/dev/sdb1".into()),
                        fs_type: Some("xfs".into()),
                        source_uuid: Some("5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40".into()),
                        target_uuid: Some("5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40".into()),
                        label: Some("data".into()),
                        mount_point: Some("/data".into()),
                    }],
                },
            ],
        }
    }

    fn expected_nics() -> NetworkInterfaceMap {
        NetworkInterfaceMap {
            version: 1,
            interfaces: vec![
                InterfaceMapping {
                    source_name: "ens192".into(),
                    source_mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
                    target_mac: MacAddr([0x00, 0x50, 0x56, 0x9a, 0x00, 0x01]),
                    target_name: Some("eth0".into()),
                },
                InterfaceMapping {
                    source_name: "ens224".into(),
                    source_mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x57]),
                    target_mac: MacAddr([0x00, 0x50, 0x56, 0x9a, 0x00, 0x02]),
                    target_name: None,
                },
            ],
        }
    }

    // --- valid examples --------------------------------------------------

    #[test]
    fn valid_examples_parse_to_the_expected_values() {
        let system = parse_system_configuration(SYSTEM.as_bytes());
        assert_eq!(system.errors, vec![]);
        assert_eq!(system.warnings, vec![]);
        assert_eq!(system.value, Some(expected_system()));

        let disks = parse_replica_disk_map(DISKS.as_bytes());
        assert_eq!(disks.errors, vec![]);
        assert_eq!(disks.warnings, vec![]);
        assert_eq!(disks.value, Some(expected_disks()));

        let nics = parse_network_interface_map(NICS.as_bytes());
        assert_eq!(nics.errors, vec![]);
        assert_eq!(nics.warnings, vec![]);
        assert_eq!(nics.value, Some(expected_nics()));
    }

    #[test]
    fn values_serialize_back_to_equivalent_json() {
        let inputs = Inputs {
            system: expected_system(),
            disks: expected_disks(),
            nics: expected_nics(),
        };
        let system = serde_json::to_vec(&inputs.system).expect("serializes");
        assert_eq!(
            parse_system_configuration(&system).value,
            Some(inputs.system.clone())
        );
        let disks = serde_json::to_vec(&inputs.disks).expect("serializes");
        assert_eq!(
            parse_replica_disk_map(&disks).value,
            Some(inputs.disks.clone())
        );
        let nics = serde_json::to_vec(&inputs.nics).expect("serializes");
        let parsed = parse_network_interface_map(&nics);
        assert_eq!(parsed.warnings, vec![]);
        assert_eq!(parsed.value, Some(inputs.nics.clone()));

        let echoed = serde_json::to_value(&inputs).expect("serializes");
        assert_eq!(echoed["system"]["migrationId"], json!("mig-7f3a"));
        assert_eq!(
            echoed["system"]["target"]["storageController"],
            json!("pvscsi")
        );
        assert_eq!(
            echoed["system"]["options"]["fstabIdentifiers"],
            json!("uuid")
        );
        assert_eq!(
            echoed["system"]["options"]["commandTimeoutSeconds"],
            json!(900)
        );
        assert_eq!(
            echoed["disks"]["disks"][0]["target"],
            json!({"controller": "scsi0", "unit": 0})
        );
        assert_eq!(
            echoed["disks"]["disks"][0]["partitions"][1].get("label"),
            None
        );
        assert_eq!(
            echoed["nics"]["interfaces"][0]["targetMac"],
            json!("00:50:56:9a:00:01")
        );
    }

    #[test]
    fn options_take_their_defaults() {
        let defaults = Options::default();
        assert!(defaults.rename_interfaces);
        assert!(defaults.stage2);
        assert_eq!(defaults.fstab_identifiers, FstabIdentifiers::Uuid);
        assert_eq!(defaults.command_timeout_seconds, 900);
        assert!(defaults.extra_initramfs_drivers.is_empty());

        for edits in [
            vec![del("/options")],
            vec![set("/options", json!(null))],
            vec![set("/options", json!({}))],
            vec![set(
                "/options",
                json!({"renameInterfaces": null, "fstabIdentifiers": null, "stage2": null,
                       "extraInitramfsDrivers": null, "commandTimeoutSeconds": null}),
            )],
        ] {
            let parsed = parse_system_configuration(&edited(SYS, &edits));
            assert_eq!(parsed.errors, vec![]);
            assert_eq!(parsed.value.expect("valid").options, defaults);
        }

        let parsed = parse_system_configuration(&edited(
            SYS,
            &[set(
                "/options",
                json!({"renameInterfaces": false, "fstabIdentifiers": "keep", "stage2": false,
                       "extraInitramfsDrivers": ["vmw_pvscsi", "mpt3sas", "hv-vmbus"],
                       "commandTimeoutSeconds": 86400}),
            )],
        ));
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(
            parsed.value.expect("valid").options,
            Options {
                rename_interfaces: false,
                fstab_identifiers: FstabIdentifiers::Keep,
                stage2: false,
                extra_initramfs_drivers: vec![
                    "vmw_pvscsi".into(),
                    "mpt3sas".into(),
                    "hv-vmbus".into()
                ],
                command_timeout_seconds: 86_400,
            }
        );
    }

    #[test]
    fn optional_fields_accept_null_and_empty() {
        let parsed = parse_system_configuration(&edited(
            SYS,
            &[
                set("/source/hostname", json!(null)),
                set("/source/osFamily", json!("")),
                del("/source/osVersion"),
            ],
        ));
        let source = parsed.value.expect("valid").source;
        assert_eq!(
            (source.hostname, source.os_family, source.os_version),
            (None, None, None)
        );

        let parsed = parse_replica_disk_map(&edited(
            RDM,
            &[
                set("/disks/0/partitions/0/label", json!("")),
                set("/disks/0/partitions/0/fsType", json!(null)),
                set("/disks/0/capacityBytes", json!(null)),
                set("/disks/0/boot", json!(null)),
                del("/disks/1/partitions"),
                set("/disks/0/partitions/1/mountPoint", json!("//srv/./www/")),
            ],
        ));
        let disks = parsed.value.expect("valid").disks;
        assert_eq!(disks[0].partitions[0].label, None);
        assert_eq!(disks[0].partitions[0].fs_type, None);
        assert_eq!(disks[0].capacity_bytes, None);
        assert!(!disks[0].boot);
        assert!(disks[1].partitions.is_empty());
        assert_eq!(
            disks[0].partitions[1].mount_point.as_deref(),
            Some("/srv/www")
        );
    }

    #[rustfmt::skip]
    #[test]
    fn good_variants_are_accepted() {
        run_good_cases(
            SYS,
            vec![
                ("version 1.0", vec![set("/version", json!(1.0))]),
                ("i686 efi", vec![set("/source/arch", json!("i686")), set("/source/firmware", json!("efi"))]),
                ("every controller", vec![set("/target/storageController", json!("lsilogic-sas"))]),
                ("e1000e", vec![set("/target/nicModel", json!("e1000e"))]),
                ("migrationId chars", vec![set("/migrationId", json!("Mig_1.2-3"))]),
                ("migrationId 128", vec![set("/migrationId", json!("a".repeat(128)))]),
                ("timeout 1", vec![set("/options/commandTimeoutSeconds", json!(1))]),
                ("timeout 900.0", vec![set("/options/commandTimeoutSeconds", json!(900.0))]),
                ("brackets in a string", vec![set("/source/hostname", json!("[".repeat(200)))]),
            ],
        );
        run_good_cases(
            RDM,
            vec![
                ("scsi1:15", vec![set("/disks/1/target", json!({"controller": "scsi1", "unit": 15}))]),
                ("scsi0:63", vec![set("/disks/1/target/unit", json!(63))]),
                ("scsi3:0", vec![set("/disks/1/target/controller", json!("scsi3"))]),
                ("sata0:29", vec![set("/disks/1/target", json!({"controller": "sata0", "unit": 29}))]),
                ("sata2:7", vec![set("/disks/1/target", json!({"controller": "sata2", "unit": 7}))]),
                ("nvme3:63", vec![set("/disks/1/target", json!({"controller": "nvme3", "unit": 63}))]),
                ("nvme0:7", vec![set("/disks/1/target", json!({"controller": "nvme0", "unit": 7}))]),
                ("one root", vec![set("/disks/1/partitions/0/mountPoint", json!("/"))]),
                ("partition 128", vec![set("/disks/1/partitions/0/number", json!(128))]),
                ("no boot disk", vec![set("/disks/0/boot", json!(false))]),
                ("same uuid twice (md members)", vec![set("/disks/1/partitions/0/sourceUuid", json!("0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f"))]),
                ("label with spaces", vec![set("/disks/1/partitions/0/label", json!("my data"))]),
                ("mapper device", vec![set("/disks/1/sourceDevice", json!("/dev/mapper/vg-lv"))]),
                ("nvme device", vec![set("/disks/1/sourceDevice", json!("/dev/nvme0n1"))]),
            ],
        );
        run_good_cases(
            NIM,
            vec![
                ("uppercase dashes", vec![set("/interfaces/0/sourceMac", json!("52-54-00-AB-CD-EF"))]),
                ("empty list", vec![set("/interfaces", json!([]))]),
                ("dotted name", vec![set("/interfaces/0/sourceName", json!("eth0.100"))]),
                ("15 characters", vec![set("/interfaces/0/targetName", json!("abcdefghijklmno"))]),
                ("same MAC on both sides", vec![set("/interfaces/0/targetMac", json!("52:54:00:12:34:56"))]),
                ("null targetName", vec![set("/interfaces/0/targetName", json!(null))]),
                ("multicast bit is not judged", vec![set("/interfaces/0/targetMac", json!("01:00:5e:00:00:01"))]),
            ],
        );
    }

    // --- bad system-configuration.json --------------------------------------

    #[rustfmt::skip]
    #[test]
    fn bad_system_configurations_are_reported_precisely() {
        let long_id = "a".repeat(129);
        run_bad_cases(vec![
            case("version string", SYS, vec![set("/version", json!("1"))], INVALID, &["$.version", "expected the integer 1", "found \"1\""]),
            case("version null", SYS, vec![set("/version", json!(null))], INVALID, &["$.version", "found null"]),
            case("version missing", SYS, vec![del("/version")], INVALID, &["$.version", "required"]),
            case("version 2", SYS, vec![set("/version", json!(2))], UNSUPPORTED, &["$.version", "version 2 is not supported"]),
            case("version 1.5", SYS, vec![set("/version", json!(1.5))], UNSUPPORTED, &["$.version", "1.5"]),
            case("version 0", SYS, vec![set("/version", json!(0))], UNSUPPORTED, &["$.version"]),
            case("version -1", SYS, vec![set("/version", json!(-1))], UNSUPPORTED, &["$.version"]),
            case("migrationId missing", SYS, vec![del("/migrationId")], INVALID, &["$.migrationId", "required"]),
            case("migrationId number", SYS, vec![set("/migrationId", json!(42))], INVALID, &["$.migrationId", "found 42"]),
            case("migrationId empty", SYS, vec![set("/migrationId", json!(""))], INVALID, &["$.migrationId", "empty"]),
            case("migrationId ../x", SYS, vec![set("/migrationId", json!("../x"))], INVALID, &["$.migrationId", "\"../x\""]),
            case("migrationId a/b", SYS, vec![set("/migrationId", json!("a/b"))], INVALID, &["$.migrationId", "'/' is not allowed"]),
            case("migrationId .hidden", SYS, vec![set("/migrationId", json!(".hidden"))], INVALID, &["$.migrationId", "starts with '.'"]),
            case("migrationId space", SYS, vec![set("/migrationId", json!("a b"))], INVALID, &["$.migrationId", "U+0020"]),
            case("migrationId NUL", SYS, vec![set("/migrationId", json!("a\u{0}b"))], INVALID, &["$.migrationId", "U+0000"]),
            case("migrationId 129", SYS, vec![set("/migrationId", json!(long_id))], INVALID, &["$.migrationId", "129 characters"]),
            case("source missing", SYS, vec![del("/source")], INVALID, &["$.source", "required"]),
            case("source string", SYS, vec![set("/source", json!("web01"))], INVALID, &["$.source", "expected an object"]),
            case("arch missing", SYS, vec![del("/source/arch")], INVALID, &["$.source.arch", "required"]),
            case("arch arm64", SYS, vec![set("/source/arch", json!("arm64"))], INVALID, &["$.source.arch", "\"x86_64\", \"i686\"", "found \"arm64\""]),
            case("arch case", SYS, vec![set("/source/arch", json!("X86_64"))], INVALID, &["$.source.arch", "case-sensitive"]),
            case("firmware uefi", SYS, vec![set("/source/firmware", json!("uefi"))], INVALID, &["$.source.firmware", "\"bios\", \"efi\""]),
            case("hostname number", SYS, vec![set("/source/hostname", json!(5))], INVALID, &["$.source.hostname", "found 5"]),
            case("hostname newline", SYS, vec![set("/source/hostname", json!("web\n01"))], INVALID, &["$.source.hostname", "\\n"]),
            case("osVersion array", SYS, vec![set("/source/osVersion", json!([7, 9]))], INVALID, &["$.source.osVersion", "found an array"]),
            case("target missing", SYS, vec![del("/target")], INVALID, &["$.target", "required"]),
            case("target firmware missing", SYS, vec![del("/target/firmware")], INVALID, &["$.target.firmware", "required"]),
            case("storageController", SYS, vec![set("/target/storageController", json!("LSILogic"))], INVALID, &["$.target.storageController", "\"lsilogic-sas\"", "case-sensitive"]),
            case("storageController virtio", SYS, vec![set("/target/storageController", json!("virtio-scsi"))], INVALID, &["$.target.storageController", "\"pvscsi\""]),
            case("nicModel", SYS, vec![set("/target/nicModel", json!("virtio"))], INVALID, &["$.target.nicModel", "\"vmxnet3\", \"e1000\", \"e1000e\""]),
            case("options array", SYS, vec![set("/options", json!([]))], INVALID, &["$.options", "expected an object", "found an empty array"]),
            case("renameInterfaces", SYS, vec![set("/options/renameInterfaces", json!("yes"))], INVALID, &["$.options.renameInterfaces", "expected true or false"]),
            case("stage2 number", SYS, vec![set("/options/stage2", json!(1))], INVALID, &["$.options.stage2", "found 1"]),
            case("fstabIdentifiers", SYS, vec![set("/options/fstabIdentifiers", json!("label"))], INVALID, &["$.options.fstabIdentifiers", "\"uuid\", \"keep\""]),
            case("drivers string", SYS, vec![set("/options/extraInitramfsDrivers", json!("vmw_pvscsi"))], INVALID, &["$.options.extraInitramfsDrivers", "expected an array"]),
            case("driver path", SYS, vec![set("/options/extraInitramfsDrivers", json!(["ok", "../evil"]))], INVALID, &["$.options.extraInitramfsDrivers[1]", "not a file name or path"]),
            case("driver .ko", SYS, vec![set("/options/extraInitramfsDrivers", json!(["vmw_pvscsi.ko"]))], INVALID, &["$.options.extraInitramfsDrivers[0]", "'.'"]),
            case("driver empty", SYS, vec![set("/options/extraInitramfsDrivers", json!([""]))], INVALID, &["$.options.extraInitramfsDrivers[0]", "empty"]),
            case("driver number", SYS, vec![set("/options/extraInitramfsDrivers", json!([7]))], INVALID, &["$.options.extraInitramfsDrivers[0]", "found 7"]),
            case("timeout 0", SYS, vec![set("/options/commandTimeoutSeconds", json!(0))], INVALID, &["$.options.commandTimeoutSeconds", "1-86400", "found 0"]),
            case("timeout too long", SYS, vec![set("/options/commandTimeoutSeconds", json!(86401))], INVALID, &["$.options.commandTimeoutSeconds", "found 86401"]),
            case("timeout negative", SYS, vec![set("/options/commandTimeoutSeconds", json!(-1))], INVALID, &["$.options.commandTimeoutSeconds", "found -1"]),
            case("timeout string", SYS, vec![set("/options/commandTimeoutSeconds", json!("900"))], INVALID, &["$.options.commandTimeoutSeconds", "found \"900\""]),
            case("timeout fraction", SYS, vec![set("/options/commandTimeoutSeconds", json!(1.5))], INVALID, &["$.options.commandTimeoutSeconds", "found 1.5"]),
            case("timeout huge", SYS, vec![set("/options/commandTimeoutSeconds", json!(u64::MAX))], INVALID, &["$.options.commandTimeoutSeconds"]),
        ]);
    }

    // --- bad replica-disk-map.json ------------------------------------------

    #[rustfmt::skip]
    #[test]
    fn bad_disk_maps_are_reported_precisely() {
        let long_device = format!("/dev/{}", "a".repeat(251));
        let long_uuid = "0".repeat(256);
        let long_fs = "x".repeat(65);
        let disk = |device: &str, controller: &str, unit: u32| json!({"sourceDevice": device, "target": {"controller": controller, "unit": unit}});
        run_bad_cases(vec![
            case("version 2", RDM, vec![set("/version", json!(2))], UNSUPPORTED, &["$.version"]),
            case("disks missing", RDM, vec![del("/disks")], INVALID, &["$.disks", "required"]),
            case("disks empty", RDM, vec![set("/disks", json!([]))], INVALID, &["$.disks", "non-empty", "found an empty array"]),
            case("disks object", RDM, vec![set("/disks", json!({}))], INVALID, &["$.disks", "found an object"]),
            case("disk string", RDM, vec![set("/disks/1", json!("/dev/sdb"))], INVALID, &["$.disks[1]", "expected an object"]),
            case("sourceDevice missing", RDM, vec![del("/disks/1/sourceDevice")], INVALID, &["$.disks[1].sourceDevice", "required"]),
            case("sourceDevice relative", RDM, vec![set("/disks/1/sourceDevice", json!("sdb"))], INVALID, &["$.disks[1].sourceDevice", "/dev/"]),
            case("sourceDevice not /dev", RDM, vec![set("/disks/1/sourceDevice", json!("/etc/passwd"))], INVALID, &["$.disks[1].sourceDevice", "does not start with /dev/"]),
            case("sourceDevice ..", RDM, vec![set("/disks/1/sourceDevice", json!("/dev/../etc/shadow"))], INVALID, &["$.disks[1].sourceDevice", "'..'"]),
            case("sourceDevice newline", RDM, vec![set("/disks/1/sourceDevice", json!("/dev/sd\nb"))], INVALID, &["$.disks[1].sourceDevice", "U+000A"]),
            case("sourceDevice NUL", RDM, vec![set("/disks/1/sourceDevice", json!("/dev/sd\u{0}b"))], INVALID, &["$.disks[1].sourceDevice", "U+0000"]),
            case("sourceDevice long", RDM, vec![set("/disks/1/sourceDevice", json!(long_device))], INVALID, &["$.disks[1].sourceDevice", "256 characters"]),
            case("sourceDevice /dev/", RDM, vec![set("/disks/1/sourceDevice", json!("/dev/"))], INVALID, &["$.disks[1].sourceDevice"]),
            case("duplicate sourceDevice", RDM, vec![set("/disks/1/sourceDevice", json!("/dev/sda"))], INVALID, &["$.disks[1].sourceDevice", "duplicate", "$.disks[0].sourceDevice"]),
            case("partition device = disk device", RDM, vec![set("/disks/1/partitions/0/sourceDevice", json!("/dev/sda"))], INVALID, &["$.disks[1].partitions[0].sourceDevice", "duplicate", "$.disks[0].sourceDevice"]),
            case("target missing", RDM, vec![del("/disks/1/target")], INVALID, &["$.disks[1].target", "required"]),
            case("target string", RDM, vec![set("/disks/1/target", json!("scsi0:1"))], INVALID, &["$.disks[1].target", "expected an object"]),
            case("controller missing", RDM, vec![del("/disks/1/target/controller")], INVALID, &["$.disks[1].target.controller", "required"]),
            case("controller scsi4", RDM, vec![set("/disks/1/target/controller", json!("scsi4"))], INVALID, &["$.disks[1].target.controller", "\"scsi0\"-\"scsi3\"", "found \"scsi4\""]),
            case("controller ide0", RDM, vec![set("/disks/1/target/controller", json!("ide0"))], INVALID, &["$.disks[1].target.controller", "found \"ide0\""]),
            case("controller case", RDM, vec![set("/disks/1/target/controller", json!("SCSI0"))], INVALID, &["$.disks[1].target.controller"]),
            case("controller 0", RDM, vec![set("/disks/1/target/controller", json!(0))], INVALID, &["$.disks[1].target.controller", "found 0"]),
            case("unit missing", RDM, vec![del("/disks/1/target/unit")], INVALID, &["$.disks[1].target.unit", "required"]),
            case("unit string", RDM, vec![set("/disks/1/target/unit", json!("3"))], INVALID, &["$.disks[1].target.unit", "expected an integer 0-63, found \"3\""]),
            case("unit negative", RDM, vec![set("/disks/1/target/unit", json!(-1))], INVALID, &["$.disks[1].target.unit", "found -1"]),
            case("unit fraction", RDM, vec![set("/disks/1/target/unit", json!(1.5))], INVALID, &["$.disks[1].target.unit", "found 1.5"]),
            case("scsi unit 64", RDM, vec![set("/disks/1/target/unit", json!(64))], INVALID, &["$.disks[1].target.unit", "0-63", "found 64"]),
            case("scsi unit 7", RDM, vec![set("/disks/1/target/unit", json!(7))], INVALID, &["$.disks[1].target.unit", "controller's own id"]),
            case("scsi2 unit 7", RDM, vec![set("/disks/1/target", json!({"controller": "scsi2", "unit": 7}))], INVALID, &["$.disks[1].target.unit", "other than 7"]),
            case("scsi0:15", RDM, vec![set("/disks/1/target/unit", json!(15))], INVALID, &["$.disks[1].target.unit", "scsi0:15", "fixup disk"]),
            case("sata unit 30", RDM, vec![set("/disks/1/target", json!({"controller": "sata1", "unit": 30}))], INVALID, &["$.disks[1].target.unit", "0-29", "found 30"]),
            case("nvme unit 64", RDM, vec![set("/disks/1/target", json!({"controller": "nvme1", "unit": 64}))], INVALID, &["$.disks[1].target.unit", "0-63", "found 64"]),
            case("duplicate address", RDM, vec![set("/disks/-", disk("/dev/sdc", "scsi0", 1))], INVALID, &["$.disks[2].target", "duplicate", "scsi0:1", "$.disks[1].target"]),
            case("capacity zero", RDM, vec![set("/disks/1/capacityBytes", json!(0))], INVALID, &["$.disks[1].capacityBytes", "positive integer", "found 0"]),
            case("capacity negative", RDM, vec![set("/disks/1/capacityBytes", json!(-5))], INVALID, &["$.disks[1].capacityBytes", "found -5"]),
            case("capacity string", RDM, vec![set("/disks/1/capacityBytes", json!("20G"))], INVALID, &["$.disks[1].capacityBytes", "found \"20G\""]),
            case("capacity huge", RDM, vec![set("/disks/1/capacityBytes", json!(1e30))], INVALID, &["$.disks[1].capacityBytes"]),
            case("boot string", RDM, vec![set("/disks/1/boot", json!("true"))], INVALID, &["$.disks[1].boot", "expected true or false"]),
            case("two boot disks", RDM, vec![set("/disks/1/boot", json!(true))], INVALID, &["$.disks[1].boot", "only one disk", "$.disks[0].boot"]),
            case("partitions object", RDM, vec![set("/disks/1/partitions", json!({}))], INVALID, &["$.disks[1].partitions", "expected an array"]),
            case("partition string", RDM, vec![set("/disks/1/partitions/0", json!("sdb1"))], INVALID, &["$.disks[1].partitions[0]", "expected an object"]),
            case("partition number missing", RDM, vec![del("/disks/1/partitions/0/number")], INVALID, &["$.disks[1].partitions[0].number", "required"]),
            case("partition 0", RDM, vec![set("/disks/1/partitions/0/number", json!(0))], INVALID, &["$.disks[1].partitions[0].number", "1-128", "found 0"]),
            case("partition 129", RDM, vec![set("/disks/1/partitions/0/number", json!(129))], INVALID, &["$.disks[1].partitions[0].number", "found 129"]),
            case("duplicate partition", RDM, vec![set("/disks/0/partitions/1/number", json!(1))], INVALID, &["$.disks[0].partitions[1].number", "duplicate", "partition number 1", "$.disks[0].partitions[0].number"]),
            case("partition sourceDevice", RDM, vec![set("/disks/1/partitions/0/sourceDevice", json!("sdb1"))], INVALID, &["$.disks[1].partitions[0].sourceDevice"]),
            case("mountPoint relative", RDM, vec![set("/disks/1/partitions/0/mountPoint", json!("data"))], INVALID, &["$.disks[1].partitions[0].mountPoint", "absolute"]),
            case("mountPoint ..", RDM, vec![set("/disks/1/partitions/0/mountPoint", json!("/data/../etc"))], INVALID, &["$.disks[1].partitions[0].mountPoint", "'..'"]),
            case("mountPoint NUL", RDM, vec![set("/disks/1/partitions/0/mountPoint", json!("/da\u{0}ta"))], INVALID, &["$.disks[1].partitions[0].mountPoint", "U+0000"]),
            case("mountPoint newline", RDM, vec![set("/disks/1/partitions/0/mountPoint", json!("/da\nta"))], INVALID, &["$.disks[1].partitions[0].mountPoint", "U+000A"]),
            case("mountPoint empty", RDM, vec![set("/disks/1/partitions/0/mountPoint", json!(""))], INVALID, &["$.disks[1].partitions[0].mountPoint", "empty"]),
            case("two roots", RDM, vec![set("/disks/0/partitions/1/mountPoint", json!("/")), set("/disks/1/partitions/0/mountPoint", json!("/"))], INVALID, &["$.disks[1].partitions[0].mountPoint", "duplicate", "\"/\"", "$.disks[0].partitions[1].mountPoint"]),
            case("two roots spelled apart", RDM, vec![set("/disks/0/partitions/1/mountPoint", json!("/")), set("/disks/1/partitions/0/mountPoint", json!("//."))], INVALID, &["$.disks[1].partitions[0].mountPoint", "duplicate"]),
            case("duplicate mountPoint", RDM, vec![set("/disks/1/partitions/0/mountPoint", json!("/boot/"))], INVALID, &["$.disks[1].partitions[0].mountPoint", "duplicate", "\"/boot\""]),
            case("uuid newline", RDM, vec![set("/disks/1/partitions/0/sourceUuid", json!("abc\ndef"))], INVALID, &["$.disks[1].partitions[0].sourceUuid", "U+000A"]),
            case("uuid long", RDM, vec![set("/disks/1/partitions/0/targetUuid", json!(long_uuid))], INVALID, &["$.disks[1].partitions[0].targetUuid", "256 characters"]),
            case("uuid number", RDM, vec![set("/disks/1/partitions/0/sourceUuid", json!(1234))], INVALID, &["$.disks[1].partitions[0].sourceUuid", "found 1234"]),
            case("label NUL", RDM, vec![set("/disks/1/partitions/0/label", json!("da\u{0}ta"))], INVALID, &["$.disks[1].partitions[0].label", "U+0000"]),
            case("label CR", RDM, vec![set("/disks/1/partitions/0/label", json!("da\rta"))], INVALID, &["$.disks[1].partitions[0].label", "U+000D"]),
            case("fsType chars", RDM, vec![set("/disks/1/partitions/0/fsType", json!("ext4;rm -rf"))], INVALID, &["$.disks[1].partitions[0].fsType", "';'"]),
            case("fsType long", RDM, vec![set("/disks/1/partitions/0/fsType", json!(long_fs))], INVALID, &["$.disks[1].partitions[0].fsType", "65 characters"]),
        ]);
    }

    #[test]
    fn unit_error_message_is_exact() {
        let parsed =
            parse_replica_disk_map(&edited(RDM, &[set("/disks/1/target/unit", json!("3"))]));
        assert_eq!(parsed.value, None);
        assert_eq!(parsed.errors.len(), 1, "{:#?}", parsed.errors);
        assert_eq!(parsed.errors[0].code, codes::CONFIG_INVALID);
        assert_eq!(
            parsed.errors[0].message,
            "replica-disk-map.json: $.disks[1].target.unit: expected an integer 0-63, found \"3\""
        );
    }

    // --- bad network-interface-map.json -------------------------------------

    #[rustfmt::skip]
    #[test]
    fn bad_interface_maps_are_reported_precisely() {
        let nic = |name: &str, source: &str, target: &str| json!({"sourceName": name, "sourceMac": source, "targetMac": target});
        run_bad_cases(vec![
            case("version 2", NIM, vec![set("/version", json!(2))], UNSUPPORTED, &["$.version"]),
            case("version bool", NIM, vec![set("/version", json!(true))], INVALID, &["$.version", "found true"]),
            case("interfaces missing", NIM, vec![del("/interfaces")], INVALID, &["$.interfaces", "required"]),
            case("interfaces object", NIM, vec![set("/interfaces", json!({}))], INVALID, &["$.interfaces", "expected an array"]),
            case("interface array", NIM, vec![set("/interfaces/1", json!([]))], INVALID, &["$.interfaces[1]", "expected an object"]),
            case("sourceName missing", NIM, vec![del("/interfaces/1/sourceName")], INVALID, &["$.interfaces[1].sourceName", "required"]),
            case("sourceName empty", NIM, vec![set("/interfaces/1/sourceName", json!(""))], INVALID, &["$.interfaces[1].sourceName", "empty"]),
            case("sourceName 16", NIM, vec![set("/interfaces/1/sourceName", json!("abcdefghijklmnop"))], INVALID, &["$.interfaces[1].sourceName", "16 characters"]),
            case("sourceName .", NIM, vec![set("/interfaces/1/sourceName", json!("."))], INVALID, &["$.interfaces[1].sourceName", "\".\""]),
            case("sourceName ..", NIM, vec![set("/interfaces/1/sourceName", json!(".."))], INVALID, &["$.interfaces[1].sourceName", "\"..\""]),
            case("sourceName slash", NIM, vec![set("/interfaces/1/sourceName", json!("a/b"))], INVALID, &["$.interfaces[1].sourceName", "'/'"]),
            case("sourceName space", NIM, vec![set("/interfaces/1/sourceName", json!("eth 0"))], INVALID, &["$.interfaces[1].sourceName", "U+0020"]),
            case("sourceName colon", NIM, vec![set("/interfaces/1/sourceName", json!("eth0:1"))], INVALID, &["$.interfaces[1].sourceName", "':'"]),
            case("targetName lo", NIM, vec![set("/interfaces/1/targetName", json!("lo"))], INVALID, &["$.interfaces[1].targetName", "loopback"]),
            case("targetName long", NIM, vec![set("/interfaces/1/targetName", json!("a".repeat(16)))], INVALID, &["$.interfaces[1].targetName"]),
            case("targetName number", NIM, vec![set("/interfaces/1/targetName", json!(1))], INVALID, &["$.interfaces[1].targetName", "found 1"]),
            case("sourceMac missing", NIM, vec![del("/interfaces/1/sourceMac")], INVALID, &["$.interfaces[1].sourceMac", "required"]),
            case("sourceMac short", NIM, vec![set("/interfaces/1/sourceMac", json!("52:54:00:12:34"))], INVALID, &["$.interfaces[1].sourceMac", "MAC address", "found \"52:54:00:12:34\""]),
            case("sourceMac long", NIM, vec![set("/interfaces/1/sourceMac", json!("52:54:00:12:34:56:78"))], INVALID, &["$.interfaces[1].sourceMac"]),
            case("sourceMac hex", NIM, vec![set("/interfaces/1/sourceMac", json!("52:54:00:12:34:zz"))], INVALID, &["$.interfaces[1].sourceMac"]),
            case("sourceMac mixed", NIM, vec![set("/interfaces/1/sourceMac", json!("52:54:00-12:34:56"))], INVALID, &["$.interfaces[1].sourceMac"]),
            case("sourceMac dots", NIM, vec![set("/interfaces/1/sourceMac", json!("5254.0012.3456"))], INVALID, &["$.interfaces[1].sourceMac"]),
            case("sourceMac single digits", NIM, vec![set("/interfaces/1/sourceMac", json!("2:54:00:12:34:5:"))], INVALID, &["$.interfaces[1].sourceMac"]),
            case("sourceMac number", NIM, vec![set("/interfaces/1/sourceMac", json!(525400123456_u64))], INVALID, &["$.interfaces[1].sourceMac", "found 525400123456"]),
            case("targetMac zero", NIM, vec![set("/interfaces/1/targetMac", json!("00:00:00:00:00:00"))], INVALID, &["$.interfaces[1].targetMac"]),
            case("targetMac missing", NIM, vec![del("/interfaces/1/targetMac")], INVALID, &["$.interfaces[1].targetMac", "required"]),
            case("duplicate sourceMac", NIM, vec![set("/interfaces/1/sourceMac", json!("52-54-00-12-34-56"))], INVALID, &["$.interfaces[1].sourceMac", "duplicate", "52:54:00:12:34:56", "$.interfaces[0].sourceMac"]),
            case("duplicate targetMac", NIM, vec![set("/interfaces/1/targetMac", json!("00:50:56:9A:00:01"))], INVALID, &["$.interfaces[1].targetMac", "duplicate", "$.interfaces[0].targetMac"]),
            case("duplicate sourceName", NIM, vec![set("/interfaces/1/sourceName", json!("ens192"))], INVALID, &["$.interfaces[1].sourceName", "duplicate", "\"ens192\"", "$.interfaces[0].sourceName"]),
            case("duplicate targetName", NIM, vec![set("/interfaces/1/targetName", json!("eth0"))], INVALID, &["$.interfaces[1].targetName", "duplicate", "$.interfaces[0].targetName"]),
            case("third duplicate", NIM, vec![set("/interfaces/-", nic("ens256", "52:54:00:12:34:57", "00:50:56:9a:00:03"))], INVALID, &["$.interfaces[2].sourceMac", "$.interfaces[1].sourceMac"]),
        ]);
    }

    // --- documents --------------------------------------------------------

    fn only_error(file: &str, bytes: &[u8]) -> FixupError {
        let (ok, errors, _) = parse(file, bytes);
        assert!(!ok);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().expect("one error")
    }

    #[test]
    fn malformed_documents_give_clean_errors() {
        let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
            ("empty", b"".to_vec(), &["empty"]),
            ("blank", b" \n\t ".to_vec(), &["empty"]),
            (
                "not json",
                b"version: 1".to_vec(),
                &["not valid JSON", "line 1 column 1"],
            ),
            (
                "trailing comma",
                b"{\"version\": 1,\n}".to_vec(),
                &["not valid JSON", "line 2"],
            ),
            (
                "trailing garbage",
                b"{\"version\": 1} x".to_vec(),
                &["not valid JSON", "trailing"],
            ),
            ("two documents", b"{} {}".to_vec(), &["not valid JSON"]),
            (
                "unterminated",
                b"{\"version\": 1".to_vec(),
                &["not valid JSON"],
            ),
            (
                "bad utf-8",
                b"{\"version\": 1,\n \"migrationId\": \"\xff\"}".to_vec(),
                &["not valid UTF-8", "line 2 column 18"],
            ),
            (
                "utf-16",
                b"\xff\xfe{\x00}\x00".to_vec(),
                &["not valid UTF-8", "line 1 column 1"],
            ),
            (
                "duplicate key",
                b"{\"version\": 1, \"version\": 1}".to_vec(),
                &["duplicate key \"version\"", "line 1"],
            ),
            (
                "nested duplicate key",
                b"{\"version\": 1, \"source\": {\"arch\": \"x86_64\", \"arch\": \"i686\"}}"
                    .to_vec(),
                &["duplicate key \"arch\""],
            ),
            (
                "huge number",
                b"{\"version\": 1e400}".to_vec(),
                &["not valid JSON"],
            ),
            (
                "deep arrays",
                "[".repeat(100_000).into_bytes(),
                &["deeper than 64", "line 1 column 65"],
            ),
            (
                "deep objects",
                "{\"a\":".repeat(100_000).into_bytes(),
                &["deeper than 64"],
            ),
            (
                "deep but closed",
                format!(
                    "{{\"version\": 1, \"x\": {}{}}}",
                    "[".repeat(70),
                    "]".repeat(70)
                )
                .into_bytes(),
                &["deeper than 64"],
            ),
            (
                "top-level array",
                b"[]".to_vec(),
                &["$: expected an object", "found an empty array"],
            ),
            (
                "top-level string",
                b"\"hello\"".to_vec(),
                &["$: expected an object", "found \"hello\""],
            ),
            (
                "top-level null",
                b"null".to_vec(),
                &["$: expected an object", "found null"],
            ),
        ];
        for (name, bytes, fragments) in cases {
            for file in [SYS, RDM, NIM] {
                let error = only_error(file, &bytes);
                assert_eq!(error.code, codes::CONFIG_INVALID, "{name}: {error:?}");
                assert!(
                    error.message.starts_with(&format!("{file}: ")),
                    "{name}: {error:?}"
                );
                for fragment in fragments {
                    assert!(
                        error.message.contains(fragment),
                        "{name}: {fragment:?} not in {error:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn nesting_up_to_the_limit_is_fine() {
        // The root is level 1: 63 more levels in an unknown field.
        let deep = format!("{}{}", "[".repeat(63), "]".repeat(63));
        let text = SYSTEM.replacen('{', &format!("{{\"deep\": {deep},"), 1);
        let parsed = parse_system_configuration(text.as_bytes());
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(parsed.warnings.len(), 1);
        assert!(parsed.value.is_some());

        let deeper = format!("{}{}", "[".repeat(64), "]".repeat(64));
        let text = SYSTEM.replacen('{', &format!("{{\"deep\": {deeper},"), 1);
        let error = only_error(SYS, text.as_bytes());
        assert!(error.message.contains("deeper than 64"), "{error:?}");
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(NICS.as_bytes());
        assert_eq!(
            parse_network_interface_map(&bytes).value,
            Some(expected_nics())
        );
    }

    #[test]
    fn unsupported_version_is_the_only_error() {
        let bytes = br#"{"version": 2, "migrationId": "../x", "source": 5, "future": {}}"#;
        let error = only_error(SYS, bytes);
        assert_eq!(error.code, codes::CONFIG_UNSUPPORTED_VERSION);
        assert_eq!(
            error.message,
            "system-configuration.json: $.version: version 2 is not supported; this stack \
             understands version 1"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let bytes = edited(
            SYS,
            &[
                set("/version", json!("one")),
                set("/migrationId", json!("a/b")),
                del("/source/arch"),
                set("/target/nicModel", json!("virtio")),
                set("/options/commandTimeoutSeconds", json!(0)),
                set(
                    "/options/extraInitramfsDrivers",
                    json!(["a/b", "ok", "c d"]),
                ),
            ],
        );
        let (ok, errors, _) = parse(SYS, &bytes);
        assert!(!ok);
        let paths: Vec<&str> = errors
            .iter()
            .map(|e| e.message.split(": ").nth(1).expect("a path"))
            .collect();
        assert_eq!(
            paths,
            [
                "$.version",
                "$.migrationId",
                "$.source.arch",
                "$.target.nicModel",
                "$.options.extraInitramfsDrivers[0]",
                "$.options.extraInitramfsDrivers[2]",
                "$.options.commandTimeoutSeconds",
            ]
        );
        assert!(errors.iter().all(|e| e.code == codes::CONFIG_INVALID));
    }

    #[test]
    fn reports_per_file_are_capped() {
        let interfaces: Vec<Value> = (0..500)
            .map(|i| json!({"sourceName": format!("e{i}"), "sourceMac": "bad", "targetMac": "bad", "x": i}))
            .collect();
        let bytes =
            serde_json::to_vec(&json!({"version": 1, "interfaces": interfaces})).expect("json");
        let (ok, errors, warnings) = parse(NIM, &bytes);
        assert!(!ok);
        assert_eq!(errors.len(), MAX_REPORTS_PER_FILE + 1);
        assert_eq!(
            errors.last().map(|e| e.message.as_str()),
            Some("network-interface-map.json: 900 more errors not shown")
        );
        assert_eq!(warnings.len(), MAX_REPORTS_PER_FILE + 1);
        assert!(
            warnings
                .last()
                .expect("summary")
                .message
                .contains("400 more warnings")
        );
    }

    // --- unknown fields ---------------------------------------------------

    #[test]
    fn unknown_fields_are_warnings_with_their_path() {
        let parsed = parse_system_configuration(&edited(
            SYS,
            &[
                set("/extra", json!(1)),
                set("/source/cpuCount", json!(4)),
                set("/options/futureOption", json!({"a": 1})),
                set("/migration_id", json!("x")),
            ],
        ));
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(parsed.value, Some(expected_system()));
        let messages: Vec<&str> = parsed.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "system-configuration.json: $.extra: unknown field, ignored",
                "system-configuration.json: $.migration_id: unknown field, ignored (did you mean \"migrationId\"?)",
                "system-configuration.json: $.source.cpuCount: unknown field, ignored",
                "system-configuration.json: $.options.futureOption: unknown field, ignored",
            ]
        );
        assert!(
            parsed
                .warnings
                .iter()
                .all(|w| w.code == codes::CONFIG_UNKNOWN_FIELD)
        );

        let parsed = parse_replica_disk_map(&edited(
            RDM,
            &[
                set("/disks/0/partitions/1/flags", json!(["lvm"])),
                set("/disks/1/target/bus", json!(0)),
                set("/disks/1/weird key\n\u{202e}", json!(0)),
            ],
        ));
        assert_eq!(parsed.errors, vec![]);
        let messages: Vec<&str> = parsed.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "replica-disk-map.json: $.disks[0].partitions[1].flags: unknown field, ignored",
                "replica-disk-map.json: $.disks[1][\"weird key\\n\\u{202e}\"]: unknown field, ignored",
                "replica-disk-map.json: $.disks[1].target.bus: unknown field, ignored",
            ]
        );

        let parsed =
            parse_network_interface_map(&edited(NIM, &[set("/interfaces/0/mtu", json!(9000))]));
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(
            parsed.warnings,
            vec![Warning::new(
                codes::CONFIG_UNKNOWN_FIELD,
                "network-interface-map.json: $.interfaces[0].mtu: unknown field, ignored"
            )]
        );
    }

    #[test]
    fn hostile_strings_are_quoted_and_cut_in_messages() {
        let key = format!("\u{1b}[2J{}", "k".repeat(1000));
        let value = format!("\u{1b}]0;pwned\u{7}{}", "v".repeat(1000));
        let mut doc = base(SYS);
        doc.as_object_mut().expect("object").insert(key, json!(1));
        doc["migrationId"] = json!(value);
        let parsed = parse_system_configuration(&serde_json::to_vec(&doc).expect("json"));
        let texts = parsed
            .errors
            .iter()
            .map(|e| e.message.clone())
            .chain(parsed.warnings.iter().map(|w| w.message.clone()));
        let mut count = 0;
        for text in texts {
            count += 1;
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert!(text.len() < 400, "{text:?}");
        }
        assert_eq!(count, 2);
    }

    // --- types ------------------------------------------------------------

    #[test]
    fn mac_addresses_parse_and_display() {
        let want = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        for text in [
            "52:54:00:ab:cd:ef",
            "52-54-00-AB-CD-EF",
            "52:54:00:Ab:cD:eF",
        ] {
            assert_eq!(text.parse::<MacAddr>(), Ok(want), "{text}");
        }
        assert_eq!(want.to_string(), "52:54:00:ab:cd:ef");
        assert_eq!(
            serde_json::to_value(want).expect("json"),
            json!("52:54:00:ab:cd:ef")
        );
        for text in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:",
            "52:54:00:ab:cd:e",
            "52:54:00-ab:cd:ef",
            "52.54.00.ab.cd.ef",
            "5254:00ab:cdef:00",
            "+2:54:00:ab:cd:ef",
            "52:54:00:ab:cd:éf",
            " 52:54:00:ab:cd:e",
        ] {
            assert_eq!(text.parse::<MacAddr>(), Err(ParseMacError), "{text}");
        }
    }

    #[test]
    fn controllers_and_drivers() {
        assert_eq!(
            ControllerRef::from_protocol("scsi3"),
            Some(ControllerRef {
                kind: ControllerKind::Scsi,
                index: 3
            })
        );
        assert_eq!(
            ControllerRef::from_protocol("sata0"),
            Some(ControllerRef {
                kind: ControllerKind::Sata,
                index: 0
            })
        );
        assert_eq!(
            ControllerRef::from_protocol("nvme2").map(|c| c.to_string()),
            Some("nvme2".to_string())
        );
        for bad in [
            "scsi4", "scsi00", "scsi", "SCSI0", "scsi-1", "ide0", "", "nvme9", "sata٣",
        ] {
            assert_eq!(ControllerRef::from_protocol(bad), None, "{bad}");
        }
        let scsi0 = ControllerRef {
            kind: ControllerKind::Scsi,
            index: 0,
        };
        let scsi1 = ControllerRef {
            kind: ControllerKind::Scsi,
            index: 1,
        };
        assert!(scsi0.accepts_unit(0) && scsi0.accepts_unit(63));
        assert!(!scsi0.accepts_unit(7) && !scsi0.accepts_unit(15) && !scsi0.accepts_unit(64));
        assert!(scsi1.accepts_unit(15) && !scsi1.accepts_unit(7));
        assert_eq!(ControllerRef::FIXUP_DISK.to_string(), "scsi0:15");

        let drivers: Vec<&str> = StorageController::ALL.iter().map(|c| c.driver()).collect();
        assert_eq!(
            drivers,
            ["vmw_pvscsi", "mptspi", "mptsas", "BusLogic", "ahci", "nvme"]
        );
        let names: Vec<&str> = StorageController::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "pvscsi",
                "lsilogic",
                "lsilogic-sas",
                "buslogic",
                "ahci",
                "nvme"
            ]
        );
        assert_eq!(
            StorageController::Ahci.controller_kind(),
            ControllerKind::Sata
        );
        assert_eq!(
            StorageController::Buslogic.controller_kind(),
            ControllerKind::Scsi
        );
        let drivers: Vec<&str> = NicModel::ALL.iter().map(|n| n.driver()).collect();
        assert_eq!(drivers, ["vmxnet3", "e1000", "e1000e"]);
        assert_eq!(Arch::from_protocol("i686"), Some(Arch::I686));
        assert_eq!(
            serde_json::to_value(Arch::X86_64).expect("json"),
            json!("x86_64")
        );
    }

    // --- cross-file checks ------------------------------------------------

    fn inputs_with(system_edits: &[Edit], nic_edits: &[Edit]) -> LoadResult {
        validate_inputs(
            &edited(SYS, system_edits),
            DISKS.as_bytes(),
            &edited(NIM, nic_edits),
        )
    }

    #[test]
    fn effective_target_names_follow_the_options() {
        let (inputs, warnings) = inputs_with(&[], &[]).expect("valid");
        assert_eq!(warnings, vec![]);
        assert_eq!(inputs.effective_target_names(), ["eth0", "eth1"]);

        let (inputs, warnings) = inputs_with(
            &[],
            &[
                set("/interfaces/0/targetName", json!("lan")),
                set("/interfaces/1/targetName", json!("eth0")),
            ],
        )
        .expect("valid");
        assert_eq!(warnings, vec![]);
        assert_eq!(inputs.effective_target_names(), ["lan", "eth0"]);

        let (inputs, warnings) =
            inputs_with(&[set("/options/renameInterfaces", json!(false))], &[]).expect("valid");
        assert_eq!(inputs.effective_target_names(), ["ens192", "ens224"]);
        assert_eq!(
            warnings,
            vec![Warning::new(
                codes::CONFIG_IGNORED_FIELD,
                "network-interface-map.json: $.interfaces[0].targetName: ignored because \
                 system-configuration.json: $.options.renameInterfaces is false; the interface \
                 keeps the name \"ens192\""
            )]
        );
    }

    #[test]
    fn effective_target_names_must_be_unique() {
        // ens224 has no targetName: it becomes eth1, which ens192 takes.
        let (errors, _) = inputs_with(&[], &[set("/interfaces/0/targetName", json!("eth1"))])
            .expect_err("duplicate names");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].code, codes::CONFIG_INVALID);
        assert_eq!(
            errors[0].message,
            "network-interface-map.json: $.interfaces[1]: duplicate target name: the default name \
             (no targetName: eth<N> by list order) \"eth1\" is also the name of \
             $.interfaces[0].targetName"
        );

        // The explicit name comes second.
        let (errors, _) = inputs_with(
            &[],
            &[
                set("/interfaces/0/targetName", json!(null)),
                set("/interfaces/1/targetName", json!("eth0")),
            ],
        )
        .expect_err("duplicate names");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0]
                .message
                .contains("$.interfaces[1].targetName: duplicate target name")
        );

        // Two explicit duplicates are reported once, by the file's own check.
        let (errors, _) = inputs_with(&[], &[set("/interfaces/1/targetName", json!("eth0"))])
            .expect_err("duplicate names");
        assert_eq!(errors.len(), 1, "{errors:#?}");

        // Without renaming, target names do not matter.
        let (inputs, _) = inputs_with(
            &[set("/options/renameInterfaces", json!(false))],
            &[set("/interfaces/0/targetName", json!("eth1"))],
        )
        .expect("valid");
        assert_eq!(inputs.effective_target_names(), ["ens192", "ens224"]);
    }

    // --- load_inputs --------------------------------------------------------

    fn write_valid(dir: &Path) {
        std::fs::write(dir.join(SYSTEM_CONFIGURATION), SYSTEM).expect("write");
        std::fs::write(dir.join(REPLICA_DISK_MAP), DISKS).expect("write");
        std::fs::write(dir.join(NETWORK_INTERFACE_MAP), NICS).expect("write");
    }

    #[test]
    fn load_inputs_reads_a_valid_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_valid(dir.path());
        let (inputs, warnings) = load_inputs(dir.path()).expect("valid");
        assert_eq!(warnings, vec![]);
        assert_eq!(
            inputs,
            Inputs {
                system: expected_system(),
                disks: expected_disks(),
                nics: expected_nics(),
            }
        );
    }

    #[test]
    fn load_inputs_reports_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (errors, warnings) = load_inputs(dir.path()).expect_err("missing");
        assert_eq!(warnings, vec![]);
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.code.as_str(), e.message.split(':').next().unwrap_or("")))
            .collect();
        assert_eq!(
            got,
            [
                (codes::CONFIG_MISSING, SYSTEM_CONFIGURATION),
                (codes::CONFIG_MISSING, REPLICA_DISK_MAP),
                (codes::CONFIG_MISSING, NETWORK_INTERFACE_MAP),
            ]
        );

        // One missing, one invalid: both reported, with the other's warnings.
        write_valid(dir.path());
        std::fs::remove_file(dir.path().join(REPLICA_DISK_MAP)).expect("rm");
        std::fs::write(
            dir.path().join(NETWORK_INTERFACE_MAP),
            edited(
                NIM,
                &[
                    set("/interfaces/0/sourceMac", json!("nope")),
                    set("/x", json!(1)),
                ],
            ),
        )
        .expect("write");
        let (errors, warnings) = load_inputs(dir.path()).expect_err("invalid");
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(errors[0].code, codes::CONFIG_MISSING);
        assert!(errors[0].message.starts_with(REPLICA_DISK_MAP));
        assert!(
            errors[1]
                .message
                .starts_with("network-interface-map.json: $.interfaces[0].sourceMac")
        );
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn load_inputs_refuses_large_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_valid(dir.path());

        // Exactly the limit is fine (padding after the object).
        let mut padded = SYSTEM.as_bytes().to_vec();
        padded.resize(usize::try_from(MAX_INPUT_BYTES).expect("fits"), b' ');
        std::fs::write(dir.path().join(SYSTEM_CONFIGURATION), &padded).expect("write");
        assert!(load_inputs(dir.path()).is_ok());

        padded.push(b' ');
        std::fs::write(dir.path().join(SYSTEM_CONFIGURATION), &padded).expect("write");
        let (errors, _) = load_inputs(dir.path()).expect_err("too large");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].code, codes::CONFIG_TOO_LARGE);
        assert!(errors[0].message.starts_with(SYSTEM_CONFIGURATION));
        assert!(
            errors[0].message.contains("1048577 bytes"),
            "{:?}",
            errors[0]
        );

        // A sparse 64 GiB file is refused from its size, without reading it.
        let file = File::create(dir.path().join(REPLICA_DISK_MAP)).expect("create");
        file.set_len(64 << 30).expect("sparse");
        let (errors, _) = load_inputs(dir.path()).expect_err("too large");
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(errors[1].code, codes::CONFIG_TOO_LARGE);
        assert!(
            errors[1].message.contains("68719476736 bytes"),
            "{:?}",
            errors[1]
        );
    }

    #[test]
    fn load_inputs_refuses_fifos_and_directories_without_hanging() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_valid(dir.path());
        let fifo = dir.path().join(SYSTEM_CONFIGURATION);
        std::fs::remove_file(&fifo).expect("rm");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let nics = dir.path().join(NETWORK_INTERFACE_MAP);
        std::fs::remove_file(&nics).expect("rm");
        std::fs::create_dir(&nics).expect("mkdir");

        let (errors, _) = load_inputs(dir.path()).expect_err("not regular files");
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.code.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    codes::CONFIG_INVALID,
                    "system-configuration.json: expected a regular file, found a FIFO"
                ),
                (
                    codes::CONFIG_INVALID,
                    "network-interface-map.json: expected a regular file, found a directory"
                ),
            ]
        );
    }

    #[test]
    fn load_inputs_follows_symlinks() {
        let real = tempfile::tempdir().expect("tempdir");
        write_valid(real.path());
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            SYSTEM_CONFIGURATION,
            REPLICA_DISK_MAP,
            NETWORK_INTERFACE_MAP,
        ] {
            std::os::unix::fs::symlink(real.path().join(name), dir.path().join(name))
                .expect("symlink");
        }
        assert!(load_inputs(dir.path()).is_ok());

        // A dangling link is a missing file; a link to a FIFO is refused.
        std::fs::remove_file(real.path().join(REPLICA_DISK_MAP)).expect("rm");
        nix::unistd::mkfifo(
            &real
                .path()
                .join(NETWORK_INTERFACE_MAP)
                .with_extension("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        std::fs::remove_file(dir.path().join(NETWORK_INTERFACE_MAP)).expect("rm");
        std::os::unix::fs::symlink(
            real.path()
                .join(NETWORK_INTERFACE_MAP)
                .with_extension("fifo"),
            dir.path().join(NETWORK_INTERFACE_MAP),
        )
        .expect("symlink");
        let (errors, _) = load_inputs(dir.path()).expect_err("dangling");
        let codes_seen: Vec<&str> = errors.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(
            codes_seen,
            [codes::CONFIG_MISSING, codes::CONFIG_INVALID],
            "{errors:#?}"
        );
        assert!(errors[1].message.contains("FIFO"));
    }
}
