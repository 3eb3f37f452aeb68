//! The `/dev/disk/by-{uuid,label,partuuid,partlabel,id,path}` links that
//! udev would make. The stack has no udev, and the guest's tools read
//! these links (grub-mkconfig writes `root=UUID=` only when the by-uuid
//! link exists; dracut's host-only mode reads them too), so PID 1 makes
//! them itself:
//!
//! 1. [`facts_from_sysfs`] gathers what udev would know: partitions from
//!    sysfs, PARTUUIDs from the partition table, file systems from
//!    [`probe`](super::probe), and the identity attributes of each disk;
//! 2. [`plan`] (or [`plan_links`]) turns them into link paths, pure and
//!    testable; duplicates (cloned disks) go to the first disk in address
//!    order, with a warning;
//! 3. [`create_links`] makes them below a `/dev` root.
//!
//! Names follow udev's rules (60-persistent-storage.rules, path_id,
//! scsi_id, ata_id): by-uuid and by-label only for file systems, swap and
//! crypto (not LVM2/md members), escaped the way blkid's
//! `blkid_encode_string` does (`\x20` for a space); by-id with
//! whitespace runs turned into `_`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Component, Path};

use super::discover::{Address, Bus, Disk};
use super::partition::read_partitions;
use super::probe::{FsInfo, probe};

/// One partition as udev would see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartFacts {
    /// Kernel name: `sda1`, `nvme0n1p2`.
    pub name: String,
    pub number: u32,
    pub fs: Option<FsInfo>,
    pub partuuid: Option<String>,
    /// The GPT partition name.
    pub partlabel: Option<String>,
}

/// The identity attributes of a disk (from `/sys/block/<d>/device` and
/// `/sys/block/<d>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdFacts {
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// `naa.…`, `eui.…`, `t10.…` (SCSI/ATA) or the NVMe namespace's wwid.
    pub wwid: Option<String>,
    /// SCSI `host:channel:target:lun` with the host number relative to
    /// the first host of its PCI controller (what path_id prints).
    pub hctl: Option<String>,
    /// The AHCI port number as path_id prints it (1-based).
    pub ata_port: Option<u32>,
    /// NVMe namespace id.
    pub nsid: Option<u32>,
}

/// One whole disk as udev would see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskFacts {
    /// Kernel name: `sda`, `nvme0n1`.
    pub name: String,
    pub address: Option<Address>,
    /// The PCI address of its controller.
    pub pci: Option<String>,
    /// What the whole disk holds when it has no partitions.
    pub fs: Option<FsInfo>,
    pub partitions: Vec<PartFacts>,
    pub ids: IdFacts,
    /// Problems met while gathering (unreadable device, bad table).
    pub warnings: Vec<String>,
}

/// Links and the duplicates left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkPlan {
    /// (link path relative to the `/dev` root, e.g. `disk/by-uuid/…`;
    /// target relative to the link, e.g. `../../sda1`), sorted by path.
    pub links: Vec<(String, String)>,
    /// One line per link that two devices claimed.
    pub warnings: Vec<String>,
}

/// The links for these disks (see [`plan`]; warnings dropped).
pub fn plan_links(disks: &[DiskFacts]) -> Vec<(String, String)> {
    plan(disks).links
}

/// blkid's `blkid_encode_string`: keeps ASCII alphanumerics, `#+-.:=@_`
/// and non-ASCII characters; every other byte becomes `\xHH`.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) || !c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
    }
    out
}

/// udev's whitespace rule for identity strings: trimmed, each run of
/// whitespace one `_`, characters outside `[A-Za-z0-9#+-.:=@_]` `_`.
fn id_clean(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `ata-<model>_<serial>` from a libata `t10.ATA     <model 40><serial 20>`
/// wwid, which keeps the full model (the `model` attribute is cut to 16).
fn ata_from_t10(wwid: &str) -> Option<(String, String)> {
    let rest = wwid.strip_prefix("t10.ATA")?;
    let rest = rest.get(5..)?; // the vendor field's padding
    let model = rest.get(..40)?.trim();
    let serial = rest.get(40..)?.trim();
    (!model.is_empty() && !serial.is_empty()).then(|| (model.to_string(), serial.to_string()))
}

/// The by-id names of a disk (without `-partN`).
fn id_names(d: &DiskFacts) -> Vec<String> {
    let ids = &d.ids;
    let wwid = ids.wwid.as_deref().map(str::trim).filter(|w| !w.is_empty());
    let naa = wwid.and_then(|w| w.strip_prefix("naa."));
    let mut out = Vec::new();
    match d.address.map(|a| a.bus) {
        Some(Bus::Scsi) => {
            if let Some(x) = naa {
                out.push(format!("scsi-3{}", x.to_ascii_lowercase()));
            } else if let Some(x) = wwid.and_then(|w| w.strip_prefix("eui.")) {
                out.push(format!("scsi-2{}", x.to_ascii_lowercase()));
            } else if let Some(x) = wwid.and_then(|w| w.strip_prefix("t10.")) {
                out.push(format!("scsi-1{}", id_clean(x)));
            } else if let (Some(v), Some(m), Some(s)) = (&ids.vendor, &ids.model, &ids.serial) {
                out.push(format!(
                    "scsi-S{}_{}_{}",
                    id_clean(v),
                    id_clean(m),
                    id_clean(s)
                ));
            }
        }
        Some(Bus::Sata) => {
            let ms = wwid.and_then(ata_from_t10).or_else(|| {
                ids.model
                    .clone()
                    .zip(ids.serial.clone())
                    .filter(|(m, s)| !m.trim().is_empty() && !s.trim().is_empty())
            });
            if let Some((m, s)) = ms {
                out.push(format!("ata-{}_{}", id_clean(&m), id_clean(&s)));
            }
        }
        Some(Bus::Nvme) => {
            let ms = ids.model.as_ref().zip(ids.serial.as_ref());
            if let Some((m, s)) = ms.filter(|(m, s)| !m.trim().is_empty() && !s.trim().is_empty()) {
                out.push(format!("nvme-{}_{}", id_clean(m), id_clean(s)));
            }
            if let Some(w) = wwid {
                out.push(format!("nvme-{}", id_clean(w)));
            }
        }
        None => {}
    }
    if let Some(x) = naa.filter(|_| d.address.map(|a| a.bus) != Some(Bus::Nvme)) {
        out.push(format!("wwn-0x{}", x.to_ascii_lowercase()));
    }
    out
}

/// The by-path name of a disk (without `-partN`).
fn path_name(d: &DiskFacts) -> Option<String> {
    let pci = d.pci.as_deref()?;
    let tail = match d.address?.bus {
        Bus::Scsi => format!("scsi-{}", d.ids.hctl.as_deref()?),
        Bus::Sata => format!("ata-{}", d.ids.ata_port?),
        Bus::Nvme => format!("nvme-{}", d.ids.nsid?),
    };
    Some(format!("pci-{pci}-{tail}"))
}

struct Planner {
    links: BTreeMap<String, String>,
    warnings: Vec<String>,
}

impl Planner {
    fn claim(&mut self, link: String, dev: &str) {
        let target = format!("../../{dev}");
        match self.links.get(&link) {
            None => {
                self.links.insert(link, target);
            }
            Some(t) if *t == target => {}
            Some(t) => {
                let first = t.trim_start_matches("../../");
                self.warnings.push(format!(
                    "/dev/{link}: /dev/{dev} has the same identity as /dev/{first} (a cloned disk?); the link stays with /dev/{first}"
                ));
            }
        }
    }

    fn fs(&mut self, fs: Option<&FsInfo>, dev: &str) {
        let Some(fs) = fs.filter(|f| f.has_fs_links()) else {
            return;
        };
        if let Some(u) = fs.uuid.as_deref().filter(|u| !u.is_empty()) {
            self.claim(format!("disk/by-uuid/{}", encode(u)), dev);
        }
        if let Some(l) = fs.label.as_deref().filter(|l| !l.is_empty()) {
            self.claim(format!("disk/by-label/{}", encode(l)), dev);
        }
    }
}

/// Plans the links of these disks. Disks are taken in address order
/// (disks without an address last, by name), so of two clones the first
/// disk in address order keeps a duplicate UUID/label/PARTUUID link.
pub fn plan(disks: &[DiskFacts]) -> LinkPlan {
    let mut order: Vec<&DiskFacts> = disks.iter().collect();
    order.sort_by(|a, b| {
        (a.address.is_none(), a.address, &a.name).cmp(&(b.address.is_none(), b.address, &b.name))
    });
    let mut p = Planner {
        links: BTreeMap::new(),
        warnings: Vec::new(),
    };
    for d in order {
        if !valid_name(&d.name) {
            p.warnings
                .push(format!("{:?}: not a device name, no links", d.name));
            continue;
        }
        let ids = id_names(d);
        let path = path_name(d);
        for id in &ids {
            p.claim(format!("disk/by-id/{id}"), &d.name);
        }
        if let Some(path) = &path {
            p.claim(format!("disk/by-path/{path}"), &d.name);
        }
        if d.partitions.is_empty() {
            p.fs(d.fs.as_ref(), &d.name);
        }
        for part in &d.partitions {
            if !valid_name(&part.name) {
                p.warnings
                    .push(format!("{:?}: not a device name, no links", part.name));
                continue;
            }
            for id in &ids {
                p.claim(format!("disk/by-id/{id}-part{}", part.number), &part.name);
            }
            if let Some(path) = &path {
                p.claim(
                    format!("disk/by-path/{path}-part{}", part.number),
                    &part.name,
                );
            }
            if let Some(u) = part.partuuid.as_deref().filter(|u| !u.is_empty()) {
                p.claim(format!("disk/by-partuuid/{}", encode(u)), &part.name);
            }
            if let Some(l) = part.partlabel.as_deref().filter(|l| !l.is_empty()) {
                p.claim(format!("disk/by-partlabel/{}", encode(l)), &part.name);
            }
            p.fs(part.fs.as_ref(), &part.name);
        }
    }
    LinkPlan {
        links: p.links.into_iter().collect(),
        warnings: p.warnings,
    }
}

/// A kernel block device name: one path component, no dots-only names.
fn valid_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('\0')
}

/// Creates the planned links below `dev_root` (normally `/dev`), making
/// the directories they need. A stale link or file in the way is
/// replaced; an existing link that already points at the target is kept.
/// Nothing outside `dev_root` is followed or touched: a symlink where a
/// directory is needed is removed and replaced by a directory. Link paths
/// that are absolute or contain `..` are refused. Returns how many links
/// were created.
pub fn create_links(dev_root: &Path, links: &[(String, String)]) -> io::Result<usize> {
    let mut made = 0;
    for (link, target) in links {
        let rel = Path::new(link);
        let parts: Vec<&std::ffi::OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => Ok(s),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{link}: not a plain relative link path"),
                )),
            })
            .collect::<io::Result<_>>()?;
        let Some((leaf, dirs)) = parts.split_last() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty link path",
            ));
        };
        let mut dir = dev_root.to_path_buf();
        for d in dirs {
            dir.push(d);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(&dir)?;
                    fs::create_dir(&dir)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&dir)?,
                Err(e) => return Err(e),
            }
        }
        let path = dir.join(leaf);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                if fs::read_link(&path)? == Path::new(target) {
                    continue;
                }
                fs::remove_file(&path)?;
            }
            Ok(m) if m.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: a directory is in the way", path.display()),
                ));
            }
            Ok(_) => fs::remove_file(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        symlink(target, &path)?;
        made += 1;
    }
    Ok(made)
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read(p)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_num(p: &Path) -> Option<u64> {
    read_trim(p)?.parse().ok()
}

/// The serial from a SCSI VPD page 0x80 (`device/vpd_pg80`).
fn vpd80_serial(b: &[u8]) -> Option<String> {
    if b.get(1) != Some(&0x80) {
        return None;
    }
    let n = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
    let s = b.get(4..4usize.saturating_add(n).min(b.len()))?;
    let s = String::from_utf8_lossy(s)
        .trim()
        .trim_matches('\0')
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

fn is_pci_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b.get(4) == Some(&b':')
        && b.get(7) == Some(&b':')
        && b.get(10) == Some(&b'.')
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// The lowest `<prefix>N` number among a directory's entries.
fn min_numbered(dir: &Path, prefix: &str) -> Option<u32> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(prefix)?
                .parse::<u32>()
                .ok()
        })
        .min()
}

/// SCSI address and AHCI port of a disk from its sysfs device path.
fn path_facts(sysfs: &Path, name: &str, ids: &mut IdFacts, addr: Option<Address>) {
    let Ok(dev) = fs::canonicalize(sysfs.join("block").join(name).join("device")) else {
        return;
    };
    let Some(pci_dir) = dev.ancestors().find(|a| {
        a.file_name()
            .and_then(|f| f.to_str())
            .is_some_and(is_pci_name)
    }) else {
        return;
    };
    let hctl = dev.file_name().and_then(|f| f.to_str()).and_then(|f| {
        let v: Vec<u32> = f
            .split(':')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == 4).then_some(v)
    });
    let rel = dev.strip_prefix(pci_dir).ok();
    let mut host_parent = pci_dir.to_path_buf();
    let mut ata = None;
    for c in rel.iter().flat_map(|r| r.components()) {
        let c = c.as_os_str().to_string_lossy();
        if c.starts_with("host") {
            break;
        }
        if let Some(n) = c.strip_prefix("ata").filter(|n| n.parse::<u32>().is_ok()) {
            ata = Some((c.to_string(), n.to_string()));
        }
        host_parent.push(c.as_ref());
    }
    if let Some(v) = hctl {
        let base = min_numbered(&host_parent, "host").unwrap_or(v[0]);
        ids.hctl = Some(format!(
            "{}:{}:{}:{}",
            v[0].saturating_sub(base),
            v[1],
            v[2],
            v[3]
        ));
    }
    if let Some((ata, _)) = ata {
        let port = [
            pci_dir
                .join(&ata)
                .join("ata_port")
                .join(&ata)
                .join("port_no"),
            sysfs.join("class/ata_port").join(&ata).join("port_no"),
        ]
        .iter()
        .find_map(|p| read_num(p))
        .and_then(|n| u32::try_from(n).ok());
        ids.ata_port = port.or_else(|| addr.map(|a| a.unit.saturating_add(1)));
    }
}

/// Gathers the facts of `disks` from a sysfs tree and the device nodes in
/// `dev` (`dev/<name>` is read for the partition table and probed at each
/// partition's offset; in tests an image file stands in for it). Never
/// fails: what cannot be read is left out and noted in `warnings`.
pub fn facts_from_sysfs(sysfs: &Path, dev: &Path, disks: &[Disk]) -> Vec<DiskFacts> {
    disks.iter().map(|d| disk_facts(sysfs, dev, d)).collect()
}

fn disk_facts(sysfs: &Path, dev: &Path, d: &Disk) -> DiskFacts {
    let base = sysfs.join("block").join(&d.name);
    let devdir = base.join("device");
    let mut ids = IdFacts {
        vendor: read_trim(&devdir.join("vendor")),
        model: read_trim(&devdir.join("model")),
        serial: read_trim(&devdir.join("serial")).or_else(|| {
            fs::read(devdir.join("vpd_pg80"))
                .ok()
                .and_then(|b| vpd80_serial(&b))
        }),
        wwid: read_trim(&devdir.join("wwid")).or_else(|| read_trim(&base.join("wwid"))),
        nsid: read_num(&base.join("nsid")).and_then(|n| u32::try_from(n).ok()),
        ..IdFacts::default()
    };
    path_facts(sysfs, &d.name, &mut ids, d.address);
    let mut facts = DiskFacts {
        name: d.name.clone(),
        address: d.address,
        pci: d.pci.clone(),
        ids,
        ..DiskFacts::default()
    };
    // Partitions from sysfs, in number order.
    let mut parts: Vec<(u32, String, u64, u64)> = fs::read_dir(&base)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let p = base.join(&name);
                    let number = u32::try_from(read_num(&p.join("partition"))?).ok()?;
                    Some((
                        number,
                        name,
                        read_num(&p.join("start"))?,
                        read_num(&p.join("size"))?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    let node = dev.join(&d.name);
    let mut file = match File::open(&node) {
        Ok(f) => f,
        Err(e) => {
            facts.warnings.push(format!("{}: {e}", node.display()));
            facts.partitions = parts
                .into_iter()
                .map(|(number, name, _, _)| PartFacts {
                    name,
                    number,
                    ..PartFacts::default()
                })
                .collect();
            return facts;
        }
    };
    let lbs = read_num(&base.join("queue/logical_block_size")).unwrap_or(512);
    let table = match read_partitions(&mut file, d.size_bytes, lbs) {
        Ok(t) => Some(t),
        Err(e) => {
            facts.warnings.push(e.on(&node).to_string());
            None
        }
    };
    if parts.is_empty() {
        if table.as_ref().is_none_or(|t| t.partitions.is_empty()) {
            match probe(&mut file, 0, d.size_bytes) {
                Ok(fs) => facts.fs = fs,
                Err(e) => facts.warnings.push(e.on(&node).to_string()),
            }
        }
        return facts;
    }
    for (number, name, start, size) in parts {
        let entry = table
            .as_ref()
            .and_then(|t| t.partitions.iter().find(|p| p.number == number));
        let fs = match probe(
            &mut file,
            start.saturating_mul(512),
            size.saturating_mul(512),
        ) {
            Ok(fs) => fs,
            Err(e) => {
                facts
                    .warnings
                    .push(format!("{} ({name}): {e}", node.display()));
                None
            }
        };
        facts.partitions.push(PartFacts {
            name,
            number,
            fs,
            partuuid: entry.map(|p| p.partuuid.clone()),
            partlabel: entry.and_then(|p| p.name.clone()),
        });
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::discover::{self, fixture};
    use crate::storage::partition::build::{GptPart, gpt};

    fn fsi(t: &str, uuid: &str, label: Option<&str>) -> Option<FsInfo> {
        Some(FsInfo {
            fs_type: t.into(),
            uuid: Some(uuid.into()),
            label: label.map(Into::into),
            version: None,
        })
    }

    fn disk(name: &str, addr: &str, pci: &str) -> DiskFacts {
        DiskFacts {
            name: name.into(),
            address: Address::parse(addr),
            pci: Some(pci.into()),
            ..DiskFacts::default()
        }
    }

    fn part(name: &str, n: u32, fs: Option<FsInfo>, partuuid: &str) -> PartFacts {
        PartFacts {
            name: name.into(),
            number: n,
            fs,
            partuuid: Some(partuuid.into()),
            partlabel: None,
        }
    }

    fn get<'a>(links: &'a [(String, String)], l: &str) -> Option<&'a str> {
        links.iter().find(|(k, _)| k == l).map(|(_, t)| t.as_str())
    }

    #[test]
    fn plans_udev_names() {
        let mut sda = disk("sda", "scsi0:15", "0000:03:00.0");
        sda.ids.wwid = Some("naa.6000C29ABCDEF0123456789ABCDEF012".into());
        sda.ids.hctl = Some("0:0:15:0".into());
        sda.partitions = vec![
            part(
                "sda1",
                1,
                fsi("ext4", "u-1", Some("my root")),
                "0a0b0c0d-01",
            ),
            part(
                "sda2",
                2,
                fsi("LVM2_member", "pv-uuid", None),
                "0a0b0c0d-02",
            ),
            part("sda5", 5, fsi("swap", "u-5", Some("a/b")), "0a0b0c0d-05"),
        ];
        let mut sdb = disk("sdb", "sata0:1", "0000:00:1f.2");
        sdb.ids.wwid = Some(format!(
            "t10.ATA     {:<40}{:<20}",
            "VMware Virtual SATA Hard Drive", "01000000000000000001"
        ));
        sdb.ids.model = Some("VMware Virtual S".into());
        sdb.ids.ata_port = Some(2);
        sdb.fs = fsi("xfs", "u-b", None);
        let mut nvme = disk("nvme0n1", "nvme0:0", "0000:13:00.0");
        nvme.ids.model = Some("VMware Virtual NVMe Disk".into());
        nvme.ids.serial = Some("VMware NVME_0000".into());
        nvme.ids.nsid = Some(1);
        nvme.partitions = vec![PartFacts {
            partlabel: Some("EFI System Partition".into()),
            ..part("nvme0n1p1", 1, fsi("vfat", "ABCD-1234", None), "1234-5678")
        }];
        let plan = plan(&[nvme, sdb, sda]);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        let l = &plan.links;
        assert_eq!(get(l, "disk/by-uuid/u-1"), Some("../../sda1"));
        assert_eq!(get(l, "disk/by-label/my\\x20root"), Some("../../sda1"));
        assert_eq!(get(l, "disk/by-partuuid/0a0b0c0d-02"), Some("../../sda2"));
        // No by-uuid for an LVM2 member.
        assert_eq!(get(l, "disk/by-uuid/pv-uuid"), None);
        assert_eq!(get(l, "disk/by-label/a\\x2fb"), Some("../../sda5"));
        assert_eq!(
            get(l, "disk/by-id/scsi-36000c29abcdef0123456789abcdef012-part1"),
            Some("../../sda1")
        );
        assert_eq!(
            get(l, "disk/by-id/wwn-0x6000c29abcdef0123456789abcdef012"),
            Some("../../sda")
        );
        assert_eq!(
            get(l, "disk/by-path/pci-0000:03:00.0-scsi-0:0:15:0-part5"),
            Some("../../sda5")
        );
        assert_eq!(get(l, "disk/by-uuid/u-b"), Some("../../sdb"));
        assert_eq!(
            get(
                l,
                "disk/by-id/ata-VMware_Virtual_SATA_Hard_Drive_01000000000000000001"
            ),
            Some("../../sdb")
        );
        assert_eq!(
            get(l, "disk/by-path/pci-0000:00:1f.2-ata-2"),
            Some("../../sdb")
        );
        assert_eq!(
            get(
                l,
                "disk/by-id/nvme-VMware_Virtual_NVMe_Disk_VMware_NVME_0000-part1"
            ),
            Some("../../nvme0n1p1")
        );
        assert_eq!(
            get(l, "disk/by-path/pci-0000:13:00.0-nvme-1-part1"),
            Some("../../nvme0n1p1")
        );
        assert_eq!(
            get(l, "disk/by-partlabel/EFI\\x20System\\x20Partition"),
            Some("../../nvme0n1p1")
        );
        assert_eq!(get(l, "disk/by-uuid/ABCD-1234"), Some("../../nvme0n1p1"));
        // Sorted by link path, no duplicates.
        let mut sorted = l.clone();
        sorted.sort();
        sorted.dedup_by(|a, b| a.0 == b.0);
        assert_eq!(&sorted, l);
    }

    #[test]
    fn clones_keep_the_first_disk_in_address_order() {
        let mk = |name: &str, addr: &str| {
            let mut d = disk(name, addr, "0000:03:00.0");
            d.partitions = vec![part(
                &format!("{name}1"),
                1,
                fsi("ext4", "same", Some("root")),
                "deadbeef-01",
            )];
            d
        };
        // sdb is at scsi0:1, sda at scsi0:2: sdb comes first.
        let plan = plan(&[mk("sda", "scsi0:2"), mk("sdb", "scsi0:1")]);
        assert_eq!(get(&plan.links, "disk/by-uuid/same"), Some("../../sdb1"));
        assert_eq!(get(&plan.links, "disk/by-label/root"), Some("../../sdb1"));
        assert_eq!(
            get(&plan.links, "disk/by-partuuid/deadbeef-01"),
            Some("../../sdb1")
        );
        assert_eq!(plan.warnings.len(), 3, "{:?}", plan.warnings);
        assert!(
            plan.warnings[0].contains("/dev/sda1"),
            "{}",
            plan.warnings[0]
        );
    }

    #[test]
    fn encodes_like_blkid() {
        assert_eq!(encode("my root"), "my\\x20root");
        assert_eq!(encode("a/b\\c"), "a\\x2fb\\x5cc");
        assert_eq!(encode("ÄÖ-x_y.z:1=2@#+"), "ÄÖ-x_y.z:1=2@#+");
        assert_eq!(encode("../x"), "..\\x2fx");
    }

    #[test]
    fn creates_links_and_replaces_stale_ones_inside_the_root_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("dev");
        let outside = d.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(outside.join("by-uuid")).unwrap();
        // /dev/disk is a symlink out of the root: it must not be followed.
        symlink(&outside, root.join("disk")).unwrap();
        let links = vec![
            ("disk/by-uuid/u-1".to_string(), "../../sda1".to_string()),
            ("disk/by-label/root".to_string(), "../../sda1".to_string()),
        ];
        assert_eq!(create_links(&root, &links).unwrap(), 2);
        assert!(fs::symlink_metadata(root.join("disk")).unwrap().is_dir());
        assert_eq!(fs::read_dir(outside.join("by-uuid")).unwrap().count(), 0);
        assert_eq!(
            fs::read_link(root.join("disk/by-uuid/u-1")).unwrap(),
            Path::new("../../sda1")
        );
        // Again: nothing new. A stale link and a file in the way are
        // replaced.
        assert_eq!(create_links(&root, &links).unwrap(), 0);
        fs::remove_file(root.join("disk/by-uuid/u-1")).unwrap();
        symlink("../../sdz9", root.join("disk/by-uuid/u-1")).unwrap();
        fs::remove_file(root.join("disk/by-label/root")).unwrap();
        fs::write(root.join("disk/by-label/root"), "x").unwrap();
        assert_eq!(create_links(&root, &links).unwrap(), 2);
        assert_eq!(
            fs::read_link(root.join("disk/by-label/root")).unwrap(),
            Path::new("../../sda1")
        );
        // Escaping link paths are refused.
        for bad in ["../x", "/etc/x", "disk/../../x", ""] {
            assert!(
                create_links(&root, &[(bad.to_string(), "t".to_string())]).is_err(),
                "{bad}"
            );
        }
        assert!(!d.path().join("x").exists());
    }

    #[test]
    fn vpd_page_80_serial() {
        assert_eq!(
            vpd80_serial(b"\x00\x80\x00\x06 AB12 ").as_deref(),
            Some("AB12")
        );
        assert_eq!(vpd80_serial(b"\x00\x83\x00\x02ab"), None);
        assert_eq!(vpd80_serial(b"\x00\x80\xff\xffab").as_deref(), Some("ab"));
        assert_eq!(vpd80_serial(b"\x00"), None);
    }

    /// An ext4 superblock with a UUID and label, for the fixture images.
    fn ext4_at(img: &mut [u8], at: usize, uuid: [u8; 16], label: &[u8]) {
        img[at + 1024 + 0x38..at + 1024 + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        img[at + 1024 + 0x60] = 0x40;
        img[at + 1024 + 0x68..at + 1024 + 0x78].copy_from_slice(&uuid);
        img[at + 1024 + 0x78..at + 1024 + 0x78 + label.len()].copy_from_slice(label);
    }

    #[test]
    fn facts_from_a_fixture_sysfs_and_image_files() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("sys");
        let dev = d.path().join("dev");
        fs::create_dir_all(&dev).unwrap();
        fixture::controller(&s, "0000:03:00.0", "vmw_pvscsi");
        fs::create_dir_all(s.join("devices/pci0000:00/0000:03:00.0/host2")).unwrap();
        // sda: GPT with an ext4 in partition 1 and a swap-less partition 2.
        fixture::disk(&s, "sda", "0000:03:00.0", "host2/target2:0:0/2:0:0:0", 4096);
        fixture::disk(&s, "sdb", "0000:03:00.0", "host2/target2:0:1/2:0:1:0", 4096);
        fs::write(
            s.join("block/sda/device/wwid"),
            "naa.6000c2900000000000000000000000aa\n",
        )
        .unwrap();
        let mut img = vec![0u8; 4096 * 512];
        let pguid = |n| [n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        gpt(
            &mut img,
            512,
            pguid(9),
            &[
                GptPart {
                    type_guid: pguid(7),
                    guid: pguid(1),
                    first: 64,
                    last: 2047,
                    name: "root",
                },
                GptPart {
                    type_guid: pguid(7),
                    guid: pguid(2),
                    first: 2048,
                    last: 4000,
                    name: "",
                },
            ],
        );
        ext4_at(&mut img, 64 * 512, [0x11; 16], b"guest root");
        fs::write(dev.join("sda"), &img).unwrap();
        for (n, start, size) in [(1, 64, 1984), (2, 2048, 1953)] {
            let p = s.join(format!("block/sda/sda{n}"));
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("partition"), format!("{n}\n")).unwrap();
            fs::write(p.join("start"), format!("{start}\n")).unwrap();
            fs::write(p.join("size"), format!("{size}\n")).unwrap();
        }
        // sdb: a whole-disk ext4, cloned from sda1 (same UUID and label).
        let mut img = vec![0u8; 4096 * 512];
        ext4_at(&mut img, 0, [0x11; 16], b"guest root");
        fs::write(dev.join("sdb"), &img).unwrap();

        let disks = discover::scan(&s);
        let facts = facts_from_sysfs(&s, &dev, &disks);
        assert_eq!(facts.len(), 2);
        let sda = &facts[0];
        assert!(sda.warnings.is_empty(), "{:?}", sda.warnings);
        assert_eq!(sda.ids.hctl.as_deref(), Some("0:0:0:0"));
        assert_eq!(sda.partitions.len(), 2);
        let p1 = &sda.partitions[0];
        assert_eq!(p1.fs.as_ref().unwrap().fs_type, "ext4");
        assert_eq!(
            p1.fs.as_ref().unwrap().uuid.as_deref(),
            Some("11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(
            p1.partuuid.as_deref(),
            Some("00000001-0000-0000-0000-000000000001")
        );
        assert_eq!(p1.partlabel.as_deref(), Some("root"));
        assert_eq!(sda.partitions[1].fs, None);
        assert_eq!(facts[1].fs.as_ref().unwrap().fs_type, "ext4");
        assert!(facts[1].partitions.is_empty());

        let plan = plan(&facts);
        let l = &plan.links;
        assert_eq!(
            get(l, "disk/by-uuid/11111111-1111-1111-1111-111111111111"),
            Some("../../sda1")
        );
        assert_eq!(get(l, "disk/by-label/guest\\x20root"), Some("../../sda1"));
        assert_eq!(
            get(l, "disk/by-path/pci-0000:03:00.0-scsi-0:0:1:0"),
            Some("../../sdb")
        );
        assert_eq!(
            get(l, "disk/by-id/scsi-36000c2900000000000000000000000aa-part2"),
            Some("../../sda2")
        );
        assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
        let root = d.path().join("devroot");
        fs::create_dir(&root).unwrap();
        assert_eq!(create_links(&root, l).unwrap(), l.len());

        // A missing /dev node: partitions kept without facts, a warning.
        fs::remove_file(dev.join("sda")).unwrap();
        let facts = facts_from_sysfs(&s, &dev, &disks);
        assert_eq!(facts[0].partitions.len(), 2);
        assert_eq!(facts[0].warnings.len(), 1);
    }
}
