//! Plans over realistic guest trees, and their idempotence.

use super::*;
use crate::detect::{FirmwareHint, GuestInfo, InitSystem};
use crate::engine::identity::IdentityMap;
use crate::engine::plan::{MemFiles, OnFailure};
use crate::protocol::config::{Inputs, validate_inputs};

const BOOT_UUID: &str = "0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f";
const NEW_BOOT_UUID: &str = "7e57a9b1-0000-4c8e-9f27-3a1b2c4d5e6f";

fn inputs(source: &str, target: &str, rename: bool, nvme: bool) -> Inputs {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/protocol/valid/");
    let read = |f: &str| std::fs::read(format!("{dir}{f}")).unwrap();
    let mut sys: serde_json::Value =
        serde_json::from_slice(&read("system-configuration.json")).unwrap();
    sys["source"]["firmware"] = source.into();
    sys["target"]["firmware"] = target.into();
    sys["options"]["renameInterfaces"] = rename.into();
    let mut disks: serde_json::Value =
        serde_json::from_slice(&read("replica-disk-map.json")).unwrap();
    if nvme {
        sys["target"]["storageController"] = "nvme".into();
        disks["disks"][0]["target"]["controller"] = "nvme0".into();
        disks["disks"][1]["target"]["controller"] = "nvme0".into();
    }
    if target == "efi" {
        // An ESP as partition 1 of the boot disk, /boot as 2.
        disks["disks"][0]["partitions"] = serde_json::json!([
            { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "vfat",
              "sourceUuid": "ABCD-1234", "mountPoint": "/boot/efi" },
            { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "xfs",
              "sourceUuid": BOOT_UUID, "mountPoint": "/boot" }
        ]);
    }
    let (inputs, _) = validate_inputs(
        &serde_json::to_vec(&sys).unwrap(),
        &serde_json::to_vec(&disks).unwrap(),
        &read("network-interface-map.json"),
    )
    .unwrap();
    inputs
}

fn info(os_id: &str, version: &str, family: OsFamily, bootloader: Bootloader) -> GuestInfo {
    GuestInfo {
        os_id: os_id.into(),
        os_version: version.into(),
        pretty_name: format!("{os_id} {version}"),
        family,
        arch: "x86_64".into(),
        init_system: InitSystem::Systemd,
        bootloader,
        firmware: FirmwareHint::Unknown,
        kernels: vec![],
        root: None,
    }
}

fn identity() -> IdentityMap {
    IdentityMap::from_pairs(&[
        ("/dev/sda1", "UUID=0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f"),
        ("/dev/xvda2", "UUID=6a6e0e52-1f4b-4a67-b7a9-2c9b0c1d2e3f"),
        ("/dev/vda2", "UUID=6a6e0e52-1f4b-4a67-b7a9-2c9b0c1d2e3f"),
        ("UUID=5ee1-old-swap", "UUID=5ee1-new-swap"),
        (
            &format!("UUID={BOOT_UUID}") as &str,
            &format!("UUID={NEW_BOOT_UUID}"),
        ),
    ])
}

struct Case {
    name: &'static str,
    files: MemFiles,
    info: GuestInfo,
    inputs: Inputs,
    /// (path, text it must contain) for each written file.
    writes: &'static [(&'static str, &'static str)],
    /// The commands' argv, joined with spaces.
    commands: &'static [&'static str],
    summary_has: &'static [&'static str],
}

fn run(files: &MemFiles, info: &GuestInfo, inputs: &Inputs) -> Result<Plan, FixupError> {
    let identity = identity();
    let ctx = PlanCtx {
        files,
        info,
        inputs,
        identity: &identity,
        stack_arch: "x86_64",
        boot_device: None,
    };
    plan(&ctx)
}

fn apply(files: &MemFiles, plan: &Plan) -> MemFiles {
    let mut out = files.clone();
    for e in &plan.edits {
        match e {
            Edit::Write { path, contents, .. } => {
                out.files.insert(path.clone(), contents.clone());
            }
            // Saved for undo; the command regenerates it.
            Edit::Preserve { .. } => {}
            other => panic!("unexpected edit {other:?}"),
        }
    }
    out
}

fn written<'a>(plan: &'a Plan, path: &str) -> Option<&'a [u8]> {
    plan.edits.iter().find_map(|e| match e {
        Edit::Write {
            path: p, contents, ..
        } if p == path => Some(contents.as_slice()),
        _ => None,
    })
}

fn argvs(plan: &Plan) -> Vec<String> {
    plan.commands.iter().map(|c| c.argv.join(" ")).collect()
}

const DEBIAN12: &str = "\
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"
GRUB_CMDLINE_LINUX=\"\"
#GRUB_DISABLE_OS_PROBER=false
";

const RHEL7: &str = "\
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT=\"console\"
GRUB_CMDLINE_LINUX=\"crashkernel=auto rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet console=hvc0\"
GRUB_DISABLE_RECOVERY=\"true\"
";

const RHEL8: &str = "\
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT=\"console\"
GRUB_CMDLINE_LINUX=\"crashkernel=auto resume=UUID=5ee1-old-swap rd.lvm.lv=rhel/root rhgb quiet\"
GRUB_DISABLE_RECOVERY=\"true\"
GRUB_ENABLE_BLSCFG=true
";

const RHEL8_ENTRY: &str = "\
title Red Hat Enterprise Linux (4.18.0-477.10.1.el8_8.x86_64) 8.8 (Ootpa)
version 4.18.0-477.10.1.el8_8.x86_64
linux /vmlinuz-4.18.0-477.10.1.el8_8.x86_64
initrd /initramfs-4.18.0-477.10.1.el8_8.x86_64.img $tuned_initrd
options $kernelopts $tuned_params
id rhel-20230615-4.18.0-477.10.1.el8_8.x86_64
grub_users $grub_users
grub_arg --unrestricted
grub_class kernel
";

const RHEL8_CMDLINE: &str = "root=/dev/mapper/rhel-root ro crashkernel=auto resume=UUID=5ee1-old-swap rd.lvm.lv=rhel/root rhgb quiet\n";

const RHEL9: &str = "\
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT=\"console\"
GRUB_CMDLINE_LINUX=\"crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=UUID=5ee1-old-swap rd.lvm.lv=rhel/root rhgb quiet\"
GRUB_DISABLE_RECOVERY=\"true\"
GRUB_ENABLE_BLSCFG=true
";

const RHEL9_ENTRY: &str = "\
title Red Hat Enterprise Linux (5.14.0-362.8.1.el9_3.x86_64) 9.3 (Plow)
version 5.14.0-362.8.1.el9_3.x86_64
linux /vmlinuz-5.14.0-362.8.1.el9_3.x86_64
initrd /initramfs-5.14.0-362.8.1.el9_3.x86_64.img $tuned_initrd
options root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=UUID=5ee1-old-swap rd.lvm.lv=rhel/root rhgb quiet
grub_users $grub_users
grub_arg --unrestricted
grub_class rhel
";

const RHEL9_STUB: &str = "\
search --no-floppy --fs-uuid --set=dev 0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f
set prefix=($dev)/grub2

export $prefix
configfile $prefix/grub.cfg
";

const SLES15: &str = "\
GRUB_DISTRIBUTOR=
GRUB_DEFAULT=saved
GRUB_HIDDEN_TIMEOUT=0
GRUB_HIDDEN_TIMEOUT_QUIET=true
GRUB_TIMEOUT=8
GRUB_CMDLINE_LINUX_DEFAULT=\"splash=silent resume=/dev/vda2 mitigations=auto quiet security=apparmor\"
GRUB_CMDLINE_LINUX=\"\"
GRUB_TERMINAL=\"gfxterm\"
GRUB_GFXMODE=\"auto\"
GRUB_DISABLE_OS_PROBER=\"false\"
";

const UBUNTU2204: &str = "\
GRUB_DEFAULT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0 nvme_core.io_timeout=4294967295\"
GRUB_CMDLINE_LINUX=\"\"
";

const UBUNTU2004_PARTUUID: &str = "7d2c1b0a-9e8f-4d6c-b5a4-3f2e1d0c9b8a";

/// Ubuntu 20.04's Azure cloud image: `/etc/default/grub` and the image's
/// drop-ins.
fn ubuntu2004_cloud() -> MemFiles {
    MemFiles::new()
        .with(
            "/etc/default/grub",
            "GRUB_DEFAULT=0\nGRUB_TIMEOUT_STYLE=hidden\nGRUB_TIMEOUT=0\n\
             GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX=\"\"\n",
        )
        .with(
            "/etc/default/grub.d/40-force-partuuid.cfg",
            &format!(
                "# Force the kernel to boot without an initramfs on the first attempt\n\
                 GRUB_FORCE_PARTUUID={UBUNTU2004_PARTUUID}\n"
            ),
        )
        .with(
            "/etc/default/grub.d/50-cloudimg-settings.cfg",
            "# Set the default commandline\n\
             GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0 earlyprintk=ttyS0 resume=/dev/xvda2 nvme_core.io_timeout=4294967295\"\n\n\
             # Set the grub console type\nGRUB_TERMINAL=serial\n",
        )
        .with("/etc/default/grub.d/init-select.cfg.dpkg-old", "GRUB_CMDLINE_LINUX=\"x\"\n")
        .with("/usr/sbin/grub-mkconfig", "")
        .with("/usr/lib/grub/i386-pc/boot.img", "")
}

const UBUNTU_STUB: &str = "\
search.fs_uuid 0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f root hd0,gpt2
set prefix=($root)'/boot/grub'
configfile $prefix/grub.cfg
";

const RHEL6: &str = "\
# grub.conf generated by anaconda
#boot=/dev/xvda
default=0
timeout=5
hiddenmenu
title CentOS (2.6.32-754.35.1.el6.x86_64)
\troot (hd0,0)
\tkernel /vmlinuz-2.6.32-754.35.1.el6.x86_64 ro root=/dev/xvda2 rd_NO_LUKS LANG=en_US.UTF-8 console=hvc0 xencons=tty xen_blkfront.sda_is_xvda=1 rd_NO_MD KEYTABLE=us rd_NO_DM
\tinitrd /initramfs-2.6.32-754.35.1.el6.x86_64.img
";

fn grubenv(vars: &str) -> String {
    let mut s = format!("# GRUB Environment Block\n{vars}");
    while s.len() < 1024 {
        s.push('#');
    }
    s
}

/// Photon OS 4 as its installer leaves it (root named by device here).
fn photon4() -> MemFiles {
    MemFiles::new()
        .with("/etc/default/grub", "")
        .with("/usr/sbin/grub2-mkconfig", "")
        .with("/usr/lib/grub/i386-pc/boot.img", "")
        .with(
            "/boot/grub2/grub.cfg",
            "# Generated by Photon Installer\n# DO NOT OVERWRITE THIS FILE USING 'grub2-mkconfig'\n\
             load_env -f /boot/photon.cfg\nif [ -f /boot/systemd.cfg ]; then\n  \
             load_env -f /boot/systemd.cfg\nelse\n  set systemd_cmdline=net.ifnames=0\nfi\n\
             set rootpartition=/dev/vda2\nmenuentry \"Photon\" {\n  linux /boot/$photon_linux \
             root=$rootpartition $photon_cmdline $systemd_cmdline\n}\n",
        )
        .with(
            "/boot/linux-5.10.216-1.ph4.cfg",
            "# GRUB Environment Block\n\
             photon_cmdline=init=/lib/systemd/systemd ro loglevel=3 quiet console=hvc0\n\
             photon_linux=vmlinuz-5.10.216-1.ph4\nphoton_initrd=initrd.img-5.10.216-1.ph4\n",
        )
        .with_link("/boot/photon.cfg", "linux-5.10.216-1.ph4.cfg")
        .with(
            "/boot/systemd.cfg",
            "# GRUB Environment Block\nsystemd_cmdline=net.ifnames=0 plymouth.enable=0\n",
        )
}

#[test]
fn photon_grub_cfg_is_not_regenerated() {
    let info = info("photon", "4.0", OsFamily::Photon, Bootloader::Grub2);
    let plan = run(&photon4(), &info, &inputs("bios", "bios", true, false)).unwrap();
    // grub2-mkconfig's input is left alone: nothing runs it.
    assert!(
        written(&plan, "/etc/default/grub").is_none(),
        "{:?}",
        plan.edits
    );
    assert!(written(&plan, "/boot/photon.cfg").is_none());
    // Without systemd.cfg the NIC options go to the kernels' command line.
    let mut files = photon4();
    files.files.remove("/boot/systemd.cfg");
    let plan = run(&files, &info, &inputs("bios", "bios", true, false)).unwrap();
    let kernel = String::from_utf8_lossy(written(&plan, "/boot/linux-5.10.216-1.ph4.cfg").unwrap())
        .into_owned();
    assert!(
        kernel.contains("\nphoton_cmdline=init=/lib/systemd/systemd ro loglevel=3 quiet net.ifnames=0 biosdevname=0\n"),
        "{kernel}"
    );
    // Another GRUB 2 guest still gets its grub.cfg regenerated.
    let mut files = photon4();
    files.files.insert(
        "/boot/grub2/grub.cfg".into(),
        b"menuentry x {\n}\n".to_vec(),
    );
    let plan = run(&files, &info, &inputs("bios", "bios", true, false)).unwrap();
    assert!(argvs(&plan).iter().any(|c| c.starts_with("grub2-mkconfig")));
}

fn rhel_esp(files: MemFiles, vendor: &str) -> MemFiles {
    files
        .with(&format!("/boot/efi/EFI/{vendor}/shimx64.efi"), "SHIM")
        .with(&format!("/boot/efi/EFI/{vendor}/grubx64.efi"), "GRUB")
        .with(&format!("/boot/efi/EFI/{vendor}/mmx64.efi"), "MM")
        .with(
            &format!("/boot/efi/EFI/{vendor}/BOOTX64.CSV"),
            "shimx64.efi,Red Hat\n",
        )
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "Debian 12 BIOS",
            files: MemFiles::new()
                .with("/etc/default/grub", DEBIAN12)
                .with("/usr/sbin/grub-mkconfig", "")
                .with("/usr/lib/grub/i386-pc/boot.img", ""),
            info: info("debian", "12", OsFamily::Debian, Bootloader::Grub2),
            inputs: inputs("bios", "bios", true, false),
            writes: &[(
                "/etc/default/grub",
                "GRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\n#GRUB_DISABLE_OS_PROBER=false\nGRUB_DISABLE_OS_PROBER=true\n",
            )],
            commands: &[
                "dd if=/dev/sda of=/opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial bs=1M count=1 conv=fsync",
                "mv -f /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin",
                "grub-install --target=i386-pc /dev/sda",
                "grub-mkconfig -o /boot/grub/grub.cfg",
            ],
            summary_has: &["net.ifnames=0 added", "grub-install i386-pc /dev/sda", "grub-mkconfig"],
        },
        Case {
            name: "RHEL 7 BIOS",
            files: MemFiles::new()
                .with("/etc/default/grub", RHEL7)
                .with("/usr/sbin/grub2-mkconfig", "")
                .with("/usr/lib/grub/i386-pc/boot.img", "")
                .with("/boot/grub2/grub.cfg", "menuentry x {\n}\n"),
            info: info("rhel", "7.9", OsFamily::Rhel, Bootloader::Grub2),
            inputs: inputs("bios", "bios", false, false),
            writes: &[(
                "/etc/default/grub",
                "GRUB_CMDLINE_LINUX=\"crashkernel=auto rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet\"\n",
            )],
            commands: &[
                "dd if=/dev/sda of=/opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial bs=1M count=1 conv=fsync",
                "mv -f /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin",
                "grub2-install --target=i386-pc /dev/sda",
                "grub2-mkconfig -o /boot/grub2/grub.cfg",
            ],
            summary_has: &["console=hvc0 removed", "grub2-install i386-pc /dev/sda"],
        },
        Case {
            name: "RHEL 7 UEFI",
            files: rhel_esp(MemFiles::new(), "redhat")
                .with("/etc/default/grub", RHEL7)
                .with("/usr/sbin/grub2-mkconfig", "")
                .with("/boot/efi/EFI/redhat/grub.cfg", "set timeout=5\nmenuentry 'RHEL' {\n linuxefi /vmlinuz\n}\n"),
            info: info("rhel", "7.9", OsFamily::Rhel, Bootloader::Grub2),
            inputs: inputs("efi", "efi", true, false),
            writes: &[
                ("/etc/default/grub", "rhgb quiet net.ifnames=0 biosdevname=0\""),
                ("/boot/efi/EFI/BOOT/BOOTX64.EFI", "SHIM"),
                ("/boot/efi/EFI/BOOT/grubx64.efi", "GRUB"),
                ("/boot/efi/EFI/BOOT/mmx64.efi", "MM"),
            ],
            commands: &[
                "grub2-mkconfig -o /boot/efi/EFI/redhat/grub.cfg",
                "efibootmgr -c -d /dev/sda -p 1 -L Red Hat Enterprise Linux -l \\EFI\\redhat\\shimx64.efi",
            ],
            summary_has: &["ESP fallback \\EFI\\BOOT\\BOOTX64.EFI", "efibootmgr"],
        },
        Case {
            name: "RHEL 8 UEFI, BLS with grubenv kernelopts",
            files: rhel_esp(MemFiles::new(), "redhat")
                .with("/etc/default/grub", RHEL8)
                .with("/usr/sbin/grub2-mkconfig", "")
                .with("/boot/efi/EFI/redhat/grub.cfg", "set timeout=5\nload_env -f ${config_directory}/grubenv\nblscfg\n")
                .with_link("/boot/grub2/grubenv", "../efi/EFI/redhat/grubenv")
                .with(
                    "/boot/efi/EFI/redhat/grubenv",
                    &grubenv(&format!("saved_entry=rhel-20230615-4.18.0-477.10.1.el8_8.x86_64\nkernelopts={}boot_success=0\n", RHEL8_CMDLINE)),
                )
                .with("/boot/loader/entries/rhel-20230615-4.18.0-477.10.1.el8_8.x86_64.conf", RHEL8_ENTRY)
                .with("/etc/kernel/cmdline", RHEL8_CMDLINE),
            info: info("rhel", "8.8", OsFamily::Rhel, Bootloader::Bls),
            inputs: inputs("efi", "efi", true, false),
            writes: &[
                ("/etc/default/grub", "resume=UUID=5ee1-new-swap rd.lvm.lv=rhel/root rhgb quiet net.ifnames=0 biosdevname=0\""),
                ("/boot/efi/EFI/redhat/grubenv", "kernelopts=root=/dev/mapper/rhel-root ro crashkernel=auto resume=UUID=5ee1-new-swap rd.lvm.lv=rhel/root rhgb quiet net.ifnames=0 biosdevname=0\nboot_success=0\n#"),
                ("/etc/kernel/cmdline", "resume=UUID=5ee1-new-swap rd.lvm.lv=rhel/root rhgb quiet net.ifnames=0 biosdevname=0\n"),
                ("/boot/efi/EFI/BOOT/BOOTX64.EFI", "SHIM"),
            ],
            commands: &[
                "grub2-mkconfig -o /boot/efi/EFI/redhat/grub.cfg",
                "efibootmgr -c -d /dev/sda -p 1 -L Red Hat Enterprise Linux -l \\EFI\\redhat\\shimx64.efi",
            ],
            summary_has: &["resume=UUID=5ee1-old-swap -> resume=UUID=5ee1-new-swap", "grubenv kernelopts"],
        },
        Case {
            name: "RHEL 9 UEFI with the ESP stub",
            files: rhel_esp(MemFiles::new(), "redhat")
                .with("/etc/default/grub", RHEL9)
                .with("/usr/sbin/grub2-mkconfig", "")
                .with("/boot/efi/EFI/BOOT/BOOTX64.EFI", "SHIM")
                .with("/boot/efi/EFI/BOOT/fbx64.efi", "FB")
                .with("/boot/efi/EFI/redhat/grub.cfg", RHEL9_STUB)
                .with("/boot/grub2/grubenv", &grubenv("saved_entry=x\n"))
                .with("/boot/loader/entries/abc-5.14.0-362.8.1.el9_3.x86_64.conf", RHEL9_ENTRY)
                .with("/etc/kernel/cmdline", "root=/dev/mapper/rhel-root ro resume=UUID=5ee1-old-swap\n"),
            info: info("rhel", "9.3", OsFamily::Rhel, Bootloader::Bls),
            inputs: inputs("efi", "efi", true, false),
            writes: &[
                ("/boot/loader/entries/abc-5.14.0-362.8.1.el9_3.x86_64.conf", "resume=UUID=5ee1-new-swap rd.lvm.lv=rhel/root rhgb quiet net.ifnames=0 biosdevname=0\n"),
                ("/boot/efi/EFI/redhat/grub.cfg", "--set=dev 7e57a9b1-0000-4c8e-9f27-3a1b2c4d5e6f\nset prefix"),
                ("/boot/efi/EFI/BOOT/grubx64.efi", "GRUB"),
            ],
            commands: &[
                "grub2-mkconfig -o /boot/grub2/grub.cfg",
                "efibootmgr -c -d /dev/sda -p 1 -L Red Hat Enterprise Linux -l \\EFI\\redhat\\shimx64.efi",
            ],
            summary_has: &["BLS entries: 1", "grub2-mkconfig -o /boot/grub2/grub.cfg"],
        },
        Case {
            name: "SLES 15 BIOS",
            files: MemFiles::new()
                .with("/etc/default/grub", SLES15)
                .with("/usr/sbin/grub2-mkconfig", "")
                .with("/usr/share/grub2/i386-pc/boot.img", ""),
            info: info("sles", "15.5", OsFamily::Suse, Bootloader::Grub2),
            inputs: inputs("bios", "bios", true, false),
            writes: &[(
                "/etc/default/grub",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"splash=silent resume=UUID=6a6e0e52-1f4b-4a67-b7a9-2c9b0c1d2e3f mitigations=auto quiet security=apparmor\"\nGRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\n",
            )],
            commands: &[
                "dd if=/dev/sda of=/opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial bs=1M count=1 conv=fsync",
                "mv -f /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin",
                "grub2-install --target=i386-pc /dev/sda",
                "grub2-mkconfig -o /boot/grub2/grub.cfg",
            ],
            summary_has: &["resume=/dev/vda2 -> resume=UUID=6a6e"],
        },
        Case {
            name: "Ubuntu 22.04 cloud image, UEFI",
            files: MemFiles::new()
                .with("/etc/default/grub", UBUNTU2204)
                .with("/usr/sbin/grub-mkconfig", "")
                .with("/boot/efi/EFI/ubuntu/shimx64.efi", "SHIM")
                .with("/boot/efi/EFI/ubuntu/grubx64.efi", "GRUB")
                .with("/boot/efi/EFI/ubuntu/mmx64.efi", "MM")
                .with("/boot/efi/EFI/ubuntu/grub.cfg", UBUNTU_STUB),
            info: info("ubuntu", "22.04", OsFamily::Debian, Bootloader::Grub2),
            inputs: inputs("efi", "efi", false, false),
            writes: &[
                ("/etc/default/grub", "GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0\"\n"),
                ("/boot/efi/EFI/ubuntu/grub.cfg", "search.fs_uuid 7e57a9b1-0000-4c8e-9f27-3a1b2c4d5e6f root"),
                ("/boot/efi/EFI/BOOT/BOOTX64.EFI", "SHIM"),
            ],
            commands: &[
                "grub-mkconfig -o /boot/grub/grub.cfg",
                "efibootmgr -c -d /dev/sda -p 1 -L ubuntu -l \\EFI\\ubuntu\\shimx64.efi",
            ],
            summary_has: &["nvme_core.io_timeout=4294967295 removed"],
        },
        Case {
            name: "Ubuntu 20.04 cloud image, grub.d drop-ins",
            files: ubuntu2004_cloud(),
            info: info("ubuntu", "20.04", OsFamily::Debian, Bootloader::Grub2),
            inputs: inputs("bios", "bios", true, false),
            writes: &[
                ("/etc/default/grub", "GRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\nGRUB_DISABLE_OS_PROBER=true\n"),
                ("/etc/default/grub.d/40-force-partuuid.cfg", "first attempt\n#GRUB_FORCE_PARTUUID=7d2c1b0a-9e8f-4d6c-b5a4-3f2e1d0c9b8a\n"),
                ("/etc/default/grub.d/50-cloudimg-settings.cfg", "\nGRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0 earlyprintk=ttyS0 resume=UUID=6a6e0e52-1f4b-4a67-b7a9-2c9b0c1d2e3f\"\n\n# Set the grub console type\nGRUB_TERMINAL=serial\n"),
            ],
            commands: &[
                "dd if=/dev/sda of=/opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial bs=1M count=1 conv=fsync",
                "mv -f /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin",
                "grub-install --target=i386-pc /dev/sda",
                "grub-mkconfig -o /boot/grub/grub.cfg",
            ],
            summary_has: &[
                "nvme_core.io_timeout=4294967295 removed",
                "GRUB_FORCE_PARTUUID=7d2c1b0a-9e8f-4d6c-b5a4-3f2e1d0c9b8a commented out",
                "grub.d drop-ins: 2",
            ],
        },
        Case {
            name: "RHEL 6 Xen guest, GRUB legacy",
            files: MemFiles::new()
                .with("/boot/grub/grub.conf", RHEL6)
                .with_link("/boot/grub/menu.lst", "./grub.conf")
                .with("/boot/grub/device.map", "# this device map was generated by anaconda\n(hd0)     /dev/xvda\n"),
            info: info("centos", "6.10", OsFamily::Rhel, Bootloader::GrubLegacy),
            inputs: inputs("bios", "bios", true, false),
            writes: &[
                ("/boot/grub/grub.conf", "\tkernel /vmlinuz-2.6.32-754.35.1.el6.x86_64 ro root=UUID=6a6e0e52-1f4b-4a67-b7a9-2c9b0c1d2e3f rd_NO_LUKS LANG=en_US.UTF-8 rd_NO_MD KEYTABLE=us rd_NO_DM net.ifnames=0 biosdevname=0\n"),
                ("/boot/grub/device.map", "(hd0)     /dev/sda\n"),
            ],
            commands: &[
                "dd if=/dev/sda of=/opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial bs=1M count=1 conv=fsync",
                "mv -f /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin",
                "sh -c printf 'device (hd0) /dev/sda\\nroot (hd0,0)\\nsetup (hd0)\\nquit\\n' | grub --batch --no-floppy --device-map=/boot/grub/device.map",
            ],
            summary_has: &["xen_blkfront.sda_is_xvda=1 removed", "grub setup /dev/sda"],
        },
        Case {
            name: "Photon 4 BIOS, the installer's grub.cfg",
            files: photon4(),
            info: info("photon", "4.0", OsFamily::Photon, Bootloader::Grub2),
            inputs: inputs("bios", "bios", true, false),
            writes: &[
                ("/boot/grub2/grub.cfg", "\nset rootpartition=UUID=6a6e0e52-1f4b-4a67-b7a9-2c9b0c1d2e3f\n"),
                ("/boot/linux-5.10.216-1.ph4.cfg", "\nphoton_cmdline=init=/lib/systemd/systemd ro loglevel=3 quiet\n"),
                ("/boot/systemd.cfg", "\nsystemd_cmdline=net.ifnames=0 plymouth.enable=0 biosdevname=0\n"),
            ],
            commands: &[
                "dd if=/dev/sda of=/opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial bs=1M count=1 conv=fsync",
                "mv -f /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin",
                "grub2-install --target=i386-pc /dev/sda",
            ],
            summary_has: &["console=hvc0 removed", "/boot/grub2/grub.cfg kept"],
        },
        Case {
            name: "NVMe target",
            files: MemFiles::new()
                .with("/etc/default/grub", DEBIAN12)
                .with("/usr/lib/grub/i386-pc/boot.img", ""),
            info: info("debian", "12", OsFamily::Debian, Bootloader::Grub2),
            inputs: inputs("bios", "bios", false, true),
            writes: &[],
            commands: &[
                "dd if=/dev/nvme0n1 of=/opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial bs=1M count=1 conv=fsync",
                "mv -f /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin.partial /opt/vmware/hcx/osam/data/boot-disk-first-mib.bin",
                "grub-install --target=i386-pc /dev/nvme0n1",
                "grub-mkconfig -o /boot/grub/grub.cfg",
            ],
            summary_has: &[],
        },
    ]
}

#[test]
fn realistic_guests() {
    for case in cases() {
        let plan = run(&case.files, &case.info, &case.inputs)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for (path, has) in case.writes {
            let w = written(&plan, path)
                .unwrap_or_else(|| panic!("{}: {path} not written: {:?}", case.name, plan.edits));
            let text = String::from_utf8_lossy(w);
            assert!(
                text.contains(has),
                "{}: {path} lacks {has:?}:\n{text}",
                case.name
            );
        }
        assert_eq!(argvs(&plan), case.commands, "{}", case.name);
        for s in case.summary_has {
            assert!(
                plan.summary.contains(s),
                "{}: summary {:?} lacks {s:?}",
                case.name,
                plan.summary
            );
        }
        // efibootmgr may fail (NVRAM); everything else fails the step,
        // except a BIOS install over a BIOS source.
        for c in &plan.commands {
            let want = if c.argv[0] == "efibootmgr"
                || (c.argv[0].ends_with("-install") || c.argv[0] == "sh")
                    && case.inputs.system.source.firmware == Firmware::Bios
            {
                OnFailure::Warn
            } else {
                OnFailure::Fail
            };
            assert_eq!(c.on_failure, want, "{}: {:?}", case.name, c.argv);
        }

        // Idempotence: a plan over the result has no edits, the same
        // commands (but the first MiB is saved once only); the save of
        // the regenerated grub.cfg comes again, and the writer keeps the
        // first run's original.
        let mut after = apply(&case.files, &plan);
        after.files.insert(FIRST_MIB.into(), vec![0; 1 << 20]);
        let again = run(&after, &case.info, &case.inputs).unwrap();
        let preserved = |p: &Plan| -> Vec<Edit> {
            p.edits
                .iter()
                .filter(|e| matches!(e, Edit::Preserve { .. }))
                .cloned()
                .collect()
        };
        assert_eq!(preserved(&again), preserved(&plan), "{}", case.name);
        assert!(
            again
                .edits
                .iter()
                .all(|e| matches!(e, Edit::Preserve { .. })),
            "{}: second plan edits {:?}",
            case.name,
            again.edits
        );
        let want: Vec<String> = argvs(&plan)
            .into_iter()
            .filter(|c| !c.starts_with("dd ") && !c.starts_with("mv -f "))
            .collect();
        assert_eq!(argvs(&again), want, "{}", case.name);
    }
}

#[test]
fn grubenv_is_written_through_its_link_and_stays_1024_bytes() {
    let case = cases()
        .into_iter()
        .find(|c| c.name.starts_with("RHEL 8"))
        .unwrap();
    let plan = run(&case.files, &case.info, &case.inputs).unwrap();
    assert!(written(&plan, "/boot/grub2/grubenv").is_none());
    assert_eq!(
        written(&plan, "/boot/efi/EFI/redhat/grubenv")
            .unwrap()
            .len(),
        1024
    );
    // The entry's `$kernelopts` line gets nothing appended.
    assert!(
        written(
            &plan,
            "/boot/loader/entries/rhel-20230615-4.18.0-477.10.1.el8_8.x86_64.conf"
        )
        .is_none()
    );
}

#[test]
fn errors_and_warnings() {
    // RHEL 8 on EFI without shim/GRUB on the ESP: no grub2-install.
    let files = MemFiles::new()
        .with("/etc/default/grub", RHEL8)
        .with("/boot/efi/EFI/redhat/grub.cfg", "blscfg\n");
    let info8 = info("rhel", "8.8", OsFamily::Rhel, Bootloader::Bls);
    let e = run(&files, &info8, &inputs("bios", "efi", true, false)).unwrap_err();
    assert_eq!(e.code, codes::BOOTLOADER_EFI_FILES_MISSING);
    // RHEL 7 there: installed, plus the fallback copy.
    let info7 = info("rhel", "7.9", OsFamily::Rhel, Bootloader::Grub2);
    let p = run(&files, &info7, &inputs("bios", "efi", true, false)).unwrap();
    assert_eq!(
        argvs(&p)[..2],
        [
            "grub2-install --target=x86_64-efi --efi-directory=/boot/efi --bootloader-id=redhat --no-nvram",
            "grub2-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram"
        ]
    );
    // No ESP at all.
    let e = run(
        &MemFiles::new().with("/etc/default/grub", RHEL7),
        &info7,
        &inputs("bios", "efi", true, false),
    )
    .unwrap_err();
    assert_eq!(e.code, codes::BOOTLOADER_NO_ESP);
    // UEFI source to BIOS target without i386-pc modules.
    let e = run(
        &MemFiles::new().with("/etc/default/grub", RHEL7),
        &info7,
        &inputs("efi", "bios", true, false),
    )
    .unwrap_err();
    assert_eq!(e.code, codes::BOOTLOADER_BIOS_MODULES_MISSING);
    // BIOS source: a warning, mkconfig only.
    let p = run(
        &MemFiles::new().with("/etc/default/grub", RHEL7),
        &info7,
        &inputs("bios", "bios", true, false),
    )
    .unwrap();
    assert_eq!(argvs(&p), ["grub2-mkconfig -o /boot/grub2/grub.cfg"]);
    assert_eq!(p.warnings[0].code, codes::BOOTLOADER_BIOS_MODULES_MISSING);
    // A UEFI source on a BIOS target: the install must succeed.
    let files = MemFiles::new()
        .with("/etc/default/grub", RHEL7)
        .with("/usr/lib/grub/i386-pc/boot.img", "");
    let p = run(&files, &info7, &inputs("efi", "bios", true, false)).unwrap();
    assert_eq!(p.commands[1].on_failure, OnFailure::Fail);
    // systemd-boot: left alone with a warning.
    let p = run(
        &MemFiles::new(),
        &info("fedora", "39", OsFamily::Rhel, Bootloader::SystemdBoot),
        &inputs("efi", "efi", true, false),
    )
    .unwrap();
    assert!(p.is_empty());
    assert_eq!(p.warnings[0].code, codes::BOOTLOADER_UNSUPPORTED);
    // A broken grubenv is an error, not a silent rewrite.
    let files = MemFiles::new().with("/boot/grub2/grubenv", "kernelopts=root=/dev/sda1\n");
    let e = run(&files, &info8, &inputs("bios", "bios", true, false)).unwrap_err();
    assert_eq!(e.code, codes::BOOTLOADER_GRUBENV);
}

#[test]
fn grub_d_force_partuuid() {
    let files = ubuntu2004_cloud();
    let info = info("ubuntu", "20.04", OsFamily::Debian, Bootloader::Grub2);
    let inputs = inputs("bios", "bios", true, false);
    let force = "/etc/default/grub.d/40-force-partuuid.cfg";
    // (the identity map's PARTUUIDs, what the drop-in becomes, warnings)
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, usize);
    let cases: &[Case] = &[
        // Unknown on the target (re-created partition table).
        (&[], Some("\n#GRUB_FORCE_PARTUUID=7d2c1b0a-"), 1),
        // Copied with the partition table: still no initramfs-less boot.
        (
            &[(UBUNTU2004_PARTUUID, UBUNTU2004_PARTUUID)],
            Some("\n#GRUB_FORCE_PARTUUID=7d2c1b0a-"),
            1,
        ),
        // The probe found another PARTUUID for it.
        (
            &[(UBUNTU2004_PARTUUID, "4b3a2918-02")],
            Some("\n#GRUB_FORCE_PARTUUID=7d2c1b0a-"),
            1,
        ),
    ];
    for (partuuids, drop_in, warnings) in cases {
        let mut identity = identity();
        for (s, t) in *partuuids {
            identity.insert_partuuid(s, t);
        }
        let ctx = PlanCtx {
            files: &files,
            info: &info,
            inputs: &inputs,
            identity: &identity,
            stack_arch: "x86_64",
            boot_device: None,
        };
        let plan = plan(&ctx).unwrap();
        let got = written(&plan, force).map(|w| String::from_utf8_lossy(w).into_owned());
        match drop_in {
            Some(has) => assert!(
                got.as_deref().is_some_and(|t| t.contains(has)),
                "{partuuids:?}: {got:?}"
            ),
            None => assert_eq!(got, None, "{partuuids:?}"),
        }
        let codes: Vec<&str> = plan.warnings.iter().map(|w| w.code.as_str()).collect();
        let n = codes
            .iter()
            .filter(|c| **c == codes::BOOTLOADER_FORCE_PARTUUID_DISABLED)
            .count();
        assert_eq!(n, *warnings, "{partuuids:?}: {codes:?}");
        // What grub-mkconfig does not read is left alone.
        assert!(written(&plan, "/etc/default/grub.d/init-select.cfg.dpkg-old").is_none());
    }
}

#[test]
fn helpers() {
    assert_eq!(partition_device("/dev/sda", 2), "/dev/sda2");
    assert_eq!(partition_device("/dev/nvme0n1", 1), "/dev/nvme0n1p1");
    assert_eq!(
        resolve_relative("/boot/grub2", "../efi/EFI/redhat/grubenv"),
        "/boot/efi/EFI/redhat/grubenv"
    );
}

/// A power cut while `dd` saved the first MiB leaves the file short or
/// empty (it is written in place); the rerun saves it again instead of
/// keeping a broken save for ever. A whole MiB is never saved twice.
#[test]
fn a_short_first_mib_save_is_redone() {
    let case = cases().into_iter().next().unwrap();
    let saves = |first_mib: Option<usize>| {
        let mut files = case.files.clone();
        if let Some(n) = first_mib {
            files.files.insert(FIRST_MIB.into(), vec![0; n]);
        }
        let plan = run(&files, &case.info, &case.inputs).unwrap();
        argvs(&plan).iter().filter(|c| c.starts_with("dd ")).count()
    };
    assert_eq!(saves(None), 1);
    assert_eq!(saves(Some(0)), 1, "an empty save (data lost in the cut)");
    assert_eq!(saves(Some(300 << 10)), 1, "a short save");
    assert_eq!(saves(Some(1 << 20)), 0, "a whole MiB");
}
