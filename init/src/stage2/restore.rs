//! Putting the guest back: the boot target (systemd default target,
//! `/etc/inittab`, upstart's `rc-sysinit.conf`) from what stage 1 saved, the
//! hook removed, and the SELinux mode restored after `restorecon` has
//! labelled what stage 1 wrote. Every step is idempotent: a missing saved
//! file means there is nothing (more) to restore.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{Guest, Outcome, log::Log};
use crate::engine::fixups::stage2::{
    AGENT, DEFAULT_TARGET, RC_SCRIPT_NAME, SAVED_INITTAB, SAVED_RC_SYSINIT, SAVED_SELINUX,
    SAVED_TARGET, UNIT, UNIT_WANTS, inittab_single_user, rc_sysinit_single_user, selinux_mode,
    selinux_set,
};
use crate::guestwrite::{Action, Manifest};
use crate::runner::{Command, CommandRunner};

pub const INITTAB: &str = "/etc/inittab";
pub const RC_SYSINIT: &str = "/etc/init/rc-sysinit.conf";
pub const SELINUX_CONFIG: &str = "/etc/selinux/config";
/// Where stage 1 may have put the rc script and its `S00` link.
pub const INIT_D_DIRS: [&str; 2] = ["/etc/rc.d/init.d", "/etc/init.d"];
pub const RC1_DIRS: [&str; 3] = ["/etc/rc.d/rc1.d", "/etc/rc1.d", "/etc/init.d/rc1.d"];
/// `restorecon` arguments per command (keeps argv well under the limit).
const RESTORECON_CHUNK: usize = 200;
/// The trees `restorecon -R` relabels besides the manifest's paths: what
/// stage 1's commands wrote without a manifest entry per file
/// (`grub-install` replaces every module and locale file under
/// `/boot/grub*/`, an initramfs tool may write a new image: new files,
/// which get no label in the stack) and the agent's data folder (backups,
/// manifest, saved modes). Without this they stay `unlabeled_t` once
/// enforcing is back: QEMU scenario (g) found 348 of grub-install's files
/// so.
pub const RELABEL_TREES: [&str; 2] = ["/boot", "/opt/vmware/hcx/osam"];
/// Excluded from the recursive relabel: the ESP (FAT has no labels;
/// `restorecon` fails on it).
pub const RELABEL_EXCLUDE: [&str; 1] = ["/boot/efi"];
const RESTORECON_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Replaces a file atomically (temp file in the same directory, fsync,
/// rename), keeping the mode and owner of the file it replaces (0644
/// root:root for a new one).
pub fn replace_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let (mode, uid, gid) = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => (m.mode() & 0o7777, m.uid(), m.gid()),
        _ => (0o644, 0, 0),
    };
    let label = read_label(path);
    let tmp = temp_name(path)?;
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(contents)?;
        // Not being able to give the owner back (a test tree not owned by
        // root) is no reason to keep the old contents.
        let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
        if let Some(label) = &label {
            set_label(&f, label);
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_parent(path);
    Ok(())
}

const SELINUX_XATTR: &std::ffi::CStr = c"security.selinux";

/// The SELinux label of a file (not following a final symlink).
fn read_label(path: &Path) -> Option<Vec<u8>> {
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: `cpath` and the attribute name are NUL-terminated strings
    // and `buf` is a writable buffer of the length passed.
    let n = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            SELINUX_XATTR.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok().filter(|&n| n > 0)?;
    buf.truncate(n);
    Some(buf)
}

/// Gives a new file the label of the one it replaces, so the atomic
/// replacement keeps the file's SELinux context. A file system without
/// labels refuses; that is fine.
fn set_label(f: &std::fs::File, label: &[u8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: `f` is an open descriptor, the attribute name NUL-terminated
    // and `label` a readable buffer of the length passed.
    let _ = unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            SELINUX_XATTR.as_ptr(),
            label.as_ptr().cast(),
            label.len(),
            0,
        )
    };
}

/// Points `path` at `target`, atomically (temp link + rename).
pub fn replace_symlink(path: &Path, target: &str) -> std::io::Result<()> {
    if std::fs::read_link(path).is_ok_and(|t| t.as_os_str() == target) {
        return Ok(());
    }
    let tmp = temp_name(path)?;
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(path);
    Ok(())
}

fn temp_name(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "a path without a name")
    })?;
    let mut tmp = name.to_os_string();
    tmp.push(".osam-stage2.tmp");
    Ok(path.with_file_name(tmp))
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Removes a file or symlink; `Ok(false)` when it was not there.
pub fn remove_if_present(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_parent(path);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads a saved original; `Ok(None)` when stage 1 saved none.
fn read_saved(g: &Guest, path: &str) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(g.host(path)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_single_user_target(t: &str) -> bool {
    let name = t.rsplit('/').next().unwrap_or(t);
    name == "rescue.target" || name == "emergency.target"
}

/// What stage 1 first found at `path`, from the manifest: `Some(None)`
/// when it created the path, `Some(Some(link))` for a symlink it replaced.
fn first_link_state(manifest: Option<&Manifest>, path: &str) -> Option<Option<String>> {
    let c = manifest?.changes.iter().find(|c| c.path == path)?;
    match (&c.action, &c.before) {
        (Action::Created, _) | (_, None) => Some(None),
        (_, Some(b)) => b.link.clone().map(Some),
    }
}

/// Restores the boot target. Returns the guest paths it wrote (for
/// `restorecon`). Problems are errors in `out`: the guest would not come
/// back to its target.
pub fn restore_boot_target(
    g: &Guest,
    manifest: Option<&Manifest>,
    log: &mut Log,
    out: &mut Outcome,
) -> Vec<String> {
    let mut touched = Vec::new();
    let fail = |log: &mut Log, out: &mut Outcome, msg: String| {
        log.error(&msg);
        out.errors.push(msg);
    };

    // systemd: the saved link target, or an empty line for "none".
    match read_saved(g, SAVED_TARGET) {
        Err(e) => fail(log, out, format!("reading {SAVED_TARGET}: {e}")),
        Ok(None) => log.info(&format!(
            "no {SAVED_TARGET}: no systemd default target to restore"
        )),
        Ok(Some(bytes)) => {
            let text = String::from_utf8_lossy(&bytes);
            let mut saved = text.lines().next().unwrap_or("").trim().to_string();
            if is_single_user_target(&saved) {
                // Stage 1 ran twice and saved its own switch: the manifest
                // knows what the guest had first.
                match first_link_state(manifest, DEFAULT_TARGET) {
                    Some(first) => {
                        let first = first.unwrap_or_default();
                        log.warn(&format!(
                            "{SAVED_TARGET} names {saved} (saved after an earlier stage 1); \
                             using the original from the manifest: {}",
                            if first.is_empty() {
                                "(none)"
                            } else {
                                first.as_str()
                            }
                        ));
                        saved = first;
                    }
                    None => log.warn(&format!(
                        "{SAVED_TARGET} names {saved} and the manifest has no older value: \
                         restoring it as saved"
                    )),
                }
            }
            let link = g.host(DEFAULT_TARGET);
            if saved.is_empty() {
                match std::fs::read_link(&link) {
                    Ok(t) if is_single_user_target(&t.to_string_lossy()) => {
                        match remove_if_present(&link) {
                            Ok(_) => {
                                log.info(&format!(
                                    "removed {DEFAULT_TARGET}: the guest had none (distribution default)"
                                ));
                                out.restored
                                    .push("systemd default target (distribution default)".into());
                                touched.push("/etc/systemd/system".into());
                            }
                            Err(e) => fail(log, out, format!("removing {DEFAULT_TARGET}: {e}")),
                        }
                    }
                    Ok(t) => {
                        log.info(&format!(
                            "{DEFAULT_TARGET} -> {}: not ours, left alone",
                            t.display()
                        ));
                        out.restored
                            .push("systemd default target (already restored)".into());
                    }
                    Err(_) => {
                        log.info(&format!("{DEFAULT_TARGET} absent: nothing to restore"));
                        out.restored
                            .push("systemd default target (distribution default)".into());
                    }
                }
            } else {
                match replace_symlink(&link, &saved) {
                    Ok(()) => {
                        log.info(&format!("restored {DEFAULT_TARGET} -> {saved}"));
                        out.restored.push(format!("systemd default target {saved}"));
                        touched.push(DEFAULT_TARGET.into());
                    }
                    Err(e) => fail(
                        log,
                        out,
                        format!("restoring {DEFAULT_TARGET} -> {saved}: {e}"),
                    ),
                }
            }
        }
    }

    // SysV / upstart: the saved files back over the switched ones.
    type Check = fn(&str) -> Option<(String, String)>;
    let files: [(&str, &str, Check); 2] = [
        (SAVED_INITTAB, INITTAB, inittab_single_user),
        (SAVED_RC_SYSINIT, RC_SYSINIT, rc_sysinit_single_user),
    ];
    for (saved_path, path, level_of) in files {
        match read_saved(g, saved_path) {
            Err(e) => fail(log, out, format!("reading {saved_path}: {e}")),
            Ok(None) => {}
            Ok(Some(mut bytes)) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if level_of(&text).is_some_and(|(_, old)| old == "1" || old == "S") {
                    // Saved after an earlier stage 1: prefer the first backup.
                    let backup = manifest
                        .and_then(|m| m.backup_of(path))
                        .and_then(|b| std::fs::read(g.host(b)).ok());
                    match backup {
                        Some(b) => {
                            log.warn(&format!(
                                "{saved_path} is in single-user mode (saved after an earlier \
                                 stage 1): restoring the first backup of {path} instead"
                            ));
                            bytes = b;
                        }
                        None => log.warn(&format!(
                            "{saved_path} is in single-user mode and there is no older backup: \
                             restoring it as saved"
                        )),
                    }
                }
                let target = g.host(path);
                if std::fs::read(&target).is_ok_and(|cur| cur == bytes) {
                    log.info(&format!("{path} is already the original"));
                    out.restored.push(path.into());
                    touched.push(path.into());
                    continue;
                }
                match replace_file(&target, &bytes) {
                    Ok(()) => {
                        log.info(&format!("restored {path} from {saved_path}"));
                        out.restored.push(path.into());
                        touched.push(path.into());
                    }
                    Err(e) => fail(log, out, format!("restoring {path} from {saved_path}: {e}")),
                }
            }
        }
    }
    touched
}

/// Removes the hook that runs the agent (systemd unit and its wants link,
/// the rc script and its `S00` link). Returns whether all of it is gone.
pub fn remove_hook(g: &Guest, log: &mut Log, out: &mut Outcome) -> bool {
    let mut paths: Vec<String> = vec![UNIT_WANTS.into(), UNIT.into()];
    for d in RC1_DIRS {
        paths.push(format!("{d}/S00{RC_SCRIPT_NAME}"));
    }
    for d in INIT_D_DIRS {
        paths.push(format!("{d}/{RC_SCRIPT_NAME}"));
    }
    let mut ok = true;
    for p in paths {
        match remove_if_present(&g.host(&p)) {
            Ok(true) => log.info(&format!("removed {p}")),
            Ok(false) => {}
            Err(e) => {
                ok = false;
                let msg = format!("removing the stage-2 hook {p}: {e}");
                log.error(&msg);
                out.errors.push(msg);
            }
        }
    }
    ok
}

/// Removes the agent binary and its then-empty directory; the data
/// directory (backups, manifest) stays for undo and audit.
pub fn remove_agent(g: &Guest, log: &mut Log, out: &mut Outcome) {
    let agent = g.host(AGENT);
    match remove_if_present(&agent) {
        Ok(true) => log.info(&format!("removed {AGENT}")),
        Ok(false) => {}
        Err(e) => {
            let msg = format!("removing {AGENT}: {e}");
            log.warn(&msg);
            out.warnings.push(msg);
        }
    }
    if let Some(dir) = agent.parent() {
        // Only when empty: anything else there is not ours to remove.
        let _ = std::fs::remove_dir(dir);
    }
}

/// The ancestors of a guest path below the top level, outermost first
/// (`/opt/vmware/hcx/osam/bin/x` → `/opt/vmware`, `/opt/vmware/hcx`,
/// `/opt/vmware/hcx/osam`, `/opt/vmware/hcx/osam/bin`).
fn ancestors(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    (2..parts.len())
        .map(|n| format!("/{}", parts[..n].join("/")))
        .collect()
}

/// The guest paths `restorecon` relabels: every path of the manifest that
/// exists, the files restored here and the hook's directories, each with
/// its existing ancestors below the top level (stage 1 creates missing
/// parent folders, such as `/opt/vmware/hcx` or
/// `/etc/systemd/system/rescue.target.wants`, without a label; QEMU
/// scenario (g) found them `unlabeled_t`).
pub fn relabel_paths(g: &Guest, manifest: Option<&Manifest>, restored: &[String]) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    let manifest_paths = manifest
        .map(|m| m.changes.iter().map(|c| c.path.clone()).collect::<Vec<_>>())
        .unwrap_or_default();
    let extra = [
        "/etc/systemd/system",
        DEFAULT_TARGET,
        UNIT_WANTS,
        AGENT,
        INITTAB,
        RC_SYSINIT,
        SELINUX_CONFIG,
    ];
    for p in manifest_paths
        .into_iter()
        .chain(restored.iter().cloned())
        .chain(extra.iter().map(|s| s.to_string()))
        .chain(RELABEL_TREES.iter().map(|s| s.to_string()))
    {
        if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
            continue;
        }
        for q in ancestors(&p).into_iter().chain([p]) {
            if !paths.contains(&q) && std::fs::symlink_metadata(g.host(&q)).is_ok() {
                paths.push(q);
            }
        }
    }
    paths
}

/// `restorecon -R -F [-e <excluded>]… <trees>` for the [`RELABEL_TREES`]
/// that exist (`None` when none does).
pub fn relabel_trees_argv(g: &Guest, restorecon: &str) -> Option<Vec<String>> {
    let is_dir =
        |p: &str| std::fs::symlink_metadata(g.host(p)).is_ok_and(|m| m.file_type().is_dir());
    let trees: Vec<&str> = RELABEL_TREES.into_iter().filter(|p| is_dir(p)).collect();
    if trees.is_empty() {
        return None;
    }
    let mut argv = vec![restorecon.to_string(), "-R".into(), "-F".into()];
    for e in RELABEL_EXCLUDE.into_iter().filter(|p| is_dir(p)) {
        argv.extend(["-e".to_string(), e.to_string()]);
    }
    argv.extend(trees.into_iter().map(str::to_string));
    Some(argv)
}

/// SELinux: `restorecon` on what stage 1 and this agent wrote (the
/// manifest's paths, then [`RELABEL_TREES`] recursively), then the
/// saved mode back into `/etc/selinux/config`. Without `restorecon`, or
/// when it fails, `/.autorelabel` makes the next boot relabel.
pub fn restore_selinux(
    g: &Guest,
    manifest: Option<&Manifest>,
    restored: &[String],
    runner: &mut dyn CommandRunner,
    log: &mut Log,
    out: &mut Outcome,
) {
    let saved = match read_saved(g, SAVED_SELINUX) {
        Ok(Some(b)) => String::from_utf8_lossy(&b).trim().to_ascii_lowercase(),
        Ok(None) => {
            log.info(&format!("no {SAVED_SELINUX}: no SELinux mode to restore"));
            return;
        }
        Err(e) => {
            let msg = format!("reading {SAVED_SELINUX}: {e}");
            log.error(&msg);
            out.errors.push(msg);
            return;
        }
    };
    if saved != "enforcing" && saved != "permissive" {
        log.info(&format!(
            "SELinux was {saved:?} before stage 1: nothing to do"
        ));
        return;
    }

    let restorecon = ["/sbin/restorecon", "/usr/sbin/restorecon"]
        .into_iter()
        .find(|p| g.is_executable(p));
    let mut labelled = false;
    match restorecon {
        Some(rc) => {
            let paths = relabel_paths(g, manifest, restored);
            log.info(&format!("relabelling {} path(s) with {rc}", paths.len()));
            labelled = true;
            let recursive = relabel_trees_argv(g, rc);
            let chunks = paths
                .chunks(RESTORECON_CHUNK)
                .map(|chunk| {
                    let mut argv = vec![rc.to_string(), "-F".to_string()];
                    argv.extend(chunk.iter().cloned());
                    argv
                })
                .chain(recursive);
            for argv in chunks {
                let rec = g.run(runner, Command::new(&argv).timeout(RESTORECON_TIMEOUT), log);
                if !rec.succeeded() {
                    labelled = false;
                    let msg = format!("restorecon: {}", rec.describe_failure());
                    log.warn(&msg);
                    out.warnings.push(msg);
                }
            }
        }
        None => {
            let msg = "no restorecon in the guest".to_string();
            log.warn(&msg);
            out.warnings.push(msg);
        }
    }
    if !labelled {
        match replace_file(&g.host("/.autorelabel"), b"") {
            Ok(()) => {
                let msg = "created /.autorelabel: the next boot relabels the file systems";
                log.warn(msg);
                out.warnings.push(msg.into());
            }
            Err(e) => {
                let msg = format!("creating /.autorelabel: {e}");
                log.error(&msg);
                out.errors.push(msg);
            }
        }
    }

    let config = g.host(SELINUX_CONFIG);
    let text = match std::fs::read(&config) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            let msg = format!("reading {SELINUX_CONFIG}: {e}");
            log.error(&msg);
            out.errors.push(msg);
            return;
        }
    };
    if selinux_mode(&text).as_deref() == Some(saved.as_str()) {
        log.info(&format!("{SELINUX_CONFIG} already says SELINUX={saved}"));
        out.restored.push(format!("SELinux {saved}"));
        return;
    }
    if selinux_mode(&text).is_none() {
        let msg = format!("{SELINUX_CONFIG} has no SELINUX= line: left alone");
        log.warn(&msg);
        out.warnings.push(msg);
        return;
    }
    match replace_file(&config, selinux_set(&text, &saved).as_bytes()) {
        Ok(()) => {
            log.info(&format!("set SELINUX={saved} in {SELINUX_CONFIG}"));
            out.restored.push(format!("SELinux {saved}"));
        }
        Err(e) => {
            let msg = format!("setting SELINUX={saved} in {SELINUX_CONFIG}: {e}");
            log.error(&msg);
            out.errors.push(msg);
        }
    }
}
