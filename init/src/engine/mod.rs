//! The step framework of stage 1. A step is a function of a [`StepCtx`]
//! that returns what it did; the framework times it, numbers it in
//! progress.txt, records its files, commands, warnings and error in
//! result.json, and turns a panic inside it into a failed step.

pub mod apply;
pub mod fixups;
pub mod identity;
pub mod overlay;
pub mod plan;
pub mod stage1;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::error::{FixupError, Warning, codes};
use crate::protocol::report::Reporter;
use crate::protocol::result::{FileRecord, StepRecord, StepStatus};
use crate::runner::{Command, CommandRecord, CommandRunner, OutputSink};
use crate::timefmt;

/// What a step reports when it ends without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub status: StepStatus,
    pub summary: String,
}

impl StepOutcome {
    pub fn changed(summary: impl Into<String>) -> Self {
        StepOutcome {
            status: StepStatus::Changed,
            summary: summary.into(),
        }
    }
    pub fn unchanged(summary: impl Into<String>) -> Self {
        StepOutcome {
            status: StepStatus::Unchanged,
            summary: summary.into(),
        }
    }
    pub fn skipped(summary: impl Into<String>) -> Self {
        StepOutcome {
            status: StepStatus::Skipped,
            summary: summary.into(),
        }
    }
}

/// What a step can use: the report, the command runner, and its record.
pub struct StepCtx<'a> {
    pub reporter: &'a mut Reporter,
    pub runner: &'a mut dyn CommandRunner,
    /// The limit for each command (`commandTimeoutSeconds`).
    pub command_timeout: Duration,
    record: StepRecord,
}

impl StepCtx<'_> {
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// A progress line for this step.
    pub fn progress(&mut self, msg: &str) {
        self.reporter.progress(msg);
        crate::ui::activity(msg);
    }

    /// A warning attributed to this step.
    pub fn warn(&mut self, code: &str, msg: impl Into<String>) {
        let mut w = Warning::new(code, msg);
        w.step = Some(self.record.id.clone());
        self.reporter.warn(w);
    }

    /// Records a file this step changed.
    pub fn file(&mut self, path: &str, backup: Option<&str>) {
        self.record.files.push(FileRecord {
            path: path.to_string(),
            backup: backup.map(str::to_string),
        });
    }

    /// Runs a command (with the step's timeout unless the command has a
    /// shorter one), logs it and records it in the step.
    pub fn run(&mut self, cmd: Command) -> CommandRecord {
        self.run_inner(cmd, None)
    }

    /// [`Self::run`], also returning the command's output lines, for
    /// commands whose report is parsed (`lvm pvs`). The output still goes
    /// to fixup.log.
    pub fn run_capture(&mut self, cmd: Command) -> (CommandRecord, Vec<String>) {
        let mut lines = Vec::new();
        let rec = self.run_inner(cmd, Some(&mut lines));
        (rec, lines)
    }

    fn run_inner(&mut self, mut cmd: Command, capture: Option<&mut Vec<String>>) -> CommandRecord {
        if cmd.timeout > self.command_timeout {
            cmd.timeout = self.command_timeout;
        }
        self.reporter
            .progress(&format!("running: {}", cmd.display()));
        crate::ui::command_started(&cmd.display());
        let rec = match capture {
            None => self.runner.run(&cmd, self.reporter),
            Some(lines) => {
                let mut tee = Tee {
                    inner: &mut *self.reporter,
                    lines,
                };
                self.runner.run(&cmd, &mut tee)
            }
        };
        let outcome = if !rec.ran && rec.error.is_none() {
            "not run".to_string()
        } else if rec.succeeded() {
            format!("ok in {} ms", rec.duration_ms.unwrap_or(0))
        } else {
            rec.describe_failure()
        };
        crate::ui::command_finished(
            rec.succeeded() || (!rec.ran && rec.error.is_none()),
            &outcome,
        );
        self.reporter
            .log(&format!("$ {} -> {outcome}", cmd.display()));
        self.record.commands.push(rec.clone());
        rec
    }

    /// Runs a command that must succeed: a failure becomes `code`'s error.
    pub fn run_checked(&mut self, cmd: Command, code: &str) -> Result<CommandRecord, FixupError> {
        let rec = self.run(cmd);
        if rec.ran && !rec.succeeded() || rec.error.is_some() {
            let code = if rec.timed_out { codes::TIMEOUT } else { code };
            return Err(FixupError::new(code, rec.describe_failure())
                .with_detail("the command's output is in fixup.log"));
        }
        Ok(rec)
    }
}

/// Passes output on and keeps a copy of each line.
struct Tee<'a> {
    inner: &'a mut dyn OutputSink,
    lines: &'a mut Vec<String>,
}

impl OutputSink for Tee<'_> {
    fn output_line(&mut self, line: &str) {
        self.inner.output_line(line);
        self.lines.push(line.to_string());
    }

    fn heartbeat(&mut self, cmd: &Command, elapsed: Duration) {
        self.inner.heartbeat(cmd, elapsed);
    }
}

/// The test-only hold before step `id` (docs/protocol.md, "Test hook").
fn test_hold(reporter: &mut Reporter, id: &str) {
    use crate::protocol::testhook::{self, Hold};
    let dir = reporter.dir().to_path_buf();
    let hold = testhook::hold_before_step(&dir, id, &mut |line| reporter.progress(line));
    match hold {
        Hold::None => {}
        Hold::Released(waited) => reporter.progress(&format!(
            "test hook: {} removed after {} s, going on",
            testhook::HOLD_FILE,
            waited.as_secs()
        )),
        Hold::TimedOut => {
            let mut w = Warning::new(
                codes::TEST_HOLD_TIMEOUT,
                format!(
                    "test hook: {} still there after {} s, going on",
                    testhook::HOLD_FILE,
                    testhook::MAX_HOLD.as_secs()
                ),
            );
            w.step = Some(id.to_string());
            reporter.warn(w);
        }
    }
}

/// Runs one step: `n` of `total` in progress lines. The step's record goes
/// into the report; its error is returned (and recorded) so the caller can
/// apply the failure policy.
pub fn run_step<T>(
    reporter: &mut Reporter,
    runner: &mut dyn CommandRunner,
    command_timeout: Duration,
    (n, total): (usize, usize),
    id: &str,
    f: impl FnOnce(&mut StepCtx) -> Result<(StepOutcome, T), FixupError>,
) -> Result<T, FixupError> {
    reporter.current = Some((n, total, id.to_string()));
    if reporter.test_hold {
        test_hold(reporter, id);
    }
    crate::ui::step_started((n, total), id, reporter.migration_id.as_deref());
    reporter.progress("started");
    let start = Instant::now();
    let mut ctx = StepCtx {
        reporter,
        runner,
        command_timeout,
        record: StepRecord {
            id: id.to_string(),
            status: StepStatus::Failed,
            duration_ms: 0,
            summary: String::new(),
            files: Vec::new(),
            commands: Vec::new(),
            error: None,
        },
    };
    let result = match catch_unwind(AssertUnwindSafe(|| f(&mut ctx))) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(FixupError::new(
                codes::INTERNAL,
                format!("internal error in step {id}: {what}"),
            )
            .with_detail("this is a bug in the fixup stack; fixup.log has the details"))
        }
    };
    let StepCtx {
        reporter,
        mut record,
        ..
    } = ctx;
    record.duration_ms = timefmt::millis(start.elapsed());
    let ret = match result {
        Ok((outcome, value)) => {
            record.status = outcome.status;
            record.summary = outcome.summary;
            let word = match outcome.status {
                StepStatus::Changed => "done",
                StepStatus::Unchanged => "unchanged",
                StepStatus::Skipped => "skipped",
                StepStatus::Failed => "failed",
            };
            reporter.progress(&format!("{word}: {}", record.summary));
            Ok(value)
        }
        Err(e) => {
            let e = e.in_step(id);
            record.status = StepStatus::Failed;
            record.summary = e.message.clone();
            record.error = Some(e.clone());
            reporter.error(e.clone());
            Err(e)
        }
    };
    crate::ui::step_finished(id, record.status);
    reporter.steps.push(record);
    reporter.current = None;
    ret
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::RecordingRunner;

    #[test]
    fn records_status_commands_files_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let mut rep = Reporter::create(d.path());
        let mut runner = RecordingRunner::succeeding().with_exit("false", 1);
        let t = Duration::from_secs(5);
        let v = run_step(&mut rep, &mut runner, t, (1, 3), "one", |ctx| {
            ctx.file("/etc/fstab", Some("/backup/etc/fstab"));
            ctx.run(Command::new(&["true"]));
            Ok((StepOutcome::changed("1 file"), 42))
        })
        .unwrap();
        assert_eq!(v, 42);
        let e = run_step(&mut rep, &mut runner, t, (2, 3), "two", |ctx| {
            ctx.run_checked(Command::new(&["false"]), codes::COMMAND_FAILED)?;
            Ok((StepOutcome::changed("never"), ()))
        })
        .unwrap_err();
        assert_eq!(e.code, codes::COMMAND_FAILED);
        assert_eq!(e.step.as_deref(), Some("two"));
        let e = run_step::<()>(&mut rep, &mut runner, t, (3, 3), "three", |_| {
            panic!("boom")
        })
        .unwrap_err();
        assert_eq!(e.code, codes::INTERNAL);
        assert!(e.message.contains("boom"));
        assert_eq!(rep.steps.len(), 3);
        assert_eq!(rep.steps[0].status, StepStatus::Changed);
        assert_eq!(rep.steps[0].files.len(), 1);
        assert_eq!(rep.steps[0].commands.len(), 1);
        assert_eq!(rep.steps[1].status, StepStatus::Failed);
        assert!(rep.steps[1].error.is_some());
        assert_eq!(rep.errors.len(), 2);
        let progress = std::fs::read_to_string(d.path().join("progress.txt")).unwrap();
        assert!(progress.contains("[1/3] one: done: 1 file"), "{progress}");
        assert!(progress.contains("[2/3] two: running: false"), "{progress}");
    }

    #[test]
    fn the_test_hold_holds_only_pid1_runs_before_the_named_step() {
        use crate::protocol::testhook::HOLD_FILE;
        let d = tempfile::tempdir().unwrap();
        let hold = d.path().join(HOLD_FILE);
        std::fs::write(&hold, "two\n").unwrap();
        let mut rep = Reporter::create(d.path());
        let mut runner = RecordingRunner::new();
        let t = Duration::from_secs(5);
        // Not enabled (fixupctl run): the file is ignored.
        run_step(&mut rep, &mut runner, t, (2, 2), "two", |_| {
            Ok((StepOutcome::unchanged("-"), ()))
        })
        .unwrap();
        rep.test_hold = true;
        run_step(&mut rep, &mut runner, t, (1, 2), "one", |_| {
            Ok((StepOutcome::unchanged("-"), ()))
        })
        .unwrap();
        let remover = {
            let (dir, hold) = (d.path().to_path_buf(), hold.clone());
            std::thread::spawn(move || {
                // Removed once the hold is announced.
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    let text = std::fs::read_to_string(dir.join("progress.txt")).unwrap();
                    if text.contains("test hook: holding before step two") {
                        return std::fs::remove_file(&hold).is_ok();
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                false
            })
        };
        run_step(&mut rep, &mut runner, t, (2, 2), "two", |_| {
            Ok((StepOutcome::unchanged("-"), ()))
        })
        .unwrap();
        assert!(remover.join().unwrap());
        let progress = std::fs::read_to_string(d.path().join("progress.txt")).unwrap();
        let holds: Vec<&str> = progress
            .lines()
            .filter(|l| l.contains("test hook"))
            .collect();
        assert_eq!(holds.len(), 2, "{progress}");
        assert!(
            holds[0].contains("[2/2] two: test hook: holding before step two"),
            "{progress}"
        );
        assert!(holds[1].contains("removed after"), "{progress}");
        let started = progress.rfind("[2/2] two: started").unwrap();
        assert!(
            progress.rfind("removed after").unwrap() < started,
            "{progress}"
        );
    }

    #[test]
    fn command_timeout_is_capped_by_the_step() {
        let d = tempfile::tempdir().unwrap();
        let mut rep = Reporter::create(d.path());
        let mut runner = RecordingRunner::new();
        run_step(
            &mut rep,
            &mut runner,
            Duration::from_secs(7),
            (1, 1),
            "x",
            |ctx| {
                ctx.run(Command::new(&["dracut"]).timeout(Duration::from_secs(100)));
                Ok((StepOutcome::unchanged("-"), ()))
            },
        )
        .unwrap();
        assert_eq!(runner.calls[0].timeout, Duration::from_secs(7));
    }
}
