//! PID 1's guest provider: waits for every replica disk of
//! replica-disk-map.json at its address, cross-checks capacities, finds
//! the guest's root file system and mounts it at /sysroot; on detach,
//! syncs and unmounts (falling back to a read-only remount).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, umount2};

use crate::engine::{StepCtx, StepOutcome};
use crate::error::{FixupError, codes};
use crate::logging;
use crate::pid1::mounts::mount_one;
use crate::protocol::config::Inputs;
use crate::protocol::report::Reporter;
use crate::protocol::session::{Attached, GuestProvider};
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

/// Partitions of a disk (`sda1`, `nvme0n1p2`) from sysfs, in order.
pub fn partitions(sysfs: &Path, disk: &str) -> Vec<String> {
    let mut parts: Vec<(u32, String)> = std::fs::read_dir(sysfs.join("block").join(disk))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !name.starts_with(disk) {
                        return None;
                    }
                    let n = std::fs::read_to_string(e.path().join("partition")).ok()?;
                    Some((n.trim().parse().ok()?, name))
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts.into_iter().map(|(_, n)| n).collect()
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
        let mut found: Vec<(&crate::protocol::config::ReplicaDisk, &Disk)> = Vec::new();
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
                    found.push((d, disk));
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

        // 2. The root: the partition the map says is "/", else the one
        //    tree on the replicas that looks like an OS root.
        let mut candidates: Vec<String> = Vec::new();
        let sysfs = self.sysfs.clone();
        let declared: Vec<String> = found
            .iter()
            .flat_map(|(d, disk)| {
                let parts = partitions(&sysfs, &disk.name);
                let sysfs = &sysfs;
                d.partitions
                    .iter()
                    .filter(|p| p.mount_point.as_deref() == Some("/"))
                    .filter_map(move |p| {
                        parts
                            .iter()
                            .find(|name| {
                                std::fs::read_to_string(
                                    sysfs
                                        .join("block")
                                        .join(&disk.name)
                                        .join(name)
                                        .join("partition"),
                                )
                                .ok()
                                .and_then(|s| s.trim().parse::<u32>().ok())
                                    == Some(p.number)
                            })
                            .cloned()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let devices: Vec<String> = if declared.is_empty() {
            found
                .iter()
                .flat_map(|(_, disk)| {
                    let parts = partitions(&self.sysfs, &disk.name);
                    if parts.is_empty() {
                        vec![disk.name.clone()]
                    } else {
                        parts
                    }
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
        Ok((
            StepOutcome::unchanged(format!(
                "{} disk(s) found; root {root} ({fs}) mounted at {SYSROOT}",
                found.len()
            )),
            Attached {
                sysroot: sysroot.to_path_buf(),
                root_device: Some(root),
            },
        ))
    }

    fn detach(&mut self, reporter: &mut Reporter) -> Result<(), FixupError> {
        nix::unistd::sync();
        let mut failed = Vec::new();
        while let Some(m) = self.mounted.pop() {
            match umount2(&m, MntFlags::empty()) {
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
