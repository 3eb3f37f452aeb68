//! The disk transport on the real stack image, as a field engineer uses
//! it (docs/field-guide.md, "Fixing up from files on the disk"):
//!
//! 1. a copy of the stack's raw disk gets the three input files and BEGIN
//!    in `/fixup/` of its ESP, put there from the host with mtools
//!    (`mcopy -i disk.raw@@<ESP offset>`), and an `osam-extra.cfg` that
//!    makes "Fix up from files on this disk" (`osam.transport=disk`) the
//!    default entry, with `osam.after=poweroff`;
//! 2. it boots under SeaBIOS on pvscsi at scsi-id 15 with no replica disk
//!    and no 9p share, so the only way in and out is the ESP;
//! 3. once QEMU has powered off, the ESP's `/fixup/` holds result.json
//!    (`disk.not_found` naming scsi0:0: no replica is attached),
//!    fixup.log, progress.txt and END; BEGIN was consumed; and the FAT was
//!    unmounted cleanly (its dirty flag is clear).
//!
//! Missing tools fail the test: run scripts/install-deps.sh (mtools,
//! qemu-system-x86). On failure the serial log's last lines are printed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use osam_image::disk::{ESP_START, grub::DISK_ENTRY_ID};
use osam_qemu::Arch;
use osam_qemu::image::stack_image;
use osam_qemu::manager;
use osam_qemu::vm::{Disk, DiskBus, Firmware, Vm, VmConfig};
use serde_json::Value;

/// From QEMU's start to its power-off: boot under TCG, the wait for the
/// replica (`osam.disk_timeout=5`), the results, the power-off.
const RUN_TIMEOUT: Duration = Duration::from_secs(420);
/// Serial lines printed when the test fails.
const TAIL: usize = 80;
/// The fixup disk's SCSI target id on the manager's VMs.
const FIXUP_SCSI_ID: u8 = 15;
/// Byte 0x41 of a FAT32 boot sector: Linux sets bit 0 while the volume is
/// mounted read-write and clears it on unmount.
const FAT32_STATE: u64 = 0x41;

/// Runs an mtools command on the ESP of `disk`; returns its stdout.
fn mtools(tool: &str, disk: &Path, args: &[&OsStr]) -> Result<Vec<u8>> {
    let image = format!("{}@@{ESP_START}", disk.display());
    let out = Command::new(tool)
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&image)
        .args(args)
        .output()
        .with_context(|| format!("running {tool} (mtools: scripts/install-deps.sh)"))?;
    if !out.status.success() {
        bail!(
            "{tool} -i {image} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The names in the ESP's `/fixup/`.
fn esp_fixup_names(disk: &Path) -> Result<Vec<String>> {
    let out = mtools("mdir", disk, &["-b".as_ref(), "::/fixup".as_ref()])?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.trim().rsplit('/').next().map(str::to_owned))
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    Ok(names)
}

/// A file of the ESP's `/fixup/`.
fn esp_file(disk: &Path, name: &str) -> Result<Vec<u8>> {
    mtools(
        "mtype",
        disk,
        &["-t".as_ref(), format!("::/fixup/{name}").as_ref()],
    )
}

/// Puts the inputs, BEGIN and the boot options onto the ESP of `disk`.
fn prepare(disk: &Path, work: &Path) -> Result<()> {
    let inputs = work.join("inputs");
    std::fs::create_dir_all(&inputs)?;
    let files: [(&str, Value); 3] = [
        (
            "system-configuration.json",
            manager::system_configuration(Arch::X86_64, "disk-transport-1"),
        ),
        ("replica-disk-map.json", manager::replica_disk_map()),
        (
            "network-interface-map.json",
            manager::network_interface_map(),
        ),
    ];
    let mut paths: Vec<PathBuf> = Vec::new();
    for (name, value) in &files {
        let p = inputs.join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(value)?)?;
        paths.push(p);
    }
    let begin = inputs.join("BEGIN");
    std::fs::write(&begin, b"")?;
    paths.push(begin);
    let mut args: Vec<&OsStr> = vec!["-o".as_ref()];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    args.push("::/fixup/".as_ref());
    mtools("mcopy", disk, &args)?;
    let extra = inputs.join("osam-extra.cfg");
    std::fs::write(
        &extra,
        format!(
            "set default={DISK_ENTRY_ID}\n\
             set osam_extra='osam.after=poweroff osam.disk_timeout=5'\n"
        ),
    )?;
    mtools(
        "mcopy",
        disk,
        &[
            "-o".as_ref(),
            extra.as_os_str(),
            "::/boot/grub/osam-extra.cfg".as_ref(),
        ],
    )?;
    let names = esp_fixup_names(disk)?;
    ensure!(
        names.iter().any(|n| n == "BEGIN") && names.len() == 4,
        "the ESP's /fixup/ holds {names:?} after mcopy"
    );
    Ok(())
}

/// Byte `at` of the ESP.
fn esp_byte(disk: &Path, at: u64) -> Result<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(disk)?;
    f.seek(SeekFrom::Start(ESP_START + at))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0])
}

#[test]
fn x86_64_fixes_up_from_files_on_its_own_disk() -> Result<()> {
    let t0 = Instant::now();
    let image = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    eprintln!(
        "image {} ready in {:.1?}",
        image.dir.display(),
        t0.elapsed()
    );
    let work = tempfile::Builder::new()
        .prefix("osam-disk-transport-")
        .tempdir()?;
    let disk = work.path().join("osam-fixup-x86_64.raw");
    std::fs::copy(&image.raw, &disk).with_context(|| format!("copying {}", image.raw.display()))?;
    prepare(&disk, work.path())?;

    let mut fixup_disk = Disk::new(
        &disk,
        DiskBus::Pvscsi {
            scsi_id: FIXUP_SCSI_ID,
        },
    );
    // The guest's writes must reach the file: they are the results.
    fixup_disk.snapshot = false;
    let config = VmConfig::disk(
        Arch::X86_64,
        fixup_disk,
        Firmware::SeaBios,
        work.path().join("serial.log"),
    )
    .memory(512);
    let mut vm = Vm::start(&config).context("starting QEMU")?;
    let outcome = (|| -> Result<()> {
        while vm.is_running() {
            ensure!(
                vm.elapsed() < RUN_TIMEOUT,
                "no power-off within {RUN_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!("QEMU powered off after {:.1?}", vm.elapsed());
        let log = vm.serial_log();
        ensure!(
            log.contains("Fix up from files on this disk"),
            "GRUB's menu lacks the disk entry"
        );
        ensure!(
            log.contains("disk transport: copied network-interface-map.json"),
            "PID 1 did not copy the inputs from the ESP"
        );
        ensure!(
            log.contains("synced and unmounted") && !log.contains("not properly unmounted"),
            "the ESP was not synced and unmounted before the power-off"
        );

        let names = esp_fixup_names(&disk)?;
        for f in ["END", "fixup.log", "progress.txt", "result.json"] {
            ensure!(
                names.iter().any(|n| n == f),
                "{f} missing from the ESP's /fixup/: {names:?}"
            );
        }
        ensure!(
            !names.iter().any(|n| n == "BEGIN"),
            "BEGIN was not consumed: {names:?}"
        );
        ensure!(
            !names.iter().any(|n| n.starts_with('.')),
            "a temporary file is left: {names:?}"
        );
        let result: Value = serde_json::from_slice(&esp_file(&disk, "result.json")?)
            .context("result.json on the ESP")?;
        eprintln!("result.json: {result}");
        ensure!(result["status"] == "failed", "{result}");
        ensure!(result["migrationId"] == "disk-transport-1", "{result}");
        let not_found = result["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["code"] == "disk.not_found")
            .with_context(|| format!("no disk.not_found: {result}"))?;
        ensure!(
            not_found["message"]
                .as_str()
                .is_some_and(|m| m.contains("scsi0:0")),
            "disk.not_found does not name scsi0:0: {not_found}"
        );
        let progress = String::from_utf8_lossy(&esp_file(&disk, "progress.txt")?).into_owned();
        ensure!(
            progress.contains("validate: unchanged") && progress.contains("finished: failed"),
            "progress.txt:\n{progress}"
        );
        let log = String::from_utf8_lossy(&esp_file(&disk, "fixup.log")?).into_owned();
        ensure!(log.contains("disk.not_found"), "fixup.log:\n{log}");
        ensure!(
            esp_byte(&disk, FAT32_STATE)? & 1 == 0,
            "the ESP was not unmounted cleanly (its FAT32 dirty flag is set)"
        );
        Ok(())
    })();
    if outcome.is_err() {
        eprintln!(
            "===== last {TAIL} lines of the serial log ({}) =====\n{}\n\
             ===== QEMU's output =====\n{}\n===== end =====",
            vm.serial_log_path().display(),
            vm.serial_tail(TAIL),
            vm.qemu_output().trim()
        );
    }
    vm.kill();
    outcome
}
