//! The reference test guests (`osam_qemu::guests`) and the stage-2 Tools
//! ISO, proven to be what they claim:
//!
//! - guest (a), Debian 12 amd64 BIOS with `/dev/sda1` in fstab and
//!   `root=`, built from the Debian archive (cached), boots on its source
//!   hardware (SeaBIOS, virtio-scsi, virtio-net) to multi-user, and its
//!   check service reports the mounts, NICs, target and kernel;
//! - in that boot the Tools ISO (label `VMware Tools`) is on a CD-ROM, and
//!   `dpkg -i` of every .deb on it — what the stage-2 agent runs — installs
//!   open-vm-tools with no network;
//! - the same guest on VMware hardware (pvscsi at scsi0:0, vmxnet3) does
//!   not boot: its initramfs lacks `vmw_pvscsi` and stops at "ALERT!
//!   /dev/sda1 does not exist" (the problem the fixup solves).
//!
//! With `OSAM_QEMU_FULL=1` (`make qemu-test`) the variants go the same way
//! (source boot + check, VMware boot fails): (c) i386, (e) a second disk
//! at `/data`, (b) UEFI with an ESP, (f) btrfs with subvolumes.
//!
//! Building needs root (loop devices, mount, chroot) and `mmdebstrap`
//! (scripts/install-deps.sh). One VM runs at a time. Failures print the
//! serial log's last lines.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use osam_qemu::guests::check::{GuestCheck, wait_for_check};
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::{DEBIAN_SUITE, ROOT_PASSWORD};
use osam_qemu::guests::tools_iso::{TOOLS_LABEL, cdrom_args, tools_iso, volume_label};
use osam_qemu::guests::{GuestArch, GuestImage, Hardware, Recipe, guest_image};
use osam_qemu::vm::{Vm, VmConfig};

/// From QEMU's start to the check block (TCG, 2 shared cores).
const BOOT_TIMEOUT: Duration = Duration::from_secs(480);
/// From QEMU's start to the initramfs giving up (it waits 30 s for root).
const ALERT_TIMEOUT: Duration = Duration::from_secs(300);
/// Logging in and `dpkg -i` of the Tools ISO.
const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
const DPKG_TIMEOUT: Duration = Duration::from_secs(900);
/// Serial lines printed when a phase fails.
const TAIL: usize = 80;

static ONE_VM: Mutex<()> = Mutex::new(());

fn one_vm() -> MutexGuard<'static, ()> {
    ONE_VM.lock().unwrap_or_else(|e| e.into_inner())
}

fn full() -> bool {
    std::env::var_os("OSAM_QEMU_FULL").is_some_and(|v| v == "1")
}

/// Builds (or takes from the cache) the guest of `recipe`.
fn guest(recipe: &Recipe) -> Result<GuestImage> {
    let t0 = Instant::now();
    let image = guest_image(recipe).with_context(|| format!("the guest {}", recipe.name))?;
    let t = &image.manifest.timings;
    eprintln!(
        "{}: {} ready in {:.1?} (build: disks {} s, mmdebstrap {} s, configure {} s, \
         grub+initramfs check {} s, qcow2 {} s, total {} s; kernel {:?})",
        recipe.name,
        image.boot_disk().display(),
        t0.elapsed(),
        t.disks_s,
        t.mmdebstrap_s,
        t.configure_s,
        t.grub_s,
        t.convert_s,
        t.total_s,
        image.manifest.kernels
    );
    Ok(image)
}

/// Starts a VM from `config`, runs `phase`; on failure prints the serial
/// log's last [`TAIL`] lines. QEMU is killed when the phase ends.
fn with_vm<T>(
    name: &str,
    config: &VmConfig,
    phase: impl FnOnce(&mut Vm) -> Result<T>,
) -> Result<T> {
    osam_qemu::scenario::with_vm_tail(name, config, TAIL, phase)
}

/// What the guest's build says about it.
fn check_manifest(image: &GuestImage) -> Result<()> {
    let m = &image.manifest;
    let (_, _, _, root) = image.recipe().root().context("no /")?;
    let osam_qemu::guests::recipe::DeviceRef::Path(root_dev) = &root.source else {
        anyhow::bail!("the reference guests name / by path");
    };
    ensure!(!m.kernels.is_empty(), "no kernel in {}", m.name);
    ensure!(
        m.grub_cmdline
            .iter()
            .any(|a| *a == format!("root={root_dev}")),
        "grub.cfg's command line {:?} lacks root={root_dev}",
        m.grub_cmdline
    );
    ensure!(
        m.grub_cmdline.iter().any(|a| a == "console=ttyS0,115200"),
        "grub.cfg's command line {:?} lacks the serial console",
        m.grub_cmdline
    );
    for module in &image.recipe().initramfs.modules {
        ensure!(m.initramfs_has(module), "the initramfs lacks {module}");
    }
    for absent in ["vmw_pvscsi", "vmxnet3", "ahci", "mptspi"] {
        ensure!(!m.initramfs_has(absent), "the initramfs has {absent}");
    }
    ensure!(
        m.package_version("open-vm-tools").is_none(),
        "the guest already has open-vm-tools"
    );
    Ok(())
}

/// What the check block of a sound boot on the source hardware must say.
fn check_source_boot(image: &GuestImage, check: &GuestCheck) -> Result<()> {
    let recipe = image.recipe();
    // Debian's default.target is graphical.target, which is multi-user
    // where no display manager is installed.
    ensure!(
        matches!(
            check.default_target.as_str(),
            "multi-user.target" | "graphical.target"
        ) && check.is_active("multi-user"),
        "not in multi-user: {check:?}"
    );
    ensure!(!check.is_active("rescue") && !check.is_active("emergency"));
    ensure!(
        matches!(check.system.as_str(), "running" | "degraded"),
        "system state {}",
        check.system
    );
    ensure!(
        image.manifest.kernels.contains(&check.kernel),
        "kernel {} is not the guest's {:?}",
        check.kernel,
        image.manifest.kernels
    );
    ensure!(check.selinux == "none" && !check.stage2_present);
    ensure!(
        check.hostname == recipe.hostname,
        "hostname {}",
        check.hostname
    );
    for (_, _, fs, m) in recipe.mounts() {
        let osam_qemu::guests::recipe::DeviceRef::Path(dev) = &m.source else {
            continue;
        };
        let found = check
            .mount_at(&m.mountpoint)
            .with_context(|| format!("{} is not mounted: {:?}", m.mountpoint, check.mounts))?;
        ensure!(
            found.device == *dev && found.fstype == fs.kind.name(),
            "{} is {found:?}, not {dev} {}",
            m.mountpoint,
            fs.kind.name()
        );
    }
    // QEMU names the NICs by its PCI slots (ens4, …), not VMware's ens192
    // and ens224: the configuration does not match, so no address.
    for nic in &recipe.nics {
        let found = check
            .nic_by_mac(&nic.mac)
            .with_context(|| format!("no NIC with MAC {}: {:?}", nic.mac, check.nics))?;
        ensure!(
            found.name != nic.name,
            "QEMU gave the NIC VMware's name {}",
            found.name
        );
    }
    ensure!(
        check.nics.len() == recipe.nics.len(),
        "NICs: {:?}",
        check.nics
    );
    Ok(())
}

/// Boots `image` on its source hardware and returns the check block
/// (with the time to it).
fn boot_source(name: &str, image: &GuestImage, work: &Path) -> Result<GuestCheck> {
    let config = image.vm_config(
        Hardware::Source,
        work,
        work.join(format!("{name}-source.log")),
    )?;
    with_vm(&format!("{name} on its source hardware"), &config, |vm| {
        let check = wait_for_check(vm, 0, BOOT_TIMEOUT)?;
        eprintln!("{name}: check block after {:.1?}: {check:?}", vm.elapsed());
        check_source_boot(image, &check)?;
        Ok(check)
    })
}

/// Boots `image` on VMware hardware and expects the initramfs to give up
/// on the root device `root_dev`.
fn boot_vmware_fails(name: &str, image: &GuestImage, root_dev: &str, work: &Path) -> Result<()> {
    let config = image.vm_config(
        Hardware::Vmware,
        work,
        work.join(format!("{name}-vmware.log")),
    )?;
    with_vm(&format!("{name} on VMware hardware"), &config, |vm| {
        let needle = format!("{root_dev} does not exist");
        vm.wait_for_serial(&needle, ALERT_TIMEOUT)?;
        let log = vm.serial_log();
        ensure!(log.contains("ALERT!"), "no ALERT! line");
        ensure!(
            !log.contains(osam_qemu::guests::check::CHECK_BEGIN),
            "the guest booted on VMware hardware"
        );
        eprintln!(
            "{name}: on VMware hardware the initramfs gave up after {:.1?} (\"ALERT! {needle}\")",
            vm.elapsed()
        );
        Ok(())
    })
}

/// Waits for `prefix` followed by a number on the serial log after
/// `mark`; returns the number.
fn wait_number(vm: &mut Vm, mark: usize, prefix: &str, timeout: Duration) -> Result<i64> {
    let log = vm.serial_log_path().to_path_buf();
    let n = vm.wait_for(
        || {
            let bytes = std::fs::read(&log).ok()?;
            let text = String::from_utf8_lossy(bytes.get(mark..)?).into_owned();
            text.match_indices(prefix).find_map(|(at, _)| {
                let rest = &text[at + prefix.len()..];
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                digits.parse::<i64>().ok()
            })
        },
        timeout,
        &format!("{prefix}<number> on the serial console"),
    )?;
    Ok(n)
}

#[test]
fn guest_a_boots_at_the_source_installs_tools_and_fails_on_vmware() -> Result<()> {
    let _one = one_vm();
    let mirror = host_mirror(DEBIAN_SUITE)?;
    let recipe = Recipe::debian12_bios(GuestArch::Amd64, &mirror);
    let image = guest(&recipe)?;
    check_manifest(&image)?;

    let t0 = Instant::now();
    let iso = tools_iso(&image).context("the Tools ISO")?;
    eprintln!(
        "Tools ISO {} ready in {:.1?} (build {} s): {} packages: {}",
        iso.path.display(),
        t0.elapsed(),
        iso.build_s,
        iso.debs.len(),
        iso.debs.join(" ")
    );
    ensure!(volume_label(&iso.path)? == TOOLS_LABEL);
    ensure!(
        iso.debs
            .iter()
            .any(|d| d.starts_with("open-vm-tools_") && d.ends_with("_amd64.deb")),
        "no open-vm-tools amd64 package on the ISO: {:?}",
        iso.debs
    );
    let installed: Vec<&str> = image
        .manifest
        .packages
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for deb in &iso.debs {
        let name = deb.split('_').next().unwrap_or_default();
        ensure!(
            !installed.contains(&name),
            "{deb} is on the ISO although the guest has {name}"
        );
        ensure!(
            deb.ends_with("_amd64.deb") || deb.ends_with("_all.deb"),
            "{deb} is not for amd64"
        );
    }

    let work = tempfile::Builder::new()
        .prefix("osam-guests-a-")
        .tempdir()?;
    let name = &recipe.name;

    // The source hardware, with the Tools ISO in the CD-ROM drive.
    let config = image
        .vm_config(
            Hardware::Source,
            work.path(),
            work.path().join("source.log"),
        )?
        .interactive_serial(work.path().join("serial.sock"))
        .args(cdrom_args(&iso.path));
    with_vm(&format!("{name} on its source hardware"), &config, |vm| {
        let check = wait_for_check(vm, 0, BOOT_TIMEOUT)?;
        let booted = vm.elapsed();
        eprintln!("{name}: check block after {booted:.1?}: {check:?}");
        check_source_boot(&image, &check)?;

        // Log in on ttyS0 and install as the stage-2 agent does.
        let mut console = vm.serial_console()?;
        vm.wait_for_serial("login:", SHELL_TIMEOUT)?;
        let mark = vm.serial_log_len();
        console.send_line("root")?;
        vm.wait_for_serial_after(mark, "assword:", SHELL_TIMEOUT)?;
        let mark = vm.serial_log_len();
        console.send_line(ROOT_PASSWORD)?;
        // login flushes the input after the password: type on only once
        // the shell prompts.
        vm.wait_for_serial_after(mark, ":~# ", SHELL_TIMEOUT)?;
        let mark = vm.serial_log_len();
        console.send_line("echo OSAM-SHELL=$((40+2))")?;
        ensure!(wait_number(vm, mark, "OSAM-SHELL=", SHELL_TIMEOUT)? == 42);
        let t_dpkg = vm.elapsed();
        let mark = vm.serial_log_len();
        console.send_line(
            "mkdir -p /mnt/tools && mount -t iso9660 -o ro /dev/sr0 /mnt/tools && \
             DEBIAN_FRONTEND=noninteractive dpkg -i /mnt/tools/*.deb; echo OSAM-DPKG=$?",
        )?;
        let rc = wait_number(vm, mark, "OSAM-DPKG=", DPKG_TIMEOUT)?;
        ensure!(rc == 0, "dpkg -i of the Tools ISO's packages exited {rc}");
        eprintln!(
            "{name}: dpkg -i of the {} packages took {:.1?}",
            iso.debs.len(),
            vm.elapsed() - t_dpkg
        );
        let mark = vm.serial_log_len();
        console.send_line(
            "test -x /usr/bin/vmtoolsd && dpkg-query -W -f='${Status}\\n' open-vm-tools | \
             grep -q 'install ok installed'; echo OSAM-TOOLS=$?",
        )?;
        let rc = wait_number(vm, mark, "OSAM-TOOLS=", SHELL_TIMEOUT)?;
        ensure!(rc == 0, "open-vm-tools is not installed after dpkg -i");
        Ok(())
    })?;

    // VMware hardware: pvscsi at scsi0:0, vmxnet3.
    boot_vmware_fails(name, &image, "/dev/sda1", work.path())
}

/// The variants: each boots on its source hardware and not on VMware's.
fn variant(recipe: Recipe, root_dev: &str) -> Result<()> {
    let image = guest(&recipe)?;
    check_manifest(&image)?;
    let work = tempfile::Builder::new()
        .prefix(&format!("osam-guests-{}-", recipe.name))
        .tempdir()?;
    let check = boot_source(&recipe.name, &image, work.path())?;
    match recipe.arch {
        GuestArch::I386 => ensure!(check.kernel.ends_with("-686"), "kernel {}", check.kernel),
        GuestArch::Amd64 => ensure!(check.kernel.ends_with("-amd64"), "kernel {}", check.kernel),
    }
    boot_vmware_fails(&recipe.name, &image, root_dev, work.path())
}

#[test]
fn variant_c_i386() -> Result<()> {
    if !full() {
        eprintln!("skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
        return Ok(());
    }
    let _one = one_vm();
    let mirror = host_mirror(DEBIAN_SUITE)?;
    let recipe = Recipe::debian12_bios(GuestArch::I386, &mirror);
    // The Tools ISO of an i386 guest holds i386 packages.
    let iso = tools_iso(&guest(&recipe)?).context("the i386 Tools ISO")?;
    eprintln!(
        "i386 Tools ISO: {} packages: {}",
        iso.debs.len(),
        iso.debs.join(" ")
    );
    ensure!(
        iso.debs
            .iter()
            .any(|d| d.starts_with("open-vm-tools_") && d.ends_with("_i386.deb")),
        "no open-vm-tools i386 package: {:?}",
        iso.debs
    );
    ensure!(
        iso.debs
            .iter()
            .all(|d| d.ends_with("_i386.deb") || d.ends_with("_all.deb")),
        "packages of another architecture: {:?}",
        iso.debs
    );
    variant(recipe, "/dev/sda1")
}

#[test]
fn variant_e_data_disk() -> Result<()> {
    if !full() {
        eprintln!("skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
        return Ok(());
    }
    let _one = one_vm();
    let mirror = host_mirror(DEBIAN_SUITE)?;
    variant(
        Recipe::debian12_bios(GuestArch::Amd64, &mirror).with_data_disk(),
        "/dev/sda1",
    )
}

#[test]
fn variant_b_uefi() -> Result<()> {
    if !full() {
        eprintln!("skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
        return Ok(());
    }
    let _one = one_vm();
    let mirror = host_mirror(DEBIAN_SUITE)?;
    variant(
        Recipe::debian12_uefi(GuestArch::Amd64, &mirror, true),
        "/dev/sda2",
    )
}

#[test]
fn variant_f_btrfs() -> Result<()> {
    if !full() {
        eprintln!("skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
        return Ok(());
    }
    let _one = one_vm();
    let mirror = host_mirror(DEBIAN_SUITE)?;
    variant(
        Recipe::debian12_bios_btrfs(GuestArch::Amd64, &mirror),
        "/dev/sda1",
    )
}
