use std::io::Write;
use std::process::{Command, Stdio};

use super::cpio::{self, writer};
use super::modules::{self, Needed, Reason, RootConfig};
use super::*;
use crate::detect::{Bootloader, FirmwareHint, GuestInfo, InitSystem, KernelInfo, OsFamily};
use crate::engine::identity::IdentityMap;
use crate::engine::plan::{MemFiles, OnFailure};
use crate::protocol::config::{
    Arch, Firmware, FstabIdentifiers, Inputs, NetworkInterfaceMap, NicModel, Options,
    ReplicaDiskMap, Source, StorageController, SystemConfiguration, Target,
};

pub(crate) fn kernel(v: &str) -> KernelInfo {
    KernelInfo {
        version: v.to_string(),
        image: Some(format!("/boot/vmlinuz-{v}")),
        initramfs: None,
        modules_dir: Some(format!("/lib/modules/{v}")),
        has_modules: true,
    }
}

pub(crate) fn ctx_parts(
    family: OsFamily,
    kernels: Vec<KernelInfo>,
    extra: &[&str],
) -> (GuestInfo, Inputs, IdentityMap) {
    let info = GuestInfo {
        os_id: "x".into(),
        os_version: "1".into(),
        pretty_name: "x".into(),
        family,
        arch: "x86_64".into(),
        init_system: InitSystem::Systemd,
        bootloader: Bootloader::Grub2,
        firmware: FirmwareHint::Bios,
        kernels,
        root: None,
    };
    let inputs = Inputs {
        system: SystemConfiguration {
            version: 1,
            migration_id: "m".into(),
            source: Source {
                hostname: None,
                arch: Arch::X86_64,
                firmware: Firmware::Bios,
                os_family: None,
                os_version: None,
            },
            target: Target {
                firmware: Firmware::Bios,
                storage_controller: StorageController::Pvscsi,
                nic_model: NicModel::Vmxnet3,
            },
            options: Options {
                extra_initramfs_drivers: extra.iter().map(|s| s.to_string()).collect(),
                fstab_identifiers: FstabIdentifiers::Uuid,
                ..Options::default()
            },
        },
        disks: ReplicaDiskMap {
            version: 1,
            disks: vec![],
        },
        nics: NetworkInterfaceMap {
            version: 1,
            interfaces: vec![],
        },
    };
    (info, inputs, IdentityMap::default())
}

fn names(n: &[Needed]) -> Vec<String> {
    n.iter().map(|n| n.names.join("|")).collect()
}

#[test]
fn needed_modules_table() {
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (
            "plain ext4",
            "UUID=1 / ext4 defaults 1 1\n",
            None,
            "",
            "",
            &[],
            &["vmw_pvscsi", "sd_mod", "ext4"],
        ),
        (
            "ext3 via ext4",
            "/dev/sda1 / ext3 defaults 1 1\n",
            None,
            "",
            "",
            &[],
            &["vmw_pvscsi", "sd_mod", "ext3|ext4"],
        ),
        (
            "lvm xfs",
            "# c\n/dev/mapper/rhel-root / xfs defaults 0 0\nUUID=2 /boot xfs defaults 0 0\n",
            None,
            "",
            "",
            &[],
            &["vmw_pvscsi", "sd_mod", "xfs", "dm_mod"],
        ),
        (
            "vg path",
            "/dev/vg0/root / ext4 defaults 1 1\n",
            None,
            "",
            "",
            &[],
            &["vmw_pvscsi", "sd_mod", "ext4", "dm_mod"],
        ),
        (
            "detected lvm",
            "UUID=1 / btrfs defaults 0 0\n",
            Some("/dev/mapper/vg-root"),
            "",
            "",
            &[],
            &["vmw_pvscsi", "sd_mod", "btrfs", "dm_mod"],
        ),
        (
            "luks",
            "/dev/mapper/cryptroot / ext4 defaults 0 1\n",
            None,
            "cryptroot UUID=9 none luks\n",
            "",
            &[],
            &["vmw_pvscsi", "sd_mod", "ext4", "dm_mod", "dm_crypt"],
        ),
        (
            "md raid5",
            "/dev/md0 / ext4 defaults 1 1\n",
            None,
            "",
            "ARRAY /dev/md0 level=raid5 num-devices=3 UUID=x\n",
            &[],
            &["vmw_pvscsi", "sd_mod", "ext4", "raid456"],
        ),
        (
            "md unknown level",
            "/dev/md/root / xfs defaults 0 0\n",
            None,
            "",
            "",
            &[],
            &["vmw_pvscsi", "sd_mod", "xfs", "raid1"],
        ),
        (
            "extras normalised and deduplicated",
            "UUID=1 / xfs defaults 0 0\n",
            None,
            "",
            "",
            &["vmw-pvscsi", "hv_vmbus", "xfs", ""],
            &["vmw_pvscsi", "sd_mod", "xfs", "hv_vmbus"],
        ),
        ("no fstab", "", None, "", "", &[], &["vmw_pvscsi", "sd_mod"]),
    ];
    for (name, fstab, detected, crypttab, mdadm, extra, want) in cases {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let root = RootConfig {
            fstab,
            detected_root: *detected,
            crypttab,
            mdadm_conf: mdadm,
        };
        let got = modules::needed_modules("vmw_pvscsi", &root, &extra);
        assert_eq!(names(&got), *want, "{name}");
    }
    let nvme = modules::needed_modules("nvme", &RootConfig::default(), &[]);
    assert_eq!(names(&nvme), ["nvme"]);
    assert_eq!(nvme[0].reason, Reason::Controller);
}

#[test]
fn ext3_picks_what_the_kernel_has() {
    let n = Needed {
        names: vec!["ext3".into(), "ext4".into()],
        reason: Reason::RootFs,
    };
    let old = modules::KernelModules::from_texts(
        "2.6.18",
        Some("kernel/fs/ext3/ext3.ko: kernel/fs/jbd/jbd.ko\nkernel/fs/jbd/jbd.ko:\n"),
        None,
        None,
    );
    let new = modules::KernelModules::from_texts(
        "6.1",
        Some("kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\nkernel/fs/jbd2/jbd2.ko:\n"),
        None,
        None,
    );
    assert_eq!(n.pick(&old), "ext3");
    assert_eq!(n.pick(&new), "ext4");
    assert_eq!(old.closure("ext3"), ["ext3", "jbd"]);
}

fn compress_cli(tool: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("compressor");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("output");
    writer.join().expect("join").expect("write");
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn microcode() -> Vec<u8> {
    let mut a = writer::archive(&[
        ("kernel", 0o40755, b""),
        (
            "kernel/x86/microcode/GenuineIntel.bin",
            0o100644,
            b"\x01\x02\x03",
        ),
    ]);
    a.extend_from_slice(&[0u8; 512]);
    a
}

fn main_archive(v: &str, modules: &[&str]) -> Vec<u8> {
    let paths: Vec<String> = modules
        .iter()
        .map(|m| format!("usr/lib/modules/{v}/kernel/{m}.ko.xz"))
        .collect();
    let mut entries: Vec<(&str, u32, &[u8])> =
        vec![(".", 0o40755, b""), ("etc/fstab", 0o100644, b"x\n")];
    for p in &paths {
        entries.push((p, 0o100644, b"ELF"));
    }
    entries.push(("bin", 0o120777, b"usr/bin"));
    writer::archive(&entries)
}

#[test]
fn lists_images_in_every_format() {
    let inner = main_archive("6.1.0", &["drivers/scsi/vmw_pvscsi", "fs/xfs/xfs"]);
    let formats: Vec<(&str, Vec<u8>)> = vec![
        ("none", inner.clone()),
        ("gzip", gzip(&inner)),
        ("xz", compress_cli("xz", &["-c", "--check=crc32"], &inner)),
        ("zstd", compress_cli("zstd", &["-c", "-q"], &inner)),
        (
            "lz4 legacy",
            compress_cli("lz4", &["-l", "-c", "-q"], &inner),
        ),
    ];
    for (name, compressed) in formats {
        for early in [false, true] {
            let mut image = if early { microcode() } else { Vec::new() };
            image.extend_from_slice(&compressed);
            let list = cpio::list_image(&image, 1 << 20).unwrap_or_else(|e| panic!("{name}: {e}"));
            let found = modules::modules_in_image(list.iter().map(|e| e.name.as_str()), "6.1.0");
            assert_eq!(
                found.into_iter().collect::<Vec<_>>(),
                ["vmw_pvscsi", "xfs"],
                "{name} early={early}"
            );
            assert!(list.iter().any(|e| e.name == "etc/fstab"), "{name}");
            assert_eq!(
                list.iter().any(|e| e.name.contains("microcode")),
                early,
                "{name}"
            );
        }
    }
}

#[test]
fn hostile_images_are_errors() {
    let good = writer::archive(&[("a", 0o100644, b"hello")]);
    let mut huge_name = good.clone();
    // namesize is field 11: bytes 6 + 11*8 .. +8
    huge_name[94..102].copy_from_slice(b"FFFFFFFF");
    let mut huge_file = good.clone();
    huge_file[54..62].copy_from_slice(b"7FFFFFFF");
    let mut bad_hex = good.clone();
    bad_hex[54..62].copy_from_slice(b"zzzzzzzz");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated header", good[..50].to_vec()),
        ("truncated member", good[..115].to_vec()),
        ("no trailer", good[..good.len() - 124].to_vec()),
        ("huge namesize", huge_name),
        ("huge filesize", huge_file),
        ("bad hex", bad_hex),
        ("garbage", b"\x01\x02not an image".to_vec()),
        ("bad gzip", [&[0x1f, 0x8b, 8, 0][..], &[0xff; 40]].concat()),
        (
            "cpio then garbage inside",
            gzip(&[good.clone(), b"junk".to_vec()].concat()),
        ),
    ];
    for (name, data) in cases {
        assert!(cpio::list_image(&data, 1 << 20).is_err(), "{name}");
    }
    // A decompression bomb hits the cap.
    let bomb = gzip(&vec![0u8; 4 << 20]);
    assert!(cpio::list_image(&bomb, 1 << 20).is_err());
    assert!(cpio::list_image(&good, 1 << 20).is_ok());
}

const V_NEW: &str = "6.1.0-50-amd64";
const V_OLD: &str = "5.10.0-9-amd64";

fn dep(v: &str) -> (String, String) {
    let _ = v;
    (
        "modules.dep".into(),
        "kernel/drivers/scsi/vmw_pvscsi.ko.xz:\n\
         kernel/drivers/scsi/sd_mod.ko.xz: kernel/lib/crc-t10dif.ko.xz\n\
         kernel/lib/crc-t10dif.ko.xz:\n\
         kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz\n\
         kernel/fs/jbd2/jbd2.ko.xz:\n\
         kernel/fs/mbcache.ko.xz:\n\
         kernel/fs/xfs/xfs.ko.xz:\n\
         kernel/drivers/md/dm-mod.ko.xz:\n\
         kernel/drivers/scsi/mpt/mptspi.ko.xz:\n"
            .into(),
    )
}

const ALL_EXT4: &[&str] = &[
    "drivers/scsi/vmw_pvscsi",
    "drivers/scsi/sd_mod",
    "lib/crc-t10dif",
    "fs/ext4/ext4",
    "fs/jbd2/jbd2",
    "fs/mbcache",
];

fn guest(family: OsFamily, versions: &[&str], fstab: &str, bins: &[&str]) -> MemFiles {
    let mut f = MemFiles::new().with("/etc/fstab", fstab);
    for v in versions {
        let (name, text) = dep(v);
        f = f.with(&format!("/lib/modules/{v}/{name}"), &text);
    }
    for b in bins {
        f = f.with(b, "#!/bin/sh\n");
    }
    let _ = family;
    f
}

fn with_image(mut f: MemFiles, path: &str, v: &str, mods: &[&str]) -> MemFiles {
    let mut image = microcode();
    image.extend(gzip(&main_archive(v, mods)));
    f.files.insert(path.to_string(), image);
    f
}

fn run(
    family: OsFamily,
    files: &MemFiles,
    versions: &[&str],
    changed: &[&str],
) -> Result<Plan, FixupError> {
    let kernels = versions.iter().map(|v| kernel(v)).collect();
    let (info, inputs, identity) = ctx_parts(family, kernels, &[]);
    let ctx = PlanCtx {
        files,
        info: &info,
        inputs: &inputs,
        identity: &identity,
        stack_arch: "x86_64",
        boot_device: None,
    };
    let changed: Vec<String> = changed.iter().map(|s| s.to_string()).collect();
    plan_with_changes(&ctx, &changed)
}

const DEBIAN_BINS: &[&str] = &[
    "/usr/sbin/update-initramfs",
    "/usr/sbin/mkinitramfs",
    "/etc/initramfs-tools/initramfs.conf",
];
const EXT4_FSTAB: &str = "UUID=1 / ext4 errors=remount-ro 0 1\n";

#[test]
fn unchanged_when_every_module_is_inside() {
    let f = guest(OsFamily::Debian, &[V_OLD, V_NEW], EXT4_FSTAB, DEBIAN_BINS);
    let f = with_image(f, &format!("/boot/initrd.img-{V_NEW}"), V_NEW, ALL_EXT4);
    let f = with_image(f, &format!("/boot/initrd.img-{V_OLD}"), V_OLD, ALL_EXT4);
    let p = run(OsFamily::Debian, &f, &[V_OLD, V_NEW], &[]).expect("plan");
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(
        p.summary,
        format!("2 kernels: {V_NEW} unchanged, {V_OLD} unchanged")
    );
    // An unrelated change keeps it; an embedded one forces the rebuild.
    let p = run(OsFamily::Debian, &f, &[V_OLD, V_NEW], &["/etc/hostname"]).expect("plan");
    assert!(p.is_empty());
    let p = run(OsFamily::Debian, &f, &[V_OLD, V_NEW], &["/etc/fstab"]).expect("plan");
    assert_eq!(p.commands.len(), 2);
    assert!(
        p.summary.contains("rebuilt (/etc/fstab changed)"),
        "{}",
        p.summary
    );
    // The guest had no modules file: it is created with what the image
    // needs; each image rebuilt is saved first (for undo).
    assert_eq!(p.edits.len(), 3);
    assert_eq!(p.edits[0].paths(), [INITRAMFS_TOOLS_MODULES]);
    for (e, v) in p.edits[1..].iter().zip([V_NEW, V_OLD]) {
        assert_eq!(*e, Edit::preserve(&format!("/boot/initrd.img-{v}")));
    }
}

#[test]
fn debian_rebuild_with_initramfs_tools() {
    let f = guest(OsFamily::Debian, &[V_OLD, V_NEW], EXT4_FSTAB, DEBIAN_BINS).with(
        INITRAMFS_TOOLS_MODULES,
        "# List of modules\n# comment\nloop\n",
    );
    let f = with_image(
        f,
        &format!("/boot/initrd.img-{V_NEW}"),
        V_NEW,
        &ALL_EXT4[1..],
    );
    let f = with_image(f, &format!("/boot/initrd.img-{V_OLD}"), V_OLD, ALL_EXT4);
    let p = run(OsFamily::Debian, &f, &[V_OLD, V_NEW], &[]).expect("plan");
    assert_eq!(
        p.summary,
        format!("2 kernels: {V_NEW} rebuilt (vmw_pvscsi added), {V_OLD} unchanged")
    );
    assert_eq!(p.commands.len(), 1);
    assert_eq!(
        p.commands[0].argv,
        ["/usr/sbin/update-initramfs", "-u", "-k", V_NEW]
    );
    assert_eq!(p.commands[0].on_failure, OnFailure::Fail);
    assert_eq!(
        p.edits,
        [
            Edit::write(
                INITRAMFS_TOOLS_MODULES,
                "# List of modules\n# comment\nloop\n# Added by the OSAM fixup stack (VMware target):\nvmw_pvscsi\nsd_mod\next4\n"
            ),
            Edit::preserve(&format!("/boot/initrd.img-{V_NEW}"))
        ]
    );
}

#[test]
fn dracut_and_mkinitrd_plans() {
    let xfs_lvm = "/dev/mapper/rhel-root / xfs defaults 0 0\n";
    struct Case {
        name: &'static str,
        family: OsFamily,
        bins: &'static [&'static str],
        extra: &'static [(&'static str, &'static str)],
        want: Vec<Vec<String>>,
        edit: Option<(&'static str, &'static str)>,
    }
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let list = "vmw_pvscsi sd_mod xfs dm_mod";
    let cases = vec![
        Case {
            name: "rhel 7/8/9 dracut",
            family: OsFamily::Rhel,
            bins: &["/usr/bin/dracut"],
            extra: &[],
            want: vec![
                s(&[
                    "/usr/bin/dracut",
                    "-f",
                    "--add-drivers",
                    list,
                    &format!("/boot/initramfs-{V_NEW}.img"),
                    V_NEW,
                ]),
                s(&[
                    "/usr/bin/dracut",
                    "-f",
                    "--add-drivers",
                    list,
                    &format!("/boot/initramfs-{V_OLD}.img"),
                    V_OLD,
                ]),
            ],
            edit: Some((
                DRACUT_CONF,
                "add_drivers+=\" vmw_pvscsi sd_mod xfs dm_mod \"",
            )),
        },
        Case {
            name: "sles 15 dracut",
            family: OsFamily::Suse,
            bins: &["/usr/bin/dracut", "/sbin/mkinitrd"],
            extra: &[],
            want: vec![
                s(&[
                    "/usr/bin/dracut",
                    "-f",
                    "--add-drivers",
                    list,
                    &format!("/boot/initrd-{V_NEW}"),
                    V_NEW,
                ]),
                s(&[
                    "/usr/bin/dracut",
                    "-f",
                    "--add-drivers",
                    list,
                    &format!("/boot/initrd-{V_OLD}"),
                    V_OLD,
                ]),
            ],
            edit: Some((DRACUT_CONF, "add_drivers+=")),
        },
        Case {
            name: "rhel 5 mkinitrd",
            family: OsFamily::Rhel,
            bins: &["/sbin/mkinitrd"],
            extra: &[],
            want: vec![
                s(&[
                    "/sbin/mkinitrd",
                    "-f",
                    "--with=vmw_pvscsi",
                    "--with=sd_mod",
                    "--with=xfs",
                    "--with=dm_mod",
                    &format!("/boot/initrd-{V_NEW}.img"),
                    V_NEW,
                ]),
                s(&[
                    "/sbin/mkinitrd",
                    "-f",
                    "--with=vmw_pvscsi",
                    "--with=sd_mod",
                    "--with=xfs",
                    "--with=dm_mod",
                    &format!("/boot/initrd-{V_OLD}.img"),
                    V_OLD,
                ]),
            ],
            edit: None,
        },
        Case {
            name: "sles 11 mkinitrd",
            family: OsFamily::Suse,
            bins: &["/sbin/mkinitrd"],
            extra: &[(
                SUSE_SYSCONFIG_KERNEL,
                "## comment\nINITRD_MODULES=\"mptspi processor\"\nMODULES_LOADED_ON_BOOT=\"\"\n",
            )],
            want: vec![
                s(&[
                    "/sbin/mkinitrd",
                    "-k",
                    &format!("/boot/vmlinuz-{V_NEW}"),
                    "-i",
                    &format!("/boot/initrd-{V_NEW}"),
                    "-m",
                    "mptspi processor vmw_pvscsi sd_mod xfs dm_mod",
                ]),
                s(&[
                    "/sbin/mkinitrd",
                    "-k",
                    &format!("/boot/vmlinuz-{V_OLD}"),
                    "-i",
                    &format!("/boot/initrd-{V_OLD}"),
                    "-m",
                    "mptspi processor vmw_pvscsi sd_mod xfs dm_mod",
                ]),
            ],
            edit: Some((
                SUSE_SYSCONFIG_KERNEL,
                "## comment\nINITRD_MODULES=\"mptspi processor vmw_pvscsi sd_mod xfs dm_mod\"\nMODULES_LOADED_ON_BOOT=\"\"\n",
            )),
        },
    ];
    for c in cases {
        let mut f = guest(c.family, &[V_OLD, V_NEW], xfs_lvm, c.bins);
        for (p, t) in c.extra {
            f = f.with(p, t);
        }
        let p =
            run(c.family, &f, &[V_OLD, V_NEW], &[]).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let argv: Vec<Vec<String>> = p.commands.iter().map(|c| c.argv.clone()).collect();
        assert_eq!(argv, c.want, "{}", c.name);
        assert_eq!(p.commands[0].on_failure, OnFailure::Fail, "{}", c.name);
        assert_eq!(p.commands[1].on_failure, OnFailure::Warn, "{}", c.name);
        assert!(
            p.summary.contains("rebuilt (no image)"),
            "{}: {}",
            c.name,
            p.summary
        );
        match c.edit {
            None => assert!(p.edits.is_empty(), "{}", c.name),
            Some((path, text)) => {
                let Edit::Write {
                    path: got,
                    contents,
                    ..
                } = &p.edits[0]
                else {
                    panic!("{}: {:?}", c.name, p.edits)
                };
                assert_eq!(got, path, "{}", c.name);
                let contents = String::from_utf8_lossy(contents);
                assert!(contents.contains(text), "{}: {contents}", c.name);
            }
        }
    }
}

#[test]
fn missing_modules_and_tools() {
    // The default kernel lacks btrfs: an error; an older one: a warning.
    let fstab = "UUID=1 / btrfs defaults 0 0\n";
    let mut f = guest(OsFamily::Rhel, &[V_OLD, V_NEW], fstab, &["/usr/bin/dracut"]);
    let e = run(OsFamily::Rhel, &f, &[V_OLD, V_NEW], &[]).expect_err("no btrfs");
    assert_eq!(e.code, codes::INITRAMFS_MODULE_MISSING);
    assert!(
        e.message.contains(V_NEW) && e.message.contains("btrfs"),
        "{}",
        e.message
    );
    let (name, text) = dep(V_NEW);
    f = f.with(
        &format!("/lib/modules/{V_NEW}/{name}"),
        &format!("{text}kernel/fs/btrfs/btrfs.ko.xz:\n"),
    );
    let p = run(OsFamily::Rhel, &f, &[V_OLD, V_NEW], &[]).expect("older kernel: warning");
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].code, codes::INITRAMFS_MODULE_MISSING);
    // No tool at all.
    let f = guest(OsFamily::Rhel, &[V_NEW], EXT4_FSTAB, &[]);
    let e = run(OsFamily::Rhel, &f, &[V_NEW], &[]).expect_err("no tool");
    assert_eq!(e.code, codes::INITRAMFS_NO_TOOL);
    // An unreadable image is rebuilt with a warning.
    let mut f = guest(OsFamily::Rhel, &[V_NEW], EXT4_FSTAB, &["/usr/bin/dracut"]);
    f.files.insert(
        format!("/boot/initramfs-{V_NEW}.img"),
        b"070701zzzz".to_vec(),
    );
    let p = run(OsFamily::Rhel, &f, &[V_NEW], &[]).expect("plan");
    assert_eq!(p.warnings[0].code, codes::INITRAMFS_UNREADABLE);
    assert_eq!(p.commands.len(), 1);
}
