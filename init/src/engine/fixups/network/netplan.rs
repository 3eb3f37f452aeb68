//! netplan (`/etc/netplan/*.yaml`), edited as text so that comments,
//! indentation, quoting and flow style stay as they are: every
//! non-comment line has its whole-word source names and source MACs
//! rewritten in place. That covers the `ethernets:` keys, `match:
//! macaddress:`, `set-name:`, `bonds: interfaces: [..]`, `bridges:
//! interfaces:`, `vlans: link:` and routes' `via`/`from` lines alike,
//! in block or flow style. A `match: name:` glob that matched a source
//! name but not its new name is left and noted.
//!
//! A block-style `match:` that names a source platform's NIC driver
//! (`driver: hv_netvsc`, as cloud-init writes on Azure) beside a
//! `macaddress:` loses the `driver:` line: no VMware NIC has that driver,
//! so the match would never hold on the target, while the MAC alone still
//! names the NIC.

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

/// NIC drivers of the source platforms (Hyper-V and Azure, KVM, Xen, AWS,
/// Google Cloud), which no VMware NIC has.
const SOURCE_NIC_DRIVERS: &[&str] = &[
    "hv_netvsc",
    "virtio_net",
    "xen_netfront",
    "xen-netfront",
    "ena",
    "gve",
];

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The indexes of block-style `driver:` lines naming a source platform's
/// NIC driver in a mapping that also has a `macaddress:` key.
fn source_driver_lines(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("driver:") else {
            continue;
        };
        let value = value.split('#').next().unwrap_or_default().trim();
        if !SOURCE_NIC_DRIVERS.contains(&value.trim_matches(['"', '\''])) {
            continue;
        }
        let depth = indent(line);
        // The mapping's other keys: the lines around at the same depth,
        // up to a line less indented.
        let has_mac = |range: &mut dyn Iterator<Item = usize>| {
            for j in range {
                let l = lines[j];
                if is_comment(l) || indent(l) > depth {
                    continue;
                }
                if indent(l) < depth {
                    return false;
                }
                if l.trim_start().starts_with("macaddress:") {
                    return true;
                }
            }
            false
        };
        if has_mac(&mut (0..i).rev()) || has_mac(&mut (i + 1..lines.len())) {
            out.push(i);
        }
    }
    out
}

pub fn rewrite(text: &str, m: &Mapper) -> Rewrite {
    let mut notes = Vec::new();
    let mapped = map_lines(text, |n, line| {
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
    // Line for line: the driver lines are where they were.
    let drop = source_driver_lines(text);
    let text = if drop.is_empty() {
        mapped
    } else {
        let base = mapped.as_deref().unwrap_or(text);
        Some(
            base.split_inclusive('\n')
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, l)| l)
                .collect(),
        )
    };
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
    fn azure_driver_match_is_dropped_beside_a_mac() {
        let m = Mapper::new(
            vec![nic(
                "eth0",
                "00:0d:3a:5c:8e:21",
                "eth0",
                "00:50:56:9a:00:01",
            )],
            true,
        );
        let azure = "\
network:
    ethernets:
        eth0:
            dhcp4: true
            match:
                driver: hv_netvsc
                macaddress: 00:0d:3a:5c:8e:21
            set-name: eth0
    version: 2
";
        let out = rewrite(azure, &m).text.unwrap();
        assert_eq!(
            out,
            "\
network:
    ethernets:
        eth0:
            dhcp4: true
            match:
                macaddress: 00:50:56:9a:00:01
            set-name: eth0
    version: 2
"
        );
        assert_eq!(rewrite(&out, &m).text, None, "idempotent");
        // The MAC before the driver, quotes, a comment: still dropped.
        let quoted = "    match:\n      macaddress: \"00:0d:3a:5c:8e:21\"\n      driver: \"hv_netvsc\"  # Azure\n    set-name: eth0\n";
        assert_eq!(
            rewrite(quoted, &m).text.as_deref(),
            Some("    match:\n      macaddress: \"00:50:56:9a:00:01\"\n    set-name: eth0\n")
        );
        // Without a MAC beside it, or naming a VMware driver, or in
        // another mapping than the MAC: kept.
        for kept in [
            "    match:\n      driver: virtio_net\n    dhcp4: true\n",
            "    match:\n      driver: vmxnet3\n      macaddress: 00:50:56:9a:00:07\n",
            "  a:\n    match:\n      driver: ena\n  b:\n    macaddress: 00:50:56:9a:00:07\n",
        ] {
            assert_eq!(rewrite(kept, &m).text, None, "{kept}");
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
