//! NetworkManager keyfiles (`/etc/NetworkManager/system-connections/*`)
//! and NetworkManager's own configuration (`NetworkManager.conf`,
//! `conf.d/*.conf`, e.g. `unmanaged-devices=interface-name:ens192`).
//!
//! Every value is rewritten: `[connection] id=` / `interface-name=`,
//! `[ethernet] mac-address=` (also the old list-of-bytes form
//! `82;84;0;18;52;86;`), `mac-address-blacklist=` / `-denylist=`,
//! `[vlan] parent=`, `[bond] options=primary=...`, `[match]
//! interface-name=`; `uuid=` and `zone=` never hold interface names. All
//! other bytes are kept. A keyfile named after a source NIC is renamed.

use super::text::{Mapper, Rewrite, map_lines, stale_lines};
use crate::protocol::config::MacAddr;

/// Keys whose values are never interface names.
const OPAQUE_KEYS: &[&str] = &["uuid", "zone", "master-uuid"];

/// Keys that may hold a MAC as a list of decimal bytes.
const MAC_KEYS: &[&str] = &[
    "mac-address",
    "cloned-mac-address",
    "mac-address-blacklist",
    "mac-address-denylist",
];

fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#') || t.starts_with(';')
}

fn key_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once('=')?;
    Some((key.trim(), value))
}

fn live(line: &str) -> bool {
    !is_comment(line) && !key_value(line).is_some_and(|(k, _)| OPAQUE_KEYS.contains(&k))
}

/// A MAC in the old keyfile form: six decimal bytes separated by `;`.
fn byte_list(value: &str) -> Option<MacAddr> {
    let parts: Vec<&str> = value
        .trim()
        .split(';')
        .filter(|p| !p.trim().is_empty())
        .collect();
    if parts.len() != 6 {
        return None;
    }
    let mut octets = [0u8; 6];
    for (o, p) in octets.iter_mut().zip(parts) {
        *o = p.trim().parse().ok()?;
    }
    Some(MacAddr(octets))
}

fn rewrite_line(line: &str, m: &Mapper) -> Option<String> {
    if !live(line) {
        return None;
    }
    if let Some((key, value)) = key_value(line)
        && MAC_KEYS.contains(&key)
        && let Some(mac) = byte_list(value)
    {
        let target = m.mac_for(mac)?;
        let prefix = &line[..line.len() - value.len()];
        return Some(format!("{prefix}{}", target.to_string().to_uppercase()));
    }
    m.words(line)
}

pub fn rewrite(text: &str, m: &Mapper) -> Rewrite {
    Rewrite {
        text: map_lines(text, |_, line| rewrite_line(line, m)),
        notes: Vec::new(),
    }
}

pub fn stale(text: &str, m: &Mapper) -> Vec<(usize, String)> {
    let mut out = stale_lines(text, m, live);
    for (n, line) in text.lines().enumerate() {
        if let Some((key, value)) = key_value(line)
            && !is_comment(line)
            && MAC_KEYS.contains(&key)
            && let Some(mac) = byte_list(value)
            && m.mac_for(mac).is_some()
        {
            out.push((n + 1, mac.to_string()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::super::text::Mapper;
    use super::super::text::tests::{nic, two};
    use super::*;

    const RHEL9_KEYFILE: &str = "\
[connection]
id=ens192
uuid=2f1b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
type=ethernet
autoconnect-priority=-999
interface-name=ens192
timestamp=1700000000

[ethernet]
mac-address=52:54:00:12:34:56

[ipv4]
address1=192.168.10.5/24,192.168.10.1
dns=192.168.10.1;
method=manual

[ipv6]
addr-gen-mode=eui64
method=auto

[proxy]
";

    #[test]
    fn table() {
        let m = two();
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "rhel9 keyfile",
                RHEL9_KEYFILE,
                Some(
                    "\
[connection]
id=eth0
uuid=2f1b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
type=ethernet
autoconnect-priority=-999
interface-name=eth0
timestamp=1700000000

[ethernet]
mac-address=00:50:56:9a:00:01

[ipv4]
address1=192.168.10.5/24,192.168.10.1
dns=192.168.10.1;
method=manual

[ipv6]
addr-gen-mode=eui64
method=auto

[proxy]
",
                ),
            ),
            (
                "uppercase MAC, blacklist, comment",
                "# ens192\n[ethernet]\nmac-address=52:54:00:12:34:56\nmac-address-blacklist=52:54:00:12:34:57;AA:BB:CC:DD:EE:FF;\n",
                Some(
                    "# ens192\n[ethernet]\nmac-address=00:50:56:9a:00:01\nmac-address-blacklist=00:50:56:9a:00:02;AA:BB:CC:DD:EE:FF;\n",
                ),
            ),
            (
                "old byte-list MAC",
                "[802-3-ethernet]\nmac-address=82;84;0;18;52;86;\n",
                Some("[802-3-ethernet]\nmac-address=00:50:56:9A:00:01\n"),
            ),
            (
                "vlan on a renamed parent",
                "[connection]\nid=vlan100\ntype=vlan\ninterface-name=ens192.100\n\n[vlan]\nid=100\nparent=ens192\n",
                Some(
                    "[connection]\nid=vlan100\ntype=vlan\ninterface-name=eth0.100\n\n[vlan]\nid=100\nparent=eth0\n",
                ),
            ),
            (
                "bond port",
                "[connection]\nid=bond0-port1\ntype=ethernet\ninterface-name=ens224\nmaster=bond0\nslave-type=bond\n",
                Some(
                    "[connection]\nid=bond0-port1\ntype=ethernet\ninterface-name=eth1\nmaster=bond0\nslave-type=bond\n",
                ),
            ),
            (
                "NetworkManager.conf",
                "[keyfile]\nunmanaged-devices=interface-name:ens224;mac:52:54:00:12:34:56\n",
                Some("[keyfile]\nunmanaged-devices=interface-name:eth1;mac:00:50:56:9a:00:01\n"),
            ),
            (
                "unrelated",
                "[connection]\nid=Wired connection 1\ntype=ethernet\n",
                None,
            ),
        ];
        for (what, input, want) in cases {
            let got = rewrite(input, &m);
            assert_eq!(got.text.as_deref(), *want, "{what}");
            let out = got.text.as_deref().unwrap_or(input);
            assert!(stale(out, &m).is_empty(), "{what}: {:?}", stale(out, &m));
            assert_eq!(rewrite(out, &m).text, None, "{what}: idempotent");
        }
        assert_eq!(
            stale("mac-address=82;84;0;18;52;86;\n", &m),
            vec![(1, "52:54:00:12:34:56".to_string())]
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
        let out = rewrite(RHEL9_KEYFILE, &m).text.unwrap_or_default();
        assert!(out.contains("interface-name=ens192\n"));
        assert!(out.contains("mac-address=00:50:56:9a:00:01\n"));
    }
}
