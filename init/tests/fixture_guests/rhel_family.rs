//! Fixture guests: rhel_family (see the parent file for the harness).
//!
//! Each guest goes through the harness's `check_guest` (with its own
//! firmware, BIOS or UEFI, on both sides), and
//! then through a second run of its own ([`Run`]) for what only this guest
//! shows: the concrete lines of the files it changed, the commands named
//! after its kernels, an EFI target where the guest boots with UEFI, and
//! again a byte-for-byte undo.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

// ---------------------------------------------------------------------------
// The second run

/// A run of `fixupctl run --no-commands` on a fresh copy of a guest, with
/// the source and target firmware chosen here, collecting failed checks.
struct Run {
    name: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    root: PathBuf,
    res: Value,
    before: BTreeMap<PathBuf, common::Node>,
    failures: Vec<String>,
}

impl Run {
    fn new(g: &Guest, firmware: &str) -> Run {
        let sysroot = tempfile::tempdir().unwrap();
        let fixup = tempfile::tempdir().unwrap();
        let root = sysroot.path().to_path_buf();
        (g.build)(&Tree::new(&root));
        write_inputs(fixup.path(), g);
        let sys_path = fixup.path().join("system-configuration.json");
        let mut sys: Value = serde_json::from_slice(&fs::read(&sys_path).unwrap()).unwrap();
        sys["source"]["firmware"] = json!(firmware);
        sys["target"]["firmware"] = json!(firmware);
        fs::write(&sys_path, serde_json::to_vec_pretty(&sys).unwrap()).unwrap();
        let before = snapshot(&root);
        let out = Command::new(FIXUPCTL)
            .args(["run", "--no-commands", "--sysroot"])
            .arg(&root)
            .arg("--fixup-dir")
            .arg(fixup.path())
            .output()
            .unwrap();
        let res: Value =
            serde_json::from_slice(&fs::read(fixup.path().join("result.json")).unwrap()).unwrap();
        let mut run = Run {
            name: format!("{} ({firmware} target)", g.name),
            _dirs: (sysroot, fixup),
            root,
            res,
            before,
            failures: Vec::new(),
        };
        let ok = out.status.success() && run.res["status"] == "success";
        run.check("run succeeds", ok, format!("{out:?}"));
        run
    }

    fn check(&mut self, what: &str, ok: bool, detail: impl Display) {
        if !ok {
            self.failures.push(format!("{what}: {detail}"));
        }
    }

    fn text(&self, p: &str) -> String {
        read(&self.root, p)
    }

    fn exists(&self, p: &str) -> bool {
        fs::symlink_metadata(self.root.join(p)).is_ok()
    }

    /// The file holds this whole line.
    fn has_line(&mut self, p: &str, line: &str) {
        let text = self.text(p);
        let ok = text.lines().any(|l| l == line);
        self.check(&format!("{p} has the line {line:?}"), ok, text);
    }

    /// The file holds `s` somewhere.
    fn has(&mut self, p: &str, s: &str) {
        let text = self.text(p);
        let ok = text.contains(s);
        self.check(&format!("{p} holds {s:?}"), ok, text);
    }

    /// No line of the file that is not a comment holds `s`.
    fn lacks(&mut self, p: &str, s: &str) {
        let text = self.text(p);
        let ok = !text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains(s));
        self.check(&format!("{p} no longer holds {s:?}"), ok, text);
    }

    /// The file is as the guest had it.
    fn unchanged(&mut self, p: &str) {
        let now = snapshot_one(&self.root, p);
        let was = self.before.get(Path::new(p)).cloned();
        self.check(
            &format!("{p} unchanged"),
            now.is_some() && now == was,
            format!("{:?}", now.map(|_| self.text(p))),
        );
    }

    fn mode(&self, p: &str) -> u32 {
        fs::metadata(self.root.join(p))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0)
    }

    /// Every planned command's argv, in order.
    fn cmds(&self) -> Vec<Vec<String>> {
        self.res["steps"]
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
            .collect()
    }

    /// The planned commands whose program name ends with `tool`.
    fn cmds_of(&self, tool: &str) -> Vec<Vec<String>> {
        self.cmds()
            .into_iter()
            .filter(|c| c[0].ends_with(tool))
            .collect()
    }

    /// A planned command is exactly this argv.
    fn ran(&mut self, argv: &[&str]) {
        let cmds = self.cmds();
        let ok = cmds.iter().any(|c| c == argv);
        self.check(&format!("command {argv:?}"), ok, format!("{cmds:?}"));
    }

    /// No planned command's program ends with `tool`.
    fn not_ran(&mut self, tool: &str) {
        let found = self.cmds_of(tool);
        self.check(
            &format!("no {tool} command"),
            found.is_empty(),
            format!("{found:?}"),
        );
    }

    /// The run warned with exactly these codes (each at least once),
    /// leaving out `known_bugs`, which the engine gives wrongly (see each
    /// guest's `// BUG:`) and which are not asserted either way.
    fn warnings_are(&mut self, want: &[&str], known_bugs: &[&str]) {
        let got: BTreeSet<String> = self.res["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["code"].as_str().unwrap_or_default().to_string())
            .filter(|c| !known_bugs.contains(&c.as_str()))
            .collect();
        let want: BTreeSet<String> = want.iter().map(|c| c.to_string()).collect();
        let all = self.res["warnings"].to_string();
        self.check(
            "warning codes",
            got == want,
            format!("{got:?} != {want:?}: {all}"),
        );
    }

    /// `fixupctl undo` puts every byte back; then every failed check is
    /// reported at once.
    fn finish(mut self) {
        let out = Command::new(FIXUPCTL)
            .args(["undo", "--sysroot"])
            .arg(&self.root)
            .output()
            .unwrap();
        self.check("undo exit", out.status.success(), format!("{out:?}"));
        let d = diff(&self.before, &snapshot(&self.root));
        self.check("undo byte for byte", d.is_empty(), d.join("\n"));
        assert!(
            self.failures.is_empty(),
            "{}: {} check(s) failed:\n{}\n\nresult.json: {:#}",
            self.name,
            self.failures.len(),
            self.failures.join("\n---\n"),
            self.res
        );
    }
}

/// The snapshot entry of one path (as [`snapshot`] records it).
fn snapshot_one(root: &Path, p: &str) -> Option<common::Node> {
    let full = root.join(p);
    let md = fs::symlink_metadata(&full).ok()?;
    Some(if md.file_type().is_symlink() {
        common::Node::Link(fs::read_link(&full).ok()?)
    } else {
        common::Node::File {
            data: fs::read(&full).ok()?,
            mode: md.permissions().mode() & 0o7777,
        }
    })
}

/// One EFI binary: a PE header and a name, so copies can be told apart.
fn efi_binary(name: &str) -> Vec<u8> {
    let mut b = b"MZ\x90\x00PE\x00\x00".to_vec();
    b.extend_from_slice(name.as_bytes());
    b
}

const SELINUX_ENFORCING: &str = "\n# This file controls the state of SELinux on the system.\n\
# SELINUX= can take one of these three values:\n\
#     enforcing - SELinux security policy is enforced.\n\
#     permissive - SELinux prints warnings instead of enforcing.\n\
#     disabled - No SELinux policy is loaded.\n\
SELINUX=enforcing\n\
# SELINUXTYPE= can take one of these three values:\n\
#     targeted - Targeted processes are protected,\n\
#     minimum - Modification of targeted policy. Only selected processes are protected. \n\
#     mls - Multi Level Security protection.\n\
SELINUXTYPE=targeted \n\n";

/// systemd's default target (multi-user) and the rescue target stage 2
/// switches to.
fn systemd_targets(t: &Tree) {
    t.link(
        "etc/systemd/system/default.target",
        "/usr/lib/systemd/system/multi-user.target",
    );
    t.file("usr/lib/systemd/system/multi-user.target", "[Unit]\n");
    t.file("usr/lib/systemd/system/rescue.target", "[Unit]\n");
}

// ---------------------------------------------------------------------------
// RHEL 6.10 from RHEV (KVM): virtio disks, GRUB legacy, upstart, a NIC that
// was replaced once (70-persistent-net.rules holds eth0 for the old MAC and
// eth1 for the current one), the root file system re-created at file level.

const RHEL6_K: &str = "2.6.32-754.35.1.el6.x86_64";
const RHEL6_BOOT_UUID: &str = "8c1d5e2a-4b7f-4c39-a1e6-2f9d0b3c4a51";
const RHEL6_ROOT_SRC: &str = "e3b0c442-98fc-4c14-9afb-f4c8996fb924";
const RHEL6_ROOT_TGT: &str = "5d2c7a1e-0f4b-4e8a-b3d6-9c1e2f3a4b5c";
const RHEL6_SWAP_UUID: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const RHEL6_U01_UUID: &str = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
const RHEL6_OLD_MAC: &str = "00:1a:4a:16:01:0f";
const RHEL6_MAC: &str = "00:1a:4a:16:01:51";

fn rhel6(t: &Tree) {
    // No merged /usr; /sbin/init is upstart's own binary.
    t.elf_x86_64("bin/bash");
    t.link("bin/sh", "bash");
    t.elf_x86_64("sbin/init");
    t.tools(&[
        "sbin/initctl",
        "sbin/dracut",
        "sbin/mkinitrd",
        "sbin/grub",
        "sbin/grub-install",
        "sbin/new-kernel-pkg",
        "sbin/udevadm",
    ]);
    t.file(
        "etc/redhat-release",
        "Red Hat Enterprise Linux Server release 6.10 (Santiago)\n",
    );
    t.link("etc/system-release", "redhat-release");
    t.file(
        "etc/system-release-cpe",
        "cpe:/o:redhat:enterprise_linux:6server:ga:server\n",
    );
    t.file(
        "etc/fstab",
        &format!(
            "\n#\n# /etc/fstab\n# Created by anaconda on Wed Jul 11 09:14:27 2018\n#\n\
             # Accessible filesystems, by reference, are maintained under '/dev/disk'\n\
             # See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info\n#\n\
             UUID={RHEL6_ROOT_SRC} /                       ext4    defaults        1 1\n\
             UUID={RHEL6_BOOT_UUID} /boot                   ext4    defaults        1 2\n\
             UUID={RHEL6_SWAP_UUID} swap                    swap    defaults        0 0\n\
             tmpfs                   /dev/shm                tmpfs   defaults        0 0\n\
             devpts                  /dev/pts                devpts  gid=5,mode=620  0 0\n\
             sysfs                   /sys                    sysfs   defaults        0 0\n\
             proc                    /proc                   proc    defaults        0 0\n\
             /dev/vdb1               /u01                    ext4    defaults        1 2\n\
             nfs01.example.com:/export/backup /backup nfs rw,hard,intr,_netdev 0 0\n"
        ),
    );
    // The current NIC, eth1 since the first one was replaced; the old
    // eth0's file is still there, for a MAC that no longer exists.
    t.file(
        "etc/sysconfig/network-scripts/ifcfg-eth1",
        "DEVICE=eth1\nHWADDR=00:1A:4A:16:01:51\nTYPE=Ethernet\n\
         UUID=4f6e3d2c-1b0a-4998-8776-5544332211ff\nONBOOT=yes\nNM_CONTROLLED=no\n\
         BOOTPROTO=none\nIPADDR=10.20.30.41\nNETMASK=255.255.255.0\nGATEWAY=10.20.30.1\n\
         DNS1=10.20.30.2\nDOMAIN=example.com\nDEFROUTE=yes\nIPV4_FAILURE_FATAL=yes\n\
         IPV6INIT=no\nNAME=\"System eth1\"\n",
    );
    t.file(
        "etc/sysconfig/network-scripts/route-eth1",
        "10.50.0.0/16 via 10.20.30.254 dev eth1\n",
    );
    t.file(
        "etc/sysconfig/network-scripts/ifcfg-eth0",
        "DEVICE=eth0\nHWADDR=00:1A:4A:16:01:0F\nTYPE=Ethernet\n\
         UUID=0c2e4a6b-8d1f-4335-9577-b9daf1c3e5a7\nONBOOT=no\nNM_CONTROLLED=no\n\
         BOOTPROTO=dhcp\n",
    );
    t.file(
        "etc/sysconfig/network-scripts/ifcfg-lo",
        "DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nNETWORK=127.0.0.0\n\
         # If you're having problems with gated making 127.0.0.0/8 a martian,\n\
         # you can change this to something else (255.255.255.255, for example)\n\
         BROADCAST=127.255.255.255\nONBOOT=yes\nNAME=loopback\n",
    );
    t.file(
        "etc/sysconfig/network",
        "NETWORKING=yes\nHOSTNAME=db01.example.com\nGATEWAYDEV=eth1\n",
    );
    t.file(
        "etc/udev/rules.d/70-persistent-net.rules",
        &format!(
            "# This file was automatically generated by the /lib/udev/write_net_rules\n\
             # program, run by the persistent-net-generator.rules rules file.\n#\n\
             # You can modify it, as long as you keep each rule on a single\n\
             # line, and change only the value of the NAME= key.\n\n\
             # PCI device 0x1af4:0x1000 (virtio-pci)\n\
             SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{{address}}==\"{RHEL6_OLD_MAC}\", ATTR{{type}}==\"1\", KERNEL==\"eth*\", NAME=\"eth0\"\n\n\
             # PCI device 0x1af4:0x1000 (virtio-pci)\n\
             SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{{address}}==\"{RHEL6_MAC}\", ATTR{{type}}==\"1\", KERNEL==\"eth*\", NAME=\"eth1\"\n"
        ),
    );
    t.file(
        "etc/udev/rules.d/70-persistent-cd.rules",
        "# This file was automatically generated by the /lib/udev/write_cd_rules\n\
         # program, run by the cdrom-id-generator.rules rules file.\n\n\
         # virtio CD-ROM\n\
         SUBSYSTEM==\"block\", ENV{ID_CDROM}==\"?*\", ENV{ID_PATH}==\"pci-0000:00:01.1-scsi-1:0:0:0\", SYMLINK+=\"cdrom\", ENV{GENERATED}=\"1\"\n",
    );
    t.file(
        "etc/inittab",
        "# inittab is only used by upstart for the default runlevel.\n#\n\
         # ADDING OTHER CONFIGURATION HERE WILL HAVE NO EFFECT ON YOUR SYSTEM.\n#\n\
         # System initialization is started by /etc/init/rcS.conf\n#\n\
         # Individual runlevels are started by /etc/init/rc.conf\n#\n\
         # Ctrl-Alt-Delete is handled by /etc/init/control-alt-delete.conf\n#\n\
         # Terminal gettys are handled by /etc/init/tty.conf and /etc/init/serial.conf,\n\
         # with configuration in /etc/sysconfig/init.\n#\n\
         # For information on how to write upstart event handlers, or how\n\
         # upstart works, see init(5), init(8), and initctl(8).\n#\n\
         # Default runlevel. The runlevels used are:\n\
         #   0 - halt (Do NOT set initdefault to this)\n\
         #   1 - Single user mode\n\
         #   2 - Multiuser, without NFS (The same as 3, if you do not have networking)\n\
         #   3 - Full multiuser mode\n\
         #   4 - unused\n\
         #   5 - X11\n\
         #   6 - reboot (Do NOT set initdefault to this)\n# \n\
         id:3:initdefault:\n",
    );
    t.file(
        "etc/init/rcS.conf",
        "# rcS - runlevel compatibility\n\nstart on startup\n\nstop on runlevel\n\ntask\n",
    );
    t.file(
        "etc/init/rc.conf",
        "# rc - System V runlevel compatibility\n\nstart on runlevel [0123456]\n\n\
         stop on runlevel [!$RUNLEVEL]\n\ntask\n\nexport RUNLEVEL\nconsole output\n\
         exec /etc/rc.d/rc $RUNLEVEL\n",
    );
    t.file("etc/sysconfig/init", "BOOTUP=color\nSINGLE=/sbin/sushell\n");
    t.file("etc/rc.d/init.d/network", "#! /bin/bash\n");
    t.link("etc/init.d", "rc.d/init.d");
    t.link("etc/rc.d/rc1.d/K90network", "../init.d/network");
    t.link("etc/rc.d/rc3.d/S10network", "../init.d/network");
    t.file("etc/selinux/config", SELINUX_ENFORCING);
    // GRUB legacy: grub.conf, menu.lst and /etc/grub.conf point at it.
    t.file(
        "boot/grub/grub.conf",
        &format!(
            "# grub.conf generated by anaconda\n#\n\
             # Note that you do not have to rerun grub after making changes to this file\n\
             # NOTICE:  You have a /boot partition.  This means that\n\
             #          all kernel and initrd paths are relative to /boot/, eg.\n\
             #          root (hd0,0)\n\
             #          kernel /vmlinuz-version ro root=/dev/vda2\n\
             #          initrd /initrd-[generic-]version.img\n\
             #boot=/dev/vda\ndefault=0\ntimeout=5\nsplashimage=(hd0,0)/grub/splash.xpm.gz\nhiddenmenu\n\
             title Red Hat Enterprise Linux 6 ({RHEL6_K})\n\
             \troot (hd0,0)\n\
             \tkernel /vmlinuz-{RHEL6_K} ro root=UUID={RHEL6_ROOT_SRC} rd_NO_LUKS rd_NO_LVM LANG=en_US.UTF-8 rd_NO_MD console=ttyS0,115200 console=tty0 SYSFONT=latarcyrheb-sun16 crashkernel=auto  KEYBOARDTYPE=pc KEYTABLE=us rd_NO_DM\n\
             \tinitrd /initramfs-{RHEL6_K}.img\n"
        ),
    );
    t.link("boot/grub/menu.lst", "./grub.conf");
    t.link("etc/grub.conf", "../boot/grub/grub.conf");
    t.file(
        "boot/grub/device.map",
        "# this device map was generated by anaconda\n(hd0)     /dev/vda\n",
    );
    for f in ["stage1", "stage2", "e2fs_stage1_5", "xfs_stage1_5"] {
        t.file(&format!("boot/grub/{f}"), "");
    }
    t.file("boot/grub/splash.xpm.gz", "");
    kernel(
        t,
        "lib/modules",
        RHEL6_K,
        ".ko",
        "ext4",
        &format!("boot/initramfs-{RHEL6_K}.img"),
    );
    t.file(
        "boot/.vmlinuz-2.6.32-754.35.1.el6.x86_64.hmac",
        "0123456789abcdef  vmlinuz-2.6.32-754.35.1.el6.x86_64\n",
    );
    t.file(
        "etc/sysconfig/kernel",
        "# UPDATEDEFAULT specifies if new-kernel-pkg should make\n\
         # new kernels the default\nUPDATEDEFAULT=yes\n\n\
         # DEFAULTKERNEL specifies the default kernel package type\nDEFAULTKERNEL=kernel\n",
    );
    t.file("etc/dracut.conf", "# Sample dracut config file\n\n");
    t.dir("etc/dracut.conf.d");
    t.file("etc/modprobe.d/dist.conf", "alias char-major-10-1 psaux\n");
}

fn rhel6_guest() -> Guest {
    Guest {
        name: "RHEL 6.10 from RHEV",
        kernel: RHEL6_K,
        build: rhel6,
        os_family: "rhel",
        os_version: "6.10",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/vda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 34359738368u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/vda1", "fsType": "ext4",
                  "sourceUuid": RHEL6_BOOT_UUID, "targetUuid": RHEL6_BOOT_UUID, "mountPoint": "/boot" },
                // Re-created at file level: a new UUID.
                { "number": 2, "sourceDevice": "/dev/vda2", "fsType": "ext4",
                  "sourceUuid": RHEL6_ROOT_SRC, "targetUuid": RHEL6_ROOT_TGT, "mountPoint": "/" },
                { "number": 3, "sourceDevice": "/dev/vda3", "fsType": "swap",
                  "sourceUuid": RHEL6_SWAP_UUID, "targetUuid": RHEL6_SWAP_UUID } ] },
            { "sourceDevice": "/dev/vdb", "target": { "controller": "scsi0", "unit": 1 },
              "capacityBytes": 107374182400u64, "boot": false,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/vdb1", "fsType": "ext4",
                  "sourceUuid": RHEL6_U01_UUID, "targetUuid": RHEL6_U01_UUID, "mountPoint": "/u01" } ] }
        ]),
        nic: ("eth1", RHEL6_MAC),
        fstab_gone: &["/dev/vdb1", RHEL6_ROOT_SRC, "/dev/vda"],
        fstab_has: &[
            "UUID=5d2c7a1e-0f4b-4e8a-b3d6-9c1e2f3a4b5c /                       ext4    defaults        1 1\n",
            "UUID=9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a               /u01                    ext4    defaults        1 2\n",
            "\nnfs01.example.com:/export/backup /backup nfs rw,hard,intr,_netdev 0 0\n",
            "\ntmpfs                   /dev/shm                tmpfs   defaults        0 0\n",
        ],
        net_files: &["etc/sysconfig/network-scripts/ifcfg-eth0"],
        net_renamed_from: &["etc/sysconfig/network-scripts/ifcfg-eth1"],
        net_has_mac: true,
        cmdline_files: &["boot/grub/grub.conf"],
        cmdline_gone: &[RHEL6_ROOT_SRC],
        initramfs_tool: "dracut",
        // GRUB legacy has no mkconfig: its boot loader command is the
        // `sh -c '… | grub --batch'` install (checked in detail below).
        mkconfig: "sh",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn rhel6_grub_legacy_upstart_replaced_nic_from_rhev() {
    check_guest(rhel6_guest());

    let mut r = Run::new(&rhel6_guest(), "bios");
    let ifcfg = "etc/sysconfig/network-scripts/ifcfg-eth0";
    // The old eth0 file is replaced by the current NIC's, renamed.
    r.has_line(ifcfg, "DEVICE=eth0");
    r.has_line(ifcfg, "HWADDR=00:50:56:9A:00:01");
    r.has_line(ifcfg, "IPADDR=10.20.30.41");
    r.has_line(ifcfg, "NAME=\"System eth0\"");
    r.lacks(ifcfg, "00:1A:4A:16:01:0F");
    let route = "etc/sysconfig/network-scripts/route-eth0";
    r.has_line(route, "10.50.0.0/16 via 10.20.30.254 dev eth0");
    let old_route = !r.exists("etc/sysconfig/network-scripts/route-eth1");
    r.check("route-eth1 renamed", old_route, "still there");
    r.has_line("etc/sysconfig/network", "GATEWAYDEV=eth0");
    r.unchanged("etc/sysconfig/network-scripts/ifcfg-lo");
    // udev: both source rules gone (the old MAC's would take eth0 from
    // the new NIC), the comments kept, one rule for the target MAC.
    let rules = "etc/udev/rules.d/70-persistent-net.rules";
    r.lacks(rules, RHEL6_MAC);
    r.lacks(rules, RHEL6_OLD_MAC);
    r.lacks(rules, "NAME=\"eth1\"");
    r.has(
        rules,
        "# line, and change only the value of the NAME= key.\n",
    );
    r.has_line(
        rules,
        "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"00:50:56:9a:00:01\", ATTR{type}==\"1\", NAME=\"eth0\"",
    );
    r.unchanged("etc/udev/rules.d/70-persistent-cd.rules");
    // GRUB legacy: the kernel line, device.map, the install.
    let conf = "boot/grub/grub.conf";
    r.has_line(
        conf,
        &format!(
            "\tkernel /vmlinuz-{RHEL6_K} ro root=UUID={RHEL6_ROOT_TGT} rd_NO_LUKS rd_NO_LVM LANG=en_US.UTF-8 rd_NO_MD console=ttyS0,115200 console=tty0 SYSFONT=latarcyrheb-sun16 crashkernel=auto  KEYBOARDTYPE=pc KEYTABLE=us rd_NO_DM net.ifnames=0 biosdevname=0"
        ),
    );
    r.has_line(conf, "\troot (hd0,0)");
    r.has_line(conf, "#boot=/dev/vda");
    r.unchanged("boot/grub/menu.lst");
    r.unchanged("etc/grub.conf");
    let map = r.text("boot/grub/device.map");
    r.check(
        "device.map names the target disk",
        map == "# this device map was generated by anaconda\n(hd0)     /dev/sda\n",
        map,
    );
    let installs = r.cmds_of("sh");
    let ok = installs.len() == 1
        && installs[0][2].contains("device (hd0) /dev/sda\\nroot (hd0,0)\\nsetup (hd0)")
        && installs[0][2].contains("grub --batch");
    r.check("grub --batch install", ok, format!("{installs:?}"));
    r.not_ran("grub2-mkconfig");
    r.not_ran("grub-install");
    // dracut for the guest's kernel, by version and image.
    r.ran(&[
        "/sbin/dracut",
        "-f",
        "--add-drivers",
        "vmw_pvscsi sd_mod ext4",
        &format!("/boot/initramfs-{RHEL6_K}.img"),
        RHEL6_K,
    ]);
    r.not_ran("mkinitrd");
    r.has(
        "etc/dracut.conf.d/90-osam.conf",
        "add_drivers+=\" vmw_pvscsi sd_mod ext4 \"",
    );
    // Stage 2 on upstart: run level 1 in inittab, the rc script first in
    // rc1.d, the original run level saved.
    r.has_line("etc/inittab", "id:1:initdefault:");
    r.lacks("etc/inittab", "id:3:initdefault:");
    let saved = r.text(&format!("{}/inittab", common::OSAM_DATA));
    r.check(
        "inittab saved",
        saved.ends_with("\nid:3:initdefault:\n"),
        saved,
    );
    let link = fs::read_link(r.root.join("etc/rc.d/rc1.d/S00osam-stage2"));
    r.check(
        "rc1.d hook",
        link.as_ref()
            .is_ok_and(|l| l == Path::new("/etc/rc.d/init.d/osam-stage2")),
        format!("{link:?}"),
    );
    let mode = r.mode("etc/rc.d/init.d/osam-stage2");
    r.check("rc script executable", mode == 0o755, format!("{mode:o}"));
    r.has_line("etc/selinux/config", "SELINUX=permissive");
    let guest = r.res["guest"].clone();
    r.check(
        "detected as RHEL 6 with upstart and GRUB legacy",
        guest["osId"] == "rhel"
            && guest["osVersion"] == "6.10"
            && guest["initSystem"] == "upstart"
            && guest["bootloader"] == "grub-legacy"
            && guest["firmware"] == "bios",
        &guest,
    );
    // The old eth0 file was replaced: said so. device.map and grub.conf's
    // comments name /dev/vda whole, which is no use of the disk.
    r.warnings_are(&["network.file_replaced", "bootloader.guessed"], &[]);
    r.finish();
}

// ---------------------------------------------------------------------------
// RHEL 9.3 from KVM with UEFI: shim and GRUB on the ESP, the ESP grub.cfg a
// stub that loads /boot/grub2/grub.cfg, BLS entries with the whole command
// line (no kernelopts any more), /etc/kernel/cmdline, a NetworkManager
// keyfile bound by interface name, xfs on LVM, /boot re-created at file
// level (its UUID changes, and the stub's search with it).

const RHEL9_K: &str = "5.14.0-362.8.1.el9_3.x86_64";
const RHEL9_MACHINE_ID: &str = "5f3e1c9a7b2d4e6f8a0b1c2d3e4f5a6b";
const RHEL9_BOOT_SRC: &str = "3e4a0c4e-7d2b-4b8f-9a61-2c5d8e0f1a3b";
const RHEL9_BOOT_TGT: &str = "b7c6d5e4-f3a2-4190-8e7d-6c5b4a392817";
const RHEL9_ESP_UUID: &str = "7B77-95E7";
const RHEL9_MAC: &str = "52:54:00:8c:41:7e";
const RHEL9_OPTS: &str = "root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap";

fn rhel9_efi(t: &Tree) {
    merged_usr(t);
    t.file(
        "etc/os-release",
        "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.3 (Plow)\"\nID=\"rhel\"\n\
         ID_LIKE=\"fedora\"\nVERSION_ID=\"9.3\"\nPLATFORM_ID=\"platform:el9\"\n\
         PRETTY_NAME=\"Red Hat Enterprise Linux 9.3 (Plow)\"\nANSI_COLOR=\"0;31\"\n\
         LOGO=\"fedora-logo-icon\"\nCPE_NAME=\"cpe:/o:redhat:enterprise_linux:9::baseos\"\n\
         HOME_URL=\"https://www.redhat.com/\"\n\
         REDHAT_SUPPORT_PRODUCT=\"Red Hat Enterprise Linux 9\"\n\
         REDHAT_SUPPORT_PRODUCT_VERSION=\"9.3\"\n",
    );
    t.file(
        "etc/redhat-release",
        "Red Hat Enterprise Linux release 9.3 (Plow)\n",
    );
    t.link("etc/system-release", "redhat-release");
    t.file("etc/machine-id", &format!("{RHEL9_MACHINE_ID}\n"));
    t.file(
        "etc/fstab",
        &format!(
            "\n#\n# /etc/fstab\n# Created by anaconda on Mon Nov 20 14:02:51 2023\n#\n\
             # Accessible filesystems, by reference, are maintained under '/dev/disk/'.\n\
             # See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info.\n#\n\
             # After editing this file, run 'systemctl daemon-reload' to update systemd\n\
             # units generated from this file.\n#\n\
             /dev/mapper/rhel-root   /                       xfs     defaults        0 0\n\
             UUID={RHEL9_BOOT_SRC} /boot                   xfs     defaults        0 0\n\
             UUID={RHEL9_ESP_UUID}          /boot/efi               vfat    umask=0077,shortname=winnt 0 2\n\
             /dev/mapper/rhel-swap   none                    swap    defaults        0 0\n"
        ),
    );
    t.file_mode(
        "etc/NetworkManager/system-connections/enp1s0.nmconnection",
        "[connection]\nid=enp1s0\nuuid=a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d\ntype=ethernet\n\
         autoconnect-priority=-999\ninterface-name=enp1s0\ntimestamp=1700488971\n\n\
         [ethernet]\n\n[ipv4]\naddress1=192.168.122.50/24,192.168.122.1\n\
         dns=192.168.122.1;\nmethod=manual\n\n[ipv6]\naddr-gen-mode=eui64\nmethod=auto\n\n\
         [proxy]\n",
        0o600,
    );
    t.file(
        "etc/NetworkManager/NetworkManager.conf",
        "# Configuration file for NetworkManager.\n#\n# See \"man 5 NetworkManager.conf\" for details.\n\
         [main]\n#plugins=keyfile,ifcfg-rh\n\n[logging]\n#level=DEBUG\n#domains=ALL\n",
    );
    t.file(
        "etc/default/grub",
        "GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n\
         GRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\nGRUB_TERMINAL_OUTPUT=\"console\"\n\
         GRUB_CMDLINE_LINUX=\"crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap\"\n\
         GRUB_DISABLE_RECOVERY=\"true\"\nGRUB_ENABLE_BLSCFG=true\n",
    );
    t.file("etc/kernel/cmdline", &format!("{RHEL9_OPTS}\n"));
    t.file(
        "etc/kernel/install.conf",
        "# Installed by the grubby package\nlayout=bls\n",
    );
    t.file(
        "boot/grub2/grub.cfg",
        &format!(
            "#\n# DO NOT EDIT THIS FILE\n#\n# It is automatically generated by grub2-mkconfig using templates\n\
             # from /etc/grub.d and settings from /etc/default/grub\n#\n\n\
             ### BEGIN /etc/grub.d/00_header ###\nset pager=1\n\n\
             if [ -f ${{config_directory}}/grubenv ]; then\n  load_env -f ${{config_directory}}/grubenv\n\
             elif [ -s $prefix/grubenv ]; then\n  load_env\nfi\n### END /etc/grub.d/00_header ###\n\n\
             ### BEGIN /etc/grub.d/10_linux ###\ninsmod part_gpt\ninsmod xfs\nset root='hd0,gpt2'\n\
             if [ x$feature_platform_search_hint = xy ]; then\n\
             \x20 search --no-floppy --fs-uuid --set=root --hint='hd0,gpt2'  {RHEL9_BOOT_SRC}\n\
             else\n  search --no-floppy --fs-uuid --set=root {RHEL9_BOOT_SRC}\nfi\n\
             insmod blscfg\nblscfg\n### END /etc/grub.d/10_linux ###\n"
        ),
    );
    t.file(
        "boot/grub2/grubenv",
        &grubenv(&format!(
            "saved_entry={RHEL9_MACHINE_ID}-{RHEL9_K}\nmenu_auto_hide=1\nboot_success=0\nboot_indeterminate=0\n"
        )),
    );
    t.link("etc/grub2.cfg", "../boot/grub2/grub.cfg");
    t.link("etc/grub2-efi.cfg", "../boot/grub2/grub.cfg");
    t.file(
        &format!("boot/loader/entries/{RHEL9_MACHINE_ID}-{RHEL9_K}.conf"),
        &format!(
            "title Red Hat Enterprise Linux ({RHEL9_K}) 9.3 (Plow)\nversion {RHEL9_K}\n\
             linux /vmlinuz-{RHEL9_K}\ninitrd /initramfs-{RHEL9_K}.img $tuned_initrd\n\
             options {RHEL9_OPTS} $tuned_params\n\
             grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rhel\n"
        ),
    );
    t.file(
        &format!("boot/loader/entries/{RHEL9_MACHINE_ID}-0-rescue.conf"),
        &format!(
            "title Red Hat Enterprise Linux (0-rescue-{RHEL9_MACHINE_ID}) 9.3 (Plow)\n\
             version 0-rescue-{RHEL9_MACHINE_ID}\nlinux /vmlinuz-0-rescue-{RHEL9_MACHINE_ID}\n\
             initrd /initramfs-0-rescue-{RHEL9_MACHINE_ID}.img\noptions {RHEL9_OPTS}\n\
             grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rhel\n"
        ),
    );
    t.file(
        &format!("boot/vmlinuz-0-rescue-{RHEL9_MACHINE_ID}"),
        "rescue kernel image\n",
    );
    t.bytes(
        &format!("boot/initramfs-0-rescue-{RHEL9_MACHINE_ID}.img"),
        &initramfs_image("0-rescue", &[]),
    );
    // The ESP: shim-x64 and grub2-efi-x64, and shim's own fallback.
    let esp = "boot/efi/EFI";
    for f in [
        "shimx64.efi",
        "shimx64-redhat.efi",
        "grubx64.efi",
        "mmx64.efi",
    ] {
        t.bytes(&format!("{esp}/redhat/{f}"), &efi_binary(f));
    }
    t.bytes(
        &format!("{esp}/redhat/BOOTX64.CSV"),
        "\u{feff}shimx64.efi,Red Hat Enterprise Linux,,This is the boot entry for Red Hat Enterprise Linux\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>()
            .as_slice(),
    );
    t.file(
        &format!("{esp}/redhat/grub.cfg"),
        &format!(
            "search --no-floppy --fs-uuid --set=dev {RHEL9_BOOT_SRC}\nset prefix=($dev)/grub2\n\n\
             export $prefix\nconfigfile $prefix/grub.cfg\n"
        ),
    );
    t.bytes(
        &format!("{esp}/BOOT/BOOTX64.EFI"),
        &efi_binary("shimx64.efi"),
    );
    t.bytes(&format!("{esp}/BOOT/fbx64.efi"), &efi_binary("fbx64.efi"));
    kernel(
        t,
        "usr/lib/modules",
        RHEL9_K,
        ".ko.xz",
        "xfs",
        &format!("boot/initramfs-{RHEL9_K}.img"),
    );
    t.tools(&[
        "usr/bin/dracut",
        "usr/sbin/grub2-mkconfig",
        "usr/sbin/grub2-install",
        "usr/bin/grub2-editenv",
        "usr/sbin/efibootmgr",
        "usr/bin/kernel-install",
        "usr/sbin/grubby",
        "usr/bin/systemctl",
    ]);
    t.file(
        "etc/dracut.conf",
        "# PUT YOUR CONFIG IN separate files\n# in /etc/dracut.conf.d\n",
    );
    systemd_targets(t);
    t.file("etc/selinux/config", SELINUX_ENFORCING);
}

fn rhel9_efi_guest() -> Guest {
    Guest {
        name: "RHEL 9.3 UEFI from KVM",
        kernel: RHEL9_K,
        build: rhel9_efi,
        os_family: "rhel",
        os_version: "9.3",
        firmware: UEFI,
        disks: json!([
            { "sourceDevice": "/dev/vda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 53687091200u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/vda1", "fsType": "vfat",
                  "sourceUuid": RHEL9_ESP_UUID, "targetUuid": RHEL9_ESP_UUID, "mountPoint": "/boot/efi" },
                { "number": 2, "sourceDevice": "/dev/vda2", "fsType": "xfs",
                  "sourceUuid": RHEL9_BOOT_SRC, "targetUuid": RHEL9_BOOT_TGT, "mountPoint": "/boot" },
                { "number": 3, "sourceDevice": "/dev/vda3", "fsType": "LVM2_member",
                  "sourceUuid": "fK2pQx-7LmN-Rs3T-uV4w-Xy5Z-aB6c-Dd7EfG" } ] }
        ]),
        nic: ("enp1s0", RHEL9_MAC),
        fstab_gone: &[RHEL9_BOOT_SRC],
        fstab_has: &[
            "UUID=b7c6d5e4-f3a2-4190-8e7d-6c5b4a392817 /boot ",
            "UUID=7B77-95E7          /boot/efi               vfat    umask=0077,shortname=winnt 0 2\n",
            "/dev/mapper/rhel-root   /",
        ],
        net_files: &["etc/NetworkManager/system-connections/eth0.nmconnection"],
        net_renamed_from: &["etc/NetworkManager/system-connections/enp1s0.nmconnection"],
        net_has_mac: false,
        cmdline_files: &[
            "etc/default/grub",
            "etc/kernel/cmdline",
            "boot/loader/entries/5f3e1c9a7b2d4e6f8a0b1c2d3e4f5a6b-5.14.0-362.8.1.el9_3.x86_64.conf",
        ],
        cmdline_gone: &[],
        initramfs_tool: "dracut",
        mkconfig: "grub2-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn rhel9_uefi_shim_stub_bls_keyfile_from_kvm() {
    check_guest(rhel9_efi_guest());

    let mut r = Run::new(&rhel9_efi_guest(), "efi");
    // The keyfile: renamed, still 0600, bound to eth0; the .link file pins
    // eth0 to the target MAC.
    let kf = "etc/NetworkManager/system-connections/eth0.nmconnection";
    r.has_line(kf, "id=eth0");
    r.has_line(kf, "interface-name=eth0");
    r.has_line(kf, "address1=192.168.122.50/24,192.168.122.1");
    r.has_line(kf, "uuid=a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d");
    let mode = r.mode(kf);
    r.check("keyfile stays 0600", mode == 0o600, format!("{mode:o}"));
    let link = "etc/systemd/network/10-osam-eth0.link";
    r.has_line(link, "MACAddress=00:50:56:9a:00:01");
    r.has_line(link, "Name=eth0");
    // The command line: entries, /etc/kernel/cmdline, /etc/default/grub.
    let entry = format!("boot/loader/entries/{RHEL9_MACHINE_ID}-{RHEL9_K}.conf");
    r.has_line(
        &entry,
        &format!("options {RHEL9_OPTS} $tuned_params net.ifnames=0 biosdevname=0"),
    );
    r.has_line(
        "etc/kernel/cmdline",
        &format!("{RHEL9_OPTS} net.ifnames=0 biosdevname=0"),
    );
    r.has_line(
        "etc/default/grub",
        "GRUB_CMDLINE_LINUX=\"crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap net.ifnames=0 biosdevname=0\"",
    );
    r.has_line("etc/default/grub", "GRUB_DISABLE_OS_PROBER=true");
    r.unchanged("boot/grub2/grubenv");
    // UEFI: the stub follows /boot's new UUID, the signed chain is kept
    // (no grub2-install), shim's fallback gets GRUB and MokManager beside
    // it, grub.cfg goes to /boot/grub2 (the stub loads it), the boot entry
    // names shim.
    let stub = "boot/efi/EFI/redhat/grub.cfg";
    r.has_line(
        stub,
        &format!("search --no-floppy --fs-uuid --set=dev {RHEL9_BOOT_TGT}"),
    );
    r.has_line(stub, "configfile $prefix/grub.cfg");
    r.not_ran("grub2-install");
    r.ran(&["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]);
    r.ran(&[
        "efibootmgr",
        "-c",
        "-d",
        "/dev/sda",
        "-p",
        "1",
        "-L",
        "Red Hat Enterprise Linux",
        "-l",
        "\\EFI\\redhat\\shimx64.efi",
    ]);
    r.unchanged("boot/efi/EFI/BOOT/BOOTX64.EFI");
    r.unchanged("boot/efi/EFI/BOOT/fbx64.efi");
    for f in ["grubx64.efi", "mmx64.efi"] {
        let copy = fs::read(r.root.join("boot/efi/EFI/BOOT").join(f)).ok();
        r.check(
            &format!("EFI/BOOT/{f} copied from EFI/redhat"),
            copy.as_deref() == Some(efi_binary(f).as_slice()),
            format!("{copy:?}"),
        );
    }
    // dracut for the installed kernel only, not the rescue image.
    let dracut = r.cmds_of("dracut");
    r.check(
        "one dracut run, for the installed kernel",
        dracut.len() == 1
            && dracut[0][dracut[0].len() - 2..]
                == [
                    format!("/boot/initramfs-{RHEL9_K}.img"),
                    RHEL9_K.to_string(),
                ],
        format!("{dracut:?}"),
    );
    let fw = r.res["guest"]["firmware"].clone();
    r.check("firmware detected as efi", fw == "efi", fw);
    r.warnings_are(&["bootloader.guessed"], &[]);
    r.has_line("etc/selinux/config", "SELINUX=permissive");
    r.finish();
}

// ---------------------------------------------------------------------------
// Oracle Linux 8.9 from VirtualBox: the UEK kernel (the default) next to the
// Red Hat compatible kernel, both to be rebuilt; BLS entries saying
// `$kernelopts` (grubenv holds the command line); an ifcfg file; a second
// disk mounted by LABEL with a bind mount below it.

const OL8_UEK: &str = "5.15.0-200.131.27.el8uek.x86_64";
const OL8_RHCK: &str = "4.18.0-513.24.1.el8_9.x86_64";
const OL8_MACHINE_ID: &str = "e2d4c6a8b0f1e3d5c7a9b1d3f5e7a9c1";
const OL8_BOOT_UUID: &str = "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b";
const OL8_SCRATCH_SRC: &str = "c4b3a291-8f7e-4d6c-9b5a-493827160f5e";
const OL8_SCRATCH_TGT: &str = "d5c4b3a2-9180-4f7e-8d6c-5b4a39281706";
const OL8_MAC: &str = "08:00:27:3f:9a:c2";
const OL8_OPTS: &str = "root=/dev/mapper/ol-root ro crashkernel=auto resume=/dev/mapper/ol-swap rd.lvm.lv=ol/root rd.lvm.lv=ol/swap rhgb quiet";

fn ol8(t: &Tree) {
    merged_usr(t);
    t.file(
        "etc/os-release",
        "NAME=\"Oracle Linux Server\"\nVERSION=\"8.9\"\nID=\"ol\"\nID_LIKE=\"fedora\"\n\
         VARIANT=\"Server\"\nVARIANT_ID=\"server\"\nVERSION_ID=\"8.9\"\nPLATFORM_ID=\"platform:el8\"\n\
         PRETTY_NAME=\"Oracle Linux Server 8.9\"\nANSI_COLOR=\"0;31\"\n\
         CPE_NAME=\"cpe:/o:oracle:linux:8:9:server\"\nHOME_URL=\"https://linux.oracle.com/\"\n\
         ORACLE_BUGZILLA_PRODUCT=\"Oracle Linux 8\"\nORACLE_BUGZILLA_PRODUCT_VERSION=8.9\n",
    );
    t.file("etc/oracle-release", "Oracle Linux Server release 8.9\n");
    t.file(
        "etc/redhat-release",
        "Red Hat Enterprise Linux release 8.9 (Ootpa)\n",
    );
    t.link("etc/system-release", "oracle-release");
    t.file("etc/machine-id", &format!("{OL8_MACHINE_ID}\n"));
    t.file(
        "etc/fstab",
        &format!(
            "\n#\n# /etc/fstab\n# Created by anaconda on Tue Jan 16 11:48:03 2024\n#\n\
             # Accessible filesystems, by reference, are maintained under '/dev/disk/'.\n\
             # See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info.\n#\n\
             # After editing this file, run 'systemctl daemon-reload' to update systemd\n\
             # units generated from this file.\n#\n\
             /dev/mapper/ol-root     /                       xfs     defaults        0 0\n\
             UUID={OL8_BOOT_UUID} /boot                   xfs     defaults        0 0\n\
             /dev/mapper/ol-swap     none                    swap    defaults        0 0\n\
             LABEL=scratch\t/scratch\text4\tdefaults,noatime\t0 2\n\
             /scratch/containers\t/var/lib/containers\tnone\tbind\t0 0\n"
        ),
    );
    t.file(
        "etc/sysconfig/network-scripts/ifcfg-enp0s3",
        "TYPE=Ethernet\nPROXY_METHOD=none\nBROWSER_ONLY=no\nBOOTPROTO=none\nDEFROUTE=yes\n\
         IPV4_FAILURE_FATAL=no\nIPV6INIT=no\nNAME=enp0s3\n\
         UUID=7d6c5b4a-3928-4176-9f5e-4d3c2b1a0f9e\nDEVICE=enp0s3\nONBOOT=yes\n\
         IPADDR=10.0.2.15\nPREFIX=24\nGATEWAY=10.0.2.2\nDNS1=10.0.2.3\n",
    );
    t.file("etc/sysconfig/network", "# Created by anaconda\n");
    t.file(
        "etc/NetworkManager/NetworkManager.conf",
        "[main]\n#plugins=ifcfg-rh\n",
    );
    t.file(
        "etc/default/grub",
        "GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n\
         GRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\nGRUB_TERMINAL_OUTPUT=\"console\"\n\
         GRUB_CMDLINE_LINUX=\"crashkernel=auto resume=/dev/mapper/ol-swap rd.lvm.lv=ol/root rd.lvm.lv=ol/swap rhgb quiet\"\n\
         GRUB_DISABLE_RECOVERY=\"true\"\nGRUB_ENABLE_BLSCFG=true\n",
    );
    t.file(
        "etc/sysconfig/kernel",
        "# UPDATEDEFAULT specifies if new-kernel-pkg should make\n\
         # new kernels the default\nUPDATEDEFAULT=yes\n\n\
         # DEFAULTKERNEL specifies the default kernel package type\nDEFAULTKERNEL=kernel-uek\n",
    );
    t.file(
        "boot/grub2/grub.cfg",
        "### BEGIN /etc/grub.d/10_linux ###\ninsmod part_msdos\ninsmod xfs\n\
         set root='hd0,msdos1'\ninsmod blscfg\nblscfg\n### END /etc/grub.d/10_linux ###\n",
    );
    t.file(
        "boot/grub2/grubenv",
        &grubenv(&format!(
            "saved_entry={OL8_MACHINE_ID}-{OL8_UEK}\nkernelopts={OL8_OPTS} \nboot_success=0\n"
        )),
    );
    t.link("etc/grub2.cfg", "../boot/grub2/grub.cfg");
    for (k, title) in [
        (
            OL8_UEK,
            "Oracle Linux Server (5.15.0-200.131.27.el8uek.x86_64 with Unbreakable Enterprise Kernel) 8.9",
        ),
        (
            OL8_RHCK,
            "Oracle Linux Server (4.18.0-513.24.1.el8_9.x86_64) 8.9",
        ),
    ] {
        t.file(
            &format!("boot/loader/entries/{OL8_MACHINE_ID}-{k}.conf"),
            &format!(
                "title {title}\nversion {k}\nlinux /vmlinuz-{k}\n\
                 initrd /initramfs-{k}.img $tuned_initrd\noptions $kernelopts $tuned_params\n\
                 id ol-20240116114803-{k}\ngrub_users $grub_users\ngrub_arg --unrestricted\n\
                 grub_class ol\n"
            ),
        );
        kernel(
            t,
            "usr/lib/modules",
            k,
            ".ko.xz",
            "xfs",
            &format!("boot/initramfs-{k}.img"),
        );
    }
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    t.file("boot/grub2/i386-pc/normal.mod", "");
    t.tools(&[
        "usr/bin/dracut",
        "usr/sbin/grub2-mkconfig",
        "usr/sbin/grub2-install",
        "usr/bin/grub2-editenv",
        "usr/bin/kernel-install",
        "usr/sbin/grubby",
        "usr/bin/systemctl",
    ]);
    systemd_targets(t);
    t.file("etc/selinux/config", SELINUX_ENFORCING);
}

fn ol8_guest() -> Guest {
    Guest {
        name: "Oracle Linux 8.9 (UEK + RHCK) from VirtualBox",
        kernel: OL8_UEK,
        build: ol8,
        os_family: "rhel",
        os_version: "8.9",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 68719476736u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "xfs",
                  "sourceUuid": OL8_BOOT_UUID, "mountPoint": "/boot" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "LVM2_member",
                  "sourceUuid": "Qw3eRt-Yu7i-Op9a-Sd1f-Gh2j-Kl4z-Xc5VbN" } ] },
            { "sourceDevice": "/dev/sdb", "target": { "controller": "scsi0", "unit": 1 },
              "capacityBytes": 21474836480u64, "boot": false,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sdb1", "fsType": "ext4", "label": "scratch",
                  "sourceUuid": OL8_SCRATCH_SRC, "targetUuid": OL8_SCRATCH_TGT,
                  "mountPoint": "/scratch" } ] }
        ]),
        nic: ("enp0s3", OL8_MAC),
        fstab_gone: &["LABEL=scratch"],
        fstab_has: &[
            "UUID=d5c4b3a2-9180-4f7e-8d6c-5b4a39281706\t/scratch\text4\tdefaults,noatime\t0 2\n",
            "/scratch/containers\t/var/lib/containers\tnone\tbind\t0 0\n",
            "UUID=0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b /boot",
        ],
        net_files: &["etc/sysconfig/network-scripts/ifcfg-eth0"],
        net_renamed_from: &["etc/sysconfig/network-scripts/ifcfg-enp0s3"],
        net_has_mac: false,
        cmdline_files: &["boot/grub2/grubenv", "etc/default/grub"],
        cmdline_gone: &[],
        initramfs_tool: "dracut",
        mkconfig: "grub2-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn oracle_linux8_uek_and_rhck_from_virtualbox() {
    check_guest(ol8_guest());
    // The harness checks the default (UEK) kernel's rebuild: the RHCK one
    // too.
    let mut g = ol8_guest();
    g.kernel = OL8_RHCK;
    check_guest(g);

    let mut r = Run::new(&ol8_guest(), "bios");
    let kernels = r.res["guest"]["kernels"].clone();
    r.check(
        "both kernels, oldest first",
        kernels == json!([OL8_RHCK, OL8_UEK]),
        &kernels,
    );
    for k in [OL8_UEK, OL8_RHCK] {
        r.ran(&[
            "/usr/bin/dracut",
            "-f",
            "--add-drivers",
            "vmw_pvscsi sd_mod xfs dm_mod",
            &format!("/boot/initramfs-{k}.img"),
            k,
        ]);
    }
    r.has(
        "etc/dracut.conf.d/90-osam.conf",
        "add_drivers+=\" vmw_pvscsi sd_mod xfs dm_mod \"",
    );
    // kernelopts gets the NIC options; the entries, which only refer to
    // it, are left alone.
    let env = r.text("boot/grub2/grubenv");
    r.check("grubenv keeps its 1024 bytes", env.len() == 1024, env.len());
    r.has_line(
        "boot/grub2/grubenv",
        &format!("kernelopts={OL8_OPTS} net.ifnames=0 biosdevname=0 "),
    );
    r.has_line(
        "boot/grub2/grubenv",
        &format!("saved_entry={OL8_MACHINE_ID}-{OL8_UEK}"),
    );
    for k in [OL8_UEK, OL8_RHCK] {
        r.unchanged(&format!("boot/loader/entries/{OL8_MACHINE_ID}-{k}.conf"));
    }
    r.unchanged("etc/sysconfig/kernel");
    let ifcfg = "etc/sysconfig/network-scripts/ifcfg-eth0";
    r.has_line(ifcfg, "NAME=eth0");
    r.has_line(ifcfg, "DEVICE=eth0");
    r.has_line(ifcfg, "IPADDR=10.0.2.15");
    r.ran(&["grub2-install", "--target=i386-pc", "/dev/sda"]);
    r.ran(&["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]);
    let label = r.res["guest"]["osId"].clone();
    r.check("detected as ol", label == "ol", label);
    // /boot has no targetUuid: its UUID is taken to be kept, and said so.
    r.warnings_are(&["storage.target_uuid_assumed", "bootloader.guessed"], &[]);
    r.finish();
}

// ---------------------------------------------------------------------------
// AlmaLinux 8.9 with UEFI from Proxmox VE: RHEL 8's UEFI layout (the real
// grub.cfg and grubenv on the ESP, /boot/grub2/grubenv a symlink to it),
// xfs on plain partitions with the root re-created at file level (its UUID
// changes in kernelopts), an ifcfg file, a swap file.

const ALMA8_K: &str = "4.18.0-513.18.1.el8_9.x86_64";
const ALMA8_MACHINE_ID: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a9";
const ALMA8_ROOT_SRC: &str = "6f1e2d3c-4b5a-4697-8877-665544332211";
const ALMA8_ROOT_TGT: &str = "a0b1c2d3-e4f5-4617-8899-aabbccddeeff";
const ALMA8_BOOT_UUID: &str = "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f";
const ALMA8_ESP_UUID: &str = "C0DE-F00D";
const ALMA8_MAC: &str = "bc:24:11:5e:a0:13";

fn alma8_opts(root: &str) -> String {
    format!("root=UUID={root} ro crashkernel=auto rhgb quiet")
}

fn alma8_efi(t: &Tree) {
    merged_usr(t);
    t.file(
        "etc/os-release",
        "NAME=\"AlmaLinux\"\nVERSION=\"8.9 (Midnight Oncilla)\"\nID=\"almalinux\"\n\
         ID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"8.9\"\nPLATFORM_ID=\"platform:el8\"\n\
         PRETTY_NAME=\"AlmaLinux 8.9 (Midnight Oncilla)\"\nANSI_COLOR=\"0;34\"\n\
         LOGO=\"fedora-logo-icon\"\nCPE_NAME=\"cpe:/o:almalinux:almalinux:8::baseos\"\n\
         HOME_URL=\"https://almalinux.org/\"\n",
    );
    t.file(
        "etc/almalinux-release",
        "AlmaLinux release 8.9 (Midnight Oncilla)\n",
    );
    t.link("etc/redhat-release", "almalinux-release");
    t.link("etc/system-release", "almalinux-release");
    t.file("etc/machine-id", &format!("{ALMA8_MACHINE_ID}\n"));
    t.file(
        "etc/fstab",
        &format!(
            "\n#\n# /etc/fstab\n# Created by anaconda on Fri Feb  9 16:20:11 2024\n#\n\
             # Accessible filesystems, by reference, are maintained under '/dev/disk/'.\n\
             # See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info.\n#\n\
             # After editing this file, run 'systemctl daemon-reload' to update systemd\n\
             # units generated from this file.\n#\n\
             UUID={ALMA8_ROOT_SRC} /                       xfs     defaults        0 0\n\
             UUID={ALMA8_BOOT_UUID} /boot                   xfs     defaults        0 0\n\
             UUID={ALMA8_ESP_UUID}          /boot/efi               vfat    umask=0077,shortname=winnt 0 2\n\
             /swapfile none swap defaults 0 0\n"
        ),
    );
    t.file("swapfile", "");
    t.file(
        "etc/sysconfig/network-scripts/ifcfg-ens18",
        "TYPE=Ethernet\nPROXY_METHOD=none\nBROWSER_ONLY=no\nBOOTPROTO=dhcp\nDEFROUTE=yes\n\
         IPV4_FAILURE_FATAL=no\nIPV6INIT=yes\nIPV6_AUTOCONF=yes\nIPV6_DEFROUTE=yes\n\
         IPV6_FAILURE_FATAL=no\nIPV6_ADDR_GEN_MODE=stable-privacy\nNAME=ens18\n\
         UUID=3c2b1a09-f8e7-4d6c-b5a4-93827160f5e4\nDEVICE=ens18\nONBOOT=yes\n",
    );
    t.file("etc/sysconfig/network", "# Created by anaconda\n");
    t.file(
        "etc/default/grub",
        "GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n\
         GRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\nGRUB_TERMINAL_OUTPUT=\"console\"\n\
         GRUB_CMDLINE_LINUX=\"crashkernel=auto rhgb quiet\"\n\
         GRUB_DISABLE_RECOVERY=\"true\"\nGRUB_ENABLE_BLSCFG=true\n",
    );
    // RHEL 8 on UEFI: grub.cfg and grubenv live on the ESP.
    let esp = "boot/efi/EFI";
    t.file(
        &format!("{esp}/almalinux/grub.cfg"),
        &format!(
            "#\n# DO NOT EDIT THIS FILE\n#\n# It is automatically generated by grub2-mkconfig using templates\n\
             # from /etc/grub.d and settings from /etc/default/grub\n#\n\n\
             ### BEGIN /etc/grub.d/10_linux ###\ninsmod part_gpt\ninsmod xfs\nset root='hd0,gpt2'\n\
             search --no-floppy --fs-uuid --set=root {ALMA8_BOOT_UUID}\n\
             insmod blscfg\nblscfg\n### END /etc/grub.d/10_linux ###\n"
        ),
    );
    t.file(
        &format!("{esp}/almalinux/grubenv"),
        &grubenv(&format!(
            "saved_entry={ALMA8_MACHINE_ID}-{ALMA8_K}\nkernelopts={} \nboot_success=1\n",
            alma8_opts(ALMA8_ROOT_SRC)
        )),
    );
    t.link("boot/grub2/grubenv", "../efi/EFI/almalinux/grubenv");
    t.link("etc/grub2-efi.cfg", "../boot/efi/EFI/almalinux/grub.cfg");
    for f in [
        "shimx64.efi",
        "shimx64-almalinux.efi",
        "grubx64.efi",
        "mmx64.efi",
    ] {
        t.bytes(&format!("{esp}/almalinux/{f}"), &efi_binary(f));
    }
    t.bytes(&format!("{esp}/almalinux/BOOTX64.CSV"), b"\xff\xfes\x00");
    t.bytes(
        &format!("{esp}/BOOT/BOOTX64.EFI"),
        &efi_binary("shimx64.efi"),
    );
    t.bytes(&format!("{esp}/BOOT/fbx64.efi"), &efi_binary("fbx64.efi"));
    t.file(
        &format!("boot/loader/entries/{ALMA8_MACHINE_ID}-{ALMA8_K}.conf"),
        &format!(
            "title AlmaLinux ({ALMA8_K}) 8.9 (Midnight Oncilla)\nversion {ALMA8_K}\n\
             linux /vmlinuz-{ALMA8_K}\ninitrd /initramfs-{ALMA8_K}.img $tuned_initrd\n\
             options $kernelopts $tuned_params\nid almalinux-20240209162011-{ALMA8_K}\n\
             grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class almalinux\n"
        ),
    );
    kernel(
        t,
        "usr/lib/modules",
        ALMA8_K,
        ".ko.xz",
        "xfs",
        &format!("boot/initramfs-{ALMA8_K}.img"),
    );
    t.dir("usr/lib/grub/x86_64-efi");
    t.tools(&[
        "usr/bin/dracut",
        "usr/sbin/grub2-mkconfig",
        "usr/sbin/grub2-install",
        "usr/bin/grub2-editenv",
        "usr/sbin/efibootmgr",
        "usr/bin/kernel-install",
        "usr/bin/systemctl",
    ]);
    systemd_targets(t);
    t.file("etc/selinux/config", SELINUX_ENFORCING);
}

fn alma8_efi_guest() -> Guest {
    Guest {
        name: "AlmaLinux 8.9 UEFI from Proxmox",
        kernel: ALMA8_K,
        build: alma8_efi,
        os_family: "rhel",
        os_version: "8.9",
        firmware: UEFI,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 34359738368u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "vfat",
                  "sourceUuid": ALMA8_ESP_UUID, "targetUuid": ALMA8_ESP_UUID, "mountPoint": "/boot/efi" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "xfs",
                  "sourceUuid": ALMA8_BOOT_UUID, "targetUuid": ALMA8_BOOT_UUID, "mountPoint": "/boot" },
                { "number": 3, "sourceDevice": "/dev/sda3", "fsType": "xfs",
                  "sourceUuid": ALMA8_ROOT_SRC, "targetUuid": ALMA8_ROOT_TGT, "mountPoint": "/" } ] }
        ]),
        nic: ("ens18", ALMA8_MAC),
        fstab_gone: &[ALMA8_ROOT_SRC],
        fstab_has: &[
            "UUID=a0b1c2d3-e4f5-4617-8899-aabbccddeeff /                       xfs     defaults        0 0\n",
            "\n/swapfile none swap defaults 0 0\n",
        ],
        net_files: &["etc/sysconfig/network-scripts/ifcfg-eth0"],
        net_renamed_from: &["etc/sysconfig/network-scripts/ifcfg-ens18"],
        net_has_mac: false,
        cmdline_files: &["boot/efi/EFI/almalinux/grubenv", "etc/default/grub"],
        cmdline_gone: &[ALMA8_ROOT_SRC],
        initramfs_tool: "dracut",
        mkconfig: "grub2-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn almalinux8_uefi_esp_grubenv_from_proxmox() {
    check_guest(alma8_efi_guest());

    let mut r = Run::new(&alma8_efi_guest(), "efi");
    let env = "boot/efi/EFI/almalinux/grubenv";
    r.has_line(
        env,
        &format!(
            "kernelopts={} net.ifnames=0 biosdevname=0 ",
            alma8_opts(ALMA8_ROOT_TGT)
        ),
    );
    r.unchanged("boot/grub2/grubenv");
    r.check(
        "no grubenv written through the symlink's own path",
        fs::symlink_metadata(r.root.join("boot/grub2/grubenv"))
            .is_ok_and(|m| m.file_type().is_symlink()),
        "boot/grub2/grubenv is no longer a symlink",
    );
    // RHEL 8's ESP grub.cfg is the real one: regenerated in place; no
    // grub2-install (RHEL 8 refuses it on UEFI), shim kept.
    r.ran(&["grub2-mkconfig", "-o", "/boot/efi/EFI/almalinux/grub.cfg"]);
    r.not_ran("grub2-install");
    r.ran(&[
        "efibootmgr",
        "-c",
        "-d",
        "/dev/sda",
        "-p",
        "1",
        "-L",
        "AlmaLinux",
        "-l",
        "\\EFI\\almalinux\\shimx64.efi",
    ]);
    r.unchanged("boot/efi/EFI/almalinux/grub.cfg");
    r.unchanged(&format!(
        "boot/loader/entries/{ALMA8_MACHINE_ID}-{ALMA8_K}.conf"
    ));
    r.ran(&[
        "/usr/bin/dracut",
        "-f",
        "--add-drivers",
        "vmw_pvscsi sd_mod xfs",
        &format!("/boot/initramfs-{ALMA8_K}.img"),
        ALMA8_K,
    ]);
    let ifcfg = "etc/sysconfig/network-scripts/ifcfg-eth0";
    r.has_line(ifcfg, "DEVICE=eth0");
    r.has_line(ifcfg, "UUID=3c2b1a09-f8e7-4d6c-b5a4-93827160f5e4");
    let id = r.res["guest"]["osId"].clone();
    r.check("detected as almalinux", id == "almalinux", id);
    r.warnings_are(&["bootloader.guessed"], &[]);
    r.finish();
}

// ---------------------------------------------------------------------------
// Rocky Linux 9.4 with BIOS from Nutanix AHV: a keyfile pinned by an
// upper-case MAC, a data disk mounted by its /dev/disk/by-id link (tied to
// the replica by its mount point) that lands on a second PVSCSI controller,
// /home on LVM, BLS entries with the whole command line.

const ROCKY9_K: &str = "5.14.0-427.13.1.el9_4.x86_64";
const ROCKY9_MACHINE_ID: &str = "1c0ffee5d00d4b1e9a7f3c2b1a0e9d8c";
const ROCKY9_BOOT_UUID: &str = "4d5e6f70-8192-4a3b-9c4d-5e6f70819203";
const ROCKY9_DATA_SRC: &str = "8e7f6a5b-4c3d-4e2f-9a1b-0c9d8e7f6a5b";
const ROCKY9_DATA_TGT: &str = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9";
const ROCKY9_DATA_LINK: &str = "/dev/disk/by-id/scsi-1NUTANIX_NFS_5_0_70509_a3f1c2d4e5b6";
const ROCKY9_MAC: &str = "50:6b:8d:c4:2e:91";
const ROCKY9_OPTS: &str = "root=/dev/mapper/rl-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root rd.lvm.lv=rl/swap";

fn rocky9(t: &Tree) {
    merged_usr(t);
    t.file(
        "etc/os-release",
        "NAME=\"Rocky Linux\"\nVERSION=\"9.4 (Blue Onyx)\"\nID=\"rocky\"\n\
         ID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\nPLATFORM_ID=\"platform:el9\"\n\
         PRETTY_NAME=\"Rocky Linux 9.4 (Blue Onyx)\"\nANSI_COLOR=\"0;32\"\n\
         LOGO=\"fedora-logo-icon\"\nCPE_NAME=\"cpe:/o:rocky:rocky:9::baseos\"\n\
         HOME_URL=\"https://rockylinux.org/\"\nROCKY_SUPPORT_PRODUCT=\"Rocky-Linux-9\"\n\
         ROCKY_SUPPORT_PRODUCT_VERSION=\"9.4\"\n",
    );
    t.file("etc/rocky-release", "Rocky Linux release 9.4 (Blue Onyx)\n");
    t.link("etc/redhat-release", "rocky-release");
    t.link("etc/system-release", "rocky-release");
    t.file("etc/machine-id", &format!("{ROCKY9_MACHINE_ID}\n"));
    t.file(
        "etc/fstab",
        &format!(
            "\n#\n# /etc/fstab\n# Created by anaconda on Thu May 16 07:55:12 2024\n#\n\
             # Accessible filesystems, by reference, are maintained under '/dev/disk/'.\n\
             # See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info.\n#\n\
             # After editing this file, run 'systemctl daemon-reload' to update systemd\n\
             # units generated from this file.\n#\n\
             /dev/mapper/rl-root     /                       xfs     defaults        0 0\n\
             UUID={ROCKY9_BOOT_UUID} /boot                   xfs     defaults        0 0\n\
             /dev/mapper/rl-home     /home                   xfs     defaults        0 0\n\
             /dev/mapper/rl-swap     none                    swap    defaults        0 0\n\
             # data volume (Nutanix vDisk)\n\
             {ROCKY9_DATA_LINK}-part1 /srv/data xfs defaults,noatime 0 0\n"
        ),
    );
    t.file_mode(
        "etc/NetworkManager/system-connections/ens3.nmconnection",
        "[connection]\nid=ens3\nuuid=5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716\ntype=ethernet\n\
         interface-name=ens3\n\n[ethernet]\nmac-address=50:6B:8D:C4:2E:91\n\n\
         [ipv4]\naddress1=172.16.40.21/24\ngateway=172.16.40.1\ndns=172.16.40.5;172.16.40.6;\n\
         dns-search=corp.example.net;\nmethod=manual\n\n[ipv6]\naddr-gen-mode=default\n\
         method=disabled\n\n[proxy]\n",
        0o600,
    );
    t.file(
        "etc/default/grub",
        "GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n\
         GRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\nGRUB_TERMINAL_OUTPUT=\"console\"\n\
         GRUB_CMDLINE_LINUX=\"crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root rd.lvm.lv=rl/swap\"\n\
         GRUB_DISABLE_RECOVERY=\"true\"\nGRUB_ENABLE_BLSCFG=true\n",
    );
    t.file("etc/kernel/cmdline", &format!("{ROCKY9_OPTS}\n"));
    t.file(
        "boot/grub2/grub.cfg",
        &format!(
            "### BEGIN /etc/grub.d/10_linux ###\ninsmod part_msdos\ninsmod xfs\nset root='hd0,msdos1'\n\
             search --no-floppy --fs-uuid --set=root {ROCKY9_BOOT_UUID}\n\
             insmod blscfg\nblscfg\n### END /etc/grub.d/10_linux ###\n"
        ),
    );
    t.file(
        "boot/grub2/grubenv",
        &grubenv(&format!(
            "saved_entry={ROCKY9_MACHINE_ID}-{ROCKY9_K}\nmenu_auto_hide=1\nboot_success=1\n"
        )),
    );
    t.link("etc/grub2.cfg", "../boot/grub2/grub.cfg");
    t.file(
        &format!("boot/loader/entries/{ROCKY9_MACHINE_ID}-{ROCKY9_K}.conf"),
        &format!(
            "title Rocky Linux ({ROCKY9_K}) 9.4 (Blue Onyx)\nversion {ROCKY9_K}\n\
             linux /vmlinuz-{ROCKY9_K}\ninitrd /initramfs-{ROCKY9_K}.img $tuned_initrd\n\
             options {ROCKY9_OPTS} $tuned_params\n\
             grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rocky\n"
        ),
    );
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    t.file("boot/grub2/i386-pc/normal.mod", "");
    t.file(
        "boot/grub2/device.map",
        "# this device map was generated by anaconda\n(hd0)      /dev/sda\n",
    );
    kernel(
        t,
        "usr/lib/modules",
        ROCKY9_K,
        ".ko.xz",
        "xfs",
        &format!("boot/initramfs-{ROCKY9_K}.img"),
    );
    t.tools(&[
        "usr/bin/dracut",
        "usr/sbin/grub2-mkconfig",
        "usr/sbin/grub2-install",
        "usr/bin/grub2-editenv",
        "usr/bin/kernel-install",
        "usr/bin/systemctl",
    ]);
    systemd_targets(t);
    t.file("etc/selinux/config", SELINUX_ENFORCING);
}

fn rocky9_guest() -> Guest {
    Guest {
        name: "Rocky Linux 9.4 from Nutanix AHV",
        kernel: ROCKY9_K,
        build: rocky9,
        os_family: "rhel",
        os_version: "9.4",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 42949672960u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "xfs",
                  "sourceUuid": ROCKY9_BOOT_UUID, "targetUuid": ROCKY9_BOOT_UUID, "mountPoint": "/boot" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "LVM2_member",
                  "sourceUuid": "hJ8kLm-9NoP-qR0s-Tu1v-Wx2y-Za3b-Cd4EfG" } ] },
            { "sourceDevice": "/dev/sdb", "target": { "controller": "scsi1", "unit": 0 },
              "capacityBytes": 536870912000u64, "boot": false,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sdb1", "fsType": "xfs",
                  "sourceUuid": ROCKY9_DATA_SRC, "targetUuid": ROCKY9_DATA_TGT,
                  "mountPoint": "/srv/data" } ] }
        ]),
        nic: ("ens3", ROCKY9_MAC),
        fstab_gone: &["/dev/disk/by-id/", ROCKY9_DATA_SRC],
        fstab_has: &[
            "# data volume (Nutanix vDisk)\nUUID=f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9 /srv/data xfs defaults,noatime 0 0\n",
            "/dev/mapper/rl-home     /home                   xfs     defaults        0 0\n",
        ],
        net_files: &["etc/NetworkManager/system-connections/eth0.nmconnection"],
        net_renamed_from: &["etc/NetworkManager/system-connections/ens3.nmconnection"],
        net_has_mac: true,
        cmdline_files: &[
            "etc/default/grub",
            "etc/kernel/cmdline",
            "boot/loader/entries/1c0ffee5d00d4b1e9a7f3c2b1a0e9d8c-5.14.0-427.13.1.el9_4.x86_64.conf",
        ],
        cmdline_gone: &[],
        initramfs_tool: "dracut",
        mkconfig: "grub2-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn rocky9_bios_keyfile_by_id_data_disk_from_ahv() {
    check_guest(rocky9_guest());

    let mut r = Run::new(&rocky9_guest(), "bios");
    let kf = "etc/NetworkManager/system-connections/eth0.nmconnection";
    // The MAC keeps the keyfile's upper case.
    r.has_line(kf, "mac-address=00:50:56:9A:00:01");
    r.has_line(kf, "interface-name=eth0");
    r.has_line(kf, "dns=172.16.40.5;172.16.40.6;");
    let mode = r.mode(kf);
    r.check("keyfile stays 0600", mode == 0o600, format!("{mode:o}"));
    r.has_line(
        &format!("boot/loader/entries/{ROCKY9_MACHINE_ID}-{ROCKY9_K}.conf"),
        &format!("options {ROCKY9_OPTS} $tuned_params net.ifnames=0 biosdevname=0"),
    );
    r.unchanged("boot/grub2/grubenv");
    r.ran(&["grub2-install", "--target=i386-pc", "/dev/sda"]);
    r.ran(&["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]);
    r.ran(&[
        "/usr/bin/dracut",
        "-f",
        "--add-drivers",
        "vmw_pvscsi sd_mod xfs dm_mod",
        &format!("/boot/initramfs-{ROCKY9_K}.img"),
        ROCKY9_K,
    ]);
    // The by-id link is tied to its replica (no storage.unmapped_link);
    // anaconda's device.map is no use of the whole disk.
    r.warnings_are(&["bootloader.guessed"], &[]);
    let id = r.res["guest"]["osId"].clone();
    r.check("detected as rocky", id == "rocky", id);
    r.finish();
}

// ---------------------------------------------------------------------------
// CentOS 7.9 from Hyper-V (generation 1, BIOS): the NIC is eth0 already
// (VMBus NICs have no PCI path to name them by) and only its MAC moves;
// the command line carries the serial console Hyper-V/Azure guides ask for,
// `rootdelay=300` and the Hyper-V frame buffer; dracut is told to include
// the hv_* drivers.

const C7_K: &str = "3.10.0-1160.119.1.el7.x86_64";
const C7_BOOT_UUID: &str = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
const C7_MAC: &str = "00:15:5d:01:c8:07";
const C7_CMDLINE: &str = "crashkernel=auto rd.lvm.lv=centos/root rd.lvm.lv=centos/swap rhgb quiet console=tty0 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 video=hyperv_fb:1024x768";

fn centos7_hyperv(t: &Tree) {
    merged_usr(t);
    t.file(
        "etc/os-release",
        "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\n\
         VERSION_ID=\"7\"\nPRETTY_NAME=\"CentOS Linux 7 (Core)\"\nANSI_COLOR=\"0;31\"\n\
         CPE_NAME=\"cpe:/o:centos:centos:7\"\nHOME_URL=\"https://www.centos.org/\"\n\
         BUG_REPORT_URL=\"https://bugs.centos.org/\"\n\n\
         CENTOS_MANTISBT_PROJECT=\"CentOS-7\"\nCENTOS_MANTISBT_PROJECT_VERSION=\"7\"\n\
         REDHAT_SUPPORT_PRODUCT=\"centos\"\nREDHAT_SUPPORT_PRODUCT_VERSION=\"7\"\n\n",
    );
    t.file(
        "etc/centos-release",
        "CentOS Linux release 7.9.2009 (Core)\n",
    );
    t.link("etc/redhat-release", "centos-release");
    t.link("etc/system-release", "centos-release");
    t.file(
        "etc/fstab",
        &format!(
            "\n#\n# /etc/fstab\n# Created by anaconda on Mon Mar 14 10:02:37 2022\n#\n\
             # Accessible filesystems, by reference, are maintained under '/dev/disk'\n\
             # See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info\n#\n\
             /dev/mapper/centos-root /                       xfs     defaults        0 0\n\
             UUID={C7_BOOT_UUID} /boot                   xfs     defaults        0 0\n\
             /dev/mapper/centos-swap swap                    swap    defaults        0 0\n\
             //fs01.corp.example.com/reports /mnt/reports cifs credentials=/root/.smbcred,vers=3.0,_netdev 0 0\n"
        ),
    );
    t.file(
        "etc/sysconfig/network-scripts/ifcfg-eth0",
        "TYPE=Ethernet\nBOOTPROTO=dhcp\nDEFROUTE=yes\nPEERDNS=yes\nPEERROUTES=yes\n\
         IPV4_FAILURE_FATAL=no\nIPV6INIT=no\nNAME=eth0\n\
         UUID=6b5a4938-2716-4f5e-8d4c-3b2a1f0e9d8c\nDEVICE=eth0\nONBOOT=yes\n\
         HWADDR=00:15:5D:01:C8:07\nNM_CONTROLLED=yes\n",
    );
    t.file("etc/sysconfig/network", "# Created by anaconda\n");
    t.file(
        "etc/dracut.conf.d/hyperv.conf",
        "# Hyper-V: the VMBus storage and network drivers in the initramfs\n\
         add_drivers+=\" hv_vmbus hv_netvsc hv_storvsc \"\n",
    );
    t.file(
        "etc/default/grub",
        &format!(
            "GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n\
             GRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\nGRUB_TERMINAL=\"serial console\"\n\
             GRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n\
             GRUB_CMDLINE_LINUX=\"{C7_CMDLINE}\"\nGRUB_DISABLE_RECOVERY=\"true\"\n"
        ),
    );
    t.file(
        "boot/grub2/grub.cfg",
        &format!(
            "### BEGIN /etc/grub.d/10_linux ###\n\
             menuentry 'CentOS Linux ({C7_K}) 7 (Core)' --class centos --class gnu-linux --class gnu --class os --unrestricted {{\n\
             \tload_video\n\tset gfxpayload=keep\n\tinsmod gzio\n\tinsmod part_msdos\n\tinsmod xfs\n\
             \tset root='hd0,msdos1'\n\
             \tsearch --no-floppy --fs-uuid --set=root {C7_BOOT_UUID}\n\
             \tlinux16 /vmlinuz-{C7_K} root=/dev/mapper/centos-root ro {C7_CMDLINE}\n\
             \tinitrd16 /initramfs-{C7_K}.img\n}}\n### END /etc/grub.d/10_linux ###\n"
        ),
    );
    t.file(
        "boot/grub2/grubenv",
        &grubenv(&format!("saved_entry=CentOS Linux ({C7_K}) 7 (Core)\n")),
    );
    t.link("etc/grub2.cfg", "../boot/grub2/grub.cfg");
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    t.file("boot/grub2/i386-pc/normal.mod", "");
    kernel(
        t,
        "usr/lib/modules",
        C7_K,
        ".ko.xz",
        "xfs",
        &format!("boot/initramfs-{C7_K}.img"),
    );
    // Hyper-V's daemons (hyperv-daemons), enabled.
    t.file(
        "usr/lib/systemd/system/hypervkvpd.service",
        "[Unit]\nDescription=Hyper-V KVP daemon\nConditionVirtualization=microsoft\n",
    );
    t.link(
        "etc/systemd/system/multi-user.target.wants/hypervkvpd.service",
        "/usr/lib/systemd/system/hypervkvpd.service",
    );
    t.tools(&[
        "usr/bin/dracut",
        "usr/sbin/grub2-mkconfig",
        "usr/sbin/grub2-install",
        "usr/bin/systemctl",
        "usr/sbin/hypervkvpd",
    ]);
    systemd_targets(t);
    t.file("etc/selinux/config", SELINUX_ENFORCING);
}

fn centos7_hyperv_guest() -> Guest {
    Guest {
        name: "CentOS 7.9 from Hyper-V",
        kernel: C7_K,
        build: centos7_hyperv,
        os_family: "rhel",
        os_version: "7",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 136365211648u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "xfs",
                  "sourceUuid": C7_BOOT_UUID, "targetUuid": C7_BOOT_UUID, "mountPoint": "/boot" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "LVM2_member",
                  "sourceUuid": "mN4oPq-5RsT-uV6w-Xy7Z-aB8c-Dd9E-fG0hIj" } ] }
        ]),
        // Hyper-V names the NIC eth0 already: only its MAC moves.
        nic: ("eth0", C7_MAC),
        fstab_gone: &[],
        fstab_has: &[
            "\n//fs01.corp.example.com/reports /mnt/reports cifs credentials=/root/.smbcred,vers=3.0,_netdev 0 0\n",
            "/dev/mapper/centos-root /",
        ],
        net_files: &["etc/sysconfig/network-scripts/ifcfg-eth0"],
        net_renamed_from: &[],
        net_has_mac: true,
        cmdline_files: &["etc/default/grub"],
        cmdline_gone: &["hyperv_fb"],
        initramfs_tool: "dracut",
        mkconfig: "grub2-mkconfig",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn centos7_from_hyperv() {
    check_guest(centos7_hyperv_guest());

    let mut r = Run::new(&centos7_hyperv_guest(), "bios");
    // Only the Hyper-V frame buffer goes: the serial console, earlyprintk
    // on it and rootdelay are the user's own options (they work on VMware
    // too; with an initramfs mounting the root, rootdelay does not delay).
    r.has_line(
        "etc/default/grub",
        "GRUB_CMDLINE_LINUX=\"crashkernel=auto rd.lvm.lv=centos/root rd.lvm.lv=centos/swap rhgb quiet console=tty0 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 net.ifnames=0 biosdevname=0\"",
    );
    r.has_line("etc/default/grub", "GRUB_TERMINAL=\"serial console\"");
    let ifcfg = "etc/sysconfig/network-scripts/ifcfg-eth0";
    r.has_line(ifcfg, "HWADDR=00:50:56:9A:00:01");
    r.has_line(ifcfg, "DEVICE=eth0");
    r.has_line(ifcfg, "NAME=eth0");
    r.has_line(
        "etc/udev/rules.d/70-persistent-net.rules",
        "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"00:50:56:9a:00:01\", ATTR{type}==\"1\", NAME=\"eth0\"",
    );
    // The hv_* drivers stay (harmless without VMBus); the VMware ones are
    // added next to them.
    r.unchanged("etc/dracut.conf.d/hyperv.conf");
    r.has(
        "etc/dracut.conf.d/90-osam.conf",
        "add_drivers+=\" vmw_pvscsi sd_mod xfs dm_mod \"",
    );
    r.ran(&[
        "/usr/bin/dracut",
        "-f",
        "--add-drivers",
        "vmw_pvscsi sd_mod xfs dm_mod",
        &format!("/boot/initramfs-{C7_K}.img"),
        C7_K,
    ]);
    r.ran(&["grub2-install", "--target=i386-pc", "/dev/sda"]);
    r.ran(&["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]);
    r.unchanged("etc/systemd/system/multi-user.target.wants/hypervkvpd.service");
    let id = r.res["guest"]["osId"].clone();
    r.check("detected as centos", id == "centos", id);
    r.warnings_are(&["bootloader.guessed"], &[]);
    r.finish();
}

// ---------------------------------------------------------------------------
// VMware Photon OS 4.0 from VMware Workstation: the installer's own GRUB 2
// configuration (not generated by grub2-mkconfig: it reads the command line
// from /boot/photon.cfg, a link to the kernel's /boot/linux-<v>.cfg, and
// /boot/systemd.cfg), PARTUUID references, the linux-esx kernel with the
// VMware drivers built in, dracut images named initrd.img-<v>,
// systemd-networkd matching the NIC by MAC.

const PHOTON_K: &str = "5.10.216-1.ph4-esx";
const PHOTON_ROOT_PARTUUID: &str = "0f6a1d2e-3b4c-4d5e-8f60-718293a4b5c6";
const PHOTON_ROOT_UUID: &str = "2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b";
const PHOTON_DATA_UUID: &str = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5e";
const PHOTON_MAC: &str = "00:0c:29:5b:7e:44";
const PHOTON_CMDLINE: &str = "init=/lib/systemd/systemd ro loglevel=3 quiet no-vmw-sta";

fn photon4(t: &Tree) {
    merged_usr(t);
    t.file(
        "etc/os-release",
        "NAME=\"VMware Photon OS\"\nVERSION=\"4.0\"\nID=photon\nVERSION_ID=4.0\n\
         PRETTY_NAME=\"VMware Photon OS/Linux\"\nANSI_COLOR=\"1;34\"\n\
         HOME_URL=\"https://vmware.github.io/photon/\"\n\
         BUG_REPORT_URL=\"https://github.com/vmware/photon/issues\"\n",
    );
    t.file(
        "etc/photon-release",
        "VMware Photon OS 4.0\nPHOTON_BUILD_NUMBER=c001795b8\n",
    );
    t.file(
        "etc/lsb-release",
        "DISTRIB_ID=\"VMware Photon OS\"\nDISTRIB_RELEASE=\"4.0\"\nDISTRIB_CODENAME=Photon\n\
         DISTRIB_DESCRIPTION=\"VMware Photon OS 4.0\"\n",
    );
    t.file(
        "etc/fstab",
        &format!(
            "#system\tmnt-pt\ttype\toptions\tdump\tfsck\n\
             PARTUUID={PHOTON_ROOT_PARTUUID}\t/\text4\tdefaults,barrier,noatime,noacl,data=ordered\t1\t1\n\
             /dev/cdrom\t/mnt/cdrom\tiso9660\tro,noauto\t0\t0\n\
             /dev/sdb1\t/var/lib/docker\text4\tdefaults,noatime\t0\t2\n"
        ),
    );
    // The installer's DHCP catch-all, and a static address for this NIC.
    t.file_mode(
        "etc/systemd/network/99-dhcp-en.network",
        "[Match]\nName=e*\n\n[Network]\nDHCP=yes\nIPv6AcceptRA=no\n",
        0o640,
    );
    t.file_mode(
        "etc/systemd/network/50-static-en.network",
        "[Match]\nMACAddress=00:0c:29:5b:7e:44\n\n[Network]\nAddress=192.168.80.15/24\n\
         Gateway=192.168.80.2\nDNS=192.168.80.2\nIPv6AcceptRA=no\n",
        0o640,
    );
    t.file("etc/default/grub", "");
    t.link("etc/sysconfig/grub", "/etc/default/grub");
    t.file(
        "boot/grub2/grub.cfg",
        &format!(
            "# Begin /boot/grub2/grub.cfg\n\n# Generated by Photon Installer\n\
             # DO NOT OVERWRITE THIS FILE USING 'grub2-mkconfig'\n# UNLESS YOU ARE ABSOULUTELY SURE\n\n\
             set default=0\nset timeout=5\nsearch -n -u {PHOTON_ROOT_UUID} -s\nloadfont ascii\n\n\
             insmod gfxterm\ninsmod vbe\ninsmod tga\ninsmod png\ninsmod ext2\ninsmod part_gpt\n\n\
             set gfxmode=\"640x480\"\ngfxpayload=keep\n\nterminal_output gfxterm\n\n\
             set theme=/boot/grub2/themes/photon/theme.txt\n\n\
             load_env -f /boot/photon.cfg\n\n\
             if [ -f /boot/systemd.cfg ]; then\n  load_env -f /boot/systemd.cfg\nelse\n  set systemd_cmdline=net.ifnames=0\nfi\n\n\
             set rootpartition=PARTUUID={PHOTON_ROOT_PARTUUID}\n\n\
             menuentry \"Photon\" {{\n  linux /boot/$photon_linux root=$rootpartition $photon_cmdline $systemd_cmdline  $user_cmdline \n\n\
             \x20 if [ -f /boot/$photon_initrd ]; then\n    initrd /boot/$photon_initrd\n  fi\n}}\n\n\
             # End /boot/grub2/grub.cfg\n"
        ),
    );
    t.file(
        &format!("boot/linux-{PHOTON_K}.cfg"),
        &format!(
            "# GRUB Environment Block\nphoton_cmdline={PHOTON_CMDLINE}\n\
             photon_linux=vmlinuz-{PHOTON_K}\nphoton_initrd=initrd.img-{PHOTON_K}\n"
        ),
    );
    t.link("boot/photon.cfg", &format!("linux-{PHOTON_K}.cfg"));
    t.file(
        "boot/systemd.cfg",
        "# GRUB Environment Block\nsystemd_cmdline=net.ifnames=0 plymouth.enable=0 systemd.legacy_systemd_cgroup_controller=yes\n",
    );
    t.file("boot/grub2/themes/photon/theme.txt", "");
    t.file("boot/grub2/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/normal.mod", "");
    t.file("usr/lib/grub/i386-pc/boot.img", "");
    // linux-esx: the VMware drivers and ext4 built in.
    t.file(&format!("boot/vmlinuz-{PHOTON_K}"), "kernel image\n");
    t.file(
        &format!("boot/config-{PHOTON_K}"),
        "CONFIG_X86_64=y\nCONFIG_VMWARE_PVSCSI=y\nCONFIG_VMXNET3=y\nCONFIG_EXT4_FS=y\n",
    );
    t.file(&format!("boot/System.map-{PHOTON_K}"), "");
    let m = format!("usr/lib/modules/{PHOTON_K}");
    t.file(
        &format!("{m}/modules.dep"),
        "kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\nkernel/lib/libcrc32c.ko:\n\
         kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko\n\
         kernel/drivers/nvme/host/nvme-core.ko:\n",
    );
    t.file(
        &format!("{m}/modules.builtin"),
        "kernel/drivers/scsi/scsi_mod.ko\nkernel/drivers/scsi/sd_mod.ko\n\
         kernel/drivers/scsi/vmw_pvscsi.ko\nkernel/drivers/net/vmxnet3/vmxnet3.ko\n\
         kernel/drivers/md/dm-mod.ko\nkernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n\
         kernel/fs/mbcache.ko\n",
    );
    t.bytes(
        &format!("boot/initrd.img-{PHOTON_K}"),
        &initramfs_image(PHOTON_K, &[]),
    );
    t.file(
        &format!("var/lib/initramfs/kernel/{PHOTON_K}"),
        "--add-drivers \"tmem xen-scsifront xen-blkfront xen-acpi-processor xen-evtchn xen-gntalloc xen-gntdev xen-privcmd xen-pciback xenfs hv_utils hv_vmbus hv_storvsc hv_netvsc hv_sock hv_balloon cn lvm dm-mod megaraid_sas\"\n",
    );
    t.tools(&[
        "usr/bin/dracut",
        "usr/bin/mkinitrd",
        "usr/sbin/grub2-mkconfig",
        "usr/sbin/grub2-install",
        "usr/bin/systemctl",
    ]);
    systemd_targets(t);
}

fn photon4_guest() -> Guest {
    Guest {
        name: "Photon OS 4.0 from VMware Workstation",
        kernel: PHOTON_K,
        build: photon4,
        os_family: "photon",
        os_version: "4.0",
        firmware: BIOS,
        disks: json!([
            { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
              "capacityBytes": 17179869184u64, "boot": true,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "" },
                { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "ext4",
                  "sourceUuid": PHOTON_ROOT_UUID, "targetUuid": PHOTON_ROOT_UUID, "mountPoint": "/" } ] },
            { "sourceDevice": "/dev/sdb", "target": { "controller": "scsi0", "unit": 1 },
              "capacityBytes": 107374182400u64, "boot": false,
              "partitions": [
                { "number": 1, "sourceDevice": "/dev/sdb1", "fsType": "ext4",
                  "sourceUuid": PHOTON_DATA_UUID, "targetUuid": PHOTON_DATA_UUID,
                  "mountPoint": "/var/lib/docker" } ] }
        ]),
        nic: ("eth0", PHOTON_MAC),
        fstab_gone: &["/dev/sdb1"],
        fstab_has: &[
            "UUID=7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5e\t/var/lib/docker\text4\tdefaults,noatime\t0\t2\n",
            "PARTUUID=0f6a1d2e-3b4c-4d5e-8f60-718293a4b5c6\t/\text4\t",
            "\n/dev/cdrom\t/mnt/cdrom\tiso9660\tro,noauto\t0\t0\n",
        ],
        // The .network file matches by MAC; the name is pinned by the
        // .link file the fixup writes.
        net_files: &[
            "etc/systemd/network/50-static-en.network",
            "etc/systemd/network/10-osam-eth0.link",
        ],
        net_renamed_from: &[],
        net_has_mac: true,
        cmdline_files: &["boot/systemd.cfg"],
        cmdline_gone: &[],
        initramfs_tool: "dracut",
        // Photon's grub.cfg is the installer's, never regenerated: the boot
        // loader's command is the BIOS install.
        mkconfig: "grub2-install",
        expect: Expect::Success,
        known_bugs: &[],
    }
}

#[test]
fn photon4_installer_grub_networkd_esx_kernel() {
    check_guest(photon4_guest());

    let mut r = Run::new(&photon4_guest(), "bios");
    let net = "etc/systemd/network/50-static-en.network";
    r.has_line(net, "MACAddress=00:50:56:9a:00:01");
    r.has_line(net, "Address=192.168.80.15/24");
    let mode = r.mode(net);
    r.check(
        "networkd file keeps its mode",
        mode == 0o640,
        format!("{mode:o}"),
    );
    r.unchanged("etc/systemd/network/99-dhcp-en.network");
    r.has_line("etc/systemd/network/10-osam-eth0.link", "Name=eth0");
    // The installer's grub.cfg is kept: no grub2-mkconfig; the command
    // line stays in Photon's environment files.
    r.not_ran("grub2-mkconfig");
    r.unchanged("boot/grub2/grub.cfg");
    r.unchanged("etc/default/grub");
    r.unchanged("boot/photon.cfg");
    r.has_line(
        "boot/systemd.cfg",
        "systemd_cmdline=net.ifnames=0 plymouth.enable=0 systemd.legacy_systemd_cgroup_controller=yes biosdevname=0",
    );
    // Nothing of the source platform in the kernel's command line, and
    // the NIC options come from systemd.cfg.
    r.unchanged(&format!("boot/linux-{PHOTON_K}.cfg"));
    r.not_ran("grub-install");
    r.ran(&["grub2-install", "--target=i386-pc", "/dev/sda"]);
    // Every driver is built in: dracut runs (fstab changed) without a list.
    r.ran(&[
        "/usr/bin/dracut",
        "-f",
        &format!("/boot/initrd.img-{PHOTON_K}"),
        PHOTON_K,
    ]);
    r.check(
        "no dracut.conf.d drop-in for built-in drivers",
        !r.exists("etc/dracut.conf.d/90-osam.conf"),
        "written",
    );
    let guest = r.res["guest"].clone();
    r.check(
        "detected as photon 4.0",
        guest["osId"] == "photon" && guest["osVersion"] == "4.0" && guest["bootloader"] == "grub2",
        &guest,
    );
    // Offline, the root's `PARTUUID=` is tied to the replica partition
    // mounted at / (replica-disk-map.json has no PARTUUIDs); its UUID is
    // unchanged (a block-level copy with its partition table), so the
    // PARTUUID stays valid: fstab and grub.cfg keep it, with no
    // fstab.root_not_replicated.
    r.has_line(
        "etc/fstab",
        &format!("PARTUUID={PHOTON_ROOT_PARTUUID}\t/\text4\tdefaults,barrier,noatime,noacl,data=ordered\t1\t1"),
    );
    r.warnings_are(&["bootloader.guessed"], &[]);
    r.finish();
}
