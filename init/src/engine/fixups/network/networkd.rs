//! systemd-networkd and systemd-udevd's link files in
//! `/etc/systemd/network`: `*.network` (`[Match] Name=` lists,
//! `MACAddress=`, `PermanentMACAddress=`, `[Network] VLAN=`/`Bond=`/
//! `Bridge=`), `*.link` (`[Match] MACAddress=`/`OriginalName=`, `[Link]
//! Name=`) and `*.netdev`. Every non-comment line is rewritten; a `Name=`
//! / `OriginalName=` glob that matched a source name but not its new name
//! is left and noted. Also the `.link` files this step writes to pin the
//! names on systemd guests.

use super::text::{Mapper, Nic, Rewrite, map_lines, stale_lines};

/// The directory of the guest's own network units.
pub const DIR: &str = "/etc/systemd/network";

/// The file name prefix of the `.link` files this step writes.
pub const LINK_PREFIX: &str = "10-osam-";

fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#') || t.starts_with(';')
}

/// Whether networkd or udevd reads a file of this name.
pub fn is_unit_name(name: &str) -> bool {
    [".network", ".link", ".netdev"]
        .iter()
        .any(|ext| name.ends_with(ext))
        && !name.starts_with(LINK_PREFIX)
}

pub fn rewrite(text: &str, m: &Mapper) -> Rewrite {
    let mut notes = Vec::new();
    let text = map_lines(text, |n, line| {
        if is_comment(line) {
            return None;
        }
        if let Some((key, value)) = line.split_once('=')
            && matches!(key.trim(), "Name" | "OriginalName")
        {
            for pattern in value.split_whitespace() {
                let pattern = pattern.trim_start_matches('!');
                let after = m.words(pattern).unwrap_or_else(|| pattern.to_string());
                if let Some(note) = m.glob_note(pattern, &after) {
                    notes.push((n, note));
                }
            }
        }
        m.words(line)
    });
    Rewrite { text, notes }
}

pub fn stale(text: &str, m: &Mapper) -> Vec<(usize, String)> {
    stale_lines(text, m, |l| !is_comment(l))
}

/// The `.link` file that names the NIC with `nic.target_mac`: its path
/// and contents. `Path=pci-*` keeps VLANs and bonds, which share the MAC
/// but have no PCI path, out.
pub fn link_file(nic: &Nic) -> (String, String) {
    (
        format!("{DIR}/{LINK_PREFIX}{}.link", nic.target_name),
        format!(
            "# Written by OSAM: the name of the NIC with this MAC in the target VM \
             (network-interface-map.json).\n\
             [Match]\n\
             MACAddress={}\n\
             Path=pci-*\n\
             \n\
             [Link]\n\
             Name={}\n",
            nic.target_mac, nic.target_name
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::text::Mapper;
    use super::super::text::tests::{nic, two};
    use super::*;

    #[test]
    fn table() {
        let m = two();
        let cases: &[(&str, &str, Option<&str>, usize)] = &[
            (
                "network with a name list",
                "[Match]\nName=ens192 ens224\n\n[Network]\nAddress=192.168.10.5/24\nGateway=192.168.10.1\nVLAN=ens192.100\n",
                Some(
                    "[Match]\nName=eth0 eth1\n\n[Network]\nAddress=192.168.10.5/24\nGateway=192.168.10.1\nVLAN=eth0.100\n",
                ),
                0,
            ),
            (
                "network by MAC",
                "# uplink on ens192\n[Match]\nMACAddress=52:54:00:12:34:56\nPermanentMACAddress=52:54:00:12:34:57\n[Network]\nDHCP=yes\nBond=bond0\n",
                Some(
                    "# uplink on ens192\n[Match]\nMACAddress=00:50:56:9a:00:01\nPermanentMACAddress=00:50:56:9a:00:02\n[Network]\nDHCP=yes\nBond=bond0\n",
                ),
                0,
            ),
            (
                "link file",
                "[Match]\nMACAddress=52:54:00:12:34:56\nOriginalName=ens192\n\n[Link]\nName=ens192\nMTUBytes=9000\n",
                Some(
                    "[Match]\nMACAddress=00:50:56:9a:00:01\nOriginalName=eth0\n\n[Link]\nName=eth0\nMTUBytes=9000\n",
                ),
                0,
            ),
            (
                "vlan netdev",
                "[NetDev]\nName=ens192.100\nKind=vlan\n\n[VLAN]\nId=100\n",
                Some("[NetDev]\nName=eth0.100\nKind=vlan\n\n[VLAN]\nId=100\n"),
                0,
            ),
            (
                "glob left and noted",
                "[Match]\nName=ens* !ens224\n\n[Network]\nDHCP=yes\n",
                Some("[Match]\nName=ens* !eth1\n\n[Network]\nDHCP=yes\n"),
                1,
            ),
            ("glob that still matches", "[Match]\nName=e*\n", None, 0),
        ];
        for (what, input, want, notes) in cases {
            let got = rewrite(input, &m);
            assert_eq!(got.text.as_deref(), *want, "{what}");
            assert_eq!(got.notes.len(), *notes, "{what}");
            let out = got.text.as_deref().unwrap_or(input);
            assert!(stale(out, &m).is_empty(), "{what}: {:?}", stale(out, &m));
            assert_eq!(rewrite(out, &m).text, None, "{what}: idempotent");
        }
    }

    #[test]
    fn link_files_pin_target_macs() {
        let (path, text) = link_file(&nic(
            "ens192",
            "52:54:00:12:34:56",
            "eth0",
            "00:50:56:9a:00:01",
        ));
        assert_eq!(path, "/etc/systemd/network/10-osam-eth0.link");
        assert!(text.contains("\nMACAddress=00:50:56:9a:00:01\nPath=pci-*\n\n[Link]\nName=eth0\n"));
        assert!(is_unit_name("10-ens192.network"));
        assert!(!is_unit_name("10-osam-eth0.link"));
        assert!(!is_unit_name("README"));
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
            rewrite(
                "[Match]\nName=ens192\nMACAddress=52:54:00:12:34:56\n",
                &keep
            )
            .text
            .as_deref(),
            Some("[Match]\nName=ens192\nMACAddress=00:50:56:9a:00:01\n")
        );
    }
}
