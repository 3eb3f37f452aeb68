//! PID 1's guest provider: waits for every replica disk of
//! replica-disk-map.json at its address, cross-checks capacities, probes
//! them, assembles their md arrays and LVM volume groups
//! (`storage::assemble`) and mounts the guest at /sysroot
//! (`pid1::sysroot`); on detach, syncs and unmounts (falling back to a
//! read-only remount), then deactivates exactly what it assembled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::identity::ProbedFs;
use crate::engine::{StepCtx, StepOutcome};
use crate::error::{FixupError, Warning, codes};
use crate::logging;
use crate::pid1::sysroot::{MountKind, MountOptions, MountedGuest, map_hints, mount_guest};
use crate::protocol::config::Inputs;
use crate::protocol::report::Reporter;
use crate::protocol::session::{Attached, GuestProvider};
use crate::runner::{Command, CommandRecord, CommandRunner, RealRunner, VecSink};
use crate::storage::assemble::{AssembleOptions, Assembly, StorageCtx, assemble};
use crate::storage::devlinks::{self, DiskFacts};
use crate::storage::discover::{self, Address, Disk};

pub const SYSROOT: &str = "/sysroot";

pub struct StackGuest {
    pub sysfs: PathBuf,
    pub disk_timeout: Duration,
    mounted: Option<MountedGuest>,
    assembly: Option<Assembly>,
    /// Runs the teardown in `detach`, which has no step context.
    teardown_runner: RealRunner,
}

impl StackGuest {
    pub fn new(disk_timeout: Duration) -> Self {
        StackGuest {
            sysfs: PathBuf::from("/sys"),
            disk_timeout,
            mounted: None,
            assembly: None,
            teardown_runner: RealRunner::default(),
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
        let replica_facts: Vec<(usize, &DiskFacts)> = found
            .iter()
            .filter_map(|(i, _, disk)| Some((*i, facts.iter().find(|f| f.name == disk.name)?)))
            .collect();
        let mut probed = probed_from_facts(&replica_facts);
        log_probed(ctx, &probed);
        let boot_index = inputs.disks.disks.iter().position(|d| d.boot).unwrap_or(0);
        let boot_device = found
            .iter()
            .find(|(i, _, _)| *i == boot_index)
            .map(|(_, _, disk)| format!("/dev/{}", disk.name));

        // 2. md arrays and LVM volume groups on the replicas.
        let hints = map_hints(&inputs.disks, &probed);
        let mut assembly = assemble(ctx, &probed, &AssembleOptions::new(false));
        for line in assembly.summary() {
            ctx.progress(&line);
        }
        if let Some(e) = assembly.clash_error() {
            assembly.teardown(ctx);
            return Err(e);
        }
        probed.extend(assembly.probed());

        // 3. The root, its fstab mounts and the stack's trees.
        let sysroot = Path::new(SYSROOT);
        let mounted = match mount_guest(ctx, &probed, &hints, sysroot, &MountOptions::new(false)) {
            Ok(m) => m,
            Err(e) => {
                assembly.teardown(ctx);
                return Err(e);
            }
        };
        let root = mounted.root.clone();
        ctx.progress(&format!("mounted {root} at {SYSROOT}"));
        let sub: Vec<String> = mounted
            .mounts
            .iter()
            .filter(|m| matches!(m.kind, MountKind::Fstab | MountKind::Bind))
            .map(|m| format!("{} ({})", m.guest_path, m.source))
            .collect();
        if !sub.is_empty() {
            ctx.progress(&format!(
                "mounted from the guest's fstab: {}",
                sub.join(", ")
            ));
        }
        let summary = format!(
            "{} disk(s) found{}; root {root} mounted at {SYSROOT}{}",
            found.len(),
            if assembly.volumes.is_empty() {
                String::new()
            } else {
                format!(", {} volume(s) assembled", assembly.volumes.len())
            },
            if sub.is_empty() {
                String::new()
            } else {
                format!(" with {}", sub.join(", "))
            }
        );
        self.mounted = Some(mounted);
        self.assembly = Some(assembly);
        Ok((
            StepOutcome::unchanged(summary),
            Attached {
                sysroot: sysroot.to_path_buf(),
                root_device: Some(root.device),
                probed,
                boot_device,
            },
        ))
    }

    fn detach(&mut self, reporter: &mut Reporter) -> Result<(), FixupError> {
        let mut failed = Vec::new();
        if let Some(mut m) = self.mounted.take() {
            for line in m.summary() {
                reporter.log(&format!("unmounting {line}"));
            }
            for f in m.unmount() {
                logging::warn(format!("unmounting {f}"));
                failed.push(f);
            }
        }
        nix::unistd::sync();
        if let Some(mut a) = self.assembly.take() {
            let mut ctx = ReportCtx {
                reporter,
                runner: &mut self.teardown_runner,
            };
            a.teardown(&mut ctx);
        }
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

/// The probe entries of replica disks (map index, facts): each
/// partition, or the whole disk where it holds a file system itself.
pub fn probed_from_facts(disks: &[(usize, &DiskFacts)]) -> Vec<ProbedFs> {
    let mut probed = Vec::new();
    for (i, f) in disks {
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
    probed
}

fn log_probed(ctx: &mut StepCtx, probed: &[ProbedFs]) {
    for p in probed {
        ctx.reporter.log(&format!(
            "probed {}: {} UUID={} LABEL={}",
            p.target_device.as_deref().unwrap_or("?"),
            p.fs_type.as_deref().unwrap_or("-"),
            p.uuid.as_deref().unwrap_or("-"),
            p.label.as_deref().unwrap_or("-")
        ));
    }
}

/// Storage commands after the steps (the teardown in `detach`): logged in
/// fixup.log, warnings attributed to the `storage` step.
struct ReportCtx<'a> {
    reporter: &'a mut Reporter,
    runner: &'a mut dyn CommandRunner,
}

impl StorageCtx for ReportCtx<'_> {
    fn log(&mut self, msg: &str) {
        self.reporter.log(msg);
    }

    fn warn(&mut self, code: &str, msg: String) {
        let mut w = Warning::new(code, msg);
        w.step = Some("storage".into());
        self.reporter.warn(w);
    }

    fn run(&mut self, cmd: Command) -> (CommandRecord, Vec<String>) {
        self.reporter.log(&format!("$ {}", cmd.display()));
        let mut sink = VecSink::default();
        let rec = self.runner.run(&cmd, &mut sink);
        for l in &sink.lines {
            self.reporter.log(l);
        }
        if !rec.succeeded() {
            self.reporter.log(&rec.describe_failure());
        }
        (rec, sink.lines)
    }
}

pub use super::sysroot::{GuestMount, guest_mounts, resolve_spec};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::devlinks::PartFacts;
    use crate::storage::probe::FsInfo;

    fn fs(t: &str, uuid: &str) -> Option<FsInfo> {
        Some(FsInfo {
            fs_type: t.into(),
            uuid: Some(uuid.into()),
            label: Some("l".into()),
            version: None,
        })
    }

    #[test]
    fn probe_entries_keep_the_map_index_and_partition() {
        let whole = DiskFacts {
            name: "sdc".into(),
            fs: fs("xfs", "u3"),
            ..DiskFacts::default()
        };
        let parted = DiskFacts {
            name: "sdb".into(),
            partitions: vec![
                PartFacts {
                    name: "sdb1".into(),
                    number: 1,
                    fs: fs("ext4", "u1"),
                    partuuid: Some("p-01".into()),
                    partlabel: None,
                },
                PartFacts {
                    name: "sdb2".into(),
                    number: 2,
                    ..PartFacts::default()
                },
            ],
            ..DiskFacts::default()
        };
        let p = probed_from_facts(&[(1, &whole), (0, &parted)]);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].disk_index, 1);
        assert_eq!(p[0].partition, None);
        assert_eq!(p[0].target_device.as_deref(), Some("/dev/sdc"));
        assert!(!p[0].is_assembled());
        assert_eq!(p[1].partition, Some(1));
        assert_eq!(p[1].partuuid.as_deref(), Some("p-01"));
        assert_eq!(p[1].label.as_deref(), Some("l"));
        assert_eq!(p[2].fs_type, None);
    }
}
