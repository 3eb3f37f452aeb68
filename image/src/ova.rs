//! The OVA of the stack: an OVF 1.0 package (DMTF DSP0243) in one tar.
//!
//! ESXi cannot attach a hosted sparse or stream-optimized VMDK as it is;
//! vSphere imports an OVA. The package holds, in this order (OVF 1.0
//! §5.3: descriptor first, then manifest, then the referenced files):
//!
//! 1. `<name>.ovf`, the descriptor: one VirtualSystem with minimal virtual
//!    hardware (1 vCPU, 512 MiB, one SCSI controller) and the disk;
//! 2. `<name>.mf` (optional), the manifest: `SHA256(file)= hex` lines for
//!    the descriptor and the disk;
//! 3. `<name>-disk1.vmdk`, the stream-optimized disk.
//!
//! The tar is POSIX ustar with uid/gid 0, mode 0644 and every mtime set to
//! the build's SOURCE_DATE_EPOCH, so the same inputs give the same bytes.
//!
//! The OVA is only a container for the disk: the disk sits at unit 0 of
//! the controller of the container VM. The migration manager does not use
//! that VM; it attaches the disk at `scsi0:15` of the migrated VM.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::rawimg::StagedFile;
use crate::vmdk::{COMPRESS_DEFLATE, FLAG_COMPRESSED, SECTOR, SPARSE_MAGIC};

/// The OVF disk format URI of a stream-optimized VMDK.
pub const STREAM_OPTIMIZED_FORMAT: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// An error of writing an OVA.
#[derive(Debug, thiserror::Error)]
pub enum OvaError {
    /// The package name is unusable as a file name inside the tar.
    #[error(
        "OVA name {name:?} must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with a dot"
    )]
    BadName {
        /// The name given.
        name: String,
    },
    /// SOURCE_DATE_EPOCH is set but is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH={value:?} is not a non-negative integer")]
    BadSourceDateEpoch {
        /// The variable's value.
        value: String,
    },
    /// The disk is not a stream-optimized VMDK.
    #[error("{} is not a stream-optimized VMDK: {reason}", path.display())]
    NotStreamOptimized {
        /// The disk given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading the disk failed.
    #[error("reading {}", path.display())]
    Read {
        /// The disk given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The disk changed size while it was being packed.
    #[error("{} changed while it was being packed", path.display())]
    Changed {
        /// The disk given.
        path: PathBuf,
    },
    /// Writing the OVA failed.
    #[error("writing {}", path.display())]
    Write {
        /// The destination path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// The SCSI controller of the container VM (`rasd:ResourceSubType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScsiController {
    /// LSI Logic parallel (`lsilogic`).
    LsiLogic,
    /// LSI Logic SAS (`lsilogicsas`).
    LsiLogicSas,
    /// VMware paravirtual SCSI (`VirtualSCSI`).
    #[default]
    Pvscsi,
}

impl ScsiController {
    /// The `rasd:ResourceSubType` value.
    pub fn resource_subtype(self) -> &'static str {
        match self {
            ScsiController::LsiLogic => "lsilogic",
            ScsiController::LsiLogicSas => "lsilogicsas",
            ScsiController::Pvscsi => "VirtualSCSI",
        }
    }
}

/// Options of [`write()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvaOptions {
    /// The package and VirtualSystem name; the files inside are
    /// `<name>.ovf`, `<name>.mf` and `<name>-disk1.vmdk`.
    pub name: String,
    /// The mtime of every tar entry (seconds since the epoch).
    pub mtime: u64,
    /// Whether to add the SHA-256 manifest.
    pub manifest: bool,
    /// The controller the disk is attached to.
    pub controller: ScsiController,
    /// Virtual CPUs of the container VM.
    pub cpus: u32,
    /// Memory of the container VM in MiB.
    pub memory_mib: u64,
    /// The virtual hardware family, `vmx-<N>`.
    pub hardware_version: u32,
}

impl OvaOptions {
    /// Defaults: mtime 0, a manifest, a pvscsi controller, 1 vCPU, 512 MiB,
    /// `vmx-13` (ESXi 6.5 and later).
    pub fn new(name: impl Into<String>) -> OvaOptions {
        OvaOptions {
            name: name.into(),
            mtime: 0,
            manifest: true,
            controller: ScsiController::default(),
            cpus: 1,
            memory_mib: 512,
            hardware_version: 13,
        }
    }

    /// [`OvaOptions::new`] with the mtime from SOURCE_DATE_EPOCH (0 when
    /// it is unset or empty).
    pub fn from_env(name: impl Into<String>) -> Result<OvaOptions, OvaError> {
        let mut options = OvaOptions::new(name);
        options.mtime = source_date_epoch()?;
        Ok(options)
    }

    /// The descriptor's file name inside the tar.
    pub fn ovf_name(&self) -> String {
        format!("{}.ovf", self.name)
    }

    /// The manifest's file name inside the tar.
    pub fn mf_name(&self) -> String {
        format!("{}.mf", self.name)
    }

    /// The disk's file name inside the tar.
    pub fn vmdk_name(&self) -> String {
        format!("{}-disk1.vmdk", self.name)
    }
}

/// SOURCE_DATE_EPOCH in seconds; 0 when unset or empty.
pub fn source_date_epoch() -> Result<u64, OvaError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.trim().is_empty() => Ok(0),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| OvaError::BadSourceDateEpoch { value: v }),
        Err(std::env::VarError::NotPresent) => Ok(0),
        Err(std::env::VarError::NotUnicode(v)) => Err(OvaError::BadSourceDateEpoch {
            value: v.to_string_lossy().into_owned(),
        }),
    }
}

/// What the descriptor says about the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskInfo {
    /// The virtual size in bytes.
    pub capacity: u64,
    /// The size of the VMDK file in bytes.
    pub file_size: u64,
}

/// Packs the stream-optimized VMDK at `vmdk` into an OVA at `out`. The
/// disk's capacity is read from the VMDK header.
pub fn write(vmdk: &Path, out: &Path, options: &OvaOptions) -> Result<(), OvaError> {
    check_name(&options.name)?;
    let rerr = |source| OvaError::Read {
        path: vmdk.into(),
        source,
    };
    let werr = |source| OvaError::Write {
        path: out.into(),
        source,
    };

    let mut disk = File::open(vmdk).map_err(rerr)?;
    let file_size = disk.metadata().map_err(rerr)?.len();
    let capacity = stream_optimized_capacity(&mut disk, vmdk)?;
    let info = DiskInfo {
        capacity,
        file_size,
    };
    let ovf = descriptor(options, &info);

    let mut staged = StagedFile::create(out).map_err(werr)?;
    {
        let mut tar = tar::Builder::new(staged.writer());
        append(
            &mut tar,
            options,
            &options.ovf_name(),
            ovf.len() as u64,
            ovf.as_bytes(),
        )
        .map_err(werr)?;
        if options.manifest {
            let disk_hash = sha256_file(vmdk, file_size)?;
            let manifest = format!(
                "SHA256({})= {}\nSHA256({})= {}\n",
                options.ovf_name(),
                hex(&Sha256::digest(ovf.as_bytes())),
                options.vmdk_name(),
                hex(&disk_hash),
            );
            append(
                &mut tar,
                options,
                &options.mf_name(),
                manifest.len() as u64,
                manifest.as_bytes(),
            )
            .map_err(werr)?;
        }
        let disk = File::open(vmdk).map_err(rerr)?;
        let mut counted = CountingReader {
            inner: disk.take(file_size),
            count: 0,
        };
        append(
            &mut tar,
            options,
            &options.vmdk_name(),
            file_size,
            &mut counted,
        )
        .map_err(werr)?;
        if counted.count != file_size {
            return Err(OvaError::Changed { path: vmdk.into() });
        }
        tar.finish().map_err(werr)?;
    }
    staged.commit().map_err(werr)
}

/// The OVF 1.0 descriptor.
pub fn descriptor(options: &OvaOptions, disk: &DiskInfo) -> String {
    let name = xml_escape(&options.name);
    let vmdk = xml_escape(&options.vmdk_name());
    let cpus = options.cpus;
    let mem = options.memory_mib;
    let hw = options.hardware_version;
    let subtype = options.controller.resource_subtype();
    let capacity = disk.capacity;
    let file_size = disk.file_size;
    // The rasd elements follow the CIM schema's (alphabetical) order, which
    // validating readers such as ovftool enforce. No NetworkSection: the
    // container VM has no network card and OVF 1.0 requires at least one
    // Network in a NetworkSection.
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{vmdk}" ovf:id="file1" ovf:size="{file_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="{STREAM_OPTIMIZED_FORMAT}"/>
  </DiskSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="otherLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-{hw:02}</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{mem}MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{mem}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>{subtype}</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#
    )
}

/// Reads the capacity in bytes from a stream-optimized VMDK's header,
/// checking that it is one.
fn stream_optimized_capacity(disk: &mut File, path: &Path) -> Result<u64, OvaError> {
    let mut h = [0u8; 512];
    disk.read_exact(&mut h).map_err(|source| OvaError::Read {
        path: path.into(),
        source,
    })?;
    let bad = |reason| OvaError::NotStreamOptimized {
        path: path.into(),
        reason,
    };
    let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    if u32_at(0) != SPARSE_MAGIC {
        return Err(bad("no sparse extent magic"));
    }
    if u32_at(4) != 3 {
        return Err(bad("not a version 3 sparse extent"));
    }
    if u32_at(8) & FLAG_COMPRESSED == 0 || u16::from_le_bytes([h[77], h[78]]) != COMPRESS_DEFLATE {
        return Err(bad("grains are not deflate-compressed"));
    }
    let mut cap = [0u8; 8];
    cap.copy_from_slice(&h[12..20]);
    Ok(u64::from_le_bytes(cap) * SECTOR)
}

fn check_name(name: &str) -> Result<(), OvaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(OvaError::BadName { name: name.into() })
    }
}

fn append<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    options: &OvaOptions,
    name: &str,
    size: u64,
    data: R,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(options.mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append(&header, data)
}

fn sha256_file(path: &Path, size: u64) -> Result<[u8; 32], OvaError> {
    let rerr = |source| OvaError::Read {
        path: path.into(),
        source,
    };
    let mut file = File::open(path).map_err(rerr)?.take(size);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(rerr)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if total != size {
        return Err(OvaError::Changed { path: path.into() });
    }
    Ok(hasher.finalize().into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("osam-fixup-1.0").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(".x").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("a b").is_err());
    }

    #[test]
    fn descriptor_names_the_disk() {
        let o = OvaOptions::new("osam");
        let d = descriptor(
            &o,
            &DiskInfo {
                capacity: 128 << 20,
                file_size: 4096,
            },
        );
        assert!(d.contains(r#"ovf:href="osam-disk1.vmdk""#));
        assert!(d.contains(r#"ovf:capacity="134217728""#));
        assert!(d.contains(STREAM_OPTIMIZED_FORMAT));
        assert!(d.contains("<rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>"));
        assert!(d.contains("vmx-13"));
    }
}
