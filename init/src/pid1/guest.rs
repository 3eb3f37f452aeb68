//! PID 1's guest provider: waits for every replica disk of
//! replica-disk-map.json at its address, cross-checks capacities, finds
//! the guest's root file system and mounts it at /sysroot; on detach,
//! syncs and unmounts (falling back to a read-only remount).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, umount2};

use crate::engine::identity::ProbedFs;
use crate::engine::{StepCtx, StepOutcome};
use crate::error::{FixupError, codes};
use crate::logging;
use crate::pid1::mounts::mount_one;
use crate::protocol::config::Inputs;
use crate::protocol::report::Reporter;
use crate::protocol::session::{Attached, GuestProvider};
use crate::storage::devlinks;
use crate::storage::discover::{self, Address, Disk};

pub const SYSROOT: &str = "/sysroot";
const PROBE: &str = "/run/osam/probe";
/// File systems tried for a root, in order.
const ROOT_FS: &[&str] = &["ext4", "xfs", "btrfs", "ext3", "ext2"];

pub struct StackGuest {
    pub sysfs: PathBuf,
    pub disk_timeout: Duration,
    mounted: Vec<PathBuf>,
}

impl StackGuest {
    pub fn new(disk_timeout: Duration) -> Self {
        StackGuest {
            sysfs: PathBuf::from("/sys"),
            disk_timeout,
            mounted: Vec::new(),
        }
    }
}

/// The address of a replica disk entry as the discovery module spells it.
pub fn address_of(disk: &crate::protocol::config::ReplicaDisk) -> Address {
    use crate::protocol::config::ControllerKind;
    let bus = match disk.target.controller.kind {
        ControllerKind::Scsi => discover::Bus::Scsi,
        ControllerKind::Sata => discover::Bus::Sata,
        ControllerKind::Nvme => discover::Bus::Nvme,
    };
    Address {
        bus,
        controller: u32::from(disk.target.controller.index),
        unit: disk.target.unit,
    }
}

fn looks_like_root(dir: &Path) -> bool {
    dir.join("etc/fstab").exists()
        && [
            "etc/os-release",
            "usr/lib/os-release",
            "etc/redhat-release",
            "etc/SuSE-release",
            "etc/debian_version",
        ]
        .iter()
        .any(|f| dir.join(f).symlink_metadata().is_ok())
}

fn try_mount_ro(dev: &str, at: &Path) -> Option<&'static str> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    ROOT_FS.iter().copied().find(|fs| {
        let data = match *fs {
            "ext4" | "ext3" => Some("noload"),
            "xfs" => Some("norecovery"),
            "btrfs" => Some("nologreplay"),
            _ => None,
        };
        mount_one(dev, at, Some(fs), flags, data).is_ok()
    })
}

impl GuestProvider for StackGuest {
    fn attach(
        &mut self,
        ctx: &mut StepCtx,
        inputs: &Inputs,
    ) -> Result<(StepOutcome, Attached), FixupError> {
        // 1. Every replica disk at its address.
        let wanted: Vec<(usize, Address, &crate::protocol::config::ReplicaDisk)> = inputs
            .disks
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| (i, address_of(d), d))
            .collect();
        ctx.progress(&format!(
            "waiting up to {} s for {} replica disk(s)",
            self.disk_timeout.as_secs(),
            wanted.len()
        ));
        let start = Instant::now();
        let disks: Vec<Disk> = loop {
            let disks = discover::scan(&self.sysfs);
            let missing = wanted
                .iter()
                .filter(|(_, a, _)| discover::find(&disks, a).is_none())
                .count();
            if missing == 0 || start.elapsed() >= self.disk_timeout {
                break disks;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let seen: Vec<String> = disks
            .iter()
            .map(|d| {
                format!(
                    "{} at {}",
                    d.name,
                    d.address
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "no address".into())
                )
            })
            .collect();
        ctx.reporter.log(&format!(
            "disks seen: {}",
            if seen.is_empty() {
                "none".into()
            } else {
                seen.join(", ")
            }
        ));
        let mut missing = Vec::new();
        let mut found: Vec<(usize, &crate::protocol::config::ReplicaDisk, &Disk)> = Vec::new();
        for (i, addr, d) in &wanted {
            match discover::find(&disks, addr) {
                Some(disk) => {
                    if let Some(cap) = d.capacity_bytes {
                        if cap != disk.size_bytes {
                            ctx.warn(
                                codes::DISK_CAPACITY,
                                format!(
                                    "replica-disk-map.json: $.disks[{i}] ({addr}, source {}): capacityBytes is {cap} but /dev/{} has {} bytes",
                                    d.source_device, disk.name, disk.size_bytes
                                ),
                            );
                        }
                    }
                    ctx.reporter.log(&format!(
                        "{addr}: /dev/{} (source {})",
                        disk.name, d.source_device
                    ));
                    found.push((*i, *d, disk));
                }
                None => missing.push(format!(
                    "{addr} (replica-disk-map.json $.disks[{i}], source {})",
                    d.source_device
                )),
            }
        }
        if !missing.is_empty() {
            return Err(FixupError::new(
                codes::DISK_NOT_FOUND,
                format!(
                    "replica disk {} did not appear within {} s",
                    missing.join(", "),
                    self.disk_timeout.as_secs()
                ),
            )
            .with_detail(format!(
                "disks the stack sees: {}; check that the replicas are attached at these addresses",
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            )));
        }

        // The /dev/disk/by-* links the guest's tools read (no udev here),
        // and the target identities for the identity map.
        let facts = devlinks::facts_from_sysfs(&self.sysfs, Path::new("/dev"), &disks);
        let links = devlinks::plan(&facts);
        for w in links
            .warnings
            .iter()
            .chain(facts.iter().flat_map(|f| f.warnings.iter()))
        {
            ctx.reporter.log(&format!("devlinks: {w}"));
        }
        match devlinks::create_links(Path::new("/dev"), &links.links) {
            Ok(n) => ctx.reporter.log(&format!("created {n} /dev/disk links")),
            Err(e) => ctx.warn(codes::GUEST_IO, format!("creating /dev/disk links: {e}")),
        }
        let facts_of = |name: &str| facts.iter().find(|f| f.name == name);
        let mut probed = Vec::new();
        for (i, _, disk) in &found {
            let Some(f) = facts_of(&disk.name) else {
                continue;
            };
            if let Some(fs) = &f.fs {
                probed.push(ProbedFs {
                    disk_index: *i,
                    partition: None,
                    target_device: Some(format!("/dev/{}", f.name)),
                    fs_type: Some(fs.fs_type.clone()),
                    uuid: fs.uuid.clone(),
                    partuuid: None,
                    label: fs.label.clone(),
                });
            }
            for p in &f.partitions {
                probed.push(ProbedFs {
                    disk_index: *i,
                    partition: Some(p.number),
                    target_device: Some(format!("/dev/{}", p.name)),
                    fs_type: p.fs.as_ref().map(|f| f.fs_type.clone()),
                    uuid: p.fs.as_ref().and_then(|f| f.uuid.clone()),
                    partuuid: p.partuuid.clone(),
                    label: p.fs.as_ref().and_then(|f| f.label.clone()),
                });
            }
        }
        for p in &probed {
            ctx.reporter.log(&format!(
                "probed {}: {} UUID={} LABEL={}",
                p.target_device.as_deref().unwrap_or("?"),
                p.fs_type.as_deref().unwrap_or("-"),
                p.uuid.as_deref().unwrap_or("-"),
                p.label.as_deref().unwrap_or("-")
            ));
        }
        let boot_index = inputs.disks.disks.iter().position(|d| d.boot).unwrap_or(0);
        let boot_device = found
            .iter()
            .find(|(i, _, _)| *i == boot_index)
            .map(|(_, _, disk)| format!("/dev/{}", disk.name));

        // 2. The root: the partition the map says is "/", else the one
        //    tree on the replicas that looks like an OS root.
        let mut candidates: Vec<String> = Vec::new();
        let declared: Vec<String> = found
            .iter()
            .flat_map(|(_, d, disk)| {
                let parts = facts_of(&disk.name)
                    .map(|f| f.partitions.as_slice())
                    .unwrap_or(&[]);
                d.partitions
                    .iter()
                    .filter(|p| p.mount_point.as_deref() == Some("/"))
                    .filter_map(move |p| parts.iter().find(|f| f.number == p.number))
                    .map(|f| f.name.clone())
            })
            .collect();
        let devices: Vec<String> = if declared.is_empty() {
            found
                .iter()
                .flat_map(|(_, _, disk)| match facts_of(&disk.name) {
                    Some(f) if !f.partitions.is_empty() => {
                        f.partitions.iter().map(|p| p.name.clone()).collect()
                    }
                    _ => vec![disk.name.clone()],
                })
                .collect()
        } else {
            declared
        };
        let probe = Path::new(PROBE);
        for dev in &devices {
            let path = format!("/dev/{dev}");
            if let Some(fs) = try_mount_ro(&path, probe) {
                if looks_like_root(probe) {
                    candidates.push(path.clone());
                }
                ctx.reporter.log(&format!("probed {path}: {fs}"));
                let _ = umount2(probe, MntFlags::MNT_DETACH);
            }
        }
        let root = match candidates.as_slice() {
            [one] => one.clone(),
            [] => {
                let lvm = inputs
                    .disks
                    .disks
                    .iter()
                    .flat_map(|d| &d.partitions)
                    .any(|p| {
                        p.fs_type
                            .as_deref()
                            .is_some_and(|t| t.eq_ignore_ascii_case("LVM2_member"))
                    });
                return Err(FixupError::new(
                    codes::GUEST_ROOT_NOT_FOUND,
                    format!(
                        "no guest root file system (a tree with /etc/fstab and an OS release file) on {}",
                        devices.iter().map(|d| format!("/dev/{d}")).collect::<Vec<_>>().join(", ")
                    ),
                )
                .with_detail(if lvm {
                    "the guest uses LVM, which this build cannot assemble yet".to_string()
                } else {
                    "tried ext4, xfs, btrfs, ext3 and ext2".to_string()
                }));
            }
            many => {
                return Err(FixupError::new(
                    codes::GUEST_MULTIPLE_ROOTS,
                    format!(
                        "more than one guest root: {}; mark the right one with mountPoint \"/\" in replica-disk-map.json",
                        many.join(" and ")
                    ),
                ));
            }
        };
        let sysroot = Path::new(SYSROOT);
        let fs = ROOT_FS
            .iter()
            .copied()
            .find(|fs| mount_one(&root, sysroot, Some(fs), MsFlags::empty(), None).is_ok())
            .ok_or_else(|| {
                FixupError::new(
                    codes::GUEST_IO,
                    format!("{root} mounts read-only but not read-write at {SYSROOT}"),
                )
            })?;
        self.mounted.push(sysroot.to_path_buf());
        ctx.progress(&format!("mounted {root} ({fs}) at {SYSROOT}"));

        // 3. The guest's own fstab mounts below it, then what the chroot
        //    needs from the stack.
        let fstab = std::fs::read_to_string(sysroot.join("etc/fstab")).unwrap_or_default();
        let source_devices: Vec<(String, String)> = inputs
            .disks
            .disks
            .iter()
            .enumerate()
            .flat_map(|(i, d)| {
                let probed = &probed;
                d.partitions.iter().filter_map(move |p| {
                    let src = p.source_device.clone()?;
                    let target = probed
                        .iter()
                        .find(|f| f.disk_index == i && f.partition == Some(p.number))?
                        .target_device
                        .clone()?;
                    Some((src, target))
                })
            })
            .collect();
        let mut sub = Vec::new();
        for entry in guest_mounts(&fstab) {
            let Some(dev) = resolve_spec(&entry.spec, &probed, &source_devices) else {
                ctx.warn(
                    codes::GUEST_IO,
                    format!(
                        "/etc/fstab: {} for {} is not on the replicas; not mounted",
                        entry.spec, entry.target
                    ),
                );
                continue;
            };
            let at = sysroot.join(entry.target.trim_start_matches('/'));
            let fstype = (entry.fstype != "auto").then_some(entry.fstype.as_str());
            match mount_one(&dev, &at, fstype, MsFlags::empty(), entry.data.as_deref()) {
                Ok(()) => {
                    self.mounted.push(at.clone());
                    sub.push(format!("{} ({dev})", entry.target));
                    ctx.reporter
                        .log(&format!("mounted {dev} at {}", at.display()));
                }
                Err(e) => ctx.warn(codes::GUEST_IO, format!("/etc/fstab {}: {e}", entry.target)),
            }
        }
        for (src, flags) in [
            ("/dev", MsFlags::MS_BIND | MsFlags::MS_REC),
            ("/proc", MsFlags::MS_BIND),
            ("/sys", MsFlags::MS_BIND | MsFlags::MS_REC),
            ("/run", MsFlags::MS_BIND),
        ] {
            let at = sysroot.join(&src[1..]);
            match mount_one(src, &at, None, flags, None) {
                Ok(()) => self.mounted.push(at),
                Err(e) => ctx.warn(
                    codes::GUEST_IO,
                    format!("binding {src} into the guest: {e}"),
                ),
            }
        }
        if Path::new("/sys/firmware/efi").is_dir() {
            let at = sysroot.join("sys/firmware/efi/efivars");
            if mount_one("efivarfs", &at, Some("efivarfs"), MsFlags::empty(), None).is_ok() {
                self.mounted.push(at);
            }
        }
        if !sub.is_empty() {
            ctx.progress(&format!(
                "mounted from the guest's fstab: {}",
                sub.join(", ")
            ));
        }
        Ok((
            StepOutcome::unchanged(format!(
                "{} disk(s) found; root {root} ({fs}) mounted at {SYSROOT}{}",
                found.len(),
                if sub.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", sub.join(", "))
                }
            )),
            Attached {
                sysroot: sysroot.to_path_buf(),
                root_device: Some(root),
                probed,
                boot_device,
            },
        ))
    }

    fn detach(&mut self, reporter: &mut Reporter) -> Result<(), FixupError> {
        nix::unistd::sync();
        let mut failed = Vec::new();
        while let Some(m) = self.mounted.pop() {
            // The stack's own trees bound into the guest go lazily; the
            // guest's file systems must unmount for real.
            let stack_tree = ["dev", "proc", "sys", "run"]
                .iter()
                .any(|d| m.starts_with(Path::new(SYSROOT).join(d)));
            let flags = if stack_tree {
                MntFlags::MNT_DETACH
            } else {
                MntFlags::empty()
            };
            match umount2(&m, flags) {
                Ok(()) => reporter.log(&format!("unmounted {}", m.display())),
                Err(e) => {
                    logging::warn(format!(
                        "unmounting {}: {e}; remounting read-only",
                        m.display()
                    ));
                    let ro = nix::mount::mount(
                        None::<&str>,
                        &m,
                        None::<&str>,
                        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None::<&str>,
                    );
                    if let Err(e2) = ro {
                        failed.push(format!("{}: {e}, read-only remount: {e2}", m.display()));
                    }
                }
            }
        }
        nix::unistd::sync();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(FixupError::new(
                codes::GUEST_IO,
                format!(
                    "guest file systems could not be released: {}",
                    failed.join("; ")
                ),
            ))
        }
    }
}

/// A mount of the guest's fstab that stage 1 needs below /sysroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMount {
    pub spec: String,
    pub target: String,
    pub fstype: String,
    /// mount(2) data: the options a file system needs to find the right
    /// tree (btrfs `subvol=`/`subvolid=`).
    pub data: Option<String>,
}

/// The entries of a guest fstab to mount for stage 1, in order: local
/// file systems other than the root, swap, `noauto` and network ones.
pub fn guest_mounts(fstab: &str) -> Vec<GuestMount> {
    const SKIP_FS: &[&str] = &[
        "swap",
        "nfs",
        "nfs4",
        "cifs",
        "smbfs",
        "sshfs",
        "tmpfs",
        "proc",
        "sysfs",
        "devpts",
        "devtmpfs",
        "none",
        "bind",
        "iso9660",
        "udf",
        "9p",
        "fuse",
        "glusterfs",
        "ceph",
    ];
    let mut out = Vec::new();
    for line in fstab.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let target = crate::fsutil::unescape_octal(f[1]);
        let opts = f.get(3).copied().unwrap_or("defaults");
        let opt_list: Vec<&str> = opts.split(',').collect();
        if target == "/"
            || !target.starts_with('/')
            || target.split('/').any(|c| c == "..")
            || SKIP_FS.contains(&f[2])
            || f[2].starts_with("fuse")
            || opt_list
                .iter()
                .any(|o| *o == "noauto" || *o == "bind" || *o == "rbind" || *o == "_netdev")
        {
            continue;
        }
        let data: Vec<&str> = opt_list
            .iter()
            .copied()
            .filter(|o| o.starts_with("subvol=") || o.starts_with("subvolid="))
            .collect();
        out.push(GuestMount {
            spec: crate::fsutil::unescape_octal(f[0]),
            target,
            fstype: f[2].to_string(),
            data: (!data.is_empty()).then(|| data.join(",")),
        });
    }
    // Parents before children.
    out.sort_by_key(|m| m.target.matches('/').count());
    out
}

/// The stack's device for an fstab device spec: by UUID, LABEL or PARTUUID
/// among the probed file systems, a source device name through the
/// replica map, or a /dev path that exists in the stack.
pub fn resolve_spec(
    spec: &str,
    probed: &[ProbedFs],
    source_devices: &[(String, String)],
) -> Option<String> {
    let unquote = |v: &str| v.trim_matches('"').to_string();
    let by = |get: &dyn Fn(&ProbedFs) -> Option<&String>, v: &str| {
        probed
            .iter()
            .find(|p| get(p).is_some_and(|x| x.eq_ignore_ascii_case(v)))
            .and_then(|p| p.target_device.clone())
    };
    if let Some(v) = spec.strip_prefix("UUID=") {
        return by(&|p| p.uuid.as_ref(), &unquote(v));
    }
    if let Some(v) = spec.strip_prefix("LABEL=") {
        return by(&|p| p.label.as_ref(), &unquote(v));
    }
    if let Some(v) = spec.strip_prefix("PARTUUID=") {
        return by(&|p| p.partuuid.as_ref(), &unquote(v));
    }
    if let Some(v) = spec.strip_prefix("/dev/disk/by-uuid/") {
        return by(&|p| p.uuid.as_ref(), v);
    }
    if let Some((_, t)) = source_devices.iter().find(|(s, _)| s == spec) {
        return Some(t.clone());
    }
    (spec.starts_with("/dev/") && Path::new(spec).exists()).then(|| spec.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_mounts_in_order_with_what_to_skip() {
        let fstab = "# comment\nUUID=a / ext4 defaults 0 1\n\
                     UUID=c /boot/efi vfat umask=0077 0 1\n\
                     UUID=b /boot xfs defaults 0 2\n\
                     /dev/sda3 none swap sw 0 0\n\
                     srv:/x /mnt/nfs nfs defaults 0 0\n\
                     LABEL=data /data btrfs subvol=@data,compress=zstd 0 0\n\
                     /dev/sdb1 /noauto ext4 noauto 0 0\n\
                     /srv /bound none bind 0 0\n\
                     tmpfs /tmp tmpfs defaults 0 0\n";
        let m = guest_mounts(fstab);
        let targets: Vec<&str> = m.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/boot", "/data", "/boot/efi"]);
        assert_eq!(m[1].data.as_deref(), Some("subvol=@data"));
    }

    #[test]
    fn specs_resolve_through_probes_and_the_map() {
        let probed = vec![ProbedFs {
            disk_index: 0,
            partition: Some(1),
            target_device: Some("/dev/sdb1".into()),
            fs_type: Some("ext4".into()),
            uuid: Some("0b6c".into()),
            partuuid: Some("abcd-01".into()),
            label: Some("boot".into()),
        }];
        let map = vec![("/dev/sda1".to_string(), "/dev/sdb1".to_string())];
        for spec in [
            "UUID=0B6C",
            "UUID=\"0b6c\"",
            "LABEL=boot",
            "PARTUUID=abcd-01",
            "/dev/disk/by-uuid/0b6c",
            "/dev/sda1",
        ] {
            assert_eq!(
                resolve_spec(spec, &probed, &map).as_deref(),
                Some("/dev/sdb1"),
                "{spec}"
            );
        }
        assert_eq!(resolve_spec("UUID=none", &probed, &map), None);
        assert_eq!(resolve_spec("/dev/osam-nonexistent", &probed, &map), None);
    }
}
