//! The rescue entry of the real stack image, with a guest disk, driven
//! over the serial console as a field engineer drives it
//! (docs/field-guide.md, "The rescue shell" and "fixupctl"):
//!
//! 1. on the host, without root, loop devices or device-mapper: a raw
//!    guest disk (MBR, one Linux partition at 1 MiB) whose ext4 file
//!    system is made from a small Debian tree that the fixup engine can
//!    run on completely (`mkfs.ext4 -d`, written in with `dd`); a copy of
//!    the stack's raw disk with the three input files in `/fixup/` of its
//!    ESP (`mcopy`);
//! 2. x86_64 under SeaBIOS, pvscsi: the guest at scsi-id 0, the stack at
//!    15; "OSAM rescue shell" picked in GRUB's menu over the serial
//!    console; the banner lists the guest root mounted read-only and the
//!    input files copied to /tmp/fixup;
//! 3. typed into `osam# `, each command's output and exit status checked:
//!    `fixupctl status` (phase rescue), a write to /sysroot (refused by
//!    the read-only mount), `fixupctl plan` (the fstab diff `/dev/sda1` →
//!    `UUID=`), `fixupctl run` (refused while read-only), `fixupctl mount
//!    --rw`, `fixupctl run --no-commands` (fstab has `UUID=`), `fixupctl
//!    undo` (fstab back), `fixupctl umount` from inside /sysroot (busy:
//!    the shell is named), `fixupctl collect` (`--out /tmp`, listed with
//!    `tar tzf`, and to the ESP), `fixupctl umount`, `fixupctl status`,
//!    `poweroff -f`;
//! 4. on the host: the guest's file system is clean (`e2fsck -fn`) and its
//!    fstab byte for byte as before; the bundle is on the ESP, which was
//!    unmounted cleanly.
//!
//! Missing tools fail the test: run scripts/install-deps.sh (mtools,
//! e2fsprogs, fdisk, qemu-system-x86). On failure the serial log's last
//! lines are printed.

use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use osam_qemu::image::stack_image;
use osam_qemu::manager;
use osam_qemu::rawdisk::{self, Ext4Disk};
use osam_qemu::serial::SerialConsole;
use osam_qemu::vm::{Controller, ControllerModel, Drive, Firmware, Vm, VmConfig};
use osam_qemu::{Arch, esp};
use serde_json::json;

/// The guest's kernel.
const KERNEL: &str = "5.10.0-28-amd64";
/// The guest root's file-system UUID (the same on source and target).
const ROOT_UUID: &str = "5d3c2b1a-0f9e-4d8c-b7a6-958473625140";
/// The guest disk's size.
const GUEST_MIB: u64 = 32;
/// The guest's fstab as the source left it: the root by device name.
const FSTAB: &str = "# /etc/fstab: static file system information.\n#\n\
                     # <file system> <mount point>   <type>  <options>       <dump>  <pass>\n\
                     /dev/sda1 / ext4 errors=remount-ro 0 1\n\
                     proc /proc proc defaults 0 0\n";
/// From QEMU's start to GRUB's menu, and from the menu to `osam# `.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// One command typed into the shell.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Serial lines printed when the test fails.
const TAIL: usize = 100;

// ------------------------------------------------------------ the guest

fn put(root: &Path, rel: &str, data: &[u8], mode: u32) -> Result<()> {
    let p = root.join(rel);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&p, data).with_context(|| format!("writing {}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn link(root: &Path, rel: &str, target: &str) -> Result<()> {
    let p = root.join(rel);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    symlink(target, &p).with_context(|| format!("linking {}", p.display()))
}

/// The 64-byte ELF header of an x86_64 executable: what the engine reads
/// to tell the guest's architecture.
fn elf_x86_64() -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0x40_1000u64.to_le_bytes());
    h.extend_from_slice(&[0; 16]); // e_phoff, e_shoff
    h.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 0, 64, 0, 0] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// A gzip'ed newc cpio holding these files (an initramfs without
/// vmw_pvscsi: the fixup plans a rebuild).
fn initramfs(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut cpio = Vec::new();
    let mut entry = |ino: u32, name: &str, mode: u32, data: &[u8]| {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        cpio.extend_from_slice(b"070701");
        for f in fields {
            cpio.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        cpio.extend_from_slice(name.as_bytes());
        cpio.push(0);
        while cpio.len() % 4 != 0 {
            cpio.push(0);
        }
        cpio.extend_from_slice(data);
        while cpio.len() % 4 != 0 {
            cpio.push(0);
        }
    };
    for (i, (name, data)) in files.iter().enumerate() {
        entry(i as u32 + 1, name, 0o100_644, data);
    }
    entry(0, "TRAILER!!!", 0, &[]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&cpio)?;
    Ok(gz.finish()?)
}

/// A Debian 11 guest from KVM, as the fixture guests of
/// init/tests/fixture_guests.rs lay one out: root on /dev/sda1 by device
/// name, ifupdown with ens192, GRUB 2 for BIOS, initramfs-tools, systemd.
fn debian_tree(root: &Path) -> Result<()> {
    let v = KERNEL;
    put(root, "bin/sh", &elf_x86_64(), 0o755)?;
    for tool in [
        "lib/systemd/systemd",
        "bin/systemctl",
        "usr/sbin/update-initramfs",
        "usr/sbin/mkinitramfs",
        "usr/sbin/grub-mkconfig",
        "usr/sbin/grub-install",
        "usr/sbin/update-grub",
    ] {
        put(root, tool, b"", 0o755)?;
    }
    link(root, "sbin/init", "/lib/systemd/systemd")?;
    put(
        root,
        "etc/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\nNAME=\"Debian GNU/Linux\"\n\
          VERSION_ID=\"11\"\nVERSION=\"11 (bullseye)\"\nVERSION_CODENAME=bullseye\nID=debian\n\
          HOME_URL=\"https://www.debian.org/\"\n",
        0o644,
    )?;
    put(root, "etc/debian_version", b"11.9\n", 0o644)?;
    put(root, "etc/fstab", FSTAB.as_bytes(), 0o644)?;
    put(
        root,
        "etc/network/interfaces",
        b"# The loopback network interface\nauto lo\niface lo inet loopback\n\n\
          # The primary network interface\nallow-hotplug ens192\niface ens192 inet dhcp\n",
        0o644,
    )?;
    std::fs::create_dir_all(root.join("etc/network/interfaces.d"))?;
    put(
        root,
        "etc/default/grub",
        b"GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n\
          GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
          GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"console=ttyS0,115200\"\n",
        0o644,
    )?;
    put(
        root,
        "boot/grub/grub.cfg",
        format!(
            "menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class os {{\n\
             \tinsmod ext2\n\tset root='hd0,msdos1'\n\
             \tlinux\t/boot/vmlinuz-{v} root=/dev/sda1 ro console=ttyS0,115200 quiet\n\
             \tinitrd\t/boot/initrd.img-{v}\n}}\n"
        )
        .as_bytes(),
        0o644,
    )?;
    for f in [
        "boot/grub/i386-pc/normal.mod",
        "usr/lib/grub/i386-pc/normal.mod",
        "usr/lib/grub/i386-pc/boot.img",
    ] {
        put(root, f, b"", 0o644)?;
    }
    put(root, &format!("boot/vmlinuz-{v}"), b"kernel image\n", 0o644)?;
    put(
        root,
        &format!("boot/config-{v}"),
        b"CONFIG_X86_64=y\n",
        0o644,
    )?;
    put(root, &format!("boot/System.map-{v}"), b"", 0o644)?;
    put(
        root,
        &format!("lib/modules/{v}/modules.dep"),
        b"kernel/drivers/scsi/vmw_pvscsi.ko:\n\
          kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko\n\
          kernel/drivers/scsi/scsi_mod.ko:\n\
          kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
          kernel/fs/mbcache.ko:\nkernel/fs/jbd2/jbd2.ko:\n\
          kernel/drivers/net/vmxnet3/vmxnet3.ko:\n\
          kernel/drivers/block/virtio_blk.ko:\n",
        0o644,
    )?;
    put(
        root,
        &format!("lib/modules/{v}/modules.builtin"),
        b"",
        0o644,
    )?;
    let modules = format!("usr/lib/modules/{v}");
    let image = initramfs(&[
        (&format!("{modules}/kernel/fs/ext4/ext4.ko"), b"\x7fELF"),
        (
            &format!("{modules}/kernel/drivers/block/virtio_blk.ko"),
            b"\x7fELF",
        ),
        (&format!("{modules}/modules.dep"), b""),
        ("init", b"#!/bin/sh\nexec /sbin/init\n"),
    ])?;
    put(root, &format!("boot/initrd.img-{v}"), &image, 0o644)?;
    link(root, "vmlinuz", &format!("boot/vmlinuz-{v}"))?;
    link(root, "initrd.img", &format!("boot/initrd.img-{v}"))?;
    put(
        root,
        "etc/initramfs-tools/initramfs.conf",
        b"MODULES=dep\nBUSYBOX=auto\nCOMPRESS=gzip\n",
        0o644,
    )?;
    put(
        root,
        "etc/initramfs-tools/modules",
        b"# List of modules that you want to include in your initramfs.\nvirtio_blk\n",
        0o644,
    )?;
    link(
        root,
        "etc/systemd/system/default.target",
        "/lib/systemd/system/multi-user.target",
    )?;
    put(
        root,
        "lib/systemd/system/multi-user.target",
        b"[Unit]\n",
        0o644,
    )?;
    Ok(())
}

/// The three input files for this guest, in `dir`.
fn write_inputs(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let disks = json!({
        "version": 1,
        "disks": [{
            "sourceDevice": "/dev/sda",
            "target": { "controller": "scsi0", "unit": 0 },
            "capacityBytes": GUEST_MIB << 20,
            "boot": true,
            "partitions": [{
                "number": 1, "sourceDevice": "/dev/sda1", "fsType": "ext4",
                "sourceUuid": ROOT_UUID, "targetUuid": ROOT_UUID, "mountPoint": "/"
            }]
        }]
    });
    let files = [
        (
            manager::SYSTEM_CONFIGURATION,
            manager::system_configuration(Arch::X86_64, "rescue-shell-1"),
        ),
        (manager::REPLICA_DISK_MAP, disks),
        (
            manager::NETWORK_INTERFACE_MAP,
            manager::network_interface_map(),
        ),
    ];
    let mut paths = Vec::new();
    for (name, value) in files {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(&value)?)?;
        paths.push(p);
    }
    Ok(paths)
}

// ------------------------------------------------------------ the shell

/// The rescue shell on the serial console.
struct Shell<'a> {
    vm: &'a mut Vm,
    console: SerialConsole,
    n: u32,
}

/// What one command printed (its echo left out) and its exit status.
struct Typed {
    output: String,
    rc: i32,
}

impl Shell<'_> {
    /// Types `command; echo =rc=$?=<tag>=` and waits for the tag (the
    /// typed `$((1000+n))` is not the printed number).
    fn run(&mut self, command: &str) -> Result<Typed> {
        self.n += 1;
        let tag = 1000 + self.n;
        let line = format!("{command}; echo \"=rc=$?=$(({tag}+0))=\"");
        ensure!(
            line.len() + 6 < 80,
            "`{line}` would wrap on the console: keep commands short"
        );
        let t0 = Instant::now();
        let text = self.vm.shell(
            &mut self.console,
            &line,
            &format!("={tag}="),
            COMMAND_TIMEOUT,
        )?;
        // The echo of the typed line comes first.
        let after_echo = text
            .find(&line)
            .map_or(text.as_str(), |at| &text[at + line.len()..]);
        let (output, rc) = after_echo
            .rsplit_once("=rc=")
            .with_context(|| format!("no exit status after `{command}`:\n{text}"))?;
        let rc: i32 = rc
            .split('=')
            .next()
            .and_then(|r| r.parse().ok())
            .with_context(|| format!("no exit status after `{command}`:\n{text}"))?;
        eprintln!("osam# {command}  -> exit {rc} in {:.1?}", t0.elapsed());
        Ok(Typed {
            output: output.to_string(),
            rc,
        })
    }

    /// [`Shell::run`], the exit status checked and the output holding
    /// every one of `want`.
    fn expect(&mut self, command: &str, rc: i32, want: &[&str]) -> Result<String> {
        let t = self.run(command)?;
        ensure!(
            t.rc == rc,
            "`{command}` exited {} (expected {rc}):\n{}",
            t.rc,
            t.output
        );
        for w in want {
            ensure!(
                t.output.contains(w),
                "`{command}` printed no {w:?}:\n{}",
                t.output
            );
        }
        Ok(t.output)
    }
}

// ------------------------------------------------------------ the test

#[test]
fn x86_64_rescue_shell_mounts_fixes_undoes_and_releases_the_guest() -> Result<()> {
    let t0 = Instant::now();
    let image = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    eprintln!(
        "image {} ready in {:.1?}",
        image.dir.display(),
        t0.elapsed()
    );
    let work = tempfile::Builder::new()
        .prefix("osam-rescue-shell-")
        .tempdir()?;
    let w = work.path();

    let tree = w.join("tree");
    debian_tree(&tree)?;
    let guest = w.join("guest.raw");
    rawdisk::make_ext4_disk(
        &Ext4Disk {
            tree: &tree,
            size_mib: GUEST_MIB,
            uuid: ROOT_UUID,
            label: "debian-root",
        },
        &guest,
        w,
    )?;
    let stack = w.join("osam-fixup-x86_64.raw");
    std::fs::copy(&image.raw, &stack)
        .with_context(|| format!("copying {}", image.raw.display()))?;
    let inputs = write_inputs(&w.join("inputs"))?;
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    esp::put(&stack, &refs, "::/fixup/")?;
    eprintln!("disks ready in {:.1?}", t0.elapsed());

    let drive = |unit: u8, path: &Path, bootindex: Option<u32>| Drive {
        unit,
        path: path.to_path_buf(),
        format: "raw".into(),
        // The guest's writes must reach the files: they are checked.
        snapshot: false,
        bootindex,
    };
    let config = VmConfig::machine(
        Arch::X86_64,
        Firmware::SeaBios,
        vec![Controller {
            id: "pvscsi0".into(),
            model: ControllerModel::Pvscsi,
            drives: vec![drive(0, &guest, None), drive(15, &stack, Some(0))],
        }],
        w.join("serial.log"),
    )
    .memory(512)
    .interactive_serial(w.join("serial.sock"))
    .args(["-nic", "none"]);
    let mut vm = Vm::start(&config).context("starting QEMU")?;
    let outcome = in_the_shell(&mut vm);
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
    eprintln!("VM ran {:.1?}", vm.elapsed());
    outcome?;

    // The guest's file system as the host sees it after the power-off.
    let part = w.join("root.ext4");
    rawdisk::read_partition(&guest, &part)?;
    rawdisk::e2fsck_clean(&part)?;
    let fstab = rawdisk::debugfs(&part, "cat /etc/fstab")?;
    ensure!(
        fstab == FSTAB.as_bytes(),
        "the guest's fstab is not as before after undo:\n{}",
        String::from_utf8_lossy(&fstab)
    );
    let data =
        String::from_utf8_lossy(&rawdisk::debugfs(&part, "ls -p /opt/vmware/hcx/osam/data")?)
            .into_owned();
    ensure!(
        data.contains("/manifest.undone.json/"),
        "undo left no manifest.undone.json:\n{data}"
    );

    // The bundle on the ESP, which was unmounted cleanly.
    let names = esp::names(&stack, "::/fixup")?;
    let bundle = names
        .iter()
        .find(|n| n.starts_with("osam-collect-") && n.ends_with(".tar.gz"))
        .with_context(|| format!("no osam-collect-*.tar.gz on the ESP: {names:?}"))?;
    let local = w.join(bundle);
    esp::get(&stack, &format!("::/fixup/{bundle}"), &local)?;
    let listing = std::process::Command::new("tar")
        .arg("tzf")
        .arg(&local)
        .output()
        .context("running tar")?;
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for want in ["/run/rescue.json", "/run/state.json", "/collect.txt"] {
        ensure!(listing.contains(want), "{bundle} lacks {want}:\n{listing}");
    }
    ensure!(
        esp::is_clean(&stack)?,
        "the ESP was not unmounted cleanly (its FAT32 dirty flag is set)"
    );
    eprintln!("done in {:.1?}", t0.elapsed());
    Ok(())
}

/// From GRUB's menu to the power-off.
fn in_the_shell(vm: &mut Vm) -> Result<()> {
    let mut console = vm.serial_console()?;
    // GRUB's menu: one step down to "OSAM rescue shell", Enter.
    vm.grub_select(&mut console, 1, "OSAM rescue shell", BOOT_TIMEOUT)?;
    let menu_at = vm.elapsed();
    let marks = vm.console_marks(&console);
    let boot = vm.wait_for_console(&console, marks, "osam# ", BOOT_TIMEOUT)?;
    eprintln!(
        "GRUB menu at {menu_at:.1?}, `osam# ` at {:.1?}",
        vm.elapsed()
    );
    // The kernel names the disks in the order it finds them (the stack's
    // may come first): the banner says which is which.
    let disks = boot
        .lines()
        .find_map(|l| l.split("guest disks: ").nth(1))
        .with_context(|| format!("the banner names no guest disks:\n{boot}"))?;
    let (guest, stack) = disks
        .trim()
        .strip_suffix(')')
        .and_then(|d| d.split_once(" (the stack's own: "))
        .with_context(|| format!("the banner's disks: {disks:?}"))?;
    ensure!(
        !guest.contains(' ') && !stack.contains(' '),
        "expected one guest disk and one stack disk: {disks:?}"
    );
    let root = format!("/dev/{guest}1");
    for want in [
        "OSAM rescue mode",
        "the guest is mounted READ-ONLY at /sysroot",
        &format!("{root} on /sysroot (ext4, noload), read-only"),
        "copied to /tmp/fixup: network-interface-map.json replica-disk-map.json \
         system-configuration.json",
    ] {
        ensure!(boot.contains(want), "the banner lacks {want:?}:\n{boot}");
    }
    // Let the shell settle (the prompt may be printed twice on ttyS0
    // while PID 1 still logs).
    std::thread::sleep(Duration::from_secs(1));
    let mut sh = Shell { vm, console, n: 0 };

    sh.expect(
        "fixupctl status",
        0,
        &[
            "PID 1: rescue: no fixup runs",
            "stage-1 lock: free",
            "mounted READ-ONLY at /sysroot",
        ],
    )?;
    let t = sh.run("touch /sysroot/osam-probe")?;
    ensure!(
        t.rc != 0 && t.output.contains("Read-only file system"),
        "a write to the read-only guest did not fail (exit {}):\n{}",
        t.rc,
        t.output
    );
    sh.expect(
        "fixupctl plan",
        0,
        &[
            "--- a/etc/fstab",
            "-/dev/sda1 / ext4 errors=remount-ro 0 1",
            &format!("+UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1"),
        ],
    )?;
    sh.expect(
        "fixupctl run",
        2,
        &[
            "/sysroot is mounted read-only",
            "`fixupctl mount --rw` first",
        ],
    )?;
    sh.expect(
        "fixupctl mount --rw",
        0,
        &[
            &format!("unmounted {root} on /sysroot (ext4, noload), read-only"),
            "mounted READ-WRITE at /sysroot",
            &format!("  {root} on /sysroot (ext4)\n"),
            "the stack's /dev /proc /sys /run bound in",
        ],
    )?;
    sh.expect("fixupctl run --no-commands", 0, &["success: "])?;
    sh.expect(
        "cat /sysroot/etc/fstab",
        0,
        &[&format!("UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1")],
    )?;
    sh.expect(
        "fixupctl undo",
        0,
        &["restored /etc/fstab", " 0 problem(s)"],
    )?;
    let fstab = sh.expect("cat /sysroot/etc/fstab", 0, &["/dev/sda1 / ext4"])?;
    ensure!(
        !fstab.contains("UUID="),
        "undo left UUID= in fstab:\n{fstab}"
    );
    // A shell inside the guest keeps it busy: nothing is released, and
    // the shell is named.
    sh.expect(
        "cd /sysroot/etc; fixupctl umount",
        1,
        &[
            "/sysroot is busy: used by sh (pid ",
            "working directory /sysroot/etc",
            "`cd /`",
        ],
    )?;
    sh.expect(
        "cd /; fixupctl status",
        0,
        &["mounted READ-WRITE at /sysroot"],
    )?;
    sh.expect("fixupctl collect --out /tmp", 0, &["/tmp/osam-collect-"])?;
    sh.expect(
        "tar tzf /tmp/osam-collect-*.tar.gz",
        0,
        &["/run/rescue.json", "/fixup/result.json", "/collect.txt"],
    )?;
    sh.expect(
        "fixupctl collect",
        0,
        &["/run/osam/esp/fixup/osam-collect-"],
    )?;
    sh.expect(
        "fixupctl umount",
        0,
        &[
            &format!("unmounted {root} on /sysroot (ext4)"),
            "released: ",
        ],
    )?;
    sh.expect(
        "fixupctl status",
        0,
        &["NOT mounted: released by fixupctl umount"],
    )?;
    sh.console.send_line("poweroff -f")?;
    let status = sh.vm.wait_exit(Duration::from_secs(60), "the power-off")?;
    eprintln!("powered off at {:.1?} ({status})", sh.vm.elapsed());
    if !status.success() {
        bail!("QEMU ended with {status}");
    }
    Ok(())
}
