//! The manager emulator (`osam_qemu::emulator`, `osam-manager`):
//!
//! - a blueprint's three input files, exactly, and accepted by the stack's
//!   own `fixupctl validate` (also when written by `osam-manager inputs`);
//! - bad blueprints: an error naming the field, never a panic;
//! - the QEMU command line of each boot (controller, fixup disk at unit 15
//!   or on AHCI under UEFI, boot order, NIC MACs, CD-ROM, 9p share);
//! - one QEMU run of stage 1 with no replica attached: READY, inputs,
//!   BEGIN, END, collection and QMP power-off all work, and the stack
//!   answers `disk.not_found` naming scsi0:0;
//! - with `OSAM_QEMU_FULL=1`, a full run on a real Debian guest (when the
//!   harness has one: see the test's comment).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use osam_qemu::Arch;
use osam_qemu::emulator::{
    self, Blueprint, Boot, MachineFiles, PhaseStatus, RunOptions, StopAfter, blueprint_for_guest,
    vm_config,
};
use osam_qemu::guests::check::GuestCheck;
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::DEBIAN_SUITE;
use osam_qemu::guests::tools_iso::tools_iso;
use osam_qemu::guests::{GuestArch, Recipe, guest_image};
use osam_qemu::image::{stack_binaries, stack_image};
use serde_json::{Value, json};

/// A blueprint with two disks, two NICs and most fields set.
const RICH: &str = r#"{
  "migrationId": "mig-emu-1",
  "arch": "x86_64",
  "cpus": 2,
  "memoryMib": 768,
  "firmware": "bios",
  "controller": "pvscsi",
  "disks": [
    { "path": "root.qcow2", "sourceDevice": "/dev/vda", "capacityBytes": 2147483648,
      "partitions": [
        { "number": 1, "sourceDevice": "/dev/vda1", "fsType": "ext4",
          "sourceUuid": "0b6c2f3e-8d4a-4c1b-9e7f-2a5d6c8b1e30", "mountPoint": "/" } ] },
    { "path": "/images/data.qcow2", "capacityBytes": 1073741824,
      "partitions": [ { "number": 1, "fsType": "xfs", "label": "data", "mountPoint": "/srv" } ] }
  ],
  "nicModel": "vmxnet3",
  "nics": [
    { "mac": "00:50:56:9A:00:01", "sourceName": "ens3", "sourceMac": "52-54-00-12-34-56" },
    { "mac": "00:50:56:9a:00:02", "sourceName": "ens4", "sourceMac": "52:54:00:12:34:57",
      "targetName": "eth1" }
  ],
  "source": { "hostname": "web01", "osFamily": "debian", "osVersion": "12" },
  "options": { "commandTimeoutSeconds": 600 }
}"#;

fn rich() -> Blueprint {
    Blueprint::parse(RICH, Path::new("/bp")).expect("the rich blueprint parses")
}

#[test]
fn a_blueprint_gives_the_protocol_files() {
    let bp = rich();
    assert_eq!(
        bp.disks[0].path.as_deref(),
        Some(Path::new("/bp/root.qcow2"))
    );
    assert_eq!(
        bp.disks[1].path.as_deref(),
        Some(Path::new("/images/data.qcow2"))
    );
    assert_eq!(
        bp.system_configuration(),
        json!({
            "version": 1,
            "migrationId": "mig-emu-1",
            "source": { "hostname": "web01", "arch": "x86_64", "firmware": "bios",
                        "osFamily": "debian", "osVersion": "12" },
            "target": { "firmware": "bios", "storageController": "pvscsi", "nicModel": "vmxnet3" },
            "options": { "renameInterfaces": true, "fstabIdentifiers": "uuid", "stage2": true,
                         "extraInitramfsDrivers": [], "commandTimeoutSeconds": 600 }
        })
    );
    assert_eq!(
        bp.replica_disk_map(&[]),
        json!({
            "version": 1,
            "disks": [
                { "sourceDevice": "/dev/vda", "target": { "controller": "scsi0", "unit": 0 },
                  "capacityBytes": 2147483648u64, "boot": true,
                  "partitions": [ { "number": 1, "sourceDevice": "/dev/vda1", "fsType": "ext4",
                                    "sourceUuid": "0b6c2f3e-8d4a-4c1b-9e7f-2a5d6c8b1e30",
                                    "mountPoint": "/" } ] },
                { "sourceDevice": "/dev/sdb", "target": { "controller": "scsi0", "unit": 1 },
                  "capacityBytes": 1073741824u64, "boot": false,
                  "partitions": [ { "number": 1, "fsType": "xfs", "label": "data",
                                    "mountPoint": "/srv" } ] }
            ]
        })
    );
    assert_eq!(
        bp.network_interface_map(),
        json!({
            "version": 1,
            "interfaces": [
                { "sourceName": "ens3", "sourceMac": "52:54:00:12:34:56",
                  "targetMac": "00:50:56:9a:00:01" },
                { "sourceName": "ens4", "sourceMac": "52:54:00:12:34:57",
                  "targetMac": "00:50:56:9a:00:02", "targetName": "eth1" }
            ]
        })
    );

    // Other controllers and firmware.
    let sas = Blueprint::parse(
        r#"{"migrationId": "m", "controller": "mptsas1068",
            "disks": [{"capacityBytes": 1}, {"capacityBytes": 1, "boot": true}]}"#,
        Path::new("."),
    )
    .unwrap();
    let system = sas.system_configuration();
    assert_eq!(system["target"]["storageController"], "lsilogic-sas");
    let disks = sas.replica_disk_map(&[]);
    assert_eq!(
        disks["disks"][1]["target"],
        json!({"controller": "scsi0", "unit": 1})
    );
    assert_eq!(disks["disks"][0]["boot"], false);
    assert_eq!(disks["disks"][1]["boot"], true);
    assert_eq!(disks["disks"][1]["sourceDevice"], "/dev/sdb");
    let uefi = Blueprint::parse(
        r#"{"migrationId": "m", "arch": "i686", "firmware": "uefi",
            "source": {"firmware": "bios"}, "disks": [{"path": "a.qcow2"}]}"#,
        Path::new("/x"),
    )
    .unwrap();
    let system = uefi.system_configuration();
    assert_eq!(system["source"]["firmware"], "bios");
    assert_eq!(system["source"]["arch"], "i686");
    assert_eq!(system["target"]["firmware"], "efi");
    assert_eq!(system["target"]["storageController"], "ahci");
    let disks = uefi.replica_disk_map(&[Some(42)]);
    assert_eq!(
        disks["disks"][0]["target"],
        json!({"controller": "sata0", "unit": 0})
    );
    assert_eq!(disks["disks"][0]["capacityBytes"], 42);
}

/// The stack's fixupctl (x86_64 musl: it runs on the host), built as the
/// image tests build it (or prebuilt, `OSAM_STACK_PREBUILT=1`).
fn fixupctl() -> Result<PathBuf> {
    let [_, fixupctl, _] = stack_binaries(Arch::X86_64).context("building fixupctl")?;
    Ok(fixupctl)
}

fn validate(fixupctl: &Path, dir: &Path) -> Result<()> {
    let out = Command::new(fixupctl)
        .args(["validate", "--fixup-dir"])
        .arg(dir)
        .output()?;
    ensure!(
        out.status.success(),
        "fixupctl validate {} failed ({}):\n{}{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "fixupctl validate warned:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn fixupctl_validates_what_the_emulator_writes() -> Result<()> {
    let fixupctl = fixupctl()?;
    let tmp = tempfile::tempdir()?;

    // The library, for several blueprints.
    let blueprints = [
        RICH.to_owned(),
        r#"{"migrationId": "m.2", "controller": "mptsas1068",
            "disks": [{"unit": 3}, {"boot": true}, {"sourceDevice": "/dev/xvdc"}],
            "nicModel": "e1000e",
            "nics": [{"mac": "00:50:56:00:00:0a", "sourceName": "eth0",
                      "sourceMac": "52:54:00:00:00:0a"}],
            "options": {"renameInterfaces": false, "fstabIdentifiers": "keep",
                        "stage2": false, "extraInitramfsDrivers": ["xfs"]}}"#
            .to_owned(),
        r#"{"migrationId": "m_3", "arch": "i686", "firmware": "uefi",
            "disks": [{"capacityBytes": 1048576}]}"#
            .to_owned(),
    ];
    for (i, text) in blueprints.iter().enumerate() {
        let bp = Blueprint::parse(text, tmp.path())?;
        let dir = tmp.path().join(format!("lib{i}"));
        let files = emulator::write_inputs(&bp, &dir).map_err(anyhow::Error::msg)?;
        ensure!(files.len() == 3, "{files:?}");
        validate(&fixupctl, &dir).with_context(|| format!("blueprint {i}"))?;
    }

    // The CLI, with a real (empty) qcow2 whose size becomes capacityBytes.
    let image = tmp.path().join("root.qcow2");
    let created = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("64M")
        .status()?;
    ensure!(created.success(), "qemu-img create failed");
    let blueprint = tmp.path().join("b.json");
    std::fs::write(
        &blueprint,
        r#"{"migrationId": "cli-1", "disks": [{"path": "root.qcow2"}],
            "nics": [{"mac": "00:50:56:9a:00:01", "sourceName": "ens192",
                      "sourceMac": "00:0c:29:00:00:01"}]}"#,
    )?;
    let out_dir = tmp.path().join("cli");
    let out = Command::new(env!("CARGO_BIN_EXE_osam-manager"))
        .args(["inputs", "--blueprint"])
        .arg(&blueprint)
        .arg("--out")
        .arg(&out_dir)
        .output()?;
    ensure!(
        out.status.success(),
        "osam-manager inputs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    validate(&fixupctl, &out_dir)?;
    let disks: Value = serde_json::from_str(&std::fs::read_to_string(
        out_dir.join("replica-disk-map.json"),
    )?)?;
    ensure!(
        disks["disks"][0]["capacityBytes"] == 64 * 1024 * 1024,
        "capacityBytes is not the image's size: {disks}"
    );

    // A bad blueprint: exit status 1 and the field named.
    std::fs::write(&blueprint, r#"{"migrationId": "cli-1", "cpus": "two"}"#)?;
    let out = Command::new(env!("CARGO_BIN_EXE_osam-manager"))
        .args(["inputs", "--blueprint"])
        .arg(&blueprint)
        .arg("--out")
        .arg(&out_dir)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(stderr.contains("cpus: invalid type"), "{stderr}");
    Ok(())
}

#[test]
fn bad_blueprints_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (r#"{"migrationId": "m", "cpu": 2}"#, "cpu"),
        (r#"{"cpus": 2}"#, "."),
        (r#"{"migrationId": "m", "cpus": "2"}"#, "cpus"),
        (r#"{"migrationId": "m", "cpus": 0}"#, "cpus"),
        (r#"{"migrationId": "m", "memoryMib": 64}"#, "memoryMib"),
        (r#"{"migrationId": "../etc", "cpus": 1}"#, "migrationId"),
        (
            r#"{"migrationId": "m", "firmware": "coreboot"}"#,
            "firmware",
        ),
        (
            r#"{"migrationId": "m", "firmware": "uefi", "controller": "pvscsi"}"#,
            "controller",
        ),
        (
            r#"{"migrationId": "m", "controller": "lsilogic"}"#,
            "controller",
        ),
        (
            r#"{"migrationId": "m", "disks": [{}, {"unit": "1"}]}"#,
            "disks[1].unit",
        ),
        (
            r#"{"migrationId": "m", "disks": [{"unit": 7}]}"#,
            "disks[0].unit",
        ),
        (
            r#"{"migrationId": "m", "disks": [{"unit": 15}]}"#,
            "disks[0].unit",
        ),
        (
            r#"{"migrationId": "m", "disks": [{"unit": 2}, {"unit": 2}]}"#,
            "disks[1].unit",
        ),
        (
            r#"{"migrationId": "m", "controller": "ahci", "disks": [{"unit": 6}]}"#,
            "disks[0].unit",
        ),
        (
            r#"{"migrationId": "m", "controller": "mptsas1068",
                "disks": [{},{},{},{},{},{},{},{}]}"#,
            "disks",
        ),
        (
            r#"{"migrationId": "m", "disks": [{"path": ""}]}"#,
            "disks[0].path",
        ),
        (
            r#"{"migrationId": "m", "disks": [{"sourceDevice": "sda"}]}"#,
            "disks[0].sourceDevice",
        ),
        (
            r#"{"migrationId": "m", "disks": [{"boot": true}, {"boot": true}]}"#,
            "disks[1].boot",
        ),
        (
            r#"{"migrationId": "m", "disks": [{"partitions": [{"number": 0}]}]}"#,
            "disks[0].partitions[0].number",
        ),
        (
            r#"{"migrationId": "m", "disks": [{"partitions": [{"fs": "ext4", "number": 1}]}]}"#,
            "disks[0].partitions[0].fs",
        ),
        (
            r#"{"migrationId": "m", "nics": [{"mac": "00:50:56:9a:00", "sourceName": "a",
                "sourceMac": "52:54:00:00:00:01"}]}"#,
            "nics[0].mac",
        ),
        (
            r#"{"migrationId": "m", "nics": [{"mac": "01:50:56:9a:00:01", "sourceName": "a",
                "sourceMac": "52:54:00:00:00:01"}]}"#,
            "nics[0].mac",
        ),
        (
            r#"{"migrationId": "m", "nics": [
                {"mac": "00:50:56:9a:00:01", "sourceName": "a", "sourceMac": "52:54:00:00:00:01"},
                {"mac": "00:50:56:9A:00:01", "sourceName": "b", "sourceMac": "52:54:00:00:00:02"}]}"#,
            "nics[1].mac",
        ),
        (
            r#"{"migrationId": "m", "nics": [{"mac": "00:50:56:9a:00:01",
                "sourceName": "a-name-that-is-too-long", "sourceMac": "52:54:00:00:00:01"}]}"#,
            "nics[0].sourceName",
        ),
        (
            r#"{"migrationId": "m", "nics": [{"mac": "00:50:56:9a:00:01"}]}"#,
            "nics[0]",
        ),
        (
            r#"{"migrationId": "m", "source": {"hostname": ""}}"#,
            "source.hostname",
        ),
        (
            r#"{"migrationId": "m", "options": {"fstabIdentifiers": "label"}}"#,
            "options.fstabIdentifiers",
        ),
        (
            r#"{"migrationId": "m", "options": {"extraInitramfsDrivers": ["a b"]}}"#,
            "options.extraInitramfsDrivers[0]",
        ),
        (
            r#"{"migrationId": "m", "timeouts": {"endSeconds": 0}}"#,
            "timeouts.endSeconds",
        ),
        (r#"{"migrationId": "m"} trailing"#, "."),
        (r#"{"migrationId": "m""#, "."),
        ("", "."),
        ("[]", "."),
    ];
    for (text, field) in cases {
        match Blueprint::parse(text, Path::new(".")) {
            Ok(bp) => panic!("accepted {text}: {bp:?}"),
            Err(e) => {
                assert!(
                    e.names(field),
                    "{text}: expected an error naming {field:?}, got: {e}"
                );
                let shown = e.to_string();
                assert!(shown.starts_with("blueprint: "), "{shown}");
                assert!(shown.contains(field), "{shown}");
            }
        }
    }
    // A file that is not there.
    let err = Blueprint::load(Path::new("/nonexistent/b.json")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("blueprint /nonexistent/b.json: .: cannot read it")
    );
}

fn files(disks: usize) -> MachineFiles {
    MachineFiles {
        stack: "/s/osam-fixup-x86_64.vmdk".into(),
        disks: (0..disks)
            .map(|i| Some(PathBuf::from(format!("/w/disk{i}.qcow2"))))
            .collect(),
        share: "/w/share".into(),
        qmp: "/w/qmp.sock".into(),
        tools_iso: Some("/i/tools.iso".into()),
        ovmf_vars: Some("/w/vars.fd".into()),
    }
}

fn argv(bp: &Blueprint, files: &MachineFiles, boot: Boot) -> String {
    vm_config(bp, files, boot, Path::new("/l/serial.log"))
        .qemu_args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn qemu_command_lines_of_each_boot() {
    let bp = rich();
    let f = files(2);
    let stage1 = argv(&bp, &f, Boot::Stage1);
    for part in [
        "-accel tcg",
        "-machine pc",
        "-smp 2",
        "-m 768",
        "-device pvscsi,id=scsi0 ",
        "-drive if=none,id=scsi0-0,file=/w/disk0.qcow2,format=qcow2 \
         -device scsi-hd,bus=scsi0.0,scsi-id=0,drive=scsi0-0 ",
        "-device scsi-hd,bus=scsi0.0,scsi-id=1,drive=scsi0-1 ",
        "-drive if=none,id=scsi0-15,file=/s/osam-fixup-x86_64.vmdk,format=vmdk,snapshot=on \
         -device scsi-hd,bus=scsi0.0,scsi-id=15,drive=scsi0-15,bootindex=0",
        "-netdev user,id=osamnet0 -device vmxnet3,netdev=osamnet0,mac=00:50:56:9a:00:01",
        "-netdev user,id=osamnet1 -device vmxnet3,netdev=osamnet1,mac=00:50:56:9a:00:02",
        "-virtfs local,path=/w/share,mount_tag=fixup,security_model=none,id=fixup",
        "-qmp unix:/w/qmp.sock,server=on,wait=off",
        "-serial file:/l/serial.log",
        "-no-reboot",
    ] {
        assert!(stage1.contains(part), "stage 1 lacks {part:?}:\n{stage1}");
    }
    for absent in [
        "kvm",
        "-kernel",
        "snapshot=on -device scsi-hd,bus=scsi0.0,scsi-id=0",
        "cdrom",
        "-nic none",
        "-snapshot ",
    ] {
        assert!(
            !stage1.contains(absent),
            "stage 1 has {absent:?}:\n{stage1}"
        );
    }
    assert_eq!(stage1.matches("bootindex").count(), 1, "{stage1}");

    let stage2 = argv(&bp, &f, Boot::Stage2);
    assert!(
        !stage2.contains("osam-fixup"),
        "the fixup disk is detached: {stage2}"
    );
    assert!(!stage2.contains("-virtfs"), "{stage2}");
    assert!(
        stage2.contains("scsi-id=0,drive=scsi0-0,bootindex=0"),
        "{stage2}"
    );
    assert!(stage2.contains("scsi-id=1,drive=scsi0-1 "), "{stage2}");
    assert_eq!(stage2.matches("bootindex").count(), 1, "{stage2}");
    assert!(
        stage2.contains(
            "-drive if=none,id=osamcd,media=cdrom,readonly=on,format=raw,file=/i/tools.iso \
             -device ide-cd,bus=ide.1,drive=osamcd"
        ),
        "{stage2}"
    );
    assert!(stage2.contains("mac=00:50:56:9a:00:02"), "{stage2}");
    let check = argv(&bp, &f, Boot::Check);
    assert!(
        !check.contains("osamcd") && !check.contains("osam-fixup"),
        "{check}"
    );
    assert!(
        check.contains("scsi-id=0,drive=scsi0-0,bootindex=0"),
        "{check}"
    );

    // LSI Logic SAS: the fixup disk on a PVSCSI controller of its own
    // (mptsas1068 has targets 0-7), after the replicas' in PCI order.
    let sas = Blueprint::parse(
        r#"{"migrationId": "m", "controller": "mptsas1068", "disks": [{"path": "/a.qcow2"}]}"#,
        Path::new("."),
    )
    .unwrap();
    let args = argv(&sas, &files(1), Boot::Stage1);
    let replica = args.find("-device mptsas1068,id=scsi0").expect(&args);
    let fixup = args.find("-device pvscsi,id=fixup").expect(&args);
    assert!(replica < fixup, "{args}");
    assert!(args.contains("-device scsi-hd,bus=fixup.0,scsi-id=15,drive=fixup-15,bootindex=0"));
    assert!(args.contains("-device scsi-hd,bus=scsi0.0,scsi-id=0,drive=scsi0-0 "));
    assert!(
        args.contains("-nic none"),
        "no NICs, no default NIC: {args}"
    );

    // UEFI: OVMF, the replicas and the fixup disk on AHCI.
    let uefi = Blueprint::parse(
        r#"{"migrationId": "m", "firmware": "uefi", "disks": [{"path": "/a.qcow2"}, {}],
            "nics": [{"mac": "00:50:56:9a:00:07", "sourceName": "eth0",
                      "sourceMac": "52:54:00:00:00:07"}]}"#,
        Path::new("."),
    )
    .unwrap();
    let mut f = files(2);
    f.disks[1] = None; // listed, not attached
    let args = argv(&uefi, &f, Boot::Stage1);
    assert!(args.contains("-bios /usr/share/ovmf/OVMF.fd"), "{args}");
    assert!(args.contains("-device ahci,id=sata0 "), "{args}");
    assert!(
        args.contains("-device ide-hd,bus=sata0.0,drive=sata0-0 "),
        "{args}"
    );
    assert!(!args.contains("sata0-1"), "an unattached disk: {args}");
    assert!(
        args.contains("-device ahci,id=fixup -drive if=none,id=fixup-0,file=/s/osam-fixup-x86_64.vmdk,format=vmdk,snapshot=on -device ide-hd,bus=fixup.0,drive=fixup-0,bootindex=0"),
        "{args}"
    );
    assert!(args.contains("-device vmxnet3,netdev=osamnet0,mac=00:50:56:9a:00:07"));
    let args = argv(&uefi, &f, Boot::Stage2);
    assert!(
        args.contains("ide-hd,bus=sata0.0,drive=sata0-0,bootindex=0"),
        "{args}"
    );
    assert!(!args.contains("id=fixup"), "{args}");

    // i686 under UEFI: ia32 OVMF on q35 with the run's variable store.
    let ia32 = Blueprint::parse(
        r#"{"migrationId": "m", "arch": "i686", "firmware": "uefi", "nicModel": "e1000"}"#,
        Path::new("."),
    )
    .unwrap();
    let args = argv(&ia32, &files(0), Boot::Stage1);
    assert!(
        args.contains("-machine q35,smm=on") && args.contains("-cpu coreduo"),
        "{args}"
    );
    assert!(
        args.contains("if=pflash,format=raw,unit=1,file=/w/vars.fd"),
        "{args}"
    );
    assert!(
        args.contains("-device ahci,id=sata0 -device ahci,id=fixup"),
        "{args}"
    );
}

#[test]
fn a_missing_stack_image_fails_the_prepare_step() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let blueprint = tmp.path().join("b.json");
    std::fs::write(&blueprint, r#"{"migrationId": "nostack", "disks": [{}]}"#)?;
    let out = Command::new(env!("CARGO_BIN_EXE_osam-manager"))
        .args(["run", "--blueprint"])
        .arg(&blueprint)
        .args(["--stack", "/nonexistent/osam.vmdk", "--logs"])
        .arg(tmp.path().join("logs"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(
        stderr.contains("failed at preparing: the stack image /nonexistent/osam.vmdk is missing"),
        "{stderr}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(
        tmp.path().join("logs/nostack_emulator-report.json"),
    )?)?;
    ensure!(
        report["ok"] == false && report["failure"]["step"] == "preparing",
        "{report}"
    );
    ensure!(report["phases"][0]["status"] == "failed", "{report}");
    Ok(())
}

/// Stage 1 only, no replica attached: the whole wiring (READY, inputs,
/// BEGIN, END, collection, QMP power-off) and the stack's `disk.not_found`
/// for scsi0:0.
#[test]
fn stage1_without_replicas_answers_disk_not_found() -> Result<()> {
    let image = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    let bp = Blueprint::parse(
        r#"{
          "migrationId": "emu-stage1",
          "memoryMib": 512,
          "disks": [ { "sourceDevice": "/dev/sda", "capacityBytes": 2147483648,
                       "partitions": [ { "number": 1, "sourceDevice": "/dev/sda1",
                                         "fsType": "ext4", "mountPoint": "/" } ] } ],
          "nics": [ { "mac": "00:50:56:9a:00:01", "sourceName": "ens192",
                      "sourceMac": "52:54:00:12:34:56" } ],
          "source": { "hostname": "web01", "osFamily": "debian", "osVersion": "12" },
          "timeouts": { "readySeconds": 240, "endSeconds": 180 }
        }"#,
        Path::new("."),
    )?;
    let logs = tempfile::Builder::new()
        .prefix("osam-emu-logs-")
        .tempdir()?;
    let mut options = RunOptions::new(&image.vmdk, logs.path());
    options.stop_after = StopAfter::Stage1;
    let t0 = Instant::now();
    let report = emulator::run(&bp, &options, &mut |line| eprintln!("{line}"));
    eprintln!("stage 1 run in {:.1?}:\n{}", t0.elapsed(), report.summary());

    for name in [
        "prepare",
        "stage1.ready",
        "stage1.fixup",
        "stage1.collect",
        "stage1.poweroff",
    ] {
        let phase = report
            .phase(name)
            .with_context(|| format!("no phase {name}: {report:#?}"))?;
        ensure!(phase.status == PhaseStatus::Ok, "{name}: {phase:?}");
    }
    ensure!(report.phase("stage2").is_none(), "stage 2 ran");
    let ready = report.ready.as_ref().context("no READY")?;
    ensure!(
        ready["arch"] == "x86_64" && ready["transport"] == "9p:fixup",
        "{ready}"
    );
    let failure = report.failure.as_ref().context("no failure reported")?;
    ensure!(failure.step == "fixup result", "{failure}");
    ensure!(!report.ok);
    let result = report.result.as_ref().context("no result.json")?;
    ensure!(result["status"] == "failed", "{result}");
    ensure!(result["migrationId"] == "emu-stage1", "{result}");
    let codes = report.error_codes();
    ensure!(codes.iter().any(|c| c == "disk.not_found"), "{codes:?}");
    let not_found = result["errors"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["code"] == "disk.not_found"))
        .context("no disk.not_found error")?;
    ensure!(
        not_found["message"]
            .as_str()
            .unwrap_or("")
            .contains("scsi0:0"),
        "disk.not_found does not name scsi0:0: {not_found}"
    );
    ensure!(failure.message.contains("disk.not_found"), "{failure}");

    let id = "emu-stage1";
    let logs = logs.path();
    for file in [
        format!("{id}_fixup.log"),
        format!("{id}_result.json"),
        format!("{id}_progress.txt"),
        format!("{id}_stage1.serial.log"),
        format!("{id}_emulator-report.json"),
        format!("{id}_inputs/system-configuration.json"),
    ] {
        ensure!(logs.join(&file).is_file(), "{file} is missing in the logs");
    }
    ensure!(
        report.logs.fixup_log.as_deref() == Some(logs.join(format!("{id}_fixup.log")).as_path())
    );
    ensure!(report.serial_log(Boot::Stage1).is_some());
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(
        logs.join(format!("{id}_emulator-report.json")),
    )?)?;
    ensure!(saved["failure"]["step"] == "fixup result", "{saved}");
    ensure!(saved["result"]["status"] == "failed", "{saved}");
    let poweroff = report.phase("stage1.poweroff").context("poweroff")?;
    ensure!(
        poweroff.detail == "acpi" || poweroff.detail == "quit",
        "powered off by {}",
        poweroff.detail
    );
    Ok(())
}

fn full() -> bool {
    std::env::var_os("OSAM_QEMU_FULL").is_some_and(|v| v == "1")
}

/// The whole manager flow on reference guest (a) — Debian 12 amd64, BIOS,
/// `/dev/sda1` in fstab and `root=`, an initramfs without `vmw_pvscsi`,
/// `ens192`/`ens224` — migrated to pvscsi + two VMXNET3 NICs with new
/// MACs: stage 1 succeeds, stage 2 installs open-vm-tools from the Tools
/// ISO and powers off, and the last boot reaches multi-user.target with
/// `/` mounted and the NICs renamed eth0/eth1 on the target MACs.
///
/// Needs `OSAM_QEMU_FULL=1`, root (the guest build) and the Debian
/// archive; the logs stay in `target/osam-emulator/emu-full-deb12/`.
#[test]
fn full_flow_on_the_reference_guest() -> Result<()> {
    if !full() {
        eprintln!("skipped: set OSAM_QEMU_FULL=1 for the full manager flow on a real guest");
        return Ok(());
    }
    let mirror = host_mirror(DEBIAN_SUITE)?;
    let image = guest_image(&Recipe::debian12_bios(GuestArch::Amd64, &mirror))
        .context("the reference guest")?;
    let iso = tools_iso(&image).context("the Tools ISO")?;
    let stack = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    let id = "emu-full-deb12";
    let bp = blueprint_for_guest(&image, id);
    let logs = osam_qemu::paths::workspace_root()
        .join("target/osam-emulator")
        .join(id);
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    std::fs::write(
        logs.join("blueprint.json"),
        serde_json::to_string_pretty(&bp)?,
    )?;
    let mut options = RunOptions::new(&stack.vmdk, &logs);
    options.tools_iso = Some(iso.path.clone());
    let t0 = Instant::now();
    let report = emulator::run(&bp, &options, &mut |line| eprintln!("{line}"));
    eprintln!(
        "full run in {:.1?} (logs in {}):\n{}",
        t0.elapsed(),
        logs.display(),
        report.summary()
    );
    if let Some(failure) = &report.failure {
        anyhow::bail!("the run failed: {failure}");
    }
    ensure!(
        report
            .result
            .as_ref()
            .is_some_and(|r| r["status"] == "success")
    );
    let serial = report
        .serial_log(Boot::Check)
        .context("no check serial log")?;
    let check =
        GuestCheck::parse(&std::fs::read_to_string(serial)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("check: {check:#?}");
    // Stage 2 restored the guest's own default target (Debian's:
    // graphical.target, which pulls in multi-user.target).
    let active = |t: &str| check.targets.get(t).map(String::as_str) == Some("active");
    ensure!(
        check.default_target != "rescue.target"
            && active("multi-user")
            && !active("rescue")
            && !active("emergency"),
        "the guest is not back to its own default target: {check:?}"
    );
    ensure!(
        matches!(check.system.as_str(), "running" | "degraded"),
        "{check:?}"
    );
    let stage2 = report.stage2.as_ref().context("no stage-2 outcome")?;
    ensure!(
        stage2["status"] == "success" && stage2["toolsInstalled"] == true,
        "stage 2: {stage2}"
    );
    ensure!(
        check
            .mounts
            .iter()
            .any(|m| m.mountpoint == "/" && m.fstype == "ext4"),
        "no ext4 root: {check:?}"
    );
    for (i, name) in ["eth0", "eth1"].iter().enumerate() {
        let mac = emulator::guest::target_mac(i);
        ensure!(
            check.nics.iter().any(|n| n.name == *name && n.mac == mac),
            "no {name} with {mac}: {check:?}"
        );
    }
    ensure!(
        check
            .nics
            .iter()
            .any(|n| n.name == "eth1" && n.ipv4.iter().any(|a| a == "192.168.50.10/24")),
        "eth1 lacks its static address: {check:?}"
    );
    Ok(())
}
