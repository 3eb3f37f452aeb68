//! Debian's ifupdown: `/etc/network/interfaces` and the files it pulls in
//! with `source` (globs) and `source-directory`. Every non-comment line is
//! rewritten: `auto`, `allow-hotplug`, `allow-*`, `iface <name>`,
//! `<name>.<vlan>`, `bond-slaves`, `bond-primary`, `bridge_ports`,
//! `vlan-raw-device`, `hwaddress ether <mac>`, `mapping` stanzas and
//! `up`/`post-up` commands; `mapping` globs that lose a NIC are noted.
//! The `source` lines themselves are paths, not interfaces.

use super::text::{Mapper, Rewrite, is_glob, map_lines, stale_lines};

/// What a `source` line pulls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Include {
    /// `source <pattern>`: files matching a glob.
    Files(String),
    /// `source-directory <dir>` (`source-dir`): the run-parts names in it.
    Directory(String),
}

fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

fn include(line: &str) -> Option<Include> {
    let mut words = line.split_whitespace();
    let keyword = words.next()?;
    let arg = words.next()?.to_string();
    match keyword {
        "source" => Some(Include::Files(arg)),
        "source-directory" | "source-dir" => Some(Include::Directory(arg)),
        _ => None,
    }
}

fn live(line: &str) -> bool {
    !is_comment(line) && include(line).is_none()
}

/// The files and directories a file includes, in order.
pub fn includes(text: &str) -> Vec<Include> {
    text.lines()
        .filter(|l| !is_comment(l))
        .filter_map(include)
        .collect()
}

/// Whether run-parts (and so `source-directory`) takes a file name.
pub fn is_run_parts_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn rewrite(text: &str, m: &Mapper) -> Rewrite {
    let mut notes = Vec::new();
    let text = map_lines(text, |n, line| {
        if !live(line) {
            return None;
        }
        let mut words = line.split_whitespace();
        if words.next() == Some("mapping") {
            for pattern in words.filter(|w| is_glob(w)) {
                if let Some(note) = m.glob_note(pattern, pattern) {
                    notes.push((n, note));
                }
            }
        }
        m.words(line)
    });
    Rewrite { text, notes }
}

pub fn stale(text: &str, m: &Mapper) -> Vec<(usize, String)> {
    stale_lines(text, m, live)
}

#[cfg(test)]
mod tests {
    use super::super::text::Mapper;
    use super::super::text::tests::{nic, two};
    use super::*;

    const DEBIAN: &str = "\
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug ens192
iface ens192 inet static
\taddress 192.168.10.5/24
\tgateway 192.168.10.1
\thwaddress ether 52:54:00:12:34:56
\tdns-nameservers 192.168.10.1
\tup ip route add 10.0.0.0/8 via 192.168.10.254 dev ens192
";

    const BOND_VLAN_BRIDGE: &str = "\
auto bond0
iface bond0 inet manual
    bond-slaves ens192 ens224
    bond-mode active-backup
    bond-primary ens192

auto ens224.100
iface ens224.100 inet static
    address 10.0.100.5/24
    vlan-raw-device ens224

auto br0
iface br0 inet dhcp
    bridge_ports ens192.200

mapping ens224
    script /usr/local/sbin/map-scheme
    map HOME ens224-home
";

    #[test]
    fn table() {
        let m = two();
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "debian stock",
                DEBIAN,
                Some(
                    "\
# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug eth0
iface eth0 inet static
\taddress 192.168.10.5/24
\tgateway 192.168.10.1
\thwaddress ether 00:50:56:9a:00:01
\tdns-nameservers 192.168.10.1
\tup ip route add 10.0.0.0/8 via 192.168.10.254 dev eth0
",
                ),
            ),
            (
                "bond, vlan, bridge, mapping",
                BOND_VLAN_BRIDGE,
                Some(
                    "\
auto bond0
iface bond0 inet manual
    bond-slaves eth0 eth1
    bond-mode active-backup
    bond-primary eth0

auto eth1.100
iface eth1.100 inet static
    address 10.0.100.5/24
    vlan-raw-device eth1

auto br0
iface br0 inet dhcp
    bridge_ports eth0.200

mapping eth1
    script /usr/local/sbin/map-scheme
    map HOME eth1-home
",
                ),
            ),
            ("no reference", "auto lo\niface lo inet loopback\n", None),
        ];
        for (what, input, want) in cases {
            let got = rewrite(input, &m);
            assert_eq!(got.text.as_deref(), *want, "{what}");
            let out = got.text.as_deref().unwrap_or(input);
            assert!(stale(out, &m).is_empty(), "{what}: {:?}", stale(out, &m));
            assert_eq!(rewrite(out, &m).text, None, "{what}: idempotent");
        }
    }

    #[test]
    fn includes_and_mapping_globs() {
        let text = "source /etc/network/interfaces.d/*\n# source /nope\nsource-directory interfaces.d\nsource-dir /run/x\n";
        assert_eq!(
            includes(text),
            vec![
                Include::Files("/etc/network/interfaces.d/*".into()),
                Include::Directory("interfaces.d".into()),
                Include::Directory("/run/x".into()),
            ]
        );
        assert!(is_run_parts_name("ens192-cfg"));
        assert!(!is_run_parts_name("ens192.cfg"));
        let got = rewrite("mapping ens*\n  script x\n", &two());
        assert_eq!(got.notes.len(), 1);
    }

    #[test]
    fn names_kept_macs_moved() {
        let m = Mapper::new(
            vec![nic(
                "ens192",
                "52:54:00:12:34:56",
                "ens192",
                "00:50:56:9a:00:01",
            )],
            false,
        );
        let out = rewrite(DEBIAN, &m).text.unwrap_or_default();
        assert!(out.contains("iface ens192 inet static"));
        assert!(out.contains("hwaddress ether 00:50:56:9a:00:01"));
    }
}
