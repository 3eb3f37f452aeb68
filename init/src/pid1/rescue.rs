//! Rescue mode (`osam.mode=rescue`): no protocol and no replica-disk-map.
//! PID 1 waits briefly for the disks (`osam.disk_timeout`), takes every
//! disk but the stack's own (found by its GPT disk GUID, `osam.disk=`, or
//! else by its `OSAM-FIXUP` ESP) as a replica, makes the `/dev/disk` links,
//! assembles md and LVM read-only and mounts the guest read-only at
//! /sysroot, copies the input files of the fixup disk's `/fixup/` (if
//! any) into /tmp/fixup for `fixupctl plan`/`run`, then prints a banner
//! on the console: what is mounted where, what went wrong, and the
//! commands to go on with.
//!
//! Nothing here may take PID 1 down: every error, and a panic, becomes a
//! line of the banner. What was assembled and mounted is kept in
//! [`STATE_FILE`] (JSON, [`RescueState`]) with the banner beside it;
//! `fixupctl mount`/`umount` (`pid1::remount`) tear that down, mount
//! again with [`assemble_and_mount`] and rewrite both ([`save`]).

use std::fs::File;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cmdline::Options;
use crate::logging;
use crate::pid1::disk_transport::{self, EspMount};
use crate::pid1::guest::{SYSROOT, probed_from_facts};
use crate::pid1::signals;
use crate::pid1::sysroot::{MapHints, MountKind, MountOptions, MountedGuest, mount_guest};
use crate::runner::RealRunner;
use crate::runstate::{DEFAULT_FIXUP_DIR, ESP_MOUNT};
use crate::storage::assemble::{AssembleOptions, Assembly, LogCtx, assemble};
use crate::storage::devlinks::{self, DiskFacts};
use crate::storage::discover::{self, Disk};
use crate::storage::partition::{TableKind, read_partitions};

/// What rescue mode assembled and mounted (JSON).
pub const STATE_FILE: &str = "/run/osam/rescue.json";
/// The banner, to show it again (`cat`).
pub const BANNER_FILE: &str = "/run/osam/rescue-banner.txt";
/// [`STATE_FILE`]'s name in the run-time folder.
pub const STATE_NAME: &str = "rescue.json";
/// [`BANNER_FILE`]'s name in the run-time folder.
pub const BANNER_NAME: &str = "rescue-banner.txt";
/// The label of the stack's ESP (the image builder's default).
pub const STACK_LABEL: &str = "OSAM-FIXUP";
/// How long the set of disks must stay the same before rescue goes on.
const SETTLE: Duration = Duration::from_secs(2);

/// What rescue mode did, and what `fixupctl mount`/`umount` did since.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RescueState {
    /// The stack's own disk(s) (kernel names), left alone.
    pub stack_disks: Vec<String>,
    /// The disks taken as the guest's.
    pub replica_disks: Vec<String>,
    pub assembly: Option<Assembly>,
    pub mounted: Option<MountedGuest>,
    /// Why the guest is not mounted, when it is not.
    pub not_mounted: Option<String>,
    /// Warnings and errors met, one line each (`code: message`).
    pub problems: Vec<String>,
    /// The input files copied from the fixup disk's `/fixup/` into
    /// /tmp/fixup at boot.
    pub inputs: Vec<String>,
}

/// Reads `<run_dir>/rescue.json`; `None` when there is none (not rescue
/// mode, or its setup could not write it).
pub fn load(run_dir: &Path) -> io::Result<Option<RescueState>> {
    let path = run_dir.join(STATE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Writes `<run_dir>/rescue.json` and the banner beside it, each
/// atomically; returns the banner's lines.
pub fn save(run_dir: &Path, s: &RescueState) -> io::Result<Vec<String>> {
    let lines = banner(s);
    std::fs::create_dir_all(run_dir)?;
    let mut json = serde_json::to_vec_pretty(s).map_err(io::Error::other)?;
    json.push(b'\n');
    crate::fsutil::write_atomic(&run_dir.join(STATE_NAME), &json, 0o644)?;
    let mut text = lines.join("\n");
    text.push('\n');
    crate::fsutil::write_atomic(&run_dir.join(BANNER_NAME), text.as_bytes(), 0o644)?;
    Ok(lines)
}

/// One disk as the choice of the stack's own disk sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskIdentity<'a> {
    pub name: &'a str,
    /// The GPT disk GUID, lowercase.
    pub gpt_guid: Option<String>,
    pub facts: Option<&'a DiskFacts>,
}

/// The stack's own disks: the one whose GPT disk GUID is `osam.disk=`;
/// without that option, or when no disk has that GUID, those with a
/// partition (or file system) labelled `OSAM-FIXUP`.
pub fn stack_disks(disks: &[DiskIdentity<'_>], osam_disk: Option<&str>) -> Vec<String> {
    if let Some(guid) = osam_disk {
        let by_guid: Vec<String> = disks
            .iter()
            .filter(|d| {
                d.gpt_guid
                    .as_deref()
                    .is_some_and(|g| g.eq_ignore_ascii_case(guid))
            })
            .map(|d| d.name.to_string())
            .collect();
        if !by_guid.is_empty() {
            return by_guid;
        }
    }
    let labelled = |f: &DiskFacts| {
        let fs_label = |fs: &Option<crate::storage::probe::FsInfo>| {
            fs.as_ref()
                .and_then(|f| f.label.as_deref())
                .is_some_and(|l| l.eq_ignore_ascii_case(STACK_LABEL))
        };
        fs_label(&f.fs)
            || f.partitions.iter().any(|p| {
                fs_label(&p.fs)
                    || p.partlabel
                        .as_deref()
                        .is_some_and(|l| l.eq_ignore_ascii_case(STACK_LABEL))
            })
    };
    disks
        .iter()
        .filter(|d| d.facts.is_some_and(labelled))
        .map(|d| d.name.to_string())
        .collect()
}

/// The GPT disk GUID of a disk, read from its node.
fn gpt_guid(dev: &Path, disk: &Disk) -> Option<String> {
    let mut f = File::open(dev.join(&disk.name)).ok()?;
    match read_partitions(&mut f, disk.size_bytes, 512).ok()?.kind {
        TableKind::Gpt { disk_guid, .. } => Some(disk_guid.to_ascii_lowercase()),
        _ => None,
    }
}

/// The lines of the console banner for what rescue mode did (and
/// `fixupctl mount`/`umount` since).
pub fn banner(s: &RescueState) -> Vec<String> {
    let rule = "=".repeat(64);
    let mut out = vec![rule.clone(), "OSAM rescue mode".to_string()];
    out.push(format!(
        "guest disks: {}{}",
        if s.replica_disks.is_empty() {
            "none found".to_string()
        } else {
            s.replica_disks.join(" ")
        },
        if s.stack_disks.is_empty() {
            String::new()
        } else {
            format!(" (the stack's own: {})", s.stack_disks.join(" "))
        }
    ));
    if let Some(a) = &s.assembly {
        let how = if a.read_only {
            "read-only"
        } else {
            "read-write"
        };
        for l in a.summary() {
            out.push(format!("assembled, {how}: {l}"));
        }
        for c in &a.clashes {
            out.push(format!("NOT activated: {}", c.describe()));
            out.push(format!(
                "  to use one, read-only: lvm vgchange -ay --noudevsync --config \
                 'activation {{ read_only_volume_list=[\"{}\"] }}' --select vg_uuid=<uuid>",
                c.name
            ));
        }
    }
    let read_write = s.mounted.as_ref().is_some_and(|m| !m.read_only);
    match &s.mounted {
        Some(m) if m.read_only => {
            out.push(format!(
                "the guest is mounted READ-ONLY at {} (nothing on its disks is changed):",
                m.sysroot.display()
            ));
            for l in m.summary() {
                out.push(format!("  {l}"));
            }
        }
        Some(m) => {
            out.push(format!(
                "the guest is mounted READ-WRITE at {} (journals replayed; changes reach its disks):",
                m.sysroot.display()
            ));
            for l in m.summary() {
                out.push(format!("  {l}"));
            }
            let binds: Vec<&str> = m
                .mounts
                .iter()
                .filter(|r| r.kind == MountKind::Stack)
                .map(|r| r.guest_path.as_str())
                .collect();
            if !binds.is_empty() {
                out.push(format!(
                    "  the stack's {} bound in, for chroot and fixupctl run",
                    binds.join(" ")
                ));
            }
        }
        None => {
            out.push(format!(
                "the guest is NOT mounted: {}",
                s.not_mounted.as_deref().unwrap_or("nothing to mount")
            ));
            if !s.replica_disks.is_empty() {
                out.push("  fixupctl mount [--rw] mounts it (again)".to_string());
            }
            out.push(
                "  by hand: mount -o ro,noload /dev/sdXN /sysroot (ext4; xfs: ro,norecovery)"
                    .to_string(),
            );
        }
    }
    if let Some(m) = &s.mounted {
        for r in &m.other_roots {
            out.push(format!("also looks like a guest root, not mounted: {r}"));
        }
    }
    if s.inputs.is_empty() {
        out.push(format!(
            "input files: none on the fixup disk's /fixup/; put the three JSON files into \
             {DEFAULT_FIXUP_DIR} for fixupctl plan and run"
        ));
    } else {
        out.push(format!(
            "input files from the fixup disk's /fixup/, copied to {DEFAULT_FIXUP_DIR}: {}",
            s.inputs.join(" ")
        ));
    }
    if !s.problems.is_empty() {
        out.push("problems:".to_string());
        for p in &s.problems {
            out.push(format!("  {p}"));
        }
    }
    out.push("commands:".to_string());
    let mut commands = vec![("fixupctl status", "what is assembled and mounted")];
    if read_write {
        commands.extend([
            ("fixupctl plan", "what a fixup would change"),
            ("fixupctl run", "run the fixup on the mounted guest"),
            ("fixupctl undo", "put back what a fixup changed"),
            ("fixupctl umount", "unmount and release the disks"),
        ]);
    } else {
        commands.extend([
            (
                "fixupctl mount --rw",
                "mount the guest read-write, to repair it",
            ),
            ("fixupctl plan", "what a fixup would change"),
        ]);
    }
    commands.extend([
        ("fixupctl collect", "gather the logs for support"),
        ("chroot /sysroot /bin/sh", "look around inside the guest"),
        ("poweroff -f", "power off"),
    ]);
    for (c, what) in commands {
        out.push(format!("  {c:<24} {what}"));
    }
    out.push(rule);
    out
}

/// Waits up to `timeout` for at least one disk besides the stack's own,
/// and for the set of disks to settle. Returns (replicas, stack disks,
/// facts of all).
fn wait_for_disks(
    sysfs: &Path,
    timeout: Duration,
    osam_disk: Option<&str>,
) -> (Vec<Disk>, Vec<String>, Vec<DiskFacts>) {
    let start = Instant::now();
    let mut last: Option<Vec<String>> = None;
    let mut since = Instant::now();
    let mut seen = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let disks = discover::scan(sysfs);
        let names: Vec<String> = disks.iter().map(|d| d.name.clone()).collect();
        if last.as_ref() != Some(&names) {
            last = Some(names);
            since = Instant::now();
            // Probed again only when the set of disks changes.
            let facts = devlinks::facts_from_sysfs(sysfs, Path::new("/dev"), &disks);
            let ids: Vec<DiskIdentity> = disks
                .iter()
                .map(|d| DiskIdentity {
                    name: &d.name,
                    gpt_guid: gpt_guid(Path::new("/dev"), d),
                    facts: facts.iter().find(|f| f.name == d.name),
                })
                .collect();
            let own = stack_disks(&ids, osam_disk);
            let replicas: Vec<Disk> = disks
                .iter()
                .filter(|d| !own.contains(&d.name))
                .cloned()
                .collect();
            seen = (replicas, own, facts);
        }
        let settled = !seen.0.is_empty() && since.elapsed() >= SETTLE;
        if settled
            || start.elapsed() >= timeout
            || signals::STOP.load(std::sync::atomic::Ordering::SeqCst)
        {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The disks as they are now, in one pass: (replicas, the stack's own,
/// facts of all).
pub fn scan_disks(
    sysfs: &Path,
    osam_disk: Option<&str>,
) -> (Vec<Disk>, Vec<String>, Vec<DiskFacts>) {
    wait_for_disks(sysfs, Duration::ZERO, osam_disk)
}

/// Assembles the md arrays and LVM volume groups of `replicas` and mounts
/// the guest at `sysroot`, read-only (journals not replayed, devices set
/// read-only, the stack's trees not bound) or read-write (the stack's
/// /dev /proc /sys /run bound in for chroot); records the outcome in `s`
/// (`assembly`, `mounted` or `not_mounted`, and the warnings in
/// `problems`).
pub fn assemble_and_mount(
    s: &mut RescueState,
    ctx: &mut LogCtx<'_>,
    replicas: &[Disk],
    facts: &[DiskFacts],
    sysroot: &Path,
    read_only: bool,
) {
    let replica_facts: Vec<(usize, &DiskFacts)> = replicas
        .iter()
        .enumerate()
        .filter_map(|(i, d)| Some((i, facts.iter().find(|f| f.name == d.name)?)))
        .collect();
    let mut probed = probed_from_facts(&replica_facts);
    let assembly = assemble(ctx, &probed, &AssembleOptions::new(read_only));
    probed.extend(assembly.probed());
    let _ = std::fs::create_dir_all(sysroot);
    match mount_guest(
        ctx,
        &probed,
        &MapHints::default(),
        sysroot,
        &MountOptions::rescue(read_only),
    ) {
        Ok(m) => {
            s.mounted = Some(m);
            s.not_mounted = None;
        }
        Err(e) => {
            s.mounted = None;
            s.not_mounted = Some(match &e.detail {
                Some(d) => format!("{}: {} ({d})", e.code, e.message),
                None => format!("{}: {}", e.code, e.message),
            });
        }
    }
    s.problems.extend(
        ctx.warnings
            .drain(..)
            .map(|w| format!("{}: {}", w.code, w.message)),
    );
    s.assembly = Some(assembly);
}

/// Finds, assembles and mounts the guest read-only. Never panics into the
/// caller (see [`start`]).
pub fn run(opts: &Options) -> RescueState {
    let mut s = RescueState::default();
    logging::info(format!(
        "rescue mode: waiting up to {} s for the guest's disks",
        opts.disk_timeout.as_secs()
    ));
    let sysfs = Path::new("/sys");
    let (replicas, own, facts) = wait_for_disks(sysfs, opts.disk_timeout, opts.disk.as_deref());
    s.stack_disks = own;
    s.replica_disks = replicas.iter().map(|d| d.name.clone()).collect();
    if opts.disk.is_some() && s.stack_disks.is_empty() {
        s.problems.push(format!(
            "no disk has the GPT disk GUID {} (osam.disk=) or an {STACK_LABEL} partition: every \
             disk is taken as the guest's",
            opts.disk.as_deref().unwrap_or("")
        ));
    }
    let links = devlinks::plan(&facts);
    if let Err(e) = devlinks::create_links(Path::new("/dev"), &links.links) {
        s.problems.push(format!("creating /dev/disk links: {e}"));
    }
    if replicas.is_empty() {
        s.not_mounted = Some(format!(
            "no disk besides the stack's own appeared within {} s (osam.disk_timeout)",
            opts.disk_timeout.as_secs()
        ));
        return s;
    }
    let mut runner = RealRunner {
        cancel: Some(&signals::STOP),
    };
    let mut ctx = LogCtx::new(&mut runner);
    assemble_and_mount(
        &mut s,
        &mut ctx,
        &replicas,
        &facts,
        Path::new(SYSROOT),
        true,
    );
    s
}

/// Copies the input files (`*.json`) of the fixup disk's `/fixup/` into
/// `fixup_dir` (created, mode 0700), the ESP mounted read-only for the
/// moment. Returns the names copied.
pub fn import_esp_inputs(osam_disk: Option<&str>, fixup_dir: &Path) -> Result<Vec<String>, String> {
    use std::os::unix::fs::DirBuilderExt;
    if !fixup_dir.is_dir() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(fixup_dir)
            .map_err(|e| format!("creating {}: {e}", fixup_dir.display()))?;
    }
    let Some(guid) = osam_disk else {
        return Ok(Vec::new());
    };
    let location = disk_transport::find_esp(Path::new("/sys"), Path::new("/dev"), guid)
        .map_err(|e| e.to_string())?;
    let mut esp =
        EspMount::mount_read_only(location, Path::new(ESP_MOUNT)).map_err(|e| e.to_string())?;
    let copied = disk_transport::import_inputs(
        &esp.mount_point.join(disk_transport::ESP_FIXUP_DIR),
        fixup_dir,
    )
    .map_err(|e| format!("copying the input files from the fixup disk: {e}"));
    if let Err(e) = esp.unmount() {
        logging::warn(format!("rescue mode: {e}"));
    }
    copied
}

/// Rescue mode's entry from PID 1: runs [`run`], turning a panic into a
/// banner line, copies the fixup disk's input files into /tmp/fixup,
/// saves the state and the banner under /run/osam and shows the banner
/// on the consoles.
pub fn start(opts: &Options) {
    let mut s = catch_unwind(AssertUnwindSafe(|| run(opts))).unwrap_or_else(|_| RescueState {
        not_mounted: Some(
            "an internal error stopped the rescue setup (see the console above); mount the guest \
             by hand"
                .into(),
        ),
        ..RescueState::default()
    });
    match import_esp_inputs(opts.disk.as_deref(), Path::new(DEFAULT_FIXUP_DIR)) {
        Ok(names) => s.inputs = names,
        Err(e) => s.problems.push(format!(
            "the input files on the fixup disk's /fixup/ were not copied to {DEFAULT_FIXUP_DIR}: {e}"
        )),
    }
    let lines = match save(&crate::lock::run_dir(), &s) {
        Ok(lines) => lines,
        Err(e) => {
            logging::warn(format!("cannot write {STATE_FILE} and {BANNER_FILE}: {e}"));
            banner(&s)
        }
    };
    for l in &lines {
        logging::info(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pid1::sysroot::{MountKind, MountRecord, RootCandidate};
    use crate::storage::assemble::{VgClash, VolumeGroup};
    use crate::storage::devlinks::PartFacts;
    use crate::storage::probe::FsInfo;

    fn facts(name: &str, label: Option<&str>) -> DiskFacts {
        DiskFacts {
            name: name.into(),
            partitions: vec![PartFacts {
                name: format!("{name}1"),
                number: 1,
                fs: Some(FsInfo {
                    fs_type: "vfat".into(),
                    uuid: None,
                    label: label.map(Into::into),
                    version: None,
                }),
                partuuid: None,
                partlabel: None,
            }],
            ..DiskFacts::default()
        }
    }

    #[test]
    fn the_stack_disk_is_found_by_guid_else_by_label() {
        let a = facts("sda", Some("EFI"));
        let b = facts("sdb", Some("OSAM-FIXUP"));
        let ids = vec![
            DiskIdentity {
                name: "sda",
                gpt_guid: Some("aaaa".into()),
                facts: Some(&a),
            },
            DiskIdentity {
                name: "sdb",
                gpt_guid: Some("bbbb".into()),
                facts: Some(&b),
            },
        ];
        assert_eq!(stack_disks(&ids, Some("AAAA")), ["sda"]);
        assert_eq!(stack_disks(&ids, Some("cccc")), ["sdb"]);
        assert_eq!(stack_disks(&ids, None), ["sdb"]);
        assert!(stack_disks(&ids[..1], None).is_empty());
    }

    #[test]
    fn banner_says_what_is_mounted_and_what_to_do() {
        let s = RescueState {
            stack_disks: vec!["sdc".into()],
            replica_disks: vec!["sda".into(), "sdb".into()],
            assembly: Some(Assembly {
                clashes: vec![VgClash {
                    name: "rhel".into(),
                    groups: vec![
                        VolumeGroup {
                            name: "rhel".into(),
                            uuid: "U1".into(),
                            pvs: vec!["/dev/sda2".into()],
                        },
                        VolumeGroup {
                            name: "rhel".into(),
                            uuid: "U2".into(),
                            pvs: vec!["/dev/sdb2".into()],
                        },
                    ],
                }],
                ..Assembly::default()
            }),
            mounted: Some(MountedGuest {
                sysroot: "/sysroot".into(),
                root: RootCandidate {
                    device: "/dev/sda1".into(),
                    fs_type: "ext4".into(),
                    subvol: None,
                },
                read_only: true,
                mounts: vec![MountRecord {
                    kind: MountKind::Root,
                    source: "/dev/sda1".into(),
                    target: "/sysroot".into(),
                    guest_path: "/".into(),
                    fstype: Some("ext4".into()),
                    data: Some("noload".into()),
                    read_only: true,
                }],
                other_roots: vec![RootCandidate {
                    device: "/dev/sdb1".into(),
                    fs_type: "xfs".into(),
                    subvol: None,
                }],
                read_only_devices: vec![],
            }),
            not_mounted: None,
            problems: vec!["storage.luks_skipped: /dev/sdb3 is a LUKS volume".into()],
            inputs: vec![],
        };
        let text = banner(&s).join("\n");
        for want in [
            "guest disks: sda sdb (the stack's own: sdc)",
            "READ-ONLY at /sysroot",
            "/dev/sda1 on /sysroot (ext4, noload), read-only",
            "also looks like a guest root, not mounted: /dev/sdb1 (xfs)",
            "NOT activated: 2 LVM volume groups are named \"rhel\"",
            "read_only_volume_list=[\"rhel\"] }' --select vg_uuid=<uuid>",
            "UUID U2 on /dev/sdb2",
            "storage.luks_skipped",
            "fixupctl status",
            "fixupctl mount --rw",
            "fixupctl plan",
            "fixupctl collect",
            "poweroff -f",
            "input files: none on the fixup disk's /fixup/; put the three JSON files into \
             /tmp/fixup",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        assert!(!text.contains("fixupctl umount"), "{text}");

        // Mounted read-write by fixupctl mount --rw, with the inputs.
        let mut rw = s.clone();
        let m = rw.mounted.as_mut().unwrap();
        m.read_only = false;
        m.mounts[0].read_only = false;
        m.mounts[0].data = None;
        m.mounts.push(MountRecord {
            kind: MountKind::Stack,
            source: "/dev".into(),
            target: "/sysroot/dev".into(),
            guest_path: "/dev".into(),
            fstype: None,
            data: None,
            read_only: false,
        });
        rw.inputs = vec!["replica-disk-map.json".into()];
        let text = banner(&rw).join("\n");
        for want in [
            "READ-WRITE at /sysroot",
            "  /dev/sda1 on /sysroot (ext4)\n",
            "the stack's /dev bound in",
            "fixupctl run",
            "fixupctl undo",
            "fixupctl umount",
            "copied to /tmp/fixup: replica-disk-map.json",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        assert!(
            !text.contains("READ-ONLY") && !text.contains("mount --rw"),
            "{text}"
        );

        let none = RescueState {
            not_mounted: Some("guest.root_not_found: no guest root".into()),
            ..RescueState::default()
        };
        let text = banner(&none).join("\n");
        assert!(text.contains("guest disks: none found"));
        assert!(!text.contains("fixupctl mount [--rw]"), "{text}");
        assert!(text.contains("the guest is NOT mounted: guest.root_not_found: no guest root"));
        assert!(text.contains("poweroff -f"));
    }

    #[test]
    fn state_round_trips_as_json() {
        let s = RescueState {
            replica_disks: vec!["sda".into()],
            assembly: Some(Assembly::default()),
            inputs: vec!["system-configuration.json".into()],
            ..RescueState::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"replicaDisks\""));
        let back: RescueState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        // A record written before `inputs` existed still reads.
        let old: RescueState =
            serde_json::from_str(r#"{"stackDisks":["sdb"],"replicaDisks":["sda"]}"#).unwrap();
        assert_eq!(old.stack_disks, ["sdb"]);
        assert!(old.inputs.is_empty());
    }

    #[test]
    fn save_writes_the_record_and_the_banner_and_load_reads_it() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run/osam");
        assert_eq!(load(&run).unwrap(), None);
        let s = RescueState {
            replica_disks: vec!["sda".into()],
            not_mounted: Some("released by fixupctl umount".into()),
            ..RescueState::default()
        };
        let lines = save(&run, &s).unwrap();
        assert_eq!(load(&run).unwrap(), Some(s));
        let text = std::fs::read_to_string(run.join(BANNER_NAME)).unwrap();
        assert_eq!(text, lines.join("\n") + "\n");
        assert!(
            text.contains("NOT mounted: released by fixupctl umount"),
            "{text}"
        );
        assert!(text.contains("fixupctl mount [--rw] mounts it"), "{text}");
        std::fs::write(run.join(STATE_NAME), b"{").unwrap();
        assert!(load(&run).is_err());
    }
}
