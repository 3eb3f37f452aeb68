//! The real stack image (`osam_qemu::image::stack_image`: GPT + ESP +
//! GRUB, the stack kernel, osam-init as PID 1) booted under QEMU (TCG)
//! through each firmware, as the manager and field engineers boot it:
//!
//! - x86_64, SeaBIOS, the streamOptimized VMDK on pvscsi at scsi-id 15:
//!   READY over 9p, then the protocol runs to END (`disk.not_found`: no
//!   replica disk is attached).
//! - x86_64, x64 OVMF, the disk on AHCI: READY.
//! - i686, SeaBIOS (`-cpu coreduo`), pvscsi: READY; and i686 on ia32 OVMF.
//! - The rescue entry picked in GRUB's menu over an interactive serial
//!   console: the `osam# ` shell answers, and the stack's tools run.
//!
//! Missing tools or firmware fail the tests: run scripts/install-deps.sh.
//! Each failure prints the serial log's last lines.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use osam_qemu::Arch;
use osam_qemu::image::{StackImage, stack_image};
use osam_qemu::manager::{self, FixupDir};
use osam_qemu::vm::{Disk, DiskBus, Firmware, Vm, VmConfig};
use serde_json::Value;

/// From QEMU's start to a complete READY.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// From BEGIN to END (the stack waits `osam.disk_timeout` = 30 s for the
/// replica disks first).
const END_TIMEOUT: Duration = Duration::from_secs(90);
/// Serial lines printed when a test fails.
const TAIL: usize = 80;
/// The fixup disk's SCSI target id on the manager's VMs.
const FIXUP_SCSI_ID: u8 = 15;

/// Builds (or reuses) the image, starts a VM from `config`, runs `phase`;
/// on failure prints the serial log's last [`TAIL`] lines. QEMU is killed
/// when the phase ends (and by `Vm`'s `Drop` on a panic).
fn with_vm(name: &str, config: &VmConfig, phase: impl FnOnce(&mut Vm) -> Result<()>) -> Result<()> {
    let mut vm = Vm::start(config).with_context(|| format!("{name}: starting QEMU"))?;
    let outcome = phase(&mut vm);
    if outcome.is_err() {
        let qemu = vm.qemu_output();
        eprintln!(
            "===== {name}: last {TAIL} lines of the serial log ({}) =====\n{}\n\
             ===== QEMU's output =====\n{}\n===== end =====",
            vm.serial_log_path().display(),
            vm.serial_tail(TAIL),
            qemu.trim()
        );
    }
    vm.kill();
    eprintln!("{name}: VM ran {:.1?}", vm.elapsed());
    outcome.with_context(|| format!("{name} failed"))
}

fn image(arch: Arch) -> Result<StackImage> {
    let t0 = Instant::now();
    let image = stack_image(arch).with_context(|| format!("the {arch} stack image"))?;
    eprintln!(
        "{arch}: image {} ready in {:.1?}",
        image.dir.display(),
        t0.elapsed()
    );
    Ok(image)
}

/// The kernel release the image's manifest names.
fn kernel_release(image: &StackImage) -> Result<String> {
    let text = std::fs::read_to_string(&image.manifest)
        .with_context(|| format!("reading {}", image.manifest.display()))?;
    let manifest: Value = serde_json::from_str(&text)?;
    manifest["kernel"]["release"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no kernel.release in {}", image.manifest.display()))
}

/// Waits for a complete READY in the share; checks it against the stack.
fn wait_ready(vm: &mut Vm, fixup: &FixupDir, image: &StackImage) -> Result<Value> {
    let ready = vm.wait_for(|| fixup.ready(), READY_TIMEOUT, "a complete fixup/READY")?;
    eprintln!("{}: READY after {:.1?}: {ready}", image.arch, vm.elapsed());
    ensure!(
        ready["arch"] == image.arch.name(),
        "READY names the wrong arch: {ready}"
    );
    ensure!(
        ready["transport"] == "9p:fixup",
        "READY names the wrong transport: {ready}"
    );
    let release = kernel_release(image)?;
    ensure!(
        ready["kernel"] == release.as_str(),
        "READY names kernel {} (the image has {release})",
        ready["kernel"]
    );
    ensure!(
        ready.get("version").is_some() && ready["protocolVersion"] == 1,
        "READY lacks version or protocolVersion 1: {ready}"
    );
    Ok(ready)
}

/// Boots `disk` through `firmware` with a fresh 9p share and waits for
/// READY; then runs `after`.
fn boot_to_ready(
    name: &str,
    image: &StackImage,
    disk: Disk,
    firmware: impl FnOnce(&Path) -> Result<Firmware>,
    after: impl FnOnce(&mut Vm, &FixupDir) -> Result<()>,
) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix(&format!("osam-image-boot-{name}-"))
        .tempdir()?;
    let share = work.path().join("share");
    std::fs::create_dir(&share)?;
    let firmware = firmware(work.path())?;
    let config = VmConfig::disk(image.arch, disk, firmware, work.path().join("serial.log"))
        .memory(512)
        .share_9p(&share, "fixup");
    let fixup = FixupDir::in_share(&share);
    with_vm(name, &config, |vm| {
        wait_ready(vm, &fixup, image)?;
        after(vm, &fixup)
    })
}

fn pvscsi(path: &Path) -> Disk {
    Disk::new(
        path,
        DiskBus::Pvscsi {
            scsi_id: FIXUP_SCSI_ID,
        },
    )
}

#[test]
fn x86_64_seabios_vmdk_on_pvscsi_runs_the_protocol() -> Result<()> {
    let image = image(Arch::X86_64)?;
    boot_to_ready(
        "x86_64-seabios-vmdk",
        &image,
        pvscsi(&image.vmdk),
        |_| Ok(Firmware::SeaBios),
        |vm, fixup| {
            fixup.write_inputs(
                &manager::system_configuration(Arch::X86_64, "image-boot-1"),
                &manager::replica_disk_map(),
                &manager::network_interface_map(),
            )?;
            fixup.begin()?;
            let t0 = Instant::now();
            let result = vm.wait_for(|| fixup.result(), END_TIMEOUT, "fixup/END")?;
            eprintln!("x86_64: END {:.1?} after BEGIN: {result}", t0.elapsed());
            ensure!(!result.is_null(), "END without a readable result.json");
            ensure!(fixup.file("fixup.log").is_file(), "END without fixup.log");
            ensure!(
                result["status"] == "failed",
                "expected status failed (no replica disk): {result}"
            );
            let codes = manager::error_codes(&result);
            ensure!(
                codes.iter().any(|c| c == "disk.not_found"),
                "expected disk.not_found among {codes:?}: {result}"
            );
            Ok(())
        },
    )
}

#[test]
fn x86_64_ovmf_on_ahci_is_ready() -> Result<()> {
    let image = image(Arch::X86_64)?;
    boot_to_ready(
        "x86_64-ovmf-ahci",
        &image,
        Disk::new(&image.raw, DiskBus::Ahci),
        |_| Ok(Firmware::OvmfX64),
        |_, _| Ok(()),
    )
}

#[test]
fn i686_seabios_on_pvscsi_is_ready() -> Result<()> {
    let image = image(Arch::I686)?;
    boot_to_ready(
        "i686-seabios-vmdk",
        &image,
        pvscsi(&image.vmdk),
        |_| Ok(Firmware::SeaBios),
        |_, _| Ok(()),
    )
}

#[test]
fn i686_ovmf_ia32_on_ahci_is_ready() -> Result<()> {
    let image = image(Arch::I686)?;
    boot_to_ready(
        "i686-ovmf-ia32-ahci",
        &image,
        Disk::new(&image.raw, DiskBus::Ahci),
        |dir| Ok(Firmware::ovmf_ia32(dir)?),
        |_, _| Ok(()),
    )
}

#[test]
fn rescue_entry_over_the_serial_console() -> Result<()> {
    let image = image(Arch::X86_64)?;
    let work = tempfile::Builder::new()
        .prefix("osam-image-boot-rescue-")
        .tempdir()?;
    let config = VmConfig::disk(
        Arch::X86_64,
        pvscsi(&image.raw),
        Firmware::SeaBios,
        work.path().join("serial.log"),
    )
    .memory(512)
    .interactive_serial(work.path().join("serial.sock"));
    with_vm("x86_64-rescue", &config, |vm| {
        let mut console = vm.serial_console()?;
        // GRUB's menu: one step down to "OSAM rescue shell", Enter.
        vm.grub_select(
            &mut console,
            1,
            "OSAM rescue shell",
            Duration::from_secs(120),
        )?;
        let menu_at = vm.elapsed();
        let marks = vm.console_marks(&console);
        vm.wait_for_console(&console, marks, "osam# ", Duration::from_secs(150))?;
        eprintln!(
            "rescue: GRUB menu at {menu_at:.1?}, `osam# ` at {:.1?}",
            vm.elapsed()
        );
        // Let the shell settle (the prompt may be printed twice on ttyS0
        // while PID 1 still logs), then talk to it.
        std::thread::sleep(Duration::from_secs(1));
        let out = vm.shell(
            &mut console,
            "cat /proc/cmdline; echo rescue-$((40+2))",
            "rescue-42",
            Duration::from_secs(60),
        )?;
        ensure!(
            out.contains("osam.mode=rescue"),
            "/proc/cmdline lacks osam.mode=rescue:\n{out}"
        );
        let out = vm.shell(
            &mut console,
            "fixupctl --version; echo rc-$?; lvm version; echo rc-$?; echo tools-$((6*7))",
            "tools-42",
            Duration::from_secs(60),
        )?;
        ensure!(
            out.contains(&format!("fixupctl {}", env!("CARGO_PKG_VERSION")))
                && out.contains("LVM version"),
            "fixupctl or lvm printed no version:\n{out}"
        );
        ensure!(
            out.matches("rc-0").count() == 2,
            "fixupctl --version or lvm version failed:\n{out}"
        );
        eprintln!("rescue: tools answered:\n{}", out.trim());
        Ok(())
    })
}
