//! The storage identity map: every way the source guest names a disk,
//! partition, file system or volume → the target's name for it, in the
//! form the guest's configuration should use (`UUID=…` by default).
//!
//! [`IdentityMap::build`] derives the map from replica-disk-map.json, the
//! probe of the target disks (or, offline, `targetUuid`) and the guest's
//! own files:
//!
//! * Source identities of each replica partition: its `sourceDevice`, the
//!   name derived from the disk's `sourceDevice` and the partition number
//!   (`/dev/sda` + 1, `/dev/nvme0n1` + `p1`, `/dev/cciss/c0d0` + `p1`),
//!   `UUID=<sourceUuid>` and `/dev/disk/by-uuid/…`, `LABEL=` and
//!   `/dev/disk/by-label/…`, the probed `PARTUUID=` and
//!   `/dev/disk/by-partuuid/…`, and `/dev/disk/by-{id,path}/<disk>-partN`
//!   links that can be tied to a replica disk (see below).
//! * Cross-scheme aliases (`/dev/sda1` ⇄ `/dev/hda1` ⇄ `/dev/vda1` ⇄
//!   `/dev/xvda1` ⇄ `/dev/nvme0n1p1` ⇄ `/dev/cciss/c0d0p1`, by the disk's
//!   position in its naming scheme) are added only for a scheme the guest's
//!   own files use and the map does not, and only when the guest's files
//!   do not also use the map's own scheme (that would be ambiguous: a
//!   warning, and no alias).
//! * A `PARTUUID=` (or `/dev/disk/by-partuuid/`) reference: the probed
//!   PARTUUID of a replica partition names it. Otherwise (offline:
//!   replica-disk-map.json has no PARTUUIDs) a PARTUUID is tied to the
//!   replica partition that mounts where the fstab entry naming it does (or
//!   is the only swap partition), and the root's PARTUUID (`root=`,
//!   Photon's `rootpartition=`, Ubuntu's `GRUB_FORCE_PARTUUID=`) to the one
//!   that mounts at `/`. A tied PARTUUID of a file system copied at block
//!   level (target UUID = source UUID, or assumed so) stays as it is (the
//!   partition table was copied with it); where the UUID changed, the
//!   partition table was re-created and it becomes the file system's
//!   `UUID=`. [`IdentityMap::target_partuuid`] says which PARTUUID the
//!   target has, where known.
//! * Naming schemes and device uses are read from the files' settings, not
//!   their comments; GRUB legacy's `# kopt=` / `# groot=` lines are
//!   settings (Debian's `update-grub` reads them), its `## ` lines are not.
//!   A file an earlier run changed is read as it was (its backup in the
//!   change manifest), so that a rerun builds the same map.
//! * A `/dev/disk/by-id` or `by-path` link cannot be resolved offline. It is
//!   tied to a replica disk when the disk's `sourceDevice` is that link, when
//!   an fstab entry `<link>-partN` mounts where the map says partition N of
//!   that disk mounts (or is the only swap partition N), or when GRUB's
//!   `device.map` names it `(hd0)` (the boot disk). Every other link is left
//!   as it is, with a `storage.unmapped_link` warning.
//! * The target: `UUID=<uuid>` where uuid is the probed UUID, else
//!   `targetUuid`, else `sourceUuid` (a block-level copy keeps its UUIDs; a
//!   `storage.target_uuid_assumed` warning). A probe that disagrees with
//!   `targetUuid` wins (`storage.uuid_mismatch`). Members of LVM, md and
//!   other volume managers are never named by `UUID=` (their UUID is not a
//!   mountable file system's): their target form is the device name.
//! * LVM (`/dev/mapper/vg-lv`, `/dev/vg/lv`) and md (`/dev/md0`,
//!   `/dev/md/name`) references are stable: VG/LV names and md UUIDs travel
//!   with the data, so they map to themselves ([`IdentityMap::rewrite`]
//!   gives `None`, [`is_stable`] says so).
//!
//! Target device names (for `fstabIdentifiers: keep` and LVM filters) are
//! the probe's `target_device`, else predicted from the target address:
//! `/dev/nvme<c>n<unit+1>` on NVMe, and `/dev/sdX` in address order when
//! every replica is on SCSI (before the fixup disk at scsi0:15) or every
//! replica is on SATA; otherwise unknown.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::engine::plan::GuestFiles;
use crate::error::{Warning, codes};
use crate::fsutil::unescape_octal;
use crate::protocol::config::{ControllerKind, FstabIdentifiers, Inputs, PartitionInfo};

/// What the probe of PID 1 found on one target block device (a partition,
/// or a whole disk with `partition: None`), or on a volume assembled from
/// the replicas (an LVM LV or an md array: `target_device` is its
/// device-mapper or md name, `disk_index` the disk of its first member,
/// `partition` `None`; see [`ProbedFs::is_assembled`]). Offline runs pass
/// none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbedFs {
    /// Index of the disk in replica-disk-map.json's `disks`.
    pub disk_index: usize,
    /// The partition number, `None` for the whole disk.
    pub partition: Option<u32>,
    /// The device as the stack sees it, e.g. `/dev/sdb2`.
    pub target_device: Option<String>,
    pub fs_type: Option<String>,
    pub uuid: Option<String>,
    pub partuuid: Option<String>,
    pub label: Option<String>,
}

impl ProbedFs {
    /// A volume assembled from the replicas (`/dev/mapper/vg-lv`,
    /// `/dev/md127`) rather than a replica disk or partition.
    pub fn is_assembled(&self) -> bool {
        self.partition.is_none() && self.target_device.as_deref().is_some_and(is_stable)
    }
}

/// Source reference → target reference.
///
/// Keys are canonical references (see [`canonical`]). `map` holds the
/// `UUID=` form, `names` the device-name form where it differs (kernel
/// device names → target kernel device names, for `fstabIdentifiers:
/// keep`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityMap {
    map: BTreeMap<String, String>,
    names: BTreeMap<String, String>,
    /// Source PARTUUID (lowercase) → the target partition's PARTUUID, where
    /// it is known (see [`IdentityMap::target_partuuid`]).
    partuuids: BTreeMap<String, String>,
}

/// What kind of device reference a string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A kernel block device name: `/dev/sda1`, `/dev/vdb`, `/dev/xvda1`,
    /// `/dev/hda2`, `/dev/nvme0n1p1`, `/dev/cciss/c0d0p1`, `/dev/sr0`, …
    KernelName,
    /// `UUID=`, `LABEL=`, `PARTUUID=`, `PARTLABEL=`, `ID=`.
    Tag,
    /// `/dev/disk/by-*/…`.
    DiskLink,
    /// LVM, device-mapper and md names: stable across the migration.
    Stable,
    /// Anything else (a file, a network share, a pseudo file system).
    Other,
}

/// A kernel device naming scheme whose disks are numbered by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scheme {
    Sd,
    Hd,
    Vd,
    Xvd,
    Nvme,
    Cciss,
}

impl Scheme {
    /// The disk at `position` in this scheme.
    fn disk(self, position: usize) -> String {
        match self {
            Scheme::Sd => format!("/dev/sd{}", letters(position)),
            Scheme::Hd => format!("/dev/hd{}", letters(position)),
            Scheme::Vd => format!("/dev/vd{}", letters(position)),
            Scheme::Xvd => format!("/dev/xvd{}", letters(position)),
            Scheme::Nvme => format!("/dev/nvme{position}n1"),
            Scheme::Cciss => format!("/dev/cciss/c0d{position}"),
        }
    }
}

/// `0` → `a`, `25` → `z`, `26` → `aa` (the kernel's sd naming).
fn letters(mut position: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (position % 26) as u8);
        if position < 26 {
            break;
        }
        position = position / 26 - 1;
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

fn letters_index(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut n = 0usize;
    for b in s.bytes() {
        n = n * 26 + usize::from(b - b'a') + 1;
    }
    Some(n - 1)
}

fn digits(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A kernel name parsed: scheme, disk position, partition number.
fn parse_kernel_name(name: &str) -> Option<(Scheme, usize, Option<u32>)> {
    let part = |s: &str| -> Option<Option<u32>> {
        if s.is_empty() {
            Some(None)
        } else {
            digits(s).and_then(|n| u32::try_from(n).ok()).map(Some)
        }
    };
    if let Some(rest) = name.strip_prefix("/dev/cciss/c0d") {
        let (d, p) = rest.split_once('p').unwrap_or((rest, ""));
        if rest.ends_with('p') {
            return None;
        }
        return Some((Scheme::Cciss, digits(d)?, part(p)?));
    }
    if let Some(rest) = name.strip_prefix("/dev/nvme") {
        let (c, ns) = rest.split_once('n')?;
        let (ns, p) = ns.split_once('p').unwrap_or((ns, ""));
        if ns != "1" || rest.ends_with('p') {
            return None;
        }
        return Some((Scheme::Nvme, digits(c)?, part(p)?));
    }
    let (scheme, rest) = if let Some(r) = name.strip_prefix("/dev/xvd") {
        (Scheme::Xvd, r)
    } else if let Some(r) = name.strip_prefix("/dev/sd") {
        (Scheme::Sd, r)
    } else if let Some(r) = name.strip_prefix("/dev/hd") {
        (Scheme::Hd, r)
    } else if let Some(r) = name.strip_prefix("/dev/vd") {
        (Scheme::Vd, r)
    } else {
        return None;
    };
    let split = rest
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(rest.len());
    let (l, p) = rest.split_at(split);
    Some((scheme, letters_index(l)?, part(p)?))
}

/// The name of partition `n` of the disk named `disk`: `/dev/sda` → `/dev/sda1`,
/// `/dev/nvme0n1` → `/dev/nvme0n1p1`, `/dev/disk/by-id/x` → `/dev/disk/by-id/x-part1`.
pub fn partition_name(disk: &str, n: u32) -> String {
    if disk.starts_with("/dev/disk/") {
        format!("{disk}-part{n}")
    } else if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

/// What kind of reference `reference` is (as written in a guest file,
/// octal escapes already decoded).
pub fn classify(reference: &str) -> RefKind {
    let tag = reference.split_once('=').map(|(t, _)| t);
    if matches!(
        tag,
        Some("UUID" | "LABEL" | "PARTUUID" | "PARTLABEL" | "ID")
    ) {
        return RefKind::Tag;
    }
    let Some(rest) = reference.strip_prefix("/dev/") else {
        return RefKind::Other;
    };
    if rest.starts_with("disk/by-") {
        return RefKind::DiskLink;
    }
    if parse_kernel_name(reference).is_some() {
        return RefKind::KernelName;
    }
    if rest.starts_with("mapper/") || rest.starts_with("md") || rest.starts_with("dm-") {
        return RefKind::Stable;
    }
    let word = rest
        .find(|c: char| c.is_ascii_digit())
        .map_or(rest, |i| &rest[..i]);
    if matches!(
        word,
        "sr" | "scd" | "fd" | "mmcblk" | "ida/c" | "rd/c" | "ubd"
    ) || rest.starts_with("cciss/")
    {
        return RefKind::KernelName;
    }
    // /dev/<vg>/<lv>: LVM's own links.
    if let Some((dir, lv)) = rest.split_once('/') {
        let known_dirs = [
            "disk",
            "block",
            "char",
            "bus",
            "input",
            "shm",
            "pts",
            "net",
            "snd",
            "fd",
            "cpu",
            "dri",
            "usb",
            "vfio",
            "hugepages",
            "mqueue",
        ];
        if !dir.is_empty() && !lv.is_empty() && !lv.contains('/') && !known_dirs.contains(&dir) {
            return RefKind::Stable;
        }
    }
    RefKind::Other
}

/// Whether a reference is an LVM, device-mapper or md name, which travels
/// with the data and maps to itself.
pub fn is_stable(reference: &str) -> bool {
    classify(reference) == RefKind::Stable
}

/// The canonical form of a reference, used as the map's key: quotes around
/// a tag's value removed, UUID and PARTUUID values (and by-uuid /
/// by-partuuid link names) in lowercase.
pub fn canonical(reference: &str) -> String {
    if let Some((tag, value)) = reference.split_once('=')
        && matches!(tag, "UUID" | "LABEL" | "PARTUUID" | "PARTLABEL" | "ID")
    {
        let v = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        return if matches!(tag, "UUID" | "PARTUUID") {
            format!("{tag}={}", v.to_ascii_lowercase())
        } else {
            format!("{tag}={v}")
        };
    }
    for dir in ["/dev/disk/by-uuid/", "/dev/disk/by-partuuid/"] {
        if let Some(v) = reference.strip_prefix(dir) {
            return format!("{dir}{}", v.to_ascii_lowercase());
        }
    }
    reference.to_string()
}

/// udev's escaping of a label in `/dev/disk/by-label/` (space, `/` and
/// other unsafe ASCII characters as `\xNN`).
fn udev_escape(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) || !c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        }
    }
    out
}

/// File system types whose "UUID" belongs to a volume manager, not a
/// mountable file system: never referenced as `UUID=`.
fn is_member_type(fs_type: Option<&str>) -> bool {
    matches!(
        fs_type,
        Some(
            "LVM2_member"
                | "linux_raid_member"
                | "zfs_member"
                | "isw_raid_member"
                | "ddf_raid_member"
                | "btrfs_member"
        )
    )
}

/// Guest files whose device references tell which naming schemes and
/// `/dev/disk/by-*` links the guest uses.
const REFERENCE_FILES: &[&str] = &[
    "/etc/fstab",
    "/etc/crypttab",
    "/etc/mdadm.conf",
    "/etc/mdadm/mdadm.conf",
    "/etc/lvm/lvm.conf",
    "/etc/initramfs-tools/conf.d/resume",
    "/etc/dracut.conf",
    "/etc/default/grub",
    "/etc/kernel/cmdline",
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/boot/grub/menu.lst",
    "/boot/grub/grub.conf",
    "/boot/grub/device.map",
    "/boot/grub2/device.map",
    "/etc/sysconfig/bootloader",
];

/// Every `/dev/…` reference in a text (up to whitespace, a quote, a comma,
/// `|`, `)` or `;`).
fn dev_references(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(i) = rest.find("/dev/") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c.is_whitespace() || "\"',|);]$".contains(c))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end.max(5)..];
    }
}

/// The lines of a guest file that are settings: `text` without its
/// comment lines, except, in GRUB legacy's `menu.lst` / `grub.conf`, the
/// single-`#` lines Debian's `update-grub` reads as settings (`# kopt=`,
/// `# groot=`, …). Its `## ` lines are documentation (`## e.g.
/// kopt=root=/dev/hda1 ro`).
fn live_text(path: &str, text: &str) -> String {
    let legacy = path.ends_with("/menu.lst") || path.ends_with("/grub.conf");
    text.lines()
        .filter(|l| {
            let Some(comment) = l.trim_start().strip_prefix('#') else {
                return true;
            };
            legacy && is_update_grub_setting(comment)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a comment's body (after its one `#`) is a setting Debian's
/// `update-grub` (GRUB legacy) reads: `kopt=`, `kopt_<version>=`,
/// `groot=`, `defoptions=`, `altoptions=`, `xenkopt=`, `xenhopt=`.
fn is_update_grub_setting(comment: &str) -> bool {
    if comment.starts_with('#') {
        return false;
    }
    let Some((name, _)) = comment.trim_start().split_once('=') else {
        return false;
    };
    matches!(
        name,
        "kopt" | "groot" | "defoptions" | "altoptions" | "xenkopt" | "xenhopt"
    ) || name
        .strip_prefix("kopt_")
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// The PARTUUID a reference names (`PARTUUID=…`, `/dev/disk/by-partuuid/…`),
/// in lowercase.
fn partuuid_of(reference: &str) -> Option<String> {
    let c = canonical(reference);
    c.strip_prefix("PARTUUID=")
        .or_else(|| c.strip_prefix("/dev/disk/by-partuuid/"))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

/// The PARTUUIDs a file's settings give for the root file system:
/// `root=PARTUUID=…` on a kernel command line, Photon's `rootpartition=`,
/// Ubuntu's `GRUB_FORCE_PARTUUID=` (in `/etc/default/grub` or a
/// `grub.d` drop-in).
fn root_partuuids(live: &str, out: &mut Vec<String>) {
    let words = live
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter(|w| !w.is_empty());
    for w in words {
        let value = w
            .strip_prefix("root=")
            .or_else(|| w.strip_prefix("rootpartition="))
            .and_then(partuuid_of)
            .or_else(|| {
                w.strip_prefix("GRUB_FORCE_PARTUUID=")
                    .filter(|v| !v.is_empty())
                    .map(str::to_ascii_lowercase)
            });
        out.extend(value);
    }
}

/// The guest's fstab entries as (spec, mount point, type), decoded.
fn fstab_entries(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                unescape_octal(f.next()?),
                unescape_octal(f.next()?),
                f.next()?.to_string(),
            ))
        })
        .collect()
}

/// The target identity of one source block device.
#[derive(Debug, Clone, Default)]
struct TargetId {
    uuid: Option<String>,
    device: Option<String>,
    label: Option<String>,
    partuuid: Option<String>,
    member: bool,
}

impl TargetId {
    /// The `UUID=` form (the device name where there is no UUID).
    fn uuid_form(&self) -> Option<String> {
        match &self.uuid {
            Some(u) if !self.member => Some(format!("UUID={u}")),
            _ => self.device.clone(),
        }
    }
}

impl IdentityMap {
    /// A map from explicit pairs (tests, and the builders below).
    pub fn from_pairs<S: AsRef<str>, T: AsRef<str>>(pairs: &[(S, T)]) -> IdentityMap {
        let mut m = IdentityMap::default();
        for (s, t) in pairs {
            m.insert(s.as_ref(), t.as_ref());
        }
        m
    }

    /// Adds one mapping (the `UUID=` form).
    pub fn insert(&mut self, source: &str, target: &str) {
        self.map.insert(canonical(source), target.to_string());
    }

    /// Adds one device-name-form mapping (used with `fstabIdentifiers:
    /// keep`); where none is given, the `UUID=` form serves.
    pub fn insert_device_name(&mut self, source: &str, target: &str) {
        self.names.insert(canonical(source), target.to_string());
    }

    /// Records that the source partition with PARTUUID `source` has the
    /// PARTUUID `target` on the target (and the target's its own).
    pub fn insert_partuuid(&mut self, source: &str, target: &str) {
        self.partuuids
            .insert(source.to_ascii_lowercase(), target.to_string());
        self.partuuids
            .entry(target.to_ascii_lowercase())
            .or_insert_with(|| target.to_string());
    }

    /// The target's PARTUUID for the partition the source knew by the
    /// PARTUUID `source`, where it is known: from the probe, or, offline,
    /// the source's own where the partition was copied at block level (see
    /// [`IdentityMap::build`]). `None` where the partition table was
    /// re-created or the PARTUUID names no replica partition.
    pub fn target_partuuid(&self, source: &str) -> Option<&str> {
        let key = source.trim_matches(['"', '\'']).to_ascii_lowercase();
        self.partuuids.get(&key).map(String::as_str)
    }

    /// The target reference for a source reference as written in a guest
    /// file (`/dev/sda1`, `UUID=…`, `/dev/disk/by-uuid/…`); `None` when it
    /// is not a replica's, or already names the target. LVM and md names
    /// are stable and give `None`.
    pub fn rewrite(&self, reference: &str) -> Option<String> {
        let c = canonical(reference);
        let t = self.map.get(&c)?;
        (canonical(t) != c).then(|| t.clone())
    }

    /// The device-name target form (`fstabIdentifiers: keep`): a kernel
    /// device name stays as it is when the target has the same name, else
    /// becomes the target's device name (`/dev/vda1` → `/dev/sda1`); tags
    /// and links become what [`Self::rewrite`] gives (a `/dev/disk/by-id`
    /// link of the source hardware does not exist on the target).
    pub fn rewrite_device_name(&self, reference: &str) -> Option<String> {
        let c = canonical(reference);
        let t = self.names.get(&c).or_else(|| self.map.get(&c))?;
        (canonical(t) != c).then(|| t.clone())
    }

    /// [`Self::rewrite`] or [`Self::rewrite_device_name`] by the option.
    pub fn rewrite_for(&self, reference: &str, mode: FstabIdentifiers) -> Option<String> {
        match mode {
            FstabIdentifiers::Uuid => self.rewrite(reference),
            FstabIdentifiers::Keep => self.rewrite_device_name(reference),
        }
    }

    /// Whether a reference names a replica (in its source or its target
    /// form). LVM and md names are not block references of a replica and
    /// give `false`: see [`is_stable`].
    pub fn is_known(&self, reference: &str) -> bool {
        let c = canonical(reference);
        self.map.contains_key(&c) || self.names.contains_key(&c)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every mapping, sorted by source.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(s, t)| (s.as_str(), t.as_str()))
    }

    /// Every device-name-form mapping that differs from the `UUID=` form,
    /// sorted by source.
    pub fn device_name_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.iter().map(|(s, t)| (s.as_str(), t.as_str()))
    }

    /// Builds the map for `inputs` from the probe of the target disks
    /// (empty offline) and the guest's files (which naming schemes and
    /// links the guest uses). See the module documentation for the rules.
    pub fn build(
        inputs: &Inputs,
        probed: &[ProbedFs],
        files: &dyn GuestFiles,
    ) -> (IdentityMap, Vec<Warning>) {
        let mut b = Builder {
            map: IdentityMap::default(),
            warnings: Vec::new(),
            target_keys: Vec::new(),
        };
        let disks = &inputs.disks.disks;

        // What the guest's files reference.
        let mut refs = BTreeSet::new();
        // What their settings reference (not their comments): which
        // naming schemes the guest uses.
        let mut live = BTreeSet::new();
        // The references that use a device (for the warnings about names
        // that depend on the disk order): not device.map (it names every
        // BIOS disk whole) nor comments (anaconda's `#boot=/dev/sda`).
        let mut uses = BTreeSet::new();
        let mut fstab = Vec::new();
        let mut device_map = Vec::new();
        // PARTUUIDs named for the root file system.
        let mut root_parts = Vec::new();
        // On a rerun, a file an earlier run changed is judged by its
        // original (its backup in the change manifest): the evidence of
        // the source's naming is what the source guest had, not what the
        // first run wrote (which removed it, and a rerun would decide
        // otherwise, e.g. alias a naming scheme the first run found
        // ambiguous).
        let manifest: Option<crate::guestwrite::Manifest> = files
            .read(crate::guestwrite::MANIFEST)
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok());
        let read = |path: &str| -> Option<String> {
            manifest
                .as_ref()
                .and_then(|m| m.backup_of(path))
                .and_then(|b| files.read(b).ok().flatten())
                .or_else(|| files.read(path).ok().flatten())
        };
        for path in REFERENCE_FILES {
            if let Some(text) = read(path) {
                dev_references(&text, &mut refs);
                let settings = live_text(path, &text);
                dev_references(&settings, &mut live);
                root_partuuids(&settings, &mut root_parts);
                if !path.ends_with("device.map") {
                    dev_references(&settings, &mut uses);
                }
                if *path == "/etc/fstab" {
                    fstab = fstab_entries(&text);
                    for (spec, _, _) in &fstab {
                        refs.insert(spec.clone());
                        live.insert(spec.clone());
                        uses.insert(spec.clone());
                    }
                }
                if path.ends_with("device.map") {
                    device_map.extend(text.lines().filter_map(|l| {
                        let mut f = l.split_whitespace();
                        let drive = f.next()?;
                        Some((drive.to_string(), f.next()?.to_string()))
                    }));
                }
            }
        }
        for (dir, ext) in [
            ("/etc/dracut.conf.d", ""),
            ("/boot/loader/entries", ""),
            ("/etc/default/grub.d", ".cfg"),
        ] {
            for name in files.list(dir).unwrap_or_default() {
                if !name.ends_with(ext) {
                    continue;
                }
                let path = format!("{dir}/{name}");
                if let Some(text) = read(&path) {
                    dev_references(&text, &mut refs);
                    let settings = live_text(&path, &text);
                    dev_references(&settings, &mut live);
                    dev_references(&settings, &mut uses);
                    root_partuuids(&settings, &mut root_parts);
                }
            }
        }

        // Naming schemes: aliases only for one foreign scheme the guest uses.
        let map_schemes: BTreeSet<Scheme> = disks
            .iter()
            .filter_map(|d| parse_kernel_name(&d.source_device).map(|(s, _, _)| s))
            .collect();
        let guest_schemes: BTreeSet<Scheme> = live
            .iter()
            .filter_map(|r| parse_kernel_name(r).map(|(s, _, _)| s))
            .collect();
        let foreign: Vec<Scheme> = guest_schemes.difference(&map_schemes).copied().collect();
        let alias = match foreign.as_slice() {
            [] => None,
            [one] if guest_schemes.is_disjoint(&map_schemes) && map_schemes.len() == 1 => {
                Some(*one)
            }
            _ => {
                let names: Vec<&String> = live
                    .iter()
                    .filter(|r| parse_kernel_name(r).is_some_and(|(s, _, _)| foreign.contains(&s)))
                    .collect();
                b.warn(
                    codes::STORAGE_AMBIGUOUS_NAMES,
                    format!(
                        "the guest's files name devices in more than one naming scheme ({}); \
                         these cannot be tied to replica disks by position and are left as they are",
                        join(names.iter().map(|s| s.as_str()))
                    ),
                );
                None
            }
        };

        // by-id / by-path links tied to disks.
        let mut ties: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for (i, d) in disks.iter().enumerate() {
            if is_hw_link(&d.source_device) {
                ties.entry(d.source_device.clone()).or_default().insert(i);
            }
        }
        for (spec, mount, fstype) in &fstab {
            let Some((stem, n)) = link_partition(spec) else {
                continue;
            };
            let hits: Vec<usize> = disks
                .iter()
                .enumerate()
                .filter(|(_, d)| {
                    d.partitions.iter().any(|p| {
                        p.number == n
                            && (p.mount_point.as_deref() == Some(mount.as_str())
                                || (fstype == "swap" && p.fs_type.as_deref() == Some("swap")))
                    })
                })
                .map(|(i, _)| i)
                .collect();
            if let [one] = hits.as_slice() {
                ties.entry(stem.to_string()).or_default().insert(*one);
            }
        }
        let boot = disks.iter().position(|d| d.boot);
        for (drive, path) in &device_map {
            if drive == "(hd0)"
                && is_hw_link(path)
                && let Some(i) = boot
            {
                ties.entry(path.clone()).or_default().insert(i);
            }
        }
        let mut stems: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (stem, set) in &ties {
            if let [one] = set.iter().copied().collect::<Vec<_>>().as_slice() {
                stems.entry(*one).or_default().push(stem.clone());
            } else {
                b.warn(
                    codes::STORAGE_UNMAPPED_LINK,
                    format!("{stem} seems to name more than one replica disk; left as it is"),
                );
            }
        }

        // PARTUUIDs tied to the replica partition that mounts where they do
        // (replica-disk-map.json has no PARTUUIDs; offline nothing else
        // can tie them).
        let mut partuuid_refs: Vec<(String, &str, bool)> = fstab
            .iter()
            .filter_map(|(spec, mount, fstype)| {
                partuuid_of(spec).map(|p| (p, mount.as_str(), fstype == "swap"))
            })
            .collect();
        partuuid_refs.extend(root_parts.iter().map(|p| (p.clone(), "/", false)));
        let mut partuuid_ties: BTreeMap<String, BTreeSet<(usize, u32)>> = BTreeMap::new();
        for (p, mount, swap) in partuuid_refs {
            let hits: Vec<(usize, u32)> = disks
                .iter()
                .enumerate()
                .flat_map(|(i, d)| d.partitions.iter().map(move |q| (i, q)))
                .filter(|(_, q)| {
                    q.mount_point.as_deref() == Some(mount)
                        || (swap && q.fs_type.as_deref() == Some("swap"))
                })
                .map(|(i, q)| (i, q.number))
                .collect();
            if let [one] = hits.as_slice() {
                partuuid_ties.entry(p).or_default().insert(*one);
            }
        }
        // A PARTUUID that seems to name two partitions names neither.
        partuuid_ties.retain(|_, set| set.len() == 1);

        let predicted = predict_device_names(inputs);

        // Partitions referenced by the guest on replica disks but not in the map.
        let mut extra: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
        for r in &refs {
            if let Some((s, pos, Some(n))) = parse_kernel_name(r) {
                for (i, d) in disks.iter().enumerate() {
                    let ds = parse_kernel_name(&d.source_device);
                    let hit = ds.is_some_and(|(ds, dp, dn)| {
                        dn.is_none() && dp == pos && (ds == s || Some(s) == alias)
                    });
                    if hit && !d.partitions.iter().any(|p| p.number == n) {
                        extra.entry(i).or_default().insert(n);
                    }
                }
            }
            if let Some((stem, n)) = link_partition(r)
                && let Some((&i, _)) = stems.iter().find(|(_, v)| v.iter().any(|s| s == stem))
                && let Some(d) = disks.get(i)
                && !d.partitions.iter().any(|p| p.number == n)
            {
                extra.entry(i).or_default().insert(n);
            }
        }
        for p in probed {
            if let (Some(n), Some(d)) = (p.partition, disks.get(p.disk_index))
                && !d.partitions.iter().any(|q| q.number == n)
            {
                extra.entry(p.disk_index).or_default().insert(n);
            }
        }

        for (i, d) in disks.iter().enumerate() {
            let parsed = parse_kernel_name(&d.source_device);
            let mut disk_names = vec![d.source_device.clone()];
            if let (Some(s), Some((_, pos, None))) = (alias, parsed) {
                disk_names.push(s.disk(pos));
            }
            disk_names.extend(stems.get(&i).cloned().unwrap_or_default());

            let listed = d.partitions.iter().map(|p| (p.number, Some(p)));
            let unlisted = extra
                .get(&i)
                .into_iter()
                .flatten()
                .map(|n| (*n, None::<&PartitionInfo>));
            for (n, info) in listed.chain(unlisted) {
                let probe = probed
                    .iter()
                    .find(|p| p.disk_index == i && p.partition == Some(n));
                let device = probe
                    .and_then(|p| p.target_device.clone())
                    .or_else(|| predicted.get(&i).map(|disk| partition_name(disk, n)));
                let mut sources: Vec<String> =
                    disk_names.iter().map(|dn| partition_name(dn, n)).collect();
                if let Some(sd) = info.and_then(|p| p.source_device.clone()) {
                    sources.insert(0, sd);
                }
                let label = info.and_then(|p| p.label.as_deref());
                let used = sources.iter().any(|s| uses.contains(s))
                    || label.is_some_and(|l| uses.contains(&format!("LABEL={l}")));
                let target = b.target_for(&d.source_device, n, info, probe, device, used);
                b.add(&sources, info, &target);
                for (p, _) in partuuid_ties
                    .iter()
                    .filter(|(_, set)| set.contains(&(i, n)))
                {
                    b.add_partuuid(p, info, &target);
                }
            }

            // The whole disk (a file system or swap without partitions).
            let probe = probed
                .iter()
                .find(|p| p.disk_index == i && p.partition.is_none() && !p.is_assembled());
            let device = probe
                .and_then(|p| p.target_device.clone())
                .or_else(|| predicted.get(&i).cloned());
            let target = TargetId {
                uuid: probe.and_then(|p| p.uuid.clone()),
                device,
                label: probe.and_then(|p| p.label.clone()),
                partuuid: None,
                member: is_member_type(probe.and_then(|p| p.fs_type.as_deref())),
            };
            // The guest names the whole disk (a file system or swap without
            // partitions) and nothing but its predicted kernel name is known.
            if target.uuid.is_none()
                && probe.is_none()
                && let Some(dev) = &target.device
                && let Some(used) = disk_names.iter().find(|n| uses.contains(*n))
            {
                b.warn(
                    codes::STORAGE_NO_TARGET_IDENTITY,
                    format!(
                        "{used} (replica disk {}) is used without partitions and no UUID is known \
                         for it (not probed, no targetUuid): references become {dev}, the name \
                         it is expected to get on the target, which depends on the disk order; \
                         check /etc/fstab after the first boot",
                        d.source_device
                    ),
                );
            }
            b.add(&disk_names, None, &target);
        }

        // File systems on volumes assembled from the replicas (LVs, md
        // arrays) are replicas too: their tags stay as they are.
        for p in probed.iter().filter(|p| p.is_assembled()) {
            if is_member_type(p.fs_type.as_deref()) {
                continue;
            }
            let mut keys = Vec::new();
            if let Some(u) = &p.uuid {
                keys.push(format!("UUID={u}"));
                keys.push(format!("/dev/disk/by-uuid/{u}"));
            }
            if let Some(l) = &p.label {
                keys.push(format!("LABEL={l}"));
                keys.push(format!("/dev/disk/by-label/{}", udev_escape(l)));
            }
            for k in keys {
                b.target_keys.push((k.clone(), k));
            }
        }

        // Links the guest uses that could not be tied to a replica.
        for r in &refs {
            if is_hw_link(r) && !b.map.is_known(r) {
                b.warn(
                    codes::STORAGE_UNMAPPED_LINK,
                    format!(
                        "{r} cannot be tied to a replica disk (its target is unknowable offline); \
                         left as it is"
                    ),
                );
            }
        }

        // Target forms map to themselves, unless a source already uses the key.
        for (k, v) in std::mem::take(&mut b.target_keys) {
            let c = canonical(&k);
            // In keep mode a source's by-uuid link becomes the target's
            // by-uuid link: that link stays (a rerun must not make it
            // `UUID=`).
            if c.starts_with("/dev/disk/by-uuid/")
                && !b.map.map.contains_key(&c)
                && !b.map.names.contains_key(&c)
            {
                b.map.names.insert(c.clone(), k.clone());
            }
            b.map.map.entry(c).or_insert(v);
        }
        (b.map, b.warnings)
    }
}

fn join<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// A `/dev/disk/by-id/` or `/dev/disk/by-path/` link.
fn is_hw_link(r: &str) -> bool {
    r.starts_with("/dev/disk/by-id/") || r.starts_with("/dev/disk/by-path/")
}

/// `/dev/disk/by-id/X-part3` → (`/dev/disk/by-id/X`, 3).
fn link_partition(r: &str) -> Option<(&str, u32)> {
    if !is_hw_link(r) {
        return None;
    }
    let (stem, n) = r.rsplit_once("-part")?;
    Some((stem, u32::try_from(digits(n)?).ok()?))
}

/// The target kernel names of the replica disks, where predictable.
fn predict_device_names(inputs: &Inputs) -> BTreeMap<usize, String> {
    let disks = &inputs.disks.disks;
    let mut out = BTreeMap::new();
    let kinds: HashSet<ControllerKind> = disks
        .iter()
        .filter(|d| d.target.controller.kind != ControllerKind::Nvme)
        .map(|d| d.target.controller.kind)
        .collect();
    let mut sd: Vec<(usize, (u8, u32))> = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let c = d.target.controller;
        match c.kind {
            ControllerKind::Nvme => {
                out.insert(i, format!("/dev/nvme{}n{}", c.index, d.target.unit + 1));
            }
            _ => sd.push((i, (c.index, d.target.unit))),
        }
    }
    if kinds.len() != 1 {
        return out;
    }
    sd.sort_by_key(|(_, a)| *a);
    let scsi = kinds.contains(&ControllerKind::Scsi);
    for (pos, (i, (ctrl, unit))) in sd.into_iter().enumerate() {
        // The fixup disk at scsi0:15 may still be attached: names after it
        // are not predictable.
        if scsi && (ctrl > 0 || unit > 15) {
            break;
        }
        out.insert(i, Scheme::Sd.disk(pos));
    }
    out
}

struct Builder {
    map: IdentityMap,
    warnings: Vec<Warning>,
    /// Target references, added as identities at the end.
    target_keys: Vec<(String, String)>,
}

impl Builder {
    fn warn(&mut self, code: &str, msg: String) {
        if !self.warnings.iter().any(|w| w.message == msg) {
            self.warnings.push(Warning::new(code, msg));
        }
    }

    fn target_for(
        &mut self,
        disk: &str,
        n: u32,
        info: Option<&PartitionInfo>,
        probe: Option<&ProbedFs>,
        device: Option<String>,
        // Whether the guest's files name it (else no warning is worth it).
        used: bool,
    ) -> TargetId {
        let what = format!("partition {n} of {disk}");
        let fs_type = probe
            .and_then(|p| p.fs_type.as_deref())
            .or_else(|| info.and_then(|p| p.fs_type.as_deref()));
        let member = is_member_type(fs_type);
        let probed_uuid = probe.and_then(|p| p.uuid.clone());
        let target_uuid = info.and_then(|p| p.target_uuid.clone());
        let source_uuid = info.and_then(|p| p.source_uuid.clone());
        let uuid = match (&probed_uuid, &target_uuid) {
            (Some(p), Some(t)) => {
                if !p.eq_ignore_ascii_case(t) {
                    self.warn(
                        codes::STORAGE_UUID_MISMATCH,
                        format!(
                            "{what}: the probe found UUID {p}, replica-disk-map.json says \
                             targetUuid {t}; using the probed UUID"
                        ),
                    );
                }
                Some(p.clone())
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(t)) => Some(t.clone()),
            (None, None) => {
                if let Some(s) = &source_uuid
                    && !member
                {
                    self.warn(
                        codes::STORAGE_TARGET_UUID_ASSUMED,
                        format!(
                            "{what}: no probed UUID and no targetUuid; assuming the source UUID \
                             {s} (a block-level copy keeps it)"
                        ),
                    );
                }
                source_uuid.clone()
            }
        };
        if uuid.is_none()
            && probe.is_none()
            && info.is_some()
            && !member
            && used
            && let Some(dev) = &device
        {
            self.warn(
                codes::STORAGE_NO_TARGET_IDENTITY,
                format!(
                    "{what}: no UUID is known (not probed, no targetUuid, no sourceUuid); \
                     references become {dev}, the name it is expected to get on the target, \
                     which depends on the disk order"
                ),
            );
        }
        if uuid.is_none() && device.is_none() && info.is_some() && !member && used {
            self.warn(
                codes::STORAGE_NO_TARGET_IDENTITY,
                format!(
                    "{what}: neither a UUID nor a target device name is known; references to it \
                     are left as they are"
                ),
            );
        }
        TargetId {
            uuid,
            device,
            label: probe
                .and_then(|p| p.label.clone())
                .or_else(|| info.and_then(|p| p.label.clone())),
            partuuid: probe.and_then(|p| p.partuuid.clone()),
            member,
        }
    }

    /// Maps the source PARTUUID `p`, tied to a replica partition by what it
    /// mounts, to the partition's target. The probe's PARTUUID is the
    /// target's. Offline, a file system whose target UUID is its source UUID
    /// was copied at block level with its partition table: the PARTUUID
    /// still names it and stays as it is. Otherwise the partition table was
    /// re-created: the PARTUUID becomes the file system's `UUID=`.
    fn add_partuuid(&mut self, p: &str, info: Option<&PartitionInfo>, target: &TargetId) {
        if target
            .partuuid
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(p))
        {
            return;
        }
        let source_uuid = info.and_then(|i| i.source_uuid.as_deref());
        let block_copy = target.partuuid.is_none()
            && match (target.uuid.as_deref(), source_uuid) {
                (Some(t), Some(s)) => t.eq_ignore_ascii_case(s),
                (Some(_), None) => false,
                (None, _) => true,
            };
        let keys = [
            format!("PARTUUID={p}"),
            format!("/dev/disk/by-partuuid/{p}"),
        ];
        if block_copy {
            self.map.insert_partuuid(p, p);
            for k in keys {
                self.map.insert(&k, &k);
                self.map.insert_device_name(&k, &k);
            }
            return;
        }
        if let Some(t) = &target.partuuid {
            self.map.insert_partuuid(p, t);
        }
        let Some(uuid_form) = target.uuid_form() else {
            return;
        };
        for k in keys {
            self.map.insert(&k, &uuid_form);
            self.map.insert_device_name(&k, &uuid_form);
        }
    }

    /// Maps every source name of one block device (and its source tags) to
    /// `target`.
    fn add(&mut self, names: &[String], info: Option<&PartitionInfo>, target: &TargetId) {
        let Some(uuid_form) = target.uuid_form() else {
            return;
        };
        let name_form = target.device.clone().unwrap_or_else(|| uuid_form.clone());
        for n in names {
            self.map.insert(n, &uuid_form);
            if n.starts_with("/dev/disk/") {
                continue;
            }
            self.map.insert_device_name(n, &name_form);
        }
        let mut tags: Vec<(String, Option<String>)> = Vec::new();
        if let Some(info) = info {
            if let Some(u) = &info.source_uuid
                && !target.member
            {
                let by = target
                    .uuid
                    .as_ref()
                    .map(|t| format!("/dev/disk/by-uuid/{t}"));
                tags.push((format!("UUID={u}"), None));
                tags.push((format!("/dev/disk/by-uuid/{u}"), by));
            }
            if let Some(l) = &info.label {
                let same = target.label.as_deref() == Some(l.as_str());
                let by = same.then(|| format!("/dev/disk/by-label/{}", udev_escape(l)));
                tags.push((format!("LABEL={l}"), same.then(|| format!("LABEL={l}"))));
                tags.push((format!("/dev/disk/by-label/{}", udev_escape(l)), by));
            }
        }
        if let Some(p) = &target.partuuid {
            let p = p.clone();
            self.map.insert_partuuid(&p, &p);
            tags.push((format!("PARTUUID={p}"), Some(format!("PARTUUID={p}"))));
            tags.push((
                format!("/dev/disk/by-partuuid/{p}"),
                Some(format!("/dev/disk/by-partuuid/{p}")),
            ));
        }
        for (source, keep_form) in tags {
            self.map.insert(&source, &uuid_form);
            self.map
                .insert_device_name(&source, keep_form.as_deref().unwrap_or(&uuid_form));
        }
        // The target's own forms are replicas too (idempotence).
        self.target_keys
            .push((uuid_form.clone(), uuid_form.clone()));
        if let Some(u) = &target.uuid
            && !target.member
        {
            self.target_keys
                .push((format!("/dev/disk/by-uuid/{u}"), uuid_form.clone()));
        }
        if let Some(d) = &target.device {
            self.target_keys.push((d.clone(), uuid_form.clone()));
            // In keep mode the target name stays.
            let c = canonical(d);
            if !self.map.names.contains_key(&c) && !self.map.map.contains_key(&c) {
                self.map.names.insert(c, d.clone());
            }
        }
        if let Some(l) = &target.label
            && !target.member
        {
            self.target_keys
                .push((format!("LABEL={l}"), uuid_form.clone()));
        }
    }
}

/// Inputs for tests: `disks` is the `disks` array of replica-disk-map.json,
/// `mode` the `fstabIdentifiers` option.
#[cfg(test)]
pub(crate) fn test_inputs(disks: &str, mode: &str) -> Inputs {
    let system = format!(
        r#"{{"version":1,"migrationId":"t","source":{{"arch":"x86_64","firmware":"bios"}},
        "target":{{"firmware":"bios","storageController":"pvscsi","nicModel":"vmxnet3"}},
        "options":{{"fstabIdentifiers":"{mode}"}}}}"#
    );
    let disks = format!(r#"{{"version":1,"disks":{disks}}}"#);
    let nics = r#"{"version":1,"interfaces":[]}"#;
    match crate::protocol::config::validate_inputs(
        system.as_bytes(),
        disks.as_bytes(),
        nics.as_bytes(),
    ) {
        Ok((inputs, _)) => inputs,
        Err((errors, _)) => panic!("bad test inputs: {errors:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::MemFiles;

    #[test]
    fn rewrites_known_references_only() {
        let m = IdentityMap::from_pairs(&[("/dev/sda1", "UUID=abc"), ("UUID=abc", "UUID=abc")]);
        assert_eq!(m.rewrite("/dev/sda1").as_deref(), Some("UUID=abc"));
        assert_eq!(m.rewrite("UUID=abc"), None);
        assert_eq!(m.rewrite("UUID=\"ABC\""), None);
        assert_eq!(m.rewrite("/dev/sdb1"), None);
        assert_eq!(m.pairs().count(), 2);
    }

    #[test]
    fn classifies_references() {
        let table = [
            ("/dev/sda1", RefKind::KernelName),
            ("/dev/sdaa12", RefKind::KernelName),
            ("/dev/hdb", RefKind::KernelName),
            ("/dev/xvda1", RefKind::KernelName),
            ("/dev/nvme0n1p1", RefKind::KernelName),
            ("/dev/cciss/c0d0p1", RefKind::KernelName),
            ("/dev/sr0", RefKind::KernelName),
            ("UUID=0b6c", RefKind::Tag),
            ("LABEL=cloudimg-rootfs", RefKind::Tag),
            ("PARTUUID=1234-01", RefKind::Tag),
            ("/dev/disk/by-id/ata-X-part1", RefKind::DiskLink),
            ("/dev/disk/by-uuid/0b6c", RefKind::DiskLink),
            ("/dev/mapper/rhel-root", RefKind::Stable),
            ("/dev/rhel/root", RefKind::Stable),
            ("/dev/md0", RefKind::Stable),
            ("/dev/md/data", RefKind::Stable),
            ("tmpfs", RefKind::Other),
            ("server:/export", RefKind::Other),
            ("/srv/image.iso", RefKind::Other),
            ("/dev/zram0", RefKind::Other),
        ];
        for (r, k) in table {
            assert_eq!(classify(r), k, "{r}");
        }
    }

    #[test]
    fn parses_and_names_kernel_devices() {
        let table = [
            ("/dev/sda1", Some((Scheme::Sd, 0, Some(1)))),
            ("/dev/sdab", Some((Scheme::Sd, 27, None))),
            ("/dev/xvdb2", Some((Scheme::Xvd, 1, Some(2)))),
            ("/dev/nvme1n1p3", Some((Scheme::Nvme, 1, Some(3)))),
            ("/dev/nvme0n2p1", None),
            ("/dev/cciss/c0d1p2", Some((Scheme::Cciss, 1, Some(2)))),
            ("/dev/sd", None),
            ("/dev/sda1x", None),
        ];
        for (name, want) in table {
            assert_eq!(parse_kernel_name(name), want, "{name}");
        }
        assert_eq!(letters(0), "a");
        assert_eq!(letters(25), "z");
        assert_eq!(letters(26), "aa");
        assert_eq!(letters_index("aa"), Some(26));
        assert_eq!(partition_name("/dev/nvme0n1", 2), "/dev/nvme0n1p2");
        assert_eq!(partition_name("/dev/cciss/c0d0", 1), "/dev/cciss/c0d0p1");
        assert_eq!(partition_name("/dev/vdb", 1), "/dev/vdb1");
        assert_eq!(unescape_octal("LABEL=My\\040Data"), "LABEL=My Data");
        assert_eq!(udev_escape("My Data"), "My\\x20Data");
    }

    const U1: &str = "0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f";
    const U2: &str = "5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40";

    fn one_disk(dev: &str, parts: &str) -> String {
        format!(
            r#"[{{"sourceDevice":"{dev}","target":{{"controller":"scsi0","unit":0}},"boot":true,
            "partitions":[{parts}]}}]"#
        )
    }

    struct Case {
        name: &'static str,
        disks: String,
        probed: Vec<ProbedFs>,
        files: MemFiles,
        /// (reference, uuid-mode target, keep-mode target)
        expect: Vec<(&'static str, Option<String>, Option<String>)>,
        warnings: Vec<&'static str>,
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    #[test]
    fn builds_the_map() {
        let u1 = format!("UUID={U1}");
        let u2 = format!("UUID={U2}");
        let cases = vec![
            Case {
                name: "rhel7 offline, block copy",
                disks: one_disk(
                    "/dev/sda",
                    &format!(
                        r#"{{"number":1,"sourceDevice":"/dev/sda1","fsType":"xfs","sourceUuid":"{U1}","mountPoint":"/boot"}},
                        {{"number":2,"sourceDevice":"/dev/sda2","fsType":"LVM2_member","sourceUuid":"Xq3L-bD2u"}}"#
                    ),
                ),
                probed: vec![],
                files: MemFiles::new().with(
                    "/etc/fstab",
                    &format!("/dev/mapper/rhel-root / xfs defaults 0 0\nUUID={U1} /boot xfs defaults 0 0\n"),
                ),
                expect: vec![
                    ("/dev/sda1", Some(u1.clone()), None),
                    (Box::leak(format!("UUID={U1}").into_boxed_str()), None, None),
                    (Box::leak(format!("/dev/disk/by-uuid/{U1}").into_boxed_str()), Some(u1.clone()), None),
                    ("/dev/sda2", None, None),
                    ("UUID=Xq3L-bD2u", None, None),
                    ("/dev/mapper/rhel-root", None, None),
                    ("/dev/vda1", None, None),
                ],
                warnings: vec![codes::STORAGE_TARGET_UUID_ASSUMED],
            },
            Case {
                name: "probe wins over targetUuid, label and partuuid",
                disks: one_disk(
                    "/dev/sda",
                    &format!(
                        r#"{{"number":1,"sourceDevice":"/dev/sda1","fsType":"ext4","sourceUuid":"{U1}","targetUuid":"{U1}","label":"root","mountPoint":"/"}}"#
                    ),
                ),
                probed: vec![ProbedFs {
                    disk_index: 0,
                    partition: Some(1),
                    target_device: s("/dev/sdb1"),
                    fs_type: s("ext4"),
                    uuid: s(U2),
                    partuuid: s("abcd-01"),
                    label: s("root"),
                }],
                files: MemFiles::new(),
                expect: vec![
                    ("/dev/sda1", Some(u2.clone()), s("/dev/sdb1")),
                    (Box::leak(format!("UUID={U1}").into_boxed_str()), Some(u2.clone()), Some(u2.clone())),
                    ("LABEL=root", Some(u2.clone()), None),
                    ("/dev/disk/by-label/root", Some(u2.clone()), None),
                    ("PARTUUID=ABCD-01", Some(u2.clone()), None),
                    ("/dev/sdb1", Some(u2.clone()), None),
                ],
                warnings: vec![codes::STORAGE_UUID_MISMATCH],
            },
            Case {
                name: "xen guest names the disk xvda",
                disks: one_disk(
                    "/dev/sda",
                    &format!(r#"{{"number":1,"fsType":"ext4","sourceUuid":"{U1}","mountPoint":"/"}}"#),
                ),
                probed: vec![],
                files: MemFiles::new().with("/etc/fstab", "/dev/xvda1 / ext4 defaults 1 1\n/dev/xvda2 none swap sw 0 0\n"),
                expect: vec![
                    ("/dev/xvda1", Some(u1.clone()), s("/dev/sda1")),
                    ("/dev/sda1", Some(u1.clone()), None),
                    ("/dev/xvda2", s("/dev/sda2"), s("/dev/sda2")),
                    ("/dev/vda1", None, None),
                ],
                warnings: vec![codes::STORAGE_TARGET_UUID_ASSUMED],
            },
            Case {
                name: "two schemes in the guest: no alias",
                disks: one_disk(
                    "/dev/sda",
                    &format!(r#"{{"number":1,"fsType":"ext4","sourceUuid":"{U1}","targetUuid":"{U1}"}}"#),
                ),
                probed: vec![],
                files: MemFiles::new().with("/etc/fstab", "/dev/sda1 / ext4 defaults 1 1\n/dev/vdb1 /data ext4 defaults 1 2\n"),
                expect: vec![("/dev/sda1", Some(u1.clone()), None), ("/dev/vdb1", None, None), ("/dev/vda1", None, None)],
                warnings: vec![codes::STORAGE_AMBIGUOUS_NAMES],
            },
            Case {
                name: "aws nvme and cloudimg label",
                disks: one_disk(
                    "/dev/nvme0n1",
                    &format!(r#"{{"number":1,"fsType":"ext4","sourceUuid":"{U1}","targetUuid":"{U1}","label":"cloudimg-rootfs"}}"#),
                ),
                probed: vec![],
                files: MemFiles::new().with("/etc/fstab", "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n"),
                expect: vec![
                    ("/dev/nvme0n1p1", Some(u1.clone()), s("/dev/sda1")),
                    ("LABEL=cloudimg-rootfs", Some(u1.clone()), None),
                ],
                warnings: vec![],
            },
            Case {
                name: "cciss",
                disks: one_disk(
                    "/dev/cciss/c0d0",
                    &format!(r#"{{"number":2,"sourceDevice":"/dev/cciss/c0d0p2","fsType":"ext3","sourceUuid":"{U1}","targetUuid":"{U2}"}}"#),
                ),
                probed: vec![],
                files: MemFiles::new(),
                expect: vec![("/dev/cciss/c0d0p2", Some(u2.clone()), s("/dev/sda2")), (Box::leak(format!("UUID={U1}").into_boxed_str()), Some(u2.clone()), Some(u2.clone()))],
                warnings: vec![],
            },
            Case {
                name: "sles by-id tied by mount point",
                disks: one_disk(
                    "/dev/sda",
                    &format!(
                        r#"{{"number":1,"fsType":"swap","sourceUuid":"{U2}","targetUuid":"{U2}"}},
                        {{"number":2,"fsType":"btrfs","sourceUuid":"{U1}","targetUuid":"{U1}","mountPoint":"/"}}"#
                    ),
                ),
                probed: vec![],
                files: MemFiles::new().with(
                    "/etc/fstab",
                    "/dev/disk/by-id/ata-VBOX_HARDDISK_VB1-part2 / btrfs defaults 0 0\n\
                     /dev/disk/by-id/ata-VBOX_HARDDISK_VB1-part1 swap swap defaults 0 0\n\
                     /dev/disk/by-id/scsi-SAN_LUN9-part1 /srv xfs defaults 0 0\n",
                ),
                expect: vec![
                    ("/dev/disk/by-id/ata-VBOX_HARDDISK_VB1-part2", Some(u1.clone()), Some(u1.clone())),
                    ("/dev/disk/by-id/ata-VBOX_HARDDISK_VB1-part1", Some(u2.clone()), Some(u2.clone())),
                    ("/dev/disk/by-id/scsi-SAN_LUN9-part1", None, None),
                ],
                warnings: vec![codes::STORAGE_UNMAPPED_LINK],
            },
            Case {
                name: "whole-disk file system from the probe",
                disks: r#"[{"sourceDevice":"/dev/vdb","target":{"controller":"scsi1","unit":0},"boot":false,"partitions":[]}]"#.to_string(),
                probed: vec![ProbedFs { disk_index: 0, partition: None, target_device: s("/dev/sdc"), fs_type: s("xfs"), uuid: s(U2), ..ProbedFs::default() }],
                files: MemFiles::new(),
                expect: vec![("/dev/vdb", Some(u2.clone()), s("/dev/sdc"))],
                warnings: vec![],
            },
            Case {
                name: "whole-disk file system offline: the predicted name, with a warning",
                disks: r#"[{"sourceDevice":"/dev/xvda","target":{"controller":"scsi0","unit":0},"boot":true,"partitions":[{"number":1,"fsType":"ext4","sourceUuid":"11111111-2222-3333-4444-555555555555","mountPoint":"/"}]},
                           {"sourceDevice":"/dev/xvdb","target":{"controller":"scsi0","unit":1},"boot":false,"partitions":[]}]"#.to_string(),
                probed: vec![],
                files: MemFiles::new().with("/etc/fstab", "/dev/xvdb /data ext4 defaults 0 2\n"),
                expect: vec![("/dev/xvdb", s("/dev/sdb"), s("/dev/sdb"))],
                warnings: vec![codes::STORAGE_TARGET_UUID_ASSUMED, codes::STORAGE_NO_TARGET_IDENTITY],
            },
            Case {
                name: "whole disk not used by the guest: no warning",
                disks: r#"[{"sourceDevice":"/dev/xvdb","target":{"controller":"scsi0","unit":1},"boot":false,"partitions":[]}]"#.to_string(),
                probed: vec![],
                files: MemFiles::new(),
                expect: vec![],
                warnings: vec![],
            },
        ];
        for c in cases {
            let inputs = test_inputs(&c.disks, "uuid");
            let (m, w) = IdentityMap::build(&inputs, &c.probed, &c.files);
            for (r, uuid, keep) in &c.expect {
                assert_eq!(&m.rewrite(r), uuid, "{}: rewrite {r}\n{m:#?}", c.name);
                assert_eq!(
                    &m.rewrite_device_name(r),
                    keep,
                    "{}: keep {r}\n{m:#?}",
                    c.name
                );
            }
            let codes: BTreeSet<&str> = w.iter().map(|w| w.code.as_str()).collect();
            let want: BTreeSet<&str> = c.warnings.iter().copied().collect();
            assert_eq!(codes, want, "{}: {w:?}", c.name);
        }
    }

    #[test]
    fn assembled_volumes_are_replicas_but_not_the_disk() {
        let inputs = test_inputs(
            &one_disk(
                "/dev/sda",
                &format!(
                    r#"{{"number":1,"sourceDevice":"/dev/sda1","fsType":"xfs","sourceUuid":"{U1}","mountPoint":"/boot"}},
                       {{"number":2,"sourceDevice":"/dev/sda2","fsType":"LVM2_member"}}"#
                ),
            ),
            "uuid",
        );
        let lv_uuid = "0b6c9a3e-5a8d-4c0e-9f11-7d2f3c4b5a6e";
        let probed = vec![
            ProbedFs {
                disk_index: 0,
                partition: Some(2),
                target_device: s("/dev/sdb2"),
                fs_type: s("LVM2_member"),
                uuid: s("Xq3LbD-2uAa-bbbb-cccc-dddd-eeee-ffffff"),
                ..ProbedFs::default()
            },
            ProbedFs {
                disk_index: 0,
                partition: None,
                target_device: s("/dev/mapper/rhel-home"),
                fs_type: s("xfs"),
                uuid: s(lv_uuid),
                label: s("home"),
                ..ProbedFs::default()
            },
        ];
        assert!(probed[1].is_assembled());
        assert!(!probed[0].is_assembled());
        let files = MemFiles::new().with(
            "/etc/fstab",
            &format!(
                "/dev/mapper/rhel-root / xfs defaults 0 0\nUUID={lv_uuid} /home xfs defaults 0 0\n"
            ),
        );
        let (m, _) = IdentityMap::build(&inputs, &probed, &files);
        // The LV's file system is known (no nofail) and stays as it is.
        for r in [
            format!("UUID={lv_uuid}"),
            format!("UUID={}", lv_uuid.to_uppercase()),
            format!("/dev/disk/by-uuid/{lv_uuid}"),
            "LABEL=home".to_string(),
        ] {
            assert!(m.is_known(&r), "{r}");
            assert_eq!(m.rewrite(&r), None, "{r}");
        }
        // The whole disk is not the LV.
        assert_ne!(
            m.rewrite("/dev/sda").as_deref(),
            Some(format!("UUID={lv_uuid}").as_str())
        );
    }

    #[test]
    fn device_map_and_comments_do_not_use_the_whole_disk() {
        let disks = one_disk(
            "/dev/vda",
            &format!(
                r#"{{"number":1,"fsType":"ext4","sourceUuid":"{U1}","targetUuid":"{U1}","mountPoint":"/"}}"#
            ),
        );
        let inputs = test_inputs(&disks, "uuid");
        let files = MemFiles::new()
            .with("/etc/fstab", &format!("UUID={U1} / ext4 defaults 1 1\n"))
            .with(
                "/boot/grub/device.map",
                "# this device map was generated by anaconda\n(hd0)     /dev/vda\n",
            )
            .with(
                "/boot/grub/grub.conf",
                "#          kernel /vmlinuz-version ro root=/dev/vda2\n#boot=/dev/vda\n",
            );
        let (m, w) = IdentityMap::build(&inputs, &[], &files);
        assert!(w.is_empty(), "{w:?}");
        // The whole disk still maps (for device.map's own rewrite).
        assert_eq!(
            m.rewrite_device_name("/dev/vda").as_deref(),
            Some("/dev/sda")
        );
        // A real whole-disk use still warns.
        let files = files.with(
            "/etc/default/grub",
            "GRUB_CMDLINE_LINUX=\"resume=/dev/vda\"\n",
        );
        let (_, w) = IdentityMap::build(&inputs, &[], &files);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].code, codes::STORAGE_NO_TARGET_IDENTITY);
    }

    #[test]
    fn partitions_without_identity_warn_only_when_named() {
        // A BIOS boot partition (no file system, no UUID) nothing names.
        let disks = one_disk(
            "/dev/sda",
            &format!(
                r#"{{"number":1,"sourceDevice":"/dev/sda1","fsType":""}},
                {{"number":2,"fsType":"ext4","sourceUuid":"{U1}","targetUuid":"{U1}","mountPoint":"/"}},
                {{"number":3,"sourceDevice":"/dev/sda3"}}"#
            ),
        );
        let inputs = test_inputs(&disks, "uuid");
        let fstab = format!("UUID={U1} / ext4 defaults 1 1\n/dev/sda3 /srv ext4 defaults 0 2\n");
        let files = MemFiles::new().with("/etc/fstab", &fstab);
        let (_, w) = IdentityMap::build(&inputs, &[], &files);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].message.starts_with("partition 3 of /dev/sda"), "{w:?}");
    }

    #[test]
    fn partuuids_are_tied_by_mount_point() {
        const P: &str = "0f6a1d2e-3b4c-4d5e-8f60-718293a4b5c6";
        let root = |target: &str| {
            one_disk(
                "/dev/sda",
                &format!(
                    r#"{{"number":1,"fsType":"swap","sourceUuid":"{U2}","targetUuid":"{U2}"}},
                    {{"number":2,"fsType":"ext4","sourceUuid":"{U1}"{target},"mountPoint":"/"}}"#
                ),
            )
        };
        let fstab = |spec: &str, mount: &str| {
            MemFiles::new().with("/etc/fstab", &format!("{spec} {mount} ext4 defaults 1 1\n"))
        };
        let new_uuid = format!(r#","targetUuid":"{U2}""#);
        let same_uuid = format!(r#","targetUuid":"{U1}""#);
        let probe = |partuuid: &str, uuid: &str| ProbedFs {
            disk_index: 0,
            partition: Some(2),
            target_device: s("/dev/sda2"),
            fs_type: s("ext4"),
            uuid: s(uuid),
            partuuid: s(partuuid),
            label: None,
        };
        let p_upper = format!("PARTUUID={}", P.to_uppercase());
        let by_partuuid = format!("/dev/disk/by-partuuid/{P}");
        let u1 = format!("UUID={U1}");
        let u2 = format!("UUID={U2}");
        // (case, disks, probe, guest files, reference, its rewrite,
        // whether known, the target's PARTUUID)
        type Case<'a> = (
            &'a str,
            String,
            Vec<ProbedFs>,
            MemFiles,
            &'a str,
            Option<&'a str>,
            bool,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "block copy: kept",
                root(&same_uuid),
                vec![],
                fstab(&format!("PARTUUID={P}"), "/"),
                &p_upper,
                None,
                true,
                Some(P),
            ),
            (
                "no targetUuid: a block copy is assumed",
                root(""),
                vec![],
                fstab(&by_partuuid, "/"),
                &by_partuuid,
                None,
                true,
                Some(P),
            ),
            (
                "re-created partition table: the new UUID",
                root(&new_uuid),
                vec![],
                fstab(&format!("PARTUUID={P}"), "/"),
                &p_upper,
                Some(&u2),
                true,
                None,
            ),
            (
                "the probe's PARTUUID is the target's",
                root(&same_uuid),
                vec![probe("7d2c1b0a-02", U1)],
                fstab(&format!("PARTUUID={P}"), "/"),
                &by_partuuid,
                Some(&u1),
                true,
                Some("7d2c1b0a-02"),
            ),
            (
                "GRUB_FORCE_PARTUUID names the root",
                root(&new_uuid),
                vec![],
                MemFiles::new().with(
                    "/etc/default/grub.d/40-force-partuuid.cfg",
                    &format!("# comment\nGRUB_FORCE_PARTUUID={P}\n"),
                ),
                &p_upper,
                Some(&u2),
                true,
                None,
            ),
            (
                "root= on a command line names the root",
                root(&same_uuid),
                vec![],
                MemFiles::new().with(
                    "/etc/default/grub",
                    &format!("GRUB_CMDLINE_LINUX=\"ro root=PARTUUID={P} quiet\"\n"),
                ),
                &p_upper,
                None,
                true,
                Some(P),
            ),
            (
                "a comment ties nothing",
                root(&same_uuid),
                vec![],
                MemFiles::new().with("/etc/default/grub", &format!("#GRUB_FORCE_PARTUUID={P}\n")),
                &p_upper,
                None,
                false,
                None,
            ),
            (
                "the only swap partition",
                root(&same_uuid),
                vec![],
                MemFiles::new().with("/etc/fstab", &format!("PARTUUID={P} none swap sw 0 0\n")),
                &p_upper,
                None,
                true,
                Some(P),
            ),
            (
                "no replica mounts there",
                root(&same_uuid),
                vec![],
                fstab(&format!("PARTUUID={P}"), "/srv"),
                &p_upper,
                None,
                false,
                None,
            ),
        ];
        for (name, disks, probed, files, r, want, known, target) in cases {
            let inputs = test_inputs(&disks, "uuid");
            let (m, _) = IdentityMap::build(&inputs, &probed, &files);
            assert_eq!(m.rewrite(r).as_deref(), want, "{name}: rewrite {r}\n{m:#?}");
            assert_eq!(m.is_known(r), known, "{name}: known {r}");
            assert_eq!(m.target_partuuid(P), target, "{name}: target PARTUUID");
            if let Some(t) = m.rewrite(r) {
                assert_eq!(m.rewrite(&t), None, "{name}: idempotent");
            }
        }
    }

    #[test]
    fn naming_schemes_come_from_settings_not_comments() {
        let disks = one_disk(
            "/dev/cciss/c0d0",
            &format!(
                r#"{{"number":2,"fsType":"ext3","sourceUuid":"{U1}","targetUuid":"{U1}","mountPoint":"/"}}"#
            ),
        );
        let inputs = test_inputs(&disks, "uuid");
        let menu = |kopt: &str, kernel: &str| {
            format!(
                "## default kernel options for automagic boot options\n\
                 ## e.g. kopt=root=/dev/hda1 ro\n\
                 # kopt=root={kopt} ro\n\
                 ## e.g. groot=(hd0,0)\n# groot=(hd0,0)\n\
                 title Debian\nroot (hd0,0)\nkernel /vmlinuz root={kernel} ro\n"
            )
        };
        // (menu.lst, fstab, warning codes, a reference and its rewrite)
        type Case = (
            String,
            &'static str,
            Vec<&'static str>,
            &'static str,
            Option<String>,
        );
        let u1 = format!("UUID={U1}");
        let cases: Vec<Case> = vec![
            // update-grub's documentation names /dev/hda1: not a use.
            (
                menu("/dev/cciss/c0d0p2", "/dev/cciss/c0d0p2"),
                "/dev/cciss/c0d0p2 / ext3 defaults 0 1\n",
                vec![],
                "/dev/cciss/c0d0p2",
                Some(u1.clone()),
            ),
            // `# kopt=` is a setting: a second scheme in use.
            (
                menu("/dev/hda2", "/dev/cciss/c0d0p2"),
                "/dev/cciss/c0d0p2 / ext3 defaults 0 1\n",
                vec![codes::STORAGE_AMBIGUOUS_NAMES],
                "/dev/hda2",
                None,
            ),
            // The guest's settings use one other scheme (`# kopt=` among
            // them): it gets the alias.
            (
                menu("/dev/hda2", "/dev/hda2"),
                "UUID=0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f / ext3 defaults 0 1\n",
                vec![],
                "/dev/hda2",
                Some(u1.clone()),
            ),
        ];
        for (i, (menu, fstab, warnings, r, want)) in cases.into_iter().enumerate() {
            let files = MemFiles::new()
                .with("/boot/grub/menu.lst", &menu)
                .with("/etc/fstab", fstab);
            let (m, w) = IdentityMap::build(&inputs, &[], &files);
            let got: Vec<&str> = w.iter().map(|w| w.code.as_str()).collect();
            assert_eq!(got, warnings, "case {i}: {w:?}");
            assert_eq!(m.rewrite(r), want, "case {i}: {r}");
        }
        assert!(is_update_grub_setting(" kopt=root=/dev/sda1 ro"));
        assert!(is_update_grub_setting("kopt_2_6_32=root=/dev/sda1"));
        assert!(is_update_grub_setting(" groot=(hd0,0)"));
        assert!(!is_update_grub_setting("# e.g. kopt=root=/dev/hda1 ro"));
        assert!(!is_update_grub_setting("boot=/dev/vda"));
        assert!(!is_update_grub_setting(" kopt = not one"));
    }

    #[test]
    fn a_rerun_judges_the_naming_by_the_originals() {
        // Found by the fuzzer: the first run rewrote the only /dev/sd*
        // reference, so a rerun saw one foreign scheme (vd) and aliased it,
        // which the first run had refused as ambiguous.
        use crate::guestwrite::{Action, BACKUP_DIR, Change, MANIFEST, Manifest};
        let inputs = test_inputs(
            &one_disk(
                "/dev/sda",
                &format!(r#"{{"number":4,"fsType":"swap","sourceUuid":"{U2}"}}"#),
            ),
            "uuid",
        );
        let original = "add_device+=\" /dev/sda4 \"\n";
        let resume = ("/etc/initramfs-tools/conf.d/resume", "RESUME=/dev/vda4\n");
        let first = MemFiles::new()
            .with("/etc/dracut.conf", original)
            .with(resume.0, resume.1);
        let (m, w) = IdentityMap::build(&inputs, &[], &first);
        assert_eq!(m.rewrite("/dev/vda4"), None, "{w:?}");
        let after = MemFiles::new()
            .with(
                "/etc/dracut.conf",
                &format!("add_device+=\" /dev/disk/by-uuid/{U2} \"\n"),
            )
            .with(resume.0, resume.1);
        let (m, _) = IdentityMap::build(&inputs, &[], &after);
        assert!(m.rewrite("/dev/vda4").is_some(), "no originals: aliased");
        let manifest = Manifest {
            version: 1,
            runs: Vec::new(),
            changes: vec![Change {
                run: 0,
                step: "fstab".into(),
                path: "/etc/dracut.conf".into(),
                action: Action::Modified,
                backup: Some(format!("{BACKUP_DIR}/etc/dracut.conf")),
                before: None,
                after: None,
            }],
        };
        let rerun = after
            .with(&format!("{BACKUP_DIR}/etc/dracut.conf"), original)
            .with(MANIFEST, &serde_json::to_string(&manifest).unwrap());
        let (m, _) = IdentityMap::build(&inputs, &[], &rerun);
        assert_eq!(m.rewrite("/dev/vda4"), None);
    }

    #[test]
    fn rewrites_are_idempotent() {
        let inputs = test_inputs(
            &one_disk(
                "/dev/vda",
                &format!(
                    r#"{{"number":1,"fsType":"ext4","sourceUuid":"{U1}","targetUuid":"{U2}"}}"#
                ),
            ),
            "uuid",
        );
        let files = MemFiles::new().with("/etc/fstab", "/dev/vda1 / ext4 defaults 0 1\n");
        let (m, _) = IdentityMap::build(&inputs, &[], &files);
        for r in [
            "/dev/vda1",
            "/dev/sda1",
            &format!("UUID={U1}"),
            // Found by the fuzzer: in keep mode by-uuid/U1 became
            // by-uuid/U2, and a rerun made that UUID=U2.
            &format!("/dev/disk/by-uuid/{U1}"),
        ] {
            for mode in [FstabIdentifiers::Uuid, FstabIdentifiers::Keep] {
                let once = m.rewrite_for(r, mode).unwrap_or_else(|| r.to_string());
                assert_eq!(m.rewrite_for(&once, mode), None, "{r} -> {once}");
                assert!(m.is_known(&once));
            }
        }
    }
}
