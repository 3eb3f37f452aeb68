//! Hostile input, end to end: input JSON with path-like names, NUL bytes,
//! over-long interface names, duplicate MACs, huge and deeply nested
//! documents, and special files in place of the inputs; guest trees whose
//! configuration files are symbolic links out of the root, FIFOs, device
//! nodes or huge files. Everything is refused or handled, nothing outside
//! the guest is written, and nothing hangs (every `fixupctl` runs under a
//! deadline).

#[allow(dead_code)]
mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Tree, diff, snapshot};
use osam_init::protocol::config;
use serde_json::{Value, json};

const FIXUPCTL: &str = env!("CARGO_BIN_EXE_fixupctl");

/// How long one `fixupctl` may take here (a debug build, a busy machine).
const DEADLINE: Duration = Duration::from_secs(60);

fn valid_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/protocol/valid")
}

fn read_valid(name: &str) -> Value {
    serde_json::from_slice(&fs::read(valid_dir().join(name)).unwrap()).unwrap()
}

/// A fixup directory with the valid example inputs.
fn fixup_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in fs::read_dir(valid_dir()).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    d
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `fixupctl` with `args`; a run past [`DEADLINE`] is killed and the
/// test fails (a hang).
fn fixupctl(args: &[OsString], run_dir: &Path) -> Run {
    let out = tempfile::tempdir().unwrap();
    let (so, se) = (out.path().join("stdout"), out.path().join("stderr"));
    let started = Instant::now();
    let mut child = Command::new(FIXUPCTL)
        .args(args)
        .env("OSAM_RUN_DIR", run_dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&so).unwrap())
        .stderr(fs::File::create(&se).unwrap())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "fixupctl {args:?} hung (killed after {DEADLINE:?}); stderr:\n{}",
                fs::read_to_string(&se).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: fs::read_to_string(&so).unwrap_or_default(),
        stderr: fs::read_to_string(&se).unwrap_or_default(),
        took: started.elapsed(),
    }
}

fn args(list: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    list.iter().map(|a| a.as_ref().to_os_string()).collect()
}

// ---------------------------------------------------------------------------
// Input JSON
// ---------------------------------------------------------------------------

/// Writes the valid inputs with `name` replaced by `bytes`, loads them,
/// and returns the errors (there must be some), quickly.
fn rejected(name: &str, bytes: &[u8]) -> Vec<osam_init::error::FixupError> {
    let d = fixup_dir();
    fs::write(d.path().join(name), bytes).unwrap();
    let started = Instant::now();
    let r = config::load_inputs(d.path());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{name}: validation took {:?}",
        started.elapsed()
    );
    match r {
        Ok(_) => panic!("{name}: accepted {}", String::from_utf8_lossy(bytes)),
        Err((errors, _)) => errors,
    }
}

/// The error naming `file` and the JSON path `path`, with a `config.` code.
fn assert_names(errors: &[osam_init::error::FixupError], file: &str, path: &str, what: &str) {
    assert!(
        errors.iter().all(|e| e.code.starts_with("config.")),
        "{what}: {errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains(file) && e.message.contains(path)),
        "{what}: no error names {file} {path}: {errors:#?}"
    );
}

/// Sets the value at a JSON pointer.
fn set(mut doc: Value, pointer: &str, v: Value) -> Vec<u8> {
    *doc.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = v;
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn path_like_names_nul_bytes_and_long_names_are_refused_with_file_and_path() {
    let sc = config::SYSTEM_CONFIGURATION;
    let rdm = config::REPLICA_DISK_MAP;
    let nim = config::NETWORK_INTERFACE_MAP;
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            nim,
            "/interfaces/0/sourceName",
            json!("../../etc/passwd"),
            "$.interfaces[0].sourceName",
        ),
        (
            nim,
            "/interfaces/0/sourceName",
            json!("/etc/shadow"),
            "$.interfaces[0].sourceName",
        ),
        (
            nim,
            "/interfaces/0/sourceName",
            json!("ens\u{0}192"),
            "$.interfaces[0].sourceName",
        ),
        (
            nim,
            "/interfaces/0/targetName",
            json!("eth0/../../x"),
            "$.interfaces[0].targetName",
        ),
        (
            nim,
            "/interfaces/0/targetName",
            json!("/"),
            "$.interfaces[0].targetName",
        ),
        (
            nim,
            "/interfaces/0/targetName",
            json!(".."),
            "$.interfaces[0].targetName",
        ),
        (
            nim,
            "/interfaces/0/targetName",
            json!("eth0\u{0}"),
            "$.interfaces[0].targetName",
        ),
        (
            nim,
            "/interfaces/0/targetName",
            json!("a234567890123456"),
            "$.interfaces[0].targetName",
        ),
        (
            nim,
            "/interfaces/1/sourceName",
            json!("x".repeat(4096)),
            "$.interfaces[1].sourceName",
        ),
        (
            nim,
            "/interfaces/1/sourceMac",
            json!("52:54:00:12:34:56"),
            "$.interfaces[1].sourceMac",
        ),
        (
            nim,
            "/interfaces/1/targetMac",
            json!("00-50-56-9A-00-01"),
            "$.interfaces[1].targetMac",
        ),
        (
            rdm,
            "/disks/0/sourceDevice",
            json!("/dev/../etc/shadow"),
            "$.disks[0].sourceDevice",
        ),
        (
            rdm,
            "/disks/0/sourceDevice",
            json!("/etc/fstab"),
            "$.disks[0].sourceDevice",
        ),
        (
            rdm,
            "/disks/0/sourceDevice",
            json!("/dev/sd\u{0}a"),
            "$.disks[0].sourceDevice",
        ),
        (
            rdm,
            "/disks/0/partitions/0/mountPoint",
            json!("/boot/../../etc"),
            "$.disks[0].partitions[0].mountPoint",
        ),
        (
            rdm,
            "/disks/0/partitions/0/mountPoint",
            json!("boot"),
            "$.disks[0].partitions[0].mountPoint",
        ),
        (
            rdm,
            "/disks/0/partitions/0/mountPoint",
            json!("/bo\u{0}ot"),
            "$.disks[0].partitions[0].mountPoint",
        ),
        (
            rdm,
            "/disks/0/partitions/0/sourceDevice",
            json!("/dev/sda1/../../x"),
            "$.disks[0].partitions[0].sourceDevice",
        ),
        (sc, "/migrationId", json!("../../tmp/x"), "$.migrationId"),
        (sc, "/migrationId", json!("a/b"), "$.migrationId"),
        (
            sc,
            "/options/extraInitramfsDrivers",
            json!(["../../lib/evil"]),
            "$.options.extraInitramfsDrivers[0]",
        ),
        (
            sc,
            "/options/extraInitramfsDrivers",
            json!(["/lib/modules/x.ko"]),
            "$.options.extraInitramfsDrivers[0]",
        ),
    ];
    for (file, pointer, v, path) in cases {
        let what = format!("{file} {pointer} = {v}");
        let errors = rejected(file, &set(read_valid(file), pointer, v));
        assert_names(&errors, file, path, &what);
    }
}

#[test]
fn huge_deep_and_binary_documents_are_refused_fast() {
    let sc = config::SYSTEM_CONFIGURATION;
    // Over the 1 MiB cap: refused by size, before parsing.
    let mut big = b"{\"version\": 1, \"pad\": \"".to_vec();
    big.resize((1 << 20) + 10, b'x');
    big.extend_from_slice(b"\"}");
    let e = rejected(sc, &big);
    assert!(
        e.iter()
            .any(|e| e.code == "config.too_large" && e.message.contains(sc)),
        "{e:#?}"
    );

    // Deep nesting: 10,000 levels of arrays, of objects, and unclosed.
    for doc in [
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)),
        "[".repeat(100_000),
        format!(
            "{{\"version\":1,\"migrationId\":\"m\",\"x\":{}}}",
            "[".repeat(50_000)
        ),
    ] {
        let e = rejected(sc, doc.as_bytes());
        assert_names(&e, sc, "", "deep nesting");
        assert!(
            e.iter()
                .any(|e| e.message.contains("nest") || e.message.contains("line")),
            "{e:#?}"
        );
    }

    // A NUL byte, invalid UTF-8, a byte order mark and nothing else.
    for bytes in [
        &b"{\"version\":1\0}"[..],
        b"{\"version\":\xff}",
        b"\xef\xbb\xbf",
        b"",
    ] {
        let e = rejected(sc, bytes);
        assert_names(&e, sc, "", "binary");
    }
}

#[test]
fn a_sparse_terabyte_input_is_not_read() {
    let d = fixup_dir();
    let f = fs::File::create(d.path().join(config::REPLICA_DISK_MAP)).unwrap();
    f.set_len(1 << 40).unwrap();
    let started = Instant::now();
    let Err((e, _)) = config::load_inputs(d.path()) else {
        panic!("accepted");
    };
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        e.iter()
            .any(|e| e.code == "config.too_large" && e.message.contains(config::REPLICA_DISK_MAP)),
        "{e:#?}"
    );
}

#[test]
fn special_files_as_inputs_never_block() {
    for kind in ["fifo", "dir", "link to /dev/zero", "dangling link"] {
        let d = fixup_dir();
        let p = d.path().join(config::NETWORK_INTERFACE_MAP);
        fs::remove_file(&p).unwrap();
        match kind {
            "fifo" => {
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
            }
            "dir" => fs::create_dir(&p).unwrap(),
            "link to /dev/zero" => symlink("/dev/zero", &p).unwrap(),
            _ => symlink("/nonexistent/osam", &p).unwrap(),
        }
        let run = tempfile::tempdir().unwrap();
        let r = fixupctl(&args(&[&"validate", &"--fixup-dir", &d.path()]), run.path());
        assert_eq!(r.code, Some(1), "{kind}: {}", r.stderr);
        assert!(
            r.stderr.contains(config::NETWORK_INTERFACE_MAP),
            "{kind}: {}",
            r.stderr
        );
        assert!(r.took < Duration::from_secs(20), "{kind}: {:?}", r.took);
    }
}

// ---------------------------------------------------------------------------
// Guest trees
// ---------------------------------------------------------------------------

/// A Debian 12 tree that every step changes (fstab, interfaces, an ifcfg
/// file, /etc/default/grub), as `fixupctl run --no-commands` sees it.
fn debian_tree(root: &Path) {
    let t = Tree::new(root);
    t.file(
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"12\"\nID=debian\n",
    )
    .file("etc/debian_version", "12.8\n")
    .file("etc/fstab", "/dev/sda1 / ext4 errors=remount-ro 0 1\n")
    .file("boot/grub/grub.cfg", "menuentry 'Debian' {}\n")
    .file("boot/vmlinuz-6.1.0-50-amd64", "")
    .file(
        "lib/modules/6.1.0-50-amd64/modules.dep",
        "kernel/drivers/scsi/vmw_pvscsi.ko:\nkernel/drivers/scsi/sd_mod.ko:\n\
         kernel/fs/ext4/ext4.ko:\nkernel/drivers/net/vmxnet3/vmxnet3.ko:\n\
         kernel/drivers/md/dm-mod.ko:\n",
    )
    .file("etc/initramfs-tools/initramfs.conf", "MODULES=list\n")
    .tools(&[
        "usr/sbin/update-initramfs",
        "usr/sbin/mkinitramfs",
        "usr/sbin/grub-install",
        "usr/sbin/grub-mkconfig",
        "lib/systemd/systemd",
    ])
    .file(
        "etc/default/grub",
        "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n",
    )
    .file(
        "etc/network/interfaces",
        "auto lo\niface lo inet loopback\n\nallow-hotplug ens192\niface ens192 inet dhcp\n",
    )
    .file(
        "etc/sysconfig/network-scripts/ifcfg-ens192",
        "DEVICE=ens192\nHWADDR=52:54:00:12:34:56\nONBOOT=yes\n",
    );
}

/// What each configuration file would have (as the outside file's text, so
/// that a write through a link would change it).
const CONFIGS: &[(&str, &str)] = &[
    ("etc/fstab", "/dev/sda1 / ext4 errors=remount-ro 0 1\n"),
    (
        "etc/network/interfaces",
        "allow-hotplug ens192\niface ens192 inet dhcp\n",
    ),
    (
        "etc/sysconfig/network-scripts/ifcfg-ens192",
        "DEVICE=ens192\nHWADDR=52:54:00:12:34:56\n",
    ),
    (
        "etc/default/grub",
        "GRUB_CMDLINE_LINUX=\"root=/dev/sda1\"\n",
    ),
    ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
];

/// Files stage 1 creates (a `.link` file, the udev rules, its manifest):
/// a link there must not make it write outside either.
const CREATED: &[(&str, &str)] = &[
    ("etc/systemd/network/10-osam-eth0.link", "# outside\n"),
    ("etc/udev/rules.d/70-persistent-net.rules", "# outside\n"),
    ("opt/vmware/hcx/osam/data/manifest.json", "{}\n"),
    ("opt/vmware/hcx/osam/data/backup/etc/fstab", "# outside\n"),
];

/// One hostile object put where a configuration file should be.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    /// An absolute link to a host file outside the root.
    LinkAbsolute,
    /// A link climbing out with `..` (`/../../../..<host path>`).
    LinkDotDot,
    /// The file's directory is a link to a host directory outside.
    DirLink,
    Fifo,
    /// A character device (the host's /dev/zero: 1,5), root only.
    CharDevice,
    /// A block device (a loop device number), root only.
    BlockDevice,
    /// 100 MB, sparse.
    Huge,
}

struct Outcome {
    result: Value,
    code: Option<i32>,
}

/// Builds the tree, puts `h` at `path`, runs stage 1 without commands
/// and then undo; checks that the outside stayed as it was, that the
/// hostile object is still there unchanged, that the run ended with a
/// result (success, or a `guest.*` error) and that undo restored every
/// regular file.
fn run_hostile(path: &str, text: &str, h: Hostile) -> Option<Outcome> {
    let sysroot = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let fixup = fixup_dir();
    let run_dir = tempfile::tempdir().unwrap();
    let root = sysroot.path();
    debian_tree(root);
    let target = root.join(path);
    let _ = fs::remove_file(&target);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    // The outside file (what a write through would change).
    let out_dir = outside.path().join("dir");
    fs::create_dir_all(&out_dir).unwrap();
    let name = Path::new(path).file_name().unwrap();
    let out_file = out_dir.join(name);
    fs::write(&out_file, text).unwrap();
    match h {
        Hostile::LinkAbsolute => symlink(&out_file, &target).unwrap(),
        Hostile::LinkDotDot => {
            let up = "../".repeat(64);
            symlink(format!("/{up}{}", out_file.display()), &target).unwrap();
        }
        Hostile::DirLink => {
            let dir = target.parent().unwrap();
            fs::remove_dir_all(dir).unwrap();
            symlink(&out_dir, dir).unwrap();
            if !CONFIGS.iter().any(|(p, _)| *p == path) {
                // A file stage 1 would create: not there beforehand.
                fs::remove_file(&out_file).unwrap();
            }
        }
        Hostile::Fifo => {
            nix::unistd::mkfifo(&target, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
        }
        Hostile::CharDevice | Hostile::BlockDevice => {
            if !nix::unistd::geteuid().is_root() {
                eprintln!("skipped: mknod needs root");
                return None;
            }
            let (kind, dev) = match h {
                Hostile::CharDevice => (
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::makedev(1, 5),
                ),
                _ => (
                    nix::sys::stat::SFlag::S_IFBLK,
                    nix::sys::stat::makedev(7, 200),
                ),
            };
            if let Err(e) = nix::sys::stat::mknod(
                &target,
                kind,
                nix::sys::stat::Mode::from_bits_truncate(0o644),
                dev,
            ) {
                eprintln!("skipped: mknod: {e}");
                return None;
            }
        }
        Hostile::Huge => {
            let f = fs::File::create(&target).unwrap();
            f.set_len(100 << 20).unwrap();
        }
    }
    let outside_before = snapshot(outside.path());
    let out_meta = fs::metadata(&out_file).ok();
    let before = snapshot(root);
    let target_before = fs::symlink_metadata(&target).ok();

    let r = fixupctl(
        &args(&[
            &"run",
            &"--no-commands",
            &"--sysroot",
            &root,
            &"--fixup-dir",
            &fixup.path(),
        ]),
        run_dir.path(),
    );
    let what = format!("{path} as {h:?}");
    eprintln!("{what}: exit {:?} in {:?}", r.code, r.took);
    // Never written through: the outside is as it was, to the inode.
    assert_eq!(
        diff(&outside_before, &snapshot(outside.path())),
        Vec::<String>::new(),
        "{what}"
    );
    let key = |m: fs::Metadata| (m.ino(), m.mtime(), m.mtime_nsec(), m.len());
    assert_eq!(
        fs::metadata(&out_file).ok().map(key),
        out_meta.map(key),
        "{what}: the outside file was touched"
    );
    // The hostile object is still what it was (stage 1's own files may
    // replace a link in its data directory: they are not the guest's).
    if let Some(b) = target_before
        .as_ref()
        .filter(|_| !path.starts_with(common::OSAM_DATA))
    {
        let a = fs::symlink_metadata(&target)
            .unwrap_or_else(|e| panic!("{what}: it is gone after the run: {e}"));
        assert_eq!(a.file_type(), b.file_type(), "{what}");
        assert_eq!(a.ino(), b.ino(), "{what}: replaced");
        if matches!(h, Hostile::Fifo) {
            assert!(a.file_type().is_fifo());
        }
    }
    let result: Value = serde_json::from_slice(
        &fs::read(fixup.path().join("result.json"))
            .unwrap_or_else(|e| panic!("{what}: no result.json ({e}); {}", r.stderr)),
    )
    .unwrap();
    assert!(fixup.path().join("END").exists(), "{what}");
    eprintln!("  {}: errors {}", result["status"], result["errors"]);
    match result["status"].as_str() {
        Some("success") => {
            assert_eq!(r.code, Some(0), "{what}: {}", r.stderr);
            // A success ran every step (regression: a change manifest that
            // could not be opened ended the run as a success after detect).
            assert_eq!(result["steps"].as_array().unwrap().len(), 9, "{what}");
        }
        Some("failed") => {
            assert_eq!(r.code, Some(1), "{what}: {}", r.stderr);
            for e in result["errors"].as_array().unwrap() {
                let code = e["code"].as_str().unwrap();
                assert!(
                    code.starts_with("guest."),
                    "{what}: error {e} (want guest.io / guest.unsafe_path / …)"
                );
            }
        }
        other => panic!("{what}: status {other:?}"),
    }
    // Undo restores every regular file and link of the guest.
    let u = fixupctl(&args(&[&"undo", &"--sysroot", &root]), run_dir.path());
    assert!(
        matches!(u.code, Some(0) | Some(1)),
        "{what}: undo: {} {}",
        u.stdout,
        u.stderr
    );
    assert_eq!(
        diff(&before, &snapshot(root)),
        Vec::<String>::new(),
        "{what}: after undo"
    );
    assert_eq!(
        diff(&outside_before, &snapshot(outside.path())),
        Vec::<String>::new(),
        "{what}"
    );
    Some(Outcome {
        result,
        code: r.code,
    })
}

fn errors_and_warnings(o: &Outcome) -> String {
    format!("{}\n{}", o.result["errors"], o.result["warnings"])
}

#[test]
fn links_out_of_the_root_are_never_written_through() {
    for h in [Hostile::LinkAbsolute, Hostile::LinkDotDot, Hostile::DirLink] {
        for (path, text) in CONFIGS {
            if matches!(h, Hostile::DirLink) && path.starts_with("etc/os") {
                continue;
            }
            run_hostile(path, text, h);
        }
    }
}

#[test]
fn links_where_stage_1_creates_files_are_never_written_through() {
    for h in [Hostile::LinkAbsolute, Hostile::LinkDotDot, Hostile::DirLink] {
        for (path, text) in CREATED {
            let o = run_hostile(path, text, h).unwrap();
            if path.starts_with("etc/") {
                assert_eq!(o.code, Some(1), "{path} as {h:?}");
            }
        }
    }
    // Found here: the data directory a link out of the root, the change
    // manifest cannot be opened; the run used to end as a success after
    // detection, having changed nothing.
    let o = run_hostile(CREATED[2].0, CREATED[2].1, Hostile::DirLink).unwrap();
    assert_eq!(o.code, Some(1));
    let e = &o.result["errors"][0];
    assert_eq!(e["code"], "guest.io", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("change manifest"),
        "{e}"
    );
}

#[test]
fn fifos_where_configs_should_be_do_not_hang_the_run() {
    for (path, text) in CONFIGS {
        let o = run_hostile(path, text, Hostile::Fifo).unwrap();
        // Every FIFO is reported: as the failure, or a warning.
        let said = errors_and_warnings(&o);
        let file = path.rsplit('/').next().unwrap();
        assert!(
            said.contains(file) || said.contains("FIFO") || said.contains("fifo"),
            "{path}: not reported: {said}"
        );
        if *path == "etc/fstab" {
            assert_eq!(o.code, Some(1));
            assert_eq!(o.result["errors"][0]["code"], "guest.io", "{said}");
        }
    }
}

#[test]
fn device_nodes_where_configs_should_be_are_refused() {
    for h in [Hostile::CharDevice, Hostile::BlockDevice] {
        for (path, text) in CONFIGS {
            let Some(o) = run_hostile(path, text, h) else {
                return;
            };
            let said = errors_and_warnings(&o);
            let file = path.rsplit('/').next().unwrap();
            assert!(said.contains(file), "{path} as {h:?}: not reported: {said}");
        }
    }
}

#[test]
fn huge_config_files_are_refused_not_read() {
    for (path, text) in CONFIGS {
        let started = Instant::now();
        let o = run_hostile(path, text, Hostile::Huge).unwrap();
        let said = errors_and_warnings(&o);
        let file = path.rsplit('/').next().unwrap();
        assert!(said.contains(file), "{path}: not reported: {said}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{path}: {:?}",
            started.elapsed()
        );
    }
}
