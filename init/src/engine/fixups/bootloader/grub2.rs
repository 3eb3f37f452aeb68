//! `/etc/default/grub` and its drop-ins `/etc/default/grub.d/*.cfg`
//! (Ubuntu's cloud images ship some): the kernel command line of
//! `GRUB_CMDLINE_LINUX` and `GRUB_CMDLINE_LINUX_DEFAULT` (rewritten with
//! [`cmdline::rewrite`](super::cmdline::rewrite)), Ubuntu's
//! `GRUB_FORCE_PARTUUID`, `GRUB_DISABLE_LINUX_UUID` and
//! `GRUB_DISABLE_OS_PROBER=true`.
//!
//! `grub-mkconfig` sources `/etc/default/grub` and then each drop-in in
//! name order, so a later assignment wins: the command-line rules apply
//! to every assignment in every file, and what is added (the NIC options,
//! the os-prober setting) goes once to the assignment that takes effect
//! (see [`rewrite_defaults`]).
//!
//! `GRUB_FORCE_PARTUUID=<partuuid>` makes Ubuntu's `10_linux` write
//! `root=PARTUUID=<partuuid>` into the entries (booting without the
//! initramfs first, falling back to it only after a failed boot). On the
//! target that first boot cannot work where the storage driver is a module
//! (it is in the initramfs stage 1 just made), and the PARTUUID may be
//! gone with a re-created partition table: the line is commented out, so
//! that `grub-mkconfig` names the root by `UUID=` and boots with the
//! initramfs (a `bootloader.force_partuuid_disabled` warning).
//!
//! `GRUB_DISABLE_LINUX_UUID=true` makes `10_linux` write
//! `root=<the root's device>` as `grub-probe` finds it, and that is the
//! name the fixup stack gives the disk (`/dev/sdb1` when the stack's own
//! disk comes first), which the target's disk order need not keep. It is
//! commented out too, so that the root is named by UUID (a
//! `bootloader.linux_uuid_enabled` warning); what the source guest wanted,
//! a root named by device, does not survive a move of hardware anyway.
//!
//! The values are shell words: double-quoted, single-quoted or bare. The
//! rewrite works on the text between the quotes and keeps the quote style
//! (a bare value that gains a space gets double quotes); `$VAR` references
//! and shell-escaped quotes (`\"`) in the text are kept as written. Other
//! lines (`GRUB_TERMINAL`, `GRUB_SERIAL_COMMAND`, comments, …) are kept
//! byte for byte.
//!
//! Why `GRUB_DISABLE_OS_PROBER=true`: the planned commands have no
//! environment of their own, and `grub-mkconfig` run from the stack would
//! otherwise let os-prober add menu entries for the fixup disk and any
//! other disk it can see. It is the default from GRUB 2.06 on; older
//! guests keep the setting (undo restores the file).

use super::cmdline::{self, CmdlineOpts};
use crate::error::codes;

pub const DEFAULT_GRUB: &str = "/etc/default/grub";
/// The drop-ins `grub-mkconfig` sources after [`DEFAULT_GRUB`]
/// (`*.cfg`, in name order).
pub const DEFAULT_GRUB_D: &str = "/etc/default/grub.d";
const LINUX: &str = "GRUB_CMDLINE_LINUX";
const LINUX_DEFAULT: &str = "GRUB_CMDLINE_LINUX_DEFAULT";
const OS_PROBER: &str = "GRUB_DISABLE_OS_PROBER";
const BLSCFG: &str = "GRUB_ENABLE_BLSCFG";
const FORCE_PARTUUID: &str = "GRUB_FORCE_PARTUUID";
const DISABLE_LINUX_UUID: &str = "GRUB_DISABLE_LINUX_UUID";

/// What [`rewrite_default_grub`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DefaultGrub {
    pub text: String,
    pub changes: Vec<String>,
    /// `GRUB_ENABLE_BLSCFG`, where set.
    pub blscfg: Option<bool>,
}

/// One `NAME=value` line, split up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assignment<'a> {
    /// Everything before the value (`export GRUB_X=`).
    head: &'a str,
    name: &'a str,
    /// `"`, `'` or empty.
    quote: &'a str,
    /// The value without its quotes.
    inner: &'a str,
    /// After the value (a comment, the line end).
    tail: &'a str,
}

fn parse_assignment(line: &str) -> Option<Assignment<'_>> {
    let body_start = line.len() - line.trim_start().len();
    let mut rest = &line[body_start..];
    if let Some(r) = rest.strip_prefix("export") {
        if r.starts_with([' ', '\t']) {
            rest = r.trim_start();
        }
    }
    let eq = rest.find('=')?;
    let name = &rest[..eq];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let value_start = line.len() - rest.len() + eq + 1;
    let head = &line[..value_start];
    let v = &line[value_start..];
    let (quote, inner, tail) = if let Some(r) = v.strip_prefix('"') {
        // The closing quote: the first `"` not escaped by a backslash.
        let bytes = r.as_bytes();
        let mut i = 0;
        let mut end = None;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    end = Some(i);
                    break;
                }
                _ => i += 1,
            }
        }
        let end = end?;
        ("\"", &r[..end], &r[end + 1..])
    } else if let Some(r) = v.strip_prefix('\'') {
        let end = r.find('\'')?;
        ("'", &r[..end], &r[end + 1..])
    } else {
        let end = v
            .find(|c: char| c.is_whitespace() || c == '#' || c == ';')
            .unwrap_or(v.len());
        ("", &v[..end], &v[end..])
    };
    Some(Assignment {
        head,
        name,
        quote,
        inner,
        tail,
    })
}

fn assemble(a: &Assignment, inner: &str) -> String {
    let quote = if a.quote.is_empty() && inner.contains(char::is_whitespace) {
        "\""
    } else {
        a.quote
    };
    format!("{}{quote}{inner}{quote}{}", a.head, a.tail)
}

/// Whether the shell value of an assignment is what [`parse_assignment`]
/// says: one plain word or one quoted string, ending at a blank, `;` or
/// the line's end. Not so: `X="a"b` (the shell's value is `ab`),
/// `X=a"b c"`, `X=a\ b`, `X=a#b`; such assignments are left as they are.
fn is_plain(a: &Assignment) -> bool {
    let ends = a
        .tail
        .chars()
        .next()
        .is_none_or(|c| c.is_whitespace() || c == ';');
    ends && (!a.quote.is_empty() || !a.inner.contains(['"', '\'', '\\']))
}

fn has_option(cmdline: &str, key: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|t| t.split_once('=').map_or(t, |(k, _)| k) == key)
}

/// Rewrites `/etc/default/grub` alone (see [`rewrite_defaults`]).
pub fn rewrite_default_grub(text: &str, opts: &CmdlineOpts) -> DefaultGrub {
    let mut r = rewrite_defaults(&[(DEFAULT_GRUB, text)], opts);
    DefaultGrub {
        text: r.texts.pop().unwrap_or_default(),
        changes: r.changes,
        blscfg: r.blscfg,
    }
}

/// What [`rewrite_defaults`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrubDefaults {
    /// The files' new texts, in the order given.
    pub texts: Vec<String>,
    pub changes: Vec<String>,
    /// Warnings: (code, message).
    pub warnings: Vec<(&'static str, String)>,
    /// `GRUB_ENABLE_BLSCFG`, where set (the last setting).
    pub blscfg: Option<bool>,
}

/// Whether a shell value refers to the variable `name` (`$NAME`,
/// `${NAME}`): an assignment that extends the earlier value.
fn refers_to(value: &str, name: &str) -> bool {
    if value.contains(&format!("${{{name}}}")) {
        return true;
    }
    let var = format!("${name}");
    value.match_indices(&var).any(|(i, _)| {
        !value[i + var.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Rewrites GRUB's defaults as `grub-mkconfig` reads them: `files` are
/// (path, text) in the order it sources them, `/etc/default/grub` first
/// and then `/etc/default/grub.d/*.cfg` in name order; a later assignment
/// wins (see the module documentation).
///
/// In every file: each `GRUB_CMDLINE_LINUX` / `GRUB_CMDLINE_LINUX_DEFAULT`
/// value gets the command-line rewrite (identities, source-platform
/// options, existing NIC options set to 0); a `GRUB_FORCE_PARTUUID` is kept
/// where the target's PARTUUID is known (rewritten where it differs) and
/// commented out otherwise. Once, in the place that takes effect: the
/// missing `net.ifnames=0 biosdevname=0` are appended to the last
/// `GRUB_CMDLINE_LINUX` assignment (a new line in `/etc/default/grub`
/// where there is none), and `GRUB_DISABLE_OS_PROBER` is made `true` in its
/// last assignment (added to `/etc/default/grub` where there is none).
/// An assignment whose shell value is not one plain word or one quoted
/// string ([`is_plain`]) is left as it is; where it is the last one, the
/// NIC options and the os-prober setting go to a line added after it
/// (`GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} …"`). Every other byte
/// stays.
pub fn rewrite_defaults(files: &[(&str, &str)], opts: &CmdlineOpts) -> GrubDefaults {
    let replace_only = CmdlineOpts {
        add_nic_options: false,
        ..*opts
    };
    let mut lines: Vec<Vec<String>> = files
        .iter()
        .map(|(_, t)| t.split_inclusive('\n').map(str::to_string).collect())
        .collect();
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    let mut blscfg = None;
    let mut last_linux = None;
    // A GRUB_CMDLINE_LINUX after the last one understood, whose value is
    // not (see [`is_plain`]): the options go to a line added after it.
    let mut odd_linux = None;
    // The last GRUB_DISABLE_OS_PROBER assignment, whether it is `true`,
    // and whether its value is understood.
    let mut prober: Option<(usize, usize, bool, bool)> = None;
    // Per variable (LINUX, LINUX_DEFAULT): whether its effective value has
    // net.ifnames / biosdevname.
    let mut nic_present = [[false; 2]; 2];
    for (f, file) in lines.iter_mut().enumerate() {
        for (n, line) in file.iter_mut().enumerate() {
            let Some(a) = parse_assignment(line) else {
                continue;
            };
            if line.trim_start().starts_with('#') {
                continue;
            }
            let plain = is_plain(&a);
            match a.name {
                // Left as they are; what they hold is not known.
                LINUX | LINUX_DEFAULT if !plain => {
                    let v = usize::from(a.name == LINUX_DEFAULT);
                    nic_present[v] = [false; 2];
                    if a.name == LINUX {
                        last_linux = None;
                        odd_linux = Some((f, n));
                    }
                }
                LINUX | LINUX_DEFAULT => {
                    let r = cmdline::rewrite_with_changes(a.inner, &replace_only);
                    let v = usize::from(a.name == LINUX_DEFAULT);
                    let extends = refers_to(a.inner, a.name);
                    for (i, k) in ["net.ifnames", "biosdevname"].iter().enumerate() {
                        let own = has_option(&r.text, k);
                        nic_present[v][i] = own || (extends && nic_present[v][i]);
                    }
                    if a.name == LINUX {
                        last_linux = Some((f, n));
                    }
                    if !r.changes.is_empty() {
                        let new = assemble(&a, &r.text);
                        changes.extend(r.changes);
                        *line = new;
                    }
                }
                OS_PROBER => prober = Some((f, n, plain && a.inner == "true", plain)),
                BLSCFG => blscfg = Some(a.inner == "true"),
                FORCE_PARTUUID if !a.inner.trim().is_empty() => {
                    let p = a.inner.trim();
                    let why = match opts.map.target_partuuid(p) {
                        Some(_) => {
                            "it makes the first boot try without the initramfs, which \
                                    is what carries the target's storage driver"
                        }
                        None => {
                            "it names a partition whose PARTUUID on the target is not \
                                 known (the partition table was re-created)"
                        }
                    };
                    changes.push(format!("{FORCE_PARTUUID}={p} commented out"));
                    warnings.push((
                        codes::BOOTLOADER_FORCE_PARTUUID_DISABLED,
                        format!(
                            "{}: {FORCE_PARTUUID}={p} commented out: {why}; grub-mkconfig now \
                             names the root by UUID and boots with the initramfs",
                            files[f].0
                        ),
                    ));
                    line.insert(0, '#');
                }
                // grub-mkconfig would write the root's device name as the
                // stack sees it (`root=/dev/sdb1`), which is neither the
                // source's nor, for sure, the target's.
                DISABLE_LINUX_UUID if plain && a.inner.trim() == "true" => {
                    changes.push(format!("{DISABLE_LINUX_UUID}=true commented out"));
                    warnings.push((
                        codes::BOOTLOADER_LINUX_UUID_ENABLED,
                        format!(
                            "{}: {DISABLE_LINUX_UUID}=true commented out: grub-mkconfig would \
                             name the root by the device name the fixup stack gives it, which \
                             the target's disk order need not keep; the root is now named by UUID",
                            files[f].0
                        ),
                    ));
                    line.insert(0, '#');
                }
                _ => {}
            }
        }
    }
    // New lines go to /etc/default/grub (else the last file).
    let home = files
        .iter()
        .position(|(p, _)| *p == DEFAULT_GRUB)
        .unwrap_or(files.len().saturating_sub(1));
    // Lines added after a given line (of a value not understood).
    let mut inserts: Vec<((usize, usize), String)> = Vec::new();
    let missing: Vec<&str> = ["net.ifnames=0", "biosdevname=0"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !nic_present[0][*i] && !nic_present[1][*i])
        .map(|(_, o)| o)
        .collect();
    if opts.rename_nics && !missing.is_empty() && !lines.is_empty() {
        let added = missing.join(" ");
        match (last_linux, odd_linux) {
            (Some((f, n)), _) => {
                if let Some(a) = parse_assignment(&lines[f][n]) {
                    let inner = if a.inner.trim().is_empty() {
                        added.clone()
                    } else {
                        format!("{} {added}", a.inner.trim_end())
                    };
                    let new = assemble(&a, &inner);
                    lines[f][n] = new;
                }
            }
            // Extending the value it leaves, whatever it is.
            (None, Some(at)) => inserts.push((at, format!("{LINUX}=\"${{{LINUX}}} {added}\""))),
            (None, None) => push_line(&mut lines[home], &format!("{LINUX}=\"{added}\"")),
        }
        changes.extend(missing.iter().map(|o| format!("{o} added")));
    }
    match prober {
        _ if lines.is_empty() => {}
        Some((_, _, true, _)) => {}
        Some((f, n, false, true)) => {
            if let Some(a) = parse_assignment(&lines[f][n]) {
                let new = format!("{}true{}", a.head, a.tail);
                lines[f][n] = new;
            }
            changes.push("os-prober disabled".to_string());
        }
        Some((f, n, false, false)) => {
            inserts.push(((f, n), format!("{OS_PROBER}=true")));
            changes.push("os-prober disabled".to_string());
        }
        None => {
            push_line(&mut lines[home], &format!("{OS_PROBER}=true"));
            changes.push("os-prober disabled".to_string());
        }
    }
    // Last first, so that the places stay right.
    inserts.sort();
    for ((f, n), line) in inserts.into_iter().rev() {
        if !lines[f][n].ends_with('\n') {
            lines[f][n].push('\n');
        }
        lines[f].insert(n + 1, format!("{line}\n"));
    }
    GrubDefaults {
        texts: lines.into_iter().map(|l| l.concat()).collect(),
        changes,
        warnings,
        blscfg,
    }
}

fn push_line(lines: &mut Vec<String>, line: &str) {
    if let Some(last) = lines.last_mut() {
        if !last.ends_with('\n') {
            last.push('\n');
        }
    }
    lines.push(format!("{line}\n"));
}

/// Whether an ESP `grub.cfg` is only a stub that loads the real one from
/// `/boot` (RHEL 9+, Fedora 34+, Debian and Ubuntu).
pub fn is_stub_config(text: &str) -> bool {
    let code: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    code.iter().any(|l| l.starts_with("configfile"))
        && !code.iter().any(|l| {
            l.starts_with("menuentry") || l.starts_with("blscfg") || l.starts_with("linux")
        })
}

/// Rewrites the file-system UUIDs of a stub's `search --fs-uuid …` /
/// `search.fs_uuid …` lines through the identity map (as `UUID=<uuid>`).
pub fn repair_stub(
    text: &str,
    map: &crate::engine::identity::IdentityMap,
) -> (String, Vec<String>) {
    let mut changes = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if !(t.starts_with("search") && (t.contains("fs-uuid") || t.contains("fs_uuid"))) {
            out.push_str(line);
            continue;
        }
        let mut new = line.to_string();
        for word in t.split_whitespace().filter(|w| !w.starts_with('-')) {
            if let Some(target) = map.rewrite(&format!("UUID={word}")) {
                if let Some(u) = target.strip_prefix("UUID=") {
                    new = new.replacen(word, u, 1);
                    changes.push(format!("ESP grub.cfg search {word} -> {u}"));
                }
            }
        }
        out.push_str(&new);
    }
    (out, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::identity::IdentityMap;

    fn opts(map: &IdentityMap, rename: bool) -> CmdlineOpts<'_> {
        CmdlineOpts {
            map,
            rename_nics: rename,
            add_nic_options: true,
            target_drivers: &["vmw_pvscsi", "vmxnet3"],
        }
    }

    const DEBIAN12: &str = "\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"
GRUB_CMDLINE_LINUX=\"\"

# If your computer has multiple operating systems installed, then you
# probably want to run os-prober. However, if your computer is a host
# for guest OSes installed via LVM or raw disk devices, running
# os-prober can cause damage to those guest OSes as it mounts
# filesystems to look for things.
#GRUB_DISABLE_OS_PROBER=false

# Uncomment to disable graphical terminal
#GRUB_TERMINAL=console
";

    const RHEL7: &str = "\
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT=\"console\"
GRUB_CMDLINE_LINUX=\"crashkernel=auto rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet\"
GRUB_DISABLE_RECOVERY=\"true\"
";

    const UBUNTU_CLOUD: &str = "\
GRUB_DEFAULT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_TIMEOUT=0
GRUB_CMDLINE_LINUX_DEFAULT='console=tty1 console=ttyS0 nvme_core.io_timeout=4294967295'
GRUB_CMDLINE_LINUX=
GRUB_TERMINAL=\"serial console\"
GRUB_SERIAL_COMMAND=\"serial --speed=115200\"
";

    const SLES15: &str = "\
GRUB_DISTRIBUTOR=
GRUB_DEFAULT=saved
GRUB_HIDDEN_TIMEOUT=0
GRUB_TIMEOUT=8
GRUB_CMDLINE_LINUX_DEFAULT=\"splash=silent resume=/dev/disk/by-uuid/aaaa-old mitigations=auto quiet\"
GRUB_CMDLINE_LINUX=\"\"
GRUB_TERMINAL=\"gfxterm\"
GRUB_DISABLE_OS_PROBER=\"false\"
";

    #[test]
    fn realistic_files() {
        let map = IdentityMap::from_pairs(&[(
            "/dev/disk/by-uuid/aaaa-old",
            "/dev/disk/by-uuid/bbbb-new",
        )]);
        // (file, rename NICs, (text it has, text it lacks), BLSCFG)
        type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)], Option<bool>);
        let cases: &[Case] = &[
            (
                DEBIAN12,
                true,
                &[
                    ("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n", ""),
                    ("GRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\n", ""),
                    ("#GRUB_DISABLE_OS_PROBER=false\n", ""),
                    ("GRUB_TERMINAL=console\n", ""),
                    ("GRUB_DISABLE_OS_PROBER=true\n", ""),
                ],
                None,
            ),
            (
                RHEL7,
                true,
                &[(
                    "GRUB_CMDLINE_LINUX=\"crashkernel=auto rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet net.ifnames=0 biosdevname=0\"\n",
                    "",
                )],
                None,
            ),
            (
                UBUNTU_CLOUD,
                false,
                &[
                    (
                        "GRUB_CMDLINE_LINUX_DEFAULT='console=tty1 console=ttyS0'\n",
                        "",
                    ),
                    ("GRUB_CMDLINE_LINUX=\n", ""),
                    (
                        "GRUB_TERMINAL=\"serial console\"\nGRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n",
                        "",
                    ),
                ],
                None,
            ),
            (
                SLES15,
                true,
                &[
                    (
                        "GRUB_CMDLINE_LINUX_DEFAULT=\"splash=silent resume=/dev/disk/by-uuid/bbbb-new mitigations=auto quiet\"\n",
                        "",
                    ),
                    ("GRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\n", ""),
                    (
                        "GRUB_DISABLE_OS_PROBER=true\n",
                        "GRUB_DISABLE_OS_PROBER=\"false\"",
                    ),
                ],
                None,
            ),
            (
                "GRUB_ENABLE_BLSCFG=true\nGRUB_CMDLINE_LINUX=\"x net.ifnames=1\" # note\n",
                true,
                &[(
                    "GRUB_CMDLINE_LINUX=\"x net.ifnames=0 biosdevname=0\" # note\n",
                    "",
                )],
                Some(true),
            ),
        ];
        for (text, rename, wants, blscfg) in cases {
            let o = opts(&map, *rename);
            let r = rewrite_default_grub(text, &o);
            for (has, lacks) in *wants {
                assert!(r.text.contains(has), "{has:?} missing in\n{}", r.text);
                if !lacks.is_empty() {
                    assert!(!r.text.contains(lacks), "{lacks:?} present in\n{}", r.text);
                }
            }
            assert_eq!(r.blscfg, *blscfg);
            let again = rewrite_default_grub(&r.text, &o);
            assert_eq!(again.text, r.text, "idempotent");
            assert!(again.changes.is_empty(), "{:?}", again.changes);
        }
    }

    #[test]
    fn appended_to_the_last_assignment_and_created_when_absent() {
        let map = IdentityMap::default();
        let o = opts(&map, true);
        let r = rewrite_default_grub(
            "GRUB_CMDLINE_LINUX=\"a\"\nGRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX b\"",
            &o,
        );
        assert_eq!(
            r.text,
            "GRUB_CMDLINE_LINUX=\"a\"\nGRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX b net.ifnames=0 biosdevname=0\"\nGRUB_DISABLE_OS_PROBER=true\n"
        );
        let r = rewrite_default_grub("GRUB_TIMEOUT=5\n", &o);
        assert_eq!(
            r.text,
            "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\nGRUB_DISABLE_OS_PROBER=true\n"
        );
    }

    #[test]
    fn drop_ins_in_the_order_grub_mkconfig_reads_them() {
        const OLD: &str = "7d2c1b0a-9e8f-4d6c-b5a4-3f2e1d0c9b8a";
        const SAME: &str = "0f6a1d2e-3b4c-4d5e-8f60-718293a4b5c6";
        const MOVED: &str = "1a2b3c4d-01";
        let mut map = IdentityMap::from_pairs(&[("/dev/sda1", "UUID=new-root")]);
        map.insert_partuuid(SAME, SAME);
        map.insert_partuuid(MOVED, "5e6f7a8b-01");
        let main = "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX=\"\"\n";
        let cloudimg = "# Set the default commandline\n\
            GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0 nvme_core.io_timeout=4294967295\"\n\n\
            # Set the grub console type\nGRUB_TERMINAL=serial\n";
        let force = |p: &str| {
            format!("# Force the kernel to boot without an initramfs\nGRUB_FORCE_PARTUUID={p}\n")
        };
        let force_old = force(OLD);
        let force_same = force(SAME);
        let force_moved = force(MOVED);
        let same_off = force_same.replace("\nGRUB_FORCE", "\n#GRUB_FORCE");
        let moved_off = force_moved.replace("\nGRUB_FORCE", "\n#GRUB_FORCE");
        // (files in order, rename NICs, the files after, warnings)
        type Case<'a> = (Vec<(&'a str, &'a str)>, bool, Vec<&'a str>, usize);
        let cases: Vec<Case> = vec![
            // Ubuntu's cloud image: the PARTUUID is unknown on the target,
            // the drop-in's command line loses the AWS timeout, the NIC
            // options go to the GRUB_CMDLINE_LINUX that takes effect.
            (
                vec![
                    (DEFAULT_GRUB, main),
                    ("/etc/default/grub.d/40-force-partuuid.cfg", &force_old),
                    ("/etc/default/grub.d/50-cloudimg-settings.cfg", cloudimg),
                ],
                true,
                vec![
                    "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\nGRUB_DISABLE_OS_PROBER=true\n",
                    "# Force the kernel to boot without an initramfs\n#GRUB_FORCE_PARTUUID=7d2c1b0a-9e8f-4d6c-b5a4-3f2e1d0c9b8a\n",
                    "# Set the default commandline\nGRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0\"\n\n# Set the grub console type\nGRUB_TERMINAL=serial\n",
                ],
                1,
            ),
            // A PARTUUID the target keeps, or one it has under another
            // value: commented out all the same (no initramfs-less boot).
            (
                vec![
                    (DEFAULT_GRUB, "GRUB_DISABLE_OS_PROBER=true\n"),
                    ("/etc/default/grub.d/40-force-partuuid.cfg", &force_same),
                ],
                false,
                vec!["GRUB_DISABLE_OS_PROBER=true\n", &same_off],
                1,
            ),
            (
                vec![
                    (DEFAULT_GRUB, "GRUB_DISABLE_OS_PROBER=true\n"),
                    ("/etc/default/grub.d/40-force-partuuid.cfg", &force_moved),
                ],
                false,
                vec!["GRUB_DISABLE_OS_PROBER=true\n", &moved_off],
                1,
            ),
            // A root named by device (what the Debian installer writes
            // for no UUID): commented out wherever it is set to true,
            // quoted or not; `false` and a commented line stay.
            (
                vec![
                    (
                        DEFAULT_GRUB,
                        "GRUB_DISABLE_OS_PROBER=true\nGRUB_DISABLE_LINUX_UUID=true\n",
                    ),
                    (
                        "/etc/default/grub.d/50-uuid.cfg",
                        "export GRUB_DISABLE_LINUX_UUID=\"true\" # by path\n",
                    ),
                ],
                false,
                vec![
                    "GRUB_DISABLE_OS_PROBER=true\n#GRUB_DISABLE_LINUX_UUID=true\n",
                    "#export GRUB_DISABLE_LINUX_UUID=\"true\" # by path\n",
                ],
                2,
            ),
            (
                vec![(
                    DEFAULT_GRUB,
                    "GRUB_DISABLE_OS_PROBER=true\nGRUB_DISABLE_LINUX_UUID=false\n#GRUB_DISABLE_LINUX_UUID=true\n",
                )],
                false,
                vec![
                    "GRUB_DISABLE_OS_PROBER=true\nGRUB_DISABLE_LINUX_UUID=false\n#GRUB_DISABLE_LINUX_UUID=true\n",
                ],
                0,
            ),
            // A drop-in that replaces GRUB_CMDLINE_LINUX gets the NIC
            // options (the main file's value no longer counts), and both
            // get the identity rewrite.
            (
                vec![
                    (
                        DEFAULT_GRUB,
                        "GRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0 console=hvc0\"\n",
                    ),
                    (
                        "/etc/default/grub.d/60-root.cfg",
                        "GRUB_CMDLINE_LINUX='root=/dev/sda1 ro'\n",
                    ),
                ],
                true,
                vec![
                    "GRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\nGRUB_DISABLE_OS_PROBER=true\n",
                    "GRUB_CMDLINE_LINUX='root=UUID=new-root ro net.ifnames=0 biosdevname=0'\n",
                ],
                0,
            ),
            // A drop-in that extends the value keeps what it had.
            (
                vec![
                    (
                        DEFAULT_GRUB,
                        "GRUB_CMDLINE_LINUX=\"net.ifnames=1 biosdevname=0\"\n",
                    ),
                    (
                        "/etc/default/grub.d/60-x.cfg",
                        "GRUB_CMDLINE_LINUX=\"${GRUB_CMDLINE_LINUX} x\"\n",
                    ),
                ],
                true,
                vec![
                    "GRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\nGRUB_DISABLE_OS_PROBER=true\n",
                    "GRUB_CMDLINE_LINUX=\"${GRUB_CMDLINE_LINUX} x\"\n",
                ],
                0,
            ),
            // os-prober: the last setting is the one that counts.
            (
                vec![
                    (DEFAULT_GRUB, "GRUB_DISABLE_OS_PROBER=true\n"),
                    (
                        "/etc/default/grub.d/30-os-prober.cfg",
                        "GRUB_DISABLE_OS_PROBER=false # dual boot\n",
                    ),
                ],
                false,
                vec![
                    "GRUB_DISABLE_OS_PROBER=true\n",
                    "GRUB_DISABLE_OS_PROBER=true # dual boot\n",
                ],
                0,
            ),
            // Found by the fuzzer: values whose shell quoting is not one
            // word or one string (`"false"x` is `falsex`; `2"root=… a"`
            // is one word) were rewritten as if they were, and a rerun
            // rewrote them again. They are left; what must hold is set
            // on a line added after the last of them.
            (
                vec![(
                    DEFAULT_GRUB,
                    "GRUB_DISABLE_OS_PROBER=\"false\"x # keep\nGRUB_DISABLE_OS_PROBER=\"true\"y",
                )],
                false,
                vec![
                    "GRUB_DISABLE_OS_PROBER=\"false\"x # keep\nGRUB_DISABLE_OS_PROBER=\"true\"y\n\
                     GRUB_DISABLE_OS_PROBER=true\n",
                ],
                0,
            ),
            (
                vec![
                    (
                        DEFAULT_GRUB,
                        "GRUB_CMDLINE_LINUX=\"a\"\nGRUB_DISABLE_OS_PROBER=x\\ y\n",
                    ),
                    (
                        "/etc/default/grub.d/50-x.cfg",
                        "GRUB_CMDLINE_LINUX=2\"root=/dev/sda1 net.ifnames=1\"\nGRUB_TIMEOUT=1\n",
                    ),
                ],
                true,
                vec![
                    "GRUB_CMDLINE_LINUX=\"a\"\nGRUB_DISABLE_OS_PROBER=x\\ y\n\
                     GRUB_DISABLE_OS_PROBER=true\n",
                    "GRUB_CMDLINE_LINUX=2\"root=/dev/sda1 net.ifnames=1\"\n\
                     GRUB_CMDLINE_LINUX=\"${GRUB_CMDLINE_LINUX} net.ifnames=0 biosdevname=0\"\n\
                     GRUB_TIMEOUT=1\n",
                ],
                0,
            ),
            // Without /etc/default/grub, new lines go to the last drop-in.
            (
                vec![("/etc/default/grub.d/50-a.cfg", "GRUB_TIMEOUT=1\n")],
                true,
                vec![
                    "GRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX=\"net.ifnames=0 biosdevname=0\"\nGRUB_DISABLE_OS_PROBER=true\n",
                ],
                0,
            ),
        ];
        for (i, (files, rename, want, warnings)) in cases.into_iter().enumerate() {
            let o = opts(&map, rename);
            let r = rewrite_defaults(&files, &o);
            assert_eq!(r.texts, want, "case {i}");
            assert_eq!(r.warnings.len(), warnings, "case {i}: {:?}", r.warnings);
            let again: Vec<(&str, &str)> = files
                .iter()
                .zip(&r.texts)
                .map(|((p, _), t)| (*p, t.as_str()))
                .collect();
            let again = rewrite_defaults(&again, &o);
            assert_eq!(again.texts, r.texts, "case {i}: idempotent");
            assert!(again.changes.is_empty(), "case {i}: {:?}", again.changes);
        }
        assert!(refers_to("$GRUB_CMDLINE_LINUX x", LINUX));
        assert!(!refers_to("$GRUB_CMDLINE_LINUX_DEFAULT x", LINUX));
        assert!(refers_to("a ${GRUB_CMDLINE_LINUX_DEFAULT}", LINUX_DEFAULT));
    }

    #[test]
    fn stubs() {
        let rhel9 = "search --no-floppy --fs-uuid --set=dev 7a1b2c3d-0000-4000-8000-000000000001\nset prefix=($dev)/grub2\n\nexport $prefix\nconfigfile $prefix/grub.cfg\n";
        assert!(is_stub_config(rhel9));
        assert!(!is_stub_config("set timeout=5\nblscfg\n"));
        assert!(!is_stub_config("menuentry 'x' {\n linux /vmlinuz\n}\n"));
        let map = IdentityMap::from_pairs(&[(
            "UUID=7a1b2c3d-0000-4000-8000-000000000001",
            "UUID=99999999-0000-4000-8000-000000000009",
        )]);
        let (new, ch) = repair_stub(rhel9, &map);
        assert!(new.starts_with(
            "search --no-floppy --fs-uuid --set=dev 99999999-0000-4000-8000-000000000009\n"
        ));
        assert_eq!(ch.len(), 1);
        assert_eq!(repair_stub(&new, &map).1.len(), 0);
        let ubuntu = "search.fs_uuid 7a1b2c3d-0000-4000-8000-000000000001 root hd0,gpt2 \nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n";
        assert!(is_stub_config(ubuntu));
        assert!(
            repair_stub(ubuntu, &map)
                .0
                .contains("search.fs_uuid 99999999")
        );
    }
}
