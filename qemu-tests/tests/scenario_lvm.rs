//! Guest (d) of issue 7 and its scenario: Debian 12 amd64, BIOS, `/boot`
//! on `/dev/sda1` (ext4, named so in fstab) and `/` on LVM
//! (`/dev/mapper/vg0-root`, VG `vg0` on `/dev/sda2`, with a swap LV), an
//! initramfs with the `lvm2` hook but without `vmw_pvscsi`,
//! `ens192`/`ens224` in `/etc/network/interfaces` (see
//! `osam_qemu::guests::lvm`: the host has no device-mapper, so the LVM is
//! made in a VM running the fixup stack's own kernel).
//!
//! Both tests need `OSAM_QEMU_FULL=1`, root and the Debian archive (the
//! guest is built once and cached):
//!
//! - `guest_d_lvm_boots_at_the_source`: the build's manifest says what the
//!   guest is (GRUB's `root=/dev/mapper/vg0-root`, `dm_mod` in the
//!   initramfs, no `vmw_pvscsi`); on its source hardware (SeaBIOS,
//!   virtio-scsi, virtio-net) it reaches multi-user and its check block
//!   shows `/` from `/dev/mapper/vg0-root` and `/boot` from `/dev/sda1`;
//! - `scenario_d_lvm_root`: the unfixed guest on VMware hardware (pvscsi,
//!   VMXNET3) stops in its initramfs ("ALERT! /dev/mapper/vg0-root does
//!   not exist"); then the manager emulator's whole flow (stage 1 from the
//!   fixup disk, stage 2 with the Tools ISO, a check boot) and the fixed
//!   guest: result.json `success`, stage 2 `success` with the Tools
//!   installed, multi-user active, `eth0`/`eth1` on the target MACs with
//!   their addresses (DHCP 10.0.2.x; 192.168.50.10/24), `/` from
//!   `vg0-root`, `/boot` mounted, the stage-2 code gone.
//!
//! One VM at a time (a lock in this file). The scenario's logs stay in
//! `target/osam-scenarios/scenario-d-<guest>/`; every failure names the
//! step and shows the logs' last lines.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use osam_qemu::emulator::{self, Boot, RunOptions, blueprint_for_guest};
use osam_qemu::guests::check::{CHECK_BEGIN, CHECK_END, GuestCheck, wait_for_check};
use osam_qemu::guests::lvm::{LvmGuest, LvmRecipe, lvm_guest_image};
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::DEBIAN_SUITE;
use osam_qemu::guests::tools_iso::tools_iso;
use osam_qemu::guests::{GuestArch, Hardware};
use osam_qemu::image::stack_image;
use osam_qemu::paths::{tail_lines, workspace_root};
use osam_qemu::vm::{Vm, VmConfig};

/// From QEMU's start to the check block on the source hardware.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// From QEMU's start to the unfixed initramfs giving up on the root (it
/// waits about 30 s) or to a check block.
const PROBLEM_TIMEOUT: Duration = Duration::from_secs(480);
/// How long the check boot's guest gets for the ACPI power-off before
/// `quit` (its overlay is thrown away).
const POWER_OFF_GRACE_SECONDS: u64 = 5;
/// Lines of a log shown with a failure.
const TAIL: usize = 60;

static ONE_VM: Mutex<()> = Mutex::new(());

fn one_vm() -> MutexGuard<'static, ()> {
    ONE_VM.lock().unwrap_or_else(|e| e.into_inner())
}

fn full() -> bool {
    std::env::var_os("OSAM_QEMU_FULL").is_some_and(|v| v == "1")
}

/// Guest (d), built or from the cache, with what its build took.
fn guest() -> Result<LvmGuest> {
    let mirror = host_mirror(DEBIAN_SUITE)?;
    let recipe = LvmRecipe::debian12_bios_lvm(GuestArch::Amd64, &mirror);
    let t0 = Instant::now();
    let guest = lvm_guest_image(&recipe).with_context(|| format!("the guest {}", recipe.stem()))?;
    let t = &guest.details.timings;
    eprintln!(
        "{}: {} ready in {:.1?} (build: mmdebstrap {} s, configure {} s, pack {} s, stack {} s, \
         VM {} s, qcow2 {} s, total {} s; VM steps over 5 s: {})",
        recipe.base.name,
        guest.image.boot_disk().display(),
        t0.elapsed(),
        t.mmdebstrap_s,
        t.configure_s,
        t.pack_s,
        t.stack_s,
        t.vm_s,
        t.convert_s,
        t.total_s,
        t.vm_steps
            .iter()
            .filter(|(s, _)| *s > 5)
            .map(|(s, cmd)| format!("{cmd}: {s} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(guest)
}

/// What the build says the guest is.
fn check_manifest(guest: &LvmGuest) -> Result<()> {
    let m = &guest.image.manifest;
    let root = &guest.details.root_device;
    ensure!(root == "/dev/mapper/vg0-root", "root device {root}");
    ensure!(!m.kernels.is_empty(), "no kernel");
    for wanted in [format!("root={root}"), "console=ttyS0,115200".into()] {
        ensure!(
            m.grub_cmdline.contains(&wanted),
            "GRUB's command line {:?} lacks {wanted}",
            m.grub_cmdline
        );
    }
    for module in ["dm_mod", "virtio_scsi", "sd_mod", "ext4"] {
        ensure!(m.initramfs_has(module), "the initramfs lacks {module}");
    }
    for absent in ["vmw_pvscsi", "vmxnet3", "mptspi", "ahci"] {
        ensure!(!m.initramfs_has(absent), "the initramfs has {absent}");
    }
    ensure!(m.package_version("lvm2").is_some(), "lvm2 is not installed");
    ensure!(
        m.package_version("open-vm-tools").is_none(),
        "the guest already has open-vm-tools"
    );
    let parts: Vec<(String, Option<String>)> = m
        .partitions
        .iter()
        .map(|p| (p.kernel_name.clone(), p.fs.clone()))
        .collect();
    ensure!(
        parts
            == [
                ("/dev/sda1".to_owned(), Some("ext4".to_owned())),
                ("/dev/sda2".to_owned(), Some("LVM2_member".to_owned()))
            ],
        "partitions {parts:?}"
    );
    Ok(())
}

/// Starts a VM, runs `phase`; on failure prints the serial log's last
/// lines. QEMU is killed when the phase ends.
fn with_vm<T>(
    name: &str,
    config: &VmConfig,
    phase: impl FnOnce(&mut Vm) -> Result<T>,
) -> Result<T> {
    let mut vm = Vm::start(config).with_context(|| format!("{name}: starting QEMU"))?;
    let outcome = phase(&mut vm);
    if outcome.is_err() {
        eprintln!(
            "===== {name}: last {TAIL} lines of the serial log ({}) =====\n{}\n\
             ===== QEMU's output =====\n{}\n===== end =====",
            vm.serial_log_path().display(),
            vm.serial_tail(TAIL),
            vm.qemu_output().trim()
        );
    }
    vm.kill();
    eprintln!("{name}: VM ran {:.1?}", vm.elapsed());
    outcome.with_context(|| format!("{name} failed"))
}

/// Whether the check block mounts `mountpoint` from one of `devices` as
/// `fstype`.
fn mounted(check: &GuestCheck, mountpoint: &str, devices: &[&str], fstype: &str) -> Result<()> {
    let found = check
        .mount_at(mountpoint)
        .with_context(|| format!("{mountpoint} is not mounted: {:?}", check.mounts))?;
    ensure!(
        devices.contains(&found.device.as_str()) && found.fstype == fstype,
        "{mountpoint} is {} {}, expected {} {fstype}",
        found.device,
        found.fstype,
        devices.join(" or ")
    );
    Ok(())
}

/// The names the fixed guest's root LV may be mounted by.
const ROOT_LV: [&str; 2] = ["/dev/mapper/vg0-root", "/dev/vg0/root"];

#[test]
fn guest_d_lvm_boots_at_the_source() -> Result<()> {
    if !full() {
        eprintln!("skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
        return Ok(());
    }
    let _one = one_vm();
    let guest = guest()?;
    check_manifest(&guest)?;
    let image = &guest.image;
    let name = &image.recipe().name;
    let work = tempfile::Builder::new()
        .prefix("osam-guest-d-lvm-")
        .tempdir()?;
    let config = image.vm_config(
        Hardware::Source,
        work.path(),
        work.path().join("source.serial.log"),
    )?;
    with_vm(&format!("{name} on its source hardware"), &config, |vm| {
        let check = wait_for_check(vm, 0, BOOT_TIMEOUT)?;
        eprintln!("{name}: check block after {:.1?}: {check:?}", vm.elapsed());
        ensure!(
            check.is_active("multi-user") && !check.is_active("emergency"),
            "not in multi-user: {check:?}"
        );
        ensure!(
            matches!(check.system.as_str(), "running" | "degraded"),
            "system state {}",
            check.system
        );
        ensure!(
            image.manifest.kernels.contains(&check.kernel),
            "kernel {}",
            check.kernel
        );
        ensure!(check.hostname == image.recipe().hostname && !check.stage2_present);
        mounted(&check, "/", &ROOT_LV[..1], "ext4")?;
        mounted(&check, "/boot", &["/dev/sda1"], "ext4")?;
        // QEMU names the NICs by PCI slot (ens4, …): the configuration
        // of ens192/ens224 does not match them.
        ensure!(check.nics.len() == 2, "NICs {:?}", check.nics);
        for nic in &image.recipe().nics {
            let found = check
                .nic_by_mac(&nic.mac)
                .with_context(|| format!("no NIC with MAC {}: {:?}", nic.mac, check.nics))?;
            ensure!(found.name != nic.name, "QEMU named a NIC {}", found.name);
        }
        Ok(())
    })
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

/// Boots the unfixed guest on VMware hardware: its initramfs must give
/// up on the root LV (no `vmw_pvscsi`, so no disk, so no PV). Returns the
/// ALERT line.
fn prove_the_problem(guest: &LvmGuest, logs: &Path) -> Result<String> {
    let config = guest.image.vm_config(
        Hardware::Vmware,
        logs,
        logs.join("unfixed-on-vmware.serial.log"),
    )?;
    let root = guest.details.root_device.clone();
    with_vm("the unfixed guest on VMware hardware", &config, |vm| {
        let log = vm.serial_log_path().to_path_buf();
        let seen = vm.wait_for(
            || {
                let text = String::from_utf8_lossy(&std::fs::read(&log).ok()?).into_owned();
                if text.contains(CHECK_BEGIN) && text.contains(CHECK_END) {
                    return Some(Err(()));
                }
                text.lines()
                    .find(|l| l.contains("ALERT!") && l.contains("does not exist"))
                    .map(|l| Ok(l.trim().to_owned()))
            },
            PROBLEM_TIMEOUT,
            "the initramfs's \"ALERT! … does not exist\"",
        )?;
        match seen {
            Ok(line) if line.contains(&root) => Ok(line),
            Ok(line) => bail!("the initramfs gave up on something else than {root}: {line}"),
            Err(()) => bail!("the unfixed guest booted on VMware hardware: this proves nothing"),
        }
    })
}

#[test]
fn scenario_d_lvm_root() -> Result<()> {
    if !full() {
        eprintln!("skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
        return Ok(());
    }
    let _one = one_vm();
    let t0 = Instant::now();
    let guest = guest()?;
    check_manifest(&guest)?;
    let image = &guest.image;
    let id = format!("scenario-d-{}", image.recipe().name);
    let say = |line: &str| eprintln!("[{id} {:7.1}s] {line}", t0.elapsed().as_secs_f64());
    let iso = tools_iso(image).context("the Tools ISO")?;
    let mut bp = blueprint_for_guest(image, &id);
    bp.timeouts.power_off_seconds = POWER_OFF_GRACE_SECONDS;
    let stack = stack_image(bp.arch.arch()).context("the x86_64 stack image")?;
    let inputs_s = t0.elapsed().as_secs_f64();
    say(&format!(
        "guest {}, Tools ISO {} ({} packages), stack {} ({inputs_s:.1} s)",
        image.boot_disk().display(),
        iso.path.display(),
        iso.debs.len(),
        stack.vmdk.display()
    ));
    let logs = logs_dir(&id)?;
    std::fs::write(
        logs.join("blueprint.json"),
        serde_json::to_string_pretty(&bp)? + "\n",
    )?;

    // 1. The problem.
    let t = Instant::now();
    let alert = prove_the_problem(&guest, &logs)
        .with_context(|| format!("{id}: proving the problem (logs in {})", logs.display()))?;
    let problem_s = t.elapsed().as_secs_f64();
    say(&format!(
        "unfixed on VMware hardware: {alert} ({problem_s:.1} s)"
    ));

    // 2. The manager's whole flow.
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

    // 3. The fixed guest.
    let serial = report
        .serial_log(Boot::Check)
        .context("no serial log of the check boot")?
        .to_path_buf();
    let serial_text = String::from_utf8_lossy(&std::fs::read(&serial)?).replace('\r', "");
    let fixup_log = report
        .logs
        .fixup_log
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let check = assert_fixed(&report, &serial_text).with_context(|| {
        format!(
            "{id}: the fixed guest (logs in {})\n--- last lines of the check boot's serial log \
             ({}) ---\n{}\n--- last lines of fixup.log ---\n{}",
            logs.display(),
            serial.display(),
            tail_lines(&serial_text, TAIL),
            tail_lines(&fixup_log, TAIL)
        )
    })?;
    let line = format!(
        "{id}: PASSED in {:.1} s (inputs {inputs_s:.1} s, prove-the-problem {problem_s:.1} s, \
         run {run_s:.1} s: {}); kernel {}, NICs {}, mounts {}",
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
            .join("; "),
        check
            .mounts
            .iter()
            .map(|m| format!("{} {}", m.device, m.mountpoint))
            .collect::<Vec<_>>()
            .join("; ")
    );
    eprintln!("{line}");
    std::fs::write(logs.join("passed.txt"), line + "\n")?;
    Ok(())
}

/// The run's result, stage 2's outcome and the check block of the last
/// boot; collects every problem before failing. Returns the check block.
fn assert_fixed(report: &emulator::RunReport, serial: &str) -> Result<GuestCheck> {
    let mut problems: Vec<String> = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let result = report.result.as_ref().context("no result.json")?;
    expect(
        result["status"] == "success",
        format!("result.json status {}", result["status"]),
    );
    let steps: Vec<(String, String)> = result["steps"]
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
        .unwrap_or_default();
    for (id, status) in &steps {
        expect(status != "failed", format!("result.json: step {id} failed"));
    }
    for id in ["initramfs", "bootloader"] {
        expect(
            steps.iter().any(|(i, s)| i == id && s == "changed"),
            format!("result.json: step {id} did not change anything: {steps:?}"),
        );
    }
    match report.stage2.as_ref() {
        None => expect(false, "no stage-2 outcome".into()),
        Some(s) => expect(
            s["status"] == "success" && s["toolsInstalled"] == true,
            format!("stage 2: {s}"),
        ),
    }

    let check = GuestCheck::parse(serial).map_err(|e| anyhow::anyhow!("the check block: {e}"))?;
    expect(
        check.is_active("multi-user")
            && !check.is_active("rescue")
            && !check.is_active("emergency"),
        format!(
            "targets {:?} (default {})",
            check.targets, check.default_target
        ),
    );
    expect(
        matches!(check.system.as_str(), "running" | "degraded"),
        format!("system state {}", check.system),
    );
    expect(
        !check.stage2_present,
        "the stage-2 code is still there".into(),
    );
    for (i, name) in ["eth0", "eth1"].into_iter().enumerate() {
        let mac = emulator::guest::target_mac(i);
        match check.nics.iter().find(|n| n.name == name) {
            None => expect(false, format!("no {name}: {:?}", check.nics)),
            Some(n) => {
                expect(
                    n.mac.eq_ignore_ascii_case(&mac),
                    format!("{name} has MAC {}, not the target's {mac}", n.mac),
                );
                let wanted_ok = if i == 0 {
                    n.ipv4.iter().any(|a| a.starts_with("10.0.2."))
                } else {
                    n.ipv4.iter().any(|a| a == "192.168.50.10/24")
                };
                expect(
                    wanted_ok,
                    format!(
                        "{name} lacks its address (DHCP 10.0.2.x / 192.168.50.10/24): {:?}",
                        n.ipv4
                    ),
                );
            }
        }
    }
    if let Err(e) = mounted(&check, "/", &ROOT_LV, "ext4") {
        expect(false, format!("{e:#}"));
    }
    if let Err(e) = mounted(&check, "/boot", &["/dev/sda1"], "ext4") {
        expect(false, format!("{e:#}"));
    }
    if problems.is_empty() {
        return Ok(check);
    }
    bail!(
        "{} problem(s):\n  - {}\n--- the check block ---\n{}\n--- result.json steps ---\n{}",
        problems.len(),
        problems.join("\n  - "),
        report.check.clone().unwrap_or_default().trim_end(),
        steps
            .iter()
            .map(|(i, s)| format!("{i}: {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}
