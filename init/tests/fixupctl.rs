//! `fixupctl` as a user runs it: exit statuses, and the files it leaves in
//! the fixup directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXUPCTL: &str = env!("CARGO_BIN_EXE_fixupctl");

fn valid_inputs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/protocol/valid")
}

/// A fixup directory holding copies of the valid example inputs.
fn fixup_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in fs::read_dir(valid_inputs()).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    d
}

fn result(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("result.json")).unwrap()).unwrap()
}

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[test]
fn run_on_a_tree_without_an_os_fails_with_exit_1_and_says_why() {
    let fixup = fixup_dir();
    let sysroot = tempfile::tempdir().unwrap();
    let out = Command::new(FIXUPCTL)
        .args(["run", "--no-commands", "--sysroot"])
        .arg(sysroot.path())
        .arg("--fixup-dir")
        .arg(fixup.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r = result(fixup.path());
    assert_eq!(r["status"], "failed");
    assert_eq!(r["migrationId"], "mig-7f3a");
    let e = &r["errors"][0];
    assert_eq!(e["code"], "guest.unknown_os", "{r:#}");
    assert_eq!(e["step"], "detect");
    assert!(e["message"].as_str().unwrap().contains("/etc"), "{e}");
    for f in ["END", "fixup.log", "progress.txt"] {
        assert!(fixup.path().join(f).exists(), "{f} missing");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("guest.unknown_os"), "{stderr}");
}

#[test]
fn run_with_invalid_input_touches_nothing_and_names_file_and_path() {
    let fixup = fixup_dir();
    fs::write(
        fixup.path().join("system-configuration.json"),
        br#"{"version": 1, "migrationId": 5}"#,
    )
    .unwrap();
    let sysroot = tempfile::tempdir().unwrap();
    let out = Command::new(FIXUPCTL)
        .args(["run", "--sysroot"])
        .arg(sysroot.path())
        .arg("--fixup-dir")
        .arg(fixup.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r = result(fixup.path());
    assert_eq!(r["status"], "failed");
    let errors = r["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .all(|e| e["code"].as_str().unwrap().starts_with("config."))
    );
    assert!(
        errors.iter().any(|e| {
            let m = e["message"].as_str().unwrap();
            m.contains("system-configuration.json") && m.contains("migrationId")
        }),
        "{r:#}"
    );
    assert_eq!(r["steps"].as_array().unwrap().len(), 1, "only validate ran");
    assert_eq!(fs::read_dir(sysroot.path()).unwrap().count(), 0);
}

#[test]
fn run_without_commands_on_a_debian_tree_detects_it() {
    let fixup = fixup_dir();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(
        r,
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"12\"\nID=debian\n",
    );
    write(r, "etc/debian_version", "12.8\n");
    write(r, "etc/fstab", "/dev/sda1 / ext4 errors=remount-ro 0 1\n");
    write(r, "boot/grub/grub.cfg", "menuentry 'Debian' {}\n");
    write(r, "boot/vmlinuz-6.1.0-50-amd64", "");
    write(
        r,
        "lib/modules/6.1.0-50-amd64/modules.dep",
        "kernel/drivers/scsi/vmw_pvscsi.ko:\nkernel/drivers/scsi/sd_mod.ko:\n\
         kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
         kernel/fs/mbcache.ko:\nkernel/fs/jbd2/jbd2.ko:\n\
         kernel/drivers/net/vmxnet3/vmxnet3.ko:\nkernel/drivers/md/dm-mod.ko:\n",
    );
    write(r, "etc/initramfs-tools/initramfs.conf", "MODULES=list\n");
    write(r, "usr/sbin/update-initramfs", "");
    write(r, "usr/sbin/mkinitramfs", "");
    write(r, "usr/sbin/grub-install", "");
    write(r, "usr/sbin/grub-mkconfig", "");
    write(
        r,
        "etc/default/grub",
        "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n",
    );
    write(
        r,
        "etc/network/interfaces",
        "auto lo\niface lo inet loopback\n\nallow-hotplug ens192\niface ens192 inet dhcp\n",
    );
    fs::create_dir_all(r.join("lib/systemd")).unwrap();
    write(r, "lib/systemd/systemd", "");
    let out = Command::new(FIXUPCTL)
        .args(["run", "--no-commands", "--sysroot"])
        .arg(r)
        .arg("--fixup-dir")
        .arg(fixup.path())
        .output()
        .unwrap();
    let res = result(fixup.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{res:#}");
    assert_eq!(res["status"], "success");
    assert_eq!(res["guest"]["osId"], "debian");
    assert_eq!(res["guest"]["osVersion"], "12");
    assert_eq!(res["guest"]["bootloader"], "grub2");
    let ids: Vec<&str> = res["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "validate",
            "storage",
            "detect",
            "preconditions",
            "fstab",
            "network",
            "stage2",
            "initramfs",
            "bootloader"
        ]
    );
    // --no-commands: the commands are listed, not run.
    let cmds: Vec<&serde_json::Value> = res["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["commands"].as_array().unwrap())
        .collect();
    assert!(!cmds.is_empty());
    assert!(
        cmds.iter()
            .all(|c| c["ran"] == false && c.get("exitCode").is_none())
    );
    assert!(
        cmds.iter()
            .any(|c| c["argv"][0].as_str().unwrap().ends_with("update-initramfs")),
        "{cmds:?}"
    );
    // A copy of result.json stays in the guest.
    let copy: serde_json::Value =
        serde_json::from_slice(&fs::read(r.join("opt/vmware/hcx/osam/data/result.json")).unwrap())
            .unwrap();
    assert_eq!(copy["migrationId"], "mig-7f3a");
    // The files really changed, and undo puts them back.
    let fstab = fs::read_to_string(r.join("etc/fstab")).unwrap();
    assert!(fstab.starts_with("UUID="), "{fstab}");
    let interfaces = fs::read_to_string(r.join("etc/network/interfaces")).unwrap();
    assert!(interfaces.contains("iface eth0 inet dhcp"), "{interfaces}");
    let out = Command::new(FIXUPCTL)
        .args(["undo", "--sysroot"])
        .arg(r)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        fs::read_to_string(r.join("etc/fstab")).unwrap(),
        "/dev/sda1 / ext4 errors=remount-ro 0 1\n"
    );
    assert!(
        fs::read_to_string(r.join("etc/network/interfaces"))
            .unwrap()
            .contains("iface ens192 inet dhcp")
    );
    let progress = fs::read_to_string(fixup.path().join("progress.txt")).unwrap();
    assert!(progress.contains("detect: unchanged:"), "{progress}");
}

#[test]
fn validate_exit_statuses() {
    let fixup = fixup_dir();
    let out = Command::new(FIXUPCTL)
        .args(["validate", "--fixup-dir"])
        .arg(fixup.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    fs::write(
        fixup.path().join("replica-disk-map.json"),
        br#"{"version": 1, "disks": [{"sourceDevice": "/dev/sda", "target": {"controller": "scsi0", "unit": "3"}}]}"#,
    )
    .unwrap();
    let out = Command::new(FIXUPCTL)
        .args(["validate", "--fixup-dir"])
        .arg(fixup.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("replica-disk-map.json") && stderr.contains("$.disks[0].target.unit"),
        "{stderr}"
    );
    assert!(
        !fixup.path().join("result.json").exists(),
        "validate writes nothing"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(FIXUPCTL).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(FIXUPCTL)
        .args(["validate", "--fixup-dir", "/nonexistent/osam"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(FIXUPCTL).args(["--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("run"));
}

/// A folder standing in for the stack's /run/osam (`OSAM_RUN_DIR`).
fn run_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn run_and_undo_fail_at_once_while_another_process_holds_the_stage1_lock() {
    use osam_init::lock::{Scope, Stage1Lock};
    let run = run_dir();
    let fixup = fixup_dir();
    fs::write(fixup.path().join("result.json"), b"{\"kept\":true}").unwrap();
    let sysroot = tempfile::tempdir().unwrap();
    // This test's process holds the machine's lock, as PID 1 would.
    let held = Stage1Lock::acquire(&Scope::Machine(run.path().to_path_buf()), "osam-init").unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["run", "--no-commands", "--sysroot"])
        .arg(sysroot.path())
        .arg("--fixup-dir")
        .arg(fixup.path())
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stage 1 is already running on this machine")
            && stderr.contains(&format!("osam-init (pid {}", std::process::id()))
            && stderr.contains(&run.path().join("stage1.lock").display().to_string()),
        "{stderr}"
    );
    // Nothing of the running stage 1 was touched.
    assert_eq!(
        fs::read(fixup.path().join("result.json")).unwrap(),
        b"{\"kept\":true}"
    );
    assert!(!fixup.path().join("progress.txt").exists());
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["undo", "--sysroot"])
        .arg(sysroot.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // `status` names the holder.
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["status", "--json", "--fixup-dir"])
        .arg(fixup.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lock"]["pid"], std::process::id(), "{v}");
    assert_eq!(v["lock"]["command"], "osam-init", "{v}");
    drop(held);
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["run", "--no-commands", "--sysroot"])
        .arg(sysroot.path())
        .arg("--fixup-dir")
        .arg(fixup.path())
        .output()
        .unwrap();
    // The lock is free: it runs (and fails: the tree has no OS).
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(fixup.path().join("END").exists());
}

#[test]
fn offline_the_lock_belongs_to_the_guest_tree() {
    use osam_init::lock::{Stage1Lock, scope};
    let no_run_dir = run_dir().path().join("absent");
    let busy_tree = tempfile::tempdir().unwrap();
    let other_tree = tempfile::tempdir().unwrap();
    let _held = Stage1Lock::acquire(&scope(&no_run_dir, busy_tree.path()), "fixupctl run").unwrap();
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", &no_run_dir)
        .args(["undo", "--sysroot"])
        .arg(busy_tree.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("fixupctl run (pid {}", std::process::id()))
    );
    // Another tree is not held up (undo finds nothing to undo there).
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", &no_run_dir)
        .args(["undo", "--sysroot"])
        .arg(other_tree.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(3), "{out:?}");
}

#[test]
fn status_shows_pid_1s_phase_and_the_last_progress_lines() {
    use osam_init::runstate::{Phase, Tracker};
    let run = run_dir();
    let fixup = tempfile::tempdir().unwrap();
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["status", "--fixup-dir"])
        .arg(fixup.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("keeps no state here"));

    let mut t = Tracker::new(run.path(), fixup.path());
    t.state.transport = Some("disk".into());
    t.phase(Phase::WaitingForBegin, None);
    let lines: String = (1..=12)
        .map(|i| format!("2026-11-25T19:00:{i:02}Z line {i}\n"))
        .collect();
    fs::write(fixup.path().join("progress.txt"), lines).unwrap();
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["status", "--fixup-dir"])
        .arg(fixup.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "PID 1: waiting for BEGIN in {}\n",
            fixup.path().display()
        )),
        "{text}"
    );
    assert!(text.contains("  transport: disk\n"), "{text}");
    assert!(text.contains("stage-1 lock: free\n"), "{text}");
    assert!(text.contains("last 10 line(s)"), "{text}");
    assert!(
        text.contains("line 3\n") && !text.contains("line 2\n"),
        "{text}"
    );

    t.step(7, 12, "network");
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["status", "--json", "--fixup-dir"])
        .arg(fixup.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"]["phase"], "running", "{v}");
    assert_eq!(v["state"]["step"]["id"], "network", "{v}");
    assert_eq!(v["lock"], serde_json::Value::Null, "{v}");
    assert_eq!(v["progress"].as_array().unwrap().len(), 10, "{v}");
}

#[test]
fn collect_bundles_a_temp_tree_into_a_tar_gz() {
    use std::io::Read;
    let run = run_dir();
    let fixup = fixup_dir();
    fs::write(fixup.path().join("result.json"), b"{\"status\":\"failed\"}").unwrap();
    fs::write(fixup.path().join("fixup.log"), b"log line\n").unwrap();
    fs::write(run.path().join("state.json"), b"{\"phase\":\"finished\"}").unwrap();
    let sysroot = tempfile::tempdir().unwrap();
    write(
        sysroot.path(),
        "opt/vmware/hcx/osam/data/manifest.json",
        "{\"changes\":[]}",
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["collect", "--sysroot"])
        .arg(sysroot.path())
        .arg("--fixup-dir")
        .arg(fixup.path())
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let bundle = Path::new(&printed);
    assert!(bundle.starts_with(out_dir.path()), "{printed}");
    assert!(printed.ends_with(".tar.gz"), "{printed}");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        fs::File::open(bundle).unwrap(),
    ));
    let mut files = std::collections::BTreeMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = String::new();
        e.read_to_string(&mut data).unwrap();
        let (_, rel) = name.split_once('/').unwrap();
        files.insert(rel.to_string(), data);
    }
    assert_eq!(files["fixup/result.json"], "{\"status\":\"failed\"}");
    assert_eq!(files["fixup/fixup.log"], "log line\n");
    assert_eq!(files["run/state.json"], "{\"phase\":\"finished\"}");
    assert_eq!(files["guest/manifest.json"], "{\"changes\":[]}");
    assert!(files.contains_key("fixup/replica-disk-map.json"));
    assert!(files.contains_key("proc/cmdline"));
    assert!(files["collect.txt"].contains("not collected:"), "{files:?}");

    // Without --out and away from the stack there is nowhere to put it.
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if !cmdline.contains("osam.disk=") {
        let out = Command::new(FIXUPCTL)
            .env("OSAM_RUN_DIR", run.path().join("absent"))
            .args(["collect", "--sysroot"])
            .arg(sysroot.path())
            .arg("--fixup-dir")
            .arg(fixup.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));
    }
}

#[test]
fn mount_and_umount_work_only_in_rescue_mode_and_say_so() {
    use osam_init::pid1::rescue::{self, RescueState};
    use osam_init::runstate::{Phase, Tracker};
    let run = run_dir();
    // A workstation: no /run/osam at all.
    for args in [&["mount"][..], &["mount", "--rw"], &["umount"]] {
        let out = Command::new(FIXUPCTL)
            .env("OSAM_RUN_DIR", run.path().join("absent"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("only work in the fixup stack's rescue mode")
                && stderr.contains("\"OSAM rescue shell\""),
            "{stderr}"
        );
    }
    // The stack serving the protocol: PID 1's phase is named.
    let mut t = Tracker::new(run.path(), Path::new("/tmp/fixup"));
    t.phase(Phase::WaitingForBegin, None);
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["mount", "--rw"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PID 1 serves the protocol (waiting for BEGIN in /tmp/fixup)"),
        "{stderr}"
    );

    // Rescue mode with nothing mounted: umount has nothing to release,
    // and status shows the phase and the banner.
    t.phase(
        Phase::Rescue,
        Some("no fixup runs; shells on the console".into()),
    );
    let s = RescueState {
        replica_disks: vec!["sda".into()],
        not_mounted: Some("guest.root_not_found: no guest root".into()),
        ..RescueState::default()
    };
    rescue::save(run.path(), &s).unwrap();
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .arg("umount")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing is mounted"));
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("PID 1: rescue: no fixup runs; shells on the console\n"),
        "{text}"
    );
    assert!(
        text.contains("OSAM rescue mode\n")
            && text.contains("the guest is NOT mounted: guest.root_not_found"),
        "{text}"
    );
}

#[test]
fn run_plan_and_undo_default_to_the_stack_paths_only_in_the_stack() {
    use osam_init::pid1::rescue::{self, RescueState};
    let run = run_dir();
    let absent = run.path().join("absent");
    let fixup = fixup_dir();
    let cases: [(&[&str], &str); 3] = [
        (&["run", "--no-commands"], "give --fixup-dir DIR"),
        (&["undo"], "give --sysroot DIR"),
        (&["plan", "--fixup-dir", "/tmp"], "give --sysroot DIR"),
    ];
    for (args, want) in cases {
        let out = Command::new(FIXUPCTL)
            .env("OSAM_RUN_DIR", &absent)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // In the stack's rescue mode the defaults apply: /sysroot must then
    // have the guest mounted.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if osam_init::pid1::mounts::is_mounted(&mountinfo, "/sysroot") {
        eprintln!("/sysroot is a mount point here: its check is skipped");
        return;
    }
    rescue::save(run.path(), &RescueState::default()).unwrap();
    let out = Command::new(FIXUPCTL)
        .env("OSAM_RUN_DIR", run.path())
        .args(["plan", "--fixup-dir"])
        .arg(fixup.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing is mounted at /sysroot") && stderr.contains("`fixupctl mount`"),
        "{stderr}"
    );
}

#[test]
fn run_and_undo_refuse_a_read_only_guest() {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a read-only tmpfs needs root");
        return;
    }
    let sysroot = tempfile::tempdir().unwrap();
    if let Err(e) = mount(
        Some("tmpfs"),
        sysroot.path(),
        Some("tmpfs"),
        MsFlags::MS_RDONLY,
        None::<&str>,
    ) {
        eprintln!("skipped: cannot mount a tmpfs here: {e}");
        return;
    }
    let fixup = fixup_dir();
    let run = run_dir();
    let outcome = std::panic::catch_unwind(|| {
        let out = Command::new(FIXUPCTL)
            .env("OSAM_RUN_DIR", run.path())
            .args(["run", "--no-commands", "--sysroot"])
            .arg(sysroot.path())
            .arg("--fixup-dir")
            .arg(fixup.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is mounted read-only")
                && stderr.contains("`fixupctl mount --rw` first"),
            "{stderr}"
        );
        assert!(!fixup.path().join("result.json").exists());
        let out = Command::new(FIXUPCTL)
            .env("OSAM_RUN_DIR", run.path())
            .args(["undo", "--sysroot"])
            .arg(sysroot.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("fixupctl undo again"));
    });
    let _ = umount2(sysroot.path(), MntFlags::MNT_DETACH);
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}
