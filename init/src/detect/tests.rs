//! Detection on fixture guest trees laid out like the real distributions.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use goblin::elf::header::{ELFCLASS32, ELFCLASS64, EM_386, EM_X86_64};

use super::arch::test_elf_header;
use super::*;
use crate::error::codes;
use crate::guestfs::GuestRoot;

/// Builds a fixture guest.
type Build = fn(&Guest);

/// A guest tree in a temporary directory.
struct Guest {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Guest {
    fn new() -> Guest {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("sysroot");
        fs::create_dir(&root).unwrap();
        Guest { _tmp: tmp, root }
    }

    fn host(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn parent(&self, p: &str) -> PathBuf {
        let host = self.host(p);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        host
    }

    fn file(&self, p: &str, content: impl AsRef<[u8]>) -> &Self {
        fs::write(self.parent(p), content).unwrap();
        self
    }

    fn link(&self, p: &str, target: &str) -> &Self {
        symlink(target, self.parent(p)).unwrap();
        self
    }

    fn dir(&self, p: &str) -> &Self {
        fs::create_dir_all(self.host(p)).unwrap();
        self
    }

    fn fifo(&self, p: &str) -> &Self {
        nix::unistd::mkfifo(
            &self.parent(p),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        self
    }

    fn elf64(&self, p: &str) -> &Self {
        let mut bytes = test_elf_header(ELFCLASS64, true, EM_X86_64);
        bytes.extend_from_slice(&[0u8; 1000]);
        self.file(p, bytes)
    }

    fn elf32(&self, p: &str) -> &Self {
        self.file(p, test_elf_header(ELFCLASS32, true, EM_386))
    }

    /// /bin, /sbin, /lib, /lib64 as symlinks into /usr.
    fn usrmerge(&self) -> &Self {
        for d in ["bin", "sbin", "lib", "lib64"] {
            self.dir(&format!("/usr/{d}"));
            self.link(&format!("/{d}"), &format!("usr/{d}"));
        }
        self
    }

    /// A kernel: image, initramfs at `initrd` ({v} replaced), modules.
    fn kernel(&self, v: &str, initrd: &str) -> &Self {
        self.file(&format!("/boot/vmlinuz-{v}"), "kernel image");
        self.file(&initrd.replace("{v}", v), "initramfs");
        self.file(&format!("/lib/modules/{v}/modules.dep"), "");
        self.dir(&format!("/lib/modules/{v}/kernel/drivers"))
    }

    fn systemd(&self) -> &Self {
        self.elf64("/usr/lib/systemd/systemd");
        if !self.host("/lib").exists() {
            self.link("/lib/systemd/systemd", "../../usr/lib/systemd/systemd");
        }
        self
    }

    fn root(&self) -> GuestRoot {
        GuestRoot::open(&self.root).unwrap()
    }

    fn detect(&self) -> Result<(GuestInfo, Vec<crate::error::Warning>), FixupError> {
        detect(&self.root())
    }
}

fn os_release(id: &str, version: &str, pretty: &str, like: &str) -> String {
    format!(
        "NAME=\"{pretty}\"\nID=\"{id}\"\nID_LIKE=\"{like}\"\nVERSION_ID=\"{version}\"\n\
         PRETTY_NAME=\"{pretty}\"\nANSI_COLOR=\"0;31\"\n"
    )
}

const RHEL_INITRD: &str = "/boot/initramfs-{v}.img";
const DEB_INITRD: &str = "/boot/initrd.img-{v}";
const SUSE_INITRD: &str = "/boot/initrd-{v}";
const ESP_FSTAB: &str = "/dev/mapper/rhel-root / xfs defaults 0 0\n\
                         UUID=7B77-95E7 /boot/efi vfat umask=0077,shortname=winnt 0 2\n";

fn rhel6(g: &Guest) {
    g.file(
        "/etc/redhat-release",
        "Red Hat Enterprise Linux Server release 6.10 (Santiago)\n",
    )
    .elf64("/bin/bash")
    .link("/bin/sh", "bash")
    .elf64("/sbin/init")
    .elf64("/sbin/initctl")
    .file("/etc/init/rcS.conf", "start on startup\n")
    .file("/etc/inittab", "id:3:initdefault:\n")
    .file("/boot/grub/grub.conf", "default=0\ntimeout=5\n")
    .file("/boot/grub/stage2", "")
    .link("/etc/grub.conf", "../boot/grub/grub.conf")
    .file("/etc/fstab", "/dev/mapper/vg-root / ext4 defaults 1 1\n")
    .kernel("2.6.32-754.el6.x86_64", RHEL_INITRD)
    .kernel("2.6.32-696.el6.x86_64", RHEL_INITRD);
}

fn centos7(g: &Guest) {
    g.usrmerge()
        .file(
            "/etc/os-release",
            "NAME=\"CentOS Linux\"\nVERSION=\"7 (Core)\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\n\
             VERSION_ID=\"7\"\nPRETTY_NAME=\"CentOS Linux 7 (Core)\"\n",
        )
        .file(
            "/etc/redhat-release",
            "CentOS Linux release 7.9.2009 (Core)\n",
        )
        .systemd()
        .link("/usr/sbin/init", "../lib/systemd/systemd")
        .elf64("/usr/bin/bash")
        .link("/usr/bin/sh", "bash")
        .file("/boot/grub2/grub.cfg", "menuentry 'CentOS' {}\n")
        .dir("/boot/grub2/i386-pc")
        .kernel("3.10.0-1160.el7.x86_64", RHEL_INITRD)
        .kernel("3.10.0-957.el7.x86_64", RHEL_INITRD)
        .file("/boot/vmlinuz-0-rescue-2b6f1e0b4cfc4b5c9e1e8a", "rescue")
        .file(
            "/boot/initramfs-0-rescue-2b6f1e0b4cfc4b5c9e1e8a.img",
            "rescue",
        )
        .file("/boot/.vmlinuz-3.10.0-1160.el7.x86_64.hmac", "hmac");
}

fn rhel8_bls_efi(g: &Guest) {
    let v = "4.18.0-372.9.1.el8.x86_64";
    g.usrmerge()
        .file(
            "/etc/os-release",
            os_release(
                "rhel",
                "8.6",
                "Red Hat Enterprise Linux 8.6 (Ootpa)",
                "fedora",
            ),
        )
        .systemd()
        .link("/usr/sbin/init", "../lib/systemd/systemd")
        .elf64("/usr/bin/bash")
        .link("/usr/bin/sh", "bash")
        .file("/boot/efi/EFI/redhat/shimx64.efi", "")
        .file("/boot/efi/EFI/redhat/grubx64.efi", "")
        .file("/boot/efi/EFI/redhat/grub.cfg", "blscfg\n")
        .file("/boot/efi/EFI/BOOT/BOOTX64.EFI", "")
        .file(
            "/boot/grub2/grubenv",
            "kernelopts=root=/dev/mapper/rhel-root ro\n",
        )
        .file(
            &format!("/boot/loader/entries/0123456789abcdef-{v}.conf"),
            format!("title RHEL\nversion {v}\nlinux /vmlinuz-{v}\n"),
        )
        .file("/etc/fstab", ESP_FSTAB)
        .kernel(v, RHEL_INITRD)
        .file(&format!("/lib/modules/{v}/vmlinuz"), "kernel image");
}

fn rhel9_bls_bios(g: &Guest) {
    g.usrmerge()
        .file(
            "/etc/os-release",
            os_release(
                "rhel",
                "9.2",
                "Red Hat Enterprise Linux 9.2 (Plow)",
                "fedora",
            ),
        )
        .systemd()
        .link("/usr/sbin/init", "../lib/systemd/systemd")
        .elf64("/usr/bin/bash")
        .link("/usr/bin/sh", "bash")
        .file("/boot/grub2/grub.cfg", "blscfg\n")
        .dir("/boot/grub2/i386-pc")
        .file(
            "/boot/loader/entries/abc-5.14.0-284.11.1.el9_2.x86_64.conf",
            "title x\n",
        )
        .file(
            "/boot/loader/entries/abc-5.14.0-362.8.1.el9_3.x86_64.conf",
            "title y\n",
        )
        .kernel("5.14.0-362.8.1.el9_3.x86_64", RHEL_INITRD)
        .kernel("5.14.0-284.11.1.el9_2.x86_64", RHEL_INITRD);
}

fn rocky9_hybrid(g: &Guest) {
    g.usrmerge()
        .file(
            "/etc/os-release",
            os_release(
                "rocky",
                "9.3",
                "Rocky Linux 9.3 (Blue Onyx)",
                "rhel centos fedora",
            ),
        )
        .systemd()
        .link("/usr/sbin/init", "../lib/systemd/systemd")
        .elf64("/usr/bin/bash")
        .link("/usr/bin/sh", "bash")
        .file("/boot/grub2/grub.cfg", "blscfg\n")
        .dir("/boot/grub2/i386-pc")
        .file("/boot/efi/EFI/rocky/grubx64.efi", "")
        .file("/etc/fstab", ESP_FSTAB)
        .file(
            "/boot/loader/entries/abc-5.14.0-362.8.1.el9_3.x86_64.conf",
            "title y\n",
        )
        .kernel("5.14.0-362.8.1.el9_3.x86_64", RHEL_INITRD);
}

fn oracle8(g: &Guest) {
    g.usrmerge()
        .file(
            "/etc/os-release",
            os_release("ol", "8.8", "Oracle Linux Server 8.8", "fedora"),
        )
        .file("/etc/oracle-release", "Oracle Linux Server release 8.8\n")
        .file(
            "/etc/redhat-release",
            "Red Hat Enterprise Linux release 8.8 (Ootpa)\n",
        )
        .systemd()
        .link("/usr/sbin/init", "../lib/systemd/systemd")
        .elf64("/usr/bin/bash")
        .link("/usr/bin/sh", "bash")
        .file("/boot/grub2/grub.cfg", "blscfg\n")
        .dir("/boot/grub2/i386-pc")
        .file(
            "/boot/loader/entries/abc-5.4.17-2136.321.4.el8uek.x86_64.conf",
            "title uek\n",
        )
        .kernel("5.4.17-2136.321.4.el8uek.x86_64", RHEL_INITRD)
        .kernel("4.18.0-477.10.1.el8_8.x86_64", RHEL_INITRD);
}

fn amzn2(g: &Guest) {
    g.usrmerge()
        .file(
            "/etc/os-release",
            os_release("amzn", "2", "Amazon Linux 2", "centos rhel fedora"),
        )
        .file("/etc/system-release", "Amazon Linux release 2 (Karoo)\n")
        .systemd()
        .link("/usr/sbin/init", "../lib/systemd/systemd")
        .elf64("/usr/bin/bash")
        .link("/usr/bin/sh", "bash")
        .file("/boot/grub2/grub.cfg", "menuentry 'Amazon Linux' {}\n")
        .dir("/boot/grub2/i386-pc")
        .kernel("5.10.210-201.852.amzn2.x86_64", RHEL_INITRD)
        .kernel("4.14.355-275.570.amzn2.x86_64", RHEL_INITRD);
}

fn sles11_i686(g: &Guest) {
    let v = "3.0.101-63-pae";
    g.file(
        "/etc/SuSE-release",
        "SUSE Linux Enterprise Server 11 (i586)\nVERSION = 11\nPATCHLEVEL = 4\n",
    )
    .elf32("/bin/bash")
    .link("/bin/sh", "bash")
    .elf32("/sbin/init")
    .file("/etc/inittab", "id:3:initdefault:\n")
    .file("/boot/grub/menu.lst", "default 0\ntitle SLES 11\n")
    .file(&format!("/boot/vmlinuz-{v}"), "kernel")
    .file(&format!("/boot/vmlinux-{v}.gz"), "debug vmlinux")
    .file(&format!("/boot/initrd-{v}"), "initrd")
    .dir(&format!("/lib/modules/{v}/kernel"))
    .link("/boot/vmlinuz", &format!("vmlinuz-{v}"));
}

fn sles15_efi(g: &Guest) {
    let v = "5.14.21-150500.55.19-default";
    g.usrmerge()
        .file(
            "/usr/lib/os-release",
            "NAME=\"SLES\"\nVERSION=\"15-SP5\"\nVERSION_ID=\"15.5\"\n\
             PRETTY_NAME=\"SUSE Linux Enterprise Server 15 SP5\"\nID=\"sles\"\nID_LIKE=\"suse\"\n",
        )
        .link("/etc/os-release", "../usr/lib/os-release")
        .systemd()
        .link("/usr/sbin/init", "/usr/lib/systemd/systemd")
        .elf64("/usr/bin/bash")
        .link("/usr/bin/sh", "bash")
        .file("/boot/grub2/grub.cfg", "menuentry 'SLES' {}\n")
        .dir("/boot/grub2/x86_64-efi")
        .file("/boot/efi/EFI/sles/grub.efi", "")
        .file("/boot/efi/EFI/sles/shim.efi", "")
        .file("/etc/fstab", ESP_FSTAB)
        .kernel(v, SUSE_INITRD)
        .file(&format!("/boot/vmlinux-{v}.gz"), "debug");
}

fn ubuntu1404(g: &Guest) {
    let v = "3.13.0-170-generic";
    g.file(
        "/etc/os-release",
        "NAME=\"Ubuntu\"\nVERSION=\"14.04.6 LTS, Trusty Tahr\"\nID=ubuntu\nID_LIKE=debian\n\
         PRETTY_NAME=\"Ubuntu 14.04.6 LTS\"\nVERSION_ID=\"14.04\"\n",
    )
    .file(
        "/etc/lsb-release",
        "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=14.04\nDISTRIB_DESCRIPTION=\"Ubuntu 14.04.6 LTS\"\n",
    )
    .file("/etc/debian_version", "jessie/sid\n")
    .elf64("/bin/dash")
    .link("/bin/sh", "dash")
    .elf64("/sbin/init")
    .elf64("/sbin/initctl")
    .file("/etc/init/rc-sysinit.conf", "env DEFAULT_RUNLEVEL=2\n")
    .file("/boot/grub/grub.cfg", "menuentry 'Ubuntu' {}\n")
    .dir("/boot/grub/i386-pc")
    .kernel(v, DEB_INITRD)
    .file(&format!("/boot/vmlinuz-{v}.efi.signed"), "signed");
}

fn ubuntu1604(g: &Guest) {
    g.file(
        "/etc/os-release",
        os_release("ubuntu", "16.04", "Ubuntu 16.04.7 LTS", "debian"),
    )
    .elf64("/bin/dash")
    .link("/bin/sh", "dash")
    .elf64("/lib/systemd/systemd")
    .link("/sbin/init", "/lib/systemd/systemd")
    .file("/boot/grub/grub.cfg", "menuentry 'Ubuntu' {}\n")
    .dir("/boot/grub/i386-pc")
    .kernel("4.4.0-210-generic", DEB_INITRD)
    .kernel("4.4.0-21-generic", DEB_INITRD)
    .dir("/lib/modules/4.4.0-200-generic");
}

fn ubuntu2204_efi(g: &Guest) {
    let v = "5.15.0-91-generic";
    g.usrmerge()
        .file(
            "/usr/lib/os-release",
            os_release("ubuntu", "22.04", "Ubuntu 22.04.3 LTS", "debian"),
        )
        .link("/etc/os-release", "../usr/lib/os-release")
        .systemd()
        .link("/usr/sbin/init", "/lib/systemd/systemd")
        .elf64("/usr/bin/dash")
        .link("/usr/bin/sh", "dash")
        .file("/boot/efi/EFI/ubuntu/shimx64.efi", "")
        .file("/boot/efi/EFI/ubuntu/grubx64.efi", "")
        .file(
            "/boot/efi/EFI/ubuntu/grub.cfg",
            "configfile $prefix/grub.cfg\n",
        )
        .file("/boot/grub/grub.cfg", "menuentry 'Ubuntu' {}\n")
        .dir("/boot/grub/x86_64-efi")
        .file(
            "/etc/fstab",
            "UUID=1 / ext4 errors=remount-ro 0 1\nUUID=AB-CD /boot/efi vfat umask=0077 0 1\n",
        )
        .kernel(v, DEB_INITRD)
        .link("/boot/vmlinuz", &format!("vmlinuz-{v}"))
        .link("/boot/initrd.img", &format!("initrd.img-{v}"))
        .dir("/lib/modules/5.15.0-88-generic");
}

fn debian9_no_os_release(g: &Guest) {
    g.file("/etc/debian_version", "9.13\n")
        .elf64("/bin/dash")
        .link("/bin/sh", "dash")
        .elf64("/lib/systemd/systemd")
        .link("/sbin/init", "/lib/systemd/systemd")
        .file("/boot/grub/grub.cfg", "menuentry 'Debian' {}\n")
        .dir("/boot/grub/i386-pc")
        .kernel("4.9.0-13-amd64", DEB_INITRD);
}

fn debian12(g: &Guest) {
    g.usrmerge()
        .file(
            "/usr/lib/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
             VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        )
        .link("/etc/os-release", "../usr/lib/os-release")
        .file("/etc/debian_version", "12.4\n")
        .systemd()
        .link("/usr/sbin/init", "/lib/systemd/systemd")
        .elf64("/usr/bin/dash")
        .link("/usr/bin/sh", "dash")
        .file("/boot/grub/grub.cfg", "menuentry 'Debian' {}\n")
        .dir("/boot/grub/i386-pc")
        .kernel("6.1.0-18-amd64", DEB_INITRD)
        .kernel("6.1.0-13-amd64", DEB_INITRD);
}

fn photon4(g: &Guest) {
    g.usrmerge()
        .file(
            "/etc/os-release",
            "NAME=\"VMware Photon OS\"\nVERSION=\"4.0\"\nID=photon\nVERSION_ID=4.0\n\
             PRETTY_NAME=\"VMware Photon OS/Linux\"\n",
        )
        .file(
            "/etc/photon-release",
            "VMware Photon OS 4.0\nPHOTON_BUILD_NUMBER=1526e30ba\n",
        )
        .systemd()
        .link("/usr/sbin/init", "../lib/systemd/systemd")
        .elf64("/usr/bin/bash")
        .link("/usr/bin/sh", "bash")
        .file("/boot/grub2/grub.cfg", "menuentry 'Photon' {}\n")
        .dir("/boot/grub2/i386-pc")
        .kernel("5.10.152-3.ph4-esx", DEB_INITRD);
}

fn os_release_to_host_passwd(g: &Guest) {
    // The guest's own /etc/passwd, not the stack's, is what the link names.
    g.file("/etc/passwd", "ID=fixture\nVERSION_ID=1\nNAME=Fixture\n")
        .link("/etc/os-release", "/etc/passwd")
        .elf64("/bin/sh")
        .link("/sbin/init", "/../../../../lib/systemd/systemd")
        .elf64("/lib/systemd/systemd")
        .file("/boot/extlinux/extlinux.conf", "default linux\n")
        .kernel("6.6.1", DEB_INITRD);
}

fn fifo_os_release_with_redhat_release(g: &Guest) {
    g.fifo("/etc/os-release")
        .file("/etc/redhat-release", "CentOS release 6.10 (Final)\n");
}

fn huge_os_release_with_debian_version(g: &Guest) {
    g.file("/etc/os-release", "ID=x\n".repeat(100_000))
        .file("/etc/debian_version", "11.8\n");
}

struct Want {
    id: &'static str,
    version: &'static str,
    pretty: &'static str,
    family: OsFamily,
    arch: &'static str,
    init: InitSystem,
    bootloader: Bootloader,
    firmware: FirmwareHint,
    kernels: &'static [&'static str],
}

#[test]
fn fixture_guests() {
    use Bootloader as B;
    use FirmwareHint as F;
    use InitSystem as I;
    use OsFamily as O;
    let cases: &[(&str, Build, Want)] = &[
        (
            "rhel6",
            rhel6,
            Want {
                id: "rhel",
                version: "6.10",
                pretty: "Red Hat Enterprise Linux Server release 6.10 (Santiago)",
                family: O::Rhel,
                arch: "x86_64",
                init: I::Upstart,
                bootloader: B::GrubLegacy,
                firmware: F::Bios,
                kernels: &["2.6.32-696.el6.x86_64", "2.6.32-754.el6.x86_64"],
            },
        ),
        (
            "centos7",
            centos7,
            Want {
                id: "centos",
                version: "7",
                pretty: "CentOS Linux 7 (Core)",
                family: O::Rhel,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Grub2,
                firmware: F::Bios,
                kernels: &["3.10.0-957.el7.x86_64", "3.10.0-1160.el7.x86_64"],
            },
        ),
        (
            "rhel8 bls efi",
            rhel8_bls_efi,
            Want {
                id: "rhel",
                version: "8.6",
                pretty: "Red Hat Enterprise Linux 8.6 (Ootpa)",
                family: O::Rhel,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Bls,
                firmware: F::Efi,
                kernels: &["4.18.0-372.9.1.el8.x86_64"],
            },
        ),
        (
            "rhel9 bls bios",
            rhel9_bls_bios,
            Want {
                id: "rhel",
                version: "9.2",
                pretty: "Red Hat Enterprise Linux 9.2 (Plow)",
                family: O::Rhel,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Bls,
                firmware: F::Bios,
                kernels: &[
                    "5.14.0-284.11.1.el9_2.x86_64",
                    "5.14.0-362.8.1.el9_3.x86_64",
                ],
            },
        ),
        (
            "rocky9 hybrid",
            rocky9_hybrid,
            Want {
                id: "rocky",
                version: "9.3",
                pretty: "Rocky Linux 9.3 (Blue Onyx)",
                family: O::Rhel,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Bls,
                firmware: F::Unknown,
                kernels: &["5.14.0-362.8.1.el9_3.x86_64"],
            },
        ),
        (
            "oracle8",
            oracle8,
            Want {
                id: "ol",
                version: "8.8",
                pretty: "Oracle Linux Server 8.8",
                family: O::Rhel,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Bls,
                firmware: F::Bios,
                kernels: &[
                    "4.18.0-477.10.1.el8_8.x86_64",
                    "5.4.17-2136.321.4.el8uek.x86_64",
                ],
            },
        ),
        (
            "amzn2",
            amzn2,
            Want {
                id: "amzn",
                version: "2",
                pretty: "Amazon Linux 2",
                family: O::Rhel,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Grub2,
                firmware: F::Bios,
                kernels: &[
                    "4.14.355-275.570.amzn2.x86_64",
                    "5.10.210-201.852.amzn2.x86_64",
                ],
            },
        ),
        (
            "sles11 i686",
            sles11_i686,
            Want {
                id: "sles",
                version: "11.4",
                pretty: "SUSE Linux Enterprise Server 11 (i586)",
                family: O::Suse,
                arch: "i686",
                init: I::Sysvinit,
                bootloader: B::GrubLegacy,
                firmware: F::Bios,
                kernels: &["3.0.101-63-pae"],
            },
        ),
        (
            "sles15 efi",
            sles15_efi,
            Want {
                id: "sles",
                version: "15.5",
                pretty: "SUSE Linux Enterprise Server 15 SP5",
                family: O::Suse,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Grub2,
                firmware: F::Efi,
                kernels: &["5.14.21-150500.55.19-default"],
            },
        ),
        (
            "ubuntu 14.04",
            ubuntu1404,
            Want {
                id: "ubuntu",
                version: "14.04",
                pretty: "Ubuntu 14.04.6 LTS",
                family: O::Debian,
                arch: "x86_64",
                init: I::Upstart,
                bootloader: B::Grub2,
                firmware: F::Bios,
                kernels: &["3.13.0-170-generic"],
            },
        ),
        (
            "ubuntu 16.04",
            ubuntu1604,
            Want {
                id: "ubuntu",
                version: "16.04",
                pretty: "Ubuntu 16.04.7 LTS",
                family: O::Debian,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Grub2,
                firmware: F::Bios,
                kernels: &["4.4.0-21-generic", "4.4.0-210-generic"],
            },
        ),
        (
            "ubuntu 22.04 efi",
            ubuntu2204_efi,
            Want {
                id: "ubuntu",
                version: "22.04",
                pretty: "Ubuntu 22.04.3 LTS",
                family: O::Debian,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Grub2,
                firmware: F::Efi,
                kernels: &["5.15.0-91-generic"],
            },
        ),
        (
            "debian9 debian_version only",
            debian9_no_os_release,
            Want {
                id: "debian",
                version: "9.13",
                pretty: "Debian GNU/Linux 9.13",
                family: O::Debian,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Grub2,
                firmware: F::Bios,
                kernels: &["4.9.0-13-amd64"],
            },
        ),
        (
            "debian12",
            debian12,
            Want {
                id: "debian",
                version: "12",
                pretty: "Debian GNU/Linux 12 (bookworm)",
                family: O::Debian,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Grub2,
                firmware: F::Bios,
                kernels: &["6.1.0-13-amd64", "6.1.0-18-amd64"],
            },
        ),
        (
            "photon4",
            photon4,
            Want {
                id: "photon",
                version: "4.0",
                pretty: "VMware Photon OS/Linux",
                family: O::Photon,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Grub2,
                firmware: F::Bios,
                kernels: &["5.10.152-3.ph4-esx"],
            },
        ),
        (
            "os-release -> /etc/passwd",
            os_release_to_host_passwd,
            Want {
                id: "fixture",
                version: "1",
                pretty: "Fixture",
                family: O::Unknown,
                arch: "x86_64",
                init: I::Systemd,
                bootloader: B::Extlinux,
                firmware: F::Bios,
                kernels: &["6.6.1"],
            },
        ),
        (
            "fifo os-release",
            fifo_os_release_with_redhat_release,
            Want {
                id: "centos",
                version: "6.10",
                pretty: "CentOS release 6.10 (Final)",
                family: O::Rhel,
                arch: "unknown",
                init: I::Unknown,
                bootloader: B::None,
                firmware: F::Unknown,
                kernels: &[],
            },
        ),
        (
            "huge os-release",
            huge_os_release_with_debian_version,
            Want {
                id: "debian",
                version: "11.8",
                pretty: "Debian GNU/Linux 11.8",
                family: O::Debian,
                arch: "unknown",
                init: I::Unknown,
                bootloader: B::None,
                firmware: F::Unknown,
                kernels: &[],
            },
        ),
    ];
    for (name, build, want) in cases {
        let g = Guest::new();
        build(&g);
        let (info, warnings) = detect_bounded(&g).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let got = (
            info.os_id.as_str(),
            info.os_version.as_str(),
            info.pretty_name.as_str(),
            info.family,
            info.arch.as_str(),
            info.init_system,
            info.bootloader,
            info.firmware,
        );
        let expected = (
            want.id,
            want.version,
            want.pretty,
            want.family,
            want.arch,
            want.init,
            want.bootloader,
            want.firmware,
        );
        assert_eq!(got, expected, "{name}: {warnings:?}");
        let versions: Vec<&str> = info.kernels.iter().map(|k| k.version.as_str()).collect();
        assert_eq!(versions, want.kernels, "{name}");
        for k in &info.kernels {
            assert!(k.image.is_some(), "{name}: {k:?}");
            assert!(k.initramfs.is_some(), "{name}: {k:?}");
            assert!(k.has_modules, "{name}: {k:?}");
        }
        assert_eq!(info.root, None);
        let codes: Vec<&str> = warnings.iter().map(|w| w.code.as_str()).collect();
        if want.kernels.is_empty() {
            assert!(codes.contains(&codes::GUEST_NO_KERNEL), "{name}: {codes:?}");
        } else {
            assert!(
                !codes.contains(&codes::GUEST_NO_KERNEL),
                "{name}: {codes:?}"
            );
        }
        assert_eq!(
            codes.contains(&codes::GUEST_ARCH_UNKNOWN),
            want.arch == "unknown",
            "{name}: {codes:?}"
        );
    }
}

/// Runs detection in a thread and fails if it takes more than 20 s (a
/// FIFO read would block for ever).
fn detect_bounded(g: &Guest) -> Result<(GuestInfo, Vec<crate::error::Warning>), FixupError> {
    let root = g.root.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = GuestRoot::open(&root)
            .map_err(|e| FixupError::new(codes::INTERNAL, e.to_string()))
            .and_then(|r| detect(&r));
        let _ = tx.send(result);
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("detection hung")
}

#[test]
fn kernel_details() {
    let g = Guest::new();
    centos7(&g);
    let (info, _) = g.detect().unwrap();
    let newest = info.newest_kernel().unwrap();
    assert_eq!(
        newest,
        &KernelInfo {
            version: "3.10.0-1160.el7.x86_64".into(),
            image: Some("/boot/vmlinuz-3.10.0-1160.el7.x86_64".into()),
            initramfs: Some("/boot/initramfs-3.10.0-1160.el7.x86_64.img".into()),
            modules_dir: Some("/lib/modules/3.10.0-1160.el7.x86_64".into()),
            has_modules: true,
        }
    );

    let g = Guest::new();
    sles11_i686(&g);
    let (info, _) = g.detect().unwrap();
    assert_eq!(
        info.kernels[0].image.as_deref(),
        Some("/boot/vmlinuz-3.0.101-63-pae")
    );
    assert_eq!(
        info.kernels[0].initramfs.as_deref(),
        Some("/boot/initrd-3.0.101-63-pae")
    );

    // Modules only (image removed), vmlinux only, and a RHEL 5 initrd.
    let g = Guest::new();
    g.file("/etc/os-release", "ID=rhel\nVERSION_ID=5.11\n")
        .file("/lib/modules/2.6.18-400.el5/modules.dep", "")
        .file("/boot/vmlinux-2.6.18-398.el5", "vmlinux")
        .file("/boot/initrd-2.6.18-398.el5.img", "initrd")
        .dir("/boot/vmlinuz-9.9.9") // a directory is no kernel
        .link("/boot/vmlinuz-8.8.8", "/nowhere");
    let (info, _) = g.detect().unwrap();
    assert_eq!(
        info.kernels,
        vec![
            KernelInfo {
                version: "2.6.18-398.el5".into(),
                image: Some("/boot/vmlinux-2.6.18-398.el5".into()),
                initramfs: Some("/boot/initrd-2.6.18-398.el5.img".into()),
                modules_dir: None,
                has_modules: false,
            },
            KernelInfo {
                version: "2.6.18-400.el5".into(),
                image: None,
                initramfs: None,
                modules_dir: Some("/lib/modules/2.6.18-400.el5".into()),
                has_modules: true,
            },
        ]
    );
}

#[test]
fn unknown_trees_are_errors() {
    // Nothing at all.
    let g = Guest::new();
    let err = g.detect().unwrap_err();
    assert_eq!(err.code, codes::GUEST_UNKNOWN_OS);
    assert!(
        err.message.ends_with(": /etc is missing"),
        "{}",
        err.message
    );
    assert!(err.message.contains(&g.root.display().to_string()));

    // /etc is a file.
    let g = Guest::new();
    g.file("/etc", "not a directory");
    assert_eq!(g.detect().unwrap_err().code, codes::GUEST_UNKNOWN_OS);

    // /etc with nothing recognisable.
    let g = Guest::new();
    g.file("/etc/hostname", "web01\n")
        .file("/etc/os-release", "\u{0}\u{1}binary garbage\n")
        .file("/etc/redhat-release", "no version here\n");
    let err = g.detect().unwrap_err();
    assert_eq!(err.code, codes::GUEST_UNKNOWN_OS);
    assert!(
        err.message.contains("/etc/os-release, /usr/lib/os-release"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("/etc/photon-release"),
        "{}",
        err.message
    );
    let detail = err.detail.unwrap();
    assert!(
        detail.contains("/etc/os-release: not recognised"),
        "{detail}"
    );
    assert!(detail.contains("/etc/lsb-release: missing"), "{detail}");

    // A FIFO as the only release file: an error, not a hang.
    let g = Guest::new();
    g.fifo("/etc/os-release");
    let err = detect_bounded(&g).unwrap_err();
    assert_eq!(err.code, codes::GUEST_UNKNOWN_OS);
    assert!(err.detail.unwrap().contains("fifo"));

    // An escaping symlink as the only release file.
    let g = Guest::new();
    g.dir("/etc")
        .link("/etc/os-release", "../../../../../etc/os-release");
    assert_eq!(g.detect().unwrap_err().code, codes::GUEST_UNKNOWN_OS);
}

#[test]
fn unreadable_release_file_is_a_warning() {
    let g = Guest::new();
    fifo_os_release_with_redhat_release(&g);
    let (info, warnings) = detect_bounded(&g).unwrap();
    assert_eq!(info.os_id, "centos");
    let w = warnings
        .iter()
        .find(|w| w.code == codes::GUEST_IO)
        .expect("a guest.io warning");
    assert!(w.message.contains("/etc/os-release"), "{}", w.message);
    assert!(w.message.contains("fifo"), "{}", w.message);
    assert!(
        warnings
            .iter()
            .any(|w| w.code == codes::GUEST_NO_BOOTLOADER)
    );
}

#[test]
fn debian_testing_version_from_debian_version() {
    let g = Guest::new();
    g.file(
        "/etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n",
    )
    .file("/etc/debian_version", "trixie/sid\n");
    let (info, _) = g.detect().unwrap();
    assert_eq!(
        (info.os_id.as_str(), info.os_version.as_str()),
        ("debian", "trixie/sid")
    );
}

#[test]
fn init_systems() {
    let cases: &[(&str, Build, InitSystem)] = &[
        (
            "sysvinit symlink",
            |g| {
                g.elf64("/lib/sysvinit/init")
                    .link("/sbin/init", "/lib/sysvinit/init");
            },
            InitSystem::Sysvinit,
        ),
        (
            "upstart symlink",
            |g| {
                g.elf64("/sbin/upstart").link("/sbin/init", "upstart");
            },
            InitSystem::Upstart,
        ),
        (
            "openrc-init",
            |g| {
                g.elf64("/sbin/openrc-init")
                    .link("/sbin/init", "openrc-init");
            },
            InitSystem::Openrc,
        ),
        (
            "busybox with openrc",
            |g| {
                g.elf64("/bin/busybox")
                    .link("/sbin/init", "/bin/busybox")
                    .elf64("/sbin/openrc")
                    .file("/etc/inittab", "::sysinit:/sbin/openrc sysinit\n");
            },
            InitSystem::Openrc,
        ),
        (
            "no /sbin/init, systemd present",
            |g| {
                g.elf64("/usr/lib/systemd/systemd");
            },
            InitSystem::Systemd,
        ),
        (
            "dangling /sbin/init, inittab",
            |g| {
                g.link("/sbin/init", "/nowhere")
                    .file("/etc/inittab", "id:3:initdefault:\n");
            },
            InitSystem::Sysvinit,
        ),
        (
            "/sbin/init is a directory",
            |g| {
                g.dir("/sbin/init");
            },
            InitSystem::Unknown,
        ),
        (
            "/sbin/init loops",
            |g| {
                g.link("/sbin/init", "/sbin/init");
            },
            InitSystem::Unknown,
        ),
    ];
    for (name, build, want) in cases {
        let g = Guest::new();
        g.dir("/etc");
        build(&g);
        assert_eq!(init_system::detect_init_system(&g.root()), *want, "{name}");
    }
}

#[test]
fn bootloaders() {
    let cases: &[(&str, Build, Bootloader, FirmwareHint)] = &[
        (
            "legacy on EFI (RHEL 6)",
            |g| {
                g.file("/boot/efi/EFI/redhat/grub.efi", "")
                    .file("/boot/efi/EFI/redhat/grub.conf", "default=0\n")
                    .link("/etc/grub.conf", "../boot/efi/EFI/redhat/grub.conf");
            },
            Bootloader::GrubLegacy,
            FirmwareHint::Efi,
        ),
        (
            "systemd-boot",
            |g| {
                g.file("/boot/efi/EFI/systemd/systemd-bootx64.efi", "")
                    .file("/boot/efi/loader/loader.conf", "default arch\n")
                    .file("/boot/efi/loader/entries/arch.conf", "title Arch\n");
            },
            Bootloader::SystemdBoot,
            FirmwareHint::Efi,
        ),
        (
            "BLS, grub.cfg lost",
            |g| {
                g.file("/boot/grub2/grubenv", "")
                    .file("/boot/loader/entries/a.conf", "title a\n");
            },
            Bootloader::Bls,
            FirmwareHint::Unknown,
        ),
        (
            "grub2 without grub.cfg",
            |g| {
                g.file("/etc/default/grub", "GRUB_TIMEOUT=5\n")
                    .dir("/usr/lib/grub/i386-pc");
            },
            Bootloader::Grub2,
            FirmwareHint::Bios,
        ),
        (
            "menu.lst and grub.cfg: grub2 wins",
            |g| {
                g.file("/boot/grub/menu.lst", "")
                    .file("/boot/grub/grub.cfg", "");
            },
            Bootloader::Grub2,
            FirmwareHint::Bios,
        ),
        (
            "only package modules for EFI",
            |g| {
                g.file("/boot/grub/grub.cfg", "")
                    .dir("/usr/lib/grub/x86_64-efi");
            },
            Bootloader::Grub2,
            FirmwareHint::Efi,
        ),
        (
            "grub.cfg is a FIFO",
            |g| {
                g.fifo("/boot/grub2/grub.cfg");
            },
            Bootloader::Grub2,
            FirmwareHint::Unknown,
        ),
        ("nothing", |_| {}, Bootloader::None, FirmwareHint::Unknown),
    ];
    for (name, build, want_bl, want_fw) in cases {
        let g = Guest::new();
        g.dir("/etc");
        build(&g);
        let mut warnings = Vec::new();
        let boot = bootloader::detect_boot(&g.root(), &mut warnings);
        assert_eq!(
            (boot.bootloader, boot.firmware),
            (*want_bl, *want_fw),
            "{name}"
        );
    }
}

#[test]
fn guest_json_is_the_protocols() {
    let g = Guest::new();
    rhel6(&g);
    let (mut info, _) = g.detect().unwrap();
    info.root = Some("/dev/mapper/vg-root".into());
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "osId": "rhel",
            "osVersion": "6.10",
            "prettyName": "Red Hat Enterprise Linux Server release 6.10 (Santiago)",
            "family": "rhel",
            "arch": "x86_64",
            "initSystem": "upstart",
            "bootloader": "grub-legacy",
            "firmware": "bios",
            "kernels": ["2.6.32-696.el6.x86_64", "2.6.32-754.el6.x86_64"],
            "root": "/dev/mapper/vg-root"
        })
    );
    // Read back: versions only.
    let back: GuestInfo = serde_json::from_value(json).unwrap();
    assert_eq!(
        back.kernels[1],
        KernelInfo::from_version("2.6.32-754.el6.x86_64")
    );
    assert_eq!(back.os_id, info.os_id);
    // Full kernel objects are accepted too; a missing root is null.
    info.root = None;
    let mut json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["root"], serde_json::Value::Null);
    json["kernels"] = serde_json::to_value(&info.kernels).unwrap();
    let back: GuestInfo = serde_json::from_value(json).unwrap();
    assert_eq!(back, info);
    for b in [
        Bootloader::Grub2,
        Bootloader::GrubLegacy,
        Bootloader::Bls,
        Bootloader::SystemdBoot,
        Bootloader::Extlinux,
        Bootloader::None,
    ] {
        assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
    }
    assert_eq!(
        serde_json::to_value(InitSystem::Sysvinit).unwrap(),
        "sysvinit"
    );
    assert_eq!(OsFamily::Debian.to_string(), "debian");
}

#[test]
fn arch_checks() {
    assert!(check_arch("x86_64", "x86_64").is_ok());
    assert!(check_arch("i686", "x86_64").is_ok());
    assert!(check_arch("i686", "i686").is_ok());
    assert!(check_arch("unknown", "i686").is_ok());
    let err = check_arch("x86_64", "i686").unwrap_err();
    assert_eq!(err.code, codes::GUEST_ARCH_MISMATCH);
    assert!(
        err.message.contains("x86_64 fixup stack"),
        "{}",
        err.message
    );
    for (g, s) in [
        ("x32", "x86_64"),
        ("aarch64", "x86_64"),
        ("ppc64le", "i686"),
    ] {
        assert_eq!(
            check_arch(g, s).unwrap_err().code,
            codes::GUEST_ARCH_MISMATCH,
            "{g} {s}"
        );
    }
}

#[test]
fn arch_from_first_elf() {
    let g = Guest::new();
    // /bin/sh is a script here; /usr/bin/env is the first ELF file.
    g.file("/bin/sh", "#!/bin/busybox sh\n")
        .elf32("/usr/bin/env")
        .elf64("/sbin/init");
    assert_eq!(arch::detect_arch(&g.root()).as_deref(), Some("i686"));
    // A symlink out of the tree reads the guest's file of that name.
    let g = Guest::new();
    g.link("/bin/sh", "/usr/bin/x32-binary").file(
        "/usr/bin/x32-binary",
        test_elf_header(ELFCLASS32, true, EM_X86_64),
    );
    assert_eq!(arch::detect_arch(&g.root()).as_deref(), Some("x32"));
    let g = Guest::new();
    g.fifo("/bin/sh").file("/usr/bin/env", vec![0x7f; 100_000]);
    assert_eq!(arch::detect_arch(&g.root()), None);
}

#[test]
fn fixture_paths_stay_in_the_tree() {
    let g = Guest::new();
    let outside: &Path = g.root.parent().unwrap();
    fs::write(outside.join("os-release"), "ID=host\n").unwrap();
    g.dir("/etc").link("/etc/os-release", "../../os-release");
    assert!(g.detect().is_err());
}
