//! netplan (`/etc/netplan/*.yaml`), edited as text so that comments,
//! indentation, quoting and flow style stay as they are: every
//! non-comment line has its whole-word source names and source MACs
//! rewritten in place. That covers the `ethernets:` keys, `match:
//! macaddress:`, `set-name:`, `bonds: interfaces: [..]`, `bridges:
//! interfaces:`, `vlans: link:` and routes' `via`/`from` lines alike,
//! in block or flow style. A `match: name:` glob that matched a source
//! name but not its new name is left and noted.

use super::text::{Mapper, Rewrite, map_lines, stale_lines};

fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// The values of `name:` keys on a line (block or flow style), without
/// quotes; `set-name:` is not one.
fn name_values(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(pos) = line.get(from..).and_then(|l| l.find("name:")) {
        let at = from + pos;
        from = at + 5;
        let clean_start = at
            .checked_sub(1)
            .and_then(|p| bytes.get(p))
            .is_none_or(|&b| matches!(b, b' ' | b'\t' | b'{' | b','));
        if !clean_start {
            continue;
        }
        let rest = line.get(from..).unwrap_or_default().trim_start();
        let end = rest.find([',', '}', '#']).unwrap_or(rest.len());
        let value = rest
            .get(..end)
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        if !value.is_empty() {
            out.push(value);
        }
    }
    out
}

pub fn rewrite(text: &str, m: &Mapper) -> Rewrite {
    let mut notes = Vec::new();
    let text = map_lines(text, |n, line| {
        if is_comment(line) {
            return None;
        }
        for value in name_values(line) {
            let after = m.words(value).unwrap_or_else(|| value.to_string());
            if let Some(note) = m.glob_note(value, &after) {
                notes.push((n, note));
            }
        }
        m.words(line)
    });
    Rewrite { text, notes }
}

pub fn stale(text: &str, m: &Mapper) -> Vec<(usize, String)> {
    stale_lines(text, m, |l| !is_comment(l))
}

#[cfg(test)]
mod tests {
    use super::super::text::Mapper;
    use super::super::text::tests::{nic, swap, two};
    use super::*;

    const UBUNTU18_CLOUD_INIT: &str = "\
# This file is generated from information provided by the datasource.  Changes
# to it will not persist across an instance reboot.  To disable cloud-init's
# network configuration capabilities, write a file
# /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg with the following:
# network: {config: disabled}
network:
    ethernets:
        ens192:
            dhcp4: true
            match:
                macaddress: 52:54:00:12:34:56
            set-name: ens192
    version: 2
";

    const UBUNTU20_INSTALLER: &str = "\
# This is the network config written by 'subiquity'
network:
  ethernets:
    ens192:
      addresses:
      - 192.168.10.5/24
      gateway4: 192.168.10.1
      nameservers:
        addresses:
        - 192.168.10.1
        search: []
    ens224:
      dhcp4: true
  version: 2
";

    const UBUNTU22_BOND_VLAN: &str = "\
network:
  version: 2
  renderer: networkd
  ethernets:
    ens192: {dhcp4: no}   # first port
    \"ens224\":
      match:
        macaddress: \"52:54:00:12:34:57\"
      set-name: 'ens224'
  bonds:
    bond0:
      interfaces: [ens192, ens224]
      parameters:
        mode: active-backup
        primary: ens192
  bridges:
    br0:
      interfaces:
        - bond0
  vlans:
    vlan100:
      id: 100
      link: ens192
      addresses: [10.0.100.5/24]
      routes:
        - to: default
          via: 10.0.100.1
";

    #[test]
    fn table() {
        let m = two();
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "ubuntu 18 50-cloud-init.yaml",
                UBUNTU18_CLOUD_INIT,
                Some(
                    "\
# This file is generated from information provided by the datasource.  Changes
# to it will not persist across an instance reboot.  To disable cloud-init's
# network configuration capabilities, write a file
# /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg with the following:
# network: {config: disabled}
network:
    ethernets:
        eth0:
            dhcp4: true
            match:
                macaddress: 00:50:56:9a:00:01
            set-name: eth0
    version: 2
",
                ),
            ),
            (
                "ubuntu 20 installer config",
                UBUNTU20_INSTALLER,
                Some(
                    "\
# This is the network config written by 'subiquity'
network:
  ethernets:
    eth0:
      addresses:
      - 192.168.10.5/24
      gateway4: 192.168.10.1
      nameservers:
        addresses:
        - 192.168.10.1
        search: []
    eth1:
      dhcp4: true
  version: 2
",
                ),
            ),
            (
                "ubuntu 22 bond, bridge, vlan, flow style, quotes",
                UBUNTU22_BOND_VLAN,
                Some(
                    "\
network:
  version: 2
  renderer: networkd
  ethernets:
    eth0: {dhcp4: no}   # first port
    \"eth1\":
      match:
        macaddress: \"00:50:56:9a:00:02\"
      set-name: 'eth1'
  bonds:
    bond0:
      interfaces: [eth0, eth1]
      parameters:
        mode: active-backup
        primary: eth0
  bridges:
    br0:
      interfaces:
        - bond0
  vlans:
    vlan100:
      id: 100
      link: eth0
      addresses: [10.0.100.5/24]
      routes:
        - to: default
          via: 10.0.100.1
",
                ),
            ),
        ];
        for (what, input, want) in cases {
            let got = rewrite(input, &m);
            assert_eq!(got.text.as_deref(), *want, "{what}");
            assert!(got.notes.is_empty(), "{what}");
            let out = got.text.as_deref().unwrap_or(input);
            assert!(stale(out, &m).is_empty(), "{what}: {:?}", stale(out, &m));
            assert_eq!(rewrite(out, &m).text, None, "{what}: idempotent");
        }
    }

    #[test]
    fn globs_are_noted() {
        let m = two();
        let text = "network:\n  ethernets:\n    all:\n      match:\n        name: \"ens*\"\n      dhcp4: true\n    x:\n      match: {name: en*, driver: vmxnet3}\n";
        let got = rewrite(text, &m);
        assert_eq!(got.text, None);
        assert_eq!(
            got.notes.iter().map(|n| n.0).collect::<Vec<_>>(),
            vec![5, 8]
        );
        assert!(name_values("      set-name: ens192").is_empty());
        assert_eq!(
            name_values("  match: {name: 'e*', macaddress: x}"),
            vec!["e*"]
        );
    }

    #[test]
    fn swap_and_kept_names() {
        let s = swap();
        let text = "network:\n  ethernets:\n    eth1:\n      dhcp4: true\n    ens192:\n      dhcp4: false\n";
        assert_eq!(
            rewrite(text, &s).text.as_deref(),
            Some(
                "network:\n  ethernets:\n    eth0:\n      dhcp4: true\n    eth1:\n      dhcp4: false\n"
            )
        );
        let keep = Mapper::new(
            vec![nic(
                "ens192",
                "52:54:00:12:34:56",
                "ens192",
                "00:50:56:9a:00:01",
            )],
            false,
        );
        assert_eq!(
            rewrite(UBUNTU18_CLOUD_INIT, &keep)
                .text
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("ens192") || l.contains("00:50:56:9a:00:01"))
                .count(),
            3
        );
    }
}
