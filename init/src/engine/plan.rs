//! What a fixup planner produces, and what it reads.
//!
//! A planner is a pure function: guest files in (through [`GuestFiles`],
//! the real guest or an in-memory tree in tests), a [`Plan`] out: new file
//! contents, removals, renames and commands. Only the executor
//! (`engine::apply`) touches the guest.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use crate::error::Warning;
use crate::guestfs::{FileKind, GuestRoot, MAX_CONFIG_BYTES};

/// Read access to a guest's files. Paths are absolute guest paths.
pub trait GuestFiles {
    /// A text file (invalid UTF-8 replaced); `Ok(None)` when missing. A
    /// FIFO, device or directory where a file should be is an error, as is
    /// a file over 16 MiB.
    fn read(&self, path: &str) -> io::Result<Option<String>>;
    /// A binary file of at most `max` bytes; `Ok(None)` when missing.
    fn read_bytes(&self, path: &str, max: u64) -> io::Result<Option<Vec<u8>>>;
    /// The names in a directory, sorted; empty when it is missing.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    fn exists(&self, path: &str) -> bool;
    fn is_dir(&self, path: &str) -> bool;
    /// The target of a symlink as written, `None` if not a symlink.
    fn read_link(&self, path: &str) -> Option<String>;
}

fn missing_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl GuestFiles for GuestRoot {
    fn read(&self, path: &str) -> io::Result<Option<String>> {
        missing_is_none(self.read_to_string_lossy(path, MAX_CONFIG_BYTES))
    }

    fn read_bytes(&self, path: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        missing_is_none(GuestRoot::read(self, path, max))
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        Ok(missing_is_none(self.read_dir(dir))?
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| e.name_str().map(str::to_string))
            .collect())
    }

    fn exists(&self, path: &str) -> bool {
        GuestRoot::exists(self, path)
    }

    fn is_dir(&self, path: &str) -> bool {
        self.metadata(path).is_ok_and(|m| m.is_dir())
    }

    fn read_link(&self, path: &str) -> Option<String> {
        GuestRoot::read_link(self, path)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

/// An in-memory guest for planner tests.
#[derive(Debug, Clone, Default)]
pub struct MemFiles {
    pub files: BTreeMap<String, Vec<u8>>,
    pub links: BTreeMap<String, String>,
    /// Paths that exist but are not regular files (FIFOs, devices).
    pub special: BTreeMap<String, FileKind>,
}

impl MemFiles {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file (builder style).
    pub fn with(mut self, path: &str, text: &str) -> Self {
        self.files
            .insert(path.to_string(), text.as_bytes().to_vec());
        self
    }

    pub fn with_link(mut self, path: &str, target: &str) -> Self {
        self.links.insert(path.to_string(), target.to_string());
        self
    }

    fn dir_prefix(dir: &str) -> String {
        if dir.ends_with('/') {
            dir.to_string()
        } else {
            format!("{dir}/")
        }
    }
}

impl GuestFiles for MemFiles {
    fn read(&self, path: &str) -> io::Result<Option<String>> {
        Ok(self
            .read_bytes(path, MAX_CONFIG_BYTES)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    fn read_bytes(&self, path: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        if let Some(kind) = self.special.get(path) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: is a {}, not a regular file", kind.describe()),
            ));
        }
        match self.files.get(path) {
            Some(b) if b.len() as u64 > max => Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("{path}: larger than {max} bytes"),
            )),
            Some(b) => Ok(Some(b.clone())),
            None => Ok(None),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let prefix = Self::dir_prefix(dir);
        let mut names: Vec<String> = self
            .files
            .keys()
            .chain(self.links.keys())
            .chain(self.special.keys())
            .filter_map(|p| p.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path)
            || self.links.contains_key(path)
            || self.special.contains_key(path)
            || self.is_dir(path)
    }

    fn is_dir(&self, path: &str) -> bool {
        let prefix = Self::dir_prefix(path);
        self.files
            .keys()
            .chain(self.links.keys())
            .any(|p| p.starts_with(&prefix))
    }

    fn read_link(&self, path: &str) -> Option<String> {
        self.links.get(path).cloned()
    }
}

/// One change to a guest file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Write the whole file (created with `mode` when new; an existing
    /// file keeps its mode, owner and label).
    Write {
        path: String,
        contents: Vec<u8>,
        mode: u32,
    },
    /// Remove a file (its original is saved).
    Remove { path: String },
    /// Give a file a new name and contents (ifcfg-ens192 → ifcfg-eth0).
    Rename {
        from: String,
        to: String,
        contents: Vec<u8>,
    },
    /// Make `path` a symlink to `target` (systemd's default.target).
    Symlink { path: String, target: String },
    /// Save the original of a file a command of the step regenerates
    /// (`grub.cfg`, an initramfs image) before the commands run, so that
    /// undo can put it back; the file itself is left to the command.
    Preserve { path: String },
}

impl Edit {
    pub fn preserve(path: &str) -> Edit {
        Edit::Preserve {
            path: path.to_string(),
        }
    }

    pub fn write(path: &str, contents: impl Into<Vec<u8>>) -> Edit {
        Edit::Write {
            path: path.to_string(),
            contents: contents.into(),
            mode: 0o644,
        }
    }

    /// The paths it touches.
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Edit::Write { path, .. }
            | Edit::Remove { path }
            | Edit::Symlink { path, .. }
            | Edit::Preserve { path } => vec![path],
            Edit::Rename { from, to, .. } => vec![from, to],
        }
    }
}

/// What happens when a planned command fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The step fails (the guest would not boot).
    Fail,
    /// A warning (e.g. the initramfs of a kernel that is not the default).
    Warn,
}

/// A command to run in the guest (chrooted into it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCommand {
    pub argv: Vec<String>,
    /// Why, for progress.txt and `fixupctl plan`.
    pub why: String,
    pub on_failure: OnFailure,
    /// Overrides `commandTimeoutSeconds` when shorter.
    pub timeout: Option<Duration>,
    /// Skipped at run time when this already holds.
    pub unless: Option<Unless>,
}

/// A state of the machine that makes a planned command unnecessary, checked
/// when the command would run (planning is offline and cannot see it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unless {
    /// The firmware already has a boot entry with this label for this
    /// loader (`\EFI\…`): a rerun must not add a second one.
    EfiBootEntry { label: String, loader: String },
}

impl PlannedCommand {
    pub fn new<S: AsRef<str>>(argv: &[S], why: impl Into<String>) -> Self {
        PlannedCommand {
            argv: argv.iter().map(|s| s.as_ref().to_string()).collect(),
            why: why.into(),
            on_failure: OnFailure::Fail,
            timeout: None,
            unless: None,
        }
    }

    pub fn unless(mut self, u: Unless) -> Self {
        self.unless = Some(u);
        self
    }

    pub fn warn_only(mut self) -> Self {
        self.on_failure = OnFailure::Warn;
        self
    }
}

/// A planner's result. Edits are applied in order, then commands run in
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub edits: Vec<Edit>,
    pub commands: Vec<PlannedCommand>,
    pub warnings: Vec<Warning>,
    /// One line for progress.txt and result.json, e.g. "2 entries
    /// rewritten (/dev/sda1 -> UUID=0b6c…)".
    pub summary: String,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty() && self.commands.is_empty()
    }

    /// Appends another plan (its summary joined with "; ").
    pub fn extend(&mut self, other: Plan) {
        self.edits.extend(other.edits);
        self.commands.extend(other.commands);
        self.warnings.extend(other.warnings);
        if !other.summary.is_empty() {
            if !self.summary.is_empty() {
                self.summary.push_str("; ");
            }
            self.summary.push_str(&other.summary);
        }
    }
}

/// What every planner is given.
pub struct PlanCtx<'a> {
    pub files: &'a dyn GuestFiles,
    pub info: &'a crate::detect::GuestInfo,
    pub inputs: &'a crate::protocol::config::Inputs,
    pub identity: &'a crate::engine::identity::IdentityMap,
    /// The stack's architecture (`x86_64` or `i686`).
    pub stack_arch: &'a str,
    /// The boot replica's device as the stack sees it (`/dev/sda`), where
    /// PID 1 found it; `None` offline.
    pub boot_device: Option<&'a str>,
}

/// A fixup planner.
pub type Planner = fn(&PlanCtx) -> Result<Plan, crate::error::FixupError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_files_behave_like_a_tree() {
        let m = MemFiles::new()
            .with("/etc/fstab", "x\n")
            .with(
                "/etc/sysconfig/network-scripts/ifcfg-ens192",
                "DEVICE=ens192\n",
            )
            .with_link("/etc/os-release", "../usr/lib/os-release");
        assert_eq!(m.read("/etc/fstab").unwrap().as_deref(), Some("x\n"));
        assert_eq!(m.read("/etc/missing").unwrap(), None);
        assert_eq!(
            m.list("/etc").unwrap(),
            vec!["fstab", "os-release", "sysconfig"]
        );
        assert!(m.is_dir("/etc/sysconfig"));
        assert!(!m.is_dir("/etc/fstab"));
        assert_eq!(
            m.read_link("/etc/os-release").as_deref(),
            Some("../usr/lib/os-release")
        );
        let mut m = m;
        m.special.insert("/etc/fifo".into(), FileKind::Fifo);
        assert!(m.read("/etc/fifo").is_err());
    }

    #[test]
    fn the_real_guest_reads_the_same_way() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/fstab"), "x\n").unwrap();
        let root = GuestRoot::open(d.path()).unwrap();
        let files: &dyn GuestFiles = &root;
        assert_eq!(files.read("/etc/fstab").unwrap().as_deref(), Some("x\n"));
        assert_eq!(files.read("/etc/none").unwrap(), None);
        assert_eq!(files.list("/etc").unwrap(), vec!["fstab"]);
        assert_eq!(files.list("/nope").unwrap(), Vec::<String>::new());
        assert!(files.is_dir("/etc"));
    }
}
