//! Fixture guests: debian_family (see the parent file for the harness).
//!
//! Ubuntu 14.04 to 24.04, Debian 7 to 12 and SLES 12, from physical
//! servers (one on an HP Smart Array), Hyper-V, Azure, Proxmox VE,
//! VirtualBox, Nutanix AHV and KVM. Each guest goes through the shared
//! checks ([`check_guest`], with the guest's own firmware, BIOS or UEFI,
//! on both sides) and then through [`run_again`], which runs it once more
//! (with the system configuration patched where a test says so) to
//! assert what the shared checks do not look at, and undoes that run too.

use super::*;
use common::cpio_newc;
use std::io::Read;
use std::path::PathBuf;

// ---------------------------------------------------------------------------
// Helpers of this family

/// `modules.dep` text: each entry is "module dependency …", paths under
/// `lib/modules/<v>/` without the extension `ext`.
fn dep(ext: &str, entries: &[&str]) -> String {
    entries
        .iter()
        .map(|e| {
            let mut words = e.split_whitespace();
            let module = words.next().unwrap();
            let deps: Vec<String> = words.map(|d| format!("{d}{ext}")).collect();
            if deps.is_empty() {
                format!("{module}{ext}:\n")
            } else {
                format!("{module}{ext}: {}\n", deps.join(" "))
            }
        })
        .collect()
}

/// `modules.builtin` text (paths without `.ko`).
fn builtin(entries: &[&str]) -> String {
    entries.iter().map(|e| format!("{e}.ko\n")).collect()
}

/// One installed kernel of a guest.
struct Kernel<'a> {
    version: &'a str,
    /// `lib/modules` or `usr/lib/modules`.
    modules_dir: &'a str,
    config: &'a str,
    dep: String,
    builtin: String,
    /// The initrd's path and bytes.
    initrd: (String, Vec<u8>),
}

fn install_kernel(t: &Tree, k: Kernel) {
    let v = k.version;
    t.file(&format!("boot/vmlinuz-{v}"), "kernel image\n");
    t.file(&format!("boot/config-{v}"), k.config);
    t.file(&format!("boot/System.map-{v}"), "");
    t.file(&format!("{}/{v}/modules.dep", k.modules_dir), &k.dep);
    t.file(
        &format!("{}/{v}/modules.builtin", k.modules_dir),
        &k.builtin,
    );
    t.file(&format!("{}/{v}/modules.order", k.modules_dir), "");
    t.bytes(&k.initrd.0, &k.initrd.1);
}

/// An Ubuntu 20.04+ style initrd: an uncompressed early cpio with CPU
/// microcode (padded to 512 bytes as `cpio -H newc` does), then the main
/// archive compressed with zstd.
fn early_microcode_zstd_initrd(v: &str, modules: &[&str]) -> Vec<u8> {
    let gz = initramfs_image(v, modules);
    let mut main = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut main)
        .unwrap();
    let mut out = cpio_newc(&[
        ("kernel", None),
        ("kernel/x86", None),
        ("kernel/x86/microcode", None),
        (
            "kernel/x86/microcode/AuthenticAMD.bin",
            Some(b"\x01\x00\x00\x00 amd microcode"),
        ),
        (
            "kernel/x86/microcode/GenuineIntel.bin",
            Some(b"\x01\x00\x00\x00 intel microcode"),
        ),
    ]);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend(ruzstd::encoding::compress_to_vec(
        &main[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    ));
    out
}

/// Debian before merged /usr: /bin/sh, and /sbin/init as given.
fn split_usr(t: &Tree) {
    t.elf_x86_64("bin/sh");
    t.dir("usr/bin").dir("usr/sbin").dir("lib").dir("sbin");
}

/// systemd on a split-/usr Debian or Ubuntu.
fn split_usr_systemd(t: &Tree) {
    split_usr(t);
    t.tools(&["lib/systemd/systemd", "bin/systemctl"]);
    t.link("sbin/init", "/lib/systemd/systemd");
    for target in ["multi-user", "graphical", "rescue"] {
        t.file(&format!("lib/systemd/system/{target}.target"), "[Unit]\n");
    }
    t.link(
        "etc/systemd/system/default.target",
        "/lib/systemd/system/multi-user.target",
    );
}

/// systemd on a merged-/usr guest (the parent's `merged_usr`, plus the
/// targets).
fn merged_usr_systemd(t: &Tree) {
    merged_usr(t);
    t.tools(&["usr/bin/systemctl"]);
    for target in ["multi-user", "graphical", "rescue"] {
        t.file(
            &format!("usr/lib/systemd/system/{target}.target"),
            "[Unit]\n",
        );
    }
    t.link(
        "etc/systemd/system/default.target",
        "/lib/systemd/system/multi-user.target",
    );
}

/// initramfs-tools and GRUB 2 as Debian and Ubuntu install them.
fn debian_tools(t: &Tree) {
    t.tools(&[
        "usr/sbin/update-initramfs",
        "usr/sbin/mkinitramfs",
        "usr/sbin/grub-mkconfig",
        "usr/sbin/grub-install",
        "usr/sbin/grub-probe",
        "usr/sbin/update-grub",
    ]);
}

const INITRAMFS_MODULES_HEAD: &str = "# List of modules that you want to include in your initramfs.\n\
# They will be loaded at boot time in the order below.\n#\n\
# Syntax:  module_name [args ...]\n#\n\
# You must run update-initramfs(8) to effect this change.\n#\n\
# Examples:\n#\n# raid1\n# sd_mod\n";

fn initramfs_conf(modules: &str, compress: &str) -> String {
    format!(
        "#\n# initramfs.conf\n# Configuration file for mkinitramfs(8). See initramfs.conf(5).\n#\n\
         # Note that configuration options from this file can be overridden\n\
         # by config files in the /etc/initramfs-tools/conf.d directory.\n\n\
         #\n# MODULES: [ most | netboot | dep | list ]\n#\n\
         # most - Add most filesystem and all harddrive drivers.\n#\n\
         # dep - Try and guess which modules to load.\n#\n\
         # netboot - Add the base modules, network modules, but skip block devices.\n#\n\
         # list - Only include modules from the 'additional modules' list\n#\n\n\
         MODULES={modules}\n\n\
         #\n# BUSYBOX: [ y | n | auto ]\n#\n\nBUSYBOX=auto\n\n\
         #\n# COMPRESS: [ gzip | bzip2 | lz4 | lzma | lzop | xz | zstd ]\n#\n\n\
         COMPRESS={compress}\n\n\
         #\n# NFS Section of the config.\n#\n\nDEVICE=\nNFSROOT=auto\n\n\
         #\n# RUNSIZE: [ \"size\" | \"10%\" ]\n#\n\nRUNSIZE=10%\n"
    )
}

const DEBIAN_FSTAB_HEAD: &str = "# /etc/fstab: static file system information.\n#\n\
# Use 'blkid' to print the universally unique identifier for a\n\
# device; this may be used with UUID= as a more robust way to name devices\n\
# that works even if disks are added and removed. See fstab(5).\n#\n";

const FSTAB_COLUMNS: &str =
    "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n";

const DEFAULT_GRUB_HEAD: &str = "# If you change this file, run 'update-grub' afterwards to update\n\
# /boot/grub/grub.cfg.\n\
# For full documentation of the options in this file, see:\n\
#   info -f grub -n 'Simple configuration'\n\n";

/// A grub-mkconfig style grub.cfg with one entry for kernel `v`.
fn grub_cfg(distributor: &str, class: &str, v: &str, search: &str, cmdline: &str) -> String {
    format!(
        "#\n# DO NOT EDIT THIS FILE\n#\n\
         # It is automatically generated by grub-mkconfig using templates\n\
         # from /etc/grub.d and settings from /etc/default/grub\n#\n\n\
         ### BEGIN /etc/grub.d/10_linux ###\n\
         menuentry '{distributor}' --class {class} --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple' {{\n\
         \trecordfail\n\tload_video\n\tinsmod gzio\n\
         \t{search}\n\
         \techo\t'Loading Linux {v} ...'\n\
         \tlinux\t/boot/vmlinuz-{v} {cmdline}\n\
         \techo\t'Loading initial ramdisk ...'\n\
         \tinitrd\t/boot/initrd.img-{v}\n}}\n\
         ### END /etc/grub.d/10_linux ###\n"
    )
}

/// An EFI binary: a PE header and what it is.
fn efi_binary(what: &str) -> Vec<u8> {
    let mut b = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
    b.extend_from_slice(what.as_bytes());
    b
}

// ---------------------------------------------------------------------------
// One more run, for what the shared checks do not look at

/// What a run left behind.
struct Outcome {
    name: &'static str,
    root: PathBuf,
    res: Value,
    /// Every planned command's argv.
    cmds: Vec<Vec<String>>,
}

impl Outcome {
    fn text(&self, path: &str) -> String {
        read(&self.root, path)
    }

    #[track_caller]
    fn has(&self, path: &str, needle: &str) {
        let t = self.text(path);
        assert!(
            t.contains(needle),
            "{}: /{path} lacks {needle:?}:\n{t}",
            self.name
        );
    }

    #[track_caller]
    fn lacks(&self, path: &str, needle: &str) {
        let t = self.text(path);
        assert!(
            !t.contains(needle),
            "{}: /{path} still has {needle:?}:\n{t}",
            self.name
        );
    }

    #[track_caller]
    fn exists(&self, path: &str, yes: bool) {
        assert_eq!(
            fs::symlink_metadata(self.root.join(path)).is_ok(),
            yes,
            "{}: /{path} {}",
            self.name,
            if yes {
                "is missing"
            } else {
                "should not exist"
            }
        );
    }

    /// A check left out because the engine is at fault (see its `// BUG:`
    /// comment), as the shared checks' `known_bugs`; it says when it holds.
    #[allow(dead_code)]
    fn known_bug(&self, what: &str, ok: bool) {
        if ok {
            eprintln!("[{}] known engine bug now fixed: {what}", self.name);
        } else {
            eprintln!("[{}] known engine bug, not asserted: {what}", self.name);
        }
    }

    #[track_caller]
    fn mode(&self, path: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let m = fs::metadata(self.root.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(m, mode, "{}: mode of /{path}: {m:o}", self.name);
    }

    fn link(&self, path: &str) -> String {
        fs::read_link(self.root.join(path))
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// Whether a planned command is exactly `argv`.
    #[track_caller]
    fn ran(&self, argv: &[&str]) {
        assert!(
            self.cmds.iter().any(|c| c == argv),
            "{}: no command {argv:?} in {:#?}",
            self.name,
            self.cmds
        );
    }

    /// Whether no planned command's program ends with `program`.
    #[track_caller]
    fn not_ran(&self, program: &str) {
        assert!(
            !self.cmds.iter().any(|c| c[0].ends_with(program)),
            "{}: unexpected {program} in {:#?}",
            self.name,
            self.cmds
        );
    }

    /// Warning codes with their messages.
    fn warnings(&self) -> Vec<(String, String)> {
        self.res["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["code"].as_str().unwrap_or_default().to_string(),
                    w["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[track_caller]
    fn warned(&self, code: &str, about: &str) {
        assert!(
            self.warnings()
                .iter()
                .any(|(c, m)| c == code && m.contains(about)),
            "{}: no {code} warning about {about:?}: {:#?}",
            self.name,
            self.warnings()
        );
    }

    #[track_caller]
    fn not_warned(&self, code: &str, about: &str) {
        assert!(
            !self
                .warnings()
                .iter()
                .any(|(c, m)| c == code && m.contains(about)),
            "{}: unexpected {code} warning about {about:?}",
            self.name
        );
    }

    #[track_caller]
    fn step_summary(&self, id: &str, needle: &str) {
        let step = self.step(id);
        assert!(
            step["summary"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{}: step {id} lacks {needle:?}: {step:#}",
            self.name
        );
    }

    fn step(&self, id: &str) -> &Value {
        self.res["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{}: no step {id}", self.name))
    }

    #[track_caller]
    fn step_status(&self, id: &str, status: &str) {
        let step = self.res["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{}: no step {id}", self.name));
        assert_eq!(step["status"], status, "{}: step {id}: {step:#}", self.name);
    }
}

/// Runs `g` once more with the system configuration patched by `patch`,
/// requires success, hands the outcome to `check`, then undoes the run and
/// requires the tree to be byte for byte what it was.
fn run_again(g: &Guest, patch: impl FnOnce(&mut Value), check: impl FnOnce(&Outcome)) {
    let sysroot = tempfile::tempdir().unwrap();
    let fixup = tempfile::tempdir().unwrap();
    let root = sysroot.path();
    (g.build)(&Tree::new(root));
    write_inputs(fixup.path(), g);
    let sys_path = fixup.path().join("system-configuration.json");
    let mut sys: Value = serde_json::from_slice(&fs::read(&sys_path).unwrap()).unwrap();
    patch(&mut sys);
    fs::write(&sys_path, serde_json::to_vec_pretty(&sys).unwrap()).unwrap();
    let before = snapshot(root);

    let out = Command::new(FIXUPCTL)
        .args(["run", "--no-commands", "--sysroot"])
        .arg(root)
        .arg("--fixup-dir")
        .arg(fixup.path())
        .output()
        .unwrap();
    let res: Value =
        serde_json::from_slice(&fs::read(fixup.path().join("result.json")).unwrap()).unwrap();
    assert!(
        out.status.success() && res["status"] == "success",
        "{}: the second run failed: {out:?}\n{res:#}",
        g.name
    );
    let cmds = res["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["commands"].as_array().unwrap())
        .map(|c| {
            c["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    check(&Outcome {
        name: g.name,
        root: root.to_path_buf(),
        res,
        cmds,
    });

    let out = Command::new(FIXUPCTL)
        .args(["undo", "--sysroot"])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: undo: {out:?}", g.name);
    let d = diff(&before, &snapshot(root));
    assert!(d.is_empty(), "{}: after undo:\n{}", g.name, d.join("\n"));
}

/// Leaves the system configuration as `write_inputs` writes it.
fn as_written(_: &mut Value) {}

/// A source said to boot with BIOS moved to a BIOS target (whatever the
/// guest is).
fn bios_to_bios(sys: &mut Value) {
    sys["source"]["firmware"] = json!("bios");
    sys["target"]["firmware"] = json!("bios");
}

/// A UEFI source moved to a UEFI target.
fn efi_to_efi(sys: &mut Value) {
    sys["source"]["firmware"] = json!("efi");
    sys["target"]["firmware"] = json!("efi");
}

// ---------------------------------------------------------------------------
// Ubuntu 14.04: a physical Dell server (P2V), upstart, two kernels

/// The newest kernel: trusty's HWE kernel from xenial.
const U1404_K: &str = "4.4.0-148-generic";
/// trusty's own (GA) kernel, still installed.
const U1404_K_GA: &str = "3.13.0-170-generic";
const U1404_ROOT: &str = "b7e6a1d4-3c2f-4e8a-9d51-0f6c2b8a4e13";
const U1404_SWAP: &str = "5d0c8f27-61ab-4b3e-8f9c-2e7d1a6b9c04";
const U1404_SRV_SRC: &str = "2f8e4c1a-7b3d-4a96-8e05-c1d2e3f4a5b6";
const U1404_SRV_TGT: &str = "e3a9d6b2-0c4f-4187-b2d8-6f5e4d3c2b1a";
const U1404_MAC: &str = "00:26:b9:4f:1a:60";
/// The server's second onboard port, not migrated.
const U1404_MAC2: &str = "00:26:b9:4f:1a:62";

fn ubuntu_kernel(t: &Tree, modules_dir: &str, v: &str, ext: &str, extra_builtin: &[&str]) {
    let mut b = vec![
        "kernel/fs/ext4/ext4",
        "kernel/fs/jbd2/jbd2",
        "kernel/fs/mbcache",
        "kernel/drivers/scsi/scsi_mod",
        "kernel/drivers/scsi/sd_mod",
    ];
    b.extend_from_slice(extra_builtin);
    install_kernel(
        t,
        Kernel {
            version: v,
            modules_dir,
            config: "CONFIG_X86_64=y\nCONFIG_EXT4_FS=y\nCONFIG_BLK_DEV_SD=y\n\
                     CONFIG_VMWARE_PVSCSI=m\nCONFIG_VMXNET3=m\nCONFIG_BLK_DEV_DM=m\n",
            dep: dep(
                ext,
                &[
                    "kernel/drivers/scsi/vmw_pvscsi",
                    "kernel/drivers/net/vmxnet3/vmxnet3",
                    "kernel/drivers/md/dm-mod",
                    "kernel/drivers/scsi/megaraid/megaraid_sas",
                    "kernel/drivers/net/ethernet/broadcom/bnx2",
                    "kernel/drivers/hv/hv_vmbus",
                    "kernel/drivers/scsi/hv_storvsc kernel/drivers/hv/hv_vmbus",
                    "kernel/drivers/net/hyperv/hv_netvsc kernel/drivers/hv/hv_vmbus",
                    "kernel/drivers/block/virtio_blk",
                    "kernel/fs/xfs/xfs kernel/lib/libcrc32c",
                    "kernel/lib/libcrc32c",
                ],
            ),
            builtin: builtin(&b),
            initrd: (
                format!("boot/initrd.img-{v}"),
                initramfs_image(
                    v,
                    &[
                        &format!("kernel/drivers/scsi/megaraid/megaraid_sas{ext}"),
                        &format!("kernel/drivers/net/ethernet/broadcom/bnx2{ext}"),
                        &format!("kernel/drivers/md/dm-mod{ext}"),
                    ],
                ),
            ),
        },
    );
}

fn ubuntu1404(t: &Tree) {
    // Split /usr; upstart is /sbin/init itself.
    split_usr(t);
    t.tools(&["sbin/init", "sbin/initctl", "sbin/runlevel"]);
    t.file(
        "etc/init/rc-sysinit.conf",
        "# rc-sysinit - System V initialisation compatibility\n#\n\
         # This task runs the old System V-style system initialisation scripts,\n\
         # and enters the default runlevel when finished.\n\n\
         description\t\"System V initialisation compatibility\"\n\n\
         start on (filesystem and static-network-up) or failsafe-boot\nstop on runlevel\n\n\
         # Default runlevel, this may be overriden on the kernel command-line\n\
         # or by faking an old /etc/inittab entry\nenv DEFAULT_RUNLEVEL=2\n\n\
         emits runlevel\n\nconsole output\nenv INIT_VERBOSE\n\ntask\n\n\
         script\n    [ -n \"${FROM_SINGLE_USER_MODE}\" ] || /etc/init.d/rcS\n\
         \x20   telinit \"${DEFAULT_RUNLEVEL}\"\nend script\n",
    );
    t.file(
        "etc/init/rc.conf",
        "start on runlevel [0123456]\nstop on runlevel [!$RUNLEVEL]\n\nexport RUNLEVEL\n\
         console output\nenv INIT_VERBOSE\n\ntask\n\nexec /etc/init.d/rc $RUNLEVEL\n",
    );
    t.tools(&[
        "etc/init.d/rc",
        "etc/init.d/rcS",
        "etc/init.d/killprocs",
        "etc/init.d/single",
    ]);
    t.link("etc/rc1.d/S30killprocs", "../init.d/killprocs");
    t.link("etc/rc1.d/S90single", "../init.d/single");
    t.link("etc/rc2.d/S99rc.local", "../init.d/rc.local");
    t.file(
        "etc/os-release",
        "NAME=\"Ubuntu\"\nVERSION=\"14.04.6 LTS, Trusty Tahr\"\nID=ubuntu\nID_LIKE=debian\n\
         PRETTY_NAME=\"Ubuntu 14.04.6 LTS\"\nVERSION_ID=\"14.04\"\n\
         HOME_URL=\"http://www.ubuntu.com/\"\nSUPPORT_URL=\"http://help.ubuntu.com/\"\n\
         BUG_REPORT_URL=\"http://bugs.launchpad.net/ubuntu/\"\n",
    );
    t.file("etc/debian_version", "jessie/sid\n");
    t.file(
        "etc/lsb-release",
        "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=14.04\nDISTRIB_CODENAME=trusty\n\
         DISTRIB_DESCRIPTION=\"Ubuntu 14.04.6 LTS\"\n",
    );
    t.file(
        "etc/fstab",
        &format!(
            "{DEBIAN_FSTAB_HEAD}{FSTAB_COLUMNS}proc            /proc           proc    nodev,noexec,nosuid 0       0\n\
             # / was on /dev/sda1 during installation\n\
             UUID={U1404_ROOT} /               ext4    errors=remount-ro 0       1\n\
             # swap was on /dev/sda5 during installation\n\
             UUID={U1404_SWAP} none            swap    sw              0       0\n\
             /dev/sdb1\t/srv\text4\tdefaults,noatime\t0\t2\n"
        ),
    );
    t.file(
        "etc/network/interfaces",
        "# This file describes the network interfaces available on your system\n\
         # and how to activate them. For more information, see interfaces(5).\n\n\
         # The loopback network interface\nauto lo\niface lo inet loopback\n\n\
         # Source interfaces\n\
         # Please check /etc/network/interfaces.d before changing this file\n\
         # as interfaces may have been defined in /etc/network/interfaces.d\n\
         source /etc/network/interfaces.d/*.cfg\n",
    );
    t.file(
        "etc/network/interfaces.d/eth0.cfg",
        &format!(
            "# The primary network interface\nauto eth0\niface eth0 inet static\n\
             \x20   address 10.1.20.34\n    netmask 255.255.255.0\n    gateway 10.1.20.1\n\
             \x20   hwaddress ether {U1404_MAC}\n\
             \x20   dns-nameservers 10.1.20.5 10.1.20.6\n    dns-search corp.example.com\n"
        ),
    );
    // Not matched by `*.cfg`: ifupdown never reads it.
    t.file(
        "etc/network/interfaces.d/eth0.cfg.dpkg-old",
        &format!("auto eth0\niface eth0 inet dhcp\n    hwaddress ether {U1404_MAC}\n"),
    );
    t.file(
        "etc/udev/rules.d/70-persistent-net.rules",
        &format!(
            "# This file was automatically generated by the /lib/udev/write_net_rules\n\
             # program, run by the persistent-net-generator.rules rules file.\n#\n\
             # You can modify it, as long as you keep each rule on a single\n\
             # line, and change only the value of the NAME= key.\n\n\
             # PCI device 0x14e4:0x1639 (bnx2)\n\
             SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{{address}}==\"{U1404_MAC}\", ATTR{{dev_id}}==\"0x0\", ATTR{{type}}==\"1\", KERNEL==\"eth*\", NAME=\"eth0\"\n\n\
             # PCI device 0x14e4:0x1639 (bnx2)\n\
             SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{{address}}==\"{U1404_MAC2}\", ATTR{{dev_id}}==\"0x0\", ATTR{{type}}==\"1\", KERNEL==\"eth*\", NAME=\"eth1\"\n"
        ),
    );
    t.file(
        "etc/default/grub",
        &format!(
            "{DEFAULT_GRUB_HEAD}GRUB_DEFAULT=0\nGRUB_HIDDEN_TIMEOUT=0\nGRUB_HIDDEN_TIMEOUT_QUIET=true\n\
             GRUB_TIMEOUT=10\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n\
             # iDRAC serial over LAN\n\
             GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS1,115200n8\"\n\n\
             # Uncomment to disable graphical terminal (grub-pc only)\n#GRUB_TERMINAL=console\n"
        ),
    );
    t.file(
        "boot/grub/grub.cfg",
        &grub_cfg(
            "Ubuntu",
            "ubuntu",
            U1404_K,
            &format!("search --no-floppy --fs-uuid --set=root {U1404_ROOT}"),
            &format!("root=UUID={U1404_ROOT} ro  console=tty0 console=ttyS1,115200n8"),
        ),
    );
    t.file("boot/grub/i386-pc/normal.mod", "");
    t.file("boot/grub/grubenv", &grubenv(""));
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    ubuntu_kernel(t, "lib/modules", U1404_K_GA, ".ko", &[]);
    ubuntu_kernel(t, "lib/modules", U1404_K, ".ko", &[]);
    t.link("vmlinuz", &format!("boot/vmlinuz-{U1404_K}"));
    t.link("initrd.img", &format!("boot/initrd.img-{U1404_K}"));
    t.link("vmlinuz.old", &format!("boot/vmlinuz-{U1404_K_GA}"));
    t.file(
        "etc/initramfs-tools/initramfs.conf",
        &initramfs_conf("most", "gzip"),
    );
    t.file("etc/initramfs-tools/modules", INITRAMFS_MODULES_HEAD);
    debian_tools(t);
    t.file("etc/hostname", "db02\n");
}

fn ubuntu1404_guest() -> Guest {
    Guest {
        name: "Ubuntu 14.04 from a physical server",
        kernel: U1404_K,
        build: ubuntu1404,
        os_family: "debian",
        os_version: "14.04",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 146163105792u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "ext4",
                  "sourceUuid": U1404_ROOT, "targetUuid": U1404_ROOT, "mountPoint": "/" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "" },
                { "number": 5, "sourceDevice": "/dev/sda5", "fsType": "swap",
                  "sourceUuid": U1404_SWAP, "targetUuid": U1404_SWAP } ] },
            { "sourceDevice": "/dev/sdb", "target": { "controller": "scsi0", "unit": 1 },
              "capacityBytes": 599550590976u64, "boot": false,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sdb1", "fsType": "ext4",
                  "sourceUuid": U1404_SRV_SRC, "targetUuid": U1404_SRV_TGT, "mountPoint": "/srv" } ] }
        ]),
        nic: ("eth0", U1404_MAC),
        fstab_gone: &["/dev/sdb1"],
        fstab_has: &[
            "UUID=e3a9d6b2-0c4f-4187-b2d8-6f5e4d3c2b1a\t/srv\text4\tdefaults,noatime\t0\t2\n",
            "UUID=b7e6a1d4-3c2f-4e8a-9d51-0f6c2b8a4e13 /               ext4",
        ],
        net_files: &[
            "etc/network/interfaces.d/eth0.cfg",
            "etc/udev/rules.d/70-persistent-net.rules",
        ],
        net_renamed_from: &[],
        net_has_mac: true,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &[],
        initramfs_tool: "update-initramfs",
        mkconfig: "grub-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn ubuntu1404_upstart_interfaces_d_two_kernels_from_physical() {
    check_guest(ubuntu1404_guest());
    run_again(&ubuntu1404_guest(), as_written, |o| {
        // Both kernels get their initrd rebuilt, each named.
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", U1404_K]);
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", U1404_K_GA]);
        o.has(
            "etc/initramfs-tools/modules",
            "# Added by the OSAM fixup stack (VMware target):\nvmw_pvscsi\n",
        );
        // The sourced file is rewritten; what `*.cfg` does not match is not.
        o.has(
            "etc/network/interfaces.d/eth0.cfg",
            "hwaddress ether 00:50:56:9a:00:01\n",
        );
        o.has("etc/network/interfaces.d/eth0.cfg.dpkg-old", U1404_MAC);
        o.has(
            "etc/network/interfaces",
            "source /etc/network/interfaces.d/*.cfg\n",
        );
        // The old rule of eth0 is replaced; the unmigrated eth1 keeps its own.
        let rules = "etc/udev/rules.d/70-persistent-net.rules";
        o.lacks(rules, U1404_MAC);
        o.has(rules, &format!("ATTR{{address}}==\"{U1404_MAC2}\""));
        o.has(
            rules,
            "ATTR{address}==\"00:50:56:9a:00:01\", ATTR{type}==\"1\", NAME=\"eth0\"",
        );
        // Upstart: the run level lives in rc-sysinit.conf.
        o.has("etc/init/rc-sysinit.conf", "\nenv DEFAULT_RUNLEVEL=1\n");
        o.has(
            "opt/vmware/hcx/osam/data/rc-sysinit.conf",
            "\nenv DEFAULT_RUNLEVEL=2\n",
        );
        assert_eq!(
            o.link("etc/rc1.d/S00osam-stage2"),
            "/etc/init.d/osam-stage2"
        );
        o.exists("etc/init.d/osam-stage2", true);
        o.exists("etc/systemd/system/osam-stage2.service", false);
        // The iDRAC serial console is the user's own.
        o.has(
            "etc/default/grub",
            "GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS1,115200n8 net.ifnames=0 biosdevname=0\"\n",
        );
        o.ran(&["grub-install", "--target=i386-pc", "/dev/sda"]);
        o.ran(&["grub-mkconfig", "-o", "/boot/grub/grub.cfg"]);
    });
}

// ---------------------------------------------------------------------------
// Ubuntu 16.04: predictable names (ens160), LVM, /boot on ext2 in
// partition 1 and the PV in logical partition 5, NFS and CIFS mounts

const U1604_K: &str = "4.4.0-210-generic";
const U1604_BOOT_SRC: &str = "8c1e5f3a-2d7b-4e90-a6c4-3f2e1d0c9b8a";
const U1604_BOOT_TGT: &str = "41d7c2e9-b3a8-4f16-9e05-7a6b5c4d3e2f";
const U1604_MAC: &str = "00:0c:29:5f:a1:9c";
const U1604_NFS: &str =
    "nas01.corp.example.com:/export/home  /home  nfs  rw,hard,intr,_netdev  0  0\n";
const U1604_CIFS: &str = "//fs01.corp.example.com/projects /mnt/projects cifs credentials=/etc/samba/.projects.cred,uid=1000,gid=1000,iocharset=utf8,_netdev 0 0\n";

fn ubuntu1604(t: &Tree) {
    split_usr_systemd(t);
    t.file(
        "etc/os-release",
        "NAME=\"Ubuntu\"\nVERSION=\"16.04.7 LTS (Xenial Xerus)\"\nID=ubuntu\nID_LIKE=debian\n\
         PRETTY_NAME=\"Ubuntu 16.04.7 LTS\"\nVERSION_ID=\"16.04\"\n\
         HOME_URL=\"http://www.ubuntu.com/\"\nSUPPORT_URL=\"http://help.ubuntu.com/\"\n\
         BUG_REPORT_URL=\"http://bugs.launchpad.net/ubuntu/\"\n\
         VERSION_CODENAME=xenial\nUBUNTU_CODENAME=xenial\n",
    );
    t.file("etc/debian_version", "stretch/sid\n");
    t.file(
        "etc/lsb-release",
        "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=16.04\nDISTRIB_CODENAME=xenial\n\
         DISTRIB_DESCRIPTION=\"Ubuntu 16.04.7 LTS\"\n",
    );
    t.file(
        "etc/fstab",
        &format!(
            "{DEBIAN_FSTAB_HEAD}{FSTAB_COLUMNS}/dev/mapper/app01--vg-root /               ext4    errors=remount-ro 0       1\n\
             # /boot was on /dev/sda1 during installation\n\
             UUID={U1604_BOOT_SRC} /boot           ext2    defaults        0       2\n\
             /dev/mapper/app01--vg-swap_1 none            swap    sw              0       0\n\
             {U1604_NFS}{U1604_CIFS}"
        ),
    );
    t.file(
        "etc/network/interfaces",
        "# This file describes the network interfaces available on your system\n\
         # and how to activate them. For more information, see interfaces(5).\n\n\
         source /etc/network/interfaces.d/*\n\n\
         # The loopback network interface\nauto lo\niface lo inet loopback\n\n\
         # The primary network interface\nauto ens160\niface ens160 inet static\n\
         \taddress 10.20.30.41\n\tnetmask 255.255.255.0\n\tnetwork 10.20.30.0\n\
         \tbroadcast 10.20.30.255\n\tgateway 10.20.30.1\n\
         \t# dns-* options are implemented by the resolvconf package, if installed\n\
         \tdns-nameservers 10.20.30.2 10.20.30.3\n\tdns-search corp.example.com\n\
         \tup ip route add 172.16.0.0/12 via 10.20.30.254 dev ens160\n",
    );
    t.dir("etc/network/interfaces.d");
    t.file(
        "etc/default/grub",
        &format!(
            "{DEFAULT_GRUB_HEAD}GRUB_DEFAULT=0\nGRUB_HIDDEN_TIMEOUT=0\nGRUB_HIDDEN_TIMEOUT_QUIET=true\n\
             GRUB_TIMEOUT=10\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"\"\nGRUB_CMDLINE_LINUX=\"\"\n"
        ),
    );
    t.file(
        "boot/grub/grub.cfg",
        &grub_cfg(
            "Ubuntu",
            "ubuntu",
            U1604_K,
            &format!("search --no-floppy --fs-uuid --set=root {U1604_BOOT_SRC}"),
            "root=/dev/mapper/app01--vg-root ro",
        )
        .replace("/boot/vmlinuz", "/vmlinuz")
        .replace("/boot/initrd", "/initrd"),
    );
    t.file("boot/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    ubuntu_kernel(t, "lib/modules", U1604_K, ".ko", &[]);
    t.link("vmlinuz", &format!("boot/vmlinuz-{U1604_K}"));
    t.link("initrd.img", &format!("boot/initrd.img-{U1604_K}"));
    t.file(
        "etc/initramfs-tools/initramfs.conf",
        &initramfs_conf("most", "gzip"),
    );
    t.file("etc/initramfs-tools/modules", INITRAMFS_MODULES_HEAD);
    t.file(
        "etc/lvm/lvm.conf",
        "config {\n\tcheckpoints = 0\n}\ndevices {\n\tdir = \"/dev\"\n\tscan = [ \"/dev\" ]\n\
         \tobtain_device_list_from_udev = 1\n}\n",
    );
    debian_tools(t);
    t.tools(&["sbin/lvm", "sbin/mount.nfs", "sbin/mount.cifs"]);
}

fn ubuntu1604_guest() -> Guest {
    Guest {
        name: "Ubuntu 16.04 (LVM, ens160, NFS and CIFS)",
        kernel: U1604_K,
        build: ubuntu1604,
        os_family: "debian",
        os_version: "16.04",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 42949672960u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "ext2",
                  "sourceUuid": U1604_BOOT_SRC, "targetUuid": U1604_BOOT_TGT, "mountPoint": "/boot" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "" },
                { "number": 5, "sourceDevice": "/dev/sda5", "fsType": "LVM2_member",
                  "sourceUuid": "mE2Ld4-Tz0q-v1Xc-8RkP-cW3a-Qy6N-hB9sJf" } ] }
        ]),
        nic: ("ens160", U1604_MAC),
        fstab_gone: &[U1604_BOOT_SRC],
        fstab_has: &[
            "UUID=41d7c2e9-b3a8-4f16-9e05-7a6b5c4d3e2f /boot           ext2",
            "/dev/mapper/app01--vg-root /               ext4    errors=remount-ro 0       1\n",
            "/dev/mapper/app01--vg-swap_1 none",
            U1604_NFS,
            U1604_CIFS,
        ],
        net_files: &["etc/network/interfaces"],
        net_renamed_from: &[],
        net_has_mac: false,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &[],
        initramfs_tool: "update-initramfs",
        mkconfig: "grub-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn ubuntu1604_lvm_ens160_nfs_cifs() {
    check_guest(ubuntu1604_guest());
    run_again(&ubuntu1604_guest(), as_written, |o| {
        o.has("etc/fstab", &format!("\n{U1604_NFS}{U1604_CIFS}"));
        o.has(
            "etc/network/interfaces",
            "auto eth0\niface eth0 inet static\n\taddress 10.20.30.41\n",
        );
        o.has(
            "etc/network/interfaces",
            "\tup ip route add 172.16.0.0/12 via 10.20.30.254 dev eth0\n",
        );
        // A systemd guest: the name is also pinned by a .link file.
        o.has(
            "etc/systemd/network/10-osam-eth0.link",
            "MACAddress=00:50:56:9a:00:01\n",
        );
        assert_eq!(
            o.link("etc/systemd/system/default.target"),
            "/lib/systemd/system/rescue.target"
        );
        o.has(
            "opt/vmware/hcx/osam/data/systemd-default-target",
            "/lib/systemd/system/multi-user.target",
        );
        // The root is on LVM: device mapper goes into the initrd too.
        o.has("etc/initramfs-tools/modules", "\nvmw_pvscsi\ndm_mod\n");
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", U1604_K]);
        o.has(
            "etc/default/grub",
            "GRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\n",
        );
        o.has("etc/lvm/lvm.conf", "scan = [ \"/dev\" ]");
    });
}

// ---------------------------------------------------------------------------
// Ubuntu 18.04 from Hyper-V (Generation 1), prepared for Azure the way
// Microsoft's guide says: serial console, rootdelay, the Hyper-V drivers
// in the initrd, the Hyper-V frame buffer resolution

const U1804_K: &str = "4.15.0-213-generic";
const U1804_ROOT: &str = "0d4c7e2a-91b3-4f58-a6e0-3c2b1a9f8e7d";
const U1804_PGDATA_SRC: &str = "6e5d4c3b-2a19-4f08-97e6-d5c4b3a29180";
const U1804_PGDATA_TGT: &str = "c2b1a098-7f6e-4d5c-8b4a-39281706f5e4";
const U1804_MAC: &str = "00:15:5d:0a:3c:11";

fn ubuntu1804_hyperv(t: &Tree) {
    split_usr_systemd(t);
    t.file(
        "etc/os-release",
        "NAME=\"Ubuntu\"\nVERSION=\"18.04.6 LTS (Bionic Beaver)\"\nID=ubuntu\nID_LIKE=debian\n\
         PRETTY_NAME=\"Ubuntu 18.04.6 LTS\"\nVERSION_ID=\"18.04\"\n\
         HOME_URL=\"https://www.ubuntu.com/\"\nSUPPORT_URL=\"https://help.ubuntu.com/\"\n\
         BUG_REPORT_URL=\"https://bugs.launchpad.net/ubuntu/\"\n\
         VERSION_CODENAME=bionic\nUBUNTU_CODENAME=bionic\n",
    );
    t.file("etc/debian_version", "buster/sid\n");
    t.file(
        "etc/fstab",
        &format!(
            "UUID={U1804_ROOT} / ext4 defaults 0 0\n\
             /swap.img\tnone\tswap\tsw\t0\t0\n\
             LABEL=pgdata /var/lib/postgresql xfs defaults,nofail 0 2\n"
        ),
    );
    t.file("swap.img", "");
    // Written by the installer through cloud-init.
    t.file_mode(
        "etc/netplan/50-cloud-init.yaml",
        "# This file is generated from information provided by\n\
         # the datasource.  Changes to it will not persist across an instance.\n\
         # To disable cloud-init's network configuration capabilities, write a file\n\
         # /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg with the following:\n\
         # network: {config: disabled}\n\
         network:\n    ethernets:\n        eth0:\n            addresses:\n\
         \x20           - 192.168.40.21/24\n            gateway4: 192.168.40.1\n\
         \x20           nameservers:\n                addresses:\n                - 192.168.40.10\n\
         \x20               search:\n                - ad.example.org\n    version: 2\n",
        0o644,
    );
    t.file(
        "etc/cloud/cloud.cfg.d/90_dpkg.cfg",
        "# to update this file, run dpkg-reconfigure cloud-init\n\
         datasource_list: [ Azure, NoCloud, None ]\n",
    );
    t.file(
        "etc/cloud/cloud.cfg",
        "users:\n   - default\ndisable_root: true\n",
    );
    t.file(
        "etc/waagent.conf",
        "Provisioning.Enabled=n\nProvisioning.UseCloudInit=y\nResourceDisk.Format=n\n",
    );
    t.file(
        "etc/default/grub",
        &format!(
            "{DEFAULT_GRUB_HEAD}GRUB_DEFAULT=0\nGRUB_TIMEOUT_STYLE=hidden\nGRUB_TIMEOUT=0\n\
             GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300\"\n\
             GRUB_CMDLINE_LINUX=\"video=hyperv_fb:1920x1080 elevator=noop\"\n"
        ),
    );
    t.file(
        "boot/grub/grub.cfg",
        &grub_cfg(
            "Ubuntu",
            "ubuntu",
            U1804_K,
            &format!("search --no-floppy --fs-uuid --set=root {U1804_ROOT}"),
            &format!(
                "root=UUID={U1804_ROOT} ro video=hyperv_fb:1920x1080 elevator=noop console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300"
            ),
        ),
    );
    t.file("boot/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    ubuntu_kernel(t, "lib/modules", U1804_K, ".ko", &[]);
    t.link("boot/vmlinuz", &format!("vmlinuz-{U1804_K}"));
    t.link("boot/initrd.img", &format!("initrd.img-{U1804_K}"));
    t.file(
        "etc/initramfs-tools/initramfs.conf",
        &initramfs_conf("most", "gzip"),
    );
    t.file(
        "etc/initramfs-tools/modules",
        &format!("{INITRAMFS_MODULES_HEAD}hv_vmbus\nhv_storvsc\nhv_netvsc\n"),
    );
    debian_tools(t);
}

fn ubuntu1804_guest() -> Guest {
    Guest {
        name: "Ubuntu 18.04 from Hyper-V",
        kernel: U1804_K,
        build: ubuntu1804_hyperv,
        os_family: "debian",
        os_version: "18.04",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 136365211648u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "ext4",
                  "sourceUuid": U1804_ROOT, "targetUuid": U1804_ROOT, "mountPoint": "/" } ] },
            { "sourceDevice": "/dev/sdb", "target": { "controller": "scsi0", "unit": 1 },
              "capacityBytes": 274877906944u64, "boot": false,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sdb1", "fsType": "xfs", "label": "pgdata",
                  "sourceUuid": U1804_PGDATA_SRC, "targetUuid": U1804_PGDATA_TGT,
                  "mountPoint": "/var/lib/postgresql" } ] }
        ]),
        nic: ("eth0", U1804_MAC),
        fstab_gone: &["LABEL=pgdata"],
        fstab_has: &[
            "UUID=c2b1a098-7f6e-4d5c-8b4a-39281706f5e4 /var/lib/postgresql xfs defaults,nofail 0 2\n",
            "UUID=0d4c7e2a-91b3-4f58-a6e0-3c2b1a9f8e7d / ext4 defaults 0 0\n",
        ],
        net_files: &["etc/netplan/50-cloud-init.yaml"],
        net_renamed_from: &[],
        net_has_mac: false,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &["video=hyperv_fb"],
        initramfs_tool: "update-initramfs",
        mkconfig: "grub-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn ubuntu1804_from_hyperv_azure_prepared() {
    check_guest(ubuntu1804_guest());
    run_again(&ubuntu1804_guest(), as_written, |o| {
        // Only the Hyper-V frame buffer is platform bound: the serial
        // console, earlyprintk and rootdelay (a maximum wait with an
        // initrd) are the user's own.
        o.has(
            "etc/default/grub",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300\"\n",
        );
        o.has(
            "etc/default/grub",
            "GRUB_CMDLINE_LINUX=\"elevator=noop net.ifnames=0 biosdevname=0\"\n",
        );
        // The NIC keeps its name: netplan is left alone, the name is pinned
        // to the target MAC, cloud-init keeps its hands off.
        o.step_status("network", "changed");
        o.has(
            "etc/netplan/50-cloud-init.yaml",
            "        eth0:\n            addresses:\n            - 192.168.40.21/24\n",
        );
        o.has(
            "etc/udev/rules.d/70-persistent-net.rules",
            "ATTR{address}==\"00:50:56:9a:00:01\", ATTR{type}==\"1\", NAME=\"eth0\"",
        );
        o.has(
            "etc/cloud/cloud.cfg.d/99-osam-disable-network-config.cfg",
            "network: {config: disabled}",
        );
        // The Hyper-V drivers stay listed; PVSCSI joins them.
        o.has(
            "etc/initramfs-tools/modules",
            "hv_vmbus\nhv_storvsc\nhv_netvsc\n# Added by the OSAM fixup stack (VMware target):\nvmw_pvscsi\n",
        );
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", U1804_K]);
    });
}

// ---------------------------------------------------------------------------
// Ubuntu 20.04 from Azure: the hybrid BIOS/UEFI cloud image, cloud-init's
// netplan matching the NIC by MAC *and driver*, grub.d drop-ins (one
// forcing the root's PARTUUID), the resource disk, the root re-created at
// file level (new UUID, new partition table)

const U2004_K: &str = "5.15.0-1057-azure";
const U2004_ROOT: &str = "a4c3b2d1-e0f9-48a7-b6c5-d4e3f2a1b0c9";
const U2004_ROOT_TGT: &str = "d9e8f7a6-b5c4-4d3e-9f2a-1b0c9d8e7f6a";
const U2004_ESP: &str = "4A1E-9B37";
const U2004_PARTUUID: &str = "7d2c1b0a-9e8f-4d6c-b5a4-3f2e1d0c9b8a";
const U2004_MAC: &str = "00:0d:3a:5c:8e:21";
const U2004_RESOURCE: &str = "/dev/disk/cloud/azure_resource-part1\t/mnt\tauto\tdefaults,nofail,x-systemd.requires=cloud-init.service,_netdev,comment=cloudconfig\t0\t2\n";

fn ubuntu2004_azure(t: &Tree) {
    merged_usr_systemd(t);
    t.file(
        "etc/os-release",
        "NAME=\"Ubuntu\"\nVERSION=\"20.04.6 LTS (Focal Fossa)\"\nID=ubuntu\nID_LIKE=debian\n\
         PRETTY_NAME=\"Ubuntu 20.04.6 LTS\"\nVERSION_ID=\"20.04\"\n\
         HOME_URL=\"https://www.ubuntu.com/\"\nSUPPORT_URL=\"https://help.ubuntu.com/\"\n\
         BUG_REPORT_URL=\"https://bugs.launchpad.net/ubuntu/\"\n\
         VERSION_CODENAME=focal\nUBUNTU_CODENAME=focal\n",
    );
    t.file("etc/debian_version", "bullseye/sid\n");
    t.file(
        "etc/fstab",
        &format!(
            "LABEL=cloudimg-rootfs\t/\t ext4\tdiscard,errors=remount-ro\t0 1\n\
             LABEL=UEFI\t/boot/efi\tvfat\tumask=0077\t0 1\n{U2004_RESOURCE}"
        ),
    );
    t.file_mode(
        "etc/netplan/50-cloud-init.yaml",
        &format!(
            "# This file is generated from information provided by the datasource.  Changes\n\
             # to it will not persist across an instance reboot.  To disable cloud-init's\n\
             # network configuration capabilities, write a file\n\
             # /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg with the following:\n\
             # network: {{config: disabled}}\n\
             network:\n    ethernets:\n        eth0:\n            dhcp4: true\n\
             \x20           dhcp4-overrides:\n                route-metric: 100\n\
             \x20           dhcp6: false\n            match:\n\
             \x20               driver: hv_netvsc\n                macaddress: {U2004_MAC}\n\
             \x20           set-name: eth0\n    version: 2\n"
        ),
        0o644,
    );
    t.file(
        "etc/cloud/cloud.cfg.d/90-azure.cfg",
        "# This configuration file is used to connect to the Azure DS sooner.\n\
         datasource_list: [ Azure ]\n",
    );
    t.file(
        "etc/cloud/cloud.cfg",
        "users:\n   - default\ndisable_root: true\n",
    );
    t.file(
        "etc/default/grub",
        &format!(
            "{DEFAULT_GRUB_HEAD}GRUB_DEFAULT=0\nGRUB_TIMEOUT_STYLE=hidden\nGRUB_TIMEOUT=0\n\
             GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX=\"\"\n"
        ),
    );
    t.file(
        "etc/default/grub.d/50-cloudimg-settings.cfg",
        "# Cloud Image specific Grub settings for Generic Cloud Images\n\
         # CLOUD_IMG: This file was created/modified by the Cloud Image build process\n\n\
         # Set the recordfail timeout\nGRUB_RECORDFAIL_TIMEOUT=0\n\n\
         # Do not wait on grub prompt\nGRUB_TIMEOUT=0\n\n\
         # Set the default commandline\n\
         GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0 earlyprintk=ttyS0\"\n\n\
         # Set the grub console type\nGRUB_TERMINAL=serial\n",
    );
    t.file(
        "etc/default/grub.d/40-force-partuuid.cfg",
        &format!(
            "# Force the kernel to boot without an initramfs on the first attempt\n\
             GRUB_FORCE_PARTUUID={U2004_PARTUUID}\n"
        ),
    );
    t.file(
        "boot/grub/grub.cfg",
        &grub_cfg(
            "Ubuntu",
            "ubuntu",
            U2004_K,
            &format!("search --no-floppy --fs-uuid --set=root {U2004_ROOT}"),
            &format!("root=PARTUUID={U2004_PARTUUID} ro console=tty1 console=ttyS0 earlyprintk=ttyS0 panic=-1"),
        ),
    );
    // The cloud image boots with BIOS and with UEFI.
    t.file("boot/grub/i386-pc/normal.mod", "");
    t.file("boot/grub/x86_64-efi/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    t.file("usr/lib/grub/x86_64-efi/normal.mod", "");
    t.bytes("boot/efi/EFI/ubuntu/shimx64.efi", &efi_binary("shim 15.7"));
    t.bytes("boot/efi/EFI/ubuntu/grubx64.efi", &efi_binary("grub 2.04"));
    t.bytes("boot/efi/EFI/ubuntu/mmx64.efi", &efi_binary("MokManager"));
    t.file(
        "boot/efi/EFI/ubuntu/grub.cfg",
        &format!(
            "search.fs_uuid {U2004_ROOT} root hd0,gpt1 \nset prefix=($root)'/boot/grub'\n\
             configfile $prefix/grub.cfg\n"
        ),
    );
    t.bytes("boot/efi/EFI/BOOT/BOOTX64.EFI", &efi_binary("shim 15.7"));
    t.bytes("boot/efi/EFI/BOOT/fbx64.efi", &efi_binary("fallback"));
    // linux-azure has the Hyper-V drivers built in.
    ubuntu_kernel(
        t,
        "usr/lib/modules",
        U2004_K,
        ".ko",
        &[
            "kernel/drivers/hv/hv_vmbus",
            "kernel/drivers/scsi/hv_storvsc",
            "kernel/drivers/net/hyperv/hv_netvsc",
        ],
    );
    t.link("boot/vmlinuz", &format!("vmlinuz-{U2004_K}"));
    t.link("boot/initrd.img", &format!("initrd.img-{U2004_K}"));
    t.file(
        "etc/initramfs-tools/initramfs.conf",
        &initramfs_conf("most", "lz4"),
    );
    t.file("etc/initramfs-tools/modules", INITRAMFS_MODULES_HEAD);
    debian_tools(t);
}

fn ubuntu2004_guest() -> Guest {
    Guest {
        name: "Ubuntu 20.04 from Azure",
        kernel: U2004_K,
        build: ubuntu2004_azure,
        os_family: "debian",
        os_version: "20.04",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 32212254720u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "ext4",
                  "label": "cloudimg-rootfs", "sourceUuid": U2004_ROOT, "targetUuid": U2004_ROOT_TGT,
                  "mountPoint": "/" },
                { "number": 14, "sourceDevice": "/dev/sda14", "fsType": "" },
                { "number": 15, "sourceDevice": "/dev/sda15", "fsType": "vfat", "label": "UEFI",
                  "sourceUuid": U2004_ESP, "targetUuid": U2004_ESP, "mountPoint": "/boot/efi" } ] }
        ]),
        nic: ("eth0", U2004_MAC),
        fstab_gone: &["LABEL=cloudimg-rootfs", "LABEL=UEFI"],
        fstab_has: &[
            "UUID=d9e8f7a6-b5c4-4d3e-9f2a-1b0c9d8e7f6a\t/\t ext4\tdiscard,errors=remount-ro\t0 1\n",
            "UUID=4A1E-9B37\t/boot/efi\tvfat\tumask=0077\t0 1\n",
            U2004_RESOURCE,
        ],
        net_files: &["etc/netplan/50-cloud-init.yaml"],
        net_renamed_from: &[],
        net_has_mac: true,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &[],
        initramfs_tool: "update-initramfs",
        mkconfig: "grub-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn ubuntu2004_from_azure_netplan_match_driver_grub_d() {
    check_guest(ubuntu2004_guest());
    run_again(&ubuntu2004_guest(), as_written, |o| {
        let netplan = "etc/netplan/50-cloud-init.yaml";
        o.has(netplan, "macaddress: 00:50:56:9a:00:01\n");
        o.has(netplan, "            set-name: eth0\n");
        // On VMware the NIC's driver is vmxnet3: a match on hv_netvsc would
        // leave it unconfigured.
        o.lacks(netplan, "hv_netvsc");
        o.has(
            "etc/cloud/cloud.cfg.d/99-osam-disable-network-config.cfg",
            "network: {config: disabled}",
        );
        // The hybrid image keeps booting with BIOS.
        o.ran(&["grub-install", "--target=i386-pc", "/dev/sda"]);
        o.not_ran("efibootmgr");
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", U2004_K]);
        o.has(
            "etc/default/grub.d/50-cloudimg-settings.cfg",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0 earlyprintk=ttyS0\"\n",
        );
        // grub-mkconfig reads the drop-ins after /etc/default/grub. Ubuntu's
        // 10_linux writes `root=PARTUUID=<GRUB_FORCE_PARTUUID>` into every
        // entry; the re-created root (new UUID: a new partition table) has
        // another PARTUUID, so the setting is commented out and the entries
        // name the root by UUID.
        let force = "etc/default/grub.d/40-force-partuuid.cfg";
        o.has(force, &format!("\n#GRUB_FORCE_PARTUUID={U2004_PARTUUID}\n"));
        assert!(
            !o.text(force)
                .lines()
                .any(|l| l.starts_with("GRUB_FORCE_PARTUUID=")),
            "{}",
            o.text(force)
        );
        o.warned("bootloader.force_partuuid_disabled", U2004_PARTUUID);
        // The NIC options once, in the GRUB_CMDLINE_LINUX that takes effect
        // (no drop-in sets it); the drop-in's console options are the user's.
        o.has(
            "etc/default/grub",
            "GRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\n",
        );
        o.lacks("etc/default/grub.d/50-cloudimg-settings.cfg", "net.ifnames");
        o.step_summary("bootloader", "grub.d drop-ins: 1");
        o.step_summary("bootloader", "GRUB_FORCE_PARTUUID=");
    });
}

// ---------------------------------------------------------------------------
// Ubuntu 24.04 from Proxmox VE (OVMF): UEFI with shim, netplan with a
// static address and routes, a zstd initrd behind early microcode, zstd
// compressed modules, file-level replicas (new UUIDs)

const U2404_K: &str = "6.8.0-51-generic";
const U2404_ROOT_SRC: &str = "1b2c3d4e-5f60-4718-89ab-cdef01234567";
const U2404_ROOT_TGT: &str = "f7e6d5c4-b3a2-4190-8f7e-6d5c4b3a2918";
const U2404_ESP: &str = "8E3F-21C7";
const U2404_MAC: &str = "bc:24:11:5e:7a:03";

fn ubuntu2404_proxmox(t: &Tree) {
    merged_usr_systemd(t);
    t.file(
        "etc/os-release",
        "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\n\
         VERSION=\"24.04.1 LTS (Noble Numbat)\"\nVERSION_CODENAME=noble\nID=ubuntu\n\
         ID_LIKE=debian\nHOME_URL=\"https://www.ubuntu.com/\"\n\
         SUPPORT_URL=\"https://help.ubuntu.com/\"\n\
         BUG_REPORT_URL=\"https://bugs.launchpad.net/ubuntu/\"\n\
         UBUNTU_CODENAME=noble\nLOGO=ubuntu-logo\n",
    );
    t.file("etc/debian_version", "trixie/sid\n");
    t.file(
        "etc/fstab",
        &format!(
            "{DEBIAN_FSTAB_HEAD}{FSTAB_COLUMNS}\
             # / was on /dev/sda2 during curtin installation\n\
             /dev/disk/by-uuid/{U2404_ROOT_SRC} / ext4 defaults 0 1\n\
             # /boot/efi was on /dev/sda1 during curtin installation\n\
             /dev/disk/by-uuid/{U2404_ESP} /boot/efi vfat defaults 0 1\n\
             /swap.img\tnone\tswap\tsw\t0\t0\n"
        ),
    );
    t.file("swap.img", "");
    t.file_mode(
        "etc/netplan/50-cloud-init.yaml",
        "# This file is generated from information provided by the datasource.  Changes\n\
         # to it will not persist across an instance reboot.  To disable cloud-init's\n\
         # network configuration capabilities, write a file\n\
         # /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg with the following:\n\
         # network: {config: disabled}\n\
         network:\n  version: 2\n  ethernets:\n    ens18:\n      addresses:\n\
         \x20     - \"10.40.8.21/24\"\n      nameservers:\n        addresses:\n\
         \x20       - 10.40.8.2\n        search:\n        - lab.example.net\n\
         \x20     routes:\n      - to: \"default\"\n        via: \"10.40.8.1\"\n\
         \x20     - to: \"172.16.0.0/12\"\n        via: \"10.40.8.254\"\n",
        0o600,
    );
    t.file(
        "etc/cloud/cloud.cfg",
        "users:\n   - default\ndisable_root: true\n",
    );
    t.file(
        "etc/cloud/cloud.cfg.d/90-installer-network.cfg",
        "# This was written by the installer.\n",
    );
    t.file(
        "etc/default/grub",
        &format!(
            "{DEFAULT_GRUB_HEAD}GRUB_DEFAULT=0\nGRUB_TIMEOUT_STYLE=hidden\nGRUB_TIMEOUT=0\n\
             GRUB_DISTRIBUTOR=`( . /etc/os-release; echo ${{NAME:-Ubuntu}} ) 2>/dev/null || echo Ubuntu`\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"\"\nGRUB_CMDLINE_LINUX=\"\"\n"
        ),
    );
    t.file(
        "boot/grub/grub.cfg",
        &grub_cfg(
            "Ubuntu",
            "ubuntu",
            U2404_K,
            &format!("search --no-floppy --fs-uuid --set=root {U2404_ROOT_SRC}"),
            &format!("root=UUID={U2404_ROOT_SRC} ro"),
        ),
    );
    t.file("boot/grub/x86_64-efi/normal.mod", "");
    t.file("usr/lib/grub/x86_64-efi/normal.mod", "");
    t.dir("usr/lib/grub/x86_64-efi-signed");
    t.bytes("boot/efi/EFI/ubuntu/shimx64.efi", &efi_binary("shim 15.8"));
    t.bytes("boot/efi/EFI/ubuntu/grubx64.efi", &efi_binary("grub 2.12"));
    t.bytes("boot/efi/EFI/ubuntu/mmx64.efi", &efi_binary("MokManager"));
    t.file(
        "boot/efi/EFI/ubuntu/BOOTX64.CSV",
        "shimx64.efi,ubuntu,,This is the boot entry for ubuntu\n",
    );
    t.file(
        "boot/efi/EFI/ubuntu/grub.cfg",
        &format!(
            "search.fs_uuid {U2404_ROOT_SRC} root \nset prefix=($root)'/boot/grub'\n\
             configfile $prefix/grub.cfg\n"
        ),
    );
    t.bytes("boot/efi/EFI/BOOT/BOOTX64.EFI", &efi_binary("shim 15.8"));
    t.bytes("boot/efi/EFI/BOOT/fbx64.efi", &efi_binary("fallback"));
    t.bytes("boot/efi/EFI/BOOT/mmx64.efi", &efi_binary("MokManager"));
    let ext = ".ko.zst";
    install_kernel(
        t,
        Kernel {
            version: U2404_K,
            modules_dir: "usr/lib/modules",
            config: "CONFIG_X86_64=y\nCONFIG_EXT4_FS=y\nCONFIG_BLK_DEV_SD=y\n\
                     CONFIG_VMWARE_PVSCSI=m\nCONFIG_VMXNET3=m\nCONFIG_MODULE_COMPRESS_ZSTD=y\n",
            dep: dep(
                ext,
                &[
                    "kernel/drivers/scsi/vmw_pvscsi",
                    "kernel/drivers/net/vmxnet3/vmxnet3",
                    "kernel/drivers/scsi/virtio_scsi",
                    "kernel/drivers/net/virtio_net kernel/drivers/net/net_failover",
                    "kernel/drivers/net/net_failover",
                    "kernel/drivers/md/dm-mod",
                    "kernel/fs/btrfs/btrfs kernel/lib/raid6/raid6_pq",
                    "kernel/lib/raid6/raid6_pq",
                ],
            ),
            builtin: builtin(&[
                "kernel/fs/ext4/ext4",
                "kernel/fs/jbd2/jbd2",
                "kernel/fs/mbcache",
                "kernel/drivers/scsi/scsi_mod",
                "kernel/drivers/scsi/sd_mod",
            ]),
            initrd: (
                format!("boot/initrd.img-{U2404_K}"),
                early_microcode_zstd_initrd(
                    U2404_K,
                    &[
                        "kernel/drivers/scsi/virtio_scsi.ko.zst",
                        "kernel/drivers/net/virtio_net.ko.zst",
                        "kernel/drivers/md/dm-mod.ko.zst",
                    ],
                ),
            ),
        },
    );
    t.link("boot/vmlinuz", &format!("vmlinuz-{U2404_K}"));
    t.link("boot/initrd.img", &format!("initrd.img-{U2404_K}"));
    t.file(
        "etc/initramfs-tools/initramfs.conf",
        &initramfs_conf("most", "zstd"),
    );
    t.file("etc/initramfs-tools/modules", INITRAMFS_MODULES_HEAD);
    debian_tools(t);
    t.tools(&["usr/bin/efibootmgr"]);
}

fn ubuntu2404_guest() -> Guest {
    Guest {
        name: "Ubuntu 24.04 (UEFI) from Proxmox VE",
        kernel: U2404_K,
        build: ubuntu2404_proxmox,
        os_family: "debian",
        os_version: "24.04",
        firmware: UEFI,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 68719476736u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "vfat",
                  "sourceUuid": U2404_ESP, "targetUuid": U2404_ESP, "mountPoint": "/boot/efi" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "ext4",
                  "sourceUuid": U2404_ROOT_SRC, "targetUuid": U2404_ROOT_TGT, "mountPoint": "/" } ] }
        ]),
        nic: ("ens18", U2404_MAC),
        fstab_gone: &[U2404_ROOT_SRC, "/dev/disk/by-uuid/8E3F-21C7"],
        fstab_has: &[
            "UUID=f7e6d5c4-b3a2-4190-8f7e-6d5c4b3a2918 / ext4 defaults 0 1\n",
            "UUID=8E3F-21C7 /boot/efi vfat defaults 0 1\n",
            "/swap.img\tnone\tswap\tsw\t0\t0\n",
        ],
        net_files: &["etc/netplan/50-cloud-init.yaml"],
        net_renamed_from: &[],
        net_has_mac: false,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &[],
        initramfs_tool: "update-initramfs",
        mkconfig: "grub-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn ubuntu2404_uefi_shim_netplan_routes_zstd_initrd() {
    check_guest(ubuntu2404_guest());
    // Said to come from BIOS, to a BIOS target: the guest has no GRUB for
    // BIOS, so its boot code is left as it is (with a warning).
    run_again(&ubuntu2404_guest(), bios_to_bios, |o| {
        o.warned("bootloader.bios_modules_missing", "i386-pc");
        o.warned("config.mismatch", "set up for efi");
        o.not_ran("grub-install");
    });
    run_again(&ubuntu2404_guest(), efi_to_efi, |o| {
        o.not_warned("config.mismatch", "firmware");
        // The signed chain is kept: no grub-install, a boot entry for shim.
        o.not_ran("grub-install");
        o.ran(&[
            "efibootmgr",
            "-c",
            "-d",
            "/dev/sda",
            "-p",
            "1",
            "-L",
            "ubuntu",
            "-l",
            "\\EFI\\ubuntu\\shimx64.efi",
        ]);
        o.ran(&["grub-mkconfig", "-o", "/boot/grub/grub.cfg"]);
        // The ESP's stub finds the re-created root by its new UUID.
        o.has(
            "boot/efi/EFI/ubuntu/grub.cfg",
            &format!("search.fs_uuid {U2404_ROOT_TGT} root \n"),
        );
        // The fallback path was there already: kept as it is.
        assert_eq!(
            fs::read(o.root.join("boot/efi/EFI/BOOT/BOOTX64.EFI")).unwrap(),
            efi_binary("shim 15.8")
        );
        // The zstd initrd behind early microcode was read: PVSCSI is
        // missing from it, ext4 and sd_mod are built in.
        o.has(
            "etc/initramfs-tools/modules",
            "# Added by the OSAM fixup stack (VMware target):\nvmw_pvscsi\n",
        );
        o.lacks("etc/initramfs-tools/modules", "ext4");
        o.not_warned("initramfs.unreadable", "");
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", U2404_K]);
        let netplan = "etc/netplan/50-cloud-init.yaml";
        o.has(netplan, "  ethernets:\n    eth0:\n      addresses:\n");
        // netplan refuses to trust a world-readable file.
        o.mode(netplan, 0o600);
        o.has(
            netplan,
            "      - to: \"172.16.0.0/12\"\n        via: \"10.40.8.254\"\n",
        );
    });
}

// ---------------------------------------------------------------------------
// Debian 7 on an HP ProLiant with a Smart Array (cciss): upgraded from
// etch, so device names in fstab and GRUB legacy's menu.lst (with
// update-grub's `# kopt=`), ext3, sysvinit

const DEB7_K: &str = "3.2.0-4-amd64";
const DEB7_BOOT: &str = "3e2d1c0b-a998-4877-8665-5443322110ff";
const DEB7_ROOT: &str = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d";
const DEB7_SWAP: &str = "d4c3b2a1-0f9e-48d7-c6b5-a4f3e2d1c0b9";
const DEB7_MAC: &str = "00:1f:29:6a:0c:b4";

fn debian7_cciss(t: &Tree) {
    split_usr(t);
    t.tools(&[
        "sbin/init",
        "sbin/telinit",
        "usr/sbin/grub",
        "usr/sbin/update-grub",
    ]);
    t.tools(&[
        "usr/sbin/update-initramfs",
        "usr/sbin/mkinitramfs",
        "usr/sbin/grub-install",
    ]);
    t.file(
        "etc/inittab",
        "# /etc/inittab: init(8) configuration.\n\n\
         # The default runlevel.\nid:2:initdefault:\n\n\
         # Boot-time system configuration/initialization script.\n\
         si::sysinit:/etc/init.d/rcS\n\n\
         # What to do in single-user mode.\n~~:S:wait:/sbin/sulogin\n\n\
         l0:0:wait:/etc/init.d/rc 0\nl1:1:wait:/etc/init.d/rc 1\nl2:2:wait:/etc/init.d/rc 2\n\
         l3:3:wait:/etc/init.d/rc 3\nl4:4:wait:/etc/init.d/rc 4\nl5:5:wait:/etc/init.d/rc 5\n\
         l6:6:wait:/etc/init.d/rc 6\n\n\
         ca:12345:ctrlaltdel:/sbin/shutdown -t1 -a -r now\n\n\
         1:2345:respawn:/sbin/getty 38400 tty1\n2:23:respawn:/sbin/getty 38400 tty2\n\n\
         # iLO virtual serial port\nT1:23:respawn:/sbin/getty -L ttyS1 115200 vt100\n",
    );
    t.tools(&[
        "etc/init.d/rc",
        "etc/init.d/rcS",
        "etc/init.d/single",
        "etc/init.d/hpasmd",
    ]);
    t.link("etc/rc1.d/S01single", "../init.d/single");
    t.link("etc/rc2.d/S20hpasmd", "../init.d/hpasmd");
    t.file(
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 7 (wheezy)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"7\"\nVERSION=\"7 (wheezy)\"\nID=debian\nANSI_COLOR=\"1;31\"\n\
         HOME_URL=\"http://www.debian.org/\"\nSUPPORT_URL=\"http://www.debian.org/support/\"\n\
         BUG_REPORT_URL=\"http://bugs.debian.org/\"\n",
    );
    t.file("etc/debian_version", "7.11\n");
    t.file(
        "etc/fstab",
        &format!(
            "# /etc/fstab: static file system information.\n#\n{FSTAB_COLUMNS}\
             proc            /proc           proc    defaults        0       0\n\
             /dev/cciss/c0d0p2 /               ext3    errors=remount-ro 0       1\n\
             /dev/cciss/c0d0p1 /boot           ext3    defaults        0       2\n\
             /dev/cciss/c0d0p3 none            swap    sw              0       0\n\
             /dev/scd0       /media/cdrom0   udf,iso9660 user,noauto     0       0\n"
        ),
    );
    t.file(
        "boot/grub/menu.lst",
        &format!(
            "# menu.lst - See: grub(8), info grub, update-grub(8)\n\
             #            grub-install(8), grub-floppy(8),\n\
             #            grub-md5-crypt, /usr/share/doc/grub\n\
             #            and /usr/share/doc/grub-legacy-doc/.\n\n\
             ## default num\ndefault\t\t0\n\n## timeout sec\ntimeout\t\t5\n\n\
             # Pretty colours\ncolor cyan/blue white/blue\n\n\
             ### BEGIN AUTOMAGIC KERNELS LIST\n\
             ## lines between the AUTOMAGIC KERNELS LIST markers will be modified\n\
             ## by the debian update-grub script except for the default options below\n\n\
             ## DO NOT UNCOMMENT THEM, Just edit them to your needs\n\n\
             ## ## Start Default Options ##\n\
             ## default kernel options for automagic boot options\n\
             ## If you want special options for specific kernels use kopt_x_y_z\n\
             ## where x.y.z is kernel version. Minor versions can be omitted.\n\
             ## e.g. kopt=root=/dev/hda1 ro\n\
             # kopt=root=/dev/cciss/c0d0p2 ro\n\n\
             ## default grub root device\n## e.g. groot=(hd0,0)\n# groot=(hd0,0)\n\n\
             ## should update-grub create alternative automagic boot options\n\
             # alternative=true\n\n\
             ## altoption boot targets option\n\
             # altoptions=(single-user mode) single\n\n\
             ## ## End Default Options ##\n\n\
             title\t\tDebian GNU/Linux, kernel {DEB7_K}\n\
             root\t\t(hd0,0)\n\
             kernel\t\t/vmlinuz-{DEB7_K} root=/dev/cciss/c0d0p2 ro quiet\n\
             initrd\t\t/initrd.img-{DEB7_K}\n\n\
             title\t\tDebian GNU/Linux, kernel {DEB7_K} (single-user mode)\n\
             root\t\t(hd0,0)\n\
             kernel\t\t/vmlinuz-{DEB7_K} root=/dev/cciss/c0d0p2 ro single\n\
             initrd\t\t/initrd.img-{DEB7_K}\n\n\
             ### END DEBIAN AUTOMAGIC KERNELS LIST\n"
        ),
    );
    t.file("boot/grub/device.map", "(hd0)\t/dev/cciss/c0d0\n");
    for stage in ["stage1", "stage2", "e2fs_stage1_5", "default"] {
        t.file(&format!("boot/grub/{stage}"), "");
    }
    t.file("usr/lib/grub/x86_64-pc/stage1", "");
    t.file("usr/lib/grub/x86_64-pc/stage2", "");
    t.file(
        "etc/network/interfaces",
        "# This file describes the network interfaces available on your system\n\
         # and how to activate them. For more information, see interfaces(5).\n\n\
         # The loopback network interface\nauto lo\niface lo inet loopback\n\n\
         # The primary network interface\nallow-hotplug eth0\niface eth0 inet static\n\
         \taddress 192.168.1.20\n\tnetmask 255.255.255.0\n\tnetwork 192.168.1.0\n\
         \tbroadcast 192.168.1.255\n\tgateway 192.168.1.1\n",
    );
    t.file(
        "etc/udev/rules.d/70-persistent-net.rules",
        &format!(
            "# This file was automatically generated by the /lib/udev/write_net_rules\n\
             # program, run by the persistent-net-generator.rules rules file.\n#\n\
             # You can modify it, as long as you keep each rule on a single\n\
             # line, and change only the value of the NAME= key.\n\n\
             # PCI device 0x14e4:0x1639 (bnx2)\n\
             SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{{address}}==\"{DEB7_MAC}\", ATTR{{dev_id}}==\"0x0\", ATTR{{type}}==\"1\", KERNEL==\"eth*\", NAME=\"eth0\"\n"
        ),
    );
    let ext = ".ko";
    install_kernel(
        t,
        Kernel {
            version: DEB7_K,
            modules_dir: "lib/modules",
            config: "CONFIG_X86_64=y\nCONFIG_EXT3_FS=m\nCONFIG_EXT4_FS=m\n\
                     CONFIG_BLK_CPQ_CISS_DA=m\nCONFIG_VMWARE_PVSCSI=m\nCONFIG_VMXNET3=m\n",
            dep: dep(
                ext,
                &[
                    "kernel/drivers/block/cciss kernel/drivers/scsi/scsi_mod",
                    "kernel/drivers/scsi/hpsa kernel/drivers/scsi/scsi_mod",
                    "kernel/drivers/scsi/vmw_pvscsi kernel/drivers/scsi/scsi_mod",
                    "kernel/drivers/scsi/sd_mod kernel/drivers/scsi/scsi_mod",
                    "kernel/drivers/scsi/scsi_mod",
                    "kernel/drivers/net/vmxnet3/vmxnet3",
                    "kernel/drivers/net/ethernet/broadcom/bnx2",
                    "kernel/fs/ext3/ext3 kernel/fs/jbd/jbd kernel/fs/mbcache",
                    "kernel/fs/ext4/ext4 kernel/fs/jbd2/jbd2 kernel/fs/mbcache",
                    "kernel/fs/jbd/jbd",
                    "kernel/fs/jbd2/jbd2",
                    "kernel/fs/mbcache",
                ],
            ),
            builtin: String::new(),
            initrd: (
                format!("boot/initrd.img-{DEB7_K}"),
                initramfs_image(
                    DEB7_K,
                    &[
                        "kernel/drivers/block/cciss.ko",
                        "kernel/drivers/scsi/scsi_mod.ko",
                        "kernel/fs/ext3/ext3.ko",
                        "kernel/fs/jbd/jbd.ko",
                        "kernel/fs/mbcache.ko",
                    ],
                ),
            ),
        },
    );
    t.link("vmlinuz", &format!("boot/vmlinuz-{DEB7_K}"));
    t.link("initrd.img", &format!("boot/initrd.img-{DEB7_K}"));
    t.file(
        "etc/initramfs-tools/initramfs.conf",
        &initramfs_conf("most", "gzip"),
    );
    t.file("etc/initramfs-tools/modules", INITRAMFS_MODULES_HEAD);
}

fn debian7_guest() -> Guest {
    Guest {
        name: "Debian 7 on cciss (GRUB legacy, sysvinit)",
        kernel: DEB7_K,
        build: debian7_cciss,
        os_family: "debian",
        os_version: "7",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/cciss/c0d0", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 146778685440u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/cciss/c0d0p1", "fsType": "ext3",
                  "sourceUuid": DEB7_BOOT, "targetUuid": DEB7_BOOT, "mountPoint": "/boot" },
                { "number": 2, "sourceDevice": "/dev/cciss/c0d0p2", "fsType": "ext3",
                  "sourceUuid": DEB7_ROOT, "targetUuid": DEB7_ROOT, "mountPoint": "/" },
                { "number": 3, "sourceDevice": "/dev/cciss/c0d0p3", "fsType": "swap",
                  "sourceUuid": DEB7_SWAP, "targetUuid": DEB7_SWAP } ] }
        ]),
        nic: ("eth0", DEB7_MAC),
        fstab_gone: &["/dev/cciss"],
        fstab_has: &[
            "UUID=9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d /               ext3    errors=remount-ro 0       1\n",
            "UUID=3e2d1c0b-a998-4877-8665-5443322110ff /boot           ext3",
            "UUID=d4c3b2a1-0f9e-48d7-c6b5-a4f3e2d1c0b9 none            swap",
            "/dev/scd0       /media/cdrom0   udf,iso9660 user,noauto     0       0\n",
            "proc            /proc           proc    defaults        0       0\n",
        ],
        net_files: &[
            "etc/network/interfaces",
            "etc/udev/rules.d/70-persistent-net.rules",
        ],
        net_renamed_from: &[],
        net_has_mac: true,
        cmdline_files: &["boot/grub/menu.lst"],
        cmdline_gone: &["/dev/cciss"],
        initramfs_tool: "update-initramfs",
        // GRUB legacy has no mkconfig: the install runs `grub --batch`
        // through `sh -c` (checked below).
        mkconfig: "sh",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn debian7_cciss_grub_legacy_sysvinit() {
    check_guest(debian7_guest());
    run_again(&debian7_guest(), as_written, |o| {
        // menu.lst's documentation (`## e.g. kopt=root=/dev/hda1 ro`) is
        // not a second naming scheme; its `# kopt=` is a setting.
        o.not_warned("storage.ambiguous_device_names", "");
        let menu = "boot/grub/menu.lst";
        o.has(
            menu,
            &format!(
                "kernel\t\t/vmlinuz-{DEB7_K} root=UUID={DEB7_ROOT} ro quiet net.ifnames=0 biosdevname=0\n"
            ),
        );
        o.has(
            menu,
            &format!(
                "kernel\t\t/vmlinuz-{DEB7_K} root=UUID={DEB7_ROOT} ro single net.ifnames=0 biosdevname=0\n"
            ),
        );
        // update-grub writes the next kernel's entries from `# kopt=`.
        o.has(
            menu,
            &format!("\n# kopt=root=UUID={DEB7_ROOT} ro net.ifnames=0 biosdevname=0\n"),
        );
        o.has(menu, "\n# groot=(hd0,0)\n");
        o.has("boot/grub/device.map", "(hd0)     /dev/sda\n");
        o.lacks("boot/grub/device.map", "cciss");
        o.ran(&[
            "dd",
            "if=/dev/sda",
            "of=/opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial",
            "bs=1M",
            "count=1",
            "conv=fsync",
        ]);
        let grub = o
            .cmds
            .iter()
            .find(|c| c[0] == "sh")
            .unwrap_or_else(|| panic!("no grub --batch: {:?}", o.cmds));
        assert!(
            grub[2].contains("device (hd0) /dev/sda\\nroot (hd0,0)\\nsetup (hd0)")
                && grub[2].contains("grub --batch"),
            "{grub:?}"
        );
        // The Smart Array driver is not what boots the target.
        o.has(
            "etc/initramfs-tools/modules",
            "# Added by the OSAM fixup stack (VMware target):\nvmw_pvscsi\nsd_mod\n",
        );
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", DEB7_K]);
        // sysvinit: run level 1 in inittab, the hook first in rc1.d.
        o.has("etc/inittab", "\nid:1:initdefault:\n");
        o.has("opt/vmware/hcx/osam/data/inittab", "\nid:2:initdefault:\n");
        assert_eq!(
            o.link("etc/rc1.d/S00osam-stage2"),
            "/etc/init.d/osam-stage2"
        );
        o.has("etc/init.d/osam-stage2", "# Default-Start:     1\n");
        o.exists("etc/systemd/system/osam-stage2.service", false);
        // No systemd: no .link file.
        o.exists("etc/systemd/network/10-osam-eth0.link", false);
    });
}

// ---------------------------------------------------------------------------
// Debian 9 from VirtualBox: fstab by device name (root, swap in a logical
// partition), a CD-ROM and a bind mount, resume by device name,
// `MODULES=most`

const DEB9_K: &str = "4.9.0-19-amd64";
const DEB9_ROOT: &str = "5f4e3d2c-1b0a-4998-8776-655443322110";
const DEB9_SWAP: &str = "0a1b2c3d-4e5f-4607-8819-2a3b4c5d6e7f";
const DEB9_MAC: &str = "08:00:27:5c:3d:9e";
const DEB9_CDROM: &str = "/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n";
const DEB9_BIND: &str = "/srv/www\t/var/www\tnone\tbind\t0\t0\n";

fn debian_modules(ext: &str, fs: &[&str]) -> String {
    let mut entries = vec![
        "kernel/drivers/scsi/vmw_pvscsi kernel/drivers/scsi/scsi_mod",
        "kernel/drivers/scsi/sd_mod kernel/drivers/scsi/scsi_mod",
        "kernel/drivers/scsi/scsi_mod",
        "kernel/drivers/ata/ahci kernel/drivers/ata/libahci kernel/drivers/ata/libata",
        "kernel/drivers/ata/libahci kernel/drivers/ata/libata",
        "kernel/drivers/ata/libata kernel/drivers/scsi/scsi_mod",
        "kernel/drivers/net/vmxnet3/vmxnet3",
        "kernel/drivers/net/ethernet/intel/e1000/e1000",
        "kernel/drivers/block/virtio_blk",
        "kernel/drivers/scsi/virtio_scsi",
        "kernel/drivers/net/virtio_net",
        "kernel/drivers/md/dm-mod",
        "kernel/fs/mbcache",
        "kernel/fs/jbd2/jbd2",
        "kernel/lib/libcrc32c",
    ];
    entries.extend_from_slice(fs);
    dep(ext, &entries)
}

const EXT4_DEP: &str = "kernel/fs/ext4/ext4 kernel/fs/jbd2/jbd2 kernel/fs/mbcache";
const XFS_DEP: &str = "kernel/fs/xfs/xfs kernel/lib/libcrc32c";

fn debian9_virtualbox(t: &Tree) {
    split_usr_systemd(t);
    t.file(
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 9 (stretch)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"9\"\nVERSION=\"9 (stretch)\"\nVERSION_CODENAME=stretch\nID=debian\n\
         HOME_URL=\"https://www.debian.org/\"\nSUPPORT_URL=\"https://www.debian.org/support\"\n\
         BUG_REPORT_URL=\"https://bugs.debian.org/\"\n",
    );
    t.file("etc/debian_version", "9.13\n");
    t.file(
        "etc/fstab",
        &format!(
            "{DEBIAN_FSTAB_HEAD}{FSTAB_COLUMNS}\
             # / was on /dev/sda1 during installation\n\
             /dev/sda1       /               ext4    errors=remount-ro 0       1\n\
             # swap was on /dev/sda5 during installation\n\
             /dev/sda5       none            swap    sw              0       0\n\
             {DEB9_CDROM}{DEB9_BIND}"
        ),
    );
    t.file("etc/initramfs-tools/conf.d/resume", "RESUME=/dev/sda5\n");
    t.file(
        "etc/network/interfaces",
        "# This file describes the network interfaces available on your system\n\
         # and how to activate them. For more information, see interfaces(5).\n\n\
         source /etc/network/interfaces.d/*\n\n\
         # The loopback network interface\nauto lo\niface lo inet loopback\n\n\
         # The primary network interface\nallow-hotplug enp0s3\niface enp0s3 inet dhcp\n\
         # This is an autoconfigured IPv6 interface\niface enp0s3 inet6 auto\n",
    );
    t.dir("etc/network/interfaces.d");
    t.file(
        "etc/default/grub",
        &format!(
            "{DEFAULT_GRUB_HEAD}GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n\
             GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n\n\
             # Uncomment to disable graphical terminal (grub-pc only)\n#GRUB_TERMINAL=console\n"
        ),
    );
    t.file(
        "boot/grub/grub.cfg",
        &grub_cfg(
            "Debian GNU/Linux",
            "debian",
            DEB9_K,
            &format!("search --no-floppy --fs-uuid --set=root {DEB9_ROOT}"),
            &format!("root=UUID={DEB9_ROOT} ro  quiet"),
        ),
    );
    t.file("boot/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    install_kernel(
        t,
        Kernel {
            version: DEB9_K,
            modules_dir: "lib/modules",
            config: "CONFIG_X86_64=y\nCONFIG_EXT4_FS=m\nCONFIG_VMWARE_PVSCSI=m\nCONFIG_VMXNET3=m\n",
            dep: debian_modules(".ko", &[EXT4_DEP]),
            builtin: String::new(),
            initrd: (
                format!("boot/initrd.img-{DEB9_K}"),
                initramfs_image(
                    DEB9_K,
                    &[
                        "kernel/drivers/ata/ahci.ko",
                        "kernel/drivers/scsi/sd_mod.ko",
                        "kernel/fs/ext4/ext4.ko",
                        "kernel/fs/jbd2/jbd2.ko",
                        "kernel/fs/mbcache.ko",
                    ],
                ),
            ),
        },
    );
    t.link("vmlinuz", &format!("boot/vmlinuz-{DEB9_K}"));
    t.link("initrd.img", &format!("boot/initrd.img-{DEB9_K}"));
    t.file(
        "etc/initramfs-tools/initramfs.conf",
        &initramfs_conf("most", "gzip"),
    );
    t.file("etc/initramfs-tools/modules", INITRAMFS_MODULES_HEAD);
    debian_tools(t);
    t.file("etc/modules-load.d/virtualbox.conf", "vboxguest\nvboxsf\n");
}

fn debian9_guest() -> Guest {
    Guest {
        name: "Debian 9 from VirtualBox",
        kernel: DEB9_K,
        build: debian9_virtualbox,
        os_family: "debian",
        os_version: "9",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 21474836480u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "ext4",
                  "sourceUuid": DEB9_ROOT, "targetUuid": DEB9_ROOT, "mountPoint": "/" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "" },
                { "number": 5, "sourceDevice": "/dev/sda5", "fsType": "swap",
                  "sourceUuid": DEB9_SWAP, "targetUuid": DEB9_SWAP } ] }
        ]),
        nic: ("enp0s3", DEB9_MAC),
        fstab_gone: &["/dev/sda1", "/dev/sda5"],
        fstab_has: &[
            "UUID=5f4e3d2c-1b0a-4998-8776-655443322110       /               ext4",
            "UUID=0a1b2c3d-4e5f-4607-8819-2a3b4c5d6e7f       none            swap",
            DEB9_CDROM,
            DEB9_BIND,
        ],
        net_files: &["etc/network/interfaces"],
        net_renamed_from: &[],
        net_has_mac: false,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &[],
        initramfs_tool: "update-initramfs",
        mkconfig: "grub-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn debian9_device_names_bind_cdrom_from_virtualbox() {
    check_guest(debian9_guest());
    run_again(&debian9_guest(), as_written, |o| {
        o.has(
            "etc/initramfs-tools/conf.d/resume",
            &format!("RESUME=UUID={DEB9_SWAP}\n"),
        );
        o.has("etc/fstab", &format!("{DEB9_CDROM}{DEB9_BIND}"));
        o.has(
            "etc/network/interfaces",
            "allow-hotplug eth0\niface eth0 inet dhcp\n# This is an autoconfigured IPv6 interface\niface eth0 inet6 auto\n",
        );
        o.has(
            "etc/default/grub",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\n",
        );
        // ext4 and sd_mod are in the initrd already, PVSCSI is not: that
        // is why it is rebuilt. The modules file lists all three.
        o.step_summary(
            "initramfs",
            &format!("{DEB9_K} rebuilt (vmw_pvscsi, scsi_mod added)"),
        );
        o.has(
            "etc/initramfs-tools/modules",
            "# Added by the OSAM fixup stack (VMware target):\nvmw_pvscsi\nsd_mod\next4\n",
        );
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", DEB9_K]);
        o.ran(&["grub-install", "--target=i386-pc", "/dev/sda"]);
    });
}

// ---------------------------------------------------------------------------
// Debian 11 from Nutanix AHV: UEFI with shim and no fallback loader,
// separate /boot, swap by UUID with the resume device, a VLAN on the NIC,
// file-level replicas (every UUID new)

const DEB11_K: &str = "5.10.0-33-amd64";
const DEB11_ROOT_SRC: &str = "6c5b4a39-2817-4f06-b5e4-d3c2b1a09f8e";
const DEB11_ROOT_TGT: &str = "2a3b4c5d-6e7f-4809-9a1b-2c3d4e5f6071";
const DEB11_BOOT_SRC: &str = "e9f8a7b6-c5d4-4e3f-a2b1-c0d9e8f7a6b5";
const DEB11_BOOT_TGT: &str = "71605f4e-3d2c-4b1a-8099-a8b7c6d5e4f3";
const DEB11_SWAP_SRC: &str = "3f2e1d0c-9b8a-4776-a655-443322110099";
const DEB11_SWAP_TGT: &str = "8d7c6b5a-4938-4271-a605-f4e3d2c1b0a9";
const DEB11_ESP_SRC: &str = "7A3B-1C2D";
const DEB11_ESP_TGT: &str = "B0C4-55E1";
const DEB11_MAC: &str = "50:6b:8d:2e:41:f7";

fn debian11_ahv(t: &Tree) {
    merged_usr_systemd(t);
    t.file(
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"11\"\nVERSION=\"11 (bullseye)\"\nVERSION_CODENAME=bullseye\nID=debian\n\
         HOME_URL=\"https://www.debian.org/\"\nSUPPORT_URL=\"https://www.debian.org/support\"\n\
         BUG_REPORT_URL=\"https://bugs.debian.org/\"\n",
    );
    t.file("etc/debian_version", "11.11\n");
    t.file(
        "etc/fstab",
        &format!(
            "{DEBIAN_FSTAB_HEAD}# systemd generates mount units based on this file, see systemd.mount(5).\n\
             # Please run 'systemctl daemon-reload' after you make changes here.\n#\n{FSTAB_COLUMNS}\
             # / was on /dev/sda3 during installation\n\
             UUID={DEB11_ROOT_SRC} /               ext4    errors=remount-ro 0       1\n\
             # /boot was on /dev/sda2 during installation\n\
             UUID={DEB11_BOOT_SRC} /boot           ext4    defaults        0       2\n\
             # /boot/efi was on /dev/sda1 during installation\n\
             UUID={DEB11_ESP_SRC}  /boot/efi       vfat    umask=0077      0       1\n\
             # swap was on /dev/sda4 during installation\n\
             UUID={DEB11_SWAP_SRC} none            swap    sw              0       0\n"
        ),
    );
    t.file(
        "etc/initramfs-tools/conf.d/resume",
        &format!("RESUME=UUID={DEB11_SWAP_SRC}\n"),
    );
    t.file(
        "etc/network/interfaces",
        "# This file describes the network interfaces available on your system\n\
         # and how to activate them. For more information, see interfaces(5).\n\n\
         source /etc/network/interfaces.d/*\n\n\
         # The loopback network interface\nauto lo\niface lo inet loopback\n\n\
         # The primary network interface\nallow-hotplug ens3\niface ens3 inet static\n\
         \taddress 10.60.1.15/24\n\tgateway 10.60.1.1\n\tdns-nameservers 10.60.1.2\n\n\
         # Storage VLAN on the same NIC\nauto ens3.120\niface ens3.120 inet static\n\
         \taddress 10.120.0.15/24\n\tvlan-raw-device ens3\n\tmtu 9000\n",
    );
    t.dir("etc/network/interfaces.d");
    t.file(
        "etc/default/grub",
        &format!(
            "{DEFAULT_GRUB_HEAD}GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n\
             GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n"
        ),
    );
    t.file(
        "boot/grub/grub.cfg",
        &grub_cfg(
            "Debian GNU/Linux",
            "debian",
            DEB11_K,
            &format!("search --no-floppy --fs-uuid --set=root {DEB11_BOOT_SRC}"),
            &format!("root=UUID={DEB11_ROOT_SRC} ro  quiet"),
        )
        .replace("/boot/vmlinuz", "/vmlinuz")
        .replace("/boot/initrd", "/initrd"),
    );
    t.file("boot/grub/x86_64-efi/normal.mod", "");
    t.file("usr/lib/grub/x86_64-efi/normal.mod", "");
    t.bytes("boot/efi/EFI/debian/shimx64.efi", &efi_binary("shim 15.8"));
    t.bytes("boot/efi/EFI/debian/grubx64.efi", &efi_binary("grub 2.06"));
    t.bytes("boot/efi/EFI/debian/mmx64.efi", &efi_binary("MokManager"));
    t.bytes("boot/efi/EFI/debian/fbx64.efi", &efi_binary("fallback"));
    t.file(
        "boot/efi/EFI/debian/BOOTX64.CSV",
        "shimx64.efi,debian,,This is the boot entry for debian\n",
    );
    t.file(
        "boot/efi/EFI/debian/grub.cfg",
        &format!(
            "search.fs_uuid {DEB11_BOOT_SRC} root hd0,gpt2 \nset prefix=($root)'/grub'\n\
             configfile $prefix/grub.cfg\n"
        ),
    );
    install_kernel(
        t,
        Kernel {
            version: DEB11_K,
            modules_dir: "usr/lib/modules",
            config: "CONFIG_X86_64=y\nCONFIG_EXT4_FS=m\nCONFIG_VMWARE_PVSCSI=m\nCONFIG_VMXNET3=m\n",
            dep: debian_modules(".ko", &[EXT4_DEP, "kernel/net/8021q/8021q"]),
            builtin: String::new(),
            initrd: (
                format!("boot/initrd.img-{DEB11_K}"),
                initramfs_image(
                    DEB11_K,
                    &[
                        "kernel/drivers/scsi/virtio_scsi.ko",
                        "kernel/drivers/scsi/sd_mod.ko",
                        "kernel/fs/ext4/ext4.ko",
                        "kernel/fs/jbd2/jbd2.ko",
                        "kernel/fs/mbcache.ko",
                    ],
                ),
            ),
        },
    );
    t.link("vmlinuz", &format!("boot/vmlinuz-{DEB11_K}"));
    t.link("initrd.img", &format!("boot/initrd.img-{DEB11_K}"));
    t.file(
        "etc/initramfs-tools/initramfs.conf",
        &initramfs_conf("most", "zstd"),
    );
    t.file("etc/initramfs-tools/modules", INITRAMFS_MODULES_HEAD);
    debian_tools(t);
    t.tools(&["usr/bin/efibootmgr", "usr/sbin/vconfig"]);
}

fn debian11_guest() -> Guest {
    Guest {
        name: "Debian 11 (UEFI) from Nutanix AHV",
        kernel: DEB11_K,
        build: debian11_ahv,
        os_family: "debian",
        os_version: "11",
        firmware: UEFI,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 53687091200u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "vfat",
                  "sourceUuid": DEB11_ESP_SRC, "targetUuid": DEB11_ESP_TGT, "mountPoint": "/boot/efi" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "ext4",
                  "sourceUuid": DEB11_BOOT_SRC, "targetUuid": DEB11_BOOT_TGT, "mountPoint": "/boot" },
                { "number": 3, "sourceDevice": "/dev/sda3", "fsType": "ext4",
                  "sourceUuid": DEB11_ROOT_SRC, "targetUuid": DEB11_ROOT_TGT, "mountPoint": "/" },
                { "number": 4, "sourceDevice": "/dev/sda4", "fsType": "swap",
                  "sourceUuid": DEB11_SWAP_SRC, "targetUuid": DEB11_SWAP_TGT } ] }
        ]),
        nic: ("ens3", DEB11_MAC),
        fstab_gone: &[
            DEB11_ROOT_SRC,
            DEB11_BOOT_SRC,
            DEB11_SWAP_SRC,
            DEB11_ESP_SRC,
        ],
        fstab_has: &[
            "UUID=2a3b4c5d-6e7f-4809-9a1b-2c3d4e5f6071 /               ext4",
            "UUID=71605f4e-3d2c-4b1a-8099-a8b7c6d5e4f3 /boot           ext4",
            "UUID=B0C4-55E1  /boot/efi       vfat    umask=0077      0       1\n",
            "UUID=8d7c6b5a-4938-4271-a605-f4e3d2c1b0a9 none            swap",
        ],
        net_files: &["etc/network/interfaces"],
        net_renamed_from: &[],
        net_has_mac: false,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &[],
        initramfs_tool: "update-initramfs",
        mkconfig: "grub-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn debian11_uefi_separate_boot_resume_vlan_from_ahv() {
    check_guest(debian11_guest());
    run_again(&debian11_guest(), efi_to_efi, |o| {
        o.has(
            "etc/initramfs-tools/conf.d/resume",
            &format!("RESUME=UUID={DEB11_SWAP_TGT}\n"),
        );
        o.has(
            "etc/network/interfaces",
            "auto eth0.120\niface eth0.120 inet static\n\taddress 10.120.0.15/24\n\tvlan-raw-device eth0\n",
        );
        o.has(
            "etc/network/interfaces",
            "allow-hotplug eth0\niface eth0 inet static\n",
        );
        // The ESP: the stub finds the re-created /boot, and the fallback
        // path (missing: Debian does not write it) gets shim and its
        // companions.
        o.has(
            "boot/efi/EFI/debian/grub.cfg",
            &format!("search.fs_uuid {DEB11_BOOT_TGT} root hd0,gpt2 \n"),
        );
        for (name, what) in [
            ("BOOTX64.EFI", "shim 15.8"),
            ("grubx64.efi", "grub 2.06"),
            ("mmx64.efi", "MokManager"),
            ("fbx64.efi", "fallback"),
        ] {
            assert_eq!(
                fs::read(o.root.join("boot/efi/EFI/BOOT").join(name)).ok(),
                Some(efi_binary(what)),
                "{name}"
            );
        }
        o.not_ran("grub-install");
        o.ran(&[
            "efibootmgr",
            "-c",
            "-d",
            "/dev/sda",
            "-p",
            "1",
            "-L",
            "debian",
            "-l",
            "\\EFI\\debian\\shimx64.efi",
        ]);
        o.ran(&["grub-mkconfig", "-o", "/boot/grub/grub.cfg"]);
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", DEB11_K]);
    });
}

// ---------------------------------------------------------------------------
// Debian 12 from KVM (libvirt): systemd-networkd with the admin's own
// name for the NIC (a .link file naming it lan0) and a VLAN on it,
// `MODULES=dep`, a disk that is not migrated, odd fstab spacing

const DEB12_K: &str = "6.1.0-28-amd64";
const DEB12_ROOT: &str = "4b3a2918-0706-4f5e-8d4c-3b2a19080706";
const DEB12_SWAP: &str = "9e8d7c6b-5a49-4382-b716-05f4e3d2c1b0";
const DEB12_DATA_SRC: &str = "c6d5e4f3-a2b1-4c0d-9e8f-7a6b5c4d3e2f";
const DEB12_DATA_TGT: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
const DEB12_MAC: &str = "52:54:00:7f:e2:10";
const DEB12_TMPFS: &str = "tmpfs /tmp tmpfs defaults,size=2G,mode=1777 0 0\n";

fn debian12_kvm(t: &Tree) {
    merged_usr_systemd(t);
    t.file(
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n\
         HOME_URL=\"https://www.debian.org/\"\nSUPPORT_URL=\"https://www.debian.org/support\"\n\
         BUG_REPORT_URL=\"https://bugs.debian.org/\"\n",
    );
    t.file("etc/debian_version", "12.8\n");
    t.file(
        "etc/fstab",
        &format!(
            "{DEBIAN_FSTAB_HEAD}# systemd generates mount units based on this file, see systemd.mount(5).\n\
             # Please run 'systemctl daemon-reload' after you make changes here.\n#\n{FSTAB_COLUMNS}\
             # / was on /dev/vda1 during installation\n\
             UUID={DEB12_ROOT} /               ext4    errors=remount-ro 0       1\n\
             # swap was on /dev/vda5 during installation\n\
             UUID={DEB12_SWAP} none            swap    sw              0       0\n\
             /dev/vdb1   /srv/data    xfs   defaults,noatime   0  2\n\
             /dev/vdc1\t/backup\text4\tdefaults\t0\t2\n\
             {DEB12_TMPFS}"
        ),
    );
    t.file(
        "etc/initramfs-tools/conf.d/resume",
        &format!("RESUME=UUID={DEB12_SWAP}\n"),
    );
    // ifupdown keeps only the loopback; networkd has the NIC.
    t.file(
        "etc/network/interfaces",
        "# interfaces(5) file used by ifup(8) and ifdown(8)\n\
         # Include files from /etc/network/interfaces.d:\n\
         source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n",
    );
    t.dir("etc/network/interfaces.d");
    t.file(
        "etc/systemd/network/10-lan0.link",
        &format!("[Match]\nMACAddress={DEB12_MAC}\n\n[Link]\nName=lan0\n"),
    );
    t.file(
        "etc/systemd/network/20-lan0.network",
        "[Match]\nName=lan0\n\n[Network]\nAddress=192.168.50.10/24\nGateway=192.168.50.1\n\
         DNS=192.168.50.1\nDomains=home.arpa\nVLAN=lan0.30\n",
    );
    t.file(
        "etc/systemd/network/30-lan0.30.netdev",
        "[NetDev]\nName=lan0.30\nKind=vlan\n\n[VLAN]\nId=30\n",
    );
    t.file(
        "etc/systemd/network/31-lan0.30.network",
        "[Match]\nName=lan0.30\n\n[Network]\nAddress=10.30.0.10/24\n",
    );
    t.link(
        "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
        "/lib/systemd/system/systemd-networkd.service",
    );
    t.file(
        "etc/default/grub",
        &format!(
            "{DEFAULT_GRUB_HEAD}GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n\
             GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n\n\
             # If your computer has multiple operating systems installed, then you\n\
             # probably want to run os-prober.\n#GRUB_DISABLE_OS_PROBER=false\n"
        ),
    );
    t.file(
        "boot/grub/grub.cfg",
        &grub_cfg(
            "Debian GNU/Linux",
            "debian",
            DEB12_K,
            &format!("search --no-floppy --fs-uuid --set=root {DEB12_ROOT}"),
            &format!("root=UUID={DEB12_ROOT} ro  quiet"),
        ),
    );
    t.file("boot/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    install_kernel(
        t,
        Kernel {
            version: DEB12_K,
            modules_dir: "usr/lib/modules",
            config: "CONFIG_X86_64=y\nCONFIG_EXT4_FS=m\nCONFIG_XFS_FS=m\n\
                     CONFIG_VMWARE_PVSCSI=m\nCONFIG_VMXNET3=m\n",
            dep: debian_modules(".ko", &[EXT4_DEP, XFS_DEP, "kernel/net/8021q/8021q"]),
            builtin: String::new(),
            initrd: (
                format!("boot/initrd.img-{DEB12_K}"),
                initramfs_image(
                    DEB12_K,
                    &[
                        "kernel/drivers/block/virtio_blk.ko",
                        "kernel/fs/ext4/ext4.ko",
                        "kernel/fs/jbd2/jbd2.ko",
                        "kernel/fs/mbcache.ko",
                    ],
                ),
            ),
        },
    );
    t.link("vmlinuz", &format!("boot/vmlinuz-{DEB12_K}"));
    t.link("initrd.img", &format!("boot/initrd.img-{DEB12_K}"));
    t.file(
        "etc/initramfs-tools/initramfs.conf",
        &initramfs_conf("dep", "zstd"),
    );
    t.file("etc/initramfs-tools/modules", INITRAMFS_MODULES_HEAD);
    debian_tools(t);
}

fn debian12_guest() -> Guest {
    Guest {
        name: "Debian 12 (systemd-networkd) from KVM",
        kernel: DEB12_K,
        build: debian12_kvm,
        os_family: "debian",
        os_version: "12",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/vda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 26843545600u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/vda1", "fsType": "ext4",
                  "sourceUuid": DEB12_ROOT, "targetUuid": DEB12_ROOT, "mountPoint": "/" },
                { "number": 2, "sourceDevice": "/dev/vda2", "fsType": "" },
                { "number": 5, "sourceDevice": "/dev/vda5", "fsType": "swap",
                  "sourceUuid": DEB12_SWAP, "targetUuid": DEB12_SWAP } ] },
            { "sourceDevice": "/dev/vdb", "target": { "controller": "scsi0", "unit": 1 },
              "capacityBytes": 107374182400u64, "boot": false,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/vdb1", "fsType": "xfs",
                  "sourceUuid": DEB12_DATA_SRC, "targetUuid": DEB12_DATA_TGT,
                  "mountPoint": "/srv/data" } ] }
        ]),
        nic: ("lan0", DEB12_MAC),
        fstab_gone: &["/dev/vdb1"],
        fstab_has: &[
            "UUID=0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0   /srv/data    xfs   defaults,noatime   0  2\n",
            "/dev/vdc1\t/backup\text4\tdefaults,nofail\t0\t2\n",
            DEB12_TMPFS,
        ],
        net_files: &[
            "etc/systemd/network/10-eth0.link",
            "etc/systemd/network/20-eth0.network",
        ],
        net_renamed_from: &[
            "etc/systemd/network/10-lan0.link",
            "etc/systemd/network/20-lan0.network",
            "etc/systemd/network/30-lan0.30.netdev",
            "etc/systemd/network/31-lan0.30.network",
        ],
        net_has_mac: true,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &[],
        initramfs_tool: "update-initramfs",
        mkconfig: "grub-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn debian12_networkd_link_vlan_modules_dep_unreplicated_disk() {
    check_guest(debian12_guest());
    run_again(&debian12_guest(), as_written, |o| {
        let dir = "etc/systemd/network";
        o.has(
            &format!("{dir}/10-eth0.link"),
            "[Match]\nMACAddress=00:50:56:9a:00:01\n\n[Link]\nName=eth0\n",
        );
        o.has(&format!("{dir}/20-eth0.network"), "Name=eth0\n");
        o.has(&format!("{dir}/20-eth0.network"), "VLAN=eth0.30\n");
        o.has(
            &format!("{dir}/30-eth0.30.netdev"),
            "[NetDev]\nName=eth0.30\nKind=vlan\n",
        );
        o.has(
            &format!("{dir}/31-eth0.30.network"),
            "[Match]\nName=eth0.30\n",
        );
        o.has(&format!("{dir}/10-osam-eth0.link"), "Name=eth0\n");
        o.warned("fstab.device_not_replicated", "/dev/vdc1");
        o.has("etc/fstab", DEB12_TMPFS);
        o.has(
            "etc/initramfs-tools/conf.d/resume",
            &format!("RESUME=UUID={DEB12_SWAP}\n"),
        );
        // MODULES=dep guesses from the hardware at hand: the modules file
        // makes sure.
        o.has("etc/initramfs-tools/initramfs.conf", "\nMODULES=dep\n");
        o.has(
            "etc/initramfs-tools/modules",
            "# Added by the OSAM fixup stack (VMware target):\nvmw_pvscsi\nsd_mod\n",
        );
        o.ran(&["/usr/sbin/update-initramfs", "-u", "-k", DEB12_K]);
        o.has("etc/default/grub", "\nGRUB_DISABLE_OS_PROBER=true\n");
    });
}

// ---------------------------------------------------------------------------
// SLES 12 SP5 from KVM (virtio-scsi): btrfs root with `subvol=@/…`
// entries, swap and resume by /dev/disk/by-id, SUSE's ifcfg-eth0 and
// routes, persistent-net rules, dracut, /etc/sysconfig/bootloader

const SLES12_K: &str = "4.12.14-122.183-default";
const SLES12_ROOT: &str = "e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7";
const SLES12_SWAP: &str = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
const SLES12_MAC: &str = "52:54:00:3a:9c:d1";
const SLES12_BYID: &str = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-0-0-0";
const SLES12_SUBVOLS: &[&str] = &[
    "boot/grub2/i386-pc",
    "boot/grub2/x86_64-efi",
    "home",
    "opt",
    "srv",
    "tmp",
    "usr/local",
    "var/cache",
    "var/crash",
    "var/lib/libvirt/images",
    "var/lib/machines",
    "var/lib/mailman",
    "var/lib/mariadb",
    "var/lib/mysql",
    "var/lib/named",
    "var/lib/pgsql",
    "var/log",
    "var/opt",
    "var/spool",
    "var/tmp",
    ".snapshots",
];

fn sles12_kvm(t: &Tree) {
    split_usr(t);
    t.tools(&["usr/lib/systemd/systemd", "usr/bin/systemctl"]);
    t.link("sbin/init", "/usr/lib/systemd/systemd");
    for target in ["multi-user", "graphical", "rescue"] {
        t.file(
            &format!("usr/lib/systemd/system/{target}.target"),
            "[Unit]\n",
        );
    }
    t.link(
        "etc/systemd/system/default.target",
        "/usr/lib/systemd/system/multi-user.target",
    );
    t.file(
        "etc/os-release",
        "NAME=\"SLES\"\nVERSION=\"12-SP5\"\nVERSION_ID=\"12.5\"\n\
         PRETTY_NAME=\"SUSE Linux Enterprise Server 12 SP5\"\nID=\"sles\"\n\
         ANSI_COLOR=\"0;32\"\nCPE_NAME=\"cpe:/o:suse:sles:12:sp5\"\n",
    );
    t.file(
        "etc/SuSE-release",
        "SUSE Linux Enterprise Server 12 (x86_64)\nVERSION = 12\nPATCHLEVEL = 5\n\
         # This file is deprecated and will be removed in a future service pack or release.\n\
         # Please check /etc/os-release for details about this release.\n",
    );
    let mut fstab = format!("UUID={SLES12_ROOT} / btrfs defaults 0 0\n");
    for sv in SLES12_SUBVOLS {
        fstab.push_str(&format!(
            "UUID={SLES12_ROOT} /{sv} btrfs subvol=@/{sv} 0 0\n"
        ));
    }
    fstab.push_str(&format!("{SLES12_BYID}-part3 swap swap defaults 0 0\n"));
    t.file("etc/fstab", &fstab);
    t.file(
        "etc/sysconfig/network/ifcfg-eth0",
        "BOOTPROTO='static'\nBROADCAST=''\nETHTOOL_OPTIONS=''\nIPADDR='172.20.1.15/24'\n\
         MTU=''\nNAME=''\nNETMASK=''\nNETWORK=''\nREMOTE_IPADDR=''\nSTARTMODE='auto'\n\
         DHCLIENT_SET_DEFAULT_ROUTE='yes'\n",
    );
    t.file(
        "etc/sysconfig/network/ifcfg-lo",
        "IPADDR=127.0.0.1\nNETMASK=255.0.0.0\nNETWORK=127.0.0.0\nSTARTMODE=nfsroot\n\
         BOOTPROTO=static\nUSERCONTROL=no\nFIREWALL=no\n",
    );
    t.file(
        "etc/sysconfig/network/routes",
        "default 172.20.1.1 - eth0\n",
    );
    t.file(
        "etc/sysconfig/network/config",
        "## Type:        yesno\n## Default:     yes\n#\nCHECK_DUPLICATE_IP=\"yes\"\n\
         NETCONFIG_MODULES_ORDER=\"dns-resolver dns-bind dns-dnsmasq nis ntp-runtime\"\n",
    );
    t.file(
        "etc/udev/rules.d/70-persistent-net.rules",
        &format!(
            "# This file was automatically generated by the /usr/lib/udev/write_net_rules\n\
             # program, run by the persistent-net-generator.rules rules file.\n#\n\
             # You can modify it, as long as you keep each rule on a single\n\
             # line, and change only the value of the NAME= key.\n\n\
             # PCI device 0x1af4:0x1000 (virtio-pci)\n\
             SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{{address}}==\"{SLES12_MAC}\", ATTR{{dev_id}}==\"0x0\", ATTR{{type}}==\"1\", KERNEL==\"eth*\", NAME=\"eth0\"\n"
        ),
    );
    t.file(
        "etc/default/grub",
        &format!(
            "# If you change this file, run 'grub2-mkconfig -o /boot/grub2/grub.cfg' afterwards to update\n\
             # /boot/grub2/grub.cfg.\n\n\
             # Uncomment to set your own custom distributor. If you leave it unset or empty, the default\n\
             # policy is to determine the value from /etc/os-release\nGRUB_DISTRIBUTOR=\n\
             GRUB_DEFAULT=saved\nGRUB_HIDDEN_TIMEOUT=0\nGRUB_HIDDEN_TIMEOUT_QUIET=true\nGRUB_TIMEOUT=8\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"resume={SLES12_BYID}-part3 splash=silent quiet showopts crashkernel=175M,high crashkernel=72M,low\"\n\
             GRUB_CMDLINE_LINUX=\"\"\n\n\
             # Uncomment to automatically save last booted menu entry in GRUB2 environment\n\
             # variable `saved_entry'\n# GRUB_SAVEDEFAULT=\"true\"\n\
             GRUB_TERMINAL=\"gfxterm\"\nGRUB_GFXMODE=\"auto\"\n\
             GRUB_BACKGROUND=/boot/grub2/themes/SLE/background.png\n\
             GRUB_THEME=/boot/grub2/themes/SLE/theme.txt\n\
             SUSE_BTRFS_SNAPSHOT_BOOTING=\"true\"\nGRUB_DISABLE_OS_PROBER=\"false\"\n"
        ),
    );
    t.file(
        "etc/sysconfig/bootloader",
        "## Path:\tSystem/Bootloader\n## Description:\tBootloader configuration\n\
         ## Type:\tlist(grub,grub2,grub2-efi,none)\n## Default:\tgrub2\n#\n\
         # Type of bootloader in use.\n#\nLOADER_TYPE=\"grub2\"\n\n\
         ## Path:\tSystem/Bootloader\n## Description:\tBootloader configuration\n\
         ## Type:\tyesno\n## Default:\t\"no\"\n#\n# Enable UEFI Secure Boot support\n#\n\
         SECURE_BOOT=\"no\"\n\n\
         ## Path:\tSystem/Bootloader\n## Description:\tBootloader configuration\n\
         ## Type:\tyesno\n## Default:\t\"no\"\n#\n# Enable Trusted Boot support\n#\n\
         TRUSTED_BOOT=\"no\"\n",
    );
    t.file(
        "boot/grub2/grub.cfg",
        &format!(
            "### BEGIN /etc/grub.d/10_linux ###\n\
             menuentry 'SLES 12-SP5' --class sles --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple-{SLES12_ROOT}' {{\n\
             \tload_video\n\tset gfxpayload=keep\n\tinsmod gzio\n\tinsmod part_msdos\n\tinsmod btrfs\n\
             \tsearch --no-floppy --fs-uuid --set=root {SLES12_ROOT}\n\
             \techo\t'Loading Linux {SLES12_K} ...'\n\
             \tlinux\t/boot/vmlinuz-{SLES12_K} root=UUID={SLES12_ROOT} ${{extra_cmdline}} resume={SLES12_BYID}-part3 splash=silent quiet showopts crashkernel=175M,high crashkernel=72M,low\n\
             \techo\t'Loading initial ramdisk ...'\n\
             \tinitrd\t/boot/initrd-{SLES12_K}\n}}\n### END /etc/grub.d/10_linux ###\n"
        ),
    );
    t.file("boot/grub2/grubenv", &grubenv("saved_entry=SLES 12-SP5\n"));
    t.file("boot/grub2/i386-pc/normal.mod", "");
    t.file("boot/grub2/x86_64-efi/normal.mod", "");
    t.file("usr/lib/grub2/i386-pc/normal.mod", "");
    t.file("usr/lib/grub2/i386-pc/boot.img", "");
    let ext = ".ko";
    install_kernel(
        t,
        Kernel {
            version: SLES12_K,
            modules_dir: "lib/modules",
            config: "CONFIG_X86_64=y\nCONFIG_BTRFS_FS=m\nCONFIG_VMWARE_PVSCSI=m\nCONFIG_VMXNET3=m\n",
            dep: dep(
                ext,
                &[
                    "kernel/drivers/scsi/vmw_pvscsi",
                    "kernel/drivers/scsi/virtio_scsi",
                    "kernel/drivers/net/vmxnet3/vmxnet3",
                    "kernel/drivers/net/virtio_net",
                    "kernel/drivers/scsi/sd_mod",
                    "kernel/drivers/md/dm-mod",
                    "kernel/fs/btrfs/btrfs kernel/lib/raid6/raid6_pq kernel/crypto/xor kernel/lib/libcrc32c",
                    "kernel/lib/raid6/raid6_pq",
                    "kernel/crypto/xor",
                    "kernel/lib/libcrc32c",
                ],
            ),
            builtin: builtin(&["kernel/drivers/scsi/scsi_mod"]),
            initrd: (
                format!("boot/initrd-{SLES12_K}"),
                initramfs_image(
                    SLES12_K,
                    &[
                        "kernel/drivers/scsi/virtio_scsi.ko",
                        "kernel/drivers/scsi/sd_mod.ko",
                        "kernel/fs/btrfs/btrfs.ko",
                        "kernel/lib/raid6/raid6_pq.ko",
                        "kernel/crypto/xor.ko",
                        "kernel/lib/libcrc32c.ko",
                    ],
                ),
            ),
        },
    );
    t.link("boot/vmlinuz", &format!("vmlinuz-{SLES12_K}"));
    t.link("boot/initrd", &format!("initrd-{SLES12_K}"));
    t.tools(&[
        "usr/bin/dracut",
        "sbin/mkinitrd",
        "usr/sbin/grub2-mkconfig",
        "usr/sbin/grub2-install",
    ]);
    t.file(
        "etc/dracut.conf",
        "# PUT YOUR CONFIG IN separate files\n# in /etc/dracut.conf.d named \"<name>.conf\"\n",
    );
    t.file(
        "etc/dracut.conf.d/01-dist.conf",
        "# SUSE specifc dracut settings\nhostonly=\"yes\"\nhostonly_cmdline=\"yes\"\n",
    );
    t.file(
        "etc/sysconfig/kernel",
        "## Type:        string\n## Default:     \"\"\n#\nINITRD_MODULES=\"\"\n\
         MODULES_LOADED_ON_BOOT=\"\"\n",
    );
}

fn sles12_guest() -> Guest {
    Guest {
        name: "SLES 12 SP5 (btrfs) from KVM",
        kernel: SLES12_K,
        build: sles12_kvm,
        os_family: "suse",
        os_version: "12.5",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 42949672960u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "btrfs",
                  "sourceUuid": SLES12_ROOT, "targetUuid": SLES12_ROOT, "mountPoint": "/" },
                { "number": 3, "sourceDevice": "/dev/sda3", "fsType": "swap",
                  "sourceUuid": SLES12_SWAP, "targetUuid": SLES12_SWAP } ] }
        ]),
        nic: ("eth0", SLES12_MAC),
        fstab_gone: &["/dev/disk/by-id/"],
        fstab_has: &[
            "UUID=5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d swap swap defaults 0 0\n",
            "UUID=e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7 /var/log btrfs subvol=@/var/log 0 0\n",
            "UUID=e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7 /.snapshots btrfs subvol=@/.snapshots 0 0\n",
        ],
        net_files: &[
            "etc/sysconfig/network/ifcfg-eth0",
            "etc/udev/rules.d/70-persistent-net.rules",
        ],
        net_renamed_from: &[],
        net_has_mac: true,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &["by-id"],
        initramfs_tool: "dracut",
        mkconfig: "grub2-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn sles12_btrfs_subvolumes_by_id_swap_ifcfg_dracut() {
    check_guest(sles12_guest());
    run_again(&sles12_guest(), as_written, |o| {
        // Every subvolume line is kept as it is.
        for sv in SLES12_SUBVOLS {
            o.has(
                "etc/fstab",
                &format!("UUID={SLES12_ROOT} /{sv} btrfs subvol=@/{sv} 0 0\n"),
            );
        }
        o.has(
            "etc/default/grub",
            &format!(
                "GRUB_CMDLINE_LINUX_DEFAULT=\"resume=UUID={SLES12_SWAP} splash=silent quiet showopts crashkernel=175M,high crashkernel=72M,low\"\n"
            ),
        );
        o.has("etc/default/grub", "\nGRUB_DISABLE_OS_PROBER=true\n");
        o.has("etc/sysconfig/bootloader", "LOADER_TYPE=\"grub2\"\n");
        o.has(
            "etc/sysconfig/network/routes",
            "default 172.20.1.1 - eth0\n",
        );
        o.has(
            "etc/sysconfig/network/ifcfg-eth0",
            "IPADDR='172.20.1.15/24'\n",
        );
        o.lacks("etc/udev/rules.d/70-persistent-net.rules", SLES12_MAC);
        o.has(
            "etc/dracut.conf.d/90-osam.conf",
            "add_drivers+=\" vmw_pvscsi sd_mod btrfs \"\n",
        );
        o.ran(&[
            "/usr/bin/dracut",
            "-f",
            "--add-drivers",
            "vmw_pvscsi sd_mod btrfs",
            &format!("/boot/initrd-{SLES12_K}"),
            SLES12_K,
        ]);
        o.ran(&["grub2-install", "--target=i386-pc", "/dev/sda"]);
        o.ran(&["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]);
        o.has(
            "etc/systemd/network/10-osam-eth0.link",
            "MACAddress=00:50:56:9a:00:01\n",
        );
    });
}
