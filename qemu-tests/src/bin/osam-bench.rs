//! `make bench`: the image builder's and the stack's numbers, measured in
//! one run and printed as a table (docs/benchmarks.md keeps a copy; the
//! run also writes it as `target/bench/bench.json`):
//!
//! - image build time from cached inputs, image sizes, boot to /tmp/fixup
//!   under TCG (BIOS and UEFI), and the smallest VM memory with which the
//!   stack still answers the protocol — for both stacks;
//! - stage 1 through the manager emulator on the reference guests ((a)
//!   Debian 12 amd64 with the x86_64 stack, (c) its i386 twin with the
//!   i686 stack): boot to READY with the guest attached, BEGIN to END as
//!   built (the initramfs lacks `vmw_pvscsi`: rebuilt), and BEGIN to END
//!   again on the fixed disk (the initramfs has the drivers: `unchanged`);
//! - the smallest VM memory with which stage 1 completes on guest (a) as
//!   built (rebuild included), bisected over 128/192/256/384 MiB;
//! - with `OSAM_BENCH_PEER=1` (`make bench-all`), the virt-v2v comparison
//!   of [`osam_qemu::peer`] (`make bench-peer` runs it alone).
//!
//! `OSAM_BENCH_ONLY=image,boot,memory,stage1,stage1-memory,peer` (any of
//! them, comma-separated) runs only those parts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use osam_image::build::{BuildOptions, Format, build};
use osam_qemu::Arch;
use osam_qemu::emulator::{self, Blueprint, RunOptions, RunReport, StopAfter, blueprint_for_guest};
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::DEBIAN_SUITE;
use osam_qemu::guests::tools_iso::tools_iso;
use osam_qemu::guests::{GuestArch, GuestImage, Recipe, guest_image};
use osam_qemu::image::{stack_arch, stack_binaries, stack_image};
use osam_qemu::manager::FixupDir;
use osam_qemu::vm::{Disk, DiskBus, Firmware, Vm, VmConfig};
use osam_qemu::{paths, peer};
use serde::Serialize;
use serde_json::{Value, json};

const READY_TIMEOUT: Duration = Duration::from_secs(150);

/// Boots `disk` and returns the seconds to READY, or `None` when it does
/// not come (or the stack does not answer an invalid input with END).
fn boot_secs(
    arch: Arch,
    disk: Disk,
    fw: impl FnOnce(&Path) -> Result<Firmware>,
    mib: u32,
) -> Result<Option<f64>> {
    let work = tempfile::tempdir()?;
    let share = work.path().join("share");
    std::fs::create_dir(&share)?;
    let config = VmConfig::disk(arch, disk, fw(work.path())?, work.path().join("serial.log"))
        .memory(mib)
        .share_9p(&share, "fixup");
    let fixup = FixupDir::in_share(&share);
    let mut vm = Vm::start(&config)?;
    let start = Instant::now();
    let ready = vm.wait_for(|| fixup.ready(), READY_TIMEOUT, "READY");
    let secs = start.elapsed().as_secs_f64();
    let outcome = match ready {
        Err(_) => None,
        Ok(_) => {
            // The stack must also get through a run: an invalid input
            // ends at once with a failed result.
            fixup.write_input("system-configuration.json", &json!({"version": 1}))?;
            fixup.write_input("replica-disk-map.json", &json!({"version": 1, "disks": []}))?;
            fixup.write_input(
                "network-interface-map.json",
                &json!({"version": 1, "interfaces": []}),
            )?;
            fixup.begin()?;
            match vm.wait_for(|| fixup.result(), Duration::from_secs(60), "END") {
                Ok(_) => Some(secs),
                Err(_) => None,
            }
        }
    };
    vm.kill();
    Ok(outcome)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// The parts of the bench to run (`OSAM_BENCH_ONLY`, else all but the
/// peer unless `OSAM_BENCH_PEER=1`).
#[derive(Debug, Clone)]
struct Parts(Vec<String>);

impl Parts {
    const ALL: [&str; 5] = ["image", "boot", "memory", "stage1", "stage1-memory"];

    fn from_env() -> Self {
        let env = |name: &str| std::env::var(name).unwrap_or_default();
        let mut parts: Vec<String> = match env("OSAM_BENCH_ONLY").trim() {
            "" => Self::ALL.map(str::to_owned).to_vec(),
            list => list.split(',').map(|p| p.trim().to_owned()).collect(),
        };
        if env("OSAM_BENCH_PEER") == "1" && !parts.iter().any(|p| p == "peer") {
            parts.push("peer".into());
        }
        Self(parts)
    }

    fn has(&self, part: &str) -> bool {
        self.0.iter().any(|p| p == part)
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    arch: String,
    measure: String,
    value: String,
    goal: String,
}

/// The goal of a measure (docs/benchmarks.md), where it has one.
fn goal(measure: &str) -> &'static str {
    match measure {
        m if m.starts_with("image build") => "both stacks ≤ 60 s",
        m if m.starts_with("size VMDK") => "≤ 48 MiB",
        m if m.starts_with("boot to /tmp/fixup") => "≤ 15 s",
        m if m.starts_with("smallest VM memory that answers") => "works with 256 MiB",
        m if m.starts_with("smallest VM memory that completes stage 1") => "works with 256 MiB",
        _ => "",
    }
}

/// A reference guest and the stack that fixes it.
struct Reference {
    label: &'static str,
    guest: GuestArch,
    stack: Arch,
}

const REFERENCES: [Reference; 2] = [
    Reference {
        label: "guest (a)",
        guest: GuestArch::Amd64,
        stack: Arch::X86_64,
    },
    Reference {
        label: "guest (c)",
        guest: GuestArch::I386,
        stack: Arch::I686,
    },
];

/// Memory sizes tried for stage 1 (MiB), ascending; the guest's own
/// (1024 MiB) is known to work from the first run.
const STAGE1_MEMORY: [u32; 4] = [128, 192, 256, 384];

/// Runs stage 1 only; `work` keeps the overlays (the fixed guest).
fn stage1(bp: &Blueprint, stack: &Path, logs: &Path, work: Option<PathBuf>) -> RunReport {
    let mut options = RunOptions::new(stack, logs);
    options.stop_after = StopAfter::Stage1;
    options.keep = work.is_some();
    options.work_dir = work;
    emulator::run(bp, &options, &mut |line| eprintln!("    {line}"))
}

/// A stage-1 blueprint of `image`: its emulator blueprint with bounded
/// waits.
fn stage1_blueprint(image: &GuestImage, id: &str) -> Blueprint {
    let mut bp = blueprint_for_guest(image, id);
    bp.timeouts.ready_seconds = 300;
    bp.timeouts.end_seconds = 900;
    bp
}

/// result.json's step `id`: (status, seconds, summary).
fn step(report: &RunReport, id: &str) -> Option<(String, f64, String)> {
    let steps = report.result.as_ref()?["steps"].as_array()?.clone();
    let s = steps.iter().find(|s| s["id"] == id)?;
    Some((
        s["status"].as_str().unwrap_or("?").to_owned(),
        s["durationMs"].as_f64().unwrap_or(0.0) / 1000.0,
        s["summary"].as_str().unwrap_or("").to_owned(),
    ))
}

fn phase_secs(report: &RunReport, name: &str) -> f64 {
    report.phase(name).map_or(0.0, |p| p.seconds)
}

/// `77.0 s (…)` for a stage-1 run's BEGIN to END, or why it failed.
fn begin_to_end(report: &RunReport) -> String {
    if let Some(f) = &report.failure {
        return format!("failed at {}: {}", f.step, f.message);
    }
    let total: f64 = report.phases.iter().map(|p| p.seconds).sum();
    format!(
        "{:.1} s (QEMU start to power-off {:.1} s)",
        phase_secs(report, "stage1.fixup"),
        total
    )
}

/// The initramfs step as `rebuilt, 58.5 s` / `unchanged, 0.4 s`.
fn initramfs_words(report: &RunReport) -> String {
    match step(report, "initramfs") {
        Some((status, secs, summary)) => {
            let what = if status == "changed" || summary.contains("rebuilt") {
                "rebuilt"
            } else {
                status.as_str()
            };
            format!("initramfs {what} in {secs:.1} s")
        }
        None => "initramfs step not reported".into(),
    }
}

/// Stage 1 on a reference guest as built and again on the fixed disk.
fn stage1_rows(
    r: &Reference,
    image: &GuestImage,
    bench_dir: &Path,
    push: &mut dyn FnMut(Arch, &str, String),
    details: &mut Vec<Value>,
) -> Result<()> {
    let stack = stack_image(r.stack)?;
    let name = image.recipe().name.clone();
    let id = format!("bench-s1-{name}");
    let logs = bench_dir.join("stage1").join(&name);
    let work = bench_dir
        .join("work")
        .join(format!("s1-{}", r.guest.debian_arch()));
    let _ = std::fs::remove_dir_all(&logs);
    let _ = std::fs::remove_dir_all(&work);
    let bp = stage1_blueprint(image, &id);
    eprintln!("{}: stage 1 on {} {name} as built", r.stack, r.label);
    let first = stage1(&bp, &stack.vmdk, &logs, Some(work.clone()));
    eprintln!("{}", first.summary());
    push(
        r.stack,
        &format!(
            "stage 1, {} ({name}, {} MiB): boot to READY",
            r.label, bp.memory_mib
        ),
        match first.phase("stage1.ready") {
            Some(p) if p.status == emulator::PhaseStatus::Ok => format!("{:.1} s", p.seconds),
            _ => begin_to_end(&first),
        },
    );
    push(
        r.stack,
        &format!(
            "stage 1, {}, as built: BEGIN to END ({})",
            r.label,
            initramfs_words(&first)
        ),
        begin_to_end(&first),
    );
    details.push(json!({"guest": name, "run": "as built", "report": first}));
    let overlay = work.join("disk0.qcow2");
    if first.ok && overlay.is_file() {
        // The fixed guest: its initramfs has the drivers now.
        let mut again = stage1_blueprint(image, &format!("{id}-again"));
        again.disks[0].path = Some(overlay);
        eprintln!(
            "{}: stage 1 again on the fixed disk of {}",
            r.stack, r.label
        );
        let second = stage1(&again, &stack.vmdk, &logs, None);
        eprintln!("{}", second.summary());
        push(
            r.stack,
            &format!(
                "stage 1, {}, again on the fixed disk: BEGIN to END ({})",
                r.label,
                initramfs_words(&second)
            ),
            begin_to_end(&second),
        );
        details.push(json!({"guest": name, "run": "again on the fixed disk", "report": second}));
    } else {
        push(
            r.stack,
            &format!("stage 1, {}, again on the fixed disk", r.label),
            "not run: the first run failed".into(),
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The smallest of [`STAGE1_MEMORY`] with which stage 1 completes on
/// `image` as built (bisected: stage 1 needing more memory never works
/// with less).
fn stage1_memory(
    r: &Reference,
    image: &GuestImage,
    bench_dir: &Path,
    details: &mut Vec<Value>,
) -> Result<String> {
    let stack = stack_image(r.stack)?;
    let (mut lo, mut hi) = (0usize, STAGE1_MEMORY.len());
    let mut failures = Vec::new();
    while lo < hi {
        let mid = (lo + hi) / 2;
        let m = STAGE1_MEMORY[mid];
        let id = format!("bench-s1-mem{m}");
        let mut bp = stage1_blueprint(image, &id);
        // Below the blueprint's 256 MiB floor on purpose: this is the
        // search for the floor.
        bp.memory_mib = m;
        bp.timeouts.ready_seconds = 180;
        bp.timeouts.end_seconds = 600;
        let logs = bench_dir.join("stage1-memory");
        eprintln!("{}: stage 1 on {} with {m} MiB", r.stack, r.label);
        let report = stage1(&bp, &stack.vmdk, &logs, None);
        eprintln!("{}", report.summary());
        let ok = report.ok;
        let why = report
            .failure
            .as_ref()
            .map(|f| format!("{}: {}", f.step, f.message));
        details.push(json!({"memoryMib": m, "ok": ok, "failure": why}));
        if ok {
            hi = mid;
        } else {
            failures.push((m, why.unwrap_or_default()));
            lo = mid + 1;
        }
    }
    let below = failures
        .iter()
        .filter(|(m, _)| STAGE1_MEMORY.get(hi).is_none_or(|h| m < h))
        .max_by_key(|(m, _)| *m)
        .map(|(m, why)| format!(" ({m} MiB fails: {why})"))
        .unwrap_or_default();
    Ok(match STAGE1_MEMORY.get(hi) {
        Some(m) => format!("{m} MiB{below}"),
        None => format!("over {} MiB{below}", STAGE1_MEMORY[STAGE1_MEMORY.len() - 1]),
    })
}

fn main() -> Result<()> {
    let parts = Parts::from_env();
    let bench_dir = paths::workspace_root().join("target/bench");
    std::fs::create_dir_all(&bench_dir)?;
    let date = peer::utc_now();
    let machine = peer::machine_description();
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |arch: Arch, what: &str, value: String| {
        eprintln!("{arch}: {what}: {value}");
        rows.push(Row {
            arch: arch.to_string(),
            measure: what.to_string(),
            value,
            goal: goal(what).to_owned(),
        });
    };
    let inputs = paths::fetch_inputs()?;
    let root = paths::workspace_root();
    for arch in Arch::ALL {
        if parts.has("image") {
            // Build time from cached inputs (the stack binaries built first).
            let [init, fixupctl, stage2] = stack_binaries(arch)?;
            let out = tempfile::tempdir()?;
            let t0 = Instant::now();
            let report = build(&BuildOptions {
                arch: stack_arch(arch),
                formats: vec![Format::Vmdk],
                out: out.path().to_path_buf(),
                inputs: inputs.clone(),
                pins_file: root.join("image/pins.txt"),
                kernel_config: root.join("kernel-config"),
                init,
                fixupctl,
                stage2: Some(stage2),
                epoch: 0,
                size_mib: 64,
                work: None,
            })
            .context("building the image")?;
            push(
                arch,
                "image build (cached inputs)",
                format!("{:.1} s", t0.elapsed().as_secs_f64()),
            );
            for o in &report.outputs {
                let name = o
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name.ends_with(".vmdk") || name.ends_with(".ova") {
                    let size = std::fs::metadata(o)?.len();
                    push(
                        arch,
                        &format!(
                            "size {}",
                            if name.ends_with(".ova") {
                                "OVA"
                            } else {
                                "VMDK (streamOptimized)"
                            }
                        ),
                        mib(size),
                    );
                }
            }
            push(arch, "initramfs (xz)", mib(report.initrd_bytes));
        }

        let image = stack_image(arch)?;
        let pvscsi = || Disk::new(&image.vmdk, DiskBus::Pvscsi { scsi_id: 15 });
        if parts.has("boot") {
            let bios = boot_secs(arch, pvscsi(), |_| Ok(Firmware::SeaBios), 512)?;
            push(
                arch,
                "boot to /tmp/fixup, BIOS (pvscsi scsi0:15)",
                bios.map_or("did not come".into(), |s| format!("{s:.1} s")),
            );
            let uefi = match arch {
                Arch::X86_64 => boot_secs(
                    arch,
                    Disk::new(&image.raw, DiskBus::Ahci),
                    |_| Ok(Firmware::OvmfX64),
                    512,
                )?,
                Arch::I686 => boot_secs(
                    arch,
                    Disk::new(&image.raw, DiskBus::Ahci),
                    |d| Ok(Firmware::ovmf_ia32(d)?),
                    512,
                )?,
            };
            push(
                arch,
                "boot to /tmp/fixup, UEFI (ahci)",
                uefi.map_or("did not come".into(), |s| format!("{s:.1} s")),
            );
        }
        if parts.has("memory") {
            let mut smallest = None;
            for m in [384u32, 256, 192, 160, 128, 96] {
                match boot_secs(arch, pvscsi(), |_| Ok(Firmware::SeaBios), m)? {
                    Some(_) => smallest = Some(m),
                    None => break,
                }
            }
            push(
                arch,
                "smallest VM memory that answers (BIOS)",
                smallest.map_or("over 384 MiB".into(), |m| format!("{m} MiB")),
            );
        }
    }

    // Stage 1 on the reference guests (built once as root, then cached).
    let mut stage1_details = Vec::new();
    let mut guest_a = None;
    if parts.has("stage1") || parts.has("stage1-memory") || parts.has("peer") {
        let mirror = host_mirror(DEBIAN_SUITE)?;
        for r in &REFERENCES {
            let needed = parts.has("stage1") || r.guest == GuestArch::Amd64;
            if !needed {
                continue;
            }
            let image = guest_image(&Recipe::debian12_bios(r.guest, &mirror))
                .with_context(|| format!("reference {}", r.label))?;
            if parts.has("stage1") {
                stage1_rows(r, &image, &bench_dir, &mut push, &mut stage1_details)?;
            }
            if parts.has("stage1-memory") && r.guest == GuestArch::Amd64 {
                let value = stage1_memory(r, &image, &bench_dir, &mut stage1_details)?;
                push(
                    r.stack,
                    &format!(
                        "smallest VM memory that completes stage 1 ({}, as built: initramfs rebuilt)",
                        r.label
                    ),
                    value,
                );
            }
            if r.guest == GuestArch::Amd64 {
                guest_a = Some(image);
            }
        }
    }

    // The peer comparison.
    let mut peer_report = None;
    if parts.has("peer") {
        let image = guest_a.context("guest (a)")?;
        let iso = tools_iso(&image).context("the Tools ISO")?;
        let stack = stack_image(Arch::X86_64)?;
        let start = Instant::now();
        let report = peer::compare(&image, &stack.vmdk, &iso.path, &bench_dir, &mut |line| {
            eprintln!("[{:7.1}s] {line}", start.elapsed().as_secs_f64())
        })?;
        peer::write_json(&report, &bench_dir)?;
        peer_report = Some(report);
    }

    let mut table = format!("Measured {date} on {machine}.\n\n");
    table.push_str("| arch | measure | value | goal |\n|---|---|---|---|\n");
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.arch,
            r.measure,
            r.value.replace('|', "\\|"),
            r.goal
        ));
    }
    if let Some(p) = &peer_report {
        table.push('\n');
        table.push_str(&p.text());
    }
    println!("{table}");
    let json_path = bench_dir.join("bench.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json!({
            "date": date,
            "machine": machine,
            "parts": parts.0,
            "rows": rows,
            "stage1": stage1_details,
            "peer": peer_report,
        }))? + "\n",
    )?;
    std::fs::write(bench_dir.join("bench.md"), &table)?;
    println!("JSON: {}", json_path.display());
    Ok(())
}
