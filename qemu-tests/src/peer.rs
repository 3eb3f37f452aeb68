//! The peer comparison of `make bench-peer` (and of `make bench` with
//! `OSAM_BENCH_PEER=1`): virt-v2v 2.2 — Debian's, run as its manual page
//! describes for a local disk — and our flow, on the same reference guest
//! (a), each result then booted on the same VMware virtual hardware.
//!
//! 1. **virt-v2v** converts a copy of the guest's qcow2
//!    (`-i disk <copy> -o local -os <dir> -of qcow2`) with
//!    `LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg`
//!    (no usable KVM here). It runs in a session of its own, so that its
//!    whole process tree — virt-v2v, nbdkit, the libguestfs appliance's
//!    QEMU — is sampled for memory ([`RssSampler`]) and killed together on
//!    a timeout. virt-v2v converts for KVM (virtio drivers in the
//!    initramfs, `/dev/vdX` names): that is its real behaviour, and the
//!    table says so.
//! 2. **Our flow**: the manager emulator's stage 1 and stage 2 on the same
//!    guest ([`crate::emulator::run`]), whose last boot is the check boot.
//! 3. **The check boot**: the emulator's check-boot machine
//!    ([`crate::emulator::vm_config`] with [`Boot::Check`]: pvscsi at
//!    scsi0:0, the blueprint's VMXNET3 NICs and target MACs, SeaBIOS) —
//!    the emulator's own for our result, the same configuration with
//!    virt-v2v's disk for the peer's. Booted means: the guest's check
//!    block ([`crate::guests::check`]) appeared on the serial console
//!    within the timeout. Otherwise the row carries the line of the serial
//!    log that says why ([`failure_reason`]); a boot that reaches a dead
//!    end (an initramfs shell, a kernel panic, emergency mode) is stopped
//!    there instead of waiting out the timeout.
//!
//! The outcome is a table ([`PeerReport::table`]) and JSON
//! ([`PeerReport`], written under `target/bench/`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::emulator::{
    self, Blueprint, Boot, MachineFiles, PhaseStatus, RunOptions, RunReport, StopAfter,
    check_block, vm_config,
};
use crate::guests::GuestImage;
use crate::guests::check::GuestCheck;
use crate::vm::Vm;

/// How long virt-v2v may run (the lab measured 574 s on this machine).
pub const V2V_TIMEOUT: Duration = Duration::from_secs(2400);
/// How long a converted guest gets to print its check block.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the memory sampler looks at the processes.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);
/// The peer's name in the output.
pub const PEER_NAME: &str = "virt-v2v";
/// What the peer's output is converted for, said in the table.
pub const PEER_TARGET_NOTE: &str = "KVM (virtio): virt-v2v's own target; it has no VMware output";
/// What our flow's output is fixed for.
pub const OUR_TARGET_NOTE: &str = "VMware (pvscsi, vmxnet3)";

/// Serial console lines after which a boot makes no more progress.
const DEAD_ENDS: &[&str] = &[
    "Dropping to a shell!",
    "Kernel panic - not syncing",
    "You are in emergency mode",
    "Give root password for maintenance",
];

/// Lines that say why a boot failed, most telling first.
const FAILURE_MARKERS: &[&str] = &[
    "ALERT!",
    "Kernel panic",
    "Gave up waiting",
    "emergency mode",
    "does not exist",
    "Failed to mount",
    "Failed to start",
    "not found",
    "error",
];

// ---------------------------------------------------------------------
// Memory sampling
// ---------------------------------------------------------------------

/// Which processes a [`RssSampler`] adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every process of this session (a tool started with `setsid`).
    Session(i32),
    /// Every descendant of this process (not the process itself).
    DescendantsOf(i32),
}

/// One process in `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    /// Its id.
    pub pid: i32,
    /// Its parent's.
    pub ppid: i32,
    /// Its session's.
    pub session: i32,
    /// Its resident set, in pages.
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat` (the command name may hold spaces and
/// parentheses: the fields after the last `)` are read).
pub fn parse_stat(text: &str) -> Option<ProcInfo> {
    let pid = text.split_whitespace().next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // state(3) ppid(4) pgrp(5) session(6) … rss(24): index = field - 3.
    Some(ProcInfo {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        rss_pages: fields.get(21)?.parse().ok()?,
    })
}

/// Every process of the machine.
pub fn processes() -> Vec<ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t))
        .collect()
}

/// The processes of `procs` that `selection` picks.
pub fn select(procs: &[ProcInfo], selection: Selection) -> Vec<ProcInfo> {
    match selection {
        Selection::Session(sid) => procs.iter().filter(|p| p.session == sid).copied().collect(),
        Selection::DescendantsOf(root) => {
            let mut children: HashMap<i32, Vec<&ProcInfo>> = HashMap::new();
            for p in procs {
                children.entry(p.ppid).or_default().push(p);
            }
            let mut out = Vec::new();
            let mut todo = vec![root];
            while let Some(pid) = todo.pop() {
                for child in children.get(&pid).into_iter().flatten() {
                    if child.pid != root && !out.iter().any(|p: &ProcInfo| p.pid == child.pid) {
                        out.push(**child);
                        todo.push(child.pid);
                    }
                }
            }
            out
        }
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf(3) has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

/// Samples the summed resident memory of a set of processes every
/// [`SAMPLE_INTERVAL`] on a thread of its own, keeping the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl RssSampler {
    /// Starts sampling.
    pub fn start(selection: Selection) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let page = page_size();
        let thread = std::thread::spawn(move || {
            let mut peak = 0u64;
            loop {
                let sum: u64 = select(&processes(), selection)
                    .iter()
                    .map(|p| p.rss_pages * page)
                    .sum();
                peak = peak.max(sum);
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(SAMPLE_INTERVAL);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak in bytes (`None` when nothing was seen).
    pub fn finish(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.thread.take()?.join().ok()?;
        (peak > 0).then_some(peak)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------
// virt-v2v
// ---------------------------------------------------------------------

/// How a virt-v2v conversion went.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V2vRun {
    /// Wall time.
    pub seconds: f64,
    /// Whether it exited 0.
    pub ok: bool,
    /// Its exit status, or the timeout.
    pub status: String,
    /// The peak of the summed resident memory of its session (virt-v2v,
    /// nbdkit, the appliance's QEMU), sampled.
    pub peak_rss_bytes: Option<u64>,
    /// The largest single process's peak resident memory (`wait4`'s
    /// `ru_maxrss` over virt-v2v and the descendants it reaped: what
    /// `/usr/bin/time -v` reports).
    pub max_process_rss_bytes: Option<u64>,
    /// The converted disk (`<dir>/<name>-sda`).
    pub output: Option<PathBuf>,
    /// Its standard output and error.
    pub log: PathBuf,
    /// Its progress lines (`[  12.3] Opening the source`).
    pub progress: Vec<String>,
    /// Its own messages and warnings (`virt-v2v: warning: …`).
    #[serde(default)]
    pub messages: Vec<String>,
}

/// virt-v2v's version line (`virt-v2v 2.2.0`), if it is installed.
pub fn v2v_version() -> Option<String> {
    let out = Command::new("virt-v2v").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Kills every process of session `sid`.
fn kill_session(sid: i32) {
    for p in select(&processes(), Selection::Session(sid)) {
        // SAFETY: kill(2) on a pid; a stale pid fails harmlessly.
        unsafe {
            libc::kill(p.pid, libc::SIGKILL);
        }
    }
}

/// Kills a session's processes when dropped (a panic or an early return
/// never leaves virt-v2v's appliance running).
struct SessionGuard(i32);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        kill_session(self.0);
    }
}

/// Converts `input` (a qcow2 the run may use up: give it a copy) with
/// virt-v2v into `out_dir` as `<name>-sda` (qcow2); its output goes to
/// `log`. Bounded by `timeout`.
pub fn run_virt_v2v(
    input: &Path,
    out_dir: &Path,
    name: &str,
    log: &Path,
    timeout: Duration,
) -> Result<V2vRun> {
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = Command::new("virt-v2v");
    if std::env::var_os("OSAM_PEER_VERBOSE").is_some_and(|v| v == "1") {
        command.args(["-v", "-x"]);
    }
    command
        .args(["-i", "disk"])
        .arg(input)
        .args(["-o", "local", "-os"])
        .arg(out_dir)
        .args(["-of", "qcow2", "-on", name])
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setsid(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let child = command
        .spawn()
        .context("starting virt-v2v (make deps-peer installs it)")?;
    let pid = child.id() as i32;
    let guard = SessionGuard(pid);
    let sampler = RssSampler::start(Selection::Session(pid));
    let mut status = 0i32;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ended = loop {
        // SAFETY: wait4 on our own child, with valid out pointers.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break true;
        }
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            drop(guard);
            bail!("waiting for virt-v2v: {e}");
        }
        if start.elapsed() >= timeout {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let seconds = start.elapsed().as_secs_f64();
    // What is left of the session (the appliance normally ends with it).
    drop(guard);
    if !ended {
        // SAFETY: reaping our own killed child.
        unsafe {
            libc::waitpid(pid, &mut status, 0);
        }
    }
    let peak_rss_bytes = sampler.finish();
    let (ok, status) = if !ended {
        (
            false,
            format!("killed after {} s (timeout)", timeout.as_secs()),
        )
    } else if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (code == 0, format!("exit {code}"))
    } else {
        (false, format!("signal {}", libc::WTERMSIG(status)))
    };
    let text = fs::read_to_string(log).unwrap_or_default();
    let progress = text
        .lines()
        .filter(|l| l.starts_with('[') && l.contains("] "))
        .map(str::to_owned)
        .collect();
    let messages = text
        .lines()
        .filter(|l| l.starts_with("virt-v2v: "))
        .map(str::to_owned)
        .collect();
    let output = out_dir.join(format!("{name}-sda"));
    Ok(V2vRun {
        seconds,
        ok,
        status,
        peak_rss_bytes,
        max_process_rss_bytes: (ended && usage.ru_maxrss > 0)
            .then(|| usage.ru_maxrss as u64 * 1024),
        output: output.is_file().then_some(output),
        log: log.to_path_buf(),
        progress,
        messages,
    })
}

// ---------------------------------------------------------------------
// The check boot
// ---------------------------------------------------------------------

/// How a converted guest's boot on VMware hardware went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootOutcome {
    /// The check block appeared.
    pub booted: bool,
    /// From QEMU's start to the check block, or to the end of the wait.
    pub seconds: f64,
    /// Why not, from the serial log.
    pub reason: Option<String>,
    /// The NIC names the guest reported (check block), or the kernel
    /// logged (`renamed from`) when there is no check block.
    pub nics: Vec<String>,
    /// Where the NIC names come from: `check block`, `kernel log`, or
    /// nothing.
    pub nics_from: Option<String>,
    /// The check block's `system=` and active targets, when booted.
    pub system: Option<String>,
    /// The serial log.
    pub serial_log: PathBuf,
}

/// Removes terminal escape sequences and control characters from a
/// serial log line.
pub fn clean_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte; other escapes: one more char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

/// The serial log's line that says why a boot did not reach its check
/// block: the last line with the most telling marker of
/// [`FAILURE_MARKERS`] (kernel timestamps removed), else its last
/// non-empty line.
pub fn failure_reason(serial: &str) -> Option<String> {
    let lines: Vec<String> = serial
        .lines()
        .map(clean_line)
        .filter(|l| !l.is_empty())
        .collect();
    let strip_time = |l: &str| -> String {
        match (l.starts_with('['), l.find("] ")) {
            (true, Some(at)) => l[at + 2..].trim().to_owned(),
            _ => l.to_owned(),
        }
    };
    for marker in FAILURE_MARKERS {
        let lower = marker.to_ascii_lowercase();
        if let Some(line) = lines
            .iter()
            .rev()
            .find(|l| l.to_ascii_lowercase().contains(&lower))
        {
            return Some(strip_time(line));
        }
    }
    lines.last().map(|l| strip_time(l))
}

/// The NIC names a kernel log shows (`… ens4: renamed from eth0`), in
/// order, each once.
pub fn renamed_nics(serial: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in serial.lines() {
        let Some(at) = line.find(": renamed from ") else {
            continue;
        };
        if let Some(name) = line[..at].split_whitespace().last() {
            let name = name.to_owned();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// What a serial log says about a boot: the outcome's fields but the
/// time.
pub fn read_boot(serial: &str, serial_log: &Path) -> BootOutcome {
    let mut outcome = BootOutcome {
        serial_log: serial_log.to_path_buf(),
        ..BootOutcome::default()
    };
    match GuestCheck::parse(serial) {
        Ok(check) => {
            outcome.booted = true;
            outcome.nics = check
                .nics
                .iter()
                .map(|n| {
                    if n.ipv4.is_empty() {
                        n.name.clone()
                    } else {
                        format!("{} ({})", n.name, n.ipv4.join(","))
                    }
                })
                .collect();
            outcome.nics_from = Some("check block".into());
            let active: Vec<&str> = check
                .targets
                .iter()
                .filter(|(_, s)| *s == "active")
                .map(|(t, _)| t.as_str())
                .collect();
            outcome.system = Some(format!(
                "system={} active: {}",
                check.system,
                active.join(",")
            ));
        }
        Err(_) => {
            outcome.reason = failure_reason(serial);
            outcome.nics = renamed_nics(serial);
            if !outcome.nics.is_empty() {
                outcome.nics_from = Some("kernel log".into());
            }
        }
    }
    outcome
}

/// Boots `disk` (any QEMU format; an overlay in `work` takes the writes)
/// on the check-boot machine of `blueprint` (its disk 0 replaced by
/// `disk`), waits up to `timeout` for the check block or a dead end.
pub fn boot_check(
    blueprint: &Blueprint,
    disk: &Path,
    work: &Path,
    serial_log: &Path,
    timeout: Duration,
) -> Result<BootOutcome> {
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let (format, _) = emulator::image_info(disk).map_err(anyhow::Error::msg)?;
    let overlay = work.join("check-disk.qcow2");
    let _ = fs::remove_file(&overlay);
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", &format, "-b"])
        .arg(fs::canonicalize(disk)?)
        .arg(&overlay)
        .status()
        .context("running qemu-img create")?;
    if !status.success() {
        bail!("qemu-img create of an overlay on {} failed", disk.display());
    }
    let files = MachineFiles {
        stack: PathBuf::new(),
        disks: vec![Some(overlay)],
        share: work.join("share"),
        qmp: work.join("qmp.sock"),
        tools_iso: None,
        ovmf_vars: None,
    };
    let config = vm_config(blueprint, &files, Boot::Check, serial_log);
    let mut vm = Vm::start(&config)?;
    let start = Instant::now();
    let log = serial_log.to_path_buf();
    let waited = vm.wait_for(
        || {
            let bytes = fs::read(&log).ok()?;
            let text = String::from_utf8_lossy(&bytes);
            if check_block(&text).is_some() {
                return Some(true);
            }
            DEAD_ENDS.iter().any(|d| text.contains(d)).then_some(false)
        },
        timeout,
        "the check block",
    );
    let seconds = start.elapsed().as_secs_f64();
    match waited {
        Ok(true) => {
            vm.power_off(Duration::from_secs(60));
        }
        _ => vm.kill(),
    }
    drop(vm);
    let text = String::from_utf8_lossy(&fs::read(serial_log).unwrap_or_default()).into_owned();
    let mut outcome = read_boot(&text, serial_log);
    outcome.seconds = seconds;
    if !outcome.booted {
        let why = match waited {
            Ok(_) => "stopped at a dead end",
            Err(crate::Error::Timeout { .. }) => "no check block before the timeout",
            Err(_) => "QEMU ended before the check block",
        };
        outcome.reason = Some(match outcome.reason.take() {
            Some(line) => format!("{line} ({why})"),
            None => why.to_owned(),
        });
    }
    Ok(outcome)
}

// ---------------------------------------------------------------------
// Our flow
// ---------------------------------------------------------------------

/// How our flow went.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OurRun {
    /// Stage 1 and stage 2 (prepare, boot to READY, fixup, power-off,
    /// stage 2): the conversion, without the check boot.
    pub seconds: f64,
    /// Stage 1 alone (prepare to power-off).
    pub stage1_seconds: f64,
    /// Stage 2 alone.
    pub stage2_seconds: f64,
    /// Whether stage 1 and 2 succeeded.
    pub ok: bool,
    /// The emulator's failure, if any.
    pub failure: Option<String>,
    /// The peak of the summed resident memory of this process's children
    /// (the QEMU of each boot), sampled.
    pub peak_rss_bytes: Option<u64>,
    /// The check boot.
    pub boot: BootOutcome,
    /// The emulator's report.
    pub report: PathBuf,
}

/// Runs the manager emulator's whole flow (stage 1, stage 2, check boot
/// with `check_timeout`) on `blueprint` with the Tools ISO `tools_iso`
/// and the stack image `stack`; logs in `logs`. `out` gets its progress.
pub fn run_our_flow(
    blueprint: &Blueprint,
    stack: &Path,
    tools_iso: &Path,
    logs: &Path,
    check_timeout: Duration,
    out: &mut dyn FnMut(&str),
) -> OurRun {
    let mut bp = blueprint.clone();
    bp.timeouts.check_seconds = check_timeout.as_secs();
    let mut options = RunOptions::new(stack, logs);
    options.tools_iso = Some(tools_iso.to_path_buf());
    options.stop_after = StopAfter::Full;
    let sampler = RssSampler::start(Selection::DescendantsOf(std::process::id() as i32));
    let report = emulator::run(&bp, &options, out);
    let peak_rss_bytes = sampler.finish();
    our_outcome(&report, peak_rss_bytes)
}

/// Reads an emulator report as our row.
pub fn our_outcome(report: &RunReport, peak_rss_bytes: Option<u64>) -> OurRun {
    let sum = |pred: &dyn Fn(&str) -> bool| -> f64 {
        report
            .phases
            .iter()
            .filter(|p| pred(&p.name))
            .map(|p| p.seconds)
            .sum()
    };
    let stage1_seconds = sum(&|n| n == "prepare" || n.starts_with("stage1."));
    let stage2_seconds = sum(&|n| n == "stage2");
    let converted = report
        .phases
        .iter()
        .filter(|p| p.name == "prepare" || p.name.starts_with("stage"))
        .all(|p| p.status != PhaseStatus::Failed)
        && report
            .result
            .as_ref()
            .is_some_and(|r| r["status"] == "success");
    let serial_log = report
        .serial_log(Boot::Check)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&fs::read(&serial_log).unwrap_or_default()).into_owned();
    let mut boot = read_boot(&text, &serial_log);
    boot.seconds = report.phase("check.boot").map_or(0.0, |p| p.seconds);
    if !boot.booted {
        let why = match report.phase("check.boot") {
            None => "the check boot did not run".to_owned(),
            Some(p) => p.detail.clone(),
        };
        boot.reason = Some(match (boot.reason.take(), report.phase("check.boot")) {
            (Some(line), Some(_)) => format!("{line} ({why})"),
            (_, _) => why,
        });
    }
    OurRun {
        seconds: stage1_seconds + stage2_seconds,
        stage1_seconds,
        stage2_seconds,
        ok: converted,
        failure: report
            .failure
            .as_ref()
            .map(|f| format!("{}: {}", f.step, f.message)),
        peak_rss_bytes,
        boot,
        report: report.logs.report.clone(),
    }
}

// ---------------------------------------------------------------------
// The comparison
// ---------------------------------------------------------------------

/// One row of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    /// `virt-v2v` or `osam (stage 1 + stage 2)`.
    pub tool: String,
    /// The tool's version.
    pub version: String,
    /// What it converts the guest for.
    pub converts_for: String,
    /// Whether the conversion itself ended well (exit 0 / result success).
    pub converted: bool,
    /// The conversion's wall time (without the check boot).
    pub wall_seconds: f64,
    /// Peak summed resident memory of its processes.
    pub peak_rss_bytes: Option<u64>,
    /// The check boot on VMware hardware.
    pub boot: BootOutcome,
    /// More: exit status, stage split, failure.
    pub detail: String,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerReport {
    /// When (UTC, RFC 3339).
    pub date: String,
    /// The machine (CPU, cores, QEMU).
    pub machine: String,
    /// The guest.
    pub guest: String,
    /// The hardware of the check boot.
    pub check_hardware: String,
    /// The rows: the peer, then ours.
    pub rows: Vec<PeerRow>,
    /// virt-v2v's run in full.
    pub v2v: Option<V2vRun>,
    /// Our run in full.
    pub ours: Option<OurRun>,
    /// The notes printed under the table.
    pub notes: Vec<String>,
}

/// `12.3 MiB` / `1.95 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / 1048576.0;
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

/// `574 s (9m34s)`.
pub fn human_seconds(s: f64) -> String {
    let whole = s.round() as u64;
    if whole >= 60 {
        format!("{s:.0} s ({}m{:02}s)", whole / 60, whole % 60)
    } else {
        format!("{s:.1} s")
    }
}

impl PeerReport {
    /// The Markdown table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| tool | converts for | wall time | peak RSS | boots on VMware hw (pvscsi + vmxnet3) | NIC names seen |\n\
             |---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let boots = if r.boot.booted {
                format!(
                    "yes, check block after {:.0} s{}",
                    r.boot.seconds,
                    r.boot
                        .system
                        .as_deref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                )
            } else {
                format!(
                    "**no** ({:.0} s): `{}`",
                    r.boot.seconds,
                    r.boot.reason.as_deref().unwrap_or("?").replace('|', "\\|")
                )
            };
            let nics = if r.boot.nics.is_empty() && !r.boot.booted {
                "none (no check block; the kernel log names none)".to_owned()
            } else if r.boot.nics.is_empty() {
                "none".to_owned()
            } else {
                let from = match r.boot.nics_from.as_deref() {
                    Some("kernel log") => " (kernel log)",
                    _ => "",
                };
                format!("{}{from}", r.boot.nics.join(", "))
            };
            let wall = if r.converted {
                human_seconds(r.wall_seconds)
            } else {
                format!("{} (failed: {})", human_seconds(r.wall_seconds), r.detail)
            };
            out.push_str(&format!(
                "| {} {} | {} | {} | {} | {} | {} |\n",
                r.tool,
                r.version,
                r.converts_for,
                wall,
                r.peak_rss_bytes.map_or("-".into(), human_bytes),
                boots,
                nics
            ));
        }
        out
    }

    /// The table, the notes and the run's facts, for a terminal.
    pub fn text(&self) -> String {
        let mut out = format!(
            "Peer comparison on {} ({}), {}\ncheck boot: {}\n\n{}",
            self.guest,
            self.machine,
            self.date,
            self.check_hardware,
            self.table()
        );
        out.push('\n');
        for n in &self.notes {
            out.push_str(&format!("- {n}\n"));
        }
        out
    }
}

/// What the machine is: CPU model, cores, QEMU's version.
pub fn machine_description() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.replace("QEMU emulator version ", "QEMU "))
        })
        .unwrap_or_else(|| "QEMU ?".into());
    format!("{cpu}, {cores} cores, {qemu} under TCG")
}

/// Now, UTC, as `2026-11-26T01:02:03Z`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Where the comparison's files go.
#[derive(Debug, Clone)]
pub struct PeerPaths {
    /// `target/bench/peer/`: logs, virt-v2v's output, work folders.
    pub dir: PathBuf,
}

impl PeerPaths {
    /// Under `bench_dir` (`target/bench`).
    pub fn new(bench_dir: &Path) -> Self {
        Self {
            dir: bench_dir.join("peer"),
        }
    }
}

/// Runs the comparison on guest `image` (guest (a)): virt-v2v on a copy
/// of its boot disk and its check boot, then our flow; one heavy job at a
/// time. `say` gets the progress. The stack image and Tools ISO are
/// given.
pub fn compare(
    image: &GuestImage,
    stack: &Path,
    tools_iso: &Path,
    bench_dir: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<PeerReport> {
    let paths = PeerPaths::new(bench_dir);
    if paths.dir.exists() {
        fs::remove_dir_all(&paths.dir)
            .with_context(|| format!("removing the old {}", paths.dir.display()))?;
    }
    fs::create_dir_all(&paths.dir)?;
    let blueprint = emulator::blueprint_for_guest(image, "bench-peer-osam");
    let guest = format!(
        "guest (a) {} ({})",
        image.recipe().name,
        image.manifest.kernels.join(", ")
    );
    let check_hardware = format!(
        "the emulator's check-boot machine: SeaBIOS, {} with the disk at scsi0:0, {} {} NIC(s) \
         with the target MACs, {} MiB, TCG",
        blueprint.controller().name(),
        blueprint.nics.len(),
        blueprint.nic_model.model().qemu_device(),
        blueprint.memory_mib
    );
    let mut notes = vec![
        "virt-v2v converts for KVM/virtio (virtio-blk/-scsi and virtio-net drivers, /dev/vdX \
         names); it has no VMware target. Booting its output on VMware hardware is what this \
         table tests: that is the peer's real behaviour, not a misuse."
            .to_owned(),
        format!(
            "Both results boot on the same machine configuration ({check_hardware}); booted = \
             the guest's check block on ttyS0 within {} s.",
            CHECK_TIMEOUT.as_secs()
        ),
        "Wall time: virt-v2v's run (LIBGUESTFS_BACKEND=direct, force_tcg); ours: stage 1 + \
         stage 2 (boot to READY, fixup, power-off, the stage-2 boot), without the check boot."
            .to_owned(),
        "Peak RSS: the summed resident memory of the tool's processes, sampled every 0.5 s \
         (virt-v2v's session: virt-v2v, nbdkit, the appliance's QEMU; ours: the QEMU of each \
         boot)."
            .to_owned(),
    ];

    // virt-v2v.
    let version = v2v_version().context(
        "virt-v2v is not installed: run `make deps-peer` (scripts/install-deps.sh --peer)",
    )?;
    let input = paths.dir.join("guest-a-copy.qcow2");
    say(&format!(
        "peer: copying {} to {}",
        image.boot_disk().display(),
        input.display()
    ));
    fs::copy(image.boot_disk(), &input)
        .with_context(|| format!("copying {}", image.boot_disk().display()))?;
    let out_dir = paths.dir.join("v2v-out");
    say(&format!(
        "peer: {version}: converting (timeout {} s; log {})",
        V2V_TIMEOUT.as_secs(),
        paths.dir.join("virt-v2v.log").display()
    ));
    let v2v = run_virt_v2v(
        &input,
        &out_dir,
        "osam-peer",
        &paths.dir.join("virt-v2v.log"),
        V2V_TIMEOUT,
    )?;
    say(&format!(
        "peer: virt-v2v {} after {:.0} s, peak RSS {}",
        v2v.status,
        v2v.seconds,
        v2v.peak_rss_bytes.map_or("-".into(), human_bytes)
    ));
    let v2v_boot = match &v2v.output {
        Some(disk) => {
            say("peer: booting virt-v2v's output on VMware hardware");
            let mut bp = blueprint.clone();
            bp.migration_id = "bench-peer-v2v".into();
            boot_check(
                &bp,
                disk,
                &paths.dir.join("v2v-check"),
                &paths.dir.join("v2v-check.serial.log"),
                CHECK_TIMEOUT,
            )?
        }
        None => BootOutcome {
            reason: Some("no output disk".into()),
            ..BootOutcome::default()
        },
    };
    say(&format!(
        "peer: virt-v2v's output booted: {}{}",
        if v2v_boot.booted { "yes" } else { "no" },
        v2v_boot
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ));
    let _ = fs::remove_file(&input);

    // Ours.
    say("ours: the manager emulator, stage 1 + stage 2 + check boot");
    let ours = run_our_flow(
        &blueprint,
        stack,
        tools_iso,
        &paths.dir.join("osam-logs"),
        CHECK_TIMEOUT,
        &mut |line| say(&format!("ours: {line}")),
    );

    if let Some(size) = v2v.output.as_ref().and_then(|o| fs::metadata(o).ok()) {
        notes.push(format!(
            "virt-v2v's output: {} ({}); its log: {}.",
            v2v.output
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            human_bytes(size.len()),
            v2v.log.display()
        ));
    }
    if !v2v.messages.is_empty() {
        notes.push(format!("virt-v2v said: {}", v2v.messages.join(" / ")));
    }
    notes.push(
        "Ours runs inside the target VM itself (stage 1 from the fixup disk, stage 2 in the \
         guest): its peak RSS is the QEMU process of that VM (guest memory plus TCG's code \
         cache), not a conversion host's."
            .to_owned(),
    );
    if let Some(max) = v2v.max_process_rss_bytes {
        notes.push(format!(
            "virt-v2v's largest single process (wait4 ru_maxrss, as /usr/bin/time -v): {}.",
            human_bytes(max)
        ));
    }
    let rows = vec![
        PeerRow {
            tool: PEER_NAME.into(),
            version: version.trim_start_matches("virt-v2v ").to_owned(),
            converts_for: PEER_TARGET_NOTE.into(),
            converted: v2v.ok,
            wall_seconds: v2v.seconds,
            peak_rss_bytes: v2v.peak_rss_bytes,
            boot: v2v_boot,
            detail: v2v.status.clone(),
        },
        PeerRow {
            tool: "osam".into(),
            version: format!("{} (stage 1 + stage 2)", env!("CARGO_PKG_VERSION")),
            converts_for: OUR_TARGET_NOTE.into(),
            converted: ours.ok,
            wall_seconds: ours.seconds,
            peak_rss_bytes: ours.peak_rss_bytes,
            boot: ours.boot.clone(),
            detail: match &ours.failure {
                Some(f) => f.clone(),
                None => format!(
                    "stage 1 {:.0} s, stage 2 {:.0} s",
                    ours.stage1_seconds, ours.stage2_seconds
                ),
            },
        },
    ];
    Ok(PeerReport {
        date: utc_now(),
        machine: machine_description(),
        guest,
        check_hardware,
        rows,
        v2v: Some(v2v),
        ours: Some(ours),
        notes,
    })
}

/// Writes `report` as `<bench_dir>/peer.json` and returns the path.
pub fn write_json(report: &PeerReport, bench_dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(bench_dir)?;
    let path = bench_dir.join("peer.json");
    fs::write(&path, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line = "4242 (qemu-system (x86)) S 1 4242 4242 0 -1 4194560 1 0 0 0 \
                    5 6 0 0 20 0 3 0 100 2000000 12345 18446744073709551615";
        let p = parse_stat(line).unwrap();
        assert_eq!(
            (p.pid, p.ppid, p.session, p.rss_pages),
            (4242, 1, 4242, 12345)
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn selections() {
        let p = |pid, ppid, session| ProcInfo {
            pid,
            ppid,
            session,
            rss_pages: 1,
        };
        let procs = [
            p(1, 0, 1),
            p(10, 1, 10),
            p(11, 10, 10),
            p(12, 11, 12),
            p(13, 1, 10),
        ];
        let pids = |v: Vec<ProcInfo>| {
            let mut v: Vec<i32> = v.iter().map(|p| p.pid).collect();
            v.sort();
            v
        };
        assert_eq!(pids(select(&procs, Selection::Session(10))), [10, 11, 13]);
        assert_eq!(pids(select(&procs, Selection::DescendantsOf(10))), [11, 12]);
        // This process is sampled as a descendant of its parent.
        let me = std::process::id() as i32;
        let all = processes();
        let mine = all.iter().find(|p| p.pid == me).unwrap();
        assert!(mine.rss_pages > 0);
        assert!(
            select(&all, Selection::DescendantsOf(mine.ppid))
                .iter()
                .any(|p| p.pid == me)
        );
    }

    #[test]
    fn reasons_from_serial_logs() {
        let log = "\u{1b}[0m[    1.2] sd 0:0:0:0: something\r\n\
                   Begin: Waiting for root file system ... done.\r\n\
                   Gave up waiting for root file system device.\r\n\
                   ALERT!  /dev/sda1 does not exist.  Dropping to a shell!\r\n\
                   (initramfs) ";
        assert_eq!(
            failure_reason(log).as_deref(),
            Some("ALERT!  /dev/sda1 does not exist.  Dropping to a shell!")
        );
        assert_eq!(
            failure_reason("[   3.000000] last words\n\n").as_deref(),
            Some("last words")
        );
        assert_eq!(failure_reason(""), None);
        assert_eq!(clean_line("\u{1b}[1;31mred\u{1b}[0m\r"), "red");
    }

    #[test]
    fn nic_names_from_the_kernel_log_and_the_check_block() {
        let log = "[ 5.1] vmxnet3 0000:00:04.0 ens4: renamed from eth0\n\
                   [ 5.2] vmxnet3 0000:00:05.0 ens5: renamed from eth1\n\
                   [ 5.3] vmxnet3 0000:00:04.0 ens4: renamed from eth0\n";
        assert_eq!(renamed_nics(log), ["ens4", "ens5"]);
        let b = read_boot(log, Path::new("/l"));
        assert!(!b.booted);
        assert_eq!(b.nics_from.as_deref(), Some("kernel log"));
        let check = "OSAM-CHECK-BEGIN\nversion=1\nsystem=running\n\
                     target=graphical.target multi-user=active graphical=active rescue=inactive emergency=inactive\n\
                     nic eth0 00:50:56:9a:00:01 10.0.2.15/24\nnic eth1 00:50:56:9a:00:02 -\n\
                     stage2=absent\nkernel=6.1.0-50-amd64\nOSAM-CHECK-END\n";
        let b = read_boot(check, Path::new("/l"));
        assert!(b.booted, "{b:?}");
        assert_eq!(b.nics, ["eth0 (10.0.2.15/24)", "eth1"]);
        assert_eq!(
            b.system.as_deref(),
            Some("system=running active: graphical,multi-user")
        );
    }

    #[test]
    fn formats() {
        assert_eq!(human_bytes(2_147_483_648), "2.00 GiB");
        assert_eq!(human_bytes(300 << 20), "300 MiB");
        assert_eq!(human_seconds(574.2), "574 s (9m34s)");
        assert_eq!(human_seconds(12.34), "12.3 s");
        let now = utc_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }
}
