//! The FAT partition (ESP) of a raw stack disk from the host, through
//! mtools (`-i disk.raw@@<offset>`): no root, no loop device. The ESP
//! starts at [`ESP_START`] on every disk osam-image makes.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
pub use osam_image::disk::ESP_START;

/// Byte 0x41 of a FAT32 boot sector: Linux sets bit 0 while the volume is
/// mounted read-write and clears it on a clean unmount.
const FAT32_STATE: u64 = 0x41;

/// Runs an mtools command on the ESP of `disk`; returns its stdout.
pub fn mtools(tool: &str, disk: &Path, args: &[&OsStr]) -> Result<Vec<u8>> {
    let image = format!("{}@@{ESP_START}", disk.display());
    let out = Command::new(tool)
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&image)
        .args(args)
        .output()
        .with_context(|| format!("running {tool} (mtools: scripts/install-deps.sh)"))?;
    if !out.status.success() {
        bail!(
            "{tool} -i {image} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Copies host files into the folder `dir` of the ESP (`::/fixup/`),
/// replacing what is there.
pub fn put(disk: &Path, files: &[&Path], dir: &str) -> Result<()> {
    let mut args: Vec<&OsStr> = vec!["-o".as_ref()];
    args.extend(files.iter().map(|p| p.as_os_str()));
    args.push(dir.as_ref());
    mtools("mcopy", disk, &args).map(drop)
}

/// The names in a folder of the ESP (`::/fixup`), sorted.
pub fn names(disk: &Path, dir: &str) -> Result<Vec<String>> {
    let out = mtools("mdir", disk, &["-b".as_ref(), dir.as_ref()])?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.trim().rsplit('/').next().map(str::to_owned))
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    Ok(names)
}

/// Copies a file of the ESP (`::/fixup/x`) to `to` on the host.
pub fn get(disk: &Path, path: &str, to: &Path) -> Result<()> {
    mtools(
        "mcopy",
        disk,
        &["-o".as_ref(), path.as_ref(), to.as_os_str()],
    )
    .map(drop)
}

/// Whether the ESP was unmounted cleanly (its FAT32 dirty flag is clear).
pub fn is_clean(disk: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(disk).with_context(|| format!("opening {}", disk.display()))?;
    f.seek(SeekFrom::Start(ESP_START + FAT32_STATE))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0] & 1 == 0)
}
