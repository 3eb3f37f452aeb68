//! Every change stage 1 makes to a guest goes through here, so that it is
//! atomic, saved and undoable:
//!
//! - paths are resolved inside the guest root (absolute symlinks point into
//!   the guest; nothing outside it is ever written);
//! - an existing file is replaced atomically: a temporary file in the same
//!   directory, the original's owner, mode and `security.selinux` label
//!   copied, fsync, rename, fsync of the directory;
//! - the original is saved once under `data/backup/<path>` (a second run
//!   never overwrites the first backup);
//! - every change is recorded in `data/manifest.json` before the file is
//!   replaced, so a stage 1 killed at any point leaves each guest file
//!   either old or new, and undo can always restore the original bytes.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, renameat};
use nix::sys::stat::{Mode, fchmod, fstatat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::guestfs::GuestRoot;

/// Where stage 1 keeps its files in the guest.
pub const OSAM_DIR: &str = "/opt/vmware/hcx/osam";
pub const DATA_DIR: &str = "/opt/vmware/hcx/osam/data";
pub const BACKUP_DIR: &str = "/opt/vmware/hcx/osam/data/backup";
pub const MANIFEST: &str = "/opt/vmware/hcx/osam/data/manifest.json";

/// The largest guest file the writer reads back (initramfs images are
/// larger than configs).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

const SELINUX_XATTR: &str = "security.selinux";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: is a {kind}, not a regular file; refusing to write through it")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path}: not an absolute guest path")]
    BadPath { path: String },
    #[error("the manifest {MANIFEST} is unreadable: {0}")]
    Manifest(String),
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_string(),
        source,
    }
}

fn nix_err(path: &str) -> impl FnOnce(Errno) -> WriteError + '_ {
    move |e| WriteError::Io {
        path: path.to_string(),
        source: e.into(),
    }
}

/// What a change did to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// An existing file got new contents.
    Modified,
    /// A file that did not exist was created.
    Created,
    /// An existing file was removed.
    Removed,
}

/// A file's identity before or after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// For a symlink: its target; `sha256` and `size` are then of the
    /// target text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Index into `runs`.
    pub run: usize,
    pub step: String,
    /// The guest path written (symlinks resolved).
    pub path: String,
    pub action: Action,
    /// Where the original is saved (guest path), for modified and removed
    /// files; `None` when the guest had no room for it.
    pub backup: Option<String>,
    pub before: Option<FileState>,
    pub after: Option<FileState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub migration_id: String,
    pub started_at: String,
    pub stack_version: String,
    /// The run's initramfs step finished (the images embed every change
    /// of this run and the runs before). A run cut short (a power cut)
    /// leaves it false, so that the next run's initramfs step still sees
    /// that run's changes. Absent in older manifests: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub initramfs_done: bool,
}

/// `data/manifest.json`: every change of every run, appended to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub runs: Vec<RunRecord>,
    pub changes: Vec<Change>,
}

impl Manifest {
    /// The backup of a path, if an earlier change saved one.
    pub fn backup_of(&self, path: &str) -> Option<&str> {
        self.changes
            .iter()
            .filter(|c| c.path == path)
            .find_map(|c| c.backup.as_deref())
    }

    /// Was this path first created by stage 1 (no original)?
    pub fn created_by_us(&self, path: &str) -> bool {
        self.changes
            .iter()
            .find(|c| c.path == path)
            .is_some_and(|c| c.action == Action::Created)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn split(path: &str) -> Result<(&str, &str), WriteError> {
    let bad = || WriteError::BadPath {
        path: path.to_string(),
    };
    if !path.starts_with('/') || path.contains('\0') {
        return Err(bad());
    }
    let (dir, name) = path.rsplit_once('/').ok_or_else(bad)?;
    if name.is_empty() || name == "." || name == ".." {
        return Err(bad());
    }
    Ok((if dir.is_empty() { "/" } else { dir }, name))
}

/// The writer: one per run, over a guest root.
pub struct GuestWriter<'a> {
    root: &'a GuestRoot,
    manifest: Manifest,
    run: usize,
    /// The step the next changes belong to.
    pub step: String,
    /// A command of this run was only listed, not run (`fixupctl run
    /// --no-commands`): its initramfs step must not count as done.
    pub commands_listed_only: bool,
}

/// Whether a copy of a `size`-byte file a command is about to regenerate
/// fits on a file system with `free` bytes: the copy, the new file and its
/// temporary must all fit (three times the size).
pub fn room_for_backup(size: u64, free: u64) -> bool {
    free >= size.saturating_mul(3)
}

/// What [`GuestWriter::preserve`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preserved {
    /// The original is saved and recorded.
    Saved(Written),
    /// Not saved: the file system would be left with too little room for
    /// the command that regenerates the file (recorded without a backup).
    NoRoom { size: u64, free: u64 },
    /// The file does not exist, or an earlier change of it already knows
    /// its original.
    Nothing,
}

/// The outcome of one write, for result.json's `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: String,
    pub backup: Option<String>,
    pub action: Action,
    /// False when the file already had these contents (nothing written).
    pub changed: bool,
}

impl<'a> GuestWriter<'a> {
    /// Opens the writer: reads the existing manifest (a rerun appends to
    /// it) and records this run.
    pub fn open(root: &'a GuestRoot, run: RunRecord) -> Result<Self, WriteError> {
        let mut manifest = read_manifest(root)?.unwrap_or(Manifest {
            version: 1,
            ..Manifest::default()
        });
        manifest.runs.push(run);
        let run = manifest.runs.len() - 1;
        Ok(GuestWriter {
            root,
            manifest,
            run,
            step: String::new(),
            commands_listed_only: false,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Records that this run's initramfs step finished, durably.
    pub fn initramfs_done(&mut self) -> Result<(), WriteError> {
        if let Some(run) = self.manifest.runs.get_mut(self.run) {
            run.initramfs_done = true;
        }
        self.save()
    }

    /// The paths changed since the initramfs images were last built: by
    /// this run, and by earlier runs after the last one whose initramfs
    /// step finished (a run cut short between its edits and its rebuild
    /// leaves images that do not embed its edits).
    pub fn changed_since_initramfs(&self) -> Vec<String> {
        let m = &self.manifest;
        let first = m.runs[..self.run.min(m.runs.len())]
            .iter()
            .rposition(|r| r.initramfs_done)
            .map_or(0, |i| i + 1);
        let mut paths: Vec<String> = Vec::new();
        for c in m.changes.iter().filter(|c| c.run >= first) {
            if !paths.contains(&c.path) {
                paths.push(c.path.clone());
            }
        }
        paths
    }

    pub fn root(&self) -> &GuestRoot {
        self.root
    }

    /// Resolves symlinks inside the guest so that the file they point to
    /// is replaced and the link kept. A missing file resolves to itself.
    fn real_path(&self, path: &str) -> Result<String, WriteError> {
        split(path)?;
        match self.root.canonicalize(path) {
            Ok(p) => Ok(p.to_string_lossy().into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The file is missing: resolve its directory.
                let (dir, name) = split(path)?;
                match self.root.canonicalize(dir) {
                    Ok(d) => {
                        let d = d.to_string_lossy().into_owned();
                        Ok(if d == "/" {
                            format!("/{name}")
                        } else {
                            format!("{d}/{name}")
                        })
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_string()),
                    Err(e) => Err(io_err(path)(e)),
                }
            }
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// The current state and bytes of a regular file; `None` when missing.
    fn current(&self, path: &str) -> Result<Option<(FileState, Vec<u8>)>, WriteError> {
        let (dir, name) = split(path)?;
        let dfd = match self.root.open_dir(dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path)(e)),
        };
        let st = match fstatat(&dfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(nix_err(path)(e)),
        };
        let kind = crate::guestfs::FileKind::from_stat(&st);
        if kind != crate::guestfs::FileKind::File {
            return Err(WriteError::NotRegular {
                path: path.to_string(),
                kind: kind.describe(),
            });
        }
        let data = self.root.read(path, MAX_FILE_BYTES).map_err(io_err(path))?;
        Ok(Some((
            FileState {
                link: None,
                sha256: sha256_hex(&data),
                size: data.len() as u64,
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
            },
            data,
        )))
    }

    /// Saves the original of `path` once; returns the backup's guest path,
    /// or `None` when the guest has no room (the caller decides).
    fn backup(
        &self,
        path: &str,
        state: &FileState,
        data: &[u8],
    ) -> Result<Option<String>, WriteError> {
        if let Some(b) = self.manifest.backup_of(path) {
            return Ok(Some(b.to_string()));
        }
        let backup = format!("{BACKUP_DIR}{path}");
        if self.root.exists(&backup) {
            // A backup from a run whose manifest entry was lost: it is the
            // older original, keep it.
            return Ok(Some(backup));
        }
        match write_file_at(
            self.root,
            &backup,
            data,
            state.mode,
            Some((state.uid, state.gid)),
            None,
        ) {
            Ok(()) => Ok(Some(backup)),
            Err(WriteError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOSPC) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `contents` to `path` (created with `mode` when new).
    pub fn write(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<Written, WriteError> {
        let real = self.real_path(path)?;
        let cur = self.current(&real)?;
        if let Some((state, _)) = &cur {
            if state.sha256 == sha256_hex(contents) {
                return Ok(Written {
                    path: real,
                    backup: self.manifest.backup_of(path).map(str::to_string),
                    action: Action::Modified,
                    changed: false,
                });
            }
        }
        let (action, before, backup, mode, owner, label) = match &cur {
            Some((state, data)) => {
                let backup = self.backup(&real, state, data)?;
                let label = read_label(self.root, &real);
                (
                    Action::Modified,
                    Some(state.clone()),
                    backup,
                    state.mode,
                    Some((state.uid, state.gid)),
                    label,
                )
            }
            None => (Action::Created, None, None, mode, None, None),
        };
        let after = FileState {
            link: None,
            sha256: sha256_hex(contents),
            size: contents.len() as u64,
            mode,
            uid: owner.map(|o| o.0).unwrap_or(0),
            gid: owner.map(|o| o.1).unwrap_or(0),
        };
        // A file created by an earlier run stays "created" for undo.
        let action = if action == Action::Modified && self.manifest.created_by_us(&real) {
            Action::Created
        } else {
            action
        };
        self.record(Change {
            run: self.run,
            step: self.step.clone(),
            path: real.clone(),
            action,
            backup: backup.clone(),
            before,
            after: Some(after),
        })?;
        if let Some((dir, _)) = real.rsplit_once('/') {
            if !dir.is_empty() {
                self.root
                    .create_dir_all(dir, 0o755)
                    .map_err(io_err(&real))?;
            }
        }
        write_file_at(self.root, &real, contents, mode, owner, label.as_deref())?;
        Ok(Written {
            path: real,
            backup,
            action,
            changed: true,
        })
    }

    /// Makes `path` a symlink to `target` (as written: an absolute target
    /// means the guest's own path). The final component is not followed;
    /// an existing link's old target is recorded, an existing regular file
    /// is saved first.
    pub fn set_symlink(&mut self, path: &str, target: &str) -> Result<Written, WriteError> {
        let (dir, name) = split(path)?;
        let dir_real = self.real_path(dir)?;
        let real = if dir_real == "/" {
            format!("/{name}")
        } else {
            format!("{dir_real}/{name}")
        };
        let dfd = self
            .root
            .create_dir_all(&dir_real, 0o755)
            .map_err(io_err(&real))?;
        let before = match fstatat(&dfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(nix_err(&real)(e)),
            Ok(st) => match crate::guestfs::FileKind::from_stat(&st) {
                crate::guestfs::FileKind::Symlink => {
                    let old = nix::fcntl::readlinkat(&dfd, name)
                        .map_err(nix_err(&real))?
                        .to_string_lossy()
                        .into_owned();
                    if old == target {
                        return Ok(Written {
                            path: real,
                            backup: None,
                            action: Action::Modified,
                            changed: false,
                        });
                    }
                    Some((
                        FileState {
                            sha256: sha256_hex(old.as_bytes()),
                            size: old.len() as u64,
                            link: Some(old),
                            mode: 0o777,
                            uid: st.st_uid,
                            gid: st.st_gid,
                        },
                        None,
                    ))
                }
                crate::guestfs::FileKind::File => {
                    let (state, data) = self.current(&real)?.ok_or_else(|| WriteError::Io {
                        path: real.clone(),
                        source: io::Error::from(io::ErrorKind::NotFound),
                    })?;
                    let backup = self.backup(&real, &state, &data)?;
                    Some((state, backup))
                }
                other => {
                    return Err(WriteError::NotRegular {
                        path: real,
                        kind: other.describe(),
                    });
                }
            },
        };
        let action = if before.is_some() && !self.manifest.created_by_us(&real) {
            Action::Modified
        } else {
            Action::Created
        };
        let backup = before.as_ref().and_then(|(_, b)| b.clone());
        self.record(Change {
            run: self.run,
            step: self.step.clone(),
            path: real.clone(),
            action,
            backup: backup.clone(),
            before: before.map(|(s, _)| s),
            after: Some(FileState {
                sha256: sha256_hex(target.as_bytes()),
                size: target.len() as u64,
                link: Some(target.to_string()),
                mode: 0o777,
                uid: 0,
                gid: 0,
            }),
        })?;
        replace_with_symlink(&dfd, name, target).map_err(nix_err(&real))?;
        Ok(Written {
            path: real,
            backup,
            action,
            changed: true,
        })
    }

    /// Removes `path` (saved first). A missing file is not an error.
    /// Saves the original of a file a command is about to regenerate
    /// (`grub.cfg`, an initramfs image) and records it as modified, so
    /// that undo puts it back; the file itself is left as it is. Nothing
    /// is done for a missing file or one whose original an earlier change
    /// already saved (the first original is the one kept). The copy is
    /// skipped when it would leave the file system less free space than
    /// twice the file's size, the room the regeneration itself needs (a
    /// full guest is better off with a working new image than with a
    /// saved old one): it is then recorded without a backup, and undo
    /// says it cannot restore it.
    pub fn preserve(&mut self, path: &str) -> Result<Preserved, WriteError> {
        let real = self.real_path(path)?;
        if self.manifest.changes.iter().any(|c| c.path == real) {
            return Ok(Preserved::Nothing);
        }
        let Some((state, data)) = self.current(&real)? else {
            return Ok(Preserved::Nothing);
        };
        let dir = self
            .root
            .create_dir_all(DATA_DIR, 0o700)
            .map_err(io_err(DATA_DIR))?;
        // The field types differ by target (c_ulong is 32 bits on i686).
        #[allow(clippy::unnecessary_cast)]
        let free = nix::sys::statvfs::fstatvfs(&dir)
            .map(|s| (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
            .map_err(nix_err(DATA_DIR))?;
        let size = state.size;
        let backup = if room_for_backup(size, free) {
            self.backup(&real, &state, &data)?
        } else {
            None
        };
        self.record(Change {
            run: self.run,
            step: self.step.clone(),
            path: real.clone(),
            action: Action::Modified,
            backup: backup.clone(),
            before: Some(state),
            after: None,
        })?;
        Ok(match backup {
            Some(_) => Preserved::Saved(Written {
                path: real,
                backup,
                action: Action::Modified,
                changed: true,
            }),
            None => Preserved::NoRoom { size, free },
        })
    }

    pub fn remove(&mut self, path: &str) -> Result<Option<Written>, WriteError> {
        let real = self.real_path(path)?;
        let Some((state, data)) = self.current(&real)? else {
            return Ok(None);
        };
        let backup = self.backup(&real, &state, &data)?;
        if backup.is_none() {
            return Err(WriteError::Io {
                path: real,
                source: io::Error::other("no room to save the original before removing it"),
            });
        }
        self.record(Change {
            run: self.run,
            step: self.step.clone(),
            path: real.clone(),
            action: Action::Removed,
            backup: backup.clone(),
            before: Some(state),
            after: None,
        })?;
        let (dir, name) = split(&real)?;
        let dfd = self.root.open_dir(dir).map_err(io_err(&real))?;
        unlinkat(&dfd, name, UnlinkatFlags::NoRemoveDir).map_err(nix_err(&real))?;
        let _ = nix::unistd::fsync(&dfd);
        Ok(Some(Written {
            path: real,
            backup,
            action: Action::Removed,
            changed: true,
        }))
    }

    /// Renames a file by writing the new name and removing the old one
    /// (both recorded; undo puts the old one back).
    pub fn rename(
        &mut self,
        from: &str,
        to: &str,
        contents: &[u8],
    ) -> Result<Vec<Written>, WriteError> {
        let mode = self
            .current(&self.real_path(from)?)?
            .map(|(s, _)| s.mode)
            .unwrap_or(0o644);
        let mut out = vec![self.write(to, contents, mode)?];
        if let Some(w) = self.remove(from)? {
            out.push(w);
        }
        Ok(out)
    }

    fn record(&mut self, change: Change) -> Result<(), WriteError> {
        self.manifest.changes.push(change);
        self.save()
    }

    /// Writes the manifest (atomically, durably).
    pub fn save(&self) -> Result<(), WriteError> {
        let mut json = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| WriteError::Manifest(e.to_string()))?;
        json.push(b'\n');
        self.root
            .create_dir_all(DATA_DIR, 0o700)
            .map_err(io_err(DATA_DIR))?;
        write_file_at(self.root, MANIFEST, &json, 0o600, None, None)
    }
}

/// Writes one of stage 1's own files into `data/` (atomically; not a
/// guest change, so not in the manifest): the copy of result.json.
pub fn write_data_file(root: &GuestRoot, name: &str, data: &[u8]) -> Result<(), WriteError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(WriteError::BadPath {
            path: name.to_string(),
        });
    }
    write_file_at(root, &format!("{DATA_DIR}/{name}"), data, 0o600, None, None)
}

/// Reads `data/manifest.json`; `None` when there is none.
pub fn read_manifest(root: &GuestRoot) -> Result<Option<Manifest>, WriteError> {
    match root.read(MANIFEST, 64 << 20) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| WriteError::Manifest(e.to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(MANIFEST)(e)),
    }
}

fn read_label(root: &GuestRoot, path: &str) -> Option<Vec<u8>> {
    let f = root.open_file(path).ok()?;
    let name = std::ffi::CString::new(SELINUX_XATTR).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: `f` is an open descriptor, `name` a NUL-terminated string
    // and `buf` a writable buffer of the length passed.
    let n = unsafe {
        libc::fgetxattr(
            f.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

fn set_label(fd: &OwnedFd, label: &[u8]) {
    let Ok(name) = std::ffi::CString::new(SELINUX_XATTR) else {
        return;
    };
    // SAFETY: `fd` is open, `name` NUL-terminated, `label` a readable
    // buffer of the length passed. A file system without labels refuses
    // with ENOTSUP, which is fine: the relabel covers it.
    unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            label.as_ptr().cast(),
            label.len(),
            0,
        );
    }
}

/// Writes a file inside the root atomically: temp + fsync + rename + fsync
/// of the directory, with the given mode, owner and SELinux label.
fn write_file_at(
    root: &GuestRoot,
    path: &str,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    label: Option<&[u8]>,
) -> Result<(), WriteError> {
    let (dir, name) = split(path)?;
    let dfd = root.create_dir_all(dir, 0o755).map_err(io_err(path))?;
    let tmp = format!(".{name}.osam-tmp");
    let _ = unlinkat(&dfd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    let fd = nix::fcntl::openat(
        &dfd,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(nix_err(path))?;
    let result = (|| -> Result<(), WriteError> {
        let mut f = std::fs::File::from(fd.try_clone().map_err(io_err(path))?);
        f.write_all(data).map_err(io_err(path))?;
        if let Some((uid, gid)) = owner {
            fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(nix_err(path))?;
        }
        fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(nix_err(path))?;
        if let Some(l) = label {
            set_label(&fd, l);
        }
        f.sync_all().map_err(io_err(path))?;
        renameat(&dfd, tmp.as_str(), &dfd, name).map_err(nix_err(path))?;
        nix::unistd::fsync(dfd.as_fd()).map_err(nix_err(path))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = unlinkat(&dfd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    result
}

/// Puts a symlink in place atomically (temp link + rename).
fn replace_with_symlink(dfd: &OwnedFd, name: &str, target: &str) -> Result<(), Errno> {
    let tmp = format!(".{name}.osam-tmp");
    let _ = unlinkat(dfd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    nix::unistd::symlinkat(target, dfd, tmp.as_str())?;
    if let Err(e) = renameat(dfd, tmp.as_str(), dfd, name) {
        let _ = unlinkat(dfd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(e);
    }
    nix::unistd::fsync(dfd.as_fd())
}

/// What undo did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UndoReport {
    pub restored: Vec<String>,
    pub removed: Vec<String>,
    /// Changes that could not be undone, with why.
    pub problems: Vec<String>,
}

/// Restores the guest to what it was before the first run: every modified
/// or removed file from its backup (byte for byte, with its mode and
/// owner), every created file removed. The manifest is then renamed to
/// `manifest.undone.json`, so a later run starts afresh.
pub fn undo(root: &GuestRoot) -> Result<UndoReport, WriteError> {
    let Some(manifest) = read_manifest(root)? else {
        return Err(WriteError::Manifest(format!(
            "there is no {MANIFEST}: nothing to undo"
        )));
    };
    let mut report = UndoReport::default();
    // The first change of each path knows its original state.
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<&Change> = manifest
        .changes
        .iter()
        .filter(|c| seen.insert(c.path.clone()))
        .collect();
    for c in firsts.iter().rev() {
        if let (
            Action::Modified,
            Some(FileState {
                link: Some(old), ..
            }),
        ) = (c.action, &c.before)
        {
            let restored = split(&c.path).ok().and_then(|(dir, name)| {
                let dfd = root.open_dir(dir).ok()?;
                replace_with_symlink(&dfd, name, old).ok()
            });
            match restored {
                Some(()) => report.restored.push(c.path.clone()),
                None => report
                    .problems
                    .push(format!("{}: could not restore the link to {old}", c.path)),
            }
            continue;
        }
        match (c.action, &c.before, &c.backup) {
            (Action::Created, _, _) => {
                let Ok((dir, name)) = split(&c.path) else {
                    continue;
                };
                match root.open_dir(dir) {
                    Ok(dfd) => match unlinkat(&dfd, name, UnlinkatFlags::NoRemoveDir) {
                        Ok(()) | Err(Errno::ENOENT) => report.removed.push(c.path.clone()),
                        Err(e) => report.problems.push(format!("{}: {e}", c.path)),
                    },
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => report.problems.push(format!("{}: {e}", c.path)),
                }
            }
            (_, Some(before), Some(backup)) => match root.read(backup, MAX_FILE_BYTES) {
                Ok(data) if sha256_hex(&data) == before.sha256 => {
                    match write_file_at(
                        root,
                        &c.path,
                        &data,
                        before.mode,
                        Some((before.uid, before.gid)),
                        None,
                    ) {
                        Ok(()) => report.restored.push(c.path.clone()),
                        Err(e) => report.problems.push(e.to_string()),
                    }
                }
                Ok(_) => report.problems.push(format!(
                    "{}: the backup {backup} does not match the original's checksum; left as it is",
                    c.path
                )),
                Err(e) => report
                    .problems
                    .push(format!("{}: backup {backup}: {e}", c.path)),
            },
            (_, _, None) => report.problems.push(format!(
                "{}: no backup was saved (the guest had no room for it); it cannot be restored",
                c.path
            )),
            (_, None, Some(_)) => report
                .problems
                .push(format!("{}: the manifest has no original state", c.path)),
        }
    }
    let dfd = root.open_dir(DATA_DIR).map_err(io_err(DATA_DIR))?;
    renameat(&dfd, "manifest.json", &dfd, "manifest.undone.json").map_err(nix_err(MANIFEST))?;
    let _ = nix::unistd::fsync(dfd.as_fd());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn run() -> RunRecord {
        RunRecord {
            migration_id: "mig-1".into(),
            started_at: "2026-11-25T19:00:00Z".into(),
            stack_version: "0.1.0".into(),
            initramfs_done: false,
        }
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc/sysconfig")).unwrap();
        fs::write(
            d.path().join("etc/fstab"),
            b"/dev/sda1 / ext4 defaults 0 1\n",
        )
        .unwrap();
        fs::set_permissions(
            d.path().join("etc/fstab"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        fs::write(
            d.path().join("etc/sysconfig/ifcfg-ens192"),
            b"DEVICE=ens192\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn a_regenerated_file_is_saved_once_and_undo_restores_it() {
        let d = tree();
        fs::create_dir_all(d.path().join("boot")).unwrap();
        fs::write(d.path().join("boot/initrd.img-6.1"), b"old image").unwrap();
        let root = GuestRoot::open(d.path()).unwrap();
        let mut w = GuestWriter::open(&root, run()).unwrap();
        w.step = "initramfs".into();
        let Preserved::Saved(saved) = w.preserve("/boot/initrd.img-6.1").unwrap() else {
            panic!("not saved")
        };
        assert_eq!(
            saved.backup.as_deref(),
            Some("/opt/vmware/hcx/osam/data/backup/boot/initrd.img-6.1")
        );
        assert_eq!(w.preserve("/boot/missing").unwrap(), Preserved::Nothing);
        // The command regenerates it; a rerun keeps the first original.
        fs::write(d.path().join("boot/initrd.img-6.1"), b"new image").unwrap();
        drop(w);
        let mut w = GuestWriter::open(&root, run()).unwrap();
        assert_eq!(
            w.preserve("/boot/initrd.img-6.1").unwrap(),
            Preserved::Nothing
        );
        fs::write(d.path().join("boot/initrd.img-6.1"), b"newer image").unwrap();
        drop(w);
        let report = undo(&root).unwrap();
        assert_eq!(report.restored, ["/boot/initrd.img-6.1"], "{report:?}");
        assert_eq!(
            fs::read(d.path().join("boot/initrd.img-6.1")).unwrap(),
            b"old image"
        );
    }

    #[test]
    fn backups_of_regenerated_files_need_room_for_the_new_one() {
        for (size, free, fits) in [
            (0, 0, true),
            (30 << 20, 90 << 20, true),
            (30 << 20, (90 << 20) - 1, false),
            (30 << 20, 0, false),
            (u64::MAX, u64::MAX - 1, false),
        ] {
            assert_eq!(room_for_backup(size, free), fits, "{size} {free}");
        }
    }

    /// A run cut short (power cut) after its edits and before its
    /// initramfs rebuild: the next run must still see those edits as
    /// changes the images do not embed yet (else a rerun finds fstab
    /// already fixed and keeps a stale initramfs); once a run's initramfs
    /// step finished, they are no longer reported.
    #[test]
    fn changes_of_a_killed_run_count_until_an_initramfs_step_finishes() {
        let d = tree();
        let root = GuestRoot::open(d.path()).unwrap();
        // Run 0: the fstab edit, then the power cut (no initramfs_done).
        let mut w = GuestWriter::open(&root, run()).unwrap();
        w.step = "fstab".into();
        w.write("/etc/fstab", b"UUID=x / ext4 defaults 0 1\n", 0o644)
            .unwrap();
        assert_eq!(w.changed_since_initramfs(), ["/etc/fstab"]);
        drop(w);
        // Run 1: fstab is already right (no change of its own).
        let mut w = GuestWriter::open(&root, run()).unwrap();
        w.save().unwrap();
        assert_eq!(w.changed_since_initramfs(), ["/etc/fstab"]);
        w.initramfs_done().unwrap();
        drop(w);
        let text = fs::read_to_string(d.path().join(&MANIFEST[1..])).unwrap();
        assert!(text.contains("\"initramfsDone\": true"), "{text}");
        // Run 2: the images embed everything.
        let w = GuestWriter::open(&root, run()).unwrap();
        assert!(w.changed_since_initramfs().is_empty());
        assert_eq!(w.manifest().runs.len(), 3);
        assert!(!w.manifest().runs[0].initramfs_done);
    }

    #[test]
    fn symlinks_set_and_undone() {
        let d = tree();
        fs::create_dir_all(d.path().join("etc/systemd/system")).unwrap();
        symlink(
            "/lib/systemd/system/graphical.target",
            d.path().join("etc/systemd/system/default.target"),
        )
        .unwrap();
        let root = GuestRoot::open(d.path()).unwrap();
        let mut w = GuestWriter::open(&root, run()).unwrap();
        let dt = "/etc/systemd/system/default.target";
        let r = w
            .set_symlink(dt, "/lib/systemd/system/rescue.target")
            .unwrap();
        assert!(r.changed);
        assert!(
            !w.set_symlink(dt, "/lib/systemd/system/rescue.target")
                .unwrap()
                .changed
        );
        let wants = "/etc/systemd/system/rescue.target.wants/osam-stage2.service";
        w.set_symlink(wants, "/etc/systemd/system/osam-stage2.service")
            .unwrap();
        let link = fs::read_link(d.path().join(&dt[1..])).unwrap();
        assert_eq!(link.to_str(), Some("/lib/systemd/system/rescue.target"));
        let report = undo(&root).unwrap();
        assert!(report.problems.is_empty(), "{report:?}");
        let link = fs::read_link(d.path().join(&dt[1..])).unwrap();
        assert_eq!(link.to_str(), Some("/lib/systemd/system/graphical.target"));
        assert!(fs::symlink_metadata(d.path().join(&wants[1..])).is_err());
    }

    #[test]
    fn write_backs_up_once_keeps_mode_and_undo_restores_bytes() {
        let d = tree();
        let root = GuestRoot::open(d.path()).unwrap();
        let mut w = GuestWriter::open(&root, run()).unwrap();
        w.step = "fstab".into();
        let r = w
            .write("/etc/fstab", b"UUID=x / ext4 defaults 0 1\n", 0o644)
            .unwrap();
        assert!(r.changed);
        assert_eq!(
            r.backup.as_deref(),
            Some("/opt/vmware/hcx/osam/data/backup/etc/fstab")
        );
        let meta = fs::metadata(d.path().join("etc/fstab")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        // The same contents again: nothing written.
        assert!(
            !w.write("/etc/fstab", b"UUID=x / ext4 defaults 0 1\n", 0o644)
                .unwrap()
                .changed
        );
        drop(w);
        // A second run changes it again; the first backup stays.
        let mut w = GuestWriter::open(&root, run()).unwrap();
        w.write("/etc/fstab", b"second\n", 0o644).unwrap();
        let backup = fs::read(d.path().join("opt/vmware/hcx/osam/data/backup/etc/fstab")).unwrap();
        assert_eq!(backup, b"/dev/sda1 / ext4 defaults 0 1\n");
        w.write("/etc/new.conf", b"new\n", 0o600).unwrap();
        w.rename(
            "/etc/sysconfig/ifcfg-ens192",
            "/etc/sysconfig/ifcfg-eth0",
            b"DEVICE=eth0\n",
        )
        .unwrap();
        assert!(!d.path().join("etc/sysconfig/ifcfg-ens192").exists());
        let m = read_manifest(&root).unwrap().unwrap();
        assert_eq!(m.runs.len(), 2);
        let report = undo(&root).unwrap();
        assert!(report.problems.is_empty(), "{report:?}");
        assert_eq!(
            fs::read(d.path().join("etc/fstab")).unwrap(),
            b"/dev/sda1 / ext4 defaults 0 1\n"
        );
        assert_eq!(
            fs::metadata(d.path().join("etc/fstab"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o640
        );
        assert!(!d.path().join("etc/new.conf").exists());
        assert!(!d.path().join("etc/sysconfig/ifcfg-eth0").exists());
        assert_eq!(
            fs::read(d.path().join("etc/sysconfig/ifcfg-ens192")).unwrap(),
            b"DEVICE=ens192\n"
        );
        assert!(read_manifest(&root).unwrap().is_none());
    }

    #[test]
    fn symlinks_are_followed_inside_the_guest_and_kept() {
        let d = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("fstab"), b"host\n").unwrap();
        // An absolute link: in the guest it means the guest's own file.
        fs::create_dir_all(d.path().join("real")).unwrap();
        fs::write(d.path().join("real/resolv.conf"), b"nameserver 1.1.1.1\n").unwrap();
        symlink("/real/resolv.conf", d.path().join("etc/resolv.conf")).unwrap();
        // A link aimed at the host's file by its host path.
        symlink(outside.path().join("fstab"), d.path().join("etc/evil")).unwrap();
        let root = GuestRoot::open(d.path()).unwrap();
        let mut w = GuestWriter::open(&root, run()).unwrap();
        let r = w
            .write("/etc/resolv.conf", b"nameserver 10.0.0.1\n", 0o644)
            .unwrap();
        assert_eq!(r.path, "/real/resolv.conf");
        assert!(
            fs::symlink_metadata(d.path().join("etc/resolv.conf"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // In the guest that link dangles: refused, and the host file is
        // never touched.
        assert!(matches!(
            w.write("/etc/evil", b"owned\n", 0o644),
            Err(WriteError::NotRegular { .. })
        ));
        assert_eq!(fs::read(outside.path().join("fstab")).unwrap(), b"host\n");
    }

    #[test]
    fn refuses_fifos_and_devices() {
        let d = tree();
        nix::unistd::mkfifo(&d.path().join("etc/fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        let root = GuestRoot::open(d.path()).unwrap();
        let mut w = GuestWriter::open(&root, run()).unwrap();
        let e = w.write("/etc/fifo", b"x", 0o644).unwrap_err();
        assert!(matches!(e, WriteError::NotRegular { .. }), "{e}");
        assert!(matches!(
            w.write("etc/relative", b"x", 0o644),
            Err(WriteError::BadPath { .. })
        ));
    }

    #[test]
    fn undo_without_a_manifest_says_so() {
        let d = tree();
        let root = GuestRoot::open(d.path()).unwrap();
        let e = undo(&root).unwrap_err();
        assert!(e.to_string().contains("nothing to undo"), "{e}");
    }
}
