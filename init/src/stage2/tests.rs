//! The agent on guest trees as stage 1 leaves them, with a recording
//! runner.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::engine::fixups::stage2::{
    AGENT, DEFAULT_TARGET, SAVED_INITTAB, SAVED_RC_SYSINIT, SAVED_SELINUX, SAVED_TARGET, UNIT,
    UNIT_WANTS, rc_script_text, unit_text,
};
use crate::guestwrite::{Action, Change, FileState, MANIFEST, RunRecord};
use crate::runner::{OutputSink, RecordingRunner};

const RESCUE: &str = "/usr/lib/systemd/system/rescue.target";
const MULTI_USER: &str = "/usr/lib/systemd/system/multi-user.target";
const SELINUX_PERMISSIVE: &str =
    "# This file controls the state of SELinux\nSELINUX=permissive\nSELINUXTYPE=targeted\n";

/// A guest tree in a temp dir.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn p(&self, guest: &str) -> PathBuf {
        self.root().join(guest.trim_start_matches('/'))
    }
    fn file(&self, guest: &str, text: &str) -> &Self {
        let p = self.p(guest);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }
    fn exe(&self, guest: &str) -> &Self {
        self.file(guest, "#!/bin/sh\n");
        std::fs::set_permissions(self.p(guest), std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }
    fn link(&self, guest: &str, target: &str) -> &Self {
        let p = self.p(guest);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }
    fn read(&self, guest: &str) -> String {
        std::fs::read_to_string(self.p(guest)).unwrap()
    }
    fn read_link(&self, guest: &str) -> String {
        std::fs::read_link(self.p(guest))
            .unwrap()
            .display()
            .to_string()
    }
    fn exists(&self, guest: &str) -> bool {
        std::fs::symlink_metadata(self.p(guest)).is_ok()
    }
    fn manifest(&self, changes: &[(&str, Action, Option<&str>)]) -> &Self {
        let m = Manifest {
            version: 1,
            runs: vec![RunRecord {
                migration_id: "m1".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                stack_version: "0.1.0".into(),
                initramfs_done: false,
            }],
            changes: changes
                .iter()
                .map(|(path, action, before_link)| Change {
                    run: 0,
                    step: "test".into(),
                    path: path.to_string(),
                    action: *action,
                    backup: None,
                    before: before_link.map(|l| FileState {
                        link: Some(l.into()),
                        sha256: String::new(),
                        size: 0,
                        mode: 0o777,
                        uid: 0,
                        gid: 0,
                    }),
                    after: None,
                })
                .collect(),
        };
        self.file(MANIFEST, &serde_json::to_string(&m).unwrap())
    }

    /// A systemd guest as stage 1 leaves it: rescue.target, the hook,
    /// the saved target, SELinux enforcing saved and permissive set.
    fn systemd() -> Tree {
        let t = Tree::new();
        t.link(DEFAULT_TARGET, RESCUE)
            .file(UNIT, &unit_text())
            .link(UNIT_WANTS, UNIT)
            .file(SAVED_TARGET, &format!("{MULTI_USER}\n"))
            .file(SAVED_SELINUX, "enforcing\n")
            .file("/etc/selinux/config", SELINUX_PERMISSIVE)
            .file("/etc/default/grub", "GRUB_TIMEOUT=5\n")
            .file("/etc/fstab", "/dev/sda1 / xfs defaults 0 0\n")
            .exe("/usr/sbin/restorecon")
            .exe("/usr/bin/vmware-rpctool")
            .exe(AGENT)
            .manifest(&[
                ("/etc/default/grub", Action::Modified, None),
                ("/etc/fstab", Action::Modified, None),
                ("/etc/udev/rules.d/gone.rules", Action::Removed, None),
                (DEFAULT_TARGET, Action::Modified, Some(MULTI_USER)),
            ]);
        t
    }

    /// A SysV guest (RHEL 6 layout): inittab at run level 1, the rc script
    /// and its S00 link.
    fn sysv() -> Tree {
        let t = Tree::new();
        t.file("/etc/inittab", "# x\nid:1:initdefault:\n")
            .file(SAVED_INITTAB, "# x\nid:3:initdefault:\n")
            .file("/etc/rc.d/init.d/osam-stage2", &rc_script_text())
            .link(
                "/etc/rc.d/rc1.d/S00osam-stage2",
                "/etc/rc.d/init.d/osam-stage2",
            )
            .file("/etc/rc.d/rc1.d/K90network", "")
            .exe(AGENT);
        std::fs::set_permissions(t.p("/etc/inittab"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        t
    }

    fn config(&self, devices: Vec<PathBuf>) -> Config {
        Config {
            root: self.root().to_path_buf(),
            dry_run: false,
            iso_timeout: Duration::from_millis(100),
            poll_interval: Duration::from_millis(20),
            devices,
            mount_point: Some(self.p("/tmp/iso")),
            console: false,
            arch: "x86_64".into(),
        }
    }

    /// A fake Tools ISO "device" (outside the tree) and its "mounted"
    /// contents at the mount point.
    fn iso(&self, files: &[&str]) -> PathBuf {
        let dev = self.root().with_extension("sr0");
        std::fs::write(&dev, iso::fake_iso(iso::TOOLS_LABEL)).unwrap();
        for f in files {
            self.file(&format!("/tmp/iso/{f}"), "");
        }
        dev
    }
}

/// Records commands, lets them succeed (unless scripted), and notes what
/// the SELinux config said when `restorecon` ran; `tar` "unpacks" a fake
/// Tools installer.
struct Runner {
    inner: RecordingRunner,
    root: PathBuf,
    selinux_at_restorecon: Vec<String>,
}

impl Runner {
    fn new(root: &Path) -> Runner {
        Runner {
            inner: RecordingRunner::succeeding(),
            root: root.to_path_buf(),
            selinux_at_restorecon: Vec::new(),
        }
    }
    fn failing(mut self, prog: &str) -> Runner {
        self.inner = self.inner.with_exit(prog, 1);
        self
    }
    fn argvs(&self) -> Vec<Vec<String>> {
        self.inner.calls.iter().map(|c| c.argv.clone()).collect()
    }
    fn called(&self, prog: &str) -> Vec<Vec<String>> {
        self.argvs()
            .into_iter()
            .filter(|a| a[0].rsplit('/').next() == Some(prog))
            .collect()
    }
}

impl CommandRunner for Runner {
    fn run(&mut self, cmd: &Command, sink: &mut dyn OutputSink) -> CommandRecord {
        let prog = cmd.argv[0].rsplit('/').next().unwrap_or("").to_string();
        let root = self.root.join("etc/selinux/config");
        if prog == "restorecon" {
            self.selinux_at_restorecon
                .push(std::fs::read_to_string(root).unwrap_or_default());
        }
        if prog == "tar" {
            let dir = self.root.join("tmp/osam-stage2-tools/vmware-tools-distrib");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("vmware-install.pl"),
                "#!/usr/bin/perl\n# --force-install\n",
            )
            .unwrap();
        }
        self.inner.run(cmd, sink)
    }
}

fn assert_systemd_restored(t: &Tree) {
    assert_eq!(t.read_link(DEFAULT_TARGET), MULTI_USER);
    assert!(!t.exists(UNIT) && !t.exists(UNIT_WANTS), "hook removed");
    assert!(!t.exists(AGENT), "agent removed");
    assert!(
        !t.exists("/opt/vmware/hcx/osam/bin"),
        "empty bin dir removed"
    );
    assert!(t.exists(MANIFEST) && t.exists(SAVED_TARGET), "data kept");
    assert_eq!(
        t.read("/etc/selinux/config"),
        "# This file controls the state of SELinux\nSELINUX=enforcing\nSELINUXTYPE=targeted\n"
    );
}

#[test]
fn systemd_guest_gets_tools_from_debs_and_its_target_back() {
    let t = Tree::systemd();
    t.exe("/usr/bin/dpkg");
    let dev = t.iso(&[
        "debs/open-vm-tools_12.3.5-3_amd64.deb",
        "debs/libmspack0_0.10.1-2_amd64.deb",
        "debs/open-vm-tools_12.3.5-3_i386.deb",
        "README",
    ]);
    let mut r = Runner::new(t.root());
    let out = run(&t.config(vec![t.p("/dev/sr9"), dev.clone()]), &mut r);

    assert_eq!(out.status, Status::Success, "{out:?}");
    assert_eq!(out.exit_code(), 0);
    assert!(out.tools_installed);
    assert_eq!(out.tools, "deb");
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_systemd_restored(&t);

    let mnt = t.p("/tmp/iso").display().to_string();
    let dev = std::fs::canonicalize(dev).unwrap().display().to_string();
    assert_eq!(
        r.called("mount"),
        vec![vec!["mount", "-t", "iso9660", "-o", "ro", &dev, &mnt]]
    );
    assert_eq!(
        r.called("dpkg"),
        vec![vec![
            "/usr/bin/dpkg",
            "-i",
            "/tmp/iso/debs/libmspack0_0.10.1-2_amd64.deb",
            "/tmp/iso/debs/open-vm-tools_12.3.5-3_amd64.deb",
        ]]
    );
    // Commands for the guest run in it; mount and umount outside.
    let dpkg = r
        .inner
        .calls
        .iter()
        .find(|c| c.argv[0].ends_with("dpkg"))
        .unwrap();
    assert_eq!(dpkg.chroot.as_deref(), Some(t.root()));
    assert_eq!(r.called("umount"), vec![vec!["umount", &mnt]]);

    // restorecon on the manifest's existing paths, then recursively on
    // the data folder (no /boot in this tree), before enforcing.
    let rc = r.called("restorecon");
    assert_eq!(rc.len(), 2, "{rc:?}");
    assert_eq!(
        rc[1],
        ["/usr/sbin/restorecon", "-R", "-F", "/opt/vmware/hcx/osam"]
    );
    assert_eq!(rc[0][1], "-F");
    for p in [
        "/etc/default/grub",
        "/etc/fstab",
        DEFAULT_TARGET,
        "/etc/selinux/config",
    ] {
        assert!(rc[0].iter().any(|a| a == p), "{p} in {:?}", rc[0]);
    }
    assert!(!rc[0].iter().any(|a| a.contains("gone.rules")));
    // The folders stage 1 may have created, not the top-level ones.
    for p in [
        "/opt/vmware",
        "/opt/vmware/hcx",
        "/etc/systemd/system/rescue.target.wants",
        "/etc/default",
    ] {
        assert!(rc[0].iter().any(|a| a == p), "{p} in {:?}", rc[0]);
    }
    for p in ["/etc", "/opt", "/boot"] {
        assert!(!rc[0].iter().any(|a| a == p), "{p} in {:?}", rc[0]);
    }
    assert_eq!(
        r.selinux_at_restorecon,
        vec![SELINUX_PERMISSIVE.to_string(); 2]
    );

    // The report, last before the (skipped) power-off.
    let rpc = r.called("vmware-rpctool");
    assert_eq!(rpc.len(), 1);
    let arg = rpc[0][1]
        .strip_prefix("info-set guestinfo.osam.stage2 ")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(arg).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["toolsInstalled"], true);
    assert!(r.called("systemctl").is_empty() && r.called("poweroff").is_empty());
    let order: Vec<String> = r.argvs().iter().map(|a| a[0].clone()).collect();
    let pos = |p: &str| order.iter().position(|a| a.ends_with(p)).unwrap();
    assert!(pos("mount") < pos("dpkg") && pos("dpkg") < pos("umount"));
    assert!(pos("umount") < pos("restorecon") && pos("restorecon") < pos("vmware-rpctool"));

    let log = t.read(log::LOG_PATH);
    assert!(
        log.contains("restored /etc/systemd/system/default.target"),
        "{log}"
    );
    assert!(log.contains("outcome: {\"status\":\"success\""), "{log}");
}

#[test]
fn the_iso_never_comes_and_the_guest_is_restored_anyway() {
    let t = Tree::systemd();
    let mut r = Runner::new(t.root());
    let out = run(&t.config(vec![t.p("/dev/sr0")]), &mut r);
    assert_eq!(out.status, Status::Success);
    assert!(!out.tools_installed);
    assert_eq!(out.tools, "none");
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("no CD-ROM labelled")),
        "{:?}",
        out.warnings
    );
    assert!(r.called("mount").is_empty());
    assert_systemd_restored(&t);
}

#[test]
fn a_second_run_finishes_a_partial_first_one() {
    let t = Tree::systemd();
    // A first run stopped after the boot target and part of the hook.
    std::fs::remove_file(t.p(DEFAULT_TARGET)).unwrap();
    t.link(DEFAULT_TARGET, MULTI_USER);
    std::fs::remove_file(t.p(UNIT_WANTS)).unwrap();
    let mut r = Runner::new(t.root());
    let out = run(&t.config(vec![]), &mut r);
    assert_eq!(out.status, Status::Success, "{out:?}");
    assert_systemd_restored(&t);

    // And a run on a fully restored guest changes nothing and succeeds.
    let mut r = Runner::new(t.root());
    let out = run(&t.config(vec![]), &mut r);
    assert_eq!(out.status, Status::Success, "{out:?}");
    assert_systemd_restored(&t);
    assert!(out.restored.iter().any(|s| s == "SELinux enforcing"));
}

#[test]
fn sysv_guest_keeps_its_tools_and_gets_inittab_back() {
    let t = Tree::sysv();
    t.exe("/usr/bin/vmtoolsd");
    let dev = t.iso(&["VMwareTools-10.3.26-1.tar.gz"]);
    let mut r = Runner::new(t.root());
    let out = run(&t.config(vec![dev]), &mut r);
    assert_eq!(out.status, Status::Success, "{out:?}");
    assert_eq!(out.tools, "kept");
    assert!(out.tools_installed);
    assert!(r.called("mount").is_empty(), "no ISO needed");
    assert_eq!(t.read("/etc/inittab"), "# x\nid:3:initdefault:\n");
    let mode = std::fs::metadata(t.p("/etc/inittab"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode kept");
    assert!(!t.exists("/etc/rc.d/init.d/osam-stage2"));
    assert!(!t.exists("/etc/rc.d/rc1.d/S00osam-stage2"));
    assert!(t.exists("/etc/rc.d/rc1.d/K90network"));
    assert!(!t.exists(AGENT));
    assert!(r.called("restorecon").is_empty(), "no SELinux saved");
    assert!(
        r.called("vmware-rpctool").is_empty(),
        "no rpctool in this guest"
    );
    assert!(out.restored.contains(&"/etc/inittab".to_string()));
}

#[test]
fn upstart_guest_gets_rc_sysinit_back_and_tools_from_the_tarball() {
    let t = Tree::new();
    t.file("/etc/init/rc-sysinit.conf", "env DEFAULT_RUNLEVEL=1\n")
        .file(SAVED_RC_SYSINIT, "env DEFAULT_RUNLEVEL=2\n")
        .file("/etc/init.d/osam-stage2", &rc_script_text())
        .link("/etc/rc1.d/S00osam-stage2", "/etc/init.d/osam-stage2")
        .exe("/usr/bin/perl")
        .exe(AGENT);
    let dev = t.iso(&["VMwareTools-10.3.26-1.tar.gz", "manifest.txt"]);
    let mut r = Runner::new(t.root());
    let out = run(&t.config(vec![dev]), &mut r);
    assert_eq!(out.status, Status::Success, "{out:?}");
    assert_eq!(out.tools, "tar");
    assert_eq!(
        t.read("/etc/init/rc-sysinit.conf"),
        "env DEFAULT_RUNLEVEL=2\n"
    );
    assert!(!t.exists("/etc/rc1.d/S00osam-stage2") && !t.exists("/etc/init.d/osam-stage2"));
    assert_eq!(
        r.called("tar"),
        vec![vec![
            "tar",
            "-xzf",
            "/tmp/iso/VMwareTools-10.3.26-1.tar.gz",
            "-C",
            install::TAR_WORK_DIR
        ]]
    );
    let sh = r.called("sh");
    assert_eq!(sh.len(), 1);
    assert_eq!(
        &sh[0][4..],
        &[
            "/tmp/osam-stage2-tools/vmware-tools-distrib",
            "--default",
            "--force-install"
        ]
    );
    assert!(!t.exists(install::TAR_WORK_DIR), "work dir cleaned up");
}

#[test]
fn a_failed_install_is_a_warning() {
    let t = Tree::systemd();
    t.exe("/bin/rpm");
    let dev = t.iso(&["open-vm-tools-12.3.5-1.el8.x86_64.rpm"]);
    let mut r = Runner::new(t.root()).failing("rpm");
    let out = run(&t.config(vec![dev]), &mut r);
    assert_eq!(out.status, Status::Success);
    assert!(!out.tools_installed);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("exited with status 1")),
        "{out:?}"
    );
    assert_eq!(r.called("umount").len(), 1, "unmounted after a failure");
    assert_systemd_restored(&t);
}

/// What stage 1's commands wrote without a manifest entry per file
/// (grub-install's modules and locale files, a new initramfs image: new,
/// unlabelled files) is relabelled too, recursively, without the ESP (no
/// labels on FAT). Found by QEMU scenario (g): after the flow, the 348
/// files grub-install had written under `/boot/grub/` stayed
/// `unlabeled_t` under enforcing.
#[test]
fn restorecon_relabels_what_stage_1_commands_wrote() {
    let t = Tree::systemd();
    t.file("/boot/initramfs-5.14.0-362.el9.x86_64.img", "new image")
        .file("/boot/grub2/grub.cfg", "new config")
        .file("/boot/efi/EFI/redhat/grub.cfg", "on the ESP");
    let mut r = Runner::new(t.root());
    let out = run(&t.config(vec![t.p("/dev/sr0")]), &mut r);
    let rc = r.called("restorecon");
    assert_eq!(
        rc.last().unwrap(),
        &[
            "/usr/sbin/restorecon",
            "-R",
            "-F",
            "-e",
            "/boot/efi",
            "/boot",
            "/opt/vmware/hcx/osam"
        ]
    );
    // Both before enforcing comes back.
    assert!(
        r.selinux_at_restorecon
            .iter()
            .all(|c| c == SELINUX_PERMISSIVE)
    );
    assert!(!t.exists("/.autorelabel"), "{out:?}");
    assert!(t.read("/etc/selinux/config").contains("SELINUX=enforcing"));
}

#[test]
fn restorecon_failing_schedules_a_relabel() {
    let t = Tree::systemd();
    let mut r = Runner::new(t.root()).failing("restorecon");
    let out = run(&t.config(vec![]), &mut r);
    assert_eq!(out.status, Status::Success);
    assert!(t.exists("/.autorelabel"));
    assert!(out.warnings.iter().any(|w| w.contains("autorelabel")));
    assert_systemd_restored(&t);
}

#[test]
fn a_restore_that_fails_keeps_the_hook_for_the_next_boot() {
    let t = Tree::systemd();
    std::fs::remove_file(t.p(DEFAULT_TARGET)).unwrap();
    t.file(&format!("{DEFAULT_TARGET}/blocker"), "");
    let mut r = Runner::new(t.root());
    let out = run(&t.config(vec![]), &mut r);
    assert_eq!(out.status, Status::Failed);
    assert_eq!(out.exit_code(), 1);
    assert!(out.errors[0].contains("default.target"), "{out:?}");
    assert!(t.exists(UNIT) && t.exists(UNIT_WANTS) && t.exists(AGENT));
    let rpc = r.called("vmware-rpctool");
    assert!(rpc[0][1].contains("\"status\":\"failed\""));
    assert!(t.read(log::LOG_PATH).contains("ERROR: restoring"));
}

#[test]
fn target_saved_by_a_second_stage_1_comes_from_the_manifest() {
    let t = Tree::systemd();
    t.file(SAVED_TARGET, &format!("{RESCUE}\n"));
    let out = run(&t.config(vec![]), &mut Runner::new(t.root()));
    assert_eq!(out.status, Status::Success);
    assert_eq!(t.read_link(DEFAULT_TARGET), MULTI_USER);
}

#[test]
fn no_saved_target_means_the_distribution_default() {
    let t = Tree::systemd();
    t.file(SAVED_TARGET, "\n");
    let out = run(&t.config(vec![]), &mut Runner::new(t.root()));
    assert_eq!(out.status, Status::Success);
    assert!(!t.exists(DEFAULT_TARGET));
}

#[test]
fn a_selinux_failure_fails_the_run_but_the_inert_hook_goes() {
    let t = Tree::systemd();
    std::fs::remove_file(t.p("/etc/selinux/config")).unwrap();
    let out = run(&t.config(vec![]), &mut Runner::new(t.root()));
    assert_eq!(out.status, Status::Failed);
    assert!(out.errors[0].contains("/etc/selinux/config"), "{out:?}");
    assert_eq!(t.read_link(DEFAULT_TARGET), MULTI_USER);
    assert!(!t.exists(UNIT) && !t.exists(AGENT));
}
