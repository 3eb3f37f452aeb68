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

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use osam_qemu::emulator::{self, blueprint_for_guest};
use osam_qemu::guests::check::{GuestCheck, wait_for_check};
use osam_qemu::guests::lvm::{LvmGuest, LvmRecipe, lvm_guest_image};
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::{DEBIAN_SUITE, NicAddress};
use osam_qemu::guests::tools_iso::tools_iso;
use osam_qemu::guests::{GuestArch, Hardware};
use osam_qemu::image::stack_image;
use osam_qemu::scenario::{
    Expected, ExpectedMount, ExpectedNic, POWER_OFF_GRACE_SECONDS, PROBLEM_TIMEOUT, Problem,
    assert_fixed, full, logs_dir, passed_line, prove_the_problem, run_flow, with_vm,
};

/// From QEMU's start to the check block on the source hardware.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

static ONE_VM: Mutex<()> = Mutex::new(());

fn one_vm() -> MutexGuard<'static, ()> {
    ONE_VM.lock().unwrap_or_else(|e| e.into_inner())
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

    // 1. The problem: the initramfs gives up on the root LV (no
    // `vmw_pvscsi`, so no disk, so no PV); booting at all proves nothing.
    let t = Instant::now();
    let problem = Problem {
        root: Some(guest.details.root_device.clone()),
        network_problem_suffices: false,
        timeout: Some(PROBLEM_TIMEOUT),
    };
    let alert = prove_the_problem(image, &logs, &problem)
        .with_context(|| format!("{id}: proving the problem (logs in {})", logs.display()))?;
    let problem_s = t.elapsed().as_secs_f64();
    say(&format!(
        "unfixed on VMware hardware: {alert} ({problem_s:.1} s)"
    ));

    // 2. The manager's whole flow.
    let (report, run_s) = run_flow(&id, &bp, &stack.vmdk, &iso.path, &logs)?;

    // 3. The fixed guest.
    let check = assert_fixed(&report, &expected())
        .with_context(|| format!("{id}: the fixed guest (logs in {})", logs.display()))?;
    let line = passed_line(
        &id,
        t0.elapsed().as_secs_f64(),
        inputs_s,
        problem_s,
        run_s,
        &report,
        &check,
    );
    eprintln!("{line}");
    std::fs::write(logs.join("passed.txt"), line + "\n")?;
    Ok(())
}

/// What the fixed guest (d) must show: no step failed, the initramfs and
/// the boot loader changed; multi-user, not rescue or emergency; the
/// stage-2 code gone; `eth0` on DHCP (10.0.2.x) and `eth1` with
/// 192.168.50.10/24, on the target MACs; `/` from the root LV and `/boot`
/// from `/dev/sda1`, both ext4.
fn expected() -> Expected {
    let nic = |i: usize, address: NicAddress| ExpectedNic {
        name: format!("eth{i}"),
        mac: emulator::guest::target_mac(i),
        source: format!("ethernet{i}"),
        address: Some(address),
    };
    let mount = |mountpoint: &str, devices: &[&str]| ExpectedMount {
        mountpoint: mountpoint.into(),
        devices: devices.iter().map(|d| (*d).to_owned()).collect(),
        fstype: "ext4".into(),
    };
    Expected {
        steps: vec![
            ("initramfs".into(), "changed".into()),
            ("bootloader".into(), "changed".into()),
        ],
        nics: vec![
            nic(0, NicAddress::Dhcp),
            nic(
                1,
                NicAddress::Static {
                    address: "192.168.50.10/24".into(),
                    gateway: None,
                },
            ),
        ],
        mounts: vec![mount("/", &ROOT_LV), mount("/boot", &["/dev/sda1"])],
        ..Expected::default()
    }
}
