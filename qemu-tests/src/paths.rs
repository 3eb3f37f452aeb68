//! Where things are: the workspace, the input cache, the fetched packages,
//! the extracted stack kernels and the stack's binaries.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use osam_image::deb::Deb;
use osam_image::kernel::KernelTree;
use osam_image::pins::{self, Pin};

use crate::Arch;
use crate::error::{Error, Result};

/// The workspace root (the folder of the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/osam`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache")
        });
    base.join("osam")
}

/// The pins file.
pub fn pins_file() -> PathBuf {
    workspace_root().join("image/pins.txt")
}

/// The pinned packages.
pub fn pins() -> Result<Vec<Pin>> {
    let path = pins_file();
    let text = fs::read_to_string(&path).map_err(Error::io("reading", &path))?;
    Ok(pins::parse(&text)?)
}

/// Runs a command, its output captured; fails on a non-zero exit.
pub(crate) fn run(command: &mut Command) -> Result<Output> {
    let line = format!("{command:?}");
    let output = command.output().map_err(|source| Error::Spawn {
        command: line.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: line,
            status: output.status,
            output: tail_lines(
                &format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
                40,
            ),
        });
    }
    Ok(output)
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

static FETCH: Mutex<()> = Mutex::new(());

/// Runs `scripts/fetch-inputs.sh` (a no-op when the cache is complete) and
/// returns the folder holding the pinned .debs.
pub fn fetch_inputs() -> Result<PathBuf> {
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let script = workspace_root().join("scripts/fetch-inputs.sh");
    let output = run(Command::new("bash").arg(&script).args(["--arch", "all"]))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| Error::Missing(format!("{} printed no cache folder", script.display())))?;
    if !dir.is_dir() {
        return Err(Error::Missing(format!(
            "{} printed {}, which is not a folder",
            script.display(),
            dir.display()
        )));
    }
    Ok(dir)
}

/// The pinned kernel package of a stack (the `linux-image-*` pin of its
/// Debian architecture), fetched.
pub fn kernel_deb(arch: Arch) -> Result<PathBuf> {
    let pin = pins()?
        .into_iter()
        .find(|p| p.arch == arch.debian_arch() && p.package.starts_with("linux-image-"))
        .ok_or_else(|| {
            Error::Missing(format!(
                "no linux-image-* pin for {} in {}",
                arch.debian_arch(),
                pins_file().display()
            ))
        })?;
    let deb = fetch_inputs()?.join(pin.deb_file_name());
    if !deb.is_file() {
        return Err(Error::Missing(format!(
            "{} is not in the cache after fetching",
            deb.display()
        )));
    }
    Ok(deb)
}

/// The stack kernel of `arch`, extracted once into
/// `<cache>/kernels/<package file name>/` (through a temporary folder, so
/// an interrupted extraction is never taken for a complete one).
pub fn kernel_tree(arch: Arch) -> Result<KernelTree> {
    let deb_path = kernel_deb(arch)?;
    let stem = deb_path
        .file_stem()
        .unwrap_or_else(|| OsStr::new("kernel"))
        .to_owned();
    let kernels = cache_dir().join("kernels");
    let dest = kernels.join(&stem);
    if !dest.is_dir() {
        fs::create_dir_all(&kernels).map_err(Error::io("creating", &kernels))?;
        let tmp = kernels.join(format!(
            ".tmp-{}-{}",
            stem.to_string_lossy(),
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(Error::io("removing", &tmp))?;
        }
        let deb = Deb::open(&deb_path)?;
        let extracted = KernelTree::extract_deb(&deb, &tmp);
        if let Err(e) = extracted {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            // Another run may have won the race; its tree is as good.
            if !dest.is_dir() {
                return Err(Error::io("renaming into", &dest)(e));
            }
        }
    }
    Ok(KernelTree::find(&dest)?)
}

/// Builds the stack's binaries for `arch` with
/// `cargo build --release --target <triple> -p osam-init` in a separate
/// target folder (`target/stack`, so it never waits for the lock of the
/// `cargo test` that runs this) and returns the path of binary `name`.
pub fn stack_binary(arch: Arch, name: &str) -> Result<PathBuf> {
    let root = workspace_root();
    let target_dir = root.join("target/stack");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args(["build", "--release", "--target", arch.rust_target()])
        .args(["-p", "osam-init", "--target-dir"])
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    run(&mut command)?;
    let binary = target_dir
        .join(arch.rust_target())
        .join("release")
        .join(name);
    if !binary.is_file() {
        return Err(Error::Missing(format!(
            "cargo built no {}",
            binary.display()
        )));
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_layout() {
        let root = workspace_root();
        assert!(root.join("Cargo.toml").is_file());
        assert!(root.join("scripts/fetch-inputs.sh").is_file());
        assert!(
            pins()
                .unwrap()
                .iter()
                .any(|p| p.package.starts_with("linux-image-"))
        );
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
    }
}
