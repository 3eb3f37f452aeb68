//! The stack's manifest: the packages it was built from (with their source
//! packages, for the GPL source offer), the kernel, every file with its
//! hash, and the build inputs. JSON with sorted keys and sorted arrays, so
//! that the same inputs give the same bytes.

use serde::Serialize;

use super::{EntryKind, StackContents};

/// The kernel the stack boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelInfo {
    /// Its package (`linux-image-6.1.0-50-amd64`).
    pub package: String,
    /// Its release (`uname -r`).
    pub release: String,
    /// The package's version.
    pub version: String,
}

/// What the build was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInputs {
    /// The `osam-init` version built into `/init`.
    pub osam_init_version: String,
    /// The sha256 of `image/pins.txt`.
    pub pins_sha256: String,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: u64,
}

/// One package in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestPackage {
    /// Debian architecture.
    pub arch: String,
    /// Binary package name.
    pub name: String,
    /// Source package.
    pub source: String,
    /// Source version.
    pub source_version: String,
    /// Binary version.
    pub version: String,
}

/// One file or symbolic link in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestFile {
    /// The package (or `osam-init`, `fixupctl`, `osam-stage2`,
    /// `osam-image` for generated files) it comes from.
    pub from: String,
    /// Permission bits, octal (`0755`).
    pub mode: String,
    /// Absolute path in the initramfs.
    pub path: String,
    /// sha256 of the contents (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size in bytes (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Link target (symbolic links only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The manifest of one stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The stack (`x86_64`, `i686`).
    pub arch: String,
    /// What the build was made from.
    pub build_inputs: BuildInputs,
    /// Files and symbolic links, sorted by path (folders and device nodes
    /// are left out).
    pub files: Vec<ManifestFile>,
    /// The kernel.
    pub kernel: KernelInfo,
    /// Packages, sorted by name.
    pub packages: Vec<ManifestPackage>,
}

impl Manifest {
    /// The manifest of `contents`.
    pub fn new(contents: &StackContents, kernel: KernelInfo, build_inputs: BuildInputs) -> Self {
        let mut packages: Vec<ManifestPackage> = contents
            .packages
            .iter()
            .map(|p| ManifestPackage {
                arch: p.arch.clone(),
                name: p.name.clone(),
                source: p.source.clone(),
                source_version: p.source_version.clone(),
                version: p.version.clone(),
            })
            .collect();
        packages.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        let mut files: Vec<ManifestFile> = contents
            .entries
            .iter()
            .filter_map(|e| {
                let (sha256, size, target) = match &e.kind {
                    EntryKind::File { data, sha256 } => {
                        (Some(sha256.clone()), Some(data.len() as u64), None)
                    }
                    EntryKind::Symlink(t) => (None, None, Some(t.clone())),
                    EntryKind::Dir | EntryKind::CharDev { .. } => return None,
                };
                Some(ManifestFile {
                    from: e.origin.label().to_owned(),
                    mode: format!("{:04o}", e.mode),
                    path: format!("/{}", e.path),
                    sha256,
                    size,
                    target,
                })
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Self {
            arch: contents.arch.name().to_owned(),
            build_inputs,
            files,
            kernel,
            packages,
        }
    }

    /// The manifest as pretty JSON (keys in sorted order) with a final
    /// newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest always serialises");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{Entry, Origin, PackageInfo, StackArch};

    #[test]
    fn manifest_is_sorted_and_stable() {
        let contents = StackContents {
            arch: StackArch::I686,
            entries: vec![
                Entry {
                    path: "bin".into(),
                    mode: 0o755,
                    kind: EntryKind::Dir,
                    origin: Origin::Generated,
                },
                Entry {
                    path: "bin/busybox".into(),
                    mode: 0o755,
                    kind: EntryKind::File {
                        data: b"bb".to_vec(),
                        sha256: "ab".into(),
                    },
                    origin: Origin::Package("busybox-static".into()),
                },
                Entry {
                    path: "bin/sh".into(),
                    mode: 0o777,
                    kind: EntryKind::Symlink("busybox".into()),
                    origin: Origin::Package("busybox-static".into()),
                },
            ],
            packages: vec![PackageInfo {
                name: "busybox-static".into(),
                version: "1:1.35.0-4+deb12u1+b1".into(),
                arch: "i386".into(),
                source: "busybox".into(),
                source_version: "1:1.35.0-4+deb12u1".into(),
            }],
        };
        let m = Manifest::new(
            &contents,
            KernelInfo {
                package: "linux-image-6.1.0-50-686".into(),
                release: "6.1.0-50-686".into(),
                version: "6.1.176-1".into(),
            },
            BuildInputs {
                osam_init_version: "0.1.0".into(),
                pins_sha256: "00".into(),
                source_date_epoch: 1,
            },
        );
        let json = m.to_json();
        assert_eq!(
            json,
            Manifest::new(&contents, m.kernel.clone(), m.build_inputs.clone()).to_json()
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(v["files"].as_array().unwrap().len(), 2);
        assert_eq!(v["files"][0]["path"], "/bin/busybox");
        assert_eq!(v["files"][0]["size"], 2);
        assert_eq!(v["files"][1]["target"], "busybox");
        assert_eq!(v["packages"][0]["sourceVersion"], "1:1.35.0-4+deb12u1");
        assert_eq!(v["buildInputs"]["sourceDateEpoch"], 1);
    }
}
