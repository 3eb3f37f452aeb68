//! The stack as a work horse: its kernel and initramfs booted straight
//! into the rescue shell (`osam.mode=rescue osam.after=shell`) with the
//! guest's disks on pvscsi and a payload disk (a tar archive holding
//! `osam/run.sh` and what it needs) at [`PAYLOAD_SCSI_ID`]; one line typed
//! on the serial console unpacks and runs it.

use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Arch;
use crate::image::{StackImage, TEST_EPOCH};
use crate::paths::{self, tail_lines};
use crate::vm::{Vm, VmConfig};

/// The SCSI target id of the payload disk in the rescue VMs.
pub const PAYLOAD_SCSI_ID: u8 = 14;
/// From QEMU's start to the rescue shell's prompt.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// From `OSAM-RESULT:` to QEMU's exit (`poweroff -f`).
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);
/// The rescue VMs' memory: the stack's initramfs, the payload in /tmp and
/// mkfs.
const RESCUE_MEMORY_MIB: u32 = 768;

/// The stack's kernel and initramfs, for direct (`-kernel`) boots.
#[derive(Debug, Clone)]
pub struct StackBoot {
    /// The stack.
    pub arch: Arch,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
}

/// Copies the kernel and initramfs out of the stack image's ESP into
/// `dir`.
pub fn stack_boot(image: &StackImage, dir: &Path) -> Result<StackBoot> {
    let bytes = fs::read(&image.raw).with_context(|| format!("reading {}", image.raw.display()))?;
    let gpt = gpt::GptConfig::new()
        .writable(false)
        .open_from_device(Cursor::new(bytes.clone()))
        .with_context(|| format!("{}: no valid GPT", image.raw.display()))?;
    let esp = gpt
        .partitions()
        .values()
        .find(|p| p.part_type_guid == gpt::partition_types::EFI)
        .with_context(|| format!("{} has no EFI system partition", image.raw.display()))?;
    let start = usize::try_from(esp.first_lba * 512)?;
    let end = usize::try_from((esp.last_lba + 1) * 512)?;
    let slice = bytes
        .get(start..end)
        .context("the ESP lies beyond the end of the image")?
        .to_vec();
    let fat = fatfs::FileSystem::new(Cursor::new(slice), fatfs::FsOptions::new())
        .context("the ESP is not a FAT file system")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let copy = |from: &str, to: &str| -> Result<PathBuf> {
        let mut file = fat
            .root_dir()
            .open_file(from)
            .with_context(|| format!("{from} is not on the ESP of {}", image.raw.display()))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .with_context(|| format!("reading {from} from the ESP"))?;
        let path = dir.join(to);
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let kernel = copy(osam_image::disk::KERNEL_PATH, "vmlinuz")?;
    let initrd = copy(osam_image::disk::INITRD_PATH, "initrd.img")?;
    Ok(StackBoot {
        arch: image.arch,
        kernel,
        initrd,
    })
}

/// A disk on the VM's `pvscsi0` controller.
#[derive(Debug, Clone)]
pub struct ScsiDisk {
    /// The image.
    pub path: PathBuf,
    /// Its format (`raw`, `qcow2`, `vmdk`).
    pub format: &'static str,
    /// Its SCSI target id.
    pub scsi_id: u8,
    /// Guest writes go to a temporary overlay.
    pub snapshot: bool,
}

impl ScsiDisk {
    /// A disk written for real.
    pub fn writable(path: impl Into<PathBuf>, format: &'static str, scsi_id: u8) -> Self {
        ScsiDisk {
            path: path.into(),
            format,
            scsi_id,
            snapshot: false,
        }
    }
}

/// QEMU's arguments for `disks` on the controller `pvscsi0` (which the
/// caller creates, or [`crate::vm::Disk`] on pvscsi does).
pub fn scsi_disk_args(disks: &[ScsiDisk]) -> Vec<String> {
    let mut args = Vec::new();
    for d in disks {
        let id = format!("scsi{}", d.scsi_id);
        let mut drive = format!(
            "if=none,id={id},file={},format={}",
            d.path.to_string_lossy().replace(',', ",,"),
            d.format
        );
        if d.snapshot {
            drive.push_str(",snapshot=on");
        }
        args.extend([
            "-drive".to_owned(),
            drive,
            "-device".to_owned(),
            format!("scsi-hd,bus=pvscsi0.0,scsi-id={},drive={id}", d.scsi_id),
        ]);
    }
    args
}

/// What a script printed in the rescue shell.
#[derive(Debug, Clone)]
pub struct RescueOutput {
    /// The serial console from the typed line on, as the socket delivered
    /// it.
    pub transcript: String,
    /// The same from QEMU's serial log file.
    pub log: String,
    /// The serial log file.
    pub log_path: PathBuf,
    /// The VM's run time.
    pub elapsed: Duration,
}

/// The line typed in the rescue shell: find the payload disk, unpack it to
/// /tmp/osam-payload, run its script. The markers it prints on failure are
/// built at run time, so that the echo of the typed line never matches.
fn launcher() -> String {
    format!(
        "for i in $(seq 120); do p=$(ls /sys/bus/scsi/devices/*:0:{PAYLOAD_SCSI_ID}:0/block 2>/dev/null); \
         [ -n \"$p\" ] && break; sleep 0.5; done; mkdir -p /tmp/osam-payload && \
         tar -xf /dev/$p -C /tmp/osam-payload && sh /tmp/osam-payload/osam/run.sh \
         || echo OSAM-RESULT$(echo :) launch-failed"
    )
}

/// Boots the stack's rescue shell with `disks` and the payload at
/// [`PAYLOAD_SCSI_ID`], runs the payload's script and waits for its
/// `OSAM-RESULT:` line and the power-off. Fails naming `name` with the
/// serial log's tail when the script fails, hangs or the VM dies.
pub fn run_rescue_script(
    boot: &StackBoot,
    disks: &[ScsiDisk],
    payload: &Path,
    work: &Path,
    name: &str,
    timeout: Duration,
) -> Result<RescueOutput> {
    let serial = work.join(format!("{name}-serial.log"));
    let mut all = disks.to_vec();
    all.push(ScsiDisk {
        path: payload.to_path_buf(),
        format: "raw",
        scsi_id: PAYLOAD_SCSI_ID,
        snapshot: true,
    });
    let config = VmConfig::new(boot.arch, &boot.kernel, &boot.initrd, &serial)
        .memory(RESCUE_MEMORY_MIB)
        .cmdline_arg("osam.mode=rescue")
        .cmdline_arg("osam.after=shell")
        .cmdline_arg("quiet")
        .cmdline_arg("loglevel=4")
        .interactive_serial(work.join(format!("{name}-serial.sock")))
        .args(["-device", "pvscsi,id=pvscsi0", "-nic", "none"])
        .args(scsi_disk_args(&all));
    let mut vm = Vm::start(&config).with_context(|| format!("{name}: starting QEMU"))?;
    let outcome = drive_rescue(&mut vm, &serial, name, timeout);
    if vm.is_running() {
        vm.kill();
    }
    let out = outcome?;
    Ok(RescueOutput {
        elapsed: vm.elapsed(),
        ..out
    })
}

fn drive_rescue(vm: &mut Vm, serial: &Path, name: &str, timeout: Duration) -> Result<RescueOutput> {
    let mut console = vm
        .serial_console()
        .with_context(|| format!("{name}: connecting to the serial console"))?;
    vm.wait_for_serial("osam# ", PROMPT_TIMEOUT)
        .with_context(|| format!("{name}: waiting for the rescue shell"))?;
    // Let PID 1 finish its messages and the shell settle.
    std::thread::sleep(Duration::from_secs(2));
    let log_mark = vm.serial_log_len();
    let transcript_mark = console.transcript().len();
    console
        .send_line(&launcher())
        .with_context(|| format!("{name}: typing on the serial console"))?;
    let log_path = serial.to_path_buf();
    let result_line = |text: &str| -> Option<String> {
        let at = text.find("OSAM-RESULT: ")?;
        let end = text[at..].find('\n')?;
        Some(text[at..at + end].trim().to_owned())
    };
    let read_log = |mark: usize| -> String {
        let bytes = fs::read(&log_path).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).replace('\r', "")
    };
    let result = vm
        .wait_for(
            || {
                let transcript = console.transcript();
                transcript
                    .get(transcript_mark..)
                    .and_then(result_line)
                    .or_else(|| result_line(&read_log(log_mark)))
            },
            timeout,
            "the script's OSAM-RESULT line",
        )
        .with_context(|| format!("{name}: running the script"))?;
    let transcript = console
        .transcript()
        .get(transcript_mark..)
        .unwrap_or_default()
        .to_owned();
    if result != "OSAM-RESULT: ok" {
        bail!(
            "{name}: the script ended with {result:?}\n--- last lines of the serial log {} ---\n{}",
            serial.display(),
            tail_lines(&read_log(log_mark), 60)
        );
    }
    let deadline = Instant::now() + POWEROFF_TIMEOUT;
    while vm.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    if vm.is_running() {
        bail!(
            "{name}: no power-off within {POWEROFF_TIMEOUT:?} of the script's end\n\
             --- last lines of the serial log {} ---\n{}",
            serial.display(),
            vm.serial_tail(30)
        );
    }
    drop(console);
    Ok(RescueOutput {
        transcript,
        log: read_log(log_mark),
        log_path: serial.to_path_buf(),
        elapsed: vm.elapsed(),
    })
}

/// Packs `staging/osam` as a tar archive on a raw disk image (padded to
/// whole MiB) at `out`; the archive is byte-for-byte reproducible.
fn pack_payload(staging: &Path, out: &Path) -> Result<()> {
    paths::run(
        Command::new("tar")
            .args([
                "--format=ustar",
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                &format!("--mtime=@{TEST_EPOCH}"),
                "-cf",
            ])
            .arg(out)
            .arg("-C")
            .arg(staging)
            .arg("osam"),
    )
    .context("packing the payload with tar")?;
    let len = fs::metadata(out)?.len();
    let padded = len.div_ceil(1 << 20).max(1) << 20;
    let file = fs::OpenOptions::new().write(true).open(out)?;
    file.set_len(padded)?;
    Ok(())
}

/// A payload disk holding `script` as `osam/run.sh` and, where given, the
/// guest tree as `osam/tree/`.
pub(crate) fn payload(
    work: &Path,
    name: &str,
    script: &str,
    tree: Option<&Path>,
) -> Result<PathBuf> {
    let staging = work.join(format!("{name}-staging"));
    let osam = staging.join("osam");
    fs::create_dir_all(&osam).with_context(|| format!("creating {}", osam.display()))?;
    fs::write(osam.join("run.sh"), script)?;
    fs::set_permissions(osam.join("run.sh"), fs::Permissions::from_mode(0o755))?;
    if let Some(tree) = tree {
        fs::rename(tree, osam.join("tree"))
            .with_context(|| format!("moving {} into the payload", tree.display()))?;
    }
    let out = work.join(format!("{name}-payload.raw"));
    pack_payload(&staging, &out)?;
    Ok(out)
}
