//! The kernel-module loader PID 1 uses (there is no udev and no
//! `modprobe` in the stack).
//!
//! Pure parts, tested on text: the index files `depmod` writes
//! ([`ModuleIndex`]), the alias pattern matcher ([`glob`]), `/proc/modules`
//! ([`loaded_modules`]) and the sysfs walk ([`scan_modaliases`]). The thin
//! executor, [`Loader`], inserts modules with `finit_module(2)` (plain
//! `.ko`) or `init_module(2)` after decompressing in user space
//! (`.ko.xz`, `.ko.zst`, `.ko.gz`), and runs the coldplug: a module for
//! every device in sysfs, until no new device appears.
//!
//! Like the kernel and kmod, module names treat `-` and `_` alike; they are
//! kept with `_`.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::decompress::DecompressError;

pub mod glob;
mod index;
mod load;
mod sysfs;

pub use index::{ModuleIndex, SoftDeps};
pub use load::{ColdplugReport, InsertFn, Loader};
pub use sysfs::scan_modaliases;

/// Why the module index could not be read or a module not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than the loader accepts.
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    /// A compressed module could not be decompressed.
    #[error("decompressing {path}: {source}")]
    Decompress {
        path: PathBuf,
        #[source]
        source: DecompressError,
    },
    /// No module has this name, and no alias matches it.
    #[error("no module or alias {name} in the module index")]
    UnknownModule { name: String },
    /// Hard dependencies that go round in a circle.
    #[error("module dependency cycle: {}", chain.join(" -> "))]
    DependencyCycle { chain: Vec<String> },
    /// The kernel refused the module.
    #[error("loading module {module} from {path}: {errno}")]
    Insert {
        module: String,
        path: PathBuf,
        #[source]
        errno: nix::errno::Errno,
    },
}

impl KmodError {
    /// Whether this is the kernel saying the module is already loaded,
    /// which counts as success.
    /// Whether the kernel says the hardware or CPU feature the module is
    /// for is absent (ENODEV), as for `crct10dif_pclmul` on a CPU without
    /// PCLMUL: expected, not worth a warning.
    pub fn is_not_applicable(&self) -> bool {
        matches!(
            self,
            KmodError::Insert {
                errno: nix::errno::Errno::ENODEV,
                ..
            }
        )
    }

    pub fn is_already_loaded(&self) -> bool {
        matches!(
            self,
            KmodError::Insert {
                errno: nix::errno::Errno::EEXIST,
                ..
            }
        )
    }
}

/// A module name as the kernel keeps it: `-` becomes `_`.
pub fn normalize_name(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// An alias (or modalias) with `-` turned into `_` outside bracket
/// expressions, as kmod does for both patterns and lookups, so that
/// `fs-9p` and `fs_9p` are the same alias while `[a-z]` stays a range.
pub fn normalize_alias(alias: &str) -> String {
    let mut out = String::with_capacity(alias.len());
    let mut in_class = false;
    for c in alias.trim().chars() {
        match c {
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '-' if !in_class => out.push('_'),
            _ => out.push(c),
        }
    }
    out
}

/// A module's name from its path: the file name without directories and
/// without the `.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`... suffix, normalised.
pub fn module_name(path: &str) -> String {
    let file = path.trim().rsplit('/').next().unwrap_or("");
    let stem = match file.strip_suffix(".ko") {
        Some(stem) => stem,
        None => file
            .rfind(".ko.")
            .and_then(|i| file.get(..i))
            .unwrap_or(file),
    };
    normalize_name(stem)
}

/// The names of the loaded modules from the text of `/proc/modules`
/// (the first word of each line).
pub fn loaded_modules(proc_modules: &str) -> HashSet<String> {
    proc_modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(normalize_name)
        .collect()
}

/// The running kernel's release (`uname -r`), or `"unknown"`.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        let table: &[(&str, &str)] = &[
            ("kernel/fs/9p/9p.ko", "9p"),
            ("kernel/net/9p/9pnet_virtio.ko.xz", "9pnet_virtio"),
            ("kernel/arch/x86/crypto/crc32c-intel.ko.zst", "crc32c_intel"),
            ("kernel/fs/ext4/ext4.ko.gz", "ext4"),
            (
                "/lib/modules/6.1.0/kernel/drivers/scsi/vmw_pvscsi.ko",
                "vmw_pvscsi",
            ),
            ("vmxnet3.ko", "vmxnet3"),
            ("  extra/some.kofoo.ko  ", "some.kofoo"),
            ("sd_mod", "sd_mod"),
            ("", ""),
        ];
        for (path, want) in table {
            assert_eq!(module_name(path), *want, "{path}");
        }
    }

    #[test]
    fn names_and_aliases_normalise() {
        assert_eq!(normalize_name("crc32c-intel"), "crc32c_intel");
        let table: &[(&str, &str)] = &[
            ("fs-9p", "fs_9p"),
            ("net-pf-40", "net_pf_40"),
            ("pci:v*d*sv*sd*bc0[a-c]sc*i*", "pci:v*d*sv*sd*bc0[a-c]sc*i*"),
            ("a-[x-z]-b", "a_[x-z]_b"),
            (
                "dmi:bvnPhoenix-Technologies:",
                "dmi:bvnPhoenix_Technologies:",
            ),
        ];
        for (alias, want) in table {
            assert_eq!(normalize_alias(alias), *want, "{alias}");
        }
    }

    #[test]
    fn proc_modules() {
        let text = "\
vmw_pvscsi 28672 2 - Live 0xffffffffc0364000
vmxnet3 65536 0 - Live 0xffffffffc0350000
crc32c_intel 24576 1 - Live 0x0000000000000000
9pnet 86016 2 9p,9pnet_virtio, Live 0xffffffffc0320000

";
        let loaded = loaded_modules(text);
        let mut names: Vec<&str> = loaded.iter().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["9pnet", "crc32c_intel", "vmw_pvscsi", "vmxnet3"]);
        assert!(loaded_modules("").is_empty());
    }

    #[test]
    fn already_loaded_is_recognised() {
        let e = KmodError::Insert {
            module: "m".into(),
            path: "m.ko".into(),
            errno: nix::errno::Errno::EEXIST,
        };
        assert!(e.is_already_loaded());
        let e = KmodError::Insert {
            module: "m".into(),
            path: "m.ko".into(),
            errno: nix::errno::Errno::ENOENT,
        };
        assert!(!e.is_already_loaded());
    }

    #[test]
    fn kernel_release_is_not_empty() {
        assert!(!kernel_release().is_empty());
    }
}
