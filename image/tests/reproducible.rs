//! Reproducible builds: the x86_64 stack built twice from the same inputs
//! and `SOURCE_DATE_EPOCH`, in different work and output folders, gives
//! byte-identical VMDK, OVA, raw disk and manifest; another epoch gives
//! another disk.
//!
//! Uses the real stack binaries (built here for the musl target, in
//! `target/stack` like the QEMU harness does) and the pinned inputs
//! (`scripts/fetch-inputs.sh`). A missing tool or input fails the test:
//! run scripts/install-deps.sh.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use osam_image::build::{BuildOptions, Format, build, image_name};
use osam_image::stack::StackArch;
use sha2::{Digest, Sha256};

const EPOCH: u64 = 1_700_000_000;
const TRIPLE: &str = "x86_64-unknown-linux-musl";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(command: &mut Command) -> String {
    let line = format!("{command:?}");
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("starting {line}: {e} (run scripts/install-deps.sh)"));
    assert!(
        out.status.success(),
        "{line} failed ({}); run scripts/install-deps.sh if a tool is missing\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// osam-init, fixupctl and osam-stage2 for x86_64, built with cargo into
/// `target/stack` (its own target folder: no wait for the lock of the
/// `cargo test` running this).
fn stack_binaries() -> [PathBuf; 3] {
    let root = workspace();
    let target_dir = root.join("target/stack");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--target", TRIPLE, "-p", "osam-init"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET"));
    ["osam-init", "fixupctl", "osam-stage2"].map(|name| {
        let path = target_dir.join(TRIPLE).join("release").join(name);
        assert!(path.is_file(), "cargo built no {}", path.display());
        path
    })
}

/// The folder of the pinned .debs (`scripts/fetch-inputs.sh --arch all`
/// prints it last).
fn inputs() -> PathBuf {
    let root = workspace();
    let stdout = run(Command::new("bash")
        .current_dir(&root)
        .arg(root.join("scripts/fetch-inputs.sh"))
        .args(["--arch", "all"]));
    let dir = PathBuf::from(
        stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .expect("fetch-inputs.sh printed no folder")
            .trim(),
    );
    assert!(dir.is_dir(), "fetch-inputs.sh printed {}", dir.display());
    dir
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn same_inputs_same_bytes_and_the_epoch_matters() {
    let [init, fixupctl, stage2] = stack_binaries();
    let root = workspace();
    let options = |dir: &Path, epoch: u64, formats: Vec<Format>| BuildOptions {
        arch: StackArch::X86_64,
        formats,
        out: dir.join("out"),
        inputs: inputs(),
        pins_file: root.join("image/pins.txt"),
        kernel_config: root.join("kernel-config"),
        init: init.clone(),
        fixupctl: fixupctl.clone(),
        stage2: Some(stage2.clone()),
        epoch,
        size_mib: 64,
        work: Some(dir.join("work")),
    };
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let name = image_name(StackArch::X86_64);
    let files = [
        format!("{name}.vmdk"),
        format!("{name}.ova"),
        format!("{name}.raw"),
        format!("{name}.manifest.json"),
    ];

    let mut reports = Vec::new();
    for dir in [a.path(), b.path()] {
        let t0 = Instant::now();
        let report = build(&options(dir, EPOCH, vec![Format::Vmdk, Format::Raw]))
            .unwrap_or_else(|e| panic!("building into {}: {e:#}", dir.display()));
        eprintln!("built into {} in {:.1?}", dir.display(), t0.elapsed());
        reports.push(report);
    }
    assert_eq!(reports[0].disk_guid, reports[1].disk_guid);
    for file in &files {
        let (fa, fb) = (
            a.path().join("out").join(file),
            b.path().join("out").join(file),
        );
        let (ha, hb) = (sha256(&fa), sha256(&fb));
        assert_eq!(
            ha,
            hb,
            "{file} differs between two builds from the same inputs ({} vs {})",
            fa.display(),
            fb.display()
        );
        eprintln!("{file}: {ha}");
    }

    // Another SOURCE_DATE_EPOCH: another disk (timestamps in the cpio, the
    // FAT and the manifest, and the identifiers seeded from it).
    let report = build(&options(c.path(), EPOCH + 86_400, vec![Format::Raw]))
        .unwrap_or_else(|e| panic!("building with another epoch: {e:#}"));
    assert_ne!(
        report.disk_guid, reports[0].disk_guid,
        "the disk GUID ignores the epoch"
    );
    for file in [&files[2], &files[3]] {
        assert_ne!(
            sha256(&a.path().join("out").join(file)),
            sha256(&c.path().join("out").join(file)),
            "{file} is the same with another SOURCE_DATE_EPOCH"
        );
    }
}
