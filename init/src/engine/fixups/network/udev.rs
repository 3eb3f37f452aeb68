//! udev rules: `70-persistent-net.rules`, which pins every NIC's name to
//! its MAC in the target VM (so the names hold with or without
//! `net.ifnames=0`), and the other rules files, whose references to a
//! source name or MAC are rewritten.

use std::collections::HashSet;

use super::text::{Mapper, Nic, Rewrite, map_lines, stale_lines};
use crate::protocol::config::MacAddr;

/// The persistent-net rules file.
pub const PERSISTENT_RULES: &str = "/etc/udev/rules.d/70-persistent-net.rules";

/// The comment that opens the rules this step writes.
const MARKER: &str = "# Written by OSAM: each NIC's name pinned to its MAC in the target VM \
                      (network-interface-map.json).";

/// The rule that names the NIC with `nic.target_mac`. `DRIVERS=="?*"` and
/// `ATTR{type}=="1"` keep VLANs and bonds, which share the MAC, out.
pub fn rule(nic: &Nic) -> String {
    format!(
        "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{{address}}==\"{}\", \
         ATTR{{type}}==\"1\", NAME=\"{}\"",
        nic.target_mac, nic.target_name
    )
}

/// Whether `existing` already holds this map's rules (a previous run
/// finished: the udev rules are the last edit of the step).
pub fn is_applied(existing: &str, m: &Mapper) -> bool {
    let lines: HashSet<&str> = existing.lines().map(str::trim).collect();
    lines.contains(MARKER) && m.nics().iter().all(|n| lines.contains(rule(n).as_str()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// The new persistent-net rules: every rule for a MAC or a name of the
/// map (source or target) is dropped with its "# PCI device" comment, the
/// other lines are kept (references rewritten), and this map's rules are
/// appended.
pub fn persistent_rules(existing: &str, m: &Mapper) -> String {
    let lines: Vec<&str> = existing.split_inclusive('\n').collect();
    let mut keep = vec![true; lines.len()];
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t == MARKER {
            keep[i] = false;
            continue;
        }
        if t.is_empty() || is_comment(t) {
            continue;
        }
        let is_ours = |t: &str| {
            let (mac, name) = address_and_name(t);
            mac.is_some_and(|mac| {
                m.nics()
                    .iter()
                    .any(|n| n.source_mac == mac || n.target_mac == mac)
            }) || name.is_some_and(|name| m.nics().iter().any(|n| n.target_name == name))
        };
        // Judged on the rule as it would be kept too: a rule naming a
        // source NIC without its MAC becomes one naming the target NIC,
        // which a rerun would drop.
        let ours = is_ours(t) || m.words(t).is_some_and(|w| is_ours(&w));
        if ours {
            keep[i] = false;
            if let Some(prev) = i.checked_sub(1)
                && lines.get(prev).is_some_and(|p| {
                    let p = p.trim();
                    [
                        "# PCI device",
                        "# USB device",
                        "# net device",
                        "# Xen virtual",
                    ]
                    .iter()
                    .any(|c| p.starts_with(c))
                })
            {
                keep[prev] = false;
                if let Some(blank) = prev.checked_sub(1)
                    && lines.get(blank).is_some_and(|b| b.trim().is_empty())
                {
                    keep[blank] = false;
                }
            }
        }
    }
    let mut out = String::new();
    for (line, keep) in lines.iter().zip(keep) {
        if !keep {
            continue;
        }
        match (is_comment(line), m.words(line)) {
            (false, Some(new)) => out.push_str(&new),
            _ => out.push_str(line),
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str(MARKER);
    out.push('\n');
    for nic in m.nics() {
        out.push_str(&rule(nic));
        out.push('\n');
    }
    out
}

/// The `ATTR{address}==` MAC and the `NAME=` value of a rule line.
fn address_and_name(line: &str) -> (Option<MacAddr>, Option<String>) {
    let mut mac = None;
    let mut name = None;
    for (key, op, value) in pairs(line) {
        if key.ends_with("{address}") && op == "==" {
            mac = value.parse().ok();
        } else if key == "NAME" && (op == "=" || op == ":=") {
            name = Some(value.to_string());
        }
    }
    (mac, name)
}

/// The `KEY op "value"` pairs of a rule line.
fn pairs(line: &str) -> Vec<(&str, &str, &str)> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&line[start..]);
    parts
        .into_iter()
        .filter_map(|part| {
            let part = part.trim();
            let at = part.find(['=', '!', '+', ':', '-'])?;
            let key = part[..at].trim();
            let rest = &part[at..];
            let op = ["==", "!=", "+=", "-=", ":=", "="]
                .into_iter()
                .find(|op| rest.starts_with(op))?;
            let value = rest[op.len()..].trim().trim_matches('"');
            Some((key, op, value))
        })
        .collect()
}

/// Rewrites a rules file other than the persistent-net rules.
pub fn rewrite(text: &str, m: &Mapper) -> Rewrite {
    let mut notes = Vec::new();
    let text = map_lines(text, |n, line| {
        if is_comment(line) {
            return None;
        }
        let new = m.words(line);
        for (key, op, value) in pairs(line) {
            if (key == "KERNEL" || key == "NAME") && op == "==" {
                let after = m.words(value).unwrap_or_else(|| value.to_string());
                if let Some(note) = m.glob_note(value, &after) {
                    notes.push((n, note));
                }
            }
        }
        new
    });
    Rewrite { text, notes }
}

/// Source names and MACs left in a rules file.
pub fn stale(text: &str, m: &Mapper) -> Vec<(usize, String)> {
    stale_lines(text, m, |l| !is_comment(l))
}

#[cfg(test)]
mod tests {
    use super::super::text::tests::{swap, two};
    use super::*;

    const RHEL6_RULES: &str = "\
# This file was automatically generated by the /lib/udev/write_net_rules
# program, run by the persistent-net-generator.rules rules file.
#
# You can modify it, as long as you keep each rule on a single
# line, and change only the value of the NAME= key.

# PCI device 0x8086:0x100e (e1000)
SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"52:54:00:12:34:56\", ATTR{type}==\"1\", KERNEL==\"eth*\", NAME=\"ens192\"

# PCI device 0x8086:0x100e (e1000)
SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"52:54:00:12:34:57\", ATTR{type}==\"1\", KERNEL==\"eth*\", NAME=\"ens224\"

# PCI device 0x8086:0x100e (e1000)
SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"52:54:00:99:99:99\", ATTR{type}==\"1\", KERNEL==\"eth*\", NAME=\"eth7\"
";

    #[test]
    fn persistent_rules_table() {
        let m = two();
        let ours = "\
# Written by OSAM: each NIC's name pinned to its MAC in the target VM (network-interface-map.json).
SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"00:50:56:9a:00:01\", ATTR{type}==\"1\", NAME=\"eth0\"
SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"00:50:56:9a:00:02\", ATTR{type}==\"1\", NAME=\"eth1\"
";
        let stock_kept = "\
# This file was automatically generated by the /lib/udev/write_net_rules
# program, run by the persistent-net-generator.rules rules file.
#
# You can modify it, as long as you keep each rule on a single
# line, and change only the value of the NAME= key.

# PCI device 0x8086:0x100e (e1000)
SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"52:54:00:99:99:99\", ATTR{type}==\"1\", KERNEL==\"eth*\", NAME=\"eth7\"

";
        let cases: Vec<(&str, String)> = vec![
            ("", ours.to_string()),
            (RHEL6_RULES, format!("{stock_kept}{ours}")),
            ("# only a comment", format!("# only a comment\n\n{ours}")),
        ];
        for (input, want) in cases {
            let got = persistent_rules(input, &m);
            assert_eq!(got, want, "{input}");
            // Idempotent, and recognised as applied.
            assert_eq!(persistent_rules(&got, &m), got);
            assert!(is_applied(&got, &m));
        }
        assert!(!is_applied(RHEL6_RULES, &m));
    }

    #[test]
    fn a_rule_naming_a_source_nic_without_its_mac_is_dropped() {
        // Found by the fuzzer: it was kept with NAME="eth0", and a rerun
        // dropped it.
        let m = two();
        let old = "# PCI device 0x8086:0x100e (e1000)\n\
                   SUBSYSTEM==\"net\", KERNEL==\"eth*\", NAME=\"ens192\"\n";
        let got = persistent_rules(old, &m);
        assert!(
            !got.contains("PCI device") && !got.contains("KERNEL"),
            "{got}"
        );
        assert_eq!(persistent_rules(&got, &m), got);
    }

    #[test]
    fn persistent_rules_for_a_swap() {
        let m = swap();
        let old = "SUBSYSTEM==\"net\", ATTR{address}==\"52:54:00:00:00:01\", NAME=\"eth1\"\n";
        let got = persistent_rules(old, &m);
        assert!(!got.contains("52:54:00:00:00:01"), "{got}");
        assert!(
            got.contains("ATTR{address}==\"00:50:56:9a:00:02\", ATTR{type}==\"1\", NAME=\"eth1\"")
        );
    }

    #[test]
    fn other_rules_files() {
        let m = two();
        let text = "# ens192 is the uplink\n\
                    ACTION==\"add\", SUBSYSTEM==\"net\", KERNEL==\"ens192\", RUN+=\"/sbin/ethtool -K ens192 tso off\"\n\
                    ACTION==\"add\", SUBSYSTEM==\"net\", KERNEL==\"ens*\", RUN+=\"/bin/true\"\n";
        let r = rewrite(text, &m);
        assert_eq!(
            r.text.as_deref(),
            Some(
                "# ens192 is the uplink\n\
                 ACTION==\"add\", SUBSYSTEM==\"net\", KERNEL==\"eth0\", RUN+=\"/sbin/ethtool -K eth0 tso off\"\n\
                 ACTION==\"add\", SUBSYSTEM==\"net\", KERNEL==\"ens*\", RUN+=\"/bin/true\"\n"
            )
        );
        assert_eq!(r.notes.len(), 1);
        assert_eq!(r.notes[0].0, 3);
        assert!(stale(r.text.as_deref().unwrap_or_default(), &m).is_empty());
        assert_eq!(
            stale(text, &m),
            vec![(2, "ens192".to_string()), (2, "ens192".to_string())]
        );
    }
}
