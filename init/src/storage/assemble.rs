//! Assembling the guest's volumes in the stack, from the replica devices
//! only:
//!
//! - md arrays: `mdadm --assemble --run` of each array by its UUID, with
//!   its member devices named on the command line and `--config=none`
//!   (never `--scan`, which would read the stack's configuration);
//! - LVM: `lvm vgchange -ay <vg>` with a command-line configuration whose
//!   filters accept only the replicas' PVs and that turns off udev, the
//!   devices file and the stack's own filters, so that nothing but the
//!   replicas decides what is seen;
//! - LUKS volumes are not opened: each is reported, and a root that can
//!   only be inside one fails the mount with `storage.luks_unsupported`
//!   (`pid1::sysroot`).
//!
//! There is no udev in the stack: commands run without udev
//! synchronisation or rules, and `/dev/mapper/<name>`, `/dev/<vg>/<lv>`,
//! `/dev/md/<name>` and the `/dev/disk/by-uuid` (`by-label`, `by-id`) links
//! of the new devices are made here where the tools did not make them.
//!
//! Planning (probed devices → argv lists, report lines → volume groups)
//! is pure and unit-tested; [`assemble`] runs the plan through a
//! [`StorageCtx`] (a [`CommandRunner`] underneath), then probes the new
//! block devices found in sysfs (`/sys/block/dm-*`, `md*`) so that the
//! identity map and the root search see them as [`ProbedFs`] entries.
//!
//! Read-only (rescue): md arrays start with `--readonly`; LVM runs with
//! `global/metadata_read_only=1` and activates the LVs of the listed VGs
//! read-only through `activation/read_only_volume_list`. (lvm's own
//! `--readonly` flag does not talk to device-mapper, so it cannot
//! activate; `lvchange -pr` would write the metadata.)
//!
//! Two VGs with the same name are both left inactive and returned in
//! [`Assembly::clashes`] (lvm itself skips such a name: "Multiple VGs
//! found with the same name"): the guest could not tell them apart at boot
//! either (its initramfs activates `rd.lvm.lv=<vg>/<lv>` by name), so the
//! automatic run fails with `storage.vg_name_clash` naming both VGs and
//! their PVs ([`Assembly::clash_error`]); the rescue banner lists them with
//! the command that activates one by UUID.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::StepCtx;
use crate::engine::identity::ProbedFs;
use crate::error::{FixupError, Warning, codes};
use crate::logging;
use crate::runner::{Command, CommandRecord, CommandRunner, VecSink};
use crate::storage::devlinks;
use crate::storage::probe::{FsInfo, probe};

/// The stack's LVM tool (`/sbin/lvm`; `vgchange` and friends are links to
/// it).
pub const LVM: &str = "lvm";
/// The stack's md tool.
pub const MDADM: &str = "mdadm";
/// Limit for report commands (`lvm pvs`, `lvm lvs`).
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit for `mdadm --assemble` and `lvm vgchange -ay` (one array or VG).
pub const ASSEMBLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Limit for `mdadm --stop` and `lvm vgchange -an`.
pub const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where storage assembly and guest mounting report and run commands: the
/// `storage` step (fixup.log and result.json), the rescue console, a test.
pub trait StorageCtx {
    /// A line for the log (fixup.log, or the console in verbose mode).
    fn log(&mut self, msg: &str);
    /// A warning with a stable code.
    fn warn(&mut self, code: &str, msg: String);
    /// Runs a command; returns its record and its output lines.
    fn run(&mut self, cmd: Command) -> (CommandRecord, Vec<String>);
}

impl StorageCtx for StepCtx<'_> {
    fn log(&mut self, msg: &str) {
        self.reporter.log(msg);
    }

    fn warn(&mut self, code: &str, msg: String) {
        StepCtx::warn(self, code, msg);
    }

    fn run(&mut self, cmd: Command) -> (CommandRecord, Vec<String>) {
        self.run_capture(cmd)
    }
}

/// A [`StorageCtx`] that logs through [`logging`] and keeps what it was
/// told: the rescue mode, `fixupctl`, tests.
pub struct LogCtx<'a> {
    pub runner: &'a mut dyn CommandRunner,
    pub log: Vec<String>,
    pub warnings: Vec<Warning>,
    pub commands: Vec<CommandRecord>,
}

impl<'a> LogCtx<'a> {
    pub fn new(runner: &'a mut dyn CommandRunner) -> Self {
        LogCtx {
            runner,
            log: Vec::new(),
            warnings: Vec::new(),
            commands: Vec::new(),
        }
    }
}

impl StorageCtx for LogCtx<'_> {
    fn log(&mut self, msg: &str) {
        logging::debug(msg);
        self.log.push(msg.to_string());
    }

    fn warn(&mut self, code: &str, msg: String) {
        logging::warn(format!("{code}: {msg}"));
        self.warnings.push(Warning::new(code, msg));
    }

    fn run(&mut self, cmd: Command) -> (CommandRecord, Vec<String>) {
        self.log(&format!("running: {}", cmd.display()));
        let mut sink = VecSink::default();
        let rec = self.runner.run(&cmd, &mut sink);
        for l in &sink.lines {
            self.log(&format!("  {l}"));
        }
        if !rec.succeeded() {
            self.log(&rec.describe_failure());
        }
        self.commands.push(rec.clone());
        (rec, sink.lines)
    }
}

/// How to assemble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembleOptions {
    /// Rescue: arrays and LVs read-only, no metadata writes.
    pub read_only: bool,
    /// The sysfs root (`/sys`).
    pub sysfs: PathBuf,
    /// The device root (`/dev`).
    pub dev: PathBuf,
}

impl AssembleOptions {
    pub fn new(read_only: bool) -> Self {
        AssembleOptions {
            read_only,
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// The `fs_type` of a LUKS volume.
pub const LUKS_TYPE: &str = "crypto_LUKS";
/// The `fs_type` of an LVM physical volume.
pub const PV_TYPE: &str = "LVM2_member";
/// The `fs_type` of an md member.
pub const MD_MEMBER_TYPE: &str = "linux_raid_member";

fn device_of(p: &ProbedFs) -> &str {
    p.target_device.as_deref().unwrap_or("?")
}

/// The LUKS volumes among the probed devices.
pub fn luks_volumes(probed: &[ProbedFs]) -> Vec<&ProbedFs> {
    probed
        .iter()
        .filter(|p| p.fs_type.as_deref() == Some(LUKS_TYPE))
        .collect()
}

/// The sentence for a LUKS volume that is skipped.
pub fn luks_skipped_message(p: &ProbedFs) -> String {
    format!(
        "{} is a LUKS encrypted volume{}: encrypted guests are not supported, so it is not opened \
         and nothing inside it is mounted or fixed; if the guest needs it to boot, decrypt it on \
         the source (cryptsetup reencrypt --decrypt) and migrate again",
        device_of(p),
        p.uuid
            .as_deref()
            .map(|u| format!(" (UUID={u})"))
            .unwrap_or_default()
    )
}

/// Device paths that are safe to put into an lvm configuration string or
/// a command line: `/dev/` and then `[A-Za-z0-9/_.:+-]`.
fn plain_device(path: &str) -> bool {
    path.strip_prefix("/dev/").is_some_and(|rest| {
        !rest.is_empty()
            && !rest
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_.:+-".contains(c))
    })
}

/// An LVM VG or LV name that may appear in a path below /dev: lvm's own
/// character set, not `.`/`..`, not starting with `-`.
pub fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
}

/// [`CommandRecord::describe_failure`] with lvm's long `--config` value
/// left out (it is in fixup.log with the command).
pub fn failure(rec: &CommandRecord) -> String {
    let mut r = rec.clone();
    let mut after_config = false;
    for a in &mut r.argv {
        if after_config {
            *a = "<config>".into();
        }
        after_config = a == "--config";
    }
    r.describe_failure()
}

// ---------------------------------------------------------------- md

/// One md array to assemble from replica members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdArray {
    /// The array UUID in mdadm's spelling (`8:8:8:8`).
    pub uuid: String,
    /// The array's name without its `host:` part (md 1.x), when it is
    /// usable as `/dev/md/<name>`.
    pub name: Option<String>,
    /// The member devices, in probe order.
    pub members: Vec<String>,
    /// The replica disk of the first member.
    pub disk_index: usize,
}

/// The md arrays whose members are among the probed devices, grouped by
/// array UUID, in order of their first member.
pub fn md_arrays(probed: &[ProbedFs]) -> Vec<MdArray> {
    let mut out: Vec<MdArray> = Vec::new();
    for p in probed {
        if p.fs_type.as_deref() != Some(MD_MEMBER_TYPE) {
            continue;
        }
        let (Some(uuid), Some(dev)) = (p.uuid.as_deref(), p.target_device.as_deref()) else {
            continue;
        };
        if !plain_device(dev) {
            continue;
        }
        let uuid = uuid.to_ascii_lowercase();
        match out.iter_mut().find(|a| a.uuid == uuid) {
            Some(a) => {
                if !a.members.iter().any(|m| m == dev) {
                    a.members.push(dev.to_string());
                }
            }
            None => out.push(MdArray {
                uuid,
                name: p
                    .label
                    .as_deref()
                    .map(|l| l.rsplit(':').next().unwrap_or(l).to_string())
                    .filter(|n| valid_lvm_name(n)),
                members: vec![dev.to_string()],
                disk_index: p.disk_index,
            }),
        }
    }
    out
}

/// `n` free md numbers, from 127 down (mdadm's range for arrays that are
/// not the host's own), skipping `used`.
pub fn free_md_numbers(used: &BTreeSet<u32>, n: usize) -> Vec<u32> {
    (0..=127u32)
        .rev()
        .filter(|k| !used.contains(k))
        .take(n)
        .collect()
}

/// `mdadm --assemble` of one array into `device`, by UUID, from exactly
/// its members, without reading any mdadm.conf.
pub fn md_assemble_argv(array: &MdArray, device: &str, read_only: bool) -> Vec<String> {
    let mut argv: Vec<String> = vec![MDADM.into(), "--assemble".into(), "--run".into()];
    if read_only {
        argv.push("--readonly".into());
    }
    argv.push("--config=none".into());
    argv.push(device.into());
    argv.push(format!("--uuid={}", array.uuid));
    argv.extend(array.members.iter().cloned());
    argv
}

/// `mdadm --stop` of one array.
pub fn md_stop_argv(device: &str) -> Vec<String> {
    vec![MDADM.into(), "--stop".into(), device.into()]
}

// ---------------------------------------------------------------- LVM

/// `s` as a literal inside an lvm filter regex delimited by `|`.
fn regex_literal(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `--config` string for lvm: only `pvs` are seen; no udev, no
/// devices file, no metadata backups in the stack; thin/cache checks off
/// (their tools are not in the stack). Read-only: no metadata writes, and
/// the LVs of `read_only_vgs` are activated read-only.
pub fn lvm_config(pvs: &[String], read_only: bool, read_only_vgs: &[String]) -> String {
    let accept: Vec<String> = pvs
        .iter()
        .filter(|p| plain_device(p))
        .map(|p| format!("\"a|^{}$|\"", regex_literal(p)))
        .chain(std::iter::once("\"r|.*|\"".to_string()))
        .collect();
    let filter = format!("[{}]", accept.join(","));
    let mut activation = String::from("udev_sync=0 udev_rules=0 monitoring=0");
    let vgs: Vec<String> = read_only_vgs
        .iter()
        .filter(|v| valid_lvm_name(v))
        .map(|v| format!("\"{v}\""))
        .collect();
    if read_only && !vgs.is_empty() {
        activation.push_str(&format!(" read_only_volume_list=[{}]", vgs.join(",")));
    }
    let mut global = String::from("thin_check_executable=\"\" cache_check_executable=\"\"");
    if read_only {
        global.push_str(" metadata_read_only=1");
    }
    format!(
        "devices {{ filter={filter} global_filter={filter} obtain_device_list_from_udev=0 \
         external_device_info_source=\"none\" use_devicesfile=0 }} \
         activation {{ {activation} }} global {{ {global} }} backup {{ backup=0 archive=0 }}"
    )
}

fn report_argv(what: &str, fields: &str, config: &str, read_only: bool) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        LVM.into(),
        what.into(),
        "--noheadings".into(),
        "--separator".into(),
        "|".into(),
        "-o".into(),
        fields.into(),
    ];
    if read_only {
        argv.push("--readonly".into());
    }
    argv.push("--config".into());
    argv.push(config.into());
    argv
}

/// The PV → VG report ([`parse_pvs`] reads it).
pub fn pvs_argv(config: &str, read_only: bool) -> Vec<String> {
    report_argv("pvs", "pv_name,vg_name,vg_uuid", config, read_only)
}

/// The visible LVs report ([`parse_lvs`] reads it).
pub fn lvs_argv(config: &str, read_only: bool) -> Vec<String> {
    report_argv(
        "lvs",
        "vg_uuid,vg_name,lv_name,lv_uuid,devices",
        config,
        read_only,
    )
}

/// `lvm vgchange -ay|-an` of one VG by name, without udev; activation as
/// at system init (no monitoring, no background polling of an interrupted
/// pvmove).
pub fn vgchange_argv(config: &str, vg: &str, activate: bool) -> Vec<String> {
    let mut argv: Vec<String> = vec![LVM.into(), "vgchange".into()];
    if activate {
        argv.push("-ay".into());
        argv.push("--sysinit".into());
    } else {
        argv.push("-an".into());
    }
    argv.push("--noudevsync".into());
    argv.push("--config".into());
    argv.push(config.into());
    argv.push(vg.into());
    argv
}

/// One line of [`pvs_argv`]'s report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvRow {
    pub pv: String,
    pub vg: String,
    pub vg_uuid: String,
}

/// Reads the report lines of [`pvs_argv`]; warnings lvm mixes into its
/// output and PVs in no VG are left out.
pub fn parse_pvs(lines: &[String]) -> Vec<PvRow> {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            let [pv, vg, uuid] = f.as_slice() else {
                return None;
            };
            (pv.starts_with("/dev/") && !vg.is_empty() && !uuid.is_empty()).then(|| PvRow {
                pv: pv.to_string(),
                vg: vg.to_string(),
                vg_uuid: uuid.to_string(),
            })
        })
        .collect()
}

/// One line of [`lvs_argv`]'s report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvRow {
    pub vg_uuid: String,
    pub vg: String,
    pub lv: String,
    pub lv_uuid: String,
    /// The devices its segments are on (`/dev/sdb2`), in order.
    pub devices: Vec<String>,
}

/// Reads the report lines of [`lvs_argv`].
pub fn parse_lvs(lines: &[String]) -> Vec<LvRow> {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            let [vg_uuid, vg, lv, lv_uuid, devices] = f.as_slice() else {
                return None;
            };
            if vg_uuid.is_empty() || vg.is_empty() || lv.is_empty() {
                return None;
            }
            Some(LvRow {
                vg_uuid: vg_uuid.to_string(),
                vg: vg.to_string(),
                lv: lv.to_string(),
                lv_uuid: lv_uuid.to_string(),
                devices: devices
                    .split(',')
                    .map(|d| d.split('(').next().unwrap_or(d).trim().to_string())
                    .filter(|d| !d.is_empty())
                    .collect(),
            })
        })
        .collect()
}

/// An LVM volume group on the replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeGroup {
    pub name: String,
    pub uuid: String,
    pub pvs: Vec<String>,
}

/// The VGs of a PV report, in order of their first PV.
pub fn volume_groups(rows: &[PvRow]) -> Vec<VolumeGroup> {
    let mut out: Vec<VolumeGroup> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|g| g.uuid == r.vg_uuid) {
            Some(g) => {
                if !g.pvs.contains(&r.pv) {
                    g.pvs.push(r.pv.clone());
                }
            }
            None => out.push(VolumeGroup {
                name: r.vg.clone(),
                uuid: r.vg_uuid.clone(),
                pvs: vec![r.pv.clone()],
            }),
        }
    }
    out
}

/// VGs that share a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgClash {
    pub name: String,
    pub groups: Vec<VolumeGroup>,
}

impl VgClash {
    /// Names every VG of the clash with its UUID and PVs.
    pub fn describe(&self) -> String {
        let each: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("UUID {} on {}", g.uuid, g.pvs.join(", ")))
            .collect();
        format!(
            "{} LVM volume groups are named {:?}: {}",
            self.groups.len(),
            self.name,
            each.join("; ")
        )
    }
}

/// Splits VGs into those with a unique name and the clashes.
pub fn split_clashes(groups: Vec<VolumeGroup>) -> (Vec<VolumeGroup>, Vec<VgClash>) {
    let mut unique = Vec::new();
    let mut clashes: Vec<VgClash> = Vec::new();
    for g in &groups {
        let same: Vec<&VolumeGroup> = groups.iter().filter(|o| o.name == g.name).collect();
        if same.len() == 1 {
            unique.push(g.clone());
        } else if !clashes.iter().any(|c| c.name == g.name) {
            clashes.push(VgClash {
                name: g.name.clone(),
                groups: same.into_iter().cloned().collect(),
            });
        }
    }
    (unique, clashes)
}

/// The device-mapper name of an LV: `-` doubled in both names, joined by
/// `-` (`my-vg`/`root` → `my--vg-root`).
pub fn mapper_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

// ---------------------------------------------------------------- sysfs

/// A device-mapper or md block device in sysfs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockNode {
    /// Kernel name: `dm-0`, `md127`.
    pub name: String,
    /// `major:minor`.
    pub dev: Option<String>,
    /// `dm/name`: the mapper name.
    pub dm_name: Option<String>,
    /// `dm/uuid` (`LVM-<vg uuid><lv uuid>` for LVs).
    pub dm_uuid: Option<String>,
    /// Its partitions (kernel name, `major:minor`), in number order.
    pub partitions: Vec<(String, Option<String>)>,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The block devices in `<sysfs>/block` whose names start with `prefix`.
pub fn block_nodes(sysfs: &Path, prefix: &str) -> Vec<BlockNode> {
    let Ok(rd) = fs::read_dir(sysfs.join("block")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let base = sysfs.join("block").join(&name);
            let mut partitions: Vec<(u64, String, Option<String>)> = fs::read_dir(&base)
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| {
                            let n = e.file_name().to_str()?.to_string();
                            let num = read_trim(&base.join(&n).join("partition"))?
                                .parse::<u64>()
                                .ok()?;
                            Some((num, n.clone(), read_trim(&base.join(&n).join("dev"))))
                        })
                        .collect()
                })
                .unwrap_or_default();
            partitions.sort();
            BlockNode {
                dev: read_trim(&base.join("dev")),
                dm_name: read_trim(&base.join("dm/name")),
                dm_uuid: read_trim(&base.join("dm/uuid")),
                partitions: partitions.into_iter().map(|(_, n, d)| (n, d)).collect(),
                name,
            }
        })
        .collect()
}

/// The md numbers in use (`/sys/block/md<N>`).
fn md_in_use(sysfs: &Path) -> BTreeSet<u32> {
    block_nodes(sysfs, "md")
        .iter()
        .filter_map(|n| n.name.strip_prefix("md")?.parse().ok())
        .collect()
}

/// Probes a block device (or an image file) as a whole.
pub fn probe_path(path: &Path) -> Result<Option<FsInfo>, String> {
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let size = f
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    probe(&mut f, 0, size).map_err(|e| e.on(path).to_string())
}

/// Splits a path relative to a device root into plain components.
fn plain_rel(rel: &str) -> Option<Vec<&std::ffi::OsStr>> {
    let parts: Vec<&std::ffi::OsStr> = Path::new(rel)
        .components()
        .map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then_some(parts)
}

/// Makes the block device node `<dev>/<rel>` (`mapper/vg-root`) for
/// `major:minor` unless something is there already. Returns whether it
/// made one.
pub fn ensure_node(dev: &Path, rel: &str, majmin: &str) -> Result<bool, String> {
    let parts = plain_rel(rel).ok_or_else(|| format!("{rel}: not a plain relative path"))?;
    let path = parts.iter().fold(dev.to_path_buf(), |p, c| p.join(c));
    if path.symlink_metadata().is_ok() {
        return Ok(false);
    }
    let (ma, mi) = majmin
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .ok_or_else(|| format!("{majmin}: not major:minor"))?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    nix::sys::stat::mknod(
        &path,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        nix::sys::stat::makedev(ma, mi),
    )
    .map_err(|e| format!("mknod {}: {e}", path.display()))?;
    Ok(true)
}

// ---------------------------------------------------------------- run

/// What kind of volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum VolumeKind {
    /// An LVM logical volume.
    Lv { vg: String, lv: String },
    /// An md array (or a partition of one).
    Md { uuid: String },
}

/// A block device that appeared by assembly, probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Its main name: `/dev/mapper/vg-root`, `/dev/md127`.
    pub device: String,
    /// Kernel name: `dm-0`, `md127`, `md127p1`.
    pub kernel_name: String,
    /// Other names: `/dev/vg/root`, `/dev/md/name`.
    pub aliases: Vec<String>,
    /// The replica disk of its first member.
    pub disk_index: usize,
    pub fs_type: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    #[serde(flatten)]
    pub kind: VolumeKind,
}

impl Volume {
    /// As the identity map and the root search take it.
    pub fn probed(&self) -> ProbedFs {
        ProbedFs {
            disk_index: self.disk_index,
            partition: None,
            target_device: Some(self.device.clone()),
            fs_type: self.fs_type.clone(),
            uuid: self.uuid.clone(),
            partuuid: None,
            label: self.label.clone(),
        }
    }
}

/// An md array that was assembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssembledArray {
    /// `/dev/md127`.
    pub device: String,
    pub array: MdArray,
}

/// What [`assemble`] did: for the root search, for the log and for
/// [`Assembly::teardown`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assembly {
    pub read_only: bool,
    /// LUKS volumes that were skipped.
    pub luks: Vec<String>,
    /// md arrays assembled (also the ones that failed half-way and exist).
    pub arrays: Vec<AssembledArray>,
    /// VGs activated (also those whose activation failed for some LVs).
    pub volume_groups: Vec<VolumeGroup>,
    /// VGs left inactive because their names clash.
    pub clashes: Vec<VgClash>,
    /// The new block devices, probed.
    pub volumes: Vec<Volume>,
    /// The PVs lvm was restricted to (deactivation uses the same filter).
    pub pvs: Vec<String>,
    /// Links made below the device root (relative: `vg/root`,
    /// `disk/by-uuid/…`), removed by the teardown.
    pub links: Vec<String>,
    /// The device root the links are below.
    pub dev: PathBuf,
}

impl Assembly {
    /// The new volumes as probe entries.
    pub fn probed(&self) -> Vec<ProbedFs> {
        self.volumes.iter().map(Volume::probed).collect()
    }

    /// Whether anything was assembled (nothing to tear down otherwise).
    pub fn is_empty(&self) -> bool {
        self.arrays.is_empty() && self.volume_groups.is_empty() && self.links.is_empty()
    }

    /// The automatic run's error for clashing VG names.
    pub fn clash_error(&self) -> Option<FixupError> {
        if self.clashes.is_empty() {
            return None;
        }
        let what: Vec<String> = self.clashes.iter().map(VgClash::describe).collect();
        Some(
            FixupError::new(
                codes::STORAGE_VG_NAME_CLASH,
                format!(
                    "{}; the stack cannot tell which one the guest uses, and neither could the \
                     guest at boot",
                    what.join(". ")
                ),
            )
            .with_detail(
                "detach the disks that do not belong to this VM, or rename one volume group on the \
                 source (vgrename <vg-uuid> <new-name>) and migrate again",
            ),
        )
    }

    /// One line per thing assembled, for the log and the rescue banner.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.arrays {
            out.push(format!(
                "md array {} (UUID {}{}) from {}",
                a.device,
                a.array.uuid,
                a.array
                    .name
                    .as_deref()
                    .map(|n| format!(", /dev/md/{n}"))
                    .unwrap_or_default(),
                a.array.members.join(" ")
            ));
        }
        for g in &self.volume_groups {
            let lvs: Vec<&str> = self
                .volumes
                .iter()
                .filter(|v| matches!(&v.kind, VolumeKind::Lv { vg, .. } if *vg == g.name))
                .map(|v| v.device.as_str())
                .collect();
            out.push(format!(
                "LVM volume group {} on {}: {}",
                g.name,
                g.pvs.join(" "),
                if lvs.is_empty() {
                    "no LV active".to_string()
                } else {
                    lvs.join(" ")
                }
            ));
        }
        out
    }

    /// Deactivates exactly the VGs activated and stops exactly the arrays
    /// assembled (call after unmounting), and removes the links made.
    /// Failures are warnings (`storage.teardown_failed`) and are returned;
    /// nothing stops the teardown.
    pub fn teardown(&mut self, ctx: &mut dyn StorageCtx) -> Vec<String> {
        let mut failed = Vec::new();
        if !self.volume_groups.is_empty() {
            let names: Vec<String> = self.volume_groups.iter().map(|g| g.name.clone()).collect();
            let config = lvm_config(&self.pvs, self.read_only, &names);
            for g in self.volume_groups.iter().rev() {
                let cmd =
                    Command::new(&vgchange_argv(&config, &g.name, false)).timeout(TEARDOWN_TIMEOUT);
                let (rec, _) = ctx.run(cmd);
                if rec.succeeded() {
                    ctx.log(&format!("deactivated LVM volume group {}", g.name));
                } else {
                    let msg = format!(
                        "deactivating LVM volume group {} (UUID {}): {}",
                        g.name,
                        g.uuid,
                        failure(&rec)
                    );
                    ctx.warn(codes::STORAGE_TEARDOWN_FAILED, msg.clone());
                    failed.push(msg);
                }
            }
        }
        for a in self.arrays.iter().rev() {
            let (rec, _) =
                ctx.run(Command::new(&md_stop_argv(&a.device)).timeout(TEARDOWN_TIMEOUT));
            if rec.succeeded() {
                ctx.log(&format!("stopped md array {}", a.device));
            } else {
                let msg = format!(
                    "stopping md array {} (UUID {}): {}",
                    a.device,
                    a.array.uuid,
                    failure(&rec)
                );
                ctx.warn(codes::STORAGE_TEARDOWN_FAILED, msg.clone());
                failed.push(msg);
            }
        }
        for l in self.links.iter().rev() {
            if let Some(parts) = plain_rel(l) {
                let p = parts.iter().fold(self.dev.clone(), |p, c| p.join(c));
                if p.symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        self.volume_groups.clear();
        self.arrays.clear();
        self.links.clear();
        self.volumes.clear();
        failed
    }
}

/// Assembles what the replicas hold: skips (and reports) LUKS volumes,
/// assembles md arrays, activates LVM volume groups, then probes the new
/// block devices and gives them their `/dev` names. Never fails: what
/// does not work is a warning (`storage.assembly_failed`), and the root
/// search decides whether the guest can be mounted without it.
pub fn assemble(ctx: &mut dyn StorageCtx, probed: &[ProbedFs], opts: &AssembleOptions) -> Assembly {
    let mut a = Assembly {
        read_only: opts.read_only,
        dev: opts.dev.clone(),
        ..Assembly::default()
    };
    for p in luks_volumes(probed) {
        a.luks.push(device_of(p).to_string());
        ctx.warn(codes::STORAGE_LUKS_SKIPPED, luks_skipped_message(p));
    }
    let mut md_probed = Vec::new();
    assemble_md(ctx, probed, opts, &mut a, &mut md_probed);
    let all: Vec<ProbedFs> = probed.iter().chain(md_probed.iter()).cloned().collect();
    activate_lvm(ctx, &all, opts, &mut a);
    a
}

fn link(a: &mut Assembly, dev: &Path, ctx: &mut dyn StorageCtx, rel: String, target: String) {
    match devlinks::create_links(dev, &[(rel.clone(), target.clone())]) {
        Ok(_) => {
            if !a.links.contains(&rel) {
                a.links.push(rel);
            }
        }
        Err(e) => ctx.log(&format!(
            "cannot link {}/{rel} -> {target}: {e}",
            dev.display()
        )),
    }
}

/// The by-uuid and by-label links of a new device's file system.
fn fs_links(
    a: &mut Assembly,
    dev: &Path,
    ctx: &mut dyn StorageCtx,
    kernel_name: &str,
    fs: Option<&FsInfo>,
) {
    let Some(fs) = fs.filter(|f| f.has_fs_links()) else {
        return;
    };
    if let Some(u) = &fs.uuid {
        link(
            a,
            dev,
            ctx,
            format!("disk/by-uuid/{}", devlinks::encode(u)),
            format!("../../{kernel_name}"),
        );
    }
    if let Some(l) = &fs.label {
        link(
            a,
            dev,
            ctx,
            format!("disk/by-label/{}", devlinks::encode(l)),
            format!("../../{kernel_name}"),
        );
    }
}

fn assemble_md(
    ctx: &mut dyn StorageCtx,
    probed: &[ProbedFs],
    opts: &AssembleOptions,
    a: &mut Assembly,
    md_probed: &mut Vec<ProbedFs>,
) {
    let arrays = md_arrays(probed);
    if arrays.is_empty() {
        return;
    }
    let numbers = free_md_numbers(&md_in_use(&opts.sysfs), arrays.len());
    for (array, n) in arrays.iter().zip(numbers) {
        let device = format!("/dev/md{n}");
        let cmd = Command::new(&md_assemble_argv(array, &device, opts.read_only))
            .timeout(ASSEMBLE_TIMEOUT);
        let (rec, _) = ctx.run(cmd);
        let exists = opts.sysfs.join("block").join(format!("md{n}")).exists();
        if !rec.succeeded() {
            ctx.warn(
                codes::STORAGE_ASSEMBLY_FAILED,
                format!(
                    "md array UUID {}{} from {}: {}; what it holds is not mounted (check that every \
                     member disk is attached and in the replica disk map)",
                    array.uuid,
                    array
                        .name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    array.members.join(" "),
                    failure(&rec)
                ),
            );
        }
        if !exists && !rec.succeeded() {
            continue;
        }
        a.arrays.push(AssembledArray {
            device: device.clone(),
            array: array.clone(),
        });
        if !rec.succeeded() {
            continue;
        }
        ctx.log(&format!(
            "assembled md array {device} (UUID {}) from {}{}",
            array.uuid,
            array.members.join(" "),
            if opts.read_only { ", read-only" } else { "" }
        ));
        let kernel = format!("md{n}");
        if let Some(name) = &array.name {
            link(
                a,
                &opts.dev,
                ctx,
                format!("md/{name}"),
                format!("../{kernel}"),
            );
        }
        link(
            a,
            &opts.dev,
            ctx,
            format!("disk/by-id/md-uuid-{}", array.uuid),
            format!("../../{kernel}"),
        );
        let node = block_nodes(&opts.sysfs, &kernel)
            .into_iter()
            .find(|b| b.name == kernel);
        let mut devices: Vec<(String, Option<String>)> = vec![(kernel.clone(), None)];
        if let Some(node) = &node {
            devices[0].1 = node.dev.clone();
            devices.extend(node.partitions.iter().cloned());
        }
        for (name, majmin) in devices {
            if let Some(mm) = &majmin {
                if let Err(e) = ensure_node(&opts.dev, &name, mm) {
                    ctx.log(&e);
                }
            }
            let path = opts.dev.join(&name);
            let fs = match probe_path(&path) {
                Ok(fs) => fs,
                Err(e) => {
                    ctx.log(&format!("probing {}: {e}", path.display()));
                    None
                }
            };
            fs_links(a, &opts.dev, ctx, &name, fs.as_ref());
            let mut aliases = Vec::new();
            if name == kernel {
                if let Some(n) = &array.name {
                    aliases.push(format!("/dev/md/{n}"));
                }
            }
            let v = Volume {
                device: format!("/dev/{name}"),
                kernel_name: name.clone(),
                aliases,
                disk_index: array.disk_index,
                fs_type: fs.as_ref().map(|f| f.fs_type.clone()),
                uuid: fs.as_ref().and_then(|f| f.uuid.clone()),
                label: fs.as_ref().and_then(|f| f.label.clone()),
                kind: VolumeKind::Md {
                    uuid: array.uuid.clone(),
                },
            };
            ctx.log(&format!(
                "probed {}: {}",
                v.device,
                fs.as_ref()
                    .map_or("nothing known".to_string(), |f| f.to_string())
            ));
            md_probed.push(v.probed());
            a.volumes.push(v);
        }
    }
}

fn activate_lvm(
    ctx: &mut dyn StorageCtx,
    all: &[ProbedFs],
    opts: &AssembleOptions,
    a: &mut Assembly,
) {
    let pvs: Vec<String> = all
        .iter()
        .filter(|p| p.fs_type.as_deref() == Some(PV_TYPE))
        .filter_map(|p| p.target_device.clone())
        .filter(|d| plain_device(d))
        .collect();
    if pvs.is_empty() {
        return;
    }
    let ro = opts.read_only;
    let report_config = lvm_config(&pvs, ro, &[]);
    let (rec, lines) = ctx.run(Command::new(&pvs_argv(&report_config, ro)).timeout(REPORT_TIMEOUT));
    let rows = parse_pvs(&lines);
    if rows.is_empty() {
        let why = if rec.succeeded() {
            "it reports no volume group on them".to_string()
        } else {
            failure(&rec)
        };
        ctx.warn(
            codes::STORAGE_ASSEMBLY_FAILED,
            format!(
                "LVM physical volumes {}: {why}; no LVM volume is activated",
                pvs.join(", ")
            ),
        );
        return;
    }
    let (unique, clashes) = split_clashes(volume_groups(&rows));
    for c in &clashes {
        ctx.log(&format!("left inactive: {}", c.describe()));
    }
    a.clashes = clashes;
    if unique.is_empty() {
        return;
    }
    let (_, lv_lines) =
        ctx.run(Command::new(&lvs_argv(&report_config, ro)).timeout(REPORT_TIMEOUT));
    let lvs = parse_lvs(&lv_lines);
    a.pvs = pvs.clone();
    let names: Vec<String> = unique.iter().map(|g| g.name.clone()).collect();
    let config = lvm_config(&pvs, ro, &names);
    for g in &unique {
        if !valid_lvm_name(&g.name) {
            ctx.warn(
                codes::STORAGE_ASSEMBLY_FAILED,
                format!(
                    "LVM volume group {:?} (UUID {}) has a name the stack does not handle; not \
                     activated",
                    g.name, g.uuid
                ),
            );
            continue;
        }
        let cmd = Command::new(&vgchange_argv(&config, &g.name, true)).timeout(ASSEMBLE_TIMEOUT);
        let (rec, _) = ctx.run(cmd);
        if rec.succeeded() {
            ctx.log(&format!(
                "activated LVM volume group {} (UUID {}) on {}{}",
                g.name,
                g.uuid,
                g.pvs.join(" "),
                if ro { ", read-only" } else { "" }
            ));
        } else {
            ctx.warn(
                codes::STORAGE_ASSEMBLY_FAILED,
                format!(
                    "LVM volume group {} (UUID {}) on {}: {}; the LVs that did activate are used \
                     (check that the disks of all its PVs are in the replica disk map)",
                    g.name,
                    g.uuid,
                    g.pvs.join(", "),
                    failure(&rec)
                ),
            );
        }
        // Even a failed activation may have activated some LVs.
        a.volume_groups.push(g.clone());
    }
    let dm = block_nodes(&opts.sysfs, "dm-");
    let disk_of = |dev: &str| {
        all.iter()
            .find(|p| p.target_device.as_deref() == Some(dev))
            .map(|p| p.disk_index)
    };
    for g in a.volume_groups.clone() {
        for lv in lvs.iter().filter(|l| l.vg_uuid == g.uuid) {
            if !valid_lvm_name(&lv.lv) {
                continue;
            }
            let mname = mapper_name(&g.name, &lv.lv);
            let Some(node) = dm.iter().find(|n| n.dm_name.as_deref() == Some(&mname)) else {
                ctx.log(&format!("LV {}/{} is not active", g.name, lv.lv));
                continue;
            };
            if let Some(mm) = &node.dev {
                match ensure_node(&opts.dev, &format!("mapper/{mname}"), mm) {
                    Ok(true) => ctx.log(&format!("made /dev/mapper/{mname}")),
                    Ok(false) => {}
                    Err(e) => ctx.log(&e),
                }
            }
            link(
                a,
                &opts.dev,
                ctx,
                format!("{}/{}", g.name, lv.lv),
                format!("../mapper/{mname}"),
            );
            link(
                a,
                &opts.dev,
                ctx,
                format!("disk/by-id/dm-name-{mname}"),
                format!("../../{}", node.name),
            );
            if let Some(u) = &node.dm_uuid {
                link(
                    a,
                    &opts.dev,
                    ctx,
                    format!("disk/by-id/dm-uuid-{}", devlinks::encode(u)),
                    format!("../../{}", node.name),
                );
            }
            let path = opts.dev.join("mapper").join(&mname);
            let fs = match probe_path(&path) {
                Ok(fs) => fs,
                Err(e) => {
                    ctx.log(&format!("probing {}: {e}", path.display()));
                    None
                }
            };
            fs_links(a, &opts.dev, ctx, &node.name, fs.as_ref());
            let disk_index = lv
                .devices
                .iter()
                .find_map(|d| disk_of(d))
                .or_else(|| g.pvs.iter().find_map(|d| disk_of(d)))
                .unwrap_or(0);
            let v = Volume {
                device: format!("/dev/mapper/{mname}"),
                kernel_name: node.name.clone(),
                aliases: vec![format!("/dev/{}/{}", g.name, lv.lv)],
                disk_index,
                fs_type: fs.as_ref().map(|f| f.fs_type.clone()),
                uuid: fs.as_ref().and_then(|f| f.uuid.clone()),
                label: fs.as_ref().and_then(|f| f.label.clone()),
                kind: VolumeKind::Lv {
                    vg: g.name.clone(),
                    lv: lv.lv.clone(),
                },
            };
            ctx.log(&format!(
                "probed {}: {}",
                v.device,
                fs.as_ref()
                    .map_or("nothing known".to_string(), |f| f.to_string())
            ));
            a.volumes.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{OutputSink, RecordingRunner};

    fn pf(dev: &str, disk: usize, part: Option<u32>, t: &str, uuid: &str) -> ProbedFs {
        ProbedFs {
            disk_index: disk,
            partition: part,
            target_device: Some(dev.into()),
            fs_type: Some(t.into()),
            uuid: Some(uuid.into()),
            ..ProbedFs::default()
        }
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Scripted output per subcommand (`lvm pvs`, `mdadm`…), exit 0.
    #[derive(Default)]
    struct Script {
        calls: Vec<Command>,
        outputs: Vec<(String, Vec<String>)>,
        fail: Vec<String>,
    }

    impl Script {
        fn key(cmd: &Command) -> String {
            cmd.argv
                .iter()
                .take(2)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        }
    }

    impl CommandRunner for Script {
        fn run(&mut self, cmd: &Command, sink: &mut dyn OutputSink) -> CommandRecord {
            self.calls.push(cmd.clone());
            let key = Script::key(cmd);
            if let Some((_, lines)) = self.outputs.iter().find(|(k, _)| *k == key) {
                for l in lines {
                    sink.output_line(l);
                }
            }
            let mut rec = CommandRecord::not_run(&cmd.argv);
            rec.ran = true;
            rec.exit_code = Some(if self.fail.contains(&key) { 5 } else { 0 });
            rec
        }
    }

    #[test]
    fn luks_volumes_are_reported_not_opened() {
        let probed = vec![
            pf("/dev/sdb1", 0, Some(1), "ext4", "u1"),
            pf("/dev/sdb2", 0, Some(2), LUKS_TYPE, "c2"),
        ];
        let mut runner = RecordingRunner::succeeding();
        let mut ctx = LogCtx::new(&mut runner);
        let d = tempfile::tempdir().unwrap();
        let opts = AssembleOptions {
            read_only: false,
            sysfs: d.path().join("sys"),
            dev: d.path().join("dev"),
        };
        let a = assemble(&mut ctx, &probed, &opts);
        assert_eq!(a.luks, ["/dev/sdb2"]);
        assert!(a.is_empty());
        assert_eq!(ctx.warnings.len(), 1);
        assert_eq!(ctx.warnings[0].code, codes::STORAGE_LUKS_SKIPPED);
        assert!(ctx.warnings[0].message.contains("/dev/sdb2"));
        assert!(ctx.warnings[0].message.contains("not supported"));
        assert!(ctx.commands.is_empty());
    }

    #[test]
    fn md_arrays_group_members_by_uuid() {
        let mut a = pf("/dev/sdb1", 0, Some(1), MD_MEMBER_TYPE, "AA:bb:cc:dd");
        a.label = Some("web01:root".into());
        let probed = vec![
            a,
            pf("/dev/sdc1", 1, Some(1), MD_MEMBER_TYPE, "aa:bb:cc:dd"),
            pf("/dev/sdb2", 0, Some(2), MD_MEMBER_TYPE, "11:22:33:44"),
            pf("/dev/sdb3", 0, Some(3), "ext4", "x"),
            pf("/dev/sdc2", 1, Some(2), MD_MEMBER_TYPE, "11:22:33:44"),
        ];
        let arrays = md_arrays(&probed);
        assert_eq!(
            arrays,
            vec![
                MdArray {
                    uuid: "aa:bb:cc:dd".into(),
                    name: Some("root".into()),
                    members: strs(&["/dev/sdb1", "/dev/sdc1"]),
                    disk_index: 0,
                },
                MdArray {
                    uuid: "11:22:33:44".into(),
                    name: None,
                    members: strs(&["/dev/sdb2", "/dev/sdc2"]),
                    disk_index: 0,
                },
            ]
        );
        assert_eq!(
            md_assemble_argv(&arrays[0], "/dev/md127", true),
            strs(&[
                "mdadm",
                "--assemble",
                "--run",
                "--readonly",
                "--config=none",
                "/dev/md127",
                "--uuid=aa:bb:cc:dd",
                "/dev/sdb1",
                "/dev/sdc1"
            ])
        );
        assert!(!md_assemble_argv(&arrays[0], "/dev/md127", false).contains(&"--readonly".into()));
        assert_eq!(
            md_stop_argv("/dev/md127"),
            strs(&["mdadm", "--stop", "/dev/md127"])
        );
    }

    #[test]
    fn md_numbers_count_down_from_127() {
        let used: BTreeSet<u32> = [127, 125].into_iter().collect();
        assert_eq!(free_md_numbers(&used, 3), vec![126, 124, 123]);
        assert_eq!(free_md_numbers(&BTreeSet::new(), 0), Vec::<u32>::new());
    }

    #[test]
    fn lvm_config_accepts_only_the_replica_pvs() {
        let c = lvm_config(
            &strs(&["/dev/sdb2", "/dev/md127", "/dev/bad\"name"]),
            false,
            &[],
        );
        assert!(
            c.contains(r#"filter=["a|^/dev/sdb2$|","a|^/dev/md127$|","r|.*|"]"#),
            "{c}"
        );
        assert!(c.contains(r#"global_filter=["a|^/dev/sdb2$|","a|^/dev/md127$|","r|.*|"]"#));
        assert!(!c.contains("bad"));
        for s in [
            "obtain_device_list_from_udev=0",
            "use_devicesfile=0",
            "udev_sync=0",
            "udev_rules=0",
            "backup=0",
        ] {
            assert!(c.contains(s), "{s} in {c}");
        }
        assert!(!c.contains("metadata_read_only"));
        assert!(!c.contains("read_only_volume_list"));
        let ro = lvm_config(&strs(&["/dev/sdb2"]), true, &strs(&["rhel", "data-vg"]));
        assert!(ro.contains("metadata_read_only=1"));
        assert!(
            ro.contains(r#"read_only_volume_list=["rhel","data-vg"]"#),
            "{ro}"
        );
        assert_eq!(regex_literal("/dev/a.b+c"), r"/dev/a\.b\+c");
        let mut rec = CommandRecord::not_run(&vgchange_argv(&c, "vg0", true));
        rec.ran = true;
        rec.exit_code = Some(5);
        assert_eq!(
            failure(&rec),
            "`lvm vgchange -ay --sysinit --noudevsync --config <config> vg0` exited with status 5"
        );
    }

    #[test]
    fn reports_parse_with_warnings_mixed_in() {
        let pvs = strs(&[
            "  WARNING: Device mismatch detected for rhel/root which is accessing /dev/sda2.",
            "  /dev/sdb2|rhel|Xq3Lbd-AAAA-BBBB-CCCC-DDDD-EEEE-FFFFFF",
            "  /dev/sdc1|rhel|Yq3Lbd-AAAA-BBBB-CCCC-DDDD-EEEE-FFFFFF",
            "  /dev/sdd1|data|Zq3Lbd-AAAA-BBBB-CCCC-DDDD-EEEE-FFFFFF",
            "  /dev/sdd2|data|Zq3Lbd-AAAA-BBBB-CCCC-DDDD-EEEE-FFFFFF",
            "  /dev/sde1||",
        ]);
        let rows = parse_pvs(&pvs);
        assert_eq!(rows.len(), 4);
        let groups = volume_groups(&rows);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[2].pvs, strs(&["/dev/sdd1", "/dev/sdd2"]));
        let (unique, clashes) = split_clashes(groups);
        assert_eq!(unique.len(), 1);
        assert_eq!(unique[0].name, "data");
        assert_eq!(clashes.len(), 1);
        let d = clashes[0].describe();
        assert!(d.contains("\"rhel\""), "{d}");
        assert!(d.contains("Xq3Lbd") && d.contains("/dev/sdb2"), "{d}");
        assert!(d.contains("Yq3Lbd") && d.contains("/dev/sdc1"), "{d}");

        // As lvm 2.03.16 prints them, warnings (on stderr, merged) included.
        let real = parse_pvs(&strs(&[
            "  WARNING: VG name my-vg is used by VGs lTqqJH-ljFu-cWdJ-DG9C-u2xP-63cu-noFAZF and \
             SKHPua-lqij-vYG7-aGrG-ODMn-VWPq-PrHunN.",
            "  Fix duplicate VG names with vgrename uuid, a device filter, or system IDs.",
            "  /dev/loop0p1|my-vg|SKHPua-lqij-vYG7-aGrG-ODMn-VWPq-PrHunN",
            "  /dev/loop1p1|my-vg|lTqqJH-ljFu-cWdJ-DG9C-u2xP-63cu-noFAZF",
        ]));
        assert_eq!(real.len(), 2);
        assert_eq!(split_clashes(volume_groups(&real)).1.len(), 1);
        let real = parse_lvs(&strs(&[
            "  SKHPua-lqij-vYG7-aGrG-ODMn-VWPq-PrHunN|my-vg|root|\
             aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg|/dev/loop0p1(0)",
        ]));
        assert_eq!(real[0].vg, "my-vg");
        assert_eq!(real[0].lv, "root");
        assert_eq!(real[0].devices, strs(&["/dev/loop0p1"]));

        let lvs = parse_lvs(&strs(&[
            "  Zq3L|data|home|LVU1|/dev/sdd1(0),/dev/sdd2(100)",
            "  Zq3L|data|pool||",
            "garbage",
        ]));
        assert_eq!(lvs.len(), 2);
        assert_eq!(lvs[0].devices, strs(&["/dev/sdd1", "/dev/sdd2"]));
        assert!(lvs[1].devices.is_empty());
    }

    #[test]
    fn mapper_names_double_dashes() {
        assert_eq!(mapper_name("rhel", "root"), "rhel-root");
        assert_eq!(mapper_name("my-vg", "lv-1"), "my--vg-lv--1");
        assert!(valid_lvm_name("data_vg.1+x"));
        for bad in ["", ".", "..", "-x", "a/b", "a b"] {
            assert!(!valid_lvm_name(bad), "{bad}");
        }
    }

    #[test]
    fn vgchange_argv_names_one_vg_without_udev() {
        let a = vgchange_argv("CFG", "rhel", true);
        assert_eq!(
            a,
            strs(&[
                "lvm",
                "vgchange",
                "-ay",
                "--sysinit",
                "--noudevsync",
                "--config",
                "CFG",
                "rhel"
            ])
        );
        assert_eq!(
            vgchange_argv("CFG", "rhel", false),
            strs(&[
                "lvm",
                "vgchange",
                "-an",
                "--noudevsync",
                "--config",
                "CFG",
                "rhel"
            ])
        );
        assert!(pvs_argv("CFG", true).contains(&"--readonly".to_string()));
        assert!(!pvs_argv("CFG", false).contains(&"--readonly".to_string()));
    }

    /// A minimal XFS superblock image that [`probe`] recognises.
    fn xfs_image(uuid: [u8; 16], label: &str) -> Vec<u8> {
        let mut img = vec![0u8; 8192];
        img[0..4].copy_from_slice(b"XFSB");
        img[4..8].copy_from_slice(&4096u32.to_be_bytes());
        img[32..48].copy_from_slice(&uuid);
        img[88..92].copy_from_slice(&1u32.to_be_bytes());
        img[102..104].copy_from_slice(&512u16.to_be_bytes());
        img[108..108 + label.len()].copy_from_slice(label.as_bytes());
        img
    }

    fn sys_block(sys: &Path, name: &str, dev: &str, dm_name: Option<&str>) {
        let b = sys.join("block").join(name);
        fs::create_dir_all(b.join("dm")).unwrap();
        fs::write(b.join("dev"), format!("{dev}\n")).unwrap();
        if let Some(n) = dm_name {
            fs::write(b.join("dm/name"), format!("{n}\n")).unwrap();
            fs::write(b.join("dm/uuid"), "LVM-abc\n").unwrap();
        }
    }

    #[test]
    fn lvm_activation_runs_reports_then_one_vgchange_per_vg_and_probes_the_lvs() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path().join("sys");
        let dev = d.path().join("dev");
        // What lvm would leave: dm-0 for data-home, with its node.
        sys_block(&sys, "dm-0", "253:0", Some("data-home"));
        fs::create_dir_all(dev.join("mapper")).unwrap();
        let uuid = [0x11u8; 16];
        fs::write(dev.join("mapper/data-home"), xfs_image(uuid, "home")).unwrap();

        let probed = vec![
            pf("/dev/sdb1", 0, Some(1), "xfs", "boot"),
            pf("/dev/sdb2", 0, Some(2), PV_TYPE, "pv1"),
            pf("/dev/sdc1", 1, Some(1), PV_TYPE, "pv2"),
            pf("/dev/sdd1", 2, Some(1), PV_TYPE, "pv3"),
            pf("/dev/sde1", 3, Some(1), PV_TYPE, "pv4"),
        ];
        let mut runner = Script {
            outputs: vec![
                (
                    "lvm pvs".into(),
                    strs(&[
                        "  /dev/sdb2|data|VG-DATA",
                        "  /dev/sdc1|data|VG-DATA",
                        "  /dev/sdd1|rhel|VG-R1",
                        "  /dev/sde1|rhel|VG-R2",
                    ]),
                ),
                (
                    "lvm lvs".into(),
                    strs(&[
                        "  VG-DATA|data|home|LV1|/dev/sdc1(0)",
                        "  VG-DATA|data|swap|LV2|/dev/sdb2(0)",
                    ]),
                ),
            ],
            ..Script::default()
        };
        let mut ctx = LogCtx::new(&mut runner);
        let opts = AssembleOptions {
            read_only: true,
            sysfs: sys.clone(),
            dev: dev.clone(),
        };
        let mut a = assemble(&mut ctx, &probed, &opts);
        let calls: Vec<String> = ctx.commands.iter().map(|c| c.argv[..2].join(" ")).collect();
        assert_eq!(calls, ["lvm pvs", "lvm lvs", "lvm vgchange"]);
        let vgchange = &ctx.commands[2].argv;
        assert_eq!(vgchange.last().map(String::as_str), Some("data"));
        let cfg = &vgchange[vgchange.len() - 2];
        assert!(cfg.contains(r#"read_only_volume_list=["data"]"#), "{cfg}");
        assert!(cfg.contains("a|^/dev/sdb2$|") && cfg.contains("a|^/dev/sde1$|"));
        assert!(!cfg.contains("/dev/sdb1"));

        assert_eq!(a.clashes.len(), 1);
        assert_eq!(a.clashes[0].name, "rhel");
        let e = a.clash_error().unwrap();
        assert_eq!(e.code, codes::STORAGE_VG_NAME_CLASH);
        assert!(e.message.contains("/dev/sdd1") && e.message.contains("/dev/sde1"));

        assert_eq!(a.volumes.len(), 1, "{:?}", a.volumes);
        let v = &a.volumes[0];
        assert_eq!(v.device, "/dev/mapper/data-home");
        assert_eq!(v.aliases, ["/dev/data/home"]);
        assert_eq!(v.disk_index, 1, "the disk of the LV's first PV");
        assert_eq!(v.fs_type.as_deref(), Some("xfs"));
        assert_eq!(v.label.as_deref(), Some("home"));
        let p = v.probed();
        assert!(p.is_assembled());
        assert_eq!(p.target_device.as_deref(), Some("/dev/mapper/data-home"));
        assert_eq!(
            fs::read_link(dev.join("data/home")).unwrap(),
            Path::new("../mapper/data-home")
        );
        let uuid_link = dev.join(format!("disk/by-uuid/{}", p.uuid.clone().unwrap()));
        assert_eq!(fs::read_link(&uuid_link).unwrap(), Path::new("../../dm-0"));
        assert!(a.summary()[0].contains("data on /dev/sdb2 /dev/sdc1: /dev/mapper/data-home"));

        // Teardown: exactly the VG activated, links gone.
        let failed = a.teardown(&mut ctx);
        assert!(failed.is_empty());
        let last = ctx.commands.last().unwrap();
        assert_eq!(last.argv[..3], strs(&["lvm", "vgchange", "-an"]));
        assert_eq!(last.argv.last().map(String::as_str), Some("data"));
        assert!(dev.join("data/home").symlink_metadata().is_err());
        assert!(uuid_link.symlink_metadata().is_err());
        assert!(a.is_empty());
    }

    #[test]
    fn md_assembly_then_lvm_on_the_array_and_teardown_in_reverse() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path().join("sys");
        let dev = d.path().join("dev");
        sys_block(&sys, "md127", "9:127", None);
        fs::create_dir_all(&dev).unwrap();
        // md126 holds a PV (an LVM label is what the probe sees).
        let mut pv = vec![0u8; 4096];
        pv[512..520].copy_from_slice(b"LABELONE");
        pv[512 + 8..512 + 16].copy_from_slice(&1u64.to_le_bytes());
        pv[512 + 20..512 + 24].copy_from_slice(&32u32.to_le_bytes());
        pv[512 + 24..512 + 32].copy_from_slice(b"LVM2 001");
        pv[512 + 32..512 + 64].copy_from_slice(b"AAAAAABBBBCCCCDDDDEEEEFFFFGGGGGG");
        let crc = crate::storage::partition::crc32_update(0xF597_A6CF, &pv[512 + 20..1024]);
        pv[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
        fs::write(dev.join("md126"), &pv).unwrap();

        let mut m1 = pf("/dev/sdb1", 0, Some(1), MD_MEMBER_TYPE, "aa:bb:cc:dd");
        m1.label = Some("host:pv".into());
        let probed = vec![
            m1,
            pf("/dev/sdc1", 1, Some(1), MD_MEMBER_TYPE, "aa:bb:cc:dd"),
        ];
        let mut runner = Script {
            outputs: vec![("lvm pvs".into(), strs(&["  /dev/md126|vg0|U0"]))],
            ..Script::default()
        };
        let mut ctx = LogCtx::new(&mut runner);
        let opts = AssembleOptions {
            read_only: false,
            sysfs: sys,
            dev: dev.clone(),
        };
        let mut a = assemble(&mut ctx, &probed, &opts);
        let argv: Vec<&Vec<String>> = ctx.commands.iter().map(|c| &c.argv).collect();
        assert_eq!(argv[0][..3], strs(&["mdadm", "--assemble", "--run"]));
        // md127 is in use: the array goes to md126.
        assert!(argv[0].contains(&"/dev/md126".to_string()), "{:?}", argv[0]);
        assert!(!argv[0].contains(&"--readonly".to_string()));
        assert_eq!(argv[1][..2], strs(&["lvm", "pvs"]));
        assert!(
            argv[1].iter().any(|a| a.contains("a|^/dev/md126$|")),
            "{:?}",
            argv[1]
        );
        assert_eq!(a.arrays.len(), 1);
        assert_eq!(a.arrays[0].device, "/dev/md126");
        assert_eq!(
            fs::read_link(dev.join("md/pv")).unwrap(),
            Path::new("../md126")
        );
        assert_eq!(a.volume_groups.len(), 1);
        let n = ctx.commands.len();
        a.teardown(&mut ctx);
        let tail: Vec<String> = ctx.commands[n..]
            .iter()
            .map(|c| c.argv[..2].join(" "))
            .collect();
        assert_eq!(tail, ["lvm vgchange", "mdadm --stop"]);
        assert_eq!(ctx.commands.last().unwrap().argv[2], "/dev/md126");
    }

    #[test]
    fn failures_are_warnings_naming_the_volume() {
        let d = tempfile::tempdir().unwrap();
        let probed = vec![
            pf("/dev/sdb1", 0, Some(1), MD_MEMBER_TYPE, "aa:bb:cc:dd"),
            pf("/dev/sdb2", 0, Some(2), PV_TYPE, "pv"),
        ];
        let mut runner = Script {
            outputs: vec![("lvm pvs".into(), strs(&["  /dev/sdb2|vg0|U0"]))],
            fail: strs(&["mdadm --assemble", "lvm vgchange"]),
            ..Script::default()
        };
        let mut ctx = LogCtx::new(&mut runner);
        let opts = AssembleOptions {
            read_only: false,
            sysfs: d.path().join("sys"),
            dev: d.path().join("dev"),
        };
        let mut a = assemble(&mut ctx, &probed, &opts);
        let codes_seen: Vec<&str> = ctx.warnings.iter().map(|w| w.code.as_str()).collect();
        assert_eq!(
            codes_seen,
            [
                codes::STORAGE_ASSEMBLY_FAILED,
                codes::STORAGE_ASSEMBLY_FAILED
            ]
        );
        assert!(ctx.warnings[0].message.contains("aa:bb:cc:dd"));
        assert!(ctx.warnings[1].message.contains("vg0"));
        // The array never appeared: nothing to stop; the VG may be half
        // active: it is deactivated.
        assert!(a.arrays.is_empty());
        assert_eq!(a.volume_groups.len(), 1);
        let failed = a.teardown(&mut ctx);
        assert_eq!(failed.len(), 1);
        assert_eq!(
            ctx.warnings.last().unwrap().code,
            codes::STORAGE_TEARDOWN_FAILED
        );
    }

    #[test]
    fn recording_runner_without_output_activates_nothing() {
        let d = tempfile::tempdir().unwrap();
        let probed = vec![pf("/dev/sdb2", 0, Some(2), PV_TYPE, "pv")];
        let mut runner = RecordingRunner::new();
        let mut ctx = LogCtx::new(&mut runner);
        let opts = AssembleOptions {
            read_only: true,
            sysfs: d.path().join("sys"),
            dev: d.path().join("dev"),
        };
        let a = assemble(&mut ctx, &probed, &opts);
        assert!(a.is_empty());
        assert_eq!(runner.calls.len(), 1);
        assert_eq!(runner.calls[0].argv[1], "pvs");
        assert_eq!(runner.calls[0].timeout, REPORT_TIMEOUT);
    }

    #[test]
    fn block_nodes_read_sysfs() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        sys_block(sys, "dm-1", "253:1", Some("vg-b"));
        sys_block(sys, "dm-0", "253:0", Some("vg-a"));
        sys_block(sys, "md127", "9:127", None);
        let p = sys.join("block/md127/md127p1");
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("partition"), "1\n").unwrap();
        fs::write(p.join("dev"), "259:5\n").unwrap();
        let dm = block_nodes(sys, "dm-");
        assert_eq!(dm.len(), 2);
        assert_eq!(dm[0].name, "dm-0");
        assert_eq!(dm[0].dm_name.as_deref(), Some("vg-a"));
        let md = block_nodes(sys, "md");
        assert_eq!(
            md[0].partitions,
            vec![("md127p1".to_string(), Some("259:5".to_string()))]
        );
        assert_eq!(md_in_use(sys), [127].into_iter().collect());
    }

    #[test]
    fn ensure_node_keeps_what_is_there_and_refuses_odd_paths() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("mapper")).unwrap();
        fs::write(d.path().join("mapper/x"), b"").unwrap();
        assert_eq!(ensure_node(d.path(), "mapper/x", "253:0"), Ok(false));
        assert!(ensure_node(d.path(), "../x", "253:0").is_err());
        assert!(ensure_node(d.path(), "mapper/y", "nonsense").is_err());
    }
}
