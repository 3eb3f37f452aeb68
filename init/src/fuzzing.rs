//! The fuzz target bodies, shared by the cargo-fuzz crate in `fuzz/`
//! (libFuzzer, nightly Rust: `make fuzz`) and the stable replay test
//! `init/tests/fuzz_corpus.rs` (every file of `fuzz/corpus/<target>/` plus
//! a seeded mutation loop, in `make test`). Not part of the stack's API.
//!
//! Every target takes arbitrary bytes. Targets that model several guest
//! files split the input at `0xFF` bytes (a byte that never occurs in
//! UTF-8 text) into the files of [`Target::files`], in order; a file
//! without its part is absent from the guest. The planners run on an
//! in-memory guest ([`MemFiles`]) with a fixed synthetic context (the
//! replica disk map and NIC map of [`SYSTEM`], [`DISKS`], [`NICS`]; the
//! identity map built from them and the guest's files, as a run does).
//!
//! What every target asserts, besides "no panic": a planned edit names a
//! clean absolute guest path (no `..`, `.`, empty component or NUL); a
//! second plan over the first plan's result has no edits (a rerun changes
//! nothing); and where a format's rewriter owns only some lines, the
//! comment lines of the file are kept byte for byte.

use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::sync::OnceLock;

use crate::detect::{Bootloader, FirmwareHint, GuestInfo, InitSystem, OsFamily};
use crate::engine::fixups;
use crate::engine::identity::IdentityMap;
use crate::engine::plan::{Edit, MemFiles, Plan, PlanCtx, Planner};
use crate::protocol::config::{self, Inputs};

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// The guest files the input's `0xFF`-separated parts become (empty
    /// for targets that take the bytes whole).
    pub files: &'static [&'static str],
    pub run: fn(&[u8]),
}

/// Every target, by name (the names of `fuzz/fuzz_targets/*.rs` and of
/// the corpus directories).
pub const TARGETS: &[Target] = &[
    Target {
        name: "config_json",
        files: &[
            config::SYSTEM_CONFIGURATION,
            config::REPLICA_DISK_MAP,
            config::NETWORK_INTERFACE_MAP,
        ],
        run: config_json,
    },
    Target {
        name: "fstab",
        files: &["/etc/fstab"],
        run: fstab,
    },
    Target {
        name: "crypttab",
        files: &["/etc/crypttab", "/etc/fstab"],
        run: crypttab,
    },
    Target {
        name: "storage_conf",
        files: STORAGE_CONF,
        run: storage_conf,
    },
    Target {
        name: "ifcfg",
        files: IFCFG,
        run: ifcfg,
    },
    Target {
        name: "keyfile",
        files: KEYFILE,
        run: keyfile,
    },
    Target {
        name: "netplan",
        files: NETPLAN,
        run: netplan,
    },
    Target {
        name: "interfaces",
        files: INTERFACES,
        run: interfaces,
    },
    Target {
        name: "networkd",
        files: NETWORKD,
        run: networkd,
    },
    Target {
        name: "udev",
        files: UDEV,
        run: udev,
    },
    Target {
        name: "default_grub",
        files: DEFAULT_GRUB,
        run: default_grub,
    },
    Target {
        name: "grub_cfg",
        files: GRUB_CFG,
        run: grub_cfg,
    },
    Target {
        name: "bls",
        files: BLS,
        run: bls,
    },
    Target {
        name: "grub_legacy",
        files: GRUB_LEGACY,
        run: grub_legacy,
    },
    Target {
        name: "modules_dep_alias",
        files: &[
            "modules.dep",
            "modules.alias",
            "modules.builtin",
            "modules.softdep",
            "config",
        ],
        run: modules_dep_alias,
    },
    Target {
        name: "cpio",
        files: &[],
        run: cpio,
    },
    Target {
        name: "partition",
        files: &[],
        run: partition,
    },
    Target {
        name: "superblock",
        files: &[],
        run: superblock,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

const STORAGE_CONF: &[&str] = &[
    "/etc/mdadm.conf",
    "/etc/lvm/lvm.conf",
    "/etc/lvm/devices/system.devices",
    "/etc/initramfs-tools/conf.d/resume",
    "/etc/dracut.conf.d/50-resume.conf",
    "/etc/fstab",
];
const IFCFG: &[&str] = &[
    "/etc/sysconfig/network-scripts/ifcfg-ens192",
    "/etc/sysconfig/network-scripts/route-ens192",
    "/etc/sysconfig/network-scripts/ifcfg-bond0",
    "/etc/sysconfig/network",
];
const KEYFILE: &[&str] = &[
    "/etc/NetworkManager/system-connections/ens192.nmconnection",
    "/etc/NetworkManager/system-connections/Wired connection 1.nmconnection",
    "/etc/NetworkManager/NetworkManager.conf",
];
const NETPLAN: &[&str] = &[
    "/etc/netplan/50-cloud-init.yaml",
    "/etc/netplan/ens224.yaml",
];
const INTERFACES: &[&str] = &[
    "/etc/network/interfaces",
    "/etc/network/interfaces.d/ens224",
    "/etc/network/interfaces.d/50-cloud-init.cfg",
];
const NETWORKD: &[&str] = &[
    "/etc/systemd/network/10-ens192.network",
    "/etc/systemd/network/10-ens192.link",
    "/etc/systemd/network/20-bond0.netdev",
];
const UDEV: &[&str] = &[
    "/etc/udev/rules.d/70-persistent-net.rules",
    "/etc/udev/rules.d/75-net-custom.rules",
];
const DEFAULT_GRUB: &[&str] = &[
    "/etc/default/grub",
    "/etc/default/grub.d/50-cloudimg-settings.cfg",
    "/etc/default/grub.d/40-force-partuuid.cfg",
];
const GRUB_CFG: &[&str] = &[
    "/boot/grub2/grub.cfg",
    "/boot/efi/EFI/redhat/grub.cfg",
    "/boot/linux-6.1.10-11.ph5.cfg",
    "/boot/systemd.cfg",
];
const BLS: &[&str] = &[
    "/boot/loader/entries/0123-6.1.0.conf",
    "/boot/grub2/grubenv",
    "/etc/kernel/cmdline",
    "/etc/default/grub",
];
const GRUB_LEGACY: &[&str] = &[
    "/boot/grub/grub.conf",
    "/boot/grub/device.map",
    "/boot/grub/menu.lst",
];

// ---------------------------------------------------------------------------
// The fixed context
// ---------------------------------------------------------------------------

/// The system configuration of every planner target.
pub const SYSTEM: &str = r#"{
  "version": 1,
  "migrationId": "mig-fuzz",
  "source": { "arch": "x86_64", "firmware": "bios", "osFamily": "rhel" },
  "target": { "firmware": "bios", "storageController": "pvscsi", "nicModel": "vmxnet3" },
  "options": { "renameInterfaces": true, "fstabIdentifiers": "uuid" }
}"#;

/// The replica disk map: a boot disk with /boot, an ESP and an LVM PV, a
/// data disk whose file system was re-created (new UUID).
pub const DISKS: &str = r#"{
  "version": 1,
  "disks": [
    { "sourceDevice": "/dev/sda", "target": { "controller": "scsi0", "unit": 0 },
      "boot": true,
      "partitions": [
        { "number": 1, "sourceDevice": "/dev/sda1", "fsType": "xfs", "label": "boot",
          "sourceUuid": "0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f",
          "targetUuid": "0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f", "mountPoint": "/boot" },
        { "number": 2, "sourceDevice": "/dev/sda2", "fsType": "vfat",
          "sourceUuid": "ABCD-1234", "mountPoint": "/boot/efi" },
        { "number": 3, "sourceDevice": "/dev/sda3", "fsType": "LVM2_member",
          "sourceUuid": "Xq3LcL-bD2u-7hGk-Qm1P-vR8s-Tn4w-Yz9AeF" },
        { "number": 4, "sourceDevice": "/dev/sda4", "fsType": "swap",
          "sourceUuid": "5ee1a0b0-0000-4000-8000-000000000004" }
      ] },
    { "sourceDevice": "/dev/sdb", "target": { "controller": "scsi0", "unit": 1 },
      "partitions": [
        { "number": 1, "sourceDevice": "/dev/sdb1", "fsType": "ext4", "label": "data",
          "sourceUuid": "5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40",
          "targetUuid": "7e57a9b1-0000-4c8e-9f27-3a1b2c4d5e6f", "mountPoint": "/data" }
      ] }
  ]
}"#;

/// The NIC map: ens192 → eth0, ens224 → eth1.
pub const NICS: &str = r#"{
  "version": 1,
  "interfaces": [
    { "sourceName": "ens192", "sourceMac": "52:54:00:12:34:56",
      "targetMac": "00:50:56:9a:00:01", "targetName": "eth0" },
    { "sourceName": "ens224", "sourceMac": "52:54:00:12:34:57",
      "targetMac": "00:50:56:9a:00:02" }
  ]
}"#;

/// The context's variants: (target firmware EFI, `fstabIdentifiers: keep`,
/// `renameInterfaces: false`).
type Variant = (bool, bool, bool);

/// The inputs of a variant (validated once).
pub fn inputs(efi: bool, keep: bool, no_rename: bool) -> &'static Inputs {
    static CACHE: OnceLock<Vec<Inputs>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        let mut v = Vec::new();
        for i in 0..8u8 {
            let (efi, keep, no_rename) = (i & 1 != 0, i & 2 != 0, i & 4 != 0);
            let mut system = SYSTEM.to_string();
            if efi {
                system = system.replace(
                    r#""target": { "firmware": "bios""#,
                    r#""target": { "firmware": "efi""#,
                );
            }
            if keep {
                system = system.replace(r#""uuid""#, r#""keep""#);
            }
            if no_rename {
                system = system.replace(
                    r#""renameInterfaces": true"#,
                    r#""renameInterfaces": false"#,
                );
            }
            let (inputs, _) =
                config::validate_inputs(system.as_bytes(), DISKS.as_bytes(), NICS.as_bytes())
                    .expect("the fuzz context's inputs are valid");
            v.push(inputs);
        }
        v
    });
    &all[usize::from(efi) | usize::from(keep) << 1 | usize::from(no_rename) << 2]
}

fn variant_inputs((efi, keep, no_rename): Variant) -> &'static Inputs {
    inputs(efi, keep, no_rename)
}

/// A guest of `family` with `bootloader`.
pub fn guest_info(family: OsFamily, bootloader: Bootloader) -> GuestInfo {
    let (os_id, version) = match family {
        OsFamily::Rhel if bootloader == Bootloader::Bls => ("rhel", "8.8"),
        OsFamily::Rhel if bootloader == Bootloader::GrubLegacy => ("rhel", "6.10"),
        OsFamily::Rhel => ("rhel", "7.9"),
        OsFamily::Suse => ("sles", "15.5"),
        OsFamily::Debian => ("ubuntu", "22.04"),
        OsFamily::Photon => ("photon", "5.0"),
        OsFamily::Unknown => ("unknown", "0"),
    };
    GuestInfo {
        os_id: os_id.into(),
        os_version: version.into(),
        pretty_name: format!("{os_id} {version}"),
        family,
        arch: "x86_64".into(),
        init_system: if bootloader == Bootloader::GrubLegacy {
            InitSystem::Upstart
        } else {
            InitSystem::Systemd
        },
        bootloader,
        firmware: FirmwareHint::Unknown,
        kernels: Vec::new(),
        root: None,
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `data` split at `0xFF` into at most `n` parts (the last keeps any
/// further `0xFF`).
pub fn split(data: &[u8], n: usize) -> Vec<&[u8]> {
    if n <= 1 {
        return vec![data];
    }
    data.splitn(n, |&b| b == 0xFF).collect()
}

/// An in-memory guest holding `parts` at `paths`, plus `extra` files.
fn guest(paths: &[&str], parts: &[&[u8]], extra: &[(&str, &str)]) -> MemFiles {
    let mut m = MemFiles::new();
    for (path, text) in extra {
        m = m.with(path, text);
    }
    for (path, data) in paths.iter().zip(parts) {
        m.files.insert(path.to_string(), data.to_vec());
    }
    m
}

/// What the executor would leave (on the in-memory guest), including what
/// the guest writer keeps: the first original of each changed file under
/// `data/backup/`, listed in `data/manifest.json` (a rerun reads them).
pub fn apply(files: &MemFiles, plan: &Plan) -> MemFiles {
    use crate::guestwrite::{Action, BACKUP_DIR, Change, MANIFEST, Manifest};
    let mut out = files.clone();
    let mut manifest: Manifest = out
        .files
        .get(MANIFEST)
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Manifest {
            version: 1,
            ..Manifest::default()
        });
    for e in &plan.edits {
        let (touched, new) = match e {
            Edit::Write { path, contents, .. } => (vec![path], Some(contents)),
            Edit::Remove { path } => (vec![path], None),
            Edit::Rename { from, .. } => (vec![from], None),
            Edit::Symlink { path, .. } => (vec![path], None),
            // Saved (once) like an edit; the bytes stay until a command runs.
            Edit::Preserve { path } => (vec![path], None),
        };
        for p in touched {
            let Some(orig) = out.files.get(p).cloned() else {
                continue;
            };
            if Some(&orig) == new || manifest.backup_of(p).is_some() {
                continue;
            }
            let backup = format!("{BACKUP_DIR}{p}");
            out.files.entry(backup.clone()).or_insert(orig);
            manifest.changes.push(Change {
                run: 0,
                step: String::new(),
                path: p.clone(),
                action: Action::Modified,
                backup: Some(backup),
                before: None,
                after: None,
            });
        }
        match e {
            Edit::Write { path, contents, .. } => {
                out.links.remove(path);
                out.files.insert(path.clone(), contents.clone());
            }
            Edit::Remove { path } => {
                out.files.remove(path);
            }
            Edit::Rename { from, to, contents } => {
                out.files.remove(from);
                out.links.remove(to);
                out.files.insert(to.clone(), contents.clone());
            }
            Edit::Symlink { path, target } => {
                out.files.remove(path);
                out.links.insert(path.clone(), target.clone());
            }
            Edit::Preserve { .. } => {}
        }
    }
    if !manifest.changes.is_empty() {
        let json = serde_json::to_vec(&manifest).unwrap_or_default();
        out.files.insert(MANIFEST.to_string(), json);
    }
    out
}

/// Whether `path` is a clean absolute guest path: `/`-rooted, no empty,
/// `.` or `..` component, no NUL, no trailing `/`.
pub fn is_clean_path(path: &str) -> bool {
    path.len() > 1
        && path.starts_with('/')
        && !path.contains('\0')
        && path[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Every path a plan writes is clean.
pub fn check_plan(what: &str, plan: &Plan) {
    for e in &plan.edits {
        for p in e.paths() {
            assert!(is_clean_path(p), "{what}: an edit names the path {p:?}");
        }
    }
}

fn text(files: &MemFiles, path: &str) -> Option<String> {
    files
        .files
        .get(path)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The comment lines (`#` first after blanks) of `before` are in `after`
/// at the same place, and no line was added or removed.
pub fn check_comments_kept(what: &str, before: &str, after: &str) {
    let a: Vec<&str> = before.split_inclusive('\n').collect();
    let b: Vec<&str> = after.split_inclusive('\n').collect();
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: the number of lines changed:\n--- before\n{before}\n--- after\n{after}"
    );
    for (x, y) in a.iter().zip(&b) {
        if x.trim_start().starts_with('#') {
            assert_eq!(x, y, "{what}: a comment line changed");
        }
    }
}

/// Plans with a fresh identity map (as a run does), on `files`.
fn plan_on(
    files: &MemFiles,
    info: &GuestInfo,
    inputs: &Inputs,
    planner: Planner,
) -> Result<Plan, crate::error::FixupError> {
    let (identity, _) = IdentityMap::build(inputs, &[], files);
    let ctx = PlanCtx {
        files,
        info,
        inputs,
        identity: &identity,
        stack_arch: "x86_64",
        boot_device: None,
    };
    planner(&ctx)
}

/// Plans, checks the plan, applies it and plans again: the second plan
/// must have no edits. Returns the guest after the first plan (`None`
/// when the planner refused the guest).
fn plan_twice(
    what: &str,
    files: &MemFiles,
    info: &GuestInfo,
    inputs: &Inputs,
    planner: Planner,
) -> Option<MemFiles> {
    let first = plan_on(files, info, inputs, planner).ok()?;
    check_plan(what, &first);
    let after = apply(files, &first);
    let second = match plan_on(&after, info, inputs, planner) {
        Ok(p) => p,
        Err(e) => panic!("{what}: the second run fails where the first did not: {e}"),
    };
    // A save of a file a command regenerates comes on every run; the
    // writer keeps the first original and changes nothing.
    let again: Vec<&Edit> = second
        .edits
        .iter()
        .filter(|e| !matches!(e, Edit::Preserve { .. }))
        .collect();
    if !again.is_empty() {
        let mut msg = format!("{what}: a second run changes the guest again:\n");
        for e in again {
            match e {
                Edit::Write { path, contents, .. } => {
                    let old = text(&after, path).unwrap_or_default();
                    let new = String::from_utf8_lossy(contents);
                    let diff = similar::TextDiff::from_lines(old.as_str(), &new);
                    msg.push_str(&format!(
                        "{}",
                        diff.unified_diff()
                            .header(&format!("{path} (first run)"), "(second run)")
                    ));
                }
                other => msg.push_str(&format!("second run: {other:?}\n")),
            }
        }
        panic!("{msg}");
    }
    Some(after)
}

fn as_text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

// ---------------------------------------------------------------------------
// config_json
// ---------------------------------------------------------------------------

/// Whether `name` is an interface name the protocol allows.
fn is_valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name != "."
        && name != ".."
}

/// The three input files (parts 1–3; a missing part is the valid
/// example). Rejected inputs: every error is a `config.*` error naming a
/// file. Accepted inputs: names and paths are what the protocol allows,
/// and the fstab and network planners on a fixed guest write only clean
/// paths.
pub fn config_json(data: &[u8]) {
    let parts = split(data, 3);
    let system = parts.first().copied().unwrap_or(SYSTEM.as_bytes());
    let disks = parts.get(1).copied().unwrap_or(DISKS.as_bytes());
    let nics = parts.get(2).copied().unwrap_or(NICS.as_bytes());
    let inputs = match config::validate_inputs(system, disks, nics) {
        Err((errors, _)) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.code.starts_with("config."), "not a config error: {e:?}");
                assert!(
                    [
                        config::SYSTEM_CONFIGURATION,
                        config::REPLICA_DISK_MAP,
                        config::NETWORK_INTERFACE_MAP
                    ]
                    .iter()
                    .any(|f| e.message.contains(f)),
                    "an error that names no file: {e:?}"
                );
            }
            return;
        }
        Ok((inputs, _)) => inputs,
    };
    let rename = inputs.system.options.rename_interfaces;
    let names = inputs.nics.effective_target_names(rename);
    for (nic, name) in inputs.nics.interfaces.iter().zip(&names) {
        assert!(is_valid_ifname(&nic.source_name), "accepted {nic:?}");
        assert!(is_valid_ifname(name), "accepted the target name {name:?}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        names.len(),
        "duplicate target names {names:?}"
    );
    for d in &inputs.disks.disks {
        assert!(d.source_device.starts_with("/dev/"), "accepted {d:?}");
        for p in &d.partitions {
            if let Some(m) = &p.mount_point {
                assert!(
                    m == "/" || is_clean_path(m),
                    "accepted the mount point {m:?}"
                );
            }
        }
    }
    // The accepted names and identities go into file names and files.
    let files = guest(
        &[],
        &[],
        &[
            (
                "/etc/fstab",
                "/dev/sda1 /boot xfs defaults 0 0\nUUID=5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40 /data ext4 defaults 0 2\n",
            ),
            (
                "/etc/sysconfig/network-scripts/ifcfg-ens192",
                "DEVICE=ens192\nHWADDR=52:54:00:12:34:56\nONBOOT=yes\n",
            ),
            (
                "/etc/NetworkManager/system-connections/ens224.nmconnection",
                "[connection]\nid=ens224\ninterface-name=ens224\n",
            ),
            (
                "/etc/systemd/network/10-ens192.network",
                "[Match]\nName=ens192\n",
            ),
            (
                "/etc/default/grub",
                "GRUB_CMDLINE_LINUX=\"root=/dev/sda1 ro\"\n",
            ),
        ],
    );
    let info = guest_info(OsFamily::Rhel, Bootloader::Grub2);
    for (what, planner) in [
        ("fstab", fixups::fstab::plan as Planner),
        ("network", fixups::network::plan as Planner),
        ("bootloader", fixups::bootloader::plan as Planner),
    ] {
        if let Ok(plan) = plan_on(&files, &info, &inputs, planner) {
            check_plan(what, &plan);
            for c in &plan.commands {
                for a in &c.argv {
                    assert!(!a.contains('\0'), "{what}: NUL in {:?}", c.argv);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Storage references
// ---------------------------------------------------------------------------

const VARIANTS: [Variant; 2] = [(false, false, false), (false, true, false)];

/// `/etc/fstab` through the storage planner, with `UUID=` and `keep`.
pub fn fstab(data: &[u8]) {
    storage_files(&["/etc/fstab"], &split(data, 1), true);
}

/// `/etc/crypttab` (and an fstab) through the storage planner.
pub fn crypttab(data: &[u8]) {
    storage_files(&["/etc/crypttab", "/etc/fstab"], &split(data, 2), true);
}

/// mdadm.conf, lvm.conf, the LVM devices file, the resume settings of
/// initramfs-tools and dracut (and an fstab).
pub fn storage_conf(data: &[u8]) {
    storage_files(STORAGE_CONF, &split(data, STORAGE_CONF.len()), false);
}

fn storage_files(paths: &[&str], parts: &[&[u8]], line_owned: bool) {
    let files = guest(paths, parts, &[]);
    let info = guest_info(OsFamily::Rhel, Bootloader::Grub2);
    for v in VARIANTS {
        let inputs = variant_inputs(v);
        let what = format!("storage ({v:?})");
        let Some(after) = plan_twice(&what, &files, &info, inputs, fixups::fstab::plan) else {
            continue;
        };
        if line_owned {
            for p in ["/etc/fstab", "/etc/crypttab"] {
                if let (Some(b), Some(a)) = (text(&files, p), text(&after, p)) {
                    check_comments_kept(p, &b, &a);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------

/// Runs the network planner twice on `paths` ← the input's parts; checks
/// comment lines of every rewritten file whose format keeps lines.
fn network_files(paths: &[&str], data: &[u8], family: OsFamily, keeps_lines: bool) {
    let parts = split(data, paths.len());
    let files = guest(paths, &parts, &[("/etc/cloud/cloud.cfg", "")]);
    let info = guest_info(family, Bootloader::Grub2);
    for v in [(false, false, false), (false, false, true)] {
        let inputs = variant_inputs(v);
        let what = format!("network ({v:?})");
        let Some(after) = plan_twice(&what, &files, &info, inputs, fixups::network::plan) else {
            panic!("the network planner refused a guest");
        };
        if keeps_lines {
            for p in paths {
                if let (Some(b), Some(a)) = (text(&files, p), text(&after, p)) {
                    check_comments_kept(p, &b, &a);
                }
            }
        }
    }
    // The format's rewriter alone is idempotent with a map of no swaps.
    let m = mapper();
    for (p, d) in paths.iter().zip(&parts) {
        let t = as_text(d);
        let once = rewrite_as(p, &t, &m).unwrap_or(t);
        assert_eq!(
            rewrite_as(p, &once, &m),
            None,
            "{p}: the rewrite of its own output changes it"
        );
    }
}

/// ens192 → eth0, ens224 → eth1 with their MACs.
fn mapper() -> fixups::network::text::Mapper {
    use fixups::network::text::{Mapper, Nic};
    let inputs = inputs(false, false, false);
    let nics = inputs
        .nics
        .interfaces
        .iter()
        .zip(inputs.effective_target_names())
        .map(|(i, target_name)| Nic {
            source_name: i.source_name.clone(),
            source_mac: i.source_mac,
            target_name,
            target_mac: i.target_mac,
        })
        .collect();
    Mapper::new(nics, true)
}

/// The rewrite of the format `path` is in.
fn rewrite_as(path: &str, text: &str, m: &fixups::network::text::Mapper) -> Option<String> {
    use fixups::network::{ifcfg, interfaces, keyfile, netplan, networkd, udev};
    let r = if path.contains("/network-scripts/") || path == "/etc/sysconfig/network" {
        ifcfg::rewrite(text, m)
    } else if path.starts_with("/etc/NetworkManager/") {
        keyfile::rewrite(text, m)
    } else if path.starts_with("/etc/netplan/") {
        netplan::rewrite(text, m)
    } else if path.starts_with("/etc/network/") {
        interfaces::rewrite(text, m)
    } else if path.starts_with("/etc/systemd/network/") {
        networkd::rewrite(text, m)
    } else {
        udev::rewrite(text, m)
    };
    r.text
}

/// RHEL's ifcfg, route and sysconfig/network files.
pub fn ifcfg(data: &[u8]) {
    network_files(IFCFG, data, OsFamily::Rhel, true);
}

/// NetworkManager keyfiles and NetworkManager.conf.
pub fn keyfile(data: &[u8]) {
    network_files(KEYFILE, data, OsFamily::Rhel, true);
}

/// netplan YAML (lines may only go where a source driver match was).
pub fn netplan(data: &[u8]) {
    network_files(NETPLAN, data, OsFamily::Debian, false);
}

/// `/etc/network/interfaces` and what it sources.
pub fn interfaces(data: &[u8]) {
    network_files(INTERFACES, data, OsFamily::Debian, true);
}

/// systemd-networkd units.
pub fn networkd(data: &[u8]) {
    network_files(NETWORKD, data, OsFamily::Debian, true);
}

/// udev rules (the persistent-net rules are regenerated as a whole).
pub fn udev(data: &[u8]) {
    let parts = split(data, UDEV.len());
    network_files(UDEV, data, OsFamily::Rhel, false);
    if let Some(custom) = parts.get(1) {
        let files = guest(UDEV, &parts, &[]);
        let info = guest_info(OsFamily::Rhel, Bootloader::Grub2);
        let inputs = variant_inputs((false, false, false));
        if let Ok(plan) = plan_on(&files, &info, inputs, fixups::network::plan) {
            let after = apply(&files, &plan);
            if let Some(a) = text(&after, UDEV[1]) {
                check_comments_kept(UDEV[1], &as_text(custom), &a);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Boot loader
// ---------------------------------------------------------------------------

fn bootloader_files(
    paths: &[&str],
    data: &[u8],
    info: &GuestInfo,
    variants: &[Variant],
    extra: &[(&str, &str)],
) {
    let parts = split(data, paths.len());
    let files = guest(paths, &parts, extra);
    for &v in variants {
        plan_twice(
            &format!("bootloader ({v:?})"),
            &files,
            info,
            variant_inputs(v),
            fixups::bootloader::plan,
        );
    }
}

/// GRUB's tools and modules, so that the planner takes the GRUB 2 path.
const GRUB2_TOOLS: &[(&str, &str)] = &[
    ("/usr/sbin/grub2-mkconfig", ""),
    ("/usr/sbin/grub2-install", ""),
    ("/usr/lib/grub/i386-pc/normal.mod", ""),
];

/// `/etc/default/grub` and its grub.d drop-ins (Ubuntu).
pub fn default_grub(data: &[u8]) {
    let info = guest_info(OsFamily::Debian, Bootloader::Grub2);
    bootloader_files(
        DEFAULT_GRUB,
        data,
        &info,
        &[(false, false, false), (false, false, true)],
        &[
            ("/usr/sbin/grub-mkconfig", ""),
            ("/usr/lib/grub/i386-pc/normal.mod", ""),
        ],
    );
    // The rewriter keeps every line it does not own, comments included.
    let parts = split(data, DEFAULT_GRUB.len());
    if let Some(first) = parts.first() {
        let before = as_text(first);
        let identity = IdentityMap::default();
        let opts = fixups::bootloader::cmdline::CmdlineOpts {
            map: &identity,
            rename_nics: true,
            add_nic_options: true,
            target_drivers: &["vmw_pvscsi", "vmxnet3"],
        };
        let r = fixups::bootloader::grub2::rewrite_default_grub(&before, &opts);
        // Lines are only added (after a line, or at the end): the comment
        // lines are found in order, unchanged.
        let body = |l: &str| l.trim_end_matches(['\n', '\r']).to_string();
        let after: Vec<String> = r.text.split_inclusive('\n').map(body).collect();
        let mut rest = after.iter();
        for x in before.split_inclusive('\n').map(body) {
            if x.trim_start().starts_with('#') {
                assert!(
                    rest.any(|y| *y == x),
                    "a comment line of /etc/default/grub changed or moved: {x:?}"
                );
            }
        }
    }
}

/// grub.cfg as the identity map, Photon's installer and the ESP stub see
/// it (RHEL on a UEFI target, Photon on BIOS).
pub fn grub_cfg(data: &[u8]) {
    let rhel = guest_info(OsFamily::Rhel, Bootloader::Grub2);
    bootloader_files(
        GRUB_CFG,
        data,
        &rhel,
        &[(true, false, false)],
        &[
            ("/usr/sbin/grub2-mkconfig", ""),
            ("/boot/efi/EFI/redhat/shimx64.efi", "shim"),
            ("/boot/efi/EFI/redhat/grubx64.efi", "grub"),
        ],
    );
    let photon = guest_info(OsFamily::Photon, Bootloader::Grub2);
    bootloader_files(
        GRUB_CFG,
        data,
        &photon,
        &[(false, false, false)],
        GRUB2_TOOLS,
    );
}

/// BLS entries, grubenv (binary, 1 KiB blocks) and /etc/kernel/cmdline.
pub fn bls(data: &[u8]) {
    let info = guest_info(OsFamily::Rhel, Bootloader::Bls);
    bootloader_files(
        BLS,
        data,
        &info,
        &[(false, false, false), (false, true, true)],
        GRUB2_TOOLS,
    );
}

/// GRUB legacy's grub.conf / menu.lst and device.map.
pub fn grub_legacy(data: &[u8]) {
    let info = guest_info(OsFamily::Rhel, Bootloader::GrubLegacy);
    bootloader_files(
        GRUB_LEGACY,
        data,
        &info,
        &[(false, false, false), (false, true, true)],
        &[],
    );
}

// ---------------------------------------------------------------------------
// Kernel modules
// ---------------------------------------------------------------------------

/// modules.dep, modules.alias, modules.builtin, modules.softdep and a
/// kernel config: the index, modalias matching, load orders, and the
/// initramfs step's view of the same files.
pub fn modules_dep_alias(data: &[u8]) {
    use crate::engine::fixups::initramfs::modules::KernelModules;
    use crate::kmod::{ModuleIndex, module_name};
    let parts = split(data, 5);
    let part = |i: usize| parts.get(i).map(|p| as_text(p));
    let (dep, alias, builtin, softdep, cfg) = (part(0), part(1), part(2), part(3), part(4));
    let index = ModuleIndex::parse(
        dep.as_deref().unwrap_or(""),
        alias.as_deref().unwrap_or(""),
        builtin.as_deref().unwrap_or(""),
        softdep.as_deref().unwrap_or(""),
    );
    let mut names: Vec<String> = dep
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(':').map(|(p, _)| module_name(p.trim())))
        .filter(|n| !n.is_empty())
        .take(64)
        .collect();
    names.extend(["vmw_pvscsi", "vmxnet3", "ext4", "fs-xfs"].map(String::from));
    for name in &names {
        if let Ok(order) = index.load_order(name) {
            let mut seen = std::collections::BTreeSet::new();
            for p in &order {
                assert!(seen.insert(p), "{name}: {p} twice in the load order");
            }
        }
        let _ = index.resolve(name);
    }
    for modalias in [
        "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc07i00",
        "pci:v000015ADd000007B0sv000015ADsd000007B0bc02sc00i00",
        "scsi:t-0x00",
        "acpi:PNP0A03:",
    ] {
        let _ = index.match_modalias(modalias);
    }
    let k = KernelModules::from_texts(
        "6.1.0-fuzz",
        dep.as_deref(),
        builtin.as_deref(),
        cfg.as_deref(),
    );
    for name in names.iter().take(16) {
        let _ = k.availability(name);
        let closure = k.closure(name);
        let mut sorted = closure.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            closure.len(),
            "{name}: a module twice in its closure"
        );
    }
}

// ---------------------------------------------------------------------------
// Binary formats
// ---------------------------------------------------------------------------

/// An initramfs image (leading cpio archives, a compressed main archive),
/// decompression capped at 1 MiB.
pub fn cpio(data: &[u8]) {
    use crate::engine::fixups::initramfs::{cpio, modules};
    if let Ok(entries) = cpio::list_image(data, 1 << 20) {
        for e in &entries {
            assert!(
                !e.name.starts_with('/'),
                "a name keeps its leading /: {e:?}"
            );
        }
        let _ = modules::modules_in_image(entries.iter().map(|e| e.name.as_str()), "6.1.0");
    }
}

/// A read-only view of `data` placed at byte `base` of a device of `len`
/// bytes (zeros elsewhere), so that a few KiB of input can stand for a
/// superblock at 64 KiB or a backup GPT header at the end of a disk.
pub struct Placed<'a> {
    base: u64,
    data: &'a [u8],
    len: u64,
    pos: u64,
}

impl<'a> Placed<'a> {
    pub fn new(base: u64, data: &'a [u8], len: u64) -> Self {
        Placed {
            base,
            data,
            len,
            pos: 0,
        }
    }
}

impl Read for Placed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let at = self.pos + i as u64;
            *b = at
                .checked_sub(self.base)
                .and_then(|o| usize::try_from(o).ok())
                .and_then(|o| self.data.get(o))
                .copied()
                .unwrap_or(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Placed<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// Sets the CRCs of a GPT header at `lba` and of its entry array (when
/// both lie in `img`), so that mutations get past the checksums.
pub fn fix_gpt_crcs(img: &mut [u8], lba: usize, sector: usize) {
    use crate::storage::partition::crc32;
    let h = lba * sector;
    let le32 = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let le64 = |b: &[u8], at: usize| {
        b.get(at..at + 8).map_or(0, |s| {
            u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
        })
    };
    if img.get(h..h + 8) != Some(b"EFI PART") {
        return;
    }
    let entries = le64(img, h + 72);
    let count = u64::from(le32(img, h + 80));
    let esize = u64::from(le32(img, h + 84));
    let start = usize::try_from(entries.saturating_mul(sector as u64)).unwrap_or(usize::MAX);
    let len = usize::try_from(count.saturating_mul(esize)).unwrap_or(usize::MAX);
    if h + sector > img.len() {
        return;
    }
    if let Some(array) = start.checked_add(len).and_then(|end| img.get(start..end)) {
        let c = crc32(array);
        img[h + 88..h + 92].copy_from_slice(&c.to_le_bytes());
    }
    let hsize = le32(img, h + 12) as usize;
    if (92..=sector).contains(&hsize) {
        img[h + 16..h + 20].fill(0);
        let c = crc32(&img[h..h + hsize]);
        img[h + 16..h + 20].copy_from_slice(&c.to_le_bytes());
    }
}

/// A partition table: the first byte picks the sector size (512 or 4096)
/// and the disk's size in sectors beyond the data; the rest is the disk's
/// start (read raw, and again with the GPT CRCs fixed).
pub fn partition(data: &[u8]) {
    use crate::storage::partition::read_partitions;
    let Some((&mode, disk)) = data.split_first() else {
        return;
    };
    let sector: u64 = if mode & 0x80 != 0 { 4096 } else { 512 };
    let extra = u64::from(mode & 0x7F) * sector;
    let len = disk.len() as u64 + extra;
    let mut fixed = disk.to_vec();
    fix_gpt_crcs(&mut fixed, 1, sector as usize);
    for img in [disk, &fixed[..]] {
        let mut dev = Placed::new(0, img, len);
        if let Ok(t) = read_partitions(&mut dev, len, sector) {
            for p in &t.partitions {
                assert!(p.number >= 1, "partition number 0: {p:?}");
                assert!(p.first_lba <= p.last_lba, "{p:?}");
                let _ = (p.start_bytes(sector), p.size_bytes(sector));
            }
            let mut numbers: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
            numbers.dedup();
            assert_eq!(numbers.len(), t.partitions.len(), "a number twice: {t:?}");
        }
    }
}

/// File system superblocks: the first byte places the rest at a multiple
/// of 512 bytes (up to 127 KiB), so that one input can be an ext
/// superblock at 1 KiB, an ISO 9660 descriptor at 32 KiB or a btrfs one
/// at 64 KiB; the second byte adds unreadable length (a device that ends
/// early).
pub fn superblock(data: &[u8]) {
    use crate::storage::probe::probe;
    let [shift, tail, rest @ ..] = data else {
        return;
    };
    let base = u64::from(*shift) * 512;
    let len = base + rest.len() as u64;
    let claimed = len + u64::from(*tail) * 4096;
    let mut dev = Placed::new(base, rest, len);
    let _ = probe(&mut dev, 0, claimed);
    let mut dev = Cursor::new(rest);
    let _ = probe(&mut dev, 0, rest.len() as u64);
    let mut dev = Placed::new(base, rest, len);
    let _ = probe(&mut dev, 512, len.saturating_sub(512));
}

// ---------------------------------------------------------------------------
// A deterministic mutator for the stable replay (no libFuzzer there)
// ---------------------------------------------------------------------------

/// A small deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Tokens the mutator inserts: separators, quoting, the context's names
/// and identities, numbers at the edges.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\xff",
    b" ",
    b"\t",
    b"#",
    b"=",
    b"\"",
    b"'",
    b"\\",
    b"$",
    b":",
    b",",
    b"[",
    b"]",
    b"{",
    b"}",
    b"/",
    b"../",
    b"\0",
    b"*",
    b"ens192",
    b"ens224",
    b"eth0",
    b"52:54:00:12:34:56",
    b"52-54-00-12-34-57",
    b"00:50:56:9a:00:01",
    b"/dev/sda1",
    b"/dev/sdb1",
    b"/dev/vda2",
    b"/dev/disk/by-uuid/",
    b"UUID=",
    b"LABEL=",
    b"PARTUUID=",
    b"0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f",
    b"5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40",
    b"root=",
    b"resume=",
    b"net.ifnames=0",
    b"console=ttyS0",
    b"GRUB_CMDLINE_LINUX=\"",
    b"kernelopts=",
    b"options ",
    b"kernel /vmlinuz ",
    b"source ",
    b"macaddress: ",
    b"name: ",
    b"ATTR{address}==\"",
    b"NAME=\"",
    b"0",
    b"-1",
    b"255",
    b"4294967295",
    b"18446744073709551615",
    b"070701",
    b"EFI PART",
    b"\x55\xaa",
    b"\xee",
];

/// One mutation of `data` (splicing in `other` sometimes), at most
/// `max_len` bytes.
pub fn mutate(rng: &mut Rng, data: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next_u64() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let tok = rng.pick(TOKENS);
                out.splice(i..i, tok.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                out.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let copy: Vec<u8> = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, copy);
            }
            5 if !other.is_empty() => {
                let i = rng.below(other.len());
                let n = 1 + rng.below((other.len() - i).min(512));
                let at = rng.below(len + 1);
                out.splice(at..at, other[i..i + n].iter().copied());
            }
            6 if len > 0 => {
                // A line swapped with another.
                let lines: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
                if lines.len() > 1 {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    let mut v: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                    v.swap(a, b);
                    out = v.concat();
                }
            }
            7 if len >= 4 => {
                // An interesting little-endian integer.
                let vals: [u32; 6] = [0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000, 512];
                let v = *rng.pick(&vals);
                let i = rng.below(len - 3);
                out[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            8 => {
                let i = rng.below(len + 1);
                let b = rng.next_u64() as u8;
                let n = 1 + rng.below(32);
                out.splice(i..i, std::iter::repeat_n(b, n));
            }
            _ if len > 0 => {
                out.truncate(rng.below(len));
            }
            _ => out.push(rng.next_u64() as u8),
        }
    }
    out.truncate(max_len);
    out
}

/// The bytes of a corpus file as the replay shows them in a failure.
pub fn describe_input(data: &[u8]) -> String {
    let mut s = String::new();
    for chunk in data.utf8_chunks() {
        s.push_str(&chunk.valid().escape_debug().to_string());
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_valid_and_has_no_chains() {
        for i in 0..8u8 {
            let inputs = inputs(i & 1 != 0, i & 2 != 0, i & 4 != 0);
            let (map, _) = IdentityMap::build(inputs, &[], &MemFiles::new());
            for (s, t) in map.pairs() {
                assert!(
                    map.rewrite(t).is_none_or(|u| u == t),
                    "{s} -> {t} -> {:?}",
                    map.rewrite(t)
                );
            }
        }
    }

    #[test]
    fn split_keeps_the_rest_in_the_last_part() {
        assert_eq!(split(b"a\xffb\xffc", 2), vec![&b"a"[..], &b"b\xffc"[..]]);
        assert_eq!(split(b"abc", 3), vec![&b"abc"[..]]);
        assert_eq!(split(b"", 1), vec![&b""[..]]);
    }

    #[test]
    fn clean_paths() {
        assert!(is_clean_path("/etc/fstab"));
        for p in [
            "",
            "/",
            "etc/x",
            "/etc/../x",
            "/etc//x",
            "/etc/./x",
            "/etc/",
            "/a\0b",
        ] {
            assert!(!is_clean_path(p), "{p:?}");
        }
    }

    #[test]
    fn placed_reads_zeros_around_the_data() {
        let mut p = Placed::new(4, b"ab", 8);
        let mut buf = Vec::new();
        p.read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"\0\0\0\0ab\0\0");
        p.seek(SeekFrom::Start(5)).unwrap();
        let mut one = [0u8; 1];
        p.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"b");
    }

    #[test]
    fn the_mutator_is_deterministic() {
        let a = mutate(&mut Rng::new(7), b"hello\nworld\n", b"other", 100);
        let b = mutate(&mut Rng::new(7), b"hello\nworld\n", b"other", 100);
        assert_eq!(a, b);
    }
}
