//! Shell-variable network files: RHEL's
//! `/etc/sysconfig/network-scripts/{ifcfg,route,route6,rule,rule6}-<name>`
//! and `/etc/sysconfig/network`, SUSE's
//! `/etc/sysconfig/network/{ifcfg,ifroute,ifrule}-<name>` and `routes`.
//!
//! Every value is rewritten (`DEVICE`, `NAME`, `HWADDR`, `MACADDR`,
//! `PHYSDEV`, `MASTER`, `BRIDGE`, `BONDING_OPTS`, `ETHERDEVICE`,
//! `BONDING_SLAVE0`, route lines, ...); quoting and comments are kept.
//! `UUID` and `ZONE` hold no interface names and are left alone. A file
//! named after a source NIC is renamed (`ifcfg-ens192.100` →
//! `ifcfg-eth0.100`).

use super::text::{Mapper, Rewrite, map_lines, stale_lines};

/// The file name prefixes that carry an interface name.
pub const PREFIXES: &[&str] = &[
    "ifcfg-", "route-", "route6-", "rule-", "rule6-", "ifroute-", "ifrule-",
];

/// Keys whose values are never interface names.
const OPAQUE_KEYS: &[&str] = &["UUID", "ZONE"];

fn key(line: &str) -> &str {
    let t = line.trim_start();
    let t = t.strip_prefix("export ").unwrap_or(t);
    t.split('=').next().unwrap_or(t).trim()
}

/// Whether a line can reference an interface.
fn live(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#') && !OPAQUE_KEYS.contains(&key(t))
}

/// Whether `name` is a per-interface file of one of `PREFIXES`.
pub fn is_interface_file(name: &str) -> bool {
    PREFIXES
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

/// The file's new name, when it is named after a renamed NIC.
pub fn renamed_file(name: &str, m: &Mapper) -> Option<String> {
    PREFIXES.iter().find_map(|p| {
        let rest = name.strip_prefix(p)?;
        m.words(rest).map(|r| format!("{p}{r}"))
    })
}

pub fn rewrite(text: &str, m: &Mapper) -> Rewrite {
    Rewrite {
        text: map_lines(
            text,
            |_, line| if live(line) { m.words(line) } else { None },
        ),
        notes: Vec::new(),
    }
}

pub fn stale(text: &str, m: &Mapper) -> Vec<(usize, String)> {
    stale_lines(text, m, live)
}

#[cfg(test)]
mod tests {
    use super::super::text::Mapper;
    use super::super::text::tests::{nic, swap, two};
    use super::*;

    const RHEL7_ENS192: &str = "\
TYPE=Ethernet
PROXY_METHOD=none
BROWSER_ONLY=no
BOOTPROTO=none
DEFROUTE=yes
IPV4_FAILURE_FATAL=no
IPV6INIT=yes
NAME=ens192
UUID=3d4e6f5a-ens192-4b7e-9c1d-0a1b2c3d4e5f
DEVICE=ens192
ONBOOT=yes
IPADDR=192.168.10.5
PREFIX=24
GATEWAY=192.168.10.1
HWADDR=52:54:00:12:34:56
ZONE=public
";

    #[test]
    fn table() {
        let m = two();
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "rhel7 ifcfg with HWADDR",
                RHEL7_ENS192,
                Some(
                    "\
TYPE=Ethernet
PROXY_METHOD=none
BROWSER_ONLY=no
BOOTPROTO=none
DEFROUTE=yes
IPV4_FAILURE_FATAL=no
IPV6INIT=yes
NAME=eth0
UUID=3d4e6f5a-ens192-4b7e-9c1d-0a1b2c3d4e5f
DEVICE=eth0
ONBOOT=yes
IPADDR=192.168.10.5
PREFIX=24
GATEWAY=192.168.10.1
HWADDR=00:50:56:9a:00:01
ZONE=public
",
                ),
            ),
            (
                "quoted values, MACADDR, uppercase MAC, comment",
                "# ens192 uplink\nDEVICE=\"ens192\"\nNAME='System ens192'\nHWADDR=\"52:54:00:12:34:56\"\nMACADDR=52:54:00:12:34:57\n",
                Some(
                    "# ens192 uplink\nDEVICE=\"eth0\"\nNAME='System eth0'\nHWADDR=\"00:50:56:9a:00:01\"\nMACADDR=00:50:56:9a:00:02\n",
                ),
            ),
            (
                "vlan",
                "VLAN=yes\nTYPE=Vlan\nPHYSDEV=ens192\nVLAN_ID=100\nDEVICE=ens192.100\nNAME=vlan-ens192.100\n",
                Some(
                    "VLAN=yes\nTYPE=Vlan\nPHYSDEV=eth0\nVLAN_ID=100\nDEVICE=eth0.100\nNAME=vlan-eth0.100\n",
                ),
            ),
            (
                "bond slave and bond",
                "DEVICE=ens224\nMASTER=bond0\nSLAVE=yes\n",
                Some("DEVICE=eth1\nMASTER=bond0\nSLAVE=yes\n"),
            ),
            (
                "bond itself is kept",
                "DEVICE=bond0\nTYPE=Bond\nBONDING_OPTS=\"mode=active-backup primary=ens192 miimon=100\"\n",
                Some(
                    "DEVICE=bond0\nTYPE=Bond\nBONDING_OPTS=\"mode=active-backup primary=eth0 miimon=100\"\n",
                ),
            ),
            (
                "bridge port",
                "DEVICE=ens192\nBRIDGE=br0\n",
                Some("DEVICE=eth0\nBRIDGE=br0\n"),
            ),
            (
                "route file",
                "ADDRESS0=10.0.0.0\nNETMASK0=255.0.0.0\nGATEWAY0=192.168.10.254\n10.1.0.0/16 via 192.168.10.1 dev ens192\n",
                Some(
                    "ADDRESS0=10.0.0.0\nNETMASK0=255.0.0.0\nGATEWAY0=192.168.10.254\n10.1.0.0/16 via 192.168.10.1 dev eth0\n",
                ),
            ),
            (
                "sles ifcfg",
                "BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='192.168.1.5/24'\nLLADDR='52:54:00:12:34:56'\n",
                Some(
                    "BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='192.168.1.5/24'\nLLADDR='00:50:56:9a:00:01'\n",
                ),
            ),
            (
                "sles bond",
                "BONDING_MASTER='yes'\nBONDING_SLAVE0='ens192'\nBONDING_SLAVE1='ens224'\n",
                Some("BONDING_MASTER='yes'\nBONDING_SLAVE0='eth0'\nBONDING_SLAVE1='eth1'\n"),
            ),
            (
                "sles routes",
                "default 192.168.1.1 - ens192\n10.0.0.0/8 192.168.1.254 - -\n",
                Some("default 192.168.1.1 - eth0\n10.0.0.0/8 192.168.1.254 - -\n"),
            ),
            (
                "/etc/sysconfig/network",
                "NETWORKING=yes\nHOSTNAME=web01\nGATEWAYDEV=ens192\n",
                Some("NETWORKING=yes\nHOSTNAME=web01\nGATEWAYDEV=eth0\n"),
            ),
            ("loopback", "DEVICE=lo\nIPADDR=127.0.0.1\n", None),
            ("ens19 is not ens192", "DEVICE=ens19\n", None),
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
    fn file_names() {
        let m = two();
        let cases: &[(&str, Option<&str>)] = &[
            ("ifcfg-ens192", Some("ifcfg-eth0")),
            ("ifcfg-ens192.100", Some("ifcfg-eth0.100")),
            ("ifcfg-ens192:0", Some("ifcfg-eth0:0")),
            ("route-ens192", Some("route-eth0")),
            ("route6-ens224", Some("route6-eth1")),
            ("rule-ens192", Some("rule-eth0")),
            ("ifroute-ens192", Some("ifroute-eth0")),
            ("ifcfg-ens19", None),
            ("ifcfg-bond0", None),
            ("ifcfg-lo", None),
            ("network-functions", None),
        ];
        for (name, want) in cases {
            assert_eq!(renamed_file(name, &m).as_deref(), *want, "{name}");
        }
        assert!(is_interface_file("ifcfg-ens192"));
        assert!(!is_interface_file("ifcfg-"));
        assert!(!is_interface_file("ifup-eth"));
        let s = swap();
        assert_eq!(
            renamed_file("ifcfg-eth1", &s).as_deref(),
            Some("ifcfg-eth0")
        );
        assert_eq!(
            renamed_file("ifcfg-ens192", &s).as_deref(),
            Some("ifcfg-eth1")
        );
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
        let got = rewrite(RHEL7_ENS192, &m);
        let out = got.text.unwrap_or_default();
        assert!(out.contains("DEVICE=ens192\n") && out.contains("HWADDR=00:50:56:9a:00:01\n"));
        assert_eq!(renamed_file("ifcfg-ens192", &m), None);
    }
}
