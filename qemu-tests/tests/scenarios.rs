//! The end-to-end scenarios of issue 7: for each test guest, a whole
//! migration played by the manager emulator against the real stack image
//! under QEMU (TCG), then the guest booting on its own on VMware's
//! virtual hardware.
//!
//! Each scenario:
//!
//! 1. with `OSAM_QEMU_FULL=1` only, proves the problem: the unfixed guest
//!    on VMware hardware (pvscsi or, under UEFI, AHCI; VMXNET3) does not
//!    get to its check block — its initramfs stops at "ALERT! /dev/sdXN
//!    does not exist" — or boots with NIC names its configuration does not
//!    know and no addresses;
//! 2. runs the whole flow ([`emulator::run`]): stage 1 from the fixup disk,
//!    stage 2 with the Tools ISO, a last boot that prints the guest's check
//!    block;
//! 3. asserts, in one function for every scenario ([`assert_fixed`]):
//!    result.json `success` with the expected steps and statuses, no error;
//!    the stage-2 agent's outcome `success` with VMware Tools installed;
//!    in the check boot the guest's original default target reached
//!    (multi-user active, not rescue or emergency), NICs `eth0`, `eth1`, …
//!    in the target VM's order with the *target* MACs and the addresses
//!    their source NIC was configured with (DHCP from QEMU's user
//!    networking: 10.0.2.x; a static address as configured), every fstab
//!    mount of the recipe mounted from the right device with the right
//!    type, SELinux as it was, and the stage-2 code gone.
//!
//! | scenario | guest | tier |
//! |---|---|---|
//! | (a) | Debian 12 amd64, BIOS, ext4 `/` as `/dev/sda1`, `ens192`/`ens224`, no `vmw_pvscsi` in the initramfs | default |
//! | (b) | Debian 12 amd64, UEFI, `/boot/efi` on the ESP, disks on AHCI | default |
//! | (c) | Debian 12 i386 on the i686 stack | default |
//! | (e) | (a) with a second disk, `/data` as `/dev/sdb1` | `OSAM_QEMU_FULL=1` |
//! | (f) | (a) on btrfs, subvolumes `@` (`/`) and `@home` | `OSAM_QEMU_FULL=1` |
//! | (h) | (a), the target's NICs in PCI order taking the source NICs in reverse MAC order | `OSAM_QEMU_FULL=1` |
//!
//! (d), root on LVM, is in `scenario_lvm.rs` (its guest is built in a VM);
//! (g), a RHEL-like guest, has no recipe yet (docs/testing.md).
//!
//! Guests, Tools ISOs and stack images come from their caches (built on
//! first use: root and the Debian archive are needed). Scenario VMs run
//! one at a time; `OSAM_QEMU_VMS=2` lets two scenarios run side by side
//! (each VM has one vCPU). The logs of each scenario stay in
//! `target/osam-scenarios/<migration id>/`; a failure names the step and
//! shows the logs' last lines.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use osam_qemu::emulator::blueprint::normalize_mac;
use osam_qemu::emulator::{self, Blueprint, Boot, RunOptions, RunReport, blueprint_for_guest};
use osam_qemu::guests::check::{
    CHECK_BEGIN, CHECK_END, GuestCheck, is_stable_root, kernel_root_arg,
};
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::{DEBIAN_SUITE, NicAddress, kernel_partition_name};
use osam_qemu::guests::tools_iso::tools_iso;
use osam_qemu::guests::{GuestArch, GuestImage, Hardware, Recipe, guest_image};
use osam_qemu::image::stack_image;
use osam_qemu::paths::{tail_lines, workspace_root};
use osam_qemu::vm::Vm;
use serde_json::Value;

/// The steps stage 1 reports for a Debian guest, in order, with their
/// status: nothing to change in the first four; the storage references,
/// the network, the stage-2 preparation, the initramfs (for
/// `vmw_pvscsi`/`ahci`) and the boot loader (command line, install,
/// config) all change. Other steps may come between them (reported, not
/// failed, unless they failed).
const EXPECTED_STEPS: [(&str, &str); 9] = [
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
const DEBIAN_DEFAULT_TARGET: &str = "graphical.target";

/// The prove-the-problem boot: from QEMU's start to the initramfs giving
/// up on the root device (it waits about 30 s) or to a check block.
const PROBLEM_TIMEOUT: Duration = Duration::from_secs(480);

/// How long the check boot's guest gets to shut down on the ACPI power
/// button before `quit` (the emulator's default is 120 s, cut short after
/// 15 s of silence on the console).
const POWER_OFF_GRACE_SECONDS: u64 = 5;

/// Lines of a serial log shown with a failure.
const TAIL: usize = 60;

/// One scenario of issue 7.
struct Scenario {
    /// Its letter in the issue (`a` … `h`).
    letter: char,
    /// The guest.
    recipe: Recipe,
    /// Whether the target VM's NICs (in PCI order) take the source NICs
    /// in reverse order (h): the name and configuration must follow the
    /// source MAC, not the slot.
    reversed_nics: bool,
    /// Whether to boot the unfixed guest on VMware hardware first (with
    /// `OSAM_QEMU_FULL=1`); (h) shares (a)'s unfixed guest.
    prove: bool,
    /// Only with `OSAM_QEMU_FULL=1`.
    full_only: bool,
}

impl Scenario {
    fn new(letter: char, recipe: Recipe) -> Self {
        Self {
            letter,
            recipe,
            reversed_nics: false,
            prove: true,
            full_only: false,
        }
    }

    fn full_only(mut self) -> Self {
        self.full_only = true;
        self
    }

    /// The migration id, which names the logs folder.
    fn id(&self) -> String {
        let suffix = if self.reversed_nics {
            "-nics-reversed"
        } else {
            ""
        };
        format!("scenario-{}-{}{suffix}", self.letter, self.recipe.name)
    }

    /// The blueprint the manager would make for the migrated guest.
    fn blueprint(&self, image: &GuestImage) -> Blueprint {
        let mut bp = blueprint_for_guest(image, &self.id());
        // After its check block the guest's fate does not matter (its
        // overlay is thrown away): `quit` soon after the power button.
        bp.timeouts.power_off_seconds = POWER_OFF_GRACE_SECONDS;
        if self.reversed_nics {
            // ethernet0 gets the last source NIC, ethernet1 the one before
            // …; the target MACs stay in PCI order.
            let sources: Vec<(String, String)> = bp
                .nics
                .iter()
                .rev()
                .map(|n| (n.source_name.clone(), n.source_mac.clone()))
                .collect();
            for (nic, (name, mac)) in bp.nics.iter_mut().zip(sources) {
                nic.source_name = name;
                nic.source_mac = mac;
            }
        }
        bp
    }
}

fn full() -> bool {
    std::env::var_os("OSAM_QEMU_FULL").is_some_and(|v| v == "1")
}

/// How many scenario runs may have VMs at once (`OSAM_QEMU_VMS`,
/// default 1: the machine has 2 cores, shared).
fn max_vms() -> usize {
    std::env::var("OSAM_QEMU_VMS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// A place among the scenario runs allowed at once; given back on drop
/// (also when the test panics).
struct VmSlot;

impl VmSlot {
    fn take() -> VmSlot {
        let max = max_vms();
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= max {
            running = FREED.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        VmSlot
    }
}

impl Drop for VmSlot {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        *running = running.saturating_sub(1);
        FREED.notify_one();
    }
}

/// `target/osam-scenarios/<id>/`, emptied.
fn logs_dir(id: &str) -> Result<PathBuf> {
    let dir = workspace_root().join("target/osam-scenarios").join(id);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs scenario `s` (or says why it is skipped).
fn run_scenario(s: Scenario) -> Result<()> {
    let id = s.id();
    if s.full_only && !full() {
        eprintln!("{id}: skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
        return Ok(());
    }
    let waiting = Instant::now();
    let _slot = VmSlot::take();
    let t0 = Instant::now();
    let say = |line: &str| eprintln!("[{id} {:7.1}s] {line}", t0.elapsed().as_secs_f64());
    if waiting.elapsed() > Duration::from_secs(1) {
        say(&format!(
            "waited {:.0?} for another scenario's VMs",
            waiting.elapsed()
        ));
    }

    let image = guest_image(&s.recipe).with_context(|| format!("the guest {}", s.recipe.name))?;
    let iso = tools_iso(&image).context("the Tools ISO")?;
    let bp = s.blueprint(&image);
    let stack = stack_image(bp.arch.arch())
        .with_context(|| format!("the {} stack image", bp.arch.arch()))?;
    let inputs_s = t0.elapsed().as_secs_f64();
    say(&format!(
        "guest {}, Tools ISO {}, stack {} ({inputs_s:.1} s)",
        image.boot_disk().display(),
        iso.path.display(),
        stack.vmdk.display()
    ));
    let logs = logs_dir(&id)?;
    std::fs::write(
        logs.join("blueprint.json"),
        serde_json::to_string_pretty(&bp)? + "\n",
    )?;

    let mut problem_s = 0.0;
    if s.prove && full() {
        let t = Instant::now();
        let how = prove_the_problem(&image, &logs)
            .with_context(|| format!("{id}: proving the problem (logs in {})", logs.display()))?;
        problem_s = t.elapsed().as_secs_f64();
        say(&format!(
            "the unfixed guest on VMware hardware: {how} ({problem_s:.1} s)"
        ));
    }

    let mut options = RunOptions::new(&stack.vmdk, &logs);
    options.tools_iso = Some(iso.path.clone());
    let t = Instant::now();
    let report = emulator::run(&bp, &options, &mut |line| eprintln!("[{id}] {line}"));
    let run_s = t.elapsed().as_secs_f64();
    say(&format!(
        "the run took {run_s:.1} s (logs in {}):\n{}",
        logs.display(),
        report.summary()
    ));
    if let Some(failure) = &report.failure {
        bail!(
            "{id}: the run failed at {failure}\n(every log of the run: {})",
            logs.display()
        );
    }
    let check = assert_fixed(&image, &bp, &report)
        .with_context(|| format!("{id}: the fixed guest (logs in {})", logs.display()))?;
    let line = format!(
        "{id}: PASSED in {:.1} s (inputs {inputs_s:.1} s, prove-the-problem {problem_s:.1} s, \
         run {run_s:.1} s: {}); kernel {}, NICs {}",
        t0.elapsed().as_secs_f64(),
        report
            .phases
            .iter()
            .map(|p| format!("{} {:.0}", p.name, p.seconds))
            .collect::<Vec<_>>()
            .join(", "),
        check.kernel,
        check
            .nics
            .iter()
            .map(|n| format!("{} {} {}", n.name, n.mac, n.ipv4.join(",")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    eprintln!("{line}");
    std::fs::write(logs.join("passed.txt"), line + "\n")?;
    Ok(())
}

/// What the unfixed guest did on VMware hardware.
enum Unfixed {
    /// The initramfs gave up on the root device (the line).
    NoRoot(String),
    /// It booted; the check block.
    Booted(Box<GuestCheck>),
}

/// Boots the unfixed guest on VMware hardware and makes sure it is
/// broken there: the initramfs stops at "ALERT! … does not exist", or the
/// guest comes up with none of its configured NIC names and no address.
/// Returns what happened, for the log.
fn prove_the_problem(image: &GuestImage, logs: &Path) -> Result<String> {
    let config = image.vm_config(
        Hardware::Vmware,
        logs,
        logs.join("unfixed-on-vmware.serial.log"),
    )?;
    let mut vm = Vm::start(&config).context("starting QEMU")?;
    let log = vm.serial_log_path().to_path_buf();
    let seen = vm.wait_for(
        || {
            let bytes = std::fs::read(&log).ok()?;
            let text = String::from_utf8_lossy(&bytes).replace('\r', "");
            if let Some(line) = text
                .lines()
                .find(|l| l.contains("ALERT!") && l.contains("does not exist"))
            {
                return Some(Unfixed::NoRoot(line.trim().to_owned()));
            }
            if text.contains(CHECK_BEGIN) && text.contains(CHECK_END) {
                return GuestCheck::parse(&text)
                    .ok()
                    .map(|c| Unfixed::Booted(Box::new(c)));
            }
            None
        },
        PROBLEM_TIMEOUT,
        "the initramfs's \"ALERT! … does not exist\" or the check block",
    );
    vm.kill();
    let seen = seen?;
    match seen {
        Unfixed::NoRoot(line) => Ok(format!("does not boot: {line}")),
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
                     ({:?}): this scenario proves nothing\n--- last lines of {} ---\n{}",
                    check.nics,
                    log.display(),
                    tail_lines(&vm.serial_log(), TAIL)
                );
            }
            Ok(format!(
                "boots with NICs {:?} (configured: {configured:?}) and no address",
                check.nics.iter().map(|n| &n.name).collect::<Vec<_>>()
            ))
        }
    }
}

/// The assertions every scenario shares, on the run's report and the
/// check block of its last boot. Collects every problem before failing;
/// returns the check block.
fn assert_fixed(image: &GuestImage, bp: &Blueprint, report: &RunReport) -> Result<GuestCheck> {
    let recipe = image.recipe();
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
    let steps: Vec<(&str, &str)> = result["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    (
                        s["id"].as_str().unwrap_or("?"),
                        s["status"].as_str().unwrap_or("?"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut at = 0;
    for (id, status) in EXPECTED_STEPS {
        match steps[at..].iter().position(|(i, _)| *i == id) {
            None => expect(
                false,
                format!("result.json: no step {id} after the ones before it: {steps:?}"),
            ),
            Some(k) => {
                at += k + 1;
                let found = steps[at - 1].1;
                expect(
                    found == status,
                    format!("result.json: step {id} is {found}, expected {status}"),
                );
            }
        }
    }
    for (id, status) in &steps {
        expect(
            *status != "failed",
            format!("result.json: step {id} failed"),
        );
        if !EXPECTED_STEPS.iter().any(|(e, _)| e == id) {
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
    expect(
        guest["osId"] == "debian",
        format!("result.json guest.osId {}", guest["osId"]),
    );
    expect(
        guest["firmware"] == bp.firmware.protocol(),
        format!(
            "result.json guest.firmware {}, expected {}",
            guest["firmware"],
            bp.firmware.protocol()
        ),
    );
    expect(
        guest["arch"] == bp.arch.arch().name(),
        format!("result.json guest.arch {}", guest["arch"]),
    );
    for kernel in &image.manifest.kernels {
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
    expect(
        check.default_target == DEBIAN_DEFAULT_TARGET,
        format!(
            "default target {}, not the original {DEBIAN_DEFAULT_TARGET}",
            check.default_target
        ),
    );
    expect(
        check.is_active("multi-user"),
        "multi-user.target is not active".into(),
    );
    for t in ["rescue", "emergency"] {
        expect(!check.is_active(t), format!("{t}.target is active"));
    }
    // The boot loader names the root in a way the move keeps, whatever
    // the source did (these guests name it /dev/sda1; the stack saw the
    // disk as sda or sdb, depending on the order it was found in).
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
    expect(
        image.manifest.kernels.contains(&check.kernel),
        format!(
            "kernel {} is not one of the guest's {:?}",
            check.kernel, image.manifest.kernels
        ),
    );
    expect(
        check.hostname == recipe.hostname,
        format!("hostname {}, expected {}", check.hostname, recipe.hostname),
    );
    // The Debian guests have no SELinux, before and after.
    expect(
        check.selinux == "none",
        format!("SELinux {}, expected none", check.selinux),
    );
    expect(
        !check.stage2_present,
        "the stage-2 agent or its hook is still installed".into(),
    );

    // NICs: ethN in the target VM's order, the target MAC, the address
    // the source NIC had.
    expect(
        check.nics.len() == bp.nics.len(),
        format!("{} NICs, expected {}", check.nics.len(), bp.nics.len()),
    );
    for (i, nic) in bp.nics.iter().enumerate() {
        let name = nic.target_name.clone().unwrap_or_else(|| format!("eth{i}"));
        let mac = normalize_mac(&nic.mac).unwrap_or_else(|_| nic.mac.clone());
        let Some(found) = check.nics.iter().find(|n| n.name == name) else {
            expect(false, format!("no NIC {name} (target MAC {mac})"));
            continue;
        };
        expect(
            found.mac == mac,
            format!("{name} has MAC {}, expected the target's {mac}", found.mac),
        );
        let source = recipe
            .nics
            .iter()
            .find(|n| n.mac.eq_ignore_ascii_case(&nic.source_mac));
        match source.map(|n| &n.address) {
            None => expect(
                false,
                format!("{name}: no source NIC with MAC {}", nic.source_mac),
            ),
            Some(NicAddress::Dhcp) => expect(
                found.ipv4.iter().any(|a| a.starts_with("10.0.2.")),
                format!(
                    "{name} (was {}, DHCP) has no 10.0.2.x address: {:?}",
                    nic.source_name, found.ipv4
                ),
            ),
            Some(NicAddress::Static { address, .. }) => expect(
                found.ipv4.contains(address),
                format!(
                    "{name} (was {}, static) lacks {address}: {:?}",
                    nic.source_name, found.ipv4
                ),
            ),
        }
    }

    // Every fstab mount of the recipe, from its partition on the target
    // disks (sda, sdb, … in unit order) and of its type.
    for (d, p, fs, m) in recipe.mounts() {
        let device = kernel_partition_name(d, p);
        match check.mount_at(&m.mountpoint) {
            None => expect(false, format!("{} is not mounted", m.mountpoint)),
            Some(found) => expect(
                found.device == device && found.fstype == fs.kind.name(),
                format!(
                    "{} is {} {}, expected {device} {}",
                    m.mountpoint,
                    found.device,
                    found.fstype,
                    fs.kind.name()
                ),
            ),
        }
    }

    if problems.is_empty() {
        return Ok(check);
    }
    let check_text = report.check.clone().unwrap_or_default();
    bail!(
        "{} problem(s):\n  - {}\n--- the check block ---\n{}\n--- result.json steps ---\n{}\n\
         --- last lines of the check boot's serial log ({}) ---\n{}",
        problems.len(),
        problems.join("\n  - "),
        check_text.trim_end(),
        steps_table(result),
        serial.display(),
        tail_lines(&text, TAIL)
    )
}

/// result.json's steps, one per line.
fn steps_table(result: &Value) -> String {
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

fn mirror() -> Result<String> {
    host_mirror(DEBIAN_SUITE).context("picking a Debian mirror")
}

/// (a) Debian 12 amd64, BIOS, `/dev/sda1` in fstab and `root=`,
/// `ens192`/`ens224` in `/etc/network/interfaces`, no `vmw_pvscsi` in its
/// gzip initramfs.
#[test]
fn scenario_a_debian12_bios() -> Result<()> {
    run_scenario(Scenario::new(
        'a',
        Recipe::debian12_bios(GuestArch::Amd64, &mirror()?),
    ))
}

/// (b) Debian 12 amd64, UEFI: GPT, `/boot/efi` on the ESP (`/dev/sda1`),
/// `/` on `/dev/sda2`, the disks on AHCI (Debian's OVMF has no PVSCSI
/// driver).
#[test]
fn scenario_b_debian12_uefi() -> Result<()> {
    run_scenario(Scenario::new(
        'b',
        Recipe::debian12_uefi(GuestArch::Amd64, &mirror()?, true),
    ))
}

/// (c) guest (a) for i386 (`linux-image-686`), fixed by the i686 stack.
#[test]
fn scenario_c_debian12_i386() -> Result<()> {
    run_scenario(Scenario::new(
        'c',
        Recipe::debian12_bios(GuestArch::I386, &mirror()?),
    ))
}

/// (e) guest (a) with a second disk: `/data` as `/dev/sdb1`.
#[test]
fn scenario_e_data_disk() -> Result<()> {
    run_scenario(
        Scenario::new(
            'e',
            Recipe::debian12_bios(GuestArch::Amd64, &mirror()?).with_data_disk(),
        )
        .full_only(),
    )
}

/// (f) guest (a) on btrfs: subvolume `@` at `/`, `@home` at `/home`.
#[test]
fn scenario_f_btrfs_subvolumes() -> Result<()> {
    run_scenario(
        Scenario::new(
            'f',
            Recipe::debian12_bios_btrfs(GuestArch::Amd64, &mirror()?),
        )
        .full_only(),
    )
}

/// (h) guest (a) whose two source NICs come to the target VM in reverse:
/// ethernet0 (first in PCI order) replaces `ens224` (the higher source
/// MAC, static 192.168.50.10), ethernet1 replaces `ens192` (DHCP). eth0
/// must be the NIC that replaced `ens224`, with its static address, and
/// eth1 the DHCP one: names and configurations follow the source MAC, not
/// the source name's or MAC's order. Its unfixed guest is (a)'s, proven
/// there.
#[test]
fn scenario_h_nics_in_reverse_order() -> Result<()> {
    let mut s = Scenario::new('h', Recipe::debian12_bios(GuestArch::Amd64, &mirror()?)).full_only();
    s.reversed_nics = true;
    s.prove = false;
    run_scenario(s)
}

/// The blueprint of (h) really reverses the pairing (no VM).
#[test]
fn scenario_h_blueprint_pairs_the_nics_in_reverse() -> Result<()> {
    use osam_qemu::emulator::guest::target_mac;
    use osam_qemu::guests::manifest::GuestManifest;
    use osam_qemu::guests::recipe::BUILDER_VERSION;
    let recipe = Recipe::debian12_bios(GuestArch::Amd64, "http://mirror/debian");
    let image = GuestImage {
        manifest: GuestManifest {
            builder_version: BUILDER_VERSION,
            name: recipe.name.clone(),
            hash: recipe.hash(),
            recipe: recipe.clone(),
            kernels: vec![],
            packages: vec![],
            initramfs_modules: Default::default(),
            grub_cmdline: vec![],
            partitions: vec![],
            timings: Default::default(),
        },
        disks: vec!["/cache/x.qcow2".into()],
        dpkg_status: "/cache/s".into(),
        build_log: "/cache/l".into(),
    };
    let mut s = Scenario::new('h', recipe.clone());
    s.reversed_nics = true;
    let bp = s.blueprint(&image);
    bp.check()?;
    let map = bp.network_interface_map();
    let interfaces = map["interfaces"].as_array().context("interfaces")?;
    anyhow::ensure!(interfaces.len() == 2, "{map}");
    for (i, source) in [&recipe.nics[1], &recipe.nics[0]].into_iter().enumerate() {
        anyhow::ensure!(
            interfaces[i]["sourceName"] == source.name.as_str()
                && interfaces[i]["sourceMac"] == source.mac.as_str()
                && interfaces[i]["targetMac"] == target_mac(i).as_str(),
            "interface {i}: {}",
            interfaces[i]
        );
    }
    // The source MACs' order is the reverse of the target's PCI order.
    let source_macs: Vec<&str> = interfaces
        .iter()
        .map(|n| n["sourceMac"].as_str().unwrap_or(""))
        .collect();
    anyhow::ensure!(source_macs[0] > source_macs[1], "{source_macs:?}");
    anyhow::ensure!(s.id() == "scenario-h-deb12-bios-amd64-nics-reversed");
    Ok(())
}
