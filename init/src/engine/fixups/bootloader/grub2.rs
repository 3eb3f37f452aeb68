//! `/etc/default/grub`: the kernel command line of `GRUB_CMDLINE_LINUX`
//! and `GRUB_CMDLINE_LINUX_DEFAULT` (rewritten with
//! [`cmdline::rewrite`](super::cmdline::rewrite)), and
//! `GRUB_DISABLE_OS_PROBER=true`.
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

pub const DEFAULT_GRUB: &str = "/etc/default/grub";
const LINUX: &str = "GRUB_CMDLINE_LINUX";
const LINUX_DEFAULT: &str = "GRUB_CMDLINE_LINUX_DEFAULT";
const OS_PROBER: &str = "GRUB_DISABLE_OS_PROBER";
const BLSCFG: &str = "GRUB_ENABLE_BLSCFG";

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

fn has_option(cmdline: &str, key: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|t| t.split_once('=').map_or(t, |(k, _)| k) == key)
}

/// Rewrites `/etc/default/grub` (see the module documentation).
pub fn rewrite_default_grub(text: &str, opts: &CmdlineOpts) -> DefaultGrub {
    let replace_only = CmdlineOpts {
        add_nic_options: false,
        ..*opts
    };
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let mut changes = Vec::new();
    let mut blscfg = None;
    let mut last_linux = None;
    let mut prober_ok = false;
    let mut prober_line = None;
    let mut nic_present = [false, false];
    for (n, line) in lines.iter_mut().enumerate() {
        let Some(a) = parse_assignment(line) else {
            continue;
        };
        if line.trim_start().starts_with('#') {
            continue;
        }
        match a.name {
            LINUX | LINUX_DEFAULT => {
                let r = cmdline::rewrite_with_changes(a.inner, &replace_only);
                for (i, k) in ["net.ifnames", "biosdevname"].iter().enumerate() {
                    nic_present[i] |= has_option(&r.text, k);
                }
                if a.name == LINUX {
                    last_linux = Some(n);
                }
                if !r.changes.is_empty() {
                    let new = assemble(&a, &r.text);
                    changes.extend(r.changes);
                    *line = new;
                }
            }
            OS_PROBER => {
                prober_ok = a.inner == "true";
                prober_line = Some(n);
            }
            BLSCFG => blscfg = Some(a.inner == "true"),
            _ => {}
        }
    }
    let missing: Vec<&str> = ["net.ifnames=0", "biosdevname=0"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !nic_present[*i])
        .map(|(_, o)| o)
        .collect();
    if opts.rename_nics && !missing.is_empty() {
        let added = missing.join(" ");
        match last_linux {
            Some(n) => {
                if let Some(a) = parse_assignment(&lines[n]) {
                    let inner = if a.inner.trim().is_empty() {
                        added.clone()
                    } else {
                        format!("{} {added}", a.inner.trim_end())
                    };
                    let new = assemble(&a, &inner);
                    lines[n] = new;
                }
            }
            None => push_line(&mut lines, &format!("{LINUX}=\"{added}\"")),
        }
        changes.extend(missing.iter().map(|o| format!("{o} added")));
    }
    if !prober_ok {
        match prober_line.and_then(|n| {
            parse_assignment(&lines[n]).map(|a| (n, a.tail.to_string(), a.head.to_string()))
        }) {
            Some((n, tail, head)) => lines[n] = format!("{head}true{tail}"),
            None => push_line(&mut lines, &format!("{OS_PROBER}=true")),
        }
        changes.push("os-prober disabled".to_string());
    }
    DefaultGrub {
        text: lines.concat(),
        changes,
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
