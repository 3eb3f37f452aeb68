//! Finding the Tools ISO: a CD-ROM whose ISO 9660 primary volume
//! descriptor carries the volume label `VMware Tools` (protocol.md, "Stage
//! 2's Tools ISO"). The descriptor is read here, not by blkid, so the
//! agent needs nothing from the guest to find it.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The volume label of the Tools ISO.
pub const TOOLS_LABEL: &str = "VMware Tools";

/// Where the CD-ROM can show up (udev escapes the space in the label).
pub const DEFAULT_DEVICES: [&str; 6] = [
    "/dev/sr0",
    "/dev/sr1",
    "/dev/sr2",
    "/dev/sr3",
    "/dev/cdrom",
    "/dev/disk/by-label/VMware\\x20Tools",
];

/// Byte offset of the primary volume descriptor (sector 16 of 2048 bytes).
pub const PVD_OFFSET: u64 = 16 * 2048;

/// The volume identifier of an ISO 9660 primary volume descriptor (one
/// 2048-byte sector): type 1, `CD001`, version 1, identifier at offset 40
/// (32 bytes, padded with spaces). `None` when the sector is no PVD.
pub fn pvd_label(sector: &[u8]) -> Option<String> {
    if sector.len() < 72 || sector[0] != 1 || &sector[1..6] != b"CD001" {
        return None;
    }
    let id = &sector[40..72];
    let text = String::from_utf8_lossy(id);
    Some(text.trim_end_matches([' ', '\0']).to_string())
}

/// Reads the volume label of a device or image; `Ok(None)` when it holds
/// no ISO 9660 file system. An empty drive fails to read (`ENOMEDIUM`).
pub fn read_label(dev: &Path) -> std::io::Result<Option<String>> {
    // O_NONBLOCK: a CD-ROM drive without a medium opens instead of
    // failing, and the read then says why.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dev)?;
    let mut sector = vec![0u8; 2048];
    let mut got = 0;
    while got < sector.len() {
        match f.read_at(&mut sector[got..], PVD_OFFSET + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pvd_label(&sector[..got]))
}

/// The first candidate that holds the Tools ISO, as a canonical path (so
/// `/dev/cdrom` and `/dev/sr0` are one device).
pub fn find_once(candidates: &[PathBuf], notes: &mut Vec<String>) -> Option<PathBuf> {
    let mut seen: Vec<PathBuf> = Vec::new();
    for c in candidates {
        let Ok(real) = std::fs::canonicalize(c) else {
            continue;
        };
        if seen.contains(&real) {
            continue;
        }
        seen.push(real.clone());
        match read_label(&real) {
            Ok(Some(label)) if label == TOOLS_LABEL => return Some(real),
            Ok(Some(label)) => note(
                notes,
                format!(
                    "{}: an ISO labelled {label:?}, not {TOOLS_LABEL:?}",
                    c.display()
                ),
            ),
            Ok(None) => note(notes, format!("{}: no ISO 9660 file system", c.display())),
            Err(e) => note(notes, format!("{}: {e}", c.display())),
        }
    }
    None
}

fn note(notes: &mut Vec<String>, n: String) {
    if !notes.contains(&n) {
        notes.push(n);
    }
}

/// Polls the candidates every `interval` until the Tools ISO shows up or
/// `timeout` has passed (at least one look is taken). `notes` collects
/// what was found instead, once each, for the log.
pub fn wait_for_iso(
    candidates: &[PathBuf],
    timeout: Duration,
    interval: Duration,
    notes: &mut Vec<String>,
) -> Option<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(dev) = find_once(candidates, notes) {
            return Some(dev);
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return None;
        }
        std::thread::sleep(interval.min(timeout - elapsed));
    }
}

/// A minimal image holding a PVD with `label` (tests and fixtures).
pub fn fake_iso(label: &str) -> Vec<u8> {
    let mut img = vec![0u8; PVD_OFFSET as usize + 2048];
    let pvd = &mut img[PVD_OFFSET as usize..];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    let mut id = [b' '; 32];
    for (d, s) in id.iter_mut().zip(label.bytes()) {
        *d = s;
    }
    pvd[40..72].copy_from_slice(&id);
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_label_of_a_pvd() {
        let img = fake_iso("VMware Tools");
        assert_eq!(
            pvd_label(&img[PVD_OFFSET as usize..]).as_deref(),
            Some("VMware Tools")
        );
        assert_eq!(pvd_label(&[0u8; 2048]), None);
        assert_eq!(pvd_label(b"\x01CD0"), None);
    }

    #[test]
    fn finds_the_tools_iso_among_other_devices() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("sr0");
        std::fs::write(&other, fake_iso("CentOS 7 x86_64")).unwrap();
        let short = dir.path().join("sr1");
        std::fs::write(&short, b"tiny").unwrap();
        let tools = dir.path().join("sr2");
        std::fs::write(&tools, fake_iso(TOOLS_LABEL)).unwrap();
        let link = dir.path().join("cdrom");
        std::os::unix::fs::symlink(&tools, &link).unwrap();
        let mut notes = Vec::new();
        let cands = vec![
            dir.path().join("missing"),
            other,
            short,
            link,
            tools.clone(),
        ];
        let found = find_once(&cands, &mut notes).unwrap();
        assert_eq!(found, std::fs::canonicalize(&tools).unwrap());
        assert!(notes.iter().any(|n| n.contains("CentOS")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("no ISO 9660")), "{notes:?}");
    }

    #[test]
    fn waiting_gives_up_after_the_timeout() {
        let start = Instant::now();
        let mut notes = Vec::new();
        let got = wait_for_iso(
            &[PathBuf::from("/nonexistent/sr9")],
            Duration::from_millis(150),
            Duration::from_millis(50),
            &mut notes,
        );
        assert!(got.is_none());
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
