//! What the console screen knows about the run, fed by the hooks of
//! [`super`] one event at a time, and turned into a [`View`] for a given
//! instant. No I/O here: the events carry everything (tests drive it with
//! made-up instants).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::render::{
    Body, CommandView, Failed, Finished, Notice, Running, StepLine, StepView, View, Waiting,
};
use crate::error::FixupError;
use crate::protocol::result::{ResultDoc, RunStatus, StepStatus};

/// Output lines kept for the screen (a big console shows more than 8).
pub const OUTPUT_LINES: usize = 40;
/// Warnings and errors kept for the screen.
pub const NOTICES: usize = 6;

#[derive(Debug, Clone)]
enum Phase {
    Starting,
    Waiting { since: Instant },
    Running { since: Instant },
    Done(Box<Body>),
}

#[derive(Debug, Clone)]
struct Step {
    n: usize,
    total: usize,
    id: String,
    activity: Option<String>,
    since: Instant,
}

#[derive(Debug, Clone)]
struct Cmd {
    line: String,
    since: Instant,
    /// Set when it ended: (succeeded, how, ran for).
    ended: Option<(bool, String, Duration)>,
}

/// The screen's model of the run.
#[derive(Debug, Clone)]
pub struct UiState {
    version: String,
    arch: String,
    migration_id: Option<String>,
    dir: Option<String>,
    transport: String,
    present: [bool; 3],
    started: Instant,
    phase: Phase,
    step: Option<Step>,
    /// How many steps the run has (from the last step started).
    total: Option<usize>,
    done: Vec<(String, StepStatus)>,
    command: Option<Cmd>,
    output: VecDeque<String>,
    notices: VecDeque<Notice>,
    notice_count: usize,
}

impl UiState {
    pub fn new(version: &str, arch: &str, now: Instant) -> Self {
        UiState {
            version: version.to_string(),
            arch: arch.to_string(),
            migration_id: None,
            dir: None,
            transport: String::new(),
            present: [false; 3],
            started: now,
            phase: Phase::Starting,
            step: None,
            total: None,
            done: Vec::new(),
            command: None,
            output: VecDeque::new(),
            notices: VecDeque::new(),
            notice_count: 0,
        }
    }

    /// Whether the screen shows a clock that moves (redrawn each second).
    pub fn ticking(&self) -> bool {
        !matches!(self.phase, Phase::Done(_))
    }

    /// Whether the run has ended (success or failure shown).
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done(_))
    }

    /// `/tmp/fixup` and READY were written: waiting for the manager.
    pub fn ready(&mut self, dir: &str, transport: &str, now: Instant) {
        self.dir = Some(dir.to_string());
        self.transport = transport.to_string();
        if matches!(self.phase, Phase::Starting) {
            self.phase = Phase::Waiting { since: now };
        }
    }

    /// Which input files are there so far.
    pub fn inputs_present(&mut self, present: [bool; 3]) {
        self.present = present;
    }

    pub fn step_started(
        &mut self,
        (n, total): (usize, usize),
        id: &str,
        migration_id: Option<&str>,
        now: Instant,
    ) {
        if let Some(m) = migration_id {
            self.migration_id = Some(m.to_string());
        }
        if !matches!(self.phase, Phase::Running { .. } | Phase::Done(_)) {
            self.phase = Phase::Running { since: now };
        }
        self.total = Some(total);
        self.step = Some(Step {
            n,
            total,
            id: id.to_string(),
            activity: None,
            since: now,
        });
        self.command = None;
        self.output.clear();
    }

    pub fn step_finished(&mut self, id: &str, status: StepStatus) {
        self.done.push((id.to_string(), status));
        if self.step.as_ref().is_some_and(|s| s.id == id) {
            self.step = None;
        }
        // A failed command stays on the screen for the failure screen.
        if self
            .command
            .as_ref()
            .is_none_or(|c| !matches!(c.ended, Some((false, _, _))))
        {
            self.command = None;
            self.output.clear();
        }
    }

    /// The step's own progress message ("rebuilding the initramfs for …").
    pub fn activity(&mut self, msg: &str) {
        if let Some(s) = &mut self.step {
            s.activity = Some(one_line(msg));
        }
    }

    pub fn command_started(&mut self, line: &str, now: Instant) {
        // The step announced "<why>: <command>"; the command has its own row.
        if let Some(a) = self.step.as_mut().and_then(|s| s.activity.as_mut()) {
            if let Some(why) = a.strip_suffix(line).and_then(|w| w.strip_suffix(": ")) {
                *a = why.to_string();
            }
        }
        self.command = Some(Cmd {
            line: one_line(line),
            since: now,
            ended: None,
        });
        self.output.clear();
    }

    pub fn command_finished(&mut self, succeeded: bool, how: &str, now: Instant) {
        if let Some(c) = &mut self.command {
            c.ended = Some((succeeded, one_line(how), now.duration_since(c.since)));
        }
    }

    pub fn output_line(&mut self, line: &str) {
        if self.output.len() >= OUTPUT_LINES {
            self.output.pop_front();
        }
        self.output.push_back(line.chars().take(400).collect());
    }

    /// A warning or an error for the screen's list; a line already in the
    /// list (the same error logged twice) is not repeated.
    pub fn notice(&mut self, error: bool, text: &str) {
        let text = one_line(text);
        if self.notices.iter().any(|n| n.text == text) {
            return;
        }
        self.notice_count += 1;
        if self.notices.len() >= NOTICES {
            self.notices.pop_front();
        }
        self.notices.push_back(Notice { error, text });
    }

    /// The run ended with `doc` written into `dir`.
    pub fn finished_with(&mut self, doc: &ResultDoc, dir: &str) {
        self.dir = Some(dir.to_string());
        if doc.migration_id.is_some() {
            self.migration_id.clone_from(&doc.migration_id);
        }
        let mut steps: Vec<StepLine> = doc
            .steps
            .iter()
            .map(|s| StepLine {
                id: s.id.clone(),
                status: s.status,
                summary: s.summary.clone(),
            })
            .collect();
        if steps.is_empty() {
            steps = self
                .done
                .iter()
                .map(|(id, status)| StepLine {
                    id: id.clone(),
                    status: *status,
                    summary: String::new(),
                })
                .collect();
        }
        let duration = Duration::from_millis(doc.duration_ms);
        let body = match (doc.status, doc.errors.first()) {
            (RunStatus::Success, _) | (_, None) => Body::Success(Finished { steps, duration }),
            (RunStatus::Failed, Some(e)) => {
                let mut f = self.failed(e, doc.errors.len() - 1, true, duration);
                f.steps = steps;
                if let Some(step) = &e.step {
                    if let Some(i) = f.steps.iter().position(|s| &s.id == step) {
                        let total = self.total.unwrap_or(f.steps.len()).max(i + 1);
                        f.position = Some((i + 1, total));
                    }
                }
                Body::Failure(f)
            }
        };
        self.phase = Phase::Done(Box::new(body));
    }

    /// PID 1 stopped on `e` outside a run (a transport that never came up,
    /// a panic): shown unless a result was already shown.
    pub fn fatal(&mut self, e: &FixupError, now: Instant) {
        if self.finished() {
            return;
        }
        let f = self.failed(e, 0, false, now.duration_since(self.started));
        self.phase = Phase::Done(Box::new(Body::Failure(f)));
    }

    fn failed(&self, e: &FixupError, more: usize, written: bool, duration: Duration) -> Failed {
        let (command, output) = match &self.command {
            Some(c) if matches!(c.ended, Some((false, _, _))) => (
                Some(self.command_view(c, c.since)),
                self.output.iter().cloned().collect(),
            ),
            _ => (None, Vec::new()),
        };
        Failed {
            code: e.code.clone(),
            step: e.step.clone(),
            position: None,
            message: e.message.clone(),
            detail: e.detail.clone(),
            more_errors: more,
            steps: Vec::new(),
            duration,
            command,
            output,
            written,
        }
    }

    fn command_view(&self, c: &Cmd, now: Instant) -> CommandView {
        match &c.ended {
            None => CommandView {
                line: c.line.clone(),
                elapsed: now.saturating_duration_since(c.since),
                outcome: None,
            },
            Some((ok, how, took)) => CommandView {
                line: c.line.clone(),
                elapsed: *took,
                outcome: Some((*ok, how.clone())),
            },
        }
    }

    /// The screen's content at `now`.
    pub fn view(&self, now: Instant) -> View {
        let body = match &self.phase {
            Phase::Starting => Body::Starting {
                elapsed: now.saturating_duration_since(self.started),
            },
            Phase::Waiting { since } => Body::Waiting(Waiting {
                transport: self.transport.clone(),
                present: self.present,
                waited: now.saturating_duration_since(*since),
            }),
            Phase::Running { since } => Body::Running(Running {
                elapsed: now.saturating_duration_since(*since),
                step: self.step.as_ref().map(|s| StepView {
                    n: s.n,
                    total: s.total,
                    id: s.id.clone(),
                    activity: s.activity.clone(),
                    elapsed: now.saturating_duration_since(s.since),
                }),
                done: self.done.clone(),
                command: self.command.as_ref().map(|c| self.command_view(c, now)),
                output: self.output.iter().cloned().collect(),
            }),
            Phase::Done(body) => (**body).clone(),
        };
        View {
            version: self.version.clone(),
            arch: self.arch.clone(),
            migration_id: self.migration_id.clone(),
            dir: self.dir.clone(),
            body,
            notices: self.notices.iter().cloned().collect(),
            notice_count: self.notice_count,
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::result::{StackInfo, StepRecord};
    use crate::ui::render::{DEFAULT_SIZE, plain};

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    fn record(id: &str, status: StepStatus, summary: &str) -> StepRecord {
        StepRecord {
            id: id.into(),
            status,
            duration_ms: 5,
            summary: summary.into(),
            files: Vec::new(),
            commands: Vec::new(),
            error: None,
        }
    }

    fn doc(steps: Vec<StepRecord>, errors: Vec<FixupError>) -> ResultDoc {
        ResultDoc {
            version: 1,
            migration_id: Some("mig-1".into()),
            status: if errors.is_empty() {
                RunStatus::Success
            } else {
                RunStatus::Failed
            },
            started_at: String::new(),
            finished_at: String::new(),
            duration_ms: 95_000,
            stack: StackInfo {
                arch: "x86_64".into(),
                version: "0.1.0".into(),
                kernel: "6.1.0".into(),
            },
            guest: None,
            steps,
            errors,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn follows_a_run_from_waiting_to_a_running_command() {
        let t0 = Instant::now();
        let mut s = UiState::new("0.1.0", "x86_64", t0);
        assert!(matches!(s.view(at(t0, 2)).body, Body::Starting { .. }));
        s.ready("/tmp/fixup", "9p:fixup", at(t0, 10));
        s.inputs_present([true, true, false]);
        let Body::Waiting(w) = s.view(at(t0, 70)).body else {
            panic!("not waiting")
        };
        assert_eq!(w.waited, Duration::from_secs(60));
        assert_eq!(w.present, [true, true, false]);

        s.step_started((1, 9), "validate", None, at(t0, 80));
        s.step_finished("validate", StepStatus::Unchanged);
        s.step_started((8, 9), "initramfs", Some("mig-1"), at(t0, 90));
        s.activity("rebuilding the initramfs for 5.14.0: dracut -f --kver 5.14.0");
        s.command_started("dracut -f --kver 5.14.0", at(t0, 91));
        s.output_line("dracut: *** Including module: bash ***");
        s.notice(false, "initramfs.module_missing: no vmw_pvscsi");
        s.notice(false, "initramfs.module_missing: no vmw_pvscsi");
        let v = s.view(at(t0, 100));
        assert_eq!(v.migration_id.as_deref(), Some("mig-1"));
        assert_eq!(v.notices.len(), 1);
        let Body::Running(r) = &v.body else {
            panic!("not running")
        };
        assert_eq!(r.elapsed, Duration::from_secs(20));
        let step = r.step.as_ref().unwrap();
        assert_eq!(
            step.activity.as_deref(),
            Some("rebuilding the initramfs for 5.14.0")
        );
        let c = r.command.as_ref().unwrap();
        assert_eq!(c.elapsed, Duration::from_secs(9));
        assert_eq!(c.outcome, None);
        assert_eq!(r.done.len(), 1);
        let text = plain(&v, DEFAULT_SIZE);
        assert!(text.contains("Step 8 of 9: initramfs"), "{text}");
        assert!(text.contains("   | dracut: *** Including module: bash ***"));

        for i in 0..100 {
            s.output_line(&format!("line {i}"));
        }
        let Body::Running(r) = s.view(at(t0, 100)).body else {
            panic!()
        };
        assert_eq!(r.output.len(), OUTPUT_LINES);
        assert_eq!(r.output.last().map(String::as_str), Some("line 99"));
    }

    #[test]
    fn a_failed_command_stays_for_the_failure_screen() {
        let t0 = Instant::now();
        let mut s = UiState::new("0.1.0", "x86_64", t0);
        s.step_started((8, 9), "initramfs", Some("mig-1"), t0);
        s.command_started("dracut -f", t0);
        s.output_line("dracut: cannot find module vmw_pvscsi");
        s.command_finished(false, "`dracut -f` exited with status 1", at(t0, 4));
        s.step_finished("initramfs", StepStatus::Failed);
        let e = FixupError::new(
            "initramfs.failed",
            "rebuilding: `dracut -f` exited with status 1",
        )
        .in_step("initramfs");
        let steps = vec![
            record("validate", StepStatus::Unchanged, "ok"),
            record("initramfs", StepStatus::Failed, &e.message),
        ];
        s.finished_with(&doc(steps, vec![e.clone(), e]), "/tmp/fixup");
        assert!(s.finished() && !s.ticking());
        let Body::Failure(f) = s.view(at(t0, 500)).body else {
            panic!("not a failure")
        };
        assert_eq!(f.code, "initramfs.failed");
        assert_eq!(f.position, Some((2, 9)));
        assert_eq!(f.more_errors, 1);
        assert!(f.written);
        assert_eq!(f.duration, Duration::from_secs(95));
        assert_eq!(f.output, vec!["dracut: cannot find module vmw_pvscsi"]);
        let c = f.command.unwrap();
        assert_eq!(c.elapsed, Duration::from_secs(4));
        assert!(!c.outcome.unwrap().0);
        // A later fatal error does not replace the result.
        s.fatal(&FixupError::new("internal", "x"), at(t0, 600));
        assert!(matches!(s.view(t0).body, Body::Failure(f) if f.code == "initramfs.failed"));
    }

    #[test]
    fn success_and_fatal() {
        let t0 = Instant::now();
        let mut s = UiState::new("0.1.0", "x86_64", t0);
        s.finished_with(
            &doc(
                vec![record("fstab", StepStatus::Changed, "2 rewritten")],
                Vec::new(),
            ),
            "/tmp/fixup",
        );
        let Body::Success(f) = s.view(t0).body else {
            panic!("not a success")
        };
        assert_eq!(f.steps.len(), 1);

        let mut s = UiState::new("0.1.0", "x86_64", t0);
        s.fatal(
            &FixupError::new("transport.failed", "no 9p share"),
            at(t0, 12),
        );
        let Body::Failure(f) = s.view(t0).body else {
            panic!("not a failure")
        };
        assert!(!f.written);
        assert_eq!(f.duration, Duration::from_secs(12));
    }
}
