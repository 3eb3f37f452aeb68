//! What the end-to-end scenarios of issue 7 share (`tests/scenarios.rs`,
//! `tests/scenario_lvm.rs`): the tier switch, the logs folder, the
//! prove-the-problem boot of an unfixed guest on VMware hardware, the
//! manager emulator's whole flow, and the assertions on the fixed guest
//! ([`assert_fixed`] against an [`Expected`], which
//! [`Expected::from_recipe`] derives from a guest's recipe).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::emulator::blueprint::normalize_mac;
use crate::emulator::{self, Blueprint, Boot, RunOptions, RunReport};
use crate::guests::check::{
    CHECK_BEGIN, CHECK_END, GuestCheck, SELINUX_UNLABELED_KEY, is_stable_root, kernel_root_arg,
};
use crate::guests::recipe::{NicAddress, kernel_partition_name};
use crate::guests::{GuestImage, Hardware};
use crate::paths::{tail_lines, workspace_root};
use crate::vm::{Vm, VmConfig};

/// The steps stage 1 reports for a Debian-family guest on a plain disk,
/// in order, with their status: nothing to change in the first four; the
/// storage references, the network, the stage-2 preparation, the
/// initramfs (for `vmw_pvscsi`/`ahci`) and the boot loader (command line,
/// install, config) all change. Other steps may come between them
/// (reported, not failed, unless they failed).
pub const EXPECTED_STEPS: [(&str, &str); 9] = [
    ("validate", "unchanged"),
    ("storage", "unchanged"),
    ("detect", "unchanged"),
    ("preconditions", "unchanged"),
    ("fstab", "changed"),
    ("network", "changed"),
    ("stage2", "changed"),
    ("initramfs", "changed"),
    ("bootloader", "changed"),
];

/// The default target of the Debian guests before the migration: no
/// `/etc/systemd/system/default.target` link, so systemd's own default,
/// `graphical.target` (multi-user without a display manager).
pub const DEBIAN_DEFAULT_TARGET: &str = "graphical.target";

/// The prove-the-problem boot: from QEMU's start to the initramfs giving
/// up on the root device (initramfs-tools waits about 30 s) or to a check
/// block.
pub const PROBLEM_TIMEOUT: Duration = Duration::from_secs(480);

/// The same for a dracut initramfs, which retries for `rd.retry` (180 s)
/// before it gives up, under TCG.
pub const DRACUT_PROBLEM_TIMEOUT: Duration = Duration::from_secs(900);

/// How long the check boot's guest gets to shut down on the ACPI power
/// button before `quit` (the emulator's default is 120 s, cut short after
/// 15 s of silence on the console): its overlay is thrown away.
pub const POWER_OFF_GRACE_SECONDS: u64 = 5;

/// Lines of a log shown with a failure.
pub const TAIL: usize = 60;

/// Whether the long tier runs (`OSAM_QEMU_FULL=1`, `make qemu-test`).
pub fn full() -> bool {
    std::env::var_os("OSAM_QEMU_FULL").is_some_and(|v| v == "1")
}

/// `target/osam-scenarios/<id>/`, emptied.
pub fn logs_dir(id: &str) -> Result<PathBuf> {
    let dir = workspace_root().join("target/osam-scenarios").join(id);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Starts a VM, runs `phase`; on failure prints the serial log's last
/// lines and QEMU's output. QEMU is killed when the phase ends.
pub fn with_vm<T>(
    name: &str,
    config: &VmConfig,
    phase: impl FnOnce(&mut Vm) -> Result<T>,
) -> Result<T> {
    with_vm_tail(name, config, TAIL, phase)
}

/// [`with_vm`], showing the last `tail` lines of the serial log on
/// failure.
pub fn with_vm_tail<T>(
    name: &str,
    config: &VmConfig,
    tail: usize,
    phase: impl FnOnce(&mut Vm) -> Result<T>,
) -> Result<T> {
    let mut vm = Vm::start(config).with_context(|| format!("{name}: starting QEMU"))?;
    let outcome = phase(&mut vm);
    if outcome.is_err() {
        eprintln!(
            "===== {name}: last {tail} lines of the serial log ({}) =====\n{}\n\
             ===== QEMU's output =====\n{}\n===== end =====",
            vm.serial_log_path().display(),
            vm.serial_tail(tail),
            vm.qemu_output().trim()
        );
    }
    vm.kill();
    eprintln!("{name}: VM ran {:.1?}", vm.elapsed());
    outcome.with_context(|| format!("{name} failed"))
}

/// The line of an initramfs giving up on its root device:
/// initramfs-tools' "ALERT! /dev/sda1 does not exist", dracut's
/// "Warning: /dev/sda1 does not exist" (from its emergency hook) or
/// systemd's "Timed out waiting for device …" in a dracut image.
pub fn no_root_line(text: &str) -> Option<&str> {
    text.lines()
        .find(|l| {
            ((l.contains("ALERT!") || l.contains("Warning:")) && l.contains("does not exist"))
                || l.contains("Timed out waiting for device")
        })
        .map(str::trim)
}

/// What makes an unfixed guest's boot on VMware hardware a proof.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    /// The root device the initramfs must give up on (`None`: any).
    pub root: Option<String>,
    /// Whether a guest that boots with none of its configured NIC names
    /// and no address proves the problem too (otherwise any boot to the
    /// check block fails the proof).
    pub network_problem_suffices: bool,
    /// How long to wait for the initramfs to give up or the check block.
    pub timeout: Option<Duration>,
}

/// What the unfixed guest did on VMware hardware.
enum Unfixed {
    /// The initramfs gave up on the root device (the line).
    NoRoot(String),
    /// It booted; the check block.
    Booted(Box<GuestCheck>),
}

/// Boots the unfixed guest on VMware hardware (pvscsi, or AHCI under
/// UEFI; VMXNET3) and makes sure it is broken there as `problem` says.
/// Returns what happened, for the log.
pub fn prove_the_problem(image: &GuestImage, logs: &Path, problem: &Problem) -> Result<String> {
    let config = image.vm_config(
        Hardware::Vmware,
        logs,
        logs.join("unfixed-on-vmware.serial.log"),
    )?;
    let timeout = problem
        .timeout
        .unwrap_or(if image.recipe().dracut.is_some() {
            DRACUT_PROBLEM_TIMEOUT
        } else {
            PROBLEM_TIMEOUT
        });
    with_vm("the unfixed guest on VMware hardware", &config, |vm| {
        let log = vm.serial_log_path().to_path_buf();
        let seen = vm.wait_for(
            || {
                let bytes = std::fs::read(&log).ok()?;
                let text = String::from_utf8_lossy(&bytes).replace('\r', "");
                if let Some(line) = no_root_line(&text) {
                    return Some(Unfixed::NoRoot(line.to_owned()));
                }
                if text.contains(CHECK_BEGIN) && text.contains(CHECK_END) {
                    return GuestCheck::parse(&text)
                        .ok()
                        .map(|c| Unfixed::Booted(Box::new(c)));
                }
                None
            },
            timeout,
            "the initramfs giving up on the root device (\"… does not exist\") or the check \
             block",
        )?;
        match seen {
            Unfixed::NoRoot(line) => match &problem.root {
                Some(root) if !line.contains(root.as_str()) => {
                    bail!("the initramfs gave up on something else than {root}: {line}")
                }
                _ => Ok(format!("does not boot: {line}")),
            },
            Unfixed::Booted(_) if !problem.network_problem_suffices => {
                bail!("the unfixed guest booted on VMware hardware: this proves nothing")
            }
            Unfixed::Booted(check) => {
                let recipe = image.recipe();
                let configured: Vec<&str> = recipe.nics.iter().map(|n| n.name.as_str()).collect();
                let named = check
                    .nics
                    .iter()
                    .any(|n| configured.contains(&n.name.as_str()));
                let addressed = check.nics.iter().any(|n| !n.ipv4.is_empty());
                if named || addressed || recipe.nics.is_empty() {
                    bail!(
                        "the unfixed guest boots on VMware hardware with a working network \
                         ({:?}): this scenario proves nothing",
                        check.nics
                    );
                }
                Ok(format!(
                    "boots with NICs {:?} (configured: {configured:?}) and no address",
                    check.nics.iter().map(|n| &n.name).collect::<Vec<_>>()
                ))
            }
        }
    })
}

/// Runs the manager emulator's whole flow (stage 1 from the fixup disk,
/// stage 2 with `tools_iso`, the check boot), its progress prefixed with
/// `id`; fails when the run did. Returns the report and the seconds it
/// took.
pub fn run_flow(
    id: &str,
    bp: &Blueprint,
    stack_vmdk: &Path,
    tools_iso: &Path,
    logs: &Path,
) -> Result<(RunReport, f64)> {
    let mut options = RunOptions::new(stack_vmdk, logs);
    options.tools_iso = Some(tools_iso.to_path_buf());
    let t = Instant::now();
    let report = emulator::run(bp, &options, &mut |line| eprintln!("[{id}] {line}"));
    let run_s = t.elapsed().as_secs_f64();
    eprintln!(
        "[{id}] the run took {run_s:.1} s (logs in {}):\n{}",
        logs.display(),
        report.summary()
    );
    if let Some(failure) = &report.failure {
        bail!(
            "{id}: the run failed at {failure}\n(every log of the run: {})",
            logs.display()
        );
    }
    Ok((report, run_s))
}

/// A mount the fixed guest must have.
#[derive(Debug, Clone)]
pub struct ExpectedMount {
    /// Where.
    pub mountpoint: String,
    /// The devices it may be mounted from (any of them).
    pub devices: Vec<String>,
    /// Its type.
    pub fstype: String,
}

/// A NIC the fixed guest must have.
#[derive(Debug, Clone)]
pub struct ExpectedNic {
    /// Its name (`eth0`).
    pub name: String,
    /// Its MAC, normalized (the target's).
    pub mac: String,
    /// The source NIC it replaces (for the messages).
    pub source: String,
    /// The address its source NIC was configured with (`None`: the
    /// source NIC is unknown, which fails).
    pub address: Option<NicAddress>,
}

/// What the fixed guest of a scenario must show: result.json, stage 2's
/// outcome and the check block of the last boot. `None` fields are not
/// checked.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// result.json's steps (id, status) that must come in this order
    /// (others may come between them).
    pub steps: Vec<(String, String)>,
    /// result.json `guest.osId`.
    pub os_id: Option<String>,
    /// result.json `guest.firmware`.
    pub firmware: Option<String>,
    /// result.json `guest.arch`.
    pub arch: Option<String>,
    /// The guest's kernels: each listed in result.json `guest.kernels`,
    /// and the check boot runs one of them (empty: not checked).
    pub kernels: Vec<String>,
    /// The default target after the flow (the original one).
    pub default_target: Option<String>,
    /// The SELinux mode after the flow (`none`, `permissive`,
    /// `enforcing`).
    pub selinux: Option<String>,
    /// The hostname.
    pub hostname: Option<String>,
    /// Whether the check block must say that no file under `/boot`,
    /// `/etc`, `/opt` lacks its SELinux label (`selinux-unlabeled=0`, the
    /// SELinux guests' check script).
    pub selinux_all_labelled: bool,
    /// Whether the kernel's `root=` must name the root in a way a move
    /// keeps (not a disk name).
    pub stable_root: bool,
    /// The NICs.
    pub nics: Vec<ExpectedNic>,
    /// The mounts.
    pub mounts: Vec<ExpectedMount>,
}

impl Expected {
    /// What the fixed guest of `image`, migrated by `bp`, must show:
    /// [`EXPECTED_STEPS`]; osId `debian` (the guests are all made from
    /// Debian's packages, dracut or not); the blueprint's firmware and
    /// architecture; the guest's kernels; its original default target
    /// (the Debian default, [`DEBIAN_DEFAULT_TARGET`]); SELinux as the
    /// recipe set it (`none` without) and, with SELinux, no file under
    /// `/boot`, `/etc`, `/opt` without its label; the hostname; a stable
    /// `root=`;
    /// `ethN` in the target VM's order with the target MACs and the
    /// address of the source NIC they replace; every mount of the recipe
    /// from its partition on the target disks (sda, sdb, … in unit
    /// order) with its type.
    pub fn from_recipe(image: &GuestImage, bp: &Blueprint) -> Expected {
        let recipe = image.recipe();
        let nics = bp
            .nics
            .iter()
            .enumerate()
            .map(|(i, nic)| ExpectedNic {
                name: nic.target_name.clone().unwrap_or_else(|| format!("eth{i}")),
                mac: normalize_mac(&nic.mac).unwrap_or_else(|_| nic.mac.clone()),
                source: nic.source_name.clone(),
                address: recipe
                    .nics
                    .iter()
                    .find(|n| n.mac.eq_ignore_ascii_case(&nic.source_mac))
                    .map(|n| n.address.clone()),
            })
            .collect();
        let mounts = recipe
            .mounts()
            .map(|(d, p, fs, m)| ExpectedMount {
                mountpoint: m.mountpoint.clone(),
                devices: vec![kernel_partition_name(d, p)],
                fstype: fs.kind.name().to_owned(),
            })
            .collect();
        Expected {
            steps: EXPECTED_STEPS
                .iter()
                .map(|(i, s)| ((*i).to_owned(), (*s).to_owned()))
                .collect(),
            os_id: Some("debian".into()),
            firmware: Some(bp.firmware.protocol().to_owned()),
            arch: Some(bp.arch.arch().name().to_owned()),
            kernels: image.manifest.kernels.clone(),
            default_target: Some(DEBIAN_DEFAULT_TARGET.into()),
            selinux: Some(
                recipe
                    .selinux
                    .as_ref()
                    .map_or("none", |s| s.mode.name())
                    .to_owned(),
            ),
            hostname: Some(recipe.hostname.clone()),
            selinux_all_labelled: recipe.selinux.is_some(),
            stable_root: true,
            nics,
            mounts,
        }
    }
}

/// result.json's steps as (id, status).
fn steps_of(result: &Value) -> Vec<(String, String)> {
    result["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    (
                        s["id"].as_str().unwrap_or("?").to_owned(),
                        s["status"].as_str().unwrap_or("?").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// result.json's steps, one per line.
pub fn steps_table(result: &Value) -> String {
    result["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    format!(
                        "  {:<14} {:<9} {}",
                        s["id"].as_str().unwrap_or("?"),
                        s["status"].as_str().unwrap_or("?"),
                        s["summary"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The assertions every scenario shares, on the run's report (result.json
/// `success` with the expected steps and no error; stage 2 `success` with
/// the Tools installed) and the check block of its last boot (the system
/// up, multi-user active, rescue and emergency not, and what `expected`
/// names). Collects every problem before failing; returns the check
/// block.
pub fn assert_fixed(report: &RunReport, expected: &Expected) -> Result<GuestCheck> {
    let mut problems: Vec<String> = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };

    // result.json.
    let result = report.result.as_ref().context("no result.json")?;
    expect(
        result["status"] == "success",
        format!("result.json status {}", result["status"]),
    );
    let steps = steps_of(result);
    let mut at = 0;
    for (id, status) in &expected.steps {
        match steps[at..].iter().position(|(i, _)| i == id) {
            None => expect(
                false,
                format!("result.json: no step {id} after the ones before it: {steps:?}"),
            ),
            Some(k) => {
                at += k + 1;
                let found = &steps[at - 1].1;
                expect(
                    found == status,
                    format!("result.json: step {id} is {found}, expected {status}"),
                );
            }
        }
    }
    for (id, status) in &steps {
        expect(status != "failed", format!("result.json: step {id} failed"));
        if !expected.steps.iter().any(|(e, _)| e == id) {
            eprintln!("note: result.json has a step this test does not know: {id} {status}");
        }
    }
    let errors = result["errors"].as_array().cloned().unwrap_or_default();
    expect(
        errors.is_empty(),
        format!("result.json has errors: {errors:?}"),
    );
    if let Some(warnings) = result["warnings"].as_array().filter(|w| !w.is_empty()) {
        eprintln!("note: result.json warnings: {warnings:?}");
    }
    let guest = &result["guest"];
    for (key, wanted) in [
        ("osId", &expected.os_id),
        ("firmware", &expected.firmware),
        ("arch", &expected.arch),
    ] {
        if let Some(wanted) = wanted {
            expect(
                guest[key] == wanted.as_str(),
                format!("result.json guest.{key} {}, expected {wanted}", guest[key]),
            );
        }
    }
    for kernel in &expected.kernels {
        let listed = guest["kernels"]
            .as_array()
            .is_some_and(|k| k.iter().any(|v| v == kernel.as_str()));
        expect(
            listed,
            format!(
                "result.json guest.kernels {} lacks {kernel}",
                guest["kernels"]
            ),
        );
    }

    // Stage 2.
    match &report.stage2 {
        None => expect(false, "no stage-2 outcome on its serial console".into()),
        Some(outcome) => {
            expect(
                outcome["status"] == "success",
                format!("stage 2 outcome: {outcome}"),
            );
            expect(
                outcome["toolsInstalled"] == true,
                format!("stage 2 installed no VMware Tools: {outcome}"),
            );
        }
    }

    // The check boot.
    let serial = report
        .serial_log(Boot::Check)
        .context("no serial log of the check boot")?;
    // Firmware writes bytes that are not UTF-8 (OVMF's screen control).
    let bytes = std::fs::read(serial).with_context(|| format!("reading {}", serial.display()))?;
    let text = String::from_utf8_lossy(&bytes).replace('\r', "");
    let check = GuestCheck::parse(&text)
        .map_err(|e| anyhow::anyhow!("the check boot's serial log {}: {e}", serial.display()))?;
    expect(
        matches!(check.system.as_str(), "running" | "degraded"),
        format!("system state {}", check.system),
    );
    if let Some(target) = &expected.default_target {
        expect(
            check.default_target == *target,
            format!(
                "default target {}, not the original {target}",
                check.default_target
            ),
        );
    }
    expect(
        check.is_active("multi-user"),
        format!(
            "multi-user.target is not active: {:?} (default {})",
            check.targets, check.default_target
        ),
    );
    for t in ["rescue", "emergency"] {
        expect(!check.is_active(t), format!("{t}.target is active"));
    }
    if expected.stable_root {
        // The boot loader names the root in a way the move keeps, whatever
        // the source did (the stack saw the disk as sda or sdb, depending
        // on the order it was found in).
        match kernel_root_arg(&text) {
            None => expect(
                false,
                "no root= on the check boot's kernel command line".into(),
            ),
            Some(root) => expect(
                is_stable_root(&root),
                format!("the kernel boots with root={root}, a disk name the target need not keep"),
            ),
        }
    }
    if !expected.kernels.is_empty() {
        expect(
            expected.kernels.contains(&check.kernel),
            format!(
                "kernel {} is not one of the guest's {:?}",
                check.kernel, expected.kernels
            ),
        );
    }
    if let Some(hostname) = &expected.hostname {
        expect(
            check.hostname == *hostname,
            format!("hostname {}, expected {hostname}", check.hostname),
        );
    }
    if let Some(selinux) = &expected.selinux {
        expect(
            check.selinux == *selinux,
            format!("SELinux {}, expected {selinux} (as before)", check.selinux),
        );
    }
    if expected.selinux_all_labelled {
        match check.other_value(SELINUX_UNLABELED_KEY) {
            None => expect(
                false,
                format!("the check block has no {SELINUX_UNLABELED_KEY}= line"),
            ),
            Some(v) => expect(
                v.split_whitespace().next() == Some("0"),
                format!("files without their SELinux label (count, first paths): {v}"),
            ),
        }
    }
    expect(
        !check.stage2_present,
        "the stage-2 agent or its hook is still installed".into(),
    );

    // NICs: ethN in the target VM's order, the target MAC, the address
    // the source NIC had.
    expect(
        check.nics.len() == expected.nics.len(),
        format!(
            "{} NICs, expected {}: {:?}",
            check.nics.len(),
            expected.nics.len(),
            check.nics
        ),
    );
    for nic in &expected.nics {
        let name = &nic.name;
        let Some(found) = check.nics.iter().find(|n| n.name == *name) else {
            expect(false, format!("no NIC {name} (target MAC {})", nic.mac));
            continue;
        };
        expect(
            found.mac.eq_ignore_ascii_case(&nic.mac),
            format!(
                "{name} has MAC {}, expected the target's {}",
                found.mac, nic.mac
            ),
        );
        match &nic.address {
            None => expect(
                false,
                format!("{name}: no source NIC {} in the recipe", nic.source),
            ),
            Some(NicAddress::Dhcp) => expect(
                found.ipv4.iter().any(|a| a.starts_with("10.0.2.")),
                format!(
                    "{name} (was {}, DHCP) has no 10.0.2.x address: {:?}",
                    nic.source, found.ipv4
                ),
            ),
            Some(NicAddress::Static { address, .. }) => expect(
                found.ipv4.contains(address),
                format!(
                    "{name} (was {}, static) lacks {address}: {:?}",
                    nic.source, found.ipv4
                ),
            ),
        }
    }

    // Mounts.
    for m in &expected.mounts {
        match check.mount_at(&m.mountpoint) {
            None => expect(
                false,
                format!("{} is not mounted: {:?}", m.mountpoint, check.mounts),
            ),
            Some(found) => expect(
                m.devices.contains(&found.device) && found.fstype == m.fstype,
                format!(
                    "{} is {} {}, expected {} {}",
                    m.mountpoint,
                    found.device,
                    found.fstype,
                    m.devices.join(" or "),
                    m.fstype
                ),
            ),
        }
    }

    if problems.is_empty() {
        return Ok(check);
    }
    let fixup_log = report
        .logs
        .fixup_log
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    bail!(
        "{} problem(s):\n  - {}\n--- the check block ---\n{}\n--- result.json steps ---\n{}\n\
         --- last lines of the check boot's serial log ({}) ---\n{}\n\
         --- last lines of fixup.log ---\n{}",
        problems.len(),
        problems.join("\n  - "),
        report.check.clone().unwrap_or_default().trim_end(),
        steps_table(result),
        serial.display(),
        tail_lines(&text, TAIL),
        tail_lines(&fixup_log, TAIL)
    )
}

/// The line a passed scenario prints and leaves in `passed.txt`.
pub fn passed_line(
    id: &str,
    total_s: f64,
    inputs_s: f64,
    problem_s: f64,
    run_s: f64,
    report: &RunReport,
    check: &GuestCheck,
) -> String {
    format!(
        "{id}: PASSED in {total_s:.1} s (inputs {inputs_s:.1} s, prove-the-problem \
         {problem_s:.1} s, run {run_s:.1} s: {}); kernel {}, SELinux {}, NICs {}, mounts {}",
        report
            .phases
            .iter()
            .map(|p| format!("{} {:.0}", p.name, p.seconds))
            .collect::<Vec<_>>()
            .join(", "),
        check.kernel,
        check.selinux,
        check
            .nics
            .iter()
            .map(|n| format!("{} {} {}", n.name, n.mac, n.ipv4.join(",")))
            .collect::<Vec<_>>()
            .join("; "),
        check
            .mounts
            .iter()
            .map(|m| format!("{} {}", m.device, m.mountpoint))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_initramfs_giving_up() {
        let tools = "Begin: Running /scripts/local-premount ... done.\n\
                     ALERT!  /dev/sda1 does not exist.  Dropping to a shell!\n";
        assert_eq!(
            no_root_line(tools),
            Some("ALERT!  /dev/sda1 does not exist.  Dropping to a shell!")
        );
        let dracut = "[  190.1] dracut-initqueue[201]: Warning: dracut-initqueue: starting \
                      timeout scripts\n\
                      [  260.3] dracut: Warning: /dev/sda1 does not exist\n";
        assert_eq!(
            no_root_line(dracut),
            Some("[  260.3] dracut: Warning: /dev/sda1 does not exist")
        );
        assert!(no_root_line("Warning: something else\nall is well\n").is_none());
    }
}
