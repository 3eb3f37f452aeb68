//! The fault cases of issue 8 (item 2): the real stack image under QEMU
//! (TCG), stage 1 only, on a guest or a VM that is wrong in one way. Each
//! case must end in a clear result.json — its status, the exact code, a
//! message that names what was wrong and where — (or, for a BEGIN that
//! never comes, a visible wait), and nothing may be lost: the files the
//! fixup touches (`/etc/fstab`, `/etc/network/interfaces`,
//! `/etc/default/grub`, `/boot/grub/grub.cfg`, the initrd images) are
//! byte for byte as before, checked on the host through a read-only loop
//! mount of the run's overlay (`ro,noload`).
//!
//! | case | test | expected | tier |
//! |---|---|---|---|
//! | a 64-bit guest on the 32-bit stack | `arch_mismatch_64bit_guest_on_the_i686_stack` | `guest.arch_mismatch`, "boot the VM from the x86_64 fixup stack" | default |
//! | a replica disk missing | `missing_replica_disk` | `disk.not_found` naming `scsi0:1` and `/dev/sdb` after 30 s | default |
//! | two OS roots | `two_os_roots` | `guest.multiple_roots` naming both devices | default |
//! | the root file system full | `full_file_system` | see the test | `OSAM_QEMU_FULL=1` |
//! | the replica attached read-only | `read_only_replica` | see the test | `OSAM_QEMU_FULL=1` |
//! | a dirty journal (the source VM killed) | `dirty_journal` | `success`: the stack's mount replays the journal | `OSAM_QEMU_FULL=1` |
//! | BEGIN never coming | `begin_never_comes` | "still waiting for BEGIN" on the console, then `begin.timeout` (`osam.begin_timeout` from the ESP's `osam-extra.cfg`) | `OSAM_QEMU_FULL=1` |
//! | vmtoolsd crashing | `vmtoolsd_crashing` | restarts logged with their delays, PID 1 alive, `begin.timeout` on the console | `OSAM_QEMU_FULL=1` |
//!
//! The guest disks are prepared in temporary folders from the cached
//! guest (a) (never modified); root is needed (loop devices). The logs of
//! each case stay in `target/osam-fault-cases/<case>/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use osam_qemu::diskprep::{self, Mounted, Snapshot};
use osam_qemu::emulator::blueprint::{DiskSpec, PartitionSpec};
use osam_qemu::emulator::{
    self, Blueprint, Boot, MachineFiles, RunOptions, RunReport, StopAfter, blueprint_for_guest,
};
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::DEBIAN_SUITE;
use osam_qemu::guests::{GuestArch, GuestImage, Recipe, guest_image};
use osam_qemu::image::stack_image;
use osam_qemu::manager::FixupDir;
use osam_qemu::paths::{tail_lines, workspace_root};
use osam_qemu::vm::{Disk, DiskBus, Firmware, Vm, VmConfig};
use osam_qemu::vmslot::VmSlot;
use osam_qemu::{Arch, esp};
use serde_json::Value;

/// Lines of a log shown with a failure.
const TAIL: usize = 60;

fn full() -> bool {
    std::env::var_os("OSAM_QEMU_FULL").is_some_and(|v| v == "1")
}

/// One fault case: its logs folder, its VM slot, its clock.
struct Case {
    id: String,
    logs: PathBuf,
    t0: Instant,
    _slot: VmSlot,
}

impl Case {
    /// Starts case `id`, or `None` when it is skipped (full tier only
    /// without `OSAM_QEMU_FULL=1`; not root).
    fn start(id: &str, full_only: bool) -> Result<Option<Case>> {
        if full_only && !full() {
            eprintln!("{id}: skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
            return Ok(None);
        }
        if !diskprep::is_root() {
            eprintln!("{id}: skipped: needs root (loop devices)");
            return Ok(None);
        }
        let slot = VmSlot::take();
        if slot.waited() > Duration::from_secs(1) {
            eprintln!("[{id}] waited {:.0?} for another test's VMs", slot.waited());
        }
        let logs = workspace_root().join("target/osam-fault-cases").join(id);
        if logs.exists() {
            std::fs::remove_dir_all(&logs)
                .with_context(|| format!("emptying {}", logs.display()))?;
        }
        std::fs::create_dir_all(&logs)?;
        Ok(Some(Case {
            id: id.to_owned(),
            logs,
            t0: Instant::now(),
            _slot: slot,
        }))
    }

    fn say(&self, line: &str) {
        eprintln!(
            "[{} {:7.1}s] {line}",
            self.id,
            self.t0.elapsed().as_secs_f64()
        );
    }

    /// Stage 1 of `bp` from `stack` through the manager emulator, the
    /// overlays kept in `work`.
    fn stage1(&self, bp: &Blueprint, stack: &Path, work: &Path) -> RunReport {
        std::fs::write(
            self.logs.join("blueprint.json"),
            serde_json::to_string_pretty(bp).unwrap_or_default() + "\n",
        )
        .ok();
        let mut options = RunOptions::new(stack, &self.logs);
        options.stop_after = StopAfter::Stage1;
        options.work_dir = Some(work.to_path_buf());
        let id = self.id.clone();
        let report = emulator::run(bp, &options, &mut |line| eprintln!("[{id}] {line}"));
        self.say(&format!(
            "stage 1 took {:.1} s:\n{}",
            report.total_seconds,
            report.summary()
        ));
        report
    }

    fn passed(&self, what: &str) {
        let line = format!(
            "{}: PASSED in {:.1} s: {what}",
            self.id,
            self.t0.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        std::fs::write(self.logs.join("passed.txt"), line + "\n").ok();
    }

    /// Stage 1 of `bp` from `stack` in `before`'s work folder: it must
    /// fail with `code` (a message holding every one of `needles`, see
    /// [`expect_error`]) and leave the touched files of the first `disks`
    /// disks as `before` has them. Returns the report and the error.
    fn fails_untouched(
        &self,
        bp: &Blueprint,
        stack: &Path,
        before: &Before,
        disks: usize,
        code: &str,
        needles: &[&str],
    ) -> Result<(RunReport, Value)> {
        let report = self.stage1(bp, stack, before.work());
        let error = expect_error(&report, code, needles)?;
        for disk in 0..disks {
            before.assert_untouched(disk)?;
        }
        Ok((report, error))
    }
}

fn guest_a() -> Result<GuestImage> {
    let mirror = host_mirror(DEBIAN_SUITE).context("picking a Debian mirror")?;
    guest_image(&Recipe::debian12_bios(GuestArch::Amd64, &mirror)).context("guest (a)")
}

/// A work folder with a short path (the QMP socket lives in it).
fn work_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("osam-fc-")
        .tempdir_in("/tmp")
        .context("a work folder")
}

/// The number of the partition the blueprint marks as `/` on disk 0.
fn root_partition(bp: &Blueprint) -> u32 {
    bp.disks[0]
        .partitions
        .iter()
        .find(|p| p.mount_point.as_deref() == Some("/"))
        .map_or(1, |p| p.number)
}

/// The touched files of the root file system on partition `part` of
/// `image` (qcow2 or raw), converted to raw in `work` and mounted
/// read-only without journal replay.
fn snapshot_of(image: &Path, part: u32, work: &Path, name: &str) -> Result<Snapshot> {
    let raw = work.join(format!("{name}.raw"));
    diskprep::to_raw(image, &raw)?;
    let snapshot = {
        let m = Mounted::partition(&raw, part, false)?;
        let files = diskprep::touched_files(m.root());
        Snapshot::take(m.root(), &files)?
    };
    std::fs::remove_file(&raw).ok();
    Ok(snapshot)
}

/// The touched files of a guest before its run (root partition `part`),
/// and the run's work folder (its overlays `disk<i>.qcow2`).
struct Before {
    work: tempfile::TempDir,
    part: u32,
    snapshot: Snapshot,
}

impl Before {
    /// A new work folder and the touched files of `image`'s boot disk.
    fn of(image: &GuestImage, part: u32) -> Result<Before> {
        let work = work_dir()?;
        let snapshot = snapshot_of(image.boot_disk(), part, work.path(), "before")?;
        Ok(Before {
            work,
            part,
            snapshot,
        })
    }

    fn work(&self) -> &Path {
        self.work.path()
    }

    /// Asserts that nothing of the guest changed: the run's overlay of
    /// disk `disk` against the snapshot.
    fn assert_untouched(&self, disk: usize) -> Result<()> {
        let before = &self.snapshot;
        let overlay = self.work().join(format!("disk{disk}.qcow2"));
        let after = snapshot_of(&overlay, self.part, self.work(), &format!("after{disk}"))?;
        let changed = after.changed_since(before);
        ensure!(
            changed.is_empty(),
            "the failed run changed guest files:\n  {}",
            changed.join("\n  ")
        );
        ensure!(
            before.0.values().any(|s| *s != diskprep::FileState::Absent),
            "the snapshot found none of the touched files: {before:?}"
        );
        Ok(())
    }
}

/// result.json's status and its first error, checked: `code` with a
/// message holding every one of `needles`. Returns the error.
fn expect_error(report: &RunReport, code: &str, needles: &[&str]) -> Result<Value> {
    let log_tail = || {
        report
            .logs
            .fixup_log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| tail_lines(&t, TAIL))
            .unwrap_or_default()
    };
    let Some(result) = &report.result else {
        bail!(
            "no result.json: {}\n{}",
            report
                .failure
                .as_ref()
                .map(|f| f.to_string())
                .unwrap_or_default(),
            log_tail()
        );
    };
    ensure!(
        result["status"] == "failed",
        "result.json status {}, expected failed: {result:#}",
        result["status"]
    );
    let errors = result["errors"].as_array().cloned().unwrap_or_default();
    let Some(error) = errors.iter().find(|e| e["code"] == code) else {
        bail!(
            "result.json has no {code} error: {errors:#?}\n{}",
            log_tail()
        );
    };
    let message = error["message"].as_str().unwrap_or_default();
    for needle in needles {
        ensure!(
            message.contains(needle),
            "{code}: the message does not name {needle:?}: {message}"
        );
    }
    ensure!(
        errors[0]["code"] == code,
        "the first error is {}, not {code}: {errors:#?}",
        errors[0]["code"]
    );
    Ok(error.clone())
}

// ------------------------------------------------------------ default tier

/// Guest (a), x86_64, on the i686 stack (the VM is the x86_64 VM the
/// manager made for it: only the fixup disk is the wrong one).
#[test]
fn arch_mismatch_64bit_guest_on_the_i686_stack() -> Result<()> {
    let Some(case) = Case::start("arch-mismatch", false)? else {
        return Ok(());
    };
    let image = guest_a()?;
    let bp = blueprint_for_guest(&image, "fault-arch-mismatch");
    let stack = stack_image(Arch::I686).context("the i686 stack image")?;
    let before = Before::of(&image, root_partition(&bp))?;
    let (report, error) = case.fails_untouched(
        &bp,
        &stack.vmdk,
        &before,
        1,
        "guest.arch_mismatch",
        &["64-bit", "x86_64 fixup stack"],
    )?;
    ensure!(
        report.ready.as_ref().is_some_and(|r| r["arch"] == "i686"),
        "READY: {:?}",
        report.ready
    );
    case.passed(&format!("{}", error["message"]));
    Ok(())
}

/// Guest (a) with a second replica in the disk map (`/dev/sdb`, scsi0:1)
/// that the VM does not have.
#[test]
fn missing_replica_disk() -> Result<()> {
    let Some(case) = Case::start("missing-replica", false)? else {
        return Ok(());
    };
    let image = guest_a()?;
    let mut bp = blueprint_for_guest(&image, "fault-missing-replica");
    bp.disks.push(DiskSpec {
        path: None,
        source_device: Some("/dev/sdb".into()),
        capacity_bytes: Some(1 << 30),
        boot: Some(false),
        partitions: vec![PartitionSpec {
            number: 1,
            source_device: Some("/dev/sdb1".into()),
            fs_type: Some("ext4".into()),
            mount_point: Some("/data".into()),
            ..PartitionSpec::default()
        }],
        ..DiskSpec::default()
    });
    let stack = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    let before = Before::of(&image, root_partition(&bp))?;
    let (_, error) = case.fails_untouched(
        &bp,
        &stack.vmdk,
        &before,
        1,
        "disk.not_found",
        &["scsi0:1", "/dev/sdb", "$.disks[1]", "30 s"],
    )?;
    let detail = error["detail"].as_str().unwrap_or_default();
    ensure!(
        detail.contains("sda at"),
        "the detail does not list the disk the stack sees: {error:#}"
    );
    case.passed(&format!("{} ({detail})", error["message"]));
    Ok(())
}

/// Two replicas, each a copy of guest (a)'s disk, neither marked `/`: two
/// trees that look like a guest root.
#[test]
fn two_os_roots() -> Result<()> {
    let Some(case) = Case::start("two-roots", false)? else {
        return Ok(());
    };
    let image = guest_a()?;
    let mut bp = blueprint_for_guest(&image, "fault-two-roots");
    let mut second = bp.disks[0].clone();
    second.source_device = Some("/dev/sdb".into());
    second.boot = Some(false);
    for p in &mut second.partitions {
        p.source_device = p
            .source_device
            .as_ref()
            .map(|d| d.replace("/dev/sda", "/dev/sdb"));
    }
    bp.disks.push(second);
    for disk in &mut bp.disks {
        for p in &mut disk.partitions {
            p.mount_point = None;
        }
    }
    let stack = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    let before = Before::of(&image, root_partition(&blueprint_for_guest(&image, "x")))?;
    let (_, error) = case.fails_untouched(
        &bp,
        &stack.vmdk,
        &before,
        2,
        "guest.multiple_roots",
        &["/dev/sda1", "/dev/sdb1", "mountPoint"],
    )?;
    case.passed(&format!("{}", error["message"]));
    Ok(())
}

// ------------------------------------------------------------ full tier

/// The stack's raw disk copied into `work` with `/boot/grub/osam-extra.cfg`
/// on its ESP setting GRUB's `$osam_extra` (appended to the kernel
/// command line): how a field engineer sets `osam.*` options without a
/// rebuild.
fn stack_with_options(arch: Arch, work: &Path, options: &str) -> Result<PathBuf> {
    let stack = stack_image(arch).with_context(|| format!("the {arch} stack image"))?;
    let copy = work.join("stack.raw");
    diskprep::run(
        "cp",
        &[
            "--sparse=always".as_ref(),
            stack.raw.as_os_str(),
            copy.as_os_str(),
        ],
    )?;
    let cfg = work.join("osam-extra.cfg");
    std::fs::write(&cfg, format!("set osam_extra='{options}'\n"))?;
    esp::put(&copy, &[cfg.as_path()], "::/boot/grub/")?;
    Ok(copy)
}

/// A qcow2 overlay at `overlay` on `backing` (an image in `format`).
fn create_overlay(backing: &Path, format: &str, overlay: &Path) -> Result<()> {
    diskprep::run(
        "qemu-img",
        &[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-F".as_ref(),
            format.as_ref(),
            "-b".as_ref(),
            backing.as_os_str(),
            overlay.as_os_str(),
        ],
    )
    .map(drop)
}

/// Boots the stack (stage 1's VM of `bp`, as the emulator makes it) with
/// QEMU options `extra`; the replicas on overlays `work/disk<i>.qcow2`.
/// The caller plays the manager through the returned share.
fn boot_stack(
    case: &Case,
    bp: &Blueprint,
    stack: &Path,
    work: &Path,
    extra: &[&str],
) -> Result<(Vm, FixupDir)> {
    let share = work.join("share");
    std::fs::create_dir_all(&share)?;
    let mut disks = Vec::new();
    for (i, d) in bp.disks.iter().enumerate() {
        let Some(path) = &d.path else {
            disks.push(None);
            continue;
        };
        let overlay = work.join(format!("disk{i}.qcow2"));
        let (format, _) = emulator::image_info(path).map_err(anyhow::Error::msg)?;
        create_overlay(&std::fs::canonicalize(path)?, &format, &overlay)?;
        disks.push(Some(overlay));
    }
    let files = MachineFiles {
        stack: stack.to_path_buf(),
        disks,
        share: share.clone(),
        qmp: work.join("qmp.sock"),
        tools_iso: None,
        ovmf_vars: None,
    };
    let serial = case.logs.join("stage1.serial.log");
    let config = emulator::vm_config(bp, &files, Boot::Stage1, &serial).args(extra.iter().copied());
    let vm = Vm::start(&config).context("starting QEMU")?;
    case.say(&format!("QEMU started, serial log {}", serial.display()));
    Ok((vm, FixupDir::in_share(&share)))
}

/// The three input files of `bp` into the share.
fn write_inputs(bp: &Blueprint, fixup: &FixupDir) -> Result<()> {
    let capacities = emulator::probe_capacities(bp).map_err(anyhow::Error::msg)?;
    for (name, value) in emulator::inputs(bp, &capacities) {
        fixup.write_input(name, &value)?;
    }
    Ok(())
}

/// What a failed wait shows: the error and the serial log's last lines.
fn with_tail(vm: &Vm, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "{e}\n--- last lines of {} ---\n{}",
        vm.serial_log_path().display(),
        vm.serial_tail(TAIL)
    )
}

/// Waits for `needle` on the serial console ([`Vm::wait_for_serial`]),
/// the log's last lines in the error.
fn wait_serial(vm: &mut Vm, needle: &str, timeout: Duration) -> Result<()> {
    vm.wait_for_serial(needle, timeout)
        .map_err(|e| with_tail(vm, e))
}

/// Copies the run's files from the share into the logs.
fn collect(case: &Case, fixup: &FixupDir) {
    for name in ["progress.txt", "fixup.log", "result.json"] {
        let _ = std::fs::copy(fixup.file(name), case.logs.join(name));
    }
}

/// Whether the serial log shows PID 1 dead or the kernel stuck.
fn kernel_trouble(serial: &str) -> Option<&str> {
    serial.lines().find(|l| {
        l.contains("Attempted to kill init")
            || l.contains("Kernel panic")
            || l.contains("BUG:")
            || l.contains("Oops")
    })
}

/// The root file system of guest (a) filled up to the last block
/// (reserved blocks included: the stack runs as root).
#[test]
fn full_file_system() -> Result<()> {
    let Some(case) = Case::start("full-fs", true)? else {
        return Ok(());
    };
    let image = guest_a()?;
    let mut bp = blueprint_for_guest(&image, "fault-full-fs");
    let part = root_partition(&bp);
    let work = work_dir()?;
    let raw = work.path().join("full.raw");
    diskprep::to_raw(image.boot_disk(), &raw)?;
    let before = {
        let m = Mounted::partition(&raw, part, true)?;
        let added = diskprep::fill(m.root(), "var/tmp/osam-filler")?;
        let (free, _) = diskprep::free_blocks(m.root())?;
        // ext4 keeps min(2 %, 4096) clusters back from everyone, root
        // included (its `resv_clusters`): those stay free, and a write of
        // one more block fails.
        ensure!(free <= 4096, "{free} blocks still free after the filler");
        let probe = m.root().join("var/tmp/osam-filler/probe");
        let wrote = std::fs::write(&probe, vec![0u8; 64 * 1024])
            .and_then(|()| std::fs::File::open(&probe)?.sync_all());
        ensure!(
            wrote.is_err(),
            "a 64 KiB file still fits after the filler ({free} blocks free)"
        );
        let _ = std::fs::remove_file(&probe);
        case.say(&format!(
            "root file system filled: {added} bytes added, 0 blocks free"
        ));
        let files = diskprep::touched_files(m.root());
        let s = Snapshot::take(m.root(), &files)?;
        m.unmount()?;
        s
    };
    let before = Before {
        work,
        part,
        snapshot: before,
    };
    bp.disks[0].path = Some(raw.clone());
    let stack = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    let (report, error) = case.fails_untouched(
        &bp,
        &stack.vmdk,
        &before,
        1,
        "guest.io",
        &["No space left on device", "/"],
    )?;
    eprintln!("result.json: {:#}", report.result.unwrap_or_default());
    case.passed(&format!("{}", error["message"]));
    Ok(())
}

/// Guest (a)'s replica attached read-only (QEMU `readonly=on`: a
/// write-protected disk).
#[test]
fn read_only_replica() -> Result<()> {
    let Some(case) = Case::start("read-only", true)? else {
        return Ok(());
    };
    let image = guest_a()?;
    let mut bp = blueprint_for_guest(&image, "fault-read-only");
    bp.disks[0].read_only = true;
    let before = Before::of(&image, root_partition(&bp))?;
    let stack = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    // The stack names the partition as it sees it (sda1 or sdb1: the
    // order the disks are found in is not fixed).
    let (report, error) = case.fails_untouched(
        &bp,
        &stack.vmdk,
        &before,
        1,
        "guest.io",
        &["/dev/sd", "read-only", "EROFS"],
    )?;
    eprintln!("result.json: {:#}", report.result.unwrap_or_default());
    case.passed(&format!("{}", error["message"]));
    Ok(())
}

/// Guest (a) killed (SIGKILL to QEMU) on its source hardware once it is
/// up: its ext4 journal needs recovery. The stack's mount replays it and
/// stage 1 succeeds; the file system is clean afterwards.
#[test]
fn dirty_journal() -> Result<()> {
    let Some(case) = Case::start("dirty-journal", true)? else {
        return Ok(());
    };
    let image = guest_a()?;
    let mut bp = blueprint_for_guest(&image, "fault-dirty-journal");
    let part = root_partition(&bp);
    let work = work_dir()?;
    let source = work.path().join("source.qcow2");
    create_overlay(image.boot_disk(), "qcow2", &source)?;
    // The source VM: virtio-scsi, virtio-net, writing to the overlay.
    let recipe = image.recipe();
    let mut nic_args: Vec<String> = Vec::new();
    for (i, nic) in recipe.nics.iter().enumerate() {
        nic_args.extend([
            "-netdev".into(),
            format!("user,id=srcnet{i}"),
            "-device".into(),
            format!("virtio-net-pci,netdev=srcnet{i},mac={}", nic.mac),
        ]);
    }
    let disk = Disk {
        snapshot: false,
        ..Disk::new(&source, DiskBus::VirtioScsi { scsi_id: 0 })
    };
    let config = VmConfig::disk(
        Arch::X86_64,
        disk,
        Firmware::SeaBios,
        case.logs.join("source.serial.log"),
    )
    .memory(1024)
    .args(nic_args);
    let mut vm = Vm::start(&config).context("starting the source VM")?;
    let up = vm.wait_for_serial(emulator::CHECK_BEGIN, Duration::from_secs(600));
    // Pulled out of the wall: no sync, no unmount.
    vm.kill();
    up.map_err(|e| with_tail(&vm, e))?;
    case.say("the source VM was up (check block) and is killed");
    drop(vm);
    let dirty = work.path().join("dirty.raw");
    diskprep::to_raw(&source, &dirty)?;
    let before = {
        let dev = diskprep::Loop::attach(&dirty, part, false)?;
        let node = dev.device().to_path_buf();
        ensure!(
            diskprep::needs_recovery(&node)?,
            "the killed guest's ext4 does not need recovery: nothing to test"
        );
        drop(dev);
        // Mounted writable (on this copy): the kernel replays the journal,
        // so these are the files as the guest's kernel (and the stack) will
        // see them, not the stale blocks a `noload` mount shows.
        let m = Mounted::partition(&dirty, part, true)?;
        let files = diskprep::touched_files(m.root());
        Snapshot::take(m.root(), &files)?
    };
    std::fs::remove_file(&dirty).ok();
    case.say("its ext4 needs recovery (dumpe2fs: needs_recovery)");

    bp.disks[0].path = Some(source.clone());
    let stack = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    let report = case.stage1(&bp, &stack.vmdk, work.path());
    let result = report.result.clone().context("no result.json")?;
    ensure!(
        result["status"] == "success",
        "result.json status {}: {:#}",
        result["status"],
        result["errors"]
    );
    // Fixed, consistently: the files changed, their originals backed up,
    // the file system clean.
    let after_raw = work.path().join("after.raw");
    diskprep::to_raw(&work.path().join("disk0.qcow2"), &after_raw)?;
    {
        let dev = diskprep::Loop::attach(&after_raw, part, false)?;
        let node = dev.device().to_path_buf();
        let (clean, out) = diskprep::e2fsck_readonly(&node)?;
        ensure!(clean, "e2fsck -fn after stage 1:\n{out}");
        ensure!(!diskprep::needs_recovery(&node)?, "still needs recovery");
    }
    let m = Mounted::partition(&after_raw, part, false)?;
    let after = Snapshot::take(m.root(), &before.0.keys().cloned().collect::<Vec<_>>())?;
    let changed = after.changed_since(&before);
    for f in ["etc/fstab", "etc/network/interfaces", "boot/grub/grub.cfg"] {
        ensure!(
            changed.iter().any(|c| c.starts_with(f)),
            "{f} was not fixed: {changed:?}"
        );
        let backup = Path::new("opt/vmware/hcx/osam/data/backup").join(f);
        let saved = Snapshot::take(m.root(), &[backup.display().to_string()])?;
        ensure!(
            saved.0.values().next() == before.0.get(f),
            "{f}: its backup {} is not the original",
            backup.display()
        );
    }
    let fstab = std::fs::read_to_string(m.root().join("etc/fstab"))?;
    ensure!(
        fstab.contains("UUID="),
        "/etc/fstab names no UUID:\n{fstab}"
    );
    case.passed(&format!("journal replayed, fixed: {}", changed.join("; ")));
    Ok(())
}

/// The inputs written, BEGIN never: the wait shows on the console every
/// minute, and with `osam.begin_timeout` (set through the ESP's
/// `osam-extra.cfg`) it ends in result.json `begin.timeout`.
#[test]
fn begin_never_comes() -> Result<()> {
    let Some(case) = Case::start("begin-never", true)? else {
        return Ok(());
    };
    const TIMEOUT_S: u64 = 75;
    let image = guest_a()?;
    let bp = blueprint_for_guest(&image, "fault-begin-never");
    let before = Before::of(&image, root_partition(&bp))?;
    let stack = stack_with_options(
        Arch::X86_64,
        before.work(),
        &format!("osam.begin_timeout={TIMEOUT_S}"),
    )?;
    let (mut vm, fixup) = boot_stack(&case, &bp, &stack, before.work(), &[])?;
    let outcome = (|| -> Result<Value> {
        let ready = vm
            .wait_for(|| fixup.ready(), Duration::from_secs(400), "READY")
            .map_err(|e| with_tail(&vm, e))?;
        case.say(&format!("READY {ready}; the inputs, no BEGIN"));
        write_inputs(&bp, &fixup)?;
        wait_serial(
            &mut vm,
            "still waiting for BEGIN in /tmp/fixup (60 s)",
            Duration::from_secs(180),
        )?;
        case.say("the console shows the wait");
        ensure!(!fixup.ended(), "END before the timeout");
        vm.wait_for(
            || fixup.ended().then_some(()),
            Duration::from_secs(TIMEOUT_S + 120),
            "END after begin.timeout",
        )
        .map_err(|e| with_tail(&vm, e))?;
        case.say("END");
        fixup.result().context("END without a readable result.json")
    })();
    collect(&case, &fixup);
    let serial = vm.serial_log();
    vm.kill();
    let result = outcome?;
    ensure!(
        result["status"] == "failed",
        "result.json status {}",
        result["status"]
    );
    let errors = result["errors"].as_array().cloned().unwrap_or_default();
    let message = errors
        .iter()
        .find(|e| e["code"] == "begin.timeout")
        .and_then(|e| e["message"].as_str())
        .with_context(|| format!("no begin.timeout error: {errors:#?}"))?
        .to_owned();
    for needle in [
        "/tmp/fixup",
        &format!("{TIMEOUT_S} s"),
        "osam.begin_timeout",
    ] {
        ensure!(
            message.contains(needle),
            "the message lacks {needle:?}: {message}"
        );
    }
    if let Some(line) = kernel_trouble(&serial) {
        bail!("the kernel: {line}");
    }
    before.assert_untouched(0)?;
    case.passed(&message);
    Ok(())
}

/// vmtoolsd dying in the stack: a VM that says it is VMware (SMBIOS) but
/// has no VMware backdoor, the `vmtools` transport (`osam.transport`
/// through the ESP's `osam-extra.cfg`). PID 1 restarts vmtoolsd with a
/// growing delay, says so on the console, goes on waiting for BEGIN, and
/// ends at `osam.begin_timeout` as it should.
#[test]
fn vmtoolsd_crashing() -> Result<()> {
    let Some(case) = Case::start("vmtoolsd-crashing", true)? else {
        return Ok(());
    };
    const TIMEOUT_S: u64 = 90;
    let image = guest_a()?;
    let bp = blueprint_for_guest(&image, "fault-vmtoolsd");
    let work = work_dir()?;
    let stack = stack_with_options(
        Arch::X86_64,
        work.path(),
        &format!("osam.transport=vmtools osam.begin_timeout={TIMEOUT_S}"),
    )?;
    let (mut vm, _fixup) = boot_stack(
        &case,
        &bp,
        &stack,
        work.path(),
        &[
            "-smbios",
            "type=1,manufacturer=VMware,product=VMware Virtual Platform",
        ],
    )?;
    let waited = (|| -> Result<()> {
        wait_serial(&mut vm, "started vmtoolsd", Duration::from_secs(400))?;
        case.say("vmtoolsd started");
        wait_serial(&mut vm, "vmtoolsd exited", Duration::from_secs(120))?;
        wait_serial(&mut vm, "restarting in 2 s", Duration::from_secs(120))?;
        case.say("vmtoolsd died and was restarted");
        wait_serial(
            &mut vm,
            "begin.timeout",
            Duration::from_secs(TIMEOUT_S + 180),
        )?;
        Ok(())
    })();
    std::thread::sleep(Duration::from_secs(3));
    let serial = vm.serial_log().replace('\r', "");
    std::fs::write(case.logs.join("console.txt"), &serial).ok();
    vm.kill();
    waited?;
    if let Some(line) = kernel_trouble(&serial) {
        bail!("the kernel: {line}");
    }
    let restarts: Vec<&str> = serial
        .lines()
        .filter(|l| l.contains("vmtoolsd exited"))
        .collect();
    ensure!(
        restarts.len() >= 2,
        "fewer than two vmtoolsd deaths: {restarts:?}"
    );
    ensure!(
        serial.contains("started vmtoolsd (pid"),
        "no restart of vmtoolsd"
    );
    case.passed(&format!(
        "{} deaths of vmtoolsd handled; first: {}",
        restarts.len(),
        restarts[0].trim()
    ));
    Ok(())
}
