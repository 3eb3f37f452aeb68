//! The stack's disk images for tests, built once per input set.
//!
//! [`stack_image`] builds the stack binaries, fetches the pinned inputs and
//! runs [`osam_image::build::build`] into
//! `target/osam-images/<arch>-<hash>/`, where the hash covers everything
//! the image is made from: the three binaries, the pins file,
//! `kernel-config/*`, osam-image's version and its sources (so that a
//! changed grub.cfg or initramfs layout is not served from a stale cache),
//! and the build epoch. A later run with the same inputs reuses the
//! folder. A lock file (`flock`) keeps two tests — or two test processes —
//! from building the same stack at once; the build goes to a temporary
//! folder renamed into place, so a folder under its final name is always
//! complete.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use osam_image::build::{BuildOptions, Format, build, image_name};
use osam_image::stack::StackArch;
use sha2::{Digest, Sha256};

use crate::Arch;
use crate::paths::{self, workspace_root};

/// The `SOURCE_DATE_EPOCH` of test images (2024-01-01T00:00:00Z).
pub const TEST_EPOCH: u64 = 1_704_067_200;
/// The disk size of test images (the `osam-image build` default).
pub const TEST_SIZE_MIB: u64 = 64;

/// One stack's images.
#[derive(Debug, Clone)]
pub struct StackImage {
    /// The stack.
    pub arch: Arch,
    /// The folder holding them.
    pub dir: PathBuf,
    /// The streamOptimized VMDK (read-only to QEMU: boot it with
    /// `snapshot=on`).
    pub vmdk: PathBuf,
    /// The OVA around it.
    pub ova: PathBuf,
    /// The raw disk.
    pub raw: PathBuf,
    /// The manifest.
    pub manifest: PathBuf,
}

impl StackImage {
    fn in_dir(arch: Arch, dir: PathBuf) -> Self {
        let name = image_name(stack_arch(arch));
        Self {
            arch,
            vmdk: dir.join(format!("{name}.vmdk")),
            ova: dir.join(format!("{name}.ova")),
            raw: dir.join(format!("{name}.raw")),
            manifest: dir.join(format!("{name}.manifest.json")),
            dir,
        }
    }

    fn complete(&self) -> bool {
        [&self.vmdk, &self.ova, &self.raw, &self.manifest]
            .iter()
            .all(|p| p.is_file())
    }
}

/// The image builder's name for a stack.
pub fn stack_arch(arch: Arch) -> StackArch {
    match arch {
        Arch::X86_64 => StackArch::X86_64,
        Arch::I686 => StackArch::I686,
    }
}

/// `target/osam-images`.
pub fn images_dir() -> PathBuf {
    workspace_root().join("target/osam-images")
}

/// Set to `1` to take the stack binaries already in
/// `target/stack/<triple>/release/` instead of running cargo (while the
/// tree does not build, or to test binaries built another way).
pub const PREBUILT_VAR: &str = "OSAM_STACK_PREBUILT";

/// The stack binaries an image holds: osam-init, fixupctl, osam-stage2.
pub fn stack_binaries(arch: Arch) -> Result<[PathBuf; 3]> {
    if std::env::var_os(PREBUILT_VAR).is_some_and(|v| v == "1") {
        let dir = workspace_root()
            .join("target/stack")
            .join(arch.rust_target())
            .join("release");
        let binaries = ["osam-init", "fixupctl", "osam-stage2"].map(|name| dir.join(name));
        for binary in &binaries {
            if !binary.is_file() {
                bail!("{PREBUILT_VAR}=1 but {} is missing", binary.display());
            }
        }
        return Ok(binaries);
    }
    Ok([
        paths::stack_binary(arch, "osam-init")?,
        paths::stack_binary(arch, "fixupctl")?,
        paths::stack_binary(arch, "osam-stage2")?,
    ])
}

/// Files under `dir`, recursively, sorted (relative path, full path).
fn files_under(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                out.push((rel.to_string_lossy().into_owned(), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The cache key of an image: sha256 over every input, each named.
fn input_hash(
    arch: Arch,
    binaries: &[PathBuf],
    pins: &Path,
    kernel_config: &Path,
) -> Result<String> {
    let mut hash = Sha256::new();
    let mut add = |label: &str, path: &Path| -> Result<()> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        hash.update((label.len() as u64).to_le_bytes());
        hash.update(label.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
        Ok(())
    };
    for binary in binaries {
        let name = binary.file_name().unwrap_or_default().to_string_lossy();
        add(&format!("bin/{name}"), binary)?;
    }
    add("pins", pins)?;
    for (rel, path) in files_under(kernel_config)? {
        add(&format!("kernel-config/{rel}"), &path)?;
    }
    let image_src = workspace_root().join("image/src");
    for (rel, path) in files_under(&image_src)? {
        add(&format!("image/src/{rel}"), &path)?;
    }
    add(
        "image/Cargo.toml",
        &workspace_root().join("image/Cargo.toml"),
    )?;
    hash.update(b"osam-image-version\0");
    hash.update(env!("CARGO_PKG_VERSION").as_bytes());
    hash.update(b"\0arch\0");
    hash.update(arch.name().as_bytes());
    hash.update(TEST_EPOCH.to_le_bytes());
    hash.update(TEST_SIZE_MIB.to_le_bytes());
    let digest = hash.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// An exclusive `flock` on a file, released when dropped.
pub(crate) struct FileLock(File);

impl FileLock {
    pub(crate) fn acquire(path: &Path) -> Result<FileLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        loop {
            // SAFETY: flock(2) on a descriptor this function owns; no
            // memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock(file));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as in `acquire`; closing the file would release it too.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// The stack image of `arch` (VMDK + OVA and raw), built or reused.
pub fn stack_image(arch: Arch) -> Result<StackImage> {
    let root = workspace_root();
    let binaries = stack_binaries(arch).context("building the stack binaries")?;
    let inputs = paths::fetch_inputs()
        .context("fetching the pinned inputs (scripts/fetch-inputs.sh; scripts/install-deps.sh installs its tools)")?;
    let pins = paths::pins_file();
    let kernel_config = root.join("kernel-config");
    let key = input_hash(arch, &binaries, &pins, &kernel_config)?;

    let images = images_dir();
    fs::create_dir_all(&images).with_context(|| format!("creating {}", images.display()))?;
    let _lock = FileLock::acquire(&images.join(format!("{arch}.lock")))?;
    let image = StackImage::in_dir(arch, images.join(format!("{arch}-{key}")));
    if image.complete() {
        return Ok(image);
    }
    if image.dir.exists() {
        fs::remove_dir_all(&image.dir)
            .with_context(|| format!("removing the incomplete {}", image.dir.display()))?;
    }
    let tmp = images.join(format!(".tmp-{arch}-{key}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let [init, fixupctl, stage2] = binaries;
    let options = BuildOptions {
        arch: stack_arch(arch),
        formats: vec![Format::Vmdk, Format::Raw],
        out: tmp.clone(),
        inputs,
        pins_file: pins,
        kernel_config,
        init,
        fixupctl,
        stage2: Some(stage2),
        epoch: TEST_EPOCH,
        size_mib: TEST_SIZE_MIB,
        work: None,
    };
    let built = build(&options).with_context(|| format!("building the {arch} stack image"));
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &image.dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), image.dir.display()))?;
    if !image.complete() {
        bail!("the build left an incomplete {}", image.dir.display());
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_within_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = FileLock::acquire(&path).unwrap();
        let second = File::options().write(true).open(&path).unwrap();
        // SAFETY: flock(2) on an open descriptor.
        let rc = unsafe { libc::flock(second.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, -1, "a second lock succeeded while the first is held");
        drop(first);
        // SAFETY: as above.
        let rc = unsafe { libc::flock(second.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0);
    }

    #[test]
    fn image_paths() {
        let image = StackImage::in_dir(Arch::I686, PathBuf::from("/x"));
        assert_eq!(image.vmdk, Path::new("/x/osam-fixup-i686.vmdk"));
        assert_eq!(image.raw, Path::new("/x/osam-fixup-i686.raw"));
        assert_eq!(
            image.manifest,
            Path::new("/x/osam-fixup-i686.manifest.json")
        );
    }
}
