//! The scripts run in the stack's rescue shell: the build of a guest's
//! storage stack and file systems, and the check of its disks. Each
//! command's exit status is printed (`@@osam step:`, `@@osam check … rc=`)
//! and the last line is `OSAM-RESULT: ok` or `OSAM-RESULT: failed`.

use std::fmt::Write as _;

use super::spec::{FsKind, GuestSpec};
use super::{GUEST_KERNEL, TOOL_LOG};

/// The lines every script starts with: helpers, the guest disks found by
/// SCSI address (`$D0`, `$D1`, …) and made writable, and whatever the
/// rescue mode may have taken (mounts under /sysroot, LVs, arrays)
/// released.
fn script_prelude(spec: &GuestSpec) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
# Written by osam_qemu::storage_guests; run in the stack's rescue shell.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LVMCONF='devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 } activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }'
fail() { echo "@@osam FAILED: $*"; echo "OSAM-RESULT: failed"; exit 1; }
step() { echo "@@osam step: $*"; "$@"; rc=$?; [ $rc -eq 0 ] || fail "rc=$rc: $*"; }
check() {
    id=$1; shift
    "$@" > /tmp/osam-check.out 2>&1; rc=$?
    tail -n 15 /tmp/osam-check.out | sed "s/^/@@osam out $id: /"
    echo "@@osam check $id rc=$rc"
}
value() { echo "@@osam value $1=$2"; }
dump() { [ -f "$2" ] && sed "s/^/@@osam file $1: /" "$2"; echo "@@osam value file-$1=$([ -f "$2" ] && echo present || echo missing)"; }
disk() {
    i=0
    while [ $i -lt 120 ]; do
        d=$(ls /sys/bus/scsi/devices/*:0:$1:0/block 2>/dev/null)
        [ -n "$d" ] && { echo "/dev/$d"; return 0; }
        sleep 0.5; i=$((i + 1))
    done
    return 1
}
set_swap_uuid() { printf "$2" | dd of="$1" bs=1 seek=1036 count=16 conv=notrunc 2>/dev/null; }
mkdir -p /run/lock/lvm /mnt/g
for m in $(awk '$2 ~ "^/sysroot" { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
done
lvm vgchange --config "$LVMCONF" -an >/dev/null 2>&1
mdadm --stop --scan >/dev/null 2>&1
"#,
    );
    for d in 0..spec.disks.len() {
        let _ = writeln!(
            s,
            "D{d}=$(disk {d}) || fail \"no disk at scsi0:{d}\"\n\
             for b in $D{d} $D{d}[0-9]*; do [ -b \"$b\" ] && blockdev --setrw \"$b\"; done\n\
             echo \"@@osam step: scsi0:{d} is $D{d}\""
        );
    }
    s
}

/// The check id of the read-only mount at `mp` (`mount-root`,
/// `mount-boot`, `mount-data`, `mount-home`).
pub fn mount_check_id(mp: &str) -> String {
    if mp == "/" {
        "mount-root".to_owned()
    } else {
        format!("mount{}", mp.replace('/', "-"))
    }
}

/// The 16 bytes of a UUID as printf's octal escapes.
fn uuid_octal(uuid: &str) -> String {
    let hex: String = uuid.chars().filter(char::is_ascii_hexdigit).collect();
    (0..16)
        .map(|i| {
            let byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
            format!("\\{byte:03o}")
        })
        .collect()
}

/// The build script: storage stack, file systems, the tree copied in,
/// everything released, `OSAM-RESULT: ok`, power-off.
pub fn build_script(spec: &GuestSpec) -> String {
    let vg = spec.vg.as_ref();
    let part = |(d, n): (usize, u32)| format!("${{D{d}}}{n}");
    let mut s = script_prelude(spec);
    if let Some(md) = &spec.md {
        let members: Vec<String> = md.members.iter().map(|m| part(*m)).collect();
        let _ = writeln!(
            s,
            "step mdadm --create /dev/{} --run --metadata=1.2 --level=1 --raid-devices={} \
             --assume-clean --bitmap=none --homehost={} --name={} --uuid={} {}",
            md.name,
            members.len(),
            md.homehost,
            md.md_name,
            md.uuid,
            members.join(" ")
        );
    }
    if let Some(vg) = vg {
        let pvs: Vec<String> = vg.pvs.iter().map(|p| part(*p)).collect();
        let _ = writeln!(
            s,
            "step lvm pvcreate --config \"$LVMCONF\" -ff -y {}",
            pvs.join(" ")
        );
        let _ = writeln!(
            s,
            "step lvm vgcreate --config \"$LVMCONF\" {} {}",
            vg.name,
            pvs.join(" ")
        );
        for lv in &vg.lvs {
            let _ = writeln!(
                s,
                "step lvm lvcreate --config \"$LVMCONF\" -y -Wy -Zy -n {} -L {}m {} {}",
                lv.name,
                lv.size_mib,
                vg.name,
                part(lv.pv)
            );
        }
    }
    for f in &spec.filesystems {
        let dev = f.dev.shell(vg);
        let _ = match f.kind {
            FsKind::Ext4 => writeln!(s, "step mkfs.ext4 -q -F -U {} -L {} {dev}", f.uuid, f.label),
            FsKind::Xfs => writeln!(
                s,
                "step mkfs.xfs -q -f -m uuid={} -L {} {dev}",
                f.uuid, f.label
            ),
            FsKind::Btrfs => writeln!(
                s,
                "step mkfs.btrfs -q -f -U {} -L {} {dev}",
                f.uuid, f.label
            ),
            FsKind::Swap => writeln!(
                s,
                "step busybox mkswap -L {} {dev}\nstep set_swap_uuid {dev} '{}'",
                f.label,
                uuid_octal(f.uuid)
            ),
        };
        let subvols: Vec<&str> = f.mounts.iter().filter_map(|(_, sub)| *sub).collect();
        if !subvols.is_empty() {
            let _ = writeln!(s, "step mount -t btrfs {dev} /mnt/g");
            for sub in subvols {
                let _ = writeln!(s, "step btrfs subvolume create /mnt/g/{sub}");
            }
            let _ = writeln!(s, "step umount /mnt/g");
        }
    }
    let mounts = spec.mounts();
    for (mp, f, sub) in &mounts {
        let at = format!("/mnt/g{}", if *mp == "/" { "" } else { mp });
        let opts = sub.map(|s| format!(" -o subvol={s}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "step mkdir -p {at}\nstep mount -t {}{opts} {} {at}",
            f.kind.name(),
            f.dev.shell(vg)
        );
    }
    s.push_str(
        "step sh -c 'cd /tmp/osam-payload/osam/tree && tar -cf - . | tar -xf - -C /mnt/g'\n\
         step sync\n",
    );
    for (mp, _, _) in mounts.iter().rev() {
        let _ = writeln!(s, "step umount /mnt/g{}", if *mp == "/" { "" } else { mp });
    }
    if let Some(vg) = vg {
        let _ = writeln!(s, "step lvm vgchange --config \"$LVMCONF\" -an {}", vg.name);
    }
    if let Some(md) = &spec.md {
        let _ = writeln!(s, "step mdadm --stop /dev/{}", md.name);
    }
    s.push_str("step sync\necho \"OSAM-RESULT: ok\"\nsync\npoweroff -f\n");
    s
}

/// The check script: the md members' superblock state, every file
/// system's check, the ext4 states, the swap signatures, then the root
/// (and its sub-mounts) mounted read-only and the files a test reads
/// printed; everything released again. Each result is an `@@osam check`
/// or `@@osam value` line (see [`CheckReport`]).
pub fn check_script(spec: &GuestSpec) -> String {
    let vg = spec.vg.as_ref();
    let part = |(d, n): (usize, u32)| format!("${{D{d}}}{n}");
    let mut s = script_prelude(spec);
    if let Some(md) = &spec.md {
        for (i, m) in md.members.iter().enumerate() {
            let dev = part(*m);
            let _ = writeln!(
                s,
                "value md-state-{i} \"$(mdadm --examine {dev} 2>&1 | sed -n 's/^ *State : //p')\""
            );
        }
        let members: Vec<String> = md.members.iter().map(|m| part(*m)).collect();
        let _ = writeln!(
            s,
            "check md-assemble mdadm --assemble --readonly /dev/{} {}",
            md.name,
            members.join(" ")
        );
    }
    if let Some(vg) = vg {
        let _ = writeln!(
            s,
            "check vg-activate lvm vgchange --config \"$LVMCONF\" -ay {}",
            vg.name
        );
    }
    for f in &spec.filesystems {
        let dev = f.dev.shell(vg);
        let id = f.label;
        let _ = match f.kind {
            FsKind::Ext4 => writeln!(
                s,
                "value fs-state-{id} \"$(dumpe2fs -h {dev} 2>/dev/null | sed -n 's/^Filesystem state: *//p')\"\n\
                 value fs-features-{id} \"$(dumpe2fs -h {dev} 2>/dev/null | sed -n 's/^Filesystem features: *//p')\"\n\
                 check fsck-{id} e2fsck -fn {dev}"
            ),
            FsKind::Xfs => writeln!(s, "check fsck-{id} xfs_repair -n {dev}"),
            FsKind::Btrfs => writeln!(s, "check fsck-{id} btrfs check --readonly {dev}"),
            FsKind::Swap => writeln!(
                s,
                "value swap-signature-{id} \"$(dd if={dev} bs=1 skip=4086 count=10 2>/dev/null)\""
            ),
        };
    }
    let mounts = spec.mounts();
    for (mp, f, sub) in &mounts {
        let at = format!("/mnt/g{}", if *mp == "/" { "" } else { mp });
        let mut opts = vec!["ro"];
        if f.kind == FsKind::Ext4 {
            opts.push("noload");
        }
        if f.kind == FsKind::Xfs {
            opts.push("norecovery");
        }
        let sub_opt = sub.map(|s| format!("subvol={s}"));
        if let Some(o) = &sub_opt {
            opts.push(o);
        }
        let _ = writeln!(
            s,
            "check {} mount -t {} -o {} {} {at}",
            mount_check_id(mp),
            f.kind.name(),
            opts.join(","),
            f.dev.shell(vg)
        );
    }
    let v = GUEST_KERNEL;
    let _ = writeln!(
        s,
        "dump fstab /mnt/g/etc/fstab\n\
         dump tools /mnt/g{TOOL_LOG}\n\
         dump grub.cfg /mnt/g/boot/grub/grub.cfg\n\
         dump initramfs-modules /mnt/g/etc/initramfs-tools/modules\n\
         value initrd-pvscsi \"$(zcat /mnt/g/boot/initrd.img-{v} | cpio -t 2>/dev/null | grep -c 'vmw_pvscsi\\.ko')\"\n\
         value osam-data \"$(ls /mnt/g/opt/vmware/hcx/osam/data 2>&1 | tr '\\n' ' ')\""
    );
    for (mp, _, _) in mounts.iter().rev() {
        let _ = writeln!(s, "umount /mnt/g{}", if *mp == "/" { "" } else { mp });
    }
    if let Some(vg) = vg {
        let _ = writeln!(
            s,
            "check vg-deactivate lvm vgchange --config \"$LVMCONF\" -an {}",
            vg.name
        );
    }
    if let Some(md) = &spec.md {
        let _ = writeln!(s, "check md-stop mdadm --stop /dev/{}", md.name);
    }
    s.push_str("echo \"OSAM-RESULT: ok\"\nsync\npoweroff -f\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage_guests::spec::GuestKind;

    #[test]
    fn scripts_name_every_step() {
        let lvm = build_script(&GuestKind::Lvm.spec());
        for needle in [
            "step lvm pvcreate --config \"$LVMCONF\" -ff -y ${D0}2 ${D1}1",
            "step lvm lvcreate --config \"$LVMCONF\" -y -Wy -Zy -n data -L 320m vg0 ${D1}1",
            "step mkfs.xfs -q -f -m uuid=5a8c1f02-3e4d-4b6a-9c7e-1d2f3a4b5c63 -L data /dev/mapper/vg0-data",
            "step mount -t ext4 /dev/mapper/vg0-root /mnt/g\n",
            "step mount -t ext4 ${D0}1 /mnt/g/boot",
            "step lvm vgchange --config \"$LVMCONF\" -an vg0",
            "blockdev --setrw",
        ] {
            assert!(lvm.contains(needle), "{needle}\n{lvm}");
        }
        let root_mount = lvm.find("/mnt/g\n").unwrap();
        assert!(
            root_mount < lvm.find("/mnt/g/boot").unwrap(),
            "parents first"
        );
        let btrfs = build_script(&GuestKind::Btrfs.spec());
        assert!(btrfs.contains("step btrfs subvolume create /mnt/g/@home"));
        assert!(btrfs.contains("step mount -t btrfs -o subvol=@home ${D0}1 /mnt/g/home"));
        let md = check_script(&GuestKind::MdRaid1.spec());
        assert!(
            md.contains("check md-assemble mdadm --assemble --readonly /dev/md0 ${D0}1 ${D1}1")
        );
        assert!(md.contains("check fsck-root e2fsck -fn /dev/md0"));
        assert!(md.contains("check mount-root mount -t ext4 -o ro,noload /dev/md0 /mnt/g"));
    }

    #[test]
    fn swap_uuid_bytes() {
        assert_eq!(
            uuid_octal("00010203-0405-0607-0809-0a0b0c0d0eff"),
            "\\000\\001\\002\\003\\004\\005\\006\\007\\010\\011\\012\\013\\014\\015\\016\\377"
        );
    }
}
