//! The host side of the power-cut tests (`tests/fault_kills.rs`): reading
//! a guest disk the way the guest's kernel would after the cut, and
//! deciding whether every file the fixup changes is whole.
//!
//! Given the pristine guest, a reference (the guest after one complete,
//! successful stage 1) and a killed guest (stage 1 cut by a SIGKILL of
//! QEMU), [`check_killed`] compares the three trees: for every path whose
//! version differs between pristine and reference, the killed tree must
//! hold one of the two versions (by SHA-256; a missing file is a version
//! when one side lacks it). Some new versions are not reproducible from one
//! run to the next; they are checked for being complete instead
//! ([`Rule`]): a regenerated initramfs must be the old bytes or an image
//! that decompresses to its end and holds `vmw_pvscsi.ko`. The stack's own
//! data folder (`/opt/vmware/hcx/osam/data`) holds timestamps: its backups
//! must be the pristine file's bytes, its JSON files complete JSON.
//!
//! Reading an image ([`MountedImage`]): `qemu-img convert -O raw` to a
//! scratch file (the qcow2 chain stays untouched), the partition of that
//! copy on a loop device of its own (offset and size from `sfdisk --json`:
//! `losetup -P` needs partition nodes that a container may never get),
//! writable, and a read-only mount **with** the journal replayed:
//! ext4 replays its journal on a read-only mount when the device is
//! writable, which is what the guest's kernel does at its next boot. A
//! `noload` mount would show the tree without the last committed
//! transactions — a state no one ever sees. Loop devices, mounts and the
//! scratch copy go away on drop.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use osam_init::decompress::{self, Compression};
use osam_init::engine::fixups::initramfs::cpio;
use sha2::{Digest, Sha256};

use crate::diskprep::{self, MountMode, Mounted};

/// The stack's data folder in the guest.
pub const DATA_DIR: &str = "opt/vmware/hcx/osam/data";

pub use crate::diskprep::release_under;

/// One partition of a guest disk image, mounted read-only after its
/// journal was replayed on a scratch copy. Dropping it unmounts, detaches
/// the loop device and removes the copy (fields drop in this order).
pub struct MountedImage {
    mounted: Mounted,
    _scratch: tempfile::TempDir,
}

impl MountedImage {
    /// Mounts partition `partition` (1-based) of `image` (any format
    /// qemu-img reads, backing files followed); the scratch copy goes
    /// under `scratch` (it needs the disk's virtual size, sparse). Root
    /// only (losetup, mount).
    pub fn mount(image: &Path, partition: u32, scratch: &Path) -> Result<Self, String> {
        fs::create_dir_all(scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("osam-fault-image-")
            .tempdir_in(scratch)
            .map_err(|e| format!("creating a scratch folder in {}: {e}", scratch.display()))?;
        let raw = dir.path().join("disk.raw");
        diskprep::to_raw(image, &raw).map_err(|e| format!("{e:#}"))?;
        // Read-only, journal replayed (the loop device is writable).
        let mounted = Mounted::mount(&raw, partition, MountMode::ReadOnlyReplayed, dir.path())
            .map_err(|e| {
                format!(
                    "mounting partition {partition} of {}: {e:#}",
                    image.display()
                )
            })?;
        Ok(Self {
            mounted,
            _scratch: dir,
        })
    }

    /// The mounted tree.
    pub fn root(&self) -> &Path {
        self.mounted.root()
    }
}

/// One path of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Symlink(PathBuf),
    Dir,
    Other,
}

/// One path of a tree: its kind and what tells versions apart cheaply.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    pub size: u64,
    /// (inode, mtime ns, ctime ns): equal in two images derived from the
    /// same base means the same, untouched file.
    stamp: (u64, i128, i128),
}

/// A tree's paths (relative, `/`-separated) and the tree's root.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: PathBuf,
    pub entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// Walks `root` (not following symlinks, not crossing into other
    /// file systems' mounts: an image has none).
    pub fn scan(root: &Path) -> Result<Tree, String> {
        let mut entries = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let read = fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
            for item in read {
                let item = item.map_err(|e| format!("reading {}: {e}", dir.display()))?;
                let rel = rel.join(item.file_name());
                let path = root.join(&rel);
                let md = fs::symlink_metadata(&path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                let ft = md.file_type();
                let kind = if ft.is_symlink() {
                    Kind::Symlink(
                        fs::read_link(&path)
                            .map_err(|e| format!("reading the link {}: {e}", path.display()))?,
                    )
                } else if ft.is_dir() {
                    stack.push(rel.clone());
                    Kind::Dir
                } else if ft.is_file() {
                    Kind::File
                } else {
                    Kind::Other
                };
                let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
                entries.insert(
                    rel.to_string_lossy().into_owned(),
                    Entry {
                        kind,
                        size: md.len(),
                        stamp: (
                            md.ino(),
                            ns(md.mtime(), md.mtime_nsec()),
                            ns(md.ctime(), md.ctime_nsec()),
                        ),
                    },
                );
            }
        }
        Ok(Tree {
            root: root.to_path_buf(),
            entries,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// A SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file = fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// A version of a path: absent, or its kind and content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    Absent,
    File(String),
    Symlink(PathBuf),
    Dir,
    Other,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Absent => write!(f, "absent"),
            Version::File(h) => write!(f, "file sha256 {}", &h[..h.len().min(16)]),
            Version::Symlink(t) => write!(f, "symlink to {}", t.display()),
            Version::Dir => write!(f, "directory"),
            Version::Other => write!(f, "special file"),
        }
    }
}

fn version(tree: &Tree, rel: &str) -> Result<Version, String> {
    Ok(match tree.entries.get(rel).map(|e| &e.kind) {
        None => Version::Absent,
        Some(Kind::File) => Version::File(sha256_file(&tree.path(rel))?),
        Some(Kind::Symlink(t)) => Version::Symlink(t.clone()),
        Some(Kind::Dir) => Version::Dir,
        Some(Kind::Other) => Version::Other,
    })
}

/// Whether `rel` is certainly the same in `a` and `b` (two images from the
/// same base): same kind, size and (inode, mtime, ctime). Anything else is
/// decided by hashing.
fn untouched(a: &Tree, b: &Tree, rel: &str) -> bool {
    match (a.entries.get(rel), b.entries.get(rel)) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            x.kind == y.kind && x.size == y.size && (x.kind == Kind::Dir || x.stamp == y.stamp)
        }
        _ => false,
    }
}

/// How a changed path of the killed tree is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The old version or the reference's new one, by hash.
    OldOrNew,
    /// The old bytes, or a complete initramfs holding `vmw_pvscsi.ko`
    /// (regenerated images differ from run to run).
    OldOrValidInitramfs,
    /// Under the stack's data folder's `backup/`: absent or the pristine
    /// file's bytes.
    Backup,
    /// A JSON file of the stack's data folder: absent or complete JSON.
    Json,
    /// Not compared (files that no reader needs whole and that change
    /// from run to run, e.g. a checksum of the initramfs).
    Ignore,
    /// GRUB's installed tree (`/boot/grub/i386-pc/`, its locales and
    /// fonts): `grub-install`, the guest's own tool, rewrites it in place
    /// (a cut during it was seen to leave `core.img` absent), so any state
    /// is accepted here; the rerun installs it again, and the boot after
    /// the rerun, which every trial makes or follows, is the check.
    InstalledByGrub,
}

/// GRUB's platform, locale and font folders below `/boot/grub` or
/// `/boot/grub2`.
fn installed_by_grub(rel: &str) -> bool {
    let Some(rest) = rel
        .strip_prefix("boot/grub/")
        .or_else(|| rel.strip_prefix("boot/grub2/"))
    else {
        return false;
    };
    let top = rest.split('/').next().unwrap_or("");
    rest.contains('/')
        && (top.ends_with("-pc")
            || top.ends_with("-efi")
            || top.ends_with("-ieee1275")
            || top == "locale"
            || top == "fonts")
}

/// The rule for a path (relative to the guest root).
pub fn rule_for(rel: &str) -> Rule {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if let Some(in_data) = rel.strip_prefix(DATA_DIR).and_then(|r| r.strip_prefix('/')) {
        if in_data.starts_with("backup/") {
            return Rule::Backup;
        }
        if name.ends_with(".json") {
            return Rule::Json;
        }
        return Rule::OldOrNew;
    }
    if rel.starts_with("boot/initrd.img-") {
        return Rule::OldOrValidInitramfs;
    }
    if installed_by_grub(rel) {
        return Rule::InstalledByGrub;
    }
    // initramfs-tools' record of each image's SHA-1 (update-initramfs).
    if rel.starts_with("var/lib/initramfs-tools/") {
        return Rule::Ignore;
    }
    Rule::OldOrNew
}

/// What [`check_killed`] found.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    /// Paths changed by a complete stage 1 (pristine vs reference), with
    /// the version the killed tree holds (`old`, `new`, `valid`…).
    pub checked: Vec<(String, String)>,
    /// Paths whose killed version is neither old nor new (or not whole).
    pub bad: Vec<String>,
    /// Paths the killed tree changed that a complete run does not (e.g.
    /// leftover temporary files), for the log.
    pub extra: Vec<String>,
}

impl Verdict {
    /// A multi-line summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, v) in &self.checked {
            *counts.entry(v.as_str()).or_default() += 1;
        }
        out.push_str(&format!(
            "{} changed path(s) checked ({}), {} bad, {} extra\n",
            self.checked.len(),
            counts
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.bad.len(),
            self.extra.len()
        ));
        for b in &self.bad {
            out.push_str(&format!("  BAD   {b}\n"));
        }
        for e in self.extra.iter().take(20) {
            out.push_str(&format!("  extra {e}\n"));
        }
        out
    }
}

/// Checks the killed tree against the pristine and reference trees (see
/// the module's documentation). Errors only when a tree cannot be read.
pub fn check_killed(pristine: &Tree, reference: &Tree, killed: &Tree) -> Result<Verdict, String> {
    let mut verdict = Verdict::default();
    let mut paths: Vec<&String> = pristine.entries.keys().collect();
    paths.extend(reference.entries.keys());
    paths.extend(killed.entries.keys());
    paths.sort();
    paths.dedup();
    for rel in paths {
        let rule = rule_for(rel);
        if rule == Rule::Ignore {
            continue;
        }
        let changed_by_fixup = !untouched(pristine, reference, rel)
            && version(pristine, rel)? != version(reference, rel)?;
        let killed_same_as_old = untouched(pristine, killed, rel);
        if !changed_by_fixup {
            if !killed_same_as_old && version(pristine, rel)? != version(killed, rel)? {
                // Judged by its rule when it has one beyond old/new.
                match rule {
                    Rule::Backup | Rule::Json => {}
                    _ => {
                        verdict.extra.push(format!(
                            "{rel}: {} (pristine and reference: {})",
                            version(killed, rel)?,
                            version(pristine, rel)?
                        ));
                        continue;
                    }
                }
            } else {
                continue;
            }
        }
        let old = version(pristine, rel)?;
        let got = if killed_same_as_old {
            old.clone()
        } else {
            version(killed, rel)?
        };
        let outcome: Result<&str, String> = match rule {
            Rule::Ignore => continue,
            Rule::InstalledByGrub => Ok("grub-install's, any state (the rerun reinstalls it)"),
            Rule::OldOrNew => {
                let new = version(reference, rel)?;
                if got == old {
                    Ok("old")
                } else if got == new {
                    Ok("new")
                } else {
                    Err(format!("{got}; old: {old}; new: {new}"))
                }
            }
            Rule::OldOrValidInitramfs => {
                if got == old {
                    Ok("old")
                } else if got == Version::Absent {
                    Err(format!("absent; old: {old}"))
                } else {
                    match check_initramfs(&killed.path(rel), "vmw_pvscsi.ko") {
                        Ok(()) => Ok("valid initramfs"),
                        Err(e) => Err(format!("not a complete initramfs: {e}")),
                    }
                }
            }
            Rule::Backup => {
                let original = rel
                    .strip_prefix(DATA_DIR)
                    .and_then(|r| r.strip_prefix("/backup/"))
                    .unwrap_or(rel);
                let was = version(pristine, original)?;
                match &got {
                    Version::Absent => Ok("absent"),
                    Version::Dir => Ok("directory"),
                    v if *v == was => Ok("backup of the original"),
                    v => Err(format!("{v}; the original /{original}: {was}")),
                }
            }
            Rule::Json => match &got {
                Version::Absent => Ok("absent"),
                Version::File(_) => {
                    let text = fs::read(killed.path(rel))
                        .map_err(|e| format!("reading {}: {e}", killed.path(rel).display()))?;
                    match serde_json::from_slice::<serde_json::Value>(&text) {
                        Ok(_) => Ok("complete JSON"),
                        Err(e) => Err(format!("not complete JSON ({} bytes): {e}", text.len())),
                    }
                }
                v => Err(format!("{v}, not a JSON file")),
            },
        };
        match outcome {
            Ok(what) => verdict.checked.push((rel.clone(), what.to_owned())),
            Err(why) => verdict.bad.push(format!("/{rel}: {why}")),
        }
    }
    Ok(verdict)
}

/// Checks that `path` is a complete initramfs: optional uncompressed cpio
/// archives (early microcode), then one compressed cpio archive (gzip,
/// zstd, xz, lzma, lz4 or none) that decompresses to its end and ends with
/// `TRAILER!!!`; some member's name ends with `/<module>` (or is it).
/// The archives are read and decompressed by the stack's own reader
/// (`osam_init`), without its output cap.
pub fn check_initramfs(path: &Path, module: &str) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut members = Vec::new();
    let mut at = 0usize;
    // Uncompressed archives first.
    while bytes.get(at..at + 6) == Some(b"070701") {
        at = cpio::read_archive(&bytes, at, &mut members).map_err(|e| e.to_string())?;
        // Padding between concatenated archives.
        while bytes.get(at) == Some(&0) {
            at += 1;
        }
    }
    let rest = &bytes[at..];
    if rest.is_empty() {
        return Err("no main archive after the early cpio".into());
    }
    let format = decompress::detect(rest);
    if format == Compression::None {
        return Err(format!(
            "unknown compression (first bytes {:02x?})",
            &rest[..rest.len().min(6)]
        ));
    }
    let data = decompress::decompress(rest, usize::MAX).map_err(|e| format!("{format}: {e}"))?;
    let end = cpio::read_archive(&data, 0, &mut members).map_err(|e| e.to_string())?;
    if end == 0 {
        return Err("the main archive is empty".into());
    }
    let suffix = format!("/{module}");
    if !members
        .iter()
        .any(|m| m.name == module || m.name.ends_with(&suffix))
    {
        return Err(format!(
            "complete ({} members) but without {module}",
            members.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, content) in files {
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        dir
    }

    fn cpio(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut entry = |name: &str, data: &[u8]| {
            let header = format!(
                "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                1,
                0o100644,
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                0,
                0,
                name.len() + 1,
                0
            );
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        for (n, d) in members {
            entry(n, d);
        }
        entry("TRAILER!!!", b"");
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn old_or_new_versions_pass_and_a_third_fails() {
        let pristine = tree(&[("etc/fstab", "old"), ("etc/keep", "same")]);
        let reference = tree(&[
            ("etc/fstab", "new"),
            ("etc/keep", "same"),
            ("etc/added", "x"),
        ]);
        let p = Tree::scan(pristine.path()).unwrap();
        let r = Tree::scan(reference.path()).unwrap();
        // Old everywhere: fine; new everywhere: fine.
        for files in [
            &[("etc/fstab", "old"), ("etc/keep", "same")][..],
            &[
                ("etc/fstab", "new"),
                ("etc/keep", "same"),
                ("etc/added", "x"),
            ][..],
        ] {
            let k = tree(files);
            let v = check_killed(&p, &r, &Tree::scan(k.path()).unwrap()).unwrap();
            assert!(v.bad.is_empty(), "{}", v.summary());
            assert!(v.checked.iter().any(|(p, _)| p == "etc/fstab"));
            assert!(v.checked.iter().any(|(p, _)| p == "etc/added"));
        }
        // Half-written, or empty where a file was added: bad.
        let k = tree(&[("etc/fstab", "ne"), ("etc/keep", "same"), ("etc/added", "")]);
        let v = check_killed(&p, &r, &Tree::scan(k.path()).unwrap()).unwrap();
        assert_eq!(v.bad.len(), 2, "{}", v.summary());
        assert!(v.bad[0].starts_with("/etc/added"), "{}", v.summary());
        // Missing where both sides have it: bad.
        let k = tree(&[("etc/keep", "same")]);
        let v = check_killed(&p, &r, &Tree::scan(k.path()).unwrap()).unwrap();
        assert!(
            v.bad.iter().any(|b| b.starts_with("/etc/fstab")),
            "{}",
            v.summary()
        );
    }

    #[test]
    fn leftovers_are_extra_not_bad() {
        let pristine = tree(&[("etc/a", "1")]);
        let reference = tree(&[("etc/a", "1")]);
        let killed = tree(&[("etc/a", "1"), ("etc/.a.osam-tmp", "1")]);
        let v = check_killed(
            &Tree::scan(pristine.path()).unwrap(),
            &Tree::scan(reference.path()).unwrap(),
            &Tree::scan(killed.path()).unwrap(),
        )
        .unwrap();
        assert!(v.bad.is_empty());
        assert_eq!(v.extra.len(), 1, "{}", v.summary());
    }

    #[test]
    fn data_folder_backups_and_json() {
        let data = DATA_DIR;
        let pristine = tree(&[("etc/fstab", "old")]);
        let reference = tree(&[
            ("etc/fstab", "new"),
            (&format!("{data}/backup/etc/fstab"), "old"),
            (&format!("{data}/manifest.json"), "{\"runs\":[1]}"),
        ]);
        let p = Tree::scan(pristine.path()).unwrap();
        let r = Tree::scan(reference.path()).unwrap();
        let good = tree(&[
            ("etc/fstab", "new"),
            (&format!("{data}/backup/etc/fstab"), "old"),
            (&format!("{data}/manifest.json"), "{\"runs\":[1, 2]}"),
        ]);
        let v = check_killed(&p, &r, &Tree::scan(good.path()).unwrap()).unwrap();
        assert!(v.bad.is_empty(), "{}", v.summary());
        let bad = tree(&[
            ("etc/fstab", "new"),
            (&format!("{data}/backup/etc/fstab"), "ol"),
            (&format!("{data}/manifest.json"), "{\"runs\":["),
        ]);
        let v = check_killed(&p, &r, &Tree::scan(bad.path()).unwrap()).unwrap();
        assert_eq!(v.bad.len(), 2, "{}", v.summary());
    }

    #[test]
    fn initramfs_images_are_old_or_complete() {
        let early = cpio(&[("kernel/x86/microcode/GenuineIntel.bin", b"ucode")]);
        let main = cpio(&[
            (
                "usr/lib/modules/6.1.0-1-amd64/kernel/drivers/scsi/vmw_pvscsi.ko",
                b"elf",
            ),
            ("init", b"#!/bin/sh"),
        ]);
        let mut good = early.clone();
        good.extend(gzip(&main));
        let pristine = tree(&[("boot/initrd.img-6.1.0-1-amd64", "old image")]);
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("boot/initrd.img-6.1.0-1-amd64");
        fs::create_dir_all(img.parent().unwrap()).unwrap();
        fs::write(&img, &good).unwrap();
        assert_eq!(check_initramfs(&img, "vmw_pvscsi.ko"), Ok(()));
        let p = Tree::scan(pristine.path()).unwrap();
        let r = Tree::scan(dir.path()).unwrap();
        let v = check_killed(&p, &r, &r).unwrap();
        assert_eq!(v.checked[0].1, "valid initramfs", "{}", v.summary());
        let v = check_killed(&p, &r, &p).unwrap();
        assert_eq!(v.checked[0].1, "old", "{}", v.summary());
        // Truncated: the gzip stream or the cpio ends early.
        fs::write(&img, &good[..good.len() - 10]).unwrap();
        let k = Tree::scan(dir.path()).unwrap();
        let v = check_killed(&p, &r, &k).unwrap();
        assert_eq!(v.bad.len(), 1, "{}", v.summary());
        // Complete, without the driver.
        let mut without = early;
        without.extend(gzip(&cpio(&[("init", b"x")])));
        fs::write(&img, &without).unwrap();
        assert!(
            check_initramfs(&img, "vmw_pvscsi.ko")
                .unwrap_err()
                .contains("without")
        );
        fs::write(&img, b"").unwrap();
        assert!(check_initramfs(&img, "vmw_pvscsi.ko").is_err());
    }

    #[test]
    fn rules() {
        assert_eq!(
            rule_for("boot/initrd.img-6.1.0-1-amd64"),
            Rule::OldOrValidInitramfs
        );
        assert_eq!(rule_for("boot/grub/grub.cfg"), Rule::OldOrNew);
        for installed in [
            "boot/grub/i386-pc/core.img",
            "boot/grub/i386-pc/ext2.mod",
            "boot/grub2/x86_64-efi/normal.mod",
            "boot/grub/locale/de.mo",
            "boot/grub/fonts/unicode.pf2",
        ] {
            assert_eq!(rule_for(installed), Rule::InstalledByGrub, "{installed}");
        }
        for not in [
            "boot/grub/grubenv",
            "boot/grub/i386-pc",
            "boot/grub/custom.cfg",
        ] {
            assert_ne!(rule_for(not), Rule::InstalledByGrub, "{not}");
        }
        assert_eq!(
            rule_for("opt/vmware/hcx/osam/data/backup/boot/initrd.img-6.1.0-1-amd64"),
            Rule::Backup
        );
        assert_eq!(
            rule_for("opt/vmware/hcx/osam/data/manifest.json"),
            Rule::Json
        );
        assert_eq!(
            rule_for("opt/vmware/hcx/osam/data/systemd-default-target"),
            Rule::OldOrNew
        );
        assert_eq!(
            rule_for("var/lib/initramfs-tools/6.1.0-1-amd64"),
            Rule::Ignore
        );
    }
}
