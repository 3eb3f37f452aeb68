//! Property tests of the rewriters, on generated files (a seeded
//! generator: `OSAM_PROPERTY_SEED` changes the seed, `OSAM_PROPERTY_CASES`
//! the number of files per format, default 150):
//!
//! - lines the rewriter does not own (comments — even ones naming a source
//!   NIC or device —, blank lines, other settings) interleaved at random
//!   with lines it owns keep every byte and their place;
//! - owned lines lose their source references, and in fstab every field
//!   but the first keeps its bytes (spacing included);
//! - a second plan over the first one's result changes nothing;
//! - `fixupctl run --no-commands` then `fixupctl undo` on a generated
//!   guest tree gives back the original bytes.

#[allow(dead_code)]
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use osam_init::detect::{Bootloader, GuestInfo, OsFamily};
use osam_init::engine::fixups;
use osam_init::engine::identity::IdentityMap;
use osam_init::engine::plan::{MemFiles, Plan, PlanCtx, Planner};
use osam_init::fuzzing::{self, Rng};
use osam_init::protocol::config::Inputs;

const FIXUPCTL: &str = env!("CARGO_BIN_EXE_fixupctl");

fn cases() -> usize {
    std::env::var("OSAM_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

fn rng(name: &str) -> Rng {
    let seed: u64 = std::env::var("OSAM_PROPERTY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    Rng::new(seed ^ h)
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// A word that can name no NIC, MAC, device or UUID of the context (no
/// hex letters, at most three digits in a row).
fn word(r: &mut Rng) -> String {
    const LETTERS: &[u8] = b"ghijklmopqrtuvwxyz";
    let n = 1 + r.below(8);
    let mut w: String = (0..n).map(|_| *r.pick(LETTERS) as char).collect();
    if r.chance(3) {
        w.push_str(&r.below(1000).to_string());
    }
    w
}

fn words(r: &mut Rng, n: usize, sep: &str) -> String {
    (0..n).map(|_| word(r)).collect::<Vec<_>>().join(sep)
}

fn blank(r: &mut Rng) -> String {
    r.pick(&["", " ", "\t", "  \t "]).to_string()
}

/// Spacing between fields: spaces or tabs.
fn gap(r: &mut Rng) -> String {
    (0..1 + r.below(3))
        .map(|_| if r.chance(2) { '\t' } else { ' ' })
        .collect()
}

/// A comment, sometimes naming the source NICs and devices (comments are
/// never rewritten).
fn comment(r: &mut Rng) -> String {
    let extra = if r.chance(3) {
        *r.pick(&[
            " ens192",
            " was /dev/sda1",
            " 52:54:00:12:34:56",
            " GRUB_CMDLINE_LINUX=\"root=/dev/sda1\"",
            " iface ens224 inet dhcp",
        ])
    } else {
        ""
    };
    let lead = if r.chance(4) { "  " } else { "" };
    let n = r.below(5);
    format!("{lead}#{}{extra}", words(r, n, " "))
}

/// One generated file: its lines, and which of them the rewriter owns.
struct Doc {
    lines: Vec<(String, bool)>,
    crlf: bool,
}

impl Doc {
    fn new(r: &mut Rng) -> Doc {
        Doc {
            lines: Vec::new(),
            crlf: r.chance(10),
        }
    }

    fn text(&self) -> String {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        self.lines
            .iter()
            .map(|(l, _)| format!("{l}{eol}"))
            .collect()
    }

    /// Interleaves `owned` lines (in order) with `unowned()` lines.
    fn build(r: &mut Rng, owned: Vec<String>, mut unowned: impl FnMut(&mut Rng) -> String) -> Doc {
        let mut d = Doc::new(r);
        for o in owned {
            for _ in 0..r.below(4) {
                let u = unowned(r);
                d.lines.push((u, false));
            }
            d.lines.push((o, true));
        }
        for _ in 0..r.below(3) {
            let u = unowned(r);
            d.lines.push((u, false));
        }
        d
    }
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

fn plan(files: &MemFiles, info: &GuestInfo, inputs: &Inputs, planner: Planner) -> Plan {
    let (identity, _) = IdentityMap::build(inputs, &[], files);
    let ctx = PlanCtx {
        files,
        info,
        inputs,
        identity: &identity,
        stack_arch: "x86_64",
        boot_device: None,
    };
    planner(&ctx).expect("plan")
}

/// Plans `path` = `doc` (renamed to `out_path`), checks that the unowned
/// lines kept their bytes and place (lines may be appended at the end
/// when `appends`), that a second plan changes nothing, and returns the
/// owned lines as (before, after).
fn check(
    doc: &Doc,
    path: &str,
    out_path: &str,
    extra: &[(&str, &str)],
    info: &GuestInfo,
    planner: Planner,
    appends: bool,
) -> Vec<(String, String)> {
    let mut files = MemFiles::new().with(path, &doc.text());
    for (p, t) in extra {
        files = files.with(p, t);
    }
    let inputs = fuzzing::inputs(false, false, false);
    let first = plan(&files, info, inputs, planner);
    let after = fuzzing::apply(&files, &first);
    let text = String::from_utf8(
        after
            .files
            .get(out_path)
            .cloned()
            .unwrap_or_else(|| panic!("{out_path} missing after the plan:\n{}", doc.text())),
    )
    .unwrap();
    let eol = if doc.crlf { "\r\n" } else { "\n" };
    let got: Vec<&str> = text.split_inclusive('\n').collect();
    let show = || format!("--- before\n{}--- after\n{text}", doc.text());
    if appends {
        assert!(got.len() >= doc.lines.len(), "lines removed\n{}", show());
    } else {
        assert_eq!(got.len(), doc.lines.len(), "line count changed\n{}", show());
    }
    let mut owned = Vec::new();
    for (i, (line, is_owned)) in doc.lines.iter().enumerate() {
        let new = got[i];
        if *is_owned {
            owned.push((line.clone(), new.trim_end_matches(['\r', '\n']).to_string()));
        } else {
            assert_eq!(
                new,
                format!("{line}{eol}"),
                "line {} not kept\n{}",
                i + 1,
                show()
            );
        }
    }
    let second = plan(&after, info, inputs, planner);
    assert!(
        second.edits.is_empty(),
        "a second plan changes {:?}\n{}",
        second
            .edits
            .iter()
            .flat_map(|e| e.paths())
            .collect::<Vec<_>>(),
        show()
    );
    owned
}

// ---------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------

const SDA1_UUID: &str = "0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f";
const SDB1_SOURCE_UUID_TAG: &str = "UUID=5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40";
const SDB1_TARGET_UUID: &str = "7e57a9b1-0000-4c8e-9f27-3a1b2c4d5e6f";

fn fstab_unowned(r: &mut Rng) -> String {
    let g = gap(r);
    match r.below(6) {
        0 => comment(r),
        1 => blank(r),
        2 => format!(
            "nas:/{}{g}/mnt/{}{g}nfs4{g}defaults,_netdev{g}0 0",
            word(r),
            word(r)
        ),
        3 => format!(
            "tmpfs{g}/{}{g}tmpfs{g}size={}m{g}0 0",
            word(r),
            r.below(999)
        ),
        4 => format!(
            "/dev/mapper/vg-{}{g}/{}{g}xfs{g}defaults{g}0 0",
            word(r),
            word(r)
        ),
        _ => format!("/srv/{}{g}/mnt/{}{g}none{g}bind{g}0 0", word(r), word(r)),
    }
}

#[test]
fn fstab_rewrites_only_the_first_field_of_its_entries() {
    let mut r = rng("fstab");
    let info = fuzzing::guest_info(OsFamily::Rhel, Bootloader::Grub2);
    for _ in 0..cases() {
        // (source spec, mount, what it must become)
        let mut specs = vec![
            ("/dev/sda1", "/boot", format!("UUID={SDA1_UUID}")),
            ("/dev/sdb1", "/data", format!("UUID={SDB1_TARGET_UUID}")),
        ];
        if r.chance(2) {
            specs[1].0 = SDB1_SOURCE_UUID_TAG;
        }
        if r.chance(2) {
            specs.swap(0, 1);
        }
        let owned: Vec<String> = specs
            .iter()
            .map(|(s, m, _)| {
                let g = gap(&mut r);
                let opts = if r.chance(2) {
                    "defaults"
                } else {
                    "rw,noatime,nofail"
                };
                format!("{s}{g}{m}{g}xfs{}{opts}{g}0{}2", gap(&mut r), gap(&mut r))
            })
            .collect();
        let doc = Doc::build(&mut r, owned, fstab_unowned);
        let got = check(
            &doc,
            "/etc/fstab",
            "/etc/fstab",
            &[],
            &info,
            fixups::fstab::plan,
            false,
        );
        for ((before, after), (src, _, want)) in got.iter().zip(&specs) {
            assert_eq!(after, &before.replacen(src, want, 1), "{}", doc.text());
        }
    }
}

fn ifcfg_unowned(r: &mut Rng) -> String {
    match r.below(5) {
        0 => comment(r),
        1 => blank(r),
        2 => format!("{}={}", word(r).to_uppercase(), word(r)),
        3 => format!("{}=\"{}\"", word(r).to_uppercase(), words(r, 2, " ")),
        // Opaque keys keep even a source name.
        _ => "ZONE=ens192".to_string(),
    }
}

#[test]
fn ifcfg_rewrites_only_lines_naming_the_nic() {
    let mut r = rng("ifcfg");
    let info = fuzzing::guest_info(OsFamily::Rhel, Bootloader::Grub2);
    for _ in 0..cases() {
        let mut owned = vec![
            "DEVICE=ens192".to_string(),
            "HWADDR=52:54:00:12:34:56".to_string(),
        ];
        if r.chance(2) {
            owned.push("NAME=\"System ens192\"".into());
        }
        if r.chance(2) {
            owned.insert(0, "export MASTER=ens224".into());
        }
        let doc = Doc::build(&mut r, owned, ifcfg_unowned);
        let got = check(
            &doc,
            "/etc/sysconfig/network-scripts/ifcfg-ens192",
            "/etc/sysconfig/network-scripts/ifcfg-eth0",
            &[],
            &info,
            fixups::network::plan,
            false,
        );
        for (before, after) in got {
            assert!(
                !after.contains("ens192") && !after.contains("ens224") && !after.contains("52:54"),
                "{before} -> {after}"
            );
            assert_ne!(before, after);
        }
    }
}

fn interfaces_unowned(r: &mut Rng) -> String {
    match r.below(6) {
        0 => comment(r),
        1 => blank(r),
        2 => "auto lo".into(),
        3 => "iface lo inet loopback".into(),
        4 => format!("    mtu {}", r.below(9000)),
        _ => format!("    dns-search {}", words(r, 2, " ")),
    }
}

#[test]
fn interfaces_rewrites_only_lines_naming_the_nic() {
    let mut r = rng("interfaces");
    let info = fuzzing::guest_info(OsFamily::Debian, Bootloader::Grub2);
    for _ in 0..cases() {
        let mut owned = vec![
            "auto ens192".to_string(),
            "iface ens192 inet static".to_string(),
            "    hwaddress ether 52:54:00:12:34:56".to_string(),
        ];
        if r.chance(2) {
            owned.push("allow-hotplug ens224".into());
            owned.push("iface ens224 inet dhcp".into());
        }
        let doc = Doc::build(&mut r, owned, interfaces_unowned);
        let got = check(
            &doc,
            "/etc/network/interfaces",
            "/etc/network/interfaces",
            &[],
            &info,
            fixups::network::plan,
            false,
        );
        for (before, after) in got {
            assert!(
                !after.contains("ens1") && !after.contains("ens2") && !after.contains("52:54"),
                "{before} -> {after}"
            );
        }
    }
}

#[test]
fn netplan_rewrites_only_lines_naming_the_nic() {
    let mut r = rng("netplan");
    let info = fuzzing::guest_info(OsFamily::Debian, Bootloader::Grub2);
    for _ in 0..cases() {
        // The structure is fixed; unowned lines are comments, blanks and
        // settings at the depth of the NIC's own.
        let skeleton: Vec<(String, bool)> = vec![
            ("network:".into(), false),
            ("  version: 2".into(), false),
            ("  ethernets:".into(), false),
            ("    ens192:".into(), true),
            ("      match:".into(), false),
            ("        macaddress: 52:54:00:12:34:56".into(), true),
            ("      set-name: ens192".into(), true),
            ("      dhcp4: true".into(), false),
            (
                "    ens224: {dhcp4: false, addresses: [10.0.0.5/24]}".into(),
                true,
            ),
        ];
        let mut doc = Doc::new(&mut r);
        for (line, owned) in skeleton {
            let depth = line.len() - line.trim_start().len();
            for _ in 0..r.below(3) {
                let u = match r.below(3) {
                    0 => comment(&mut r),
                    1 => blank(&mut r),
                    _ if depth >= 6 => format!("{}mtu: {}", " ".repeat(depth), r.below(9000)),
                    _ => comment(&mut r),
                };
                doc.lines.push((u, false));
            }
            doc.lines.push((line, owned));
        }
        let got = check(
            &doc,
            "/etc/netplan/50-cloud-init.yaml",
            "/etc/netplan/50-cloud-init.yaml",
            &[],
            &info,
            fixups::network::plan,
            false,
        );
        for (before, after) in got {
            assert!(
                !after.contains("ens1") && !after.contains("ens2") && !after.contains("52:54"),
                "{before} -> {after}"
            );
        }
    }
}

fn grub_unowned(r: &mut Rng) -> String {
    match r.below(6) {
        0 => comment(r),
        1 => blank(r),
        2 => format!("GRUB_TIMEOUT={}", r.below(30)),
        3 => format!("GRUB_{}=\"{}\"", word(r).to_uppercase(), words(r, 2, " ")),
        4 => format!("export GRUB_{}={}", word(r).to_uppercase(), word(r)),
        _ => "#GRUB_DISABLE_OS_PROBER=false".into(),
    }
}

#[test]
fn default_grub_rewrites_only_its_settings() {
    let mut r = rng("default_grub");
    let info = fuzzing::guest_info(OsFamily::Debian, Bootloader::Grub2);
    let tools = [
        ("/usr/sbin/grub-mkconfig", ""),
        ("/usr/lib/grub/i386-pc/normal.mod", ""),
    ];
    for _ in 0..cases() {
        let q = *r.pick(&["\"", "'"]);
        let mut owned = vec![format!(
            "GRUB_CMDLINE_LINUX={q}root=/dev/sda1 {} console=hvc0 ro{q}",
            words(&mut r, 2, " ")
        )];
        if r.chance(2) {
            owned.insert(
                0,
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet net.ifnames=1\"".into(),
            );
        }
        if r.chance(2) {
            owned.push("GRUB_DISABLE_OS_PROBER=false".into());
        }
        let doc = Doc::build(&mut r, owned, grub_unowned);
        let got = check(
            &doc,
            "/etc/default/grub",
            "/etc/default/grub",
            &tools,
            &info,
            fixups::bootloader::plan,
            true,
        );
        for (before, after) in got {
            assert!(
                !after.contains("/dev/sda1")
                    && !after.contains("hvc0")
                    && !after.contains("=false")
                    && !after.contains("ifnames=1"),
                "{before} -> {after}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// run + undo on generated trees
// ---------------------------------------------------------------------------

fn generated_tree(root: &Path, r: &mut Rng) {
    let t = common::Tree::new(root);
    t.file(
        "etc/os-release",
        "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\n\
         PRETTY_NAME=\"Ubuntu 22.04 LTS\"\n",
    )
    .file("etc/debian_version", "bookworm/sid\n")
    .file("boot/grub/grub.cfg", "menuentry 'Ubuntu' {}\n")
    .file("boot/vmlinuz-5.15.0-91-generic", "")
    .file(
        "lib/modules/5.15.0-91-generic/modules.dep",
        "kernel/drivers/scsi/vmw_pvscsi.ko:\nkernel/drivers/scsi/sd_mod.ko:\n\
         kernel/fs/ext4/ext4.ko:\nkernel/fs/xfs/xfs.ko:\n\
         kernel/drivers/net/vmxnet3/vmxnet3.ko:\nkernel/drivers/md/dm-mod.ko:\n",
    )
    .file("etc/initramfs-tools/initramfs.conf", "MODULES=most\n")
    .tools(&[
        "usr/sbin/update-initramfs",
        "usr/sbin/mkinitramfs",
        "usr/sbin/grub-install",
        "usr/sbin/grub-mkconfig",
        "lib/systemd/systemd",
    ]);
    let (g1, g2) = (gap(r), gap(r));
    let fstab = Doc::build(
        r,
        vec![
            format!("/dev/sda1{g1}/boot{g2}xfs defaults 0 0"),
            "/dev/sdb1 /data ext4 defaults 0 2".into(),
        ],
        fstab_unowned,
    );
    let ifcfg = Doc::build(
        r,
        vec!["DEVICE=ens192".into(), "HWADDR=52:54:00:12:34:56".into()],
        ifcfg_unowned,
    );
    let interfaces = Doc::build(
        r,
        vec!["auto ens224".into(), "iface ens224 inet dhcp".into()],
        interfaces_unowned,
    );
    let grub = Doc::build(
        r,
        vec!["GRUB_CMDLINE_LINUX=\"root=/dev/sda1 console=hvc0\"".into()],
        grub_unowned,
    );
    t.file("etc/fstab", &fstab.text())
        .file_mode(
            "etc/sysconfig/network-scripts/ifcfg-ens192",
            &ifcfg.text(),
            0o600,
        )
        .file("etc/network/interfaces", &interfaces.text())
        .file("etc/default/grub", &grub.text())
        .file_mode(
            "etc/netplan/50-cloud-init.yaml",
            "network:\n  ethernets:\n    ens192:\n      dhcp4: true\n  version: 2\n",
            0o600,
        )
        .file(
            "etc/udev/rules.d/70-persistent-net.rules",
            "SUBSYSTEM==\"net\", ATTR{address}==\"52:54:00:12:34:56\", NAME=\"ens192\"\n",
        )
        .link("etc/mtab", "../proc/self/mounts");
}

#[test]
fn run_then_undo_gives_back_every_byte_of_a_generated_tree() {
    let mut r = rng("run_undo");
    let n = (cases() / 25).max(2);
    for i in 0..n {
        let sysroot = tempfile::tempdir().unwrap();
        let fixup = tempfile::tempdir().unwrap();
        let run_dir = tempfile::tempdir().unwrap();
        for e in
            fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/protocol/valid"))
                .unwrap()
        {
            let e = e.unwrap();
            fs::copy(e.path(), fixup.path().join(e.file_name())).unwrap();
        }
        let root = sysroot.path();
        generated_tree(root, &mut r);
        let before = common::snapshot(root);
        let fixupctl = |args: &[&std::ffi::OsStr]| {
            Command::new(FIXUPCTL)
                .args(args)
                .env("OSAM_RUN_DIR", run_dir.path())
                .output()
                .unwrap()
        };
        for round in 0..2 {
            let out = fixupctl(&[
                "run".as_ref(),
                "--no-commands".as_ref(),
                "--sysroot".as_ref(),
                root.as_os_str(),
                "--fixup-dir".as_ref(),
                fixup.path().as_os_str(),
            ]);
            assert_eq!(out.status.code(), Some(0), "tree {i} run {round}: {out:?}");
        }
        let changed = common::diff(&before, &common::snapshot(root));
        assert!(
            changed.iter().any(|d| d.contains("/etc/fstab")),
            "tree {i}: {changed:?}"
        );
        let out = fixupctl(&["undo".as_ref(), "--sysroot".as_ref(), root.as_os_str()]);
        assert_eq!(out.status.code(), Some(0), "tree {i} undo: {out:?}");
        assert_eq!(
            common::diff(&before, &common::snapshot(root)),
            Vec::<String>::new(),
            "tree {i} after run, run, undo"
        );
    }
}
