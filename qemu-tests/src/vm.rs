//! A QEMU virtual machine under TCG, its serial console in a log file,
//! killed when dropped.
//!
//! A VM boots either a kernel and initramfs directly (`-kernel`, the
//! default) or a disk image through its firmware ([`VmConfig::disk`]:
//! SeaBIOS, x64 OVMF or ia32 OVMF, the disk on pvscsi or AHCI). Its serial
//! console is a log file, or an interactive unix socket whose output QEMU
//! also writes to the log ([`VmConfig::interactive_serial`],
//! [`Vm::serial_console`]).
//!
//! No VM outlives its test: [`Vm`]'s `Drop` kills and reaps QEMU, and QEMU
//! is started with `PR_SET_PDEATHSIG` = `SIGKILL`, so that it dies with the
//! thread that started it even where the test process is killed outright.
//! Keep a [`Vm`] on the thread that started it.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Arch;
use crate::error::{Error, Result};
use crate::paths::tail_lines;
pub use crate::serial::SerialConsole;
use crate::smoke::SmokeBoot;

/// How many serial log lines an error shows.
pub const LOG_TAIL_LINES: usize = 60;
/// How long [`Vm::power_off`] waits for a sign on the serial console that
/// the guest heard the power button.
pub const POWER_BUTTON_QUIET: Duration = Duration::from_secs(15);
/// How often [`Vm::wait_for`] polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How to start a VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Which stack (picks the emulator and CPU model).
    pub arch: Arch,
    /// The kernel image (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// Where the serial console (ttyS0) is written.
    pub serial_log: PathBuf,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// The kernel command line, one argument each.
    pub cmdline: Vec<String>,
    /// virtio-9p shares: (host folder, mount tag).
    pub shares: Vec<(PathBuf, String)>,
    /// A QMP socket to create.
    pub qmp_socket: Option<PathBuf>,
    /// More QEMU arguments (disks, NICs, …).
    pub extra_args: Vec<OsString>,
    /// Boot this disk through the firmware instead of `-kernel`; `kernel`,
    /// `initrd` and `cmdline` are then unused (the disk's boot loader has
    /// its own command line).
    pub disk: Option<Disk>,
    /// The firmware.
    pub firmware: Firmware,
    /// An interactive serial console: a unix socket (QEMU the server) at
    /// this path; the guest's output is still logged to `serial_log`.
    pub serial_socket: Option<PathBuf>,
    /// Virtual CPUs (`-smp`).
    pub cpus: u32,
    /// Storage controllers with their disks (a VM with several disks, as
    /// the manager builds it). A VM with any of these boots through its
    /// firmware, never `-kernel`; the boot order is the disks'
    /// [`Drive::bootindex`].
    pub controllers: Vec<Controller>,
    /// A CD-ROM holding this ISO image (on the bus `ide.1`: the PIIX
    /// secondary channel of machine `pc`, an ICH9 AHCI port on `q35`).
    pub cdrom: Option<PathBuf>,
    /// NICs, each on its own QEMU user network (its DHCP server answers).
    /// Where this is empty QEMU adds its default NIC unless `-nic none`
    /// is among the extra arguments.
    pub nics: Vec<Nic>,
}

/// The firmware of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Firmware {
    /// QEMU's default BIOS (SeaBIOS), machine `pc`.
    #[default]
    SeaBios,
    /// Debian's x64 OVMF (`/usr/share/ovmf/OVMF.fd`, package `ovmf`) as
    /// `-bios`, machine `pc`.
    OvmfX64,
    /// Debian's ia32 OVMF (package `ovmf-ia32`): the Secure Boot capable
    /// build, which needs machine `q35,smm=on` and a secure pflash; `vars`
    /// is a writable copy of its variable store (see
    /// [`Firmware::ovmf_ia32`]). With the empty store Secure Boot is off.
    OvmfIa32 {
        /// The VM's own copy of `OVMF32_VARS_4M.fd`.
        vars: PathBuf,
    },
}

/// x64 OVMF.
pub const OVMF_X64: &str = "/usr/share/ovmf/OVMF.fd";
/// ia32 OVMF's code.
pub const OVMF_IA32_CODE: &str = "/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd";
/// ia32 OVMF's empty variable store.
pub const OVMF_IA32_VARS: &str = "/usr/share/OVMF/OVMF32_VARS_4M.fd";

impl Firmware {
    /// ia32 OVMF with a fresh copy of the variable store in `dir`.
    pub fn ovmf_ia32(dir: &Path) -> Result<Firmware> {
        let vars = dir.join("OVMF32_VARS_4M.fd");
        fs::copy(OVMF_IA32_VARS, &vars).map_err(Error::io("copying", OVMF_IA32_VARS))?;
        Ok(Firmware::OvmfIa32 { vars })
    }

    /// The files the firmware needs, for a clear error when its package is
    /// missing.
    pub fn check(&self) -> Result<()> {
        let (files, package): (&[&str], &str) = match self {
            Firmware::SeaBios => (&[], "qemu-system-x86"),
            Firmware::OvmfX64 => (&[OVMF_X64], "ovmf"),
            Firmware::OvmfIa32 { .. } => (&[OVMF_IA32_CODE, OVMF_IA32_VARS], "ovmf-ia32"),
        };
        for file in files {
            if !Path::new(file).is_file() {
                return Err(Error::Missing(format!(
                    "{file} is missing (Debian package {package}): run scripts/install-deps.sh"
                )));
            }
        }
        Ok(())
    }
}

/// Where a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    /// A VMware paravirtual SCSI controller, the disk at this target id
    /// (the fixup disk sits at scsi0:15).
    Pvscsi {
        /// The SCSI target id.
        scsi_id: u8,
    },
    /// An AHCI controller, the disk on its first port.
    Ahci,
    /// A virtio-scsi controller (id `virtioscsi0`), the disk at this
    /// target id: where a KVM guest's `/dev/sda` usually lives.
    VirtioScsi {
        /// The SCSI target id.
        scsi_id: u8,
    },
}

/// A boot disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file.
    pub path: PathBuf,
    /// Its QEMU format (`raw`, `vmdk`, `qcow2`).
    pub format: String,
    /// The controller.
    pub bus: DiskBus,
    /// `snapshot=on`: guest writes go to a temporary overlay (needed for a
    /// streamOptimized VMDK, which QEMU cannot write, and keeps a cached
    /// image pristine).
    pub snapshot: bool,
}

impl Disk {
    /// A disk image, its format from the file name (`.vmdk`, `.qcow2`,
    /// else raw), with `snapshot=on`.
    pub fn new(path: impl Into<PathBuf>, bus: DiskBus) -> Self {
        let path = path.into();
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("vmdk") => "vmdk",
            Some("qcow2") => "qcow2",
            _ => "raw",
        };
        Self {
            path,
            format: format.to_owned(),
            bus,
            snapshot: true,
        }
    }

    /// QEMU's arguments for the disk (drive id `osamdisk`, boot index 0).
    pub fn qemu_args(&self) -> Vec<String> {
        let mut drive = format!(
            "if=none,id=osamdisk,file={},format={}",
            opt_value(&self.path),
            self.format
        );
        if self.snapshot {
            drive.push_str(",snapshot=on");
        }
        let mut args = vec!["-drive".to_owned(), drive];
        match self.bus {
            DiskBus::Pvscsi { scsi_id } => args.extend([
                "-device".to_owned(),
                "pvscsi,id=pvscsi0".to_owned(),
                "-device".to_owned(),
                format!("scsi-hd,bus=pvscsi0.0,scsi-id={scsi_id},drive=osamdisk,bootindex=0"),
            ]),
            DiskBus::Ahci => args.extend([
                "-device".to_owned(),
                "ahci,id=sata0".to_owned(),
                "-device".to_owned(),
                "ide-hd,bus=sata0.0,drive=osamdisk,bootindex=0".to_owned(),
            ]),
            DiskBus::VirtioScsi { scsi_id } => args.extend([
                "-device".to_owned(),
                "virtio-scsi-pci,id=virtioscsi0".to_owned(),
                "-device".to_owned(),
                format!("scsi-hd,bus=virtioscsi0.0,scsi-id={scsi_id},drive=osamdisk,bootindex=0"),
            ]),
        }
        args
    }
}

/// A storage controller model of a VM with several disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerModel {
    /// VMware paravirtual SCSI (`pvscsi`): targets 0-63.
    Pvscsi,
    /// LSI Logic SAS 1068 (`mptsas1068`): targets 0-7.
    Mptsas1068,
    /// AHCI (`ahci`, ICH9): ports 0-5.
    Ahci,
}

impl ControllerModel {
    /// QEMU's device name.
    pub fn qemu_device(self) -> &'static str {
        match self {
            ControllerModel::Pvscsi => "pvscsi",
            ControllerModel::Mptsas1068 => "mptsas1068",
            ControllerModel::Ahci => "ahci",
        }
    }

    /// How many units (SCSI targets, SATA ports) QEMU gives it.
    pub fn units(self) -> u8 {
        match self {
            ControllerModel::Pvscsi => 64,
            ControllerModel::Mptsas1068 => 8,
            ControllerModel::Ahci => 6,
        }
    }

    /// Whether it is a SCSI controller (units are target ids).
    pub fn is_scsi(self) -> bool {
        !matches!(self, ControllerModel::Ahci)
    }
}

/// A storage controller and its disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// QEMU's device id (also the prefix of its drives' ids).
    pub id: String,
    /// The model.
    pub model: ControllerModel,
    /// Its disks.
    pub drives: Vec<Drive>,
}

/// A disk on a [`Controller`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    /// The SCSI target id or the SATA port.
    pub unit: u8,
    /// The image file.
    pub path: PathBuf,
    /// Its QEMU format (`raw`, `vmdk`, `qcow2`).
    pub format: String,
    /// `snapshot=on` (see [`Disk::snapshot`]).
    pub snapshot: bool,
    /// Its place in the firmware's boot order (0 first); `None` keeps it
    /// out of the order.
    pub bootindex: Option<u32>,
}

impl Controller {
    /// QEMU's arguments for the controller and its disks (drive ids
    /// `<id>-<unit>`).
    pub fn qemu_args(&self) -> Vec<String> {
        let mut args = vec![
            "-device".to_owned(),
            format!("{},id={}", self.model.qemu_device(), self.id),
        ];
        for drive in &self.drives {
            let drive_id = format!("{}-{}", self.id, drive.unit);
            let mut spec = format!(
                "if=none,id={drive_id},file={},format={}",
                opt_value(&drive.path),
                drive.format
            );
            if drive.snapshot {
                spec.push_str(",snapshot=on");
            }
            let mut device = if self.model.is_scsi() {
                format!(
                    "scsi-hd,bus={}.0,scsi-id={},drive={drive_id}",
                    self.id, drive.unit
                )
            } else {
                format!("ide-hd,bus={}.{},drive={drive_id}", self.id, drive.unit)
            };
            if let Some(index) = drive.bootindex {
                device.push_str(&format!(",bootindex={index}"));
            }
            args.extend(["-drive".to_owned(), spec, "-device".to_owned(), device]);
        }
        args
    }
}

/// A NIC model QEMU emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    /// VMware VMXNET3.
    Vmxnet3,
    /// Intel 82540EM.
    E1000,
    /// Intel 82574L.
    E1000e,
}

impl NicModel {
    /// QEMU's device name.
    pub fn qemu_device(self) -> &'static str {
        match self {
            NicModel::Vmxnet3 => "vmxnet3",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
        }
    }
}

/// A NIC with a given MAC address, on QEMU user networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The model.
    pub model: NicModel,
    /// Its MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

/// `,` doubled, as QEMU's option parser wants inside a value.
fn opt_value(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

impl VmConfig {
    /// A VM booting `kernel` and `initrd`, 512 MiB, with the console on both
    /// `tty0` and `ttyS0` — `ttyS0` last, so that `/dev/console` (what PID 1
    /// writes to) is the serial port the log records — and `panic=-1` so a
    /// kernel panic ends QEMU (`-no-reboot`) instead of a long timeout.
    pub fn new(
        arch: Arch,
        kernel: impl Into<PathBuf>,
        initrd: impl Into<PathBuf>,
        serial_log: impl Into<PathBuf>,
    ) -> Self {
        Self {
            arch,
            kernel: kernel.into(),
            initrd: initrd.into(),
            serial_log: serial_log.into(),
            memory_mib: 512,
            cmdline: ["console=tty0", "console=ttyS0", "panic=-1"]
                .map(String::from)
                .to_vec(),
            shares: Vec::new(),
            qmp_socket: None,
            extra_args: Vec::new(),
            disk: None,
            firmware: Firmware::SeaBios,
            serial_socket: None,
            cpus: 1,
            controllers: Vec::new(),
            cdrom: None,
            nics: Vec::new(),
        }
    }

    /// A VM booting through `firmware` from the disks of `controllers` (in
    /// their boot order), 512 MiB.
    pub fn machine(
        arch: Arch,
        firmware: Firmware,
        controllers: Vec<Controller>,
        serial_log: impl Into<PathBuf>,
    ) -> Self {
        let mut config = Self::new(arch, PathBuf::new(), PathBuf::new(), serial_log);
        config.cmdline.clear();
        config.firmware = firmware;
        config.controllers = controllers;
        config
    }

    /// Sets the number of virtual CPUs.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Adds a CD-ROM holding `iso`.
    pub fn cdrom(mut self, iso: impl Into<PathBuf>) -> Self {
        self.cdrom = Some(iso.into());
        self
    }

    /// Adds a NIC with MAC address `mac`.
    pub fn nic(mut self, model: NicModel, mac: impl Into<String>) -> Self {
        self.nics.push(Nic {
            model,
            mac: mac.into(),
        });
        self
    }

    /// A VM booting `disk` through `firmware`, 512 MiB (GRUB 2.06's EFI
    /// `linux` runs out of memory with 256 MiB under OVMF).
    pub fn disk(
        arch: Arch,
        disk: Disk,
        firmware: Firmware,
        serial_log: impl Into<PathBuf>,
    ) -> Self {
        let mut config = Self::new(arch, PathBuf::new(), PathBuf::new(), serial_log);
        config.cmdline.clear();
        config.disk = Some(disk);
        config.firmware = firmware;
        config
    }

    /// Makes the serial console interactive: a unix socket at `path`
    /// (connect with [`Vm::serial_console`]); the log file still records
    /// everything the guest writes.
    pub fn interactive_serial(mut self, path: impl Into<PathBuf>) -> Self {
        self.serial_socket = Some(path.into());
        self
    }

    /// A VM booting a smoke initramfs.
    pub fn from_smoke(boot: &SmokeBoot, serial_log: impl Into<PathBuf>) -> Self {
        Self::new(boot.arch, &boot.kernel, &boot.initrd, serial_log)
    }

    /// Appends a kernel command-line argument.
    pub fn cmdline_arg(mut self, arg: impl Into<String>) -> Self {
        self.cmdline.push(arg.into());
        self
    }

    /// Shares a host folder over virtio-9p with mount tag `tag`.
    pub fn share_9p(mut self, dir: impl Into<PathBuf>, tag: &str) -> Self {
        self.shares.push((dir.into(), tag.to_owned()));
        self
    }

    /// The protocol's QEMU transport: `dir` shared with tag `fixup` and
    /// `osam.transport=9p:fixup`; the guest mounts it at `/tmp`, so
    /// `/tmp/fixup` appears as `dir/fixup`.
    pub fn fixup_share(self, dir: impl Into<PathBuf>) -> Self {
        self.share_9p(dir, "fixup")
            .cmdline_arg("osam.transport=9p:fixup")
    }

    /// Creates a QMP socket at `path`.
    pub fn qmp(mut self, path: impl Into<PathBuf>) -> Self {
        self.qmp_socket = Some(path.into());
        self
    }

    /// Sets the memory size.
    pub fn memory(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Appends QEMU arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.extra_args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// QEMU's arguments (without the program).
    pub fn qemu_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &str| args.push(a.into());
        push("-accel");
        push("tcg");
        push("-machine");
        push(match self.firmware {
            Firmware::OvmfIa32 { .. } => "q35,smm=on",
            _ => "pc",
        });
        match &self.firmware {
            Firmware::SeaBios => {}
            Firmware::OvmfX64 => {
                push("-bios");
                push(OVMF_X64);
            }
            Firmware::OvmfIa32 { vars } => {
                push("-global");
                push("driver=cfi.pflash01,property=secure,value=on");
                push("-drive");
                push(&format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_IA32_CODE}"
                ));
                push("-drive");
                push(&format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    opt_value(vars)
                ));
            }
        }
        push("-cpu");
        push(self.arch.qemu_cpu());
        push("-smp");
        push(&self.cpus.max(1).to_string());
        push("-m");
        push(&self.memory_mib.to_string());
        push("-nographic");
        push("-monitor");
        push("none");
        push("-no-reboot");
        match &self.serial_socket {
            None => {
                push("-serial");
                push(&format!("file:{}", opt_value(&self.serial_log)));
            }
            Some(socket) => {
                push("-chardev");
                push(&format!(
                    "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=off",
                    opt_value(socket),
                    opt_value(&self.serial_log)
                ));
                push("-serial");
                push("chardev:serial0");
            }
        }
        match &self.disk {
            None if !self.controllers.is_empty() => {}
            None => {
                push("-kernel");
                push(&self.kernel.to_string_lossy());
                push("-initrd");
                push(&self.initrd.to_string_lossy());
                push("-append");
                push(&self.cmdline.join(" "));
            }
            Some(disk) => {
                for arg in disk.qemu_args() {
                    push(&arg);
                }
            }
        }
        for controller in &self.controllers {
            for arg in controller.qemu_args() {
                push(&arg);
            }
        }
        if let Some(iso) = &self.cdrom {
            push("-drive");
            push(&format!(
                "if=none,id=osamcd,media=cdrom,readonly=on,format=raw,file={}",
                opt_value(iso)
            ));
            push("-device");
            push("ide-cd,bus=ide.1,drive=osamcd");
        }
        for (i, nic) in self.nics.iter().enumerate() {
            push("-netdev");
            push(&format!("user,id=osamnet{i}"));
            push("-device");
            push(&format!(
                "{},netdev=osamnet{i},mac={}",
                nic.model.qemu_device(),
                nic.mac
            ));
        }
        for (dir, tag) in &self.shares {
            push("-virtfs");
            push(&format!(
                "local,path={},mount_tag={tag},security_model=none,id={tag}",
                opt_value(dir)
            ));
        }
        if let Some(socket) = &self.qmp_socket {
            push("-qmp");
            push(&format!("unix:{},server=on,wait=off", opt_value(socket)));
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A running QEMU.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    status: Option<ExitStatus>,
    serial_log: PathBuf,
    stderr_log: PathBuf,
    qmp_socket: Option<PathBuf>,
    serial_socket: Option<PathBuf>,
    started: Instant,
}

impl Vm {
    /// Starts QEMU. Its stdout and stderr go to `<serial_log>.qemu-stderr`.
    pub fn start(config: &VmConfig) -> Result<Vm> {
        config.firmware.check()?;
        let images = config
            .disk
            .iter()
            .map(|d| &d.path)
            .chain(
                config
                    .controllers
                    .iter()
                    .flat_map(|c| c.drives.iter().map(|d| &d.path)),
            )
            .chain(&config.cdrom);
        for image in images {
            if !image.is_file() {
                return Err(Error::Missing(format!(
                    "the disk image {} is missing",
                    image.display()
                )));
            }
        }
        let program = config.arch.qemu_system();
        let stderr_log = PathBuf::from(format!("{}.qemu-stderr", config.serial_log.display()));
        let stderr = File::create(&stderr_log).map_err(Error::io("creating", &stderr_log))?;
        let stdout = stderr
            .try_clone()
            .map_err(Error::io("duplicating", &stderr_log))?;
        // A stale log would satisfy waits on its contents.
        let _ = fs::remove_file(&config.serial_log);
        for socket in [&config.qmp_socket, &config.serial_socket]
            .into_iter()
            .flatten()
        {
            let _ = fs::remove_file(socket);
        }
        let mut command = Command::new(program);
        command
            .args(config.qemu_args())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl(2), which is async-signal-safe; it touches no memory
        // shared with the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: format!("{program} {:?}", config.qemu_args()),
            source,
        })?;
        Ok(Vm {
            child,
            status: None,
            serial_log: config.serial_log.clone(),
            stderr_log,
            qmp_socket: config.qmp_socket.clone(),
            serial_socket: config.serial_socket.clone(),
            started: Instant::now(),
        })
    }

    /// Connects to the interactive serial console (waiting up to 10 s for
    /// QEMU to create the socket).
    pub fn serial_console(&mut self) -> Result<SerialConsole> {
        let socket = self
            .serial_socket
            .clone()
            .ok_or_else(|| Error::Missing("the VM has no interactive serial console".into()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => return SerialConsole::new(stream, &socket),
                Err(e) if Instant::now() >= deadline || !self.is_running() => {
                    return Err(Error::io("connecting to", &socket)(e));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The serial log file.
    pub fn serial_log_path(&self) -> &Path {
        &self.serial_log
    }

    /// The serial log so far, carriage returns removed.
    pub fn serial_log(&self) -> String {
        let bytes = fs::read(&self.serial_log).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    /// The serial log's length in bytes (a mark for
    /// [`Vm::wait_for_serial_after`]).
    pub fn serial_log_len(&self) -> usize {
        fs::metadata(&self.serial_log).map_or(0, |m| m.len() as usize)
    }

    /// The last `n` lines of the serial log.
    pub fn serial_tail(&self, n: usize) -> String {
        tail_lines(&self.serial_log(), n)
    }

    /// What QEMU printed on stdout and stderr.
    pub fn qemu_output(&self) -> String {
        fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// How QEMU ended, or `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether QEMU still runs.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Polls `cond` every [`POLL_INTERVAL`] until it returns `Some`, QEMU
    /// exits, or `timeout` passes; the errors carry the serial log's last
    /// [`LOG_TAIL_LINES`] lines.
    pub fn wait_for<T>(
        &mut self,
        mut cond: impl FnMut() -> Option<T>,
        timeout: Duration,
        what: &str,
    ) -> Result<T> {
        let start = Instant::now();
        loop {
            if let Some(value) = cond() {
                return Ok(value);
            }
            if let Some(status) = self.exit_status() {
                if let Some(value) = cond() {
                    return Ok(value);
                }
                let mut tail = self.serial_tail(LOG_TAIL_LINES);
                let qemu = self.qemu_output();
                if !qemu.trim().is_empty() {
                    tail.push_str("\n--- QEMU's own output ---\n");
                    tail.push_str(&tail_lines(&qemu, 20));
                }
                return Err(Error::VmExited {
                    what: what.to_owned(),
                    status: status.to_string(),
                    log: self.serial_log.clone(),
                    tail,
                });
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    timeout,
                    log: self.serial_log.clone(),
                    tail: self.serial_tail(LOG_TAIL_LINES),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until the serial log contains `needle`.
    pub fn wait_for_serial(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.wait_for_serial_after(0, needle, timeout).map(|_| ())
    }

    /// Waits until the serial log, from byte `mark` on, contains `needle`;
    /// returns the log from `mark` to the end of the needle's first
    /// occurrence (carriage returns kept).
    pub fn wait_for_serial_after(
        &mut self,
        mark: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<String> {
        let log = self.serial_log.clone();
        self.wait_for(
            || {
                let bytes = fs::read(&log).ok()?;
                let text = String::from_utf8_lossy(bytes.get(mark..)?);
                let at = text.find(needle)?;
                Some(text[..at + needle.len()].to_owned())
            },
            timeout,
            &format!("{needle:?} on the serial console"),
        )
    }

    /// Picks an entry of GRUB's menu over the serial console: the one
    /// `downs` below the default, whose title is `entry`. Waits for the
    /// countdown line (GRUB draws its menu twice on a serial terminal and
    /// may drop a key sent before the second drawing), sends Ctrl-N
    /// `downs` times (which also stops the countdown), waits for `entry` to
    /// be highlighted (`*entry`), then sends Enter.
    pub fn grub_select(
        &mut self,
        console: &mut SerialConsole,
        downs: usize,
        entry: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.wait_for_console(console, (0, 0), "executed automatically in", timeout)?;
        let marks = self.console_marks(console);
        for _ in 0..downs {
            console.send(crate::serial::CTRL_N)?;
            std::thread::sleep(Duration::from_millis(200));
        }
        self.wait_for_console(
            console,
            marks,
            &format!("*{entry}"),
            Duration::from_secs(10),
        )?;
        console.send(crate::serial::ENTER)
    }

    /// Where the console's two copies end now, the log file's and the
    /// socket transcript's: a mark for [`Vm::wait_for_console`].
    pub fn console_marks(&self, console: &SerialConsole) -> (usize, usize) {
        (self.serial_log_len(), console.transcript().len())
    }

    /// Waits up to `timeout` for `needle` in what the console showed
    /// since `marks` ([`Vm::console_marks`]); returns that text up to and
    /// including the needle.
    ///
    /// The socket's transcript is read first: QEMU 7.2 now and then
    /// writes a byte twice into the log file of a socket chardev (never
    /// into the socket), which would garble a line the caller checks or
    /// turn a marker into a timeout. The log is the fallback.
    pub fn wait_for_console(
        &mut self,
        console: &SerialConsole,
        marks: (usize, usize),
        needle: &str,
        timeout: Duration,
    ) -> Result<String> {
        let (log_mark, transcript_mark) = marks;
        let log = self.serial_log.clone();
        let found = |text: &str| {
            text.find(needle)
                .map(|at| text[..at + needle.len()].to_owned())
        };
        self.wait_for(
            || {
                let transcript = console.transcript();
                if let Some(out) = transcript.get(transcript_mark..).and_then(found) {
                    return Some(out);
                }
                let bytes = fs::read(&log).ok()?;
                found(&String::from_utf8_lossy(bytes.get(log_mark..)?).replace('\r', ""))
            },
            timeout,
            &format!("{needle:?} on the serial console"),
        )
    }

    /// Types `command` into the shell on `console` and waits up to
    /// `timeout` for `marker` (a string the command prints but whose typed
    /// form differs, e.g. `$((40+2))` for `42`); returns what the console
    /// showed from the typing up to and including the marker (see
    /// [`Vm::wait_for_console`]).
    pub fn shell(
        &mut self,
        console: &mut SerialConsole,
        command: &str,
        marker: &str,
        timeout: Duration,
    ) -> Result<String> {
        let marks = self.console_marks(console);
        console.send_line(command)?;
        self.wait_for_console(console, marks, marker, timeout)
            .map_err(|e| match e {
                Error::Timeout {
                    timeout, log, tail, ..
                } => Error::Timeout {
                    what: format!("{marker:?} after `{command}`"),
                    timeout,
                    log,
                    tail,
                },
                other => other,
            })
    }

    /// Sends one QMP command (with `arguments` where not `Null`) and returns
    /// its `return` value.
    pub fn qmp(&self, command: &str, arguments: Value) -> Result<Value> {
        let err = |reason: String| Error::Qmp {
            command: command.to_owned(),
            reason,
        };
        let socket = self
            .qmp_socket
            .as_ref()
            .ok_or_else(|| err("the VM has no QMP socket".into()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(err(format!("connecting to {}: {e}", socket.display())));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| err(e.to_string()))?;
        let mut writer = stream.try_clone().map_err(|e| err(e.to_string()))?;
        let mut reader = BufReader::new(stream);
        let read_reply = |reader: &mut BufReader<UnixStream>| -> Result<Value> {
            loop {
                let mut line = String::new();
                let n = reader
                    .read_line(&mut line)
                    .map_err(|e| err(format!("reading: {e}")))?;
                if n == 0 {
                    return Err(err("QEMU closed the QMP connection".into()));
                }
                let value: Value = serde_json::from_str(&line)
                    .map_err(|e| err(format!("parsing {line:?}: {e}")))?;
                if let Some(ret) = value.get("return") {
                    return Ok(ret.clone());
                }
                if let Some(e) = value.get("error") {
                    return Err(err(e.to_string()));
                }
                // The greeting and asynchronous events are skipped.
                if value.get("QMP").is_some() {
                    return Ok(Value::Null);
                }
            }
        };
        read_reply(&mut reader)?; // greeting
        let mut send = |message: Value| {
            writeln!(writer, "{message}").map_err(|e| err(format!("writing: {e}")))
        };
        send(json!({ "execute": "qmp_capabilities" }))?;
        read_reply(&mut reader)?;
        let mut message = json!({ "execute": command });
        if !arguments.is_null() {
            message["arguments"] = arguments;
        }
        send(message)?;
        read_reply(&mut reader)
    }

    /// Waits up to `timeout` for QEMU to exit by itself (the guest powered
    /// off: QEMU runs with `-no-reboot`).
    pub fn wait_exit(&mut self, timeout: Duration, what: &str) -> Result<ExitStatus> {
        self.wait_exit_watching(timeout, what, false)
    }

    /// [`Vm::wait_exit`], but fails early with [`Error::DeadEnd`] when
    /// [`dead_end`] finds the guest stuck in its serial log (checked
    /// every few seconds), instead of waiting out the whole `timeout`.
    pub fn wait_exit_or_dead_end(&mut self, timeout: Duration, what: &str) -> Result<ExitStatus> {
        self.wait_exit_watching(timeout, what, true)
    }

    /// The loop of [`Vm::wait_exit`] and, with `watch_dead_end`,
    /// [`Vm::wait_exit_or_dead_end`].
    fn wait_exit_watching(
        &mut self,
        timeout: Duration,
        what: &str,
        watch_dead_end: bool,
    ) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut next_look = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            if watch_dead_end && Instant::now() >= next_look {
                next_look = Instant::now() + DEAD_END_LOOK;
                if let Some(line) = dead_end(&self.serial_log()) {
                    return Err(Error::DeadEnd {
                        what: what.to_owned(),
                        line,
                        log: self.serial_log.clone(),
                        tail: self.serial_tail(LOG_TAIL_LINES),
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    timeout,
                    log: self.serial_log.clone(),
                    tail: self.serial_tail(LOG_TAIL_LINES),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Powers the VM off over QMP: the ACPI power button
    /// (`system_powerdown`), up to `grace` for the guest to shut down, then
    /// `quit`; a QEMU that still runs 10 s later is killed. A guest whose
    /// serial console stays silent for [`POWER_BUTTON_QUIET`] after the
    /// button is taken to ignore it (a guest shutting down logs), so that
    /// `quit` comes early. Says how it ended.
    pub fn power_off(&mut self, grace: Duration) -> PowerOff {
        if self.exit_status().is_some() {
            return PowerOff::AlreadyOff;
        }
        if self.qmp("system_powerdown", Value::Null).is_ok() {
            let deadline = Instant::now() + grace;
            let mut last_len = self.serial_log_len();
            let mut last_change = Instant::now();
            while Instant::now() < deadline {
                if self.exit_status().is_some() {
                    return PowerOff::Acpi;
                }
                let len = self.serial_log_len();
                if len != last_len {
                    last_len = len;
                    last_change = Instant::now();
                } else if last_change.elapsed() >= POWER_BUTTON_QUIET {
                    break;
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        }
        if self.exit_status().is_some() {
            return PowerOff::Acpi;
        }
        // QEMU may exit before it answers `quit`.
        let _ = self.qmp("quit", Value::Null);
        if self
            .wait_exit(Duration::from_secs(10), "QEMU to quit")
            .is_ok()
        {
            return PowerOff::Quit;
        }
        self.kill();
        PowerOff::Killed
    }

    /// Kills QEMU and reaps it (idempotent).
    pub fn kill(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

/// How [`Vm::power_off`] ended the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOff {
    /// QEMU had already exited.
    AlreadyOff,
    /// The guest shut down on the ACPI power button.
    Acpi,
    /// QMP `quit` (the guest ignored the power button).
    Quit,
    /// QEMU was killed (it answered neither).
    Killed,
}

impl PowerOff {
    /// A short name for reports: `already-off`, `acpi`, `quit`, `killed`.
    pub fn name(self) -> &'static str {
        match self {
            PowerOff::AlreadyOff => "already-off",
            PowerOff::Acpi => "acpi",
            PowerOff::Quit => "quit",
            PowerOff::Killed => "killed",
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How often [`Vm::wait_exit_or_dead_end`] reads the serial log.
const DEAD_END_LOOK: Duration = Duration::from_secs(3);

/// The first serial line that shows a guest stuck for good: the Debian
/// initramfs giving up on its root ("ALERT! … does not exist. Dropping
/// to a shell!"), dracut's or systemd's emergency mode, a kernel panic.
/// `None` while none is there. (Single-user mode, where stage 2 runs, is
/// systemd's *rescue* mode and does not count.)
pub fn dead_end(serial: &str) -> Option<String> {
    const SIGNS: [&str; 5] = [
        "Dropping to a shell!",
        "Kernel panic - not syncing",
        "You are in emergency mode",
        "Entering emergency mode",
        "Gave up waiting for root file system device",
    ];
    serial
        .lines()
        .find(|l| SIGNS.iter().any(|s| l.contains(s)))
        .map(|l| l.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_ends() {
        let initramfs = "Begin: Running /scripts/local-block ... done.\n\
            Gave up waiting for root file system device.  Common problems:\n\
            ALERT!  /dev/sdb1 does not exist.  Dropping to a shell!\n(initramfs) ";
        assert_eq!(
            dead_end(initramfs).as_deref(),
            Some("Gave up waiting for root file system device.  Common problems:")
        );
        assert!(dead_end("[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root").is_some());
        assert!(dead_end("You are in emergency mode. After logging in, type").is_some());
        // Single-user mode (stage 2) and a normal boot are not dead ends.
        assert_eq!(
            dead_end("You are in rescue mode. After logging in, type \"journalctl -xb\"\nlogin:"),
            None
        );
        assert_eq!(dead_end(""), None);
    }

    #[test]
    fn command_line() {
        let config = VmConfig::new(Arch::I686, "/k/vmlinuz", "/k/initrd", "/t/serial,1.log")
            .fixup_share("/t/share")
            .qmp("/t/qmp.sock")
            .args(["-device", "pvscsi"]);
        let args: Vec<String> = config
            .qemu_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.starts_with("-accel tcg "), "{joined}");
        assert!(!joined.contains("kvm"));
        assert!(joined.contains("-cpu coreduo"));
        assert!(joined.contains("-serial file:/t/serial,,1.log"));
        assert!(
            joined.contains(
                "-virtfs local,path=/t/share,mount_tag=fixup,security_model=none,id=fixup"
            )
        );
        assert!(joined.contains("-qmp unix:/t/qmp.sock,server=on,wait=off"));
        assert!(joined.ends_with("-device pvscsi"));
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert_eq!(
            append,
            "console=tty0 console=ttyS0 panic=-1 osam.transport=9p:fixup"
        );
        assert_eq!(Arch::I686.qemu_system(), "qemu-system-i386");
    }

    #[test]
    fn disk_boot_command_lines() {
        let joined = |config: &VmConfig| {
            config
                .qemu_args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let disk = Disk::new("/i/osam.vmdk", DiskBus::Pvscsi { scsi_id: 15 });
        assert_eq!(disk.format, "vmdk");
        let config = VmConfig::disk(Arch::X86_64, disk, Firmware::SeaBios, "/t/s.log")
            .interactive_serial("/t/s.sock");
        let args = joined(&config);
        assert!(
            !args.contains("-kernel") && !args.contains("-append"),
            "{args}"
        );
        assert!(args.contains("-machine pc "), "{args}");
        assert!(args.contains(
            "-drive if=none,id=osamdisk,file=/i/osam.vmdk,format=vmdk,snapshot=on \
             -device pvscsi,id=pvscsi0 \
             -device scsi-hd,bus=pvscsi0.0,scsi-id=15,drive=osamdisk,bootindex=0"
        ));
        assert!(args.contains(
            "-chardev socket,id=serial0,path=/t/s.sock,server=on,wait=off,\
             logfile=/t/s.log,logappend=off -serial chardev:serial0"
        ));
        assert!(!args.contains("kvm"));

        let config = VmConfig::disk(
            Arch::I686,
            Disk::new("/i/osam.raw", DiskBus::Ahci),
            Firmware::OvmfIa32 {
                vars: "/t/vars.fd".into(),
            },
            "/t/s.log",
        );
        let args = joined(&config);
        assert!(args.contains("-machine q35,smm=on"), "{args}");
        assert!(args.contains("-cpu coreduo"));
        assert!(args.contains("driver=cfi.pflash01,property=secure,value=on"));
        assert!(args.contains("if=pflash,format=raw,unit=1,file=/t/vars.fd"));
        assert!(args.contains("format=raw,snapshot=on -device ahci,id=sata0"));
        assert!(args.contains("-serial file:/t/s.log"));

        let args = joined(&VmConfig::disk(
            Arch::X86_64,
            Disk::new("/i/osam.raw", DiskBus::Ahci),
            Firmware::OvmfX64,
            "/t/s.log",
        ));
        assert!(args.contains(&format!("-bios {OVMF_X64}")));
    }
}
