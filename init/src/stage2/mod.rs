//! `osam-stage2`: the in-guest stage-2 agent (protocol.md, "Stage 2").
//!
//! Stage 1 leaves the guest in single-user mode with a hook (a systemd unit
//! wanted by `rescue.target`, or an rc script linked as `S00` in run level
//! 1) that runs this program. It:
//!
//! 1. puts the boot target back first (the default target link, inittab,
//!    upstart's `rc-sysinit.conf`), so that whatever happens next the guest
//!    boots to its original target;
//! 2. unless open-vm-tools is installed already, waits for the Tools ISO
//!    (label `VMware Tools`), mounts it read-only and installs from it
//!    (dpkg, rpm or `vmware-install.pl`);
//! 3. runs `restorecon` on the manifest's paths and, recursively, on
//!    `/boot` (without the ESP) and the agent's folder — what stage 1's
//!    commands wrote as new, unlabelled files —, then restores the SELinux
//!    mode saved by stage 1;
//! 4. removes the hook and itself (the data directory stays: backups and
//!    manifest serve undo and audit);
//! 5. logs to `/var/log/osam-stage2.log`, reports its outcome as
//!    `guestinfo.osam.stage2` through `vmware-rpctool` where it exists,
//!    and powers off.
//!
//! Problems with the ISO or the install are warnings; problems restoring
//! the guest are errors (the outcome is `failed`; when the boot target
//! itself could not be restored the hook stays, so that the next boot tries
//! again). A second run after a partial first one
//! finishes the job. Everything works on a root path, so tests run the
//! agent on a tree with a recording runner.

pub mod install;
pub mod iso;
pub mod log;
pub mod restore;

#[cfg(test)]
mod tests;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::guestfs::GuestRoot;
use crate::guestwrite::{Manifest, read_manifest};
use crate::runner::{Command, CommandRecord, CommandRunner};
use log::Log;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The guest's root: `/` in the guest, a tree in tests.
    pub root: PathBuf,
    /// Do everything but the power-off.
    pub dry_run: bool,
    /// How long to wait for the Tools ISO.
    pub iso_timeout: Duration,
    /// How often to look for it.
    pub poll_interval: Duration,
    /// Where the ISO may show up (host paths).
    pub devices: Vec<PathBuf>,
    /// Where to mount it (a host path); default `<root>/tmp/osam-stage2-iso`.
    pub mount_point: Option<PathBuf>,
    /// Log to `/dev/console` too.
    pub console: bool,
    /// The guest's architecture in the protocol's words (`x86_64`, `i686`);
    /// the agent is built for it, so the default is its own.
    pub arch: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/"),
            dry_run: false,
            iso_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(2),
            devices: iso::DEFAULT_DEVICES.iter().map(PathBuf::from).collect(),
            mount_point: None,
            console: true,
            arch: crate::STACK_ARCH.to_string(),
        }
    }
}

/// `success` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Failed,
}

/// What the agent did; reported as `guestinfo.osam.stage2` and in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub status: Status,
    /// VMware Tools (or open-vm-tools) are installed now.
    pub tools_installed: bool,
    /// How: `kept` (already there), `deb`, `rpm`, `tar`, or `none`.
    pub tools: String,
    /// What was put back.
    pub restored: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
    pub version: String,
}

impl Outcome {
    fn new() -> Self {
        Outcome {
            status: Status::Success,
            tools_installed: false,
            tools: "none".into(),
            restored: Vec::new(),
            warnings: Vec::new(),
            errors: Vec::new(),
            version: crate::VERSION.to_string(),
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"status\":\"failed\",\"errors\":[\"report: {e}\"]}}"))
    }

    /// The program's exit code: 0 on success, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self.status {
            Status::Success => 0,
            Status::Failed => 1,
        }
    }
}

/// The guest tree the agent works on.
pub struct Guest {
    pub root: PathBuf,
    pub arch: String,
}

impl Guest {
    /// Is the agent working on the running system?
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The host path of a guest path.
    pub fn host(&self, guest: &str) -> PathBuf {
        self.root.join(guest.trim_start_matches('/'))
    }

    /// The guest path of a host path under the root (the path itself
    /// when it is not under it).
    pub fn guest_path(&self, host: &Path) -> String {
        match host.strip_prefix(&self.root) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => host.display().to_string(),
        }
    }

    /// Is there an executable file at this guest path?
    pub fn is_executable(&self, guest: &str) -> bool {
        std::fs::metadata(self.host(guest))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }

    /// Runs a command in the guest (chrooted when the root is not `/`),
    /// its output into the log.
    pub fn run(
        &self,
        runner: &mut dyn CommandRunner,
        cmd: Command,
        log: &mut Log,
    ) -> CommandRecord {
        let cmd = if self.is_live() {
            cmd
        } else {
            cmd.in_root(&self.root)
        };
        run_logged(runner, &cmd, log)
    }
}

/// Runs a command outside the guest root (mount, umount), logged.
fn run_logged(runner: &mut dyn CommandRunner, cmd: &Command, log: &mut Log) -> CommandRecord {
    log.info(&format!("running: {}", cmd.display()));
    let rec = runner.run(cmd, log);
    if rec.succeeded() {
        log.info(&format!(
            "done in {} ms: {}",
            rec.duration_ms.unwrap_or(0),
            cmd.display()
        ));
    } else {
        log.info(&rec.describe_failure());
    }
    rec
}

/// Runs the agent: see the module documentation. Never panics on what it
/// finds in the guest; the power-off (unless dry-run or not on `/`)
/// happens before it returns.
pub fn run(cfg: &Config, runner: &mut dyn CommandRunner) -> Outcome {
    let g = Guest {
        root: cfg.root.clone(),
        arch: cfg.arch.clone(),
    };
    let mut log = Log::open(&cfg.root, cfg.console && g.is_live());
    let mut out = Outcome::new();
    log.info(&format!(
        "osam-stage2 {} ({}) starting on {}",
        crate::VERSION,
        crate::STACK_ARCH,
        cfg.root.display()
    ));
    let manifest = load_manifest(&g, &mut log, &mut out);

    // 1. The boot target, before anything else can stop the program.
    let touched = restore::restore_boot_target(&g, manifest.as_ref(), &mut log, &mut out);
    let boot_ok = out.errors.is_empty();

    // 2. VMware Tools. A panic here is a warning: the restore goes on.
    let tools = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tools_step(cfg, &g, runner, &mut log, &mut out)
    }));
    if tools.is_err() {
        let msg = "the VMware Tools step crashed (see the panic above): Tools not installed";
        log.error(msg);
        out.warnings.push(msg.into());
    }

    // 3. SELinux: relabel, then the saved mode.
    restore::restore_selinux(&g, manifest.as_ref(), &touched, runner, &mut log, &mut out);

    // 4. The hook and the agent go once the boot target is back; when it
    // could not be restored they stay, so that the next boot (single-user
    // again) tries again instead of stopping at a password prompt.
    if boot_ok {
        if restore::remove_hook(&g, &mut log, &mut out) {
            restore::remove_agent(&g, &mut log, &mut out);
        }
    } else {
        log.error(
            "the boot target could not be restored: the stage-2 hook stays so that the next \
             boot tries again",
        );
    }

    // 5. Report.
    out.status = if out.errors.is_empty() {
        Status::Success
    } else {
        Status::Failed
    };
    report(&g, &out, runner, &mut log);

    // 6. Power off.
    if cfg.dry_run || !g.is_live() {
        log.info("not powering off (dry run or not the running system)");
        log.sync();
    } else {
        power_off(&g, runner, &mut log);
    }
    out
}

fn load_manifest(g: &Guest, log: &mut Log, out: &mut Outcome) -> Option<Manifest> {
    let root = match GuestRoot::open(&g.root) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("opening {}: {e}", g.root.display());
            log.warn(&msg);
            out.warnings.push(msg);
            return None;
        }
    };
    match read_manifest(&root) {
        Ok(Some(m)) => {
            log.info(&format!(
                "manifest: {} change(s) in {} run(s)",
                m.changes.len(),
                m.runs.len()
            ));
            Some(m)
        }
        Ok(None) => {
            log.info("no manifest.json: nothing recorded by stage 1 to relabel");
            None
        }
        Err(e) => {
            let msg = format!("reading the manifest: {e}");
            log.warn(&msg);
            out.warnings.push(msg);
            None
        }
    }
}

fn tools_step(
    cfg: &Config,
    g: &Guest,
    runner: &mut dyn CommandRunner,
    log: &mut Log,
    out: &mut Outcome,
) {
    if let Some(d) = install::has_vmtoolsd(g) {
        log.info(&format!(
            "{d} exists: the guest keeps its VMware Tools; not waiting for the Tools ISO"
        ));
        out.tools = "kept".into();
        out.tools_installed = true;
        return;
    }
    log.info(&format!(
        "waiting up to {} s for the Tools ISO (label {:?})",
        cfg.iso_timeout.as_secs(),
        iso::TOOLS_LABEL
    ));
    let mut notes = Vec::new();
    let dev = iso::wait_for_iso(&cfg.devices, cfg.iso_timeout, cfg.poll_interval, &mut notes);
    for n in &notes {
        log.info(&format!("looked at {n}"));
    }
    let Some(dev) = dev else {
        let msg = format!(
            "no CD-ROM labelled {:?} within {} s: VMware Tools not installed",
            iso::TOOLS_LABEL,
            cfg.iso_timeout.as_secs()
        );
        log.warn(&msg);
        out.warnings.push(msg);
        return;
    };
    log.info(&format!("found the Tools ISO on {}", dev.display()));

    let mnt = cfg
        .mount_point
        .clone()
        .unwrap_or_else(|| g.host("/tmp/osam-stage2-iso"));
    let created = if mnt.is_dir() {
        false
    } else {
        let _ = std::fs::remove_file(&mnt);
        if let Err(e) = install::create_private_dir(&mnt) {
            let msg = format!("creating the mount point {}: {e}", mnt.display());
            log.warn(&msg);
            out.warnings.push(msg);
            return;
        }
        true
    };
    let mount = Command::new(&[
        "mount".to_string(),
        "-t".to_string(),
        "iso9660".to_string(),
        "-o".to_string(),
        "ro".to_string(),
        dev.display().to_string(),
        mnt.display().to_string(),
    ])
    .timeout(Duration::from_secs(120));
    let rec = run_logged(runner, &mount, log);
    if rec.succeeded() {
        if let Some(how) = install::install_from(g, &mnt, runner, log, out) {
            out.tools = how.into();
            out.tools_installed = true;
            log.info(&format!("VMware Tools installed ({how})"));
        }
        let umount = Command::new(&["umount".to_string(), mnt.display().to_string()])
            .timeout(Duration::from_secs(120));
        let rec = run_logged(runner, &umount, log);
        if !rec.succeeded() {
            let msg = format!("unmounting the Tools ISO: {}", rec.describe_failure());
            log.warn(&msg);
            out.warnings.push(msg);
        }
    } else {
        let msg = format!("mounting the Tools ISO: {}", rec.describe_failure());
        log.warn(&msg);
        out.warnings.push(msg);
    }
    if created {
        let _ = std::fs::remove_dir(&mnt);
    }
}

/// The report: in the log, and as `guestinfo.osam.stage2` where
/// `vmware-rpctool` exists.
fn report(g: &Guest, out: &Outcome, runner: &mut dyn CommandRunner, log: &mut Log) {
    let json = out.to_json();
    log.info(&format!("outcome: {json}"));
    let rpctool = ["/usr/bin/vmware-rpctool", "/usr/sbin/vmware-rpctool"]
        .into_iter()
        .find(|p| g.is_executable(p));
    match rpctool {
        Some(t) => {
            let cmd = Command::new(&[
                t.to_string(),
                format!("info-set guestinfo.osam.stage2 {json}"),
            ])
            .timeout(Duration::from_secs(30));
            let rec = g.run(runner, cmd, log);
            if !rec.succeeded() {
                log.warn(&format!(
                    "reporting through vmware-rpctool: {}",
                    rec.describe_failure()
                ));
            }
        }
        None => log.info("no vmware-rpctool: the outcome is reported in the log only"),
    }
}

/// Powers the guest off: `systemctl --no-block poweroff` under systemd,
/// else `poweroff`, else `shutdown -h now`.
fn power_off(g: &Guest, runner: &mut dyn CommandRunner, log: &mut Log) {
    log.info("powering off");
    log.sync();
    nix::unistd::sync();
    let systemd = g.host("/run/systemd/system").is_dir();
    let mut tries: Vec<Vec<&str>> = Vec::new();
    if systemd {
        tries.push(vec!["systemctl", "--no-block", "poweroff"]);
    }
    tries.push(vec!["poweroff"]);
    tries.push(vec!["shutdown", "-h", "now"]);
    for argv in tries {
        let rec = g.run(
            runner,
            Command::new(&argv).timeout(Duration::from_secs(60)),
            log,
        );
        if rec.succeeded() {
            log.sync();
            return;
        }
    }
    log.error("could not power off: the guest stays up in single-user mode");
    log.sync();
}
