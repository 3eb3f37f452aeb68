//! The run's report as it happens: progress.txt (one flushed line per
//! event), fixup.log (everything, commands' output included), and at the
//! end result.json (atomically) and END, last.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{FixupError, Warning};
use crate::fsutil;
use crate::logging;
use crate::protocol::result::{ResultDoc, RunStatus, StackInfo, StepRecord};
use crate::runner::{Command, OutputSink};
use crate::runstate::Tracker;
use crate::timefmt;

pub const PROGRESS: &str = "progress.txt";
pub const FIXUP_LOG: &str = "fixup.log";
pub const RESULT: &str = "result.json";
pub const END: &str = "END";
pub const BEGIN: &str = "BEGIN";
pub const READY: &str = "READY";

/// How many output lines are kept for the console's view.
const TAIL_LINES: usize = 12;

pub struct Reporter {
    dir: PathBuf,
    progress: Option<File>,
    log: Option<File>,
    started: SystemTime,
    start_instant: Instant,
    /// The step being run and its position, for progress lines.
    pub current: Option<(usize, usize, String)>,
    pub steps: Vec<StepRecord>,
    pub errors: Vec<FixupError>,
    pub warnings: Vec<Warning>,
    pub guest: Option<serde_json::Value>,
    pub migration_id: Option<String>,
    /// Echo command output to the console (`osam.verbose=1`).
    pub echo_output: bool,
    /// PID 1's state file, told of each step as it starts.
    pub state: Option<Tracker>,
    /// Honour the test-only hold file before each step (PID 1 only;
    /// [`crate::protocol::testhook`]).
    pub test_hold: bool,
    tail: VecDeque<String>,
}

impl Reporter {
    /// Opens progress.txt and fixup.log in `dir` (created if missing).
    /// Failing to open them is not fatal: lines then go to the console
    /// only, and the error is logged.
    pub fn create(dir: &Path) -> Reporter {
        let open = |name: &str| -> Option<File> {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
            {
                Ok(f) => Some(f),
                Err(e) => {
                    logging::error(format!("cannot open {}: {e}", dir.join(name).display()));
                    None
                }
            }
        };
        Reporter {
            dir: dir.to_path_buf(),
            progress: open(PROGRESS),
            log: open(FIXUP_LOG),
            started: SystemTime::now(),
            start_instant: Instant::now(),
            current: None,
            steps: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            guest: None,
            migration_id: None,
            echo_output: logging::verbose(),
            state: None,
            test_hold: false,
            tail: VecDeque::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn elapsed(&self) -> Duration {
        self.start_instant.elapsed()
    }

    /// The last lines of command output (for the console).
    pub fn tail(&self) -> impl Iterator<Item = &String> {
        self.tail.iter()
    }

    fn prefix(&self) -> String {
        match &self.current {
            Some((n, m, id)) => format!("[{n}/{m}] {id}: "),
            None => String::new(),
        }
    }

    /// One progress event: a flushed line in progress.txt, and in
    /// fixup.log and on the console.
    pub fn progress(&mut self, msg: &str) {
        if let (Some(t), Some((n, m, id))) = (&mut self.state, &self.current) {
            t.step(*n, *m, id);
        }
        let line = format!("{} {}{}", timefmt::now(), self.prefix(), one_line(msg));
        if let Some(f) = &mut self.progress {
            let _ = writeln!(f, "{line}");
            let _ = f.sync_data();
        }
        self.log_raw(&line);
        logging::info(format!("{}{}", self.prefix(), one_line(msg)));
    }

    /// A line in fixup.log only.
    pub fn log(&mut self, msg: &str) {
        let line = format!("{} {}", timefmt::now(), msg);
        self.log_raw(&line);
        logging::debug(msg);
    }

    fn log_raw(&mut self, line: &str) {
        if let Some(f) = &mut self.log {
            let _ = writeln!(f, "{line}");
        }
    }

    pub fn warn(&mut self, w: Warning) {
        let text = format!("warning: {}: {}", w.code, w.message);
        self.progress(&text);
        crate::ui::warning(&w);
        self.warnings.push(w);
    }

    pub fn error(&mut self, e: FixupError) {
        let mut text = format!("error: {}: {}", e.code, e.message);
        if let Some(d) = &e.detail {
            text.push_str(&format!(" ({d})"));
        }
        self.progress(&text);
        crate::ui::error(&e);
        self.errors.push(e);
    }

    pub fn status(&self) -> RunStatus {
        if self.errors.is_empty() {
            RunStatus::Success
        } else {
            RunStatus::Failed
        }
    }

    /// Builds result.json's document as of now.
    pub fn result(&self) -> ResultDoc {
        let finished = SystemTime::now();
        ResultDoc {
            version: crate::protocol::result::RESULT_VERSION,
            migration_id: self.migration_id.clone(),
            status: self.status(),
            started_at: timefmt::rfc3339(self.started),
            finished_at: timefmt::rfc3339(finished),
            duration_ms: timefmt::millis(self.start_instant.elapsed()),
            stack: StackInfo::current(),
            guest: self.guest.clone(),
            steps: self.steps.clone(),
            errors: self.errors.clone(),
            warnings: self.warnings.clone(),
        }
    }

    /// Ends the run: fixup.log made durable, then result.json written
    /// atomically, then END. The caller has already made the guest's
    /// writes durable. Returns the document written.
    pub fn finish(mut self) -> io::Result<ResultDoc> {
        self.current = None;
        let doc = self.result();
        let status = match doc.status {
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
        };
        self.progress(&format!(
            "finished: {status} in {:.1} s",
            doc.duration_ms as f64 / 1000.0
        ));
        // The console's last screen is up before END tells the manager.
        crate::ui::finished(&doc, &self.dir);
        if let Some(f) = &mut self.log {
            f.flush()?;
            f.sync_all()?;
        }
        if let Some(f) = &mut self.progress {
            f.sync_all()?;
        }
        let mut json = serde_json::to_vec_pretty(&doc)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        json.push(b'\n');
        fsutil::write_atomic(&self.dir.join(RESULT), &json, 0o644)?;
        fsutil::touch_durable(&self.dir.join(END))?;
        Ok(doc)
    }
}

impl OutputSink for Reporter {
    fn output_line(&mut self, line: &str) {
        self.log_raw(&format!("    | {line}"));
        if self.echo_output {
            logging::info(format!("  | {line}"));
        }
        crate::ui::output_line(line);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.chars().take(200).collect());
    }

    fn heartbeat(&mut self, cmd: &Command, elapsed: Duration) {
        self.progress(&format!(
            "still running ({} s): {}",
            elapsed.as_secs(),
            cmd.display()
        ));
    }
}

/// Keeps a progress line on one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_progress_log_result_and_end_in_order() {
        let d = tempfile::tempdir().unwrap();
        let mut r = Reporter::create(d.path());
        r.current = Some((3, 9, "fstab".into()));
        r.progress("done: 2 entries rewritten\nsecond line");
        r.output_line("tool output");
        r.warn(Warning::new("config.unknown_field", "x"));
        assert!(!d.path().join(END).exists());
        let doc = r.finish().unwrap();
        assert_eq!(doc.status, RunStatus::Success);
        let progress = std::fs::read_to_string(d.path().join(PROGRESS)).unwrap();
        let first = progress.lines().next().unwrap();
        assert!(
            first.ends_with("[3/9] fstab: done: 2 entries rewritten second line"),
            "{first}"
        );
        assert!(first.starts_with("20"), "{first}");
        let log = std::fs::read_to_string(d.path().join(FIXUP_LOG)).unwrap();
        assert!(log.contains("    | tool output"));
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join(RESULT)).unwrap()).unwrap();
        assert_eq!(v["status"], "success");
        assert_eq!(v["warnings"][0]["code"], "config.unknown_field");
        assert!(d.path().join(END).exists());
    }

    #[test]
    fn each_step_is_written_to_the_state_file() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        let mut r = Reporter::create(d.path());
        r.state = Some(Tracker::new(&run, d.path()));
        r.progress("before any step");
        assert!(crate::runstate::State::read(&run).unwrap().is_none());
        r.current = Some((2, 9, "storage".into()));
        r.progress("started");
        let s = crate::runstate::State::read(&run).unwrap().unwrap();
        assert_eq!(s.describe(), "running stage 1: step 2/9 storage");
        r.current = Some((3, 9, "detect".into()));
        r.progress("started");
        let s = crate::runstate::State::read(&run).unwrap().unwrap();
        assert_eq!(s.step.unwrap().id, "detect");
    }

    #[test]
    fn an_error_makes_the_run_failed() {
        let d = tempfile::tempdir().unwrap();
        let mut r = Reporter::create(d.path());
        r.error(FixupError::new("disk.not_found", "scsi0:0 never appeared"));
        let doc = r.finish().unwrap();
        assert_eq!(doc.status, RunStatus::Failed);
    }
}
