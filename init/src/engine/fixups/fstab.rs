//! Storage references: `/etc/fstab`, `/etc/crypttab`, mdadm.conf, LVM's
//! filters, devices file and cache, and the resume device of
//! initramfs-tools and dracut. A pure planner over the guest's files.
//!
//! What it does, file by file:
//!
//! * `/etc/fstab`: the first field of an entry becomes its target form
//!   ([`IdentityMap::rewrite`], or [`IdentityMap::rewrite_device_name`]
//!   with `fstabIdentifiers: keep`). Everything else of the line — tabs or
//!   spaces, options, dump and pass — stays byte for byte, as do comments,
//!   blank lines, lines of fewer than three fields, network (`nfs`, `nfs4`,
//!   `cifs`, `smbfs`, `sshfs`, `fuse.*`, …), pseudo (`tmpfs`, `proc`,
//!   `sysfs`, …) and bind entries, and LVM/md/device-mapper names (stable
//!   across the migration). An entry whose block device is not among the
//!   replicas gets `nofail` (unless it has `nofail` or `noauto`) and a
//!   `fstab.device_not_replicated` warning; the root entry never does (a
//!   `fstab.root_not_replicated` warning). `x-systemd.device-timeout` is
//!   not added: with `nofail` systemd neither orders the mount before
//!   `local-fs.target` nor waits for it, and sysvinit's `mount -a` and
//!   `fsck -A` skip missing `nofail` devices.
//! * `/etc/crypttab`: the second (source device) field, the same way.
//! * `/etc/mdadm.conf`, `/etc/mdadm/mdadm.conf`: ARRAY lines are kept (md
//!   UUIDs travel with the data), except that a `devices=` restriction
//!   naming kernel devices or `/dev/disk/by-{id,path}` links is dropped
//!   from an ARRAY that has a `UUID=` or `name=`; a `DEVICE` line naming
//!   such devices becomes `DEVICE partitions containers` (mdadm's default:
//!   scan every partition). Both with a `fstab.mdadm_relaxed` warning.
//! * `/etc/lvm/lvm.conf` `filter` / `global_filter`: source device names
//!   in the patterns are replaced by the target device names where those
//!   are known; where an accept pattern would still name only source
//!   devices (a name without a known target name, a by-id/by-path link, a
//!   naming scheme the target does not use) the setting is relaxed to
//!   `[ "a|.*|" ]` with the original lines kept as comments
//!   (`fstab.lvm_filter_relaxed`).
//! * `/etc/lvm/devices/system.devices` (the LVM devices file): removed when
//!   an entry identifies its device by hardware (`sys_wwid`, `wwid`,
//!   `sys_serial`, `serial`) or by name (`devname`), which change on new
//!   hardware; without the file LVM uses every device, so the guest boots
//!   (`fstab.lvm_devices_file_removed`; `vgimportdevices -a` re-creates
//!   it). Entries of stable types (`mpath_uuid`, `md_uuid`, …) keep it.
//! * `/etc/lvm/cache/.cache`: removed (a stale device cache).
//! * `RESUME=` in `/etc/initramfs-tools/conf.d/resume`; `add_device` and
//!   `kernel_cmdline` (`root=`, `resume=`) in `/etc/dracut.conf` and
//!   `/etc/dracut.conf.d/*.conf`. dracut's `add_device` takes a path: a
//!   `UUID=x` target is written `/dev/disk/by-uuid/x` there.
//!
//! The kernel command line is the boot loader planner's: it calls
//! [`rewrite_cmdline_device_args`].

use crate::engine::identity::{IdentityMap, RefKind, classify};
use crate::engine::plan::{Edit, GuestFiles, Plan, PlanCtx};
use crate::error::{FixupError, Warning, codes};
use crate::fsutil::unescape_octal;
use crate::protocol::config::{ControllerKind, FstabIdentifiers};

const FSTAB: &str = "/etc/fstab";
const CRYPTTAB: &str = "/etc/crypttab";
const MDADM_CONFS: [&str; 2] = ["/etc/mdadm.conf", "/etc/mdadm/mdadm.conf"];
const LVM_CONF: &str = "/etc/lvm/lvm.conf";
const LVM_DEVICES: &str = "/etc/lvm/devices/system.devices";
const LVM_CACHE: &str = "/etc/lvm/cache/.cache";
const RESUME_CONF: &str = "/etc/initramfs-tools/conf.d/resume";
const DRACUT_CONF: &str = "/etc/dracut.conf";
const DRACUT_CONF_DIR: &str = "/etc/dracut.conf.d";

/// File system types never backed by a replica's block device.
const NETWORK_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "smb3",
    "sshfs",
    "fuse",
    "glusterfs",
    "ceph",
    "davfs",
    "9p",
    "afs",
    "ncpfs",
    "lustre",
    "gfs2",
    "ocfs2",
];
const PSEUDO_TYPES: &[&str] = &[
    "tmpfs",
    "proc",
    "sysfs",
    "devpts",
    "devtmpfs",
    "securityfs",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "hugetlbfs",
    "mqueue",
    "configfs",
    "pstore",
    "efivarfs",
    "bpf",
    "autofs",
    "binfmt_misc",
    "rpc_pipefs",
    "nfsd",
    "usbfs",
    "ramfs",
    "overlay",
    "none",
];

/// What one file's planner found.
#[derive(Debug, Default)]
struct FileOutcome {
    /// New contents, when they differ.
    new: Option<String>,
    /// (source reference, target reference) rewritten.
    changes: Vec<(String, String)>,
    /// Entries that got `nofail`.
    nofail: usize,
    warnings: Vec<Warning>,
}

impl FileOutcome {
    fn finish(mut self, old: &str, new: String) -> Self {
        if new != old {
            self.new = Some(new);
        }
        self
    }
}

/// Plans the storage-reference fixups (see the module documentation).
pub fn plan(ctx: &PlanCtx) -> Result<Plan, FixupError> {
    let map = ctx.identity;
    let mode = ctx.inputs.system.options.fstab_identifiers;
    let target_prefixes = target_prefixes(ctx);
    let mut plan = Plan::default();
    let mut parts = Vec::new();

    let fstab = ctx
        .files
        .read(FSTAB)
        .map_err(|e| FixupError::new(codes::GUEST_IO, format!("{FSTAB}: {e}")))?;
    if let Some(text) = fstab {
        let out = rewrite_fstab(&text, map, mode);
        parts.extend(describe("fstab", &out, "entry", "entries"));
        take(&mut plan, FSTAB, out);
    }

    if let Some(text) = read_or_warn(ctx.files, CRYPTTAB, &mut plan) {
        let out = rewrite_crypttab(&text, map, mode);
        parts.extend(describe("crypttab", &out, "entry", "entries"));
        take(&mut plan, CRYPTTAB, out);
    }

    for path in MDADM_CONFS {
        if let Some(text) = read_or_warn(ctx.files, path, &mut plan) {
            let out = rewrite_mdadm(&text, path);
            if out.new.is_some() {
                parts.push(format!("{path} relaxed"));
            }
            take(&mut plan, path, out);
        }
    }

    if let Some(text) = read_or_warn(ctx.files, LVM_CONF, &mut plan) {
        let out = rewrite_lvm_conf(&text, map, &target_prefixes);
        if out.new.is_some() {
            parts.push("lvm.conf filter updated".to_string());
        }
        take(&mut plan, LVM_CONF, out);
    }

    if let Some(text) = read_or_warn(ctx.files, LVM_DEVICES, &mut plan)
        && devices_file_is_hardware_bound(&text)
    {
        plan.edits.push(Edit::Remove {
            path: LVM_DEVICES.to_string(),
        });
        plan.warnings.push(Warning::new(
            codes::FSTAB_LVM_DEVICES_FILE_REMOVED,
            format!(
                "{LVM_DEVICES} identified the physical volumes by the source hardware; removed so \
                 that LVM uses every device (run `vgimportdevices -a` to re-create it)"
            ),
        ));
        parts.push("LVM devices file removed".to_string());
    }

    if ctx.files.exists(LVM_CACHE) && !ctx.files.is_dir(LVM_CACHE) {
        plan.edits.push(Edit::Remove {
            path: LVM_CACHE.to_string(),
        });
        parts.push("LVM cache removed".to_string());
    }

    if let Some(text) = read_or_warn(ctx.files, RESUME_CONF, &mut plan) {
        let out = rewrite_resume_conf(&text, map, mode);
        parts.extend(describe("resume", &out, "device", "devices"));
        take(&mut plan, RESUME_CONF, out);
    }

    let mut dracut = vec![DRACUT_CONF.to_string()];
    dracut.extend(
        ctx.files
            .list(DRACUT_CONF_DIR)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.ends_with(".conf"))
            .map(|n| format!("{DRACUT_CONF_DIR}/{n}")),
    );
    for path in &dracut {
        if let Some(text) = read_or_warn(ctx.files, path, &mut plan) {
            let out = rewrite_dracut_conf(&text, map, mode);
            parts.extend(describe("dracut", &out, "device", "devices"));
            take(&mut plan, path, out);
        }
    }

    plan.summary = if parts.is_empty() {
        "no storage references to rewrite".to_string()
    } else {
        parts.join("; ")
    };
    Ok(plan)
}

fn read_or_warn(files: &dyn GuestFiles, path: &str, plan: &mut Plan) -> Option<String> {
    match files.read(path) {
        Ok(t) => t,
        Err(e) => {
            plan.warnings.push(Warning::new(
                codes::FSTAB_UNREADABLE,
                format!("{path}: {e}; skipped"),
            ));
            None
        }
    }
}

fn take(plan: &mut Plan, path: &str, out: FileOutcome) {
    plan.warnings.extend(out.warnings);
    if let Some(new) = out.new {
        plan.edits.push(Edit::write(path, new));
    }
}

/// "fstab: 2 entries rewritten (/dev/sda1 -> UUID=0b6c…, …), nofail added to 1".
fn describe(what: &str, out: &FileOutcome, one: &str, many: &str) -> Option<String> {
    if out.changes.is_empty() && out.nofail == 0 {
        return None;
    }
    let mut s = format!("{what}:");
    if !out.changes.is_empty() {
        let n = out.changes.len();
        let shown: Vec<String> = out
            .changes
            .iter()
            .take(3)
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect();
        let more = if n > 3 { ", …" } else { "" };
        s.push_str(&format!(
            " {n} {} rewritten ({}{more})",
            if n == 1 { one } else { many },
            shown.join(", ")
        ));
    }
    if out.nofail > 0 {
        if !out.changes.is_empty() {
            s.push(',');
        }
        s.push_str(&format!(" nofail added to {}", out.nofail));
    }
    Some(s)
}

/// The device-name prefixes the target uses (`/dev/sd`, `/dev/nvme`).
fn target_prefixes(ctx: &PlanCtx) -> Vec<&'static str> {
    let mut v = Vec::new();
    for d in &ctx.inputs.disks.disks {
        let p = match d.target.controller.kind {
            ControllerKind::Nvme => "/dev/nvme",
            _ => "/dev/sd",
        };
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
}

// ---------------------------------------------------------------------------
// Lines and fields
// ---------------------------------------------------------------------------

/// Splits text into (line, terminator) keeping `\n` / `\r\n` (and a last
/// line without one).
fn lines(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, eol, next) = match rest.find('\n') {
            Some(i) => {
                let body = &rest[..i];
                match body.strip_suffix('\r') {
                    Some(b) => (b, &rest[i - 1..=i], &rest[i + 1..]),
                    None => (body, &rest[i..=i], &rest[i + 1..]),
                }
            }
            None => (rest, "", ""),
        };
        out.push((line, eol));
        rest = next;
    }
    out
}

/// The byte ranges of the whitespace-separated fields of a line.
fn fields(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        let ws = c == ' ' || c == '\t';
        match (ws, start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

/// fstab's escaping of a field (space, tab, newline, backslash as octal).
fn escape_octal(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces byte ranges of `line` (sorted, disjoint) with new texts.
fn splice(line: &str, mut repl: Vec<((usize, usize), String)>) -> String {
    repl.sort_by_key(|(r, _)| *r);
    let mut out = String::new();
    let mut at = 0;
    for ((s, e), t) in repl {
        out.push_str(&line[at..s]);
        out.push_str(&t);
        at = e;
    }
    out.push_str(&line[at..]);
    out
}

fn is_comment_or_blank(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Whether a device reference names a block device that could be a
/// replica's (not LVM/md, not a file, share or pseudo file system).
fn is_block_reference(spec: &str) -> bool {
    matches!(
        classify(spec),
        RefKind::KernelName | RefKind::Tag | RefKind::DiskLink
    )
}

// ---------------------------------------------------------------------------
// fstab and crypttab
// ---------------------------------------------------------------------------

fn rewrite_fstab(text: &str, map: &IdentityMap, mode: FstabIdentifiers) -> FileOutcome {
    let mut out = FileOutcome::default();
    let mut new = String::with_capacity(text.len());
    for (line, eol) in lines(text) {
        new.push_str(&rewrite_fstab_line(line, map, mode, &mut out));
        new.push_str(eol);
    }
    out.finish(text, new)
}

fn rewrite_fstab_line(
    line: &str,
    map: &IdentityMap,
    mode: FstabIdentifiers,
    out: &mut FileOutcome,
) -> String {
    let f = fields(line);
    if is_comment_or_blank(line) || f.len() < 3 {
        return line.to_string();
    }
    let field = |i: usize| f.get(i).map(|&(s, e)| &line[s..e]);
    let spec = unescape_octal(field(0).unwrap_or_default());
    let mount = unescape_octal(field(1).unwrap_or_default());
    let fstype = field(2).unwrap_or_default();
    let opts: Vec<&str> = field(3).map(|o| o.split(',').collect()).unwrap_or_default();
    let network = NETWORK_TYPES.contains(&fstype)
        || fstype.starts_with("fuse.")
        || spec.starts_with("//")
        || (spec.contains(':') && !spec.starts_with('/') && classify(&spec) != RefKind::Tag);
    let pseudo = PSEUDO_TYPES.contains(&fstype);
    let bind = opts.iter().any(|o| matches!(*o, "bind" | "rbind" | "move"));
    if network || pseudo || bind || !is_block_reference(&spec) {
        return line.to_string();
    }
    let mut repl = Vec::new();
    if let Some(t) = map.rewrite_for(&spec, mode) {
        if mode == FstabIdentifiers::Keep
            && classify(&spec) == RefKind::KernelName
            && classify(&t) == RefKind::KernelName
        {
            out.warnings.push(Warning::new(
                codes::FSTAB_DEVICE_NAME_CHANGED,
                format!(
                    "/etc/fstab: {spec} is named {t} on the target; rewritten (device names are \
                     not stable: consider fstabIdentifiers \"uuid\")"
                ),
            ));
        }
        if let Some(&r) = f.first() {
            repl.push((r, escape_octal(&t)));
        }
        out.changes.push((spec.clone(), t));
    } else if !map.is_known(&spec) {
        if mount == "/" {
            out.warnings.push(Warning::new(
                codes::FSTAB_ROOT_NOT_REPLICATED,
                format!(
                    "/etc/fstab: the root entry names {spec}, which is not among the replicas; \
                     left as it is: \"{line}\""
                ),
            ));
        } else if !opts.iter().any(|o| matches!(*o, "nofail" | "noauto")) {
            match f.get(3) {
                Some(&(s, e)) => {
                    let o = &line[s..e];
                    repl.push(((s, e), format!("{o},nofail")));
                }
                None => {
                    let sep = f
                        .get(2)
                        .zip(f.get(1))
                        .map_or(" ", |(&(s, _), &(_, e))| &line[e..s]);
                    let end = line.len();
                    repl.push(((end, end), format!("{sep}defaults,nofail")));
                }
            }
            out.nofail += 1;
            out.warnings.push(Warning::new(
                codes::FSTAB_DEVICE_NOT_REPLICATED,
                format!(
                    "/etc/fstab: {spec} ({mount}) is not among the replicas; added nofail so the \
                     boot does not wait for it: \"{line}\""
                ),
            ));
        }
    }
    if repl.is_empty() {
        line.to_string()
    } else {
        splice(line, repl)
    }
}

fn rewrite_crypttab(text: &str, map: &IdentityMap, mode: FstabIdentifiers) -> FileOutcome {
    let mut out = FileOutcome::default();
    let mut new = String::with_capacity(text.len());
    for (line, eol) in lines(text) {
        let f = fields(line);
        let mut l = line.to_string();
        if !is_comment_or_blank(line)
            && let Some(&(s, e)) = f.get(1)
        {
            let dev = unescape_octal(&line[s..e]);
            if is_block_reference(&dev)
                && let Some(t) = map.rewrite_for(&dev, mode)
            {
                l = splice(line, vec![((s, e), escape_octal(&t))]);
                out.changes.push((dev, t));
            }
        }
        new.push_str(&l);
        new.push_str(eol);
    }
    out.finish(text, new)
}

// ---------------------------------------------------------------------------
// mdadm.conf
// ---------------------------------------------------------------------------

/// Whether a device pattern in mdadm.conf names source hardware: a kernel
/// name or a glob over one, or a by-id/by-path link.
fn names_source_device(token: &str) -> bool {
    let t = token.trim_matches('"');
    t.starts_with("/dev/disk/by-id/")
        || t.starts_with("/dev/disk/by-path/")
        || [
            "/dev/sd",
            "/dev/hd",
            "/dev/vd",
            "/dev/xvd",
            "/dev/nvme",
            "/dev/cciss",
        ]
        .iter()
        .any(|p| t.starts_with(p))
}

fn rewrite_mdadm(text: &str, path: &str) -> FileOutcome {
    let mut out = FileOutcome::default();
    let mut new = String::with_capacity(text.len());
    let mut in_relaxed_device = false;
    for (line, eol) in lines(text) {
        let f = fields(line);
        let continuation = line.starts_with([' ', '\t']) && !line.trim().is_empty();
        if in_relaxed_device && continuation && !line.trim_start().starts_with('#') {
            // A continuation of a DEVICE line that was replaced: dropped.
            continue;
        }
        in_relaxed_device = false;
        let first = f.first().map(|&(s, e)| &line[s..e]).unwrap_or_default();
        let kw = first.to_ascii_uppercase();
        if is_comment_or_blank(line) || continuation {
            new.push_str(line);
            new.push_str(eol);
            continue;
        }
        if kw.len() >= 3 && "DEVICE".starts_with(&kw) {
            let named = f
                .iter()
                .skip(1)
                .any(|&(s, e)| names_source_device(&line[s..e]));
            if named {
                let indent = &line[..f.first().map_or(0, |r| r.0)];
                new.push_str(&format!("{indent}DEVICE partitions containers"));
                new.push_str(eol);
                out.warnings.push(Warning::new(
                    codes::FSTAB_MDADM_RELAXED,
                    format!(
                        "{path}: \"{}\" named source devices; mdadm now scans every partition \
                         (arrays are found by their UUID)",
                        line.trim()
                    ),
                ));
                in_relaxed_device = true;
                continue;
            }
        } else if kw == "ARRAY" {
            let has_id = f.iter().any(|&(s, e)| {
                let t = line[s..e].to_ascii_lowercase();
                t.starts_with("uuid=") || t.starts_with("name=")
            });
            // Every such devices= (a second one would be dropped by a rerun).
            let devices: Vec<((usize, usize), String)> = f
                .iter()
                .enumerate()
                .filter(|&(_, &(s, e))| {
                    let t = &line[s..e];
                    t.to_ascii_lowercase().starts_with("devices=")
                        && t["devices=".len()..].split(',').any(names_source_device)
                })
                .map(|(i, &(_, end))| {
                    let start = f.get(i.wrapping_sub(1)).map_or(0, |r| r.1);
                    ((start, end), String::new())
                })
                .collect();
            if has_id && !devices.is_empty() {
                let l = splice(line, devices);
                out.warnings.push(Warning::new(
                    codes::FSTAB_MDADM_RELAXED,
                    format!(
                        "{path}: removed the devices= restriction of \"{}\" (source device \
                         names; the array is found by its UUID)",
                        line.trim()
                    ),
                ));
                new.push_str(&l);
                new.push_str(eol);
                continue;
            }
        }
        new.push_str(line);
        new.push_str(eol);
    }
    out.finish(text, new)
}

// ---------------------------------------------------------------------------
// LVM
// ---------------------------------------------------------------------------

/// Replaces source kernel device names in `s` by their target device names
/// (left to right, longest name first, never inside a longer name).
/// `None` when a source name has no known target device name.
fn substitute_names(s: &str, map: &IdentityMap) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with("/dev/") {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '/'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            // The longest prefix of `word` that is a kernel name we know.
            let mut hit = None;
            for k in (5..=end).rev() {
                let cand = &word[..k];
                if classify(cand) != RefKind::KernelName {
                    continue;
                }
                let next = word[k..].chars().next();
                if next.is_some_and(|c| c.is_ascii_digit()) {
                    continue;
                }
                if map.is_known(cand) {
                    hit = Some(k);
                    break;
                }
            }
            if let Some(k) = hit {
                let cand = &word[..k];
                match map.rewrite_device_name(cand) {
                    None => out.push_str(cand),
                    Some(t) if classify(&t) == RefKind::KernelName => out.push_str(&t),
                    Some(_) => return None,
                }
                i += k;
                continue;
            }
            out.push_str(word);
            i += end.max(1);
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    Some(out)
}

/// The string elements of an LVM array value, with their byte ranges in
/// `value` (the quotes excluded).
fn lvm_strings(value: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match (start, c) {
            (None, '"') => start = Some(i + 1),
            (Some(_), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(s), '"') if !escaped => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
        escaped = false;
    }
    out
}

fn rewrite_lvm_conf(text: &str, map: &IdentityMap, target_prefixes: &[&str]) -> FileOutcome {
    let mut out = FileOutcome::default();
    let all = lines(text);
    let mut new = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(&(line, eol)) = all.get(i) {
        let t = line.trim_start();
        let key = ["global_filter", "filter"].into_iter().find(|k| {
            t.strip_prefix(k)
                .is_some_and(|r| r.trim_start().starts_with('='))
        });
        let Some(key) = key.filter(|_| !t.starts_with('#')) else {
            new.push_str(line);
            new.push_str(eol);
            i += 1;
            continue;
        };
        // The assignment spans lines up to the closing ']' (or one line
        // for a single string).
        let mut j = i;
        let mut value = String::new();
        while let Some(&(l, e)) = all.get(j) {
            value.push_str(l);
            value.push_str(e);
            j += 1;
            let v = value.split_once('=').map_or("", |x| x.1).trim_start();
            if !v.starts_with('[') || closes_array(&strip_comment(&value)) {
                break;
            }
        }
        let original = value.clone();
        let strings = lvm_strings(&strip_comment(&value));
        let mut relax = false;
        let mut repl = Vec::new();
        for &(s, e) in &strings {
            let el = &value[s..e];
            let accept = el.starts_with('a');
            match substitute_names(el, map) {
                Some(n) => {
                    if accept && (n.contains("/dev/disk/by-id") || n.contains("/dev/disk/by-path"))
                    {
                        relax = true;
                    }
                    if accept
                        && [
                            "/dev/sd",
                            "/dev/hd",
                            "/dev/vd",
                            "/dev/xvd",
                            "/dev/nvme",
                            "/dev/cciss",
                        ]
                        .iter()
                        .any(|p| n.contains(p) && !target_prefixes.contains(p))
                    {
                        relax = true;
                    }
                    if n != el {
                        out.changes.push((el.to_string(), n.clone()));
                        repl.push(((s, e), n));
                    }
                }
                None => relax = accept || relax,
            }
        }
        if relax {
            let indent = &line[..line.len() - t.len()];
            for (l, e) in &all[i..j] {
                new.push_str(&format!("{indent}# osam: was: {}{e}", l.trim_start()));
            }
            let last_eol = all.get(j - 1).map_or("\n", |x| x.1);
            new.push_str(&format!("{indent}{key} = [ \"a|.*|\" ]{last_eol}"));
            out.warnings.push(Warning::new(
                codes::FSTAB_LVM_FILTER_RELAXED,
                format!(
                    "{LVM_CONF}: {key} accepted source devices only ({}); relaxed to accept \
                     every device",
                    original.trim().replace('\n', " ")
                ),
            ));
        } else {
            new.push_str(&splice(&value, repl));
        }
        i = j;
    }
    out.finish(text, new)
}

/// Whether a `]` appears outside the strings of a (comment-free) text.
fn closes_array(s: &str) -> bool {
    let mut in_str = false;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            '\\' if in_str && !escaped => {
                escaped = true;
                continue;
            }
            '"' if !escaped => in_str = !in_str,
            ']' if !in_str => return true,
            _ => {}
        }
        escaped = false;
    }
    false
}

/// A text with `#` comments (outside strings) blanked, same length.
fn strip_comment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut in_comment = false;
    for c in s.chars() {
        if c == '\n' {
            in_comment = false;
        } else if !in_str && c == '#' {
            in_comment = true;
        } else if !in_comment && c == '"' {
            in_str = !in_str;
        }
        if in_comment {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the LVM devices file names devices by hardware or by name.
fn devices_file_is_hardware_bound(text: &str) -> bool {
    text.lines()
        .filter(|l| !is_comment_or_blank(l))
        .flat_map(str::split_whitespace)
        .filter_map(|t| t.strip_prefix("IDTYPE="))
        .any(|t| matches!(t, "sys_wwid" | "wwid" | "sys_serial" | "serial" | "devname"))
}

// ---------------------------------------------------------------------------
// resume and dracut
// ---------------------------------------------------------------------------

fn unquote(v: &str) -> (&str, &str) {
    for q in ["\"", "'"] {
        if let Some(inner) = v.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return (inner, q);
        }
    }
    (v, "")
}

fn rewrite_resume_conf(text: &str, map: &IdentityMap, mode: FstabIdentifiers) -> FileOutcome {
    let mut out = FileOutcome::default();
    let mut new = String::with_capacity(text.len());
    for (line, eol) in lines(text) {
        let t = line.trim_start();
        let mut l = line.to_string();
        if let Some(v) = t.strip_prefix("RESUME=") {
            let v = v.trim_end();
            let (dev, q) = unquote(v);
            if let Some(target) = map.rewrite_for(dev, mode) {
                let start = line.len() - t.len() + "RESUME=".len();
                l = splice(
                    line,
                    vec![((start, start + v.len()), format!("{q}{target}{q}"))],
                );
                out.changes.push((dev.to_string(), target));
            }
        }
        new.push_str(&l);
        new.push_str(eol);
    }
    out.finish(text, new)
}

/// `UUID=x` → `/dev/disk/by-uuid/x` (dracut's `add_device` takes paths).
fn as_path(target: &str) -> String {
    for (tag, dir) in [
        ("UUID=", "by-uuid"),
        ("LABEL=", "by-label"),
        ("PARTUUID=", "by-partuuid"),
    ] {
        if let Some(v) = target.strip_prefix(tag) {
            return format!("/dev/disk/{dir}/{v}");
        }
    }
    target.to_string()
}

fn rewrite_dracut_conf(text: &str, map: &IdentityMap, mode: FstabIdentifiers) -> FileOutcome {
    let mut out = FileOutcome::default();
    let mut new = String::with_capacity(text.len());
    for (line, eol) in lines(text) {
        let t = line.trim_start();
        let mut l = line.to_string();
        let key = ["add_device", "kernel_cmdline"]
            .into_iter()
            .find(|k| t.starts_with(&format!("{k}=")) || t.starts_with(&format!("{k}+=")));
        if let Some(key) = key
            && let Some(eq) = t.find('=')
        {
            let vstart = line.len() - t.len() + eq + 1;
            let raw = line[vstart..].trim_end();
            let (inner, q) = unquote(raw);
            let rewritten = if key == "add_device" {
                let mut changed = Vec::new();
                let r = rewrite_tokens(inner, |tok| {
                    let t = map.rewrite_for(tok, mode).map(|t| as_path(&t))?;
                    changed.push((tok.to_string(), t.clone()));
                    Some(t)
                });
                out.changes.extend(changed);
                r
            } else {
                let r = rewrite_cmdline_device_args_for(inner, map, mode);
                if r != inner {
                    out.changes
                        .push((inner.trim().to_string(), r.trim().to_string()));
                }
                r
            };
            if rewritten != inner {
                l = splice(
                    line,
                    vec![((vstart, vstart + raw.len()), format!("{q}{rewritten}{q}"))],
                );
            }
        }
        new.push_str(&l);
        new.push_str(eol);
    }
    out.finish(text, new)
}

/// Rewrites whitespace-separated tokens of `s`, keeping the whitespace.
fn rewrite_tokens(s: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (a, b) in fields(s) {
        out.push_str(&s[at..a]);
        match f(&s[a..b]) {
            Some(t) => out.push_str(&t),
            None => out.push_str(&s[a..b]),
        }
        at = b;
    }
    out.push_str(&s[at..]);
    out
}

/// Rewrites the device of `root=` and `resume=` in a kernel command line
/// to the target's `UUID=` form; every other argument and all spacing stay
/// as they are. LVM and md names (`root=/dev/mapper/rhel-root`) are stable
/// and stay. For the boot loader planner.
pub fn rewrite_cmdline_device_args(cmdline: &str, map: &IdentityMap) -> String {
    rewrite_cmdline_device_args_for(cmdline, map, FstabIdentifiers::Uuid)
}

/// [`rewrite_cmdline_device_args`] with the device-name form for
/// `fstabIdentifiers: keep` (a device name only changes where the target
/// names the device differently).
pub fn rewrite_cmdline_device_args_for(
    cmdline: &str,
    map: &IdentityMap,
    mode: FstabIdentifiers,
) -> String {
    rewrite_tokens(cmdline, |tok| {
        let (key, value) = tok.split_once('=')?;
        if key != "root" && key != "resume" {
            return None;
        }
        let (dev, q) = unquote(value);
        let t = map.rewrite_for(dev, mode)?;
        Some(format!("{key}={q}{t}{q}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Bootloader, FirmwareHint, GuestInfo, InitSystem, OsFamily};
    use crate::engine::identity::test_inputs;
    use crate::engine::plan::MemFiles;

    const U1: &str = "0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f";
    const U2: &str = "5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40";
    const U3: &str = "7a2e0c11-3d44-4b55-8c66-0d77e88f9900";

    fn info() -> GuestInfo {
        GuestInfo {
            os_id: "rhel".into(),
            os_version: "7.9".into(),
            pretty_name: "t".into(),
            family: OsFamily::Rhel,
            arch: "x86_64".into(),
            init_system: InitSystem::Systemd,
            bootloader: Bootloader::Grub2,
            firmware: FirmwareHint::Bios,
            kernels: vec![],
            root: None,
        }
    }

    /// Plans over `files`; returns the plan and the files after its edits.
    fn run(disks: &str, mode: &str, files: &MemFiles) -> (Plan, MemFiles) {
        let inputs = test_inputs(disks, mode);
        let (identity, _) = IdentityMap::build(&inputs, &[], files);
        let info = info();
        let ctx = PlanCtx {
            files,
            info: &info,
            inputs: &inputs,
            identity: &identity,
            stack_arch: "x86_64",
            boot_device: None,
        };
        let plan = super::plan(&ctx).expect("plan");
        let mut after = files.clone();
        for e in &plan.edits {
            match e {
                Edit::Write { path, contents, .. } => {
                    after.files.insert(path.clone(), contents.clone());
                }
                Edit::Remove { path } => {
                    after.files.remove(path);
                }
                other => panic!("unexpected edit {other:?}"),
            }
        }
        // Idempotence: a second plan over the result changes nothing.
        let (identity2, _) = IdentityMap::build(&inputs, &[], &after);
        let ctx2 = PlanCtx {
            files: &after,
            identity: &identity2,
            ..ctx
        };
        let again = super::plan(&ctx2).expect("plan again");
        assert!(
            again.edits.is_empty(),
            "second plan not empty: {:?}",
            again.edits
        );
        (plan, after)
    }

    fn text(files: &MemFiles, path: &str) -> String {
        String::from_utf8_lossy(files.files.get(path).map_or(&[][..], |v| v)).into_owned()
    }

    fn disk(dev: &str, unit: u32, parts: &str) -> String {
        format!(
            r#"{{"sourceDevice":"{dev}","target":{{"controller":"scsi0","unit":{unit}}},"boot":{},"partitions":[{parts}]}}"#,
            unit == 0
        )
    }

    fn part(n: u32, dev: &str, fs: &str, uuid: &str, extra: &str) -> String {
        let dev = if dev.is_empty() {
            String::new()
        } else {
            format!(r#""sourceDevice":"{dev}","#)
        };
        let uuid = if uuid.is_empty() {
            String::new()
        } else {
            format!(r#","sourceUuid":"{uuid}""#)
        };
        format!(r#"{{"number":{n},{dev}"fsType":"{fs}"{uuid}{extra}}}"#)
    }

    struct Case {
        name: &'static str,
        disks: String,
        mode: &'static str,
        fstab: String,
        want: String,
        warnings: &'static [&'static str],
    }

    fn fstab_cases() -> Vec<Case> {
        let rhel_disks = format!(
            "[{}]",
            disk(
                "/dev/sda",
                0,
                &format!(
                    "{},{}",
                    part(
                        1,
                        "/dev/sda1",
                        "xfs",
                        U1,
                        r#","targetUuid":"0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f","mountPoint":"/boot""#
                    ),
                    part(2, "/dev/sda2", "LVM2_member", "", "")
                )
            )
        );
        let rhel7 = format!(
            "\n#\n# /etc/fstab\n# Created by anaconda on Mon Jan  1 00:00:00 2024\n#\n\
             /dev/mapper/rhel-root   /                       xfs     defaults        0 0\n\
             UUID={U1} /boot                   xfs     defaults        0 0\n\
             /dev/mapper/rhel-swap   swap                    swap    defaults        0 0\n\
             nfs01:/export/home\t/home\tnfs4\tdefaults,_netdev\t0 0\n"
        );
        let debian_disks = format!(
            "[{}]",
            disk(
                "/dev/sda",
                0,
                &format!(
                    "{},{}",
                    part(
                        1,
                        "/dev/sda1",
                        "ext4",
                        U1,
                        r#","targetUuid":"5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40","mountPoint":"/""#
                    ),
                    part(
                        5,
                        "/dev/sda5",
                        "swap",
                        U3,
                        r#","targetUuid":"7a2e0c11-3d44-4b55-8c66-0d77e88f9900""#
                    )
                )
            )
        );
        let debian = "# /etc/fstab: static file system information.\n\
             #\n\
             # <file system> <mount point>   <type>  <options>       <dump>  <pass>\n\
             proc            /proc           proc    defaults        0       0\n\
             /dev/sda1       /               ext4    errors=remount-ro 0       1\n\
             /dev/sda5       none            swap    sw              0       0\n\
             /dev/sdb1\t/srv\text4\tdefaults\t0\t2\n\
             /dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n\
             //fs01/share /mnt/share cifs credentials=/root/.smb 0 0\n\
             /srv/a /srv/b none bind 0 0\n\
             tmpfs /tmp tmpfs defaults 0 0\n";
        let debian_want = format!(
            "# /etc/fstab: static file system information.\n\
             #\n\
             # <file system> <mount point>   <type>  <options>       <dump>  <pass>\n\
             proc            /proc           proc    defaults        0       0\n\
             UUID={U2}       /               ext4    errors=remount-ro 0       1\n\
             UUID={U3}       none            swap    sw              0       0\n\
             /dev/sdb1\t/srv\text4\tdefaults,nofail\t0\t2\n\
             /dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n\
             //fs01/share /mnt/share cifs credentials=/root/.smb 0 0\n\
             /srv/a /srv/b none bind 0 0\n\
             tmpfs /tmp tmpfs defaults 0 0\n"
        );
        let aws_disks = format!(
            r#"[{{"sourceDevice":"/dev/nvme0n1","target":{{"controller":"nvme0","unit":0}},"boot":true,"partitions":[{}]}}]"#,
            part(
                1,
                "/dev/nvme0n1p1",
                "ext4",
                U1,
                r#","label":"cloudimg-rootfs","mountPoint":"/""#
            )
        );
        let xen_disks = format!(
            "[{}]",
            disk(
                "/dev/sda",
                0,
                &part(
                    1,
                    "",
                    "ext3",
                    U1,
                    r#","targetUuid":"5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40""#
                )
            )
        );
        let cciss_disks = format!(
            "[{}]",
            disk(
                "/dev/cciss/c0d0",
                0,
                &part(
                    1,
                    "/dev/cciss/c0d0p1",
                    "ext3",
                    U1,
                    r#","targetUuid":"7a2e0c11-3d44-4b55-8c66-0d77e88f9900""#
                )
            )
        );
        let sles_disks = format!(
            "[{}]",
            disk(
                "/dev/sda",
                0,
                &format!(
                    "{},{}",
                    part(
                        1,
                        "",
                        "swap",
                        U3,
                        r#","targetUuid":"7a2e0c11-3d44-4b55-8c66-0d77e88f9900""#
                    ),
                    part(
                        2,
                        "",
                        "btrfs",
                        U1,
                        r#","targetUuid":"0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f","mountPoint":"/""#
                    )
                )
            )
        );
        let space_disks = format!(
            "[{}]",
            disk(
                "/dev/sda",
                0,
                &part(
                    3,
                    "",
                    "ext4",
                    U2,
                    r#","targetUuid":"5e1d9a47-2c3b-4f60-8a71-9b0c1d2e3f40","label":"My Data""#
                )
            )
        );
        vec![
            Case {
                name: "rhel7: LVM root and UUID /boot stay",
                disks: rhel_disks.clone(),
                mode: "uuid",
                fstab: rhel7.clone(),
                want: rhel7.clone(),
                warnings: &[],
            },
            Case {
                name: "debian: sda1 and swap sda5, sdb1 not replicated",
                disks: debian_disks.clone(),
                mode: "uuid",
                fstab: debian.to_string(),
                want: debian_want,
                warnings: &[codes::FSTAB_DEVICE_NOT_REPLICATED],
            },
            Case {
                name: "debian keep: names stay, nofail still added",
                disks: debian_disks,
                mode: "keep",
                fstab: debian.to_string(),
                want: debian.replace("defaults\t0\t2", "defaults,nofail\t0\t2"),
                warnings: &[codes::FSTAB_DEVICE_NOT_REPLICATED],
            },
            Case {
                name: "aws: nvme and LABEL=cloudimg-rootfs",
                disks: aws_disks,
                mode: "uuid",
                fstab: "LABEL=cloudimg-rootfs\t/\t ext4\tdefaults,discard\t0 1\n/dev/nvme0n1p1 /alt ext4 ro 0 0\n/dev/nvme1n1 /scratch xfs defaults\n".into(),
                want: format!("UUID={U1}\t/\t ext4\tdefaults,discard\t0 1\nUUID={U1} /alt ext4 ro 0 0\n/dev/nvme1n1 /scratch xfs defaults,nofail\n"),
                warnings: &[codes::FSTAB_DEVICE_NOT_REPLICATED],
            },
            Case {
                name: "xen: xvda1 by position",
                disks: xen_disks.clone(),
                mode: "uuid",
                fstab: "/dev/xvda1 / ext3 defaults 1 1\nnone /dev/pts devpts gid=5,mode=620 0 0\n".into(),
                want: format!("UUID={U2} / ext3 defaults 1 1\nnone /dev/pts devpts gid=5,mode=620 0 0\n"),
                warnings: &[],
            },
            Case {
                name: "xen keep: the device name changes with a warning",
                disks: xen_disks,
                mode: "keep",
                fstab: "/dev/xvda1 / ext3 defaults 1 1\n".into(),
                want: "/dev/sda1 / ext3 defaults 1 1\n".into(),
                warnings: &[codes::FSTAB_DEVICE_NAME_CHANGED],
            },
            Case {
                name: "cciss",
                disks: cciss_disks,
                mode: "uuid",
                fstab: "/dev/cciss/c0d0p1 / ext3 defaults 1 1\n".into(),
                want: format!("UUID={U3} / ext3 defaults 1 1\n"),
                warnings: &[],
            },
            Case {
                name: "sles by-id",
                disks: sles_disks,
                mode: "uuid",
                fstab: "/dev/disk/by-id/ata-VBOX_HARDDISK_VB1-part2 / btrfs defaults 0 0\n\
                        /dev/disk/by-id/ata-VBOX_HARDDISK_VB1-part1 swap swap defaults 0 0\n\
                        /dev/disk/by-id/scsi-LUN9-part1 /srv xfs defaults 0 0\n".into(),
                want: format!(
                    "UUID={U1} / btrfs defaults 0 0\nUUID={U3} swap swap defaults 0 0\n\
                     /dev/disk/by-id/scsi-LUN9-part1 /srv xfs defaults,nofail 0 0\n"
                ),
                warnings: &[codes::FSTAB_DEVICE_NOT_REPLICATED],
            },
            Case {
                name: "octal escapes, CRLF, three fields, unknown root",
                disks: space_disks,
                mode: "uuid",
                fstab: "LABEL=My\\040Data /mnt/my\\040data ext4 defaults 0 2\r\n/dev/sdc1 /opt ext4\r\nUUID=dead / ext4 defaults 0 1\ngarbage\n".into(),
                want: format!("UUID={U2} /mnt/my\\040data ext4 defaults 0 2\r\n/dev/sdc1 /opt ext4 defaults,nofail\r\nUUID=dead / ext4 defaults 0 1\ngarbage\n"),
                warnings: &[codes::FSTAB_DEVICE_NOT_REPLICATED, codes::FSTAB_ROOT_NOT_REPLICATED],
            },
        ]
    }

    #[test]
    fn fstab_table() {
        for c in fstab_cases() {
            let files = MemFiles::new().with(FSTAB, &c.fstab);
            let (plan, after) = run(&c.disks, c.mode, &files);
            assert_eq!(text(&after, FSTAB), c.want, "{}", c.name);
            let mut got: Vec<&str> = plan
                .warnings
                .iter()
                .map(|w| w.code.as_str())
                .filter(|c| c.starts_with("fstab."))
                .collect();
            got.sort();
            got.dedup();
            let mut want = c.warnings.to_vec();
            want.sort();
            assert_eq!(got, want, "{}: {:?}", c.name, plan.warnings);
            // Every line not owned (comments, blanks, network, pseudo,
            // bind, malformed, LVM) is unchanged byte for byte.
            let before: Vec<&str> = c.fstab.split('\n').collect();
            let now = text(&after, FSTAB);
            let now: Vec<&str> = now.split('\n').collect();
            assert_eq!(before.len(), now.len(), "{}", c.name);
            for (b, n) in before.iter().zip(&now) {
                let owned = fields(b).len() >= 3
                    && !is_comment_or_blank(b)
                    && is_block_reference(&unescape_octal(
                        b.split_whitespace().next().unwrap_or(""),
                    ));
                if !owned {
                    assert_eq!(b, n, "{}: not owned, changed", c.name);
                }
            }
        }
    }

    #[test]
    fn summary_names_the_rewrites() {
        let c = &fstab_cases()[1];
        let files = MemFiles::new().with(FSTAB, &c.fstab);
        let (plan, _) = run(&c.disks, c.mode, &files);
        assert_eq!(
            plan.summary,
            format!(
                "fstab: 2 entries rewritten (/dev/sda1 -> UUID={U2}, /dev/sda5 -> UUID={U3}), nofail added to 1"
            )
        );
        let files = MemFiles::new().with(FSTAB, "tmpfs /tmp tmpfs defaults 0 0\n");
        let (plan, _) = run(&c.disks, "uuid", &files);
        assert!(plan.is_empty());
        assert_eq!(plan.summary, "no storage references to rewrite");
    }

    fn debian_lvm_disks() -> String {
        format!(
            "[{}]",
            disk(
                "/dev/vda",
                0,
                &format!(
                    "{},{},{}",
                    part(
                        1,
                        "",
                        "ext2",
                        U1,
                        r#","targetUuid":"0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f","mountPoint":"/boot""#
                    ),
                    part(2, "", "LVM2_member", "", ""),
                    part(
                        3,
                        "",
                        "crypto_LUKS",
                        U3,
                        r#","targetUuid":"7a2e0c11-3d44-4b55-8c66-0d77e88f9900""#
                    )
                )
            )
        )
    }

    /// (name, path, input, expected output (`None`: unchanged), warning)
    type FileCase = (
        &'static str,
        &'static str,
        String,
        Option<String>,
        Option<&'static str>,
    );

    #[test]
    fn other_files_table() {
        // (name, path, input, expected output or None for removed/unchanged-check, warning)
        let cases: Vec<FileCase> = vec![
            (
                "crypttab source column",
                CRYPTTAB,
                "# <target> <source> <key> <options>\nluks-home\t/dev/vda3\tnone\tluks,discard\nswap /dev/sdz2 /dev/urandom swap\n".into(),
                Some(format!("# <target> <source> <key> <options>\nluks-home\tUUID={U3}\tnone\tluks,discard\nswap /dev/sdz2 /dev/urandom swap\n")),
                None,
            ),
            (
                "mdadm DEVICE line and devices=",
                "/etc/mdadm/mdadm.conf",
                "DEVICE /dev/vda1 /dev/vdb1\n  /dev/vdc1\nHOMEHOST <system>\nARRAY /dev/md0 metadata=1.2 UUID=3aaa:bbbb:cccc:dddd devices=/dev/vda1,/dev/vdb1 name=h:0\nARRAY /dev/md1 UUID=1111:2222:3333:4444\n".into(),
                Some("DEVICE partitions containers\nHOMEHOST <system>\nARRAY /dev/md0 metadata=1.2 UUID=3aaa:bbbb:cccc:dddd name=h:0\nARRAY /dev/md1 UUID=1111:2222:3333:4444\n".into()),
                Some(codes::FSTAB_MDADM_RELAXED),
            ),
            (
                // Found by the fuzzer: only the first was dropped, a rerun
                // dropped the second.
                "mdadm: two devices= on one ARRAY line",
                "/etc/mdadm.conf",
                "ARRAY /dev/md0 UUID=3aaa:bbbb:cccc:dddd devices=/dev/vdz9 devices=/dev/vda1,/dev/vdb1 name=h:0\n".into(),
                Some("ARRAY /dev/md0 UUID=3aaa:bbbb:cccc:dddd name=h:0\n".into()),
                Some(codes::FSTAB_MDADM_RELAXED),
            ),
            (
                "mdadm: DEVICE partitions untouched",
                "/etc/mdadm.conf",
                "DEVICE partitions\nARRAY /dev/md0 UUID=3aaa:bbbb:cccc:dddd\n".into(),
                None,
                None,
            ),
            (
                "lvm.conf: names substituted",
                LVM_CONF,
                "devices {\n\t# filter = [ \"a|/dev/vdz|\" ]\n\tfilter = [ \"a|^/dev/vda2$|\", \"r|.*|\" ]\n\twrite_cache_state = 1\n}\n".into(),
                Some("devices {\n\t# filter = [ \"a|/dev/vdz|\" ]\n\tfilter = [ \"a|^/dev/sda2$|\", \"r|.*|\" ]\n\twrite_cache_state = 1\n}\n".into()),
                None,
            ),
            (
                "lvm.conf: scheme glob relaxed",
                LVM_CONF,
                "devices {\n    global_filter = [ \"a|/dev/vd.*|\",\n                      \"r|.*|\" ]\n}\n".into(),
                Some("devices {\n    # osam: was: global_filter = [ \"a|/dev/vd.*|\",\n    # osam: was: \"r|.*|\" ]\n    global_filter = [ \"a|.*|\" ]\n}\n".into()),
                Some(codes::FSTAB_LVM_FILTER_RELAXED),
            ),
            (
                "lvm.conf: brackets inside a pattern, over two lines",
                LVM_CONF,
                "devices {\n filter = [ \"a|/dev/vda[0-9]|\",\n   \"r|.*|\" ]\n}\n".into(),
                Some("devices {\n filter = [ \"a|/dev/sda[0-9]|\",\n   \"r|.*|\" ]\n}\n".into()),
                None,
            ),
            (
                "lvm.conf: stable accept kept",
                LVM_CONF,
                "devices {\n filter = [ \"a|/dev/mapper/mpath.*|\", \"a|/dev/sd.*|\", \"r|.*|\" ]\n}\n".into(),
                None,
                None,
            ),
            (
                "initramfs-tools resume",
                RESUME_CONF,
                "RESUME=/dev/vda1\n".into(),
                Some(format!("RESUME=UUID={U1}\n")),
                None,
            ),
            (
                "dracut add_device and kernel_cmdline",
                "/etc/dracut.conf.d/10-resume.conf",
                "add_device+=\" /dev/vda3 \"\nkernel_cmdline=\"resume=/dev/vda1 quiet\"\nhostonly=\"yes\"\n".into(),
                Some(format!("add_device+=\" /dev/disk/by-uuid/{U3} \"\nkernel_cmdline=\"resume=UUID={U1} quiet\"\nhostonly=\"yes\"\n")),
                None,
            ),
        ];
        for (name, path, input, want, warning) in cases {
            let files = MemFiles::new()
                .with(FSTAB, "/dev/vda1 /boot ext2 defaults 0 2\n")
                .with(path, &input);
            let (plan, after) = run(&debian_lvm_disks(), "uuid", &files);
            assert_eq!(text(&after, path), want.unwrap_or(input), "{name}");
            if let Some(w) = warning {
                assert!(
                    plan.warnings.iter().any(|x| x.code == w),
                    "{name}: {:?}",
                    plan.warnings
                );
            }
        }
    }

    #[test]
    fn lvm_devices_file_and_cache() {
        let hw = "# LVM uses devices listed in this file.\nVERSION=1.1.2\nIDTYPE=sys_wwid IDNAME=naa.6000c29a DEVNAME=/dev/sda2 PVID=abc PART=2\n";
        let stable = "VERSION=1.1.2\nIDTYPE=mpath_uuid IDNAME=mpath-36000 DEVNAME=/dev/mapper/mpatha PVID=abc\n";
        for (devices, removed) in [(hw, true), (stable, false)] {
            let files = MemFiles::new().with(LVM_DEVICES, devices).with(
                LVM_CACHE,
                "persistent_filter_cache { valid_devices=[ \"/dev/sda2\" ] }\n",
            );
            let (plan, after) = run(&debian_lvm_disks(), "uuid", &files);
            assert_eq!(!after.files.contains_key(LVM_DEVICES), removed);
            assert!(!after.files.contains_key(LVM_CACHE));
            assert_eq!(
                plan.warnings
                    .iter()
                    .any(|w| w.code == codes::FSTAB_LVM_DEVICES_FILE_REMOVED),
                removed
            );
        }
    }

    #[test]
    fn kernel_command_line() {
        let m = IdentityMap::from_pairs(&[
            ("/dev/sda1", "UUID=abc"),
            ("/dev/sda5", "UUID=def"),
            ("UUID=abc", "UUID=abc"),
        ]);
        let table = [
            ("ro root=/dev/sda1  quiet", "ro root=UUID=abc  quiet"),
            (
                "root=/dev/mapper/rhel-root rd.lvm.lv=rhel/root resume=/dev/sda5",
                "root=/dev/mapper/rhel-root rd.lvm.lv=rhel/root resume=UUID=def",
            ),
            ("root=UUID=abc ro", "root=UUID=abc ro"),
            (
                "real_root=/dev/sda1 root=\"/dev/sda1\"",
                "real_root=/dev/sda1 root=\"UUID=abc\"",
            ),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(rewrite_cmdline_device_args(input, &m), want, "{input}");
        }
    }

    #[test]
    fn unreadable_fstab_is_an_error_others_warn() {
        let mut files = MemFiles::new().with(CRYPTTAB, "x /dev/vda3 none\n");
        files
            .special
            .insert(LVM_CONF.into(), crate::guestfs::FileKind::Fifo);
        let (plan, _) = run(&debian_lvm_disks(), "uuid", &files);
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.code == codes::FSTAB_UNREADABLE)
        );
        files
            .special
            .insert(FSTAB.into(), crate::guestfs::FileKind::Fifo);
        let inputs = test_inputs(&debian_lvm_disks(), "uuid");
        let (identity, _) = IdentityMap::build(&inputs, &[], &files);
        let info = info();
        let ctx = PlanCtx {
            files: &files,
            info: &info,
            inputs: &inputs,
            identity: &identity,
            stack_arch: "x86_64",
            boot_device: None,
        };
        assert_eq!(super::plan(&ctx).unwrap_err().code, codes::GUEST_IO);
    }
}
