//! The stack's contents built from the real pinned packages (fetched with
//! scripts/fetch-inputs.sh): the library closure is complete, the tools
//! and vmtoolsd's plugins are there, two builds are identical, and on
//! x86_64 vmtoolsd runs in a chroot of the contents (as root). Also checks
//! both pinned kernels against kernel-config/.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use osam_image::deb::Deb;
use osam_image::kernel::KernelTree;
use osam_image::kernel_config;
use osam_image::pins;
use osam_image::stack::manifest::{BuildInputs, KernelInfo, Manifest};
use osam_image::stack::{
    BUSYBOX_APPLETS, EntryKind, InputSet, Origin, StackArch, StackContents, stack_contents,
};
use osam_image::xz::compress_xz_crc32;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn pins_text() -> String {
    fs::read_to_string(workspace().join("image/pins.txt")).unwrap()
}

/// Runs the fetch script once per test binary; its last stdout line is the
/// cache folder.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    DIR.get_or_init(|| {
        let out = Command::new("bash")
            .arg(workspace().join("scripts/fetch-inputs.sh"))
            .args(["--arch", "all"])
            .output()
            .expect("running scripts/fetch-inputs.sh");
        assert!(
            out.status.success(),
            "fetch-inputs.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let dir = PathBuf::from(stdout.lines().last().expect("a cache folder").trim());
        assert!(dir.is_dir(), "{}", dir.display());
        dir
    })
}

/// Stand-ins for the project's binaries (the QEMU tests build the real
/// ones): anything that is not ELF passes as it is.
fn stand_ins(dir: &Path) -> (PathBuf, PathBuf) {
    let init = dir.join("osam-init");
    let ctl = dir.join("fixupctl");
    fs::write(&init, "#!/bin/sh\necho osam-init stand-in\n").unwrap();
    fs::write(&ctl, "#!/bin/sh\necho fixupctl stand-in\n").unwrap();
    (init, ctl)
}

fn build(arch: StackArch, work: &Path) -> StackContents {
    let inputs = InputSet::extract(arch, cache_dir(), &pins_text(), &work.join("debs")).unwrap();
    let (init, ctl) = stand_ins(work);
    stack_contents(arch, &inputs, &init, &ctl, None).unwrap()
}

/// Resolves `path` inside the contents through their symbolic links to a
/// regular file.
fn resolve(by_path: &BTreeMap<&str, &EntryKind>, path: &str) -> Option<String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        if part == "." {
            continue;
        }
        done.push(part);
        let here = done.join("/");
        match by_path.get(here.as_str()) {
            Some(EntryKind::Symlink(t)) => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                done.pop();
                if t.starts_with('/') {
                    done.clear();
                }
                todo.extend(
                    t.split('/')
                        .filter(|s| !s.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            Some(EntryKind::File { .. }) if todo.is_empty() => return Some(here),
            Some(EntryKind::Dir) => {}
            _ => return None,
        }
    }
    None
}

fn check_contents(arch: StackArch, c: &StackContents) {
    let by_path: BTreeMap<&str, &EntryKind> = c
        .entries
        .iter()
        .map(|e| (e.path.as_str(), &e.kind))
        .collect();
    let t = arch.triplet();

    // Every file from a package comes from a listed package.
    let listed: Vec<&str> = c.packages.iter().map(|p| p.name.as_str()).collect();
    for e in &c.entries {
        if let Origin::Package(p) = &e.origin {
            assert!(listed.contains(&p.as_str()), "{} from unlisted {p}", e.path);
        }
    }
    for p in &c.packages {
        assert!(
            !p.source.is_empty() && !p.source_version.is_empty(),
            "{p:?}"
        );
    }

    // The tools, vmtoolsd's plugins, busybox's applets.
    for tool in [
        "init",
        "usr/bin/fixupctl",
        "bin/busybox",
        "sbin/lvm",
        "sbin/dmsetup",
        "sbin/mdadm",
        "sbin/e2fsck",
        "sbin/mkfs.ext4",
        "sbin/vgchange",
        "sbin/xfs_repair",
        "usr/sbin/xfs_admin",
        "usr/sbin/xfs_db",
        "bin/btrfs",
        "usr/bin/vmtoolsd",
        "usr/bin/vmware-rpctool",
        "usr/bin/vmware-checkvm",
        "etc/lvm/lvm.conf",
        "etc/passwd",
        "etc/group",
        "etc/nsswitch.conf",
        "etc/mdadm/mdadm.conf",
        &format!("lib/{t}/libnss_files.so.2"),
    ] {
        assert!(resolve(&by_path, tool).is_some(), "{arch}: no /{tool}");
    }
    for plugin in [
        "vmsvc/libguestInfo.so",
        "vmsvc/libpowerOps.so",
        "vmsvc/libtimeSync.so",
        "common/libvix.so",
    ] {
        let p = format!("usr/lib/{t}/open-vm-tools/plugins/{plugin}");
        assert!(by_path.contains_key(p.as_str()), "{arch}: no /{p}");
    }
    for applet in BUSYBOX_APPLETS {
        assert_eq!(
            resolve(&by_path, &format!("bin/{applet}")).as_deref(),
            Some("bin/busybox"),
            "{arch}: applet {applet}"
        );
    }

    // Every ELF file's interpreter and DT_NEEDED resolve inside the contents.
    let dirs = arch.library_dirs();
    let mut elves = 0;
    for e in &c.entries {
        let EntryKind::File { data, .. } = &e.kind else {
            continue;
        };
        if !data.starts_with(b"\x7fELF") {
            continue;
        }
        elves += 1;
        let elf = goblin::elf::Elf::parse(data).unwrap();
        assert_eq!(elf.is_64, arch == StackArch::X86_64, "{}", e.path);
        if let Some(interp) = elf.interpreter {
            assert!(
                resolve(&by_path, interp).is_some(),
                "{arch}: {} interpreter {interp}",
                e.path
            );
        }
        for needed in &elf.libraries {
            let found = dirs
                .iter()
                .any(|d| resolve(&by_path, &format!("{d}/{needed}")).is_some());
            assert!(
                found,
                "{arch}: /{} needs {needed}, not in the contents",
                e.path
            );
        }
    }
    assert!(elves > 20, "{arch}: only {elves} ELF files");
}

#[test]
fn stack_contents_for_both_arches() {
    let sizes: Vec<String> = StackArch::ALL
        .into_iter()
        .map(|arch| {
            let tmp = tempfile::tempdir().unwrap();
            let a = build(arch, &tmp.path().join("a"));
            check_contents(arch, &a);

            // Determinism: a second extraction and selection is identical,
            // and so are the archive and the manifest.
            let b = build(arch, &tmp.path().join("b"));
            assert!(a == b, "{arch}: two builds differ");
            let cpio = a.to_cpio(1_700_000_000).unwrap().to_bytes().unwrap();
            assert_eq!(cpio, b.to_cpio(1_700_000_000).unwrap().to_bytes().unwrap());
            let kernel = KernelInfo {
                package: "linux-image".into(),
                release: "r".into(),
                version: "v".into(),
            };
            let inputs = BuildInputs {
                osam_init_version: "0".into(),
                pins_sha256: pins::cache_key(pins_text().as_bytes()),
                source_date_epoch: 1_700_000_000,
            };
            let m = Manifest::new(&a, kernel.clone(), inputs.clone()).to_json();
            assert_eq!(m, Manifest::new(&b, kernel, inputs).to_json());
            let xz = compress_xz_crc32(&cpio, 6).unwrap();
            let line = format!(
                "{arch}: {} entries, {} packages, files {} bytes, cpio {} bytes, xz {} bytes",
                a.entries.len(),
                a.packages.len(),
                a.file_bytes(),
                cpio.len(),
                xz.len()
            );
            eprintln!("{line}");
            let names: Vec<&str> = a.packages.iter().map(|p| p.name.as_str()).collect();
            eprintln!("{arch} packages: {}", names.join(" "));
            line
        })
        .collect();
    eprintln!("{}", sizes.join("\n"));
}

#[test]
fn vmtoolsd_and_busybox_run_in_a_chroot() {
    if !nix_is_root() {
        eprintln!("skipped: needs root for chroot");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let c = build(StackArch::X86_64, tmp.path());
    let root = tmp.path().join("root");
    c.write_to_dir(&root).unwrap();

    let list = Command::new("chroot")
        .arg(&root)
        .args(["/bin/busybox", "--list"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let list = String::from_utf8(list.stdout).unwrap();
    let applets: Vec<&str> = list.lines().collect();
    for applet in BUSYBOX_APPLETS {
        assert!(applets.contains(applet), "busybox has no {applet}");
    }

    // Outside VMware vmtoolsd exits 1 before printing anything (its VM
    // check comes first), so `--version` proves little here: the dynamic
    // linker's --list shows that it and every plugin load, and
    // vmware-toolbox-cmd runs its main (and refuses outside a VM).
    let ld = "/lib64/ld-linux-x86-64.so.2";
    let plugins = format!(
        "/usr/lib/{}/open-vm-tools/plugins",
        StackArch::X86_64.triplet()
    );
    let mut loaded = vec!["/usr/bin/vmtoolsd".to_owned()];
    for dir in ["vmsvc", "common"] {
        for e in fs::read_dir(root.join(&plugins[1..]).join(dir)).unwrap() {
            loaded.push(format!(
                "{plugins}/{dir}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    for file in &loaded {
        let out = Command::new("chroot")
            .arg(&root)
            .args([ld, "--list", file])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !text.contains("not found"),
            "{file}: {text}"
        );
    }
    let out = Command::new("chroot")
        .arg(&root)
        .args(["/usr/bin/vmware-toolbox-cmd", "-v"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("vmware-toolbox-cmd -v: {:?} {text}", out.status);
    // Its main ran (libraries loaded): it prints the version inside VMware
    // and refuses outside.
    assert!(
        text.contains("12.2.0") || text.contains("must be run inside a virtual machine"),
        "vmware-toolbox-cmd printed {text:?}"
    );
    let out = Command::new("chroot")
        .arg(&root)
        .args(["/usr/bin/vmtoolsd", "--version"])
        .output()
        .unwrap();
    eprintln!(
        "vmtoolsd --version: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.status.code().is_some(),
        "vmtoolsd was killed: {:?}",
        out.status
    );

    for tool in [
        vec!["/sbin/lvm", "version"],
        vec!["/sbin/mdadm", "--version"],
        vec!["/sbin/e2fsck", "-V"],
        vec!["/sbin/xfs_repair", "-V"],
        vec!["/bin/btrfs", "--version"],
        vec!["/sbin/dmsetup", "--version"],
        vec!["/usr/bin/vmware-checkvm", "-h"],
    ] {
        let out = Command::new("chroot")
            .arg(&root)
            .args(&tool)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("error while loading shared libraries") && out.status.code().is_some(),
            "{tool:?}: {:?} {text}",
            out.status
        );
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn pinned_kernels_meet_the_required_config() {
    let fragment = fs::read_to_string(workspace().join("kernel-config/required.config")).unwrap();
    let modules = kernel_config::parse_module_list(
        &fs::read_to_string(workspace().join("kernel-config/modules.list")).unwrap(),
    );
    let pins = pins::parse(&pins_text()).unwrap();
    for pin in pins
        .iter()
        .filter(|p| p.package.starts_with("linux-image-"))
    {
        let tmp = tempfile::tempdir().unwrap();
        let deb = Deb::open(cache_dir().join(pin.deb_file_name())).unwrap();
        let (tree, _) = KernelTree::extract_deb(&deb, tmp.path()).unwrap();
        let config = fs::read_to_string(tree.config.as_ref().expect("boot/config-*")).unwrap();
        if let Err(missing) = kernel_config::check(&config, &fragment) {
            let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
            panic!("{} lacks: {}", pin.package, list.join("; "));
        }
        let db = tree.modules().unwrap();
        let closure = db.closure(modules.iter().map(String::as_str));
        // A softdep may name a module this flavour builds in under another
        // name; what matters is that every listed module is there.
        let missing: Vec<&String> = closure
            .missing
            .iter()
            .filter(|m| modules.contains(m))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: no modules {:?}",
            pin.package,
            missing
        );
    }
}
