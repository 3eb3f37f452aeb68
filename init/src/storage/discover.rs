//! Disk discovery from sysfs. Everything here is a pure function of a
//! sysfs tree passed in (tests build fixture trees), so the numbering rules
//! of PROTOCOL.md are tested without hardware:
//!
//! - SCSI (`scsiN`): PVSCSI, LSI Logic, LSI Logic SAS and BusLogic HBAs,
//!   numbered together in PCI order; `unit` is the target id, the disk
//!   whose address is `H:0:U:0`.
//! - SATA (`sataN`): AHCI controllers in PCI order; `unit` is the port.
//! - NVMe (`nvmeN`): NVMe controllers in PCI order; `unit` is the
//!   namespace id − 1.

use std::fs;
use std::path::{Path, PathBuf};

/// The kinds of controller the protocol addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bus {
    Scsi,
    Sata,
    Nvme,
}

impl Bus {
    pub fn prefix(self) -> &'static str {
        match self {
            Bus::Scsi => "scsi",
            Bus::Sata => "sata",
            Bus::Nvme => "nvme",
        }
    }

    /// The PCI drivers whose controllers count as this kind.
    pub fn drivers(self) -> &'static [&'static str] {
        match self {
            Bus::Scsi => &["vmw_pvscsi", "mptspi", "mptsas", "BusLogic"],
            Bus::Sata => &["ahci"],
            Bus::Nvme => &["nvme"],
        }
    }
}

/// A disk address: `scsi0:15`, `sata0:1`, `nvme0:0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub bus: Bus,
    pub controller: u32,
    pub unit: u32,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}:{}", self.bus.prefix(), self.controller, self.unit)
    }
}

impl Address {
    /// Parses `scsi0:15` and the like.
    pub fn parse(s: &str) -> Option<Address> {
        let (ctl, unit) = s.split_once(':')?;
        let unit = unit.parse().ok()?;
        for bus in [Bus::Scsi, Bus::Sata, Bus::Nvme] {
            if let Some(n) = ctl.strip_prefix(bus.prefix()) {
                return Some(Address {
                    bus,
                    controller: n.parse().ok()?,
                    unit,
                });
            }
        }
        None
    }
}

/// A whole disk the kernel shows in `/sys/block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name: `sda`, `nvme0n1`.
    pub name: String,
    /// Its address, when it sits on a controller the protocol knows.
    pub address: Option<Address>,
    /// The PCI address of its controller.
    pub pci: Option<String>,
    /// The driver of its controller.
    pub driver: Option<String>,
    pub size_bytes: u64,
    /// `major:minor`.
    pub dev: Option<String>,
    pub removable: bool,
    pub read_only: bool,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Is this a PCI function name, `0000:00:1f.2`?
fn is_pci_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// The controllers of a kind, in PCI order (the protocol's numbering).
pub fn controllers(sysfs: &Path, bus: Bus) -> Vec<String> {
    let mut out = Vec::new();
    for drv in bus.drivers() {
        let dir = sysfs.join("bus/pci/drivers").join(drv);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_pci_name(&name) {
                out.push(name);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Resolves `/sys/block/<name>/device` to the device path's components
/// (relative to sysfs), without touching anything outside `sysfs`.
fn device_components(sysfs: &Path, name: &str) -> Option<Vec<String>> {
    let link = sysfs.join("block").join(name).join("device");
    let target = fs::canonicalize(&link).ok()?;
    let sysfs_c = fs::canonicalize(sysfs).ok()?;
    let rel = target.strip_prefix(&sysfs_c).ok()?;
    Some(
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect(),
    )
}

fn driver_of(sysfs: &Path, components: &[String], pci_idx: usize) -> Option<String> {
    let mut p = sysfs.to_path_buf();
    for c in &components[..=pci_idx] {
        p.push(c);
    }
    let link = fs::read_link(p.join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// Finds the address of one disk from its device path.
fn address_of(
    sysfs: &Path,
    name: &str,
    comps: &[String],
) -> (Option<Address>, Option<String>, Option<String>) {
    // The last PCI function in the path is the disk's controller.
    let Some(pci_idx) = comps.iter().rposition(|c| is_pci_name(c)) else {
        return (None, None, None);
    };
    let pci = comps[pci_idx].clone();
    let driver = driver_of(sysfs, comps, pci_idx);
    let Some(drv) = driver.clone() else {
        return (None, Some(pci), None);
    };
    let bus = [Bus::Scsi, Bus::Sata, Bus::Nvme]
        .into_iter()
        .find(|b| b.drivers().contains(&drv.as_str()));
    let Some(bus) = bus else {
        return (None, Some(pci), driver);
    };
    let Some(controller) = controllers(sysfs, bus).iter().position(|c| *c == pci) else {
        return (None, Some(pci), driver);
    };
    let controller = controller as u32;
    let rest = &comps[pci_idx + 1..];
    let unit = match bus {
        Bus::Scsi => rest.last().and_then(|hctl| scsi_target_of(hctl)),
        Bus::Sata => sata_port(sysfs, comps, pci_idx),
        Bus::Nvme => read_trim(&sysfs.join("block").join(name).join("nsid"))
            .and_then(|s| s.parse::<u32>().ok())
            .and_then(|n| n.checked_sub(1)),
    };
    (
        unit.map(|unit| Address {
            bus,
            controller,
            unit,
        }),
        Some(pci),
        driver,
    )
}

/// `2:0:15:0` → 15 (the target id; channel and LUN must be 0).
fn scsi_target_of(hctl: &str) -> Option<u32> {
    let parts: Vec<&str> = hctl.split(':').collect();
    if parts.len() != 4 || parts[1] != "0" || parts[3] != "0" {
        return None;
    }
    parts[0].parse::<u32>().ok()?;
    parts[2].parse().ok()
}

/// The AHCI port of a disk: its `ataN` among the controller's `ata*`
/// children, in number order (ports are numbered consecutively).
fn sata_port(sysfs: &Path, comps: &[String], pci_idx: usize) -> Option<u32> {
    let ata = comps.get(pci_idx + 1)?;
    let n: u32 = ata.strip_prefix("ata")?.parse().ok()?;
    let mut dir = sysfs.to_path_buf();
    for c in &comps[..=pci_idx] {
        dir.push(c);
    }
    let mut ports: Vec<u32> = fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("ata")
                .and_then(|s| s.parse().ok())
        })
        .collect();
    ports.sort_unstable();
    ports.iter().position(|&p| p == n).map(|i| i as u32)
}

/// Every whole disk in `<sysfs>/block` (loop, ram, zram, dm, md and
/// optical devices left out), with its address where it has one.
pub fn scan(sysfs: &Path) -> Vec<Disk> {
    let mut disks = Vec::new();
    let Ok(entries) = fs::read_dir(sysfs.join("block")) else {
        return disks;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        if ["loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let base = sysfs.join("block").join(&name);
        let comps = device_components(sysfs, &name).unwrap_or_default();
        let (address, pci, driver) = address_of(sysfs, &name, &comps);
        let sectors: u64 = read_trim(&base.join("size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        disks.push(Disk {
            size_bytes: sectors.saturating_mul(512),
            dev: read_trim(&base.join("dev")),
            removable: read_trim(&base.join("removable")).as_deref() == Some("1"),
            read_only: read_trim(&base.join("ro")).as_deref() == Some("1"),
            name,
            address,
            pci,
            driver,
        });
    }
    disks
}

/// The disk at an address.
pub fn find<'a>(disks: &'a [Disk], addr: &Address) -> Option<&'a Disk> {
    disks.iter().find(|d| d.address.as_ref() == Some(addr))
}

/// The `/dev` path of a disk.
pub fn dev_path(disk: &Disk) -> PathBuf {
    PathBuf::from("/dev").join(&disk.name)
}

#[cfg(test)]
pub(crate) mod fixture {
    //! Builds fake sysfs trees: PCI controllers bound to drivers, and
    //! block devices linked to their device paths.
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    pub fn controller(sysfs: &Path, pci: &str, driver: &str) {
        let dev = sysfs.join("devices/pci0000:00").join(pci);
        fs::create_dir_all(&dev).unwrap();
        let drv = sysfs.join("bus/pci/drivers").join(driver);
        fs::create_dir_all(&drv).unwrap();
        symlink(&dev, drv.join(pci)).unwrap();
        symlink(&drv, dev.join("driver")).unwrap();
    }

    /// `rel` is the device path below the controller, e.g.
    /// `host2/target2:0:15/2:0:15:0`.
    pub fn disk(sysfs: &Path, name: &str, pci: &str, rel: &str, sectors: u64) {
        let dev = sysfs.join("devices/pci0000:00").join(pci).join(rel);
        fs::create_dir_all(&dev).unwrap();
        let blk = sysfs.join("block").join(name);
        fs::create_dir_all(&blk).unwrap();
        symlink(&dev, blk.join("device")).unwrap();
        fs::write(blk.join("size"), format!("{sectors}\n")).unwrap();
        fs::write(blk.join("dev"), "8:0\n").unwrap();
        fs::write(blk.join("removable"), "0\n").unwrap();
        fs::write(blk.join("ro"), "0\n").unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_addresses() {
        for s in ["scsi0:15", "sata1:0", "nvme3:63"] {
            assert_eq!(addr(s).to_string(), s);
        }
        for bad in ["scsi:1", "scsi0", "ide0:1", "scsi0:x", ""] {
            assert_eq!(Address::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_controllers_in_pci_order_across_scsi_drivers() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path();
        // A LSI Logic SAS HBA before the PVSCSI one in PCI order.
        controller(s, "0000:03:00.0", "mptsas");
        controller(s, "0000:0b:00.0", "vmw_pvscsi");
        controller(s, "0000:00:1f.2", "ahci");
        controller(s, "0000:00:1f.3", "ahci");
        controller(s, "0000:13:00.0", "nvme");
        disk(
            s,
            "sda",
            "0000:03:00.0",
            "host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0",
            2048,
        );
        disk(
            s,
            "sdb",
            "0000:0b:00.0",
            "host2/target2:0:15/2:0:15:0",
            4096,
        );
        disk(s, "sdc", "0000:0b:00.0", "host2/target2:0:1/2:0:1:0", 1);
        disk(
            s,
            "sdd",
            "0000:00:1f.3",
            "ata7/host6/target6:0:0/6:0:0:0",
            1,
        );
        fs::create_dir_all(s.join("devices/pci0000:00/0000:00:1f.3/ata8")).unwrap();
        disk(
            s,
            "sde",
            "0000:00:1f.3",
            "ata8/host7/target7:0:0/7:0:0:0",
            1,
        );
        disk(s, "nvme0n2", "0000:13:00.0", "nvme/nvme0", 1);
        fs::write(s.join("block/nvme0n2/nsid"), "2\n").unwrap();
        disk(s, "loop0", "0000:0b:00.0", "x", 1);
        let disks = scan(s);
        let got: Vec<(String, Option<String>)> = disks
            .iter()
            .map(|d| (d.name.clone(), d.address.map(|a| a.to_string())))
            .collect();
        assert_eq!(
            got,
            vec![
                ("nvme0n2".into(), Some("nvme0:1".into())),
                ("sda".into(), Some("scsi0:0".into())),
                ("sdb".into(), Some("scsi1:15".into())),
                ("sdc".into(), Some("scsi1:1".into())),
                ("sdd".into(), Some("sata1:0".into())),
                ("sde".into(), Some("sata1:1".into())),
            ]
        );
        assert_eq!(
            find(&disks, &addr("scsi1:15")).unwrap().size_bytes,
            4096 * 512
        );
        assert!(find(&disks, &addr("scsi0:1")).is_none());
    }

    #[test]
    fn disks_on_unknown_controllers_have_no_address() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path();
        controller(s, "0000:00:04.0", "virtio-pci");
        disk(s, "vda", "0000:00:04.0", "virtio1", 10);
        let disks = scan(s);
        assert_eq!(disks.len(), 1);
        assert_eq!(disks[0].address, None);
        assert_eq!(disks[0].driver.as_deref(), Some("virtio-pci"));
    }

    #[test]
    fn empty_or_missing_sysfs_gives_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert!(scan(d.path()).is_empty());
        assert!(scan(&d.path().join("missing")).is_empty());
    }

    #[test]
    fn scsi_target_needs_channel_and_lun_zero() {
        assert_eq!(scsi_target_of("2:0:15:0"), Some(15));
        assert_eq!(scsi_target_of("2:0:15:1"), None);
        assert_eq!(scsi_target_of("2:1:15:0"), None);
        assert_eq!(scsi_target_of("target2:0:15"), None);
    }
}
