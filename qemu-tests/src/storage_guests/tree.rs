//! The guest's file tree, written on the host: a Debian 11 root with a
//! static busybox, kernel modules with their index, an initramfs without
//! `vmw_pvscsi`, GRUB's configuration and the stand-ins of the tools
//! stage 1 runs in the guest.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use osam_image::cpio::Cpio;
use osam_image::deb::Deb;
use osam_image::kernel::{KernelTree, ModuleDb};
use osam_image::pins::Pin;

use super::spec::{FsKind, GuestSpec};
use super::{GUEST_KERNEL, TOOL_LOG};
use crate::Arch;
use crate::image::TEST_EPOCH;
use crate::paths;

/// The modules of the guest kernel (with their dependency closure, from
/// the stack's kernel).
const GUEST_MODULES: &[&str] = &[
    "vmw_pvscsi",
    "mptspi",
    "mptsas",
    "ahci",
    "sd_mod",
    "sr_mod",
    "ext4",
    "xfs",
    "btrfs",
    "dm_mod",
    "raid1",
    "vmxnet3",
    "e1000",
    "e1000e",
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
];

const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\n\
NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"11\"\nVERSION=\"11 (bullseye)\"\n\
VERSION_CODENAME=bullseye\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n\
SUPPORT_URL=\"https://www.debian.org/support\"\nBUG_REPORT_URL=\"https://bugs.debian.org/\"\n";

const DEFAULT_GRUB: &str = "# If you change this file, run 'update-grub' afterwards to update\n\
# /boot/grub/grub.cfg.\n\
# For full documentation of the options in this file, see:\n\
#   info -f grub -n 'Simple configuration'\n\n\
GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n\
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200\"\n";

const INTERFACES: &str = "# This file describes the network interfaces available on your system\n\
# and how to activate them. For more information, see interfaces(5).\n\n\
source /etc/network/interfaces.d/*\n\n\
# The loopback network interface\nauto lo\niface lo inet loopback\n\n\
# The primary network interface\nallow-hotplug ens3\niface ens3 inet dhcp\n";

/// The stand-in for initramfs-tools' `update-initramfs`.
const UPDATE_INITRAMFS: &str = r##"#!/bin/sh
# OSAM storage test guest: a stand-in for initramfs-tools' update-initramfs.
# Records its command line in /var/log/osam-test-tools.log, then writes
# /boot/initrd.img-<version> (gzip'ed newc) holding the modules that
# /etc/initramfs-tools/modules lists, with their dependencies from
# modules.dep (as MODULES=list would).
echo "update-initramfs $*" >> /var/log/osam-test-tools.log
ver=
while [ $# -gt 0 ]; do
    case "$1" in
        -k) shift; ver="$1" ;;
    esac
    shift
done
dep="/lib/modules/$ver/modules.dep"
if [ -z "$ver" ] || [ ! -f "$dep" ]; then
    echo "update-initramfs: no modules.dep for kernel '$ver'" >&2
    exit 1
fi
image="/boot/initrd.img-$ver"
echo "update-initramfs: Generating $image"
list="lib/modules/$ver/modules.dep"
for m in $(sed -e 's/#.*//' -e 's/[[:space:]].*//' /etc/initramfs-tools/modules); do
    line=$(awk -F: -v n="$(echo "$m" | tr - _)" '{ f = $1; sub(/.*\//, "", f); sub(/\.ko.*/, "", f); gsub(/-/, "_", f); if (f == n) { print; exit } }' "$dep")
    if [ -z "$line" ]; then
        echo "W: module $m not found in $dep" >&2
        continue
    fi
    for p in ${line%%:*} ${line#*:}; do
        list="$list lib/modules/$ver/$p"
    done
done
for f in etc/fstab etc/mdadm/mdadm.conf etc/lvm/lvm.conf; do
    [ -f "/$f" ] && list="$list $f"
done
cd / || exit 1
for f in $list; do echo "$f"; done | sort -u | cpio -o -H newc 2>/dev/null | gzip -n > "$image.new" || exit 1
mv "$image.new" "$image"
"##;

/// The stand-in for `grub-install`.
const GRUB_INSTALL: &str = r##"#!/bin/sh
# OSAM storage test guest: a stand-in for grub-install. Records its command
# line, checks that the install device is a block device in this root and
# leaves a core.img marker.
echo "grub-install $*" >> /var/log/osam-test-tools.log
target=i386-pc
dev=
for a in "$@"; do
    case "$a" in
        --target=*) target="${a#--target=}" ;;
        -*) ;;
        *) dev="$a" ;;
    esac
done
if [ ! -b "$dev" ]; then
    echo "grub-install: error: '$dev' is not a block device" >&2
    exit 1
fi
echo "Installing for $target platform."
mkdir -p "/boot/grub/$target"
echo "OSAM test stand-in for core.img, installed on $dev" > "/boot/grub/$target/core.img"
echo "Installation finished. No error reported."
"##;

/// The stand-in for `grub-mkconfig`.
const GRUB_MKCONFIG: &str = r##"#!/bin/sh
# OSAM storage test guest: a stand-in for grub-mkconfig. Records its command
# line, then writes one entry per installed kernel, naming the root the way
# GRUB's 10_linux does: the device path for LVM, else UUID= when
# /dev/disk/by-uuid has the root file system, else the device path; with
# rootflags=subvol= for a btrfs subvolume.
echo "grub-mkconfig $*" >> /var/log/osam-test-tools.log
out=
while [ $# -gt 0 ]; do
    case "$1" in
        -o) shift; out="$1" ;;
        --output=*) out="${1#--output=}" ;;
    esac
    shift
done
if [ -z "$out" ]; then
    echo "grub-mkconfig: this stand-in needs -o FILE" >&2
    exit 2
fi
GRUB_TIMEOUT=5
GRUB_CMDLINE_LINUX=
GRUB_CMDLINE_LINUX_DEFAULT=
. /etc/default/grub
root_dev=$(awk '$2 == "/" { d = $1 } END { print d }' /proc/self/mounts)
root_type=$(awk '$2 == "/" { t = $3 } END { print t }' /proc/self/mounts)
root_opts=$(awk '$2 == "/" { o = $4 } END { print o }' /proc/self/mounts)
case "$root_dev" in
    /dev/dm-*)
        name=$(cat "/sys/block/${root_dev#/dev/}/dm/name" 2>/dev/null) && root_dev="/dev/mapper/$name" ;;
esac
uuid=
for link in /dev/disk/by-uuid/*; do
    [ -e "$link" ] || continue
    if [ "$(readlink -f "$link")" = "$(readlink -f "$root_dev")" ]; then
        uuid="${link##*/}"
    fi
done
case "$root_dev" in
    /dev/mapper/*) root="$root_dev" ;;
    *) if [ -n "$uuid" ]; then root="UUID=$uuid"; else root="$root_dev"; fi ;;
esac
flags=
if [ "$root_type" = btrfs ]; then
    sub=$(echo "$root_opts" | tr , '\n' | sed -n 's|^subvol=/*||p')
    [ -n "$sub" ] && flags=" rootflags=subvol=$sub"
fi
prefix=/boot
if awk '$2 == "/boot" { f = 1 } END { exit !f }' /proc/self/mounts; then
    prefix=
fi
echo "Generating grub configuration file ..." >&2
{
    echo "# Written by the OSAM storage test guest's stand-in for grub-mkconfig"
    echo "set default=0"
    echo "set timeout=$GRUB_TIMEOUT"
    for k in $(ls /boot/vmlinuz-* 2>/dev/null | sort -r); do
        v="${k#/boot/vmlinuz-}"
        echo "Found linux image: $k" >&2
        echo "menuentry 'Debian GNU/Linux, with Linux $v' {"
        echo "	linux	$prefix/vmlinuz-$v root=$root ro$flags $GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT"
        if [ -e "/boot/initrd.img-$v" ]; then
            echo "Found initrd image: /boot/initrd.img-$v" >&2
            echo "	initrd	$prefix/initrd.img-$v"
        fi
        echo "}"
    done
} > "$out.new" || exit 1
mv "$out.new" "$out"
echo "done" >&2
"##;

const UPDATE_GRUB: &str = "#!/bin/sh\n\
# OSAM storage test guest: update-grub, as Debian's.\n\
echo \"update-grub $*\" >> /var/log/osam-test-tools.log\n\
exec grub-mkconfig -o /boot/grub/grub.cfg \"$@\"\n";

const MKINITRAMFS: &str = "#!/bin/sh\n\
# OSAM storage test guest: a stand-in for mkinitramfs that only records.\n\
echo \"mkinitramfs $*\" >> /var/log/osam-test-tools.log\n\
echo 'mkinitramfs: not implemented by the test guest (use update-initramfs)' >&2\n\
exit 1\n";

const DEPMOD: &str = "#!/bin/sh\n\
# OSAM storage test guest: a stand-in for depmod that only records\n\
# (modules.dep is the one the builder wrote).\n\
echo \"depmod $*\" >> /var/log/osam-test-tools.log\n";

/// busybox applets linked in the guest's `/bin` (what the stand-ins and
/// stage 1's commands use).
const GUEST_APPLETS: &[&str] = &[
    "sh", "ash", "awk", "basename", "cat", "chmod", "chown", "cp", "cpio", "cut", "date", "dd",
    "df", "dirname", "echo", "env", "false", "find", "grep", "gunzip", "gzip", "head", "ln", "ls",
    "mkdir", "mknod", "mktemp", "more", "mount", "mv", "printf", "readlink", "realpath", "rm",
    "rmdir", "sed", "sleep", "sort", "stat", "sync", "tail", "tar", "tee", "test", "touch", "tr",
    "true", "umount", "uname", "uniq", "wc", "xargs", "zcat",
];

/// A guest tree under construction in a host folder.
struct TreeWriter<'a> {
    root: &'a Path,
}

impl TreeWriter<'_> {
    fn path(&self, p: &str) -> Result<PathBuf> {
        let path = self.root.join(p.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        Ok(path)
    }

    fn file(&self, p: &str, data: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        let path = self.path(p)?;
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))
    }

    fn text(&self, p: &str, text: &str) -> Result<()> {
        self.file(p, text, 0o644)
    }

    fn script(&self, p: &str, text: &str) -> Result<()> {
        self.file(p, text, 0o755)
    }

    fn dir(&self, p: &str, mode: u32) -> Result<()> {
        let path = self.root.join(p.trim_start_matches('/'));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))
    }

    fn link(&self, p: &str, target: &str) -> Result<()> {
        let path = self.path(p)?;
        symlink(target, &path).with_context(|| format!("linking {}", path.display()))
    }
}

/// What the guest trees are made from: the stack kernel's modules and the
/// pinned busybox-static.
pub struct TreeInputs {
    kernel: KernelTree,
    modules: ModuleDb,
    busybox: Vec<u8>,
}

impl TreeInputs {
    /// Loads them (the pinned kernel and busybox-static of x86_64).
    pub fn load() -> Result<TreeInputs> {
        let kernel = paths::kernel_tree(Arch::X86_64).context("the stack kernel")?;
        let modules = kernel
            .modules()
            .with_context(|| format!("reading the modules of {}", kernel.release))?;
        let busybox = busybox_static(Arch::X86_64)?;
        Ok(TreeInputs {
            kernel,
            modules,
            busybox,
        })
    }
}

/// The pinned busybox-static binary of `arch`.
fn busybox_static(arch: Arch) -> Result<Vec<u8>> {
    let pin: Pin = paths::pins()?
        .into_iter()
        .find(|p| p.arch == arch.debian_arch() && p.package == "busybox-static")
        .context("no busybox-static pin in image/pins.txt")?;
    let deb_path = paths::fetch_inputs()?.join(pin.deb_file_name());
    let deb = Deb::open(&deb_path)?;
    let mut out = None;
    deb.for_each_data_entry(|path, _, reader| {
        if path == Path::new("bin/busybox") {
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| anyhow::anyhow!("reading bin/busybox: {e}"))?;
            out = Some(bytes);
        }
        Ok::<(), anyhow::Error>(())
    })
    .with_context(|| format!("reading {}", deb_path.display()))?;
    out.with_context(|| format!("{} has no bin/busybox", deb_path.display()))
}

/// A gzip'ed newc initramfs for the guest kernel with `modules` (and their
/// dependencies), an init script and modules.dep.
fn initramfs_image(inputs: &TreeInputs, modules: &[&str]) -> Result<Vec<u8>> {
    let closure = inputs.modules.closure(modules.iter().copied());
    ensure!(
        closure.missing.is_empty(),
        "the stack kernel has no module {}",
        closure.missing.join(", ")
    );
    let mut cpio = Cpio::with_epoch(TEST_EPOCH);
    let base = format!("usr/lib/modules/{GUEST_KERNEL}");
    let subset = inputs
        .modules
        .subset(closure.modules.iter().map(String::as_str));
    for m in subset.modules() {
        let src = inputs.kernel.modules_dir.join(&m.path);
        let bytes = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        cpio.add_file(&format!("{base}/{}", m.path), 0o644, bytes)?;
    }
    cpio.add_file(&format!("{base}/modules.dep"), 0o644, subset.modules_dep())?;
    cpio.add_file(
        "init",
        0o755,
        "#!/bin/sh\necho 'OSAM test guest initramfs'\n",
    )?;
    cpio.add_symlink("lib", "usr/lib")?;
    let raw = cpio.to_bytes()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw)?;
    Ok(gz.finish()?)
}

/// Writes the guest's file tree into `root`.
pub fn write_tree(spec: &GuestSpec, inputs: &TreeInputs, root: &Path) -> Result<()> {
    let t = TreeWriter { root };
    for (dir, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("mnt", 0o755),
        ("media", 0o755),
        ("srv", 0o755),
        ("opt", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("var/log", 0o755),
        ("home", 0o755),
        ("etc/network/interfaces.d", 0o755),
        ("boot/grub/i386-pc", 0o755),
    ] {
        t.dir(dir, mode)?;
    }
    // busybox as the shell and the tools.
    t.file("bin/busybox", &inputs.busybox, 0o755)?;
    for applet in GUEST_APPLETS {
        t.link(&format!("bin/{applet}"), "busybox")?;
    }
    t.link("bin/[", "busybox")?;
    // systemd as the init system (the stage-2 hook is a systemd unit).
    t.link("lib/systemd/systemd", "/bin/busybox")?;
    t.link("sbin/init", "/lib/systemd/systemd")?;
    t.text(
        "lib/systemd/system/multi-user.target",
        "[Unit]\nDescription=Multi-User System\n",
    )?;
    t.link(
        "etc/systemd/system/default.target",
        "/lib/systemd/system/multi-user.target",
    )?;

    // /etc
    t.text("etc/os-release", OS_RELEASE)?;
    t.text("etc/debian_version", "11.9\n")?;
    t.text("etc/hostname", &format!("{}\n", spec.hostname))?;
    t.text(
        "etc/hosts",
        &format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n", spec.hostname),
    )?;
    t.text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")?;
    t.text("etc/group", "root:x:0:\n")?;
    t.text("etc/fstab", &spec.fstab)?;
    t.text("etc/network/interfaces", INTERFACES)?;
    t.text("etc/default/grub", DEFAULT_GRUB)?;
    t.text(
        "etc/initramfs-tools/initramfs.conf",
        "# initramfs.conf\nMODULES=list\nBUSYBOX=auto\nCOMPRESS=gzip\n",
    )?;
    let mut initramfs_modules = String::from(
        "# List of modules that you want to include in your initramfs.\n\
         # They will be loaded at boot time in the order below.\n\
         virtio_pci\nvirtio_blk\nvirtio_net\n",
    );
    for m in spec.initramfs_modules {
        initramfs_modules.push_str(m);
        initramfs_modules.push('\n');
    }
    t.text("etc/initramfs-tools/modules", &initramfs_modules)?;
    if let Some(md) = &spec.md {
        t.text(
            "etc/mdadm/mdadm.conf",
            &format!(
                "# mdadm.conf\n#\n# !NB! Run update-initramfs -u after updating this file.\n\
                 HOMEHOST <system>\nMAILADDR root\n\n\
                 # definitions of existing MD arrays\n\
                 ARRAY /dev/{} metadata=1.2 UUID={} name={}:{}\n",
                md.name, md.uuid, md.homehost, md.md_name
            ),
        )?;
    }

    // The tools stage 1 runs in the guest.
    t.script("usr/sbin/update-initramfs", UPDATE_INITRAMFS)?;
    t.script("usr/sbin/mkinitramfs", MKINITRAMFS)?;
    t.script("usr/sbin/grub-install", GRUB_INSTALL)?;
    t.script("usr/sbin/grub-mkconfig", GRUB_MKCONFIG)?;
    t.script("usr/sbin/update-grub", UPDATE_GRUB)?;
    t.script("sbin/depmod", DEPMOD)?;
    t.text(
        "usr/lib/grub/i386-pc/boot.img",
        "OSAM test stand-in for boot.img\n",
    )?;
    t.text("usr/lib/grub/i386-pc/normal.mod", "")?;
    t.text("boot/grub/i386-pc/normal.mod", "")?;

    // The kernel, its modules and its initramfs.
    let v = GUEST_KERNEL;
    t.text(
        &format!("boot/vmlinuz-{v}"),
        "OSAM test stand-in for a kernel image\n",
    )?;
    t.text(
        &format!("boot/config-{v}"),
        "CONFIG_X86_64=y\nCONFIG_VMWARE_PVSCSI=m\nCONFIG_BLK_DEV_DM=m\nCONFIG_MD_RAID1=m\n",
    )?;
    t.text(&format!("boot/System.map-{v}"), "")?;
    t.link("vmlinuz", &format!("boot/vmlinuz-{v}"))?;
    t.link("initrd.img", &format!("boot/initrd.img-{v}"))?;
    let closure = inputs.modules.closure(GUEST_MODULES.iter().copied());
    ensure!(
        closure.missing.is_empty(),
        "the stack kernel {} has no module {}",
        inputs.kernel.release,
        closure.missing.join(", ")
    );
    let subset = inputs
        .modules
        .subset(closure.modules.iter().map(String::as_str));
    let moddir = format!("lib/modules/{v}");
    for m in subset.modules() {
        let src = inputs.kernel.modules_dir.join(&m.path);
        let bytes = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        t.file(&format!("{moddir}/{}", m.path), bytes, 0o644)?;
    }
    for (name, text) in subset.index_files() {
        t.text(&format!("{moddir}/{name}"), &text)?;
    }
    let mut boot_modules = vec!["virtio_pci", "virtio_blk", "virtio_net"];
    boot_modules.extend(spec.initramfs_modules);
    t.file(
        &format!("boot/initrd.img-{v}"),
        initramfs_image(inputs, &boot_modules)?,
        0o644,
    )?;
    let root = spec.root_fs();
    let boot_prefix = if spec.mounts().iter().any(|(mp, _, _)| *mp == "/boot") {
        ""
    } else {
        "/boot"
    };
    t.text(
        "boot/grub/grub.cfg",
        &format!(
            "# DO NOT EDIT THIS FILE\n# It is automatically generated by grub-mkconfig\n\
             set default=0\nset timeout=5\n\
             menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os {{\n\
             \tinsmod part_msdos\n\tinsmod {fs}\n\
             \tlinux\t{boot_prefix}/vmlinuz-{v} {} ro console=tty0 console=ttyS0,115200 quiet\n\
             \tinitrd\t{boot_prefix}/initrd.img-{v}\n}}\n",
            spec.source_root_arg,
            fs = if root.kind == FsKind::Xfs { "xfs" } else { "ext2" },
        ),
    )?;

    // Some user data, on the file systems that hold it.
    t.text(
        "home/debian/.profile",
        "# ~/.profile of the OSAM storage test guest\n",
    )?;
    if spec.mounts().iter().any(|(mp, _, _)| *mp == "/data") {
        t.text(
            "data/README",
            "The OSAM storage test guest's data volume.\n",
        )?;
    }
    t.text(TOOL_LOG, "")?;
    Ok(())
}
