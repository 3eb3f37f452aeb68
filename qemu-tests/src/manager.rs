//! The manager's side of the protocol (docs/PROTOCOL.md) on a host folder
//! that the guest sees as `/tmp`: wait for `fixup/` and READY, write the
//! three input files and BEGIN, wait for END and read result.json.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::Arch;
use crate::error::{Error, Result};

/// The input file names.
pub const SYSTEM_CONFIGURATION: &str = "system-configuration.json";
/// See [`SYSTEM_CONFIGURATION`].
pub const REPLICA_DISK_MAP: &str = "replica-disk-map.json";
/// See [`SYSTEM_CONFIGURATION`].
pub const NETWORK_INTERFACE_MAP: &str = "network-interface-map.json";

/// The `fixup/` folder inside a shared folder.
#[derive(Debug, Clone)]
pub struct FixupDir {
    dir: PathBuf,
}

impl FixupDir {
    /// The `fixup/` folder of the host folder shared as the guest's `/tmp`.
    pub fn in_share(share: impl AsRef<Path>) -> Self {
        Self {
            dir: share.as_ref().join("fixup"),
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A file in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether the stack has created the folder ("stack is ready").
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// READY, once it is there and complete JSON.
    pub fn ready(&self) -> Option<Value> {
        let text = fs::read_to_string(self.file("READY")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes one input file.
    pub fn write_input(&self, name: &str, value: &Value) -> Result<()> {
        let path = self.file(name);
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        fs::write(&path, text + "\n").map_err(Error::io("writing", &path))
    }

    /// Writes the three input files.
    pub fn write_inputs(&self, system: &Value, disks: &Value, nics: &Value) -> Result<()> {
        self.write_input(SYSTEM_CONFIGURATION, system)?;
        self.write_input(REPLICA_DISK_MAP, disks)?;
        self.write_input(NETWORK_INTERFACE_MAP, nics)
    }

    /// Creates the empty BEGIN, last.
    pub fn begin(&self) -> Result<()> {
        let path = self.file("BEGIN");
        fs::write(&path, b"").map_err(Error::io("writing", &path))
    }

    /// Whether END is there.
    pub fn ended(&self) -> bool {
        self.file("END").exists()
    }

    /// result.json, once END is there (`None` before; an END without a
    /// readable result.json gives `Value::Null`).
    pub fn result(&self) -> Option<Value> {
        if !self.ended() {
            return None;
        }
        let text = fs::read_to_string(self.file("result.json")).ok();
        Some(
            text.and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null),
        )
    }
}

/// A valid system-configuration.json (PROTOCOL.md's example) for a guest
/// of `arch`.
pub fn system_configuration(arch: Arch, migration_id: &str) -> Value {
    json!({
        "version": 1,
        "migrationId": migration_id,
        "source": {
            "hostname": "web01",
            "arch": arch.name(),
            "firmware": "bios",
            "osFamily": "debian",
            "osVersion": "12"
        },
        "target": {
            "firmware": "bios",
            "storageController": "pvscsi",
            "nicModel": "vmxnet3"
        },
        "options": {
            "renameInterfaces": true,
            "fstabIdentifiers": "uuid",
            "stage2": true,
            "extraInitramfsDrivers": [],
            "commandTimeoutSeconds": 900
        }
    })
}

/// A valid replica-disk-map.json: one boot disk at scsi0:0 with an ext4
/// root.
pub fn replica_disk_map() -> Value {
    json!({
        "version": 1,
        "disks": [{
            "sourceDevice": "/dev/sda",
            "target": { "controller": "scsi0", "unit": 0 },
            "capacityBytes": 2_147_483_648u64,
            "boot": true,
            "partitions": [{
                "number": 1,
                "sourceDevice": "/dev/sda1",
                "fsType": "ext4",
                "sourceUuid": "0b6c2f3e-8d4a-4c1b-9e7f-2a5d6c8b1e30",
                "mountPoint": "/"
            }]
        }]
    })
}

/// A valid network-interface-map.json: one NIC.
pub fn network_interface_map() -> Value {
    json!({
        "version": 1,
        "interfaces": [{
            "sourceName": "ens192",
            "sourceMac": "52:54:00:12:34:56",
            "targetMac": "00:50:56:9a:00:01",
            "targetName": "eth0"
        }]
    })
}

/// The `code`s of a result's `errors`.
pub fn error_codes(result: &Value) -> Vec<String> {
    result["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_files() {
        let tmp = tempfile::tempdir().unwrap();
        let fixup = FixupDir::in_share(tmp.path());
        assert!(!fixup.exists());
        assert!(fixup.ready().is_none());
        fs::create_dir(fixup.path()).unwrap();
        fs::write(fixup.file("READY"), "{\"arch\": \"x8").unwrap();
        assert!(fixup.ready().is_none(), "incomplete READY is not ready");
        fs::write(fixup.file("READY"), r#"{"arch":"x86_64"}"#).unwrap();
        assert_eq!(fixup.ready().unwrap()["arch"], "x86_64");
        fixup
            .write_inputs(
                &system_configuration(Arch::X86_64, "mig-1"),
                &replica_disk_map(),
                &network_interface_map(),
            )
            .unwrap();
        fixup.begin().unwrap();
        assert!(fixup.result().is_none());
        fs::write(
            fixup.file("result.json"),
            r#"{"status":"failed","errors":[{"code":"config.invalid"}]}"#,
        )
        .unwrap();
        fs::write(fixup.file("END"), "").unwrap();
        let result = fixup.result().unwrap();
        assert_eq!(error_codes(&result), ["config.invalid"]);
        let back: Value =
            serde_json::from_str(&fs::read_to_string(fixup.file(SYSTEM_CONFIGURATION)).unwrap())
                .unwrap();
        assert_eq!(back["source"]["arch"], "x86_64");
    }
}
