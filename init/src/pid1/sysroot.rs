//! Mounting a guest at a sysroot from a set of probed block devices
//! (replica partitions and disks, assembled LVs and md arrays, or loop
//! devices in tests), read-write for the fixup or read-only for rescue:
//!
//! 1. the root: the device the replica-disk-map marks `/` (its
//!    `mountPoint`), else a probe-guided search: only devices whose probed
//!    type can hold a root are trial-mounted (read-only, without journal
//!    replay), with that type, and a tree with `/etc/fstab` and an OS
//!    release file is a root; on btrfs, a top level that is not one is
//!    searched for a root subvolume (`@`, `root`, …). Two roots are
//!    `guest.multiple_roots` naming both (or, for rescue, the first wins);
//!    none is `guest.root_not_found`, or `storage.luks_unsupported` where
//!    LUKS volumes could hold it;
//! 2. the guest's fstab entries below it, in dependency order (parents
//!    first, bind mounts after their source): network, swap, `noauto` and
//!    pseudo file systems skipped, `subvol=` kept for btrfs, LVs found by
//!    `/dev/mapper/…` and `/dev/<vg>/<lv>`;
//! 3. the stack's `/dev`, `/proc`, `/sys`, `/run` (and efivarfs) bound in,
//!    for the chroot.
//!
//! Read-only means read-only for real: the devices are set read-only
//! (`BLKROSET`) before anything is mounted, every mount has `MS_RDONLY`,
//! and journals are not replayed (`noload` for ext3/4, `norecovery` for
//! xfs, `rescue=nologreplay` for btrfs; kernels before 5.9 only know it as
//! `nologreplay`, newer ones only as `rescue=nologreplay`: the mount tries
//! the other spelling when the kernel refuses one).
//!
//! Every mount is recorded in [`MountedGuest`], for the log ("fixup.log
//! lists what it mounted") and for [`MountedGuest::unmount`].

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, umount2};
use serde::{Deserialize, Serialize};

use crate::engine::identity::ProbedFs;
use crate::error::{FixupError, codes};
use crate::pid1::mounts::mount_one;
use crate::protocol::config::ReplicaDiskMap;
use crate::storage::assemble::{LUKS_TYPE, StorageCtx, mapper_name, valid_lvm_name};

/// Where candidate roots are trial-mounted.
pub const PROBE_DIR: &str = "/run/osam/probe";

/// File systems a guest root can be on.
pub const ROOT_FS: &[&str] = &["ext4", "ext3", "ext2", "xfs", "btrfs"];

/// Btrfs subvolume names that hold the root, in order of preference
/// (Ubuntu/Debian `@`, Fedora `root`).
const ROOT_SUBVOLUMES: &[&str] = &["@", "root", "@root", "@rootfs"];

/// Can a file system of this probed type hold a guest root?
pub fn is_root_fs(fs_type: &str) -> bool {
    ROOT_FS.contains(&fs_type)
}

/// Is this probed type a file system the stack mounts?
pub fn is_mountable(fs_type: &str) -> bool {
    is_root_fs(fs_type) || fs_type == "vfat"
}

/// btrfs's option not to replay the log (5.9 and later).
const BTRFS_NO_LOG_REPLAY: &str = "rescue=nologreplay";
/// Its spelling before 5.9 (removed in later kernels).
const BTRFS_NO_LOG_REPLAY_OLD: &str = "nologreplay";

/// [`mount_one`], retrying what a kernel may refuse for its version or
/// build: a btrfs mount with the other spelling of the no-log-replay
/// option (`EINVAL`), an ext2/ext3 mount as ext4 where only the ext4
/// driver is built (`ENODEV`). Returns the data used.
fn mount_fs(
    dev: &str,
    at: &Path,
    fs_type: Option<&str>,
    flags: MsFlags,
    data: Option<String>,
) -> Result<Option<String>, crate::pid1::mounts::MountError> {
    use nix::errno::Errno;
    let e = match mount_one(dev, at, fs_type, flags, data.as_deref()) {
        Ok(()) => return Ok(data),
        Err(e) => e,
    };
    match (e.errno, fs_type) {
        (Errno::ENODEV, Some("ext2" | "ext3")) => {
            mount_one(dev, at, Some("ext4"), flags, data.as_deref()).map_err(|_| e)?;
            Ok(data)
        }
        (Errno::EINVAL, Some("btrfs")) => {
            let Some(d) = data
                .as_deref()
                .filter(|d| d.split(',').any(|o| o == BTRFS_NO_LOG_REPLAY))
            else {
                return Err(e);
            };
            let old: Vec<&str> = d
                .split(',')
                .map(|o| {
                    if o == BTRFS_NO_LOG_REPLAY {
                        BTRFS_NO_LOG_REPLAY_OLD
                    } else {
                        o
                    }
                })
                .collect();
            let old = old.join(",");
            mount_one(dev, at, fs_type, flags, Some(&old)).map_err(|_| e)?;
            Ok(Some(old))
        }
        _ => Err(e),
    }
}

/// mount(2) data for a file system: `extra` (the guest's `subvol=`), and
/// in read-only mode the option that keeps the journal from being
/// replayed.
pub fn mount_data(fs_type: &str, read_only: bool, extra: Option<&str>) -> Option<String> {
    let mut opts: Vec<&str> = extra
        .into_iter()
        .flat_map(|e| e.split(','))
        .filter(|o| !o.is_empty())
        .collect();
    if read_only {
        match fs_type {
            "ext3" | "ext4" => opts.push("noload"),
            "xfs" => opts.push("norecovery"),
            "btrfs" => opts.push(BTRFS_NO_LOG_REPLAY),
            _ => {}
        }
    }
    (!opts.is_empty()).then(|| opts.join(","))
}

/// What the replica-disk-map tells the mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapHints {
    /// The stack's device that the map marks as `/`.
    pub root_device: Option<String>,
    /// (the guest's device name, the stack's device), from the map's
    /// `sourceDevice` of each partition.
    pub source_devices: Vec<(String, String)>,
}

/// The hints of a replica-disk-map for the probed devices.
pub fn map_hints(map: &ReplicaDiskMap, probed: &[ProbedFs]) -> MapHints {
    let mut h = MapHints::default();
    for (i, d) in map.disks.iter().enumerate() {
        for p in &d.partitions {
            let Some(target) = probed
                .iter()
                .find(|f| f.disk_index == i && f.partition == Some(p.number))
                .and_then(|f| f.target_device.clone())
            else {
                continue;
            };
            if p.mount_point.as_deref() == Some("/") && h.root_device.is_none() {
                h.root_device = Some(target.clone());
            }
            if let Some(src) = &p.source_device {
                h.source_devices.push((src.clone(), target));
            }
        }
    }
    h
}

/// What to do when more than one tree looks like a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipleRoots {
    /// `guest.multiple_roots` (the fixup: the map must say).
    Fail,
    /// Mount the first, list the others (rescue).
    First,
}

/// How to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub read_only: bool,
    /// Bind the stack's /dev, /proc, /sys, /run (and efivarfs) into the
    /// guest, for the chroot.
    pub bind_stack: bool,
    /// Where roots are trial-mounted.
    pub probe_dir: PathBuf,
    pub multiple_roots: MultipleRoots,
}

impl MountOptions {
    /// The fixup's (`read_only: false`: binds, one root) or rescue's
    /// (`true`: no binds, the first root) options.
    pub fn new(read_only: bool) -> Self {
        MountOptions {
            read_only,
            bind_stack: !read_only,
            probe_dir: PathBuf::from(PROBE_DIR),
            multiple_roots: if read_only {
                MultipleRoots::First
            } else {
                MultipleRoots::Fail
            },
        }
    }

    /// Rescue mode's (at boot, and `fixupctl mount [--rw]`): as
    /// [`MountOptions::new`], but where several trees look like a root
    /// the first is mounted and the others listed, read-write too.
    pub fn rescue(read_only: bool) -> Self {
        MountOptions {
            multiple_roots: MultipleRoots::First,
            ..MountOptions::new(read_only)
        }
    }
}

/// A tree that looks like a guest root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootCandidate {
    pub device: String,
    pub fs_type: String,
    /// The btrfs subvolume that holds it.
    pub subvol: Option<String>,
}

impl std::fmt::Display for RootCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}", self.device, self.fs_type)?;
        if let Some(s) = &self.subvol {
            write!(f, ", subvolume {s}")?;
        }
        write!(f, ")")
    }
}

/// What a mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MountKind {
    /// The guest's root.
    Root,
    /// A block-device entry of the guest's fstab.
    Fstab,
    /// A bind entry of the guest's fstab.
    Bind,
    /// A tree of the stack bound in (or efivarfs).
    Stack,
}

/// One mount made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountRecord {
    pub kind: MountKind,
    /// The device, the bound path, or the pseudo file system.
    pub source: String,
    /// Where it is mounted in the stack (`/sysroot/boot`).
    pub target: PathBuf,
    /// The path in the guest (`/boot`).
    pub guest_path: String,
    pub fstype: Option<String>,
    /// mount(2) data.
    pub data: Option<String>,
    pub read_only: bool,
}

/// A mounted guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountedGuest {
    pub sysroot: PathBuf,
    pub root: RootCandidate,
    pub read_only: bool,
    /// In mount order.
    pub mounts: Vec<MountRecord>,
    /// Other trees that looked like roots (rescue mounts the first).
    pub other_roots: Vec<RootCandidate>,
    /// Devices this mount set read-only (set back by
    /// [`MountedGuest::unmount`]).
    pub read_only_devices: Vec<String>,
}

impl MountedGuest {
    /// One line per mount, for the log and the rescue banner.
    pub fn summary(&self) -> Vec<String> {
        self.mounts
            .iter()
            .filter(|m| m.kind != MountKind::Stack)
            .map(|m| {
                format!(
                    "{} on {}{}{}",
                    m.source,
                    m.target.display(),
                    m.fstype
                        .as_deref()
                        .filter(|_| m.kind != MountKind::Bind)
                        .map(|t| format!(
                            " ({t}{})",
                            m.data
                                .as_deref()
                                .map(|d| format!(", {d}"))
                                .unwrap_or_default()
                        ))
                        .unwrap_or_else(|| if m.kind == MountKind::Bind {
                            " (bind)".into()
                        } else {
                            String::new()
                        }),
                    if m.read_only { ", read-only" } else { "" }
                )
            })
            .collect()
    }

    /// Syncs and unmounts everything in reverse order (the stack's trees
    /// lazily; a guest file system that will not unmount is remounted
    /// read-only), then sets the devices this mount made read-only back to
    /// read-write. Returns what could not be released; those mounts stay
    /// in [`MountedGuest::mounts`] (a read-write one remounted read-only
    /// is recorded so), and the devices stay read-only while anything is
    /// left.
    pub fn unmount(&mut self) -> Vec<String> {
        nix::unistd::sync();
        let mut failed = Vec::new();
        let mut kept = Vec::new();
        while let Some(mut m) = self.mounts.pop() {
            let flags = if m.kind == MountKind::Stack {
                MntFlags::MNT_DETACH
            } else {
                MntFlags::empty()
            };
            let Err(e) = umount2(&m.target, flags) else {
                continue;
            };
            if m.read_only {
                failed.push(format!("{}: {e}", m.target.display()));
                kept.push(m);
                continue;
            }
            let ro = nix::mount::mount(
                None::<&str>,
                &m.target,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
            failed.push(match ro {
                Ok(()) => {
                    m.read_only = true;
                    format!("{}: {e} (remounted read-only)", m.target.display())
                }
                Err(e2) => format!("{}: {e}, read-only remount: {e2}", m.target.display()),
            });
            kept.push(m);
        }
        kept.reverse();
        self.mounts = kept;
        nix::unistd::sync();
        if self.mounts.is_empty() {
            for d in self.read_only_devices.drain(..) {
                if let Err(e) = set_read_only(&d, false) {
                    failed.push(format!("setting {d} read-write again: {e}"));
                }
            }
        }
        failed
    }
}

mod ioctl {
    //! The block device read-only flag (linux/fs.h).
    nix::ioctl_write_ptr_bad!(blkroset, nix::request_code_none!(0x12, 93), libc::c_int);
    nix::ioctl_read_bad!(blkroget, nix::request_code_none!(0x12, 94), libc::c_int);
}

/// Sets a block device's read-only flag; returns whether it was set
/// before.
pub fn set_read_only(device: &str, read_only: bool) -> io::Result<bool> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(device)?;
    let fd = f.as_raw_fd();
    let mut was: libc::c_int = 0;
    // SAFETY: `fd` is open for the call (`f` lives to the end of the
    // function) and BLKROGET writes one int through the pointer, which
    // points to `was`.
    unsafe { ioctl::blkroget(fd, &mut was) }.map_err(io::Error::from)?;
    let v = libc::c_int::from(read_only);
    // SAFETY: as above; BLKROSET reads one int from the pointer, which
    // points to `v`.
    unsafe { ioctl::blkroset(fd, &v) }.map_err(io::Error::from)?;
    Ok(was != 0)
}

/// Does this directory look like an OS root: `/etc/fstab` and an OS
/// release file?
pub fn looks_like_root(dir: &Path) -> bool {
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

/// The btrfs subvolumes right below a mounted top level that look like a
/// root: the preferred name alone when there is one, else all of them.
/// (A subvolume's root directory has inode number 256.)
pub fn root_subvolumes(top: &Path) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(top)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.path()
                        .symlink_metadata()
                        .is_ok_and(|m| m.is_dir() && m.ino() == 256)
                })
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| looks_like_root(&top.join(n)))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if let Some(p) = ROOT_SUBVOLUMES
        .iter()
        .find(|p| found.iter().any(|f| f == *p))
    {
        return vec![p.to_string()];
    }
    found
}

fn same_device(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

const TRIAL_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Trial-mounts the devices whose probed type can hold a root (only
/// `only` when given) read-only without journal replay, with their probed
/// type, and returns the trees that look like a guest root, in device
/// order.
pub fn find_roots(
    ctx: &mut dyn StorageCtx,
    devices: &[ProbedFs],
    only: Option<&str>,
    probe_dir: &Path,
) -> Vec<RootCandidate> {
    let _ = fs::create_dir_all(probe_dir);
    let mut out = Vec::new();
    for p in devices {
        let (Some(dev), Some(fs_type)) = (p.target_device.as_deref(), p.fs_type.as_deref()) else {
            continue;
        };
        if !is_root_fs(fs_type) || only.is_some_and(|o| !same_device(o, dev)) {
            continue;
        }
        let data = mount_data(fs_type, true, None);
        if let Err(e) = mount_fs(dev, probe_dir, Some(fs_type), TRIAL_FLAGS, data) {
            ctx.log(&format!("trial mount of {dev}: {e}"));
            continue;
        }
        if looks_like_root(probe_dir) {
            ctx.log(&format!("{dev} ({fs_type}) holds an OS root"));
            out.push(RootCandidate {
                device: dev.to_string(),
                fs_type: fs_type.to_string(),
                subvol: None,
            });
        } else if fs_type == "btrfs" {
            for s in root_subvolumes(probe_dir) {
                ctx.log(&format!("{dev} (btrfs) holds an OS root in subvolume {s}"));
                out.push(RootCandidate {
                    device: dev.to_string(),
                    fs_type: fs_type.to_string(),
                    subvol: Some(s),
                });
            }
        } else {
            ctx.log(&format!("{dev} ({fs_type}) is not an OS root"));
        }
        if let Err(e) = umount2(probe_dir, MntFlags::MNT_DETACH) {
            ctx.log(&format!("unmounting {}: {e}", probe_dir.display()));
        }
    }
    out
}

/// A path of the guest below the sysroot, refusing `..` and symlinks on
/// the way (a guest symlink must not redirect a mount into the stack).
pub fn guest_path(sysroot: &Path, path: &str) -> Result<PathBuf, String> {
    let mut p = sysroot.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => {
                p.push(s);
                if p.symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    return Err(format!(
                        "{path}: {} is a symbolic link in the guest",
                        p.strip_prefix(sysroot).unwrap_or(&p).display()
                    ));
                }
            }
            _ => return Err(format!("{path}: not a plain absolute path")),
        }
    }
    Ok(p)
}

fn root_not_found(devices: &[ProbedFs], only: Option<&str>) -> FixupError {
    let tried: Vec<String> = devices
        .iter()
        .filter(|p| p.fs_type.as_deref().is_some_and(is_root_fs))
        .filter(|p| {
            only.is_none_or(|o| {
                p.target_device
                    .as_deref()
                    .is_some_and(|d| same_device(o, d))
            })
        })
        .map(|p| {
            format!(
                "{} ({})",
                p.target_device.as_deref().unwrap_or("?"),
                p.fs_type.as_deref().unwrap_or("?")
            )
        })
        .collect();
    let others: Vec<String> = devices
        .iter()
        .filter(|p| !p.fs_type.as_deref().is_some_and(is_root_fs))
        .map(|p| {
            format!(
                "{} ({})",
                p.target_device.as_deref().unwrap_or("?"),
                p.fs_type.as_deref().unwrap_or("nothing known")
            )
        })
        .collect();
    let msg = match only {
        Some(o) => format!(
            "the replica disk map marks {o} as \"/\", but it holds no guest root file system (a tree \
             with /etc/fstab and an OS release file){}",
            if tried.is_empty() {
                " it can mount".to_string()
            } else {
                String::new()
            }
        ),
        None if tried.is_empty() => {
            "no file system on the replicas can hold a guest root (ext2/3/4, xfs, btrfs)"
                .to_string()
        }
        None => format!(
            "no guest root file system (a tree with /etc/fstab and an OS release file) on {}",
            tried.join(", ")
        ),
    };
    FixupError::new(codes::GUEST_ROOT_NOT_FOUND, msg).with_detail(format!(
        "also on the replicas: {}; check the replica disk map (mark the root with mountPoint \"/\") \
         and that every disk of the guest is attached",
        if others.is_empty() {
            "nothing else".to_string()
        } else {
            others.join(", ")
        }
    ))
}

fn luks_error(luks: &[&ProbedFs], declared: bool) -> FixupError {
    let names: Vec<String> = luks
        .iter()
        .map(|p| {
            format!(
                "{}{}",
                p.target_device.as_deref().unwrap_or("?"),
                p.uuid
                    .as_deref()
                    .map(|u| format!(" (LUKS UUID={u})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let msg = if declared {
        format!(
            "the guest's root file system is on the encrypted volume {}: encrypted guests are not \
             supported",
            names.join(", ")
        )
    } else {
        format!(
            "no guest root file system outside the encrypted volume(s) {}, which the root must be \
             in: encrypted guests are not supported",
            names.join(", ")
        )
    };
    FixupError::new(codes::STORAGE_LUKS_UNSUPPORTED, msg).with_detail(
        "decrypt the volume on the source (cryptsetup reencrypt --decrypt) and migrate again, or fix \
         the guest by hand from the rescue shell",
    )
}

/// Mounts the guest found on `devices` at `sysroot`: the root, its fstab
/// entries, the stack's trees (see the module documentation).
/// Errors: `guest.root_not_found`, `guest.multiple_roots`,
/// `storage.luks_unsupported`, `guest.io` (the root would not mount);
/// nothing stays mounted then. A guest fstab entry that cannot be mounted
/// is a `guest.io` warning.
pub fn mount_guest(
    ctx: &mut dyn StorageCtx,
    devices: &[ProbedFs],
    hints: &MapHints,
    sysroot: &Path,
    opts: &MountOptions,
) -> Result<MountedGuest, FixupError> {
    let ro = opts.read_only;
    let mut read_only_devices = Vec::new();
    if ro {
        for p in devices {
            let (Some(dev), Some(t)) = (p.target_device.as_deref(), p.fs_type.as_deref()) else {
                continue;
            };
            if !is_mountable(t) {
                continue;
            }
            match set_read_only(dev, true) {
                Ok(false) => read_only_devices.push(dev.to_string()),
                Ok(true) => {}
                Err(e) => ctx.log(&format!("cannot set {dev} read-only: {e}")),
            }
        }
    }
    let release = |devs: &mut Vec<String>| {
        for d in devs.drain(..) {
            let _ = set_read_only(&d, false);
        }
    };
    let luks: Vec<&ProbedFs> = devices
        .iter()
        .filter(|p| p.fs_type.as_deref() == Some(LUKS_TYPE))
        .collect();

    // 1. The root.
    let mut only = hints.root_device.as_deref();
    if let Some(o) = only {
        match devices.iter().find(|p| {
            p.target_device
                .as_deref()
                .is_some_and(|d| same_device(o, d))
        }) {
            Some(p) if p.fs_type.as_deref() == Some(LUKS_TYPE) => {
                release(&mut read_only_devices);
                return Err(luks_error(&[p], true));
            }
            Some(p) if p.fs_type.as_deref().is_some_and(is_root_fs) => {}
            other => {
                ctx.log(&format!(
                    "the replica disk map marks {o} as \"/\" but it holds {}; searching every \
                     device",
                    other
                        .and_then(|p| p.fs_type.as_deref())
                        .unwrap_or("no known file system")
                ));
                only = None;
            }
        }
    }
    let roots = find_roots(ctx, devices, only, &opts.probe_dir);
    let (root, other_roots) = match roots.as_slice() {
        [] => {
            release(&mut read_only_devices);
            if only.is_none() && !luks.is_empty() {
                return Err(luks_error(&luks, false));
            }
            return Err(root_not_found(devices, only));
        }
        [one] => (one.clone(), Vec::new()),
        [first, rest @ ..] => {
            if opts.multiple_roots == MultipleRoots::Fail {
                release(&mut read_only_devices);
                let all: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
                return Err(FixupError::new(
                    codes::GUEST_MULTIPLE_ROOTS,
                    format!(
                        "more than one guest root: {}; mark the right one with mountPoint \"/\" in \
                         replica-disk-map.json",
                        all.join(" and ")
                    ),
                ));
            }
            (first.clone(), rest.to_vec())
        }
    };
    let flags = if ro {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    let data = mount_data(
        &root.fs_type,
        ro,
        root.subvol
            .as_ref()
            .map(|s| format!("subvol={s}"))
            .as_deref(),
    );
    let data = match mount_fs(&root.device, sysroot, Some(&root.fs_type), flags, data) {
        Ok(d) => d,
        Err(e) => {
            release(&mut read_only_devices);
            return Err(FixupError::new(
                codes::GUEST_IO,
                format!(
                    "the guest root {root} mounts read-only for the search but not {} at {}: {e}",
                    if ro { "read-only" } else { "read-write" },
                    sysroot.display()
                ),
            )
            .with_detail("check the file system from the rescue shell (e2fsck, xfs_repair -n)"));
        }
    };
    ctx.log(&format!(
        "mounted the guest root {root} at {}{}",
        sysroot.display(),
        if ro { " read-only" } else { "" }
    ));
    let mut g = MountedGuest {
        sysroot: sysroot.to_path_buf(),
        root: root.clone(),
        read_only: ro,
        mounts: vec![MountRecord {
            kind: MountKind::Root,
            source: root.device.clone(),
            target: sysroot.to_path_buf(),
            guest_path: "/".into(),
            fstype: Some(root.fs_type.clone()),
            data,
            read_only: ro,
        }],
        other_roots,
        read_only_devices,
    };

    // 2. The guest's fstab.
    let fstab = fs::read_to_string(sysroot.join("etc/fstab")).unwrap_or_default();
    for entry in order_mounts(guest_mounts(&fstab)) {
        mount_entry(ctx, &mut g, &entry, devices, hints, ro);
    }

    // 3. The stack's trees, for the chroot.
    if opts.bind_stack {
        bind_stack(ctx, &mut g);
    }
    Ok(g)
}

fn mount_entry(
    ctx: &mut dyn StorageCtx,
    g: &mut MountedGuest,
    entry: &GuestMount,
    devices: &[ProbedFs],
    hints: &MapHints,
    ro: bool,
) {
    let sysroot = g.sysroot.clone();
    let at = match guest_path(&sysroot, &entry.target) {
        Ok(p) => p,
        Err(e) => {
            ctx.warn(codes::GUEST_IO, format!("/etc/fstab: {e}; not mounted"));
            return;
        }
    };
    if entry.bind {
        let src = match guest_path(&sysroot, &entry.spec) {
            Ok(p) => p,
            Err(e) => {
                ctx.warn(
                    codes::GUEST_IO,
                    format!("/etc/fstab bind mount: {e}; not mounted"),
                );
                return;
            }
        };
        let mut flags = MsFlags::MS_BIND;
        if entry.recursive {
            flags |= MsFlags::MS_REC;
        }
        let src_s = src.display().to_string();
        if let Err(e) = mount_one(&src_s, &at, None, flags, None) {
            ctx.warn(
                codes::GUEST_IO,
                format!(
                    "/etc/fstab: bind mount of {} on {}: {e}",
                    entry.spec, entry.target
                ),
            );
            return;
        }
        if ro {
            let _ = nix::mount::mount(
                None::<&str>,
                &at,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
        ctx.log(&format!("bound {src_s} on {}", at.display()));
        g.mounts.push(MountRecord {
            kind: MountKind::Bind,
            source: src_s,
            target: at,
            guest_path: entry.target.clone(),
            fstype: None,
            data: None,
            read_only: ro,
        });
        return;
    }
    let Some(dev) = resolve_spec(&entry.spec, devices, &hints.source_devices) else {
        ctx.warn(
            codes::GUEST_IO,
            format!(
                "/etc/fstab: {} for {} is not on the replicas; not mounted",
                entry.spec, entry.target
            ),
        );
        return;
    };
    let probed_type = devices
        .iter()
        .find(|p| p.target_device.as_deref() == Some(dev.as_str()))
        .and_then(|p| p.fs_type.clone());
    let fstype = match probed_type {
        Some(t) if is_mountable(&t) => Some(t),
        Some(t) => {
            ctx.warn(
                codes::GUEST_IO,
                format!(
                    "/etc/fstab: {} for {} is {dev}, which holds {t}, not a file system the stack \
                     mounts; not mounted",
                    entry.spec, entry.target
                ),
            );
            return;
        }
        None => (entry.fstype != "auto").then(|| entry.fstype.clone()),
    };
    let data = mount_data(fstype.as_deref().unwrap_or(""), ro, entry.data.as_deref());
    let flags = if ro {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    match mount_fs(&dev, &at, fstype.as_deref(), flags, data) {
        Ok(data) => {
            ctx.log(&format!(
                "mounted {dev} ({}) at {}",
                fstype.as_deref().unwrap_or("auto"),
                at.display()
            ));
            g.mounts.push(MountRecord {
                kind: MountKind::Fstab,
                source: dev,
                target: at,
                guest_path: entry.target.clone(),
                fstype,
                data,
                read_only: ro,
            });
        }
        Err(e) => ctx.warn(
            codes::GUEST_IO,
            format!("/etc/fstab {} ({}): {e}", entry.target, entry.spec),
        ),
    }
}

fn bind_stack(ctx: &mut dyn StorageCtx, g: &mut MountedGuest) {
    let sysroot = g.sysroot.clone();
    for (src, flags) in [
        ("/dev", MsFlags::MS_BIND | MsFlags::MS_REC),
        ("/proc", MsFlags::MS_BIND),
        ("/sys", MsFlags::MS_BIND | MsFlags::MS_REC),
        ("/run", MsFlags::MS_BIND),
    ] {
        let at = match guest_path(&sysroot, src) {
            Ok(p) => p,
            Err(e) => {
                ctx.warn(
                    codes::GUEST_IO,
                    format!("binding {src} into the guest: {e}"),
                );
                continue;
            }
        };
        match mount_one(src, &at, None, flags, None) {
            Ok(()) => g.mounts.push(MountRecord {
                kind: MountKind::Stack,
                source: src.into(),
                target: at,
                guest_path: src.into(),
                fstype: None,
                data: None,
                read_only: false,
            }),
            Err(e) => ctx.warn(
                codes::GUEST_IO,
                format!("binding {src} into the guest: {e}"),
            ),
        }
    }
    if Path::new("/sys/firmware/efi").is_dir() {
        let at = sysroot.join("sys/firmware/efi/efivars");
        let flags = if g.read_only {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        };
        if mount_one("efivarfs", &at, Some("efivarfs"), flags, None).is_ok() {
            g.mounts.push(MountRecord {
                kind: MountKind::Stack,
                source: "efivarfs".into(),
                target: at,
                guest_path: "/sys/firmware/efi/efivars".into(),
                fstype: Some("efivarfs".into()),
                data: None,
                read_only: g.read_only,
            });
        }
    }
}

/// An entry of the guest's fstab that is mounted below the sysroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMount {
    /// The device spec, or the bind mount's source path.
    pub spec: String,
    pub target: String,
    pub fstype: String,
    /// mount(2) data: the options a file system needs to find the right
    /// tree (btrfs `subvol=`/`subvolid=`).
    pub data: Option<String>,
    /// A bind mount (`bind`/`rbind`) of a guest path.
    pub bind: bool,
    /// `rbind`.
    pub recursive: bool,
}

/// The entries of a guest fstab to mount below the sysroot, in fstab
/// order: local file systems other than the root, and bind mounts; swap,
/// `noauto`, `_netdev`, network and pseudo file systems are left out.
pub fn guest_mounts(fstab: &str) -> Vec<GuestMount> {
    const SKIP_FS: &[&str] = &[
        "swap",
        "nfs",
        "nfs4",
        "cifs",
        "smbfs",
        "smb3",
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
        "efivarfs",
        "securityfs",
        "debugfs",
        "cgroup",
        "cgroup2",
        "hugetlbfs",
        "mqueue",
        "binfmt_misc",
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
        let spec = crate::fsutil::unescape_octal(f[0]);
        let target = crate::fsutil::unescape_octal(f[1]);
        let opts = f.get(3).copied().unwrap_or("defaults");
        let opt_list: Vec<&str> = opts.split(',').collect();
        let has = |o: &str| opt_list.contains(&o);
        if target == "/"
            || !target.starts_with('/')
            || target.split('/').any(|c| c == "..")
            || has("noauto")
            || has("_netdev")
        {
            continue;
        }
        let bind = has("bind") || has("rbind");
        if bind {
            if spec.starts_with('/') && !spec.split('/').any(|c| c == "..") {
                out.push(GuestMount {
                    spec,
                    target,
                    fstype: f[2].to_string(),
                    data: None,
                    bind: true,
                    recursive: has("rbind"),
                });
            }
            continue;
        }
        if SKIP_FS.contains(&f[2]) || f[2].starts_with("fuse") {
            continue;
        }
        let data: Vec<&str> = opt_list
            .iter()
            .copied()
            .filter(|o| o.starts_with("subvol=") || o.starts_with("subvolid="))
            .collect();
        out.push(GuestMount {
            spec,
            target,
            fstype: f[2].to_string(),
            data: (!data.is_empty()).then(|| data.join(",")),
            bind: false,
            recursive: false,
        });
    }
    out
}

/// Is `a` the path `b` or one of its ancestors (by components)?
fn is_ancestor_or_same(a: &str, b: &str) -> bool {
    Path::new(b).starts_with(Path::new(a))
}

/// Orders mounts so that each comes after the mounts it depends on (a
/// mount below another's target; a bind mount whose source is below
/// another's target), keeping fstab order otherwise.
pub fn order_mounts(entries: Vec<GuestMount>) -> Vec<GuestMount> {
    let depends = |m: &GuestMount, o: &GuestMount| {
        (o.target != m.target && is_ancestor_or_same(&o.target, &m.target))
            || (m.bind && is_ancestor_or_same(&o.target, &m.spec))
    };
    let mut left = entries;
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let i = (0..left.len())
            .find(|&i| {
                !left
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && depends(&left[i], o))
            })
            .unwrap_or(0);
        out.push(left.remove(i));
    }
    out
}

/// Undoes udev's `\xHH` escaping of a link name.
fn decode_link_name(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(h) = s.get(i + 2..i + 4)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The stack's device for an fstab device spec, among `probed` only: by
/// UUID, LABEL or PARTUUID (or their `/dev/disk/by-*` links), a source
/// device name through the replica map, a device-mapper name
/// (`/dev/mapper/vg-lv`, `/dev/<vg>/<lv>`), or a /dev path that resolves
/// to one of the probed devices.
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
    // Labels are case-sensitive; a guest whose fstab spells one in
    // another case is still found.
    let by_label = |v: &str| {
        probed
            .iter()
            .find(|p| p.label.as_deref() == Some(v))
            .or_else(|| {
                probed.iter().find(|p| {
                    p.label
                        .as_deref()
                        .is_some_and(|l| l.eq_ignore_ascii_case(v))
                })
            })
            .and_then(|p| p.target_device.clone())
    };
    if let Some(v) = spec.strip_prefix("UUID=") {
        return by(&|p| p.uuid.as_ref(), &unquote(v));
    }
    if let Some(v) = spec.strip_prefix("LABEL=") {
        return by_label(&unquote(v));
    }
    if let Some(v) = spec.strip_prefix("PARTUUID=") {
        return by(&|p| p.partuuid.as_ref(), &unquote(v));
    }
    if let Some(v) = spec.strip_prefix("/dev/disk/by-uuid/") {
        return by(&|p| p.uuid.as_ref(), v);
    }
    if let Some(v) = spec.strip_prefix("/dev/disk/by-label/") {
        return by_label(&decode_link_name(v));
    }
    if let Some(v) = spec.strip_prefix("/dev/disk/by-partuuid/") {
        return by(&|p| p.partuuid.as_ref(), v);
    }
    if let Some((_, t)) = source_devices.iter().find(|(s, _)| s == spec) {
        return Some(t.clone());
    }
    let known = |d: &str| {
        probed
            .iter()
            .find(|p| p.target_device.as_deref() == Some(d))
            .and_then(|p| p.target_device.clone())
    };
    if let Some(t) = known(spec) {
        return Some(t);
    }
    // /dev/<vg>/<lv> → /dev/mapper/<vg>-<lv>
    if let Some(rest) = spec.strip_prefix("/dev/")
        && let Some((vg, lv)) = rest.split_once('/')
        && valid_lvm_name(vg)
        && valid_lvm_name(lv)
        && !matches!(vg, "disk" | "mapper" | "md")
        && let Some(t) = known(&format!("/dev/mapper/{}", mapper_name(vg, lv)))
    {
        return Some(t);
    }
    if !spec.starts_with("/dev/") {
        return None;
    }
    let real = fs::canonicalize(spec).ok()?;
    probed
        .iter()
        .filter_map(|p| p.target_device.as_deref())
        .find(|d| fs::canonicalize(d).is_ok_and(|c| c == real))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::RecordingRunner;
    use crate::storage::assemble::LogCtx;

    #[test]
    fn guest_mounts_with_what_to_skip_and_binds() {
        let fstab = "# comment\nUUID=a / ext4 defaults 0 1\n\
                     UUID=c /boot/efi vfat umask=0077 0 1\n\
                     UUID=b /boot xfs defaults 0 2\n\
                     /dev/sda3 none swap sw 0 0\n\
                     srv:/x /mnt/nfs nfs defaults 0 0\n\
                     //srv/share /mnt/cifs cifs credentials=/x 0 0\n\
                     LABEL=data /data btrfs subvol=@data,compress=zstd 0 0\n\
                     /dev/sdb1 /noauto ext4 noauto 0 0\n\
                     /data/www /srv/www none bind 0 0\n\
                     /data/x /srv/x none rbind,noauto 0 0\n\
                     tmpfs /tmp tmpfs defaults 0 0\n\
                     /dev/mapper/vg-iscsi /iscsi xfs _netdev 0 0\n";
        let m = guest_mounts(fstab);
        let targets: Vec<&str> = m.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/boot/efi", "/boot", "/data", "/srv/www"]);
        assert_eq!(m[2].data.as_deref(), Some("subvol=@data"));
        assert!(m[3].bind && !m[3].recursive);
        assert_eq!(m[3].spec, "/data/www");
        let ordered: Vec<String> = order_mounts(m).into_iter().map(|m| m.target).collect();
        assert_eq!(ordered, ["/boot", "/boot/efi", "/data", "/srv/www"]);
    }

    #[test]
    fn bind_mounts_come_after_their_source() {
        let m = guest_mounts(
            "/mnt/a/b /x none bind 0 0\n/dev/sdb1 /mnt/a ext4 defaults 0 0\n\
             /dev/sdb2 /mnt ext4 defaults 0 0\n/dev/sdb3 /mntx ext4 defaults 0 0\n",
        );
        let ordered: Vec<String> = order_mounts(m).into_iter().map(|m| m.target).collect();
        assert_eq!(ordered, ["/mnt", "/mnt/a", "/x", "/mntx"]);
    }

    #[test]
    fn mount_data_per_type_and_mode() {
        let table = [
            ("ext4", false, None, None),
            ("ext4", true, None, Some("noload")),
            ("ext3", true, None, Some("noload")),
            ("ext2", true, None, None),
            ("xfs", true, None, Some("norecovery")),
            (
                "btrfs",
                true,
                Some("subvol=@"),
                Some("subvol=@,rescue=nologreplay"),
            ),
            ("btrfs", false, Some("subvol=@home"), Some("subvol=@home")),
            ("vfat", true, None, None),
        ];
        for (t, ro, extra, want) in table {
            assert_eq!(mount_data(t, ro, extra).as_deref(), want, "{t} {ro}");
        }
        assert!(is_root_fs("xfs") && !is_root_fs("vfat") && is_mountable("vfat"));
        assert!(!is_mountable("swap") && !is_mountable("LVM2_member"));
    }

    fn pf(dev: &str, t: &str, uuid: &str, label: Option<&str>) -> ProbedFs {
        ProbedFs {
            disk_index: 0,
            partition: Some(1),
            target_device: Some(dev.into()),
            fs_type: Some(t.into()),
            uuid: Some(uuid.into()),
            partuuid: Some(format!("{uuid}-01")),
            label: label.map(Into::into),
        }
    }

    #[test]
    fn specs_resolve_through_probes_the_map_and_lvm_names() {
        let mut lv = pf("/dev/mapper/my--vg-root", "xfs", "lvroot", None);
        lv.partition = None;
        let probed = vec![pf("/dev/sdb1", "ext4", "0b6c", Some("my boot")), lv];
        let map = vec![("/dev/sda1".to_string(), "/dev/sdb1".to_string())];
        for spec in [
            "UUID=0B6C",
            "UUID=\"0b6c\"",
            "LABEL=my boot",
            "LABEL=\"my boot\"",
            "PARTUUID=0b6c-01",
            "/dev/disk/by-uuid/0b6c",
            "/dev/disk/by-label/my\\x20boot",
            "/dev/disk/by-partuuid/0b6c-01",
            "/dev/sda1",
            "/dev/sdb1",
        ] {
            assert_eq!(
                resolve_spec(spec, &probed, &map).as_deref(),
                Some("/dev/sdb1"),
                "{spec}"
            );
        }
        for spec in ["/dev/mapper/my--vg-root", "/dev/my-vg/root"] {
            assert_eq!(
                resolve_spec(spec, &probed, &map).as_deref(),
                Some("/dev/mapper/my--vg-root"),
                "{spec}"
            );
        }
        assert_eq!(resolve_spec("UUID=none", &probed, &map), None);
        assert_eq!(
            resolve_spec("LABEL=MY BOOT", &probed, &map).as_deref(),
            Some("/dev/sdb1")
        );
        assert_eq!(resolve_spec("/dev/osam-nonexistent", &probed, &map), None);
        // A stack device that is not among the probed ones is not the guest's.
        assert_eq!(resolve_spec("/dev/null", &probed, &map), None);
        assert_eq!(resolve_spec("/dev/other-vg/root", &probed, &map), None);
    }

    #[test]
    fn map_hints_take_the_root_and_source_names() {
        let inputs = crate::engine::identity::test_inputs(
            r#"[{"sourceDevice":"/dev/sda","target":{"controller":"scsi0","unit":0},"boot":true,
                "partitions":[{"number":1,"sourceDevice":"/dev/sda1","mountPoint":"/boot"},
                              {"number":2,"sourceDevice":"/dev/sda2","mountPoint":"/"}]}]"#,
            "uuid",
        );
        let mut p2 = pf("/dev/sdb2", "xfs", "r", None);
        p2.partition = Some(2);
        let probed = vec![pf("/dev/sdb1", "xfs", "b", None), p2];
        let h = map_hints(&inputs.disks, &probed);
        assert_eq!(h.root_device.as_deref(), Some("/dev/sdb2"));
        assert_eq!(
            h.source_devices,
            vec![
                ("/dev/sda1".to_string(), "/dev/sdb1".to_string()),
                ("/dev/sda2".to_string(), "/dev/sdb2".to_string())
            ]
        );
    }

    #[test]
    fn guest_paths_refuse_symlinks_and_dotdot() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("boot")).unwrap();
        std::os::unix::fs::symlink("/", root.join("evil")).unwrap();
        assert_eq!(
            guest_path(root, "/boot/efi").unwrap(),
            root.join("boot/efi")
        );
        assert!(
            guest_path(root, "/evil/etc")
                .unwrap_err()
                .contains("symbolic link")
        );
        assert!(guest_path(root, "/boot/../..").is_err());
    }

    #[test]
    fn no_root_candidates_name_what_was_found() {
        let mut runner = RecordingRunner::new();
        let mut ctx = LogCtx::new(&mut runner);
        let d = tempfile::tempdir().unwrap();
        let opts = MountOptions {
            probe_dir: d.path().join("probe"),
            ..MountOptions::new(false)
        };
        let devices = vec![
            pf("/dev/osam-none1", "swap", "s", None),
            pf("/dev/osam-none2", "LVM2_member", "p", None),
        ];
        let e = mount_guest(
            &mut ctx,
            &devices,
            &MapHints::default(),
            &d.path().join("sysroot"),
            &opts,
        )
        .unwrap_err();
        assert_eq!(e.code, codes::GUEST_ROOT_NOT_FOUND);
        let detail = e.detail.unwrap();
        assert!(detail.contains("/dev/osam-none2 (LVM2_member)"), "{detail}");

        let mut with_luks = devices.clone();
        with_luks.push(pf("/dev/osam-none3", "crypto_LUKS", "c", None));
        let e = mount_guest(
            &mut ctx,
            &with_luks,
            &MapHints::default(),
            &d.path().join("sysroot"),
            &opts,
        )
        .unwrap_err();
        assert_eq!(e.code, codes::STORAGE_LUKS_UNSUPPORTED);
        assert!(e.message.contains("/dev/osam-none3"), "{}", e.message);

        let hints = MapHints {
            root_device: Some("/dev/osam-none3".into()),
            ..MapHints::default()
        };
        let e = mount_guest(&mut ctx, &with_luks, &hints, &d.path().join("s"), &opts).unwrap_err();
        assert_eq!(e.code, codes::STORAGE_LUKS_UNSUPPORTED);
        assert!(
            e.message
                .contains("root file system is on the encrypted volume")
        );
    }

    #[test]
    fn summary_lists_mounts_not_the_stack_trees() {
        let g = MountedGuest {
            sysroot: "/sysroot".into(),
            root: RootCandidate {
                device: "/dev/sdb2".into(),
                fs_type: "btrfs".into(),
                subvol: Some("@".into()),
            },
            read_only: true,
            mounts: vec![
                MountRecord {
                    kind: MountKind::Root,
                    source: "/dev/sdb2".into(),
                    target: "/sysroot".into(),
                    guest_path: "/".into(),
                    fstype: Some("btrfs".into()),
                    data: Some("subvol=@,rescue=nologreplay".into()),
                    read_only: true,
                },
                MountRecord {
                    kind: MountKind::Bind,
                    source: "/sysroot/data/www".into(),
                    target: "/sysroot/srv/www".into(),
                    guest_path: "/srv/www".into(),
                    fstype: None,
                    data: None,
                    read_only: true,
                },
                MountRecord {
                    kind: MountKind::Stack,
                    source: "/dev".into(),
                    target: "/sysroot/dev".into(),
                    guest_path: "/dev".into(),
                    fstype: None,
                    data: None,
                    read_only: false,
                },
            ],
            other_roots: Vec::new(),
            read_only_devices: Vec::new(),
        };
        assert_eq!(
            g.summary(),
            [
                "/dev/sdb2 on /sysroot (btrfs, subvol=@,rescue=nologreplay), read-only",
                "/sysroot/data/www on /sysroot/srv/www (bind), read-only"
            ]
        );
        assert_eq!(g.root.to_string(), "/dev/sdb2 (btrfs, subvolume @)");
    }
}
