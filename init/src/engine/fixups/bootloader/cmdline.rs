//! The kernel command line: one pure rewrite used for every place a guest
//! keeps it (`/etc/default/grub`, BLS entries, grubenv's `kernelopts`,
//! `/etc/kernel/cmdline`, GRUB legacy's `kernel` lines).
//!
//! What [`rewrite`] does, and nothing else:
//! - `root=` and `resume=` values go through the storage identity map
//!   (`/dev/sda1`, `UUID=…`, `LABEL=…`, `/dev/disk/by-uuid/…`, …). Device
//!   mapper and LVM paths (`/dev/mapper/…`, `/dev/<vg>/<lv>` in the map or
//!   not) are kept: LV names survive a migration, and dracut's `rd.lvm.lv=`
//!   options go with them.
//! - When NICs are renamed to `ethN`: `net.ifnames=0 biosdevname=0`, an
//!   existing value replaced in place, a missing option appended.
//! - Source-platform options are removed, from the table
//!   [`SOURCE_PLATFORM_OPTIONS`]; target drivers are taken out of
//!   `rd.driver.blacklist=` / `modprobe.blacklist=` lists.
//! - Everything else stays as written: the user's options, their order,
//!   their quoting and the spacing between them (a serial console such as
//!   `console=ttyS0,115200n8` is the user's own and stays).
//!
//! The rewrite is idempotent: its output rewritten again is unchanged.

use crate::engine::identity::IdentityMap;

/// What [`rewrite`] needs.
#[derive(Debug, Clone, Copy)]
pub struct CmdlineOpts<'a> {
    pub map: &'a IdentityMap,
    /// NICs are renamed to `ethN` (`options.renameInterfaces`).
    pub rename_nics: bool,
    /// Append `net.ifnames=0` / `biosdevname=0` when missing (with
    /// `rename_nics`). False for a command line that is only part of the
    /// final one and comes after another part that gets them (Debian's
    /// `GRUB_CMDLINE_LINUX_DEFAULT`, a BLS entry that says `$kernelopts`):
    /// there existing values are still set to 0.
    pub add_nic_options: bool,
    /// The target's drivers (storage controller, NIC): taken out of
    /// blacklist options.
    pub target_drivers: &'a [&'a str],
}

/// How an option is matched in [`SOURCE_PLATFORM_OPTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The option's name (before `=`), `-` and `_` alike.
    Key(&'static str),
    /// The name starts with this (module parameters: `xen_blkfront.`).
    KeyPrefix(&'static str),
    /// The name, and the value up to its first `,` (`console=hvc0,…`).
    KeyValue(&'static str, &'static str),
    /// The name, and a value starting with this (`console=hvc1`).
    KeyValuePrefix(&'static str, &'static str),
}

/// The options removed because they belong to the source platform (Xen,
/// KVM's virtio console, Hyper-V/Azure, AWS), with why. Nothing else is
/// removed: options not in this table are the user's own.
pub const SOURCE_PLATFORM_OPTIONS: &[(Match, &str)] = &[
    (
        Match::KeyValuePrefix("console", "hvc"),
        "Xen / virtio console: no such device on VMware",
    ),
    (
        Match::KeyValuePrefix("console", "xvc"),
        "Xen PV console: no such device on VMware",
    ),
    (Match::Key("xencons"), "Xen PV console"),
    (
        Match::KeyPrefix("xen_blkfront."),
        "Xen block front-end parameter",
    ),
    (
        Match::KeyPrefix("xen_netfront."),
        "Xen network front-end parameter",
    ),
    (
        Match::Key("xen_emul_unplug"),
        "Xen HVM (AWS) emulated-device unplug",
    ),
    (Match::Key("xen_platform_pci"), "Xen HVM platform device"),
    (Match::Key("xen_nopv"), "Xen HVM"),
    (Match::Key("xen_nopvspin"), "Xen HVM"),
    (Match::Key("xen_pv_hvm"), "Xen HVM"),
    (Match::KeyValue("clocksource", "xen"), "Xen clock source"),
    (
        Match::KeyValue("clocksource", "kvm-clock"),
        "KVM clock source",
    ),
    (
        Match::KeyValuePrefix("clocksource", "hyperv_clocksource"),
        "Hyper-V clock source",
    ),
    (Match::KeyValue("earlyprintk", "xen"), "Xen early console"),
    (
        Match::KeyValuePrefix("video", "hyperv_fb"),
        "Hyper-V frame buffer",
    ),
    (Match::KeyPrefix("hv_netvsc."), "Hyper-V NIC parameter"),
    (Match::KeyPrefix("hv_storvsc."), "Hyper-V storage parameter"),
    (Match::KeyPrefix("hv_vmbus."), "Hyper-V VMBus parameter"),
    (Match::KeyPrefix("hv_balloon."), "Hyper-V balloon parameter"),
    (
        Match::Key("nvme_core.io_timeout"),
        "AWS EBS NVMe timeout (4294967295: I/O would hang instead of failing)",
    ),
    (Match::Key("nvme.io_timeout"), "AWS EBS NVMe timeout"),
    (Match::Key("nvme_core.max_retries"), "AWS EBS NVMe retries"),
];

/// The options naming kernel modules not to load.
const BLACKLIST_KEYS: &[&str] = &["rd.driver.blacklist", "modprobe.blacklist"];

/// The result of [`rewrite_with_changes`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rewritten {
    pub text: String,
    /// What changed, for the summary: `root=/dev/sda1 -> root=UUID=…`,
    /// `net.ifnames=0 added`, `console=hvc0 removed`.
    pub changes: Vec<String>,
}

/// One option and the whitespace before it.
#[derive(Debug, Clone)]
struct Token {
    sep: String,
    text: String,
}

/// Splits on whitespace outside double quotes (the kernel's own rule; a
/// shell-escaped `\"` counts as a quote too). Returns the tokens, the
/// trailing whitespace, and whether the last token leaves a quote open
/// (it then takes the rest of the line, for the kernel too).
fn tokenize(s: &str) -> (Vec<Token>, String, bool) {
    let mut tokens = Vec::new();
    let mut sep = String::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c.is_whitespace() && !quoted {
            if !cur.is_empty() {
                tokens.push(Token {
                    sep: std::mem::take(&mut sep),
                    text: std::mem::take(&mut cur),
                });
            }
            sep.push(c);
        } else {
            if c == '"' {
                quoted = !quoted;
            }
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        tokens.push(Token {
            sep: std::mem::take(&mut sep),
            text: cur,
        });
    }
    (tokens, sep, quoted)
}

/// `key=value` → (`key`, Some(`value`)); a quote before the `=` keeps the
/// whole token as the key.
fn split_option(token: &str) -> (&str, Option<&str>) {
    match token.find('=') {
        Some(i) if !token[..i].contains('"') => (&token[..i], Some(&token[i + 1..])),
        _ => (token, None),
    }
}

fn norm_key(key: &str) -> String {
    key.replace('-', "_")
}

/// Removes surrounding double quotes (also shell-escaped ones): returns
/// (prefix, inner, suffix).
fn unquote(value: &str) -> (&str, &str, &str) {
    for q in ["\\\"", "\""] {
        if value.len() >= 2 * q.len() && value.starts_with(q) && value.ends_with(q) {
            return (q, &value[q.len()..value.len() - q.len()], q);
        }
    }
    ("", value, "")
}

/// Why `token` is a source-platform option, if it is one.
pub fn source_platform_reason(token: &str) -> Option<&'static str> {
    let (key, value) = split_option(token);
    let key = norm_key(key);
    let value = value.map(|v| unquote(v).1);
    SOURCE_PLATFORM_OPTIONS.iter().find_map(|(m, why)| {
        let hit = match *m {
            Match::Key(k) => key == norm_key(k),
            Match::KeyPrefix(p) => key.starts_with(&norm_key(p)),
            Match::KeyValue(k, v) => {
                key == norm_key(k) && value.is_some_and(|x| x.split(',').next() == Some(v))
            }
            Match::KeyValuePrefix(k, v) => {
                key == norm_key(k) && value.is_some_and(|x| x.starts_with(v))
            }
        };
        hit.then_some(*why)
    })
}

/// Whether a `root=`/`resume=` value is kept whatever the map says.
fn keep_device(value: &str) -> bool {
    value.starts_with("/dev/mapper/")
        || value.starts_with("/dev/md")
        || value.starts_with("/dev/dm-")
}

/// [`rewrite_with_changes`] without the list of changes.
pub fn rewrite(cmdline: &str, opts: &CmdlineOpts) -> String {
    rewrite_with_changes(cmdline, opts).text
}

/// Rewrites a kernel command line (see the module documentation).
pub fn rewrite_with_changes(cmdline: &str, opts: &CmdlineOpts) -> Rewritten {
    let (tokens, trailing, open) = tokenize(cmdline);
    let leading_sep = tokens.first().map(|t| t.sep.clone()).unwrap_or_default();
    let mut changes = Vec::new();
    // Kept options keep the whitespace before them; the first one kept
    // takes the line's leading whitespace; added ones get one space.
    let mut out = String::with_capacity(cmdline.len() + 32);
    let mut any = false;
    let mut push = |out: &mut String, sep: &str, text: &str| {
        // (The first token's own separator is the line's leading one: after
        // options put before it, it needs a blank.)
        out.push_str(match (any, sep.is_empty()) {
            (false, _) => &leading_sep,
            (true, true) => " ",
            (true, false) => sep,
        });
        out.push_str(text);
        any = true;
    };
    let mut nic_seen = [false, false];
    const NIC: [(&str, &str); 2] = [("net.ifnames", "0"), ("biosdevname", "0")];

    // `None` is where missing NIC options go: at the end, or before a last
    // token whose open quote would swallow them.
    let mut items: Vec<Option<&Token>> = tokens.iter().map(Some).collect();
    let at = if open {
        tokens.len().saturating_sub(1)
    } else {
        tokens.len()
    };
    items.insert(at, None);
    for item in items {
        let Some(tok) = item else {
            if opts.rename_nics && opts.add_nic_options {
                for (i, (k, v)) in NIC.iter().enumerate() {
                    if !nic_seen[i] {
                        push(&mut out, " ", &format!("{k}={v}"));
                        changes.push(format!("{k}={v} added"));
                    }
                }
            }
            continue;
        };
        let text = tok.text.as_str();
        if source_platform_reason(text).is_some() {
            changes.push(format!("{text} removed"));
            continue;
        }
        let new_tok = replace_option(text, opts, &mut nic_seen, &NIC, &mut changes);
        match new_tok {
            Some(Some(t)) => push(&mut out, &tok.sep, &t),
            Some(None) => {}
            None => push(&mut out, &tok.sep, text),
        }
    }
    if changes.is_empty() {
        return Rewritten {
            text: cmdline.to_string(),
            changes,
        };
    }
    if !any {
        out.push_str(&leading_sep);
    }
    out.push_str(&trailing);
    Rewritten { text: out, changes }
}

/// The new form of one option: `None` to keep it, `Some(None)` to drop
/// it, `Some(Some(t))` to replace it by `t`.
fn replace_option(
    text: &str,
    opts: &CmdlineOpts,
    nic_seen: &mut [bool; 2],
    nic: &[(&str, &str); 2],
    changes: &mut Vec<String>,
) -> Option<Option<String>> {
    let (key, value) = split_option(text);
    let value = value?;
    let (pre, inner, post) = unquote(value);
    if key == "root" || key == "resume" {
        if keep_device(inner) {
            return None;
        }
        let new = opts.map.rewrite(inner)?;
        let new_tok = format!("{key}={pre}{new}{post}");
        changes.push(format!("{text} -> {new_tok}"));
        return Some(Some(new_tok));
    }
    if let Some(i) = nic.iter().position(|(k, _)| *k == key) {
        if !opts.rename_nics {
            return None;
        }
        nic_seen[i] = true;
        if inner == nic[i].1 {
            return None;
        }
        let new_tok = format!("{key}={pre}{}{post}", nic[i].1);
        changes.push(format!("{text} -> {new_tok}"));
        return Some(Some(new_tok));
    }
    if BLACKLIST_KEYS.contains(&key) {
        let is_target = |m: &str| {
            opts.target_drivers
                .iter()
                .any(|d| norm_key(d) == norm_key(m))
        };
        if !inner.split(',').any(is_target) {
            return None;
        }
        let kept: Vec<&str> = inner
            .split(',')
            .filter(|m| !m.is_empty() && !is_target(m))
            .collect();
        if kept.is_empty() {
            changes.push(format!("{text} removed"));
            return Some(None);
        }
        let new_tok = format!("{key}={pre}{}{post}", kept.join(","));
        changes.push(format!("{text} -> {new_tok}"));
        return Some(Some(new_tok));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "UUID=0b6c3f2e-5d1a-4c8e-9f27-3a1b2c4d5e6f";

    fn map() -> IdentityMap {
        IdentityMap::from_pairs(&[
            ("/dev/sda1", UUID),
            ("/dev/xvda1", UUID),
            ("/dev/vda2", "UUID=11111111-2222-3333-4444-555555555555"),
            ("/dev/disk/by-uuid/aaaa-old", "/dev/disk/by-uuid/bbbb-new"),
            ("UUID=old-swap", "UUID=new-swap"),
            ("/dev/mapper/rhel-root", "UUID=should-not-be-used"),
        ])
    }

    fn rw(s: &str, rename: bool) -> String {
        let m = map();
        let opts = CmdlineOpts {
            map: &m,
            rename_nics: rename,
            add_nic_options: true,
            target_drivers: &["vmw_pvscsi", "vmxnet3"],
        };
        let once = rewrite(s, &opts);
        assert_eq!(rewrite(&once, &opts), once, "idempotent for {s:?}");
        once
    }

    #[test]
    fn table() {
        let cases: &[(&str, bool, &str)] = &[
            ("", false, ""),
            ("ro quiet", false, "ro quiet"),
            (
                "ro root=/dev/sda1 quiet",
                false,
                &format!("ro root={UUID} quiet"),
            ),
            (
                "root=/dev/mapper/rhel-root ro resume=UUID=old-swap rhgb",
                false,
                "root=/dev/mapper/rhel-root ro resume=UUID=new-swap rhgb",
            ),
            (
                "root=/dev/disk/by-uuid/aaaa-old ro",
                false,
                "root=/dev/disk/by-uuid/bbbb-new ro",
            ),
            (
                "root=\"/dev/sda1\" ro",
                false,
                &format!("root=\"{UUID}\" ro"),
            ),
            // Spacing between kept options is kept.
            (
                "ro  quiet\tsplash",
                true,
                "ro  quiet\tsplash net.ifnames=0 biosdevname=0",
            ),
            (
                "ro net.ifnames=1 quiet",
                true,
                "ro net.ifnames=0 quiet biosdevname=0",
            ),
            (
                "net.ifnames=0 biosdevname=0",
                true,
                "net.ifnames=0 biosdevname=0",
            ),
            // Not renaming: existing values stay.
            ("ro net.ifnames=1", false, "ro net.ifnames=1"),
            // Xen guest.
            (
                "ro root=/dev/xvda1 console=hvc0 xencons=tty xen_blkfront.sda_is_xvda=1 clocksource=xen console=tty0",
                false,
                &format!("ro root={UUID} console=tty0"),
            ),
            // The serial console is the user's own.
            (
                "root=/dev/vda2 console=tty1 console=ttyS0,115200n8 nvme_core.io_timeout=4294967295",
                false,
                "root=UUID=11111111-2222-3333-4444-555555555555 console=tty1 console=ttyS0,115200n8",
            ),
            (
                "quiet rd.driver.blacklist=nouveau,vmw_pvscsi modprobe.blacklist=vmxnet3",
                false,
                "quiet rd.driver.blacklist=nouveau",
            ),
            (
                "clocksource=tsc video=hyperv_fb:1024x768 hv_netvsc.ring_size=128 rootdelay=300",
                false,
                "clocksource=tsc rootdelay=300",
            ),
            ("  console=hvc0 ro  ", false, "  ro  "),
            ("console=hvc0", false, ""),
            (
                "ro foo=\"a b\" root=/dev/sda1",
                false,
                &format!("ro foo=\"a b\" root={UUID}"),
            ),
            // Shell-escaped quotes inside a double-quoted shell value.
            (
                "ro foo=\\\"a b\\\" console=xvc0",
                false,
                "ro foo=\\\"a b\\\"",
            ),
            ("$kernelopts console=hvc0", false, "$kernelopts"),
            // Found by the fuzzer: an unclosed quote takes the rest of the
            // line, so added options go before it (appended, the kernel
            // would not see them, and a rerun appended them again).
            (
                "ro LANG=\"en_US quiet",
                true,
                "ro net.ifnames=0 biosdevname=0 LANG=\"en_US quiet",
            ),
            ("\"", true, "net.ifnames=0 biosdevname=0 \""),
        ];
        for (input, rename, want) in cases {
            assert_eq!(rw(input, *rename), *want, "input {input:?}");
        }
    }

    #[test]
    fn replace_only_mode_does_not_add() {
        let m = map();
        let opts = CmdlineOpts {
            map: &m,
            rename_nics: true,
            add_nic_options: false,
            target_drivers: &[],
        };
        assert_eq!(rewrite("quiet splash", &opts), "quiet splash");
        assert_eq!(rewrite("biosdevname=1 quiet", &opts), "biosdevname=0 quiet");
    }

    #[test]
    fn changes_are_reported() {
        let m = map();
        let opts = CmdlineOpts {
            map: &m,
            rename_nics: true,
            add_nic_options: true,
            target_drivers: &[],
        };
        let r = rewrite_with_changes("root=/dev/sda1 console=hvc0", &opts);
        assert_eq!(r.changes[0], format!("root=/dev/sda1 -> root={UUID}"));
        assert!(r.changes[1].starts_with("console=hvc0 removed"));
        assert_eq!(r.changes[2], "net.ifnames=0 added");
        assert!(rewrite_with_changes(&r.text, &opts).changes.is_empty());
    }
}
