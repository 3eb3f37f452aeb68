//! `make bench`: the image builder's and the stack's numbers, measured in
//! one run and printed as a table (docs/benchmarks.md keeps a copy):
//! image build time from cached inputs, image sizes, boot to /tmp/fixup
//! under TCG (BIOS and UEFI), and the smallest VM memory with which the
//! stack still answers the protocol.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use osam_image::build::{BuildOptions, Format, build};
use osam_qemu::Arch;
use osam_qemu::image::{stack_arch, stack_binaries, stack_image};
use osam_qemu::manager::FixupDir;
use osam_qemu::paths;
use osam_qemu::vm::{Disk, DiskBus, Firmware, Vm, VmConfig};
use serde_json::json;

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

fn main() -> Result<()> {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut push = |arch: Arch, what: &str, value: String| {
        eprintln!("{arch}: {what}: {value}");
        rows.push((arch.to_string(), what.to_string(), value));
    };
    let inputs = paths::fetch_inputs()?;
    let root = paths::workspace_root();
    for arch in Arch::ALL {
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

        let image = stack_image(arch)?;
        let pvscsi = || Disk::new(&image.vmdk, DiskBus::Pvscsi { scsi_id: 15 });
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
    println!("| arch | measure | value |\n|---|---|---|");
    for (a, w, v) in &rows {
        println!("| {a} | {w} | {v} |");
    }
    Ok(())
}
