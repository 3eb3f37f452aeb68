//! The guest's installed kernels: the union of `/boot/vmlinuz-<v>` (or
//! `vmlinux-<v>`) and `/lib/modules/<v>` (or `/usr/lib/modules/<v>`),
//! sorted by version. `/boot` may be its own file system: it is already
//! mounted in the tree.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io;

use super::KernelInfo;
use crate::error::{Warning, codes};
use crate::guestfs::GuestRoot;

/// The module trees looked at; the first one holding a version wins.
const MODULE_DIRS: &[&str] = &["/lib/modules", "/usr/lib/modules"];

/// Names of image files that are not bootable kernels of their own.
const SKIPPED_SUFFIXES: &[&str] = &[".hmac", ".sig", ".gz", ".xz", ".bz2", ".efi.signed", ".old"];

/// The installed kernels of the guest, oldest first. Rescue kernels
/// (`vmlinuz-0-rescue-<machine-id>`) and module directories that are only
/// leftovers of a removed kernel (no `modules.dep`, no `kernel/`, no
/// image) are left out. Unreadable directories are warnings.
pub fn list_kernels(root: &GuestRoot, warnings: &mut Vec<Warning>) -> Vec<KernelInfo> {
    let mut found: BTreeMap<String, KernelInfo> = BTreeMap::new();

    for entry in list(root, "/boot", warnings) {
        let Some(name) = entry.name_str() else {
            continue;
        };
        for (prefix, preferred) in [("vmlinuz-", true), ("vmlinux-", false)] {
            let Some(version) = name.strip_prefix(prefix) else {
                continue;
            };
            if !is_kernel_version(version) || SKIPPED_SUFFIXES.iter().any(|s| version.ends_with(s))
            {
                continue;
            }
            let path = format!("/boot/{name}");
            if !is_file(root, &path) {
                continue;
            }
            let k = found
                .entry(version.to_string())
                .or_insert_with(|| KernelInfo::from_version(version));
            if preferred || k.image.is_none() {
                k.image = Some(path);
            }
        }
    }

    for base in MODULE_DIRS {
        for entry in list(root, base, warnings) {
            let Some(version) = entry.name_str() else {
                continue;
            };
            if !is_kernel_version(version) {
                continue;
            }
            let dir = format!("{base}/{version}");
            if !root.metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let has_modules = root.exists(&format!("{dir}/modules.dep"))
                || root
                    .metadata(&format!("{dir}/kernel"))
                    .is_ok_and(|m| m.is_dir());
            let k = found
                .entry(version.to_string())
                .or_insert_with(|| KernelInfo::from_version(version));
            if k.modules_dir.is_none() || (has_modules && !k.has_modules) {
                k.modules_dir = Some(dir);
                k.has_modules = has_modules;
            }
        }
    }

    let mut kernels: Vec<KernelInfo> = found
        .into_values()
        .filter(|k| k.image.is_some() || k.has_modules)
        .collect();
    for k in &mut kernels {
        k.initramfs = initramfs_candidates(&k.version)
            .into_iter()
            .find(|p| is_file(root, p));
    }
    kernels.sort_by(|a, b| compare_versions(&a.version, &b.version));
    kernels
}

/// Where the distributions put the initramfs of kernel `v`: RHEL/Fedora,
/// Debian/Ubuntu/Photon, SUSE, RHEL 5.
pub fn initramfs_candidates(v: &str) -> [String; 4] {
    [
        format!("/boot/initramfs-{v}.img"),
        format!("/boot/initrd.img-{v}"),
        format!("/boot/initrd-{v}"),
        format!("/boot/initrd-{v}.img"),
    ]
}

/// A kernel release starts with a digit; rescue kernels
/// (`0-rescue-<machine-id>`) are not installed kernels.
fn is_kernel_version(v: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_digit())
        && !v.starts_with("0-rescue")
        && !v.contains("-rescue-")
        && v.len() <= 256
        && !v.contains(['/', '\n'])
}

fn is_file(root: &GuestRoot, path: &str) -> bool {
    root.metadata(path).is_ok_and(|m| m.is_file())
}

fn list(
    root: &GuestRoot,
    dir: &str,
    warnings: &mut Vec<Warning>,
) -> Vec<crate::guestfs::DirEntryInfo> {
    match root.read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            warnings.push(Warning::new(
                codes::GUEST_IO,
                format!("cannot list the guest's {dir} while looking for kernels: {e}"),
            ));
            Vec::new()
        }
    }
}

/// Compares two version strings the way rpm and humans do: runs of digits
/// compare as numbers, runs of letters as text, separators only separate;
/// a number is newer than letters ("1160.2" > "1160.el7") and more
/// segments are newer ("1.0.1" > "1.0"). Ties fall back to plain text so
/// that the order is total.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (segments(a), segments(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (Some(p), Some(q)) => {
                let p_num = p.starts_with(|c: char| c.is_ascii_digit());
                let q_num = q.starts_with(|c: char| c.is_ascii_digit());
                let ord = match (p_num, q_num) {
                    (true, true) => {
                        let p = p.trim_start_matches('0');
                        let q = q.trim_start_matches('0');
                        p.len().cmp(&q.len()).then_with(|| p.cmp(q))
                    }
                    (false, false) => p.cmp(q),
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// The runs of ASCII digits and of ASCII letters of `s`.
fn segments(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        let first = rest.chars().next()?;
        let digits = first.is_ascii_digit();
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() || c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (seg, tail) = rest.split_at(end);
        rest = tail;
        Some(seg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let sorted = [
            "2.6.32-696.el6.x86_64",
            "2.6.32-754.el6.x86_64",
            "3.10.0-957.el7.x86_64",
            "3.10.0-1160.el7.x86_64",
            "3.10.0-1160.2.1.el7.x86_64",
            "4.4.0-21-generic",
            "4.4.0-210-generic",
            "4.9.0-9-amd64",
            "4.9.0-13-amd64",
            "5.14.0-362.8.1.el9_3.x86_64",
            "5.15.0-91-generic",
            "6.1.0-13-amd64",
            "6.1.0-013-cloud-amd64",
            "10.0.0",
        ];
        for (i, a) in sorted.iter().enumerate() {
            for (j, b) in sorted.iter().enumerate() {
                assert_eq!(compare_versions(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(compare_versions("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(compare_versions("1.0", "1-0"), "1.0".cmp("1-0"));
        assert_eq!(compare_versions("", ""), Ordering::Equal);
        assert_eq!(
            compare_versions(&"9".repeat(100), &"9".repeat(99)),
            Ordering::Greater
        );
        // Non-ASCII characters only separate.
        assert_eq!(compare_versions("1.é", "1.a"), Ordering::Less);
        assert_eq!(compare_versions("1.a", "1.é"), Ordering::Greater);
    }

    #[test]
    fn segments_split() {
        let s: Vec<_> = segments("3.10.0-1160.el7.x86_64").collect();
        assert_eq!(s, ["3", "10", "0", "1160", "el", "7", "x", "86", "64"]);
        assert_eq!(segments("..--").count(), 0);
    }

    #[test]
    fn kernel_versions() {
        assert!(is_kernel_version("5.15.0-91-generic"));
        assert!(!is_kernel_version("0-rescue-0123456789abcdef"));
        assert!(!is_kernel_version("linux"));
        assert!(!is_kernel_version(""));
    }
}
