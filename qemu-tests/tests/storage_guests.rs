//! Stage 1 on guests with real storage stacks, end to end under QEMU
//! (TCG): the real x86_64 stack image on pvscsi at scsi0:15, the guest's
//! disks at scsi0:0, scsi0:1 (copy-on-write overlays of the cached disks
//! that `osam_qemu::storage_guests` builds):
//!
//! - LVM: `/boot` on sda1, VG `vg0` on sda2 + sdb1, LVs `root` (ext4),
//!   `swap`, `data` (xfs, on the second disk);
//! - md RAID1 (sda1 + sdb1) with an ext4 root, swap on sda2 and sdb2;
//! - btrfs with subvolumes `@` (root) and `@home`;
//! - two plain disks, `/data` on `/dev/sdb1`.
//!
//! For each: the manager's inputs and BEGIN over 9p, END within the
//! timeout, `status: success` (else the end of fixup.log is printed), the
//! guest's commands run in its chroot with its kernel version, fixup.log
//! naming every mount and unmount and the LVM/md activation and
//! deactivation; then the stack's rescue shell boots over the same disks
//! and shows them clean: `e2fsck -fn`, `xfs_repair -n`, `btrfs check
//! --readonly`, ext4 and md superblocks clean, swap signatures intact, the
//! guest's fstab with `UUID=` for kernel device names, the tool log,
//! `grub.cfg` naming the root as GRUB would and an initramfs holding
//! `vmw_pvscsi`.
//!
//! One VM at a time (a lock in this file): the machine has two cores.
//! `OSAM_KEEP_WORK=1` keeps the work folders (serial logs, fixup share,
//! overlays).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use osam_qemu::Arch;
use osam_qemu::image::{StackImage, stack_image};
use osam_qemu::manager::FixupDir;
use osam_qemu::paths::tail_lines;
use osam_qemu::storage_guests::{
    BuiltGuest, CheckReport, FsKind, GUEST_KERNEL, GuestKind, ScsiDisk, StackBoot, build_guest,
    check_disks, mount_check_id, scsi_disk_args, stack_boot,
};
use osam_qemu::vm::{Disk, DiskBus, Firmware, Vm, VmConfig};
use serde_json::Value;

/// From QEMU's start to a complete READY.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// From BEGIN to END.
const END_TIMEOUT: Duration = Duration::from_secs(300);
/// The fixup disk's SCSI target id.
const FIXUP_SCSI_ID: u8 = 15;
/// fixup.log and serial lines printed on a failure.
const TAIL: usize = 80;

/// One VM at a time.
static ONE_VM: Mutex<()> = Mutex::new(());

/// The stack image, built (or found) once per run: the tree changes under
/// a run now and then, and every test should not rebuild it.
static STACK: Mutex<Option<StackImage>> = Mutex::new(None);

fn stack() -> Result<StackImage> {
    let mut cached = STACK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(image) = cached.as_ref() {
        return Ok(image.clone());
    }
    let t0 = Instant::now();
    let image = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    eprintln!(
        "x86_64: stack image {} ready in {:.1?}",
        image.dir.display(),
        t0.elapsed()
    );
    *cached = Some(image.clone());
    Ok(image)
}

/// The work folder, kept with `OSAM_KEEP_WORK=1`.
struct Work {
    dir: Option<tempfile::TempDir>,
    path: std::path::PathBuf,
}

impl Work {
    fn new(kind: GuestKind) -> Result<Work> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("osam-storage-{kind}-"))
            .tempdir()
            .context("creating a work folder")?;
        Ok(Work {
            path: dir.path().to_path_buf(),
            dir: Some(dir),
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if std::env::var_os("OSAM_KEEP_WORK").is_some_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping {}", dir.keep().display());
            }
        }
    }
}

/// Whether `line` has `phrase` starting at a word boundary ("activated"
/// but not "deactivated").
fn has_phrase(line: &str, phrase: &str) -> bool {
    line.match_indices(phrase).any(|(at, _)| {
        line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric())
    })
}

/// Whether `line` names `path` as a whole path (followed by the end, a
/// space, `)`, `,` or `:`).
fn names_path(line: &str, path: &str) -> bool {
    line.match_indices(path).any(|(at, _)| {
        line[at + path.len()..]
            .chars()
            .next()
            .is_none_or(|c| matches!(c, ' ' | ')' | ',' | ':'))
    })
}

/// The lines of `log` with every one of `words` (as phrases).
fn lines_with<'a>(log: &'a str, words: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| words.iter().all(|w| has_phrase(l, w)))
        .collect()
}

/// Runs stage 1 on the guest: boots the stack image with the overlays,
/// plays the manager, returns result.json and fixup.log.
fn run_fixup(
    image: &StackImage,
    guest: &BuiltGuest,
    disks: &[std::path::PathBuf],
    work: &Path,
) -> Result<(Value, String)> {
    let spec = &guest.spec;
    let share = work.join("share");
    std::fs::create_dir_all(&share)?;
    let replicas: Vec<ScsiDisk> = disks
        .iter()
        .enumerate()
        .map(|(i, p)| ScsiDisk::writable(p, "qcow2", i as u8))
        .collect();
    let config = VmConfig::disk(
        Arch::X86_64,
        Disk::new(
            &image.vmdk,
            DiskBus::Pvscsi {
                scsi_id: FIXUP_SCSI_ID,
            },
        ),
        Firmware::SeaBios,
        work.join("fixup-serial.log"),
    )
    .memory(512)
    .share_9p(&share, "fixup")
    .args(["-nic", "none"])
    .args(scsi_disk_args(&replicas));
    let fixup = FixupDir::in_share(&share);
    let mut vm = Vm::start(&config).context("starting QEMU for the fixup")?;
    let outcome = (|| -> Result<Value> {
        let ready = vm.wait_for(|| fixup.ready(), READY_TIMEOUT, "a complete fixup/READY")?;
        eprintln!("{}: READY after {:.1?}: {ready}", spec.kind, vm.elapsed());
        fixup.write_inputs(
            &spec.system_configuration(&format!("storage-{}", spec.kind)),
            &spec.replica_disk_map(),
            &spec.network_interface_map(),
        )?;
        fixup.begin()?;
        let t0 = Instant::now();
        let result = vm.wait_for(|| fixup.result(), END_TIMEOUT, "fixup/END")?;
        eprintln!(
            "{}: END {:.1?} after BEGIN, status {}",
            spec.kind,
            t0.elapsed(),
            result["status"]
        );
        Ok(result)
    })();
    if outcome.is_err() {
        eprintln!(
            "===== {}: last {TAIL} lines of the fixup VM's serial log ({}) =====\n{}\n===== end =====",
            spec.kind,
            vm.serial_log_path().display(),
            vm.serial_tail(TAIL)
        );
    }
    vm.kill();
    let result = outcome.with_context(|| format!("{}: the fixup run", spec.kind))?;
    let log = std::fs::read_to_string(fixup.file("fixup.log")).unwrap_or_default();
    ensure!(!result.is_null(), "END without a readable result.json");
    Ok((result, log))
}

/// The commands of result.json as (argv joined, exit code).
fn commands(result: &Value) -> Vec<(String, Option<i64>)> {
    result["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["commands"].as_array().into_iter().flatten())
        .map(|c| {
            // The program by its name (`/usr/sbin/update-initramfs`).
            let argv: Vec<&str> = c["argv"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .enumerate()
                .map(|(i, a)| {
                    if i == 0 {
                        a.rsplit('/').next().unwrap_or(a)
                    } else {
                        a
                    }
                })
                .collect();
            (argv.join(" "), c["exitCode"].as_i64())
        })
        .collect()
}

/// What result.json and fixup.log must show; problems are collected.
fn check_run(guest: &BuiltGuest, result: &Value, log: &str, problems: &mut Vec<String>) {
    let spec = &guest.spec;
    // Commands in the guest, with its kernel version.
    let ran = commands(result);
    let boot_disk = lines_with(log, &["scsi0:0:"])
        .first()
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("/dev/")))
        .map(str::to_owned);
    // The boot disk as fixup.log names it (`scsi0:0: /dev/sda …`), else
    // any disk.
    let install = match &boot_disk {
        Some(dev) => format!("grub-install --target=i386-pc {dev}"),
        None => "grub-install --target=i386-pc /dev/".to_string(),
    };
    let wanted = [
        format!("update-initramfs -u -k {GUEST_KERNEL}"),
        install,
        "grub-mkconfig -o /boot/grub/grub.cfg".to_string(),
    ];
    for want in &wanted {
        match ran.iter().find(|(argv, _)| argv.starts_with(want.as_str())) {
            Some((_, Some(0))) => {}
            Some((argv, rc)) => problems.push(format!("`{argv}` exited {rc:?}")),
            None => problems.push(format!(
                "result.json lists no `{want}` (commands: {:?})",
                ran.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>()
            )),
        }
    }
    // Every mount and unmount in fixup.log.
    for (mp, f, _) in spec.mounts() {
        let at = if mp == "/" {
            "/sysroot".to_string()
        } else {
            format!("/sysroot{mp}")
        };
        let mounted = log
            .lines()
            .any(|l| has_phrase(l, "mounted") && names_path(l, &at));
        if !mounted {
            problems.push(format!(
                "fixup.log does not say that {mp} ({}) was mounted at {at}",
                f.kind.name()
            ));
        }
        // "unmounted /sysroot/data", or "unmounting /dev/sdb1 on
        // /sysroot/data (ext4)" (a failure to unmount fails the run).
        let unmounted = log.lines().any(|l| {
            (has_phrase(l, "unmounted") || has_phrase(l, "unmounting")) && names_path(l, &at)
        });
        if !unmounted {
            problems.push(format!("fixup.log does not say that {at} was unmounted"));
        }
    }
    if let Some(vg) = &spec.vg {
        let phrase = format!("activated LVM volume group {}", vg.name);
        if lines_with(log, &[&phrase]).is_empty() {
            problems.push(format!("fixup.log lacks \"{phrase}\""));
        }
        let phrase = format!("deactivated LVM volume group {}", vg.name);
        if lines_with(log, &[&phrase]).is_empty() {
            problems.push(format!(
                "fixup.log lacks \"{phrase}\": the VG may be left active"
            ));
        }
    }
    if let Some(md) = &spec.md {
        let assembled = lines_with(log, &["assembled md array"]);
        if !assembled.iter().any(|l| {
            l.to_ascii_lowercase()
                .replace([':', '-'], "")
                .contains(&md.uuid.replace(':', ""))
        }) {
            problems.push(format!(
                "fixup.log does not say that the array {} was assembled: {assembled:?}",
                md.uuid
            ));
        }
        if lines_with(log, &["stopped md array"]).is_empty() {
            problems
                .push("fixup.log lacks \"stopped md array\": the array may be left running".into());
        }
    }
}

/// What the rescue shell saw on the disks after the fixup.
fn check_disks_clean(guest: &BuiltGuest, report: &CheckReport, problems: &mut Vec<String>) {
    let spec = &guest.spec;
    for f in report.failures() {
        problems.push(format!("after the fixup: {f}"));
    }
    let mut expected_checks: Vec<String> = Vec::new();
    for f in &spec.filesystems {
        match f.kind {
            FsKind::Swap => {
                let key = format!("swap-signature-{}", f.label);
                if report.values.get(&key).map(String::as_str) != Some("SWAPSPACE2") {
                    problems.push(format!("{key} is {:?}", report.values.get(&key)));
                }
            }
            kind => {
                expected_checks.push(format!("fsck-{}", f.label));
                if kind == FsKind::Ext4 {
                    let key = format!("fs-state-{}", f.label);
                    if report.values.get(&key).map(String::as_str) != Some("clean") {
                        problems.push(format!("{key} is {:?}", report.values.get(&key)));
                    }
                    let key = format!("fs-features-{}", f.label);
                    if report
                        .values
                        .get(&key)
                        .is_some_and(|v| v.contains("needs_recovery"))
                    {
                        problems.push(format!("{key}: the journal needs recovery"));
                    }
                }
            }
        }
    }
    for (mp, _, _) in spec.mounts() {
        expected_checks.push(mount_check_id(mp));
    }
    if let Some(md) = &spec.md {
        expected_checks.push("md-assemble".into());
        for i in 0..md.members.len() {
            let key = format!("md-state-{i}");
            if report.values.get(&key).map(String::as_str) != Some("clean") {
                problems.push(format!(
                    "md member {i}: superblock state {:?} (not clean)",
                    report.values.get(&key)
                ));
            }
        }
    }
    if spec.vg.is_some() {
        expected_checks.push("vg-activate".into());
    }
    for id in expected_checks {
        if !report.checks.contains_key(&id) {
            problems.push(format!("the check {id} did not report"));
        }
    }

    // The guest's files after stage 1.
    let fstab = report.file("fstab").unwrap_or_default();
    let fields = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect()
    };
    let expected = spec.expected_fstab();
    if fields(&fstab) != fields(&expected) {
        problems.push(format!(
            "/etc/fstab after the fixup:\n{fstab}--- expected (UUID= for kernel device names) ---\n{expected}"
        ));
    }
    let tools = report.file("tools").unwrap_or_default();
    for want in [
        format!("update-initramfs -u -k {GUEST_KERNEL}"),
        "grub-install --target=i386-pc /dev/".to_string(),
        "grub-mkconfig -o /boot/grub/grub.cfg".to_string(),
    ] {
        if !tools.lines().any(|l| l.starts_with(&want)) {
            problems.push(format!(
                "the guest's tool log lacks `{want}` (the command did not run in the guest):\n{tools}"
            ));
        }
    }
    let grub = report.file("grub.cfg").unwrap_or_default();
    let linux_lines: Vec<&str> = grub
        .lines()
        .filter(|l| l.trim_start().starts_with("linux"))
        .collect();
    for arg in spec.expected_root_args() {
        if !linux_lines
            .iter()
            .any(|l| l.split_whitespace().any(|w| w == arg))
        {
            problems.push(format!("grub.cfg's linux line lacks {arg}:\n{grub}"));
        }
    }
    if !grub.contains("stand-in for grub-mkconfig") {
        problems.push(format!("grub.cfg was not regenerated:\n{grub}"));
    }
    match report
        .values
        .get("initrd-pvscsi")
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(n) if n > 0 => {}
        other => problems.push(format!(
            "the rebuilt initramfs of {GUEST_KERNEL} lacks vmw_pvscsi.ko ({other:?}); \
             /etc/initramfs-tools/modules:\n{}",
            report.file("initramfs-modules").unwrap_or_default()
        )),
    }
}

fn storage_guest(kind: GuestKind) -> Result<()> {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let work = Work::new(kind)?;
    let image = stack()?;
    let boot: StackBoot = stack_boot(&image, &work.path().join("stack"))?;
    let guest = build_guest(kind, &boot)?;
    match guest.built_in {
        Some(d) => eprintln!(
            "{kind}: guest built in {d:.1?} into {}",
            guest.dir.display()
        ),
        None => eprintln!("{kind}: guest from the cache {}", guest.dir.display()),
    }
    let disks = guest.overlays(work.path())?;

    let t1 = Instant::now();
    let (result, log) = run_fixup(&image, &guest, &disks, work.path())?;
    let fixup_time = t1.elapsed();
    if result["status"] != "success" {
        bail!(
            "{kind}: stage 1 failed: {:#}\n===== last {TAIL} lines of fixup.log =====\n{}\n===== end =====",
            result["errors"],
            tail_lines(&log, TAIL)
        );
    }
    let mut problems = Vec::new();
    check_run(&guest, &result, &log, &mut problems);
    let storage_lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            [
                "mounted",
                "unmounting",
                "unmounted",
                "activated",
                "deactivated",
                "assembled",
                "stopped",
            ]
            .iter()
            .any(|w| has_phrase(l, w))
        })
        .collect();
    eprintln!(
        "{kind}: fixup.log on storage:\n  {}",
        storage_lines.join("\n  ")
    );

    let t2 = Instant::now();
    let report = check_disks(&guest.spec, &boot, &disks, work.path())?;
    check_disks_clean(&guest, &report, &mut problems);
    eprintln!("{kind}: after the fixup: checks {:?}", report.checks);
    eprintln!(
        "{kind}: after the fixup: {}",
        report
            .values
            .iter()
            .filter(|(k, _)| !k.starts_with("fs-features") && !k.starts_with("file-"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "{kind}: fixup VM {fixup_time:.1?}, check VM {:.1?}, total {:.1?}",
        t2.elapsed(),
        t0.elapsed()
    );
    if !problems.is_empty() {
        bail!(
            "{kind}: {} problem(s):\n- {}\n===== last {TAIL} lines of fixup.log =====\n{}\n\
             ===== check serial log: {} =====",
            problems.len(),
            problems.join("\n- "),
            tail_lines(&log, TAIL),
            report.log_path.display()
        );
    }
    Ok(())
}

#[test]
fn lvm_root_separate_boot_and_second_pv() -> Result<()> {
    storage_guest(GuestKind::Lvm)
}

#[test]
fn md_raid1_root() -> Result<()> {
    storage_guest(GuestKind::MdRaid1)
}

#[test]
fn btrfs_subvolumes() -> Result<()> {
    storage_guest(GuestKind::Btrfs)
}

#[test]
fn two_plain_disks() -> Result<()> {
    storage_guest(GuestKind::TwoDisks)
}

#[test]
fn phrases() {
    assert!(has_phrase(
        "activated LVM volume group vg0 (UUID x)",
        "activated LVM"
    ));
    assert!(!has_phrase(
        "deactivated LVM volume group vg0",
        "activated LVM"
    ));
    assert!(has_phrase(
        "x: deactivated LVM volume group vg0",
        "deactivated LVM"
    ));
}
