//! Guest disks with real storage stacks, for the QEMU tests of assembly:
//! LVM (a separate `/boot`, root and swap LVs, a second PV on a second
//! disk holding an xfs `/data`), md RAID1, btrfs with subvolumes, and two
//! plain disks.
//!
//! The host's kernel has no device-mapper, so the disks are made inside a
//! VM that runs the fixup stack itself: its kernel has dm and md, its
//! initramfs the LVM, mdadm, mkfs and busybox tools. The guest's file tree
//! is made on the host and packed, with the build script, as a tar archive
//! written to a raw "payload" disk; the blank guest disks are partitioned
//! on the host with `sfdisk`. The stack boots straight into its rescue
//! shell (`-kernel`/`-initrd` taken from the image's ESP,
//! `osam.mode=rescue osam.after=shell`), one short line typed on the
//! serial console unpacks the payload and runs the script, which prints
//! every command and its exit status (`@@osam step:` / `@@osam FAILED`),
//! ends with `OSAM-RESULT: ok` or `OSAM-RESULT: failed`, and powers off.
//!
//! The results are converted to qcow2 and cached in
//! `${XDG_CACHE_HOME:-$HOME/.cache}/osam/storage-guests/<name>-<hash>/`,
//! the hash taken over the payload (guest tree and build script), the disk
//! layouts and the pins file (the stack kernel and tools that ran the
//! build). A build goes to a temporary folder renamed into place when
//! complete; a lock file keeps two processes from building one guest.
//!
//! The guests are Debian 11 trees that stage 1 can fix for real: a static
//! busybox as `/bin/sh` with applet links, kernel `5.10.0-28-amd64` whose
//! `/lib/modules` holds real modules (taken from the stack's kernel) with
//! their `modules.dep`, an initramfs without `vmw_pvscsi`, GRUB's
//! configuration, `/etc/network/interfaces` naming the source NIC. The
//! guest's `update-initramfs`, `grub-install`, `grub-mkconfig`,
//! `update-grub`, `mkinitramfs` and `depmod` are small shell stand-ins that
//! append their command line to [`TOOL_LOG`] in the guest and write
//! plausible output (a gzip'ed newc image of the modules listed in
//! `/etc/initramfs-tools/modules`; a `grub.cfg` naming the root the way
//! GRUB's `10_linux` does), so that a test can show that they ran inside
//! the guest, with the guest kernel's version.
//!
//! [`check_disks`] boots the stack's rescue shell again over a guest's
//! disks (copy-on-write) and reports what a test asserts: `e2fsck -fn`,
//! `xfs_repair -n` and `btrfs check --readonly` of every file system,
//! the ext4 and md superblock states, the swap signatures, and the guest's
//! fstab, tool log, `grub.cfg` and initramfs contents.
//!
//! The modules: [`spec`] (the four guests: disks, storage stacks, file
//! systems, fstab; the manager's inputs and what stage 1 must leave),
//! [`tree`] (the guest's files), [`scripts`] (what runs in the rescue
//! shell), [`rescue`] (the stack booted to its rescue shell, the payload
//! disk, the serial console).

pub mod rescue;
pub mod scripts;
pub mod spec;
pub mod tree;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};

use crate::image::FileLock;
use crate::paths;

use rescue::payload;
pub use rescue::{
    PAYLOAD_SCSI_ID, RescueOutput, ScsiDisk, StackBoot, run_rescue_script, scsi_disk_args,
    stack_boot,
};
pub use scripts::{build_script, check_script, mount_check_id};
pub use spec::{
    Dev, DiskSpec, FsKind, FsSpec, GuestKind, GuestSpec, LvSpec, MdSpec, PartRole, PartSpec, VgSpec,
};
pub use tree::{TreeInputs, write_tree};

/// The guests' kernel version (Debian 11's), deliberately not the stack's:
/// a tool that fell back to `uname -r` would name the stack's.
pub const GUEST_KERNEL: &str = "5.10.0-28-amd64";
/// Where the guest's tool stand-ins record their command lines.
pub const TOOL_LOG: &str = "/var/log/osam-test-tools.log";
/// The source NIC of every guest (QEMU/KVM naming and MAC).
pub const SOURCE_NIC: (&str, &str) = ("ens3", "52:54:00:12:34:56");
/// Bump to rebuild every cached guest (a change of how disks are made
/// that the payload does not show).
const BUILDER_VERSION: &str = "storage-guests 1";
/// From the typed line to `OSAM-RESULT:` (a build; checks are faster).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(420);
/// For the checks.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// A guest's disks, built (or found in the cache).
#[derive(Debug, Clone)]
pub struct BuiltGuest {
    /// What it is.
    pub spec: GuestSpec,
    /// The cache folder.
    pub dir: PathBuf,
    /// Its qcow2 disks, in scsi0:0, scsi0:1, … order.
    pub disks: Vec<PathBuf>,
    /// How long the build took (`None`: from the cache).
    pub built_in: Option<Duration>,
}

impl BuiltGuest {
    /// Copy-on-write overlays of the disks in `dir` (the tests write those,
    /// never the cached disks).
    pub fn overlays(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.disks
            .iter()
            .enumerate()
            .map(|(i, base)| {
                let overlay = dir.join(format!("{}-disk{i}.qcow2", self.spec.kind));
                paths::run(
                    Command::new("qemu-img")
                        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                        .arg(base)
                        .arg(&overlay),
                )
                .with_context(|| format!("creating an overlay of {}", base.display()))?;
                Ok(overlay)
            })
            .collect()
    }
}

/// The storage guests' cache folder.
pub fn cache_root() -> PathBuf {
    paths::cache_dir().join("storage-guests")
}

/// The cache key: sha256 over the builder version, the payload (the tree
/// and the script), the disk layouts and the pins file (the stack's kernel
/// and tools).
fn recipe_hash(spec: &GuestSpec, payload: &Path) -> Result<String> {
    let mut hash = Sha256::new();
    let mut add = |label: &str, bytes: &[u8]| {
        hash.update((label.len() as u64).to_le_bytes());
        hash.update(label.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    add("builder", BUILDER_VERSION.as_bytes());
    add("guest", spec.kind.name().as_bytes());
    let payload_bytes =
        fs::read(payload).with_context(|| format!("reading {}", payload.display()))?;
    add("payload", &payload_bytes);
    for (i, d) in spec.disks.iter().enumerate() {
        add(
            &format!("disk{i}"),
            format!("{} MiB\n{}", d.size_mib, d.sfdisk_script()).as_bytes(),
        );
    }
    let pins = paths::pins_file();
    add(
        "pins",
        &fs::read(&pins).with_context(|| format!("reading {}", pins.display()))?,
    );
    let digest = hash.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// A blank raw disk of `spec` at `path`, partitioned by `sfdisk`.
fn blank_disk(spec: &DiskSpec, path: &Path) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(spec.size_bytes())?;
    drop(file);
    let mut child = Command::new("sfdisk")
        .args([
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            "--wipe",
            "always",
        ])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting sfdisk (util-linux)")?;
    child
        .stdin
        .take()
        .context("sfdisk's stdin")?
        .write_all(spec.sfdisk_script().as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "sfdisk {} failed ({}): {}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The guest of `kind`, from the cache or built with the stack `boot`.
pub fn build_guest(kind: GuestKind, boot: &StackBoot) -> Result<BuiltGuest> {
    let spec = kind.spec();
    let root = cache_root();
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("osam-storage-guest-{kind}-"))
        .tempdir()
        .context("creating a work folder")?;
    let tree = work.path().join("tree");
    let inputs = TreeInputs::load()?;
    write_tree(&spec, &inputs, &tree).with_context(|| format!("{kind}: writing the guest tree"))?;
    let payload = payload(work.path(), "build", &build_script(&spec), Some(&tree))?;
    let key = recipe_hash(&spec, &payload)?;
    let dir = root.join(format!("{kind}-{key}"));
    let disk_names: Vec<String> = (0..spec.disks.len())
        .map(|i| format!("disk{i}.qcow2"))
        .collect();
    let found = |dir: &Path| disk_names.iter().map(|n| dir.join(n)).collect::<Vec<_>>();
    let _lock = FileLock::acquire(&root.join(format!("{kind}.lock")))?;
    if found(&dir).iter().all(|p| p.is_file()) {
        return Ok(BuiltGuest {
            spec,
            disks: found(&dir),
            dir,
            built_in: None,
        });
    }
    let t0 = Instant::now();
    let tmp = root.join(format!(".tmp-{kind}-{key}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let built = build_into(&spec, boot, work.path(), &payload, &tmp);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("building the {kind} guest")));
    }
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the stale {}", dir.display()))?;
    }
    fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    Ok(BuiltGuest {
        spec,
        disks: found(&dir),
        dir,
        built_in: Some(t0.elapsed()),
    })
}

fn build_into(
    spec: &GuestSpec,
    boot: &StackBoot,
    work: &Path,
    payload: &Path,
    out: &Path,
) -> Result<()> {
    let mut raws = Vec::new();
    for (i, d) in spec.disks.iter().enumerate() {
        let raw = work.join(format!("disk{i}.raw"));
        blank_disk(d, &raw)?;
        raws.push(ScsiDisk::writable(&raw, "raw", i as u8));
    }
    let run = run_rescue_script(
        boot,
        &raws,
        payload,
        work,
        &format!("build-{}", spec.kind),
        BUILD_TIMEOUT,
    );
    let log = work.join(format!("build-{}-serial.log", spec.kind));
    if log.is_file() {
        let _ = fs::copy(&log, out.join("build-serial.log"));
    }
    run?;
    for (i, raw) in raws.iter().enumerate() {
        let qcow2 = out.join(format!("disk{i}.qcow2"));
        paths::run(
            Command::new("qemu-img")
                .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
                .arg(&raw.path)
                .arg(&qcow2),
        )
        .with_context(|| format!("converting {} to qcow2", raw.path.display()))?;
    }
    fs::write(
        out.join("replica-disk-map.json"),
        serde_json::to_string_pretty(&spec.replica_disk_map())? + "\n",
    )?;
    fs::write(out.join("build.sh"), build_script(spec))?;
    Ok(())
}

/// What [`check_script`] reported.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Exit status of each check (`fsck-root`, `mount-boot`, …).
    pub checks: BTreeMap<String, i32>,
    /// The last lines each check printed.
    pub outputs: BTreeMap<String, Vec<String>>,
    /// Values (`fs-state-root`, `md-state-0`, `initrd-pvscsi`, …).
    pub values: BTreeMap<String, String>,
    /// Guest files printed (`fstab`, `tools`, `grub.cfg`, …), by line.
    pub files: BTreeMap<String, Vec<String>>,
    /// The serial log file of the check.
    pub log_path: PathBuf,
}

impl CheckReport {
    /// Parses the `@@osam` lines of `text`.
    pub fn parse(text: &str) -> CheckReport {
        let mut r = CheckReport::default();
        for line in text.lines() {
            let Some(at) = line.find("@@osam ") else {
                continue;
            };
            // A byte doubled by the serial chardev now and then: keys are
            // trimmed.
            let rest = line[at + "@@osam ".len()..].trim_start();
            if let Some(c) = rest.strip_prefix("check ") {
                if let Some((id, rc)) = c.rsplit_once(" rc=") {
                    if let Ok(rc) = rc.trim().parse() {
                        r.checks.insert(id.trim().to_owned(), rc);
                    }
                }
            } else if let Some(v) = rest.strip_prefix("value ") {
                if let Some((k, v)) = v.split_once('=') {
                    r.values.insert(k.trim().to_owned(), v.to_owned());
                }
            } else if let Some(f) = rest.strip_prefix("file ") {
                if let Some((k, l)) = f.split_once(": ") {
                    r.files
                        .entry(k.trim().to_owned())
                        .or_default()
                        .push(l.to_owned());
                } else if let Some(k) = f.strip_suffix(':') {
                    r.files.entry(k.to_owned()).or_default().push(String::new());
                }
            } else if let Some(o) = rest.strip_prefix("out ") {
                if let Some((k, l)) = o.split_once(": ") {
                    r.outputs
                        .entry(k.to_owned())
                        .or_default()
                        .push(l.to_owned());
                }
            }
        }
        r
    }

    /// The failed checks, with what they printed.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|(_, rc)| **rc != 0)
            .map(|(id, rc)| {
                format!(
                    "{id} exited {rc}: {}",
                    self.outputs
                        .get(id)
                        .map(|o| o.join(" | "))
                        .unwrap_or_default()
                )
            })
            .collect()
    }

    /// A printed file as text.
    pub fn file(&self, key: &str) -> Option<String> {
        self.files.get(key).map(|lines| {
            let mut s = lines.join("\n");
            s.push('\n');
            s
        })
    }
}

/// Boots the stack's rescue shell over `disks` (the guest's, in scsi0:0,
/// … order; written copy-on-write, so never changed) and runs
/// [`check_script`]. The report takes the socket's transcript first and
/// the serial log file where the transcript lacks a line.
pub fn check_disks(
    spec: &GuestSpec,
    boot: &StackBoot,
    disks: &[PathBuf],
    work: &Path,
) -> Result<CheckReport> {
    let payload = payload(work, "check", &check_script(spec), None)?;
    let attached: Vec<ScsiDisk> = disks
        .iter()
        .enumerate()
        .map(|(i, p)| ScsiDisk {
            path: p.clone(),
            format: "qcow2",
            scsi_id: i as u8,
            snapshot: true,
        })
        .collect();
    let out = run_rescue_script(
        boot,
        &attached,
        &payload,
        work,
        &format!("check-{}", spec.kind),
        CHECK_TIMEOUT,
    )?;
    let mut report = CheckReport::parse(&out.transcript);
    let from_log = CheckReport::parse(&out.log);
    for (k, v) in from_log.checks {
        report.checks.entry(k).or_insert(v);
    }
    for (k, v) in from_log.values {
        report.values.entry(k).or_insert(v);
    }
    for (k, v) in from_log.files {
        report.files.entry(k).or_insert(v);
    }
    for (k, v) in from_log.outputs {
        report.outputs.entry(k).or_insert(v);
    }
    report.log_path = out.log_path;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_parsing() {
        let r = CheckReport::parse(
            "noise\n@@osam check fsck-root rc=0\n[  1.0] kmsg\n@@osam check mount-boot rc=32\n\
             @@osam out mount-boot: mount: wrong fs type\n\
             @@osam value fs-state-root=clean\n@@osam file fstab: UUID=x / ext4 defaults 0 1\n\
             @@osam file fstab: \n",
        );
        assert_eq!(r.checks["fsck-root"], 0);
        assert_eq!(r.failures(), ["mount-boot exited 32: mount: wrong fs type"]);
        assert_eq!(r.values["fs-state-root"], "clean");
        assert_eq!(r.file("fstab").unwrap(), "UUID=x / ext4 defaults 0 1\n\n");
    }
}
