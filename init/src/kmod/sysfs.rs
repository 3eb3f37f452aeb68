//! Finding the devices that want drivers: the `modalias` files of sysfs.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// How deep below `<sysfs>/devices` the walk goes.
const MAX_DEPTH: usize = 32;
/// How many directories the walk visits at most (a guard, not a limit
/// a real machine reaches).
const MAX_DIRS: usize = 200_000;
/// The longest modalias read (the kernel's own limit is a page).
const MAX_MODALIAS: u64 = 4096;

/// Walks `<sysfs>/devices` without following symbolic links, at most
/// 32 levels deep, and returns the distinct, non-empty contents of every
/// `modalias` file, sorted. Unreadable entries are skipped.
pub fn scan_modaliases(sysfs: &Path) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut pending: Vec<(PathBuf, usize)> = vec![(sysfs.join("devices"), 0)];
    let mut visited = 0usize;
    while let Some((dir, depth)) = pending.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            crate::logging::warn(format!(
                "stopped scanning {} after {MAX_DIRS} directories",
                sysfs.display()
            ));
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // The entry's own type: a symbolic link is never followed.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if depth < MAX_DEPTH {
                    pending.push((entry.path(), depth + 1));
                }
            } else if kind.is_file() && entry.file_name() == "modalias" {
                if let Some(alias) = read_modalias(&entry.path()) {
                    found.insert(alias);
                }
            }
        }
    }
    found.into_iter().collect()
}

fn read_modalias(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_MODALIAS).read_to_string(&mut text).ok()?;
    let alias = text.trim();
    (!alias.is_empty()).then(|| alias.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_modaliases_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let devices = root.join("devices");
        let pci = devices.join("pci0000:00/0000:00:15.0/0000:03:00.0");
        fs::create_dir_all(&pci).unwrap();
        fs::write(
            pci.join("modalias"),
            "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc07i00\n",
        )
        .unwrap();
        fs::write(pci.join("vendor"), "0x15ad\n").unwrap();
        let acpi = devices.join("LNXSYSTM:00/LNXSYBUS:00/PNP0A03:00");
        fs::create_dir_all(&acpi).unwrap();
        fs::write(acpi.join("modalias"), "acpi:PNP0A03:\n").unwrap();
        // The same modalias twice, and an empty one.
        let twin = devices.join("platform/twin");
        fs::create_dir_all(&twin).unwrap();
        fs::write(twin.join("modalias"), "acpi:PNP0A03:").unwrap();
        let empty = devices.join("platform/empty");
        fs::create_dir_all(&empty).unwrap();
        fs::write(empty.join("modalias"), "\n").unwrap();
        // A link back up (as sysfs has everywhere) and a linked modalias
        // must not be followed.
        std::os::unix::fs::symlink(&devices, pci.join("subsystem")).unwrap();
        let outside = root.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("modalias"), "virtio:d00000001v00001AF4").unwrap();
        std::os::unix::fs::symlink(&outside, devices.join("virtio0")).unwrap();
        let linked = devices.join("platform/linked");
        fs::create_dir_all(&linked).unwrap();
        std::os::unix::fs::symlink(outside.join("modalias"), linked.join("modalias")).unwrap();
        // Beyond the depth bound.
        let mut deep = devices.join("deep");
        for i in 0..40 {
            deep = deep.join(format!("d{i}"));
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("modalias"), "too:deep").unwrap();

        assert_eq!(
            scan_modaliases(root),
            [
                "acpi:PNP0A03:",
                "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc07i00",
            ]
        );
    }

    #[test]
    fn missing_sysfs_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scan_modaliases(&dir.path().join("nope")).is_empty());
    }
}
