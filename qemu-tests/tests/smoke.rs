//! Smoke test of each stack under QEMU (TCG): the pinned kernel boots the
//! stack's PID 1 from an initramfs, the 9p transport comes up, and PID 1
//! answers the protocol: an invalid system-configuration.json fails with a
//! `config.*` error, and valid inputs with no guest disk attached fail
//! naming the missing guest.
//!
//! `OSAM_TEST_INIT_X86_64` / `OSAM_TEST_INIT_I686` replace `/init` with
//! another static binary (for debugging the harness itself);
//! `OSAM_KEEP_WORK=1` keeps the work folder (serial logs, shares, initrd).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use osam_qemu::Arch;
use osam_qemu::manager::{self, FixupDir};
use osam_qemu::smoke::{self, SmokeBoot};
use osam_qemu::vm::{Vm, VmConfig};
use serde_json::{Value, json};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `phase` against a fresh VM on a fresh share; on failure prints the
/// whole serial log. The VM is killed when the phase ends.
fn with_vm(
    boot: &SmokeBoot,
    work: &Path,
    name: &str,
    phase: impl FnOnce(&mut Vm, &FixupDir) -> Result<()>,
) -> Result<()> {
    let share = work.join(format!("share-{name}"));
    std::fs::create_dir_all(&share).with_context(|| format!("creating {}", share.display()))?;
    let config = VmConfig::from_smoke(boot, work.join(format!("serial-{name}.log")))
        // No replica disk is attached: do not wait the default 30 s for one.
        .cmdline_arg("osam.disk_timeout=10")
        .fixup_share(&share)
        .qmp(work.join(format!("qmp-{name}.sock")));
    let mut vm = Vm::start(&config).context("starting QEMU")?;
    let fixup = FixupDir::in_share(&share);
    let outcome = phase(&mut vm, &fixup);
    if outcome.is_err() {
        eprintln!(
            "===== {} serial log ({}) =====\n{}\n===== end of serial log =====",
            boot.arch,
            vm.serial_log_path().display(),
            vm.serial_log()
        );
    }
    vm.kill();
    outcome.with_context(|| format!("{} smoke phase {name}", boot.arch))
}

/// Waits for `fixup/` and a complete READY; checks READY against the stack.
fn wait_ready(vm: &mut Vm, fixup: &FixupDir, boot: &SmokeBoot) -> Result<()> {
    let t0 = Instant::now();
    vm.wait_for(
        || fixup.exists().then_some(()),
        BOOT_TIMEOUT,
        "fixup/ in the share",
    )?;
    let ready = vm.wait_for(
        || fixup.ready(),
        Duration::from_secs(30),
        "a complete fixup/READY",
    )?;
    eprintln!("{}: READY after {:.1?}: {ready}", boot.arch, t0.elapsed());
    ensure!(
        ready.get("version").is_some(),
        "READY has no version: {ready}"
    );
    ensure!(
        ready["arch"] == boot.arch.name(),
        "READY names the wrong arch: {ready}"
    );
    ensure!(
        ready["kernel"] == boot.release.as_str(),
        "READY names the wrong kernel: {ready}"
    );
    ensure!(
        ready["transport"]
            .as_str()
            .is_some_and(|t| t.starts_with("9p")),
        "READY names the wrong transport: {ready}"
    );
    Ok(())
}

/// BEGIN, then END within the timeout; returns result.json.
fn run_protocol(vm: &mut Vm, fixup: &FixupDir, system: &Value) -> Result<Value> {
    fixup.write_inputs(
        system,
        &manager::replica_disk_map(),
        &manager::network_interface_map(),
    )?;
    fixup.begin()?;
    let t0 = Instant::now();
    let result = vm.wait_for(|| fixup.result(), RUN_TIMEOUT, "fixup/END")?;
    eprintln!("END after {:.1?}: {result}", t0.elapsed());
    ensure!(
        !result.is_null(),
        "END is there but result.json is missing or not JSON"
    );
    ensure!(fixup.file("fixup.log").is_file(), "END without fixup.log");
    ensure!(
        result["status"] == "failed",
        "expected status failed: {result}"
    );
    Ok(result)
}

/// The work folder: removed at the end unless kept for debugging.
enum Workdir {
    Temp(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl Workdir {
    fn path(&self) -> &Path {
        match self {
            Workdir::Temp(t) => t.path(),
            Workdir::Kept(p) => p,
        }
    }
}

fn smoke(arch: Arch) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix(&format!("osam-smoke-{arch}-"))
        .tempdir()
        .context("creating a work folder")?;
    let work = if std::env::var_os("OSAM_KEEP_WORK").is_some() {
        let kept = work.keep();
        eprintln!("{arch}: keeping the work folder {}", kept.display());
        Workdir::Kept(kept)
    } else {
        Workdir::Temp(work)
    };
    let t0 = Instant::now();
    let boot = smoke::build(arch, work.path()).context("building the smoke initramfs")?;
    eprintln!(
        "{arch}: kernel {} with {} modules ({}), initramfs built in {:.1?}",
        boot.release,
        boot.modules.len(),
        boot.modules.join(" "),
        t0.elapsed()
    );

    // Phase 1: an invalid system-configuration.json is refused.
    with_vm(&boot, work.path(), "invalid", |vm, fixup| {
        let t0 = Instant::now();
        wait_ready(vm, fixup, &boot)?;
        let status = vm.qmp("query-status", Value::Null)?;
        ensure!(status["status"] == "running", "QMP query-status: {status}");
        let invalid = json!({ "version": 1, "migrationId": 5 });
        let result = run_protocol(vm, fixup, &invalid)?;
        let codes = manager::error_codes(&result);
        if !codes.iter().any(|c| c.starts_with("config.")) {
            bail!("expected a config.* error, got {codes:?}: {result}");
        }
        eprintln!("{arch}: invalid-config phase took {:.1?}", t0.elapsed());
        Ok(())
    })?;

    // Phase 2: valid inputs, but no guest disk is attached.
    with_vm(&boot, work.path(), "no-guest", |vm, fixup| {
        let t0 = Instant::now();
        wait_ready(vm, fixup, &boot)?;
        let system = manager::system_configuration(arch, "smoke-no-guest");
        let result = run_protocol(vm, fixup, &system)?;
        let codes = manager::error_codes(&result);
        if !codes
            .iter()
            .any(|c| c == "disk.not_found" || c == "guest.root_not_found")
        {
            bail!("expected disk.not_found or guest.root_not_found, got {codes:?}: {result}");
        }
        let message = result["errors"][0]["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("scsi0:0"),
            "the error does not name the missing disk's address: {result}"
        );
        eprintln!("{arch}: no-guest phase took {:.1?}", t0.elapsed());
        Ok(())
    })?;
    Ok(())
}

#[test]
fn smoke_x86_64() -> Result<()> {
    smoke(Arch::X86_64)
}

#[test]
fn smoke_i686() -> Result<()> {
    smoke(Arch::I686)
}
