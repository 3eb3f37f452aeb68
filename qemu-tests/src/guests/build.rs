//! The guest builder (root only): raw disks partitioned with `sfdisk`,
//! attached with `losetup -P`, file systems made and mounted, Debian
//! installed into them with `mmdebstrap`, configured, GRUB installed from
//! a chroot, every disk converted to a compressed qcow2.
//!
//! Everything happens in a work folder; [`Cleanup`] unmounts whatever is
//! mounted below it and detaches its loop devices, also when a step fails
//! or panics, so a failed build leaves neither mounts nor loop devices
//! behind.
//!
//! The initramfs is made once, by the kernel package's own postinst
//! during `mmdebstrap`: the recipe's `MODULES=`/`COMPRESS=`
//! (`/etc/initramfs-tools/conf.d/osam-guest.conf`) and
//! `/etc/initramfs-tools/modules` are put in place before any package is
//! installed (`sync-in` setup hook; dpkg keeps the existing `modules`
//! conffile with `--force-confold`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::cmd::{BuildLog, have_program, quiet};
use super::manifest::{BuildTimings, BuiltPartition, GuestManifest, InstalledPackage};
use super::recipe::{
    BUILDER_VERSION, DeviceRef, DiskSpec, DracutSpec, FileContent, FsKind, FsSpec, MountSpec,
    NetworkConfig, NicAddress, PartitionKind, PartitionTable, Recipe, SelinuxSpec, hex,
    kernel_partition_name,
};

/// Timeouts of the steps.
const MMDEBSTRAP_TIMEOUT: Duration = Duration::from_secs(1800);
const QUICK_TIMEOUT: Duration = Duration::from_secs(120);
const CHROOT_TIMEOUT: Duration = Duration::from_secs(600);
const CONVERT_TIMEOUT: Duration = Duration::from_secs(1200);
/// How long an umount or a loop detach may take.
const UMOUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for another build of the same recipe.
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(3 * 3600);
/// How long a partition's device node may take to appear.
const NODE_TIMEOUT: Duration = Duration::from_secs(15);

/// The programs the builder runs on the host (Debian package in brackets
/// in the error).
const HOST_TOOLS: [(&str, &str); 12] = [
    ("mmdebstrap", "mmdebstrap"),
    ("mcopy", "mtools"),
    ("arch-test", "arch-test"),
    ("sfdisk", "fdisk"),
    ("losetup", "mount"),
    ("partx", "util-linux"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.vfat", "dosfstools"),
    ("mkfs.btrfs", "btrfs-progs"),
    ("qemu-img", "qemu-utils"),
    ("chroot", "coreutils"),
    ("fstrim", "util-linux"),
];

/// What a build produced in the work folder.
#[derive(Debug)]
pub(crate) struct Built {
    /// The qcow2 disks, in recipe order.
    pub disks: Vec<PathBuf>,
    /// A copy of the guest's `/var/lib/dpkg/status`.
    pub dpkg_status: PathBuf,
    /// What the guest is.
    pub manifest: GuestManifest,
}

/// Unmounts everything below a folder and detaches the loop devices of
/// its image files when dropped.
pub(crate) struct Cleanup {
    dir: PathBuf,
    images: Vec<PathBuf>,
    nodes: Vec<PathBuf>,
    log: Option<BuildLog>,
}

impl Cleanup {
    pub(crate) fn new(dir: &Path, log: Option<BuildLog>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            images: Vec::new(),
            nodes: Vec::new(),
            log,
        }
    }

    /// Unmounts and detaches now; fails when something stays mounted (a
    /// lazily unmounted file system could still write to its image).
    pub(crate) fn run(&mut self) -> Result<()> {
        let mut left = Vec::new();
        for mountpoint in mounts_under(&self.dir) {
            let mut done = false;
            for attempt in 0..5 {
                if quiet(Command::new("umount").arg(&mountpoint), UMOUNT_TIMEOUT) {
                    done = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(200 * (attempt + 1)));
            }
            if !done {
                quiet(
                    Command::new("umount").arg("-l").arg(&mountpoint),
                    UMOUNT_TIMEOUT,
                );
                left.push(mountpoint);
            }
        }
        let mut images = self.images.clone();
        if let Ok(entries) = fs::read_dir(&self.dir) {
            images.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "raw")),
            );
        }
        images.sort();
        images.dedup();
        for image in &images {
            for dev in loops_of(image) {
                quiet(Command::new("losetup").arg("-d").arg(&dev), UMOUNT_TIMEOUT);
            }
        }
        for node in self.nodes.drain(..) {
            let _ = fs::remove_file(node);
        }
        if left.is_empty() {
            Ok(())
        } else {
            let msg = format!("could not unmount {left:?} (lazily unmounted)");
            if let Some(log) = &self.log {
                log.note(&msg);
            }
            bail!("cleaning up {}: {msg}", self.dir.display())
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.run();
    }
}

/// The mount points at or below `dir`, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    found
}

/// /proc/mounts' octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The loop devices backed by `image` (from sysfs).
fn loops_of(image: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let image = fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        let backing = backing.trim_end_matches('\n');
        let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
        if Path::new(backing) == image {
            found.push(format!("/dev/{name}"));
        }
    }
    found
}

/// Identities the builder gives a partition and its file system, derived
/// from the recipe hash (so a rebuild of the same recipe gets the same).
#[derive(Debug, Clone)]
pub(super) struct Ids {
    /// The file system UUID as blkid shows it.
    pub(super) fs_uuid: String,
    /// The GPT partition GUID (GPT disks).
    part_guid: String,
}

pub(super) fn derived(hash: &str, what: &str) -> [u8; 16] {
    let digest = Sha256::digest(format!("{hash}/{what}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

pub(super) fn guid(b: [u8; 16]) -> String {
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub(super) fn ids(hash: &str, disk: usize, part: usize, kind: Option<FsKind>) -> Ids {
    let fs = derived(hash, &format!("fs/{disk}/{part}"));
    let fs_uuid = match kind {
        Some(FsKind::Vfat) => {
            let h = hex(&fs[..4]).to_ascii_uppercase();
            format!("{}-{}", &h[..4], &h[4..])
        }
        _ => guid(fs),
    };
    Ids {
        fs_uuid,
        part_guid: guid(derived(hash, &format!("part/{disk}/{part}"))),
    }
}

/// The sfdisk script of a disk.
pub(super) fn sfdisk_script(disk: &DiskSpec, hash: &str, index: usize) -> Result<String> {
    let label_id = derived(hash, &format!("disk/{index}"));
    let mut s = String::new();
    match disk.table {
        PartitionTable::Msdos => {
            s.push_str("label: dos\n");
            s.push_str(&format!("label-id: 0x{}\n", hex(&label_id[..4])));
        }
        PartitionTable::Gpt => {
            s.push_str("label: gpt\n");
            s.push_str(&format!("label-id: {}\n", guid(label_id)));
        }
    }
    s.push_str("unit: sectors\n\n");
    for (p, part) in disk.partitions.iter().enumerate() {
        let ty = match (disk.table, part.kind) {
            (PartitionTable::Msdos, PartitionKind::Linux) => "83",
            (PartitionTable::Msdos, PartitionKind::Esp) => "ef",
            (PartitionTable::Msdos, PartitionKind::BiosBoot) => {
                bail!("a BIOS boot partition needs a GPT disk")
            }
            (PartitionTable::Gpt, PartitionKind::Linux) => "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            (PartitionTable::Gpt, PartitionKind::Esp) => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            (PartitionTable::Gpt, PartitionKind::BiosBoot) => {
                "21686148-6449-6E6F-744E-656564454649"
            }
            (PartitionTable::Msdos, PartitionKind::LinuxLvm) => "8e",
            (PartitionTable::Gpt, PartitionKind::LinuxLvm) => {
                "E6D6D379-F507-44C2-A23C-238F2A3DF928"
            }
        };
        let mut line = String::new();
        if p == 0 {
            line.push_str("start=2048, ");
        }
        if let Some(mib) = part.size_mib {
            line.push_str(&format!("size={}, ", mib * 2048));
        }
        line.push_str(&format!("type={ty}"));
        if disk.table == PartitionTable::Gpt {
            let id = ids(hash, index, p, None);
            line.push_str(&format!(", uuid={}", id.part_guid));
        }
        if part.bootable {
            line.push_str(", bootable");
        }
        s.push_str(&line);
        s.push('\n');
    }
    Ok(s)
}

/// How fstab names a mount's device.
fn source_text(source: &DeviceRef, fs: &FsSpec, ids: &Ids) -> String {
    match source {
        DeviceRef::Path(p) => p.clone(),
        DeviceRef::Uuid => format!("UUID={}", ids.fs_uuid),
        DeviceRef::Label => format!("LABEL={}", fs.label.as_deref().unwrap_or("")),
    }
}

/// fstab's options of a mount (with `subvol=`).
fn mount_options(m: &MountSpec) -> String {
    match &m.subvolume {
        Some(sv) => format!("{},subvol={sv}", m.options),
        None => m.options.clone(),
    }
}

/// `/etc/fstab`.
pub(crate) fn fstab_text(recipe: &Recipe, hash: &str) -> String {
    let mut s = String::from(
        "# /etc/fstab: static file system information.\n\
         #\n\
         # <file system> <mount point>   <type>  <options>       <dump>  <pass>\n",
    );
    let mut mounts: Vec<_> = recipe.mounts().collect();
    mounts.sort_by_key(|(_, _, _, m)| {
        m.mountpoint.matches('/').count() - usize::from(m.mountpoint == "/")
    });
    for (d, p, fs, m) in mounts {
        let id = ids(hash, d, p, Some(fs.kind));
        s.push_str(&format!(
            "{} {} {} {} 0 {}\n",
            source_text(&m.source, fs, &id),
            m.mountpoint,
            fs.kind.name(),
            mount_options(m),
            m.pass
        ));
    }
    s
}

/// `/etc/network/interfaces` (ifupdown).
pub(crate) fn interfaces_text(recipe: &Recipe) -> String {
    let mut s = String::from(
        "# This file describes the network interfaces available on your system\n\
         # and how to activate them. For more information, see interfaces(5).\n\n\
         source /etc/network/interfaces.d/*\n\n\
         # The loopback network interface\n\
         auto lo\n\
         iface lo inet loopback\n",
    );
    for nic in &recipe.nics {
        s.push_str(&format!("\nallow-hotplug {}\n", nic.name));
        match &nic.address {
            NicAddress::Dhcp => s.push_str(&format!("iface {} inet dhcp\n", nic.name)),
            NicAddress::Static { address, gateway } => {
                s.push_str(&format!("iface {} inet static\n", nic.name));
                s.push_str(&format!("    address {address}\n"));
                if let Some(gw) = gateway {
                    s.push_str(&format!("    gateway {gw}\n"));
                }
            }
        }
    }
    s
}

/// Sets `KEY=value` in a shell-style defaults file: replaces the first
/// line that sets (or comments out) `KEY`, else appends.
pub(crate) fn set_shell_var(text: &str, key: &str, value: &str) -> String {
    let assignment = format!("{key}={value}");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let sets = |l: &str| {
        let l = l.trim_start().trim_start_matches('#').trim_start();
        l.strip_prefix(key).is_some_and(|r| r.starts_with('='))
    };
    match lines.iter().position(|l| sets(l)) {
        Some(i) => lines[i] = assignment,
        None => lines.push(assignment),
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The GRUB defaults of the recipe applied to `/etc/default/grub`.
pub(crate) fn grub_defaults(recipe: &Recipe, text: &str) -> String {
    let g = &recipe.grub;
    let mut t = set_shell_var(text, "GRUB_TIMEOUT", &g.timeout_secs.to_string());
    t = set_shell_var(
        &t,
        "GRUB_CMDLINE_LINUX_DEFAULT",
        &format!("\"{}\"", g.cmdline_linux_default.join(" ")),
    );
    t = set_shell_var(
        &t,
        "GRUB_CMDLINE_LINUX",
        &format!("\"{}\"", g.cmdline_linux.join(" ")),
    );
    if g.serial_terminal {
        t = set_shell_var(&t, "GRUB_TERMINAL", "\"console serial\"");
        t = set_shell_var(
            &t,
            "GRUB_SERIAL_COMMAND",
            "\"serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\"",
        );
    }
    if matches!(recipe.root(), Some((_, _, _, m)) if matches!(m.source, DeviceRef::Path(_))) {
        t = set_shell_var(&t, "GRUB_DISABLE_LINUX_UUID", "true");
    }
    t
}

/// dracut's configuration of a dracut recipe
/// (`/etc/dracut.conf.d/50-osam-guest.conf`).
pub(crate) fn dracut_conf_text(d: &DracutSpec) -> String {
    format!(
        "# OSAM test guest: a non-hostonly image with exactly these drivers\n\
         # (the source hypervisor's; the build host's hardware stays out).\n\
         hostonly=\"no\"\n\
         drivers=\" {} \"\n\
         compress=\"{}\"\n",
        d.drivers.join(" "),
        d.compress
    )
}

/// A NetworkManager keyfile of a source NIC: `interface-name=` always,
/// `mac-address=` for every NIC after the first (so both ways of naming
/// a NIC are in the guest).
pub(crate) fn nm_keyfile_text(recipe: &Recipe, hash: &str, index: usize) -> String {
    let nic = &recipe.nics[index];
    let mut s = format!(
        "[connection]\nid={name}\nuuid={uuid}\ntype=ethernet\ninterface-name={name}\n\
         autoconnect=true\n\n[ethernet]\n",
        name = nic.name,
        uuid = guid(derived(hash, &format!("nm/{}", nic.name))),
    );
    if index > 0 {
        s.push_str(&format!("mac-address={}\n", nic.mac.to_ascii_uppercase()));
    }
    s.push_str("\n[ipv4]\n");
    match &nic.address {
        NicAddress::Dhcp => s.push_str("method=auto\n"),
        NicAddress::Static { address, gateway } => {
            s.push_str("method=manual\n");
            match gateway {
                Some(gw) => s.push_str(&format!("address1={address},{gw}\n")),
                None => s.push_str(&format!("address1={address}\n")),
            }
        }
    }
    s.push_str("\n[ipv6]\nmethod=ignore\n");
    s
}

/// The keyfile's path of a source NIC.
pub(crate) fn nm_keyfile_path(name: &str) -> String {
    format!("etc/NetworkManager/system-connections/{name}.nmconnection")
}

/// `/etc/selinux/config`.
pub(crate) fn selinux_config_text(se: &SelinuxSpec) -> String {
    format!(
        "# This file controls the state of SELinux on the system.\n\
         # SELINUX= can take one of these three values:\n\
         #       enforcing - SELinux security policy is enforced.\n\
         #       permissive - SELinux prints warnings instead of enforcing.\n\
         #       disabled - No SELinux policy is loaded.\n\
         SELINUX={}\n\
         # SELINUXTYPE= the policy to load.\n\
         SELINUXTYPE={}\n",
        se.mode.name(),
        se.policy
    )
}

/// The files put in place before any package is installed.
pub(super) fn staging_files(recipe: &Recipe) -> Vec<(String, String)> {
    if let Some(d) = &recipe.dracut {
        return vec![(
            "etc/dracut.conf.d/50-osam-guest.conf".into(),
            dracut_conf_text(d),
        )];
    }
    let i = &recipe.initramfs;
    let mut modules = String::from(
        "# List of modules that you want to include in your initramfs.\n\
         # They will be loaded at boot time in the order below.\n\
         #\n\
         # Syntax:  module_name [args ...]\n\
         #\n\
         # (OSAM test guest: the source hypervisor's drivers only.)\n",
    );
    for m in &i.modules {
        modules.push_str(m);
        modules.push('\n');
    }
    vec![
        (
            "etc/initramfs-tools/conf.d/osam-guest.conf".into(),
            format!(
                "# OSAM test guest: an initramfs with the modules of\n\
                 # /etc/initramfs-tools/modules only.\n\
                 MODULES={}\nCOMPRESS={}\n",
                i.modules_policy, i.compress
            ),
        ),
        ("etc/initramfs-tools/modules".into(), modules),
    ]
}

pub(super) fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let _ = fs::remove_file(path);
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// `root` joined with an absolute guest path.
pub(super) fn in_root(root: &Path, guest: &str) -> PathBuf {
    root.join(guest.trim_start_matches('/'))
}

pub(super) fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// Checks the host before anything is made.
fn preflight(recipe: &Recipe, work: &Path) -> Result<()> {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "building the test guest {} needs root (loop devices, mount, chroot)",
            recipe.name
        );
    }
    let missing: Vec<String> = HOST_TOOLS
        .iter()
        .filter(|(p, _)| !have_program(p))
        .map(|(p, pkg)| format!("{p} ({pkg})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "building the test guest {} needs {}: run scripts/install-deps.sh",
            recipe.name,
            missing.join(", ")
        );
    }
    if work.to_string_lossy().contains(char::is_whitespace) {
        bail!(
            "the guest cache {} has white space in its path (mmdebstrap's hooks split on it)",
            work.display()
        );
    }
    Ok(())
}

/// Waits for the partition nodes of a loop device (no udev here: asks the
/// kernel with `partx -a`, and makes a node from sysfs as a last resort).
fn partition_nodes(
    log: &BuildLog,
    dev: &str,
    count: usize,
    cleanup: &mut Cleanup,
) -> Result<Vec<PathBuf>> {
    let name = dev.trim_start_matches("/dev/");
    let nodes: Vec<PathBuf> = (1..=count)
        .map(|i| PathBuf::from(format!("{dev}p{i}")))
        .collect();
    let is_block = |p: &Path| fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device());
    let start = Instant::now();
    let mut asked = false;
    loop {
        if nodes.iter().all(|n| is_block(n)) {
            return Ok(nodes);
        }
        if start.elapsed() > Duration::from_millis(500) && !asked {
            asked = true;
            let _ = log.run(
                "partx -a",
                Command::new("partx").args(["-a", dev]),
                QUICK_TIMEOUT,
            );
        }
        if start.elapsed() >= NODE_TIMEOUT {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, node) in nodes.iter().enumerate() {
        if is_block(node) {
            continue;
        }
        let sys = format!("/sys/block/{name}/{name}p{}/dev", i + 1);
        let numbers = fs::read_to_string(&sys).map_err(|e| {
            log.error(
                "partition nodes",
                format!(
                    "{} did not appear within {NODE_TIMEOUT:?} and {sys}: {e}",
                    node.display()
                ),
            )
        })?;
        let (major, minor) = numbers
            .trim()
            .split_once(':')
            .with_context(|| format!("{sys} holds {numbers:?}"))?;
        log.run(
            "mknod",
            Command::new("mknod").arg(node).args(["b", major, minor]),
            QUICK_TIMEOUT,
        )?;
        cleanup.nodes.push(node.clone());
    }
    Ok(nodes)
}

fn mkfs(log: &BuildLog, fs: &FsSpec, node: &Path, ids: &Ids) -> Result<()> {
    let mut cmd;
    match fs.kind {
        FsKind::Ext4 => {
            cmd = Command::new("mkfs.ext4");
            cmd.args(["-q", "-F", "-U", &ids.fs_uuid]);
            if let Some(l) = &fs.label {
                cmd.args(["-L", l]);
            }
        }
        FsKind::Vfat => {
            cmd = Command::new("mkfs.vfat");
            cmd.args(["-F", "32", "-i", &ids.fs_uuid.replace('-', "")]);
            if let Some(l) = &fs.label {
                cmd.args(["-n", l]);
            }
        }
        FsKind::Btrfs => {
            cmd = Command::new("mkfs.btrfs");
            cmd.args(["-q", "-f", "-U", &ids.fs_uuid]);
            if let Some(l) = &fs.label {
                cmd.args(["-L", l]);
            }
        }
        FsKind::Xfs => {
            cmd = Command::new("mkfs.xfs");
            cmd.args(["-q", "-f", "-m", &format!("uuid={}", ids.fs_uuid)]);
            if let Some(l) = &fs.label {
                cmd.args(["-L", l]);
            }
        }
    }
    cmd.arg(node);
    log.run(&format!("mkfs.{}", fs.kind.name()), &mut cmd, QUICK_TIMEOUT)?;
    Ok(())
}

fn mount(
    log: &BuildLog,
    fs: Option<FsKind>,
    source: &Path,
    target: &Path,
    options: Option<&str>,
) -> Result<()> {
    fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    let mut cmd = Command::new("mount");
    if let Some(kind) = fs {
        cmd.args(["-t", kind.name()]);
    }
    if let Some(o) = options {
        cmd.args(["-o", o]);
    }
    cmd.arg(source).arg(target);
    log.run("mount", &mut cmd, QUICK_TIMEOUT)?;
    Ok(())
}

fn chroot(log: &BuildLog, step: &str, root: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C.UTF-8");
    log.run(step, &mut cmd, CHROOT_TIMEOUT)
}

/// The installed packages of a dpkg status file.
pub(crate) fn installed_packages(status: &str) -> Vec<InstalledPackage> {
    let mut out = Vec::new();
    for stanza in status.split("\n\n") {
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for line in stanza.lines() {
            if line.starts_with(' ') {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k, v.trim());
            }
        }
        if fields
            .get("Status")
            .is_some_and(|s| s.ends_with(" installed"))
        {
            if let (Some(name), Some(version)) = (fields.get("Package"), fields.get("Version")) {
                out.push(InstalledPackage {
                    name: (*name).to_owned(),
                    version: (*version).to_owned(),
                    arch: fields.get("Architecture").copied().unwrap_or("").to_owned(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// GRUB for UEFI as `grub-install --target=<efi> --no-nvram
/// [--removable]` lays it out: its modules in `/boot/grub/<target>/`, a
/// core image (`grub-mkimage`) that finds `/boot/grub` by the file-system
/// UUID, as `EFI/debian/grub<arch>.efi` on the ESP and, when removable,
/// also as `EFI/BOOT/BOOT<ARCH>.EFI`. grub-install itself refuses an
/// `--efi-directory` that is not a mounted FAT file system, and the host
/// kernel may have no vfat: the ESP folder is a plain folder here, copied
/// onto the FAT file system with mtools at the end ([`fill_fat`]).
fn install_grub_efi(
    log: &BuildLog,
    recipe: &Recipe,
    hash: &str,
    root: &Path,
    modules: &[&str],
) -> Result<()> {
    let target = recipe.firmware.grub_target(recipe.arch);
    let (image, fallback) = match recipe.arch {
        super::recipe::GuestArch::Amd64 => ("grubx64.efi", "BOOTX64.EFI"),
        super::recipe::GuestArch::I386 => ("grubia32.efi", "BOOTIA32.EFI"),
    };
    // Where /boot/grub is, seen from its own file system.
    let (d, p, fs, m) = recipe
        .mounts()
        .find(|(_, _, _, m)| m.mountpoint == "/boot")
        .or_else(|| recipe.root())
        .context("the recipe has no /")?;
    let mut prefix = if m.mountpoint == "/boot" {
        "/grub".to_owned()
    } else {
        "/boot/grub".to_owned()
    };
    if let Some(sv) = &m.subvolume {
        prefix = format!("/{sv}{prefix}");
    }
    let uuid = ids(hash, d, p, Some(fs.kind)).fs_uuid;
    let from = root.join("usr/lib/grub").join(target);
    let to = root.join("boot/grub").join(target);
    fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(&from).with_context(|| format!("listing {}", from.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "mod" || e == "lst") {
            let name = path.file_name().unwrap_or_default();
            fs::copy(&path, to.join(name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    write_file(
        &root.join("tmp/osam-grub-load.cfg"),
        &format!("search.fs_uuid {uuid} root\nset prefix=($root)'{prefix}'\n"),
        0o644,
    )?;
    fs::create_dir_all(root.join("boot/efi/EFI/debian")).context("creating EFI/debian")?;
    let output = format!("/boot/efi/EFI/debian/{image}");
    let mut args = vec![
        "grub-mkimage",
        "-O",
        target,
        "-o",
        output.as_str(),
        "-c",
        "/tmp/osam-grub-load.cfg",
        "-p",
        prefix.as_str(),
        "search_fs_uuid",
    ];
    args.extend(modules);
    chroot(log, "grub-mkimage (EFI)", root, &args)?;
    let _ = fs::remove_file(root.join("tmp/osam-grub-load.cfg"));
    if matches!(
        recipe.firmware,
        super::recipe::GuestFirmware::Uefi { removable: true }
    ) {
        let dir = root.join("boot/efi/EFI/BOOT");
        fs::create_dir_all(&dir).context("creating EFI/BOOT")?;
        fs::copy(
            root.join(output.trim_start_matches('/')),
            dir.join(fallback),
        )
        .context("copying GRUB to the fallback path")?;
    }
    Ok(())
}

/// Copies what the build put in `dir` (a FAT file system's mount point,
/// a plain folder here) onto the FAT file system on `node` with mtools,
/// then empties `dir`.
fn fill_fat(log: &BuildLog, node: &Path, dir: &Path) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    if entries.is_empty() {
        return Ok(());
    }
    log.run(
        "mcopy (filling the FAT file system)",
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-s", "-p", "-Q", "-i"])
            .arg(node)
            .args(&entries)
            .arg("::/"),
        QUICK_TIMEOUT,
    )?;
    log.run(
        "mdir",
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-/", "-i"])
            .arg(node)
            .arg("::/"),
        QUICK_TIMEOUT,
    )?;
    for path in entries {
        if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Builds `recipe` in `work` (which must exist and be empty).
pub(crate) fn build(recipe: &Recipe, work: &Path, log: &BuildLog) -> Result<Built> {
    let t_start = Instant::now();
    let hash = recipe.hash();
    preflight(recipe, work)?;
    let mut cleanup = Cleanup::new(work, Some(log.clone()));
    let mut timings = BuildTimings::default();
    log.note(&format!(
        "building {} (builder {BUILDER_VERSION}) in {}",
        recipe.stem(),
        work.display()
    ));

    // Disks, partitions, file systems.
    let t = Instant::now();
    let mut raws = Vec::new();
    let mut loops: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for (d, disk) in recipe.disks.iter().enumerate() {
        let raw = work.join(format!("disk{d}.raw"));
        let file = fs::File::create(&raw).with_context(|| format!("creating {}", raw.display()))?;
        file.set_len(disk.size_mib << 20)
            .with_context(|| format!("sizing {}", raw.display()))?;
        drop(file);
        let script = sfdisk_script(disk, &hash, d)?;
        log.run_with_input(
            &format!("partitioning disk {d}"),
            Command::new("sfdisk")
                .args(["--no-reread", "--no-tell-kernel", "-q"])
                .arg(&raw),
            Some(script.as_bytes()),
            QUICK_TIMEOUT,
        )?;
        cleanup.images.push(raw.clone());
        let dev = log
            .run(
                &format!("attaching disk {d}"),
                Command::new("losetup")
                    .args(["--find", "--show", "--partscan"])
                    .arg(&raw),
                QUICK_TIMEOUT,
            )?
            .trim()
            .to_owned();
        if !dev.starts_with("/dev/loop") {
            return Err(log.error("attaching", format!("losetup printed {dev:?}")));
        }
        let nodes = partition_nodes(log, &dev, disk.partitions.len(), &mut cleanup)?;
        raws.push(raw);
        loops.push((dev, nodes));
    }
    let mut partitions = Vec::new();
    for (d, disk) in recipe.disks.iter().enumerate() {
        for (p, part) in disk.partitions.iter().enumerate() {
            let id = ids(&hash, d, p, part.fs.as_ref().map(|f| f.kind));
            if let Some(fs) = &part.fs {
                mkfs(log, fs, &loops[d].1[p], &id)?;
            }
            partitions.push(BuiltPartition {
                disk: d,
                index: p + 1,
                kernel_name: kernel_partition_name(d, p),
                fs: part.fs.as_ref().map(|f| f.kind.name().to_owned()),
                fs_uuid: part.fs.as_ref().map(|_| id.fs_uuid.clone()),
                fs_label: part.fs.as_ref().and_then(|f| f.label.clone()),
                part_uuid: match disk.table {
                    PartitionTable::Gpt => id.part_guid.clone(),
                    PartitionTable::Msdos => format!(
                        "{}-{:02x}",
                        hex(&derived(&hash, &format!("disk/{d}"))[..4]),
                        p + 1
                    ),
                },
            });
        }
    }

    // Mounts: btrfs subvolumes first, then / and the rest by depth.
    let root = work.join("root");
    for (d, disk) in recipe.disks.iter().enumerate() {
        for (p, part) in disk.partitions.iter().enumerate() {
            if let Some(fs) = part.fs.as_ref().filter(|f| !f.subvolumes.is_empty()) {
                let top = work.join(format!("top-{d}-{p}"));
                mount(log, Some(fs.kind), &loops[d].1[p], &top, None)?;
                for sv in &fs.subvolumes {
                    log.run(
                        "btrfs subvolume create",
                        Command::new("btrfs")
                            .args(["subvolume", "create"])
                            .arg(top.join(sv)),
                        QUICK_TIMEOUT,
                    )?;
                }
                log.run("umount", Command::new("umount").arg(&top), QUICK_TIMEOUT)?;
            }
        }
    }
    let mut mounts: Vec<_> = recipe.mounts().collect();
    mounts.sort_by_key(|(_, _, _, m)| {
        if m.mountpoint == "/" {
            0
        } else {
            m.mountpoint.matches('/').count()
        }
    });
    let mut fat_fills: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (d, p, fs, m) in &mounts {
        let dir = in_root(&root, &m.mountpoint);
        if fs.kind == FsKind::Vfat {
            // Filled with mtools at the end (see fill_fat).
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            fat_fills.push((loops[*d].1[*p].clone(), dir));
            continue;
        }
        let options = m.subvolume.as_ref().map(|sv| format!("subvol={sv}"));
        mount(
            log,
            Some(fs.kind),
            &loops[*d].1[*p],
            &in_root(&root, &m.mountpoint),
            options.as_deref(),
        )?;
    }
    timings.disks_s = secs(t.elapsed());

    // Debian.
    let t = Instant::now();
    let stage = work.join("stage");
    for (path, text) in staging_files(recipe) {
        write_file(&stage.join(path), &text, 0o644)?;
    }
    let mut cmd = Command::new("mmdebstrap");
    cmd.args([
        "--mode=root",
        "--variant=minbase",
        &format!("--architectures={}", recipe.arch.debian_arch()),
        &format!("--include={}", recipe.packages.join(",")),
        "--aptopt=Acquire::Retries \"3\"",
        "--dpkgopt=force-confold",
        "--dpkgopt=force-confdef",
        "--skip=check/empty",
        &format!("--setup-hook=sync-in {} /", stage.display()),
        &recipe.suite,
    ])
    .arg(&root)
    .arg(format!("deb {} {} main", recipe.mirror, recipe.suite))
    .env("DEBIAN_FRONTEND", "noninteractive");
    log.run("mmdebstrap", &mut cmd, MMDEBSTRAP_TIMEOUT)?;
    timings.mmdebstrap_s = secs(t.elapsed());

    // Configuration.
    let t = Instant::now();
    for (path, text) in staging_files(recipe) {
        let guest = root.join(&path);
        let now = fs::read_to_string(&guest).unwrap_or_default();
        if now != text {
            return Err(log.error(
                "checking the initramfs configuration",
                format!("/{path} is not what the recipe staged (a package replaced it)"),
            ));
        }
    }
    write_file(&root.join("etc/fstab"), &fstab_text(recipe, &hash), 0o644)?;
    write_file(
        &root.join("etc/hostname"),
        &format!("{}\n", recipe.hostname),
        0o644,
    )?;
    write_file(
        &root.join("etc/hosts"),
        &format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            recipe.hostname
        ),
        0o644,
    )?;
    match recipe.network {
        NetworkConfig::Ifupdown => write_file(
            &root.join("etc/network/interfaces"),
            &interfaces_text(recipe),
            0o644,
        )?,
        NetworkConfig::NetworkManager => {
            // NetworkManager ignores keyfiles other users can read.
            for (i, nic) in recipe.nics.iter().enumerate() {
                write_file(
                    &root.join(nm_keyfile_path(&nic.name)),
                    &nm_keyfile_text(recipe, &hash, i),
                    0o600,
                )?;
            }
        }
    }
    if let Some(se) = &recipe.selinux {
        write_file(
            &root.join("etc/selinux/config"),
            &selinux_config_text(se),
            0o644,
        )?;
    }
    let default_grub = root.join("etc/default/grub");
    let grub_text = match fs::read_to_string(&default_grub) {
        Ok(t) => t,
        Err(_) => fs::read_to_string(root.join("usr/share/grub/default/grub")).unwrap_or_default(),
    };
    write_file(&default_grub, &grub_defaults(recipe, &grub_text), 0o644)?;
    for f in &recipe.files {
        let path = in_root(&root, &f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        match &f.content {
            FileContent::Text(text) => write_file(&path, text, f.mode)?,
            FileContent::Symlink(target) => {
                let _ = fs::remove_file(&path);
                symlink(target, &path).with_context(|| format!("linking {}", path.display()))?;
            }
        }
    }
    if let Some(pw) = &recipe.root_password {
        let mut cmd = Command::new("chroot");
        cmd.arg(&root).arg("chpasswd");
        log.run_with_input(
            "setting root's password",
            &mut cmd,
            Some(format!("root:{pw}\n").as_bytes()),
            QUICK_TIMEOUT,
        )?;
    }
    timings.configure_s = secs(t.elapsed());

    // GRUB.
    let t = Instant::now();
    mount(
        log,
        None,
        Path::new("/dev"),
        &root.join("dev"),
        Some("bind"),
    )?;
    mount(
        log,
        None,
        Path::new("/proc"),
        &root.join("proc"),
        Some("bind"),
    )?;
    mount(
        log,
        None,
        Path::new("/sys"),
        &root.join("sys"),
        Some("bind"),
    )?;
    if recipe.dracut.is_some() {
        // Made here, not by the kernel's postinst during mmdebstrap (which
        // may run before dracut is configured), for every kernel.
        let t = Instant::now();
        let names: Vec<String> = fs::read_dir(root.join("lib/modules"))
            .context("listing the guest's /lib/modules")?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for k in &names {
            let image = format!("/boot/initrd.img-{k}");
            chroot(log, "dracut", &root, &["dracut", "--force", &image, k])?;
        }
        log.note(&format!("dracut took {:.1} s", t.elapsed().as_secs_f64()));
    }
    let (root_disk, root_part, root_fs, root_mount) =
        recipe.root().context("the recipe has no /")?;
    let grub_fs = match root_fs.kind {
        FsKind::Ext4 => "ext2",
        FsKind::Btrfs => "btrfs",
        FsKind::Xfs => "xfs",
        FsKind::Vfat => "fat",
    };
    let partmap = match recipe.disks[root_disk].table {
        PartitionTable::Msdos => "part_msdos",
        PartitionTable::Gpt => "part_gpt",
    };
    let target = format!("--target={}", recipe.firmware.grub_target(recipe.arch));
    let modules = format!("--modules={partmap} {grub_fs}");
    if recipe.firmware.is_uefi() {
        install_grub_efi(log, recipe, &hash, &root, &[partmap, grub_fs])?;
    } else {
        chroot(
            log,
            "grub-install (BIOS)",
            &root,
            &[
                "grub-install",
                target.as_str(),
                modules.as_str(),
                &loops[0].0,
            ],
        )?;
    }
    chroot(log, "update-grub", &root, &["update-grub"])?;
    let grub_cfg = root.join("boot/grub/grub.cfg");
    let cfg =
        fs::read_to_string(&grub_cfg).with_context(|| format!("reading {}", grub_cfg.display()))?;
    let root_node = loops[root_disk].1[root_part].to_string_lossy().into_owned();
    let root_id = ids(&hash, root_disk, root_part, Some(root_fs.kind));
    let root_source = source_text(&root_mount.source, root_fs, &root_id);
    let cfg = cfg.replace(
        &format!("root={root_node} "),
        &format!("root={root_source} "),
    );
    if cfg.contains("/dev/loop") {
        return Err(log.error(
            "update-grub",
            format!(
                "{} still names a loop device after root= was rewritten",
                grub_cfg.display()
            ),
        ));
    }
    let cmdline = cfg
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("linux") && l.contains("root="))
        .map(|l| {
            l.split_whitespace()
                .skip(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if !cmdline.iter().any(|a| *a == format!("root={root_source}")) {
        return Err(log.error(
            "update-grub",
            format!("grub.cfg's first linux line has no root={root_source}: {cmdline:?}"),
        ));
    }
    fs::write(&grub_cfg, cfg).with_context(|| format!("writing {}", grub_cfg.display()))?;
    timings.grub_s = secs(t.elapsed());
    if let Some(se) = &recipe.selinux {
        // Label everything now: a first-boot autorelabel would cost a boot.
        let t = Instant::now();
        let contexts = format!("/etc/selinux/{}/contexts/files/file_contexts", se.policy);
        chroot(
            log,
            "setfiles (SELinux labels)",
            &root,
            &[
                "setfiles", "-F", "-e", "/dev", "-e", "/proc", "-e", "/sys", &contexts, "/",
            ],
        )?;
        log.note(&format!("setfiles took {:.1} s", t.elapsed().as_secs_f64()));
    }

    // What the guest holds.
    let mut kernels: Vec<String> = fs::read_dir(root.join("lib/modules"))
        .context("listing the guest's /lib/modules")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    kernels.sort();
    if kernels.is_empty() {
        return Err(log.error("checking the kernel", "the guest has no kernel".into()));
    }
    let mut initramfs_modules = BTreeMap::new();
    for k in &kernels {
        let initrd = format!("/boot/initrd.img-{k}");
        let listing = if recipe.dracut.is_some() {
            chroot(log, "lsinitrd", &root, &["lsinitrd", &initrd])?
        } else {
            chroot(log, "lsinitramfs", &root, &["lsinitramfs", &initrd])?
        };
        let mut mods: Vec<String> = listing
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .filter_map(|f| f.strip_suffix(".ko").or_else(|| f.strip_suffix(".ko.xz")))
            .map(|m| m.replace('-', "_"))
            .collect();
        mods.sort();
        mods.dedup();
        let builtin = fs::read_to_string(root.join(format!("lib/modules/{k}/modules.builtin")))
            .unwrap_or_default();
        let drivers: &[String] = match &recipe.dracut {
            Some(d) => &d.drivers,
            None => &[],
        };
        let listed = (recipe.initramfs.modules.iter().map(|m| ("module", m)))
            .chain(drivers.iter().map(|d| ("driver", d)));
        for (kind, wanted) in listed {
            let w = wanted.replace('-', "_");
            let is_builtin = builtin
                .lines()
                .any(|l| l.rsplit('/').next() == Some(&format!("{w}.ko")));
            if !mods.contains(&w) && !is_builtin {
                return Err(log.error(
                    "checking the initramfs",
                    format!("{initrd} lacks the {kind} {wanted} the recipe lists"),
                ));
            }
        }
        if recipe.dracut.is_some() && mods.iter().any(|m| m == "vmw_pvscsi") {
            return Err(log.error(
                "checking the initramfs",
                format!("{initrd} holds vmw_pvscsi: the unfixed guest would boot on VMware"),
            ));
        }
        initramfs_modules.insert(k.clone(), mods);
    }
    let status_text = fs::read_to_string(root.join("var/lib/dpkg/status"))
        .context("reading the guest's dpkg status")?;
    let dpkg_status = work.join("dpkg-status");
    fs::write(&dpkg_status, &status_text).context("saving the guest's dpkg status")?;
    let packages = installed_packages(&status_text);
    if recipe.dracut.is_some() {
        if let Some(p) = packages.iter().find(|p| p.name == "initramfs-tools") {
            return Err(log.error(
                "checking the packages",
                format!("a dracut guest has initramfs-tools {}", p.version),
            ));
        }
    }

    // Unmount, detach, convert.
    for (node, dir) in &fat_fills {
        fill_fat(log, node, dir)?;
    }
    for (_, _, _, m) in mounts
        .iter()
        .filter(|(_, _, fs, _)| fs.kind != FsKind::Vfat)
    {
        let _ = log.run(
            "fstrim",
            Command::new("fstrim").arg(in_root(&root, &m.mountpoint)),
            QUICK_TIMEOUT,
        );
    }
    cleanup
        .run()
        .map_err(|e| log.error("unmounting", format!("{e:#}")))?;
    let t = Instant::now();
    let mut disks = Vec::new();
    for (d, raw) in raws.iter().enumerate() {
        let qcow2 = work.join(format!("disk{d}.qcow2"));
        log.run(
            &format!("converting disk {d} to qcow2"),
            Command::new("qemu-img")
                .args([
                    "convert",
                    "-c",
                    "-O",
                    "qcow2",
                    "-o",
                    "compression_type=zstd",
                ])
                .arg(raw)
                .arg(&qcow2),
            CONVERT_TIMEOUT,
        )?;
        fs::remove_file(raw).with_context(|| format!("removing {}", raw.display()))?;
        disks.push(qcow2);
    }
    timings.convert_s = secs(t.elapsed());
    timings.total_s = secs(t_start.elapsed());
    log.note(&format!(
        "built {} in {:.1} s: {timings:?}",
        recipe.stem(),
        timings.total_s
    ));

    Ok(Built {
        disks,
        dpkg_status,
        manifest: GuestManifest {
            builder_version: BUILDER_VERSION,
            name: recipe.name.clone(),
            hash,
            recipe: recipe.clone(),
            kernels,
            packages,
            initramfs_modules,
            grub_cmdline: cmdline,
            partitions,
            timings,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guests::recipe::GuestArch;

    const MIRROR: &str = "http://deb.debian.org/debian";

    #[test]
    fn fstab_interfaces_and_grub_defaults() {
        let r = Recipe::debian12_bios(GuestArch::Amd64, MIRROR).with_data_disk();
        let fstab = fstab_text(&r, &r.hash());
        let lines: Vec<&str> = fstab.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "/dev/sda1 / ext4 errors=remount-ro 0 1",
                "/dev/sdb1 /data ext4 defaults 0 2"
            ]
        );
        let b = Recipe::debian12_bios_btrfs(GuestArch::Amd64, MIRROR);
        let fstab = fstab_text(&b, &b.hash());
        assert!(
            fstab.contains("/dev/sda1 / btrfs defaults,subvol=@ 0 0\n"),
            "{fstab}"
        );
        assert!(fstab.contains("/dev/sda1 /home btrfs defaults,subvol=@home 0 0\n"));
        let u = Recipe::debian12_uefi(GuestArch::Amd64, MIRROR, true);
        let fstab = fstab_text(&u, &u.hash());
        let lines: Vec<&str> = fstab.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "/dev/sda2 / ext4 errors=remount-ro 0 1",
                "/dev/sda1 /boot/efi vfat umask=0077 0 1"
            ]
        );

        let ifaces = interfaces_text(&r);
        assert!(ifaces.contains("allow-hotplug ens192\niface ens192 inet dhcp\n"));
        assert!(ifaces.contains("iface ens224 inet static\n    address 192.168.50.10/24\n"));

        let stock = "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n\
                     GRUB_CMDLINE_LINUX=\"\"\n#GRUB_TERMINAL=console\n#GRUB_DISABLE_LINUX_UUID=true\n";
        let g = grub_defaults(&r, stock);
        assert_eq!(
            g,
            "GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"\"\n\
             GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200\"\n\
             GRUB_TERMINAL=\"console serial\"\nGRUB_DISABLE_LINUX_UUID=true\n\
             GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\"\n"
        );
        assert_eq!(set_shell_var("A=1\nAB=2\n", "AB", "3"), "A=1\nAB=3\n");
    }

    #[test]
    fn rhel_like_configuration_files() {
        use crate::guests::recipe::SelinuxMode;
        let g = Recipe::debian12_rhel_like(GuestArch::Amd64, MIRROR, SelinuxMode::Enforcing);
        let h = g.hash();
        let staged = staging_files(&g);
        assert_eq!(staged.len(), 1);
        assert_eq!(staged[0].0, "etc/dracut.conf.d/50-osam-guest.conf");
        assert!(staged[0].1.contains("hostonly=\"no\"\n"));
        assert!(
            staged[0]
                .1
                .contains("drivers=\" virtio_pci virtio_scsi sd_mod ext4 \"\n")
        );
        let dhcp = nm_keyfile_text(&g, &h, 0);
        assert!(dhcp.contains("interface-name=ens192\n"), "{dhcp}");
        assert!(dhcp.contains("[ipv4]\nmethod=auto\n"));
        assert!(!dhcp.contains("mac-address"));
        let fixed = nm_keyfile_text(&g, &h, 1);
        assert!(fixed.contains("interface-name=ens224\n"), "{fixed}");
        assert!(fixed.contains("mac-address=52:54:00:4F:53:02\n"));
        assert!(fixed.contains("method=manual\naddress1=192.168.50.10/24\n"));
        assert_ne!(dhcp.lines().nth(2), fixed.lines().nth(2), "the same uuid");
        assert_eq!(
            nm_keyfile_path("ens192"),
            "etc/NetworkManager/system-connections/ens192.nmconnection"
        );
        let se = selinux_config_text(g.selinux.as_ref().unwrap());
        assert!(se.contains("\nSELINUX=enforcing\n") && se.contains("\nSELINUXTYPE=default\n"));
    }

    #[test]
    fn partition_scripts_and_ids_are_stable() {
        let r = Recipe::debian12_uefi(GuestArch::Amd64, MIRROR, true);
        let h = r.hash();
        let s = sfdisk_script(&r.disks[0], &h, 0).unwrap();
        assert_eq!(s, sfdisk_script(&r.disks[0], &h, 0).unwrap());
        assert!(s.starts_with("label: gpt\nlabel-id: "));
        assert!(s.contains("start=2048, size=262144, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"));
        let a = Recipe::debian12_bios(GuestArch::Amd64, MIRROR);
        let s = sfdisk_script(&a.disks[0], &a.hash(), 0).unwrap();
        assert!(s.contains("label: dos\nlabel-id: 0x"));
        assert!(s.ends_with("start=2048, type=83, bootable\n"), "{s}");
        let vfat = ids(&h, 0, 0, Some(FsKind::Vfat));
        assert_eq!(vfat.fs_uuid.len(), 9);
        let ext4 = ids(&h, 0, 1, Some(FsKind::Ext4));
        assert_eq!(ext4.fs_uuid.len(), 36);
        assert_eq!(&ext4.fs_uuid[14..15], "4");
        assert_ne!(ids(&h, 0, 1, None).part_guid, ids(&h, 0, 0, None).part_guid);
    }

    #[test]
    fn reads_dpkg_status_and_mounts() {
        let status = "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\
                      Description: x\n more\n\n\
                      Package: b\nStatus: deinstall ok config-files\nVersion: 2\n\n\
                      Package: c\nStatus: install ok installed\nArchitecture: all\nVersion: 3\n";
        let p = installed_packages(status);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].name.as_str(), p[0].version.as_str()), ("a", "1"));
        assert_eq!(p[1].arch, "all");
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
    }
}
