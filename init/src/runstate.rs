//! What PID 1 is doing, for `fixupctl status` and `fixupctl collect`: a
//! small JSON file, `/run/osam/state.json`, rewritten atomically (temp file
//! + rename) at each phase change and at each step of stage 1.
//!
//! PID 1 is its only writer; a reader sees the old state or the new one,
//! never a part. Nothing depends on the file being there: writing it is
//! best effort, and `fixupctl status` says when there is none.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::logging;
use crate::timefmt;

/// The stack's run-time folder (tmpfs): the state file, the stage-1 lock
/// and the ESP's mount point. PID 1 creates it; on a workstation it is
/// absent.
pub const RUN_DIR: &str = "/run/osam";
/// The state file's name in [`RUN_DIR`].
pub const STATE_FILE: &str = "state.json";
/// Where the disk transport mounts the fixup disk's FAT partition.
pub const ESP_MOUNT: &str = "/run/osam/esp";
/// The state file's format version.
pub const STATE_VERSION: u32 = 1;
/// The guest root of the stack (PID 1 mounts the guest there).
pub const DEFAULT_SYSROOT: &str = "/sysroot";
/// The stack's fixup directory.
pub const DEFAULT_FIXUP_DIR: &str = "/tmp/fixup";

/// What PID 1 is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Setting the transport up.
    Starting,
    /// The fixup directory lacks one of the three input files.
    WaitingForFiles,
    /// The inputs are there; BEGIN is not.
    WaitingForBegin,
    /// Stage 1 runs (`step` says which step).
    Running,
    /// Stage 1 ended; `status` says how. Results are written.
    Finished,
    /// The stack could not serve the protocol (`message` says why).
    Failed,
    /// Rescue mode: no fixup, a shell on the console.
    Rescue,
}

impl Phase {
    /// The phase as the state file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::WaitingForFiles => "waiting-for-files",
            Phase::WaitingForBegin => "waiting-for-begin",
            Phase::Running => "running",
            Phase::Finished => "finished",
            Phase::Failed => "failed",
            Phase::Rescue => "rescue",
        }
    }
}

/// The step of stage 1 being run: `n` of `of`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPos {
    pub n: usize,
    pub of: usize,
    pub id: String,
}

/// The fixup disk's FAT partition as the disk transport uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EspInfo {
    /// The partition's device node, e.g. `/dev/sda2`.
    pub device: String,
    /// Where it is mounted while mounted ([`ESP_MOUNT`]).
    pub mount_point: String,
    /// The fixup disk's GPT disk GUID (`osam.disk=`).
    pub disk_guid: String,
}

/// The state file's document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub version: u32,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepPos>,
    /// `success` or `failed` once [`Phase::Finished`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// One sentence on what is going on, or what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub fixup_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp: Option<EspInfo>,
    /// The writer's process id (1 for PID 1).
    pub pid: u32,
    /// When the writer started.
    pub started_at: String,
    /// When the current phase began.
    pub phase_since: String,
    /// When the file was last written.
    pub updated_at: String,
}

impl State {
    /// A fresh state of this process in phase [`Phase::Starting`].
    pub fn new(fixup_dir: &Path) -> State {
        let now = timefmt::now();
        State {
            version: STATE_VERSION,
            phase: Phase::Starting,
            step: None,
            status: None,
            message: None,
            fixup_dir: fixup_dir.display().to_string(),
            transport: None,
            esp: None,
            pid: std::process::id(),
            started_at: now.clone(),
            phase_since: now.clone(),
            updated_at: now,
        }
    }

    /// Moves to `phase` (the step and status are cleared).
    pub fn set_phase(&mut self, phase: Phase, message: Option<String>) {
        if phase != self.phase {
            self.phase_since = timefmt::now();
        }
        self.phase = phase;
        self.step = None;
        self.status = None;
        self.message = message;
    }

    /// What the state says, in one line for people.
    pub fn describe(&self) -> String {
        let mut s = match (self.phase, &self.step, &self.status) {
            (Phase::Running, Some(st), _) => {
                format!("running stage 1: step {}/{} {}", st.n, st.of, st.id)
            }
            (Phase::Running, None, _) => "running stage 1".to_string(),
            (Phase::Finished, _, Some(status)) => format!("finished: {status}"),
            (Phase::WaitingForFiles, _, _) => {
                format!("waiting for the input files in {}", self.fixup_dir)
            }
            (Phase::WaitingForBegin, _, _) => format!("waiting for BEGIN in {}", self.fixup_dir),
            (phase, _, _) => phase.as_str().replace('-', " "),
        };
        if let Some(m) = &self.message {
            s.push_str(": ");
            s.push_str(m);
        }
        s
    }

    /// Writes the state to `<run_dir>/state.json` atomically (the folder
    /// is created if missing).
    pub fn write(&mut self, run_dir: &Path) -> io::Result<()> {
        self.updated_at = timefmt::rfc3339(SystemTime::now());
        std::fs::create_dir_all(run_dir)?;
        let mut json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        json.push(b'\n');
        fsutil::write_atomic(&run_dir.join(STATE_FILE), &json, 0o644)
    }

    /// Reads `<run_dir>/state.json`; `None` when there is none.
    pub fn read(run_dir: &Path) -> io::Result<Option<State>> {
        let path = run_dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }
}

/// Which of the three input files a fixup directory still lacks.
pub fn missing_inputs(fixup_dir: &Path) -> Vec<&'static str> {
    use crate::protocol::config::{NETWORK_INTERFACE_MAP, REPLICA_DISK_MAP, SYSTEM_CONFIGURATION};
    [
        SYSTEM_CONFIGURATION,
        REPLICA_DISK_MAP,
        NETWORK_INTERFACE_MAP,
    ]
    .into_iter()
    .filter(|f| !fixup_dir.join(f).is_file())
    .collect()
}

/// PID 1's writer of the state file: keeps the state and rewrites the file
/// when it changes. Write errors are logged, never returned.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub run_dir: PathBuf,
    pub state: State,
}

impl Tracker {
    pub fn new(run_dir: &Path, fixup_dir: &Path) -> Tracker {
        Tracker {
            run_dir: run_dir.to_path_buf(),
            state: State::new(fixup_dir),
        }
    }

    /// Writes the state as it is now.
    pub fn save(&mut self) {
        if let Err(e) = self.state.write(&self.run_dir) {
            logging::debug(format!(
                "cannot write {}: {e}",
                self.run_dir.join(STATE_FILE).display()
            ));
        }
    }

    /// Moves to `phase` and writes the file when anything changed.
    pub fn phase(&mut self, phase: Phase, message: Option<String>) {
        if self.state.phase == phase && self.state.message == message && self.state.step.is_none() {
            return;
        }
        self.state.set_phase(phase, message);
        self.save();
    }

    /// Stage 1 is at step `n` of `of`; written when the step changes.
    pub fn step(&mut self, n: usize, of: usize, id: &str) {
        let pos = StepPos {
            n,
            of,
            id: id.to_string(),
        };
        if self.state.phase == Phase::Running && self.state.step.as_ref() == Some(&pos) {
            return;
        }
        if self.state.phase != Phase::Running {
            self.state.set_phase(Phase::Running, None);
        }
        self.state.step = Some(pos);
        self.save();
    }

    /// Stage 1 ended with `status` (`success` / `failed`).
    pub fn finished(&mut self, status: &str, message: Option<String>) {
        self.state.set_phase(Phase::Finished, message);
        self.state.status = Some(status.to_string());
        self.save();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_with_the_documented_spelling() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run/osam");
        let mut t = Tracker::new(&run, Path::new("/tmp/fixup"));
        t.state.transport = Some("disk".into());
        t.phase(Phase::WaitingForBegin, None);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(v["phase"], "waiting-for-begin");
        assert_eq!(v["fixupDir"], "/tmp/fixup");
        assert_eq!(v["transport"], "disk");
        assert_eq!(v["pid"], std::process::id());
        assert!(v.get("step").is_none());

        t.step(5, 12, "fstab");
        let s = State::read(&run).unwrap().unwrap();
        assert_eq!(s.phase, Phase::Running);
        assert_eq!(s.describe(), "running stage 1: step 5/12 fstab");

        t.finished("failed", Some("disk.not_found: scsi0:0".into()));
        let s = State::read(&run).unwrap().unwrap();
        assert_eq!(s.step, None);
        assert_eq!(s.describe(), "finished: failed: disk.not_found: scsi0:0");
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(&run).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_file_is_none_and_a_bad_one_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(State::read(d.path()).unwrap().is_none());
        std::fs::write(d.path().join(STATE_FILE), b"{").unwrap();
        assert!(State::read(d.path()).is_err());
    }

    #[test]
    fn describes_each_phase() {
        let mut s = State::new(Path::new("/tmp/fixup"));
        let cases = [
            (Phase::Starting, "starting"),
            (
                Phase::WaitingForFiles,
                "waiting for the input files in /tmp/fixup",
            ),
            (Phase::WaitingForBegin, "waiting for BEGIN in /tmp/fixup"),
            (Phase::Running, "running stage 1"),
            (Phase::Failed, "failed"),
            (Phase::Rescue, "rescue"),
        ];
        for (phase, text) in cases {
            s.set_phase(phase, None);
            assert_eq!(s.describe(), text);
        }
    }

    #[test]
    fn lists_the_missing_inputs() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(missing_inputs(d.path()).len(), 3);
        std::fs::write(d.path().join("replica-disk-map.json"), b"{}").unwrap();
        assert_eq!(
            missing_inputs(d.path()),
            vec!["system-configuration.json", "network-interface-map.json"]
        );
    }
}
