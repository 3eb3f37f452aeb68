//! Guest disks prepared and inspected on the host for the fault cases
//! (`tests/fault_cases.rs`) and the power-cut tests (`crate::faults`): an
//! image (qcow2, or an overlay with its backing chain) converted to raw,
//! a partition of it attached to a loop device of its own, mounted
//! read-write to change it (fill it up), read-only without journal replay
//! (`ro,noload`) to look at it, or read-only on a writable device (the
//! journal replayed, as the guest's kernel would at its next boot), and a
//! [`Snapshot`] of the files the fixup would touch to show that nothing
//! was lost.
//!
//! Needs root (loop devices, mount). Every attachment and mount is a guard
//! that undoes itself on drop, also when a test fails; [`release_under`]
//! cleans what a killed test process left.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Runs a command with its output captured; its standard output, or an
/// error naming it, with its standard error.
pub fn run_command(command: &mut Command) -> Result<String> {
    let line = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {line}"))?;
    if !out.status.success() {
        bail!(
            "{line} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program` with `args` ([`run_command`]).
pub fn run(program: &str, args: &[&OsStr]) -> Result<String> {
    run_command(Command::new(program).args(args))
}

/// Whether this process runs as root (loop devices and mounts need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Converts `image` (any format QEMU reads, an overlay with its whole
/// backing chain) to a sparse raw image at `raw`.
pub fn to_raw(image: &Path, raw: &Path) -> Result<()> {
    run(
        "qemu-img",
        &[
            "convert".as_ref(),
            "-O".as_ref(),
            "raw".as_ref(),
            image.as_os_str(),
            raw.as_os_str(),
        ],
    )
    .map(drop)
    .with_context(|| format!("converting {} to raw", image.display()))
}

/// Partition `n` of a raw image on a loop device of its own (`losetup
/// -o … --sizelimit …` from `sfdisk -J`: no partition nodes needed, which
/// `losetup -P` would need udev or devtmpfs to make, and a container may
/// lack); detached on drop.
#[derive(Debug)]
pub struct Loop {
    device: String,
}

/// Partition `n`'s (1-based) start and size in bytes, from the image's
/// partition table (`sfdisk -J`: MBR or GPT).
pub fn partition_extent(raw: &Path, n: u32) -> Result<(u64, u64)> {
    let out = run("sfdisk", &["-J".as_ref(), raw.as_os_str()])?;
    let table: serde_json::Value =
        serde_json::from_str(&out).context("sfdisk -J printed no JSON")?;
    let sector = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    let parts = table["partitiontable"]["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Nodes are `<image><n>` (`disk.raw1`): the number after the last
    // non-digit.
    let number = |node: &str| {
        let digits = node.len() - node.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        node[node.len() - digits..].parse::<u32>().ok()
    };
    let part = parts
        .iter()
        .find(|p| p["node"].as_str().and_then(number) == Some(n))
        .or_else(|| parts.get(n.saturating_sub(1) as usize))
        .with_context(|| format!("{}: no partition {n} in {out}", raw.display()))?;
    let start = part["start"].as_u64().context("no start")?;
    let size = part["size"].as_u64().context("no size")?;
    Ok((start * sector, size * sector))
}

impl Loop {
    /// Attaches partition `n` of `raw` (read-only unless `writable`).
    pub fn attach(raw: &Path, n: u32, writable: bool) -> Result<Loop> {
        let (offset, size) = partition_extent(raw, n)?;
        let (offset, size) = (offset.to_string(), size.to_string());
        let mut args: Vec<&OsStr> = vec![
            "--find".as_ref(),
            "--show".as_ref(),
            "-o".as_ref(),
            offset.as_ref(),
            "--sizelimit".as_ref(),
            size.as_ref(),
        ];
        if !writable {
            args.push("-r".as_ref());
        }
        args.push(raw.as_os_str());
        let device = run("losetup", &args)
            .with_context(|| format!("attaching {} to a loop device", raw.display()))?
            .trim()
            .to_owned();
        if device.is_empty() {
            bail!("losetup named no device for {}", raw.display());
        }
        Ok(Loop { device })
    }

    /// The loop device (`/dev/loop3`): the partition's file system.
    pub fn device(&self) -> &Path {
        Path::new(&self.device)
    }
}

/// Runs `program args` until it succeeds, 10 tries 300 ms apart (a device
/// or mount still busy for a moment); whether it did.
fn retry(program: &str, args: &[&OsStr]) -> bool {
    for _ in 0..10 {
        if run(program, args).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

impl Drop for Loop {
    fn drop(&mut self) {
        if !retry("losetup", &["-d".as_ref(), self.device.as_ref()]) {
            eprintln!("warning: could not detach {}", self.device);
        }
    }
}

/// How [`Mounted`] mounts a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    /// Read-write (`rw`) on a writable loop device: to change the file
    /// system.
    ReadWrite,
    /// Read-only without journal replay (`ro,noload`) on a read-only loop
    /// device: a dirty journal stays dirty, nothing is written.
    ReadOnlyNoLoad,
    /// Read-only (`ro`) on a writable loop device: ext4 replays its
    /// journal (writing to the image, so use a scratch copy), which is what
    /// the guest's kernel does at its next boot; the tree then holds the
    /// last committed transactions.
    ReadOnlyReplayed,
}

impl MountMode {
    /// Whether the loop device under the mount is writable.
    fn writable_device(self) -> bool {
        !matches!(self, MountMode::ReadOnlyNoLoad)
    }

    /// The `mount -o` options.
    fn options(self) -> &'static str {
        match self {
            MountMode::ReadWrite => "rw",
            MountMode::ReadOnlyNoLoad => "ro,noload",
            MountMode::ReadOnlyReplayed => "ro",
        }
    }
}

/// A partition of a raw image mounted at a temporary folder; unmounted
/// and detached on drop.
#[derive(Debug)]
pub struct Mounted {
    dir: tempfile::TempDir,
    mounted: bool,
    // Dropped after the unmount (fields drop in order, after `drop`).
    _loop: Loop,
}

impl Mounted {
    /// Partition `part` of `raw`: read-write with `writable`, else
    /// read-only on a read-only loop device without journal replay
    /// (`ro,noload`: a dirty journal stays dirty, nothing is written).
    /// The mount point is a new folder in the system's temporary folder.
    pub fn partition(raw: &Path, part: u32, writable: bool) -> Result<Mounted> {
        let mode = if writable {
            MountMode::ReadWrite
        } else {
            MountMode::ReadOnlyNoLoad
        };
        Self::mount(raw, part, mode, &std::env::temp_dir())
    }

    /// Partition `part` of `raw` mounted as `mode` says at a new folder
    /// in `under` (where [`release_under`] finds it if the guards never
    /// ran).
    pub fn mount(raw: &Path, part: u32, mode: MountMode, under: &Path) -> Result<Mounted> {
        let dev = Loop::attach(raw, part, mode.writable_device())?;
        let node = dev.device().to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("osam-mnt-")
            .tempdir_in(under)
            .with_context(|| format!("a mount point in {}", under.display()))?;
        let options = mode.options();
        run(
            "mount",
            &[
                "-o".as_ref(),
                options.as_ref(),
                node.as_os_str(),
                dir.path().as_os_str(),
            ],
        )
        .with_context(|| format!("mounting {} ({options})", node.display()))?;
        Ok(Mounted {
            dir,
            mounted: true,
            _loop: dev,
        })
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Unmounts now (errors reported, not only logged as on drop).
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        run("umount", &[self.dir.path().as_os_str()]).map(drop)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        if !retry("umount", &[self.dir.path().as_os_str()]) {
            // Busy (a reader still open): detach it lazily rather than
            // leave the loop device held for ever.
            let _ = run("umount", &["-l".as_ref(), self.dir.path().as_os_str()]);
        }
    }
}

/// Unmounts whatever is mounted under `dir` and detaches the loop devices
/// whose backing file is under it: what a killed test process (no drop
/// guards ran) left behind. Best effort; returns what it released.
pub fn release_under(dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    let mut released = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| Path::new(p).starts_with(&dir))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if run("umount", &[p.as_ref()]).is_ok() {
            released.push(format!("unmounted {p}"));
        }
    }
    let loops = run(
        "losetup",
        &["-l", "-n", "-O", "NAME,BACK-FILE"].map(OsStr::new),
    )
    .unwrap_or_default();
    for line in loops.lines() {
        let mut parts = line.split_whitespace();
        let (Some(dev), Some(back)) = (parts.next(), parts.next()) else {
            continue;
        };
        if Path::new(back).starts_with(&dir) && run("losetup", &["-d", dev].map(OsStr::new)).is_ok()
        {
            released.push(format!("detached {dev} ({back})"));
        }
    }
    released
}

/// Free blocks (including the blocks reserved for root) and the block
/// size of the file system at `path`.
pub fn free_blocks(path: &Path) -> Result<(u64, u64)> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .context("a path with a NUL byte")?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `st` a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statvfs {}", path.display()));
    }
    Ok((st.f_bfree as u64, st.f_frsize as u64))
}

/// Fills the file system mounted at `root` (as root: the reserved blocks
/// too) with files under `root/<dir>` until not one block is free;
/// returns the bytes added.
pub fn fill(root: &Path, dir: &str) -> Result<u64> {
    let filler = root.join(dir);
    std::fs::create_dir_all(&filler).with_context(|| format!("creating {}", filler.display()))?;
    let mut added = 0u64;
    let mut n = 0u32;
    // Big preallocations first, then ever smaller ones: fallocate fails
    // with ENOSPC as a whole, so the last blocks need small files.
    let mut chunk: u64 = 1 << 30;
    while chunk >= 4096 {
        let (free, bsize) = free_blocks(root)?;
        if free == 0 {
            break;
        }
        let size = chunk.min(free * bsize);
        let path = filler.join(format!("fill-{n:04}"));
        n += 1;
        let ok = run(
            "fallocate",
            &["-l".as_ref(), size.to_string().as_ref(), path.as_os_str()],
        )
        .is_ok();
        if ok {
            added += size;
        } else {
            let _ = std::fs::remove_file(&path);
            chunk /= 2;
        }
    }
    let _ = run("sync", &[root.as_os_str()]);
    Ok(added)
}

/// The files the fixup touches in a Debian guest, relative to its root:
/// the storage, network and GRUB configuration, and every initrd image
/// in `/boot` (found in `root`).
pub fn touched_files(root: &Path) -> Vec<String> {
    let mut files: Vec<String> = [
        "etc/fstab",
        "etc/network/interfaces",
        "etc/default/grub",
        "boot/grub/grub.cfg",
        "etc/initramfs-tools/modules",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Ok(entries) = std::fs::read_dir(root.join("boot")) {
        let mut initrds: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("initrd.img") || n.starts_with("initramfs"))
            .map(|n| format!("boot/{n}"))
            .collect();
        initrds.sort();
        files.extend(initrds);
    }
    files
}

/// What a file was: its SHA-256 and size, or absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Not there.
    Absent,
    /// There, with this digest (hex) and size.
    Present { sha256: String, size: u64 },
}

/// The state of a list of guest files at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot(pub BTreeMap<String, FileState>);

impl Snapshot {
    /// Reads `files` (relative paths) under `root`.
    pub fn take(root: &Path, files: &[String]) -> Result<Snapshot> {
        let mut map = BTreeMap::new();
        for f in files {
            let path = root.join(f);
            let state = match std::fs::read(&path) {
                Ok(bytes) => FileState::Present {
                    sha256: format!("{:x}", Sha256::digest(&bytes)),
                    size: bytes.len() as u64,
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Absent,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            map.insert(f.clone(), state);
        }
        Ok(Snapshot(map))
    }

    /// The files whose state differs from `before`'s, with both states.
    pub fn changed_since(&self, before: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (f, was) in &before.0 {
            let now = self.0.get(f).unwrap_or(&FileState::Absent);
            if now != was {
                out.push(format!("{f}: {was:?} -> {now:?}"));
            }
        }
        for (f, now) in &self.0 {
            if !before.0.contains_key(f) {
                out.push(format!("{f}: new, {now:?}"));
            }
        }
        out
    }
}

/// `e2fsck -fn` on a device or image: (clean, its output).
pub fn e2fsck_readonly(device: &Path) -> Result<(bool, String)> {
    let out = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(device)
        .output()
        .context("running e2fsck")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code() == Some(0), text))
}

/// Whether the ext4 file system on `device` says its journal needs
/// recovery (`dumpe2fs -h`: `needs_recovery` among the features).
pub fn needs_recovery(device: &Path) -> Result<bool> {
    let out = run("dumpe2fs", &["-h".as_ref(), device.as_os_str()])?;
    Ok(out
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .is_some_and(|l| l.split_whitespace().any(|w| w == "needs_recovery")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_name_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/fstab"), "a\n").unwrap();
        let files = vec!["etc/fstab".to_string(), "etc/gone".to_string()];
        let before = Snapshot::take(dir.path(), &files).unwrap();
        assert!(
            Snapshot::take(dir.path(), &files)
                .unwrap()
                .changed_since(&before)
                .is_empty()
        );
        std::fs::write(dir.path().join("etc/fstab"), "b\n").unwrap();
        let after = Snapshot::take(dir.path(), &files).unwrap();
        let changed = after.changed_since(&before);
        assert_eq!(changed.len(), 1);
        assert!(changed[0].starts_with("etc/fstab"));
    }
}
