//! A kernel as its package lays it out: `boot/vmlinuz-<release>`,
//! `boot/config-<release>` and `lib/modules/<release>/` (or
//! `usr/lib/modules/<release>/`), with its modules and their dependencies.

mod glob;
pub mod modinfo;
pub mod modules;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use modules::{Closure, Module, ModuleDb, Resolved};

use crate::deb::{Deb, DebError, Extracted};

/// An error finding or reading a kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No kernel image under the root.
    #[error("no boot/vmlinuz-* under {root}")]
    NoKernel {
        /// Where it was looked for.
        root: PathBuf,
    },
    /// Several kernels and no release chosen.
    #[error("several kernels under {root} ({releases}): choose a release")]
    Ambiguous {
        /// Where.
        root: PathBuf,
        /// The releases found, comma-separated.
        releases: String,
    },
    /// The kernel's modules folder is missing.
    #[error("no lib/modules/{release}/ under {root}")]
    NoModules {
        /// Where.
        root: PathBuf,
        /// The release.
        release: String,
    },
    /// The kernel's config file is missing.
    #[error("no boot/config-{release} under {root}")]
    NoConfig {
        /// Where.
        root: PathBuf,
        /// The release.
        release: String,
    },
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A module file is malformed.
    #[error("reading the module {path}: {reason}")]
    Module {
        /// The module file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Extracting the kernel package failed.
    #[error("extracting the kernel package")]
    Deb(#[from] DebError),
}

/// A kernel release's files in an extracted tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelTree {
    /// The tree's root.
    pub root: PathBuf,
    /// `uname -r`, e.g. `6.1.0-50-amd64`.
    pub release: String,
    /// `boot/vmlinuz-<release>`.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>/` (or under `usr/`).
    pub modules_dir: PathBuf,
    /// `boot/config-<release>`, where the tree has it.
    pub config: Option<PathBuf>,
}

/// Whether a path inside a kernel package is part of what
/// [`KernelTree::extract_deb`] takes: the kernel image, its config and
/// System.map, and the modules.
pub fn is_kernel_path(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s.starts_with("boot/vmlinuz-")
        || s.starts_with("boot/config-")
        || s.starts_with("boot/System.map-")
        || s.starts_with("lib/modules/")
        || s.starts_with("usr/lib/modules/")
        || s == "boot"
        || s == "lib"
        || s == "lib/modules"
        || s == "usr"
        || s == "usr/lib"
        || s == "usr/lib/modules"
}

impl KernelTree {
    /// Finds the one kernel under `root` (an error if there are several).
    pub fn find(root: impl AsRef<Path>) -> Result<Self, KernelError> {
        Self::find_release(root, None)
    }

    /// Finds the kernel `release` under `root`, or the only one there.
    pub fn find_release(
        root: impl AsRef<Path>,
        release: Option<&str>,
    ) -> Result<Self, KernelError> {
        let root = root.as_ref().to_path_buf();
        let boot = root.join("boot");
        let mut releases: Vec<String> = match fs::read_dir(&boot) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("vmlinuz-"))
                        .map(str::to_owned)
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(KernelError::Read { path: boot, source }),
        };
        releases.sort();
        let release = match (release, releases.as_slice()) {
            (Some(r), found) if found.iter().any(|f| f == r) => r.to_owned(),
            (Some(_), _) | (None, []) => return Err(KernelError::NoKernel { root }),
            (None, [only]) => only.clone(),
            (None, many) => {
                return Err(KernelError::Ambiguous {
                    root,
                    releases: many.join(", "),
                });
            }
        };
        let modules_dir = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|base| root.join(base).join(&release))
            .find(|p| p.is_dir())
            .ok_or_else(|| KernelError::NoModules {
                root: root.clone(),
                release: release.clone(),
            })?;
        let config = Some(boot.join(format!("config-{release}"))).filter(|p| p.is_file());
        Ok(Self {
            vmlinuz: boot.join(format!("vmlinuz-{release}")),
            modules_dir,
            config,
            release,
            root,
        })
    }

    /// Extracts the kernel parts of a linux-image package into `dest` and
    /// finds the kernel there.
    pub fn extract_deb(
        deb: &Deb,
        dest: impl AsRef<Path>,
    ) -> Result<(Self, Extracted), KernelError> {
        let dest = dest.as_ref();
        let extracted = deb.extract_to(dest, is_kernel_path)?;
        Ok((Self::find(dest)?, extracted))
    }

    /// Reads every module of this kernel.
    pub fn modules(&self) -> Result<ModuleDb, KernelError> {
        ModuleDb::scan(&self.modules_dir)
    }

    /// Reads the kernel's config.
    pub fn config(&self) -> Result<KernelConfig, KernelError> {
        let path = self.config.clone().ok_or_else(|| KernelError::NoConfig {
            root: self.root.clone(),
            release: self.release.clone(),
        })?;
        let text =
            fs::read_to_string(&path).map_err(|source| KernelError::Read { path, source })?;
        Ok(KernelConfig::parse(&text))
    }
}

/// A `CONFIG_*` symbol's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tristate {
    /// `=y`.
    BuiltIn,
    /// `=m`.
    Module,
    /// Unset, `=n` or `# CONFIG_X is not set`.
    No,
}

/// A kernel `.config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    values: BTreeMap<String, String>,
}

impl KernelConfig {
    /// Parses `CONFIG_X=value` lines; comments are ignored.
    pub fn parse(text: &str) -> Self {
        let values = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self { values }
    }

    fn key(symbol: &str) -> String {
        if symbol.starts_with("CONFIG_") {
            symbol.to_owned()
        } else {
            format!("CONFIG_{symbol}")
        }
    }

    /// A symbol's raw value (with or without the `CONFIG_` prefix; string
    /// values keep their quotes).
    pub fn get(&self, symbol: &str) -> Option<&str> {
        self.values.get(&Self::key(symbol)).map(String::as_str)
    }

    /// A symbol's tristate.
    pub fn tristate(&self, symbol: &str) -> Tristate {
        match self.get(symbol) {
            Some("y") => Tristate::BuiltIn,
            Some("m") => Tristate::Module,
            _ => Tristate::No,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config() {
        let c = KernelConfig::parse(
            "# comment\nCONFIG_VMWARE_PVSCSI=m\nCONFIG_EFI_STUB=y\n# CONFIG_FOO is not set\nCONFIG_LOCALVERSION=\"\"\n",
        );
        assert_eq!(c.tristate("VMWARE_PVSCSI"), Tristate::Module);
        assert_eq!(c.tristate("CONFIG_EFI_STUB"), Tristate::BuiltIn);
        assert_eq!(c.tristate("FOO"), Tristate::No);
        assert_eq!(c.get("LOCALVERSION"), Some("\"\""));
    }

    #[test]
    fn finds_a_kernel_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert!(matches!(
            KernelTree::find(root),
            Err(KernelError::NoKernel { .. })
        ));
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::write(root.join("boot/vmlinuz-6.1.0-50-amd64"), "k").unwrap();
        fs::write(root.join("boot/config-6.1.0-50-amd64"), "CONFIG_X=m\n").unwrap();
        assert!(matches!(
            KernelTree::find(root),
            Err(KernelError::NoModules { .. })
        ));
        fs::create_dir_all(root.join("lib/modules/6.1.0-50-amd64/kernel")).unwrap();
        let k = KernelTree::find(root).unwrap();
        assert_eq!(k.release, "6.1.0-50-amd64");
        assert_eq!(k.modules_dir, root.join("lib/modules/6.1.0-50-amd64"));
        assert_eq!(k.config().unwrap().tristate("X"), Tristate::Module);
        assert!(k.modules().unwrap().is_empty());

        fs::write(root.join("boot/vmlinuz-6.1.0-56-amd64"), "k").unwrap();
        assert!(matches!(
            KernelTree::find(root),
            Err(KernelError::Ambiguous { .. })
        ));
        let k = KernelTree::find_release(root, Some("6.1.0-50-amd64")).unwrap();
        assert_eq!(k.release, "6.1.0-50-amd64");
        assert!(KernelTree::find_release(root, Some("5.10")).is_err());
    }

    #[test]
    fn kernel_paths() {
        for (p, want) in [
            ("boot/vmlinuz-6.1.0-50-amd64", true),
            ("lib/modules/6.1.0-50-amd64/kernel/fs/9p/9p.ko", true),
            (
                "usr/share/doc/linux-image-6.1.0-50-amd64/changelog.gz",
                false,
            ),
            ("usr/lib", true),
        ] {
            assert_eq!(is_kernel_path(Path::new(p)), want, "{p}");
        }
    }
}
