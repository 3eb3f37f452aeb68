//! result.json (PROTOCOL.md, "result.json") and READY.

use serde::{Deserialize, Serialize};

use crate::error::{FixupError, Warning};
use crate::runner::CommandRecord;

pub const RESULT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Success,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Changed,
    Unchanged,
    Skipped,
    Failed,
}

/// A file a step changed, with where its original was saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub backup: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub id: String,
    pub status: StepStatus,
    pub duration_ms: u64,
    pub summary: String,
    pub files: Vec<FileRecord>,
    pub commands: Vec<CommandRecord>,
    pub error: Option<FixupError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInfo {
    pub arch: String,
    pub version: String,
    pub kernel: String,
}

impl StackInfo {
    /// This stack: its build arch, version and the running kernel.
    pub fn current() -> Self {
        StackInfo {
            arch: crate::STACK_ARCH.to_string(),
            version: crate::VERSION.to_string(),
            kernel: kernel_release(),
        }
    }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultDoc {
    pub version: u32,
    pub migration_id: Option<String>,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub stack: StackInfo,
    pub guest: Option<serde_json::Value>,
    pub steps: Vec<StepRecord>,
    pub errors: Vec<FixupError>,
    pub warnings: Vec<Warning>,
}

/// READY: which stack answered, written when /tmp/fixup is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub version: String,
    pub arch: String,
    pub kernel: String,
    pub transport: String,
    #[serde(rename = "protocolVersion")]
    pub protocol_version: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_protocol_field_names() {
        let doc = ResultDoc {
            version: 1,
            migration_id: Some("mig-7f3a".into()),
            status: RunStatus::Failed,
            started_at: "2026-11-25T19:00:00Z".into(),
            finished_at: "2026-11-25T19:00:41Z".into(),
            duration_ms: 41000,
            stack: StackInfo {
                arch: "x86_64".into(),
                version: "0.1.0".into(),
                kernel: "6.1.0".into(),
            },
            guest: None,
            steps: vec![StepRecord {
                id: "fstab".into(),
                status: StepStatus::Changed,
                duration_ms: 4,
                summary: "2 entries rewritten".into(),
                files: vec![FileRecord {
                    path: "/etc/fstab".into(),
                    backup: Some("/opt/vmware/hcx/osam/data/backup/etc/fstab".into()),
                }],
                commands: vec![],
                error: None,
            }],
            errors: vec![FixupError::new("config.invalid", "bad").in_step("validate")],
            warnings: vec![],
        };
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["migrationId"], "mig-7f3a");
        assert_eq!(v["status"], "failed");
        assert_eq!(v["durationMs"], 41000);
        assert_eq!(v["steps"][0]["durationMs"], 4);
        assert_eq!(v["steps"][0]["status"], "changed");
        assert_eq!(v["steps"][0]["error"], serde_json::Value::Null);
        assert_eq!(v["errors"][0]["code"], "config.invalid");
        assert_eq!(v["errors"][0]["step"], "validate");
        assert_eq!(v["errors"][0]["detail"], serde_json::Value::Null);
        let back: ResultDoc = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
    }
}
