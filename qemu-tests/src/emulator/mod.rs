//! The manager emulator: every manager step of PROTOCOL.md against QEMU
//! (TCG), from a [`Blueprint`] of the migrated VM.
//!
//! A run ([`run`]):
//!
//! 1. prepare: a qcow2 overlay on each replica image (the cached base is
//!    never written; the overlay persists across the run's three boots),
//!    the 9p share, the three input files (also copied to the logs);
//! 2. stage 1: boot the fixup disk (first in the boot order) with the
//!    share, wait for a complete `fixup/READY`, write the inputs and then
//!    BEGIN, print progress.txt's new lines as they come, wait for END,
//!    collect `<logs>/<migrationId>_fixup.log` and `_result.json` (and
//!    progress.txt), power off over QMP (`system_powerdown`, then
//!    `quit`: the stack has no ACPI handler). A result.json whose status
//!    is not `success` ends the run here, as it would for a manager;
//! 3. stage 2 (when `options.stage2`): boot the boot replica, the fixup
//!    disk detached, a CD-ROM with the Tools ISO; wait for the guest to
//!    power itself off;
//! 4. check: boot the guest a last time (no CD-ROM), wait for the block
//!    between [`CHECK_BEGIN`] and [`CHECK_END`] on its serial console,
//!    power it off.
//!
//! A [`Fault`] in [`RunOptions::fault`] cuts stage 1 short with a SIGKILL
//! of QEMU (a power cut): the run then ends with [`RunReport::killed`]
//! (not a failure) and keeps its work folder, so that a test can look at
//! the disks and run again on them ([`RunOptions::disks_as_is`]).
//!
//! Every wait has a timeout (the blueprint's `timeouts`). Each phase's wall
//! time is recorded; the outcome is a [`RunReport`] (also written as
//! `<logs>/<migrationId>_emulator-report.json`) whose [`Failure`] names
//! the step that failed ("waiting for END: no END after 900 s") with the
//! tail of the serial log and fixup.log.

pub mod blueprint;
pub mod guest;
pub mod machine;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::manager::{self, FixupDir};
use crate::paths::tail_lines;
use crate::vm::{Firmware, OVMF_IA32_VARS, Vm};

pub use blueprint::{Blueprint, BlueprintError, FieldError};
pub use guest::blueprint_for_guest;
pub use machine::{Boot, MachineFiles, vm_config};

/// The first line of the guest's check block on its serial console.
pub const CHECK_BEGIN: &str = "OSAM-CHECK-BEGIN";
/// The last line of the check block.
pub const CHECK_END: &str = "OSAM-CHECK-END";
/// The volume label of the Tools ISO (PROTOCOL.md).
pub const TOOLS_LABEL: &str = "VMware Tools";
/// Lines of a log shown with a failure.
pub const TAIL_LINES: usize = 40;
/// How long the stack gets for an ACPI power-off before `quit` (it has no
/// handler for the power button: END already made the disks safe).
pub const STACK_POWER_OFF_GRACE: Duration = Duration::from_secs(5);
/// How long a `qemu-img` or ISO tool may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// The stack's test-only hold file (init's `protocol::testhook`,
/// docs/protocol.md "Test hook"): its content names the step before which
/// PID 1 holds until the file is removed.
pub const HOLD_FILE: &str = "osam-test-hold";

/// The progress line of the stack's test hook holding before step `id`.
pub fn hold_line(id: &str) -> String {
    format!("test hook: holding before step {id} ")
}

/// A power cut injected into stage 1 (the fault tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Writes [`HOLD_FILE`] naming this step with the inputs; once the
    /// stack says it holds before the step (every earlier write synced),
    /// SIGKILLs QEMU.
    HoldBefore(String),
    /// SIGKILLs QEMU this long after BEGIN, unless END came first (then
    /// the run goes on as without a fault).
    KillAfter(Duration),
    /// SIGKILLs QEMU this long after the first progress line containing
    /// the text (e.g. `"initramfs: started"`), unless END came first.
    KillAfterProgress(String, Duration),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::HoldBefore(id) => write!(f, "power cut while held before step {id}"),
            Fault::KillAfter(d) => write!(f, "power cut {:.1} s after BEGIN", d.as_secs_f64()),
            Fault::KillAfterProgress(text, d) => write!(
                f,
                "power cut {:.1} s after the progress line \"{text}\"",
                d.as_secs_f64()
            ),
        }
    }
}

/// How a [`Fault`] ended stage 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Killed {
    /// The fault, in words.
    pub fault: String,
    /// When QEMU was killed, from BEGIN.
    pub after_begin_seconds: f64,
    /// progress.txt's last complete line at the kill.
    pub last_progress: Option<String>,
    /// The replica disks as the kill left them (in the kept work folder;
    /// `None` for a disk without an image).
    pub disks: Vec<Option<PathBuf>>,
}

/// Which phases to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StopAfter {
    /// Stage 1 only: READY, inputs, BEGIN, END, collection, power-off.
    Stage1,
    /// Stage 1, stage 2 and the check boot.
    #[default]
    Full,
}

/// How to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// The fixup disk (the stack's VMDK, raw or qcow2 image).
    pub stack: PathBuf,
    /// Where the logs and the report go (created).
    pub logs: PathBuf,
    /// The Tools ISO for stage 2; without it an empty ISO labelled
    /// `VMware Tools` is made (genisoimage, xorriso or mkisofs).
    pub tools_iso: Option<PathBuf>,
    /// The folder for overlays, the share and sockets; default a new
    /// temporary folder (removed at the end unless `keep`).
    pub work_dir: Option<PathBuf>,
    /// Keep the work folder (overlays: the fixed guest).
    pub keep: bool,
    /// Which phases.
    pub stop_after: StopAfter,
    /// A power cut to inject into stage 1 (tests); the work folder is then
    /// kept whatever `keep` says.
    pub fault: Option<Fault>,
    /// Attach the blueprint's disk images as they are (QEMU writes to
    /// them) instead of new overlays on them: a run again on the disks a
    /// killed run left.
    pub disks_as_is: bool,
}

impl RunOptions {
    /// A full run of `stack` logging to `logs`.
    pub fn new(stack: impl Into<PathBuf>, logs: impl Into<PathBuf>) -> Self {
        Self {
            stack: stack.into(),
            logs: logs.into(),
            tools_iso: None,
            work_dir: None,
            keep: false,
            stop_after: StopAfter::Full,
            fault: None,
            disks_as_is: false,
        }
    }
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseStatus {
    /// Done.
    Ok,
    /// Failed (the run's [`Failure`] says why).
    Failed,
    /// Not run (`options.stage2` false).
    Skipped,
}

/// One timed phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseReport {
    /// `prepare`, `stage1.ready`, `stage1.fixup`, `stage1.collect`,
    /// `stage1.poweroff`, `stage2`, `check.boot`, `check.poweroff`.
    pub name: String,
    /// How it ended.
    pub status: PhaseStatus,
    /// Wall time.
    pub seconds: f64,
    /// What happened (READY's content, the power-off method, …).
    pub detail: String,
}

/// The step that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The step, e.g. `waiting for END`.
    pub step: String,
    /// What went wrong, e.g. `no END after 900 s`.
    pub message: String,
    /// The tails of the relevant logs, each under a header line.
    pub tail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.message)?;
        if !self.tail.trim().is_empty() {
            write!(f, "\n{}", self.tail.trim_end())?;
        }
        Ok(())
    }
}

impl Failure {
    fn new(step: &str, message: impl Into<String>) -> Self {
        Self {
            step: step.to_owned(),
            message: message.into(),
            tail: String::new(),
        }
    }

    fn with_log(mut self, title: &str, path: &Path) -> Self {
        if let Ok(bytes) = fs::read(path) {
            let text = String::from_utf8_lossy(&bytes).replace('\r', "");
            self.tail.push_str(&format!(
                "--- last lines of {title} ({}) ---\n{}\n",
                path.display(),
                tail_lines(&text, TAIL_LINES)
            ));
        }
        self
    }
}

/// The files a run leaves in the logs folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFiles {
    /// `<migrationId>_fixup.log`, once collected.
    pub fixup_log: Option<PathBuf>,
    /// `<migrationId>_result.json`, once collected.
    pub result_json: Option<PathBuf>,
    /// `<migrationId>_progress.txt`, once collected.
    pub progress: Option<PathBuf>,
    /// The folder with the three input files as written.
    pub inputs: Option<PathBuf>,
    /// The serial log of each boot that started (`stage1`, `stage2`,
    /// `check`): `<migrationId>_<boot>.serial.log`.
    pub serial: Vec<(String, PathBuf)>,
    /// This report: `<migrationId>_emulator-report.json`.
    pub report: PathBuf,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The migration id.
    pub migration_id: String,
    /// Whether every requested phase succeeded (and result.json says
    /// `success`); false after a [`Fault`]'s kill.
    pub ok: bool,
    /// The failed step.
    pub failure: Option<Failure>,
    /// Stage 1 was cut short by [`RunOptions::fault`] (the run stopped
    /// there, without a failure).
    pub killed: Option<Killed>,
    /// The phases, in order.
    pub phases: Vec<PhaseReport>,
    /// READY's content.
    pub ready: Option<Value>,
    /// result.json's content.
    pub result: Option<Value>,
    /// The stage-2 agent's outcome (what it reports as
    /// `guestinfo.osam.stage2` on vSphere), read from its `outcome:` line
    /// on the stage-2 serial console.
    pub stage2: Option<Value>,
    /// The check block's lines (without the markers).
    pub check: Option<String>,
    /// The log files.
    pub logs: LogFiles,
    /// The kept work folder.
    pub work_dir: Option<PathBuf>,
    /// Wall time of the whole run.
    pub total_seconds: f64,
}

impl RunReport {
    /// The phase named `name`.
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// The `code`s of result.json's errors.
    pub fn error_codes(&self) -> Vec<String> {
        self.result
            .as_ref()
            .map(manager::error_codes)
            .unwrap_or_default()
    }

    /// The serial log of `boot`.
    pub fn serial_log(&self, boot: Boot) -> Option<&Path> {
        self.logs
            .serial
            .iter()
            .find(|(name, _)| name == boot.name())
            .map(|(_, p)| p.as_path())
    }

    /// A table of the phases for a terminal.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for p in &self.phases {
            let status = match p.status {
                PhaseStatus::Ok => "ok",
                PhaseStatus::Failed => "FAILED",
                PhaseStatus::Skipped => "skipped",
            };
            out.push_str(&format!(
                "  {:<16} {:>8.1} s  {:<7} {}\n",
                p.name, p.seconds, status, p.detail
            ));
        }
        out.push_str(&format!(
            "  {:<16} {:>8.1} s\n",
            "total", self.total_seconds
        ));
        out
    }
}

/// The marker of the stage-2 agent's outcome line on the serial console.
pub const STAGE2_OUTCOME: &str = "osam-stage2: info: outcome: ";

/// The stage-2 agent's last outcome in a serial log (the JSON after
/// [`STAGE2_OUTCOME`]).
pub fn stage2_outcome(serial: &str) -> Option<Value> {
    serial.lines().rev().find_map(|line| {
        let at = line.find(STAGE2_OUTCOME)?;
        serde_json::from_str(line[at + STAGE2_OUTCOME.len()..].trim()).ok()
    })
}

/// The text between the [`CHECK_BEGIN`] line and the following
/// [`CHECK_END`] line of a serial log (carriage returns removed), `None`
/// until both are there.
pub fn check_block(serial: &str) -> Option<String> {
    let text = serial.replace('\r', "");
    let begin = text.find(CHECK_BEGIN)?;
    let rest = &text[begin + CHECK_BEGIN.len()..];
    let body_start = rest.find('\n')? + 1;
    let body = &rest[body_start..];
    let end = body.find(CHECK_END)?;
    let line_start = body[..end].rfind('\n').map_or(0, |i| i + 1);
    Some(body[..line_start].to_owned())
}

/// Runs a tool with a timeout; its standard output, or why it failed
/// (with its standard error).
fn run_tool(command: &mut Command, timeout: Duration) -> Result<String, String> {
    let line = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {line}: {e}"))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{line} did not finish within {} s",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for {line}: {e}")),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(format!("{line} failed ({status}): {}", err.trim()))
    }
}

/// An image's QEMU format and virtual size (`qemu-img info`).
pub fn image_info(path: &Path) -> Result<(String, u64), String> {
    let out = run_tool(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(path),
        TOOL_TIMEOUT,
    )?;
    let info: Value = serde_json::from_str(&out)
        .map_err(|e| format!("qemu-img info {}: unreadable answer: {e}", path.display()))?;
    let format = info["format"].as_str().unwrap_or("raw").to_owned();
    let size = info["virtual-size"].as_u64().ok_or_else(|| {
        format!(
            "qemu-img info {}: no virtual-size in {info}",
            path.display()
        )
    })?;
    Ok((format, size))
}

/// The virtual size of each blueprint disk whose image exists (for the
/// disks without `capacityBytes`).
pub fn probe_capacities(blueprint: &Blueprint) -> Result<Vec<Option<u64>>, String> {
    blueprint
        .disks
        .iter()
        .map(|disk| match &disk.path {
            Some(path) if disk.capacity_bytes.is_none() && path.is_file() => {
                image_info(path).map(|(_, size)| Some(size))
            }
            _ => Ok(None),
        })
        .collect()
}

/// The three input files of a blueprint as (file name, content).
pub fn inputs(blueprint: &Blueprint, capacities: &[Option<u64>]) -> [(&'static str, Value); 3] {
    [
        (
            manager::SYSTEM_CONFIGURATION,
            blueprint.system_configuration(),
        ),
        (
            manager::REPLICA_DISK_MAP,
            blueprint.replica_disk_map(capacities),
        ),
        (
            manager::NETWORK_INTERFACE_MAP,
            blueprint.network_interface_map(),
        ),
    ]
}

/// Writes the three input files of a blueprint into `dir` (created);
/// disks without `capacityBytes` whose image exists get its virtual size.
/// Returns the files' paths.
pub fn write_inputs(blueprint: &Blueprint, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let capacities = probe_capacities(blueprint)?;
    write_input_files(blueprint, &capacities, dir)
}

fn write_input_files(
    blueprint: &Blueprint,
    capacities: &[Option<u64>],
    dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (name, value) in inputs(blueprint, capacities) {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&value).unwrap_or_default() + "\n";
        fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Makes an empty ISO labelled [`TOOLS_LABEL`] at `iso` with the first of
/// genisoimage, xorriso and mkisofs found.
pub fn empty_tools_iso(iso: &Path) -> Result<(), String> {
    let content = iso.with_extension("content");
    fs::create_dir_all(&content).map_err(|e| format!("creating {}: {e}", content.display()))?;
    let readme = content.join("README.txt");
    fs::write(
        &readme,
        "An empty Tools ISO made by osam-manager: nothing to install.\n",
    )
    .map_err(|e| format!("writing {}: {e}", readme.display()))?;
    let mut tried = Vec::new();
    for (tool, pre) in [
        ("genisoimage", &[][..]),
        ("xorriso", &["-as", "mkisofs"][..]),
        ("mkisofs", &[][..]),
    ] {
        let mut command = Command::new(tool);
        command
            .args(pre)
            .args(["-quiet", "-r", "-J", "-V", TOOLS_LABEL, "-o"])
            .arg(iso)
            .arg(&content);
        match run_tool(&mut command, TOOL_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => tried.push(e),
        }
    }
    Err(format!(
        "no --tools-iso given and no empty one could be made (install genisoimage): {}",
        tried.join("; ")
    ))
}

/// Runs every manager step for `blueprint`; `out` gets one line per event
/// (progress.txt's lines among them). Never panics on a bad input: every
/// problem ends up in the report's [`Failure`].
pub fn run(blueprint: &Blueprint, options: &RunOptions, out: &mut dyn FnMut(&str)) -> RunReport {
    let start = Instant::now();
    let logs = &options.logs;
    let mut report = RunReport {
        migration_id: blueprint.migration_id.clone(),
        ok: false,
        failure: None,
        killed: None,
        phases: Vec::new(),
        ready: None,
        result: None,
        stage2: None,
        check: None,
        logs: LogFiles {
            report: logs.join(format!("{}_emulator-report.json", blueprint.migration_id)),
            ..LogFiles::default()
        },
        work_dir: None,
        total_seconds: 0.0,
    };
    let mut runner = Runner {
        blueprint,
        options,
        out,
        start,
        report: &mut report,
        work: None,
        files: None,
    };
    let outcome = runner.run_all();
    let work = runner.work.take();
    if let Err(failure) = outcome {
        (runner.out)(&format!("FAILED: {failure}"));
        runner.report.failure = Some(failure);
    }
    report.ok = report.failure.is_none() && report.killed.is_none();
    if let Some(work) = work {
        report.work_dir = work.finish(options.keep || report.killed.is_some());
    }
    report.total_seconds = start.elapsed().as_secs_f64();
    if fs::create_dir_all(logs).is_ok() {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
        if let Err(e) = fs::write(&report.logs.report, text) {
            out(&format!(
                "cannot write the report {}: {e}",
                report.logs.report.display()
            ));
        }
    }
    report
}

/// The work folder: a temporary one, or the caller's.
enum Work {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl Work {
    fn path(&self) -> &Path {
        match self {
            Work::Temp(t) => t.path(),
            Work::Given(p) => p,
        }
    }

    /// Removes a temporary folder unless `keep`; the folder kept.
    fn finish(self, keep: bool) -> Option<PathBuf> {
        match self {
            Work::Temp(t) if keep => Some(t.keep()),
            Work::Temp(t) => {
                drop(t);
                None
            }
            Work::Given(p) => Some(p),
        }
    }
}

struct Runner<'a> {
    blueprint: &'a Blueprint,
    options: &'a RunOptions,
    out: &'a mut dyn FnMut(&str),
    start: Instant,
    report: &'a mut RunReport,
    work: Option<Work>,
    files: Option<MachineFiles>,
}

/// Maps a wait's error to a failure of `step` ("no END after 900 s").
fn wait_failure(step: &str, awaited: &str, error: Error) -> Failure {
    let (message, tail, log) = match error {
        Error::Timeout {
            timeout, tail, log, ..
        } => (
            format!("no {awaited} after {} s", timeout.as_secs()),
            tail,
            Some(log),
        ),
        Error::VmExited {
            status, tail, log, ..
        } => (
            format!("QEMU exited ({status}) before {awaited}"),
            tail,
            Some(log),
        ),
        Error::DeadEnd {
            line, tail, log, ..
        } => (
            format!("the guest is stuck before {awaited}: {line}"),
            tail,
            Some(log),
        ),
        other => (other.to_string(), String::new(), None),
    };
    let mut failure = Failure::new(step, message);
    if let Some(log) = log {
        failure.tail = format!(
            "--- last lines of the serial log ({}) ---\n{tail}\n",
            log.display()
        );
    }
    failure
}

impl Runner<'_> {
    fn say(&mut self, line: &str) {
        let t = self.start.elapsed().as_secs_f64();
        (self.out)(&format!("[{t:7.1}s] {line}"));
    }

    fn phase(&mut self, name: &str, status: PhaseStatus, since: Instant, detail: String) {
        self.report.phases.push(PhaseReport {
            name: name.to_owned(),
            status,
            seconds: since.elapsed().as_secs_f64(),
            detail,
        });
    }

    /// Runs `body` as phase `name`, recording its time and status.
    fn timed<T>(
        &mut self,
        name: &str,
        body: impl FnOnce(&mut Self) -> Result<(T, String), Failure>,
    ) -> Result<T, Failure> {
        let since = Instant::now();
        match body(self) {
            Ok((value, detail)) => {
                self.phase(name, PhaseStatus::Ok, since, detail);
                Ok(value)
            }
            Err(failure) => {
                self.phase(name, PhaseStatus::Failed, since, failure.message.clone());
                Err(failure)
            }
        }
    }

    fn log_path(&self, suffix: &str) -> PathBuf {
        self.options
            .logs
            .join(format!("{}_{suffix}", self.blueprint.migration_id))
    }

    fn files(&self) -> Result<&MachineFiles, Failure> {
        self.files
            .as_ref()
            .ok_or_else(|| Failure::new("preparing", "the run was not prepared"))
    }

    fn run_all(&mut self) -> Result<(), Failure> {
        let capacities = self.timed("prepare", |r| r.prepare().map(|c| (c, String::new())))?;
        let mut vm = self.timed("stage1.ready", Self::stage1_ready)?;
        let outcome = self.stage1_run(&mut vm, &capacities);
        // Power off whatever happened: END made the disks safe, and a
        // failed wait leaves nothing to save.
        let since = Instant::now();
        let how = vm.power_off(STACK_POWER_OFF_GRACE);
        let killed = matches!(outcome, Ok(Some(_)));
        let how = if killed {
            "killed (SIGKILL: the fault)"
        } else {
            how.name()
        };
        self.say(&format!("stage 1: powered off ({how})"));
        self.phase("stage1.poweroff", PhaseStatus::Ok, since, how.to_owned());
        drop(vm);
        if let Some(killed) = outcome? {
            self.say(&format!(
                "stage 1: {} (last progress line: {}); the disks are kept: {}",
                killed.fault,
                killed.last_progress.as_deref().unwrap_or("none"),
                killed
                    .disks
                    .iter()
                    .flatten()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            self.report.killed = Some(killed);
            return Ok(());
        }
        let result = self.report.result.clone().unwrap_or(Value::Null);
        if result["status"] != "success" {
            let mut failure = Failure::new(
                "fixup result",
                format!(
                    "result.json: status {}{}",
                    status_of(&result),
                    describe_errors(&result)
                ),
            );
            if let Some(log) = self.report.logs.fixup_log.clone() {
                failure = failure.with_log("fixup.log", &log);
            }
            return Err(failure);
        }
        if self.options.stop_after == StopAfter::Stage1 {
            return Ok(());
        }
        if self.blueprint.options.stage2 {
            self.timed("stage2", Self::stage2)?;
        } else {
            self.say("stage 2: skipped (options.stage2 is false)");
            self.phase(
                "stage2",
                PhaseStatus::Skipped,
                Instant::now(),
                "options.stage2 is false".into(),
            );
        }
        let mut vm = self.timed("check.boot", Self::check_boot)?;
        let since = Instant::now();
        let grace = Duration::from_secs(self.blueprint.timeouts.power_off_seconds);
        let how = vm.power_off(grace);
        self.say(&format!("check: powered off ({})", how.name()));
        self.phase(
            "check.poweroff",
            PhaseStatus::Ok,
            since,
            how.name().to_owned(),
        );
        // A manager reads the agent's outcome from guestinfo: a failed one
        // fails the migration (the check boot ran all the same, for the
        // diagnosis).
        if let Some(outcome) = &self.report.stage2 {
            if outcome["status"] != "success" {
                let failure = Failure::new(
                    "stage 2 outcome",
                    format!("the agent reports status {}: {outcome}", status_of(outcome)),
                );
                let serial = self.report.serial_log(Boot::Stage2).map(Path::to_path_buf);
                return Err(match serial {
                    Some(log) => failure.with_log("the stage-2 serial log", &log),
                    None => failure,
                });
            }
        }
        Ok(())
    }

    /// The work folder, overlays, share, input copies; the disks' virtual
    /// sizes.
    fn prepare(&mut self) -> Result<Vec<Option<u64>>, Failure> {
        const STEP: &str = "preparing";
        let fail = |m: String| Failure::new(STEP, m);
        let o = self.options;
        fs::create_dir_all(&o.logs).map_err(|e| {
            fail(format!(
                "creating the logs folder {}: {e}",
                o.logs.display()
            ))
        })?;
        if !o.stack.is_file() {
            return Err(fail(format!(
                "the stack image {} is missing",
                o.stack.display()
            )));
        }
        let stack = fs::canonicalize(&o.stack)
            .map_err(|e| fail(format!("resolving {}: {e}", o.stack.display())))?;
        let work = match &o.work_dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
                Work::Given(dir.clone())
            }
            None => Work::Temp(
                tempfile::Builder::new()
                    .prefix("osam-manager-")
                    .tempdir()
                    .map_err(|e| fail(format!("creating a work folder: {e}")))?,
            ),
        };
        let dir = work.path().to_path_buf();
        self.work = Some(work);
        let qmp = dir.join("qmp.sock");
        if qmp.as_os_str().len() > 100 {
            return Err(fail(format!(
                "the QMP socket path {} is too long for a unix socket: use a shorter work folder",
                qmp.display()
            )));
        }
        let share = dir.join("share");
        if share.exists() {
            fs::remove_dir_all(&share)
                .map_err(|e| fail(format!("removing the old {}: {e}", share.display())))?;
        }
        fs::create_dir_all(&share)
            .map_err(|e| fail(format!("creating {}: {e}", share.display())))?;

        let mut disks = Vec::new();
        let mut capacities = Vec::new();
        for (i, disk) in self.blueprint.disks.iter().enumerate() {
            let Some(path) = &disk.path else {
                self.say(&format!(
                    "prepare: disks[{i}] has no image: listed, not attached"
                ));
                disks.push(None);
                capacities.push(None);
                continue;
            };
            if !path.is_file() {
                return Err(fail(format!(
                    "disks[{i}].path: the image {} is missing",
                    path.display()
                )));
            }
            let base = fs::canonicalize(path)
                .map_err(|e| fail(format!("resolving {}: {e}", path.display())))?;
            let (format, size) = image_info(&base).map_err(fail)?;
            if o.disks_as_is {
                self.say(&format!(
                    "prepare: disks[{i}]: {} as it is ({format}, {size} bytes, written to)",
                    base.display()
                ));
                disks.push(Some(base));
                capacities.push(Some(size));
                continue;
            }
            let overlay = dir.join(format!("disk{i}.qcow2"));
            let _ = fs::remove_file(&overlay);
            run_tool(
                Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "-F", &format, "-b"])
                    .arg(&base)
                    .arg(&overlay),
                TOOL_TIMEOUT,
            )
            .map_err(fail)?;
            self.say(&format!(
                "prepare: disks[{i}]: overlay {} on {} ({format}, {size} bytes)",
                overlay.display(),
                base.display()
            ));
            disks.push(Some(overlay));
            capacities.push(Some(size));
        }

        let ovmf_vars = match machine::firmware(self.blueprint, &placeholder_files()) {
            Firmware::OvmfIa32 { .. } => {
                let vars = dir.join("OVMF32_VARS_4M.fd");
                fs::copy(OVMF_IA32_VARS, &vars)
                    .map_err(|e| fail(format!("copying {OVMF_IA32_VARS}: {e}")))?;
                Some(vars)
            }
            _ => None,
        };
        let stage2 = o.stop_after == StopAfter::Full && self.blueprint.options.stage2;
        let tools_iso = match (&o.tools_iso, stage2) {
            (Some(iso), _) => {
                if !iso.is_file() {
                    return Err(fail(format!("the Tools ISO {} is missing", iso.display())));
                }
                Some(iso.clone())
            }
            (None, true) => {
                let iso = dir.join("empty-tools.iso");
                empty_tools_iso(&iso).map_err(fail)?;
                self.say(&format!(
                    "prepare: no Tools ISO given: made an empty one ({})",
                    iso.display()
                ));
                Some(iso)
            }
            (None, false) => None,
        };
        let inputs_dir = self.log_path("inputs");
        write_input_files(self.blueprint, &capacities, &inputs_dir).map_err(fail)?;
        self.report.logs.inputs = Some(inputs_dir);
        self.files = Some(MachineFiles {
            stack,
            disks,
            share,
            qmp,
            tools_iso,
            ovmf_vars,
        });
        Ok(capacities)
    }

    fn start_vm(&mut self, boot: Boot) -> Result<Vm, Failure> {
        let serial = self.log_path(&format!("{}.serial.log", boot.name()));
        let config = vm_config(self.blueprint, self.files()?, boot, &serial);
        self.report
            .logs
            .serial
            .push((boot.name().to_owned(), serial.clone()));
        let vm = Vm::start(&config).map_err(|e| {
            Failure::new(&format!("starting QEMU ({})", boot.name()), e.to_string())
        })?;
        self.say(&format!(
            "{}: QEMU started (pid {}), serial log {}",
            boot.name(),
            vm.pid(),
            serial.display()
        ));
        Ok(vm)
    }

    fn stage1_ready(&mut self) -> Result<(Vm, String), Failure> {
        let bp = self.blueprint;
        self.say(&format!(
            "stage 1: booting the fixup disk ({}, {}, {}, {} disk(s), {} NIC(s))",
            bp.arch.arch(),
            bp.firmware.protocol(),
            bp.controller().name(),
            bp.disks.len(),
            bp.nics.len()
        ));
        let mut vm = self.start_vm(Boot::Stage1)?;
        let fixup = FixupDir::in_share(&self.files()?.share);
        let timeout = Duration::from_secs(bp.timeouts.ready_seconds);
        let ready = vm
            .wait_for(|| fixup.ready(), timeout, "a complete fixup/READY")
            .map_err(|e| wait_failure("waiting for READY", "READY", e))?;
        self.say(&format!("stage 1: READY {ready}"));
        let detail = ready.to_string();
        self.report.ready = Some(ready);
        Ok((vm, detail))
    }

    /// Inputs, BEGIN, END, collection; what the fault killed instead.
    fn stage1_run(
        &mut self,
        vm: &mut Vm,
        capacities: &[Option<u64>],
    ) -> Result<Option<Killed>, Failure> {
        let fixup = FixupDir::in_share(&self.files()?.share);
        let fault = self.options.fault.clone();
        let killed = self.timed("stage1.fixup", |r| {
            for (name, value) in inputs(r.blueprint, capacities) {
                fixup
                    .write_input(name, &value)
                    .map_err(|e| Failure::new("writing the inputs", e.to_string()))?;
            }
            if let Some(Fault::HoldBefore(id)) = &fault {
                let hold = fixup.file(HOLD_FILE);
                fs::write(&hold, format!("{id}\n")).map_err(|e| {
                    Failure::new(
                        "writing the test hold file",
                        format!("{}: {e}", hold.display()),
                    )
                })?;
                r.say(&format!("stage 1: {HOLD_FILE}: hold before step {id}"));
            }
            fixup
                .begin()
                .map_err(|e| Failure::new("writing BEGIN", e.to_string()))?;
            let begun = Instant::now();
            r.say("stage 1: inputs written, BEGIN");
            let progress = fixup.file("progress.txt");
            let mut shown = 0usize;
            let timeout = Duration::from_secs(r.blueprint.timeouts.end_seconds);
            let start = r.start;
            let out = &mut *r.out;
            let mut last_line: Option<String> = None;
            let mut held = false;
            let mut seen: Option<Instant> = None;
            let waited = vm.wait_for(
                || {
                    show_progress(&progress, &mut shown, &mut |line| {
                        let t = start.elapsed().as_secs_f64();
                        out(&format!("[{t:7.1}s]   | {line}"));
                        match &fault {
                            Some(Fault::HoldBefore(id)) => held |= line.contains(&hold_line(id)),
                            Some(Fault::KillAfterProgress(text, _))
                                if seen.is_none() && line.contains(text.as_str()) =>
                            {
                                seen = Some(Instant::now());
                            }
                            _ => {}
                        }
                        last_line = Some(line.to_owned());
                    });
                    if fixup.ended() {
                        return Some(false);
                    }
                    match &fault {
                        Some(Fault::HoldBefore(_)) if held => Some(true),
                        Some(Fault::KillAfter(after)) if begun.elapsed() >= *after => Some(true),
                        Some(Fault::KillAfterProgress(_, after))
                            if seen.is_some_and(|t| t.elapsed() >= *after) =>
                        {
                            Some(true)
                        }
                        _ => None,
                    }
                },
                timeout,
                "fixup/END",
            );
            if let (Ok(true), Some(fault)) = (&waited, &fault) {
                vm.kill();
                let after_begin_seconds = begun.elapsed().as_secs_f64();
                let killed = Killed {
                    fault: fault.to_string(),
                    after_begin_seconds,
                    last_progress: last_line,
                    disks: r.files()?.disks.clone(),
                };
                r.say(&format!(
                    "stage 1: QEMU killed {after_begin_seconds:.1} s after BEGIN ({fault})"
                ));
                let detail = format!("killed: {fault}");
                return Ok((Some(killed), detail));
            }
            // The last lines, written just before END.
            show_progress(&progress, &mut shown, &mut |line| {
                let t = start.elapsed().as_secs_f64();
                out(&format!("[{t:7.1}s]   | {line}"));
            });
            waited.map_err(|e| {
                wait_failure("waiting for END", "END", e)
                    .with_log("progress.txt", &progress)
                    .with_log("fixup.log", &fixup.file("fixup.log"))
            })?;
            let result = fixup.result().unwrap_or(Value::Null);
            r.say(&format!(
                "stage 1: END, result.json status {}",
                status_of(&result)
            ));
            let detail = format!("status {}{}", status_of(&result), describe_errors(&result));
            Ok((None, detail))
        })?;
        if let Some(killed) = killed {
            // What the stack wrote before the kill, for the diagnosis.
            let id = &self.blueprint.migration_id;
            for (name, suffix) in [("progress.txt", "progress.txt"), ("fixup.log", "fixup.log")] {
                let to = self.options.logs.join(format!("{id}_killed-{suffix}"));
                if fs::copy(fixup.file(name), &to).is_ok() {
                    match name {
                        "progress.txt" => self.report.logs.progress = Some(to),
                        _ => self.report.logs.fixup_log = Some(to),
                    }
                }
            }
            return Ok(Some(killed));
        }
        self.timed("stage1.collect", |r| {
            let fail = |m: String| Failure::new("collecting the results", m);
            let (logs, id) = (&r.options.logs, &r.blueprint.migration_id);
            let copy = |name: &str, suffix: &str| -> Result<PathBuf, Failure> {
                let from = fixup.file(name);
                let to = logs.join(format!("{id}_{suffix}"));
                fs::copy(&from, &to)
                    .map_err(|e| fail(format!("copying {}: {e}", from.display())))?;
                Ok(to)
            };
            let log = copy("fixup.log", "fixup.log")?;
            r.report.logs.fixup_log = Some(log.clone());
            let result_path = copy("result.json", "result.json")?;
            r.report.logs.result_json = Some(result_path.clone());
            if let Ok(progress) = copy("progress.txt", "progress.txt") {
                r.report.logs.progress = Some(progress);
            }
            let text = fs::read_to_string(&result_path)
                .map_err(|e| fail(format!("reading {}: {e}", result_path.display())))?;
            let result: Value = serde_json::from_str(&text).map_err(|e| {
                fail(format!("result.json is not JSON: {e}")).with_log("fixup.log", &log)
            })?;
            r.report.result = Some(result);
            r.say(&format!(
                "stage 1: collected {} and {}",
                log.display(),
                result_path.display()
            ));
            Ok(((), String::new()))
        })?;
        Ok(None)
    }

    fn stage2(&mut self) -> Result<((), String), Failure> {
        self.say("stage 2: booting the guest with the Tools ISO (single-user mode)");
        let mut vm = self.start_vm(Boot::Stage2)?;
        let timeout = Duration::from_secs(self.blueprint.timeouts.stage2_seconds);
        let status = vm
            .wait_exit_or_dead_end(timeout, "the guest to power itself off")
            .map_err(|e| {
                wait_failure(
                    "waiting for stage 2 to power off",
                    "power-off by the guest",
                    e,
                )
            })?;
        self.say(&format!("stage 2: the guest powered off (QEMU {status})"));
        let outcome = stage2_outcome(&vm.serial_log());
        match &outcome {
            Some(o) => self.say(&format!("stage 2: the agent's outcome: {o}")),
            None => self.say("stage 2: no outcome line from the agent on the serial console"),
        }
        self.report.stage2 = outcome.clone();
        if !status.success() {
            let failure = Failure::new(
                "stage 2",
                format!("QEMU ended with {status} instead of a power-off"),
            );
            return Err(failure.with_log("the serial log", vm.serial_log_path()));
        }
        let agent = outcome.map_or("no agent outcome".to_owned(), |o| {
            format!("agent status {}", status_of(&o))
        });
        Ok(((), format!("QEMU {status}, {agent}")))
    }

    fn check_boot(&mut self) -> Result<(Vm, String), Failure> {
        self.say("check: booting the guest on its own");
        let mut vm = self.start_vm(Boot::Check)?;
        let timeout = Duration::from_secs(self.blueprint.timeouts.check_seconds);
        let log = vm.serial_log_path().to_path_buf();
        // The check block, or the line that shows the guest stuck.
        let seen = vm
            .wait_for(
                || {
                    let bytes = fs::read(&log).ok()?;
                    let text = String::from_utf8_lossy(&bytes);
                    check_block(&text)
                        .map(Ok)
                        .or_else(|| crate::vm::dead_end(&text).map(Err))
                },
                timeout,
                CHECK_END,
            )
            .map_err(|e| wait_failure("waiting for the check block", CHECK_END, e))?;
        let block = seen.map_err(|line| {
            let mut failure = Failure::new(
                "waiting for the check block",
                format!("the guest is stuck before {CHECK_END}: {line}"),
            );
            failure.tail = format!(
                "--- last lines of the serial log ({}) ---\n{}\n",
                log.display(),
                vm.serial_tail(TAIL_LINES)
            );
            failure
        })?;
        self.say(&format!(
            "check: the guest's check block:\n{}",
            block.trim_end()
        ));
        let lines = block.lines().count();
        self.report.check = Some(block);
        Ok((vm, format!("{lines} line(s)")))
    }
}

/// MachineFiles with nothing in them (for the firmware choice).
fn placeholder_files() -> MachineFiles {
    MachineFiles {
        stack: PathBuf::new(),
        disks: Vec::new(),
        share: PathBuf::new(),
        qmp: PathBuf::new(),
        tools_iso: None,
        ovmf_vars: None,
    }
}

/// result.json's `status`, or what stands in its place.
fn status_of(result: &Value) -> String {
    match &result["status"] {
        Value::String(s) => s.clone(),
        Value::Null => "(none: result.json missing or unreadable)".into(),
        other => other.to_string(),
    }
}

/// `; errors: code (step): message, …` of a result.json, or nothing.
fn describe_errors(result: &Value) -> String {
    let Some(errors) = result["errors"].as_array().filter(|e| !e.is_empty()) else {
        return String::new();
    };
    let shown: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{} ({}): {}",
                e["code"].as_str().unwrap_or("?"),
                e["step"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!("; errors: {}", shown.join("; "))
}

/// Passes the complete lines of `path` after byte `shown` to `show`.
fn show_progress(path: &Path, shown: &mut usize, show: &mut dyn FnMut(&str)) {
    let Ok(bytes) = fs::read(path) else { return };
    let Some(new) = bytes.get(*shown..) else {
        // The file shrank: a new run's file; start over.
        *shown = 0;
        return;
    };
    let Some(last_newline) = new.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    let complete = &new[..=last_newline];
    for line in String::from_utf8_lossy(complete).lines() {
        show(line);
    }
    *shown += complete.len();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_blocks() {
        let log =
            "boot\r\nOSAM-CHECK-BEGIN\r\nroot=/dev/sda1\r\nnic eth0 up\r\nOSAM-CHECK-END\r\nlogin:";
        assert_eq!(
            check_block(log).as_deref(),
            Some("root=/dev/sda1\nnic eth0 up\n")
        );
        assert_eq!(check_block("OSAM-CHECK-BEGIN\nhalf"), None);
        assert_eq!(check_block("nothing"), None);
        assert_eq!(
            check_block("x OSAM-CHECK-BEGIN\nOSAM-CHECK-END\n").as_deref(),
            Some("")
        );
    }

    #[test]
    fn stage2_outcomes() {
        let log = "osam-stage2: info: outcome: {\"status\":\"failed\"}\r\n\
                   x osam-stage2: info: outcome: {\"status\":\"success\"}\r\n\
                   osam-stage2: info: powering off\n";
        assert_eq!(stage2_outcome(log).unwrap()["status"], "success");
        assert_eq!(stage2_outcome("osam-stage2: info: outcome: {half"), None);
    }

    #[test]
    fn progress_lines_are_shown_once_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress.txt");
        let mut seen = Vec::new();
        let mut shown = 0;
        show_progress(&path, &mut shown, &mut |l| seen.push(l.to_owned()));
        fs::write(&path, "a\nb").unwrap();
        show_progress(&path, &mut shown, &mut |l| seen.push(l.to_owned()));
        assert_eq!(seen, ["a"]);
        fs::write(&path, "a\nb\nc\n").unwrap();
        show_progress(&path, &mut shown, &mut |l| seen.push(l.to_owned()));
        assert_eq!(seen, ["a", "b", "c"]);
    }

    #[test]
    fn faults_are_off_by_default_and_read_well() {
        let o = RunOptions::new("/s.vmdk", "/logs");
        assert_eq!(o.fault, None);
        assert!(!o.disks_as_is);
        assert_eq!(
            Fault::HoldBefore("initramfs".into()).to_string(),
            "power cut while held before step initramfs"
        );
        assert_eq!(
            Fault::KillAfter(Duration::from_millis(12_340)).to_string(),
            "power cut 12.3 s after BEGIN"
        );
        // The stack's line (init's engine::test_hold) as progress.txt has it.
        let line = "2026-11-26T04:03:59Z [8/9] initramfs: test hook: holding before step \
                    initramfs (osam-test-hold; guest writes synced)";
        assert!(line.contains(&hold_line("initramfs")));
        assert!(!line.contains(&hold_line("initramf")));
    }

    #[test]
    fn failures_read_like_the_step() {
        let f = wait_failure(
            "waiting for END",
            "END",
            Error::Timeout {
                what: "fixup/END".into(),
                timeout: Duration::from_secs(900),
                log: "/l/s.log".into(),
                tail: "last line".into(),
            },
        );
        assert_eq!(
            f.to_string().lines().next(),
            Some("waiting for END: no END after 900 s")
        );
        assert!(f.tail.contains("last line"));
    }
}
