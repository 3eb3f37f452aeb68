//! Storage tests on real file systems (root only): disk images are built
//! at test time (`truncate`, `sfdisk`: GPT, and MBR with an extended
//! partition; ext4, xfs, btrfs with `@`/`@home` subvolumes, vfat), attached
//! with `losetup -P`, and the guest on them is mounted with
//! `pid1::sysroot::mount_guest`, read-write and read-only, exactly as PID 1
//! does on replica disks. Read-only must leave the images byte for byte
//! as they were (every allocated extent compared before and after), and
//! writes must fail with EROFS.
//!
//! Skipped, with the reason printed, when not root or a tool is missing.
//! (This machine's kernel has no device-mapper: LVM and md are unit-tested
//! with a recording runner and in the QEMU tests.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use osam_init::engine::identity::ProbedFs;
use osam_init::error::codes;
use osam_init::pid1::guest::probed_from_facts;
use osam_init::pid1::sysroot::{
    MapHints, MountKind, MountOptions, MountedGuest, MultipleRoots, mount_guest,
};
use osam_init::runner::RecordingRunner;
use osam_init::storage::assemble::LogCtx;
use osam_init::storage::devlinks::{self, DiskFacts};
use osam_init::storage::discover::Disk;

const TOOLS: &[&str] = &[
    "truncate",
    "sfdisk",
    "losetup",
    "mount",
    "umount",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkfs.btrfs",
    "mkfs.vfat",
    "btrfs",
];

const U_ROOT: &str = "5f0c7a1e-0b0e-4d8e-9b7a-2c1d3e4f5a60";
const U_BOOT: &str = "7a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c80";
const U_DATA: &str = "9c8b7a6d-5e4f-4321-8abc-def012345678";
const U_LOGS: &str = "1e2d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b";
const U_SPARE: &str = "2f3e4d5c-6b7a-4899-8a1b-2c3d4e5f6a7c";
const VFAT_ID: &str = "1234ABCD";
const VFAT_UUID: &str = "1234-ABCD";

/// `losetup -f` is not atomic between two callers: one at a time.
static ATTACH: Mutex<()> = Mutex::new(());

fn have(tool: &str) -> bool {
    [
        "/usr/sbin",
        "/sbin",
        "/usr/bin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .any(|d| Path::new(d).join(tool).exists())
}

fn kernel_has(fs: &str) -> bool {
    fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs))
}

/// Why this machine cannot run the tests, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if let Some(t) = TOOLS.iter().find(|t| !have(t)) {
        return Some(format!("{t} is not installed"));
    }
    if let Some(f) = ["ext4", "xfs", "btrfs"].iter().find(|f| !kernel_has(f)) {
        return Some(format!("the kernel does not support {f}"));
    }
    None
}

macro_rules! skip_unless_able {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// Runs a command that must succeed; returns its stdout.
fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh_stdin(args: &[&str], input: &str) {
    use std::io::Write;
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Loop devices attached by a test, detached on drop (also on panic).
#[derive(Default)]
struct Loops(Vec<String>);

impl Loops {
    /// Attaches an image with partition scanning; returns the kernel name
    /// (`loop3`) once its partitions have nodes.
    fn attach(&mut self, img: &Path, partitions: usize) -> String {
        let dev = {
            let _one = ATTACH.lock().unwrap_or_else(|p| p.into_inner());
            sh(&["losetup", "-P", "--show", "-f", &img.display().to_string()])
                .trim()
                .to_string()
        };
        self.0.push(dev.clone());
        let name = dev.trim_start_matches("/dev/").to_string();
        let mut parts = wait_partitions(&name, partitions, Duration::from_secs(3));
        if parts.len() < partitions {
            // A kernel without this table's partition parser: add them
            // through BLKPG.
            sh(&["partx", "-a", &dev]);
            parts = wait_partitions(&name, partitions, Duration::from_secs(5));
        }
        assert!(
            parts.len() >= partitions,
            "{dev}: partitions {parts:?}, expected {partitions}"
        );
        for p in &parts {
            make_node(p);
        }
        name
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for d in self.0.drain(..).rev() {
            let _ = Command::new("losetup").args(["-d", &d]).status();
        }
    }
}

/// The partitions of a loop device in sysfs, waiting for `n` of them.
fn wait_partitions(name: &str, n: usize, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let mut parts: Vec<String> = fs::read_dir(format!("/sys/block/{name}"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|f| f.starts_with(&format!("{name}p")))
                    .collect()
            })
            .unwrap_or_default();
        parts.sort();
        if parts.len() >= n || start.elapsed() >= limit {
            return parts;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No udev here: makes `/dev/<part>` from sysfs's `dev` when devtmpfs has
/// not.
fn make_node(part: &str) {
    let node = Path::new("/dev").join(part);
    let start = Instant::now();
    while !node.exists() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if node.exists() {
        return;
    }
    let base = fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .map(|e| e.path().join(part))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{part} is not in sysfs"));
    let dev = fs::read_to_string(base.join("dev")).unwrap();
    let (ma, mi) = dev.trim().split_once(':').unwrap();
    sh(&["mknod", &node.display().to_string(), "b", ma, mi]);
}

/// A mount made while building an image, undone on drop.
struct TmpMount(PathBuf);

impl TmpMount {
    fn new(dev: &str, at: &Path) -> TmpMount {
        fs::create_dir_all(at).unwrap();
        sh(&["mount", dev, &at.display().to_string()]);
        TmpMount(at.to_path_buf())
    }
}

impl Drop for TmpMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A mounted guest, unmounted on drop (also on panic).
struct Guest(Option<MountedGuest>);

impl Guest {
    fn get(&self) -> &MountedGuest {
        self.0.as_ref().unwrap()
    }

    fn unmount(&mut self) -> Vec<String> {
        self.0.take().map(|mut g| g.unmount()).unwrap_or_default()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// The allocated extents of an image file with their bytes (holes read
/// as zeros and are skipped: a write that fills one shows as a new
/// extent). Cheaper than hashing the whole sparse file.
fn extents(path: &Path) -> Vec<(u64, Vec<u8>)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).unwrap();
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut off: libc::off_t = 0;
    loop {
        // SAFETY: `fd` is open (`f` lives to the end of the function);
        // lseek only moves the file offset.
        let data = unsafe { libc::lseek(fd, off, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no data after `off`
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        assert!(hole > data, "{}: SEEK_HOLE", path.display());
        let mut buf = vec![0u8; usize::try_from(hole - data).unwrap()];
        f.read_exact_at(&mut buf, u64::try_from(data).unwrap())
            .unwrap();
        out.push((u64::try_from(data).unwrap(), buf));
        off = hole;
    }
    out
}

/// The first offset where two extent lists differ.
fn first_difference(a: &[(u64, Vec<u8>)], b: &[(u64, Vec<u8>)]) -> Option<u64> {
    for (x, y) in a.iter().zip(b) {
        if x.0 != y.0 {
            return Some(x.0.min(y.0));
        }
        if let Some(i) = x.1.iter().zip(&y.1).position(|(p, q)| p != q) {
            return Some(x.0 + i as u64);
        }
        if x.1.len() != y.1.len() {
            return Some(x.0 + x.1.len().min(y.1.len()) as u64);
        }
    }
    (a.len() != b.len()).then(|| a.len().min(b.len()) as u64)
}

/// What the stack would probe on these loop devices, as PID 1 builds it
/// for replica disks (disk index = position in `loops`).
fn probe_loops(loops: &[&str]) -> Vec<ProbedFs> {
    let disks: Vec<Disk> = loops
        .iter()
        .map(|name| {
            let sectors: u64 = fs::read_to_string(format!("/sys/block/{name}/size"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            Disk {
                name: name.to_string(),
                address: None,
                pci: None,
                driver: None,
                size_bytes: sectors * 512,
                dev: None,
                removable: false,
                read_only: false,
            }
        })
        .collect();
    let facts = devlinks::facts_from_sysfs(Path::new("/sys"), Path::new("/dev"), &disks);
    for f in &facts {
        assert!(f.warnings.is_empty(), "{}: {:?}", f.name, f.warnings);
    }
    let indexed: Vec<(usize, &DiskFacts)> = facts.iter().enumerate().collect();
    probed_from_facts(&indexed)
}

fn mountinfo_options(target: &Path) -> Option<String> {
    let want = target.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .and_then(|l| l.split(' ').nth(5).map(str::to_string))
}

fn is_mounted_below(dir: &Path) -> bool {
    let d = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == d || mp.starts_with(&format!("{d}/")))
}

fn read_only_flag(part: &str) -> String {
    let base = fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .map(|e| e.path().join(part))
        .find(|p| p.exists())
        .unwrap();
    fs::read_to_string(base.join("ro"))
        .unwrap()
        .trim()
        .to_string()
}

/// Disk 1, GPT: ESP (vfat), /boot (ext4), btrfs with `@` (the root) and
/// `@home`. Disk 2, MBR: /data (xfs, primary), an extended partition with
/// /var/log (ext4) and a spare ext4 the guest does not mount.
fn build_guest(dir: &Path, loops: &mut Loops) -> (String, String) {
    let img1 = dir.join("disk1.img");
    let img2 = dir.join("disk2.img");
    sh(&["truncate", "-s", "512M", &img1.display().to_string()]);
    sh(&["truncate", "-s", "512M", &img2.display().to_string()]);
    sh_stdin(
        &["sfdisk", "-q", &img1.display().to_string()],
        "label: gpt\nsize=40MiB, type=uefi, name=EFI\nsize=64MiB, type=linux, name=boot\n\
         type=linux, name=root\n",
    );
    sh_stdin(
        &["sfdisk", "-q", &img2.display().to_string()],
        "label: dos\nsize=320MiB, type=83\ntype=5\nsize=48MiB, type=83\nsize=48MiB, type=83\n",
    );
    let d1 = loops.attach(&img1, 3);
    let d2 = loops.attach(&img2, 4);
    let p = |d: &str, n: u32| format!("/dev/{d}p{n}");
    sh(&["mkfs.vfat", "-n", "EFI", "-i", VFAT_ID, &p(&d1, 1)]);
    sh(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "boot",
        "-U",
        U_BOOT,
        &p(&d1, 2),
    ]);
    sh(&[
        "mkfs.btrfs",
        "-q",
        "-f",
        "-L",
        "root",
        "-U",
        U_ROOT,
        &p(&d1, 3),
    ]);
    sh(&[
        "mkfs.xfs",
        "-q",
        "-f",
        "-L",
        "data",
        "-m",
        &format!("uuid={U_DATA}"),
        &p(&d2, 1),
    ]);
    sh(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "logs",
        "-U",
        U_LOGS,
        &p(&d2, 5),
    ]);
    sh(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "spare",
        "-U",
        U_SPARE,
        &p(&d2, 6),
    ]);

    let m = dir.join("m");
    {
        let _t = TmpMount::new(&p(&d1, 3), &m);
        sh(&[
            "btrfs",
            "subvolume",
            "create",
            &m.join("@").display().to_string(),
        ]);
        sh(&[
            "btrfs",
            "subvolume",
            "create",
            &m.join("@home").display().to_string(),
        ]);
        let root = m.join("@");
        write(
            &root.join("etc/fstab"),
            &format!(
                "# a test guest\n\
                 UUID={U_ROOT} / btrfs subvol=@,defaults 0 0\n\
                 UUID={U_ROOT} /home btrfs subvol=@home 0 0\n\
                 LABEL=boot /boot ext4 defaults 0 2\n\
                 UUID={VFAT_UUID} /boot/efi vfat umask=0077 0 1\n\
                 /dev/disk/by-uuid/{U_DATA} /data xfs defaults 0 0\n\
                 LABEL=logs /var/log ext4 defaults 0 0\n\
                 /data/www /srv/www none bind 0 0\n\
                 server:/export /mnt/nfs nfs defaults 0 0\n\
                 /dev/sdz9 none swap sw 0 0\n\
                 LABEL=spare /spare ext4 noauto 0 0\n"
            ),
        );
        write(
            &root.join("etc/os-release"),
            "NAME=\"Test Linux\"\nID=testlinux\nVERSION_ID=\"1\"\n",
        );
        for d in [
            "boot", "home", "data", "var/log", "srv/www", "mnt/nfs", "dev", "proc", "sys", "run",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        write(&m.join("@home/user/.profile"), "export TEST=1\n");
    }
    {
        let _t = TmpMount::new(&p(&d1, 2), &m);
        fs::create_dir_all(m.join("efi")).unwrap();
        write(&m.join("vmlinuz-6.1.0-test"), "kernel\n");
    }
    if kernel_has("vfat") {
        let _t = TmpMount::new(&p(&d1, 1), &m);
        write(&m.join("EFI/BOOT/BOOTX64.EFI"), "efi\n");
    }
    {
        let _t = TmpMount::new(&p(&d2, 1), &m);
        write(&m.join("www/index.html"), "<p>hello</p>\n");
    }
    {
        let _t = TmpMount::new(&p(&d2, 5), &m);
        write(&m.join("marker"), "logs\n");
    }
    (d1, d2)
}

#[test]
fn mounts_a_two_disk_guest_read_write_then_read_only() {
    skip_unless_able!();
    let tmp = tempfile::tempdir().unwrap();
    let mut loops = Loops::default();
    let (d1, d2) = build_guest(tmp.path(), &mut loops);
    let vfat = kernel_has("vfat");
    if !vfat {
        eprintln!("note: the kernel has no vfat: /boot/efi is expected not to mount");
    }

    // The probe, as PID 1 makes it.
    let probed = probe_loops(&[&d1, &d2]);
    let find = |dev: String| {
        probed
            .iter()
            .find(|p| p.target_device.as_deref() == Some(dev.as_str()))
            .unwrap_or_else(|| panic!("{dev} not probed: {probed:?}"))
            .clone()
    };
    let root_p = find(format!("/dev/{d1}p3"));
    assert_eq!(root_p.fs_type.as_deref(), Some("btrfs"));
    assert_eq!(root_p.uuid.as_deref(), Some(U_ROOT));
    assert_eq!(root_p.partition, Some(3));
    assert!(root_p.partuuid.is_some());
    assert_eq!(
        find(format!("/dev/{d1}p1")).uuid.as_deref(),
        Some(VFAT_UUID)
    );
    assert_eq!(find(format!("/dev/{d2}p1")).fs_type.as_deref(), Some("xfs"));
    let logs = find(format!("/dev/{d2}p5"));
    assert_eq!((logs.disk_index, logs.partition), (1, Some(5)));
    assert_eq!(logs.label.as_deref(), Some("logs"));

    let sysroot = tmp.path().join("sysroot");
    let probe_dir = tmp.path().join("probe");
    let mut runner = RecordingRunner::new();

    let images = [tmp.path().join("disk1.img"), tmp.path().join("disk2.img")];
    let pristine: Vec<Vec<(u64, Vec<u8>)>> = images.iter().map(|i| extents(i)).collect();

    // --- read-write, as the fixup mounts it (with the stack's trees).
    {
        let mut ctx = LogCtx::new(&mut runner);
        let opts = MountOptions {
            probe_dir: probe_dir.clone(),
            ..MountOptions::new(false)
        };
        let mut g = Guest(Some(
            mount_guest(&mut ctx, &probed, &MapHints::default(), &sysroot, &opts)
                .unwrap_or_else(|e| panic!("{e:?}\nlog: {:#?}", ctx.log)),
        ));
        let root = &g.get().root;
        assert_eq!(root.device, format!("/dev/{d1}p3"));
        assert_eq!(root.subvol.as_deref(), Some("@"));
        let guest_paths: Vec<&str> = g
            .get()
            .mounts
            .iter()
            .filter(|m| matches!(m.kind, MountKind::Fstab | MountKind::Bind))
            .map(|m| m.guest_path.as_str())
            .collect();
        let mut want = vec!["/home", "/boot"];
        if vfat {
            want.push("/boot/efi");
        }
        want.extend(["/data", "/var/log", "/srv/www"]);
        assert_eq!(guest_paths, want, "warnings: {:?}", ctx.warnings);
        if !vfat {
            assert_eq!(ctx.warnings.len(), 1, "{:?}", ctx.warnings);
            assert_eq!(ctx.warnings[0].code, codes::GUEST_IO);
            assert!(ctx.warnings[0].message.contains("/boot/efi"));
        } else {
            assert!(ctx.warnings.is_empty(), "{:?}", ctx.warnings);
            assert!(sysroot.join("boot/efi/EFI/BOOT/BOOTX64.EFI").exists());
        }
        assert!(
            g.get()
                .mounts
                .iter()
                .any(|m| m.kind == MountKind::Stack && m.guest_path == "/proc")
        );
        assert!(
            sysroot.join("proc/self").exists(),
            "the stack's /proc bound in"
        );
        assert_eq!(
            fs::read_to_string(sysroot.join("home/user/.profile")).unwrap(),
            "export TEST=1\n"
        );
        assert!(sysroot.join("boot/vmlinuz-6.1.0-test").exists());
        assert!(
            sysroot.join("srv/www/index.html").exists(),
            "the bind mount"
        );
        assert_eq!(
            fs::read_to_string(sysroot.join("var/log/marker")).unwrap(),
            "logs\n"
        );
        fs::write(sysroot.join("data/written-rw"), "rw\n").unwrap();
        fs::write(sysroot.join("etc/written-rw"), "rw\n").unwrap();
        let summary = g.get().summary().join("\n");
        assert!(summary.contains(&format!(
            "/dev/{d2}p1 on {}",
            sysroot.join("data").display()
        )));
        let failed = g.unmount();
        assert!(failed.is_empty(), "{failed:?}");
        assert!(!is_mounted_below(&sysroot), "everything unmounted");
    }

    // --- read-only, as rescue mounts it: nothing on the disks changes.
    nix::unistd::sync();
    let before: Vec<Vec<(u64, Vec<u8>)>> = images.iter().map(|i| extents(i)).collect();
    {
        let mut ctx = LogCtx::new(&mut runner);
        let opts = MountOptions {
            probe_dir: probe_dir.clone(),
            ..MountOptions::new(true)
        };
        let mut g = Guest(Some(
            mount_guest(&mut ctx, &probed, &MapHints::default(), &sysroot, &opts)
                .unwrap_or_else(|e| panic!("{e:?}\nlog: {:#?}", ctx.log)),
        ));
        let mounted = g.get().clone();
        assert!(mounted.read_only);
        assert!(mounted.mounts.iter().all(|m| m.read_only));
        assert!(
            !mounted.mounts.iter().any(|m| m.kind == MountKind::Stack),
            "no stack trees in read-only mode"
        );
        let data_of = |p: &str| {
            mounted
                .mounts
                .iter()
                .find(|m| m.guest_path == p)
                .and_then(|m| m.data.clone())
                .unwrap_or_default()
        };
        assert_eq!(data_of("/"), "subvol=@,rescue=nologreplay");
        assert_eq!(data_of("/boot"), "noload");
        assert_eq!(data_of("/data"), "norecovery");
        assert_eq!(data_of("/home"), "subvol=@home,rescue=nologreplay");
        for m in &mounted.mounts {
            let o = mountinfo_options(&m.target).unwrap();
            assert!(
                o.split(',').any(|x| x == "ro"),
                "{}: {o}",
                m.target.display()
            );
        }
        for part in [format!("{d1}p3"), format!("{d1}p2"), format!("{d2}p1")] {
            assert_eq!(read_only_flag(&part), "1", "{part} set read-only");
        }
        assert!(mounted.read_only_devices.contains(&format!("/dev/{d1}p3")));
        assert_eq!(
            fs::read_to_string(sysroot.join("data/written-rw")).unwrap(),
            "rw\n"
        );
        for p in [
            "etc/new",
            "data/new",
            "home/new",
            "boot/new",
            "srv/www/new",
            "var/log/new",
        ] {
            let e = fs::write(sysroot.join(p), "x").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{p}: {e}");
        }
        // A file open in the guest keeps it busy: `fixupctl umount` names
        // the process, and what could not be unmounted stays recorded
        // (with its devices read-only) for the next try.
        let open = fs::File::open(sysroot.join("var/log/marker")).unwrap();
        let users = osam_init::pid1::remount::busy_users(Path::new("/proc"), &sysroot, 0);
        assert!(
            users.iter().any(|u| u.pid == std::process::id()
                && u.what == format!("open file {}", sysroot.join("var/log/marker").display())),
            "{users:?}"
        );
        let mut busy = g.0.take().unwrap();
        let failed = busy.unmount();
        assert!(!failed.is_empty(), "a busy /var/log was unmounted");
        let left: Vec<&str> = busy.mounts.iter().map(|m| m.guest_path.as_str()).collect();
        assert_eq!(left, ["/", "/var/log"], "{failed:?}");
        assert_eq!(read_only_flag(&format!("{d1}p3")), "1", "still read-only");
        assert!(!busy.read_only_devices.is_empty());
        drop(open);
        g.0 = Some(busy);
        let failed = g.unmount();
        assert!(failed.is_empty(), "{failed:?}");
        assert!(!is_mounted_below(&sysroot));
        for part in [format!("{d1}p3"), format!("{d1}p2"), format!("{d2}p1")] {
            assert_eq!(read_only_flag(&part), "0", "{part} set back to read-write");
        }
    }
    nix::unistd::sync();
    // The comparison sees writes: the read-write mount changed both.
    for (p, b) in pristine.iter().zip(&before) {
        assert!(first_difference(p, b).is_some());
    }
    for (img, b) in images.iter().zip(&before) {
        let a = extents(img);
        assert!(
            first_difference(b, &a).is_none(),
            "the read-only mount changed {} at byte {:?}",
            img.display(),
            first_difference(b, &a)
        );
    }
    assert!(runner.calls.is_empty(), "mounting runs no command");
}

#[test]
fn two_roots_are_refused_unless_the_map_or_rescue_chooses() {
    skip_unless_able!();
    let tmp = tempfile::tempdir().unwrap();
    let mut loops = Loops::default();
    let img = tmp.path().join("two.img");
    sh(&["truncate", "-s", "160M", &img.display().to_string()]);
    sh_stdin(
        &["sfdisk", "-q", &img.display().to_string()],
        "label: dos\nsize=64MiB, type=83\nsize=64MiB, type=83\n",
    );
    let d = loops.attach(&img, 2);
    let m = tmp.path().join("m");
    for n in [1, 2] {
        let dev = format!("/dev/{d}p{n}");
        sh(&["mkfs.ext4", "-q", "-F", &dev]);
        let _t = TmpMount::new(&dev, &m);
        write(&m.join("etc/fstab"), "LABEL=x / ext4 defaults 0 1\n");
        write(&m.join("etc/debian_version"), "12.0\n");
    }
    let probed = probe_loops(&[&d]);
    let sysroot = tmp.path().join("sysroot");
    let mut runner = RecordingRunner::new();
    let mut ctx = LogCtx::new(&mut runner);
    let base = MountOptions {
        probe_dir: tmp.path().join("probe"),
        ..MountOptions::new(false)
    };

    let e = mount_guest(&mut ctx, &probed, &MapHints::default(), &sysroot, &base).unwrap_err();
    assert_eq!(e.code, codes::GUEST_MULTIPLE_ROOTS);
    assert!(e.message.contains(&format!("/dev/{d}p1")), "{}", e.message);
    assert!(e.message.contains(&format!("/dev/{d}p2")), "{}", e.message);
    assert!(!is_mounted_below(&sysroot));

    // The map's mountPoint "/" decides.
    let hints = MapHints {
        root_device: Some(format!("/dev/{d}p2")),
        ..MapHints::default()
    };
    let mut g = Guest(Some(
        mount_guest(
            &mut ctx,
            &probed,
            &hints,
            &sysroot,
            &MountOptions {
                bind_stack: false,
                ..base.clone()
            },
        )
        .unwrap(),
    ));
    assert_eq!(g.get().root.device, format!("/dev/{d}p2"));
    assert!(g.unmount().is_empty());

    // Rescue takes the first and names the other.
    let ro = MountOptions {
        probe_dir: tmp.path().join("probe"),
        ..MountOptions::new(true)
    };
    assert_eq!(ro.multiple_roots, MultipleRoots::First);
    let mut g = Guest(Some(
        mount_guest(&mut ctx, &probed, &MapHints::default(), &sysroot, &ro).unwrap(),
    ));
    assert_eq!(g.get().root.device, format!("/dev/{d}p1"));
    assert_eq!(g.get().other_roots.len(), 1);
    assert_eq!(g.get().other_roots[0].device, format!("/dev/{d}p2"));
    assert!(g.unmount().is_empty());
    assert!(!is_mounted_below(&sysroot));
}
