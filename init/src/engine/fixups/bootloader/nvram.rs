//! The firmware's UEFI boot entries, read from efivarfs, so a rerun does not
//! add a second entry for the same loader. Written by hand: no maintained
//! crate parses `Boot####` load options (UEFI 2.10, 3.1.3 "Load Options"
//! and 10.3.5.4 "File Path Media Device Path") without pulling in a whole
//! NVRAM editor.

use std::path::Path;

/// The GUID of the EFI global variables, as efivarfs names them.
const GLOBAL: &str = "8be4df61-93ca-11d0-aa6d-00e098032b8c";

/// One `Boot####` entry: its number, label and the file path it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub number: u16,
    pub label: String,
    /// `\EFI\debian\shimx64.efi`, as stored (backslashes).
    pub loader: Option<String>,
}

fn utf16_until_nul(b: &[u8]) -> (String, usize) {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let used = (units.len() + 1) * 2;
    (String::from_utf16_lossy(&units), used.min(b.len()))
}

/// Parses an `EFI_LOAD_OPTION` (without efivarfs's 4 attribute bytes).
pub fn parse_load_option(number: u16, b: &[u8]) -> Option<BootEntry> {
    let list_len = usize::from(u16::from_le_bytes([*b.get(4)?, *b.get(5)?]));
    let rest = b.get(6..)?;
    let (label, used) = utf16_until_nul(rest);
    let mut list = rest.get(used..)?;
    list = &list[..list_len.min(list.len())];
    let mut loader = None;
    while list.len() >= 4 {
        let (kind, sub) = (list[0], list[1]);
        let len = usize::from(u16::from_le_bytes([list[2], list[3]]));
        if len < 4 || len > list.len() {
            break;
        }
        if kind == 0x7f && sub == 0xff {
            break; // end of the device path
        }
        if kind == 0x04 && sub == 0x04 {
            let (path, _) = utf16_until_nul(&list[4..len]);
            loader = Some(path);
        }
        list = &list[len..];
    }
    Some(BootEntry {
        number,
        label,
        loader,
    })
}

/// The boot entries in an efivarfs directory (unreadable ones skipped).
pub fn read_entries(efivars: &Path) -> Vec<BootEntry> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(efivars) else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(hex) = name
            .strip_prefix("Boot")
            .and_then(|r| r.strip_suffix(GLOBAL))
            .and_then(|r| r.strip_suffix('-'))
        else {
            continue;
        };
        let Ok(number) = u16::from_str_radix(hex, 16) else {
            continue;
        };
        if hex.len() != 4 {
            continue;
        }
        if let Ok(data) = std::fs::read(e.path())
            && let Some(entry) = data.get(4..).and_then(|b| parse_load_option(number, b))
        {
            out.push(entry);
        }
    }
    out.sort_by_key(|e| e.number);
    out
}

/// The entry that already boots `loader` under `label`, if any (paths
/// compared as the firmware does: case-insensitively, either slash).
pub fn find<'a>(entries: &'a [BootEntry], label: &str, loader: &str) -> Option<&'a BootEntry> {
    let norm = |p: &str| p.replace('/', "\\").to_ascii_lowercase();
    let want = norm(loader);
    entries.iter().find(|e| {
        e.label == label && e.loader.as_deref().map(norm).as_deref() == Some(want.as_str())
    })
}

#[cfg(test)]
pub(crate) fn load_option(label: &str, loader: &str) -> Vec<u8> {
    let utf16 = |s: &str| -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(|u| u.to_le_bytes())
            .collect()
    };
    // A hard-drive node (type 4, subtype 1, 42 bytes), the file path, the end.
    let mut list = vec![0x04, 0x01, 42, 0];
    list.extend([0u8; 38]);
    let path = utf16(loader);
    list.extend([0x04, 0x04]);
    list.extend(u16::try_from(path.len() + 4).unwrap().to_le_bytes());
    list.extend(path);
    list.extend([0x7f, 0xff, 4, 0]);
    let mut b = 1u32.to_le_bytes().to_vec();
    b.extend(u16::try_from(list.len()).unwrap().to_le_bytes());
    b.extend(utf16(label));
    b.extend(list);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entries_from_efivarfs() {
        let d = tempfile::tempdir().unwrap();
        let var = |n: &str, opt: &[u8]| {
            let mut data = 7u32.to_le_bytes().to_vec();
            data.extend(opt);
            std::fs::write(d.path().join(format!("{n}-{GLOBAL}")), data).unwrap();
        };
        var(
            "Boot0003",
            &load_option("debian", "\\EFI\\debian\\shimx64.efi"),
        );
        var("Boot0000", &load_option("UEFI QEMU HARDDISK", ""));
        var("BootOrder", &[3, 0, 0, 0]);
        var("Boot000G", &load_option("bad", "x"));
        std::fs::write(d.path().join("Boot0001-other-guid"), b"xxxx").unwrap();
        let e = read_entries(d.path());
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[1].number, 3);
        assert_eq!(e[1].label, "debian");
        assert_eq!(e[1].loader.as_deref(), Some("\\EFI\\debian\\shimx64.efi"));
        assert_eq!(
            find(&e, "debian", "/EFI/Debian/SHIMX64.EFI").map(|e| e.number),
            Some(3)
        );
        assert!(find(&e, "ubuntu", "\\EFI\\debian\\shimx64.efi").is_none());
        assert!(find(&e, "debian", "\\EFI\\debian\\grubx64.efi").is_none());
    }

    #[test]
    fn survives_truncated_and_noisy_options() {
        let full = load_option("rhel", "\\EFI\\redhat\\shimx64.efi");
        for n in 0..full.len() {
            let _ = parse_load_option(1, &full[..n]);
        }
        let mut bad = full.clone();
        bad[4] = 0xff;
        bad[5] = 0xff;
        let _ = parse_load_option(1, &bad);
        assert_eq!(
            parse_load_option(1, &full).and_then(|e| e.loader),
            Some("\\EFI\\redhat\\shimx64.efi".into())
        );
    }
}
